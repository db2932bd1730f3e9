"""DP mechanisms used by preprocessing: noisy histograms, ranges, quantile bins, category discovery.

Neighbouring tables differ by one row (add/remove). Each mechanism here takes one column, where
one row contributes to exactly one histogram cell, so every histogram has L2 sensitivity 1 and the
Gaussian mechanism with standard deviation ``σ = 1/sqrt(2ρ)`` is ρ-zCDP. Callers record each spend
in the :class:`~synth_core.privacy.PrivacyAccountant`.

Nothing returned here is a raw value: bin edges come from data-independent grids or public
bounds; discovered categories are exactly those whose noisy count clears a threshold set so a
value held by a single row is released with probability at most δ.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.stats import norm

#: Coarse grid for DP range finding: 8 buckets per decade, from 1e-6 to 1e15 on either side of 0.
_RANGE_STEPS_PER_DECADE = 8
_RANGE_MIN_EXP, _RANGE_MAX_EXP = -6, 15
#: Integer columns whose range holds at most this many values get one exact bin per integer.
MAX_UNIT_BINS = 256
#: Intervals between atoms for wide or continuous ranges.
DEFAULT_INTERVALS = 96


def gaussian_sigma(rho: float) -> float:
    """Noise standard deviation of the ρ-zCDP Gaussian mechanism at L2 sensitivity 1."""
    if rho <= 0:
        raise ValueError("rho must be > 0")
    return 1.0 / math.sqrt(2.0 * rho)


def noisy_counts(counts: NDArray[np.int64], rho: float, rng: np.random.Generator) -> NDArray[np.float64]:
    """Histogram counts plus Gaussian noise (ρ-zCDP for a histogram of one row per cell)."""
    return counts.astype(np.float64) + rng.normal(0.0, gaussian_sigma(rho), size=counts.shape)


def _range_grid() -> NDArray[np.float64]:
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
    rho: float,
    rng: np.random.Generator,
    grid: NDArray[np.float64] | None = None,
) -> tuple[float, float]:
    """A DP (low, high) covering the bulk of ``values``, snapped to a data-independent grid.

    Buckets of ``grid`` (default: a signed log grid, 8 per decade) get noisy counts; the range
    spans the buckets whose noisy count clears ``4σ``. Returns grid edges, never data values.
    """
    grid = _range_grid() if grid is None else grid
    # bucket i holds (grid[i-1], grid[i]]; values below/above the grid fall into the end buckets
    idx = np.clip(np.searchsorted(grid, values, side="left"), 1, len(grid) - 1)
    counts = np.bincount(idx, minlength=len(grid)).astype(np.int64)
    noisy = noisy_counts(counts, rho, rng)
    sigma = gaussian_sigma(rho)
    hot = np.flatnonzero(noisy > 4.0 * sigma)
    if hot.size == 0:
        # nothing clears the noise: fall back to the bucket with the largest noisy count
        hot = np.array([int(np.argmax(noisy))])
    low = float(grid[max(hot.min() - 1, 0)])
    high = float(grid[hot.max()])
    if low >= high:
        high = low + 1.0
    return low, high


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
    rng: np.random.Generator,
) -> QuantileBins:
    """Noisy histogram over :func:`bin_layout`; small noisy counts (< 2σ) are zeroed so the noise
    on many empty tail bins does not invent mass. ``values`` must be non-null; they are clipped."""
    left, right = bin_layout(low, high, integer=integer)
    clipped = np.clip(values, left[0], right[-1])
    if integer:
        clipped = np.rint(clipped)
    counts = np.bincount(assign_bins(clipped, left, right), minlength=left.size).astype(np.int64)
    noisy = noisy_counts(counts, rho, rng)
    noisy[noisy < 2.0 * gaussian_sigma(rho)] = 0.0
    total = noisy.sum()
    mass = noisy / total if total > 0 else np.full(left.size, 1.0 / left.size)
    return QuantileBins(left=left, right=right, mass=mass)


def discovery_threshold(rho: float, delta: float) -> float:
    """Noisy-count threshold so a value held by one row is released with probability ≤ δ."""
    return 1.0 + gaussian_sigma(rho) * float(norm.isf(delta))


def dp_discover_categories(
    values: Sequence[Hashable], rho: float, delta: float, rng: np.random.Generator
) -> dict[Hashable, float]:
    """Values whose Gaussian-noised count clears :func:`discovery_threshold`, with those noisy counts.

    (ρ, δ)-approximate zCDP for add/remove of one row (one row touches one count; a value new to
    the neighbour has count 1 and passes with probability ≤ δ). Counts are of non-null values.
    """
    uniq, counts = np.unique(np.asarray(values, dtype=object), return_counts=True)
    noisy = noisy_counts(counts.astype(np.int64), rho, rng)
    keep = noisy > discovery_threshold(rho, delta)
    return {v: float(c) for v, c in zip(uniq[keep], noisy[keep], strict=True)}


def dp_count(n: int, rho: float, rng: np.random.Generator) -> int:
    """A ρ-zCDP noisy row count, rounded and at least 1."""
    return max(1, round(n + rng.normal(0.0, gaussian_sigma(rho))))
