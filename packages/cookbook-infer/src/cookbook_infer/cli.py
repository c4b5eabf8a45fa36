"""``cookbook-infer``: Cosmos Reason inference, and tiny checkpoints for testing."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from cookbook_data.clikit import AddressOption, EngineOption, make_app, run_app
from cookbook_data.engines import engine_options
from cookbook_data.schemas import VideoSample
from cookbook_data.tasks import Dropped
from cookbook_data.video import VisionSettings
from cookbook_infer.registry import Arch
from cookbook_infer.tasks import TASKS, InferenceTask, get_task, placeholders, sample_asking, sample_values

Dtype = Literal["auto", "float32", "bfloat16", "float16"]
ArchOption = Annotated[
    Arch | None, typer.Option(help="reason1 or reason2, for models the registry does not know.", show_default=False)
]

ASKED_OPTIONS = {"question": "--question", "options": "--option", "caption": "--caption", "rule": "--rule"}
"""The ``generate`` option giving each value a task's prompt fills in (``run`` reads them from each sample)."""


def _tasks_filling(placeholder: str) -> str:
    """The tasks whose prompt fills in ``placeholder``, for ``--help``."""
    return ", ".join(name for name, task in TASKS.items() if placeholder in placeholders(task.values_from))


API_KEY_ENV = "COOKBOOK_API_KEY"
"""The environment variable holding the API key `serve` requires of its clients."""

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


@app.command("generate")
def generate(
    model: Annotated[str, typer.Option(help="Hub id (e.g. nvidia/Cosmos-Reason2-8B) or checkpoint folder.")],
    videos: Annotated[
        list[Path] | None,
        typer.Argument(exists=True, dir_okay=False, help="Videos to ask about (default: the shipped samples)."),
    ] = None,
    task: Annotated[str, typer.Option(help=f"One of: {', '.join(TASKS)}.")] = "critic",
    question: Annotated[
        str | None, typer.Option(help=f"The question asked about each video (--task {_tasks_filling('question')}).")
    ] = None,
    option: Annotated[
        list[str] | None,
        typer.Option(
            "--option",
            help=f"An answer to choose from: one --option per answer, A, B, ... (--task {_tasks_filling('options')}).",
        ),
    ] = None,
    caption: Annotated[
        str | None,
        typer.Option(
            help=f"The caption or generation prompt each video should follow (--task {_tasks_filling('caption')})."
        ),
    ] = None,
    rule: Annotated[
        str | None,
        typer.Option(help=f"The physical rule each video is judged against (--task {_tasks_filling('rule')})."),
    ] = None,
    prompt: Annotated[str | None, typer.Option(help="Shipped prompt name or YAML file replacing the task's.")] = None,
    arch: ArchOption = None,
    fps: Annotated[float | None, typer.Option(help="Override the model's frames per second.")] = None,
    nframes: Annotated[int | None, typer.Option(help="Sample exactly this many frames.")] = None,
    max_pixels: Annotated[int | None, typer.Option(help="Largest area of one resized frame.")] = None,
    total_pixels: Annotated[int | None, typer.Option(help="Pixel budget over all frames of a video.")] = None,
    max_new_tokens: Annotated[int | None, typer.Option(help="Override the model preset's token budget.")] = None,
    temperature: Annotated[float | None, typer.Option(help="Override the model preset; 0 for greedy.")] = None,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    batch_size: Annotated[int, typer.Option(min=1, help="Videos per forward pass.")] = 4,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:1, ... (default: cuda when available).")] = "auto",
    dtype: Annotated[Dtype, typer.Option(help="Weights dtype; auto keeps the checkpoint's.")] = "auto",
    out: Annotated[Path | None, typer.Option(help="Also append the predictions to this JSONL file.")] = None,
) -> None:
    """Ask a Cosmos Reason model about video files and print one Prediction (JSON) per video.

    Without videos it uses the two shipped sample videos; the default task is the published VideoPhy-2
    physical-plausibility critic for the model's architecture. Tasks that ask more than the video take what they
    ask from options, the same for every video: vqa a --question, multiple-choice a --question and an --option per
    answer, adherence a --caption, rule a --rule (`run` reads them from each sample of a manifest). An option the
    task does not use is refused.
    """
    from cookbook_data.clikit import resolve_config
    from cookbook_data.records import JsonlWriter
    from cookbook_data.samples import sample_videos
    from cookbook_data.schemas import Prediction
    from cookbook_infer.run import Predictor, PredictorConfig

    config = resolve_config(
        PredictorConfig,
        None,
        None,
        {
            "model": model,
            "arch": arch,
            "task": task,
            "prompt": prompt,
            "device": device,
            "dtype": dtype,
            "max_new_tokens": max_new_tokens,
            "temperature": temperature,
            "seed": seed,
            "fps": fps,
            "nframes": nframes,
            "max_pixels": max_pixels,
            "total_pixels": total_pixels,
        },
    )
    asked = {"question": question, "options": option or None, "caption": caption, "rule": rule}
    samples = _asked_samples(get_task(task), videos or sample_videos(), asked)
    predictor = Predictor.from_config(config, Path.cwd())
    writer = JsonlWriter(out, Prediction) if out is not None else None
    try:
        for start in range(0, len(samples), batch_size):
            for prediction in predictor(samples[start : start + batch_size]):
                typer.echo(prediction.model_dump_json())
                if writer is not None:
                    writer.write(prediction)
    finally:
        if writer is not None:
            writer.close()


