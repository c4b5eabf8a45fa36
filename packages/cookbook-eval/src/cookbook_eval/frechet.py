"""The Fréchet distance between two Gaussians fitted to feature sets: the distance behind FID and FVD.

For feature sets with means μ1, μ2 and covariances S1, S2::

    d² = ||μ1 - μ2||² + tr(S1) + tr(S2) - 2 tr(sqrt(S1 S2))

``tr(sqrt(S1 S2))`` is computed in float64 without a general matrix square root: S1 S2 is similar to the
symmetric positive semi-definite matrix sqrt(S1) S2 sqrt(S1), so its square root's trace is the sum of the
square roots of that matrix's eigenvalues (clipped at 0 against rounding). sqrt(S1) comes from the
eigendecomposition S1 = V diag(w) Vᵀ; with s = sqrt(w), sqrt(S1) S2 sqrt(S1) = V [diag(s) Vᵀ S2 V diag(s)] Vᵀ,
so the eigenvalues are those of the bracket: two matrix products and one symmetric eigenvalue problem. Any
factor S1 = B Bᵀ gives the same eigenvalues through Bᵀ S2 B, so when S1 is positive definite (the usual case)
its Cholesky factor replaces the eigendecomposition, at a fraction of the cost. Unlike
``scipy.linalg.sqrtm(S1 @ S2)`` (a Schur decomposition of a non-symmetric matrix) this never returns complex
values or NaN for singular covariances, and it is several times faster.

A covariance estimated from n samples of dimension d has rank at most n - 1; with n <= d it is singular and
the distance is dominated by estimation noise, so :func:`gaussian_stats` refuses it unless a shrinkage
estimate is asked for (a fixed intensity, or Ledoit-Wolf's, toward a scaled identity).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

Shrinkage = float | Literal["ledoit-wolf"] | None
"""How the covariance is estimated: None, the sample covariance (needs more samples than dimensions); a float
in [0, 1], that intensity of shrinkage toward the scaled identity; ``"ledoit-wolf"``, the intensity that
Ledoit and Wolf (2004) show minimises the expected squared error."""


class RankDeficientError(ValueError):
    """Too few samples for a full-rank covariance, and no shrinkage was allowed."""


@dataclass(frozen=True)
class GaussianStats:
    """Mean and covariance of a feature set, as the Fréchet distance uses them."""

    mean: NDArray[np.float64]
    """(d,) mean feature."""
    cov: NDArray[np.float64]
    """(d, d) covariance: unbiased (divisor n - 1), or shrunk when ``shrinkage`` is set (Ledoit-Wolf's shrinks
    the maximum-likelihood covariance, divisor n, the one its intensity is computed for)."""
    n: int
    """Number of feature vectors."""
    shrinkage: float | None = None
    """Intensity of the shrinkage toward the scaled identity that was applied, or None for none."""
    factor: NDArray[np.float64] | None = None
    """With shrinkage and fewer samples than dimensions: (k, d) rows F with cov = Fᵀ F + ridge · I, which
    lets the distance work in the k-dimensional span of the samples instead of all d dimensions."""
    ridge: float = 0.0

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])


def _as_features(features: ArrayLike) -> NDArray[np.float64]:
    array = np.asarray(features, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(f"features must be a 2-D array (samples x dimensions), got shape {array.shape}")
    if array.shape[0] < 2:
        raise ValueError(f"a covariance needs at least 2 samples, got {array.shape[0]}")
    if not np.isfinite(array).all():
        raise ValueError("features contain NaN or infinite values")
    return array


def ledoit_wolf_intensity(features: ArrayLike) -> float:
    """Ledoit-Wolf shrinkage intensity in [0, 1] toward ``tr(S)/d · I`` for samples in rows.

    With centred samples x_k, the maximum-likelihood covariance S = Σ x_k x_kᵀ / n, m = tr(S)/d and the
    normalised Frobenius norm ||A||² = tr(A Aᵀ)/d: δ² = ||S - m I||², β² = min(δ², Σ_k ||x_k x_kᵀ - S||² / n²),
    intensity = β² / δ². The sum uses Σ_k ||x_k x_kᵀ - S||²_F = Σ_k ||x_k||⁴ - n ||S||²_F, so no d x d matrix
    per sample is formed.
    """
    x = _as_features(features)
    centred = x - x.mean(axis=0)
    return _ledoit_wolf(centred, centred.T @ centred / x.shape[0])


def _ledoit_wolf(x: NDArray[np.float64], sample: NDArray[np.float64]) -> float:
    """Ledoit-Wolf intensity of centred samples ``x`` (n x d) with maximum-likelihood covariance ``sample``."""
    n, d = x.shape
    mu = float(np.trace(sample)) / d
    frob2 = float(np.sum(sample * sample))
    delta2 = (frob2 - 2 * mu * float(np.trace(sample)) + mu * mu * d) / d
    if delta2 <= 0:
        return 0.0  # already a multiple of the identity: nothing to shrink toward
    norms2 = np.einsum("ij,ij->i", x, x)
    beta_bar2 = (float(np.sum(norms2 * norms2)) / n - frob2) / (n * d)
    beta2 = min(max(beta_bar2, 0.0), delta2)
    return beta2 / delta2


def shrink_covariance(cov: ArrayLike, intensity: float) -> NDArray[np.float64]:
    """``(1 - intensity) · cov + intensity · tr(cov)/d · I``: keeps the trace, lifts the small eigenvalues."""
    if not 0.0 <= intensity <= 1.0:
        raise ValueError(f"shrinkage intensity must be in [0, 1], got {intensity}")
    matrix = np.array(cov, dtype=np.float64)
    d = matrix.shape[0]
    target = float(np.trace(matrix)) / d
    matrix *= 1.0 - intensity
    matrix[np.diag_indices(d)] += intensity * target
    return matrix


def gaussian_stats(features: ArrayLike, shrinkage: Shrinkage = None) -> GaussianStats:
    """Mean and covariance of ``features`` (n x d) in float64.

    Raises :class:`RankDeficientError` when n <= d (the covariance is singular) and ``shrinkage`` is None or 0
    (an intensity of 0 leaves the singular sample covariance as it is).
    """
    x = _as_features(features)
    n, d = x.shape
    if (shrinkage is None or shrinkage == 0) and n <= d:
        raise RankDeficientError(
            f"{n} samples of dimension {d}: their covariance has rank at most {n - 1} < {d}, so the Fréchet "
            f"distance would measure estimation noise. Use more than {d} samples (frames or clips), or accept "
            "a shrinkage estimate (shrinkage='ledoit-wolf' or an intensity in (0, 1]); results with shrinkage "
            "are not comparable to published numbers."
        )
    mean = x.mean(axis=0)
    centred = x - mean
    # Ledoit-Wolf's intensity is optimal for the maximum-likelihood covariance (divisor n), so it shrinks that
    # one, as scikit-learn's LedoitWolf does; every other estimate starts from the unbiased one (n - 1).
    divisor = n if shrinkage == "ledoit-wolf" else n - 1
    cov = centred.T @ centred / divisor
    if shrinkage is None:
        return GaussianStats(mean=mean, cov=cov, n=n)
    intensity = _ledoit_wolf(centred, cov) if shrinkage == "ledoit-wolf" else float(shrinkage)
    shrunk = shrink_covariance(cov, intensity)
    if n - 1 >= d:
        return GaussianStats(mean=mean, cov=shrunk, n=n, shrinkage=intensity)
    factor = centred * np.sqrt((1.0 - intensity) / divisor)
    ridge = intensity * float(np.trace(cov)) / d
    return GaussianStats(mean=mean, cov=shrunk, n=n, shrinkage=intensity, factor=factor, ridge=ridge)


def _square(matrix: ArrayLike, name: str) -> NDArray[np.float64]:
    """A finite square float64 matrix. Symmetry is assumed, not enforced: the factorisations and eigvalsh
    below read one triangle only, and a product of symmetric matrices is symmetric up to rounding."""
    array = np.asarray(matrix, dtype=np.float64)
    if array.ndim != 2 or array.shape[0] != array.shape[1]:
        raise ValueError(f"{name} must be a square matrix, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return array


def trace_sqrt_product(cov1: ArrayLike, cov2: ArrayLike, *, method: Literal["cholesky", "eigh"] | None = None) -> float:
    """``tr(sqrt(cov1 · cov2))`` for symmetric positive semi-definite matrices, as the sum of the square roots
    of the eigenvalues of the symmetric matrix Bᵀ cov2 B, where cov1 = B Bᵀ.

    Any such factor B makes Bᵀ cov2 B similar to cov1 · cov2 (same eigenvalues). ``"eigh"`` takes
    B = V diag(sqrt(w)) from cov1's eigendecomposition (which also makes Bᵀ cov2 B similar to
    sqrt(cov1) cov2 sqrt(cov1)) and works for any positive semi-definite cov1; ``"cholesky"`` takes cov1's
    Cholesky factor, several times cheaper, and needs cov1 positive definite. None: Cholesky, falling back
    to the eigendecomposition when cov1 is not positive definite.
    """
    s1 = _square(cov1, "cov1")
    s2 = _square(cov2, "cov2")
    if s1.shape != s2.shape:
        raise ValueError(f"covariances differ in shape: {s1.shape} and {s2.shape}")
    factor: NDArray[np.float64] | None = None
    if method in (None, "cholesky"):
        try:
            factor = np.asarray(np.linalg.cholesky(s1), dtype=np.float64)
        except np.linalg.LinAlgError:
            if method == "cholesky":
                raise ValueError("cov1 is not positive definite: use method='eigh'") from None
    if factor is None:
        eigenvalues, eigenvectors = np.linalg.eigh(s1)
        factor = eigenvectors * np.sqrt(np.clip(eigenvalues, 0.0, None))[None, :]
    middle = factor.T @ s2 @ factor
    return float(np.sqrt(np.clip(np.linalg.eigvalsh(middle), 0.0, None)).sum())


def frechet_distance(
    mean1: ArrayLike,
    cov1: ArrayLike,
    mean2: ArrayLike,
    cov2: ArrayLike,
    *,
    clip_negative: bool = True,
    method: Literal["cholesky", "eigh"] | None = None,
) -> float:
    """Fréchet distance (squared) between N(mean1, cov1) and N(mean2, cov2).

    ``clip_negative`` returns 0 instead of the tiny negative value rounding can leave for identical inputs;
    ``method`` picks the factorisation of cov1 (see :func:`trace_sqrt_product`).
    """
    m1 = np.asarray(mean1, dtype=np.float64).reshape(-1)
    m2 = np.asarray(mean2, dtype=np.float64).reshape(-1)
    s1 = _square(cov1, "cov1")
    s2 = _square(cov2, "cov2")
    if not (m1.shape[0] == m2.shape[0] == s1.shape[0] == s2.shape[0]):
        raise ValueError(f"dimensions differ: means {m1.shape[0]}, {m2.shape[0]}; covariances {s1.shape}, {s2.shape}")
    diff = m1 - m2
    value = (
        float(diff @ diff) + float(np.trace(s1)) + float(np.trace(s2)) - 2.0 * trace_sqrt_product(s1, s2, method=method)
    )
    return max(value, 0.0) if clip_negative else value


def _low_rank_trace_sqrt(
    factor1: NDArray[np.float64], ridge1: float, factor2: NDArray[np.float64], ridge2: float
) -> float:
    """``tr(sqrt(S1 S2))`` for S_i = F_iᵀ F_i + r_i I (d x d) when the rows of F1 and F2 together number k < d.

    With Q an orthonormal basis (d x k) of a space holding every row, S_i = Q A_i Qᵀ + r_i (I - Q Qᵀ) where
    A_i = (F_i Q)ᵀ (F_i Q) + r_i I_k, so S1 S2 has the eigenvalues of A1 A2 plus r1 r2 repeated d - k times.
    """
    d = factor1.shape[1]
    basis, _ = np.linalg.qr(np.concatenate([factor1, factor2]).T)
    k = basis.shape[1]
    inner1 = factor1 @ basis
    inner2 = factor2 @ basis
    a1 = inner1.T @ inner1 + ridge1 * np.eye(k)
    a2 = inner2.T @ inner2 + ridge2 * np.eye(k)
    return trace_sqrt_product(a1, a2) + (d - k) * float(np.sqrt(max(ridge1 * ridge2, 0.0)))


def frechet_distance_between(stats1: GaussianStats, stats2: GaussianStats) -> float:
    """Fréchet distance between two fitted feature sets.

    When both covariances are shrunk estimates from fewer samples than dimensions, the computation runs in
    the span of the samples (exactly: see :func:`_low_rank_trace_sqrt`), in O(d k²) instead of O(d³).
    """
    if stats1.dim != stats2.dim:
        raise ValueError(f"feature dimensions differ: {stats1.dim} and {stats2.dim}")
    f1, f2 = stats1.factor, stats2.factor
    if f1 is None or f2 is None or f1.shape[0] + f2.shape[0] >= stats1.dim:
        return frechet_distance(stats1.mean, stats1.cov, stats2.mean, stats2.cov)
    diff = stats1.mean - stats2.mean
    trace1 = float(np.sum(f1 * f1)) + stats1.ridge * stats1.dim
    trace2 = float(np.sum(f2 * f2)) + stats2.ridge * stats2.dim
    value = float(diff @ diff) + trace1 + trace2 - 2.0 * _low_rank_trace_sqrt(f1, stats1.ridge, f2, stats2.ridge)
    return max(value, 0.0)


def frechet_distance_of_features(features1: ArrayLike, features2: ArrayLike, shrinkage: Shrinkage = None) -> float:
    """Fit both feature sets (rows are samples) and return the Fréchet distance between them."""
    return frechet_distance_between(gaussian_stats(features1, shrinkage), gaussian_stats(features2, shrinkage))
