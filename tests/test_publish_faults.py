"""Faults in the middle of a publish, through the real operators: a dead S3 server, a killed
warehouse session. The task fails with a retryable error, the previous release stays intact and
readable, and a retry completes the release."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import ADULT_SPEC_PATH
from s3_server import S3Server

pytestmark = pytest.mark.slow

FIRST_ROWS = 1_000
SECOND_ROWS = 200_000


@dataclass
class Pipeline:
    database: str
    bucket: str
    s3: S3Server
    common: dict[str, Any]
    staged: dict[str, Any]
    model: dict[str, Any]

    def engine(self) -> sa.engine.Engine:
        return sa.create_engine(f"postgresql+psycopg://postgres@127.0.0.1:5432/{self.database}")

    def release(self, run_id: str, rows: int) -> tuple[dict[str, Any], dict[str, Any]]:
        """Sample and validate a release of ``rows`` rows; returns (synthetic, validation) manifests."""
        from synth_provider.operators.synthesize import SampleSynthesizerOperator, ValidateSyntheticOperator

        ctx = {"run_id": run_id}
        synthetic = SampleSynthesizerOperator(
            task_id="sample", model=self.model, num_rows=rows, seed=1, **self.common
        ).execute(ctx)
        validation = ValidateSyntheticOperator(
            task_id="validate", staged=self.staged, model=self.model, synthetic=synthetic, compute_metrics=False, enforce_privacy_thresholds=False, null_rate_tolerance=1.0,
            **self.common,
        ).execute(ctx)  # fmt: skip
        return synthetic, validation

    def publish(self, run_id: str, synthetic: dict[str, Any], validation: dict[str, Any]) -> dict[str, Any]:
        from synth_provider.operators.synthesize import PublishSyntheticOperator

        op = PublishSyntheticOperator(
            task_id="publish", staged=self.staged, model=self.model, synthetic=synthetic, validation=validation,
            target_schema="synthetic", **self.common,
        )  # fmt: skip
        return dict(op.execute({"run_id": run_id}))

    def live_rows(self) -> int:
        engine = self.engine()
        with engine.connect() as conn:
            n = int(conn.exec_driver_sql("SELECT count(*) FROM synthetic.adult").scalar_one())
        engine.dispose()
        return n

    def latest_run(self) -> str:
        body = self.s3.client().get_object(
            Bucket=self.bucket, Key="dpsynth/published/synthetic.adult/_latest.json"
        )["Body"]
        return str(json.loads(body.read())["run_id"])


@pytest.fixture(scope="module")
def pipeline(adult_frame, s3_server: S3Server, tmp_path_factory) -> Iterator[Pipeline]:  # type: ignore[no-untyped-def]
    from synth_core.datasets import adult_table, write_frame_to_table
    from synth_provider.operators.synthesize import ExtractTableOperator, TrainSynthesizerOperator

    database = f"dpsynth_fault_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(
        "postgresql+psycopg://postgres@127.0.0.1:5432/postgres", isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{database}"')
    engine = sa.create_engine(f"postgresql+psycopg://postgres@127.0.0.1:5432/{database}")
    write_frame_to_table(engine, adult_frame.head(3_000), adult_table())
    engine.dispose()
    s3_server.start()
    bucket = s3_server.create_bucket("faults")
    home = tmp_path_factory.mktemp("dpsynth-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AIRFLOW__DPSYNTH__HOME", str(home))
        mp.setenv(
            "AIRFLOW_CONN_FAULT_PG",
            json.dumps(
                {
                    "conn_type": "postgres",
                    "host": "127.0.0.1",
                    "port": 5432,
                    "login": "postgres",
                    "schema": database,
                }
            ),
        )
        mp.setenv(
            "AIRFLOW_CONN_FAULT_S3",
            json.dumps(
                {
                    "conn_type": "aws", "login": s3_server.access_key, "password": s3_server.secret_key,
                    "extra": {"endpoint_url": s3_server.endpoint_url, "region_name": s3_server.region},
                }
            ),
        )  # fmt: skip
        common = {
            "warehouse_conn_id": "fault_pg", "aws_conn_id": "fault_s3", "object_store_uri": f"s3://{bucket}/dpsynth",
        }  # fmt: skip
        ctx = {"run_id": "first"}
        staged = ExtractTableOperator(
            task_id="extract", source_table="adult", spec=str(ADULT_SPEC_PATH), **common
        ).execute(ctx)
        model = TrainSynthesizerOperator(
            task_id="train", staged=staged, epsilon=2.0, lifetime_epsilon=10.0,
            generator_params={"epochs": 1, "hidden": [32]}, **common,
        ).execute(ctx)  # fmt: skip
        pipe = Pipeline(database, bucket, s3_server, common, staged, model)
        synthetic, validation = pipe.release("first", FIRST_ROWS)
        pipe.publish("first", synthetic, validation)
        yield pipe
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE "{database}" WITH (FORCE)')
    admin.dispose()


def test_s3_outage_during_publish_is_retryable_and_loses_nothing(pipeline: Pipeline) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    from synth_core.object_store import ObjectStoreUnavailableError

    assert pipeline.live_rows() == FIRST_ROWS and pipeline.latest_run() == "first"
    synthetic, validation = pipeline.release("s3-outage", 5_000)
    with pipeline.s3.stopped():
        with pytest.raises(ObjectStoreUnavailableError) as err:
            pipeline.publish("s3-outage", synthetic, validation)
        assert not isinstance(err.value, AirflowFailException)  # Airflow retries it
        assert pipeline.live_rows() == FIRST_ROWS  # the warehouse was never touched
    assert pipeline.latest_run() == "first"  # readers still see the previous release
    manifest = pipeline.publish("s3-outage", synthetic, validation)  # the retry
    assert (
        manifest["rows"] == 5_000 and pipeline.live_rows() == 5_000 and pipeline.latest_run() == "s3-outage"
    )


def _kill_publishing_session(database: str, stop: threading.Event, killed: list[int]) -> None:
    """Terminate the first session of ``database`` that holds an open write transaction."""
    engine = sa.create_engine(
        "postgresql+psycopg://postgres@127.0.0.1:5432/postgres", isolation_level="AUTOCOMMIT"
    )
    with engine.connect() as conn:
        while not stop.is_set() and not killed:
            pids = conn.execute(
                sa.text(
                    "SELECT pid FROM pg_stat_activity WHERE datname = :db AND backend_xid IS NOT NULL "
                    "AND pid <> pg_backend_pid()"
                ),
                {"db": database},
            ).scalars().all()  # fmt: skip
            for pid in pids:
                conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
                killed.append(pid)
            time.sleep(0.002)
    engine.dispose()


def test_warehouse_session_killed_mid_publish_is_retryable_and_loses_nothing(pipeline: Pipeline) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    before_rows, before_run = pipeline.live_rows(), pipeline.latest_run()
    synthetic, validation = pipeline.release("pg-killed", SECOND_ROWS)
    stop, killed = threading.Event(), []  # type: ignore[var-annotated]
    killer = threading.Thread(target=_kill_publishing_session, args=(pipeline.database, stop, killed))
    killer.start()
    try:
        with pytest.raises(sa.exc.OperationalError) as err:
            pipeline.publish("pg-killed", synthetic, validation)
    finally:
        stop.set()
        killer.join(10)
    assert killed and not isinstance(err.value, AirflowFailException)
    assert pipeline.live_rows() == before_rows and pipeline.latest_run() == before_run
    engine = pipeline.engine()
    leftovers = [t for t in sa.inspect(engine).get_table_names(schema="synthetic") if "__dpsynth_" in t]
    with engine.connect() as conn:
        runs = [r[0] for r in conn.exec_driver_sql("SELECT run_id FROM synthetic.dpsynth_releases")]
    engine.dispose()
    assert leftovers == [] and "pg-killed" not in runs
    manifest = pipeline.publish("pg-killed", synthetic, validation)  # the retry
    assert manifest["rows"] == SECOND_ROWS and pipeline.live_rows() == SECOND_ROWS
    assert pipeline.latest_run() == "pg-killed"


def test_lineage_names_the_source_table_and_the_outputs(pipeline: Pipeline) -> None:
    from synth_provider.operators.synthesize import ExtractTableOperator, PublishSyntheticOperator

    extract = ExtractTableOperator(
        task_id="extract", source_table="adult", spec=str(ADULT_SPEC_PATH), **pipeline.common
    )
    extract.execute({"run_id": "lineage"})
    lineage = extract.get_openlineage_facets_on_complete(None)
    assert [(d.namespace, d.name) for d in lineage.inputs] == [
        ("postgres://127.0.0.1:5432", f"{pipeline.database}.public.adult")
    ]
    assert {d.namespace for d in lineage.outputs} == {f"s3://{pipeline.bucket}"}
    synthetic, validation = pipeline.release("lineage", 500)
    publish = PublishSyntheticOperator(
        task_id="publish", staged=pipeline.staged, model=pipeline.model, synthetic=synthetic,
        validation=validation, target_schema="synthetic", **pipeline.common,
    )  # fmt: skip
    publish.execute({"run_id": "lineage"})
    out = [(d.namespace, d.name) for d in publish.get_openlineage_facets_on_complete(None).outputs]
    assert out[0] == ("postgres://127.0.0.1:5432", f"{pipeline.database}.synthetic.adult")
    assert out[1][0] == f"s3://{pipeline.bucket}" and out[1][1].endswith("/lineage/adult.parquet")
