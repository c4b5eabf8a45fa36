from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray
from pydantic import ValidationError

from cookbook_data.records import read_records
from cookbook_data.schemas import ItemError, VideoSample
from cookbook_data.testing import SyntheticVideo, VideoSet, write_video
from cookbook_eval.features import ExtractorSettings, InceptionFeatures
from cookbook_eval.fid import (
    FIDConfig,
    FrechetResult,
    FVDConfig,
    VideoFeatures,
    clip_starts,
    compute_fid,
    compute_fvd,
    sample_fvd_clips,
)
from cookbook_eval.frechet import RankDeficientError

GOOD = ["h264_24fps", "h264_30fps_long", "h264_portrait_15fps", "mpeg4_10fps", "mpeg4_8fps"]


@dataclass(frozen=True)
class _Perturbed(SyntheticVideo):
    """The synthetic content with a colour cast and strong noise: a 'generated' set that is visibly off."""

    def render(self, index: int) -> NDArray[np.uint8]:
        frame = super().render(index).astype(np.int16)
        frame += np.random.default_rng(index).integers(-70, 70, frame.shape, dtype=np.int16)
        frame[..., 0] += 50
        return np.clip(frame, 0, 255).astype(np.uint8)


@dataclass
class Sets:
    real: Path
    perturbed: Path
    with_broken: Path
    with_short: Path
    manifest: Path


def _link(target: Path, link: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target)


@pytest.fixture(scope="module")
def sets(synthetic_videos: VideoSet, tmp_path_factory: pytest.TempPathFactory) -> Sets:
    root = tmp_path_factory.mktemp("fid-sets")
    for name in GOOD:
        _link(synthetic_videos.good[name].path, root / "real" / f"{name}.mp4")
    for name in GOOD[:3]:
        good = synthetic_videos.good[name]
        write_video(_Perturbed(root / "perturbed" / f"{name}.mp4", good.fps, 24, good.width, good.height, good.codec))
        _link(synthetic_videos.good[name].path, root / "with_broken" / f"{name}.mp4")
    for kind in ("truncated", "not_a_video"):
        _link(synthetic_videos.broken[kind], root / "with_broken" / f"{kind}.mp4")
    for name in GOOD:
        _link(synthetic_videos.good[name].path, root / "with_short" / f"{name}.mp4")
    write_video(SyntheticVideo(root / "with_short" / "six_frames.mp4", 8, 6, 96, 64, "h264"))
    manifest = root / "manifest.jsonl"
    rows = [VideoSample(id=f"clip-{i}", path=f"real/{name}.mp4") for i, name in enumerate(GOOD)]
    rows.append(VideoSample(id="remote-only", url="https://example.invalid/video.mp4"))
    manifest.write_text("".join(row.model_dump_json() + "\n" for row in rows))
    return Sets(root / "real", root / "perturbed", root / "with_broken", root / "with_short", manifest)


def _fid(real: Path, generated: Path, out: Path, **options: object) -> FrechetResult:
    settings: dict[str, object] = {
        "weights": "random",
        "frames_per_video": 4,
        "image_size": 96,
        "shrinkage": "ledoit-wolf",
        "workers": 1,
    }
    settings.update(options)
    return compute_fid(FIDConfig(real=real, generated=generated, out=out, **settings), progress=False)


