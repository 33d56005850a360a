"""The status page in a real browser: Debian's headless Chromium, driven over the DevTools protocol.

What a person does: open /admin/ui, get the login form, type the admin token, press "Sign in",
read the dashboard (job rows with progress, rate and ETA, the per-shop breakdown, flags, stage,
audit trail, shadow mismatches), watch it update by itself, sign out. The browser needs a real
server, so the service runs under uvicorn on a free 127.0.0.1 port in a thread, on a database of
its own (so the screenshot kept in docs/ shows only this test's data).

The browser test needs /usr/bin/chromium (Debian's `chromium` package; CI installs it) and skips
without it; the access rules are also checked over plain HTTP, which needs no browser.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from websockets.asyncio.client import ClientConnection, connect

from app.core.migrations import upgrade_async
from app.core.time import utcnow
from app.main import create_app
from devtools.demo_data import DEMO_SHOPS, seed_demo
from devtools.shopify_simulator import SimulatorControl
from tests import pg
from tests.conftest import ADMIN_TOKEN, as_actor, make_settings

CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "status-page.png"
# The kept screenshot in docs/ is refreshed only on request (UPDATE_SCREENSHOT=1), so a test run
# leaves the work tree clean; otherwise the test still takes one, into a temporary file.
SCREENSHOT = (
    DOCS_SCREENSHOT
    if os.environ.get("UPDATE_SCREENSHOT") == "1"
    else Path(tempfile.gettempdir()) / f"status-page-{os.getpid()}.png"
)

needs_chromium = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason="headless Chromium not installed (apt-get install -y chromium); the status page test needs it",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ThreadedServer:
    """uvicorn in a thread with its own event loop: the browser needs a real TCP socket."""

    def __init__(self, app: Any) -> None:
        self.port = _free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="status-page-uvicorn", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ThreadedServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


class Browser:
    """Just enough of the Chrome DevTools protocol: evaluate, type, click, screenshot."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.ids = itertools.count(1)

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        call_id = next(self.ids)
        await self.ws.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:
            message = json.loads(await asyncio.wait_for(self.ws.recv(), 30))
            if message.get("id") == call_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result

    async def evaluate(self, expression: str) -> Any:
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, within_s: float = 15.0) -> Any:
        deadline = time.monotonic() + within_s
        while True:
            try:
                value = await self.evaluate(expression)
            except RuntimeError:
                value = None  # mid-navigation: the context went away
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {expression}")
            await asyncio.sleep(0.1)

    async def navigate(self, url: str) -> None:
        await self.send("Page.navigate", url=url)
        await self.wait_for("document.readyState === 'complete' && location.href !== 'about:blank'")

    async def click(self, selector: str) -> None:
        """A real mouse click in the middle of the element, as a person would."""
        box = await self.evaluate(
            f"(() => {{ const el = document.querySelector({json.dumps(selector)}); el.scrollIntoView();"
            " const r = el.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        )
        x, y = box
        for kind in ("mousePressed", "mouseReleased"):
            await self.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)

    async def type_into(self, selector: str, text: str) -> None:
        await self.evaluate(f"document.querySelector({json.dumps(selector)}).focus()")
        await self.send("Input.insertText", text=text)

    async def text(self) -> str:
        return str(await self.evaluate("document.body.innerText"))

    async def screenshot(self, path: Path) -> None:
        height = int(await self.evaluate("Math.ceil(document.documentElement.scrollHeight)"))
        await self.send(
            "Emulation.setDeviceMetricsOverride", width=1280, height=min(max(height, 800), 4000),
            deviceScaleFactor=1, mobile=False,
        )
        shot = await self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        await asyncio.to_thread(_write_file, path, base64.b64decode(shot["data"]))


