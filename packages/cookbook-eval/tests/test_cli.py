import subprocess
import sys
from importlib import metadata


def test_version_names_the_package_and_the_stack() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cookbook_eval", "version"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"cookbook-eval {metadata.version('cookbook-eval')}"
    assert any(line.strip().startswith("pydantic 2.") for line in lines[1:])
