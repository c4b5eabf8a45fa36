"""``cookbook-data``: inspect and check record files, make test videos."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from cookbook_data.clikit import make_app, run_app
from cookbook_data.schemas import RECORD_TYPES

app = make_app(
    "cookbook-data",
    "Records shared by every stage: schemas, checks, test videos.",
)

RecordKind = StrEnum("RecordKind", {name: name for name in RECORD_TYPES})  # type: ignore[misc]


@app.command("schema")
def schema(
    kind: Annotated[RecordKind, typer.Argument(help="Record type to describe.")],
) -> None:
    """Print the JSON Schema of a record type (field names, types and their meaning)."""
    typer.echo(json.dumps(RECORD_TYPES[kind.value].model_json_schema(), indent=2))


@app.command("check-records")
def check_records(
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="JSONL file of records.")],
    kind: Annotated[RecordKind, typer.Option("--kind", "-k", help="Record type every line must be.")],
) -> None:
    """Validate every line of a record file; the first bad line is reported as FILE:LINE: field: problem."""
    from cookbook_data.records import read_records

    count = sum(1 for _ in read_records(path, RECORD_TYPES[kind.value]))
    typer.echo(f"{path}: {count} valid {kind.value} records")


@app.command("make-test-videos")
def make_test_videos(
    out: Annotated[Path, typer.Argument(file_okay=False, help="Folder to write the videos into.")],
) -> None:
    """Write small synthetic videos (moving square, several fps/sizes/codecs) and broken files for testing."""
    from cookbook_data.testing import make_video_set

    videos = make_video_set(out)
    for name, video in videos.good.items():
        size = f"{video.width}x{video.height}"
        typer.echo(f"{video.path}  {name}: {video.num_frames} frames at {video.fps} fps, {size}")
    for kind, path in videos.broken.items():
        typer.echo(f"{path}  broken: {kind}")


def main() -> None:
    run_app(app, "cookbook-data")
