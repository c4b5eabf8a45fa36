"""What each dataset-building task reads from a sample, and the training target it writes.

A task turns a :class:`~cookbook_data.schemas.VideoSample` into an :class:`Example`: the reference answer
(the string GRPO rewards compare with), the values of the prompt's placeholders, and the sample's own
reasoning text when it has one. A sample whose label is absent or unusable raises :class:`Dropped` with a
reason code and a message naming the field, so the builder can report it instead of crashing.
"""

from __future__ import annotations

import json
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

from pydantic import JsonValue

from cookbook_data.prompts import PromptTemplate
from cookbook_data.schemas import VideoSample

Task = Literal["critic", "caption", "vqa", "multiple_choice"]
TargetFormat = Literal["plain", "answer_tag", "think_and_answer_tag"]
DropReason = Literal[
    "duplicate_id",
    "conflicting_id",
    "missing_label",
    "bad_label",
    "missing_reasoning",
    "missing_file",
    "bad_video",
    "duplicate_content",
    "downsampled",
]
DROP_REASONS: tuple[DropReason, ...] = get_args(DropReason)
"""Why a sample can be left out of a built dataset (the ``error_type`` of its line in ``dropped.jsonl``)."""

DEFAULT_PROMPTS: dict[Task, str] = {
    "critic": "reason1_videophy2_critic",
    "caption": "caption",
    "vqa": "vqa",
    "multiple_choice": "multiple_choice",
}
"""The shipped template each task uses unless another is given."""

TASK_PLACEHOLDERS: dict[Task, frozenset[str]] = {
    "critic": frozenset(),
    "caption": frozenset(),
    "vqa": frozenset({"question"}),
    "multiple_choice": frozenset({"question", "options"}),
}
"""The placeholders a template must hold, exactly, for each task."""

CLASS_TASKS: frozenset[Task] = frozenset({"critic", "multiple_choice"})
"""Tasks whose answers are a small set of classes (label counts are always reported for them)."""

MAX_OPTIONS = len(string.ascii_uppercase)


class Dropped(Exception):
    """A sample that cannot go into the dataset, with the reason code and a message naming the field."""

    def __init__(self, reason: DropReason, message: str) -> None:
        super().__init__(message)
        self.reason: DropReason = reason
        self.message = message


@dataclass(frozen=True)
class LabelFields:
    """Where a task finds its labels in ``VideoSample.labels``."""

    score: str = "pc"
    min_score: int = 1
    max_score: int = 5
    question: str = "question"
    options: str = "options"
    answer: str = "answer"
    reasoning: str = "reasoning"


@dataclass(frozen=True)
class Example:
    """What a task takes from one sample."""

    reference: str
    """The reference answer: the critic's digit, the caption, the VQA answer or the option letter."""
    values: dict[str, str] = field(default_factory=dict)
    """Values of the prompt's placeholders."""
    reasoning: str | None = None
    """The sample's own reasoning text, when it carries one."""


def infer_target_format(template: PromptTemplate) -> TargetFormat:
    """The answer layout a template asks for: ``<think>`` in its text → think and answer tags, ``<answer>``
    → answer tags, neither → the plain answer (Reason2's critic, captions, VQA, multiple choice)."""
    text = (template.system_prompt or "") + template.user_prompt
    if "<think>" in text:
        return "think_and_answer_tag"
    if "<answer>" in text:
        return "answer_tag"
    return "plain"


def target_text(target_format: TargetFormat, answer: str, reasoning: str | None) -> str:
    """The assistant turn of an SFT row: ``4``, ``<answer>\\n4\\n</answer>`` or the same after a
    ``<think>\\n…\\n</think>\\n\\n`` block (the layout the published prompts and GRPO format reward use)."""
    if target_format == "plain":
        return answer
    tagged = f"<answer>\n{answer}\n</answer>"
    if target_format == "answer_tag":
        return tagged
    if reasoning is None:
        raise ValueError("a think-and-answer target needs the sample's reasoning text")
    return f"<think>\n{reasoning}\n</think>\n\n{tagged}"


def check_template(template: PromptTemplate, task: Task) -> None:
    """Refuse a template whose placeholders do not fit ``task`` (a VQA question must have a place to go)."""
    check_placeholders(template, task, TASK_PLACEHOLDERS[task])


def check_placeholders(template: PromptTemplate, task: str, wanted: frozenset[str]) -> None:
    """Refuse a template whose placeholders are not exactly ``wanted``, the values ``task`` fills in."""
    if template.placeholders != wanted:

        def names(found: frozenset[str]) -> str:
            return ", ".join("{" + name + "}" for name in sorted(found)) or "none"

        raise ValueError(
            f"prompt {template.id}: task {task} needs the placeholders {names(wanted)}, "
            f"the template has {names(template.placeholders)}"
        )


