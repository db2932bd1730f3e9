"""Hostile input against the real components: SQLite, PostgreSQL, MariaDB, a real S3 server, real
model bundles.

Each warehouse test works in its own uniquely named SQLite file, PostgreSQL schema or MariaDB
database (created and dropped here). The invariants: no table is dropped or changed but the
target, nothing is written outside the store root, no cell value or secret reaches a message, and
errors are non-retryable where a retry cannot help.
"""

from __future__ import annotations

import io
import json
import logging
import resource
import uuid
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from s3_server import S3Bucket

from synth_core.boundary import IDENTIFIER_PATTERN
from synth_core.errors import BundleError, NonRetryableError, ParameterError, SourceTableError
from synth_core.object_store import ObjectStore, join_uri
from synth_core.spec import ColumnKind, ColumnSpec, TableSpec
from synth_core.warehouse import (
    iter_table_chunks,
    publish_table_atomically,
    read_only_connection,
    reflect_table,
    stage_rows,
)

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
MYSQL_URL = "mysql+pymysql://root@127.0.0.1:3306/"
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))


class Warehouse:
    """One dialect's scratch area: ``src`` (the source) and ``victim`` (must never change)."""

    def __init__(self, engine: sa.engine.Engine, schema: str | None) -> None:
        self.engine = engine
        self.schema = schema
        self.dialect = engine.dialect.name

    def q(self, name: str) -> str:
        """``name`` qualified by the scratch schema, as a query would write it."""
        return f"{self.schema}.{name}" if self.schema else name

    def snapshot(self) -> tuple[list[str], list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        """Table names, and the rows of ``victim`` and ``src``."""
        with self.engine.connect() as conn:
            names = sorted(sa.inspect(conn).get_table_names(schema=self.schema))
            victim = sorted(tuple(r) for r in conn.exec_driver_sql(f"SELECT v FROM {self.q('victim')}"))
            src = sorted(tuple(r) for r in conn.exec_driver_sql(f"SELECT a, b FROM {self.q('src')}"))
        return names, victim, src


def _fill(engine: sa.engine.Engine, schema: str | None) -> Warehouse:
    md = sa.MetaData(schema=schema)
    src = sa.Table("src", md, sa.Column("a", sa.Integer), sa.Column("b", sa.String(40)))
    victim = sa.Table("victim", md, sa.Column("v", sa.Integer))
    md.create_all(engine)
    with engine.begin() as conn:
        conn.execute(src.insert(), [{"a": i, "b": f"b{i % 3}"} for i in range(20)])
        conn.execute(victim.insert(), [{"v": 1}, {"v": 2}])
    return Warehouse(engine, schema)


def _reachable(url: str) -> sa.engine.Engine:
    engine = sa.create_engine(url)
    try:
        with engine.connect():
            pass
    except sa.exc.OperationalError as exc:
        pytest.fail(f"warehouse server {url} is not reachable: {exc.__class__.__name__}")
    return engine


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def warehouse(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Warehouse]:
    name = f"dpsynth_h_{uuid.uuid4().hex[:8]}"
    if request.param == "sqlite":
        engine = sa.create_engine(f"sqlite:///{tmp_path / name}.db")
        yield _fill(engine, None)
        engine.dispose()
    elif request.param == "postgresql":
        engine = _reachable(PG_URL)
        with engine.begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{name}"')
        try:
            yield _fill(engine, name)
        finally:
            with engine.begin() as conn:
                conn.exec_driver_sql(f'DROP SCHEMA "{name}" CASCADE')
            engine.dispose()
    else:
        server = _reachable(MYSQL_URL)
        with server.begin() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE `{name}`")
        engine = sa.create_engine(MYSQL_URL + name)
        try:
            yield _fill(engine, None)
        finally:
            engine.dispose()
            with server.begin() as conn:
                conn.exec_driver_sql(f"DROP DATABASE `{name}`")
            server.dispose()


SPEC = TableSpec(
    "src",
    (ColumnSpec("a", ColumnKind.INTEGER), ColumnSpec("b", ColumnKind.CATEGORICAL)),
)

PAYLOADS = [
    "DROP TABLE {victim}",
    "COMMIT; DROP TABLE {victim}",
    "DELETE FROM {victim}",
    "UPDATE {victim} SET v = 0",
    "INSERT INTO {victim} VALUES (9)",
    "CREATE TABLE {made} (z int)",
    "ALTER TABLE {victim} ADD COLUMN z int",
]
SEPARATORS = [";", ";\n", " ; ", ";/* x */"]
TAILS = ["", " --", "; --", ";"]


def _stacked(wh: Warehouse) -> st.SearchStrategy[str]:
    return st.builds(
        lambda sep, payload, tail: (
            f"SELECT a, b FROM {wh.q('src')}{sep}"
            + payload.format(victim=wh.q("victim"), made=wh.q("made"))
            + tail
        ),
        st.sampled_from(SEPARATORS),
        st.sampled_from(PAYLOADS),
        st.sampled_from(TAILS),
    )


def test_stacked_statements_in_a_source_query_change_nothing(warehouse: Warehouse) -> None:
    """Regression: ``…; COMMIT; DROP TABLE other; --`` dropped a table on PostgreSQL, and the error
    was retryable. Now refused, non-retryable, on every dialect; nothing changes."""
    before = warehouse.snapshot()

    @SETTINGS
    @given(query=_stacked(warehouse))
    def attack(query: str) -> None:
        with pytest.raises(ParameterError) as info:
            _, chunks = iter_table_chunks(warehouse.engine, SPEC, query=query)
            list(chunks)
        assert isinstance(info.value, NonRetryableError)
        assert warehouse.snapshot() == before

    attack()


def test_a_parser_miss_still_cannot_write(warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the sqlglot check switched off (a parser miss), stacked and writing queries still
    change nothing: PostgreSQL runs the query through the extended protocol (one statement) in a
    READ ONLY transaction, MariaDB's driver runs one statement per call in a READ ONLY transaction,
    SQLite runs one statement per call with ``PRAGMA query_only``."""
    monkeypatch.setattr("synth_core.warehouse.check_source_query", lambda sql, dialect: sql)
    before = warehouse.snapshot()
    writes = [f"SELECT a, b FROM {warehouse.q('src')}; DELETE FROM {warehouse.q('victim')}"]
    if warehouse.dialect == "postgresql":
        writes.append(
            f"WITH d AS (DELETE FROM {warehouse.q('victim')} RETURNING v) SELECT v AS a, 'x' AS b FROM d"
        )

    @SETTINGS
    @given(query=st.one_of(_stacked(warehouse), st.sampled_from(writes)))
    def attack(query: str) -> None:
        with pytest.raises(Exception):  # noqa: B017 - any refusal will do: the point is what did not change
            _, chunks = iter_table_chunks(warehouse.engine, SPEC, query=query)
            list(chunks)
        assert warehouse.snapshot() == before

    attack()


def test_a_read_only_connection_refuses_writes_and_is_reset(warehouse: Warehouse) -> None:
    before = warehouse.snapshot()
    with read_only_connection(warehouse.engine) as conn, pytest.raises(sa.exc.DBAPIError):
        conn.exec_driver_sql(f"DELETE FROM {warehouse.q('victim')}")
    assert warehouse.snapshot() == before
    # the pooled connection is writable again for the next user
    with warehouse.engine.begin() as conn:
        conn.exec_driver_sql(f"INSERT INTO {warehouse.q('victim')} VALUES (3)")
    assert len(warehouse.snapshot()[1]) == 3


@pytest.mark.parametrize("warehouse", ["postgresql"], indirect=True)
def test_an_autocommit_postgres_engine_is_read_only_too(warehouse: Warehouse) -> None:
    """On an AUTOCOMMIT engine ``SET TRANSACTION READ ONLY`` does nothing: the session default is
    used instead, and reset before the connection goes back to the pool."""
    engine = warehouse.engine.execution_options(isolation_level="AUTOCOMMIT")
    before = warehouse.snapshot()
    with read_only_connection(engine) as conn, pytest.raises(sa.exc.DBAPIError):
        conn.exec_driver_sql(f"DELETE FROM {warehouse.q('victim')}")
    assert warehouse.snapshot() == before
    with engine.connect() as conn:
        conn.exec_driver_sql(f"INSERT INTO {warehouse.q('victim')} VALUES (3)")
    assert len(warehouse.snapshot()[1]) == 3


def test_a_plain_select_source_query_still_streams(warehouse: Warehouse) -> None:
    dtypes, chunks = iter_table_chunks(
        warehouse.engine,
        SPEC,
        query=f"SELECT a, b FROM {warehouse.q('src')} WHERE b LIKE 'b%';",
        chunk_rows=7,
    )
    frame = pd.concat(list(chunks))
    assert list(dtypes) == ["a", "b"] and len(frame) == 20


hostile_names = st.lists(
    st.sampled_from([*"abZ_9.-/\\%?#;'\"` $\x00\n", "..", "%2e%2e%2f", "DROP TABLE victim", "x" * 70]),
    min_size=1,
    max_size=8,
).map("".join)


def test_hostile_target_names_are_refused_before_any_statement(warehouse: Warehouse) -> None:
    """Regression: a name the identifier rule refuses was refused only after the swap. Every
    refused name leaves the warehouse exactly as it was (no staging table, no release row)."""
    before = warehouse.snapshot()
    frame = pd.DataFrame({"a": [1], "b": ["x"]})
    types: dict[str, sa.types.TypeEngine[Any]] = {"a": sa.Integer(), "b": sa.String(10)}

    @SETTINGS
    @given(name=hostile_names, where=st.sampled_from(["target", "schema", "column", "chunk", "reflect"]))
    def attack(name: str, where: str) -> None:
        assume(not IDENTIFIER_PATTERN.fullmatch(name) or len(name) > 63)
        with pytest.raises(ParameterError) as info:
            if where == "target":
                publish_table_atomically(warehouse.engine, frame, target=name, column_types=types)
            elif where == "schema":
                publish_table_atomically(warehouse.engine, frame, target="t", schema=name, column_types=types)
            elif where == "column":
                publish_table_atomically(
                    warehouse.engine, frame, target="t", column_types={name: sa.Integer()}
                )
            elif where == "chunk":
                stage_rows(warehouse.engine, [frame], table=name, column_types=types)
            else:
                reflect_table(warehouse.engine, name)
        assert len(str(info.value)) < 400
        assert warehouse.snapshot() == before

    attack()


valid_names = st.one_of(
    st.sampled_from(
        ["DROP", "select", "Table", "_", "t__dpsynth_old", "dpsynth_releases_x", "Victim2", "a" * 63]
    ),
    st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,20}", fullmatch=True),
)


def test_publishing_to_any_valid_name_changes_only_that_target(warehouse: Warehouse) -> None:
    """Names that pass the rule are quoted: publishing to ``DROP``, ``select``… creates or replaces
    exactly that table, and ``src``/``victim`` keep their rows."""
    frame = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    types: dict[str, sa.types.TypeEngine[Any]] = {"a": sa.Integer(), "b": sa.String(10)}
    names, victim, src = warehouse.snapshot()

    @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
    @given(name=valid_names)
    def publish(name: str) -> None:
        assume(name.lower() not in {n.lower() for n in names})
        publish_table_atomically(
            warehouse.engine, frame, target=name, schema=warehouse.schema, column_types=types
        )
        after_names, after_victim, after_src = warehouse.snapshot()
        assert (after_victim, after_src) == (victim, src)
        assert set(names) <= set(after_names) and name in after_names
        with warehouse.engine.begin() as conn:  # leave the scratch area as it was for the next example
            conn.execute(sa.schema.DropTable(sa.Table(name, sa.MetaData(), schema=warehouse.schema)))

    publish()
    assert warehouse.snapshot() == (names, victim, src)


def test_a_value_the_driver_cannot_convert_is_named_by_column_not_value(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Regression: a DATETIME cell the driver could not parse put the raw value into the exception
    (→ the task log) as a retryable ``ValueError``."""
    caplog.set_level(logging.DEBUG)
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'w.db'}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE events (id INTEGER, seen DATETIME)")
        conn.exec_driver_sql("INSERT INTO events VALUES (1, '2024-01-01 10:00:00'), (2, 'SSN-123-45-6789')")
    spec = TableSpec.infer_from_sqlalchemy(engine, "events")
    for query in (None, "SELECT id, seen FROM events"):
        with pytest.raises(SourceTableError) as info:
            _, chunks = iter_table_chunks(engine, spec, query=query)
            list(chunks)
        message = str(info.value)
        assert "'seen'" in message and "123-45" not in message and "SSN" not in message
        assert isinstance(info.value, NonRetryableError)
        assert info.value.__suppress_context__
    assert "123-45" not in caplog.text


def test_a_mariadb_zero_date_is_named_by_column_not_value() -> None:
    server = _reachable(MYSQL_URL)
    name = f"dpsynth_h_{uuid.uuid4().hex[:8]}"
    with server.begin() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE `{name}`")
    engine = sa.create_engine(MYSQL_URL + name)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("SET SESSION sql_mode = ''")
            conn.exec_driver_sql("CREATE TABLE events (id INT, seen DATETIME)")
            conn.exec_driver_sql(
                "INSERT INTO events VALUES (1, '2024-01-01 10:00:00'), (2, '2024-02-31 07:08:09')"
            )
        spec = TableSpec.infer_from_sqlalchemy(engine, "events")
        with pytest.raises(SourceTableError) as info:
            _, chunks = iter_table_chunks(engine, spec)
            list(chunks)
        assert "'seen'" in str(info.value) and "0000" not in str(info.value)
    finally:
        engine.dispose()
        with server.begin() as conn:
            conn.exec_driver_sql(f"DROP DATABASE `{name}`")
        server.dispose()


def test_a_password_in_a_url_query_parameter_is_not_in_the_missing_table_message() -> None:
    """Regression: a password given as ``?password=…`` was rendered where ``user:pass@`` was masked."""
    engine = _reachable(PG_URL + "?password=HUNTER2hunter2&application_name=dpsynth_test")
    try:
        with pytest.raises(SourceTableError) as info:
            reflect_table(engine, f"missing_{uuid.uuid4().hex[:8]}")
    finally:
        engine.dispose()
    assert "HUNTER2hunter2" not in str(info.value) and "missing" in str(info.value)


# -- S3 keys ---------------------------------------------------------------------------------------
key_parts = st.lists(
    st.sampled_from([*"ab9_-.%?#&= +", "%2e%2e%2f", "%3F", "?x=1", "#top", "..", "%"]),
    min_size=1,
    max_size=10,
).map("".join)


def test_s3_keys_with_query_and_percent_characters_never_alias(s3_bucket: S3Bucket) -> None:
    """On S3, ``?``/``#``/``%`` are parts of the key: two names never land on one object, and a
    store with a root refuses anything outside it."""
    root = join_uri(s3_bucket.uri, "root")
    store = ObjectStore(s3_bucket.options, root=root)
    written: dict[str, bytes] = {}

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(part=key_parts)
    def attack(part: str) -> None:
        try:
            uri = join_uri(root, "staging", part, "train.parquet")
        except ParameterError:
            assert part in (".", "..")
            return
        payload = part.encode()
        store.put_bytes(uri, payload)
        written[uri] = payload
        for known, data in written.items():
            assert store.get_bytes(known) == data

    attack()
    listed = set(store.list(join_uri(root, "staging")))
    assert listed == set(written)
    with pytest.raises(ParameterError, match="outside the object store root"):
        store.put_bytes(join_uri(s3_bucket.uri, "elsewhere.bin"), b"x")


# -- bundles with huge architectures ---------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_bundle() -> bytes:
    from synth_core.generators import create_synthesizer
    from synth_core.privacy import PrivacyBudget

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"age": rng.integers(18, 90, 400), "cat": rng.choice(["a", "b"], 400)})
    spec = TableSpec(
        "t",
        (
            ColumnSpec("age", ColumnKind.INTEGER, False, bounds=(18, 90)),
            ColumnSpec("cat", ColumnKind.CATEGORICAL, False, categories=("a", "b")),
        ),
    )
    synth = create_synthesizer("dp_tvae", epochs=1, hidden=[16])
    return synth.fit(frame, spec, PrivacyBudget(5.0, 1e-5), seed=1).to_bytes()


