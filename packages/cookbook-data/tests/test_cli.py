import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from multiprocessing.process import BaseProcess
from pathlib import Path

import pytest

from cookbook_data.schemas import VideoSample
from cookbook_data.testing import VideoSet
from cookbook_data.testing.videos import SyntheticVideo, write_video

HoldOutput = Callable[[Path], AbstractContextManager[BaseProcess]]
"""The ``hold_output`` fixture (conftest.py)."""


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cookbook_data", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        check=False,
    )


def test_help_lists_the_commands() -> None:
    result = cli("--help")
    assert result.returncode == 0
    for command in ("schema", "check-records", "make-test-videos", "version"):
        assert command in result.stdout


def test_schema_prints_the_json_schema_of_a_record() -> None:
    result = cli("schema", "video-sample")
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    assert schema == VideoSample.model_json_schema()
    assert schema["additionalProperties"] is False


def test_check_records_counts_valid_lines(tmp_path: Path) -> None:
    path = tmp_path / "manifest.jsonl"
    path.write_text("".join(VideoSample(id=f"v{i}", path=f"/v{i}.mp4").model_dump_json() + "\n" for i in range(3)))
    result = cli("check-records", str(path), "--kind", "video-sample")
    assert result.returncode == 0, result.stderr
    assert "3 valid video-sample records" in result.stdout


def test_a_bad_record_gives_a_one_line_error_naming_file_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "manifest.jsonl"
    path.write_text('{"id": "v0", "path": "/v0.mp4"}\n{"id": "v1", "path": "/v1.mp4", "lables": {}}\n')
    result = cli("check-records", str(path), "--kind", "video-sample")
    assert result.returncode == 1
    first = result.stderr.splitlines()[0]
    assert first == f"error: RecordFileError: {path}:2: lables: Extra inputs are not permitted"
    assert "Traceback" not in result.stderr

    debug = cli("check-records", str(path), "--kind", "video-sample", env={"COOKBOOK_DEBUG": "1"})
    assert debug.returncode == 1
    assert "Traceback" in debug.stderr


def test_make_test_videos_writes_good_and_broken_files(tmp_path: Path) -> None:
    result = cli("make-test-videos", str(tmp_path / "videos"))
    assert result.returncode == 0, result.stderr
    written = sorted(p.name for p in (tmp_path / "videos").iterdir())
    assert "h264_24fps.mp4" in written
    assert "truncated.mp4" in written
    assert len(result.stdout.splitlines()) == len(written)


def test_probe_prints_facts_and_fails_on_a_broken_file(synthetic_videos: VideoSet) -> None:
    good = synthetic_videos.good["h264_24fps"].path
    result = cli("probe", "--json", str(good))
    assert result.returncode == 0, result.stderr
    facts = json.loads(result.stdout)
    assert (facts["frames"], facts["fps"], facts["width"], facts["height"]) == (48, 24.0, 160, 120)

    broken = synthetic_videos.broken["empty"]
    result = cli("probe", str(good), str(broken))
    assert result.returncode == 1
    assert "empty file" in result.stdout
    assert "160x120" in result.stdout


