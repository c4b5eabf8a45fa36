"""Kinematic checks for driving-planner trajectories: would a passenger accept this motion?

A planner, or a reasoning model asked for waypoints, gives positions only. Velocity, acceleration, jerk, yaw
rate and curvature are derived from them and held against the comfort bounds of nuPlan and NAVSIM. The report
keeps every check with its worst value, where along the path it happens and by how much it passed or failed,
so a reward can be explained and not only computed.

Two ways to differentiate:

* ``finite_difference``: second-order differences (``np.gradient`` with second-order edges). Exact for a
  constant acceleration and fine with uneven time steps, but it amplifies waypoint noise into jerk.
* ``savgol``: local polynomial fits (Savitzky–Golay), the smoothing NAVSIM applies, so a model's rounding of
  waypoints does not read as jerk. It needs evenly spaced times and refuses others: resampling would invent
  the very positions being judged.

Acceleration and yaw acceleration come from one second-derivative fit, jerk and longitudinal jerk from the
first derivative of an acceleration: each quantity passes through as few smoothing stages as possible.
"""

from __future__ import annotations

import json
import tokenize
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Annotated, Literal, Self, TypeGuard

import numpy as np
import numpy.typing as npt
from pydantic import Field, ValidationError, model_validator
from scipy.signal import savgol_filter

from cookbook_data.schemas import Strict, describe_validation_error

FloatArray = npt.NDArray[np.float64]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]

MIN_POINTS = 4
"""Fewest waypoints that leave jerk and yaw acceleration (third and second derivatives) something to measure."""

WAYPOINT_COLUMNS = ("x", "y", "heading")
"""What the columns of a waypoint list or array hold, in order."""


class TrajectoryError(ValueError):
    """A trajectory that cannot be read or judged; the message names the file or setting at fault."""


