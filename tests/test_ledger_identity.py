"""Ledger identity (issue 16.5): a budget follows the rows a run reads, not the name it is given.

Every renaming that reads the same rows (``PEOPLE``, ``main.people``, a ``source_query`` over
``people``, a view over it) must hit the same budget, on SQLite, PostgreSQL and MariaDB; distinct
tables get distinct keys; a query whose tables cannot be determined is refused unless a privacy
scope is declared.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from synth_core.budget_scope import BudgetScope, budget_scope
from synth_core.errors import BudgetExceededError, ParameterError
from synth_core.ledger import PrivacyLedger

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
MYSQL_ADMIN = "mysql+pymysql://root@127.0.0.1:3306/"


# -- warehouses: each test module creates and drops its own uniquely named database --------------
@pytest.fixture(scope="module")
def sqlite_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sa.engine.Engine]:
    path = tmp_path_factory.mktemp("identity") / "warehouse.db"
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE people (id INTEGER, age INTEGER)")
        conn.exec_driver_sql("CREATE TABLE visits (person_id INTEGER, day TEXT)")
        conn.exec_driver_sql("CREATE VIEW adults AS SELECT * FROM people WHERE age >= 18")
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def postgres_engine() -> Iterator[sa.engine.Engine]:
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    name = f"dpsynth_identity_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    engine = sa.create_engine(f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}")
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE people (id INTEGER, age INTEGER)")
            conn.exec_driver_sql('CREATE TABLE "People" (id INTEGER)')  # a distinct, quoted table
            conn.exec_driver_sql("CREATE TABLE visits (person_id INTEGER, day DATE)")
            conn.exec_driver_sql("CREATE SCHEMA hr")
            conn.exec_driver_sql("CREATE TABLE hr.people (id INTEGER)")  # same name, other schema
            conn.exec_driver_sql("CREATE VIEW adults AS SELECT * FROM people WHERE age >= 18")
            conn.exec_driver_sql("CREATE MATERIALIZED VIEW visit_days AS SELECT day FROM visits")
            conn.exec_driver_sql(
                "CREATE FUNCTION people_count() RETURNS bigint AS 'SELECT count(*) FROM people' LANGUAGE sql"
            )
            # named like a function the parser models (MySQL's STR_TO_DATE): still user-defined here
            conn.exec_driver_sql(
                "CREATE FUNCTION str_to_date(a text, b text) RETURNS bigint "
                "AS 'SELECT count(*) FROM people' LANGUAGE sql"
            )
            conn.exec_driver_sql("CREATE TABLE events (at INTEGER) PARTITION BY RANGE (at)")
            conn.exec_driver_sql("CREATE TABLE events_early PARTITION OF events FOR VALUES FROM (0) TO (100)")
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture(scope="module")
def mariadb_engine() -> Iterator[sa.engine.Engine]:
    admin = sa.create_engine(MYSQL_ADMIN, isolation_level="AUTOCOMMIT")
    name = f"dpsynth_identity_{uuid.uuid4().hex[:8]}"
    other = f"{name}_other"
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE `{name}`")
        conn.exec_driver_sql(f"CREATE DATABASE `{other}`")
    engine = sa.create_engine(f"mysql+pymysql://root@127.0.0.1:3306/{name}")
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE people (id INTEGER, age INTEGER)")
            conn.exec_driver_sql("CREATE TABLE visits (person_id INTEGER, day DATE)")
            conn.exec_driver_sql("CREATE VIEW adults AS SELECT * FROM people WHERE age >= 18")
            conn.exec_driver_sql(f"CREATE TABLE `{other}`.people (id INTEGER)")
            conn.exec_driver_sql(
                "CREATE FUNCTION people_count() RETURNS INT READS SQL DATA RETURN (SELECT count(*) FROM people)"
            )
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{name}`")
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{other}`")
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgres", "mariadb"])
def warehouse(request: pytest.FixtureRequest) -> sa.engine.Engine:
    engine: sa.engine.Engine = request.getfixturevalue(f"{request.param}_engine")
    return engine


def _folds_table_names(engine: sa.engine.Engine) -> bool:
    """Whether ``PEOPLE`` unquoted names the table ``people`` (MariaDB: ``lower_case_table_names``)."""
    if engine.dialect.name != "mysql":
        return True
    with engine.connect() as conn:
        return int(conn.exec_driver_sql("SELECT @@lower_case_table_names").scalar_one()) != 0


def _key(engine: sa.engine.Engine, **kwargs: str) -> tuple[str, ...]:
    return budget_scope(engine, table=kwargs.pop("table", "label"), **kwargs).keys


# -- renaming hits the same budget ---------------------------------------------------------------
def test_every_spelling_of_a_table_is_one_key(warehouse: sa.engine.Engine) -> None:
    (people,) = _key(warehouse, table="people")
    schema = {"sqlite": "main", "postgresql": "public"}.get(warehouse.dialect.name, warehouse.url.database)
    spellings = [
        dict(table=f"{schema}.people"),
        dict(table="x", source_query="SELECT * FROM people"),
        dict(table="people_v2", source_query=f"select id, age from {schema}.people where age > 3"),
        dict(table="x", source_query="SELECT p.* FROM people AS p"),
        dict(table="x", source_query="WITH t AS (SELECT * FROM people) SELECT * FROM t"),
        dict(table="x", source_query="SELECT * FROM (SELECT id FROM people) AS sub"),
        dict(table="adults"),  # a view over people reads people
        dict(table="x", source_query="SELECT * FROM adults"),
    ]
    if _folds_table_names(warehouse):  # unquoted: folded as the dialect folds it
        spellings.append(dict(table="x", source_query="SELECT * FROM PEOPLE"))
    if _folds_table_names(warehouse) and warehouse.dialect.name != "postgresql":
        spellings.append(dict(table="PEOPLE"))  # PostgreSQL reads "PEOPLE" (quoted) as another table
    for spelling in spellings:
        assert _key(warehouse, **spelling) == (people,), spelling
    assert "people" in people and "password" not in people and "root@" not in people


def test_a_query_is_charged_on_every_table_it_reads(warehouse: sa.engine.Engine) -> None:
    (people,) = _key(warehouse, table="people")
    (visits,) = _key(warehouse, table="visits")
    assert people != visits
    for query in (
        "SELECT * FROM people JOIN visits ON visits.person_id = people.id",
        "SELECT id FROM people WHERE id IN (SELECT person_id FROM visits)",
        "SELECT id FROM people UNION SELECT person_id FROM visits",
        "WITH v AS (SELECT person_id FROM visits) SELECT * FROM people, v",
        "WITH people AS (SELECT person_id AS id FROM visits) SELECT * FROM people JOIN adults ON 1 = 1",
        "SELECT (SELECT count(*) FROM visits) AS n, id FROM people",
    ):
        assert _key(warehouse, source_query=query) == tuple(sorted((people, visits))), query


def test_a_cte_name_is_not_a_table_but_a_cte_over_a_table_of_that_name_charges_it(
    warehouse: sa.engine.Engine,
) -> None:
    (visits,) = _key(warehouse, table="visits")
    (people,) = _key(warehouse, table="people")
    assert _key(warehouse, source_query="WITH people AS (SELECT * FROM visits) SELECT * FROM people") == (
        visits,
    )
    assert _key(warehouse, source_query="WITH v AS (SELECT * FROM people) SELECT * FROM v") == (people,)


def test_undeterminable_queries_are_refused_unless_a_privacy_scope_is_declared(
    warehouse: sa.engine.Engine,
) -> None:
    for query in (
        "SELECT people_count() FROM visits",  # a user-defined function reads people
        "SELECT pg_catalog.query_to_xml('select * from people', true, true, '') FROM visits",
        "SELECT query_to_xml('select * from people', true, true, '')",
        "SELECT * FROM people; DROP TABLE visits",
        "DELETE FROM people",
        "WITH d AS (DELETE FROM visits RETURNING *) SELECT * FROM d",  # a write inside a query
        "SELECT * INTO people_copy FROM people",
        "not sql at all (",
        "SELECT * FROM " + "(SELECT * FROM " * 5000 + "people" + ") AS s" * 5000,  # too deep to parse
    ):
        with pytest.raises(ParameterError, match="cannot determine which tables"):
            budget_scope(warehouse, table="x", source_query=query)
    scope = budget_scope(
        warehouse, table="x", source_query="SELECT people_count() FROM visits", privacy_scope="hr"
    )
    assert scope.keys == ("scope:hr",) and scope.privacy_scope == "hr"
    # a declared scope never escapes a table's budget: tables that can be determined stay charged
    (people,) = _key(warehouse, table="people")
    assert budget_scope(warehouse, table="people", privacy_scope="hr").keys == tuple(
        sorted((people, "scope:hr"))
    )


def test_exhausted_budget_cannot_be_bypassed_by_renaming(warehouse: sa.engine.Engine, tmp_path: Path) -> None:
    ledger = PrivacyLedger(f"sqlite:///{tmp_path / 'ledger.db'}")
    people = budget_scope(warehouse, table="people")
    ledger.grant(people, 1.0, 1e-5)
    ledger.settle_in_full(ledger.reserve(people, 1.0, 1e-6, run_id="first"))
    for spelling in (
        dict(table="main.people" if warehouse.dialect.name == "sqlite" else "people"),
        dict(table="people_v2", source_query="SELECT * FROM people"),
        dict(table="x", source_query="SELECT * FROM adults"),
    ):
        with pytest.raises(BudgetExceededError, match="exhausted"):
            ledger.reserve(budget_scope(warehouse, **spelling), 0.5, 1e-6, run_id="again")


def test_built_in_functions_the_parser_does_not_model_are_allowed(warehouse: sa.engine.Engine) -> None:
    (visits,) = _key(warehouse, table="visits")
    query = {
        "sqlite": "SELECT julianday(day), printf('%d', person_id), unixepoch(day) FROM visits",
        "postgresql": "SELECT age(day), make_date(2000, 1, 1), person_id FROM visits",
        "mysql": "SELECT unix_timestamp(day), now() FROM visits",
    }[warehouse.dialect.name]
    assert _key(warehouse, source_query=query) == (visits,)


# -- dialect-specific resolution -----------------------------------------------------------------
def test_postgres_quoting_schema_partition_and_materialized_view(postgres_engine: sa.engine.Engine) -> None:
    (people,) = _key(postgres_engine, table="people")
    database = postgres_engine.url.database
    assert people == f"postgresql://127.0.0.1:5432/{database}/public.people"
    # a quoted mixed-case name is a different table; SQLAlchemy quotes "People" as the pipeline reads it
    (quoted,) = _key(postgres_engine, table="People")
    assert quoted == f"postgresql://127.0.0.1:5432/{database}/public.People"
    assert _key(postgres_engine, source_query='SELECT * FROM "People"') == (quoted,)
    assert _key(postgres_engine, source_query='SELECT * FROM "people"') == (people,)
    assert _key(postgres_engine, table="hr.people") != (people,)
    # a partition is its partitioned table's rows; a materialized view its base tables'
    (events,) = _key(postgres_engine, table="events")
    assert _key(postgres_engine, table="events_early") == (events,)
    assert _key(postgres_engine, table="visit_days") == _key(postgres_engine, table="visits")
    # a user-defined function is refused by any spelling; a built-in set-returning function is not
    for query in ("SELECT str_to_date('a', 'b') FROM visits", "SELECT public.\"STR_TO_DATE\"('a', 'b')"):
        with pytest.raises(ParameterError, match="cannot determine which tables"):
            budget_scope(postgres_engine, table="x", source_query=query)
    assert _key(postgres_engine, source_query="SELECT * FROM people, unnest(ARRAY[1, 2]) AS u(n)") == (
        people,
    )
    assert _key(postgres_engine, source_query="SELECT * FROM people, jsonb_each('{}'::jsonb)") == (people,)
    # the search_path decides an unqualified name, as PostgreSQL does
    search_hr = sa.create_engine(postgres_engine.url, connect_args={"options": "-csearch_path=hr,public"})
    try:
        (hr_people,) = _key(search_hr, table="people")
        assert hr_people == f"postgresql://127.0.0.1:5432/{database}/hr.people"
        assert _key(search_hr, table="visits") == _key(postgres_engine, table="visits")
    finally:
        search_hr.dispose()


def test_mariadb_keys_the_server_not_the_connection_database(mariadb_engine: sa.engine.Engine) -> None:
    (people,) = _key(mariadb_engine, table="people")
    name = mariadb_engine.url.database
    assert people == f"mysql://127.0.0.1:3306/{name}.people"
    # one connection reads every database on the server: the key names the database read
    other = sa.create_engine(mariadb_engine.url.set(database=f"{name}_other"))
    try:
        assert _key(other, table=f"{name}.people") == (people,)
        assert _key(other, source_query=f"SELECT * FROM `{name}`.people") == (people,)
        assert _key(other, table="people") == (f"mysql://127.0.0.1:3306/{name}_other.people",)
    finally:
        other.dispose()


def test_credentials_never_reach_a_key(postgres_engine: sa.engine.Engine) -> None:
    with_password = sa.create_engine(postgres_engine.url.set(password="s3cret-pw"))  # trust auth ignores it
    try:
        (key,) = _key(with_password, table="people")
    finally:
        with_password.dispose()
    assert "s3cret" not in key and "postgres@" not in key
    assert (key,) == _key(postgres_engine, table="people")


# -- generated spellings (hypothesis) ------------------------------------------------------------
_NAME = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12).filter(lambda s: s[0] != "_")


def _respell(name: str, data: st.DataObject) -> str:
    """``name`` with the letter case of each character chosen by hypothesis."""
    return "".join(c.upper() if data.draw(st.booleans()) else c for c in name)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_generated_spellings_of_one_sqlite_table_map_to_one_key(
    sqlite_engine: sa.engine.Engine, data: st.DataObject
) -> None:
    (people,) = _key(sqlite_engine, table="people")
    table = _respell("people", data)
    schema = data.draw(st.sampled_from(["", "main.", '"main".', "MAIN.", '"MaIn".']))
    quoted = data.draw(st.booleans())
    ref = f'{schema}"{table}"' if quoted else f"{schema}{table}"
    alias = data.draw(st.sampled_from(["", " AS p", " p"]))
    wrap = data.draw(
        st.sampled_from(["{}", "(SELECT * FROM {}) AS s", "{} JOIN (SELECT 1 AS one) AS o ON 1 = 1"])
    )
    query = "SELECT * FROM " + wrap.format(ref + alias)
    assert _key(sqlite_engine, source_query=query) == (people,), query
    assert _key(sqlite_engine, table=f"{schema.strip('.').strip(chr(34))}.{table}" if schema else table) == (
        people,
    )


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_generated_spellings_on_postgres_fold_unquoted_and_keep_quoted(
    postgres_engine: sa.engine.Engine, data: st.DataObject
) -> None:
    (people,) = _key(postgres_engine, table="people")
    (quoted_people,) = _key(postgres_engine, table="People")
    spelled = _respell("people", data)
    schema = data.draw(st.sampled_from(["", "public.", "PUBLIC.", '"public".']))
    assert _key(postgres_engine, source_query=f"SELECT * FROM {schema}{spelled}") == (people,)
    expected = {"people": people, "People": quoted_people}.get(spelled)
    if expected is not None:  # a quoted name is exact: only these two tables exist
        assert _key(postgres_engine, source_query=f'SELECT * FROM {schema}"{spelled}"') == (expected,)
    else:  # a quoted spelling of no table is keyed as itself, never as people's budget
        (other,) = _key(postgres_engine, source_query=f'SELECT * FROM {schema}"{spelled}"')
        assert other not in (people, quoted_people)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_generated_spellings_on_mariadb_follow_lower_case_table_names(
    mariadb_engine: sa.engine.Engine, data: st.DataObject
) -> None:
    (people,) = _key(mariadb_engine, table="people")
    database = str(mariadb_engine.url.database)
    spelled = _respell("people", data)
    quote = data.draw(st.sampled_from(["", "`"]))
    schema = data.draw(st.sampled_from(["", f"{database}.", f"`{database}`."]))
    keys = _key(mariadb_engine, source_query=f"SELECT * FROM {schema}{quote}{spelled}{quote} AS p")
    # quoting never matters on MariaDB; letter case only where lower_case_table_names folds it
    assert (keys == (people,)) == (spelled == "people" or _folds_table_names(mariadb_engine))


_ANY_NAME = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=16
).filter(lambda s: s.strip() == s and "." not in s and s.isprintable())


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(a=_ANY_NAME, b=_ANY_NAME)
def test_generated_distinct_tables_get_distinct_keys(
    sqlite_engine: sa.engine.Engine, postgres_engine: sa.engine.Engine, a: str, b: str
) -> None:
    # as the pipeline reads a table= name (quoted where SQLAlchemy quotes it) and as a quoted
    # identifier in a query: SQLite folds ASCII case only, PostgreSQL keeps a quoted name exact
    def quoted(name: str) -> str:
        return "SELECT * FROM " + chr(34) + name.replace(chr(34), chr(34) * 2) + chr(34)

    for engine, same in (
        (sqlite_engine, _ascii_lower(a) == _ascii_lower(b)),
        (postgres_engine, a == b),
    ):
        ka, kb = _key(engine, table=a), _key(engine, source_query=quoted(b))
        assert (ka == kb) == same, (engine.dialect.name, a, b, ka, kb)
        assert _key(engine, source_query=quoted(a)) == ka


def _ascii_lower(text: str) -> str:
    return "".join(c.lower() if "A" <= c <= "Z" else c for c in text)


@settings(max_examples=80, deadline=None)
@given(
    schema=st.text(min_size=1, max_size=20).filter(str.isprintable),
    table=st.text(min_size=1, max_size=20).filter(str.isprintable),
    schema2=st.text(min_size=1, max_size=20).filter(str.isprintable),
    table2=st.text(min_size=1, max_size=20).filter(str.isprintable),
)
def test_key_parts_are_injective(schema: str, table: str, schema2: str, table2: str) -> None:
    from synth_core.budget_scope import key_part

    same = (schema, table) == (schema2, table2)
    assert (f"{key_part(schema)}.{key_part(table)}" == f"{key_part(schema2)}.{key_part(table2)}") == same


def test_a_plain_string_is_one_key_for_old_ledgers(tmp_path: Path) -> None:
    ledger = PrivacyLedger(f"sqlite:///{tmp_path / 'ledger.db'}")
    ledger.grant("adult", 3.0, 1e-5)  # an old ledger's key: the spec's table name
    assert BudgetScope.of("adult").keys == ("adult",)
    assert ledger.status(BudgetScope(("adult",))).lifetime_epsilon == 3.0
    with pytest.raises(ParameterError):
        BudgetScope(())


def test_an_old_ledgers_plain_key_is_carried_over_once_never_a_fresh_budget(
    sqlite_engine: sa.engine.Engine, tmp_path: Path
) -> None:
    ledger = PrivacyLedger(f"sqlite:///{tmp_path / 'ledger.db'}")
    ledger.grant("people", 3.0, 1e-5)  # written by a version that keyed by the spec's name
    ledger.settle(ledger.reserve("people", 2.0, 1e-6, run_id="old"), 2.0, 1e-6)
    scope = budget_scope(sqlite_engine, table="people")
    assert scope.legacy_keys == ("people",) and scope.keys != ("people",)
    status = ledger.status(scope)  # what would be carried already counts in a check
    assert (status.lifetime_epsilon, status.remaining_epsilon) == (3.0, 1.0)
    with pytest.raises(BudgetExceededError):
        ledger.check(scope, 1.5, 1e-6)
    # ensure_grant (the operators' initial grant) does not hand the new key a fresh budget
    assert ledger.ensure_grant(scope, 100.0, 1e-5).remaining_epsilon == pytest.approx(1.0)
    with pytest.raises(ParameterError, match="allow_raise"):
        ledger.grant(scope, 100.0, 1e-5)  # the carried grant is an existing grant
    ledger.settle_in_full(ledger.reserve(scope, 1.0, 1e-6, run_id="new"))
    # a renamed spec of the same rows names another legacy key; the budget is the same, exhausted
    renamed = budget_scope(sqlite_engine, table="people_v2", source_query="SELECT * FROM people")
    assert renamed.keys == scope.keys and renamed.legacy_keys == ("people_v2",)
    with pytest.raises(BudgetExceededError, match="exhausted"):
        ledger.reserve(renamed, 0.1, 1e-7, run_id="renamed")
    (key,) = scope.keys
    kinds = [(e["entry_type"], e["epsilon"]) for e in ledger.entries(scope)]
    assert kinds == [("grant", 3.0), ("carry", 2.0), ("reserve", 1.0), ("spend", 1.0)]
    assert [e["entry_type"] for e in ledger.entries(key)].count("carry") == 1  # carried once


# -- hostile input: a scope or a clear refusal, never another error ------------------------------
_SQL_PIECES = st.sampled_from(
    [
        "SELECT", "*", "FROM", "people", "visits", "adults", "WITH", "AS", "(", ")", ",", ";", "JOIN", "ON",
        "1", "=", "UNION", "\"", "'", "`", "--", "/*", "*/", "main.", "public.", "DROP TABLE visits", "x",
        "\x00", "é", "PEOPLE", "people_count()", "query_to_xml('select 1', true, true, '')", "LATERAL",
        "generate_series(1, 3)", "VALUES (1)", "INTO t", "FOR UPDATE", "WHERE", "IN", "EXISTS",
    ]
)  # fmt: skip


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    pieces=st.lists(_SQL_PIECES, max_size=14),
    noise=st.text(max_size=30),
    table=st.text(max_size=40),
    nesting=st.integers(min_value=0, max_value=300),
)
def test_generated_hostile_queries_and_names_get_a_scope_or_a_parameter_error(
    sqlite_engine: sa.engine.Engine,
    postgres_engine: sa.engine.Engine,
    mariadb_engine: sa.engine.Engine,
    pieces: list[str],
    noise: str,
    table: str,
    nesting: int,
) -> None:
    from synth_core.errors import SourceTableError

    queries = [
        " ".join(pieces) + noise,
        "SELECT * FROM " + "(SELECT * FROM " * nesting + "people" + ") AS s" * nesting,
    ]
    for engine in (sqlite_engine, postgres_engine, mariadb_engine):
        for query in queries:
            try:
                scope = budget_scope(engine, table="label", source_query=query)
            except ParameterError as err:
                assert "\x00" not in str(err)
            else:
                assert scope.keys and all(k.isprintable() for k in scope.keys)
        try:
            scope = budget_scope(engine, table=table)
        except (ParameterError, SourceTableError):
            pass
        else:
            assert len(scope.keys) >= 1


@settings(max_examples=60, deadline=None)
@given(
    keys=st.lists(
        st.text(min_size=1, max_size=30).filter(lambda k: k.strip() and k.isprintable()), min_size=1
    ),
    privacy_scope=st.none() | st.text(min_size=1, max_size=10).filter(str.isprintable),
)
def test_a_scope_round_trips_through_json_and_refuses_anything_else(
    keys: list[str], privacy_scope: str | None
) -> None:
    import json

    scope = BudgetScope(tuple(keys), privacy_scope=privacy_scope, legacy_keys=("people",))
    assert BudgetScope.from_mapping(json.loads(json.dumps(scope.to_dict()))) == scope
    hostile: list[object] = [
        {},
        {"keys": "people"},
        {"keys": []},
        {"keys": [1]},
        {"keys": ["a\x00"]},
        ["a"],
        None,
    ]
    for raw in hostile:
        with pytest.raises(ParameterError):
            BudgetScope.from_mapping(raw)
