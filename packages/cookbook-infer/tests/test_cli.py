import os
import subprocess
import sys
from pathlib import Path

import pytest

from cookbook_infer.backends.transformers import load_pretrained
from cookbook_infer.testing import Arch


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
