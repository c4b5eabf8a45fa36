"""The command line: --help stays light, --dry-run plans and validates without GPUs, a launch without them fails
with a message that says what is missing."""

import json
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest

from cookbook_data.jobs import RESOLVED_CONFIG
from cookbook_train.cli import main

RECIPES = Path(__file__).parents[3] / "configs" / "train"


def run_cli(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    monkeypatch.setattr(sys, "argv", ["cookbook-train", *args])
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # no GPU, even on a GPU host
    with pytest.raises(SystemExit) as exit_info:
        main()
    return int(exit_info.value.code or 0)


def test_help_is_fast_and_names_the_commands() -> None:
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "cookbook_train", "--help"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert all(command in result.stdout for command in ("sft", "grpo", "export", "version"))
    assert time.perf_counter() - start < 15


def test_dry_run_prints_the_plan_and_validates_without_gpus(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], datasets: Any, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    args = ["grpo", str(RECIPES / "reason1_videophy2_grpo.toml"), "--dry-run"]
    code = run_cli(monkeypatch, *args, "--dataset", str(datasets("rl", "reason1")), "--output-dir", str(run))
    out = capsys.readouterr().out
    assert code == 0, out
    toml_path = run / "cosmos-rl.toml"
    command = next(line for line in out.splitlines() if line.startswith("command: "))
    assert command.split()[1].endswith("cosmos-rl")
    assert command.split()[2:] == ["--config", str(toml_path), "--log-dir", str(run / "logs"), "cookbook_train.entry"]
    assert "check GPUs: MISSING (needs 8 (policy 4 + rollout 4), found 0" in out
    assert "check redis-server:" in out and "check vllm:" in out
    assert "dry run: nothing launched" in out
    rendered = tomllib.loads(toml_path.read_text())
    assert (
        rendered["policy"]["parallelism"]["dp_shard_size"] == 4
        and rendered["rollout"]["parallelism"]["n_init_replicas"] == 4
    )
    assert rendered["custom"]["cookbook"]["dataset"] == str(datasets("rl", "reason1"))
    assert (run / RESOLVED_CONFIG).is_file()


def test_launch_without_gpus_exits_1_naming_what_is_missing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], datasets: Any, tmp_path: Path
) -> None:
    args = ["sft", str(RECIPES / "reason1_videophy2_sft.toml"), "--dataset", str(datasets("sft", "reason1"))]
    code = run_cli(monkeypatch, *args, "--output-dir", str(tmp_path / "run"))
    err = capsys.readouterr().err
    assert code == 1
    assert "LaunchError: GPUs: needs 8 (policy 8), found 0" in err
    assert "--backend local" in err
    assert not (tmp_path / "run" / "logs").exists()  # nothing was started


def test_a_fresh_run_refuses_a_folder_holding_an_earlier_run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], datasets: Any, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    (run / "cosmos" / "20250101000000" / "safetensors" / "step_500").mkdir(parents=True)
    args = ["sft", str(RECIPES / "reason1_videophy2_sft.toml"), "--dataset", str(datasets("sft", "reason1"))]
    fresh = run_cli(monkeypatch, *args, "--output-dir", str(run), "--dry-run", "--set", "resume=false")
    err = capsys.readouterr().err
    assert fresh == 1
    assert f"{run} holds checkpoints of an earlier run" in err and "set resume = true" in err
    assert run_cli(monkeypatch, *args, "--output-dir", str(run), "--dry-run") == 0  # resuming it is fine


