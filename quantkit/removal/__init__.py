"""Background removal with a (quantized) model: one photo from Python (``session``), folders (``remove``)."""
