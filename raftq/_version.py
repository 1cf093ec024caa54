"""The package version, on its own so that any layer may read it without importing the package
face (``raftq/__init__.py``)."""

__version__ = "0.1.0"
