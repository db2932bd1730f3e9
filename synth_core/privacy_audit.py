"""Empirical privacy audit: ε lower bounds from runs on neighbouring tables.

A mechanism ``M`` is run many times on a table ``D`` and on a neighbour ``D'`` (one row added).
Each run gives a score (higher: "the row is in"). A threshold test is fitted on one half of the
runs; on the other half its false-positive rate and its true-positive rate get one-sided
Clopper–Pearson bounds (each at ``(1 - confidence) / 2``, so both hold jointly with
``confidence``), and (ε, δ)-DP implies ``TPR ≤ e^ε·FPR + δ`` (and the same with the roles of
``D`` and ``D'`` swapped), so

    ε ≥ log((TPR_low − δ) / FPR_high)

with probability ≥ ``confidence``. A mechanism whose bound exceeds the ε it was charged for
(converted at the same δ by the release's own accountant) spends more than it reports.

Gaussian and thresholded releases are data-independent noise on a deterministic vector, so the
vector is computed once per side by the product's own code (recorded by
:class:`RecordingAccountant`) and its noise drawn in batches of runs by the same release object
that draws it in a fit (:meth:`~synth_core.privacy.GaussianRelease.noised`): the runs are the
product's mechanism, vectorised. The score is the likelihood ratio of the recorded releases, the
most powerful test.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from synth_core.privacy import (
    RDP_ORDERS,
    ExponentialRelease,
    GaussianRelease,
    PrivacyAccountant,
    PrivacyBudget,
    ThresholdedRelease,
    rdp_to_epsilon,
)

#: Score given to a run whose output can only come from ``D'`` (a key that only ``D'`` holds was
#: released): every threshold puts it on the "row is in" side.
CERTAIN = 1e12


@dataclass
class RecordedRelease:
    """One release a mechanism made: its declaration and the exact values it noised (``always``:
    the always-released keys of a thresholded release)."""

    release: GaussianRelease | ThresholdedRelease | ExponentialRelease
    values: NDArray[np.float64]
    always: NDArray[np.bool_] | None = None


class RecordingAccountant(PrivacyAccountant):
    """A :class:`PrivacyAccountant` that also records every release's declaration and exact values.

    For audits only: the recorded values are the private counts. With ``noiseless`` every release
    returns its exact values (a thresholded one releases the keys above the threshold; an
    exponential pick is the arg-max): a fit whose output then still depends on its ``rng`` drew
    noise outside the accountant, i.e. released something no declaration covers.
    """

    def __init__(
        self,
        budget: PrivacyBudget | None = None,
        *,
        noiseless: bool = False,
        preprocessing_rho: float | None = None,
    ) -> None:
        if preprocessing_rho is None:
            super().__init__(budget or PrivacyBudget(1.0, 1e-6))
        else:  # given: skip converting the budget's (ε, δ) to ρ
            self.budget = budget or PrivacyBudget(1.0, 1e-6)
            self.spends = []
            self.preprocessing_rho = float(preprocessing_rho)
        self.noiseless = noiseless
        self.recorded: list[RecordedRelease] = []

    def _draw_gaussian(
        self, release: GaussianRelease, values: NDArray[np.float64], rng: np.random.Generator
    ) -> NDArray[np.float64]:
        self.recorded.append(RecordedRelease(release, values.copy()))
        return values.copy() if self.noiseless else super()._draw_gaussian(release, values, rng)

    def _draw_thresholded(
        self,
        release: ThresholdedRelease,
        counts: NDArray[np.float64],
        always: NDArray[np.bool_],
        rng: np.random.Generator,
    ) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
        self.recorded.append(RecordedRelease(release, counts.copy(), always.copy()))
        if self.noiseless:
            return counts.copy(), (counts > release.threshold) | always
        return super()._draw_thresholded(release, counts, always, rng)

    def _draw_exponential(
        self, release: ExponentialRelease, scores: NDArray[np.float64], rng: np.random.Generator
    ) -> int:
        self.recorded.append(RecordedRelease(release, scores.copy()))
        return int(np.argmax(scores)) if self.noiseless else super()._draw_exponential(release, scores, rng)

    def releases(self, prefix: str = "") -> list[RecordedRelease]:
        return [r for r in self.recorded if r.release.name.startswith(prefix)]


# ------------------------------------------------------------------------------------------------
# scores of batched runs


def likelihood_ratio_scores(
    without: list[RecordedRelease], with_row: list[RecordedRelease], runs: int, rng: np.random.Generator
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """``runs`` scores per side for the releases a mechanism made on ``D`` (``without``) and on
    ``D'`` (``with_row``): the log-likelihood ratio of ``D'`` vs ``D`` given all the releases.

    The two lists must hold the same declarations in the same order (a mechanism's releases do
    not depend on its data, only their values do). A thresholded release over keys may hold one
    more key, last, in ``D'`` (a value only the added row holds): when that key is released the
    run scores :data:`CERTAIN`.
    """
    from scipy.stats import norm

    if [r.release for r in without] != [r.release for r in with_row]:
        raise ValueError("the two sides made different releases: not comparable")
    scores = [np.zeros(runs), np.zeros(runs)]
    certain = [np.zeros(runs, dtype=bool), np.zeros(runs, dtype=bool)]
    for r0, r1 in zip(without, with_row, strict=True):
        release = r0.release
        if isinstance(release, ExponentialRelease):
            raise ValueError("an exponential pick changes what follows it: audit it with its own score")
        m0, m1 = r0.values, r1.values
        extra = m1.size - m0.size
        if extra not in (0, 1) or (extra == 1 and not isinstance(release, ThresholdedRelease)):
            raise ValueError(f"{release.name}: the sides released vectors of different sizes")
        m1_common = m1[: m0.size]
        diff = m1_common - m0
        sigma = release.sigma
        for side, mean in enumerate((m0, m1)):
            if isinstance(release, ThresholdedRelease):
                always = r0.always if side == 0 else r1.always
                assert always is not None
                noisy, shown = release.noised(np.broadcast_to(mean, (runs, mean.size)), always, rng)
                common = noisy[:, : m0.size]
                # a released key shows its noisy count; an unreleased one only that it stayed
                # below the threshold (log-ratio of the two sides' chances of that)
                shown_common = shown[:, : m0.size]
                hidden = norm.logcdf((release.threshold - m1_common) / sigma) - norm.logcdf(
                    (release.threshold - m0) / sigma
                )
                llr = np.where(
                    shown_common, (common - m0) * diff / sigma**2 - diff**2 / (2 * sigma**2), hidden
                ).sum(axis=1)
                scores[side] += llr
                if extra:
                    certain[side] |= shown[:, -1] if side == 1 else np.zeros(runs, dtype=bool)
            else:
                noisy = release.noised(np.broadcast_to(mean, (runs, mean.size)), rng)
                scores[side] += (noisy - m0) @ diff / sigma**2 - float(diff @ diff) / (2 * sigma**2)
    return (
        np.where(certain[0], CERTAIN, scores[0]),
        np.where(certain[1], CERTAIN, scores[1]),
    )


def select_and_measure_scores(
    pick: tuple[RecordedRelease, RecordedRelease],
    counts: tuple[list[NDArray[np.float64]], list[NDArray[np.float64]]],
    measure: GaussianRelease,
    runs: int,
    rng: np.random.Generator,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Scores of ``runs`` runs per side of one select-then-measure round (AIM): an exponential
    pick among candidates (``pick``: the recorded release on ``D`` and ``D'``, the same
    declaration, scores per candidate), then the picked candidate's marginal (``counts[side][i]``)
    released with ``measure``'s noise. The score is the exact log-likelihood ratio of the pick and
    the measurement."""
    release = pick[0].release
    if not isinstance(release, ExponentialRelease) or release != pick[1].release:
        raise ValueError("the two sides made different picks: not comparable")
    p0, p1 = release.probabilities(pick[0].values), release.probabilities(pick[1].values)
    with np.errstate(divide="ignore"):
        log_ratio = np.log(p1) - np.log(p0)
    sigma = measure.sigma
    out = []
    for side, probs in enumerate((p0, p1)):
        picked = rng.choice(probs.size, size=runs, p=probs)
        score = log_ratio[picked].astype(np.float64)
        for i in np.unique(picked):
            rows = np.flatnonzero(picked == i)
            c0, c1 = counts[0][i], counts[1][i]
            diff = c1 - c0
            y = measure.noised(np.broadcast_to(counts[side][i], (rows.size, c0.size)), rng)
            score[rows] += (y - c0) @ diff / sigma**2 - float(diff @ diff) / (2 * sigma**2)
        out.append(score)
    return out[0], out[1]


