"""A self-contained HTML report for one synthetic release, in two versions.

The report is what people read next to the synthetic table. It comes in two versions, chosen by
whether real rows are handed to :func:`render_release_report`:

**Shareable** (``internal=None``, the default) — may leave the sensitive zone. It is built from:

* the **synthetic table** (histograms, NULL shares, the pairwise association heatmap, and the
  semantic rules' violation counts);
* the **DP outputs** stored in the fitted transformer's state: the DP quantile histograms of
  numeric/integer/datetime columns and the DP noisy counts of categorical and boolean columns
  (every modelled column has one), and the DP NULL fractions. They were paid for in ε when the
  transformer was fit, so showing them costs nothing more (post-processing);
* **release facts**: the privacy accountant's (ε, δ), the ledger's lifetime budget, the generator
  and its parameters, and the validation outcome of checks that read only the synthetic table;
* generator **diagnostics** (PNG figures a generator computed from DP outputs, e.g. DP-MAF's).

No statistic computed from real rows reaches it: aggregate quality metrics (TVD, TSTR, DCR,
NNDR, attack AUC) and the privacy-threshold validation results are left out unless the caller
opts in with ``include_real_evaluation=True`` (the banner then says so).

**Internal** (``internal=InternalEvidence(real_train, real_holdout)``) — stays in the sensitive
zone. Everything above, plus the association heatmap of the real training rows next to the
synthetic one and their difference, utility (train-synthetic-test-real against
train-real-test-real AUC/F1), privacy evidence (the distribution of distances to the closest
training vs holdout record, the NNDR distribution, the membership-inference AUC), the aggregate
metrics and the privacy-threshold results. It still holds no cell value, only aggregates.

Both versions have inline CSS, plots embedded as base64 PNG ``<img>`` data URIs, no script and no
reference to anything outside the file: opening one makes no network request.
"""

from __future__ import annotations

import base64
import html
import io
import itertools
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from synth_core.metrics import (
    DEFAULT_SEED,
    ReleaseEvidence,
    _as_float,
    _as_keys,
    _frame_digest,
    association_matrix,
    metric_columns,
    release_evidence,
)
from synth_core.spec import ColumnKind, TableSpec

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: Columns plotted at most (and shown in the heatmaps); the rest are listed without a plot.
MAX_PLOTTED_COLUMNS = 40
#: Display cells a DP quantile histogram is merged into (point masses ≥ 1/cells stay on their own).
DISPLAY_CELLS = 30
#: Bars of a categorical plot; the rest are pooled into "(all others)".
MAX_CATEGORY_BARS = 25
#: Rows of the per-column category table (synthetic share and DP estimate share).
MAX_CATEGORY_ROWS = 10
#: Failed or not-evaluated expectations listed one by one in the validation section.
MAX_LISTED_FAILURES = 50
#: Column pairs listed in the internal report's table of largest association differences.
MAX_DIFF_PAIRS = 10
#: Resolution of the embedded PNGs.
DPI = 80

DP_LABEL = "DP estimate of real (already paid for in ε)"
SHAREABLE_BANNER = "Shareable: every real-data figure is differentially private"
INTERNAL_BANNER = "INTERNAL — contains statistics of real records; keep in the sensitive zone"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_SECONDS_PER = {"day": 86400.0, "second": 1.0, "microsecond": 1.0}
_CONTINUOUS = (ColumnKind.NUMERIC, ColumnKind.INTEGER, ColumnKind.DATETIME)
#: Validation families whose results compare metrics computed from real rows (internal only).
_REAL_DATA_FAMILIES = frozenset({"privacy"})

#: One-line meaning of each metric :func:`synth_core.metrics.evaluate_release` returns.
METRIC_MEANINGS: dict[str, str] = {
    "tvd_1way_mean": "Mean total variation distance between synthetic and real single-column distributions "
    "(0 = identical, 1 = disjoint; lower is better).",
    "tvd_1way_max": "Largest single-column total variation distance (the worst-kept column).",
    "tvd_2way_mean": "Mean total variation distance of column-pair distributions: how well pairwise "
    "dependence is kept (lower is better).",
    "tvd_2way_max": "Largest column-pair total variation distance (the worst-kept pair).",
    "tstr_auc": "ROC AUC on real holdout rows of a classifier trained on the synthetic table "
    "(0.5 = chance; compare with trtr_auc).",
    "trtr_auc": "ROC AUC of the same classifier trained on the real training rows: the ceiling for tstr_auc.",
    "dcr_share": "Share of synthetic rows closer to a training row than to an unseen holdout row "
    "(about 0.5 = no memorisation; near 1 = copies of training rows).",
    "dcr_median_train": "Median distance from a synthetic row to its closest training row (encoded units).",
    "dcr_median_holdout": "Median distance from a synthetic row to its closest holdout row (compare with the above).",
    "nndr_mean": "Mean ratio of distances to the nearest and second-nearest training rows "
    "(near 0 = synthetic rows that single out one record; near 1 = typical rows).",
    "nndr_p05": "5th percentile of that ratio (the most record-like synthetic rows).",
    "attack_auc": "ROC AUC of a distance-based membership-inference attack using the synthetic table "
    "(0.5 = it cannot tell training rows from unseen ones; near 1 = membership leaks).",
    "wasserstein_mean": "Mean distance (1-D Wasserstein, in real standard deviations) between synthetic and "
    "real numeric columns (0 = identical; lower is better).",
    "wasserstein_ratio": "That distance over the same distance from unseen holdout rows "
    "(about 1 = as close as a fresh real sample; larger is worse).",
    "mi_diff_mean": "Mean absolute difference of pairwise normalized mutual information, real vs synthetic "
    "(0 = every pairwise dependence kept; lower is better).",
    "rows_synthetic": "Rows of the synthetic table.",
}

