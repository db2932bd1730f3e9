"""The privacy-budget page of the Airflow UI: a FastAPI app the api-server mounts at ``/dpsynth``.

``GET /dpsynth/`` is one server-rendered HTML page (no JavaScript): per ledger key, the lifetime
budget, what was spent and what is left, and every ledger entry (grants, reservations, spends,
releases, resample-only refreshes); per published table, the live release (``_latest.json``:
generator, ε, δ, run, time) with its history and a link to its shareable report.
``GET /dpsynth/api/overview`` is the same as JSON. ``GET /dpsynth/report/{table}`` serves the live
release's shareable report through the api-server: read from a ``file://`` store (so the link works
from a browser that cannot open ``file://``), or redirected to an S3 URL presigned at the click
(valid 15 minutes). ``GET /dpsynth/report-file?uri=...`` does the same for one run's report (the
"Synthetic data report" extra link of the validate and publish tasks points there): only a
``report.html`` under the store's ``reports/`` or ``published/`` folders is served.

Every route requires an authenticated Airflow user (the UI's JWT cookie, or a bearer token). What
the page shows is public by construction: ledger amounts and run ids, the published manifests and
the shareable report (every real-data figure in it is a DP output). Ledger keys, table names and
run ids come from users: they are HTML-escaped, and a report is only ever looked up by the name of
a table that has a ``_latest.json``.

Where the ledger and the store live: the hook's defaults (``[dpsynth] ledger_uri``,
``object_store_uri``, or the embedded home), or the ``dpsynth`` connection named by
``[dpsynth] ui_conn_id``.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import FastAPI

    from synth_provider.hooks.dpsynth import DPSynthHook

#: The path the api-server mounts the app at (also the nav link's target).
URL_PREFIX = "/dpsynth"
#: Lifetime of a presigned report link, seconds (made when the link is clicked).
PRESIGN_SECONDS = 900
#: At most this many releases of a table are listed (newest first).
MAX_HISTORY = 50
_LATEST = "_latest.json"
_MANIFEST = "_manifest.json"
_RELEASE_FIELDS = ("run_id", "generator", "epsilon", "delta", "rows", "published_at", "resample_only")


def make_hook() -> DPSynthHook:
    """The hook the page reads through: ``[dpsynth] ui_conn_id`` names a dpsynth connection."""
    from airflow.sdk import conf

    from synth_provider.hooks.dpsynth import DPSynthHook

    conn_id = conf.get("dpsynth", "ui_conn_id", fallback="") or None
    return DPSynthHook(dpsynth_conn_id=conn_id)


def collect_overview(hook: DPSynthHook) -> dict[str, Any]:
    """Ledger budgets and entries per key, and the live release and history per published table.

    Returns ``{"budgets": [...], "releases": [...], "object_store": root}`` (JSON-safe)."""
    from synth_core.object_store import join_uri

    ledger = hook.get_ledger()
    budgets = []
    keys: list[str] = ledger.keys()
    for key in keys:
        entries = [
            {
                "entry_type": e["entry_type"],
                "epsilon": e["epsilon"],
                "delta": e["delta"],
                "run_id": e["run_id"],
                "note": e["note"],
                "recorded_at": e["recorded_at"].isoformat() if e["recorded_at"] is not None else None,
            }
            for e in ledger.entries(key)
        ]
        budgets.append({**ledger.status(key).to_dict(), "key": key, "entries": entries})

    store = hook.get_object_store()
    root = hook.object_store_root()
    published = join_uri(root, "published")
    releases = []
    for target, latest in sorted(_latest_files(store, published).items()):
        live = json.loads(store.get_bytes(latest))
        history: list[dict[str, Any]] = []
        for uri in sorted(store.list(join_uri(published, target)), reverse=True):
            if uri.endswith("/" + _MANIFEST) and len(history) < MAX_HISTORY:
                manifest = json.loads(store.get_bytes(uri))
                history.append({k: manifest.get(k) for k in _RELEASE_FIELDS})
        history.sort(key=lambda r: str(r.get("published_at") or ""), reverse=True)
        releases.append(
            {
                "table": target,
                "source_table": live.get("source_table"),
                "synthetic_table": live.get("synthetic_table"),
                "live": {k: live.get(k) for k in _RELEASE_FIELDS},
                "has_report": bool(live.get("report_uri")),
                "history": history,
            }
        )
    return {"object_store": root, "budgets": budgets, "releases": releases}


def _latest_files(store: Any, published: str) -> dict[str, str]:
    """``{published table: its _latest.json URI}`` directly under ``published/``."""
    out: dict[str, str] = {}
    for uri in store.list(published):
        rest = uri[len(published) :].strip("/")
        parts = rest.split("/")
        if len(parts) == 2 and parts[1] == _LATEST:
            out[parts[0]] = uri
    return out


def run_report_uri(hook: DPSynthHook, uri: str) -> str | None:
    """``uri`` if it names a shareable report of the store (``reports/…/report.html`` or
    ``published/…/report.html`` under the root), else ``None``."""
    from synth_core.errors import ParameterError
    from synth_core.object_store import is_under, join_uri, split_uri

    root = hook.object_store_root()
    if not isinstance(uri, str) or not uri.endswith("/report.html"):
        return None
    try:
        split_uri(uri)  # a literal file:// or s3:// URI without '..' segments
        inside = any(is_under(uri, join_uri(root, folder)) for folder in ("reports", "published"))
    except ParameterError:
        return None
    return uri if inside else None


def report_page_url(report_uri: str) -> str:
    """Where the Airflow UI opens ``report_uri``: this app's ``report-file`` route, under
    ``[api] base_url`` (relative to the UI when unset)."""
    from urllib.parse import quote

    from airflow.sdk import conf

    base = (conf.get("api", "base_url", fallback="") or "").rstrip("/")
    return f"{base}{URL_PREFIX}/report-file?uri={quote(report_uri, safe='')}"


def live_report_uri(hook: DPSynthHook, table: str) -> str | None:
    """The shareable report of ``table``'s live release, or ``None`` (no such published table)."""
    from synth_core.object_store import join_uri

    store = hook.get_object_store()
    published = join_uri(hook.object_store_root(), "published")
    latest = _latest_files(store, published).get(table)  # only names that exist: no path tricks
    if latest is None:
        return None
    report = json.loads(store.get_bytes(latest)).get("report_uri")
    # _latest.json is a file in the store, not a trusted source: its report URI passes the same
    # check as a URI in a link (a report.html under this store's reports/ or published/)
    return run_report_uri(hook, str(report)) if report else None


