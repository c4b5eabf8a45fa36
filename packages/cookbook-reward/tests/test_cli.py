import json
import os
import signal
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import httpx
import numpy as np
import pytest

from cookbook_data.jobs import RESOLVED_CONFIG
from cookbook_data.records import read_records
from cookbook_data.schemas import ItemError, ScoreRecord, VideoSample
from cookbook_data.testing import VideoSet
from cookbook_infer.testing.backends import FixedAnswers
from cookbook_infer.testing.pytest_plugin import TinyCheckpoints
from cookbook_infer.testing.servers import serving
from cookbook_reward.health import ADDRESS_FILE_ENV
from cookbook_reward.testing import straight_drive


def test_version_names_the_package_and_the_stack() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cookbook_reward", "version"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"cookbook-reward {metadata.version('cookbook-reward')}"
    assert any(line.strip().startswith("pydantic 2.") for line in lines[1:])


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "cookbook_reward", *args]
    return subprocess.run(command, capture_output=True, text=True, check=False, env=env)


def write_manifest(path: Path, samples: list[VideoSample]) -> Path:
    path.write_text("".join(s.model_dump_json() + "\n" for s in samples))
    return path


def test_score_writes_records_and_errors_and_resumes(
    tiny_checkpoints: TinyCheckpoints, synthetic_videos: VideoSet, tmp_path: Path
) -> None:
    samples = [VideoSample(id=n, path=str(synthetic_videos.good[n].path)) for n in ("h264_24fps", "mpeg4_8fps")]
    samples.append(VideoSample(id="broken", path=str(synthetic_videos.broken["truncated"])))
    manifest = write_manifest(tmp_path / "manifest.jsonl", samples)
    out = tmp_path / "scores" / "scores.jsonl"
    args = ["score", str(manifest), "--out", str(out), "--scorer", "yesno", "--nframes", "2"]
    args += ["--model", str(tiny_checkpoints("reason2")), "--device", "cpu"]

    first = cli(*args)
    assert first.returncode == 0, first.stderr
    records = list(read_records(out, ScoreRecord))
    assert sorted(r.sample_id for r in records) == ["h264_24fps", "mpeg4_8fps"]
    assert all(r.score_kind == "reward_model_yes_no" and 0 < (r.score or 0) < 1 for r in records)
    [error] = read_records(out.with_name("scores.errors.jsonl"), ItemError)
    assert (error.sample_id, error.stage) == ("broken", "reward")
    resolved = json.loads((out.parent / RESOLVED_CONFIG).read_text())["config"]
    assert resolved["scorer"] == "reward_model_yes_no"
    assert resolved["prompt"].startswith("reason1_reward_yesno@")

    second = cli(*args)
    assert second.returncode == 0, second.stderr
    assert len(list(read_records(out, ScoreRecord))) == 2  # nothing scored twice


def test_score_takes_the_command_line_s_frame_rule_over_the_config_s_and_fails_when_nothing_scored(
    tiny_checkpoints: TinyCheckpoints, synthetic_videos: VideoSet, tmp_path: Path
) -> None:
    broken = [VideoSample(id="broken", path=str(synthetic_videos.broken["truncated"]))]
    manifest = write_manifest(tmp_path / "manifest.jsonl", broken)
    (tmp_path / "score.toml").write_text(f'scorer = "yesno"\nmodel = "{tiny_checkpoints("reason2")}"\nfps = 2\n')
    out = tmp_path / "scores" / "scores.jsonl"

    result = cli("score", str(manifest), "--config", str(tmp_path / "score.toml"), "--nframes", "2", "--out", str(out))

    assert result.returncode == 1, result.stderr  # every sample tried failed: the step fails
    [error] = read_records(out.with_name("scores.errors.jsonl"), ItemError)
    assert error.sample_id == "broken"
    resolved = json.loads((out.parent / RESOLVED_CONFIG).read_text())["config"]
    assert (resolved["score"]["nframes"], resolved["score"]["fps"]) == (2, None)


def test_score_refuses_a_model_free_setting_for_a_model_scorer(tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "m.jsonl", [VideoSample(id="a", path="/a.mp4")])
    result = cli("score", str(manifest), "--out", str(tmp_path / "s.jsonl"), "--scorer", "likert")
    assert result.returncode == 1
    assert "the likert scorer needs a model" in result.stderr


