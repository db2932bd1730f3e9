"""DP-table-GAN: table-GAN (Park et al. 2018) with every access to private rows under DP.

table-GAN is a DCGAN over rows reshaped to square matrices, plus two extra generator losses:

* a **classifier** ``C`` (same convolutional architecture as the discriminator) that predicts the
  label column from the other features; the generator pays ``|label(G(z)) − C(remove(G(z)))|``
  so the label it writes agrees with what its features imply (semantic integrity);
* an **information loss** that matches the mean and standard deviation of the discriminator's
  penultimate features on real and on synthetic rows, the real side smoothed by an exponentially
  weighted moving average (EWMA); ``δ_mean``/``δ_sd`` hinge thresholds as in the paper.

Layout: the transformer's row vector ``(d,)`` (continuous columns DP-quantile-normal, categoricals
one-hot) is zero-padded to ``side²`` with ``side = ceil(sqrt(d))`` and reshaped to a one-channel
``side × side`` image (Adult: d = 78 → 9 × 9).

Privacy (three private phases, composed in the release's accountant, in this order):

1. ``dp_tablegan:classifier`` — ``C`` is trained on real rows (input: the row with its label span
   zeroed; target: the label), so it is a :class:`~synth_core.dp_training.PrivateTrainer` of its
   own, trained to completion *before* the GAN (its loss never involves ``G``, so the order does
   not change what it learns, and sequential phases let each calibration see the previous spend).
   It may bring the composed ε to ``ε_pre + classifier_budget_share · (ε − ε_pre)`` where ``ε_pre``
   is what preprocessing spent. The generator then uses the frozen DP classifier (post-processing).
2. ``dp_tablegan:information-statistics`` — the real-side mean/SD of the discriminator's
   penultimate features are computed from private rows, so they are released by a Gaussian
   mechanism on Poisson samples: once per discriminator step, an independent Poisson sample
   (rate ``q`` = the discriminator's) is passed through the current (DP) discriminator; each row
   contributes ``[f, f²] / sqrt(2k)`` with ``f = tanh(·) ∈ [−1, 1]^k`` (so its L2 norm is ≤ 1, and
   is clipped to 1 besides), the batch sum gets ``N(0, σ²)`` per coordinate, and the sums are
   normalised by the expected batch size. This is a sampled Gaussian mechanism with noise
   multiplier σ, recorded up front for all planned releases (``spend_sgd``) with σ calibrated so
   the composed ε reaches ``ε_pre + (classifier_budget_share + info_budget_share) · (ε − ε_pre)``.
   Its own Poisson samples are drawn with OS entropy, independent of the discriminator's. Only
   these noisy statistics (and their EWMA, post-processing) reach the generator.
3. ``dp_tablegan:discriminator`` — ``D`` is trained with DP-SGD (PrivateTrainer, noise calibrated so
   that everything composes to the budget's ε). Each step's private forward is
   ``D(cat[real batch, m fakes])`` with a **fixed** ``m`` (the expected batch size): were ``m`` the
   Poisson batch size, adding a row would add a fake's clipped gradient too and double the
   sensitivity.

The generator never sees a private row: its losses go through the DP discriminator (with Opacus
hooks off and ``D``'s parameters frozen, so no private gradient is touched), the DP classifier,
and the DP feature statistics. No BatchNorm anywhere (GroupNorm in both networks).

What differs from the paper, and why: categoricals are one-hot (softmax spans, Gumbel-softmax
during training) rather than label-encoded scalars; the generator adds a learned per-cell output
bias after the last transposed convolution (a conv generator cannot otherwise give each one-hot
slot its own base rate); the fake side of the information loss is the current batch's statistics
(the EWMA is on the real side, which is where it averages DP noise away).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn
from torch.nn import functional as F

from synth_core.dp_training import (
    DPSGDConfig,
    PrivateTrainer,
    ProgressCallback,
    poisson_steps_per_epoch,
    reseed_after_initialisation,
    resolve_device,
)
from synth_core.errors import ParameterError
from synth_core.generators.base import Synthesizer, check_float, check_int, register_generator
from synth_core.privacy import PrivacyAccountant, secret_seed
from synth_core.transformer import Span, TableTransformer

# ------------------------------------------------------------------------------------------------
# helpers shared with dp_tgan


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ParameterError(f"{name} must be one of {list(choices)}, got {value!r}")


def check_device(value: Any) -> None:
    if not isinstance(value, str) or (value not in ("auto", "cpu", "cuda") and not value.startswith("cuda:")):
        raise ParameterError(f"device must be auto, cpu or cuda[:N], got {value!r}")


def activate_spans(raw: torch.Tensor, spans: list[Span], tau: float) -> torch.Tensor:
    """Training-time output layer: continuous spans as is, softmax spans through Gumbel-softmax.

    ``raw`` ``(B, d)`` → ``(B, d)``; a soft near-one-hot (temperature ``tau``) keeps fakes close
    to the real one-hot rows while staying differentiable.
    """
    parts = []
    for span in spans:
        chunk = raw[:, span.start : span.start + span.width]
        parts.append(chunk if span.kind == "continuous" else F.gumbel_softmax(chunk, tau=tau, hard=False))
    return torch.cat(parts, dim=1)


def sample_spans(raw: torch.Tensor, spans: list[Span], gen: torch.Generator) -> torch.Tensor:
    """Sampling-time output layer: one category per softmax span drawn from its softmax."""
    out = raw.clone()
    rows = torch.arange(raw.shape[0])
    for span in spans:
        if span.kind == "softmax":
            probs = torch.softmax(raw[:, span.start : span.start + span.width], dim=1)
            picks = torch.multinomial(probs, 1, generator=gen).squeeze(1)
            out[:, span.start : span.start + span.width] = 0.0
            out[rows, span.start + picks] = 1.0
    return out


@contextmanager
def frozen_private_module(trainer: PrivateTrainer) -> Iterator[nn.Module]:
    """Use the private module for a generator step without touching its private gradients.

    Opacus's hooks are switched off and the parameters frozen, so a backward through the module
    neither records per-sample activations/gradients nor accumulates ``.grad`` on its parameters:
    the generator's gradient flows *through* the DP module (post-processing), never into it.
    Yields the plain (unwrapped) module.
    """
    wrapped: Any = trainer.module
    params = list(trainer.raw_module.parameters())
    flags = [p.requires_grad for p in params]
    hooks_were = bool(getattr(wrapped, "hooks_enabled", False))
    if hasattr(wrapped, "disable_hooks"):
        wrapped.disable_hooks()
    for p in params:
        p.requires_grad_(False)
    try:
        yield trainer.raw_module
    finally:
        for p, flag in zip(params, flags, strict=True):
            p.requires_grad_(flag)
        if hooks_were:
            wrapped.enable_hooks()


def budget_targets(accountant: PrivacyAccountant, shares: list[float]) -> list[float]:
    """Composed-ε targets after successive phases: ``ε_pre + cumsum(shares) · (ε − ε_pre)``."""
    eps_pre = accountant.epsilon()
    gap = accountant.budget.epsilon - eps_pre
    if gap <= 0:
        raise ParameterError(
            f"preprocessing already spent ε={eps_pre:.4f} of the target epsilon={accountant.budget.epsilon}: "
            "declare more bounds/domains public or lower preprocessing_fraction"
        )
    return [eps_pre + float(s) * gap for s in np.cumsum(shares)]


# ------------------------------------------------------------------------------------------------
# networks


def side_for(data_dim: int) -> int:
    """Side of the square image a row of ``data_dim`` values is padded into."""
    return max(4, math.ceil(math.sqrt(data_dim)))


def to_image(rows: torch.Tensor, side: int) -> torch.Tensor:
    """``(B, d)`` → ``(B, 1, side, side)``, zero-padded at the end."""
    pad = side * side - rows.shape[1]
    return F.pad(rows, (0, pad)).view(rows.shape[0], 1, side, side)


def _conv_trunk(side: int, channels: int) -> tuple[nn.Sequential, int]:
    """Two stride-2 4×4 convolutions with GroupNorm and LeakyReLU; returns (trunk, flat width)."""
    trunk = nn.Sequential(
        nn.Conv2d(1, channels, 4, stride=2, padding=1),
        nn.LeakyReLU(0.2),
        nn.Conv2d(channels, 2 * channels, 4, stride=2, padding=1),
        nn.GroupNorm(min(8, 2 * channels), 2 * channels),
        nn.LeakyReLU(0.2),
        nn.Flatten(),
    )
    s1 = (side + 2 - 4) // 2 + 1
    s2 = (s1 + 2 - 4) // 2 + 1
    return trunk, 2 * channels * s2 * s2


class ConvDiscriminator(nn.Module):
    """table-GAN's discriminator (and, with ``out_dim`` classes, its classifier).

    ``forward(rows)`` with rows ``(B, d)`` returns logits ``(B, out_dim)`` (``(B,)`` when
    ``out_dim == 1``). ``features(rows)`` is the penultimate layer ``(B, feature_dim)`` in
    ``[−1, 1]`` (tanh), the quantity the information loss compares; ``head(features)`` finishes
    the forward pass.
    """

    def __init__(self, data_dim: int, channels: int, feature_dim: int, out_dim: int = 1) -> None:
        super().__init__()
        self.side = side_for(data_dim)
        self.out_dim = out_dim
        self.trunk, flat = _conv_trunk(self.side, channels)
        self.to_features = nn.Linear(flat, feature_dim)
        self.out = nn.Linear(feature_dim, out_dim)

    def features(self, rows: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.to_features(self.trunk(to_image(rows, self.side))))

    def head(self, features: torch.Tensor) -> torch.Tensor:
        logits = self.out(features)
        return logits.squeeze(-1) if self.out_dim == 1 else logits

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(rows))


class ConvGenerator(nn.Module):
    """DCGAN generator: ``z (B, noise_dim)`` → raw row ``(B, d)`` (pre-activation).

    Linear → ``(4c, s, s)`` with ``s = ceil(side/4)`` → two stride-2 transposed convolutions
    (GroupNorm + ReLU between) → crop to ``side × side`` → first ``d`` cells + a learned per-cell
    bias. Continuous cells are values in the quantile-normal space; softmax spans are logits.
    """

    def __init__(self, data_dim: int, noise_dim: int, channels: int) -> None:
        super().__init__()
        self.data_dim = data_dim
        self.noise_dim = noise_dim
        self.side = side_for(data_dim)
        self.seed_side = math.ceil(self.side / 4)
        c4 = 4 * channels
        self.project = nn.Linear(noise_dim, c4 * self.seed_side * self.seed_side)
        self.body = nn.Sequential(
            nn.GroupNorm(min(8, c4), c4),
            nn.ReLU(),
            nn.ConvTranspose2d(c4, 2 * channels, 4, stride=2, padding=1),
            nn.GroupNorm(min(8, 2 * channels), 2 * channels),
            nn.ReLU(),
            nn.ConvTranspose2d(2 * channels, 1, 4, stride=2, padding=1),
        )
        self.cell_bias = nn.Parameter(torch.zeros(data_dim))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.project(z).view(z.shape[0], -1, self.seed_side, self.seed_side)
        img = self.body(h)[:, 0, : self.side, : self.side]
        return img.reshape(z.shape[0], -1)[:, : self.data_dim] + self.cell_bias


# ------------------------------------------------------------------------------------------------
# private losses (used by the training loop and by the clipped-and-noised tests)


def discriminator_loss(trainer: PrivateTrainer, real: torch.Tensor, fake: torch.Tensor) -> Any:
    """Per-sample GAN loss of the private discriminator: BCE(real → 1, fake → 0) in one forward.

    ``real`` ``(B, d)`` Poisson batch, ``fake`` ``(m, d)`` generator rows (``m`` fixed by the
    caller). Returns what :meth:`PrivateTrainer.step` takes.
    """
    logits = trainer.module(torch.cat([real, fake]))
    labels = torch.cat([torch.ones(real.shape[0]), torch.zeros(fake.shape[0])]).to(logits.device)
    return trainer.criterion(logits, labels)


def masked_label_input(rows: torch.Tensor, label: Span) -> tuple[torch.Tensor, torch.Tensor]:
    """``(rows with the label span zeroed, label probabilities (B, width))`` — table-GAN's remove()."""
    labels = rows[:, label.start : label.start + label.width]
    x = rows.clone()
    x[:, label.start : label.start + label.width] = 0.0
    return x, labels


