"""The steps of a release that the Airflow operators and the ``dpsynth`` CLI share.

* :func:`stage_source` — stream the source table (or query) into a train and a holdout Parquet
  file, both appearing only once the whole source was read;
* :func:`publish_release` — the ordered publish: Parquet under the run key, atomic warehouse swap
  (comments, release log), the shareable report beside it, dbt ``sources.yml``, ``_manifest.json``
  written last, then ``_latest.json``.

Object layout: :class:`synth_core.pipeline.layout.RunLayout` (``published/`` is keyed by the
published table, schema-qualified, so two targets of one source keep two live pointers).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import sqlalchemy as sa

    from synth_core.object_store import ObjectStore
    from synth_core.spec import TableSpec
    from synth_core.transformer import TableTransformer
    from synth_core.warehouse import TableComments


SPLIT_SIZES_FILE = "split_sizes.json"
"""Under the staging folder: the exact train/holdout sizes (real-data facts, private like the rows)."""


def run_key(run_id: str) -> str:
    """A run id made safe for object keys and paths (:func:`synth_core.pipeline.layout.run_key`)."""
    from synth_core.pipeline.layout import run_key as key

    return key(run_id)


def stage_source(
    engine: sa.engine.Engine,
    store: ObjectStore,
    spec: TableSpec,
    *,
    staging_uri: str,
    holdout_fraction: float,
    chunk_rows: int = 50_000,
    query: str | None = None,
    on_first_rows: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Stream the source into ``{staging_uri}/train.parquet`` and ``holdout.parquet``.

    Rows are split at random (OS entropy) chunk by chunk, so memory stays bounded by one chunk;
    the catalog is checked against the spec before any row is read. ``on_first_rows`` is called
    just before the first private rows are used (a caller that must know whether data was read:
    a budget reservation is released only if not). Returns the staged manifest (URIs, dtypes,
    ``holdout_fraction``, ``source_is_query``); the split's exact sizes go to
    ``{staging_uri}/split_sizes.json`` only (:data:`SPLIT_SIZES_FILE`).

    Raises:
        SourceTableError: the source is empty or too small to train and evaluate on.
    """
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    from synth_core.errors import ParameterError, SourceTableError
    from synth_core.object_store import join_uri
    from synth_core.privacy import secret_seed
    from synth_core.warehouse import iter_table_chunks

    if not (0.0 < float(holdout_fraction) < 0.9):
        raise ParameterError(f"holdout_fraction must be in (0, 0.9), got {holdout_fraction!r}")
    dtypes, chunks = iter_table_chunks(engine, spec, chunk_rows=int(chunk_rows), query=query)
    schema = pa.Schema.from_pandas(
        pd.DataFrame({name: pd.Series([], dtype=dtype) for name, dtype in dtypes.items()}),
        preserve_index=False,
    )
    rng = np.random.default_rng(secret_seed())
    train_uri = join_uri(staging_uri, "train.parquet")
    holdout_uri = join_uri(staging_uri, "holdout.parquet")
    rows_train = rows_holdout = 0
    with (
        store.open_parquet_writer(train_uri, schema) as train_out,
        store.open_parquet_writer(holdout_uri, schema) as holdout_out,
    ):
        for chunk in chunks:
            if on_first_rows is not None and rows_train + rows_holdout == 0:
                on_first_rows()
            mask = rng.random(len(chunk)) < float(holdout_fraction)
            holdout_out.write_frame(chunk[mask])
            train_out.write_frame(chunk[~mask])
            rows_holdout += int(mask.sum())
            rows_train += int((~mask).sum())
        if rows_train + rows_holdout == 0:
            raise SourceTableError(f"table {spec.name!r} is empty: there is nothing to synthesize")
        if rows_train < 2 or rows_holdout < 1:
            raise SourceTableError(
                f"table {spec.name!r} has too few rows to train and evaluate a DP generator "
                "(at least 2 training rows and 1 holdout row)"
            )
    spec_uri = store.put_bytes(
        join_uri(staging_uri, "spec.yaml"), spec.to_yaml().encode(), content_type="text/yaml"
    )
    # The split's exact sizes are facts about real rows: they stay beside the rows in staging/ and
    # never travel in the staged manifest (an XCom the Airflow UI shows to every DAG viewer).
    split = {"rows_total": rows_train + rows_holdout, "rows_train": rows_train, "rows_holdout": rows_holdout}
    store.put_bytes(
        join_uri(staging_uri, SPLIT_SIZES_FILE), json.dumps(split).encode(), content_type="application/json"
    )
    return {
        "source_table": spec.name,
        "staging_uri": staging_uri,
        "spec_uri": spec_uri,
        "train_uri": train_uri,
        "holdout_uri": holdout_uri,
        "holdout_fraction": float(holdout_fraction),
        "dtypes": dtypes,
        "source_is_query": query is not None,
    }


