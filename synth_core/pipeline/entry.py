"""The boundary checks, run once at the pipeline's entry — before any private row is read or any
budget is reserved — for every entry point (operators, pod operator, CLI).

The checks themselves live in :mod:`synth_core.boundary`; this module says which apply to a release.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from synth_core.pipeline.jobs import TrainParams
    from synth_core.spec import TableSpec


def check_release_inputs(
    spec: TableSpec | None = None,
    *,
    source_table: str | None = None,
    source_query: str | None = None,
    dialect: str | None = None,
    params: TrainParams | None = None,
    target_table: str | None = None,
    target_schema: str | None = None,
) -> None:
    """Refuse hostile or oversized input (non-retryable errors naming the parameter).

    * table, schema, column, target names: the identifier rule;
    * ``source_query``: exactly one read-only ``SELECT`` in the warehouse's ``dialect``;
    * the spec's sizes (columns, category domains, rules) and the training's (epochs, batch size);
    * the published target's table and schema names.
    """
    from synth_core import boundary

    if source_table is not None:
        boundary.check_table_name(source_table, "source_table")
    if spec is not None:
        boundary.check_spec_limits(spec)
    if source_query:
        boundary.check_source_query(source_query, dialect or "sqlite")
    if params is not None:
        check_train_params(params)
    if target_table is not None:
        boundary.check_identifier(target_table, "target_table")
    if target_schema:
        boundary.check_identifier(target_schema, "target_schema")


def check_train_params(params: TrainParams) -> None:
    """The generator parameters that size the work (epochs, batch size) within the limits."""
    from synth_core import boundary

    gp: dict[str, Any] = params.generator_params
    boundary.check_train_limits(epochs=gp.get("epochs"), batch_size=gp.get("batch_size"))
