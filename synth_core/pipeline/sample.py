"""The sample step (post-processing of a DP model: spends nothing), whole or as one shard.

Every entry point samples through :func:`synth_core.shards.sample_shard`, so any row count streams
in chunks of bounded memory; a whole-table sample is the one-shard case."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from synth_core.errors import BundleError, ParameterError

if TYPE_CHECKING:
    from synth_core.object_store import ObjectStore
    from synth_core.pipeline.records import ModelBundle

#: the most rows one sample step writes (bounded by disk, not memory; a larger table is sharded)
MAX_SAMPLE_ROWS = 1_000_000_000


def sample_rows(requested: Any, model: Any, bundle: ModelBundle | None = None) -> int:
    """Rows to sample: ``requested``, else the train manifest's ``dp_source_rows``, else the
    bundle's DP row count — all DP or public."""
    if requested not in (None, "", "None"):
        if isinstance(requested, bool) or (isinstance(requested, float) and not requested.is_integer()):
            raise ParameterError(f"num_rows must be an integer, got {requested!r}")
        try:
            rows = int(requested)
        except (TypeError, ValueError):
            raise ParameterError(f"num_rows must be an integer, got {requested!r}") from None
    else:
        rows = int(model.get("dp_source_rows") or 0) if isinstance(model, Mapping) else 0
        if not rows and bundle is not None:
            rows = bundle.dp_row_count
    if not 1 <= rows <= MAX_SAMPLE_ROWS:
        raise ParameterError(f"num_rows must be in [1, {MAX_SAMPLE_ROWS}], got {rows!r}")
    return rows


def model_uri_of(model: Any) -> str:
    """The bundle URI of a train manifest (``{"model_uri": ...}``) or a bare URI."""
    if isinstance(model, Mapping):
        if not model.get("model_uri"):
            raise ParameterError("model must be the train task's manifest (with model_uri) or a bundle URI")
        return str(model["model_uri"])
    if not isinstance(model, str) or not model:
        raise ParameterError(f"model must be a train manifest or a bundle URI, got {type(model).__name__}")
    return model


def live_model_uri(store: ObjectStore, latest_uri: str, what: str) -> str:
    """The model of the live release a ``_latest.json`` points at (a resample-only refresh)."""
    try:
        return str(json.loads(store.get_bytes(latest_uri))["model_uri"])
    except FileNotFoundError:
        raise BundleError(f"{what} has no published release to re-sample (no {latest_uri})") from None
    except (KeyError, TypeError, ValueError):
        raise BundleError(f"{latest_uri} is not a release pointer") from None


def fresh_seed() -> int:
    import secrets

    return secrets.randbits(63)


def sample(
    store: ObjectStore,
    *,
    model_uri: str,
    rows: int,
    output_uri: str,
    seed: int | None = None,
    chunk_rows: int | None = None,
) -> dict[str, Any]:
    """Sample ``rows`` rows into ``output_uri`` in bounded memory; the sample manifest
    (``source_table``, ``synthetic_uri``, ``rows``, ``model_uri``, ``seed``, ``epsilon_spent``,
    ``seconds``)."""
    from synth_core.shards import DEFAULT_CHUNK_ROWS, sample_shard

    shard = {"index": 0, "count": 1, "row_start": 0, "rows": int(rows),
             "seed": int(seed) if seed is not None else fresh_seed()}  # fmt: skip
    out = sample_shard(
        store,
        model_uri=model_uri,
        shard=shard,
        output_uri=output_uri,
        chunk_rows=chunk_rows or DEFAULT_CHUNK_ROWS,
    )
    return {
        "source_table": out["source_table"],
        "synthetic_uri": out["synthetic_uri"],
        "rows": out["rows"],
        "model_uri": out["model_uri"],
        "seed": seed,
        "epsilon_spent": 0.0,
        "seconds": out["seconds"],
    }