# ------------------------------------------------------------------------------------------------
# the page


def _num(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape(str(value))


def _text(value: Any) -> str:
    return "—" if value is None or value == "" else html.escape(str(value))


def render_overview_html(overview: Mapping[str, Any]) -> str:
    """The page: a budget table per ledger key, then the releases per published table."""
    from urllib.parse import quote

    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<title>dpsynth — privacy budgets and releases</title>",
        "<style>body{font-family:system-ui,sans-serif;margin:1.5rem;color:#1b1f24}"
        "table{border-collapse:collapse;margin:.5rem 0 1.5rem}th,td{border:1px solid #ccd;"
        "padding:.25rem .6rem;text-align:left}th{background:#eef1f6}"
        "td.n{text-align:right;font-variant-numeric:tabular-nums}"
        ".bar{width:12rem;height:.8rem;background:#e4e7ec}.bar span{display:block;height:100%;"
        "background:#2f6fdf}h2{margin-top:2rem}</style></head><body>",
        "<h1>dpsynth — privacy budgets and releases</h1>",
        f"<p>Object store: <code>{_text(overview.get('object_store'))}</code></p>",
        "<h2>Privacy budgets (ledger)</h2>",
    ]
    budgets = overview.get("budgets") or []
    if not budgets:
        parts.append("<p>The ledger has no entries yet.</p>")
    for budget in budgets:
        lifetime, spent = budget.get("lifetime_epsilon"), budget.get("spent_epsilon") or 0.0
        share = min(1.0, spent / lifetime) if lifetime else 0.0
        parts += [
            f"<h3 id='budget-{_text(budget['key'])}'>{_text(budget['key'])}</h3>",
            "<table class='budget'><tr><th></th><th>lifetime</th><th>spent</th><th>remaining</th>"
            "<th>used</th></tr>",
            f"<tr><th>ε</th><td class='n'>{_num(lifetime)}</td><td class='n'>{_num(spent)}</td>"
            f"<td class='n'>{_num(budget.get('remaining_epsilon'))}</td>"
            f"<td><div class='bar' title='{share:.0%}'><span style='width:{100 * share:.1f}%'></span>"
            "</div></td></tr>",
            f"<tr><th>δ</th><td class='n'>{_num(budget.get('lifetime_delta'))}</td>"
            f"<td class='n'>{_num(budget.get('spent_delta'))}</td>"
            f"<td class='n'>{_num(budget.get('remaining_delta'))}</td><td></td></tr></table>",
            "<table class='entries'><tr><th>recorded</th><th>entry</th><th>ε</th><th>δ</th>"
            "<th>run</th><th>note</th></tr>",
        ]
        for entry in budget.get("entries") or []:
            parts.append(
                f"<tr><td>{_text(entry.get('recorded_at'))}</td><td>{_text(entry.get('entry_type'))}</td>"
                f"<td class='n'>{_num(entry.get('epsilon'))}</td><td class='n'>{_num(entry.get('delta'))}</td>"
                f"<td>{_text(entry.get('run_id'))}</td><td>{_text(entry.get('note'))}</td></tr>"
            )
        parts.append("</table>")

    parts.append("<h2>Published tables</h2>")
    releases = overview.get("releases") or []
    if not releases:
        parts.append("<p>No table has been published yet.</p>")
    for release in releases:
        live, table = release.get("live") or {}, str(release["table"])
        report = (
            f"<a class='report' href='{URL_PREFIX}/report/{html.escape(quote(table, safe=''))}'>"
            "shareable report</a>"
            if release.get("has_report")
            else "no report"
        )
        parts += [
            f"<h3 id='release-{_text(table)}'>{_text(release.get('synthetic_table') or table)}</h3>",
            f"<p>Synthetic replacement of <code>{_text(release.get('source_table'))}</code>. "
            f"Live release: run <code>{_text(live.get('run_id'))}</code>, {_text(live.get('generator'))}, "
            f"ε = {_num(live.get('epsilon'))}, δ = {_num(live.get('delta'))}, {_num(live.get('rows'))} rows, "
            f"published {_text(live.get('published_at'))}. {report}</p>",
            "<table class='history'><tr><th>published</th><th>run</th><th>generator</th><th>ε</th>"
            "<th>δ</th><th>rows</th><th>refresh</th></tr>",
        ]
        for past in release.get("history") or []:
            kind = "resample only (no spend)" if past.get("resample_only") else "train + sample"
            parts.append(
                f"<tr><td>{_text(past.get('published_at'))}</td><td>{_text(past.get('run_id'))}</td>"
                f"<td>{_text(past.get('generator'))}</td><td class='n'>{_num(past.get('epsilon'))}</td>"
                f"<td class='n'>{_num(past.get('delta'))}</td><td class='n'>{_num(past.get('rows'))}</td>"
                f"<td>{kind}</td></tr>"
            )
        parts.append("</table>")
    parts.append("</body></html>")
    return "".join(parts)


