"""Operators of one synthetic-table refresh: extract → train → sample → validate → publish.

Each operator is a thin adapter over one step of :mod:`synth_core.pipeline` (argument handling,
logging, error mapping). Tasks hand each other small manifests through XCom (URIs, DP counts, ε,
δ), never data. Where things live: :class:`synth_core.pipeline.layout.RunLayout`.

Errors retrying cannot fix (bad spec or parameter, missing/empty table, exhausted budget, failed
validation) raise ``AirflowFailException``; anything else (a warehouse or store outage) is raised
as is, so Airflow's retries apply. Messages name tables, columns and thresholds, never cell values.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from synth_core.pipeline.jobs import TrainParams
from synth_provider.hooks.dpsynth import DPSynthHook, dpsynth_home
from synth_provider.lineage import LineageDataset, operator_lineage
from synth_provider.links.report import SyntheticDataReportLink, persist_report_url

if TYPE_CHECKING:
    from airflow.sdk import Context

    from synth_core.spec import TableSpec

#: the train parameters every train operator takes (one field of TrainParams = one argument)
TRAIN_PARAMETERS = TrainParams.field_names()


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

    Before reading any row: the boundary checks (names, spec sizes, a single read-only
    ``source_query``), the spec against the warehouse catalog (missing table, missing/undeclared
    columns, SQL types the spec's kinds cannot hold), and — when ``epsilon`` is given — the privacy
    ledger, so a refused run never touches the data.

    Args:
        source_table: the table to synthesize (``schema.table`` allowed).
        spec: TableSpec as a YAML path, YAML string or mapping; its ``table`` must be ``source_table``.
        source_query: a SQL ``SELECT`` to read instead of the table (e.g. a join or a filter);
            ``source_table`` then names the dataset in the ledger, paths and the published table.
        holdout_fraction, chunk_rows: :class:`~synth_core.pipeline.jobs.StageJob`.
        epsilon, delta, lifetime_epsilon, lifetime_delta: the planned spend, checked against the
            ledger (optional here; the train task reserves it).
        privacy_scope: a name the ledger charges in addition to every table a ``source_query``
            reads (required when those tables cannot be determined).

    Returns (XCom): ``{"source_table", "spec_uri", "train_uri", "holdout_uri", "dtypes",
    "staging_uri", ...}`` -- no exact row count (the split's sizes stay in ``staging/``).
    """

    template_fields: Sequence[str] = (
        *DPSynthBaseOperator.template_fields, "source_table", "source_query", "spec", "epsilon", "delta",
    )  # fmt: skip
    template_ext: Sequence[str] = ()

    def __init__(
        self,
        *,
        source_table: str,
        spec: str | Mapping[str, Any],
        source_query: str | None = None,
        holdout_fraction: float | None = None,
        chunk_rows: int | None = None,
        epsilon: float | None = None,
        delta: float | None = None,
        lifetime_epsilon: float | None = None,
        lifetime_delta: float | None = None,
        privacy_scope: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.privacy_scope = privacy_scope
        self.source_table = source_table
        self.spec = spec
        self.source_query = source_query
        self.stage_job = {"holdout_fraction": holdout_fraction, "chunk_rows": chunk_rows}
        self.epsilon = epsilon
        self.delta = delta
        self.budget_params = {"lifetime_epsilon": lifetime_epsilon, "lifetime_delta": lifetime_delta}

    def _execute(self, context: Context) -> dict[str, Any]:
        from synth_core.ledger import budget_scope
        from synth_core.object_store import lineage_dataset_for_uri
        from synth_core.pipeline.budget import check_budget, scope_to_dict
        from synth_core.pipeline.entry import check_release_inputs
        from synth_core.pipeline.jobs import StageJob, TrainParams
        from synth_core.pipeline.layout import RunLayout
        from synth_core.release import stage_source
        from synth_core.warehouse import lineage_dataset

        job = StageJob.from_mapping(self.stage_job)
        params = None
        if self.epsilon not in (None, ""):
            params = TrainParams.from_mapping(
                {**self.budget_params, "epsilon": self.epsilon, "delta": self.delta}
            )
        spec = load_spec(self.spec, self.source_table)
        hook = self.get_hook()
        engine = hook.get_warehouse_engine()
        query = self.source_query or None
        check_release_inputs(spec, source_table=spec.name, source_query=query, dialect=engine.dialect.name,
                             params=params)  # fmt: skip
        scope = budget_scope(engine, table=spec.name, source_query=query, privacy_scope=self.privacy_scope)
        if params is not None:
            check_budget(hook.get_ledger(), params, scope)
        layout = RunLayout(hook.object_store_root(), spec.name, context["run_id"])
        staged = stage_source(engine, hook.get_object_store(), spec, staging_uri=layout.staging,
                              holdout_fraction=job.holdout_fraction, chunk_rows=job.chunk_rows, query=query)  # fmt: skip
        self._lineage = (
            [] if query else [lineage_dataset(engine, spec.name)],
            [lineage_dataset_for_uri(staged["train_uri"]), lineage_dataset_for_uri(staged["holdout_uri"])],
        )
        self.log.info("staged table %s under %s", spec.name, staged["staging_uri"])
        return {**staged, "budget_scope": scope_to_dict(scope)}


def resample_scope(hook: DPSynthHook, table: str) -> Any:
    """The ledger key a resample of ``table`` is recorded under: the table as the warehouse resolves
    it (the key its spends carry), or the plain name when the catalog cannot say (a resample reads
    no row and spends nothing, so the entry is informational and must not fail the task)."""
    from sqlalchemy.exc import SQLAlchemyError

    from synth_core.errors import DPSynthError
    from synth_core.ledger import budget_scope

    try:
        return budget_scope(hook.get_warehouse_engine(), table=table)
    except (DPSynthError, SQLAlchemyError, OSError, ValueError) as why:
        hook.log.warning("resample of %s recorded under its plain name: %s", table, type(why).__name__)
        return table


def pop_train_params(operator: Any, kwargs: dict[str, Any]) -> None:
    """Move the :class:`~synth_core.pipeline.jobs.TrainParams` fields out of ``kwargs`` onto the
    operator (attributes of the same names, so Airflow templates them)."""
    for name in TRAIN_PARAMETERS:
        setattr(operator, name, kwargs.pop(name, None))


def train_params_of(operator: Any) -> Any:
    """The operator's :class:`~synth_core.pipeline.jobs.TrainParams`, checked."""
    from synth_core.pipeline.jobs import TrainParams

    return TrainParams.from_mapping({name: getattr(operator, name) for name in TRAIN_PARAMETERS})


class TrainSynthesizerOperator(DPSynthBaseOperator):
    """Train a DP generator on the staged rows, within a reserved share of the table's budget.

    Every :class:`~synth_core.pipeline.jobs.TrainParams` field is an argument: ``epsilon``
    (required), ``delta``, ``generator`` (a registered name, or ``auto``), ``generator_params``,
    ``preprocessing_fraction``, ``lifetime_epsilon``, ``lifetime_delta``, ``seed`` (model
    initialisation only; DP noise always uses OS entropy). ``staged``: the extract task's XCom.

    The checks run before the ledger is asked; the reservation is released if the task fails
    before reading the staged rows and charged in full after (:mod:`synth_core.pipeline.budget`).

    Returns (XCom): :class:`~synth_core.pipeline.records.TrainedModel` as a dict.
    """

    template_fields: Sequence[str] = (*DPSynthBaseOperator.template_fields, "staged", *TRAIN_PARAMETERS)

    def __init__(self, *, staged: Any, **kwargs: Any) -> None:
        pop_train_params(self, kwargs)
        super().__init__(**kwargs)
        self.staged = staged

    def _execute(self, context: Context) -> dict[str, Any]:
        from synth_core.pipeline.budget import scope_from
        from synth_core.pipeline.entry import check_release_inputs
        from synth_core.pipeline.jobs import TrainJob
        from synth_core.pipeline.layout import RunLayout
        from synth_core.pipeline.train import plan_train, train

        staged = self._manifest(self.staged, "staged")
        hook = self.get_hook()
        store = hook.get_object_store()
        layout = RunLayout(hook.object_store_root(), str(staged.get("source_table")), context["run_id"])
        job = TrainJob.for_staged(train_params_of(self), staged, layout.model)
        plan = plan_train(job, store)
        check_release_inputs(plan.spec, source_table=job.source_table, params=job)
        ledger, scope = hook.get_ledger(), scope_from(staged)
        return train(plan, store, ledger, run_id=context["run_id"], scope=scope).to_dict()


class SampleSynthesizerOperator(DPSynthBaseOperator):
    """Sample a synthetic table from a saved DP model (post-processing: spends no budget).

    Args:
        model: the train task's manifest, or a model bundle URI.
        resample_of: instead of ``model``, a source table: the live release of its published target
            (``target_table``/``target_schema``, defaults as for publish) is re-sampled from its
            model. This is the **resample-only refresh**: no data access, recorded in the ledger with
            ε = 0 — the way to refresh often.
        num_rows: rows to sample; ``None``: the source table's DP row count.
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
        target_table: str | None = None,
        target_schema: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.model = model
        self.resample_of = resample_of
        self.num_rows = num_rows
        self.seed = seed
        self.target_table = target_table
        self.target_schema = target_schema

    def _execute(self, context: Context) -> dict[str, Any]:
        from synth_core.errors import ParameterError
        from synth_core.pipeline.layout import RunLayout, latest_uri
        from synth_core.pipeline.records import ModelBundle
        from synth_core.pipeline.sample import live_model_uri, model_uri_of, sample, sample_rows
        from synth_core.release import resolve_target

        hook = self.get_hook()
        store, root = hook.get_object_store(), hook.object_store_root()
        if (self.model is None) == (not self.resample_of):
            raise ParameterError(
                "give exactly one of model (a manifest or bundle URI) and resample_of (a table)"
            )
        if self.resample_of:
            target, schema = resolve_target(str(self.resample_of), self.target_table, self.target_schema)
            model_uri = live_model_uri(store, latest_uri(root, target, schema), f"table {self.resample_of!r}")
        else:
            model_uri = model_uri_of(self.model)
        bundle = ModelBundle.read(store, model_uri)
        rows = sample_rows(self.num_rows, self.model, bundle)
        seed = None if self.seed in (None, "", "None") else _as_int(self.seed, "seed")
        layout = RunLayout(root, bundle.table, context["run_id"])
        out = sample(store, model_uri=model_uri, rows=rows, output_uri=layout.synthetic, seed=seed)
        if self.resample_of:
            hook.get_ledger().record_resample(
                resample_scope(hook, bundle.table), run_id=context["run_id"], model_uri=model_uri
            )
            out.update(resample_only=True, **bundle.release_facts())
        self.log.info("sampled %d synthetic rows of %s from %s into %s (post-processing: no privacy budget spent)",
                      rows, bundle.table, model_uri, out["synthetic_uri"])  # fmt: skip
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
    not DP, and gating on them is a data-dependent decision (see the README). The signed
    ``validation.json`` and the shareable ``report.html`` go to ``reports/{table}/{run}/``; the
    real-data evaluation, the internal report and the Data Docs HTML (it shows the observed
    metrics) stay beside the staged rows in ``staging/{table}/{run}/``.

    Returns (XCom): ``{"success", "validation_uri", "report_uri", "internal_report_uri",
    "evaluation_uri", "data_docs_uri", "warnings"}`` -- URIs and pass/fail, no real-data figure.
    """

    template_fields: Sequence[str] = (*DPSynthBaseOperator.template_fields, "staged", "model", "synthetic")
    operator_extra_links = (SyntheticDataReportLink(),)

    def __init__(
        self, *, staged: Any, model: Any, synthetic: Any, extra_expectations: Any = None, **kwargs: Any
    ) -> None:
        from synth_core.pipeline.jobs import GateJob

        self.gate = {name: kwargs.pop(name) for name in GateJob.field_names() if name in kwargs}
        super().__init__(**kwargs)
        self.staged = staged
        self.model = model
        self.synthetic = synthetic
        self.extra_expectations = extra_expectations

    def _execute(self, context: Context) -> dict[str, Any]:
        from synth_core.errors import ValidationFailedError
        from synth_core.pipeline.jobs import GateJob
        from synth_core.pipeline.layout import RunLayout
        from synth_core.pipeline.records import ModelBundle
        from synth_core.pipeline.sample import model_uri_of
        from synth_core.pipeline.validate import run_gate, write_gate_outputs

        gate = GateJob.from_mapping(self.gate)
        synthetic = self._manifest(self.synthetic, "synthetic")
        # a resample-only refresh has no staged rows: no real data is read, the evaluation of the
        # model's own release stands, and the schema/rule/domain checks still run
        staged = self._manifest(self.staged, "staged") if self.staged is not None else None
        hook = self.get_hook()
        store = hook.get_object_store()
        bundle = ModelBundle.read(store, model_uri_of(self._manifest(self.model, "model")))
        layout = RunLayout(hook.object_store_root(), bundle.table, context["run_id"])
        frame = store.read_parquet(synthetic["synthetic_uri"])
        with tempfile.TemporaryDirectory() as docs_dir:
            result = run_gate(
                store, bundle, frame,
                synthetic_uri=synthetic["synthetic_uri"], gate=gate,
                dtypes=staged["dtypes"] if staged else None,
                split=(staged["train_uri"], staged["holdout_uri"]) if staged else None,
                extra_expectations=self.extra_expectations, data_docs_dir=docs_dir,
            )  # fmt: skip
            out = write_gate_outputs(store, layout, bundle, result, frame, signing_home=dpsynth_home(),
                                     run_id=context["run_id"], staging_uri=staged["staging_uri"] if staged else None,
                                     budget=hook.get_ledger().status(bundle.table).to_dict(), data_docs_dir=docs_dir)  # fmt: skip
        persist_report_url(context, store, out["report_uri"])
        self.log.info("validation of %s: %d/%d expectations passed; report %s", bundle.table,
                      result.record["expectations_passed"], result.record["expectations_total"], out["report_uri"])  # fmt: skip
        for line in out["warnings"]:
            self.log.warning("validation warning (does not block): %s", line)
        if not result.success:
            raise ValidationFailedError(result.outcome.failure_message(bundle.table))
        return out


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
        from synth_core.pipeline.records import ModelBundle
        from synth_core.pipeline.sample import model_uri_of
        from synth_core.pipeline.validate import trusted_record
        from synth_core.release import publish_release

        model = self._manifest(self.model, "model")
        synthetic = self._manifest(self.synthetic, "synthetic")
        validation = self._manifest(self.validation, "validation")
        hook = self.get_hook()
        store = hook.get_object_store()
        bundle = ModelBundle.read(store, model_uri_of(model))
        record = trusted_record(store, bundle, synthetic["synthetic_uri"], validation.get("validation_uri"),
                                signing_home=dpsynth_home())  # fmt: skip
        done = publish_release(
            hook.get_warehouse_engine(), store, root_uri=hook.object_store_root(),
            transformer=bundle.transformer, model=bundle.release_facts(),
            synthetic_uri=synthetic["synthetic_uri"], rows=int(record["rows"]), run_id=context["run_id"],
            staged=self._manifest(self.staged, "staged") if self.staged is not None else None,
            target_table=self.target_table, target_schema=self.target_schema or None,
            report_uri=validation.get("report_uri"), validation_uri=validation.get("validation_uri"),
            dbt_source_name=self.dbt_source_name, dbt_project_dir=self.dbt_project_dir,
            dbt_freshness=self.dbt_freshness, resample_only=bool(synthetic.get("resample_only")),
            staged_chunks=synthetic.get("staged_chunks") or None,
        )  # fmt: skip
        if done.report_uri:
            persist_report_url(context, store, done.report_uri)
        self._lineage = (done.lineage_inputs, done.lineage_outputs)
        m = done.manifest
        self._emit_asset_event(context, done.asset_uri,
                               {"rows": m["rows"], "epsilon": m["epsilon"], "delta": m["delta"], "run_id": m["run_id"]})  # fmt: skip
        self.log.info("published %d synthetic rows of %s as %s (ε=%.4f, δ=%.3g); manifest %s; asset %s",
                      m["rows"], m["source_table"], m["synthetic_table"], m["epsilon"], m["delta"],
                      done.manifest_uri, done.asset_uri)  # fmt: skip
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
