"""VideoPhy-2 metrics: a critic's Likert scores, or multiple-choice answers, against a labelled manifest.

Predictions (:class:`~cookbook_data.schemas.Prediction`, the parsed score as text) or scores
(:class:`~cookbook_data.schemas.ScoreRecord`) are joined by sample id to the manifest's labels. Predictions of an
inference task whose answers the evaluation would misread are refused
(:data:`~cookbook_eval.config.ANSWER_OF_INFER_TASK`). Nothing is dropped quietly; how each item is counted:

- **evaluated**: labelled samples that have a prediction. Every accuracy (exact, within one, binary,
  multiple choice, per category) is over all of them, and an **unparseable** prediction (no answer, or not a
  score on the scale) counts as wrong; in binary metrics it counts as the class opposite to the label.
- correlations, mean absolute error, the histogram of predictions and the calibration use the **parseable**
  predictions only, and report their own ``n``.
- **missing**: labelled samples without a prediction; **not asked**: labelled samples whose question could not
  be put for lack of input (a joint score record without an adherence score whose critique says, with
  :data:`~cookbook_data.schemas.ADHERENCE_NOT_ASKED`, that the sample had no caption: no answer failed to parse;
  without that line, a missing adherence score counts as unparseable); **unlabelled**: predictions for samples
  that are not in the manifest or have no label; **duplicates**: further predictions for an id already seen
  (the first is used). These enter no metric and are counted, with their first ids, in :class:`Coverage`.

An evaluation that evaluates no sample at all is refused with its cause (a manifest without the label, an empty
file, scores of kinds that do not score the label, sample ids of another manifest): a summary of nothing but
"n/a" would read as a result.

:func:`evaluate_videophy2` reads the files and writes ``summary.json`` and ``config.resolved.json``; the
functions it is built from (:func:`likert_metrics`, :func:`binary_metrics`, :func:`joint_metrics`,
:func:`choice_metrics`, :func:`group_accuracy`, :func:`calibration`) work on plain sequences.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

import numpy as np
from pydantic import Field

from cookbook_data.jobs import write_resolved_config
from cookbook_data.records import read_records
from cookbook_data.schemas import ADHERENCE_NOT_ASKED, Prediction, ScoreRecord, Strict, VideoSample
from cookbook_eval import _stats
from cookbook_eval.config import (
    ANSWER_OF_INFER_TASK,
    LABEL_OF_LIKERT_KIND,
    LIKERT_KIND_OF_LABEL,
    RULE_SCALE,
    TASK_SPELLINGS,
    EvalTask,
    InferAnswer,
    LikertKind,
    VideoPhy2Config,
)

__all__ = [
    "SUMMARY_FILE",
    "BinaryMetrics",
    "Calibration",
    "CalibrationBin",
    "ChoiceMetrics",
    "ConfusionMatrix",
    "Coverage",
    "Estimate",
    "GroupAccuracy",
    "Histogram",
    "ItemCount",
    "JointMetrics",
    "LikertMetrics",
    "VideoPhy2Summary",
    "binary_metrics",
    "calibration",
    "choice_metrics",
    "evaluate_videophy2",
    "group_accuracy",
    "joint_metrics",
    "likert_metrics",
    "summarize_videophy2",
]

SUMMARY_FILE = "summary.json"
JOINT_SCORE_KIND = "videophy2_joint"
"""ScoreRecord kind whose ``rewards`` hold both Likert scores of a sample, under the keys below."""
JOINT_REWARD_KEYS = {"physics_likert": "physics", "instruction_likert": "adherence"}
ADHERENCE_KIND = "instruction_likert"
"""The Likert kind whose question needs the sample's caption."""
NO_GROUP = "(none)"
"""Group of samples whose metadata and labels lack the grouping key."""

NOTES = [
    "Accuracies (exact, within one, binary, multiple choice, per category) are over all evaluated samples "
    "(labelled samples with a prediction); an unparseable prediction counts as wrong, and in binary metrics as "
    "the class opposite to the label.",
    "Correlations, mean absolute error, the histogram of predictions and the calibration use parseable "
    "predictions only; their n is given with them.",
    "Missing predictions (labelled samples without one), samples not asked for lack of input (the adherence "
    "question of a sample without a caption), unlabelled predictions and duplicates enter no metric; they are "
    "counted under coverage.",
]


class Estimate(Strict):
    """A statistic with its percentile bootstrap confidence interval."""

    value: float | None = Field(description="The statistic on all items; None when undefined (e.g. no variance).")
    n: int = Field(description="Items it was computed on.")
    ci_low: float | None = Field(default=None, description="Lower end of the interval; None without bootstrap.")
    ci_high: float | None = Field(default=None, description="Upper end of the interval; None without bootstrap.")


class BinaryMetrics(Strict):
    """Positive means a score at or above the threshold (plausible, adherent)."""

    threshold: int = Field(description="Lowest positive score.")
    n: int = Field(description="Items, unparseable ones included.")
    accuracy: float | None = Field(description="Fraction whose predicted class matches the label's.")
    precision: float | None = Field(description="TP / (TP + FP); None when nothing was predicted positive.")
    recall: float | None = Field(description="TP / (TP + FN); None when no label is positive.")
    f1: float | None = Field(description="Harmonic mean of precision and recall; None when either is undefined.")
    true_positive: int = Field(description="Positive label, predicted positive.")
    false_positive: int = Field(description="Negative label, predicted positive or unparseable.")
    true_negative: int = Field(description="Negative label, predicted negative.")
    false_negative: int = Field(description="Positive label, predicted negative or unparseable.")


class ConfusionMatrix(Strict):
    """Counts of (label, predicted class) pairs."""

    classes: list[int] = Field(description="Scores of the scale, the order of rows and columns.")
    matrix: list[list[int]] = Field(description="matrix[i][j]: label classes[i] predicted as classes[j].")
    unparseable: list[int] = Field(description="unparseable[i]: label classes[i] with an unparseable prediction.")


