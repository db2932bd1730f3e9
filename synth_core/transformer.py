"""A reversible table ↔ matrix transformer whose learned parts are fit under DP.

Columns become *spans* of a float32 matrix the generators model:

* numeric, integer and datetime columns: a DP quantile transform to a standard normal
  (:class:`~synth_core.mechanisms.QuantileBins`; point masses such as ``capital_gain == 0`` are
  atoms, so they survive the round trip exactly), plus a 2-way "missing" softmax when nullable;
* categorical and boolean columns: one softmax span over the domain (public, or discovered under
  DP), with a slot for NULL when nullable and an "other" slot for values below the discovery
  threshold (sampled back as a discovered value, never as a real rare value).

``fit_transformer_under_dp`` charges every data-dependent estimate to the release's
:class:`~synth_core.privacy.PrivacyAccountant`. The fitted transformer's state holds public
metadata, DP outputs and pandas dtype names only, so it can be saved inside a model bundle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy.special import ndtr, ndtri

from synth_core.count_source import (
    SECONDS_PER_UNIT,
    CategoryCells,
    CountSource,
    FrameCounts,
    QuantileCells,
    RangeBuckets,
    model_values,
    norm_key,
)
from synth_core.errors import SourceTableError, SpecError
from synth_core.mechanisms import (
    QuantileBins,
    assign_bins,
    bin_layout,
    datetime_range_grid,
    dp_count,
    dp_discover_of_counts,
    dp_quantile_bins_of_counts,
    dp_range_of_counts,
    range_grid,
)
from synth_core.privacy import PrivacyAccountant
from synth_core.spec import ColumnKind, ColumnSpec, TableSpec

#: share of a column's ρ used to find its range when no public bounds are declared
RANGE_RHO_SHARE = 0.25
_U_EPS = 1e-6
_SECONDS_PER = SECONDS_PER_UNIT


@dataclass(frozen=True)
class Span:
    """A slice of the model matrix: ``matrix[:, start:start + width]``.

    ``kind`` is ``continuous`` (width 1, standard-normal target) or ``softmax`` (one-hot).
    """

    column: str
    kind: Literal["continuous", "softmax"]
    start: int
    width: int
    role: Literal["value", "missing"] = "value"


@dataclass
class ColumnTransform:
    """Fitted state of one modelled column (public metadata and DP outputs only)."""

    name: str
    kind: ColumnKind
    dtype: str
    nullable: bool
    bins: QuantileBins | None = None
    integer: bool = False
    datetime_unit: str | None = None
    categories: list[Any] | None = None
    has_other: bool = False
    category_weights: list[float] | None = None
    null_fraction: float = 0.0
    spans: list[Span] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind.value,
            "dtype": self.dtype,
            "nullable": self.nullable,
            "bins": self.bins.to_dict() if self.bins is not None else None,
            "integer": self.integer,
            "datetime_unit": self.datetime_unit,
            "categories": _jsonable_list(self.categories),
            "has_other": self.has_other,
            "category_weights": self.category_weights,
            "null_fraction": self.null_fraction,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ColumnTransform:
        return cls(
            name=raw["name"],
            kind=ColumnKind(raw["kind"]),
            dtype=raw["dtype"],
            nullable=raw["nullable"],
            bins=QuantileBins.from_dict(raw["bins"]) if raw.get("bins") is not None else None,
            integer=raw["integer"],
            datetime_unit=raw.get("datetime_unit"),
            categories=raw.get("categories"),
            has_other=raw.get("has_other", False),
            category_weights=raw.get("category_weights"),
            null_fraction=float(raw.get("null_fraction", 0.0)),
        )

    @property
    def is_continuous(self) -> bool:
        return self.kind in (ColumnKind.NUMERIC, ColumnKind.INTEGER, ColumnKind.DATETIME)

    @property
    def n_slots(self) -> int:
        """Softmax width of a categorical/boolean column: domain (+ other) (+ NULL)."""
        assert self.categories is not None
        return len(self.categories) + int(self.has_other) + int(self.nullable)


def _jsonable_list(values: list[Any] | None) -> list[Any] | None:
    if values is None:
        return None
    return [v.item() if isinstance(v, np.generic) else v for v in values]


@dataclass
class TableTransformer:
    """Maps a table (``pandas.DataFrame``) to a float32 matrix and back.

    Attributes:
        spec: the table spec it was fit for.
        columns: fitted state per modelled column, in spec order.
        output_dtypes: ``{column: pandas dtype name}`` of every output column (spec order, no drops).
        dp_row_count: the table's row count under DP (the default size of a synthetic table).
        spans: the matrix layout, left to right.
    """

    spec: TableSpec
    columns: list[ColumnTransform]
    output_dtypes: dict[str, str]
    dp_row_count: int
    spans: list[Span] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._layout()

    def _layout(self) -> None:
        spans: list[Span] = []
        pos = 0
        for col in self.columns:
            col.spans = []
            if col.is_continuous:
                if col.nullable:
                    col.spans.append(Span(col.name, "softmax", pos, 2, "missing"))
                    pos += 2
                col.spans.append(Span(col.name, "continuous", pos, 1))
                pos += 1
            else:
                col.spans.append(Span(col.name, "softmax", pos, col.n_slots))
                pos += col.n_slots
            spans.extend(col.spans)
        self.spans = spans

    @property
    def output_dim(self) -> int:
        return sum(s.width for s in self.spans)

    # -- forward ---------------------------------------------------------------------------------
    def transform(self, frame: pd.DataFrame, rng: np.random.Generator) -> NDArray[np.float32]:
        """Encode ``frame`` (the source schema) as a ``(rows, output_dim)`` float32 matrix.

        Atoms are dequantized with ``rng`` (uniform within their CDF step) so the continuous
        targets are smooth; this is a data transform, not an estimate, and spends no budget.
        """
        check_frame_against_spec(frame, self.spec)
        n = len(frame)
        out = np.zeros((n, self.output_dim), dtype=np.float32)
        for col in self.columns:
            series = frame[col.name]
            missing = series.isna().to_numpy()
            if col.is_continuous:
                assert col.bins is not None
                span_iter = iter(col.spans)
                if col.nullable:
                    ms = next(span_iter)
                    out[:, ms.start] = (~missing).astype(np.float32)
                    out[:, ms.start + 1] = missing.astype(np.float32)
                vs = next(span_iter)
                values = _to_float(series[~missing], col)
                z = np.zeros(n, dtype=np.float64)
                z[~missing] = _quantile_forward(values, col.bins, col.integer, rng)
                out[:, vs.start] = z.astype(np.float32)
            else:
                assert col.categories is not None
                (span,) = col.spans
                codes = self._category_codes(series, missing, col)
                out[np.arange(n), span.start + codes] = 1.0
        return out

    def _category_codes(
        self, series: pd.Series, missing: NDArray[np.bool_], col: ColumnTransform
    ) -> NDArray[np.int64]:
        assert col.categories is not None
        k = len(col.categories)
        lookup = {_norm_key(v): i for i, v in enumerate(col.categories)}
        codes = np.empty(len(series), dtype=np.int64)
        other_code = k if col.has_other else -1
        null_code = k + int(col.has_other)
        values = series.to_numpy(dtype=object)
        for i, (v, m) in enumerate(zip(values, missing, strict=True)):
            if m:
                codes[i] = null_code
            else:
                codes[i] = lookup.get(_norm_key(v), other_code)
        if (codes < 0).any():
            raise SourceTableError(
                f"table {self.spec.name!r}, column {col.name!r}: rows hold values outside the declared "
                "public category domain (neither the values nor how many rows are shown: both are exact "
                "facts of the private table)"
            )
        return codes

    # -- inverse ---------------------------------------------------------------------------------
    def inverse_transform(self, matrix: NDArray[np.float32], rng: np.random.Generator) -> pd.DataFrame:
        """Decode a matrix whose softmax spans are one-hot (or scores: argmax is taken).

        Returns a frame with exactly the source's output columns, order and pandas dtypes; id
        columns get fresh surrogate keys (see :meth:`with_surrogate_keys`).
        ``rng`` resamples the "other" category slot.
        """
        return self.decode(matrix, rng).frame()

    def decode(self, matrix: NDArray[np.float32], rng: np.random.Generator) -> DecodedRows:
        """The rows of ``matrix`` decoded to numpy arrays (category codes, values, NULL masks);
        :meth:`DecodedRows.frame` builds pandas columns for the rows and columns asked for, so rows
        a caller drops (rule rejection) never become Python or Arrow strings."""
        slots: dict[str, NDArray[np.int64]] = {}
        positions: dict[str, NDArray[np.float64]] = {}
        missing: dict[str, NDArray[np.bool_]] = {}
        for col in self.columns:
            if col.is_continuous:
                span_iter = iter(col.spans)
                if col.nullable:
                    ms = next(span_iter)
                    missing[col.name] = matrix[:, ms.start + 1] > matrix[:, ms.start]
                vs = next(span_iter)
                positions[col.name] = ndtr(np.nan_to_num(matrix[:, vs.start].astype(np.float64), nan=0.0))
            else:
                (span,) = col.spans
                slots[col.name] = np.argmax(matrix[:, span.start : span.start + span.width], axis=1)
        return self.decode_cells(matrix.shape[0], slots, positions, missing, rng)

    def decode_cells(
        self,
        n: int,
        slots: dict[str, NDArray[np.int64]],
        positions: dict[str, NDArray[np.float64]],
        missing: dict[str, NDArray[np.bool_]],
        rng: np.random.Generator,
    ) -> DecodedRows:
        """:meth:`decode` from cells instead of a matrix (a generator that draws cells directly
        skips the one-hot matrix): per categorical/boolean column its softmax slot ``(n,)``; per
        continuous column its position ``(n,)`` in ``[0, 1]`` on the column's DP CDF (the value
        is the DP quantile there), and, when nullable, its NULL mask."""
        columns: dict[str, _DecodedColumn] = {}
        by_name = {c.name: c for c in self.columns}
        for cspec in self.spec.output_columns:
            dtype = self.output_dtypes[cspec.name]
            if cspec.kind == ColumnKind.ID:
                columns[cspec.name] = _DecodedColumn(dtype, "id")
                continue
            col = by_name[cspec.name]
            if col.is_continuous:
                assert col.bins is not None
                values = _quantile_at(positions[col.name], col.bins, col.integer)
                null = missing.get(col.name) if col.nullable else None
                columns[cspec.name] = _DecodedColumn(dtype, "value", values, null, col=col)
            else:
                idx, categories = _category_index(slots[col.name], col, rng)
                columns[cspec.name] = _DecodedColumn(dtype, "category", idx, categories=categories)
        return DecodedRows(n, columns, rng)

    def with_surrogate_keys(
        self, frame: pd.DataFrame, rng: np.random.Generator, *, start: int = 1
    ) -> pd.DataFrame:
        """``frame`` with its id columns renumbered: integers ``start..start+len-1`` (a chunk of a
        longer table continues its numbering), or random opaque strings."""
        ids = [c.name for c in self.spec.output_columns if c.kind == ColumnKind.ID]
        if not ids:
            return frame
        out = frame.copy()
        for name in ids:
            out[name] = _surrogate_keys(len(out), self.output_dtypes[name], rng, start).to_numpy()
            out[name] = out[name].astype(self.output_dtypes[name])
        return out

    # -- what the model may emit (for validation) ------------------------------------------------
    def dp_null_rates(self) -> dict[str, float]:
        """DP estimate of the NULL fraction of every nullable modelled column."""
        return {c.name: c.null_fraction for c in self.columns if c.nullable}

    def dp_domains(self) -> dict[str, list[Any]]:
        """Category domains discovered under DP (columns whose domain is not public)."""
        return {c.name: list(c.categories) for c in self.columns if c.categories is not None and c.has_other}

    def dp_ranges(self) -> dict[str, tuple[Any, Any]]:
        """``(low, high)`` of every continuous column without public bounds: the DP range the
        transform clips to. Numbers for numeric/integer columns, ``datetime`` for datetime ones."""
        out: dict[str, tuple[Any, Any]] = {}
        for c in self.columns:
            cspec = self.spec.column(c.name)
            if c.bins is None or cspec.bounds is not None or cspec.datetime_range is not None:
                continue
            if c.kind == ColumnKind.DATETIME:
                unit = _SECONDS_PER[c.datetime_unit or "second"]
                low, high = (
                    pd.Timestamp(v * unit, unit="s").to_pydatetime() for v in (c.bins.low, c.bins.high)
                )
                out[c.name] = (low, high)
            else:
                out[c.name] = (c.bins.low, c.bins.high)
        return out

    # -- persistence -----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "spec": self.spec.to_dict(),
            "columns": [c.to_dict() for c in self.columns],
            "output_dtypes": dict(self.output_dtypes),
            "dp_row_count": self.dp_row_count,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TableTransformer:
        return cls(
            spec=TableSpec.from_dict(raw["spec"]),
            columns=[ColumnTransform.from_dict(c) for c in raw["columns"]],
            output_dtypes=dict(raw["output_dtypes"]),
            dp_row_count=int(raw["dp_row_count"]),
        )


@dataclass
class _DecodedColumn:
    """One output column of :class:`DecodedRows`: ``kind`` ``value`` (float64 ``data`` in model
    units and a NULL mask), ``category`` (``data`` indexes ``categories``; its last entry is NULL)
    or ``id`` (surrogate keys drawn when built)."""

    dtype: str
    kind: Literal["value", "category", "id"]
    data: NDArray[Any] | None = None
    missing: NDArray[np.bool_] | None = None
    categories: list[Any] | None = None
    col: ColumnTransform | None = None


@dataclass
class DecodedRows:
    """Decoded rows as numpy arrays, from :meth:`TableTransformer.decode` (``n`` rows)."""

    n: int
    columns: dict[str, _DecodedColumn]
    rng: np.random.Generator

    def frame(self, rows: NDArray[np.bool_] | None = None, columns: list[str] | None = None) -> pd.DataFrame:
        """The pandas frame of the rows where ``rows`` is true (all when ``None``) and of
        ``columns`` (all output columns, in order, when ``None``), with the source's dtypes."""
        names = list(self.columns) if columns is None else columns
        count = self.n if rows is None else int(np.count_nonzero(rows))
        out: dict[str, pd.Series] = {}
        for name in names:
            c = self.columns[name]
            if c.kind == "id":
                out[name] = _surrogate_keys(count, c.dtype, self.rng)
                continue
            assert c.data is not None
            data = c.data if rows is None else c.data[rows]
            if c.kind == "value":
                assert c.col is not None
                missing = c.missing if c.missing is None or rows is None else c.missing[rows]
                out[name] = _from_float(data, missing, c.col)
            else:
                assert c.categories is not None
                out[name] = _category_series(data, c.categories, c.dtype)
        return pd.DataFrame(out, columns=names)


