"""Multi-worker DP-SGD (Opacus DPDDP): 2 gloo workers on CPU under torchrun, against one process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pod_helpers import TINY_TVAE, run_entrypoint, stage_adult


@pytest.mark.slow
def test_two_gloo_workers_train_dp_tvae_with_the_epsilon_of_one_process(
    tmp_path: Path, adult_frame: object
) -> None:
    import torch

    from synth_core.generators import Synthesizer
    from synth_core.pod_entrypoint import run_train

    torch.set_num_threads(1)
    # q = 1/ceil(N/250) with N the DP row count (σ ≈ 20 here): 2,125 rows sit mid-way between two
    # multiples of the batch size, so both runs' independent DP counts give the same q
    staged = stage_adult(adult_frame, tmp_path / "objects", rows=2_125)
    job = {
        "staged": staged, "epsilon": 2.0, "delta": 1e-6, "generator": "dp_tvae",
        "generator_params": TINY_TVAE, "model_uri": (tmp_path / "objects" / "ddp.zip").as_uri(),
    }  # fmt: skip
    job_file = tmp_path / "job.json"
    job_file.write_text(json.dumps(job))

    # two workers: `dpsynth-train --nproc-per-node 2` relaunches itself under torchrun (gloo on CPU)
    ddp = run_entrypoint("train", ["--job", str(job_file), "--nproc-per-node", "2"], tmp_path / "ddp.json")
    single = run_train({**job, "model_uri": (tmp_path / "objects" / "one.zip").as_uri()})
    assert single is not None

    assert ddp["training"]["world_size"] == 2 and single["training"]["world_size"] == 1
    # the same sampled Gaussian mechanism: same q, σ, steps -> the same ε
    for key in ("sample_rate", "noise_multiplier", "steps"):
        assert ddp["training"][key] == pytest.approx(single["training"][key], rel=1e-12), key
    assert ddp["epsilon"] == pytest.approx(single["epsilon"], rel=1e-12)
    assert ddp["delta"] == pytest.approx(single["delta"], rel=1e-12)
    assert ddp["epsilon"] <= 2.0 + 1e-9
    # both workers ran the same DP preprocessing and ended with the same weights
    assert ddp["workers_agree"] is True and len(ddp["worker_digests"]) == 2
    assert len(set(ddp["worker_digests"])) == 1

    # the 2-worker bundle is a working model
    synth = Synthesizer.load(ddp["model_uri"])
    sample = synth.sample(200, seed=1)
    assert list(sample.columns) == list(adult_frame.columns) and len(sample) == 200
    assert synth.privacy_ is not None and synth.privacy_["epsilon"] == pytest.approx(ddp["epsilon"])


def test_shared_secret_seeds_repeat_across_processes_and_stay_secret_outside() -> None:
    import secrets

    from synth_core.privacy import local_secret_seed, secret_seed, shared_secret_seeds

    key = secrets.token_bytes(32)
    with shared_secret_seeds(key):
        first = [secret_seed() for _ in range(4)]
        local = local_secret_seed()
    with shared_secret_seeds(key):  # another worker holding the same key
        assert [secret_seed() for _ in range(4)] == first
    assert len(set(first)) == 4 and all(0 <= s < 2**63 for s in first)
    assert local not in first
    assert secret_seed() not in first  # outside the block: OS entropy again
