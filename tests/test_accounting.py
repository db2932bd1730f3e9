"""PLD accounting (synth_core.accounting): never below what is proven, never above RDP, and tighter."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm

from synth_core.accounting import (
    SampledGaussian,
    _AddDirectionPRV,
    _prv_epsilon,
    gaussian_delta,
    gaussian_epsilon,
    merge,
    pld_epsilon,
)
from synth_core.privacy import (
    PrivacyAccountant,
    PrivacyBudget,
    gaussian_rho_for,
    rdp_to_epsilon,
    sgm_rdp,
    zcdp_rho_for,
)


def _gaussian_delta_direct(mu: float, eps: float) -> float:
    """Balle & Wang 2018, Thm. 8, written with scipy's normal CDF as in the paper."""
    return float(norm.cdf(-eps / mu + mu / 2) - math.exp(eps) * norm.cdf(-eps / mu - mu / 2))


@pytest.mark.parametrize("mu", [0.05, 0.5, 1.0, 3.0])
def test_analytic_gaussian_epsilon_solves_balle_wang(mu: float) -> None:
    for delta in (1e-3, 1e-5, 1e-7):
        eps = gaussian_epsilon(mu, delta)
        assert _gaussian_delta_direct(mu, eps) <= delta * (1 + 1e-9)
        assert gaussian_delta(mu, eps * (1 - 1e-6)) > delta  # the smallest such ε, rounded up


def test_composed_gaussians_are_one_gaussian_with_sigma_over_sqrt_k() -> None:
    k, sigma = 25, 5.0
    parts = tuple(SampledGaussian.gaussian(l2_sensitivity=1.0, sigma=sigma) for _ in range(k))
    assert merge(parts) == (SampledGaussian(1.0, sigma / math.sqrt(k), 1),)
    exact = gaussian_epsilon(math.sqrt(k) / sigma, 1e-5)
    assert pld_epsilon(parts, 1e-5, 0.01) == pytest.approx(exact, rel=1e-9)


@pytest.mark.parametrize("sigma", [0.7, 2.0, 10.0])
def test_prv_numerics_upper_bound_the_exact_gaussian(sigma: float) -> None:
    """The numerical path (FFT, discretised) on a case with a closed form: 50 Gaussian steps with
    noise multiplier σ are one Gaussian with σ/√50. Its bound is never below the exact ε and at
    most eps_error above it."""
    steps, delta, err = 50, 1e-5, 0.01
    exact = gaussian_epsilon(math.sqrt(steps) / sigma, delta)
    numeric = _prv_epsilon((SampledGaussian(1.0, sigma, steps),), delta, err, add=False)
    assert exact <= numeric <= exact + 2 * err


def test_issue_example_rdp_2_10_and_pld_1_84() -> None:
    q, sigma, steps, delta = 0.01, 1.0, 1000, 1e-5
    rdp = rdp_to_epsilon(sgm_rdp(q, sigma, steps), delta)
    pld = pld_epsilon((SampledGaussian(q, sigma, steps),), delta, 0.01)
    assert rdp == pytest.approx(2.10, abs=0.01)
    assert pld == pytest.approx(1.84, abs=0.01)


@pytest.mark.parametrize("q", [0.005, 0.1])
@pytest.mark.parametrize("sigma", [0.8, 2.0])
@pytest.mark.parametrize("steps", [10, 1000])
def test_pld_never_above_rdp(q: float, sigma: float, steps: int) -> None:
    delta = 1e-5
    rdp = rdp_to_epsilon(sgm_rdp(q, sigma, steps), delta)
    pld = pld_epsilon((SampledGaussian(q, sigma, steps),), delta, 0.01)
    assert 0 < pld <= rdp
    # the single-step bound of a subsampled Gaussian is below the unsampled Gaussian's
    if steps == 10:
        assert pld <= gaussian_epsilon(math.sqrt(steps) / sigma, delta)


