"""DP preprocessing mechanisms: nothing released is a raw value; point masses survive."""

from __future__ import annotations

import numpy as np
import pytest

from synth_core.mechanisms import (
    bin_layout,
    discovery_threshold,
    dp_discover_categories,
    dp_quantile_bins,
    dp_range,
    gaussian_sigma,
    range_threshold_sigmas,
)
from synth_core.privacy import PrivacyAccountant, PrivacyBudget


@pytest.fixture(scope="module")
def acc() -> PrivacyAccountant:
    """An accountant the mechanisms release through (its budget is not the point here)."""
    return PrivacyAccountant(PrivacyBudget(1.0, 1e-6))


def test_dp_range_covers_the_bulk_and_returns_grid_values_only(acc: PrivacyAccountant) -> None:
    rng = np.random.default_rng(0)
    values = rng.normal(150_000, 40_000, size=20_000).clip(10_000, None)
    low, high = dp_range(values, rho=0.01, accountant=acc, rng=rng, name="range:x")
    assert low <= np.quantile(values, 0.01) and high >= np.quantile(values, 0.99)
    grid_exps = np.log10([abs(low), abs(high)]) * 8
    assert np.allclose(grid_exps, np.round(grid_exps))  # edges of the public 1/8-decade grid
    assert not np.isin([low, high], values).any()


def test_dp_range_is_not_stretched_by_noise_in_empty_buckets(acc: PrivacyAccountant) -> None:
    # a bill-amount-like column at a small per-column ρ (σ ≈ 150 rows): a 4σ bucket threshold let
    # one of the hundreds of empty buckets (up to ±1e15) into about 1 range in 300
    rng = np.random.default_rng(4)
    values = np.round(rng.lognormal(10.0, 1.2, size=24_000))
    q05, q95 = np.quantile(values, [0.05, 0.95])
    ranges = np.array(
        [dp_range(values, rho=2.2e-5, accountant=acc, rng=rng, name="range:x") for _ in range(2_000)]
    )
    assert (ranges[:, 0] >= 0).all() and (ranges[:, 1] <= 1e7).all(), np.sort(ranges[:, 1])[-3:]
    assert (ranges[:, 0] <= q05).mean() > 0.95 and (ranges[:, 1] >= q95).mean() > 0.95
    assert range_threshold_sigmas(338) > 5.5 > range_threshold_sigmas(1) >= 4.0


def test_dp_range_keeps_a_thin_tail_beside_a_point_mass(acc: PrivacyAccountant) -> None:
    # capital-gain-like: 92 % zeros, 8 % spread over two decades, ~3σ per bucket: no single tail
    # bucket is trustworthy, the run of them is
    rng = np.random.default_rng(5)
    values = np.where(rng.random(32_000) < 0.92, 0.0, np.round(10 ** rng.uniform(3, 5, 32_000)))
    ranges = np.array(
        [dp_range(values, rho=2e-4, accountant=acc, rng=rng, name="range:x") for _ in range(300)]
    )
    covers = (ranges[:, 0] <= 0) & (ranges[:, 1] >= 5e4) & (ranges[:, 1] <= 1e6)
    assert covers.mean() > 0.9, covers.mean()


def test_dp_range_with_too_few_rows_for_the_noise_still_finds_the_bulk_mostly(acc: PrivacyAccountant) -> None:
    # 3,000 rows at σ ≈ 150: no bucket clears the threshold; the best-scoring window decides
    rng = np.random.default_rng(6)
    values = np.round(rng.lognormal(10.0, 1.2, size=3_000))
    ranges = np.array(
        [dp_range(values, rho=2.2e-5, accountant=acc, rng=rng, name="range:x") for _ in range(500)]
    )
    near = (ranges[:, 0] >= -1e3) & (ranges[:, 1] <= 1e8)
    assert near.mean() > 0.95, near.mean()  # the old fallback (loudest single bucket): 0.83


