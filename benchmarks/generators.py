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
import math
import os
import platform
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results" / "generators.jsonl"
README = REPO / "benchmarks" / "README.md"
SPECS = REPO / "benchmarks" / "specs"
TABLE_START, TABLE_END = "<!-- generators:start -->", "<!-- generators:end -->"

#: "full settings" per generator for the benchmark (tests use far fewer epochs); a generator not
#: listed runs with its defaults, which are its full settings
BENCH_PARAMS: dict[str, dict[str, Any]] = {
    "dp_tvae": {"epochs": 20},
    # SmartNoise's GANs default to 300 epochs (they stop early only when ε runs out), far past the
    # time limit on a CPU; these are the most epochs that fit it on Adult here
    "smartnoise-dpctgan": {"epochs": 30},
    "smartnoise-patectgan": {"epochs": 5},
}


def _adult() -> tuple[Any, Any, Any]:
    from synth_core.datasets import load_adult_frame
    from synth_core.spec import TableSpec

    data = REPO / "data" / "adult"
    spec = TableSpec.from_yaml(REPO / "dags" / "specs" / "adult.yaml")
    return load_adult_frame(data / "adult.data.gz"), load_adult_frame(data / "adult.test.gz"), spec


#: the one setting that says where the benchmark data sets live (Adult ships in ``data/adult``)
DATASETS_SETTING = "DPSYNTH_DATASETS"


class BenchmarkDatasetMissing(RuntimeError):
    """A benchmark data set's file is not where ``DPSYNTH_DATASETS`` says the data sets are."""


def _benchmark_file(folder: str, file: str) -> Path:
    """``<data sets root>/<folder>/<file>``; the root is ``$DPSYNTH_DATASETS``, by default
    ``../shared/datasets`` beside the checkout. A missing file raises :class:`BenchmarkDatasetMissing`
    naming the setting (the tests point it at the vendored samples in ``data/benchmark_samples``)."""
    setting = os.environ.get(DATASETS_SETTING)
    root = Path(setting) if setting else REPO.parent / "shared" / "datasets"
    path = root / folder / file
    if not path.is_file():
        where = (
            f"{DATASETS_SETTING}={setting}"
            if setting
            else f"{DATASETS_SETTING} is unset; its default is ../shared/datasets beside the checkout"
        )
        raise BenchmarkDatasetMissing(
            f"benchmark data set {folder!r}: {path} does not exist ({where}); set {DATASETS_SETTING} "
            f"to the folder that holds {folder}/{file}"
        )
    return path


def _split(frame: Any, spec: Any, test_share: float = 0.2, seed: int = 0) -> tuple[Any, Any, Any]:
    """A seeded train/test split (for the datasets without an official one), cast to the spec's
    pandas dtypes the way the warehouse extract casts them."""
    import numpy as np
    import sqlalchemy as sa

    from synth_core.warehouse import coerce_frame, pandas_dtype_for

    dtypes = {c.name: pandas_dtype_for(c, sa.String()) for c in spec.output_columns}
    frame = coerce_frame(frame, dtypes, spec)
    order = np.random.default_rng(seed).permutation(len(frame))
    n_test = round(test_share * len(frame))
    test, train = frame.iloc[order[:n_test]], frame.iloc[order[n_test:]]
    return train.reset_index(drop=True), test.reset_index(drop=True), spec


def _bank_marketing() -> tuple[Any, Any, Any]:
    import pandas as pd

    from synth_core.spec import TableSpec

    spec = TableSpec.from_yaml(SPECS / "bank_marketing.yaml")
    frame = pd.read_csv(_benchmark_file("bank_marketing", "bank-full.csv"), sep=";", keep_default_na=False)
    return _split(frame, spec)


def _credit_default() -> tuple[Any, Any, Any]:
    import pandas as pd

    from synth_core.spec import TableSpec

    spec = TableSpec.from_yaml(SPECS / "credit_default.yaml")
    frame = pd.read_csv(_benchmark_file("credit_default", "UCI_Credit_Card.csv"))
    frame = frame.rename(columns={"default.payment.next.month": "default_next_month"})
    frame["default_next_month"] = frame["default_next_month"].map({0: "no", 1: "yes"})
    for name in ("SEX", "EDUCATION", "MARRIAGE"):  # codes, declared categorical in the spec
        frame[name] = frame[name].astype("int64").astype("str")
    return _split(frame, spec)


def _california_housing() -> tuple[Any, Any, Any]:
    import pandas as pd

    from synth_core.spec import TableSpec

    spec = TableSpec.from_yaml(SPECS / "california_housing.yaml")
    frame = pd.read_csv(_benchmark_file("california_housing", "housing.csv"))
    return _split(frame, spec)