def observed_sensitivities(
    without: list[RecordedRelease], with_row: list[RecordedRelease]
) -> list[tuple[str, float, float]]:
    """``(name, ‖v(D') − v(D)‖₂, declared sensitivity)`` of every Gaussian or thresholded release
    recorded on ``D`` and on a neighbour ``D'`` (a thresholded release may hold one more key, last,
    in ``D'``: its count is part of the distance)."""
    out: list[tuple[str, float, float]] = []
    if [r.release.name for r in without] != [r.release.name for r in with_row]:
        raise ValueError("the two sides made different releases: not comparable")
    for r0, r1 in zip(without, with_row, strict=True):
        release = r0.release
        if isinstance(release, ExponentialRelease):
            continue
        m0, m1 = r0.values, r1.values
        extra = m1.size - m0.size
        if r0.release != r1.release or extra not in (0, int(isinstance(release, ThresholdedRelease))):
            raise ValueError(f"{release.name}: the sides released different vectors (layout changed)")
        diff = np.concatenate([m1[: m0.size] - m0, m1[m0.size :]])
        declared = release.l2_sensitivity if isinstance(release, GaussianRelease) else 1.0
        out.append((release.name, float(np.linalg.norm(diff)), declared))
    return out


# ------------------------------------------------------------------------------------------------
# the bound


