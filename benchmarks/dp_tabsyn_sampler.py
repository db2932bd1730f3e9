"""DP-TabSyn on UCI Adult: the consistency sampler against the full diffusion sampler.

Fits one DP-TabSyn with its default parameters at ε = 3, δ = 1e-5 on the fixed 80 % split (seed 7,
like ``dp_tvae_adult.py``), then generates ``--rows`` synthetic rows on the CPU with each latent
sampler from the same fitted model and records, per sampler:

* wall seconds of ``synth.sample(rows)`` end to end (latent sampling, VAE decoding, inverse
  transform, rule rejection): ``consistency_seconds``, ``diffusion_seconds`` and their ratio
  ``speedup``; each is the fastest of ``--repeats`` runs (the machine is shared);
* wall seconds of the latent sampler alone (the part the consistency model replaces);
* the mean 2-way marginal TVD against the real training rows (``tvd_2way_*``) and
  ``tvd_ratio = tvd_2way_consistency / tvd_2way_diffusion``;
* the train-synthetic-test-real AUC for ``income`` of each sampler's table.

Acceptance: ``speedup >= 10`` and ``tvd_ratio <= 1.2``.

    .venv/bin/python benchmarks/dp_tabsyn_sampler.py [--rows 100000] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import synth_core.generators.dp_tabsyn as dp_tabsyn
from synth_core.datasets import load_adult_frame
from synth_core.generators import create_synthesizer
from synth_core.metrics import marginal_tvd_2way, tstr_auc
from synth_core.privacy import PrivacyBudget
from synth_core.spec import TableSpec

REPO = Path(__file__).resolve().parent.parent
EPSILON, DELTA = 3.0, 1e-5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out", type=Path, default=REPO / "benchmarks" / "results" / "dp_tabsyn_sampler.json"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    frame = load_adult_frame(REPO / "data" / "adult" / "adult.data.gz")
    spec = TableSpec.from_yaml(REPO / "dags" / "specs" / "adult.yaml")
    order = np.random.default_rng(7).permutation(len(frame))
    cut = int(0.8 * len(order))
    train = frame.iloc[order[:cut]].reset_index(drop=True)
    holdout = frame.iloc[order[cut:]].reset_index(drop=True)

    started = time.perf_counter()
    synth = create_synthesizer("dp_tabsyn", device="cpu")
    synth.fit(train, spec, PrivacyBudget(EPSILON, DELTA), seed=args.seed)
    fit_seconds = time.perf_counter() - started
    assert isinstance(synth, dp_tabsyn.DPTabSynSynthesizer) and synth.privacy_ is not None
    print(f"fit in {fit_seconds:.0f} s, ε spent {synth.privacy_['epsilon']:.4f}", flush=True)

    per: dict[str, dict[str, Any]] = {}
    for sampler in ("consistency", "diffusion"):
        synth.sample(1_000, seed=0, sampler=sampler)  # warm-up (allocator, lazy imports)
        times, latent_times = [], []
        synthetic = None
        for rep in range(args.repeats):
            t0 = time.perf_counter()
            synthetic = synth.sample(args.rows, seed=100 + rep, sampler=sampler)
            times.append(time.perf_counter() - t0)
            gen = torch.Generator().manual_seed(rep)
            t0 = time.perf_counter()
            for chunk in _chunks(args.rows, 50_000):
                synth.sample_latents(chunk, gen, sampler)
            latent_times.append(time.perf_counter() - t0)
            print(
                f"{sampler}: sample({args.rows}) {times[-1]:.2f} s, latents alone {latent_times[-1]:.2f} s",
                flush=True,
            )
        assert synthetic is not None and len(synthetic) == args.rows
        tvd = marginal_tvd_2way(train, synthetic, spec)["mean"]
        auc = tstr_auc(synthetic, holdout, spec)
        per[sampler] = {
            "seconds": min(times),
            "all_seconds": times,
            "latent_seconds": min(latent_times),
            "tvd": tvd,
            "auc": auc["auc_synthetic"] if auc else None,
        }
        print(f"{sampler}: 2-way TVD {tvd:.4f}, TSTR AUC {per[sampler]['auc']:.4f}", flush=True)

    cm, dm = per["consistency"], per["diffusion"]
    params = synth.params
    result = {
        "benchmark": "dp_tabsyn_sampler",
        "rows": args.rows,
        "consistency_seconds": cm["seconds"],
        "diffusion_seconds": dm["seconds"],
        "speedup": dm["seconds"] / cm["seconds"],
        "tvd_2way_consistency": cm["tvd"],
        "tvd_2way_diffusion": dm["tvd"],
        "tvd_ratio": cm["tvd"] / dm["tvd"],
        "device": "cpu",
        "acceptance": {
            "speedup_at_least_10": dm["seconds"] / cm["seconds"] >= 10,
            "tvd_ratio_at_most_1_2": cm["tvd"] / dm["tvd"] <= 1.2,
        },
        "timing": "wall seconds of synth.sample(rows) end to end, fastest of the repeats",
        "repeats": args.repeats,
        "consistency_all_seconds": cm["all_seconds"],
        "diffusion_all_seconds": dm["all_seconds"],
        "latent_sampler_seconds": {"consistency": cm["latent_seconds"], "diffusion": dm["latent_seconds"]},
        "latent_sampler_speedup": dm["latent_seconds"] / cm["latent_seconds"],
        "network_evaluations_per_row": {
            "consistency": params["consistency_steps"],
            "diffusion": 2 * params["diffusion_steps"] - 1,
        },
        "tstr_auc_income": {"consistency": cm["auc"], "diffusion": dm["auc"]},
        "fit": {
            "epsilon_target": EPSILON,
            "delta": DELTA,
            "epsilon_spent": synth.privacy_["epsilon"],
            "fit_seconds": fit_seconds,
            "vae_epsilon_after": synth.training_["vae"]["epsilon_after"],
            "vae_noise_multiplier": synth.training_["vae"]["noise_multiplier"],
            "diffusion_noise_multiplier": synth.training_["diffusion"]["noise_multiplier"],
            "phase_seconds": {
                "vae": synth.training_["vae"]["seconds"],
                "diffusion": synth.training_["diffusion"]["seconds"],
                "distillation": synth.training_["distillation"]["seconds"],
            },
            "params": params,
        },
        "train_rows": len(train),
        "machine": {
            "cpu_threads": torch.get_num_threads(),
            "platform": platform.platform(),
            "torch": torch.__version__,
            "load_average_at_end": _loadavg(),
        },
    }
    print(
        f"speedup {result['speedup']:.1f}x (latent sampler alone {result['latent_sampler_speedup']:.1f}x), "
        f"tvd ratio {result['tvd_ratio']:.3f}",
        flush=True,
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


def _chunks(n: int, size: int) -> list[int]:
    return [min(size, n - start) for start in range(0, n, size)]


def _loadavg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


if __name__ == "__main__":
    main()
