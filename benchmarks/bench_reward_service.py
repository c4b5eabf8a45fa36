"""Reward-service throughput and latency at 1, 8 and 32 concurrent clients, dynamic batching on against off.

The same service, tiny Reason1 checkpoint, Yes/No scorer (one forward pass per video, the reward-model
method) and videos in both runs; "off" is the service with ``max_batch_size = 1``, the reference measured in
the same run. Each client sends one-video ``POST /v1/score`` requests back to back over HTTP on 127.0.0.1,
from a process apart from the service's (:mod:`_http_load`), after a warm-up at the same load (two requests per
client: the first batches of a new size allocate memory and pick kernels, which is not the steady state).
The script checks that both services return the same scores, then writes the ratios to benchmarks/results/
(``--device cuda`` runs the model on the GPU and names the card in the file name), with each run's mean batch
and the fraction of its wall time the model's thread spent scoring (near 1: the model is the bottleneck;
well below: requests are held up elsewhere, decoding or HTTP). Two more figures say where a request's time
goes on the service's own process: its CPU time per request (all its threads: HTTP, receiving the prepared
frames, the model's thread; the prepare workers and the clients are other processes), and the part of the
model's thread spent building model input (prompts, tokens, patches; on a GPU the host's side of it).
Goal: at 32 clients, >= 3x the unbatched throughput with a p99 latency no worse than 2x the unbatched p99.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import httpx
from _http_load import load_service
from _machine import cpu_model, gpu_name, results_name

from cookbook_data.testing.videos import SyntheticVideo, write_video
from cookbook_infer.backends import transformers as transformers_backend
from cookbook_infer.testing import make_tiny_model
from cookbook_infer.testing.servers import serving_app
from cookbook_reward.config import RewardServiceSettings, ScorerConfig
from cookbook_reward.score import described_scorer
from cookbook_reward.scorers import Scorer, build_scorer
from cookbook_reward.service import create_app

CLIENTS = (1, 8, 32)
REQUESTS = {"cpu": {1: 24, 8: 64, 32: 128}, "cuda": {1: 100, 8: 400, 32: 1024}}
"""Requests sent at each concurrency (after a warm-up), enough for a p99 at each device's speed."""
VIDEOS = 16
MAX_BATCH = 32
MAX_WAIT_MS = 20.0
RESULTS = Path(__file__).parent / "results"