def classifier_loss(trainer: PrivateTrainer, real: torch.Tensor, label: Span) -> Any:
    """Per-sample cross-entropy of the private classifier predicting the label from the rest."""
    x, labels = masked_label_input(real, label)
    return trainer.criterion(trainer.module(x), labels.argmax(dim=1))


# ------------------------------------------------------------------------------------------------
# DP release of the information loss's real-side feature statistics


class PrivateFeatureStatistics:
    """Noisy mean and SD of a module's bounded features over Poisson samples of private rows.

    Each :meth:`release` draws its own Poisson sample (rate ``sample_rate``, OS entropy), maps
    every sampled row to ``u = [f, f²] / sqrt(2k)`` (``f`` in ``[−1, 1]^k``, so ‖u‖₂ ≤ 1; clipped
    to 1 regardless), sums, and adds ``N(0, noise_multiplier²)`` per coordinate: a sampled Gaussian
    mechanism of sensitivity 1 under add/remove of a row. The caller records the spend.

    Args:
        data: private rows ``(n, d)`` float32.
        sample_rate: Poisson inclusion probability per release.
        noise_multiplier: Gaussian noise std per coordinate of the sum (sensitivity 1).
        expected_rows: normaliser of the sums (``sample_rate × DP row count``).
        device: where the features are computed.
    """

    def __init__(
        self,
        data: NDArray[np.float32],
        sample_rate: float,
        noise_multiplier: float,
        expected_rows: float,
        device: torch.device,
    ) -> None:
        self._data = torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32))
        self.sample_rate = sample_rate
        self.noise_multiplier = noise_multiplier
        self.expected_rows = max(expected_rows, 1.0)
        self.device = device
        self._rng = np.random.default_rng(secret_seed())
        self._noise = torch.Generator().manual_seed(secret_seed())
        self.releases = 0

    @torch.no_grad()
    def release(self, features: Any, chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mean (k,), sd (k,))`` of ``features(rows)`` under DP; one mechanism invocation."""
        picked = np.flatnonzero(self._rng.random(self._data.shape[0]) < self.sample_rate)
        total: torch.Tensor | None = None
        k = 0
        for start in range(0, max(len(picked), 1), chunk):
            idx = picked[start : start + chunk]
            if len(idx) == 0:
                break
            f = features(self._data[idx].to(self.device)).float().cpu()
            k = f.shape[1]
            u = torch.cat([f, f * f], dim=1) / math.sqrt(2 * k)
            u = u * (1.0 / u.norm(dim=1, keepdim=True).clamp(min=1.0))
            total = u.sum(dim=0) if total is None else total + u.sum(dim=0)
        if total is None:  # an empty Poisson sample still releases (pure noise)
            k = int(features(self._data[:1].to(self.device)).shape[1])
            total = torch.zeros(2 * k)
        noisy = total + torch.randn(total.shape, generator=self._noise) * self.noise_multiplier
        self.releases += 1
        moments = noisy * math.sqrt(2 * k) / self.expected_rows
        mean, second = moments[:k], moments[k:]
        sd = (second - mean * mean).clamp(min=1e-6).sqrt()
        return mean.to(self.device), sd.to(self.device)


# ------------------------------------------------------------------------------------------------
# the synthesizer


@register_generator
class DPTableGANSynthesizer(Synthesizer):
    """DP-table-GAN (see the module docstring for the privacy design).

    Args:
        epochs: DP-SGD epochs of the discriminator (expected passes over the rows); the generator
            takes ``generator_steps`` steps per discriminator step.
        batch_size: expected Poisson batch size in rows (discriminator, classifier and statistics);
            also the number of fakes per discriminator step and per generator step.
        discriminator_lr: Adam learning rate of the discriminator.
        generator_lr: Adam learning rate of the generator.
        classifier_lr: Adam learning rate of the classifier.
        max_grad_norm: per-sample L2 clipping bound of the discriminator and the classifier.
        noise_dim: generator input dimension (standard normal).
        channels: base channel count ``c`` of the convolutions (D/C: c, 2c; G: 4c, 2c).
        feature_dim: width ``k`` of the discriminator's penultimate (tanh) layer.
        generator_steps: generator updates per discriminator step (no privacy cost).
        label_column: column the classifier predicts (categorical/boolean); default the spec's
            ``target``. With neither, or ``classifier_weight == 0``, there is no classifier phase.
        classifier_epochs: DP-SGD epochs of the classifier.
        classifier_weight: weight of the classification loss in the generator loss.
        info_weight: weight of the information loss (0 disables it and its budget share).
        info_delta_mean: hinge threshold δ_mean on ‖mean_real − mean_fake‖₂.
        info_delta_sd: hinge threshold δ_sd on ‖sd_real − sd_fake‖₂.
        info_decay: EWMA weight of the previous real-side statistics (0 = no smoothing).
        classifier_budget_share: share of the post-preprocessing ε gap the classifier may use.
        info_budget_share: share of that gap the feature-statistics releases may use.
        gumbel_tau: Gumbel-softmax temperature of categorical outputs during training.
        grad_sample_mode: Opacus per-sample gradient mode, ``hooks`` (default: ghost clipping has
            no norm sampler for convolutions and would materialise their per-sample gradients
            anyway, after a second backward pass) or ``ghost``.
        device: ``auto``, ``cpu`` or ``cuda[:N]``.
    """

    name = "dp_tablegan"

    def __init__(
        self,
        *,
        epochs: int = 8,
        batch_size: int = 500,
        discriminator_lr: float = 1e-3,
        generator_lr: float = 1e-3,
        classifier_lr: float = 2e-3,
        max_grad_norm: float = 1.0,
        noise_dim: int = 64,
        channels: int = 16,
        feature_dim: int = 64,
        generator_steps: int = 1,
        label_column: str | None = None,
        classifier_epochs: int = 4,
        classifier_weight: float = 1.0,
        info_weight: float = 1.0,
        info_delta_mean: float = 0.0,
        info_delta_sd: float = 0.0,
        info_decay: float = 0.9,
        classifier_budget_share: float = 0.2,
        info_budget_share: float = 0.1,
        gumbel_tau: float = 0.2,
        grad_sample_mode: str = "hooks",
        device: str = "auto",
    ) -> None:
        super().__init__(
            epochs=epochs,
            batch_size=batch_size,
            discriminator_lr=discriminator_lr,
            generator_lr=generator_lr,
            classifier_lr=classifier_lr,
            max_grad_norm=max_grad_norm,
            noise_dim=noise_dim,
            channels=channels,
            feature_dim=feature_dim,
            generator_steps=generator_steps,
            label_column=label_column,
            classifier_epochs=classifier_epochs,
            classifier_weight=classifier_weight,
            info_weight=info_weight,
            info_delta_mean=info_delta_mean,
            info_delta_sd=info_delta_sd,
            info_decay=info_decay,
            classifier_budget_share=classifier_budget_share,
            info_budget_share=info_budget_share,
            gumbel_tau=gumbel_tau,
            grad_sample_mode=grad_sample_mode,
            device=device,
        )
        for name, low in (
            ("epochs", 1), ("batch_size", 2), ("noise_dim", 1), ("channels", 1), ("feature_dim", 1),
            ("generator_steps", 1), ("classifier_epochs", 1),
        ):  # fmt: skip
            check_int(name, self.params[name], low)
        for name in ("discriminator_lr", "generator_lr", "classifier_lr", "max_grad_norm", "gumbel_tau"):
            check_float(name, self.params[name], 0.0, low_open=True)
        for name in ("classifier_weight", "info_weight", "info_delta_mean", "info_delta_sd"):
            check_float(name, self.params[name], 0.0)
        check_float("info_decay", info_decay, 0.0, 1.0, high_open=True)
        check_float("classifier_budget_share", classifier_budget_share, 0.0, 1.0, high_open=True)
        check_float("info_budget_share", info_budget_share, 0.0, 1.0, high_open=True)
        if classifier_budget_share + info_budget_share >= 0.95:
            raise ParameterError(
                "classifier_budget_share + info_budget_share must be < 0.95 (the discriminator needs "
                f"budget), got {classifier_budget_share} + {info_budget_share}"
            )
        if label_column is not None and (not isinstance(label_column, str) or not label_column):
            raise ParameterError(f"label_column must be a column name or None, got {label_column!r}")
        check_choice("grad_sample_mode", grad_sample_mode, ("ghost", "hooks"))
        check_device(device)
        self.generator_: ConvGenerator | None = None

    # -- building blocks -------------------------------------------------------------------------
    def _build_generator(self, data_dim: int) -> ConvGenerator:
        return ConvGenerator(data_dim, int(self.params["noise_dim"]), int(self.params["channels"]))

    def _config(self, epochs: int, lr: float) -> DPSGDConfig:
        p = self.params
        return DPSGDConfig(
            epochs=epochs,
            batch_size=int(p["batch_size"]),
            learning_rate=lr,
            max_grad_norm=float(p["max_grad_norm"]),
            grad_sample_mode=str(p["grad_sample_mode"]),
            device=str(p["device"]),
        )

    def label_span(self, transformer: TableTransformer) -> Span | None:
        """The softmax span the classifier predicts, or ``None`` when there is no classifier."""
        if float(self.params["classifier_weight"]) == 0.0:
            return None
        name = self.params["label_column"] or transformer.spec.target
        if name is None:
            return None
        col = next((c for c in transformer.columns if c.name == name), None)
        if col is None or col.is_continuous:
            raise ParameterError(
                f"label_column {name!r} must be a modelled categorical or boolean column of table "
                f"{transformer.spec.name!r}"
            )
        (span,) = col.spans
        return span

    # -- training --------------------------------------------------------------------------------
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
        spans = self.transformer_.spans
        d = int(matrix.shape[1])
        rows = self.transformer_.dp_row_count  # q and the divisors: the DP count, never the exact n
        label = self.label_span(self.transformer_)
        use_info = float(p["info_weight"]) > 0
        shares = [float(p["classifier_budget_share"]) if label else 0.0]
        shares.append(float(p["info_budget_share"]) if use_info else 0.0)
        eps_after_classifier, eps_after_info = budget_targets(accountant, shares)
        torch.manual_seed(seed)
        device = resolve_device(str(p["device"]))
        batch = int(p["batch_size"])
        # no exact row count and no loss on private rows in these facts: they go into the bundle
        facts: dict[str, Any] = {"side": side_for(d)}

        # phase 1: the classifier, on real rows, under its own DP-SGD
        classifier: ConvDiscriminator | None = None
        if label is not None:
            classifier = ConvDiscriminator(d, int(p["channels"]), int(p["feature_dim"]), label.width)
            facts["classifier"] = self._train_classifier(
                classifier, label, matrix, accountant, eps_after_classifier, progress, row_count=rows
            )
            classifier.requires_grad_(False)

        # phase 2 (recorded up front): the information loss's real-side statistics
        per_epoch = poisson_steps_per_epoch(rows, batch)
        planned = int(p["epochs"]) * per_epoch
        q = 1.0 / per_epoch
        stats: PrivateFeatureStatistics | None = None
        if use_info:
            sigma = accountant.calibrate_noise_multiplier(q, planned, epsilon=eps_after_info)
            accountant.spend_sgd(
                "dp_tablegan:information-statistics", q, sigma, planned,
                sensitivity=1.0, expected_batch_size=q * rows,
            )  # fmt: skip
            stats = PrivateFeatureStatistics(matrix, q, sigma, q * rows, device)

        # phase 3: the GAN; the discriminator's DP-SGD is calibrated to the whole budget
        generator = self._build_generator(d).to(device)
        disc = ConvDiscriminator(d, int(p["channels"]), int(p["feature_dim"]))
        trainer = PrivateTrainer(
            disc, nn.BCEWithLogitsLoss(), matrix, accountant,
            self._config(int(p["epochs"]), float(p["discriminator_lr"])), row_count=rows,
            optimizer_factory=lambda ps: torch.optim.Adam(ps, lr=float(p["discriminator_lr"]), betas=(0.5, 0.9)),
            mechanism_name="dp_tablegan:discriminator",
        )  # fmt: skip
        reseed_after_initialisation()
        g_opt = torch.optim.Adam(generator.parameters(), lr=float(p["generator_lr"]), betas=(0.5, 0.9))
        if classifier is not None:
            classifier.to(device)
        m_fake = max(1, round(trainer.expected_batch_size))
        tau = float(p["gumbel_tau"])
        ewma: tuple[torch.Tensor, torch.Tensor] | None = None
        decay = float(p["info_decay"])
        current, g_sum, steps = 1, 0.0, 0
        epochs = int(p["epochs"])
        for epoch, real in trainer.batches(epochs):
            if epoch != current:
                trainer.log_epoch(current, epochs, progress)
                current, g_sum, steps = epoch, 0.0, 0
            with torch.no_grad():
                fake = activate_spans(
                    generator(torch.randn(m_fake, generator.noise_dim, device=device)), spans, tau
                )
            trainer.step(discriminator_loss(trainer, real, fake))
            steps += 1
            with frozen_private_module(trainer) as d_frozen:
                assert isinstance(d_frozen, ConvDiscriminator)
                if stats is not None:
                    released = stats.release(d_frozen.features)
                    ewma = (
                        released
                        if ewma is None
                        else (
                            decay * ewma[0] + (1 - decay) * released[0],
                            decay * ewma[1] + (1 - decay) * released[1],
                        )
                    )
                for _ in range(int(p["generator_steps"])):
                    loss_g = self._generator_loss(
                        generator, d_frozen, classifier, label, ewma, m_fake, device
                    )
                    g_opt.zero_grad(set_to_none=True)
                    loss_g.backward()
                    g_opt.step()
                    g_sum += float(loss_g.item())
        trainer.log_epoch(current, epochs, progress)
        result = trainer.finish()
        self.generator_ = generator.cpu().eval()
        facts["discriminator"] = {
            "noise_multiplier": result.noise_multiplier,
            "sample_rate": result.sample_rate,
            "steps": result.steps,
            "seconds": result.seconds,
        }
        if stats is not None:
            facts["information_statistics"] = {
                "noise_multiplier": stats.noise_multiplier,
                "sample_rate": q,
                "releases": stats.releases,
                "planned_releases": planned,
            }
        facts["generator_final_loss"] = g_sum / max(steps * int(p["generator_steps"]), 1)
        facts["device"] = result.device
        facts["seconds"] = time.monotonic() - started
        return facts

    def _train_classifier(
        self,
        classifier: ConvDiscriminator,
        label: Span,
        matrix: np.ndarray,
        accountant: PrivacyAccountant,
        epsilon_target: float,
        progress: ProgressCallback | None,
        *,
        row_count: float,
    ) -> dict[str, Any]:
        epochs = int(self.params["classifier_epochs"])
        trainer = PrivateTrainer(
            classifier, nn.CrossEntropyLoss(), matrix, accountant,
            self._config(epochs, float(self.params["classifier_lr"])), row_count=row_count,
            epsilon_target=epsilon_target, mechanism_name="dp_tablegan:classifier",
        )  # fmt: skip
        current = 1
        for epoch, real in trainer.batches(epochs):
            if epoch != current:
                trainer.log_epoch(current, epochs, progress)
                current = epoch
            trainer.step(classifier_loss(trainer, real, label))
        trainer.log_epoch(current, epochs, progress)
        result = trainer.finish()
        return {
            "noise_multiplier": result.noise_multiplier,
            "sample_rate": result.sample_rate,
            "steps": result.steps,
            "seconds": result.seconds,
        }

    def _generator_loss(
        self,
        generator: ConvGenerator,
        disc: ConvDiscriminator,
        classifier: ConvDiscriminator | None,
        label: Span | None,
        real_stats: tuple[torch.Tensor, torch.Tensor] | None,
        m: int,
        device: torch.device,
    ) -> torch.Tensor:
        """Non-saturating GAN loss + information loss + classification loss, on fakes only."""
        assert self.transformer_ is not None
        p = self.params
        fake = activate_spans(
            generator(torch.randn(m, generator.noise_dim, device=device)),
            self.transformer_.spans,
            float(p["gumbel_tau"]),
        )
        feats = disc.features(fake)
        logits = disc.head(feats)
        loss = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
        if real_stats is not None:
            mean_f = feats.mean(dim=0)
            sd_f = feats.std(dim=0)
            l_mean = torch.linalg.vector_norm(real_stats[0] - mean_f)
            l_sd = torch.linalg.vector_norm(real_stats[1] - sd_f)
            info = F.relu(l_mean - float(p["info_delta_mean"])) + F.relu(l_sd - float(p["info_delta_sd"]))
            loss = loss + float(p["info_weight"]) * info
        if classifier is not None and label is not None:
            x, fake_label = masked_label_input(fake, label)
            predicted = torch.softmax(classifier(x), dim=1)
            loss = loss + float(p["classifier_weight"]) * (fake_label - predicted).abs().sum(dim=1).mean()
        return loss

    # -- sampling and bundles --------------------------------------------------------------------
    @torch.no_grad()
    def _sample_matrix(self, n: int, rng: np.random.Generator) -> np.ndarray:
        assert self.generator_ is not None and self.transformer_ is not None
        gen = torch.Generator().manual_seed(int(rng.integers(0, 2**63 - 1)))
        out = np.empty((n, self.generator_.data_dim), dtype=np.float32)
        for start in range(0, n, 8192):
            k = min(8192, n - start)
            raw = self.generator_(torch.randn(k, self.generator_.noise_dim, generator=gen))
            out[start : start + k] = sample_spans(raw, self.transformer_.spans, gen).numpy()
        return out

    def _model_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        assert self.generator_ is not None
        config = {"data_dim": self.generator_.data_dim}
        return config, {k: v.detach().cpu() for k, v in self.generator_.state_dict().items()}

    def _restore_model(self, config: dict[str, Any], state: dict[str, Any]) -> None:
        generator = self._build_generator(int(config["data_dim"]))
        generator.load_state_dict(state)
        self.generator_ = generator.eval()