def _category_index(
    codes: NDArray[np.int64], col: ColumnTransform, rng: np.random.Generator
) -> tuple[NDArray[np.int64], list[Any]]:
    """Softmax slot per row → index into ``categories + [NULL]``; the "other" slot is resampled
    from the discovered categories in proportion to their DP weights."""
    assert col.categories is not None
    k = len(col.categories)
    if col.has_other:
        other = codes == k
        if other.any():
            w = np.asarray(col.category_weights if col.category_weights else np.ones(k), dtype=np.float64)
            codes = codes.copy()
            codes[other] = rng.choice(k, size=int(other.sum()), p=w / w.sum())
    null_code = k + int(col.has_other)
    return np.where(codes == null_code, k, np.minimum(codes, k)), list(col.categories)


def _category_series(idx: NDArray[np.int64], categories: list[Any], dtype: str) -> pd.Series:
    """Values ``categories[idx]`` (``idx == len(categories)``: NULL) with pandas dtype ``dtype``.

    Text columns of the pyarrow-backed ``str`` dtype are built by one Arrow take from the category
    dictionary (no Python string per row); other dtypes through an object array.
    """
    k = len(categories)
    target = pd.api.types.pandas_dtype(dtype)
    if (
        isinstance(target, pd.StringDtype)
        and target.storage == "pyarrow"
        and all(isinstance(v, str) for v in categories)
    ):
        import pyarrow as pa

        null = idx == k
        indices = pa.array(np.where(null, 0, idx), mask=null if null.any() else None)
        values = pa.array(categories, type=pa.large_string()).take(indices)
        return pd.Series(pd.array(values, dtype=target))
    cats = np.empty(k + 1, dtype=object)
    cats[:k] = categories
    cats[k] = None
    return _cast(pd.Series(cats[idx], dtype=object), dtype)


