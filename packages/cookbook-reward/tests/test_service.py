"""The reward service, run for real on 127.0.0.1 with a tiny checkpoint's Yes/No scorer.

The tests taking the ``service`` fixture run twice: against the single-process server, and against the same
application deployed as two Ray Serve replicas that each load their own scorer (marked ``ray``). Those
deployments share one set of settings (a token, upload and body limits); the tests that need a scorer
wrapped in this process (batching, queue and timeout limits) or another scorer run on the single process only.
"""

from __future__ import annotations

import asyncio
import base64
import json
import multiprocessing
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from cookbook_data.schemas import ScoreKind, ScoreRecord, VideoSample
from cookbook_data.testing import VideoSet
from cookbook_infer.run import Item, PreparedSample
from cookbook_infer.testing.pytest_plugin import TinyCheckpoints
from cookbook_infer.testing.servers import serving_app
from cookbook_reward.config import ReplicaSettings, RewardServiceSettings, ScorerConfig, ServeConfig
from cookbook_reward.health import ADDRESS_FILE_ENV, check_health
from cookbook_reward.rewards import RemoteRewardError, remote_reward
from cookbook_reward.score import described_scorer
from cookbook_reward.scorers import Scorer, build_scorer
from cookbook_reward.service import create_app


class Recording:
    """Wraps a real scorer: records every batch and whether its items came prepared, optionally sleeping first
    in ``score`` or ``prepare`` (to make requests queue up)."""

    def __init__(self, scorer: Scorer, delay_s: float = 0.0, prepare_delay_s: float = 0.0) -> None:
        self.scorer = scorer
        self.kind: ScoreKind = scorer.kind
        self.delay_s = delay_s
        self.prepare_delay_s = prepare_delay_s
        self.batches: list[list[str]] = []
        self.prepared: list[bool] = []
        self.prepares = 0
        self._lock = threading.Lock()

    def score(self, samples: Sequence[Item]) -> list[ScoreRecord]:
        with self._lock:
            self.batches.append([s.id for s in samples])
            self.prepared.extend(isinstance(s, PreparedSample) for s in samples)
        time.sleep(self.delay_s)
        return self.scorer.score(samples)

    def prepare(self, sample: Item) -> Item:
        with self._lock:
            self.prepares += 1
        time.sleep(self.prepare_delay_s)
        return self.scorer.prepare(sample)

    def resolved(self) -> dict[str, Any]:
        return self.scorer.resolved()


@pytest.fixture(scope="module")
def yesno_config(tiny_checkpoints: TinyCheckpoints) -> ScorerConfig:
    return ScorerConfig(model=str(tiny_checkpoints("reason1")), scorer="yesno", nframes=2)


@pytest.fixture(scope="module")
def yesno(yesno_config: ScorerConfig) -> Scorer:
    return build_scorer(yesno_config, Path("/"))


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory, synthetic_videos: VideoSet) -> Path:
    root = tmp_path_factory.mktemp("media")
    for name in ("h264_24fps", "mpeg4_8fps"):
        shutil.copy(synthetic_videos.good[name].path, root / f"{name}.mp4")
    shutil.copy(synthetic_videos.broken["truncated"], root / "truncated.mp4")
    return root


def serve(scorer: Any, media: Path, describe: Callable[[], Scorer] | None = None, **settings: Any) -> Any:
    options = {"media_roots": [media], "max_wait_ms": 5.0, **settings}
    return serving_app(create_app(scorer, RewardServiceSettings(**options), model="tiny", describe=describe))


TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@dataclass(frozen=True)
class Served:
    """A running reward service: where it answers, and how it runs."""

    url: str
    kind: str
    upload_limit: int
    body_limit: int


def shared_settings(media: Path) -> dict[str, Any]:
    """The settings every ``service`` runs with: uploads up to one test video, bodies up to a few."""
    upload = (media / "h264_24fps.mp4").stat().st_size
    return {"token": TOKEN, "max_upload_bytes": upload, "max_request_bytes": 4 * upload + 65536}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module", params=["process", pytest.param("ray-serve", marks=pytest.mark.ray)])
