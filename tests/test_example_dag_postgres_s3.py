"""The Postgres + S3 example DAG end to end: real PostgreSQL, a real S3 server (SeaweedFS), real
Airflow connections and variables, ``airflow dags test``, then dbt on the published sources.yml."""

from __future__ import annotations

import io
import json
import os
import re
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
import yaml
from s3_server import S3Server

pytestmark = pytest.mark.slow

NUM_ROWS = 2_000
DBT = Path(sys.executable).with_name("dbt")


@dataclass
class Run:
    state: str
    logs: str
    database: str
    bucket: str
    s3: S3Server
    env: dict[str, str]


@pytest.fixture(scope="module")
def pg_database() -> Iterator[str]:
    name = f"dpsynth_e2e_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(
        "postgresql+psycopg://postgres@127.0.0.1:5432/postgres", isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    yield name
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
    admin.dispose()


@pytest.fixture(scope="module")
def refresh(airflow_db, adult_frame, pg_database: str, s3_server: S3Server, tmp_path_factory) -> Run:  # type: ignore[no-untyped-def]
    from synth_core.datasets import adult_table, write_frame_to_table

    engine = sa.create_engine(f"postgresql+psycopg://postgres@127.0.0.1:5432/{pg_database}")
    write_frame_to_table(engine, adult_frame, adult_table())  # public.adult
    engine.dispose()
    s3_server.start()
    bucket = s3_server.create_bucket("e2e")
    env = {
        **os.environ,
        "AIRFLOW__DPSYNTH__HOME": str(tmp_path_factory.mktemp("dpsynth-home")),
        "AIRFLOW_CONN_DPSYNTH_WAREHOUSE": json.dumps(
            {
                "conn_type": "postgres",
                "host": "127.0.0.1",
                "port": 5432,
                "login": "postgres",
                "schema": pg_database,
            }
        ),
        "AIRFLOW_CONN_DPSYNTH_S3": json.dumps(
            {
                "conn_type": "aws",
                "login": s3_server.access_key,
                "password": s3_server.secret_key,
                "extra": {"endpoint_url": s3_server.endpoint_url, "region_name": s3_server.region},
            }
        ),
        "AIRFLOW_VAR_DPSYNTH_OBJECT_STORE_URI": f"s3://{bucket}/adult",
        # the ledger lives in the warehouse too
        "AIRFLOW_VAR_DPSYNTH_LEDGER_URI": f"postgresql+psycopg://postgres@127.0.0.1:5432/{pg_database}",
    }
    airflow = Path(sys.executable).with_name("airflow")
    proc = subprocess.run(
        [str(airflow), "dags", "test", "example_synthesize_postgres_s3", "-c", json.dumps({"num_rows": NUM_ROWS, "epochs": 2})],
        env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    db = sqlite3.connect(Path(os.environ["AIRFLOW_HOME"]) / "airflow.db")
    (state,) = db.execute(
        "SELECT state FROM dag_run WHERE dag_id = 'example_synthesize_postgres_s3' ORDER BY id DESC LIMIT 1"
    ).fetchone()
    db.close()
    return Run(str(state), proc.stdout + proc.stderr, pg_database, bucket, s3_server, env)


def _engine(run: Run) -> sa.engine.Engine:
    return sa.create_engine(f"postgresql+psycopg://postgres@127.0.0.1:5432/{run.database}")


def _manifest(run: Run) -> dict[str, object]:
    client = run.s3.client()
    keys = [
        o["Key"] for o in client.list_objects_v2(Bucket=run.bucket, Prefix="adult/published/")["Contents"]
    ]
    (key,) = [k for k in keys if k.endswith("/_manifest.json")]
    return dict(json.loads(client.get_object(Bucket=run.bucket, Key=key)["Body"].read()))


def test_refresh_publishes_to_postgres_and_s3(refresh: Run) -> None:
    assert refresh.state == "success", refresh.logs[-4000:]
    engine = _engine(refresh)
    insp = sa.inspect(engine)
    source = [(c["name"], str(c["type"]), c["nullable"]) for c in insp.get_columns("adult", schema="public")]
    synth = [
        (c["name"], str(c["type"]), c["nullable"]) for c in insp.get_columns("adult", schema="synthetic")
    ]
    assert synth == source  # same name and columns, another schema
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM synthetic.adult").scalar_one() == NUM_ROWS
        (run_id, rows, eps) = conn.exec_driver_sql(
            "SELECT run_id, row_count, epsilon FROM synthetic.dpsynth_releases"
        ).one()
    comment = insp.get_table_comment("adult", schema="synthetic")["text"]
    assert (
        comment.startswith("SYNTHETIC data (differentially private)")
        and run_id in comment
        and re.search(r"ε=(2\.9\d*|3), δ=1e-06,", comment)  # the spent ε (PLD: at most the target 3)
    )
    assert rows == NUM_ROWS and eps <= 3.0

    manifest = _manifest(refresh)
    assert manifest["run_id"] == run_id and manifest["rows"] == NUM_ROWS
    assert manifest["synthetic_table"] == "synthetic.adult"
    assert manifest["asset_uri"] == f"postgres://127.0.0.1:5432/{refresh.database}/synthetic/adult"
    for key in ("parquet_uri", "sources_yml_uri", "report_uri", "model_uri"):
        assert str(manifest[key]).startswith(f"s3://{refresh.bucket}/adult/"), key
    client = refresh.s3.client()
    parquet_key = str(manifest["parquet_uri"]).removeprefix(f"s3://{refresh.bucket}/")
    assert "/published/synthetic.adult/" in f"/{parquet_key}" and "/adult.parquet" in parquet_key
    parquet = pd.read_parquet(
        io.BytesIO(client.get_object(Bucket=refresh.bucket, Key=parquet_key)["Body"].read())
    )
    assert len(parquet) == NUM_ROWS and list(parquet.columns) == [c[0] for c in source]
    latest = json.loads(
        client.get_object(Bucket=refresh.bucket, Key="adult/published/synthetic.adult/_latest.json")[
            "Body"
        ].read()
    )
    assert latest["run_id"] == run_id
    # the report's extra link opens it through the api-server, presigned when clicked
    import urllib.parse
    import urllib.request

    db = sqlite3.connect(Path(os.environ["AIRFLOW_HOME"]) / "airflow.db")
    (url,) = db.execute(
        "SELECT value FROM xcom WHERE dag_id = 'example_synthesize_postgres_s3' AND key = 'dpsynth_report_url' "
        "AND task_id LIKE '%publish' ORDER BY timestamp DESC LIMIT 1"
    ).fetchone()
    db.close()
    # (the task pushes the report's URI; the dpsynth UI plugin presigns it when the link is clicked)
    from synth_provider.links.report import report_link

    uri = json.loads(url)
    assert uri.startswith(f"s3://{refresh.bucket}/") and uri.endswith("/report.html")
    assert report_link(uri).endswith("/dpsynth/report-file?uri=" + urllib.parse.quote(uri, safe=""))
    from synth_core.object_store import ObjectStore

    url = ObjectStore(refresh.s3.options()).presigned_url(uri, 900)
    assert url.startswith(refresh.s3.endpoint_url) and "Signature" in url
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert b"<html" in resp.read(2000).lower()
    # the ledger (in the warehouse) recorded the spend
    with engine.connect() as conn:
        kinds = [
            r[0]
            for r in conn.exec_driver_sql("SELECT entry_type FROM dpsynth_privacy_ledger ORDER BY entry_id")
        ]
    assert kinds == ["grant", "reserve", "spend"]


def test_publish_emitted_an_asset_event_with_release_metadata(refresh: Run) -> None:
    assert refresh.state == "success"
    db = sqlite3.connect(Path(os.environ["AIRFLOW_HOME"]) / "airflow.db")
    rows = db.execute(
        "SELECT a.uri, e.extra FROM asset_event e JOIN asset a ON a.id = e.asset_id WHERE a.uri LIKE 'postgres://%'"
    ).fetchall()
    db.close()
    uri = f"postgres://127.0.0.1:5432/{refresh.database}/synthetic/adult"
    events = [json.loads(extra) for u, extra in rows if u == uri]
    assert events, rows
    assert events[-1]["rows"] == NUM_ROWS and events[-1]["epsilon"] <= 3.0 and events[-1]["run_id"]


def test_dbt_runs_on_the_published_sources_yml(refresh: Run, tmp_path: Path) -> None:
    assert refresh.state == "success"
    manifest = _manifest(refresh)
    key = str(manifest["sources_yml_uri"]).removeprefix(f"s3://{refresh.bucket}/")
    sources = refresh.s3.client().get_object(Bucket=refresh.bucket, Key=key)["Body"].read().decode()
    project = tmp_path / "dbt"
    (project / "models").mkdir(parents=True)
    (project / "dbt_project.yml").write_text(
        yaml.safe_dump(
            {"name": "downstream", "version": "1.0.0", "config-version": 2, "profile": "warehouse"}
        )
    )
    output = {"type": "postgres", "host": "127.0.0.1", "port": 5432, "user": "postgres", "password": "",
              "dbname": refresh.database, "schema": "analytics", "threads": 2}  # fmt: skip
    (project / "profiles.yml").write_text(
        yaml.safe_dump({"warehouse": {"target": "t", "outputs": {"t": output}}})
    )
    (project / "models" / "sources.yml").write_text(sources)
    (project / "models" / "adults.sql").write_text(
        "select age, income from {{ source('dpsynth', 'adult') }}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("DBT_")}
    env["DBT_SEND_ANONYMOUS_USAGE_STATS"] = "false"
    common = ["--project-dir", str(project), "--profiles-dir", str(project)]
    for args in (["parse"], ["run"], ["test"], ["source", "freshness"]):
        proc = subprocess.run(
            [str(DBT), *args, *common], capture_output=True, text=True, env=env, timeout=300
        )
        assert proc.returncode == 0, (args, proc.stdout[-3000:])
    results = json.loads((project / "target" / "sources.json").read_text())
    assert {r["status"] for r in results["results"]} == {"pass"}
    # a second publish over the dbt view (synthetic.adult now has a dependent view) still works:
    # covered by tests/test_warehouse_servers.py::test_postgres_publish_keeps_dependent_views


def test_the_downstream_dbt_dag_builds_on_the_live_release(refresh: Run) -> None:
    """dags/example_dbt_on_synthetic_adult.py (scheduled on the alias this refresh publishes
    through) run with ``airflow dags test``: dbt build with the release's own sources.yml."""
    assert refresh.state == "success"
    airflow = Path(sys.executable).with_name("airflow")
    proc = subprocess.run(
        [str(airflow), "dags", "test", "example_dbt_on_synthetic_adult"],
        env=refresh.env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    logs = proc.stdout + proc.stderr
    db = sqlite3.connect(Path(os.environ["AIRFLOW_HOME"]) / "airflow.db")
    (state,) = db.execute(
        "SELECT state FROM dag_run WHERE dag_id = 'example_dbt_on_synthetic_adult' ORDER BY id DESC LIMIT 1"
    ).fetchone()
    (value,) = db.execute(
        "SELECT value FROM xcom WHERE dag_id = 'example_dbt_on_synthetic_adult' AND key = 'return_value' "
        "ORDER BY timestamp DESC LIMIT 1"
    ).fetchone()
    db.close()
    assert state == "success", logs[-4000:]
    built = json.loads(value)
    assert built["run_id"] == _manifest(refresh)["run_id"]  # the live release was built on
    # the release's source tests (not_null, accepted_values...) and the project's model and tests ran
    assert built["results"].get("success") == 1 and built["results"].get("pass", 0) > 10, built
    assert not {"fail", "error"} & set(built["results"]), built
    with _engine(refresh).connect() as conn:
        rows = conn.exec_driver_sql("SELECT education, people FROM analytics.income_by_education").fetchall()
    assert sum(people for _, people in rows) == NUM_ROWS and len({e for e, _ in rows}) == len(rows)
