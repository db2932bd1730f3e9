"""The HTML release report in its two versions.

* **Shareable** (no real rows given): self-contained and readable, built only from the synthetic
  table, DP outputs and release facts. A marker planted in one real row must never reach it, and
  neither may any metric computed from real rows (names or values).
* **Internal** (``InternalEvidence`` given): adds the real-vs-synthetic association heatmaps and
  their difference, utility, DCR/NNDR plots and the attack AUC — aggregates only, still no cell value.
"""

from __future__ import annotations

import html
import io
import json
import re
import time

import numpy as np
import pandas as pd
import pytest
from conftest import ADULT_PATH

from synth_core.datasets import ADULT_COLUMNS, ADULT_INTEGER_COLUMNS, load_adult_frame
from synth_core.ledger import BudgetStatus
from synth_core.metrics import dcr_share, evaluate_release, nndr
from synth_core.privacy import PrivacyAccountant, PrivacyBudget
from synth_core.report import (
    DP_LABEL,
    INTERNAL_BANNER,
    MAX_PLOTTED_COLUMNS,
    METRIC_MEANINGS,
    SHAREABLE_BANNER,
    InternalEvidence,
    render_release_report,
)
from synth_core.rules import Rule
from synth_core.spec import ColumnKind, ColumnSpec, TableSpec
from synth_core.transformer import TableTransformer, fit_transformer_under_dp
from synth_expectations.outcome import ExpectationResult, ValidationOutcome

INTEGERS = set(ADULT_INTEGER_COLUMNS)
#: Cannot occur inside base64 image data ('-' is not in the base64 alphabet).
MARKER = "ZZ-MARKER-7f3a-unique"
WORKCLASS = ("Private", "Self-emp-not-inc", "Self-emp-inc", "Federal-gov", "Local-gov", "State-gov",
             "Without-pay", "Never-worked")  # fmt: skip
FETCH = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", re.IGNORECASE)
IMG = re.compile(r'<img alt="([^"]*)" src="data:image/png;base64,[A-Za-z0-9+/=]+">')
RULES = (
    Rule("husband_is_male", "relationship == 'Husband' -> sex == 'Male'"),
    Rule("gain_or_loss", "capital_gain * capital_loss == 0", severity="warning"),
)
#: The observed value of a (fake) privacy-threshold result: a real-data metric.
PLANTED_DCR = 0.50137
#: Metric names that only a statistic of real rows can carry.
REAL_METRIC_WORDS = ("tvd_", "tstr", "trtr", "dcr", "nndr", "attack", "membership", "holdout")
DISTANCE_ROWS = 2_000


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
        elif n == "workclass":  # public domain: DP noisy counts over it
            cols.append(ColumnSpec(n, ColumnKind.CATEGORICAL, categories=WORKCLASS))
        else:  # discovered under DP: noisy counts in the transformer state
            cols.append(ColumnSpec(n, ColumnKind.CATEGORICAL, nullable=n in {"occupation", "native_country"}))
    cols += [
        ColumnSpec("interviewed", ColumnKind.DATETIME, nullable=False, resolution="day"),
        ColumnSpec("recorded", ColumnKind.DATETIME, nullable=False, resolution="second"),
        ColumnSpec("male", ColumnKind.BOOLEAN, nullable=False),
        ColumnSpec("unused", ColumnKind.DROP),
    ]
    return TableSpec("adult", tuple(cols), target="income", rules=RULES)


N_MODELLED = len(ADULT_COLUMNS) + 3  # + interviewed, recorded, male


