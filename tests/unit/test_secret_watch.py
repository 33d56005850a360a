"""The session-wide secret watch (tests/conftest.py) catches a secret wherever a record carries it."""

from __future__ import annotations

import logging

from tests.conftest import SecretWatch


def test_the_watch_finds_secrets_in_messages_args_and_tracebacks() -> None:
    watch = SecretWatch(("s3cr3t-value",))
    logger = logging.getLogger("secret-watch-test")
    logger.addHandler(watch)
    logger.propagate = False
    try:
        logger.warning("nothing to see")
        assert watch.leaks == []
        logger.warning("token=%s", "s3cr3t-value")
        try:
            raise ValueError("bad header Bearer eyJhbGciOiJIUzI1NiJ9.x.y")
        except ValueError:
            logger.exception("auth failed")
    finally:
        logger.removeHandler(watch)
    assert len(watch.leaks) == 2
