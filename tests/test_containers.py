"""The container files hold together without Docker: one Dockerfile per package, all of one shape, and a bake
target per package. `nox -s containers` lints them and repeats their installs."""

import fnmatch
import json
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = sorted(path.parent.name for path in ROOT.glob("packages/*/pyproject.toml"))


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments left out."""
    lines = dockerfile.read_text().replace("\\\n", " ").splitlines()
    pairs = [line.strip().split(maxsplit=1) for line in lines if line.strip() and not line.lstrip().startswith("#")]
    return [(pair[0].upper(), pair[1] if len(pair) > 1 else "") for pair in pairs]


def final_stage(dockerfile: Path) -> list[tuple[str, str]]:
    steps = instructions(dockerfile)
    last_from = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last_from:]


def uv_syncs(dockerfile: Path) -> list[list[str]]:
    """The options of each `uv sync` step, without the two that tell the steps apart."""
    runs = [args for keyword, args in instructions(dockerfile) if keyword == "RUN" and "uv sync" in args]
    return [
        [word for word in run.split("uv sync", 1)[1].split() if word not in ("--no-install-workspace", "--no-editable")]
        for run in runs
    ]


def dockerfile(package: str) -> Path:
    return ROOT / "containers" / package / "Dockerfile"


def test_there_is_one_dockerfile_per_package() -> None:
    assert len(PACKAGES) == 5
    assert sorted(path.parent.name for path in ROOT.glob("containers/*/Dockerfile")) == PACKAGES


def test_all_images_use_one_uv_and_one_cuda_base_matching_torch() -> None:
    uv_images, bases = set(), set()
    for package in PACKAGES:
        steps = instructions(dockerfile(package))
        uv_images |= {args.split()[0] for keyword, args in steps if keyword == "COPY" and "/uv /uvx /bin/" in args}
        bases |= {
            args.split("=", 1)[1] for keyword, args in steps if keyword == "ARG" and args.startswith("CUDA_IMAGE=")
        }
        assert [args for keyword, args in steps if keyword == "FROM"] == [
            "${CUDA_IMAGE} AS builder",
            "${CUDA_IMAGE} AS runtime",
        ]
    assert len(uv_images) == 1
    assert re.fullmatch(r"--from=ghcr\.io/astral-sh/uv:\d+\.\d+\.\d+", uv_images.pop())
    assert len(bases) == 1
    base = re.fullmatch(r"nvidia/cuda:(\d+\.\d+)\.\d+-[a-z-]+-ubuntu24\.04", bases.pop())
    assert base is not None
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    cudart = {entry["version"] for entry in lock["package"] if entry["name"] == "nvidia-cuda-runtime-cu12"}
    assert {".".join(version.split(".")[:2]) for version in cudart} == {base[1]}


@pytest.mark.parametrize("package", PACKAGES)
def test_the_image_runs_its_package_as_a_non_root_user(package: str) -> None:
    stage = final_stage(dockerfile(package))
    assert ("ENTRYPOINT", json.dumps([package])) in stage
    assert ("CMD", '["--help"]') in stage
    users = [args for keyword, args in stage if keyword == "USER"]
    assert users == ["1000:1000"]
    assert "HF_HOME=/cache/huggingface" in " ".join(args for keyword, args in stage if keyword == "ENV")
    assert ("VOLUME", "/cache") in stage
    assert not [args for keyword, args in stage if keyword in ("COPY", "ADD") and "--from=builder" not in args]


@pytest.mark.parametrize("package", PACKAGES)
def test_dependencies_come_from_the_lock_before_the_sources(package: str) -> None:
    steps = instructions(dockerfile(package))
    runs = [args for keyword, args in steps if keyword == "RUN" and "uv sync" in args]
    assert len(runs) == 2
    assert "--locked --no-install-workspace --no-dev" in runs[0]
    assert "--locked --no-dev --no-editable" in runs[1]
    mounts = set(re.findall(r"--mount=type=bind,source=(\S+),target=\1", runs[0]))
    assert mounts == {"uv.lock", "pyproject.toml"} | {f"packages/{member}/pyproject.toml" for member in PACKAGES}
    first, second = uv_syncs(dockerfile(package))
    assert first == second
    assert first[first.index("--package") + 1] == package
    assert all("--mount=type=cache,target=/root/.cache/uv" in run for run in runs)


def test_infer_reward_and_eval_install_the_ray_extra_and_reward_checks_its_health() -> None:
    for package in ("cookbook-infer", "cookbook-reward", "cookbook-eval"):
        assert "--package cookbook-data --extra ray" in " ".join(uv_syncs(dockerfile(package))[0])
    for package in ("cookbook-data", "cookbook-train"):
        assert "--extra" not in uv_syncs(dockerfile(package))[0]
    reward = final_stage(dockerfile("cookbook-reward"))
    assert ("EXPOSE", "8100") in reward
    (health,) = [args for keyword, args in reward if keyword == "HEALTHCHECK"]
    assert '["cookbook-reward", "healthcheck"' in health
    env = " ".join(args for keyword, args in reward if keyword == "ENV")
    assert "COOKBOOK_REWARD_ADDRESS_FILE=/tmp/" in env  # a path uid 1000 may write
    assert ("EXPOSE", "8000") in final_stage(dockerfile("cookbook-infer"))


def test_bake_has_one_target_per_package_and_builds_all_by_default() -> None:
    bake = (ROOT / "docker-bake.hcl").read_text()
    targets = [name for name in re.findall(r'^target "([^"]+)"', bake, flags=re.MULTILINE) if not name.startswith("_")]
    assert sorted(targets) == PACKAGES
    for package in PACKAGES:
        block = bake.split(f'target "{package}" {{', 1)[1].split("\n}", 1)[0]
        assert f'dockerfile = "containers/{package}/Dockerfile"' in block
    (default,) = re.findall(r'group "default" \{\s*targets = \[([^\]]*)\]', bake)
    assert sorted(json.loads(f"[{default}]")) == PACKAGES
    assert re.search(r'variable "REGISTRY"', bake)
    assert re.search(r'variable "TAG"', bake)


def test_dockerignore_keeps_environments_and_data_out_but_not_the_sources() -> None:
    patterns = [
        line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if line.strip() and line[0] != "#"
    ]
    for kept_out in (".venv", ".git", ".nox", "data", "runs", "outputs", "benchmarks/results"):
        assert kept_out in patterns
    needed = ["uv.lock", "pyproject.toml", "packages", *(f"packages/{p}/pyproject.toml" for p in PACKAGES)]
    needed += [
        str(path.relative_to(ROOT))
        for path in ROOT.glob("packages/*/src/**/*")
        if path.is_file() and "__pycache__" not in path.parts
    ]
    for path in needed:
        assert not [pattern for pattern in patterns if fnmatch.fnmatch(path, pattern)], path