def png_bytes() -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3, 2), dpi=50)
    FigureCanvasAgg(fig)
    fig.subplots().plot([0, 1], [1, 0])
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def validation_for(synthetic: pd.DataFrame) -> dict:
    """A validation outcome of the shape ``ValidationOutcome.to_dict()`` gives: rules, a NULL-rate
    check and a privacy-threshold check whose observed value is a real-data metric."""
    results = []
    for rule in RULES:
        bad = rule.violations(synthetic)
        results.append(
            ExpectationResult(
                expectation_type="expect_column_values_to_be_in_set",
                column=None,
                success=bad == 0,
                severity=rule.severity,
                summary=f"rule {rule.name!r} ({rule.expr}) {'passed' if bad == 0 else 'failed'}: "
                f"{bad} rows violate it.",
                check="rule",
                unexpected_count=bad,
                unexpected_percent=100.0 * bad / len(synthetic),
                rule=rule.name,
            )
        )
    results += [
        ExpectationResult(
            expectation_type="expect_column_values_to_be_null",
            column="occupation",
            success=False,
            severity="warning",
            summary="column 'occupation': NULL rate 14.1% is outside 5.7% ± 5.0% (the model's DP estimate).",
            check="null_rate",
            observed=0.141,
        ),
        ExpectationResult(
            expectation_type="expect_column_max_to_be_between",
            column=None,
            success=True,
            severity="critical",
            summary=f"privacy: DCR share {PLANTED_DCR} is at most 0.52 (max_dcr_share).",
            check="privacy",
            metric="dcr_share",
            observed=PLANTED_DCR,
            threshold=0.52,
        ),
    ]
    return ValidationOutcome(success=False, results=results).to_dict()


def release_for(real: pd.DataFrame, spec: TableSpec, seed: int = 0, *, with_metrics: bool = True) -> dict:
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
        "metrics": evaluate_release(train, holdout, synthetic, spec) if with_metrics else {},
        "validation": validation_for(synthetic),
        "budget": BudgetStatus("adult", 10.0, 1e-5, 6.0, 2e-6).to_dict(),
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
    """The call the validate task makes today (the original six arguments) plus ``overrides``."""
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


def full(parts: dict, spec: TableSpec, **overrides: object) -> str:
    """Every input the report takes (validation, ledger status, diagnostics)."""
    extra: dict = {
        "validation": parts["validation"],
        "budget": parts["budget"],
        "diagnostics": {"flow <base> residuals": png_bytes()},
    }
    extra.update(overrides)
    return render(parts, spec, **extra)


def text_of(page: str) -> str:
    """The page without its embedded image data."""
    return re.sub(r'src="data:image/png;base64,[^"]*"', 'src=""', page)


def h2s(page: str) -> list[str]:
    return re.findall(r"<h2>([^<]*)</h2>", page)


def assert_self_contained(page: str) -> None:
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert not FETCH.search(page), "the report must not fetch anything"
    assert "<script" not in page and "@import" not in page and "<link" not in page
    assert "url(" not in page and "<iframe" not in page and "<object" not in page
    assert "default-src 'none'; img-src data:" in page  # CSP: the browser refuses any other fetch
    assert page.count("<img") == len(IMG.findall(page))


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


@pytest.fixture(scope="module")
def shareable(marked: dict) -> str:
    return full(marked, report_spec())


@pytest.fixture(scope="module")
def internal(marked: dict) -> str:
    start = time.perf_counter()
    evidence = InternalEvidence(
        marked["train"], marked["holdout"], max_distance_rows=DISTANCE_ROWS, max_train_rows=10_000
    )
    page = full(marked, report_spec(), internal=evidence)
    elapsed = time.perf_counter() - start
    assert elapsed < 60, f"rendering the internal report took {elapsed:.1f}s"
    return page


# ------------------------------------------------------------------------------------------------
# shareable


def test_shareable_report_with_the_original_arguments(marked: dict) -> None:
    """Backward compatible: the six original arguments give the shareable version."""
    spec = report_spec()
    start = time.perf_counter()
    page = render(marked, spec)
    elapsed = time.perf_counter() - start
    assert elapsed < 20, f"rendering took {elapsed:.1f}s"

    assert_self_contained(page)
    assert "<title>dpsynth release report — adult</title>" in page
    assert '<meta name="dpsynth-report-version" content="shareable">' in page
    assert f"<strong>{SHAREABLE_BANNER}.</strong>" in page and "INTERNAL" not in page
    assert h2s(page) == [
        "Summary",
        "Generator",
        "Privacy accounting",
        "Columns",
        "Associations",
        "Validation",
    ]
    # one histogram per modelled column (id and drop excluded) + the synthetic association heatmap
    assert len(IMG.findall(page)) == N_MODELLED + 1
    assert "s3://dpsynth/adult/run-1/synthetic.parquet" in page  # a URI as text, not a fetch
    assert "dp-sgd" in page and "noise_multiplier" in page and "quantiles:fnlwgt" in page
    assert f"{marked['privacy']['epsilon']:.4g}" in page
    assert "<th>epochs</th><td class=num>30</td>" in page  # generator parameters
    # every modelled column has a DP marginal in the state, and the report overlays it
    assert page.count("DP quantile histogram") == 6 + 2  # integer + datetime columns
    assert page.count("DP noisy category counts") == len(ADULT_COLUMNS) - len(INTEGERS) + 1  # + boolean
    assert "synthetic only" not in page
    assert "DP estimate of real" in page and "already paid for in ε" in DP_LABEL
    assert page.count("DP estimate of the real NULL share") == 3  # workclass, occupation, native_country
    assert "person_id" not in page.split("<h2>Columns</h2>")[1]
    # no validation outcome given: the spec's rules are evaluated on the synthetic table
    for rule in RULES:
        bad = rule.violations(marked["synthetic"])
        assert f"<td>{rule.name}</td><td>{html.escape(rule.expr)}</td>" in page
        assert f"<td class=num>{bad:,}</td>" in page
    assert "No ledger status was passed" in page