class Histogram(Strict):
    """How often each score occurs among the labels and among the predictions."""

    classes: list[int] = Field(description="Scores of the scale.")
    labels: list[int] = Field(description="Evaluated samples per label score.")
    predicted: list[int] = Field(description="Parseable predictions per predicted score (rounded).")


class LikertMetrics(Strict):
    """Agreement of a critic's scores with Likert labels."""

    label_field: str = Field(description="Label the scores were compared with.")
    score_kind: str | None = Field(description="ScoreRecord kind of the scores; None for predictions.")
    n: int = Field(description="Evaluated samples.")
    n_parseable: int = Field(description="Evaluated samples with a usable score.")
    n_unparseable: int = Field(description="Evaluated samples whose prediction could not be read as a score.")
    fractional_scores: int = Field(description="Scores that were not whole numbers (rounded for class metrics).")
    exact_accuracy: Estimate = Field(description="Predicted score equals the label; unparseable counts as wrong.")
    within_one_accuracy: Estimate = Field(description="Predicted score within one of the label.")
    binary: BinaryMetrics = Field(description="Plausible (at or above threshold) or not.")
    pearson: Estimate = Field(description="Pearson's r on parseable predictions.")
    spearman: Estimate = Field(description="Spearman's rho on parseable predictions.")
    mean_absolute_error: float | None = Field(description="Mean |score - label| on parseable predictions.")
    confusion: ConfusionMatrix = Field(description="Labels against predicted scores.")
    histogram: Histogram = Field(description="Label and prediction counts per score.")


class JointMetrics(Strict):
    """VideoPhy-2's joint judgement: physics and adherence both at or above the threshold."""

    physics_label: str = Field(description="Label of physical commonsense.")
    adherence_label: str = Field(description="Label of semantic adherence.")
    n: int = Field(
        description="Samples with both labels and a score for at least one of them, those not asked left out."
    )
    n_unparseable: int = Field(description="Of these, samples lacking a usable score on either side.")
    n_not_asked: int = Field(
        default=0,
        description="Samples with both labels left out: their joint record says the adherence question was not "
        "asked (no caption).",
    )
    label_rate: float | None = Field(description="Fraction of the n samples whose labels are jointly positive.")
    predicted_rate: float | None = Field(description="Fraction of parseable samples predicted jointly positive.")
    binary: BinaryMetrics = Field(description="Agreement of the predicted joint judgement with the labels'.")


class GroupAccuracy(Strict):
    """Accuracy within one group of samples (a category, a dataset)."""

    group: str = Field(description="Value of the grouping key; '(none)' for samples without it.")
    n: int = Field(description="Evaluated samples in the group.")
    correct: int = Field(description="Correct predictions.")
    unparseable: int = Field(description="Unparseable predictions (counted as wrong).")
    accuracy: float | None = Field(description="correct / n.")


class ChoiceMetrics(Strict):
    """Multiple-choice accuracy."""

    answer_field: str = Field(description="Label holding the correct letter.")
    n: int = Field(description="Evaluated samples.")
    n_unparseable: int = Field(description="Answers that are not a single option letter.")
    accuracy: Estimate = Field(description="Correct letter; unparseable counts as wrong.")
    label_counts: dict[str, int] = Field(description="Correct letters and how often each occurs.")
    predicted_counts: dict[str, int] = Field(description="Predicted letters and how often each occurs.")
    per_dataset: list[GroupAccuracy] = Field(description="Accuracy per dataset (empty when none is named).")


class CalibrationBin(Strict):
    """Parseable predictions whose score falls in [low, high)."""

    low: float = Field(description="Lower edge of the bin.")
    high: float = Field(description="Upper edge of the bin.")
    n: int = Field(description="Predictions in the bin.")
    mean_predicted: float = Field(description="Mean predicted score.")
    mean_label: float = Field(description="Mean label score.")
    positive_rate: float = Field(description="Fraction of labels at or above the threshold.")


class Calibration(Strict):
    """Reliability of the scores: mean label per bin of predicted score."""

    source: Literal["predicted_score", "expected_score"] = Field(
        description="predicted_score: the discrete scores; expected_score: the scorer's expected values."
    )
    threshold: int = Field(description="Lowest positive label, for positive_rate.")
    bins: list[CalibrationBin] = Field(description="Non-empty bins, lowest first.")
    mean_absolute_gap: float | None = Field(description="Mean |mean_predicted - mean_label| weighted by bin size.")


class ItemCount(Strict):
    """How many items fell into a case, with the first of their ids."""

    count: int = Field(default=0, description="Number of items.")
    first_ids: list[str] = Field(default_factory=list, description="Sample ids of the first items, in file order.")


class Coverage(Strict):
    """Which samples and predictions took part, and which did not."""

    manifest_samples: int = Field(description="Samples in the manifest.")
    labelled: int = Field(description="Manifest samples carrying the label.")
    predictions: int = Field(description="Records read from the predictions or scores file that apply here.")
    evaluated: int = Field(description="Labelled samples with a prediction: the n of the accuracies.")
    missing: ItemCount = Field(description="Labelled samples without a prediction.")
    unlabelled: ItemCount = Field(description="Predictions for samples not in the manifest or without the label.")
    unparseable: ItemCount = Field(description="Evaluated samples whose prediction could not be read.")
    not_asked: ItemCount = Field(
        default_factory=ItemCount,
        description="Labelled samples whose question could not be asked for lack of input (no caption for the "
        "adherence question): no answer to read, so neither evaluated nor unparseable.",
    )
    duplicates: ItemCount = Field(description="Predictions repeating an id already seen; the first one is used.")
    other_score_records: int = Field(
        default=0, description="Score records of kinds no metric here reads (neither Likert kind nor joint), left out."
    )


