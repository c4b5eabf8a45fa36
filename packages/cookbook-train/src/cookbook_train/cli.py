"""``cookbook-train``: SFT and GRPO post-training of Cosmos Reason models through cosmos-rl or on one machine."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from cookbook_data.clikit import make_app, run_app

app = make_app(
    "cookbook-train",
    "SFT and GRPO post-training of Cosmos Reason models through cosmos-rl (multi-GPU) or on one machine.",
)

ConfigArgument = Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="Recipe TOML (see configs/train/).")]
SetOption = Annotated[list[str] | None, typer.Option("--set", help="Override a setting: key=value (repeatable).")]
DryRunOption = Annotated[
    bool,
    typer.Option("--dry-run", help="Write and validate the configs, print the plan and the checks; train nothing."),
]
BackendOption = Annotated[
    str | None, typer.Option(help="cosmos-rl (multi-GPU, the default) or local (CPU or one GPU).")
]
ModelOption = Annotated[str | None, typer.Option(help="Hub id or checkpoint folder (overrides the recipe).")]
DatasetOption = Annotated[Path | None, typer.Option(help="Dataset folder from cookbook-data build-sft/build-rl.")]
OutputOption = Annotated[Path | None, typer.Option("--output-dir", help="Run folder (overrides the recipe).")]


def _train(kind: str, config_file: Path, sets: list[str] | None, options: dict[str, Any], dry_run: bool) -> None:
    from cookbook_data.clikit import resolve_config
    from cookbook_train.config import GRPOConfig, SFTConfig
    from cookbook_train.launch import launch, plan_run

    config: SFTConfig | GRPOConfig
    if kind == "sft":
        config = resolve_config(SFTConfig, config_file, sets, options)
    else:
        config = resolve_config(GRPOConfig, config_file, sets, options)
    plan = plan_run(config)
    for line in plan.lines():
        typer.echo(line)
    if dry_run:
        typer.echo("dry run: nothing launched" + ("" if not plan.problems() else "; fix the MISSING checks first"))
        return
    final = launch(plan)
    typer.echo(f"exported {final}")


@app.command("sft")
def sft_command(
    config_file: ConfigArgument,
    sets: SetOption = None,
    dry_run: DryRunOption = False,
    backend: BackendOption = None,
    model: ModelOption = None,
    dataset: DatasetOption = None,
    output_dir: OutputOption = None,
) -> None:
    """Supervised fine-tuning on a build-sft dataset; the final model is exported to <run>/final.

    Writes config.resolved.json (and, for cosmos-rl, the validated cosmos-rl.toml) into the run folder, checks
    the machine, then runs cosmos-rl or the local trainer; reruns resume from the last checkpoint. Settings:
    defaults < recipe TOML < --set key=value < the options here.
    """
    options = {"backend": backend, "model": model, "dataset": dataset, "output_dir": output_dir}
    _train("sft", config_file, sets, options, dry_run)


@app.command("grpo")
def grpo_command(
    config_file: ConfigArgument,
    sets: SetOption = None,
    dry_run: DryRunOption = False,
    backend: BackendOption = None,
    model: ModelOption = None,
    dataset: DatasetOption = None,
    output_dir: OutputOption = None,
) -> None:
    """GRPO on a build-rl dataset with the recipe's reward functions; the final model is exported to <run>/final.

    Same run folder, checks and resumption as sft. The cosmos-rl backend needs GPUs for the policy and the
    rollout engine (vLLM by default); the local backend samples with transformers.
    """
    options = {"backend": backend, "model": model, "dataset": dataset, "output_dir": output_dir}
    _train("grpo", config_file, sets, options, dry_run)


@app.command("export")
def export_command(
    source: Annotated[
        Path, typer.Argument(exists=True, file_okay=False, help="Checkpoint folder or LoRA adapter folder.")
    ],
    out: Annotated[Path, typer.Option(help="Folder for the Hugging Face checkpoint.")],
    base: Annotated[str | None, typer.Option(help="Base model a LoRA adapter is merged into.")] = None,
) -> None:
    """Save a checkpoint (e.g. cosmos-rl's safetensors/step_N) as a plain Hugging Face model + processor folder.

    LoRA adapters are merged into the base weights; the result loads with cookbook-infer like a hub id.
    """
    from cookbook_train.export import export_checkpoint

    typer.echo(f"exported {export_checkpoint(source, out, base=base)}")


def main() -> None:
    run_app(app, "cookbook-train")
