"""Warehouse I/O through SQLAlchemy: catalog checks, chunked extract, atomic publish.

The source table's catalog (names, SQL types, nullability) is checked against the
:class:`~synth_core.spec.TableSpec` before any row is read. Rows are read in chunks with
dtypes fixed by the spec and the catalog (never by the data, so the schema leaks nothing).
Publishing writes a staging table and swaps it into place in one transaction, so readers see the
previous table or the new one, never a partial one.

Names and SQL are checked here too, whoever calls (:mod:`synth_core.boundary`): table, schema and
target names obey the identifier rule before any statement runs; a ``source_query`` must be one
read-only ``SELECT`` and is run in a read-only transaction (:func:`read_only_connection`); a value
the driver cannot convert is reported by column, never by value, as a non-retryable error.
"""

from __future__ import annotations

import contextlib
import io
import logging
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa

from synth_core.boundary import check_identifier, check_source_query, check_table_name, scrub_url
from synth_core.errors import ParameterError, SourceTableError, SpecError, ValidationFailedError
from synth_core.spec import ColumnKind, ColumnSpec, TableSpec, sql_type_allows

log = logging.getLogger(__name__)

DEFAULT_CHUNK_ROWS = 50_000


def split_table_name(name: str, schema: str | None = None) -> tuple[str | None, str]:
    """``"schema.table"`` → ``("schema", "table")``; an explicit ``schema`` wins."""
    if schema is None and "." in name:
        schema, name = name.split(".", 1)
    return schema, name


def checked_table_name(table: str, schema: str | None = None, what: str = "table") -> tuple[str | None, str]:
    """:func:`split_table_name` after checking every part against the identifier rule
    (:func:`~synth_core.boundary.check_identifier`); :class:`ParameterError` naming ``what``."""
    check_table_name(table, what)
    schema, name = split_table_name(table, schema)
    if schema is not None:
        check_identifier(schema, f"schema of {what}")
    check_identifier(name, what)  # with an explicit schema, a dotted table name is not split
    return schema, name


def warehouse_label(engine: sa.engine.Engine) -> str:
    """The warehouse URL for messages and artefacts: password and secret query parameters masked
    (:func:`~synth_core.boundary.scrub_url`)."""
    return scrub_url(engine.url.render_as_string(hide_password=True))


def reflect_table(engine: sa.engine.Engine, table: str, *, schema: str | None = None) -> sa.Table:
    """The catalog entry of ``table``; :class:`SourceTableError` naming it when it does not exist."""
    schema, name = checked_table_name(table, schema)
    if not sa.inspect(engine).has_table(name, schema=schema):
        where = f"{schema}.{name}" if schema else name
        raise SourceTableError(f"table {where!r} does not exist in warehouse {warehouse_label(engine)!r}")
    return sa.Table(name, sa.MetaData(), autoload_with=engine, schema=schema)


def check_catalog_against_spec(sa_table: sa.Table, spec: TableSpec) -> None:
    """Every table column is in the spec (and vice versa) with a SQL type the spec's kind allows."""
    table_cols = {c.name: c for c in sa_table.columns}
    missing = [c.name for c in spec.columns if c.name not in table_cols]
    if missing:
        raise SourceTableError(f"table {spec.name!r}: spec columns {missing} are not in the table")
    undeclared = [n for n in table_cols if n not in {c.name for c in spec.columns}]
    if undeclared:
        raise SpecError(
            f"table {spec.name!r}: columns {undeclared} are not in the spec (declare them, with kind 'drop' to leave them out)"
        )
    for cspec in spec.columns:
        sql_type = table_cols[cspec.name].type
        if not sql_type_allows(cspec.kind, sql_type):
            raise SourceTableError(
                f"table {spec.name!r}, column {cspec.name!r}: the spec declares {cspec.kind.value}, "
                f"which a {sql_type!s} column cannot hold"
            )


def pandas_dtype_for(cspec: ColumnSpec, sql_type: sa.types.TypeEngine[Any]) -> str:
    """The pandas dtype a column is read as: decided by spec and catalog, never by the data."""
    nullable = cspec.nullable
    is_int_sql = isinstance(sql_type, sa.Integer) and not isinstance(sql_type, sa.Boolean)
    if cspec.kind == ColumnKind.INTEGER:
        return "Int64" if nullable else "int64"
    if cspec.kind == ColumnKind.NUMERIC:
        return "float64"
    if cspec.kind == ColumnKind.BOOLEAN:
        return "boolean" if nullable else "bool"
    if cspec.kind == ColumnKind.DATETIME:
        tz = isinstance(sql_type, sa.DateTime) and bool(getattr(sql_type, "timezone", False))
        return "datetime64[us, UTC]" if tz else "datetime64[us]"
    if cspec.kind in (ColumnKind.CATEGORICAL, ColumnKind.ID):
        if is_int_sql:
            return "Int64" if nullable else "int64"
        if isinstance(sql_type, sa.Boolean):
            return "boolean" if nullable else "bool"
        return "str"
    return "str"


