"""Tight (ε, δ) for compositions of Gaussian and Poisson-subsampled Gaussian mechanisms.

RDP (``synth_core.privacy``) composes exactly but converts to (ε, δ) loosely: on q=0.01, σ=1,
1,000 steps, δ=1e-5 it gives ε=2.10 where the privacy loss distribution gives 1.84. This module
computes the privacy loss distribution (PLD) bound:

* **Gaussian parts** (every release of a vector with L2 sensitivity Δ and noise σ, and the Gaussian
  part of thresholded category discovery): a Gaussian mechanism is μ-GDP with μ = Δ/σ, and Gaussians
  compose exactly into one Gaussian with μ = sqrt(Σ μ_i²) (Dong, Roth & Su 2022, Cor. 3.3; with
  adaptively chosen σ_i under a fixed total as well: Smith & Thakurta 2022). Alone, its ε(δ) is
  the analytic Gaussian mechanism's (Balle & Wang 2018, Thm. 8), solved here by bisection and
  rounded up: exact, no discretisation.
* **Poisson-subsampled Gaussian parts** (DP-SGD: ``steps`` steps at rate q, noise multiplier σ):
  composed numerically with the privacy random variables of Gopi, Lee & Wutschitz 2021, as
  implemented in Opacus 1.6 (``opacus.accountants.analysis.prv``): the PLD of every part is
  discretised on one grid and convolved by FFT; Opacus's ``compute_epsilon`` returns an upper
  bound that already includes the stated discretisation/truncation error (``eps_error`` added,
  ``delta_error`` taken off δ; Gopi et al. Thm. 5.5). The Gaussian parts join as one component
  with q = 1 and noise multiplier 1/μ.
* **Both neighbouring directions.** Under add/remove-one-row, the subsampled Gaussian's loss
  differs for removing a row (mixture vs. base) and adding one (base vs. mixture). Opacus's PRV
  accountant computes only the first; here both are composed and the larger ε is reported. (The
  Gaussian's loss is symmetric.)

What is *not* composed here: the exponential mechanism (AIM's and MST's picks). A release
containing it is reported with RDP/zCDP alone (:class:`synth_core.privacy.PrivacyAccountant`
decides; it also takes the max over members of a parallel composition). Thresholded discovery's δ' stays additive:
outside an event of probability ≤ δ' (a key held by the differing row alone clears the
threshold) the release is post-processing of the Gaussian on the other keys, so the composed
hockey-stick divergence is at most the Gaussian composition's plus Σδ' (a coupling argument).

The parameters of the composed mechanisms (q from the DP row count, σ from calibration, steps from
the config) are fixed before DP-SGD runs and depend on private data only through earlier DP
releases; RDP, computed beside it as a cross-check and an upper bound, needs no such assumption
(RDP filters: Feldman & Zrnic 2021). The released ε is the smaller of the two upper bounds.
"""

from __future__ import annotations

import functools
import logging
import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

log = logging.getLogger(__name__)


@dataclass(frozen=True, order=True)
class SampledGaussian:
    """``steps`` compositions of a Gaussian mechanism with noise multiplier σ/Δ run on a Poisson
    sample at ``sample_rate`` (q = 1: a plain Gaussian release with L2 sensitivity Δ, noise σ)."""

    sample_rate: float
    noise_multiplier: float
    steps: int = 1

    def __post_init__(self) -> None:
        if not (0 < self.sample_rate <= 1):
            raise ValueError(f"sample_rate must be in (0, 1], got {self.sample_rate!r}")
        if not (math.isfinite(self.noise_multiplier) and self.noise_multiplier > 0):
            raise ValueError(f"noise_multiplier must be a finite number > 0, got {self.noise_multiplier!r}")
        if self.steps < 0:
            raise ValueError(f"steps must be >= 0, got {self.steps!r}")

    @classmethod
    def gaussian(cls, *, l2_sensitivity: float, sigma: float) -> SampledGaussian:
        """One Gaussian release of a vector with ``l2_sensitivity`` and noise std ``sigma``."""
        return cls(1.0, float(sigma) / float(l2_sensitivity), 1)

    @classmethod
    def at_rho(cls, rho: float) -> SampledGaussian:
        """The Gaussian release that costs ``rho`` zCDP: μ = sqrt(2ρ), noise multiplier 1/μ."""
        return cls(1.0, 1.0 / math.sqrt(2.0 * rho), 1)

    @property
    def mu_squared(self) -> float:
        """GDP μ² of the whole component (q = 1 only): steps / noise_multiplier²."""
        return self.steps / self.noise_multiplier**2


