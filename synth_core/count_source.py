"""Count sources: the only access to rows the DP transformer and the marginal generators need.

The transformer's DP preprocessing (row count, range buckets, quantile-bin histograms, category
counts, NULL counts) and AIM/MST's marginals are all *counts of per-row codes*: each row gets a
code per column from a rule fixed by public facts and DP outputs (:class:`RangeBuckets`,
:class:`QuantileCells`, :class:`CategoryCells`), and the mechanism needs how many rows fall in
each cell of one column or of a few columns jointly. A :class:`CountSource` answers exactly that:

* :class:`FrameCounts`: over a ``pandas.DataFrame`` in memory (the extract path);
* :class:`~synth_core.warehouse_counts.WarehouseCounts`: one ``GROUP BY`` per question inside the
  warehouse, so only counts leave it.

Both give the same exact counts for the same table; the noise is added by the caller through the
:class:`~synth_core.privacy.PrivacyAccountant`, with the same releases and charges either way.
Exact counts are private: they are handed to a release and never logged or stored.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from synth_core.mechanisms import quantile_bin_of, range_buckets
from synth_core.spec import ColumnKind, TableSpec

#: seconds per model unit of a datetime column's resolution
SECONDS_PER_UNIT = {"day": 86400.0, "second": 1.0, "microsecond": 1.0}


def norm_key(value: Any) -> Any:
    """Dictionary key for a category value: numpy scalars become Python scalars."""
    return value.item() if isinstance(value, np.generic) else value


def model_values(series: pd.Series, kind: ColumnKind, datetime_unit: str | None) -> NDArray[np.float64]:
    """Non-null values as float64 in model units (datetimes: days or seconds since the epoch, UTC)."""
    if kind == ColumnKind.DATETIME:
        ts = pd.to_datetime(series)
        if getattr(ts.dt, "tz", None) is not None:
            ts = ts.dt.tz_convert("UTC").dt.tz_localize(None)
        secs = ts.astype("datetime64[us]").astype("int64").to_numpy(dtype=np.float64) / 1e6
        return secs / SECONDS_PER_UNIT[datetime_unit or "second"]
    return series.to_numpy(dtype=np.float64, na_value=np.nan)


# ------------------------------------------------------------------------------------------------
# per-row codes (rules fixed by public facts and DP outputs; -1 = the row is not counted)


@dataclass(frozen=True, eq=False)
class RangeBuckets:
    """:func:`~synth_core.mechanisms.dp_range`'s buckets of a continuous column's model-unit
    value: bucket ``i`` holds ``(grid[i], grid[i+1]]``, the end buckets catch values beyond the
    grid. NULL rows are not counted. ``size = len(grid) - 1``."""

    column: str
    kind: ColumnKind
    grid: NDArray[np.float64]
    datetime_unit: str | None = None

    @property
    def size(self) -> int:
        return int(self.grid.size) - 1


@dataclass(frozen=True, eq=False)
class QuantileCells:
    """A continuous column's cell among the DP quantile bins ``(left, right)`` (clipped, rounded
    half to even when ``integer``, atoms first: :func:`~synth_core.mechanisms.quantile_bin_of`),
    merged into groups starting at ``group_start`` when given; NULL rows get ``null_code``
    (``None``: not counted). ``size`` counts bins (or groups), plus the NULL cell."""

    column: str
    kind: ColumnKind
    left: NDArray[np.float64]
    right: NDArray[np.float64]
    integer: bool
    datetime_unit: str | None = None
    group_start: tuple[int, ...] | None = None
    null_code: int | None = None

    @property
    def n_values(self) -> int:
        return len(self.group_start) if self.group_start is not None else int(self.left.size)

    @property
    def size(self) -> int:
        return self.n_values + int(self.null_code is not None)

    def group_of(self, bins: NDArray[np.int64]) -> NDArray[np.int64]:
        if self.group_start is None:
            return bins
        return np.searchsorted(np.asarray(self.group_start), bins, side="right") - 1


@dataclass(frozen=True, eq=False)
class CategoryCells:
    """A categorical/boolean column's slot: the index of its value in ``categories``; a value
    outside them gets ``other_code`` (``None``: not counted), NULL gets ``null_code`` (``None``:
    not counted). ``size`` is the number of slots."""

    column: str
    categories: tuple[Any, ...]
    other_code: int | None = None
    null_code: int | None = None

    @property
    def size(self) -> int:
        codes = [len(self.categories) - 1, self.other_code or 0, self.null_code or 0]
        return max(codes) + 1


Coding = RangeBuckets | QuantileCells | CategoryCells


# ------------------------------------------------------------------------------------------------
# the interface


class CountSource(ABC):
    """Exact counts of a table's rows, asked for by the DP mechanisms (see the module doc)."""

    spec: TableSpec

    @abstractmethod
    def row_count(self) -> int:
        """Rows in the table."""

    @abstractmethod
    def null_counts(self, columns: Sequence[str]) -> dict[str, int]:
        """NULL rows per column."""

    @abstractmethod
    def value_counts(self, column: str) -> tuple[NDArray[Any], NDArray[np.int64]]:
        """Distinct non-null values of ``column`` (sorted as ``numpy.unique`` sorts an object
        array) and their row counts."""

    @abstractmethod
    def joint_counts(self, codings: Sequence[Coding]) -> NDArray[np.int64]:
        """Rows per cell of the codings jointly: flat, C order of ``codings`` (shape
        ``prod(c.size)``); a row that any coding does not count is left out."""

    @abstractmethod
    def output_dtypes(self) -> dict[str, str]:
        """``{column: pandas dtype}`` of the output columns, from the spec and catalog only."""


