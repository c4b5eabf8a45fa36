"""The command line: --help stays light, --dry-run plans and validates without GPUs, a launch without them fails
with a message that says what is missing."""

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