# ------------------------------------------------------------------------------------------------
# fitting under DP


def fit_transformer_under_dp(
    frame: pd.DataFrame,
    spec: TableSpec,
    accountant: PrivacyAccountant,
    rng: np.random.Generator,
) -> TableTransformer:
    """Fit a :class:`TableTransformer`, estimating under DP everything ``spec`` does not declare public.

    Releases (each through ``accountant``, which charges it from its declared sensitivity and
    draws its noise from ``rng``; ρ split evenly over the row count and the modelled columns):

    * the row count (a Gaussian count: the default size of the synthetic table, and the
      denominator of continuous columns' NULL rates);
    * numeric/integer/datetime columns: a DP quantile histogram whose last cell is the NULL count
      when nullable (and a DP range first when no public bounds are declared);
    * categorical/boolean columns with a public domain: a histogram over it (+ the NULL cell);
    * categorical columns without a public domain: thresholded DP category discovery, NULL a
      key that is always released (approximate zCDP: its δ adds to the release δ).

    Columns with a public domain, booleans, ids and drops spend nothing.
    """
    check_frame_against_spec(frame, spec)
    return fit_transformer_from_counts(FrameCounts(frame, spec), accountant, rng)


def fit_transformer_from_counts(
    source: CountSource, accountant: PrivacyAccountant, rng: np.random.Generator
) -> TableTransformer:
    """:func:`fit_transformer_under_dp` asking ``source`` for the exact counts each release noises
    (a frame in memory, or aggregate queries inside the warehouse: the same releases, the same
    declared sensitivities and charges either way)."""
    spec = source.spec
    n_rows = source.row_count()
    if n_rows == 0:
        raise SourceTableError(f"table {spec.name!r} has no rows to learn from")
    needs_dp = [c for c in spec.modelled_columns if _needs_dp(c)]
    n_discovery = sum(1 for c in needs_dp if c.kind == ColumnKind.CATEGORICAL and c.categories is None)
    rho_each = accountant.preprocessing_rho / (len(needs_dp) + 1)
    row_count = dp_count(n_rows, rho=rho_each, accountant=accountant, rng=rng, name="row_count")
    delta_each = accountant.discovery_delta_per_column(n_discovery)
    null_counts = source.null_counts([c.name for c in spec.modelled_columns if c.nullable])
    output_dtypes = source.output_dtypes()

    fitted: list[ColumnTransform] = []
    for cspec in spec.modelled_columns:
        dtype = output_dtypes[cspec.name]
        nulls = null_counts.get(cspec.name)
        if cspec.kind in (ColumnKind.NUMERIC, ColumnKind.INTEGER, ColumnKind.DATETIME):
            fitted.append(_fit_continuous(source, cspec, dtype, nulls, rho_each, accountant, rng, row_count))
        else:
            fitted.append(
                _fit_categorical(source, cspec, dtype, nulls, rho_each, delta_each, accountant, rng)
            )
    return TableTransformer(spec=spec, columns=fitted, output_dtypes=output_dtypes, dp_row_count=row_count)


