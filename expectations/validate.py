"""Validate a synthetic pandas frame with a suite, through GX Core 1.x, without leaking cell values.

The run uses an ephemeral Data Context (in-memory stores), a pandas Data Source with up to three
dataframe assets, each with a whole-dataframe Batch Definition and a ``ValidationDefinition`` run
directly (GX's own logging kept at WARNING, see :mod:`synth_expectations.gx_logging`):

* the synthetic frame (schema, types, NULLs, domains, ranges, NULL rates, the user's expectations);
* ``<table>__rules``: a derived boolean frame, one column ``rule__<name>`` per semantic rule of the
  spec (``Rule.evaluate``: the rule holds, or is unknown because of NULLs), one row per row;
* ``<table>__release_metrics``: a one-row frame of release metrics (DCR share, mean NNDR, attack
  AUC, ε) for the privacy thresholds; the release's target ε is an expectation parameter.

Results are requested in ``SUMMARY`` format with no partial unexpected list, no unexpected rows
and no index query, so GX records counts and percentages only.

More guards keep values out of results and Data Docs:

* expectations on a missing column, and domain/range expectations on a column whose dtype is not
  the expected one, are not run (they would raise, and an exception's text could quote a cell
  value); they are reported as failed, "not evaluated"; so is a rule that reads such a column;
* any expectation that still raises has its exception message and traceback removed from the
  stored result before Data Docs are built; only the exception's class name is kept;
* ``observed_value`` (and any other detail) is dropped from every stored result except schema
  facts (dtype names, column names, a row count) and the aggregates of the ``null_rate`` and
  ``privacy`` families (a NULL fraction, a release metric).
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from synth_core.errors import ParameterError
from synth_expectations.gx_logging import quiet_gx
from synth_expectations.outcome import ExpectationResult, ValidationOutcome
from synth_expectations.privacy import (
    PRIVACY_METRICS,
    TARGET_EPSILON_PARAMETER,
    PrivacyThresholds,
    normalize_release_metrics,
)
from synth_expectations.suite import (
    ASSET_META_KEY,
    ASSET_PRIVACY,
    ASSET_RULES,
    ASSET_TABLE,
    CHECK_META_KEY,
    METRIC_META_KEY,
    NULL_RATE_META_KEY,
    RULE_EXPR_META_KEY,
    RULE_META_KEY,
    SOURCE_META_KEY,
    SUITE_META_KEY,
    THRESHOLD_META_KEY,
    THRESHOLD_NAME_META_KEY,
    TOLERANCE_META_KEY,
    ExtraExpectations,
    RangeBound,
    build_expectation_suite,
)

if TYPE_CHECKING:
    import great_expectations as gx
    import pandas as pd
    from great_expectations.core import ExpectationSuiteValidationResult, ExpectationValidationResult
    from great_expectations.expectations import Expectation

    from synth_core.spec import TableSpec

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
#: Families whose ``observed_value`` is an aggregate that may be shown (a NULL fraction, a metric).
_AGGREGATE_FAMILIES = frozenset({"null_rate", "privacy"})

#: Expectations that compare values with typed bounds or sets: run only on a correctly typed column.
_VALUE_TYPED = frozenset({"expect_column_values_to_be_in_set", "expect_column_values_to_be_between"})

_DOCS_SITE = "dpsynth"


@quiet_gx
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
    null_rates: Mapping[str, float] | None = None,
    null_rate_tolerance: float = 0.05,
    release_metrics: Mapping[str, float | None] | None = None,
    privacy_thresholds: PrivacyThresholds | None = None,
    extra_expectations: ExtraExpectations | None = None,
) -> ValidationOutcome:
    """Validate a synthetic frame against the suite built from ``spec`` and the source dtypes.

    Builds the suite with :func:`~synth_expectations.build_expectation_suite` (same arguments)
    and runs it with :func:`validate_suite`.

    Args:
        frame: the synthetic table.
        spec, dtypes, domains, ranges, row_count, warning_checks, null_rates,
            null_rate_tolerance, extra_expectations: see
            :func:`~synth_expectations.build_expectation_suite`. The spec's rules are always
            checked.
        data_docs_dir: when given, GX Data Docs (static HTML) are built into this local folder
            and :attr:`ValidationOutcome.data_docs_index` is the path of its ``index.html``.
        release_metrics: the release's privacy metrics: ``dcr_share``, ``nndr_mean``,
            ``attack_auc``, ``epsilon`` (spent) and ``target_epsilon``; a metric that is ``None``
            or absent is reported as not evaluated (a warning). Other keys are ignored.
        privacy_thresholds: the privacy thresholds; default :class:`PrivacyThresholds` when
            ``release_metrics`` is given. Without both, no privacy expectation is built.

    Returns:
        A :class:`ValidationOutcome`; it does not raise on failed expectations (see
        :meth:`ValidationOutcome.failure_message`).
    """
    if privacy_thresholds is None and release_metrics is not None:
        privacy_thresholds = PrivacyThresholds()
    suite = build_expectation_suite(
        spec,
        dtypes,
        domains=domains,
        ranges=ranges,
        row_count=row_count,
        warning_checks=warning_checks,
        null_rates=null_rates,
        null_rate_tolerance=null_rate_tolerance,
        privacy_thresholds=privacy_thresholds,
        extra_expectations=extra_expectations,
    )
    return validate_suite(frame, suite, data_docs_dir=data_docs_dir, release_metrics=release_metrics)


@quiet_gx
def validate_suite(
    frame: pd.DataFrame,
    suite: gx.ExpectationSuite,
    *,
    data_docs_dir: str | None = None,
    release_metrics: Mapping[str, float | None] | None = None,
) -> ValidationOutcome:
    """Run a suite made by :func:`~synth_expectations.build_expectation_suite` on ``frame``.

    See :func:`validate_frame`; this lets a caller build a suite once and validate many frames.
    ``release_metrics`` feeds the suite's privacy expectations (built with ``privacy_thresholds``);
    giving metrics to a suite without them raises :class:`~synth_core.errors.ParameterError`.
    """
    outcome, _ = _run_suite(frame, suite, data_docs_dir=data_docs_dir, release_metrics=release_metrics)
    return outcome


# ------------------------------------------------------------------------------------------------
# the run


@dataclass
class _Asset:
    """One GX data asset of a run: its expectations (by suite index) and its frame's columns."""

    name: str
    suite_name: str
    runnable: dict[int, Any] = field(default_factory=dict)
    columns: dict[str, Any] = field(default_factory=dict)