def _cp_upper(k: NDArray[np.float64], n: int, alpha: float) -> NDArray[np.float64]:
    """One-sided Clopper–Pearson upper bound on a rate from ``k`` successes in ``n``."""
    from scipy.stats import beta

    return np.where(k >= n, 1.0, beta.ppf(1.0 - alpha, k + 1, np.maximum(n - k, 1)))


def _cp_lower(k: NDArray[np.float64], n: int, alpha: float) -> NDArray[np.float64]:
    from scipy.stats import beta

    return np.where(k <= 0, 0.0, beta.ppf(alpha, np.maximum(k, 1), n - k + 1))


def _bounds(
    pos_hits: NDArray[np.float64],
    neg_hits: NDArray[np.float64],
    n_pos: int,
    n_neg: int,
    delta: float,
    alpha: float,
) -> NDArray[np.float64]:
    """ε lower bounds ``log((TPR_low − δ) / FPR_high)`` (−inf where TPR_low ≤ δ)."""
    tpr_low = _cp_lower(pos_hits, n_pos, alpha)
    fpr_high = _cp_upper(neg_hits, n_neg, alpha)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.log((tpr_low - delta) / fpr_high)
    return np.where(tpr_low > delta, out, -np.inf)


@dataclass
class AuditResult:
    """One mechanism's audit: the empirical ε lower bound beside the ε charged for it."""

    mechanism: str
    epsilon_lower_bound: float
    claimed_epsilon: float
    delta: float
    trials_per_side: int
    confidence: float
    neighbour: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.epsilon_lower_bound <= self.claimed_epsilon

    def to_dict(self) -> dict[str, Any]:
        return {
            "mechanism": self.mechanism,
            "neighbour": self.neighbour,
            "epsilon_lower_bound": self.epsilon_lower_bound,
            "claimed_epsilon": self.claimed_epsilon,
            "delta": self.delta,
            "trials_per_side": self.trials_per_side,
            "confidence": self.confidence,
            "passed": self.passed,
            **self.details,
        }


