import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    mean_absolute_error,
    precision_recall_fscore_support,
)

from cookbook_data.ingest import FolderIngestConfig, ingest_folder
from cookbook_data.records import RecordFileError, read_records
from cookbook_data.schemas import ADHERENCE_NOT_ASKED, Prediction, ScoreRecord, VideoSample
from cookbook_eval.config import VideoPhy2Config
from cookbook_eval.metrics import (
    SUMMARY_FILE,
    VideoPhy2Summary,
    binary_metrics,
    calibration,
    choice_metrics,
    evaluate_videophy2,
    group_accuracy,
    joint_metrics,
    likert_metrics,
    summarize_videophy2,
)

CLASSES = [1, 2, 3, 4, 5]


def noisy_scores(n: int, seed: int, unparseable: float = 0.05) -> tuple[list[int], list[float | None]]:
    """Labels 1-5 and scores near them, some of them unparseable (None)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(1, 6, size=n)
    scores = np.clip(labels + rng.integers(-2, 3, size=n), 1, 5)
    broken = rng.random(n) < unparseable
    return [int(v) for v in labels], [None if bad else float(s) for s, bad in zip(scores, broken, strict=True)]


def sample(sample_id: str, **labels: object) -> VideoSample:
    metadata = labels.pop("metadata", {})
    return VideoSample.model_validate(
        {"id": sample_id, "url": f"https://example.com/{sample_id}.mp4", "labels": labels, "metadata": metadata}
    )


def prediction(sample_id: str, answer: str | None, model: str = "critic-a") -> Prediction:
    return Prediction(sample_id=sample_id, model=model, raw_text=answer or "no idea", answer=answer)


def config(tmp_path: Path, **changes: object) -> VideoPhy2Config:
    values: dict[str, object] = {"manifest": tmp_path / "m.jsonl", "predictions": tmp_path / "p.jsonl"}
    values["out"] = tmp_path / "out"
    values.update(changes)
    return VideoPhy2Config.model_validate(values)


def test_likert_metrics_match_sklearn_and_scipy() -> None:
    labels, scores = noisy_scores(500, seed=3)
    metrics = likert_metrics(labels, scores, resamples=0)
    y = np.array(labels)
    parseable = np.array([s is not None for s in scores])
    assert 0 < (~parseable).sum() < 60
    predicted = np.array([0 if s is None else int(s) for s in scores])  # 0 matches no label: counted wrong

    assert metrics.n == 500
    assert metrics.n_unparseable == int((~parseable).sum())
    assert metrics.n_parseable == int(parseable.sum())
    assert metrics.exact_accuracy.value == pytest.approx(accuracy_score(y, predicted))
    within = np.mean([s is not None and abs(s - label) <= 1 for s, label in zip(scores, labels, strict=True)])
    assert metrics.within_one_accuracy.value == pytest.approx(within)

    truth = y >= 4
    # An unparseable prediction is the class opposite to the label.
    said = np.where(parseable, predicted >= 4, ~truth)
    precision, recall, f1, _ = precision_recall_fscore_support(truth, said, average="binary")
    assert metrics.binary.accuracy == pytest.approx(accuracy_score(truth, said))
    assert metrics.binary.precision == pytest.approx(precision)
    assert metrics.binary.recall == pytest.approx(recall)
    assert metrics.binary.f1 == pytest.approx(f1)
    assert metrics.binary.true_positive + metrics.binary.false_negative == int(truth.sum())

    xs, ys = predicted[parseable].astype(float), y[parseable]
    assert metrics.pearson.value == pytest.approx(stats.pearsonr(xs, ys)[0], abs=1e-12)
    assert metrics.spearman.value == pytest.approx(stats.spearmanr(xs, ys)[0], abs=1e-12)
    assert metrics.pearson.n == metrics.spearman.n == int(parseable.sum())
    assert metrics.mean_absolute_error == pytest.approx(mean_absolute_error(ys, xs))

    expected = confusion_matrix(ys, xs.astype(int), labels=CLASSES)
    assert metrics.confusion.classes == CLASSES
    assert np.array_equal(np.array(metrics.confusion.matrix), expected)
    bad_rows = Counter(label for label, s in zip(labels, scores, strict=True) if s is None)
    assert metrics.confusion.unparseable == [bad_rows[c] for c in CLASSES]
    assert metrics.histogram.labels == [int(v) for v in np.bincount(y, minlength=6)[1:]]
    assert metrics.histogram.predicted == [int(v) for v in np.bincount(xs.astype(int), minlength=6)[1:]]


def test_continuous_scores_match_scipy_and_are_rounded_for_classes() -> None:
    rng = np.random.default_rng(11)
    labels = rng.integers(1, 6, size=300)
    scores = np.clip(labels + rng.normal(0, 0.8, size=300), 1, 5)
    metrics = likert_metrics([int(v) for v in labels], [float(v) for v in scores], resamples=0)
    assert metrics.pearson.value == pytest.approx(stats.pearsonr(scores, labels)[0], abs=1e-12)
    assert metrics.spearman.value == pytest.approx(stats.spearmanr(scores, labels)[0], abs=1e-12)
    assert metrics.fractional_scores == int(np.sum(scores != np.trunc(scores))) > 150
    rounded = np.floor(scores + 0.5).astype(int)
    assert metrics.exact_accuracy.value == pytest.approx(accuracy_score(labels, rounded))
    assert np.array_equal(np.array(metrics.confusion.matrix), confusion_matrix(labels, rounded, labels=CLASSES))


def test_scores_off_the_scale_or_not_numbers_are_unparseable() -> None:
    metrics = likert_metrics([4, 4, 4, 4, 4, 2], ["4", "7", "four", None, float("nan"), 2.0], resamples=0)
    assert metrics.n_unparseable == 4
    assert metrics.exact_accuracy.value == pytest.approx(2 / 6)
    assert metrics.binary.false_negative == 4  # every unparseable one had a positive label


def test_bootstrap_interval_contains_the_estimate_and_is_reproducible() -> None:
    labels, scores = noisy_scores(400, seed=5)
    first = likert_metrics(labels, scores, resamples=500, seed=7)
    again = likert_metrics(labels, scores, resamples=500, seed=7)
    other = likert_metrics(labels, scores, resamples=500, seed=8)
    for name in ("exact_accuracy", "within_one_accuracy", "pearson", "spearman"):
        estimate = getattr(first, name)
        assert estimate.ci_low is not None and estimate.ci_high is not None, name
        assert estimate.ci_low < estimate.value < estimate.ci_high, name
        assert getattr(again, name) == estimate, name
        assert (getattr(other, name).ci_low, getattr(other, name).ci_high) != (estimate.ci_low, estimate.ci_high)
    # A 99% interval is wider than a 90% one from the same resamples.
    wide = likert_metrics(labels, scores, resamples=500, seed=7, confidence=0.99).pearson
    narrow = likert_metrics(labels, scores, resamples=500, seed=7, confidence=0.90).pearson
    assert wide.ci_low < narrow.ci_low < narrow.ci_high < wide.ci_high  # type: ignore[operator]


def test_bootstrap_interval_agrees_with_scipy_percentile_bootstrap() -> None:
    rng = np.random.default_rng(9)
    labels = rng.integers(1, 6, size=100)
    scores = np.clip(labels + rng.integers(-3, 4, size=100), 1, 5).astype(float)
    ours = likert_metrics([int(v) for v in labels], [float(v) for v in scores], resamples=5000, seed=1)
    pearson = stats.bootstrap(
        (scores, labels.astype(float)),
        lambda a, b, axis: stats.pearsonr(a, b, axis=axis)[0],
        paired=True,
        vectorized=True,
        n_resamples=5000,
        method="percentile",
        random_state=2,
    ).confidence_interval
    # The 2.5% and 5% quantiles differ by about 0.025 here; Monte Carlo noise is a few thousandths.
    assert ours.pearson.ci_low == pytest.approx(pearson.low, abs=0.01)
    assert ours.pearson.ci_high == pytest.approx(pearson.high, abs=0.01)
    hits = (scores == labels).astype(float)
    accuracy = stats.bootstrap(
        (hits,), np.mean, n_resamples=5000, method="percentile", random_state=2
    ).confidence_interval
    assert ours.exact_accuracy.ci_low == pytest.approx(accuracy.low, abs=0.01)
    assert ours.exact_accuracy.ci_high == pytest.approx(accuracy.high, abs=0.01)


def test_no_resamples_means_no_interval_and_constant_scores_have_no_correlation() -> None:
    metrics = likert_metrics([1, 2, 3, 4, 5], [3.0, 3.0, 3.0, 3.0, 3.0], resamples=200)
    assert metrics.pearson.value is None and metrics.spearman.value is None
    assert metrics.pearson.ci_low is None
    assert metrics.exact_accuracy.value == pytest.approx(0.2)
    assert metrics.exact_accuracy.ci_low is not None
    plain = likert_metrics([1, 2, 3, 4, 5], [1.0, 2.0, 3.0, 5.0, 4.0], resamples=0)
    assert plain.pearson.value == pytest.approx(0.9) and plain.pearson.ci_low is None


def test_binary_metrics_count_unparseable_as_the_wrong_class() -> None:
    metrics = binary_metrics([True, True, False, False, True], [True, None, None, False, False], threshold=4)
    assert (metrics.true_positive, metrics.false_negative, metrics.false_positive, metrics.true_negative) == (
        1,
        2,
        1,
        1,
    )
    assert metrics.accuracy == pytest.approx(2 / 5)
    assert metrics.precision == pytest.approx(1 / 2)
    assert metrics.recall == pytest.approx(1 / 3)
    assert metrics.f1 == pytest.approx(2 * 0.5 * (1 / 3) / (0.5 + 1 / 3))
    nothing_positive = binary_metrics([False, False], [False, False], threshold=4)
    assert nothing_positive.precision is None and nothing_positive.recall is None and nothing_positive.f1 is None


def test_joint_metric_on_a_hand_made_example() -> None:
    # (pc, sa) labels and predictions; joint means both at least 4.
    metrics = joint_metrics(
        physics_labels=[5, 4, 2, 5, 4],
        adherence_labels=[4, 5, 5, 2, 4],
        physics_scores=[4.0, 3.0, 2.0, 5.0, None],
        adherence_scores=[5.0, 5.0, 4.0, 4.0, 4.0],
    )
    # labels joint: T, T, F, F, T; predicted: T, F, F, T, unparseable
    assert metrics.n == 5
    assert metrics.n_unparseable == 1
    assert metrics.label_rate == pytest.approx(3 / 5)
    assert metrics.predicted_rate == pytest.approx(2 / 4)
    assert metrics.binary.true_positive == 1
    assert metrics.binary.false_negative == 2  # the second sample and the unparseable one
    assert metrics.binary.false_positive == 1
    assert metrics.binary.true_negative == 1
    assert metrics.binary.accuracy == pytest.approx(2 / 5)


def test_choice_metrics_per_dataset() -> None:
    metrics = choice_metrics(
        labels=["A", "B", "C", "A", "D", "B"],
        answers=["A", "(b)", "D", None, "d.", "maybe"],
        datasets=["x", "x", "x", "y", "y", None],
        resamples=0,
    )
    assert metrics.n == 6
    assert metrics.n_unparseable == 2
    assert metrics.accuracy.value == pytest.approx(3 / 6)
    assert metrics.label_counts == {"A": 2, "B": 2, "C": 1, "D": 1}
    assert metrics.predicted_counts == {"A": 1, "B": 1, "D": 2}
    by_group = {group.group: (group.n, group.correct, group.unparseable) for group in metrics.per_dataset}
    assert by_group == {"x": (3, 2, 0), "y": (2, 1, 1), "(none)": (1, 0, 1)}


def test_group_accuracy_is_empty_without_groups() -> None:
    assert group_accuracy([None, None], [True, False], [False, False]) == []
    rows = group_accuracy(["b", "a", "b"], [True, False, False], [False, False, True])
    assert [(r.group, r.n, r.correct, r.unparseable, r.accuracy) for r in rows] == [
        ("a", 1, 0, 0, 0.0),
        ("b", 2, 1, 1, 0.5),
    ]


def test_calibration_bins_match_a_direct_computation() -> None:
    rng = np.random.default_rng(2)
    labels = rng.integers(1, 6, size=200)
    expected = np.clip(labels + rng.normal(0, 1, size=200), 1, 5)
    edges = list(np.linspace(1, 5, 5))
    truth = [int(v) for v in labels]
    result = calibration(truth, [float(v) for v in expected], edges=edges, threshold=4, source="expected_score")
    which = np.minimum(np.digitize(expected, edges) - 1, 3)
    assert sum(item.n for item in result.bins) == 200
    for item in result.bins:
        index = edges.index(item.low)
        members = which == index
        assert item.n == int(members.sum())
        assert item.mean_predicted == pytest.approx(expected[members].mean())
        assert item.mean_label == pytest.approx(labels[members].mean())
        assert item.positive_rate == pytest.approx((labels[members] >= 4).mean())
    gap = sum(item.n * abs(item.mean_predicted - item.mean_label) for item in result.bins) / 200
    assert result.mean_absolute_gap == pytest.approx(gap)


def test_summary_reports_missing_unlabelled_unparseable_and_duplicates(tmp_path: Path) -> None:
    samples = [
        sample("a", pc=5, metadata={"category": "fluid"}),
        sample("b", pc=4, metadata={"category": "fluid"}),
        sample("c", pc=2, metadata={"category": "solid"}),
        sample("d", pc=1),
        sample("e", pc=3),  # no prediction: missing
        sample("f"),  # no label: its prediction is unlabelled
    ]
    predictions = [
        prediction("a", "5"),
        prediction("b", None),  # unparseable
        prediction("c", "2"),
        prediction("d", "3.5"),  # a prediction is discrete: unparseable
        prediction("a", "1"),  # duplicate: the first one counts
        prediction("f", "4"),
        prediction("zzz", "4", model="critic-b"),  # not in the manifest
    ]
    summary = summarize_videophy2(samples, config(tmp_path, bootstrap=0), predictions=predictions)
    coverage = summary.coverage
    assert (coverage.manifest_samples, coverage.labelled, coverage.predictions, coverage.evaluated) == (6, 5, 7, 4)
    assert (coverage.missing.count, coverage.missing.first_ids) == (1, ["e"])
    assert (coverage.unlabelled.count, coverage.unlabelled.first_ids) == (2, ["f", "zzz"])
    assert (coverage.unparseable.count, coverage.unparseable.first_ids) == (2, ["b", "d"])
    assert (coverage.duplicates.count, coverage.duplicates.first_ids) == (1, ["a"])
    assert summary.models == ["critic-a", "critic-b"]
    likert = summary.likert
    assert likert is not None
    assert likert.n == 4 and likert.n_unparseable == 2
    assert likert.exact_accuracy.value == pytest.approx(2 / 4)  # a and c right; b and d count as wrong
    assert likert.pearson.n == 2
    categories = {row.group: (row.n, row.correct, row.unparseable) for row in summary.per_category}
    assert categories == {"fluid": (2, 1, 1), "solid": (1, 1, 0), "(none)": (1, 0, 1)}
    assert summary.joint is None
    assert summary.calibration is not None and summary.calibration.source == "predicted_score"
    assert any("unparseable prediction counts as wrong" in note for note in summary.notes)


def test_first_ids_are_capped(tmp_path: Path) -> None:
    samples = [sample(f"s{i}", pc=3) for i in range(30)]
    cfg = config(tmp_path, bootstrap=0, max_listed_ids=5)
    summary = summarize_videophy2(samples, cfg, predictions=[prediction("s0", "3")])
    assert summary.coverage.missing.count == 29
    assert summary.coverage.missing.first_ids == ["s1", "s2", "s3", "s4", "s5"]
    assert summary.likert is not None and summary.likert.exact_accuracy.value == 1.0


def test_scores_of_both_kinds_give_the_joint_metric(tmp_path: Path) -> None:
    samples = [sample("a", pc=5, sa=5), sample("b", pc=4, sa=2), sample("c", pc=2, sa=5), sample("d", pc=4, sa=4)]
    scores = [
        ScoreRecord(sample_id="a", score=4.0, score_kind="physics_likert", model="judge"),
        ScoreRecord(sample_id="a", score=5.0, score_kind="instruction_likert", model="judge"),
        ScoreRecord(sample_id="b", score=4.0, score_kind="physics_likert"),
        ScoreRecord(sample_id="b", score=4.0, score_kind="instruction_likert"),
        ScoreRecord(sample_id="c", score=1.0, score_kind="physics_likert"),
        ScoreRecord(sample_id="c", score=5.0, score_kind="instruction_likert"),
        ScoreRecord(sample_id="d", score=None, score_kind="physics_likert"),
        ScoreRecord(sample_id="d", score=4.0, score_kind="instruction_likert"),
        ScoreRecord(sample_id="a", score=1.0, score_kind="trajectory"),
    ]
    cfg = config(tmp_path, predictions=None, scores=tmp_path / "s.jsonl", bootstrap=0)
    summary = summarize_videophy2(samples, cfg, scores=scores)
    assert summary.coverage.other_score_records == 1
    assert summary.coverage.unparseable.first_ids == ["d"]
    assert summary.models == ["judge"]
    assert summary.likert is not None and summary.likert.score_kind == "physics_likert"
    assert summary.likert.exact_accuracy.value == pytest.approx(1 / 4)  # only b: 4 == 4
    joint = summary.joint
    assert joint is not None
    # labels joint: a T, b F, c F, d T; predicted: a T, b T, c F, d unparseable
    assert (joint.n, joint.n_unparseable) == (4, 1)
    assert (joint.binary.true_positive, joint.binary.false_positive) == (1, 1)
    assert (joint.binary.true_negative, joint.binary.false_negative) == (1, 1)

    adherence = summarize_videophy2(samples, cfg.model_copy(update={"label_field": "sa"}), scores=scores)
    assert adherence.likert is not None and adherence.likert.score_kind == "instruction_likert"
    assert adherence.likert.exact_accuracy.value == pytest.approx(3 / 4)  # a, c and d


def test_joint_score_records_carry_both_scores(tmp_path: Path) -> None:
    write_jsonl(
        tmp_path / "m.jsonl",
        [
            {"id": "a", "url": "https://e.com/a.mp4", "labels": {"pc": 5, "sa": 4}},
            {"id": "b", "url": "https://e.com/b.mp4", "labels": {"pc": 2, "sa": 5}},
        ],
    )
    write_jsonl(
        tmp_path / "s.jsonl",
        [
            {
                "sample_id": "a",
                "score": 1.0,
                "score_kind": "videophy2_joint",
                "rewards": {"physics": 5, "adherence": 4},
            },
            {
                "sample_id": "b",
                "score": 0.0,
                "score_kind": "videophy2_joint",
                "rewards": {"physics": 4, "adherence": 5},
            },
            {"sample_id": "b", "score": 2.0, "score_kind": "physics_likert"},
        ],
    )
    summary = evaluate_videophy2(config(tmp_path, predictions=None, scores=tmp_path / "s.jsonl", bootstrap=0))
    assert summary.likert is not None
    # b's physics_likert record (2) takes precedence over its joint record's copy (4).
    assert summary.likert.exact_accuracy.value == pytest.approx(1.0)
    assert summary.joint is not None
    assert summary.joint.binary.accuracy == pytest.approx(1.0)
    assert summary.joint.label_rate == pytest.approx(0.5)
    assert summary.coverage.predictions == 3


def test_expected_scores_drive_the_calibration_when_present(tmp_path: Path) -> None:
    samples = [sample(f"s{i}", pc=label) for i, label in enumerate([1, 2, 4, 5, 5])]
    expected = [1.2, 2.6, 3.9, 4.4, 4.9]
    scores = [
        ScoreRecord(sample_id=f"s{i}", score=float(round(e)), score_kind="physics_likert", expected_score=e)
        for i, e in enumerate(expected)
    ]
    cfg = config(tmp_path, predictions=None, scores=tmp_path / "s.jsonl", bootstrap=0, calibration_bins=4)
    summary = summarize_videophy2(samples, cfg, scores=scores)
    assert summary.calibration is not None
    assert summary.calibration.source == "expected_score"
    bins = [(b.low, b.high, b.n) for b in summary.calibration.bins]
    assert bins == [(1.0, 2.0, 1), (2.0, 3.0, 1), (3.0, 4.0, 1), (4.0, 5.0, 2)]
    assert summary.calibration.bins[-1].mean_predicted == pytest.approx(4.65)

    plain = summarize_videophy2(
        samples, cfg, scores=[ScoreRecord(sample_id="s0", score=1.0, score_kind="physics_likert")]
    )
    assert plain.calibration is not None and plain.calibration.source == "predicted_score"


def test_expected_scores_of_joint_records_drive_the_calibration_too(tmp_path: Path) -> None:
    samples = [sample(f"s{i}", pc=label, sa=4) for i, label in enumerate([1, 2, 4, 5, 5])]
    expected = [1.2, 2.6, 3.9, 4.4, 4.9]
    scores = [
        ScoreRecord(
            sample_id=f"s{i}",
            score=float(round(e) >= 4),
            score_kind="videophy2_joint",
            rewards={"physics": float(round(e)), "adherence": 4.0, "physics_expected": e, "adherence_expected": 4.1},
        )
        for i, e in enumerate(expected)
    ]
    cfg = config(tmp_path, predictions=None, scores=tmp_path / "s.jsonl", bootstrap=0, calibration_bins=4)
    summary = summarize_videophy2(samples, cfg, scores=scores)
    assert summary.calibration is not None and summary.calibration.source == "expected_score"
    assert summary.calibration.bins[-1].mean_predicted == pytest.approx(4.65)


def test_multiple_choice_summary(tmp_path: Path) -> None:
    samples = [
        sample("q1", answer="A", metadata={"dataset": "vqa-x", "category": "kitchen"}),
        sample("q2", answer="c", metadata={"dataset": "vqa-x", "category": "street"}),
        sample("q3", answer="B", metadata={"dataset": "vqa-y", "category": "street"}),
        sample("q4", pc=3),  # no answer label: not evaluated
    ]
    predictions = [prediction("q1", "A"), prediction("q2", "B"), prediction("q3", None), prediction("q4", "A")]
    summary = summarize_videophy2(
        samples, config(tmp_path, task="multiple_choice", bootstrap=0), predictions=predictions
    )
    assert summary.likert is None
    choice = summary.multiple_choice
    assert choice is not None
    assert choice.accuracy.value == pytest.approx(1 / 3)
    assert {g.group: g.accuracy for g in choice.per_dataset} == {"vqa-x": 0.5, "vqa-y": 0.0}
    assert {g.group: g.correct for g in summary.per_category} == {"kitchen": 1, "street": 0}
    assert summary.coverage.unparseable.first_ids == ["q3"]
    assert summary.coverage.unlabelled.first_ids == ["q4"]


def test_categories_of_a_folder_ingested_with_a_labels_file_are_read_from_its_labels(tmp_path: Path) -> None:
    folder = tmp_path / "videos"
    folder.mkdir()
    for name in ("a", "b", "c"):
        (folder / f"{name}.mp4").write_bytes(b"")  # ingestion neither decodes nor probes
    labels = tmp_path / "labels.csv"
    labels.write_text("video,pc,category\na.mp4,4,fluids\nb.mp4,2,fluids\nc.mp4,5,rigid\n")
    manifest = tmp_path / "manifest.jsonl"
    ingest_folder(FolderIngestConfig(folder=folder, out=manifest, labels=labels))
    samples = list(read_records(manifest, VideoSample))
    assert all("category" in s.labels and "category" not in s.metadata for s in samples)
    predictions = [prediction("a", "4"), prediction("b", "3"), prediction("c", "5")]
    summary = summarize_videophy2(samples, config(tmp_path, bootstrap=0), predictions=predictions)
    assert {g.group: (g.n, g.correct) for g in summary.per_category} == {"fluids": (2, 1), "rigid": (1, 1)}
    assert not any(note.startswith("No evaluated sample") for note in summary.notes)


def test_an_absent_breakdown_key_is_noted_not_left_silently_empty(tmp_path: Path) -> None:
    likert = summarize_videophy2(
        [sample("x", pc=3), sample("y", pc=4)],
        config(tmp_path, bootstrap=0, category_key="kind"),
        predictions=[prediction("x", "3"), prediction("y", "4")],
    )
    assert likert.per_category == []
    assert "No evaluated sample has `kind` in its metadata or labels, so there is no accuracy per category." in (
        likert.notes
    )
    choice = summarize_videophy2(
        [sample("q", answer="A")],
        config(tmp_path, task="multiple_choice", bootstrap=0),
        predictions=[prediction("q", "A")],
    )
    assert choice.multiple_choice is not None and choice.multiple_choice.per_dataset == []
    assert [note for note in choice.notes if note.startswith("No evaluated")] == [
        "No evaluated sample has `dataset` in its metadata or labels, so there is no accuracy per dataset.",
        "No evaluated sample has `category` in its metadata or labels, so there is no accuracy per category.",
    ]


def test_the_task_may_be_spelled_as_cookbook_infer_spells_it(tmp_path: Path) -> None:
    assert config(tmp_path, task="multiple-choice").task == "multiple_choice"
    assert config(tmp_path, task="multiple_choice").task == "multiple_choice"
    with pytest.raises(ValueError, match="task"):
        config(tmp_path, task="multiple choice")


def test_a_bad_label_names_the_manifest_and_the_sample(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"m\.jsonl: sample 'x': labels\.pc is 7"):
        summarize_videophy2([sample("x", pc=7)], config(tmp_path), predictions=[])
    with pytest.raises(ValueError, match=r"labels\.pc is 'high'"):
        summarize_videophy2([sample("x", pc="high")], config(tmp_path), predictions=[])
    with pytest.raises(ValueError, match=r"sample id 'x' appears more than once"):
        summarize_videophy2([sample("x", pc=3), sample("x", pc=4)], config(tmp_path), predictions=[])


def test_config_checks_its_inputs(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="either `predictions` or `scores`"):
        config(tmp_path, scores=tmp_path / "s.jsonl")
    with pytest.raises(ValueError, match="threshold"):
        config(tmp_path, threshold=6)
    with pytest.raises(ValueError, match="no default score kind"):
        config(tmp_path, predictions=None, scores=tmp_path / "s.jsonl", label_field="joint")
    assert config(tmp_path, label_field="sa").likert_kind() == "instruction_likert"


def write_jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_evaluate_writes_the_summary_and_the_resolved_config(tmp_path: Path) -> None:
    labels, scores = noisy_scores(120, seed=4)
    write_jsonl(
        tmp_path / "m.jsonl",
        [{"id": f"v{i}", "url": f"https://e.com/{i}.mp4", "labels": {"pc": y}} for i, y in enumerate(labels)],
    )
    write_jsonl(
        tmp_path / "p.jsonl",
        [
            {"sample_id": f"v{i}", "model": "m", "raw_text": "", "answer": None if s is None else str(int(s))}
            for i, s in enumerate(scores)
        ],
    )
    summary = evaluate_videophy2(config(tmp_path, bootstrap=100, seed=3))
    written = VideoPhy2Summary.model_validate_json((tmp_path / "out" / SUMMARY_FILE).read_text())
    assert written == summary
    assert summary.likert is not None
    assert summary.likert.exact_accuracy.value == pytest.approx(
        likert_metrics(labels, scores, resamples=0).exact_accuracy.value
    )
    resolved = json.loads((tmp_path / "out" / "config.resolved.json").read_text())
    assert resolved["config"]["bootstrap"] == 100 and resolved["config"]["seed"] == 3
    assert "cookbook-eval" in resolved["versions"]


def test_evaluate_names_the_file_and_line_of_a_bad_record(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "m.jsonl", [{"id": "a", "url": "https://e.com/a.mp4", "labels": {"pc": 3}}])
    write_jsonl(
        tmp_path / "p.jsonl",
        [{"sample_id": "a", "model": "m", "raw_text": "", "answer": "3"}, {"sample_id": "b", "raw_text": ""}],
    )
    with pytest.raises(RecordFileError, match=r"p\.jsonl:2: model: Field required"):
        evaluate_videophy2(config(tmp_path))


def write_predictions(tmp_path: Path, tasks: list[str | None]) -> None:
    """A manifest of labelled samples and one prediction of each task for them, its `task` as cookbook-infer
    writes it (`<task>:<template>@<version>`)."""
    labels = {"pc": 4, "sa": 2, "plausible": 4, "answer": "B"}
    write_jsonl(
        tmp_path / "m.jsonl",
        [{"id": f"v{i}", "url": f"https://e.com/{i}.mp4", "labels": labels} for i in range(len(tasks))],
    )
    write_jsonl(
        tmp_path / "p.jsonl",
        [
            {"sample_id": f"v{i}", "model": "m", "task": task and f"{task}:prompt@1", "raw_text": "4", "answer": "4"}
            for i, task in enumerate(tasks)
        ],
    )


@pytest.mark.parametrize(
    ("tasks", "asked", "refusal"),
    [
        (
            ["rule"] * 3,
            {},
            "task rule (3), but --task critic --label-field pc evaluates only critic, critic-thinking: rule fits "
            "--label-field <your 0-2 label> --set min_score=0 --set max_score=2 --threshold 1",
        ),
        (
            ["rule"],
            {"label_field": "plausible"},
            "task rule (1), but --task critic --label-field plausible evaluates only critic, critic-thinking, "
            "adherence: rule fits --label-field plausible --set min_score=0 --set max_score=2 --threshold 1",
        ),
        (
            ["rule"],
            {"label_field": "plausible", "min_score": 1, "max_score": 2, "threshold": 2},
            "task rule (1), but --task critic --label-field plausible evaluates only critic, critic-thinking, "
            "adherence: rule fits --label-field plausible --set min_score=0 --set max_score=2 --threshold 1",
        ),
        (
            ["critic", "adherence"],
            {"label_field": "plausible", "min_score": 0, "max_score": 2, "threshold": 1},
            "tasks critic (1), adherence (1), but --task critic --label-field plausible evaluates only rule: "
            "critic fits --label-field pc; adherence fits --label-field sa",
        ),
        (
            ["adherence"] * 2,
            {},
            "task adherence (2), but --task critic --label-field pc evaluates only critic, critic-thinking: "
            "adherence fits --label-field sa",
        ),
        (
            ["critic-thinking", "critic"],
            {"label_field": "sa"},
            "tasks critic-thinking (1), critic (1), but --task critic --label-field sa evaluates only adherence: "
            "critic-thinking fits --label-field pc; critic fits --label-field pc",
        ),
        (
            ["critic", "critic", "adherence"],
            {},
            "tasks critic (2), adherence (1), but --task critic --label-field pc evaluates only critic, "
            "critic-thinking: adherence fits --label-field sa",
        ),
        (
            ["critic"],
            {"task": "multiple_choice"},
            "task critic (1), but --task multiple-choice evaluates only multiple-choice: critic fits --task critic "
            "--label-field pc",
        ),
        (
            ["multiple-choice"],
            {},
            "task multiple-choice (1), but --task critic --label-field pc evaluates only critic, critic-thinking: "
            "multiple-choice fits --task multiple-choice",
        ),
        (
            ["approve-reject", "critic"],
            {"label_field": "plausible"},
            "tasks approve-reject (1), critic (1), but --task critic --label-field plausible evaluates only critic, "
            "critic-thinking, adherence: approve-reject answers are read by no VideoPhy-2 metric",
        ),
    ],
)
def test_predictions_of_a_task_the_evaluation_would_misread_are_refused(
    tmp_path: Path, tasks: list[str | None], asked: dict[str, object], refusal: str
) -> None:
    write_predictions(tmp_path, tasks)
    with pytest.raises(ValueError) as refused:
        evaluate_videophy2(config(tmp_path, **asked))
    assert str(refused.value) == f"{tmp_path / 'p.jsonl'}: holds predictions of {refusal}"
    assert not (tmp_path / "out").exists()


def test_rule_predictions_are_read_against_a_label_of_the_users_own_on_the_rule_scale(tmp_path: Path) -> None:
    verdicts, answers = [0, 1, 2], ["0", "1", "1"]
    write_jsonl(
        tmp_path / "m.jsonl",
        [
            {"id": f"v{i}", "url": f"https://e.com/{i}.mp4", "labels": {"rule_answer": v}}
            for i, v in enumerate(verdicts)
        ],
    )
    write_jsonl(
        tmp_path / "p.jsonl",
        [
            {"sample_id": f"v{i}", "model": "m", "task": "rule:videophy2_rule@1", "raw_text": a, "answer": a}
            for i, a in enumerate(answers)
        ],
    )
    rule_scale = {"label_field": "rule_answer", "min_score": 0, "max_score": 2, "threshold": 1, "bootstrap": 0}
    summary = evaluate_videophy2(config(tmp_path, **rule_scale))
    assert summary.likert is not None and summary.likert.exact_accuracy.value == pytest.approx(2 / 3)
    assert (summary.coverage.evaluated, summary.coverage.unparseable.count) == (3, 0)


def test_a_label_of_the_users_own_takes_either_likert_task_and_tasks_cookbook_infer_does_not_name(
    tmp_path: Path,
) -> None:
    write_predictions(tmp_path, ["critic", "critic-thinking", "adherence", None, "my-judge"])
    summary = evaluate_videophy2(config(tmp_path, label_field="plausible", bootstrap=0))
    assert summary.likert is not None and summary.likert.exact_accuracy.value == 1.0
    assert summary.coverage.evaluated == 5

    write_predictions(tmp_path, ["adherence", None, "my-judge"])
    summary = evaluate_videophy2(config(tmp_path, label_field="sa", bootstrap=0))
    assert (summary.coverage.evaluated, summary.coverage.unparseable.count) == (3, 0)


def test_scores_of_a_kind_that_does_not_score_the_label_are_refused(tmp_path: Path) -> None:
    scored = {"predictions": None, "scores": tmp_path / "s.jsonl"}
    with pytest.raises(
        ValueError,
        match="label `pc` is scored by physics_likert, not instruction_likert: leave `score_kind` unset, or "
        "compare instruction_likert with label `sa`",
    ):
        config(tmp_path, **scored, score_kind="instruction_likert")
    with pytest.raises(ValueError, match="label `sa` is scored by instruction_likert, not physics_likert"):
        config(tmp_path, **scored, label_field="sa", score_kind="physics_likert")
    assert config(tmp_path, **scored, label_field="sa", score_kind="instruction_likert").likert_kind() == (
        "instruction_likert"
    )
    for kind in ("physics_likert", "instruction_likert"):
        assert config(tmp_path, **scored, label_field="plausible", score_kind=kind).likert_kind() == kind


def test_scores_of_the_other_kind_alone_make_a_sample_missing_not_unparseable(tmp_path: Path) -> None:
    samples = [sample("a", pc=4, sa=4), sample("b", pc=2, sa=3)]
    scores = [
        ScoreRecord(sample_id="a", score=4.0, score_kind="physics_likert"),
        ScoreRecord(sample_id="b", score=3.0, score_kind="instruction_likert"),
    ]
    cfg = config(tmp_path, predictions=None, scores=tmp_path / "s.jsonl", bootstrap=0)
    summary = summarize_videophy2(samples, cfg, scores=scores)
    assert summary.coverage.evaluated == 1
    assert summary.coverage.missing.first_ids == ["b"]
    assert summary.coverage.unparseable.count == 0
    assert summary.joint is None  # no sample has both scores


def not_asked_record(sample_id: str, physics: int) -> dict[str, object]:
    """A joint score record as the joint scorer writes it for a sample without a caption."""
    return {
        "sample_id": sample_id,
        "score": None,
        "score_kind": "videophy2_joint",
        "critique": f"physics: The ball falls.\n\n{ADHERENCE_NOT_ASKED} ({sample_id}: caption is missing)",
        "rewards": {"physics": physics},
    }


def test_a_joint_record_without_an_adherence_answer_for_lack_of_a_caption_is_not_asked_not_unparseable(
    tmp_path: Path,
) -> None:
    captions = {"told": "A ball rolls.", "garbled": "A cup falls.", "silent": None, "blank": "  "}
    write_jsonl(
        tmp_path / "m.jsonl",
        [
            {"id": sample_id, "url": f"https://e.com/{sample_id}.mp4", "caption": caption, "labels": {"pc": 4, "sa": 4}}
            for sample_id, caption in captions.items()
        ],
    )
    # As the joint scorer writes them: "garbled" was asked and its answer did not parse; "silent" and "blank"
    # were not asked (no caption) and keep their physics score alone.
    write_jsonl(
        tmp_path / "s.jsonl",
        [
            {
                "sample_id": "told",
                "score": 1.0,
                "score_kind": "videophy2_joint",
                "rewards": {"physics": 4, "adherence": 5},
            },
            {"sample_id": "garbled", "score": None, "score_kind": "videophy2_joint", "rewards": {"physics": 5}},
            not_asked_record("silent", physics=4),
            not_asked_record("blank", physics=2),
        ],
    )
    cfg = config(tmp_path, predictions=None, scores=tmp_path / "s.jsonl", bootstrap=0)

    adherence = evaluate_videophy2(cfg.model_copy(update={"label_field": "sa"}))
    coverage = adherence.coverage
    assert (coverage.labelled, coverage.evaluated, coverage.missing.count) == (4, 2, 0)
    assert coverage.not_asked.first_ids == ["silent", "blank"] and coverage.not_asked.count == 2
    assert coverage.unparseable.first_ids == ["garbled"]
    assert adherence.likert is not None and adherence.likert.exact_accuracy.value == pytest.approx(0.0)
    assert any("not asked for lack of input" in note for note in adherence.notes)

    physics = evaluate_videophy2(cfg)
    assert (physics.coverage.evaluated, physics.coverage.not_asked.count, physics.coverage.unparseable.count) == (
        4,
        0,
        0,
    )
    joint = physics.joint
    assert joint is not None
    # Joint over "told" (both 4 or more: right) and "garbled" (adherence unparseable: wrong).
    assert (joint.n, joint.n_unparseable, joint.n_not_asked) == (2, 1, 2)
    assert joint.binary.accuracy == pytest.approx(0.5)
    [note] = [note for note in physics.notes if "left out of the joint metric" in note]
    assert note.startswith("2 labelled samples were scored") and "(first ids: silent, blank)" in note
    written = VideoPhy2Summary.model_validate_json((tmp_path / "out" / SUMMARY_FILE).read_text())
    assert written.joint is not None and written.joint.n_not_asked == 2


def test_not_asked_is_read_from_the_joint_record_not_from_the_manifest(tmp_path: Path) -> None:
    """A manifest other than the one scored: "mute" lost its caption since, and its adherence answer failed to
    parse (no line saying it was not asked); "recaptioned" gained a caption, but was scored without one."""
    captions = {"told": "A ball rolls.", "mute": None, "recaptioned": "A cup falls."}
    write_jsonl(
        tmp_path / "m.jsonl",
        [
            {"id": sample_id, "url": f"https://e.com/{sample_id}.mp4", "caption": caption, "labels": {"pc": 4, "sa": 4}}
            for sample_id, caption in captions.items()
        ],
    )
    told: dict[str, object] = {
        "sample_id": "told",
        "score": 1.0,
        "score_kind": "videophy2_joint",
        "rewards": {"physics": 4, "adherence": 4},
    }
    garbled: dict[str, object] = {
        "sample_id": "mute",
        "score": None,
        "score_kind": "videophy2_joint",
        "rewards": {"physics": 4},
    }
    write_jsonl(tmp_path / "s.jsonl", [told, garbled, not_asked_record("recaptioned", physics=4)])
    cfg = config(tmp_path, predictions=None, scores=tmp_path / "s.jsonl", bootstrap=0)

    coverage = evaluate_videophy2(cfg.model_copy(update={"label_field": "sa"})).coverage
    assert (coverage.evaluated, coverage.unparseable.first_ids, coverage.not_asked.first_ids) == (
        2,
        ["mute"],
        ["recaptioned"],
    )
    joint = evaluate_videophy2(cfg).joint
    assert joint is not None and (joint.n, joint.n_unparseable, joint.n_not_asked) == (2, 1, 1)


def write_labelled_manifest(tmp_path: Path, ids: list[str], captions: bool = True) -> None:
    write_jsonl(
        tmp_path / "m.jsonl",
        [
            {
                "id": sample_id,
                "url": f"https://e.com/{sample_id}.mp4",
                "caption": "A ball rolls." if captions else None,
                "labels": {"pc": 3, "sa": 4},
            }
            for sample_id in ids
        ],
    )


def test_scores_of_no_kind_compared_with_the_label_are_refused_naming_the_kinds_and_their_options(
    tmp_path: Path,
) -> None:
    write_labelled_manifest(tmp_path, ["a", "b", "c", "d"])
    records = [{"sample_id": i, "score": 4.0, "score_kind": "physics_likert"} for i in "abcd"]
    records.append({"sample_id": "a", "score": 1.0, "score_kind": "reward_model_yes_no"})
    write_jsonl(tmp_path / "s.jsonl", records)
    scored = config(tmp_path, predictions=None, scores=tmp_path / "s.jsonl", bootstrap=0)

    with pytest.raises(ValueError) as refusal:
        evaluate_videophy2(scored.model_copy(update={"label_field": "sa"}))
    assert str(refusal.value) == (
        f"no sample evaluated: {tmp_path / 's.jsonl'}: none of its 5 score records is of kind instruction_likert "
        "(or videophy2_joint), which label `sa` is compared with: it holds physics_likert (4), "
        "reward_model_yes_no (1); --label-field pc reads physics_likert; reward_model_yes_no is read by no "
        "VideoPhy-2 metric"
    )
    assert not (tmp_path / "out").exists()
    # A label of the user's own is scored by the kind named, so the other kind is read by naming it instead.
    own = scored.model_copy(update={"label_field": "plausible", "score_kind": "instruction_likert"})
    with pytest.raises(ValueError, match="--score-kind physics_likert reads physics_likert"):
        summarize_videophy2(
            [sample(i, plausible=3) for i in "abcd"], own, scores=read_records(tmp_path / "s.jsonl", ScoreRecord)
        )
    # The option named reads them.
    summary = evaluate_videophy2(scored)
    assert (summary.coverage.evaluated, summary.coverage.other_score_records) == (4, 1)


def test_predictions_of_another_manifest_are_refused_naming_their_first_ids(tmp_path: Path) -> None:
    samples = [sample("a", pc=3), sample("b", pc=4), sample("u")]
    predictions = [prediction(sample_id, "3") for sample_id in ["x1", "x2", "x3", "u"]]
    with pytest.raises(ValueError) as refusal:
        summarize_videophy2(samples, config(tmp_path, max_listed_ids=2), predictions=predictions)
    assert str(refusal.value) == (
        f"no sample evaluated: {tmp_path / 'p.jsonl'}: none of the 4 samples it answers is a labelled sample of "
        f"{tmp_path / 'm.jsonl'}: 3 not in it (first ids: x1, x2; made from another manifest?); 1 without label "
        "`pc` (first ids: u)"
    )
    # One answer for a labelled sample is enough for a summary, which counts the others as unlabelled.
    summary = summarize_videophy2(samples, config(tmp_path), predictions=[*predictions, prediction("a", "3")])
    assert (summary.coverage.evaluated, summary.coverage.unlabelled.count, summary.coverage.missing.count) == (1, 4, 1)


@pytest.mark.parametrize(
    ("changes", "predictions", "cause"),
    [
        (
            {"label_field": "plausible"},
            [prediction("a", "3")],
            "m.jsonl: no sample has label `plausible` (labels found: pc, sa)",
        ),
        ({}, [], "p.jsonl: holds no records"),
        (
            {"task": "multiple_choice"},
            [prediction("a", "B")],
            "m.jsonl: no sample has label `answer` (labels found: pc, sa)",
        ),
    ],
)
def test_an_evaluation_of_no_sample_is_refused_with_its_cause(
    tmp_path: Path, changes: dict[str, object], predictions: list[Prediction], cause: str
) -> None:
    with pytest.raises(ValueError, match=f"^no sample evaluated: .*{re.escape(cause)}$"):
        summarize_videophy2([sample("a", pc=3, sa=4)], config(tmp_path, **changes), predictions=predictions)


def test_a_label_null_in_every_sample_and_an_empty_manifest_are_named_as_such(tmp_path: Path) -> None:
    folder = tmp_path / "videos"
    folder.mkdir()
    for name in ("a", "b"):
        (folder / f"{name}.mp4").write_bytes(b"")  # ingestion neither decodes nor probes
    labels = tmp_path / "labels.csv"
    labels.write_text("video,pc,sa\na.mp4,,4\nb.mp4,,2\n")  # the pc column left empty
    ingest_folder(FolderIngestConfig(folder=folder, out=tmp_path / "m.jsonl", labels=labels))
    predictions = [prediction("a", "3")]
    manifest = tmp_path / "m.jsonl"
    with pytest.raises(ValueError) as null:
        summarize_videophy2(read_records(manifest, VideoSample), config(tmp_path), predictions=predictions)
    assert str(null.value) == f"no sample evaluated: {manifest}: label `pc` is null in every sample (labels found: sa)"
    with pytest.raises(ValueError) as empty:
        summarize_videophy2([], config(tmp_path), predictions=predictions)
    assert str(empty.value) == f"no sample evaluated: {manifest}: holds no samples"


def test_errors_and_notes_list_no_ids_when_none_are_to_be_listed(tmp_path: Path) -> None:
    samples = [sample("a", pc=3), sample("u")]
    with pytest.raises(ValueError) as refusal:
        summarize_videophy2(
            samples, config(tmp_path, max_listed_ids=0), predictions=[prediction(i, "3") for i in ["x1", "u"]]
        )
    assert str(refusal.value).endswith("1 not in it (made from another manifest?); 1 without label `pc`")
    write_labelled_manifest(tmp_path, ["told", "silent"])
    told: dict[str, object] = {
        "sample_id": "told",
        "score": 1.0,
        "score_kind": "videophy2_joint",
        "rewards": {"physics": 4, "adherence": 4},
    }
    write_jsonl(tmp_path / "s.jsonl", [told, not_asked_record("silent", physics=4)])
    scored = config(tmp_path, predictions=None, scores=tmp_path / "s.jsonl", bootstrap=0, max_listed_ids=0)
    [note] = [note for note in evaluate_videophy2(scored).notes if "left out of the joint metric" in note]
    assert note.endswith("not counted as unparseable.")


def test_scores_whose_every_question_was_not_asked_are_refused(tmp_path: Path) -> None:
    write_labelled_manifest(tmp_path, ["a", "b"], captions=False)
    write_jsonl(
        tmp_path / "s.jsonl",
        [not_asked_record(i, physics=4) for i in "ab"],
    )
    scored = config(tmp_path, predictions=None, scores=tmp_path / "s.jsonl", bootstrap=0)
    with pytest.raises(
        ValueError,
        match=r"s\.jsonl: 2 labelled samples were scored without the adherence question, not asked for lack of a "
        r"caption \(first ids: a, b\)$",
    ):
        evaluate_videophy2(scored.model_copy(update={"label_field": "sa"}))
    write_jsonl(tmp_path / "s.jsonl", [not_asked_record("a", physics=4)])
    with pytest.raises(ValueError, match=r"s\.jsonl: 1 labelled sample was scored without the adherence question"):
        evaluate_videophy2(scored.model_copy(update={"label_field": "sa", "max_listed_ids": 0}))
    assert evaluate_videophy2(scored).coverage.evaluated == 1
