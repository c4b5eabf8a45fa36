"""``cookbook-data``: probe and sample videos, ingest, validate and build datasets, check record files."""

from __future__ import annotations

import json
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

import typer

from cookbook_data.clikit import AddressOption, make_app, out_console, print_report, resolve_config, run_app
from cookbook_data.engines import EngineName, engine_options
from cookbook_data.schemas import RECORD_TYPES

app = make_app(
    "cookbook-data",
    "Videos and records for every stage: probe, sample, ingest, validate, build datasets.",
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
    """Write small synthetic videos (moving square, several fps/sizes/codecs), broken and odd files for testing."""
    from cookbook_data.testing import make_video_set

    videos = make_video_set(out)
    for name, video in videos.good.items():
        size = f"{video.width}x{video.height}"
        typer.echo(f"{video.path}  {name}: {video.num_frames} frames at {video.fps} fps, {size}")
    for kind, path in videos.broken.items():
        typer.echo(f"{path}  broken: {kind}")
    for kind, path in videos.odd.items():
        typer.echo(f"{path}  odd: {kind}")


@app.command("probe")
def probe_command(
    videos: Annotated[list[Path], typer.Argument(help="Video files.")],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per video instead of a table.")] = False,
) -> None:
    """Frames, fps, duration, size, codec, rotation and frame-rate regularity of each video.

    A file that cannot be read gets its reason on its row; the exit code is 1 if any file failed.
    """
    from rich.table import Table

    from cookbook_data.video import VideoDecodeError, probe

    table = Table("video", "frames", "fps", "duration", "size", "codec", "rotation", "vfr", "problem")
    failed = False
    for path in videos:
        try:
            info = probe(path)
        except VideoDecodeError as error:
            failed = True
            if as_json:
                typer.echo(json.dumps({"path": str(path), "error": str(error)}))
            else:
                table.add_row(str(path), *[""] * 7, str(error).removeprefix(f"{path}: "))
            continue
        facts = {
            "path": str(path),
            "frames": info.num_frames,
            "fps": info.fps,
            "duration_s": round(info.duration, 3),
            "width": info.width,
            "height": info.height,
            "codec": info.codec,
            "rotation": info.rotation,
            "variable_frame_rate": info.variable_frame_rate,
        }
        if as_json:
            typer.echo(json.dumps(facts))
        else:
            table.add_row(
                str(path),
                str(info.num_frames),
                f"{info.fps:g}",
                f"{info.duration:.2f} s",
                f"{info.width}x{info.height}",
                info.codec or "?",
                str(info.rotation),
                "yes" if info.variable_frame_rate else "no",
                "",
            )
    if not as_json:
        out_console.print(table)
    if failed:
        raise typer.Exit(1)


ConfigFile = Annotated[
    Path | None, typer.Option("--config", exists=True, dir_okay=False, help="TOML file of settings.")
]
Sets = Annotated[list[str] | None, typer.Option("--set", help="Override a setting: key=value (repeatable).")]
Fps = Annotated[float | None, typer.Option(help="Frames per second to sample (default 4 without another frame rule).")]
Patch = Annotated[
    int | None,
    typer.Option(help="28 (Reason1) or 32 (Reason2); builds default to the shipped prompt's, need it with a file."),
]


@app.command("sample")
def sample_command(
    video: Annotated[Path, typer.Argument(help="Video file.")],
    out: Annotated[Path, typer.Option(help="PNG contact sheet to write.")] = Path("frames.png"),
    fps: Fps = None,
    nframes: Annotated[int | None, typer.Option(help="Exact number of frames to sample.")] = None,
    max_pixels: Annotated[int | None, typer.Option(help="Largest area of one resized frame.")] = None,
    total_pixels: Annotated[int | None, typer.Option(help="Pixel budget over all frames.")] = None,
    patch_factor: Patch = None,
    columns: Annotated[int, typer.Option(min=1, help="Frames per row of the sheet.")] = 4,
    config_file: ConfigFile = None,
    sets: Sets = None,
) -> None:
    """Sample frames exactly as a model would get them and save them as a contact sheet for a person to look at.

    The vision settings and their defaults are those of build-sft and build-rl (4 fps; for patch factor 28,
    Reason1's pixel budget), so by default the sheet shows what a model trained on a default build sees; the
    builds' other vision settings (max_strided_frames, min_frames, max_frames, min_pixels) are set the same way,
    with --set or --config. Prints the chosen frame indices, their timestamps and the size the model receives.
    """
    from cookbook_data.contact_sheet import contact_sheet
    from cookbook_data.video import sample_frames
    from cookbook_data.vision_options import VisionOptions

    options = {"fps": fps, "nframes": nframes, "max_pixels": max_pixels, "total_pixels": total_pixels}
    options |= {"patch_factor": patch_factor}
    settings = resolve_config(VisionOptions, config_file, sets, options).vision_settings()
    sampled = sample_frames(video, settings)
    contact_sheet(sampled, columns=columns).save(out)
    typer.echo(f"{len(sampled.frame_indices)} frames of {sampled.total_frames} at {sampled.source_fps:g} fps")
    typer.echo(f"indices: {sampled.frame_indices}")
    typer.echo(f"seconds: {[round(t, 3) for t in sampled.timestamps]}")
    typer.echo(f"model input size: {sampled.resized_width}x{sampled.resized_height}")
    typer.echo(f"wrote {out}")


@app.command("validate")
def validate_command(
    manifest: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="VideoSample JSONL manifest.")],
    out: Annotated[Path | None, typer.Option(help="Valid rows (default: <manifest>.valid.jsonl).")] = None,
    quarantine: Annotated[
        Path | None, typer.Option(help="Rows held back, with reasons (default: <manifest>.quarantine.jsonl).")
    ] = None,
    min_duration: Annotated[float, typer.Option(help="Shortest accepted video, seconds.")] = 0.5,
    max_duration: Annotated[float | None, typer.Option(help="Longest accepted video, seconds.")] = None,
    min_side: Annotated[int, typer.Option(help="Smallest accepted width or height.")] = 28,
    max_side: Annotated[int, typer.Option(help="Largest accepted width or height.")] = 3840,
    allow_rotated: Annotated[bool, typer.Option(help="Accept videos flagged as rotated.")] = False,
    allow_vfr: Annotated[bool, typer.Option(help="Accept variable-frame-rate videos.")] = False,
    workers: Annotated[int, typer.Option(min=1, help="Rows checked in parallel (local engine).")] = 2,
    strict: Annotated[bool, typer.Option(help="Exit with code 1 when this run quarantines any row.")] = False,
    engine: Annotated[
        EngineName | None, typer.Option(help="local (default) or ray: check rows on a Ray cluster.")
    ] = None,
    address: AddressOption = None,
) -> None:
    """Check every row (schema, file, decoding, duration, resolution, rotation, frame rate).

    Good rows go to the valid manifest with their probed facts (metadata key validate:video; the row's own
    metadata is kept as it is); bad rows go to the quarantine file with a reason code, a message naming the file,
    the line and the original row. Reruns resume: quarantined rows stay quarantined, except those whose video was
    missing (looked for again) or whose id differing rows held (checked again, as is a valid row whose id such
    rows now hold); rows changed since an earlier run judged them are named in a warning. With --engine ray the
    rows are checked by a pool of Ray actors (one per CPU of the cluster), the files written here.
    """
    from cookbook_data.engines import LocalEngineConfig, RayEngineConfig
    from cookbook_data.validate import ValidateConfig, validate_manifest

    on_ray = engine_options(engine, address)["engine.kind"] == "ray"
    config = ValidateConfig(
        engine=RayEngineConfig(address=address) if on_ray else LocalEngineConfig(),
        manifest=manifest,
        out=out,
        quarantine=quarantine,
        min_duration_s=min_duration,
        max_duration_s=max_duration,
        min_side=min_side,
        max_side=max_side,
        allow_rotated=allow_rotated,
        allow_variable_frame_rate=allow_vfr,
        workers=workers,
    )
    report = validate_manifest(config)
    print_report(report)
    typer.echo(f"valid: {config.valid_path()}\nquarantine: {config.quarantine_path()}")
    if strict and report.failed:
        raise typer.Exit(1)


