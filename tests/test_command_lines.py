"""Every package answers on its console script and on `python -m`, in the same shape."""

import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

PACKAGES = ["cookbook-data", "cookbook-infer", "cookbook-reward", "cookbook-train", "cookbook-eval"]
ENV = {**os.environ, "COLUMNS": "200"}


@pytest.mark.parametrize("package", PACKAGES)
def test_console_script_and_module_give_the_same_help(package: str) -> None:
    script = Path(sys.executable).parent / package
    by_script = subprocess.run([str(script), "--help"], capture_output=True, text=True, env=ENV, check=False)
    by_module = subprocess.run(
        [sys.executable, "-m", package.replace("-", "_"), "--help"],
        capture_output=True,
        text=True,
        env=ENV,
        check=False,
    )
    assert by_script.returncode == by_module.returncode == 0, by_script.stderr + by_module.stderr
    assert f"Usage: {package} " in by_script.stdout
    assert by_script.stdout.replace(package, "X") == by_module.stdout.replace(package, "X")
    assert "version" in by_script.stdout


@pytest.mark.parametrize("package", PACKAGES)
def test_every_package_depends_on_cookbook_data(package: str) -> None:
    if package == "cookbook-data":
        return
    requires = [r.split(";")[0].strip() for r in metadata.requires(package) or []]
    assert "cookbook-data" in requires


ALLOWED = {
    "cookbook-data": set(),
    "cookbook-infer": {"cookbook-data"},
    "cookbook-eval": {"cookbook-data"},
    "cookbook-reward": {"cookbook-data", "cookbook-infer"},
    "cookbook-train": {"cookbook-data", "cookbook-infer", "cookbook-reward"},
}
"""Floors of ARCHITECTURE.md: each package uses only floors below it (reward uses infer's backends, train uses
infer's model inputs and reward's pure reward functions); eval and infer, on one floor, never meet."""
IMPORT = re.compile(r"^\s*(?:from|import)\s+(cookbook_\w+)", re.MULTILINE)


@pytest.mark.parametrize("package", PACKAGES)
def test_dependencies_and_imports_only_point_down_the_floors(package: str) -> None:
    requires = {re.split(r"[\[;<>=!~ ]", r, maxsplit=1)[0] for r in metadata.requires(package) or []}
    siblings = {r for r in requires if r.startswith("cookbook-")}
    assert siblings <= ALLOWED[package], f"{package} depends on {siblings - ALLOWED[package]}"

    own = package.replace("-", "_")
    allowed_imports = {own} | {name.replace("-", "_") for name in ALLOWED[package]}
    root = Path(__file__).parents[1] / "packages" / package
    for path in root.rglob("*.py"):
        for imported in IMPORT.findall(path.read_text()):
            assert imported in allowed_imports, f"{path} imports {imported}"
