"""Scale-out sampling: a large synthetic table sampled as N independent shards, then combined.

Sampling is post-processing of the DP model, so shards spend nothing and may run anywhere (Airflow
mapped tasks, pods). Each shard:

* has a **distinct seed**: ``SeedSequence(base seed).spawn`` gives shard ``k`` its own stream
  (fresh OS entropy when no base seed is given), recorded in the shard's manifest;
* samples its rows in chunks of at most ``chunk_rows`` and appends each chunk as a Parquet row
  group, so its memory is bounded by one chunk however many rows it holds;
* renumbers integer surrogate-key columns from its global row offset, so keys stay unique across
  shards;
* writes ``{prefix}/part-{k:05d}.parquet``, visible only once complete;
* optionally loads the same chunks into its own **staging-table chunk** in the warehouse
  (:func:`synth_core.warehouse.stage_rows`), so N shards load the warehouse in parallel and the
  publish only moves rows inside it (``INSERT … SELECT`` into the swap's staging table).

:func:`combine_shards` then checks the shard manifests (every index ``0..N-1`` exactly once, one
model, the planned row counts, the rows actually in each part) and streams the parts, row group by
row group, into one Parquet object for the release gate (and, without staged chunks, the publish).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from synth_core.errors import ParameterError

if TYPE_CHECKING:
    import pandas as pd
    import sqlalchemy as sa

    from synth_core.object_store import ObjectStore

DEFAULT_CHUNK_ROWS = 100_000


def plan_shards(total_rows: int, num_shards: int, *, seed: int | None = None) -> list[dict[str, Any]]:
    """``num_shards`` shard descriptions covering ``total_rows`` rows: ``index``, ``count``,
    ``row_start``, ``rows`` (balanced: sizes differ by at most one) and a distinct ``seed``."""
    import numpy as np

    total, shards = _positive(total_rows, "total_rows"), _positive(num_shards, "num_shards")
    if shards > total:
        raise ParameterError(f"num_shards ({shards}) must not exceed the rows to sample ({total})")
    entropy = int(seed) if seed is not None else None
    children = np.random.SeedSequence(entropy).spawn(shards)
    base, extra = divmod(total, shards)
    out, start = [], 0
    for k in range(shards):
        rows = base + (1 if k < extra else 0)
        out.append(
            {
                "index": k,
                "count": shards,
                "row_start": start,
                "rows": rows,
                "total_rows": total,
                "seed": int(children[k].generate_state(1, dtype=np.uint64)[0] >> np.uint64(1)),
            }
        )
        start += rows
    return out


def shard_staging_table(table: str, run_id: str, index: int) -> str:
    """The warehouse table holding shard ``index``'s rows of one run: short enough for any
    warehouse's identifier limit (PostgreSQL: 63 bytes), distinct per run and shard."""
    import hashlib

    digest = hashlib.sha256(f"{table}\0{run_id}".encode()).hexdigest()[:10]
    stem = table.split(".")[-1][:28]
    return f"{stem}__dpsynth_shard_{digest}_{int(index):05d}"


def shard_uri(prefix: str, index: int) -> str:
    from synth_core.object_store import join_uri

    return join_uri(prefix, f"part-{int(index):05d}.parquet")


