"""The shareable release report of an Adult release, opened in a real headless Chromium.

Chromium is driven over the Chrome DevTools Protocol (CDP): it is started with
``--remote-debugging-port=0`` (it picks a free port and writes it to ``DevToolsActivePort`` in the
profile folder), the test connects to the browser's WebSocket endpoint with ``websockets``,
opens a page target (``Target.createTarget`` + ``Target.attachToTarget`` with ``flatten``) and
listens to ``Runtime.exceptionThrown``, ``Runtime.consoleAPICalled``, ``Log.entryAdded`` and
``Network.requestWillBeSent`` while the ``file://`` report loads. After ``Page.loadEventFired``
it checks every ``<img>`` in the DOM (decoded, ``naturalWidth > 0``), that nothing was logged as
an error (a Content-Security-Policy violation or a broken resource would be) and that no request
left the file, and saves a full-page screenshot to ``test-artifacts/report.png``. A control page
that throws proves the error listeners work.

The test needs Debian's Chromium at ``/usr/bin/chromium``; it fails, not skips, without it.
``make test`` installs it first (as root; otherwise it stops and says the command to run).
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from synth_core.ledger import BudgetStatus
from synth_core.privacy import PrivacyAccountant, PrivacyBudget
from synth_core.report import SHAREABLE_BANNER, render_release_report
from synth_core.spec import TableSpec
from synth_core.transformer import TableTransformer, fit_transformer_under_dp
from synth_expectations.outcome import ExpectationResult, ValidationOutcome

CHROMIUM = Path("/usr/bin/chromium")
INSTALL = "apt-get install -y chromium"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
)
SYNTHETIC_ROWS = 5_000
VIEWPORT = {"width": 1200, "height": 900}
#: Chromium cannot paint taller screenshots in one piece; the rest of the page is left out.
MAX_SCREENSHOT_HEIGHT = 16_000


class CDPError(RuntimeError):
    pass


class CDPSession:
    """A minimal CDP client: one WebSocket to the browser, commands optionally on a flat session."""

    def __init__(self, ws_url: str) -> None:
        from websockets.sync.client import connect

        self.ws = connect(ws_url, max_size=None, open_timeout=15, proxy=None)
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def close(self) -> None:
        self.ws.close()

    def _recv(self, deadline: float) -> dict[str, Any]:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        msg: dict[str, Any] = json.loads(self.ws.recv(timeout=remaining))
        return msg

    def call(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        session: str | None = None,
        timeout: float = 30,
    ) -> dict[str, Any]:
        self._next_id += 1
        my_id = self._next_id
        msg: dict[str, Any] = {"id": my_id, "method": method, "params": params or {}}
        if session is not None:
            msg["sessionId"] = session
        self.ws.send(json.dumps(msg))
        deadline = time.monotonic() + timeout
        while True:
            try:
                reply = self._recv(deadline)
            except TimeoutError:
                raise CDPError(f"CDP {method}: no answer within {timeout}s") from None
            if reply.get("id") == my_id:
                if "error" in reply:
                    raise CDPError(f"CDP {method}: {reply['error']}")
                result: dict[str, Any] = reply.get("result", {})
                return result
            if "method" in reply:
                self.events.append(reply)

    def wait_for(self, method: str, *, session: str, after: int, timeout: float = 30) -> dict[str, Any]:
        """The first event ``method`` of ``session`` recorded after index ``after`` (waits for it)."""
        deadline = time.monotonic() + timeout
        seen = after
        while True:
            for ev in self.events[seen:]:
                if ev.get("method") == method and ev.get("sessionId") == session:
                    return ev
            seen = len(self.events)
            try:
                reply = self._recv(deadline)
            except TimeoutError:
                raise CDPError(f"CDP: no {method} event within {timeout}s") from None
            if "method" in reply:
                self.events.append(reply)

    def drain(self, seconds: float) -> None:
        """Record events for ``seconds`` more (late console messages)."""
        deadline = time.monotonic() + seconds
        while True:
            try:
                reply = self._recv(deadline)
            except TimeoutError:
                return
            if "method" in reply:
                self.events.append(reply)


def problems(events: list[dict[str, Any]], session: str) -> list[str]:
    """Console errors, uncaught exceptions, error log entries and requests leaving the file."""
    out: list[str] = []
    for ev in events:
        if ev.get("sessionId") != session:
            continue
        method, p = ev.get("method"), ev.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = p.get("exceptionDetails", {})
            out.append(f"exception: {details.get('exception', {}).get('description') or details.get('text')}")
        elif method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            texts = [str(a.get("value", a.get("description", ""))) for a in p.get("args", [])]
            out.append(f"console.{p.get('type')}: {' '.join(texts)}")
        elif method == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            entry = p["entry"]
            out.append(
                f"log error ({entry.get('source')}): {entry.get('text')} {entry.get('url', '')}".rstrip()
            )
        elif method == "Network.requestWillBeSent":
            url = str(p.get("request", {}).get("url", ""))
            if not url.startswith(("file:", "data:", "about:")):
                out.append(f"network request: {url[:200]}")
    return out


@pytest.fixture(scope="module")
def chromium() -> Path:
    if not CHROMIUM.exists():
        pytest.fail(
            f"headless Chromium is required by this test and {CHROMIUM} is missing. Install it with: "
            f"{INSTALL}  (as root; the Debian package 'chromium'; `make test` does this when root)",
            pytrace=False,
        )
    return CHROMIUM


@pytest.fixture
def browser(chromium: Path, tmp_path: Path) -> Iterator[CDPSession]:
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    log_path = tmp_path / "chromium.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                str(chromium),
                *FLAGS,
                f"--user-data-dir={profile}",
                "--remote-debugging-port=0",
                f"--window-size={VIEWPORT['width']},{VIEWPORT['height']}",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "HOME": str(tmp_path)},
            start_new_session=True,  # its own process group: renderer/GPU children can be ended with it
        )
    cdp: CDPSession | None = None
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and len(port_file.read_text().splitlines()) >= 2):
            if proc.poll() is not None:
                pytest.fail(f"chromium exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"chromium opened no DevTools port in 30 s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.1)
        port, ws_path = port_file.read_text().splitlines()[:2]
        cdp = CDPSession(f"ws://127.0.0.1:{port}{ws_path}")
        yield cdp
        with contextlib.suppress(Exception):  # the browser may close the socket before it answers
            cdp.call("Browser.close", timeout=5)
    finally:
        if cdp is not None:
            cdp.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the group this fixture started, by its id
            proc.wait(timeout=10)


def open_page(cdp: CDPSession, url: str) -> tuple[str, int]:
    """A fresh page target with the listeners on, navigated to ``url`` and loaded: ``(session, first event)``."""
    target = cdp.call("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = cdp.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    for domain in ("Runtime", "Log", "Page", "Network"):
        cdp.call(f"{domain}.enable", session=session)
    cdp.call(
        "Emulation.setDeviceMetricsOverride",
        {**VIEWPORT, "deviceScaleFactor": 1, "mobile": False},
        session=session,
    )
    mark = len(cdp.events)
    nav = cdp.call("Page.navigate", {"url": url}, session=session)
    assert not nav.get("errorText"), f"navigation to {url} failed: {nav.get('errorText')}"
    cdp.wait_for("Page.loadEventFired", session=session, after=mark, timeout=30)
    return session, mark


def evaluate(cdp: CDPSession, session: str, expression: str) -> Any:
    res = cdp.call(
        "Runtime.evaluate",
        {"expression": expression, "returnByValue": True, "awaitPromise": True},
        session=session,
    )
    if "exceptionDetails" in res:
        raise CDPError(f"evaluation failed: {res['exceptionDetails']}")
    return res["result"].get("value")


IMAGES_JS = """(async () => {
  const imgs = Array.from(document.images);
  await Promise.allSettled(imgs.map(i => i.decode()));
  return imgs.map(i => ({alt: i.alt, complete: i.complete, w: i.naturalWidth, h: i.naturalHeight,
                         shownWidth: i.getBoundingClientRect().width}));
})()"""

PAGE_JS = """({
  title: document.title,
  version: document.querySelector('meta[name="dpsynth-report-version"]')?.content,
  banner: document.querySelector('.banner')?.innerText,
  sections: Array.from(document.querySelectorAll('h2')).map(h => h.textContent),
  scripts: document.scripts.length,
  height: document.documentElement.scrollHeight,
  width: document.documentElement.scrollWidth,
})"""


# ------------------------------------------------------------------------------------------------
# the release


def diagnostic_png() -> bytes:
    """A stand-in for a generator's diagnostics figure (a PNG made with matplotlib's Agg)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4, 2.5), dpi=80)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.plot(np.linspace(-3, 3, 50), np.exp(-(np.linspace(-3, 3, 50) ** 2) / 2))
    ax.set_title("base-space residuals (DP histogram)")
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def adult_release(frame: pd.DataFrame, spec: TableSpec) -> dict[str, Any]:
    """Fit the DP transformer on Adult and decode N(0, 1) noise through it (no model training)."""
    accountant = PrivacyAccountant(PrivacyBudget(3.0, 1e-6))
    rng = np.random.default_rng(0)
    state = json.loads(json.dumps(fit_transformer_under_dp(frame, spec, accountant, rng).to_dict()))
    decoder = TableTransformer.from_dict(state)
    synthetic = decoder.inverse_transform(
        rng.standard_normal((SYNTHETIC_ROWS, decoder.output_dim)).astype(np.float32), rng
    )
    results = [
        ExpectationResult(
            expectation_type="expect_column_values_to_be_true",
            column=None,
            success=rule.violations(synthetic) == 0,
            severity=rule.severity,
            summary=f"rule {rule.name!r} ({rule.expr}): {rule.violations(synthetic)} rows violate it.",
            check="rule",
            unexpected_count=rule.violations(synthetic),
            unexpected_percent=100.0 * rule.violations(synthetic) / len(synthetic),
            rule=rule.name,
        )
        for rule in spec.rules
    ]
    results.append(  # a real-data metric: must stay out of the shareable report
        ExpectationResult(
            expectation_type="expect_column_max_to_be_between",
            column=None,
            success=True,
            severity="critical",
            summary="privacy: DCR share 0.5013 is at most 0.52 (max_dcr_share).",
            check="privacy",
            metric="dcr_share",
            observed=0.5013,
            threshold=0.52,
        )
    )
    budget = BudgetStatus("adult", 10.0, 1e-5, 6.0, 2e-6).to_dict()
    return {
        "spec": spec,
        "synthetic": synthetic,
        "transformer_state": state,
        "privacy": accountant.to_dict(),
        "release": {
            "table": "adult",
            "generator": "dp-maf",
            "generator_params": {"epochs": 20, "batch_size": 512, "diagnostics_fraction": 0.02},
            "run_id": "scheduled__2025-01-01T00:00:00+00:00",
            "rows": SYNTHETIC_ROWS,
            "synthetic_uri": "s3://dpsynth/adult/run-1/synthetic.parquet",
        },
        "validation": ValidationOutcome(success=all(r.success for r in results), results=results).to_dict(),
        "budget": budget,
        "diagnostics": {"flow base-space residuals": diagnostic_png()},
    }