def service(request: pytest.FixtureRequest, yesno: Scorer, yesno_config: ScorerConfig, media: Path) -> Iterator[Served]:
    """The service as ``cookbook-reward serve`` runs it: videos prepared by worker processes, or by Serve replicas."""
    settings = shared_settings(media)
    limits = {"upload_limit": settings["max_upload_bytes"], "body_limit": settings["max_request_bytes"]}
    if request.param == "process":
        with serve(yesno, media, described_scorer(yesno_config, Path("/")), prepare_workers=2, **settings) as url:
            health = httpx.get(f"{url}/healthz").json()
            assert health["prepare_workers"] == 2
            yield Served(url, request.param, **limits)
        return
    request.getfixturevalue("ray_cluster")
    from cookbook_reward.serve_ray import serving_replicas

    service_settings = RewardServiceSettings(media_roots=[media], max_wait_ms=5.0, port=free_port(), **settings)
    replicas = ReplicaSettings(replicas=2, cpus_per_replica=0.5)
    config = ServeConfig(scorer=yesno_config, service=service_settings, ray=replicas)
    with serving_replicas(config, Path("/")) as url:
        import ray.serve

        deployment = ray.serve.status().applications["cookbook-reward"].deployments["RewardService"]
        assert deployment.replica_states == {"RUNNING": 2}
        assert httpx.get(f"{url}/healthz").json()["prepare_workers"] == 1  # half a CPU reserved: one worker
        yield Served(url, request.param, **limits)


def item(path: Path, **extra: Any) -> dict[str, Any]:
    return {"id": path.stem, "video": str(path), **extra}


def test_scores_equal_the_scorers_own(service: Served, yesno: Scorer, media: Path) -> None:
    videos = [media / "h264_24fps.mp4", media / "mpeg4_8fps.mp4"]
    response = httpx.post(
        f"{service.url}/v1/score", json={"items": [item(v) for v in videos]}, headers=AUTH, timeout=60
    )
    assert response.status_code == 200
    body = response.json()
    assert body["scorer"] == "reward_model_yes_no"
    direct = yesno.score([VideoSample(id=v.stem, path=str(v)) for v in videos])
    for result, record in zip(body["results"], direct, strict=True):
        assert result["id"] == record.sample_id
        assert result["score"] == pytest.approx(record.score, rel=1e-4)
        assert result["reward"] == pytest.approx(record.score, rel=1e-4)  # P("No") is already a 0-1 reward
        assert set(result["probabilities"]) == {"Yes", "No"}
        assert result["error"] is None


