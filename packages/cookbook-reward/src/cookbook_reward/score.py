"""`cookbook-reward score`: a scorer over every sample of a manifest, as a resumable batch job."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from cookbook_data.jobs import Job, JobReport, run_job
from cookbook_data.records import read_records
from cookbook_data.schemas import ScoreKind, ScoreRecord, VideoSample
from cookbook_infer.backends.base import Backend
from cookbook_infer.run import Item, Preparer, Unloaded, sample_id
from cookbook_reward.config import ScoreConfig, ScorerConfig
from cookbook_reward.scorers import Scorer, build_scorer


@dataclass(frozen=True)
class ScorerFactory:
    """Builds the scorer a config names where it runs (loading its model there): the ``factory`` of the score
    job, and what each reward-service replica calls. ``backend``, when given, is used instead of loading one."""

    config: ScorerConfig
    media_root: Path
    backend: Backend | None = None

    def __call__(self) -> Scorer:
        return build_scorer(self.config, self.media_root, self.backend)


def described_scorer(config: ScorerConfig, media_root: Path) -> Callable[[], Scorer] | None:
    """Builds the scorer ``config`` names without its model (prompts and frame settings only), for the processes
    that prepare items for it: a job's CPU step, the reward service's prepare workers. Picklable. None when no
    model runs in this process (no model, or one behind a server): there is then no video to decode here."""
    if not config.local_model:
        return None
    return partial(build_scorer, config, media_root, Unloaded(config.model or "no model"))


@dataclass(frozen=True)
class _ScoreBatches:
    """The score job's factory: the scorer's ``score`` as the job's batch function."""

    scorer: ScorerFactory

    def __call__(self) -> Callable[[list[Item]], list[ScoreRecord]]:
        return self.scorer().score


def _refuse_other_scores(out: Path, kind: ScoreKind, model: str | None) -> None:
    """Resuming skips the ids already in ``out``, so scores of another scorer or model there would pass for
    this run's. Every record of a run has its scorer's kind and model, so the first record tells."""
    first = next(read_records(out, ScoreRecord), None) if out.exists() else None
    if first is None or (first.score_kind, first.model) == (kind, model):
        return
    raise ValueError(
        f"{out}: holds {first.score_kind} scores by {first.model or 'no model'}, and this run gives {kind} scores "
        f"by {model or 'no model'}; a rerun only adds the ids not there yet, so write to a new --out"
    )


def score_manifest(config: ScoreConfig, *, backend: Backend | None = None, progress: bool | None = None) -> JobReport:
    """Score every sample not yet in ``config.out``; failing samples go to the errors file and the job goes on.

    The model is loaded where the batches run (``config.engine``), once there; ``backend`` replaces it.
    """
    samples = list(read_records(config.manifest, VideoSample))
    media_root = config.manifest.parent
    described = build_scorer(config, media_root, backend or Unloaded(config.model or "no model"))
    _refuse_other_scores(config.out, described.kind, config.model)
    describe = described_scorer(config, media_root)
    job: Job[Item, ScoreRecord] = Job(
        stage="reward",
        factory=_ScoreBatches(ScorerFactory(config, media_root, backend)),
        prepare=Preparer(describe) if describe is not None else None,
        item_id=sample_id,
        out=config.out,
        record_type=ScoreRecord,
        errors=config.errors_path(),
        batch_size=config.batch_size,
        workers=config.workers,
        gpu=config.local_model,
    )
    resolved = {"score": config.model_dump(mode="json"), **described.resolved()}
    return run_job(job, samples, config=resolved, progress=progress, engine=config.engine)
