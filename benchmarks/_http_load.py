"""Load generator for the HTTP benchmarks: one-video ``POST /v1/score`` requests from concurrent clients.

The clients run in a process of their own (this file run as a script), as they would on other machines, so
that their HTTP work does not compete with the service for its interpreter. :func:`load_service` starts that
process and reads its figures.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def load_service(url: str, videos: list[Path], clients: int, requests: int) -> dict[str, Any]:
    """``requests`` one-video requests from ``clients`` threads of another process: requests per second,
    p50/p99 latency in ms, and each video's score."""
    spec = {"url": url, "videos": [str(video) for video in videos], "clients": clients, "requests": requests}
    done = subprocess.run(
        [sys.executable, __file__], input=json.dumps(spec), capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"the load generator failed:\n{done.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _generate(url: str, videos: list[str], clients: int, requests: int) -> dict[str, Any]:
    latencies: list[float] = []
    scores: dict[str, float] = {}
    lock = threading.Lock()
    counter = iter(range(requests))
    failures: list[str] = []

    def client() -> None:
        with httpx.Client(timeout=300) as http:
            while not failures:
                with lock:
                    index = next(counter, None)
                if index is None:
                    return
                video = videos[index % len(videos)]
                started = time.perf_counter()
                response = http.post(f"{url}/v1/score", json={"items": [{"id": Path(video).stem, "video": video}]})
                elapsed = time.perf_counter() - started
                if response.status_code != 200 or response.json()["results"][0]["error"] is not None:
                    failures.append(f"{video}: {response.status_code} {response.text[:500]}")
                    return
                with lock:
                    latencies.append(elapsed)
                    scores[Path(video).stem] = response.json()["results"][0]["score"]

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    if failures:
        raise RuntimeError(failures[0])
    return {
        "requests_per_s": requests / wall,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * _percentile(latencies, 0.99),
        "scores": scores,
    }


if __name__ == "__main__":
    print(json.dumps(_generate(**json.loads(sys.stdin.read()))))