@pytest.mark.parametrize("q,sigma", [(0.01, 1.0), (0.3, 0.7), (0.9, 2.0)])
def test_add_direction_distribution_matches_sampling(q: float, sigma: float) -> None:
    """The add direction's loss log(Q/P)(y), y ~ N(0, σ²): the CDF matches a Monte Carlo sample and
    the PDF is the CDF's derivative."""
    prv = _AddDirectionPRV(q, sigma)
    rng = np.random.default_rng(0)
    y = rng.normal(0.0, sigma, 200_000)
    loss = -np.log(1 - q + q * np.exp((2 * y - 1) / (2 * sigma**2)))
    ts = np.quantile(loss, [0.01, 0.1, 0.5, 0.9, 0.99])
    np.testing.assert_allclose(prv.cdf(ts), [0.01, 0.1, 0.5, 0.9, 0.99], atol=0.005)
    h = 1e-6
    np.testing.assert_allclose(prv.pdf(ts), (prv.cdf(ts + h) - prv.cdf(ts - h)) / (2 * h), rtol=1e-3)
    assert prv.cdf(np.array([-math.log1p(-q) + 1e-9]))[0] == 1.0


def test_both_directions_are_composed_and_remove_dominates_here() -> None:
    parts = (SampledGaussian(0.02, 0.8, 500),)
    remove = _prv_epsilon(parts, 1e-5, 0.01, add=False)
    add = _prv_epsilon(parts, 1e-5, 0.01, add=True)
    assert add < remove
    assert pld_epsilon(parts, 1e-5, 0.01) == pytest.approx(max(add, remove))


def test_gaussian_rho_for_spends_more_than_zcdp_and_still_meets_the_target() -> None:
    for eps in (0.5, 1.0, 3.0):
        rho = gaussian_rho_for(eps, 1e-5)
        assert rho > zcdp_rho_for(eps, 1e-5)
        acc = PrivacyAccountant(PrivacyBudget(eps, 1e-5))
        acc.spend_gaussian("all", rho)
        assert acc.epsilon() <= eps * (1 + 1e-9) and acc.epsilon() == pytest.approx(eps, rel=1e-6)
        assert acc.epsilon_rdp() > eps and acc.accountant_name == "pld"


def test_release_records_the_accountant_and_falls_back_where_the_pld_does_not_apply() -> None:
    rng = np.random.default_rng(1)
    acc = PrivacyAccountant(PrivacyBudget(1.0, 1e-5))
    acc.release_gaussian("counts", np.zeros(4), l2_sensitivity=math.sqrt(2), rho=0.01, rng=rng)
    record = acc.to_dict()
    assert (
        record["accountant"] == "pld" and record["epsilon"] == record["epsilon_pld"] < record["epsilon_rdp"]
    )
    # an exponential-mechanism pick has no PLD here: the release reports zCDP, never less
    acc.release_exponential("pick", np.arange(3.0), epsilon=0.1, sensitivity=1.0, rng=rng)
    record = acc.to_dict()
    assert record["accountant"] == "zcdp" and record["epsilon_pld"] is None
    assert record["epsilon"] == record["epsilon_rdp"]


def test_parallel_children_cost_the_worst_member_under_the_pld() -> None:
    acc = PrivacyAccountant(PrivacyBudget(3.0, 1e-5))
    acc.spend_gaussian("quantiles", 0.01)
    children = acc.fork(2)
    children[0].spend_sgd("m", 0.02, 1.0, 100)
    children[1].spend_sgd("m", 0.02, 1.2, 100)
    acc.join_parallel("ensemble", children)
    branches = acc.pld_branches()
    assert acc.pld_parts() is None and branches is not None and len(branches) == 2
    assert acc.epsilon() == pytest.approx(max(c.epsilon() for c in children), rel=1e-12)
    assert acc.epsilon() == children[0].epsilon() < acc.epsilon_rdp() and acc.accountant_name == "pld"
    # a member with a part the PLD does not model: the whole release falls back to RDP/zCDP
    other = PrivacyAccountant(PrivacyBudget(3.0, 1e-5))
    kids = other.fork(2)
    kids[0].spend_sgd("m", 0.02, 1.0, 100)
    kids[1].release_exponential(
        "pick", np.arange(3.0), epsilon=0.1, sensitivity=1.0, rng=np.random.default_rng(0)
    )
    other.join_parallel("ensemble", kids)
    assert other.pld_branches() is None and other.epsilon() == other.epsilon_rdp()
    # equal members: one composition, the same ε as one member
    equal = PrivacyAccountant(PrivacyBudget(3.0, 1e-5))
    kids = equal.fork(2)
    for kid in kids:
        kid.spend_sgd("m", 0.02, 1.0, 100)
    equal.join_parallel("ensemble", kids)
    assert equal.pld_parts() == (SampledGaussian(0.02, 1.0, 100),)
    assert equal.epsilon() == pytest.approx(kids[0].epsilon())
