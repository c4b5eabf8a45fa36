"""The Ray engine of :func:`cookbook_data.jobs.run_job`, on Ray Data.

What runs where:

- **driver** (the process calling ``run_job``): reads the done ids and skips them, turns the items still to do
  into a dataset, and writes every record and ItemError with the job's writers as batches come back (so a
  killed driver loses only the batches in flight, and its rerun skips what was written);
- **tasks** (CPUs): the job's per-item ``prepare`` step (decoding, frame sampling), when it has one; an item
  whose preparation fails becomes its ItemError there;
- **actors** (a pool of ``actors``, each with ``gpus_per_actor`` GPUs): each builds the job's batch function
  once (``Job.factory``: loads the model) and runs the same batch code as the local engine, a failing batch
  retried item by item.

Ray restarts an actor whose process dies (``max_restarts``) and sends its batch again (``max_task_retries``);
decoding tasks are run again (``task_retries``). A batch that fails all its tries is split and its items are
sent one at a time; an item that still kills its worker is recorded as a ``WorkerDied`` error, so no item is
lost without a trace. The driver writes each item at most once (by its position in the run), whatever Ray
delivers.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

import pyarrow as pa
import ray
import ray.data
from pydantic import BaseModel
from ray import cloudpickle
from ray.data import ActorPoolStrategy, DataContext
from ray.util.annotations import RayDeprecationWarning

from cookbook_data.engines import RayEngineConfig, connect
from cookbook_data.jobs import Job, Process, _prepare_item, _run_batch
from cookbook_data.schemas import ItemError

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R", bound=BaseModel)

MAX_BLOCKS = 4096
"""Most blocks a run's items are split into; a block is the unit the driver writes, so smaller is finer."""

Row = tuple[int, tuple[str, Any]]
"""(position in this run, (item id, item))."""


@dataclass(frozen=True)
class _Work(Generic[T, R]):
    """What the cluster needs of a job: its name, its batch function (or the factory building it), its
    per-item preparation. Never its files: only the driver writes."""

    stage: str
    factory: Callable[[], Process[T, R]] | None
    process: Process[T, R] | None
    prepare: Callable[[T], T] | None

    @classmethod
    def of(cls, job: Job[T, R]) -> _Work[T, R]:
        process = job.process if job.factory is None else None
        return cls(stage=job.stage, factory=job.factory, process=process, prepare=job.prepare)

    def processor(self) -> Process[T, R]:
        if self.factory is not None:
            return self.factory()
        assert self.process is not None
        return self.process


