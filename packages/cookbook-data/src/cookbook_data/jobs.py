"""The one way to process many items: items in, a batched function, records and per-item errors out.

Every batch job of the toolkit (validation, ingestion, inference, scoring, feature extraction) runs
through :func:`run_job`, so each gets the same guarantees without writing them again:

- **resume**: items whose id is already in the output are skipped, so a rerun after a crash continues
  where it stopped and never writes a record twice; an item tried again replaces its earlier error lines
  with its new outcome, so reruns do not pile up copies of the same failure; a record the rerun asks more of
  (``Job.redo``) is made again and replaced, so the output still holds one record per item;
- **no silent loss**: an item that fails becomes an :class:`~cookbook_data.schemas.ItemError` line in the
  errors file and the job goes on; when a whole batch raises, its items are retried one by one so only the
  culprit fails; an id seen twice in the input is reported, not dropped quietly;
- **progress** on a terminal, **parallel** batches on worker threads (decoding and I/O release the GIL),
  **throughput** in the returned report, and the resolved config written next to the output;
- **an engine to choose** (:mod:`cookbook_data.engines`): the batches run in this process, or on a Ray
  cluster with the model in a pool of actors; this process reads, resumes and writes the same files either way;
- **one run per output**: a run holds an exclusive lock on ``<out>.lock`` until it ends, so a second run on the
  same output (started by hand, or a scheduler's retry) is refused at once instead of writing the same items
  again and losing, when either rewrites the files at its end, what the other appended.

Stage code only writes ``process(batch) -> records`` (or a ``factory`` that builds it where the batches run,
e.g. loading a model) and raises when an item is bad.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import socket
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, JsonValue
from pydantic_core import PydanticSerializationError

from cookbook_data.cpus import threads_for
from cookbook_data.engines import LocalEngineConfig, RayEngineConfig, require_ray
from cookbook_data.records import JsonlWriter, done_ids
from cookbook_data.schemas import ItemError

T = TypeVar("T")
R = TypeVar("R", bound=BaseModel)

RESOLVED_CONFIG = "config.resolved.json"
DUPLICATE_ID = "DuplicateId"
"""Error type of an id seen again in the input: it reports the input, not the item, so it never makes the
item done nor replaces the item's own outcome."""

log = logging.getLogger(__name__)


@dataclass
class JobReport:
    """What a job did: counts, failures by error type, and throughput."""

    stage: str
    total: int = 0
    skipped: int = 0
    succeeded: int = 0
    failed: int = 0
    elapsed_s: float = 0.0
    failures_by_type: dict[str, int] = field(default_factory=dict)

    @property
    def items_per_s(self) -> float:
        processed = self.succeeded + self.failed
        return processed / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def summary(self) -> str:
        """One line for a person: what happened and how fast."""
        return (
            f"{self.stage}: {self.succeeded} done, {self.failed} failed, {self.skipped} already done "
            f"(of {self.total}) in {self.elapsed_s:.1f} s, {self.items_per_s:.2f} items/s"
        )


Process = Callable[[list[T]], Sequence[R]]
"""A job's batch function: one record per item, in order; raises when an item is bad."""


