"""cookbook-reward: Reason-as-Reward scorers, GRPO rewards, a reward service, a trajectory verifier."""

__all__ = ["__version__"]

from importlib.metadata import version as _version

__version__ = _version("cookbook-reward")
