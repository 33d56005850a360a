"""The opaque page cursor every listing endpoint hands out: base64url of a small JSON object.

One codec for every listing (bundles, shadow reads, migration jobs and failures, rollouts, the flag
audit log), so a client sees one shape and one error: a cursor that does not decode, or that another
listing issued, is a 422 on `query.cursor` rather than a 500 or a silently wrong page. The `kind`
inside a cursor is what tells listings apart; the bundle list also uses it to notice that the read
flag changed between two pages (a legacy cursor given to the V2 store).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime

from app.core.errors import ValidationFailed

#: What a client is told about a string that is not a cursor this API issued.
NOT_A_CURSOR = "not a cursor this endpoint issued"


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where the previous page ended: the sort time (None for listings ordered by key alone) and key."""

    at: datetime | None
    key: str | int


def invalid_cursor(message: str = NOT_A_CURSOR) -> ValidationFailed:
    return ValidationFailed("Invalid cursor.", errors=[{"field": "query.cursor", "message": message}])


def encode_cursor(kind: str, key: str | int, at: datetime | None = None) -> str:
    raw = json.dumps({"k": kind, "t": at.isoformat() if at else None, "i": key}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(
    cursor: str,
    kind: str,
    *,
    key_type: type[str] | type[int] | None = None,
    timed: bool = False,
    other_kind: str = NOT_A_CURSOR,
) -> Cursor:
    """The cursor's position, checked against what `kind` issues: `key_type` (None accepts str or
    int), a time when `timed`; `other_kind` is the message for a cursor of another listing."""
    try:
        data = json.loads(base64.urlsafe_b64decode((cursor + "=" * (-len(cursor) % 4)).encode("ascii")))
        stamp, key, cursor_kind = data["t"], data["i"], data["k"]
        at = datetime.fromisoformat(stamp) if stamp is not None else None
    except (ValueError, TypeError, KeyError, UnicodeError, binascii.Error):
        raise invalid_cursor() from None
    if cursor_kind != kind:
        raise invalid_cursor(other_kind)
    if isinstance(key, bool) or not isinstance(key, key_type or (str, int)) or key == "" or (timed and at is None):
        raise invalid_cursor()
    return Cursor(at, key)


def decode_keyset_cursor(cursor: str, kind: str, *, key_type: type[str] | type[int]) -> tuple[datetime, str | int]:
    """(time, key) of a cursor of a listing ordered by time then key (`decode_cursor` with `timed`)."""
    position = decode_cursor(cursor, kind, key_type=key_type, timed=True)
    if position.at is None:  # decode_cursor refused it already; this tells the type checker
        raise invalid_cursor()
    return position.at, position.key
