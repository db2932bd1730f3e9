"""Generators × datasets × ε: fit, sample and score every DP generator (an SDGym-style runner).

Each run happens in its own subprocess under a time limit, so a slow or crashing generator
cannot take the others down. It fits on the dataset's train split under (ε, δ), samples as many
rows as the train split has, and scores the synthetic table against the real rows:

* fidelity: mean 1-way and 2-way marginal TVD, the 3-way k-marginal score (1000·(1 − mean TVD));
* utility: train-synthetic-test-real ROC AUC and F1 of the target on the real test split;
* privacy: DCR share (train vs the test split as holdout) and NNDR;
* cost: fit and sample seconds, peak RSS of the run's process.

One JSON object per run is appended to ``benchmarks/results/generators.jsonl`` (keys:
``generator``, ``dataset``, ``epsilon``, ``delta``, ``status`` (ok/timeout/error), ``fit_s``,
``sample_s``, ``peak_rss_mb``, ``tvd_1way``, ``tvd_2way``, ``k3_score``, ``auc``, ``f1``,
``dcr_share``, ``nndr`` and context), and the Markdown table in ``benchmarks/README.md`` is
re-rendered from that file (the latest run of each generator/dataset/ε).

    .venv/bin/python benchmarks/generators.py --generators dp_tvae --epsilons 1 3 10
    .venv/bin/python benchmarks/generators.py --render-only
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results" / "generators.jsonl"
README = REPO / "benchmarks" / "README.md"
TABLE_START, TABLE_END = "<!-- generators:start -->", "<!-- generators:end -->"

#: "full settings" per generator for the benchmark (tests use far fewer epochs); a generator not
#: listed runs with its defaults, which are its full settings
BENCH_PARAMS: dict[str, dict[str, Any]] = {
    "dp_tvae": {"epochs": 20},
}


def _adult() -> tuple[Any, Any, Any]:
    from synth_core.datasets import load_adult_frame
    from synth_core.spec import TableSpec

    data = REPO / "data" / "adult"
    spec = TableSpec.from_yaml(REPO / "dags" / "specs" / "adult.yaml")
    return load_adult_frame(data / "adult.data.gz"), load_adult_frame(data / "adult.test.gz"), spec


#: dataset name → loader of (train, test, spec)
DATASETS: dict[str, Callable[[], tuple[Any, Any, Any]]] = {"adult": _adult}


def run_one(
    generator: str, dataset: str, epsilon: float, delta: float, params: dict[str, Any]
) -> dict[str, Any]:
    """One fit + sample + score, in this process (the parent runs it in a subprocess)."""
    import synth_core.generators  # noqa: F401  (registers the generators)
    from synth_core.generators import create_synthesizer
    from synth_core.metrics import (
        dcr_share,
        k_marginal_score,
        marginal_tvd_1way,
        marginal_tvd_2way,
        nndr,
        tstr_auc,
    )
    from synth_core.privacy import PrivacyBudget

    threads = int(os.environ.get("DPSYNTH_BENCH_THREADS") or 0)
    if threads:
        import torch

        torch.set_num_threads(threads)
    train, test, spec = DATASETS[dataset]()
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    synth = create_synthesizer(generator, **params).fit(train, spec, PrivacyBudget(epsilon, delta))
    fit_s = time.perf_counter() - started
    started = time.perf_counter()
    synthetic = synth.sample(len(train), seed=0)
    sample_s = time.perf_counter() - started
    utility = tstr_auc(synthetic, test, spec)
    assert synth.privacy_ is not None
    return {
        "epsilon_spent": synth.privacy_["epsilon"],
        "fit_s": fit_s,
        "sample_s": sample_s,
        "tvd_1way": marginal_tvd_1way(train, synthetic, spec)["mean"],
        "tvd_2way": marginal_tvd_2way(train, synthetic, spec)["mean"],
        "k3_score": k_marginal_score(train, synthetic, spec, k=3),
        "auc": utility["auc_synthetic"] if utility else None,
        "f1": utility["f1_synthetic"] if utility else None,
        "dcr_share": dcr_share(synthetic, train, test, spec)["share"],
        "nndr": nndr(synthetic, train, spec)["mean"],
        "peak_rss_mb": _peak_rss_mb(),
        # fit/sample seconds are only comparable between runs on an otherwise idle machine
        "torch_threads": _torch_threads(),
        "load_avg_1m": [load_before, os.getloadavg()[0]],
    }


def _peak_rss_mb() -> float:
    """This process image's peak RSS (VmHWM): ``ru_maxrss`` would survive fork + exec and report the
    parent's size when that is larger."""
    try:
        with open("/proc/self/status") as fh:
            return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _torch_threads() -> int:
    import torch

    return int(torch.get_num_threads())


