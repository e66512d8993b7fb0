"""quantkit: post-training INT8 quantization for U²-Net background-removal models.

The package does nothing at import; the work lives in the modules below and the
``quantkit`` command (``quantkit.cli``) is a thin layer over them.
"""

__version__ = "0.1.0"
