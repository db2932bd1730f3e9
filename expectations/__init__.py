"""synth_expectations: Great Expectations suites for dpsynth's synthetic tables.

Build a GX Core 1.x suite from a :class:`~synth_core.spec.TableSpec` and the source's pandas dtypes
(:func:`build_expectation_suite`): schema, types, NULLs, domains and ranges, NULL rates, the spec's
semantic rules, privacy thresholds on the release metrics (:class:`PrivacyThresholds`) and the
user's own expectations. Validate a synthetic pandas frame with it (:func:`validate_frame`,
:func:`validate_suite`) into a :class:`ValidationOutcome` that holds expectation, column and rule
names, dtype names, counts, percentages and release aggregates, never cell values.

Importing this package is cheap: great_expectations, pandas and numpy load inside the functions.
"""

from synth_expectations.outcome import SEVERITIES, ExpectationResult, ValidationOutcome
from synth_expectations.privacy import RELEASE_METRIC_KEYS, PrivacyThresholds, gate_metrics
from synth_expectations.suite import CHECKS, ExtraExpectations, build_expectation_suite
from synth_expectations.validate import RESULT_FORMAT, validate_frame, validate_suite

__all__ = [
    "CHECKS",
    "RELEASE_METRIC_KEYS",
    "RESULT_FORMAT",
    "SEVERITIES",
    "ExpectationResult",
    "ExtraExpectations",
    "PrivacyThresholds",
    "ValidationOutcome",
    "build_expectation_suite",
    "gate_metrics",
    "validate_frame",
    "validate_suite",
]
