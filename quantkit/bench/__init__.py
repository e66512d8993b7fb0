"""Size, peak memory and latency of models, side by side, measured fairly."""