ingest_app = typer.Typer(
    help="Turn a dataset into a VideoSample manifest (JSONL).", no_args_is_help=True, rich_markup_mode=None
)
app.add_typer(ingest_app, name="ingest")


@ingest_app.command("videophy2")
def ingest_videophy2_command(
    out: Annotated[Path, typer.Option(help="Manifest to write (appended to; reruns resume).")],
    source: Annotated[
        str,
        typer.Option(help="Hub id, or a local parquet/JSON/JSONL/CSV copy or save_to_disk folder."),
    ] = "videophysics/videophy2_train",
    split: Annotated[str | None, typer.Option(help="Split to read (default: the only one).")] = None,
    download: Annotated[
        bool,
        typer.Option(
            help="Download the videos (cached by URL hash), also of samples written without them or whose file is gone."
        ),
    ] = False,
    cache_dir: Annotated[Path | None, typer.Option(help="Video cache (default: videos/ beside the manifest).")] = None,
    workers: Annotated[int, typer.Option(min=1, help="Parallel downloads.")] = 8,
    limit: Annotated[int | None, typer.Option(help="Only the first N rows.")] = None,
) -> None:
    """VideoPhy-2 rows (every column kept) as VideoSamples, optionally with their videos downloaded."""
    from cookbook_data.ingest import VideoPhy2IngestConfig, ingest_videophy2

    config = VideoPhy2IngestConfig(
        source=source, split=split, out=out, download=download, cache_dir=cache_dir, workers=workers, limit=limit
    )
    print_report(ingest_videophy2(config))


