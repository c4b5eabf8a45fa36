"""Answers a Cosmos Reason model commonly writes (a score as a fraction of the scale, an option letter in markdown
or lower case) reach every stage that reads them: the GRPO rewards, the evaluation of `cookbook-infer run`'s
predictions and the Likert scorer's expected score, each through its own real reading of the answer.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cookbook_data.records import write_records
from cookbook_data.schemas import Prediction, VideoSample
from cookbook_data.testing import VideoSet
from cookbook_eval.config import VideoPhy2Config
from cookbook_eval.metrics import evaluate_videophy2
from cookbook_infer.backends.transformers import TransformersBackend
from cookbook_infer.run import Predictor, PredictorConfig
from cookbook_infer.testing.backends import AnswersInTurn
from cookbook_infer.testing.pytest_plugin import TinyCheckpoints
from cookbook_reward.config import ScorerConfig
from cookbook_reward.rewards import choice_accuracy_reward, score_accuracy_reward
from cookbook_reward.scorers import build_scorer


@pytest.mark.parametrize(
    ("answer", "reward"),
    [("4/5", 1.0), ("**Score:** 3 out of 5", 0.5), ("Score: **4/5**", 1.0), ("4/10", 0.0)],
)
def test_the_dense_score_reward_reads_a_fraction_of_the_scale(answer: str, reward: float) -> None:
    result, metrics = score_accuracy_reward(f"<think>The ball falls.</think>\n\n<answer>\n{answer}\n</answer>", "4")
    assert result == reward
    assert metrics["score_unparseable"] == float(answer == "4/10")  # another scale is never rescaled


@pytest.mark.parametrize(
    ("answer", "reward"),
    [("**B**", 1.0), ("**B.** the cup", 1.0), ("(b)", 1.0), ("b", 1.0), ("**A**", 0.0), ("b car turns", 0.0)],
)
def test_the_choice_reward_reads_an_option_in_markdown_or_lower_case(answer: str, reward: float) -> None:
    result, metrics = choice_accuracy_reward(f"<think>It is the cup.</think>\n\n<answer>{answer}</answer>", "B")
    assert result == reward
    assert metrics["choice_unparseable"] == float(answer == "b car turns")


OUTPUTS = {"critic": ["**Score:** 4/5", "2 out of 5"], "multiple-choice": ["**B.** the cup", "(a)"]}
"""What a model writes for two samples whose physics labels are 4 and 2 and whose answers are B and A."""


@pytest.mark.parametrize(("task", "evaluated_as"), [("critic", "critic"), ("multiple-choice", "multiple-choice")])
def test_the_evaluation_reads_predictions_written_in_these_forms(task: str, evaluated_as: str, tmp_path: Path) -> None:
    samples = [
        VideoSample(
            id=f"v{i}",
            path=f"v{i}.mp4",
            labels={"pc": physics, "question": "What falls?", "options": ["the ball", "the cup"], "answer": letter},
        )
        for i, (physics, letter) in enumerate([(4, "B"), (2, "A")])
    ]
    write_records(tmp_path / "m.jsonl", VideoSample, samples)
    config = PredictorConfig(model="nvidia/Cosmos-Reason2-8B", task=task)
    predictor = Predictor.from_config(config, tmp_path, backend=AnswersInTurn(OUTPUTS[task]))
    write_records(tmp_path / "p.jsonl", Prediction, predictor.answer(samples, predictor.conversations(samples)))

    summary = evaluate_videophy2(
        VideoPhy2Config(
            manifest=tmp_path / "m.jsonl",
            predictions=tmp_path / "p.jsonl",
            out=tmp_path / "out",
            task=evaluated_as,
            bootstrap=0,
        )
    )

    assert (summary.coverage.evaluated, summary.coverage.unparseable.count) == (2, 0)
    accuracy = summary.likert.exact_accuracy if summary.likert is not None else None
    if summary.multiple_choice is not None:
        accuracy = summary.multiple_choice.accuracy
    assert accuracy is not None and accuracy.value == 1.0


def test_the_likert_scorer_reads_the_expected_score_at_the_numerator(
    tiny_checkpoints: TinyCheckpoints, synthetic_videos: VideoSet
) -> None:
    """The score written as ``4/5`` is read where ``4`` would have been: after the same text, so with the same
    distribution over 1-5 as the bare score."""
    tiny = TransformersBackend(str(tiny_checkpoints("reason2")))
    sample = VideoSample(id="v", path=str(synthetic_videos.good["h264_24fps"].path))
    texts = ["<think>It glides.</think>\n\nScore: **4/5**", "<think>It glides.</think>\n\nScore: **4**"]
    backend = AnswersInTurn(texts, model_id=tiny.model_id, probabilities_from=tiny)
    scorer = build_scorer(ScorerConfig(model=tiny.model_id, scorer="likert", nframes=4), Path("/"), backend)

    fraction, bare = (scorer.score([sample])[0] for _ in texts)

    assert fraction.score == bare.score == 4.0
    assert fraction.expected_score is not None
    assert fraction.expected_score == pytest.approx(bare.expected_score, rel=1e-6)
    assert fraction.probabilities == pytest.approx(bare.probabilities, rel=1e-6)
