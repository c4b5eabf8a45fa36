"""The one interface every model backend implements, and the settings it takes."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import Field

from cookbook_data.schemas import Conversation, Strict

if TYPE_CHECKING:
    from cookbook_infer.vision import ModelVideo


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

    def per_request(self, count: int) -> list[SamplingSettings]:
        """These settings for each of ``count`` requests of a batch, the seed made the request's own (seed +
        its position). Engines that seed every request separately (vLLM, OpenAI-compatible servers) would
        otherwise answer copies of one prompt, a scorer's samples, all alike; the transformers backend's one
        generator draws differently for each row anyway."""
        if self.seed is None:
            return [self] * count
        return [self.model_copy(update={"seed": self.seed + index}) for index in range(count)]


@dataclass(frozen=True)
class Generation:
    """What a backend produced for one request."""

    text: str
    """Decoded text, control tokens removed, reasoning tags kept."""
    num_generated_tokens: int
    num_prompt_tokens: int | None = None
    """Tokens of the prompt the model read, video tokens included (None when the backend cannot tell)."""
    truncated: bool = False
    """Whether generation was cut off by the token limit rather than ending by itself (an end-of-sequence or
    stop token). The token count cannot tell: an answer whose end-of-sequence token is its last allowed one
    used its whole budget and still ended. False by default, so results built by hand read as complete."""


@dataclass(frozen=True)
class CandidateProbabilities:
    """The model's next-token probabilities of a few candidate answers ("1".."5", "Yes"/"No") at one position.

    Scorers turn them into calibrated rewards (an expected score, P("No")) that parsing the text cannot give.
    """

    probabilities: dict[str, float]
    """Per candidate, renormalised over the candidates (they sum to 1)."""
    mass: float
    """The candidates' total probability before renormalising: how sure the model is that it answers with one
    of them at all (near 0 means the position was not an answer position)."""


def candidate_probabilities(candidates: Sequence[str], logprobs: Sequence[float]) -> CandidateProbabilities:
    """:class:`CandidateProbabilities` from the full-vocabulary log-probabilities of the candidates' tokens."""
    top = max(logprobs)
    weights = [math.exp(value - top) for value in logprobs]
    total = sum(weights)
    return CandidateProbabilities(
        probabilities={candidate: weight / total for candidate, weight in zip(candidates, weights, strict=True)},
        mass=math.exp(top) * total,
    )


def candidate_token_ids(tokenizer: Any, candidates: Sequence[str]) -> list[int]:
    """The one token id of each candidate; a candidate the tokenizer splits (or that is not in its vocabulary
    as one token) has no single next-token probability, so it is refused with the tokenization shown."""
    if not candidates:
        raise ValueError("no candidate tokens given")
    ids = []
    for candidate in candidates:
        encoded = tokenizer.encode(candidate, add_special_tokens=False)
        if len(encoded) != 1:
            pieces = tokenizer.convert_ids_to_tokens(encoded)
            raise ValueError(
                f"candidate {candidate!r} is {len(encoded)} tokens for this tokenizer ({pieces}); "
                "next-token probabilities need candidates that are single tokens"
            )
        ids.append(encoded[0])
    return ids


class Backend(Protocol):
    """A loaded model that answers conversations (with their video parts) in batches.

    ``videos``, when given, are the batch's video parts already decoded and resized for the model
    (:func:`cookbook_infer.vision.model_videos`, run by a job's CPU step), one per part in order; without them
    the backend decodes the parts itself.
    """

    model_id: str

    def generate(
        self,
        conversations: Sequence[Conversation],
        sampling: SamplingSettings,
        videos: Sequence[ModelVideo] | None = None,
    ) -> list[Generation]:
        """One generation per conversation, in order."""
        ...

    def next_token_probabilities(
        self,
        conversations: Sequence[Conversation],
        candidates: Sequence[str],
        prefixes: Sequence[str] | None = None,
        videos: Sequence[ModelVideo] | None = None,
    ) -> list[CandidateProbabilities]:
        """Per conversation, the probabilities of the ``candidates`` (single tokens) as the next token of the
        answer, after the assistant has written ``prefixes[i]`` (nothing when ``prefixes`` is None)."""
        ...
