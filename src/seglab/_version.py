"""The version of seglab: the one place it is written (pyproject.toml reads it; ``seglab.__version__`` re-exports it)."""

__version__ = "0.1.0"