@dataclass(frozen=True)
class PublishedRelease:
    """What :func:`publish_release` did: the manifest and where things went."""

    manifest: dict[str, Any]
    manifest_uri: str
    asset_uri: str
    parquet_uri: str
    report_uri: str | None
    #: OpenLineage ``(namespace, name)`` of the inputs and outputs
    lineage_inputs: list[tuple[str, str]]
    lineage_outputs: list[tuple[str, str]]


def default_target_table(source_table: str, target_schema: str | None) -> str:
    """The source's name in another schema (dbt switches by schema), else ``{source}_synthetic``."""
    from synth_core.warehouse import split_table_name

    _, name = split_table_name(source_table)
    return name if target_schema else f"{name}_synthetic"


def resolve_target(
    source_table: str,
    target_table: str | None,
    target_schema: str | None,
    *,
    dbt_source_name: str = "dpsynth",
) -> tuple[str, str | None]:
    """``(target, schema)`` of a publish, checked before any side effect: the identifier rule for
    the table, the schema and the dbt source name, and never the source table itself.

    Raises:
        ParameterError: naming the parameter.
    """
    from synth_core.boundary import check_identifier
    from synth_core.errors import ParameterError
    from synth_core.warehouse import split_table_name

    schema = target_schema or None
    target = target_table or default_target_table(source_table, schema)
    if "." in target:
        raise ParameterError(f"target_table {target!r} must not hold a schema: give target_schema")
    check_identifier(target, "target_table")
    if schema is not None:
        check_identifier(schema, "target_schema")
    check_identifier(dbt_source_name, "dbt_source_name")
    if (schema, target) == split_table_name(source_table):
        raise ParameterError(
            f"the synthetic table would replace the source table {source_table!r}: choose target_table or target_schema"
        )
    return target, schema


