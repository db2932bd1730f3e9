"""synth_expectations on the real Adult table, with real Great Expectations (GX Core 1.x)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import ADULT_PATH, ADULT_SPEC_PATH

from synth_core.datasets import (
    ADULT_COLUMNS,
    ADULT_INTEGER_COLUMNS,
    ADULT_NULLABLE_COLUMNS,
    load_adult_frame,
)
from synth_core.errors import ParameterError, SpecError
from synth_core.rules import Rule
from synth_core.spec import ColumnKind, ColumnSpec, TableSpec
from synth_expectations import (
    CHECKS,
    PrivacyThresholds,
    ValidationOutcome,
    build_expectation_suite,
    validate_frame,
    validate_suite,
)
from synth_expectations.gx_logging import GX_LOGGER, gx_logs_at_warning
from synth_expectations.validate import _run_suite

ADULT = ADULT_PATH.parent
INTEGERS = set(ADULT_INTEGER_COLUMNS)
NULLABLE = ADULT_NULLABLE_COLUMNS  # the columns with '?' in adult.data
#: Stand-in for a DP-discovered domain / DP-estimated range handed over by a fitted model.
DP_DOMAINS = {"income": ["<=50K", ">50K"]}
DP_RANGES = {"hours_per_week": (1.0, 99.0), "capital_gain": (0.0, 99999.0)}
MARKER = "ZQX-marker-7c1e9b"  # a cell value that must never appear in results or Data Docs
MARKER_NUMBER = 987654321


def _public_categories() -> dict[str, tuple[str, ...]]:
    """Category lists from adult.names (the dataset's public documentation)."""
    out: dict[str, tuple[str, ...]] = {}
    for line in (ADULT / "adult.names").read_text(encoding="utf-8").splitlines():
        name, sep, rest = line.partition(":")
        if not sep or line.startswith("|") or "continuous" in rest:
            continue
        values = tuple(v.strip() for v in rest.strip().rstrip(".").split(","))
        out[name.strip().replace("-", "_")] = values
    return out


@pytest.fixture(scope="module")
def adult() -> pd.DataFrame:
    return load_adult_frame(ADULT_PATH)


@pytest.fixture(scope="module")
def spec() -> TableSpec:
    cats = _public_categories()
    cols = []
    for name in ADULT_COLUMNS:
        if name in INTEGERS:
            bounds = (0.0, 120.0) if name == "age" else None
            cols.append(ColumnSpec(name, ColumnKind.INTEGER, nullable=False, bounds=bounds))
        else:
            public = cats.get(name) if name != "income" else None  # income: "DP-discovered" below
            cols.append(
                ColumnSpec(name, ColumnKind.CATEGORICAL, nullable=name in NULLABLE, categories=public)
            )
    return TableSpec("adult", tuple(cols), target="income")


@pytest.fixture(scope="module")
def dtypes(adult: pd.DataFrame) -> dict[str, str]:
    return {name: str(dtype) for name, dtype in adult.dtypes.items()}


def _validate(
    frame: pd.DataFrame, spec: TableSpec, dtypes: dict[str, str], **kwargs: Any
) -> ValidationOutcome:
    return validate_frame(frame, spec, dtypes, domains=DP_DOMAINS, ranges=DP_RANGES, **kwargs)


def _failed(outcome: ValidationOutcome) -> set[tuple[str | None, str]]:
    return {(r.column, r.expectation_type) for r in outcome.failed()}


# ------------------------------------------------------------------------------------------------


def test_import_does_not_load_gx_pandas_or_numpy() -> None:
    code = (
        "import sys, synth_expectations; "
        "print(sorted(m for m in ('great_expectations', 'pandas', 'numpy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"


def test_frame_dtypes_are_pandas3(adult: pd.DataFrame, dtypes: dict[str, str]) -> None:
    assert len(adult) == 32561
    assert dtypes["workclass"] == "str" and dtypes["age"] == "int64"
    assert adult["workclass"].isna().sum() > 0 and adult["sex"].isna().sum() == 0


def test_suite_holds_the_spec(spec: TableSpec, dtypes: dict[str, str]) -> None:
    suite = build_expectation_suite(
        spec, dtypes, domains=DP_DOMAINS, ranges=DP_RANGES, row_count=100, suite_name="adult-suite"
    )
    assert suite.name == "adult-suite"
    by_type: dict[str, list[Any]] = {}
    for exp in suite.expectations:
        by_type.setdefault(exp.expectation_type, []).append(exp)
    (order,) = by_type["expect_table_columns_to_match_ordered_list"]
    assert order.column_list == ADULT_COLUMNS
    assert {e.column: e.type_ for e in by_type["expect_column_type_to_be"]} == dtypes
    assert {e.column for e in by_type["expect_column_values_to_not_be_null"]} == set(ADULT_COLUMNS) - NULLABLE
    domains = {
        e.column: (list(e.value_set), e.meta["dpsynth_source"])
        for e in by_type["expect_column_values_to_be_in_set"]
    }
    assert domains["sex"] == (["Female", "Male"], "public")
    assert domains["income"] == (["<=50K", ">50K"], "dp")
    assert len(domains["native_country"][0]) == 41
    ranges = {
        e.column: (e.min_value, e.max_value, e.meta["dpsynth_source"])
        for e in by_type["expect_column_values_to_be_between"]
    }
    assert ranges == {
        "age": (0.0, 120.0, "public"),
        "hours_per_week": (1.0, 99.0, "dp"),
        "capital_gain": (0.0, 99999.0, "dp"),
    }
    (rows,) = by_type["expect_table_row_count_to_equal"]
    assert rows.value == 100
    assert "expect_column_values_to_be_unique" not in by_type  # no id column
    assert all(str(getattr(e.severity, "value", e.severity)) == "critical" for e in suite.expectations)


def test_clean_adult_passes(
    adult: pd.DataFrame, spec: TableSpec, dtypes: dict[str, str], tmp_path: Path
) -> None:
    # how long this takes is measured by benchmarks/validation.py, not here
    outcome = _validate(adult, spec, dtypes, row_count=len(adult), data_docs_dir=str(tmp_path / "docs"))
    assert outcome.success, outcome.failure_message("adult")
    assert outcome.failed() == [] and outcome.failure_message("adult") == ""
    assert all(r.success and r.evaluated and r.severity == "critical" for r in outcome.results)
    assert len(outcome.results) == 1 + 15 + 12 + 9 + 3 + 1  # order, types, not-null, domains, ranges, rows
    stats = outcome.statistics
    assert (
        stats["rows"] == 32561
        and stats["unsuccessful_expectations"] == 0
        and stats["success_percent"] == 100.0
    )
    assert outcome.data_docs_index is not None and Path(outcome.data_docs_index).is_file()
    assert list((tmp_path / "docs" / "validations").rglob("*.html"))
    assert json.loads(json.dumps(outcome.to_dict())) == outcome.to_dict()


def test_gx_logs_only_warnings_inside_dpsynth_and_its_level_is_restored(
    adult: pd.DataFrame, spec: TableSpec, dtypes: dict[str, str], tmp_path: Path, caplog: Any
) -> None:
    # an Airflow task logs at INFO: GX's INFO chatter (a line per function it skips registering,
    # on every data source) drowned the task's own lines
    gx_logger = logging.getLogger(GX_LOGGER)
    gx_logger.setLevel(logging.DEBUG)  # even a user who asked GX for DEBUG gets quiet validation
    try:
        with caplog.at_level(logging.DEBUG):
            outcome = _validate(
                adult.head(200),
                spec,
                dtypes,
                data_docs_dir=str(tmp_path / "docs"),
                release_metrics=PASSING_METRICS,
                privacy_thresholds=PrivacyThresholds(),
            )
            gx_logger.info("outside dpsynth, GX's level is the user's again")
        assert outcome.statistics["evaluated_expectations"] > 0
        gx_records = [r for r in caplog.records if r.name.startswith(GX_LOGGER)]
        assert [r.getMessage() for r in gx_records if r.levelno < logging.WARNING] == [
            "outside dpsynth, GX's level is the user's again"
        ]
        assert gx_logger.level == logging.DEBUG
    finally:
        gx_logger.setLevel(logging.NOTSET)
    with gx_logs_at_warning():
        with gx_logs_at_warning():
            assert gx_logger.getEffectiveLevel() == logging.WARNING
        assert gx_logger.getEffectiveLevel() == logging.WARNING  # nested blocks keep it
    assert gx_logger.level == logging.NOTSET


def _corrupt(frame: pd.DataFrame, what: str) -> pd.DataFrame:
    bad = frame.copy()
    if what == "dtype":
        bad["fnlwgt"] = bad["fnlwgt"].astype("float64")
    elif what == "domain":
        bad.loc[17, "sex"] = MARKER
    elif what == "null":
        bad.loc[23, "race"] = None
    elif what == "bounds":
        bad.loc[31, "age"] = 130
    elif what == "order":
        cols = list(bad.columns)
        i, j = cols.index("education"), cols.index("education_num")
        cols[i], cols[j] = cols[j], cols[i]
        bad = bad[cols]
    return bad


CORRUPTIONS: dict[str, set[tuple[str | None, str]]] = {
    "dtype": {("fnlwgt", "expect_column_type_to_be")},
    "domain": {("sex", "expect_column_values_to_be_in_set")},
    "null": {("race", "expect_column_values_to_not_be_null")},
    "bounds": {("age", "expect_column_values_to_be_between")},
    "order": {(None, "expect_table_columns_to_match_ordered_list")},
}
NAMED: dict[str, list[str]] = {
    "dtype": ["fnlwgt"],
    "domain": ["sex"],
    "null": ["race"],
    "bounds": ["age"],
    "order": ["education", "education_num"],
}


@pytest.mark.parametrize("what", sorted(CORRUPTIONS))
def test_each_corruption_fails_precisely(
    adult: pd.DataFrame, spec: TableSpec, dtypes: dict[str, str], what: str
) -> None:
    outcome = _validate(_corrupt(adult, what), spec, dtypes)
    assert not outcome.success
    assert _failed(outcome) == CORRUPTIONS[what]
    message = outcome.failure_message("adult")
    assert len(message.splitlines()) == 1
    ((_, etype),) = CORRUPTIONS[what]
    assert message.startswith("table 'adult': ") and etype in message
    for col in NAMED[what]:
        assert repr(col) in message
    if what in ("domain", "null", "bounds"):
        (failure,) = outcome.failed()
        assert failure.unexpected_count == 1 and "1 of 32,561" in failure.summary


def test_all_corruptions_at_once_name_every_column(
    adult: pd.DataFrame, spec: TableSpec, dtypes: dict[str, str]
) -> None:
    bad = adult
    for what in CORRUPTIONS:
        bad = _corrupt(bad, what)
    outcome = _validate(bad, spec, dtypes)
    assert not outcome.success
    assert _failed(outcome) == set().union(*CORRUPTIONS.values())
    lines = outcome.failure_message("adult").splitlines()
    assert len(lines) == 5
    for what, cols in NAMED.items():
        ((_, etype),) = CORRUPTIONS[what]
        assert any(etype in line and all(repr(c) in line for c in cols) for line in lines), (what, lines)
    assert outcome.statistics["critical_failures"] == 5


def test_str_columns_type_check(adult: pd.DataFrame, spec: TableSpec, dtypes: dict[str, str]) -> None:
    """GX sees pandas-3 text as dtype 'str': object and python-'string' columns are other types."""
    bad = adult.copy()
    bad["workclass"] = bad["workclass"].astype(object)
    bad["education"] = bad["education"].astype(pd.StringDtype("python", na_value=pd.NA))
    bad["age"] = bad["age"].astype("Int64")
    outcome = validate_frame(bad, spec, dtypes)
    types = {r.column: r for r in outcome.results if r.expectation_type == "expect_column_type_to_be"}
    assert not types["workclass"].success and "dtype object, expected str" in types["workclass"].summary
    assert not types["education"].success and "dtype string" in types["education"].summary
    assert not types["age"].success and "dtype Int64, expected int64" in types["age"].summary
    assert all(types[c].success for c in ADULT_COLUMNS if c not in ("workclass", "education", "age"))
    # a mistyped column's domain/range checks are not run (they could raise and quote a value)
    skipped = {(r.column, r.expectation_type) for r in outcome.results if not r.evaluated}
    assert skipped == {
        ("workclass", "expect_column_values_to_be_in_set"),
        ("education", "expect_column_values_to_be_in_set"),
        ("age", "expect_column_values_to_be_between"),
    }
    assert not outcome.success


def test_no_cell_value_in_results_or_data_docs(
    adult: pd.DataFrame, spec: TableSpec, dtypes: dict[str, str], tmp_path: Path
) -> None:
    bad = adult.copy()
    bad.loc[5, "sex"] = MARKER  # outside a public domain
    bad.loc[6, "income"] = MARKER  # outside the DP domain
    bad.loc[7, "workclass"] = MARKER  # nullable column
    bad.loc[8, "capital_gain"] = MARKER_NUMBER  # outside a DP range
    bad["occupation"] = bad["occupation"].astype(object)  # mistyped: its domain check is skipped
    bad.loc[9, "occupation"] = MARKER
    bad["age"] = bad["age"].astype(str)  # mistyped numeric column holding text
    bad.loc[10, "age"] = MARKER
    docs = tmp_path / "docs"
    outcome = _validate(bad, spec, dtypes, data_docs_dir=str(docs))
    failed = _failed(outcome)
    assert ("sex", "expect_column_values_to_be_in_set") in failed
    assert ("income", "expect_column_values_to_be_in_set") in failed
    assert ("capital_gain", "expect_column_values_to_be_between") in failed
    assert ("age", "expect_column_type_to_be") in failed

    suite = build_expectation_suite(spec, dtypes, domains=DP_DOMAINS, ranges=DP_RANGES)
    _, stored = _run_suite(bad, suite)
    texts = {"outcome": json.dumps(outcome.to_dict()), "stored GX results": json.dumps(stored, default=str)}
    html = list(docs.rglob("*.html"))
    assert any("validations" in p.parts for p in html)
    texts.update(
        {str(p): p.read_text(encoding="utf-8", errors="replace") for p in docs.rglob("*") if p.is_file()}
    )
    for where, text in texts.items():
        assert MARKER not in text, where
        assert str(MARKER_NUMBER) not in text and f"{MARKER_NUMBER:,}" not in text, where
    # the stored results do hold the failures, as counts only
    stored_results = [r for s in stored for r in s["results"]]
    sex_domain = next(
        r
        for r in stored_results
        if r["expectation_config"]["type"] == "expect_column_values_to_be_in_set"
        and r["expectation_config"]["kwargs"]["column"] == "sex"
    )
    assert sex_domain["success"] is False and sex_domain["result"]["unexpected_count"] == 1


def test_ids_booleans_datetimes_and_warnings(adult: pd.DataFrame) -> None:
    """Kinds Adult lacks, derived from its real columns: a key, a boolean, naive and UTC datetimes."""
    frame = pd.DataFrame(
        {
            "row_id": pd.Series(range(1, len(adult) + 1), dtype="int64"),
            "age": adult["age"],
            "rich": (adult["income"] == ">50K").astype("bool"),
            "seen": pd.Timestamp("2000-01-01") + pd.to_timedelta(adult["fnlwgt"], unit="s"),
            "seen_utc": (
                pd.Timestamp("2000-01-01") + pd.to_timedelta(adult["hours_per_week"], unit="D")
            ).dt.tz_localize("UTC"),
            "notes": adult["occupation"],
        }
    )
    frame["seen"] = frame["seen"].astype("datetime64[us]")
    frame["seen_utc"] = frame["seen_utc"].astype("datetime64[us, UTC]")
    spec = TableSpec(
        "adult_kinds",
        (
            ColumnSpec("row_id", ColumnKind.ID),
            ColumnSpec("age", ColumnKind.INTEGER, nullable=False, bounds=(0, 120)),
            ColumnSpec("rich", ColumnKind.BOOLEAN, nullable=False),
            ColumnSpec(
                "seen", ColumnKind.DATETIME, datetime_range=(dt.datetime(2000, 1, 1), dt.datetime(2000, 3, 1))
            ),
            ColumnSpec("seen_utc", ColumnKind.DATETIME, nullable=False),
            ColumnSpec("notes", ColumnKind.DROP),
        ),
    )
    dtypes = {name: str(dtype) for name, dtype in frame.dtypes.items()}
    assert dtypes["seen_utc"] == "datetime64[us, UTC]"
    synthetic = frame.drop(columns=["notes"])
    # naive DP bounds for a UTC column are read as UTC
    ranges = {"seen_utc": ("2000-01-01T00:00:00", "2000-04-10T00:00:00")}
    outcome = validate_frame(synthetic, spec, dtypes, ranges=ranges, row_count=len(frame))
    assert outcome.success, outcome.failure_message("adult_kinds")
    kinds = {(r.column, r.expectation_type) for r in outcome.results}
    assert ("row_id", "expect_column_values_to_be_unique") in kinds
    assert ("row_id", "expect_column_values_to_not_be_null") in kinds
    assert ("rich", "expect_column_values_to_be_in_set") in kinds
    assert ("seen", "expect_column_values_to_be_between") in kinds
    assert ("seen_utc", "expect_column_values_to_be_between") in kinds
    assert all(r.column != "notes" for r in outcome.results)

    bad = synthetic.copy()
    bad.loc[3, "row_id"] = 1  # duplicate key
    bad.loc[4, "seen"] = pd.Timestamp("2001-06-01")  # after the public datetime range
    suite = build_expectation_suite(spec, dtypes, ranges=ranges, warning_checks={"range"})
    outcome = validate_suite(bad, suite)
    assert _failed(outcome) == {
        ("row_id", "expect_column_values_to_be_unique"),
        ("seen", "expect_column_values_to_be_between"),
    }
    assert not outcome.success  # the duplicate key is critical; the range is only a warning
    message = outcome.failure_message("adult_kinds")
    assert "'row_id'" in message and "'seen'" not in message
    assert outcome.statistics["warning_failures"] == 1


def test_missing_column_is_reported_not_raised(
    adult: pd.DataFrame, spec: TableSpec, dtypes: dict[str, str]
) -> None:
    outcome = _validate(adult.drop(columns=["sex"]), spec, dtypes)
    assert not outcome.success
    sex = [r for r in outcome.results if r.column == "sex"]
    assert sex and all(not r.success and not r.evaluated and "missing" in r.summary for r in sex)
    order = next(r for r in outcome.results if r.check == "columns")
    assert "missing columns ['sex']" in order.summary


def test_bad_arguments_name_the_column(spec: TableSpec, dtypes: dict[str, str]) -> None:
    with pytest.raises(SpecError, match="sex"):
        build_expectation_suite(spec, {k: v for k, v in dtypes.items() if k != "sex"})
    with pytest.raises(SpecError, match="age"):
        build_expectation_suite(spec, {**dtypes, "age": "not-a-dtype"})
    with pytest.raises(ParameterError, match="age"):
        build_expectation_suite(spec, dtypes, domains={"age": [1, 2]})
    with pytest.raises(ParameterError, match="workclass"):
        build_expectation_suite(spec, dtypes, ranges={"workclass": (0, 1)})
    with pytest.raises(ParameterError, match="nope"):
        build_expectation_suite(spec, dtypes, warning_checks={"nope"})
    assert set(CHECKS) >= {"type", "domain", "range"}


def test_gx_exception_text_is_withheld(
    adult: pd.DataFrame, spec: TableSpec, dtypes: dict[str, str], tmp_path: Path
) -> None:
    """An expectation that raises inside GX is reported by exception class only, in results and docs."""
    import great_expectations as gx
    import great_expectations.expectations as gxe

    built = build_expectation_suite(spec, dtypes)
    raising = gxe.ExpectColumnValuesToBeBetween(column="sex", min_value=0, max_value=1)  # text vs numbers
    suite = gx.ExpectationSuite(name=built.name, expectations=[*built.expectations, raising], meta=built.meta)
    frame = adult.copy()
    frame.loc[2, "sex"] = MARKER
    docs = tmp_path / "docs"
    outcome, stored = _run_suite(frame, suite, data_docs_dir=str(docs))
    last = outcome.results[-1]
    assert (last.column, last.success, last.evaluated) == ("sex", False, False)
    assert "could not be evaluated (GX raised MetricResolutionError; message withheld)" in last.summary
    texts = [json.dumps(stored, default=str), json.dumps(outcome.to_dict())]
    texts += [p.read_text(encoding="utf-8") for p in docs.rglob("*.html")]
    assert any("text withheld by dpsynth" in t for t in texts[2:])  # the docs show the scrubbed entry
    for text in texts:
        assert "Traceback (most recent call last)" not in text and "must either be None" not in text
        assert MARKER not in text
    with pytest.raises(ParameterError, match="not built by"):
        validate_suite(frame, gx.ExpectationSuite(name="foreign"))


# ------------------------------------------------------------------------------------------------
# the release gate on the real spec (dags/specs/adult.yaml): semantic rules, NULL rates, privacy
# thresholds, user expectations

RULE_VIOLATIONS = {"husband_is_male": 1, "wife_is_female": 2}  # measured on the real adult.data
FAILING_METRICS = {
    "dcr_share": 0.97,
    "attack_auc": 0.9,
    "nndr_mean": 0.1,
    "epsilon": 3.5,
    "target_epsilon": 3,
}
PASSING_METRICS = {
    "dcr_share": 0.50,
    "attack_auc": 0.52,
    "nndr_mean": 0.8,
    "epsilon": 2.99,
    "target_epsilon": 3,
}


@pytest.fixture(scope="module")
def adult_spec() -> TableSpec:
    return TableSpec.from_yaml(ADULT_SPEC_PATH)


@pytest.fixture(scope="module")
def clean(adult: pd.DataFrame, adult_spec: TableSpec) -> pd.DataFrame:
    """Adult without the 3 rows that break a rule of the spec."""
    holds = np.ones(len(adult), dtype=bool)
    for rule in adult_spec.rules:
        holds &= rule.evaluate(adult)
    assert int((~holds).sum()) == sum(RULE_VIOLATIONS.values())
    return adult[holds].reset_index(drop=True)


@pytest.fixture(scope="module")
def small(clean: pd.DataFrame) -> pd.DataFrame:
    return clean.head(2000).copy()


def _by_rule(outcome: ValidationOutcome) -> dict[str, Any]:
    return {r.rule: r for r in outcome.results if r.check == "rule"}


def test_suite_holds_rules_and_privacy(adult_spec: TableSpec, dtypes: dict[str, str]) -> None:
    suite = build_expectation_suite(
        adult_spec,
        dtypes,
        privacy_thresholds=PrivacyThresholds(),
        null_rates={"workclass": 0.05},
        warning_checks={"null_rate"},
    )
    rules = [e for e in suite.expectations if e.meta.get("dpsynth_check") == "rule"]
    assert [(e.column, list(e.value_set), e.meta["dpsynth_rule"]) for e in rules] == [
        (f"rule__{r.name}", [True], r.name) for r in adult_spec.rules
    ]
    assert rules[0].meta["dpsynth_expr"] == "relationship == 'Husband' -> sex == 'Male'"
    assert all(str(e.severity.value) == "critical" for e in rules)
    privacy = {e.column: e for e in suite.expectations if e.meta.get("dpsynth_check") == "privacy"}
    assert set(privacy) == {"dcr_share", "nndr_mean", "attack_auc", "epsilon"}
    assert privacy["dcr_share"].max_value == 0.52 and privacy["nndr_mean"].min_value == 0.5
    assert privacy["attack_auc"].expectation_type == "expect_column_max_to_be_between"
    assert privacy["epsilon"].max_value == {"$PARAMETER": "target_epsilon"}  # the release's target
    (rate,) = [e for e in suite.expectations if e.meta.get("dpsynth_check") == "null_rate"]
    assert (rate.column, rate.min_value, rate.max_value) == ("workclass", 0.9, 1.0)
    assert str(rate.severity.value) == "warning"
    assert set(CHECKS) >= {"rule", "null_rate", "privacy", "custom"}
    fixed = build_expectation_suite(adult_spec, dtypes, privacy_thresholds=PrivacyThresholds(max_epsilon=2))
    assert next(e for e in fixed.expectations if getattr(e, "column", "") == "epsilon").max_value == 2.0
    # a rule declared as a warning, or the whole family downgraded
    soft = dataclasses.replace(
        adult_spec, rules=(Rule("husband_is_male", rules[0].meta["dpsynth_expr"], "warning"),)
    )
    (soft_rule,) = [
        e for e in build_expectation_suite(soft, dtypes).expectations if e.meta.get("dpsynth_rule")
    ]
    assert str(soft_rule.severity.value) == "warning"
    downgraded = build_expectation_suite(adult_spec, dtypes, warning_checks={"rule"})
    assert all(
        str(e.severity.value) == "warning" for e in downgraded.expectations if e.meta.get("dpsynth_rule")
    )


def test_real_adult_breaks_two_rules(
    adult: pd.DataFrame, clean: pd.DataFrame, adult_spec: TableSpec, dtypes: dict[str, str]
) -> None:
    outcome = validate_frame(adult, adult_spec, dtypes, row_count=len(adult))
    assert not outcome.success
    assert {r.rule: r.unexpected_count for r in outcome.failed()} == RULE_VIOLATIONS
    rules = _by_rule(outcome)
    assert rules["gain_or_loss"].success and rules["gain_or_loss"].unexpected_count == 0
    lines = outcome.failure_message("adult").splitlines()
    assert len(lines) == 2
    assert (
        "rule 'husband_is_male' (relationship == 'Husband' -> sex == 'Male') failed: 1 of 32,561 rows"
        in lines[0]
    )
    assert "rule 'wife_is_female'" in lines[1] and "2 of 32,561 rows" in lines[1]
    assert outcome.statistics["by_family"]["rule"] == {"passed": 1, "failed": 2, "not_evaluated": 0}

    outcome = validate_frame(clean, adult_spec, dtypes, row_count=len(clean))
    assert outcome.success, outcome.failure_message("adult")
    as_dict = outcome.to_dict()
    rule_rows = [r for r in as_dict["results"] if r["family"] == "rule"]
    assert [(r["rule"], r["success"], r["unexpected_count"]) for r in rule_rows] == [
        ("husband_is_male", True, 0),
        ("wife_is_female", True, 0),
        ("gain_or_loss", True, 0),
    ]
    assert all(r["family"] == r["check"] and r["family"] in CHECKS for r in as_dict["results"])
    assert json.loads(json.dumps(as_dict)) == as_dict


def test_corrupted_frame_names_every_fault(
    clean: pd.DataFrame, adult_spec: TableSpec, dtypes: dict[str, str]
) -> None:
    bad = clean.copy()
    bad["fnlwgt"] = bad["fnlwgt"].astype("float64")  # wrong dtype
    bad.loc[11, "race"] = "Martian"  # outside the public domain
    bad.loc[12, "education"] = None  # NULL in a non-nullable column
    bad.loc[13, ["capital_gain", "capital_loss"]] = [5013, 1902]  # breaks gain_or_loss
    outcome = validate_frame(bad, adult_spec, dtypes)
    assert not outcome.success
    assert _failed(outcome) == {
        ("fnlwgt", "expect_column_type_to_be"),
        ("race", "expect_column_values_to_be_in_set"),
        ("education", "expect_column_values_to_not_be_null"),
        (None, "expect_column_values_to_be_in_set"),  # the rule
    }
    lines = outcome.failure_message("adult").splitlines()
    assert len(lines) == 4
    for needle in ("'fnlwgt'", "'race'", "'education'", "'gain_or_loss'"):
        assert sum(needle in line for line in lines) == 1, (needle, lines)
    assert "capital_gain * capital_loss == 0" in outcome.failure_message("adult")
    assert _by_rule(outcome)["gain_or_loss"].unexpected_count == 1


def test_rule_on_missing_mistyped_or_unevaluable_columns(
    small: pd.DataFrame, adult_spec: TableSpec, dtypes: dict[str, str]
) -> None:
    outcome = validate_frame(small.drop(columns=["relationship"]), adult_spec, dtypes)
    rules = _by_rule(outcome)
    for name in ("husband_is_male", "wife_is_female"):
        assert not rules[name].evaluated and not rules[name].success
        assert "reads column 'relationship': the column is missing" in rules[name].summary
    assert rules["gain_or_loss"].success

    mistyped = small.copy()
    mistyped["capital_loss"] = mistyped["capital_loss"].astype(str)
    rules = _by_rule(validate_frame(mistyped, adult_spec, dtypes))
    assert not rules["gain_or_loss"].evaluated
    assert (
        "column 'capital_loss': the column has dtype 'str' instead of 'int64'"
        in rules["gain_or_loss"].summary
    )
    assert f"table 'adult': {rules['gain_or_loss'].summary}" in validate_frame(
        mistyped, adult_spec, dtypes
    ).failure_message("adult")

    # a rule whose evaluation raises (text compared with a number): reported, message withheld
    spec = TableSpec(
        "people",
        (ColumnSpec("job", ColumnKind.CATEGORICAL), ColumnSpec("age", ColumnKind.INTEGER)),
        rules=(Rule("job_is_small", "job < 3"),),
    )
    frame = pd.DataFrame({"job": small["occupation"].fillna(MARKER), "age": small["age"]})
    outcome = validate_frame(frame, spec, {"job": "str", "age": "int64"})
    (rule,) = _by_rule(outcome).values()
    assert not rule.evaluated and not outcome.success
    assert "evaluating it raised TypeError (message withheld)" in rule.summary
    assert MARKER not in json.dumps(outcome.to_dict())


def _with_nulls(adult: pd.DataFrame) -> tuple[pd.DataFrame, TableSpec]:
    """Five pandas-3 dtypes, NULL where the real occupation is NULL (5.66% of rows)."""
    mask = adult["occupation"].isna()
    frame = pd.DataFrame(
        {
            "s": adult["workclass"].where(~mask, None).fillna("Private").where(~mask),
            "i": adult["age"].astype("Int64").mask(mask),
            "f": adult["fnlwgt"].astype("float64").mask(mask),
            "b": (adult["sex"] == "Male").astype("boolean").mask(mask),
            "d": (pd.Timestamp("2000-01-01") + pd.to_timedelta(adult["hours_per_week"], unit="D"))
            .astype("datetime64[us]")
            .mask(mask),
        }
    )
    spec = TableSpec(
        "nulls",
        (
            ColumnSpec("s", ColumnKind.CATEGORICAL),
            ColumnSpec("i", ColumnKind.INTEGER),
            ColumnSpec("f", ColumnKind.NUMERIC),
            ColumnSpec("b", ColumnKind.BOOLEAN),
            ColumnSpec("d", ColumnKind.DATETIME),
        ),
    )
    return frame, spec


def test_null_rates_pass_and_fail(adult: pd.DataFrame, adult_spec: TableSpec, dtypes: dict[str, str]) -> None:
    frame, spec = _with_nulls(adult)
    kinds = {name: str(dtype) for name, dtype in frame.dtypes.items()}
    assert kinds == {"s": "str", "i": "Int64", "f": "float64", "b": "boolean", "d": "datetime64[us]"}
    observed = float(frame["s"].isna().mean())
    assert 0.056 < observed < 0.057
    ok = validate_frame(frame, spec, kinds, null_rates=dict.fromkeys(kinds, 0.06), null_rate_tolerance=0.01)
    assert ok.success, ok.failure_message("nulls")
    rates = [r for r in ok.results if r.check == "null_rate"]
    assert len(rates) == 5 and all(r.success and r.observed == pytest.approx(observed) for r in rates)
    assert "NULL rate 5.66% within the expected 6% ± 1%" in rates[0].summary

    high = validate_frame(frame, spec, kinds, null_rates=dict.fromkeys(kinds, 0.2))  # ± 0.05
    assert not high.success and {r.column for r in high.failed()} == set(kinds)
    assert all("NULL rate 5.66% outside the expected 20% ± 5%" in r.summary for r in high.failed())
    # above the upper bound (i), below the lower bound (d), within (f)
    mixed = validate_frame(
        frame, spec, kinds, null_rates={"i": 0.0, "d": 0.1, "f": 0.07}, null_rate_tolerance=0.02
    )
    assert {r.column for r in mixed.failed()} == {"i", "d"}
    message = mixed.failure_message("nulls")
    assert "column 'i'" in message and "expected 0% ± 2%" in message
    assert "column 'd'" in message and "NULL rate 5.66% outside the expected 10% ± 2%" in message

    # on the real table and spec; a warning only when the family is downgraded
    outcome = validate_frame(
        adult.head(3000),
        adult_spec,
        dtypes,
        null_rates={"workclass": 0.3, "occupation": 0.05, "native_country": 0.02},
        warning_checks={"null_rate", "rule"},
    )
    assert outcome.success
    assert [r.column for r in outcome.warnings() if r.check == "null_rate"] == ["workclass"]
    with pytest.raises(ParameterError, match="nope"):
        build_expectation_suite(spec, kinds, null_rates={"nope": 0.1})
    with pytest.raises(ParameterError, match="'s'"):
        build_expectation_suite(spec, kinds, null_rates={"s": 1.5})
    with pytest.raises(ParameterError, match="tolerance"):
        build_expectation_suite(spec, kinds, null_rates={"s": 0.1}, null_rate_tolerance=-1)


def test_privacy_thresholds(small: pd.DataFrame, adult_spec: TableSpec, dtypes: dict[str, str]) -> None:
    outcome = validate_frame(small, adult_spec, dtypes, release_metrics=FAILING_METRICS)
    assert not outcome.success
    assert {r.metric for r in outcome.failed()} == {"dcr_share", "attack_auc", "nndr_mean", "epsilon"}
    message = outcome.failure_message("adult")
    lines = message.splitlines()
    assert len(lines) == 4
    for needle in (
        "DCR share (95% lower bound) 0.97 exceeds the threshold 0.52 (max_dcr_share)",
        "membership-inference attack AUC 0.9 exceeds the threshold 0.6 (max_attack_auc)",
        "mean NNDR 0.1 is below the threshold 0.5 (min_nndr)",
        "ε 3.5 exceeds the target ε 3 (target_epsilon)",
    ):
        assert sum(needle in line for line in lines) == 1, (needle, message)
    dcr = next(r for r in outcome.results if r.metric == "dcr_share")
    assert (dcr.observed, dcr.threshold, dcr.severity) == (0.97, 0.52, "critical")

    passing = validate_frame(small, adult_spec, dtypes, release_metrics=PASSING_METRICS)
    assert passing.success, passing.failure_message("adult")
    privacy = [r for r in passing.results if r.check == "privacy"]
    assert len(privacy) == 4 and all(r.success and r.evaluated for r in privacy)
    assert any("ε 2.99 is at most the target ε 3" in r.summary for r in privacy)

    # an unknown metric is not evaluated: a warning, the gate still passes
    partial = validate_frame(
        small, adult_spec, dtypes, release_metrics={**PASSING_METRICS, "attack_auc": None}
    )
    assert partial.success
    (auc,) = partial.warnings()
    assert (auc.metric, auc.evaluated, auc.severity) == ("attack_auc", False, "warning")
    assert "not evaluated because the release metric 'attack_auc' was not given" in auc.summary
    no_target = validate_frame(small, adult_spec, dtypes, release_metrics={"dcr_share": 0.5, "epsilon": 9.0})
    assert no_target.success and {r.metric for r in no_target.warnings()} == {
        "nndr_mean",
        "attack_auc",
        "epsilon",
    }

    # max_epsilon overrides the target; custom thresholds; a suite built once, fed at validation
    suite = build_expectation_suite(
        adult_spec, dtypes, privacy_thresholds=PrivacyThresholds(max_dcr_share=0.98, max_epsilon=4)
    )
    again = validate_suite(small, suite, release_metrics=FAILING_METRICS)
    assert {r.metric for r in again.failed()} == {"attack_auc", "nndr_mean"}
    assert "ε 3.5 is at most the threshold 4 (max_epsilon)" in " ".join(r.summary for r in again.results)
    with pytest.raises(ParameterError, match="no privacy expectations"):
        validate_suite(small, build_expectation_suite(adult_spec, dtypes), release_metrics=PASSING_METRICS)
    with pytest.raises(ParameterError, match="dcr_share"):
        validate_frame(small, adult_spec, dtypes, release_metrics={"dcr_share": "high"})
    with pytest.raises(ParameterError, match="max_attack_auc"):
        PrivacyThresholds(max_attack_auc=1.5)


def test_extra_expectations(
    small: pd.DataFrame, adult_spec: TableSpec, dtypes: dict[str, str], tmp_path: Path
) -> None:
    import great_expectations as gx
    import great_expectations.expectations as gxe
    from great_expectations.expectations.metadata_types import FailureSeverity

    warning = FailureSeverity.WARNING

    mean_age = gxe.ExpectColumnMeanToBeBetween(column="age", min_value=30, max_value=45)
    long_hours = gxe.ExpectColumnValuesToBeBetween(
        column="hours_per_week", min_value=1, max_value=60, severity=warning, meta={"owner": "hr"}
    )
    outcome = validate_frame(small, adult_spec, dtypes, extra_expectations=[mean_age, long_hours])
    assert outcome.success, outcome.failure_message("adult")
    custom = [r for r in outcome.results if r.check == "custom"]
    assert [(r.expectation_type, r.success, r.severity) for r in custom] == [
        ("expect_column_mean_to_be_between", True, "critical"),
        ("expect_column_values_to_be_between", False, "warning"),
    ]
    assert custom[1] in outcome.warnings() and custom[1].unexpected_count
    assert (
        "column 'hours_per_week': custom expectation expect_column_values_to_be_between failed"
        in custom[1].summary
    )
    assert long_hours.meta == {"owner": "hr"} and long_hours.id is None  # the caller's objects are untouched

    def younger_than_80(spec: TableSpec, kinds: dict[str, str]) -> list[Any]:
        assert spec.name == "adult" and kinds["age"] == "int64"
        return [gxe.ExpectColumnMaxToBeBetween(column="age", max_value=80)]

    failing = validate_frame(small, adult_spec, dtypes, extra_expectations=younger_than_80)
    assert not failing.success
    (line,) = failing.failure_message("adult").splitlines()
    assert "column 'age': custom expectation expect_column_max_to_be_between failed." in line
    assert "90" not in line  # the observed maximum is a cell value: withheld

    suite_file = tmp_path / "user_suite.json"
    user = gx.ExpectationSuite(
        name="user",
        expectations=[
            gxe.ExpectColumnValuesToNotBeNull(column="occupation", mostly=0.9),
            gxe.ExpectColumnValuesToBeInSet(column="race", value_set=["White"], severity=warning),
            gxe.ExpectTableRowCountToBeBetween(min_value=1, max_value=10),
        ],
    )
    suite_file.write_text(json.dumps(user.to_json_dict()), encoding="utf-8")
    from_file = validate_frame(small, adult_spec, dtypes, extra_expectations=suite_file)
    custom = [r for r in from_file.results if r.check == "custom"]
    assert [(r.expectation_type, r.success, r.severity) for r in custom] == [
        ("expect_column_values_to_not_be_null", True, "critical"),
        ("expect_column_values_to_be_in_set", False, "warning"),
        ("expect_table_row_count_to_be_between", False, "critical"),
    ]
    assert not from_file.success and "table: custom expectation" in from_file.failure_message("adult")
    for same in (str(suite_file), user):  # a str path, or the GX suite object itself
        stats = validate_frame(small, adult_spec, dtypes, extra_expectations=same).statistics
        assert stats["by_family"]["custom"] == {"passed": 1, "failed": 2, "not_evaluated": 0}

    broken = tmp_path / "broken.json"
    broken.write_text(
        json.dumps({"expectations": [{"type": "expect_nothing", "kwargs": {}}]}), encoding="utf-8"
    )
    with pytest.raises(ParameterError, match="expect_nothing"):
        build_expectation_suite(adult_spec, dtypes, extra_expectations=broken)
    with pytest.raises(ParameterError, match="not JSON"):
        build_expectation_suite(adult_spec, dtypes, extra_expectations=ADULT_SPEC_PATH)
    with pytest.raises(ParameterError, match="not a GX Expectation"):
        build_expectation_suite(adult_spec, dtypes, extra_expectations=["age > 0"])


def test_no_cell_value_in_rule_custom_or_privacy_results(
    clean: pd.DataFrame, adult_spec: TableSpec, dtypes: dict[str, str], tmp_path: Path
) -> None:
    import great_expectations.expectations as gxe

    bad = clean.copy()
    bad.loc[3, "relationship"] = MARKER  # read by two rules; outside the public domain
    row = int(bad.index[(bad["capital_loss"] > 0)][0])
    bad.loc[row, "capital_gain"] = MARKER_NUMBER  # breaks gain_or_loss and the public range
    husband = int(bad.index[bad["relationship"] == "Husband"][0])
    bad.loc[husband, "sex"] = "Female"  # breaks husband_is_male
    extra = [
        gxe.ExpectColumnMaxToBeBetween(column="capital_gain", max_value=10),  # observed max = the number
        gxe.ExpectColumnDistinctValuesToBeInSet(column="relationship", value_set=["Husband"]),
        gxe.ExpectColumnMostCommonValueToBeInSet(column="relationship", value_set=[MARKER[:3]]),
        gxe.ExpectColumnValuesToBeInSet(
            column="relationship", value_set=["Wife"], result_format={"result_format": "COMPLETE"}
        ),
        gxe.ExpectColumnValuesToMatchRegex(column="relationship", regex="^[A-Z][a-z-]+$"),
        gxe.ExpectColumnValuesToBeBetween(column="relationship", min_value=0, max_value=1),  # raises
    ]
    docs = tmp_path / "docs"
    kwargs: dict[str, Any] = {"extra_expectations": extra, "null_rates": {"workclass": 0.05}}
    outcome = validate_frame(
        bad, adult_spec, dtypes, data_docs_dir=str(docs), release_metrics=FAILING_METRICS, **kwargs
    )
    failed_rules = {r.rule for r in outcome.failed() if r.check == "rule"}
    assert failed_rules == {"husband_is_male", "gain_or_loss"}
    assert ("relationship", "expect_column_values_to_be_in_set") in _failed(outcome)
    assert ("capital_gain", "expect_column_values_to_be_between") in _failed(outcome)
    assert sum(r.check == "custom" and not r.success for r in outcome.results) == 6

    suite = build_expectation_suite(adult_spec, dtypes, privacy_thresholds=PrivacyThresholds(), **kwargs)
    _, stored = _run_suite(bad, suite, release_metrics=FAILING_METRICS)
    assert {s["suite_name"] for s in stored} == {
        "adult.synthetic",
        "adult.synthetic.rules",
        "adult.synthetic.privacy",
    }
    texts = {"outcome": json.dumps(outcome.to_dict()), "stored GX results": json.dumps(stored, default=str)}
    files = [p for p in docs.rglob("*") if p.is_file()]
    texts.update({str(p): p.read_text(encoding="utf-8", errors="replace") for p in files})
    for where, text in texts.items():
        assert MARKER not in text, where
        assert str(MARKER_NUMBER) not in text and f"{MARKER_NUMBER:,}" not in text, where
        assert "98765" not in text, where
    # the Data Docs show the rules and the privacy thresholds (with the release aggregates)
    html = "\n".join(p.read_text(encoding="utf-8") for p in docs.rglob("*.html") if "validations" in p.parts)
    assert "Rule husband_is_male holds on every row" in html
    assert "Privacy: DCR share (95% lower bound) must be at most 0.52 (max_dcr_share)" in html
    assert "target ε 3" in html and "0.97" in html
    stored_results = {
        r["expectation_config"]["kwargs"].get("column"): r for s in stored for r in s["results"]
    }
    assert stored_results["rule__gain_or_loss"]["result"]["unexpected_count"] == 1
    assert stored_results["dcr_share"]["result"]["observed_value"] == 0.97
    assert "observed_value" not in stored_results["capital_gain"]["result"]
