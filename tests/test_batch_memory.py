"""Large logical batches in physical pieces (Opacus's BatchMemoryManager inside PrivateTrainer):
the same noisy steps, the same ε and the same weights, with bounded forward/backward batches."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from synth_core.dp_training import DPSGDConfig, train_with_dp_sgd
from synth_core.errors import ParameterError
from synth_core.generators import create_synthesizer
from synth_core.privacy import PrivacyAccountant, PrivacyBudget, shared_secret_seeds


class _RecordingMLP(nn.Module):
    """A small regressor of the last column from the others; records each forward's batch size."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d - 1, 16), nn.ReLU(), nn.Linear(16, 1))
        self.batch_sizes: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.batch_sizes.append(int(x.shape[0]))
        return self.net(x[:, :-1]).squeeze(-1)


class _PerSampleMSE(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.reduction = "mean"

    def forward(self, output: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        per_sample = (output - batch[:, -1]) ** 2
        return per_sample if self.reduction == "none" else per_sample.mean()


def _train(mode: str, max_physical: int | None, data: np.ndarray) -> tuple[_RecordingMLP, object, float]:
    torch.manual_seed(0)
    model = _RecordingMLP(data.shape[1])
    accountant = PrivacyAccountant(PrivacyBudget(2.0, 1e-5))
    config = DPSGDConfig(
        epochs=3, batch_size=200, learning_rate=1e-2, grad_sample_mode=mode, device="cpu",
        max_physical_batch_size=max_physical, log_every_seconds=1e9,
    )  # fmt: skip
    # a fixed key makes the Poisson samples and the DP noise repeat between the two runs
    with shared_secret_seeds(b"k" * 32):
        result = train_with_dp_sgd(model, _PerSampleMSE(), data, accountant, config, row_count=len(data))
    return model, result, accountant.epsilon()


@pytest.mark.parametrize("mode", ["ghost", "hooks"])
def test_physical_batches_give_the_logical_batch_update_and_accounting(mode: str) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1000, 4)).astype(np.float32)
    data = np.c_[x, x @ np.array([1.0, -2.0, 0.5, 0.0], dtype=np.float32)].astype(np.float32)

    whole, res_whole, eps_whole = _train(mode, None, data)
    split, res_split, eps_split = _train(mode, 48, data)

    assert max(split.batch_sizes) <= 48
    assert max(whole.batch_sizes) > 150  # the logical batches (expected 200) were really split
    assert len(split.batch_sizes) > len(whole.batch_sizes)
    # one noisy step per logical batch: the same steps, noise and ε
    assert res_split.steps == res_whole.steps == 15  # type: ignore[attr-defined]
    assert res_split.noise_multiplier == res_whole.noise_multiplier  # type: ignore[attr-defined]
    assert eps_split == eps_whole <= 2.0
    # the clipped per-sample gradients summed in pieces, then one noise draw: the same weights
    for a, b in zip(whole.parameters(), split.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_generators_take_a_physical_batch_size_and_check_it(adult_split, adult_spec) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ParameterError, match="max_physical_batch_size"):
        create_synthesizer("dp_tvae", max_physical_batch_size=0)
    with pytest.raises(ParameterError, match="max_physical_batch_size"):
        create_synthesizer("dp_maf", max_physical_batch_size=2.5)
    train, _ = adult_split
    rows = train.sample(4000, random_state=0).reset_index(drop=True)
    synth = create_synthesizer(
        "dp_tvae", epochs=1, batch_size=1000, max_physical_batch_size=128, device="cpu"
    )
    synth.fit(rows, adult_spec, PrivacyBudget(2.0, 1e-5), seed=0)
    assert synth.privacy_ is not None and synth.privacy_["epsilon"] <= 2.0
    # logical steps: the DP count of the 4,000 rows over the expected batch of 1,000 (4, or 5 when
    # the count's noise lands above 4,000)
    assert synth.transformer_ is not None
    assert synth.training_["steps"] == math.ceil(synth.transformer_.dp_row_count / 1000)
    assert len(synth.sample(50, seed=0)) == 50
