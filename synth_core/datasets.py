"""Loading the bundled UCI Adult data into a warehouse (demo, tests, benchmarks).

``data/adult/adult.data.gz`` (the 32,561-row train split) and ``adult.test.gz`` (the 16,281-row
test split), CC BY 4.0 (see ``data/adult/SOURCE.md``), are read with snake_case column names and
``?`` as NULL, and can be written to a typed warehouse table.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import sqlalchemy as sa

ADULT_COLUMNS = [
    "age",
    "workclass",
    "fnlwgt",
    "education",
    "education_num",
    "marital_status",
    "occupation",
    "relationship",
    "race",
    "sex",
    "capital_gain",
    "capital_loss",
    "hours_per_week",
    "native_country",
    "income",
]
ADULT_INTEGER_COLUMNS = ["age", "fnlwgt", "education_num", "capital_gain", "capital_loss", "hours_per_week"]
ADULT_NULLABLE_COLUMNS = {"workclass", "occupation", "native_country"}


def load_adult_frame(path: str | Path) -> pd.DataFrame:
    """The Adult file as a DataFrame: int64 integer columns, ``str`` text columns, NULL for ``?``."""
    frame = pd.read_csv(
        path,
        header=None,
        names=ADULT_COLUMNS,
        sep=",",
        skipinitialspace=True,
        na_values=["?"],
        keep_default_na=False,
        comment="|",
    )
    frame = frame.dropna(how="all")
    for col in ADULT_COLUMNS:
        frame[col] = frame[col].astype("int64") if col in ADULT_INTEGER_COLUMNS else frame[col].astype("str")
    # adult.test writes its labels with a trailing dot (">50K."): one label set for both files
    frame["income"] = frame["income"].str.rstrip(".")
    return frame.reset_index(drop=True)


def adult_table(name: str = "adult", metadata: sa.MetaData | None = None) -> sa.Table:
    """The warehouse DDL of the Adult table."""
    return sa.Table(
        name,
        metadata or sa.MetaData(),
        *[
            sa.Column(
                col,
                sa.Integer if col in ADULT_INTEGER_COLUMNS else sa.String(64),
                nullable=col in ADULT_NULLABLE_COLUMNS,
            )
            for col in ADULT_COLUMNS
        ],
    )


def write_frame_to_table(engine: sa.engine.Engine, frame: pd.DataFrame, table: sa.Table) -> None:
    """(Re)create ``table`` and insert ``frame`` into it (columns by name, NULL for NA)."""
    table.drop(engine, checkfirst=True)
    table.create(engine)
    records = frame.astype(object).where(frame.notna(), None).to_dict("records")
    with engine.begin() as conn:
        for start in range(0, len(records), 20_000):
            conn.execute(table.insert(), records[start : start + 20_000])


def seed_adult(engine: sa.engine.Engine, path: str | Path, *, table: str = "adult") -> int:
    """Create the Adult table in ``engine``'s warehouse from ``path``; returns the row count."""
    frame = load_adult_frame(path)
    write_frame_to_table(engine, frame, adult_table(table))
    return len(frame)
