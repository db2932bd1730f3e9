"""A self-contained HTML report for one synthetic release.

The report is what downstream teams read next to the synthetic table, so it follows the product's
privacy rule strictly. It is built from exactly three kinds of input:

* the **synthetic table** (histograms, NULL shares, the pairwise association heatmap);
* **aggregate metrics** computed elsewhere (:func:`synth_core.metrics.evaluate_release`);
* the **DP outputs** stored in the fitted transformer's state: the DP quantile histograms of
  numeric/datetime columns and the DP noisy category counts. They were paid for in ε when the
  transformer was fit, so showing them costs nothing more (post-processing).

:func:`render_release_report` never receives real rows, so nothing in the report can be computed
from them. The HTML has inline CSS and plots embedded as base64 PNG ``<img>`` data URIs: it makes
no network request when opened.
"""

from __future__ import annotations

import base64
import html
import io
import itertools
import json
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from synth_core.metrics import _as_float, _as_keys, association_matrix, metric_columns
from synth_core.spec import ColumnKind, TableSpec

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: Columns plotted at most (and shown in the heatmap); the rest are listed without a plot.
MAX_PLOTTED_COLUMNS = 40
#: Display cells a DP quantile histogram is merged into (point masses ≥ 1/cells stay on their own).
DISPLAY_CELLS = 30
#: Bars of a categorical plot; the rest are pooled into "(all others)".
MAX_CATEGORY_BARS = 25
#: Rows of the per-column category table (synthetic share and DP estimate share).
MAX_CATEGORY_ROWS = 10
#: Resolution of the embedded PNGs.
DPI = 80

DP_LABEL = "DP estimate of real (already paid for in ε)"
_SECONDS_PER = {"day": 86400.0, "second": 1.0, "microsecond": 1.0}
_CONTINUOUS = (ColumnKind.NUMERIC, ColumnKind.INTEGER, ColumnKind.DATETIME)

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
    "rows_real_train": "Real rows the generator was trained on.",
    "rows_real_holdout": "Real rows kept out of training, used only for evaluation.",
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
.banner{background:#eef6ee;border-left:4px solid #3c8d3c;padding:8px 12px;margin:12px 0}
.column{border-top:1px solid #eef1f5;padding-top:6px}
img{max-width:100%;height:auto;display:block;margin:4px 0}
code{background:#eef1f5;padding:1px 4px;border-radius:3px}
"""


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


def _heatmap(names: list[str], mat: NDArray[np.float64]) -> str:
    k = len(names)
    side = max(4.0, min(11.0, 1.8 + 0.26 * k))
    fig = _new_figure(side + 1.0, side)
    ax = fig.subplots()
    im = ax.imshow(mat, cmap="coolwarm", vmin=-1.0, vmax=1.0, interpolation="nearest")
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
    ax.set_title("association in the synthetic table", fontsize=9)
    fig.tight_layout()
    return _png(fig, "pairwise association heatmap of the synthetic table")


# ------------------------------------------------------------------------------------------------
# sections


def _privacy_section(privacy: Mapping[str, Any]) -> str:
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
    return "\n".join(out)


def _metrics_section(metrics: Mapping[str, Any]) -> str:
    rows = [[k, v, METRIC_MEANINGS.get(k, "")] for k, v in metrics.items()]
    return "\n".join(
        [
            "<h2>Quality metrics</h2>",
            "<p class=note>Aggregates computed when the release was evaluated against real training "
            "and holdout rows; only the numbers are shown here.</p>",
            _grid_table(["metric", "value", "meaning"], rows),
        ]
    )


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
        "<p class=note>Bars: the synthetic table. Hollow red bars: the DP estimate of the real "
        "distribution released (and paid for in ε) when the model was fit; no real row is read to "
        "draw them. Shares are of non-NULL rows.</p>",
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
        out.append(f"<div class=column><h3>{_e(name)}</h3>")
        out.append(
            _kv_table(
                [
                    ("kind", kind.value),
                    ("synthetic NULL share", null_share),
                    ("synthetic distinct values", distinct),
                    ("DP estimate of real", source),
                ]
            )
        )
        out.append(img or "<p class=note>No non-NULL synthetic values to plot.</p>")
        out.append("</div>")
    if len(names) > MAX_PLOTTED_COLUMNS:
        rest = names[MAX_PLOTTED_COLUMNS:]
        out.append(
            f"<p class=note>{len(rest)} more modelled columns are not plotted: {_e(', '.join(rest))}.</p>"
        )
    return "\n".join(out)


def _associations_section(spec: TableSpec, synthetic: pd.DataFrame) -> str:
    out = [
        "<h2>Associations</h2>",
        "<p class=note>Synthetic table only. Pearson correlation for numeric pairs (−1..1), "
        "Cramér's V for categorical pairs (0..1), correlation ratio η for mixed pairs (0..1).</p>",
    ]
    names = metric_columns(spec, synthetic)[:MAX_PLOTTED_COLUMNS]
    if len(names) < 2 or len(synthetic) == 0:
        out.append("<p class=note>Fewer than two modelled columns: no pairs to show.</p>")
        return "\n".join(out)
    sub = synthetic[names]
    cols, mat = association_matrix(sub, spec)
    out.append(_heatmap(cols, mat))
    return "\n".join(out)


def render_release_report(
    *,
    spec: TableSpec,
    synthetic: pd.DataFrame,
    transformer_state: Mapping[str, Any] | None,
    privacy: Mapping[str, Any],
    metrics: Mapping[str, Any],
    release: Mapping[str, Any],
) -> str:
    """Render the release report as one self-contained HTML document.

    Args:
        spec: the table spec (column kinds; public metadata).
        synthetic: the synthetic table (the only rows the report sees).
        transformer_state: ``TableTransformer.to_dict()`` of the fitted model, or ``None``; its
            DP histograms and noisy category counts are overlaid on the synthetic histograms.
        privacy: the accountant summary (``epsilon``, ``delta``, ``target_epsilon``,
            ``target_delta``, ``mechanisms`` list).
        metrics: aggregate metrics (e.g. :func:`synth_core.metrics.evaluate_release`).
        release: release facts (table, generator, params, run_id, rows, created_at, URIs).

    Returns:
        HTML text: inline CSS, plots as base64 PNG data URIs (at most one per modelled column,
        capped at :data:`MAX_PLOTTED_COLUMNS`, plus one association heatmap), no external fetch.
    """
    title = f"dpsynth release report — {release.get('table') or spec.name}"
    summary_rows: list[tuple[str, Any]] = list(release.items())
    if "table" not in release:
        summary_rows.insert(0, ("table", spec.name))
    summary_rows += [
        ("ε spent", privacy.get("epsilon")),
        ("δ", privacy.get("delta")),
        ("synthetic rows in this report", len(synthetic)),
    ]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body><main>",
        f"<h1>{_e(title)}</h1>",
        "<div class=banner>This report shows only the synthetic table, aggregate quality metrics and "
        "differentially private outputs already paid for in the release's ε. No real row was read "
        "to produce it.</div>",
        "<h2>Summary</h2>",
        _kv_table(summary_rows),
        _privacy_section(privacy),
        _metrics_section(metrics),
        _columns_section(spec, synthetic, transformer_state),
        _associations_section(spec, synthetic),
        "</main></body></html>",
    ]
    return "\n".join(parts)


__all__ = ["DP_LABEL", "METRIC_MEANINGS", "render_release_report"]
