"""``cookbook-infer``: Cosmos Reason inference, and tiny checkpoints for testing."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from cookbook_data.clikit import make_app, run_app

app = make_app("cookbook-infer", "Cosmos Reason 1/2 inference.")


@app.command("make-tiny-model")
def make_tiny_model(
    out: Annotated[Path, typer.Argument(file_okay=False, help="Folder to save the checkpoint into.")],
    arch: Annotated[
        Literal["reason1", "reason2"],
        typer.Option(help="reason1 = Qwen2.5-VL (Cosmos-Reason1), reason2 = Qwen3-VL (Cosmos-Reason2)."),
    ] = "reason2",
    seed: Annotated[int, typer.Option(help="Seed of the random weights.")] = 0,
) -> None:
    """Save a tiny random checkpoint of a Cosmos Reason architecture, loadable like a hub id.

    Outputs are noise; use it to test pipelines end to end without downloading gigabytes.
    """
    from cookbook_infer.testing import make_tiny_model as build

    typer.echo(build(arch, out, seed=seed))


def main() -> None:
    run_app(app, "cookbook-infer")
