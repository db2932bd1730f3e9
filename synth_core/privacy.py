"""Privacy budget and accounting for one release.

Every mechanism that touches private rows in a release is recorded in one
:class:`PrivacyAccountant` and composed under Rényi DP (RDP):

* DP preprocessing (noisy histograms for quantiles, ranges, category discovery) uses the Gaussian
  mechanism, which is ρ-zCDP: its RDP curve is ``ρ·α`` at every order α.
* Category discovery over an unknown domain thresholds noisy counts; that is (ρ, δ')-approximate
  zCDP: the ρ composes like above and δ' adds to the release's δ.
* DP-SGD (Opacus, Poisson sampling) is the sampled Gaussian mechanism, whose RDP curve Opacus
  computes (``opacus.accountants.analysis.rdp``).

RDP curves add up; the sum is converted once to (ε, δ) with the conversion of Balle et al. 2020
(the one Opacus's RDP accountant uses). Beside it, every Gaussian and subsampled-Gaussian part is
composed with its privacy loss distribution (:mod:`synth_core.accounting`: exact for Gaussians,
numerically with a stated pessimistic error for DP-SGD), which is tighter. The release reports the
smaller of the two upper bounds and which accountant produced it (``accountant``: ``"pld"``,
``"rdp"``, or ``"zcdp"`` when every part is zCDP); a release with a part the PLD does not model
(the exponential mechanism) reports RDP/zCDP. Parallel members (disjoint rows) cost, under the
PLD, the largest ε over members of the composition with that member.

The budget split: the target (ε, δ) is turned into the zCDP ρ that alone would reach it; a
``preprocessing_fraction`` of that ρ is offered to preprocessing, and DP-SGD's noise multiplier is
then calibrated so that the *composed* ε of everything actually spent meets the target.
"""

from __future__ import annotations

import contextlib
import math
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from synth_core.accounting import SampledGaussian, gaussian_mu_for, merge, pld_eps_error, pld_epsilon
from synth_core.errors import ParameterError

#: RDP orders: a superset of Opacus's defaults (finer below 11, larger ones for large ε and few steps).
RDP_ORDERS: NDArray[np.float64] = np.array(
    [1.0 + x / 20.0 for x in range(1, 200)]
    + [float(a) for a in range(11, 64)]
    + [80.0, 128.0, 256.0, 512.0, 1024.0],
    dtype=np.float64,
)


def secret_seed() -> int:
    """A 63-bit seed from the OS CSPRNG for privacy-protecting randomness (noise, Poisson sampling).

    Never derive such randomness from a user seed: a seed in a DAG file is public, and noise
    computed from it could be subtracted from the release.

    Inside :func:`shared_secret_seeds` (multi-process DP training: every worker must run the same
    DP preprocessing, so that it is released once and not once per worker), the seeds come from a
    stream keyed by a secret that the workers share: SHA-256 of the key and a counter.
    """
    if _SHARED_SEEDS:
        return _SHARED_SEEDS[-1].next()
    return secrets.randbits(63)


def local_secret_seed() -> int:
    """A 63-bit seed from this process's OS CSPRNG, never from a shared stream (per-worker
    randomness such as a worker's own Poisson sampling of its share of the rows)."""
    return secrets.randbits(63)


