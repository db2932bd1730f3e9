"""Validate a synthetic pandas frame with a suite, through GX Core 1.x, without leaking cell values.

The run uses an ephemeral Data Context (in-memory stores), a pandas Data Source with a dataframe
asset and a whole-dataframe Batch Definition, a ``ValidationDefinition`` and a ``Checkpoint``.
Results are requested in ``SUMMARY`` format with no partial unexpected list, no unexpected rows
and no index query, so GX records counts and percentages only.

Two more guards keep values out of results and Data Docs:

* expectations on a missing column, and domain/range expectations on a column whose dtype is not
  the expected one, are not run (they would raise, and an exception's text could quote a cell
  value); they are reported as failed, "not evaluated";
* any expectation that still raises has its exception message and traceback removed from the
  stored result before Data Docs are built; only the exception's class name is kept.
"""

from __future__ import annotations

import copy
import time
import uuid
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from synth_core.errors import ParameterError
from synth_core.spec import TableSpec
from synth_expectations.outcome import ExpectationResult, ValidationOutcome
from synth_expectations.suite import (
    CHECK_META_KEY,
    SOURCE_META_KEY,
    SUITE_META_KEY,
    RangeBound,
    build_expectation_suite,
)

if TYPE_CHECKING:
    import great_expectations as gx
    import pandas as pd
    from great_expectations.core import ExpectationValidationResult
    from great_expectations.expectations import Expectation

#: The GX result format every run uses: counts and percentages, never values or row indices.
RESULT_FORMAT: dict[str, Any] = {
    "result_format": "SUMMARY",
    "partial_unexpected_count": 0,
    "include_unexpected_rows": False,
    "return_unexpected_index_query": False,
}

#: Keys of a GX expectation result that are safe to keep (counts, percentages, dtype/column names).
_SAFE_RESULT_KEYS = frozenset(
    {
        "element_count",
        "unexpected_count",
        "unexpected_percent",
        "unexpected_percent_total",
        "unexpected_percent_nonmissing",
        "missing_count",
        "missing_percent",
    }
)
#: Expectations whose ``observed_value`` is schema, not data (a dtype name, column names, a count).
_SAFE_OBSERVED = frozenset(
    {
        "expect_column_type_to_be",
        "expect_table_columns_to_match_ordered_list",
        "expect_table_row_count_to_equal",
    }
)

#: Expectations that compare values with typed bounds or sets: run only on a correctly typed column.
_VALUE_TYPED = frozenset({"expect_column_values_to_be_in_set", "expect_column_values_to_be_between"})

_DOCS_SITE = "dpsynth"


def validate_frame(
    frame: pd.DataFrame,
    spec: TableSpec,
    dtypes: Mapping[str, Any],
    *,
    domains: Mapping[str, Sequence[Any]] | None = None,
    ranges: Mapping[str, tuple[RangeBound, RangeBound]] | None = None,
    row_count: int | None = None,
    data_docs_dir: str | None = None,
    warning_checks: Collection[str] = (),
) -> ValidationOutcome:
    """Validate a synthetic frame against the suite built from ``spec`` and the source dtypes.

    Builds the suite with :func:`~synth_expectations.build_expectation_suite` (same arguments)
    and runs it with :func:`validate_suite`.

    Args:
        frame: the synthetic table.
        spec, dtypes, domains, ranges, row_count, warning_checks: see
            :func:`~synth_expectations.build_expectation_suite`.
        data_docs_dir: when given, GX Data Docs (static HTML) are built into this local folder
            and :attr:`ValidationOutcome.data_docs_index` is the path of its ``index.html``.

    Returns:
        A :class:`ValidationOutcome`; it does not raise on failed expectations (see
        :meth:`ValidationOutcome.failure_message`).
    """
    suite = build_expectation_suite(
        spec, dtypes, domains=domains, ranges=ranges, row_count=row_count, warning_checks=warning_checks
    )
    return validate_suite(frame, suite, data_docs_dir=data_docs_dir)


def validate_suite(
    frame: pd.DataFrame, suite: gx.ExpectationSuite, *, data_docs_dir: str | None = None
) -> ValidationOutcome:
    """Run a suite made by :func:`~synth_expectations.build_expectation_suite` on ``frame``.

    See :func:`validate_frame`; this lets a caller build a suite once and validate many frames.
    """
    outcome, _ = _run_suite(frame, suite, data_docs_dir=data_docs_dir)
    return outcome


# ------------------------------------------------------------------------------------------------
# the run


