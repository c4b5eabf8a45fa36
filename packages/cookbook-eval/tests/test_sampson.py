from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import pytest
from numpy.typing import NDArray
from pydantic import ValidationError

from cookbook_data.records import read_records
from cookbook_data.schemas import ItemError
from cookbook_data.testing import SyntheticVideo, VideoSet, write_video
from cookbook_eval.sampson import (
    MatchingConfig,
    SampsonConfig,
    SampsonRecord,
    SampsonSummary,
    camera_matrix,
    compute_sampson,
    cross_view_sampson,
    fundamental_from_motion,
    pair_sampson,
    sampson_distance,
    score_correspondences,
    temporal_sampson,
)

WIDTH, HEIGHT, FOCAL = 480, 360, 450.0
INTRINSICS = (FOCAL, FOCAL, WIDTH / 2, HEIGHT / 2)
K = camera_matrix(INTRINSICS)


def _rotation_y(degrees: float) -> NDArray[np.float64]:
    a = np.deg2rad(degrees)
    return np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])


def _rotation_x(degrees: float) -> NDArray[np.float64]:
    a = np.deg2rad(degrees)
    return np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])


def _texture(rng: np.random.Generator, size: int) -> NDArray[np.uint8]:
    """Smooth random texture at three scales: blob-like structure SIFT finds and tells apart."""
    total = np.zeros((size, size))
    for cell, weight in ((3, 0.35), (7, 0.4), (17, 0.25)):
        n = size // cell + 2
        coarse = cv2.resize(rng.random((n, n)), (n * cell, n * cell), interpolation=cv2.INTER_CUBIC)
        total += weight * coarse[:size, :size]
    total = (total - total.min()) / (total.max() - total.min())
    texture: NDArray[np.uint8] = (total * 235 + 10).astype(np.uint8)
    return texture


@dataclass(frozen=True)
class _Plane:
    centre: NDArray[np.float64]
    u: NDArray[np.float64]
    """World step of one texture pixel along the texture's x axis."""
    v: NDArray[np.float64]
    texture: NDArray[np.uint8]


@lru_cache(maxsize=4)
def _planes(seed: int, planar: bool) -> tuple[_Plane, ...]:
    """A rigid scene of textured planes: a far wall and, unless ``planar``, three tilted panels in front."""
    rng = np.random.default_rng(seed)
    specs = [((0.0, 0.0, 12.0), np.eye(3), 30.0)]
    if not planar:
        specs += [
            ((-1.6, -0.8, 5.0), _rotation_y(20) @ _rotation_x(-10), 2.2),
            ((1.5, 0.6, 7.0), _rotation_y(-25), 3.0),
            ((0.2, 1.1, 4.0), _rotation_x(30), 1.6),
        ]
    planes = []
    for centre, rotation, size in specs:
        step = centre[2] / FOCAL  # one texture pixel ~ one image pixel
        pixels = int(size / step)
        planes.append(_Plane(np.array(centre), rotation[:, 0] * step, rotation[:, 1] * step, _texture(rng, pixels)))
    return tuple(planes)


def render(
    rotation: NDArray[np.float64] | None = None,
    translation: tuple[float, float, float] = (0.0, 0.0, 0.0),
    seed: int = 0,
    planar: bool = False,
) -> NDArray[np.uint8]:
    """The scene seen by a pinhole camera K where a world point X is at R X + t: each plane is its texture
    warped by the homography it induces (exact projective geometry), painted far to near."""
    r = np.eye(3) if rotation is None else rotation
    t = np.asarray(translation, dtype=np.float64)
    image = np.zeros((HEIGHT, WIDTH), np.uint8)
    planes = sorted(_planes(seed, planar), key=lambda plane: -(r @ plane.centre + t)[2])
    for plane in planes:
        n = plane.texture.shape[0]
        origin = plane.centre - (plane.u + plane.v) * n / 2
        homography = K @ np.column_stack([r @ plane.u, r @ plane.v, r @ origin + t])
        warped = cv2.warpPerspective(plane.texture, homography, (WIDTH, HEIGHT), flags=cv2.INTER_LINEAR)
        ones = np.ones_like(plane.texture)
        mask = cv2.warpPerspective(ones, homography, (WIDTH, HEIGHT), flags=cv2.INTER_NEAREST).astype(bool)
        image[mask] = warped[mask]
    rgb: NDArray[np.uint8] = np.repeat(image[..., None], 3, axis=2)
    return rgb


