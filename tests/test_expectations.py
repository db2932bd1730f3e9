"""synth_expectations on the real Adult table, with real Great Expectations (GX Core 1.x)."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from conftest import ADULT_PATH

from synth_core.datasets import (
    ADULT_COLUMNS,
    ADULT_INTEGER_COLUMNS,
    ADULT_NULLABLE_COLUMNS,
    load_adult_frame,
)
from synth_core.errors import ParameterError, SpecError
from synth_core.spec import ColumnKind, ColumnSpec, TableSpec
from synth_expectations import (
    CHECKS,
    ValidationOutcome,
    build_expectation_suite,
    validate_frame,
    validate_suite,
)
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


def test_clean_adult_passes_fast(
    adult: pd.DataFrame, spec: TableSpec, dtypes: dict[str, str], tmp_path: Path
) -> None:
    validate_frame(adult.head(50), spec, dtypes)  # warm GX imports: time the real run below
    started = time.perf_counter()
    outcome = _validate(adult, spec, dtypes, row_count=len(adult), data_docs_dir=str(tmp_path / "docs"))
    elapsed = time.perf_counter() - started
    print(f"validated {len(adult)} rows x {adult.shape[1]} columns with Data Docs in {elapsed:.2f}s")
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
    assert elapsed < 15.0


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


CORRUPTIONS = {
    "dtype": {("fnlwgt", "expect_column_type_to_be")},
    "domain": {("sex", "expect_column_values_to_be_in_set")},
    "null": {("race", "expect_column_values_to_not_be_null")},
    "bounds": {("age", "expect_column_values_to_be_between")},
    "order": {(None, "expect_table_columns_to_match_ordered_list")},
}
NAMED = {
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