class _SeedStream:
    """63-bit seeds from SHA-256(key || counter): a counter-mode DRBG over a secret key."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ParameterError("a shared seed key must hold at least 256 bits")
        self._key = bytes(key)
        self._counter = 0

    def next(self) -> int:
        import hashlib

        self._counter += 1
        digest = hashlib.sha256(self._key + self._counter.to_bytes(8, "big")).digest()
        return int.from_bytes(digest[:8], "big") >> 1


_SHARED_SEEDS: list[_SeedStream] = []


@contextlib.contextmanager
def shared_secret_seeds(key: bytes) -> Iterator[None]:
    """Within the block, :func:`secret_seed` returns the same sequence in every process holding
    ``key`` (a secret of at least 256 bits drawn from the OS CSPRNG by one worker and sent to the
    others, never logged or stored)."""
    _SHARED_SEEDS.append(_SeedStream(key))
    try:
        yield
    finally:
        _SHARED_SEEDS.pop()


@dataclass(frozen=True)
class PrivacyBudget:
    """Target (ε, δ) of one release, and how it is split.

    Attributes:
        epsilon: target ε of the release (> 0, finite).
        delta: target δ of the release (0 < δ < 1); choose δ well below 1/rows.
        preprocessing_fraction: share of the budget (as zCDP ρ) offered to DP preprocessing:
            bounds, quantiles and category domains not declared public.
        discovery_delta_fraction: share of δ spent by thresholded category discovery (when some
            category domain is not public); the rest of δ is for the RDP→(ε, δ) conversion.
    """

    epsilon: float
    delta: float
    preprocessing_fraction: float = 0.1
    discovery_delta_fraction: float = 0.1

    def __post_init__(self) -> None:
        eps, delta = float(self.epsilon), float(self.delta)
        if not math.isfinite(eps) or eps <= 0:
            raise ParameterError(f"epsilon must be a finite number > 0, got {self.epsilon!r}")
        if not (0 < delta < 1):
            raise ParameterError(f"delta must be in (0, 1), got {self.delta!r}")
        if not (0 < self.preprocessing_fraction < 1):
            raise ParameterError(
                f"preprocessing_fraction must be in (0, 1), got {self.preprocessing_fraction!r}"
            )
        if not (0 < self.discovery_delta_fraction < 1):
            raise ParameterError(
                f"discovery_delta_fraction must be in (0, 1), got {self.discovery_delta_fraction!r}"
            )
        object.__setattr__(self, "epsilon", eps)
        object.__setattr__(self, "delta", delta)

    def to_dict(self) -> dict[str, float]:
        return {
            "epsilon": self.epsilon,
            "delta": self.delta,
            "preprocessing_fraction": self.preprocessing_fraction,
            "discovery_delta_fraction": self.discovery_delta_fraction,
        }


def rdp_to_epsilon(rdp: NDArray[np.float64], delta: float) -> float:
    """Smallest ε over :data:`RDP_ORDERS` for an RDP curve ``rdp`` (same length) at ``delta``."""
    from opacus.accountants.analysis.rdp import get_privacy_spent

    if not np.any(rdp > 0):
        return 0.0
    eps, _ = get_privacy_spent(orders=RDP_ORDERS.tolist(), rdp=rdp.tolist(), delta=delta)
    return float(eps)


def sgm_rdp(sample_rate: float, noise_multiplier: float, steps: int) -> NDArray[np.float64]:
    """RDP curve of ``steps`` Poisson-sampled Gaussian steps (DP-SGD) over :data:`RDP_ORDERS`.

    The sampled Gaussian mechanism's RDP of Mironov, Talwar & Zhang (2019, §3.3), the formulas of
    Opacus's ``compute_rdp`` (equal to it within 1e-8 relative or 1e-10 per step absolute, the
    ε they give within 1e-9 relative: tested), with the series of all orders summed as NumPy
    arrays instead of term by term in Python. Noise calibration evaluates this curve ~45 times:
    2.0 / 5.1 / 29.5 s per calibration at q = 0.07 / 0.25 / 0.5 with Opacus's loop, 0.22 / 0.51 /
    2.5 s with this (``benchmarks/loader_and_calibration.py``, one loaded CPU core).
    """
    if steps <= 0:
        return np.zeros_like(RDP_ORDERS)
    q, sigma = float(sample_rate), float(noise_multiplier)
    if q == 0:
        return np.zeros_like(RDP_ORDERS)
    if sigma == 0:
        return np.full_like(RDP_ORDERS, np.inf)
    if q == 1.0:
        return RDP_ORDERS / (2 * sigma**2) * steps
    integer = np.array([float(a).is_integer() for a in RDP_ORDERS])
    log_a = np.empty_like(RDP_ORDERS)
    log_a[integer] = _sgm_log_a_int(q, sigma, RDP_ORDERS[integer])
    log_a[~integer] = _sgm_log_a_frac(q, sigma, RDP_ORDERS[~integer])
    return log_a / (RDP_ORDERS - 1) * steps


def _sgm_log_a_int(q: float, sigma: float, alphas: NDArray[np.float64]) -> NDArray[np.float64]:
    """``log A_α`` for integer orders: finite binomial sums in log space, one row per order."""
    from scipy.special import gammaln, logsumexp

    a = alphas[:, None]
    i = np.arange(int(alphas.max()) + 1, dtype=np.float64)[None, :]
    inside = i <= a
    log_coef = gammaln(a + 1) - gammaln(i + 1) - gammaln(np.where(inside, a - i, 0.0) + 1)
    terms = log_coef + i * np.log(q) + (a - i) * np.log1p(-q) + (i * i - i) / (2 * sigma**2)
    return np.asarray(logsumexp(np.where(inside, terms, -np.inf), axis=1), dtype=np.float64)


def _sgm_log_a_frac(q: float, sigma: float, alphas: NDArray[np.float64]) -> NDArray[np.float64]:
    """``log A_α`` for fractional orders: two alternating series per order, each summed up to and
    including its first term below e^-30 (Opacus's stopping rule). Orders whose series has not
    reached that term yet are recomputed with twice the terms (small orders at high sampling
    rates need thousands)."""
    from scipy.special import binom, log_ndtr

    z0 = sigma**2 * np.log(1 / q - 1) + 0.5
    out = np.empty_like(alphas)
    todo = np.arange(len(alphas))
    n = 64
    while todo.size:
        a = alphas[todo][:, None]
        i = np.arange(n, dtype=np.float64)[None, :]
        coef = binom(a, i)
        with np.errstate(divide="ignore"):
            log_coef = np.log(np.abs(coef))
        j = a - i
        # log(0.5 · erfc(x / (√2 σ))) = log_ndtr(-x / σ)
        log_s0 = (
            log_coef
            + i * np.log(q)
            + j * np.log1p(-q)
            + (i * i - i) / (2 * sigma**2)
            + log_ndtr((z0 - i) / sigma)
        )
        log_s1 = (
            log_coef
            + j * np.log(q)
            + i * np.log1p(-q)
            + (j * j - j) / (2 * sigma**2)
            + log_ndtr((j - z0) / sigma)
        )
        small = np.maximum(log_s0, log_s1) < -30
        done = small.any(axis=1)
        keep = i <= np.argmax(small, axis=1)[:, None]  # up to the first small term, included
        sign = np.sign(coef)
        parts = []
        for log_s in (log_s0[done], log_s1[done]):
            peak = np.max(np.where(keep[done], log_s, -np.inf), axis=1, keepdims=True)
            total = np.sum(np.where(keep[done], sign[done] * np.exp(log_s - peak), 0.0), axis=1)
            if not (total > 0).all():
                raise ArithmeticError("the sampled Gaussian RDP series summed to a non-positive value")
            parts.append(peak[:, 0] + np.log(total))
        out[todo[done]] = np.logaddexp(parts[0], parts[1])
        todo = todo[~done]
        n *= 2
    return out


def _sgd_parts(sample_rate: float, noise_multiplier: float, steps: int) -> tuple[SampledGaussian, ...] | None:
    """DP-SGD's part for the PLD accountant (none when nothing ran; ``None`` when σ = 0: not DP)."""
    if steps <= 0 or sample_rate <= 0:
        return ()
    if not (math.isfinite(noise_multiplier) and noise_multiplier > 0):
        return None
    return (SampledGaussian(float(sample_rate), float(noise_multiplier), int(steps)),)


def gaussian_rho_for(epsilon: float, delta: float) -> float:
    """The zCDP ρ = μ²/2 of the Gaussian whose exact ε at ``delta`` is ``epsilon`` (Balle & Wang
    2018): what a release made of Gaussian parts alone may spend under the PLD accountant. Larger
    than :func:`zcdp_rho_for`, which converts through RDP (ε=1, δ=1e-5: tested)."""
    return gaussian_mu_for(epsilon, delta) ** 2 / 2.0


def zcdp_rho_for(epsilon: float, delta: float) -> float:
    """The ρ whose ρ-zCDP converts (with :func:`rdp_to_epsilon`) to exactly ``epsilon`` at ``delta``."""
    lo, hi = 0.0, max(1.0, epsilon)
    while rdp_to_epsilon(hi * RDP_ORDERS, delta) < epsilon:
        hi *= 2.0
    for _ in range(80):
        mid = (lo + hi) / 2
        if rdp_to_epsilon(mid * RDP_ORDERS, delta) <= epsilon:
            lo = mid
        else:
            hi = mid
    return lo


@dataclass(frozen=True)
class GaussianRelease:
    """Declaration of one Gaussian release: a vector whose L2 sensitivity under adding or removing
    one row is ``l2_sensitivity``, released with independent noise of standard deviation ``sigma``
    on every coordinate. It costs ``ρ = Δ² / (2σ²)`` (zCDP), and :meth:`noised` draws exactly that
    noise: the charge and the noise come from the same two numbers.

    Every count released together (a histogram and its NULL cell, the 1-way marginals of all
    columns) is *one* vector with *one* declared sensitivity: a row that moves ``k`` coordinates by
    1 gives ``Δ = √k``. A second count released beside a histogram is a second release (charged),
    or a coordinate of the same vector (its Δ counts it).
    """

    name: str
    l2_sensitivity: float
    sigma: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.l2_sensitivity) and self.l2_sensitivity > 0):
            raise ValueError(f"{self.name}: l2_sensitivity must be a finite number > 0")
        if not (math.isfinite(self.sigma) and self.sigma > 0):
            raise ValueError(f"{self.name}: sigma must be a finite number > 0")

    @classmethod
    def at_rho(cls, name: str, *, l2_sensitivity: float, rho: float) -> GaussianRelease:
        """The release of ``name`` that costs ``rho``: ``σ = Δ / sqrt(2ρ)``."""
        if not (math.isfinite(rho) and rho > 0):
            raise ValueError(f"{name}: rho must be a finite number > 0")
        return cls(name, float(l2_sensitivity), float(l2_sensitivity) / math.sqrt(2.0 * rho))

    @property
    def rho(self) -> float:
        """zCDP cost ``Δ² / (2σ²)``."""
        return self.l2_sensitivity**2 / (2.0 * self.sigma**2)

    def noised(self, values: NDArray[Any], rng: np.random.Generator) -> NDArray[np.float64]:
        """``values`` (any shape; leading axes may be independent runs) plus N(0, σ²) noise."""
        values = np.asarray(values, dtype=np.float64)
        return values + rng.normal(0.0, self.sigma, size=values.shape)


