"""Every object URI of one run, named once.

Under a store root (``{run}`` is :func:`run_key` of the run id)::

    staging/{table}/{run}/    train.parquet, holdout.parquet, spec.yaml, split_sizes.json,
                              evaluation.json, internal_report.html, data_docs/  (real rows,
                              real-data figures: the sensitive zone)
    models/{table}/{run}/     model.dpsynth.zip                      (DP model bundle)
    synthetic/{table}/{run}/  part-00000.parquet, shards/part-{k:05d}.parquet
    reports/{table}/{run}/    report.html, validation.json (pass/fail, thresholds, DP facts)
    published/{target}/{run}/ {table}.parquet, report.html, sources.yml, _manifest.json
    published/{target}/_latest.json

``{target}`` is the published table, schema-qualified when it has a schema: publishing the same
source to two schemas keeps two live pointers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


def run_key(run_id: str) -> str:
    """A run id made safe for object keys and paths."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", run_id).strip("_").lstrip(".") or "run"


def path_segment(name: str) -> str:
    """A table or schema name as one object-key segment: no separator, no ``..``, no ``%``-escape
    (keys are never URL-decoded, so ``%2e%2e`` stays literal; it is still rewritten to keep keys
    readable and identical on every store)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "_"


@dataclass(frozen=True)
class RunLayout:
    """The URIs of one run of one source table under ``root``."""

    root: str
    table: str
    run_id: str

    def _join(self, *parts: str) -> str:
        from synth_core.object_store import join_uri

        return join_uri(self.root.rstrip("/"), *parts)

    @property
    def run(self) -> str:
        return run_key(self.run_id)

    @property
    def table_key(self) -> str:
        return ".".join(path_segment(p) for p in self.table.split("."))

    # -- sensitive zone ------------------------------------------------------------------------
    @property
    def staging(self) -> str:
        return self._join("staging", self.table_key, self.run)

    def staged(self, name: str) -> str:
        """``train.parquet``, ``holdout.parquet``, ``spec.yaml``, ``evaluation.json``..."""
        from synth_core.object_store import join_uri

        return join_uri(self.staging, name)

    # -- DP outputs ----------------------------------------------------------------------------
    @property
    def model(self) -> str:
        return self._join("models", self.table_key, self.run, "model.dpsynth.zip")

    @property
    def synthetic(self) -> str:
        return self._join("synthetic", self.table_key, self.run, "part-00000.parquet")

    @property
    def shards_prefix(self) -> str:
        return self._join("synthetic", self.table_key, self.run, "shards")

    @property
    def reports(self) -> str:
        return self._join("reports", self.table_key, self.run)

    def report(self, name: str) -> str:
        from synth_core.object_store import join_uri

        return join_uri(self.reports, name)

    # -- published -----------------------------------------------------------------------------
    def published(self, target: str, schema: str | None = None) -> str:
        """The folder of this run's release of ``schema.target``."""
        return self._join("published", published_key(target, schema), self.run)

    def latest(self, target: str, schema: str | None = None) -> str:
        return latest_uri(self.root, target, schema)


def published_key(target: str, schema: str | None = None) -> str:
    """The key segment of a published table: ``schema.target`` or ``target``."""
    return ".".join(path_segment(p) for p in ((schema,) if schema else ()) + (target,))


def latest_uri(root: str, target: str, schema: str | None = None) -> str:
    """``published/{schema.target}/_latest.json``: the live release of that published table."""
    from synth_core.object_store import join_uri

    return join_uri(root.rstrip("/"), "published", published_key(target, schema), "_latest.json")
