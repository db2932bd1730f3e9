"""The result of validating a synthetic table: plain, JSON-safe, free of cell values.

:class:`ValidationOutcome` is what the validate task logs, pushes (as ``to_dict()``) and turns into
an error message. It carries expectation names, column names, rule names and expressions, dtype
names, counts, percentages and release-level aggregates (null rates, privacy metrics and their
thresholds) only: never a value read from a cell of the table.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Severity = Literal["critical", "warning"]

#: The severities an expectation may have.
SEVERITIES: tuple[str, ...] = ("critical", "warning")


@dataclass(frozen=True)
class ExpectationResult:
    """The outcome of one expectation.

    Attributes:
        expectation_type: GX snake-case name, e.g. ``expect_column_values_to_be_in_set``.
        column: the column it checks; ``None`` for table-level, rule and privacy expectations.
        success: whether it held (``False`` as well when it could not be evaluated).
        severity: ``"critical"`` (fails the release) or ``"warning"`` (reported only).
        summary: one human sentence naming the column, rule or privacy threshold and the
            expectation, with counts and percentages of unexpected values or rows, dtype or column
            names, or an aggregate and its threshold; never a cell value.
        check: which family of check it belongs to (see :data:`synth_expectations.CHECKS`:
            ``columns``, ``type``, ``not_null``, ``domain``, ``range``, ``unique``, ``row_count``,
            ``rule``, ``null_rate``, ``privacy``, ``custom``).
        evaluated: ``False`` when the expectation was not run (its column is missing or has the
            wrong dtype, a rule's column is, a privacy metric is unknown) or raised an error; such
            an expectation counts as failed.
        unexpected_count: rows that broke a per-row expectation (``None`` for others); for a rule,
            the rows that violate it.
        unexpected_percent: the same as a percentage of the rows checked (non-null rows for
            domain, range and uniqueness checks; all rows for the NULL check and rules).
        rule: the rule's name (``rule`` family only).
        metric: the release metric checked (``privacy`` family only: ``dcr_share``,
            ``nndr_mean``, ``attack_auc`` or ``epsilon``).
        observed: the observed aggregate: the privacy metric's value, or a column's NULL
            fraction (``null_rate`` family); ``None`` for other families.
        threshold: the privacy threshold the metric was compared with (``privacy`` family only).
    """

    expectation_type: str
    column: str | None
    success: bool
    severity: str
    summary: str
    check: str = ""
    evaluated: bool = True
    unexpected_count: int | None = None
    unexpected_percent: float | None = None
    rule: str | None = None
    metric: str | None = None
    observed: float | None = None
    threshold: float | None = None

    @property
    def family(self) -> str:
        """The check family (the same as :attr:`check`)."""
        return self.check

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict of the fields, plus ``family`` (the same as ``check``)."""
        return {**asdict(self), "family": self.check}


@dataclass(frozen=True)
class ValidationOutcome:
    """Every expectation's result for one synthetic frame.

    Attributes:
        success: ``True`` when every *critical* expectation held (warnings do not fail).
        results: one :class:`ExpectationResult` per expectation of the suite, in suite order.
        statistics: counts (evaluated / successful / failed / critical and warning failures /
            not evaluated, and per family), the frame's shape and the run time in seconds.
        data_docs_index: path of the Data Docs ``index.html`` when Data Docs were built.
    """

    success: bool
    results: list[ExpectationResult] = field(default_factory=list)
    statistics: dict[str, Any] = field(default_factory=dict)
    data_docs_index: str | None = None

    def failed(self) -> list[ExpectationResult]:
        """The results that did not hold (critical and warning), in suite order."""
        return [r for r in self.results if not r.success]

    def warnings(self) -> list[ExpectationResult]:
        """The failed (or not evaluated) *warning*-severity results, in suite order."""
        return [r for r in self.results if not r.success and r.severity != "critical"]

    def failure_message(self, table: str) -> str:
        """One line per failed critical expectation, each naming the table and the column, rule or
        threshold at fault.

        Returns an empty string when no critical expectation failed.
        """
        lines = [f"table {table!r}: {r.summary}" for r in self.failed() if r.severity == "critical"]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (strings, numbers, booleans, lists, dicts and ``None`` only)."""
        return {
            "success": self.success,
            "results": [r.to_dict() for r in self.results],
            "statistics": dict(self.statistics),
            "data_docs_index": self.data_docs_index,
        }


__all__ = ["SEVERITIES", "ExpectationResult", "Severity", "ValidationOutcome"]
