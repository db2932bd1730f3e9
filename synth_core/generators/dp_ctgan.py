"""DP-CTGAN: the conditional tabular GAN of Xu et al. (2019), trained with DP-SGD.

Only the critic (WGAN-GP discriminator) ever sees a private row, and it is the one private module
of a :class:`~synth_core.dp_training.PrivateTrainer`: real rows come from its Poisson batches,
every gradient computed from them is clipped per sample and noised by Opacus's ``DPOptimizer``,
and the noise is calibrated against the release's accountant. The generator's loss is a function
of the (already private) critic and of generated rows only: post-processing, no budget.

How CTGAN's parts are made private (each choice is a privacy argument, not only an engineering one):

**Mode-specific normalization.** CTGAN fits a variational Gaussian mixture per continuous column
on the raw values, which would have to be fit under DP. The DP transformer's quantile transform
(:mod:`synth_core.transformer`) replaces it: every continuous column arrives as a standard normal
value whose point masses (e.g. ``capital_gain == 0``) are atoms of a DP quantile histogram, so
multi-modal and spiky columns become one smooth, unimodal target at no extra cost.

**Conditional vector, training-by-sampling.** CTGAN samples real rows *by category* so rare
categories are seen often; that resampling would break the accountant's assumption that every row
joins every batch independently with probability ``q``. Here real rows come only from the
trainer's Poisson batches, and a real row's conditional vector is read off the row itself: a
conditioning column is drawn uniformly (independently of the data) and the row's own category in
that column is one-hot. The rows' conditions are therefore distributed like the data's category
frequencies; the fake rows shown to the critic next to them are generated under conditions drawn
from the *DP frequencies* (the transformer's noisy category counts, already paid for), so the
critic compares like with like and cannot tell real from fake by the condition alone (a fake side
at log-frequency would make the condition itself a giveaway the generator cannot remove, and
importance-reweighting the real side instead is distorted by per-sample clipping, which caps
exactly the up-weighted rare rows). CTGAN's
training-by-sampling survives where it is free: the *generator* steps draw conditions from the DP
log-frequencies (``log_frequency=True``), so rare categories get the generator's practice, and its
conditional cross-entropy loss is on generated rows only. Sampling uses the DP frequencies.

**PacGAN.** The critic scores packs of ``pac`` rows. With ``pac == 1`` (the default, and the right
choice under DP) a unit of the DP analysis is one real row with its own fresh fake row and
interpolate: adding or removing a row adds or removes exactly one clipped unit (sensitivity ``C``).
With ``pac > 1`` each Poisson-sampled row is put in one of ``batch_size // pac`` packs drawn
uniformly and independently of the data, so adding or removing a row changes exactly one pack and
no other row moves. A changed pack is a *replacement* of one clipped unit (‖g' − g‖ ≤ 2·clip), so
each pack's gradient is clipped to ``max_grad_norm / 2`` before the optimizer's clip at
``max_grad_norm``: the sum then moves by at most ``max_grad_norm`` and the Poisson-subsampled
Gaussian analysis (add/remove, sensitivity = clip) holds conditionally on the other rows' pack
draws (and hence overall, by quasi-convexity of the Rényi divergence). Packs vary in size, so the
critic is permutation invariant: per-row first layer, masked mean over the pack, then the rest of
the network (with ``pac == 1`` this is exactly CTGAN's critic). The halved clip halves the
signal-to-noise ratio, which is why ``pac == 1`` is the default.

**WGAN-GP under DP.** A unit's critic loss is ``−D(real) + D(fake) + λ (‖∇ₓ D(x̂)‖ − 1)²`` with
``x̂`` an interpolate of the real and fake input. Every term goes into the unit's per-sample
gradient, which Opacus clips and noises. The fake term is charged exactly once: it is part of the
unit of the real row it is paired with (a row's presence adds its unit, fake term included), so it
is neither dropped nor noised a second time, and WGAN's ``E[D(real)] − E[D(fake)]`` keeps its
balance after clipping (both terms of a unit are scaled by the same factor). Opacus 1.6 cannot
compute per-sample gradients of a gradient penalty: in ``hooks``, ``functorch`` and ``ghost`` mode
the inner ``autograd.grad`` consumes the activations its hooks captured (``IndexError: pop from
empty list``), and in ``ew`` (expanded weights) mode the double backward runs but the per-sample
gradients are wrong (measured: off by O(1) against autograd). The per-unit gradients are therefore
computed here,
exactly, in closed form: the critic is a piecewise-linear network (Linear + LeakyReLU, no
BatchNorm, no dropout), so ``∂/∂θ (r·∇ₓD) = δ_l ⊗ ṫ_{l−1}`` per layer (``δ`` backpropagated from
``D`` at ``x̂``, ``ṫ`` the forward tangent of ``r``; biases get none, the activation's second
derivative being 0), alongside the usual ``δ ⊗ a`` of the two first-order terms. They are handed
to Opacus's ``DPOptimizer`` as ``p.grad_sample``; the trainer runs in ``ew`` mode only because that
mode registers no hooks on the module (nothing else computes gradient samples behind our back).
``tests/test_dp_ctgan.py`` checks them against per-unit autograd double backward.

**One unit per real row, nothing else moves.** For the add/remove argument above, a row's
presence must not change any other unit. So each unit's fake row is generated in fixed-size
chunks (BatchNorm statistics of one batch sized like the Poisson batch would tie every fake row to
the batch size), the generator's BatchNorm buffers are restored after those chunks (their count
depends on the batch size), and every draw made per real row or per unit (conditioning column,
pack, fake row, interpolation weight) comes from OS entropy, while the generator's own steps use
a separate stream seeded by ``seed`` whose consumption never depends on the data.

**Generator.** CTGAN's residual MLP with BatchNorm (it never sees private rows), gumbel-softmax
outputs (τ = 0.2) on categorical spans and linear outputs on the quantile-normal spans; its loss
is ``−D(G(z, c), c)`` plus the conditional cross-entropy on generated rows.
"""

from __future__ import annotations

import copy
import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from scipy.special import ndtr
from torch import nn
from torch.nn import functional as F