def epsilon_lower_bound(
    without: NDArray[np.float64],
    with_row: NDArray[np.float64],
    *,
    delta: float,
    confidence: float = 0.95,
    rng: np.random.Generator,
) -> tuple[float, dict[str, Any]]:
    """Clopper–Pearson ε lower bound (see the module docstring) from scores of runs on ``D``
    (``without``) and ``D'`` (``with_row``); higher scores mean "the row is in".

    The runs of each side are shuffled and split in halves: the threshold and the direction of
    the test (``D'`` flagged above it, or ``D`` flagged below it) are chosen on the first half,
    where the same bound is largest; the bound is computed on the second half only.
    Returns (bound, ``{"threshold", "direction", "fpr", "tpr"}`` on the evaluation half); 0 when
    no test beats δ.
    """
    alpha = (1.0 - confidence) / 2.0
    a0, b0 = np.array_split(rng.permutation(np.asarray(without, dtype=np.float64)), 2)
    a1, b1 = np.array_split(rng.permutation(np.asarray(with_row, dtype=np.float64)), 2)
    candidates = np.unique(np.quantile(np.concatenate([a0, a1]), np.linspace(0.0, 1.0, 2001)))

    def hits(sample: NDArray[np.float64], thresholds: NDArray[np.float64]) -> NDArray[np.float64]:
        ordered = np.sort(sample)
        return (sample.size - np.searchsorted(ordered, thresholds, side="left")).astype(np.float64)

    # "in" when score >= t: positives are D' runs; "out" when score < t: positives are D runs
    fit_in = _bounds(hits(a1, candidates), hits(a0, candidates), a1.size, a0.size, delta, alpha)
    fit_out = _bounds(
        a0.size - hits(a0, candidates), a1.size - hits(a1, candidates), a0.size, a1.size, delta, alpha
    )
    best_in, best_out = int(np.argmax(fit_in)), int(np.argmax(fit_out))
    direction = "in" if fit_in[best_in] >= fit_out[best_out] else "out"
    t = candidates[best_in if direction == "in" else best_out]
    tt = np.array([t])
    if direction == "in":
        pos, neg, n_pos, n_neg = hits(b1, tt), hits(b0, tt), b1.size, b0.size
    else:
        pos, neg, n_pos, n_neg = b0.size - hits(b0, tt), b1.size - hits(b1, tt), b0.size, b1.size
    bound = float(_bounds(pos, neg, n_pos, n_neg, delta, alpha)[0])
    return max(bound, 0.0), {
        "threshold": float(t),
        "direction": direction,
        "fpr": float(neg[0] / n_neg),
        "tpr": float(pos[0] / n_pos),
    }


def claimed_epsilon(rdp: NDArray[np.float64], additive_delta: float, delta: float) -> float:
    """The ε an accountant reports for an RDP curve and additive δ at total ``delta`` (the same
    conversion as :meth:`PrivacyAccountant.epsilon`)."""
    if delta <= additive_delta:
        return math.inf
    return rdp_to_epsilon(rdp, delta - additive_delta)


def claimed_for(releases: list[RecordedRelease], delta: float) -> float:
    """The ε charged for ``releases`` (their declared ρ summed; thresholded δ's added) at ``delta``."""
    rho = sum(r.release.rho for r in releases)
    additive = sum(r.release.delta for r in releases if isinstance(r.release, ThresholdedRelease))
    return claimed_epsilon(rho * RDP_ORDERS, additive, delta)


def audit_releases(
    mechanism: str,
    without: list[RecordedRelease],
    with_row: list[RecordedRelease],
    *,
    runs: int,
    delta: float,
    rng: np.random.Generator,
    confidence: float = 0.95,
    neighbour: str = "",
) -> AuditResult:
    """Audit recorded Gaussian/thresholded releases: ``runs`` batched runs per side, the
    likelihood-ratio score, the bound beside the ε they were charged for."""
    s0, s1 = likelihood_ratio_scores(without, with_row, runs, rng)
    bound, info = epsilon_lower_bound(s0, s1, delta=delta, confidence=confidence, rng=rng)
    return AuditResult(
        mechanism,
        bound,
        claimed_for(without, delta),
        delta,
        runs,
        confidence,
        neighbour,
        {
            "charged_rho": sum(r.release.rho for r in without),
            "releases": [r.release.name for r in without],
            **info,
        },
    )


# ------------------------------------------------------------------------------------------------
# the audited mechanisms (the product's own code on small neighbouring tables)


def _fit_releases(
    frame: Any, spec: Any, *, preprocessing_rho: float, budget: PrivacyBudget | None = None
) -> RecordingAccountant:
    """The releases :func:`~synth_core.transformer.fit_transformer_under_dp` makes on ``frame``."""
    from synth_core.transformer import fit_transformer_under_dp

    acc = RecordingAccountant(budget, preprocessing_rho=preprocessing_rho)
    fit_transformer_under_dp(frame, spec, acc, np.random.default_rng(0))
    return acc