class VideoPhy2Summary(Strict):
    """Everything ``cookbook-eval videophy2`` measured; written as summary.json."""

    kind: Literal["videophy2"] = Field(default="videophy2", description="Identifies a VideoPhy-2 summary.")
    task: EvalTask = Field(description="critic or multiple_choice.")
    manifest: str = Field(description="Manifest holding the labels.")
    predictions: str | None = Field(default=None, description="Prediction file evaluated.")
    scores: str | None = Field(default=None, description="Score file evaluated.")
    models: list[str] = Field(default_factory=list, description="Models named by the predictions or scores.")
    coverage: Coverage = Field(description="Counts of evaluated, missing, unlabelled and unparseable items.")
    likert: LikertMetrics | None = Field(default=None, description="Critic metrics (task critic).")
    joint: JointMetrics | None = Field(
        default=None, description="Joint physics and adherence metric, when both are scored and labelled."
    )
    multiple_choice: ChoiceMetrics | None = Field(default=None, description="Choice metrics (multiple_choice).")
    category_key: str = Field(description="Key of the categories (in metadata, else labels).")
    per_category: list[GroupAccuracy] = Field(
        default_factory=list, description="Accuracy per category (exact match or correct letter)."
    )
    calibration: Calibration | None = Field(default=None, description="Reliability of the critic's scores.")
    bootstrap: int = Field(description="Bootstrap resamples behind the confidence intervals.")
    confidence: float = Field(description="Coverage of the confidence intervals.")
    seed: int = Field(description="Seed of the bootstrap.")
    notes: list[str] = Field(default_factory=list, description="How items were counted.")


# ---------------------------------------------------------------------------------------------------------
# Metrics on plain sequences


def usable_score(value: float | str | None, min_score: int, max_score: int) -> float | None:
    """A score on the scale from a number or its text, or None when absent, not a number or off the scale."""
    if value is None:
        return None
    try:
        number = float(value.strip()) if isinstance(value, str) else float(value)
    except ValueError:
        return None
    if not math.isfinite(number) or not min_score <= number <= max_score:
        return None
    return number


def _round_half_up(values: _stats.FloatArray) -> _stats.FloatArray:
    return np.floor(values + 0.5)


def _estimate(
    value: float | None, n: int, statistic: _stats.RowStatistic, resamples: int, confidence: float, seed: int
) -> Estimate:
    if value is None or resamples == 0 or n < 2:
        return Estimate(value=value, n=n)
    interval = _stats.percentile_interval(_stats.bootstrap(statistic, n, resamples, seed), confidence)
    if interval is None:
        return Estimate(value=value, n=n)
    return Estimate(value=value, n=n, ci_low=interval[0], ci_high=interval[1])


def _mean_estimate(hits: _stats.FloatArray, resamples: int, confidence: float, seed: int) -> Estimate:
    value = float(hits.mean()) if hits.size else None
    return _estimate(value, int(hits.size), _stats.mean_statistic(hits), resamples, confidence, seed)


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def binary_metrics(labels: Sequence[bool], predicted: Sequence[bool | None], threshold: int) -> BinaryMetrics:
    """Accuracy, precision, recall and F1 of positive/negative predictions; None (unparseable) counts as wrong."""
    if len(labels) != len(predicted):
        raise ValueError(f"{len(labels)} labels but {len(predicted)} predictions")
    tp = fp = tn = fn = 0
    for label, guess in zip(labels, predicted, strict=True):
        said_positive = (not label) if guess is None else guess
        if label and said_positive:
            tp += 1
        elif label:
            fn += 1
        elif said_positive:
            fp += 1
        else:
            tn += 1
    precision = _ratio(tp, tp + fp)
    recall = _ratio(tp, tp + fn)
    f1 = None
    if precision is not None and recall is not None:
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return BinaryMetrics(
        threshold=threshold,
        n=len(labels),
        accuracy=_ratio(tp + tn, len(labels)),
        precision=precision,
        recall=recall,
        f1=f1,
        true_positive=tp,
        false_positive=fp,
        true_negative=tn,
        false_negative=fn,
    )


def likert_metrics(
    labels: Sequence[int],
    scores: Sequence[float | str | None],
    *,
    min_score: int = 1,
    max_score: int = 5,
    threshold: int = 4,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    label_field: str = "pc",
    score_kind: str | None = None,
) -> LikertMetrics:
    """Metrics of scores against integer labels, item by item; a score that is None, not a number or off the
    scale is unparseable. Fractional scores are rounded (halves up) for the class metrics."""
    if len(labels) != len(scores):
        raise ValueError(f"{len(labels)} labels but {len(scores)} scores")
    classes = list(range(min_score, max_score + 1))
    y = np.asarray(labels, dtype=np.float64)
    usable = [usable_score(score, min_score, max_score) for score in scores]
    parseable = np.array([value is not None for value in usable], dtype=bool)
    raw = np.array([np.nan if value is None else value for value in usable], dtype=np.float64)
    # Unparseable items get a class off the scale, so they match no label and fall in no column.
    predicted = np.where(parseable, _round_half_up(np.nan_to_num(raw)), min_score - 10.0)
    exact = (predicted == y).astype(np.float64)
    within = (np.abs(predicted - y) <= 1).astype(np.float64)

    xs, ys = raw[parseable], y[parseable]
    n_parseable = int(parseable.sum())
    pearson = _estimate(
        _stats.pearson(xs, ys), n_parseable, _stats.pearson_statistic(xs, ys), resamples, confidence, seed
    )
    spearman = _estimate(
        _stats.spearman(xs, ys), n_parseable, _stats.spearman_statistic(xs, ys), resamples, confidence, seed
    )
    matrix = [[int(np.sum((y == row) & (predicted == column))) for column in classes] for row in classes]
    return LikertMetrics(
        label_field=label_field,
        score_kind=score_kind,
        n=len(y),
        n_parseable=n_parseable,
        n_unparseable=len(y) - n_parseable,
        fractional_scores=int(np.sum(parseable & (raw != np.round(raw)))),
        exact_accuracy=_mean_estimate(exact, resamples, confidence, seed),
        within_one_accuracy=_mean_estimate(within, resamples, confidence, seed),
        binary=binary_metrics(
            [bool(value >= threshold) for value in y],
            [None if not ok else bool(value >= threshold) for ok, value in zip(parseable, predicted, strict=True)],
            threshold,
        ),
        pearson=pearson,
        spearman=spearman,
        mean_absolute_error=float(np.mean(np.abs(xs - ys))) if n_parseable else None,
        confusion=ConfusionMatrix(
            classes=classes,
            matrix=matrix,
            unparseable=[int(np.sum((y == row) & ~parseable)) for row in classes],
        ),
        histogram=Histogram(
            classes=classes,
            labels=[int(np.sum(y == value)) for value in classes],
            predicted=[int(np.sum(predicted == value)) for value in classes],
        ),
    )


