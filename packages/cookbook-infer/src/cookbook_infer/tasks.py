"""What the model is asked, and how its answer is read: the inference tasks.

Each task names a prompt template per architecture (templates are data in :mod:`cookbook_data.prompts`),
the placeholders it fills from the sample (the same code dataset building uses, so training and inference
ask the same question), whether reasoning is requested, and the parser that turns the answer into a value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import JsonValue

from cookbook_data.prompts import PromptTemplate, load_prompt
from cookbook_data.schemas import Conversation, VideoSample
from cookbook_data.tasks import TASK_PLACEHOLDERS, LabelFields, check_placeholders, prompt_values
from cookbook_data.tasks import Task as DataTask
from cookbook_data.video import VisionSettings
from cookbook_infer.parsing import parse_choice, parse_reasoning, parse_score, parse_verdict
from cookbook_infer.registry import REASONING_SUFFIX, Arch

AnswerKind = Literal["score", "rule", "text", "choice", "verdict"]
ValuesFrom = DataTask | Literal["adherence", "rule"]


def placeholders(values_from: ValuesFrom) -> frozenset[str]:
    """The placeholders a template must hold, exactly, for the values :func:`sample_values` gives."""
    if values_from == "adherence":
        return frozenset({"caption"})
    if values_from == "rule":
        return frozenset({"rule"})
    return TASK_PLACEHOLDERS[values_from]


RULE_ANSWERS = {0: "violated", 1: "followed", 2: "cannot be determined"}
"""The VideoPhy-2 rule task's answers by the number the model gives."""


def sample_values(sample: VideoSample, values_from: ValuesFrom) -> dict[str, str]:
    """Placeholder values of a task's prompt: the dataset tasks' own, the caption for instruction adherence,
    and the rule text (``metadata.rule``, else ``labels.rule``) for the rule task. A missing value fails the
    sample with a message naming the field."""
    if values_from == "adherence":
        if sample.caption is None or not sample.caption.strip():
            raise ValueError(f"{sample.id}: caption is {'missing' if sample.caption is None else 'blank'}")
        return {"caption": sample.caption.strip()}
    if values_from == "rule":
        rule = sample.metadata.get("rule", sample.labels.get("rule"))
        if not isinstance(rule, str) or not rule.strip():
            raise ValueError(f"{sample.id}: metadata.rule (or labels.rule) must hold the rule's text, got {rule!r}")
        return {"rule": rule.strip()}
    return prompt_values(sample, values_from, LabelFields())


def sample_asking(
    sample_id: str,
    path: str,
    *,
    question: str | None = None,
    options: list[str] | None = None,
    caption: str | None = None,
    rule: str | None = None,
) -> VideoSample:
    """A sample of a bare video file carrying the values its task's prompt needs where :func:`sample_values`
    reads them (question and options as labels, the caption, the rule as metadata): a question asked about one
    video then takes the route a manifest's sample takes to its prompt, with the same checks."""
    fields = LabelFields()
    labels: dict[str, JsonValue] = {}
    if question is not None:
        labels[fields.question] = question
    if options is not None:
        labels[fields.options] = list(options)
    metadata: dict[str, JsonValue] = {"rule": rule} if rule is not None else {}
    return VideoSample(id=sample_id, path=path, caption=caption, labels=labels, metadata=metadata)


@dataclass(frozen=True)
class InferenceTask:
    """A question asked of each sample and the kind of answer expected."""

    name: str
    prompts: dict[Arch, str]
    """Shipped template per architecture."""
    answer: AnswerKind
    reasoning: bool
    values_from: ValuesFrom = "critic"
    """Where the template's placeholders come from (see :func:`sample_values`; critic and caption have none)."""

    def template(self, arch: Arch, override: str | None = None) -> PromptTemplate:
        """The template for ``arch`` (or the user's), with the architecture's reasoning request appended when
        the task reasons and the template does not already ask for ``<think>``. A template without a place for
        each value the task fills in is refused here: rendering would refuse it for every sample."""
        template = load_prompt(override or self.prompts[arch])
        check_placeholders(template, self.name, placeholders(self.values_from))
        text = (template.system_prompt or "") + template.user_prompt
        if not self.reasoning or "<think>" in text:
            return template
        return template.model_copy(
            update={
                "user_prompt": template.user_prompt.rstrip("\n") + "\n" + REASONING_SUFFIX[arch],
                "version": f"{template.version}+reasoning",
            }
        )

    def conversation(
        self, template: PromptTemplate, sample: VideoSample, video: str, vision: VisionSettings
    ) -> Conversation:
        """The prompt for one sample, its video part carrying the vision settings."""
        values = sample_values(sample, self.values_from)
        return template.render(**values).conversation([vision.video_part(video)])

    def read_answer(self, text: str) -> tuple[str | None, str | None]:
        """(thinking, parsed answer) of an output; the answer is None when it cannot be read."""
        parsed = parse_reasoning(text)
        if parsed.answer is None or self.answer == "text":
            return parsed.thinking, parsed.answer
        if self.answer in ("score", "rule"):
            low, high = (1, 5) if self.answer == "score" else (min(RULE_ANSWERS), max(RULE_ANSWERS))
            score = parse_score(parsed.answer, low, high, fractions=self.answer == "score")
            return parsed.thinking, None if score is None else str(score)
        if self.answer == "choice":
            return parsed.thinking, parse_choice(parsed.answer)
        return parsed.thinking, parse_verdict(parsed.answer)


def _both(name: str) -> dict[Arch, str]:
    return {"reason1": name, "reason2": name}


TASKS: dict[str, InferenceTask] = {
    task.name: task
    for task in (
        InferenceTask(
            "critic", {"reason1": "reason1_videophy2_critic", "reason2": "reason2_videophy2_critic"}, "score", False
        ),
        InferenceTask(
            "critic-thinking",
            {"reason1": "reason1_videophy2_critic_thinking", "reason2": "reason2_videophy2_critic"},
            "score",
            True,
        ),
        InferenceTask("caption", _both("caption"), "text", False, "caption"),
        InferenceTask("vqa", _both("vqa"), "text", False, "vqa"),
        InferenceTask("multiple-choice", _both("multiple_choice"), "choice", False, "multiple_choice"),
        InferenceTask("approve-reject", _both("approve_reject"), "verdict", True),
        InferenceTask("adherence", _both("videophy2_adherence"), "score", False, "adherence"),
        InferenceTask("rule", _both("videophy2_rule"), "rule", False, "rule"),
        InferenceTask("reward-yesno", _both("reason1_reward_yesno"), "text", False),
    )
}
"""Tasks by the name ``cookbook-infer run --task`` takes."""


def get_task(name: str) -> InferenceTask:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; tasks: {', '.join(TASKS)}")
    return TASKS[name]
