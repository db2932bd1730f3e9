"""Warehouse I/O through SQLAlchemy: catalog checks, chunked extract, atomic publish.

The source table's catalog (names, SQL types, nullability) is checked against the
:class:`~synth_core.spec.TableSpec` before any row is read. Rows are read in chunks with
dtypes fixed by the spec and the catalog (never by the data, so the schema leaks nothing).
Publishing writes a staging table and swaps it into place in one transaction, so readers see the
previous table or the new one, never a partial one.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from typing import Any

import pandas as pd
import sqlalchemy as sa

from synth_core.errors import SourceTableError, SpecError
from synth_core.spec import ColumnKind, ColumnSpec, TableSpec, sql_type_allows

log = logging.getLogger(__name__)

DEFAULT_CHUNK_ROWS = 50_000


def split_table_name(name: str, schema: str | None = None) -> tuple[str | None, str]:
    """``"schema.table"`` → ``("schema", "table")``; an explicit ``schema`` wins."""
    if schema is None and "." in name:
        schema, name = name.split(".", 1)
    return schema, name


def reflect_table(engine: sa.engine.Engine, table: str, *, schema: str | None = None) -> sa.Table:
    """The catalog entry of ``table``; :class:`SourceTableError` naming it when it does not exist."""
    schema, name = split_table_name(table, schema)
    if not sa.inspect(engine).has_table(name, schema=schema):
        where = f"{schema}.{name}" if schema else name
        raise SourceTableError(
            f"table {where!r} does not exist in warehouse {engine.url.render_as_string(hide_password=True)!r}"
        )
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
) -> tuple[dict[str, str], Iterator[pd.DataFrame]]:
    """Check the catalog, then stream the table as DataFrames of at most ``chunk_rows`` rows.

    Returns ``(dtypes, chunks)``; dtypes are decided before reading (see :func:`pandas_dtype_for`).
    """
    sa_table = reflect_table(engine, spec.name, schema=schema)
    check_catalog_against_spec(sa_table, spec)
    dtypes = source_dtypes(sa_table, spec)
    query = sa.select(*[sa_table.c[name] for name in dtypes])

    def chunks() -> Iterator[pd.DataFrame]:
        with engine.connect() as conn:
            result = conn.execution_options(stream_results=True, yield_per=chunk_rows).execute(query)
            keys = list(result.keys())
            for part in result.partitions(chunk_rows):
                raw = pd.DataFrame.from_records([tuple(r) for r in part], columns=keys)
                yield coerce_frame(raw, dtypes, spec)

    return dtypes, chunks()


def read_table(engine: sa.engine.Engine, spec: TableSpec, *, schema: str | None = None) -> pd.DataFrame:
    """The whole table as one DataFrame (see :func:`iter_table_chunks`)."""
    dtypes, chunks = iter_table_chunks(engine, spec, schema=schema)
    parts = list(chunks)
    if not parts:
        return pd.DataFrame({n: pd.Series([], dtype=d) for n, d in dtypes.items()})
    return pd.concat(parts, ignore_index=True)


def count_rows(engine: sa.engine.Engine, table: str, *, schema: str | None = None) -> int:
    sa_table = reflect_table(engine, table, schema=schema)
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(sa_table)).scalar_one())


def _quote(engine: sa.engine.Engine, name: str) -> str:
    return engine.dialect.identifier_preparer.quote(name)


def publish_table_atomically(
    engine: sa.engine.Engine,
    frame: pd.DataFrame,
    *,
    target: str,
    column_types: dict[str, sa.types.TypeEngine[Any]],
    nullable: dict[str, bool] | None = None,
    schema: str | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> None:
    """Write ``frame`` to a staging table, then swap it in for ``target`` in one transaction.

    A failure before the swap drops the staging table and leaves ``target`` untouched; the swap
    itself is one transaction (SQLite/PostgreSQL: transactional DDL; MySQL/MariaDB: one atomic
    ``RENAME TABLE``).
    """
    schema, target = split_table_name(target, schema)
    staging = f"{target}__dpsynth_{uuid.uuid4().hex[:8]}"
    md = sa.MetaData()
    nullable = nullable or {}
    sa_staging = sa.Table(
        staging,
        md,
        *[sa.Column(name, column_types[name], nullable=nullable.get(name, True)) for name in frame.columns],
        schema=schema,
    )
    md.create_all(engine)
    try:
        records = _records(frame)
        with engine.begin() as conn:
            for start in range(0, len(records), chunk_rows):
                conn.execute(sa_staging.insert(), records[start : start + chunk_rows])
        _swap(engine, staging=staging, target=target, schema=schema)
    except BaseException:
        try:
            sa_staging.drop(engine, checkfirst=True)
        except Exception:  # the warehouse may be gone; the staging table is harmless
            log.warning("could not drop staging table %s after a failed publish", staging)
        raise


def _swap(engine: sa.engine.Engine, *, staging: str, target: str, schema: str | None) -> None:
    q = lambda n: (f"{_quote(engine, schema)}." if schema else "") + _quote(engine, n)  # noqa: E731
    old = f"{target}__dpsynth_old_{uuid.uuid4().hex[:8]}"
    exists = sa.inspect(engine).has_table(target, schema=schema)
    if engine.dialect.name in ("mysql", "mariadb"):
        with engine.begin() as conn:
            if exists:
                conn.exec_driver_sql(f"RENAME TABLE {q(target)} TO {q(old)}, {q(staging)} TO {q(target)}")
            else:
                conn.exec_driver_sql(f"RENAME TABLE {q(staging)} TO {q(target)}")
        if exists:
            with engine.begin() as conn:
                conn.exec_driver_sql(f"DROP TABLE {q(old)}")
        return
    with engine.begin() as conn:
        if exists:
            conn.exec_driver_sql(f"DROP TABLE {q(target)}")
        conn.exec_driver_sql(f"ALTER TABLE {q(staging)} RENAME TO {_quote(engine, target)}")


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
