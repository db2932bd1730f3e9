"""Release metrics on real Adult rows: each metric must separate a faithful table from a broken one."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import ADULT_PATH

from synth_core.datasets import ADULT_COLUMNS, ADULT_INTEGER_COLUMNS, load_adult_frame
from synth_core.metrics import (
    association_matrix,
    dcr_share,
    discretize_for_marginals,
    evaluate_release,
    marginal_tvd_1way,
    marginal_tvd_2way,
    nndr,
    tstr_auc,
)
from synth_core.spec import ColumnKind, ColumnSpec, TableSpec

INTEGERS = set(ADULT_INTEGER_COLUMNS)


def load_adult() -> pd.DataFrame:
    return load_adult_frame(ADULT_PATH)


def adult_spec(target: str | None = "income") -> TableSpec:
    cols = tuple(
        ColumnSpec(
            n, ColumnKind.INTEGER if n in INTEGERS else ColumnKind.CATEGORICAL, nullable=n not in INTEGERS
        )
        for n in ADULT_COLUMNS
    )
    return TableSpec("adult", cols, target=target)


def shuffle_columns(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Each column permuted independently: exact 1-way marginals, no dependence left."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {c: frame[c].to_numpy()[rng.permutation(len(frame))] for c in frame.columns}, index=frame.index
    ).astype(frame.dtypes.to_dict())


@pytest.fixture(scope="module")
def adult() -> pd.DataFrame:
    return load_adult()


@pytest.fixture(scope="module")
def parts(adult: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Disjoint random parts of Adult: train (16k), holdout (8k), fresh (8k rows never used as train)."""
    order = np.random.default_rng(11).permutation(len(adult))
    take = lambda a, b: adult.iloc[order[a:b]].reset_index(drop=True)  # noqa: E731
    return {"train": take(0, 16_000), "holdout": take(16_000, 24_000), "fresh": take(24_000, 32_000)}


# -- marginals ------------------------------------------------------------------------------------


def test_tvd_is_zero_for_identical_frames_and_2way_detects_lost_dependence(
    parts: dict[str, pd.DataFrame],
) -> None:
    spec = adult_spec()
    train, holdout = parts["train"], parts["holdout"]
    one = marginal_tvd_1way(train, train, spec)
    two = marginal_tvd_2way(train, train, spec)
    assert one["mean"] == 0.0 and two["mean"] == 0.0
    assert set(one["columns"]) == set(ADULT_COLUMNS)
    assert two["n_pairs"] == len(ADULT_COLUMNS) * (len(ADULT_COLUMNS) - 1) // 2

    shuffled = shuffle_columns(train, seed=1)
    assert marginal_tvd_1way(train, shuffled, spec)["mean"] == pytest.approx(0.0, abs=1e-12)
    broken = marginal_tvd_2way(train, shuffled, spec)
    honest = marginal_tvd_2way(train, holdout, spec)
    # another sample of the same population keeps pairs; shuffling destroys them
    assert honest["mean"] < 0.05
    assert broken["mean"] > 2 * honest["mean"]
    worst = max(broken["pairs"], key=lambda p: p["tvd"])
    assert set(worst["columns"]) == {"education", "education_num"}  # a 1:1 pair in Adult

    sub = marginal_tvd_2way(train, shuffled, spec, max_pairs=10, seed=3)
    assert sub["n_pairs"] == 10
    assert sub == marginal_tvd_2way(train, shuffled, spec, max_pairs=10, seed=3)


def test_discretization_keeps_point_masses_nulls_and_shared_codes(parts: dict[str, pd.DataFrame]) -> None:
    spec = adult_spec()
    train, holdout = parts["train"], parts["holdout"]
    d_train, d_hold = discretize_for_marginals([train, holdout], spec, bins=20)
    assert list(d_train.columns) == ADULT_COLUMNS and len(d_hold) == len(holdout)

    gain, codes = train["capital_gain"].to_numpy(), d_train["capital_gain"].to_numpy()
    zero_codes = set(codes[gain == 0])
    assert len(zero_codes) == 1  # capital_gain == 0 (≈92% of rows) is one cell ...
    assert zero_codes.isdisjoint(codes[gain > 0])  # ... that holds nothing else
    assert len(np.unique(codes)) >= 5  # and the long tail still gets several cells
    for name in ("age", "fnlwgt", "hours_per_week"):
        assert d_train[name].nunique() <= 22

    for frame, disc in ((train, d_train), (holdout, d_hold)):
        null = frame["workclass"].isna().to_numpy()
        assert null.any() and len(set(disc["workclass"].to_numpy()[null])) == 1
        assert set(disc["workclass"].to_numpy()[null]).isdisjoint(disc["workclass"].to_numpy()[~null])
    # the same value has the same code in both frames
    both = pd.concat(
        [pd.DataFrame({"v": train["education"], "c": d_train["education"]}),
         pd.DataFrame({"v": holdout["education"], "c": d_hold["education"]})]
    )  # fmt: skip
    assert (both.groupby("v")["c"].nunique() == 1).all()


