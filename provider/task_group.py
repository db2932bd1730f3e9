"""One call that wires a whole refresh: extract → train → sample → validate → publish."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from airflow.sdk import AssetAlias, TaskGroup

from synth_core.pipeline.jobs import DEFAULT_DELTA, DEFAULT_GENERATOR, DEFAULT_HOLDOUT_FRACTION
from synth_provider.operators.synthesize import (
    ExtractTableOperator,
    PublishSyntheticOperator,
    SampleSynthesizerOperator,
    TrainSynthesizerOperator,
    ValidateSyntheticOperator,
)


def _check_literal_budget(epsilon: Any, delta: Any) -> None:
    """Fail at DAG parse time on a literal budget that can never be valid (templates pass)."""
    is_number = isinstance(epsilon, int | float) and not isinstance(epsilon, bool)
    if is_number and (not math.isfinite(epsilon) or epsilon <= 0):
        raise ValueError(f"epsilon must be a finite number > 0, got {epsilon!r}")
    if isinstance(delta, int | float) and not isinstance(delta, bool) and not (0 < delta < 1):
        raise ValueError(f"delta must be in (0, 1), got {delta!r}")


def synthesize_table_task_group(
    *,
    source_table: str,
    spec: str | Mapping[str, Any],
    epsilon: float,
    source_query: str | None = None,
    delta: float = DEFAULT_DELTA,
    generator: str = DEFAULT_GENERATOR,
    generator_params: Mapping[str, Any] | None = None,
    num_rows: int | None = None,
    target_table: str | None = None,
    target_schema: str | None = None,
    dbt_source_name: str = "dpsynth",
    dbt_project_dir: str | None = None,
    validate_kwargs: Mapping[str, Any] | None = None,
    lifetime_epsilon: float | None = None,
    lifetime_delta: float | None = None,
    preprocessing_fraction: float | None = None,
    holdout_fraction: float = DEFAULT_HOLDOUT_FRACTION,
    seed: int | None = None,
    warehouse_conn_id: str | None = None,
    object_store_uri: str | None = None,
    aws_conn_id: str | None = None,
    ledger_uri: str | None = None,
    group_id: str | None = None,
    sample_shards: int | None = None,
    stage_shards_in_warehouse: bool = False,
    **task_kwargs: Any,
) -> TaskGroup:
    """A TaskGroup refreshing the synthetic replacement of ``source_table``.

    Args:
        source_table: the sensitive warehouse table.
        spec: TableSpec (YAML path, YAML string or mapping).
        source_query: a SQL ``SELECT`` read instead of the table (``source_table`` still names
            the dataset: ledger, object paths, published table).
        epsilon, delta: privacy target of each refresh (each run spends it from the table's
            lifetime budget in the ledger).
        generator, generator_params: which DP generator, with its parameters.
        num_rows: synthetic rows (``None``: the table's DP row count).
        target_table, target_schema: where the synthetic table is published (default: the
            source's name in ``target_schema``, or ``{source_table}_synthetic`` without one).
        dbt_source_name, dbt_project_dir: the dbt source the table is declared in, and a dbt
            project to write its ``sources.yml`` into (it always goes to the object store too).
        validate_kwargs: options of the release gate (:class:`ValidateSyntheticOperator`):
            ``max_dcr_share``, ``min_nndr``, ``max_attack_auc``, ``null_rate_tolerance``,
            ``extra_expectations``, ``enforce_privacy_thresholds``.
        target_table: synthetic table name (default ``{source_table}_synthetic``).
        lifetime_epsilon, lifetime_delta: the table's lifetime budget, granted once.
        sample_shards: sample the table as this many mapped shards (``plan_shards`` →
            ``sample_shard`` mapped with ``.expand`` → ``sample`` combining them), each with its own
            seed and bounded memory (:mod:`synth_provider.operators.shards`); ``None``: one task.
        stage_shards_in_warehouse: with ``sample_shards``, each shard also loads its rows into
            its own warehouse staging table, in parallel, and the publish moves them into the
            target inside the warehouse (for warehouses that take concurrent loads; not SQLite).
        task_kwargs: passed to every operator (``retries``, ``pool``, ``execution_timeout``...).

    Tasks: ``extract``, ``train``, ``sample``, ``validate``, ``publish``.
    """
    _check_literal_budget(epsilon, delta)
    common = {"warehouse_conn_id": warehouse_conn_id, "object_store_uri": object_store_uri,
              "aws_conn_id": aws_conn_id, "ledger_uri": ledger_uri, **task_kwargs}  # fmt: skip
    safe_name = source_table.replace(".", "__")
    with TaskGroup(group_id=group_id or f"synthesize_{safe_name}") as group:
        extract = ExtractTableOperator(
            task_id="extract",
            source_table=source_table,
            source_query=source_query,
            spec=spec,
            holdout_fraction=holdout_fraction,
            epsilon=epsilon,
            delta=delta,
            lifetime_epsilon=lifetime_epsilon,
            lifetime_delta=lifetime_delta,
            **common,
        )
        train = TrainSynthesizerOperator(
            task_id="train",
            staged=extract.output,
            epsilon=epsilon,
            delta=delta,
            generator=generator,
            generator_params=dict(generator_params or {}),
            preprocessing_fraction=preprocessing_fraction,
            lifetime_epsilon=lifetime_epsilon,
            lifetime_delta=lifetime_delta,
            seed=seed,
            **common,
        )
        sample: Any
        if sample_shards:
            from synth_provider.operators.shards import (
                CombineShardsOperator,
                PlanShardsOperator,
                SampleShardOperator,
            )

            plan = PlanShardsOperator(
                task_id="plan_shards", model=train.output, num_rows=num_rows, num_shards=sample_shards,
                seed=seed, stage_in_warehouse=stage_shards_in_warehouse, staging_schema=target_schema, **common,
            )  # fmt: skip
            parts = SampleShardOperator.partial(task_id="sample_shard", **common).expand(shard=plan.output)
            sample = CombineShardsOperator(task_id="sample", shards=parts.output, **common)
        else:
            sample = SampleSynthesizerOperator(
                task_id="sample", model=train.output, num_rows=num_rows, seed=seed, **common
            )
        validate = ValidateSyntheticOperator(
            task_id="validate",
            staged=extract.output,
            model=train.output,
            synthetic=sample.output,
            **dict(validate_kwargs or {}),
            **common,
        )
        PublishSyntheticOperator(
            task_id="publish",
            staged=extract.output,
            model=train.output,
            synthetic=sample.output,
            validation=validate.output,
            target_table=target_table,
            target_schema=target_schema,
            dbt_source_name=dbt_source_name,
            dbt_project_dir=dbt_project_dir,
            # the synthetic table's Asset URI depends on the connection, known at run time only:
            # downstream DAGs schedule on this alias (or on the URI once it has been published)
            outlets=[AssetAlias(synthetic_asset_alias(source_table, target_schema, target_table))],
            **common,
        )
    return group


def synthetic_asset_alias(
    source_table: str, target_schema: str | None = None, target_table: str | None = None
) -> str:
    """Name of the ``AssetAlias`` a refresh of ``source_table`` publishes its synthetic table under."""
    return "dpsynth__" + "__".join(p for p in (source_table, target_schema, target_table) if p)


def resample_table_task_group(
    *,
    source_table: str,
    num_rows: int | None = None,
    seed: int | None = None,
    target_table: str | None = None,
    target_schema: str | None = None,
    dbt_source_name: str = "dpsynth",
    dbt_project_dir: str | None = None,
    validate_kwargs: Mapping[str, Any] | None = None,
    warehouse_conn_id: str | None = None,
    object_store_uri: str | None = None,
    aws_conn_id: str | None = None,
    ledger_uri: str | None = None,
    group_id: str | None = None,
    **task_kwargs: Any,
) -> TaskGroup:
    """A **resample-only refresh**: new synthetic rows from the live release's saved DP model.

    No real row is read and no budget is spent (sampling is post-processing; the ledger records
    the refresh with ε = 0), so it can run as often as the data consumers like — daily on top
    of a weekly or monthly retraining. Tasks: ``sample`` → ``validate`` (schema, types, rules,
    domains, DP NULL rates; the real-data privacy evaluation of the model's release stands) →
    ``publish`` (same atomic swap, Parquet, dbt sources, manifest, Asset event as a refresh).
    """
    common = {"warehouse_conn_id": warehouse_conn_id, "object_store_uri": object_store_uri,
              "aws_conn_id": aws_conn_id, "ledger_uri": ledger_uri, **task_kwargs}  # fmt: skip
    safe_name = source_table.replace(".", "__")
    with TaskGroup(group_id=group_id or f"resample_{safe_name}") as group:
        sample = SampleSynthesizerOperator(
            task_id="sample", resample_of=source_table, num_rows=num_rows, seed=seed,
            target_table=target_table, target_schema=target_schema, **common,
        )  # fmt: skip
        validate = ValidateSyntheticOperator(
            task_id="validate", staged=None, model=sample.output, synthetic=sample.output,
            **dict(validate_kwargs or {}), **common,
        )  # fmt: skip
        PublishSyntheticOperator(
            task_id="publish", staged=None, model=sample.output, synthetic=sample.output,
            validation=validate.output, target_table=target_table, target_schema=target_schema,
            dbt_source_name=dbt_source_name, dbt_project_dir=dbt_project_dir,
            outlets=[AssetAlias(synthetic_asset_alias(source_table, target_schema, target_table))],
            **common,
        )  # fmt: skip
    return group
