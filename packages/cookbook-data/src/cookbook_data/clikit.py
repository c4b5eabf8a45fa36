"""What every ``cookbook-<pkg>`` command line shares: the app factory, one error boundary, ``version``.

Kept free of heavy imports: a CLI module imports this at load time, and ``--help`` must stay fast.
"""

from __future__ import annotations

import copy
import json
import os
import sys
import tomllib
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.text import Text

from cookbook_data.engines import EngineName
from cookbook_data.schemas import describe_validation_error

if TYPE_CHECKING:
    from cookbook_data.jobs import JobReport

C = TypeVar("C", bound=BaseModel)

DEBUG_ENV = "COOKBOOK_DEBUG"
"""Set to 1 to get full tracebacks instead of one-line errors."""

EngineOption = Annotated[EngineName | None, typer.Option(help="local (default) or ray: run on a Ray cluster.")]
"""``--engine`` of the batch commands (turn it into config keys with :func:`cookbook_data.engines.engine_options`)."""
AddressOption = Annotated[str | None, typer.Option(help="Ray cluster: auto, ray://HOST:10001 or HOST:PORT.")]
"""``--address``: the Ray cluster to join."""

STACK = ("torch", "torchvision", "transformers", "vllm", "cosmos-rl", "decord", "pydantic")
"""Distributions whose versions matter in a bug report."""

err_console = Console(stderr=True)
out_console = Console()


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


def _assign(data: dict[str, Any], key: str, value: Any) -> None:
    """Set the dotted ``key`` in ``data``, making its tables; a key reaching into a value that is not a table is
    refused (``scorer.reasoning`` where ``scorer`` is the text ``likert``) rather than crashing or replacing it."""
    *parents, leaf = key.split(".")
    table = data
    for depth, parent in enumerate(parents, start=1):
        table = table.setdefault(parent, {})
        if not isinstance(table, dict):
            where = ".".join(parents[:depth])
            raise ValueError(f"{key}: {where} is a value ({table!r}), not a table of settings")
    table[leaf] = value


def _refuse_hidden_sets(assignments: list[tuple[str, str]], options: dict[str, Any]) -> None:
    """Refuse a ``--set`` into a table that an explicit option then replaces with a value: the option would drop
    it without a word (``--set scorer.reasoning=true --scorer likert``)."""
    for key, value in options.items():
        hidden = [name for name, _ in assignments if value is not None and name.startswith(f"{key}.")]
        if hidden:
            raise ValueError(f"--set {hidden[0]}: {key} is given by an option ({value!r}), not a table of settings")


def _read_value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def _under(key: str, locations: list[tuple[str, ...]]) -> bool:
    """Whether one of the error ``locations`` is the field the dotted ``key`` names, or inside it."""
    path = tuple(key.split("."))
    return any(location[: len(path)] == path for location in locations)


def resolve_config(model: type[C], config_file: Path | None, sets: list[str] | None, options: dict[str, Any]) -> C:
    """A config from defaults < TOML file < ``--set key=value`` < explicit options (those not None).

    ``--set`` values are read as JSON when they parse (numbers, booleans, lists), else as text; a value read as
    JSON that its field refuses is taken as its text after all, so ``--set split_salt=2024`` gives a text field
    the text ``2024``. Dotted keys, in ``--set`` and in ``options``, reach into tables (``vision.fps=4``).
    Errors name the field.
    """
    base: dict[str, Any] = {}
    if config_file is not None:
        try:
            base = tomllib.loads(config_file.read_text())
        except (OSError, tomllib.TOMLDecodeError) as error:
            raise ValueError(f"{config_file}: {error}") from None
    assignments: list[tuple[str, str]] = []
    for assignment in sets or []:
        key, sep, raw = assignment.partition("=")
        if not sep or not key:
            raise ValueError(f"--set {assignment!r}: expected key=value")
        assignments.append((key, raw))

    _refuse_hidden_sets(assignments, options)

    def layered(as_text: set[str]) -> dict[str, Any]:
        data = copy.deepcopy(base)
        for key, raw in assignments:
            _assign(data, key, raw if key in as_text else _read_value(raw))
        for key, value in options.items():
            if value is not None:
                _assign(data, key, value)
        return data

    try:
        return model.model_validate(layered(set()))
    except ValidationError as error:
        refused = [tuple(str(part) for part in item["loc"]) for item in error.errors()]
        as_text = {key for key, raw in assignments if not isinstance(_read_value(raw), str) and _under(key, refused)}
        if as_text:
            try:
                return model.model_validate(layered(as_text))
            except ValidationError:
                pass  # refused as text too: the error of the value as the user's JSON says more
        source = f"{config_file}: " if config_file is not None else ""
        raise ValueError(f"{source}{describe_validation_error(error)}") from None


def print_report(report: JobReport) -> None:
    """A job's counts per outcome and failure reason as a table, then its one-line summary."""
    from rich.table import Table

    table = Table("outcome", "items")
    table.add_row("done", str(report.succeeded))
    table.add_row("already done (skipped)", str(report.skipped))
    for reason, count in sorted(report.failures_by_type.items()):
        table.add_row(f"failed: {reason}", str(count))
    out_console.print(table)
    typer.echo(report.summary())


def fail_if_nothing_succeeded(report: JobReport) -> None:
    """Exit 1 when items were tried, every one failed and none was done by an earlier run: an output with nothing
    in it (a wrong model, server, key or media root) must fail the pipeline step that ran it, though each failure
    is recorded. A rerun that retries only its known failures keeps the records it has, and exits 0."""
    if report.failed and not report.succeeded and not report.skipped:
        raise typer.Exit(1)


def run_app(app: typer.Typer, prog_name: str) -> None:
    """Run ``app`` behind the error boundary: a failure prints one line naming its cause and exits 1.

    With ``COOKBOOK_DEBUG=1`` the exception propagates with its full traceback.
    """
    try:
        app(prog_name=prog_name)
    except Exception as error:
        if os.environ.get(DEBUG_ENV) == "1":
            raise
        cause = describe_validation_error(error) if isinstance(error, ValidationError) else str(error)
        message = Text.assemble(("error: ", "bold red"), f"{type(error).__name__}: {cause}")
        err_console.print(message, highlight=False, soft_wrap=True)
        err_console.print(f"(set {DEBUG_ENV}=1 for the full traceback)", style="dim")
        sys.exit(1)
