"""What every ``cookbook-<pkg>`` command line shares: the app factory, one error boundary, ``version``.

Kept free of heavy imports: a CLI module imports this at load time, and ``--help`` must stay fast.
"""

from __future__ import annotations

import os
import sys
from importlib import metadata

import typer
from rich.console import Console
from rich.text import Text

DEBUG_ENV = "COOKBOOK_DEBUG"
"""Set to 1 to get full tracebacks instead of one-line errors."""

STACK = ("torch", "torchvision", "transformers", "vllm", "cosmos-rl", "decord", "pydantic")
"""Distributions whose versions matter in a bug report."""

err_console = Console(stderr=True)


def make_app(name: str, help: str) -> typer.Typer:
    """A Typer app with the toolkit's conventions and a ``version`` command."""
    app = typer.Typer(
        name=name,
        help=help,
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
        context_settings={"help_option_names": ["-h", "--help"]},
    )

    @app.callback()
    def _group() -> None:
        # A callback makes Typer keep the command group even while a package has a single command,
        # so `cookbook-<pkg> version` works the same in every package.
        pass

    @app.command("version")
    def version() -> None:
        """Print this package's version and the versions of the stack it runs on."""
        typer.echo(f"{name} {metadata.version(name)}")
        for dist in STACK:
            try:
                typer.echo(f"  {dist} {metadata.version(dist)}")
            except metadata.PackageNotFoundError:
                typer.echo(f"  {dist} (not installed)")

    return app


def run_app(app: typer.Typer, prog_name: str) -> None:
    """Run ``app`` behind the error boundary: a failure prints one line naming its cause and exits 1.

    With ``COOKBOOK_DEBUG=1`` the exception propagates with its full traceback.
    """
    try:
        app(prog_name=prog_name)
    except Exception as error:
        if os.environ.get(DEBUG_ENV) == "1":
            raise
        message = Text.assemble(("error: ", "bold red"), f"{type(error).__name__}: {error}")
        err_console.print(message, highlight=False, soft_wrap=True)
        err_console.print(f"(set {DEBUG_ENV}=1 for the full traceback)", style="dim")
        sys.exit(1)