def joint_metrics(
    physics_labels: Sequence[int],
    adherence_labels: Sequence[int],
    physics_scores: Sequence[float | None],
    adherence_scores: Sequence[float | None],
    *,
    threshold: int = 4,
    min_score: int = 1,
    max_score: int = 5,
    physics_label: str = "pc",
    adherence_label: str = "sa",
) -> JointMetrics:
    """VideoPhy-2's joint judgement (both scores at or above the threshold), predicted against labelled.

    A sample lacking a usable score on either side is unparseable: it counts as wrong and is left out of
    ``predicted_rate``.
    """
    sizes = {len(physics_labels), len(adherence_labels), len(physics_scores), len(adherence_scores)}
    if len(sizes) != 1:
        raise ValueError("joint metrics need one physics and adherence label and score per sample")
    truth = [p >= threshold and a >= threshold for p, a in zip(physics_labels, adherence_labels, strict=True)]
    predicted: list[bool | None] = []
    for p_score, a_score in zip(physics_scores, adherence_scores, strict=True):
        p_value = usable_score(p_score, min_score, max_score)
        a_value = usable_score(a_score, min_score, max_score)
        if p_value is None or a_value is None:
            predicted.append(None)
        else:
            # Scores are compared rounded, as the class metrics do.
            predicted.append(math.floor(p_value + 0.5) >= threshold and math.floor(a_value + 0.5) >= threshold)
    parseable = [value for value in predicted if value is not None]
    return JointMetrics(
        physics_label=physics_label,
        adherence_label=adherence_label,
        n=len(truth),
        n_unparseable=len(truth) - len(parseable),
        label_rate=_ratio(sum(truth), len(truth)),
        predicted_rate=_ratio(sum(parseable), len(parseable)),
        binary=binary_metrics(truth, predicted, threshold),
    )


def group_accuracy(
    groups: Sequence[str | None], correct: Sequence[bool], unparseable: Sequence[bool]
) -> list[GroupAccuracy]:
    """Accuracy per group, groups sorted by name; empty when no item names a group."""
    if all(group is None for group in groups):
        return []
    totals: dict[str, list[int]] = {}
    for group, hit, bad in zip(groups, correct, unparseable, strict=True):
        counts = totals.setdefault(NO_GROUP if group is None else group, [0, 0, 0])
        counts[0] += 1
        counts[1] += int(hit)
        counts[2] += int(bad)
    return [
        GroupAccuracy(group=name, n=n, correct=hits, unparseable=bad, accuracy=_ratio(hits, n))
        for name, (n, hits, bad) in sorted(totals.items())
    ]


def normalize_choice(value: str | None) -> str | None:
    """The option letter of an answer (``b``, `` B ``, ``(B)`` or ``B.`` read as ``B``), else None."""
    if value is None:
        return None
    text = value.strip().strip("().:").strip().upper()
    return text if len(text) == 1 and "A" <= text <= "Z" else None


