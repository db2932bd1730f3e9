"""Build a Great Expectations suite for a synthetic table from its :class:`TableSpec`.

The suite holds only what is public or was released under DP: the spec's columns, kinds and
nullability, the source's pandas dtype names, public bounds / category domains / datetime ranges,
and optionally DP-discovered domains and DP-estimated ranges handed over from the fitted model,
expected NULL rates (DP estimates or declared), the spec's semantic rules, privacy thresholds and
the user's own expectations. Nothing here reads the real table.

Expectations run on one of three data assets, named in their ``meta`` (``dpsynth_asset``): the
synthetic frame (default), the derived per-row rule verdicts (``rules``), or the one-row frame of
release metrics (``privacy``).

GX, pandas and :mod:`synth_core.spec` (which loads pandas through :mod:`synth_core.rules`) are
imported inside the functions: importing this module stays cheap.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import math
import os
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from synth_core.errors import ParameterError, SpecError
from synth_expectations.gx_logging import quiet_gx
from synth_expectations.privacy import PRIVACY_METRICS, TARGET_EPSILON_PARAMETER, PrivacyThresholds

if TYPE_CHECKING:
    import great_expectations as gx
    from great_expectations.expectations import Expectation
    from great_expectations.expectations.metadata_types import FailureSeverity

    from synth_core.spec import ColumnSpec, TableSpec

#: Check families; each expectation of a suite belongs to one (``meta["dpsynth_check"]``).
CHECKS: tuple[str, ...] = (
    "columns",
    "type",
    "not_null",
    "domain",
    "range",
    "unique",
    "row_count",
    "rule",
    "null_rate",
    "privacy",
    "custom",
)

#: Key of the suite's ``meta`` that holds what validation needs (table name, expected dtypes).
SUITE_META_KEY = "dpsynth"

#: Key of an expectation's ``meta`` naming its check family.
CHECK_META_KEY = "dpsynth_check"
#: Key of an expectation's ``meta`` naming where its parameters come from (``spec``, ``public``, ``dp``).
SOURCE_META_KEY = "dpsynth_source"
#: Key of an expectation's ``meta`` naming the data asset it runs on (see ``ASSET_*``).
ASSET_META_KEY = "dpsynth_asset"
#: The synthetic frame itself (absent ``ASSET_META_KEY`` means this asset).
ASSET_TABLE = "table"
#: The derived boolean frame with one column per rule (``rule__<name>``), one row per row.
ASSET_RULES = "rules"
#: The one-row frame of release metrics (``dcr_share``, ``nndr_mean``, ``attack_auc``, ``epsilon``).
ASSET_PRIVACY = "privacy"
#: Keys of a rule expectation's ``meta``: the rule's name and expression.
RULE_META_KEY = "dpsynth_rule"
RULE_EXPR_META_KEY = "dpsynth_expr"
#: Column of the rule asset holding a rule's per-row verdict.
RULE_COLUMN_PREFIX = "rule__"
#: Keys of a privacy expectation's ``meta``: the metric, the threshold's name and value (``None``
#: when it is the release's target ε, an expectation parameter).
METRIC_META_KEY = "dpsynth_metric"
THRESHOLD_NAME_META_KEY = "dpsynth_threshold_name"
THRESHOLD_META_KEY = "dpsynth_threshold"
#: Keys of a NULL-rate expectation's ``meta``: the expected rate and the absolute tolerance.
NULL_RATE_META_KEY = "dpsynth_null_rate"
TOLERANCE_META_KEY = "dpsynth_tolerance"

RangeBound = float | int | dt.datetime | dt.date | str

#: What ``extra_expectations`` accepts: GX expectations, a callable ``(spec, dtypes)`` returning
#: them, or the path of a GX suite JSON file (``ExpectationSuite.to_json_dict()`` dumped as JSON).
ExtraExpectations = Union[
    Sequence["Expectation"],
    Callable[["TableSpec", Mapping[str, str]], Iterable["Expectation"]],
    str,
    "os.PathLike[str]",
]


@quiet_gx
def build_expectation_suite(
    spec: TableSpec,
    dtypes: Mapping[str, Any],
    *,
    domains: Mapping[str, Sequence[Any]] | None = None,
    ranges: Mapping[str, tuple[RangeBound, RangeBound]] | None = None,
    row_count: int | None = None,
    suite_name: str | None = None,
    warning_checks: Collection[str] = (),
    null_rates: Mapping[str, float] | None = None,
    null_rate_tolerance: float = 0.05,
    privacy_thresholds: PrivacyThresholds | None = None,
    extra_expectations: ExtraExpectations | None = None,
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
    * ``null_rate``: ``ExpectColumnProportionOfNonNullValuesToBeBetween`` for each column of
      ``null_rates``: its NULL fraction must lie within ``rate ± null_rate_tolerance``;

    then, for the table:

    * ``row_count``: ``ExpectTableRowCountToEqual`` when ``row_count`` is given;
    * ``rule``: one ``ExpectColumnValuesToBeInSet(value_set=[True])`` per rule of ``spec.rules``,
      on the column ``rule__<name>`` of a derived boolean frame (one row per synthetic row: the
      rule holds, or is unknown because of NULLs); severity from the rule;
    * ``privacy`` (when ``privacy_thresholds`` is given): on a one-row frame of release metrics,
      ``ExpectColumnMaxToBeBetween`` for ``dcr_share <= max_dcr_share``,
      ``attack_auc <= max_attack_auc`` and ``epsilon <= max_epsilon`` (or, when ``max_epsilon`` is
      ``None``, ``<= $PARAMETER target_epsilon``, the release's own target), and
      ``ExpectColumnMinToBeBetween`` for ``nndr_mean >= min_nndr``;
    * ``custom``: ``extra_expectations``, run on the synthetic frame.

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
            every other expectation is critical (rules: as the rule says; custom: as the
            expectation's own ``severity`` says).
        null_rates: expected NULL fraction (0..1) per output column: a DP estimate or a declared
            rate.
        null_rate_tolerance: the absolute tolerance around each expected NULL fraction.
        privacy_thresholds: add the privacy expectations with these thresholds; the metrics are
            given at validation (``release_metrics`` of :func:`~synth_expectations.validate_suite`).
        extra_expectations: the user's own expectations on the synthetic frame: GX
            ``Expectation`` objects, a callable ``(spec, dtypes) -> expectations`` (``dtypes``:
            output column → dtype name), or the path of a GX suite JSON file (the JSON of
            ``ExpectationSuite.to_json_dict()``). Copies are added; their results are as
            value-free as the rest.

    Raises:
        SpecError: an output column has no dtype, a dtype name pandas does not know, or a domain
            value that does not fit its dtype.
        ParameterError: ``domains``/``ranges``/``null_rates`` name an unknown or unsuitable
            column, a range is not ``low < high``, a NULL rate or the tolerance is not in
            ``[0, 1]``, ``row_count`` is negative, ``warning_checks`` names an unknown check, or
            ``extra_expectations`` is not usable (unknown expectation type, unreadable file).
    """
    import great_expectations as gx
    import great_expectations.expectations as gxe
    from great_expectations.expectations.metadata_types import FailureSeverity

    from synth_core.spec import ColumnKind

    unknown_checks = sorted(set(warning_checks) - set(CHECKS))
    if unknown_checks:
        raise ParameterError(f"warning_checks: unknown checks {unknown_checks}; known: {list(CHECKS)}")
    if row_count is not None and (
        isinstance(row_count, bool) or int(row_count) != row_count or row_count < 0
    ):
        raise ParameterError(
            f"table {spec.name!r}: row_count must be a non-negative integer, got {row_count!r}"
        )
    if privacy_thresholds is not None and not isinstance(privacy_thresholds, PrivacyThresholds):
        raise ParameterError(
            f"privacy_thresholds must be a PrivacyThresholds, got {type(privacy_thresholds).__name__}"
        )
    domains = dict(domains or {})
    ranges = dict(ranges or {})
    columns = spec.output_columns
    by_name = {c.name: c for c in columns}
    _check_overrides(spec, by_name, domains, ranges)
    rates = _null_rates(spec, by_name, null_rates, null_rate_tolerance)
    expected = _expected_dtypes(spec, columns, dtypes)

    def severity(check: str) -> FailureSeverity:
        return FailureSeverity.WARNING if check in warning_checks else FailureSeverity.CRITICAL

    def meta(check: str, source: str, **extra: Any) -> dict[str, Any]:
        return {CHECK_META_KEY: check, SOURCE_META_KEY: source, **extra}

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
        if name in rates:
            rate = rates[name]
            low_rate, high_rate = _clip01(rate - null_rate_tolerance), _clip01(rate + null_rate_tolerance)
            exps.append(
                gxe.ExpectColumnProportionOfNonNullValuesToBeBetween(
                    column=name,
                    min_value=_clip01(1.0 - high_rate),
                    max_value=_clip01(1.0 - low_rate),
                    severity=severity("null_rate"),
                    meta=meta(
                        "null_rate",
                        "given",
                        **{NULL_RATE_META_KEY: rate, TOLERANCE_META_KEY: float(null_rate_tolerance)},
                    ),
                    notes=f"Expected NULL rate {rate:.4g} ± {float(null_rate_tolerance):.4g} (absolute).",
                )
            )
    if row_count is not None:
        exps.append(
            gxe.ExpectTableRowCountToEqual(
                value=int(row_count), severity=severity("row_count"), meta=meta("row_count", "spec")
            )
        )
    for rule in spec.rules:
        rule_severity = (
            FailureSeverity.WARNING
            if rule.severity == "warning" or "rule" in warning_checks
            else FailureSeverity.CRITICAL
        )
        exps.append(
            gxe.ExpectColumnValuesToBeInSet(
                column=f"{RULE_COLUMN_PREFIX}{rule.name}",
                value_set=[True],
                severity=rule_severity,
                meta=meta(
                    "rule",
                    "spec",
                    **{ASSET_META_KEY: ASSET_RULES, RULE_META_KEY: rule.name, RULE_EXPR_META_KEY: rule.expr},
                ),
                description=_template_text(f"Rule {rule.name} holds on every row: {rule.expr}"),
                notes=rule.description or None,  # Markdown in Data Docs
            )
        )
    if privacy_thresholds is not None:
        exps.extend(_privacy_expectations(privacy_thresholds, severity("privacy")))
    exps.extend(_extra_expectations(extra_expectations, spec, expected, "custom" in warning_checks))
    return gx.ExpectationSuite(
        name=suite_name or f"{spec.name}.synthetic",
        expectations=exps,
        meta={
            SUITE_META_KEY: {
                "table": spec.name,
                "columns": [c.name for c in columns],
                "dtypes": expected,
                "rules": [r.to_dict() for r in spec.rules],
                "privacy_thresholds": privacy_thresholds.to_dict() if privacy_thresholds else None,
            }
        },
    )


