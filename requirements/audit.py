"""Known vulnerabilities in the locked dependencies (`make audit`, run by .ci/run).

pip-audit checks every pin of the lock files against PyPI's vulnerability data (the per-release
JSON endpoint). Where that endpoint does not answer for a pin (some mirrors and proxies serve only
the project-level JSON), the project-level answer is used instead: it carries the vulnerabilities
of the project's latest release, so it audits a pin exactly when the pin is that release.

Outcome, in this order:
* a known vulnerability in any pin (not listed in IGNORED) fails the audit (exit 1);
* nothing could be audited at all (no vulnerability data reachable) fails it too (exit 2): an
  audit that asked nobody must not read as "no known vulnerabilities";
* pins neither route could audit are listed by name, loudly, and do not fail the run.

IGNORED holds vulnerabilities accepted on purpose, each with its reason; docs/reliability.md lists
them. Keep it empty unless a vulnerability has no fix and does not apply to how the service runs.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LOCKS = [ROOT / "requirements" / "lock.txt", ROOT / "requirements" / "dev-lock.txt"]
PROJECT_JSON = "https://pypi.org/pypi/{name}/json"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", re.MULTILINE)

# vulnerability id (or alias) -> why it is accepted
IGNORED: dict[str, str] = {}


def pins(paths: list[Path]) -> dict[str, str]:
    found: dict[str, str] = {}
    for path in paths:
        for name, version in PIN.findall(path.read_text()):
            found[name.lower()] = version
    return found


def run_pip_audit(paths: list[Path]) -> dict[str, dict[str, Any]]:
    """pip-audit's JSON report by package name ({} when pip-audit produced none)."""
    command = [sys.executable, "-m", "pip_audit", "--disable-pip", "--require-hashes", "--progress-spinner", "off"]
    command += ["--format", "json", "--vulnerability-service", "pypi"]
    for path in paths:
        command += ["-r", str(path)]
    for vuln_id in IGNORED:
        command += ["--ignore-vuln", vuln_id]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        print(f"pip-audit gave no report (exit {done.returncode}): {done.stderr.strip()[-2000:]}", file=sys.stderr)
        return {}
    return {str(dep["name"]).lower(): dep for dep in report.get("dependencies", [])}


def latest_release_vulns(name: str, version: str) -> list[dict[str, Any]] | None:
    """The project-level vulnerabilities when `version` is the latest release, else None."""
    try:
        with urllib.request.urlopen(PROJECT_JSON.format(name=name), timeout=30) as answer:
            data = json.load(answer)
    except (urllib.error.URLError, TimeoutError, json.JSONDecodeError, OSError):
        return None
    if data.get("info", {}).get("version") != version:
        return None
    return list(data.get("vulnerabilities") or [])


def accepted(vuln: dict[str, Any]) -> bool:
    ids = {str(vuln.get("id"))} | {str(a) for a in vuln.get("aliases") or []}
    return bool(ids & IGNORED.keys()) or bool(vuln.get("withdrawn"))


def main() -> int:
    locked = pins(LOCKS)
    report = run_pip_audit(LOCKS)
    found: list[str] = []
    unaudited: list[str] = []
    audited = 0
    for name, version in sorted(locked.items()):
        dep = report.get(name)
        vulns: list[dict[str, Any]] | None
        if dep is not None and "skip_reason" not in dep:
            vulns = list(dep.get("vulns") or [])
        else:
            vulns = latest_release_vulns(name, version)
        if vulns is None:
            unaudited.append(f"{name}=={version}")
            continue
        audited += 1
        for vuln in vulns:
            if not accepted(vuln):
                fixed = ", ".join(map(str, vuln.get("fix_versions") or vuln.get("fixed_in") or [])) or "no fix"
                found.append(f"{name}=={version}: {vuln.get('id')} (fixed in: {fixed})")
    if found:
        print("KNOWN VULNERABILITIES in the locked dependencies:", *found, sep="\n  ", file=sys.stderr)
        print(
            "Update the pin (make lock LOCK_FLAGS='--upgrade-package NAME') or, when no fix exists and it does"
            " not apply, add it to IGNORED in requirements/audit.py with its reason.",
            file=sys.stderr,
        )
        return 1
    if audited == 0:
        print(
            f"AUDIT FAILED: no vulnerability data could be reached for any of the {len(locked)} locked"
            " packages; nothing was audited.",
            file=sys.stderr,
        )
        return 2
    if unaudited:
        print(
            f"NOT AUDITED ({len(unaudited)}: the per-release vulnerability data did not answer and the pin is"
            f" not the latest release): {', '.join(unaudited)}",
            file=sys.stderr,
        )
    print(f"audit: {audited} of {len(locked)} locked packages audited, no known vulnerabilities")
    return 0


if __name__ == "__main__":
    sys.exit(main())