def wavy(image: NDArray[np.uint8], amplitude: float = 3.0, wavelength: float = 150.0) -> NDArray[np.uint8]:
    """A non-rigid warp: every pixel displaced by a few pixels along a sinusoid in both directions."""
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    map_x = x + amplitude * np.sin(2 * np.pi * y / wavelength)
    map_y = y + amplitude * np.sin(2 * np.pi * x / wavelength)
    return np.asarray(cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR), dtype=np.uint8)


MOTION = (_rotation_y(1.0), (-0.4, -0.05, 0.1))
"""A second camera: turned 1 degree and moved 0.4 m sideways (30 px more disparity near than far)."""


def _pose(index: int) -> tuple[NDArray[np.float64], tuple[float, float, float]]:
    """A camera moving sideways and forward while turning slowly."""
    return _rotation_y(0.3 * index), (-0.12 * index, 0.0, 0.08 * index)


# ---------------------------------------------------------------------------------------------- geometry core


def _projections(seed: int = 0) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    rng = np.random.default_rng(seed)
    points = np.column_stack([rng.uniform(-3, 3, 300), rng.uniform(-2, 2, 300), rng.uniform(4, 14, 300)])
    rotation, translation = MOTION
    first = points @ K.T
    second = (points @ rotation.T + np.asarray(translation)) @ K.T
    fundamental = fundamental_from_motion(K, K, rotation, translation)
    return fundamental, first[:, :2] / first[:, 2:], second[:, :2] / second[:, 2:]


def test_sampson_distance_is_zero_for_true_correspondences_and_matches_opencv() -> None:
    fundamental, x1, x2 = _projections()
    assert sampson_distance(fundamental, x1, x2).max() < 1e-9
    noisy = x2 + np.random.default_rng(1).normal(0, 0.5, x2.shape)
    ours = sampson_distance(fundamental, x1, noisy)
    reference = [
        cv2.sampsonDistance(np.append(a, 1.0).reshape(3, 1), np.append(b, 1.0).reshape(3, 1), fundamental)
        for a, b in zip(x1, noisy, strict=True)
    ]
    np.testing.assert_allclose(ours**2, reference, rtol=1e-9)
    np.testing.assert_allclose(sampson_distance(100 * fundamental, x1, noisy), ours, rtol=1e-10)  # scale-free
    np.testing.assert_allclose(sampson_distance(fundamental.T, noisy, x1), ours, rtol=1e-10)  # symmetric


def test_homogeneous_points_are_scaled_to_pixels_and_degenerate_input_is_refused() -> None:
    fundamental, x1, x2 = _projections()
    noisy = x2 + np.random.default_rng(2).normal(0, 0.5, x2.shape)
    pixels = sampson_distance(fundamental, x1, noisy)
    weights = np.linspace(0.5, 3.0, len(x1))[:, None]
    scaled = sampson_distance(fundamental, np.hstack([x1, np.ones_like(weights)]) * weights, noisy)
    np.testing.assert_allclose(scaled, pixels, rtol=1e-10)
    with pytest.raises(ValueError, match="at infinity"):
        sampson_distance(fundamental, np.array([[1.0, 2.0, 0.0]]), noisy[:1])
    with pytest.raises(ValueError, match="fundamental matrix is zero"):
        sampson_distance(np.zeros((3, 3)), x1, noisy)


def test_sampson_distance_of_a_vertical_offset_in_rectified_stereo() -> None:
    # Cameras side by side: epipolar lines are image rows, and moving a point off its row by d pixels gives a
    # Sampson distance of d / sqrt(2) (the correction is shared between both images).
    fundamental = fundamental_from_motion(K, K, np.eye(3), (-0.5, 0.0, 0.0))
    x1 = np.array([[100.0, 200.0], [400.0, 50.0]])
    x2 = x1 + np.array([[-30.0, 2.0], [-10.0, -0.5]])
    np.testing.assert_allclose(sampson_distance(fundamental, x1, x2), [2 / np.sqrt(2), 0.5 / np.sqrt(2)], rtol=1e-12)