def source_dtypes(sa_table: sa.Table, spec: TableSpec) -> dict[str, str]:
    """``{column: pandas dtype}`` for the extracted columns (all but ``drop``), in table order."""
    cols = {c.name: c for c in sa_table.columns}
    return {c.name: pandas_dtype_for(c, cols[c.name].type) for c in spec.output_columns}


def coerce_frame(frame: pd.DataFrame, dtypes: dict[str, str], spec: TableSpec) -> pd.DataFrame:
    """Cast a raw chunk to ``dtypes``; a value that does not fit raises naming the column, not the value."""
    out = {}
    for name, dtype in dtypes.items():
        raw = frame[name]
        try:
            out[name] = _coerce_series(raw, dtype)
        except (ValueError, TypeError, OverflowError):
            raise SourceTableError(
                f"table {spec.name!r}, column {name!r}: values do not fit the spec's kind "
                f"{spec.column(name).kind.value} (expected {dtype}; the values are not shown)"
            ) from None
    return pd.DataFrame(out, columns=list(dtypes))


def _coerce_series(raw: pd.Series, dtype: str) -> pd.Series:
    if dtype.startswith("datetime64"):
        if isinstance(raw.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_any_dtype(raw):
            ts = raw
        else:
            ts = pd.to_datetime(raw, errors="raise", utc="UTC" in dtype, format="mixed")
        if "UTC" in dtype:
            ts = ts.dt.tz_localize("UTC") if getattr(ts.dt, "tz", None) is None else ts.dt.tz_convert("UTC")
        return ts.astype(dtype)
    if dtype in ("bool", "boolean"):
        if pd.api.types.is_bool_dtype(raw):
            return raw.astype(dtype)
        numeric = pd.to_numeric(raw, errors="raise")
        if not numeric.dropna().isin([0, 1]).all():
            raise ValueError("not boolean")
        return numeric.astype("boolean").astype(dtype)
    if dtype in ("int64", "Int64"):
        numeric = pd.to_numeric(raw, errors="raise")
        present = numeric.dropna()
        if len(present) and not (present == present.round()).all():
            raise ValueError("not integral")
        return numeric.astype("Float64").astype(dtype) if dtype == "Int64" else numeric.astype(dtype)
    if dtype == "float64":
        return pd.to_numeric(raw, errors="raise").astype("float64")
    if dtype == "str":
        return raw.astype("str").where(raw.notna(), other=None).astype("str")
    return raw.astype(dtype)


def iter_table_chunks(
    engine: sa.engine.Engine,
    spec: TableSpec,
    *,
    schema: str | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    query: str | None = None,
) -> tuple[dict[str, str], Iterator[pd.DataFrame]]:
    """Check the catalog, then stream the table as DataFrames of at most ``chunk_rows`` rows.

    With ``query`` (a SQL ``SELECT``), its result set is read instead of the table ``spec.name``;
    its column types come from the catalog where the warehouse says them (PostgreSQL: result type
    OIDs; SQLite: a temporary view; MySQL: protocol field types), else from the spec's kinds. The
    query must be one read-only ``SELECT`` (:func:`~synth_core.boundary.check_source_query`).

    Rows are read in a read-only transaction (:func:`read_only_connection`). A value the driver
    cannot convert raises :class:`SourceTableError` naming the column, never the value.

    Returns ``(dtypes, chunks)``; dtypes are decided before reading (see :func:`pandas_dtype_for`).
    """
    statement: sa.Select[Any]
    if query is None:
        sa_table = reflect_table(engine, spec.name, schema=schema)
        check_catalog_against_spec(sa_table, spec)
        dtypes = source_dtypes(sa_table, spec)
        statement = sa.select(*[sa_table.c[name] for name in dtypes])
    else:
        query = check_source_query(query, engine.dialect.name)
        sa_table = query_columns(engine, query, spec)
        check_catalog_against_spec(sa_table, spec)
        dtypes = source_dtypes(sa_table, spec)
        inner = (
            sa.text(query).columns(*[sa.column(c.name) for c in sa_table.columns]).subquery("dpsynth_source")
        )
        statement = sa.select(*[inner.c[name] for name in dtypes])
        if engine.dialect.name == "postgresql":
            # a bound parameter makes psycopg use the extended protocol, which runs one statement only
            statement = statement.where(sa.bindparam("dpsynth_one_statement", True, type_=sa.Boolean()))

    converted = _columns_converted_by_driver(engine, statement) or list(dtypes)

    def chunks() -> Iterator[pd.DataFrame]:
        with read_only_connection(engine) as conn:
            with _conversion_errors(spec, converted):
                result = conn.execution_options(stream_results=True, yield_per=chunk_rows).execute(statement)
                keys = list(result.keys())
                parts = result.partitions(chunk_rows)
            while True:
                with _conversion_errors(spec, converted):
                    part = next(parts, None)
                if part is None:
                    return
                raw = pd.DataFrame.from_records([tuple(r) for r in part], columns=keys)
                yield coerce_frame(raw, dtypes, spec)

    return dtypes, chunks()


@contextlib.contextmanager
def read_only_connection(engine: sa.engine.Engine) -> Iterator[sa.Connection]:
    """A connection whose statements cannot write, rolled back on exit.

    PostgreSQL: ``SET TRANSACTION READ ONLY`` first in the transaction (on an AUTOCOMMIT engine,
    where that would do nothing, the session's ``default_transaction_read_only`` instead, reset on
    exit); MySQL/MariaDB: ``START TRANSACTION READ ONLY`` (no DML; the drivers also run one
    statement per call); SQLite: ``PRAGMA query_only`` (switched off again on exit). A connection
    that cannot be reset is discarded, never returned to the pool read-only. Other warehouses: a
    transaction rolled back.
    """
    dialect = engine.dialect.name
    session_read_only = False
    with engine.connect() as conn:
        if dialect == "postgresql":
            conn.exec_driver_sql("SET TRANSACTION READ ONLY")
            if conn.exec_driver_sql("SHOW transaction_read_only").scalar() != "on":  # autocommit
                conn.exec_driver_sql("SET SESSION default_transaction_read_only = on")
                session_read_only = True
        elif dialect in ("mysql", "mariadb"):
            conn.exec_driver_sql("START TRANSACTION READ ONLY")
        elif dialect == "sqlite":
            conn.exec_driver_sql("PRAGMA query_only = ON")
        try:
            yield conn
        finally:
            try:
                conn.rollback()
                if dialect == "sqlite":
                    conn.exec_driver_sql("PRAGMA query_only = OFF")
                    conn.rollback()
                if session_read_only:
                    conn.exec_driver_sql("RESET default_transaction_read_only")
                    conn.rollback()
            except Exception:  # a broken connection must not go back to the pool read-only
                conn.invalidate()


@contextlib.contextmanager
def _conversion_errors(spec: TableSpec, columns: list[str]) -> Iterator[None]:
    """Re-raise a driver's conversion failure (its text may quote the cell) as a
    :class:`SourceTableError` naming the ``columns`` it can come from, never the value."""
    try:
        yield
    except (ValueError, TypeError, OverflowError, ArithmeticError, sa.exc.StatementError) as exc:
        if isinstance(exc, sa.exc.DBAPIError) and not _is_data_error(exc):
            raise _warehouse_error(spec, exc) from None
        raise SourceTableError(
            f"table {spec.name!r}: the warehouse driver could not convert a value of column(s) {columns} "
            f"({type(getattr(exc, 'orig', exc)).__name__}; the value is not shown): fix the data or "
            "declare the column with another kind"
        ) from None


def _is_data_error(exc: sa.exc.DBAPIError) -> bool:
    return isinstance(exc, sa.exc.DataError) or isinstance(exc.orig, ValueError | TypeError | OverflowError)


def _warehouse_error(spec: TableSpec, exc: sa.exc.DBAPIError) -> BaseException:
    """A database failure while reading: its class only (the driver's text may quote a cell)."""
    if isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError | sa.exc.InternalError):
        return exc  # the warehouse or the connection failed: retryable as it is
    return SourceTableError(
        f"table {spec.name!r}: the warehouse refused the read ({type(exc.orig).__name__}); "
        "the driver's message is not shown because it may quote a value"
    )


