"""The Ray engine on a local cluster: the same records as the local engine, nothing lost and nothing written
twice when an actor, an item or the driver dies."""

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from functools import partial
from pathlib import Path
from types import ModuleType

import pytest

from cookbook_data.engines import RayEngineConfig
from cookbook_data.jobs import RESOLVED_CONFIG, Job, JobReport, run_job
from cookbook_data.records import read_records
from cookbook_data.schemas import ItemError, Prediction, Strict, VideoSample
from cookbook_data.testing import VideoSet
from cookbook_data.validate import ValidateConfig, validate_manifest

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def cluster(ray_cluster: str) -> str:
    from ray import cloudpickle

    by_value: Callable[[ModuleType], None] = cloudpickle.register_pickle_by_value
    by_value(sys.modules[__name__])  # the workers cannot import a test module: its functions travel by value
    return ray_cluster


class Settings(Strict):
    threshold: int = 3


def square(batch: list[int]) -> list[Prediction]:
    for item in batch:
        if item % 7 == 3:
            raise ValueError(f"item {item} is bad")
    return [Prediction(sample_id=f"s{i}", model="m", raw_text=str(i * i)) for i in batch]


def build_square() -> Callable[[list[int]], list[Prediction]]:
    return square


def decode(item: int) -> int:
    if item % 5 == 4:
        raise OSError(f"item {item}: cannot decode")
    return item


def item_id(item: int) -> str:
    return f"s{item}"


def make_job(out: Path, process: Callable[..., list[Prediction]] | None = None, **how: object) -> Job[int, Prediction]:
    return Job(
        stage="square",
        factory=None if process is not None else build_square,
        process=process,
        item_id=item_id,
        out=out / "records.jsonl",
        record_type=Prediction,
        errors=out / "errors.jsonl",
        batch_size=3,
        **how,  # type: ignore[arg-type]
    )


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def ids(path: Path) -> Counter[str]:
    return Counter(r.sample_id for r in read_records(path, Prediction))


def counts(report: JobReport) -> tuple[int, int, int, int]:
    return report.total, report.succeeded, report.failed, report.skipped


def test_the_ray_engine_writes_what_the_local_engine_writes(cluster: str, tmp_path: Path) -> None:
    items = [*range(20), 5]  # 3, 10, 17 fail in the batch function, 4, 9, 14, 19 in decoding, 5 is repeated
    local = make_job(tmp_path / "local", prepare=decode)
    on_ray = make_job(tmp_path / "ray", prepare=decode)
    local_report = run_job(local, items, config=Settings(), progress=False)
    ray_report = run_job(on_ray, items, config=Settings(), progress=False, engine=RayEngineConfig(actors=1))

    assert sorted(lines(on_ray.out)) == sorted(lines(local.out))  # the same records, whole lines
    assert sorted(lines(on_ray.errors)) == sorted(lines(local.errors))  # the same ItemErrors
    assert counts(ray_report) == counts(local_report) == (21, 13, 8, 0)
    assert ray_report.failures_by_type == {"ValueError": 3, "OSError": 4, "DuplicateId": 1}
    resolved = [json.loads((job.out.parent / RESOLVED_CONFIG).read_text()) for job in (local, on_ray)]
    assert resolved[0] == resolved[1]

    rerun = run_job(make_job(tmp_path / "ray", prepare=decode), [*range(23)], progress=False, engine=RayEngineConfig())
    assert (rerun.skipped, rerun.succeeded, rerun.failed) == (13, 3, 7)  # s20-s22 are new; the 7 failures fail again
    assert set(ids(on_ray.out).values()) == {1}


def dies_once(flag: Path, batch: list[int]) -> list[Prediction]:
    """Kills its own process on the first batch any actor gets (the flag file is claimed once)."""
    try:
        flag.unlink()
    except FileNotFoundError:
        pass
    else:
        os._exit(1)
    return [Prediction(sample_id=f"s{i}", model="m", raw_text=str(os.getpid())) for i in batch]


def test_a_killed_actor_is_restarted_and_its_items_come_out_once(cluster: str, tmp_path: Path) -> None:
    flag = tmp_path / "die-once"
    flag.write_text("")
    job = make_job(tmp_path, process=partial(dies_once, flag))
    report = run_job(job, list(range(24)), progress=False, engine=RayEngineConfig(actors=2, max_task_retries=2))
    assert not flag.exists()  # an actor did die
    assert ids(job.out) == Counter({f"s{i}": 1 for i in range(24)})
    assert lines(job.errors) == []
    assert counts(report) == (24, 24, 0, 0)


def kills_on_13(batch: list[int]) -> list[Prediction]:
    if 13 in batch:
        os._exit(1)
    return [Prediction(sample_id=f"s{i}", model="m", raw_text=str(i)) for i in batch]


def test_an_item_that_kills_every_worker_is_an_error_and_the_rest_come_out_once(cluster: str, tmp_path: Path) -> None:
    job = make_job(tmp_path, process=kills_on_13)
    report = run_job(job, list(range(18)), progress=False, engine=RayEngineConfig(actors=2, max_task_retries=0))
    assert ids(job.out) == Counter({f"s{i}": 1 for i in range(18) if i != 13})
    [error] = read_records(job.errors, ItemError)
    assert (error.sample_id, error.stage, error.error_type) == ("s13", "square", "WorkerDied")
    assert counts(report) == (18, 17, 1, 0)


