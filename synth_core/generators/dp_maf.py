"""DP-MAF: a masked autoregressive flow (Papamakarios et al. 2017) trained with DP-SGD.

The model
    A stack of ``n_blocks`` MADE blocks (Germain et al. 2015). Block ``k`` is an affine
    autoregressive transform ``u_i = (x_i - μ_i(x_<π_k(i))) · exp(-α_i(x_<π_k(i)))`` in the
    variable order ``π_k``; the orders alternate natural / reversed (or are seeded random
    permutations), which is the paper's "permutation between blocks" written as a change of
    MADE ordering, so base dimension ``i`` stays the residual of flow dimension ``i`` (one per
    transformer span) and the diagnostics can name it by its column. Training minimises the
    exact negative log-likelihood ``-log N(u; 0, I) + Σ_blocks Σ_i α_i`` per row.

No BatchNorm
    The paper's batch-norm layers between blocks are dropped: their batch statistics mix private
    rows (Opacus refuses them) and their running averages would be un-noised aggregates of the
    data. Nothing replaces them with data-dependent state: the inputs are already standardised
    (the transformer's DP quantile-normal spans and the DP-CDF dequantisation below give
    approximately N(0, 1) marginals), every block's output layer starts at zero (each block
    starts as the identity), its biases subsume a per-dimension affine (what BatchNorm's γ/β
    learn), and ``α`` is soft-clamped to ``±3`` for stability under DP noise.

Categorical spans (DP-CDF dequantisation)
    Each softmax span of the transformer (a categorical/boolean column, or the NULL indicator of
    a nullable continuous column) becomes *one* continuous flow dimension. Its slots are laid
    out on ``[0, 1]`` as intervals whose widths are the transformer's DP category weights / DP
    NULL rate (already-released DP outputs, so post-processing; mixed with 5 % uniform so no
    slot has zero width). A row with slot ``k`` is mapped to ``Φ⁻¹(U)`` with ``U`` uniform in
    slot ``k``'s interval, drawn afresh at every forward pass (per-row randomised
    preprocessing inside the DP-SGD loop, from OS entropy), so the flow sees a continuous,
    roughly N(0, 1) variable; a binary column is then exactly a probit model of its parents.
    Sampling decodes by the interval ``Φ(z)`` falls in (the argmax of the one-hot). The value of
    a NULL continuous cell is replaced by N(0, 1) noise (the decoder ignores it), so no point
    mass reaches the flow. Adult goes from ~120 one-hot columns to 15 flow dimensions.

Opacus and the masked layers
    :class:`MaskedLinear` computes ``x (W ⊙ M)ᵀ + b``. It has a registered per-sample gradient
    sampler (``(g aᵀ) ⊙ M``) for ``grad_sample_mode="hooks"`` and a norm sampler for ghost
    clipping (``‖(g aᵀ) ⊙ M‖²_F = (g²)ᵀ M (a²)`` for a 0/1 mask, no per-sample gradient
    materialised), so Opacus never falls back to functorch. Masked weights get zero gradient
    and (pure) noise, which they ignore: the forward multiplies them by zero.

Private diagnostics
    Residuals ``u = f(x)`` of *real* rows would describe individuals, so they are only released
    as DP histograms: at fit time, with a ``diagnostics_fraction`` share of the release's zCDP ρ
    reserved *before* the DP-SGD noise is calibrated (so the composed ε still meets the
    target), one Gaussian mechanism releases, for every base dimension, a histogram on fixed
    public bins and, for a few fixed pairs of consecutive dimensions, a 2-D histogram (one row
    adds one count to each: L2 sensitivity ``√(D + P)``). They live in the bundle (noisy counts
    only). :func:`plot_base_residuals` draws them together with a synthetic round trip
    (model samples decoded and re-encoded: post-processing) and never touches data.
"""

from __future__ import annotations

import base64
import io
import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from opacus.grad_sample import register_grad_sampler, register_norm_sampler
from scipy.special import ndtr
from torch import nn
from torch.nn import functional as F

from synth_core.dp_training import DPSGDConfig, ProgressCallback, train_with_dp_sgd
from synth_core.errors import ParameterError
from synth_core.generators.base import Synthesizer, check_int, register_generator
from synth_core.mechanisms import gaussian_sigma
from synth_core.privacy import PrivacyAccountant, secret_seed
from synth_core.transformer import Span, TableTransformer

#: bound of the soft-clamped log-scale α of every affine step
ALPHA_BOUND = 3.0
#: share of uniform mass mixed into the DP slot weights of a categorical dimension
CATEGORY_FLOOR = 0.05
#: U is kept in [ε, 1 - ε] before Φ⁻¹ (|z| ≤ 4.75), like the transformer's quantile spans
_U_EPS = 1e-6
#: U stays this share of a slot's width away from its edges, so float32 rounding never decodes a
#: dequantised value into the neighbouring slot
_SLOT_MARGIN = 1e-3
#: fixed public bins of the diagnostic histograms
DIAG_EDGES_1D: NDArray[np.float64] = np.linspace(-4.0, 4.0, 33)
DIAG_EDGES_2D: NDArray[np.float64] = np.linspace(-3.0, 3.0, 13)
#: at most this many (disjoint, consecutive) dimension pairs get a 2-D diagnostic histogram
DIAG_MAX_PAIRS = 3
_DIAG_BATCH = 8192