class Trajectory(Strict):
    """Waypoints of one planned drive, in a flat metric frame."""

    x: list[FiniteFloat] = Field(description="Positions along the first axis, metres, one per waypoint.")
    y: list[FiniteFloat] = Field(description="Positions along the second axis, metres, one per waypoint.")
    heading: list[FiniteFloat] | None = Field(
        default=None, description="Yaw in radians per waypoint; derived from the direction of motion when absent."
    )
    t: list[FiniteFloat] | None = Field(
        default=None, description="Timestamps in seconds, strictly increasing; evenly spaced by `dt` when absent."
    )
    dt: float = Field(
        default=0.1, gt=0, allow_inf_nan=False, description="Time step in seconds when `t` is absent (10 Hz)."
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        count = len(self.x)
        for name in ("y", "heading", "t"):
            values = getattr(self, name)
            if values is not None and len(values) != count:
                raise ValueError(f"`{name}` has {len(values)} values but `x` has {count}")
        if count < MIN_POINTS:
            raise ValueError(
                f"a trajectory needs at least {MIN_POINTS} waypoints to measure jerk and yaw acceleration, got {count}"
            )
        if self.t is not None and any(later <= earlier for earlier, later in pairwise(self.t)):
            raise ValueError("`t` must be strictly increasing")
        return self

    def times(self) -> FloatArray:
        """Timestamps of the waypoints, from `t` or else from `dt`."""
        if self.t is not None:
            return np.asarray(self.t, dtype=np.float64)
        return np.arange(len(self.x), dtype=np.float64) * self.dt


class ComfortLimits(Strict):
    """Comfort bounds; defaults are nuPlan's and NAVSIM's (Alpamayo's code uses the same numbers)."""

    min_lon_acceleration: float = Field(default=-4.05, lt=0, description="Hardest braking allowed, m/s² (negative).")
    max_lon_acceleration: float = Field(default=2.40, gt=0, description="Strongest acceleration allowed, m/s².")
    max_abs_lat_acceleration: float = Field(default=4.89, gt=0, description="Largest sideways acceleration, m/s².")
    max_jerk: float = Field(default=8.37, gt=0, description="Largest magnitude of the jerk vector, m/s³.")
    max_abs_lon_jerk: float = Field(
        default=4.13, gt=0, description="Largest rate of change of longitudinal acceleration, m/s³."
    )
    max_abs_yaw_rate: float = Field(default=0.95, gt=0, description="Fastest turning allowed, rad/s.")
    max_abs_yaw_acceleration: float = Field(default=1.93, gt=0, description="Largest change of yaw rate, rad/s².")
    max_speed: float | None = Field(default=40.0, gt=0, description="Top speed, m/s; None leaves speed unchecked.")
    max_curvature: float | None = Field(
        default=0.5, gt=0, description="Tightest turn, 1/m (0.5 is a 2 m radius); None leaves curvature unchecked."
    )


class VerifierConfig(Strict):
    """How trajectories are differentiated and which limits they are held to."""

    limits: ComfortLimits = Field(default_factory=ComfortLimits, description="The bounds every check compares to.")
    derivative: Literal["finite_difference", "savgol"] = Field(
        default="savgol",
        description="`savgol` smooths as NAVSIM does and needs even time steps; `finite_difference` takes any.",
    )
    savgol_window: int = Field(
        default=15,
        ge=3,
        description=(
            "Savitzky–Golay window in waypoints, odd (1.5 s at 10 Hz). A trajectory shorter than the window is "
            "fitted with the largest odd window it holds, and by finite differences when that is too small for "
            "`savgol_order`."
        ),
    )
    savgol_order: int = Field(
        default=3,
        ge=2,
        description=(
            "Polynomial order of each fit, at least 2 so acceleration comes from one fit. Order 2 freezes the "
            "acceleration vector over the last half-window, which reads a steady turn as braking at the ends."
        ),
    )
    min_speed_for_heading: float = Field(
        default=0.5,
        ge=0,
        description=(
            "Speed in m/s below which the direction of motion is noise: the heading holds its last reliable "
            "value (unless headings are given) and curvature counts as 0."
        ),
    )

    @model_validator(mode="after")
    def _fit_is_possible(self) -> Self:
        if self.savgol_window % 2 == 0:
            raise ValueError(f"`savgol_window` must be odd, got {self.savgol_window}")
        if self.savgol_order >= self.savgol_window:
            raise ValueError(
                f"`savgol_order` ({self.savgol_order}) must be smaller than `savgol_window` ({self.savgol_window})"
            )
        return self


class CheckResult(Strict):
    """One limit held against the whole trajectory, reported at the waypoint closest to (or furthest past) it."""

    name: str = Field(description="What was checked, e.g. `lon_acceleration` or `yaw_rate`.")
    value: float = Field(description="The quantity at the worst waypoint (signed where the quantity has a sign).")
    limit: float = Field(description="The bound nearest to that value (the lower one for hard braking).")
    margin: float = Field(description="Distance inside the bound; negative by how much it was exceeded.")
    passed: bool = Field(description="Whether the quantity stayed within bounds at every waypoint.")
    worst_index: int = Field(description="Index of the waypoint with the smallest margin.")


class TrajectoryReport(Strict):
    """All checks of one trajectory and the reward they add up to."""

    checks: list[CheckResult] = Field(description="One result per checked quantity.")
    passed: bool = Field(description="Whether every check passed.")
    reward: float = Field(ge=0, le=1, description="Fraction of checks passed.")

    def check(self, name: str) -> CheckResult:
        """The result of the check called `name`."""
        for result in self.checks:
            if result.name == name:
                return result
        raise KeyError(f"no check named {name!r}; checks are {[result.name for result in self.checks]}")


@dataclass(frozen=True)
class Kinematics:
    """Derived quantities per waypoint, in SI units; what the checks look at."""

    speed: FloatArray
    heading: FloatArray
    lon_acceleration: FloatArray
    lat_acceleration: FloatArray
    jerk: FloatArray
    lon_jerk: FloatArray
    yaw_rate: FloatArray
    yaw_acceleration: FloatArray
    curvature: FloatArray


def trajectory_from_data(data: object) -> Trajectory:
    """A trajectory from decoded JSON: an object with `x`/`y`(/`heading`/`t`/`dt`) keys, a list of `[x, y]` or
    `[x, y, heading]` waypoints, or a list of `{"x": .., "y": .., "t": ..}` objects; or a batch (see
    :func:`trajectory_batch`) holding exactly one of these. A sample, a request and an answer each hold one
    trajectory, so a batch of several is refused by its size rather than by the fields it confuses."""
    batch = trajectory_batch(data)
    if batch is not None and len(batch) != 1:
        raise TrajectoryError(
            f"holds {len(batch)} trajectories where one is expected; `cookbook-reward verify-trajectory` checks "
            "each trajectory of a file"
        )
    try:
        return Trajectory.model_validate(_columns(data if batch is None else batch[0]))
    except ValidationError as error:
        raise TrajectoryError(describe_validation_error(error)) from None


def trajectory_batch(data: object) -> list[object] | None:
    """The trajectories of decoded data holding several, in order; None when it holds one trajectory.

    A batch is a list of trajectories (objects with an `x` list, or lists of waypoints; a `.npy` array of shape
    (N, T, 2|3) reads as one), an object whose only member is such a list (`{"trajectories": [...]}`, or an
    `.npz` holding one such array), or columns with a leading batch axis (`x`, `y`, `heading`, `t` of shape
    (N, T); a member without that axis, such as `t` of shape (T,) or `dt`, is shared by all N)."""
    if isinstance(data, list) and any(map(_is_trajectory, data)) and not any(map(_is_waypoint, data)):
        return list(data)  # a member that is neither (a failed plan written as null) is judged, and refused, alone
    if isinstance(data, dict) and _is_nested(data.get("x")):
        return _split_columns(data)
    if isinstance(data, dict) and len(data) == 1:
        [member] = data.values()
        return trajectory_batch(member) if isinstance(member, list) else None
    return None


def _is_trajectory(item: object) -> bool:
    """Whether a list member is a whole trajectory (columns, or a list of waypoints) rather than a waypoint."""
    return (isinstance(item, dict) and isinstance(item.get("x"), list)) or _is_nested(item)


def _is_waypoint(item: object) -> bool:
    """Whether a list member is one waypoint (``[x, y]``, ``{"x": 1.0, ...}``), making the list one trajectory."""
    if isinstance(item, dict):
        return isinstance(item.get("x"), int | float)
    return isinstance(item, list) and bool(item) and all(isinstance(value, int | float) for value in item)


def _is_nested(value: object) -> TypeGuard[list[list[object]]]:
    """A non-empty list of lists: the waypoints of one trajectory, or a column with a batch axis."""
    return isinstance(value, list) and bool(value) and all(isinstance(inner, list) for inner in value)


def _split_columns(columns: dict[str, object]) -> list[object]:
    """Columns of shape (N, T) split into N trajectories; members without the batch axis go to each."""
    batched = {name: value for name, value in columns.items() if _is_nested(value)}
    count = len(batched["x"])
    for name, value in batched.items():
        if len(value) != count:
            raise TrajectoryError(f"`{name}` holds {len(value)} trajectories but `x` holds {count}")
    return [{**columns, **{name: value[index] for name, value in batched.items()}} for index in range(count)]


def _columns(data: object) -> object:
    if isinstance(data, dict):
        return data
    if isinstance(data, list) and data and all(isinstance(point, dict) for point in data):
        names = {name for point in data for name in point}
        return {name: [point.get(name) for point in data] for name in names}
    if isinstance(data, list) and data and all(isinstance(point, list) for point in data):
        widths = {len(point) for point in data}
        if widths not in ({2}, {3}):
            raise TrajectoryError(f"waypoints must all be [x, y] or all [x, y, heading], got lengths {sorted(widths)}")
        columns = [list(column) for column in zip(*data, strict=True)]
        return dict(zip(WAYPOINT_COLUMNS, columns, strict=False))
    raise TrajectoryError("expected an object with `x` and `y` lists, or a non-empty list of waypoints")


def load_trajectory(path: Path) -> Trajectory:
    """Read a trajectory from JSON (any form :func:`trajectory_from_data` takes), a `.npy` array of shape
    (N, 2) or (N, 3) holding x, y[, heading], or a `.npz` archive with arrays named x, y[, heading, t]; a file
    holding a batch of several (see :func:`trajectory_batch`) is refused."""
    try:
        return trajectory_from_data(_read(path))
    except TrajectoryError as error:
        raise TrajectoryError(f"{path}: {error}") from None


def load_trajectories(path: Path) -> list[tuple[int | None, object]]:
    """The trajectories of a waypoint file as decoded data for :func:`trajectory_from_data`, each with its
    index in the file's batch: ``[(None, data)]`` for a file of one trajectory. Reading them apart lets a
    caller judge every trajectory of a batch and report a broken one by its index."""
    try:
        data = _read(path)
        batch = trajectory_batch(data)
    except TrajectoryError as error:
        raise TrajectoryError(f"{path}: {error}") from None
    return [(None, data)] if batch is None else list(enumerate(batch))


def _read(path: Path) -> object:
    """The decoded content of a waypoint file. Every way the file can fail to decode becomes a
    :class:`TrajectoryError`, so a caller checking many files reports this one and goes on."""
    suffix = path.suffix.lower()
    if suffix not in (".json", ".npy", ".npz"):
        raise TrajectoryError(f"unsupported file type {suffix or '(none)'!r}; use .json, .npy or .npz")
    try:
        return _read_json(path) if suffix == ".json" else _read_numpy(path)
    except OSError as error:
        raise TrajectoryError(f"cannot be read ({error.strerror or error})") from None


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as error:  # also not UTF-8, nested too deep, an integer over 4300 digits
        raise TrajectoryError(f"not valid JSON ({error})") from None


# What NumPy's readers raise on damaged bytes (found by corrupting .npy/.npz files at random): the zip, zlib
# and header parsers' own errors; RuntimeError covers a zip member in an unsupported compression method.
_DAMAGED_NUMPY = (ValueError, EOFError, RuntimeError, zipfile.BadZipFile, zlib.error, tokenize.TokenError)


def _read_numpy(path: Path) -> object:
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.ndarray):
            with loaded as archive:  # members load lazily, so an unreadable one fails here
                return {name: archive[name].tolist() for name in archive.files}
    except _DAMAGED_NUMPY as error:
        raise TrajectoryError(f"not a readable NumPy file ({error})") from None
    return _waypoint_array(loaded)


