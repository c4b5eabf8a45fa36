"""Sampson error: how well matched points between two images fit one rigid epipolar geometry.

For each image pair: keypoints and descriptors (OpenCV SIFT by default; ORB, or AKAZE where the installed
OpenCV has it), nearest-neighbour matching with Lowe's ratio test, a fundamental matrix F estimated robustly
with ``cv2.findFundamentalMat(..., cv2.USAC_MAGSAC)``, then for every match the square root of the Sampson
distance in pixels (computed here, in numpy)::

    (x2ᵀ F x1)² / ((F x1)₁² + (F x1)₂² + (Fᵀ x2)₁² + (Fᵀ x2)₂²)

The pair's error is the median over **all** ratio-test matches, not only F's inliers: F fits the consistent
part of the scene, and what does not fit it is what the metric is about; the median keeps the few false
matches the ratio test lets through from deciding the value. The median over the inliers, the inlier count
and the motion and parallax are recorded as well.

Two modes over a clip:

- **temporal** (TSE): consecutive sampled frames of one video (a moving camera), one value per frame pair;
- **cross-view** (CSE): views of one scene at the same time (synchronised videos of a camera rig), every
  pair of views at a time step pooled into one value per time step.

A clip's value is the median of its per-pair (TSE) or per-time (CSE) values. A pair where F is not
determined is **degenerate**, reported with its reason and left out of the medians, never scored 0:
``too_few_matches`` (fewer than ``min_matches``), ``no_motion`` (median displacement below
``min_motion_px``: a still camera), ``no_parallax`` (90% of the matches follow one homography within
``min_parallax_px``: a planar scene or a rotating camera, where any F through the homography fits),
``estimation_failed`` (MAGSAC found no matrix). A clip with no scored pair has no value and says why.

Camera intrinsics are optional. Given (fx, fy, cx, cy), each pair also reports the ratio of the two
non-zero singular values of E = Kᵀ F K, 1 for a true essential matrix (a check that F is consistent with a
calibrated camera; lower means F needs another focal length or is inconsistent).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Literal, Self

import numpy as np
from numpy.typing import ArrayLike, NDArray
from pydantic import Field, model_validator

from cookbook_data.download import VIDEO_SUFFIXES
from cookbook_data.jobs import ItemFailure, Job, run_job
from cookbook_data.records import read_records
from cookbook_data.schemas import Record, Strict, VideoSample
from cookbook_eval import _outputs

if TYPE_CHECKING:
    from cookbook_data.video import VisionSettings

Detector = Literal["sift", "orb", "akaze"]
Mode = Literal["temporal", "cross_view"]
Degeneracy = Literal["too_few_matches", "no_motion", "no_parallax", "estimation_failed"]
PARALLAX_QUANTILE = 0.9
"""Share of the matches one homography must explain for a pair to count as without parallax."""


class MatchingConfig(Strict):
    """How one image pair is matched and scored."""

    detector: Detector = Field(default="sift", description="Keypoints and descriptors: sift, orb or akaze.")
    max_keypoints: int = Field(default=4000, ge=8, description="Strongest keypoints kept per image.")
    ratio: float = Field(default=0.75, gt=0, lt=1, description="Lowe's ratio test: best / second-best distance.")
    threshold_px: float = Field(default=1.0, gt=0, description="MAGSAC threshold (pixels) for F's inliers.")
    confidence: float = Field(default=0.999, gt=0, lt=1, description="MAGSAC confidence.")
    max_iterations: int = Field(default=10000, ge=1, description="MAGSAC iterations at most.")
    min_matches: int = Field(default=20, ge=8, description="Fewer matches make a pair degenerate.")
    min_motion_px: float = Field(
        default=1.0, ge=0, description="Median displacement below this (pixels) makes a pair degenerate (no motion)."
    )
    min_parallax_px: float = Field(
        default=1.0,
        ge=0,
        description="If 90% of matches follow one homography within this (pixels), the pair is degenerate.",
    )
    intrinsics: tuple[float, float, float, float] | None = Field(
        default=None, description="Camera fx, fy, cx, cy in pixels; when given, E = KᵀFK is checked too."
    )


class SampsonConfig(MatchingConfig):
    """What `cookbook-eval sampson` scores and where it writes."""

    inputs: list[Path] = Field(
        min_length=1,
        description=(
            "temporal: video files, folders of videos or VideoSample JSONL manifests (one clip per video). "
            "cross_view: scene folders holding one video per view (synchronised, same length), or folders of "
            "such scene folders."
        ),
    )
    out: Path = Field(description="Folder for sampson.jsonl (one record per clip), errors.jsonl and sampson.json.")
    mode: Mode = Field(default="temporal", description="temporal (TSE, consecutive frames) or cross_view (CSE).")
    fps: float | None = Field(default=None, gt=0, description="Frames per second to sample (default 4 unless nframes).")
    nframes: int | None = Field(default=None, ge=2, description="Exact number of frames per clip (even).")
    max_frames: int = Field(default=64, ge=2, description="Most frames per clip when sampling by fps.")
    workers: int = Field(default=2, ge=1, description="Clips scored in parallel.")

    @model_validator(mode="after")
    def _fps_or_nframes(self) -> Self:
        if self.fps is not None and self.nframes is not None:
            raise ValueError("give either `fps` or `nframes`, not both")
        return self


class PairSampson(Strict):
    """One image pair's Sampson error, or why it has none."""

    first: int = Field(description="temporal: frame index of the first image; cross_view: its view index.")
    second: int = Field(description="temporal: frame index of the second image; cross_view: its view index.")
    time: int | None = Field(default=None, description="cross_view: frame index both views were taken at.")
    matches: int = Field(description="Matches left by the ratio test.")
    inliers: int | None = Field(default=None, description="Matches MAGSAC kept as inliers of F.")
    median_px: float | None = Field(default=None, description="Median √Sampson distance over all matches (pixels).")
    inlier_median_px: float | None = Field(default=None, description="Median √Sampson distance over F's inliers.")
    motion_px: float | None = Field(default=None, description="Median displacement of the matches (pixels).")
    parallax_px: float | None = Field(
        default=None, description="90th percentile of the matches' distance from the best homography (pixels)."
    )
    essential_sv_ratio: float | None = Field(
        default=None, description="σ2/σ1 of KᵀFK (1 for a true essential matrix); only with intrinsics."
    )
    degenerate: Degeneracy | None = Field(default=None, description="Why F is not determined, if it is not.")
    detail: str | None = Field(default=None, description="The degeneracy in words, with the numbers.")