def test_a_resumed_cosmos_run_that_plans_other_steps_is_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], datasets: Any, tmp_path: Path
) -> None:
    # cosmos-rl resumes SFT only up to the step count its checkpoint recorded, under that count's schedule: a plan
    # of other steps is refused before anything starts, whatever its schedule (a constant one would silently stop
    # at the old count).
    run = tmp_path / "run"
    recipe = RECIPES / "reason1_videophy2_sft.toml"  # two epochs, cosine
    args = ["sft", str(recipe), "--dataset", str(datasets("sft", "reason1")), "--output-dir", str(run), "--dry-run"]
    assert run_cli(monkeypatch, *args) == 0
    toml_path = run / "cosmos-rl.toml"
    rendered = toml_path.read_text()
    planned = tomllib.loads(rendered)["custom"]["planned_steps"]
    (run / "cosmos" / "20250101000000" / "checkpoints").mkdir(parents=True)  # a run stopped before its first step
    assert run_cli(monkeypatch, *args, "--set", "epochs=3") == 0  # nothing to resume: it starts afresh
    toml_path.write_text(rendered)
    (run / "cosmos" / "20250101000000" / "checkpoints" / "step_1" / "policy").mkdir(parents=True)
    capsys.readouterr()
    assert run_cli(monkeypatch, *args, "--set", "epochs=3") == 1
    err = capsys.readouterr().err
    assert f"{run / 'cosmos'}: planned for {planned} steps, and this run plans {planned // 2 * 3}" in err
    assert "cosmos-rl resumes to its checkpoint's step count and schedule" in err
    assert toml_path.read_text() == rendered  # the refused plan wrote nothing
    assert run_cli(monkeypatch, *args, "--set", "epochs=3", "--set", "lr_schedule=constant") == 1
    assert run_cli(monkeypatch, *args) == 0  # the same plan resumes
    toml_path.write_text("[custom\n")  # hand-edited into something else
    capsys.readouterr()
    assert run_cli(monkeypatch, *args) == 1
    assert f"{toml_path}: not TOML" in capsys.readouterr().err


def _rebuilt_as(dataset: Path, folder: Path, max_video_tokens: int | None = None, **vision: object) -> Path:
    """A copy of ``dataset`` whose build recorded other vision settings and longest video (None: not probed)."""
    shutil.copytree(dataset, folder)
    info = json.loads((folder / "build_info.json").read_text())
    info["vision"].update(vision)
    info["max_video_tokens"] = max_video_tokens
    (folder / "build_info.json").write_text(json.dumps(info))
    return folder


@pytest.mark.parametrize(
    ("tokens", "vision", "message"),
    [
        (None, {"nframes": None, "max_strided_frames": 160}, "cosmos-rl's data packers (qwen-vl-utils) do not read"),
        (None, {"total_pixels": 10240 * 28 * 28}, "a video can take 10240 tokens (total_pixels 8028160 / 28²)"),
        (10000, {}, "the dataset's longest video takes 10000 tokens (measured by the build)"),
    ],
)
def test_a_dataset_cosmos_rl_would_train_on_differently_is_refused(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    datasets: Any,
    tmp_path: Path,
    tokens: int | None,
    vision: dict[str, object],
    message: str,
) -> None:
    dataset = _rebuilt_as(datasets("sft", "reason1"), tmp_path / "dataset", tokens, **vision)
    args = ["sft", str(RECIPES / "reason1_videophy2_sft.toml"), "--dataset", str(dataset), "--dry-run"]
    code = run_cli(monkeypatch, *args, "--output-dir", str(tmp_path / "run"))
    assert code == 1
    assert message in capsys.readouterr().err


def test_the_shipped_recipes_leave_room_beside_a_default_build_s_videos(datasets: Any, tmp_path: Path) -> None:
    from cookbook_data.build import REASON1_TOTAL_PIXELS
    from cookbook_train.config import load_run_config
    from cookbook_train.data import check_dataset

    for recipe in sorted(RECIPES.glob("*.toml")):
        config = load_run_config(tomllib.loads(recipe.read_text()))
        arch = config.resolved_arch()
        kind = "sft" if config.kind == "sft" else "rl"
        patch = 28 if arch == "reason1" else 32
        dataset = _rebuilt_as(  # as an unprobed build: held to the pixel budget, what a long video reaches
            datasets(kind, arch), tmp_path / recipe.stem, total_pixels=REASON1_TOTAL_PIXELS, patch_factor=patch
        )
        # raises when max_length is too short (the test build has no val split to validate on)
        check_dataset(config.model_copy(update={"dataset": dataset, "validate_every": None}))
