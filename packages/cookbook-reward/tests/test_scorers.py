"""Scorers on the tiny checkpoints: probabilities from real forward passes, checked against a hand computation.

A random tiny model writes noise, never a digit, so where a test needs a readable answer the backend's
*generations* are scripted (:func:`scripted`); the probabilities at the answer position still come
from the real model's forward pass over the prompt, the video and the scripted text before the answer.
"""

from collections.abc import Sequence
from pathlib import Path

import pytest
import torch

from cookbook_data.schemas import Conversation, VideoSample
from cookbook_data.testing import VideoSet
from cookbook_infer.backends.transformers import TransformersBackend
from cookbook_infer.run import PreparedSample
from cookbook_infer.testing import Arch
from cookbook_infer.testing.backends import AnswersInTurn
from cookbook_infer.testing.pytest_plugin import TinyCheckpoints
from cookbook_reward.config import ScorerConfig
from cookbook_reward.scorers import AnswerScorer, JointScorer, YesNoScorer, build_scorer, expected_value

ARCHS: list[Arch] = ["reason1", "reason2"]


def scripted(backend: TransformersBackend, answers: Sequence[str]) -> AnswersInTurn:
    """A real backend whose generated texts are replaced, in turn, by ``answers``."""
    return AnswersInTurn(answers, model_id=backend.model_id, probabilities_from=backend)


@pytest.fixture(scope="module", params=ARCHS)
def tiny(request: pytest.FixtureRequest, tiny_checkpoints: TinyCheckpoints) -> TransformersBackend:
    return TransformersBackend(str(tiny_checkpoints(request.param)))


@pytest.fixture
def samples(synthetic_videos: VideoSet) -> list[VideoSample]:
    names = ("h264_24fps", "mpeg4_8fps")
    return [
        VideoSample(
            id=name,
            path=str(synthetic_videos.good[name].path),
            caption="A white square moves across a grey background.",
            metadata={"rule": "An object keeps its shape while it moves."},
        )
        for name in names
    ]


def config(tiny: TransformersBackend, scorer: str, **options: object) -> ScorerConfig:
    return ScorerConfig.model_validate({"model": tiny.model_id, "scorer": scorer, "nframes": 4, **options})


def hand_distribution(
    tiny: TransformersBackend, conversation: Conversation, prefix: str, tokens: list[str]
) -> list[float]:
    """Softmax of the model's last-position logits, restricted to ``tokens`` and renormalised."""
    inputs = tiny._inputs([conversation], [prefix])
    with torch.inference_mode():
        logits = tiny.loaded.model(**inputs).logits[0, -1].double()
    ids = [tiny.loaded.processor.tokenizer.convert_tokens_to_ids(token) for token in tokens]
    chosen = torch.softmax(logits, dim=-1)[ids]
    return (chosen / chosen.sum()).tolist()


def test_the_expected_score_equals_a_hand_computation_from_the_logits(
    tiny: TransformersBackend, samples: list[VideoSample]
) -> None:
    texts = ["<think>\nThe square glides.\n</think>\n\n<answer>\n4\n</answer>", "The motion is smooth.\n2"]
    backend = scripted(tiny, texts)
    scorer = build_scorer(config(tiny, "likert"), Path("/"), backend)

    records = scorer.score(samples)

    assert [r.score for r in records] == [4.0, 2.0]
    assert [r.score_kind for r in records] == ["physics_likert", "physics_likert"]
    for record, conversation, text in zip(records, backend.asked, texts, strict=True):
        prefix = text[: text.rindex("4" if record.score == 4 else "2")]
        probabilities = hand_distribution(tiny, conversation, prefix, ["1", "2", "3", "4", "5"])
        expected = sum(k * p for k, p in zip(range(1, 6), probabilities, strict=True))
        assert record.expected_score == pytest.approx(expected, rel=1e-4)
        assert list(record.probabilities.values()) == pytest.approx(probabilities, rel=1e-4)
        assert record.expected_score is not None and 1 < record.expected_score < 5
        assert record.sample_scores == [record.score]
        assert record.rewards["parsed_fraction"] == 1.0
        assert 0 < record.rewards["candidate_mass"] <= 1
    assert records[0].critique == "The square glides."
    assert records[1].critique is None


def test_an_unparseable_answer_is_kept_as_no_score(tiny: TransformersBackend, samples: list[VideoSample]) -> None:
    scorer = build_scorer(config(tiny, "likert"), Path("/"), scripted(tiny, ["looks fine", "7"]))
    records = scorer.score(samples)
    assert [(r.score, r.expected_score, r.sample_scores) for r in records] == [(None, None, [None])] * 2
    assert all(r.rewards == {"parsed_fraction": 0.0} for r in records)


