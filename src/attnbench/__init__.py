"""attnbench: a reproducible benchmark of neural attention mechanisms."""

__version__ = "0.1.0"
