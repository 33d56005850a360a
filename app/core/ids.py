"""Row ids in Prisma's cuid shape (`c` + 24 lowercase base36 chars).

The legacy Node app and this service write the same tables, so ids must look alike; ordering
by time is not promised by cuids either, so a random id is enough.
"""

from __future__ import annotations

import secrets

_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


def new_id() -> str:
    return "c" + "".join(secrets.choice(_ALPHABET) for _ in range(24))
