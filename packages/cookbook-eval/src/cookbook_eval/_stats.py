"""Correlations and percentile bootstrap intervals, vectorised over resamples."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.intp]

RowStatistic = Callable[[IndexArray], FloatArray]
"""Maps a (resamples, n) matrix of indices to one value per row; NaN where the value is undefined."""

_CHUNK_ELEMENTS = 4_000_000
"""Most indices drawn at once, so memory stays bounded for large samples."""


def pearson_rows(x: FloatArray, y: FloatArray) -> FloatArray:
    """Pearson's r of each row pair of two (rows, n) matrices; NaN for a row with a constant side."""
    dx = x - x.mean(axis=1, keepdims=True)
    dy = y - y.mean(axis=1, keepdims=True)
    sxx = np.einsum("ij,ij->i", dx, dx)
    syy = np.einsum("ij,ij->i", dy, dy)
    sxy = np.einsum("ij,ij->i", dx, dy)
    denominator = np.sqrt(sxx * syy)
    # A side is constant when its spread vanishes next to its magnitude (exact zero is not reliable in floats).
    scale_x = np.maximum(np.abs(x).max(axis=1), 1.0)
    scale_y = np.maximum(np.abs(y).max(axis=1), 1.0)
    tiny = (sxx <= (1e-12 * scale_x) ** 2 * x.shape[1]) | (syy <= (1e-12 * scale_y) ** 2 * y.shape[1])
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(tiny, np.nan, sxy / np.where(tiny, 1.0, denominator))
    return np.clip(r, -1.0, 1.0)


def rank_rows(values: FloatArray) -> FloatArray:
    """Ranks (1-based, ties get their average rank) along the last axis."""
    from scipy.stats import rankdata

    return np.asarray(rankdata(values, axis=-1), dtype=np.float64)


def pearson(x: FloatArray, y: FloatArray) -> float | None:
    """Pearson's r, or None when there are fewer than two pairs or one side is constant."""
    if len(x) < 2:
        return None
    value = float(pearson_rows(x[None, :], y[None, :])[0])
    return None if np.isnan(value) else value


def spearman(x: FloatArray, y: FloatArray) -> float | None:
    """Spearman's rank correlation (Pearson's r of average ranks), or None when undefined."""
    if len(x) < 2:
        return None
    return pearson(rank_rows(x), rank_rows(y))


def pearson_statistic(x: FloatArray, y: FloatArray) -> RowStatistic:
    """Pearson's r of resampled pairs."""
    return lambda index: pearson_rows(x[index], y[index])


def spearman_statistic(x: FloatArray, y: FloatArray) -> RowStatistic:
    """Spearman's rho of resampled pairs (ranks are recomputed inside every resample)."""
    return lambda index: pearson_rows(rank_rows(x[index]), rank_rows(y[index]))


def mean_statistic(values: FloatArray) -> RowStatistic:
    """The mean of resampled values (an accuracy when the values are 0/1)."""
    return lambda index: values[index].mean(axis=1)


def bootstrap(statistic: RowStatistic, n: int, resamples: int, seed: int) -> FloatArray:
    """The statistic on ``resamples`` resamples (with replacement) of ``n`` items, drawn from ``seed``.

    The same seed gives the same resamples, whichever other statistics were bootstrapped before.
    """
    rng = np.random.default_rng(seed)
    rows_per_chunk = max(1, _CHUNK_ELEMENTS // max(n, 1))
    parts = []
    done = 0
    while done < resamples:
        rows = min(rows_per_chunk, resamples - done)
        parts.append(statistic(rng.integers(0, n, size=(rows, n))))
        done += rows
    return np.concatenate(parts) if parts else np.empty(0)


def percentile_interval(values: FloatArray, confidence: float) -> tuple[float, float] | None:
    """The central ``confidence`` interval of the defined (non-NaN) bootstrap values, or None if none is."""
    defined = values[~np.isnan(values)]
    if defined.size == 0:
        return None
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(defined, [tail, 100.0 - tail])
    return float(low), float(high)
