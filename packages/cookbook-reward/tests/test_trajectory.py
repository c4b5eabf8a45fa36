import json
import re
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from scipy.integrate import cumulative_trapezoid

from cookbook_reward.trajectory import (
    ComfortLimits,
    Trajectory,
    TrajectoryError,
    TrajectoryReport,
    VerifierConfig,
    combine_with_verdict,
    compute_kinematics,
    load_trajectories,
    load_trajectory,
    trajectory_from_data,
    verify_trajectory,
)

POINTS, DT = 64, 0.1  # a planner's horizon: 6.3 s at 10 Hz
Array = npt.NDArray[np.floating[Any]]
Profile = Callable[[Array], Array]


def constant(value: float) -> Profile:
    return lambda t: np.full_like(t, value)


def ramp(start: float, duration: float, change: float) -> Profile:
    """A cosine-shaped change of `change` over `duration` seconds: peak rate π·change/(2·duration)."""
    return lambda t: change * (1 - np.cos(np.pi * np.clip((t - start) / duration, 0, 1))) / 2


def drive(speed: float, acceleration: Profile, yaw_rate: Profile) -> Trajectory:
    """Integrate a speed and yaw-rate profile finely and sample it at 10 Hz, as a planner would output it."""
    t = np.linspace(0, (POINTS - 1) * DT, (POINTS - 1) * 100 + 1)
    v = speed + cumulative_trapezoid(acceleration(t), t, initial=0)
    heading = cumulative_trapezoid(yaw_rate(t), t, initial=0)
    x = cumulative_trapezoid(v * np.cos(heading), t, initial=0)
    y = cumulative_trapezoid(v * np.sin(heading), t, initial=0)
    return Trajectory(x=x[::100].tolist(), y=y[::100].tolist())


# Each drive breaks exactly one limit; the numbers in the comments are the true values.
ONE_VIOLATION = {
    # 28 m/s, easing (jerk <= 3.6 m/s³) into a 5 m/s² stop.
    "lon_acceleration": drive(28, ramp(0.5, 2.2, -5.0), constant(0)),
    # A 16.7 m circle at 10 m/s: lateral 6.0 m/s², yaw rate 0.6 rad/s, jerk v·ω² = 3.6 m/s³.
    "lat_acceleration": drive(10, constant(0), constant(0.6)),
    # Weaving at 25 m/s: lateral 4.3 m/s² but lateral jerk 12.9 m/s³.
    "jerk": drive(25, constant(0), lambda t: 4.3 / 25 * np.sin(3 * t)),
    # Straight, from +1.5 to -2.5 m/s² within 1 s: longitudinal jerk 6.3 m/s³.
    "lon_jerk": drive(15, lambda t: 1.5 + ramp(1.0, 1.0, -4.0)(t), constant(0)),
    # A tight circle at walking pace: 1.1 rad/s, lateral 3.3 m/s², curvature 0.37 1/m.
    "yaw_rate": drive(3, constant(0), constant(1.1)),
    # Slow wiggle: yaw rate 0.85 rad/s swinging at 3 rad/s, yaw acceleration 2.55 rad/s².
    "yaw_acceleration": drive(2.5, constant(0), lambda t: 0.85 * np.sin(3 * t)),
    # 42 m/s straight ahead.
    "speed": drive(42, constant(0), constant(0)),
    # 1.4 m/s turning at 0.85 rad/s: a 1.65 m radius.
    "curvature": drive(1.4, constant(0), constant(0.85)),
}
COMFORTABLE = drive(10, constant(0.5), constant(0.1))

# A 15-point window (1.5 s) smooths away jerk and yaw-acceleration swings this fast, as NAVSIM's scoring does;
# a 9-point window still sees them, so the savgol path is tested on every limit with it.
CONFIGS = {
    "finite_difference": VerifierConfig(derivative="finite_difference"),
    "savgol": VerifierConfig(derivative="savgol", savgol_window=9),
}


