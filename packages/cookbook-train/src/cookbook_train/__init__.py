"""cookbook-train: SFT and GRPO post-training of Cosmos Reason models, through cosmos-rl or on one machine."""

__all__ = ["__version__"]

from importlib.metadata import version as _version

__version__ = _version("cookbook-train")