def _columns_converted_by_driver(engine: sa.engine.Engine, statement: sa.Select[Any]) -> list[str]:
    """The selected columns whose values SQLAlchemy converts after the driver (a result processor:
    SQLite datetimes, decimals, booleans), where a conversion failure can come from."""
    out = []
    for column in statement.selected_columns:
        impl = column.type.dialect_impl(engine.dialect)
        try:
            converts = impl.result_processor(engine.dialect, None) is not None
        except Exception:  # some processors need the driver's type code to say: assume it converts
            converts = True
        if converts:
            out.append(str(column.name))
    return out


def query_columns(engine: sa.engine.Engine, query: str, spec: TableSpec) -> sa.Table:
    """The result columns of ``query`` as a (detached) ``Table``: names and, where the warehouse
    can say, catalog types (PostgreSQL: the result's type OIDs; SQLite: a temporary view; MySQL:
    protocol field types); else untyped (NullType).

    ``query`` must be one read-only ``SELECT`` (:func:`~synth_core.boundary.check_source_query`,
    :class:`ParameterError` otherwise); it runs in a read-only transaction (SQLite: the temporary
    view is made in a transaction rolled back, and pysqlite runs one statement per call)."""
    from synth_core.errors import SourceTableError

    query = check_source_query(query, engine.dialect.name)
    name = f"dpsynth_query_{uuid.uuid4().hex[:8]}"
    try:
        if engine.dialect.name == "sqlite":
            with _sqlite_transaction(engine) as conn:
                conn.exec_driver_sql(f"CREATE TEMPORARY VIEW {name} AS {query}")
                columns = sa.inspect(conn).get_columns(name)
                conn.exec_driver_sql(f"DROP VIEW {name}")
            return sa.Table(
                spec.name,
                sa.MetaData(),
                *[sa.Column(c["name"], c["type"], nullable=c["nullable"]) for c in columns],
            )
        with read_only_connection(engine) as conn:
            probe = sa.text(f"SELECT * FROM ({query}) dpsynth_q WHERE 1 = :dpsynth_zero").bindparams(
                dpsynth_zero=0
            )
            result = conn.execute(probe)
            description = list(result.cursor.description or []) if result.cursor is not None else []
            if engine.dialect.name == "postgresql":
                return sa.Table(spec.name, sa.MetaData(), *_postgres_result_columns(conn, description))
    except sa.exc.DBAPIError as exc:
        raise SourceTableError(
            f"the source query of table {spec.name!r} failed in the warehouse ({exc.orig.__class__.__name__})"
        ) from None
    mysql = engine.dialect.name in ("mysql", "mariadb")

    def sql_type(type_code: Any) -> sa.types.TypeEngine[Any]:
        known = _MYSQL_FIELD_TYPES.get(int(type_code)) if mysql and isinstance(type_code, int) else None
        return known() if known is not None else sa.types.NullType()

    return sa.Table(spec.name, sa.MetaData(), *[sa.Column(d[0], sql_type(d[1])) for d in description])


