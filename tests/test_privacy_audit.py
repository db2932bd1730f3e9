"""Fast privacy audit (CI): every DP release of the transformer, run 100,000 times per side on
neighbouring tables, must not show an ε above the one it was charged for; and the audit must be
able to fail (an under-charged release is caught).

The charged ρ per release (0.5) is large enough that releasing a second count beside a histogram
under one charge (L2 sensitivity √2 charged as 1, the bug of issue 16) shows: measured on that
mechanism, the bound is ≈ 3.3 against a claim of 2.75 at δ = 0.01 (a correct release: ≈ 2.1).
The full audit, with more mechanisms and more runs, is ``benchmarks/privacy_audit.py``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from synth_core.privacy import PrivacyBudget
from synth_core.privacy_audit import (
    RecordingAccountant,
    audit_aim_round,
    audit_dp_sgd_canary,
    audit_releases,
    audit_transformer_release,
    epsilon_lower_bound,
)
from synth_core.spec import TableSpec

RUNS = 100_000
#: the audit's δ: large enough that 50,000 evaluation runs per side resolve the rates it needs
DELTA = 0.01
#: preprocessing ρ of the audited fits: 0.5 for the row count and 0.5 for the one column
PREPROCESSING_RHO = 1.0


def _nullable_integer() -> tuple[pd.DataFrame, TableSpec]:
    frame = pd.DataFrame({"x": pd.array([0, 1, 2, 3, None, None], dtype="Int64")})
    spec = TableSpec.from_dict(
        {"table": "t", "columns": [{"name": "x", "kind": "integer", "nullable": True, "bounds": [0, 3]}]}
    )
    return frame, spec


@pytest.mark.parametrize("added", [2, None], ids=["non-null-row", "null-row"])
def test_histogram_with_nulls_shows_no_more_than_its_charge(added: int | None) -> None:
    frame, spec = _nullable_integer()
    result = audit_transformer_release(
        "histogram with NULLs", "quantiles:x", frame, spec, {"x": added},
        runs=RUNS, delta=DELTA, rng=np.random.default_rng(1), preprocessing_rho=PREPROCESSING_RHO,
    )  # fmt: skip
    assert result.details["charged_rho"] == pytest.approx(0.5)
    assert result.epsilon_lower_bound <= result.claimed_epsilon, result.to_dict()
    # the audit sees the release: a correct sensitivity-1 histogram at ρ = 0.5 shows ≈ 2.1
    assert result.epsilon_lower_bound > 1.6, result.to_dict()


def test_row_count_shows_no_more_than_its_charge() -> None:
    frame, spec = _nullable_integer()
    result = audit_transformer_release(
        "row count", "row_count", frame, spec, {"x": 1},
        runs=RUNS, delta=DELTA, rng=np.random.default_rng(2), preprocessing_rho=PREPROCESSING_RHO,
    )  # fmt: skip
    assert 1.6 < result.epsilon_lower_bound <= result.claimed_epsilon, result.to_dict()


@pytest.mark.parametrize("added", ["a", "zzz-only-in-the-neighbour", None], ids=["known", "new", "null"])
def test_category_discovery_shows_no_more_than_its_charge(added: str | None) -> None:
    frame = pd.DataFrame({"c": pd.Series(["a"] * 20 + ["b"] * 20 + [None] * 5, dtype="str")})
    spec = TableSpec.from_dict(
        {"table": "t", "columns": [{"name": "c", "kind": "categorical", "nullable": True}]}
    )
    # discovery's δ: 0.1 of the budget's 0.01 → 1e-3, inside the audit's δ
    result = audit_transformer_release(
        "category discovery", "categories:c", frame, spec, {"c": added},
        runs=RUNS, delta=DELTA, rng=np.random.default_rng(3), preprocessing_rho=PREPROCESSING_RHO,
        budget=PrivacyBudget(1.0, 0.01, discovery_delta_fraction=0.1),
    )  # fmt: skip
    assert result.epsilon_lower_bound <= result.claimed_epsilon, result.to_dict()
    if added == "zzz-only-in-the-neighbour":
        # the new value's key is released about δ = 1e-3 of the time, and never without the row
        assert result.details["direction"] == "out" or 0 < result.details["tpr"] < 3e-3
    else:
        assert result.epsilon_lower_bound > 1.6, result.to_dict()


def test_aim_select_and_measure_shows_no_more_than_its_charge() -> None:
    result = audit_aim_round(runs=RUNS, rho=0.5, delta=DELTA, rng=np.random.default_rng(6))
    assert 1.0 < result.epsilon_lower_bound <= result.claimed_epsilon, result.to_dict()


def test_dp_sgd_through_the_trainer_shows_no_more_than_its_charge() -> None:
    """200 trainings per side: a weak bound, but a trainer that added no noise (or far too little)
    would separate the sides completely (bound ≈ 3.2 > the claim ≈ 1)."""
    result = audit_dp_sgd_canary(runs=200, epsilon=2.0, delta=DELTA, epochs=4, rng=np.random.default_rng(7))
    assert result.claimed_epsilon < 2.0
    assert result.epsilon_lower_bound <= result.claimed_epsilon, result.to_dict()


def test_the_audit_catches_a_count_released_beside_a_histogram_on_its_charge() -> None:
    """Not vacuous: a histogram released with a second count the same row moves (a non-NULL
    count), declared at sensitivity 1, is caught — the mechanism fix 1 removed."""
    rng = np.random.default_rng(4)
    acc = {side: RecordingAccountant(preprocessing_rho=PREPROCESSING_RHO) for side in (0, 1)}
    cells = {0: np.array([1, 1, 1, 1, 2]), 1: np.array([1, 1, 2, 1, 2])}  # + a row in bin 2
    present = {0: 4, 1: 5}
    for side in (0, 1):
        acc[side].release_gaussian(
            "quantiles:x", np.append(cells[side], present[side]), l2_sensitivity=1.0, rho=0.5, rng=rng
        )
    result = audit_releases(
        "under-charged histogram", acc[0].recorded, acc[1].recorded, runs=RUNS, delta=DELTA, rng=rng
    )
    assert result.epsilon_lower_bound > result.claimed_epsilon, result.to_dict()
    # declared at its true sensitivity √2, the same vector passes
    for side in (0, 1):
        acc[side].recorded.clear()
        acc[side].release_gaussian(
            "quantiles:x", np.append(cells[side], present[side]), l2_sensitivity=np.sqrt(2), rho=0.5, rng=rng
        )
    fixed = audit_releases("histogram", acc[0].recorded, acc[1].recorded, runs=RUNS, delta=DELTA, rng=rng)
    assert fixed.epsilon_lower_bound <= fixed.claimed_epsilon, fixed.to_dict()


def test_the_bound_is_zero_for_identical_sides_and_large_for_separated_ones() -> None:
    rng = np.random.default_rng(5)
    same, _ = epsilon_lower_bound(rng.normal(size=20_000), rng.normal(size=20_000), delta=0.01, rng=rng)
    assert same < 0.15
    far, info = epsilon_lower_bound(rng.normal(size=20_000), rng.normal(10, 1, 20_000), delta=0.01, rng=rng)
    # no false positive in 10,000 evaluation runs: FPR ≤ 3.7e-4 at 97.5 % → ε ≥ log(0.98 / 3.7e-4)
    assert far > 7.5 and info["fpr"] == 0.0