class ClipSampson(Strict):
    """A clip's Sampson error: per pair, per step and overall."""

    metric: Literal["TSE", "CSE"] = Field(description="Temporal (consecutive frames) or cross-view.")
    median_px: float | None = Field(description="Median of the step values; None when no pair could be scored.")
    steps: list[float | None] = Field(
        description="TSE: each consecutive pair's median; CSE: per time step, the median of all view pairs' "
        "distances pooled. None where every pair of the step is degenerate."
    )
    pairs: list[PairSampson] = Field(description="Every pair scored or found degenerate.")
    scored_pairs: int = Field(description="Pairs with a value.")
    degenerate_pairs: dict[str, int] = Field(default_factory=dict, description="Degenerate pairs by reason.")
    reason: str | None = Field(default=None, description="Why the clip has no value, when it has none.")


class SampsonRecord(Record):
    """One clip's result, a line of sampson.jsonl."""

    sample_id: str = Field(
        description="Clip id: the video (temporal) or scene (cross_view), after its input's name with several inputs."
    )
    paths: list[str] = Field(description="The video file, or one per view.")
    frame_indices: list[int] = Field(description="Frames sampled from each video.")
    result: ClipSampson = Field(description="The Sampson error of the clip.")
    fingerprint: str = Field(description="Hash of the mode, frame sampling and matching settings it was made with.")