#: MySQL protocol field types (``cursor.description`` type codes) → SQLAlchemy types
_MYSQL_FIELD_TYPES: dict[int, type[sa.types.TypeEngine[Any]]] = {
    1: sa.SmallInteger, 2: sa.SmallInteger, 3: sa.Integer, 8: sa.BigInteger, 9: sa.Integer, 13: sa.SmallInteger,
    4: sa.Float, 5: sa.Float, 0: sa.Numeric, 246: sa.Numeric,
    10: sa.Date, 7: sa.DateTime, 12: sa.DateTime,
    15: sa.String, 253: sa.String, 254: sa.String, 252: sa.Text,
}  # fmt: skip


def _postgres_result_columns(conn: sa.Connection, description: list[Any]) -> list[sa.Column[Any]]:
    """Columns of a PostgreSQL result: its type OIDs named by ``format_type`` and mapped by the
    dialect's type names (unknown types: NullType, checked when read)."""
    oids = sorted({int(d[1]) for d in description})
    rows = conn.execute(
        sa.text("SELECT oid, format_type(oid, NULL) FROM pg_type WHERE oid = ANY(:oids)"), {"oids": oids}
    )
    names = {int(row[0]): str(row[1]) for row in rows}
    known: Mapping[str, Any] = getattr(conn.dialect, "ischema_names", {})
    columns: list[sa.Column[Any]] = []
    for d in description:
        type_name = str(names.get(int(d[1]), ""))
        tz = type_name.endswith("with time zone")
        base = type_name.replace(" with time zone", "").replace(" without time zone", "")
        cls = known.get(type_name) or known.get(base)
        sql_type: sa.types.TypeEngine[Any] = sa.types.NullType()
        if cls is not None:
            sql_type = cls(timezone=True) if tz and base in ("timestamp", "time") else cls()
        columns.append(sa.Column(d[0], sql_type))
    return columns


def column_types_for_spec(spec: TableSpec, dtypes: Mapping[str, str]) -> dict[str, sa.types.TypeEngine[Any]]:
    """Generic SQL types for publishing a table that has no source table to copy types from
    (a query source): one per output column, from its kind and extracted dtype."""
    out: dict[str, sa.types.TypeEngine[Any]] = {}
    for c in spec.output_columns:
        dtype = dtypes[c.name]
        if dtype in ("int64", "Int64"):
            out[c.name] = sa.BigInteger()
        elif dtype == "float64":
            out[c.name] = sa.Float()
        elif dtype in ("bool", "boolean"):
            out[c.name] = sa.Boolean()
        elif dtype.startswith("datetime64"):
            out[c.name] = sa.Date() if c.resolution == "day" else sa.DateTime(timezone="UTC" in dtype)
        else:
            out[c.name] = sa.Text()
    return out


def read_table(engine: sa.engine.Engine, spec: TableSpec, *, schema: str | None = None) -> pd.DataFrame:
    """The whole table as one DataFrame (see :func:`iter_table_chunks`)."""
    dtypes, chunks = iter_table_chunks(engine, spec, schema=schema)
    parts = list(chunks)
    if not parts:
        return pd.DataFrame({n: pd.Series([], dtype=d) for n, d in dtypes.items()})
    return pd.concat(parts, ignore_index=True)


def count_rows(engine: sa.engine.Engine, table: str, *, schema: str | None = None) -> int:
    sa_table = reflect_table(engine, table, schema=schema)
    with read_only_connection(engine) as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(sa_table)).scalar_one())


def _quote(engine: sa.engine.Engine, name: str) -> str:
    return engine.dialect.identifier_preparer.quote(name)