def failed(report: TrajectoryReport) -> list[str]:
    return [check.name for check in report.checks if not check.passed]


@pytest.mark.parametrize("config_name", CONFIGS)
@pytest.mark.parametrize("limit", ONE_VIOLATION)
def test_each_trajectory_breaks_exactly_its_limit(limit: str, config_name: str) -> None:
    report = verify_trajectory(ONE_VIOLATION[limit], CONFIGS[config_name])

    assert failed(report) == [limit]
    assert report.check(limit).margin < 0
    assert all(check.margin >= 0 for check in report.checks if check.name != limit)
    assert not report.passed
    assert report.reward == pytest.approx(7 / 8)


@pytest.mark.parametrize("limit", ["lon_acceleration", "lat_acceleration", "yaw_rate", "speed", "curvature"])
def test_default_savgol_window_catches_sustained_violations(limit: str) -> None:
    assert failed(verify_trajectory(ONE_VIOLATION[limit])) == [limit]


@pytest.mark.parametrize("config", [*CONFIGS.values(), VerifierConfig()], ids=[*CONFIGS, "default"])
def test_a_comfortable_drive_passes_everything(config: VerifierConfig) -> None:
    report = verify_trajectory(COMFORTABLE, config)

    assert [check.name for check in report.checks] == [
        "lon_acceleration",
        "lat_acceleration",
        "jerk",
        "lon_jerk",
        "yaw_rate",
        "yaw_acceleration",
        "speed",
        "curvature",
    ]
    assert report.passed
    assert report.reward == 1.0
    assert all(check.margin > 0 for check in report.checks)


def test_a_failed_check_reports_the_bound_it_crossed_and_where() -> None:
    check = verify_trajectory(ONE_VIOLATION["lon_acceleration"], CONFIGS["finite_difference"]).check("lon_acceleration")

    assert check.value == pytest.approx(-5.0, abs=0.05)
    assert check.limit == -4.05
    assert check.margin == pytest.approx(check.value + 4.05)
    assert check.worst_index >= 27  # the braking is full from 2.7 s on


def test_unchecked_limits_are_left_out_and_change_the_reward() -> None:
    config = VerifierConfig(limits=ComfortLimits(max_speed=None, max_curvature=None))
    report = verify_trajectory(ONE_VIOLATION["lat_acceleration"], config)

    assert {"speed", "curvature"}.isdisjoint(check.name for check in report.checks)
    assert report.reward == pytest.approx(5 / 6)


@pytest.mark.parametrize("derivative", ["finite_difference", "savgol"])
def test_constant_acceleration_is_measured_exactly(derivative: str) -> None:
    t = np.arange(POINTS) * DT
    accel = 1.7
    trajectory = Trajectory(x=(5 * t + accel * t**2 / 2).tolist(), y=[0.0] * POINTS)

    motion = compute_kinematics(trajectory, VerifierConfig(derivative=derivative))

    np.testing.assert_allclose(motion.lon_acceleration, accel, atol=1e-6)
    np.testing.assert_allclose(motion.speed, 5 + accel * t, atol=1e-6)
    np.testing.assert_allclose(motion.lat_acceleration, 0, atol=1e-6)
    np.testing.assert_allclose(motion.lon_jerk, 0, atol=1e-6)


def test_a_left_turn_has_positive_lateral_acceleration_yaw_rate_and_curvature() -> None:
    motion = compute_kinematics(ONE_VIOLATION["lat_acceleration"], CONFIGS["finite_difference"])
    inner = slice(3, -3)  # away from the one-sided differences at the ends

    np.testing.assert_allclose(motion.lat_acceleration[inner], 10 * 0.6, rtol=2e-3)
    np.testing.assert_allclose(motion.yaw_rate[inner], 0.6, rtol=2e-3)
    np.testing.assert_allclose(motion.curvature[inner], 0.6 / 10, rtol=2e-3)
    np.testing.assert_allclose(motion.jerk[inner], 10 * 0.6**2, rtol=1e-2)


