"""Weekly DP retraining of the UCI Adult table: the half of the refresh that spends budget.

Pairs with ``example_adult_daily_resample``: this DAG trains a new DP model once a week (it reads
the real rows and spends ε=3, δ=1e-6 of the table's lifetime budget, ε=30), validates and publishes
``adult_synthetic_daily``; the daily DAG then re-samples that model every day, reading no real row
and spending nothing. Ten weekly runs exhaust the budget: the ledger then refuses the eleventh
before it reads a row, while the daily resample goes on publishing fresh rows from the last model.

The generator is ``mst`` (Private-PGM's MST: noisy 1- and 2-way marginals, one fit in seconds to a
minute, no epochs to tune; needs the ``marginal`` extra). Without that extra, use ``dp_tvae``
with ``generator_params={"epochs": 15}`` as in ``example_synthesize_adult``.

Embedded defaults as ``example_synthesize_adult`` (``{[dpsynth] home}``: ``warehouse.db``,
``objects/``, ``ledger.db``; seed the warehouse with ``python scripts/demo.py --seed-only``).
Every publish emits an Asset event through ``AssetAlias("dpsynth__adult__adult_synthetic_daily")``.
"""

from __future__ import annotations

from pathlib import Path

import pendulum
from airflow.sdk import DAG, Param

from synth_provider.task_group import synthesize_table_task_group

SPEC = Path(__file__).parent / "specs" / "adult.yaml"
#: the published table both DAGs of the pair refresh (the daily one re-samples its live model)
TARGET_TABLE = "adult_synthetic_daily"

with DAG(
    dag_id="example_adult_weekly_retrain",
    schedule="@weekly",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["dpsynth", "example", "retrain"],
    doc_md=__doc__,
    render_template_as_native_obj=True,
    params={
        "num_rows": Param(32_000, type="integer", minimum=1, description="rows of the synthetic table"),
    },
) as dag:
    synthesize_table_task_group(
        source_table="adult",
        spec=str(SPEC),
        epsilon=3.0,
        delta=1e-6,
        lifetime_epsilon=30.0,
        lifetime_delta=1e-5,
        generator="mst",
        num_rows="{{ params.num_rows }}",
        target_table=TARGET_TABLE,
        group_id="retrain_adult",
    )

if __name__ == "__main__":
    dag.test()
