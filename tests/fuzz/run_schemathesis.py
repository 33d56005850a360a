"""Hostile input, generated: schemathesis against the served OpenAPI of a real service process.

Starts PostgreSQL (the test server or an embedded one), the Shopify simulator and one uvicorn
process of `app.main:app`, then runs schemathesis over every operation, in all its phases
(examples, coverage, fuzzing, stateful), twice: with valid credentials and without any. Exit code
non-zero when any check failed. `--max-examples` keeps the run in `make test` short; `make chaos`
runs it long.

    python -m tests.fuzz.run_schemathesis --max-examples 20
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from devtools.shopify_simulator import SimulatorServer
from tests import pg

ROOT = Path(__file__).resolve().parents[2]
ADMIN_TOKEN = "fuzz-admin-token"
#: Checks for a run with credentials. `ignored_auth` needs a run that can authenticate.
CHECKS = ",".join(
    (
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
        "negative_data_rejection",
        "ignored_auth",
    )
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_ready(base: str, proc: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the service exited during start-up")
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError("the service did not become ready")


def run(max_examples: int, seed: int, report_dir: Path) -> int:
    db_url = asyncio.run(pg.create_database("sbfuzz"))
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    with SimulatorServer() as simulator:
        env = {
            **os.environ,
            "DATABASE_URL": db_url,
            "AUTO_MIGRATE": "true",
            "ADMIN_API_TOKEN": ADMIN_TOKEN,
            "SHOPIFY_API_KEY": "fuzz-api-key",
            "SHOPIFY_API_SECRET": "fuzz-api-secret",
            "SHOPIFY_ADMIN_URL_TEMPLATE": simulator.url_template,
            "SHOPIFY_TIMEOUT_S": "2",
            "SHOPIFY_MAX_ATTEMPTS": "2",
            "ADMIN_RATE_LIMIT_PER_S": "100000",
            "ADMIN_RATE_LIMIT_BURST": "100000",
            "LOG_FORMAT": "text",
            "LOG_LEVEL": "WARNING",
        }
        log = (report_dir / "service.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "app.main:app", "--port", str(port), "--log-level", "warning"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            _wait_ready(base, proc)
            common = [
                sys.executable,
                "-m",
                "schemathesis.cli",
                "run",
                f"{base}/openapi.json",
                "--phases",
                "examples,coverage,fuzzing,stateful",
                "--max-examples",
                str(max_examples),
                "--seed",
                str(seed),
                "--generation-deterministic",
                "--request-timeout",
                "20",
                "--continue-on-failure",
                "--suppress-health-check",
                "all",
                "--warnings",
                "off",
            ]
            authed = subprocess.run(
                [
                    *common,
                    "--checks",
                    CHECKS,
                    "-H",
                    f"Authorization: Bearer {ADMIN_TOKEN}",
                    "--report",
                    "junit",
                    "--report-junit-path",
                    str(report_dir / "schemathesis-auth.xml"),
                ],
                cwd=report_dir,
                check=False,
            )
            anonymous = subprocess.run(
                [
                    *common,
                    "--checks",
                    "not_a_server_error,content_type_conformance",
                    "--report",
                    "junit",
                    "--report-junit-path",
                    str(report_dir / "schemathesis-anon.xml"),
                ],
                cwd=report_dir,
                check=False,
            )
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()
            asyncio.run(pg.drop_database(db_url))
    return authed.returncode or anonymous.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--max-examples", type=int, default=20)
    parser.add_argument("--seed", type=int, default=20261206)
    parser.add_argument("--report-dir", type=Path, default=Path("/tmp/schemathesis"))
    args = parser.parse_args()
    args.report_dir.mkdir(parents=True, exist_ok=True)
    sys.exit(run(args.max_examples, args.seed, args.report_dir))


if __name__ == "__main__":
    main()