def test_shareable_report_with_every_input(shareable: str, marked: dict) -> None:
    assert_self_contained(shareable)
    assert h2s(shareable) == ["Summary", "Generator", "Privacy accounting", "Columns", "Associations",
                              "Validation", "Generator diagnostics"]  # fmt: skip
    alts = IMG.findall(shareable)
    assert len(alts) == N_MODELLED + 1 + 1  # + the diagnostics figure
    assert alts[-2:] == ["pairwise association heatmap of the synthetic table", "flow &lt;base&gt; residuals"]
    # ledger: lifetime budget, spent and left, with a meter
    assert "<th>lifetime ε</th><td class=num>10</td>" in shareable
    assert "<th>ε left</th><td class=num>4</td>" in shareable
    assert "60.0% of the lifetime ε spent" in shareable
    # validation: rule name, expression and violations from the outcome; the NULL-rate warning listed
    for rule in RULES:
        assert f"<td>{rule.name}</td>" in shareable
        assert f"<td class=num>{rule.violations(marked['synthetic']):,}</td>" in shareable
    assert "gain_or_loss</td><td>capital_gain * capital_loss == 0</td><td>warning</td>" in shareable
    assert "NULL rate 14.1% is outside" in shareable
    assert "1 privacy-threshold check(s) compare metrics computed from real rows" in shareable


def test_shareable_report_holds_no_statistic_of_real_rows(shareable: str, marked: dict) -> None:
    """No metric computed from real rows (name or value) and no real cell value, although every
    input — real-data metrics, a privacy-threshold result — was passed in."""
    text = text_of(shareable)
    lowered = text.lower()
    for word in REAL_METRIC_WORDS:
        assert word not in lowered, word
    for name in METRIC_MEANINGS:
        assert name not in text
    for name, value in marked["metrics"].items():
        if name == "rows_synthetic" or value is None:
            continue
        shown = f"{value:,}" if isinstance(value, int) else f"{value:.4g}"
        assert shown not in text, (name, shown)
    assert str(PLANTED_DCR)[:6] not in text and "Privacy thresholds" not in text
    assert "Quality metrics" not in text and "Utility" not in text and "Privacy evidence" not in text
    # the marker sits in one real training row: DP discovery does not release it
    assert MARKER not in shareable
    assert (marked["train"]["native_country"] == MARKER).sum() == 1
    assert MARKER not in json.dumps(marked["state"]) and MARKER not in json.dumps(marked["metrics"])
    assert (marked["synthetic"]["native_country"] != MARKER).all()
    # the same check catches a value that *is* released (many rows hold it: a DP output)
    assert "United-States" in shareable


def test_report_shows_a_category_once_dp_releases_it(adult: pd.DataFrame) -> None:
    """Control for the privacy test: the marker appears when it is a DP output (many rows hold it)."""
    real = adult.copy()
    real.loc[real.index[:3_000], "native_country"] = MARKER
    parts = release_for(real, report_spec(), seed=1, with_metrics=False)
    page = render(parts, report_spec())
    assert MARKER in parts["state"]["columns"][ADULT_COLUMNS.index("native_country")]["categories"]
    assert MARKER in page