def merge(components: tuple[SampledGaussian, ...] | list[SampledGaussian]) -> tuple[SampledGaussian, ...]:
    """The same composition, canonical: every q = 1 part folded into one Gaussian with
    μ² = Σ μ_i² (exact), equal subsampled parts with their steps added, sorted."""
    mu2 = 0.0
    sampled: dict[tuple[float, float], int] = {}
    for c in components:
        if c.steps == 0:
            continue
        if c.sample_rate == 1.0:
            mu2 += c.mu_squared
        else:
            key = (c.sample_rate, c.noise_multiplier)
            sampled[key] = sampled.get(key, 0) + c.steps
    out = [SampledGaussian(q, s, k) for (q, s), k in sampled.items()]
    if mu2 > 0:
        out.append(SampledGaussian(1.0, 1.0 / math.sqrt(mu2), 1))
    return tuple(sorted(out))


def gaussian_delta(mu: float, epsilon: float) -> float:
    """δ(ε) of the μ-GDP Gaussian mechanism (Balle & Wang 2018, Thm. 8):
    ``Φ(-ε/μ + μ/2) - e^ε Φ(-ε/μ - μ/2)``, computed in log space."""
    from scipy.special import log_ndtr

    a = float(log_ndtr(-epsilon / mu + mu / 2))
    b = epsilon + float(log_ndtr(-epsilon / mu - mu / 2))
    if b >= a:
        return 0.0
    return math.exp(a) * -math.expm1(b - a)


def gaussian_epsilon(mu: float, delta: float) -> float:
    """Smallest ε (rounded up, to 1e-12 relative) with δ(ε) ≤ ``delta`` for the μ-GDP Gaussian."""
    if gaussian_delta(mu, 0.0) <= delta:
        return 0.0
    lo, hi = 0.0, max(1.0, mu * mu)
    while gaussian_delta(mu, hi) > delta:
        lo, hi = hi, 2.0 * hi
    while hi - lo > 1e-12 * hi:
        mid = (lo + hi) / 2
        if gaussian_delta(mu, mid) > delta:
            lo = mid
        else:
            hi = mid
    return hi


def gaussian_mu_for(epsilon: float, delta: float) -> float:
    """Largest μ (rounded down) whose Gaussian has ε(δ) ≤ ``epsilon``: ρ = μ²/2 is the zCDP cost
    that a release made of Gaussian parts only may spend to meet (``epsilon``, ``delta``)."""
    lo, hi = 0.0, 1.0
    while gaussian_delta(hi, epsilon) <= delta:
        lo, hi = hi, 2.0 * hi
    for _ in range(100):
        mid = (lo + hi) / 2
        if gaussian_delta(mid, epsilon) <= delta:
            lo = mid
        else:
            hi = mid
    return lo