class SampsonSummary(Record):
    """All clips of a run together, written to sampson.json."""

    metric: Literal["TSE", "CSE"] = Field(description="Temporal or cross-view Sampson error.")
    median_px: float | None = Field(description="Median over clips of the clip values (pixels).")
    mean_px: float | None = Field(description="Mean over clips of the clip values (pixels).")
    clips: int = Field(description="Clips listed.")
    scored_clips: int = Field(description="Clips with a value.")
    degenerate_clips: int = Field(description="Clips read but with every pair degenerate.")
    failed_clips: int = Field(description="Clips that could not be read (see errors.jsonl).")
    failures: dict[str, int] = Field(default_factory=dict, description="Failed clips by reason.")
    degenerate_pairs: dict[str, int] = Field(default_factory=dict, description="Degenerate pairs by reason.")
    detector: str = Field(description="Keypoint detector used.")
    intrinsics: tuple[float, float, float, float] | None = Field(default=None, description="fx, fy, cx, cy given.")


# ----------------------------------------------------------------------------------------------------------
# Geometry


def _homogeneous(points: ArrayLike) -> NDArray[np.float64]:
    array = np.asarray(points, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] not in (2, 3):
        raise ValueError(f"points must have shape (N, 2) or (N, 3), got {array.shape}")
    if array.shape[1] == 2:
        return np.hstack([array, np.ones((array.shape[0], 1))])
    scale = array[:, 2:]
    if np.any(scale == 0):
        raise ValueError("homogeneous points with last coordinate 0 lie at infinity and have no pixel position")
    return array / scale  # the formula's distances are in pixels only for points scaled to w = 1


def sampson_distance(fundamental: ArrayLike, points1: ArrayLike, points2: ArrayLike) -> NDArray[np.float64]:
    """√Sampson distance in pixels of each correspondence x1 <-> x2 under F (x2ᵀ F x1 = 0 for a perfect one).

    ``points`` are (N, 2) pixel coordinates, or (N, 3) homogeneous ones (scaled to last coordinate 1 here).
    """
    f = np.asarray(fundamental, dtype=np.float64)
    if f.shape != (3, 3):
        raise ValueError(f"a fundamental matrix is 3x3, got {f.shape}")
    if not np.any(f):
        raise ValueError("the fundamental matrix is zero: it constrains nothing, so no distance is defined")
    x1, x2 = _homogeneous(points1), _homogeneous(points2)
    if x1.shape != x2.shape:
        raise ValueError(f"point sets differ in shape: {x1.shape} and {x2.shape}")
    f_x1 = x1 @ f.T  # rows: F x1
    ft_x2 = x2 @ f  # rows: Fᵀ x2
    algebraic = np.einsum("ij,ij->i", x2, f_x1)
    gradient = f_x1[:, 0] ** 2 + f_x1[:, 1] ** 2 + ft_x2[:, 0] ** 2 + ft_x2[:, 1] ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        squared = np.where(gradient > 0, algebraic**2 / gradient, np.where(algebraic == 0, 0.0, np.inf))
    distances: NDArray[np.float64] = np.sqrt(squared)
    return distances


def camera_matrix(intrinsics: Sequence[float]) -> NDArray[np.float64]:
    """K from (fx, fy, cx, cy)."""
    fx, fy, cx, cy = intrinsics
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def fundamental_from_motion(
    k1: ArrayLike, k2: ArrayLike, rotation: ArrayLike, translation: ArrayLike
) -> NDArray[np.float64]:
    """F of two cameras where a point X in the first camera's frame is R X + t in the second's:
    F = K2⁻ᵀ [t]ₓ R K1⁻¹ (normalised to unit Frobenius norm)."""
    t = np.asarray(translation, dtype=np.float64).reshape(3)
    skew = np.array([[0.0, -t[2], t[1]], [t[2], 0.0, -t[0]], [-t[1], t[0], 0.0]])
    k1_inverse = np.linalg.inv(np.asarray(k1, dtype=np.float64))
    k2_inverse = np.linalg.inv(np.asarray(k2, dtype=np.float64))
    f = k2_inverse.T @ skew @ np.asarray(rotation, dtype=np.float64) @ k1_inverse
    return np.asarray(f / np.linalg.norm(f), dtype=np.float64)


