"""The HTML release report: self-contained, readable, and built only from synthetic rows, aggregate
metrics and DP outputs (a marker planted in one real row must never reach it)."""

from __future__ import annotations

import json
import re
import time

import numpy as np
import pandas as pd
import pytest
from conftest import ADULT_PATH

from synth_core.datasets import ADULT_COLUMNS, ADULT_INTEGER_COLUMNS, load_adult_frame
from synth_core.metrics import evaluate_release
from synth_core.privacy import PrivacyAccountant, PrivacyBudget
from synth_core.report import DP_LABEL, MAX_PLOTTED_COLUMNS, render_release_report
from synth_core.spec import ColumnKind, ColumnSpec, TableSpec
from synth_core.transformer import TableTransformer, fit_transformer_under_dp

INTEGERS = set(ADULT_INTEGER_COLUMNS)
#: Cannot occur inside base64 image data ('-' is not in the base64 alphabet).
MARKER = "ZZ-MARKER-7f3a-unique"
WORKCLASS = ("Private", "Self-emp-not-inc", "Self-emp-inc", "Federal-gov", "Local-gov", "State-gov",
             "Without-pay", "Never-worked")  # fmt: skip
FETCH = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", re.IGNORECASE)


def load_adult() -> pd.DataFrame:
    """UCI Adult (no header, ", "-separated, '?' = NULL) plus derived datetime and boolean columns."""
    frame = load_adult_frame(ADULT_PATH)
    frame["person_id"] = np.arange(1, len(frame) + 1, dtype=np.int64)
    frame["interviewed"] = pd.Series(
        pd.Timestamp("1994-01-01") + pd.to_timedelta(frame["fnlwgt"] % 365, unit="D"), dtype="datetime64[us]"
    )
    frame["recorded"] = (
        pd.Timestamp("1994-01-01", tz="UTC") + pd.to_timedelta(frame["fnlwgt"] * 7 % 10**7, unit="s")
    ).astype("datetime64[us, UTC]")
    frame["male"] = frame["sex"] == "Male"
    return frame


def report_spec() -> TableSpec:
    cols = [ColumnSpec("person_id", ColumnKind.ID, nullable=False)]
    for n in ADULT_COLUMNS:
        if n in INTEGERS:
            bounds = (17.0, 90.0) if n == "age" else None
            cols.append(ColumnSpec(n, ColumnKind.INTEGER, nullable=False, bounds=bounds))
        elif n == "workclass":  # public domain: no DP estimate exists
            cols.append(ColumnSpec(n, ColumnKind.CATEGORICAL, categories=WORKCLASS))
        else:  # discovered under DP: noisy counts in the transformer state
            cols.append(ColumnSpec(n, ColumnKind.CATEGORICAL, nullable=n in {"occupation", "native_country"}))
    cols += [
        ColumnSpec("interviewed", ColumnKind.DATETIME, nullable=False, resolution="day"),
        ColumnSpec("recorded", ColumnKind.DATETIME, nullable=False, resolution="second"),
        ColumnSpec("male", ColumnKind.BOOLEAN, nullable=False),
        ColumnSpec("unused", ColumnKind.DROP),
    ]
    return TableSpec("adult", tuple(cols), target="income")


N_MODELLED = len(ADULT_COLUMNS) + 3  # + interviewed, recorded, male


def release_for(real: pd.DataFrame, spec: TableSpec, seed: int = 0) -> dict:
    """Fit the DP transformer on ``real`` and draw a synthetic table from its state alone."""
    train, holdout = real.iloc[:26_000].reset_index(drop=True), real.iloc[26_000:].reset_index(drop=True)
    accountant = PrivacyAccountant(PrivacyBudget(3.0, 1e-6))
    rng = np.random.default_rng(seed)
    transformer = fit_transformer_under_dp(train, spec, accountant, rng)
    state = json.loads(json.dumps(transformer.to_dict()))  # as stored in a model bundle
    # a "generator" that never sees rows: random scores decoded through the DP transformer
    decoder = TableTransformer.from_dict(state)
    scores = rng.normal(size=(8_000, decoder.output_dim)).astype(np.float32)
    synthetic = decoder.inverse_transform(scores, rng)
    privacy = accountant.to_dict()
    privacy["mechanisms"].append(
        {"name": "dp-sgd", "noise_multiplier": 1.1, "steps": 900, "sample_rate": 0.01}
    )
    return {
        "train": train,
        "holdout": holdout,
        "synthetic": synthetic,
        "state": state,
        "privacy": privacy,
        "metrics": evaluate_release(train, holdout, synthetic, spec),
        "release": {
            "table": "adult",
            "generator": "dp-ctgan",
            "generator_params": {"epochs": 30, "batch_size": 500},
            "run_id": "scheduled__2025-01-01T00:00:00+00:00",
            "rows": len(synthetic),
            "created_at": "2025-01-01T00:05:00+00:00",
            "synthetic_uri": "s3://dpsynth/adult/run-1/synthetic.parquet",
            "docs_uri": "https://example.org/dpsynth/adult",
        },
    }


def render(parts: dict, spec: TableSpec, **overrides: object) -> str:
    kwargs: dict = {
        "spec": spec,
        "synthetic": parts["synthetic"],
        "transformer_state": parts["state"],
        "privacy": parts["privacy"],
        "metrics": parts["metrics"],
        "release": parts["release"],
    }
    kwargs.update(overrides)
    return render_release_report(**kwargs)