def _run_suite(
    frame: pd.DataFrame, suite: gx.ExpectationSuite, *, data_docs_dir: str | None = None
) -> tuple[ValidationOutcome, list[dict[str, Any]]]:
    """Validate and return the outcome plus the JSON of the results as stored in GX's store."""
    import great_expectations as gx
    import pandas as pd

    started = time.perf_counter()
    if not isinstance(frame, pd.DataFrame):
        raise ParameterError(f"validate: expected a pandas DataFrame, got {type(frame).__name__}")
    info = suite.meta.get(SUITE_META_KEY) if isinstance(suite.meta, dict) else None
    if not isinstance(info, dict) or not isinstance(info.get("dtypes"), dict):
        raise ParameterError(
            f"suite {suite.name!r} was not built by synth_expectations.build_expectation_suite"
        )
    expected: dict[str, str] = info["dtypes"]
    frame_dtypes = _frame_dtypes(frame)

    # Split the suite: expectations that can run, and those whose column is missing or mistyped.
    runnable: dict[int, Expectation] = {}
    skipped: dict[int, ExpectationResult] = {}
    for i, exp in enumerate(suite.expectations):
        column = getattr(exp, "column", None)
        if column is not None:
            reason = _why_not_evaluable(column, expected.get(column), frame_dtypes, exp.expectation_type)
            if reason is not None:
                skipped[i] = _not_evaluated(exp, column, reason)
                continue
        clone = copy.copy(exp)
        clone.id = None
        runnable[i] = clone

    docs_dir = Path(data_docs_dir).resolve() if data_docs_dir is not None else None
    context = _ephemeral_context(docs_dir)
    tag = uuid.uuid4().hex[:8]
    run_suite = context.suites.add(
        gx.ExpectationSuite(name=suite.name, expectations=list(runnable.values()), meta=dict(suite.meta))
    )
    batch_definition = (
        context.data_sources.add_pandas(f"dpsynth-{tag}")
        .add_dataframe_asset(str(info.get("table") or "synthetic"))
        .add_batch_definition_whole_dataframe("whole-frame")
    )
    validation = context.validation_definitions.add(
        gx.ValidationDefinition(name=f"{suite.name}-{tag}", data=batch_definition, suite=run_suite)
    )
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name=f"dpsynth-{tag}",
            validation_definitions=[validation],
            actions=[],
            result_format=RESULT_FORMAT,
        )
    )
    checkpoint_result = checkpoint.run(batch_parameters={"dataframe": frame})

    # Scrub what GX stored (exception texts may quote values), keep the store in step, then docs.
    gx_results: dict[str, tuple[ExpectationValidationResult, list[str]]] = {}
    stored: list[dict[str, Any]] = []
    for key, suite_result in checkpoint_result.run_results.items():
        for res in suite_result.results:
            raised = _scrub(res)
            if res.expectation_config is not None:
                gx_results[str(res.expectation_config.id)] = (res, raised)
        context.validation_results_store.set(key, suite_result)
        stored.append(context.validation_results_store.get(key).to_json_dict())
    data_docs_index: str | None = None
    if docs_dir is not None:
        docs_dir.mkdir(parents=True, exist_ok=True)
        context.build_data_docs(site_names=[_DOCS_SITE])
        index = docs_dir / "index.html"
        if not index.is_file():  # pragma: no cover - GX always writes it
            raise RuntimeError(f"GX did not write Data Docs to {docs_dir}")
        data_docs_index = str(index)

    # One result per expectation of the caller's suite, in its order (adding to the suite gave
    # each clone an id, which its result's configuration carries).
    results: list[ExpectationResult] = []
    for i, exp in enumerate(suite.expectations):
        if i in skipped:
            results.append(skipped[i])
            continue
        res, raised = gx_results.get(str(runnable[i].id), (None, []))
        results.append(_to_result(exp, res, raised, frame))

    failures = [r for r in results if not r.success]
    statistics: dict[str, Any] = {
        "evaluated_expectations": sum(r.evaluated for r in results),
        "not_evaluated_expectations": sum(not r.evaluated for r in results),
        "successful_expectations": len(results) - len(failures),
        "unsuccessful_expectations": len(failures),
        "critical_failures": sum(r.severity == "critical" for r in failures),
        "warning_failures": sum(r.severity == "warning" for r in failures),
        "success_percent": round(100.0 * (len(results) - len(failures)) / len(results), 3)
        if results
        else 100.0,
        "rows": len(frame),
        "columns": len(frame.columns),
        "runtime_s": round(time.perf_counter() - started, 3),
    }
    outcome = ValidationOutcome(
        success=not any(r.severity == "critical" for r in failures),
        results=results,
        statistics=statistics,
        data_docs_index=data_docs_index,
    )
    return outcome, stored


def _ephemeral_context(docs_dir: Path | None) -> Any:
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    sites: dict[str, Any] = {}
    if docs_dir is not None:
        sites[_DOCS_SITE] = {
            "class_name": "SiteBuilder",
            "show_how_to_buttons": False,
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        }
    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        data_docs_sites=sites,
        progress_bars=ProgressBarsConfig(globally=False),
        analytics_enabled=False,
    )
    return gx.get_context(mode="ephemeral", project_config=config)


