"""Scale-out sampling as Airflow mapped tasks: plan → sample shard (``.expand``) → combine.

::

    plan = PlanShardsOperator(task_id="plan_shards", model=train.output, num_rows=10_000_000, num_shards=8)
    parts = SampleShardOperator.partial(task_id="sample_shard").expand(shard=plan.output)
    sample = CombineShardsOperator(task_id="sample", shards=parts.output)   # -> validate, publish

Each mapped shard samples its rows in bounded chunks with its own seed and writes its own Parquet
part (``synthetic/{table}/{run}/shards/part-{k:05d}.parquet``); the combine task checks that every
shard is there exactly once with its planned rows and streams the parts into the one Parquet file
the release gate and the atomic publish read (memory bounded by one row group). With
``stage_in_warehouse=True`` each shard also loads its rows into its own staging-table chunk in the
warehouse, in parallel; the publish then moves them into the swap's staging table inside the
warehouse instead of streaming the combined file through one worker. The shards can also
run in pods: :class:`~synth_provider.operators.kubernetes.SampleSynthesizerPodOperator` takes the
same ``shard``. Sampling is post-processing: no shard spends privacy budget.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from synth_provider.operators.synthesize import DPSynthBaseOperator

if TYPE_CHECKING:
    from airflow.sdk import Context


class PlanShardsOperator(DPSynthBaseOperator):
    """Split ``num_rows`` synthetic rows into ``num_shards`` shards with distinct seeds.

    Args:
        model: the train task's manifest or a model bundle URI.
        num_rows: rows of the synthetic table (``None``: the table's DP row count).
        num_shards: number of mapped sample tasks.
        seed: base seed (``None``: fresh randomness); shard ``k`` gets its own derived seed.
        stage_in_warehouse: each shard also loads its rows into its own warehouse table
            (``{table}__dpsynth_shard_{hash}_{k:05d}``), which the publish moves into the target.
        staging_schema: schema of those tables (default: the connection's); the publish drops them.

    Returns (XCom): a list of shards, each ``{"index", "count", "row_start", "rows", "seed",
    "model_uri", "output_prefix"}`` (and ``staging_table``, ``staging_schema`` when staging in
    the warehouse) — map a sample task over it with ``.expand(shard=...)``.
    """

    template_fields: Sequence[str] = (
        *DPSynthBaseOperator.template_fields,
        "model",
        "num_rows",
        "num_shards",
        "seed",
        "staging_schema",
    )

    def __init__(
        self,
        *,
        model: Any,
        num_shards: int,
        num_rows: int | None = None,
        seed: int | None = None,
        stage_in_warehouse: bool = False,
        staging_schema: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.model = model
        self.num_rows = num_rows
        self.num_shards = num_shards
        self.seed = seed
        self.stage_in_warehouse = stage_in_warehouse
        self.staging_schema = staging_schema

    def execute(self, context: Context) -> list[dict[str, Any]]:
        from synth_provider.operators.synthesize import fail_fast_on_non_retryable

        with fail_fast_on_non_retryable():
            return self._plan(context)

    def _plan(self, context: Context) -> list[dict[str, Any]]:
        from synth_core.bundle import read_bundle_metadata
        from synth_core.object_store import join_uri
        from synth_core.release import run_key
        from synth_core.shards import plan_shards, shard_staging_table

        hook = self.get_hook()
        model_uri = str(self.model["model_uri"]) if isinstance(self.model, Mapping) else str(self.model)
        meta = read_bundle_metadata(hook.get_object_store().get_bytes(model_uri))
        table = str(meta["transformer"]["spec"]["table"])
        rows: Any = self.num_rows
        if rows in (None, "", "None"):
            rows = (self.model.get("dp_source_rows") if isinstance(self.model, Mapping) else None) or meta[
                "transformer"
            ]["dp_row_count"]
        seed: Any = self.seed
        plan = plan_shards(
            int(rows), int(self.num_shards), seed=None if seed in (None, "", "None") else int(seed)
        )
        prefix = join_uri(hook.object_store_root(), "synthetic", table, run_key(context["run_id"]), "shards")
        self.log.info(
            "sampling %d synthetic rows of %s as %d shards under %s", int(rows), table, len(plan), prefix
        )
        out = [{**s, "model_uri": model_uri, "output_prefix": prefix} for s in plan]
        if self.stage_in_warehouse:
            for s in out:
                s["staging_table"] = shard_staging_table(table, context["run_id"], s["index"])
                s["staging_schema"] = self.staging_schema or None
        return out


class SampleShardOperator(DPSynthBaseOperator):
    """Sample one shard (map it over :class:`PlanShardsOperator`'s list with ``.expand(shard=...)``).

    Args:
        shard: one planned shard.
        chunk_rows: rows sampled and written at a time (the shard's memory bound).

    Returns (XCom): the shard manifest (``index``, ``rows``, ``seed``, ``synthetic_uri``...).
    """

    template_fields: Sequence[str] = (*DPSynthBaseOperator.template_fields, "shard")

    def __init__(self, *, shard: Any, chunk_rows: int = 100_000, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.shard = shard
        self.chunk_rows = chunk_rows

    def _execute(self, context: Context) -> dict[str, Any]:
        from synth_core.shards import sample_shard

        shard = self._manifest(self.shard, "shard")
        hook = self.get_hook()
        staging_table = shard.get("staging_table")
        out = sample_shard(
            hook.get_object_store(),
            model_uri=str(shard["model_uri"]),
            shard=shard,
            output_prefix=str(shard["output_prefix"]),
            chunk_rows=int(self.chunk_rows),
            warehouse=hook.get_warehouse_engine() if staging_table else None,
            staging_table=str(staging_table) if staging_table else None,
            staging_schema=shard.get("staging_schema") or None,
        )
        self.log.info(
            "shard %d/%d: %d synthetic rows into %s%s (no privacy budget spent)",
            out["index"] + 1, out["count"], out["rows"], out["synthetic_uri"],
            f" and warehouse table {staging_table}" if staging_table else "",
        )  # fmt: skip
        return out


class CombineShardsOperator(DPSynthBaseOperator):
    """Check the sampled shards (each index once, planned rows, one model) and stream them into
    the one Parquet file that validate and publish read.

    Args:
        shards: the mapped sample task's output (``sample_shard.output``: every shard's manifest).

    Returns (XCom): ``{"synthetic_uri", "rows", "model_uri", "source_table", "shards"}`` — the
    shape of ``SampleSynthesizerOperator``'s XCom.
    """

    template_fields: Sequence[str] = (*DPSynthBaseOperator.template_fields, "shards")

    def __init__(self, *, shards: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.shards = shards

    def _execute(self, context: Context) -> dict[str, Any]:
        from synth_core.object_store import join_uri
        from synth_core.release import run_key
        from synth_core.shards import check_shards, combine_shards

        shards = check_shards([self._manifest(s, "shards[]") for s in self.shards])
        table = str(shards[0]["source_table"])
        hook = self.get_hook()
        out = join_uri(
            hook.object_store_root(), "synthetic", table, run_key(context["run_id"]), "part-00000.parquet"
        )
        combined = combine_shards(hook.get_object_store(), shards, out)
        self.log.info("combined %d shards: %d synthetic rows of %s into %s",
                      len(shards), combined["rows"], table, out)  # fmt: skip
        return combined
