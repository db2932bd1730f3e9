"""The example DAG end to end with real Airflow (``dag.test()``), on the embedded defaults."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

pytestmark = pytest.mark.slow

MARKER = "ZZ-PLANTED-MARKER-a41c"
MARKER_NUMBER = 7_777_777  # a unique fnlwgt (no public bounds for that column)
NUM_ROWS = 3_000


@dataclass
class DagRunResult:
    state: str
    logs: str
    home: Path
    airflow_home: Path


def run_example_dag(home: Path, run_conf: dict[str, int]) -> DagRunResult:
    """``airflow dags test`` in its own process (real CLI, real task runner), logs captured."""
    airflow_home = Path(os.environ["AIRFLOW_HOME"])
    env = {**os.environ, "AIRFLOW__DPSYNTH__HOME": str(home)}
    airflow = Path(sys.executable).with_name("airflow")
    proc = subprocess.run(
        [str(airflow), "dags", "test", "example_synthesize_adult", "-c", json.dumps(run_conf)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    db = sqlite3.connect(airflow_home / "airflow.db")
    (state,) = db.execute(
        "SELECT state FROM dag_run WHERE dag_id = 'example_synthesize_adult' ORDER BY id DESC LIMIT 1"
    ).fetchone()
    db.close()
    return DagRunResult(str(state), proc.stdout + proc.stderr, home, airflow_home)


def seed(home: Path, frame: pd.DataFrame) -> sa.engine.Engine:
    from synth_core.datasets import adult_table, write_frame_to_table

    engine = sa.create_engine(f"sqlite:///{home / 'warehouse.db'}")
    write_frame_to_table(engine, frame, adult_table())
    return engine


@pytest.fixture(scope="module")
def marker_run(airflow_db, adult_frame, tmp_path_factory) -> DagRunResult:  # type: ignore[no-untyped-def]
    """One weekly refresh on Adult with one planted row whose values appear nowhere else."""
    home = tmp_path_factory.mktemp("dpsynth-home")
    frame = adult_frame.copy()
    frame.loc[123, "native_country"] = MARKER
    frame.loc[123, "fnlwgt"] = MARKER_NUMBER
    seed(home, frame)
    return run_example_dag(home, {"num_rows": NUM_ROWS, "epochs": 4})


def test_refresh_publishes_the_source_schema_with_the_requested_rows(marker_run: DagRunResult) -> None:
    assert marker_run.state == "success", marker_run.logs[-3000:]
    engine = sa.create_engine(f"sqlite:///{marker_run.home / 'warehouse.db'}")
    inspector = sa.inspect(engine)
    source_cols = [(c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns("adult")]
    synth_cols = [
        (c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns("adult_synthetic")
    ]
    assert synth_cols == source_cols
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM adult_synthetic")).scalar_one() == NUM_ROWS
        # SQLite stores per-value types: every value has its column's storage class
        for name, sql_type, _ in source_cols:
            kinds = {
                r[0] for r in conn.exec_driver_sql(f'SELECT DISTINCT typeof("{name}") FROM adult_synthetic')
            }
            assert kinds <= ({"integer"} if sql_type == "INTEGER" else {"text", "null"}), (name, kinds)
    # the published Parquet and its manifest, written last, agree with the table
    (manifest_path,) = (marker_run.home / "objects" / "published" / "adult_synthetic").glob(
        "*/_manifest.json"
    )
    manifest = json.loads(manifest_path.read_text())
    assert manifest["rows"] == NUM_ROWS and manifest["synthetic_table"] == "adult_synthetic"
    assert manifest["epsilon"] <= 3.0 and manifest["delta"] == 1e-6
    parquet = pd.read_parquet(manifest["parquet_uri"].removeprefix("file://"))
    source = pd.read_sql_table("adult", engine)
    assert list(parquet.columns) == list(source.columns) and len(parquet) == NUM_ROWS
    assert Path(manifest["report_uri"].removeprefix("file://")).is_file()
    # progress with ε spent so far reached the task log
    assert "ε spent so far" in marker_run.logs
    # the "Synthetic data report" extra link of validate and publish points at the reports
    db = sqlite3.connect(marker_run.airflow_home / "airflow.db")
    links = dict(
        db.execute(
            "SELECT task_id, value FROM xcom WHERE dag_id = 'example_synthesize_adult' AND key = 'dpsynth_report_url'"
        ).fetchall()
    )
    db.close()
    assert json.loads(links["synthesize_adult.publish"]) == manifest["report_uri"]
    assert Path(json.loads(links["synthesize_adult.validate"]).removeprefix("file://")).is_file()
    from synth_provider.links.report import SyntheticDataReportLink

    assert SyntheticDataReportLink.name == "Synthetic data report"


def test_no_planted_value_leaks_into_bundle_logs_xcom_or_reports(marker_run: DagRunResult) -> None:
    assert marker_run.state == "success"
    needles = [MARKER, str(MARKER_NUMBER)]
    objects = marker_run.home / "objects"
    (bundle,) = objects.glob("models/adult/*/model.dpsynth.zip")
    with zipfile.ZipFile(bundle) as zf:
        bundle_bytes = b"".join(zf.read(n) for n in zf.namelist())
    for needle in needles:
        assert needle.encode() not in bundle_bytes, f"{needle} in the model bundle"
        assert needle not in marker_run.logs, f"{needle} in the task logs"
    # reports, validation results, Data Docs, synthetic and published data: everything outside staging
    for path in objects.rglob("*"):
        if path.is_file() and "staging" not in path.parts:
            data = path.read_bytes()
            for needle in needles:
                assert needle.encode() not in data, f"{needle} in {path.relative_to(objects)}"
    # XCom values in Airflow's metadata DB
    db = sqlite3.connect(marker_run.airflow_home / "airflow.db")
    xcoms = " ".join(str(row) for row in db.execute("SELECT value FROM xcom"))
    assert "model_uri" in xcoms  # the manifests are there...
    for needle in needles:
        assert needle not in xcoms  # ...without data
    # the warehouse's synthetic table holds neither
    engine = sa.create_engine(f"sqlite:///{marker_run.home / 'warehouse.db'}")
    synth = pd.read_sql_table("adult_synthetic", engine)
    assert MARKER not in set(synth["native_country"].dropna()) and MARKER_NUMBER not in set(synth["fnlwgt"])


def test_a_run_past_the_lifetime_budget_is_refused_before_reading(
    airflow_db, adult_frame, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    from synth_core.ledger import PrivacyLedger

    home = tmp_path / "dpsynth"
    home.mkdir()
    seed(home, adult_frame.head(500))
    PrivacyLedger(f"sqlite:///{home / 'ledger.db'}").grant("adult", 2.0, 1e-5)
    result = run_example_dag(home, {"num_rows": 100, "epochs": 1})
    assert result.state == "failed"
    # the grant made under the plain name carried over to the key of what is read (main.adult)
    assert "main.adult': remaining epsilon 2" in result.logs and "privacy budget exhausted" in result.logs
    assert "this run requests epsilon 3" in result.logs
    assert not (home / "objects").exists()  # nothing staged: the data was never read
    ledger = PrivacyLedger(f"sqlite:///{home / 'ledger.db'}")
    assert all(ledger.status(key).spent_epsilon == 0.0 for key in ledger.keys())  # noqa: SIM118


def test_a_missing_table_fails_the_run_with_its_name(airflow_db, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    home = tmp_path / "dpsynth"
    home.mkdir()
    result = run_example_dag(home, {"num_rows": 100, "epochs": 1})
    assert result.state == "failed"
    assert "table 'adult' does not exist" in result.logs
