"""`cookbook-infer run --task` and `cookbook-eval videophy2 --task` name the same tasks.

Every inference task is listed in cookbook-eval's `ANSWER_OF_INFER_TASK` with what the VideoPhy-2 evaluation does
with its predictions, so a task added or renamed on either side fails here until the other side agrees. The
predictions of each task come from cookbook-infer's own predictor (prompt rendering, answer parsing, the record's
`task` field); only the model's text is given. cookbook-eval must read every answer of the evaluation that fits
the task, and every other evaluation must refuse them.
"""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import pytest

from cookbook_data.records import write_records
from cookbook_data.schemas import Prediction, VideoSample
from cookbook_eval.config import (
    ANSWER_OF_INFER_TASK,
    LABEL_OF_LIKERT_KIND,
    TASK_SPELLINGS,
    EvalTask,
    InferAnswer,
    VideoPhy2Config,
)
from cookbook_eval.metrics import VideoPhy2Summary, evaluate_videophy2
from cookbook_infer.run import Predictor, PredictorConfig
from cookbook_infer.tasks import TASKS
from cookbook_infer.testing.backends import AnswersInTurn

RULE_LABEL = "rule_answer"
"""A label of the user's own holding the rule task's answer (0 violated, 1 followed, 2 cannot be determined)."""
SCALE_OF_LABEL: dict[str, dict[str, int]] = {RULE_LABEL: {"min_score": 0, "max_score": 2, "threshold": 1}}
"""The scale settings an evaluation against a label needs besides the default 1-5."""


def evaluation_of(answer: InferAnswer) -> tuple[str, str]:
    """The --task and the label an evaluation of ``answer`` compares predictions with."""
    if answer == "multiple_choice":
        return "multiple-choice", "answer"
    if answer == "rule":
        return "critic", RULE_LABEL
    return "critic", LABEL_OF_LIKERT_KIND[answer]


EVALUATED: dict[str, tuple[str, str]] = {
    task: evaluation_of(answer) for task, answer in ANSWER_OF_INFER_TASK.items() if answer is not None
}
"""Inference tasks whose predictions `cookbook-eval videophy2` evaluates: the --task and the label it compares
them with (critic and critic-thinking with `pc`, adherence with `sa`, rule with a 0-2 label of the user's own,
multiple-choice with `answer`)."""
EVALUATIONS = sorted(set(EVALUATED.values()))
"""Every evaluation a prediction may fit; the other inference tasks' answers (free text, verdicts) fit none."""

OUTPUTS = {
    "critic": ["4", "Score: 2"],
    "critic-thinking": ["<think>The ball falls.</think>\n\n<answer>4</answer>", "<think>It floats.</think>\n2"],
    "adherence": ["5", "**1**"],
    "multiple-choice": ["B. the cup", "(A)"],
    "rule": ["1", "<answer>0</answer>"],
}
"""What a model writes for two samples whose physics labels are 4 and 2, adherence labels 5 and 1, answers B and
A and rule answers 1 and 0, in the forms the parsers read; the other tasks' answers are never read."""


def test_every_inference_task_is_known_to_the_evaluation() -> None:
    assert set(TASKS) == set(ANSWER_OF_INFER_TASK)


def test_the_evaluation_takes_each_task_by_the_name_cookbook_infer_gives_it(tmp_path: Path) -> None:
    assert set(TASK_SPELLINGS) <= set(TASKS)
    resolved = {
        VideoPhy2Config(manifest=tmp_path / "m.jsonl", predictions=tmp_path / "p.jsonl", out=tmp_path, task=task).task
        for task, _ in EVALUATED.values()
    }
    choices = get_args(EvalTask)[0]  # EvalTask is Annotated[Literal[...], its spelling validator]
    assert resolved == set(get_args(choices))


def predictions_of(task: str, folder: Path) -> VideoPhy2Config:
    """A manifest of two labelled samples and the predictions of ``task`` for them, written by cookbook-infer's
    own predictor, as the settings of an evaluation (of a critic against `pc`, to be changed)."""
    samples = [
        VideoSample(
            id=f"v{i}",
            path=f"v{i}.mp4",
            caption="A ball rolls off a table.",
            labels={
                "pc": physics,
                "sa": adherence,
                "question": "What falls?",
                "options": ["the ball", "the cup"],
                "answer": letter,
                "rule": "The ball falls down.",
                RULE_LABEL: verdict,
            },
        )
        for i, (physics, adherence, letter, verdict) in enumerate([(4, 5, "B", 1), (2, 1, "A", 0)])
    ]
    write_records(folder / "m.jsonl", VideoSample, samples)
    config = PredictorConfig(model="nvidia/Cosmos-Reason2-8B", task=task)
    predictor = Predictor.from_config(config, folder, backend=AnswersInTurn(OUTPUTS.get(task, ["1", "2"])))
    predictions = predictor.answer(samples, predictor.conversations(samples))
    assert [p.task for p in predictions] == [f"{task}:{predictor.template.id}"] * 2
    write_records(folder / "p.jsonl", Prediction, predictions)
    return VideoPhy2Config(manifest=folder / "m.jsonl", predictions=folder / "p.jsonl", out=folder / "out", bootstrap=0)


def evaluate_as(config: VideoPhy2Config, task: str, label: str) -> VideoPhy2Summary:
    """The evaluation of ``config``'s predictions as ``--task task`` against ``label``."""
    labelled_by = (
        {"label_field": label, **SCALE_OF_LABEL.get(label, {})} if task == "critic" else {"answer_field": label}
    )
    return evaluate_videophy2(VideoPhy2Config.model_validate({**config.model_dump(), "task": task, **labelled_by}))


@pytest.mark.parametrize("task", sorted(EVALUATED))
def test_predictions_of_each_evaluated_task_are_read_by_the_evaluation(task: str, tmp_path: Path) -> None:
    summary = evaluate_as(predictions_of(task, tmp_path), *EVALUATED[task])
    assert (summary.coverage.evaluated, summary.coverage.unparseable.count) == (2, 0)
    scored = summary.likert.exact_accuracy if summary.likert is not None else None
    chosen = summary.multiple_choice.accuracy if summary.multiple_choice is not None else None
    assert [estimate.value for estimate in (scored, chosen) if estimate is not None] == [1.0]


@pytest.mark.parametrize("task", sorted(TASKS))
def test_predictions_are_refused_by_every_evaluation_but_their_own(task: str, tmp_path: Path) -> None:
    config = predictions_of(task, tmp_path)
    refused = [evaluation for evaluation in EVALUATIONS if evaluation != EVALUATED.get(task)]
    assert len(refused) == len(EVALUATIONS) - (task in EVALUATED)
    for eval_task, label in refused:
        with pytest.raises(
            ValueError, match=rf"p\.jsonl: holds predictions of task {task} \(2\), but --task {eval_task}"
        ):
            evaluate_as(config, eval_task, label)
    assert not (tmp_path / "out").exists()
