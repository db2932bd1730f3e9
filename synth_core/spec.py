"""TableSpec: what the synthesizer may know about a table *publicly*.

A spec lists the columns of a source table with their kind and nullability, plus public metadata
(numeric bounds, category domains, datetime ranges) that a data owner declares as known without
looking at the data. Everything a spec does not declare public is estimated under differential
privacy and charged to the release's budget (see :mod:`synth_core.transformer`).

Specs are read from YAML (the reviewed, versioned form) or inferred from a warehouse table's
catalog (column names and SQL types only: inference never reads rows).

A spec is hostile input: its table, column and target names obey the identifier rule, and its
sizes (columns, public category domains, rules) stay within the limits of
:mod:`synth_core.boundary` — checked when the spec is built, so before any row is read or any
budget is reserved. Sizes of raw YAML are checked before the parts are built.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from synth_core.boundary import (
    MAX_COLUMNS,
    MAX_RULES,
    check_category_domain,
    check_identifier,
    check_rule_size,
    check_spec_limits,
    check_table_name,
    describe,
)
from synth_core.errors import ParameterError, SpecError
from synth_core.rules import Rule

if TYPE_CHECKING:
    import sqlalchemy as sa


class ColumnKind(StrEnum):
    """How a column is modelled."""

    NUMERIC = "numeric"
    INTEGER = "integer"
    CATEGORICAL = "categorical"
    BOOLEAN = "boolean"
    DATETIME = "datetime"
    #: A key: not modelled; the synthetic table gets fresh surrogate keys (1..n, or opaque strings).
    ID = "id"
    #: Left out of the model and of the synthetic table.
    DROP = "drop"


#: Kinds whose values are learned by a generator.
MODELLED_KINDS = frozenset(
    {ColumnKind.NUMERIC, ColumnKind.INTEGER, ColumnKind.CATEGORICAL, ColumnKind.BOOLEAN, ColumnKind.DATETIME}
)

#: Resolution of datetime columns: synthetic values are rounded to it.
DATETIME_RESOLUTIONS = ("day", "second", "microsecond")

CategoryValue = str | int | float | bool


@dataclass(frozen=True)
class ColumnSpec:
    """One column of a :class:`TableSpec`.

    Attributes:
        name: column name in the warehouse (case preserved).
        kind: how the column is modelled.
        nullable: whether the column may hold NULLs (from the catalog, or declared).
        bounds: public ``(low, high)`` for numeric/integer columns, in the column's units. Values
            outside are clipped. ``None``: estimated under DP.
        categories: public category domain for categorical columns. ``None``: discovered under DP
            (values rarer than the DP threshold are never released).
        datetime_range: public ``(first, last)`` for datetime columns. ``None``: estimated under DP.
        resolution: datetime resolution (``day``, ``second``, ``microsecond``).
        sql_type: the warehouse type the spec was inferred from (informational).
        description: free text, copied into published metadata.
    """

    name: str
    kind: ColumnKind
    nullable: bool = True
    bounds: tuple[float, float] | None = None
    categories: tuple[CategoryValue, ...] | None = None
    datetime_range: tuple[dt.datetime, dt.datetime] | None = None
    resolution: str = "second"
    sql_type: str | None = None
    description: str | None = None

    def __post_init__(self) -> None:
        try:
            check_identifier(self.name, "column")
        except ParameterError as exc:
            raise SpecError(str(exc)) from None
        where = f"column {self.name!r}"
        if self.bounds is not None:
            if self.kind not in (ColumnKind.NUMERIC, ColumnKind.INTEGER):
                raise SpecError(f"{where}: bounds are only for numeric/integer columns, not {self.kind}")
            low, high = (float(b) for b in self.bounds)
            if not (math.isfinite(low) and math.isfinite(high)) or low >= high:
                raise SpecError(f"{where}: bounds must be finite with low < high, got {self.bounds}")
            object.__setattr__(self, "bounds", (low, high))
        if self.categories is not None:
            if self.kind != ColumnKind.CATEGORICAL:
                raise SpecError(f"{where}: categories are only for categorical columns, not {self.kind}")
            check_category_domain(None, self.name, self.categories)
            cats = tuple(self.categories)
            if not cats:
                raise SpecError(f"{where}: an empty category domain was declared")
            if len(set(cats)) != len(cats):
                raise SpecError(f"{where}: the declared category domain has duplicates")
            object.__setattr__(self, "categories", cats)
        if self.datetime_range is not None:
            if self.kind != ColumnKind.DATETIME:
                raise SpecError(f"{where}: datetime_range is only for datetime columns, not {self.kind}")
            first, last = (_as_datetime(v, where) for v in self.datetime_range)
            if first >= last:
                raise SpecError(f"{where}: datetime_range must have first < last")
            object.__setattr__(self, "datetime_range", (first, last))
        if self.resolution not in DATETIME_RESOLUTIONS:
            raise SpecError(
                f"{where}: resolution must be one of {DATETIME_RESOLUTIONS}, got {describe(self.resolution)}"
            )

    @property
    def is_modelled(self) -> bool:
        return self.kind in MODELLED_KINDS

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "kind": self.kind.value, "nullable": self.nullable}
        if self.bounds is not None:
            out["bounds"] = list(self.bounds)
        if self.categories is not None:
            out["categories"] = list(self.categories)
        if self.datetime_range is not None:
            out["datetime_range"] = [v.isoformat() for v in self.datetime_range]
        if self.kind == ColumnKind.DATETIME:
            out["resolution"] = self.resolution
        if self.sql_type is not None:
            out["sql_type"] = self.sql_type
        if self.description is not None:
            out["description"] = self.description
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ColumnSpec:
        if not isinstance(raw, Mapping) or "name" not in raw:
            raise SpecError(f"each column needs at least a name and a kind, got {describe(raw)}")
        name = str(raw["name"])
        try:
            check_identifier(name, "column")
        except ParameterError as exc:
            raise SpecError(str(exc)) from None
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(raw) - known
        if unknown:
            raise SpecError(f"column {name!r}: unknown keys {sorted(unknown)}; allowed: {sorted(known)}")
        try:
            kind = ColumnKind(str(raw.get("kind", "")))
        except ValueError:
            raise SpecError(
                f"column {name!r}: kind must be one of {[k.value for k in ColumnKind]}, got {describe(str(raw.get('kind')))}"
            ) from None
        bounds = raw.get("bounds")
        dtr = raw.get("datetime_range")
        cats = raw.get("categories")
        if cats is not None and (not isinstance(cats, Sequence) or isinstance(cats, str)):
            raise SpecError(f"column {name!r}: categories must be a list")
        check_category_domain(None, name, cats)
        return cls(
            name=name,
            kind=kind,
            nullable=bool(raw.get("nullable", True)),
            bounds=_pair(bounds, f"column {name!r} bounds") if bounds is not None else None,
            categories=tuple(cats) if cats is not None else None,
            datetime_range=_pair(dtr, f"column {name!r} datetime_range") if dtr is not None else None,
            resolution=str(raw.get("resolution", "second")),
            sql_type=raw.get("sql_type"),
            description=raw.get("description"),
        )


@dataclass(frozen=True)
class TableSpec:
    """A table's columns, in warehouse order, and what is public about them.

    Attributes:
        name: the source table (optionally ``schema.table``).
        columns: every column of the source table, in order.
        target: optional label column used for the train-synthetic-test-real utility metric.
        description: free text for published metadata.
        rules: semantic rules every synthetic row satisfies (:mod:`synth_core.rules`): sampling
            enforces the critical ones, validation checks all of them.
    """

    name: str
    columns: tuple[ColumnSpec, ...]
    target: str | None = None
    description: str | None = None
    rules: tuple[Rule, ...] = ()
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.name:
            raise SpecError("the table spec has no table name")
        try:
            check_table_name(self.name, "spec table")
        except ParameterError as exc:
            raise SpecError(str(exc)) from None
        cols = tuple(self.columns)
        if not cols:
            raise SpecError(f"table {self.name!r}: the spec has no columns")
        object.__setattr__(self, "columns", cols)
        index: dict[str, int] = {}
        for i, col in enumerate(cols):
            if col.name in index:
                raise SpecError(f"table {self.name!r}: column {col.name!r} is declared twice")
            index[col.name] = i
        object.__setattr__(self, "_index", index)
        if not any(c.is_modelled for c in cols):
            raise SpecError(f"table {self.name!r}: no column is modelled (all are id/drop)")
        if self.target is not None:
            try:
                check_identifier(self.target, f"target of table {self.name!r}")
            except ParameterError as exc:
                raise SpecError(str(exc)) from None
            tcol = self.column(self.target)
            if tcol.kind not in (ColumnKind.CATEGORICAL, ColumnKind.BOOLEAN):
                raise SpecError(
                    f"table {self.name!r}: target {self.target!r} must be categorical or boolean, not {tcol.kind}"
                )
        rules = tuple(self.rules)
        object.__setattr__(self, "rules", rules)
        outputs = {c.name for c in self.output_columns}
        seen: set[str] = set()
        for rule in rules:
            if rule.name in seen:
                raise SpecError(f"table {self.name!r}: rule {rule.name!r} is declared twice")
            seen.add(rule.name)
            missing = [c for c in rule.columns if c not in outputs]
            if missing:
                raise SpecError(
                    f"table {self.name!r}, rule {rule.name!r}: columns {missing} are not columns of the synthetic table"
                )
        check_spec_limits(self)

    # -- access -----------------------------------------------------------------------------------
    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def output_columns(self) -> list[ColumnSpec]:
        """Columns of the synthetic table (every column but ``drop``), in source order."""
        return [c for c in self.columns if c.kind != ColumnKind.DROP]

    @property
    def modelled_columns(self) -> list[ColumnSpec]:
        return [c for c in self.columns if c.is_modelled]

    def column(self, name: str) -> ColumnSpec:
        try:
            return self.columns[self._index[name]]
        except KeyError:
            raise SpecError(f"table {self.name!r} has no column {name!r} in its spec") from None

    def with_column(self, column: ColumnSpec) -> TableSpec:
        """A copy with ``column`` replacing the column of the same name."""
        cols = tuple(column if c.name == column.name else c for c in self.columns)
        return replace(self, columns=cols)

    # -- (de)serialisation ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"table": self.name}
        if self.description is not None:
            out["description"] = self.description
        if self.target is not None:
            out["target"] = self.target
        out["columns"] = [c.to_dict() for c in self.columns]
        if self.rules:
            out["rules"] = [r.to_dict() for r in self.rules]
        return out

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> TableSpec:
        if not isinstance(raw, Mapping):
            raise SpecError("a table spec must be a mapping with 'table' and 'columns'")
        unknown = set(raw) - {"table", "columns", "target", "description", "rules"}
        if unknown:
            raise SpecError(f"unknown top-level keys in table spec: {sorted(unknown)}")
        if "table" not in raw or "columns" not in raw:
            raise SpecError("a table spec needs 'table' and 'columns'")
        cols = raw["columns"]
        table = describe(str(raw["table"]))
        if not isinstance(cols, Sequence) or isinstance(cols, str):
            raise SpecError(f"table {table}: 'columns' must be a list")
        if len(cols) > MAX_COLUMNS:
            raise SpecError(f"table {table}: {len(cols)} columns, more than {MAX_COLUMNS}")
        rules = raw.get("rules") or ()
        if not isinstance(rules, Sequence) or isinstance(rules, str):
            raise SpecError(f"table {table}: 'rules' must be a list")
        if len(rules) > MAX_RULES:
            raise SpecError(f"table {table}: {len(rules)} rules, more than {MAX_RULES}")
        for rule in rules:
            if isinstance(rule, Mapping):  # a huge expression never reaches the parser
                check_rule_size(str(raw["table"]), rule.get("name"), rule.get("expr"))
        return cls(
            name=str(raw["table"]),
            columns=tuple(ColumnSpec.from_dict(c) for c in cols),
            target=raw.get("target"),
            description=raw.get("description"),
            rules=tuple(Rule.from_dict(r) for r in rules),
        )

    @classmethod
    def from_yaml(cls, source: str | Path) -> TableSpec:
        """Load a spec from a YAML file path or a YAML string."""
        text: str
        if isinstance(source, Path) or (
            isinstance(source, str) and "\n" not in source and source.endswith((".yaml", ".yml"))
        ):
            path = Path(source)
            if not path.is_file():
                raise SpecError(f"spec file not found: {path}")
            text = path.read_text(encoding="utf-8")
        else:
            text = str(source)
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise SpecError(f"the spec is not valid YAML: {exc}") from None
        return cls.from_dict(raw)

    # -- inference --------------------------------------------------------------------------------
    @classmethod
    def infer_from_sqlalchemy(
        cls,
        engine: sa.engine.Engine,
        table: str,
        *,
        schema: str | None = None,
        id_columns: Iterable[str] = (),
        target: str | None = None,
    ) -> TableSpec:
        """Infer a spec from the warehouse catalog: names, SQL types, nullability; no rows read.

        Kinds come from SQL types; primary-key columns and ``id_columns`` become ``id``. No bound
        or domain is declared public: review the YAML and declare what is genuinely public.
        """
        from synth_core.warehouse import reflect_table

        sa_table = reflect_table(engine, table, schema=schema)
        pk = {c.name for c in sa_table.primary_key.columns}
        ids = set(id_columns) | pk
        cols = []
        for col in sa_table.columns:
            kind = ColumnKind.ID if col.name in ids else kind_for_sql_type(col.type)
            resolution = "second"
            if kind == ColumnKind.DATETIME:
                resolution = "day" if _is_date_only(col.type) else "second"
            cols.append(
                ColumnSpec(
                    name=str(col.name),  # not a quoted_name: it must serialise to plain YAML
                    kind=kind,
                    nullable=bool(col.nullable) and col.name not in pk,
                    resolution=resolution,
                    sql_type=_sql_type_name(col.type),
                )
            )
        return cls(name=table if schema is None else f"{schema}.{table}", columns=tuple(cols), target=target)


def kind_for_sql_type(sql_type: sa.types.TypeEngine[Any]) -> ColumnKind:
    """The default kind for a SQL type (the spec may override it)."""
    import sqlalchemy as sa

    if isinstance(sql_type, sa.Boolean):
        return ColumnKind.BOOLEAN
    if isinstance(sql_type, sa.Integer):
        return ColumnKind.INTEGER
    if isinstance(sql_type, sa.Numeric | sa.Float):
        return ColumnKind.NUMERIC
    if isinstance(sql_type, sa.DateTime | sa.Date):
        return ColumnKind.DATETIME
    if isinstance(sql_type, sa.String | sa.Enum):
        return ColumnKind.CATEGORICAL
    if isinstance(sql_type, sa.LargeBinary | sa.JSON | sa.ARRAY | sa.Interval | sa.Time | sa.Uuid):
        return ColumnKind.DROP
    return ColumnKind.CATEGORICAL


#: SQL type families each kind accepts (checked against the catalog before any row is read).
def sql_type_allows(kind: ColumnKind, sql_type: sa.types.TypeEngine[Any]) -> bool:
    import sqlalchemy as sa

    if kind in (ColumnKind.ID, ColumnKind.DROP) or isinstance(sql_type, sa.types.NullType):
        return True  # an untyped query column: its values are checked when read
    if kind == ColumnKind.INTEGER:
        return isinstance(sql_type, sa.Integer | sa.Numeric) and not isinstance(sql_type, sa.Boolean)
    if kind == ColumnKind.NUMERIC:
        return isinstance(sql_type, sa.Integer | sa.Numeric | sa.Float) and not isinstance(
            sql_type, sa.Boolean
        )
    if kind == ColumnKind.BOOLEAN:
        return isinstance(sql_type, sa.Boolean | sa.Integer)
    if kind == ColumnKind.DATETIME:
        return isinstance(sql_type, sa.DateTime | sa.Date)
    if kind == ColumnKind.CATEGORICAL:
        return isinstance(sql_type, sa.String | sa.Enum | sa.Integer | sa.Boolean)
    return False


def _sql_type_name(sql_type: sa.types.TypeEngine[Any]) -> str:
    try:
        return str(sql_type)
    except Exception:  # some dialect types cannot compile without a dialect
        return type(sql_type).__name__


def _is_date_only(sql_type: sa.types.TypeEngine[Any]) -> bool:
    import sqlalchemy as sa

    return isinstance(sql_type, sa.Date) and not isinstance(sql_type, sa.DateTime)


def _pair(value: Any, where: str) -> tuple[Any, Any]:
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != 2:
        raise SpecError(f"{where} must be a [low, high] pair, got {describe(str(value))}")
    return value[0], value[1]


def _as_datetime(value: Any, where: str) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day)
    try:
        return dt.datetime.fromisoformat(str(value))
    except ValueError:
        raise SpecError(
            f"{where}: datetime_range values must be ISO dates/datetimes, got {describe(str(value))}"
        ) from None


__all__ = [
    "MODELLED_KINDS",
    "CategoryValue",
    "ColumnKind",
    "ColumnSpec",
    "TableSpec",
    "kind_for_sql_type",
    "sql_type_allows",
]