def test_several_samples_per_video_give_mean_and_spread(tiny: TransformersBackend, samples: list[VideoSample]) -> None:
    answers = ["4", "2", "5", "3", "3", "nothing"]
    scorer = build_scorer(config(tiny, "likert", samples=3, temperature=0.7), Path("/"), scripted(tiny, answers))
    first, second = scorer.score(samples)
    assert first.sample_scores == [4.0, 2.0, 5.0]
    assert first.score == pytest.approx(11 / 3)
    assert first.score_std == pytest.approx(torch.tensor([4.0, 2.0, 5.0]).std(unbiased=False).item())
    assert second.sample_scores == [3.0, 3.0, None]
    assert (second.score, second.score_std) == (3.0, 0.0)
    assert second.rewards["parsed_fraction"] == pytest.approx(2 / 3)
    assert first.expected_score is not None
    assert sum(first.probabilities.values()) == pytest.approx(1.0)


def test_several_samples_need_sampling(tiny: TransformersBackend) -> None:
    with pytest.raises(ValueError, match="samples = 3 needs temperature > 0"):
        build_scorer(config(tiny, "likert", samples=3, temperature=0.0), Path("/"), tiny)


def test_the_yes_no_score_is_the_probability_of_no(tiny: TransformersBackend, samples: list[VideoSample]) -> None:
    scorer = build_scorer(config(tiny, "yesno"), Path("/"), tiny)
    assert isinstance(scorer, YesNoScorer)
    records = scorer.score(samples)
    for record, conversation in zip(records, scorer.predictor.conversations(samples), strict=True):
        p_yes, p_no = hand_distribution(tiny, conversation, "", ["Yes", "No"])
        assert record.score == pytest.approx(p_no, rel=1e-4)
        assert record.probabilities == pytest.approx({"Yes": p_yes, "No": p_no}, rel=1e-4)
        assert record.score_kind == "reward_model_yes_no"
    assert "Does the video contain any anomalies or artifacts?" in str(scorer.predictor.conversations(samples)[0])


def test_the_yes_no_scorer_takes_the_reward_model_s_frame_recipe(
    tiny: TransformersBackend, samples: list[VideoSample]
) -> None:
    recipe = ScorerConfig(model=tiny.model_id, scorer="yesno", max_strided_frames=8, total_pixels=64 * 28 * 28)
    scorer = build_scorer(recipe, Path("/"), tiny)
    assert isinstance(scorer, YesNoScorer)
    [part] = scorer.predictor.conversations(samples[:1])[0].video_parts()
    assert (part.fps, part.nframes, part.max_strided_frames) == (None, None, 8)
    assert scorer.resolved()["vision"]["max_strided_frames"] == 8
    [record] = scorer.score(samples[:1])
    _, p_no = hand_distribution(tiny, scorer.predictor.conversations(samples[:1])[0], "", ["Yes", "No"])
    assert record.score == pytest.approx(p_no, rel=1e-4)


def test_adherence_asks_about_the_caption_and_the_joint_verdict_needs_both(
    tiny: TransformersBackend, samples: list[VideoSample]
) -> None:
    # Joint scoring asks physics for both videos, then adherence for both.
    backend = scripted(tiny, ["5", "4", "4", "2"])
    scorer = build_scorer(config(tiny, "videophy2"), Path("/"), backend)
    assert isinstance(scorer, JointScorer)
    records = scorer.score(samples)
    assert [r.score for r in records] == [1.0, 0.0]
    assert records[0].rewards["physics"] == 5.0
    assert records[0].rewards["adherence"] == 4.0
    assert records[1].rewards["adherence"] == 2.0
    assert {"physics_expected", "adherence_expected"} <= records[0].rewards.keys()
    adherence_prompt = str(backend.asked[2])
    assert "A white square moves across a grey background." in adherence_prompt
    assert "How well does this video follow the text description?" in adherence_prompt


def test_a_sample_without_a_caption_keeps_its_physics_score_and_gets_no_joint_verdict(
    tiny: TransformersBackend, samples: list[VideoSample]
) -> None:
    backend = scripted(tiny, ["5", "4", "4"])  # physics for both, adherence for the captioned one
    scorer = build_scorer(config(tiny, "videophy2"), Path("/"), backend)
    uncaptioned = samples[0].model_copy(update={"caption": None})
    first, second = scorer.score([uncaptioned, samples[1]])
    assert first.score is None and first.rewards["physics"] == 5.0 and "adherence" not in first.rewards
    assert first.critique is not None and "adherence: not asked (h264_24fps: caption is missing)" in first.critique
    assert (second.score, second.rewards["physics"], second.rewards["adherence"]) == (1.0, 4.0, 4.0)
    assert len(backend.asked) == 3


def test_adherence_without_a_caption_fails_naming_the_sample(
    tiny: TransformersBackend, samples: list[VideoSample]
) -> None:
    scorer = build_scorer(config(tiny, "adherence"), Path("/"), scripted(tiny, ["4"]))
    with pytest.raises(ValueError, match=r"h264_24fps: caption is missing"):
        scorer.score([samples[0].model_copy(update={"caption": None})])