def sample_shard(
    store: ObjectStore,
    *,
    model_uri: str,
    shard: Mapping[str, Any],
    output_prefix: str | None = None,
    output_uri: str | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    warehouse: sa.engine.Engine | None = None,
    staging_table: str | None = None,
    staging_schema: str | None = None,
) -> dict[str, Any]:
    """Sample one shard into ``{output_prefix}/part-{index:05d}.parquet`` (or ``output_uri``); returns its manifest
    (``index``, ``count``, ``row_start``, ``rows``, ``seed``, ``synthetic_uri``, ``model_uri``,
    ``source_table``, ``seconds``). Memory is bounded by ``chunk_rows`` rows.

    With ``warehouse`` and ``staging_table``, the same chunks also go into that table (replaced if
    an earlier try left it; generic SQL types from the spec, cast to the target's at publish), and
    the manifest gains ``staged_chunk`` ``{"table", "schema", "rows"}``."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    from synth_core.generators import Synthesizer

    index, rows = int(shard["index"]), _positive(shard["rows"], "rows")
    row_start, seed = int(shard.get("row_start", 0)), int(shard["seed"])
    chunk = _positive(chunk_rows, "chunk_rows")
    started = time.monotonic()
    synth = Synthesizer.load(model_uri, store=store)
    transformer = synth.transformer_
    assert transformer is not None
    int_ids = [
        c.name
        for c in transformer.spec.output_columns
        if c.kind.value == "id" and transformer.output_dtypes[c.name].lower().startswith(("int", "uint"))
    ]
    chunk_seeds = np.random.SeedSequence(seed).spawn((rows + chunk - 1) // chunk)

    def chunks() -> Iterator[pd.DataFrame]:
        done = 0
        for child in chunk_seeds:
            n = min(chunk, rows - done)
            frame = synth.sample(n, seed=int(child.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1)))
            for name in int_ids:  # surrogate keys unique across chunks and shards
                first = row_start + done + 1
                frame[name] = pd.Series(np.arange(first, first + len(frame)), index=frame.index).astype(
                    transformer.output_dtypes[name]
                )
            done += len(frame)
            yield frame

    if output_uri is None and output_prefix is None:
        raise ParameterError("give output_prefix or output_uri")
    uri = output_uri or shard_uri(str(output_prefix), index)
    if (warehouse is None) != (staging_table is None):
        raise ParameterError("give both warehouse and staging_table, or neither")
    frames = chunks()
    head = next(frames)
    staged = None
    with store.open_parquet_writer(uri, pa.Schema.from_pandas(head, preserve_index=False)) as writer:

        def written_to_parquet() -> Iterator[pd.DataFrame]:
            for frame in itertools.chain([head], frames):
                writer.write_frame(frame)
                yield frame

        if warehouse is not None and staging_table is not None:
            from synth_core.warehouse import column_types_for_spec, stage_rows

            staged = stage_rows(
                warehouse, written_to_parquet(), table=staging_table, schema=staging_schema,
                column_types=column_types_for_spec(transformer.spec, transformer.output_dtypes),
                nullable={c.name: c.nullable for c in transformer.spec.output_columns},
            )  # fmt: skip
        else:
            for _ in written_to_parquet():
                pass
    written = writer.rows
    if written != rows or (staged is not None and staged.rows != rows):
        raise AssertionError(f"shard {index} wrote {written} rows, planned {rows}")
    extra = (
        {}
        if staged is None
        else {"staged_chunk": {"table": staged.table, "schema": staged.schema, "rows": staged.rows}}
    )
    return {
        **extra,
        "index": index,
        "count": int(shard.get("count", 1)),
        "row_start": row_start,
        "rows": written,
        "seed": seed,
        "synthetic_uri": uri,
        "model_uri": model_uri,
        "source_table": transformer.spec.name,
        "seconds": round(time.monotonic() - started, 2),
    }


def check_shards(shards: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The shard manifests in index order, after checking they form one complete table: indices
    ``0..N-1`` each exactly once, one model, one table, contiguous row ranges, distinct seeds.

    Raises:
        ShardError: a shard is missing, duplicated or inconsistent (names the shard index).
    """
    from synth_core.errors import ShardError

    items = [dict(s) for s in shards]
    if not items:
        raise ShardError("no shard was sampled")
    count = int(items[0].get("count", len(items)))
    seen: dict[int, dict[str, Any]] = {}
    for s in items:
        k = int(s["index"])
        if k in seen:
            raise ShardError(f"shard {k} appears twice: a shard was sampled more than once")
        seen[k] = s
    missing = sorted(set(range(count)) - set(seen))
    if missing or len(seen) != count:
        raise ShardError(f"shards missing: {missing or sorted(set(seen) - set(range(count)))} of {count}")
    ordered = [seen[k] for k in range(count)]
    for key in ("model_uri", "source_table"):
        if len({str(s[key]) for s in ordered}) != 1:
            raise ShardError(f"the shards disagree on {key}: they were sampled from different models")
    if len({int(s["seed"]) for s in ordered}) != count:
        raise ShardError("two shards share a seed: their rows would repeat")
    if len({"staged_chunk" in s for s in ordered}) != 1:
        raise ShardError(
            "some shards loaded a staging-table chunk and others did not: publish needs all or none"
        )
    start = 0
    for s in ordered:
        if int(s["row_start"]) != start:
            raise ShardError(f"shard {s['index']} starts at row {s['row_start']}, expected {start}")
        start += int(s["rows"])
    return ordered


def combine_shards(
    store: ObjectStore, shards: Sequence[Mapping[str, Any]], output_uri: str, *, batch_rows: int = 50_000
) -> dict[str, Any]:
    """Stream the checked shard parts into one Parquet object (memory bounded by ``batch_rows``);
    returns ``{"synthetic_uri", "rows", "model_uri", "source_table", "shards"}``, plus
    ``staged_chunks`` (in shard order) when the shards loaded staging-table chunks.

    Raises:
        ShardError: see :func:`check_shards`; or a part holds another row count than its manifest.
    """
    import pyarrow as pa

    from synth_core.errors import ShardError

    ordered = check_shards(shards)

    def parts() -> Iterator[tuple[Mapping[str, Any], pd.DataFrame]]:
        for s in ordered:
            for frame in store.iter_parquet(str(s["synthetic_uri"]), batch_rows=batch_rows):
                yield s, frame

    counts = {int(s["index"]): 0 for s in ordered}
    batches = parts()
    shard, head = next(batches)
    # the writer's schema is the first part's; a part with other columns or types fails naming them
    with store.open_parquet_writer(output_uri, pa.Schema.from_pandas(head, preserve_index=False)) as writer:
        writer.write_frame(head)
        counts[int(shard["index"])] += len(head)
        del head
        for shard, frame in batches:
            writer.write_frame(frame)
            counts[int(shard["index"])] += len(frame)
        for s in ordered:
            if counts[int(s["index"])] != int(s["rows"]):
                raise ShardError(
                    f"shard {s['index']} holds {counts[int(s['index'])]} rows, its manifest says {s['rows']}"
                )
    total = writer.rows
    staged = [dict(s["staged_chunk"]) for s in ordered if "staged_chunk" in s]
    return {
        **({"staged_chunks": staged} if staged else {}),
        "synthetic_uri": output_uri,
        "rows": total,
        "model_uri": str(ordered[0]["model_uri"]),
        "source_table": str(ordered[0]["source_table"]),
        "shards": [
            {"index": int(s["index"]), "rows": int(s["rows"]), "uri": str(s["synthetic_uri"])}
            for s in ordered
        ],
    }


def _positive(value: Any, name: str) -> int:
    try:
        out = int(value)
    except (TypeError, ValueError):
        raise ParameterError(f"{name} must be an integer >= 1, got {value!r}") from None
    if out < 1 or (isinstance(value, float) and value != out) or isinstance(value, bool):
        raise ParameterError(f"{name} must be an integer >= 1, got {value!r}")
    return out