# ------------------------------------------------------------------------------------------------
# the masked layer and its Opacus samplers


class MaskedLinear(nn.Module):
    """``y = x (W ⊙ M)ᵀ + b`` with a fixed 0/1 connectivity mask ``M``.

    Args:
        in_features: input width.
        out_features: output width.
        mask: ``(out_features, in_features)`` 0/1 tensor.

    ``forward`` maps ``(B, in_features)`` (or ``(B, ..., in_features)``) to ``(B, out_features)``.
    The mask is a plain tensor attribute, not a buffer: Opacus refuses trainable layers with
    buffers (they usually hold un-noised data statistics); it is moved by ``.to()`` with the
    module and rebuilt from the variable order on load, so it is not in the ``state_dict``.
    """

    def __init__(self, in_features: int, out_features: int, mask: torch.Tensor) -> None:
        super().__init__()
        if tuple(mask.shape) != (out_features, in_features):
            raise ValueError(f"mask shape {tuple(mask.shape)} != {(out_features, in_features)}")
        self.in_features = in_features
        self.out_features = out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.empty(out_features))
        self.mask = mask.to(torch.float32).clone()
        # nn.Linear's initialisation, scaled to the number of unmasked inputs of each unit
        fan_in = self.mask.sum(dim=1).clamp(min=1.0)
        bound = (1.0 / fan_in).sqrt().unsqueeze(1)
        with torch.no_grad():
            self.weight.uniform_(-1.0, 1.0).mul_(bound)
            self.bias.uniform_(-1.0, 1.0).mul_(bound.squeeze(1))

    def _apply(self, fn: Any, recurse: bool = True) -> MaskedLinear:
        super()._apply(fn, recurse)
        self.mask = fn(self.mask)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"


@register_grad_sampler(MaskedLinear)
def masked_linear_grad_sample(
    layer: MaskedLinear, activations: list[torch.Tensor], backprops: torch.Tensor
) -> dict[nn.Parameter, torch.Tensor]:
    """Per-sample gradients of :class:`MaskedLinear`: ``(g aᵀ) ⊙ M`` for ``W``, ``g`` for ``b``.

    ``activations[0]`` is the layer input ``(B, ..., in)``, ``backprops`` the output gradient
    ``(B, ..., out)`` (Opacus scales it by the batch size for mean reduction); returns tensors of
    shape ``(B, out, in)`` and ``(B, out)``.
    """
    a = activations[0].to(backprops.dtype)
    out: dict[nn.Parameter, torch.Tensor] = {}
    if layer.weight.requires_grad:
        out[layer.weight] = torch.einsum("n...i,n...j->nij", backprops, a) * layer.mask
    if layer.bias.requires_grad:
        out[layer.bias] = torch.einsum("n...k->nk", backprops)
    return out


@register_norm_sampler(MaskedLinear)
def masked_linear_norm_sample(
    layer: MaskedLinear, activations: list[torch.Tensor], backprops: torch.Tensor
) -> dict[nn.Parameter, torch.Tensor]:
    """Per-sample gradient L2 norms of :class:`MaskedLinear` for ghost clipping, shape ``(B,)``.

    For a 2-D input, ``‖(g aᵀ) ⊙ M‖²_F = Σ_ij g_i² M_ij a_j² = (g²)ᵀ M (a²)`` because ``M`` is 0/1:
    ``O(B · out · in)`` work and ``O(B · in)`` memory. Higher-rank inputs materialise the
    per-sample gradient.
    """
    a = activations[0].to(backprops.dtype)
    out: dict[nn.Parameter, torch.Tensor] = {}
    if backprops.dim() == 2:
        if layer.weight.requires_grad:
            sq = ((backprops * backprops) @ layer.mask * (a * a)).sum(dim=1)
            out[layer.weight] = sq.clamp(min=0.0).sqrt()
        if layer.bias.requires_grad:
            out[layer.bias] = backprops.norm(dim=1)
        return out
    for param, grad in masked_linear_grad_sample(layer, activations, backprops).items():
        out[param] = grad.flatten(start_dim=1).norm(dim=1)
    return out


# ------------------------------------------------------------------------------------------------
# MADE and the flow