from synth_core.dp_training import DPSGDConfig, PrivateTrainer, ProgressCallback
from synth_core.errors import ParameterError
from synth_core.generators.base import Synthesizer, register_generator
from synth_core.privacy import PrivacyAccountant, secret_seed
from synth_core.transformer import ColumnTransform, Span, TableTransformer

LEAKY_SLOPE = 0.2
GUMBEL_TAU = 0.2
ADAM_BETAS = (0.5, 0.9)
#: rows generated per chunk when sampling (bounded memory)
_SAMPLE_CHUNK = 10_000


# ------------------------------------------------------------------------------------------------
# conditional vectors


class ConditionSpace:
    """The conditional-vector layout of a fitted transformer and its DP category frequencies.

    Every softmax span of the matrix (categorical columns, and the missing flag of nullable
    continuous columns) is a conditioning "column". Frequencies come from the transformer's DP
    outputs only (noisy category counts, DP NULL rates, DP row count): post-processing.

    Attributes:
        spans: ``(start, width)`` of each conditioning span in the data matrix.
        offsets: start of each span in the conditional vector.
        dim: length of the conditional vector (sum of the span widths).
        frequency: per span, the DP frequency of each slot (sums to 1).
        log_frequency: per span, CTGAN's ``log(1 + count)`` weights, normalized.
    """

    def __init__(self, transformer: TableTransformer) -> None:
        self.spans: list[tuple[int, int]] = []
        self.frequency: list[NDArray[np.float64]] = []
        self.log_frequency: list[NDArray[np.float64]] = []
        total = float(max(transformer.dp_row_count, 1))
        for col in transformer.columns:
            for span in col.spans:
                if span.kind != "softmax":
                    continue
                counts = _slot_counts(col, span, total)
                self.spans.append((span.start, span.width))
                self.frequency.append(_normalize(counts))
                self.log_frequency.append(_normalize(np.log1p(counts)))
        self.offsets = [0, *itertools.accumulate(w for _, w in self.spans)][:-1]
        self.dim = sum(w for _, w in self.spans)

    @property
    def n_spans(self) -> int:
        return len(self.spans)

    def read_off(self, real: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Conditional vectors ``(B, dim)`` of real rows ``(B, d)``: for each row a conditioning
        span drawn uniformly (independently of the data) and the row's own slot in it."""
        b = real.shape[0]
        cond = torch.zeros(b, self.dim, device=real.device)
        if not self.n_spans or b == 0:
            return cond
        choice = torch.randint(0, self.n_spans, (b,), generator=gen, device=real.device)
        for j, ((start, width), offset) in enumerate(zip(self.spans, self.offsets, strict=True)):
            rows = torch.nonzero(choice == j).squeeze(1)
            if rows.numel():
                slot = real[rows, start : start + width].argmax(dim=1)
                cond[rows, offset + slot] = 1.0
        return cond

    def draw(
        self, n: int, *, log_frequency: bool, gen: torch.Generator, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``n`` conditions from the DP (log-)frequencies: a span drawn uniformly, then a slot.

        Returns ``(cond (n, dim), span index (n,), slot (n,))``; with no conditioning span the
        vector is empty and the indices are ``-1``.
        """
        cond = torch.zeros(n, self.dim, device=device)
        span_idx = torch.full((n,), -1, dtype=torch.long, device=device)
        slot = torch.full((n,), -1, dtype=torch.long, device=device)
        if not self.n_spans or n == 0:
            return cond, span_idx, slot
        span_idx = torch.randint(0, self.n_spans, (n,), generator=gen, device=device)
        probs = self.log_frequency if log_frequency else self.frequency
        for j, offset in enumerate(self.offsets):
            rows = torch.nonzero(span_idx == j).squeeze(1)
            if rows.numel():
                p = torch.as_tensor(probs[j], dtype=torch.float32, device=device)
                picks = torch.multinomial(p, rows.numel(), replacement=True, generator=gen)
                slot[rows] = picks
                cond[rows, offset + picks] = 1.0
        return cond, span_idx, slot


def _slot_counts(col: ColumnTransform, span: Span, total: float) -> NDArray[np.float64]:
    """DP counts of the slots of one softmax span (from the transformer's DP outputs)."""
    null_rows = total * float(col.null_fraction)
    if span.role == "missing":
        return np.array([max(total - null_rows, 0.0), null_rows])
    k = len(col.categories or [])
    weights = col.category_weights if col.category_weights is not None else [total / max(k, 1)] * k
    counts = [max(float(w), 0.0) for w in weights]
    if col.has_other:
        counts.append(max(total - null_rows - sum(counts), 0.0))
    if col.nullable:
        counts.append(null_rows)
    out = np.asarray(counts[: span.width], dtype=np.float64)
    if out.size < span.width:
        out = np.pad(out, (0, span.width - out.size))
    return out


def _normalize(weights: NDArray[np.float64]) -> NDArray[np.float64]:
    s = float(weights.sum())
    return weights / s if s > 0 else np.full(weights.shape, 1.0 / max(weights.size, 1))


# ------------------------------------------------------------------------------------------------
# networks


class PackCritic(nn.Module):
    """WGAN critic over packs of rows: ``D(pack) = ρ(mean over the pack's rows of φ(row))``.

    ``φ`` is the first Linear + LeakyReLU layer (applied per row), ``ρ`` the remaining hidden
    Linear + LeakyReLU layers and a final Linear to one score. With one row per pack this is
    CTGAN's critic. No BatchNorm or dropout (BatchNorm mixes private samples; both would break the
    closed-form per-unit gradients of :func:`critic_unit_gradients`).

    ``forward(x, mask)``: ``x`` ``(U, S, input_dim)`` packs of at most ``S`` rows, ``mask`` ``(U, S)``
    (1 for a present row); returns scores ``(U,)``.
    """

    def __init__(self, input_dim: int, hidden: list[int]) -> None:
        super().__init__()
        sizes = [input_dim, *hidden, 1]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(sizes))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = x
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            if i == 1:
                h = _pool(h, mask)
            h = layer(h)
            if i < last:
                h = F.leaky_relu(h, LEAKY_SLOPE)
        return h.squeeze(-1)


def _pool(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Masked mean over the pack axis: ``h`` ``(U, ..., S, k)``, ``mask`` ``(U, S)``."""
    m = mask.reshape(mask.shape[0], *([1] * (h.dim() - 3)), mask.shape[1], 1)
    return (h * m).sum(dim=-2) / m.sum(dim=-2).clamp(min=1.0)


class _Residual(nn.Module):
    def __init__(self, i: int, o: int) -> None:
        super().__init__()
        self.fc = nn.Linear(i, o)
        self.bn = nn.BatchNorm1d(o)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([F.relu(self.bn(self.fc(x))), x], dim=1)


class CTGANGenerator(nn.Module):
    """CTGAN's generator: residual blocks (Linear + BatchNorm + ReLU, input concatenated).

    ``forward(z, cond)``: ``z`` ``(B, noise_dim)``, ``cond`` ``(B, cond_dim)`` → raw outputs
    ``(B, data_dim)`` (logits on softmax spans, values on continuous spans).
    """

    def __init__(self, noise_dim: int, cond_dim: int, hidden: list[int], data_dim: int) -> None:
        super().__init__()
        self.noise_dim = noise_dim
        self.cond_dim = cond_dim
        self.data_dim = data_dim
        blocks: list[nn.Module] = []
        width = noise_dim + cond_dim
        for h in hidden:
            blocks.append(_Residual(width, h))
            width += h
        self.body = nn.Sequential(*blocks)
        self.out = nn.Linear(width, data_dim)

    def forward(self, z: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(torch.cat([z, cond], dim=1)))


class _Layout:
    """Index helpers for the transformer's spans (continuous vs softmax) on a device."""

    def __init__(self, spans: list[Span], device: torch.device) -> None:
        self.softmax = [(s.start, s.width) for s in spans if s.kind == "softmax"]
        self.continuous = torch.tensor(
            [s.start for s in spans if s.kind == "continuous"], dtype=torch.long, device=device
        )

    def activate(self, raw: torch.Tensor, gen: torch.Generator, *, hard: bool = False) -> torch.Tensor:
        """Gumbel-softmax (τ = 0.2) on softmax spans, identity on continuous spans; with ``hard``
        the softmax spans are one-hot draws from ``softmax(logits)`` instead. All randomness comes
        from ``gen`` (never torch's global generator, whose use would couple unrelated draws)."""
        out = raw.clone()
        for start, width in self.softmax:
            logits = raw[:, start : start + width]
            if hard:
                picks = torch.multinomial(torch.softmax(logits, dim=1), 1, generator=gen).squeeze(1)
                out[:, start : start + width] = F.one_hot(picks, width).to(raw.dtype)
            else:
                u = torch.rand(logits.shape, generator=gen, device=raw.device, dtype=raw.dtype)
                gumbel = -torch.log(-torch.log(u.clamp(1e-10, 1.0 - 1e-7)))
                out[:, start : start + width] = torch.softmax((logits + gumbel) / GUMBEL_TAU, dim=1)
        return out


# ------------------------------------------------------------------------------------------------
# the critic's per-unit loss and its exact per-unit gradients


def critic_unit_gradients(
    critic: PackCritic,
    real: torch.Tensor,
    fake: torch.Tensor,
    alpha: torch.Tensor,
    mask: torch.Tensor,
    gp_lambda: float,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Per-unit WGAN-GP losses and their exact gradients for every critic parameter.

    A unit is one pack (one real row when ``pac == 1``) with its fake pack and interpolate::

        L_u = −D(real_u) + D(fake_u) + λ·(‖∇ₓ D(x̂_u)‖₂ − 1)²,   x̂_u = α_u·real_u + (1 − α_u)·fake_u

    The critic is piecewise linear, so with ``δ_l`` the backpropagated sensitivity at layer ``l``
    and ``a_{l−1}`` its input, ``∂D/∂W_l = δ_l ⊗ a_{l−1}``, and the penalty's gradient is
    ``∂(r·∇ₓD)/∂W_l = δ_l(x̂) ⊗ ṫ_{l−1}`` with ``r = ∂penalty/∂(∇ₓD)`` and ``ṫ`` the forward
    tangent of ``r`` (no bias term: LeakyReLU's second derivative is 0 almost everywhere, as in
    autograd).

    Args:
        real, fake: ``(U, S, input_dim)`` packs (rows with their conditional vectors).
        alpha: ``(U,)`` interpolation weights in [0, 1].
        mask: ``(U, S)``, 1 where a pack holds a row.

    Returns:
        ``(losses (U,), grads)``, ``grads[i]`` of shape ``(U, *params[i].shape)`` in the order of
        ``critic.parameters()`` (weight, bias per layer).
    """
    layers = [layer for layer in critic.layers if isinstance(layer, nn.Linear)]
    last = len(layers) - 1
    u = real.shape[0]
    x_hat = alpha.view(-1, 1, 1) * real + (1 - alpha.view(-1, 1, 1)) * fake
    x = torch.stack([real, fake, x_hat], dim=1)  # (U, 3, S, in)
    msum = mask.sum(dim=1).clamp(min=1.0)  # (U,)
    inputs: list[torch.Tensor] = []
    slopes: list[torch.Tensor] = []
    a = x
    out = x.new_zeros(0)
    with torch.no_grad():
        for i, layer in enumerate(layers):
            if i == 1:
                a = _pool(a, mask)  # (U, 3, h)
            inputs.append(a)
            z = F.linear(a, layer.weight, layer.bias)
            if i < last:
                s = torch.where(z > 0, torch.ones_like(z), torch.full_like(z, LEAKY_SLOPE))
                slopes.append(s)
                a = z * s
            else:
                out = z.squeeze(-1)  # (U, 3)
        # backward: coefficients −1 (real), +1 (fake), 1 (x̂, for ∇ₓD and the penalty's δ)
        coef = torch.tensor([-1.0, 1.0, 1.0], device=x.device, dtype=x.dtype)
        delta = coef.expand(u, 3).unsqueeze(-1)  # (U, 3, 1) at the output
        deltas: list[torch.Tensor] = [delta] * len(layers)
        for i in range(last, -1, -1):
            deltas[i] = delta
            if i == 0:
                break
            d_prev = delta @ layers[i].weight  # (U, 3, [S,] in_i)
            if i == 1:  # un-pool: each present row gets mask / count of the pooled sensitivity
                d_prev = d_prev.unsqueeze(2) * (mask / msum.unsqueeze(1)).view(u, 1, -1, 1)
            delta = d_prev * slopes[i - 1]
        grad_x = deltas[0][:, 2] @ layers[0].weight  # (U, S, in): ∇ₓD at x̂
        norm = torch.sqrt(grad_x.pow(2).sum(dim=(1, 2)) + 1e-12)
        penalty = (norm - 1.0).pow(2)
        r = (2.0 * gp_lambda * (norm - 1.0) / norm).view(-1, 1, 1) * grad_x
        tangents: list[torch.Tensor] = []
        t = r
        for i, layer in enumerate(layers):
            if i == 1:
                t = _pool(t, mask)
            tangents.append(t)
            if i < last:
                t = (t @ layer.weight.T) * slopes[i][:, 2]
        grads: list[torch.Tensor] = []
        for i in range(len(layers)):
            d, inp = deltas[i], inputs[i]
            # first-order terms (real, fake) pair δ with activations, the penalty pairs δ(x̂) with ṫ
            acts = torch.cat([inp[:, :2], tangents[i].unsqueeze(1)], dim=1)
            gw = torch.bmm(d.reshape(u, -1, d.shape[-1]).transpose(1, 2), acts.reshape(u, -1, acts.shape[-1]))
            gb = d[:, :2].reshape(u, -1, d.shape[-1]).sum(dim=1)
            grads += [gw, gb]
        losses = -out[:, 0] + out[:, 1] + gp_lambda * penalty
    return losses, grads


class CriticUnitLoss:
    """The critic's loss on one batch of units, as :meth:`PrivateTrainer.step` takes it.

    ``backward()`` stores the exact per-unit gradients as ``p.grad_sample`` for Opacus's
    ``DPOptimizer`` (which then clips each unit, sums, adds noise and scales). With
    ``unit_clip`` each unit's gradient is first clipped to that norm (``max_grad_norm / 2`` for
    packs, see the module docstring).
    """

    def __init__(
        self, critic: PackCritic, losses: torch.Tensor, grads: list[torch.Tensor], unit_clip: float | None
    ) -> None:
        self.critic = critic
        self.per_unit = losses
        self.grads = grads
        self.unit_clip = unit_clip

    def item(self) -> float:
        return float(self.per_unit.mean()) if self.per_unit.numel() else math.nan

    def backward(self) -> None:
        grads = self.grads
        if self.unit_clip is not None and grads and grads[0].shape[0]:
            norms = torch.sqrt(sum(g.reshape(g.shape[0], -1).pow(2).sum(dim=1) for g in grads))  # type: ignore[arg-type]
            factor = (self.unit_clip / (norms + 1e-6)).clamp(max=1.0)
            grads = [g * factor.view(-1, *([1] * (g.dim() - 1))) for g in grads]
        for p, g in zip(self.critic.parameters(), grads, strict=True):
            p.grad_sample = g  # type: ignore[attr-defined]


class WGANGPCriticLoss(nn.Module):
    """Criterion of the critic's :class:`PrivateTrainer`: builds a :class:`CriticUnitLoss`.

    ``forward(critic, real, fake, alpha, mask)`` with packs ``(U, S, input_dim)``, ``alpha`` ``(U,)``
    and ``mask`` ``(U, S)``. ``reduction`` is kept for the trainer's interface; the per-unit
    gradients are always sums over one unit, and the ``DPOptimizer`` divides by the expected batch.
    """

    def __init__(self, gp_lambda: float, unit_clip: float | None = None) -> None:
        super().__init__()
        self.gp_lambda = gp_lambda
        self.unit_clip = unit_clip
        self.reduction = "mean"

    def forward(
        self,
        critic: PackCritic,
        real: torch.Tensor,
        fake: torch.Tensor,
        alpha: torch.Tensor,
        mask: torch.Tensor,
    ) -> CriticUnitLoss:
        losses, grads = critic_unit_gradients(critic, real, fake, alpha, mask, self.gp_lambda)
        return CriticUnitLoss(critic, losses, grads, self.unit_clip)


def make_packs(
    n_rows: int, pac: int, batch_size: int, gen: torch.Generator, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Assign ``n_rows`` Poisson-sampled rows to packs by a data-independent rule.

    ``pac == 1``: one pack per row. Otherwise each row independently joins one of
    ``max(1, batch_size // pac)`` packs uniformly at random (adding a row never moves another).

    Returns ``(index (U, S), mask (U, S))``: row indices per non-empty pack, padded with 0 where
    ``mask`` is 0.
    """
    if pac == 1:
        index = torch.arange(n_rows, device=device).unsqueeze(1)
        return index, torch.ones(n_rows, 1, device=device)
    n_packs = max(1, batch_size // pac)
    pack_of = torch.randint(0, n_packs, (n_rows,), generator=gen, device=device)
    order = torch.argsort(pack_of, stable=True)
    counts = torch.bincount(pack_of, minlength=n_packs)
    present = counts > 0
    width = int(counts.max()) if n_rows else 1
    index = torch.zeros(int(present.sum()), max(width, 1), dtype=torch.long, device=device)
    mask = torch.zeros(index.shape, device=device)
    starts = torch.cumsum(counts, 0) - counts
    for row_pos, pack in enumerate(torch.nonzero(present).squeeze(1).tolist()):
        c = int(counts[pack])
        s = int(starts[pack])
        index[row_pos, :c] = order[s : s + c]
        mask[row_pos, :c] = 1.0
    return index, mask


# ------------------------------------------------------------------------------------------------
# DP marginal scores (post-processing: synthetic rows against the transformer's DP marginals)


def marginal_distance(matrix: NDArray[np.float32], transformer: TableTransformer) -> float:
    """Mean total-variation distance between a synthetic matrix's 1-way marginals and the DP ones.

    Softmax spans are compared with the DP slot frequencies (:class:`ConditionSpace`), continuous
    spans with the DP quantile histogram (a perfect model's quantile-normal values are uniform
    over the histogram's CDF steps). Reads only synthetic rows and DP outputs: free.
    """
    conditions = ConditionSpace(transformer)
    freq = {start: f for (start, _), f in zip(conditions.spans, conditions.frequency, strict=True)}
    dists: list[float] = []
    n = max(matrix.shape[0], 1)
    for col in transformer.columns:
        for span in col.spans:
            if span.kind == "softmax":
                got = (
                    np.bincount(
                        np.argmax(matrix[:, span.start : span.start + span.width], axis=1),
                        minlength=span.width,
                    )
                    / n
                )
                dists.append(0.5 * float(np.abs(got - freq[span.start]).sum()))
            elif col.bins is not None:
                u = ndtr(matrix[:, span.start].astype(np.float64))
                cdf = col.bins.cdf_right
                idx = np.clip(np.searchsorted(cdf, u, side="left"), 0, cdf.size - 1)
                got = np.bincount(idx, minlength=cdf.size) / n
                dists.append(0.5 * float(np.abs(got - col.bins.mass / col.bins.mass.sum()).sum()))
    return float(np.mean(dists)) if dists else 0.0


def _marginal_target(conditions: ConditionSpace, device: torch.device) -> torch.Tensor:
    """The DP slot frequencies of every conditioning span, concatenated ``(cond_dim,)``."""
    return torch.as_tensor(
        np.concatenate([*conditions.frequency, np.zeros(0)]), dtype=torch.float32, device=device
    )


def soft_marginal_error(
    fake: torch.Tensor, conditions: ConditionSpace, layout: _Layout, target: torch.Tensor
) -> torch.Tensor:
    """Differentiable 1-way marginal error vector of a generated batch ``fake`` ``(B, d)`` (softmax
    spans activated) against the DP marginals: slot frequencies minus the DP frequencies, then per
    continuous span the mean and ``E[z²] − 1`` (the quantile-normal target is N(0, 1))."""
    parts = [fake[:, start : start + width].mean(dim=0) for start, width in conditions.spans]
    soft = torch.cat(parts) - target if parts else fake.new_zeros(0)
    if layout.continuous.numel():
        z = fake[:, layout.continuous]
        soft = torch.cat([soft, z.mean(dim=0), z.pow(2).mean(dim=0) - 1.0])
    return soft


# ------------------------------------------------------------------------------------------------
# training


@dataclass(frozen=True)
class EarlyStopping:
    """Stop a member when its DP marginal score stops improving; keep its best epoch.

    Attributes:
        patience: epochs without improvement of :func:`marginal_distance` before stopping.
        min_epochs: never stop before this epoch.
        eval_rows: synthetic rows scored per epoch.
    """

    patience: int
    min_epochs: int = 1
    eval_rows: int = 2_000


@dataclass
class Diversity:
    """Negative-correlation regularizer on DP marginals (generator-only: no budget).

    The generator's loss gains ``weight · ‖e + ē‖²`` where ``e`` is its batch's marginal error
    vector (:func:`soft_marginal_error`) and ``ē`` the mean error of the members trained before it:
    minimized when this member's marginal errors cancel the earlier members' ones.
    """

    weight: float
    previous_error: torch.Tensor | None = None


@dataclass
class CTGANRun:
    """What one DP-CTGAN training returns: the trained generator and the facts to record."""

    generator: CTGANGenerator
    facts: dict[str, Any]
    score: float


class DPCTGANTraining:
    """One DP-CTGAN training: the critic's :class:`PrivateTrainer`, the generator and their steps.

    Built from the transformed private rows ``matrix`` ``(n, d)`` and :class:`DPCTGANSynthesizer`'s
    validated ``params``. The critic is the private module of the trainer (noise calibrated to the
    accountant's target, spend recorded by ``finish()``). ``seed`` fixes initialisation and the
    generator steps' draws; per-unit draws (see the module docstring), DP noise and Poisson
    sampling use OS entropy.

    ``row_count`` is the DP row count the critic's sampling rate ``q = 1/ceil(row_count / batch_size)``
    and mean reduction come from (default: the transformer's ``dp_row_count``; the ensemble passes
    its share, ``dp_row_count / k``, so every member has the same ``q``), never the exact number of
    rows. The number of packs and the generator's batch follow the configured ``batch_size``, so
    they never depend on the data.
    """

    def __init__(
        self,
        matrix: NDArray[np.float32],
        transformer: TableTransformer,
        accountant: PrivacyAccountant,
        params: dict[str, Any],
        *,
        seed: int,
        mechanism_name: str = "dp-ctgan-critic",
        row_count: float | None = None,
    ) -> None:
        torch.manual_seed(seed)
        self.transformer = transformer
        self.mechanism_name = mechanism_name
        self.pac = int(params["pac"])
        self.batch_size = int(params["batch_size"])
        self.config = DPSGDConfig(
            epochs=int(params["epochs"]),
            batch_size=self.batch_size,
            learning_rate=float(params["discriminator_lr"]),
            max_grad_norm=float(params["max_grad_norm"]),
            grad_sample_mode="ew",  # no hooks: the per-unit gradients are computed in closed form
            device=str(params["device"]),
        )
        self.conditions = ConditionSpace(transformer)
        self.data_dim = int(matrix.shape[1])
        self.input_dim = self.data_dim + self.conditions.dim
        self.critic = PackCritic(self.input_dim, [int(h) for h in params["discriminator_dim"]])
        self.generator = CTGANGenerator(
            int(params["embedding_dim"]),
            self.conditions.dim,
            [int(h) for h in params["generator_dim"]],
            self.data_dim,
        )
        clip = float(params["max_grad_norm"])
        criterion = WGANGPCriticLoss(float(params["gp_lambda"]), unit_clip=clip / 2 if self.pac > 1 else None)
        decay = float(params["weight_decay"])
        d_lr = float(params["discriminator_lr"])
        self.trainer = PrivateTrainer(
            self.critic, criterion, matrix, accountant, self.config, mechanism_name=mechanism_name,
            row_count=transformer.dp_row_count if row_count is None else row_count,
            optimizer_factory=lambda ps: torch.optim.Adam(ps, lr=d_lr, betas=ADAM_BETAS, weight_decay=decay),
        )  # fmt: skip
        self.device = self.trainer.device
        # Two streams of model randomness. `gen` (from `seed`) drives the generator's own steps,
        # whose draws never depend on the data. Everything drawn per real row or per unit (the
        # conditioning column read off a row, packs, the unit's fake row, α) comes from OS
        # entropy: how much of it a step consumes depends on the Poisson batch size, so with a
        # public seed it would tie later draws (and the released generator) to the batch sizes.
        self.gen = torch.Generator(device=self.device).manual_seed(seed)
        self.unit_gen = torch.Generator(device=self.device).manual_seed(secret_seed())
        self.eval_gen = torch.Generator(device=self.device).manual_seed(seed + 1)
        self.generator.to(self.device).train()
        self.g_opt = torch.optim.Adam(
            self.generator.parameters(),
            lr=float(params["generator_lr"]),
            betas=ADAM_BETAS,
            weight_decay=decay,
        )
        self.layout = _Layout(transformer.spans, self.device)
        self.target = _marginal_target(self.conditions, self.device)
        self.log_frequency = bool(params["log_frequency"])
        self.g_steps = int(params["generator_steps"])
        self.g_batch = max(self.pac, self.batch_size // self.pac * self.pac)

    def _fake(
        self, n: int, gen: torch.Generator, *, log_freq: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(raw outputs (n, d), cond (n, c), span index (n,), slot (n,))`` of ``n`` generated rows."""
        cond, span_idx, slot = self.conditions.draw(n, log_frequency=log_freq, gen=gen, device=self.device)
        z = torch.randn(n, self.generator.noise_dim, generator=gen, device=self.device)
        return self.generator(z, cond), cond, span_idx, slot

    @torch.no_grad()
    def _critic_fakes(self, n: int) -> torch.Tensor:
        """``n`` fake critic inputs ``(n, input_dim)`` (rows + DP-frequency conditions).

        Generated in chunks of the configured batch size, in train mode as in CTGAN, so a fake
        row never depends on how many real rows the Poisson batch holds (BatchNorm statistics of
        one variable-size batch would tie every unit's fake row to the batch size, and adding a
        row would then move every unit). The BatchNorm buffers are restored afterwards: how many
        chunks were drawn depends on the batch size, and the released generator must not.
        """
        saved = {k: v.clone() for k, v in self.generator.named_buffers()}
        parts = []
        for _ in range(math.ceil(n / self.g_batch)):
            raw, cond, _, _ = self._fake(self.g_batch, self.unit_gen, log_freq=False)
            parts.append(torch.cat([self.layout.activate(raw, self.unit_gen), cond], dim=1))
        for k, v in self.generator.named_buffers():
            v.copy_(saved[k])
        return torch.cat(parts)[:n] if parts else torch.zeros(0, self.input_dim, device=self.device)

    def critic_loss(self, batch: torch.Tensor) -> CriticUnitLoss:
        """The critic's per-unit loss on a Poisson batch of real rows ``(B, d)``.

        Real conditions are read off the rows; each real row gets its own fake row generated
        under a DP-frequency condition (:meth:`_critic_fakes`); rows are packed by
        :func:`make_packs`.
        """
        real = torch.cat([batch, self.conditions.read_off(batch, self.unit_gen)], dim=1)
        index, mask = make_packs(real.shape[0], self.pac, self.batch_size, self.unit_gen, self.device)
        fake = self._critic_fakes(real.shape[0])
        alpha = torch.rand(index.shape[0], generator=self.unit_gen, device=self.device)
        loss: CriticUnitLoss = self.trainer.criterion(
            self.trainer.raw_module, real[index], fake[index], alpha, mask
        )
        return loss

    def generator_step(self, diversity: Diversity | None) -> float:
        """One generator update: ``−D(G(z, c), c)`` + conditional loss (+ diversity); no real row."""
        raw, cond, span_idx, slot = self._fake(self.g_batch, self.gen, log_freq=self.log_frequency)
        packs = torch.cat([self.layout.activate(raw, self.gen), cond], dim=1).view(
            -1, self.pac, self.input_dim
        )
        loss = -self.critic(packs, torch.ones(packs.shape[:2], device=self.device)).mean()
        loss = loss + _conditional_loss(raw, self.conditions, span_idx, slot)
        if diversity is not None and diversity.weight > 0:
            d_raw, _, _, _ = self._fake(self.g_batch, self.gen, log_freq=False)
            err = soft_marginal_error(
                self.layout.activate(d_raw, self.gen), self.conditions, self.layout, self.target
            )
            prev = diversity.previous_error
            if prev is not None:
                err = err + prev.to(self.device)
            loss = loss + diversity.weight * err.pow(2).sum()
        self.g_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.g_opt.step()
        return float(loss.item())

    def run(
        self,
        progress: ProgressCallback | None,
        *,
        early_stopping: EarlyStopping | None = None,
        diversity: Diversity | None = None,
    ) -> CTGANRun:
        """Alternate one private critic step per Poisson batch with ``generator_steps`` generator
        steps; log every epoch through the trainer; record the spend."""
        trainer, generator, epochs = self.trainer, self.generator, self.config.epochs
        best_state: dict[str, torch.Tensor] | None = None
        best_score, best_epoch, stopped_at = math.inf, 0, None
        history: list[float] = []
        current = 1

        def close_epoch(epoch: int) -> bool:
            """Log the epoch; with early stopping score it and say whether to stop."""
            nonlocal best_state, best_score, best_epoch
            trainer.log_epoch(epoch, epochs, progress)
            if early_stopping is None:
                return False
            rows = _generate(generator, self.conditions, self.layout, early_stopping.eval_rows, self.eval_gen)
            score = marginal_distance(rows, self.transformer)
            generator.train()
            history.append(round(score, 5))
            if score < best_score:
                best_score, best_epoch = score, epoch
                best_state = copy.deepcopy(generator.state_dict())
            return epoch >= early_stopping.min_epochs and epoch - best_epoch >= early_stopping.patience

        for epoch, batch in trainer.batches(epochs):
            if epoch != current:
                if close_epoch(current):
                    stopped_at = current
                    break
                current = epoch
            trainer.step(self.critic_loss(batch))  # Opacus: clip every unit, sum, add noise, scale, Adam step
            self.critic.requires_grad_(False)  # the generator's steps update the generator only
            for _ in range(self.g_steps):
                self.generator_step(diversity)
            self.critic.requires_grad_(True)
        else:
            if close_epoch(current) and current < epochs:
                stopped_at = current
        if stopped_at is not None:
            # The stopping epoch depends on the (private) training trajectory, so the realized number
            # of steps is itself data-dependent: reporting only its ε would be a privacy odometer,
            # which is not a valid guarantee. The release is a post-processing of the full planned
            # run, so the full planned spend is charged (early stopping saves time, not budget).
            # PrivateTrainer.finish() records `steps`; it has no other way to charge the plan.
            trainer.steps = trainer.planned_steps
        result = trainer.finish()
        if best_state is not None:
            generator.load_state_dict(best_state)
        generator.to("cpu").eval()
        facts: dict[str, Any] = {
            "noise_multiplier": result.noise_multiplier,
            "sample_rate": result.sample_rate,
            "steps_charged": result_steps(trainer.accountant, self.mechanism_name),
            "epochs_run": stopped_at if stopped_at is not None else epochs,
            "seconds": result.seconds,
            "device": result.device,
            "per_sample_gradients": "closed form (WGAN-GP incl. penalty) -> Opacus DPOptimizer clip + noise",
        }
        if early_stopping is not None:
            facts.update({"best_epoch": best_epoch, "marginal_score": best_score, "score_history": history})
        return CTGANRun(generator, facts, best_score if early_stopping is not None else math.nan)


def train_dp_ctgan(
    matrix: NDArray[np.float32],
    transformer: TableTransformer,
    accountant: PrivacyAccountant,
    params: dict[str, Any],
    *,
    seed: int,
    progress: ProgressCallback | None,
    mechanism_name: str = "dp-ctgan-critic",
    early_stopping: EarlyStopping | None = None,
    diversity: Diversity | None = None,
    row_count: float | None = None,
) -> CTGANRun:
    """Train one DP-CTGAN on ``matrix`` ``(n, d)``: :class:`DPCTGANTraining` built and run."""
    training = DPCTGANTraining(
        matrix, transformer, accountant, params, seed=seed, mechanism_name=mechanism_name,
        row_count=row_count,
    )  # fmt: skip
    return training.run(progress, early_stopping=early_stopping, diversity=diversity)


def result_steps(accountant: PrivacyAccountant, mechanism_name: str) -> int:
    """Steps recorded for ``mechanism_name`` in ``accountant`` (the last such spend)."""
    for spend in reversed(accountant.spends):
        if spend.name == mechanism_name:
            return int(spend.details.get("steps", 0))
    return 0


def _conditional_loss(
    raw: torch.Tensor, conditions: ConditionSpace, span_idx: torch.Tensor, slot: torch.Tensor
) -> torch.Tensor:
    """CTGAN's conditional loss: cross-entropy of the conditioned span's logits against the
    requested slot, summed over spans and averaged over the batch (generated rows only)."""
    loss = raw.new_zeros(())
    for j, (start, width) in enumerate(conditions.spans):
        rows = torch.nonzero(span_idx == j).squeeze(1)
        if rows.numel():
            loss = loss + F.cross_entropy(raw[rows, start : start + width], slot[rows], reduction="sum")
    return loss / max(raw.shape[0], 1)


@torch.no_grad()
def _generate(
    generator: CTGANGenerator,
    conditions: ConditionSpace,
    layout: _Layout,
    n: int,
    gen: torch.Generator,
) -> NDArray[np.float32]:
    """``n`` rows ``(n, d)`` from ``generator`` under DP-frequency conditions, softmax spans one-hot."""
    generator.eval()
    device = next(generator.parameters()).device
    chunks: list[NDArray[np.float32]] = []
    for start in range(0, n, _SAMPLE_CHUNK):
        m = min(_SAMPLE_CHUNK, n - start)
        cond, _, _ = conditions.draw(m, log_frequency=False, gen=gen, device=device)
        z = torch.randn(m, generator.noise_dim, generator=gen, device=device)
        out = layout.activate(generator(z, cond), gen, hard=True)
        chunks.append(out.cpu().numpy().astype(np.float32))
    if not chunks:
        return np.zeros((0, generator.data_dim), dtype=np.float32)
    return np.concatenate(chunks)


# ------------------------------------------------------------------------------------------------
# the synthesizer


def validate_ctgan_params(params: dict[str, Any]) -> None:
    """Raise :class:`ParameterError` naming the first invalid DP-CTGAN parameter."""

    def positive_int(name: str) -> None:
        v = params[name]
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1:
            raise ParameterError(f"{name} must be an integer >= 1, got {v!r}")

    def positive_float(name: str, *, allow_zero: bool = False) -> None:
        v = params[name]
        ok = isinstance(v, int | float | np.number) and not isinstance(v, bool) and math.isfinite(float(v))
        if not ok or float(v) < 0 or (float(v) == 0 and not allow_zero):
            raise ParameterError(
                f"{name} must be a finite number {'>= 0' if allow_zero else '> 0'}, got {v!r}"
            )

    def widths(name: str) -> None:
        v = params[name]
        if (
            not isinstance(v, list | tuple)
            or not v
            or any(isinstance(h, bool) or not isinstance(h, int | np.integer) or h < 1 for h in v)
        ):
            raise ParameterError(f"{name} must be a non-empty list of integers >= 1, got {v!r}")

    for name in ("epochs", "batch_size", "embedding_dim", "pac", "generator_steps"):
        positive_int(name)
    for name in ("generator_lr", "discriminator_lr", "max_grad_norm", "gp_lambda"):
        positive_float(name)
    positive_float("weight_decay", allow_zero=True)
    widths("generator_dim")
    widths("discriminator_dim")
    if params["pac"] > params["batch_size"]:
        raise ParameterError(
            f"pac must be <= batch_size, got pac={params['pac']} batch_size={params['batch_size']}"
        )
    if not isinstance(params["log_frequency"], bool):
        raise ParameterError(f"log_frequency must be true or false, got {params['log_frequency']!r}")
    device = params["device"]
    if not isinstance(device, str) or (
        device not in ("auto", "cpu", "cuda") and not device.startswith("cuda:")
    ):
        raise ParameterError(f"device must be auto, cpu or cuda[:N], got {device!r}")


@register_generator
class DPCTGANSynthesizer(Synthesizer):
    """DP-CTGAN (see the module docstring for how each part of CTGAN is made private).

    Args:
        epochs: DP-SGD epochs of the critic (expected passes over the rows; one critic step per
            Poisson batch).
        batch_size: expected Poisson batch size of the critic, rows; also the generator's batch.
        generator_lr: generator Adam learning rate (β = (0.5, 0.9)).
        discriminator_lr: critic Adam learning rate (β = (0.5, 0.9)).
        weight_decay: Adam weight decay of both networks.
        embedding_dim: latent noise dimension of the generator.
        generator_dim: widths of the generator's residual blocks.
        discriminator_dim: widths of the critic's hidden layers.
        pac: rows per critic pack (1 under DP: a pack > 1 halves the clip, see the docstring).
        generator_steps: generator updates per critic step (free: no private rows).
        gp_lambda: gradient-penalty weight λ.
        max_grad_norm: per-unit clipping bound of the critic's gradient (L2).
        log_frequency: generator steps draw conditions from DP log-frequencies (else frequencies).
        device: ``auto``, ``cpu`` or ``cuda[:N]``.
    """

    name = "dp_ctgan"

    def __init__(
        self,
        *,
        epochs: int = 12,
        batch_size: int = 500,
        generator_lr: float = 1e-3,
        discriminator_lr: float = 1e-3,
        weight_decay: float = 1e-6,
        embedding_dim: int = 64,
        generator_dim: list[int] | tuple[int, ...] = (128, 128),
        discriminator_dim: list[int] | tuple[int, ...] = (128, 128),
        pac: int = 1,
        generator_steps: int = 1,
        gp_lambda: float = 10.0,
        max_grad_norm: float = 1.0,
        log_frequency: bool = True,
        device: str = "auto",
    ) -> None:
        params = {
            "epochs": epochs,
            "batch_size": batch_size,
            "generator_lr": generator_lr,
            "discriminator_lr": discriminator_lr,
            "weight_decay": weight_decay,
            "embedding_dim": embedding_dim,
            "generator_dim": list(generator_dim) if isinstance(generator_dim, tuple) else generator_dim,
            "discriminator_dim": list(discriminator_dim)
            if isinstance(discriminator_dim, tuple)
            else discriminator_dim,
            "pac": pac,
            "generator_steps": generator_steps,
            "gp_lambda": gp_lambda,
            "max_grad_norm": max_grad_norm,
            "log_frequency": log_frequency,
            "device": device,
        }
        validate_ctgan_params(params)
        super().__init__(**params)
        self.generator_: CTGANGenerator | None = None

    def _fit_matrix(
        self,
        matrix: np.ndarray,
        accountant: PrivacyAccountant,
        *,
        seed: int,
        progress: ProgressCallback | None,
    ) -> dict[str, Any]:
        assert self.transformer_ is not None
        run = train_dp_ctgan(matrix, self.transformer_, accountant, self.params, seed=seed, progress=progress)
        self.generator_ = run.generator
        return run.facts

    def _sample_matrix(self, n: int, rng: np.random.Generator) -> np.ndarray:
        assert self.generator_ is not None and self.transformer_ is not None
        gen = torch.Generator().manual_seed(int(rng.integers(0, 2**63 - 1)))
        return _generate(
            self.generator_,
            ConditionSpace(self.transformer_),
            _Layout(self.transformer_.spans, torch.device("cpu")),
            n,
            gen,
        )

    def _model_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        assert self.generator_ is not None
        return generator_config(self.generator_), {
            k: v.detach().cpu() for k, v in self.generator_.state_dict().items()
        }

    def _restore_model(self, config: dict[str, Any], state: dict[str, Any]) -> None:
        self.generator_ = build_generator(config, state)


def generator_config(generator: CTGANGenerator) -> dict[str, Any]:
    """Architecture of a generator as JSON types (its weights go in the bundle's state dict)."""
    hidden = [block.fc.out_features for block in generator.body if isinstance(block, _Residual)]
    return {
        "noise_dim": generator.noise_dim,
        "cond_dim": generator.cond_dim,
        "hidden": hidden,
        "data_dim": generator.data_dim,
    }


def build_generator(config: dict[str, Any], state: dict[str, Any]) -> CTGANGenerator:
    generator = CTGANGenerator(
        int(config["noise_dim"]),
        int(config["cond_dim"]),
        [int(h) for h in config["hidden"]],
        int(config["data_dim"]),
    )
    generator.load_state_dict(state)
    return generator.eval()


def sample_members(
    generators: list[CTGANGenerator],
    weights: list[float],
    transformer: TableTransformer,
    n: int,
    rng: np.random.Generator,
) -> NDArray[np.float32]:
    """``n`` rows from a weighted mixture of generators (rows shuffled so no member comes first)."""
    counts = rng.multinomial(n, np.asarray(weights, dtype=np.float64) / float(np.sum(weights)))
    conditions = ConditionSpace(transformer)
    layout = _Layout(transformer.spans, torch.device("cpu"))
    parts = []
    for generator, count in zip(generators, counts, strict=True):
        gen = torch.Generator().manual_seed(int(rng.integers(0, 2**63 - 1)))
        parts.append(_generate(generator, conditions, layout, int(count), gen))
    out = np.concatenate(parts) if parts else np.zeros((0, transformer.output_dim), dtype=np.float32)
    return out[rng.permutation(out.shape[0])]