@quiet_gx
def _run_suite(
    frame: pd.DataFrame,
    suite: gx.ExpectationSuite,
    *,
    data_docs_dir: str | None = None,
    release_metrics: Mapping[str, float | None] | None = None,
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
    table = str(info.get("table") or "synthetic")
    frame_dtypes = _frame_dtypes(frame)
    metrics = normalize_release_metrics(release_metrics)
    if release_metrics is not None and not any(_asset(e) == ASSET_PRIVACY for e in suite.expectations):
        raise ParameterError(
            f"suite {suite.name!r} has no privacy expectations: build it with privacy_thresholds "
            "to check release_metrics"
        )

    # Split the suite by asset: expectations that can run, and those that cannot (a missing or
    # mistyped column, a rule that cannot be evaluated, an unknown metric or threshold).
    assets = {
        ASSET_TABLE: _Asset(table, suite.name),
        ASSET_RULES: _Asset(f"{table}__rules", f"{suite.name}.rules"),
        ASSET_PRIVACY: _Asset(f"{table}__release_metrics", f"{suite.name}.privacy"),
    }
    skipped: dict[int, ExpectationResult] = {}
    for i, exp in enumerate(suite.expectations):
        asset_key = _asset(exp)
        reason: str | None = None
        if asset_key == ASSET_RULES:
            reason = _add_rule_column(exp, frame, expected, frame_dtypes, assets[ASSET_RULES].columns)
        elif asset_key == ASSET_PRIVACY:
            reason = _add_metric_column(exp, metrics, assets[ASSET_PRIVACY].columns)
        else:
            column = getattr(exp, "column", None)
            if column is not None:
                reason = _why_not_evaluable(column, expected.get(column), frame_dtypes, exp.expectation_type)
        if reason is not None:
            skipped[i] = _not_evaluated(exp, reason)
            continue
        # a shallow copy: GX's own copy is deep and copies the whole suite the expectation
        # belongs to, once per expectation (0.2-0.4 s for Adult's 54)
        clone = exp.copy(update={"id": None})
        if (
            asset_key == ASSET_PRIVACY
            and (exp.meta or {}).get(THRESHOLD_NAME_META_KEY) == TARGET_EPSILON_PARAMETER
        ):
            # the Data Docs show the target this run compared with
            clone.description = (
                f"Privacy: ε must be at most the release's target ε {metrics['target_epsilon']:g}"
            )
        assets[asset_key].runnable[i] = clone

    docs_dir = Path(data_docs_dir).resolve() if data_docs_dir is not None else None
    context = _ephemeral_context(docs_dir)
    tag = uuid.uuid4().hex[:8]
    source = context.data_sources.add_pandas(f"dpsynth-{tag}")
    suite_results: list[ExpectationSuiteValidationResult] = []
    for key, asset in assets.items():
        if not asset.runnable:
            continue
        data: pd.DataFrame
        parameters: dict[str, Any] | None = None
        if key == ASSET_TABLE:
            data = frame
        elif key == ASSET_RULES:
            data = pd.DataFrame(asset.columns, index=pd.RangeIndex(len(frame)))
        else:
            data = pd.DataFrame({k: [v] for k, v in asset.columns.items()}, dtype="float64")
            if metrics["target_epsilon"] is not None:
                parameters = {TARGET_EPSILON_PARAMETER: metrics["target_epsilon"]}
        run_suite = context.suites.add(
            gx.ExpectationSuite(
                name=asset.suite_name, expectations=list(asset.runnable.values()), meta=dict(suite.meta)
            )
        )
        batch_definition = source.add_dataframe_asset(asset.name).add_batch_definition_whole_dataframe(
            "whole-frame"
        )
        validation = context.validation_definitions.add(
            gx.ValidationDefinition(name=f"{asset.suite_name}-{tag}", data=batch_definition, suite=run_suite)
        )
        # a ValidationDefinition run directly (no Checkpoint: it adds nothing here but time);
        # GX stores the result under a key naming this run's suite
        suite_results.append(
            validation.run(
                batch_parameters={"dataframe": data},
                expectation_parameters=parameters,
                result_format=RESULT_FORMAT,
            )
        )

    # Scrub what GX stored (exception texts may quote values), keep the store in step, then docs.
    store = context.validation_results_store
    keys = {key.expectation_suite_identifier.name: key for key in store.list_keys()}
    gx_results: dict[str, tuple[ExpectationValidationResult, list[str]]] = {}
    stored: list[dict[str, Any]] = []
    for suite_result in suite_results:
        for res in suite_result.results:
            raised = _scrub(res)
            if res.expectation_config is not None:
                gx_results[str(res.expectation_config.id)] = (res, raised)
        key = keys[suite_result.suite_name]
        store.set(key, suite_result)
        stored.append(store.get(key).to_json_dict())
    data_docs_index: str | None = None
    if docs_dir is not None:
        docs_dir.mkdir(parents=True, exist_ok=True)
        context.build_data_docs(site_names=[_DOCS_SITE])
        index = docs_dir / "index.html"
        if not index.is_file():  # pragma: no cover - GX always writes it
            raise RuntimeError(f"GX did not write Data Docs to {docs_dir}")
        data_docs_index = str(index)

    # One result per expectation of the caller's suite, in its order (adding to a suite gave
    # each clone an id, which its result's configuration carries).
    runnable = {i: clone for asset in assets.values() for i, clone in asset.runnable.items()}
    results: list[ExpectationResult] = []
    for i, exp in enumerate(suite.expectations):
        if i in skipped:
            results.append(skipped[i])
            continue
        found: ExpectationValidationResult | None = None
        found_raised: list[str] = []
        if str(runnable[i].id) in gx_results:
            found, found_raised = gx_results[str(runnable[i].id)]
        results.append(_to_result(exp, found, found_raised, frame, metrics))

    failures = [r for r in results if not r.success]
    families: dict[str, dict[str, int]] = {}
    for r in results:
        counts = families.setdefault(r.check, {"passed": 0, "failed": 0, "not_evaluated": 0})
        counts["passed" if r.success else "failed" if r.evaluated else "not_evaluated"] += 1
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
        "by_family": families,
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


def _add_rule_column(
    exp: Expectation,
    frame: pd.DataFrame,
    expected: Mapping[str, str],
    frame_dtypes: Mapping[str, Any],
    columns: dict[str, Any],
) -> str | None:
    """Evaluate the expectation's rule into ``columns[rule__<name>]``; or say why it cannot be."""
    from synth_core.rules import Rule

    meta = exp.meta or {}
    try:
        rule = Rule(str(meta.get(RULE_META_KEY)), str(meta.get(RULE_EXPR_META_KEY)))
    except Exception as exc:  # a hand-edited suite: the expression is the spec's, not a value
        return f"its expression cannot be parsed ({type(exc).__name__})"
    for column in rule.columns:
        reason = _why_not_evaluable(column, expected.get(column), frame_dtypes, "rule")
        if reason is not None:
            return f"it reads column {column!r}: {reason}"
    try:
        holds = rule.evaluate(frame)
    except Exception as exc:  # the message could quote a cell value: keep the class name only
        return f"evaluating it raised {type(exc).__name__} (message withheld)"
    columns[str(getattr(exp, "column", ""))] = holds
    return None


def _add_metric_column(
    exp: Expectation, metrics: Mapping[str, float | None], columns: dict[str, Any]
) -> str | None:
    """Put the expectation's metric into ``columns``; or say why it cannot be checked."""
    meta = exp.meta or {}
    metric = str(meta.get(METRIC_META_KEY, getattr(exp, "column", "")))
    value = metrics.get(metric)
    if value is None:
        return f"the release metric {metric!r} was not given"
    if (
        meta.get(THRESHOLD_NAME_META_KEY) == TARGET_EPSILON_PARAMETER
        and metrics.get("target_epsilon") is None
    ):
        return "neither release_metrics['target_epsilon'] nor PrivacyThresholds.max_epsilon is set"
    columns[str(getattr(exp, "column", metric))] = value
    return None


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
            # the validation pages only: they show every expectation with its result; a page per
            # suite repeats them without results (a third of the build time)
            "site_section_builders": {"expectations": "0", "profiling": "0"},
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
    """Why an expectation (or, with ``exp_type="rule"``, a rule) cannot run on ``column``."""
    if column not in frame_dtypes:
        return "the column is missing from the frame"
    actual = frame_dtypes[column]
    if actual is None:
        return "the frame has several columns with this name"
    if (exp_type not in _VALUE_TYPED and exp_type != "rule") or expected is None:
        return None
    if not _dtype_matches(actual, expected):
        return f"the column has dtype {str(actual)!r} instead of {expected!r}"
    return None


def _not_evaluated(exp: Expectation, reason: str) -> ExpectationResult:
    check = _check(exp)
    meta = exp.meta or {}
    column: str | None = getattr(exp, "column", None)
    etype = exp.expectation_type
    if check == "rule":
        name, expr = meta.get(RULE_META_KEY), meta.get(RULE_EXPR_META_KEY)
        return ExpectationResult(
            expectation_type=etype,
            column=None,
            success=False,
            severity=_severity(exp),
            summary=f"rule {name!r} ({expr}) was not evaluated because {reason}.",
            check=check,
            evaluated=False,
            rule=str(name),
        )
    if check == "privacy":
        metric = str(meta.get(METRIC_META_KEY, column))
        label = PRIVACY_METRICS.get(metric, (metric, "", ""))[0]
        threshold = meta.get(THRESHOLD_META_KEY)
        return ExpectationResult(
            expectation_type=etype,
            column=None,
            success=False,
            severity="warning",  # an unknown metric is reported, it does not fail the release
            summary=f"privacy: {label} was not evaluated because {reason}.",
            check=check,
            evaluated=False,
            metric=metric,
            threshold=float(threshold) if isinstance(threshold, int | float) else None,
        )
    where = f"column {column!r}" if column is not None else "table"
    prefix = "custom expectation " if check == "custom" else ""
    return ExpectationResult(
        expectation_type=etype,
        column=column,
        success=False,
        severity=_severity(exp),
        summary=f"{where}: {prefix}{etype} was not evaluated because {reason}.",
        check=check,
        evaluated=False,
    )


def _scrub(res: ExpectationValidationResult) -> list[str]:
    """Keep counts, schema facts and release aggregates only; drop exception texts and values.

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
    config = res.expectation_config
    etype = config.type if config is not None else ""
    family = str((config.meta or {}).get(CHECK_META_KEY, "")) if config is not None else ""
    result = dict(res.result or {})
    keep = {k: v for k, v in result.items() if k in _SAFE_RESULT_KEYS}
    if "unexpected_count" in keep and not {"unexpected_percent", "element_count"} <= keep.keys():
        # e.g. a count of distinct values out of a set: GX's Data Docs cannot render it alone
        del keep["unexpected_count"]
    if "observed_value" in result and (etype in _SAFE_OBSERVED or family in _AGGREGATE_FAMILIES):
        observed = result["observed_value"]
        keep["observed_value"] = observed.item() if hasattr(observed, "item") else observed
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


def _asset(exp: Expectation) -> str:
    asset = str((exp.meta or {}).get(ASSET_META_KEY, ASSET_TABLE))
    return asset if asset in (ASSET_RULES, ASSET_PRIVACY) else ASSET_TABLE


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
    metrics: Mapping[str, float | None],
) -> ExpectationResult:
    column: str | None = getattr(exp, "column", None)
    etype = exp.expectation_type
    check = _check(exp)
    meta = exp.meta or {}
    base: dict[str, Any] = {
        "expectation_type": etype,
        "column": column,
        "severity": _severity(exp),
        "check": check,
    }
    if check == "rule":
        base.update(column=None, rule=str(meta.get(RULE_META_KEY)))
        where = f"rule {meta.get(RULE_META_KEY)!r} ({meta.get(RULE_EXPR_META_KEY)})"
    elif check == "privacy":
        metric = str(meta.get(METRIC_META_KEY, column))
        base.update(column=None, metric=metric)
        where = f"privacy: {PRIVACY_METRICS.get(metric, (metric, '', ''))[0]}"
    elif check == "custom":
        where = f"{'column ' + repr(column) if column is not None else 'table'}: custom expectation"
    else:
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
    observed = result.get("observed_value")

    if check == "rule":
        summary = f"{where} {verdict}: {_counts(unexpected, percent, elements, None, 'rows')} violate it."
    elif check == "privacy":
        return _privacy_result(exp, success, observed, metrics, base)
    elif check == "null_rate":
        summary, null_rate = _null_rate_summary(exp, success, observed, where)
        base["observed"] = null_rate
    elif check == "custom":
        summary = f"{where} {etype} {verdict}"
        if isinstance(unexpected, int | float):
            unit = "rows" if etype.endswith("_to_not_be_null") else "values"
            summary += f": {_counts(unexpected, percent, elements, missing, unit)} unexpected"
        summary += "."
    elif etype == "expect_table_columns_to_match_ordered_list":
        summary = f"column list: {etype} {verdict}"
        if not success:
            summary += f": {_column_diff(list(getattr(exp, 'column_list', []) or []), [str(c) for c in frame.columns])}"
        summary += "."
    elif etype == "expect_column_type_to_be":
        summary = f"{where}: {etype} {verdict}: dtype {observed!s}, expected {getattr(exp, 'type_', '')!s}."
    elif etype == "expect_table_row_count_to_equal":
        summary = f"row count: {etype} {verdict}: {observed} rows, expected {getattr(exp, 'value', '')}."
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


def _privacy_result(
    exp: Expectation,
    success: bool,
    observed: Any,
    metrics: Mapping[str, float | None],
    base: dict[str, Any],
) -> ExpectationResult:
    """``"privacy: DCR share (95% lower bound) 0.973 exceeds the threshold 0.52 (max_dcr_share)."``"""
    meta = exp.meta or {}
    metric = str(base["metric"])
    label, bound, _ = PRIVACY_METRICS.get(metric, (metric, "max", ""))
    threshold_name = str(meta.get(THRESHOLD_NAME_META_KEY, ""))
    threshold = meta.get(THRESHOLD_META_KEY)
    if threshold_name == TARGET_EPSILON_PARAMETER:
        threshold = metrics.get("target_epsilon")
        what = "the target ε"
    else:
        what = "the threshold"
    value = float(observed) if isinstance(observed, int | float) else metrics.get(metric)
    shown_value, shown_threshold = _fmt_pair(value, threshold)
    if success:
        text = f"is at {'most' if bound == 'max' else 'least'} {what} {shown_threshold}"
    else:
        text = f"{'exceeds' if bound == 'max' else 'is below'} {what} {shown_threshold}"
    summary = f"privacy: {label} {shown_value} {text} ({threshold_name})."
    return ExpectationResult(
        success=success,
        summary=summary,
        observed=value,
        threshold=float(threshold) if isinstance(threshold, int | float) else None,
        **base,
    )


def _null_rate_summary(
    exp: Expectation, success: bool, observed: Any, where: str
) -> tuple[str, float | None]:
    """``"column 'x': NULL rate 20.1% outside the expected 5.6% ± 5% (expect_...)."``"""
    meta = exp.meta or {}
    rate, tolerance = meta.get(NULL_RATE_META_KEY), meta.get(TOLERANCE_META_KEY)
    etype = exp.expectation_type
    expected = (
        f"{_pct(rate)} ± {_pct(tolerance)}"
        if isinstance(rate, int | float) and isinstance(tolerance, int | float)
        else "rate"
    )
    if not isinstance(observed, int | float) or math.isnan(observed):
        return (
            f"{where}: {etype} {'passed' if success else 'failed'}: the NULL rate is unknown (no rows).",
            None,
        )
    null_rate = round(1.0 - float(observed), 12)
    relation = "within" if success else "outside"
    return (
        f"{where}: {etype} {'passed' if success else 'failed'}: NULL rate {_pct(null_rate)} {relation} "
        f"the expected {expected}.",
        null_rate,
    )


def _pct(fraction: Any) -> str:
    return f"{100.0 * float(fraction):.3g}%"


def _fmt_pair(value: float | None, threshold: Any) -> tuple[str, str]:
    """Both numbers with 4 significant digits, or exactly when that would make them look equal."""
    if value is None or not isinstance(threshold, int | float):
        return str(value), str(threshold)
    a, b = f"{value:.4g}", f"{float(threshold):.4g}"
    if a == b and value != threshold:
        a, b = repr(float(value)), repr(float(threshold))
    return a, b


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