def _plus_row(frame: Any, row: dict[str, Any]) -> Any:
    import pandas as pd

    extra = pd.DataFrame({k: pd.array([v], dtype=frame[k].dtype) for k, v in row.items()})
    return pd.concat([frame, extra], ignore_index=True)


def audit_transformer_release(
    mechanism: str,
    prefix: str,
    frame: Any,
    spec: Any,
    added: dict[str, Any],
    *,
    runs: int,
    delta: float,
    rng: np.random.Generator,
    preprocessing_rho: float = 1.0,
    budget: PrivacyBudget | None = None,
) -> AuditResult:
    """Audit the transformer's releases named ``prefix…`` on ``frame`` vs ``frame`` + ``added``
    (one row), with the fit's preprocessing ρ set to ``preprocessing_rho`` (split evenly over the
    row count and the modelled columns)."""
    without = _fit_releases(frame, spec, preprocessing_rho=preprocessing_rho, budget=budget).releases(prefix)
    with_row = _fit_releases(
        _plus_row(frame, added), spec, preprocessing_rho=preprocessing_rho, budget=budget
    ).releases(prefix)
    neighbour = "add one row " + ", ".join(
        f"{k}={'NULL' if v is None else repr(v)}" for k, v in added.items()
    )
    return audit_releases(mechanism, without, with_row, runs=runs, delta=delta, rng=rng, neighbour=neighbour)


def audit_aim_round(*, runs: int, rho: float, delta: float, rng: np.random.Generator) -> AuditResult:
    """One AIM round, select + measure, as :class:`~synth_core.generators.aim.AIMSynthesizer`
    runs it with round budget ``rho`` (ε = sqrt(8·0.1·ρ) for the pick, σ = sqrt(1/(2·0.9·ρ)) for
    the measurement), on a 3-column table and the table plus one row; the model it compares to is
    a fixed uniform one (what the round sees from earlier rounds is public to it)."""
    from synth_core.generators.aim import AIMSynthesizer, compile_workload
    from synth_core.generators.marginal import Marginals

    names, sizes = ["a", "b", "c"], [2, 3, 2]
    base = np.random.default_rng(7).integers(0, 2, size=(40, 3))
    base[:, 1] = np.where(base[:, 0] == 1, 2, base[:, 1])  # a dependence the model misses
    added = np.array([[1, 0, 1]])
    candidates = compile_workload([("a", "b"), ("a", "c"), ("b", "c")])
    epsilon, sigma = math.sqrt(8.0 * 0.1 * rho), math.sqrt(1.0 / (2.0 * 0.9 * rho))

    class Uniform:
        def __init__(self, total: float) -> None:
            self.total = total

        def project(self, clique: tuple[str, ...]) -> NDArray[np.float64]:
            cells = math.prod(sizes[names.index(a)] for a in clique)
            return np.full(cells, self.total / cells)

    picks, counts = [], []
    for codes in (base, np.vstack([base, added])):
        data = Marginals(codes, names, sizes)
        acc = RecordingAccountant(preprocessing_rho=0.0)
        AIMSynthesizer._worst_approximated(candidates, data, Uniform(40.0), epsilon, sigma, acc, rng, 1)  # type: ignore[arg-type]
        (pick,) = acc.releases("aim:select")
        picks.append(pick)
        counts.append([data.counts(cl) for cl in candidates])
    measure = GaussianRelease("aim:measure", 1.0, sigma)
    s0, s1 = select_and_measure_scores((picks[0], picks[1]), (counts[0], counts[1]), measure, runs, rng)
    bound, info = epsilon_lower_bound(s0, s1, delta=delta, rng=rng)
    charged = picks[0].release.rho + measure.rho
    return AuditResult(
        "AIM select + measure (one round)",
        bound,
        claimed_epsilon(charged * RDP_ORDERS, 0.0, delta),
        delta,
        runs,
        0.95,
        "add one row (a=1, b=0, c=1) to 40",
        {"charged_rho": charged, "pick_epsilon": epsilon, "measure_sigma": sigma, **info},
    )


