"""Test helpers for users' pipelines: driving plans with known kinematics for the trajectory verifier."""

from __future__ import annotations

HARD_BRAKE = 6.0
"""m/s², beyond the -4.05 m/s² comfort limit on longitudinal acceleration."""


def straight_drive(speed: float, brake_at: int | None = None, points: int = 64, dt: float = 0.1) -> list[list[float]]:
    """``points`` waypoints ``[x, y]`` at ``1/dt`` Hz along x at ``speed`` m/s; from waypoint ``brake_at`` on, the
    car brakes at :data:`HARD_BRAKE` until it stops (an abrupt stop: its onset also breaks the jerk limits)."""
    x, v = [0.0], speed
    for i in range(1, points):
        if brake_at is not None and i >= brake_at:
            v = max(v - HARD_BRAKE * dt, 0.0)
        x.append(x[-1] + v * dt)
    return [[value, 0.0] for value in x]
