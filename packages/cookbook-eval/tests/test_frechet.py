from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest
import scipy.linalg
from numpy.typing import NDArray
from sklearn.covariance import ledoit_wolf

from cookbook_eval.frechet import (
    RankDeficientError,
    frechet_distance,
    frechet_distance_between,
    frechet_distance_of_features,
    gaussian_stats,
    ledoit_wolf_intensity,
    shrink_covariance,
    trace_sqrt_product,
)


def _structured(rng: np.random.Generator, n: int, d: int, scale: float = 1.0) -> NDArray[np.float64]:
    """Samples with a non-diagonal covariance whose eigenvalues span a few decades."""
    basis, _ = np.linalg.qr(rng.standard_normal((d, d)))
    spectrum = np.geomspace(1.0, 1e-3, d)
    samples: NDArray[np.float64] = scale * (rng.standard_normal((n, d)) * np.sqrt(spectrum)) @ basis.T
    return samples


def _sqrtm_reference(
    mu1: NDArray[np.float64], s1: NDArray[np.float64], mu2: NDArray[np.float64], s2: NDArray[np.float64]
) -> float:
    """The textbook formula with a general matrix square root of the (non-symmetric) product."""
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean.real))


@pytest.mark.parametrize("d", [8, 16, 32, 64])
def test_agrees_with_the_sqrtm_reference(d: int) -> None:
    rng = np.random.default_rng(d)
    a = _structured(rng, 6 * d, d)
    b = _structured(rng, 5 * d, d, scale=1.3) + 0.2
    mu1, s1 = a.mean(0), np.asarray(np.cov(a, rowvar=False), dtype=np.float64)
    mu2, s2 = b.mean(0), np.asarray(np.cov(b, rowvar=False), dtype=np.float64)
    ours = frechet_distance(mu1, s1, mu2, s2)
    reference = _sqrtm_reference(mu1, s1, mu2, s2)
    assert ours == pytest.approx(reference, rel=1e-6)
    assert trace_sqrt_product(s1, s2) == pytest.approx(float(np.trace(scipy.linalg.sqrtm(s1 @ s2).real)), rel=1e-8)


def test_identical_sets_are_at_distance_zero() -> None:
    features = _structured(np.random.default_rng(0), 200, 32)
    assert frechet_distance_of_features(features, features) == pytest.approx(0.0, abs=1e-10)
    stats = gaussian_stats(features)
    unclipped = frechet_distance(stats.mean, stats.cov, stats.mean, stats.cov, clip_negative=False)
    assert abs(unclipped) < 1e-10 * float(np.trace(stats.cov))


def test_equal_covariances_leave_the_squared_mean_shift() -> None:
    rng = np.random.default_rng(1)
    features = _structured(rng, 300, 24)
    stats = gaussian_stats(features)
    shift = rng.standard_normal(24)
    value = frechet_distance(stats.mean, stats.cov, stats.mean + shift, stats.cov)
    assert value == pytest.approx(float(shift @ shift), rel=1e-9)


def test_grows_monotonically_with_a_mean_shift() -> None:
    rng = np.random.default_rng(2)
    a = _structured(rng, 400, 16)
    b = _structured(rng, 400, 16)
    direction = rng.standard_normal(16)
    values = [frechet_distance_of_features(a, b + step * direction) for step in (0.0, 0.5, 1.0, 2.0, 4.0)]
    assert values[0] > 0
    assert all(later > earlier for earlier, later in pairwise(values))


def test_too_few_samples_is_an_error_that_says_what_to_do() -> None:
    features = np.random.default_rng(3).standard_normal((20, 64))
    with pytest.raises(RankDeficientError, match=r"20 samples of dimension 64.*shrinkage"):
        gaussian_stats(features)
    with pytest.raises(RankDeficientError):
        frechet_distance_of_features(features, features + 1)
    with pytest.raises(RankDeficientError):
        gaussian_stats(features[:, :20])  # n == d is singular too (rank n - 1)
    with pytest.raises(RankDeficientError):
        gaussian_stats(features, shrinkage=0)  # an intensity of 0 shrinks nothing


def test_ledoit_wolf_matches_scikit_learn() -> None:
    features = _structured(np.random.default_rng(4), 40, 64)
    shrunk, intensity = ledoit_wolf(features)
    assert ledoit_wolf_intensity(features) == pytest.approx(intensity, rel=1e-9)
    sample = np.cov(features, rowvar=False, bias=True)
    np.testing.assert_allclose(shrink_covariance(sample, intensity), shrunk, rtol=1e-9, atol=1e-12)
    # The fit shrinks the covariance the intensity is computed for (divisor n), as scikit-learn does.
    stats = gaussian_stats(features, "ledoit-wolf")
    assert stats.shrinkage == pytest.approx(intensity, rel=1e-9)
    np.testing.assert_allclose(stats.cov, shrunk, rtol=1e-9, atol=1e-12)


