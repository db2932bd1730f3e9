"""The DP transformer: exact schema round trip, point masses, spend accounting, clear errors."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from synth_core.errors import SourceTableError
from synth_core.privacy import PrivacyAccountant, PrivacyBudget
from synth_core.privacy_audit import RecordingAccountant, observed_sensitivities
from synth_core.spec import TableSpec
from synth_core.transformer import fit_transformer_under_dp


def _mixed_frame(n: int = 4_000, seed: int = 0) -> tuple[pd.DataFrame, TableSpec]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "id": np.arange(1, n + 1, dtype=np.int64),
            "amount": rng.lognormal(3, 1, n),
            "count": pd.array(np.where(rng.random(n) < 0.1, None, rng.integers(0, 50, n)), dtype="Int64"),
            "color": pd.Series(rng.choice(["red", "green", "blue"], n), dtype="str").where(
                rng.random(n) > 0.05
            ),
            "flag": rng.random(n) < 0.3,
            "maybe": pd.array(np.where(rng.random(n) < 0.2, None, rng.random(n) < 0.5), dtype="boolean"),
            "when": pd.Series(
                pd.to_datetime("2020-01-01") + pd.to_timedelta(rng.integers(0, 1_000, n), unit="D"),
                dtype="datetime64[us]",
            ),
            "stamp": pd.Series(
                pd.to_datetime("2024-01-01", utc=True) + pd.to_timedelta(rng.integers(0, 10**7, n), unit="s")
            ).astype("datetime64[us, UTC]"),
            "ignored": pd.Series(["x"] * n, dtype="str"),
        }
    )
    spec = TableSpec.from_dict(
        {
            "table": "mixed",
            "columns": [
                {"name": "id", "kind": "id", "nullable": False},
                {"name": "amount", "kind": "numeric", "nullable": False},
                {"name": "count", "kind": "integer", "nullable": True, "bounds": [0, 60]},
                {"name": "color", "kind": "categorical", "nullable": True},
                {"name": "flag", "kind": "boolean", "nullable": False},
                {"name": "maybe", "kind": "boolean", "nullable": True},
                {
                    "name": "when",
                    "kind": "datetime",
                    "nullable": False,
                    "resolution": "day",
                    "datetime_range": ["2019-01-01", "2024-01-01"],
                },
                {"name": "stamp", "kind": "datetime", "nullable": False},
                {"name": "ignored", "kind": "drop"},
            ],
        }
    )
    return frame, spec


def test_round_trip_keeps_names_order_dtypes_and_nulls() -> None:
    frame, spec = _mixed_frame()
    acc = PrivacyAccountant(PrivacyBudget(3.0, 1e-6))
    rng = np.random.default_rng(0)
    tf = fit_transformer_under_dp(frame, spec, acc, rng)
    matrix = tf.transform(frame, rng)
    assert matrix.dtype == np.float32 and matrix.shape == (len(frame), tf.output_dim)
    back = tf.inverse_transform(matrix, rng)
    expected_cols = [c for c in frame.columns if c != "ignored"]
    assert list(back.columns) == expected_cols
    assert {c: str(t) for c, t in back.dtypes.items()} == {c: str(frame[c].dtype) for c in expected_cols}
    # nulls come back exactly where they were (the missing indicator is exact on a round trip)
    for col in ("count", "color", "maybe"):
        assert (back[col].isna() == frame[col].isna()).all(), col
    # categorical/boolean values are exact; integers with unit bins are exact
    pd.testing.assert_series_equal(back["color"], frame["color"])
    pd.testing.assert_series_equal(back["flag"], frame["flag"])
    # integers get one bin per value; a value whose DP count was zeroed (noise) maps to a neighbour
    present = frame["count"].notna()
    assert (back["count"][present] == frame["count"][present]).mean() > 0.95
    assert (back["count"][present] - frame["count"][present]).abs().max() <= 2
    # day-resolution datetimes come back at day resolution within the public range
    assert (back["when"] == back["when"].dt.normalize()).all()
    assert back["when"].min() >= pd.Timestamp("2019-01-01")
    # continuous values: the quantile transform is monotone, so ranks survive
    assert back["amount"].rank().corr(frame["amount"].rank()) > 0.99
    assert back["id"].tolist() == list(range(1, len(frame) + 1))
    # what validation may expect of any model output: DP ranges and domains of the non-public columns
    ranges = tf.dp_ranges()
    assert set(ranges) == {"amount", "stamp"}
    decoded = tf.inverse_transform(rng.standard_normal((5_000, tf.output_dim)).astype(np.float32) * 3, rng)
    assert decoded["amount"].between(*ranges["amount"]).all()
    low, high = ranges["stamp"]
    stamps = decoded["stamp"].dt.tz_convert(None)
    assert ((stamps >= low) & (stamps <= high)).all()
    assert tf.dp_domains() == {"color": ["blue", "green", "red"]}


def test_every_estimate_is_charged_and_composes_within_budget() -> None:
    frame, spec = _mixed_frame()
    acc = PrivacyAccountant(PrivacyBudget(1.0, 1e-6))
    fit_transformer_under_dp(frame, spec, acc, np.random.default_rng(0))
    names = [s.name for s in acc.spends]
    # amount: no public bounds → range + quantiles; count: quantiles; color: discovery;
    # when/stamp: quantiles (+ a range for stamp); booleans: a marginal; the row count
    assert "range:amount" in names and "quantiles:amount" in names
    assert "range:stamp" in names and "range:when" not in names
    assert "categories:color" in names and "row_count" in names
    assert "marginal:flag" in names and "marginal:maybe" in names
    assert not any(n.endswith((":id", ":ignored")) for n in names)  # ids and drops are not modelled
    total_rho = sum(s.details["rho"] for s in acc.spends)
    assert total_rho == pytest.approx(acc.preprocessing_rho)
    assert acc.epsilon() < 1.0


def test_the_fit_draws_noise_only_through_declared_releases() -> None:
    """With the accountant's noise switched off, the fitted state no longer depends on the rng:
    every noisy quantity the fit keeps came out of a declared, charged release (a NULL count
    noised on the side, outside the accountant, would still vary with the rng)."""
    frame, spec = _mixed_frame(n=500)
    fits = [
        fit_transformer_under_dp(
            frame, spec, RecordingAccountant(noiseless=True, preprocessing_rho=1.0), np.random.default_rng(s)
        )
        for s in (0, 1)
    ]
    assert fits[0].to_dict() == fits[1].to_dict()


@pytest.mark.parametrize(
    "row",
    [
        {"amount": 30.0, "count": 7, "color": "red", "flag": True, "maybe": False},
        {"amount": 5.0, "count": None, "color": None, "flag": False, "maybe": None},
        {"amount": 1e9, "count": 60, "color": "zzz-new-value", "flag": True, "maybe": True},
    ],
    ids=["typical", "nulls", "extreme-and-new"],
)
def test_every_release_moves_by_at_most_its_declared_sensitivity(row: dict[str, object]) -> None:
    """Noise off, a table and the same table plus one row: every released vector (row count,
    ranges, histograms with their NULL cell, marginals, discovery) moves by at most the L2
    sensitivity it was charged for. A non-NULL count released beside a histogram under its
    charge moves by √2 and fails here."""
    _check_declared_sensitivities(
        {"when": pd.Timestamp("2021-06-01"), "stamp": pd.Timestamp("2024-02-01", tz="UTC"), **row}
    )


def _check_declared_sensitivities(row: dict[str, object]) -> None:
    frame, spec = _mixed_frame(n=500)
    extra = {"id": 10_000, "ignored": "x", **row}
    plus = pd.concat(
        [frame, pd.DataFrame({k: pd.array([v], dtype=frame[k].dtype) for k, v in extra.items()})],
        ignore_index=True,
    )
    sides = []
    for table in (frame, plus):
        acc = RecordingAccountant(noiseless=True, preprocessing_rho=1.0)
        fit_transformer_under_dp(table, spec, acc, np.random.default_rng(0))
        sides.append(acc.recorded)
    checked = observed_sensitivities(*sides)
    assert {name for name, _, _ in checked} >= {"row_count", "quantiles:count", "categories:color"}
    for name, moved, declared in checked:
        assert moved <= declared + 1e-9, (name, moved, declared)


_ADDED_ROWS = st.fixed_dictionaries(
    {
        "amount": st.floats(-1e12, 1e12, allow_nan=False),
        "count": st.none() | st.integers(-(2**40), 2**40),
        # a new value sorts after the existing ones, so the recorded count vectors stay aligned
        "color": st.none()
        | st.sampled_from(["red", "green", "blue"])
        | st.text(max_size=12).map(lambda t: "\U0010ffff" + t),
        "flag": st.booleans(),
        "maybe": st.none() | st.booleans(),
        "when": st.datetimes(dt.datetime(1900, 1, 1), dt.datetime(2200, 1, 1)).map(pd.Timestamp),
    }
)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(row=_ADDED_ROWS)
def test_a_generated_added_row_moves_no_release_beyond_its_sensitivity(row: dict[str, object]) -> None:
    """As above, for generated rows (any amount, count, text, NULL pattern, date)."""
    _check_declared_sensitivities({**row, "stamp": pd.Timestamp("2024-02-01", tz="UTC")})


def test_point_mass_survives_the_round_trip(adult_frame, adult_spec) -> None:  # type: ignore[no-untyped-def]
    acc = PrivacyAccountant(PrivacyBudget(3.0, 1e-6))
    rng = np.random.default_rng(0)
    tf = fit_transformer_under_dp(adult_frame, adult_spec, acc, rng)
    # decode standard-normal draws: the marginal of capital_gain must keep its mass at exactly 0
    z = rng.standard_normal((20_000, tf.output_dim)).astype(np.float32)
    back = tf.inverse_transform(z, rng)
    real_zero = (adult_frame["capital_gain"] == 0).mean()
    assert abs((back["capital_gain"] == 0).mean() - real_zero) < 0.02
    assert back["age"].between(17, 90).all()


def test_public_domain_violation_names_the_column_not_the_value() -> None:
    frame, spec = _mixed_frame(n=500)
    spec = TableSpec.from_dict(
        {
            **spec.to_dict(),
            "columns": [
                {**c.to_dict(), **({"categories": ["red", "green"]} if c.name == "color" else {})}
                for c in spec.columns
            ],
        }
    )
    rng = np.random.default_rng(0)
    tf = fit_transformer_under_dp(frame, spec, PrivacyAccountant(PrivacyBudget(1.0, 1e-6)), rng)
    with pytest.raises(
        SourceTableError, match=r"column 'color'.*outside the declared public category domain"
    ) as err:
        tf.transform(frame, rng)
    assert "blue" not in str(err.value)


def test_kind_mismatch_and_not_null_violations_are_named() -> None:
    frame, spec = _mixed_frame(n=200)
    bad = frame.assign(amount=frame["amount"].astype("str"))
    with pytest.raises(SourceTableError, match="column 'amount': the spec declares numeric"):
        fit_transformer_under_dp(
            bad, spec, PrivacyAccountant(PrivacyBudget(1.0, 1e-6)), np.random.default_rng(0)
        )
    nulls = frame.assign(amount=frame["amount"].where(frame.index > 0))
    with pytest.raises(SourceTableError, match="column 'amount': declared NOT NULL"):
        fit_transformer_under_dp(
            nulls, spec, PrivacyAccountant(PrivacyBudget(1.0, 1e-6)), np.random.default_rng(0)
        )


def test_empty_frame_is_refused() -> None:
    frame, spec = _mixed_frame(n=10)
    with pytest.raises(SourceTableError, match="table 'mixed' has no rows"):
        fit_transformer_under_dp(
            frame.iloc[:0], spec, PrivacyAccountant(PrivacyBudget(1.0, 1e-6)), np.random.default_rng(0)
        )


def test_dp_null_rates_and_marginals_track_the_data() -> None:
    frame, spec = _mixed_frame(n=20_000)
    tf = fit_transformer_under_dp(
        frame, spec, PrivacyAccountant(PrivacyBudget(3.0, 1e-6)), np.random.default_rng(1)
    )
    rates = tf.dp_null_rates()
    assert set(rates) == {"count", "color", "maybe"}  # the nullable modelled columns
    for name, rate in rates.items():
        assert abs(rate - frame[name].isna().mean()) < 0.01, name
    flag = next(c for c in tf.columns if c.name == "flag")
    assert flag.category_weights is not None
    share_true = flag.category_weights[1] / sum(flag.category_weights)
    assert abs(share_true - frame["flag"].mean()) < 0.01


def test_state_is_json_and_round_trips() -> None:
    import json

    from synth_core.transformer import TableTransformer

    frame, spec = _mixed_frame(n=1_000)
    tf = fit_transformer_under_dp(
        frame, spec, PrivacyAccountant(PrivacyBudget(2.0, 1e-6)), np.random.default_rng(0)
    )
    state = json.loads(json.dumps(tf.to_dict()))
    again = TableTransformer.from_dict(state)
    assert again.spans == tf.spans and again.output_dtypes == tf.output_dtypes
    _ = dt  # datetime used in the fixture frame
