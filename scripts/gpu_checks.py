"""Checks that need a CUDA GPU (CI has none): run by hand on a GPU machine.

1. Every DP-SGD generator fits on CUDA and samples: a few epochs on 5,000 Adult rows at ε=3; prints
   ε spent, the device the training ran on, and seconds.
2. Large logical batches in physical pieces on CUDA (``max_physical_batch_size``): the same steps,
   ε and weights as the unsplit batch, with the rows resident on the GPU.

    python scripts/gpu_checks.py      # exits 1 when a check fails
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

REPO = Path(__file__).resolve().parent.parent

#: a few epochs each: these check that training and sampling run on the GPU, not quality
QUICK: dict[str, dict[str, Any]] = {
    "dp_tvae": {"epochs": 2},
    "dp_ctgan": {"epochs": 2},
    "dp_ctgan_ensemble": {"epochs": 2, "n_members": 2},
    "dp_tabsyn": {"vae_epochs": 2, "diffusion_epochs": 2, "distill_steps": 50},
    "dp_maf": {"epochs": 2},
    "dp_tablegan": {"epochs": 2},
    "dp_tgan": {"epochs": 2},
    "dp_great": {"epochs": 1},
}


def check_generators() -> list[dict[str, Any]]:
    import synth_core.generators  # noqa: F401
    from synth_core.datasets import load_adult_frame
    from synth_core.generators import create_synthesizer
    from synth_core.privacy import PrivacyBudget
    from synth_core.spec import TableSpec

    frame = load_adult_frame(REPO / "data" / "adult" / "adult.data.gz").sample(5_000, random_state=0)
    spec = TableSpec.from_yaml(REPO / "dags" / "specs" / "adult.yaml")
    out = []
    for name, params in QUICK.items():
        started = time.perf_counter()
        row: dict[str, Any] = {"generator": name}
        try:
            synth = create_synthesizer(name, device="cuda", **params)
            synth.fit(frame.reset_index(drop=True), spec, PrivacyBudget(3.0, 1e-6), seed=0)
            sample = synth.sample(1_000, seed=0)
            assert synth.privacy_ is not None
            row |= {
                "ok": len(sample) == 1_000 and synth.privacy_["epsilon"] <= 3.0,
                "epsilon": round(float(synth.privacy_["epsilon"]), 4),
                "device": json.dumps(synth.training_.get("device")),
            }
        except Exception as exc:  # report every generator, then fail
            row |= {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
        row["seconds"] = round(time.perf_counter() - started, 1)
        print(json.dumps(row), flush=True)
        out.append(row)
    return out


class _MLP(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d - 1, 16), nn.ReLU(), nn.Linear(16, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x[:, :-1]).squeeze(-1)


class _MSE(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.reduction = "mean"

    def forward(self, output: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        per_sample = (output - batch[:, -1]) ** 2
        return per_sample if self.reduction == "none" else per_sample.mean()


def check_physical_batches() -> list[dict[str, Any]]:
    from synth_core.dp_training import DPSGDConfig, train_with_dp_sgd
    from synth_core.privacy import PrivacyAccountant, PrivacyBudget, shared_secret_seeds

    rng = np.random.default_rng(0)
    x = rng.normal(size=(1000, 4)).astype(np.float32)
    data = np.c_[x, x @ np.array([1.0, -2.0, 0.5, 0.0], dtype=np.float32)].astype(np.float32)
    out = []
    for mode in ("ghost", "hooks"):
        runs = []
        for physical in (None, 48):
            torch.manual_seed(0)
            model = _MLP(5)
            accountant = PrivacyAccountant(PrivacyBudget(2.0, 1e-5))
            config = DPSGDConfig(epochs=3, batch_size=200, learning_rate=1e-2, grad_sample_mode=mode,
                                 device="cuda", max_physical_batch_size=physical)  # fmt: skip
            with shared_secret_seeds(b"k" * 32):
                result = train_with_dp_sgd(model, _MSE(), data, accountant, config, row_count=len(data))
            runs.append((model, result, accountant.epsilon()))
        (a, ra, ea), (b, rb, eb) = runs
        with torch.no_grad():
            diff = max(
                float((p - q).abs().max()) for p, q in zip(a.parameters(), b.parameters(), strict=True)
            )
        row = {"check": f"physical batches ({mode})", "steps": [ra.steps, rb.steps], "epsilon": [ea, eb],
               "max_weight_diff": diff, "device": ra.device}  # fmt: skip
        row["ok"] = ra.steps == rb.steps and ea == eb and diff < 1e-4 and ra.device.startswith("cuda")
        print(json.dumps(row), flush=True)
        out.append(row)
    return out


def main() -> int:
    if not torch.cuda.is_available():
        print("no CUDA device visible")
        return 1
    print(f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}", flush=True)
    rows = check_physical_batches() + check_generators()
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