_CSS = """
body{font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
main{max-width:1100px;margin:0 auto;padding:24px 32px 48px;background:#fff}
h1{font-size:1.6em;margin:0 0 4px}
h2{font-size:1.25em;border-bottom:2px solid #dfe3ea;padding-bottom:4px;margin-top:36px}
h3{font-size:1.05em;margin:24px 0 6px}
table{border-collapse:collapse;margin:8px 0 12px;font-size:.9em}
th,td{border:1px solid #dfe3ea;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#eef1f5;font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.note{color:#5a6478;font-size:.88em;margin:4px 0 10px}
.banner{background:#eef6ee;border-left:6px solid #3c8d3c;padding:10px 14px;margin:12px 0}
.banner strong{font-size:1.1em}
.banner.internal{background:#fdecea;border-left-color:#c62828;color:#5f1111}
.banner.exception{background:#fff6e0;border-left-color:#c98a00}
.column{border-top:1px solid #eef1f5;padding-top:6px}
.pair{display:flex;flex-wrap:wrap;gap:12px}
.pair>figure{flex:1 1 420px;margin:0}
figcaption{font-size:.85em;color:#5a6478}
.meter{width:320px;height:12px;background:#eef1f5;border:1px solid #cfd5df;border-radius:6px;overflow:hidden}
.meter>span{display:block;height:100%;background:#4c78a8}
.fail{color:#b3261e;font-weight:600}
.pass{color:#2e7d32}
img{max-width:100%;height:auto;display:block;margin:4px 0}
code{background:#eef1f5;padding:1px 4px;border-radius:3px}
"""


@dataclass(frozen=True)
class InternalEvidence:
    """Real rows for the *internal* report (it stays in the sensitive zone).

    Attributes:
        real_train: the real rows the generator learned from (same columns as the synthetic table).
        real_holdout: real rows of the same table it never saw.
        max_distance_rows: synthetic rows scored (and reference rows per side) by the distance
            metrics, as in :func:`synth_core.metrics.dcr_share`.
        max_train_rows: rows each utility classifier trains on (see :func:`~synth_core.metrics.tstr_auc`).
        seed: seed of every subsample and learner.
    """

    real_train: pd.DataFrame
    real_holdout: pd.DataFrame
    max_distance_rows: int = 5000
    max_train_rows: int | None = 40_000
    seed: int = DEFAULT_SEED


# ------------------------------------------------------------------------------------------------
# formatting


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: Any) -> str:
    """Human-readable text for a scalar or a nested structure (not yet escaped)."""
    if value is None:
        return "—"
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, int | np.integer):
        return f"{int(value):,}"
    if isinstance(value, float | np.floating):
        v = float(value)
        if math.isnan(v):
            return "NaN"
        if math.isinf(v):
            return "∞" if v > 0 else "-∞"
        if v == 0:
            return "0"
        if abs(v) >= 1e5 or abs(v) < 1e-3:
            return f"{v:.3g}"
        return f"{v:.4g}"
    if isinstance(value, Mapping | list | tuple):
        return json.dumps(value, default=str, ensure_ascii=False)
    return str(value)


def _kv_table(rows: Sequence[tuple[str, Any]]) -> str:
    body = "".join(
        f"<tr><th>{_e(k)}</th><td{' class=num' if _is_number(v) else ''}>{_e(_fmt(v))}</td></tr>"
        for k, v in rows
    )
    return f"<table>{body}</table>"


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool)


def _grid_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(f"<td{' class=num' if _is_number(v) else ''}>{_e(_fmt(v))}</td>" for v in row)
        + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


# ------------------------------------------------------------------------------------------------
# plotting (matplotlib, Agg, no pyplot state)


def _new_figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Figure, alt: str) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def _short(label: str, width: int = 22) -> str:
    return label if len(label) <= width else label[: width - 1] + "…"


def _bar_plot(
    title: str, labels: list[str], synth_share: NDArray[np.float64], dp_share: NDArray[np.float64] | None
) -> str:
    """Bars of the synthetic shares per cell, with hollow bars for the DP estimate when given."""
    n = len(labels)
    fig = _new_figure(max(4.5, min(9.0, 2.5 + 0.22 * n)), 2.9)
    ax = fig.subplots()
    x = np.arange(n)
    ax.bar(x, synth_share, width=0.8, color="#4c78a8", alpha=0.75, label="synthetic")
    if dp_share is not None:
        ax.bar(x, dp_share, width=0.8, fill=False, edgecolor="#d62728", linewidth=1.3, label=DP_LABEL)
    step = max(1, math.ceil(n / 24))
    ticks = x[::step]
    ax.set_xticks(ticks)
    ax.set_xticklabels([_short(labels[i]) for i in ticks], rotation=60, ha="right", fontsize=6.5)
    ax.tick_params(axis="y", labelsize=7)
    ax.set_ylabel("share of non-NULL rows", fontsize=7.5)
    ax.set_title(title, fontsize=9, loc="left", pad=16)
    ax.legend(
        fontsize=7, frameon=False, loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=2, borderaxespad=0.1
    )
    ax.margins(x=0.01)
    fig.tight_layout()
    return _png(fig, f"distribution of {title}")


def _value_label(v: float, kind: ColumnKind, unit: str | None, *, with_time: bool = False) -> str:
    """A bin edge as text (datetimes as dates; with the time of day when ``with_time``)."""
    if kind == ColumnKind.DATETIME:
        secs = v * _SECONDS_PER.get(unit or "second", 1.0)
        try:
            ts = pd.Timestamp(secs, unit="s")
        except (OverflowError, ValueError):
            return f"{v:.4g}"
        return ts.strftime("%Y-%m-%d" if unit == "day" or not with_time else "%Y-%m-%d %H:%M")
    if float(v).is_integer() and abs(v) < 1e12:
        return f"{int(v)}"
    return f"{v:.4g}"


def _model_units(series: pd.Series, kind: ColumnKind, unit: str | None) -> NDArray[np.float64]:
    """Non-NULL synthetic values in the transformer's model units (datetimes: days/seconds since epoch)."""
    x = _as_float(series, kind)
    x = x[~np.isnan(x)]
    if kind == ColumnKind.DATETIME:
        x = x / _SECONDS_PER.get(unit or "second", 1.0)
    return x


