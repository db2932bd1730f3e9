"""PrivacyLedger: lifetime budgets, reservations, refusals, and concurrent reservations."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import pytest

from synth_core.errors import BudgetExceededError, ParameterError
from synth_core.ledger import PrivacyLedger


def test_refuses_a_run_past_the_lifetime_budget_naming_table_remaining_and_requested(tmp_path: Path) -> None:
    ledger = PrivacyLedger(f"sqlite:///{tmp_path / 'ledger.db'}")
    ledger.grant("hr.salaries", 5.0, 1e-5)
    first = ledger.reserve("hr.salaries", 3.0, 1e-6, run_id="r1")
    ledger.settle(first, 2.5, 1e-6)
    with pytest.raises(BudgetExceededError) as err:
        ledger.reserve("hr.salaries", 3.0, 1e-6, run_id="r2")
    message = str(err.value)
    assert (
        "'hr.salaries'" in message and "remaining epsilon 2.5" in message and "requests epsilon 3" in message
    )
    # the refused run left no trace that counts
    assert ledger.status("hr.salaries").spent_epsilon == pytest.approx(2.5)


def test_open_reservations_count_as_spent_and_releases_give_back(tmp_path: Path) -> None:
    ledger = PrivacyLedger(f"sqlite:///{tmp_path / 'ledger.db'}")
    ledger.ensure_grant("t", 4.0, 1e-5)
    r1 = ledger.reserve("t", 3.0, 1e-6, run_id="a")
    with pytest.raises(BudgetExceededError):
        ledger.reserve("t", 3.0, 1e-6, run_id="b")
    ledger.release(r1, note="failed before reading data")
    r2 = ledger.reserve("t", 3.0, 1e-6, run_id="b")
    ledger.settle(r2, 3.0, 1e-6)
    with pytest.raises(ParameterError, match="already settled"):
        ledger.settle(r2, 3.0, 1e-6)
    kinds = [e["entry_type"] for e in ledger.entries("t")]
    assert kinds == ["grant", "reserve", "release", "reserve", "spend"]  # append-only history


def test_a_failed_run_is_charged_its_whole_reservation(tmp_path: Path) -> None:
    ledger = PrivacyLedger(f"sqlite:///{tmp_path / 'ledger.db'}")
    ledger.ensure_grant("t", 4.0, 1e-5)
    r = ledger.reserve("t", 1.5, 1e-6, run_id="a")
    ledger.settle_in_full(r, note="failed after reading rows")
    status = ledger.status("t")
    assert status.spent_epsilon == pytest.approx(1.5) and status.remaining_epsilon == pytest.approx(2.5)
    with pytest.raises(ParameterError, match="already settled"):
        ledger.settle_in_full(r)


def test_ensure_grant_never_changes_an_existing_budget(tmp_path: Path) -> None:
    ledger = PrivacyLedger(f"sqlite:///{tmp_path / 'ledger.db'}")
    ledger.ensure_grant("t", 10.0, 1e-5)
    status = ledger.ensure_grant("t", 1000.0, 1e-3)
    assert status.lifetime_epsilon == 10.0
    ledger.grant("t", 20.0, 1e-5)  # a deliberate grant does change it
    assert ledger.status("t").lifetime_epsilon == 20.0


def test_no_grant_means_no_spend(tmp_path: Path) -> None:
    ledger = PrivacyLedger(f"sqlite:///{tmp_path / 'ledger.db'}")
    with pytest.raises(BudgetExceededError, match="no lifetime privacy budget"):
        ledger.reserve("unknown", 1.0, 1e-6, run_id="x")


def test_settle_cannot_exceed_the_reservation(tmp_path: Path) -> None:
    ledger = PrivacyLedger(f"sqlite:///{tmp_path / 'ledger.db'}")
    ledger.grant("t", 10.0, 1e-5)
    r = ledger.reserve("t", 1.0, 1e-6, run_id="x")
    with pytest.raises(ParameterError, match="exceeds the reservation"):
        ledger.settle(r, 1.5, 1e-6)


def _reserve_in_process(url: str, barrier: mp.synchronize.Barrier, out: mp.Queue[str]) -> None:
    ledger = PrivacyLedger(url)
    barrier.wait()
    try:
        ledger.reserve("shared", 3.0, 1e-6, run_id=str(mp.current_process().pid))
        out.put("ok")
    except BudgetExceededError:
        out.put("refused")


def test_concurrent_reservations_cannot_both_pass(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    ledger = PrivacyLedger(url)
    ledger.grant("shared", 5.0, 1e-5)
    ctx = mp.get_context("spawn")
    for _ in range(3):  # four processes race for 3 of the 5 ε left, three times
        barrier = ctx.Barrier(4)
        out: mp.Queue[str] = ctx.Queue()
        procs = [ctx.Process(target=_reserve_in_process, args=(url, barrier, out)) for _ in range(4)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        results = sorted(out.get(timeout=5) for _ in procs)
        assert results == ["ok", "refused", "refused", "refused"]
        (winner,) = [e for e in ledger.entries("shared") if e["entry_type"] == "reserve"][-1:]
        ledger.release(winner["entry_id"])
    assert ledger.status("shared").spent_epsilon == 0.0


def test_eight_concurrent_reservations_on_postgres_only_three_fit() -> None:
    import threading
    import uuid

    import sqlalchemy as sa

    admin = sa.create_engine(
        "postgresql+psycopg://postgres@127.0.0.1:5432/postgres", isolation_level="AUTOCOMMIT"
    )
    name = f"dpsynth_ledger_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    try:
        PrivacyLedger(url).grant("hr.salaries", 3.5, 1e-5)  # fits three reservations of ε = 1
        barrier = threading.Barrier(8)
        results: list[str] = []
        lock = threading.Lock()

        def reserve() -> None:
            ledger = PrivacyLedger(url)
            barrier.wait()
            try:
                ledger.reserve("hr.salaries", 1.0, 1e-6, run_id=threading.current_thread().name)
                outcome = "ok"
            except BudgetExceededError:
                outcome = "refused"
            with lock:
                results.append(outcome)
            ledger.engine.dispose()

        threads = [threading.Thread(target=reserve, name=f"run-{i}") for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert sorted(results) == ["ok"] * 3 + ["refused"] * 5
        status = PrivacyLedger(url).status("hr.salaries")
        assert status.spent_epsilon == 3.0 and status.spent_epsilon <= status.lifetime_epsilon
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
        admin.dispose()
