"""Test helpers for the toolkit and for users' own CI: tiny random Cosmos Reason checkpoints."""

from cookbook_infer.testing.tiny import REASONING_TOKENS, SPECIAL_TOKENS, Arch, make_tiny_model

__all__ = ["REASONING_TOKENS", "SPECIAL_TOKENS", "Arch", "make_tiny_model"]