@dataclass(kw_only=True)
class Job(Generic[T, R]):
    """A batch job: what to run on which items, and where its records and errors go.

    Give the batch function as ``process``, or as a ``factory`` that builds it where the batches run.
    """

    stage: str
    """Name written into every ItemError, e.g. 'validate' or 'infer'."""
    item_id: Callable[[T], str]
    out: Path
    record_type: type[R]
    errors: Path
    process: Process[T, R] | None = None
    """Turns a batch of items into one record per item, in order; raises when an item is bad."""
    factory: Callable[[], Process[T, R]] | None = None
    """Builds ``process`` where the batches run: once in this process on the local engine (when the first batch
    is due, so a run with nothing left to do builds nothing), once in each actor on the Ray engine, never on
    the Ray driver. For what is costly to build or must not be built here (a model). It is pickled for the
    Ray engine: a module-level function, a ``functools.partial`` of one, or an instance of a module-level
    class whose fields pickle (a config, not a loaded model)."""
    prepare: Callable[[T], T] | None = None
    """Optional per-item CPU step before ``process`` (decoding, frame sampling): returns the item made ready
    for ``process``. Runs on the worker threads here, and as Ray tasks on the cluster's CPUs, apart from the
    actors holding the model. Raising fails only that item."""
    gpu: bool = False
    """The batch function runs a model that wants a GPU: on a Ray cluster with GPUs, each actor then reserves
    ``gpus_per_actor`` of them (1 unless set). CPU work (validation, ingestion) leaves the GPUs alone."""
    id_field: str = "sample_id"
    """Field of the output records holding the item id (used to resume)."""
    redo: Callable[[dict[str, Any]], bool] | None = None
    """Says of a record already in the output (its parsed JSON line) that its item is not done: the rerun's
    settings ask more of it than it holds (a manifest row written without its video, now that the rerun
    downloads videos). The item is processed again, and once a run completes such a record is removed where its
    item has a newer record or one ``redo`` accepts, so the output ends with one record per item."""
    redo_failure_drops: bool = False
    """An item ``redo`` sent back that fails this run loses its earlier record too: for records ``redo`` knows to
    be wrong (validation: a row whose id differing rows now hold), not merely short of the rerun's settings."""
    batch_size: int = 1
    workers: int = 1
    """Batches run at the same time on the local engine (threads). The Ray engine sizes its own pool."""
    retry_failed: bool = True
    """On a rerun, process again the items that failed before (True: transient failures such as a full
    GPU); False treats a recorded failure as final (validation: a broken file stays broken)."""
    retried: Callable[[dict[str, Any]], bool] | None = None
    """Says of an earlier failure (its parsed error line) that its item is tried again even when
    ``retry_failed`` is False: a failure the user can mend outside the job (validation: a missing file,
    downloaded since), or one of an item whose input changed since."""

    def __post_init__(self) -> None:
        if (self.process is None) == (self.factory is None):
            given = "both" if self.process is not None else "neither"
            raise ValueError(f"{self.stage}: a job takes `process` or `factory`, got {given}")

    def processor(self) -> Process[T, R]:
        """The batch function: ``process``, or a new one from ``factory``."""
        if self.process is not None:
            return self.process
        assert self.factory is not None
        return self.factory()


