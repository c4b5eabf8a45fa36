"""The only task runner. `nox -l` lists the sessions; `nox` alone runs the CI set.

Every session gets its own environment, filled by `uv sync --locked` from the one lock, so a package's
tests run with exactly that package's dependencies (a missing dependency fails here, not in a container).
"""

from __future__ import annotations

from pathlib import Path

import nox

nox.options.default_venv_backend = "uv"
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_external_run = True
nox.options.sessions = ["lint", "typecheck", "tests", "boundaries", "integration"]

PACKAGES = ["cookbook-data", "cookbook-infer", "cookbook-reward", "cookbook-train", "cookbook-eval"]


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


@nox.session
@nox.parametrize("package", PACKAGES)
def tests(session: nox.Session, package: str) -> None:
    """One package's unit tests, in an environment holding only that package's dependencies."""
    sync(session, "--package", package, "--group", "test")
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