@pytest.mark.timeout(180)  # a hang guard; it takes about 10 s of CPU (under 60 s on a busy 2-core VM)
def test_shareable_report_renders_in_headless_chromium(
    browser: CDPSession, adult_frame: pd.DataFrame, adult_spec: TableSpec, artifacts_dir: Path, tmp_path: Path
) -> None:
    start = time.perf_counter()
    release = adult_release(adult_frame, adult_spec)
    page = render_release_report(**release)
    expected_images = len(adult_spec.modelled_columns) + 1 + 1  # histograms + heatmap + diagnostics
    assert page.count("<img") == expected_images
    report = artifacts_dir / "report.html"
    report.write_text(page, encoding="utf-8")
    built = time.perf_counter() - start

    session, mark = open_page(browser, report.resolve().as_uri())
    images = evaluate(browser, session, IMAGES_JS)
    info = evaluate(browser, session, PAGE_JS)
    browser.drain(0.5)
    found = problems(browser.events[mark:], session)

    assert len(images) == expected_images
    broken = [i["alt"] for i in images if not (i["complete"] and i["w"] > 0 and i["h"] > 0)]
    assert not broken, f"images that did not decode: {broken}"
    assert all(i["shownWidth"] > 0 for i in images)
    assert not found, "the report logged errors or made requests:\n" + "\n".join(found)
    assert info["title"] == "dpsynth release report — adult" and info["version"] == "shareable"
    assert info["banner"].startswith(SHAREABLE_BANNER)
    assert info["scripts"] == 0
    for section in ("Summary", "Generator", "Privacy accounting", "Columns", "Associations", "Validation",
                    "Generator diagnostics"):  # fmt: skip
        assert section in info["sections"]
    assert "Privacy evidence" not in info["sections"] and "Utility" not in info["sections"]
    assert info["width"] <= VIEWPORT["width"], "the report overflows the viewport horizontally"

    height = min(int(info["height"]), MAX_SCREENSHOT_HEIGHT)
    shot = browser.call(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": VIEWPORT["width"], "height": height, "scale": 1},
        },
        session=session,
        timeout=60,
    )
    png = base64.b64decode(shot["data"])
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    width_px, height_px = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width_px, height_px) == (VIEWPORT["width"], height)
    (artifacts_dir / "report.png").write_bytes(png)

    # control: the same listeners catch a console error and an uncaught exception
    control = tmp_path / "control.html"
    control.write_text(
        "<!DOCTYPE html><html><body><script>console.error('dpsynth-control');"
        "throw new Error('dpsynth-control-exception');</script></body></html>"
    )
    control_session, control_mark = open_page(browser, control.as_uri())
    browser.drain(0.3)
    caught = problems(browser.events[control_mark:], control_session)
    assert any("console.error: dpsynth-control" in p for p in caught), caught
    assert any("dpsynth-control-exception" in p for p in caught), caught

    print(f"report built in {built:.1f}s; built, loaded and checked in {time.perf_counter() - start:.1f}s")
