"""The validate step on UCI Adult: baseline code vs this tree, in the same run.

One MST fit (ε = 3, δ = 1e-6) on an 80/20 split of ``data/adult/adult.data.gz`` (26,048 training
rows) and 32,561 synthetic rows are made once with this tree. Then each code version validates them
the way the validate task does, each repeat in a fresh Python process (an Airflow task is one), the
versions alternating so machine load hits both alike:

* ``metrics_s``: :func:`synth_core.metrics.evaluate_release` (fidelity, TSTR, DCR/NNDR/MIA);
* ``gate_s``: :func:`synth_expectations.validate_frame` with the release metrics, privacy
  thresholds, DP domains/ranges/NULL rates and Data Docs, the first call in the process (so
  Great Expectations' import counts, as in a task); ``gate_warm_s``: the same call again;
* ``report_s`` / ``internal_report_s``: the shareable and the internal release report;
* ``step_s``: their sum (the validate task without object-store I/O);
* ``gx_info_lines``: log records below WARNING from Great Expectations' loggers during the gate,
  with the root logger at INFO (as in an Airflow task).

The baseline is ``git archive <rev> synth_core expectations`` unpacked in a temporary folder and
put first on ``sys.path`` of its worker processes (as ``synth_core`` and ``synth_expectations``).

    .venv/bin/python benchmarks/validation.py [--baseline e3f2fa4] [--repeats 3]

Writes ``benchmarks/results/validation.json``: the medians per version and phase, every repeat,
the machine's load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
#: The commit the validation work of issue 20 started from.
DEFAULT_BASELINE = "e3f2fa4"
PHASES = ("metrics_s", "gate_s", "gate_warm_s", "report_s", "internal_report_s", "step_s")


def prepare(work: Path) -> dict[str, Any]:
    """Fit MST on the Adult split, sample, and write what every worker reads into ``work``."""
    import numpy as np

    from synth_core.datasets import load_adult_frame
    from synth_core.generators import create_synthesizer
    from synth_core.privacy import PrivacyBudget
    from synth_core.spec import TableSpec

    frame = load_adult_frame(REPO / "data" / "adult" / "adult.data.gz")
    spec = TableSpec.from_yaml(REPO / "dags" / "specs" / "adult.yaml")
    order = np.random.default_rng(0).permutation(len(frame))
    cut = int(len(frame) * 0.8)
    train = frame.iloc[order[:cut]].reset_index(drop=True)
    holdout = frame.iloc[order[cut:]].reset_index(drop=True)
    started = time.perf_counter()
    synth = create_synthesizer("mst").fit(train, spec, PrivacyBudget(3.0, 1e-6), seed=0)
    fit_s = time.perf_counter() - started
    synthetic = synth.sample(len(frame), seed=1)
    transformer = synth.transformer_
    assert transformer is not None
    train.to_parquet(work / "train.parquet")
    holdout.to_parquet(work / "holdout.parquet")
    synthetic.to_parquet(work / "synthetic.parquet")
    inputs = {
        "spec_path": str(REPO / "dags" / "specs" / "adult.yaml"),
        "dtypes": {c: str(t) for c, t in train.dtypes.items()},
        "domains": transformer.dp_domains(),
        "ranges": {k: [_plain(v) for v in pair] for k, pair in transformer.dp_ranges().items()},
        "null_rates": transformer.dp_null_rates(),
        "transformer_state": transformer.to_dict(),
        "privacy": synth.privacy_,
    }
    (work / "inputs.json").write_text(json.dumps(inputs, default=str))
    return {
        "generator": "mst",
        "fit_s": round(fit_s, 2),
        "rows_train": len(train),
        "rows_holdout": len(holdout),
        "rows_synthetic": len(synthetic),
        "epsilon": (synth.privacy_ or {}).get("epsilon"),
    }


def _plain(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value


def worker(work: Path) -> dict[str, Any]:
    """One validate step in this (fresh) process; the code under test is first on sys.path."""
    import logging
    import tempfile

    import pandas as pd

    from synth_core.metrics import evaluate_release
    from synth_core.report import InternalEvidence, render_release_report
    from synth_core.spec import TableSpec
    from synth_expectations import PrivacyThresholds, gate_metrics, validate_frame

    class Count(logging.Handler):
        def __init__(self) -> None:
            super().__init__(logging.DEBUG)
            self.gx_info = 0

        def emit(self, record: logging.LogRecord) -> None:
            if record.name.startswith("great_expectations") and record.levelno < logging.WARNING:
                self.gx_info += 1

    counter = Count()
    logging.getLogger().addHandler(counter)
    logging.getLogger().setLevel(logging.INFO)
    inputs = json.loads((work / "inputs.json").read_text())
    spec = TableSpec.from_yaml(inputs["spec_path"])
    train = pd.read_parquet(work / "train.parquet")
    holdout = pd.read_parquet(work / "holdout.parquet")
    synthetic = pd.read_parquet(work / "synthetic.parquet")
    out: dict[str, Any] = {}

    started = time.perf_counter()
    metrics = evaluate_release(train, holdout, synthetic, spec)
    out["metrics_s"] = time.perf_counter() - started
    release_metrics = gate_metrics(metrics, epsilon=float(inputs["privacy"]["epsilon"]), target_epsilon=3.0)

    def gate() -> Any:
        with tempfile.TemporaryDirectory() as docs:
            return validate_frame(
                synthetic,
                spec,
                inputs["dtypes"],
                domains=inputs["domains"],
                ranges={k: tuple(v) for k, v in inputs["ranges"].items()},
                row_count=len(synthetic),
                null_rates=inputs["null_rates"],
                release_metrics=release_metrics,
                privacy_thresholds=PrivacyThresholds(),
                data_docs_dir=docs,
            )

    started = time.perf_counter()
    outcome = gate()
    out["gate_s"] = time.perf_counter() - started
    out["gx_info_lines"] = counter.gx_info
    started = time.perf_counter()
    gate()
    out["gate_warm_s"] = time.perf_counter() - started
    out["expectations"] = len(outcome.results)
    out["expectations_passed"] = sum(r.success for r in outcome.results)

    report_args: dict[str, Any] = {
        "spec": spec,
        "synthetic": synthetic,
        "transformer_state": inputs["transformer_state"],
        "privacy": inputs["privacy"],
        "release": {"table": spec.name, "generator": "mst", "rows": len(synthetic)},
        "validation": outcome.to_dict(),
        "budget": None,
        "diagnostics": None,
    }
    started = time.perf_counter()
    render_release_report(**report_args)
    out["report_s"] = time.perf_counter() - started
    started = time.perf_counter()
    render_release_report(**report_args, metrics=metrics, internal=InternalEvidence(train, holdout))
    out["internal_report_s"] = time.perf_counter() - started
    out["step_s"] = out["metrics_s"] + out["gate_s"] + out["report_s"] + out["internal_report_s"]
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in out.items()}


def code_root(tree: Path, into: Path) -> Path:
    """A folder holding ``synth_core`` and ``synth_expectations`` of ``tree`` (links)."""
    into.mkdir(parents=True, exist_ok=True)
    (into / "synth_core").symlink_to(tree / "synth_core")
    (into / "synth_expectations").symlink_to(tree / "expectations")
    return into


def baseline_tree(rev: str, into: Path) -> Path:
    """``synth_core`` and ``expectations`` of commit ``rev``, unpacked into ``into``."""
    into.mkdir(parents=True, exist_ok=True)
    archive = into / "code.tar"
    subprocess.run(
        [
            "git",
            "-C",
            str(REPO),
            "archive",
            "--format=tar",
            "-o",
            str(archive),
            rev,
            "synth_core",
            "expectations",
        ],
        check=True,
    )
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    archive.unlink()
    return into


def run_worker(path_root: Path, work: Path) -> dict[str, Any]:
    code = (
        "import sys, json; "
        f"sys.path.insert(0, {str(path_root)!r}); sys.path.insert(1, {str(Path(__file__).parent)!r}); "
        "import synth_core, synth_expectations; "
        f"assert synth_core.__file__.startswith({str(path_root)!r}), synth_core.__file__; "
        "import validation; from pathlib import Path; "
        f"print(json.dumps(validation.worker(Path({str(work)!r}))))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=tempfile.gettempdir(),
        check=False,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    if proc.returncode != 0:
        raise RuntimeError(f"worker under {path_root} failed:\n{proc.stderr[-3000:]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--baseline", default=DEFAULT_BASELINE, help="git revision of the baseline code")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "validation.json"))
    args = parser.parse_args()
    baseline_rev = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", args.baseline], capture_output=True, text=True, check=True
    ).stdout.strip()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="dpsynth-validation-bench-") as tmp:
        work = Path(tmp) / "data"
        work.mkdir()
        setup = prepare(work)
        print("prepared:", setup, flush=True)
        roots = {
            "baseline": code_root(
                baseline_tree(baseline_rev, Path(tmp) / "baseline"), Path(tmp) / "path-baseline"
            ),
            "new": code_root(REPO, Path(tmp) / "path-new"),
        }
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in roots}
        for repeat in range(args.repeats):
            for name, root in roots.items():
                result = run_worker(root, work)
                runs[name].append(result)
                print(f"repeat {repeat} {name}: {result}", flush=True)
    medians = {
        name: {
            phase: round(statistics.median(r[phase] for r in results), 2)
            for phase in (*PHASES, "gx_info_lines")
        }
        for name, results in runs.items()
    }
    record = {
        "benchmark": "validate step on UCI Adult (MST ε=3 model, 32,561 synthetic rows)",
        "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        },
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "baseline_rev": baseline_rev,
        "setup": setup,
        "repeats": args.repeats,
        "median": medians,
        "runs": runs,
    }
    Path(args.out).write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(medians, indent=1))


if __name__ == "__main__":
    main()
