"""A reusable check that a generator's private gradients are clipped per sample and noised.

Use with any :class:`synth_core.dp_training.PrivateTrainer`: run ``loss_fn`` (a forward pass of
one private row through ``trainer.module`` returning the loss, exactly as the generator's loop
does), then Opacus's ``pre_step`` (clip + noise + scale by the expected batch size) without the
parameter update, and measure the resulting gradient.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from synth_core.dp_training import PrivateTrainer


def private_gradient_norm(trainer: PrivateTrainer, loss_fn: Callable[[], Any], *, noise: bool) -> float:
    """‖gradient‖₂ × expected batch size after clipping (and noise when ``noise``) for one step."""
    optimizer = trainer.optimizer
    saved = optimizer.noise_multiplier
    optimizer.noise_multiplier = saved if noise else 0.0
    try:
        optimizer.zero_grad(set_to_none=True)
        loss_fn().backward()
        optimizer.pre_step()
        grads = [p.grad.detach().flatten() for p in trainer.raw_module.parameters() if p.grad is not None]
        norm = float(torch.linalg.vector_norm(torch.cat(grads))) * float(optimizer.expected_batch_size)
    finally:
        optimizer.noise_multiplier = saved
        optimizer.zero_grad(set_to_none=True)
    return norm


def assert_clipped_and_noised(trainer: PrivateTrainer, loss_fn: Callable[[], Any]) -> None:
    """A one-row batch's update is bounded by the clip norm without noise, and noise changes it."""
    clip = float(trainer.config.max_grad_norm)
    clean = private_gradient_norm(trainer, loss_fn, noise=False)
    assert 0 < clean <= clip * (1 + 1e-4), f"clipped per-sample gradient norm {clean} exceeds the clip {clip}"
    noisy = private_gradient_norm(trainer, loss_fn, noise=True)
    # Gaussian noise of std σ·C per coordinate over many parameters dwarfs one clipped gradient
    assert noisy > 3 * clip, f"no noise was added (norm {noisy} with σ={trainer.noise_multiplier})"
