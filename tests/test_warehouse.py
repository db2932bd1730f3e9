"""Warehouse I/O on a real SQLite file: catalog checks, typed extract, atomic publish."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from synth_core.datasets import adult_table, write_frame_to_table
from synth_core.errors import SourceTableError, SpecError
from synth_core.warehouse import publish_table_atomically, read_table, reflect_table


@pytest.fixture
def engine(tmp_path: Path) -> sa.engine.Engine:
    return sa.create_engine(f"sqlite:///{tmp_path / 'warehouse.db'}")


def test_extract_returns_spec_dtypes(engine, adult_frame, adult_spec) -> None:  # type: ignore[no-untyped-def]
    write_frame_to_table(engine, adult_frame.head(2000), adult_table())
    frame = read_table(engine, adult_spec)
    assert list(frame.columns) == adult_spec.column_names
    assert str(frame["age"].dtype) == "int64" and str(frame["workclass"].dtype) == "str"
    assert frame["workclass"].isna().sum() == adult_frame.head(2000)["workclass"].isna().sum()
    pd.testing.assert_frame_equal(frame, adult_frame.head(2000))


def test_catalog_mismatches_fail_before_reading(engine, adult_frame, adult_spec) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SourceTableError, match="table 'adult' does not exist"):
        read_table(engine, adult_spec)
    md = sa.MetaData()
    cols = [
        sa.Column(c.name, sa.Text if c.name == "age" else c.type)
        for c in adult_table(metadata=sa.MetaData()).columns
    ]
    sa.Table("adult", md, *cols).create(engine)
    with pytest.raises(
        SourceTableError, match=r"column 'age': the spec declares integer, which a TEXT column cannot hold"
    ):
        read_table(engine, adult_spec)


def test_undeclared_columns_are_a_spec_error(engine, adult_frame, adult_spec) -> None:  # type: ignore[no-untyped-def]
    write_frame_to_table(
        engine,
        adult_frame.head(10).assign(extra=1),
        sa.Table(
            "adult", sa.MetaData(), *[c.copy() for c in adult_table().columns], sa.Column("extra", sa.Integer)
        ),
    )
    with pytest.raises(SpecError, match=r"columns \['extra'\] are not in the spec"):
        read_table(engine, adult_spec)


def test_values_that_do_not_fit_the_kind_are_named_without_the_value(engine, adult_frame, adult_spec) -> None:  # type: ignore[no-untyped-def]
    # SQLite stores whatever it is given: an INTEGER column can hold text
    write_frame_to_table(engine, adult_frame.head(50), adult_table())
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE adult SET age = 'SECRET-VALUE-42' WHERE rowid = 3")
    with pytest.raises(SourceTableError, match="column 'age': values do not fit") as err:
        read_table(engine, adult_spec)
    assert "SECRET-VALUE-42" not in str(err.value)


def test_publish_swaps_atomically_and_a_failure_keeps_the_previous_table(engine, adult_frame) -> None:  # type: ignore[no-untyped-def]
    write_frame_to_table(engine, adult_frame.head(100), adult_table())
    source = reflect_table(engine, "adult")
    types = {c.name: c.type for c in source.columns}
    nullable = {c.name: bool(c.nullable) for c in source.columns}
    first = adult_frame.head(30)
    publish_table_atomically(engine, first, target="adult_synthetic", column_types=types, nullable=nullable)
    # a frame that violates NOT NULL fails inside the staging insert
    broken = adult_frame.head(40).copy()
    broken.loc[5, "age"] = None
    with pytest.raises(sa.exc.IntegrityError):
        publish_table_atomically(
            engine, broken, target="adult_synthetic", column_types=types, nullable=nullable
        )
    kept = pd.read_sql_table("adult_synthetic", engine)
    assert len(kept) == 30
    names = sa.inspect(engine).get_table_names()
    assert not [n for n in names if "__dpsynth_" in n]  # no staging leftovers
    # declared types are the source's
    synth_types = {c["name"]: str(c["type"]) for c in sa.inspect(engine).get_columns("adult_synthetic")}
    assert synth_types == {c["name"]: str(c["type"]) for c in sa.inspect(engine).get_columns("adult")}
    second = adult_frame.tail(10)
    publish_table_atomically(engine, second, target="adult_synthetic", column_types=types, nullable=nullable)
    assert len(pd.read_sql_table("adult_synthetic", engine)) == 10


def test_a_row_count_other_than_the_validated_one_publishes_nothing(engine, adult_frame) -> None:  # type: ignore[no-untyped-def]
    from synth_core.errors import ValidationFailedError

    write_frame_to_table(engine, adult_frame.head(50), adult_table())
    types = {c.name: c.type for c in reflect_table(engine, "adult").columns}
    publish_table_atomically(
        engine, adult_frame.head(20), target="synth", column_types=types, expected_rows=20
    )
    with pytest.raises(ValidationFailedError, match="19 rows to publish but 20 were validated"):
        publish_table_atomically(
            engine, adult_frame.head(19), target="synth", column_types=types, expected_rows=20
        )
    assert len(pd.read_sql_table("synth", engine)) == 20
    assert not [n for n in sa.inspect(engine).get_table_names() if "__dpsynth_" in n]
