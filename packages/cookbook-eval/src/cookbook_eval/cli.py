"""``cookbook-eval``: VideoPhy-2 metrics, FID/FVD, Sampson geometric consistency, reports."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cookbook_data.clikit import AddressOption, EngineOption, make_app, out_console, resolve_config, run_app
from cookbook_data.engines import engine_options

if TYPE_CHECKING:
    from cookbook_eval.fid import FrechetResult
    from cookbook_eval.metrics import Estimate, VideoPhy2Summary

app = make_app("cookbook-eval", "VideoPhy-2 metrics, FID/FVD, Sampson geometric consistency, reports.")

ConfigFile = Annotated[
    Path | None, typer.Option("--config", exists=True, dir_okay=False, help="TOML file of settings.")
]
Sets = Annotated[list[str] | None, typer.Option("--set", help="Override a setting: key=value (repeatable).")]


def _estimate(value: Estimate | None) -> str:
    if value is None or value.value is None:
        return "n/a"
    text = f"{value.value:.3f}"
    if value.ci_low is not None and value.ci_high is not None:
        text += f" [{value.ci_low:.3f}, {value.ci_high:.3f}]"
    return f"{text} (n={value.n})"


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _print_summary(summary: VideoPhy2Summary) -> None:
    from rich.table import Table

    coverage = summary.coverage
    table = Table("metric", "value")
    table.add_row("evaluated / labelled", f"{coverage.evaluated} / {coverage.labelled}")
    table.add_row("missing predictions", str(coverage.missing.count))
    if coverage.not_asked.count:
        table.add_row("not asked (no input)", str(coverage.not_asked.count))
    table.add_row("unparseable (counted wrong)", str(coverage.unparseable.count))
    table.add_row("unlabelled predictions", str(coverage.unlabelled.count))
    if coverage.duplicates.count:
        table.add_row("duplicate predictions", str(coverage.duplicates.count))
    if coverage.other_score_records:
        table.add_row("score records of other kinds (not used)", str(coverage.other_score_records))
    if summary.likert is not None:
        likert = summary.likert
        table.add_row(f"exact accuracy ({likert.label_field})", _estimate(likert.exact_accuracy))
        table.add_row("within-one accuracy", _estimate(likert.within_one_accuracy))
        table.add_row(f"binary F1 (>= {likert.binary.threshold})", _ratio(likert.binary.f1))
        table.add_row("Pearson r", _estimate(likert.pearson))
        table.add_row("Spearman rho", _estimate(likert.spearman))
    if summary.joint is not None:
        table.add_row("joint accuracy", _ratio(summary.joint.binary.accuracy))
    if summary.multiple_choice is not None:
        table.add_row("multiple-choice accuracy", _estimate(summary.multiple_choice.accuracy))
    out_console.print(table)


@app.command("videophy2")
def videophy2_command(
    manifest: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help="VideoSample JSONL manifest with the labels.")
    ] = None,
    predictions: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help=(
                "Prediction JSONL of `cookbook-infer run`: --task critic or critic-thinking for label pc, "
                "adherence for label sa (either for a label of your own), multiple-choice for --task "
                "multiple-choice; predictions of another task are refused."
            ),
        ),
    ] = None,
    scores: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help=(
                "ScoreRecord JSONL of `cookbook-reward score` (Likert scores): records of the kind that scores "
                "the label are read, others counted and left out."
            ),
        ),
    ] = None,
    out: Annotated[Path | None, typer.Option(file_okay=False, help="Folder for summary.json.")] = None,
    task: Annotated[
        str | None, typer.Option(help="critic (default) or multiple_choice (multiple-choice also).")
    ] = None,
    label_field: Annotated[
        str | None, typer.Option(help="Label the scores are compared with (default pc; sa for adherence).")
    ] = None,
    score_kind: Annotated[
        str | None,
        typer.Option(help="physics_likert or instruction_likert (default: the one that scores label pc or sa)."),
    ] = None,
    threshold: Annotated[int | None, typer.Option(help="Lowest positive score in binary metrics (default 4).")] = None,
    bootstrap: Annotated[int | None, typer.Option(help="Bootstrap resamples, 0 for none (default 1000).")] = None,
    seed: Annotated[int | None, typer.Option(help="Bootstrap seed (default 0).")] = None,
    config_file: ConfigFile = None,
    sets: Sets = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON instead of a table.")] = False,
) -> None:
    """Accuracy, within-one, binary F1, Pearson/Spearman with bootstrap intervals, confusion matrix, joint
    metric and per-category accuracy of a critic's scores (or multiple-choice answers) against labels.

    Predictions must answer what is evaluated: those of `cookbook-infer run --task critic` (or critic-thinking)
    are compared with label pc, adherence ones with sa (either kind with a label of your own), rule ones with a
    label of your own on the scale 0-2 (--set min_score=0 --set max_score=2), multiple-choice ones with --task
    multiple-choice; predictions of another task are refused, naming the option that fits
    (records naming no task that cookbook-infer runs are taken as they are).

    Unparseable predictions are counted as wrong and reported, never dropped; labelled samples without a
    prediction are reported as missing, and those whose question could not be asked (no caption for the
    adherence question of a joint score) as not asked. A run that evaluates no sample fails, naming why (no
    sample with the label, an empty file, no score of the kind the label is compared with, sample ids the
    manifest does not hold). Writes summary.json and config.resolved.json into --out. Settings: defaults <
    --config TOML < --set key=value < the options here.
    """
    from cookbook_eval.config import VideoPhy2Config
    from cookbook_eval.metrics import SUMMARY_FILE, evaluate_videophy2

    options: dict[str, Any] = {
        "manifest": manifest,
        "predictions": predictions,
        "scores": scores,
        "out": out,
        "task": task,
        "label_field": label_field,
        "score_kind": score_kind,
        "threshold": threshold,
        "bootstrap": bootstrap,
        "seed": seed,
    }
    config = resolve_config(VideoPhy2Config, config_file, sets, options)
    summary = evaluate_videophy2(config)
    if as_json:
        typer.echo(summary.model_dump_json(indent=2))
        return
    _print_summary(summary)
    typer.echo(f"wrote {config.out / SUMMARY_FILE}")


@app.command("report")
def report_command(
    run: Annotated[Path, typer.Argument(exists=True, help="summary.json of an evaluation, or its folder.")],
    out: Annotated[Path | None, typer.Option(dir_okay=False, help="HTML file (default report.html).")] = None,
    compare: Annotated[
        Path | None, typer.Option(exists=True, help="A second summary.json (or folder) to show side by side.")
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option(dir_okay=False, help="JSON summary (default: the HTML path with .json).")
    ] = None,
    title: Annotated[str | None, typer.Option(help="Heading of the report.")] = None,
    name: Annotated[
        list[str] | None, typer.Option("--name", help="Column name of each run, in order, each its own (repeatable).")
    ] = None,
    config_file: ConfigFile = None,
    sets: Sets = None,
) -> None:
    """Write a self-contained HTML report (metric tables, confusion matrix, score histograms, reliability
    diagram, accuracy per category) and a JSON summary; --compare adds a second run with deltas."""
    from cookbook_eval.config import ReportConfig
    from cookbook_eval.report import write_report

    options: dict[str, Any] = {
        "run": run,
        "out": out,
        "compare": compare,
        "json_out": json_out,
        "title": title,
        "names": name or None,
    }
    files = write_report(resolve_config(ReportConfig, config_file, sets, options))
    typer.echo(f"wrote {files.html} ({files.plots} plots) and {files.json}")


def _print_frechet(result: FrechetResult, written: Path, as_json: bool) -> None:
    """The result as a table, or as JSON alone so that stdout parses (as the other commands' --json)."""
    if as_json:
        typer.echo(result.model_dump_json(indent=2))
        return
    from rich.table import Table

    table = Table("", "real", "generated")
    for key in ("videos", "used", "failed", "samples"):
        table.add_row(key, str(getattr(result.real, key)), str(getattr(result.generated, key)))
    out_console.print(table)
    typer.echo(
        f"{result.metric.upper()} {result.value:.4f} ({result.extractor}, {result.weights}, d={result.feature_dim})"
    )
    for note in result.notes:
        typer.echo(f"not comparable: {note}")
    typer.echo(f"wrote {written}")


RealOption = Annotated[
    Path | None, typer.Option(help="Reference videos: VideoSample JSONL manifest, folder of videos or one file.")
]
GeneratedOption = Annotated[Path | None, typer.Option(help="Generated videos, in the same forms.")]
FrechetOut = Annotated[
    Path | None,
    typer.Option(
        file_okay=False,
        help="Folder for features, errors-<set>.jsonl and the result; with --engine ray on several machines, "
        "shared storage at the same path on every node (the actors write the features there).",
    ),
]
WeightsOption = Annotated[
    str | None,
    typer.Option(help="state_dict file, hf://owner/name/path/file, or 'random' (pipeline check, not comparable)."),
]
ShrinkageOption = Annotated[
    str | None,
    typer.Option(help="'ledoit-wolf' or an intensity in (0, 1] when a set has fewer samples than features."),
]
BatchOption = Annotated[int | None, typer.Option(help="Videos embedded together (default 4).")]
WorkersOption = Annotated[int | None, typer.Option(help="Batches in flight on the local engine (default 2).")]
DeviceOption = Annotated[
    str | None, typer.Option(help="Torch device (default cuda where the network runs and has one, else cpu).")
]
SeedOption = Annotated[int | None, typer.Option(help="Seed of random weights (default 0).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


@app.command("fid")
def fid_command(
    real: RealOption = None,
    generated: GeneratedOption = None,
    out: FrechetOut = None,
    weights: WeightsOption = None,
    frames_per_video: Annotated[
        int | None, typer.Option(help="Frames per video, evenly spaced first to last; even (default 8).")
    ] = None,
    image_size: Annotated[int | None, typer.Option(help="Network input side (default 299).")] = None,
    shrinkage: ShrinkageOption = None,
    batch_size: BatchOption = None,
    workers: WorkersOption = None,
    device: DeviceOption = None,
    seed: SeedOption = None,
    engine: EngineOption = None,
    address: AddressOption = None,
    config_file: ConfigFile = None,
    sets: Sets = None,
    as_json: JsonOption = False,
) -> None:
    """Fréchet Inception Distance between two video sets (frames through InceptionV3 pool3, 2048-d).

    Per-video features are cached under --out and reruns resume; a video that cannot be decoded is written
    to errors-<set>.jsonl and the run goes on. Writes fid.json and config.resolved.json into --out. With
    --engine ray, videos are decoded in Ray CPU tasks and InceptionV3 runs in a pool of actors (one per GPU;
    sizes in --set engine.actors=N, ...) that write the features into --out: shared storage on several
    machines. Settings: defaults < --config TOML < --set key=value < the options here.
    """
    from cookbook_eval.fid import FIDConfig, compute_fid

    options: dict[str, Any] = {
        "real": real,
        "generated": generated,
        "out": out,
        "weights": weights,
        "frames_per_video": frames_per_video,
        "image_size": image_size,
        "shrinkage": shrinkage,
        "batch_size": batch_size,
        "workers": workers,
        "device": device,
        "seed": seed,
        **engine_options(engine, address),
    }
    config = resolve_config(FIDConfig, config_file, sets, options)
    _print_frechet(compute_fid(config), config.out / "fid.json", as_json)


@app.command("fvd")
def fvd_command(
    real: RealOption = None,
    generated: GeneratedOption = None,
    out: FrechetOut = None,
    weights: WeightsOption = None,
    clip_length: Annotated[int | None, typer.Option(help="Consecutive frames per clip (default 16).")] = None,
    clips_per_video: Annotated[int | None, typer.Option(help="Clips per video, first at frame 0 (default 1).")] = None,
    short_videos: Annotated[
        str | None, typer.Option(help="pad (repeat the last frame, default) or skip videos shorter than a clip.")
    ] = None,
    image_size: Annotated[int | None, typer.Option(help="Network input side (default 224).")] = None,
    shrinkage: ShrinkageOption = None,
    batch_size: BatchOption = None,
    workers: WorkersOption = None,
    device: DeviceOption = None,
    seed: SeedOption = None,
    engine: EngineOption = None,
    address: AddressOption = None,
    config_file: ConfigFile = None,
    sets: Sets = None,
    as_json: JsonOption = False,
) -> None:
    """Fréchet Video Distance between two video sets (clips of consecutive frames through I3D, 400-d logits).

    Per-video features are cached under --out and reruns resume; a video that cannot be decoded is written
    to errors-<set>.jsonl and the run goes on. Writes fvd.json and config.resolved.json into --out. With
    --engine ray, clips are decoded in Ray CPU tasks and I3D runs in a pool of actors (one per GPU; sizes in
    --set engine.actors=N, ...) that write the features into --out: shared storage on several machines.
    Settings: defaults < --config TOML < --set key=value < the options here.
    """
    from cookbook_eval.fid import FVDConfig, compute_fvd

    options: dict[str, Any] = {
        "real": real,
        "generated": generated,
        "out": out,
        "weights": weights,
        "clip_length": clip_length,
        "clips_per_video": clips_per_video,
        "short_videos": short_videos,
        "image_size": image_size,
        "shrinkage": shrinkage,
        "batch_size": batch_size,
        "workers": workers,
        "device": device,
        "seed": seed,
        **engine_options(engine, address),
    }
    config = resolve_config(FVDConfig, config_file, sets, options)
    _print_frechet(compute_fvd(config), config.out / "fvd.json", as_json)


@app.command("sampson")
def sampson_command(
    inputs: Annotated[
        list[Path] | None,
        typer.Argument(
            help="temporal: videos, folders or VideoSample manifests; cross_view: scene folders (one video per view)."
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(file_okay=False, help="Folder for sampson.jsonl, errors.jsonl and sampson.json.")
    ] = None,
    mode: Annotated[
        str | None, typer.Option(help="temporal (TSE, consecutive frames; default) or cross_view (CSE).")
    ] = None,
    fps: Annotated[float | None, typer.Option(help="Frames per second to sample (default 4 unless --nframes).")] = None,
    nframes: Annotated[int | None, typer.Option(help="Exact number of frames per clip (even).")] = None,
    max_frames: Annotated[int | None, typer.Option(help="Most frames per clip when sampling by fps.")] = None,
    detector: Annotated[str | None, typer.Option(help="sift (default) or orb.")] = None,
    max_keypoints: Annotated[int | None, typer.Option(help="Strongest keypoints kept per image.")] = None,
    ratio: Annotated[float | None, typer.Option(help="Lowe's ratio test threshold (default 0.75).")] = None,
    threshold_px: Annotated[float | None, typer.Option(help="MAGSAC inlier threshold in pixels (default 1).")] = None,
    min_matches: Annotated[int | None, typer.Option(help="Fewer matches make a pair degenerate.")] = None,
    min_motion_px: Annotated[
        float | None, typer.Option(help="Median motion below this: degenerate (no_motion).")
    ] = None,
    min_parallax_px: Annotated[
        float | None, typer.Option(help="Matches explained by one homography within this: degenerate (no_parallax).")
    ] = None,
    intrinsics: Annotated[
        str | None, typer.Option(help="Camera 'fx,fy,cx,cy' in pixels: also checks E = KᵀFK.")
    ] = None,
    workers: Annotated[int | None, typer.Option(help="Clips scored in parallel (default 2).")] = None,
    config_file: ConfigFile = None,
    sets: Sets = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Sampson error (pixels) of generated video: how well matched keypoints fit one rigid epipolar geometry,
    between consecutive frames (TSE) or between views at the same time (CSE).

    Degenerate pairs (too few matches, no motion, no parallax) are reported with a reason, never scored 0.
    Writes sampson.jsonl (one record per clip), errors.jsonl, sampson.json and config.resolved.json into
    --out; reruns resume. Settings: defaults < --config TOML < --set key=value < the options here.
    """
    from cookbook_eval.sampson import SampsonConfig, compute_sampson

    options: dict[str, Any] = {
        "inputs": inputs or None,
        "out": out,
        "mode": mode,
        "fps": fps,
        "nframes": nframes,
        "max_frames": max_frames,
        "detector": detector,
        "max_keypoints": max_keypoints,
        "ratio": ratio,
        "threshold_px": threshold_px,
        "min_matches": min_matches,
        "min_motion_px": min_motion_px,
        "min_parallax_px": min_parallax_px,
        "workers": workers,
        "intrinsics": None if intrinsics is None else [float(v) for v in intrinsics.split(",")],
    }
    config = resolve_config(SampsonConfig, config_file, sets, options)
    summary = compute_sampson(config)
    if as_json:
        typer.echo(summary.model_dump_json(indent=2))
        return
    value = "n/a" if summary.median_px is None else f"{summary.median_px:.3f} px"
    typer.echo(
        f"{summary.metric} median {value} over {summary.scored_clips} of {summary.clips} clips "
        f"({summary.degenerate_clips} degenerate, {summary.failed_clips} failed)"
    )
    if summary.degenerate_pairs:
        typer.echo("degenerate pairs: " + ", ".join(f"{k} {v}" for k, v in summary.degenerate_pairs.items()))
    typer.echo(f"wrote {config.out / 'sampson.json'}")


def main() -> None:
    run_app(app, "cookbook-eval")
