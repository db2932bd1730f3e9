"""Exceptions of synth_core.

Messages name the table, column, parameter or threshold at fault and never include a cell value.
The provider maps :class:`NonRetryableError` subclasses to ``AirflowFailException``.

Hostile input refused at the boundary (:mod:`synth_core.boundary`) raises :class:`ParameterError`
(names, keys, ``source_query``, numbers), :class:`SpecError` (spec names and sizes) or
:class:`BundleError` (bundle sizes and architectures): all non-retryable, since the same input
fails again. A value the warehouse driver cannot convert raises :class:`SourceTableError` naming the
column, never the value.
"""

from __future__ import annotations


class DPSynthError(Exception):
    """Base class of every dpsynth error."""


class NonRetryableError(DPSynthError):
    """Retrying the same task cannot succeed: a bad spec or parameter, a privacy refusal, bad data."""


class SpecError(NonRetryableError, ValueError):
    """The table spec is malformed or contradicts the table."""


class ParameterError(NonRetryableError, ValueError):
    """A parameter (ε, δ, row count, generator option...) is out of range."""


class SourceTableError(NonRetryableError):
    """The source table is missing, empty, or its columns do not fit the spec."""


class BudgetExceededError(NonRetryableError):
    """The ledger refuses a spend past the table's lifetime privacy budget."""


class ValidationFailedError(NonRetryableError):
    """A synthetic table failed its release gate."""


class BundleError(NonRetryableError):
    """A model bundle is missing, corrupt, or from an incompatible version."""


class MissingExtraError(NonRetryableError, ImportError):
    """An optional dependency (extra) of the chosen generator is not installed; raised before any
    private computation, with the ``pip install`` line that fixes it."""


class ShardError(NonRetryableError):
    """The shards of a sharded sample do not form one complete table (missing, duplicated,
    inconsistent): publishing them would lose or repeat rows."""
