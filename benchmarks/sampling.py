"""Sampling speed: 1,000,000 rows from DP-TVAE, AIM and MST models of UCI Adult, with the Adult
spec's rules enforced, against the sampler of commit ``e114b96`` (the baseline) in the same run.

Steps (each generator, one fitted bundle sampled by both samplers):

1. Fit ``dp_tvae`` (few epochs), ``aim`` and ``mst`` (ε = 1, few rounds) once on ``data/adult`` with
   the baseline code and save the bundles under ``--work`` (kept: a rerun reuses them).
2. For each generator, ``--repeats`` times, alternating which goes first: a fresh subprocess per
   sampler (baseline = a ``git worktree`` of the baseline commit on ``PYTHONPATH``; current = this
   tree) loads the bundle, warms up and times one ``sample(rows, seed=1)`` (wall seconds; the
   1-minute load average before it is kept). The first run writes its sample to Parquet, and the
   baseline's first run also two samples of other seeds. Rule violations are counted with the
   reference evaluator (``Rule.evaluate_reference``).
3. Distributions: for every column and for the 2-way tables in ``PAIRS`` (the rules' columns and
   the label's pairs), the total variation distance (TVD) between the baseline's and the current
   sampler's samples, against the largest TVD between the three baseline samples (the noise
   floor). Integer columns are compared on their exact values when they have at most 200
   distinct values, else on 50 quantile bins of the first baseline sample; NULL is a cell.

    .venv/bin/python benchmarks/sampling.py [--rows 1000000] [--repeats 3] [--work /tmp/dpsynth-sampling]

Writes ``benchmarks/results/sampling.json`` (``--out``) with the machine load (``os.getloadavg``)
before and after the measurement: the 2-core machine is shared, so timings move with the load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
BASELINE_COMMIT = "e114b96"
GENERATORS: dict[str, dict[str, Any]] = {
    "dp_tvae": {"epochs": 2},
    "aim": {"max_rounds": 6, "round_iters": 200, "iters": 300},
    "mst": {"iters": 300},
}
EPSILON = 1.0
DELTA = 1e-6

_FIT = """
import sys
from pathlib import Path
from synth_core.datasets import load_adult_frame
from synth_core.generators import create_synthesizer
from synth_core.privacy import PrivacyBudget
from synth_core.spec import TableSpec
import json
repo, name, params, eps, delta, out = Path(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]), sys.argv[6]
frame = load_adult_frame(repo / "data" / "adult" / "adult.data.gz")
spec = TableSpec.from_yaml(repo / "dags" / "specs" / "adult.yaml")
synth = create_synthesizer(name, **params).fit(frame, spec, PrivacyBudget(eps, delta), seed=0)
synth.save(out)
"""

_MEASURE = """
import json, os, sys, time
from synth_core.generators.base import Synthesizer
bundle, rows, parquet, extra_seeds = sys.argv[1], int(sys.argv[2]), sys.argv[3], json.loads(sys.argv[4])
synth = Synthesizer.load(bundle)
synth.sample(2_000, seed=12345)  # warm-up: imports, first-call allocations
load = os.getloadavg()[0]
started = time.perf_counter()
frame = synth.sample(rows, seed=1)
seconds = time.perf_counter() - started
if parquet:
    frame.to_parquet(parquet)
    del frame
    for i, s in enumerate(extra_seeds):
        synth.sample(rows, seed=s).to_parquet(parquet.replace(".parquet", f".seed{i + 1}.parquet"))
print(json.dumps({"seconds": seconds, "load1_before": load}))
"""


def _python(code_root: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(code_root)
    return env


def _run(code_root: Path, script: str, *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", script, *args],
        env=_python(code_root),
        cwd=code_root,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"subprocess failed ({code_root}):\n{proc.stderr[-4000:]}")
    return proc.stdout


def _baseline_tree(work: Path) -> Path:
    tree = work / "baseline"
    if not (tree / "synth_core").is_dir():
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), BASELINE_COMMIT],
            check=True,
            capture_output=True,
        )
    return tree


def _fit_bundles(baseline: Path, work: Path) -> dict[str, dict[str, Any]]:
    fitted: dict[str, dict[str, Any]] = {}
    for name, params in GENERATORS.items():
        path = work / f"{name}.zip"
        started = time.perf_counter()
        if not path.exists():
            _run(baseline, _FIT, str(REPO), name, json.dumps(params), str(EPSILON), str(DELTA), str(path))
        fitted[name] = {"params": params, "bundle": str(path), "fit_seconds": time.perf_counter() - started}
    return fitted


def _violations(frame: pd.DataFrame) -> dict[str, int]:
    from synth_core.spec import TableSpec

    spec = TableSpec.from_yaml(REPO / "dags" / "specs" / "adult.yaml")
    return {rule.name: int((~rule.evaluate_reference(frame)).sum()) for rule in spec.rules}


def _column_histograms(frames: list[pd.DataFrame], column: str) -> list[np.ndarray]:
    """Cell probabilities of ``column`` in each frame on one shared partition (NULL is a cell)."""
    cells = _cells(frames, column)
    size = int(max(c.max() for c in cells)) + 1
    return [np.bincount(c, minlength=size) / len(c) for c in cells]


#: 2-way tables compared too: the rules' columns (what rejection acts on) and the label's pairs
PAIRS = [
    ("relationship", "sex"),
    ("capital_gain", "capital_loss"),
    ("education", "income"),
    ("age", "income"),
]


def _pair_histograms(frames: list[pd.DataFrame], a: str, b: str) -> list[np.ndarray]:
    """Joint cell probabilities of ``(a, b)`` on the product of their one-way partitions."""
    cells_a = _cells(frames, a)
    cells_b = _cells(frames, b)
    size_b = int(max(c.max() for c in cells_b)) + 1
    size = (int(max(c.max() for c in cells_a)) + 1) * size_b
    return [
        np.bincount(x * size_b + y, minlength=size) / len(x) for x, y in zip(cells_a, cells_b, strict=True)
    ]


def _cells(frames: list[pd.DataFrame], column: str) -> list[np.ndarray]:
    """Each frame's cell index per row for ``column`` (the partition of :func:`_column_histograms`)."""
    first = frames[0][column]
    if pd.api.types.is_numeric_dtype(first) and first.nunique() > 200:
        edges = np.unique(np.nanquantile(first.to_numpy(dtype=np.float64), np.linspace(0, 1, 51)))
        out = []
        for f in frames:
            v = f[column].to_numpy(dtype=np.float64, na_value=np.nan)
            out.append(np.where(np.isnan(v), edges.size + 1, np.searchsorted(edges, v, side="right")))
        return out
    keys = pd.Index(pd.concat([f[column].astype(object) for f in frames]).dropna().unique())
    out = []
    for f in frames:
        codes = keys.get_indexer(f[column].astype(object))
        out.append(np.where(codes < 0, len(keys), codes))
    return out


