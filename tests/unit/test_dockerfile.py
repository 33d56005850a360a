"""Lint of the container files: no Docker engine runs here, so the essentials are read, not built.

What must hold: a multi-stage build on slim bases; the service runs as a non-root user; a
HEALTHCHECK probes /healthz; no secret is baked into the image (no ENV/ARG secret values, no .env
copied, the build context excludes it); migrations are a separate command (`shopibundle db
upgrade`, a one-shot compose service), never part of the service's start; docker-compose takes
every secret from the environment.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SECRET_NAME = re.compile(r"SECRET|TOKEN|PASSWORD|PASSWD|API_KEY|PRIVATE_KEY|CREDENTIAL", re.IGNORECASE)
SECRET_LITERAL = re.compile(r"shp(at|ca|pa|ss)_[A-Za-z0-9]+|-----BEGIN [A-Z ]*PRIVATE KEY-----")
MIGRATION_WORDS = re.compile(r"db\s+upgrade|alembic\s+upgrade|\bmigrate\b|AUTO_MIGRATE=(1|true|yes|on)", re.I)


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with comments dropped and line continuations joined."""
    out: list[tuple[str, str]] = []
    buffer = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not buffer and (not line or line.startswith("#")):
            continue
        if buffer and line.startswith("#"):
            continue
        if line.endswith("\\"):
            buffer += line[:-1] + " "
            continue
        buffer += line
        keyword, _, rest = buffer.partition(" ")
        out.append((keyword.upper(), rest.strip()))
        buffer = ""
    return out


def stages(parsed: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for keyword, rest in parsed:
        if keyword == "FROM":
            result.append([])
        if result:
            result[-1].append((keyword, rest))
    return result


def exec_form(rest: str) -> list[str]:
    value = json.loads(rest)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value)
    return value


def env_pairs(keyword: str, rest: str) -> list[tuple[str, str]]:
    """`ENV A=1 B=2`, legacy `ENV A 1`, `ARG A`, `ARG A=1` → [(name, value)]."""
    if keyword == "ENV" and "=" not in rest.split(" ", 1)[0]:
        name, _, value = rest.partition(" ")
        return [(name, value.strip())]
    pairs = []
    for token in shlex.split(rest):
        name, _, value = token.partition("=")
        pairs.append((name, value))
    return pairs


@pytest.fixture(scope="module")
def dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text()


@pytest.fixture(scope="module")
def parsed(dockerfile: str) -> list[tuple[str, str]]:
    return instructions(dockerfile)


