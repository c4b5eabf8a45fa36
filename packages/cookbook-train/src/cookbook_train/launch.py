"""Planning and launching a training run: the run folder, the checks, the command, then the run and the export.

:func:`plan_run` does everything short of training, and is what ``--dry-run`` prints: it writes
``config.resolved.json`` (and, for cosmos-rl, the rendered ``cosmos-rl.toml``, validated by cosmos-rl's own
config classes) into the run folder, checks the dataset, and checks what the machine needs — for cosmos-rl the
GPUs the layout asks for, ``redis-server`` on PATH (cosmos-rl's controller starts one, even for SFT) and, for GRPO,
the rollout engine. :func:`launch` refuses a plan with a failed check, naming what to install or change, then runs
``cosmos-rl --config <run>/cosmos-rl.toml --log-dir <run>/logs cookbook_train.entry`` (or the local trainer) and
exports the final checkpoint to ``<run>/final`` in Hugging Face format.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from cookbook_data.jobs import write_resolved_config
from cookbook_train.config import GRPOConfig, SFTConfig
from cookbook_train.data import check_dataset
from cookbook_train.export import FINAL
from cookbook_train.local._model import KEEP_OR_START_AFRESH, STEPS_CHANGED, epoch_steps, total_steps
from cookbook_train.render import COSMOS_TOML, PLANNED_STEPS, render, to_toml, validate_rendered

ENTRY_MODULE = "cookbook_train.entry"
"""The script cosmos-rl runs (as ``python -m``) in the controller and in every replica."""
VLLM_BACKENDS = ("vllm", "vllm_async")


class LaunchError(RuntimeError):
    """The run cannot start on this machine; the message says what is missing and how to get it."""


@dataclass(frozen=True)
class Check:
    """One thing the run needs, and whether this machine has it."""

    name: str
    ok: bool
    detail: str


@dataclass
class Plan:
    """What a run will do; printed by ``--dry-run``."""

    config: SFTConfig | GRPOConfig
    dataset: str
    files: dict[str, Path] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    command: list[str] | None = None

    @property
    def run_dir(self) -> Path:
        return self.config.output_dir

    def problems(self) -> list[Check]:
        return [check for check in self.checks if not check.ok]

    def lines(self) -> list[str]:
        """The plan for a person."""
        config = self.config
        out = [
            f"{config.kind} with {config.backend}: {config.model} ({config.resolved_arch()})"
            + (f", LoRA rank {config.lora.rank}" if config.lora else ", full fine-tuning"),
            f"dataset: {self.dataset}",
            f"run folder: {self.run_dir}",
        ]
        out += [f"  {name}: {path}" for name, path in self.files.items()]
        out += [f"check {check.name}: {'ok' if check.ok else 'MISSING'} ({check.detail})" for check in self.checks]
        if self.command is not None:
            out.append("command: " + " ".join(self.command))
        out.append(f"export: {self.run_dir / FINAL} (Hugging Face format)")
        return out


def visible_gpus() -> tuple[int, str]:
    """How many NVIDIA GPUs ``nvidia-smi`` lists (within ``CUDA_VISIBLE_DEVICES``), and how that was found."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return 0, "nvidia-smi not found"
    command = [smi, "--query-gpu=index", "--format=csv,noheader"]
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        if not visible.strip():
            return 0, "CUDA_VISIBLE_DEVICES is empty"
        command.append(f"--id={visible}")
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=True, timeout=30)
    except (subprocess.SubprocessError, OSError) as error:
        return 0, f"nvidia-smi failed: {error}"
    return len([line for line in result.stdout.splitlines() if line.strip()]), "nvidia-smi"


def _cosmos_checks(config: SFTConfig | GRPOConfig) -> list[Check]:
    policy = config.cosmos.policy.gpus()
    needed, layout = policy, f"policy {policy}"
    if isinstance(config, GRPOConfig):
        rollout = config.cosmos.rollout.gpus()
        needed += rollout
        layout += f" + rollout {rollout}"
    found, how = visible_gpus()
    gpu_detail = f"needs {needed} ({layout}), found {found} ({how})"
    if found < needed:
        gpu_detail += (
            "; cosmos-rl trains on NVIDIA GPUs only: run on a GPU host, shrink [cosmos.policy]/[cosmos.rollout], "
            "or use --backend local"
        )
    checks = [Check("GPUs", found >= needed, gpu_detail)]
    redis = shutil.which("redis-server")
    checks.append(
        Check(
            "redis-server",
            redis is not None,
            redis
            or "not on PATH; cosmos-rl's controller starts redis-server even for SFT: install it "
            "(apt-get install redis-server, or conda install -c conda-forge redis-server)",
        )
    )
    if isinstance(config, GRPOConfig) and config.cosmos.rollout_backend in VLLM_BACKENDS:
        vllm = importlib.util.find_spec("vllm") is not None
        checks.append(
            Check(
                "vllm",
                vllm,
                "installed"
                if vllm
                else f"not installed; the {config.cosmos.rollout_backend!r} rollout engine needs it: install the "
                "cookbook-infer[vllm] extra (pip install 'cookbook-infer[vllm]')",
            )
        )
    return checks