# ------------------------------------------------------------------------------------------------
# the app

#: The page and the served report load nothing from elsewhere and run no script.
_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; frame-ancestors 'self'"


def create_app() -> FastAPI:
    """The FastAPI app the api-server mounts at :data:`URL_PREFIX` (every route needs a user)."""
    from airflow.api_fastapi.core_api.security import requires_authenticated
    from fastapi import Depends, FastAPI, HTTPException
    from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

    app = FastAPI(
        title="dpsynth privacy budgets",
        dependencies=[Depends(requires_authenticated())],
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    headers = {"Content-Security-Policy": _CSP, "Cache-Control": "no-store"}

    @app.get("/", response_class=HTMLResponse)
    def overview_page() -> HTMLResponse:
        return HTMLResponse(render_overview_html(collect_overview(make_hook())), headers=headers)

    @app.get("/api/overview")
    def overview_json() -> JSONResponse:
        return JSONResponse(collect_overview(make_hook()), headers={"Cache-Control": "no-store"})

    def serve(hook: DPSynthHook, uri: str) -> Response:
        store = hook.get_object_store()
        if uri.startswith("s3://"):
            return RedirectResponse(store.presigned_url(uri, PRESIGN_SECONDS), status_code=307)
        try:
            body = store.get_bytes(uri)
        except FileNotFoundError:
            raise HTTPException(status_code=404, detail="the report is gone") from None
        return Response(body, media_type="text/html; charset=utf-8", headers=headers)

    def serve_checked(hook: DPSynthHook, uri: str | None, missing: str) -> Response:
        if uri is None:
            raise HTTPException(status_code=404, detail=missing)
        return serve(hook, uri)

    @app.get("/report/{table}")
    def live_report(table: str) -> Response:
        hook = make_hook()
        return serve_checked(
            hook, live_report_uri(hook, table), "no published table with a report by that name"
        )

    @app.get("/report-file")
    def run_report(uri: str) -> Response:
        hook = make_hook()
        return serve_checked(hook, run_report_uri(hook, uri), "not a report of this object store")

    return app


__all__ = [
    "PRESIGN_SECONDS",
    "URL_PREFIX",
    "collect_overview",
    "create_app",
    "live_report_uri",
    "make_hook",
    "render_overview_html",
    "report_page_url",
    "run_report_uri",
]