def _needs_dp(c: ColumnSpec) -> bool:
    # every modelled column has a DP marginal: quantile histograms for continuous columns, noisy
    # counts for categorical/boolean ones (public domain or discovered), each with its NULL cell
    return c.is_modelled


def _fit_continuous(
    source: CountSource,
    cspec: ColumnSpec,
    dtype: str,
    null_count: int | None,
    rho: float,
    accountant: PrivacyAccountant,
    rng: np.random.Generator,
    dp_row_count: int,
) -> ColumnTransform:
    """DP quantile bins of a continuous column; its NULL rate is the released NULL cell over
    ``dp_row_count`` (the released row count): both are charged releases, so the rate is too."""
    col = ColumnTransform(cspec.name, cspec.kind, dtype, cspec.nullable)
    if cspec.kind == ColumnKind.DATETIME:
        col.datetime_unit = cspec.resolution
        col.integer = col.datetime_unit in ("day", "second")
    else:
        col.integer = cspec.kind == ColumnKind.INTEGER
    public = _public_bounds(cspec, col)
    if public is None:
        rho_range = rho * RANGE_RHO_SHARE
        grid = (
            datetime_range_grid(_SECONDS_PER[col.datetime_unit or "second"])
            if col.datetime_unit
            else range_grid()
        )
        buckets = source.joint_counts([RangeBuckets(cspec.name, col.kind, grid, col.datetime_unit)])
        low, high = dp_range_of_counts(
            buckets, grid, rho=rho_range, accountant=accountant, rng=rng, name=f"range:{cspec.name}",
            column=cspec.name,
        )  # fmt: skip
        rho_hist = rho - rho_range
    else:
        low, high = public
        rho_hist = rho
    # NULL is one more cell of the same histogram (a row is in exactly one cell): sensitivity 1
    left, right = bin_layout(low, high, integer=col.integer)
    cells = QuantileCells(cspec.name, col.kind, left, right, col.integer, col.datetime_unit)
    col.bins, noisy_null = dp_quantile_bins_of_counts(
        source.joint_counts([cells]), left, right, rho=rho_hist, accountant=accountant, rng=rng,
        name=f"quantiles:{cspec.name}", null_count=null_count if cspec.nullable else None,
        column=cspec.name,
    )  # fmt: skip
    if noisy_null is not None:
        col.null_fraction = min(max(noisy_null, 0.0) / dp_row_count, 1.0)
    return col


