"""Operators of one synthetic-table refresh: extract → train → sample → validate → publish.

Tasks hand each other small manifests through XCom (URIs, row counts, ε, δ), never data.
Where things live (``{root}`` is the object store root, ``{run}`` the run id made path-safe)::

    {root}/staging/{table}/{run}/   train.parquet, holdout.parquet, spec.yaml   (private: real rows)
    {root}/models/{table}/{run}/    model.dpsynth.zip                           (DP model bundle)
    {root}/synthetic/{table}/{run}/ part-00000.parquet
    {root}/reports/{table}/{run}/   report.html, validation.json
    {root}/published/{table}/{run}/ {table}.parquet, _manifest.json (written last)

Errors retrying cannot fix (bad spec or parameter, missing/empty table, exhausted budget, failed
validation) raise ``AirflowFailException``; anything else (a warehouse or store outage) is raised
as is, so Airflow's retries apply. Messages name tables, columns and thresholds, never cell values.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from synth_provider.hooks.dpsynth import DPSynthHook

if TYPE_CHECKING:
    from airflow.sdk import Context

    from synth_core.spec import TableSpec

DEFAULT_GENERATOR = "dp_tvae"


def run_key(run_id: str) -> str:
    """A run id made safe for object keys and paths."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", run_id).strip("_") or "run"


@contextlib.contextmanager
def fail_fast_on_non_retryable() -> Iterator[None]:
    """Turn dpsynth's non-retryable errors into ``AirflowFailException`` (no retries)."""
    from synth_core.errors import NonRetryableError

    try:
        yield
    except NonRetryableError as exc:
        raise AirflowFailException(f"{exc.__class__.__name__}: {exc}") from None


def load_spec(spec: str | Mapping[str, Any], source_table: str | None = None) -> TableSpec:
    """A spec from a YAML path, a YAML string or a mapping; its table must be ``source_table``."""
    from pathlib import Path

    from synth_core.errors import SpecError
    from synth_core.spec import TableSpec

    if isinstance(spec, Mapping):
        loaded = TableSpec.from_dict(spec)
    elif isinstance(spec, str) and "\n" not in spec and spec.endswith((".yaml", ".yml")):
        loaded = TableSpec.from_yaml(Path(spec))
    elif isinstance(spec, str):
        loaded = TableSpec.from_yaml(spec)
    else:
        raise SpecError(f"spec must be a YAML path, a YAML string or a mapping, got {type(spec).__name__}")
    if source_table is not None and loaded.name != source_table:
        raise SpecError(f"the spec describes table {loaded.name!r}, but source_table is {source_table!r}")
    return loaded