def test_quantile_bins_keep_the_point_mass_at_zero(acc: PrivacyAccountant) -> None:
    rng = np.random.default_rng(1)
    values = np.where(rng.random(30_000) < 0.92, 0.0, rng.integers(100, 99_999, 30_000)).astype(float)
    bins, null = dp_quantile_bins(
        values, 0.0, 99_999.0, integer=True, rho=0.01, accountant=acc, rng=rng, name="quantiles:x"
    )
    assert null is None
    atom0 = np.flatnonzero((bins.left == 0) & (bins.right == 0))
    assert atom0.size == 1
    assert abs(bins.mass[atom0[0]] - 0.92) < 0.01
    assert bins.mass.sum() == np.float64(1.0) or abs(bins.mass.sum() - 1) < 1e-9


def test_small_integer_ranges_get_one_exact_bin_per_value() -> None:
    left, right = bin_layout(17, 90, integer=True)
    assert (left == right).all() and left.tolist() == list(range(17, 91))


def test_category_discovery_never_releases_a_singleton(acc: PrivacyAccountant) -> None:
    rng = np.random.default_rng(2)
    values = ["common"] * 5_000 + ["rare-but-real"] * 300 + ["ZZ-UNIQUE-MARKER"]
    for _ in range(200):
        found, _ = dp_discover_categories(
            values, rho=0.01, delta=1e-7, accountant=acc, rng=rng, name="categories:x"
        )
        assert "ZZ-UNIQUE-MARKER" not in found
        assert {"common", "rare-but-real"} <= set(found)


def test_discovery_threshold_grows_with_noise_and_shrinking_delta() -> None:
    assert discovery_threshold(0.01, 1e-7) > discovery_threshold(0.1, 1e-7)
    assert discovery_threshold(0.01, 1e-9) > discovery_threshold(0.01, 1e-6)
    assert gaussian_sigma(0.5) == 1.0


def test_datetime_range_is_found_within_a_month(acc: PrivacyAccountant) -> None:
    from synth_core.mechanisms import datetime_range_grid

    rng = np.random.default_rng(3)
    start = 8_766.0  # 1994-01-01 in days since the epoch
    values = start + rng.integers(0, 115, 20_000).astype(float)
    low, high = dp_range(
        values, rho=0.01, accountant=acc, rng=rng, name="range:t", grid=datetime_range_grid(86_400.0)
    )
    assert start - 31 <= low <= start and start + 114 <= high <= start + 115 + 31


def test_a_nullable_histogram_releases_the_null_count_as_one_more_cell_of_one_release() -> None:
    """The NULL count rides in the histogram's own vector (a row is NULL or in one bin:
    sensitivity 1, one charge); no separate non-NULL count is released beside it."""
    acc = PrivacyAccountant(PrivacyBudget(1.0, 1e-6))
    values = np.arange(10, dtype=float)
    bins, null = dp_quantile_bins(
        values, 0.0, 9.0, integer=True, rho=50.0, accountant=acc, rng=np.random.default_rng(0),
        name="quantiles:x", null_count=5,
    )  # fmt: skip
    (spend,) = acc.spends
    assert spend.details["size"] == bins.mass.size + 1 and spend.details["l2_sensitivity"] == 1.0
    assert spend.details["rho"] == pytest.approx(50.0) and spend.details["sigma"] == pytest.approx(0.1)
    assert null is not None and abs(null - 5) < 1.0


def test_discovery_releases_null_as_a_key_of_the_same_release() -> None:
    acc = PrivacyAccountant(PrivacyBudget(1.0, 1e-6))
    found, null = dp_discover_categories(
        ["a"] * 50, rho=50.0, delta=1e-6, accountant=acc, rng=np.random.default_rng(0),
        name="categories:x", null_count=7,
    )  # fmt: skip
    (spend,) = acc.spends
    # the number of distinct values in the data is not a DP quantity: it is not recorded
    assert spend.delta == 1e-6 and "size" not in spend.details
    assert set(found) == {"a"} and null is not None and abs(null - 7) < 1.0