def test_real_evaluation_is_shareable_only_on_request(marked: dict) -> None:
    page = full(marked, report_spec(), include_real_evaluation=True)
    assert SHAREABLE_BANNER not in page and INTERNAL_BANNER not in page
    assert "Shareable with an exception" in page and "include_real_evaluation=True" in page
    assert h2s(page)[-1] == "Quality metrics on real rows"
    assert "Utility" not in h2s(page) and "Privacy evidence" not in h2s(page)
    assert "tstr_auc" in page and "dcr_share" in page and "attack_auc" in page
    assert f"{marked['metrics']['dcr_share']:.4g}" in page
    assert "<h3>Privacy thresholds</h3>" in page and f"{PLANTED_DCR:.4g}" in page
    assert len(IMG.findall(page)) == N_MODELLED + 2  # no figure of real rows
    assert MARKER not in page


def test_report_escapes_text(marked: dict) -> None:
    # two columns are enough (and quick): the text to escape is in the release, a rule, a caption
    spec = TableSpec(
        "adult",
        (ColumnSpec("relationship", ColumnKind.CATEGORICAL), ColumnSpec("sex", ColumnKind.CATEGORICAL)),
        rules=RULES[:1],
    )
    release = dict(marked["release"], run_id='<script>alert("x")</script>', generator="a & b")
    page = render_release_report(
        spec=spec,
        synthetic=marked["synthetic"][["relationship", "sex"]],
        transformer_state=marked["state"],
        privacy=marked["privacy"],
        release=release,
        validation=marked["validation"],
        diagnostics={'<img src="x">': png_bytes()},
    )
    assert page.count("<img") == 2 + 1 + 1
    assert "<script" not in page and '<img src="x">' not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page and "a &amp; b" in page
    assert "&lt;img src=&quot;x&quot;&gt;" in page
    assert "relationship == &#x27;Husband&#x27; -&gt; sex == &#x27;Male&#x27;" in page


def test_diagnostics_must_be_png(marked: dict) -> None:
    with pytest.raises(ValueError, match="'flow' is not PNG bytes"):
        render(marked, report_spec(), diagnostics={"flow": b"<svg></svg>"})


def test_report_without_transformer_state_is_synthetic_only(marked: dict) -> None:
    page = render(marked, report_spec(), transformer_state=None)
    assert len(IMG.findall(page)) == N_MODELLED + 1
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
        release={"table": "wide"},
    )
    assert time.perf_counter() - start < 30
    assert page.count("<img") == MAX_PLOTTED_COLUMNS + 1
    assert f"{len(wide_cols) - MAX_PLOTTED_COLUMNS} more modelled columns are not plotted" in page
    assert "The spec declares no semantic rules." in page


# ------------------------------------------------------------------------------------------------
# internal


def test_internal_report_adds_evidence_from_real_rows(internal: str, shareable: str) -> None:
    assert_self_contained(internal)
    assert "<title>INTERNAL — dpsynth release report — adult</title>" in internal
    assert '<meta name="dpsynth-report-version" content="internal">' in internal
    assert f"<strong>{INTERNAL_BANNER}.</strong>" in internal and SHAREABLE_BANNER not in internal
    assert h2s(internal) == [*h2s(shareable), "Utility", "Privacy evidence", "Quality metrics on real rows"]
    alts = IMG.findall(internal)
    # shareable images + real heatmap + difference heatmap + DCR plot + NNDR plot
    assert len(alts) == len(IMG.findall(shareable)) + 4
    for alt in (
        "pairwise association heatmap of the real training rows",
        "pairwise association heatmap of the synthetic table",
        "difference of the association heatmaps: synthetic minus real",
        "DCR distribution: distances of synthetic rows to the nearest training vs holdout row",
        "NNDR distribution of synthetic rows against the training rows",
    ):
        assert alts.count(alt) == 1, alt
    # the heatmap pair sits side by side, the difference below, with the most-changed pairs
    assoc = internal.split("<h2>Associations</h2>")[1].split("<h2>")[0]
    assert assoc.index("real training rows") < assoc.index("synthetic table") < assoc.index("difference")
    assert "<div class=pair>" in assoc and "whose association differs most" in assoc
    # the decoded noise has no dependence: the real sex × male association (1) is lost
    assert "<td>sex × male</td><td class=num>1</td>" in assoc
    # utility: train-synthetic-test-real against train-real-test-real, AUC and F1
    utility = internal.split("<h2>Utility</h2>")[1].split("<h2>")[0]
    assert "train synthetic → test real" in utility and "train real → test real" in utility
    assert "<td>ROC AUC</td>" in utility and "<td>F1</td>" in utility
    # privacy thresholds (real-data metrics) are shown in the internal version only
    assert "<h3>Privacy thresholds</h3>" in internal and f"{PLANTED_DCR:.4g}" in internal
    # still aggregates only: no real cell value
    assert MARKER not in internal