def _frame_dtypes(frame: pd.DataFrame) -> dict[str, Any]:
    """Column name → dtype; a duplicated name maps to ``None`` (not evaluable)."""
    out: dict[str, Any] = {}
    for name, dtype in zip(frame.columns, frame.dtypes, strict=True):
        out[str(name)] = None if str(name) in out else dtype
    return out


def _dtype_matches(actual: Any, expected: str) -> bool:
    """The same rule as GX's ``ExpectColumnTypeToBe`` on pandas: the exact dtype."""
    import numpy as np
    import pandas as pd
    from pandas.api.types import pandas_dtype

    parsed = pandas_dtype(expected)
    if isinstance(parsed, np.dtype) and parsed.kind in "mM" and np.datetime_data(parsed)[0] == "generic":
        return isinstance(actual, np.dtype) and actual.kind == parsed.kind
    if isinstance(actual, pd.StringDtype) and isinstance(parsed, pd.StringDtype):
        return str(actual) == str(parsed)
    return bool(actual in (parsed, expected))


def _why_not_evaluable(
    column: str, expected: str | None, frame_dtypes: Mapping[str, Any], exp_type: str
) -> str | None:
    if column not in frame_dtypes:
        return "the column is missing from the frame"
    actual = frame_dtypes[column]
    if actual is None:
        return "the frame has several columns with this name"
    if exp_type not in _VALUE_TYPED or expected is None:
        return None
    if not _dtype_matches(actual, expected):
        return f"the column has dtype {str(actual)!r} instead of {expected!r}"
    return None


def _not_evaluated(exp: Expectation, column: str, reason: str) -> ExpectationResult:
    return ExpectationResult(
        expectation_type=exp.expectation_type,
        column=column,
        success=False,
        severity=_severity(exp),
        summary=f"column {column!r}: {exp.expectation_type} was not evaluated because {reason}.",
        check=_check(exp),
        evaluated=False,
    )


def _scrub(res: ExpectationValidationResult) -> list[str]:
    """Keep counts and schema facts only; drop exception texts and any value lists.

    Returns the class names of the exceptions the expectation raised (empty when none).
    """
    info = res.exception_info or {}
    raised = _raised_exception_names(info)
    if raised:
        withheld = f"{', '.join(raised)} (text withheld by dpsynth: it may quote cell values)"
        # Data Docs render the traceback as a string: keep it a string.
        res.exception_info = {
            "raised_exception": True,
            "exception_message": withheld,
            "exception_traceback": withheld,
        }
    elif info:
        res.exception_info = {
            "raised_exception": False,
            "exception_message": None,
            "exception_traceback": None,
        }
    etype = res.expectation_config.type if res.expectation_config is not None else ""
    result = dict(res.result or {})
    keep = {k: v for k, v in result.items() if k in _SAFE_RESULT_KEYS}
    if "observed_value" in result and etype in _SAFE_OBSERVED:
        keep["observed_value"] = result["observed_value"]
    if etype == "expect_table_columns_to_match_ordered_list" and "details" in result:
        keep["details"] = result["details"]  # column names and positions only
    res.result = keep
    return raised


def _raised_exception_names(info: Mapping[str, Any]) -> list[str]:
    """Exception class names from GX's ``exception_info`` (flat, or keyed by metric)."""
    entries: list[Mapping[str, Any]] = []
    if "raised_exception" in info or "exception_traceback" in info:
        entries.append(info)
    else:
        entries.extend(v for v in info.values() if isinstance(v, Mapping))
    names: list[str] = []
    for entry in entries:
        trace = entry.get("exception_traceback")
        if not (entry.get("raised_exception") or trace):
            continue
        name = "Exception"
        if isinstance(trace, str) and trace.strip():
            last = trace.strip().splitlines()[-1]
            head = last.split(":", 1)[0].strip()
            if head and " " not in head:
                name = head.rsplit(".", 1)[-1]
        if name not in names:
            names.append(name)
    return names


def _severity(exp: Expectation) -> str:
    value = getattr(exp.severity, "value", exp.severity)
    return "warning" if str(value) in ("warning", "info") else "critical"


def _check(exp: Expectation) -> str:
    return str((exp.meta or {}).get(CHECK_META_KEY, ""))


def _source(exp: Expectation) -> str:
    return str((exp.meta or {}).get(SOURCE_META_KEY, ""))