def choice_metrics(
    labels: Sequence[str],
    answers: Sequence[str | None],
    datasets: Sequence[str | None] | None = None,
    *,
    answer_field: str = "answer",
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> ChoiceMetrics:
    """Accuracy of option letters; an answer that is not a single letter is unparseable and counts as wrong."""
    if len(labels) != len(answers):
        raise ValueError(f"{len(labels)} labels but {len(answers)} answers")
    truth = [normalize_choice(label) for label in labels]
    guesses = [normalize_choice(answer) for answer in answers]
    hits = [guess is not None and guess == label for guess, label in zip(guesses, truth, strict=True)]
    unparseable = [guess is None for guess in guesses]
    return ChoiceMetrics(
        answer_field=answer_field,
        n=len(labels),
        n_unparseable=sum(unparseable),
        accuracy=_mean_estimate(np.asarray(hits, dtype=np.float64), resamples, confidence, seed),
        label_counts=dict(sorted(Counter(str(label) for label in truth).items())),
        predicted_counts=dict(sorted(Counter(guess for guess in guesses if guess is not None).items())),
        per_dataset=group_accuracy(datasets if datasets is not None else [None] * len(labels), hits, unparseable),
    )


def calibration(
    labels: Sequence[int],
    predicted: Sequence[float | None],
    *,
    edges: Sequence[float],
    threshold: int,
    source: Literal["predicted_score", "expected_score"],
) -> Calibration:
    """Mean label per bin of predicted score (bins [edges[i], edges[i+1]), the last one closed)."""
    bounds = np.asarray(edges, dtype=np.float64)
    pairs = [(float(p), float(y)) for p, y in zip(predicted, labels, strict=True) if p is not None]
    scores = np.array([p for p, _ in pairs], dtype=np.float64)
    truth = np.array([y for _, y in pairs], dtype=np.float64)
    which = np.clip(np.searchsorted(bounds, scores, side="right") - 1, 0, len(bounds) - 2)
    inside = (scores >= bounds[0]) & (scores <= bounds[-1])
    bins = []
    for index in range(len(bounds) - 1):
        members = inside & (which == index)
        if not members.any():
            continue
        bins.append(
            CalibrationBin(
                low=float(bounds[index]),
                high=float(bounds[index + 1]),
                n=int(members.sum()),
                mean_predicted=float(scores[members].mean()),
                mean_label=float(truth[members].mean()),
                positive_rate=float((truth[members] >= threshold).mean()),
            )
        )
    total = sum(item.n for item in bins)
    gap = sum(item.n * abs(item.mean_predicted - item.mean_label) for item in bins) / total if total else None
    return Calibration(source=source, threshold=threshold, bins=bins, mean_absolute_gap=gap)


# ---------------------------------------------------------------------------------------------------------
# Joining records


@dataclass
class _Answer:
    """What the predictions or scores say about one sample."""

    text: str | None = None
    """A Prediction's parsed answer."""
    scores: dict[str, float | None] = field(default_factory=dict)
    """Likert score by kind, from records of that kind."""
    joint: dict[str, float | None] = field(default_factory=dict)
    """Likert score by kind, from a joint record."""
    expected: float | None = None
    """Expected score of the main kind, when a record of that kind carries one."""
    joint_expected: float | None = None
    """Expected score of the main kind from a joint record (its ``rewards.<part>_expected``)."""
    adherence_not_asked: bool = False
    """Whether the joint record says its adherence question was not put (:data:`ADHERENCE_NOT_ASKED`)."""

    def score(self, kind: str) -> float | None:
        """The score of a kind; a record of that very kind takes precedence over a joint record's copy."""
        return self.scores[kind] if kind in self.scores else self.joint.get(kind)

    def expected_score(self, kind: str) -> float | None:
        """The main kind's expected score, taken where :meth:`score` takes the score from."""
        return self.expected if kind in self.scores else self.joint_expected

    def has(self, kind: str) -> bool:
        return kind in self.scores or kind in self.joint

    def not_asked(self, kind: str) -> bool:
        """Whether ``kind``'s score is absent because its question could not be asked: the joint scorer puts the
        adherence question only to a sample with a caption, keeps the physics score of one without, and says so
        in the record's critique. Its missing adherence score is then no answer that failed to parse, and is not
        counted as one. The record is the evidence, not the manifest given here: that may not be the one scored."""
        return (
            kind == ADHERENCE_KIND
            and self.adherence_not_asked
            and kind not in self.scores
            and kind in self.joint
            and self.joint[kind] is None
        )


@dataclass
class _Answers:
    """Answers per sample id (the first record for an id wins), the ids of repeats, and the models named."""

    by_id: dict[str, _Answer] = field(default_factory=dict)
    duplicates: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    records: int = 0
    """Predictions, or score records of a kind read here."""
    tasks: Counter[str | None] = field(default_factory=Counter)
    """Predictions per `cookbook-infer run --task` name (None: the record names no task)."""
    score_kinds: Counter[str] = field(default_factory=Counter)
    """Score records per kind, those of kinds read nowhere included."""

    @property
    def other_kinds(self) -> int:
        """Score records of kinds no VideoPhy-2 metric reads."""
        return sum(count for kind, count in self.score_kinds.items() if not _is_read_kind(kind))

    def model(self, name: str | None) -> None:
        if name is not None and name not in self.models:
            self.models.append(name)


def _from_predictions(predictions: Iterable[Prediction]) -> _Answers:
    answers = _Answers()
    for prediction in predictions:
        answers.records += 1
        answers.model(prediction.model)
        # cookbook-infer writes `<task>:<template>@<version>`.
        answers.tasks[None if prediction.task is None else prediction.task.split(":", 1)[0]] += 1
        if prediction.sample_id in answers.by_id:
            answers.duplicates.append(prediction.sample_id)
        else:
            answers.by_id[prediction.sample_id] = _Answer(text=prediction.answer)
    return answers


def _spelled(task: EvalTask) -> str:
    """``--task`` as cookbook-infer spells it."""
    return next((name for name, canonical in TASK_SPELLINGS.items() if canonical == task), task)


def _evaluation_of(answer: InferAnswer, config: VideoPhy2Config) -> str:
    """The options that evaluate predictions whose answers are ``answer``."""
    if answer == "multiple_choice":
        return f"--task {_spelled('multiple_choice')}"
    if answer == "rule":
        low, high = RULE_SCALE
        own = f"<your {low}-{high} label>" if config.label_field in LIKERT_KIND_OF_LABEL else config.label_field
        label = f"--label-field {own} --set min_score={low} --set max_score={high} --threshold 1"
    else:
        label = f"--label-field {LABEL_OF_LIKERT_KIND[answer]}"
    return label if config.task == "critic" else f"--task critic {label}"


def _answers_read(config: VideoPhy2Config) -> frozenset[str]:
    """The answers (values of :data:`ANSWER_OF_INFER_TASK`) the evaluation asked for reads: option letters, the
    Likert kind that scores its label, or for a label other than `pc`/`sa` (a user's own): the rule task's answers
    on the rule's scale 0-2, either Likert kind (which either may score) on any other scale."""
    if config.task == "multiple_choice":
        return frozenset({"multiple_choice"})
    wanted = LIKERT_KIND_OF_LABEL.get(config.label_field)
    if wanted is not None:
        return frozenset({wanted})
    if (config.min_score, config.max_score) == RULE_SCALE:
        return frozenset({"rule"})
    return frozenset(get_args(LikertKind))


def _check_tasks(tasks: Counter[str | None], config: VideoPhy2Config) -> None:
    """Refuse predictions of an inference task whose answers the evaluation asked for would misread (rule
    answers 0-2 read as Likert scores or Likert scores as rule answers, adherence scores compared with physics
    labels, scores read as option letters): their metrics would be wrong, not merely poor. Tasks cookbook-infer
    does not name, and records naming no task, cannot be told apart and are taken as they are."""
    read = _answers_read(config)
    unfit = [task for task in tasks if task in ANSWER_OF_INFER_TASK and ANSWER_OF_INFER_TASK[task] not in read]
    if not unfit:
        return
    found = ", ".join(f"{task or '(no task)'} ({count})" for task, count in tasks.most_common())
    asked = f"--task {_spelled(config.task)}"
    if config.task == "critic":
        asked += f" --label-field {config.label_field}"
    accepted = ", ".join(task for task, answer in ANSWER_OF_INFER_TASK.items() if answer in read)
    hints = "; ".join(
        f"{task} answers are read by no VideoPhy-2 metric"
        if (answer := ANSWER_OF_INFER_TASK[task]) is None
        else f"{task} fits {_evaluation_of(answer, config)}"
        for task in unfit
    )
    raise ValueError(
        f"{config.predictions}: holds predictions of task{'s' if len(tasks) > 1 else ''} {found}, but {asked} "
        f"evaluates only {accepted}: {hints}"
    )


def _is_read_kind(kind: str) -> bool:
    """Whether score records of ``kind`` are read: the two Likert kinds, and joint records carrying both."""
    return kind == JOINT_SCORE_KIND or kind in JOINT_REWARD_KEYS


def _from_scores(scores: Iterable[ScoreRecord], main_kind: str) -> _Answers:
    """Likert scores per sample: records of the two Likert kinds, and joint records carrying both."""
    answers = _Answers()
    seen: set[tuple[str, str]] = set()
    for record in scores:
        kind = str(record.score_kind)
        answers.score_kinds[kind] += 1
        if not _is_read_kind(kind):
            continue
        answers.records += 1
        if (record.sample_id, kind) in seen:
            answers.duplicates.append(record.sample_id)
            continue
        seen.add((record.sample_id, kind))
        answers.model(record.model)
        answer = answers.by_id.setdefault(record.sample_id, _Answer())
        if kind == JOINT_SCORE_KIND:
            for likert_kind, key in JOINT_REWARD_KEYS.items():
                answer.joint[likert_kind] = record.rewards.get(key)
            part = JOINT_REWARD_KEYS.get(main_kind)
            expected = None if part is None else record.rewards.get(f"{part}_expected")
            answer.joint_expected = float(expected) if isinstance(expected, int | float) else None
            answer.adherence_not_asked = _says_not_asked(record)
            continue
        answer.scores[kind] = record.score
        if kind == main_kind:
            # Read only when a later schema version carries it.
            expected = getattr(record, "expected_score", None)
            answer.expected = float(expected) if isinstance(expected, int | float) else None
    return answers


def _says_not_asked(record: ScoreRecord) -> bool:
    """Whether a joint record's critique has the line saying its adherence question was not put."""
    lines = (record.critique or "").splitlines()
    return any(line.startswith(ADHERENCE_NOT_ASKED) for line in lines)


def _likert_label(sample: VideoSample, name: str, config: VideoPhy2Config) -> int | None:
    value = sample.labels.get(name)
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not float(value).is_integer()
        or not config.min_score <= value <= config.max_score
    ):
        raise ValueError(
            f"{config.manifest}: sample {sample.id!r}: labels.{name} is {value!r}, "
            f"expected an integer score from {config.min_score} to {config.max_score}"
        )
    return int(value)


