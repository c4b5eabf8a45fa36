"""cookbook-data: the records every stage exchanges, and the tools that make and check them."""

__all__ = ["__version__"]

from importlib.metadata import version as _version

__version__ = _version("cookbook-data")