@dataclass(frozen=True)
class TableComments:
    """Warehouse comments of a published table: one for the table, one per column."""

    table: str
    columns: dict[str, str] = field(default_factory=dict)


def lineage_dataset(engine: sa.engine.Engine, table: str, *, schema: str | None = None) -> tuple[str, str]:
    """``(namespace, name)`` of a warehouse table in OpenLineage's naming (e.g.
    ``("postgres://host:5432", "db.schema.table")``)."""
    url = engine.url
    schema, table = split_table_name(table, schema)
    backend = url.get_backend_name()
    if backend == "postgresql":
        return (
            f"postgres://{url.host or 'localhost'}:{url.port or 5432}",
            f"{url.database}.{schema or 'public'}.{table}",
        )
    if backend in ("mysql", "mariadb"):
        return f"mysql://{url.host or 'localhost'}:{url.port or 3306}", f"{schema or url.database}.{table}"
    if backend == "sqlite":
        return f"sqlite://{Path(url.database or '').resolve()}", f"main.{table}"
    return f"{backend}://{url.host or ''}", ".".join(p for p in (url.database, schema, table) if p)


def asset_uri(engine: sa.engine.Engine, table: str, *, schema: str | None = None) -> str:
    """The Airflow Asset URI of a warehouse table, in the scheme astronomer-cosmos uses for dbt
    sources on Airflow 3: the OpenLineage namespace, then the dotted name as a path."""
    namespace, name = lineage_dataset(engine, table, schema=schema)
    return f"{namespace}/{name.replace('.', '/')}"


@dataclass(frozen=True)
class StagedChunk:
    """Rows already loaded into a warehouse table of their own (a sampled shard's staging-table
    chunk, see :func:`stage_rows`), to be moved into a published table with the others."""

    table: str
    rows: int
    schema: str | None = None


@dataclass(frozen=True)
class _StagedParts:
    """What a publish fills its staging table from when the rows are already in staged chunk tables
    (moved inside the warehouse, then dropped with the swap) rather than in frames."""

    chunks: list[StagedChunk]


#: a publish's rows: frames to load, or staged chunk tables to move
_Parts = Iterable[pd.DataFrame] | _StagedParts


def stage_rows(
    engine: sa.engine.Engine,
    chunks: Iterable[pd.DataFrame],
    *,
    table: str,
    column_types: dict[str, sa.types.TypeEngine[Any]],
    nullable: dict[str, bool] | None = None,
    schema: str | None = None,
) -> StagedChunk:
    """Load ``chunks`` into a fresh table ``table`` (one left by an earlier try of the same task is
    replaced) and commit: a shard's staging-table chunk, loaded in parallel with the other shards'.
    :func:`publish_table_atomically` with ``staged=`` later moves every chunk into the target in
    its one swap, inside the warehouse (``INSERT … SELECT``), and drops the chunks."""
    check_identifier(table, "staged chunk table")
    if schema is not None:
        check_identifier(schema, "schema of the staged chunk table")
    for column in column_types:
        check_identifier(column, f"column of staged chunk table {table!r}")
    if schema is not None and engine.dialect.name == "sqlite":
        raise ParameterError(f"SQLite warehouses have no schemas: stage {table!r} without a schema")
    staging = _staging_table(table, column_types, nullable or {}, schema, None)
    with engine.begin() as conn:
        if schema is not None and engine.dialect.name == "postgresql":
            conn.exec_driver_sql(f"CREATE SCHEMA IF NOT EXISTS {_quote(engine, schema)}")
        staging.drop(conn, checkfirst=True)
    if engine.dialect.name in ("mysql", "mariadb"):  # DDL commits implicitly: fill in batches
        staging.create(engine)
        rows = 0
        for frame in chunks:
            with engine.begin() as conn:
                rows += _fill(conn, engine, [frame], staging)
        return StagedChunk(table, rows, schema)
    transaction = _sqlite_transaction(engine) if engine.dialect.name == "sqlite" else engine.begin()
    with transaction as conn:
        staging.create(conn)
        rows = _fill(conn, engine, chunks, staging)
    return StagedChunk(table, rows, schema)


