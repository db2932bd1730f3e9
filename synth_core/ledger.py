"""PrivacyLedger: an append-only record of every privacy spend, per source table.

Every DP release from a table spends budget on the same people, so budgets are tracked across
runs, not per run. The ledger is one table (``dpsynth_privacy_ledger``) in SQLite by default or
any SQLAlchemy database. Rows are only ever inserted:

* ``grant``   — sets the table's lifetime budget (ε, δ); the latest grant is in force;
* ``reserve`` — taken *before* a run reads private data; counts as spent from that moment;
* ``spend``   — settles a reservation with what the run actually spent (≤ the reservation);
* ``release`` — cancels a reservation of a run that failed before it read any private data;
* ``resample`` — a refresh that re-sampled a saved DP model (no data access): ε = δ = 0, for the
  audit trail.

Spent = Σ settled spends + Σ open reservations (basic composition across releases: ε's and δ's
add). ``reserve`` checks and inserts in one locked transaction (SQLite ``BEGIN IMMEDIATE``,
PostgreSQL advisory transaction lock, MySQL ``GET_LOCK``), so two concurrent runs cannot both pass
the check.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from synth_core.errors import BudgetExceededError, ParameterError

LEDGER_TABLE = "dpsynth_privacy_ledger"
_EPS_TOL = 1e-9

_metadata = sa.MetaData()
ledger_table = sa.Table(
    LEDGER_TABLE,
    _metadata,
    sa.Column("entry_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("source_table", sa.String(512), nullable=False, index=True),
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
    """A table's budget: lifetime grant, spent (incl. open reservations), remaining."""

    source_table: str
    lifetime_epsilon: float | None
    lifetime_delta: float | None
    spent_epsilon: float
    spent_delta: float

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


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


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
    def _locked(self, source_table: str) -> Iterator[sa.Connection]:
        """A transaction holding the ledger lock for ``source_table``."""
        with self.engine.begin() as conn:
            name = self.engine.dialect.name
            key = int.from_bytes(hashlib.sha256(source_table.encode()).digest()[:8], "big", signed=True)
            if name == "postgresql":
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(key)))
            elif name in ("mysql", "mariadb"):
                got = conn.execute(sa.text("SELECT GET_LOCK(:k, 60)"), {"k": f"dpsynth:{key}"}).scalar()
                if got != 1:
                    raise TimeoutError(f"could not take the ledger lock for table {source_table!r}")
            try:
                yield conn
            finally:
                if name in ("mysql", "mariadb"):
                    conn.execute(sa.text("SELECT RELEASE_LOCK(:k)"), {"k": f"dpsynth:{key}"})

    # -- writes ----------------------------------------------------------------------------------
    def grant(self, source_table: str, epsilon: float, delta: float, *, note: str | None = None) -> None:
        """Set ``source_table``'s lifetime budget (replaces the previous grant; history is kept)."""
        _check_positive(epsilon, "lifetime_epsilon")
        _check_delta(delta, "lifetime_delta")
        with self._locked(source_table) as conn:
            conn.execute(
                ledger_table.insert().values(
                    source_table=source_table,
                    entry_type="grant",
                    epsilon=float(epsilon),
                    delta=float(delta),
                    note=note,
                    recorded_at=_now(),
                )
            )

    def ensure_grant(self, source_table: str, epsilon: float, delta: float) -> BudgetStatus:
        """Grant ``(epsilon, delta)`` only if the table has no lifetime budget yet; return the status.

        An existing grant is never raised or lowered here: changing a lifetime budget is a
        deliberate act (:meth:`grant`), not a side effect of editing a DAG.
        """
        with self._locked(source_table) as conn:
            status = self._status(conn, source_table)
            if status.lifetime_epsilon is None:
                _check_positive(epsilon, "lifetime_epsilon")
                _check_delta(delta, "lifetime_delta")
                conn.execute(
                    ledger_table.insert().values(
                        source_table=source_table,
                        entry_type="grant",
                        epsilon=float(epsilon),
                        delta=float(delta),
                        note="initial grant",
                        recorded_at=_now(),
                    )
                )
                status = self._status(conn, source_table)
        return status

    def reserve(
        self, source_table: str, epsilon: float, delta: float, *, run_id: str, mechanism: str | None = None
    ) -> int:
        """Reserve ``(epsilon, delta)`` before reading private rows; returns the reservation id.

        Raises:
            BudgetExceededError: naming the table, the remaining and the requested ε (or δ).
        """
        _check_positive(epsilon, "epsilon")
        _check_delta(delta, "delta")
        with self._locked(source_table) as conn:
            status = self._status(conn, source_table)
            self._refuse_if_over(status, epsilon, delta)
            result = conn.execute(
                ledger_table.insert().values(
                    source_table=source_table,
                    entry_type="reserve",
                    epsilon=float(epsilon),
                    delta=float(delta),
                    run_id=run_id,
                    mechanism=mechanism,
                    recorded_at=_now(),
                )
            )
            pk = result.inserted_primary_key
            assert pk is not None
            return int(pk[0])

    def check(self, source_table: str, epsilon: float, delta: float) -> BudgetStatus:
        """Raise :class:`BudgetExceededError` if ``(epsilon, delta)`` would exceed the budget now."""
        status = self.status(source_table)
        self._refuse_if_over(status, epsilon, delta)
        return status

    def settle(self, reservation_id: int, epsilon: float, delta: float, *, note: str | None = None) -> None:
        """Record what the reserved run actually spent (at most the reservation)."""
        with self.engine.begin() as conn:
            res = self._reservation(conn, reservation_id)
            if epsilon > res.epsilon * (1 + _EPS_TOL) + _EPS_TOL or delta > res.delta * (1 + _EPS_TOL):
                raise ParameterError(
                    f"table {res.source_table!r}: actual spend ε={epsilon}, δ={delta} exceeds the reservation "
                    f"ε={res.epsilon}, δ={res.delta}"
                )
            conn.execute(
                ledger_table.insert().values(
                    source_table=res.source_table,
                    entry_type="spend",
                    epsilon=float(epsilon),
                    delta=float(delta),
                    run_id=res.run_id,
                    reservation_id=reservation_id,
                    mechanism=res.mechanism,
                    note=note,
                    recorded_at=_now(),
                )
            )

    def settle_in_full(self, reservation_id: int, *, note: str | None = None) -> None:
        """Charge a reservation at its reserved (ε, δ): the run failed after it may have read
        private rows, so what it spent is unknown and the whole reservation counts."""
        with self.engine.connect() as conn:
            res = self._reservation(conn, reservation_id)
        self.settle(reservation_id, float(res.epsilon), float(res.delta), note=note)

    def release(self, reservation_id: int, *, note: str | None = None) -> None:
        """Cancel a reservation whose run failed before reading private data."""
        with self.engine.begin() as conn:
            res = self._reservation(conn, reservation_id)
            conn.execute(
                ledger_table.insert().values(
                    source_table=res.source_table,
                    entry_type="release",
                    epsilon=0.0,
                    delta=0.0,
                    run_id=res.run_id,
                    reservation_id=reservation_id,
                    note=note,
                    recorded_at=_now(),
                )
            )

    def record_resample(self, source_table: str, *, run_id: str, model_uri: str) -> None:
        """Record a resample-only refresh: post-processing of a saved model, so ε = δ = 0."""
        with self.engine.begin() as conn:
            conn.execute(
                ledger_table.insert().values(
                    source_table=source_table, entry_type="resample", epsilon=0.0, delta=0.0, run_id=run_id,
                    mechanism="resample", note=f"model {model_uri}", recorded_at=_now(),
                )
            )  # fmt: skip

    # -- reads -----------------------------------------------------------------------------------
    def status(self, source_table: str) -> BudgetStatus:
        with self.engine.connect() as conn:
            return self._status(conn, source_table)

    def entries(self, source_table: str | None = None) -> list[dict[str, Any]]:
        query = sa.select(ledger_table).order_by(ledger_table.c.entry_id)
        if source_table is not None:
            query = query.where(ledger_table.c.source_table == source_table)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def _reservation(self, conn: sa.Connection, reservation_id: int) -> Any:
        row = conn.execute(
            sa.select(ledger_table).where(
                ledger_table.c.entry_id == reservation_id, ledger_table.c.entry_type == "reserve"
            )
        ).first()
        if row is None:
            raise ParameterError(f"no ledger reservation with id {reservation_id}")
        closed = conn.execute(
            sa.select(sa.func.count()).where(
                ledger_table.c.reservation_id == reservation_id,
                ledger_table.c.entry_type.in_(("spend", "release")),
            )
        ).scalar_one()
        if closed:
            raise ParameterError(f"ledger reservation {reservation_id} is already settled or released")
        return row

    @staticmethod
    def _status(conn: sa.Connection, source_table: str) -> BudgetStatus:
        rows = conn.execute(
            sa.select(
                ledger_table.c.entry_id,
                ledger_table.c.entry_type,
                ledger_table.c.epsilon,
                ledger_table.c.delta,
                ledger_table.c.reservation_id,
            )
            .where(ledger_table.c.source_table == source_table)
            .order_by(ledger_table.c.entry_id)
        ).all()
        grant: tuple[float, float] | None = None
        reserved: dict[int, tuple[float, float]] = {}
        closed: dict[int, tuple[float, float]] = {}
        for row in rows:
            kind, res_id = str(row.entry_type), row.reservation_id
            amount = (float(row.epsilon), float(row.delta))
            if kind == "grant":
                grant = amount
            elif kind == "reserve":
                reserved[int(row.entry_id)] = amount
            elif kind == "spend" and res_id is not None:
                closed[int(res_id)] = amount
            elif kind == "release" and res_id is not None:
                closed[int(res_id)] = (0.0, 0.0)
        spent_eps = spent_delta = 0.0
        for res_id, (eps, delta) in reserved.items():
            eps, delta = closed.get(res_id, (eps, delta))
            spent_eps += eps
            spent_delta += delta
        return BudgetStatus(
            source_table=source_table,
            lifetime_epsilon=grant[0] if grant else None,
            lifetime_delta=grant[1] if grant else None,
            spent_epsilon=spent_eps,
            spent_delta=spent_delta,
        )

    @staticmethod
    def _refuse_if_over(status: BudgetStatus, epsilon: float, delta: float) -> None:
        table = status.source_table
        if status.lifetime_epsilon is None or status.lifetime_delta is None:
            raise BudgetExceededError(
                f"table {table!r} has no lifetime privacy budget in the ledger: grant one first"
            )
        if epsilon > status.remaining_epsilon + _EPS_TOL:
            raise BudgetExceededError(
                f"privacy budget exhausted for table {table!r}: remaining epsilon {max(status.remaining_epsilon, 0):.4g} "
                f"of lifetime {status.lifetime_epsilon:.4g}, this run requests epsilon {epsilon:.4g}"
            )
        if delta > status.remaining_delta * (1 + _EPS_TOL):
            raise BudgetExceededError(
                f"privacy budget exhausted for table {table!r}: remaining delta {max(status.remaining_delta, 0):.3g} "
                f"of lifetime {status.lifetime_delta:.3g}, this run requests delta {delta:.3g}"
            )


def _check_positive(value: float, name: str) -> None:
    import math

    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ParameterError(f"{name} must be a finite number > 0, got {value!r}")


def _check_delta(value: float, name: str) -> None:
    if not isinstance(value, int | float) or isinstance(value, bool) or not (0 < value < 1):
        raise ParameterError(f"{name} must be in (0, 1), got {value!r}")