# ------------------------------------------------------------------------------------------------
# helpers


def _clip01(value: float) -> float:
    """``value`` clipped to ``[0, 1]`` and rounded to 12 decimals (no ``0.8500000000000001``)."""
    return round(min(1.0, max(0.0, value)), 12)


def _template_text(text: str) -> str:
    """Text safe as a GX string template (Data Docs substitute ``$name``)."""
    return text.replace("$", "$$")


def _null_rates(
    spec: TableSpec,
    by_name: Mapping[str, ColumnSpec],
    null_rates: Mapping[str, float] | None,
    tolerance: float,
) -> dict[str, float]:
    if isinstance(tolerance, bool) or not isinstance(tolerance, int | float) or not 0.0 <= tolerance <= 1.0:
        raise ParameterError(f"table {spec.name!r}: null_rate_tolerance must be in [0, 1], got {tolerance!r}")
    out: dict[str, float] = {}
    for name, rate in (null_rates or {}).items():
        if name not in by_name:
            raise ParameterError(
                f"table {spec.name!r}: null_rates given for {name!r}, which is not an output column"
            )
        if hasattr(rate, "item"):
            rate = rate.item()
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0.0 <= rate <= 1.0:
            raise ParameterError(
                f"table {spec.name!r}, column {name!r}: the NULL rate must be a fraction in [0, 1], got {rate!r}"
            )
        out[name] = float(rate)
    return out