def test_sample_writes_a_contact_sheet_of_the_chosen_frames(tmp_path: Path, synthetic_videos: VideoSet) -> None:
    from PIL import Image

    out = tmp_path / "sheet.png"
    result = cli("sample", str(synthetic_videos.good["h264_24fps"].path), "--nframes", "8", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "indices: [0, 7, 13, 20, 27, 34, 40, 47]" in result.stdout
    assert "model input size: 392x280" in result.stdout
    with Image.open(out) as sheet:
        assert sheet.size == (4 * 256, 2 * 192)


def test_sample_shows_the_frames_of_a_default_build(tmp_path: Path) -> None:
    from cookbook_data.build import BuildConfig
    from cookbook_data.video import frame_indices, probe, resized_frame_size

    video = write_video(SyntheticVideo(tmp_path / "hd.mp4", fps=8, num_frames=80, width=1280, height=720, codec="h264"))
    info = probe(video)
    for prompt, options in (("reason1_videophy2_critic", []), ("reason2_videophy2_critic", ["--patch-factor", "32"])):
        build = BuildConfig(manifest=video, out=tmp_path / "unused", prompt=prompt).vision_settings()
        indices = frame_indices(build, info.num_frames, info.fps)
        height, width = resized_frame_size(build, info.height, info.width, len(indices))
        result = cli("sample", str(video), "--out", str(tmp_path / "sheet.png"), *options)
        assert result.returncode == 0, result.stderr
        assert f"indices: {indices}" in result.stdout
        assert f"model input size: {width}x{height}" in result.stdout
    # 4 fps within Reason1's pixel budget, as build-sft writes them (not qwen-vl-utils' 2 fps without a budget).
    assert len(frame_indices(BuildConfig(manifest=video, out=tmp_path).vision_settings(), 80, 8.0)) == 40

    strided = cli("sample", str(video), "--out", str(tmp_path / "s.png"), "--set", "max_strided_frames=8")
    assert strided.returncode == 0, strided.stderr
    assert "indices: [0, 10, 20, 30, 40, 50, 60, 70]" in strided.stdout


def test_a_set_value_read_as_json_is_taken_as_text_where_the_field_wants_text(tmp_path: Path) -> None:
    from cookbook_data.build import BuildConfig
    from cookbook_data.clikit import resolve_config

    options = {"manifest": tmp_path / "m.jsonl", "out": tmp_path / "o"}
    config = resolve_config(BuildConfig, None, ["split_salt=2024", "seed=7", "prompt=123"], options)
    assert (config.split_salt, config.seed, config.prompt) == ("2024", 7, "123")
    with pytest.raises(ValueError, match=r"^seed: Input should be a valid integer"):
        resolve_config(BuildConfig, None, ["seed=abc"], options)
    with pytest.raises(ValueError, match=r"^val_fraction: Input should be less than 1"):
        resolve_config(BuildConfig, None, ["val_fraction=2"], options)


def test_a_set_key_reaching_into_a_value_is_refused_naming_it(tmp_path: Path) -> None:
    from cookbook_data.build import BuildConfig
    from cookbook_data.clikit import resolve_config

    config_file = tmp_path / "build.toml"
    config_file.write_text('task = "critic"\n')
    options = {"manifest": tmp_path / "m.jsonl", "out": tmp_path / "o"}
    with pytest.raises(ValueError, match=r"^task.kind: task is a value \('critic'\), not a table of settings$"):
        resolve_config(BuildConfig, config_file, ["task.kind=caption"], options)
    # an option replacing the table a --set made would drop the --set without a word
    with pytest.raises(ValueError, match=r"^--set out.name: out is given by an option .*, not a table of settings$"):
        resolve_config(BuildConfig, None, ["out.name=x"], options)
    assert resolve_config(BuildConfig, None, ["seed=3"], options).seed == 3


def test_validate_prints_counts_per_reason(tmp_path: Path, synthetic_videos: VideoSet) -> None:
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(
        VideoSample(id="ok", path=str(synthetic_videos.good["mpeg4_10fps"].path)).model_dump_json()
        + "\n"
        + VideoSample(id="bad", path=str(synthetic_videos.broken["truncated"])).model_dump_json()
        + "\n"
    )
    result = cli("validate", str(manifest))
    assert result.returncode == 0, result.stderr
    assert "failed: undecodable" in result.stdout
    assert "validate: 1 done, 1 failed, 0 already done (of 2)" in result.stdout
    assert (tmp_path / "m.valid.jsonl").read_text().count("\n") == 1
    strict = cli(
        "validate", str(manifest), "--strict", "--out", str(tmp_path / "v2.jsonl"), "--quarantine", str(tmp_path / "q2")
    )
    assert strict.returncode == 1


def test_a_run_on_an_output_another_run_is_writing_fails_in_one_line(
    tmp_path: Path, synthetic_videos: VideoSet, hold_output: HoldOutput
) -> None:
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(VideoSample(id="ok", path=str(synthetic_videos.good["mpeg4_10fps"].path)).model_dump_json())
    out = tmp_path / "m.valid.jsonl"
    with hold_output(out) as holder:
        result = cli("validate", str(manifest))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"error: OutputBusyError: {out}: another run (pid {holder.pid} on {socket.gethostname()}) holds "
        "m.valid.jsonl.lock and is writing this output; wait for it to end or write to another output",
        "(set COOKBOOK_DEBUG=1 for the full traceback)",
    ]
    assert not (tmp_path / "m.quarantine.jsonl").exists()


