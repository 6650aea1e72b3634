"""kcomp's version: stored with every tuning record (one place, so nothing imports the package for it)."""

__version__ = "0.1.0"
