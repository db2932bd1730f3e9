"""In-warehouse measurement: a :class:`~synth_core.count_source.CountSource` that runs one
aggregate query per question inside the warehouse, so no row leaves it.

Every per-row code is a SQLAlchemy Core expression built from the coding's public/DP rule
(:mod:`synth_core.count_source`): a binary search of nested ``CASE`` over the DP-chosen edges for
continuous columns (a few comparisons per row, whatever the number of bins), ``CASE`` over the
released domain with the "other" and NULL codes for categorical ones. A question is then::

    SELECT c0, c1, COUNT(*) FROM (SELECT <code expr> AS c0, <code expr> AS c1 FROM t) AS cells
    GROUP BY c0, c1

— the same plan on PostgreSQL, MySQL/MariaDB and SQLite (and any dialect that can compile the
epoch expression below). Identifiers come from the reflected, spec-checked table (SQLAlchemy
quotes them); every value is a bound parameter; statements run in a read-only transaction
(:func:`~synth_core.warehouse.read_only_connection`). Only ``(codes, count)`` rows and, for DP
category discovery, ``(value, count)`` rows come back.

Semantics match :class:`~synth_core.count_source.FrameCounts` exactly: datetimes are compared as
integer microseconds since the epoch (UTC), and an integer-unit value's half-to-even rounding is
expressed as comparisons against half-unit bounds (``rint(x) <= k`` is ``x <= k + ½`` for even
``k``, ``x < k + ½`` for odd), so no dialect's ``ROUND`` is relied on. Known difference: string
equality follows the column's collation (MySQL/MariaDB's default collations are case- and
trailing-space-insensitive, so ``'a'`` and ``'A'`` are one category there).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import sqlalchemy as sa
from numpy.typing import NDArray
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement

from synth_core.count_source import (
    SECONDS_PER_UNIT,
    CategoryCells,
    Coding,
    CountSource,
    QuantileCells,
    RangeBuckets,
)
from synth_core.errors import SourceTableError
from synth_core.spec import ColumnKind, TableSpec
from synth_core.warehouse import (
    check_catalog_against_spec,
    read_only_connection,
    reflect_table,
    source_dtypes,
)

Expr = ColumnElement[Any]


class EpochMicros(FunctionElement[Any]):
    """Microseconds since 1970-01-01 00:00 UTC of a timestamp/datetime column, per dialect."""

    type = sa.Float()
    inherit_cache = True
    name = "epoch_micros"


@compiles(EpochMicros)
def _epoch_default(element: EpochMicros, compiler: SQLCompiler, **kw: Any) -> str:
    (arg,) = list(element.clauses)
    return f"(EXTRACT(EPOCH FROM {compiler.process(arg, **kw)}) * 1000000)"


@compiles(EpochMicros, "mysql")
@compiles(EpochMicros, "mariadb")
def _epoch_mysql(element: EpochMicros, compiler: SQLCompiler, **kw: Any) -> str:
    (arg,) = list(element.clauses)
    return f"TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', {compiler.process(arg, **kw)})"


@compiles(EpochMicros, "sqlite")
def _epoch_sqlite(element: EpochMicros, compiler: SQLCompiler, **kw: Any) -> str:
    # SQLAlchemy stores 'YYYY-MM-DD HH:MM:SS.ffffff': whole seconds from strftime, the six
    # fraction digits from the text (none stored: 0)
    (arg,) = list(element.clauses)
    col = compiler.process(arg, **kw)
    return (
        f"(CAST(strftime('%s', {col}) AS INTEGER) * 1000000 "
        f"+ COALESCE(CAST(NULLIF(substr({col}, 21, 6), '') AS INTEGER), 0))"
    )


class _ModelValue:
    """Comparisons of a column's model-unit value (rounded half to even when ``integer``)."""

    def __init__(self, column: Expr, kind: ColumnKind, datetime_unit: str | None, integer: bool) -> None:
        if kind == ColumnKind.DATETIME:
            self.base: Expr = EpochMicros(column)
            self.scale = SECONDS_PER_UNIT[datetime_unit or "second"] * 1e6
        else:
            self.base = column
            self.scale = 1.0
        self.integer = integer

    def _bound(self, t: float) -> Expr:
        return sa.literal(float(t) * self.scale, sa.Float())

    def le(self, t: float) -> Expr:
        """value <= t"""
        if not self.integer:
            return self.base <= self._bound(t)
        k = math.floor(t)
        half = self._bound(k + 0.5)
        return self.base <= half if k % 2 == 0 else self.base < half

    def ge(self, t: float) -> Expr:
        """value >= t"""
        if not self.integer:
            return self.base >= self._bound(t)
        m = math.ceil(t)
        half = self._bound(m - 0.5)
        return self.base >= half if m % 2 == 0 else self.base > half

    def eq(self, a: float) -> Expr:
        """value == a"""
        if not self.integer:
            return self.base == self._bound(a)
        return sa.and_(self.ge(a), self.le(a))