def made_masks(order: Sequence[int], hidden: Sequence[int]) -> list[torch.Tensor]:
    """MADE connectivity masks for the variable order ``order``.

    ``order[i]`` is the position (0-based) of flow dimension ``i`` in the autoregressive order.
    Returns one ``(out, in)`` 0/1 mask per layer: ``len(hidden)`` hidden layers and an output
    layer of width ``2·D`` (``μ`` then ``α``); output ``i`` depends only on dimensions that come
    before ``i`` in ``order``.
    """
    dim = len(order)
    deg_in = torch.as_tensor(order, dtype=torch.long) + 1  # degrees 1..D
    masks = []
    prev = deg_in
    for width in hidden:
        deg = torch.arange(width) % max(dim - 1, 1) + 1  # degrees 1..D-1, cyclic
        masks.append((deg[:, None] >= prev[None, :]).float())
        prev = deg
    out_mask = (deg_in[:, None] > prev[None, :]).float()
    masks.append(torch.cat([out_mask, out_mask], dim=0))
    return masks


class MADE(nn.Module):
    """One masked autoencoder block: ``x (B, D) -> (μ (B, D), α (B, D))``, autoregressive in ``order``."""

    def __init__(self, order: Sequence[int], hidden: Sequence[int]) -> None:
        super().__init__()
        self.dim = len(order)
        self.order = [int(p) for p in order]
        masks = made_masks(self.order, hidden)
        widths = [self.dim, *hidden, 2 * self.dim]
        self.layers = nn.ModuleList(
            MaskedLinear(a, b, m) for (a, b), m in zip(itertools.pairwise(widths), masks, strict=True)
        )
        last = self.layers[-1]
        assert isinstance(last, MaskedLinear)
        with torch.no_grad():  # every block starts as the identity map
            last.weight.zero_()
            last.bias.zero_()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = x
        for layer in self.layers[:-1]:
            h = torch.relu(layer(h))
        mu, raw = self.layers[-1](h).chunk(2, dim=-1)
        return mu, ALPHA_BOUND * torch.tanh(raw / ALPHA_BOUND)


class MAF(nn.Module):
    """The flow on ``D`` dimensions: ``forward(x (B, D)) -> (u (B, D), log|det ∂u/∂x| (B,))``."""

    def __init__(self, orders: Sequence[Sequence[int]], hidden: Sequence[int]) -> None:
        super().__init__()
        self.dim = len(orders[0])
        self.blocks = nn.ModuleList(MADE(order, hidden) for order in orders)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logdet = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        for block in self.blocks:
            mu, alpha = block(x)
            x = (x - mu) * torch.exp(-alpha)
            logdet = logdet - alpha.sum(dim=1)
        return x, logdet

    @torch.no_grad()
    def inverse(self, u: torch.Tensor) -> torch.Tensor:
        """``x = f⁻¹(u)``: ``D`` sequential passes per block (MAF samples slowly, evaluates fast)."""
        for block in reversed(self.blocks):
            assert isinstance(block, MADE)
            x = torch.zeros_like(u)
            for dim in np.argsort(block.order):
                mu, alpha = block(x)
                x[:, dim] = u[:, dim] * torch.exp(alpha[:, dim]) + mu[:, dim]
            u = x
        return u


