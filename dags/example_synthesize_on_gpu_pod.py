"""Weekly DP synthetic refresh of a PostgreSQL table, trained on a GPU Kubernetes pod.

Extract, validate and publish run on the Airflow workers; training runs in a pod on a GPU node
(the trainer image from ``docker/``, one ``nvidia.com/gpu``), and the table is sampled as 4 shards
in 4 mapped CPU pods that are then combined, validated and published together.

Needs the ``kubernetes`` extra (``apache-airflow-providers-cncf-kubernetes``), a Kubernetes
connection (``kubernetes_default``, or in-cluster), an ``s3://`` object store the pods can reach,
and a Kubernetes secret ``dpsynth-object-store`` in the namespace holding the S3 credentials
(``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``): the pods get them from the secret, never as
values in their spec::

    kubectl -n dpsynth create secret generic dpsynth-object-store \\
        --from-literal=AWS_ACCESS_KEY_ID=... --from-literal=AWS_SECRET_ACCESS_KEY=...

The ledger stays with the Airflow task: the train task reserves ε before the pod starts and
settles what the pod reports. ``deferrable=True`` frees the worker slot while the GPU node scales up.
"""

from __future__ import annotations

from pathlib import Path

import pendulum
from airflow.sdk import DAG, AssetAlias, TaskGroup

from synth_provider.operators.kubernetes import SampleSynthesizerPodOperator, TrainSynthesizerPodOperator
from synth_provider.operators.shards import CombineShardsOperator, PlanShardsOperator
from synth_provider.operators.synthesize import (
    ExtractTableOperator,
    PublishSyntheticOperator,
    ValidateSyntheticOperator,
)
from synth_provider.task_group import synthetic_asset_alias

SPEC = Path(__file__).parent / "specs" / "adult.yaml"
IMAGE = "ghcr.io/dpsynth/dpsynth-trainer:0.1.0"  # built from docker/Dockerfile
COMMON = {
    "warehouse_conn_id": "warehouse_postgres",
    "object_store_uri": "s3://dpsynth-prod/adult",
    "aws_conn_id": "aws_dpsynth",
    "ledger_uri": None,  # [dpsynth] ledger_uri, or the warehouse's
}
POD = {
    "image": IMAGE,
    "namespace": "dpsynth",
    "object_store_uri": COMMON["object_store_uri"],
    "ledger_uri": COMMON["ledger_uri"],
    "credentials_secret": "dpsynth-object-store",
    "service_account_name": "dpsynth-trainer",
    "deferrable": True,
}

with (
    DAG(
        dag_id="example_synthesize_on_gpu_pod",
        schedule="@weekly",
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
        max_active_runs=1,
        tags=["dpsynth", "example", "kubernetes", "gpu"],
        doc_md=__doc__,
    ) as dag,
    TaskGroup(group_id="synthesize_adult_on_gpu"),
):
    extract = ExtractTableOperator(
        task_id="extract", source_table="adult", spec=str(SPEC), epsilon=3.0, delta=1e-6,
        lifetime_epsilon=30.0, lifetime_delta=1e-5, **COMMON,
    )  # fmt: skip
    train = TrainSynthesizerPodOperator(
        task_id="train",
        staged=extract.output,
        epsilon=3.0,
        delta=1e-6,
        generator="dp_tvae",
        generator_params={"epochs": 30, "batch_size": 2000},
        gpus=1,  # gpus=4: DPDDP over 4 GPUs in one pod, same ε
        cpu="8",
        memory="32Gi",
        **POD,
    )
    plan = PlanShardsOperator(
        task_id="plan_shards", model=train.output, num_rows=1_000_000, num_shards=4, **COMMON
    )
    shards = SampleSynthesizerPodOperator.partial(
        task_id="sample_shard", cpu="2", memory="2Gi", **POD
    ).expand(shard=plan.output)
    sample = CombineShardsOperator(task_id="sample", shards=shards.output, **COMMON)
    validate = ValidateSyntheticOperator(
        task_id="validate", staged=extract.output, model=train.output, synthetic=sample.output, **COMMON
    )
    PublishSyntheticOperator(
        task_id="publish", staged=extract.output, model=train.output, synthetic=sample.output,
        validation=validate.output, target_schema="synthetic",
        outlets=[AssetAlias(synthetic_asset_alias("adult", "synthetic"))], **COMMON,
    )  # fmt: skip