def test_marginals_ignore_id_columns_and_nullable_dtype_differences(parts: dict[str, pd.DataFrame]) -> None:
    train = parts["train"].copy()
    train.insert(0, "person_id", np.arange(len(train), dtype=np.int64))
    cols = (ColumnSpec("person_id", ColumnKind.ID, nullable=False), *adult_spec().columns)
    spec = TableSpec("adult", cols, target="income")
    other = train.copy()
    other["person_id"] = other["person_id"] + 10**6  # fresh surrogate keys: no effect
    other["age"] = other["age"].astype("Int64")  # nullable integer dtype: same values
    other.loc[other.index[:100], "capital_loss"] = 0
    res = marginal_tvd_1way(train, other, spec)
    assert "person_id" not in res["columns"]
    assert res["columns"]["age"] == 0.0
    assert 0 < res["columns"]["capital_loss"] <= 100 / len(train) + 1e-12


# -- utility --------------------------------------------------------------------------------------


def test_tstr_auc_real_as_synthetic_is_high_and_shuffled_is_chance(parts: dict[str, pd.DataFrame]) -> None:
    spec = adult_spec()
    train, holdout = parts["train"], parts["holdout"]
    real = tstr_auc(train, holdout, spec, real_train=train)
    assert real is not None
    assert real["auc_synthetic"] >= 0.85
    assert real["auc_real"] == pytest.approx(real["auc_synthetic"])
    broken = tstr_auc(shuffle_columns(train, seed=2), holdout, spec)
    assert broken is not None and broken["auc_real"] is None
    assert abs(broken["auc_synthetic"] - 0.5) < 0.1 and broken["auc_synthetic"] < 0.6


def test_tstr_auc_multiclass_one_class_and_no_target(parts: dict[str, pd.DataFrame]) -> None:
    train, holdout = parts["train"].iloc[:8000], parts["holdout"]
    spec = adult_spec(target="relationship")  # 6 classes: macro one-vs-rest
    multi = tstr_auc(train, holdout, spec)
    assert multi is not None and multi["auc_synthetic"] >= 0.8

    one_class = train[train["income"] == "<=50K"]
    res = tstr_auc(one_class, holdout, adult_spec())
    assert res is not None and res["auc_synthetic"] == 0.5  # documented: chance, not a crash

    assert tstr_auc(train, holdout, adult_spec(target=None)) is None


# -- privacy --------------------------------------------------------------------------------------


def test_dcr_share_flags_copies_and_accepts_fresh_rows(parts: dict[str, pd.DataFrame]) -> None:
    spec = adult_spec()
    train, holdout, fresh = (parts[k].iloc[:5000] for k in ("train", "holdout", "fresh"))
    copied = dcr_share(train, train, holdout, spec, max_rows=5000)
    assert copied["share"] >= 0.97
    assert copied["median_dcr_train"] == 0.0 and copied["median_dcr_holdout"] > 0.0
    unseen = dcr_share(fresh, train, holdout, spec, max_rows=5000)
    assert 0.45 <= unseen["share"] <= 0.55
    assert unseen["median_dcr_train"] == pytest.approx(unseen["median_dcr_holdout"], rel=0.15)
    # a copy of the training rows plus noise-free duplicates stays flagged when mixed half-half
    mixed = pd.concat([train.iloc[:2500], fresh.iloc[:2500]], ignore_index=True)
    assert 0.65 <= dcr_share(mixed, train, holdout, spec, max_rows=5000)["share"] <= 0.85


def test_nndr_is_near_zero_for_copies_and_high_for_fresh_rows(parts: dict[str, pd.DataFrame]) -> None:
    spec = adult_spec()
    train, fresh = parts["train"].iloc[:8000], parts["fresh"]
    copies = nndr(train, train, spec, max_rows=3000)
    assert copies["mean"] < 0.02 and copies["p05"] == 0.0
    unseen = nndr(fresh, train, spec, max_rows=3000)
    assert unseen["mean"] > 0.5 and unseen["p05"] > 0.1


# -- association ----------------------------------------------------------------------------------