class _AddDirectionPRV:
    """Privacy random variable of the Poisson-subsampled Gaussian when the neighbour *adds* a row:
    loss ``log(Q/P)(y)`` for y ~ Q = N(0, σ²), P = (1-q)N(0, σ²) + qN(1, σ²). With
    ``y(s) = σ² log((e^s - (1-q))/q) + 1/2`` (the y where the remove-direction loss equals s),
    ``P[L ≤ t] = P[y ≥ y(-t)] = Φ(-y(-t)/σ)`` for ``t < -log(1-q)``, and 1 above."""

    def __init__(self, sample_rate: float, noise_multiplier: float) -> None:
        self.sample_rate = sample_rate
        self.noise_multiplier = noise_multiplier

    def _y(self, s: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
        q, sigma = self.sample_rate, self.noise_multiplier
        inside = -s > 0 if q == 1.0 else s < -math.log1p(-q)
        arg = np.where(inside, (np.exp(-s) - (1 - q)) / q, 1.0)
        return sigma**2 * np.log(np.maximum(arg, 1e-300)) + 0.5, inside

    def cdf(self, t: Any) -> NDArray[np.float64]:
        from scipy.special import ndtr

        t = np.asarray(t, dtype=np.float64)
        y, inside = self._y(t)
        return np.asarray(np.where(inside, ndtr(-y / self.noise_multiplier), 1.0), dtype=np.float64)

    def pdf(self, t: Any) -> NDArray[np.float64]:
        q, sigma = self.sample_rate, self.noise_multiplier
        t = np.asarray(t, dtype=np.float64)
        y, inside = self._y(t)
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            dens = (
                np.exp(-0.5 * (y / sigma) ** 2)
                / math.sqrt(2 * math.pi)
                * sigma
                * np.exp(-t)
                / (np.exp(-t) - (1 - q))
            )
        return np.asarray(np.where(inside, dens, 0.0), dtype=np.float64)

    def rdp(self, alpha: float) -> float:
        from opacus.accountants.analysis.rdp import _compute_rdp

        return float(_compute_rdp(self.sample_rate, self.noise_multiplier, alpha))


def pld_eps_error(epsilon: float) -> float:
    """Discretisation error allowed in a PLD ε near ``epsilon`` (added to the bound): 0.5 % of it,
    at least 0.005, at most 0.02 (Opacus's default is 0.01)."""
    return min(0.02, max(0.005, 0.005 * float(epsilon)))


@functools.lru_cache(maxsize=4096)
def pld_epsilon(
    components: tuple[SampledGaussian, ...], delta: float, eps_error: float, *, directions: str = "both"
) -> float:
    """Upper bound on the ε at ``delta`` of the composition of ``components`` (see the module
    docstring), including the numerical error (at most ``eps_error`` in ε and δ/1000 in δ).
    ``directions``: ``"both"`` (the bound), or ``"remove"`` alone (the larger one in every case
    measured; only a search may use it, and must check its answer with ``"both"``).

    Only Gaussian parts: the analytic Gaussian's ε, exact. Otherwise Opacus's PRV composition in
    both directions; ``math.inf`` when the numerics cannot certify a bound (the caller then uses
    RDP).
    """
    parts = merge(components)
    if not parts:
        return 0.0
    if all(c.sample_rate == 1.0 for c in parts):
        return gaussian_epsilon(math.sqrt(sum(c.mu_squared for c in parts)), delta)
    try:
        remove = _prv_epsilon(parts, delta, eps_error, add=False)
        if directions == "remove":
            return remove
        return max(remove, _prv_epsilon(parts, delta, eps_error, add=True))
    except (RuntimeError, ValueError, FloatingPointError, ArithmeticError) as exc:
        log.warning("PLD accounting could not certify a bound (%s); the release uses RDP", exc)
        return math.inf


def _prv_epsilon(parts: tuple[SampledGaussian, ...], delta: float, eps_error: float, *, add: bool) -> float:
    """Gopi et al.'s numerical composition (Opacus's ``PRVAccountant._get_dprv``), for any PRVs."""
    from opacus.accountants.analysis.prv import (
        Domain,
        PoissonSubsampledGaussianPRV,
        TruncatedPrivacyRandomVariable,
        compose_heterogeneous,
        compute_safe_domain_size,
        discretize,
    )
    from scipy.fft import next_fast_len

    delta_error = delta / 1000.0
    prvs: list[Any] = [
        _AddDirectionPRV(c.sample_rate, c.noise_multiplier)
        if add and c.sample_rate < 1.0
        else PoissonSubsampledGaussianPRV(c.sample_rate, c.noise_multiplier)
        for c in parts
    ]
    steps = [c.steps for c in parts]
    with warnings.catch_warnings(), np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        warnings.simplefilter("ignore")
        half_width = compute_safe_domain_size(prvs, steps, eps_error=eps_error, delta_error=delta_error)
        mesh = eps_error / np.sqrt(sum(steps) * np.log(12 / delta_error) / 2)
        aligned = Domain.create_aligned(-half_width, half_width, mesh)
        # widen the (already safe) domain to a length the FFT handles fast: 2-5x less time
        # on both sides alike (the FFT composition assumes a domain centred like the aligned one)
        size = next_fast_len(aligned.size, real=True)
        while size % 2:
            size = next_fast_len(size + 1, real=True)
        pad = (size - aligned.size) // 2 * aligned.dt
        domain = Domain(
            aligned.t_min - pad, aligned.t_max + pad, aligned.size + 2 * ((size - aligned.size) // 2)
        )
        dprvs = [
            discretize(TruncatedPrivacyRandomVariable(p, domain.t_min, domain.t_max), domain) for p in prvs
        ]
        composed = compose_heterogeneous(dprvs=dprvs, num_self_compositions=steps)
        _, _, eps_upper = composed.compute_epsilon(delta, delta_error, eps_error)
    eps = float(eps_upper)
    if not math.isfinite(eps):
        raise ArithmeticError("non-finite PLD epsilon")
    return max(eps, 0.0)
