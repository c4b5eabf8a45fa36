"""The Ray engine against the local engine, and the reward service on 1 against 2 Ray Serve replicas.

Part 1, `reward score` (tiny Reason1 checkpoint, Yes/No scorer, 8 frames per video, CPU): the same manifest
scored by the local engine (one process, torch on every core) and by the Ray engine with 2 actors (0.5 CPU
each, so that decoding tasks of 1 CPU fit beside them on the 2 CPUs), on a local Ray cluster started by this
script. Each run is timed from the call to the last record,
model loading included, and split into a fixed start-up cost (until the first record is on disk) and a
steady rate (records after the first, over the time after the first); Ray's own start-up (`ray.init`) is
timed on its own. The script checks that both engines write the same scores.

Part 2, the reward service: 8 clients sending one-video `POST /v1/score` requests back to back to 1 and to 2
Ray Serve replicas (1 CPU each, so one prepare worker process each), and, as the reference, to the
single-process server in this script (prepare worker processes on every core, as `cookbook-reward serve`).

On a machine shared with other work a run can only be slowed down, so the engines alternate over 2 rounds
(and each server gets 2 load rounds) and the best round of each is reported; every round is kept in the JSON.
Writes benchmarks/results/ray.json and ray.md, naming the machine and its load.
"""

from __future__ import annotations

import json
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from _http_load import load_service
from _machine import cpu_model

from cookbook_data.engines import LocalEngineConfig, RayEngineConfig
from cookbook_data.records import read_records
from cookbook_data.schemas import ScoreRecord, VideoSample
from cookbook_data.testing.videos import SyntheticVideo, write_video
from cookbook_infer.testing import make_tiny_model
from cookbook_infer.testing.servers import serving_app
from cookbook_reward.config import ReplicaSettings, RewardServiceSettings, ScoreConfig, ScorerConfig, ServeConfig
from cookbook_reward.score import described_scorer, score_manifest
from cookbook_reward.scorers import build_scorer
from cookbook_reward.service import create_app

VIDEOS = 64
BATCH = 4
NFRAMES = 8
CLIENTS = 8
REQUESTS = 96
RESULTS = Path(__file__).parent / "results"


class _Watch:
    """Times when records land in a JSONL file (polled every 20 ms from a thread)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.seen: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _count(self) -> int:
        try:
            return self.path.read_bytes().count(b"\n")
        except FileNotFoundError:
            return 0

    def _run(self) -> None:
        last = 0
        while not self._stop.is_set():
            count = self._count()
            if count != last:
                self.seen.append((time.perf_counter(), count))
                last = count
            time.sleep(0.02)

    def __enter__(self) -> _Watch:
        self.started = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.ended = time.perf_counter()
        self._stop.set()
        self._thread.join()
        count = self._count()
        if not self.seen or self.seen[-1][1] != count:
            self.seen.append((self.ended, count))

    def summary(self, items: int) -> dict[str, float]:
        (first_t, first_n), (last_t, last_n) = self.seen[0], self.seen[-1]
        wall = self.ended - self.started
        return {
            "wall_s": round(wall, 2),
            "items_per_s": round(items / wall, 2),
            "time_to_first_record_s": round(first_t - self.started, 2),
            "steady_items_per_s": round((last_n - first_n) / (last_t - first_t), 2) if last_t > first_t else 0.0,
        }


def _score(manifest: Path, out: Path, model: str, engine: LocalEngineConfig | RayEngineConfig) -> dict[str, Any]:
    config = ScoreConfig(
        manifest=manifest,
        out=out,
        scorer="yesno",
        model=model,
        nframes=NFRAMES,
        device="cpu",
        batch_size=BATCH,
        engine=engine,
    )
    with _Watch(out) as watch:
        report = score_manifest(config, progress=False)
    if report.succeeded != VIDEOS:
        raise AssertionError(f"{report.succeeded} of {VIDEOS} scored: {report.failures_by_type}")
    return watch.summary(VIDEOS)


def _load(url: str, videos: list[Path]) -> dict[str, float]:
    """The reward-service benchmark's load: one-video requests from CLIENTS threads."""
    measured = load_service(url, videos, CLIENTS, REQUESTS)
    return {
        key: round(measured[key], 2 if key == "requests_per_s" else 1) for key in ("requests_per_s", "p50_ms", "p99_ms")
    }


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _best(runs: list[dict[str, float]], key: str) -> dict[str, float]:
    """The run with the highest ``key`` (other work on a shared machine only ever slows a run down)."""
    return max(runs, key=lambda run: run[key])


