"""Sampling: vectorised categorical draws, rule enforcement and streamed output.

The draws are checked against their target probabilities with chi-square tests (fixed seeds, so
the tests are deterministic); the stream against ``sample`` on a small DP-TVAE model of Adult.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import chisquare

from synth_core.errors import ParameterError
from synth_core.generators import Synthesizer, create_synthesizer
from synth_core.generators.dp_tvae import gumbel_scores
from synth_core.generators.marginal import SamplingChain
from synth_core.privacy import PrivacyBudget
from synth_core.rules import RuleUnsatisfiableError
from synth_core.spec import TableSpec
from synth_core.transformer import _hex_keys


def test_gumbel_max_draws_follow_the_softmax() -> None:
    # three rows of logits: skewed, flat with a tiny category, and one category certain
    logits = np.array(
        [
            [2.0, 1.0, 0.0, -1.0, -3.0],
            [0.0, 0.0, 0.0, 0.0, -8.0],
            [30.0, 0.0, 0.0, -5.0, 1.0],
        ],
        dtype=np.float32,
    )
    draws = 60_000
    rng = np.random.default_rng(3)
    for row in logits:
        scores = gumbel_scores(torch.from_numpy(np.tile(row, (draws, 1))), rng)
        picks = scores.argmax(dim=1).numpy()
        target = np.exp(row.astype(np.float64) - row.max())
        target /= target.sum()
        counts = np.bincount(picks, minlength=row.size)
        seen = target * draws >= 5  # chi-square needs expected counts of at least ~5 per cell
        expected = target[seen] * draws
        expected *= counts[seen].sum() / expected.sum()
        if seen.sum() > 1:
            assert chisquare(counts[seen], expected).pvalue > 1e-3, (row, counts)
        else:
            assert counts[seen].sum() == draws  # one certain category
        assert counts[~seen].sum() <= 10


def test_inverse_cdf_draws_of_a_sampling_chain_follow_each_conditional_table() -> None:
    # column 0 ~ (0.2, 0.8); column 1 | column 0: row 0 (0.5, 0, 0.5), row 1 (0.1, 0.6, 0.3)
    chain = SamplingChain(
        order=[0, 1],
        parents=[[], [0]],
        cpts=[
            np.array([2.0, 8.0], dtype=np.float32),
            np.array([[1.0, 0.0, 1.0], [1.0, 6.0, 3.0]], dtype=np.float32),
        ],
        oneway=[np.array([2.0, 8.0], dtype=np.float32), np.array([2.0, 6.0, 4.0], dtype=np.float32)],
    )
    codes = chain.sample(100_000, 2, np.random.default_rng(5))
    first = np.bincount(codes[:, 0], minlength=2)
    assert chisquare(first, np.array([0.2, 0.8]) * len(codes)).pvalue > 1e-3
    for parent, probs in ((0, [0.5, 0.0, 0.5]), (1, [0.1, 0.6, 0.3])):
        child = np.bincount(codes[codes[:, 0] == parent, 1], minlength=3)
        p = np.asarray(probs)
        assert child[p == 0].sum() == 0  # a zero-probability cell is never drawn
        assert chisquare(child[p > 0], p[p > 0] * child.sum()).pvalue > 1e-3


def test_a_conditional_row_without_mass_falls_back_to_the_columns_marginal() -> None:
    chain = SamplingChain(
        order=[0, 1],
        parents=[[], [0]],
        cpts=[np.array([1.0, 0.0], dtype=np.float32), np.zeros((2, 2), dtype=np.float32)],
        oneway=[np.array([1.0, 0.0], dtype=np.float32), np.array([1.0, 3.0], dtype=np.float32)],
    )
    codes = chain.sample(40_000, 2, np.random.default_rng(1))
    assert (codes[:, 0] == 0).all()
    assert chisquare(np.bincount(codes[:, 1], minlength=2), [10_000, 30_000]).pvalue > 1e-3


@given(st.lists(st.integers(0, 2**63 - 2), max_size=50))
def test_text_surrogate_keys_built_in_arrow_match_their_format(draws: list[int]) -> None:
    keys = _hex_keys(np.asarray(draws, dtype=np.int64)).to_pylist()
    assert keys == [f"syn-{v:016x}" for v in draws]


# ------------------------------------------------------------------------------------------------
# a small DP-TVAE model of Adult with a surrogate-key column and the spec's rules


@pytest.fixture(scope="module")
def keyed_spec(adult_spec: TableSpec) -> TableSpec:
    raw = adult_spec.to_dict()
    raw["columns"] = [{"name": "person_id", "kind": "id"}, *raw["columns"]]
    return TableSpec.from_dict(raw)


@pytest.fixture(scope="module")
def keyed_frame(adult_split) -> pd.DataFrame:  # type: ignore[no-untyped-def]
    train, _ = adult_split
    rows = train.iloc[:6000].reset_index(drop=True)
    return pd.concat([pd.Series(np.arange(1, len(rows) + 1), name="person_id"), rows], axis=1)


@pytest.fixture(scope="module")
def fitted(keyed_frame: pd.DataFrame, keyed_spec: TableSpec) -> Synthesizer:
    synth = create_synthesizer("dp_tvae", epochs=1, batch_size=1000, hidden=[32], latent_dim=8)
    return synth.fit(keyed_frame, keyed_spec, PrivacyBudget(3.0, 1e-6), seed=2)


@pytest.mark.slow
@pytest.mark.parametrize("batch_rows", [997, 4000, 7_001, 11_999])  # all below n: a real stream
def test_streamed_batches_concatenate_to_the_same_sample(
    fitted: Synthesizer, keyed_frame: pd.DataFrame, batch_rows: int
) -> None:
    n = 12_000
    whole = fitted.sample(n, seed=5)
    batches = list(fitted.sample_batches(n, seed=5, batch_rows=batch_rows))
    assert [len(b) for b in batches[:-1]] == [batch_rows] * (len(batches) - 1)
    assert 0 < len(batches[-1]) <= batch_rows
    for batch in batches:
        assert list(batch.columns) == list(keyed_frame.columns)
        assert batch.dtypes.to_dict() == keyed_frame.dtypes.to_dict()
    joined = pd.concat(batches, ignore_index=True)
    pd.testing.assert_frame_equal(joined, whole)
    # surrogate keys run 1..n over the whole stream
    assert joined["person_id"].tolist() == list(range(1, n + 1))


@pytest.mark.slow
def test_samples_keep_dtypes_nulls_and_every_critical_rule(
    fitted: Synthesizer, keyed_frame: pd.DataFrame, keyed_spec: TableSpec
) -> None:
    out = fitted.sample(30_000, seed=8)
    assert len(out) == 30_000
    assert out.dtypes.to_dict() == keyed_frame.dtypes.to_dict()
    for rule in keyed_spec.rules:
        assert rule.violations(out) == 0 and not (~rule.evaluate_reference(out)).any(), rule.name
    for column in keyed_spec.columns:
        if column.nullable:
            continue
        assert out[column.name].notna().all(), column.name
    assert out["workclass"].isna().any()  # a nullable column keeps NULL cells
    # deterministic for a seed; another seed gives other rows
    pd.testing.assert_frame_equal(fitted.sample(2_000, seed=8), fitted.sample(2_000, seed=8))
    assert not fitted.sample(2_000, seed=9).equals(fitted.sample(2_000, seed=8))


@pytest.mark.slow
def test_more_rows_than_the_old_round_cap_stream_in_bounded_batches(fitted: Synthesizer) -> None:
    """2.1M rows: the old sampler capped every call at 40 rounds of 50k rows and always failed past
    2M; the stream yields bounded batches whose keys run on across them."""
    n, batch_rows, total, last_key = 2_100_000, 350_000, 0, 0
    for batch in fitted.sample_batches(n, seed=3, batch_rows=batch_rows):
        assert 0 < len(batch) <= batch_rows
        keys = batch["person_id"].to_numpy()
        assert keys[0] == last_key + 1 and keys[-1] == last_key + len(batch)
        total, last_key = total + len(batch), int(keys[-1])
    assert total == n


@pytest.mark.slow
def test_stream_arguments_are_checked_before_the_first_batch(
    fitted: Synthesizer, keyed_frame: pd.DataFrame
) -> None:
    with pytest.raises(ParameterError, match="batch_rows must be an integer >= 1"):
        fitted.sample_batches(10, batch_rows=0)
    with pytest.raises(ParameterError, match="num_rows must be an integer >= 0"):
        fitted.sample_batches(-1)
    (empty,) = fitted.sample_batches(0, seed=1)
    assert len(empty) == 0
    assert empty.dtypes.to_dict() == keyed_frame.dtypes.to_dict()


@pytest.mark.slow
def test_an_unsatisfiable_rule_fails_with_its_name(fitted: Synthesizer, keyed_spec: TableSpec) -> None:
    assert fitted.transformer_ is not None
    original = fitted.transformer_.spec
    impossible = {**keyed_spec.to_dict(), "rules": [{"name": "nobody", "expr": "age > 200"}]}
    fitted.transformer_.spec = TableSpec.from_dict(impossible)
    try:
        with pytest.raises(
            RuleUnsatisfiableError, match=r"cannot satisfy its rules.*rule 'nobody' failed most"
        ):
            fitted.sample(500, seed=1)
        with pytest.raises(RuleUnsatisfiableError, match="rule 'nobody'"):
            next(fitted.sample_batches(500_000, seed=1, batch_rows=1000))
    finally:
        fitted.transformer_.spec = original
