"""One flag lookup for every path, with one documented default while no snapshot is loaded
(docs/feature-flags.md): the stored defaults (DUAL_WRITE on, everything else off), and the
`FEATURE_FLAG_<NAME>` kill switch applied on top, as it is once the snapshot is there."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from app.core.config import FLAG_NAMES, Settings
from app.rules.flags import DEFAULT_STATES
from app.services.flags import snapshot as flags
from app.services.flags.snapshot import FlagStore
from app.services.shopify_sync import reconciliation, write_through

SHOP = "lookup.myshopify.com"


@pytest.fixture(autouse=True)
def _no_env_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in FLAG_NAMES:
        monkeypatch.delenv(f"FEATURE_FLAG_{name}", raising=False)


def container(store: FlagStore | None, **settings: Any) -> Any:
    return SimpleNamespace(flags=store, settings=Settings(**settings))


@pytest.mark.parametrize("name", FLAG_NAMES)
def test_without_a_snapshot_every_flag_reads_as_its_stored_default(name: str) -> None:
    expected = DEFAULT_STATES[name].enabled
    assert flags.is_on(container(None), name, SHOP) is expected
    # ... which is exactly what a snapshot holding only the defaults answers.
    assert flags.is_on(container(FlagStore(Settings())), name, SHOP) is expected


def test_every_path_agrees_while_no_snapshot_is_loaded() -> None:
    c = container(None, shopify_write_through=True)
    assert flags.is_on(c, "DUAL_WRITE", SHOP) is True  # the write path dual-writes
    assert write_through.write_through_enabled(c, SHOP) is True  # and so writes through
    assert reconciliation._winner(c, SHOP) == "legacy"  # reads (and the reconciliation) stay on legacy
    assert flags.shadow_rate(c, SHOP) == 0.0


def test_the_kill_switch_applies_before_the_snapshot_is_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEATURE_FLAG_V2_BUNDLE_ENGINE", "true")
    monkeypatch.setenv("FEATURE_FLAG_DUAL_WRITE", "false")
    c = container(None, shopify_write_through=True)
    assert flags.is_on(c, "V2_BUNDLE_ENGINE", SHOP) is True
    assert reconciliation._winner(c, SHOP) == "v2"
    assert flags.is_on(c, "DUAL_WRITE", SHOP) is False
    assert write_through.write_through_enabled(c, SHOP) is False