def _homography_residual(points1: NDArray[np.float64], points2: NDArray[np.float64], threshold: float) -> float:
    """90th percentile of the matches' transfer error under a RANSAC homography (inf when none is found)."""
    import cv2

    homography, _ = cv2.findHomography(points1, points2, cv2.RANSAC, threshold)
    if homography is None or homography.shape != (3, 3):
        return math.inf
    mapped = _homogeneous(points1) @ homography.T
    with np.errstate(divide="ignore", invalid="ignore"):
        projected = mapped[:, :2] / mapped[:, 2:3]
    residual = np.linalg.norm(projected - points2, axis=1)
    residual = np.where(np.isfinite(residual), residual, np.inf)
    return float(np.quantile(residual, PARALLAX_QUANTILE))


def _median(values: NDArray[np.float64]) -> float:
    return float(np.median(values))


def score_correspondences(
    points1: ArrayLike,
    points2: ArrayLike,
    config: MatchingConfig | None = None,
    *,
    first: int = 0,
    second: int = 1,
    time: int | None = None,
) -> tuple[PairSampson, NDArray[np.float64]]:
    """The geometric core: degeneracy checks, F by MAGSAC, and the √Sampson distance of every
    correspondence. Returns the pair's record and the distances (empty when degenerate)."""
    import cv2

    config = config or MatchingConfig()
    p1 = np.ascontiguousarray(np.asarray(points1, dtype=np.float64).reshape(-1, 2))
    p2 = np.ascontiguousarray(np.asarray(points2, dtype=np.float64).reshape(-1, 2))
    if p1.shape != p2.shape:
        raise ValueError(f"point sets differ in shape: {p1.shape} and {p2.shape}")
    n = p1.shape[0]
    empty = np.zeros(0)
    base: dict[str, Any] = {"first": first, "second": second, "time": time, "matches": n}

    def degenerate(kind: Degeneracy, detail: str, **extra: Any) -> tuple[PairSampson, NDArray[np.float64]]:
        return PairSampson(**base, **extra, degenerate=kind, detail=detail), empty

    if n < config.min_matches:
        return degenerate("too_few_matches", f"{n} matches, fewer than {config.min_matches}")
    motion = _median(np.linalg.norm(p2 - p1, axis=1))
    if motion < config.min_motion_px:
        return degenerate("no_motion", f"median motion {motion:.3f} px < {config.min_motion_px} px", motion_px=motion)
    parallax = _homography_residual(p1, p2, config.min_parallax_px)
    measured = {"motion_px": motion, "parallax_px": parallax if math.isfinite(parallax) else None}
    if parallax < config.min_parallax_px:
        return degenerate(
            "no_parallax",
            f"{PARALLAX_QUANTILE:.0%} of matches within {parallax:.3f} px of one homography "
            f"(< {config.min_parallax_px} px): planar scene or pure rotation",
            **measured,
        )
    fundamental, mask = cv2.findFundamentalMat(
        p1, p2, cv2.USAC_MAGSAC, config.threshold_px, config.confidence, config.max_iterations
    )
    if fundamental is None or fundamental.shape != (3, 3) or not np.isfinite(fundamental).all():
        return degenerate("estimation_failed", "MAGSAC found no fundamental matrix", **measured)
    distances = sampson_distance(fundamental, p1, p2)
    inliers = mask.reshape(-1).astype(bool) if mask is not None else np.ones(n, dtype=bool)
    essential_ratio = None
    if config.intrinsics is not None:
        k = camera_matrix(config.intrinsics)
        singular = np.linalg.svd(k.T @ fundamental @ k, compute_uv=False)
        essential_ratio = float(singular[1] / singular[0]) if singular[0] > 0 else None
    pair = PairSampson(
        **base,
        **measured,
        inliers=int(inliers.sum()),
        median_px=_median(distances),
        inlier_median_px=_median(distances[inliers]) if inliers.any() else None,
        essential_sv_ratio=essential_ratio,
    )
    return pair, distances