@dataclass(frozen=True)
class ThresholdedRelease:
    """Declaration of a thresholded Gaussian release over keys found in the data (category
    discovery): every row adds 1 to exactly one key's count (L2 sensitivity 1), a key is released
    only when its noisy count clears :attr:`threshold`, except the public keys marked ``always``
    (e.g. NULL), which are always released. A key held by one row only (new in a neighbour)
    clears the threshold with probability ≤ ``delta``: (ρ, δ)-approximate zCDP with
    ``ρ = 1 / (2σ²)``."""

    name: str
    rho: float
    delta: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.rho) and self.rho > 0):
            raise ValueError(f"{self.name}: rho must be a finite number > 0")
        if not (0 < self.delta < 1):
            raise ValueError(f"{self.name}: delta must be in (0, 1)")

    @property
    def sigma(self) -> float:
        return 1.0 / math.sqrt(2.0 * self.rho)

    @property
    def threshold(self) -> float:
        """A count of 1 plus noise clears it with probability exactly ``delta``."""
        from scipy.stats import norm

        return 1.0 + self.sigma * float(norm.isf(self.delta))

    def noised(
        self, counts: NDArray[Any], always: NDArray[np.bool_], rng: np.random.Generator
    ) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
        """Noisy counts (any shape; leading axes may be runs) and which keys are released."""
        noisy = GaussianRelease(self.name, 1.0, self.sigma).noised(counts, rng)
        return noisy, (noisy > self.threshold) | np.asarray(always, dtype=bool)


