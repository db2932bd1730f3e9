"""DP-SGD training loop shared by the PyTorch generators.

One function, :func:`train_with_dp_sgd`, owns what makes training private:

* Poisson sampling (each row joins each step independently with probability ``q``), which the
  accountant's sampled-Gaussian analysis assumes;
* per-sample gradient clipping and Gaussian noise by Opacus on *every* parameter gradient that a
  private row touches (the whole model goes through ``PrivacyEngine.make_private``);
* the noise multiplier calibrated so that the release's composed ε (preprocessing + this
  training) meets the target, and the spend recorded in the release's accountant.

``grad_sample_mode="ghost"`` (fast gradient clipping) is the default: Opacus returns a wrapped
criterion that must be used, with per-sample losses (``reduction="none"`` inside, "mean" outside).
Models must not use BatchNorm (it mixes samples); LayerNorm is fine.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from synth_core.errors import ParameterError
from synth_core.privacy import PrivacyAccountant, secret_seed, sgm_rdp

log = logging.getLogger("synth_core.training")


@dataclass(frozen=True)
class DPSGDConfig:
    """DP-SGD hyper-parameters.

    Attributes:
        epochs: passes over the data (in expectation: steps = epochs / sample_rate).
        batch_size: expected (Poisson) batch size in rows.
        learning_rate: Adam learning rate.
        max_grad_norm: per-sample gradient L2 clipping bound.
        grad_sample_mode: Opacus mode: ``ghost`` (fast gradient clipping) or ``hooks``.
        device: ``cpu``, ``cuda`` or ``auto`` (CUDA when available).
        log_every_seconds: minimum seconds between progress log lines (an epoch's end always logs
            when this has elapsed; the first and last epoch always log).
    """

    epochs: int = 20
    batch_size: int = 500
    learning_rate: float = 5e-3
    max_grad_norm: float = 1.0
    grad_sample_mode: str = "ghost"
    device: str = "auto"
    log_every_seconds: float = 10.0

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ParameterError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ParameterError(f"batch_size must be >= 1, got {self.batch_size}")
        if not (self.learning_rate > 0):
            raise ParameterError(f"learning_rate must be > 0, got {self.learning_rate}")
        if not (self.max_grad_norm > 0):
            raise ParameterError(f"max_grad_norm must be > 0, got {self.max_grad_norm}")
        if self.grad_sample_mode not in ("ghost", "hooks", "functorch", "ew"):
            raise ParameterError(
                f"grad_sample_mode must be ghost, hooks, functorch or ew, got {self.grad_sample_mode!r}"
            )
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ParameterError(f"device must be auto, cpu or cuda[:N], got {self.device!r}")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ParameterError(f"device {name!r} was requested but CUDA is not available")
    return torch.device(name)


@dataclass(frozen=True)
class TrainingResult:
    noise_multiplier: float
    sample_rate: float
    steps: int
    epsilon: float
    final_loss: float
    seconds: float
    device: str


ProgressCallback = Callable[[dict[str, Any]], None]


def train_with_dp_sgd(
    model: nn.Module,
    criterion: nn.Module,
    data: NDArray[np.float32],
    accountant: PrivacyAccountant,
    config: DPSGDConfig,
    *,
    seed: int,
    mechanism_name: str = "dp-sgd",
    progress: ProgressCallback | None = None,
) -> TrainingResult:
    """Train ``model`` on the rows of ``data`` with DP-SGD; record the spend in ``accountant``.

    Args:
        model: maps a batch ``(B, d)`` float32 to whatever ``criterion`` takes as first argument.
        criterion: ``criterion(model_output, batch) -> loss``; must honour a ``reduction``
            attribute (``"none"`` → per-sample losses of shape ``(B,)``, ``"mean"`` → scalar).
        data: private rows, shape ``(n, d)``, float32 (already transformed).
        accountant: the release's accountant; the noise is calibrated against what it already holds.
        config: hyper-parameters.
        seed: seeds torch's global generator (model initialisation, reparameterisation draws).
            Poisson sampling and the DP noise use OS entropy (:func:`secret_seed`), never ``seed``.

    Returns:
        :class:`TrainingResult` with the calibrated noise multiplier and the composed ε.
    """
    from opacus import PrivacyEngine

    n = int(data.shape[0])
    if n < 2:
        raise ParameterError(f"DP-SGD needs at least 2 rows, got {n}")
    device = resolve_device(config.device)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(secret_seed())
    tensor = torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32))
    dataset = torch.utils.data.TensorDataset(tensor)
    loader = torch.utils.data.DataLoader(dataset, batch_size=min(config.batch_size, n), generator=generator)
    # Opacus samples each row with q = 1/len(loader), len(loader) times per epoch: account exactly that
    steps_per_epoch = len(loader)
    sample_rate = 1.0 / steps_per_epoch
    batch_size = n * sample_rate
    steps = config.epochs * steps_per_epoch
    sigma = accountant.calibrate_noise_multiplier(sample_rate, steps)
    log.info(
        "DP-SGD: %d rows, expected batch %.0f (q=%.5f), %d epochs = %d steps, noise multiplier %.3f, clip %.2f, device %s",
        n,
        batch_size,
        sample_rate,
        config.epochs,
        steps,
        sigma,
        config.max_grad_norm,
        device,
    )
    model = model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    criterion.reduction = "mean"  # type: ignore[assignment]
    with warnings.catch_warnings():
        # Opacus warns that secure_mode (torchcsprng) is off. The noise and Poisson-sampling
        # generators are seeded from the OS CSPRNG per run (secret_seed), so they cannot be
        # replayed from anything public; the residual floating-point caveat is in the README.
        warnings.filterwarnings("ignore", message="Secure RNG turned off")
        engine = PrivacyEngine(accountant="rdp", secure_mode=False)
    made = engine.make_private(
        module=model,
        optimizer=optimizer,
        criterion=criterion,
        data_loader=loader,
        noise_multiplier=sigma,
        max_grad_norm=config.max_grad_norm,
        poisson_sampling=True,
        grad_sample_mode=config.grad_sample_mode,
        noise_generator=torch.Generator(device=device).manual_seed(secret_seed()),
    )
    if config.grad_sample_mode == "ghost":
        private_model, private_optimizer, private_criterion, private_loader = made
    else:
        private_model, private_optimizer, private_loader = made
        private_criterion = criterion
    if len(private_loader) != steps_per_epoch:
        raise AssertionError(f"Opacus sampler steps/epoch {len(private_loader)} != {steps_per_epoch}")

    started = time.monotonic()
    last_log = -math.inf
    step = 0
    loss_value = math.nan
    private_model.train()
    with warnings.catch_warnings():
        # ghost clipping's backward hooks fire on module outputs because the inputs (data) need
        # no gradient: expected, and otherwise repeated in every task log
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        for epoch in range(1, config.epochs + 1):
            epoch_loss, epoch_rows = 0.0, 0
            for (batch,) in private_loader:
                batch = batch.to(device, non_blocking=True)
                private_optimizer.zero_grad(set_to_none=True)
                if batch.shape[0] == 0:
                    # an empty Poisson batch still takes a (pure-noise) step: skipping it would make the
                    # number of noisy releases depend on the sample, which the accountant does not model
                    private_optimizer.step()
                    step += 1
                    continue
                output = private_model(batch)
                loss = private_criterion(output, batch)
                loss.backward()
                private_optimizer.step()
                step += 1
                epoch_loss += float(loss.item()) * batch.shape[0]
                epoch_rows += batch.shape[0]
            loss_value = epoch_loss / max(epoch_rows, 1)
            now = time.monotonic()
            if epoch in (1, config.epochs) or now - last_log >= config.log_every_seconds:
                last_log = now
                eps_so_far = accountant.epsilon(sgm_rdp(sample_rate, sigma, step))
                elapsed = now - started
                eta = elapsed / epoch * (config.epochs - epoch)
                log.info(
                    "epoch %d/%d  loss %.4f  ε spent so far %.3f of %.3f  elapsed %.0fs  time left ~%.0fs",
                    epoch,
                    config.epochs,
                    loss_value,
                    eps_so_far,
                    accountant.budget.epsilon,
                    elapsed,
                    eta,
                )
                if progress is not None:
                    progress(
                        {
                            "epoch": epoch,
                            "epochs": config.epochs,
                            "loss": loss_value,
                            "epsilon_spent": eps_so_far,
                            "elapsed_s": elapsed,
                            "eta_s": eta,
                        }
                    )
    accountant.spend_sgd(
        mechanism_name,
        sample_rate,
        sigma,
        step,
        max_grad_norm=config.max_grad_norm,
        epochs=config.epochs,
        expected_batch_size=batch_size,
    )
    # unwrap so the caller keeps a plain module (Opacus hooks removed)
    if hasattr(private_model, "_close"):
        private_model._close()
    model.to("cpu")
    seconds = time.monotonic() - started
    return TrainingResult(sigma, sample_rate, step, accountant.epsilon(), loss_value, seconds, str(device))