#: dataset name → loader of (train, test, spec)
DATASETS: dict[str, Callable[[], tuple[Any, Any, Any]]] = {
    "adult": _adult,
    "bank_marketing": _bank_marketing,
    "credit_default": _credit_default,
    "california_housing": _california_housing,
}

#: SmartNoise synthesizers run side by side (``smartnoise-<name>`` rows), in their own virtualenv
SMARTNOISE = ("aim", "mst", "dpctgan", "patectgan")
SMARTNOISE_PYTHON = REPO / "benchmarks" / ".venv-smartnoise" / "bin" / "python"
#: the reference "generator": real rows the models never saw (recorded at ε = ∞)
REAL_HOLDOUT = "real-holdout"


def _fit_and_sample_ours(
    generator: str, train: Any, spec: Any, epsilon: float, delta: float, params: dict[str, Any]
) -> tuple[Any, dict[str, Any]]:
    import synth_core.generators  # noqa: F401  (registers the generators)
    from synth_core.generators import create_synthesizer
    from synth_core.privacy import PrivacyBudget

    started = time.perf_counter()
    synth = create_synthesizer(generator, **params).fit(train, spec, PrivacyBudget(epsilon, delta))
    fit_s = time.perf_counter() - started
    started = time.perf_counter()
    synthetic = synth.sample(len(train), seed=0)
    sample_s = time.perf_counter() - started
    assert synth.privacy_ is not None
    info = {"epsilon_spent": synth.privacy_["epsilon"], "fit_s": fit_s, "sample_s": sample_s}
    if generator == "auto":
        info["picked"] = synth.training_["auto"]["generator"]
    return synthetic, {**info, "peak_rss_mb": _peak_rss_mb(), "torch_threads": _torch_threads()}