def _search(at_most: Callable[[int], Expr], codes: Sequence[int], lo: int, hi: int) -> Expr:
    """Nested ``CASE`` giving ``codes[j]`` for the position ``j`` in ``[lo, hi]`` where
    ``at_most(j)`` (position ≤ j) first holds: a binary search, ~log2(hi - lo) comparisons a row;
    a range whose codes are all equal is one literal."""
    if all(c == codes[lo] for c in codes[lo : hi + 1]):
        return sa.literal(int(codes[lo]), sa.Integer())
    mid = (lo + hi) // 2
    return sa.case(
        (at_most(mid), _search(at_most, codes, lo, mid)), else_=_search(at_most, codes, mid + 1, hi)
    )


def code_expression(coding: Coding, column: Expr) -> Expr:
    """The per-row code of ``coding`` over ``column`` as a SQL expression (``-1``: not counted),
    equal to :meth:`~synth_core.count_source.FrameCounts.codes` row by row."""
    if isinstance(coding, CategoryCells):
        other = -1 if coding.other_code is None else coding.other_code
        null = -1 if coding.null_code is None else coding.null_code
        whens: list[tuple[Expr, Expr]] = [(column.is_(None), sa.literal(null, sa.Integer()))]
        whens += [(column == v, sa.literal(i, sa.Integer())) for i, v in enumerate(coding.categories)]
        return sa.case(*whens, else_=sa.literal(other, sa.Integer()))
    if isinstance(coding, RangeBuckets):
        value = _ModelValue(column, coding.kind, coding.datetime_unit, integer=False)
        grid = coding.grid
        # bucket j holds (grid[j], grid[j+1]]: bucket ≤ j ⟺ value ≤ grid[j+1]
        body = _search(lambda j: value.le(float(grid[j + 1])), list(range(coding.size)), 0, coding.size - 1)
        return sa.case((column.is_(None), sa.literal(-1, sa.Integer())), else_=body)
    return sa.case(
        (column.is_(None), sa.literal(-1 if coding.null_code is None else coding.null_code, sa.Integer())),
        else_=_quantile_body(coding, _ModelValue(column, coding.kind, coding.datetime_unit, coding.integer)),
    )


def _quantile_body(coding: QuantileCells, value: _ModelValue) -> Expr:
    """:func:`~synth_core.mechanisms.quantile_bin_of` (then the group) of a non-null value."""
    left, right = coding.left, coding.right
    group = coding.group_of(np.arange(left.size, dtype=np.int64)).tolist()
    atoms = np.flatnonzero(left == right)
    intervals = np.flatnonzero(left != right)
    low_atom, high_atom = int(atoms[0]), int(atoms[-1])  # bin_layout puts atoms at low and high
    whens: list[tuple[Expr, Expr]] = [
        (value.le(float(left[0])), sa.literal(group[low_atom], sa.Integer())),
        (value.ge(float(right[-1])), sa.literal(group[high_atom], sa.Integer())),
    ]
    if intervals.size == 0:  # exact integer bins: atom j ⟺ rint(value) ≤ left[j] first
        ints = [group[int(i)] for i in atoms]
        body = _search(lambda j: value.le(float(left[atoms[j]])), ints, 0, atoms.size - 1)
        return sa.case(*whens, else_=body)
    whens += [(value.eq(float(left[a])), sa.literal(group[int(a)], sa.Integer())) for a in atoms[1:-1]]
    # the last interval whose left edge is ≤ value: interval ≤ j ⟺ value < left of interval j+1
    codes = [group[int(i)] for i in intervals]
    last = intervals.size - 1

    def at_most(j: int) -> Expr:
        return sa.not_(value.ge(float(left[intervals[j + 1]]))) if j < last else sa.true()

    return sa.case(*whens, else_=_search(at_most, codes, 0, last))