def publish_release(
    engine: sa.engine.Engine,
    store: ObjectStore,
    *,
    root_uri: str,
    transformer: TableTransformer,
    model: Mapping[str, Any],
    synthetic_uri: str,
    rows: int,
    run_id: str,
    staged: Mapping[str, Any] | None = None,
    target_table: str | None = None,
    target_schema: str | None = None,
    report_uri: str | None = None,
    validation_uri: str | None = None,
    dbt_source_name: str = "dpsynth",
    dbt_project_dir: str | None = None,
    dbt_freshness: Mapping[str, Any] | None = None,
    resample_only: bool = False,
    staged_chunks: Sequence[Mapping[str, Any]] | None = None,
) -> PublishedRelease:
    """Publish a validated synthetic table so readers never see a partial release.

    Order: (1) the synthetic Parquet is copied under the run key, invisible until the manifest
    names it; (2) the warehouse table is replaced atomically, with the source's column types,
    comments saying it is synthetic (ε, δ, generator, run id) and a ``dpsynth_releases`` row, in
    one transaction; (3) the shareable report and the dbt ``sources.yml`` go beside the Parquet
    (and the YAML into ``dbt_project_dir`` when given); (4) ``_manifest.json`` is written last,
    then ``published/{table}/_latest.json``. A failure before (4) leaves the previous release
    live; an outage is raised as is (retryable).

    Args:
        model: ``model_uri``, ``generator``, ``epsilon``, ``delta`` (and ``target_epsilon``).
        rows: rows of the validated synthetic table; a different count in ``synthetic_uri``
            aborts before the swap.
        staged: the staged manifest (``None`` for a resample-only refresh).
        staged_chunks: ``{"table", "schema", "rows"}`` of warehouse tables the sampled shards
            loaded (:func:`synth_core.shards.sample_shard`); the swap's staging table is filled
            from them inside the warehouse instead of from the Parquet, and they are dropped.
    """
    from synth_core.dbt import render_dbt_sources_yml
    from synth_core.object_store import join_uri, lineage_dataset_for_uri
    from synth_core.pipeline.layout import RunLayout
    from synth_core.pipeline.validate import NEIGHBOURING_RELATION
    from synth_core.warehouse import (
        RELEASES_TABLE,
        StagedChunk,
        asset_uri,
        lineage_dataset,
        publish_table_atomically,
        split_table_name,
        warehouse_label,
    )

    staged = staged or {}
    table = transformer.spec.name
    source_schema, source_name = split_table_name(table)
    # names first: a refused name leaves everything as it was
    target, schema = resolve_target(table, target_table, target_schema, dbt_source_name=dbt_source_name)
    layout = RunLayout(root_uri, table, run_id)
    published = layout.published(target, schema)
    manifest_uri = join_uri(published, "_manifest.json")
    published_at = dt.datetime.now(dt.UTC)

    # 1. Parquet under the run key
    parquet_uri = store.copy(synthetic_uri, join_uri(published, f"{target}.parquet"))

    # 2. the warehouse swap, comments and release log in one transaction; rows stream from the
    #    Parquet row groups, so memory stays bounded by one batch (or, when the shards staged
    #    their rows in the warehouse, move there without passing through this worker)
    types, nullable = _publish_types(engine, transformer, staged, source_name, source_schema, target, schema)
    release = {
        "synthetic_table": target, "source_table": table, "run_id": run_id, "published_at": published_at,
        "row_count": int(rows), "epsilon": float(model["epsilon"]), "delta": float(model["delta"]),
        "generator": str(model["generator"]), "manifest_uri": manifest_uri,
    }  # fmt: skip
    chunks = (
        [StagedChunk(str(c["table"]), int(c["rows"]), c.get("schema") or None) for c in staged_chunks]
        if staged_chunks
        else None
    )
    publish_table_atomically(
        engine,
        None if chunks else store.iter_parquet(parquet_uri),
        staged=chunks,
        target=target,
        schema=schema,
        column_types=types,
        nullable=nullable,
        comments=synthetic_comments(transformer.spec, release),
        release=release,
        expected_rows=int(rows),  # the Parquet under the run key must be what was validated
    )

    # 3. the shareable report and the dbt sources travel with the release
    if report_uri:
        report_uri = store.copy(report_uri, join_uri(published, "report.html"))
    q = engine.dialect.identifier_preparer.quote
    releases = f"{q(schema)}.{q(RELEASES_TABLE)}" if schema else q(RELEASES_TABLE)
    sources_yml = render_dbt_sources_yml(
        spec=transformer.spec,
        source_name=dbt_source_name,
        database=engine.url.database if engine.dialect.name == "postgresql" else None,
        schema=schema or ("main" if engine.dialect.name == "sqlite" else (engine.url.database or "public")),
        table=target,
        release={
            **{k: release[k] for k in ("epsilon", "delta", "generator", "run_id", "source_table")},
            "report_uri": report_uri,
            "manifest_uri": manifest_uri,
            "published_at": published_at.isoformat(),
        },
        domains=transformer.dp_domains(),
        loaded_at_query=f"select max(published_at) from {releases} where synthetic_table = '{target}'",
        freshness=dbt_freshness,
    )
    sources_uri = store.put_bytes(
        join_uri(published, "sources.yml"), sources_yml.encode(), content_type="text/yaml"
    )
    if dbt_project_dir:
        dbt_file = Path(dbt_project_dir) / "models" / "dpsynth" / f"{target}.yml"
        dbt_file.parent.mkdir(parents=True, exist_ok=True)
        dbt_file.write_text(sources_yml, encoding="utf-8")

    # 4. the manifest, written last, then the pointer to it
    uri = asset_uri(engine, target, schema=schema)
    manifest = {
        "source_table": table,
        "synthetic_table": f"{schema}.{target}" if schema else target,
        "warehouse": warehouse_label(engine),
        "asset_uri": uri,
        "rows": int(rows),
        "resample_only": resample_only,
        "epsilon_spent_this_run": 0.0 if resample_only else float(model["epsilon"]),
        "schema": [{"name": n, "dtype": t} for n, t in transformer.output_dtypes.items()],
        "epsilon": float(model["epsilon"]),
        "delta": float(model["delta"]),
        "target_epsilon": model.get("target_epsilon"),
        "generator": model["generator"],
        "neighbouring_relation": NEIGHBOURING_RELATION,
        "run_id": run_id,
        "model_uri": model["model_uri"],
        "parquet_uri": parquet_uri,
        "sources_yml_uri": sources_uri,
        "report_uri": report_uri,
        "validation_uri": validation_uri,
        # no real-data metric here: the manifest is published; the evaluation stays beside the
        # staged rows, in the sensitive zone
        "published_at": published_at.isoformat(),
    }
    store.put_bytes(manifest_uri, json.dumps(manifest, indent=1).encode(), content_type="application/json")
    store.put_bytes(
        layout.latest(target, schema),
        json.dumps({"manifest_uri": manifest_uri, **manifest}, indent=1).encode(),
        content_type="application/json",
    )
    inputs = (
        [] if staged.get("source_is_query") else [lineage_dataset(engine, source_name, schema=source_schema)]
    )
    return PublishedRelease(
        manifest=manifest,
        manifest_uri=manifest_uri,
        asset_uri=uri,
        parquet_uri=parquet_uri,
        report_uri=report_uri,
        lineage_inputs=inputs,
        lineage_outputs=[
            lineage_dataset(engine, target, schema=schema),
            lineage_dataset_for_uri(parquet_uri),
        ],
    )