def test_the_core_scores_known_correspondences() -> None:
    _, x1, x2 = _projections()
    config = MatchingConfig(intrinsics=INTRINSICS)
    pair, distances = score_correspondences(x1, x2, config)
    assert pair.degenerate is None and pair.median_px is not None
    assert pair.median_px < 1e-3 and distances.shape == (300,)
    assert pair.essential_sv_ratio is not None and pair.essential_sv_ratio > 0.999
    noisy, _ = score_correspondences(x1, x2 + np.random.default_rng(2).normal(0, 0.3, x2.shape), config)
    assert noisy.median_px is not None and 0.05 < noisy.median_px < 0.4
    # A smooth non-rigid displacement of every point: no single F explains them, the median rises and most
    # matches fall out of F's inliers.
    bent = x2 + 4.0 * np.column_stack([np.sin(x2[:, 1] / 30.0), np.cos(x2[:, 0] / 30.0)])
    broken, _ = score_correspondences(x1, bent, config)
    assert broken.median_px is not None and broken.median_px > 5 * (noisy.median_px or 0)
    assert broken.inliers is not None and broken.inliers < 0.5 * broken.matches


def test_the_core_reports_degenerate_pairs_with_a_reason() -> None:
    _, x1, x2 = _projections()
    few, distances = score_correspondences(x1[:10], x2[:10])
    assert few.degenerate == "too_few_matches" and few.median_px is None and distances.size == 0
    still, _ = score_correspondences(x1, x1 + 0.1)
    assert still.degenerate == "no_motion" and still.median_px is None and "0.141 px" in (still.detail or "")
    rotated = np.column_stack([x1, np.ones(len(x1))]) @ (K @ _rotation_y(3.0) @ np.linalg.inv(K)).T
    pure_rotation, _ = score_correspondences(x1, rotated[:, :2] / rotated[:, 2:])
    assert pure_rotation.degenerate == "no_parallax" and pure_rotation.median_px is None


# ---------------------------------------------------------------------------------------------- images


def test_consistent_views_have_sub_pixel_error_and_a_warped_view_does_not() -> None:
    first, second = render(), render(*MOTION)
    config = MatchingConfig(intrinsics=INTRINSICS)
    consistent = pair_sampson(first, second, config)
    assert consistent.degenerate is None and consistent.median_px is not None
    assert consistent.median_px < 0.2
    assert consistent.matches > 500 and consistent.parallax_px is not None and consistent.parallax_px > 5
    assert consistent.essential_sv_ratio is not None and consistent.essential_sv_ratio > 0.99
    warped = pair_sampson(first, wavy(second), config)
    assert warped.median_px is not None and warped.median_px > 0.8
    assert warped.median_px > 5 * consistent.median_px


def test_orb_works_too() -> None:
    config = MatchingConfig(detector="orb")
    consistent = pair_sampson(render(), render(*MOTION), config)
    warped = pair_sampson(render(), wavy(render(*MOTION)), config)
    assert consistent.median_px is not None and warped.median_px is not None
    assert consistent.median_px < 0.6 < warped.median_px


def test_degenerate_image_pairs_are_reported_not_scored_zero() -> None:
    blank = np.full((HEIGHT, WIDTH, 3), 128, np.uint8)
    assert pair_sampson(blank, blank).degenerate == "too_few_matches"
    unrelated = pair_sampson(render(seed=0), render(seed=7))
    assert unrelated.degenerate == "too_few_matches" and unrelated.median_px is None
    still = pair_sampson(render(), render())
    assert still.degenerate == "no_motion"
    plane = pair_sampson(render(planar=True), render(*MOTION, planar=True))
    assert plane.degenerate == "no_parallax" and plane.median_px is None
    assert plane.matches > 100  # plenty of matches: the reason is the geometry, not the matching