def test_finite_differences_take_uneven_timestamps() -> None:
    t = np.cumsum(np.r_[0, np.tile([0.08, 0.12], 20)])
    trajectory = Trajectory(x=(-2.0 * t**2 / 2 + 20 * t).tolist(), y=[0.0] * len(t), t=t.tolist())

    motion = compute_kinematics(trajectory, VerifierConfig(derivative="finite_difference"))

    np.testing.assert_allclose(motion.lon_acceleration, -2.0, atol=1e-6)


def test_savgol_refuses_uneven_timestamps() -> None:
    trajectory = Trajectory(x=[0, 1, 2, 3, 4], y=[0] * 5, t=[0, 0.1, 0.25, 0.3, 0.4])

    with pytest.raises(TrajectoryError, match="evenly spaced"):
        verify_trajectory(trajectory, VerifierConfig(derivative="savgol"))


def test_a_short_trajectory_uses_the_largest_window_it_holds() -> None:
    t = np.arange(6) * DT
    trajectory = Trajectory(x=(3 * t + t**2).tolist(), y=[0.0] * 6)

    motion = compute_kinematics(trajectory)  # 15-point default window, 6 points: fitted with 5

    np.testing.assert_allclose(motion.lon_acceleration, 2.0, atol=1e-6)


def test_a_trajectory_too_short_for_a_savgol_fit_is_judged_by_finite_differences() -> None:
    t = np.arange(4) * DT
    trajectory = Trajectory(x=(3 * t + t**2).tolist(), y=[0.0] * 4)

    motion = compute_kinematics(trajectory)  # 4 points hold a 3-point window, too small for order 3

    np.testing.assert_allclose(motion.lon_acceleration, 2.0, atol=1e-6)
    assert verify_trajectory(trajectory).passed


def test_savgol_takes_evenly_spaced_unix_timestamps() -> None:
    t = 1.7e9 + np.arange(POINTS) * DT  # their float rounding makes the steps differ by ~1e-7 s
    x = 20 * (t - t[0]) - (t - t[0]) ** 2
    trajectory = Trajectory(x=x.tolist(), y=[0.0] * POINTS, t=t.tolist())

    motion = compute_kinematics(trajectory, VerifierConfig(derivative="savgol"))

    np.testing.assert_allclose(motion.lon_acceleration, -2.0, atol=1e-3)


def test_given_headings_are_used_for_the_projection() -> None:
    t = np.arange(POINTS) * DT
    trajectory = Trajectory(
        x=(10 * t).tolist(), y=(t**2).tolist(), heading=[np.pi / 2] * POINTS
    )  # facing +y while sliding along +x: the 2 m/s² along y is longitudinal for this vehicle

    motion = compute_kinematics(trajectory, VerifierConfig(derivative="finite_difference"))

    np.testing.assert_allclose(motion.lon_acceleration, 2.0, atol=1e-6)
    np.testing.assert_allclose(motion.yaw_rate, 0, atol=1e-9)


def test_standing_still_holds_the_last_heading() -> None:
    x = [0.0, 1.0, 2.0, 3.0, 3.5, 3.5, 3.5, 3.5, 3.5, 3.5]
    trajectory = Trajectory(x=x, y=[0.0, 0.0, 0.0, 0.0, 0.0, 1e-4, -1e-4, 1e-4, -1e-4, 1e-4])

    motion = compute_kinematics(trajectory, VerifierConfig(derivative="finite_difference"))

    np.testing.assert_allclose(motion.heading, 0, atol=1e-3)
    assert np.all(np.abs(motion.curvature) < 1e-3)