def _fraction(part: float, rest: float) -> float:
    return part / (part + rest) if part + rest > 0 else 0.0


def _public_bounds(cspec: ColumnSpec, col: ColumnTransform) -> tuple[float, float] | None:
    if cspec.bounds is not None:
        return cspec.bounds
    if cspec.datetime_range is not None:
        first, last = cspec.datetime_range
        unit = _SECONDS_PER[col.datetime_unit or "second"]
        return (
            pd.Timestamp(first).timestamp() / unit,
            pd.Timestamp(last).timestamp() / unit,
        )
    return None


def _fit_categorical(
    source: CountSource,
    cspec: ColumnSpec,
    dtype: str,
    null_count: int | None,
    rho: float,
    delta: float,
    accountant: PrivacyAccountant,
    rng: np.random.Generator,
) -> ColumnTransform:
    col = ColumnTransform(cspec.name, cspec.kind, dtype, cspec.nullable)
    # a nullable column's NULL count is one more cell of the column's one release (sensitivity 1)
    null_count = null_count if cspec.nullable else None
    domain = [False, True] if cspec.kind == ColumnKind.BOOLEAN else cspec.categories
    if domain is not None:
        # a public domain: a noisy histogram over it (+ NULL) gives the DP marginal and null rate
        col.categories = [_coerce_category(v, dtype, cspec) for v in domain]
        # values outside the public domain are not counted here (transform refuses them)
        counts = source.joint_counts([CategoryCells(cspec.name, tuple(col.categories))])
        cells = counts if null_count is None else np.append(counts, null_count)
        released = accountant.release_gaussian(
            f"marginal:{cspec.name}", cells, l2_sensitivity=1.0, rho=rho, rng=rng, column=cspec.name
        )
        noisy = np.clip(released[: counts.size], 0.0, None)
        noisy_null = max(float(released[-1]), 0.0) if null_count is not None else 0.0
        col.category_weights = noisy.tolist()
        col.null_fraction = _fraction(noisy_null, float(noisy.sum()))
        return col
    uniq, value_counts = source.value_counts(cspec.name)
    found, released_null = dp_discover_of_counts(
        uniq, value_counts, rho=rho, delta=delta, accountant=accountant, rng=rng,
        name=f"categories:{cspec.name}", null_count=null_count, column=cspec.name,
    )  # fmt: skip
    noisy_null = max(released_null, 0.0) if released_null is not None else 0.0
    if not found:
        raise SourceTableError(
            f"table {source.spec.name!r}, column {cspec.name!r}: DP category discovery released no category "
            "(every value is too rare for the budget); declare its domain public or give it more rows/ε"
        )
    ordered = sorted(found, key=lambda v: str(v))
    col.categories = [v.item() if isinstance(v, np.generic) else v for v in ordered]
    col.category_weights = [max(found[v], 0.0) for v in ordered]
    col.has_other = True
    # NULL is a known key of the same Gaussian mechanism (always released, never thresholded)
    col.null_fraction = _fraction(noisy_null, float(sum(col.category_weights)))
    return col