def test_one_bad_video_fails_its_item_not_the_request(service: Served, media: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.mp4"
    shutil.copy(media / "h264_24fps.mp4", outside)
    escape = media / f"escape-{service.kind}.mp4"
    escape.symlink_to(outside)
    items = [
        item(media / "h264_24fps.mp4"),
        item(media / "truncated.mp4"),
        {"id": "traversal", "video": f"{media}/../outside.mp4"},
        {"id": "symlink", "video": str(escape)},
        {"id": "remote", "video": "https://example.com/a.mp4"},
        {"id": "missing", "video": str(media / "nope.mp4")},
    ]
    response = httpx.post(f"{service.url}/v1/score", json={"items": items}, headers=AUTH, timeout=60)
    assert response.status_code == 200
    results = {r["id"]: r for r in response.json()["results"]}
    assert results["h264_24fps"]["error"] is None and results["h264_24fps"]["reward"] is not None
    assert "VideoDecodeError" in results["truncated"]["error"]
    assert "outside the media folders" in results["traversal"]["error"]
    assert "outside the media folders" in results["symlink"]["error"]
    assert "reads local files only" in results["remote"]["error"]
    assert "no such file" in results["missing"]["error"]
    assert all(results[name]["reward"] is None for name in ("truncated", "traversal", "symlink", "remote", "missing"))


def test_uploaded_bytes_score_like_the_file_and_oversize_uploads_fail(service: Served, media: Path) -> None:
    video = media / "h264_24fps.mp4"
    data = video.read_bytes()
    assert len(data) == service.upload_limit
    encoded = base64.b64encode(data).decode()
    too_big = base64.b64encode(data + b"x").decode()
    wrapped = base64.encodebytes(data).decode()  # 76-character lines, as `base64 clip.mp4` writes them
    items = [item(video), {"id": "up", "video_base64": encoded}, {"id": "big", "video_base64": too_big}]
    items += [
        {"id": "wrapped", "video_base64": wrapped},
        {"id": "url", "video_base64": f"data:video/mp4;base64,{encoded}"},
    ]
    response = httpx.post(f"{service.url}/v1/score", json={"items": items}, headers=AUTH, timeout=60)
    results = response.json()["results"]
    assert results[1]["score"] == pytest.approx(results[0]["score"], rel=1e-5)
    assert "over the" in results[2]["error"] or "over " in results[2]["error"]
    assert results[2]["reward"] is None
    assert [r["score"] for r in results[3:]] == pytest.approx([results[1]["score"]] * 2, rel=1e-5)


def test_an_upload_far_over_the_limit_is_refused_before_any_pass_over_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from cookbook_reward import service as service_module

    uploads = service_module._Uploads(limit=3000)
    try:
        data = os.urandom(3000)
        text = base64.b64encode(data).decode()
        pem = "\r\n".join(text[i : i + 64] for i in range(0, len(text), 64))  # the widest wrapping in use
        assert uploads._save(f"data:video/mp4;base64,{pem}\r\n").read_bytes() == data

        def scanned(encoded: str) -> str:
            raise AssertionError("an upload far over the limit was scanned")

        monkeypatch.setattr(service_module, "_base64_payload", scanned)
        with pytest.raises(ValueError, match="over 3000 bytes"):
            uploads._save("A" * 10_000)
    finally:
        uploads.close()


def test_a_body_over_the_limit_is_refused_with_413(service: Served) -> None:
    body = {"items": [{"video_base64": "A" * service.body_limit}]}
    response = httpx.post(f"{service.url}/v1/score", json=body, headers=AUTH, timeout=60)
    assert response.status_code == 413
    assert httpx.get(f"{service.url}/healthz").status_code == 200


def test_a_chunked_body_over_the_limit_is_refused_with_413(service: Served) -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: the body's size shows only as it arrives
        yield b'{"items": [{"video_base64": "'
        yield b"A" * service.body_limit
        yield b'"}]}'

    response = httpx.post(f"{service.url}/v1/score", content=chunks(), headers=AUTH, timeout=60)
    assert response.status_code == 413
    assert "over" in response.json()["error"]["message"]


def test_a_chunked_body_within_the_limit_is_scored(service: Served, media: Path) -> None:
    body = json.dumps({"items": [item(media / "h264_24fps.mp4")]}).encode()
    response = httpx.post(
        f"{service.url}/v1/score",
        content=iter([body[:10], body[10:]]),
        headers={**AUTH, "content-type": "application/json"},
        timeout=60,
    )
    assert response.status_code == 200
    assert response.json()["results"][0]["reward"] is not None


def test_bad_json_and_bad_fields_get_400_and_the_server_lives_on(service: Served) -> None:
    url, json_body = service.url, {"content-type": "application/json", **AUTH}
    bad = [
        httpx.post(f"{url}/v1/score", content=b"{not json", headers=json_body),
        httpx.post(f"{url}/v1/score", json={"items": []}, headers=AUTH),
        httpx.post(f"{url}/v1/score", json={"items": [{"video": "/a.mp4", "video_base64": "AA=="}]}, headers=AUTH),
        httpx.post(f"{url}/v1/score", json={"items": [{"video": "/a.mp4", "colour": "red"}]}, headers=AUTH),
        httpx.post(f"{url}/v1/score", json=[1, 2], headers=AUTH),
        httpx.post(f"{url}/get_reward", json={"query": ["/a.mp4"], "prompts": ["a", "b"]}, headers=AUTH),
    ]
    assert [r.status_code for r in bad] == [400] * len(bad)
    assert bad[0].json()["error"]["message"].startswith("the body is not valid JSON: Expecting property name")
    assert "items" in bad[1].json()["error"]["message"]
    assert "colour" in bad[3].json()["error"]["message"]
    assert httpx.get(f"{url}/healthz").json()["status"] == "ok"


def test_every_refusal_answers_in_the_services_shape(service: Served) -> None:
    url, json_body = service.url, {"content-type": "application/json", **AUTH}
    deep = b'{"items": [{"video": "/a.mp4", "trajectory": ' + b"[" * 5000 + b"]" * 5000 + b"}]}"
    refused = {
        "not UTF-8": httpx.post(f"{url}/v1/score", content=b'{"items": [{"video": "/a\xff.mp4"}]}', headers=json_body),
        "nested too deep": httpx.post(f"{url}/v1/score", content=deep, headers=json_body),
        "no such route": httpx.get(f"{url}/nowhere"),
        "no such method": httpx.get(f"{url}/v1/score"),
    }
    statuses = {"not UTF-8": 400, "nested too deep": 400, "no such route": 404, "no such method": 405}
    assert {name: response.status_code for name, response in refused.items()} == statuses
    messages = {}
    for name, response in refused.items():
        assert response.json() == {"error": {"message": response.json()["error"]["message"], "status": statuses[name]}}
        messages[name] = response.json()["error"]["message"]
    assert "can't decode byte 0xff" in messages["not UTF-8"]
    assert "recursion" in messages["nested too deep"]
    assert refused["no such method"].headers["allow"] == "POST"


def test_the_token_guards_scoring_but_not_health(service: Served, media: Path) -> None:
    url, body = service.url, {"items": [item(media / "h264_24fps.mp4")]}
    assert httpx.post(f"{url}/v1/score", json=body, timeout=60).status_code == 401
    wrong = {"Authorization": "Bearer s3cret-not"}
    assert httpx.post(f"{url}/v1/score", json=body, headers=wrong, timeout=60).status_code == 401
    assert httpx.post(f"{url}/v1/score", json=body, headers=AUTH, timeout=60).status_code == 200
    assert httpx.post(f"{url}/get_reward", json={"query": ["x"]}).status_code == 401
    assert httpx.get(f"{url}/healthz").status_code == 200
    assert "cookbook_reward_requests_total" in httpx.get(f"{url}/metrics").text
    assert remote_reward(str(media / "h264_24fps.mp4"), base_url=url, token=TOKEN)[0] > 0


DOCS = ("/docs", "/redoc", "/openapi.json")


def test_the_token_guards_the_docs_too(service: Served) -> None:
    refused = {path: httpx.get(f"{service.url}{path}") for path in DOCS}
    given = {path: httpx.get(f"{service.url}{path}", headers=AUTH) for path in DOCS}
    assert {path: response.status_code for path, response in refused.items()} == dict.fromkeys(DOCS, 401)
    assert {response.json()["error"]["status"] for response in refused.values()} == {401}
    assert {path: response.status_code for path, response in given.items()} == dict.fromkeys(DOCS, 200)
    assert {"/v1/score", "/get_reward"} <= set(given["/openapi.json"].json()["paths"])


def test_without_a_token_the_docs_are_open(yesno: Scorer, media: Path) -> None:
    with serve(yesno, media) as url:
        answered = {path: httpx.get(f"{url}{path}") for path in DOCS}
    assert {path: response.status_code for path, response in answered.items()} == dict.fromkeys(DOCS, 200)
    assert "/v1/score" in answered["/openapi.json"].json()["paths"]


def test_metrics_count_requests_by_endpoint_and_status(yesno: Scorer, media: Path) -> None:
    with serve(yesno, media) as url:
        assert httpx.post(f"{url}/v1/score", json={"items": [item(media / "h264_24fps.mp4")]}, timeout=60).is_success
        assert httpx.post(f"{url}/v1/score", content=b"{not json", timeout=60).status_code == 400
        assert httpx.get(f"{url}/nowhere").status_code == 404
        httpx.get(f"{url}/healthz")
        metrics = httpx.get(f"{url}/metrics").text
    for endpoint, status in [("/v1/score", 200), ("/v1/score", 400), ("other", 404), ("/healthz", 200)]:
        assert f'cookbook_reward_requests_total{{endpoint="{endpoint}",status="{status}"}} 1.0' in metrics
    assert 'cookbook_reward_request_seconds_count{endpoint="/v1/score"} 2.0' in metrics


def test_concurrent_clients_are_batched(yesno: Scorer, media: Path) -> None:
    recording = Recording(yesno)
    videos = [media / "h264_24fps.mp4", media / "mpeg4_8fps.mp4"] * 6
    with serve(recording, media, max_wait_ms=300.0, max_batch_size=8) as url:

        def ask(video: Path) -> httpx.Response:
            return httpx.post(f"{url}/v1/score", json={"items": [item(video)]}, timeout=120)

        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=len(videos)) as pool:
            responses = list(pool.map(ask, videos))
        elapsed = time.monotonic() - started
        health = httpx.get(f"{url}/healthz").json()
        metrics = httpx.get(f"{url}/metrics").text
    assert [r.status_code for r in responses] == [200] * len(videos)
    assert all(r.json()["results"][0]["reward"] is not None for r in responses)
    assert sum(len(batch) for batch in recording.batches) == len(videos)
    assert max(len(batch) for batch in recording.batches) > 1
    assert len(recording.batches) < len(videos)
    assert health["largest_batch"] == max(len(batch) for batch in recording.batches)
    assert 0 < health["model_busy_s"] < elapsed
    assert recording.prepared == [True] * len(videos)  # decoded on arrival, not on the model's thread
    assert health["preparing"] == 0
    assert elapsed < 60
    assert 'cookbook_reward_requests_total{endpoint="/v1/score",status="200"} 12.0' in metrics
    assert "cookbook_reward_batch_size_count" in metrics
    assert "cookbook_reward_queue_depth 0.0" in metrics


