"""Splitting model output into reasoning and answer, without ever dropping an output.

Cosmos Reason 1 answers ``<think>…</think>\\n\\n<answer>…</answer>``; Reason 2 writes its reasoning in
``<think>`` tags when asked and its answer as plain text. Outputs are matched as text, not parsed as XML, so
``&`` or ``<`` inside the reasoning cannot break them. An output that is cut off (an opened tag never closed)
keeps its text as thinking and gets ``answer=None``: a recorded failure, never a guess.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"


@dataclass(frozen=True)
class ParsedOutput:
    """Reasoning and answer of one output; either is None when absent or unusable."""

    thinking: str | None
    answer: str | None


def _blank_to_none(text: str) -> str | None:
    text = text.strip()
    return text or None


def parse_reasoning(text: str) -> ParsedOutput:
    """Separate ``<think>`` reasoning from the answer (``<answer>`` content, or the text after the reasoning)."""
    thinking: str | None = None
    rest = text
    if THINK_OPEN in rest:
        before, _, after = rest.partition(THINK_OPEN)
        inner, closed, rest = after.partition(THINK_CLOSE)
        if not closed:
            return ParsedOutput(thinking=_blank_to_none(inner), answer=None)
        thinking = _blank_to_none(inner)
        rest = before + rest
    elif THINK_CLOSE in rest:
        # The chat template opened <think> inside the prompt; only the closing tag was generated.
        inner, _, rest = rest.partition(THINK_CLOSE)
        thinking = _blank_to_none(inner)

    if ANSWER_OPEN in rest:
        inner = rest.rpartition(ANSWER_OPEN)[2]
        answer, closed, _ = inner.partition(ANSWER_CLOSE)
        return ParsedOutput(thinking=thinking, answer=_blank_to_none(answer) if closed else None)
    return ParsedOutput(thinking=thinking, answer=_blank_to_none(rest.replace(ANSWER_CLOSE, "")))


_SCORE_LINE = re.compile(r"^\s*\**\s*(?:score\s*[:=]?\s*)?(-?\d+(?:\.\d+)?)\s*\**\s*\.?\s*$", re.IGNORECASE)


def parse_score(answer: str, low: int, high: int) -> int | None:
    """An integer score in [low, high] from an answer: the whole answer, or else its last line that is only a
    number (Reason2 often writes a sentence, then the digit on its own line). Out of range or fractional
    numbers are rejected (None), never clamped."""
    for line in [answer, *reversed(answer.strip().splitlines())]:
        match = _SCORE_LINE.match(line)
        if match:
            value = float(match.group(1))
            if value.is_integer() and low <= value <= high:
                return int(value)
            return None
    return None


_CHOICE = re.compile(r"^\s*\(?([A-Z])\)?(?:[.):]|\s|$)")


def parse_choice(answer: str) -> str | None:
    """The option letter an answer starts with (``B``, ``(B)``, ``B. the cup``), else None."""
    match = _CHOICE.match(answer.strip())
    return match.group(1) if match else None


def parse_verdict(answer: str) -> str | None:
    """``approve`` or ``reject`` when the answer says exactly one of them, else None."""
    words = set(re.findall(r"[a-z]+", answer.lower()))
    approve = bool(words & {"approve", "approved"})
    reject = bool(words & {"reject", "rejected"})
    if approve == reject:
        return None
    return "approve" if approve else "reject"


def answer_offset(text: str, answer: str) -> int | None:
    """Where in ``text`` the parsed ``answer`` (e.g. a score) was written: the start of its last standalone
    occurrence inside the answer (the ``<answer>`` block, else the text after ``</think>``), or None.

    Scorers read the model's token distribution at this offset: the text before it is what the model had
    written when it chose the answer."""
    start = 0
    if ANSWER_OPEN in text:
        start = text.rindex(ANSWER_OPEN) + len(ANSWER_OPEN)
    elif THINK_CLOSE in text:
        start = text.rindex(THINK_CLOSE) + len(THINK_CLOSE)
    end = text.find(ANSWER_CLOSE, start)
    region = text[start : end if end >= 0 else len(text)]
    matches = list(re.finditer(rf"(?<![\w.]){re.escape(answer)}(?!\w|\.\d)", region))
    return start + matches[-1].start() if matches else None