def _coerce_category(value: Any, dtype: str, cspec: ColumnSpec) -> Any:
    if dtype.lower().startswith(("int", "uint")):
        try:
            return int(value)
        except (TypeError, ValueError):
            raise SpecError(f"column {cspec.name!r}: declared category {value!r} is not an integer") from None
    if dtype.lower().startswith("bool"):
        return bool(value)
    return value


# ------------------------------------------------------------------------------------------------
# value conversions


def _to_float(series: pd.Series, col: ColumnTransform) -> NDArray[np.float64]:
    """Non-null values as float64 in model units (datetimes: days or seconds since the epoch)."""
    return model_values(series, col.kind, col.datetime_unit)


def _from_float(
    values: NDArray[np.float64], missing: NDArray[np.bool_] | None, col: ColumnTransform
) -> pd.Series:
    """Values in model units back to the source dtype; ``missing`` (``None``: none) become NULL."""
    if missing is None:
        missing = np.zeros(values.shape[0], dtype=bool)
    if col.kind == ColumnKind.DATETIME:
        secs = values * _SECONDS_PER[col.datetime_unit or "second"]
        micros = np.rint(secs * 1e6).astype(np.int64)
        ts = pd.Series(micros.astype("datetime64[us]"))
        ts[missing] = pd.NaT
        if "UTC" in col.dtype or "," in col.dtype:
            ts = ts.dt.tz_localize("UTC")
        return ts.astype(col.dtype)
    if col.integer:
        values = np.rint(values)
    if col.dtype in ("int64", "int32", "int16", "int8", "float64") and not missing.any():
        return pd.Series(values.astype(col.dtype))  # the common case: no NULL to place
    series = pd.Series(values, dtype=np.float64)
    series[missing] = np.nan
    return _cast(series, col.dtype)