@ingest_app.command("folder")
def ingest_folder_command(
    folder: Annotated[
        Path, typer.Argument(exists=True, file_okay=False, help="Folder of videos (searched recursively).")
    ],
    out: Annotated[Path, typer.Option(help="Manifest to write (rebuilt on every run, as are its errors).")],
    labels: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help="CSV, JSON or JSONL of labels naming each video.")
    ] = None,
    video_column: Annotated[str | None, typer.Option(help="Column of the labels file naming the video.")] = None,
) -> None:
    """Videos of a folder as VideoSamples (id = path relative to the folder), with labels when given.

    The manifest is derived from the folder and the labels as they are now: a rerun after mending the labels
    or adding videos rewrites it whole."""
    from cookbook_data.ingest import FolderIngestConfig, ingest_folder

    print_report(ingest_folder(FolderIngestConfig(folder=folder, out=out, labels=labels, video_column=video_column)))


BuildOut = Annotated[Path | None, typer.Option(help="Output folder (dataset, build_info.json, dropped.jsonl).")]
BuildManifest = Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="VideoSample JSONL manifest.")]
BuildTask = Annotated[str | None, typer.Option(help="critic | caption | vqa | multiple_choice (default critic).")]
BuildPrompt = Annotated[str | None, typer.Option(help="Shipped prompt name or YAML file (default: per task).")]
BuildBalance = Annotated[str | None, typer.Option(help="none | down | up: balance train labels (default none).")]


def _build_command(kind: Literal["sft", "rl"], doc: str) -> Callable[..., None]:
    """The build-sft and build-rl commands: the same options, a different dataset."""

    def command(
        manifest: BuildManifest,
        out: BuildOut = None,
        task: BuildTask = None,
        prompt: BuildPrompt = None,
        balance: BuildBalance = None,
        fps: Fps = None,
        patch_factor: Patch = None,
        config_file: ConfigFile = None,
        sets: Sets = None,
    ) -> None:
        from cookbook_data.build import BuildConfig, build_rl, build_sft

        options: dict[str, object] = {"manifest": manifest, "out": out, "task": task, "prompt": prompt}
        options |= {"balance": balance}
        options |= {"fps": fps, "patch_factor": patch_factor}
        config = resolve_config(BuildConfig, config_file, sets, options)
        typer.echo((build_sft if kind == "sft" else build_rl)(config).summary())

    command.__doc__ = doc + "\n\nSettings: defaults < --config TOML < --set key=value < the options here."
    return command


app.command("build-sft")(
    _build_command(
        "sft",
        "An SFT dataset (conversations with the assistant answer) that cosmos-rl and the local trainer read.\n\n"
        "Every sample left out is in dropped.jsonl with its reason.",
    )
)
app.command("build-rl")(
    _build_command("rl", "An RL (GRPO) dataset: prompts without the answer, plus the reference answer for rewards.")
)


def main() -> None:
    run_app(app, "cookbook-data")
