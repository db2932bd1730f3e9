"""Write the small, vendored samples of the benchmark data sets that the tests load (``data/benchmark_samples``).

The tests must not need ``../shared/datasets``, so a few rows of each benchmark data set ship with
the repository. A sample is the original file's header plus a subset of its lines, byte-identical
and in the original order, so the benchmark's own loader reads it unchanged. The subset is chosen
to keep what ``tests/test_benchmark_datasets.py`` checks as strong as on the full file: for every
column, a row holding its minimum and one holding its maximum, one row per value of every column
with at most ``MAX_LEVELS`` distinct values (every category level), one row with a missing value
where the column has any; the rest is a seeded uniform draw up to ``ROWS`` rows.

    .venv/bin/python scripts/sample_benchmark_datasets.py      # reads $DPSYNTH_DATASETS or ../shared/datasets
"""

from __future__ import annotations

import argparse
import hashlib
import os
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "data" / "benchmark_samples"
#: rows per sample (header not counted)
ROWS = 1_000
#: a column with at most this many distinct values gets one row per value
MAX_LEVELS = 20
SEED = 0


@dataclass(frozen=True)
class Source:
    """One benchmark data set: its folder under the data-sets root, its CSV file and how to parse it."""

    folder: str
    file: str
    read_csv_kwargs: dict[str, object]


SOURCES = (
    Source("bank_marketing", "bank-full.csv", {"sep": ";", "keep_default_na": False}),
    Source("credit_default", "UCI_Credit_Card.csv", {}),
    Source("california_housing", "housing.csv", {}),
)


def covering_rows(frame: pd.DataFrame) -> set[int]:
    """Row positions that hold every column's minimum and maximum, every level of each column with at
    most ``MAX_LEVELS`` values, and a missing value where a column has one."""
    keep: set[int] = set()
    for name in frame.columns:
        column = frame[name]
        if pd.api.types.is_numeric_dtype(column) and column.notna().any():
            keep.add(int(np.nanargmin(column.to_numpy(dtype="float64"))))
            keep.add(int(np.nanargmax(column.to_numpy(dtype="float64"))))
        if column.nunique(dropna=True) <= MAX_LEVELS:
            positions = pd.Series(np.arange(len(column)), index=column.to_numpy())
            keep.update(int(p) for p in positions.groupby(level=0).first())
        if column.isna().any():
            keep.add(int(np.flatnonzero(column.isna().to_numpy())[0]))
    return keep


def sample_lines(source: Source, root: Path, rows: int, seed: int) -> tuple[list[bytes], int]:
    """The header and the chosen data lines of ``source`` (bytes, unchanged), and the full file's rows."""
    path = root / source.folder / source.file
    frame = pd.read_csv(path, **source.read_csv_kwargs)
    lines = path.read_bytes().splitlines(keepends=True)
    if len(lines) != len(frame) + 1:
        raise ValueError(f"{path}: {len(lines)} lines for {len(frame)} rows; a field spans lines")
    keep = covering_rows(frame)
    if len(keep) > rows:
        raise ValueError(f"{source.folder}: {len(keep)} covering rows exceed the sample's {rows}")
    rest = np.setdiff1d(np.arange(len(frame)), sorted(keep))
    draw = np.random.default_rng(seed).choice(rest, size=rows - len(keep), replace=False)
    chosen = sorted(keep | {int(p) for p in draw})
    return [lines[0]] + [lines[p + 1] for p in chosen], len(frame)


def source_notes(source: Source, upstream: Path, rows: int, full_rows: int) -> str:
    """``SOURCE.md`` of one sample: what it is, how it was drawn, and the full file's notes (licence)."""
    digest = hashlib.md5((upstream / source.file).read_bytes()).hexdigest()
    notes = (upstream / "SOURCE.txt").read_text().rstrip("\n")
    about = textwrap.fill(
        f"`{source.file}`: the header and {rows:,} of the {full_rows:,} data lines of the benchmark's "
        f"`{source.folder}/{source.file}` (md5 of the full file: `{digest}`), byte-identical and in "
        f"their original order. The lines were chosen by `scripts/sample_benchmark_datasets.py` "
        f"(seed {SEED}): for every column the rows holding its minimum and maximum, one row per value "
        f"of each column with at most {MAX_LEVELS} distinct values, one row with a missing value "
        "where the column has any, and a seeded uniform draw for the rest. It is *not* a uniform "
        "sample: the tests use it to check the loader and the spec's declared categories and bounds, "
        "never to measure anything. The benchmark itself reads the full file from `$DPSYNTH_DATASETS` "
        "(see `benchmarks/README.md`).",
        width=100,
        break_on_hyphens=False,
    )
    return (
        f"# {source.folder} — vendored sample for the tests\n\n{about}\n\n"
        "The full file's notes, verbatim (origin and licence; the same licence covers this sample):\n\n"
        f"```\n{notes}\n```\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_root = os.environ.get("DPSYNTH_DATASETS") or str(REPO.parent / "shared" / "datasets")
    parser.add_argument("--datasets-root", type=Path, default=Path(default_root))
    parser.add_argument("--rows", type=int, default=ROWS)
    args = parser.parse_args()
    for source in SOURCES:
        lines, full_rows = sample_lines(source, args.datasets_root, args.rows, SEED)
        folder = OUT / source.folder
        folder.mkdir(parents=True, exist_ok=True)
        (folder / source.file).write_bytes(b"".join(lines))
        upstream = args.datasets_root / source.folder
        (folder / "SOURCE.md").write_text(source_notes(source, upstream, len(lines) - 1, full_rows))
        print(f"{source.folder}: {len(lines) - 1} of {full_rows} rows -> {folder / source.file}")


if __name__ == "__main__":
    main()
