"""Photos through a per-photo function, in this process or on a Ray cluster (``--ray``)."""
