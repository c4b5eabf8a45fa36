"""The one interface every model backend implements, and the settings it takes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from pydantic import Field

from cookbook_data.schemas import Conversation, Strict


class SamplingSettings(Strict):
    """How tokens are drawn. ``temperature = 0`` means greedy decoding (the other knobs are then unused)."""

    max_new_tokens: int = Field(default=512, gt=0, description="Most tokens generated per request.")
    temperature: float = Field(default=0.0, ge=0, description="0 for greedy; > 0 samples.")
    top_p: float = Field(default=1.0, gt=0, le=1, description="Nucleus sampling mass.")
    top_k: int | None = Field(default=None, gt=0, description="Sample among the k most likely tokens.")
    presence_penalty: float = Field(
        default=0.0, ge=-2, le=2, description="Subtracted from the logits of tokens already generated (OpenAI/vLLM)."
    )
    seed: int | None = Field(default=0, description="Seed for sampling; None leaves the generator as it is.")


@dataclass(frozen=True)
class Generation:
    """What a backend produced for one request."""

    text: str
    """Decoded text, control tokens removed, reasoning tags kept."""
    num_generated_tokens: int


class Backend(Protocol):
    """A loaded model that answers conversations (with their video parts) in batches."""

    model_id: str

    def generate(self, conversations: Sequence[Conversation], sampling: SamplingSettings) -> list[Generation]:
        """One generation per conversation, in order."""
        ...
