import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner, Result

from cookbook_data.jobs import RESOLVED_CONFIG
from cookbook_data.records import read_records
from cookbook_data.schemas import Conversation, Prediction, VideoSample
from cookbook_data.testing import VideoSet
from cookbook_infer.backends.base import Generation, SamplingSettings
from cookbook_infer.backends.transformers import TransformersBackend, load_pretrained
from cookbook_infer.cli import API_KEY_ENV
from cookbook_infer.tasks import TASKS, placeholders
from cookbook_infer.testing import Arch
from cookbook_infer.testing.backends import FixedAnswers
from cookbook_infer.testing.pytest_plugin import TinyCheckpoints


@pytest.mark.parametrize(("arch", "model_class"), [("reason1", "Qwen2_5_VL"), ("reason2", "Qwen3VL")])
def test_make_tiny_model_writes_a_checkpoint_the_loader_reads(tmp_path: Path, arch: Arch, model_class: str) -> None:
    out = tmp_path / arch
    result = subprocess.run(
        [sys.executable, "-m", "cookbook_infer", "make-tiny-model", "--arch", arch, str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(out)
    assert {"config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja"} <= {
        p.name for p in out.iterdir()
    }
    loaded = load_pretrained(str(out))
    assert type(loaded.model).__name__ == f"{model_class}ForConditionalGeneration"


def test_an_unknown_arch_is_refused_with_the_choices() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cookbook_infer", "make-tiny-model", "--arch", "reason3", "/tmp/never"],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        check=False,
    )
    assert result.returncode == 2
    assert "reason1" in result.stderr
    assert "reason2" in result.stderr
    assert not Path("/tmp/never").exists()


def test_serve_takes_the_request_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from cookbook_infer import serve
    from cookbook_infer.backends import transformers
    from cookbook_infer.cli import app

    started: list[serve.ServeSettings] = []
    monkeypatch.setattr(transformers, "TransformersBackend", lambda *args, **kwargs: None)
    monkeypatch.setattr(serve, "run_server", lambda backend, settings: started.append(settings))

    limits = ["--max-tokens-limit", "512", "--max-frames-limit", "64", "--min-pixels-limit", "200704"]
    model = ["serve", "--model", "nvidia/Cosmos-Reason2-8B"]
    result = CliRunner().invoke(app, [*model, *limits])
    default = CliRunner().invoke(app, model)

    assert result.exit_code == 0 and default.exit_code == 0, result.output + default.output
    assert (started[0].max_tokens_limit, started[0].max_frames_limit, started[0].min_pixels_limit) == (512, 64, 200704)
    assert started[0].vision.max_frames == 64  # the default fps sampling stops at the lower limit
    assert (started[1].max_tokens_limit, started[1].max_frames_limit, started[1].vision.max_frames) == (4096, 768, 768)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_serve_requires_the_key_of_its_api_key_file(tiny_checkpoints: TinyCheckpoints, tmp_path: Path) -> None:
    key_file, log = tmp_path / "key.txt", tmp_path / "serve.log"
    key_file.write_text("s3cret\n")
    url = f"http://127.0.0.1:{free_port()}"
    model = str(tiny_checkpoints("reason2"))
    args = [
        "serve",
        "--model",
        model,
        "--device",
        "cpu",
        "--port",
        url.rsplit(":", 1)[1],
        "--api-key-file",
        str(key_file),
    ]
    env = {name: value for name, value in os.environ.items() if name != API_KEY_ENV}
    with log.open("w") as stderr:
        server = subprocess.Popen([sys.executable, "-m", "cookbook_infer", *args], env=env, stderr=stderr)
    try:
        deadline = time.monotonic() + 120
        while not _answers(f"{url}/healthz"):
            assert server.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        keyless = httpx.get(f"{url}/v1/models", timeout=10)
        keyed = httpx.get(f"{url}/v1/models", headers={"Authorization": "Bearer s3cret"}, timeout=10)
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=60)
    assert keyless.status_code == 401
    assert keyless.json()["error"]["code"] == "invalid_api_key"
    assert keyed.status_code == 200
    assert [card["id"] for card in keyed.json()["data"]] == [model]


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def test_serve_takes_its_key_from_the_environment_before_the_file_and_refuses_an_empty_file(
    loaded: list[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from cookbook_infer import serve

    started: list[serve.ServeSettings] = []
    monkeypatch.setattr(serve, "run_server", lambda backend, settings: started.append(settings))
    key_file, empty = tmp_path / "key.txt", tmp_path / "empty.txt"
    key_file.write_text("from-file\n")
    empty.write_text("")
    model = ["serve", "--model", "nvidia/Cosmos-Reason2-8B"]

    monkeypatch.delenv(API_KEY_ENV, raising=False)
    from_file = run_cli(*model, "--api-key-file", str(key_file))
    refused = run_cli(*model, "--api-key-file", str(empty))
    monkeypatch.setenv(API_KEY_ENV, "from-env")
    from_env = run_cli(*model, "--api-key-file", str(key_file))

    assert from_file.exit_code == 0 and from_env.exit_code == 0, from_file.output + from_env.output
    assert [s.api_key.get_secret_value() if s.api_key else None for s in started] == ["from-file", "from-env"]
    assert isinstance(refused.exception, ValueError), refused.output
    assert str(refused.exception) == f"{empty}: the file is empty (it should hold the token)"
    assert len(loaded) == 2  # refused before the model was loaded


@pytest.fixture
def loaded(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The models the CLI loads (as :class:`FixedAnswers` of "4"), in order."""
    from cookbook_infer.backends import transformers

    models: list[str] = []

    def load(model_id: str, **kwargs: object) -> FixedAnswers:
        models.append(model_id)
        return FixedAnswers(model_id)

    monkeypatch.setattr(transformers, "TransformersBackend", load)
    return models


def run_cli(*args: str) -> Result:
    from cookbook_infer.cli import app

    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})


def test_a_frame_rule_on_the_command_line_replaces_the_one_of_the_config(
    loaded: list[str], synthetic_videos: VideoSet, tmp_path: Path
) -> None:
    video = synthetic_videos.good["h264_24fps"]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(VideoSample(id="a", path=str(video.path)).model_dump_json() + "\n")
    (tmp_path / "run.toml").write_text('model = "nvidia/Cosmos-Reason2-2B"\nfps = 2\n')

    def vision(*args: str) -> dict[str, object]:
        out = tmp_path / str(len(loaded)) / "p.jsonl"
        result = run_cli("run", str(manifest), "--config", str(tmp_path / "run.toml"), "--out", str(out), *args)
        assert result.exit_code == 0, result.output
        resolved: dict[str, object] = json.loads((out.parent / RESOLVED_CONFIG).read_text())["config"]["vision"]
        return resolved

    assert vision()["fps"] == 2
    by_option = vision("--nframes", "4")
    assert (by_option["fps"], by_option["nframes"]) == (None, 4)
    by_set = vision("--set", "max_strided_frames=8")
    assert (by_set["fps"], by_set["max_strided_frames"]) == (None, 8)
    option_over_set = vision("--set", "max_strided_frames=8", "--nframes", "4")
    assert (option_over_set["max_strided_frames"], option_over_set["nframes"]) == (None, 4)


def test_settings_that_do_not_go_together_are_refused_in_one_line_before_loading(
    loaded: list[str], tmp_path: Path
) -> None:
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("")
    (tmp_path / "run.toml").write_text("fps = 2\nnframes = 4\n")
    config = ["--config", str(tmp_path / "run.toml"), "--out", str(tmp_path / "p.jsonl")]
    run = run_cli("run", str(manifest), "--model", "nvidia/Cosmos-Reason2-2B", *config)
    generate = run_cli("generate", "--model", "nvidia/Cosmos-Reason2-2B", "--fps", "2", "--nframes", "4")
    limit = run_cli("serve", "--model", "nvidia/Cosmos-Reason1-7B-Reward", "--max-frames-limit", "100")

    for result, names in [(run, "fps and nframes"), (generate, "fps and nframes"), (limit, "max_frames_limit = 100")]:
        assert isinstance(result.exception, ValueError), result.output
        assert names in str(result.exception)
        assert "\n" not in str(result.exception)
    assert str(run.exception).startswith(f"{tmp_path / 'run.toml'}: ")
    assert loaded == []


@pytest.mark.parametrize("command", ["generate", "serve", "run"])
def test_an_unknown_arch_is_refused_with_the_choices_by_every_command(
    command: str, loaded: list[str], tmp_path: Path
) -> None:
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("")
    result = run_cli(command, *([str(manifest)] if command == "run" else []), "--model", "x", "--arch", "reason3")
    assert result.exit_code == 2
    assert "'reason3' is not one of 'reason1', 'reason2'" in result.output
    assert loaded == []


ASKED = {
    "question": ["--question", "Which way does the square move?"],
    "options": ["--option", "left", "--option", "right", "--option", "it stays"],
    "caption": ["--caption", "A white square slides across a dark background."],
    "rule": ["--rule", "Objects keep their shape while they move."],
}
"""Options giving what each placeholder of a task's prompt is filled with."""


def asking(task: str) -> list[str]:
    """The options ``generate`` needs for ``task``."""
    return [arg for name in sorted(placeholders(TASKS[task].values_from)) for arg in ASKED[name]]


@pytest.mark.parametrize(
    ("task", "needs"),
    [
        ("vqa", "--question"),
        ("multiple-choice", "--question and --option"),
        ("adherence", "--caption"),
        ("rule", "--rule"),
    ],
)
def test_generate_asks_for_the_options_its_task_needs_before_loading(task: str, needs: str, loaded: list[str]) -> None:
    result = run_cli("generate", "--model", "nvidia/Cosmos-Reason2-2B", "--task", task)
    assert isinstance(result.exception, ValueError), result.output
    assert str(result.exception) == f"--task {task} needs {needs}"
    assert loaded == []


@pytest.mark.parametrize(
    ("task", "given", "unused"),
    [
        ("critic", ASKED["question"], "--question"),
        ("caption", [*ASKED["caption"], *ASKED["rule"]], "--caption, --rule"),
        ("vqa", [*ASKED["question"], *ASKED["options"]], "--option"),
        ("rule", [*ASKED["rule"], *ASKED["caption"]], "--caption"),
    ],
)
def test_generate_refuses_an_option_its_task_does_not_use_before_loading(
    task: str, given: list[str], unused: str, loaded: list[str]
) -> None:
    result = run_cli("generate", "--model", "nvidia/Cosmos-Reason2-2B", "--task", task, *given)
    assert isinstance(result.exception, ValueError), result.output
    assert str(result.exception) == f"--task {task} does not use {unused}"
    assert loaded == []


@pytest.mark.parametrize(
    ("task", "given", "message"),
    [
        ("vqa", ["--question", "  "], "--question of --task vqa: labels.question is blank"),
        ("multiple-choice", [*ASKED["question"], "--option", "left"], "--question and --option of --task multiple"),
        ("rule", ["--rule", ""], "--rule of --task rule: "),
    ],
)
def test_generate_refuses_values_the_prompt_cannot_take_naming_the_option_before_loading(
    task: str, given: list[str], message: str, loaded: list[str]
) -> None:
    result = run_cli("generate", "--model", "nvidia/Cosmos-Reason2-2B", "--task", task, *given)
    assert isinstance(result.exception, ValueError), result.output
    assert str(result.exception).startswith(message)
    assert "\n" not in str(result.exception)
    assert loaded == []


def test_generate_help_says_which_tasks_each_option_is_for() -> None:
    result = run_cli("generate", "--help")
    assert result.exit_code == 0, result.output
    lines = " ".join(result.output.split())
    assert "--question <str> The question asked about each video (--task vqa, multiple-choice)." in lines
    assert "(--task multiple-choice)" in lines.partition("--option")[2]
    assert "(--task adherence)" in lines.partition("--caption <str>")[2]
    assert "(--task rule)" in lines.partition("--rule <str>")[2]


class RecordingBackend:
    """A real backend that remembers the conversations it was asked."""

    def __init__(self, backend: TransformersBackend) -> None:
        self.backend = backend
        self.model_id = backend.model_id
        self.asked: list[Conversation] = []

    def generate(
        self, conversations: Sequence[Conversation], sampling: SamplingSettings, videos: object = None
    ) -> list[Generation]:
        self.asked.extend(conversations)
        return self.backend.generate(conversations, sampling, videos)  # type: ignore[arg-type]


@pytest.mark.parametrize("task", ["vqa", "multiple-choice", "adherence", "rule"])
def test_generate_asks_a_video_what_run_asks_of_a_manifest_sample(
    task: str,
    tiny_checkpoints: TinyCheckpoints,
    synthetic_videos: VideoSet,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    from cookbook_infer.backends import transformers

    model = str(tiny_checkpoints("reason2"))
    recording = RecordingBackend(TransformersBackend(model))
    monkeypatch.setattr(transformers, "TransformersBackend", lambda *args, **kwargs: recording)
    video = synthetic_videos.good["h264_24fps"].path.resolve()
    sample = VideoSample(
        id="clip",
        path=str(video),
        caption=ASKED["caption"][1],
        labels={"question": ASKED["question"][1], "options": ASKED["options"][1::2]},
        metadata={"rule": ASKED["rule"][1]},
    )
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text(sample.model_dump_json() + "\n")
    fast = ["--model", model, "--task", task, "--nframes", "2", "--max-new-tokens", "2", "--device", "cpu"]

    generated = run_cli("generate", str(video), *fast, *asking(task))
    ran = run_cli("run", str(manifest), *fast, "--out", str(tmp_path / "p.jsonl"))

    assert generated.exit_code == 0 and ran.exit_code == 0, generated.output + ran.output
    by_generate, by_run = recording.asked
    assert by_generate == by_run
    text = by_generate.model_dump_json()
    assert all(json.dumps(value)[1:-1] in text for value in asking(task)[1::2])
    prediction = Prediction.model_validate_json(generated.stdout)
    assert prediction.task == next(read_records(tmp_path / "p.jsonl", Prediction)).task


def test_generate_refuses_a_prompt_unfit_for_its_task_before_loading(loaded: list[str]) -> None:
    result = run_cli("generate", "--model", "nvidia/Cosmos-Reason2-2B", "--prompt", "vqa")
    assert isinstance(result.exception, ValueError)
    assert "task critic needs the placeholders none" in str(result.exception)
    assert loaded == []


def test_generate_answers_every_task(loaded: list[str], synthetic_videos: VideoSet) -> None:
    video = str(synthetic_videos.good["h264_24fps"].path)
    for task in TASKS:
        result = run_cli("generate", video, "--model", "nvidia/Cosmos-Reason2-2B", "--task", task, *asking(task))
        assert result.exit_code == 0, result.output
        assert Prediction.model_validate_json(result.stdout).task.startswith(f"{task}:")  # type: ignore[union-attr]