@pytest.fixture(scope="module")
def final_stage(parsed: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return stages(parsed)[-1]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


def test_multi_stage_on_slim_bases(parsed: list[tuple[str, str]]) -> None:
    froms = [rest for keyword, rest in parsed if keyword == "FROM"]
    assert len(froms) >= 2, "multi-stage: a build stage and a runtime stage"
    for base in froms:
        image = base.split()[0]
        assert "slim" in image or image.startswith("scratch") or "distroless" in image, f"not a slim base: {image}"
    assert any(" AS " in f.upper() for f in froms[:-1]), "earlier stages are named and copied from"
    final_copies = [rest for keyword, rest in stages(parsed)[-1] if keyword == "COPY"]
    assert any(rest.startswith("--from=") for rest in final_copies), "the runtime stage copies the build's output"


def test_runs_as_non_root_user(final_stage: list[tuple[str, str]]) -> None:
    keywords = [keyword for keyword, _ in final_stage]
    users = [(i, rest) for i, (keyword, rest) in enumerate(final_stage) if keyword == "USER"]
    assert users, "the runtime stage sets a USER"
    last_index, last_user = users[-1]
    name = last_user.split(":")[0]
    assert name not in {"root", "0"}, f"USER {last_user} is root"
    cmd_index = keywords.index("CMD")
    assert last_index < cmd_index, "USER comes before CMD"


def test_healthcheck_probes_healthz(final_stage: list[tuple[str, str]]) -> None:
    checks = [rest for keyword, rest in final_stage if keyword == "HEALTHCHECK"]
    assert len(checks) == 1, "one HEALTHCHECK in the runtime stage"
    assert "/healthz" in checks[0]
    assert "CMD" in checks[0] and "NONE" not in checks[0].upper().split()
    # slim images carry no curl: the probe must use what is there (python)
    probe = checks[0].split("CMD", 1)[1].strip()
    argv = exec_form(probe) if probe.startswith("[") else shlex.split(probe)
    assert argv[0] in {"python", "python3", "/opt/venv/bin/python"}, argv


def test_no_secrets_baked_in(dockerfile: str, parsed: list[tuple[str, str]]) -> None:
    for keyword, rest in parsed:
        if keyword in {"ENV", "ARG"}:
            for name, value in env_pairs(keyword, rest):
                assert not (SECRET_NAME.search(name) and value), f"{keyword} {name} bakes a secret into the image"
        if keyword in {"COPY", "ADD"}:
            sources = rest.split()[:-1]
            assert not any(".env" in s or s.endswith((".pem", ".key")) for s in sources), f"{keyword} {rest}"
            assert not any(s in {".", "./"} for s in sources if not s.startswith("--")), (
                f"{keyword} {rest}: copying the whole context risks shipping local files"
            )
    assert not SECRET_LITERAL.search(dockerfile)
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    for entry in (".env", ".git", ".venv", ".data"):
        assert entry in ignored, f".dockerignore lacks {entry}"


def test_migrations_are_a_separate_command(dockerfile: str, final_stage: list[tuple[str, str]]) -> None:
    starts = [rest for keyword, rest in final_stage if keyword in {"CMD", "ENTRYPOINT"}]
    assert starts, "the runtime stage has a CMD"
    for rest in starts:
        assert rest.startswith("["), "exec form, so SIGTERM reaches the server"
        command = " ".join(exec_form(rest))
        assert not MIGRATION_WORDS.search(command), f"the service start runs migrations: {command}"
        assert "shopibundle serve" in command or "uvicorn" in command
    for keyword, rest in final_stage:
        if keyword == "ENV":
            for name, value in env_pairs(keyword, rest):
                assert not (name == "AUTO_MIGRATE" and value.lower() in {"1", "true", "yes", "on"})
    assert "shopibundle db upgrade" in dockerfile, "the Dockerfile documents the migration command"


def test_documented_migration_command_exists() -> None:
    """`shopibundle db upgrade`, as documented in the Dockerfile and run by compose, is a real command."""
    from app import cli

    args = cli.build_parser().parse_args(["db", "upgrade"])
    assert getattr(args, "func", None) is not None


def test_the_lint_catches_what_it_should() -> None:
    """The helpers flag a baked secret, a root user and a migrating start (so a green run means something)."""
    bad = instructions(
        "FROM python:3.11 AS build\n"
        "FROM python:3.11-slim\n"
        "ENV ADMIN_API_TOKEN=abc123 \\\n    LOG_FORMAT=json\n"
        "USER root\n"
        'CMD ["sh", "-c", "alembic upgrade head && uvicorn app.main:app"]\n'
    )
    env = [pair for keyword, rest in bad if keyword == "ENV" for pair in env_pairs(keyword, rest)]
    assert ("ADMIN_API_TOKEN", "abc123") in env and ("LOG_FORMAT", "json") in env
    assert [rest for keyword, rest in bad if keyword == "USER"] == ["root"]
    cmd = next(rest for keyword, rest in bad if keyword == "CMD")
    assert MIGRATION_WORDS.search(" ".join(exec_form(cmd)))
    assert len(stages(bad)) == 2


def test_compose_runs_postgres_migration_and_service(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert any("postgres" in str(s.get("image", "")) for s in services.values()), "a PostgreSQL service"
    migrate = [s for s in services.values() if MIGRATION_WORDS.search(" ".join(map(str, s.get("command") or [])))]
    assert len(migrate) == 1, "exactly one one-shot migration service"
    assert migrate[0].get("restart", "no") == "no"
    app = services["app"]
    assert not MIGRATION_WORDS.search(" ".join(map(str, app.get("command") or [])))
    assert app["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert app["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_compose_takes_secrets_from_the_environment(compose: dict[str, Any]) -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    assert not SECRET_LITERAL.search(text)
    for name, service in compose["services"].items():
        env = service.get("environment") or {}
        items = env.items() if isinstance(env, dict) else (e.split("=", 1) for e in env)
        for key, value in items:
            if key == "<<" or not SECRET_NAME.search(key):
                continue
            assert re.fullmatch(r"\$\{[A-Z_]+:\?[^}]*\}", str(value)), f"{name}.{key} must be ${{VAR:?message}}"
        url = str(env.get("DATABASE_URL", "")) if isinstance(env, dict) else ""
        if "@" in url:
            password = url.split("://", 1)[1].split("@", 1)[0].partition(":")[2]
            assert password.startswith("${"), f"{name}: DATABASE_URL carries a literal password"


def pip_installs(parsed: list[tuple[str, str]]) -> list[str]:
    """Every `pip install ...` command of the Dockerfile's RUN instructions (split on && and ;)."""
    commands = []
    for keyword, rest in parsed:
        if keyword == "RUN":
            for part in re.split(r"&&|;", rest):
                if re.search(r"\bpip3?\s+install\b", part):
                    commands.append(" ".join(part.split()))
    return commands


def test_image_installs_the_hashed_lock(parsed: list[tuple[str, str]]) -> None:
    """The image installs exactly requirements/lock.txt (hashes required), then the project without
    resolving anything: no pip call may pull an unpinned package (not even pip itself)."""
    build = stages(parsed)[0]
    copied = [rest for keyword, rest in build if keyword == "COPY"]
    assert any("requirements/lock.txt" in rest.split()[0] for rest in copied), "the build stage copies the lock"
    installs = pip_installs(build)
    assert any("--require-hashes" in c and "-r requirements/lock.txt" in c for c in installs), installs
    for command in installs:
        locked = "--require-hashes" in command and re.search(r"-r\s+requirements/lock\.txt", command)
        project_only = "--no-deps" in command and "--no-build-isolation" in command
        assert locked or project_only, f"an unlocked install in the image: {command}"
        assert "--upgrade" not in command and "-U " not in command, command
    assert not pip_installs([(k, r) for stage in stages(parsed)[1:] for k, r in stage]), "runtime stage installs"


def test_lock_check_catches_an_unlocked_install() -> None:
    bad = instructions(
        "FROM python:3.11-slim AS build\n"
        "COPY requirements/lock.txt ./requirements/lock.txt\n"
        "RUN pip install --require-hashes -r requirements/lock.txt && pip install --upgrade pip\n"
        "RUN pip install -e .\n"
    )
    installs = pip_installs(bad)
    assert installs == [
        "pip install --require-hashes -r requirements/lock.txt",
        "pip install --upgrade pip",
        "pip install -e .",
    ]
    with pytest.raises(AssertionError):
        test_image_installs_the_hashed_lock(bad)