def _merge_dp_bins(
    left: NDArray[np.float64], right: NDArray[np.float64], mass: NDArray[np.float64]
) -> list[list[int]]:
    """Group consecutive DP bins into display cells of about ``1/DISPLAY_CELLS`` DP mass each.

    Point masses (atoms) holding at least that much stay alone. Only DP outputs are used.
    """
    thr = 1.0 / DISPLAY_CELLS
    cells: list[list[int]] = []
    cur: list[int] = []
    cur_mass = 0.0
    for i in range(left.size):
        if left[i] == right[i] and mass[i] >= thr:
            if cur:
                cells.append(cur)
                cur, cur_mass = [], 0.0
            cells.append([i])
            continue
        cur.append(i)
        cur_mass += float(mass[i])
        if cur_mass >= thr:
            cells.append(cur)
            cur, cur_mass = [], 0.0
    if cur:
        cells.append(cur)
    return cells


def _continuous_with_dp(name: str, series: pd.Series, kind: ColumnKind, state: Mapping[str, Any]) -> str:
    from synth_core.mechanisms import QuantileBins, assign_bins

    bins = QuantileBins.from_dict(state["bins"])
    unit = state.get("datetime_unit")
    mass = np.clip(bins.mass, 0.0, None)
    mass = mass / mass.sum() if mass.sum() > 0 else np.full(mass.size, 1.0 / mass.size)
    cells = _merge_dp_bins(bins.left, bins.right, mass)
    cell_of_bin = np.empty(bins.left.size, dtype=np.int64)
    for c, members in enumerate(cells):
        cell_of_bin[members] = c
    dp_share = np.array([mass[m].sum() for m in cells], dtype=np.float64)
    x = _model_units(series, kind, unit)
    synth_share = np.zeros(len(cells), dtype=np.float64)
    if x.size:
        clipped = np.clip(x, bins.low, bins.high)
        idx = assign_bins(clipped, bins.left, bins.right)
        synth_share = np.bincount(cell_of_bin[idx], minlength=len(cells)).astype(np.float64) / x.size
    labels = []
    for members in cells:
        lo, hi = float(bins.left[members[0]]), float(bins.right[members[-1]])
        short = (hi - lo) * _SECONDS_PER.get(unit or "second", 1.0) < 2 * 86400.0
        lo_s, hi_s = (
            _value_label(lo, kind, unit, with_time=short),
            _value_label(hi, kind, unit, with_time=short),
        )
        labels.append(lo_s if lo_s == hi_s else f"{lo_s}–{hi_s}")
    return _bar_plot(name, labels, synth_share, dp_share)


def _continuous_synthetic_only(name: str, series: pd.Series, kind: ColumnKind) -> str:
    unit = "second"
    x = _model_units(series, kind, unit)
    if x.size == 0:
        return ""
    edges = np.unique(np.quantile(x, np.linspace(0, 1, DISPLAY_CELLS + 1)))
    if edges.size < 2:
        labels = [_value_label(float(edges[0]), kind, unit)]
        return _bar_plot(name, labels, np.ones(1), None)
    idx = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, edges.size - 2)
    share = np.bincount(idx, minlength=edges.size - 1).astype(np.float64) / x.size
    labels = [
        f"{_value_label(float(a), kind, unit)}–{_value_label(float(b), kind, unit)}"
        for a, b in itertools.pairwise(edges)
    ]
    return _bar_plot(name, labels, share, None)