def test_score_with_the_trajectory_scorer_needs_no_model(tmp_path: Path) -> None:
    (tmp_path / "good.json").write_text(json.dumps(straight_drive(10.0)))
    np.save(tmp_path / "brake.npy", np.array(straight_drive(10.0, brake_at=20)))
    samples = [
        VideoSample(id="good", path="/clips/good.mp4", metadata={"trajectory": "good.json"}),
        VideoSample(id="brake", path="/clips/brake.mp4", metadata={"trajectory": "brake.npy"}),
        VideoSample(id="inline", path="/clips/inline.mp4", metadata={"trajectory": straight_drive(5.0)}),
        VideoSample(id="none", path="/clips/none.mp4"),
    ]
    manifest = write_manifest(tmp_path / "m.jsonl", samples)
    out = tmp_path / "s.jsonl"
    result = cli("score", str(manifest), "--out", str(out), "--scorer", "trajectory")
    assert result.returncode == 0, result.stderr
    scores = {r.sample_id: r for r in read_records(out, ScoreRecord)}
    assert scores["good"].score == 1.0
    assert scores["inline"].score == 1.0
    assert scores["brake"].score is not None and scores["brake"].score < 1.0
    assert scores["brake"].rewards["lon_acceleration"] == 0.0
    assert "lon_acceleration" in (scores["brake"].critique or "")
    [error] = read_records(tmp_path / "s.errors.jsonl", ItemError)
    assert error.sample_id == "none" and "metadata.trajectory" in error.message


def test_verify_trajectory_reports_each_check_and_fails_on_a_violation(tmp_path: Path) -> None:
    good, brake = tmp_path / "good.json", tmp_path / "brake.json"
    good.write_text(json.dumps(straight_drive(10.0)))
    brake.write_text(json.dumps(straight_drive(10.0, brake_at=20)))

    ok = cli("verify-trajectory", str(good))
    assert ok.returncode == 0, ok.stderr
    assert "reward 1.000 (passed)" in ok.stdout

    bad = cli("verify-trajectory", str(good), str(brake), "--json")
    assert bad.returncode == 1
    reports = [json.loads(line) for line in bad.stdout.splitlines()]
    assert [r["passed"] for r in reports] == [True, False]
    failing = [c["name"] for c in reports[1]["checks"] if not c["passed"]]
    assert "lon_acceleration" in failing  # an abrupt 6 m/s² brake (its onset also jerks)
    assert "lat_acceleration" not in failing


def test_verify_trajectory_names_a_bad_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"x": [0, 1], "y": [0]}')
    result = cli("verify-trajectory", str(bad))
    assert result.returncode == 1
    assert str(bad) in result.stderr


def test_verify_trajectory_goes_on_past_a_file_it_cannot_judge(tmp_path: Path) -> None:
    uneven, good = tmp_path / "uneven.json", tmp_path / "good.json"
    uneven.write_text(json.dumps({"x": [0, 1, 2, 3, 4], "y": [0] * 5, "t": [0, 0.1, 0.25, 0.3, 0.4]}))
    good.write_text(json.dumps(straight_drive(10.0)))

    result = cli("verify-trajectory", str(uneven), str(good))
    assert result.returncode == 1
    assert f"{uneven}: cannot be judged: savgol derivatives need evenly spaced timestamps" in result.stderr
    assert f"{good}: reward 1.000 (passed)" in result.stdout

    as_json = cli("verify-trajectory", str(uneven), str(good), "--json")
    first, second = (json.loads(line) for line in as_json.stdout.splitlines())
    assert first["file"] == str(uneven) and "evenly spaced" in first["error"]
    assert second["file"] == str(good) and second["passed"] is True


