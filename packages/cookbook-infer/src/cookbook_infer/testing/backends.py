"""A backend that answers without a model, for tests of what surrounds one: command lines, jobs, servers."""

from __future__ import annotations

from collections.abc import Sequence

from cookbook_data.schemas import Conversation
from cookbook_infer.backends.base import CandidateProbabilities, Generation, SamplingSettings


class FixedAnswers:
    """Answers ``answer`` (one token) to every conversation; reads no probabilities."""

    def __init__(self, model_id: str = "nvidia/Cosmos-Reason2-2B", answer: str = "4") -> None:
        self.model_id = model_id
        self.answer = answer

    def generate(
        self, conversations: Sequence[Conversation], sampling: SamplingSettings, videos: object = None
    ) -> list[Generation]:
        return [Generation(text=self.answer, num_generated_tokens=1) for _ in conversations]

    def next_token_probabilities(self, *args: object, **kwargs: object) -> list[CandidateProbabilities]:
        raise NotImplementedError("FixedAnswers reads no probabilities; use a tiny checkpoint for scoring")
