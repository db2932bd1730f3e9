"""PLD vs RDP accounting: ε on a (q, σ, steps) grid, and what the tighter bound buys on UCI Adult.

1. Grid: ε at δ=1e-5 of DP-SGD alone (Poisson rate q, noise multiplier σ, steps) under RDP (the
   project's sampled-Gaussian RDP, Balle et al. 2020 conversion) and under the PLD accountant
   (``synth_core.accounting``: PRV composition, both directions, error 0.01 included), with the
   time each took.
2. Adult, dp_tvae: at ε ∈ {1, 3} (δ=1e-6, the settings of ``benchmarks/dp_tvae_adult.py``),
   fits calibrated with RDP alone (the accountant before issue 21: ``_calibrate_pld`` switched
   off) and with the PLD accountant, same preprocessing: noise multiplier, released ε, which
   accountant, calibration seconds, and train-synthetic-test-real AUC for income (``--runs``
   fits per arm, fresh DP noise each).
3. Adult, aim: the ρ its rounds may spend after the same DP preprocessing. AIM's exponential-mechanism
   picks are composed in zCDP (the PLD accountant does not model them), so its ρ is the same under
   both; recorded beside the ρ a release of Gaussian measurements only could spend under the PLD.

    .venv/bin/python benchmarks/accounting.py [--runs 1] [--epochs 10] [--out benchmarks/results/accounting.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from synth_core.accounting import SampledGaussian, pld_epsilon
from synth_core.datasets import load_adult_frame
from synth_core.generators import create_synthesizer
from synth_core.generators.marginal import remaining_rho
from synth_core.metrics import tstr_auc
from synth_core.privacy import PrivacyAccountant, PrivacyBudget, rdp_to_epsilon, sgm_rdp
from synth_core.spec import TableSpec
from synth_core.transformer import fit_transformer_under_dp

REPO = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def rdp_calibration() -> Iterator[None]:
    """DP-SGD's noise calibrated with RDP alone, as before the PLD accountant (the baseline arm)."""
    original = PrivacyAccountant._calibrate_pld
    PrivacyAccountant._calibrate_pld = lambda self, sample_rate, steps, target, sigma_rdp: sigma_rdp  # type: ignore[method-assign]
    try:
        yield
    finally:
        PrivacyAccountant._calibrate_pld = original  # type: ignore[method-assign]


