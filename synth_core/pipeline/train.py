"""The train step: plan (before any budget or row), fit on staged rows, save the bundle.

* :func:`plan_train` — everything that can fail without private data: the job's ranges, the
  generator and its parameters, the spec, the staged rows being there. Runs before the ledger is
  asked, on every entry point (the pod operator runs it in the Airflow task, before the pod).
* :func:`fit_and_save` — the private computation on the staged rows (also the pod's work).
* :func:`train` — both, inside one ledger reservation with the one failure policy.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from synth_core.pipeline.records import TrainedModel, dp_source_rows

if TYPE_CHECKING:
    import pandas as pd

    from synth_core.budget_scope import BudgetScope
    from synth_core.generators import Synthesizer
    from synth_core.ledger import PrivacyLedger, Reservation
    from synth_core.object_store import ObjectStore
    from synth_core.pipeline.jobs import TrainJob
    from synth_core.spec import TableSpec

log = logging.getLogger("synth_core.pipeline.train")


@dataclass
class TrainPlan:
    """A checked train job: the generator built, the spec read (both public configuration)."""

    job: TrainJob
    synth: Synthesizer
    spec: TableSpec


def plan_train(
    job: TrainJob, store: ObjectStore, *, spec: TableSpec | None = None, staged: bool = True
) -> TrainPlan:
    """Check the job before the ledger is asked or a row is read.

    ``staged=False``: the rows are staged later, inside the reservation (the CLI's extract+train).

    Raises:
        ParameterError, SpecError, MissingExtraError: naming the parameter, column or extra.
        SourceTableError: the staged train rows are not where the job says.
    """
    from synth_core.errors import SourceTableError
    from synth_core.spec import TableSpec

    synth = build_generator(job)
    if spec is None:
        spec = TableSpec.from_yaml(store.get_bytes(job.spec_uri).decode("utf-8"))
    if spec.name != job.source_table:
        from synth_core.errors import SpecError

        raise SpecError(f"the spec describes table {spec.name!r}, but the job trains {job.source_table!r}")
    if staged and not store.exists(job.train_uri):
        raise SourceTableError(f"table {job.source_table!r}: no staged train rows at {job.train_uri}")
    return TrainPlan(job, synth, spec)


def check_delta_below_one_over_n(delta: float, dp_rows: float, table: str) -> None:
    """Refuse a release whose δ is not below 1/n, n the table's DP row count: with δ ≥ 1/n a
    mechanism may publish one whole row and still meet (ε, δ). Runs right after the fit, before the
    bundle is saved (the spend stands: the rows were read; nothing is released).

    Raises:
        ParameterError: naming the table, δ and 1/n (n is a DP output: it may be shown).
    """
    from synth_core.errors import ParameterError

    n = max(float(dp_rows), 1.0)
    if delta >= 1.0 / n:
        raise ParameterError(
            f"table {table!r}: delta={delta:.3g} is not below 1/n = {1.0 / n:.3g} (n = {n:.0f}, the DP row "
            "count): choose a smaller delta; nothing is released"
        )


def build_generator(job: TrainJob) -> Synthesizer:
    """The job's generator, built from its parameters after the boundary's size limits (no store,
    no row: the pod operator runs this in the Airflow task before it reserves)."""
    from synth_core.generators import create_synthesizer
    from synth_core.pipeline.entry import check_train_params

    check_train_params(job)
    return create_synthesizer(job.generator, **job.generator_params)


def fit_and_save(
    plan: TrainPlan,
    store: ObjectStore,
    train: pd.DataFrame,
    *,
    progress: Callable[[dict[str, Any]], None] | None = None,
    save: bool = True,
) -> TrainedModel:
    """Fit the planned generator on ``train`` under the job's budget and save the bundle."""
    job, synth = plan.job, plan.synth
    started = time.monotonic()
    kwargs: dict[str, Any] = {"seed": job.seed}
    if progress is not None:
        kwargs["progress"] = progress
    synth.fit(train, plan.spec, job.budget(), **kwargs)
    seconds = time.monotonic() - started
    assert synth.privacy_ is not None and synth.transformer_ is not None
    check_delta_below_one_over_n(job.delta, synth.transformer_.dp_row_count, job.source_table)
    model_uri = synth.save(job.model_uri, store=store) if save else job.model_uri
    # generator="auto" picks one at fit time: report the one trained, and why
    choice = (synth.training_ or {}).get("auto")
    training = {k: v for k, v in (synth.training_ or {}).items() if isinstance(v, str | int | float | bool)}
    return TrainedModel(
        source_table=job.source_table,
        model_uri=model_uri,
        generator=str(choice["generator"]) if choice else job.generator,
        generator_choice=str(choice["reason"]) if choice else None,
        generator_params=dict(synth.params),
        epsilon=float(synth.privacy_["epsilon"]),
        delta=float(synth.privacy_["delta"]),
        target_epsilon=job.epsilon,
        target_delta=job.delta,
        dp_source_rows=dp_source_rows(synth.transformer_.dp_row_count, job.holdout_fraction),
        training={**training, "seconds_total": round(seconds, 2)},
    )


def train(
    plan: TrainPlan,
    store: ObjectStore,
    ledger: PrivacyLedger,
    *,
    run_id: str,
    scope: BudgetScope | str | None = None,
    stage: Callable[[Reservation], None] | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> TrainedModel:
    """Reserve the job's budget on ``scope`` (default: the table's name), (``stage`` the rows,)
    read and fit them, settle the spend.

    ``stage`` runs inside the reservation and calls ``run.mark_private_read()`` before its first
    row. The ledger's failure policy applies: released if nothing private was read, charged in
    full otherwise."""
    from synth_core.errors import MissingExtraError
    from synth_core.pipeline.budget import reserved_run

    job = plan.job
    charged = scope if scope is not None else job.source_table
    with reserved_run(ledger, job, charged, run_id=run_id, mechanism=job.generator) as run:
        if stage is not None:
            stage(run)
        run.mark_private_read()
        rows = store.read_parquet(job.train_uri)
        try:
            trained = fit_and_save(plan, store, rows, progress=progress)
        except MissingExtraError:
            run.private_read = False  # raised before any private computation: nothing was learnt
            raise
        run.settle(trained.epsilon, trained.delta, note=f"model {trained.model_uri}")
    status = ledger.status(charged)
    log.info(
        "trained %s: ε=%.4f (target %.4g), δ=%.3g; %s has ε %.4g of %.4g left; model %s",
        trained.generator, trained.epsilon, job.epsilon, trained.delta, status.source_table,
        status.remaining_epsilon, status.lifetime_epsilon, trained.model_uri,
    )  # fmt: skip
    return trained
