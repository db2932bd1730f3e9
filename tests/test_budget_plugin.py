"""The privacy-budget page of the Airflow UI plugin: served by a real ``airflow api-server``
process from a real ledger and object store, and rendered in headless Chromium (a screenshot is
kept in ``test-artifacts/budget_page.png``)."""

from __future__ import annotations

import base64
import html
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_report_browser import (  # noqa: F401  (browser and chromium are fixtures)
    CDPSession,
    browser,
    chromium,
    evaluate,
    open_page,
    problems,
)

from synth_core.ledger import PrivacyLedger
from synth_core.object_store import ObjectStore, as_uri, join_uri
from synth_provider.links.report import report_link
from synth_provider.plugins.budget_view import render_overview_html

TABLE = "adult_synthetic"
USER, PASSWORD = "analyst", "a-test-password-7f3c"
HOSTILE_KEY = "<script>alert('key')</script>"
REPORT_HTML = "<!doctype html><html><head><title>dpsynth release report</title></head><body><h1>Report</h1></body></html>"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dpsynth home with a ledger (a grant, a settled spend, a released reservation, a resample)
    and two published releases of one table, the second live."""
    home = tmp_path_factory.mktemp("dpsynth-ui-home")
    ledger = PrivacyLedger(f"sqlite:///{home / 'ledger.db'}")
    ledger.grant("adult", 10.0, 1e-5)
    spend = ledger.reserve("adult", 3.0, 1e-6, run_id="scheduled__2026-12-01T00:00:00+00:00")
    ledger.settle(spend, 2.9999999985142343, 1e-6)
    refused = ledger.reserve("adult", 3.0, 1e-6, run_id="manual__budget-check")
    ledger.release(refused, note="the run failed before reading rows")
    ledger.record_resample("adult", run_id="scheduled__2026-12-02T00:00:00+00:00", model_uri="file:///m")
    ledger.grant(HOSTILE_KEY, 1.0, 1e-6)  # keys are user input: the page must escape them

    store = ObjectStore()
    root = as_uri(home / "objects")
    published = join_uri(root, "published", TABLE)
    for n, (run, resample) in enumerate(
        (("scheduled__2026-12-01T00:00:00+00:00", False), ("scheduled__2026-12-02T00:00:00+00:00", True))
    ):
        run_dir = join_uri(published, f"run{n}")
        report_uri = store.put_bytes(join_uri(run_dir, "report.html"), REPORT_HTML.encode())
        manifest = {
            "source_table": "adult",
            "synthetic_table": TABLE,
            "rows": 32561,
            "resample_only": resample,
            "epsilon": 2.9999999985142343,
            "delta": 1e-6,
            "generator": "mst",
            "run_id": run,
            "report_uri": report_uri,
            "published_at": f"2026-12-0{n + 1}T01:00:00+00:00",
        }
        manifest_uri = store.put_bytes(join_uri(run_dir, "_manifest.json"), json.dumps(manifest).encode())
    store.put_bytes(
        join_uri(published, "_latest.json"), json.dumps({"manifest_uri": manifest_uri, **manifest}).encode()
    )
    return home


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def api_server(airflow_db: Path, home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ``airflow api-server`` (simple auth manager, one viewer) on a free port."""
    port = _free_port()
    log_path = tmp_path_factory.mktemp("api-server") / "api-server.log"
    passwords = log_path.parent / "passwords.json"
    passwords.write_text(json.dumps({USER: PASSWORD}))
    # how a deployment enables the plugin without an entry point: one line in its plugins folder
    # (the provider info registers it too, which Airflow reads with [core] lazy_load_providers off)
    plugins = log_path.parent / "plugins"
    plugins.mkdir()
    (plugins / "dpsynth_plugin.py").write_text("from synth_provider.plugins.plugin import DPSynthPlugin\n")
    env = {
        **os.environ,
        "AIRFLOW__DPSYNTH__HOME": str(home),
        "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:viewer",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(plugins),
    }
    airflow = Path(sys.executable).with_name("airflow")
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [str(airflow), "api-server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while True:
            if proc.poll() is not None:
                pytest.fail(f"api-server exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{base}/api/v2/monitor/health", timeout=5) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"api-server did not answer in 240 s:\n{log_path.read_text()[-3000:]}")
            time.sleep(1)
        yield base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the group this fixture started, by its id
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def token(api_server: str) -> str:
    request = urllib.request.Request(
        f"{api_server}/auth/token",
        data=json.dumps({"username": USER, "password": PASSWORD}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as resp:
        return str(json.loads(resp.read())["access_token"])


def _get(url: str, token: str | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(request, timeout=60) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


# ------------------------------------------------------------------------------------------------


def test_the_page_needs_an_airflow_user(api_server: str) -> None:
    for path in ("/dpsynth/", "/dpsynth/api/overview", f"/dpsynth/report/{TABLE}"):
        assert _get(api_server + path)[0] == 401, path
        assert _get(api_server + path, "not-a-token")[0] == 403, path


def test_the_plugin_is_registered_with_its_nav_link(api_server: str, token: str) -> None:
    status, _, body = _get(f"{api_server}/api/v2/plugins", token)
    assert status == 200
    (plugin,) = [p for p in json.loads(body)["plugins"] if p["name"] == "dpsynth"]
    assert [a["url_prefix"] for a in plugin["fastapi_apps"]] == ["/dpsynth"]
    (view,) = plugin["external_views"]
    assert (view["href"], view["destination"], view["url_route"]) == ("/dpsynth/", "nav", "dpsynth")


def test_budgets_spends_refreshes_and_releases_from_the_ledger_and_store(api_server: str, token: str) -> None:
    status, _, body = _get(f"{api_server}/dpsynth/api/overview", token)
    assert status == 200
    overview = json.loads(body)
    budgets = {b["key"]: b for b in overview["budgets"]}
    adult = budgets["adult"]
    assert (adult["lifetime_epsilon"], adult["lifetime_delta"]) == (10.0, 1e-5)
    assert adult["spent_epsilon"] == pytest.approx(3.0) and adult["remaining_epsilon"] == pytest.approx(7.0)
    assert [e["entry_type"] for e in adult["entries"]] == [
        "grant",
        "reserve",
        "spend",
        "reserve",
        "release",
        "resample",
    ]
    (release,) = overview["releases"]
    assert release["table"] == TABLE and release["live"]["run_id"] == "scheduled__2026-12-02T00:00:00+00:00"
    assert [r["resample_only"] for r in release["history"]] == [True, False]  # newest first

    status, headers, page = _get(f"{api_server}/dpsynth/", token)
    assert status == 200 and "default-src 'none'" in headers["content-security-policy"]
    text = page.decode()
    assert "Privacy budgets (ledger)" in text and "resample only (no spend)" in text
    assert html.escape(HOSTILE_KEY) in text and HOSTILE_KEY not in text

    # the live release's shareable report, through the api-server (a file:// store)
    status, headers, report = _get(f"{api_server}/dpsynth/report/{TABLE}", token)
    assert (
        status == 200 and report.decode() == REPORT_HTML and headers["content-type"].startswith("text/html")
    )
    for missing in ("other_table", "..%2F..%2Fledger.db", "%2E%2E"):
        assert _get(f"{api_server}/dpsynth/report/{missing}", token)[0] == 404, missing


def test_a_runs_report_opens_through_the_api_server_and_nothing_else_does(
    api_server: str, token: str, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from urllib.parse import quote

    monkeypatch.setenv("AIRFLOW__API__BASE_URL", api_server)  # as the api-server is configured

    root = as_uri(home / "objects")
    report = join_uri(root, "published", TABLE, "run0", "report.html")
    link = report_link(report)  # what the task's "Synthetic data report" extra link opens
    assert link == f"{api_server}/dpsynth/report-file?uri={quote(report, safe='')}"
    status, _, body = _get(link, token)
    assert status == 200 and body.decode() == REPORT_HTML
    for outside in (
        as_uri(home / "ledger.db"),
        "file:///etc/passwd",
        join_uri(root, "published", TABLE, "run0", "_manifest.json"),  # not a report
        root + "/reports/../../ledger.db/report.html",  # '..' is refused, never resolved
        as_uri(home.parent / "report.html"),
        "s3://another-bucket/reports/report.html",
    ):
        assert _get(f"{api_server}/dpsynth/report-file?uri={quote(outside, safe='')}", token)[0] == 404, (
            outside
        )
    # an HTTPS link pushed by an older version stays as it was
    assert report_link("https://s3.example/x?X-Amz-Signature=1") == "https://s3.example/x?X-Amz-Signature=1"
    assert report_link(None) == ""


def test_the_page_renders_in_headless_chromium(
    api_server: str,
    token: str,
    browser: CDPSession,  # noqa: F811 (the fixture imported above)
    artifacts_dir: Path,
) -> None:
    browser.call(
        "Storage.setCookies",
        {"cookies": [{"name": "_token", "value": token, "url": api_server, "path": "/"}]},
    )
    session, mark = open_page(browser, f"{api_server}/dpsynth/")
    page = evaluate(
        browser,
        session,
        """({title: document.title,
             headings: Array.from(document.querySelectorAll('h2,h3')).map(h => h.textContent),
             bars: Array.from(document.querySelectorAll('.bar span')).map(s => s.style.width),
             scripts: document.scripts.length,
             report: document.querySelector('a.report')?.getAttribute('href'),
             height: document.documentElement.scrollHeight})""",
    )
    assert page["title"] == "dpsynth — privacy budgets and releases"
    assert {"Privacy budgets (ledger)", "Published tables", "adult", HOSTILE_KEY, TABLE} <= set(
        page["headings"]
    )
    assert sorted(page["bars"]) == ["0%", "30%"] and page["scripts"] == 0  # the hostile key stayed text
    assert page["report"] == f"/dpsynth/report/{TABLE}"
    shot = browser.call(
        "Page.captureScreenshot",
        {"format": "png", "captureBeyondViewport": True,
         "clip": {"x": 0, "y": 0, "width": 1200, "height": min(int(page["height"]), 4000), "scale": 1}},
        session=session,
    )  # fmt: skip
    png = base64.b64decode(shot["data"])
    assert png.startswith(b"\x89PNG")
    (artifacts_dir / "budget_page.png").write_bytes(png)
    found = [p for p in problems(browser.events[mark:], session) if "network request" not in p]
    assert found == []

    # the report link opens the report through the api-server
    session, _ = open_page(browser, api_server + str(page["report"]))
    assert evaluate(browser, session, "document.title") == "dpsynth release report"


ALLOWED_TAGS = {
    "html",
    "head",
    "meta",
    "title",
    "style",
    "body",
    "h1",
    "h2",
    "h3",
    "p",
    "code",
    "table",
    "tr",
    "th",
    "td",
    "div",
    "span",
    "a",
}
ALLOWED_ATTRIBUTES = {"lang", "charset", "class", "id", "title", "style", "href"}


class _Markup(HTMLParser):
    """Tags, attributes and text of a page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: set[str] = set()
        self.attributes: set[str] = set()
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.attributes.update(name for name, _ in attrs)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


@settings(max_examples=100, deadline=None)
@given(st.text(min_size=1, max_size=40), st.text(min_size=1, max_size=40))
def test_user_controlled_names_stay_text(key: str, run_id: str) -> None:
    overview = {
        "object_store": "file:///x",
        "budgets": [
            {"key": key, "lifetime_epsilon": 1.0, "spent_epsilon": 0.5,
             "entries": [{"entry_type": "spend", "run_id": run_id}]}
        ],
        "releases": [{"table": key, "live": {"run_id": run_id}, "has_report": True, "history": []}],
    }  # fmt: skip
    markup = _Markup()
    markup.feed(render_overview_html(overview))
    markup.close()
    assert markup.tags <= ALLOWED_TAGS and markup.attributes <= ALLOWED_ATTRIBUTES
    text = "".join(markup.text)
    assert key.strip() in text and run_id.strip() in text
