"""PrivacyLedger: an append-only record of every privacy spend, per source table.

Every DP release from a table spends budget on the same people, so budgets are tracked across
runs, not per run. The ledger is one table (``dpsynth_privacy_ledger``) in SQLite by default or
any SQLAlchemy database. Rows are only ever inserted:

* ``grant``   — sets a key's lifetime budget (ε, δ); the latest grant is in force. Raising an
  existing grant needs ``allow_raise=True`` and the entry's note records the old and new values;
  lowering it below what is already spent is refused;
* ``reserve`` — taken *before* a run reads private data; counts as spent from that moment;
* ``spend``   — settles a reservation with what the run actually spent (0 ≤ spend ≤ reservation);
* ``release`` — cancels a reservation of a run that failed before it read any private data;
* ``resample`` — a refresh that re-sampled a saved DP model (no data access): ε = δ = 0, for the
  audit trail;
* ``carry``   — what an old ledger's plain key had spent, carried over to a new key (see *Keys*).

**Keys.** A budget is keyed by what a run reads, not by what a spec calls it: a
:class:`~synth_core.budget_scope.BudgetScope` holds one key per source table, the connection identity
plus the dialect-normalised ``schema.table`` (see :mod:`synth_core.budget_scope`), and a
``source_query`` is charged on every table it reads. A reservation over several keys is atomic: every
key's remaining budget is checked and one ``reserve`` row per key is inserted in one locked
transaction, or none is. Every method that takes a scope also takes a plain string, which is one
key. **Old ledgers** (written before scopes, keyed by the spec's table name, e.g. ``adult``) keep their
entries under that plain key; a scope from :func:`~synth_core.budget_scope.budget_scope` names it in
``legacy_keys``, and the first grant or reservation on the scope carries it over to each new key once,
in the same locked transaction: its spend (incl. open reservations) as a ``carry`` entry and, where the
new key has no grant, its grant. So an upgrade neither hands out a fresh budget nor lets a renamed
spec reach the old one twice; ``status`` and ``check`` already count what would be carried. A plain key
is carried to every new key it may stand for (two databases that both had a table of that name are
both charged: conservative). Spend recorded under a plain key *after* the carry is not followed.

Spent = Σ settled spends + Σ open reservations (basic composition across releases: ε's and δ's
add). Every amount is finite: ε > 0, δ in (0, 1) for grants and reservations, 0 ≤ spend ≤ the
reservation when settling. An entry with an amount outside these ranges (written by an older
version) counts conservatively: a bad spend as its whole reservation, a bad grant as no budget left.
``reserve`` checks and inserts in one locked transaction (SQLite ``BEGIN IMMEDIATE``, PostgreSQL
advisory transaction locks, MySQL ``GET_LOCK``; several keys are locked in sorted order), so two
concurrent runs cannot both pass the check.

**Failure policy** — one place, :meth:`PrivacyLedger.reservation`: a run that raises before it
marked a private read is released; one that raises after is charged in full (what it spent is
unknown); one that ends without settling is charged in full. A reservation that must outlive the
process (a deferred pod task) uses :meth:`Reservation.detach` and the explicit
``settle`` / ``settle_in_full`` / ``release`` by id. A process killed outright leaves its reservation
open, which counts as spent.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from synth_core.budget_scope import SCOPE_PREFIX, BudgetScope, budget_scope
from synth_core.errors import BudgetExceededError, ParameterError

__all__ = [
    "BudgetScope",
    "BudgetStatus",
    "PrivacyLedger",
    "Reservation",
    "budget_scope",  # re-exported: callers build the scope and charge it here
]

log = logging.getLogger(__name__)

LEDGER_TABLE = "dpsynth_privacy_ledger"
_EPS_TOL = 1e-9

Scope = BudgetScope | str
"""What a method charges: a :class:`BudgetScope`, or one plain key (an old ledger's table name)."""

_metadata = sa.MetaData()
ledger_table = sa.Table(
    LEDGER_TABLE,
    _metadata,
    sa.Column("entry_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("source_table", sa.String(512), nullable=False, index=True),  # the key
    sa.Column("entry_type", sa.String(16), nullable=False),
    sa.Column("epsilon", sa.Float, nullable=False),
    sa.Column("delta", sa.Float, nullable=False),
    sa.Column("run_id", sa.String(512), nullable=True),
    sa.Column("reservation_id", sa.Integer, nullable=True),
    sa.Column("mechanism", sa.String(128), nullable=True),
    sa.Column("note", sa.Text, nullable=True),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
)


@dataclass(frozen=True)
class BudgetStatus:
    """One key's budget: lifetime grant, spent (incl. open reservations), remaining (ε, δ)."""

    source_table: str
    lifetime_epsilon: float | None
    lifetime_delta: float | None
    spent_epsilon: float
    spent_delta: float

    @property
    def key(self) -> str:
        """The ledger key (``source_table`` is its historical name)."""
        return self.source_table

    @property
    def remaining_epsilon(self) -> float:
        return (self.lifetime_epsilon or 0.0) - self.spent_epsilon

    @property
    def remaining_delta(self) -> float:
        return (self.lifetime_delta or 0.0) - self.spent_delta

    def to_dict(self) -> dict[str, Any]:
        return {
            "source_table": self.source_table,
            "lifetime_epsilon": self.lifetime_epsilon,
            "lifetime_delta": self.lifetime_delta,
            "spent_epsilon": self.spent_epsilon,
            "spent_delta": self.spent_delta,
            "remaining_epsilon": self.remaining_epsilon if self.lifetime_epsilon is not None else None,
            "remaining_delta": self.remaining_delta if self.lifetime_delta is not None else None,
        }


@dataclass(frozen=True)
class _Reserved:
    """A reservation as recorded: its id, keys, amounts and run."""

    id: int
    keys: tuple[str, ...]
    epsilon: float
    delta: float
    run_id: str | None
    mechanism: str | None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Reservation:
    """An open reservation inside :meth:`PrivacyLedger.reservation`; closes once.

    Attributes:
        id: the ledger's reservation id.
        scope: the keys it charges.
        epsilon, delta: the reserved (ε, δ).
        private_read: whether :meth:`mark_private_read` was called.
        closed: settled, charged in full or released.
        detached: left open on purpose (:meth:`detach`).
    """

    def __init__(
        self, ledger: PrivacyLedger, reservation_id: int, scope: BudgetScope, epsilon: float, delta: float
    ) -> None:
        self.ledger = ledger
        self.id = reservation_id
        self.scope = scope
        self.epsilon = float(epsilon)
        self.delta = float(delta)
        self.private_read = False
        self.closed = False
        self.detached = False

    def mark_private_read(self) -> None:
        """Private rows were read (or are about to be): a failure from now on is charged in full."""
        self.private_read = True

    def settle(self, epsilon: float, delta: float, *, note: str | None = None) -> None:
        """Record the actual spend, ``0 <= spend <= reserved``."""
        self._open()
        self.ledger.settle(self.id, epsilon, delta, note=note)
        self.closed = True

    def settle_in_full(self, *, note: str | None = None) -> None:
        """Charge the whole reservation."""
        self._open()
        self.ledger.settle_in_full(self.id, note=note)
        self.closed = True

    def release(self, *, note: str | None = None) -> None:
        """Cancel it; refused once a private read was marked (that run must be charged)."""
        self._open()
        if self.private_read:
            raise ParameterError(
                f"ledger reservation {self.id} read private rows: it is charged, not released"
            )
        self.ledger.release(self.id, note=note)
        self.closed = True

    def detach(self) -> int:
        """Leave the reservation open past the ``with`` block (it keeps counting as spent) and
        return its id, for a run that continues elsewhere (a deferred pod task) and closes it with
        :meth:`PrivacyLedger.settle` / ``settle_in_full`` / ``release``."""
        self._open()
        self.detached = True
        return self.id

    def _open(self) -> None:
        if self.closed or self.detached:
            raise ParameterError(f"ledger reservation {self.id} is already closed or detached")


class PrivacyLedger:
    """Append-only privacy ledger.

    Args:
        url_or_engine: a SQLAlchemy URL (``sqlite:////path/ledger.db`` by default in the provider)
            or an engine (e.g. from an Airflow connection's hook).
    """

    def __init__(self, url_or_engine: str | sa.URL | sa.engine.Engine) -> None:
        if isinstance(url_or_engine, sa.engine.Engine) and url_or_engine.dialect.name != "sqlite":
            self.engine = url_or_engine
        else:
            # SQLite gets an engine of its own: its locking needs connection-level settings
            url = (
                url_or_engine.url
                if isinstance(url_or_engine, sa.engine.Engine)
                else sa.make_url(url_or_engine)
            )
            if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
                from pathlib import Path

                Path(url.database).parent.mkdir(parents=True, exist_ok=True)
            self.engine = sa.create_engine(url, hide_parameters=True)
            if self.engine.dialect.name == "sqlite":
                self._sqlite_immediate_transactions()
        _metadata.create_all(self.engine, checkfirst=True)

    def _sqlite_immediate_transactions(self) -> None:
        # pysqlite's own transaction handling defers BEGIN; take the write lock at BEGIN so the
        # read-check-insert of reserve() is serialized across processes (SQLAlchemy's recipe).
        @sa.event.listens_for(self.engine, "connect")
        def _connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None
            dbapi_conn.execute("PRAGMA busy_timeout = 30000")

        @sa.event.listens_for(self.engine, "begin")
        def _begin(conn: sa.Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        self.engine.dispose()

    @contextlib.contextmanager
    def _locked(self, keys: Sequence[str]) -> Iterator[sa.Connection]:
        """A transaction holding the ledger lock of every key (taken in sorted order: no deadlock).

        PostgreSQL's advisory locks end with the transaction, after its commit. MySQL's
        ``GET_LOCK`` is a session lock: it is taken before the transaction starts (so InnoDB's
        snapshot is read after the lock) and released only after the commit — releasing it before
        the commit let a concurrent run read the budget without this run's reservation.
        """
        lock_ids = [
            int.from_bytes(hashlib.sha256(k.encode()).digest()[:8], "big", signed=True)
            for k in sorted(set(keys))
        ]
        name = self.engine.dialect.name
        if name not in ("mysql", "mariadb"):
            with self.engine.begin() as conn:
                if name == "postgresql":
                    for lock_id in lock_ids:
                        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(lock_id)))
                yield conn  # SQLite: BEGIN IMMEDIATE holds the database's write lock
            return
        with self.engine.connect() as conn:
            held: list[int] = []
            try:
                for lock_id in lock_ids:
                    got = conn.execute(
                        sa.text("SELECT GET_LOCK(:k, 60)"), {"k": f"dpsynth:{lock_id}"}
                    ).scalar()
                    if got != 1:
                        raise TimeoutError("could not take the ledger lock within 60 s")
                    held.append(lock_id)
                conn.commit()  # the transaction that reads the budget starts after the locks
                with conn.begin():
                    yield conn
            finally:
                try:
                    if conn.in_transaction():
                        conn.rollback()
                    for lock_id in reversed(held):
                        conn.execute(sa.text("SELECT RELEASE_LOCK(:k)"), {"k": f"dpsynth:{lock_id}"})
                    conn.commit()
                except Exception:
                    conn.invalidate()  # closing the session releases its locks; never pool it with them

    # -- writes ----------------------------------------------------------------------------------
    def grant(
        self,
        scope: Scope,
        epsilon: float,
        delta: float,
        *,
        note: str | None = None,
        allow_raise: bool = False,
    ) -> None:
        """Set the lifetime budget ``(epsilon, delta)`` of every key of ``scope`` (history is kept).

        A first grant needs no flag. Raising an existing grant (a larger ε or δ) needs
        ``allow_raise=True``; the entry's note records the old and new values and it is logged.
        Lowering is allowed down to what is already spent (incl. open reservations). All keys or
        none.

        Raises:
            ParameterError: an amount out of range; a raise without ``allow_raise``; a grant below
                what a key has spent.
        """
        charged = BudgetScope.of(scope)
        keys = charged.keys
        _check_positive(epsilon, "lifetime_epsilon")
        _check_delta(delta, "lifetime_delta")
        epsilon, delta = float(epsilon), float(delta)
        with self._locked(keys + charged.legacy_keys) as conn:
            self._carry_legacy(conn, charged)
            notes: dict[str, str | None] = {}
            for key in keys:
                status = self._status(conn, key)
                notes[key] = note
                if status.lifetime_epsilon is None or status.lifetime_delta is None:
                    continue
                old = f"ε={status.lifetime_epsilon:.6g}, δ={status.lifetime_delta:.3g}"
                new = f"ε={epsilon:.6g}, δ={delta:.3g}"
                raises = epsilon > status.lifetime_epsilon or delta > status.lifetime_delta
                if raises and not allow_raise:
                    raise ParameterError(
                        f"{_describe(key)} already has a lifetime budget of {old}: raising it to {new} "
                        "needs an explicit allow_raise (CLI: --raise)"
                    )
                if not (
                    epsilon >= status.spent_epsilon - _EPS_TOL
                    and delta >= status.spent_delta * (1 - _EPS_TOL)
                ):
                    raise ParameterError(
                        f"{_describe(key)} has already spent ε={status.spent_epsilon:.6g}, "
                        f"δ={status.spent_delta:.3g}: a lifetime budget of {new} is below it"
                    )
                change = "raised" if raises else "changed"
                notes[key] = f"{change} from {old} to {new}" + (f"; {note}" if note else "")
                if raises:
                    log.warning("ledger key %r: lifetime budget raised from %s to %s", key, old, new)
            for key in keys:
                conn.execute(
                    ledger_table.insert().values(
                        source_table=key, entry_type="grant", epsilon=epsilon, delta=delta,
                        note=notes[key], recorded_at=_now(),
                    )
                )  # fmt: skip

    def ensure_grant(self, scope: Scope, epsilon: float, delta: float) -> BudgetStatus:
        """Grant ``(epsilon, delta)`` to every key of ``scope`` that has no lifetime budget yet;
        return the scope's status (:meth:`status`).

        An existing grant is never raised or lowered here: changing a lifetime budget is a
        deliberate act (:meth:`grant`), not a side effect of editing a DAG.
        """
        charged = BudgetScope.of(scope)
        keys = charged.keys
        with self._locked(keys + charged.legacy_keys) as conn:
            self._carry_legacy(conn, charged)
            for key in keys:
                if self._status(conn, key).lifetime_epsilon is not None:
                    continue
                _check_positive(epsilon, "lifetime_epsilon")
                _check_delta(delta, "lifetime_delta")
                conn.execute(
                    ledger_table.insert().values(
                        source_table=key, entry_type="grant", epsilon=float(epsilon), delta=float(delta),
                        note="initial grant", recorded_at=_now(),
                    )
                )  # fmt: skip
            return _binding([self._status(conn, key) for key in keys])

    def reserve(
        self,
        scope: Scope,
        epsilon: float,
        delta: float,
        *,
        run_id: str,
        mechanism: str | None = None,
        note: str | None = None,
    ) -> int:
        """Reserve ``(epsilon, delta)`` on every key of ``scope`` before reading private rows, all
        keys or none; returns the reservation id.

        Raises:
            BudgetExceededError: naming the key, the remaining and the requested ε (or δ).
            ParameterError: an amount out of range.
        """
        charged = BudgetScope.of(scope)
        _check_positive(epsilon, "epsilon")
        _check_delta(delta, "delta")
        epsilon, delta = float(epsilon), float(delta)
        if charged.privacy_scope is not None:
            declared = f"declared privacy scope {charged.privacy_scope!r}"
            note = f"{declared}; {note}" if note else declared
        with self._locked(charged.keys + charged.legacy_keys) as conn:
            self._carry_legacy(conn, charged)
            for key in charged.keys:
                self._refuse_if_over(self._status(conn, key), epsilon, delta)
            reservation_id: int | None = None
            for key in charged.keys:
                result = conn.execute(
                    ledger_table.insert().values(
                        source_table=key, entry_type="reserve", epsilon=epsilon, delta=delta, run_id=run_id,
                        reservation_id=reservation_id, mechanism=mechanism, note=note, recorded_at=_now(),
                    )
                )  # fmt: skip
                if reservation_id is None:  # the first row's id names the reservation
                    pk = result.inserted_primary_key
                    assert pk is not None
                    reservation_id = int(pk[0])
            assert reservation_id is not None
            return reservation_id

    @contextlib.contextmanager
    def reservation(
        self,
        scope: Scope,
        epsilon: float,
        delta: float,
        *,
        run_id: str,
        note: str | None = None,
        mechanism: str | None = None,
    ) -> Iterator[Reservation]:
        """Reserve ``(epsilon, delta)`` for the ``with`` block: the single failure policy.

        Inside, call :meth:`Reservation.mark_private_read` before private rows are read and
        :meth:`Reservation.settle` with the actual spend. On an exception: released when no private
        read was marked, charged in full otherwise (the exception propagates). On a normal exit
        without a settle: charged in full. :meth:`Reservation.detach` leaves it open on purpose —
        call it before anything that ends the block by raising without failing the run (Airflow's
        ``defer()`` raises ``TaskDeferred``, which would otherwise count as a failure).
        If closing fails too, the reservation stays open, which still counts as spent.
        """
        charged = BudgetScope.of(scope)
        reservation_id = self.reserve(charged, epsilon, delta, run_id=run_id, mechanism=mechanism, note=note)
        handle = Reservation(self, reservation_id, charged, epsilon, delta)
        try:
            yield handle
        except BaseException as exc:
            if not (handle.closed or handle.detached):
                why = type(exc).__name__
                try:
                    if handle.private_read:
                        self.settle_in_full(
                            reservation_id,
                            note=f"run failed after reading private rows ({why}): charged in full",
                        )
                    else:
                        self.release(reservation_id, note=f"run failed before reading private rows ({why})")
                    handle.closed = True
                except Exception:  # the run's own error matters more; open = spent
                    log.exception("ledger reservation %s could not be closed: it stays open (counted as spent)",
                                  reservation_id)  # fmt: skip
            raise
        if not (handle.closed or handle.detached):
            self.settle_in_full(reservation_id, note="run ended without settling its spend: charged in full")
            handle.closed = True

    def check(self, scope: Scope, epsilon: float, delta: float) -> BudgetStatus:
        """Raise :class:`BudgetExceededError` if ``(epsilon, delta)`` would exceed any key's budget
        now; return the scope's status (:meth:`status`)."""
        statuses = self.statuses(scope)
        for status in statuses:
            self._refuse_if_over(status, epsilon, delta)
        return _binding(statuses)

    def settle(self, reservation_id: int, epsilon: float, delta: float, *, note: str | None = None) -> None:
        """Record what the reserved run actually spent: finite, ``0 <= spend <= reservation``.

        Raises:
            ParameterError: a spend out of range, or the reservation is unknown or already closed.
        """
        for value, name in ((epsilon, "epsilon"), (delta, "delta")):
            if not _is_number(value) or not math.isfinite(value) or value < 0:
                raise ParameterError(f"the actual spend's {name} must be a finite number >= 0, got {value!r}")
        res = self._reservation(reservation_id)
        if epsilon > res.epsilon * (1 + _EPS_TOL) + _EPS_TOL or delta > res.delta * (1 + _EPS_TOL):
            raise ParameterError(
                f"ledger {', '.join(res.keys)}: actual spend ε={epsilon}, δ={delta} exceeds the reservation "
                f"ε={res.epsilon}, δ={res.delta}"
            )
        self._close(res, "spend", min(float(epsilon), res.epsilon), min(float(delta), res.delta), note)

    def settle_in_full(self, reservation_id: int, *, note: str | None = None) -> None:
        """Charge a reservation at its reserved (ε, δ): the run failed after it may have read
        private rows, so what it spent is unknown and the whole reservation counts."""
        res = self._reservation(reservation_id)
        self._close(res, "spend", res.epsilon, res.delta, note)

    def release(self, reservation_id: int, *, note: str | None = None) -> None:
        """Cancel a reservation whose run failed before reading private data."""
        res = self._reservation(reservation_id)
        self._close(res, "release", 0.0, 0.0, note)

    def _close(self, res: _Reserved, kind: str, epsilon: float, delta: float, note: str | None) -> None:
        with self._locked(res.keys) as conn:
            self._refuse_if_closed(conn, res.id)  # again, under the lock: a reservation closes once
            for key in res.keys:
                conn.execute(
                    ledger_table.insert().values(
                        source_table=key, entry_type=kind, epsilon=epsilon, delta=delta, run_id=res.run_id,
                        reservation_id=res.id, mechanism=res.mechanism, note=note, recorded_at=_now(),
                    )
                )  # fmt: skip

    def record_resample(self, scope: Scope, *, run_id: str, model_uri: str) -> None:
        """Record a resample-only refresh: post-processing of a saved model, so ε = δ = 0."""
        with self.engine.begin() as conn:
            for key in BudgetScope.of(scope).keys:
                conn.execute(
                    ledger_table.insert().values(
                        source_table=key, entry_type="resample", epsilon=0.0, delta=0.0, run_id=run_id,
                        mechanism="resample", note=f"model {model_uri}", recorded_at=_now(),
                    )
                )  # fmt: skip

    # -- reads -----------------------------------------------------------------------------------
    def status(self, scope: Scope) -> BudgetStatus:
        """The budget of ``scope``: for one key its status; for several, the binding key's (the
        least ε left, then the least δ left), since a run is refused once any key is exhausted."""
        return _binding(self.statuses(scope))

    def statuses(self, scope: Scope) -> list[BudgetStatus]:
        """The status of every key of ``scope``, in key order (with what its legacy keys would
        carry over, so a check agrees with the reservation that follows it)."""
        charged = BudgetScope.of(scope)
        with self.engine.connect() as conn:
            return [
                self._status(conn, key, carry=self._pending_carries(conn, key, charged))
                for key in charged.keys
            ]

    # -- old ledgers -----------------------------------------------------------------------------
    def _pending_carries(
        self, conn: sa.Connection, key: str, scope: BudgetScope
    ) -> list[tuple[str, BudgetStatus]]:
        """The legacy keys of ``scope`` not yet carried over to ``key``, with their status."""
        if not scope.legacy_keys:
            return []
        query = sa.select(ledger_table.c.note).where(
            ledger_table.c.source_table == key, ledger_table.c.entry_type == "carry"
        )
        carried = {str(row[0]) for row in conn.execute(query)}
        pending = []
        for legacy in scope.legacy_keys:
            if _carry_note(legacy) in carried:
                continue
            status = self._status(conn, legacy)
            if status.lifetime_epsilon is not None or status.spent_epsilon or status.spent_delta:
                pending.append((legacy, status))
        return pending

    def _carry_legacy(self, conn: sa.Connection, scope: BudgetScope) -> None:
        """Carry each legacy key's grant and spend over to every key of ``scope``, once.

        A ledger written before budget scopes keyed a table by the spec's name; its spend is on the
        same rows, so it counts against the new key (``carry`` entries), and its grant becomes the
        new key's when that has none (the smallest, if several legacy keys had one).
        """
        for key in scope.keys:
            pending = self._pending_carries(conn, key, scope)
            if not pending:
                continue
            grants = [
                s for _, s in pending if s.lifetime_epsilon is not None and s.lifetime_delta is not None
            ]
            if grants and self._status(conn, key).lifetime_epsilon is None:
                conn.execute(
                    ledger_table.insert().values(
                        source_table=key, entry_type="grant",
                        epsilon=min(float(s.lifetime_epsilon or 0.0) for s in grants),
                        delta=min(float(s.lifetime_delta or 0.0) for s in grants),
                        note="carried over from legacy key(s) " + ", ".join(repr(s.key) for s in grants),
                        recorded_at=_now(),
                    )
                )  # fmt: skip
            for legacy, status in pending:
                log.info("ledger key %r: carrying over legacy key %r", key, legacy)
                conn.execute(
                    ledger_table.insert().values(
                        source_table=key, entry_type="carry", epsilon=status.spent_epsilon,
                        delta=status.spent_delta, note=_carry_note(legacy), recorded_at=_now(),
                    )
                )  # fmt: skip

    def keys(self) -> list[str]:
        """Every key with an entry, sorted."""
        with self.engine.connect() as conn:
            found = list(conn.execute(sa.select(ledger_table.c.source_table).distinct()))
        return sorted(str(row[0]) for row in found)

    def entries(self, scope: Scope | None = None) -> list[dict[str, Any]]:
        """The ledger's rows (of ``scope``'s keys, if given) in the order they were written."""
        query = sa.select(ledger_table).order_by(ledger_table.c.entry_id)
        if scope is not None:
            query = query.where(ledger_table.c.source_table.in_(BudgetScope.of(scope).keys))
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def _reservation(self, reservation_id: int) -> _Reserved:
        if not _is_number(reservation_id) or isinstance(reservation_id, float):
            raise ParameterError(f"a ledger reservation id is an integer, got {reservation_id!r}")
        t = ledger_table.c
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(ledger_table)
                .where(
                    t.entry_type == "reserve",
                    sa.or_(
                        sa.and_(t.entry_id == reservation_id, t.reservation_id.is_(None)),
                        t.reservation_id == reservation_id,
                    ),
                )
                .order_by(t.entry_id)
            ).all()
            if not rows or int(rows[0].entry_id) != reservation_id:
                raise ParameterError(f"no ledger reservation with id {reservation_id}")
            self._refuse_if_closed(conn, reservation_id)
        first = rows[0]
        return _Reserved(
            id=reservation_id,
            keys=tuple(str(r.source_table) for r in rows),
            epsilon=float(first.epsilon),
            delta=float(first.delta),
            run_id=first.run_id,
            mechanism=first.mechanism,
        )

    @staticmethod
    def _refuse_if_closed(conn: sa.Connection, reservation_id: int) -> None:
        closed = conn.execute(
            sa.select(sa.func.count()).where(
                ledger_table.c.reservation_id == reservation_id,
                ledger_table.c.entry_type.in_(("spend", "release")),
            )
        ).scalar_one()
        if closed:
            raise ParameterError(f"ledger reservation {reservation_id} is already settled or released")

    @staticmethod
    def _status(
        conn: sa.Connection, key: str, *, carry: Sequence[tuple[str, BudgetStatus]] = ()
    ) -> BudgetStatus:
        """``key``'s budget from its entries, plus the ``carry`` not written yet."""
        rows = conn.execute(
            sa.select(
                ledger_table.c.entry_id,
                ledger_table.c.entry_type,
                ledger_table.c.epsilon,
                ledger_table.c.delta,
                ledger_table.c.reservation_id,
            )
            .where(ledger_table.c.source_table == key)
            .order_by(ledger_table.c.entry_id)
        ).all()
        grant: tuple[float, float] | None = None
        reserved: dict[int, tuple[float, float]] = {}
        closed: dict[int, tuple[float, float] | None] = {}
        carried_rows: list[tuple[float, float]] = []
        for row in rows:
            kind, res_id = str(row.entry_type), row.reservation_id
            amount = (_as_float(row.epsilon), _as_float(row.delta))
            if kind == "grant":
                # an out-of-range grant (only an older version could write one) leaves nothing to spend
                grant = (
                    amount if math.isfinite(amount[0]) and amount[0] > 0 and 0 < amount[1] < 1 else (0.0, 0.0)
                )
            elif kind == "reserve":
                # an out-of-range reservation counts as infinite: nothing passes after it
                ok = all(math.isfinite(a) and a >= 0 for a in amount)
                reserved[int(res_id if res_id is not None else row.entry_id)] = (
                    amount if ok else (math.inf, math.inf)
                )
            elif kind == "spend" and res_id is not None:
                closed.setdefault(int(res_id), amount)
            elif kind == "release" and res_id is not None:
                closed.setdefault(int(res_id), (0.0, 0.0))
            elif kind == "carry":
                carried_rows.append(amount)
        spent_eps = spent_delta = 0.0
        carried = list(carried_rows) + [(s.spent_epsilon, s.spent_delta) for _, s in carry]
        for eps, delta in carried:  # a bad carry amount (tampered) leaves nothing to spend
            ok = math.isfinite(eps) and math.isfinite(delta) and eps >= 0 and delta >= 0
            spent_eps += eps if ok else math.inf
            spent_delta += delta if ok else math.inf
        grants = [s for _, s in carry if s.lifetime_epsilon is not None and s.lifetime_delta is not None]
        if grant is None and grants:
            grant = (
                min(s.lifetime_epsilon or 0.0 for s in grants),
                min(s.lifetime_delta or 0.0 for s in grants),
            )
        for res_id, (eps, delta) in reserved.items():
            actual = closed.get(res_id)
            # a spend out of [0, reservation] (older versions accepted NaN and negatives) counts in full
            if actual is not None and all(
                math.isfinite(a) and 0 <= a <= r * (1 + _EPS_TOL) + _EPS_TOL
                for a, r in zip(actual, (eps, delta), strict=True)
            ):
                eps, delta = min(actual[0], eps), min(actual[1], delta)
            spent_eps += eps
            spent_delta += delta
        return BudgetStatus(
            source_table=key,
            lifetime_epsilon=grant[0] if grant else None,
            lifetime_delta=grant[1] if grant else None,
            spent_epsilon=spent_eps,
            spent_delta=spent_delta,
        )

    @staticmethod
    def _refuse_if_over(status: BudgetStatus, epsilon: float, delta: float) -> None:
        key = status.source_table
        if status.lifetime_epsilon is None or status.lifetime_delta is None:
            raise BudgetExceededError(
                f"{_describe(key)} has no lifetime privacy budget in the ledger: grant one first"
            )
        # written so that a NaN anywhere refuses
        if not epsilon <= status.remaining_epsilon + _EPS_TOL:
            raise BudgetExceededError(
                f"privacy budget exhausted for {_describe(key)}: remaining epsilon {max(status.remaining_epsilon, 0):.4g} "
                f"of lifetime {status.lifetime_epsilon:.4g}, this run requests epsilon {epsilon:.4g}"
            )
        if not delta <= status.remaining_delta * (1 + _EPS_TOL):
            raise BudgetExceededError(
                f"privacy budget exhausted for {_describe(key)}: remaining delta {max(status.remaining_delta, 0):.3g} "
                f"of lifetime {status.lifetime_delta:.3g}, this run requests delta {delta:.3g}"
            )


def _describe(key: str) -> str:
    """A key as messages name it: ``table '...'`` or ``privacy scope '...'``."""
    if key.startswith(SCOPE_PREFIX):
        return f"privacy scope {key[len(SCOPE_PREFIX) :]!r}"
    return f"table {key!r}"


def _carry_note(legacy_key: str) -> str:
    return f"carried over from legacy key {legacy_key!r}"


def _binding(statuses: Sequence[BudgetStatus]) -> BudgetStatus:
    """The status whose budget runs out first (least ε left, then least δ left)."""
    return min(statuses, key=lambda s: (s.remaining_epsilon, s.remaining_delta))


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _as_float(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def _check_positive(value: float, name: str) -> None:
    if not _is_number(value) or not math.isfinite(value) or value <= 0:
        raise ParameterError(f"{name} must be a finite number > 0, got {value!r}")


def _check_delta(value: float, name: str) -> None:
    if not _is_number(value) or not (0 < value < 1):
        raise ParameterError(f"{name} must be in (0, 1), got {value!r}")