def _choice_label(sample: VideoSample, config: VideoPhy2Config) -> str | None:
    value = sample.labels.get(config.answer_field)
    if value is None:
        return None
    letter = normalize_choice(value) if isinstance(value, str) else None
    if letter is None:
        raise ValueError(
            f"{config.manifest}: sample {sample.id!r}: labels.{config.answer_field} is {value!r}, "
            "expected an option letter"
        )
    return letter


def _group_of(sample: VideoSample, key: str) -> str | None:
    """The sample's group under ``key``: from its metadata, else from its labels, where `cookbook-data ingest
    folder --labels` puts a labels file's extra columns (a category column among them)."""
    value = sample.metadata.get(key)
    if value is None:
        value = sample.labels.get(key)
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)


def _groups(summary: VideoPhy2Summary, samples: Sequence[VideoSample], key: str, breakdown: str) -> list[str | None]:
    """Each sample's group under ``key``; when none has one, a note says why the breakdown is empty."""
    groups = [_group_of(sample, key) for sample in samples]
    if samples and all(group is None for group in groups):
        summary.notes.append(
            f"No evaluated sample has `{key}` in its metadata or labels, so there is no accuracy per {breakdown}."
        )
    return groups


def _item_count(ids: Sequence[str], limit: int) -> ItemCount:
    return ItemCount(count=len(ids), first_ids=list(ids[:limit]))


def _listed(ids: Sequence[str], config: VideoPhy2Config, *remarks: str) -> str:
    """The parenthesis a note or an error ends with: the first ids (none with ``max_listed_ids`` 0), then the
    remarks; empty when it would hold nothing."""
    listed = ", ".join(ids[: config.max_listed_ids])
    parts = [f"first ids: {listed}"] if listed else []
    parts += remarks
    return f" ({'; '.join(parts)})" if parts else ""


def _index_samples(samples: Iterable[VideoSample], config: VideoPhy2Config) -> dict[str, VideoSample]:
    indexed: dict[str, VideoSample] = {}
    for sample in samples:
        if sample.id in indexed:
            raise ValueError(f"{config.manifest}: sample id {sample.id!r} appears more than once")
        indexed[sample.id] = sample
    return indexed


def _whole_number_text(text: str | None) -> str | None:
    """A prediction's answer when it is a whole number; predictions are discrete, so "3.5" is not a score."""
    if text is None:
        return None
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return text if math.isfinite(value) and value.is_integer() else None


def _label_name(config: VideoPhy2Config) -> str:
    """The label the evaluation compares with."""
    return config.answer_field if config.task == "multiple_choice" else config.label_field


def _source(config: VideoPhy2Config) -> Path | None:
    """The file of predictions or scores evaluated."""
    return config.predictions if config.scores is None else config.scores


def _reader_of(kind: str, config: VideoPhy2Config) -> str:
    """The option that reads score records of ``kind``, or that none does."""
    if kind not in LABEL_OF_LIKERT_KIND:
        return f"{kind} is read by no VideoPhy-2 metric"
    if config.label_field not in LIKERT_KIND_OF_LABEL:  # a label of the user's own, scored by the kind named
        return f"--score-kind {kind} reads {kind}"
    return f"--label-field {LABEL_OF_LIKERT_KIND[kind]} reads {kind}"


def _why_no_score_is_read(config: VideoPhy2Config, answers: _Answers) -> str:
    """Score records are there, but none of the kind the label is compared with: name the kinds found and the
    options that read them."""
    found = ", ".join(f"{kind} ({count})" for kind, count in answers.score_kinds.most_common())
    hints = "; ".join(_reader_of(kind, config) for kind in answers.score_kinds)
    return (
        f"{config.scores}: none of its {answers.score_kinds.total()} score records is of kind "
        f"{config.likert_kind()} (or {JOINT_SCORE_KIND}), which label `{config.label_field}` is compared with: "
        f"it holds {found}; {hints}"
    )