def run_isolated(
    generator: str,
    dataset: str,
    epsilon: float,
    delta: float,
    params: dict[str, Any],
    time_limit_s: float,
    *,
    threads: int = 0,
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "generator": generator, "dataset": dataset, "epsilon": epsilon, "delta": delta, "params": params,
        "time_limit_s": time_limit_s, "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
    }  # fmt: skip
    args = [sys.executable, __file__, "--one", json.dumps([generator, dataset, epsilon, delta, params])]
    args += ["--threads", str(threads)]
    started = time.perf_counter()
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=time_limit_s, check=False)
    except subprocess.TimeoutExpired:
        return {**row, "status": "timeout", "wall_s": time.perf_counter() - started}
    row["wall_s"] = time.perf_counter() - started
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {**row, "status": "error", "error": " | ".join(tail)[-500:]}
    return {**row, "status": "ok", **json.loads(lines[-1])}


def _load(row: dict[str, Any]) -> str:
    """The 1-minute load average at the run's start → end (other work on the machine slows fits)."""
    load = row.get("load_avg_1m")
    return "—" if not load else f"{load[0]:.1f}→{load[1]:.1f}"


def render_table(results: Path = RESULTS, readme: Path = README) -> str:
    """The Markdown table of the latest run per (generator, dataset, ε), written into the README."""
    latest: dict[tuple[str, str, float], dict[str, Any]] = {}
    if results.exists():
        for line in results.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                latest[(row["generator"], row["dataset"], float(row["epsilon"]))] = row

    def num(row: dict[str, Any], key: str, fmt: str) -> str:
        value = row.get(key)
        return "—" if value is None else format(value, fmt)

    lines = [
        "| generator | dataset | ε | status | fit s | sample s | peak RSS MB | 1-way TVD | 2-way TVD | k3 score "
        "| AUC | F1 | DCR share | NNDR | threads | load |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key in sorted(latest):
        r = latest[key]
        lines.append(
            f"| {r['generator']} | {r['dataset']} | {r['epsilon']:g} | {r['status']} | {num(r, 'fit_s', '.0f')} "
            f"| {num(r, 'sample_s', '.1f')} | {num(r, 'peak_rss_mb', '.0f')} | {num(r, 'tvd_1way', '.3f')} "
            f"| {num(r, 'tvd_2way', '.3f')} | {num(r, 'k3_score', '.0f')} | {num(r, 'auc', '.3f')} "
            f"| {num(r, 'f1', '.3f')} | {num(r, 'dcr_share', '.3f')} | {num(r, 'nndr', '.3f')} "
            f"| {r.get('torch_threads') or '—'} | {_load(r)} |"
        )
    table = "\n".join(lines)
    text = readme.read_text() if readme.exists() else ""
    block = f"{TABLE_START}\n{table}\n{TABLE_END}"
    if TABLE_START in text and TABLE_END in text:
        text = text[: text.index(TABLE_START)] + block + text[text.index(TABLE_END) + len(TABLE_END) :]
    else:
        text = text.rstrip() + "\n\n## Generators (`generators.py`)\n\n" + block + "\n"
    readme.write_text(text)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--generators", nargs="+", default=["all"], help="registry names, or 'all'")
    parser.add_argument("--datasets", nargs="+", default=["adult"], choices=sorted(DATASETS))
    parser.add_argument("--epsilons", nargs="+", type=float, default=[1.0, 3.0, 10.0])
    parser.add_argument("--delta", type=float, default=1e-5)
    parser.add_argument("--time-limit", type=float, default=1800.0, help="seconds per run")
    parser.add_argument("--params", default="{}", help="JSON {generator: params} overriding BENCH_PARAMS")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--render-only", action="store_true")
    parser.add_argument(
        "--threads", type=int, default=0, help="torch intra-op threads per run (0: torch's default)"
    )
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        generator, dataset, epsilon, delta, params = json.loads(args.one)
        if args.threads:
            os.environ["DPSYNTH_BENCH_THREADS"] = str(args.threads)
        print(json.dumps(run_one(generator, dataset, float(epsilon), float(delta), params)))
        return
    if not args.render_only:
        from synth_core.generators import available_generators

        names = available_generators() if args.generators == ["all"] else args.generators
        overrides = json.loads(args.params)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        for dataset in args.datasets:
            for name in names:
                for eps in args.epsilons:
                    params = {**BENCH_PARAMS.get(name, {}), **overrides.get(name, {})}
                    row = run_isolated(
                        name, dataset, eps, args.delta, params, args.time_limit, threads=args.threads
                    )
                    with args.out.open("a") as fh:
                        fh.write(json.dumps(row) + "\n")
                    print(
                        json.dumps(
                            {
                                k: row.get(k)
                                for k in (
                                    "generator",
                                    "dataset",
                                    "epsilon",
                                    "status",
                                    "fit_s",
                                    "auc",
                                    "k3_score",
                                )
                            }
                        ),
                        flush=True,
                    )
    print(render_table(args.out))


if __name__ == "__main__":
    main()
