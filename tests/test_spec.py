"""TableSpec: YAML, validation messages, inference from a real catalog."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from synth_core.errors import SourceTableError, SpecError
from synth_core.spec import ColumnKind, TableSpec


def test_demo_spec_loads_and_round_trips(adult_spec: TableSpec) -> None:
    assert adult_spec.name == "adult" and adult_spec.target == "income"
    assert adult_spec.column("age").bounds == (17.0, 90.0)
    assert adult_spec.column("native_country").categories is None  # discovered under DP
    again = TableSpec.from_yaml(adult_spec.to_yaml())
    assert again == adult_spec


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ({"table": "t", "columns": [{"name": "a", "kind": "numbr"}]}, "column 'a': kind must be one of"),
        (
            {"table": "t", "columns": [{"name": "a", "kind": "numeric", "bounds": [5, 1]}]},
            "column 'a': bounds must be",
        ),
        (
            {"table": "t", "columns": [{"name": "a", "kind": "categorical", "bounds": [0, 1]}]},
            "bounds are only",
        ),
        (
            {"table": "t", "columns": [{"name": "a", "kind": "categorical", "categories": ["x", "x"]}]},
            "duplicates",
        ),
        ({"table": "t", "columns": [{"name": "a", "kind": "id"}]}, "no column is modelled"),
        (
            {"table": "t", "columns": [{"name": "a", "kind": "numeric"}, {"name": "a", "kind": "numeric"}]},
            "declared twice",
        ),
        (
            {"table": "t", "target": "a", "columns": [{"name": "a", "kind": "numeric"}]},
            "target 'a' must be categorical",
        ),
        (
            {"table": "t", "columns": [{"name": "a", "kind": "numeric", "colour": 1}]},
            "unknown keys ['colour']",
        ),
    ],
)
def test_bad_specs_fail_naming_the_column(raw: dict, needle: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(SpecError) as err:
        TableSpec.from_dict(raw)
    assert needle in str(err.value)


def test_missing_spec_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="spec file not found"):
        TableSpec.from_yaml(tmp_path / "nope.yaml")


def test_infer_from_a_real_catalog_reads_types_not_rows(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'w.db'}")
    md = sa.MetaData()
    sa.Table(
        "people",
        md,
        sa.Column("person_id", sa.Integer, primary_key=True),
        sa.Column("age", sa.Integer, nullable=False),
        sa.Column("income", sa.Float),
        sa.Column("city", sa.String(40)),
        sa.Column("member", sa.Boolean),
        sa.Column("born", sa.Date),
        sa.Column("seen", sa.DateTime),
        sa.Column("blob", sa.LargeBinary),
    )
    md.create_all(engine)
    spec = TableSpec.infer_from_sqlalchemy(engine, "people")
    kinds = {c.name: c.kind for c in spec.columns}
    assert kinds == {
        "person_id": ColumnKind.ID,
        "age": ColumnKind.INTEGER,
        "income": ColumnKind.NUMERIC,
        "city": ColumnKind.CATEGORICAL,
        "member": ColumnKind.BOOLEAN,
        "born": ColumnKind.DATETIME,
        "seen": ColumnKind.DATETIME,
        "blob": ColumnKind.DROP,
    }
    assert spec.column("born").resolution == "day" and spec.column("seen").resolution == "second"
    assert not spec.column("age").nullable and spec.column("income").nullable
    assert all(c.bounds is None and c.categories is None for c in spec.columns)  # nothing public by default
    with pytest.raises(SourceTableError, match="table 'nope' does not exist"):
        TableSpec.infer_from_sqlalchemy(engine, "nope")


def test_an_inferred_spec_serialises_to_plain_yaml(tmp_path: Path) -> None:
    from synth_core.datasets import adult_table

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'w.db'}")
    adult_table().create(engine)
    spec = TableSpec.infer_from_sqlalchemy(engine, "adult", target="income")
    again = TableSpec.from_yaml(spec.to_yaml())  # SQLAlchemy's quoted_name names would not dump
    assert again == spec and again.column_names[0] == "age"