def _rebundle(data: bytes, change: Callable[[dict[str, Any]], None]) -> bytes:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        meta = json.loads(zf.read("bundle.json"))
        weights = zf.read("weights.pt")
    change(meta)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("bundle.json", json.dumps(meta))
        zf.writestr("weights.pt", weights)
    return buf.getvalue()


def test_huge_architecture_parameters_are_refused_before_allocating(tiny_bundle: bytes) -> None:
    """Regression: bundle architecture parameters asked for 160 GB. The model is rebuilt on the
    meta device first: parameters that do not fit the stored weights are refused, and memory
    stays flat (a 400,000-wide layer pair would be 640 GB)."""
    from synth_core.generators.base import Synthesizer

    assert Synthesizer.from_bytes(tiny_bundle).sample(5, seed=1).shape == (5, 2)
    peak_before_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    def widen(meta: dict[str, Any]) -> None:
        meta["params"]["hidden"] = [400_000, 400_000]

    def stretch(meta: dict[str, Any]) -> None:
        meta["model_config"]["data_dim"] = 10**9

    def corrupt(meta: dict[str, Any]) -> None:
        meta["model_config"] = {"data_dim": "lots"}

    for change in (widen, stretch, corrupt):
        with pytest.raises(BundleError, match="do not fit its stored weights"):
            Synthesizer.from_bytes(_rebundle(tiny_bundle, change))
    grew_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before_kib) / 1024
    assert grew_mib < 256, grew_mib