def test_a_full_queue_answers_429_at_once(yesno: Scorer, media: Path) -> None:
    recording = Recording(yesno, delay_s=0.5)
    with serve(recording, media, max_queue=2, max_batch_size=1, max_wait_ms=0.0) as url:

        def ask(_: int) -> httpx.Response:
            return httpx.post(f"{url}/v1/score", json={"items": [item(media / "h264_24fps.mp4")]}, timeout=120)

        with ThreadPoolExecutor(max_workers=8) as pool:
            responses = list(pool.map(ask, range(8)))
    codes = sorted(r.status_code for r in responses)
    assert 429 in codes
    assert set(codes) == {200, 429}
    refused = next(r for r in responses if r.status_code == 429)
    assert refused.headers["retry-after"] == "1"
    assert "busy" in refused.json()["error"]["message"]


def test_items_being_prepared_count_against_the_queue(yesno: Scorer, media: Path) -> None:
    recording = Recording(yesno, prepare_delay_s=0.5)
    with serve(recording, media, max_queue=2, prepare_workers=1, max_batch_size=1, max_wait_ms=0.0) as url:

        def ask(_: int) -> httpx.Response:
            return httpx.post(f"{url}/v1/score", json={"items": [item(media / "h264_24fps.mp4")]}, timeout=120)

        with ThreadPoolExecutor(max_workers=8) as pool:
            responses = list(pool.map(ask, range(8)))
        metrics = httpx.get(f"{url}/metrics").text
    assert set(r.status_code for r in responses) == {200, 429}
    assert "cookbook_reward_preparing 0.0" in metrics


