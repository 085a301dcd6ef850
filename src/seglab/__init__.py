"""seglab: which loss and which final activation for my segmentation — correct, fast and checkable."""

__version__ = "0.1.0"

__all__ = ["__version__"]