def _fit_and_sample_smartnoise(
    name: str, train: Any, spec: Any, epsilon: float, delta: float, params: dict[str, Any]
) -> tuple[Any, dict[str, Any]]:
    """SmartNoise's ``name`` through ``smartnoise_runner.py`` in its own virtualenv: the training
    rows go over as CSV, the synthetic rows come back as CSV and are cast to the spec's dtypes."""
    import tempfile

    import pandas as pd
    import sqlalchemy as sa

    from synth_core.spec import ColumnKind
    from synth_core.warehouse import coerce_frame, pandas_dtype_for

    if not SMARTNOISE_PYTHON.exists():
        raise RuntimeError(f"{SMARTNOISE_PYTHON} is missing: run `make bench-smartnoise-venv`")
    columns = []
    for c in spec.modelled_columns:
        col: dict[str, Any] = {"name": c.name, "nullable": c.nullable}
        if c.kind in (ColumnKind.INTEGER, ColumnKind.NUMERIC):
            col["kind"] = "continuous"
            if c.bounds is not None:
                col["lower"], col["upper"] = c.bounds
        else:
            col["kind"] = "categorical"
        columns.append(col)
    with tempfile.TemporaryDirectory(prefix="smartnoise-") as tmp:
        train_csv, out_csv, raw_csv = (Path(tmp) / f for f in ("train.csv", "synthetic.csv", "raw.csv"))
        train[[c["name"] for c in columns]].to_csv(train_csv, index=False)
        job = {
            "synth": name, "epsilon": epsilon, "delta": delta, "train_csv": str(train_csv),
            "out_csv": str(out_csv), "out_raw_csv": str(raw_csv), "n_rows": len(train), "params": params, "columns": columns,
        }  # fmt: skip
        runner = Path(__file__).with_name("smartnoise_runner.py")
        # the same thread limit as our runs (rows recorded before 2026-11-25 17:00 ran SmartNoise
        # with torch's default two threads, which favoured it)
        threads = os.environ.get("DPSYNTH_BENCH_THREADS") or ""
        env = {**os.environ, **({"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads} if threads else {})}
        proc = subprocess.run(
            [str(SMARTNOISE_PYTHON), str(runner), json.dumps(job)], capture_output=True, text=True, check=False,
            env=env,
        )  # fmt: skip
        lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
        if proc.returncode != 0 or not lines:
            raise RuntimeError(" | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:]))
        frames = [
            pd.read_csv(f, dtype=str, keep_default_na=False, na_values=[""])
            for f in (out_csv, raw_csv)
            if f.exists()
        ]
    dtypes = {c.name: pandas_dtype_for(c, sa.String()) for c in spec.modelled_columns}
    for raw in frames:
        for c in spec.modelled_columns:  # the GANs and the bin midpoints give floats for integers
            if c.kind == ColumnKind.INTEGER:
                raw[c.name] = pd.to_numeric(raw[c.name]).round()
    synthetic, *midpoints = (coerce_frame(raw, dtypes, spec) for raw in frames)
    info = json.loads(lines[-1])
    if midpoints:  # SmartNoise's own output for aim/mst (bin midpoints), scored on the k3 marginals
        from synth_core.metrics import k_marginal_score

        info["k3_score_midpoints"] = k_marginal_score(train, midpoints[0], spec, k=3)
    # SmartNoise's synthesizers are built to spend exactly ε (preprocessing included)
    return synthetic, {**info, "epsilon_spent": epsilon, "torch_threads": int(threads) if threads else None}


def score_release(train: Any, test: Any, synthetic: Any, spec: Any) -> dict[str, Any]:
    """Every benchmark metric of one synthetic table, against the real training and test rows."""
    from synth_core.metrics import (
        dcr_share,
        k_marginal_score,
        marginal_tvd_1way,
        marginal_tvd_2way,
        membership_inference_auc,
        mutual_information_difference,
        nndr,
        pmse_ratio,
        synthetic_ranking_agreement,
        tstr_auc,
        wasserstein_ratio,
    )

    utility = tstr_auc(synthetic, test, spec)
    sra = synthetic_ranking_agreement(synthetic, train, test, spec)
    return {
        "tvd_1way": marginal_tvd_1way(train, synthetic, spec)["mean"],
        "tvd_2way": marginal_tvd_2way(train, synthetic, spec)["mean"],
        "k3_score": k_marginal_score(train, synthetic, spec, k=3),
        "auc": utility["auc_synthetic"] if utility else None,
        "f1": utility["f1_synthetic"] if utility else None,
        "dcr_share": dcr_share(synthetic, train, test, spec)["share"],
        "nndr": nndr(synthetic, train, spec)["mean"],
        "mia_auc": membership_inference_auc(synthetic, train, test, spec)["auc"],
        "pmse_ratio": pmse_ratio(train, synthetic, spec)["ratio"],
        "sra": sra["sra"] if sra else None,
        "wasserstein_ratio": wasserstein_ratio(synthetic, train, spec, test)["ratio"],
        "mi_diff": mutual_information_difference(train, synthetic, spec)["mean"],
    }


def run_one(
    generator: str, dataset: str, epsilon: float, delta: float, params: dict[str, Any]
) -> dict[str, Any]:
    """One fit + sample + score, in this process (the parent runs it in a subprocess)."""
    threads = int(os.environ.get("DPSYNTH_BENCH_THREADS") or 0)
    if threads:
        import torch

        torch.set_num_threads(threads)
    train, test, spec = DATASETS[dataset]()
    load_before = os.getloadavg()[0]
    if generator == REAL_HOLDOUT:
        # the reference row: the real test split scored as if it were synthetic, the ceiling of
        # the fidelity columns at these sample sizes (its privacy columns mean nothing); AUC and
        # F1 are those of a model trained on the real training rows
        synthetic, info = test, {"epsilon_spent": None, "fit_s": 0.0, "sample_s": 0.0, "torch_threads": None}
    elif generator.startswith("smartnoise-"):
        synthetic, info = _fit_and_sample_smartnoise(
            generator.removeprefix("smartnoise-"), train, spec, epsilon, delta, params
        )
    else:
        synthetic, info = _fit_and_sample_ours(generator, train, spec, epsilon, delta, params)
    # fit/sample seconds are only comparable between runs on an otherwise idle machine
    load = [load_before, os.getloadavg()[0]]
    scores = score_release(train, test, synthetic, spec)
    if generator == REAL_HOLDOUT:  # utility ceiling: trained on the real training rows (TRTR)
        from synth_core.metrics import tstr_auc

        utility = tstr_auc(train, test, spec)
        scores |= {"auc": utility["auc_synthetic"] if utility else None, "sra": None,
                   "f1": utility["f1_synthetic"] if utility else None}  # fmt: skip
    return {**info, **scores, "load_avg_1m": load}


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


def _code_version() -> str | None:
    """The code a row measures: the checkout's commit, ``+dirty`` when tracked code differs from
    it (the results file and README this harness writes do not count), and ``+stale-install``
    when the installed ``synth_core`` the runs import is not the checkout's (``make install``
    builds it from the checkout, but only when run)."""
    import filecmp
    import importlib.util

    try:
        head = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            [
                "git",
                "-C",
                str(REPO),
                "status",
                "--porcelain",
                "--untracked-files=no",
                "--",
                ".",
                ":(exclude)benchmarks/results",
                ":(exclude)benchmarks/README.md",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    version = head + ("+dirty" if dirty else "")
    found = importlib.util.find_spec("synth_core")
    installed = Path(found.origin).parent if found is not None and found.origin else None
    checkout = REPO / "synth_core"
    if installed is not None and installed.resolve() != checkout.resolve():
        sources = sorted(p.relative_to(checkout) for p in checkout.rglob("*.py"))
        _, mismatch, errors = filecmp.cmpfiles(checkout, installed, [str(p) for p in sources], shallow=False)
        if mismatch or errors:
            version += "+stale-install"
    return version


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
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()}, "code": _code_version(),
    }  # fmt: skip
    args = [sys.executable, __file__, "--one", json.dumps([generator, dataset, epsilon, delta, params])]
    args += ["--threads", str(threads)]
    started = time.perf_counter()
    # its own session, so a timeout kills the whole process group (SmartNoise runs a grandchild)
    proc = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        stdout, stderr = proc.communicate(timeout=time_limit_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return {**row, "status": "timeout", "wall_s": time.perf_counter() - started}
    row["wall_s"] = time.perf_counter() - started
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (stderr or stdout).strip().splitlines()[-3:]
        return {**row, "status": "error", "error": " | ".join(tail)[-500:]}
    return {**row, "status": "ok", **json.loads(lines[-1])}


def _load(row: dict[str, Any]) -> str:
    """The 1-minute load average at the run's start → end (other work on the machine slows fits)."""
    load = row.get("load_avg_1m")
    return "—" if not load else f"{load[0]:.1f}→{load[1]:.1f}"


def _latest_rows(results: Path) -> dict[tuple[str, str, float], dict[str, Any]]:
    """The latest recorded run per (generator, dataset, ε)."""
    latest: dict[tuple[str, str, float], dict[str, Any]] = {}
    if results.exists():
        for line in results.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                latest[(row["generator"], row["dataset"], float(row["epsilon"]))] = row
    return latest


def _status(row: dict[str, Any]) -> str:
    """A row's status; a timeout says the run's limit (limits differ between runs)."""
    if row.get("status") == "timeout":
        return f"timeout ({float(row.get('time_limit_s') or 0):.0f} s limit)"
    return str(row.get("status"))


def _num(row: dict[str, Any], key: str, fmt: str) -> str:
    value = row.get(key)
    return "—" if value is None else format(value, fmt)


#: (header, row key, format) of the per-dataset tables
COLUMNS: list[tuple[str, str, str]] = [
    ("fit s", "fit_s", ".0f"), ("sample s", "sample_s", ".1f"), ("peak RSS MB", "peak_rss_mb", ".0f"),
    ("1-way TVD", "tvd_1way", ".3f"), ("2-way TVD", "tvd_2way", ".3f"), ("k3 score", "k3_score", ".0f"),
    ("AUC", "auc", ".3f"), ("F1", "f1", ".3f"), ("pMSE ratio", "pmse_ratio", ".2f"), ("SRA", "sra", ".2f"),
    ("W ratio", "wasserstein_ratio", ".2f"), ("MI diff", "mi_diff", ".3f"), ("DCR share", "dcr_share", ".3f"),
    ("NNDR", "nndr", ".3f"), ("MIA AUC", "mia_auc", ".3f"),
]  # fmt: skip


def _side_by_side(rows: list[dict[str, Any]]) -> list[str]:
    """Ours vs SmartNoise for the same method, dataset and ε within one ``run_id`` (the acceptance
    comparison is measured in the same benchmark run, so rows of different runs are not paired);
    of several such runs, the latest."""
    by_key = {(r.get("run_id"), r["generator"], r["dataset"], float(r["epsilon"])): r for r in rows}
    lines = [
        "| method | dataset | ε | run | k3 ours | k3 SmartNoise (midpoints) | AUC ours | AUC SmartNoise "
        "| fit s ours | fit s SmartNoise |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]

    def cell(row: dict[str, Any], key: str, fmt: str) -> str:
        return _status(row) if row.get("status") != "ok" else _num(row, key, fmt)

    pairs = [
        (key, ours, by_key.get((key[0], f"smartnoise-{key[1]}", key[2], key[3])))
        for key, ours in by_key.items()
        if key[0] is not None and not key[1].startswith("smartnoise-")
    ]
    # the latest run per method, dataset and ε (earlier runs measured earlier code; the results
    # file keeps them, with the code each measured)
    latest: dict[tuple[str, str, float], tuple[Any, ...]] = {}
    for key, ours, theirs in pairs:
        if theirs is None:
            continue
        slot = (key[1], key[2], key[3])
        if slot not in latest or ours["started_at"] > latest[slot][1]["started_at"]:
            latest[slot] = (key, ours, theirs)
    for (run_id, gen, dataset, eps), ours, theirs in sorted(
        latest.values(), key=lambda p: (p[0][2], p[0][1], p[0][3])
    ):
        assert theirs is not None
        k3_theirs = cell(theirs, "k3_score", ".0f")
        if theirs.get("k3_score_midpoints") is not None:
            k3_theirs += f" ({theirs['k3_score_midpoints']:.0f})"
        lines.append(
            f"| {gen} | {dataset} | {eps:g} | {run_id} | {cell(ours, 'k3_score', '.0f')} | {k3_theirs} "
            f"| {cell(ours, 'auc', '.3f')} | {cell(theirs, 'auc', '.3f')} "
            f"| {cell(ours, 'fit_s', '.0f')} | {cell(theirs, 'fit_s', '.0f')} |"
        )
    return lines


def render_table(results: Path = RESULTS, readme: Path = README) -> str:
    """Markdown tables of the latest run per (generator, dataset, ε), one per dataset, and the
    same-run SmartNoise comparison, written into the README between the markers."""
    latest = _latest_rows(results)
    lines: list[str] = []
    for dataset in sorted({key[1] for key in latest}):
        lines += [f"### {dataset}", ""]
        lines.append(
            "| generator | ε | status | "
            + " | ".join(h for h, _, _ in COLUMNS)
            + " | threads | load | run | code |"
        )
        lines.append("|---" * (len(COLUMNS) + 7) + "|")
        for key in sorted(k for k in latest if k[1] == dataset):
            r = latest[key]
            cells = " | ".join(_num(r, k, f) for _, k, f in COLUMNS)
            lines.append(
                f"| {r['generator']} | {r['epsilon']:g} | {_status(r)} | {cells} "
                f"| {r.get('torch_threads') or '—'} | {_load(r)} "
                # which invocation and commit measured the row: cells of one table may come from
                # different runs (the latest of each), and older runs measured older code
                f"| {r.get('run_id') or '—'} | {r.get('code') or '—'} |"
            )
        lines.append("")
    all_rows = (
        [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
        if results.exists()
        else []
    )
    lines += ["### Side by side with SmartNoise (same run)", "", *_side_by_side(all_rows)]
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
    parser.add_argument(
        "--generators", nargs="+", default=["all"],
        help="registry names, smartnoise-{aim,mst,dpctgan,patectgan}, 'all' (ours), 'smartnoise' (theirs), "
        "'real-holdout' (the real test split scored as if synthetic: the ceiling)",
    )  # fmt: skip
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
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (each its own process)")
    parser.add_argument(
        "--run-id", default=None, help="label shared by this invocation's rows (default: UTC time)"
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
        _run_grid(args)
    # the README shows the recorded results only; a scratch --out renders into a file beside it
    print(render_table(args.out, README if args.out == RESULTS else args.out.with_suffix(".md")))


def _run_grid(args: argparse.Namespace) -> None:
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from synth_core.generators import available_generators

    names: list[str] = []
    for name in args.generators:
        if name == "all":
            names += available_generators()
        elif name == "smartnoise":
            names += [f"smartnoise-{n}" for n in SMARTNOISE]
        else:
            names.append(name)
    overrides = json.loads(args.params)
    run_id = args.run_id or dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    lock = threading.Lock()
    grid = [
        (d, e, n)
        for d in args.datasets
        for e in args.epsilons
        for n in names
        if n != REAL_HOLDOUT  # the reference row has no ε: recorded once per dataset, at ε = ∞
    ] + [(d, math.inf, REAL_HOLDOUT) for d in args.datasets if REAL_HOLDOUT in names]

    def one(cell: tuple[str, float, str]) -> None:
        dataset, eps, name = cell
        params = {**BENCH_PARAMS.get(name, {}), **overrides.get(name, {})}
        row = run_isolated(name, dataset, eps, args.delta, params, args.time_limit, threads=args.threads)
        row["run_id"] = run_id
        with lock:
            with args.out.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
            keys = ("generator", "dataset", "epsilon", "status", "fit_s", "auc", "k3_score", "error")
            print(json.dumps({k: row.get(k) for k in keys}), flush=True)

    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        list(pool.map(one, grid))


if __name__ == "__main__":
    main()