# ----------------------------------------------------------------------------------------------------------
# Images


@dataclass(frozen=True)
class Keypoints:
    """Keypoint positions (pixels) and their descriptors in one image."""

    points: NDArray[np.float64]
    descriptors: NDArray[Any] | None
    binary: bool


def _detector(config: MatchingConfig) -> tuple[Any, bool]:
    import cv2

    if config.detector == "sift":
        return cv2.SIFT_create(nfeatures=config.max_keypoints), False  # type: ignore[attr-defined]
    if config.detector == "orb":
        return cv2.ORB_create(nfeatures=config.max_keypoints), True  # type: ignore[attr-defined]
    if not hasattr(cv2, "AKAZE_create"):
        raise ValueError(f"OpenCV {cv2.__version__} has no AKAZE in its main module; use detector sift or orb")
    return cv2.AKAZE_create(), True


def detect(image: ArrayLike, config: MatchingConfig | None = None) -> Keypoints:
    """Keypoints of an (H, W, 3) RGB or (H, W) grey uint8 image, the strongest ``max_keypoints`` kept."""
    import cv2

    config = config or MatchingConfig()
    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise TypeError(f"expected a uint8 image, got {array.dtype}")
    grey = cv2.cvtColor(array, cv2.COLOR_RGB2GRAY) if array.ndim == 3 else array
    detector, binary = _detector(config)
    keypoints, descriptors = detector.detectAndCompute(np.ascontiguousarray(grey), None)
    if descriptors is None or not keypoints:
        return Keypoints(np.zeros((0, 2)), None, binary)
    if len(keypoints) > config.max_keypoints:
        order = np.argsort([-kp.response for kp in keypoints])[: config.max_keypoints]
        keypoints = [keypoints[i] for i in order]
        descriptors = descriptors[order]
    points = np.array([kp.pt for kp in keypoints], dtype=np.float64)
    return Keypoints(points, descriptors, binary)


_MATCH_ROWS = 2048
"""Descriptors of the first image compared at once (bounds the distance matrix to 2048 x keypoints)."""


def _nearest_two_l2(
    first: NDArray[Any], second: NDArray[Any], ratio: float
) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """Exhaustive L2 nearest neighbours through one matrix product per block (||a||² + ||b||² - 2 a·b, float32):
    the same matches as OpenCV's brute-force matcher, several times faster for SIFT's 128-d descriptors."""
    a = np.asarray(first, dtype=np.float32)
    b = np.asarray(second, dtype=np.float32)
    b_norms = np.einsum("ij,ij->i", b, b)
    queries, trains = [], []
    for start in range(0, a.shape[0], _MATCH_ROWS):
        block = a[start : start + _MATCH_ROWS]
        rows = np.arange(block.shape[0])
        partial = b_norms[None, :] - 2.0 * (block @ b.T)  # squared distances less ||a||², constant per row
        best = np.argmin(partial, axis=1)
        best_partial = partial[rows, best].copy()
        partial[rows, best] = np.inf
        second_partial = partial.min(axis=1)
        a_norms = np.einsum("ij,ij->i", block, block)
        best_distance = np.sqrt(np.maximum(best_partial + a_norms, 0.0))
        second_distance = np.sqrt(np.maximum(second_partial + a_norms, 0.0))
        keep = best_distance < ratio * second_distance
        queries.append(rows[keep] + start)
        trains.append(best[keep])
    return np.concatenate(queries), np.concatenate(trains)


