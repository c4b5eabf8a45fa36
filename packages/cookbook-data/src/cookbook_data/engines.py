"""Where a job's batches run: in this process (``local``), or on a Ray cluster (``ray``).

The choice is a setting of the job's config (``engine.kind``, ``--engine`` on the command line); a stage hands
it to :func:`cookbook_data.jobs.run_job` and never looks at it. Both engines give the same records for the same
items: the driver (the process that runs ``run_job``) reads what is done, writes every record and error through
the same writers, and writes ``config.resolved.json``; only where the batch function runs differs.

This module stays light: Ray is imported only when the Ray engine runs (it is the ``ray`` extra of
cookbook-data).
"""

from __future__ import annotations

import logging
from types import ModuleType
from typing import Annotated, Literal

from pydantic import Field

from cookbook_data.schemas import Strict

log = logging.getLogger(__name__)

RAY_EXTRA = "pip install 'cookbook-data[ray]'"
"""How to install the Ray engine (the ``ray`` extra of cookbook-infer and cookbook-reward pulls it in too)."""


class LocalEngineConfig(Strict):
    """Batches run in this process, on the job's worker threads."""

    kind: Literal["local"] = Field(default="local", description="local: this process.")


class RayEngineConfig(Strict):
    """Batches run on a Ray cluster: the model in a pool of actors (built once per actor), per-item decoding
    (where a job separates it) in CPU tasks, records written by this process as batches come back."""

    kind: Literal["ray"] = Field(default="ray", description="ray: a Ray cluster (Ray Data).")
    address: str | None = Field(
        default=None,
        description=(
            "Cluster to join: 'auto' (one started with `ray start` on this machine), 'ray://HOST:10001' (Ray "
            "Client), or the head's HOST:PORT. Unset: $RAY_ADDRESS, else a cluster started for this run."
        ),
    )
    actors: int | None = Field(
        default=None,
        ge=1,
        description=(
            "Actors (model copies) in the pool. Default: one per gpus_per_actor GPUs of the cluster, or one per "
            "cpus_per_actor CPUs when it has no GPU."
        ),
    )
    max_actors: int | None = Field(
        default=None, ge=1, description="Let the pool grow from `actors` up to this many while work waits."
    )
    gpus_per_actor: float | None = Field(
        default=None,
        ge=0,
        description="GPUs each actor reserves. Default: 1 for a model job on a cluster with GPUs, else 0.",
    )
    cpus_per_actor: float = Field(default=1.0, ge=0, description="CPUs each actor reserves.")
    cpus_per_task: float = Field(default=1.0, gt=0, description="CPUs each decoding (prepare) task reserves.")
    max_restarts: int = Field(
        default=-1, ge=-1, description="Times Ray restarts an actor whose process died (-1: without limit)."
    )
    max_task_retries: int = Field(
        default=3,
        ge=0,
        description=(
            "Times a batch whose actor died is sent again (to the restarted actor). A batch that still fails is "
            "split into single items, and an item that kills its actor every time becomes a WorkerDied error."
        ),
    )
    task_retries: int = Field(default=3, ge=0, description="Times a decoding task whose worker died is run again.")


EngineConfig = Annotated[LocalEngineConfig | RayEngineConfig, Field(discriminator="kind")]
"""The engine of a job: ``{"kind": "local"}`` (the default) or ``{"kind": "ray", ...}``."""

EngineName = Literal["local", "ray"]


def engine_options(kind: EngineName | None, address: str | None) -> dict[str, str | None]:
    """The ``--engine``/``--address`` options as dotted config keys (``--address`` alone means ray)."""
    if kind == "local" and address is not None:
        raise ValueError("--address names a Ray cluster; it goes with --engine ray")
    return {"engine.kind": "ray" if address is not None else kind, "engine.address": address}


def require_ray() -> ModuleType:
    """The ``ray`` module, or an ImportError naming the extra to install."""
    try:
        import ray
    except ImportError as error:
        raise ImportError(f"the Ray engine needs Ray, which is not installed: {RAY_EXTRA}") from error
    module: ModuleType = ray
    return module


def connect(address: str | None) -> ModuleType:
    """Ray, connected to the cluster at ``address`` (kept when this process is already connected)."""
    ray = require_ray()
    if not ray.is_initialized():
        ray.init(address=address)
        log.info("connected to Ray: %s", ray.cluster_resources())
    return ray
