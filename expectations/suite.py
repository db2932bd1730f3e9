"""Build a Great Expectations suite for a synthetic table from its :class:`TableSpec`.

The suite holds only what is public or was released under DP: the spec's columns, kinds and
nullability, the source's pandas dtype names, public bounds / category domains / datetime ranges,
and optionally DP-discovered domains and DP-estimated ranges handed over from the fitted model.
Nothing here reads the real table.

GX is imported inside the functions: importing this module stays cheap.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from synth_core.errors import ParameterError, SpecError
from synth_core.spec import ColumnKind, ColumnSpec, TableSpec

if TYPE_CHECKING:
    import great_expectations as gx
    from great_expectations.expectations import Expectation

#: Check families; each expectation of a suite belongs to one (``meta["dpsynth_check"]``).
CHECKS: tuple[str, ...] = ("columns", "type", "not_null", "domain", "range", "unique", "row_count")

#: Key of the suite's ``meta`` that holds what validation needs (table name, expected dtypes).
SUITE_META_KEY = "dpsynth"

#: Key of an expectation's ``meta`` naming its check family.
CHECK_META_KEY = "dpsynth_check"
#: Key of an expectation's ``meta`` naming where its parameters come from (``spec``, ``public``, ``dp``).
SOURCE_META_KEY = "dpsynth_source"

RangeBound = float | int | dt.datetime | dt.date | str


def build_expectation_suite(
    spec: TableSpec,
    dtypes: Mapping[str, Any],
    *,
    domains: Mapping[str, Sequence[Any]] | None = None,
    ranges: Mapping[str, tuple[RangeBound, RangeBound]] | None = None,
    row_count: int | None = None,
    suite_name: str | None = None,
    warning_checks: Collection[str] = (),
) -> gx.ExpectationSuite:
    """The GX suite a synthetic version of ``spec``'s table must satisfy.

    For the output columns (every column but ``drop``), in this order:

    * ``columns``: the exact column list and order (``ExpectTableColumnsToMatchOrderedList``);
    * ``type``: each column's exact pandas dtype (``ExpectColumnTypeToBe``; ``"str"`` is the
      pandas-3 text dtype, ``"Int64"`` differs from ``"int64"``, a datetime's unit and time zone
      must match);
    * ``not_null``: ``ExpectColumnValuesToNotBeNull`` for non-nullable columns and id columns;
    * ``domain``: ``ExpectColumnValuesToBeInSet`` for booleans and for categorical columns with a
      public domain (``categories``) or, failing that, a DP-discovered domain in ``domains``;
    * ``range``: ``ExpectColumnValuesToBeBetween`` (inclusive) from public ``bounds`` or
      ``datetime_range``, or, failing those, a DP-estimated range in ``ranges``;
    * ``unique``: ``ExpectColumnValuesToBeUnique`` for id columns;
    * ``row_count``: ``ExpectTableRowCountToEqual`` when ``row_count`` is given.

    NULLs are never counted as out of a domain or range: nullability is its own check.

    Args:
        spec: the source table's spec.
        dtypes: pandas dtype (or dtype name) of each output column of the source, e.g.
            ``{"age": "int64", "workclass": "str", "ts": "datetime64[us, UTC]"}``; a
            ``DataFrame.dtypes`` mapping works as is. Extra keys are ignored.
        domains: DP-discovered category domains of categorical columns without a public domain
            (values from the fitted model, never from the real table). A public domain takes
            precedence.
        ranges: DP-estimated ``(low, high)`` of numeric, integer or datetime columns without
            public bounds (datetimes as ``datetime`` or ISO strings). Public bounds take precedence.
        row_count: the exact number of rows expected, if any.
        suite_name: the suite's name; default ``"<table>.synthetic"``.
        warning_checks: check families (see :data:`CHECKS`) whose failures are only warnings;
            every other expectation is critical.

    Raises:
        SpecError: an output column has no dtype, a dtype name pandas does not know, or a domain
            value that does not fit its dtype.
        ParameterError: ``domains``/``ranges`` name an unknown or unsuitable column, a range is
            not ``low < high``, ``row_count`` is negative, or ``warning_checks`` names an unknown
            check.
    """
    import great_expectations as gx
    import great_expectations.expectations as gxe
    from great_expectations.expectations.metadata_types import FailureSeverity

    unknown_checks = sorted(set(warning_checks) - set(CHECKS))
    if unknown_checks:
        raise ParameterError(f"warning_checks: unknown checks {unknown_checks}; known: {list(CHECKS)}")
    if row_count is not None and (
        isinstance(row_count, bool) or int(row_count) != row_count or row_count < 0
    ):
        raise ParameterError(
            f"table {spec.name!r}: row_count must be a non-negative integer, got {row_count!r}"
        )
    domains = dict(domains or {})
    ranges = dict(ranges or {})
    columns = spec.output_columns
    by_name = {c.name: c for c in columns}
    _check_overrides(spec, by_name, domains, ranges)
    expected = _expected_dtypes(spec, columns, dtypes)

    def severity(check: str) -> FailureSeverity:
        return FailureSeverity.WARNING if check in warning_checks else FailureSeverity.CRITICAL

    def meta(check: str, source: str) -> dict[str, str]:
        return {CHECK_META_KEY: check, SOURCE_META_KEY: source}

    exps: list[Expectation] = [
        gxe.ExpectTableColumnsToMatchOrderedList(
            column_list=[c.name for c in columns], severity=severity("columns"), meta=meta("columns", "spec")
        )
    ]
    for col in columns:
        name, dtype = col.name, expected[col.name]
        exps.append(
            gxe.ExpectColumnTypeToBe(
                column=name, type_=dtype, severity=severity("type"), meta=meta("type", "spec")
            )
        )
        if not col.nullable or col.kind == ColumnKind.ID:
            exps.append(
                gxe.ExpectColumnValuesToNotBeNull(
                    column=name, severity=severity("not_null"), meta=meta("not_null", "spec")
                )
            )
        domain = _domain(spec, col, dtype, domains)
        if domain is not None:
            values, source = domain
            exps.append(
                gxe.ExpectColumnValuesToBeInSet(
                    column=name, value_set=values, severity=severity("domain"), meta=meta("domain", source)
                )
            )
        bounds = _bounds(spec, col, dtype, ranges)
        if bounds is not None:
            low, high, source = bounds
            exps.append(
                gxe.ExpectColumnValuesToBeBetween(
                    column=name,
                    min_value=low,
                    max_value=high,
                    severity=severity("range"),
                    meta=meta("range", source),
                )
            )
        if col.kind == ColumnKind.ID:
            exps.append(
                gxe.ExpectColumnValuesToBeUnique(
                    column=name, severity=severity("unique"), meta=meta("unique", "spec")
                )
            )
    if row_count is not None:
        exps.append(
            gxe.ExpectTableRowCountToEqual(
                value=int(row_count), severity=severity("row_count"), meta=meta("row_count", "spec")
            )
        )
    return gx.ExpectationSuite(
        name=suite_name or f"{spec.name}.synthetic",
        expectations=exps,
        meta={SUITE_META_KEY: {"table": spec.name, "columns": [c.name for c in columns], "dtypes": expected}},
    )


# ------------------------------------------------------------------------------------------------
# helpers


def _check_overrides(
    spec: TableSpec, by_name: Mapping[str, ColumnSpec], domains: Mapping[str, Any], ranges: Mapping[str, Any]
) -> None:
    for name in domains:
        col = by_name.get(name)
        if col is None or col.kind != ColumnKind.CATEGORICAL:
            raise ParameterError(
                f"table {spec.name!r}: domains given for {name!r}, which is not a categorical output column"
            )
    for name, pair in ranges.items():
        col = by_name.get(name)
        if col is None or col.kind not in (ColumnKind.NUMERIC, ColumnKind.INTEGER, ColumnKind.DATETIME):
            raise ParameterError(
                f"table {spec.name!r}: ranges given for {name!r}, which is not a numeric, integer or datetime output column"
            )
        if isinstance(pair, str | bytes) or not isinstance(pair, Sequence) or len(pair) != 2:
            raise ParameterError(
                f"table {spec.name!r}: the range of column {name!r} must be a (low, high) pair"
            )


def _expected_dtypes(
    spec: TableSpec, columns: Sequence[ColumnSpec], dtypes: Mapping[str, Any]
) -> dict[str, str]:
    from pandas.api.types import pandas_dtype

    out: dict[str, str] = {}
    missing = [c.name for c in columns if c.name not in dtypes]
    if missing:
        raise SpecError(f"table {spec.name!r}: no source dtype given for output columns {missing}")
    for col in columns:
        name = str(dtypes[col.name])
        try:
            pandas_dtype(name)
        except (TypeError, ValueError):
            raise SpecError(
                f"table {spec.name!r}, column {col.name!r}: pandas does not know the dtype {name!r}"
            ) from None
        out[col.name] = name
    return out


def _domain(
    spec: TableSpec, col: ColumnSpec, dtype: str, domains: Mapping[str, Sequence[Any]]
) -> tuple[list[Any], str] | None:
    from pandas.api.types import is_bool_dtype, is_integer_dtype, pandas_dtype

    if col.kind == ColumnKind.BOOLEAN:
        return ([0, 1] if is_integer_dtype(pandas_dtype(dtype)) else [True, False]), "spec"
    if col.kind != ColumnKind.CATEGORICAL:
        return None
    if col.categories is not None:
        raw, source = list(col.categories), "public"
    elif col.name in domains:
        raw, source = list(domains[col.name]), "dp"
    else:
        return None
    parsed = pandas_dtype(dtype)
    values: list[Any] = []
    for value in raw:
        if _is_null(value):
            continue
        value = value.item() if hasattr(value, "item") and not isinstance(value, str | bytes) else value
        try:
            if is_bool_dtype(parsed):
                value = _as_bool(value)
            elif is_integer_dtype(parsed):
                if isinstance(value, float) and not value.is_integer():
                    raise ValueError
                value = int(value)
            elif parsed.kind == "f":
                value = float(value)
            elif str(parsed) in ("str", "string"):
                value = str(value)
        except (TypeError, ValueError):
            raise SpecError(
                f"table {spec.name!r}, column {col.name!r}: a {source} category does not fit the dtype {dtype!r}"
            ) from None
        if value not in values:
            values.append(value)
    if not values:
        raise SpecError(f"table {spec.name!r}, column {col.name!r}: the {source} category domain is empty")
    return values, source


def _bounds(
    spec: TableSpec, col: ColumnSpec, dtype: str, ranges: Mapping[str, tuple[RangeBound, RangeBound]]
) -> tuple[Any, Any, str] | None:
    where = f"table {spec.name!r}, column {col.name!r}"
    if col.kind in (ColumnKind.NUMERIC, ColumnKind.INTEGER):
        if col.bounds is not None:
            low, high = col.bounds
            return low, high, "public"
        if col.name not in ranges:
            return None
        try:
            low, high = (float(v) for v in ranges[col.name])  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ParameterError(f"{where}: the DP range must be two numbers") from None
        if not (math.isfinite(low) and math.isfinite(high)) or low > high:
            raise ParameterError(f"{where}: the DP range must be finite with low <= high")
        return low, high, "dp"
    if col.kind == ColumnKind.DATETIME:
        if col.datetime_range is not None:
            first, last = col.datetime_range
            source = "public"
        elif col.name in ranges:
            first, last = (_as_datetime(v, where) for v in ranges[col.name])
            source = "dp"
            if first > last:
                raise ParameterError(f"{where}: the DP range must have first <= last")
        else:
            return None
        return _align_tz(first, dtype), _align_tz(last, dtype), source
    return None


def _align_tz(value: dt.datetime, dtype: str) -> dt.datetime:
    """Make a bound comparable with the column: aware (naive read as UTC) for a tz-aware dtype,
    naive UTC for a naive one."""
    import pandas as pd
    from pandas.api.types import pandas_dtype

    aware = isinstance(pandas_dtype(dtype), pd.DatetimeTZDtype)
    if aware:
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value
    if value.tzinfo is not None:
        return value.astimezone(dt.UTC).replace(tzinfo=None)
    return value


def _as_datetime(value: Any, where: str) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value
    if hasattr(value, "to_pydatetime"):
        return value.to_pydatetime()
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day)
    try:
        return dt.datetime.fromisoformat(str(value))
    except ValueError:
        raise ParameterError(f"{where}: the DP range must hold datetimes or ISO strings") from None


def _as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.strip().lower() in ("true", "1", "yes")
    raise ValueError


def _is_null(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(value != value)  # NaN, NaT, pd.NA raise or compare unequal
    except (TypeError, ValueError):
        return True


__all__ = ["CHECKS", "build_expectation_suite"]