def test_fid_is_zero_for_the_same_set_and_grows_when_perturbed(sets: Sets, tmp_path: Path) -> None:
    same = _fid(sets.real, sets.real, tmp_path / "same")
    other = _fid(sets.real, sets.perturbed, tmp_path / "other")
    assert other.value > 0
    assert same.value <= 1e-9 * other.value
    assert same.real.samples == same.generated.samples == 20  # 5 videos x 4 frames
    assert other.generated.used == 3 and other.generated.samples == 12  # unequal counts are fine
    assert other.feature_dim == 2048 and other.extractor == "inception_v3_pool3"
    assert other.weights == "random:seed=0" and not other.comparable
    assert any("random weights" in note for note in other.notes)
    assert other.protocol.model_dump()["frames_per_video"] == 4
    assert other.protocol.model_dump()["resize"] == "bilinear"  # as the published FID code: no note about it
    assert not any(note.startswith("resize") for note in other.notes)

    assert other.protocol.image_size == 96
    assert "[-1, 1]" in other.protocol.input_scaling
    assert other.real.shrinkage is not None and 0 < other.real.shrinkage <= 1
    written = FrechetResult.model_validate_json((tmp_path / "other" / "fid.json").read_text())
    assert written == other
    resolved = json.loads((tmp_path / "other" / "config.resolved.json").read_text())
    assert resolved["config"]["weights"] == "random"
    records = list(read_records(tmp_path / "other" / "features-generated.jsonl", VideoFeatures))
    assert len(records) == 3
    for record in records:
        cached = np.load(tmp_path / "other" / record.features)
        assert cached.shape == (4, 2048)
        assert record.frame_indices[0] == 0 and record.frame_indices[-1] == 23  # first to last of 24 frames


def test_an_antialiased_resize_is_recorded_as_not_the_published_protocol(sets: Sets, tmp_path: Path) -> None:
    smooth = _fid(sets.real, sets.perturbed, tmp_path / "smooth", antialias=True)
    assert smooth.protocol.model_dump()["resize"] == "bilinear, antialiased"
    assert "resize is bilinear, antialiased, published FID uses bilinear" in smooth.notes


def test_a_corrupt_video_fails_alone_and_reruns_resume(sets: Sets, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = _fid(sets.real, sets.with_broken, out)
    assert result.generated.videos == 5 and result.generated.used == 3 and result.generated.failed == 2
    assert result.generated.failures == {"undecodable": 2}
    errors = {error.sample_id: error for error in read_records(out / "errors-generated.jsonl", ItemError)}
    assert set(errors) == {"truncated.mp4", "not_a_video.mp4"}
    assert "truncated.mp4" in errors["truncated.mp4"].message
    cached = out / next(iter(read_records(out / "features-real.jsonl", VideoFeatures))).features
    stamp = cached.stat().st_mtime_ns
    again = _fid(sets.real, sets.with_broken, out)
    assert again.value == pytest.approx(result.value, rel=1e-12)
    assert cached.stat().st_mtime_ns == stamp  # resumed from the cache, not recomputed
    assert len(list(read_records(out / "features-real.jsonl", VideoFeatures))) == 5


def test_cached_features_are_not_mixed_across_protocols_or_sources(sets: Sets, tmp_path: Path) -> None:
    out = tmp_path / "run"
    _fid(sets.real, sets.real, out)
    with pytest.raises(ValueError, match="another protocol"):
        _fid(sets.real, sets.real, out, frames_per_video=2)
    with pytest.raises(ValueError, match=r"another\s+file"):
        _fid(sets.real, sets.perturbed, out)


def test_manifest_input_and_rows_without_a_file(sets: Sets, tmp_path: Path) -> None:
    result = _fid(sets.manifest, sets.real, tmp_path / "run", frames_per_video=2)
    assert result.real.videos == 6 and result.real.used == 5
    assert result.real.failures == {"missing_file": 1}


def test_a_repeated_id_counts_its_first_video_once(sets: Sets, tmp_path: Path) -> None:
    rows = [VideoSample(id=f"clip-{i}", path=f"real/{name}.mp4") for i, name in enumerate(GOOD)]
    rows.append(VideoSample(id="clip-0", path=f"real/{GOOD[1]}.mp4"))  # the same id again, another file
    repeated = sets.manifest.parent / "repeated.jsonl"
    repeated.write_text("".join(row.model_dump_json() + "\n" for row in rows))

    result = _fid(repeated, sets.real, tmp_path / "run", frames_per_video=2)
    alone = _fid(sets.real, sets.real, tmp_path / "alone", frames_per_video=2)

    assert (result.real.videos, result.real.used, result.real.samples) == (6, 5, 10)
    assert result.real.failures == {"DuplicateId": 1}
    assert result.value == pytest.approx(alone.value, abs=1e-6)  # the same five videos as the folder's


def test_too_few_frames_without_shrinkage_is_a_clear_error(sets: Sets, tmp_path: Path) -> None:
    with pytest.raises(RankDeficientError, match=r"real set .*20 samples of dimension 2048.*shrinkage"):
        _fid(sets.real, sets.perturbed, tmp_path / "run", shrinkage=None)


def test_config_checks() -> None:
    with pytest.raises(ValidationError, match="even"):
        FIDConfig(real=Path("a"), generated=Path("b"), out=Path("c"), weights="random", frames_per_video=3)
    with pytest.raises(ValidationError, match="extra"):
        FVDConfig(real=Path("a"), generated=Path("b"), out=Path("c"), weights="random", frames=3)  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="weights"):
        FIDConfig(real=Path("a"), generated=Path("b"), out=Path("c"))  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="greater than 0"):
        FIDConfig(real=Path("a"), generated=Path("b"), out=Path("c"), weights="random", shrinkage=0)


