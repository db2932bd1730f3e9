"""DP-TVAE: the tabular VAE of Xu et al. (2019) trained end to end with DP-SGD.

Encoder and decoder are MLPs (Linear + ReLU: no BatchNorm, which would mix private samples).
The decoder emits, for every span of the transformer's layout, either a mean and a log-σ
(continuous spans, Gaussian likelihood in the DP quantile-normal space) or logits (softmax spans,
cross-entropy). The whole VAE is one module under Opacus, so every gradient computed from a
private row is clipped and noised; ghost clipping applies because every layer is a Linear.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import torch
from torch import nn

from synth_core.dp_training import DPSGDConfig, ProgressCallback, train_with_dp_sgd
from synth_core.errors import ParameterError
from synth_core.generators.base import Synthesizer, register_generator
from synth_core.privacy import PrivacyAccountant
from synth_core.transformer import Span

_LOGSIG_MIN, _LOGSIG_MAX = -4.0, 0.5


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise(sizes):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers)


def gumbel_scores(logits: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """``logits`` plus independent standard Gumbel noise ``-log(-log u)``, one uniform per cell.

    Gumbel-max: within every softmax span, the argmax of the scores is one draw from the span's
    ``softmax(logits)`` (the distribution ``torch.multinomial`` draws from, without its per-row
    cost); the transformer decodes a span by its argmax. ``u = 0`` gives ``-inf``: never the
    argmax unless every cell of the span is.
    """
    gumbel = torch.from_numpy(rng.random(tuple(logits.shape), dtype=np.float32))
    return logits - gumbel.log_().neg_().log_()


class TVAEModule(nn.Module):
    """VAE over the transformer's matrix.

    ``forward(x)`` with ``x`` of shape ``(B, data_dim)`` returns
    ``(recon (B, data_dim), log_sigma (B, n_continuous), mu (B, latent), logvar (B, latent))``.
    """

    def __init__(self, data_dim: int, n_continuous: int, latent_dim: int, hidden: list[int]) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.encoder = _mlp([data_dim, *hidden])
        self.to_latent = nn.Linear(hidden[-1], 2 * latent_dim)
        self.decoder = _mlp([latent_dim, *hidden[::-1]])
        self.to_data = nn.Linear(hidden[0], data_dim)
        self.to_log_sigma = nn.Linear(hidden[0], max(n_continuous, 1))

    def decode(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.decoder(z)
        log_sigma = self.to_log_sigma(h).clamp(_LOGSIG_MIN, _LOGSIG_MAX)
        return self.to_data(h), log_sigma

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.to_latent(self.encoder(x)).chunk(2, dim=-1)
        logvar = logvar.clamp(-10.0, 10.0)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        recon, log_sigma = self.decode(z)
        return recon, log_sigma, mu, logvar


class TVAELoss(nn.Module):
    """Per-sample negative ELBO: ``loss_factor · reconstruction NLL + KL``.

    ``reduction`` is ``"none"`` (shape ``(B,)``, what Opacus's ghost clipping asks for), ``"mean"``
    or ``"sum"``.
    """

    def __init__(self, spans: list[Span], loss_factor: float, reduction: str = "mean") -> None:
        super().__init__()
        self.reduction = reduction
        self.loss_factor = loss_factor
        self.register_buffer(
            "continuous_idx",
            torch.tensor([s.start for s in spans if s.kind == "continuous"], dtype=torch.long),
        )
        self.softmax_spans = [(s.start, s.width) for s in spans if s.kind == "softmax"]

    def forward(
        self, output: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], target: torch.Tensor
    ) -> torch.Tensor:
        recon, log_sigma, mu, logvar = output
        rec = torch.zeros(target.shape[0], device=target.device, dtype=recon.dtype)
        idx: torch.Tensor = self.continuous_idx  # type: ignore[assignment]
        if idx.numel():
            ls = log_sigma[:, : idx.numel()]
            diff = target[:, idx] - recon[:, idx]
            rec = rec + (0.5 * diff.pow(2) * torch.exp(-2.0 * ls) + ls).sum(dim=1)
        for start, width in self.softmax_spans:
            logits = recon[:, start : start + width]
            labels = target[:, start : start + width].argmax(dim=1)
            rec = rec + nn.functional.cross_entropy(logits, labels, reduction="none")
        kl = -0.5 * (1.0 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1)
        per_sample = self.loss_factor * rec + kl
        if self.reduction == "none":
            return per_sample
        if self.reduction == "sum":
            return per_sample.sum()
        return per_sample.mean()


@register_generator
class DPTVAESynthesizer(Synthesizer):
    """DP-TVAE.

    Args:
        epochs: DP-SGD epochs (expected passes over the rows).
        batch_size: expected Poisson batch size, rows.
        learning_rate: Adam learning rate.
        max_grad_norm: per-sample clipping bound (L2).
        latent_dim: VAE latent dimension.
        hidden: widths of the encoder's hidden layers (the decoder mirrors them).
        loss_factor: weight of the reconstruction term against KL (TVAE's default 2).
        grad_sample_mode: Opacus per-sample gradient mode (``ghost`` or ``hooks``).
        device: ``auto``, ``cpu`` or ``cuda``.
        max_physical_batch_size: rows per forward/backward pass; a larger Poisson batch is split
            and its clipped gradients summed before the one noisy step (Opacus's
            ``BatchMemoryManager``: same accounting, bounded memory). ``None``: no split.
    """

    name = "dp_tvae"

    def __init__(
        self,
        *,
        epochs: int = 20,
        batch_size: int = 500,
        learning_rate: float = 5e-3,
        max_grad_norm: float = 1.0,
        latent_dim: int = 32,
        hidden: list[int] | tuple[int, ...] = (128, 128),
        loss_factor: float = 2.0,
        grad_sample_mode: str = "ghost",
        device: str = "auto",
        max_physical_batch_size: int | None = None,
    ) -> None:
        super().__init__(
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=learning_rate,
            max_grad_norm=max_grad_norm,
            latent_dim=latent_dim,
            hidden=list(hidden),
            loss_factor=loss_factor,
            grad_sample_mode=grad_sample_mode,
            device=device,
            max_physical_batch_size=max_physical_batch_size,
        )
        if latent_dim < 1 or not hidden or any(int(h) < 1 for h in hidden):
            raise ParameterError("latent_dim and every hidden width must be >= 1")
        if not (loss_factor > 0):
            raise ParameterError(f"loss_factor must be > 0, got {loss_factor}")
        self.dp_config = DPSGDConfig(
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=learning_rate,
            max_grad_norm=max_grad_norm,
            grad_sample_mode=grad_sample_mode,
            device=device,
            max_physical_batch_size=max_physical_batch_size,
        )
        self.model_: TVAEModule | None = None

    def _build(self, data_dim: int, n_continuous: int) -> TVAEModule:
        return TVAEModule(
            data_dim, n_continuous, int(self.params["latent_dim"]), [int(h) for h in self.params["hidden"]]
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
        spans = self.transformer_.spans
        n_cont = sum(1 for s in spans if s.kind == "continuous")
        torch.manual_seed(seed)
        model = self._build(matrix.shape[1], n_cont)
        criterion = TVAELoss(spans, float(self.params["loss_factor"]))
        # the reparameterisation noise is drawn per private row: train_with_dp_sgd re-seeds torch's
        # generator from the run's secret seed after this initialisation
        result = train_with_dp_sgd(
            model, criterion, matrix, accountant, self.dp_config,
            row_count=self.transformer_.dp_row_count, progress=progress,
        )  # fmt: skip
        self.model_ = model.eval()
        # no training loss and no exact row count: un-noised statistics of the private rows (this
        # dict goes into the bundle); the DP row count is the transformer's
        return {
            "noise_multiplier": result.noise_multiplier,
            "sample_rate": result.sample_rate,
            "steps": result.steps,
            "seconds": result.seconds,
            "device": result.device,
        }

    @torch.no_grad()
    def _sample_matrix(self, n: int, rng: np.random.Generator) -> np.ndarray:
        assert self.model_ is not None and self.transformer_ is not None
        z = torch.from_numpy(rng.standard_normal((n, self.model_.latent_dim), dtype=np.float32))
        recon, log_sigma = self.model_.decode(z)
        spans = self.transformer_.spans
        continuous = torch.tensor([s.start for s in spans if s.kind == "continuous"], dtype=torch.long)
        # softmax spans: Gumbel-perturbed logits (their argmax is the categorical draw)
        out = gumbel_scores(recon, rng)
        if continuous.numel():
            # continuous spans: mean + σ·N(0, 1) (the i-th log-σ belongs to the i-th continuous span)
            sigma = torch.exp(log_sigma[:, : continuous.numel()])
            noise = torch.from_numpy(rng.standard_normal(tuple(sigma.shape), dtype=np.float32))
            out[:, continuous] = recon[:, continuous] + noise * sigma
        return out.numpy().astype(np.float32, copy=False)

    def _model_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        assert self.model_ is not None
        config = {
            "data_dim": self.model_.to_data.out_features,
            "n_continuous": self.model_.to_log_sigma.out_features,
        }
        return config, {k: v.detach().cpu() for k, v in self.model_.state_dict().items()}

    def _restore_model(self, config: dict[str, Any], state: dict[str, Any]) -> None:
        model = self._build(int(config["data_dim"]), int(config["n_continuous"]))
        model.load_state_dict(state)
        self.model_ = model.eval()
