"""Weekly DP synthetic refresh of the UCI Adult table, on the embedded defaults.

Warehouse: the embedded SQLite file ``{[dpsynth] home}/warehouse.db`` (seed it with ``make demo``
or ``python scripts/demo.py --seed-only``); object store: ``{home}/objects``; ledger:
``{home}/ledger.db``; training on CPU.

Each run spends ε=3 (δ=1e-6) of the table's lifetime budget (ε=30): the ledger refuses the
eleventh refresh. To refresh more often without spending, re-sample a saved model (a
``SampleSynthesizerOperator`` with a model URI spends nothing).
"""

from __future__ import annotations

from pathlib import Path

import pendulum
from airflow.sdk import DAG, Param

from synth_provider.task_group import synthesize_table_task_group

SPEC = Path(__file__).parent / "specs" / "adult.yaml"

with DAG(
    dag_id="example_synthesize_adult",
    schedule="@weekly",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["dpsynth", "example"],
    doc_md=__doc__,
    # params render as numbers, not strings, in the templated operator arguments below
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
        target_table="adult_synthetic",
    )

if __name__ == "__main__":
    dag.test()