def _asked_samples(task: InferenceTask, paths: list[Path], asked: dict[str, Any]) -> list[VideoSample]:
    """A sample per video, carrying the values ``asked`` by options (question, options, caption, rule; None: not
    given) where ``run`` finds them in a manifest's samples, so both build the prompt alike. An option the task
    does not use is refused rather than ignored, one it needs is asked for by name, and a value its prompt would
    refuse for every video (a blank question, a single answer to choose from) is refused before the model loads."""
    needed = placeholders(task.values_from)
    given = {name: value for name, value in asked.items() if value is not None}
    if unused := [ASKED_OPTIONS[name] for name in given if name not in needed]:
        raise ValueError(f"--task {task.name} does not use {', '.join(unused)}")
    if missing := [flag for name, flag in ASKED_OPTIONS.items() if name in needed and name not in given]:
        raise ValueError(f"--task {task.name} needs {' and '.join(missing)}")
    samples = [sample_asking(str(path), str(path.resolve()), **given) for path in paths]
    try:
        sample_values(samples[0], task.values_from)
    except (ValueError, Dropped) as error:
        flags = " and ".join(ASKED_OPTIONS[name] for name in given)
        raise ValueError(f"{flags} of --task {task.name}: {error}") from None
    return samples


@app.command("run")
def run_command(
    manifest: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="VideoSample JSONL manifest.")],
    model: Annotated[str | None, typer.Option(help="Hub id or checkpoint folder.")] = None,
    task: Annotated[str | None, typer.Option(help=f"One of: {', '.join(TASKS)} (default: critic).")] = None,
    out: Annotated[Path | None, typer.Option(help="Predictions JSONL; a rerun skips ids already in it.")] = None,
    arch: ArchOption = None,
    prompt: Annotated[str | None, typer.Option(help="Shipped prompt name or YAML file replacing the task's.")] = None,
    backend: Annotated[str | None, typer.Option(help="transformers (default), vllm, or openai.")] = None,
    base_url: Annotated[str | None, typer.Option(help="Server URL for --backend openai.")] = None,
    api_key_file: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False, help="File holding the server's API key (else $OPENAI_API_KEY)."),
    ] = None,
    batch_size: Annotated[int | None, typer.Option(help="Samples per generate call (default 8).")] = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, ... (default: cuda when available).")] = None,
    max_new_tokens: Annotated[int | None, typer.Option(help="Override the model preset's token budget.")] = None,
    temperature: Annotated[float | None, typer.Option(help="Override the preset; 0 for greedy.")] = None,
    seed: Annotated[int | None, typer.Option(help="Sampling seed (default 0).")] = None,
    fps: Annotated[float | None, typer.Option(help="Override the model's frames per second.")] = None,
    nframes: Annotated[int | None, typer.Option(help="Sample exactly this many frames.")] = None,
    engine: EngineOption = None,
    address: AddressOption = None,
    config_file: Annotated[
        Path | None, typer.Option("--config", exists=True, dir_okay=False, help="TOML file of run settings.")
    ] = None,
    sets: Annotated[list[str] | None, typer.Option("--set", help="Override a setting: key=value.")] = None,
) -> None:
    """Answer a task for every sample of a manifest: batched, resumable, one Prediction per sample.

    Unparseable answers are kept (answer = null, raw text kept); failing samples go to <out>.errors.jsonl and
    the run goes on; the exit status is 1 when every sample tried failed and none was done before. With --engine
    ray the model runs in a pool of Ray actors (one per GPU; sizes in --set engine.actors=N,
    engine.gpus_per_actor=...), and this process writes the records. Settings: model presets < --config TOML <
    --set key=value < the options here; a frame rule (fps, nframes, max_strided_frames) given at one level
    replaces the one of the levels below.
    """
    from cookbook_data.clikit import fail_if_nothing_succeeded, print_report
    from cookbook_infer.frame_rules import resolve_layered_config
    from cookbook_infer.run import RunConfig, run_inference

    options = {
        "manifest": manifest,
        "model": model,
        "task": task,
        "out": out,
        "arch": arch,
        "prompt": prompt,
        "backend": backend,
        "base_url": base_url,
        "api_key_file": api_key_file,
        "batch_size": batch_size,
        "device": device,
        "max_new_tokens": max_new_tokens,
        "temperature": temperature,
        "seed": seed,
        "fps": fps,
        "nframes": nframes,
        **engine_options(engine, address),
    }
    report = run_inference(resolve_layered_config(RunConfig, config_file, sets, options))
    print_report(report)
    fail_if_nothing_succeeded(report)