def publish_table_atomically(
    engine: sa.engine.Engine,
    chunks: pd.DataFrame | Iterable[pd.DataFrame] | None,
    *,
    target: str,
    column_types: dict[str, sa.types.TypeEngine[Any]],
    nullable: dict[str, bool] | None = None,
    schema: str | None = None,
    comments: TableComments | None = None,
    release: Mapping[str, Any] | None = None,
    expected_rows: int | None = None,
    staged: list[StagedChunk] | None = None,
) -> int:
    """Replace ``target`` with the rows of ``chunks`` (or of the ``staged`` chunk tables) so that
    readers never see a partial table.

    Rows go to a fresh staging table (created with the source's column types and the given
    comments), which then takes the target's place:

    * PostgreSQL: one transaction for everything — staging table, ``COPY … FROM STDIN`` (CSV written
      by Arrow), ``DROP`` + ``RENAME``. If views depend on the target, its rows are replaced instead
      (``DELETE`` + ``INSERT … SELECT``, same transaction), so dependent dbt views survive. A dead
      connection at any point rolls everything back: the previous table is untouched.
    * SQLite (and other transactional-DDL warehouses): the same, with batched inserts.
    * MySQL/MariaDB (DDL commits implicitly): staging table filled first, then one atomic
      ``RENAME TABLE target TO old, staging TO target``; a failure before it drops the staging table.

    ``release`` (keys of :func:`releases_table`'s columns) is appended to ``dpsynth_releases`` in the
    target schema in the swap's transaction (MySQL: right after the rename), so "which release is
    live, and since when" is a query away (dbt freshness uses it).

    ``expected_rows``: when given, a different number of rows aborts the publish before the swap.

    ``staged``: instead of ``chunks``, tables loaded by :func:`stage_rows` (e.g. one per sampled
    shard, in parallel). Their rows are moved into the staging table inside the warehouse
    (``INSERT … SELECT``; each chunk must hold its recorded row count), and the chunk tables are
    dropped with the swap (same transaction; MySQL: right after the rename).

    Returns the number of rows published.

    Raises:
        ParameterError: the target, its schema or a column name breaks the identifier rule
            (checked before any statement runs).
    """
    schema, target = checked_table_name(target, schema, "target table")
    for column in column_types:
        check_identifier(column, f"column of target table {target!r}")
    for chunk in staged or ():
        checked_table_name(chunk.table, chunk.schema, "staged chunk table")
    if schema is not None and engine.dialect.name == "sqlite":
        raise ParameterError(f"SQLite warehouses have no schemas: publish {target!r} without target_schema")
    if (chunks is None) == (staged is None):
        raise ParameterError("publish either chunks of rows or staged chunk tables, not both or neither")
    parts: _Parts
    if staged is not None:
        parts = _StagedParts(list(staged))
        total = sum(c.rows for c in parts.chunks)
        if expected_rows is not None and total != expected_rows:
            raise ValidationFailedError(
                f"table {target!r}: the staged chunks hold {total} rows but {expected_rows} were validated; "
                "nothing was published"
            )
    else:
        assert chunks is not None
        parts = _counted([chunks] if isinstance(chunks, pd.DataFrame) else chunks, expected_rows, target)
    staging_name = _helper_table_name(target, "")
    staging = _staging_table(staging_name, column_types, nullable or {}, schema, comments)
    if engine.dialect.name == "postgresql":
        return _publish_postgres(engine, parts, staging, target, schema, comments, release)
    if engine.dialect.name in ("mysql", "mariadb"):
        return _publish_mysql(engine, parts, staging, target, schema, release)
    return _publish_transactional(engine, parts, staging, target, schema, release)


def _helper_table_name(target: str, tag: str) -> str:
    """A fresh name for a publish's staging (or displaced) table: the target's first 36 characters,
    so the name stays within every warehouse's identifier limit (PostgreSQL silently truncates
    past 63 bytes, which would turn a long target's staging table into the target itself)."""
    return f"{target[:36]}__dpsynth_{tag}{uuid.uuid4().hex[:8]}"


def _counted(parts: Iterable[pd.DataFrame], expected: int | None, target: str) -> Iterator[pd.DataFrame]:
    """Pass chunks through; once exhausted (always before the swap), check the row count."""
    rows = 0
    for frame in parts:
        rows += len(frame)
        yield frame
    if expected is not None and rows != expected:
        raise ValidationFailedError(
            f"table {target!r}: {rows} rows to publish but {expected} were validated; nothing was published"
        )


RELEASES_TABLE = "dpsynth_releases"


