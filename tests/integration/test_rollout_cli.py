"""`shopibundle rollout start|status|watch|pause|resume|abort`: the HTTP API's rollouts from the CLI.

The commands run in-process through `app.cli.main([...])` in a thread (the CLI runs its own event
loop), against the session's test database. Service instances of other tests may run the driver on
it meanwhile, so the rollout's dwell (a day) keeps its shops from finishing during the test.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from app.cli import main as cli_main
from app.core.config import get_settings
from tests.conftest import new_shop
from tests.integration.bundle_helpers import bundle_body, bundles_url, flag_override


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, db_url: str) -> Iterator[pytest.MonkeyPatch]:
    for name in ("V2_BUNDLE_ENGINE", "V2_PRICING_ENGINE", "DUAL_WRITE", "SHADOW_READS"):
        monkeypatch.delenv(f"FEATURE_FLAG_{name}", raising=False)
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("AUTO_MIGRATE", "false")
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


async def _cli(argv: list[str]) -> int:
    def call() -> int:
        try:
            return cli_main(argv)
        except SystemExit as exc:
            return int(exc.code or 0)

    return await asyncio.to_thread(call)


async def _json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> Any:
    capsys.readouterr()
    assert await _cli(argv) == 0
    return json.loads(capsys.readouterr().out)


async def test_rollout_commands_mirror_the_http_api(
    cli_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    shop, other = new_shop("cli"), new_shop("cli")
    plan = await _json(
        capsys,
        ["rollout", "start", "--target", "live", "--shop", shop, "--dry-run", "--reason", "plan", "--json"],
    )
    assert plan["dryRun"] is True
    assert await _cli(["rollout", "status", "--json"]) == 0

    started = await _json(
        capsys,
        [
            "rollout", "start", "--target", "live", "--shop", shop, "--shop", other,
            "--guard", "minDwellSeconds=86400", "--guard", "maxMismatchRate=0.02", "--reason", "cli test", "--json",
        ],
    )  # fmt: skip
    rollout_id = started["id"]
    status = await _json(capsys, ["rollout", "status", rollout_id, "--json"])
    assert status["status"] == "running" and status["targetStage"] == "live"
    assert [s["shop"] for s in status["shops"]] == [shop, other]
    assert status["guards"]["minDwellSeconds"] == 86400 and status["guards"]["maxMismatchRate"] == 0.02

    capsys.readouterr()
    assert await _cli(["rollout", "status", rollout_id]) == 0
    text = capsys.readouterr().out
    assert f"rollout {rollout_id}  running  → live" in text and shop in text and other in text

    # A shop an unfinished rollout covers cannot join another one: the API's 409, exit 1.
    assert await _cli(["rollout", "start", "--target", "shadow", "--shop", shop, "--reason", "again"]) == 1
    assert "already" in capsys.readouterr().err.lower()

    assert (await _json(capsys, ["rollout", "pause", rollout_id, "--json"]))["status"] == "paused"
    assert (await _json(capsys, ["rollout", "resume", rollout_id, "--json"]))["status"] == "running"
    assert (await _json(capsys, ["rollout", "abort", rollout_id, "--json"]))["status"] == "aborted"
    assert await _cli(["rollout", "resume", rollout_id]) == 1  # an aborted rollout cannot resume: 409

    capsys.readouterr()
    assert await _cli(["rollout", "watch", rollout_id, "--interval", "0.05"]) == 1  # aborted: the view, then exit 1
    assert f"rollout {rollout_id}  aborted" in capsys.readouterr().out

    assert await _cli(["rollout", "start", "--target", "live", "--shop", shop, "--guard", "x", "--reason", "r"]) == 2
    assert await _cli(["rollout", "status", "no-such-rollout"]) == 1


async def test_rollback_immediate_lists_v2_only_data_and_needs_yes(
    cli_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], client: httpx.AsyncClient
) -> None:
    shop = new_shop("cli")
    async with flag_override(client, "V2_BUNDLE_ENGINE", shop, True):
        lone = await client.post(bundles_url(shop), json=bundle_body(metaobject=None, discount=None))
        assert lone.status_code == 201, lone.text
        capsys.readouterr()
        assert await _cli(["rollback", "immediate", "--reason", "incident"]) == 2
        err = capsys.readouterr().err
        assert "refusing" in err and shop in err and "not_representable" in err and "--yes" in err
        engine = (await client.get("/admin/flags/V2_BUNDLE_ENGINE")).json()
        assert engine["shopOverrides"].get(shop) is True, "refused: nothing changed"