def grid(delta: float = 1e-5) -> list[dict[str, Any]]:
    rows = []
    for q in (0.004, 0.02, 0.1):
        for sigma in (0.8, 2.0):
            for steps in (100, 1000, 4000):
                started = time.perf_counter()
                rdp = rdp_to_epsilon(sgm_rdp(q, sigma, steps), delta)
                rdp_s = time.perf_counter() - started
                started = time.perf_counter()
                pld = pld_epsilon((SampledGaussian(q, sigma, steps),), delta, 0.01)
                pld_s = time.perf_counter() - started
                row = {
                    "sample_rate": q,
                    "noise_multiplier": sigma,
                    "steps": steps,
                    "epsilon_rdp": rdp,
                    "epsilon_pld": pld,
                    "pld_over_rdp": pld / rdp,
                    "rdp_seconds": rdp_s,
                    "pld_seconds": pld_s,
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
    return rows


def dp_tvae_arms(
    train: Any, holdout: Any, spec: TableSpec, runs: int, epochs: int, save: Any
) -> list[dict[str, Any]]:
    """The fits, each saved as it finishes (``save(rows)``): the machine is shared and slow."""
    rows: list[dict[str, Any]] = []
    for eps in (1.0, 3.0):
        for arm in ("rdp", "pld"):
            for run in range(runs):
                print(f"dp_tvae ε={eps} {arm} run {run}", flush=True)
                synth = create_synthesizer("dp_tvae", epochs=epochs)
                with rdp_calibration() if arm == "rdp" else contextlib.nullcontext():
                    started = time.perf_counter()
                    synth.fit(train, spec, PrivacyBudget(eps, 1e-6), seed=run)
                    fit_s = time.perf_counter() - started
                assert synth.privacy_ is not None and synth.training_ is not None
                scores = tstr_auc(synth.sample(len(train), seed=run), holdout, spec, real_train=train)
                assert scores is not None
                row = {
                    "epsilon_target": eps,
                    "calibration": arm,
                    "run": run,
                    "noise_multiplier": synth.training_["noise_multiplier"],
                    "steps": synth.training_["steps"],
                    "epsilon_released": synth.privacy_["epsilon"],
                    "accountant": synth.privacy_["accountant"],
                    "epsilon_rdp": synth.privacy_["epsilon_rdp"],
                    "epsilon_pld": synth.privacy_["epsilon_pld"],
                    "auc_synthetic": scores["auc_synthetic"],
                    "auc_real": scores["auc_real"],
                    "fit_seconds": fit_s,
                    "train_seconds": synth.training_["seconds"],
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
                save(rows)
    return rows


def calibration_seconds(train: Any, spec: TableSpec, q: float, steps: int) -> list[dict[str, Any]]:
    """Time of one noise calibration after Adult's DP preprocessing, RDP alone vs PLD."""
    rows = []
    for eps in (1.0, 3.0):
        for arm in ("rdp", "pld"):
            acc = PrivacyAccountant(PrivacyBudget(eps, 1e-6))
            fit_transformer_under_dp(train, spec, acc, np.random.default_rng(0))
            with rdp_calibration() if arm == "rdp" else contextlib.nullcontext():
                started = time.perf_counter()
                sigma = acc.calibrate_noise_multiplier(q, steps)
                seconds = time.perf_counter() - started
            rows.append(
                {"epsilon_target": eps, "calibration": arm, "noise_multiplier": sigma, "seconds": seconds}
            )
            print(json.dumps(rows[-1]), flush=True)
    return rows


def aim_rho(train: Any, spec: TableSpec) -> list[dict[str, Any]]:
    rows = []
    for eps in (1.0, 3.0):
        acc = PrivacyAccountant(PrivacyBudget(eps, 1e-6))
        fit_transformer_under_dp(train, spec, acc, np.random.default_rng(0))
        rho_aim = remaining_rho(acc)
        # a release of Gaussian measurements only: the largest ρ whose PLD bound meets the target
        lo, hi = 0.0, 4.0 * rho_aim
        for _ in range(60):
            mid = (lo + hi) / 2
            if acc.epsilon_pld((SampledGaussian.at_rho(mid),)) <= eps:
                lo = mid
            else:
                hi = mid
        row = {
            "epsilon_target": eps,
            "preprocessing_epsilon": acc.epsilon(),
            "aim_rho_zcdp": rho_aim,
            "aim_rho_pld": rho_aim,
            "aim_accountant": "zcdp (exponential-mechanism picks are not modelled by the PLD)",
            "gaussian_only_rho_pld": lo,
            "gaussian_only_gain": lo / rho_aim,
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def summary(tvae: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for eps in sorted({r["epsilon_target"] for r in tvae}):
        arms = {}
        for arm in ("rdp", "pld"):
            rs = [r for r in tvae if r["epsilon_target"] == eps and r["calibration"] == arm]
            if not rs:
                continue
            arms[arm] = {
                "noise_multiplier": rs[0]["noise_multiplier"],
                "auc_mean": statistics.mean(r["auc_synthetic"] for r in rs),
                "epsilon_released": rs[0]["epsilon_released"],
                "accountant": rs[0]["accountant"],
            }
        out.append(
            {
                "epsilon_target": eps,
                **{f"{k}_{arm}": v for arm, d in arms.items() for k, v in d.items()},
            }
        )
        if len(arms) == 2:
            out[-1]["noise_multiplier_ratio"] = (
                arms["pld"]["noise_multiplier"] / arms["rdp"]["noise_multiplier"]
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "accounting.json")
    args = parser.parse_args()

    frame = load_adult_frame(REPO / "data" / "adult" / "adult.data.gz")
    spec = TableSpec.from_yaml(REPO / "dags" / "specs" / "adult.yaml")
    order = np.random.default_rng(7).permutation(len(frame))
    cut = int(0.8 * len(order))
    train = frame.iloc[order[:cut]].reset_index(drop=True)
    holdout = frame.iloc[order[cut:]].reset_index(drop=True)

    issue = {
        "sample_rate": 0.01,
        "noise_multiplier": 1.0,
        "steps": 1000,
        "delta": 1e-5,
        "epsilon_rdp": rdp_to_epsilon(sgm_rdp(0.01, 1.0, 1000), 1e-5),
        "epsilon_pld": pld_epsilon((SampledGaussian(0.01, 1.0, 1000),), 1e-5, 0.01),
    }
    print(json.dumps(issue), flush=True)
    # dp_tvae's plan on Adult's 80 % split (batch 500 of ~26k DP-counted rows: 53 steps per epoch)
    steps_per_epoch = 53
    q, steps = 1.0 / steps_per_epoch, steps_per_epoch * args.epochs
    adult: dict[str, Any] = {
        "train_rows": len(train),
        "holdout_rows": len(holdout),
        "delta": 1e-6,
        "dp_tvae_epochs": args.epochs,
        "dp_tvae_plan": {"sample_rate": q, "steps": steps},
        "calibration": calibration_seconds(train, spec, q, steps),
        "aim": aim_rho(train, spec),
    }
    result = {
        "benchmark": "accounting",
        "machine": {"cpu_count": torch.get_num_threads(), "platform": platform.platform(), "device": "cpu"},
        "issue_example": issue,
        "grid_delta": 1e-5,
        "grid_pld_eps_error": 0.01,
        "grid": grid(),
        "adult": adult,
    }

    def save(rows: list[dict[str, Any]]) -> None:
        adult["dp_tvae_summary"] = summary(rows)
        adult["dp_tvae_runs"] = rows
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")

    save([])
    dp_tvae_arms(train, holdout, spec, args.runs, args.epochs, save)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
