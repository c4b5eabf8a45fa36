"""`cookbook-reward score`: a scorer over every sample of a manifest, as a resumable batch job."""

from __future__ import annotations

from cookbook_data.jobs import Job, JobReport, run_job
from cookbook_data.records import read_records
from cookbook_data.schemas import ScoreRecord, VideoSample
from cookbook_infer.backends.base import Backend
from cookbook_reward.config import ScoreConfig
from cookbook_reward.scorers import build_scorer


def score_manifest(config: ScoreConfig, *, backend: Backend | None = None, progress: bool | None = None) -> JobReport:
    """Score every sample not yet in ``config.out``; failing samples go to the errors file and the job goes on."""
    samples = list(read_records(config.manifest, VideoSample))
    scorer = build_scorer(config, config.manifest.parent, backend)
    job: Job[VideoSample, ScoreRecord] = Job(
        stage="reward",
        process=scorer.score,
        item_id=lambda sample: sample.id,
        out=config.out,
        record_type=ScoreRecord,
        errors=config.errors_path(),
        batch_size=config.batch_size,
        workers=config.workers,
    )
    resolved = {"score": config.model_dump(mode="json"), **scorer.resolved()}
    return run_job(job, samples, config=resolved, progress=progress)
