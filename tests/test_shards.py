"""Scale-out sampling: 1,000,000 synthetic rows as 4 mapped shards, each in its own process with
its peak memory measured, combined and published completely."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa
from pod_helpers import TINY_TVAE, subprocess_env

# Peak RSS is this process image's VmHWM: getrusage's ru_maxrss survives fork + exec, so in a
# child of a large pytest process it would report the parent's size, not the shard's.
SHARD_CHILD = """
import json, sys, torch
torch.set_num_threads(1)
from synth_provider.operators.shards import SampleShardOperator
shard = json.loads(sys.argv[1])
out = SampleShardOperator(task_id="sample_shard", shard=shard, chunk_rows=100_000).execute({"run_id": "r1"})
hwm_kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
out["peak_rss_mb"] = hwm_kb / 1024
print(json.dumps(out))
"""


@pytest.mark.slow
def signed_validation(home: Path, synthetic: dict[str, Any], *, rows: int) -> dict[str, Any]:
    """A passing validation record as the pipeline signs it (the release gate itself is tested in
    test_release_gate; these tests are about completeness)."""
    from synth_core.object_store import ObjectStore
    from synth_core.pipeline.records import ModelBundle
    from synth_core.pipeline.signing import sha256_of, sign, signing_key

    store = ObjectStore()
    record = sign(
        {"success": True, "rows": rows, "synthetic_sha256": sha256_of(store, synthetic["synthetic_uri"]),
         "model_sha256": ModelBundle.read(store, synthetic["model_uri"]).sha256},
        signing_key(home),
    )  # fmt: skip
    uri = store.put_bytes(synthetic["synthetic_uri"] + ".validation.json", json.dumps(record).encode())
    return {"success": True, "validation_uri": uri}


def test_a_million_rows_as_four_mapped_shards_are_published_completely_in_bounded_memory(
    dpsynth_home: Path, adult_split: Any
) -> None:
    import torch

    from synth_core.generators import create_synthesizer
    from synth_core.object_store import ObjectStore
    from synth_core.privacy import PrivacyBudget
    from synth_core.spec import TableSpec
    from synth_provider.operators.shards import CombineShardsOperator, PlanShardsOperator
    from synth_provider.operators.synthesize import PublishSyntheticOperator

    torch.set_num_threads(1)
    train, _ = adult_split
    spec = TableSpec.from_yaml(Path(__file__).resolve().parent.parent / "dags" / "specs" / "adult.yaml")
    synth = create_synthesizer("dp_tvae", **TINY_TVAE).fit(train.iloc[:2_000], spec, PrivacyBudget(2.0, 1e-6))
    model_uri = synth.save(
        (dpsynth_home / "objects" / "models" / "adult" / "r1" / "model.dpsynth.zip").as_uri()
    )
    assert synth.privacy_ is not None
    model = {"model_uri": model_uri, "source_table": "adult", "generator": "dp_tvae",
             "epsilon": synth.privacy_["epsilon"], "delta": synth.privacy_["delta"], "target_epsilon": 2.0}  # fmt: skip

    plan = PlanShardsOperator(task_id="plan_shards", model=model, num_rows=1_000_000, num_shards=4, seed=11)
    shards = plan.execute({"run_id": "r1"})
    assert [s["rows"] for s in shards] == [250_000] * 4 and len({s["seed"] for s in shards}) == 4

    # each mapped shard in its own process, as a worker would run it; peak RSS measured there
    results = []
    for shard in shards:
        proc = subprocess.run(
            [sys.executable, "-c", SHARD_CHILD, json.dumps(shard)], capture_output=True, text=True,
            timeout=600, env=subprocess_env(AIRFLOW__DPSYNTH__HOME=str(dpsynth_home)),
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    peaks = [r["peak_rss_mb"] for r in results]
    print(f"shard peak RSS (MB): {[round(p) for p in peaks]}")
    assert max(peaks) < 1024, peaks
    assert sorted(r["index"] for r in results) == [0, 1, 2, 3]
    assert len({r["synthetic_uri"] for r in results}) == 4

    # a shard reported twice is refused, then the four are combined and published together
    from airflow.sdk.exceptions import AirflowFailException

    with pytest.raises(AirflowFailException, match="shard 2 appears twice"):
        CombineShardsOperator(task_id="sample", shards=[*results, results[2]]).execute({"run_id": "r1"})
    with pytest.raises(AirflowFailException, match=r"shards missing: \[3\]"):
        CombineShardsOperator(task_id="sample", shards=results[:3]).execute({"run_id": "r1"})
    combined = CombineShardsOperator(task_id="sample", shards=list(reversed(results))).execute(
        {"run_id": "r1"}
    )
    assert combined["rows"] == 1_000_000 and [s["index"] for s in combined["shards"]] == [0, 1, 2, 3]

    # a hand-written "success" is not a validation: nothing is published from it
    with pytest.raises(AirflowFailException, match="has no validation record"):
        PublishSyntheticOperator(
            task_id="publish", staged=None, model=model, synthetic=combined, validation={"success": True}
        ).execute({"run_id": "r1"})
    done = PublishSyntheticOperator(
        task_id="publish", staged=None, model=model, synthetic=combined,
        validation=signed_validation(dpsynth_home, combined, rows=1_000_000),  # the gate is tested elsewhere
    ).execute({"run_id": "r1"})  # fmt: skip
    assert done["rows"] == 1_000_000
    engine = sa.create_engine(f"sqlite:///{dpsynth_home / 'warehouse.db'}")
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM adult_synthetic")).scalar_one() == 1_000_000
    frame = ObjectStore().read_parquet(done["parquet_uri"])
    assert len(frame) == 1_000_000 and list(frame.columns) == list(train.columns)
    # distinct seeds: no shard repeats another one's rows
    heads = [tuple(map(str, frame.iloc[i * 250_000 : i * 250_000 + 50].to_numpy().ravel())) for i in range(4)]
    assert len(set(heads)) == 4


def test_plan_shards_is_balanced_and_checks_refuse_gaps_and_shared_seeds() -> None:
    from synth_core.errors import ParameterError, ShardError
    from synth_core.shards import check_shards, plan_shards

    plan = plan_shards(10, 3, seed=1)
    assert [s["rows"] for s in plan] == [4, 3, 3] and [s["row_start"] for s in plan] == [0, 4, 7]
    assert plan_shards(10, 3, seed=1) == plan and plan_shards(10, 3, seed=2) != plan
    with pytest.raises(ParameterError):
        plan_shards(2, 3)
    made = [{**s, "model_uri": "m", "source_table": "t"} for s in plan]
    assert [s["index"] for s in check_shards(made[::-1])] == [0, 1, 2]
    with pytest.raises(ShardError, match="share a seed"):
        check_shards([made[0], {**made[1], "seed": made[0]["seed"]}, made[2]])
    with pytest.raises(ShardError, match="different models"):
        check_shards([made[0], {**made[1], "model_uri": "other"}, made[2]])


def test_the_task_group_option_maps_the_sample_step_over_shards() -> None:
    from airflow.sdk import DAG

    from synth_provider.task_group import synthesize_table_task_group

    spec = str(Path(__file__).resolve().parent.parent / "dags" / "specs" / "adult.yaml")
    with DAG("sharded", schedule=None) as dag:
        synthesize_table_task_group(
            source_table="adult", spec=spec, epsilon=1.0, num_rows=10_000_000, sample_shards=8
        )
    ids = [t.task_id for t in dag.topological_sort()]
    group = "synthesize_adult"
    assert ids == [
        f"{group}.{t}"
        for t in ("extract", "train", "plan_shards", "sample_shard", "sample", "validate", "publish")
    ]
    mapped = dag.get_task(f"{group}.sample_shard")
    assert type(mapped).__name__ == "MappedOperator"
    assert dag.get_task(f"{group}.plan_shards").num_shards == 8


@pytest.mark.slow
def test_shards_load_their_own_staging_tables_and_the_publish_moves_them_in_one_swap(
    dpsynth_home: Path, adult_split: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL: each mapped shard loads its rows into its own warehouse table as it samples;
    the publish fills the target from those tables inside the warehouse, and drops them."""
    import uuid

    import numpy as np
    import torch

    from synth_core.generators import create_synthesizer
    from synth_core.object_store import ObjectStore
    from synth_core.privacy import PrivacyBudget
    from synth_core.spec import TableSpec
    from synth_provider.operators.shards import (
        CombineShardsOperator,
        PlanShardsOperator,
        SampleShardOperator,
    )
    from synth_provider.operators.synthesize import PublishSyntheticOperator

    torch.set_num_threads(1)
    engine = sa.create_engine("postgresql+psycopg://postgres@127.0.0.1:5432/test")
    schema = f"dpsynth_t_{uuid.uuid4().hex[:8]}"
    with engine.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    monkeypatch.setenv(
        "AIRFLOW_CONN_SHARD_PG",
        json.dumps({"conn_type": "postgres", "host": "127.0.0.1", "port": 5432, "login": "postgres",
                    "schema": "test"}),
    )  # fmt: skip
    try:
        train, _ = adult_split
        spec = TableSpec.from_yaml(Path(__file__).resolve().parent.parent / "dags" / "specs" / "adult.yaml")
        synth = create_synthesizer("dp_tvae", **TINY_TVAE).fit(
            train.iloc[:2_000], spec, PrivacyBudget(2.0, 1e-6)
        )
        model_uri = synth.save(
            (dpsynth_home / "objects" / "models" / "adult" / "r2" / "m.dpsynth.zip").as_uri()
        )
        assert synth.privacy_ is not None
        model = {"model_uri": model_uri, "source_table": "adult", "generator": "dp_tvae",
                 "epsilon": synth.privacy_["epsilon"], "delta": synth.privacy_["delta"], "target_epsilon": 2.0}  # fmt: skip
        common = {"warehouse_conn_id": "shard_pg"}
        ctx = {"run_id": "r2"}
        plan = PlanShardsOperator(
            task_id="plan_shards", model=model, num_rows=30_000, num_shards=3, seed=5,
            stage_in_warehouse=True, staging_schema=schema, **common,
        ).execute(ctx)  # fmt: skip
        assert len({s["staging_table"] for s in plan}) == 3 and all(
            s["staging_schema"] == schema for s in plan
        )
        assert all(len(s["staging_table"]) <= 63 for s in plan)  # PostgreSQL's identifier limit
        results = [
            SampleShardOperator(task_id="sample_shard", shard=s, chunk_rows=4_000, **common).execute(ctx)
            for s in plan
        ]
        assert [r["staged_chunk"]["rows"] for r in results] == [10_000] * 3
        with engine.connect() as conn:
            staged = [conn.exec_driver_sql(f'SELECT count(*) FROM "{schema}"."{s["staging_table"]}"').scalar_one()
                      for s in plan]  # fmt: skip
        assert staged == [10_000] * 3
        # a shard with a staging chunk beside one without cannot be published together
        from airflow.sdk.exceptions import AirflowFailException

        unstaged = {k: v for k, v in results[1].items() if k != "staged_chunk"}
        with pytest.raises(AirflowFailException, match="some shards loaded a staging-table chunk"):
            CombineShardsOperator(
                task_id="sample", shards=[results[0], unstaged, results[2]], **common
            ).execute(ctx)
        combined = CombineShardsOperator(task_id="sample", shards=results, **common).execute(ctx)
        assert [c["table"] for c in combined["staged_chunks"]] == [s["staging_table"] for s in plan]

        done = PublishSyntheticOperator(
            task_id="publish", staged=None, model=model, synthetic=combined,
            validation=signed_validation(dpsynth_home, combined, rows=30_000), target_schema=schema, **common,
        ).execute(ctx)  # fmt: skip
        assert done["rows"] == 30_000
        published = pd.read_sql_table("adult", engine, schema=schema)
        validated = ObjectStore().read_parquet(combined["synthetic_uri"])
        assert len(published) == 30_000
        # the warehouse holds exactly the validated rows (as a multiset), each shard's once
        for column in ("age", "fnlwgt", "hours_per_week"):
            assert np.array_equal(
                np.sort(published[column].to_numpy()), np.sort(validated[column].to_numpy())
            )
        assert (
            published["workclass"].value_counts(dropna=False).to_dict()
            == validated["workclass"].value_counts(dropna=False).to_dict()
        )
        left = sa.inspect(engine).get_table_names(schema=schema)
        assert not [t for t in left if "__dpsynth_" in t], left
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        engine.dispose()