def _publish_types(
    engine: sa.engine.Engine,
    transformer: TableTransformer,
    staged: Mapping[str, Any],
    source_name: str,
    source_schema: str | None,
    target: str,
    schema: str | None,
) -> tuple[dict[str, Any], dict[str, bool]]:
    """SQL column types of the synthetic table: the source table's; for a query source, generic
    types from the spec; for a resample-only refresh (no staged manifest), the live synthetic
    table's, else the source's."""
    import sqlalchemy as sa

    from synth_core.warehouse import column_types_for_spec, reflect_table

    columns = list(transformer.output_dtypes)
    candidates = [] if staged.get("source_is_query") else [(source_name, source_schema)]
    if not staged:
        candidates.insert(0, (target, schema))
    inspector = sa.inspect(engine)
    for name, where in candidates:
        if inspector.has_table(name, schema=where):
            table = reflect_table(engine, name, schema=where)
            return (
                {c.name: c.type for c in table.columns if c.name in columns},
                {c.name: bool(c.nullable) for c in table.columns if c.name in columns},
            )
    return (
        column_types_for_spec(transformer.spec, transformer.output_dtypes),
        {c.name: c.nullable for c in transformer.spec.output_columns},
    )


def synthetic_comments(spec: TableSpec, release: Mapping[str, Any]) -> TableComments:
    """Warehouse comments saying the table is synthetic, with ε, δ, generator and run id."""
    from synth_core.dbt import round_up_significant
    from synth_core.warehouse import TableComments

    # rounded up: a stated privacy parameter is never below the one spent
    epsilon, delta = (round_up_significant(float(release[k])) for k in ("epsilon", "delta"))
    stamp = f"ε={epsilon:.4g}, δ={delta:.3g}, generator {release['generator']}, run {release['run_id']}"
    columns = {
        c.name: f"Synthetic ({c.kind.value}), differentially private; {stamp}."
        + (f" {c.description}" if c.description else "")
        for c in spec.output_columns
    }
    table = (
        f"SYNTHETIC data (differentially private) replacing {release['source_table']}; no row is a real "
        f"record. {stamp}. Published by dpsynth."
    )
    return TableComments(table, columns)
