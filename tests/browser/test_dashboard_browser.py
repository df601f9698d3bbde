"""Open the dashboard in headless Chromium during a `tickpipe up` run and check what it shows.

The chart must show candles for the first subscribed symbol, the orders table the orders the
trader placed (as recorded in Redis), and the health table every stage up; any console error on
the page fails the test. With TICKPIPE_DASHBOARD_SCREENSHOT=path a screenshot is saved there.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from playwright.sync_api import ConsoleMessage, Page, sync_playwright

from tests.e2e.conftest import free_port, wait_for
from tickpipe.common.embedded import PASSWORDS_FILE, read_passwords, user_url
from tickpipe.common.names import Keys
from tickpipe.common.schema import decode_fields

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
STAGES = ("ingestor", "processor", "trader", "dashboard")


def _answers(url: str) -> bool:
    with contextlib.suppress(OSError):
        with urllib.request.urlopen(url, timeout=2) as answer:
            return int(answer.status) == 200
    return False


@pytest.fixture
def pipeline(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """`tickpipe up` with the dashboard on a free port; yields its URL and data directory."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TICKPIPE_", "BINANCE_"))}
    env.pop("REDIS_URL", None)
    env.update(PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1", TICKPIPE_DASHBOARD_PORT=str(port),
               TICKPIPE_HYSTERESIS_BPS="1")  # fmt: skip
    data = tmp_path / "state"
    out = (tmp_path / "up.out").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tickpipe", "up", "--duration", "100", "--data-dir", str(data),
         "--rate", "40"],
        env=env, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_for(lambda: _answers(url) or proc.poll() is not None, timeout_s=40,
                 what="the dashboard to answer")  # fmt: skip
        assert proc.poll() is None, (tmp_path / "up.out").read_text()
        yield url, data
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        out.close()
    text = (tmp_path / "up.out").read_text()
    assert f"dashboard: {url}" in text, text


def _recorded_orders(data: Path) -> set[str]:
    # The embedded default admits only its users: read as the operator, as `tickpipe` does.
    password = read_passwords(data / PASSWORDS_FILE)["operator"]
    url = user_url((data / "redis.url").read_text().strip(), "operator", password)
    client = redis.Redis.from_url(url)
    try:
        entries = client.xrange(Keys("tp").orders("binance"))
    finally:
        client.close()
    # Every decision the trader recorded: sent (``intent``) or refused before (``rejected``).
    return {f["client_order_id"] for f in map(decode_fields, (e[1] for e in entries))
            if f.get("event") in ("intent", "rejected")}  # fmt: skip


def title(page: Page) -> str:
    """The chart's title text (SVG, so text content rather than inner text)."""
    return page.locator("#chart .gtitle").text_content() or ""


def _stages_up(page: Page) -> bool:
    return all(
        page.locator(f'tr.stage[data-service="{s}"][data-status="ok"]').count() >= 1 for s in STAGES
    )


def test_dashboard_shows_candles_orders_and_health(pipeline: tuple[str, Path]) -> None:
    url, data = pipeline
    errors: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(message.text)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1300})
            page.on("console", on_console)
            page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
            page.goto(url)
            chart = page.locator("#chart")
            wait_for(lambda: chart.locator("g.trace.boxes path").count() >= 3, timeout_s=40,
                     what="three candles on the chart")  # fmt: skip
            assert "BTCUSDT 1s" in title(page)
            wait_for(lambda: page.locator("#orders-table tbody tr").count() >= 1, timeout_s=40,
                     what="an order in the orders table")  # fmt: skip
            wait_for(lambda: _stages_up(page), timeout_s=20, what="every stage ok in health")
            # The chart grows by patches: more candles arrive without reloading the page.
            before = chart.locator("g.trace.boxes path").count()
            wait_for(lambda: chart.locator("g.trace.boxes path").count() > before, timeout_s=20,
                     what="a new candle")  # fmt: skip
            shown = {t.strip() for t in page.locator("#orders-table td.coid").all_inner_texts()}
            recorded = _recorded_orders(data)
            assert shown and shown <= recorded, shown - recorded
            page.locator("#interval").get_by_text("1m").click()
            wait_for(lambda: "BTCUSDT 1m" in title(page), timeout_s=10,
                     what="the 1m chart")  # fmt: skip
            wait_for(lambda: chart.locator("g.trace.boxes path").count() >= 1, timeout_s=10,
                     what="a 1m candle")  # fmt: skip
            page.locator("#interval").get_by_text("1s").click()
            shot = os.environ.get("TICKPIPE_DASHBOARD_SCREENSHOT")
            if shot:
                wait_for(lambda: "BTCUSDT 1s" in title(page),
                         timeout_s=10, what="the 1s chart")  # fmt: skip
                page.wait_for_timeout(3000)
                page.screenshot(path=shot, full_page=True)
        finally:
            browser.close()
    assert errors == []