def _waypoint_array(array: FloatArray) -> object:
    """The array as the JSON form it mirrors: a list of ``[x, y(, heading)]`` waypoints, or a list of those."""
    if array.ndim not in (2, 3) or array.shape[-1] not in (2, 3):
        raise TrajectoryError(
            f"expected an array of shape (N, 2) or (N, 3), or (B, N, 2|3) for B trajectories, got {array.shape}"
        )
    return array.tolist()


Differentiate = Callable[[FloatArray, int], FloatArray]


def _differentiator(times: FloatArray, config: VerifierConfig) -> Differentiate:
    """A function taking (values, order) to the order-th time derivative, by the configured method."""
    if config.derivative == "finite_difference":

        def finite_difference(values: FloatArray, order: int) -> FloatArray:
            for _ in range(order):
                values = np.gradient(values, times, edge_order=2)
            return values

        return finite_difference

    window = _window_for(config, len(times))
    if window is None:
        return _differentiator(times, config.model_copy(update={"derivative": "finite_difference"}))
    steps = np.diff(times)
    # Timestamps far from zero (Unix seconds) carry their float rounding into every step.
    rounding = 4 * float(np.spacing(np.abs(times).max()))
    if not np.allclose(steps, steps[0], rtol=1e-6, atol=max(1e-9, rounding)):
        raise TrajectoryError(
            "savgol derivatives need evenly spaced timestamps; use derivative='finite_difference' for uneven ones"
        )
    step = float(steps.mean())

    def savgol(values: FloatArray, order: int) -> FloatArray:
        fitted = savgol_filter(values, window, config.savgol_order, deriv=order, delta=step)
        return np.asarray(fitted, dtype=np.float64)

    return savgol