@app.command("serve")
def serve_command(
    model: Annotated[str, typer.Option(help="Hub id or checkpoint folder to serve.")],
    arch: ArchOption = None,
    host: Annotated[str, typer.Option(help="Interface to listen on (0.0.0.0 for all).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    media_root: Annotated[
        list[Path] | None, typer.Option(help="Folder whose videos requests may read (repeatable).")
    ] = None,
    max_batch_size: Annotated[int, typer.Option(min=1, help="Most requests generated together.")] = 8,
    max_wait_ms: Annotated[float, typer.Option(help="Longest wait to fill a batch.")] = 10.0,
    device: Annotated[str, typer.Option(help="cpu, cuda, ... (auto: cuda when available).")] = "auto",
    dtype: Annotated[Dtype, typer.Option(help="Weights dtype; auto keeps the checkpoint's.")] = "auto",
    max_tokens_limit: Annotated[
        int | None, typer.Option(min=1, help="Most new tokens a request may ask for (default 4096).")
    ] = None,
    max_frames_limit: Annotated[
        int | None, typer.Option(min=1, help="Most frames a request may have sampled from a video (default 768).")
    ] = None,
    min_pixels_limit: Annotated[
        int | None, typer.Option(min=1, help="Largest min_pixels a request may ask for (default 768·32²).")
    ] = None,
    api_key_file: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help=f"File holding the API key clients must send (${API_KEY_ENV}, when set, wins over it).",
        ),
    ] = None,
) -> None:
    """Serve a model behind an OpenAI-compatible chat-completions API (/v1/chat/completions).

    Video parts are {"type": "video_url", "video_url": {"url": "file:///abs/clip.mp4"}} under a --media-root;
    vision settings come from the request's mm_processor_kwargs or the model's defaults. With an API key
    (--api-key-file, or the COOKBOOK_API_KEY environment variable, which wins), the /v1 endpoints and the docs
    require "Authorization: Bearer <key>". Requests asking for more tokens, frames or pixels than the limits get
    400. For vLLM, run `vllm serve <model>` instead: `cookbook-infer run
    --backend openai --base-url http://HOST:PORT/v1` talks to both.
    """
    from cookbook_data.clikit import resolve_config
    from cookbook_infer.access import service_token
    from cookbook_infer.backends.transformers import TransformersBackend
    from cookbook_infer.registry import resolve_model
    from cookbook_infer.serve import ServeSettings, run_server

    spec = resolve_model(model, arch)
    settings = resolve_config(
        ServeSettings,
        None,
        None,
        {
            "model_id": model,
            "host": host,
            "port": port,
            "media_roots": media_root or [],
            "max_batch_size": max_batch_size,
            "max_wait_ms": max_wait_ms,
            "vision": _within_frame_limit(spec.vision, max_frames_limit),
            "api_key": service_token(API_KEY_ENV, api_key_file),
            "max_tokens_limit": max_tokens_limit,
            "max_frames_limit": max_frames_limit,
            "min_pixels_limit": min_pixels_limit,
        },
    )
    run_server(TransformersBackend(model, device=device, dtype=dtype), settings)


def _within_frame_limit(vision: VisionSettings, limit: int | None) -> VisionSettings:
    """The model's default vision settings, sampling by fps at most ``limit`` frames (a lower limit than the
    default ``max_frames`` lowers it; an ``nframes`` or ``max_strided_frames`` above it stays an error)."""
    if limit is None or vision.nframes is not None or vision.max_strided_frames is not None:
        return vision
    capped = min(vision.max_frames, limit)
    return VisionSettings.model_validate(
        vision.model_dump() | {"max_frames": capped, "min_frames": min(vision.min_frames, capped)}
    )


def main() -> None:
    run_app(app, "cookbook-infer")
