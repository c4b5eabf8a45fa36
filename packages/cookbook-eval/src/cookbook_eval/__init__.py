"""cookbook-eval: VideoPhy-2 metrics, FID/FVD, Sampson geometric consistency, reports."""

__all__ = ["__version__"]

from importlib.metadata import version as _version

__version__ = _version("cookbook-eval")
