"""Background removal with a (quantized) model: one photo from Python, or folders from the CLI."""