def test_verify_trajectory_checks_each_trajectory_of_a_batch_file(tmp_path: Path) -> None:
    plans, good = tmp_path / "plans.npy", tmp_path / "good.json"
    np.save(plans, np.array([straight_drive(10.0), straight_drive(10.0, brake_at=20)]))
    good.write_text(json.dumps(straight_drive(10.0)))
    short = {"x": [0, 1, 2], "y": [0, 0, 0]}
    keyed = tmp_path / "keyed.json"
    keyed.write_text(json.dumps({"trajectories": [short, {"x": [p[0] for p in straight_drive(5.0)], "y": [0] * 64}]}))

    result = cli("verify-trajectory", str(plans), str(keyed), str(good))

    assert result.returncode == 1
    assert f"{plans}[0]: reward 1.000 (passed)" in result.stdout
    assert f"{plans}[1]: reward 0.750 (failed)" in result.stdout
    assert f"{keyed}[0]: cannot be judged: a trajectory needs at least 4 waypoints" in result.stderr
    assert f"{keyed}[1]: reward 1.000 (passed)" in result.stdout
    assert f"{good}: reward 1.000 (passed)" in result.stdout
    as_json = [
        json.loads(line) for line in cli("verify-trajectory", str(keyed), str(good), "--json").stdout.splitlines()
    ]
    assert [(r["file"], r.get("index"), r.get("passed")) for r in as_json] == [
        (str(keyed), 0, None),
        (str(keyed), 1, True),
        (str(good), None, True),
    ]
    assert "at least 4 waypoints" in as_json[0]["error"]


def test_score_refuses_a_waypoint_file_of_several_trajectories_by_their_count(tmp_path: Path) -> None:
    np.save(tmp_path / "plans.npy", np.array([straight_drive(10.0)] * 3))
    manifest = write_manifest(
        tmp_path / "m.jsonl", [VideoSample(id="a", path="/a.mp4", metadata={"trajectory": "plans.npy"})]
    )

    result = cli("score", str(manifest), "--out", str(tmp_path / "s.jsonl"), "--scorer", "trajectory")

    assert result.returncode == 1
    [error] = read_records(tmp_path / "s.errors.jsonl", ItemError)
    assert f"{tmp_path / 'plans.npy'}: holds 3 trajectories where one is expected" in error.message


def test_verify_trajectory_takes_a_mistyped_derivative_for_a_usage_error(tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps(straight_drive(10.0)))

    result = cli("verify-trajectory", str(good), "--derivative", "savitzky")

    assert result.returncode == 2  # 1 would read as a trajectory that failed its checks
    assert "Invalid value for '--derivative': Input should be 'finite_difference' or 'savgol'" in result.stderr


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("utf16.json", b"\xff\xfe[[0,0]]", "not valid JSON ('utf-8' codec can't decode"),
        ("truncated.npz", b"PK\x03\x04" + bytes(100), "not a readable NumPy file (File is not a zip file)"),
        ("objects.npz", None, "not a readable NumPy file (Object arrays cannot be loaded"),
    ],
)
def test_verify_trajectory_goes_on_past_a_file_it_cannot_read(
    tmp_path: Path, name: str, content: bytes | None, reason: str
) -> None:
    bad, good = tmp_path / name, tmp_path / "good.json"
    if content is None:
        np.savez(bad, x=np.array([0, "a"], dtype=object), y=np.zeros(2))
    else:
        bad.write_bytes(content)
    good.write_text(json.dumps(straight_drive(10.0)))

    result = cli("verify-trajectory", str(bad), str(good))

    assert result.returncode == 1
    assert f"{bad}: cannot be judged: {reason}" in result.stderr
    assert f"{good}: reward 1.000 (passed)" in result.stdout


@pytest.mark.parametrize("command", ["score", "serve", "healthcheck", "verify-trajectory", "filter"])
def test_every_command_explains_itself(command: str) -> None:
    result = cli(command, "--help")
    assert result.returncode == 0
    assert "Usage" in result.stdout


