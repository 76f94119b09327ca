"""product-classifier: sorts product photos into Fashion-MNIST catalog categories."""

__version__ = "0.1.0"
