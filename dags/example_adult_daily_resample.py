"""Daily resample-only refresh of ``adult_synthetic_daily``: new synthetic rows, no budget spent.

Sampling from a saved DP model is post-processing, so this DAG can run as often as the table's
consumers like. Each run finds the live release of ``adult_synthetic_daily`` through its
``published/adult_synthetic_daily/_latest.json``, samples fresh rows from that release's model
(``SampleSynthesizerOperator(resample_of="adult")``), runs the release gate's schema, type,
domain, rule and NULL-rate checks on them (the real-data evaluation of the model's own release
stands: no real row is read), and publishes through the same atomic swap, ``sources.yml``,
manifest and Asset alias as a training refresh. The ledger records each run as a ``resample``
entry with ε = 0.

The model comes from ``example_adult_weekly_retrain``: until that DAG has published once, a run
here fails (no retry) with ``table 'adult' has no published release to re-sample``.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param

from synth_provider.task_group import resample_table_task_group

#: the table the weekly DAG publishes (see ``example_adult_weekly_retrain.TARGET_TABLE``)
TARGET_TABLE = "adult_synthetic_daily"

with DAG(
    dag_id="example_adult_daily_resample",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["dpsynth", "example", "resample"],
    doc_md=__doc__,
    render_template_as_native_obj=True,
    params={
        "num_rows": Param(32_000, type="integer", minimum=1, description="rows of the synthetic table"),
    },
) as dag:
    resample_table_task_group(
        source_table="adult",
        target_table=TARGET_TABLE,
        num_rows="{{ params.num_rows }}",
        group_id="resample_adult",
    )

if __name__ == "__main__":
    dag.test()