def test_association_matrix_finds_known_dependence(parts: dict[str, pd.DataFrame]) -> None:
    spec = adult_spec()
    train = parts["train"]
    names, mat = association_matrix(train, spec)
    assert names == ADULT_COLUMNS and mat.shape == (15, 15)
    assert np.allclose(mat, mat.T) and np.allclose(np.diag(mat), 1.0)
    ix = {n: i for i, n in enumerate(names)}
    assert mat[ix["education"], ix["education_num"]] > 0.95  # correlation ratio of a 1:1 coding
    assert mat[ix["relationship"], ix["sex"]] > 0.5  # Cramér's V (Husband/Wife)
    assert abs(mat[ix["age"], ix["fnlwgt"]]) < 0.15  # Pearson: unrelated
    _, shuffled = association_matrix(shuffle_columns(train, seed=4), spec)
    off = ~np.eye(15, dtype=bool)
    assert shuffled[off].max() < 0.1


# -- one call -------------------------------------------------------------------------------------


def test_evaluate_release_adult_size_is_fast_flat_and_json_safe(adult: pd.DataFrame) -> None:
    spec = adult_spec()
    order = np.random.default_rng(5).permutation(len(adult))
    train = adult.iloc[order[:26_000]].reset_index(drop=True)
    holdout = adult.iloc[order[26_000:]].reset_index(drop=True)
    boot = train.sample(32_000, replace=True, random_state=3).reset_index(drop=True)
    synth = shuffle_columns(boot, seed=6)

    res = evaluate_release(train, holdout, synth, spec)

    expected = {
        "tvd_1way_mean", "tvd_2way_mean", "tstr_auc", "trtr_auc", "dcr_share", "nndr_mean",
        "rows_synthetic",
    }  # fmt: skip
    assert expected <= set(res)
    assert all(v is None or type(v) in (float, int) for v in res.values())  # plain Python numbers only
    json.dumps(res, allow_nan=False)
    assert res["rows_synthetic"] == 32_000
    assert not {"rows_real_train", "rows_real_holdout"} & set(res)  # exact counts of real rows stay out
    assert res["tvd_1way_mean"] < 0.02 < res["tvd_2way_mean"]
    assert res["trtr_auc"] is not None and res["trtr_auc"] >= 0.85
    assert res["tstr_auc"] is not None and res["tstr_auc"] < 0.6
    assert 0.4 < res["dcr_share"] < 0.6


def test_metrics_handle_datetime_boolean_and_nullable_dtypes(parts: dict[str, pd.DataFrame]) -> None:
    """Derived Adult columns in every dtype the frames may carry."""

    def typed(frame: pd.DataFrame) -> pd.DataFrame:
        base = pd.Timestamp("1994-01-01", tz="UTC")
        return pd.DataFrame(
            {
                "age": frame["age"].astype("Int64").where(frame["workclass"].notna()),
                "hours": frame["hours_per_week"].astype("float64"),
                "birth": (
                    base - pd.to_timedelta(frame["age"] * 365 + frame["fnlwgt"] % 365, unit="D")
                ).astype("datetime64[us, UTC]"),
                "seen": pd.Series(
                    pd.Timestamp("1994-01-01") + pd.to_timedelta(frame["fnlwgt"] % 1000, unit="D"),
                    dtype="datetime64[us]",
                ),
                "male": frame["sex"] == "Male",
                "rich": pd.array(
                    (frame["income"] == ">50K").where(frame["occupation"].notna()), dtype="boolean"
                ),
                "edu": frame["education_num"],
                "race": frame["race"],
            }
        )

    spec = TableSpec(
        "typed",
        (
            ColumnSpec("age", ColumnKind.INTEGER),
            ColumnSpec("hours", ColumnKind.NUMERIC),
            ColumnSpec("birth", ColumnKind.DATETIME, resolution="day"),
            ColumnSpec("seen", ColumnKind.DATETIME),
            ColumnSpec("male", ColumnKind.BOOLEAN),
            ColumnSpec("rich", ColumnKind.BOOLEAN),
            ColumnSpec("edu", ColumnKind.CATEGORICAL),
            ColumnSpec("race", ColumnKind.CATEGORICAL),
        ),
        target="rich",  # nullable boolean: NULL-target rows are left out
    )
    train, holdout = typed(parts["train"].iloc[:3000]), typed(parts["holdout"].iloc[:3000])
    assert marginal_tvd_1way(train, train, spec)["mean"] == 0.0
    res = evaluate_release(train, holdout, train, spec)
    assert res["tvd_2way_mean"] == 0.0
    assert res["tstr_auc"] is not None and res["tstr_auc"] > 0.75  # income from age, education, hours, …
    assert res["dcr_share"] is not None and res["dcr_share"] > 0.9
    names, mat = association_matrix(train, spec)
    assert len(names) == 8 and np.isfinite(mat).all()
    ix = {n: i for i, n in enumerate(names)}
    assert mat[ix["age"], ix["birth"]] < -0.95  # older ⇒ earlier birth date (Pearson over datetimes)