def _to_result(
    exp: Expectation,
    res: ExpectationValidationResult | None,
    raised: Sequence[str],
    frame: pd.DataFrame,
) -> ExpectationResult:
    column: str | None = getattr(exp, "column", None)
    etype = exp.expectation_type
    base: dict[str, Any] = {
        "expectation_type": etype,
        "column": column,
        "severity": _severity(exp),
        "check": _check(exp),
    }
    where = f"column {column!r}" if column is not None else "table"
    if res is None:  # pragma: no cover - GX returns one result per expectation
        return ExpectationResult(
            success=False, summary=f"{where}: {etype} returned no result.", evaluated=False, **base
        )
    if raised:
        return ExpectationResult(
            success=False,
            summary=f"{where}: {etype} could not be evaluated (GX raised {', '.join(raised)}; message withheld).",
            evaluated=False,
            **base,
        )
    success = bool(res.success)
    verdict = "passed" if success else "failed"
    result = res.result or {}
    unexpected = result.get("unexpected_count")
    percent = result.get("unexpected_percent")
    elements = result.get("element_count")
    missing = result.get("missing_count")

    if etype == "expect_table_columns_to_match_ordered_list":
        summary = f"column list: {etype} {verdict}"
        if not success:
            summary += f": {_column_diff(list(getattr(exp, 'column_list', []) or []), [str(c) for c in frame.columns])}"
        summary += "."
    elif etype == "expect_column_type_to_be":
        observed = result.get("observed_value")
        summary = f"{where}: {etype} {verdict}: dtype {observed!s}, expected {getattr(exp, 'type_', '')!s}."
    elif etype == "expect_table_row_count_to_equal":
        summary = f"row count: {etype} {verdict}: {result.get('observed_value')} rows, expected {getattr(exp, 'value', '')}."
    elif etype == "expect_column_values_to_not_be_null":
        summary = f"{where}: {etype} {verdict}: {_counts(unexpected, percent, elements, None, 'rows')} NULL in a non-nullable column."
    elif etype == "expect_column_values_to_be_in_set":
        domain = getattr(exp, "value_set", None) or []
        what = {"public": "public category domain", "dp": "DP-discovered category domain"}.get(
            _source(exp), "boolean domain"
        )
        summary = (
            f"{where}: {etype} {verdict}: {_counts(unexpected, percent, elements, missing, 'non-null values')} "
            f"outside the {what} ({len(domain)} values)."
        )
    elif etype == "expect_column_values_to_be_between":
        what = {"public": "public", "dp": "DP-estimated"}.get(_source(exp), "declared")
        low, high = getattr(exp, "min_value", None), getattr(exp, "max_value", None)
        summary = (
            f"{where}: {etype} {verdict}: {_counts(unexpected, percent, elements, missing, 'non-null values')} "
            f"outside the {what} range [{_fmt(low)}, {_fmt(high)}]."
        )
    elif etype == "expect_column_values_to_be_unique":
        summary = f"{where}: {etype} {verdict}: {_counts(unexpected, percent, elements, missing, 'non-null values')} duplicated."
    else:  # pragma: no cover - every expectation the builder makes is handled above
        summary = f"{where}: {etype} {verdict}."
    return ExpectationResult(
        success=success,
        summary=summary,
        unexpected_count=int(unexpected) if isinstance(unexpected, int | float) else None,
        unexpected_percent=float(percent) if isinstance(percent, int | float) else None,
        **base,
    )


def _counts(unexpected: Any, percent: Any, elements: Any, missing: Any, unit: str) -> str:
    """``"3 of 32,561 rows (0.0092%)"``: counts and a percentage, nothing else."""
    if not isinstance(unexpected, int | float):
        return f"an unknown number of {unit}"
    text = f"{int(unexpected):,}"
    if isinstance(elements, int | float):
        total = int(elements) - (int(missing) if isinstance(missing, int | float) else 0)
        text += f" of {total:,}"
    text += f" {unit}"
    if isinstance(percent, int | float):
        text += f" ({float(percent):.3g}%)"
    return text


def _column_diff(expected: list[str], actual: list[str]) -> str:
    missing = [c for c in expected if c not in actual]
    extra = [c for c in actual if c not in expected]
    common_expected = [c for c in expected if c in actual]
    common_actual = [c for c in actual if c in expected]
    misplaced = [c for c, d in zip(common_expected, common_actual, strict=True) if c != d]
    parts = []
    if missing:
        parts.append(f"missing columns {missing}")
    if extra:
        parts.append(f"unexpected columns {extra}")
    if misplaced:
        parts.append(f"columns out of order {sorted(set(misplaced), key=expected.index)}")
    if len(set(actual)) != len(actual):
        parts.append("duplicated column names")
    return "; ".join(parts) or "the column list differs"


def _fmt(value: Any) -> str:
    if hasattr(value, "isoformat"):
        return str(value.isoformat())
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


__all__ = ["RESULT_FORMAT", "validate_frame", "validate_suite"]