class FlowLayout(nn.Module):
    """Maps compact rows to flow inputs (DP-CDF dequantisation) and flow outputs back to the matrix.

    A compact row ``(D,)`` holds one value per transformer span: the continuous value of a
    continuous span, the slot index of a softmax span. Built from the transformer's layout and
    DP outputs only (public metadata, DP weights); holds no data.
    """

    cat_dims: torch.Tensor
    cat_offsets: torch.Tensor
    slot_lo: torch.Tensor
    slot_mass: torch.Tensor
    nullable_value_dims: torch.Tensor
    nullable_flag_dims: torch.Tensor

    def __init__(self, spans: Sequence[Span], slot_masses: Sequence[Sequence[float] | None]) -> None:
        super().__init__()
        self.spans = list(spans)
        self.dim = len(self.spans)
        cat_dims: list[int] = []
        offsets: list[int] = []
        lo: list[float] = []
        mass: list[float] = []
        value_dims: list[int] = []
        flag_dims: list[int] = []
        for i, (span, masses) in enumerate(zip(self.spans, slot_masses, strict=True)):
            if span.kind == "softmax":
                assert masses is not None and len(masses) == span.width
                m = np.asarray(masses, dtype=np.float64)
                cat_dims.append(i)
                offsets.append(len(mass))
                lo.extend((np.cumsum(m) - m).tolist())
                mass.extend(m.tolist())
            elif i > 0 and self.spans[i - 1].role == "missing" and self.spans[i - 1].column == span.column:
                value_dims.append(i)
                flag_dims.append(i - 1)
        self.register_buffer("cat_dims", torch.tensor(cat_dims, dtype=torch.long))
        self.register_buffer("cat_offsets", torch.tensor(offsets, dtype=torch.long))
        self.register_buffer("slot_lo", torch.tensor(lo, dtype=torch.float32))
        self.register_buffer("slot_mass", torch.tensor(mass, dtype=torch.float32))
        self.register_buffer("nullable_value_dims", torch.tensor(value_dims, dtype=torch.long))
        self.register_buffer("nullable_flag_dims", torch.tensor(flag_dims, dtype=torch.long))
        self.generator: torch.Generator | None = None

    def compact(self, matrix: NDArray[np.float32]) -> NDArray[np.float32]:
        """``(n, transformer width)`` → ``(n, D)``: continuous values and slot indices (argmax)."""
        out = np.empty((matrix.shape[0], self.dim), dtype=np.float32)
        for i, span in enumerate(self.spans):
            block = matrix[:, span.start : span.start + span.width]
            out[:, i] = block[:, 0] if span.kind == "continuous" else np.argmax(block, axis=1)
        return out

    def _noise_generator(self, device: torch.device) -> torch.Generator:
        # dequantisation noise comes from OS entropy, never from the user's seed
        if self.generator is None or self.generator.device != device:
            self.generator = torch.Generator(device=device).manual_seed(secret_seed())
        return self.generator

    def dequantize(self, compact: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``(B, D)`` compact rows → ``(B, D)`` continuous flow inputs (fresh noise each call).

        The noise comes from ``generator`` when given (post-processing of model samples), else
        from a generator seeded with OS entropy (training and the DP diagnostics).
        """
        x = compact.clone()
        gen = generator if generator is not None else self._noise_generator(compact.device)
        if self.cat_dims.numel():
            codes = compact[:, self.cat_dims].round().long()
            idx = self.cat_offsets + codes
            u = (
                self.slot_lo[idx]
                + (
                    _SLOT_MARGIN
                    + (1 - 2 * _SLOT_MARGIN) * torch.rand(codes.shape, generator=gen, device=compact.device)
                )
                * self.slot_mass[idx]
            )
            x[:, self.cat_dims] = torch.special.ndtri(u.clamp(_U_EPS, 1.0 - _U_EPS))
        if self.nullable_value_dims.numel():
            null = compact[:, self.nullable_flag_dims].round() == 1.0
            noise = torch.randn(null.shape, generator=gen, device=compact.device)
            x[:, self.nullable_value_dims] = torch.where(null, noise, x[:, self.nullable_value_dims])
        return x

    def decode(self, z: NDArray[np.float32], width: int) -> NDArray[np.float32]:
        """``(n, D)`` flow samples → ``(n, width)`` matrix with one-hot softmax spans."""
        n = z.shape[0]
        out = np.zeros((n, width), dtype=np.float32)
        lo = self.slot_lo.cpu().numpy().astype(np.float64)
        mass = self.slot_mass.cpu().numpy().astype(np.float64)
        cat_pos = {
            int(d): int(o) for d, o in zip(self.cat_dims.tolist(), self.cat_offsets.tolist(), strict=True)
        }
        for i, span in enumerate(self.spans):
            col = np.nan_to_num(z[:, i].astype(np.float64), nan=0.0)
            if span.kind == "continuous":
                out[:, span.start] = col
                continue
            off = cat_pos[i]
            upper = (lo + mass)[off : off + span.width]
            codes = np.searchsorted(upper[:-1], ndtr(col), side="right")
            out[np.arange(n), span.start + codes] = 1.0
        return out


class MAFModule(nn.Module):
    """Dequantisation + flow: ``forward(compact (B, D)) -> (u (B, D), log|det| (B,))``."""

    def __init__(self, layout: FlowLayout, flow: MAF) -> None:
        super().__init__()
        self.layout = layout
        self.flow = flow

    def forward(self, compact: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.flow(self.layout.dequantize(compact))


class MAFLoss(nn.Module):
    """Per-row negative log-likelihood in nats, ``-log N(u; 0, I) - log|det ∂u/∂x|``.

    ``reduction``: ``"none"`` (shape ``(B,)``, for ghost clipping), ``"mean"`` or ``"sum"``.
    """

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        self.reduction = reduction

    def forward(self, output: tuple[torch.Tensor, torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        u, logdet = output
        nll = 0.5 * (u * u).sum(dim=1) + 0.5 * u.shape[1] * math.log(2 * math.pi) - logdet
        if self.reduction == "none":
            return nll
        if self.reduction == "sum":
            return nll.sum()
        return nll.mean()


def block_orders(dim: int, n_blocks: int, permutation: str, seed: int) -> list[list[int]]:
    """Variable order of each block (``order[i]`` = position of dimension ``i``).

    ``reverse``: natural, reversed, natural, … (the paper's choice); ``random``: the first block
    natural, then permutations drawn from ``seed`` (public: an initialisation choice).
    """
    rng = np.random.default_rng(seed)
    orders = []
    for k in range(n_blocks):
        if permutation == "reverse" or k == 0:
            order = list(range(dim)) if k % 2 == 0 else list(range(dim - 1, -1, -1))
        else:
            order = rng.permutation(dim).tolist()
        orders.append([int(p) for p in order])
    return orders


def slot_masses(transformer: TableTransformer) -> list[list[float] | None]:
    """Interval widths of every softmax span's slots, from the transformer's DP outputs only.

    Categorical/boolean spans: DP category weights (scaled to ``1 - DP NULL rate``), the "other"
    slot 0, the NULL slot the DP NULL rate; NULL-indicator spans of continuous columns: ``(1 -
    rate, rate)``. Then mixed with :data:`CATEGORY_FLOOR` of uniform mass so every slot has width.
    """
    by_name = {c.name: c for c in transformer.columns}
    out: list[list[float] | None] = []
    for span in transformer.spans:
        if span.kind != "softmax":
            out.append(None)
            continue
        col = by_name[span.column]
        null = float(min(max(col.null_fraction, 0.0), 1.0)) if col.nullable else 0.0
        if span.role == "missing":
            w = np.array([1.0 - null, null])
        else:
            k = len(col.categories or [])
            cw = np.asarray(col.category_weights or np.ones(k), dtype=np.float64).clip(min=0.0)
            cw = cw / cw.sum() if cw.sum() > 0 else np.full(k, 1.0 / max(k, 1))
            parts = [cw * (1.0 - null)]
            if col.has_other:
                parts.append(np.zeros(1))
            if col.nullable:
                parts.append(np.array([null]))
            w = np.concatenate(parts)
        assert w.size == span.width
        w = w / w.sum() if w.sum() > 0 else np.full(span.width, 1.0 / span.width)
        w = (1.0 - CATEGORY_FLOOR) * w + CATEGORY_FLOOR / span.width
        out.append((w / w.sum()).tolist())
    return out


def diagnostic_pairs(dim: int) -> list[tuple[int, int]]:
    """Fixed (data-independent) pairs of base dimensions with a 2-D diagnostic: (0,1), (2,3), …"""
    return [(i, i + 1) for i in range(0, dim - 1, 2)][:DIAG_MAX_PAIRS]


# ------------------------------------------------------------------------------------------------
# the generator


@register_generator
class DPMAFSynthesizer(Synthesizer):
    """DP-MAF: a masked autoregressive flow trained with DP-SGD (see the module docstring).

    Args:
        epochs: DP-SGD epochs (expected passes over the rows).
        batch_size: expected Poisson batch size, rows.
        learning_rate: Adam learning rate.
        max_grad_norm: per-sample gradient clipping bound (L2 norm of the gradient of one row's
            NLL in nats).
        n_blocks: number of MADE blocks (affine autoregressive transforms), ≥ 1.
        hidden: widths of every MADE's hidden layers (units), each ≥ 1; stored as a list.
        permutation: variable order between blocks: ``reverse`` (alternate natural and reversed,
            the paper's choice) or ``random`` (seeded permutations after the first block).
        diagnostics_fraction: share of the release's zCDP ρ (of the target (ε, δ)) spent at fit
            time on the DP histograms of real rows' base-space residuals behind
            :func:`plot_base_residuals`; ``0`` spends nothing (the plots then show only the
            synthetic round trip). In ``[0, 0.5)``.
        grad_sample_mode: Opacus per-sample gradient mode: ``ghost`` (ghost clipping via the
            masked layer's norm sampler) or ``hooks`` (its grad sampler).
        device: ``auto``, ``cpu`` or ``cuda[:N]``.
        max_physical_batch_size: rows per forward/backward pass; a larger Poisson batch is split
            and its clipped gradients summed before the one noisy step (Opacus's
            ``BatchMemoryManager``: same accounting, bounded memory). ``None``: no split.
    """

    name = "dp_maf"

    def __init__(
        self,
        *,
        epochs: int = 20,
        batch_size: int = 500,
        learning_rate: float = 2e-3,
        max_grad_norm: float = 1.0,
        n_blocks: int = 5,
        hidden: Sequence[int] = (128, 128),
        permutation: str = "reverse",
        diagnostics_fraction: float = 0.02,
        grad_sample_mode: str = "ghost",
        device: str = "auto",
        max_physical_batch_size: int | None = None,
    ) -> None:
        super().__init__(
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=learning_rate,
            max_grad_norm=max_grad_norm,
            n_blocks=n_blocks,
            hidden=list(hidden) if isinstance(hidden, list | tuple) else hidden,
            permutation=permutation,
            diagnostics_fraction=diagnostics_fraction,
            grad_sample_mode=grad_sample_mode,
            device=device,
            max_physical_batch_size=max_physical_batch_size,
        )
        check_int("epochs", epochs, 1)
        check_int("batch_size", batch_size, 1)
        check_int("n_blocks", n_blocks, 1)
        if not isinstance(hidden, list | tuple) or not hidden:
            raise ParameterError(f"hidden must be a non-empty list of layer widths, got {hidden!r}")
        for width in hidden:
            check_int("hidden", width, 1)
        if permutation not in ("reverse", "random"):
            raise ParameterError(f"permutation must be 'reverse' or 'random', got {permutation!r}")
        if (
            isinstance(diagnostics_fraction, bool)
            or not isinstance(diagnostics_fraction, int | float)
            or not (0.0 <= diagnostics_fraction < 0.5)
        ):
            raise ParameterError(f"diagnostics_fraction must be in [0, 0.5), got {diagnostics_fraction!r}")
        for name, value in (("learning_rate", learning_rate), ("max_grad_norm", max_grad_norm)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not (value > 0):
                raise ParameterError(f"{name} must be a number > 0, got {value!r}")
        self.dp_config = DPSGDConfig(
            epochs=int(epochs),
            batch_size=int(batch_size),
            learning_rate=float(learning_rate),
            max_grad_norm=float(max_grad_norm),
            grad_sample_mode=grad_sample_mode,
            device=device,
            max_physical_batch_size=max_physical_batch_size,
        )
        self.model_: MAFModule | None = None
        #: DP residual histograms released at fit time (``None``: not fitted or disabled)
        self.diagnostics_: dict[str, Any] | None = None

    # -- model -----------------------------------------------------------------------------------
    def _build(self, orders: list[list[int]], masses: list[list[float] | None]) -> MAFModule:
        transformer = self._require_fitted()
        layout = FlowLayout(transformer.spans, masses)
        return MAFModule(layout, MAF(orders, [int(h) for h in self.params["hidden"]]))

    def _fit_matrix(
        self,
        matrix: np.ndarray,
        accountant: PrivacyAccountant,
        *,
        seed: int,
        progress: ProgressCallback | None,
    ) -> dict[str, Any]:
        transformer = self._require_fitted()
        dim = len(transformer.spans)
        pairs = diagnostic_pairs(dim)
        # the zCDP ρ of the whole target (ε, δ), as the accountant computed it for preprocessing
        total_rho = accountant.preprocessing_rho / accountant.budget.preprocessing_fraction
        diag_rho = float(self.params["diagnostics_fraction"]) * total_rho
        if diag_rho > 0:
            # reserved before DP-SGD is calibrated, so training leaves room for it; released below
            accountant.spend_gaussian(
                "diagnostics:maf-base-residuals", diag_rho, dims=dim, pairs=len(pairs),
                l2_sensitivity=math.sqrt(dim + len(pairs)),
            )  # fmt: skip
        torch.manual_seed(seed)
        orders = block_orders(dim, int(self.params["n_blocks"]), str(self.params["permutation"]), seed)
        model = self._build(orders, slot_masses(transformer))
        compact = model.layout.compact(matrix)
        result = train_with_dp_sgd(
            model, MAFLoss(), compact, accountant, self.dp_config,
            row_count=transformer.dp_row_count, progress=progress,
        )  # fmt: skip
        self.model_ = model.eval()
        self.diagnostics_ = (
            _release_residual_histograms(model, compact, pairs, diag_rho) if diag_rho > 0 else None
        )
        # no training loss and no exact row count here: both are un-noised statistics of the
        # private rows, and this dict goes into the bundle (fit quality: the DP diagnostics)
        return {
            "noise_multiplier": result.noise_multiplier,
            "sample_rate": result.sample_rate,
            "steps": result.steps,
            "seconds": result.seconds,
            "device": result.device,
            "flow_dims": dim,
        }

    @torch.no_grad()
    def _sample_matrix(self, n: int, rng: np.random.Generator) -> np.ndarray:
        assert self.model_ is not None and self.transformer_ is not None
        gen = torch.Generator().manual_seed(int(rng.integers(0, 2**63 - 1)))
        u = torch.randn(n, self.model_.flow.dim, generator=gen)
        x = self.model_.flow.inverse(u).numpy()
        return self.model_.layout.decode(x, self.transformer_.output_dim)

    def _model_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        assert self.model_ is not None
        config = {
            "orders": [block.order for block in self.model_.flow.blocks],
            "slot_masses": _span_masses(self.model_.layout),
            "diagnostics": self.diagnostics_,
        }
        state = {k: v.detach().cpu() for k, v in self.model_.state_dict().items()}
        return config, state

    def _restore_model(self, config: dict[str, Any], state: dict[str, Any]) -> None:
        model = self._build([list(o) for o in config["orders"]], config["slot_masses"])
        model.load_state_dict(state)
        self.model_ = model.eval()
        self.diagnostics_ = config.get("diagnostics")

    # -- diagnostics -----------------------------------------------------------------------------
    def diagnostics(self) -> dict[str, bytes]:
        """The base-space residual plots for the release report (:func:`plot_base_residuals`).

        Built from the DP residual histograms released at fit time and a synthetic round trip:
        no real row is read, so the figure may go into the shareable report.
        """
        png = plot_base_residuals(self, fmt="png")
        assert isinstance(png, bytes)
        return {"DP-MAF base-space residuals (real: DP histograms; synthetic: round trip)": png}

    def base_dimension_names(self) -> list[str]:
        """Name of each base dimension: the transformer span it is the residual of."""
        transformer = self._require_fitted()
        return [f"{s.column}{' (null)' if s.role == 'missing' else ''}" for s in transformer.spans]

    @torch.no_grad()
    def synthetic_round_trip(self, n: int, *, seed: int | None = 0) -> NDArray[np.float32]:
        """Base-space residuals ``(n, D)`` of ``n`` model samples decoded and re-encoded.

        ``u ~ N(0, I) → x = f⁻¹(u) → table matrix (categorical slots decoded) → re-dequantised →
        f(x')``. Pure post-processing of the model: spends nothing, touches no data. Continuous
        dimensions come back as drawn; categorical ones show what slot decoding does.
        """
        if self.model_ is None:
            raise ParameterError(f"generator {self.name!r} is not fitted: call fit() or load() first")
        transformer = self._require_fitted()
        gen = torch.Generator().manual_seed(int(np.random.default_rng(seed).integers(0, 2**63 - 1)))
        u = torch.randn(n, self.model_.flow.dim, generator=gen)
        matrix = self.model_.layout.decode(self.model_.flow.inverse(u).numpy(), transformer.output_dim)
        compact = torch.from_numpy(self.model_.layout.compact(matrix))
        residual, _ = self.model_.flow(self.model_.layout.dequantize(compact, gen))
        return residual.numpy().astype(np.float32)


def _span_masses(layout: FlowLayout) -> list[list[float] | None]:
    mass = layout.slot_mass.tolist()
    offsets = dict(zip(layout.cat_dims.tolist(), layout.cat_offsets.tolist(), strict=True))
    return [
        mass[offsets[i] : offsets[i] + s.width] if s.kind == "softmax" else None
        for i, s in enumerate(layout.spans)
    ]


@torch.no_grad()
def _release_residual_histograms(
    model: MAFModule, compact: NDArray[np.float32], pairs: list[tuple[int, int]], rho: float
) -> dict[str, Any]:
    """The Gaussian mechanism on the real rows' base-space residual histograms (ρ-zCDP).

    One row adds one count to each of the ``D`` 1-D histograms (fixed bins :data:`DIAG_EDGES_1D`
    plus two tail cells) and each of the ``P`` 2-D histograms (:data:`DIAG_EDGES_2D`, tails
    clipped into the outer cells): L2 sensitivity ``√(D + P)`` under adding/removing a row, noise
    σ = ``√(D + P) / √(2ρ)`` per cell from OS entropy. Returns noisy counts only.
    """
    dim = model.flow.dim
    inner = DIAG_EDGES_1D.size - 1
    side = DIAG_EDGES_2D.size - 1
    counts_1d = np.zeros((dim, inner + 2))
    counts_2d = np.zeros((len(pairs), side, side))
    model.eval()
    for start in range(0, compact.shape[0], _DIAG_BATCH):
        u, _ = model(torch.from_numpy(compact[start : start + _DIAG_BATCH]))
        r = np.nan_to_num(u.numpy().astype(np.float64), nan=0.0, posinf=1e9, neginf=-1e9)
        for d in range(dim):
            cells = np.searchsorted(DIAG_EDGES_1D, r[:, d], side="right")  # 0: < -4, inner + 1: >= 4
            counts_1d[d] += np.bincount(cells, minlength=inner + 2)[: inner + 2]
        for p, (i, j) in enumerate(pairs):
            clipped = np.clip(r[:, [i, j]], DIAG_EDGES_2D[0], DIAG_EDGES_2D[-1])
            h, _, _ = np.histogram2d(clipped[:, 0], clipped[:, 1], bins=[DIAG_EDGES_2D, DIAG_EDGES_2D])
            counts_2d[p] += h
    sigma = math.sqrt(dim + len(pairs)) * gaussian_sigma(rho)
    noise = np.random.default_rng(secret_seed())
    return {
        "mechanism": "gaussian",
        "rho": rho,
        "sigma": sigma,
        "edges_1d": DIAG_EDGES_1D.tolist(),
        "edges_2d": DIAG_EDGES_2D.tolist(),
        "pairs": [list(p) for p in pairs],
        "counts_1d": (counts_1d + noise.normal(0.0, sigma, counts_1d.shape)).tolist(),
        "counts_2d": (counts_2d + noise.normal(0.0, sigma, counts_2d.shape)).tolist(),
    }


# ------------------------------------------------------------------------------------------------
# plots


def plot_base_residuals(
    synth: DPMAFSynthesizer, *, fmt: str = "png", n_synthetic: int = 4000, seed: int | None = 0
) -> bytes | str:
    """Diagnostic plots of a fitted DP-MAF's base space; spends no budget, reads no data.

    Top: one panel per base dimension (named by its column): the DP histogram of the real rows'
    residuals released at fit time (noisy density, negative counts clipped to 0; absent when
    ``diagnostics_fraction`` was 0), the synthetic round trip's histogram, and the N(0, 1)
    density they should match. Bottom: for a few fixed pairs of dimensions, the DP 2-D
    histogram of real residuals (heat map) and a scatter of synthetic round-trip residuals.

    Args:
        synth: a fitted (or loaded) :class:`DPMAFSynthesizer`.
        fmt: ``png`` (returns PNG bytes) or ``html`` (returns a self-contained ``<figure>``
            fragment with the PNG inlined as base64).
        n_synthetic: rows of the synthetic round trip.
        seed: seed of the synthetic round trip.
    """
    if fmt not in ("png", "html"):
        raise ParameterError(f"fmt must be 'png' or 'html', got {fmt!r}")
    check_int("n_synthetic", n_synthetic, 1)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = synth.base_dimension_names()
    dim = len(names)
    synthetic = synth.synthetic_round_trip(n_synthetic, seed=seed)
    diag = synth.diagnostics_
    pairs = [tuple(p) for p in diag["pairs"]] if diag else diagnostic_pairs(dim)
    ncols = 5
    nrows_1d = math.ceil(dim / ncols)
    nrows_2d = 2 if pairs else 0
    fig = Figure(figsize=(3.0 * ncols, 2.4 * (nrows_1d + nrows_2d)), layout="constrained")
    FigureCanvasAgg(fig)  # Agg, no pyplot state
    grid = fig.add_gridspec(nrows_1d + nrows_2d, max(ncols, len(pairs)))
    edges = np.asarray(diag["edges_1d"]) if diag else DIAG_EDGES_1D
    centers = (edges[:-1] + edges[1:]) / 2
    width = float(edges[1] - edges[0])
    grid_x = np.linspace(edges[0], edges[-1], 200)
    pdf = np.exp(-0.5 * grid_x**2) / math.sqrt(2 * math.pi)
    for d, name in enumerate(names):
        ax = fig.add_subplot(grid[d // ncols, d % ncols])
        if diag:
            counts = np.clip(np.asarray(diag["counts_1d"][d], dtype=np.float64), 0.0, None)
            total = counts.sum()
            if total > 0:
                ax.bar(centers, counts[1:-1] / (total * width), width=width, color="#9ecae1",
                       label="real (DP histogram)")  # fmt: skip
        syn_hist, _ = np.histogram(np.clip(synthetic[:, d], edges[0], edges[-1]), bins=edges)
        ax.step(centers, syn_hist / (max(len(synthetic), 1) * width), where="mid", color="#e6550d",
                linewidth=1.0, label="synthetic round trip")  # fmt: skip
        ax.plot(grid_x, pdf, color="black", linewidth=0.8, label="N(0, 1)")
        ax.set_title(f"u[{d}] {name}", fontsize=8)
        ax.tick_params(labelsize=6)
        if d == 0:
            ax.legend(fontsize=5, loc="upper left")
    edges_2d = np.asarray(diag["edges_2d"]) if diag else DIAG_EDGES_2D
    for p, (i, j) in enumerate(pairs):
        top = fig.add_subplot(grid[nrows_1d, p])
        if diag:
            heat = np.clip(np.asarray(diag["counts_2d"][p], dtype=np.float64), 0.0, None)
            top.imshow(heat.T, origin="lower", cmap="Blues", aspect="auto",
                       extent=(edges_2d[0], edges_2d[-1], edges_2d[0], edges_2d[-1]))  # fmt: skip
            top.set_title(f"real (DP 2-D histogram): u[{i}] vs u[{j}]", fontsize=7)
        else:
            top.set_title("real: not released (diagnostics_fraction = 0)", fontsize=7)
        bottom = fig.add_subplot(grid[nrows_1d + 1, p])
        bottom.scatter(synthetic[:, i], synthetic[:, j], s=1, alpha=0.3, color="#e6550d")
        bottom.set_xlim(edges_2d[0], edges_2d[-1])
        bottom.set_ylim(edges_2d[0], edges_2d[-1])
        bottom.set_title(f"synthetic round trip: u[{i}] vs u[{j}]", fontsize=7)
        for ax in (top, bottom):
            ax.set_xlabel(names[i], fontsize=6)
            ax.set_ylabel(names[j], fontsize=6)
            ax.tick_params(labelsize=6)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    png = buf.getvalue()
    if fmt == "png":
        return png
    note = (
        f"real-row histograms: Gaussian mechanism, ρ={diag['rho']:.4g}, noise σ={diag['sigma']:.3g} counts "
        "per cell, charged to the release budget at fit time"
        if diag
        else "no real-row histograms were released (diagnostics_fraction = 0)"
    )
    return (
        '<figure class="dpsynth-maf-diagnostics">'
        f'<img alt="DP-MAF base-space residual diagnostics" src="data:image/png;base64,{base64.b64encode(png).decode()}"/>'
        f"<figcaption>DP-MAF base-space residuals vs N(0, 1); {note}; synthetic round trip: "
        f"{n_synthetic} model samples (post-processing).</figcaption></figure>"
    )