def test_only_an_extractor_off_the_cpu_asks_the_engine_for_a_gpu() -> None:
    def on(device: str | None) -> bool:
        return ExtractorSettings(InceptionFeatures, "random", device=device).wants_gpu

    assert (on(None), on("cuda"), on("cuda:1")) == (True, True, True)
    assert (on("cpu"), on("cpu:0")) == (False, False)


def test_config_modules_stay_light() -> None:
    probe = (
        "import sys, cookbook_eval.fid, cookbook_eval.sampson, cookbook_eval.frechet\n"
        "print(sorted({'torch', 'torchvision', 'cv2', 'av', 'decord'} & {m.split('.')[0] for m in sys.modules}))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_fvd_clips_are_consecutive_frames(synthetic_videos: VideoSet) -> None:
    video = synthetic_videos.good["h264_24fps"]  # 48 frames
    clips, starts, padded = sample_fvd_clips(video.path, 8, 3, "pad")
    assert starts == [0, 20, 40] and padded == 0
    assert clips.shape == (3, 8, video.height, video.width, 3)
    for clip, start in zip(clips, starts, strict=True):
        levels = [float(np.median(frame[-1, :, 0])) for frame in clip]  # last row always shows the background
        assert [SyntheticVideo.index_from_level(level) for level in levels] == [
            (start + offset) % 14 for offset in range(8)
        ]
    assert clip_starts(10, 16, 4) == [0]


def _fvd(real: Path, generated: Path, out: Path, **options: object) -> FrechetResult:
    settings: dict[str, object] = {
        "weights": "random",
        "clip_length": 8,
        "image_size": 64,
        "shrinkage": "ledoit-wolf",
        "workers": 1,
    }
    settings.update(options)
    return compute_fvd(FVDConfig(real=real, generated=generated, out=out, **settings), progress=False)


def test_fvd_end_to_end(sets: Sets, tmp_path: Path) -> None:
    same = _fvd(sets.real, sets.real, tmp_path / "same", clips_per_video=2)
    other = _fvd(sets.real, sets.perturbed, tmp_path / "other", clips_per_video=2)
    assert other.value > 0 and same.value <= 1e-9 * other.value
    assert other.feature_dim == 400 and other.extractor == "i3d_kinetics400_logits"
    assert other.real.samples == 10 and other.generated.samples == 6
    assert other.protocol.model_dump()["clip_length"] == 8
    assert any("clip_length is 8" in note for note in other.notes)
    assert not other.comparable


def test_fvd_pads_or_skips_short_videos(sets: Sets, tmp_path: Path) -> None:
    padded = _fvd(sets.real, sets.with_short, tmp_path / "pad")
    assert padded.generated.used == 6 and padded.generated.padded_videos == 1
    records = {r.sample_id: r for r in read_records(tmp_path / "pad" / "features-generated.jsonl", VideoFeatures)}
    assert records["six_frames.mp4"].padded_frames == 2
    skipped = _fvd(sets.real, sets.with_short, tmp_path / "skip", short_videos="skip")
    assert skipped.generated.used == 5 and skipped.generated.failures == {"too_short": 1}
