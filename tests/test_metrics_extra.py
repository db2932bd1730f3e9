"""pMSE ratio, Synthetic Ranking Agreement, Wasserstein ratio and pairwise-MI difference on real Adult rows."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from synth_core.metrics import (
    mutual_information_difference,
    pmse_ratio,
    synthetic_ranking_agreement,
    wasserstein_ratio,
)
from synth_core.spec import TableSpec


def shuffle_columns(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Every column permuted on its own: perfect 1-way marginals, no dependence between columns."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame({c: frame[c].to_numpy()[rng.permutation(len(frame))] for c in frame.columns}).astype(
        frame.dtypes.to_dict()
    )


@pytest.fixture(scope="module")
def parts(adult_frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    order = np.random.default_rng(3).permutation(len(adult_frame))
    train = adult_frame.iloc[order[:3000]].reset_index(drop=True)
    holdout = adult_frame.iloc[order[3000:5000]].reset_index(drop=True)
    return {"train": train, "holdout": holdout, "shuffled": shuffle_columns(train, seed=1)}


def test_pmse_ratio_copy_is_indistinguishable_and_shuffled_is_not(parts, adult_spec: TableSpec) -> None:  # type: ignore[no-untyped-def]
    train, holdout, shuffled = parts["train"], parts["holdout"], parts["shuffled"]
    copy = pmse_ratio(train, train.copy(), adult_spec, n_permutations=2)
    fresh = pmse_ratio(train, holdout, adult_spec, n_permutations=2)
    broken = pmse_ratio(train, shuffled, adult_spec, n_permutations=2)
    assert copy["ratio"] < 0.05  # a copy: the classifier finds nothing
    assert 0.3 < fresh["ratio"] < 3.0  # two samples of one distribution: about the null expectation
    assert broken["ratio"] > 3 * fresh["ratio"] and broken["model"] == "tree"
    assert 0.0 <= broken["pmse"] <= 0.25
    assert pmse_ratio(train, shuffled, adult_spec, n_permutations=2) == broken  # deterministic
    json.dumps(broken, allow_nan=False)
    # main-effects logistic: sees marginal differences only
    shifted = train.copy()
    shifted["age"] = (shifted["age"] + 8).clip(upper=90)
    assert pmse_ratio(train, train.copy(), adult_spec, model="logistic")["ratio"] < 0.05
    assert 0.3 < pmse_ratio(train, holdout, adult_spec, model="logistic")["ratio"] < 3.0
    assert pmse_ratio(train, shifted, adult_spec, model="logistic")["ratio"] > 10


def test_sra_is_one_for_real_data_and_lower_for_independent_columns(parts, adult_spec: TableSpec) -> None:  # type: ignore[no-untyped-def]
    train, holdout, shuffled = parts["train"], parts["holdout"], parts["shuffled"]
    same = synthetic_ranking_agreement(train, train, holdout, adult_spec)
    assert same is not None and same["sra"] == 1.0 and same["pairs"] == 10
    broken = synthetic_ranking_agreement(shuffled, train, holdout, adult_spec)
    assert broken is not None and broken["sra"] < same["sra"]
    # trained on independent columns, no model beats chance by much on real rows
    assert max(broken["scores_synthetic"].values()) < 0.65 < min(same["scores_real"].values())
    assert synthetic_ranking_agreement(shuffled, train, holdout, adult_spec) == broken
    json.dumps(broken, allow_nan=False)
    no_target = TableSpec(adult_spec.name, adult_spec.columns, target=None)
    assert synthetic_ranking_agreement(train, train, holdout, no_target) is None


def test_wasserstein_is_zero_for_a_copy_and_grows_with_distortion(parts, adult_spec: TableSpec) -> None:  # type: ignore[no-untyped-def]
    train, holdout = parts["train"], parts["holdout"]
    copy = wasserstein_ratio(train.copy(), train, adult_spec, real_holdout=holdout)
    assert copy["mean"] == 0.0 and copy["ratio"] == 0.0
    assert set(copy["columns"]) == {
        "age",
        "fnlwgt",
        "education_num",
        "capital_gain",
        "capital_loss",
        "hours_per_week",
    }
    fresh = wasserstein_ratio(holdout, train, adult_spec, real_holdout=holdout)
    assert fresh["ratio"] == pytest.approx(1.0)
    # independent uniform values over each column's range: the marginals are gone
    rng = np.random.default_rng(0)
    uniform = train.copy()
    for name in copy["columns"]:
        lo, hi = int(train[name].min()), int(train[name].max())
        uniform[name] = rng.integers(lo, hi + 1, size=len(train))
    broken = wasserstein_ratio(uniform, train, adult_spec, real_holdout=holdout)
    assert broken["mean"] > 0.3 and broken["ratio"] > 10
    assert wasserstein_ratio(uniform, train, adult_spec, real_holdout=holdout) == broken
    assert wasserstein_ratio(uniform, train, adult_spec)["ratio"] is None


def test_mutual_information_difference(parts, adult_spec: TableSpec) -> None:  # type: ignore[no-untyped-def]
    train, holdout, shuffled = parts["train"], parts["holdout"], parts["shuffled"]
    assert mutual_information_difference(train, train.copy(), adult_spec)["mean"] == pytest.approx(
        0.0, abs=1e-12
    )
    fresh = mutual_information_difference(train, holdout, adult_spec)
    broken = mutual_information_difference(train, shuffled, adult_spec)
    assert broken["n_pairs"] == 105
    assert fresh["mean"] < 0.02 and broken["mean"] > 3 * fresh["mean"]
    assert 0.0 <= broken["mean"] <= broken["max"] <= 1.0
    few = mutual_information_difference(train, shuffled, adult_spec, max_pairs=10, seed=4)
    assert few["n_pairs"] == 10 and few == mutual_information_difference(
        train, shuffled, adult_spec, max_pairs=10, seed=4
    )