def _window_for(config: VerifierConfig, count: int) -> int | None:
    """The configured window, or the largest odd window a short trajectory holds; None when even that is too
    small for a fit of the configured order (the trajectory is then differentiated by finite differences, so a
    short answer is still judged rather than refused)."""
    window = min(config.savgol_window, count if count % 2 else count - 1)
    return window if window > config.savgol_order else None


def _heading(trajectory: Trajectory, vx: FloatArray, vy: FloatArray, moving: npt.NDArray[np.bool_]) -> FloatArray:
    """Given headings, or the direction of motion; while (nearly) stopped, the last reliable direction.

    Without given headings, a direction of motion that turns by more than a quarter turn from one reliable
    waypoint to the next is the vehicle changing gear, not turning (no car turns 90° in a time step, or while
    stopped): from there the heading is the opposite of the motion, until the next such reversal. The first
    motion is taken as forward. Else a parking manoeuvre would read as a 180° turn in an instant."""
    if trajectory.heading is not None:
        raw = np.asarray(trajectory.heading, dtype=np.float64)
    elif not moving.any():
        raw = np.zeros_like(vx)
    else:
        first = int(np.argmax(moving))
        reliable = np.maximum.accumulate(np.where(moving, np.arange(len(vx)), first))
        raw = _gear_corrected(np.arctan2(vy, vx), moving)[reliable]
    return np.asarray(np.unwrap(raw), dtype=np.float64)


