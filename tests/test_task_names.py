"""`cookbook-infer run --task` and `cookbook-eval videophy2 --task` name the same tasks.

Every inference task is listed below with what the VideoPhy-2 evaluation does with its predictions, so a task
added or renamed on either side fails here until the other side (and this table) agrees. The predictions of
each evaluated task come from cookbook-infer's own predictor (prompt rendering, answer parsing, the record's
`task` field); only the model's text is given, and cookbook-eval must read every answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, get_args

import pytest

from cookbook_data.records import write_records
from cookbook_data.schemas import Conversation, Prediction, VideoSample
from cookbook_eval.config import TASK_SPELLINGS, EvalTask, VideoPhy2Config
from cookbook_eval.metrics import evaluate_videophy2
from cookbook_infer.backends.base import CandidateProbabilities, Generation, SamplingSettings
from cookbook_infer.run import Predictor, PredictorConfig
from cookbook_infer.tasks import TASKS

EVALUATED: dict[str, tuple[str, str]] = {
    "critic": ("critic", "pc"),
    "critic-thinking": ("critic", "pc"),
    "adherence": ("critic", "sa"),
    "multiple-choice": ("multiple-choice", "answer"),
}
"""Inference tasks whose predictions `cookbook-eval videophy2` evaluates: the --task and the label it compares
them with."""
NOT_EVALUATED = frozenset({"caption", "vqa", "approve-reject", "rule", "reward-yesno"})
"""Inference tasks whose answers no VideoPhy-2 metric reads (free text, verdicts, the 0-2 rule answers)."""

OUTPUTS = {
    "critic": ["4", "Score: 2"],
    "critic-thinking": ["<think>The ball falls.</think>\n\n<answer>4</answer>", "<think>It floats.</think>\n2"],
    "adherence": ["4", "**2**"],
    "multiple-choice": ["B. the cup", "(A)"],
}
"""What a model writes for two samples labelled 4 and 2 (options B and A), in the forms the parsers read."""


class ScriptedModel:
    """A backend that writes the given texts, in turn, as its generations."""

    def __init__(self, texts: Sequence[str]) -> None:
        self.model_id = "scripted"
        self.texts = list(texts)

    def generate(
        self, conversations: Sequence[Conversation], sampling: SamplingSettings, videos: Any = None
    ) -> list[Generation]:
        return [Generation(self.texts.pop(0), 1) for _ in conversations]

    def next_token_probabilities(self, *args: Any, **kwargs: Any) -> list[CandidateProbabilities]:
        raise AssertionError("a predictor answers by generating text")


def test_every_inference_task_is_known_to_the_evaluation() -> None:
    assert set(EVALUATED).isdisjoint(NOT_EVALUATED)
    assert set(TASKS) == set(EVALUATED) | NOT_EVALUATED


def test_the_evaluation_takes_each_task_by_the_name_cookbook_infer_gives_it(tmp_path: Path) -> None:
    assert set(TASK_SPELLINGS) <= set(TASKS)
    resolved = {
        VideoPhy2Config(manifest=tmp_path / "m.jsonl", predictions=tmp_path / "p.jsonl", out=tmp_path, task=task).task
        for task, _ in EVALUATED.values()
    }
    choices = get_args(EvalTask)[0]  # EvalTask is Annotated[Literal[...], its spelling validator]
    assert resolved == set(get_args(choices))


@pytest.mark.parametrize("task", sorted(EVALUATED))
def test_predictions_of_each_evaluated_task_are_read_by_the_evaluation(task: str, tmp_path: Path) -> None:
    eval_task, label = EVALUATED[task]
    samples = [
        VideoSample(
            id=f"v{i}",
            path=f"v{i}.mp4",
            caption="A ball rolls off a table.",
            labels={
                "pc": score,
                "sa": score,
                "question": "What falls?",
                "options": ["the ball", "the cup"],
                "answer": letter,
            },
        )
        for i, (score, letter) in enumerate([(4, "B"), (2, "A")])
    ]
    write_records(tmp_path / "m.jsonl", VideoSample, samples)
    config = PredictorConfig(model="nvidia/Cosmos-Reason2-8B", task=task)
    predictor = Predictor.from_config(config, tmp_path, backend=ScriptedModel(OUTPUTS[task]))
    predictions = predictor.answer(samples, predictor.conversations(samples))
    assert [p.task for p in predictions] == [f"{task}:{predictor.template.id}"] * 2
    write_records(tmp_path / "p.jsonl", Prediction, predictions)

    labelled_by = {"label_field": label} if eval_task == "critic" else {"answer_field": label}
    summary = evaluate_videophy2(
        VideoPhy2Config.model_validate(
            {
                "manifest": tmp_path / "m.jsonl",
                "predictions": tmp_path / "p.jsonl",
                "out": tmp_path / "out",
                "task": eval_task,
                "bootstrap": 0,
                **labelled_by,
            }
        )
    )
    assert (summary.coverage.evaluated, summary.coverage.unparseable.count) == (2, 0)
    scored = summary.likert.exact_accuracy if summary.likert is not None else None
    chosen = summary.multiple_choice.accuracy if summary.multiple_choice is not None else None
    assert [estimate.value for estimate in (scored, chosen) if estimate is not None] == [1.0]
