"""synth_core.dbt: sources.yml for a published synthetic table, run by real dbt on real Postgres.

The Postgres server comes from ``DPSYNTH_TEST_PG_URL`` (default: the local server,
``postgresql+psycopg://postgres@127.0.0.1:5432/test``); each test module run works in its own
schema, dropped at teardown. dbt runs as a subprocess of this virtualenv's ``dbt``, with no
network and no usage statistics.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa
import yaml
from conftest import ADULT_PATH, ADULT_SPEC_PATH
from hypothesis import given, settings
from hypothesis import strategies as st

from synth_core.datasets import load_adult_frame
from synth_core.dbt import (
    DEFAULT_FRESHNESS,
    RELEASE_KEYS,
    build_dbt_sources,
    render_dbt_sources_yml,
    round_up_significant,
)
from synth_core.errors import ParameterError, SpecError
from synth_core.spec import ColumnKind, ColumnSpec, TableSpec

PG_URL = os.environ.get("DPSYNTH_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
DBT = Path(sys.executable).with_name("dbt")
SOURCE = "dpsynth_synthetic"
TABLE = "adult_synthetic"
ROWS = 300


def _release(**overrides: Any) -> dict[str, Any]:
    release = {
        "epsilon": 3.0,
        "delta": 1e-5,
        "generator": "dp_tvae",
        "run_id": "scheduled__2026-01-05T00:00:00+00:00",
        "report_uri": "s3://dpsynth/published/adult/run/report.html",
        "manifest_uri": "s3://dpsynth/published/adult/run/_manifest.json",
        "published_at": dt.datetime.now(dt.UTC).isoformat(),
        "source_table": "adult",
    }
    release.update(overrides)
    return release


def _published_spec() -> TableSpec:
    """The Adult spec plus a surrogate key (``id``) and a boolean, so every dbt test kind runs."""
    adult = TableSpec.from_yaml(ADULT_SPEC_PATH)
    return TableSpec(
        name=adult.name,
        columns=(
            ColumnSpec("person_id", ColumnKind.ID, nullable=False, description="Surrogate key."),
            *adult.columns,
            ColumnSpec("is_high_income", ColumnKind.BOOLEAN, nullable=False),
        ),
        target=adult.target,
        description=adult.description,
    )


#: dbt tests the published spec gets: not_null on 12 non-nullable Adult columns + person_id +
#: is_high_income; unique on person_id; accepted_values on 8 categoricals with a public domain,
#: native_country (DP domain) and is_high_income.
EXPECTED_TESTS = 12 + 2 + 1 + 8 + 1 + 1


# ------------------------------------------------------------------------------------------------
# pure YAML structure


def _small_spec() -> TableSpec:
    return TableSpec(
        name="people",
        description="People {{ not jinja }}",
        columns=(
            ColumnSpec("id", ColumnKind.ID, nullable=False),
            ColumnSpec("ssn", ColumnKind.DROP),
            ColumnSpec("age", ColumnKind.INTEGER, nullable=False, bounds=(0, 120), description="Age"),
            ColumnSpec("score", ColumnKind.NUMERIC),
            ColumnSpec("member", ColumnKind.BOOLEAN, nullable=False),
            ColumnSpec("flag01", ColumnKind.BOOLEAN, sql_type="SMALLINT"),
            ColumnSpec("colour", ColumnKind.CATEGORICAL, nullable=False, categories=("red", "yes", "null")),
            ColumnSpec("level", ColumnKind.CATEGORICAL, categories=(1, 2, 3)),
            ColumnSpec("city", ColumnKind.CATEGORICAL),
            ColumnSpec("region", ColumnKind.CATEGORICAL),
            ColumnSpec(
                "joined",
                ColumnKind.DATETIME,
                datetime_range=(dt.datetime(2020, 1, 1), dt.datetime(2021, 1, 1)),
            ),
            ColumnSpec("Order", ColumnKind.NUMERIC),
        ),
    )


def test_sources_yml_structure() -> None:
    spec = _small_spec()
    release = _release(published_at="2026-01-05T01:02:03+01:00")
    domains = {"city": ["Zürich", "O'Hare", None, "Zürich", "{{ run_query('x') }}", "a: b"]}
    doc = build_dbt_sources(
        spec=spec,
        source_name="synth",
        database="analytics",
        schema="published",
        table="people_synthetic",
        release=release,
        domains=domains,
    )
    assert list(doc) == ["version", "sources"]
    assert doc["version"] == 2
    [source] = doc["sources"]
    assert list(source) == ["name", "database", "schema", "description", "config", "tables"]
    assert (source["name"], source["database"], source["schema"]) == ("synth", "analytics", "published")
    for needle in ("Synthetic", "differentially private", "ε = 3", "δ = 1e-05", "dp_tvae", release["run_id"]):
        assert needle in source["description"]
    assert source["config"]["tags"] == ["synthetic", "dp"]
    assert source["config"]["meta"] == {
        "producer": "dpsynth",
        "synthetic": True,
        "differentially_private": True,
    }

    [table] = source["tables"]
    assert list(table) == ["name", "description", "config", "columns"]
    assert table["name"] == "people_synthetic"
    for needle in ("Synthetic", "differentially private", "dp_tvae", release["run_id"], "adult"):
        assert needle in table["description"]
    # the spec's description is copied, escaped for dbt's Jinja rendering
    assert "{% raw %}{{% endraw %}{% raw %}{{% endraw %} not jinja" in table["description"]
    config = table["config"]
    assert list(config) == ["freshness", "loaded_at_query", "meta", "tags"]
    assert config["freshness"] == DEFAULT_FRESHNESS
    # published_at normalised to UTC; the default freshness query returns it as a naive UTC timestamp
    assert config["loaded_at_query"] == "select cast('2026-01-05 00:02:03' as timestamp)"
    assert list(config["meta"]) == list(RELEASE_KEYS)
    assert config["meta"]["published_at"] == "2026-01-05T00:02:03+00:00"
    assert config["meta"]["epsilon"] == 3.0 and config["meta"]["delta"] == 1e-5
    assert config["tags"] == ["synthetic", "dp", "dpsynth"]

    columns = {c["name"]: c for c in table["columns"]}
    assert list(columns) == [c.name for c in spec.columns if c.kind != ColumnKind.DROP]  # ssn dropped
    for col in columns.values():
        assert "synthetic (differentially private)" in col["description"]
        assert col["config"]["meta"]["kind"] == spec.column(col["name"]).kind.value
    assert columns["age"]["description"].startswith("Age. Integer column;")
    assert columns["age"]["config"]["meta"]["bounds"] == [0, 120]
    assert columns["joined"]["config"]["meta"]["datetime_range"] == [
        "2020-01-01T00:00:00",
        "2021-01-01T00:00:00",
    ]

    def tests(name: str) -> list[Any]:
        return list(columns[name].get("data_tests", []))

    def accepted(name: str) -> dict[str, Any]:
        [test] = [t["accepted_values"] for t in tests(name) if isinstance(t, dict)]
        arguments = test["arguments"]
        assert list(arguments) == ["values", "quote"]
        # a public domain (or a boolean's) is an error; a DP-discovered one only warns
        source = columns[name]["config"]["meta"].get("domain")
        assert test.get("config") == ({"severity": "Warn"} if source == "dp" else None), name
        return dict(arguments)

    assert tests("id") == ["not_null", "unique"]
    assert tests("age") == ["not_null"]
    assert tests("score") == [] and tests("joined") == [] and tests("region") == []  # no built-in test
    assert tests("member")[0] == "not_null"
    assert accepted("member") == {"values": [True, False], "quote": False}
    assert accepted("flag01") == {"values": [0, 1], "quote": False}
    assert tests("colour")[0] == "not_null"
    assert accepted("colour") == {"values": ["red", "yes", "null"], "quote": True}
    assert accepted("level") == {"values": [1, 2, 3], "quote": False}
    city = accepted("city")
    assert city["quote"] is True and columns["city"]["config"]["meta"]["domain"] == "dp"
    assert columns["colour"]["config"]["meta"]["domain"] == "public"
    # nulls and duplicates dropped, order kept, single quotes doubled for the SQL literal
    assert city["values"][:2] == ["Zürich", "O''Hare"] and city["values"][3] == "a: b"
    assert columns["Order"]["quote"] is True and "quote" not in columns["age"]

    # YAML: valid for any category string, round-trips, deterministic, header comment only
    text = render_dbt_sources_yml(
        spec=spec,
        source_name="synth",
        database="analytics",
        schema="published",
        table="people_synthetic",
        release=release,
        domains=domains,
    )
    assert yaml.safe_load(text) == doc
    assert text == render_dbt_sources_yml(
        spec=spec,
        source_name="synth",
        database="analytics",
        schema="published",
        table="people_synthetic",
        release=release,
        domains={"city": list(domains["city"])},
    )
    assert text.startswith("# Generated by dpsynth")
    assert "'yes'" in text and "'null'" in text  # YAML 1.1 booleans/nulls stay strings

    # dbt 1.11's own JSON schema for resource YAML (what emits deprecations on the adapters that
    # validate): no additional/moved property anywhere
    from dbt.jsonschemas.jsonschemas import _validate_with_schema, resources_schema

    assert [e.message for e in _validate_with_schema(resources_schema(), yaml.safe_load(text))] == []

    # every escaped string renders back to the original under dbt's Jinja (natively, like test args)
    from dbt.clients.jinja import get_rendered

    assert get_rendered(city["values"][2], {}, native=True) == "{{ run_query(''x'') }}"  # SQL-quoted
    assert "Source: People {{ not jinja }}. Quality/privacy report: s3://" in get_rendered(
        table["description"], {}
    )


@settings(max_examples=300, deadline=None)
@given(st.floats(min_value=0, max_value=1e12, allow_nan=False, allow_infinity=False, exclude_min=True))
def test_privacy_parameters_are_rounded_up_to_four_significant_digits(value: float) -> None:
    rounded = round_up_significant(value)
    assert rounded >= value  # never states less privacy loss than spent
    assert rounded <= value * (1 + 1e-3) or rounded - value <= 1e-300  # ...and only by rounding
    assert len(Decimal(repr(rounded)).normalize().as_tuple().digits) <= 4  # as YAML writes it


def test_meta_numbers_are_rounded() -> None:
    spec = _small_spec()
    release = _release(epsilon=2.9999999999943845, delta=1.0000000000000004e-06)
    doc = build_dbt_sources(spec=spec, source_name="s", database=None, schema="p", table="t", release=release)
    [table] = doc["sources"][0]["tables"]
    assert (table["config"]["meta"]["epsilon"], table["config"]["meta"]["delta"]) == (3.0, 1.001e-06)
    text = render_dbt_sources_yml(
        spec=spec, source_name="s", database=None, schema="p", table="t", release=release
    )
    assert "epsilon: 3.0\n" in text and "2.99999" not in text
    assert "ε = 3, δ = 1.001e-06" in table["description"]
    odd = build_dbt_sources(
        spec=spec, source_name="s", database=None, schema="p", table="t", release=_release(epsilon=1.23441)
    )
    assert odd["sources"][0]["tables"][0]["config"]["meta"]["epsilon"] == 1.235  # up, never down


def test_options_and_non_private_release() -> None:
    spec = _small_spec()
    common: dict[str, Any] = {"spec": spec, "source_name": "s", "database": None, "schema": "p", "table": "t"}
    doc = build_dbt_sources(
        **common,
        release=_release(epsilon=float("inf"), report_uri=None),
        loaded_at_field="published_at",
        freshness={"warn_after": {"count": 2, "period": "hour"}, "filter": "1 = 1"},
    )
    [source] = doc["sources"]
    assert "database" not in source
    [table] = source["tables"]
    assert table["config"]["loaded_at_field"] == "published_at" and "loaded_at_query" not in table["config"]
    assert table["config"]["freshness"] == {"warn_after": {"count": 2, "period": "hour"}, "filter": "1 = 1"}
    assert table["config"]["meta"]["epsilon"] == "inf"  # JSON-safe in dbt's manifest
    assert table["config"]["meta"]["report_uri"] is None
    assert "NOT differentially private" in table["description"]
    assert source["config"]["tags"] == ["synthetic", "non_private"]
    assert all("not differentially private" in c["description"] for c in table["columns"])
    query = build_dbt_sources(**common, release=_release(), loaded_at_query="select max(ts) from x")
    assert query["sources"][0]["tables"][0]["config"]["loaded_at_query"] == "select max(ts) from x"


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"loaded_at_field": "a", "loaded_at_query": "select 1"}, ParameterError, "not both"),
        ({"domains": {"age": [1]}}, ParameterError, "'age', which is not a categorical"),
        ({"domains": {"ssn": ["x"]}}, ParameterError, "'ssn', which is not a categorical"),
        ({"domains": {"city": "abc"}}, ParameterError, "list of values"),
        ({"domains": {"city": [None]}}, SpecError, "'city': the dp category domain is empty"),
        ({"release": {"epsilon": 1.0}}, ParameterError, "the release lacks"),
        ({"release": _release(epsilon="x")}, ParameterError, "epsilon must be a number"),
        ({"release": _release(delta=1.5)}, ParameterError, "delta is out of range"),
        ({"release": _release(published_at="yesterday")}, ParameterError, "ISO datetime"),
        ({"freshness": {"warn_after": {"count": 0, "period": "day"}}}, ParameterError, "positive integer"),
        ({"freshness": {"warn_after": {"count": 1, "period": "week"}}}, ParameterError, "period"),
        ({"freshness": {"warn_afer": {"count": 1, "period": "day"}}}, ParameterError, "unknown freshness"),
        ({"table": "published.people"}, ParameterError, "plain identifier"),
        ({"source_name": "my source"}, ParameterError, "plain identifier"),
    ],
)
def test_bad_arguments_fail_precisely(kwargs: dict[str, Any], error: type[Exception], match: str) -> None:
    args: dict[str, Any] = {
        "spec": _small_spec(),
        "source_name": "s",
        "database": None,
        "schema": "p",
        "table": "t",
        "release": _release(),
    }
    args.update(kwargs)
    with pytest.raises(error, match=match):
        build_dbt_sources(**args)


# ------------------------------------------------------------------------------------------------
# real dbt on real Postgres


@pytest.fixture(scope="module")
def pg() -> Iterator[tuple[sa.engine.Engine, str]]:
    """An engine on the test server and a fresh schema, dropped (with its tables) at teardown."""
    engine = sa.create_engine(PG_URL)
    try:
        with engine.connect():
            pass
    except sa.exc.OperationalError as exc:
        engine.dispose()
        pytest.fail(f"no Postgres server at {engine.url!r} (set DPSYNTH_TEST_PG_URL): {type(exc).__name__}")
    schema = f"dpsynth_dbt_{uuid.uuid4().hex[:12]}"
    with engine.begin() as conn:
        conn.execute(sa.text(f'create schema "{schema}"'))
    try:
        yield engine, schema
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f'drop schema if exists "{schema}" cascade'))
        engine.dispose()


@pytest.fixture(scope="module")
def published(pg: tuple[sa.engine.Engine, str]) -> pd.DataFrame:
    """A small table shaped like a published synthetic Adult table, in the test schema."""
    engine, schema = pg
    frame = load_adult_frame(ADULT_PATH).sample(n=ROWS, random_state=11).reset_index(drop=True)
    frame.insert(0, "person_id", range(1, ROWS + 1))
    frame["is_high_income"] = frame["income"] == ">50K"
    frame.to_sql(TABLE, engine, schema=schema, index=False)
    return frame


def _write_project(root: Path, *, schema: str, sources_yml: str) -> Path:
    url = sa.engine.make_url(PG_URL)
    (root / "models").mkdir(parents=True)
    (root / "dbt_project.yml").write_text(
        yaml.safe_dump(
            {"name": "dpsynth_dbt_test", "version": "1.0.0", "config-version": 2, "profile": "dpsynth_pg"}
        )
    )
    output = {
        "type": "postgres",
        "host": url.host or "127.0.0.1",
        "port": url.port or 5432,
        "user": url.username or "postgres",
        "password": url.password or "",
        "dbname": url.database or "postgres",
        "schema": schema,
        "threads": 4,
    }
    (root / "profiles.yml").write_text(
        yaml.safe_dump({"dpsynth_pg": {"target": "test", "outputs": {"test": output}}})
    )
    (root / "models" / "sources.yml").write_text(sources_yml, encoding="utf-8")
    (root / "models" / "adult_people.sql").write_text(
        f"select * from {{{{ source('{SOURCE}', '{TABLE}') }}}}\n"
    )
    return root


def _dbt(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DBT_")}
    env.update({"DBT_SEND_ANONYMOUS_USAGE_STATS": "false", "DBT_USE_COLORS": "false"})
    return subprocess.run(
        [
            str(DBT),
            *args,
            "--project-dir",
            str(project),
            "--profiles-dir",
            str(project),
            # any deprecation is an error (on top of the text check below)
            "--warn-error-options",
            '{"error": ["Deprecations"]}',
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
        check=False,
    )


def _output(proc: subprocess.CompletedProcess[str]) -> str:
    return proc.stdout + proc.stderr


def _sources_yml(schema: str, frame: pd.DataFrame, table: str = TABLE) -> str:
    countries = sorted(frame["native_country"].dropna().unique().tolist())
    return render_dbt_sources_yml(
        spec=_published_spec(),
        source_name=SOURCE,
        database=None,
        schema=schema,
        table=table,
        release=_release(),
        domains={"native_country": countries},  # no public domain in the spec: a (stand-in) DP one
    )


def _tests_by_id(project: Path) -> dict[str, tuple[str, str]]:
    manifest = json.loads((project / "target" / "manifest.json").read_text())
    return {
        uid: (node["test_metadata"]["name"], node["test_metadata"]["kwargs"].get("column_name"))
        for uid, node in manifest["nodes"].items()
        if node["resource_type"] == "test"
    }


def _results(project: Path) -> dict[str, str]:
    run = json.loads((project / "target" / "run_results.json").read_text())
    return {r["unique_id"]: r["status"] for r in run["results"]}


def test_dbt_parse_test_and_freshness_pass(
    pg: tuple[sa.engine.Engine, str], published: pd.DataFrame, tmp_path: Path
) -> None:
    _, schema = pg
    project = _write_project(tmp_path / "project", schema=schema, sources_yml=_sources_yml(schema, published))

    parsed = _dbt(project, "parse")
    assert parsed.returncode == 0, _output(parsed)
    assert "Deprecat" not in _output(parsed)
    tests = _tests_by_id(project)
    assert len(tests) == EXPECTED_TESTS
    assert sorted(c for name, c in tests.values() if name == "unique") == ["person_id"]
    assert {c for name, c in tests.values() if name == "accepted_values"} == {
        "workclass",
        "education",
        "marital_status",
        "occupation",
        "relationship",
        "race",
        "sex",
        "native_country",
        "income",
        "is_high_income",
    }

    tested = _dbt(project, "test")
    assert tested.returncode == 0, _output(tested)
    assert "Deprecat" not in _output(tested)
    results = _results(project)
    assert len(results) == EXPECTED_TESTS
    assert set(results.values()) == {"pass"}
    assert f"PASS={EXPECTED_TESTS} " in tested.stdout

    # the default loaded_at_query (published_at) is a working freshness query
    fresh = _dbt(project, "source", "freshness")
    assert fresh.returncode == 0, _output(fresh)
    assert "Deprecat" not in _output(fresh)
    assert set(_results(project).values()) == {"pass"}


def test_dbt_test_fails_naming_the_broken_rules(
    pg: tuple[sa.engine.Engine, str], published: pd.DataFrame, tmp_path: Path
) -> None:
    engine, schema = pg
    bad = f"{TABLE}_broken"
    with engine.begin() as conn:
        conn.execute(sa.text(f'create table "{schema}"."{bad}" as select * from "{schema}"."{TABLE}"'))
    # a category outside the public domain of sex, and a NULL age (age is not nullable)
    broken = published.iloc[:2].copy()
    broken["person_id"] = [ROWS + 1, ROWS + 2]
    broken.loc[broken.index[0], "sex"] = "Unknown"
    broken["age"] = pd.array([broken["age"].iloc[0], None], dtype="Int64")
    broken.to_sql(bad, engine, schema=schema, if_exists="append", index=False)
    project = _write_project(
        tmp_path / "project", schema=schema, sources_yml=_sources_yml(schema, published, table=bad)
    )
    (project / "models" / "adult_people.sql").write_text(
        f"select * from {{{{ source('{SOURCE}', '{bad}') }}}}\n"
    )

    tested = _dbt(project, "test")
    out = _output(tested)
    assert tested.returncode == 1, out
    assert "Deprecat" not in out
    tests = _tests_by_id(project)
    results = _results(project)
    assert len(results) == EXPECTED_TESTS
    failed = {uid for uid, status in results.items() if status == "fail"}
    assert {tests[uid] for uid in failed} == {("not_null", "age"), ("accepted_values", "sex")}
    assert set(results.values()) == {"pass", "fail"}
    for uid in failed:
        assert f"Failure in test {uid.split('.')[2]} " in out  # dbt names each failing test
    assert f"source_not_null_{SOURCE}_{bad}_age" in out


#: Two releases' DP-discovered native_country domains: each release's rows use its own.
FIRST_COUNTRIES = ["United-States", "Mexico", "Philippines"]
SECOND_COUNTRIES = ["United-States", "India", "Germany", "Canada"]


def test_each_release_passes_dbt_test_with_the_other_releases_sources_yml(
    pg: tuple[sa.engine.Engine, str], published: pd.DataFrame, tmp_path: Path
) -> None:
    """Two releases of one table whose DP domains differ: a project still holding one release's
    sources.yml runs ``dbt test`` on the other release's table; the DP domain test only warns,
    every public-domain and NULL test still passes, and ``dbt test`` succeeds."""
    engine, schema = pg
    releases = {}
    for n, countries in enumerate((FIRST_COUNTRIES, SECOND_COUNTRIES), start=1):
        table = f"{TABLE}_release{n}"
        frame = published.copy()
        frame["native_country"] = [countries[i % len(countries)] for i in range(len(frame))]
        frame.loc[::7, "native_country"] = None  # a nullable column: NULLs pass either way
        frame.to_sql(table, engine, schema=schema, index=False)
        releases[n] = (table, countries)

    def sources(n: int, table: str) -> str:
        """Release ``n``'s sources.yml, pointed at ``table``."""
        return render_dbt_sources_yml(
            spec=_published_spec(),
            source_name=SOURCE,
            database=None,
            schema=schema,
            table=table,
            release=_release(run_id=f"release-{n}", epsilon=2.9999999999943845),
            domains={"native_country": releases[n][1]},
        )

    for own, other in ((1, 2), (2, 1)):
        data_table = releases[own][0]
        project = _write_project(
            tmp_path / f"release{own}", schema=schema, sources_yml=sources(other, data_table)
        )
        (project / "models" / "adult_people.sql").write_text(
            f"select * from {{{{ source('{SOURCE}', '{data_table}') }}}}\n"
        )
        tested = _dbt(project, "test")
        out = _output(tested)
        assert tested.returncode == 0, out
        assert "Deprecat" not in out
        tests = _tests_by_id(project)
        results = _results(project)
        assert len(results) == EXPECTED_TESTS
        warned = {tests[uid] for uid, status in results.items() if status == "warn"}
        assert warned == {("accepted_values", "native_country")}, out
        assert {s for uid, s in results.items() if tests[uid] != ("accepted_values", "native_country")} == {
            "pass"
        }
        assert "WARN=1 " in tested.stdout and f"PASS={EXPECTED_TESTS - 1} " in tested.stdout
        manifest = json.loads((project / "target" / "manifest.json").read_text())
        [source] = [s for s in manifest["sources"].values() if s["name"] == data_table]
        assert source["meta"]["epsilon"] == 3.0 and source["meta"]["run_id"] == f"release-{other}"

        # with its own sources.yml, the release passes every test, the DP domain included
        (project / "models" / "sources.yml").write_text(sources(own, data_table), encoding="utf-8")
        tested = _dbt(project, "test")
        assert tested.returncode == 0, _output(tested)
        assert set(_results(project).values()) == {"pass"}
