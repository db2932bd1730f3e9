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
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from synth_provider.hooks.dpsynth import DPSynthHook
from synth_provider.lineage import LineageDataset, operator_lineage
from synth_provider.links.report import SyntheticDataReportLink, persist_report_url

if TYPE_CHECKING:
    from airflow.sdk import Context

    from synth_core.spec import TableSpec

DEFAULT_GENERATOR = "dp_tvae"


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

    #: (inputs, outputs) recorded by ``execute`` for OpenLineage
    _lineage: tuple[list[LineageDataset], list[LineageDataset]] | None = None

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """Inputs and outputs of the finished task (``None`` without the OpenLineage provider)."""
        if self._lineage is None:
            return None
        return operator_lineage(*self._lineage)

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
        source_query: a SQL ``SELECT`` to read instead of the table (e.g. a join or a filter);
            ``source_table`` then names the dataset in the ledger, paths and the published table.
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
        "source_query",
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
        source_query: str | None = None,
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
        self.source_query = source_query
        self.holdout_fraction = holdout_fraction
        self.epsilon = epsilon
        self.delta = delta
        self.lifetime_epsilon = lifetime_epsilon
        self.lifetime_delta = lifetime_delta
        self.chunk_rows = chunk_rows

    def _execute(self, context: Context) -> dict[str, Any]:
        from synth_core.object_store import join_uri, lineage_dataset_for_uri
        from synth_core.release import run_key, stage_source
        from synth_core.warehouse import lineage_dataset

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
        staged = stage_source(
            engine,
            hook.get_object_store(),
            spec,
            staging_uri=join_uri(hook.object_store_root(), "staging", spec.name, run_key(context["run_id"])),
            holdout_fraction=float(self.holdout_fraction),
            chunk_rows=int(self.chunk_rows),
            query=self.source_query or None,
        )
        self._lineage = (
            [] if self.source_query else [lineage_dataset(engine, spec.name)],
            [lineage_dataset_for_uri(staged["train_uri"]), lineage_dataset_for_uri(staged["holdout_uri"])],
        )
        self.log.info(
            "staged table %s: %d rows (%d train, %d holdout) under %s",
            spec.name, staged["rows_total"], staged["rows_train"], staged["rows_holdout"], staged["staging_uri"],
        )  # fmt: skip
        return staged


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
        generator: a registered generator name (``dp_tvae``), or ``auto`` to let
            :func:`~synth_core.generators.auto.choose_generator` pick one (logged, and returned as
            ``generator`` with the reason in ``generator_choice``).
        generator_params: the generator's parameters (epochs, batch_size, ...).
        epsilon, delta: the release's target (ε, δ); the reported ε never exceeds ``epsilon``.
        preprocessing_fraction: budget share for DP bounds/quantiles/category discovery.
        lifetime_epsilon, lifetime_delta: initial lifetime grant when the table is new to the ledger.
        seed: seeds model initialisation only (DP noise always uses OS entropy).

    Returns (XCom): ``{"model_uri", "generator", "generator_choice", "epsilon", "delta",
    "target_epsilon", "rows_trained", "dp_source_rows", "reservation_id", "source_table"}``.
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
        from synth_core.errors import MissingExtraError
        from synth_core.generators import create_synthesizer
        from synth_core.object_store import join_uri
        from synth_core.privacy import PrivacyBudget
        from synth_core.release import run_key
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
        try:
            synth.fit(train, spec, budget, seed=self.seed)
        except MissingExtraError:
            # raised before any private computation: nothing was spent, the message says what to install
            ledger.release(reservation, note="the generator's optional extra is not installed")
            raise
        assert synth.privacy_ is not None
        spent_eps, spent_delta = float(synth.privacy_["epsilon"]), float(synth.privacy_["delta"])
        # generator="auto" picks one at fit time: report the one trained, and why
        choice = (synth.training_ or {}).get("auto")
        generator = str(choice["generator"]) if choice else str(self.generator)
        if choice:
            self.log.info("generator 'auto' picked %s: %s", choice["generator"], choice["reason"])
        model_uri = join_uri(
            hook.object_store_root(), "models", table, run_key(context["run_id"]), "model.dpsynth.zip"
        )
        synth.save(model_uri, store=store)
        ledger.settle(reservation, spent_eps, spent_delta, note=f"model {model_uri}")
        status = ledger.status(table)
        self.log.info(
            "trained %s on %d rows: ε=%.4f (target %.4g), δ=%.3g; table %s has ε %.4g of %.4g left; model %s",
            generator,
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
            "generator": generator,
            "generator_choice": choice["reason"] if choice else None,
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
        model: the train task's manifest, or a model bundle URI.
        resample_of: instead of ``model``, a source table: its live release's model (from
            ``published/{table}/_latest.json``) is re-sampled. This is the **resample-only
            refresh**: no data access, recorded in the ledger with ε = 0 — the way to refresh often.
        num_rows: rows to sample; ``None``: the source table's DP row count (from the train
            manifest; from a bare model URI, the DP count of the training rows).
        seed: sampling seed (``None``: fresh randomness).

    Returns (XCom): ``{"synthetic_uri", "rows", "model_uri", "source_table"}``, plus for a resample
    the model facts publish needs (``generator``, ``epsilon``, ``delta``, ``resample_only``).
    """

    template_fields: Sequence[str] = (
        *DPSynthBaseOperator.template_fields, "model", "resample_of", "num_rows", "seed",
    )  # fmt: skip

    def __init__(
        self,
        *,
        model: Any = None,
        resample_of: str | None = None,
        num_rows: int | None = None,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.model = model
        self.resample_of = resample_of
        self.num_rows = num_rows
        self.seed = seed

    def _execute(self, context: Context) -> dict[str, Any]:
        from synth_core.errors import BundleError, ParameterError
        from synth_core.generators import Synthesizer
        from synth_core.object_store import join_uri
        from synth_core.release import run_key

        hook = self.get_hook()
        store = hook.get_object_store()
        if (self.model is None) == (not self.resample_of):
            raise ParameterError(
                "give exactly one of model (a manifest or bundle URI) and resample_of (a table)"
            )
        if self.resample_of:
            latest = join_uri(hook.object_store_root(), "published", str(self.resample_of), "_latest.json")
            try:
                model_uri = str(json.loads(store.get_bytes(latest))["model_uri"])
            except FileNotFoundError:
                raise BundleError(
                    f"table {self.resample_of!r} has no published release to re-sample (no {latest})"
                ) from None
        else:
            model_uri = self.model["model_uri"] if isinstance(self.model, Mapping) else str(self.model)
        synth = Synthesizer.load(model_uri, store=store)
        assert synth.transformer_ is not None and synth.privacy_ is not None
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
        out: dict[str, Any] = {"source_table": table, "synthetic_uri": uri, "rows": n, "model_uri": model_uri}
        if self.resample_of:
            hook.get_ledger().record_resample(table, run_id=context["run_id"], model_uri=model_uri)
            out.update(
                resample_only=True,
                generator=synth.name,
                epsilon=float(synth.privacy_["epsilon"]),
                delta=float(synth.privacy_["delta"]),
                target_epsilon=float(synth.privacy_.get("target_epsilon", synth.privacy_["epsilon"])),
            )
        self.log.info(
            "sampled %d synthetic rows of %s from %s into %s (post-processing: no privacy budget spent%s)",
            n, table, model_uri, uri, "; resample-only refresh recorded in the ledger with ε=0" if self.resample_of else "",
        )  # fmt: skip
        return out


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
    """The release gate between sample and publish: Great Expectations on schema, types,
    semantics and privacy, plus the quality metrics and the release report.

    Expectations (GX Core, on an ephemeral context; results never hold cell values):

    * schema and types: column set and order, dtypes, nullability, uniqueness of ids, row count;
    * domains and ranges: public category domains and bounds, else the DP ones the model uses;
    * NULL rates within ``null_rate_tolerance`` of the model's DP estimate;
    * every semantic rule of the spec (sampling enforces the critical ones: 0 violations expected);
    * privacy thresholds on the release's metrics: DCR share ≤ ``max_dcr_share``, NNDR ≥
      ``min_nndr``, membership-inference attack AUC ≤ ``max_attack_auc``, ε ≤ the target;
    * ``extra_expectations``: the user's own — GX ``Expectation`` objects, a callable
      ``(spec, dtypes) -> expectations``, or the path of a GX suite JSON file.

    A failed critical expectation raises ``AirflowFailException`` (no retry) listing every failure;
    nothing is published. Warnings are logged and do not block. The metrics compare the synthetic
    rows with the staged real train/holdout rows: an evaluation on real data, whose aggregates are
    not DP, and gating on them is a data-dependent decision (see the README). Data Docs HTML,
    ``validation.json`` and ``report.html`` go to ``reports/{table}/{run}/``.

    Returns (XCom): ``{"success", "validation_uri", "report_uri", "data_docs_uri", "metrics",
    "warnings"}``.
    """

    template_fields: Sequence[str] = (*DPSynthBaseOperator.template_fields, "staged", "model", "synthetic")
    operator_extra_links = (SyntheticDataReportLink(),)

    def __init__(
        self,
        *,
        staged: Any,
        model: Any,
        synthetic: Any,
        compute_metrics: bool = True,
        enforce_privacy_thresholds: bool = True,
        max_dcr_share: float = 0.52,
        min_nndr: float = 0.5,
        max_attack_auc: float = 0.60,
        null_rate_tolerance: float = 0.05,
        extra_expectations: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.staged = staged
        self.model = model
        self.synthetic = synthetic
        self.compute_metrics = compute_metrics
        self.enforce_privacy_thresholds = enforce_privacy_thresholds
        self.max_dcr_share = max_dcr_share
        self.min_nndr = min_nndr
        self.max_attack_auc = max_attack_auc
        self.null_rate_tolerance = null_rate_tolerance
        self.extra_expectations = extra_expectations

    def _execute(self, context: Context) -> dict[str, Any]:
        import tempfile
        from pathlib import Path

        from synth_core.errors import ParameterError, ValidationFailedError
        from synth_core.generators import Synthesizer
        from synth_core.metrics import evaluate_release
        from synth_core.object_store import join_uri
        from synth_core.release import run_key
        from synth_core.report import InternalEvidence, render_release_report
        from synth_expectations import PrivacyThresholds, gate_metrics, validate_frame

        model = self._manifest(self.model, "model")
        synthetic = self._manifest(self.synthetic, "synthetic")
        # a resample-only refresh has no staged rows: no real data is read, the evaluation of the
        # model's own release stands, and the schema/rule/domain checks still run
        staged = self._manifest(self.staged, "staged") if self.staged is not None else None
        compute_metrics = self.compute_metrics and staged is not None
        enforce_privacy = self.enforce_privacy_thresholds and staged is not None
        if enforce_privacy and not compute_metrics:
            raise ParameterError(
                "enforce_privacy_thresholds needs compute_metrics=True (the thresholds apply to them)"
            )
        hook = self.get_hook()
        store = hook.get_object_store()
        synth = Synthesizer.load(model["model_uri"], store=store)
        transformer = synth.transformer_
        assert transformer is not None
        spec = transformer.spec
        table = staged["source_table"] if staged is not None else spec.name
        dtypes = staged["dtypes"] if staged is not None else transformer.output_dtypes
        reports = join_uri(hook.object_store_root(), "reports", table, run_key(context["run_id"]))
        frame = store.read_parquet(synthetic["synthetic_uri"])

        metrics: dict[str, Any] = {}
        if compute_metrics:
            assert staged is not None
            train = store.read_parquet(staged["train_uri"])
            holdout = store.read_parquet(staged["holdout_uri"])
            metrics = evaluate_release(train, holdout, frame, spec)
        release_metrics = None
        if enforce_privacy:
            release_metrics = gate_metrics(
                metrics, epsilon=float(model["epsilon"]), target_epsilon=model.get("target_epsilon")
            )
        with tempfile.TemporaryDirectory() as docs_dir:
            outcome = validate_frame(
                frame,
                spec,
                dtypes,
                domains=transformer.dp_domains(),
                ranges=transformer.dp_ranges(),
                row_count=int(synthetic["rows"]),
                null_rates=transformer.dp_null_rates(),
                null_rate_tolerance=float(self.null_rate_tolerance),
                release_metrics=release_metrics,
                privacy_thresholds=PrivacyThresholds(
                    max_dcr_share=float(self.max_dcr_share),
                    min_nndr=float(self.min_nndr),
                    max_attack_auc=float(self.max_attack_auc),
                )
                if enforce_privacy
                else None,
                extra_expectations=self.extra_expectations,
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
        report_args: dict[str, Any] = {
            "spec": spec,
            "synthetic": frame,
            "transformer_state": transformer.to_dict(),
            "privacy": synth.privacy_ or {},
            "release": release,
            "validation": outcome.to_dict(),
            "budget": hook.get_ledger().status(table).to_dict(),
            "diagnostics": synth.diagnostics() or None,
        }
        # the shareable report: every real-data figure in it is a DP output (it may leave the
        # sensitive zone and is published beside the table)
        report_uri = store.put_bytes(
            join_uri(reports, "report.html"),
            render_release_report(**report_args).encode(),
            content_type="text/html",
        )
        persist_report_url(context, store, report_uri)
        internal_report_uri = evaluation_uri = None
        if staged is not None and compute_metrics:
            evaluation_uri = store.put_bytes(
                join_uri(staged["staging_uri"], "evaluation.json"),
                json.dumps(
                    {"table": table, "run_id": context["run_id"], "metrics": metrics}, indent=1
                ).encode(),
                content_type="application/json",
            )
            # the internal report adds statistics of real rows: it stays beside the staged rows
            internal_report_uri = store.put_bytes(
                join_uri(staged["staging_uri"], "internal_report.html"),
                render_release_report(
                    **report_args, metrics=metrics, internal=InternalEvidence(train, holdout)
                ).encode(),
                content_type="text/html",
            )
        passed = sum(1 for r in outcome.results if r.success)
        self.log.info(
            "validation of %s: %d/%d expectations passed; Data Docs %s; report %s",
            table, passed, len(outcome.results), data_docs_uri, report_uri,
        )  # fmt: skip
        for key, value in metrics.items():
            self.log.info("metric %s = %s", key, value)
        warnings = [w.summary for w in outcome.warnings()]
        for line in warnings:
            self.log.warning("validation warning (does not block): %s", line)
        if not outcome.success:
            raise ValidationFailedError(outcome.failure_message(table))
        return {
            "success": True,
            "validation_uri": validation_uri,
            "report_uri": report_uri,
            "internal_report_uri": internal_report_uri,
            "evaluation_uri": evaluation_uri,
            "data_docs_uri": data_docs_uri,
            "metrics": metrics,
            "warnings": warnings,
        }


class PublishSyntheticOperator(DPSynthBaseOperator):
    """Publish a validated synthetic table: Parquet, warehouse swap, dbt sources, manifest last.

    Order, so that readers never see a partial release and a failure loses nothing:

    1. the synthetic Parquet is copied under a run-scoped key (invisible until the manifest names it);
    2. the warehouse table is replaced atomically (staging table + swap in one transaction, with the
       source's column types, table/column comments saying it is synthetic with ε and the run id,
       and a row in ``dpsynth_releases``); a failure leaves the previous table readable and intact;
    3. ``sources.yml`` for dbt (to the object store and, optionally, into a dbt project);
    4. ``_manifest.json`` (schema, rows, ε, δ, generator, run id, report URI), then
       ``published/{table}/_latest.json`` pointing at it;
    5. an Airflow Asset event for the synthetic table (URI in astronomer-cosmos's scheme) with rows,
       ε and run id, through the task's ``AssetAlias`` outlet (set by the task-group builder).

    Args:
        target_table: the synthetic table's name. Default: the source table's name when
            ``target_schema`` is given (a dbt project then switches by schema only), else
            ``{source_table}_synthetic``.
        target_schema: schema of the synthetic table (created on PostgreSQL if missing).
        dbt_source_name: dbt source the table is declared in (``sources.yml``).
        dbt_project_dir: a dbt project folder to also write ``models/dpsynth/<target>.yml`` into.
        dbt_freshness: dbt freshness config (default: warn after 8 days, error after 15).

    Returns (XCom): the manifest plus ``manifest_uri``.
    """

    template_fields: Sequence[str] = (
        *DPSynthBaseOperator.template_fields,
        "staged",
        "model",
        "synthetic",
        "validation",
        "target_table",
        "target_schema",
        "dbt_project_dir",
    )
    operator_extra_links = (SyntheticDataReportLink(),)

    def __init__(
        self,
        *,
        staged: Any,
        model: Any,
        synthetic: Any,
        validation: Any,
        target_table: str | None = None,
        target_schema: str | None = None,
        dbt_source_name: str = "dpsynth",
        dbt_project_dir: str | None = None,
        dbt_freshness: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.staged = staged
        self.model = model
        self.synthetic = synthetic
        self.validation = validation
        self.target_table = target_table
        self.target_schema = target_schema
        self.dbt_source_name = dbt_source_name
        self.dbt_project_dir = dbt_project_dir
        self.dbt_freshness = dbt_freshness

    def _execute(self, context: Context) -> dict[str, Any]:
        from synth_core.bundle import read_bundle_metadata
        from synth_core.errors import ValidationFailedError
        from synth_core.release import publish_release
        from synth_core.transformer import TableTransformer

        model = self._manifest(self.model, "model")
        synthetic = self._manifest(self.synthetic, "synthetic")
        validation = self._manifest(self.validation, "validation")
        if not validation.get("success"):
            raise ValidationFailedError("the synthetic table did not pass validation; nothing is published")
        hook = self.get_hook()
        store = hook.get_object_store()
        meta = read_bundle_metadata(store.get_bytes(model["model_uri"]))
        done = publish_release(
            hook.get_warehouse_engine(),
            store,
            root_uri=hook.object_store_root(),
            transformer=TableTransformer.from_dict(meta["transformer"]),
            model=model,
            synthetic_uri=synthetic["synthetic_uri"],
            rows=int(synthetic["rows"]),
            run_id=context["run_id"],
            staged=self._manifest(self.staged, "staged") if self.staged is not None else None,
            target_table=self.target_table,
            target_schema=self.target_schema or None,
            report_uri=validation.get("report_uri"),
            validation_uri=validation.get("validation_uri"),
            dbt_source_name=self.dbt_source_name,
            dbt_project_dir=self.dbt_project_dir,
            dbt_freshness=self.dbt_freshness,
            resample_only=bool(synthetic.get("resample_only")),
            staged_chunks=synthetic.get("staged_chunks") or None,
        )
        if done.report_uri:
            persist_report_url(context, store, done.report_uri)
        self._lineage = (done.lineage_inputs, done.lineage_outputs)
        m = done.manifest
        self._emit_asset_event(
            context,
            done.asset_uri,
            {"rows": m["rows"], "epsilon": m["epsilon"], "delta": m["delta"], "run_id": m["run_id"]},
        )
        self.log.info(
            "published %d synthetic rows of %s as %s (ε=%.4f, δ=%.3g); parquet %s; manifest %s; asset %s",
            m["rows"], m["source_table"], m["synthetic_table"], m["epsilon"], m["delta"], done.parquet_uri,
            done.manifest_uri, done.asset_uri,
        )  # fmt: skip
        return {**m, "manifest_uri": done.manifest_uri}

    def _emit_asset_event(self, context: Context, uri: str, extra: dict[str, Any]) -> None:
        from airflow.sdk import Asset, AssetAlias

        events = context.get("outlet_events")
        if events is None:
            return
        for outlet in self.outlets:
            if isinstance(outlet, AssetAlias):
                events[outlet].add(Asset(uri=uri), extra=extra)
            elif isinstance(outlet, Asset) and outlet.uri == uri:
                events[outlet].extra = extra
