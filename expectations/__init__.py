"""synth_expectations: Great Expectations suites for dpsynth's synthetic tables.

Build a GX Core 1.x suite from a :class:`~synth_core.spec.TableSpec` and the source's pandas dtypes
(:func:`build_expectation_suite`), and validate a synthetic pandas frame with it
(:func:`validate_frame`, :func:`validate_suite`) into a :class:`ValidationOutcome` that holds
expectation names, column names, dtype names, counts and percentages, never cell values.

Importing this package is cheap: great_expectations, pandas and numpy load inside the functions.
"""

from synth_expectations.outcome import SEVERITIES, ExpectationResult, ValidationOutcome
from synth_expectations.suite import CHECKS, build_expectation_suite
from synth_expectations.validate import RESULT_FORMAT, validate_frame, validate_suite

__all__ = [
    "CHECKS",
    "RESULT_FORMAT",
    "SEVERITIES",
    "ExpectationResult",
    "ValidationOutcome",
    "build_expectation_suite",
    "validate_frame",
    "validate_suite",
]
