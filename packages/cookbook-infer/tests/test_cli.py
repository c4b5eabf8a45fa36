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
