"""`cookbook-reward serve --replicas N`: the reward service as replicas on a Ray cluster (Ray Serve).

Each replica is one Ray actor that builds its own scorer (the model is loaded there, never in the process that
deploys) and serves the same FastAPI application as the single-process service
(:func:`cookbook_reward.service.create_app`): the same endpoints, token, media-folder policy, limits and
metrics, videos prepared by worker processes as requests arrive, and dynamic batching of the requests that
reach it. Ray Serve's proxy spreads requests over the replicas; ``/healthz`` and ``/metrics`` describe the
replica that answers.

A replica takes at most ``max_queue + max_batch_size`` requests at once, so its own queue limit (429) still
holds; up to ``max_queue`` more wait in Ray Serve for a free replica, and beyond that Ray Serve answers 503.
With GPUs in the cluster each replica running a model reserves one (``gpus_per_replica``); a scorer without a
model, or whose model is behind an OpenAI-compatible server, reserves none.

Ray is imported only by the functions here (``pip install 'cookbook-data[ray]'``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from cookbook_data.engines import connect
from cookbook_reward.config import ReplicaSettings, ServeConfig
from cookbook_reward.health import local_url
from cookbook_reward.score import ScorerFactory, described_scorer
from cookbook_reward.service import create_app

log = logging.getLogger(__name__)

APP_NAME = "cookbook-reward"
DEPLOYMENT_NAME = "RewardService"


class RewardReplica:
    """One replica: its own scorer and the reward service's application around it.

    As in the single-process service, a model run in the replica has videos prepared by worker processes of
    the replica; unless ``service.prepare_workers`` says otherwise, as many as the CPUs the replica reserves
    (at least one), since the replica's share of its node is what Ray gave it, not the node's CPU count.
    """

    def __init__(self, config: ServeConfig, media_root: str) -> None:
        scorer = ScorerFactory(config.scorer, Path(media_root))()
        service = config.service
        describe = described_scorer(config.scorer, Path(media_root))
        if describe is not None and service.prepare_workers is None:
            reserved = (config.ray or ReplicaSettings()).cpus_per_replica
            service = service.model_copy(update={"prepare_workers": max(1, math.floor(reserved))})
        self._app = create_app(scorer, service, model=config.scorer.model, describe=describe)

    def __serve_build_asgi_app__(self) -> FastAPI:
        return self._app


def deployment_options(config: ServeConfig, cluster_gpus: float) -> dict[str, Any]:
    """Ray Serve options of the deployment: replicas (fixed or autoscaling), resources, request limits."""
    replicas = config.ray or ReplicaSettings()
    service = config.service
    gpus = replicas.gpus_per_replica
    if gpus is None:
        gpus = 1.0 if cluster_gpus >= 1 and config.scorer.local_model else 0.0
    actor: dict[str, float] = {"num_cpus": replicas.cpus_per_replica}
    if gpus > 0:
        actor["num_gpus"] = gpus
    options: dict[str, Any] = {
        "name": DEPLOYMENT_NAME,
        "ray_actor_options": actor,
        "max_ongoing_requests": service.max_queue + service.max_batch_size,
        "max_queued_requests": service.max_queue,
    }
    if replicas.min_replicas is not None or replicas.max_replicas is not None:
        low = replicas.min_replicas if replicas.min_replicas is not None else 1
        options["autoscaling_config"] = {
            "min_replicas": low,
            "max_replicas": replicas.max_replicas if replicas.max_replicas is not None else max(low, 1),
            "target_ongoing_requests": service.max_batch_size,
        }
    else:
        options["num_replicas"] = replicas.replicas or 1
    return options


def reward_application(config: ServeConfig, media_root: Path, cluster_gpus: float = 0.0) -> Any:
    """The Ray Serve application (a bound deployment) serving ``config``; ``media_root`` resolves relative
    trajectory paths, as the working directory does for the single-process service."""
    from ray import serve

    replica = serve.ingress()(RewardReplica)
    deployment = serve.deployment(**deployment_options(config, cluster_gpus))(replica)
    return deployment.bind(config, str(media_root))


@contextmanager
def serving_replicas(config: ServeConfig, media_root: Path) -> Iterator[str]:
    """Deploy the replicas (waiting until they are up) for the duration of the block; yields the base URL.

    Ray Serve's HTTP proxy listens on ``service.host:service.port`` (on every node of the cluster).
    """
    ray = connect((config.ray or ReplicaSettings()).address)
    from ray import serve

    service = config.service
    serve.start(http_options={"host": service.host, "port": service.port})
    application = reward_application(config, media_root, ray.cluster_resources().get("GPU", 0.0))
    serve.run(application, name=APP_NAME, route_prefix="/")
    try:
        yield local_url(service.host, service.port)
    finally:
        serve.delete(APP_NAME)