def _tvd(p: np.ndarray, q: np.ndarray) -> float:
    return 0.5 * float(np.abs(p - q).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "dpsynth-sampling")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "sampling.json")
    parser.add_argument("--fit-only", action="store_true", help="fit and save the bundles, then stop")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)

    baseline = _baseline_tree(args.work)
    fitted = _fit_bundles(baseline, args.work)
    if args.fit_only:
        return
    load_before = os.getloadavg()
    results: dict[str, Any] = {}
    for name, info in fitted.items():
        entry: dict[str, Any] = {"fit_params": info["params"], "epsilon": EPSILON}
        runs: dict[str, list[dict[str, float]]] = {"baseline": [], "current": []}
        for r in range(args.repeats):
            # alternate which sampler goes first, so a change of load hits both alike
            order = [("baseline", baseline), ("current", REPO)]
            for label, root in order if r % 2 == 0 else order[::-1]:
                parquet = str(args.work / f"{name}.{label}.parquet") if r == 0 else ""
                extra = [2, 3] if label == "baseline" else []
                runs[label].append(
                    json.loads(
                        _run(root, _MEASURE, info["bundle"], str(args.rows), parquet, json.dumps(extra))
                    )
                )
        for label in ("baseline", "current"):
            frame = pd.read_parquet(str(args.work / f"{name}.{label}.parquet"))
            seconds = [run["seconds"] for run in runs[label]]
            entry[label] = {
                "seconds_best": min(seconds),
                "seconds_median": float(np.median(seconds)),
                "seconds_all": seconds,
                "load1_before_each": [run["load1_before"] for run in runs[label]],
                "rows": len(frame),
                "rule_violations": _violations(frame),
            }
            print(name, label, json.dumps(entry[label]), flush=True)
        old = pd.read_parquet(str(args.work / f"{name}.baseline.parquet"))
        old2 = pd.read_parquet(str(args.work / f"{name}.baseline.seed1.parquet"))
        old3 = pd.read_parquet(str(args.work / f"{name}.baseline.seed2.parquet"))
        new = pd.read_parquet(str(args.work / f"{name}.current.parquet"))
        tvd: dict[str, dict[str, float]] = {}
        for column in old.columns:
            p_old, p_old2, p_old3, p_new = _column_histograms([old, old2, old3, new], column)
            tvd[column] = {
                "baseline_vs_current": _tvd(p_old, p_new),
                "baseline_vs_baseline": max(_tvd(p_old, p_old2), _tvd(p_old2, p_old3), _tvd(p_old, p_old3)),
            }
        for a, b in PAIRS:
            p_old, p_old2, p_old3, p_new = _pair_histograms([old, old2, old3, new], a, b)
            tvd[f"{a} x {b}"] = {
                "baseline_vs_current": _tvd(p_old, p_new),
                "baseline_vs_baseline": max(_tvd(p_old, p_old2), _tvd(p_old2, p_old3), _tvd(p_old, p_old3)),
            }
        entry["tvd"] = tvd
        entry["tvd_within_noise"] = all(
            t["baseline_vs_current"] <= 2.0 * t["baseline_vs_baseline"] + 1e-3 for t in tvd.values()
        )
        entry["speedup"] = entry["baseline"]["seconds_best"] / entry["current"]["seconds_best"]
        results[name] = entry
    load_after = os.getloadavg()
    record = {
        "benchmark": "sampling",
        "rows": args.rows,
        "repeats": args.repeats,
        "baseline_commit": BASELINE_COMMIT,
        "current_commit": subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip(),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "loadavg_before": load_before,
            "loadavg_after": load_after,
        },
        "tvd_rule": "within noise: baseline_vs_current <= 2 * max TVD between three baseline samples + 0.001",
        "generators": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(
        json.dumps(
            {
                k: {"baseline": v["baseline"]["seconds_best"], "current": v["current"]["seconds_best"]}
                for k, v in results.items()
            }
        )
    )


if __name__ == "__main__":
    main()