@pytest.mark.parametrize("derivative", ["finite_difference", "savgol"])
def test_reversing_is_not_read_as_a_turn(derivative: str) -> None:
    t = np.arange(POINTS) * DT
    x = 2 * t - 0.5 * t**2  # 2 m/s forward, braking at 1 m/s², stopping at 2 s, then reversing
    trajectory = Trajectory(x=x.tolist(), y=[0.0] * POINTS)

    motion = compute_kinematics(trajectory, VerifierConfig(derivative=derivative))
    report = verify_trajectory(trajectory, VerifierConfig(derivative=derivative))

    np.testing.assert_allclose(motion.heading, 0, atol=1e-9)  # still facing +x, driving backwards
    np.testing.assert_allclose(motion.yaw_rate, 0, atol=1e-9)
    np.testing.assert_allclose(motion.lon_acceleration, -1.0, atol=1e-6)
    assert report.passed, failed(report)


def test_a_turn_back_and_forth_stays_a_turn() -> None:
    trajectory = drive(5, constant(0), lambda t: 0.9 * np.sin(2 * t))  # weaving forward, under every limit

    motion = compute_kinematics(trajectory)

    assert np.all(np.abs(motion.heading) < 0.9)


def test_waypoints_too_large_to_differentiate_are_refused() -> None:
    t = np.arange(POINTS) * DT
    trajectory = Trajectory(x=(1e155 * t).tolist(), y=(1e155 * t**2).tolist())

    with pytest.raises(TrajectoryError, match="not a finite number at waypoint"):
        verify_trajectory(trajectory)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"x": [0, 1, 2], "y": [0, 0, 0]}, "at least 4 waypoints"),
        ({"x": [0, 1, 2, 3], "y": [0, 0, 0]}, "`y` has 3 values but `x` has 4"),
        ({"x": [0, 1, 2, 3], "y": [0, 0, 0, 0], "t": [0, 1, 1, 2]}, "strictly increasing"),
        ({"x": [0, 1, float("nan"), 3], "y": [0, 0, 0, 0]}, "x.2"),
        ({"x": [0, 1, 2, 3], "y": [0, 0, 0, 0], "speed": [1, 1, 1, 1]}, "speed"),
    ],
)
def test_invalid_trajectories_say_what_is_wrong(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Trajectory.model_validate(fields)


def test_config_rejects_an_even_window() -> None:
    with pytest.raises(ValueError, match="odd"):
        VerifierConfig(savgol_window=8)


WAYPOINTS = [[0.0, 0.0, 0.0], [1.0, 0.1, 0.1], [2.0, 0.3, 0.2], [3.0, 0.6, 0.3]]


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("columns.json", {"x": [0, 1, 2, 3], "y": [0, 0.1, 0.3, 0.6], "heading": [0, 0.1, 0.2, 0.3], "dt": 0.1}),
        ("pairs.json", WAYPOINTS),
        ("points.json", [{"x": x, "y": y, "heading": h} for x, y, h in WAYPOINTS]),
    ],
)
def test_json_forms_load_to_the_same_trajectory(tmp_path: Path, name: str, content: object) -> None:
    path = tmp_path / name
    path.write_text(json.dumps(content))

    trajectory = load_trajectory(path)

    assert trajectory.x == [0, 1, 2, 3]
    assert trajectory.y == [0, 0.1, 0.3, 0.6]
    assert trajectory.heading == [0, 0.1, 0.2, 0.3]


def test_json_points_carry_timestamps(tmp_path: Path) -> None:
    path = tmp_path / "timed.json"
    path.write_text(json.dumps([{"x": i, "y": 0, "t": i * 0.2} for i in range(5)]))

    assert load_trajectory(path).t == [0, 0.2, 0.4, 0.6000000000000001, 0.8]


def test_numpy_forms_load(tmp_path: Path) -> None:
    array = np.asarray(WAYPOINTS)
    np.save(tmp_path / "waypoints.npy", array[:, :2])
    np.savez(tmp_path / "waypoints.npz", x=array[:, 0], y=array[:, 1], t=np.arange(4) * 0.5)

    from_npy = load_trajectory(tmp_path / "waypoints.npy")
    from_npz = load_trajectory(tmp_path / "waypoints.npz")

    assert from_npy.x == from_npz.x == [0, 1, 2, 3]
    assert from_npy.heading is None
    assert from_npz.t == [0, 0.5, 1.0, 1.5]


