"""The pipeline's typed jobs and run layout, with generated input: every URI of a run stays under
its root whatever the names, and a job round-trips through its dict (the pod's JSON job)."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

ROOT = "file:///srv/dpsynth/objects"


@settings(max_examples=300, deadline=None)
@given(
    table=st.text(min_size=1, max_size=80),
    run_id=st.text(max_size=80),
    target=st.text(min_size=1, max_size=40),
)
def test_every_uri_of_a_run_stays_under_the_root(table: str, run_id: str, target: str) -> None:
    from synth_core.pipeline.layout import RunLayout

    layout = RunLayout(ROOT, table, run_id)
    uris = [layout.staging, layout.staged("train.parquet"), layout.model, layout.synthetic, layout.shards_prefix,
            layout.report("validation.json"), layout.published(target), layout.published(target, "s"),
            layout.latest(target), layout.latest(target, "s")]  # fmt: skip
    for uri in uris:
        assert uri.startswith(ROOT + "/")
        rest = uri[len(ROOT) + 1 :].split("/")
        assert all(part not in ("", ".", "..") and "%" not in part and "?" not in part for part in rest), uri


def test_latest_is_keyed_by_the_published_target_not_the_source() -> None:
    from synth_core.pipeline.layout import RunLayout

    layout = RunLayout(ROOT, "adult", "r1")
    assert layout.latest("adult", "analytics") != layout.latest("adult", "sandbox")
    assert layout.latest("adult_synthetic").endswith("/published/adult_synthetic/_latest.json")


@settings(max_examples=200, deadline=None)
@given(
    epsilon=st.floats(min_value=1e-3, max_value=1e3),
    delta=st.floats(min_value=1e-12, max_value=0.5, exclude_max=True),
    seed=st.none() | st.integers(min_value=0, max_value=2**63 - 1),
    params=st.dictionaries(
        st.sampled_from(["epochs", "batch_size", "hidden"]), st.integers(1, 1000), max_size=3
    ),
)
def test_a_train_job_round_trips_through_its_dict(
    epsilon: float, delta: float, seed: Any, params: Any
) -> None:
    from synth_core.pipeline.jobs import TrainJob

    job = TrainJob.from_mapping(
        {"epsilon": epsilon, "delta": delta, "seed": seed, "generator_params": params, "source_table": "t",
         "train_uri": "s3://b/t.parquet", "spec_uri": "s3://b/s.yaml", "model_uri": "s3://b/m.zip"}
    )  # fmt: skip
    assert TrainJob.from_mapping(job.to_dict()) == job


@pytest.mark.parametrize(
    ("field", "value"),
    [("epsilon", math.nan), ("epsilon", math.inf), ("epsilon", -1.0), ("epsilon", True), ("delta", 1.0),
     ("delta", "x"), ("seed", 1.5), ("holdout_fraction", 0.95), ("lifetime_epsilon", math.inf),
     ("generator_params", [1, 2])],
)  # fmt: skip
def test_a_train_job_refuses_bad_values_naming_the_field(field: str, value: Any) -> None:
    from synth_core.errors import ParameterError
    from synth_core.pipeline.jobs import TrainJob

    base = {"epsilon": 1.0, "source_table": "t", "train_uri": "u", "spec_uri": "s", "model_uri": "m"}
    with pytest.raises(ParameterError, match=field):
        TrainJob.from_mapping({**base, field: value})