def _categorical_plot(name: str, series: pd.Series, state: Mapping[str, Any] | None, use_dp: bool) -> str:
    values, missing = _as_keys(series)
    present = [str(v) for v in values[~missing]]
    counts = pd.Series(present, dtype=object).value_counts()
    n = max(len(present), 1)
    synth: dict[str, float] = {str(k): float(v) / n for k, v in counts.items()}
    dp: dict[str, float] | None = None
    order: list[str]
    if use_dp and state is not None:
        cats = [str(c) for c in state["categories"]]
        w = np.clip(np.asarray(state["category_weights"], dtype=np.float64), 0.0, None)
        total = float(w.sum())
        dp_map = {c: (float(wi) / total if total > 0 else 0.0) for c, wi in zip(cats, w, strict=True)}
        order = sorted(dp_map, key=lambda c: (-dp_map[c], c))
        order += sorted((c for c in synth if c not in dp_map), key=lambda c: -synth[c])
        dp = dp_map
    else:
        domain = [str(c) for c in (state or {}).get("categories") or []]
        order = sorted(set(domain) | set(synth), key=lambda c: (-synth.get(c, 0.0), c))
    shown, rest = order[:MAX_CATEGORY_BARS], order[MAX_CATEGORY_BARS:]
    labels = list(shown)
    s_share = [synth.get(c, 0.0) for c in shown]
    d_share = [dp.get(c, 0.0) for c in shown] if dp is not None else []
    if rest:
        labels.append(f"(all others: {len(rest)})")
        s_share.append(sum(synth.get(c, 0.0) for c in rest))
        if dp is not None:
            d_share.append(sum(dp.get(c, 0.0) for c in rest))
    img = _bar_plot(
        name,
        labels,
        np.asarray(s_share, dtype=np.float64),
        np.asarray(d_share, dtype=np.float64) if dp is not None else None,
    )
    top = shown[:MAX_CATEGORY_ROWS]
    rows = [[c, synth.get(c, 0.0), dp.get(c, 0.0) if dp is not None else None] for c in top]
    note = (
        f"<p class=note>{len(order) - len(top)} more categories in the plot only.</p>"
        if len(order) > len(top)
        else ""
    )
    return img + _grid_table(["category", "synthetic share", "DP estimate share"], rows) + note


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def _heatmap(
    names: list[str],
    mat: NDArray[np.float64],
    *,
    title: str,
    alt: str,
    vmin: float = -1.0,
    vmax: float = 1.0,
    cmap: str = "coolwarm",
) -> str:
    k = len(names)
    side = max(4.0, min(11.0, 1.8 + 0.26 * k))
    fig = _new_figure(side + 1.0, side)
    ax = fig.subplots()
    im = ax.imshow(mat, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_xticks(np.arange(k))
    ax.set_yticks(np.arange(k))
    fs = 7 if k <= 20 else 5.5
    ax.set_xticklabels([_short(n, 18) for n in names], rotation=70, ha="right", fontsize=fs)
    ax.set_yticklabels([_short(n, 18) for n in names], fontsize=fs)
    if k <= 16:
        for i in range(k):
            for j in range(k):
                ax.text(j, i, f"{mat[i, j]:.2f}", ha="center", va="center", fontsize=5.5, color="#111")
    cbar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
    cbar.ax.tick_params(labelsize=7)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return _png(fig, alt)


def _dcr_plot(d_train: NDArray[np.float64], d_holdout: NDArray[np.float64], share: float) -> str:
    """Two panels: the DCR distributions to training and holdout rows, and their per-row difference."""
    fig = _new_figure(10.0, 3.3)
    left, right = fig.subplots(1, 2)
    edges = np.histogram_bin_edges(np.concatenate([d_train, d_holdout]), bins=40).tolist()
    left.hist(
        d_train, bins=edges, histtype="step", linewidth=1.5, color="#d62728", label="to nearest training row"
    )
    left.hist(
        d_holdout, bins=edges, histtype="step", linewidth=1.5, color="#4c78a8", label="to nearest holdout row"
    )
    left.axvline(float(np.median(d_train)), color="#d62728", linestyle=":", linewidth=1)
    left.axvline(float(np.median(d_holdout)), color="#4c78a8", linestyle=":", linewidth=1)
    left.set_xlabel("distance of a synthetic row to its closest real record (encoded units)", fontsize=7.5)
    left.set_ylabel("synthetic rows", fontsize=7.5)
    left.set_title("distance to closest record (dotted: medians)", fontsize=9, loc="left")
    left.legend(fontsize=7, frameon=False)
    diff = d_train - d_holdout
    lim = float(np.max(np.abs(diff))) if diff.size else 1.0
    right.hist(diff, bins=np.linspace(-lim, lim, 41).tolist() if lim > 0 else 41, color="#7f7f7f", alpha=0.8)
    right.axvline(0.0, color="#111", linewidth=1)
    right.set_xlabel("d(training) − d(holdout): left of 0 = closer to a training row", fontsize=7.5)
    right.set_title(f"share closer to training: {share:.3f} (0.5 = no memorisation)", fontsize=9, loc="left")
    for ax in (left, right):
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    return _png(fig, "DCR distribution: distances of synthetic rows to the nearest training vs holdout row")


def _nndr_plot(ratio: NDArray[np.float64]) -> str:
    fig = _new_figure(6.0, 3.0)
    ax = fig.subplots()
    ax.hist(ratio, bins=np.linspace(0.0, 1.0, 41).tolist(), color="#4c78a8", alpha=0.85)
    p05 = float(np.quantile(ratio, 0.05)) if ratio.size else 0.0
    ax.axvline(p05, color="#d62728", linestyle=":", linewidth=1.2, label=f"5th percentile {p05:.3f}")
    ax.set_xlabel(
        "nearest / second-nearest training-row distance (near 0 = singles out one record)", fontsize=7.5
    )
    ax.set_ylabel("synthetic rows", fontsize=7.5)
    ax.set_title("nearest-neighbour distance ratio (NNDR)", fontsize=9, loc="left")
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return _png(fig, "NNDR distribution of synthetic rows against the training rows")


# ------------------------------------------------------------------------------------------------
# evidence computed from real rows (internal report only)


# ------------------------------------------------------------------------------------------------
# sections


def _banner(internal: bool, include_real_evaluation: bool) -> str:
    if internal:
        return (
            f"<div class='banner internal'><strong>{_e(INTERNAL_BANNER)}.</strong> Besides the DP outputs "
            "of the shareable version, this report shows aggregates computed from the real training and "
            "holdout rows without differential privacy (association of real columns, utility, distances "
            "to real records). Never publish it: share the shareable version instead.</div>"
        )
    if include_real_evaluation:
        return (
            "<div class='banner exception'><strong>Shareable with an exception: every real-data figure is "
            "differentially private except the aggregates under “Quality metrics on real rows” and "
            "“Privacy thresholds”</strong>, which were computed from real records without DP and "
            "included on request (<code>include_real_evaluation=True</code>).</div>"
        )
    return (
        f"<div class=banner><strong>{_e(SHAREABLE_BANNER)}.</strong> The real-data figures are DP outputs "
        "released (and paid for in the release's ε) when the model was fit; everything else is "
        "computed from the synthetic table. No statistic computed from real rows is included: "
        "utility and privacy evidence measured on real records are in the internal report, which "
        "stays in the sensitive zone.</div>"
    )


def _generator_section(release: Mapping[str, Any]) -> str:
    out = ["<h2>Generator</h2>", _kv_table([("generator", release.get("generator"))])]
    params = release.get("generator_params")
    if isinstance(params, Mapping) and params:
        out.append("<h3>Parameters</h3>")
        out.append(_kv_table([(str(k), v) for k, v in params.items()]))
    elif params:
        out.append(_kv_table([("parameters", params)]))
    else:
        out.append("<p class=note>No generator parameters were recorded.</p>")
    return "\n".join(out)


def _budget_block(budget: Mapping[str, Any] | None) -> str:
    out = ["<h3>Lifetime budget of the table (ledger)</h3>"]
    if budget is None:
        out.append("<p class=note>No ledger status was passed to the report.</p>")
        return "\n".join(out)
    out.append(
        "<p class=note>Every refresh of the same source table spends budget on the same people; the "
        "ledger adds the spends up (open reservations included) against the table's lifetime grant.</p>"
    )
    known = {
        "source_table": "table",
        "lifetime_epsilon": "lifetime ε",
        "lifetime_delta": "lifetime δ",
        "spent_epsilon": "ε spent by all releases so far",
        "spent_delta": "δ spent by all releases so far",
        "remaining_epsilon": "ε left",
        "remaining_delta": "δ left",
    }
    rows: list[tuple[str, Any]] = [(label, budget.get(key)) for key, label in known.items() if key in budget]
    rows += [(str(k), v) for k, v in budget.items() if k not in known]
    out.append(_kv_table(rows))
    lifetime: Any = budget.get("lifetime_epsilon")
    spent: Any = budget.get("spent_epsilon")
    if _is_number(lifetime) and _is_number(spent) and float(lifetime) > 0:
        pct = max(0.0, min(100.0, 100.0 * float(spent) / float(lifetime)))
        out.append(
            f"<div class=meter title='{pct:.1f}% of the lifetime ε spent'><span style='width:{pct:.1f}%'>"
            f"</span></div><p class=note>{pct:.1f}% of the lifetime ε spent.</p>"
        )
    return "\n".join(out)


def _privacy_section(privacy: Mapping[str, Any], budget: Mapping[str, Any] | None) -> str:
    rows: list[tuple[str, Any]] = [
        ("ε spent by this release", privacy.get("epsilon")),
        ("δ of this release", privacy.get("delta")),
        ("target ε", privacy.get("target_epsilon")),
        ("target δ", privacy.get("target_delta")),
    ]
    rows += [
        (k, v)
        for k, v in privacy.items()
        if k not in {"epsilon", "delta", "target_epsilon", "target_delta", "mechanisms"}
    ]
    out = [
        "<h2>Privacy accounting</h2>",
        "<p class=note>Every mechanism that read the real table is listed; their costs are composed "
        "into the single (ε, δ) above. Re-sampling from the saved model spends nothing more; "
        "repeated refreshes of the same table add up in the budget ledger.</p>",
        _kv_table(rows),
    ]
    mechs = [m for m in privacy.get("mechanisms") or [] if isinstance(m, Mapping)]
    if mechs:
        keys: list[str] = ["name"]
        for m in mechs:
            keys += [k for k in m if k not in keys]
        out.append("<h3>Mechanisms</h3>")
        out.append(_grid_table(keys, [[m.get(k) for k in keys] for m in mechs]))
    out.append(_budget_block(budget))
    return "\n".join(out)


def _metrics_section(metrics: Mapping[str, Any], internal: bool) -> str:
    note = (
        "Aggregates computed when the release was evaluated against the real training and holdout "
        "rows. They are not differentially private."
        if internal
        else "Included on request (include_real_evaluation=True): aggregates computed from the real "
        "training and holdout rows, not differentially private."
    )
    rows = [[k, v, METRIC_MEANINGS.get(k, "")] for k, v in metrics.items()]
    return "\n".join(
        [
            "<h2>Quality metrics on real rows</h2>",
            f"<p class=note>{_e(note)}</p>",
            _grid_table(["metric", "value", "meaning"], rows),
        ]
    )


#: The last columns section rendered in this process: ``(key, spec, html)``. The validate step
#: renders the shareable and then the internal report of one release; both hold the same column
#: plots (synthetic rows and DP outputs only), drawn once.
_LAST_COLUMNS_SECTION: list[tuple[tuple[Any, ...], TableSpec, str]] = []


def _columns_section_once(
    spec: TableSpec, synthetic: pd.DataFrame, transformer_state: Mapping[str, Any] | None
) -> str:
    """:func:`_columns_section`, reused for the same spec, synthetic rows and transformer state."""
    key = (_frame_digest(synthetic), json.dumps(transformer_state, sort_keys=True, default=str))
    if _LAST_COLUMNS_SECTION and _LAST_COLUMNS_SECTION[0][0] == key and _LAST_COLUMNS_SECTION[0][1] == spec:
        return _LAST_COLUMNS_SECTION[0][2]
    section = _columns_section(spec, synthetic, transformer_state)
    _LAST_COLUMNS_SECTION[:] = [(key, spec, section)]
    return section


def _columns_section(
    spec: TableSpec, synthetic: pd.DataFrame, transformer_state: Mapping[str, Any] | None
) -> str:
    states: dict[str, Mapping[str, Any]] = {}
    if transformer_state:
        for c in transformer_state.get("columns") or []:
            states[str(c["name"])] = c
    names = metric_columns(spec, synthetic)
    out = [
        "<h2>Columns</h2>",
        f"<p class=note>Filled bars: the synthetic table. Hollow red bars: the {_e(DP_LABEL)}, the "
        "marginal released under DP when the model was fit; no real row is read to draw them. "
        "Shares are of non-NULL rows.</p>",
    ]
    for name in names[:MAX_PLOTTED_COLUMNS]:
        kind = spec.column(name).kind
        series = synthetic[name]
        state = states.get(name)
        if kind in _CONTINUOUS:
            if state is not None and state.get("bins"):
                source = "DP quantile histogram (transformer state)"
                img = _continuous_with_dp(name, series, kind, state)
            else:
                source = "none in the model state: synthetic only"
                img = _continuous_synthetic_only(name, series, kind)
        else:
            use_dp = bool(state is not None and state.get("category_weights") and state.get("categories"))
            if use_dp:
                source = "DP noisy category counts (transformer state)"
            elif kind == ColumnKind.BOOLEAN:
                source = "public domain (boolean): no DP estimate exists; synthetic only"
            elif state is not None or spec.column(name).categories is not None:
                source = "public category domain: no DP estimate exists; synthetic only"
            else:
                source = "none in the model state: synthetic only"
            img = _categorical_plot(name, series, state, use_dp)
        null_share = float(series.isna().mean()) if len(series) else 0.0
        distinct = int(series.nunique(dropna=True))
        facts: list[tuple[str, Any]] = [
            ("kind", kind.value),
            ("synthetic NULL share", null_share),
        ]
        if state is not None and state.get("nullable"):
            facts.append(("DP estimate of the real NULL share", float(state.get("null_fraction") or 0.0)))
        facts += [("synthetic distinct values", distinct), ("DP estimate of real", source)]
        out.append(f"<div class=column><h3>{_e(name)}</h3>")
        out.append(_kv_table(facts))
        out.append(img or "<p class=note>No non-NULL synthetic values to plot.</p>")
        out.append("</div>")
    if len(names) > MAX_PLOTTED_COLUMNS:
        rest = names[MAX_PLOTTED_COLUMNS:]
        out.append(
            f"<p class=note>{len(rest)} more modelled columns are not plotted: {_e(', '.join(rest))}.</p>"
        )
    return "\n".join(out)


_ASSOC_NOTE = (
    "Pearson correlation for numeric pairs (−1..1), Cramér's V for categorical pairs (0..1), "
    "correlation ratio η for mixed pairs (0..1)."
)


def _associations_section(spec: TableSpec, synthetic: pd.DataFrame, internal: InternalEvidence | None) -> str:
    names = metric_columns(spec, synthetic)[:MAX_PLOTTED_COLUMNS]
    if internal is not None:
        names = [n for n in names if n in internal.real_train.columns]
    scope = "Synthetic table and real training rows." if internal is not None else "Synthetic table only."
    out = ["<h2>Associations</h2>", f"<p class=note>{scope} {_ASSOC_NOTE}</p>"]
    if len(names) < 2 or len(synthetic) == 0:
        out.append("<p class=note>Fewer than two modelled columns: no pairs to show.</p>")
        return "\n".join(out)
    cols, synth_mat = association_matrix(synthetic[names], spec)
    synth_img = _heatmap(
        cols,
        synth_mat,
        title="association in the synthetic table",
        alt="pairwise association heatmap of the synthetic table",
    )
    if internal is None:
        out.append(synth_img)
        return "\n".join(out)
    real_cols, real_mat = association_matrix(internal.real_train[names], spec)
    assert real_cols == cols
    real_img = _heatmap(
        cols,
        real_mat,
        title="association in the real training rows",
        alt="pairwise association heatmap of the real training rows",
    )
    diff = synth_mat - real_mat
    lim = max(0.1, float(np.ceil(np.max(np.abs(diff)) * 10.0) / 10.0)) if diff.size else 0.1
    diff_img = _heatmap(
        cols,
        diff,
        title=f"difference: synthetic − real (colour scale ±{lim:.1f})",
        alt="difference of the association heatmaps: synthetic minus real",
        vmin=-lim,
        vmax=lim,
        cmap="PuOr_r",
    )
    out.append(
        "<div class=pair>"
        f"<figure>{real_img}<figcaption>Real (training rows)</figcaption></figure>"
        f"<figure>{synth_img}<figcaption>Synthetic</figcaption></figure>"
        "</div>"
    )
    out.append("<h3>Difference (synthetic − real)</h3>")
    out.append(diff_img)
    pairs = sorted(
        itertools.combinations(range(len(cols)), 2), key=lambda ij: -abs(float(diff[ij[0], ij[1]]))
    )[:MAX_DIFF_PAIRS]
    rows = [
        [f"{cols[i]} × {cols[j]}", float(real_mat[i, j]), float(synth_mat[i, j]), float(diff[i, j])]
        for i, j in pairs
    ]
    out.append(f"<p class=note>The {len(rows)} column pairs whose association differs most.</p>")
    out.append(_grid_table(["pair", "real", "synthetic", "synthetic − real"], rows))
    return "\n".join(out)


def _verdict(result: Mapping[str, Any]) -> str:
    if result.get("evaluated") is False:
        return "not evaluated"
    return "passed" if result.get("success") else "FAILED"


def _rule_expressions(spec: TableSpec) -> dict[str, str]:
    return {r.name: r.expr for r in spec.rules}


_SUMMARY_EXPR = re.compile(r"^rule '(?P<name>[^']*)' \((?P<expr>.*)\) (?:passed|failed|was not evaluated)")


def _validation_section(
    spec: TableSpec, synthetic: pd.DataFrame, validation: Mapping[str, Any] | None, *, show_real: bool
) -> str:
    out = ["<h2>Validation</h2>"]
    exprs = _rule_expressions(spec)
    if validation is None:
        out.append(
            "<p class=note>No validation outcome was passed to the report: the spec's semantic rules are "
            "evaluated on the synthetic table here (NULL operands count as satisfied).</p>"
        )
        if not spec.rules:
            out.append("<p class=note>The spec declares no semantic rules.</p>")
            return "\n".join(out)
        n = max(len(synthetic), 1)
        rule_rows: list[list[Any]] = []
        for rule in spec.rules:
            try:
                bad = rule.violations(synthetic)
            except Exception as exc:  # a column missing from the frame or of the wrong type (no value shown)
                rule_rows.append(
                    [rule.name, rule.expr, rule.severity, f"not evaluated ({type(exc).__name__})", None, None]
                )
                continue
            rule_rows.append(
                [
                    rule.name,
                    rule.expr,
                    rule.severity,
                    "passed" if bad == 0 else "FAILED",
                    bad,
                    100.0 * bad / n,
                ]
            )
        out.append("<h3>Semantic rules (synthetic table)</h3>")
        out.append(
            _grid_table(
                ["rule", "expression", "severity", "result", "violating rows", "% of rows"], rule_rows
            )
        )
        return "\n".join(out)

    results = [r for r in validation.get("results") or [] if isinstance(r, Mapping)]

    def family(r: Mapping[str, Any]) -> str:
        return str(r.get("check") or r.get("family") or "other")

    shown = [r for r in results if show_real or family(r) not in _REAL_DATA_FAMILIES]
    withheld = len(results) - len(shown)
    failed_critical = [r for r in shown if not r.get("success") and r.get("severity") == "critical"]
    scope = "every check" if show_real else "the checks that read only the synthetic table"
    verdict = (
        "<span class=pass>all critical checks passed</span>"
        if not failed_critical
        else f"<span class=fail>{len(failed_critical)} critical check(s) failed</span>"
    )
    out.append(f"<p>Great Expectations validation of the synthetic table ({_e(scope)}): {verdict}.</p>")
    if withheld:
        out.append(
            f"<p class=note>{withheld} privacy-threshold check(s) compare metrics computed from real "
            "rows; their results are in the internal report only.</p>"
        )

    rules = [r for r in shown if family(r) == "rule"]
    out.append("<h3>Semantic rules (synthetic table)</h3>")
    if rules:
        rows: list[list[Any]] = []
        for r in rules:
            name = str(r.get("rule") or "")
            expr = exprs.get(name)
            if expr is None:
                m = _SUMMARY_EXPR.match(str(r.get("summary") or ""))
                expr = m.group("expr") if m else None
            rows.append(
                [
                    name,
                    expr,
                    r.get("severity"),
                    _verdict(r),
                    r.get("unexpected_count"),
                    r.get("unexpected_percent"),
                ]
            )
        out.append(
            _grid_table(["rule", "expression", "severity", "result", "violating rows", "% of rows"], rows)
        )
    else:
        out.append("<p class=note>The validation outcome holds no rule results.</p>")

    by_family: dict[str, list[Mapping[str, Any]]] = {}
    for r in shown:
        by_family.setdefault(family(r), []).append(r)
    out.append("<h3>Checks by family</h3>")
    fam_rows = [
        [
            fam,
            len(rs),
            sum(1 for r in rs if r.get("success")),
            sum(1 for r in rs if not r.get("success") and r.get("severity") == "critical"),
            sum(1 for r in rs if not r.get("success") and r.get("severity") != "critical"),
            sum(1 for r in rs if r.get("evaluated") is False),
        ]
        for fam, rs in by_family.items()
    ]
    out.append(
        _grid_table(
            ["family", "checks", "passed", "failed (critical)", "failed (warning)", "not evaluated"], fam_rows
        )
    )
    failures = [r for r in shown if not r.get("success") and family(r) not in {"rule", "privacy"}]
    if failures:
        out.append("<h3>Failed or not evaluated checks</h3>")
        items = "".join(
            f"<li><span class=fail>{_e(r.get('severity'))}</span> {_e(r.get('summary'))}</li>"
            for r in failures[:MAX_LISTED_FAILURES]
        )
        out.append(f"<ul>{items}</ul>")
        if len(failures) > MAX_LISTED_FAILURES:
            out.append(f"<p class=note>{len(failures) - MAX_LISTED_FAILURES} more not listed.</p>")

    if show_real:
        privacy = [r for r in shown if family(r) == "privacy"]
        if privacy:
            out.append("<h3>Privacy thresholds</h3>")
            out.append("<p class=note>Release metrics computed from real rows, against their thresholds.</p>")
            out.append(
                _grid_table(
                    ["metric", "observed", "threshold", "severity", "result"],
                    [
                        [
                            r.get("metric"),
                            r.get("observed"),
                            r.get("threshold"),
                            r.get("severity"),
                            _verdict(r),
                        ]
                        for r in privacy
                    ],
                )
            )
    return "\n".join(out)


def _check_diagnostics(diagnostics: Mapping[str, bytes] | None) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for name, png in (diagnostics or {}).items():
        if not isinstance(png, bytes | bytearray | memoryview) or not bytes(png).startswith(_PNG_SIGNATURE):
            raise ValueError(f"diagnostics figure {name!r} is not PNG bytes")
        out[str(name)] = bytes(png)
    return out


def _diagnostics_section(diagnostics: Mapping[str, bytes]) -> str:
    out = [
        "<h2>Generator diagnostics</h2>",
        "<p class=note>Figures supplied by the generator. Generators build them from DP outputs "
        "(charged to the release's ε) and synthetic samples only, never from real rows.</p>",
    ]
    for name, png in diagnostics.items():
        out.append(f"<figure>{_img(png, name)}<figcaption>{_e(name)}</figcaption></figure>")
    return "\n".join(out)


def _release_evidence(
    spec: TableSpec, synthetic: pd.DataFrame, evidence: InternalEvidence
) -> ReleaseEvidence:
    """The utility and distance evidence: reused from :func:`synth_core.metrics.evaluate_release`
    when it just evaluated the same rows in this process, else computed once for both sections."""
    return release_evidence(
        evidence.real_train,
        evidence.real_holdout,
        synthetic,
        spec,
        seed=evidence.seed,
        max_distance_rows=evidence.max_distance_rows,
        max_train_rows=evidence.max_train_rows,
    )


def _utility_section(spec: TableSpec, synthetic: pd.DataFrame, evidence: InternalEvidence) -> str:
    out = [
        "<h2>Utility</h2>",
        "<p class=note>A gradient-boosting classifier of the spec's target, trained on the synthetic "
        "table (train-synthetic-test-real) and on the real training rows (train-real-test-real, the "
        "ceiling), both scored on the real holdout rows.</p>",
    ]
    res = _release_evidence(spec, synthetic, evidence).utility
    if res is None:
        out.append("<p class=note>The spec names no target column: no utility to measure.</p>")
        return "\n".join(out)

    def gap(a: Any, b: Any) -> float | None:
        return float(a) - float(b) if a is not None and b is not None else None

    rows = [
        ["ROC AUC", res["auc_synthetic"], res["auc_real"], gap(res["auc_synthetic"], res["auc_real"])],
        ["F1", res["f1_synthetic"], res["f1_real"], gap(res["f1_synthetic"], res["f1_real"])],
    ]
    out.append(
        _grid_table(
            ["score", "train synthetic → test real", "train real → test real", "synthetic − real"], rows
        )
    )
    out.append(
        _kv_table(
            [
                ("target", res["target"]),
                ("synthetic training rows", res["n_train_synthetic"]),
                ("real holdout rows scored", res["n_test"]),
            ]
        )
    )
    out.append("<p class=note>F1 is of the rarer holdout class for a binary target, else macro F1.</p>")
    return "\n".join(out)


def _privacy_evidence_section(spec: TableSpec, synthetic: pd.DataFrame, evidence: InternalEvidence) -> str:
    distances = _release_evidence(spec, synthetic, evidence).distances
    d_train, d_holdout, m, ratio = (
        distances.d_train,
        distances.d_holdout,
        distances.n_reference,
        distances.nndr_ratio,
    )
    share = float(distances.dcr()["share"])
    attack = distances.membership()
    out = [
        "<h2>Privacy evidence</h2>",
        "<p class=note>Distances between synthetic rows and real records (columns encoded as ranks / "
        "scaled one-hot, fit on the training rows). A generator that does not memorise puts synthetic "
        "rows as close to unseen holdout rows as to its training rows.</p>",
        _kv_table(
            [
                ("DCR share (closer to a training row; 0.5 ideal)", share),
                ("median distance to the closest training row", float(np.median(d_train))),
                ("median distance to the closest holdout row", float(np.median(d_holdout))),
                ("reference rows per side", m),
                ("synthetic rows scored", int(d_train.size)),
                ("NNDR mean (near 0 flags copies)", float(np.mean(ratio))),
                ("NNDR 5th percentile", float(np.quantile(ratio, 0.05))),
                ("membership-inference attack AUC (0.5 ideal)", attack["auc"]),
                ("attack candidates (members + non-members)", 2 * int(attack["n_members"])),
            ]
        ),
        "<h3>Distance to closest record</h3>",
        _dcr_plot(d_train, d_holdout, share),
        "<h3>Nearest-neighbour distance ratio</h3>",
        _nndr_plot(ratio),
    ]
    return "\n".join(out)


def render_release_report(
    *,
    spec: TableSpec,
    synthetic: pd.DataFrame,
    transformer_state: Mapping[str, Any] | None,
    privacy: Mapping[str, Any],
    release: Mapping[str, Any],
    metrics: Mapping[str, Any] | None = None,
    validation: Mapping[str, Any] | None = None,
    budget: Mapping[str, Any] | None = None,
    diagnostics: Mapping[str, bytes] | None = None,
    internal: InternalEvidence | None = None,
    include_real_evaluation: bool = False,
) -> str:
    """Render the release report as one self-contained HTML document.

    Without ``internal`` the report is the **shareable** version: its only real-data figures are
    DP outputs. With ``internal`` it is the **internal** version (see the module docstring).

    Args:
        spec: the table spec (column kinds; public metadata; semantic rules).
        synthetic: the synthetic table.
        transformer_state: ``TableTransformer.to_dict()`` of the fitted model, or ``None``; its
            DP histograms and noisy category counts are overlaid on the synthetic histograms.
        privacy: the accountant summary (``epsilon``, ``delta``, ``target_epsilon``,
            ``target_delta``, ``mechanisms`` list).
        release: release facts (table, generator, generator_params, run_id, rows, created_at, URIs).
        metrics: aggregate metrics computed from real rows (e.g.
            :func:`synth_core.metrics.evaluate_release`). Shown in the internal version; left out
            of the shareable one unless ``include_real_evaluation``.
        validation: ``ValidationOutcome.to_dict()``. Rule results and the other checks of the
            synthetic table are shown in both versions, privacy-threshold results (metrics of real
            rows) only in the internal one or with ``include_real_evaluation``. Without it, the
            spec's rules are evaluated on ``synthetic`` here.
        budget: the ledger's ``BudgetStatus.to_dict()`` for the table (lifetime, spent, remaining).
        diagnostics: ``{caption: PNG bytes}`` figures from the generator (e.g. DP-MAF's DP
            histograms of its base-space residuals); a value that is not a PNG raises ``ValueError``.
        internal: the real training and holdout rows: renders the internal version.
        include_real_evaluation: put ``metrics`` and the privacy-threshold results into the
            shareable version anyway (its banner then names the exception).

    Returns:
        HTML text: inline CSS, plots as base64 PNG data URIs, no script, no external reference.
        Images: one per modelled column (capped at :data:`MAX_PLOTTED_COLUMNS`), one synthetic
        association heatmap and one per diagnostics figure; the internal version adds the real
        and the difference heatmaps, the DCR plot and the NNDR plot.
    """
    figures = _check_diagnostics(diagnostics)
    is_internal = internal is not None
    show_real = is_internal or include_real_evaluation
    table = release.get("table") or spec.name
    title = f"{'INTERNAL — ' if is_internal else ''}dpsynth release report — {table}"
    summary_rows: list[tuple[str, Any]] = [(k, v) for k, v in release.items() if k != "generator_params"]
    if "table" not in release:
        summary_rows.insert(0, ("table", spec.name))
    summary_rows += [
        ("ε spent", privacy.get("epsilon")),
        ("δ", privacy.get("delta")),
    ]
    if budget is not None and "remaining_epsilon" in budget:
        summary_rows.append(("table's lifetime ε left", budget.get("remaining_epsilon")))
    summary_rows.append(("synthetic rows in this report", len(synthetic)))
    if internal is not None:
        summary_rows += [
            ("real training rows (internal)", len(internal.real_train)),
            ("real holdout rows (internal)", len(internal.real_holdout)),
        ]
    version = "internal" if is_internal else "shareable"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta http-equiv="Content-Security-Policy" '
        "content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline'\">",
        f'<meta name="dpsynth-report-version" content="{version}">',
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body><main>",
        f"<h1>{_e(title)}</h1>",
        _banner(is_internal, include_real_evaluation),
        "<h2>Summary</h2>",
        _kv_table(summary_rows),
        _generator_section(release),
        _privacy_section(privacy, budget),
        _columns_section_once(spec, synthetic, transformer_state),
        _associations_section(spec, synthetic, internal),
        _validation_section(spec, synthetic, validation, show_real=show_real),
    ]
    if figures:
        parts.append(_diagnostics_section(figures))
    if internal is not None:
        parts.append(_utility_section(spec, synthetic, internal))
        parts.append(_privacy_evidence_section(spec, synthetic, internal))
    if show_real and metrics:
        parts.append(_metrics_section(metrics, is_internal))
    parts.append("</main></body></html>")
    return "\n".join(parts)


__all__ = [
    "DP_LABEL",
    "INTERNAL_BANNER",
    "METRIC_MEANINGS",
    "SHAREABLE_BANNER",
    "InternalEvidence",
    "render_release_report",
]