def main() -> None:
    import os

    import ray
    import torch

    from cookbook_reward.serve_ray import serving_replicas

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        videos = [
            write_video(
                SyntheticVideo(root / f"v{i}.mp4", fps=24, num_frames=48 + 2 * i, width=160, height=120, codec="h264")
            )
            for i in range(VIDEOS)
        ]
        manifest = root / "manifest.jsonl"
        manifest.write_text("".join(VideoSample(id=v.stem, path=str(v)).model_dump_json() + "\n" for v in videos))
        model = str(make_tiny_model("reason1", root / "tiny"))

        # Rounds alternate the engines; each engine's best round is reported.
        local_runs = [_score(manifest, root / "local-0" / "scores.jsonl", model, LocalEngineConfig())]
        started = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        ray_init_s = time.perf_counter() - started
        actor_threads = ray.get(ray.remote(num_cpus=1)(lambda: __import__("torch").get_num_threads()).remote())
        ray_runs = [
            _score(manifest, root / "ray-0" / "scores.jsonl", model, RayEngineConfig(actors=2, cpus_per_actor=0.5))
        ]
        local_runs.append(_score(manifest, root / "local-1" / "scores.jsonl", model, LocalEngineConfig()))
        ray_runs.append(
            _score(manifest, root / "ray-1" / "scores.jsonl", model, RayEngineConfig(actors=2, cpus_per_actor=0.5))
        )
        local_scores = {r.sample_id: r.score for r in read_records(root / "local-0" / "scores.jsonl", ScoreRecord)}
        ray_scores = {r.sample_id: r.score for r in read_records(root / "ray-0" / "scores.jsonl", ScoreRecord)}
        if local_scores.keys() != ray_scores.keys() or any(
            abs((local_scores[k] or 0) - (ray_scores[k] or 0)) > 1e-5 for k in local_scores
        ):
            raise AssertionError("the engines' scores differ")

        scorer_config = ScorerConfig(model=model, scorer="yesno", nframes=NFRAMES, device="cpu")
        service = {"media_roots": [root], "max_batch_size": 8, "max_wait_ms": 10.0, "max_queue": 256}
        in_process = create_app(
            build_scorer(scorer_config, root),
            RewardServiceSettings(**service),
            describe=described_scorer(scorer_config, root),  # as `cookbook-reward serve` runs it
        )
        with serving_app(in_process) as url:
            _load(url, videos[:16])  # warm-up
            single = [_load(url, videos), _load(url, videos)]
        serve_rows: dict[int, dict[str, float]] = {}
        port = _free_port()
        for replicas in (1, 2):
            settings = RewardServiceSettings(port=port, **service)
            config = ServeConfig(scorer=scorer_config, service=settings, ray=ReplicaSettings(replicas=replicas))
            started = time.perf_counter()
            with serving_replicas(config, root) as url:
                deploy_s = time.perf_counter() - started
                _load(url, videos[:16])  # warm-up
                best = _best([_load(url, videos), _load(url, videos)], "requests_per_s")
                serve_rows[replicas] = {"deploy_s": round(deploy_s, 1), **best}
        ray.shutdown()

    local, on_ray = _best(local_runs, "items_per_s"), _best(ray_runs, "items_per_s")
    result = {
        "benchmark": "ray",
        "machine": f"CPU: {cpu_model()}, {torch.get_num_threads()} torch threads in this process; no GPU",
        "load_average_1min": {"before": round(load_before[0], 2), "after": round(os.getloadavg()[0], 2)},
        "method": (
            "best of 2 alternating rounds per engine (local, ray, local, ray) and of 2 load rounds per server; "
            "wall from the call to the last record, model loading included, ray.init apart"
        ),
        "model": f"tiny Reason1 (Qwen2.5-VL architecture, random weights), Yes/No scorer, {NFRAMES} frames per video",
        "score_job": {
            "videos": VIDEOS,
            "batch_size": BATCH,
            "local": {"engine": "local (1 process)", **local},
            "ray": {
                "engine": "ray, 2 actors x 0.5 CPU, decoding tasks x 1 CPU",
                "torch_threads_per_actor": actor_threads,
                **on_ray,
            },
            "rounds": {"local": local_runs, "ray": ray_runs},
            "ray_init_s": round(ray_init_s, 2),
            "ray_over_local_items_per_s": round(on_ray["items_per_s"] / local["items_per_s"], 2),
            "ray_over_local_steady": round(on_ray["steady_items_per_s"] / local["steady_items_per_s"], 2),
            "scores_identical": True,
        },
        "reward_service": {
            "clients": CLIENTS,
            "requests": REQUESTS,
            "max_batch_size": service["max_batch_size"],
            "single_process": _best(single, "requests_per_s"),
            "ray_serve_1_replica": serve_rows[1],
            "ray_serve_2_replicas": serve_rows[2],
            "two_over_one_replica": round(serve_rows[2]["requests_per_s"] / serve_rows[1]["requests_per_s"], 2),
        },
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "ray.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "ray.md").write_text(_markdown(result))
    print(json.dumps(result, indent=2))


def _markdown(result: dict[str, Any]) -> str:
    job, service = result["score_job"], result["reward_service"]
    local, on_ray = job["local"], job["ray"]
    load = result["load_average_1min"]
    lines = [
        "# Ray engine and Ray Serve replicas",
        "",
        f"Measured on {result['machine']}; 1-minute load average {load['before']} before and {load['after']} after "
        f"(other work shared the 2 cores, so each figure is the best of 2 rounds). {result['model']}; "
        f"{job['videos']} videos, batches of {job['batch_size']}.",
        "",
        "## `cookbook-reward score`: local engine against the Ray engine (2 actors, decoding in CPU tasks)",
        "",
        "| engine | wall s | items/s | first record after s | steady items/s |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, run in (("local", local), ("ray, 2 actors", on_ray)):
        lines.append(
            f"| {name} | {run['wall_s']} | {run['items_per_s']} | {run['time_to_first_record_s']} | "
            f"{run['steady_items_per_s']} |"
        )
    lines += [
        "",
        f"Ray over local: {job['ray_over_local_items_per_s']}x items/s end to end, {job['ray_over_local_steady']}x "
        f"at the steady rate (after the first record). Ray's fixed cost: `ray.init` of a local cluster "
        f"{job['ray_init_s']} s (not in the wall times), then {on_ray['time_to_first_record_s']} s from the call to "
        f"the first record (actors started, model loaded in each), against {local['time_to_first_record_s']} s "
        f"locally. Torch threads per actor: {on_ray['torch_threads_per_actor']}. Both engines wrote the "
        "same scores. Every round is in ray.json.",
        "",
        f"## Reward service: {service['clients']} clients, {service['requests']} one-video requests",
        "",
        "| server | deploy s | requests/s | p50 ms | p99 ms |",
        "|---|---:|---:|---:|---:|",
    ]
    single = service["single_process"]
    lines.append(f"| single process | | {single['requests_per_s']} | {single['p50_ms']} | {single['p99_ms']} |")
    for name, key in (
        ("Ray Serve, 1 replica", "ray_serve_1_replica"),
        ("Ray Serve, 2 replicas", "ray_serve_2_replicas"),
    ):
        row = service[key]
        lines.append(f"| {name} | {row['deploy_s']} | {row['requests_per_s']} | {row['p50_ms']} | {row['p99_ms']} |")
    lines += ["", f"2 replicas over 1: {service['two_over_one_replica']}x requests/s.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
