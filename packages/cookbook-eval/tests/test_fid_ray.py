"""FID/FVD feature extraction on the Ray engine gives the features, errors and values of the local engine."""

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cookbook_data.engines import RayEngineConfig
from cookbook_data.records import read_records
from cookbook_data.schemas import ItemError
from cookbook_data.testing import VideoSet
from cookbook_eval.fid import FIDConfig, FrechetResult, FVDConfig, VideoFeatures, compute_fid, compute_fvd

REAL = ("h264_24fps", "mpeg4_10fps", "mpeg4_8fps")
GENERATED = ("h264_portrait_15fps", "mpeg4_8fps")
BROKEN = ("truncated", "not_a_video")
RTOL = 1e-5
"""Features and values agree to this: a Ray actor runs torch on one thread per reserved CPU, this process on
all cores, so float32 sums are added in another order."""


@pytest.fixture(scope="module")
def sets(synthetic_videos: VideoSet, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A real set of 3 videos, and a generated set of 2 videos and 2 corrupt files (folders of links)."""
    root = tmp_path_factory.mktemp("fid-ray-sets")
    links = [(root / "real" / f"{name}.mp4", synthetic_videos.good[name].path) for name in REAL]
    links += [(root / "generated" / f"{name}.mp4", synthetic_videos.good[name].path) for name in GENERATED]
    links += [(root / "generated" / f"{kind}.mp4", synthetic_videos.broken[kind]) for kind in BROKEN]
    for link, target in links:
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(target)
    return root / "real", root / "generated"


def outputs(out: Path) -> dict[str, object]:
    """What a run wrote, in a form to compare across engines: records and errors by id, features by id."""
    written: dict[str, object] = {}
    for name in ("real", "generated"):
        records = {r.sample_id: r for r in read_records(out / f"features-{name}.jsonl", VideoFeatures)}
        written[f"records-{name}"] = {key: record.model_dump() for key, record in records.items()}
        written[f"features-{name}"] = {key: np.load(out / record.features) for key, record in records.items()}
        errors = (
            read_records(out / f"errors-{name}.jsonl", ItemError) if (out / f"errors-{name}.jsonl").exists() else []
        )
        written[f"errors-{name}"] = {e.sample_id: e.model_dump() for e in errors}
    return written


def assert_same_outputs(local: Path, on_ray: Path) -> None:
    expected, got = outputs(local), outputs(on_ray)
    for key in ("records-real", "records-generated", "errors-real", "errors-generated"):
        assert got[key] == expected[key], key
    for key in ("features-real", "features-generated"):
        arrays, reference = got[key], expected[key]
        assert isinstance(arrays, dict) and isinstance(reference, dict)
        assert arrays.keys() == reference.keys()
        for sample_id, array in arrays.items():
            np.testing.assert_allclose(array, reference[sample_id], rtol=RTOL, atol=RTOL)


@pytest.mark.ray
def test_fid_features_errors_and_value_are_the_same_on_both_engines(
    ray_cluster: str, sets: tuple[Path, Path], tmp_path: Path
) -> None:
    real, generated = sets
    settings = {"weights": "random", "frames_per_video": 2, "image_size": 96, "shrinkage": "ledoit-wolf"}
    local = FIDConfig(real=real, generated=generated, out=tmp_path / "local", **settings)
    on_ray = local.model_copy(update={"out": tmp_path / "ray", "engine": RayEngineConfig(actors=1)})

    expected = compute_fid(local, progress=False)
    result = compute_fid(on_ray, progress=False)

    assert_same_outputs(local.out, on_ray.out)
    errors = outputs(on_ray.out)["errors-generated"]
    assert isinstance(errors, dict) and sorted(errors) == [f"{kind}.mp4" for kind in sorted(BROKEN)]
    assert {error["error_type"] for error in errors.values()} == {"undecodable"}
    assert result.value == pytest.approx(expected.value, rel=RTOL)
    measured: dict[str, Any] = {"value": True, "real": {"shrinkage"}, "generated": {"shrinkage"}}  # within RTOL
    assert result.model_dump(exclude=measured) == expected.model_dump(exclude=measured)
    assert result.real.shrinkage == pytest.approx(expected.real.shrinkage, rel=RTOL)
    assert (result.real.used, result.generated.used, result.generated.failed) == (3, 2, 2)
    resolved = json.loads((on_ray.out / "config.resolved.json").read_text())["config"]
    assert resolved["engine"] == RayEngineConfig(actors=1).model_dump()

    cached = sorted(on_ray.out.glob("features/*/*.npy"))
    stamps = [path.stat().st_mtime_ns for path in cached]
    again = compute_fid(on_ray, progress=False)  # resumes: only the corrupt files are tried again
    assert again.value == result.value
    assert [path.stat().st_mtime_ns for path in cached] == stamps
    assert len(list(read_records(on_ray.out / "features-real.jsonl", VideoFeatures))) == len(REAL)


@pytest.mark.ray
def test_fvd_on_ray_through_the_command_line(ray_cluster: str, sets: tuple[Path, Path], tmp_path: Path) -> None:
    real, generated = sets
    settings = {"weights": "random", "clip_length": 8, "image_size": 64, "shrinkage": "ledoit-wolf"}
    local = FVDConfig(real=real, generated=generated, out=tmp_path / "local", **settings)
    expected = compute_fvd(local, progress=False)

    out = tmp_path / "ray"
    args = ["fvd", "--real", str(real), "--generated", str(generated), "--out", str(out), "--weights", "random"]
    args += ["--clip-length", "8", "--image-size", "64", "--shrinkage", "ledoit-wolf", "--json"]
    args += ["--engine", "ray", "--address", ray_cluster, "--set", "engine.actors=1"]
    run = subprocess.run([sys.executable, "-m", "cookbook_eval", *args], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr[-3000:]

    result = FrechetResult.model_validate_json((out / "fvd.json").read_text())
    assert FrechetResult.model_validate_json(run.stdout) == result  # --json prints the result alone
    assert result.value == pytest.approx(expected.value, rel=RTOL)
    assert (result.real.used, result.generated.used, result.generated.failures) == (3, 2, {"undecodable": 2})
    assert_same_outputs(local.out, out)
    resolved = json.loads((out / "config.resolved.json").read_text())["config"]
    assert resolved["engine"]["address"] == ray_cluster


def test_an_output_folder_the_extractor_cannot_write_fails_each_video_with_its_reason(
    sets: tuple[Path, Path], tmp_path: Path
) -> None:
    real, generated = sets
    out = tmp_path / "run"
    (out / "features").mkdir(parents=True)
    (out / "features" / "generated").write_text("a file where the folder should be")
    settings = {"weights": "random", "clip_length": 8, "image_size": 64, "shrinkage": "ledoit-wolf"}
    config = FVDConfig(real=real, generated=generated, out=out, **settings)
    with pytest.raises(ValueError, match=r"generated set .* 0 of 4 videos"):
        compute_fvd(config, progress=False)
    errors = {e.sample_id: e for e in read_records(out / "errors-generated.jsonl", ItemError)}
    unwritable = {key: error for key, error in errors.items() if error.error_type == "output_not_writable"}
    assert sorted(unwritable) == [f"{name}.mp4" for name in sorted(GENERATED)]
    for error in unwritable.values():
        assert "every node" in error.message
        assert error.details == {"folder": str((out / "features" / "generated").absolute())}