def _cast(series: pd.Series, dtype: str) -> pd.Series:
    """Cast decoded values to the source's pandas dtype (nullable ints/bools when needed)."""
    if dtype in ("int64", "int32", "int16", "int8") and series.isna().any():
        raise AssertionError("a non-nullable integer column was decoded with NULLs")
    if dtype.startswith(("int", "uint")):
        return series.astype("float64").astype(dtype)
    if dtype in ("Int64", "Int32", "Int16", "Int8", "boolean"):
        return series.astype(dtype)
    if dtype == "bool":
        return series.astype(bool)
    return series.astype(dtype)


_norm_key = norm_key


def _surrogate_keys(n: int, dtype: str, rng: np.random.Generator, start: int = 1) -> pd.Series:
    if dtype.lower().startswith(("int", "uint")):
        return pd.Series(np.arange(start, start + n, dtype=np.int64)).astype(dtype)
    draws = rng.integers(0, 2**63 - 1, size=n, dtype=np.int64)
    target = pd.api.types.pandas_dtype(dtype if dtype != "object" else "str")
    if isinstance(target, pd.StringDtype) and target.storage == "pyarrow":
        return pd.Series(pd.array(_hex_keys(draws), dtype=target))
    return pd.Series([f"syn-{v:016x}" for v in draws], dtype=target)


