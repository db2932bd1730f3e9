"""The example DAGs of issue 20: weekly retrain + daily resample, and dbt on the published alias.

Parsing is checked for every new DAG file (fast imports: no torch/pandas/GX at parse time); the
retrain/resample pair runs end to end with real Airflow (``airflow dags test``) on an embedded home.
"""

from __future__ import annotations

import json
import os
import runpy
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import REPO
from test_provider import HEAVY

DAGS = REPO / "dags"
NEW_DAGS = {
    "example_adult_weekly_retrain": DAGS / "example_adult_weekly_retrain.py",
    "example_adult_daily_resample": DAGS / "example_adult_daily_resample.py",
    "example_dbt_on_synthetic_adult": DAGS / "example_dbt_on_synthetic_adult.py",
}
TARGET = "adult_synthetic_daily"


@pytest.mark.parametrize("dag_id", sorted(NEW_DAGS))
def test_each_new_dag_parses_without_importing_anything_heavy(dag_id: str) -> None:
    code = f"""
import sys, json, runpy
ns = runpy.run_path({str(NEW_DAGS[dag_id])!r}, run_name="dag_file")
assert ns["dag"].dag_id == {dag_id!r}, ns["dag"].dag_id
print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [], out.stdout


def _dag(path: Path):  # type: ignore[no-untyped-def]
    return runpy.run_path(str(path), run_name="dag_file")["dag"]


def test_the_pair_trains_weekly_and_resamples_daily_the_same_table() -> None:
    weekly, daily = (
        _dag(NEW_DAGS["example_adult_weekly_retrain"]),
        _dag(NEW_DAGS["example_adult_daily_resample"]),
    )
    assert [t.task_id for t in weekly.topological_sort()] == [
        f"retrain_adult.{t}" for t in ("extract", "train", "sample", "validate", "publish")
    ]
    assert [t.task_id for t in daily.topological_sort()] == [
        f"resample_adult.{t}" for t in ("sample", "validate", "publish")
    ]
    assert (weekly.schedule, daily.schedule) == ("@weekly", "@daily")
    (weekly_publish,) = [t for t in weekly.tasks if t.task_id.endswith(".publish")]
    (daily_sample,) = [t for t in daily.tasks if t.task_id.endswith(".sample")]
    (daily_publish,) = [t for t in daily.tasks if t.task_id.endswith(".publish")]
    # the daily DAG re-samples exactly the table the weekly one publishes, and reads no real data
    assert daily_sample.resample_of == "adult" and daily_sample.model is None
    assert weekly_publish.target_table == daily_sample.target_table == daily_publish.target_table == TARGET
    assert not any(t.task_id.endswith((".extract", ".train")) for t in daily.tasks)
    assert [a.name for a in weekly_publish.outlets] == [a.name for a in daily_publish.outlets]


def test_the_dbt_dag_is_scheduled_on_the_alias_the_postgres_refresh_publishes_through() -> None:
    from airflow.sdk import AssetAlias

    refresh = _dag(DAGS / "example_synthesize_postgres_s3.py")
    (publish,) = [t for t in refresh.tasks if t.task_id.endswith(".publish")]
    published = [o.name for o in publish.outlets if isinstance(o, AssetAlias)]
    downstream = _dag(NEW_DAGS["example_dbt_on_synthetic_adult"])
    condition = downstream.timetable.asset_condition  # schedule=[alias]: an AssetAll of one alias
    scheduled = [o.name for o in condition.objects if isinstance(o, AssetAlias)]
    assert published == ["dpsynth__adult__synthetic"]
    assert scheduled == published
    project = DAGS / "dbt" / "synthetic_adult"
    assert (project / "dbt_project.yml").is_file()
    assert "source('dpsynth', 'adult')" in (project / "models" / "income_by_education.sql").read_text()


def _dags_test(dag_id: str, home: Path, conf: dict[str, int]) -> tuple[str, str]:
    """``airflow dags test`` in its own process (real CLI, real task runner): (state, logs)."""
    env = {**os.environ, "AIRFLOW__DPSYNTH__HOME": str(home)}
    airflow = Path(sys.executable).with_name("airflow")
    proc = subprocess.run(
        [str(airflow), "dags", "test", dag_id, "-c", json.dumps(conf)],
        env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    db = sqlite3.connect(Path(os.environ["AIRFLOW_HOME"]) / "airflow.db")
    (state,) = db.execute(
        "SELECT state FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1", (dag_id,)
    ).fetchone()
    db.close()
    return str(state), proc.stdout + proc.stderr


@pytest.mark.slow
def test_weekly_retrain_then_daily_resample_publishes_new_rows_without_spending(
    airflow_db, adult_frame, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    from synth_core.datasets import adult_table, write_frame_to_table
    from synth_core.ledger import PrivacyLedger

    home = tmp_path / "dpsynth"
    home.mkdir()
    engine = sa.create_engine(f"sqlite:///{home / 'warehouse.db'}")
    write_frame_to_table(engine, adult_frame.head(3_000), adult_table())
    latest = home / "objects" / "published" / TARGET / "_latest.json"

    # before any training there is nothing to re-sample: the daily DAG fails, spending nothing
    state, logs = _dags_test("example_adult_daily_resample", home, {"num_rows": 100})
    assert state == "failed" and "has no published release to re-sample" in logs, logs[-3000:]

    state, logs = _dags_test("example_adult_weekly_retrain", home, {"num_rows": 2_000})
    assert state == "success", logs[-3000:]
    trained = json.loads(latest.read_text())
    ledger = PrivacyLedger(f"sqlite:///{home / 'ledger.db'}")
    spends = [e for e in ledger.entries() if e["entry_type"] == "spend"]
    assert len(spends) == 1 and 0 < spends[0]["epsilon"] <= 3.0
    spent = ledger.status("adult").spent_epsilon
    with engine.connect() as conn:
        first = conn.exec_driver_sql(f"SELECT * FROM {TARGET} ORDER BY rowid").fetchall()

    state, logs = _dags_test("example_adult_daily_resample", home, {"num_rows": 1_500})
    assert state == "success", logs[-3000:]
    resampled = json.loads(latest.read_text())
    # the live release's model was re-sampled: a new release, same model, no budget spent
    assert resampled["run_id"] != trained["run_id"] and resampled["model_uri"] == trained["model_uri"]
    assert resampled["resample_only"] and resampled["epsilon_spent_this_run"] == 0.0
    assert resampled["epsilon"] == trained["epsilon"]  # the release still carries its model's ε
    assert ledger.status("adult").spent_epsilon == spent
    assert [e for e in ledger.entries() if e["entry_type"] == "spend"] == spends
    (entry,) = [e for e in ledger.entries() if e["entry_type"] == "resample"]
    assert entry["epsilon"] == 0.0 and entry["run_id"] == resampled["run_id"]
    with engine.connect() as conn:
        second = conn.exec_driver_sql(f"SELECT * FROM {TARGET} ORDER BY rowid").fetchall()
    assert len(first) == 2_000 and len(second) == 1_500 and second != first[:1_500]