def resolve_path(sample: VideoSample, manifest_dir: Path) -> Path:
    """Absolute path of the sample's video (relative paths are relative to the manifest's folder)."""
    if sample.path is None:
        raise Dropped("missing_file", f"no local path (only url {sample.url}); download the video first")
    path = Path(sample.path).expanduser()
    if not path.is_absolute():
        path = manifest_dir / path
    return path.absolute()


def _label(sample: VideoSample, name: str) -> JsonValue:
    if name not in sample.labels or sample.labels[name] is None:
        raise Dropped("missing_label", f"labels.{name} is missing")
    return sample.labels[name]


def _text(sample: VideoSample, name: str, *, numbers: bool = False) -> str:
    """A text label; with ``numbers``, a number or true/false (as a labels file's reader may have parsed an
    answer) is taken as the text it was written as."""
    value = _label(sample, name)
    if numbers and isinstance(value, int | float):
        return json.dumps(value)
    if not isinstance(value, str):
        raise Dropped("bad_label", f"labels.{name}: expected text, got {value!r}")
    if not value.strip():
        raise Dropped("missing_label", f"labels.{name} is blank")
    return value.strip()


def _score(sample: VideoSample, fields: LabelFields) -> str:
    value = _numeric(_label(sample, fields.score))
    expected = f"expected an integer score from {fields.min_score} to {fields.max_score}, got {value!r}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Dropped("bad_label", f"labels.{fields.score}: {expected}")
    if isinstance(value, float) and not value.is_integer():
        raise Dropped("bad_label", f"labels.{fields.score}: {expected}")
    if not fields.min_score <= int(value) <= fields.max_score:
        raise Dropped("bad_label", f"labels.{fields.score}: {expected}")
    return str(int(value))


def _numeric(value: JsonValue) -> JsonValue:
    """``value``, or the number a text of one holds (a labels file keeps ``4.0`` as written)."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _options(sample: VideoSample, fields: LabelFields) -> list[str]:
    value = _label(sample, fields.options)
    if (
        not isinstance(value, list)
        or not 2 <= len(value) <= MAX_OPTIONS
        or not all(isinstance(option, str) and option.strip() for option in value)
    ):
        raise Dropped(
            "bad_label",
            f"labels.{fields.options}: expected a list of 2 to {MAX_OPTIONS} non-blank texts, got {value!r}",
        )
    return [str(option).strip() for option in value]


def _letter(sample: VideoSample, fields: LabelFields, count: int) -> str:
    value = _label(sample, fields.answer)
    letters = string.ascii_uppercase[:count]
    if not isinstance(value, str) or value.strip().upper() not in letters:
        raise Dropped("bad_label", f"labels.{fields.answer}: expected one of the letters {letters}, got {value!r}")
    return value.strip().upper()


def _reasoning(sample: VideoSample, fields: LabelFields) -> str | None:
    value = sample.labels.get(fields.reasoning)
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def prompt_values(sample: VideoSample, task: Task, fields: LabelFields) -> dict[str, str]:
    """Values of the task's prompt placeholders read from ``sample`` (none for critic and caption); needed to
    ask the question, at training and at inference alike."""
    if task in {"critic", "caption"}:
        return {}
    question = _text(sample, fields.question)
    if task == "vqa":
        return {"question": question}
    listing = "\n".join(
        f"{letter}. {option}" for letter, option in zip(string.ascii_uppercase, _options(sample, fields), strict=False)
    )
    return {"question": question, "options": listing}


def example_of(sample: VideoSample, task: Task, fields: LabelFields) -> Example:
    """The task's reading of ``sample``; raises :class:`Dropped` when a label is missing or unusable."""
    reasoning = _reasoning(sample, fields)
    if task == "critic":
        return Example(reference=_score(sample, fields), reasoning=reasoning)
    if task == "caption":
        if sample.caption is None or not sample.caption.strip():
            raise Dropped("missing_label", "caption is missing" if sample.caption is None else "caption is blank")
        return Example(reference=sample.caption.strip(), reasoning=reasoning)
    values = prompt_values(sample, task, fields)
    if task == "vqa":
        answer = _text(sample, fields.answer, numbers=True)
        return Example(reference=answer, values=values, reasoning=reasoning)
    letter = _letter(sample, fields, len(_options(sample, fields)))
    return Example(reference=letter, values=values, reasoning=reasoning)