def test_a_dead_prepare_worker_fails_its_items_and_the_service_goes_on(
    yesno: Scorer, yesno_config: ScorerConfig, media: Path
) -> None:
    before = set(multiprocessing.active_children())
    with serve(yesno, media, described_scorer(yesno_config, Path("/")), prepare_workers=1) as url:

        def ask() -> dict[str, Any]:
            body = {"items": [item(media / "h264_24fps.mp4")]}
            result: dict[str, Any] = httpx.post(f"{url}/v1/score", json=body, timeout=120).json()["results"][0]
            return result

        assert ask()["error"] is None
        workers = set(multiprocessing.active_children()) - before
        assert len(workers) == 1
        for worker in workers:
            assert worker.pid is not None
            os.kill(worker.pid, signal.SIGKILL)
            worker.join(timeout=30)
        results = [ask() for _ in range(3)]
        health = httpx.get(f"{url}/healthz").json()
    errors = [result["error"] for result in results if result["error"] is not None]
    assert len(errors) <= 1
    assert all("the worker process decoding it died" in error for error in errors)
    assert results[-1]["error"] is None and results[-1]["reward"] is not None
    assert health["status"] == "ok"


def test_a_slow_request_times_out_with_504(yesno: Scorer, media: Path) -> None:
    with serve(Recording(yesno, delay_s=1.0), media, request_timeout_s=0.2) as url:
        response = httpx.post(f"{url}/v1/score", json={"items": [item(media / "h264_24fps.mp4")]}, timeout=60)
    assert response.status_code == 504


