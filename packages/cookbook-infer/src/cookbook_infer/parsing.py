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


def _split(text: str) -> tuple[str | None, tuple[int, int] | None]:
    """The reasoning of an output, and where in ``text`` its answer lies: the last ``<answer>`` block after the
    reasoning, else the text after the reasoning up to a stray ``</answer>``; None when there is no answer
    (reasoning or answer cut off). The one reading of an output, so that :func:`parse_reasoning` and
    :func:`score_offset` always find the same answer."""
    thinking: str | None = None
    start = 0
    if THINK_OPEN in text:
        opened = text.index(THINK_OPEN) + len(THINK_OPEN)
        close = text.find(THINK_CLOSE, opened)
        if close < 0:
            return _blank_to_none(text[opened:]), None
        thinking = _blank_to_none(text[opened:close])
        start = close + len(THINK_CLOSE)
    elif THINK_CLOSE in text:
        # The chat template opened <think> inside the prompt; only the closing tag was generated.
        close = text.index(THINK_CLOSE)
        thinking = _blank_to_none(text[:close])
        start = close + len(THINK_CLOSE)
    opened = text.rfind(ANSWER_OPEN, start)
    if opened < 0:
        closed = text.find(ANSWER_CLOSE, start)
        return thinking, (start, len(text) if closed < 0 else closed)
    start = opened + len(ANSWER_OPEN)
    end = text.find(ANSWER_CLOSE, start)
    return thinking, None if end < 0 else (start, end)


def parse_reasoning(text: str) -> ParsedOutput:
    """Separate ``<think>`` reasoning from the answer (``<answer>`` content, or the text after the reasoning)."""
    thinking, region = _split(text)
    return ParsedOutput(thinking=thinking, answer=None if region is None else _blank_to_none(text[slice(*region)]))


_MARKUP = r"[\s*_]*"
"""Space and markdown emphasis around the parts of a score line (``**Score:** 4``, ``Score: **4**``)."""
_SCORE_LINE = re.compile(
    rf"^{_MARKUP}(?:score{_MARKUP}(?:[:=]{_MARKUP})?)?(-?\d+(?:\.\d+)?){_MARKUP}"
    rf"(?:(?:/|out\s+of){_MARKUP}(\d+){_MARKUP})?(?:\.{_MARKUP})?$",
    re.IGNORECASE,
)
"""A line that is only a score: the number, optionally after ``Score:`` and optionally a fraction of the scale
(``4/5``, ``4 out of 5``), in any emphasis. Each optional part starts with a character of its own (``:``, ``/``,
``o``, ``.``), so a long run of spaces is matched in linear time."""


@dataclass(frozen=True)
class _ScoreNumber:
    """The number a score line holds, the scale it was given out of (None for a bare number), and where in the
    answer the number starts."""

    value: str
    out_of: str | None
    start: int


def _score_number(answer: str) -> _ScoreNumber | None:
    """The score line :func:`parse_score` reads: the whole answer, or else its last line that is only a score."""
    whole = _SCORE_LINE.match(answer)
    if whole:
        return _ScoreNumber(whole.group(1), whole.group(2), whole.start(1))
    lines = answer.splitlines(keepends=True)
    starts = list(accumulate((len(line) for line in lines), initial=0))[:-1]  # where each line begins
    for start, line in zip(reversed(starts), reversed(lines), strict=True):
        match = _SCORE_LINE.match(line.rstrip("\r\n"))
        if match:
            return _ScoreNumber(match.group(1), match.group(2), start + match.start(1))
    return None


def parse_score(answer: str, low: int, high: int, *, fractions: bool = True) -> int | None:
    """An integer score in [low, high] from an answer: the whole answer, or else its last line that is only a
    score (Reason2 often writes a sentence, then the digit on its own line). Out of range or non-integer
    numbers are rejected (None), never clamped.

    A score written as a fraction of the scale (``4/5``, ``4 out of 5``) is its numerator when the denominator
    is ``high``; a fraction of another scale (``4/10`` on 1–5) is None, never rescaled. ``fractions=False``
    refuses fractions altogether, for numbered categories rather than a scale (the rule task's 0/1/2, where
    ``1/2`` is no grade)."""
    found = _score_number(answer)
    if found is None or (found.out_of is not None and (not fractions or float(found.out_of) != high)):
        return None
    value = float(found.value)
    return int(value) if value.is_integer() and low <= value <= high else None


_CHOICE = re.compile(
    r"[*_]*(?:\((?P<paren>[A-Za-z])\)|(?P<letter>[A-Za-z])(?:[):,*_]|\.(?![A-Za-z](?![A-Za-z]))|$|[ \t]*[\r\n]))"
)
"""An option letter at the start of an answer, after any emphasis: in parentheses, followed by ``)``, ``:``, ``,``
or ``.`` (but not an abbreviation's dot, followed by a single letter: "i.e", "E.g.", "U.S."; ``B.The cup`` is
option B), alone on its line, or followed by emphasis (``**B**``, ``**Answer: B**``: a single letter set in
emphasis is an option, not a word)."""
_ANSWER_LABEL = re.compile(r"[*_]*answer[*_]*[ \t]*:[*_]*\s*", re.IGNORECASE)
"""An ``Answer:`` label before the option (``**Answer:** B``, ``answer: (c)``). Each part is a run of characters
of its own kind, so a long run of any of them is matched in linear time."""


def parse_choice(answer: str) -> str | None:
    """The option letter an answer starts with, upper-cased (``B``, ``(B)``, ``B. the cup``, ``B) the cup``,
    ``**B**``, ``**B.** the cup``, ``(b)``, ``b.``, ``B`` on a line of its own before the explanation), after an
    ``Answer:`` label if there is one, else None.

    A letter followed by a space alone is not a choice: "I think it is B" and "A car turns left" (or "a car
    turns left") start with English words, not options I and A. A lowercase letter that is the whole answer
    (``b``) is read as that option: alone it is no sentence, only the option written in lower case (as the
    evaluation's ``normalize_choice`` reads ``b`` too, so both stages count the same answers)."""
    answer = answer.strip()
    label = _ANSWER_LABEL.match(answer)
    match = _CHOICE.match(answer, label.end() if label else 0)
    return (match.group("paren") or match.group("letter")).upper() if match else None


def parse_verdict(answer: str) -> str | None:
    """``approve`` or ``reject`` when the answer says exactly one of them, else None."""
    words = set(re.findall(r"[a-z]+", answer.lower()))
    approve = bool(words & {"approve", "approved"})
    reject = bool(words & {"reject", "rejected"})
    if approve == reject:
        return None
    return "approve" if approve else "reject"


def score_offset(text: str) -> int | None:
    """Where in ``text`` the score that :func:`parse_score` reads from its answer was written (the numerator of
    ``4/5``), or None.

    Scorers read the model's token distribution at this offset: the text before it is what the model had
    written when it chose the score. Found the way the score is parsed (the answer after the reasoning, its
    number-only line), so a score quoted in the reasoning or repeated in a sentence is never taken for it."""
    region = _split(text)[1]
    if region is None:
        return None
    start, end = region
    found = _score_number(text[start:end])
    return None if found is None else start + found.start