def _why_no_id_matches(config: VideoPhy2Config, indexed: dict[str, VideoSample], answered: Sequence[str]) -> str:
    """Answers are there, but none for a labelled sample: name the first ids the manifest lacks or holds
    unlabelled."""
    elsewhere = [sample_id for sample_id in answered if sample_id not in indexed]
    unlabelled = [sample_id for sample_id in answered if sample_id in indexed]
    cases = []
    if elsewhere:
        cases.append(f"{len(elsewhere)} not in it{_listed(elsewhere, config, 'made from another manifest?')}")
    if unlabelled:
        cases.append(f"{len(unlabelled)} without label `{_label_name(config)}`{_listed(unlabelled, config)}")
    return (
        f"{_source(config)}: none of the {len(answered)} samples it answers is a labelled sample of {config.manifest}: "
        + "; ".join(cases)
    )


def _why_no_sample_is_labelled(config: VideoPhy2Config, indexed: dict[str, VideoSample]) -> str:
    """No sample carries the label: say whether the manifest is empty or holds the label as null only (folder
    ingest writes null for an empty cell), and name the labels that do hold a value."""
    name = _label_name(config)
    if not indexed:
        return f"{config.manifest}: holds no samples"
    valued = {key for sample in indexed.values() for key, value in sample.labels.items() if value is not None}
    found = f"labels found: {', '.join(sorted(valued)) or 'none'}"
    if any(name in sample.labels for sample in indexed.values()):
        return f"{config.manifest}: label `{name}` is null in every sample ({found})"
    return f"{config.manifest}: no sample has label `{name}` ({found})"


def _not_asked_of(ids: Sequence[str]) -> str:
    """That the adherence question of these samples was not asked, as the joint records scoring them say."""
    samples = "sample was" if len(ids) == 1 else "samples were"
    return f"{len(ids)} labelled {samples} scored without the adherence question, not asked for lack of a caption"


def _refuse_nothing_evaluated(
    config: VideoPhy2Config,
    indexed: dict[str, VideoSample],
    labelled: Sequence[str],
    answers: _Answers,
    answered: dict[str, _Answer],
    not_asked: Sequence[str],
) -> None:
    """Refuse an evaluation of no sample, naming why: a summary whose every metric is "n/a" would read as a
    result (and let a pipeline pass) when the files given do not fit each other."""
    if not labelled:
        cause = _why_no_sample_is_labelled(config, indexed)
    elif not answers.records and not answers.score_kinds:
        cause = f"{_source(config)}: holds no records"
    elif not answered:
        cause = _why_no_score_is_read(config, answers)
    elif not_asked:
        cause = f"{_source(config)}: {_not_asked_of(not_asked)}{_listed(not_asked, config)}"
    else:
        cause = _why_no_id_matches(config, indexed, list(answered))
    raise ValueError(f"no sample evaluated: {cause}")


def summarize_videophy2(
    samples: Iterable[VideoSample],
    config: VideoPhy2Config,
    *,
    predictions: Iterable[Prediction] | None = None,
    scores: Iterable[ScoreRecord] | None = None,
) -> VideoPhy2Summary:
    """Join predictions (or scores) to the manifest's labels and compute every metric of the task. Fails, naming
    the cause, when no sample can be evaluated."""
    if (predictions is None) == (scores is None):
        raise ValueError("give either predictions or scores")
    indexed = _index_samples(samples, config)
    if predictions is not None:
        answers = _from_predictions(predictions)
        _check_tasks(answers.tasks, config)
    else:
        assert scores is not None
        answers = _from_scores(scores, config.likert_kind())

    choice_labels: dict[str, str] = {}
    likert_labels: dict[str, int] = {}
    for sample in indexed.values():
        if config.task == "multiple_choice":
            letter = _choice_label(sample, config)
            if letter is not None:
                choice_labels[sample.id] = letter
        else:
            score = _likert_label(sample, config.label_field, config)
            if score is not None:
                likert_labels[sample.id] = score
    labelled = list(choice_labels) if config.task == "multiple_choice" else list(likert_labels)
    labelled_ids = set(labelled)
    # With scores, a sample counts as predicted when it has a score of the kind compared with the label.
    answered = (
        answers.by_id
        if scores is None
        else {i: answer for i, answer in answers.by_id.items() if answer.has(config.likert_kind())}
    )
    not_asked = [i for i in labelled if i in answered and answered[i].not_asked(config.likert_kind())]
    skipped = set(not_asked)
    evaluated = [sample_id for sample_id in labelled if sample_id in answered and sample_id not in skipped]
    missing = [sample_id for sample_id in labelled if sample_id not in answered]
    unlabelled = [sample_id for sample_id in answered if sample_id not in labelled_ids]
    if not evaluated:
        _refuse_nothing_evaluated(config, indexed, labelled, answers, answered, not_asked)

    summary = VideoPhy2Summary(
        task=config.task,
        manifest=str(config.manifest),
        predictions=None if config.predictions is None else str(config.predictions),
        scores=None if config.scores is None else str(config.scores),
        models=answers.models,
        coverage=Coverage(
            manifest_samples=len(indexed),
            labelled=len(labelled),
            predictions=answers.records,
            evaluated=len(evaluated),
            missing=_item_count(missing, config.max_listed_ids),
            unlabelled=_item_count(unlabelled, config.max_listed_ids),
            unparseable=ItemCount(),
            not_asked=_item_count(not_asked, config.max_listed_ids),
            duplicates=_item_count(answers.duplicates, config.max_listed_ids),
            other_score_records=answers.other_kinds,
        ),
        category_key=config.category_key,
        bootstrap=config.bootstrap,
        confidence=config.confidence,
        seed=config.seed,
        notes=list(NOTES),
    )
    samples_evaluated = [indexed[sample_id] for sample_id in evaluated]
    chosen = [answers.by_id[sample_id] for sample_id in evaluated]
    if config.task == "multiple_choice":
        _add_choice_metrics(summary, config, samples_evaluated, [choice_labels[i] for i in evaluated], chosen)
    else:
        _add_likert_metrics(summary, config, samples_evaluated, [likert_labels[i] for i in evaluated], chosen)
        if scores is not None:
            summary.joint = _joint(summary, config, indexed, answers)
    return summary


