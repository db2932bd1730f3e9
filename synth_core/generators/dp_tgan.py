"""DP-TGAN: TGAN (Xu & Veeramachaneni 2018) with a DP-SGD discriminator.

Generator (never sees a private row): an LSTM that emits the row one span of the transformer's
layout at a time (Adult: 15 steps, one per column). At step ``t`` the LSTM cell reads
``[z, x'_{t−1}, a_{t−1}]`` — the noise vector, the previous step's output (for a continuous span
the previous feature vector ``f_{t−1}``, for a categorical span an embedding of its (soft) one-hot),
and an attention context ``a_{t−1} = Σ_{k≤t−1} softmax(α_{t−1})_k h_k`` over the previous hidden
states, with learned per-step attention logits ``α`` as in the paper. From the hidden state
``h_t`` it computes ``f_t = tanh(W h_t)`` and the span's output: a value in the DP quantile-normal
space for a continuous span, logits for a softmax span (Gumbel-softmax while training, a sampled
one-hot when sampling; the next step then conditions on what was actually emitted).

Discriminator: an MLP (Linear + LeakyReLU, no normalisation: BatchNorm mixes private samples)
trained with DP-SGD through :class:`~synth_core.dp_training.PrivateTrainer` (the whole release
budget after preprocessing). TGAN's mini-batch discrimination features are left out: they make
each sample's output depend on the rest of the batch, which per-sample clipping cannot bound.
Each step's private forward is ``D(cat[real Poisson batch, m fakes])`` with a fixed ``m`` (the
expected batch size), so one row's presence changes one clipped per-sample gradient only.

Generator loss, as in the paper: the non-saturating GAN loss through the (DP, frozen) discriminator
plus ``kl_weight × Σ KL(p_span ‖ q_span)`` over the softmax spans, where ``q`` is the batch's mean
generated distribution and ``p`` the column's DP marginal from the transformer (noisy category
counts and NULL rates already paid for in preprocessing: free). The paper's KL on the cluster
vectors of continuous columns has no counterpart here (the quantile transform has no modes); its
analogue is ``moment_weight × (mean² + (sd − sd_target)²)`` pulling each continuous span towards
the N(0, 1) (times the non-NULL share) that the DP quantile transform produces — data-free.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from synth_core.dp_training import (
    DPSGDConfig,
    PrivateTrainer,
    ProgressCallback,
    reseed_after_initialisation,
    resolve_device,
)
from synth_core.errors import ParameterError
from synth_core.generators.base import Synthesizer, check_float, check_int, register_generator
from synth_core.generators.dp_tablegan import (
    check_choice,
    check_device,
    discriminator_loss,
    frozen_private_module,
)
from synth_core.privacy import PrivacyAccountant
from synth_core.transformer import TableTransformer

_PROB_FLOOR = 1e-4


class LSTMGenerator(nn.Module):
    """TGAN's generator over a span layout ``[(kind, width), ...]`` (kind ``continuous``/``softmax``).

    ``forward(z, tau)`` with ``z`` ``(B, noise_dim)`` returns ``(rows (B, d), probs (B, d))``: rows
    in the transformer's layout (Gumbel-softmax spans at temperature ``tau``), and the plain
    softmax probabilities (continuous cells as emitted) for the marginal terms of the loss.
    ``sample(z, gen)`` draws one category per softmax span instead and returns one-hot rows.
    """

    def __init__(self, layout: list[tuple[str, int]], noise_dim: int, hidden: int, feature_dim: int) -> None:
        super().__init__()
        self.layout = [(str(kind), int(width)) for kind, width in layout]
        self.noise_dim = noise_dim
        self.hidden = hidden
        self.feature_dim = feature_dim
        steps = len(self.layout)
        self.init_hidden = nn.Linear(noise_dim, hidden)
        self.cell = nn.LSTMCell(noise_dim + feature_dim + hidden, hidden)
        self.to_feature = nn.Linear(hidden, feature_dim)
        self.attention = nn.Parameter(torch.zeros(steps, steps))
        self.heads = nn.ModuleList([nn.Linear(feature_dim, width) for _, width in self.layout])
        # categorical outputs are fed back through an embedding; continuous ones feed back f_t
        self.embeddings = nn.ModuleList(
            [nn.Linear(width, feature_dim, bias=False) for _, width in self.layout]
        )

    @property
    def data_dim(self) -> int:
        return sum(width for _, width in self.layout)

    def _run(
        self, z: torch.Tensor, tau: float, gen: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        b = z.shape[0]
        h = torch.tanh(self.init_hidden(z))
        c = torch.zeros_like(h)
        prev = z.new_zeros(b, self.feature_dim)
        context = z.new_zeros(b, self.hidden)
        states: list[torch.Tensor] = []
        rows: list[torch.Tensor] = []
        probs: list[torch.Tensor] = []
        for t, (kind, _width) in enumerate(self.layout):
            h, c = self.cell(torch.cat([z, prev, context], dim=1), (h, c))
            states.append(h)
            f = torch.tanh(self.to_feature(h))
            raw = self.heads[t](f)
            if kind == "continuous":
                out, p, prev = raw, raw, f
            else:
                p = torch.softmax(raw, dim=1)
                if gen is None:
                    out = F.gumbel_softmax(raw, tau=tau, hard=False)
                else:
                    picks = torch.multinomial(p, 1, generator=gen).squeeze(1)
                    out = F.one_hot(picks, raw.shape[1]).to(raw.dtype)
                prev = self.embeddings[t](out)
            rows.append(out)
            probs.append(p)
            weights = torch.softmax(self.attention[t, : t + 1], dim=0)
            context = torch.einsum("k,kbh->bh", weights, torch.stack(states))
        return torch.cat(rows, dim=1), torch.cat(probs, dim=1)

    def forward(self, z: torch.Tensor, tau: float = 0.2) -> tuple[torch.Tensor, torch.Tensor]:
        return self._run(z, tau, None)

    def sample(self, z: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return self._run(z, 1.0, gen)[0]


def mlp_discriminator(data_dim: int, hidden: list[int]) -> nn.Sequential:
    """``(B, d)`` → logits ``(B,)``: Linear + LeakyReLU(0.2) layers, then a linear output."""
    layers: list[nn.Module] = []
    width = data_dim
    for h in hidden:
        layers += [nn.Linear(width, h), nn.LeakyReLU(0.2)]
        width = h
    layers += [nn.Linear(width, 1), nn.Flatten(0)]
    return nn.Sequential(*layers)


def dp_marginal_targets(
    transformer: TableTransformer,
) -> tuple[list[tuple[int, int, torch.Tensor]], list[tuple[int, float]]]:
    """Marginal targets from the transformer's DP outputs (post-processing, no budget).

    Returns ``(softmax targets [(start, width, p (width,))], continuous targets [(column, sd)])``:
    each categorical span's slot distribution (noisy category counts, the "other" slot's share of
    the DP row count, the DP NULL rate), each nullable continuous column's present/missing split,
    and each continuous value's target SD (``sqrt`` of its non-NULL share; NULL rows encode 0).
    """
    soft: list[tuple[int, int, torch.Tensor]] = []
    cont: list[tuple[int, float]] = []
    for col in transformer.columns:
        null = float(np.clip(col.null_fraction, 0.0, 1.0)) if col.nullable else 0.0
        for span in col.spans:
            if span.kind == "continuous":
                cont.append((span.start, float(np.sqrt(max(1.0 - null, 1e-3)))))
                continue
            if span.role == "missing":
                p = np.array([1.0 - null, null])
            else:
                assert col.categories is not None
                k = len(col.categories)
                w = np.clip(np.asarray(col.category_weights or np.ones(k), dtype=np.float64), 0.0, None)
                if col.has_other:
                    present = transformer.dp_row_count * (1.0 - null)
                    w = np.append(w, max(present - w.sum(), 0.0))
                w = w / w.sum() if w.sum() > 0 else np.full(w.size, 1.0 / w.size)
                p = w * (1.0 - null)
                if col.nullable:
                    p = np.append(p, null)
            p = np.clip(p, _PROB_FLOOR, None)
            soft.append((span.start, span.width, torch.tensor(p / p.sum(), dtype=torch.float32)))
    return soft, cont


@register_generator
class DPTGANSynthesizer(Synthesizer):
    """DP-TGAN (see the module docstring for the architecture and the privacy design).

    Args:
        epochs: DP-SGD epochs of the discriminator (expected passes over the rows).
        batch_size: expected Poisson batch size in rows; also the fakes per D and per G step.
        discriminator_lr: Adam learning rate of the discriminator.
        generator_lr: Adam learning rate of the generator.
        max_grad_norm: per-sample L2 clipping bound of the discriminator.
        noise_dim: dimension of the generator's standard-normal input ``z``.
        lstm_hidden: LSTM hidden size (the paper's 100).
        feature_dim: size of ``f_t`` and of the categorical output embeddings.
        discriminator_hidden: widths of the discriminator's hidden layers.
        generator_steps: generator updates per discriminator step (no privacy cost).
        kl_weight: weight of the KL terms to the DP categorical marginals.
        moment_weight: weight of the continuous mean/SD terms (0 to leave them out).
        gumbel_tau: Gumbel-softmax temperature of categorical outputs during training.
        grad_sample_mode: Opacus per-sample gradient mode (``ghost`` or ``hooks``).
        device: ``auto``, ``cpu`` or ``cuda[:N]``.
    """

    name = "dp_tgan"

    def __init__(
        self,
        *,
        epochs: int = 10,
        batch_size: int = 500,
        discriminator_lr: float = 1e-3,
        generator_lr: float = 1e-3,
        max_grad_norm: float = 1.0,
        noise_dim: int = 64,
        lstm_hidden: int = 100,
        feature_dim: int = 64,
        discriminator_hidden: list[int] | tuple[int, ...] = (256, 256),
        generator_steps: int = 1,
        kl_weight: float = 1.0,
        moment_weight: float = 1.0,
        gumbel_tau: float = 0.2,
        grad_sample_mode: str = "ghost",
        device: str = "auto",
    ) -> None:
        if not isinstance(discriminator_hidden, list | tuple) or not discriminator_hidden:
            raise ParameterError(
                f"discriminator_hidden must be a non-empty list of widths, got {discriminator_hidden!r}"
            )
        super().__init__(
            epochs=epochs,
            batch_size=batch_size,
            discriminator_lr=discriminator_lr,
            generator_lr=generator_lr,
            max_grad_norm=max_grad_norm,
            noise_dim=noise_dim,
            lstm_hidden=lstm_hidden,
            feature_dim=feature_dim,
            discriminator_hidden=list(discriminator_hidden),
            generator_steps=generator_steps,
            kl_weight=kl_weight,
            moment_weight=moment_weight,
            gumbel_tau=gumbel_tau,
            grad_sample_mode=grad_sample_mode,
            device=device,
        )
        for name, low in (
            ("epochs", 1), ("batch_size", 2), ("noise_dim", 1), ("lstm_hidden", 1), ("feature_dim", 1),
            ("generator_steps", 1),
        ):  # fmt: skip
            check_int(name, self.params[name], low)
        for width in discriminator_hidden:
            if isinstance(width, bool) or not isinstance(width, int | np.integer) or width < 1:
                raise ParameterError(f"discriminator_hidden widths must be integers >= 1, got {width!r}")
        for name in ("discriminator_lr", "generator_lr", "max_grad_norm", "gumbel_tau"):
            check_float(name, self.params[name], 0.0, low_open=True)
        for name in ("kl_weight", "moment_weight"):
            check_float(name, self.params[name], 0.0)
        check_choice("grad_sample_mode", grad_sample_mode, ("ghost", "hooks"))
        check_device(device)
        self.generator_: LSTMGenerator | None = None

    def _build_generator(self, layout: list[tuple[str, int]]) -> LSTMGenerator:
        p = self.params
        return LSTMGenerator(layout, int(p["noise_dim"]), int(p["lstm_hidden"]), int(p["feature_dim"]))

    def build_discriminator(self, data_dim: int) -> nn.Sequential:
        return mlp_discriminator(data_dim, [int(h) for h in self.params["discriminator_hidden"]])

    def dp_config(self) -> DPSGDConfig:
        p = self.params
        return DPSGDConfig(
            epochs=int(p["epochs"]),
            batch_size=int(p["batch_size"]),
            learning_rate=float(p["discriminator_lr"]),
            max_grad_norm=float(p["max_grad_norm"]),
            grad_sample_mode=str(p["grad_sample_mode"]),
            device=str(p["device"]),
        )

    def _fit_matrix(
        self,
        matrix: np.ndarray,
        accountant: PrivacyAccountant,
        *,
        seed: int,
        progress: ProgressCallback | None,
    ) -> dict[str, Any]:
        assert self.transformer_ is not None
        p = self.params
        started = time.monotonic()
        d = int(matrix.shape[1])
        torch.manual_seed(seed)
        device = resolve_device(str(p["device"]))
        layout: list[tuple[str, int]] = [(s.kind, s.width) for s in self.transformer_.spans]
        generator = self._build_generator(layout).to(device)
        disc = self.build_discriminator(d)
        soft, cont = dp_marginal_targets(self.transformer_)
        soft = [(start, width, target.to(device)) for start, width, target in soft]
        trainer = PrivateTrainer(
            disc, nn.BCEWithLogitsLoss(), matrix, accountant, self.dp_config(),
            row_count=self.transformer_.dp_row_count,
            optimizer_factory=lambda ps: torch.optim.Adam(ps, lr=float(p["discriminator_lr"]), betas=(0.5, 0.9)),
            mechanism_name="dp_tgan:discriminator",
        )  # fmt: skip
        reseed_after_initialisation()
        g_opt = torch.optim.Adam(generator.parameters(), lr=float(p["generator_lr"]), betas=(0.5, 0.9))
        m_fake = max(1, round(trainer.expected_batch_size))
        tau = float(p["gumbel_tau"])
        epochs = int(p["epochs"])
        current, g_sum, steps = 1, 0.0, 0
        for epoch, real in trainer.batches(epochs):
            if epoch != current:
                trainer.log_epoch(current, epochs, progress)
                current, g_sum, steps = epoch, 0.0, 0
            with torch.no_grad():
                fake, _ = generator(torch.randn(m_fake, generator.noise_dim, device=device), tau)
            trainer.step(discriminator_loss(trainer, real, fake))
            steps += 1
            with frozen_private_module(trainer) as d_frozen:
                for _ in range(int(p["generator_steps"])):
                    fake, probs = generator(torch.randn(m_fake, generator.noise_dim, device=device), tau)
                    logits = d_frozen(fake)
                    loss_g = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
                    loss_g = loss_g + self._marginal_loss(probs, soft, cont)
                    g_opt.zero_grad(set_to_none=True)
                    loss_g.backward()
                    g_opt.step()
                    g_sum += float(loss_g.item())
        trainer.log_epoch(current, epochs, progress)
        result = trainer.finish()
        self.generator_ = generator.cpu().eval()
        # no exact row count and no discriminator loss (computed on private rows, un-noised) in these
        # facts: they go into the bundle. The generator's loss is post-processing of the DP
        # discriminator and the DP marginal targets.
        return {
            "discriminator": {
                "noise_multiplier": result.noise_multiplier,
                "sample_rate": result.sample_rate,
                "steps": result.steps,
                "seconds": result.seconds,
            },
            "generator_final_loss": g_sum / max(steps * int(p["generator_steps"]), 1),
            "device": result.device,
            "seconds": time.monotonic() - started,
        }

    def _marginal_loss(
        self,
        probs: torch.Tensor,
        soft: list[tuple[int, int, torch.Tensor]],
        cont: list[tuple[int, float]],
    ) -> torch.Tensor:
        """``kl_weight · Σ KL(p_DP ‖ mean generated softmax) + moment_weight · Σ (mean² + (sd − sd*)²)``."""
        loss = probs.new_zeros(())
        kl_w, mom_w = float(self.params["kl_weight"]), float(self.params["moment_weight"])
        if kl_w > 0:
            for start, width, target in soft:
                q = probs[:, start : start + width].mean(dim=0).clamp(min=1e-8)
                loss = loss + kl_w * (target * (target.log() - q.log())).sum()
        if mom_w > 0:
            for start, sd_target in cont:
                v = probs[:, start]
                loss = loss + mom_w * (v.mean().pow(2) + (v.std() - sd_target).pow(2))
        return loss

    @torch.no_grad()
    def _sample_matrix(self, n: int, rng: np.random.Generator) -> np.ndarray:
        assert self.generator_ is not None
        gen = torch.Generator().manual_seed(int(rng.integers(0, 2**63 - 1)))
        out = np.empty((n, self.generator_.data_dim), dtype=np.float32)
        for start in range(0, n, 8192):
            k = min(8192, n - start)
            z = torch.randn(k, self.generator_.noise_dim, generator=gen)
            out[start : start + k] = self.generator_.sample(z, gen).numpy()
        return out

    def _model_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        assert self.generator_ is not None
        config = {"layout": [[kind, width] for kind, width in self.generator_.layout]}
        return config, {k: v.detach().cpu() for k, v in self.generator_.state_dict().items()}

    def _restore_model(self, config: dict[str, Any], state: dict[str, Any]) -> None:
        generator = self._build_generator([(str(k), int(w)) for k, w in config["layout"]])
        generator.load_state_dict(state)
        self.generator_ = generator.eval()
