"""cookbook-infer: Cosmos Reason 1/2 inference: backends, prompts, parsing, batch jobs."""

__all__ = ["__version__"]

from importlib.metadata import version as _version

__version__ = _version("cookbook-infer")
