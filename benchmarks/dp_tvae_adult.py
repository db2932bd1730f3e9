"""DP-TVAE on UCI Adult: utility (train-synthetic-test-real AUC for income) and training speed.

For each ε in the grid, fits DP-TVAE several times (fresh DP noise each time) on a fixed 80 %
split and scores a synthetic table of the same size with a gradient-boosted classifier tested on
the real 20 % holdout. Also times one fit per Opacus per-sample-gradient mode (ghost vs hooks).

    .venv/bin/python benchmarks/dp_tvae_adult.py [--runs 3] [--epochs 10] [--out benchmarks/results/dp_tvae_adult.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from synth_core.datasets import load_adult_frame
from synth_core.generators import create_synthesizer
from synth_core.metrics import tstr_auc
from synth_core.privacy import PrivacyBudget
from synth_core.spec import TableSpec

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--epsilons", type=float, nargs="+", default=[0.5, 1.0, 3.0])
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "dp_tvae_adult.json")
    args = parser.parse_args()

    frame = load_adult_frame(REPO / "data" / "adult" / "adult.data.gz")
    spec = TableSpec.from_yaml(REPO / "dags" / "specs" / "adult.yaml")
    order = np.random.default_rng(7).permutation(len(frame))
    cut = int(0.8 * len(order))
    train = frame.iloc[order[:cut]].reset_index(drop=True)
    holdout = frame.iloc[order[cut:]].reset_index(drop=True)

    rows: list[dict[str, object]] = []
    for eps in args.epsilons:
        aucs = []
        for run in range(args.runs):
            started = time.perf_counter()
            synth = create_synthesizer("dp_tvae", epochs=args.epochs).fit(
                train, spec, PrivacyBudget(eps, 1e-6), seed=run
            )
            fit_s = time.perf_counter() - started
            synthetic = synth.sample(len(train), seed=run)
            scores = tstr_auc(synthetic, holdout, spec, real_train=train)
            assert scores is not None and synth.privacy_ is not None
            aucs.append(scores["auc_synthetic"])
            row = {
                "epsilon_target": eps,
                "epsilon_spent": synth.privacy_["epsilon"],
                "run": run,
                "auc_synthetic": scores["auc_synthetic"],
                "auc_real": scores["auc_real"],
                "fit_seconds": fit_s,
                "train_seconds": synth.training_["seconds"],
                "noise_multiplier": synth.training_["noise_multiplier"],
                "steps": synth.training_["steps"],
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
        print(
            f"ε={eps}: AUC mean {statistics.mean(aucs):.3f}, min {min(aucs):.3f} over {len(aucs)} runs",
            flush=True,
        )

    speed = []
    for mode in ("ghost", "hooks"):
        synth = create_synthesizer("dp_tvae", epochs=3, grad_sample_mode=mode)
        synth.fit(train, spec, PrivacyBudget(3.0, 1e-6), seed=0)
        rows_per_s = len(train) * 3 / synth.training_["seconds"]
        speed.append(
            {
                "grad_sample_mode": mode,
                "epochs": 3,
                "train_seconds": synth.training_["seconds"],
                "rows_per_second": rows_per_s,
            }
        )
        print(
            f"{mode}: {rows_per_s:,.0f} rows/s ({synth.training_['seconds']:.1f} s for 3 epochs)", flush=True
        )

    result = {
        "benchmark": "dp_tvae_adult",
        "machine": {
            "cpu_count": torch.get_num_threads(),
            "platform": platform.platform(),
            "torch": torch.__version__,
            "device": "cpu",
        },
        "train_rows": len(train),
        "holdout_rows": len(holdout),
        "epochs": args.epochs,
        "runs": rows,
        "speed": speed,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
