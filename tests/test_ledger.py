"""PrivacyLedger: lifetime budgets, reservations, refusals, and concurrent reservations."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

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
    ledger.grant("t", 20.0, 1e-5, allow_raise=True)  # a deliberate, flagged grant does change it
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


# -- arithmetic (issue 15): finite amounts, 0 <= spend <= reservation, explicit raises ------------
def test_settle_refuses_negative_nan_infinite_and_boolean_spends(tmp_path: Path) -> None:
    ledger = PrivacyLedger(f"sqlite:///{tmp_path / 'ledger.db'}")
    ledger.grant("t", 3.0, 1e-5)
    r = ledger.reserve("t", 1.0, 1e-6, run_id="x")
    for eps, delta in ((-1.0, 1e-6), (float("nan"), 1e-6), (float("inf"), 1e-6), (0.5, -1e-9), (0.5, float("nan")), (True, 1e-6)):  # fmt: skip
        with pytest.raises(ParameterError):
            ledger.settle(r, eps, delta)
    status = ledger.status("t")
    assert status.spent_epsilon == 1.0 and status.remaining_epsilon == 2.0  # the open reservation counts
    ledger.settle(r, 0.0, 0.0)  # spending nothing is a valid spend
    assert ledger.status("t").remaining_epsilon == 3.0


def test_raising_a_grant_needs_the_flag_and_is_recorded_lowering_below_spent_is_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ledger = PrivacyLedger(f"sqlite:///{tmp_path / 'ledger.db'}")
    ledger.grant("t", 3.0, 1e-5)
    with pytest.raises(ParameterError, match="allow_raise"):
        ledger.grant("t", 1000.0, 1e-5)
    with pytest.raises(ParameterError, match="allow_raise"):
        ledger.grant("t", 3.0, 1e-4)  # δ counts too
    assert ledger.status("t").lifetime_epsilon == 3.0
    with caplog.at_level("WARNING", logger="synth_core.ledger"):
        ledger.grant("t", 1000.0, 1e-5, allow_raise=True, note="approved by the DPO")
    grant = ledger.entries("t")[-1]
    assert grant["entry_type"] == "grant" and "raised from ε=3, δ=1e-05 to ε=1000, δ=1e-05" in grant["note"]
    assert "approved by the DPO" in grant["note"] and "raised" in caplog.text
    ledger.settle_in_full(ledger.reserve("t", 5.0, 1e-6, run_id="x"))
    with pytest.raises(ParameterError, match="already spent"):
        ledger.grant("t", 4.0, 1e-5)
    ledger.grant("t", 6.0, 1e-5)  # lowering to above what is spent needs no flag
    assert ledger.status("t").remaining_epsilon == pytest.approx(1.0)
    for eps, delta in ((float("nan"), 1e-5), (float("inf"), 1e-5), (-1.0, 1e-5), (1.0, 1.0), (1.0, 0.0), (1.0, float("nan"))):  # fmt: skip
        with pytest.raises(ParameterError):
            ledger.grant("t", eps, delta, allow_raise=True)


def test_entries_written_by_older_versions_with_bad_amounts_count_conservatively(tmp_path: Path) -> None:
    import sqlalchemy as sa

    from synth_core.ledger import ledger_table

    ledger = PrivacyLedger(f"sqlite:///{tmp_path / 'ledger.db'}")
    ledger.grant("t", 10.0, 1e-5)
    rows = [ledger.reserve("t", 2.0, 1e-6, run_id=str(i)) for i in range(3)]
    with ledger.engine.begin() as conn:  # what the old settle accepted: negative, infinite, too large
        for res_id, eps in zip(rows, (-50.0, float("inf"), 7.0), strict=True):
            conn.execute(
                ledger_table.insert().values(
                    source_table="t", entry_type="spend", epsilon=eps, delta=1e-6, reservation_id=res_id,
                    recorded_at=sa.func.current_timestamp(),
                )
            )  # fmt: skip
    status = ledger.status("t")
    assert status.spent_epsilon == 6.0 and status.remaining_epsilon == 4.0  # each counted in full


# -- the single failure policy -------------------------------------------------------------------
def test_reservation_releases_before_a_private_read_and_charges_in_full_after(tmp_path: Path) -> None:
    ledger = PrivacyLedger(f"sqlite:///{tmp_path / 'ledger.db'}")
    ledger.grant("t", 10.0, 1e-5)
    with pytest.raises(RuntimeError), ledger.reservation("t", 2.0, 1e-6, run_id="a"):
        raise RuntimeError("catalog check failed")
    assert ledger.status("t").spent_epsilon == 0.0
    with pytest.raises(RuntimeError), ledger.reservation("t", 2.0, 1e-6, run_id="b") as res:
        res.mark_private_read()
        raise RuntimeError("training failed")
    assert ledger.status("t").spent_epsilon == 2.0
    with ledger.reservation("t", 2.0, 1e-6, run_id="c"):
        pass  # ended without settling: what it spent is unknown
    assert ledger.status("t").spent_epsilon == 4.0
    with ledger.reservation("t", 2.0, 1e-6, run_id="d") as res:
        res.mark_private_read()
        res.settle(1.25, 5e-7)
    assert ledger.status("t").spent_epsilon == pytest.approx(5.25)
    with ledger.reservation("t", 2.0, 1e-6, run_id="e") as res:
        res.mark_private_read()
        with pytest.raises(ParameterError, match="charged, not released"):
            res.release()
        kept = res.detach()  # a deferred task closes it later by id
    assert ledger.status("t").spent_epsilon == pytest.approx(7.25)
    ledger.settle(kept, 1.0, 1e-6)
    assert ledger.status("t").spent_epsilon == pytest.approx(6.25)
    kinds = [(e["run_id"], e["entry_type"]) for e in ledger.entries("t") if e["entry_type"] != "grant"]
    assert kinds == [
        ("a", "reserve"), ("a", "release"), ("b", "reserve"), ("b", "spend"), ("c", "reserve"), ("c", "spend"),
        ("d", "reserve"), ("d", "spend"), ("e", "reserve"), ("e", "spend"),
    ]  # fmt: skip


def _reserve_and_die(url: str, ready: str) -> None:
    ledger = PrivacyLedger(url)
    with ledger.reservation("t", 2.0, 1e-6, run_id="killed") as res:
        res.mark_private_read()
        Path(ready).write_text("reading")
        import time

        time.sleep(60)


def test_a_reservation_of_a_killed_process_stays_counted(tmp_path: Path) -> None:
    import os
    import signal
    import time

    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    ledger = PrivacyLedger(url)
    ledger.grant("t", 3.0, 1e-5)
    ready = tmp_path / "ready"
    proc = mp.get_context("spawn").Process(target=_reserve_and_die, args=(url, str(ready)))
    proc.start()
    while not ready.exists() and proc.is_alive():
        time.sleep(0.05)
    assert proc.pid is not None
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(10)
    assert ledger.status("t").spent_epsilon == 2.0
    with pytest.raises(BudgetExceededError):
        ledger.reserve("t", 2.0, 1e-6, run_id="next")


# -- several keys: all or none -------------------------------------------------------------------
def test_a_reservation_over_several_keys_is_all_or_none(tmp_path: Path) -> None:
    from synth_core.budget_scope import BudgetScope

    ledger = PrivacyLedger(f"sqlite:///{tmp_path / 'ledger.db'}")
    both = BudgetScope(("people", "visits"))
    ledger.grant("people", 5.0, 1e-5)
    with pytest.raises(BudgetExceededError, match="'visits' has no lifetime"):
        ledger.reserve(both, 1.0, 1e-6, run_id="x")
    assert ledger.entries("people")[-1]["entry_type"] == "grant"  # nothing reserved on people either
    ledger.grant("visits", 2.0, 1e-5)
    r = ledger.reserve(both, 1.5, 1e-6, run_id="y")
    assert [s.spent_epsilon for s in ledger.statuses(both)] == [1.5, 1.5]
    with pytest.raises(BudgetExceededError, match="'visits'"):
        ledger.reserve(both, 1.0, 1e-6, run_id="z")  # visits has 0.5 left, people 3.5
    assert ledger.status(both).source_table == "visits"  # the binding key
    ledger.settle(r, 0.5, 1e-7)
    assert [s.spent_epsilon for s in ledger.statuses(both)] == [0.5, 0.5]
    with pytest.raises(ParameterError, match="already settled"):
        ledger.release(r)


@pytest.mark.parametrize("n_keys", [1, 2])
@pytest.mark.parametrize("server", ["postgresql", "mariadb"])
def test_eight_concurrent_reservations_on_a_server_only_three_fit(server: str, n_keys: int) -> None:
    import threading
    import uuid

    import sqlalchemy as sa

    from synth_core.budget_scope import BudgetScope

    admin_url = {
        "postgresql": "postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
        "mariadb": "mysql+pymysql://root@127.0.0.1:3306/",
    }[server]
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"dpsynth_ledger_{uuid.uuid4().hex[:8]}"
    quote = '"' if server == "postgresql" else "`"
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {quote}{name}{quote}")
    url = admin_url.rstrip("/").rsplit("/", 1)[0] + f"/{name}" if server == "postgresql" else admin_url + name
    both = BudgetScope(("db/public.people", "db/public.visits")[:n_keys])
    try:
        PrivacyLedger(url).grant("db/public.people", 3.5, 1e-5)  # fits three reservations of ε = 1
        PrivacyLedger(url).grant("db/public.visits", 10.0, 1e-5)
        barrier = threading.Barrier(8)
        results: list[str] = []
        lock = threading.Lock()

        def reserve(i: int) -> None:
            ledger = PrivacyLedger(url)
            barrier.wait()
            try:  # half the runs name the keys in the other order: locks are taken sorted
                scope = both if i % 2 else BudgetScope(tuple(reversed(both.keys)))
                ledger.reserve(scope, 1.0, 1e-6, run_id=f"run-{i}")
                outcome = "ok"
            except BudgetExceededError:
                outcome = "refused"
            with lock:
                results.append(outcome)
            ledger.engine.dispose()

        threads = [threading.Thread(target=reserve, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert sorted(results) == ["ok"] * 3 + ["refused"] * 5
        statuses = PrivacyLedger(url).statuses(both)
        assert [s.spent_epsilon for s in statuses] == [3.0] * n_keys
    finally:
        with admin.connect() as conn:
            if server == "postgresql":
                conn.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
            else:
                conn.exec_driver_sql(f"DROP DATABASE `{name}`")
        admin.dispose()


# -- generated amounts (hypothesis): the remaining budget never grows and never becomes NaN -------
_HOSTILE = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1e-300, 1e300, -1e-12, -1.0, float("nan"), float("inf"), float("-inf")]),
    st.integers(min_value=-(10**30), max_value=10**30),
)
_EPSILON = st.one_of(_HOSTILE, st.floats(min_value=0.0, max_value=5.0))
_DELTA = st.one_of(_HOSTILE, st.sampled_from([1e-7, 1e-6, 2e-6, 1e-5, 0.5]))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    ops=st.lists(
        st.one_of(
            st.tuples(st.sampled_from(["reserve", "settle", "grant", "check"]), _EPSILON, _DELTA),
            st.tuples(st.just("reserve"), st.floats(0.01, 2.0), st.sampled_from([1e-7, 1e-6])),  # fits
            st.tuples(st.just("settle"), _HOSTILE, _DELTA),
        ),
        max_size=10,
    )
)
@example(ops=[("reserve", 1.0, 1e-6), ("settle", -1.0, 1e-6)])  # what the old settle accepted
@example(ops=[("reserve", 1.0, 1e-6), ("settle", float("nan"), 1e-6), ("reserve", 4.5, 1e-6)])
def test_generated_amounts_never_grow_the_budget_or_make_it_nan(
    shared_ledger: PrivacyLedger, ops: list[tuple[str, float, float]]
) -> None:
    """Against a model of the ledger: only valid amounts are accepted, spent is what the model
    says (open reservations in full, settled ones at their spend), the remaining budget is finite
    and shrinks except by the unspent part of a settled reservation."""
    import math
    import uuid

    key = uuid.uuid4().hex
    shared_ledger.grant(key, 5.0, 1e-5)
    grant = (5.0, 1e-5)
    open_: dict[int, tuple[float, float]] = {}
    settled: list[tuple[float, float]] = []

    def spent() -> tuple[float, float]:
        amounts = list(open_.values()) + settled
        return sum(a[0] for a in amounts), sum(a[1] for a in amounts)

    for op, eps, delta in ops:
        before = spent()
        try:
            if op == "reserve":
                res_id = shared_ledger.reserve(key, eps, delta, run_id="h")
                assert math.isfinite(eps) and 0 < eps <= grant[0] - before[0] + 1e-9 and 0 < delta < 1
                open_[res_id] = (float(eps), float(delta))
            elif op == "settle" and open_:
                res_id = next(iter(open_))
                shared_ledger.settle(res_id, eps, delta)
                reserved = open_.pop(res_id)
                assert math.isfinite(eps) and math.isfinite(delta) and eps >= 0 and delta >= 0
                assert eps <= reserved[0] * (1 + 1e-9) + 1e-9 and delta <= reserved[1] * (1 + 1e-9)
                settled.append((min(eps, reserved[0]), min(delta, reserved[1])))
            elif op == "grant":
                shared_ledger.grant(key, eps, delta)  # without allow_raise: may only lower
                assert math.isfinite(eps) and 0 < eps <= grant[0] and 0 < delta <= grant[1]
                assert eps >= before[0] - 1e-9
                grant = (float(eps), float(delta))
            else:
                shared_ledger.check(key, eps, delta)
                assert eps <= grant[0] - before[0] + 1e-9
        except (ParameterError, BudgetExceededError):
            pass
        status = shared_ledger.status(key)
        assert (status.lifetime_epsilon, status.lifetime_delta) == grant
        assert status.spent_epsilon == pytest.approx(spent()[0]) and status.spent_delta == pytest.approx(
            spent()[1]
        )
        assert math.isfinite(status.remaining_epsilon) and math.isfinite(status.remaining_delta)
        assert status.spent_epsilon <= grant[0] + 1e-9 and status.spent_delta <= grant[1] * (1 + 1e-9)


@pytest.fixture(scope="module")
def shared_ledger(tmp_path_factory: pytest.TempPathFactory) -> PrivacyLedger:
    return PrivacyLedger(f"sqlite:///{tmp_path_factory.mktemp('ledger') / 'ledger.db'}")


def test_a_declared_privacy_scope_is_a_key_the_ledger_records(tmp_path: Path) -> None:
    from synth_core.budget_scope import BudgetScope

    ledger = PrivacyLedger(f"sqlite:///{tmp_path / 'ledger.db'}")
    scope = BudgetScope(("scope:hr-people",), privacy_scope="hr-people")
    with pytest.raises(BudgetExceededError, match="privacy scope 'hr-people' has no lifetime privacy budget"):
        ledger.reserve(scope, 1.0, 1e-6, run_id="x")
    ledger.grant(scope, 2.0, 1e-5)
    ledger.reserve(scope, 1.0, 1e-6, run_id="x")
    reserve = ledger.entries(scope)[-1]
    assert (
        reserve["source_table"] == "scope:hr-people"
        and "declared privacy scope 'hr-people'" in reserve["note"]
    )
