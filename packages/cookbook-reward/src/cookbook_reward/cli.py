"""``cookbook-reward``: Reason-as-Reward scorers, GRPO rewards, a reward service, a trajectory verifier."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cookbook_data.clikit import AddressOption, EngineOption, make_app, run_app
from cookbook_data.engines import engine_options
from cookbook_reward.health import ADDRESS_FILE_ENV
from cookbook_reward.rewards import TOKEN_ENV

if TYPE_CHECKING:
    from cookbook_reward.trajectory import VerifierConfig

app = make_app(
    "cookbook-reward",
    "Reason-as-Reward scorers, GRPO rewards, a reward service, a trajectory verifier.",
)


ScorerOption = Annotated[
    str | None,
    typer.Option(help="likert, yesno, critic, adherence, rule, videophy2 or trajectory (default: likert)."),
]
ModelOption = Annotated[str | None, typer.Option(help="Judging model: hub id or checkpoint folder.")]
ConfigOption = Annotated[
    Path | None, typer.Option("--config", exists=True, dir_okay=False, help="TOML file of settings.")
]
SetOption = Annotated[list[str] | None, typer.Option("--set", help="Override a setting: key=value (repeatable).")]
BackendOption = Annotated[
    str | None,
    typer.Option(help="transformers (default), vllm, or openai: an OpenAI-compatible server at the base_url setting."),
]
DeviceOption = Annotated[str | None, typer.Option(help="cpu, cuda, ... (default: cuda when available).")]


@app.command("score")
def score_command(
    manifest: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="VideoSample JSONL manifest.")],
    out: Annotated[
        Path | None, typer.Option(help="ScoreRecord JSONL (required, here or in --config); a rerun skips ids in it.")
    ] = None,
    scorer: ScorerOption = None,
    model: ModelOption = None,
    samples: Annotated[int | None, typer.Option(help="Answers drawn per video (needs temperature > 0).")] = None,
    reasoning: Annotated[bool | None, typer.Option(help="Ask for <think> reasoning (kept as the critique).")] = None,
    temperature: Annotated[float | None, typer.Option(help="Override the model preset; 0 for greedy.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Videos per model call (default 8).")] = None,
    backend: BackendOption = None,
    device: DeviceOption = None,
    fps: Annotated[float | None, typer.Option(help="Override the model's frames per second.")] = None,
    nframes: Annotated[int | None, typer.Option(help="Sample exactly this many frames.")] = None,
    engine: EngineOption = None,
    address: AddressOption = None,
    config_file: ConfigOption = None,
    sets: SetOption = None,
) -> None:
    """Score every video of a manifest: one ScoreRecord per video, resumable, failures to <out>.errors.jsonl.

    likert and adherence record the parsed 1-5 score and the expected score from the answer token's
    probabilities; yesno records P("No" anomalies); critic 1 (approve) or 0 (reject) with its reasoning; rule
    0/1/2 for the rule in metadata.rule; videophy2 1 when physics and adherence are both >= 4; trajectory
    checks the waypoints in metadata.trajectory against comfort limits (with --model, also asks for a verdict
    on the video). With --engine ray the scorer's model runs in a pool of Ray actors (one per GPU; sizes in
    --set engine.actors=N, ...). Settings: model presets < --config TOML < --set key=value < the options here (a frame
    rule, --fps or --nframes, replaces the one beneath it). Failures are recorded per sample and the run goes on;
    the exit status is 1 when every sample tried failed and none was done before.
    """
    from cookbook_data.clikit import fail_if_nothing_succeeded, print_report
    from cookbook_infer.frame_rules import resolve_layered_config
    from cookbook_reward.config import ScoreConfig
    from cookbook_reward.score import score_manifest

    options = {
        "manifest": manifest,
        "out": out,
        "scorer": scorer,
        "model": model,
        "samples": samples,
        "reasoning": reasoning,
        "temperature": temperature,
        "batch_size": batch_size,
        "backend": backend,
        "device": device,
        "fps": fps,
        "nframes": nframes,
        **engine_options(engine, address),
    }
    report = score_manifest(resolve_layered_config(ScoreConfig, config_file, sets, options))
    print_report(report)
    fail_if_nothing_succeeded(report)


@app.command("serve")
def serve_command(
    scorer: ScorerOption = None,
    model: ModelOption = None,
    media_root: Annotated[
        list[Path] | None, typer.Option(help="Folder whose videos requests may name (repeatable).")
    ] = None,
    host: Annotated[str | None, typer.Option(help="Interface to listen on (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port (default 8100).")] = None,
    max_batch_size: Annotated[int | None, typer.Option(help="Most items per model call (default 8).")] = None,
    max_wait_ms: Annotated[float | None, typer.Option(help="Longest wait to fill a batch (default 10).")] = None,
    max_queue: Annotated[int | None, typer.Option(help="Most waiting items; beyond: 429 (default 64).")] = None,
    token_file: Annotated[
        Path | None,
        typer.Option(
            exists=True, dir_okay=False, help=f"File holding the bearer token (${TOKEN_ENV}, when set, wins over it)."
        ),
    ] = None,
    backend: BackendOption = None,
    device: DeviceOption = None,
    replicas: Annotated[int | None, typer.Option(min=1, help="Serve N replicas on a Ray cluster (Ray Serve).")] = None,
    min_replicas: Annotated[int | None, typer.Option(min=0, help="Autoscale on Ray Serve: fewest replicas.")] = None,
    max_replicas: Annotated[int | None, typer.Option(min=1, help="Autoscale on Ray Serve: most replicas.")] = None,
    address: AddressOption = None,
    config_file: ConfigOption = None,
    sets: SetOption = None,
) -> None:
    """Serve a scorer over HTTP: POST /v1/score, POST /get_reward (OpenRLHF), GET /healthz, GET /metrics.

    Requests name videos under a --media-root (absolute paths or file:// URLs) or upload them as base64; videos
    are decoded as requests arrive, by worker processes (service.prepare_workers, default one per CPU), and
    concurrent requests are batched for the model. With a token (--token-file, or the COOKBOOK_REWARD_TOKEN
    environment variable, which wins), scoring and the docs need "Authorization: Bearer <token>". With --replicas
    (or --min-replicas and --max-replicas, or --address) the same service runs as Ray Serve replicas, each loading
    its own scorer, one GPU each when the cluster has GPUs and the model runs in the replica (not --backend
    openai). The TOML file holds a [scorer] table (ScorerConfig: model, scorer, samples, ...), a [service] table
    (RewardServiceSettings) and a [ray] table (ReplicaSettings); --set takes scorer.*, service.* and ray.* keys.
    Precedence: defaults < TOML < --set < options < environment. Once started, the URL it listens on is in the
    file $COOKBOOK_REWARD_ADDRESS_FILE names, when set (for `healthcheck`), until it stops (Ctrl-C or SIGTERM).
    """
    import signal

    from cookbook_data.clikit import resolve_config
    from cookbook_infer.access import service_token
    from cookbook_reward.config import ServeConfig
    from cookbook_reward.score import described_scorer
    from cookbook_reward.scorers import build_scorer
    from cookbook_reward.service import run_service

    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    token = service_token(TOKEN_ENV, token_file)
    options = {
        "scorer.scorer": scorer,
        "scorer.model": model,
        "scorer.backend": backend,
        "scorer.device": device,
        "service.media_roots": media_root,
        "service.host": host,
        "service.port": port,
        "service.max_batch_size": max_batch_size,
        "service.max_wait_ms": max_wait_ms,
        "service.max_queue": max_queue,
        "service.token": token,
        "ray.replicas": replicas,
        "ray.min_replicas": min_replicas,
        "ray.max_replicas": max_replicas,
        "ray.address": address,
    }
    config = resolve_config(ServeConfig, config_file, sets, options)
    if config.ray is None:
        run_service(
            build_scorer(config.scorer, Path.cwd()),
            config.service,
            model=config.scorer.model,
            describe=described_scorer(config.scorer, Path.cwd()),
        )
        return

    import time

    from cookbook_data.engines import require_ray

    require_ray()
    from cookbook_reward.health import address_noted
    from cookbook_reward.serve_ray import serving_replicas

    service = config.service
    with serving_replicas(config, Path.cwd()) as url, address_noted(service.host, service.port):
        typer.echo(f"reward service on Ray Serve at {url} (Ctrl-C stops it and removes the deployment)")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


def _exit_on_sigterm(signum: int, frame: object) -> None:
    """SIGTERM (``docker stop``, Kubernetes) stops ``serve`` as Ctrl-C does: its cleanup runs (the address file
    removed, Ray Serve's deployment deleted) and it exits 0. uvicorn handles SIGTERM itself while it serves, and
    raises it again once shut down: left to the default action, that would kill the process on the spot, with
    status 143 and the cleanup skipped."""
    raise SystemExit(0)


@app.command("healthcheck")
def healthcheck_command(
    address_file: Annotated[
        Path | None,
        typer.Option(envvar=ADDRESS_FILE_ENV, help=f"File `serve` writes its URL to (default: ${ADDRESS_FILE_ENV})."),
    ] = None,
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds to wait for the answer.")] = 4.0,
) -> None:
    """Exit 0 when the reward service running here answers GET /healthz, or when none runs; else exit 1.

    `serve` writes the URL it listens on to the file $COOKBOOK_REWARD_ADDRESS_FILE names, whatever its --port,
    and removes it when it stops; the reward image sets that variable and uses this command as its
    HEALTHCHECK. Without the file (a batch job, or a service still starting) there is nothing to check.
    """
    from cookbook_reward.health import check_health

    if address_file is None:
        typer.echo(f"no address file: pass --address-file or set {ADDRESS_FILE_ENV}", err=True)
        raise typer.Exit(2)
    healthy, why = check_health(address_file, timeout)
    typer.echo(why, err=not healthy)
    if not healthy:
        raise typer.Exit(1)


@app.command("verify-trajectory")
def verify_trajectory_command(
    files: Annotated[
        list[Path], typer.Argument(exists=True, dir_okay=False, help="Waypoint files: .json, .npy or .npz.")
    ],
    derivative: Annotated[str, typer.Option(help="savgol (smoothed, as NAVSIM) or finite_difference.")] = "savgol",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON report per trajectory.")] = False,
) -> None:
    """Check driving trajectories against the nuPlan/NAVSIM comfort limits (acceleration, jerk, yaw rate, ...).

    Prints per check the worst value, the limit, the margin (negative: exceeded) and pass/fail, then the
    reward (the fraction of checks passed). A file holding several trajectories (a list of them, an object
    whose only member is that list, arrays with a leading batch axis) has each checked and named FILE[i]
    (with --json, "index": i). A file or trajectory that cannot be read or judged is reported with its reason
    and the others are still checked. Exits 1 when any trajectory fails a check or cannot be judged.
    """
    from pydantic import ValidationError

    from cookbook_reward.trajectory import TrajectoryError, VerifierConfig, load_trajectories

    try:
        config = VerifierConfig.model_validate({"derivative": derivative})
    except ValidationError as error:  # a mistyped option, not a trajectory that failed: exit 2 as for usage
        raise typer.BadParameter(error.errors()[0]["msg"], param_hint="'--derivative'") from None
    failed = False
    for path in files:
        try:
            entries = load_trajectories(path)
        except TrajectoryError as error:
            _print_unjudged(path, None, str(error).removeprefix(f"{path}: "), as_json)
            failed = True
            continue
        for index, data in entries:
            failed |= not _verify_one(path, index, data, config, as_json)
    if failed:
        raise typer.Exit(1)


def _verify_one(path: Path, index: int | None, data: object, config: VerifierConfig, as_json: bool) -> bool:
    """Judge one trajectory of ``path`` (``index`` in its batch, None when it holds one) and print the report;
    whether it passed every check."""
    from rich.table import Table

    from cookbook_data.clikit import out_console
    from cookbook_reward.trajectory import TrajectoryError, trajectory_from_data, verify_trajectory

    try:
        report = verify_trajectory(trajectory_from_data(data), config)
    except TrajectoryError as error:
        _print_unjudged(path, index, str(error), as_json)
        return False
    if as_json:
        typer.echo(json.dumps({**_where(path, index), **report.model_dump(mode="json")}))
        return report.passed
    name = _label(path, index)
    table = Table("check", "worst value", "limit", "margin", "result", title=name)
    for check in report.checks:
        verdict = "pass" if check.passed else "FAIL"
        table.add_row(check.name, f"{check.value:.3f}", f"{check.limit:.3f}", f"{check.margin:+.3f}", verdict)
    out_console.print(table)
    typer.echo(f"{name}: reward {report.reward:.3f} ({'passed' if report.passed else 'failed'})")
    return report.passed


def _print_unjudged(path: Path, index: int | None, reason: str, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps({**_where(path, index), "error": reason}))
    else:
        typer.echo(f"{_label(path, index)}: cannot be judged: {reason}", err=True)


def _where(path: Path, index: int | None) -> dict[str, object]:
    """The JSON report's ``file`` and, for a trajectory of a batch, its ``index``."""
    return {"file": str(path)} if index is None else {"file": str(path), "index": index}


def _label(path: Path, index: int | None) -> str:
    return str(path) if index is None else f"{path}[{index}]"


@app.command("filter")
def filter_command(
    manifest: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="VideoSample JSONL manifest.")],
    scores: Annotated[Path, typer.Option(exists=True, dir_okay=False, help="ScoreRecord JSONL of the manifest.")],
    out: Annotated[Path, typer.Option(help="Folder for kept/surplus/borderline/rejected/unscored .jsonl.")],
    keep_min: Annotated[float | None, typer.Option(help="Keep videos scoring at least this (Likert: 4).")] = None,
    drop_max: Annotated[float | None, typer.Option(help="Reject videos scoring at most this (Likert: 2).")] = None,
    by: Annotated[str | None, typer.Option(help="score (default) or expected_score.")] = None,
    best_of: Annotated[
        str | None, typer.Option(help="Metadata key grouping generations of one prompt: keep the best per group.")
    ] = None,
    config_file: ConfigOption = None,
    sets: SetOption = None,
) -> None:
    """Curate generated videos by score: every video lands in exactly one output manifest (nothing is lost).

    The thresholds default to 4 and 2 for Likert scores; other kinds of score (yes/no, verdicts, rule,
    trajectory) need both, on their own scale."""
    from cookbook_data.clikit import resolve_config
    from cookbook_reward.config import FilterConfig
    from cookbook_reward.filter import filter_manifest

    options = {
        "manifest": manifest,
        "scores": scores,
        "out": out,
        "keep_min": keep_min,
        "drop_max": drop_max,
        "by": by,
        "best_of": best_of,
    }
    report = filter_manifest(resolve_config(FilterConfig, config_file, sets, options))
    for band, count in report.counts.items():
        typer.echo(f"{band:>10}: {count:6d}  {report.files[band]}")
    if report.unmatched:
        listed = ", ".join(report.unmatched[:5])
        count = len(report.unmatched)
        typer.echo(f"{count} score records name no sample of the manifest (not used): {listed}", err=True)


def main() -> None:
    run_app(app, "cookbook-reward")