@dataclass(frozen=True)
class ExponentialRelease:
    """Declaration of one exponential-mechanism pick: index ``i`` with probability ∝
    ``exp(ε·score_i / (2·sensitivity))``, where ``sensitivity`` bounds how much one row moves any
    score. ε-DP, charged as its bounded-range zCDP ``ρ = ε² / 8`` (Cesar & Rogers 2021)."""

    name: str
    epsilon: float
    sensitivity: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.epsilon) and self.epsilon > 0):
            raise ValueError(f"{self.name}: epsilon must be a finite number > 0")
        if not (math.isfinite(self.sensitivity) and self.sensitivity > 0):
            raise ValueError(f"{self.name}: sensitivity must be a finite number > 0")

    @property
    def rho(self) -> float:
        return self.epsilon**2 / 8.0

    def probabilities(self, scores: NDArray[Any]) -> NDArray[np.float64]:
        """The pick's distribution over the candidates (last axis)."""
        from scipy.special import logsumexp

        logits = 0.5 * self.epsilon / self.sensitivity * np.asarray(scores, dtype=np.float64)
        probs = np.exp(logits - logsumexp(logits, axis=-1, keepdims=True))
        return np.asarray(probs / probs.sum(axis=-1, keepdims=True), dtype=np.float64)

    def pick(self, scores: NDArray[Any], rng: np.random.Generator) -> int:
        probs = self.probabilities(scores)
        return int(rng.choice(probs.size, p=probs))


@dataclass(frozen=True)
class MechanismSpend:
    """One mechanism's cost: an RDP curve over :data:`RDP_ORDERS` plus an additive δ, and, when it
    is made of Gaussian / subsampled-Gaussian parts, those parts for the PLD accountant (``None``:
    not modelled there, the release falls back to RDP)."""

    name: str
    rdp: NDArray[np.float64]
    delta: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)
    pld: tuple[SampledGaussian, ...] | None = None
    #: parallel composition (:meth:`PrivacyAccountant.join_parallel`): each member's parts; the
    #: differing row is in one member's rows, so the release's PLD ε is the max over members
    pld_members: tuple[tuple[SampledGaussian, ...], ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "additive_delta": self.delta, **self.details}
        return out