def match(first: Keypoints, second: Keypoints, ratio: float = 0.75) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Corresponding points (N, 2) x 2: each keypoint of ``first`` with its nearest neighbour in ``second``
    (exhaustive search), kept when nearer than ``ratio`` times the second nearest (Lowe's ratio test)."""
    import cv2

    none = (np.zeros((0, 2)), np.zeros((0, 2)))
    if first.descriptors is None or second.descriptors is None or len(first.points) < 1 or len(second.points) < 2:
        return none
    if not first.binary:
        query, train = _nearest_two_l2(first.descriptors, second.descriptors, ratio)
    else:
        matcher = cv2.BFMatcher(cv2.NORM_HAMMING)
        kept = [
            (best.queryIdx, best.trainIdx)
            for candidates in matcher.knnMatch(first.descriptors, second.descriptors, k=2)
            if len(candidates) == 2
            for best, runner_up in [candidates]
            if best.distance < ratio * runner_up.distance
        ]
        if not kept:
            return none
        query, train = np.array(kept, dtype=np.intp).T
    return first.points[query], second.points[train]


def _score_images(
    first: Keypoints, second: Keypoints, config: MatchingConfig, i: int, j: int, time: int | None
) -> tuple[PairSampson, NDArray[np.float64]]:
    points1, points2 = match(first, second, config.ratio)
    return score_correspondences(points1, points2, config, first=i, second=j, time=time)


def pair_sampson(image1: ArrayLike, image2: ArrayLike, config: MatchingConfig | None = None) -> PairSampson:
    """The Sampson error of one image pair (uint8 RGB or grey)."""
    config = config or MatchingConfig()
    pair, _ = _score_images(detect(image1, config), detect(image2, config), config, 0, 1, None)
    return pair


def _clip(metric: Literal["TSE", "CSE"], pairs: list[PairSampson], steps: list[float | None]) -> ClipSampson:
    reasons = Counter(pair.degenerate for pair in pairs if pair.degenerate is not None)
    scored = [value for value in steps if value is not None]
    reason = None
    if not scored:
        listed = ", ".join(f"{kind} ({count})" for kind, count in reasons.most_common())
        reason = f"all {len(pairs)} pairs degenerate: {listed}" if pairs else "fewer than two images"
    return ClipSampson(
        metric=metric,
        median_px=float(np.median(scored)) if scored else None,
        steps=steps,
        pairs=pairs,
        scored_pairs=sum(1 for pair in pairs if pair.degenerate is None),
        degenerate_pairs=dict(reasons),
        reason=reason,
    )


def temporal_sampson(
    frames: Sequence[ArrayLike], config: MatchingConfig | None = None, frame_indices: Sequence[int] | None = None
) -> ClipSampson:
    """TSE of a clip: each consecutive pair of ``frames`` scored; keypoints detected once per frame."""
    config = config or MatchingConfig()
    indices = list(frame_indices) if frame_indices is not None else list(range(len(frames)))
    keypoints = [detect(frame, config) for frame in frames]
    pairs = [
        _score_images(keypoints[k], keypoints[k + 1], config, indices[k], indices[k + 1], None)[0]
        for k in range(len(frames) - 1)
    ]
    return _clip("TSE", pairs, [pair.median_px for pair in pairs])


def cross_view_sampson(
    views: Sequence[Sequence[ArrayLike]],
    config: MatchingConfig | None = None,
    frame_indices: Sequence[int] | None = None,
) -> ClipSampson:
    """CSE of a scene: ``views[v][t]`` is view v at time step t; at each step every pair of views is scored
    and the distances of all pairs are pooled into the step's median."""
    config = config or MatchingConfig()
    if len(views) < 2:
        raise ValueError(f"cross-view Sampson error needs at least 2 views, got {len(views)}")
    steps_count = len(views[0])
    if any(len(view) != steps_count for view in views):
        raise ValueError(f"views have different numbers of frames: {[len(view) for view in views]}")
    indices = list(frame_indices) if frame_indices is not None else list(range(steps_count))
    pairs: list[PairSampson] = []
    steps: list[float | None] = []
    for t in range(steps_count):
        keypoints = [detect(view[t], config) for view in views]
        pooled = []
        for i in range(len(views)):
            for j in range(i + 1, len(views)):
                pair, distances = _score_images(keypoints[i], keypoints[j], config, i, j, indices[t])
                pairs.append(pair)
                if pair.degenerate is None:
                    pooled.append(distances)
        steps.append(float(np.median(np.concatenate(pooled))) if pooled else None)
    return _clip("CSE", pairs, steps)


# ----------------------------------------------------------------------------------------------------------
# The job over videos

Clip = tuple[str, list[Path | None]]
"""A clip to score: (id, one path for temporal, one per view for cross_view)."""


def _videos_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)