def test_no_upload_is_left_behind_by_requests_that_time_out(yesno: Scorer, media: Path) -> None:
    encoded = base64.b64encode((media / "h264_24fps.mp4").read_bytes()).decode()
    before = set(Path(tempfile.gettempdir()).glob("cookbook-reward-uploads-*"))
    with serve(Recording(yesno, delay_s=0.5), media, request_timeout_s=0.01) as url:
        [folder] = set(Path(tempfile.gettempdir()).glob("cookbook-reward-uploads-*")) - before
        body = {"items": [{"id": f"up{i}", "video_base64": encoded} for i in range(4)]}
        codes = [httpx.post(f"{url}/v1/score", json=body, timeout=60).status_code for _ in range(3)]
        time.sleep(1.0)  # the uploads being written or scored when their requests ended
        left = list(folder.iterdir())
    assert codes == [504] * 3
    assert left == []


def test_timed_out_items_give_their_places_back_at_once(yesno: Scorer, media: Path) -> None:
    recording = Recording(yesno, delay_s=3.0)
    settings: dict[str, Any] = {"max_queue": 2, "max_batch_size": 1, "max_wait_ms": 0.0, "request_timeout_s": 0.5}
    with serve(recording, media, **settings) as url:
        body = {"items": [item(media / "h264_24fps.mp4"), item(media / "mpeg4_8fps.mp4")]}
        assert httpx.post(f"{url}/v1/score", json=body, timeout=60).status_code == 504
        # one item is in the 3 s model call; the other, timed out while queued, no longer counts
        health = httpx.get(f"{url}/healthz").json()
        metrics = httpx.get(f"{url}/metrics").text
        again = httpx.post(f"{url}/v1/score", json={"items": [item(media / "h264_24fps.mp4")]}, timeout=60)
    assert health["queued"] == 0 and health["preparing"] == 0
    assert "cookbook_reward_queue_depth 0.0" in metrics
    assert again.status_code == 504  # admitted (not 429), then timed out behind the model call


def test_requests_arriving_together_cannot_overfill_the_queue(yesno: Scorer, media: Path) -> None:
    recording = Recording(yesno, prepare_delay_s=0.3)
    settings = RewardServiceSettings(media_roots=[media], max_queue=4, prepare_workers=4, max_batch_size=4)
    app = create_app(recording, settings)
    body = {"items": [item(media / "h264_24fps.mp4", id=f"v{i}") for i in range(4)]}

    async def together() -> list[httpx.Response]:  # in-process: the three requests reach the app in one go
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://reward", timeout=120) as client:
                return list(await asyncio.gather(*(client.post("/v1/score", json=body) for _ in range(3))))

    responses = asyncio.run(together())
    assert sorted(r.status_code for r in responses) == [200, 429, 429]
    refusals = [r.json()["error"]["message"] for r in responses if r.status_code == 429]
    assert all(message.startswith("busy: 4 items waiting, limit 4") for message in refusals)
    assert recording.prepares == 4  # refused before any of their videos was decoded


def test_a_request_larger_than_the_queue_is_refused_with_413(yesno: Scorer, media: Path) -> None:
    with serve(yesno, media, max_queue=2) as url:
        body = {"items": [item(media / "h264_24fps.mp4", id=f"v{i}") for i in range(3)]}
        response = httpx.post(f"{url}/v1/score", json=body, timeout=60)
    assert response.status_code == 413  # asking again (as for 429) could never succeed
    assert "at most 2" in response.json()["error"]["message"]