@pytest.fixture(scope="module")
def adult() -> pd.DataFrame:
    return load_adult()


@pytest.fixture(scope="module")
def marked(adult: pd.DataFrame) -> dict:
    """A release whose real training rows hold ``MARKER`` once (in a DP-discovered column)."""
    real = adult.copy()
    real.loc[123, "native_country"] = MARKER
    assert (real["native_country"] == MARKER).sum() == 1
    return release_for(real, report_spec())


def test_report_is_self_contained_readable_and_complete(marked: dict) -> None:
    spec = report_spec()
    start = time.perf_counter()
    page = render(marked, spec)
    elapsed = time.perf_counter() - start
    assert elapsed < 10, f"rendering took {elapsed:.1f}s"

    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "<title>dpsynth release report — adult</title>" in page
    for section in ("Summary", "Privacy accounting", "Quality metrics", "Columns", "Associations"):
        assert f"<h2>{section}</h2>" in page
    # one histogram per modelled column (id and drop excluded) + the association heatmap
    assert page.count("<img") == N_MODELLED + 1
    assert (
        len(re.findall(r'<img alt="[^"]*" src="data:image/png;base64,[A-Za-z0-9+/=]+">', page))
        == N_MODELLED + 1
    )
    assert not FETCH.search(page), "the report must not fetch anything"
    assert "<script" not in page and "@import" not in page and "<link" not in page
    # release facts, privacy accounting and metrics are shown
    assert "s3://dpsynth/adult/run-1/synthetic.parquet" in page  # a URI as text, not a fetch
    assert "dp-sgd" in page and "noise_multiplier" in page and "quantiles:fnlwgt" in page
    assert "tstr_auc" in page and "dcr_share" in page and "nndr_mean" in page
    assert f"{marked['privacy']['epsilon']:.4g}" in page
    # DP overlays where the state has DP outputs; an honest note where it has none
    assert page.count("DP quantile histogram") == 6 + 2  # integer + datetime columns
    # every categorical column (public domain or discovered) and the boolean have DP counts
    assert page.count("DP noisy category counts") == len(ADULT_COLUMNS) - len(INTEGERS) + 1
    assert "DP estimate of real" in page and "already paid for in ε" in DP_LABEL
    assert "person_id" not in page.split("<h2>Columns</h2>")[1]


def test_report_escapes_text(marked: dict) -> None:
    release = dict(marked["release"], run_id='<script>alert("x")</script>', generator="a & b")
    page = render(marked, report_spec(), release=release)
    assert "<script" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page and "a &amp; b" in page


def test_report_never_contains_real_rows(marked: dict) -> None:
    """The marker is in one real training row used for the transformer *and* the metrics."""
    assert (marked["train"]["native_country"] == MARKER).sum() == 1
    page = render(marked, report_spec())
    assert MARKER not in page
    assert MARKER not in json.dumps(marked["state"]) and MARKER not in json.dumps(marked["metrics"])
    assert (marked["synthetic"]["native_country"] != MARKER).all()
    # the same check catches a value that *is* released: a category held by many rows is
    # discovered under DP, so it is a legitimate DP output and shows up in the report
    assert "United-States" in page


def test_report_shows_a_category_once_dp_releases_it(adult: pd.DataFrame) -> None:
    """Control for the privacy test: the marker appears when it is a DP output (many rows hold it)."""
    real = adult.copy()
    real.loc[real.index[:3_000], "native_country"] = MARKER
    parts = release_for(real, report_spec(), seed=1)
    page = render(parts, report_spec())
    assert MARKER in parts["state"]["columns"][ADULT_COLUMNS.index("native_country")]["categories"]
    assert MARKER in page


def test_report_without_transformer_state_is_synthetic_only(marked: dict) -> None:
    page = render(marked, report_spec(), transformer_state=None)
    assert page.count("<img") == N_MODELLED + 1
    assert "DP quantile histogram" not in page and "DP noisy category counts" not in page
    assert page.count("synthetic only") == N_MODELLED


def test_report_caps_plotted_columns(marked: dict) -> None:
    base = marked["synthetic"].iloc[:2_000]
    spec = report_spec()
    modelled = [c for c in spec.columns if c.is_modelled]
    wide_cols, wide = [], {}
    for k in range(3):
        for c in modelled:
            name = f"{c.name}_{k}"
            wide_cols.append(ColumnSpec(name, c.kind, nullable=c.nullable, resolution=c.resolution))
            wide[name] = base[c.name].to_numpy()
    wide_spec = TableSpec("wide", tuple(wide_cols))
    frame = pd.DataFrame(wide).astype(
        {f"{c.name}_{k}": base[c.name].dtype for k in range(3) for c in modelled}
    )
    assert len(wide_cols) > MAX_PLOTTED_COLUMNS
    start = time.perf_counter()
    page = render_release_report(
        spec=wide_spec,
        synthetic=frame,
        transformer_state=None,
        privacy={},
        metrics={},
        release={"table": "wide"},
    )
    assert time.perf_counter() - start < 20
    assert page.count("<img") == MAX_PLOTTED_COLUMNS + 1
    assert f"{len(wide_cols) - MAX_PLOTTED_COLUMNS} more modelled columns are not plotted" in page