def test_internal_privacy_evidence_matches_the_metrics(internal: str, marked: dict) -> None:
    """The DCR share and NNDR shown next to the plots are the metrics' own numbers (same subsamples)."""
    spec = report_spec()
    dcr = dcr_share(marked["synthetic"], marked["train"], marked["holdout"], spec, max_rows=DISTANCE_ROWS)
    nn = nndr(marked["synthetic"], marked["train"], spec, max_rows=DISTANCE_ROWS)
    evidence = internal.split("<h2>Privacy evidence</h2>")[1].split("<h2>")[0]
    assert (
        f"<th>DCR share (closer to a training row; 0.5 ideal)</th><td class=num>{dcr['share']:.4g}</td>"
        in evidence
    )
    assert (
        f"<th>median distance to the closest training row</th><td class=num>{dcr['median_dcr_train']:.4g}"
        in evidence
    )
    assert f"<th>NNDR mean (near 0 flags copies)</th><td class=num>{nn['mean']:.4g}</td>" in evidence
    assert "membership-inference attack AUC" in evidence


def test_internal_report_reuses_the_evaluated_evidence(marked: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """After evaluate_release on the same rows (as in the validate step, which re-reads them), the
    internal report runs no nearest-neighbour search and fits no classifier, and shows the metrics'
    own numbers."""
    import synth_core.metrics as metrics_module

    spec = report_spec()
    train = marked["train"].iloc[:3000].reset_index(drop=True)
    holdout = marked["holdout"].iloc[:1500].reset_index(drop=True)
    synthetic = marked["synthetic"].iloc[:2000].reset_index(drop=True)
    metrics = evaluate_release(train, holdout, synthetic, spec)

    def recomputed(*args: object, **kwargs: object) -> None:
        raise AssertionError("the internal report recomputed evidence evaluate_release already had")

    monkeypatch.setattr(metrics_module, "_nearest", recomputed)
    monkeypatch.setattr(metrics_module, "_fit_and_score", recomputed)
    page = render(
        {**marked, "synthetic": synthetic.copy(), "metrics": metrics},
        spec,
        internal=InternalEvidence(train.copy(), holdout.copy()),
    )
    evidence = page.split("<h2>Privacy evidence</h2>")[1].split("<h2>")[0]
    assert f"<td class=num>{metrics['dcr_share']:.4g}</td>" in evidence
    assert f"<td class=num>{metrics['attack_auc']:.4g}</td>" in evidence
    assert f"<td class=num>{metrics['nndr_p05']:.4g}</td>" in evidence
    utility = page.split("<h2>Utility</h2>")[1].split("<h2>")[0]
    assert f"<td class=num>{metrics['tstr_auc']:.4g}</td>" in utility


def test_internal_report_reuses_the_shareable_column_plots(
    marked: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The validate step renders the shareable, then the internal report of one release: the column
    plots (synthetic rows and DP outputs only) are drawn once and are the same in both."""
    import synth_core.report as report_module

    spec = report_spec()
    synthetic = marked["synthetic"].iloc[:1500].reset_index(drop=True)
    shareable = render({**marked, "synthetic": synthetic}, spec)

    def redrawn(*args: object, **kwargs: object) -> None:
        raise AssertionError("the column plots were drawn again for the same release")

    monkeypatch.setattr(report_module, "_columns_section", redrawn)
    again = render({**marked, "synthetic": synthetic.copy()}, spec)
    columns = lambda page: page.split("<h2>Columns</h2>")[1].split("<h2>")[0]  # noqa: E731
    assert columns(again) == columns(shareable) and "<img" in columns(shareable)
