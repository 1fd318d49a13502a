"""The release, in one place: the package metadata and ``almost-raft --version`` read it."""

__all__ = ["__version__"]

__version__ = "0.1.0"
