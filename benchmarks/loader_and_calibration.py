"""DP-SGD input path on a CPU: the Poisson batch loader and the noise calibration.

* **loader**: rows per second through Opacus's ``DPDataLoader`` (Poisson sampling, the loader every
  DP-SGD generator trains with), over one epoch of ``--rows`` float32 rows × ``--features``, for

  - ``tensor_dataset``: a ``TensorDataset`` with the default collate (one ``__getitem__`` and one
    small tensor per row, then ``torch.stack``): what the trainer used before;
  - ``rows``: ``synth_core.dp_training._Rows`` + ``_as_batch`` (one tensor index per batch): what
    it uses now.

* **calibration**: seconds per :meth:`PrivacyAccountant.calibrate_noise_multiplier` (the ~45 RDP
  curve evaluations of a bisection) at sample rates q = 0.07 / 0.25 / 0.5 for 20 epochs, with
  ``synth_core.privacy.sgm_rdp`` (vectorized) and with Opacus's ``compute_rdp`` in its place (the
  term-by-term loop used before); the two σ found must agree.

    .venv/bin/python benchmarks/loader_and_calibration.py [--rows 200000] [--features 60] [--batch 2000]

Writes ``benchmarks/results/loader_and_calibration.json``. One torch thread.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

RESULTS = Path(__file__).resolve().parent / "results" / "loader_and_calibration.json"


def loader_rows_per_s(kind: str, data: torch.Tensor, batch: int) -> float:
    from opacus.data_loader import DPDataLoader

    from synth_core.dp_training import _as_batch, _Rows

    plain: torch.utils.data.DataLoader[Any]
    if kind == "tensor_dataset":
        plain = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(data), batch_size=batch)
    else:
        plain = torch.utils.data.DataLoader(_Rows(data), batch_size=batch, collate_fn=_as_batch)
    loader = DPDataLoader.from_data_loader(plain)
    rows = 0
    started = time.perf_counter()
    for (x,) in loader:
        rows += int(x.shape[0])
    return rows / (time.perf_counter() - started)


def calibration_seconds(q: float, epochs: int, rdp: Any) -> tuple[float, float]:
    import synth_core.privacy as privacy

    accountant = privacy.PrivacyAccountant(privacy.PrivacyBudget(3.0, 1e-5))
    steps = epochs * math.ceil(1.0 / q)
    original = privacy.sgm_rdp
    privacy.sgm_rdp = rdp  # calibrate_noise_multiplier looks the curve up by name
    try:
        started = time.perf_counter()
        sigma = accountant.calibrate_noise_multiplier(q, steps)
        return time.perf_counter() - started, sigma
    finally:
        privacy.sgm_rdp = original


def opacus_sgm_rdp(sample_rate: float, noise_multiplier: float, steps: int) -> np.ndarray:
    from opacus.accountants.analysis.rdp import compute_rdp

    from synth_core.privacy import RDP_ORDERS

    return np.asarray(compute_rdp(q=sample_rate, noise_multiplier=noise_multiplier, steps=steps,
                                  orders=list(RDP_ORDERS)), dtype=np.float64)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--features", type=int, default=60)
    parser.add_argument("--batch", type=int, default=2_000)
    parser.add_argument("--epochs", type=int, default=20, help="epochs the calibration plans for")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    from synth_core.privacy import sgm_rdp

    data = torch.randn(args.rows, args.features, dtype=torch.float32)
    result: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "torch_threads": 1,
        # rates are only comparable between runs on an equally loaded machine
        "load_avg_1m_before": os.getloadavg()[0],
        "loader": {"rows": args.rows, "features": args.features, "expected_batch": args.batch},
        "calibration": {"epochs": args.epochs, "delta": 1e-5, "epsilon": 3.0},
    }
    for kind in ("tensor_dataset", "rows"):
        loader_rows_per_s(kind, data[: args.batch * 5], args.batch)  # warm-up
        rate = loader_rows_per_s(kind, data, args.batch)
        result["loader"][f"{kind}_rows_per_s"] = rate
        print(f"loader {kind:15s} {rate:12,.0f} rows/s")
    result["loader"]["speedup"] = (
        result["loader"]["rows_rows_per_s"] / result["loader"]["tensor_dataset_rows_per_s"]
    )
    for q in (0.07, 0.25, 0.5):
        ours, sigma = calibration_seconds(q, args.epochs, sgm_rdp)
        theirs, sigma_opacus = calibration_seconds(q, args.epochs, opacus_sgm_rdp)
        assert abs(sigma - sigma_opacus) <= 1e-6 * sigma_opacus, (sigma, sigma_opacus)
        result["calibration"][f"q={q}"] = {
            "vectorized_s": ours,
            "opacus_loop_s": theirs,
            "noise_multiplier": sigma,
        }
        print(f"calibration q={q:<4} vectorized {ours:6.2f} s   Opacus loop {theirs:6.2f} s   σ={sigma:.4f}")
    result["load_avg_1m_after"] = os.getloadavg()[0]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
