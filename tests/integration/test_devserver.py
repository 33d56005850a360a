"""`make run`'s entry point: embedded PostgreSQL + simulator + demo data + the service, from nothing.

Runs `python -m app.devserver` exactly as the Makefile does, in a fresh data directory, and checks
it answers `/healthz` within a minute, is ready, prints the token and URLs, and holds the demo data.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _postmaster_alive(pgdata: Path) -> bool:
    try:
        pid = int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
        os.kill(pid, 0)
    except (OSError, ValueError):
        return False
    return True


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_make_run_entry_point_serves_within_a_minute_and_stops_postgres(
    tmp_path: Path, stop_signal: signal.Signals
) -> None:
    port, sim_port = _free_port(), _free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATABASE_URL", "ADMIN_API_TOKEN", "SHOPIFY_ADMIN_URL_TEMPLATE", "FEATURE_FLAG_"))
    }
    env.update({"DATA_DIR": str(tmp_path / "data"), "PORT": str(port), "SIMULATOR_PORT": str(sim_port)})
    log_path = tmp_path / "devserver.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "app.devserver"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            started = time.monotonic()
            healthy = False
            while time.monotonic() - started < 60 and proc.poll() is None:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                        healthy = True
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.3)
            output = log_path.read_text(errors="replace")
            assert healthy, f"no /healthz within 60 s:\n{output[-3000:]}"
            assert httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).json()["ready"] is True
            token = (tmp_path / "data" / "admin_token").read_text().strip()
            assert f"admin token     : {token}" in output
            assert f"http://127.0.0.1:{port}/docs" in output and "/admin/migrations/jobs" in output
            headers = {"Authorization": f"Bearer {token}"}
            report = httpx.get(f"http://127.0.0.1:{port}/admin/migrations/validation", headers=headers, timeout=30)
            assert report.status_code == 200
            old_rows = sum(row["old"] for row in report.json()["bundleCounts"])
            assert old_rows >= 80  # the demo data set's bundle_discount_id rows
            pgdata = tmp_path / "data" / "pgdata"
            assert _postmaster_alive(pgdata)
            proc.send_signal(stop_signal)
            assert proc.wait(timeout=40) in (0, -stop_signal, 128 + stop_signal)
            # Ctrl+C or SIGTERM of `make run` leaves no PostgreSQL behind.
            deadline = time.monotonic() + 10
            while _postmaster_alive(pgdata) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert not _postmaster_alive(pgdata), log_path.read_text(errors="replace")[-2000:]
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