def _write_file(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


@pytest.fixture
def chromium() -> Iterator[str]:
    """A headless Chromium with remote debugging on a free port; yields its DevTools HTTP base URL."""
    profile = tempfile.mkdtemp(prefix="sb-chromium-")
    port = _free_port()
    process = subprocess.Popen(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            f"--user-data-dir={profile}",
            f"--remote-debugging-port={port}",
            "--remote-debugging-address=127.0.0.1",
            "--window-size=1280,900",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{base}/json/version", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("chromium did not open its DevTools port") from None
                time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
async def page_db() -> AsyncIterator[str]:
    url = await pg.create_database("sbui")
    await upgrade_async(url)
    yield url
    await pg.drop_database(url)


async def _seed(url: str, simulator_url: str, run_id: str) -> dict[str, str]:
    """The demo's legacy data (so validation has something to say), a running job over the three demo
    shops, a finished one, and shadow mismatches: job rows as the job engine writes them."""
    conn = await pg.connect(url)
    async with SimulatorControl(simulator_url) as sim:
        await seed_demo(conn, sim)
    now = utcnow()
    running, finished = f"job-run-{run_id}", f"job-done-{run_id}"
    shops = list(DEMO_SHOPS)
    try:
        per_shop = {
            shops[0]: {"total": 80, "migrated": 76, "failed": 2, "skipped": 2},
            shops[1]: {"total": 80, "migrated": 50, "failed": 2, "skipped": 6},
            shops[2]: {"total": 80, "migrated": 18, "failed": 0, "skipped": 0},
        }
        await conn.execute(
            'INSERT INTO sb_migration_jobs (id, kind, status, total, processed, migrated, failed, skipped, '
            '"perShop", "startedAt", "createdAt", "updatedAt") '
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, $10, $10, $11)",
            running, "all", "running", 240, 156, 144, 4, 8, json.dumps(per_shop), now - timedelta(seconds=75), now,
        )
        await conn.execute(
            'INSERT INTO sb_migration_jobs (id, kind, status, total, processed, migrated, failed, skipped, '
            '"perShop", "startedAt", "finishedAt", "createdAt", "updatedAt", "dryRun") '
            "VALUES ($1, $2, $3, $4, $4, $5, 0, $6, $7::jsonb, $8, $9, $8, $9, true)",
            finished, "bundles", "succeeded", 72, 70, 2,
            json.dumps({shops[0]: {"total": 72, "migrated": 70, "failed": 0, "skipped": 2}}),
            now - timedelta(minutes=30), now - timedelta(minutes=29),
        )
        await conn.executemany(
            'INSERT INTO sb_shadow_mismatches (shop, endpoint, "bundleKey", fields, "createdAt") '
            "VALUES ($1, $2, $3, $4, $5)",
            [
                (shops[1], "/proxy/bundles-for-product", "gid://shopify/Metaobject/1012", ["discount"], now),
                (shops[0], "/api/v2/shops/{shop}/bundles/{id}", "bundle-summer-set", ["title", "products"], now),
            ],
        )
        # A guarded rollout over the three demo shops, and the evidence its guards read.
        rollout = f"rollout-{run_id}"
        await conn.execute(
            'INSERT INTO sb_rollouts (id, status, "targetStage", reason, "createdBy", "createdAt") '
            "VALUES ($1, 'running', 'live', 'guarded go-live', 'ops@example.com', $2)",
            rollout, now - timedelta(minutes=20),
        )
        failing = [{"name": "maxMismatchRate", "value": 0.4, "threshold": 0.01, "ok": False, "samples": 5}]
        await conn.executemany(
            'INSERT INTO sb_rollout_shops ("rolloutId", shop, position, "startStage", stage, state, "guardValues") '
            "VALUES ($1, $2, $3, 'dualwrite', $4, $5, $6::jsonb)",
            [
                (rollout, shops[0], 0, "live", "done", "[]"),
                (rollout, shops[1], 1, "shadow", "rolled_back", json.dumps(failing)),
                (rollout, shops[2], 2, "shadow", "observing", "[]"),
            ],
        )
        samples = []
        for minutes_ago in (9, 6, 3, 1):
            at = now - timedelta(minutes=minutes_ago)
            for shop in shops:
                samples.append((shop, "match", 2.0 + minutes_ago, 40.0 + minutes_ago, at))
            samples.append((shops[1], "confirmed", 3.0, 45.0, at))
            samples.append((shops[0], "noise_match", None, None, at))
        await conn.executemany(
            'INSERT INTO sb_consistency_comparisons (shop, endpoint, outcome, "v2Ms", "legacyMs", "createdAt") '
            "VALUES ($1, 'GET /proxy/bundles-for-product', $2, $3, $4, $5)",
            samples,
        )
    finally:
        await conn.close()
    return {"running": running, "finished": finished, "rollout": rollout}


async def _advance(url: str, job_id: str, processed: int) -> None:
    conn = await pg.connect(url)
    try:
        await conn.execute("UPDATE sb_migration_jobs SET processed = $2 WHERE id = $1", job_id, processed)
    finally:
        await conn.close()


@needs_chromium
async def test_status_page_in_chromium(chromium: str, page_db: str, simulator: Any) -> None:
    run_id = os.urandom(3).hex()
    jobs = await _seed(page_db, simulator.base_url, run_id)
    app = create_app(make_settings(page_db, simulator, RUN_WORKER=False, ROLLOUT_DRIVER=False))
    with ThreadedServer(app) as server:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as api:
            # An audited change, so the audit trail has a human entry next to the seeded defaults.
            answer = await api.put(
                "/admin/migration-stage",
                json={"stage": "shadow", "reason": "start comparing reads"},
                headers=as_actor("ops@example.com"),
            )
            assert answer.status_code == 200, answer.text

            targets = (await api.get(f"{chromium}/json/list")).json()
        ws_url = next(t["webSocketDebuggerUrl"] for t in targets if t.get("type") == "page")
        async with connect(ws_url, max_size=64 * 1024 * 1024, open_timeout=10) as ws:
            browser = Browser(ws)
            await browser.send("Page.enable")
            await browser.send("Runtime.enable")

            # Without a session: the login form, and nothing of the dashboard.
            await browser.navigate(f"{server.base_url}/admin/ui")
            await browser.wait_for("location.pathname === '/admin/ui/login' && !!document.querySelector('#token')")
            text = await browser.text()
            assert "Sign in" in text and "Admin token" in text
            assert jobs["running"] not in await browser.evaluate("document.documentElement.outerHTML")

            # A wrong token is refused, in words a person understands.
            await browser.type_into("#token", "not-the-token")
            await browser.click("button[type=submit]")
            await browser.wait_for("document.body.innerText.includes('not valid')")
            assert await browser.evaluate("location.pathname") == "/admin/ui/login"

            # The right token: the dashboard.
            await browser.type_into("#token", ADMIN_TOKEN)
            await browser.click("button[type=submit]")
            await browser.wait_for("location.pathname === '/admin/ui' && !!document.querySelector('#jobs')")
            # The session cookie is HttpOnly: page scripts cannot read it, and the URL holds no secret.
            assert "sb_admin_session" not in await browser.evaluate("document.cookie")
            assert ADMIN_TOKEN not in await browser.evaluate("location.href")

            text = await browser.text()
            assert "Migration jobs" in text
            row = f"tr[data-job-id='{jobs['running']}']"
            assert await browser.evaluate(f"!!document.querySelector(\"{row}\")")
            assert await browser.evaluate(f"document.querySelector(\"{row} progress\").value") == 156
            assert await browser.evaluate(f"document.querySelector(\"{row} progress\").max") == 240
            row_text = await browser.evaluate(f"document.querySelector(\"{row}\").innerText")
            assert "156 / 240 items" in row_text and "65%" in row_text and "running" in row_text
            assert re.search(r"\d+(\.\d+)?/s", row_text), row_text  # rate
            assert re.search(r"\b\d+(m \d\ds|s)\b", row_text), row_text  # ETA
            # Per-shop breakdown: open it as a person would, least advanced shop first.
            breakdown = f"tr[data-breakdown-of='{jobs['running']}']"
            await browser.click(f"{breakdown} summary")
            shops_text = await browser.evaluate(f"document.querySelector(\"{breakdown} table.shops\").innerText")
            assert shops_text.index(DEMO_SHOPS[2]) < shops_text.index(DEMO_SHOPS[0]), shops_text
            assert "18 / 80" in shops_text
            done_row = f"tr[data-job-id='{jobs['finished']}']"
            assert "succeeded" in await browser.evaluate(f"document.querySelector(\"{done_row}\").innerText")

            # Flags, stage and audit trail.
            for flag in ("V2_BUNDLE_ENGINE", "V2_PRICING_ENGINE", "DUAL_WRITE", "SHADOW_READS"):
                assert flag in text
            assert await browser.evaluate("document.querySelector('#stage').innerText") == "shadow"
            assert "ops@example.com" in text and "start comparing reads" in text
            # Validation (the fleet-wide report) and shadow mismatches.
            # Nothing of the demo data is migrated yet: validation fails, and says where.
            verdict = await browser.wait_for("document.querySelector('#validation-verdict')?.innerText")
            assert "fail" in verdict
            text = await browser.text()
            assert "Discount ids that differ" in text
            assert re.search(r"[1-9][0-9]* unmigrated", text), text
            assert "Shadow-read mismatches" in text and "bundle-summer-set" in text and "discount" in text

            # The rollout: each shop a cell coloured by its state, the evidence as server-side SVG charts.
            assert "Guarded rollouts" in text and "live" in text
            states = await browser.evaluate(
                "Object.fromEntries([...document.querySelectorAll('#rollout ul.shop-grid li')]"
                ".map((li) => [li.dataset.shop, li.dataset.state]))"
            )
            assert states == {DEMO_SHOPS[0]: "done", DEMO_SHOPS[1]: "rolled_back", DEMO_SHOPS[2]: "observing"}
            colour = "getComputedStyle(document.querySelector(\"#rollout li[data-state='%s']\")).backgroundColor"
            assert await browser.evaluate(colour % "rolled_back") == "rgb(207, 34, 46)"
            assert await browser.evaluate(colour % "done") == "rgb(26, 127, 55)"
            tip = await browser.evaluate("document.querySelector(\"#rollout li[data-state='rolled_back']\").title")
            assert "failing: maxMismatchRate" in tip
            charts = await browser.evaluate(
                "[...document.querySelectorAll('#rollout svg.chart')].map((svg) => [svg.getAttribute('aria-label'), "
                "svg.querySelectorAll('polyline').length, svg.getBoundingClientRect().width])"
            )
            assert [c[0] for c in charts] == ["Mismatch rate and noise baseline", "Read latency p99 per origin"]
            assert all(lines == 2 and width > 200 for _, lines, width in charts), charts
            assert "noise baseline" in text and "V2 p99" in text and "legacy p99" in text

            await browser.screenshot(SCREENSHOT)

            # It refreshes itself: the job moves on, the page follows without a reload.
            await browser.evaluate("window.__sameDocument = true")
            await _advance(page_db, jobs["running"], 200)
            await browser.wait_for(f"document.querySelector(\"{row} progress\")?.value === 200", within_s=15)
            assert await browser.evaluate("window.__sameDocument === true")
            # The breakdown a person opened stays open across refreshes.
            assert await browser.evaluate(f"document.querySelector(\"{breakdown} details\").open")

            # Sign out: back to the login form, and the dashboard is closed again.
            await browser.click("header button[type=submit]")
            await browser.wait_for("location.pathname === '/admin/ui/login'")
            await browser.navigate(f"{server.base_url}/admin/ui")
            await browser.wait_for("location.pathname === '/admin/ui/login'")

    assert SCREENSHOT.exists() and SCREENSHOT.stat().st_size > 10_000


async def test_status_page_access_without_a_browser(app_factory: Any) -> None:
    """The same rules over plain HTTP (runs without Chromium): who gets what, and the cookie's terms."""
    async with app_factory() as client:
        anonymous = {"Authorization": ""}
        answer = await client.get("/admin/ui", headers=anonymous)
        assert answer.status_code == 303 and answer.headers["location"] == "/admin/ui/login"
        assert (await client.get("/admin/ui/partial", headers=anonymous)).status_code == 401
        wrong = await client.get("/admin/ui", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.headers["content-type"].startswith("application/problem+json")

        # Bearer header: the dashboard, with a strict CSP whose nonce is on the inline script.
        page = await client.get("/admin/ui")
        assert page.status_code == 200 and "Migration jobs" in page.text
        csp = page.headers["content-security-policy"]
        nonce = re.search(r"script-src 'nonce-([^']+)'", csp)
        assert nonce and f'<script nonce="{nonce.group(1)}">' in page.text
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
        assert page.headers["cache-control"] == "no-store"

        # Login form post → HttpOnly, SameSite=Strict cookie scoped to the page; no token inside it.
        form = {"content-type": "application/x-www-form-urlencoded", "Authorization": ""}
        bad = await client.post("/admin/ui/login", content="token=wrong", headers=form)
        assert bad.status_code == 401 and "not valid" in bad.text
        good = await client.post("/admin/ui/login", content=f"token={ADMIN_TOKEN}", headers=form)
        assert good.status_code == 303 and good.headers["location"] == "/admin/ui"
        cookie = good.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/admin/ui" in cookie
        assert ADMIN_TOKEN not in cookie
        value = cookie.split(";", 1)[0].split("=", 1)[1]
        with_cookie = {"Authorization": "", "Cookie": f"sb_admin_session={value}"}
        assert (await client.get("/admin/ui/partial", headers=with_cookie)).status_code == 200
        forged = {"Authorization": "", "Cookie": f"sb_admin_session={value[:-4]}beef"}
        assert (await client.get("/admin/ui/partial", headers=forged)).status_code == 401
        expired = {"Authorization": "", "Cookie": "sb_admin_session=1." + value.split(".", 1)[1]}
        assert (await client.get("/admin/ui/partial", headers=expired)).status_code == 401


HOSTILE = "<script>alert('sb')</script>"
HOSTILE_ESCAPED = "&lt;script&gt;alert(&#39;sb&#39;)&lt;/script&gt;"


async def test_status_page_escapes_what_other_people_wrote(page_db: str, simulator: Any) -> None:
    """Job ids and errors, shop names, audit reasons, mismatch fields, rollout targets and guard names
    are data written by other people: a `<script>` in any of them reaches the page (and the partial
    the page's script swaps in with innerHTML) as text, never as markup. Over plain HTTP, no browser."""
    shop = f"evil{HOSTILE}.myshopify.com"
    now = utcnow()
    conn = await pg.connect(page_db)
    try:
        await conn.execute(
            'INSERT INTO sb_migration_jobs (id, kind, status, total, processed, migrated, failed, skipped, '
            '"perShop", "lastError", "startedAt", "finishedAt", "createdAt", "updatedAt") '
            "VALUES ($1, 'all', 'failed', 10, 4, 2, 1, 1, $2::jsonb, $3, $4, $4, $4, $4)",
            f"job-{HOSTILE}",
            json.dumps({shop: {"total": 10, "migrated": 2, "failed": 1, "skipped": 1}}), f"boom {HOSTILE}", now,
        )
        await conn.execute(
            'INSERT INTO sb_shadow_mismatches (shop, endpoint, "bundleKey", fields, "createdAt") '
            "VALUES ($1, $2, $3, $4, $5)",
            shop, f"/proxy/{HOSTILE}", f"key-{HOSTILE}", [f"title{HOSTILE}"], now,
        )
        await conn.execute(
            'INSERT INTO sb_rollouts (id, status, "targetStage", reason, "createdBy", "createdAt") '
            "VALUES ('rollout-hostile', 'running', $1, 'r', 'ops@example.com', $2)",
            f"live{HOSTILE}", now,
        )
        failing = [{"name": f"guard{HOSTILE}", "value": 1, "threshold": 0, "ok": False, "samples": 1}]
        await conn.execute(
            'INSERT INTO sb_rollout_shops ("rolloutId", shop, position, "startStage", stage, state, "guardValues") '
            "VALUES ('rollout-hostile', $1, 0, 'dualwrite', 'shadow', 'held', $2::jsonb)",
            shop, json.dumps(failing),
        )
    finally:
        await conn.close()

    app = create_app(make_settings(page_db, simulator, RUN_WORKER=False, ROLLOUT_DRIVER=False))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        async with httpx.AsyncClient(transport=transport, base_url="http://service.test", headers=headers) as api:
            answer = await api.put(
                "/admin/migration-stage",
                json={"stage": "dualwrite", "reason": f"because {HOSTILE}"},
                headers=as_actor("ops@example.com"),
            )
            assert answer.status_code == 200, answer.text
            page = await api.get("/admin/ui")
            partial = await api.get("/admin/ui/partial")
    assert page.status_code == 200 and partial.status_code == 200
    for body in (page.text, partial.text):
        assert "<script>alert" not in body
        # The job's id and error, the breakdown's shop, the audit reason, the mismatch's shop,
        # endpoint, bundle and field, the rollout's target, the grid cell's shop and failing guard.
        for escaped in (
            f'data-job-id="job-{HOSTILE_ESCAPED}"',
            f'<div class="error-text">boom {HOSTILE_ESCAPED}</div>',
            f"<td class=shop>evil{HOSTILE_ESCAPED}.myshopify.com</td>",
            f"because {HOSTILE_ESCAPED}",
            f"<td>/proxy/{HOSTILE_ESCAPED}</td>",
            f"<code>key-{HOSTILE_ESCAPED}</code>",
            f"title{HOSTILE_ESCAPED}",
            f"<td>live{HOSTILE_ESCAPED}</td>",
            f'data-shop="evil{HOSTILE_ESCAPED}.myshopify.com"',
            f"failing: guard{HOSTILE_ESCAPED}",
        ):
            assert escaped in body, escaped
    # The page's one script element is its own, allowed by the response's nonce; the partial has none.
    nonce = re.search(r"script-src 'nonce-([^']+)'", page.headers["content-security-policy"])
    assert nonce and page.text.count("<script") == 1 and f'<script nonce="{nonce.group(1)}">' in page.text
    assert "<script" not in partial.text