def write_resolved_config(folder: Path, config: BaseModel | dict[str, Any]) -> Path:
    """Write the configuration a run really used (defaults filled in) as ``config.resolved.json``.

    One that is there already with other settings (another stage writing to the same folder, or a rerun with
    changed settings, whose earlier records were made with the old ones) is kept beside it as
    ``config.resolved.<UTC time>.json``, with a warning, rather than overwritten: every record in the folder
    keeps the settings it was made with on file."""
    folder.mkdir(parents=True, exist_ok=True)
    body = config.model_dump(mode="json") if isinstance(config, BaseModel) else config
    versions = {}
    for dist in ("cookbook-data", "cookbook-infer", "cookbook-reward", "cookbook-train", "cookbook-eval"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    text = json.dumps({"config": body, "versions": versions}, indent=2, default=str) + "\n"
    path = folder / RESOLVED_CONFIG
    if path.exists() and _settings_in(path) != json.loads(text)["config"]:
        kept = _unused_name(folder, f"config.resolved.{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}")
        path.replace(kept)
        log.warning(
            "%s held other settings (another stage's, or an earlier run's whose records are already written): "
            "kept as %s",
            path,
            kept.name,
        )
    path.write_text(text)
    return path


def _settings_in(path: Path) -> object:
    """The ``config`` of a resolved-config file (None when it cannot be read as one)."""
    try:
        return json.loads(path.read_text()).get("config")
    except (ValueError, AttributeError, OSError):
        return None


def _unused_name(folder: Path, stem: str) -> Path:
    candidate, number = folder / f"{stem}.json", 1
    while candidate.exists():
        number += 1
        candidate = folder / f"{stem}-{number}.json"
    return candidate


_NO_LOCKS = frozenset({errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP})
"""``flock`` errors of a filesystem without locks (Lustre mounted without ``flock``, some network filesystems)."""


class OutputBusyError(RuntimeError):
    """Another run is writing the same output: a second one would write its items again and could lose records."""


def lock_path(out: Path) -> Path:
    """The lock file of an output: ``<out>.lock`` beside the file it names, symlinks followed, so that every
    spelling of one output (relative, through a symlinked folder or file) meets the same lock. It stays after a
    run; only the lock on it counts."""
    real = out.resolve()
    return real.with_name(f"{real.name}.lock")


@contextmanager
def _exclusive(out: Path) -> Iterator[None]:
    """Hold the lock of ``out`` for the body, or raise :class:`OutputBusyError` at once if another run holds it.

    An OS lock (``flock``) on ``<out>.lock``, not the file's existence: the kernel releases it when its process
    ends however it ends, so a crashed run never blocks the next one. The holder writes its process id and host
    into the file for the message of the run it refuses. The file is never removed: a run that removed it could
    let two later runs each lock a different file of the same name. On a shared filesystem the lock holds across
    machines where the filesystem supports locks (NFS, Lustre mounted with ``flock``); where it has none, the run
    goes on unlocked with a warning rather than not at all."""
    path = lock_path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 256, 0).decode("utf-8", errors="replace").strip()
            by = f" ({holder})" if holder else ""
            raise OutputBusyError(
                f"{out}: another run{by} holds {path.name} and is writing this output; wait for it to end or "
                "write to another output"
            ) from None
        except OSError as error:
            if error.errno not in _NO_LOCKS:
                raise
            log.warning(
                "%s: this filesystem has no file locks (%s); a second run on this output would not be stopped",
                out,
                error.strerror,
            )
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def _batches(items: Iterable[T], size: int) -> Iterator[list[T]]:
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


