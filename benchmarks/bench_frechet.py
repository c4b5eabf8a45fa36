"""Fréchet distance at FID's dimension: ``cookbook_eval.frechet`` against the ``scipy.linalg.sqrtm`` formula.

Two sets of n = 5000 features of dimension d = 2048 with structured covariances (random rotations of
spectra spanning four decades, different for the two sets, and a mean shift) are fitted once; then both
ways of computing the distance run on the same means and covariances, alternating, ``--repeats`` times:

- reference: the formula most FID code uses (pytorch-fid's): covmean = sqrtm(S1 @ S2), its real part,
  d² = ||μ1 - μ2||² + tr S1 + tr S2 - 2 tr covmean (a small ridge added when sqrtm returns non-finite
  values);
- ours: :func:`cookbook_eval.frechet.frechet_distance` in float64: the eigenvalues of the symmetric matrix
  Lᵀ S2 L with L the Cholesky factor of S1 (what it does when S1 is positive definite), and, timed too,
  its ``method="eigh"`` variant that factors S1 = V diag(w) Vᵀ (works for singular S1 as well).

Figures: median seconds of each, their ratio, and the relative difference of the two values. A second,
smaller figure times the case where sets have fewer samples than dimensions (n = 500, Ledoit-Wolf
shrinkage): the dense eigen path against the low-rank path ``frechet_distance_between`` takes there.
Before each timed run the script waits (up to ``--settle`` seconds) for the CPUs to go idle.

    .venv/bin/python benchmarks/bench_frechet.py [--repeats 5] [--settle 30]

Results go to ``benchmarks/results/frechet.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from _machine import cores, cpu_model, wait_for_idle
from numpy.typing import NDArray

RESULTS = Path(__file__).parent / "results"
DIM = 2048
SAMPLES = 5000
SMALL_SAMPLES = 500


def features(rng: np.random.Generator, n: int, decades: float, shift: float) -> NDArray[np.float64]:
    """n samples of a d-dimensional Gaussian with a rotated spectrum spanning ``decades`` decades."""
    basis, _ = np.linalg.qr(rng.standard_normal((DIM, DIM)))
    spectrum = np.geomspace(1.0, 10.0**-decades, DIM)
    samples: NDArray[np.float64] = (rng.standard_normal((n, DIM)) * np.sqrt(spectrum)) @ basis.T + shift
    return samples


def sqrtm_reference(
    mu1: NDArray[np.float64], s1: NDArray[np.float64], mu2: NDArray[np.float64], s2: NDArray[np.float64]
) -> float:
    """The usual formula: a general matrix square root of the non-symmetric product S1 S2."""
    import scipy.linalg

    covmean = scipy.linalg.sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():
        ridge = np.eye(DIM) * 1e-6
        covmean = scipy.linalg.sqrtm((s1 + ridge) @ (s2 + ridge))
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(np.real(covmean)))


def timed(functions: dict[str, Callable[[], float]], repeats: int, settle_s: float) -> dict[str, dict[str, Any]]:
    """Median and all times of each function, runs alternating; the value of the last run."""
    times: dict[str, list[float]] = {name: [] for name in functions}
    values: dict[str, float] = {}
    for _ in range(repeats):
        for name, function in functions.items():
            wait_for_idle(settle_s)
            start = time.perf_counter()
            values[name] = function()
            times[name].append(time.perf_counter() - start)
            print(f"  {name:28} {times[name][-1]:8.3f} s  value {values[name]:.10g}", file=sys.stderr)
    return {
        name: {
            "median_s": statistics.median(runs),
            "best_s": min(runs),
            "runs_s": [round(t, 4) for t in runs],
            "value": values[name],
        }
        for name, runs in times.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed runs of each method")
    parser.add_argument("--settle", type=float, default=30.0, help="wait up to this long for idle CPUs per run")
    parser.add_argument("--no-write", action="store_true", help="print only; leave benchmarks/results alone")
    args = parser.parse_args()

    from cookbook_eval.frechet import frechet_distance, frechet_distance_between, gaussian_stats

    rng = np.random.default_rng(0)
    print(f"fitting {SAMPLES} x {DIM} features twice ...", file=sys.stderr)
    a = features(rng, SAMPLES, 4.0, 0.0)
    b = features(rng, SAMPLES, 3.0, 0.05)
    stats_a, stats_b = gaussian_stats(a), gaussian_stats(b)
    mu1, s1, mu2, s2 = stats_a.mean, stats_a.cov, stats_b.mean, stats_b.cov
    full = timed(
        {
            "scipy_sqrtm": lambda: sqrtm_reference(mu1, s1, mu2, s2),
            "ours": lambda: frechet_distance(mu1, s1, mu2, s2),
            "ours_eigh": lambda: frechet_distance(mu1, s1, mu2, s2, method="eigh"),
        },
        args.repeats,
        args.settle,
    )
    reference, ours, ours_eigh = full["scipy_sqrtm"], full["ours"], full["ours_eigh"]
    relative = abs(ours["value"] - reference["value"]) / abs(reference["value"])
    relative_eigh = abs(ours_eigh["value"] - reference["value"]) / abs(reference["value"])

    small_a, small_b = (
        gaussian_stats(a[:SMALL_SAMPLES], "ledoit-wolf"),
        gaussian_stats(b[:SMALL_SAMPLES], "ledoit-wolf"),
    )
    small = timed(
        {
            "dense_eigh": lambda: frechet_distance(small_a.mean, small_a.cov, small_b.mean, small_b.cov),
            "low_rank": lambda: frechet_distance_between(small_a, small_b),
        },
        args.repeats,
        args.settle,
    )
    small_relative = abs(small["low_rank"]["value"] - small["dense_eigh"]["value"]) / abs(small["dense_eigh"]["value"])

    machine = cpu_model()
    threads = cores()
    document = {
        "benchmark": "frechet",
        "measured_on": f"{machine}, CPU only",
        "cpu_threads": threads,
        "note": f"measured on CPU, {threads} cores",
        "load_average_1_5_15_min_at_end": [round(value, 2) for value in os.getloadavg()],
        "numpy": np.__version__,
        "scipy": __import__("scipy").__version__,
        "reference": "scipy.linalg.sqrtm(S1 @ S2), real part, trace (pytorch-fid's formula)",
        "ours": "cookbook_eval.frechet.frechet_distance: eigvalsh of L^T S2 L, L = cholesky(S1), float64",
        "ours_eigh": "the same with method='eigh': eigvalsh of sqrt(S1) S2 sqrt(S1), sqrt(S1) by eigh of S1",
        "dim": DIM,
        "samples_per_set": SAMPLES,
        "repeats": args.repeats,
        "method": "same means and covariances for both methods, runs alternating, waiting for idle CPUs before "
        "each; figures are medians; speedup = reference median / ours median; agreement = |ours - reference| "
        "/ |reference|.",
        "results": {
            "reference_median_s": round(reference["median_s"], 4),
            "ours_median_s": round(ours["median_s"], 4),
            "speedup": round(reference["median_s"] / ours["median_s"], 2),
            "reference_best_s": round(reference["best_s"], 4),
            "ours_best_s": round(ours["best_s"], 4),
            "speedup_of_best_runs": round(reference["best_s"] / ours["best_s"], 2),
            "relative_difference": float(f"{relative:.3g}"),
            "value_reference": reference["value"],
            "value_ours": ours["value"],
            "ours_eigh_median_s": round(ours_eigh["median_s"], 4),
            "ours_eigh_speedup": round(reference["median_s"] / ours_eigh["median_s"], 2),
            "ours_eigh_best_s": round(ours_eigh["best_s"], 4),
            "ours_eigh_speedup_of_best_runs": round(reference["best_s"] / ours_eigh["best_s"], 2),
            "ours_eigh_relative_difference": float(f"{relative_eigh:.3g}"),
            "reference_runs_s": reference["runs_s"],
            "ours_runs_s": ours["runs_s"],
            "ours_eigh_runs_s": ours_eigh["runs_s"],
        },
        "few_samples": {
            "samples_per_set": SMALL_SAMPLES,
            "shrinkage": "ledoit-wolf",
            "dense_median_s": round(small["dense_eigh"]["median_s"], 4),
            "low_rank_median_s": round(small["low_rank"]["median_s"], 4),
            "speedup": round(small["dense_eigh"]["median_s"] / small["low_rank"]["median_s"], 2),
            "relative_difference": float(f"{small_relative:.3g}"),
        },
    }
    print(json.dumps(document["results"], indent=2))
    if args.no_write:
        return
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "frechet.json").write_text(json.dumps(document, indent=2) + "\n")
    result, few = document["results"], document["few_samples"]
    assert isinstance(result, dict) and isinstance(few, dict)
    lines = [
        "# Fréchet distance at d = 2048",
        "",
        f"`cookbook_eval.frechet.frechet_distance` against `scipy.linalg.sqrtm(S1 @ S2)` (pytorch-fid's formula), "
        f"measured on CPU, {threads} cores ({machine}), numpy {np.__version__}, scipy {document['scipy']}, in the "
        f"same run on the same covariances of two sets of {SAMPLES} structured {DIM}-d features (median of "
        f"{args.repeats} alternating runs, and best run). The machine was shared (load average "
        f"{document['load_average_1_5_15_min_at_end']} at the end, for 2 cores): single runs vary, the best runs "
        "are the least disturbed.",
        "",
        "| method | median s | speedup | best s | speedup of best runs | relative difference |",
        "|---|---:|---:|---:|---:|---:|",
        f"| scipy sqrtm (reference) | {result['reference_median_s']} | 1x | {result['reference_best_s']} | 1x | |",
        f"| ours (Cholesky factor of S1, eigvalsh of Lᵀ S2 L) | {result['ours_median_s']} | {result['speedup']}x | "
        f"{result['ours_best_s']} | {result['speedup_of_best_runs']}x | {result['relative_difference']} |",
        f"| ours, method='eigh' (sqrt(S1) by eigh) | {result['ours_eigh_median_s']} | "
        f"{result['ours_eigh_speedup']}x | {result['ours_eigh_best_s']} | {result['ours_eigh_speedup_of_best_runs']}x "
        f"| {result['ours_eigh_relative_difference']} |",
        "",
        f"Fewer samples than dimensions ({SMALL_SAMPLES} per set, Ledoit-Wolf shrinkage): dense eigen form "
        f"{few['dense_median_s']} s, low-rank path {few['low_rank_median_s']} s ({few['speedup']}x), relative "
        f"difference {few['relative_difference']}.",
    ]
    (RESULTS / "frechet.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