def test_a_blank_token_is_refused() -> None:
    with pytest.raises(ValueError, match="token is empty"):
        RewardServiceSettings(token="  ")


def test_a_token_ending_in_a_newline_is_the_token_without_it(
    yesno: Scorer, media: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # as in COOKBOOK_REWARD_TOKEN on both sides, set from a secret file (a Kubernetes secret) that ends in one
    monkeypatch.setenv("COOKBOOK_REWARD_TOKEN", f"{TOKEN}\n")
    with serve(yesno, media, token=f"{TOKEN}\n") as url:
        response = httpx.post(f"{url}/v1/score", json={"items": [item(media / "h264_24fps.mp4")]}, headers=AUTH)
        reward, _ = remote_reward(str(media / "h264_24fps.mp4"), base_url=url)
    assert response.status_code == 200
    assert reward == pytest.approx(response.json()["results"][0]["reward"], rel=1e-5)


@pytest.mark.parametrize("endpoint", ["/v1/score", "/get_reward"])
def test_a_client_that_disconnects_withdraws_its_items(yesno: Scorer, media: Path, endpoint: str) -> None:
    recording = Recording(yesno, delay_s=2.0)
    videos = [str(media / "h264_24fps.mp4"), str(media / "mpeg4_8fps.mp4")]
    body = {"items": [{"video": video} for video in videos]} if endpoint == "/v1/score" else {"query": videos}
    with serve(recording, media, max_queue=2, max_batch_size=1, max_wait_ms=0.0) as url:
        with pytest.raises(httpx.ReadTimeout):  # the client gives up, and closes its connection
            httpx.post(f"{url}{endpoint}", json=body, timeout=httpx.Timeout(60, read=1.0))
        deadline = time.monotonic() + 30
        while (health := httpx.get(f"{url}/healthz").json())["queued"] + health["preparing"] > 0:
            assert time.monotonic() < deadline, health
            time.sleep(0.05)
        fresh = httpx.post(f"{url}/v1/score", json={"items": [item(media / "h264_24fps.mp4", id="fresh")]}, timeout=60)
        metrics = httpx.get(f"{url}/metrics").text
    assert fresh.status_code == 200
    # at most the model call under way when the client left ran for it; its other item never reached the model
    assert recording.batches[-1] == ["fresh"] and len(recording.batches) <= 2
    assert 'cookbook_reward_items_total{outcome="withdrawn"} 2.0' in metrics
    assert f'cookbook_reward_requests_total{{endpoint="{endpoint}",status="499"}} 1.0' in metrics


def test_openrlhf_get_reward(service: Served, media: Path) -> None:
    body = {"query": [str(media / "h264_24fps.mp4"), str(media / "truncated.mp4")], "prompts": ["a", "b"]}
    response = httpx.post(f"{service.url}/get_reward", json=body, headers=AUTH, timeout=60)
    assert response.status_code == 200
    answer = response.json()
    assert len(answer["rewards"]) == 2
    assert 0 < answer["rewards"][0] < 1
    assert answer["rewards"][1] == 0.0  # the failure reward
    assert answer["scores"] == answer["rewards"]
    assert answer["extra_logs"] == {"failed": [0.0, 1.0]}  # one number per query, as OpenRLHF logs them
    assert answer["errors"][0] is None and "VideoDecodeError" in answer["errors"][1]
    reward, metrics = remote_reward(str(media / "h264_24fps.mp4"), base_url=service.url, token=TOKEN)
    assert reward == pytest.approx(answer["rewards"][0], rel=1e-5)
    assert metrics


def test_remote_reward_raises_for_a_video_the_service_cannot_find(service: Served, media: Path) -> None:
    # A wrong media root or storage the service does not see: training on failure rewards would hide it.
    for missing in (media / "nope.mp4", "/etc/passwd"):
        with pytest.raises(RemoteRewardError) as caught:
            remote_reward(str(missing), base_url=service.url, token=TOKEN)
        assert f"reward service {service.url}/get_reward could not read the completion's video: " in str(caught.value)
    assert "no such file" in str(caught.value) or "outside the media folders" in str(caught.value)


def test_remote_reward_gives_a_broken_video_the_failure_reward(
    service: Served, media: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A broken output of the policy deserves the failure reward, and must not stop the training.
    reward, metrics = remote_reward(str(media / "truncated.mp4"), base_url=service.url, token=TOKEN)

    assert (reward, metrics) == (0.0, {"remote_reward": 0.0, "remote_reward_failed": 1.0})
    assert "VideoDecodeError" in caplog.text


def test_the_trajectory_scorer_is_served_too(media: Path) -> None:
    scorer = build_scorer(ScorerConfig(scorer="trajectory"), Path("/"))
    x = [1.0 * i for i in range(64)]  # 10 m/s at 10 Hz
    with serve(scorer, media) as url:
        items = [
            item(media / "h264_24fps.mp4", trajectory={"x": x, "y": [0.0] * 64}),
            {**item(media / "mpeg4_8fps.mp4"), "trajectory": [[0, 0], [1, 0]]},
        ]
        results = httpx.post(f"{url}/v1/score", json={"items": items}, timeout=60).json()["results"]
    assert results[0]["reward"] == 1.0
    assert results[0]["rewards"]["lon_acceleration"] == 1.0
    assert "at least 4" in results[1]["error"] or "points" in results[1]["error"]


def test_waypoint_files_are_held_to_the_media_roots(media: Path, tmp_path: Path) -> None:
    plan = json.dumps({"x": [1.0 * i for i in range(64)], "y": [0.0] * 64})
    (media / "plan.json").write_text(plan)
    (tmp_path / "outside.json").write_text(plan)
    (media / "escape.json").symlink_to(tmp_path / "outside.json")
    scorer = build_scorer(ScorerConfig(scorer="trajectory"), Path("/"))
    video = media / "h264_24fps.mp4"
    references = [str(media / "plan.json"), str(tmp_path / "outside.json"), str(media / "escape.json"), "plan.json"]
    with serve(scorer, media) as url:
        items = [item(video, id=f"t{i}", trajectory=reference) for i, reference in enumerate(references)]
        results = httpx.post(f"{url}/v1/score", json={"items": items}, timeout=60).json()["results"]
    assert results[0]["reward"] == 1.0
    assert "outside the media folders" in results[1]["error"]
    assert "outside the media folders" in results[2]["error"]
    assert "must be absolute" in results[3]["error"]


SLOW_START = """
import functools
import sys
import time
from pathlib import Path

from cookbook_reward.config import RewardServiceSettings, ScorerConfig
from cookbook_reward.scorers import build_scorer
from cookbook_reward.service import run_service


def described(gate):
    while not Path(gate).exists():  # the prepare worker, and so the service, starts once the test opens the gate
        time.sleep(0.05)
    return build_scorer(ScorerConfig(scorer="trajectory"), Path("/"))


if __name__ == "__main__":
    gate, media = sys.argv[1:]
    settings = RewardServiceSettings(port=0, media_roots=[media], prepare_workers=1)
    scorer = build_scorer(ScorerConfig(scorer="trajectory"), Path("/"))
    run_service(scorer, settings, describe=functools.partial(described, gate))
"""
"""A service whose startup lasts until the file its first argument names exists."""


def test_the_address_file_is_written_once_the_service_has_started(media: Path, tmp_path: Path) -> None:
    script, gate, log, address = (tmp_path / name for name in ("slow_start.py", "gate", "serve.log", "reward.url"))
    script.write_text(SLOW_START)
    with log.open("w") as stderr:
        env = {**os.environ, ADDRESS_FILE_ENV: str(address)}
        server = subprocess.Popen([sys.executable, str(script), str(gate), str(media)], env=env, stderr=stderr)
    try:
        deadline = time.monotonic() + 120
        while "Waiting for application startup" not in log.read_text():
            assert server.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        assert not address.exists()  # starting: a health check finds no service, rather than one that cannot answer
        gate.touch()
        while not address.exists():
            assert server.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        url = address.read_text().strip()
        assert check_health(address, 30.0) == (True, f"{url}/healthz: HTTP 200")
    finally:
        gate.touch()
        server.terminate()
        server.wait(timeout=60)
    assert not address.exists()  # removed as the service shut down
