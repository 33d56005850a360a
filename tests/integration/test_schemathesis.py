"""Hostile input, generated (fast seeded run): schemathesis over every operation of the served
OpenAPI, with credentials and without, against a real service process; `make chaos` runs it long
(`python -m tests.fuzz.run_schemathesis --max-examples 100`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_schemathesis_finds_no_server_error_and_no_schema_violation(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tests.fuzz.run_schemathesis", "--max-examples", "5", "--report-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