def _privacy_expectations(thresholds: PrivacyThresholds, severity: FailureSeverity) -> list[Expectation]:
    import great_expectations.expectations as gxe

    exps: list[Expectation] = []
    for metric, (label, bound, field_name) in PRIVACY_METRICS.items():
        value: float | None = getattr(thresholds, field_name)
        threshold_name = field_name
        limit: Any = value
        if value is None:  # ε against the release's own target, given at validation
            threshold_name = TARGET_EPSILON_PARAMETER
            limit = {"$PARAMETER": TARGET_EPSILON_PARAMETER}
            text = f"Privacy: {label} must be at most the release's target ε"
        else:
            text = f"Privacy: {label} must be at {'most' if bound == 'max' else 'least'} {value:g} ({field_name})"
        meta = {
            CHECK_META_KEY: "privacy",
            SOURCE_META_KEY: "thresholds",
            ASSET_META_KEY: ASSET_PRIVACY,
            METRIC_META_KEY: metric,
            THRESHOLD_NAME_META_KEY: threshold_name,
            THRESHOLD_META_KEY: value,
        }
        common: dict[str, Any] = {
            "column": metric,
            "severity": severity,
            "meta": meta,
            "description": _template_text(text),
        }
        if bound == "max":
            exps.append(gxe.ExpectColumnMaxToBeBetween(max_value=limit, **common))
        else:
            exps.append(gxe.ExpectColumnMinToBeBetween(min_value=limit, **common))
    return exps