def test_membership_inference_auc_flags_copies_and_not_fresh_rows(parts: dict[str, pd.DataFrame]) -> None:
    from synth_core.metrics import membership_inference_auc

    spec = adult_spec()
    copied = membership_inference_auc(parts["train"], parts["train"], parts["holdout"], spec)["auc"]
    independent = membership_inference_auc(parts["fresh"], parts["train"], parts["holdout"], spec)["auc"]
    assert copied > 0.9
    assert abs(independent - 0.5) < 0.05


def test_k3_score_is_1000_for_a_copy_and_lower_without_dependence(parts: dict[str, pd.DataFrame]) -> None:
    from synth_core.metrics import k_marginal_score

    spec = adult_spec()
    assert k_marginal_score(parts["train"], parts["train"], spec) == pytest.approx(1000.0)
    fresh = k_marginal_score(parts["train"], parts["fresh"], spec)
    shuffled = k_marginal_score(parts["train"], shuffle_columns(parts["fresh"], 1), spec)
    assert 900 < fresh < 1000 and shuffled < fresh - 20  # fresh real rows differ only by sampling noise


def test_tstr_reports_f1_of_the_rare_class(parts: dict[str, pd.DataFrame]) -> None:
    from synth_core.metrics import tstr_auc

    scores = tstr_auc(parts["train"], parts["holdout"], adult_spec())
    assert scores is not None and 0.5 < scores["f1_synthetic"] < 0.8  # >50K F1 of a good model ≈ 0.7
    shuffled = tstr_auc(shuffle_columns(parts["train"], 2), parts["holdout"], adult_spec())
    assert shuffled is not None and shuffled["f1_synthetic"] < 0.3


def test_shared_distance_evidence_equals_the_separate_metrics(parts: dict[str, pd.DataFrame]) -> None:
    """One encoder and one encoding per frame give exactly what the three metrics give on their own,
    with every subsample drawn (frames larger than each cap)."""
    from synth_core.metrics import (
        dcr_distances,
        distance_evidence,
        membership_inference_auc,
        nndr_ratios,
        release_evidence,
    )

    spec = adult_spec()
    train = parts["train"].iloc[:1500].reset_index(drop=True)
    holdout = parts["holdout"].iloc[:700].reset_index(drop=True)
    synth = pd.concat(
        [train.iloc[:400], shuffle_columns(parts["fresh"].iloc[:900], seed=2)], ignore_index=True
    )
    caps = {"max_rows": 500, "seed": 7}
    shared = distance_evidence(
        synth, train, holdout, spec, **caps, max_reference_rows=1000, max_synthetic_rows=800
    )
    d_train, d_holdout, m = dcr_distances(synth, train, holdout, spec, **caps)
    ratio, n_ref = nndr_ratios(synth, train, spec, **caps, max_reference_rows=1000)
    attack = membership_inference_auc(synth, train, holdout, spec, **caps, max_synthetic_rows=800)
    assert np.array_equal(shared.d_train, d_train) and np.array_equal(shared.d_holdout, d_holdout)
    assert shared.n_reference == m == 500
    assert np.array_equal(shared.nndr_ratio, ratio) and shared.nndr_n_reference == n_ref == 1000
    assert shared.membership() == attack and attack["n_synthetic"] == 800
    assert shared.dcr() == dcr_share(synth, train, holdout, spec, **caps)
    assert shared.nndr() == nndr(synth, train, spec, **caps, max_reference_rows=1000)
    assert (d_train == 0).sum() > (d_holdout == 0).sum() + 20  # the copied training rows are found

    # evaluate_release's numbers come from the same evidence; the evidence is kept for equal inputs
    metrics = evaluate_release(train, holdout, synth, spec, seed=7, max_distance_rows=500)
    kept = release_evidence(train, holdout, synth.copy(), spec, seed=7, max_distance_rows=500)
    assert metrics["dcr_share"] == shared.dcr()["share"]
    assert metrics["attack_auc"] == membership_inference_auc(synth, train, holdout, spec, **caps)["auc"]
    assert metrics["nndr_p05"] == nndr(synth, train, spec, **caps)["p05"]
    assert kept.utility is not None and metrics["tstr_auc"] == kept.utility["auc_synthetic"]
    assert kept.utility == tstr_auc(synth, holdout, spec, real_train=train, seed=7)
    assert release_evidence(train, holdout, synth.copy(), spec, seed=7, max_distance_rows=500) is kept
    changed = synth.copy()
    changed.loc[0, "age"] = int(changed.loc[0, "age"]) + 1
    assert release_evidence(train, holdout, changed, spec, seed=7, max_distance_rows=500) is not kept