def test_ingest_folder_then_build_sft_and_rl_from_the_command_line(tmp_path: Path, synthetic_videos: VideoSet) -> None:
    from datasets import load_from_disk

    folder = synthetic_videos.root
    labels = tmp_path / "labels.jsonl"
    names = list(synthetic_videos.good)
    labels.write_text("".join(json.dumps({"video": name, "pc": 1 + i % 5}) + "\n" for i, name in enumerate(names)))
    manifest = tmp_path / "manifest.jsonl"
    result = cli("ingest", "folder", str(folder), "--out", str(manifest), "--labels", str(labels))
    assert result.returncode == 0, result.stderr
    ingested = [VideoSample.model_validate_json(line) for line in manifest.read_text().splitlines()]
    assert {s.id for s in ingested} >= set(names)

    valid = tmp_path / "valid.jsonl"
    result = cli("validate", str(manifest), "--out", str(valid), "--quarantine", str(tmp_path / "q.jsonl"))
    assert result.returncode == 0, result.stderr

    config = tmp_path / "build.toml"
    config.write_text('val_fraction = 0.0\nbalance = "none"\n')
    sft = tmp_path / "sft"
    result = cli(
        "build-sft", str(valid), "--out", str(sft), "--config", str(config), "--set", "fps=2", "--patch-factor", "32",
        "--prompt", "reason2_videophy2_critic",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    train = load_from_disk(str(sft))["train"]
    assert sorted(train["id"]) == sorted(names)
    first = json.loads(train[0]["conversations"])
    assert first[1]["content"][0]["fps"] == 2.0
    assert first[2]["content"] in {"1", "2", "3", "4", "5"}

    rl = tmp_path / "rl"
    result = cli("build-rl", str(valid), "--out", str(rl), "--config", str(config))
    assert result.returncode == 0, result.stderr
    row = load_from_disk(str(rl))["train"][0]
    assert [m["role"] for m in json.loads(row["conversations"])] == ["system", "user"]
    assert row["reference"] in {"1", "2", "3", "4", "5"}


def test_a_bad_setting_is_named_in_one_line(tmp_path: Path) -> None:
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("")
    result = cli("build-sft", str(manifest), "--out", str(tmp_path / "o"), "--set", "balanse=up")
    assert result.returncode == 1
    assert result.stderr.splitlines()[0] == "error: ValueError: balanse: Extra inputs are not permitted"


def test_a_build_with_a_template_file_and_no_patch_factor_is_refused_in_one_line(tmp_path: Path) -> None:
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("")
    prompt = tmp_path / "mine.yaml"
    prompt.write_text("user_prompt: Rate the physics from 1 to 5.\n")
    result = cli("build-rl", str(manifest), "--out", str(tmp_path / "o"), "--prompt", str(prompt))
    assert result.returncode == 1
    assert result.stderr.splitlines()[0] == (
        f"error: ValueError: prompt {prompt} is a template file, which names no model: give the patch factor of the "
        "model the data is for (--patch-factor 28 for Reason 1 / Qwen2.5-VL, 32 for Reason 2 / Qwen3-VL)"
    )


def test_a_validation_error_escaping_a_command_is_printed_in_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import typer

    from cookbook_data.clikit import run_app
    from cookbook_data.video import VisionSettings

    app = typer.Typer()

    @app.command()
    def settle() -> None:
        VisionSettings(fps=2, nframes=4)  # built inside a command, past the options' own checks

    monkeypatch.setattr(sys, "argv", ["demo"])
    with pytest.raises(SystemExit) as exited:
        run_app(app, "demo")
    assert exited.value.code == 1
    [line, hint] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: ValidationError: ") and "fps and nframes" in line
    assert "errors.pydantic.dev" not in line and "DEBUG" in hint