def _hex_keys(draws: NDArray[np.int64]) -> Any:
    """``syn-`` + 16 lower-case hex digits of each draw, as an Arrow string array built from one
    byte matrix (no Python string per row)."""
    import pyarrow as pa

    nibbles = (draws.astype(np.uint64)[:, None] >> np.arange(60, -4, -4, dtype=np.uint64)) & np.uint64(15)
    chars = np.empty((draws.size, 20), dtype=np.uint8)
    chars[:, :4] = np.frombuffer(b"syn-", dtype=np.uint8)
    chars[:, 4:] = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)[nibbles.astype(np.intp)]
    fixed = pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(20), draws.size, [None, pa.py_buffer(chars.tobytes())]
    )
    return fixed.cast(pa.binary()).cast(pa.large_string())


def _quantile_forward(
    values: NDArray[np.float64], bins: QuantileBins, integer: bool, rng: np.random.Generator
) -> NDArray[np.float64]:
    clipped = np.clip(values, bins.low, bins.high)
    if integer:
        clipped = np.rint(clipped)
    idx = assign_bins(clipped, bins.left, bins.right)
    cdf_hi = bins.cdf_right
    cdf_lo = cdf_hi - bins.mass
    width = bins.right - bins.left
    is_atom = width[idx] == 0
    frac = np.where(
        is_atom, rng.random(values.shape[0]), (clipped - bins.left[idx]) / np.where(is_atom, 1.0, width[idx])
    )
    u = cdf_lo[idx] + np.clip(frac, 0.0, 1.0) * bins.mass[idx]
    return np.asarray(ndtri(np.clip(u, _U_EPS, 1.0 - _U_EPS)), dtype=np.float64)


def _quantile_at(u: NDArray[np.float64], bins: QuantileBins, integer: bool) -> NDArray[np.float64]:
    """The DP quantile function at ``u`` (clipped to ``[0, 1]``): linear inside a bin, the
    atom's value on an atom."""
    u = np.clip(u, 0.0, 1.0)
    cdf_hi = bins.cdf_right
    cdf_lo = cdf_hi - bins.mass
    idx = np.clip(np.searchsorted(cdf_hi, u, side="left"), 0, bins.mass.size - 1)
    # skip zero-mass bins that searchsorted can land on at exact boundaries
    mass = bins.mass[idx]
    frac = np.where(mass > 0, (u - cdf_lo[idx]) / np.where(mass > 0, mass, 1.0), 0.5)
    values = bins.left[idx] + np.clip(frac, 0.0, 1.0) * (bins.right[idx] - bins.left[idx])
    if integer:
        values = np.rint(values)
    return np.asarray(values, dtype=np.float64)


# ------------------------------------------------------------------------------------------------
# schema checks


def check_frame_against_spec(frame: pd.DataFrame, spec: TableSpec) -> None:
    """Raise :class:`SourceTableError` naming the column when ``frame`` does not fit ``spec``.

    Checks that every spec column is present, that kinds match the pandas dtypes, and that
    non-nullable columns hold no NULLs. Messages never contain cell values.
    """
    missing = [c.name for c in spec.columns if c.kind != ColumnKind.DROP and c.name not in frame.columns]
    if missing:
        raise SourceTableError(
            f"table {spec.name!r}: columns {missing} of the spec are missing from the data"
        )
    for c in spec.columns:
        if c.kind in (ColumnKind.DROP,) or c.name not in frame.columns:
            continue
        s = frame[c.name]
        ok = {
            ColumnKind.NUMERIC: pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s),
            ColumnKind.INTEGER: pd.api.types.is_integer_dtype(s),
            ColumnKind.BOOLEAN: pd.api.types.is_bool_dtype(s),
            ColumnKind.DATETIME: pd.api.types.is_datetime64_any_dtype(s),
            ColumnKind.CATEGORICAL: True,
            ColumnKind.ID: True,
        }[c.kind]
        if not ok:
            raise SourceTableError(
                f"table {spec.name!r}, column {c.name!r}: the spec declares {c.kind.value} but the data has dtype {s.dtype}"
            )
        if not c.nullable and c.is_modelled and s.isna().any():
            raise SourceTableError(
                f"table {spec.name!r}, column {c.name!r}: declared NOT NULL in the spec but holds NULLs"
            )
