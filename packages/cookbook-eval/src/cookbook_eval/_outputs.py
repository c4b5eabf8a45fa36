"""A job's output folder, kept to one way of making its records and read back for a summary.

FID/FVD features and Sampson records are written through :func:`cookbook_data.jobs.run_job`, which resumes by
id: a rerun into the same folder skips every id already written. That is right only when the old records were
made the way the new run would make them, so each record carries a :func:`fingerprint` of the settings it
depends on, and :func:`refuse_stale` stops a run whose folder holds records made otherwise (other settings,
another file under the same id) before any work is done, instead of summarising them under the new settings.
:func:`read_back` then gathers what the job left for this run's inputs: their records, in input order, and
their failures by reason, where an id listed twice counts as ``DuplicateId`` (the job processes its first
copy only), so that no input goes uncounted.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, JsonValue

from cookbook_data.jobs import Job
from cookbook_data.records import read_records
from cookbook_data.schemas import ItemError

R = TypeVar("R", bound=BaseModel)


def fingerprint(settings: Mapping[str, JsonValue]) -> str:
    """A short hash of the settings a job's records depend on (whatever the order of the keys)."""
    body = json.dumps(settings, sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def _records(job: Job[Any, R], ids: Sequence[str]) -> dict[str, R]:
    """The job's records of ``ids`` already in its output, in the order of ``ids``."""
    if not job.out.exists():
        return {}
    wanted = set(ids)
    found = {
        key: record
        for record in read_records(job.out, job.record_type)
        if (key := getattr(record, job.id_field)) in wanted
    }
    return {key: found[key] for key in dict.fromkeys(ids) if key in found}


def refuse_stale(job: Job[Any, R], ids: Sequence[str], current: Callable[[R], bool], made: str) -> None:
    """Raise ValueError when a record of ``ids`` in the job's output is not ``current``: resuming would keep it
    and label it with this run's settings. ``made`` says how such a record was made, for the message."""
    stale = [key for key, record in _records(job, ids).items() if not current(record)]
    if stale:
        raise ValueError(
            f"{job.out}: {len(stale)} record(s) of this run's inputs (e.g. {stale[0]!r}) {made}; use a new output "
            "folder or delete this one"
        )


@dataclass(frozen=True)
class Finished(Generic[R]):
    """What a job left for a run's inputs."""

    records: dict[str, R]
    """Records by id, in input order."""
    failures: dict[str, int]
    """Inputs without a record, by reason; ``DuplicateId`` for each repeated copy of an id."""

    @property
    def failed(self) -> int:
        return sum(self.failures.values())


def read_back(job: Job[Any, R], ids: Sequence[str]) -> Finished[R]:
    """The records and failures of ``ids`` (the run's inputs, repeats included) once ``job`` has run over them.

    An input's reason is its latest error line other than ``DuplicateId`` (which reports a repeat, counted
    here from ``ids``), or ``unknown`` when the errors file has none."""
    records = _records(job, ids)
    unique = dict.fromkeys(ids)
    reasons: dict[str, str] = {}
    if job.errors.exists():
        reasons = {
            error.sample_id: error.error_type
            for error in read_records(job.errors, ItemError)
            if error.error_type != "DuplicateId"
        }
    failures = Counter(reasons.get(key, "unknown") for key in unique if key not in records)
    if len(ids) > len(unique):
        failures["DuplicateId"] = len(ids) - len(unique)
    return Finished(records, dict(failures))
