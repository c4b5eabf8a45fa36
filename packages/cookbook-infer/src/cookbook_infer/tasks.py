"""What the model is asked, and how its answer is read: the inference tasks.

Each task names a prompt template per architecture (templates are data in :mod:`cookbook_data.prompts`),
the placeholders it fills from the sample (the same code dataset building uses, so training and inference
ask the same question), whether reasoning is requested, and the parser that turns the answer into a value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from cookbook_data.prompts import PromptTemplate, load_prompt
from cookbook_data.schemas import Conversation, VideoSample
from cookbook_data.tasks import LabelFields, prompt_values
from cookbook_data.tasks import Task as DataTask
from cookbook_data.video import VisionSettings
from cookbook_infer.parsing import parse_choice, parse_reasoning, parse_score, parse_verdict
from cookbook_infer.registry import REASONING_SUFFIX, Arch

AnswerKind = Literal["score", "text", "choice", "verdict"]


@dataclass(frozen=True)
class InferenceTask:
    """A question asked of each sample and the kind of answer expected."""

    name: str
    prompts: dict[Arch, str]
    """Shipped template per architecture."""
    answer: AnswerKind
    reasoning: bool
    values_from: DataTask = "critic"
    """Which dataset task's placeholders the template uses (critic and caption have none)."""

    def template(self, arch: Arch, override: str | None = None) -> PromptTemplate:
        """The template for ``arch`` (or the user's), with the architecture's reasoning request appended when
        the task reasons and the template does not already ask for ``<think>``."""
        template = load_prompt(override or self.prompts[arch])
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
        values = prompt_values(sample, self.values_from, LabelFields())
        rendered = template.render(**values) if template.placeholders else template
        return rendered.conversation([vision.video_part(video)])

    def read_answer(self, text: str) -> tuple[str | None, str | None]:
        """(thinking, parsed answer) of an output; the answer is None when it cannot be read."""
        parsed = parse_reasoning(text)
        if parsed.answer is None or self.answer == "text":
            return parsed.thinking, parsed.answer
        if self.answer == "score":
            score = parse_score(parsed.answer, 1, 5)
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
    )
}
"""Tasks by the name ``cookbook-infer run --task`` takes."""


def get_task(name: str) -> InferenceTask:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; tasks: {', '.join(TASKS)}")
    return TASKS[name]
