"""The privacy budget of a run: grant on first sight, check, reserve — with the ledger's one
failure policy (:meth:`synth_core.ledger.PrivacyLedger.reservation`: released when nothing private
was read, charged in full otherwise).

Every entry point (in-process operator, pod operator, CLI) goes through these functions. The
deferrable pod path, which cannot hold a ``with`` block across the trigger, uses
:func:`reserve_run` and :func:`close_failed_run` — the same policy, spelt out in two calls.

A run's scope is what it reads (:func:`synth_core.ledger.budget_scope`): resolved where the warehouse
is at hand (the extract step), carried to the train step in the staged manifest
(:func:`scope_to_dict` / :func:`scope_from`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from synth_core.budget_scope import BudgetScope
    from synth_core.ledger import BudgetStatus, PrivacyLedger, Reservation
    from synth_core.pipeline.jobs import TrainParams

log = logging.getLogger("synth_core.pipeline.budget")


def scope_to_dict(scope: BudgetScope) -> dict[str, Any]:
    """A scope as JSON (for the staged manifest / XCom)."""
    return {
        "keys": list(scope.keys),
        "privacy_scope": scope.privacy_scope,
        "legacy_keys": list(scope.legacy_keys),
    }


def scope_from(staged: Mapping[str, Any]) -> BudgetScope:
    """The scope a staged manifest carries; a manifest without one is charged under its table name."""
    from synth_core.budget_scope import BudgetScope

    raw = staged.get("budget_scope")
    if isinstance(raw, Mapping) and raw.get("keys"):
        return BudgetScope(
            tuple(str(k) for k in raw["keys"]),
            privacy_scope=raw.get("privacy_scope"),
            legacy_keys=tuple(str(k) for k in raw.get("legacy_keys") or ()),
        )
    return BudgetScope.of(str(staged["source_table"]))


def _grant_if_new(ledger: PrivacyLedger, params: TrainParams, scope: BudgetScope | str) -> None:
    grant = params.lifetime_grant()
    if grant is not None:
        ledger.ensure_grant(scope, *grant)


def check_budget(ledger: PrivacyLedger, params: TrainParams, scope: BudgetScope | str) -> BudgetStatus:
    """Grant the lifetime budget if asked and there is none, then refuse early (before any row is
    read) when the ledger cannot cover the run's (ε, δ)."""
    _grant_if_new(ledger, params, scope)
    status = ledger.check(scope, params.epsilon, params.delta)
    log.info("privacy ledger: %s has ε %.4g of lifetime %.4g left; this run plans ε=%.4g",
             status.source_table, status.remaining_epsilon, status.lifetime_epsilon, params.epsilon)  # fmt: skip
    return status


@contextlib.contextmanager
def reserved_run(
    ledger: PrivacyLedger, params: TrainParams, scope: BudgetScope | str, *, run_id: str, mechanism: str
) -> Iterator[Reservation]:
    """Grant if asked, then hold a reservation of the run's (ε, δ) for the block."""
    _grant_if_new(ledger, params, scope)
    with ledger.reservation(scope, params.epsilon, params.delta, run_id=run_id, mechanism=mechanism) as run:
        log.info(
            "privacy ledger: reserved ε=%.4g, δ=%.3g (reservation %d)", params.epsilon, params.delta, run.id
        )
        yield run


def reserve_run(
    ledger: PrivacyLedger, params: TrainParams, scope: BudgetScope | str, *, run_id: str, mechanism: str
) -> int:
    """Grant if asked, then reserve (a reservation closed later by :func:`close_failed_run` or
    ``ledger.settle``: the deferrable pod path)."""
    _grant_if_new(ledger, params, scope)
    reservation = ledger.reserve(scope, params.epsilon, params.delta, run_id=run_id, mechanism=mechanism)
    log.info(
        "privacy ledger: reserved ε=%.4g, δ=%.3g (reservation %d)", params.epsilon, params.delta, reservation
    )
    return reservation


def close_failed_run(ledger: PrivacyLedger, reservation_id: int, *, private_read: bool, why: str) -> None:
    """The failure policy for a reservation held outside a ``with`` block (the notes are the
    ledger's own). A ledger that fails too leaves the reservation open: it still counts as spent."""
    try:
        if private_read:
            ledger.settle_in_full(
                reservation_id, note=f"run failed after reading private rows ({why}): charged in full"
            )
        else:
            ledger.release(reservation_id, note=f"run failed before reading private rows ({why})")
    except Exception as exc:
        log.warning("privacy ledger: could not close reservation %d (%s); it stays open and counts as spent",
                    reservation_id, type(exc).__name__)  # fmt: skip