def _extra_expectations(
    extra: ExtraExpectations | None, spec: TableSpec, dtypes: Mapping[str, str], as_warning: bool
) -> list[Expectation]:
    """Copies of the user's expectations, tagged ``custom`` (on the synthetic frame)."""
    import great_expectations as gx
    from great_expectations.expectations import Expectation
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration
    from great_expectations.expectations.metadata_types import FailureSeverity

    if extra is None:
        return []
    where = f"table {spec.name!r}: extra_expectations"
    items: list[Any]
    if isinstance(extra, str | os.PathLike):
        items = _load_suite_json(Path(extra), where)
        where = f"{where} file {str(extra)!r}"
    elif callable(extra) and not isinstance(extra, Expectation):
        produced = extra(spec, dict(dtypes))
        if isinstance(produced, Expectation) or not isinstance(produced, Iterable):
            raise ParameterError(f"{where}: the callable must return a sequence of GX expectations")
        items = list(produced)
    elif isinstance(extra, Expectation):
        items = [extra]
    elif isinstance(extra, gx.ExpectationSuite):
        items = list(extra.expectations)
    elif isinstance(extra, Iterable) and not isinstance(extra, Mapping | bytes):
        items = list(extra)
    else:
        raise ParameterError(
            f"{where}: expected GX expectations, a callable or a suite JSON path, got {type(extra).__name__}"
        )
    out: list[Expectation] = []
    for i, item in enumerate(items):
        if isinstance(item, ExpectationConfiguration | Mapping):
            try:
                item = _configuration(item).to_domain_obj()
            except Exception as exc:  # unknown type, bad kwargs (user config, not table values)
                kind = item.get("type") if isinstance(item, Mapping) else item.type
                raise ParameterError(
                    f"{where}: expectation #{i} ({kind!r}) is not valid: {type(exc).__name__}: "
                    f"{str(exc).splitlines()[0] if str(exc) else ''}"
                ) from None
        if not isinstance(item, Expectation):
            raise ParameterError(f"{where}: item #{i} is a {type(item).__name__}, not a GX Expectation")
        clone = copy.copy(item)
        clone.id = None
        user_meta = {k: v for k, v in (item.meta or {}).items() if not str(k).startswith("dpsynth_")}
        clone.meta = {**user_meta, CHECK_META_KEY: "custom", SOURCE_META_KEY: "user"}
        if as_warning:
            clone.severity = FailureSeverity.WARNING
        out.append(clone)
    return out


def _configuration(item: Any) -> Any:
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration
    from great_expectations.expectations.metadata_types import FailureSeverity

    if isinstance(item, ExpectationConfiguration):
        return item
    raw = dict(item)
    if "type" not in raw and "expectation_type" in raw:  # GX 0.x spelling
        raw["type"] = raw.pop("expectation_type")
    return ExpectationConfiguration(
        type=raw["type"],
        kwargs=dict(raw.get("kwargs") or {}),
        meta=raw.get("meta"),
        notes=raw.get("notes"),
        description=raw.get("description"),
        severity=FailureSeverity(raw.get("severity") or FailureSeverity.CRITICAL),
    )


def _load_suite_json(path: Path, where: str) -> list[Any]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ParameterError(f"{where}: cannot read {str(path)!r} ({type(exc).__name__})") from None
    except ValueError:
        raise ParameterError(f"{where}: {str(path)!r} is not JSON") from None
    exps = raw.get("expectations") if isinstance(raw, dict) else raw
    if not isinstance(exps, list) or not all(isinstance(e, dict) for e in exps):
        raise ParameterError(
            f"{where}: {str(path)!r} must hold a GX suite (an object with an 'expectations' list)"
        )
    return exps


def _check_overrides(
    spec: TableSpec, by_name: Mapping[str, ColumnSpec], domains: Mapping[str, Any], ranges: Mapping[str, Any]
) -> None:
    from synth_core.spec import ColumnKind

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

    from synth_core.spec import ColumnKind

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
    from synth_core.spec import ColumnKind

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


__all__ = ["CHECKS", "ExtraExpectations", "build_expectation_suite"]
