"""Accounting: composition, calibration, and the budget's parameter checks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from synth_core.errors import ParameterError
from synth_core.privacy import (
    RDP_ORDERS,
    PrivacyAccountant,
    PrivacyBudget,
    rdp_to_epsilon,
    sgm_rdp,
    zcdp_rho_for,
)


@pytest.mark.parametrize("bad", [0, -1.0, math.inf, math.nan])
def test_budget_rejects_nonpositive_or_infinite_epsilon(bad: float) -> None:
    with pytest.raises(ParameterError, match="epsilon"):
        PrivacyBudget(bad, 1e-6)


@pytest.mark.parametrize("bad", [0, 1, -1e-6, 2.0])
def test_budget_rejects_delta_outside_unit_interval(bad: float) -> None:
    with pytest.raises(ParameterError, match="delta"):
        PrivacyBudget(1.0, bad)


def test_sgd_alone_matches_opacus_rdp_accountant() -> None:
    from opacus.accountants import RDPAccountant

    q, sigma, steps, delta = 0.01, 1.1, 1000, 1e-5
    opacus_acc = RDPAccountant()
    opacus_acc.history = [(sigma, q, steps)]
    ours = PrivacyAccountant(PrivacyBudget(100.0, delta, discovery_delta_fraction=0.5))
    ours.spend_sgd("sgd", q, sigma, steps)
    # same analysis; our order grid is finer and wider, so never looser
    assert ours.epsilon_rdp() <= opacus_acc.get_epsilon(delta) + 1e-9
    assert ours.epsilon_rdp() == pytest.approx(opacus_acc.get_epsilon(delta), rel=0.02)
    # the release reports the PLD bound, which is tighter here
    assert ours.epsilon() < ours.epsilon_rdp() and ours.accountant_name == "pld"


def test_zcdp_rho_round_trips_to_the_target_epsilon() -> None:
    for eps in (0.3, 1.0, 3.0, 10.0):
        rho = zcdp_rho_for(eps, 1e-6)
        assert rdp_to_epsilon(rho * RDP_ORDERS, 1e-6) == pytest.approx(eps, rel=1e-6)


@pytest.mark.parametrize("eps", [0.5, 1.0, 3.0, 8.0])
def test_calibrated_noise_meets_target_after_preprocessing(eps: float) -> None:
    acc = PrivacyAccountant(PrivacyBudget(eps, 1e-6))
    acc.spend_gaussian("quantiles:x", acc.preprocessing_rho / 2)
    acc.spend_thresholded("categories:y", acc.preprocessing_rho / 2, acc.discovery_delta_per_column(1))
    q, steps = 0.02, 500
    sigma = acc.calibrate_noise_multiplier(q, steps)
    composed = acc.epsilon_with_sgd(q, sigma, steps)
    assert composed <= eps
    assert composed >= 0.99 * eps  # not wastefully loose
    # a little less noise would break the target
    assert acc.epsilon_with_sgd(q, sigma * 0.98, steps) > eps
    # the PLD accountant buys less noise than RDP alone would
    assert acc.epsilon_rdp(sgm_rdp(q, sigma, steps)) > eps
    acc.spend_sgd("sgd", q, sigma, steps)
    assert acc.epsilon() == pytest.approx(composed) and acc.to_dict()["accountant"] == "pld"


def test_additive_delta_is_part_of_the_release_delta() -> None:
    acc = PrivacyAccountant(PrivacyBudget(1.0, 1e-6))
    acc.spend_thresholded("categories:c", 0.001, 2e-7)
    assert acc.conversion_delta == pytest.approx(8e-7)
    assert acc.delta == 1e-6


def test_calibration_refuses_when_preprocessing_spent_everything() -> None:
    acc = PrivacyAccountant(PrivacyBudget(1.0, 1e-6))
    acc.spend_gaussian("too-much", 10.0)
    with pytest.raises(ParameterError, match="preprocessing already spent"):
        acc.calibrate_noise_multiplier(0.01, 100)


def test_rdp_curve_of_nothing_is_zero() -> None:
    assert rdp_to_epsilon(np.zeros_like(RDP_ORDERS), 1e-6) == 0.0


def test_parallel_composition_charges_the_worst_disjoint_member_not_the_sum() -> None:
    acc = PrivacyAccountant(PrivacyBudget(3.0, 1e-6))
    acc.spend_gaussian("quantiles:x", acc.preprocessing_rho)
    children = acc.fork(4)
    for child in children:
        sigma = child.calibrate_noise_multiplier(0.02, 500)
        child.spend_sgd("member", 0.02, sigma, 500)
        assert child.epsilon() <= 3.0
    acc.join_parallel("ensemble", children)
    # the release costs what one member cost (all four equal here), not four times as much
    assert acc.epsilon() == pytest.approx(children[0].epsilon(), rel=1e-9)
    assert acc.epsilon() <= 3.0
    sequential = PrivacyAccountant(PrivacyBudget(3.0, 1e-6))
    sequential.spends = list(children[0].spends) + children[1].spends[1:]
    assert sequential.epsilon() > 1.2 * acc.epsilon()


def test_the_vectorized_sgm_rdp_equals_opacus_compute_rdp() -> None:
    """sgm_rdp sums the same series as Opacus's compute_rdp (integer and fractional orders, low
    and high sampling rates), vectorized; curves and the ε they give agree."""
    from opacus.accountants.analysis.rdp import compute_rdp

    for q in (1e-4, 0.02, 0.25, 0.6, 1.0):
        for sigma in (0.5, 1.1, 5.0):
            for steps in (1, 1000):
                ours = sgm_rdp(q, sigma, steps)
                theirs = np.asarray(
                    compute_rdp(q=q, noise_multiplier=sigma, steps=steps, orders=RDP_ORDERS.tolist())
                )
                np.testing.assert_allclose(
                    ours, theirs, rtol=1e-8, atol=1e-10 * steps, err_msg=f"q={q} σ={sigma}"
                )
                assert rdp_to_epsilon(ours, 1e-5) == pytest.approx(rdp_to_epsilon(theirs, 1e-5), rel=1e-9)
    assert (sgm_rdp(0.0, 1.0, 10) == 0).all() and np.isinf(sgm_rdp(0.1, 0.0, 10)).all()
    assert (sgm_rdp(0.1, 1.0, 0) == 0).all()


def test_a_gaussian_release_is_charged_from_its_declared_sensitivity_and_draws_that_noise() -> None:
    acc = PrivacyAccountant(PrivacyBudget(3.0, 1e-6))
    rng = np.random.default_rng(0)
    values = np.zeros((200_000,))
    # a vector a row moves in 2 cells (Δ = √2) at σ = 2: ρ = 2 / (2·4) = 0.25
    noisy = acc.release_gaussian("pair", values, l2_sensitivity=math.sqrt(2), sigma=2.0, rng=rng)
    assert acc.spends[-1].details["rho"] == pytest.approx(0.25)
    assert np.std(noisy) == pytest.approx(2.0, rel=0.01)
    # the same charge asked as ρ gives the same σ
    acc.release_gaussian("pair-by-rho", values, l2_sensitivity=math.sqrt(2), rho=0.25, rng=rng)
    assert acc.spends[-1].details["sigma"] == pytest.approx(2.0)
    np.testing.assert_allclose(acc.spends[-1].rdp, 0.25 * RDP_ORDERS)
    with pytest.raises(ValueError, match="exactly one of rho and sigma"):
        acc.release_gaussian("both", values, l2_sensitivity=1.0, rho=0.1, sigma=1.0, rng=rng)
    with pytest.raises(ValueError, match="l2_sensitivity"):
        acc.release_gaussian("no-sensitivity", values, l2_sensitivity=0.0, rho=0.1, rng=rng)


def test_a_thresholded_release_hides_a_singleton_with_probability_delta_and_adds_delta() -> None:
    acc = PrivacyAccountant(PrivacyBudget(3.0, 1e-2))
    rng = np.random.default_rng(1)
    counts = np.ones(200_000)  # 200,000 keys each held by one row
    always = np.zeros(counts.size, dtype=bool)
    always[0] = True
    _, released = acc.release_thresholded("keys", counts, rho=0.5, delta=1e-3, rng=rng, always=always)
    assert released[0] and 0.5e-3 < released[1:].mean() < 1.5e-3
    assert acc.additive_delta == pytest.approx(1e-3)


def test_an_exponential_release_charges_eps_squared_over_8_and_follows_its_scores() -> None:
    acc = PrivacyAccountant(PrivacyBudget(3.0, 1e-6))
    rng = np.random.default_rng(2)
    picks = [
        acc.release_exponential("pick", np.array([0.0, 10.0]), epsilon=0.4, sensitivity=1.0, rng=rng)
        for _ in range(4_000)
    ]
    # P(1) = e^{0.2·10} / (1 + e^{0.2·10}) = 0.881
    assert np.mean(picks) == pytest.approx(0.881, abs=0.02)
    assert acc.spends[-1].details["rho"] == pytest.approx(0.4**2 / 8)
