"""`cookbook-reward filter`: curate generated videos by their scores (threshold bands, best-of-N).

Every sample of the manifest lands in exactly one output, so nothing is lost: ``kept.jsonl`` (score at least
``keep_min``; with ``best_of``, only the best of each group), ``surplus.jsonl`` (kept-quality videos that lost
their group's best-of-N), ``borderline.jsonl`` (between the bands, for a human look), ``rejected.jsonl``
(score at most ``drop_max``) and ``unscored.jsonl`` (no score record, or a score of None, NaN or infinity).

The thresholds are on the scale of the scores file's kind. Only Likert scores have defaults (4 and 2); for any
other kind both thresholds must be given, since defaults made for 1-5 would reject every video of a 0-1 scale.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Literal

from cookbook_data.jobs import write_resolved_config
from cookbook_data.records import read_records, write_records
from cookbook_data.schemas import ScoreKind, ScoreRecord, VideoSample
from cookbook_reward.config import FilterConfig

Band = Literal["kept", "surplus", "borderline", "rejected", "unscored"]
BANDS: tuple[Band, ...] = ("kept", "surplus", "borderline", "rejected", "unscored")


@dataclass
class FilterReport:
    """How many samples went to each output, and where the outputs are."""

    counts: dict[Band, int] = field(default_factory=dict)
    files: dict[Band, str] = field(default_factory=dict)
    unmatched: list[str] = field(default_factory=list)
    """Ids of score records naming no sample of the manifest (not used)."""


@dataclass(frozen=True)
class _Scale:
    """What the scores of one kind mean, and thresholds suiting them: suggested in the error that asks for
    thresholds, and the defaults of the Likert kinds."""

    meaning: str
    keep_min: float
    drop_max: float


SCALES: dict[ScoreKind, _Scale] = {
    "physics_likert": _Scale("1-5 Likert", 4, 2),
    "instruction_likert": _Scale("1-5 Likert", 4, 2),
    "reward_model_yes_no": _Scale('P("No" anomalies), 0 to 1', 0.7, 0.3),
    "approve_reject": _Scale("1 approve, 0 reject", 1, 0),
    "physics_rule": _Scale("0 violated, 1 followed, 2 cannot tell; thresholds keep 2 with 1", 1, 0),
    "videophy2_joint": _Scale("1 joint pass, 0 fail", 1, 0),
    "trajectory": _Scale("fraction of kinematic checks passed (blended with a verdict), 0 to 1", 1, 0.5),
}
LIKERT_KINDS: frozenset[ScoreKind] = frozenset({"physics_likert", "instruction_likert"})
"""The kinds whose scale the default thresholds were made for."""


def _scores(config: FilterConfig) -> tuple[dict[str, float | None], ScoreKind | None]:
    """The score of each sample, and the kind of them all (None for an empty file); a file mixing kinds is
    refused, as one pair of thresholds cannot suit two scales."""
    values: dict[str, float | None] = {}
    kind: ScoreKind | None = None
    for record in read_records(config.scores, ScoreRecord):
        if record.sample_id in values:
            raise ValueError(
                f"{config.scores}: more than one score for {record.sample_id!r}; filter a file of one scorer's scores"
            )
        if kind is not None and record.score_kind != kind:
            raise ValueError(
                f"{config.scores}: mixes {kind} and {record.score_kind} scores ({record.sample_id!r}); "
                "filter a file of one scorer's scores"
            )
        kind = record.score_kind
        values[record.sample_id] = getattr(record, config.by)
    return values, kind


def _thresholds(config: FilterConfig, kind: ScoreKind | None) -> tuple[float, float]:
    """``keep_min`` and ``drop_max``: as given, else the Likert defaults where the scores are Likert (or there
    are none); for another kind, an error unless both were given."""
    scale = SCALES[kind or "physics_likert"]
    if kind is not None and kind not in LIKERT_KINDS and (config.keep_min is None or config.drop_max is None):
        raise ValueError(
            f"{config.scores}: holds {kind} scores ({scale.meaning}), for which the default thresholds "
            f"(made for 1-5 Likert scores) would reject every video; give both, e.g. "
            f"--keep-min {scale.keep_min:g} --drop-max {scale.drop_max:g}"
        )
    keep_min = scale.keep_min if config.keep_min is None else config.keep_min
    drop_max = scale.drop_max if config.drop_max is None else config.drop_max
    # Both given and overlapping is refused by FilterConfig itself; here one of them is the Likert default.
    if drop_max >= keep_min and config.keep_min is None:
        raise ValueError(
            f"--drop-max {drop_max:g} is not below the Likert default --keep-min {keep_min:g}; "
            f"pass a --keep-min above {drop_max:g}"
        )
    if drop_max >= keep_min and config.drop_max is None:
        raise ValueError(
            f"--keep-min {keep_min:g} is not above the Likert default --drop-max {drop_max:g}; "
            f"pass a --drop-max below {keep_min:g}"
        )
    return keep_min, drop_max


def _band(value: float | None, keep_min: float, drop_max: float) -> Band:
    """The output a score sends its sample to. A NaN or infinite score (possible in a hand-made file) means
    nothing on any scale, so its sample waits in ``unscored.jsonl`` to be scored again, like a missing score."""
    if value is None or not math.isfinite(value):
        return "unscored"
    if value >= keep_min:
        return "kept"
    if value <= drop_max:
        return "rejected"
    return "borderline"


def _best_of(
    kept: list[VideoSample], values: dict[str, float | None], key: str
) -> tuple[list[VideoSample], list[VideoSample]]:
    """The best-scoring sample of each group (first in manifest order on ties), and the others."""
    groups: dict[str, list[VideoSample]] = defaultdict(list)
    for sample in kept:
        group = sample.metadata.get(key)
        if group is None:
            raise ValueError(f"{sample.id}: metadata.{key} is missing; best-of-N needs every sample's group")
        groups[json.dumps(group, sort_keys=True)].append(sample)  # so prompt 1 and prompt "1" stay apart
    best = {id(max(members, key=lambda s: values[s.id] or 0.0)) for members in groups.values()}
    return [s for s in kept if id(s) in best], [s for s in kept if id(s) not in best]


def filter_manifest(config: FilterConfig) -> FilterReport:
    """Split ``config.manifest`` by the scores into the outputs described in the module docstring."""
    values, kind = _scores(config)
    if config.by == "expected_score" and values and all(value is None for value in values.values()):
        raise ValueError(
            f"{config.scores}: no record has an expected score ({kind} scores carry none), so every video would "
            "be unscored; filter --by score"
        )
    keep_min, drop_max = _thresholds(config, kind)
    # validated again (the bands must not overlap) and written to config.resolved.json with the values used
    config = FilterConfig.model_validate(config.model_dump() | {"keep_min": keep_min, "drop_max": drop_max})
    by_band: dict[Band, list[VideoSample]] = {band: [] for band in BANDS}
    seen: set[str] = set()
    for sample in read_records(config.manifest, VideoSample):
        seen.add(sample.id)
        by_band[_band(values.get(sample.id), keep_min, drop_max)].append(sample)
    unmatched = [sample_id for sample_id in values if sample_id not in seen]
    if values and len(unmatched) == len(values):
        raise ValueError(
            f"{config.scores}: none of its {len(values)} scored samples is in {config.manifest} (first ids: "
            f"{', '.join(unmatched[:5])}); were the videos scored from another manifest?"
        )
    if config.best_of is not None:
        by_band["kept"], by_band["surplus"] = _best_of(by_band["kept"], values, config.best_of)
    config.out.mkdir(parents=True, exist_ok=True)
    report = FilterReport(unmatched=unmatched)
    for band, samples in by_band.items():
        path = config.out / f"{band}.jsonl"
        report.counts[band] = write_records(path, VideoSample, samples)
        report.files[band] = str(path)
    write_resolved_config(config.out, config)
    return report