def _names(inputs: Sequence[Path]) -> list[str]:
    """Each input's name, with as many of its parent folders as tell it from another input of the same name
    (``a/rig`` and ``b/rig``); an input given twice keeps one name, so its clips are reported as repeated."""
    paths = [PurePosixPath(path.absolute().as_posix()) for path in inputs]
    names = []
    for path in paths:
        depth = 1
        while depth < len(path.parts) and any(
            other != path and other.parts[-depth:] == path.parts[-depth:] for other in paths
        ):
            depth += 1
        names.append(PurePosixPath(*path.parts[-depth:]).as_posix())
    return names


def list_clips(config: SampsonConfig) -> list[Clip]:
    """The clips ``config.inputs`` name, in order, with absolute paths.

    A clip's id is the video's path inside its folder, its manifest id, or the name of the video or scene
    folder given. Ids must tell the clips of all inputs apart, since the job and the summary go by id: with
    several inputs, each id is prefixed by its input's name (``runA/clip.mp4``, ``runB/clip.mp4``), the
    input's parent folders added where two inputs have the same name. A cross_view folder of scene folders
    always names its scenes ``<folder>/<scene>``."""
    clips: list[Clip] = []
    several = len(config.inputs) > 1
    for given, name in zip(config.inputs, _names(config.inputs), strict=True):
        source = given.absolute()
        prefix = f"{name}/" if several else ""
        if config.mode == "temporal":
            if source.is_dir():
                files = sorted(p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
                clips += [(prefix + path.relative_to(source).as_posix(), [path]) for path in files]
            elif source.suffix == ".jsonl":
                for sample in read_records(source, VideoSample):
                    path = None if sample.path is None else source.parent / sample.path
                    clips.append((prefix + sample.id, [path]))
            elif source.is_file():
                clips.append((name, [source]))
            else:
                raise FileNotFoundError(f"{given}: no such video, folder or manifest")
        elif not source.is_dir():
            raise FileNotFoundError(f"{given}: cross_view inputs are scene folders (one video per view)")
        elif _videos_in(source):
            clips.append((name, [*_videos_in(source)]))
        else:
            scenes = sorted(p for p in source.iterdir() if p.is_dir() and _videos_in(p))
            clips += [(f"{name}/{scene.name}", [*_videos_in(scene)]) for scene in scenes]
    return clips


def _sampling(config: SampsonConfig) -> VisionSettings:
    """How frames are sampled from each video."""
    from cookbook_data.video import VisionSettings

    fps = config.fps if config.fps is not None or config.nframes is not None else 4.0
    return VisionSettings(fps=fps, nframes=config.nframes, min_frames=2, max_frames=config.max_frames)


def _fingerprint(config: SampsonConfig) -> str:
    """The fingerprint of what a clip's record depends on: mode, frame sampling and matching (not where the
    clips are or how many run at once)."""
    return _outputs.fingerprint(
        {
            "mode": config.mode,
            "sampling": _sampling(config).model_dump(mode="json"),
            "matching": config.model_dump(mode="json", include=set(MatchingConfig.model_fields)),
        }
    )


def _read(path: Path | None, clip_id: str, config: SampsonConfig) -> tuple[NDArray[np.uint8], list[int]]:
    from cookbook_data.video import VideoDecodeError, sample_frames

    if path is None:
        raise ItemFailure("missing_file", f"{clip_id}: the manifest row has no local path")
    if not path.is_file():
        raise ItemFailure("missing_file", f"{path}: no such file", {"path": str(path)})
    try:
        sampled = sample_frames(path, _sampling(config))
    except VideoDecodeError as error:
        raise ItemFailure("undecodable", f"{path}: {error}", {"path": str(path)}) from None
    except ValueError as error:  # fewer frames than asked for
        raise ItemFailure("too_short", f"{path}: {error}", {"path": str(path)}) from None
    return sampled.frames, sampled.frame_indices


def score_clip(clip: Clip, config: SampsonConfig) -> SampsonRecord:
    """Read one clip's frames and score them (the job's per-item function)."""
    clip_id, paths = clip
    read = [_read(path, clip_id, config) for path in paths]
    if config.mode == "temporal":
        frames, indices = read[0]
        result = temporal_sampson(list(frames), config, indices)
    else:
        if len(read) < 2:
            raise ItemFailure("too_few_views", f"{clip_id}: {len(read)} view(s), cross_view needs 2 or more")
        indices = read[0][1]
        if any(view_indices != indices for _, view_indices in read):
            raise ItemFailure(
                "views_differ",
                f"{clip_id}: views sample different frames ({[len(i) for _, i in read]} frames); "
                "cross_view needs synchronised videos of the same length and frame rate",
            )
        result = cross_view_sampson([list(frames) for frames, _ in read], config, indices)
    return SampsonRecord(
        sample_id=clip_id,
        paths=[str(path) for path in paths],
        frame_indices=indices,
        result=result,
        fingerprint=_fingerprint(config),
    )


def compute_sampson(config: SampsonConfig, *, progress: bool | None = None) -> SampsonSummary:
    """Score every clip of ``config.inputs`` into ``<out>/sampson.jsonl`` (resuming), record unreadable clips
    in ``<out>/errors.jsonl``, and write the summary to ``<out>/sampson.json``.

    Raises ValueError, before scoring anything, when ``sampson.jsonl`` holds a record of one of these clips
    made from other files or with other settings: resuming would keep it under this run's settings."""
    if config.detector == "akaze":
        _detector(config)  # fail before the job when this OpenCV lacks it
    clips = list_clips(config)
    ids = [clip_id for clip_id, _ in clips]
    paths: dict[str, list[str]] = {}
    for clip_id, clip_paths in clips:  # the job scores an id's first copy only and reports the others
        paths.setdefault(clip_id, [str(path) for path in clip_paths])
    job: Job[Clip, SampsonRecord] = Job(
        stage="sampson",
        process=lambda batch: [score_clip(clip, config) for clip in batch],
        item_id=lambda clip: clip[0],
        out=config.out / "sampson.jsonl",
        record_type=SampsonRecord,
        errors=config.out / "errors.jsonl",
        workers=config.workers,
    )
    current = _fingerprint(config)
    _outputs.refuse_stale(
        job,
        ids,
        lambda record: record.fingerprint == current and record.paths == paths[record.sample_id],
        "were made from other files or with other settings (mode, frame sampling, detector or matching)",
    )
    run_job(job, clips, config=config, progress=progress)
    finished = _outputs.read_back(job, ids)
    records = list(finished.records.values())
    values = [record.result.median_px for record in records if record.result.median_px is not None]
    pairs: Counter[str] = Counter()
    for record in records:
        pairs.update(record.result.degenerate_pairs)
    summary = SampsonSummary(
        metric="TSE" if config.mode == "temporal" else "CSE",
        median_px=float(np.median(values)) if values else None,
        mean_px=float(np.mean(values)) if values else None,
        clips=len(clips),
        scored_clips=len(values),
        degenerate_clips=len(records) - len(values),
        failed_clips=finished.failed,
        failures=finished.failures,
        degenerate_pairs=dict(pairs),
        detector=config.detector,
        intrinsics=config.intrinsics,
    )
    config.out.mkdir(parents=True, exist_ok=True)
    (config.out / "sampson.json").write_text(summary.model_dump_json(indent=2) + "\n")
    return summary