class ItemFailure(Exception):
    """Raised by a job's process function to fail one item with a named reason and context.

    Any other exception fails the item too, with its class name as the error type.
    """

    def __init__(self, reason: str, message: str, details: dict[str, JsonValue] | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.details = details or {}


def _error(stage: str, item_id: str, error: BaseException) -> ItemError:
    if isinstance(error, ItemFailure):
        return ItemError(
            sample_id=item_id, stage=stage, error_type=error.reason, message=str(error), details=error.details
        )
    return ItemError(sample_id=item_id, stage=stage, error_type=type(error).__name__, message=str(error) or repr(error))


def _process(stage: str, process: Process[T, R], batch: list[T]) -> list[R]:
    records = list(process(batch))
    if len(records) != len(batch):
        raise RuntimeError(f"{stage}: {len(records)} records for a batch of {len(batch)} items")
    return records


def _process_batch(stage: str, process: Process[T, R], ids: list[str], batch: list[T]) -> list[R | ItemError]:
    """Records for a batch; if the batch raises, each item is retried alone so only bad items fail."""
    try:
        return list(_process(stage, process, batch))
    except Exception as batch_error:
        if len(batch) == 1:
            return [_error(stage, ids[0], batch_error)]
    outcomes: list[R | ItemError] = []
    for key, item in zip(ids, batch, strict=True):
        try:
            outcomes.extend(_process(stage, process, [item]))
        except Exception as error:
            outcomes.append(_error(stage, key, error))
    return outcomes


def _prepare_item(stage: str, prepare: Callable[[T], T], key: str, item: T) -> T | ItemError:
    """The item made ready, or the ItemError saying why it could not be."""
    try:
        return prepare(item)
    except Exception as error:
        return _error(stage, key, error)


def _run_batch(
    stage: str,
    process: Process[T, R],
    ids: list[str],
    batch: list[T | ItemError],
) -> list[R | ItemError]:
    """Outcomes of a batch whose items are ready, or already failed (an ItemError from ``prepare``), in order."""
    ready = [(i, item) for i, item in enumerate(batch) if not isinstance(item, ItemError)]
    outcomes: list[R | ItemError | None] = [item if isinstance(item, ItemError) else None for item in batch]
    if ready:
        done = _process_batch(stage, process, [ids[i] for i, _ in ready], [item for _, item in ready])
        for (i, _), outcome in zip(ready, done, strict=True):
            outcomes[i] = outcome
    return [outcome for outcome in outcomes if outcome is not None]


def _run_local_batch(job: Job[T, R], process: Process[T, R], batch: list[tuple[str, T]]) -> list[R | ItemError]:
    """A batch on this process: its items prepared on parallel threads (decoding releases the GIL), then
    processed together."""
    ids = [key for key, _ in batch]
    items: list[T | ItemError] = [item for _, item in batch]
    prepare = job.prepare
    if prepare is not None:
        with ThreadPoolExecutor(max_workers=threads_for(len(batch)), thread_name_prefix=f"{job.stage}-prepare") as pool:
            items = list(pool.map(lambda pair: _prepare_item(job.stage, prepare, *pair), batch))
    return _run_batch(job.stage, process, ids, items)


UNWRITABLE_RECORD = "unwritable_record"
"""Error type of an item whose record cannot be written as UTF-8 JSON."""


def _printable(text: str) -> str:
    """``text`` with what UTF-8 cannot hold (lone surrogates) written as backslash escapes."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


class _Outputs(Generic[R]):
    """Writes outcomes to the records and errors files and keeps the report's counts."""

    def __init__(self, job: Job[Any, R], report: JobReport, advance: Callable[[int], None]) -> None:
        self.job = job
        self.records = JsonlWriter(job.out, job.record_type)
        self.errors = JsonlWriter(job.errors, ItemError)
        self.earlier_records = job.out.stat().st_size
        self.earlier_errors = job.errors.stat().st_size
        """Bytes of the records and errors files written by earlier runs (after any torn line was set aside)."""
        self.report = report
        self.advance = advance

    def write(self, outcomes: Iterable[R | ItemError]) -> None:
        for outcome in outcomes:
            failure = outcome if isinstance(outcome, ItemError) else self._write_record(outcome)
            if failure is None:
                self.report.succeeded += 1
            else:
                self._write_error(failure)
                self.report.failed += 1
                kind = failure.error_type
                self.report.failures_by_type[kind] = self.report.failures_by_type.get(kind, 0) + 1
            self.advance(1)

    def _write_record(self, record: R) -> ItemError | None:
        """Write a record; None, or the failure of an item whose record cannot be written as UTF-8 JSON (text
        holding a lone surrogate, ``\\ud800``, which JSON readers refuse): that item fails, the job goes on. A
        record that fails is written as nothing: JSON lines are whole or absent."""
        try:
            self.records.write(record)
        except PydanticSerializationError as error:
            key = _printable(str(getattr(record, self.job.id_field, "?")))
            message = f"{key}: its record cannot be written: {_printable(str(error))}"
            return ItemError(sample_id=key, stage=self.job.stage, error_type=UNWRITABLE_RECORD, message=message)
        return None

    def _write_error(self, failure: ItemError) -> None:
        """Record a failure; one whose own text cannot be written is recorded with that text escaped and without
        its details (the row it quotes)."""
        try:
            self.errors.write(failure)
        except PydanticSerializationError:
            escaped = {"sample_id": _printable(failure.sample_id), "message": _printable(failure.message)}
            self.errors.write(failure.model_copy(update={**escaped, "details": {}}))

    def close(self) -> None:
        self.records.close()
        self.errors.close()


@dataclass
class _Resume:
    """What resuming learns about a run's items, for replacing stale error lines once the run completes."""

    done: set[str]
    """Ids already in the output when the run started (but for records ``Job.redo`` rejects): a failure of
    theirs is stale (they succeeded in a run that crashed before it could replace it)."""
    attempted: set[str] = field(default_factory=set)
    """Ids given a new outcome this run: their earlier error lines are replaced by it."""
    repeated: set[str] = field(default_factory=set)
    """Ids seen more than once in the input: reported anew as DuplicateId this run."""
    duplicates: list[ItemError] = field(default_factory=list)

    def superseded(self, line: bytes) -> bool:
        """Whether an earlier errors-file line is replaced by this run. A DuplicateId line reports the input,
        not the item: it is replaced only by a new report, and it never replaces the item's own failure (the
        first copy may have been skipped as failed before, and that failure stands)."""
        found = _error_of(line)
        if found is None:
            return False
        key, kind = found
        if kind == DUPLICATE_ID:
            return key in self.repeated
        return key in self.done or key in self.attempted


def _pending(job: Job[T, R], items: Iterable[T], report: JobReport, resume: _Resume) -> Iterator[tuple[str, T]]:
    """(id, item) of the items still to do: ids already written are counted as skipped, repeated ids become
    errors; ``resume`` records which is which."""
    already = resume.done
    if not job.retry_failed:
        retried = job.retried
        already = already | done_ids(
            job.errors,
            unless=lambda error: error.get("error_type") == DUPLICATE_ID or (retried is not None and retried(error)),
        )
    seen: set[str] = set()
    for item in items:
        report.total += 1
        key = _printable(job.item_id(item))  # the one place ids enter: as its record or failure can be written
        if key in seen:
            message = f"id {key!r} appears more than once in the input; later copies are not processed"
            resume.duplicates.append(
                ItemError(sample_id=key, stage=job.stage, error_type=DUPLICATE_ID, message=message)
            )
            resume.repeated.add(key)
            continue
        seen.add(key)
        if key in already:
            report.skipped += 1
            continue
        resume.attempted.add(key)
        yield key, item


def _json_object(line: bytes) -> dict[str, Any] | None:
    """A line of a records or errors file as a JSON object (None for anything else, which is kept as it is)."""
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _error_of(line: bytes) -> tuple[str, str | None] | None:
    """(item id, error type) of an errors-file line (None for a line that is not a JSON object, which is kept)."""
    value = _json_object(line)
    if value is None or "sample_id" not in value:
        return None
    kind = value.get("error_type")
    return str(value["sample_id"]), None if kind is None else str(kind)


def _drop_earlier_lines(path: Path, earlier: int, superseded: Callable[[bytes], bool]) -> None:
    """Remove, from the first ``earlier`` bytes of ``path`` (what earlier runs wrote), the lines ``superseded``
    picks. Runs only after a run completes; the file is rewritten beside itself and renamed, so a crash leaves
    the old file or the new one."""
    if earlier == 0:
        return
    with path.open("rb") as handle:
        before = handle.read(earlier)
        after = handle.read()
    lines = before.splitlines(keepends=True)
    kept = [line for line in lines if not superseded(line)]
    if len(kept) == len(lines):
        return
    staging = path.with_name(f".{path.name}.partial")
    staging.write_bytes(b"".join(kept) + after)
    staging.replace(path)


def _drop_superseded_errors(path: Path, earlier: int, resume: _Resume) -> None:
    """Remove the earlier error lines this run supersedes (a retried failure, a repeated id reported anew, the
    failure of an item that succeeded in a run that then crashed), so that each item's errors are those of its
    latest attempt and reruns do not pile up copies."""
    _drop_earlier_lines(path, earlier, resume.superseded)


def _drop_redone_records(job: Job[Any, Any], earlier: int, attempted: set[str]) -> None:
    """Remove the earlier records of the items that have a newer record written by this run, and the earlier
    records that ``job.redo`` rejects once their item has one ``redo`` accepts (written by a run that crashed
    before it could remove them), so the output holds one record per item; with ``job.redo_failure_drops``, also
    once their item was ``attempted`` and failed.

    An item written this run was not done when the run started, so every earlier record of it was one ``redo``
    rejected then: those go whatever ``redo`` says of them now, as a verdict may change during the run (a record
    naming a cached file that had gone is accepted again once the run fetched the file back)."""
    redo = job.redo
    if redo is None or earlier == 0:
        return

    def item_of(line: bytes) -> tuple[str, dict[str, Any]] | None:
        record = _json_object(line)
        return None if record is None or job.id_field not in record else (str(record[job.id_field]), record)

    with job.out.open("rb") as handle:
        before = [found for line in handle.read(earlier).splitlines() if (found := item_of(line)) is not None]
        rewritten = {found[0] for line in handle if (found := item_of(line)) is not None}
    recovered = {key for key, record in before if not redo(record)}
    if job.redo_failure_drops:
        recovered |= attempted

    def superseded(line: bytes) -> bool:
        found = item_of(line)
        return found is not None and (found[0] in rewritten or (found[0] in recovered and redo(found[1])))

    _drop_earlier_lines(job.out, earlier, superseded)


def _run_local(job: Job[T, R], pending: Iterable[tuple[str, T]], write: Callable[[Iterable[Any]], None]) -> None:
    """Batches on ``job.workers`` threads of this process; outcomes written in input order."""
    process: Process[T, R] | None = None
    with ThreadPoolExecutor(max_workers=max(1, job.workers)) as pool:
        # At most 2 batches per worker wait in flight.
        running: deque[Future[list[R | ItemError]]] = deque()
        for batch in _batches(pending, job.batch_size):
            if process is None:
                process = job.processor()  # built when there is work, here (a failure ends the job)
            running.append(pool.submit(_run_local_batch, job, process, batch))
            if len(running) >= 2 * max(1, job.workers):
                write(running.popleft().result())
        while running:
            write(running.popleft().result())


def run_job(
    job: Job[T, R],
    items: Iterable[T],
    *,
    config: BaseModel | dict[str, Any] | None = None,
    progress: bool | None = None,
    total: int | None = None,
    engine: LocalEngineConfig | RayEngineConfig | None = None,
) -> JobReport:
    """Run ``job`` over ``items``, appending to its output and errors files. Returns the report.

    ``progress=None`` shows a progress bar only when stderr is a terminal. ``total`` sizes the bar when
    ``items`` has no length. ``engine`` says where the batches run (default: this process); records and errors
    are written here, by the same writers, whichever it is. The local engine writes them in input order, the
    Ray engine in the order batches finish.

    Raises :class:`OutputBusyError` at once when another run (in any process) is writing ``job.out``.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    if isinstance(engine, RayEngineConfig):
        require_ray()
    if total is None and isinstance(items, Sequence):
        total = len(items)
    report = JobReport(stage=job.stage)
    console = Console(stderr=True)
    columns = (TextColumn(f"[bold]{job.stage}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    started = time.perf_counter()
    with _exclusive(job.out):
        if config is not None:
            write_resolved_config(job.out.parent, config)
        with Progress(
            *columns, console=console, disable=not (console.is_terminal if progress is None else progress)
        ) as bar:
            task = bar.add_task(job.stage, total=total)
            outputs = _Outputs(job, report, lambda count: bar.advance(task, count))
            resume = _Resume(done=done_ids(job.out, key=job.id_field, unless=job.redo))
            try:
                pending = _pending(job, items, report, resume)
                if isinstance(engine, RayEngineConfig):
                    from cookbook_data._ray_engine import run_on_ray

                    run_on_ray(job, list(pending), engine, outputs.write)
                else:
                    _run_local(job, pending, outputs.write)
                outputs.write(resume.duplicates)
                bar.advance(task, report.skipped)
            finally:
                outputs.close()
            _drop_superseded_errors(job.errors, outputs.earlier_errors, resume)
            _drop_redone_records(job, outputs.earlier_records, resume.attempted)
    report.elapsed_s = time.perf_counter() - started
    return report