def _cosmos_command(toml_path: Path, log_dir: Path) -> list[str]:
    binary = shutil.which("cosmos-rl") or str(Path(sys.executable).with_name("cosmos-rl"))
    return [binary, "--config", str(toml_path), "--log-dir", str(log_dir), ENTRY_MODULE]


COSMOS_CHECKPOINTS = "cosmos"
"""Where cosmos-rl keeps a run's checkpoints, in the run folder."""
CHECKPOINT_FOLDERS = ("checkpoints", COSMOS_CHECKPOINTS)
"""Where the local trainers and cosmos-rl keep a run's checkpoints, in the run folder."""


def _earlier_checkpoints(config: SFTConfig | GRPOConfig) -> list[Path]:
    """The run folder's checkpoint folders that hold an earlier run's checkpoints."""
    folders = [config.output_dir / name for name in CHECKPOINT_FOLDERS]
    return [folder for folder in folders if folder.is_dir() and any(folder.iterdir())]


def _refuse_an_earlier_run(config: SFTConfig | GRPOConfig) -> None:
    """A fresh run (``resume = false``) in a folder holding an earlier run's checkpoints would mix the two: the
    rotation of old checkpoints would count the earlier run's, and the export would pick its last step."""
    if config.resume:
        return
    held = _earlier_checkpoints(config)
    if held:
        raise LaunchError(
            f"{config.output_dir} holds checkpoints of an earlier run ({', '.join(str(f) for f in held)}); "
            "set resume = true to continue it, or give a new output_dir to start afresh"
        )


def _refuse_another_plan(config: SFTConfig | GRPOConfig, steps: int) -> None:
    """Refuse to resume a cosmos-rl run over ``steps`` when the plan that launched its checkpoints counted others
    (recorded in the ``cosmos-rl.toml`` it wrote), whatever the schedule.

    cosmos-rl does not follow a changed step count on resume: SFT goes on to the step count its checkpoint recorded
    (a longer run silently stops there, a lower ``max_steps`` partway down the old decay); GRPO keeps the samples
    its checkpoint had left (more ``epochs`` add none) and rebuilds the schedule over a new ``max_steps``, so the
    learning rate jumps onto the new schedule at the resumed step.
    """
    toml_path = config.output_dir / COSMOS_TOML
    checkpoints = config.output_dir / COSMOS_CHECKPOINTS
    # what cosmos-rl resumes from: a step it saved (it makes the folders before the first step, and a run that
    # stopped before one starts afresh)
    if not config.resume or not any(checkpoints.glob("*/checkpoints/step_*")) or not toml_path.is_file():
        return
    try:
        planned = tomllib.loads(toml_path.read_text(encoding="utf-8")).get("custom", {}).get(PLANNED_STEPS)
    except tomllib.TOMLDecodeError as error:
        raise LaunchError(f"{toml_path}: not TOML ({error}); it records the plan of the run being resumed") from None
    # A config rendered before the plan recorded its steps cannot be checked.
    if planned is not None and planned != steps:
        raise LaunchError(
            f"{checkpoints}: planned for {planned} steps, and this run plans {steps} ({STEPS_CHANGED}); cosmos-rl "
            f"resumes to its checkpoint's step count and schedule, not a new one: {KEEP_OR_START_AFRESH}"
        )


def plan_run(config: SFTConfig | GRPOConfig) -> Plan:
    """Write the run folder's config files, validate, and check the machine; starts nothing."""
    config = config.with_absolute_paths()
    _refuse_an_earlier_run(config)
    summary = check_dataset(config)
    steps = total_steps(config, epoch_steps(config, summary.rows[config.train_split]))
    if config.backend == "cosmos-rl":
        _refuse_another_plan(config, steps)
    plan = Plan(config=config, dataset=summary.describe())
    run = config.output_dir
    plan.files["resolved config"] = write_resolved_config(run, config)
    if config.backend == "cosmos-rl":
        rendered = render(config)
        rendered["custom"][PLANNED_STEPS] = steps
        validate_rendered(rendered)
        toml_path = run / COSMOS_TOML
        toml_path.write_text(to_toml(rendered), encoding="utf-8")
        plan.files["cosmos-rl config (validated)"] = toml_path
        plan.checks = _cosmos_checks(config)
        plan.command = _cosmos_command(toml_path, run / "logs")
    return plan


def launch(plan: Plan) -> Path:
    """Run a plan whose checks passed; returns the exported checkpoint folder."""
    problems = plan.problems()
    if problems:
        raise LaunchError("; ".join(f"{check.name}: {check.detail}" for check in problems))
    config = plan.config
    if config.backend == "local":
        if isinstance(config, GRPOConfig):
            from cookbook_train.local.grpo import train_grpo_local

            return train_grpo_local(config).final
        from cookbook_train.local.sft import train_sft_local

        return train_sft_local(config).final
    assert plan.command is not None
    result = subprocess.run(plan.command, check=False)
    if result.returncode != 0:
        raise LaunchError(f"cosmos-rl exited with status {result.returncode}; logs in {plan.run_dir / 'logs'}")
    from cookbook_train.export import export_checkpoint, latest_cosmos_export

    source = latest_cosmos_export(plan.run_dir)
    if source is None:
        raise LaunchError(f"cosmos-rl finished but exported no safetensors under {plan.run_dir / 'cosmos'}")
    return export_checkpoint(source, plan.run_dir / FINAL, base=config.model)