class _Timed:
    """A function whose calls are timed: ``seconds`` is the wall time spent in it, summed over every call."""

    def __init__(self, function: Callable[..., Any]) -> None:
        self.function = function
        self.seconds = 0.0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return self.function(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - start


def _measure(
    config: ScorerConfig, scorer: Scorer, root: Path, videos: list[Path], batch: int, requests: dict[int, int]
) -> tuple[dict[int, Any], dict[str, Any]]:
    """The service as ``cookbook-reward serve`` runs it (videos prepared by worker processes) at each load."""
    model_input = _Timed(transformers_backend.model_inputs)
    settings = RewardServiceSettings(
        media_roots=[root], max_batch_size=batch, max_wait_ms=MAX_WAIT_MS if batch > 1 else 0.0, max_queue=1024
    )
    runs = {}
    app = create_app(scorer, settings, describe=described_scorer(config, root))
    with mock.patch.object(transformers_backend, "model_inputs", model_input), serving_app(app) as url:
        for clients in CLIENTS:
            load_service(url, videos, clients, 2 * clients)  # warm-up at this load: its batch shapes, its memory
            before = httpx.get(f"{url}/healthz").json()
            cpu, building = time.process_time(), model_input.seconds
            run = runs[clients] = load_service(url, videos, clients, requests[clients])
            cpu, building = time.process_time() - cpu, model_input.seconds - building
            after = httpx.get(f"{url}/healthz").json()
            wall = requests[clients] / run["requests_per_s"]
            run["mean_batch"] = (after["items"] - before["items"]) / (after["batches"] - before["batches"])
            run["model_busy"] = (after["model_busy_s"] - before["model_busy_s"]) / wall
            run["server_cpu_ms"] = cpu / requests[clients] * 1000
            run["model_input_ms"] = building / requests[clients] * 1000
        health = httpx.get(f"{url}/healthz").json()
    return runs, health


def _http_stack() -> str:
    """The event loop and HTTP parser uvicorn picks here (uvloop and httptools when installed)."""
    import importlib.util

    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    return f"uvicorn, {loop} event loop, {http} parser"


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="Where the model runs: cpu (default) or cuda.")
    parser.add_argument("--results", type=Path, default=RESULTS, help="Folder the results file is written to.")
    args, _ = parser.parse_known_args()

    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        videos = [
            write_video(
                SyntheticVideo(root / f"v{i}.mp4", fps=24, num_frames=48 + 2 * i, width=160, height=120, codec="h264")
            )
            for i in range(VIDEOS)
        ]
        model = str(make_tiny_model("reason1", root / "tiny"))
        config = ScorerConfig(model=model, scorer="yesno", nframes=8, device=args.device)
        scorer = build_scorer(config, root)
        requests = REQUESTS["cuda" if args.device.startswith("cuda") else "cpu"]
        off, _ = _measure(config, scorer, root, videos, 1, requests)
        on, on_health = _measure(config, scorer, root, videos, MAX_BATCH, requests)

    for clients in CLIENTS:
        reference, batched = off[clients]["scores"], on[clients]["scores"]
        for name, score in reference.items():
            if abs(batched[name] - score) > 1e-4:
                raise AssertionError(f"{name}: batched score {batched[name]} differs from unbatched {score}")

    rows = []
    for clients in CLIENTS:
        a, b = off[clients], on[clients]
        rows.append(
            {
                "clients": clients,
                "unbatched_requests_per_s": round(a["requests_per_s"], 2),
                "batched_requests_per_s": round(b["requests_per_s"], 2),
                "throughput_ratio": round(b["requests_per_s"] / a["requests_per_s"], 2),
                "unbatched_p50_ms": round(a["p50_ms"], 1),
                "batched_p50_ms": round(b["p50_ms"], 1),
                "unbatched_p99_ms": round(a["p99_ms"], 1),
                "batched_p99_ms": round(b["p99_ms"], 1),
                "p99_ratio": round(b["p99_ms"] / a["p99_ms"], 2),
                "batched_mean_batch": round(b["mean_batch"], 1),
                "unbatched_model_busy": round(a["model_busy"], 2),
                "batched_model_busy": round(b["model_busy"], 2),
                "unbatched_server_cpu_ms_per_request": round(a["server_cpu_ms"], 2),
                "batched_server_cpu_ms_per_request": round(b["server_cpu_ms"], 2),
                "unbatched_model_input_ms_per_request": round(a["model_input_ms"], 2),
                "batched_model_input_ms_per_request": round(b["model_input_ms"], 2),
            }
        )
    at_32 = rows[-1]
    result = {
        "benchmark": "reward_service",
        "machine": f"CPU: {cpu_model()}, {torch.get_num_threads()} torch threads"
        + (f"; model on {gpu_name()}" if args.device.startswith("cuda") else ""),
        "model": "tiny Reason1 (Qwen2.5-VL architecture, random weights), Yes/No scorer, 8 frames per video",
        "service": {
            "max_batch_size": MAX_BATCH,
            "max_wait_ms": MAX_WAIT_MS,
            "prepare_workers": on_health["prepare_workers"],
            "reference": "max_batch_size = 1",
        },
        "http_server": _http_stack(),
        "clients": "threads of a separate process, one-video requests back to back",
        "requests": requests,
        "largest_batch_seen": on_health["largest_batch"],
        "scores_identical": True,
        "rows": rows,
        "goal": ">= 3x throughput at 32 clients, p99 <= 2x the unbatched p99",
        "goal_met": at_32["throughput_ratio"] >= 3 and at_32["p99_ratio"] <= 2,
    }
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / results_name("reward_service", args.device)).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
