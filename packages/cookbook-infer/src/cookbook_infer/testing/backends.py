"""Backends that answer without a model (or beside one), for tests of what surrounds one: command lines, jobs,
servers, answer parsing."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from cookbook_data.schemas import Conversation
from cookbook_infer.backends.base import Backend, CandidateProbabilities, Generation, SamplingSettings
from cookbook_infer.vision import ModelVideo


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


class AnswersInTurn:
    """Generates ``answers`` in turn, one per conversation asked, and remembers the conversations (``asked``): to
    check how generated texts are read, or what was asked. Answer-token probabilities come from
    ``probabilities_from``, a real backend, when given; without one, reading them fails."""

    def __init__(
        self, answers: Sequence[str], model_id: str = "scripted", probabilities_from: Backend | None = None
    ) -> None:
        self.model_id = model_id
        self._answers: Iterator[str] = iter(answers)
        self._probabilities_from = probabilities_from
        self.asked: list[Conversation] = []

    def generate(
        self, conversations: Sequence[Conversation], sampling: SamplingSettings, videos: object = None
    ) -> list[Generation]:
        self.asked.extend(conversations)
        return [Generation(text=next(self._answers), num_generated_tokens=1) for _ in conversations]

    def next_token_probabilities(
        self,
        conversations: Sequence[Conversation],
        candidates: Sequence[str],
        prefixes: Sequence[str] | None = None,
        videos: Sequence[ModelVideo] | None = None,
    ) -> list[CandidateProbabilities]:
        if self._probabilities_from is None:
            raise NotImplementedError("AnswersInTurn reads no probabilities without a backend to read them from")
        return self._probabilities_from.next_token_probabilities(conversations, candidates, prefixes, videos)
