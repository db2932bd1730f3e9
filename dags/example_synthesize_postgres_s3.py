"""Weekly DP synthetic refresh of a PostgreSQL table, with objects on S3.

Connections (Airflow connections, e.g. as ``AIRFLOW_CONN_*`` environment variables):

* ``dpsynth_warehouse`` — the PostgreSQL warehouse (``postgres`` type; the source table
  ``public.adult`` lives there, the synthetic one is published as ``synthetic.adult``);
* ``dpsynth_s3`` — S3 credentials (``aws`` type; extra ``{"endpoint_url": ...}`` for an
  S3-compatible server).

Variables: ``dpsynth_object_store_uri`` (default ``s3://dpsynth/adult``) — where staged, model,
report and published objects go; ``dpsynth_ledger_uri`` — the privacy ledger's SQLAlchemy URL
(default: the provider's ``[dpsynth] ledger_uri``).

The published table keeps the source's name and columns in the ``synthetic`` schema, so a dbt
project switches by schema only; ``sources.yml`` is published beside the Parquet. Downstream DAGs
can be scheduled on ``AssetAlias("dpsynth__adult__synthetic")``.
"""

from __future__ import annotations

from pathlib import Path

import pendulum
from airflow.sdk import DAG, Param

from synth_provider.task_group import synthesize_table_task_group

SPEC = Path(__file__).parent / "specs" / "adult.yaml"

with DAG(
    dag_id="example_synthesize_postgres_s3",
    schedule="@weekly",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["dpsynth", "example", "postgres", "s3"],
    doc_md=__doc__,
    render_template_as_native_obj=True,
    params={
        "num_rows": Param(32_000, type="integer", minimum=1, description="rows of the synthetic table"),
        "epochs": Param(15, type="integer", minimum=1, description="DP-SGD epochs"),
    },
) as dag:
    synthesize_table_task_group(
        source_table="adult",
        spec=str(SPEC),
        epsilon=3.0,
        delta=1e-6,
        lifetime_epsilon=30.0,
        lifetime_delta=1e-5,
        generator="dp_tvae",
        generator_params={"epochs": "{{ params.epochs }}", "batch_size": 500},
        num_rows="{{ params.num_rows }}",
        target_schema="synthetic",
        warehouse_conn_id="dpsynth_warehouse",
        aws_conn_id="dpsynth_s3",
        object_store_uri="{{ var.value.get('dpsynth_object_store_uri', 's3://dpsynth/adult') }}",
        ledger_uri="{{ var.value.get('dpsynth_ledger_uri', '') }}",
        retries=2,
        retry_delay=pendulum.duration(minutes=5),
    )

if __name__ == "__main__":
    dag.test()