json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(10**12), 10**12),
        st.floats(allow_nan=False),
        st.text(max_size=20),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)


def test_generated_bundle_metadata_loads_or_is_refused_as_non_retryable(tiny_bundle: bytes) -> None:
    """Whatever a forged ``bundle.json`` says (generator, parameters, architecture, transformer),
    loading it gives a working model or a non-retryable error, never a crash of another kind."""
    from synth_core.generators.base import Synthesizer

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(
        key=st.sampled_from(["generator", "params", "model_config", "transformer", "privacy"]),
        path=st.lists(st.text(max_size=12), max_size=2),
        value=json_values,
    )
    def attack(key: str, path: list[str], value: Any) -> None:
        def change(meta: dict[str, Any]) -> None:
            target: Any = meta
            for step in [key, *path[:-1]]:
                if not isinstance(target, dict) or not isinstance(target.get(step), dict):
                    meta[key] = value
                    return
                target = target[step]
            if path:
                target[path[-1]] = value
            else:
                meta[key] = value

        try:
            Synthesizer.from_bytes(_rebundle(tiny_bundle, change))
        except NonRetryableError as exc:
            assert len(str(exc)) < 600
        except Exception as exc:  # pragma: no cover - the failure this test exists to catch
            pytest.fail(f"a forged bundle raised {type(exc).__name__}, not a non-retryable error")

    attack()