def _gear_corrected(direction: FloatArray, moving: npt.NDArray[np.bool_]) -> FloatArray:
    """``direction`` turned by π wherever the vehicle reverses (read at the moving waypoints only)."""
    heading = direction.copy()
    offset, last = 0.0, None  # offset: π while reversing
    for index in np.flatnonzero(moving):
        if last is not None and abs(_wrapped(direction[index] + offset - last)) > np.pi / 2:
            offset = np.pi - offset
        heading[index] = last = direction[index] + offset
    return heading


def _wrapped(angle: float) -> float:
    """``angle`` in [-π, π)."""
    return float((angle + np.pi) % (2 * np.pi) - np.pi)


def compute_kinematics(trajectory: Trajectory, config: VerifierConfig | None = None) -> Kinematics:
    """Speed, heading, accelerations, jerks, yaw rate and acceleration and curvature at every waypoint."""
    config = VerifierConfig() if config is None else config
    derive = _differentiator(trajectory.times(), config)
    x = np.asarray(trajectory.x, dtype=np.float64)
    y = np.asarray(trajectory.y, dtype=np.float64)
    vx, vy, ax, ay = derive(x, 1), derive(y, 1), derive(x, 2), derive(y, 2)
    speed = np.hypot(vx, vy)
    moving = speed > config.min_speed_for_heading
    heading = _heading(trajectory, vx, vy, moving)
    cos, sin = np.cos(heading), np.sin(heading)
    lon_acceleration = ax * cos + ay * sin
    cross = vx * ay - vy * ax
    curvature = np.divide(cross, speed**3, out=np.zeros_like(speed), where=moving & (speed > 0))
    return Kinematics(
        speed=speed,
        heading=heading,
        lon_acceleration=lon_acceleration,
        lat_acceleration=ay * cos - ax * sin,
        jerk=np.hypot(derive(ax, 1), derive(ay, 1)),
        lon_jerk=derive(lon_acceleration, 1),
        yaw_rate=derive(heading, 1),
        yaw_acceleration=derive(heading, 2),
        curvature=curvature,
    )