@dataclass(frozen=True)
class _Plan:
    """The actor pool and task sizes for one run, from the settings and the cluster's resources."""

    actors: int
    max_actors: int | None
    gpus_per_actor: float
    cpus_per_actor: float
    cpus_per_task: float

    @classmethod
    def of(cls, engine: RayEngineConfig, resources: Mapping[str, float], *, prepare: bool, gpu: bool) -> _Plan:
        gpus, cpus = resources.get("GPU", 0.0), resources.get("CPU", 0.0)
        default = 1.0 if gpu and gpus >= 1 else 0.0
        per_actor = engine.gpus_per_actor if engine.gpus_per_actor is not None else default
        if engine.actors is not None:
            actors = engine.actors
        elif per_actor > 0:
            actors = max(1, int(gpus // per_actor))
        elif engine.cpus_per_actor > 0:
            spare = cpus - (engine.cpus_per_task if prepare else 0.0)
            actors = max(1, int(spare // engine.cpus_per_actor))
        else:
            actors = 1
        max_actors = max(engine.max_actors, actors) if engine.max_actors is not None else None
        pool_cpus = (max_actors or actors) * engine.cpus_per_actor
        if prepare and pool_cpus + engine.cpus_per_task > cpus:
            raise ValueError(
                f"{max_actors or actors} actor(s) x {engine.cpus_per_actor:g} CPU leave the cluster's {cpus:g} CPUs no "
                f"room for a decoding task of {engine.cpus_per_task:g} CPU, and the job would wait forever: lower "
                "engine.actors or engine.cpus_per_actor (e.g. 0.5), or engine.cpus_per_task, or add CPUs"
            )
        return cls(actors, max_actors, per_actor, engine.cpus_per_actor, engine.cpus_per_task)

    def compute(self, one_at_a_time: bool) -> ActorPoolStrategy:
        """The pool; ``one_at_a_time`` sends an actor its next batch only when the last one is done, so an
        actor that dies takes no other batch down with it."""
        in_flight = 1 if one_at_a_time else None
        if self.max_actors is not None and self.max_actors > self.actors:
            return ActorPoolStrategy(
                min_size=self.actors, max_size=self.max_actors, max_tasks_in_flight_per_actor=in_flight
            )
        return ActorPoolStrategy(size=self.actors, max_tasks_in_flight_per_actor=in_flight)


def _dumps(value: Any) -> bytes:
    dumps: Callable[[Any], bytes] = cloudpickle.dumps
    return dumps(value)


def _worker_class(work: _Work[Any, Any]) -> type:
    """The actor class of the pool; ``work`` travels inside it (no constructor arguments to keep alive)."""

    class JobWorker:
        def __init__(self) -> None:
            self.process = work.processor()

        def __call__(self, table: pa.Table) -> pa.Table:
            ids = table.column("id").to_pylist()
            batch = [cloudpickle.loads(blob) for blob in table.column("item").to_pylist()]
            outcomes = _run_batch(work.stage, self.process, ids, batch)
            blobs = [_dumps(outcome) for outcome in outcomes]
            return pa.table({"seq": table.column("seq"), "outcome": pa.array(blobs, pa.large_binary())})

    JobWorker.__name__ = JobWorker.__qualname__ = f"JobWorker[{work.stage}]"
    return JobWorker


def _prepare_rows(table: pa.Table, work: _Work[Any, Any]) -> pa.Table:
    """The task side: each item made ready by the job's ``prepare``, or replaced by its ItemError."""
    assert work.prepare is not None
    ids = table.column("id").to_pylist()
    items = [cloudpickle.loads(blob) for blob in table.column("item").to_pylist()]
    ready = [_prepare_item(work.stage, work.prepare, key, item) for key, item in zip(ids, items, strict=True)]
    blobs = pa.array([_dumps(item) for item in ready], pa.large_binary())
    return table.set_column(table.schema.get_field_index("item"), "item", blobs)


def _stream(
    work: _Work[Any, Any],
    rows: list[Row],
    batch_size: int,
    plan: _Plan,
    engine: RayEngineConfig,
    *,
    one_at_a_time: bool = False,
) -> Iterator[tuple[int, Any]]:
    """(position, outcome) of ``rows`` as the cluster finishes their batches. Batches that fail all their
    tries are left out (the caller sees which positions never came back)."""
    context = DataContext.get_current()
    saved = (context.max_errored_blocks, context.enable_progress_bars, context.print_on_execution_start)
    data_log = logging.getLogger("ray.data")
    level = data_log.level
    context.max_errored_blocks = -1  # a batch that fails all its tries must not end the run: its items get retried
    context.enable_progress_bars = False  # the job's own progress bar counts written records
    context.print_on_execution_start = False
    data_log.setLevel(max(level, logging.WARNING))
    try:
        per_block = batch_size * max(1, math.ceil(len(rows) / (batch_size * MAX_BLOCKS)))
        dataset: ray.data.Dataset = ray.data.from_items(
            [{"seq": seq, "id": key, "item": _dumps(item)} for seq, (key, item) in rows],
            override_num_blocks=math.ceil(len(rows) / per_block),
        )
        with warnings.catch_warnings():
            # Ray 2.60 names these remote arguments deprecated without offering the retry settings by name yet.
            warnings.simplefilter("ignore", RayDeprecationWarning)
            if work.prepare is not None:
                dataset = dataset.map_batches(
                    cast(Any, _prepare_rows),
                    fn_kwargs={"work": work},
                    batch_size=batch_size,
                    batch_format="pyarrow",
                    num_cpus=plan.cpus_per_task,
                    max_retries=engine.task_retries,
                )
            dataset = dataset.map_batches(
                _worker_class(work),
                batch_size=batch_size,
                batch_format="pyarrow",
                compute=plan.compute(one_at_a_time),
                num_cpus=plan.cpus_per_actor,
                num_gpus=plan.gpus_per_actor or None,
                max_restarts=engine.max_restarts,
                max_task_retries=engine.max_task_retries,
            )
        for batch in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
            block = cast(pa.Table, batch)
            for seq, blob in zip(block.column("seq").to_pylist(), block.column("outcome").to_pylist(), strict=True):
                yield seq, cloudpickle.loads(blob)
    finally:
        context.max_errored_blocks, context.enable_progress_bars, context.print_on_execution_start = saved
        data_log.setLevel(level)


def run_on_ray(
    job: Job[T, R],
    pending: list[tuple[str, T]],
    engine: RayEngineConfig,
    write: Callable[[Iterable[R | ItemError]], None],
) -> None:
    """Process ``pending`` (id, item) pairs on the cluster at ``engine.address``; ``write`` gets each outcome
    once, on this process, as its batch comes back."""
    if not pending:
        return
    cluster = connect(engine.address)
    plan = _Plan.of(engine, cluster.cluster_resources(), prepare=job.prepare is not None, gpu=job.gpu)
    log.info(
        "%s on Ray: %d items, %d actor(s) (up to %s) x %g GPU + %g CPU, batches of %d",
        job.stage,
        len(pending),
        plan.actors,
        plan.max_actors or plan.actors,
        plan.gpus_per_actor,
        plan.cpus_per_actor,
        job.batch_size,
    )
    work = _Work.of(job)
    rows: list[Row] = list(enumerate(pending))
    returned: set[int] = set()
    repeated = 0

    def collect(stream: Iterator[tuple[int, Any]]) -> None:
        nonlocal repeated
        for seq, outcome in stream:
            if seq in returned:
                repeated += 1
                continue
            returned.add(seq)
            write([outcome])

    collect(_stream(work, rows, job.batch_size, plan, engine))
    missing = [row for row in rows if row[0] not in returned]
    if missing:
        # Alone in its batch, and alone on its actor: only an item that kills its worker itself fails now.
        log.warning("%s: %d items came back from no batch; sending them one at a time", job.stage, len(missing))
        collect(_stream(work, missing, 1, plan, engine, one_at_a_time=True))
        missing = [row for row in rows if row[0] not in returned]
    tries = engine.max_task_retries + 1
    write(
        ItemError(
            sample_id=key,
            stage=job.stage,
            error_type="WorkerDied",
            message=(
                f"the Ray worker processing this item died (or failed outside the job's function) {tries} times "
                "in a row; see the worker logs (`ray logs`)"
            ),
            details={"tries": tries},
        )
        for _, (key, _) in missing
    )
    if repeated:
        log.warning("%s: %d results came back twice from Ray; each was written once", job.stage, repeated)
