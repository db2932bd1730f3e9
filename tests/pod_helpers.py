"""Helpers of the pod, multi-worker and shard tests: a staged Parquet of real Adult rows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from conftest import ADULT_SPEC_PATH, REPO

#: a DP-TVAE small and quick enough for a 2-core machine
TINY_TVAE: dict[str, Any] = {
    "epochs": 2, "batch_size": 250, "hidden": [32], "latent_dim": 8, "device": "cpu",
}  # fmt: skip


def stage_adult(adult_frame: Any, root: Path, rows: int = 2_000) -> dict[str, Any]:
    """Write ``rows`` Adult rows and the spec as a staged split under ``root`` (a file:// store),
    the way the extract task leaves them; returns the staged manifest."""
    from synth_core.object_store import ObjectStore, join_uri

    store = ObjectStore()
    staging = join_uri(root.as_uri(), "staging", "adult", "r1")
    train = adult_frame.iloc[:rows].reset_index(drop=True)
    train_uri = store.write_parquet(join_uri(staging, "train.parquet"), train)
    spec_uri = store.put_bytes(join_uri(staging, "spec.yaml"), ADULT_SPEC_PATH.read_bytes())
    return {
        "source_table": "adult",
        "staging_uri": staging,
        "spec_uri": spec_uri,
        "train_uri": train_uri,
        "holdout_uri": join_uri(staging, "holdout.parquet"),
        "rows_train": rows,
        "holdout_fraction": 0.2,
    }


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment of a child process: one thread per process, no GPU, the repo importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RANK", "WORLD_SIZE", "LOCAL_RANK"))}
    env.update(
        OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="",
        PYTHONPATH=os.pathsep.join([str(REPO / "tests"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        **extra,
    )  # fmt: skip
    return env


def run_entrypoint(command: str, args: list[str], xcom: Path, timeout: float = 600) -> dict[str, Any]:
    """``python -m synth_core.pod_entrypoint <command> ...`` in a subprocess; its return.json."""
    proc = subprocess.run(
        [sys.executable, "-m", "synth_core.pod_entrypoint", command, *args, "--xcom-path", str(xcom)],
        capture_output=True, text=True, timeout=timeout, env=subprocess_env(),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    return dict(json.loads(xcom.read_text()))