def test_the_rule_task_reads_0_1_2_and_its_probabilities(tiny: TransformersBackend, samples: list[VideoSample]) -> None:
    backend = scripted(tiny, ["1", "0"])
    scorer = build_scorer(config(tiny, "rule"), Path("/"), backend)
    records = scorer.score(samples)
    assert [r.score for r in records] == [1.0, 0.0]
    assert all(set(r.probabilities) == {"0", "1", "2"} for r in records)
    assert all(r.expected_score is None for r in records)
    assert "Physical rule: An object keeps its shape while it moves." in str(backend.asked[0])


def test_the_critic_gives_a_verdict_with_its_critique(tiny: TransformersBackend, samples: list[VideoSample]) -> None:
    answers = ["<think>The square keeps its shape.</think>\n\nApprove", "<think>It vanishes.</think>\n\nReject"]
    scorer = build_scorer(config(tiny, "critic"), Path("/"), scripted(tiny, answers))
    assert isinstance(scorer, AnswerScorer)
    records = scorer.score(samples)
    assert [(r.score, r.critique, r.score_kind) for r in records] == [
        (1.0, "The square keeps its shape.", "approve_reject"),
        (0.0, "It vanishes.", "approve_reject"),
    ]


@pytest.mark.parametrize("name", ["likert", "adherence", "rule", "videophy2", "yesno"])
def test_scorers_reading_probabilities_refuse_a_chat_completion_server_up_front(name: str) -> None:
    config = ScorerConfig(model="served-model", scorer=name, backend="openai", base_url="http://127.0.0.1:1/v1")
    with pytest.raises(ValueError, match=f"--scorer {name} reads the answer token's probabilities"):
        build_scorer(config, Path("/"))


@pytest.mark.parametrize(
    ("settings", "refused"),
    [
        ({"scorer": "yesno", "model": "m", "samples": 4, "temperature": 0.6}, "samples"),
        ({"scorer": "yesno", "model": "m", "reasoning": True}, "reasoning"),
        ({"scorer": "trajectory", "samples": 2, "temperature": 0.6, "reasoning": True}, "samples, reasoning"),
    ],
)
def test_settings_of_drawn_answers_are_refused_by_a_scorer_that_draws_none(
    settings: dict[str, object], refused: str
) -> None:
    with pytest.raises(ValueError, match=f"{refused}: the {settings['scorer']} scorer draws no answers"):
        ScorerConfig.model_validate(settings)
    # the defaults, given or not, and the scorers that do draw answers take them
    ScorerConfig.model_validate({"scorer": settings["scorer"], "model": settings.get("model"), "samples": 1})
    ScorerConfig.model_validate({**settings, "scorer": "likert", "model": "m"})
    ScorerConfig.model_validate({**settings, "scorer": "trajectory", "model": "m"})


def test_expected_value_weights_each_score_by_its_probability() -> None:
    assert expected_value({"1": 0.0, "2": 0.5, "3": 0.0, "4": 0.5, "5": 0.0}) == 3.0


@pytest.mark.parametrize("name", ["yesno", "likert", "videophy2"])
def test_samples_prepared_ahead_score_like_the_samples_themselves(
    tiny: TransformersBackend, samples: list[VideoSample], name: str
) -> None:
    answers = ["<answer>\n4\n</answer>", "3"] * 4
    scorer = build_scorer(config(tiny, name), Path("/"), scripted(tiny, answers))
    prepared = [scorer.prepare(sample) for sample in samples]
    assert all(isinstance(item, PreparedSample) for item in prepared)
    direct = build_scorer(config(tiny, name), Path("/"), scripted(tiny, answers)).score(samples)
    ahead = scorer.score(prepared)
    assert [r.sample_id for r in ahead] == [s.id for s in samples]
    for ours, theirs in zip(ahead, direct, strict=True):
        assert ours.score_kind == theirs.score_kind
        assert ours.score == pytest.approx(theirs.score, rel=1e-6)  # P("No") for yesno, parsed answers otherwise
        assert ours.expected_score == (None if theirs.expected_score is None else pytest.approx(theirs.expected_score))
        assert ours.probabilities == pytest.approx(theirs.probabilities, rel=1e-6)


def test_the_joint_scorer_decodes_each_video_once_for_both_questions(
    tiny: TransformersBackend, samples: list[VideoSample], monkeypatch: pytest.MonkeyPatch
) -> None:
    from cookbook_data.video import sample_frames

    decoded: list[str] = []

    def counting(path: str, settings: object) -> object:
        decoded.append(Path(path).stem)
        return sample_frames(path, settings)  # type: ignore[arg-type]

    monkeypatch.setattr("cookbook_infer.vision.sample_frames", counting)
    scorer = build_scorer(config(tiny, "videophy2"), Path("/"), scripted(tiny, ["4", "5"] * 2))
    scorer.score(samples)
    assert sorted(decoded) == sorted(Path(str(s.path)).stem for s in samples)
