"""The job runner's engine API without a cluster: factories, per-item preparation, and Ray as an optional extra."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cookbook_data.engines import RAY_EXTRA, LocalEngineConfig, RayEngineConfig, engine_options
from cookbook_data.jobs import Job, run_job
from cookbook_data.records import read_records
from cookbook_data.schemas import ItemError, Prediction
from cookbook_data.validate import ValidateConfig


def record(i: int, text: str = "") -> Prediction:
    return Prediction(sample_id=f"s{i}", model="m", raw_text=text or str(i * i))


def make_job(tmp_path: Path, **how: object) -> Job[int, Prediction]:
    return Job(
        stage="square",
        item_id=lambda i: f"s{i}",
        out=tmp_path / "records.jsonl",
        record_type=Prediction,
        errors=tmp_path / "errors.jsonl",
        batch_size=2,
        **how,  # type: ignore[arg-type]
    )


def test_a_job_takes_a_process_or_a_factory_not_both(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="got neither"):
        make_job(tmp_path)
    with pytest.raises(ValueError, match="got both"):
        make_job(tmp_path, process=lambda batch: [], factory=lambda: lambda batch: [])


def test_the_factory_is_built_once_and_only_when_there_is_work(tmp_path: Path) -> None:
    built: list[int] = []

    def factory():  # type: ignore[no-untyped-def]
        built.append(1)
        return lambda batch: [record(i) for i in batch]

    report = run_job(make_job(tmp_path, factory=factory), list(range(7)), progress=False)
    assert (report.succeeded, built) == (7, [1])
    again = run_job(make_job(tmp_path, factory=factory), list(range(7)), progress=False)
    assert (again.skipped, built) == (7, [1])  # nothing left to do: nothing built


def test_a_factory_that_fails_ends_the_job_instead_of_failing_every_item(tmp_path: Path) -> None:
    def factory():  # type: ignore[no-untyped-def]
        raise OSError("no such model")

    with pytest.raises(OSError, match="no such model"):
        run_job(make_job(tmp_path, factory=factory), [1, 2], progress=False)
    assert not (tmp_path / "errors.jsonl").exists() or not (tmp_path / "errors.jsonl").read_text()


def test_prepared_items_reach_process_and_a_failed_preparation_fails_only_its_item(tmp_path: Path) -> None:
    seen: list[list[int]] = []

    def decode(i: int) -> int:
        if i == 3:
            raise OSError("3: cannot decode")
        return i * 10

    def process(batch: list[int]) -> list[Prediction]:
        seen.append(batch)
        return [record(i // 10, f"got {i}") for i in batch]

    job = make_job(tmp_path, process=process, prepare=decode)
    report = run_job(job, [1, 2, 3, 4], progress=False)
    assert seen == [[10, 20], [40]]
    assert {r.sample_id: r.raw_text for r in read_records(job.out, Prediction)} == {
        "s1": "got 10",
        "s2": "got 20",
        "s4": "got 40",
    }
    [error] = read_records(job.errors, ItemError)
    assert (error.sample_id, error.stage, error.error_type, error.message) == (
        "s3",
        "square",
        "OSError",
        "3: cannot decode",
    )
    assert (report.succeeded, report.failed) == (3, 1)


def test_the_engine_is_a_setting_of_the_job_config(tmp_path: Path) -> None:
    manifest = tmp_path / "m.jsonl"
    assert isinstance(ValidateConfig(manifest=manifest).engine, LocalEngineConfig)
    config = ValidateConfig.model_validate({"manifest": manifest, "engine": {"kind": "ray", "address": "auto"}})
    assert config.engine == RayEngineConfig(address="auto")
    with pytest.raises(ValueError, match="actors"):
        ValidateConfig.model_validate({"manifest": manifest, "engine": {"kind": "local", "actors": 2}})
    assert engine_options(None, "ray://head:10001") == {"engine.kind": "ray", "engine.address": "ray://head:10001"}
    assert engine_options("ray", None) == {"engine.kind": "ray", "engine.address": None}
    with pytest.raises(ValueError, match="--engine ray"):
        engine_options("local", "auto")


def test_without_ray_the_ray_engine_names_the_extra_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the extra were not installed
    job = make_job(tmp_path, process=lambda batch: [record(i) for i in batch])
    with pytest.raises(ImportError, match=r"pip install 'cookbook-data\[ray\]'") as raised:
        run_job(job, [1], engine=RayEngineConfig(), progress=False)
    assert RAY_EXTRA in str(raised.value)
    assert not job.out.exists()


def test_the_command_line_and_the_job_modules_do_not_import_ray() -> None:
    code = (
        "import sys, cookbook_data.cli, cookbook_data.jobs, cookbook_data.engines, cookbook_data.validate;"
        "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(result.stdout.replace("'", '"')) == []


def test_validate_refuses_an_address_without_the_ray_engine(tmp_path: Path) -> None:
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("")
    result = subprocess.run(
        [sys.executable, "-m", "cookbook_data", "validate", str(manifest), "--engine", "local", "--address", "auto"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "--address names a Ray cluster" in result.stderr
