"""The lock files install what pyproject.toml asks for, with hashes, everywhere the project installs.

requirements/dev-lock.txt (make install: run, test, CI) and requirements/lock.txt (the image) must
pin every dependency of pyproject.toml at a version its specifier allows, each pin with its
hashes, and the two must agree where they overlap. A dependency added to pyproject.toml without
`make lock` fails here rather than on a fresh machine. The audit script's verdicts are checked on
made-up reports (no network).
"""

from __future__ import annotations

import importlib.util
import re
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
RUNTIME_LOCK = ROOT / "requirements" / "lock.txt"
DEV_LOCK = ROOT / "requirements" / "dev-lock.txt"
ENTRY = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+?)(?:\s*;\s*([^\\]+?))?\s*\\?$")


def lock_entries(path: Path) -> dict[str, tuple[str, int]]:
    """name -> (version, number of hashes) for every pin of a lock file."""
    entries: dict[str, tuple[str, int]] = {}
    current: str | None = None
    for line in path.read_text().splitlines():
        match = ENTRY.match(line)
        if match:
            current = canonicalize_name(match.group(1))
            entries[current] = (match.group(2), 0)
        elif current and line.strip().startswith("--hash=sha256:"):
            version, hashes = entries[current]
            entries[current] = (version, hashes + 1)
        elif line and not line.startswith(" "):
            current = None
    return entries


@pytest.fixture(scope="module")
def project() -> dict[str, Any]:
    with (ROOT / "pyproject.toml").open("rb") as handle:
        return tomllib.load(handle)


@pytest.mark.parametrize("lock", [RUNTIME_LOCK, DEV_LOCK], ids=["runtime", "dev"])
def test_every_pin_is_exact_and_hashed(lock: Path) -> None:
    entries = lock_entries(lock)
    assert len(entries) > 30
    text = lock.read_text()
    requirement_lines = [line for line in text.splitlines() if line and not line.startswith((" ", "#"))]
    assert len(requirement_lines) == len(entries), "every requirement line is an exact `name==version` pin"
    assert not [name for name, (_, hashes) in entries.items() if hashes == 0], "pins without a hash"


@pytest.mark.parametrize(
    ("lock", "groups"),
    [(RUNTIME_LOCK, ["dependencies"]), (DEV_LOCK, ["dependencies", "dev"])],
    ids=["runtime", "dev"],
)
def test_lock_satisfies_pyproject(project: dict[str, Any], lock: Path, groups: list[str]) -> None:
    entries = lock_entries(lock)
    wanted = list(project["build-system"]["requires"])
    for group in groups:
        wanted += (
            project["project"]["dependencies"]
            if group == "dependencies"
            else project["project"]["optional-dependencies"][group]
        )
    missing = []
    for spec in wanted:
        requirement = Requirement(spec)
        pinned = entries.get(canonicalize_name(requirement.name))
        if pinned is None or not requirement.specifier.contains(pinned[0], prereleases=True):
            missing.append(f"{spec} (locked: {pinned[0] if pinned else 'absent'})")
    assert not missing, f"pyproject.toml asks for what {lock.name} does not pin (run `make lock`): {missing}"


def test_runtime_and_dev_locks_agree() -> None:
    runtime, dev = lock_entries(RUNTIME_LOCK), lock_entries(DEV_LOCK)
    assert set(runtime) <= set(dev)
    assert {name: runtime[name][0] for name in runtime} == {name: dev[name][0] for name in runtime}


def test_every_install_uses_the_lock() -> None:
    makefile = (ROOT / "Makefile").read_text()
    stamp_rule = re.search(r"^\$\(STAMP\):(.*)\n((?:\t.*\n)+)", makefile, re.MULTILINE)
    assert stamp_rule, "the install stamp rule"
    assert "requirements/dev-lock.txt" in stamp_rule.group(1), "the stamp depends on the lock"
    installs = [line for line in stamp_rule.group(2).splitlines() if "pip install" in line]
    assert any("--require-hashes -r requirements/dev-lock.txt" in line for line in installs)
    assert all("--require-hashes" in line or "--no-deps" in line for line in installs), installs
    for target in ("run", "test"):
        assert re.search(rf"^{target}: install\b", makefile, re.MULTILINE), f"make {target} installs first"
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^\s*make test\b", ci, re.MULTILINE) and re.search(r"^\s*make audit\b", ci, re.MULTILINE)


@pytest.fixture()
def audit() -> ModuleType:
    spec = importlib.util.spec_from_file_location("lock_audit", ROOT / "requirements" / "audit.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_sources(
    audit: ModuleType, monkeypatch: pytest.MonkeyPatch, report: dict[str, Any], project_level: dict[str, Any]
) -> None:
    monkeypatch.setattr(audit, "run_pip_audit", lambda paths: report)
    monkeypatch.setattr(audit, "latest_release_vulns", lambda name, version: project_level.get(name))


def test_audit_fails_on_a_known_vulnerability(audit: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    vuln = {"id": "PYSEC-0000-1", "fix_versions": ["9.9"], "aliases": []}
    fake_sources(audit, monkeypatch, {"fastapi": {"name": "fastapi", "vulns": [vuln]}}, {})
    assert audit.main() == 1


def test_audit_fails_when_no_data_answers(audit: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_sources(audit, monkeypatch, {}, {})
    assert audit.main() == 2


def test_audit_uses_the_project_level_data_and_ignores_accepted_ids(
    audit: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    vuln = {"id": "GHSA-xxxx", "aliases": ["CVE-1"], "fixed_in": []}
    fake_sources(audit, monkeypatch, {"fastapi": {"name": "fastapi", "skip_reason": "not found"}}, {"fastapi": [vuln]})
    assert audit.main() == 1
    monkeypatch.setattr(audit, "IGNORED", {"CVE-1": "does not apply"})
    assert audit.main() == 0
    assert "NOT AUDITED" in capsys.readouterr().err