def test_temporal_mode_scores_consecutive_frames() -> None:
    frames = [render(*_pose(i)) for i in range(4)]
    clip = temporal_sampson(frames)
    assert clip.metric == "TSE" and len(clip.pairs) == 3 and clip.scored_pairs == 3
    assert [(pair.first, pair.second) for pair in clip.pairs] == [(0, 1), (1, 2), (2, 3)]
    assert clip.median_px is not None and clip.median_px < 0.2
    frames[2] = wavy(frames[2])
    bent = temporal_sampson(frames, frame_indices=[0, 10, 20, 30])
    assert [(pair.first, pair.second) for pair in bent.pairs] == [(0, 10), (10, 20), (20, 30)]
    steps = bent.steps
    assert steps[0] is not None and steps[1] is not None and steps[2] is not None
    assert steps[0] < 0.2 and steps[1] > 0.8 and steps[2] > 0.8  # both pairs touching the warped frame
    still = temporal_sampson([frames[0]] * 3)
    assert still.median_px is None and still.degenerate_pairs == {"no_motion": 2}
    assert still.reason == "all 2 pairs degenerate: no_motion (2)"


def test_cross_view_mode_pools_views_at_each_time() -> None:
    rig = [(np.eye(3), (0.0, 0.0, 0.0)), (_rotation_y(-2.0), (-0.5, 0.0, 0.0)), (_rotation_y(2.0), (0.4, 0.1, 0.0))]
    views = [[render(r, (t[0] - 0.1 * step, t[1], t[2])) for step in range(2)] for r, t in rig]
    clip = cross_view_sampson(views, frame_indices=[0, 8])
    assert clip.metric == "CSE" and len(clip.pairs) == 6  # 3 view pairs x 2 times
    assert {(p.first, p.second, p.time) for p in clip.pairs} == {
        (i, j, t) for i, j in ((0, 1), (0, 2), (1, 2)) for t in (0, 8)
    }
    assert clip.median_px is not None and clip.median_px < 0.2
    views[2] = [wavy(frame) for frame in views[2]]
    bent = cross_view_sampson(views)
    assert bent.median_px is not None and bent.median_px > 3 * clip.median_px
    with pytest.raises(ValueError, match="at least 2 views"):
        cross_view_sampson(views[:1])


# ---------------------------------------------------------------------------------------------- the job


@dataclass(frozen=True)
class _SceneVideo(SyntheticVideo):
    """A video of the textured scene seen by a moving camera (or a still one), encoded for real."""

    offset: float = 0.0
    still: bool = False
    warp: bool = False

    def render(self, index: int) -> NDArray[np.uint8]:
        rotation, (x, y, z) = _pose(0 if self.still else index)
        frame = render(rotation, (x + self.offset, y, z))
        return wavy(frame) if self.warp else frame


def _write(path: Path, **options: object) -> Path:
    return write_video(_SceneVideo(path, 8, 4, WIDTH, HEIGHT, "h264", **options))  # type: ignore[arg-type]


def test_compute_sampson_over_videos(synthetic_videos: VideoSet, tmp_path: Path) -> None:
    folder = tmp_path / "videos"
    _write(folder / "moving.mp4")
    _write(folder / "still.mp4", still=True)
    (folder / "broken.mp4").symlink_to(synthetic_videos.broken["truncated"])
    out = tmp_path / "out"
    summary = compute_sampson(SampsonConfig(inputs=[folder], out=out, nframes=4, workers=1), progress=False)
    assert summary.metric == "TSE" and summary.clips == 3
    assert summary.scored_clips == 1 and summary.degenerate_clips == 1 and summary.failed_clips == 1
    assert summary.failures == {"undecodable": 1}
    assert summary.median_px is not None and summary.median_px < 0.5
    assert summary.degenerate_pairs == {"no_motion": 3}
    records = {r.sample_id: r for r in read_records(out / "sampson.jsonl", SampsonRecord)}
    assert records["still.mp4"].result.median_px is None and "no_motion" in (records["still.mp4"].result.reason or "")
    assert records["moving.mp4"].frame_indices == [0, 1, 2, 3]
    assert [e.sample_id for e in read_records(out / "errors.jsonl", ItemError)] == ["broken.mp4"]
    assert SampsonSummary.model_validate_json((out / "sampson.json").read_text()) == summary
    assert json.loads((out / "config.resolved.json").read_text())["config"]["detector"] == "sift"