def _add_choice_metrics(
    summary: VideoPhy2Summary,
    config: VideoPhy2Config,
    samples: list[VideoSample],
    labels: list[str],
    answers: list[_Answer],
) -> None:
    texts = [answer.text for answer in answers]
    summary.multiple_choice = choice_metrics(
        labels,
        texts,
        _groups(summary, samples, config.dataset_key, "dataset"),
        answer_field=config.answer_field,
        resamples=config.bootstrap,
        confidence=config.confidence,
        seed=config.seed,
    )
    letters = [normalize_choice(text) for text in texts]
    unparseable = [letter is None for letter in letters]
    bad = [sample.id for sample, flag in zip(samples, unparseable, strict=True) if flag]
    summary.coverage.unparseable = _item_count(bad, config.max_listed_ids)
    summary.per_category = group_accuracy(
        _groups(summary, samples, config.category_key, "category"),
        [letter == label for letter, label in zip(letters, labels, strict=True)],
        unparseable,
    )


def _add_likert_metrics(
    summary: VideoPhy2Summary,
    config: VideoPhy2Config,
    samples: list[VideoSample],
    labels: list[int],
    answers: list[_Answer],
) -> None:
    from_scores = config.scores is not None
    raw: list[float | str | None] = (
        [answer.score(config.likert_kind()) for answer in answers]
        if from_scores
        else [_whole_number_text(answer.text) for answer in answers]
    )
    usable = [usable_score(value, config.min_score, config.max_score) for value in raw]
    metrics = likert_metrics(
        labels,
        usable,
        min_score=config.min_score,
        max_score=config.max_score,
        threshold=config.threshold,
        resamples=config.bootstrap,
        confidence=config.confidence,
        seed=config.seed,
        label_field=config.label_field,
        score_kind=config.likert_kind() if from_scores else None,
    )
    summary.likert = metrics
    bad = [sample.id for sample, value in zip(samples, usable, strict=True) if value is None]
    summary.coverage.unparseable = _item_count(bad, config.max_listed_ids)
    summary.per_category = group_accuracy(
        _groups(summary, samples, config.category_key, "category"),
        [value is not None and math.floor(value + 0.5) == y for value, y in zip(usable, labels, strict=True)],
        [value is None for value in usable],
    )
    if metrics.fractional_scores:
        summary.notes.append(
            f"{metrics.fractional_scores} scores were not whole numbers: class metrics use them rounded to the "
            "nearest integer (halves up); correlations and the mean absolute error use them as given."
        )

    expected = [
        usable_score(answer.expected_score(config.likert_kind()), config.min_score, config.max_score)
        for answer in answers
    ]
    if any(value is not None for value in expected):
        width = (config.max_score - config.min_score) / config.calibration_bins
        edges = [config.min_score + width * step for step in range(config.calibration_bins + 1)]
        summary.calibration = calibration(
            labels, expected, edges=edges, threshold=config.threshold, source="expected_score"
        )
    elif metrics.n_parseable:
        edges = [value - 0.5 for value in range(config.min_score, config.max_score + 2)]
        summary.calibration = calibration(
            labels, usable, edges=edges, threshold=config.threshold, source="predicted_score"
        )


def _joint(
    summary: VideoPhy2Summary, config: VideoPhy2Config, indexed: dict[str, VideoSample], answers: _Answers
) -> JointMetrics | None:
    """Joint metrics over samples with both labels and at least one of the two scores; None without any pair.
    Samples whose adherence question was not asked (no caption) are left out, and a note counts them."""
    rows: list[tuple[int, int, float | None, float | None]] = []
    not_asked: list[str] = []
    for sample_id, answer in answers.by_id.items():
        sample = indexed.get(sample_id)
        if sample is None or not (answer.has("physics_likert") or answer.has(ADHERENCE_KIND)):
            continue
        physics = _likert_label(sample, config.physics_label, config)
        adherence = _likert_label(sample, config.adherence_label, config)
        if physics is None or adherence is None:
            continue
        if answer.not_asked(ADHERENCE_KIND):
            not_asked.append(sample_id)
        else:
            rows.append((physics, adherence, answer.score("physics_likert"), answer.score(ADHERENCE_KIND)))
    if not_asked:
        summary.notes.append(
            f"{_not_asked_of(not_asked)}: left out of the joint metric, not counted as unparseable"
            f"{_listed(not_asked, config)}."
        )
    if not any(p is not None and a is not None for _, _, p, a in rows):
        return None
    metrics = joint_metrics(
        [row[0] for row in rows],
        [row[1] for row in rows],
        [row[2] for row in rows],
        [row[3] for row in rows],
        threshold=config.threshold,
        min_score=config.min_score,
        max_score=config.max_score,
        physics_label=config.physics_label,
        adherence_label=config.adherence_label,
    )
    metrics.n_not_asked = len(not_asked)
    return metrics


def evaluate_videophy2(config: VideoPhy2Config) -> VideoPhy2Summary:
    """Read the manifest and the predictions or scores, compute the metrics, and write ``summary.json`` and
    ``config.resolved.json`` into ``config.out``. A bad line fails with its file, line and field."""
    samples = read_records(config.manifest, VideoSample)
    if config.predictions is not None:
        summary = summarize_videophy2(samples, config, predictions=read_records(config.predictions, Prediction))
    else:
        assert config.scores is not None
        summary = summarize_videophy2(samples, config, scores=read_records(config.scores, ScoreRecord))
    config.out.mkdir(parents=True, exist_ok=True)
    (config.out / SUMMARY_FILE).write_text(summary.model_dump_json(indent=2) + "\n", encoding="utf-8")
    resolved = config.model_copy(update={"score_kind": config.likert_kind()}) if config.scores is not None else config
    write_resolved_config(config.out, resolved)
    return summary