def test_shrinkage_makes_few_samples_usable() -> None:
    rng = np.random.default_rng(5)
    a = rng.standard_normal((30, 64))
    b = rng.standard_normal((25, 64)) + 0.5
    stats = gaussian_stats(a, "ledoit-wolf")
    assert stats.shrinkage is not None and 0 < stats.shrinkage <= 1
    assert np.linalg.eigvalsh(stats.cov).min() > 0  # full rank now
    assert np.trace(stats.cov) == pytest.approx(np.trace(np.cov(a, rowvar=False, bias=True)))  # trace kept
    assert np.trace(gaussian_stats(a, 0.5).cov) == pytest.approx(np.trace(np.cov(a, rowvar=False)))
    same = frechet_distance_of_features(a, a, shrinkage="ledoit-wolf")
    shifted = frechet_distance_of_features(a, b, shrinkage="ledoit-wolf")
    fixed = frechet_distance_of_features(a, b, shrinkage=0.5)
    assert same == pytest.approx(0.0, abs=1e-9)
    assert shifted > 64 * 0.25 * 0.5  # most of the squared mean shift (64 x 0.25) shows
    assert fixed > 0
    assert gaussian_stats(a, 0.5).shrinkage == 0.5
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        gaussian_stats(a, 1.5)


def test_rejects_bad_inputs() -> None:
    with pytest.raises(ValueError, match="2-D"):
        gaussian_stats(np.zeros(10))
    with pytest.raises(ValueError, match="NaN"):
        gaussian_stats(np.full((10, 2), np.nan))
    with pytest.raises(ValueError, match="dimensions differ"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


@pytest.mark.parametrize("shrinkage", ["ledoit-wolf", 0.3])
def test_low_rank_path_equals_the_dense_computation(shrinkage: float | str) -> None:
    rng = np.random.default_rng(6)
    a = _structured(rng, 30, 128)
    b = _structured(rng, 45, 128, scale=1.5) + 0.1
    s1, s2 = gaussian_stats(a, shrinkage), gaussian_stats(b, shrinkage)  # type: ignore[arg-type]
    assert s1.factor is not None and s2.factor is not None  # 30 + 45 samples < 128 dimensions
    dense = frechet_distance(s1.mean, s1.cov, s2.mean, s2.cov)
    assert frechet_distance_between(s1, s2) == pytest.approx(dense, rel=1e-9)
    assert frechet_distance_between(s1, s1) == pytest.approx(0.0, abs=1e-9 * float(np.trace(s1.cov)))
    np.testing.assert_allclose(s1.factor.T @ s1.factor + s1.ridge * np.eye(128), s1.cov, atol=1e-12)


def test_both_factorisations_agree_and_singular_covariances_work() -> None:
    rng = np.random.default_rng(7)
    a = _structured(rng, 200, 32)
    s1 = np.asarray(np.cov(a, rowvar=False), dtype=np.float64)
    s2 = np.asarray(np.cov(_structured(rng, 150, 32, scale=2.0), rowvar=False), dtype=np.float64)
    reference = float(np.trace(scipy.linalg.sqrtm(s1 @ s2).real))
    assert trace_sqrt_product(s1, s2, method="eigh") == pytest.approx(reference, rel=1e-9)
    assert trace_sqrt_product(s1, s2, method="cholesky") == pytest.approx(reference, rel=1e-9)
    # A singular (rank 8) covariance: Cholesky fails, the default falls back to the eigendecomposition.
    low = a[:9] - a[:9].mean(0)
    singular = low.T @ low / 8
    with pytest.raises(ValueError, match="positive definite"):
        trace_sqrt_product(singular, s2, method="cholesky")
    expected = trace_sqrt_product(singular, s2, method="eigh")
    assert trace_sqrt_product(singular, s2) == expected
    # S1 S2 with S1 = Cᵀ C / 8 has the non-zero eigenvalues of the 9 x 9 matrix C S2 Cᵀ / 8.
    small = low @ s2 @ low.T / 8
    # (zero eigenvalues come out as rounding noise ~1e-16, whose square roots add ~1e-8)
    assert expected == pytest.approx(float(np.sqrt(np.clip(np.linalg.eigvalsh(small), 0, None)).sum()), rel=1e-6)
