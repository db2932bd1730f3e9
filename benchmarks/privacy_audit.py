"""Full privacy audit: each DP mechanism of the product, run many times on neighbouring tables.

For every mechanism an empirical ε lower bound (Clopper–Pearson, joint 95 %; the threshold test
is fitted on one half of the runs and evaluated on the other) is reported beside the ε the
release's accountant charged for it, both at the audit's δ (see ``synth_core/privacy_audit.py``).
Neighbouring tables differ by one added row (the product's neighbouring relation: add/remove one
row). Mechanisms:

* histogram with NULLs (a NULLable integer column; neighbours: one more non-NULL row, one more NULL);
* the row count;
* category discovery (neighbours: one more row of a released value, of a value only the added row
  holds, a NULL);
* AIM select + measure (one round: exponential pick, then the Gaussian marginal of the pick);
* DP-SGD through ``PrivateTrainer`` with a gradient canary (the trainer's own calibration, Opacus's
  noise, the final model as the attacker's view);
* a control that must fail: a histogram released with a non-NULL count beside it under the
  histogram's charge (the bug fixed in issue 16): the audit's power, shown.

    .venv/bin/python benchmarks/privacy_audit.py [--runs 1000000] [--sgd-runs 3000] [--sgd-poisson-runs 800]

Writes ``benchmarks/results/privacy_audit.json``. Gaussian/thresholded releases are vectorised
(the product computes the released vector once per side, the release object draws the runs'
noise); DP-SGD trains once per run (20–200 ms per training on the loaded 2-core machine).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from synth_core.privacy import PrivacyBudget
from synth_core.privacy_audit import (
    AuditResult,
    RecordingAccountant,
    audit_aim_round,
    audit_dp_sgd_canary,
    audit_releases,
    audit_transformer_release,
)
from synth_core.spec import TableSpec

RESULTS = Path(__file__).resolve().parent / "results" / "privacy_audit.json"
DELTA = 0.01
#: preprocessing ρ of the audited transformer fits: 0.5 per release (row count + one column)
PREPROCESSING_RHO = 1.0


def _under_charged_control(runs: int, rng: np.random.Generator) -> AuditResult:
    sides = [RecordingAccountant(preprocessing_rho=PREPROCESSING_RHO) for _ in range(2)]
    cells = [np.array([1, 1, 1, 1, 2]), np.array([1, 1, 2, 1, 2])]  # + a row in bin 2
    for acc, hist, present in zip(sides, cells, (4, 5), strict=True):
        acc.release_gaussian("quantiles:x", np.append(hist, present), l2_sensitivity=1.0, rho=0.5, rng=rng)
    return audit_releases(
        "CONTROL: histogram + non-NULL count on one charge (the issue-16 bug; must fail)",
        sides[0].recorded,
        sides[1].recorded,
        runs=runs,
        delta=DELTA,
        rng=rng,
        neighbour="add one non-NULL row",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=1_000_000, help="runs per side, vectorised mechanisms")
    parser.add_argument("--sgd-runs", type=int, default=3_000, help="trainings per side, DP-SGD with q = 1")
    parser.add_argument(
        "--sgd-poisson-runs", type=int, default=800, help="trainings per side, DP-SGD with q = 1/4"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    started = time.perf_counter()

    nullable = pd.DataFrame({"x": pd.array([0, 1, 2, 3, None, None], dtype="Int64")})
    nullable_spec = TableSpec.from_dict(
        {"table": "t", "columns": [{"name": "x", "kind": "integer", "nullable": True, "bounds": [0, 3]}]}
    )
    categorical = pd.DataFrame({"c": pd.Series(["a"] * 20 + ["b"] * 20 + [None] * 5, dtype="str")})
    categorical_spec = TableSpec.from_dict(
        {"table": "t", "columns": [{"name": "c", "kind": "categorical", "nullable": True}]}
    )
    results: list[AuditResult] = []
    for added in (2, None):
        results.append(
            audit_transformer_release(
                "histogram with NULLs",
                "quantiles:x",
                nullable,
                nullable_spec,
                {"x": added},
                runs=args.runs,
                delta=DELTA,
                rng=rng,
                preprocessing_rho=PREPROCESSING_RHO,
            )
        )
    results.append(
        audit_transformer_release(
            "row count",
            "row_count",
            nullable,
            nullable_spec,
            {"x": 1},
            runs=args.runs,
            delta=DELTA,
            rng=rng,
            preprocessing_rho=PREPROCESSING_RHO,
        )
    )
    for value in ("a", "zzz-only-in-the-neighbour", None):
        results.append(
            audit_transformer_release(
                "category discovery",
                "categories:c",
                categorical,
                categorical_spec,
                {"c": value},
                runs=args.runs,
                delta=DELTA,
                rng=rng,
                preprocessing_rho=PREPROCESSING_RHO,
                budget=PrivacyBudget(1.0, 0.01, discovery_delta_fraction=0.1),
            )
        )
    results.append(audit_aim_round(runs=args.runs, rho=0.5, delta=DELTA, rng=rng))
    sgd_started = time.perf_counter()
    # full batches (q = 1, 4 steps) and Poisson batches (q = 1/4, 16 steps)
    results.append(audit_dp_sgd_canary(runs=args.sgd_runs, epsilon=4.0, delta=DELTA, epochs=4, rng=rng))
    results.append(
        audit_dp_sgd_canary(
            runs=args.sgd_poisson_runs, epsilon=4.0, delta=DELTA, epochs=4, batch_size=5, rng=rng
        )
    )
    sgd_seconds = time.perf_counter() - sgd_started
    control = _under_charged_control(args.runs, rng)

    audited = [r.to_dict() for r in results]
    for row in audited:
        print(
            f"{row['mechanism']:<45} {row['neighbour']:<40} ε_lb {row['epsilon_lower_bound']:6.3f}  "
            f"claimed {row['claimed_epsilon']:6.3f}  {'ok' if row['passed'] else 'EXCEEDS'}"
        )
    print(f"{control.mechanism}: ε_lb {control.epsilon_lower_bound:.3f} vs {control.claimed_epsilon:.3f}")
    out: dict[str, Any] = {
        "benchmark": "privacy_audit",
        "what": "empirical ε lower bounds (Clopper–Pearson, threshold fitted on half the runs, "
        "evaluated on the other half) beside the charged ε, both at the audit's δ",
        "neighbouring_relation": "add/remove one row",
        "delta": DELTA,
        "confidence": 0.95,
        "runs_per_side": args.runs,
        "sgd_trainings_per_side": {"q=1": args.sgd_runs, "q=1/4": args.sgd_poisson_runs},
        "all_within_claim": all(r.passed for r in results),
        "mechanisms": audited,
        "control_must_fail": {**control.to_dict(), "caught": not control.passed},
        "seconds": round(time.perf_counter() - started, 1),
        "sgd_seconds": round(sgd_seconds, 1),
        "machine": f"{platform.machine()}, {platform.python_version()}, 2 shared CPU cores",
        "command": "python benchmarks/privacy_audit.py "
        f"--runs {args.runs} --sgd-runs {args.sgd_runs} --sgd-poisson-runs {args.sgd_poisson_runs} --seed {args.seed}",
    }
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {RESULTS} in {out['seconds']} s")
    if not out["all_within_claim"] or control.passed:
        raise SystemExit(
            "privacy audit FAILED: a mechanism shows more than it was charged for, or the control passed"
        )


if __name__ == "__main__":
    main()