def flat_counts(codes: Sequence[NDArray[np.int64]], sizes: Sequence[int]) -> NDArray[np.int64]:
    """Rows per joint cell of per-row ``codes`` (one array per coding; ``-1`` = not counted)."""
    if not codes:
        raise ValueError("joint_counts needs at least one coding")
    keep = np.logical_and.reduce([c >= 0 for c in codes])
    flat = np.ravel_multi_index(tuple(c[keep] for c in codes), tuple(sizes))
    return np.bincount(flat, minlength=math.prod(sizes)).astype(np.int64)


class FrameCounts(CountSource):
    """Counts over a frame with the source's columns (the extract path), per-row codes cached."""

    def __init__(self, frame: pd.DataFrame, spec: TableSpec) -> None:
        self.frame = frame
        self.spec = spec
        self._codes: dict[Coding, NDArray[np.int64]] = {}

    def row_count(self) -> int:
        return len(self.frame)

    def null_counts(self, columns: Sequence[str]) -> dict[str, int]:
        return {c: int(self.frame[c].isna().sum()) for c in columns}

    def value_counts(self, column: str) -> tuple[NDArray[Any], NDArray[np.int64]]:
        values = np.asarray(self.frame[column].dropna().tolist(), dtype=object)
        uniq, counts = np.unique(values, return_counts=True)
        return uniq, counts.astype(np.int64)

    def output_dtypes(self) -> dict[str, str]:
        return {c.name: str(self.frame[c.name].dtype) for c in self.spec.output_columns}

    def joint_counts(self, codings: Sequence[Coding]) -> NDArray[np.int64]:
        return flat_counts([self.codes(c) for c in codings], [c.size for c in codings])

    def codes(self, coding: Coding) -> NDArray[np.int64]:
        """The per-row code of ``coding`` (``-1``: not counted)."""
        got = self._codes.get(coding)  # codings compare by identity: one cache entry per rule
        if got is not None:
            return got
        series = self.frame[coding.column]
        missing = series.isna().to_numpy()
        out = np.full(len(series), -1, dtype=np.int64)
        if isinstance(coding, CategoryCells):
            lookup = {norm_key(v): i for i, v in enumerate(coding.categories)}
            other = -1 if coding.other_code is None else coding.other_code
            present = series[~missing].to_numpy(dtype=object)
            out[~missing] = [lookup.get(norm_key(v), other) for v in present]
            if coding.null_code is not None:
                out[missing] = coding.null_code
        else:
            values = model_values(series[~missing], coding.kind, coding.datetime_unit)
            if isinstance(coding, RangeBuckets):
                out[~missing] = range_buckets(values, coding.grid)
            else:
                bins = quantile_bin_of(values, coding.left, coding.right, integer=coding.integer)
                out[~missing] = coding.group_of(bins)
                if coding.null_code is not None:
                    out[missing] = coding.null_code
        self._codes[coding] = out
        return out