class DPSynthBaseOperator(BaseOperator):
    """Connections and locations shared by the dpsynth operators.

    Args:
        warehouse_conn_id: Airflow connection of the warehouse (``None``: embedded SQLite).
        object_store_uri: root URI for dpsynth's objects (``None``: provider default).
        aws_conn_id: Airflow connection with S3 credentials/endpoint, for ``s3://`` roots.
        ledger_uri: SQLAlchemy URL of the privacy ledger (``None``: provider default).
    """

    template_fields: Sequence[str] = ("object_store_uri", "ledger_uri")
    ui_color = "#e8f4ea"

    def __init__(
        self,
        *,
        warehouse_conn_id: str | None = None,
        object_store_uri: str | None = None,
        aws_conn_id: str | None = None,
        ledger_uri: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.warehouse_conn_id = warehouse_conn_id
        self.object_store_uri = object_store_uri
        self.aws_conn_id = aws_conn_id
        self.ledger_uri = ledger_uri

    def execute(self, context: Context) -> dict[str, Any]:
        with fail_fast_on_non_retryable():
            return self._execute(context)

    def _execute(self, context: Context) -> dict[str, Any]:
        """The task's work; dpsynth's non-retryable errors become ``AirflowFailException``."""
        raise NotImplementedError

    def get_hook(self) -> DPSynthHook:
        return DPSynthHook(
            warehouse_conn_id=self.warehouse_conn_id,
            object_store_uri=self.object_store_uri,
            aws_conn_id=self.aws_conn_id,
            ledger_uri=self.ledger_uri,
        )

    @staticmethod
    def _manifest(value: Any, name: str) -> dict[str, Any]:
        """An upstream manifest (XCom dict) or raise naming the argument."""
        if not isinstance(value, Mapping):
            raise AirflowFailException(
                f"{name} must be the manifest returned by the upstream dpsynth task, got {type(value).__name__}"
            )
        return dict(value)


class ExtractTableOperator(DPSynthBaseOperator):
    """Stage a warehouse table as Parquet (a train part and a real holdout for evaluation).

    Before reading any row: the spec is loaded and checked against the warehouse catalog (missing
    table, missing/undeclared columns, SQL types the spec's kinds cannot hold), and — when
    ``epsilon`` is given — the privacy ledger is asked whether the table's lifetime budget still
    covers the planned run, so a refused run never touches the data.

    Args:
        source_table: the table to synthesize (``schema.table`` allowed).
        spec: TableSpec as a YAML path, YAML string or mapping; its ``table`` must be ``source_table``.
        holdout_fraction: share of rows kept out of training for privacy/utility evaluation.
        epsilon, delta: the planned spend, checked against the ledger (optional here; the train
            task reserves it).
        lifetime_epsilon, lifetime_delta: the table's lifetime budget, granted in the ledger the
            first time the table is seen (an existing grant is never changed by a DAG).
        chunk_rows: rows per read chunk (memory stays bounded by it).

    Returns (XCom): ``{"source_table", "spec_uri", "train_uri", "holdout_uri", "rows_total",
    "rows_train", "rows_holdout", "dtypes", "staging_uri"}``.
    """

    template_fields: Sequence[str] = (
        *DPSynthBaseOperator.template_fields,
        "source_table",
        "spec",
        "epsilon",
        "delta",
    )
    template_ext: Sequence[str] = ()

    def __init__(
        self,
        *,
        source_table: str,
        spec: str | Mapping[str, Any],
        holdout_fraction: float = 0.2,
        epsilon: float | None = None,
        delta: float | None = None,
        lifetime_epsilon: float | None = None,
        lifetime_delta: float | None = None,
        chunk_rows: int = 50_000,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.source_table = source_table
        self.spec = spec
        self.holdout_fraction = holdout_fraction
        self.epsilon = epsilon
        self.delta = delta
        self.lifetime_epsilon = lifetime_epsilon
        self.lifetime_delta = lifetime_delta
        self.chunk_rows = chunk_rows

    def _execute(self, context: Context) -> dict[str, Any]:
        import numpy as np
        import pandas as pd

        from synth_core.errors import ParameterError, SourceTableError
        from synth_core.object_store import join_uri
        from synth_core.privacy import secret_seed
        from synth_core.warehouse import iter_table_chunks

        if not (0.0 < float(self.holdout_fraction) < 0.9):
            raise ParameterError(f"holdout_fraction must be in (0, 0.9), got {self.holdout_fraction!r}")
        spec = load_spec(self.spec, self.source_table)
        hook = self.get_hook()
        if self.epsilon is not None:
            budget_check(
                hook,
                spec.name,
                self.epsilon,
                self.delta,
                self.lifetime_epsilon,
                self.lifetime_delta,
                self.log,
            )

        engine = hook.get_warehouse_engine()
        store = hook.get_object_store()
        staging = join_uri(hook.object_store_root(), "staging", spec.name, run_key(context["run_id"]))
        dtypes, chunks = iter_table_chunks(engine, spec, chunk_rows=int(self.chunk_rows))
        rng = np.random.default_rng(secret_seed())
        train_parts: list[pd.DataFrame] = []
        holdout_parts: list[pd.DataFrame] = []
        for chunk in chunks:
            mask = rng.random(len(chunk)) < float(self.holdout_fraction)
            holdout_parts.append(chunk[mask])
            train_parts.append(chunk[~mask])
        rows_train = sum(len(p) for p in train_parts)
        rows_holdout = sum(len(p) for p in holdout_parts)
        if rows_train + rows_holdout == 0:
            raise SourceTableError(f"table {spec.name!r} is empty: there is nothing to synthesize")
        if rows_train < 2 or rows_holdout < 1:
            raise SourceTableError(
                f"table {spec.name!r} has too few rows ({rows_train + rows_holdout}) to train and evaluate a DP generator"
            )
        train = pd.concat(train_parts, ignore_index=True)
        holdout = pd.concat(holdout_parts, ignore_index=True)
        spec_uri = store.put_bytes(
            join_uri(staging, "spec.yaml"), spec.to_yaml().encode(), content_type="text/yaml"
        )
        train_uri = store.write_parquet(join_uri(staging, "train.parquet"), train)
        holdout_uri = store.write_parquet(join_uri(staging, "holdout.parquet"), holdout)
        self.log.info(
            "staged table %s: %d rows (%d train, %d holdout) under %s",
            spec.name,
            rows_train + rows_holdout,
            rows_train,
            rows_holdout,
            staging,
        )
        return {
            "source_table": spec.name,
            "staging_uri": staging,
            "spec_uri": spec_uri,
            "train_uri": train_uri,
            "holdout_uri": holdout_uri,
            "rows_total": rows_train + rows_holdout,
            "rows_train": rows_train,
            "rows_holdout": rows_holdout,
            "holdout_fraction": float(self.holdout_fraction),
            "dtypes": dtypes,
        }


def budget_check(
    hook: DPSynthHook,
    table: str,
    epsilon: Any,
    delta: Any,
    lifetime_epsilon: Any,
    lifetime_delta: Any,
    log: Any,
) -> None:
    """Refuse early (before reading rows) when the ledger cannot cover ``(epsilon, delta)``."""
    from synth_core.privacy import PrivacyBudget

    budget = PrivacyBudget(float(epsilon), float(delta) if delta is not None else 1e-6)
    ledger = hook.get_ledger()
    if lifetime_epsilon is not None:
        ledger.ensure_grant(table, float(lifetime_epsilon), float(lifetime_delta or budget.delta * 10))
    status = ledger.check(table, budget.epsilon, budget.delta)
    log.info(
        "privacy ledger: table %s has %.4g of lifetime ε %.4g left; this run plans ε=%.4g",
        table,
        status.remaining_epsilon,
        status.lifetime_epsilon,
        budget.epsilon,
    )


class TrainSynthesizerOperator(DPSynthBaseOperator):
    """Train a DP generator on the staged rows, within a reserved share of the table's budget.

    The ledger reservation happens before the staged rows are read; if the task then fails before
    reading them, the reservation is released, otherwise it stays spent (the data was touched).

    Args:
        staged: the manifest returned by :class:`ExtractTableOperator` (usually ``extract.output``).
        generator: a registered generator name (``dp_tvae``).
        generator_params: the generator's parameters (epochs, batch_size, ...).
        epsilon, delta: the release's target (ε, δ); the reported ε never exceeds ``epsilon``.
        preprocessing_fraction: budget share for DP bounds/quantiles/category discovery.
        lifetime_epsilon, lifetime_delta: initial lifetime grant when the table is new to the ledger.
        seed: seeds model initialisation only (DP noise always uses OS entropy).

    Returns (XCom): ``{"model_uri", "generator", "epsilon", "delta", "target_epsilon", "rows_trained",
    "dp_source_rows", "reservation_id", "source_table"}``.
    """

    template_fields: Sequence[str] = (
        *DPSynthBaseOperator.template_fields,
        "staged",
        "generator",
        "generator_params",
        "epsilon",
        "delta",
    )

    def __init__(
        self,
        *,
        staged: Any,
        epsilon: float,
        delta: float = 1e-6,
        generator: str = DEFAULT_GENERATOR,
        generator_params: Mapping[str, Any] | None = None,
        preprocessing_fraction: float = 0.1,
        lifetime_epsilon: float | None = None,
        lifetime_delta: float | None = None,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.staged = staged
        self.epsilon = epsilon
        self.delta = delta
        self.generator = generator
        self.generator_params = generator_params
        self.preprocessing_fraction = preprocessing_fraction
        self.lifetime_epsilon = lifetime_epsilon
        self.lifetime_delta = lifetime_delta
        self.seed = seed

    def _execute(self, context: Context) -> dict[str, Any]:
        from synth_core.generators import create_synthesizer
        from synth_core.object_store import join_uri
        from synth_core.privacy import PrivacyBudget
        from synth_core.spec import TableSpec

        staged = self._manifest(self.staged, "staged")
        budget = PrivacyBudget(
            float(self.epsilon), float(self.delta), preprocessing_fraction=float(self.preprocessing_fraction)
        )
        synth = create_synthesizer(str(self.generator), **dict(self.generator_params or {}))
        hook = self.get_hook()
        store = hook.get_object_store()
        table = staged["source_table"]
        ledger = hook.get_ledger()
        if self.lifetime_epsilon is not None:
            ledger.ensure_grant(
                table, float(self.lifetime_epsilon), float(self.lifetime_delta or budget.delta * 10)
            )
        reservation = ledger.reserve(
            table, budget.epsilon, budget.delta, run_id=context["run_id"], mechanism=str(self.generator)
        )
        self.log.info(
            "privacy ledger: reserved ε=%.4g, δ=%.3g for table %s (reservation %d)",
            budget.epsilon,
            budget.delta,
            table,
            reservation,
        )
        try:
            spec = TableSpec.from_yaml(store.get_bytes(staged["spec_uri"]).decode())
            train = store.read_parquet(staged["train_uri"])
        except BaseException:
            ledger.release(reservation, note="failed before reading private rows")
            raise
        synth.fit(train, spec, budget, seed=self.seed)
        assert synth.privacy_ is not None
        spent_eps, spent_delta = float(synth.privacy_["epsilon"]), float(synth.privacy_["delta"])
        model_uri = join_uri(
            hook.object_store_root(), "models", table, run_key(context["run_id"]), "model.dpsynth.zip"
        )
        synth.save(model_uri, store=store)
        ledger.settle(reservation, spent_eps, spent_delta, note=f"model {model_uri}")
        status = ledger.status(table)
        self.log.info(
            "trained %s on %d rows: ε=%.4f (target %.4g), δ=%.3g; table %s has ε %.4g of %.4g left; model %s",
            self.generator,
            len(train),
            spent_eps,
            budget.epsilon,
            spent_delta,
            table,
            status.remaining_epsilon,
            status.lifetime_epsilon,
            model_uri,
        )
        assert synth.transformer_ is not None
        return {
            "source_table": table,
            "model_uri": model_uri,
            "generator": str(self.generator),
            "epsilon": spent_eps,
            "delta": spent_delta,
            "target_epsilon": budget.epsilon,
            "rows_trained": len(train),
            # DP count of the training rows scaled by the (public) holdout fraction: the default
            # size of the synthetic replacement table
            "dp_source_rows": round(
                synth.transformer_.dp_row_count / (1.0 - float(staged.get("holdout_fraction", 0.0)))
            ),
            "reservation_id": reservation,
        }


class SampleSynthesizerOperator(DPSynthBaseOperator):
    """Sample a synthetic table from a saved DP model (post-processing: spends no budget).

    Args:
        model: the train task's manifest, or a model bundle URI (a resample-only refresh).
        num_rows: rows to sample; ``None``: the source table's DP row count (from the train
            manifest; from a bare model URI, the DP count of the training rows).
        seed: sampling seed (``None``: fresh randomness).

    Returns (XCom): ``{"synthetic_uri", "rows", "model_uri", "source_table"}``.
    """

    template_fields: Sequence[str] = (*DPSynthBaseOperator.template_fields, "model", "num_rows", "seed")

    def __init__(
        self, *, model: Any, num_rows: int | None = None, seed: int | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.model = model
        self.num_rows = num_rows
        self.seed = seed

    def _execute(self, context: Context) -> dict[str, Any]:
        from synth_core.errors import ParameterError
        from synth_core.generators import Synthesizer
        from synth_core.object_store import join_uri

        model_uri = self.model["model_uri"] if isinstance(self.model, Mapping) else str(self.model)
        hook = self.get_hook()
        store = hook.get_object_store()
        synth = Synthesizer.load(model_uri, store=store)
        assert synth.transformer_ is not None
        table = synth.transformer_.spec.name
        if self.num_rows in (None, "", "None"):
            n = int(self.model.get("dp_source_rows", 0)) if isinstance(self.model, Mapping) else 0
            n = n or synth.transformer_.dp_row_count
        else:
            n = _as_int(self.num_rows, "num_rows")
        if n < 1:
            raise ParameterError(f"num_rows must be >= 1, got {self.num_rows!r}")
        seed = None if self.seed in (None, "", "None") else _as_int(self.seed, "seed")
        frame = synth.sample(n, seed=seed)
        uri = join_uri(
            hook.object_store_root(), "synthetic", table, run_key(context["run_id"]), "part-00000.parquet"
        )
        store.write_parquet(uri, frame)
        self.log.info(
            "sampled %d synthetic rows of %s from %s into %s (no privacy budget spent)",
            n,
            table,
            model_uri,
            uri,
        )
        return {"source_table": table, "synthetic_uri": uri, "rows": n, "model_uri": model_uri}


def _as_int(value: Any, name: str) -> int:
    from synth_core.errors import ParameterError

    try:
        out = int(value)
    except (TypeError, ValueError):
        raise ParameterError(f"{name} must be an integer, got {value!r}") from None
    if isinstance(value, float) and value != out:
        raise ParameterError(f"{name} must be an integer, got {value!r}")
    return out


class ValidateSyntheticOperator(DPSynthBaseOperator):
    """The release gate: Great Expectations checks, quality/privacy metrics and the report.

    The suite is built from the spec and the source dtypes: column set and order, types,
    nullability, category domains (public, or the DP-discovered domain in the model), numeric and
    datetime ranges (public, or the DP range the model clips to), unique ids, the row count. A failed critical expectation raises ``AirflowFailException`` listing every failure;
    nothing is published. Metrics compare the synthetic rows with the staged real train/holdout
    rows (an evaluation on real data: its aggregates are not DP; see the README).

    Returns (XCom): ``{"success", "validation_uri", "report_uri", "data_docs_uri", "metrics"}``.
    """

    template_fields: Sequence[str] = (*DPSynthBaseOperator.template_fields, "staged", "model", "synthetic")

    def __init__(
        self, *, staged: Any, model: Any, synthetic: Any, compute_metrics: bool = True, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.staged = staged
        self.model = model
        self.synthetic = synthetic
        self.compute_metrics = compute_metrics

    def _execute(self, context: Context) -> dict[str, Any]:
        import tempfile
        from pathlib import Path

        from synth_core.errors import ValidationFailedError
        from synth_core.generators import Synthesizer
        from synth_core.metrics import evaluate_release
        from synth_core.object_store import join_uri
        from synth_core.report import render_release_report
        from synth_expectations import validate_frame

        staged = self._manifest(self.staged, "staged")
        model = self._manifest(self.model, "model")
        synthetic = self._manifest(self.synthetic, "synthetic")
        hook = self.get_hook()
        store = hook.get_object_store()
        table = staged["source_table"]
        reports = join_uri(hook.object_store_root(), "reports", table, run_key(context["run_id"]))
        synth = Synthesizer.load(model["model_uri"], store=store)
        transformer = synth.transformer_
        assert transformer is not None
        spec = transformer.spec
        frame = store.read_parquet(synthetic["synthetic_uri"])
        with tempfile.TemporaryDirectory() as docs_dir:
            outcome = validate_frame(
                frame,
                spec,
                staged["dtypes"],
                domains=transformer.dp_domains(),
                ranges=transformer.dp_ranges(),
                row_count=int(synthetic["rows"]),
                data_docs_dir=docs_dir,
            )
            data_docs_uri = None
            for path in sorted(Path(docs_dir).rglob("*")):
                if path.is_file():
                    uri = store.put_bytes(
                        join_uri(reports, "data_docs", str(path.relative_to(docs_dir))), path.read_bytes()
                    )
                    if path.name == "index.html" and data_docs_uri is None:
                        data_docs_uri = uri
        validation_uri = store.put_bytes(
            join_uri(reports, "validation.json"),
            json.dumps(outcome.to_dict(), indent=1).encode(),
            content_type="application/json",
        )
        metrics: dict[str, Any] = {}
        if self.compute_metrics:
            train = store.read_parquet(staged["train_uri"])
            holdout = store.read_parquet(staged["holdout_uri"])
            metrics = evaluate_release(train, holdout, frame, spec)
        release = {
            "table": table,
            "generator": model.get("generator"),
            "generator_params": synth.params,
            "run_id": context["run_id"],
            "rows": int(synthetic["rows"]),
            "model_uri": model["model_uri"],
            "synthetic_uri": synthetic["synthetic_uri"],
            "validation_uri": validation_uri,
        }
        html = render_release_report(
            spec=spec,
            synthetic=frame,
            transformer_state=transformer.to_dict(),
            privacy=synth.privacy_ or {},
            metrics=metrics,
            release=release,
        )
        report_uri = store.put_bytes(
            join_uri(reports, "report.html"), html.encode(), content_type="text/html"
        )
        passed = sum(1 for r in outcome.results if r.success)
        self.log.info(
            "validation of %s: %d/%d expectations passed; report %s",
            table,
            passed,
            len(outcome.results),
            report_uri,
        )
        for key, value in metrics.items():
            self.log.info("metric %s = %s", key, value)
        if not outcome.success:
            raise ValidationFailedError(outcome.failure_message(table))
        return {
            "success": True,
            "validation_uri": validation_uri,
            "report_uri": report_uri,
            "data_docs_uri": data_docs_uri,
            "metrics": metrics,
        }


class PublishSyntheticOperator(DPSynthBaseOperator):
    """Publish a validated synthetic table: warehouse swap, Parquet, and a manifest written last.

    The warehouse table is written to a staging table and swapped in in one transaction, with
    the source table's SQL column types; a failure leaves the previous synthetic table as it was.
    The Parquet copy goes under a run-scoped key, and ``_manifest.json`` (schema, rows, ε, δ,
    generator, run id, URIs) is written last, so readers never see a partial release.

    Args:
        target_table: the synthetic table's name (default ``{source_table}_synthetic``).

    Returns (XCom): the manifest.
    """

    template_fields: Sequence[str] = (
        *DPSynthBaseOperator.template_fields,
        "staged",
        "model",
        "synthetic",
        "validation",
        "target_table",
    )

    def __init__(
        self,
        *,
        staged: Any,
        model: Any,
        synthetic: Any,
        validation: Any,
        target_table: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.staged = staged
        self.model = model
        self.synthetic = synthetic
        self.validation = validation
        self.target_table = target_table

    def _execute(self, context: Context) -> dict[str, Any]:
        import datetime as dt

        from synth_core.errors import ValidationFailedError
        from synth_core.object_store import join_uri
        from synth_core.warehouse import publish_table_atomically, reflect_table

        staged = self._manifest(self.staged, "staged")
        model = self._manifest(self.model, "model")
        synthetic = self._manifest(self.synthetic, "synthetic")
        validation = self._manifest(self.validation, "validation")
        if not validation.get("success"):
            raise ValidationFailedError("the synthetic table did not pass validation; nothing is published")
        table = staged["source_table"]
        target = self.target_table or f"{table}_synthetic"
        hook = self.get_hook()
        store = hook.get_object_store()
        engine = hook.get_warehouse_engine()
        frame = store.read_parquet(synthetic["synthetic_uri"])
        source = reflect_table(engine, table)
        types = {c.name: c.type for c in source.columns if c.name in frame.columns}
        nullable = {c.name: bool(c.nullable) for c in source.columns if c.name in frame.columns}
        publish_table_atomically(engine, frame, target=target, column_types=types, nullable=nullable)
        published = join_uri(hook.object_store_root(), "published", table, run_key(context["run_id"]))
        parquet_uri = store.write_parquet(join_uri(published, f"{target.split('.')[-1]}.parquet"), frame)
        manifest = {
            "source_table": table,
            "synthetic_table": target,
            "warehouse": engine.url.render_as_string(hide_password=True),
            "rows": len(frame),
            "rows_source": staged["rows_total"],
            "schema": [{"name": n, "dtype": str(t)} for n, t in frame.dtypes.items()],
            "epsilon": model["epsilon"],
            "delta": model["delta"],
            "target_epsilon": model.get("target_epsilon"),
            "generator": model["generator"],
            "run_id": context["run_id"],
            "model_uri": model["model_uri"],
            "parquet_uri": parquet_uri,
            "report_uri": validation.get("report_uri"),
            "validation_uri": validation.get("validation_uri"),
            "metrics": validation.get("metrics", {}),
            "published_at": dt.datetime.now(dt.UTC).isoformat(),
        }
        manifest_uri = join_uri(published, "_manifest.json")
        store.put_bytes(
            manifest_uri, json.dumps(manifest, indent=1).encode(), content_type="application/json"
        )
        self.log.info(
            "published %d synthetic rows of %s as table %s (ε=%.4f, δ=%.3g); parquet %s; manifest %s",
            len(frame),
            table,
            target,
            model["epsilon"],
            model["delta"],
            parquet_uri,
            manifest_uri,
        )
        return {**manifest, "manifest_uri": manifest_uri}