def test_load_errors_name_the_file(tmp_path: Path) -> None:
    cases = {
        "broken.json": "not valid JSON",
        "short.json": "at least 4 waypoints",
        "ragged.json": "must all be [x, y] or all [x, y, heading]",
        "wide.npy": "shape (N, 2) or (N, 3)",
        "waypoints.csv": "unsupported file type",
    }
    (tmp_path / "broken.json").write_text("[[0, 0], [1,")
    (tmp_path / "short.json").write_text("[[0, 0], [1, 0]]")
    (tmp_path / "ragged.json").write_text("[[0, 0], [1, 0, 0], [2, 0], [3, 0]]")
    np.save(tmp_path / "wide.npy", np.zeros((10, 5)))
    (tmp_path / "waypoints.csv").write_text("0,0\n")

    for name, message in cases.items():
        with pytest.raises(TrajectoryError, match=re.escape(message)) as caught:
            load_trajectory(tmp_path / name)
        assert str(caught.value).startswith(f"{tmp_path / name}: ")


BATCH = np.asarray([[[x, y] for x, y, _ in WAYPOINTS], [[x + 1, y * 2] for x, y, _ in WAYPOINTS]])
"""Two trajectories of four waypoints, stacked: shape (2, 4, 2)."""
WRITERS: dict[str, Callable[[Path], object]] = {
    "objects.json": lambda p: p.write_text(json.dumps([{"x": t[:, 0].tolist(), "y": t[:, 1].tolist()} for t in BATCH])),
    "pairs.json": lambda p: p.write_text(json.dumps(BATCH.tolist())),
    "keyed.json": lambda p: p.write_text(json.dumps({"plans": BATCH.tolist()})),
    "stacked.npy": lambda p: np.save(p, BATCH),
    "stacked.npz": lambda p: np.savez(p, trajectories=BATCH),
    "columns.npz": lambda p: np.savez(p, x=BATCH[..., 0], y=BATCH[..., 1], t=np.arange(4) * 0.5),
}


@pytest.mark.parametrize("name", WRITERS)
def test_every_trajectory_of_a_batch_file_is_read_in_order(tmp_path: Path, name: str) -> None:
    WRITERS[name](tmp_path / name)

    entries = load_trajectories(tmp_path / name)

    assert [index for index, _ in entries] == [0, 1]
    first, second = (trajectory_from_data(data) for _, data in entries)
    assert (first.x, first.y) == ([0, 1, 2, 3], [0, 0.1, 0.3, 0.6])
    assert (second.x, second.y) == ([1, 2, 3, 4], [0, 0.2, 0.6, 1.2])
    assert first.t == second.t == (None if name != "columns.npz" else [0, 0.5, 1.0, 1.5])  # a shared `t`: each


@pytest.mark.parametrize("name", WRITERS)
def test_a_single_trajectory_reader_refuses_a_batch_by_its_size(tmp_path: Path, name: str) -> None:
    WRITERS[name](tmp_path / name)

    with pytest.raises(TrajectoryError) as caught:
        load_trajectory(tmp_path / name)

    assert str(caught.value).startswith(f"{tmp_path / name}: holds 2 trajectories where one is expected")


def test_a_batch_of_one_is_that_trajectory_and_a_single_file_no_batch(tmp_path: Path) -> None:
    np.save(tmp_path / "one.npy", BATCH[:1])
    (tmp_path / "single.json").write_text(json.dumps(WAYPOINTS))

    assert load_trajectory(tmp_path / "one.npy").x == [0, 1, 2, 3]
    [(index, data)] = load_trajectories(tmp_path / "single.json")
    assert index is None and trajectory_from_data(data).heading == [0, 0.1, 0.2, 0.3]