def test_the_health_check_finds_the_port_serve_listens_on(tiny_checkpoints: TinyCheckpoints, tmp_path: Path) -> None:
    address = tmp_path / "reward.url"
    env = {**os.environ, ADDRESS_FILE_ENV: str(address)}
    args = ["serve", "--scorer", "yesno", "--model", str(tiny_checkpoints("reason1")), "--device", "cpu"]
    args += ["--port", "0", "--media-root", str(tmp_path), "--set", "service.prepare_workers=1"]
    server = subprocess.Popen([sys.executable, "-m", "cookbook_reward", *args], env=env, stderr=subprocess.PIPE)
    try:
        assert cli("healthcheck", env=env).returncode == 0  # nothing listens yet: nothing to check
        deadline = time.monotonic() + 120
        # The check's own answer decides: a check that ran just before the file was written says "no service"
        while (check := cli("healthcheck", env=env)).returncode != 0 or "HTTP 200" not in check.stdout:
            assert server.poll() is None, server.stderr.read().decode() if server.stderr else ""
            assert time.monotonic() < deadline, check.stderr
            time.sleep(0.5)
        url = address.read_text().strip()
        assert url.startswith("http://127.0.0.1:") and not url.endswith(":0")  # the port bound, not the one asked
        assert check.stdout.strip() == f"{url}/healthz: HTTP 200"
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=60)
    assert not address.exists()  # removed when the service stops
    assert "no reward service runs here" in cli("healthcheck", env=env).stdout

    address.write_text(url)  # left behind by a service that died: the check fails and says where it asked
    stale = cli("healthcheck", "--timeout", "2", env=env)
    assert stale.returncode == 1
    assert f"{url}/healthz" in stale.stderr
    unset = {name: value for name, value in env.items() if name != ADDRESS_FILE_ENV}
    assert cli("healthcheck", env=unset).returncode == 2


def test_serve_refuses_an_empty_token_file_naming_it(tmp_path: Path) -> None:
    empty = tmp_path / "token.txt"
    empty.write_text("\n")
    env = {name: value for name, value in os.environ.items() if name != "COOKBOOK_REWARD_TOKEN"}
    result = cli("serve", "--scorer", "trajectory", "--port", "0", "--token-file", str(empty), env=env)
    assert result.returncode == 1
    assert f"{empty}: the file is empty" in result.stderr


def test_serve_takes_a_backend_for_its_scorer(tmp_path: Path) -> None:
    args = ["serve", "--scorer", "likert", "--model", "judge", "--backend", "openai", "--port", "0"]
    result = cli(*args, "--set", "scorer.base_url=http://127.0.0.1:9/v1")

    assert result.returncode == 1  # refused by the scorer the backend reached, before any port is bound
    assert "--scorer likert reads the answer token's probabilities, which an OpenAI-compatible server" in result.stderr


def _wait_for_address(server: subprocess.Popen[bytes], address: Path) -> None:
    """Wait until ``serve`` writes its address file (its startup is over), failing with its stderr if it exits."""
    deadline = time.monotonic() + 120
    while not address.exists():
        assert server.poll() is None, server.stderr.read().decode() if server.stderr else ""
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_serve_judges_with_a_model_behind_an_openai_compatible_server(
    synthetic_videos: VideoSet, tmp_path: Path
) -> None:
    address = tmp_path / "reward.url"
    env = {**os.environ, ADDRESS_FILE_ENV: str(address)}
    judge = FixedAnswers(answer="<answer>Approve</answer>")
    video = synthetic_videos.good["h264_24fps"].path
    with serving(judge, media_roots=[synthetic_videos.root]) as url:
        args = ["serve", "--scorer", "critic", "--model", judge.model_id, "--backend", "openai", "--port", "0"]
        args += ["--media-root", str(synthetic_videos.root), "--set", f"scorer.base_url={url}/v1"]
        server = subprocess.Popen([sys.executable, "-m", "cookbook_reward", *args], env=env, stderr=subprocess.PIPE)
        try:
            _wait_for_address(server, address)
            request = {"items": [{"video": str(video)}]}
            answer = httpx.post(f"{address.read_text().strip()}/v1/score", json=request, timeout=60).json()
        finally:
            server.terminate()
            server.communicate(timeout=60)

    [result] = answer["results"]
    assert (result["error"], result["score"]) == (None, 1.0)  # frames were not decoded and sent to the server


def test_sigterm_stops_serve_cleanly_and_removes_the_address_file(tmp_path: Path) -> None:
    address = tmp_path / "reward.url"
    env = {**os.environ, ADDRESS_FILE_ENV: str(address)}
    args = ["serve", "--scorer", "trajectory", "--port", "0", "--media-root", str(tmp_path)]
    server = subprocess.Popen([sys.executable, "-m", "cookbook_reward", *args], env=env, stderr=subprocess.PIPE)
    try:
        _wait_for_address(server, address)
    finally:
        server.terminate()  # SIGTERM, as `docker stop` and Kubernetes send
        _, stderr = server.communicate(timeout=60)
    assert server.returncode == 0, stderr.decode()
    assert not address.exists()  # a health check finds no service, not a dead port
