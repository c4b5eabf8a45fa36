"""Splitting model output into reasoning and answer, without ever dropping an output.

Cosmos Reason 1 answers ``<think>…</think>\\n\\n<answer>…</answer>``; Reason 2 writes its reasoning in
``<think>`` tags when asked and its answer as plain text. Outputs are matched as text, not parsed as XML, so
``&`` or ``<`` inside the reasoning cannot break them. An output that is cut off (an opened tag never closed)
keeps its text as thinking and gets ``answer=None``: a recorded failure, never a guess.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import accumulate

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


def _score_number(answer: str) -> tuple[str, int] | None:
    """The number :func:`parse_score` reads, and where in ``answer`` it starts: the whole answer, or else its
    last line that is only a number."""
    whole = _SCORE_LINE.match(answer)
    if whole:
        return whole.group(1), whole.start(1)
    lines = answer.splitlines(keepends=True)
    starts = list(accumulate((len(line) for line in lines), initial=0))[:-1]  # where each line begins
    for start, line in zip(reversed(starts), reversed(lines), strict=True):
        match = _SCORE_LINE.match(line.rstrip("\r\n"))
        if match:
            return match.group(1), start + match.start(1)
    return None


def parse_score(answer: str, low: int, high: int) -> int | None:
    """An integer score in [low, high] from an answer: the whole answer, or else its last line that is only a
    number (Reason2 often writes a sentence, then the digit on its own line). Out of range or fractional
    numbers are rejected (None), never clamped."""
    found = _score_number(answer)
    if found is None:
        return None
    value = float(found[0])
    return int(value) if value.is_integer() and low <= value <= high else None


_CHOICE = re.compile(r"\(([A-Z])\)|([A-Z])(?:[.):,]|$)")


def parse_choice(answer: str) -> str | None:
    """The option letter an answer starts with (``B``, ``(B)``, ``B. the cup``, ``B) the cup``), else None.

    A letter followed by a space alone is not a choice: "I think it is B" and "A car turns left" start with
    English words, not options I and A."""
    match = _CHOICE.match(answer.strip())
    return (match.group(1) or match.group(2)) if match else None


def parse_verdict(answer: str) -> str | None:
    """``approve`` or ``reject`` when the answer says exactly one of them, else None."""
    words = set(re.findall(r"[a-z]+", answer.lower()))
    approve = bool(words & {"approve", "approved"})
    reject = bool(words & {"reject", "rejected"})
    if approve == reject:
        return None
    return "approve" if approve else "reject"


def _answer_region(text: str) -> tuple[int, int] | None:
    """Where in ``text`` :func:`parse_reasoning` finds the answer: the ``<answer>`` block after the reasoning,
    else the text after it; None when there is no answer (reasoning or answer cut off)."""
    start = 0
    if THINK_OPEN in text:
        close = text.find(THINK_CLOSE, text.index(THINK_OPEN))
        if close < 0:
            return None
        start = close + len(THINK_CLOSE)
    elif THINK_CLOSE in text:
        start = text.index(THINK_CLOSE) + len(THINK_CLOSE)
    opened = text.rfind(ANSWER_OPEN, start)
    if opened < 0:
        closed = text.find(ANSWER_CLOSE, start)
        return start, len(text) if closed < 0 else closed
    start = opened + len(ANSWER_OPEN)
    end = text.find(ANSWER_CLOSE, start)
    return None if end < 0 else (start, end)


def score_offset(text: str) -> int | None:
    """Where in ``text`` the score that :func:`parse_score` reads from its answer was written, or None.

    Scorers read the model's token distribution at this offset: the text before it is what the model had
    written when it chose the score. Found the way the score is parsed (the answer after the reasoning, its
    number-only line), so a score quoted in the reasoning or repeated in a sentence is never taken for it."""
    region = _answer_region(text)
    if region is None:
        return None
    start, end = region
    found = _score_number(text[start:end])
    return None if found is None else start + found[1]