@pytest.mark.parametrize("failed_plan", [None, [], {"x": None, "y": None}])
def test_a_failed_plan_in_a_batch_is_refused_alone(tmp_path: Path, failed_plan: object) -> None:
    plans = [{"x": t[:, 0].tolist(), "y": t[:, 1].tolist()} for t in BATCH]
    (tmp_path / "plans.json").write_text(json.dumps({"plans": [*plans, failed_plan]}))

    entries = load_trajectories(tmp_path / "plans.json")

    assert [index for index, _ in entries] == [0, 1, 2]
    assert [trajectory_from_data(data).x for _, data in entries[:2]] == [[0, 1, 2, 3], [1, 2, 3, 4]]
    with pytest.raises(TrajectoryError):
        trajectory_from_data(entries[2][1])


def test_batch_columns_of_unequal_counts_are_refused(tmp_path: Path) -> None:
    np.savez(tmp_path / "ragged.npz", x=np.zeros((3, 5)), y=np.zeros((2, 5)))

    with pytest.raises(TrajectoryError, match=re.escape("`y` holds 2 trajectories but `x` holds 3")):
        load_trajectories(tmp_path / "ragged.npz")


def _damaged_deflate(path: Path) -> None:
    """A compressed archive whose first member's deflate stream starts with an invalid block type."""
    np.savez_compressed(path, x=np.arange(100.0), y=np.zeros(100))
    content = bytearray(path.read_bytes())
    name_length, extra_length = struct.unpack("<HH", content[26:30])  # the first local file header
    content[30 + name_length + extra_length] = 0xFF
    path.write_bytes(bytes(content))


def _unclosed_header(path: Path) -> None:
    np.save(path, np.zeros((5, 2)))
    path.write_bytes(path.read_bytes().replace(b"), }", b"),  "))


DAMAGED: dict[str, tuple[Callable[[Path], object], str]] = {
    "utf16.json": (lambda p: p.write_bytes(b"\xff\xfe[[0,0]]"), "not valid JSON ('utf-8' codec can't decode"),
    "huge.json": (lambda p: p.write_text(f"[[0, 0], [{'9' * 5000}, 0]]"), "not valid JSON (Exceeds the limit"),
    "deep.json": (lambda p: p.write_text("[" * 100_000), "not valid JSON (maximum recursion depth"),
    "folder.json": (lambda p: p.mkdir(), "cannot be read (Is a directory)"),
    "truncated.npz": (lambda p: p.write_bytes(b"PK\x03\x04" + bytes(100)), "File is not a zip file"),
    "objects.npz": (lambda p: np.savez(p, x=np.array([0, "a"], dtype=object)), "Object arrays cannot be loaded"),
    "deflate.npz": (_damaged_deflate, "invalid block type"),
    "header.npy": (_unclosed_header, "EOF in multi-line statement"),
}


@pytest.mark.parametrize("name", DAMAGED)
def test_a_damaged_file_is_refused_naming_the_file(tmp_path: Path, name: str) -> None:
    make, message = DAMAGED[name]
    make(tmp_path / name)

    with pytest.raises(TrajectoryError, match=re.escape(message)) as caught:
        load_trajectory(tmp_path / name)
    assert str(caught.value).startswith(f"{tmp_path / name}: ")


def test_a_vlm_verdict_blends_linearly() -> None:
    report = verify_trajectory(ONE_VIOLATION["speed"])  # 7 of 8 checks pass

    assert combine_with_verdict(report, None, 0.3) == pytest.approx(7 / 8)
    assert combine_with_verdict(report, 1.0, 0.5) == pytest.approx((7 / 8 + 1) / 2)
    assert combine_with_verdict(report, 0.0, 1.0) == 0.0
    with pytest.raises(ValueError, match="vlm_score"):
        combine_with_verdict(report, 2.0, 0.5)