def test_compute_sampson_across_views(tmp_path: Path) -> None:
    scenes = tmp_path / "scenes"
    _write(scenes / "rigid" / "cam0.mp4")
    _write(scenes / "rigid" / "cam1.mp4", offset=-0.5)
    _write(scenes / "bent" / "cam0.mp4")
    _write(scenes / "bent" / "cam1.mp4", offset=-0.5, warp=True)
    out = tmp_path / "out"
    config = SampsonConfig(inputs=[scenes], out=out, mode="cross_view", nframes=2, workers=1)
    summary = compute_sampson(config, progress=False)
    assert summary.metric == "CSE" and summary.scored_clips == 2
    records = {r.sample_id: r for r in read_records(out / "sampson.jsonl", SampsonRecord)}
    rigid, bent = records["scenes/rigid"].result.median_px, records["scenes/bent"].result.median_px
    assert rigid is not None and bent is not None and rigid < 0.5 and bent > 3 * rigid
    assert len(records["scenes/rigid"].paths) == 2


def test_inputs_holding_the_same_file_names_are_all_scored(tmp_path: Path) -> None:
    for run in ("runA", "runB"):
        _write(tmp_path / run / "clip.mp4")
    out = tmp_path / "out"
    config = SampsonConfig(inputs=[tmp_path / "runA", tmp_path / "runB"], out=out, nframes=2, workers=1)
    summary = compute_sampson(config, progress=False)
    assert (summary.clips, summary.scored_clips, summary.failed_clips) == (2, 2, 0)
    assert sorted(r.sample_id for r in read_records(out / "sampson.jsonl", SampsonRecord)) == [
        "runA/clip.mp4",
        "runB/clip.mp4",
    ]
    # The same input twice: its clips are repeats, counted as failed, not dropped from the summary.
    twice = config.model_copy(update={"inputs": [tmp_path / "runA", tmp_path / "runA"], "out": tmp_path / "twice"})
    repeated = compute_sampson(twice, progress=False)
    assert (repeated.clips, repeated.scored_clips, repeated.failed_clips) == (2, 1, 1)
    assert repeated.failures == {"DuplicateId": 1}


def test_scene_folders_of_the_same_name_are_told_apart_by_their_parents(tmp_path: Path) -> None:
    for parent in ("a", "b"):
        _write(tmp_path / parent / "rig" / "cam0.mp4")
        _write(tmp_path / parent / "rig" / "cam1.mp4", offset=-0.5)
    out = tmp_path / "out"
    inputs = [tmp_path / "a" / "rig", tmp_path / "b" / "rig"]
    summary = compute_sampson(
        SampsonConfig(inputs=inputs, out=out, mode="cross_view", nframes=2, workers=1), progress=False
    )
    assert (summary.clips, summary.scored_clips, summary.failed_clips) == (2, 2, 0)
    assert [r.sample_id for r in read_records(out / "sampson.jsonl", SampsonRecord)] == ["a/rig", "b/rig"]


def test_a_rerun_with_other_settings_is_refused_not_mixed(tmp_path: Path) -> None:
    video = _write(tmp_path / "videos" / "clip.mp4")
    out = tmp_path / "out"
    config = SampsonConfig(inputs=[video.parent], out=out, nframes=2, workers=1)
    first = compute_sampson(config, progress=False)
    assert compute_sampson(config.model_copy(update={"workers": 2}), progress=False) == first  # resumes
    for change in ({"detector": "orb"}, {"nframes": 4}, {"ratio": 0.6}):
        with pytest.raises(ValueError, match="other settings"):
            compute_sampson(config.model_copy(update=change), progress=False)
    _write(tmp_path / "elsewhere" / "clip.mp4", still=True)  # the same id, another file
    with pytest.raises(ValueError, match="other files"):
        compute_sampson(config.model_copy(update={"inputs": [tmp_path / "elsewhere"]}), progress=False)
    assert len(list(read_records(out / "sampson.jsonl", SampsonRecord))) == 1


def test_config_checks() -> None:
    with pytest.raises(ValidationError, match="either"):
        SampsonConfig(inputs=[Path("a")], out=Path("b"), fps=2.0, nframes=4)
    with pytest.raises(ValidationError):
        SampsonConfig(inputs=[], out=Path("b"))
    with pytest.raises(ValidationError):
        MatchingConfig(detector="surf")