def _check(name: str, series: FloatArray, lower: float | None, upper: float) -> CheckResult:
    """Hold `series` to [lower, upper] (no lower bound when None) and report its worst waypoint.

    A quantity that overflowed (waypoints of 1e155 m, or timestamps 1e-300 s apart) is refused: its NaN would
    pass no check yet say nothing, and is not valid JSON in a report."""
    broken = np.flatnonzero(~np.isfinite(series))
    if broken.size:
        raise TrajectoryError(
            f"{name} is not a finite number at waypoint {int(broken[0])}: the waypoints are too far apart or too "
            "close in time to differentiate"
        )
    margins = upper - series if lower is None else np.minimum(series - lower, upper - series)
    worst = int(np.argmin(margins))
    value = float(series[worst])
    nearer_lower = lower is not None and value - lower < upper - value
    return CheckResult(
        name=name,
        value=value,
        limit=lower if nearer_lower and lower is not None else upper,
        margin=float(margins[worst]),
        passed=bool(margins[worst] >= 0),
        worst_index=worst,
    )


def _symmetric(name: str, series: FloatArray, bound: float) -> CheckResult:
    return _check(name, series, -bound, bound)


def verify_trajectory(trajectory: Trajectory, config: VerifierConfig | None = None) -> TrajectoryReport:
    """Check a trajectory against every comfort limit; the reward is the fraction of checks passed.

    The fraction is the simplest score that still tells a GRPO group apart: a trajectory breaking one limit
    ranks above one breaking three, and a comfortable one earns exactly 1.
    """
    config = VerifierConfig() if config is None else config
    limits = config.limits
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow is refused by the checks, naming it
        motion = compute_kinematics(trajectory, config)
    checks = [
        _check("lon_acceleration", motion.lon_acceleration, limits.min_lon_acceleration, limits.max_lon_acceleration),
        _symmetric("lat_acceleration", motion.lat_acceleration, limits.max_abs_lat_acceleration),
        _check("jerk", motion.jerk, None, limits.max_jerk),
        _symmetric("lon_jerk", motion.lon_jerk, limits.max_abs_lon_jerk),
        _symmetric("yaw_rate", motion.yaw_rate, limits.max_abs_yaw_rate),
        _symmetric("yaw_acceleration", motion.yaw_acceleration, limits.max_abs_yaw_acceleration),
    ]
    if limits.max_speed is not None:
        checks.append(_check("speed", motion.speed, None, limits.max_speed))
    if limits.max_curvature is not None:
        checks.append(_symmetric("curvature", motion.curvature, limits.max_curvature))
    passed = sum(result.passed for result in checks)
    return TrajectoryReport(checks=checks, passed=passed == len(checks), reward=passed / len(checks))


def combine_with_verdict(report: TrajectoryReport, vlm_score: float | None, weight: float) -> float:
    """Blend the kinematic reward with a VLM's score in [0, 1] for the rendered clip.

    ``(1 - weight) * report.reward + weight * vlm_score``; without a score the kinematic reward alone. The VLM
    judges what the numbers cannot see (does the drive make sense in its scene?) and the checks what a VLM
    cannot see (jerk, exact accelerations); a linear blend keeps both in the gradient and stays in [0, 1].
    """
    if not 0 <= weight <= 1:
        raise ValueError(f"weight must be in [0, 1], got {weight}")
    if vlm_score is None:
        return report.reward
    if not 0 <= vlm_score <= 1:
        raise ValueError(f"vlm_score must be in [0, 1], got {vlm_score}")
    return (1 - weight) * report.reward + weight * vlm_score
