"""DP mechanisms used by preprocessing: noisy histograms, ranges, quantile bins, category discovery.

Neighbouring tables differ by one row (add/remove). Each mechanism here takes one column, where
one row contributes to exactly one cell of the released vector (a NULL row to the NULL cell, which
is a cell of the same vector), so every release has L2 sensitivity 1 and the Gaussian mechanism
with standard deviation ``σ = 1/sqrt(2ρ)`` is ρ-zCDP. Every release goes through the
:class:`~synth_core.privacy.PrivacyAccountant`'s release methods, which take that sensitivity,
charge from it and draw the noise: nothing here adds noise by itself.

Nothing returned here is a raw value: bin edges come from data-independent grids or public
bounds; discovered categories are exactly those whose noisy count clears a threshold set so a
value held by a single row is released with probability at most δ.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.stats import norm

from synth_core.privacy import PrivacyAccountant, ThresholdedRelease

#: Coarse grid for DP range finding: 8 buckets per decade, from 1e-6 to 1e15 on either side of 0.
_RANGE_STEPS_PER_DECADE = 8
_RANGE_MIN_EXP, _RANGE_MAX_EXP = -6, 15
#: Chance that :func:`dp_range` lets any bucket holding no row into a range (a union bound over
#: the grid's buckets sets the threshold): a spurious bucket at 1e12 stretches the range, and the
#: equal-width intervals over it, so far that the column's values collapse into one bin.
RANGE_SPURIOUS_BUCKET_PROB = 1e-6
#: Buckets whose noisy count exceeds this many σ can join a range cluster (see :func:`dp_range`).
RANGE_WARM_SIGMAS = 2.0
#: Integer columns whose range holds at most this many values get one exact bin per integer.
MAX_UNIT_BINS = 256
#: Intervals between atoms for wide or continuous ranges.
DEFAULT_INTERVALS = 96


def gaussian_sigma(rho: float) -> float:
    """Noise standard deviation of the ρ-zCDP Gaussian mechanism at L2 sensitivity 1."""
    if rho <= 0:
        raise ValueError("rho must be > 0")
    return 1.0 / math.sqrt(2.0 * rho)


def range_grid() -> NDArray[np.float64]:
    """Sorted, data-independent bucket edges: ±10^(k/8) and 0."""
    exps = np.arange(_RANGE_MIN_EXP * _RANGE_STEPS_PER_DECADE, _RANGE_MAX_EXP * _RANGE_STEPS_PER_DECADE + 1)
    pos = 10.0 ** (exps / _RANGE_STEPS_PER_DECADE)
    return np.concatenate([-pos[::-1], [0.0], pos])


def datetime_range_grid(unit_seconds: float) -> NDArray[np.float64]:
    """Data-independent edges for datetimes: every 30 days from 1800 to 2200, in ``unit_seconds``.

    A log grid over seconds since 1970 would be years wide today; a linear calendar grid keeps
    a DP datetime range within a month of the data's.
    """
    start, stop = -5_364_662_400.0, 7_258_118_400.0  # 1800-01-01, 2200-01-01 (UTC seconds)
    return np.arange(start, stop + 1, 30 * 86_400.0) / unit_seconds


def dp_range(
    values: NDArray[np.float64],
    *,
    rho: float,
    accountant: PrivacyAccountant,
    rng: np.random.Generator,
    name: str,
    grid: NDArray[np.float64] | None = None,
    **details: Any,
) -> tuple[float, float]:
    """A DP (low, high) covering the bulk of ``values``, snapped to a data-independent grid.

    Buckets of ``grid`` (default: a signed log grid, 8 per decade) get noisy counts (the only
    access to the data; everything after is post-processing). Runs of buckets whose noisy count
    exceeds :data:`RANGE_WARM_SIGMAS` σ, at most one bucket apart, are candidate clusters; a
    cluster of ``L`` buckets enters the range when its summed noisy count clears
    ``range_threshold_sigmas(n_buckets)·σ·sqrt(L)``, so noise alone puts a bucket holding no row
    into the range with probability about :data:`RANGE_SPURIOUS_BUCKET_PROB`, while a thin but
    wide tail (a point mass at 0 plus amounts spread over two decades) still enters as a whole.
    When no cluster clears, the window (of 1, 2, 4, … buckets) with the largest noisy z-score is
    the range. Returns grid edges, never data values. Released and charged as ``name``.
    """
    grid = range_grid() if grid is None else grid
    return dp_range_of_counts(
        range_bucket_counts(values, grid), grid, rho=rho, accountant=accountant, rng=rng, name=name, **details
    )


def range_buckets(values: NDArray[np.float64], grid: NDArray[np.float64]) -> NDArray[np.int64]:
    """Bucket of each value for :func:`dp_range`: bucket ``i`` (0-based) holds
    ``(grid[i], grid[i+1]]``; values below/above the grid fall into the end buckets."""
    return np.clip(np.searchsorted(grid, values, side="left"), 1, len(grid) - 1) - 1


def range_bucket_counts(values: NDArray[np.float64], grid: NDArray[np.float64]) -> NDArray[np.int64]:
    """Rows per bucket of :func:`range_buckets`, shape ``(len(grid) - 1,)``."""
    return np.bincount(range_buckets(values, grid), minlength=len(grid) - 1).astype(np.int64)


def dp_range_of_counts(
    counts: NDArray[np.int64],
    grid: NDArray[np.float64],
    *,
    rho: float,
    accountant: PrivacyAccountant,
    rng: np.random.Generator,
    name: str,
    **details: Any,
) -> tuple[float, float]:
    """:func:`dp_range` from the exact bucket counts (:func:`range_bucket_counts`, or the same
    counts computed inside a warehouse): the release, its charge and the post-processing."""
    noisy = accountant.release_gaussian(name, counts, l2_sensitivity=1.0, rho=rho, rng=rng, **details)
    sigma = gaussian_sigma(rho)
    z = range_threshold_sigmas(noisy.size)
    kept: list[tuple[int, int]] = []
    warm = np.flatnonzero(noisy > RANGE_WARM_SIGMAS * sigma)
    if warm.size:
        for run in np.split(warm, np.flatnonzero(np.diff(warm) > 2) + 1):
            first, last = int(run[0]), int(run[-1])
            if noisy[first : last + 1].sum() > z * sigma * math.sqrt(last - first + 1):
                kept.append((first, last))
    if kept:
        first, last = kept[0][0], kept[-1][1]
    else:
        first, last = _max_z_window(noisy, sigma)
    low, high = float(grid[first]), float(grid[last + 1])
    if low >= high:
        high = low + 1.0
    return low, high


def _max_z_window(noisy: NDArray[np.float64], sigma: float) -> tuple[int, int]:
    """First and last bucket of the window of 1, 2, 4, … consecutive buckets whose summed noisy
    count is the most standard deviations above 0 (too few rows for any single cluster to clear
    the threshold: the bulk still shows as the largest sum relative to its noise)."""
    cumulative = np.concatenate([[0.0], np.cumsum(noisy)])
    best = (-math.inf, 0, 0)
    width = 1
    while width <= noisy.size:
        scores = (cumulative[width:] - cumulative[:-width]) / (sigma * math.sqrt(width))
        start = int(np.argmax(scores))
        if scores[start] > best[0]:
            best = (float(scores[start]), start, start + width - 1)
        width *= 2
    return best[1], best[2]


def range_threshold_sigmas(n_buckets: int) -> float:
    """Noise standard deviations (scaled by sqrt of a cluster's length) a cluster's summed noisy
    count must clear to enter a DP range: the one-sided Gaussian quantile at
    ``RANGE_SPURIOUS_BUCKET_PROB / n_buckets`` (at least 4; 5.8 for the default grid's 338 buckets).

    A lone bucket that clears 4σ on noise (probability 3.2e-5 each, about 1 % per column over the
    default grid, 14 % per fit of Credit Default's 14 columns without public bounds) used to
    enter the range: such a fit stretched a bill-amount column to a far grid bucket and sampled
    values tens of standard deviations away (benchmark Wasserstein ratio 80,887).
    """
    return max(4.0, float(norm.isf(RANGE_SPURIOUS_BUCKET_PROB / max(int(n_buckets), 1))))


@dataclass(frozen=True)
class QuantileBins:
    """A DP estimate of a numeric column's distribution: atoms and intervals with masses.

    ``left[i] == right[i]`` marks an atom (a point mass, e.g. 0 in ``capital_gain``); otherwise the
    bin is the interval ``(left[i], right[i])`` with mass spread uniformly. ``mass`` sums to 1.
    Arrays have shape ``(n_bins,)``, dtype float64, sorted by position.
    """

    left: NDArray[np.float64]
    right: NDArray[np.float64]
    mass: NDArray[np.float64]

    @property
    def low(self) -> float:
        return float(self.left[0])

    @property
    def high(self) -> float:
        return float(self.right[-1])

    @property
    def cdf_right(self) -> NDArray[np.float64]:
        return np.cumsum(self.mass)

    def to_dict(self) -> dict[str, list[float]]:
        return {"left": self.left.tolist(), "right": self.right.tolist(), "mass": self.mass.tolist()}

    @classmethod
    def from_dict(cls, raw: dict[str, list[float]]) -> QuantileBins:
        return cls(
            left=np.asarray(raw["left"], dtype=np.float64),
            right=np.asarray(raw["right"], dtype=np.float64),
            mass=np.asarray(raw["mass"], dtype=np.float64),
        )


def bin_layout(
    low: float, high: float, *, integer: bool, intervals: int = DEFAULT_INTERVALS
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Data-independent bins over ``[low, high]``: exact integers when few, else atoms + intervals.

    Atoms sit at ``low``, ``high`` (where clipped values pile up) and at 0 when inside the range
    (the most common point mass in real tables); equal-width open intervals fill the gaps.
    """
    if integer:
        lo_i, hi_i = math.ceil(low), math.floor(high)
        if hi_i < lo_i:
            lo_i = hi_i = round(low)
        if hi_i - lo_i + 1 <= MAX_UNIT_BINS:
            pts = np.arange(lo_i, hi_i + 1, dtype=np.float64)
            return pts, pts.copy()
        low, high = float(lo_i), float(hi_i)
    atoms = sorted({low, high} | ({0.0} if low < 0.0 < high else set()))
    edges = np.linspace(low, high, intervals + 1)
    cut = np.unique(np.concatenate([edges, atoms]))
    lefts: list[float] = []
    rights: list[float] = []
    for a in atoms:
        lefts.append(a)
        rights.append(a)
    for a, b in itertools.pairwise(cut):
        lefts.append(float(a))
        rights.append(float(b))
    order = np.lexsort((np.asarray(rights), np.asarray(lefts)))
    left = np.asarray(lefts)[order]
    right = np.asarray(rights)[order]
    # put each atom before the interval that starts at it
    return left, right


def assign_bins(
    values: NDArray[np.float64], left: NDArray[np.float64], right: NDArray[np.float64]
) -> NDArray[np.int64]:
    """Index of the bin holding each (already clipped) value: atoms win over intervals."""
    atom_mask = left == right
    out = np.empty(values.shape[0], dtype=np.int64)
    atom_vals = left[atom_mask]
    atom_idx = np.flatnonzero(atom_mask)
    int_idx = np.flatnonzero(~atom_mask)
    is_atom = np.isin(values, atom_vals)
    if atom_vals.size:
        pos = np.searchsorted(atom_vals, values[is_atom])
        out[is_atom] = atom_idx[pos]
    if int_idx.size:
        rest = values[~is_atom]
        int_left = left[int_idx]
        pos = np.clip(np.searchsorted(int_left, rest, side="right") - 1, 0, int_idx.size - 1)
        out[~is_atom] = int_idx[pos]
    elif (~is_atom).any():  # integer unit bins: round to the nearest integer atom
        pos = np.clip(np.searchsorted(atom_vals, values[~is_atom]), 0, atom_vals.size - 1)
        out[~is_atom] = atom_idx[pos]
    return out


def dp_quantile_bins(
    values: NDArray[np.float64],
    low: float,
    high: float,
    *,
    integer: bool,
    rho: float,
    accountant: PrivacyAccountant,
    rng: np.random.Generator,
    name: str,
    null_count: int | None = None,
    **details: Any,
) -> tuple[QuantileBins, float | None]:
    """Noisy histogram over :func:`bin_layout`; small noisy counts (< 2σ) are zeroed so the noise
    on many empty tail bins does not invent mass. ``values`` must be non-null; they are clipped.

    With ``null_count`` (a nullable column's NULL rows), the NULL count is one more cell of the
    same released vector: a row is either NULL or in one bin, so the vector keeps L2 sensitivity 1
    and one charge of ``rho`` covers both. Returns the bins and the noisy NULL count (``None``
    without ``null_count``). No count of non-NULL rows is released: it would be a second count
    the same row moves (L2 sensitivity √2 for the charge of 1).
    """
    left, right = bin_layout(low, high, integer=integer)
    counts = np.bincount(quantile_bin_of(values, left, right, integer=integer), minlength=left.size)
    return dp_quantile_bins_of_counts(
        counts.astype(np.int64), left, right, rho=rho, accountant=accountant, rng=rng, name=name,
        null_count=null_count, **details,
    )  # fmt: skip


def quantile_bin_of(
    values: NDArray[np.float64], left: NDArray[np.float64], right: NDArray[np.float64], *, integer: bool
) -> NDArray[np.int64]:
    """Bin of :func:`bin_layout` holding each non-null value: clipped to the layout (and rounded
    half to even when ``integer``), atoms first (:func:`assign_bins`)."""
    clipped = np.clip(values, left[0], right[-1])
    if integer:
        clipped = np.rint(clipped)
    return assign_bins(clipped, left, right)


def dp_quantile_bins_of_counts(
    counts: NDArray[np.int64],
    left: NDArray[np.float64],
    right: NDArray[np.float64],
    *,
    rho: float,
    accountant: PrivacyAccountant,
    rng: np.random.Generator,
    name: str,
    null_count: int | None = None,
    **details: Any,
) -> tuple[QuantileBins, float | None]:
    """:func:`dp_quantile_bins` from the exact rows per bin of ``bin_layout`` (``counts``, shape
    ``(left.size,)``, from :func:`quantile_bin_of` or a warehouse): release, charge, post-processing."""
    cells = counts if null_count is None else np.append(counts, int(null_count))
    released = accountant.release_gaussian(
        name, cells, l2_sensitivity=1.0, rho=rho, rng=rng, bins=int(left.size), **details
    )
    noisy = released[: left.size].copy()
    noisy_null = None if null_count is None else float(released[-1])
    noisy[noisy < 2.0 * gaussian_sigma(rho)] = 0.0
    total = noisy.sum()
    mass = noisy / total if total > 0 else np.full(left.size, 1.0 / left.size)
    return QuantileBins(left=left, right=right, mass=mass), noisy_null


def discovery_threshold(rho: float, delta: float) -> float:
    """Noisy-count threshold so a value held by one row is released with probability ≤ δ."""
    return ThresholdedRelease("discovery", rho, delta).threshold


def dp_discover_categories(
    values: Sequence[Hashable],
    *,
    rho: float,
    delta: float,
    accountant: PrivacyAccountant,
    rng: np.random.Generator,
    name: str,
    null_count: int | None = None,
    **details: Any,
) -> tuple[dict[Hashable, float], float | None]:
    """Values whose Gaussian-noised count clears :func:`discovery_threshold`, with those noisy counts.

    (ρ, δ)-approximate zCDP for add/remove of one row (one row touches one count; a value new to
    the neighbour has count 1 and passes with probability ≤ δ). ``values`` are the non-null
    values; with ``null_count`` the NULL rows are one more key of the same release, public and
    always released (a row is NULL or one value: sensitivity 1 still). Returns the discovered
    values with their noisy counts, and the noisy NULL count (``None`` without ``null_count``).
    """
    uniq, counts = np.unique(np.asarray(values, dtype=object), return_counts=True)
    return dp_discover_of_counts(
        uniq, counts, rho=rho, delta=delta, accountant=accountant, rng=rng, name=name,
        null_count=null_count, **details,
    )  # fmt: skip


def dp_discover_of_counts(
    uniq: NDArray[Any],
    counts: NDArray[np.int64],
    *,
    rho: float,
    delta: float,
    accountant: PrivacyAccountant,
    rng: np.random.Generator,
    name: str,
    null_count: int | None = None,
    **details: Any,
) -> tuple[dict[Hashable, float], float | None]:
    """:func:`dp_discover_categories` from the distinct non-null values ``uniq`` (sorted as
    ``numpy.unique`` sorts them) and their exact row counts: release, charge, post-processing."""
    # the NULL key (public, always released) first: a value held only by an added row sorts in
    # among the others, but the keys' order is never released, only the values that clear
    lead = [] if null_count is None else [int(null_count)]
    keys = np.concatenate([np.asarray(lead, dtype=np.int64), counts.astype(np.int64)])
    always = np.arange(keys.size) < len(lead)
    noisy, released = accountant.release_thresholded(
        name, keys, rho=rho, delta=delta, rng=rng, always=always, **details
    )
    value_noisy, value_released = noisy[len(lead) :], released[len(lead) :]
    found = {v: float(c) for v, c in zip(uniq[value_released], value_noisy[value_released], strict=True)}
    return found, (float(noisy[0]) if lead else None)


def dp_count(
    n: int, *, rho: float, accountant: PrivacyAccountant, rng: np.random.Generator, name: str = "row_count"
) -> int:
    """A ρ-zCDP noisy row count (sensitivity 1), rounded and at least 1; released as ``name``."""
    noisy = accountant.release_gaussian(name, np.array([n]), l2_sensitivity=1.0, rho=rho, rng=rng)
    return max(1, round(float(noisy[0])))