def releases_table(schema: str | None = None) -> sa.Table:
    """The release log kept beside published tables: one row per publish."""
    return sa.Table(
        RELEASES_TABLE,
        sa.MetaData(),
        sa.Column("synthetic_table", sa.String(512), nullable=False),
        sa.Column("source_table", sa.String(512), nullable=False),
        sa.Column("run_id", sa.String(512), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("row_count", sa.BigInteger, nullable=False),
        sa.Column("epsilon", sa.Float, nullable=False),
        sa.Column("delta", sa.Float, nullable=False),
        sa.Column("generator", sa.String(128), nullable=False),
        sa.Column("manifest_uri", sa.Text, nullable=True),
        schema=schema,
        comment="dpsynth: one row per published synthetic table release",
    )


def _record_release(conn: sa.Connection, schema: str | None, release: Mapping[str, Any] | None) -> None:
    if release is None:
        return
    table = releases_table(schema)
    table.create(conn, checkfirst=True)
    conn.execute(table.insert(), [dict(release)])


def _staging_table(
    name: str,
    column_types: dict[str, sa.types.TypeEngine[Any]],
    nullable: dict[str, bool],
    schema: str | None,
    comments: TableComments | None,
) -> sa.Table:
    col_comments = comments.columns if comments else {}
    return sa.Table(
        name,
        sa.MetaData(),
        *[
            sa.Column(col, typ, nullable=nullable.get(col, True), comment=col_comments.get(col))
            for col, typ in column_types.items()
        ],
        schema=schema,
        comment=comments.table if comments else None,
    )


def _check_columns(frame: pd.DataFrame, staging: sa.Table) -> None:
    expected = [c.name for c in staging.columns]
    if list(frame.columns) != expected:
        raise SpecError(f"the synthetic rows have columns {list(frame.columns)}, the table needs {expected}")


def _fill(
    conn: sa.Connection,
    engine: sa.engine.Engine,
    parts: _Parts,
    staging: sa.Table,
) -> int:
    """Fill the (created) ``staging`` table from frames or from staged chunk tables; the rows."""
    if isinstance(parts, _StagedParts):
        return _fill_from_chunks(conn, engine, parts.chunks, staging)
    if engine.dialect.name == "postgresql":
        return _copy_frames(conn, engine, parts, staging)
    rows = 0
    for frame in parts:
        _check_columns(frame, staging)
        if len(frame):
            conn.execute(staging.insert(), _records(frame))
        rows += len(frame)
    return rows


def _copy_frames(
    conn: sa.Connection, engine: sa.engine.Engine, parts: Iterable[pd.DataFrame], staging: sa.Table
) -> int:
    """PostgreSQL: ``COPY … FROM STDIN`` of each frame as CSV written by Arrow."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    q = _qualifier(engine, staging.schema)
    cols = ", ".join(_quote(engine, c.name) for c in staging.columns)
    copy_sql = f"COPY {q(staging.name)} ({cols}) FROM STDIN (FORMAT CSV)"
    dbapi = conn.connection.dbapi_connection
    assert dbapi is not None
    cursor = dbapi.cursor()
    rows = 0
    for frame in parts:
        _check_columns(frame, staging)
        buf = io.BytesIO()
        # Arrow writes NULL as an unquoted empty field and "" quoted, which is COPY CSV's rule
        pacsv.write_csv(
            pa.Table.from_pandas(frame, preserve_index=False), buf, pacsv.WriteOptions(include_header=False)
        )
        buf.seek(0)
        if engine.dialect.driver == "psycopg":
            with cursor.copy(copy_sql) as copy:
                copy.write(buf.getbuffer())
        else:  # psycopg2
            cursor.copy_expert(copy_sql, buf)
        rows += len(frame)
    return rows


def _fill_from_chunks(
    conn: sa.Connection, engine: sa.engine.Engine, chunks: list[StagedChunk], staging: sa.Table
) -> int:
    """``INSERT … SELECT`` each staged chunk table into ``staging``; a chunk holding another row
    count than recorded (lost or loaded twice) aborts before the swap."""
    from synth_core.errors import ShardError

    into = _qualifier(engine, staging.schema)(staging.name)
    cols = ", ".join(_quote(engine, c.name) for c in staging.columns)
    rows = 0
    for chunk in chunks:
        if not sa.inspect(conn).has_table(chunk.table, schema=chunk.schema):
            raise ShardError(f"staged chunk {chunk.table!r} cannot be read: the table is missing")
        source = _qualifier(engine, chunk.schema)(chunk.table)
        moved = conn.exec_driver_sql(f"INSERT INTO {into} ({cols}) SELECT {cols} FROM {source}").rowcount
        if moved != chunk.rows:
            raise ShardError(
                f"staged chunk {chunk.table!r} holds {moved} rows, its shard recorded {chunk.rows}; nothing was published"
            )
        rows += moved
    return rows


def _drop_chunks(conn: sa.Connection, engine: sa.engine.Engine, parts: _Parts) -> None:
    if isinstance(parts, _StagedParts):
        for chunk in parts.chunks:
            conn.exec_driver_sql(f"DROP TABLE {_qualifier(engine, chunk.schema)(chunk.table)}")


def _publish_postgres(
    engine: sa.engine.Engine,
    parts: _Parts,
    staging: sa.Table,
    target: str,
    schema: str | None,
    comments: TableComments | None,
    release: Mapping[str, Any] | None,
) -> int:
    q = _qualifier(engine, schema)
    cols = ", ".join(_quote(engine, c.name) for c in staging.columns)
    with engine.begin() as conn:
        if schema is not None:
            conn.exec_driver_sql(f"CREATE SCHEMA IF NOT EXISTS {_quote(engine, schema)}")
        staging.create(conn)
        rows = _fill(conn, engine, parts, staging)
        _drop_chunks(conn, engine, parts)
        exists = sa.inspect(conn).has_table(target, schema=schema)
        if exists:
            savepoint = conn.begin_nested()
            try:
                conn.exec_driver_sql(f"DROP TABLE {q(target)}")
            except sa.exc.DBAPIError as exc:
                if (
                    getattr(exc.orig, "sqlstate", None) != "2BP01"
                    and getattr(exc.orig, "pgcode", None) != "2BP01"
                ):
                    raise
                # views depend on the target: keep the table, replace its rows in this transaction
                savepoint.rollback()
                conn.exec_driver_sql(f"DELETE FROM {q(target)}")
                conn.exec_driver_sql(f"INSERT INTO {q(target)} ({cols}) SELECT {cols} FROM {q(staging.name)}")
                conn.exec_driver_sql(f"DROP TABLE {q(staging.name)}")
                if comments is not None:  # the kept table gets this release's comments
                    kept = staging.to_metadata(sa.MetaData(), name=target)
                    conn.execute(sa.schema.SetTableComment(kept))
                    for column in kept.columns:
                        if column.comment is not None:
                            conn.execute(sa.schema.SetColumnComment(column))
                _record_release(conn, schema, release)
                return rows
            savepoint.commit()
        conn.exec_driver_sql(f"ALTER TABLE {q(staging.name)} RENAME TO {_quote(engine, target)}")
        _record_release(conn, schema, release)
    return rows


def _publish_transactional(
    engine: sa.engine.Engine,
    parts: _Parts,
    staging: sa.Table,
    target: str,
    schema: str | None,
    release: Mapping[str, Any] | None,
) -> int:
    transaction = _sqlite_transaction(engine) if engine.dialect.name == "sqlite" else engine.begin()
    with transaction as conn:
        rows = _fill_and_swap(conn, engine, parts, staging, target, schema)
        _drop_chunks(conn, engine, parts)
        _record_release(conn, schema, release)
        return rows


def _fill_and_swap(
    conn: sa.Connection,
    engine: sa.engine.Engine,
    parts: _Parts,
    staging: sa.Table,
    target: str,
    schema: str | None,
) -> int:
    q = _qualifier(engine, schema)
    staging.create(conn)
    rows = _fill(conn, engine, parts, staging)
    if sa.inspect(conn).has_table(target, schema=schema):
        conn.exec_driver_sql(f"DROP TABLE {q(target)}")
    conn.exec_driver_sql(f"ALTER TABLE {q(staging.name)} RENAME TO {_quote(engine, target)}")
    return rows


@contextlib.contextmanager
def _sqlite_transaction(engine: sa.engine.Engine) -> Iterator[sa.Connection]:
    """A real SQLite transaction around DDL too: pysqlite only opens transactions before DML, so
    a failed publish would otherwise leave its staging table behind."""
    with engine.connect() as conn:
        raw: Any = conn.connection.dbapi_connection
        previous = raw.isolation_level
        raw.isolation_level = None
        try:
            conn.exec_driver_sql("BEGIN")
            try:
                yield conn
            except BaseException:
                conn.exec_driver_sql("ROLLBACK")
                raise
            conn.exec_driver_sql("COMMIT")
        finally:
            raw.isolation_level = previous


def _publish_mysql(
    engine: sa.engine.Engine,
    parts: _Parts,
    staging: sa.Table,
    target: str,
    schema: str | None,
    release: Mapping[str, Any] | None,
) -> int:
    q = _qualifier(engine, schema)
    rows = 0
    staging.create(engine)
    try:
        if isinstance(parts, _StagedParts):
            with engine.begin() as conn:
                rows = _fill(conn, engine, parts, staging)
        else:
            for frame in parts:
                with engine.begin() as conn:
                    rows += _fill(conn, engine, [frame], staging)
        old = _helper_table_name(target, "old_")
        with engine.begin() as conn:
            if sa.inspect(conn).has_table(target, schema=schema):
                conn.exec_driver_sql(
                    f"RENAME TABLE {q(target)} TO {q(old)}, {q(staging.name)} TO {q(target)}"
                )
                conn.exec_driver_sql(f"DROP TABLE {q(old)}")
            else:
                conn.exec_driver_sql(f"RENAME TABLE {q(staging.name)} TO {q(target)}")
            _record_release(conn, schema, release)
        with engine.begin() as conn:  # the target is live; the chunk tables are leftovers now
            _drop_chunks(conn, engine, parts)
    except BaseException:
        try:
            staging.drop(engine, checkfirst=True)
        except Exception:  # the warehouse may be gone; a leftover staging table is harmless
            log.warning("could not drop staging table %s after a failed publish", staging.name)
        raise
    return rows


def _qualifier(engine: sa.engine.Engine, schema: str | None) -> Callable[[str], str]:
    prefix = f"{_quote(engine, schema)}." if schema else ""
    return lambda name: prefix + _quote(engine, name)


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as dicts of plain Python values (NULL for NA), ready for executemany."""
    cols: dict[str, list[Any]] = {}
    for name in frame.columns:
        s = frame[name]
        if pd.api.types.is_datetime64_any_dtype(s):
            vals = [None if pd.isna(v) else v.to_pydatetime() for v in s]
        else:
            vals = [None if pd.isna(v) else (v.item() if hasattr(v, "item") else v) for v in s.astype(object)]
        cols[name] = vals
    names = list(frame.columns)
    return [dict(zip(names, row, strict=True)) for row in zip(*(cols[n] for n in names), strict=True)]
