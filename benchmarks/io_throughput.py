"""Extract and publish throughput on PostgreSQL for a 1,000,000-row, 15-column table.

Builds the table from UCI Adult rows repeated (15 columns: 6 integer, 9 text with NULLs), then:

* extract: ``synth_core.warehouse.iter_table_chunks`` (server-side cursor, 50k-row chunks) into a
  local Parquet file, in a child process whose peak RSS is measured (``ru_maxrss``);
* publish: ``synth_core.warehouse.publish_table_atomically`` from that Parquet file, row group by
  row group (staging table + ``COPY FROM STDIN`` + swap in one transaction);
* ``psql \\copy`` of the same rows from a CSV file into an empty table, in the same run.

    .venv/bin/python benchmarks/io_throughput.py [--rows 1000000] [--url postgresql+psycopg://postgres@127.0.0.1/test]

Writes ``benchmarks/results/io_throughput.json`` with ``extract_rows_per_s``, ``publish_rows_per_s``,
``psql_copy_rows_per_s``, ``publish_vs_copy_ratio``, ``extract_peak_rss_mb``, ``rows``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SCHEMA = "dpsynth_bench"


def build_table(url: str, rows: int) -> None:
    import pandas as pd
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import sqlalchemy as sa

    from synth_core.datasets import adult_table, load_adult_frame

    adult = load_adult_frame(REPO / "data" / "adult" / "adult.data.gz")
    frame = pd.concat([adult] * (rows // len(adult) + 1), ignore_index=True).head(rows)
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        conn.exec_driver_sql(f"CREATE SCHEMA {SCHEMA}")
        table = adult_table("source")
        table.schema = SCHEMA
        table.create(conn)
        buf = io.BytesIO()
        pacsv.write_csv(
            pa.Table.from_pandas(frame, preserve_index=False), buf, pacsv.WriteOptions(include_header=False)
        )
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        with cursor.copy(f"COPY {SCHEMA}.source FROM STDIN (FORMAT CSV)") as copy:
            copy.write(buf.getvalue())
        conn.exec_driver_sql(f"ANALYZE {SCHEMA}.source")
    engine.dispose()


def extract_child(url: str, out: str) -> None:
    """Runs in a child process: extract to Parquet, print rows and seconds."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import sqlalchemy as sa

    from synth_core.spec import TableSpec
    from synth_core.warehouse import iter_table_chunks

    spec = TableSpec.from_dict(
        {**TableSpec.from_yaml(REPO / "dags" / "specs" / "adult.yaml").to_dict(), "table": f"{SCHEMA}.source"}
    )
    engine = sa.create_engine(url)
    started = time.perf_counter()
    _, chunks = iter_table_chunks(engine, spec, chunk_rows=50_000)
    rows = 0
    writer = None
    for chunk in chunks:
        table = pa.Table.from_pandas(chunk, preserve_index=False)
        writer = writer or pq.ParquetWriter(out, table.schema, compression="zstd")
        writer.write_table(table)
        rows += len(chunk)
    assert writer is not None
    writer.close()
    seconds = time.perf_counter() - started
    print(json.dumps({"rows": rows, "seconds": seconds}))


def publish(url: str, parquet: str) -> tuple[int, float]:
    import pyarrow.parquet as pq
    import sqlalchemy as sa

    from synth_core.warehouse import publish_table_atomically, reflect_table

    engine = sa.create_engine(url)
    source = reflect_table(engine, "source", schema=SCHEMA)
    types = {c.name: c.type for c in source.columns}
    nullable = {c.name: bool(c.nullable) for c in source.columns}
    file = pq.ParquetFile(parquet)
    started = time.perf_counter()
    rows = publish_table_atomically(
        engine,
        (batch.to_pandas() for batch in file.iter_batches(batch_size=50_000)),
        target="published",
        schema=SCHEMA,
        column_types=types,
        nullable=nullable,
    )
    seconds = time.perf_counter() - started
    engine.dispose()
    return rows, seconds


def psql_copy(url: str, workdir: Path) -> tuple[int, float]:
    import sqlalchemy as sa

    u = sa.make_url(url)
    env = {**os.environ, "PGPASSWORD": u.password or ""}
    base = [
        "psql",
        "-h",
        u.host or "127.0.0.1",
        "-p",
        str(u.port or 5432),
        "-U",
        u.username or "postgres",
        u.database or "postgres",
        "-q",
    ]
    csv = workdir / "source.csv"
    subprocess.run([*base, "-c", f"\\copy {SCHEMA}.source TO '{csv}' CSV"], check=True, env=env)
    subprocess.run([*base, "-c", f"CREATE TABLE {SCHEMA}.copied (LIKE {SCHEMA}.source)"], check=True, env=env)
    started = time.perf_counter()
    subprocess.run([*base, "-c", f"\\copy {SCHEMA}.copied FROM '{csv}' CSV"], check=True, env=env)
    seconds = time.perf_counter() - started
    out = subprocess.run(
        [*base, "-tA", "-c", f"SELECT count(*) FROM {SCHEMA}.copied"],
        check=True,
        env=env,
        capture_output=True,
        text=True,
    )
    return int(out.stdout.strip()), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "io_throughput.json")
    parser.add_argument("--extract-child", nargs=2, metavar=("URL", "PARQUET"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.extract_child:
        extract_child(*args.extract_child)
        return

    build_table(args.url, args.rows)
    with tempfile.TemporaryDirectory() as tmp:
        parquet = str(Path(tmp) / "extract.parquet")
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        child = subprocess.run(
            [sys.executable, __file__, "--extract-child", args.url, parquet],
            check=True,
            capture_output=True,
            text=True,
        )
        peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        extract = json.loads(child.stdout.strip().splitlines()[-1])
        assert peak_kb >= before
        published_rows, publish_s = publish(args.url, parquet)
        copy_rows, copy_s = psql_copy(args.url, Path(tmp))
    assert extract["rows"] == published_rows == copy_rows == args.rows
    result = {
        "rows": args.rows,
        "columns": 15,
        "extract_rows_per_s": extract["rows"] / extract["seconds"],
        "extract_seconds": extract["seconds"],
        "extract_peak_rss_mb": peak_kb / 1024,
        "publish_rows_per_s": published_rows / publish_s,
        "publish_seconds": publish_s,
        "psql_copy_rows_per_s": copy_rows / copy_s,
        "psql_copy_seconds": copy_s,
        "publish_vs_copy_ratio": (published_rows / publish_s) / (copy_rows / copy_s),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    import sqlalchemy as sa

    engine = sa.create_engine(args.url)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")


if __name__ == "__main__":
    main()