class PrivacyAccountant:
    """Composes every private access of one release and reports one (ε, δ).

    Usage: every DP quantity drawn from the rows is released through :meth:`release_gaussian`,
    :meth:`release_thresholded` or :meth:`release_exponential` (or declared first with
    :meth:`declare_gaussian` when its noise is drawn later): each takes the released vector's
    sensitivity, charges from it, and draws the noise itself, so noise and charge cannot disagree
    and no count rides on another's charge. Training calls :meth:`calibrate_noise_multiplier`
    and then :meth:`spend_sgd` (Opacus draws DP-SGD's noise). :meth:`epsilon` is the composed ε at
    the release δ; it never exceeds the target once calibration was used.
    """

    def __init__(self, budget: PrivacyBudget) -> None:
        self.budget = budget
        self.spends: list[MechanismSpend] = []
        # a share of the RDP-converted ρ (not of the larger :func:`gaussian_rho_for`): releases whose
        # other parts are composed in zCDP (AIM's and MST's picks) would otherwise lose budget to
        # preprocessing; under the PLD the gain goes to DP-SGD's noise, preprocessing is unchanged
        self.preprocessing_rho = budget.preprocessing_fraction * zcdp_rho_for(budget.epsilon, budget.delta)

    # -- releases: declared sensitivity → charge → noise ------------------------------------------
    def declare_gaussian(
        self,
        name: str,
        *,
        l2_sensitivity: float,
        rho: float | None = None,
        sigma: float | None = None,
        **details: Any,
    ) -> GaussianRelease:
        """Charge one Gaussian release of a vector with ``l2_sensitivity`` at ``rho`` (σ follows) or
        at ``sigma`` (ρ follows), and return it; draw its noise with :meth:`GaussianRelease.noised`
        (for a release whose values exist only later, e.g. after training)."""
        if (rho is None) == (sigma is None):
            raise ValueError(f"{name}: give exactly one of rho and sigma")
        release = (
            GaussianRelease.at_rho(name, l2_sensitivity=l2_sensitivity, rho=rho)
            if rho is not None
            else GaussianRelease(name, float(l2_sensitivity), float(sigma))  # type: ignore[arg-type]
        )
        self._record(
            name,
            release.rho,
            0.0,
            {"mechanism": "gaussian", "l2_sensitivity": release.l2_sensitivity, "sigma": release.sigma},
            details,
            pld=(SampledGaussian.gaussian(l2_sensitivity=release.l2_sensitivity, sigma=release.sigma),),
        )
        return release

    def release_gaussian(
        self,
        name: str,
        values: NDArray[Any],
        *,
        l2_sensitivity: float,
        rng: np.random.Generator,
        rho: float | None = None,
        sigma: float | None = None,
        **details: Any,
    ) -> NDArray[np.float64]:
        """Release ``values`` (a vector whose L2 sensitivity under adding/removing one row is
        ``l2_sensitivity``) with Gaussian noise, charged ``Δ²/(2σ²)``; returns the noisy vector."""
        values = np.asarray(values, dtype=np.float64)
        release = self.declare_gaussian(
            name, l2_sensitivity=l2_sensitivity, rho=rho, sigma=sigma, size=int(values.size), **details
        )
        return self._draw_gaussian(release, values, rng)

    def release_thresholded(
        self,
        name: str,
        counts: NDArray[Any],
        *,
        rho: float,
        delta: float,
        rng: np.random.Generator,
        always: NDArray[np.bool_] | None = None,
        **details: Any,
    ) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
        """Release the keys of ``counts`` (one count per key found in the data, every row in exactly
        one) whose noisy count clears the threshold, and the keys marked ``always`` (public keys
        such as NULL) regardless: (ρ, δ)-approximate zCDP. Returns (noisy counts, released mask);
        only the masked entries may leave the caller."""
        counts = np.asarray(counts, dtype=np.float64)
        always_mask = np.zeros(counts.shape, dtype=bool) if always is None else np.asarray(always, dtype=bool)
        release = ThresholdedRelease(name, float(rho), float(delta))
        self._record(
            name,
            release.rho,
            release.delta,
            {"mechanism": "thresholded-gaussian", "l2_sensitivity": 1.0, "sigma": release.sigma},
            details,
            # outside the δ event it is the Gaussian on the other keys: δ stays additive
            pld=(SampledGaussian.gaussian(l2_sensitivity=1.0, sigma=release.sigma),),
        )
        return self._draw_thresholded(release, counts, always_mask, rng)

    def release_exponential(
        self,
        name: str,
        scores: NDArray[Any],
        *,
        epsilon: float,
        sensitivity: float,
        rng: np.random.Generator,
        **details: Any,
    ) -> int:
        """Pick one index of ``scores`` with the exponential mechanism (``sensitivity``: the most
        one row moves any score); charged ε²/8 zCDP. Returns the index."""
        release = ExponentialRelease(name, float(epsilon), float(sensitivity))
        self._record(
            name,
            release.rho,
            0.0,
            {"mechanism": "exponential", "epsilon": release.epsilon, "sensitivity": release.sensitivity},
            details,
        )
        return self._draw_exponential(release, np.asarray(scores, dtype=np.float64), rng)

    # the draws, one method each so an audit can record them (synth_core.privacy_audit)
    def _draw_gaussian(
        self, release: GaussianRelease, values: NDArray[np.float64], rng: np.random.Generator
    ) -> NDArray[np.float64]:
        return release.noised(values, rng)

    def _draw_thresholded(
        self,
        release: ThresholdedRelease,
        counts: NDArray[np.float64],
        always: NDArray[np.bool_],
        rng: np.random.Generator,
    ) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
        return release.noised(counts, always, rng)

    def _draw_exponential(
        self, release: ExponentialRelease, scores: NDArray[np.float64], rng: np.random.Generator
    ) -> int:
        return release.pick(scores, rng)

    def _record(
        self,
        name: str,
        rho: float,
        delta: float,
        declared: dict[str, Any],
        details: dict[str, Any],
        pld: tuple[SampledGaussian, ...] | None = None,
    ) -> None:
        """Record a zCDP spend; ``pld``: its Gaussian parts (``None``: not a Gaussian, e.g. the
        exponential mechanism, composed in zCDP only)."""
        if not (math.isfinite(rho) and rho >= 0):
            raise ValueError(f"{name}: rho must be a finite number >= 0")
        self.spends.append(
            MechanismSpend(name, rho * RDP_ORDERS, delta, {"rho": rho, **declared, **details}, pld)
        )

    # -- recording spends whose noise is drawn elsewhere ---------------------------------------
    def spend_gaussian(self, name: str, rho: float, **details: Any) -> None:
        """Record a ρ-zCDP Gaussian mechanism whose noise the caller draws (prefer
        :meth:`declare_gaussian`, which returns the noise with the charge)."""
        if rho < 0:
            raise ValueError("rho must be >= 0")
        pld = (SampledGaussian.at_rho(rho),) if rho > 0 else ()
        self.spends.append(MechanismSpend(name, rho * RDP_ORDERS, 0.0, {"rho": rho, **details}, pld))

    def spend_thresholded(self, name: str, rho: float, delta: float, **details: Any) -> None:
        """Record a (ρ, δ)-approximate zCDP mechanism whose noise the caller draws (prefer
        :meth:`release_thresholded`)."""
        pld = (SampledGaussian.at_rho(rho),) if rho > 0 else ()
        self.spends.append(MechanismSpend(name, rho * RDP_ORDERS, delta, {"rho": rho, **details}, pld))

    def spend_sgd(
        self, name: str, sample_rate: float, noise_multiplier: float, steps: int, **details: Any
    ) -> None:
        """Record DP-SGD: ``steps`` steps with Poisson ``sample_rate`` and ``noise_multiplier``."""
        self.spends.append(
            MechanismSpend(
                name,
                sgm_rdp(sample_rate, noise_multiplier, steps),
                0.0,
                {"sample_rate": sample_rate, "noise_multiplier": noise_multiplier, "steps": steps, **details},
                _sgd_parts(sample_rate, noise_multiplier, steps),
            )
        )

    # -- queries ---------------------------------------------------------------------------------
    @property
    def additive_delta(self) -> float:
        return float(sum(s.delta for s in self.spends))

    @property
    def conversion_delta(self) -> float:
        """δ left for the RDP→(ε, δ) conversion once additive δ's are taken."""
        return self.budget.delta - self.additive_delta

    def total_rdp(self, extra: NDArray[np.float64] | None = None) -> NDArray[np.float64]:
        total = np.zeros_like(RDP_ORDERS)
        for s in self.spends:
            total = total + s.rdp
        if extra is not None:
            total = total + extra
        return total

    def epsilon(self, extra: NDArray[np.float64] | None = None) -> float:
        """The release's ε: the smaller of the PLD and the RDP upper bounds of everything recorded.

        With a hypothetical ``extra`` RDP curve (callers searching a ρ to spend next), the RDP
        bound of everything plus ``extra``: an arbitrary curve has no PLD, and RDP is a valid
        upper bound. Use :meth:`epsilon_with_sgd` for a hypothetical DP-SGD part.
        """
        if extra is not None:
            return self.epsilon_rdp(extra)
        return min(self.epsilon_rdp(), self.epsilon_pld())

    def epsilon_rdp(self, extra: NDArray[np.float64] | None = None) -> float:
        """Composed ε under RDP (Balle et al. 2020 conversion) at the conversion δ."""
        if self.conversion_delta <= 0:
            return math.inf
        return rdp_to_epsilon(self.total_rdp(extra), self.conversion_delta)

    def pld_branches(self) -> list[tuple[SampledGaussian, ...]] | None:
        """The compositions whose PLD ε's maximum is the release's: one per choice of member in
        each parallel spend (one branch without any); ``None`` when some spend is not modelled."""
        branches: list[tuple[SampledGaussian, ...]] = [()]
        for s in self.spends:
            if s.pld is not None:
                branches = [b + s.pld for b in branches]
            elif s.pld_members is not None:
                branches = [b + m for b in branches for m in dict.fromkeys(s.pld_members)]
            else:
                return None
        return list(dict.fromkeys(merge(b) for b in branches))

    def pld_parts(self) -> tuple[SampledGaussian, ...] | None:
        """Every spend's Gaussian/subsampled-Gaussian parts, merged, when they form one
        composition; ``None`` when a spend is not modelled or parallel members differ."""
        branches = self.pld_branches()
        return branches[0] if branches is not None and len(branches) == 1 else None

    def epsilon_pld(self, extra: tuple[SampledGaussian, ...] = (), *, directions: str = "both") -> float:
        """Composed ε under the PLD accountant (:mod:`synth_core.accounting`, discretisation error
        included) of everything recorded plus ``extra``; ``inf`` when a spend is not modelled."""
        branches = self.pld_branches()
        if branches is None or self.conversion_delta <= 0:
            return math.inf
        return max(
            pld_epsilon(
                merge(b + tuple(extra)), self.conversion_delta, self.pld_eps_error, directions=directions
            )
            for b in branches
        )

    @property
    def pld_eps_error(self) -> float:
        """Numerical error allowed in PLD ε (depends on the target only: calibration and the
        final report compute the same bound)."""
        return pld_eps_error(self.budget.epsilon)

    def epsilon_with_sgd(self, sample_rate: float, noise_multiplier: float, steps: int) -> float:
        """The release's ε if DP-SGD with these parameters were recorded next."""
        extra = sgm_rdp(sample_rate, noise_multiplier, steps)
        parts = _sgd_parts(sample_rate, noise_multiplier, steps)
        pld = math.inf if parts is None else self.epsilon_pld(parts)
        return min(self.epsilon_rdp(extra), pld)

    @property
    def accountant_name(self) -> str:
        """Which accountant gives :meth:`epsilon`: ``"pld"``, or ``"zcdp"`` / ``"rdp"`` when the
        RDP bound is the smaller (``"zcdp"``: every spend is a zCDP curve ρ·α)."""
        if self.spends and self.epsilon_pld() < self.epsilon_rdp():
            return "pld"
        zcdp = all(np.allclose(s.rdp, s.rdp[0] / RDP_ORDERS[0] * RDP_ORDERS) for s in self.spends)
        return "zcdp" if zcdp else "rdp"

    @property
    def delta(self) -> float:
        """δ of the release: the budget's δ when anything was spent."""
        return self.budget.delta if self.spends else 0.0

    def discovery_delta_per_column(self, n_columns: int) -> float:
        return self.budget.delta * self.budget.discovery_delta_fraction / max(n_columns, 1)

    def calibrate_noise_multiplier(
        self, sample_rate: float, steps: int, *, epsilon: float | None = None
    ) -> float:
        """Smallest DP-SGD noise multiplier σ such that the composed ε stays ≤ the target.

        Raises:
            ParameterError: the preprocessing already spent the whole target.
        """
        target = self.budget.epsilon if epsilon is None else epsilon
        if self.epsilon() >= target:
            raise ParameterError(
                f"preprocessing already spent ε={self.epsilon():.4f} of the target epsilon={target}: "
                "declare more bounds/domains public or lower preprocessing_fraction"
            )
        # RDP first (fast, vectorised): its σ meets the target under RDP, hence under min(PLD, RDP)
        lo, hi = 0.05, 1.0
        while self.epsilon_rdp(sgm_rdp(sample_rate, hi, steps)) > target:
            hi *= 2.0
            if hi > 1e4:
                raise ParameterError(f"no noise multiplier reaches epsilon={target} with {steps} steps")
        for _ in range(40):
            mid = (lo + hi) / 2
            if self.epsilon_rdp(sgm_rdp(sample_rate, mid, steps)) > target:
                lo = mid
            else:
                hi = mid
        return self._calibrate_pld(sample_rate, steps, target, hi)

    def _calibrate_pld(self, sample_rate: float, steps: int, target: float, sigma_rdp: float) -> float:
        """Lower ``sigma_rdp`` while the PLD bound (error included) stays ≤ ``target``: a
        bisection in [0.7·σ_RDP, σ_RDP] on the remove direction (≤ 11 evaluations, 0.06 % of σ apart
        at the end; the gain over RDP is below 30 % of σ in the regimes measured,
        ``benchmarks/results/accounting.json``), then the answer is checked with both directions
        (falling back to σ_RDP if that fails). Returns ``sigma_rdp`` when the PLD does not apply."""
        if self.pld_branches() is None or sample_rate <= 0 or steps <= 0:
            return sigma_rdp

        def ok(sigma: float, directions: str = "remove") -> bool:
            part = (SampledGaussian(float(sample_rate), sigma, int(steps)),)
            return self.epsilon_pld(part, directions=directions) <= target

        lo, hi = 0.7 * sigma_rdp, sigma_rdp
        if ok(lo):
            hi = lo
        elif ok(hi):
            for _ in range(9):
                mid = (lo + hi) / 2
                if ok(mid):
                    hi = mid
                else:
                    lo = mid
        return hi if ok(hi, "both") else sigma_rdp

    # -- parallel composition --------------------------------------------------------------------
    def fork(self, k: int) -> list[PrivacyAccountant]:
        """``k`` child accountants for mechanisms run on *disjoint* subsets of the rows.

        Each child starts from everything spent so far (so calibration sees the whole release)
        and records its own spends; :meth:`join_parallel` then charges the parent only the worst
        child: by parallel composition, disjoint subsets cost the max, not the sum.
        """
        if k < 1:
            raise ValueError("fork needs k >= 1")
        children = []
        for _ in range(k):
            child = PrivacyAccountant(self.budget)
            child.preprocessing_rho = self.preprocessing_rho
            child.spends = list(self.spends)
            children.append(child)
        self._forked_at = len(self.spends)
        return children

    def join_parallel(self, name: str, children: list[PrivacyAccountant], **details: Any) -> None:
        """Record the children's spends since :meth:`fork` as one mechanism: the pointwise max of
        their RDP curves (and the max additive δ)."""
        start = getattr(self, "_forked_at", None)
        if start is None or start != len(self.spends):
            raise AssertionError("join_parallel must follow fork with nothing recorded in between")
        curves, deltas, parts = [], [], []
        plds: list[tuple[SampledGaussian, ...] | None] = []
        for child in children:
            own = child.spends[start:]
            curves.append(sum((s.rdp for s in own), np.zeros_like(RDP_ORDERS)))
            deltas.append(sum(s.delta for s in own))
            parts.append([s.to_dict() for s in own])
            plds.append(
                None if any(s.pld is None for s in own) else merge([c for s in own for c in (s.pld or ())])
            )
        rdp = np.max(np.stack(curves), axis=0) if curves else np.zeros_like(RDP_ORDERS)
        # disjoint rows (or a random partition): the differing row is in one child's rows, the
        # others' outputs have the same distribution on both neighbours, so the hockey-stick
        # divergence is one child's (a mixture's is at most the largest): ε is the max over children
        members = None if any(p is None for p in plds) else tuple(p for p in plds if p is not None)
        self.spends.append(
            MechanismSpend(
                name,
                rdp,
                float(max(deltas, default=0.0)),
                {"parallel": len(children), "members": parts, **details},
                None,
                members,
            )
        )
        del self._forked_at

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe summary: composed ε/δ, the target, and each mechanism (no data values)."""
        eps_pld = self.epsilon_pld() if self.spends else 0.0
        return {
            "epsilon": self.epsilon(),
            "delta": self.delta,
            "target_epsilon": self.budget.epsilon,
            "target_delta": self.budget.delta,
            "accountant": self.accountant_name,
            "epsilon_rdp": self.epsilon_rdp(),
            "epsilon_pld": eps_pld if math.isfinite(eps_pld) else None,
            "pld_eps_error": self.pld_eps_error,
            "accounting": (
                "min of two upper bounds: PLD (Gaussian parts exact, analytic Gaussian; subsampled "
                "Gaussian by PRV composition, both directions, error included) and RDP (Balle et al. "
                "2020 conversion; zCDP preprocessing; sampled-Gaussian RDP)"
            ),
            "mechanisms": [s.to_dict() for s in self.spends],
        }
