"""`cookbook-reward filter`: curate generated videos by their scores (threshold bands, best-of-N).

Every sample of the manifest lands in exactly one output, so nothing is lost: ``kept.jsonl`` (score at least
``keep_min``; with ``best_of``, only the best of each group), ``surplus.jsonl`` (kept-quality videos that lost
their group's best-of-N), ``borderline.jsonl`` (between the bands, for a human look), ``rejected.jsonl``
(score at most ``drop_max``) and ``unscored.jsonl`` (no score record, or a score of None).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Literal

from cookbook_data.jobs import write_resolved_config
from cookbook_data.records import read_records, write_records
from cookbook_data.schemas import ScoreRecord, VideoSample
from cookbook_reward.config import FilterConfig

Band = Literal["kept", "surplus", "borderline", "rejected", "unscored"]
BANDS: tuple[Band, ...] = ("kept", "surplus", "borderline", "rejected", "unscored")


@dataclass
class FilterReport:
    """How many samples went to each output, and where the outputs are."""

    counts: dict[Band, int] = field(default_factory=dict)
    files: dict[Band, str] = field(default_factory=dict)


def _scores(config: FilterConfig) -> dict[str, float | None]:
    values: dict[str, float | None] = {}
    for record in read_records(config.scores, ScoreRecord):
        if record.sample_id in values:
            raise ValueError(
                f"{config.scores}: more than one score for {record.sample_id!r}; filter a file of one scorer's scores"
            )
        values[record.sample_id] = getattr(record, config.by)
    return values


def _band(value: float | None, config: FilterConfig) -> Band:
    if value is None:
        return "unscored"
    if value >= config.keep_min:
        return "kept"
    if value <= config.drop_max:
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
        groups[str(group)].append(sample)
    best = {id(max(members, key=lambda s: values[s.id] or 0.0)) for members in groups.values()}
    return [s for s in kept if id(s) in best], [s for s in kept if id(s) not in best]


def filter_manifest(config: FilterConfig) -> FilterReport:
    """Split ``config.manifest`` by the scores into the outputs described in the module docstring."""
    values = _scores(config)
    by_band: dict[Band, list[VideoSample]] = {band: [] for band in BANDS}
    for sample in read_records(config.manifest, VideoSample):
        by_band[_band(values.get(sample.id), config)].append(sample)
    if config.best_of is not None:
        by_band["kept"], by_band["surplus"] = _best_of(by_band["kept"], values, config.best_of)
    config.out.mkdir(parents=True, exist_ok=True)
    report = FilterReport()
    for band, samples in by_band.items():
        path = config.out / f"{band}.jsonl"
        report.counts[band] = write_records(path, VideoSample, samples)
        report.files[band] = str(path)
    write_resolved_config(config.out, config)
    return report