DRIVER = """
import sys, time
from pathlib import Path
from cookbook_data.engines import RayEngineConfig
from cookbook_data.jobs import Job, run_job
from cookbook_data.schemas import Prediction

def slow(batch):
    time.sleep(0.4)
    return [Prediction(sample_id=f"s{i}", model="m", raw_text="first run") for i in batch]

out = Path(sys.argv[1])
job = Job(stage="square", process=slow, item_id=lambda i: f"s{i}", out=out / "records.jsonl",
          record_type=Prediction, errors=out / "errors.jsonl", batch_size=2)
run_job(job, list(range(40)), progress=False, engine=RayEngineConfig(address=sys.argv[2], actors=1))
"""


def test_a_killed_driver_resumes_without_duplicates_or_losses(cluster: str, tmp_path: Path) -> None:
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, str(tmp_path), cluster], stderr=subprocess.PIPE)
    records = tmp_path / "records.jsonl"
    deadline = time.monotonic() + 180
    while len(lines(records)) < 6:
        assert driver.poll() is None, driver.stderr.read().decode()[-3000:] if driver.stderr else ""
        assert time.monotonic() < deadline, "the driver wrote nothing in time"
        time.sleep(0.1)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    written = ids(records)
    assert 6 <= len(written) < 40

    report = run_job(make_job(tmp_path, process=square), list(range(40)), progress=False, engine=RayEngineConfig())
    assert report.skipped == len(written)
    found = ids(records) + Counter(e.sample_id for e in read_records(tmp_path / "errors.jsonl", ItemError))
    assert found == Counter({f"s{i}": 1 for i in range(40)})  # every item once: a record or an error


def test_validation_on_ray_quarantines_what_the_local_engine_quarantines(
    cluster: str, tmp_path: Path, synthetic_videos: VideoSet
) -> None:
    good, broken = synthetic_videos.good, synthetic_videos.broken
    rows = [VideoSample(id=name, path=str(video.path)).model_dump_json() for name, video in good.items()]
    rows += [VideoSample(id=kind, path=str(path)).model_dump_json() for kind, path in broken.items()]
    rows += [json.dumps({"id": "absent", "path": str(tmp_path / "absent.mp4")}), "{not json", rows[0]]
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("\n".join(rows) + "\n")
    local = ValidateConfig(manifest=manifest, out=tmp_path / "local" / "valid.jsonl")
    local = local.model_copy(update={"quarantine": tmp_path / "local" / "quarantine.jsonl"})
    on_ray = ValidateConfig.model_validate(
        {
            "manifest": manifest,
            "out": tmp_path / "ray" / "valid.jsonl",
            "quarantine": tmp_path / "ray" / "quarantine.jsonl",
            "engine": {"kind": "ray"},
        }
    )
    local_report = validate_manifest(local, progress=False)
    ray_report = validate_manifest(on_ray, progress=False)
    assert sorted(lines(on_ray.valid_path())) == sorted(lines(local.valid_path()))
    assert sorted(lines(on_ray.quarantine_path())) == sorted(lines(local.quarantine_path()))
    assert ray_report.failures_by_type == local_report.failures_by_type
    assert ray_report.failures_by_type["undecodable"] == len(broken)
    assert ray_report.succeeded == len(good)


def test_the_pool_has_one_actor_per_gpu_for_models_and_one_per_cpu_for_cpu_work() -> None:
    from cookbook_data._ray_engine import _Plan

    cluster = {"CPU": 64.0, "GPU": 8.0}
    model = _Plan.of(RayEngineConfig(), cluster, prepare=False, gpu=True)
    assert (model.actors, model.gpus_per_actor, model.cpus_per_actor) == (8, 1.0, 1.0)
    halves = _Plan.of(RayEngineConfig(gpus_per_actor=0.5, cpus_per_actor=4), cluster, prepare=False, gpu=True)
    assert (halves.actors, halves.gpus_per_actor) == (16, 0.5)
    checks = _Plan.of(RayEngineConfig(), cluster, prepare=False, gpu=False)
    assert (checks.actors, checks.gpus_per_actor) == (64, 0.0)
    decoding = _Plan.of(RayEngineConfig(), {"CPU": 2.0}, prepare=True, gpu=True)
    assert (decoding.actors, decoding.gpus_per_actor) == (1, 0.0)  # one CPU left for the decoding tasks
    pool = _Plan.of(RayEngineConfig(actors=2, max_actors=6), cluster, prepare=False, gpu=True)
    assert (pool.actors, pool.max_actors) == (2, 6)
    with pytest.raises(ValueError, match="no room for a decoding task"):
        _Plan.of(RayEngineConfig(actors=2), {"CPU": 2.0}, prepare=True, gpu=False)
    shared = _Plan.of(RayEngineConfig(actors=2, cpus_per_actor=0.5), {"CPU": 2.0}, prepare=True, gpu=False)
    assert (shared.actors, shared.cpus_per_actor) == (2, 0.5)