class WarehouseCounts(CountSource):
    """Counts computed by the warehouse over ``table`` (checked against ``spec`` first).

    Each distinct question is asked once (answers are cached); ``statements`` counts the queries.
    """

    def __init__(
        self, engine: sa.engine.Engine, table: str, spec: TableSpec, *, schema: str | None = None
    ) -> None:
        self.engine = engine
        self.spec = spec
        self.table = reflect_table(engine, table, schema=schema)
        check_catalog_against_spec(self.table, spec)
        self.statements = 0
        self._cache: dict[tuple[Any, ...], Any] = {}

    def _rows(self, statement: sa.Executable) -> list[Any]:
        self.statements += 1
        try:
            with read_only_connection(self.engine) as conn:
                return list(conn.execute(statement))
        except sa.exc.DBAPIError as exc:
            raise SourceTableError(
                f"table {self.spec.name!r}: an aggregate query failed in the warehouse "
                f"({type(exc.orig).__name__}; the driver's message is not shown because it may quote a value)"
            ) from None

    def output_dtypes(self) -> dict[str, str]:
        return source_dtypes(self.table, self.spec)

    def row_count(self) -> int:
        key = ("rows",)
        if key not in self._cache:
            (row,) = self._rows(sa.select(sa.func.count()).select_from(self.table))
            self._cache[key] = int(row[0])
        return int(self._cache[key])

    def null_counts(self, columns: Sequence[str]) -> dict[str, int]:
        todo = [c for c in columns if ("null", c) not in self._cache]
        if todo:
            sums = [
                sa.func.count(sa.case((self.table.c[c].is_(None), 1))).label(f"n{i}")
                for i, c in enumerate(todo)
            ]
            (row,) = self._rows(sa.select(*sums).select_from(self.table))
            for c, n in zip(todo, row, strict=True):
                self._cache["null", c] = int(n)
        return {c: int(self._cache["null", c]) for c in columns}

    def value_counts(self, column: str) -> tuple[NDArray[Any], NDArray[np.int64]]:
        col = self.table.c[column]
        stmt = sa.select(col, sa.func.count()).where(col.is_not(None)).group_by(col)
        rows = self._rows(stmt)
        values = np.empty(len(rows), dtype=object)
        values[:] = [r[0] for r in rows]
        counts = np.asarray([int(r[1]) for r in rows], dtype=np.int64)
        order = np.argsort(values, kind="stable")
        return values[order], counts[order]

    def joint_counts(self, codings: Sequence[Coding]) -> NDArray[np.int64]:
        if not codings:
            raise ValueError("joint_counts needs at least one coding")
        exprs = [code_expression(c, self.table.c[c.column]).label(f"c{i}") for i, c in enumerate(codings)]
        cells = sa.select(*exprs).select_from(self.table).subquery("cells")
        keys = [cells.c[f"c{i}"] for i in range(len(codings))]
        stmt = sa.select(*keys, sa.func.count().label("n")).group_by(*keys)
        sizes = tuple(c.size for c in codings)
        out = np.zeros(math.prod(sizes), dtype=np.int64)
        for row in self._rows(stmt):
            codes = [int(v) for v in row[:-1]]
            if min(codes) < 0:
                continue
            out[np.ravel_multi_index(tuple(codes), sizes)] += int(row[-1])
        return out