def audit_dp_sgd_canary(
    *,
    runs: int,
    epsilon: float,
    delta: float,
    epochs: int,
    rng: np.random.Generator,
    batch_size: int = 20,
) -> AuditResult:
    """DP-SGD through :class:`~synth_core.dp_training.PrivateTrainer` with a gradient canary.

    A linear model (two weights, starting at 0) is trained with plain SGD on ``D`` = 20 rows whose
    gradient is 0 and on ``D'`` = ``D`` + a canary row whose clipped gradient is the clip norm along
    the second weight, which no other row touches; the trainer's noise is calibrated for
    ``epsilon`` at the budget's δ = 1e-5 for ``epochs`` epochs of Poisson batches of expected size
    ``batch_size`` (the row-count bound 20 is public, so ``q = 1/ceil(20/batch_size)`` on both
    sides; 20: full batches, q = 1). The score is the final second weight (a white-box attacker
    who sees the released model); the claim is the trainer's own RDP spend at the audit's δ.
    """
    import torch
    from torch import nn

    from synth_core.dp_training import DPSGDConfig, PrivateTrainer
    from synth_core.privacy import sgm_rdp

    class Linear(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(2, 1, bias=False)
            nn.init.zeros_(self.lin.weight)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.lin(x)

    class Gain(nn.Module):
        """Loss −output per row: its gradient is −x, so SGD moves the weights along x."""

        reduction = "mean"

        def forward(self, out: torch.Tensor) -> torch.Tensor:
            per_row = -out.squeeze(-1)
            return per_row.mean() if self.reduction == "mean" else per_row

    budget = PrivacyBudget(epsilon, 1e-5)
    calibrated: dict[tuple[float, int, float | None], float] = {}

    class Accountant(PrivacyAccountant):
        """Calibration is a pure function of (q, steps, target): computed once, not per run."""

        def calibrate_noise_multiplier(
            self, sample_rate: float, steps: int, *, epsilon: float | None = None
        ) -> float:
            key = (sample_rate, steps, epsilon)
            if key not in calibrated:
                calibrated[key] = super().calibrate_noise_multiplier(sample_rate, steps, epsilon=epsilon)
            return calibrated[key]

    template = Accountant(budget)
    rows = 20
    config = DPSGDConfig(
        epochs=epochs, batch_size=batch_size, learning_rate=1.0, max_grad_norm=1.0,
        grad_sample_mode="hooks", device="cpu", log_every_seconds=1e9,
    )  # fmt: skip
    tables = (
        np.zeros((rows, 2), np.float32),
        np.vstack([np.zeros((rows, 2)), [[0.0, 5.0]]]).astype(np.float32),
    )
    scores: list[list[float]] = [[], []]
    spend = None
    logger = __import__("logging").getLogger("synth_core.training")
    level = logger.level
    logger.setLevel("WARNING")
    try:
        for _ in range(runs):
            for side, table in enumerate(tables):
                acc = Accountant.__new__(Accountant)
                acc.budget, acc.spends, acc.preprocessing_rho = budget, [], template.preprocessing_rho
                model = Linear()
                trainer = PrivateTrainer(
                    model, Gain(), table, acc, config, row_count=float(rows),
                    optimizer_factory=lambda params: torch.optim.SGD(params, lr=1.0),
                )  # fmt: skip
                for _epoch, batch in trainer.batches():
                    trainer.step(trainer.criterion(trainer.module(batch)))
                trainer.finish()
                scores[side].append(float(model.lin.weight.detach()[0, 1]))
                spend = acc.spends[-1]
    finally:
        logger.setLevel(level)
    assert spend is not None
    bound, info = epsilon_lower_bound(np.asarray(scores[0]), np.asarray(scores[1]), delta=delta, rng=rng)
    q, sigma, taken = spend.details["sample_rate"], spend.details["noise_multiplier"], spend.details["steps"]
    return AuditResult(
        "DP-SGD (PrivateTrainer, gradient canary)",
        bound,
        claimed_epsilon(sgm_rdp(q, sigma, taken), 0.0, delta),
        delta,
        runs,
        0.95,
        "add one canary row to 20 rows of zero gradient",
        {
            "sample_rate": q,
            "noise_multiplier": sigma,
            "steps": taken,
            "release_epsilon_at_1e-5": epsilon,
            **info,
        },
    )
