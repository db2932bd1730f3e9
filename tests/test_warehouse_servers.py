"""Warehouse I/O against the real local PostgreSQL and MariaDB servers.

Each test works in its own schema/database (created and dropped here), so runs never collide.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from synth_core.errors import ParameterError, ValidationFailedError
from synth_core.spec import TableSpec
from synth_core.warehouse import (
    TableComments,
    asset_uri,
    iter_table_chunks,
    publish_table_atomically,
    read_table,
    reflect_table,
)

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
MYSQL_URL = "mysql+pymysql://root@127.0.0.1:3306/"


def _server_or_skip(url: str) -> sa.engine.Engine:
    engine = sa.create_engine(url)
    try:
        with engine.connect():
            pass
    except sa.exc.OperationalError as exc:  # a CI machine without the service is a setup error, not a pass
        pytest.fail(f"warehouse server {url} is not reachable: {exc.__class__.__name__}")
    return engine


@pytest.fixture
def pg() -> Iterator[tuple[sa.engine.Engine, str]]:
    engine = _server_or_skip(PG_URL)
    schema = f"dpsynth_t_{uuid.uuid4().hex[:8]}"
    with engine.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    yield engine, schema
    with engine.begin() as conn:
        conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
    engine.dispose()


@pytest.fixture
def maria() -> Iterator[tuple[sa.engine.Engine, str]]:
    server = _server_or_skip(MYSQL_URL)
    db = f"dpsynth_t_{uuid.uuid4().hex[:8]}"
    with server.begin() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE `{db}`")
    engine = sa.create_engine(MYSQL_URL + db)
    yield engine, db
    engine.dispose()
    with server.begin() as conn:
        conn.exec_driver_sql(f"DROP DATABASE `{db}`")
    server.dispose()


def _typed_table(schema: str | None, name: str = "people") -> sa.Table:
    return sa.Table(
        name,
        sa.MetaData(),
        sa.Column("person_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("age", sa.Integer, nullable=False),
        sa.Column("visits", sa.BigInteger, nullable=True),
        sa.Column("income", sa.Float, nullable=True),
        sa.Column("balance", sa.Numeric(12, 2), nullable=True),
        sa.Column("city", sa.String(40), nullable=True),
        sa.Column("note", sa.Text, nullable=True),
        sa.Column("member", sa.Boolean, nullable=True),
        sa.Column("born", sa.Date, nullable=True),
        sa.Column("seen", sa.DateTime, nullable=False),
        schema=schema,
    )


SPEC = TableSpec.from_dict(
    {
        "table": "people",
        "columns": [
            {"name": "person_id", "kind": "id", "nullable": False},
            {"name": "age", "kind": "integer", "nullable": False},
            {"name": "visits", "kind": "integer"},
            {"name": "income", "kind": "numeric"},
            {"name": "balance", "kind": "numeric"},
            {"name": "city", "kind": "categorical"},
            {"name": "note", "kind": "categorical"},
            {"name": "member", "kind": "boolean"},
            {"name": "born", "kind": "datetime", "resolution": "day"},
            {"name": "seen", "kind": "datetime", "nullable": False},
        ],
    }
)


def _rows(n: int, seed: int = 0) -> list[dict[str, object]]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        out.append(
            {
                "person_id": i + 1,
                "age": int(rng.integers(18, 90)),
                "visits": None if i % 7 == 0 else int(rng.integers(0, 10**10)),
                "income": None if i % 5 == 0 else float(rng.normal(50_000, 9_000)),
                "balance": None if i % 6 == 0 else round(float(rng.normal(100, 50)), 2),
                "city": None
                if i % 4 == 0
                else ("" if i % 9 == 0 else str(rng.choice(["Oslo", "Lima", "Pune, MH"]))),
                "note": None if i % 3 == 0 else 'says "hi"\nthen leaves',
                "member": None if i % 8 == 0 else bool(i % 2),
                "born": None
                if i % 10 == 0
                else dt.date(1950, 1, 1) + dt.timedelta(days=int(rng.integers(0, 20_000))),
                "seen": dt.datetime(2026, 1, 1) + dt.timedelta(seconds=int(rng.integers(0, 10**7))),
            }
        )
    return out


def _round_trip(engine: sa.engine.Engine, schema: str, target_schema: str, target: str) -> None:
    source = _typed_table(schema)
    source.create(engine)
    with engine.begin() as conn:
        conn.execute(source.insert(), _rows(500))
    spec = TableSpec.from_dict({**SPEC.to_dict(), "table": f"{schema}.people"})
    frame = read_table(engine, spec)
    assert len(frame) == 500
    assert frame["city"].isna().sum() == 125 and (frame["city"] == "").sum() > 0  # NULL and "" stay apart
    assert str(frame["visits"].dtype) == "Int64" and frame["visits"].isna().sum() == 72
    reflected = reflect_table(engine, "people", schema=schema)
    types = {c.name: c.type for c in reflected.columns}
    nullable = {c.name: bool(c.nullable) for c in reflected.columns}
    comments = TableComments("synthetic replacement of people (test)", {"age": "synthetic: integer"})
    rows = publish_table_atomically(
        engine, [frame.iloc[:200], frame.iloc[200:]], target=target, schema=target_schema,
        column_types=types, nullable=nullable, comments=comments,
    )  # fmt: skip
    assert rows == 500
    insp = sa.inspect(engine)
    src_cols = [(c["name"], str(c["type"]), c["nullable"]) for c in insp.get_columns("people", schema=schema)]
    dst_cols = [
        (c["name"], str(c["type"]), c["nullable"]) for c in insp.get_columns(target, schema=target_schema)
    ]
    assert dst_cols == src_cols
    assert insp.get_table_comment(target, schema=target_schema)["text"] == comments.table
    age_comment = {c["name"]: c.get("comment") for c in insp.get_columns(target, schema=target_schema)}["age"]
    assert age_comment == "synthetic: integer"
    back = read_table(engine, TableSpec.from_dict({**SPEC.to_dict(), "table": f"{target_schema}.{target}"}))
    pd.testing.assert_frame_equal(back, frame)
    assert not [t for t in insp.get_table_names(schema=target_schema) if "__dpsynth_" in t]


def test_postgres_round_trip_keeps_types_nulls_and_rows(pg: tuple[sa.engine.Engine, str]) -> None:
    engine, schema = pg
    try:  # same table name, another schema: a dbt project switches by schema only
        _round_trip(engine, schema, target_schema=f"{schema}_synth", target="people")
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}_synth" CASCADE')


def test_mariadb_round_trip_keeps_types_nulls_and_rows(maria: tuple[sa.engine.Engine, str]) -> None:
    engine, db = maria
    _round_trip(engine, db, target_schema=db, target="people_synth")


def test_postgres_extract_streams_in_bounded_chunks(pg: tuple[sa.engine.Engine, str]) -> None:
    engine, schema = pg
    source = _typed_table(schema)
    source.create(engine)
    with engine.begin() as conn:
        conn.execute(source.insert(), _rows(2_345))
    spec = TableSpec.from_dict({**SPEC.to_dict(), "table": f"{schema}.people"})
    _, chunks = iter_table_chunks(engine, spec, chunk_rows=1_000)
    sizes = [len(c) for c in chunks]
    assert sizes == [1_000, 1_000, 345]


def test_postgres_publish_keeps_dependent_views(pg: tuple[sa.engine.Engine, str]) -> None:
    engine, schema = pg
    source = _typed_table(schema)
    source.create(engine)
    with engine.begin() as conn:
        conn.execute(source.insert(), _rows(50))
    frame = read_table(engine, TableSpec.from_dict({**SPEC.to_dict(), "table": f"{schema}.people"}))
    types = {c.name: c.type for c in source.columns}
    publish_table_atomically(engine, frame.head(10), target="synth", schema=schema, column_types=types)
    with engine.begin() as conn:  # a dbt model materialized as a view on the published table
        conn.exec_driver_sql(f'CREATE VIEW "{schema}".adults AS SELECT age, city FROM "{schema}".synth')
    publish_table_atomically(
        engine,
        frame.head(30),
        target="synth",
        schema=schema,
        column_types=types,
        comments=TableComments("second release"),
    )
    with engine.connect() as conn:
        assert conn.exec_driver_sql(f'SELECT count(*) FROM "{schema}".adults').scalar_one() == 30
    assert sa.inspect(engine).get_table_comment("synth", schema=schema)["text"] == "second release"


def _kill_after_first_chunk(
    engine: sa.engine.Engine, frame: pd.DataFrame, kill_sql: str
) -> Iterator[pd.DataFrame]:
    """Yield one chunk, then terminate the publishing session from a second connection."""
    yield frame.iloc[:100]
    killer = sa.create_engine(engine.url)
    with killer.begin() as conn:
        conn.exec_driver_sql(kill_sql)
    killer.dispose()
    yield frame.iloc[100:]


def test_postgres_dead_connection_mid_publish_keeps_the_previous_table(
    pg: tuple[sa.engine.Engine, str],
) -> None:
    engine, schema = pg
    source = _typed_table(schema)
    source.create(engine)
    with engine.begin() as conn:
        conn.execute(source.insert(), _rows(300))
    frame = read_table(engine, TableSpec.from_dict({**SPEC.to_dict(), "table": f"{schema}.people"}))
    types = {c.name: c.type for c in source.columns}

    def release(run: str, rows: int) -> dict[str, object]:
        return {
            "synthetic_table": "synth", "source_table": "people", "run_id": run, "row_count": rows,
            "published_at": dt.datetime.now(dt.UTC), "epsilon": 1.0, "delta": 1e-6, "generator": "test",
        }  # fmt: skip

    publish_table_atomically(
        engine, frame.head(42), target="synth", schema=schema, column_types=types, release=release("r1", 42)
    )
    kill = (
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE query LIKE 'COPY %%__dpsynth_%%' AND pid <> pg_backend_pid()"
    )
    with pytest.raises(sa.exc.OperationalError):
        publish_table_atomically(
            engine,
            _kill_after_first_chunk(engine, frame, kill),
            target="synth",
            schema=schema,
            column_types=types,
            release=release("r2", 300),
        )
    engine.dispose()
    runs = f'SELECT run_id FROM "{schema}".dpsynth_releases ORDER BY published_at'
    with engine.connect() as conn:
        assert conn.exec_driver_sql(f'SELECT count(*) FROM "{schema}".synth').scalar_one() == 42
        assert [r[0] for r in conn.exec_driver_sql(runs)] == ["r1"]  # the log rolled back with the table
    assert not [t for t in sa.inspect(engine).get_table_names(schema=schema) if "__dpsynth_" in t]
    # the retry completes the release
    published = publish_table_atomically(
        engine, frame, target="synth", schema=schema, column_types=types, release=release("r2", 300)
    )
    assert published == 300
    with engine.connect() as conn:
        assert [r[0] for r in conn.exec_driver_sql(runs)] == ["r1", "r2"]


def test_mariadb_dead_connection_mid_publish_keeps_the_previous_table(
    maria: tuple[sa.engine.Engine, str],
) -> None:
    engine, db = maria
    source = _typed_table(None)
    source.create(engine)
    with engine.begin() as conn:
        conn.execute(source.insert(), _rows(300))
    frame = read_table(engine, SPEC)
    types = {c.name: c.type for c in source.columns}
    publish_table_atomically(engine, frame.head(42), target="synth", column_types=types)

    def chunks() -> Iterator[pd.DataFrame]:
        yield frame.iloc[:100]
        killer = sa.create_engine(engine.url)
        with killer.begin() as conn:
            victims = [
                r[0]
                for r in conn.exec_driver_sql(
                    f"SELECT ID FROM information_schema.PROCESSLIST WHERE DB = '{db}' AND ID <> CONNECTION_ID()"
                )
            ]
            for victim in victims:
                conn.exec_driver_sql(f"KILL CONNECTION {int(victim)}")
        killer.dispose()
        yield frame.iloc[100:]

    with pytest.raises(sa.exc.DBAPIError):
        publish_table_atomically(engine, chunks(), target="synth", column_types=types)
    engine.dispose()
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM synth").scalar_one() == 42
    assert publish_table_atomically(engine, frame, target="synth", column_types=types) == 300
    assert not [t for t in sa.inspect(engine).get_table_names() if "__dpsynth_" in t]


def test_asset_uris_follow_the_cosmos_scheme(pg: tuple[sa.engine.Engine, str]) -> None:
    engine, _ = pg
    assert asset_uri(engine, "adult", schema="synthetic") == "postgres://127.0.0.1:5432/test/synthetic/adult"
    lite = sa.create_engine("sqlite:////tmp/w.db")
    assert asset_uri(lite, "adult_synthetic") == "sqlite:///tmp/w.db/main/adult_synthetic"


@pytest.mark.parametrize("server", ["pg", "maria"])
def test_a_source_query_streams_with_catalog_or_spec_types(
    server: str, request: pytest.FixtureRequest
) -> None:
    engine, schema = request.getfixturevalue(server)
    source = _typed_table(schema if server == "pg" else None)
    source.create(engine)
    with engine.begin() as conn:
        conn.execute(source.insert(), _rows(300))
    table = f"{schema}.people" if server == "pg" else "people"
    query = f"SELECT * FROM {table} WHERE age >= 30"
    spec = TableSpec.from_dict({**SPEC.to_dict(), "table": "adults_over_30"})
    dtypes, chunks = iter_table_chunks(engine, spec, query=query, chunk_rows=100)
    frame = pd.concat(list(chunks), ignore_index=True)
    expected = read_table(engine, TableSpec.from_dict({**SPEC.to_dict(), "table": table}))
    expected = expected[expected["age"] >= 30].reset_index(drop=True)
    assert dtypes == {c: str(t) for c, t in expected.dtypes.items()}
    pd.testing.assert_frame_equal(frame.sort_values("person_id").reset_index(drop=True), expected)
    # a query the spec does not fit fails before streaming, naming the column
    bad = TableSpec.from_dict({**SPEC.to_dict(), "table": "x"})
    from synth_core.errors import SourceTableError, SpecError

    with pytest.raises((SourceTableError, SpecError), match=r"person_id|columns"):
        iter_table_chunks(engine, bad, query=f"SELECT age FROM {table}")
    with pytest.raises(SourceTableError, match="the source query of table 'x' failed"):
        iter_table_chunks(engine, bad, query="SELECT nope FROM nowhere")


@pytest.mark.parametrize("server", ["pg", "maria", "sqlite"])
def test_staged_chunks_are_published_together_and_a_bad_chunk_publishes_nothing(
    server: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Shards load their own staging-table chunks (in parallel in production); the publish moves
    them into the swap's staging table inside the warehouse, in one transaction, then drops them."""
    from synth_core.errors import ShardError
    from synth_core.warehouse import StagedChunk, stage_rows

    if server == "sqlite":
        engine, schema = sa.create_engine(f"sqlite:///{tmp_path / 'w.db'}"), None
    else:
        engine, schema = request.getfixturevalue(server)
        schema = schema if server == "pg" else None
    types = {"k": sa.BigInteger(), "city": sa.String(40), "amount": sa.Float()}
    frames = [
        pd.DataFrame({"k": np.arange(s, s + n, dtype="int64"), "city": ["Ghent", None] * (n // 2),
                      "amount": np.linspace(0, 1, n)})
        for s, n in ((0, 400), (400, 300), (700, 300))
    ]  # fmt: skip
    chunks = [
        stage_rows(engine, [f.iloc[:150], f.iloc[150:]], table=f"t__dpsynth_shard_ab_{i:05d}", column_types=types,
                   schema=schema)
        for i, f in enumerate(frames)
    ]  # fmt: skip
    assert [c.rows for c in chunks] == [400, 300, 300]
    # a retried shard task replaces its chunk instead of appending to it
    chunks[1] = stage_rows(engine, [frames[1]], table=chunks[1].table, column_types=types, schema=schema)
    assert chunks[1].rows == 300

    publish_table_atomically(engine, frames[0].head(5), target="synth", schema=schema, column_types=types)
    # a chunk holding other rows than its shard recorded (here: a row deleted behind its back)
    q = f'"{schema}".' if schema else ""
    name = chunks[2].table if server != "maria" else f"`{chunks[2].table}`"
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DELETE FROM {q}{name} WHERE k = 999")
    with pytest.raises(ShardError, match="holds 299 rows, its shard recorded 300; nothing was published"):
        publish_table_atomically(
            engine, None, staged=chunks, target="synth", schema=schema, column_types=types
        )
    with pytest.raises(ShardError, match="cannot be read"):
        publish_table_atomically(
            engine, None, staged=[*chunks[:2], StagedChunk("t__dpsynth_shard_ab_00009", 5, schema)],
            target="synth", schema=schema, column_types=types,
        )  # fmt: skip
    with pytest.raises(ValidationFailedError, match="hold 1000 rows but 999 were validated"):
        publish_table_atomically(
            engine, None, staged=chunks, target="synth", schema=schema, column_types=types, expected_rows=999
        )
    with engine.connect() as conn:  # the previous table is untouched
        assert conn.exec_driver_sql(f"SELECT count(*) FROM {q}synth").scalar_one() == 5

    chunks[2] = stage_rows(engine, [frames[2]], table=chunks[2].table, column_types=types, schema=schema)
    published = publish_table_atomically(
        engine, None, staged=chunks, target="synth", schema=schema, column_types=types, expected_rows=1000
    )
    assert published == 1000
    with engine.connect() as conn:
        keys = [r[0] for r in conn.exec_driver_sql(f"SELECT k FROM {q}synth ORDER BY k")]
        nulls = conn.exec_driver_sql(f"SELECT count(*) FROM {q}synth WHERE city IS NULL").scalar_one()
    assert keys == list(range(1000)) and nulls == 500  # every row once, NULLs kept
    left = sa.inspect(engine).get_table_names(schema=schema)
    assert not [t for t in left if "__dpsynth_" in t], left  # the chunks went with the swap
    with pytest.raises(ParameterError, match="not both or neither"):
        publish_table_atomically(engine, frames[0], staged=chunks, target="synth", column_types=types)
    engine.dispose()
