"""URL slugs for bundles: `Bundle.slug` is unique per shop (`"Bundle_shop_slug_key"`).

Legacy names are messy (accents, Japanese, emoji, duplicates within one shop), and the
migration must turn every one of them into a slug, deterministically, so that re-running a job
produces the same slug and a retried insert converges. Hence:

* `slugify` never returns an empty string: a name with nothing ASCII left becomes `"bundle"`
  (the caller adds a suffix, e.g. `unique_slug`'s `-2`, or an id fragment).
* `unique_slug` picks the first free candidate given the slugs already taken (read-then-write,
  fine for a single writer); under concurrency the unique index is the real guard, and writers
  loop over `slug_candidates` catching the unique violation.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection, Iterator
from itertools import count

__all__ = ["DEFAULT_MAX_LENGTH", "FALLBACK_SLUG", "slug_candidates", "slugify", "unique_slug"]

DEFAULT_MAX_LENGTH = 80
FALLBACK_SLUG = "bundle"

# Letters NFKD does not decompose into ASCII but that have an obvious Latin spelling.
_TRANSLITERATIONS = str.maketrans(
    {
        "ß": "ss",
        "ẞ": "SS",
        "æ": "ae",
        "Æ": "AE",
        "œ": "oe",
        "Œ": "OE",
        "ø": "o",
        "Ø": "O",
        "đ": "d",
        "Đ": "D",
        "ð": "d",
        "Ð": "D",
        "þ": "th",
        "Þ": "TH",
        "ł": "l",
        "Ł": "L",
        "\u0131": "i",  # dotless i
        "ħ": "h",
        "Ħ": "H",
    }
)
_NON_ALNUM = re.compile(r"[^a-z0-9]+")


def _truncate(slug: str, max_length: int) -> str:
    """Cut to `max_length` without leaving a dangling dash."""
    return slug[:max_length].strip("-")


def slugify(name: str, max_length: int = DEFAULT_MAX_LENGTH) -> str:
    """Turn a bundle name into a URL slug: `"Café Crème"` → `"cafe-creme"`.

    NFKD-normalise (so accents split off and full-width/compatibility forms become ASCII), map
    the few letters that do not decompose (ß, æ, ø, ł, ...), drop what is still not ASCII,
    lowercase, collapse every run of non-alphanumerics into one `-`, trim dashes, cut to
    `max_length`. Nothing left (`"夏のセット"`, `"🎁🎁"`, `""`) → `"bundle"`.
    """
    if max_length < 1:
        raise ValueError("max_length must be >= 1")
    text = unicodedata.normalize("NFKD", name.translate(_TRANSLITERATIONS))
    ascii_text = text.encode("ascii", "ignore").decode("ascii").lower()
    slug = _truncate(_NON_ALNUM.sub("-", ascii_text).strip("-"), max_length)
    return slug or _truncate(FALLBACK_SLUG, max_length)


def slug_candidates(base: str, max_length: int = DEFAULT_MAX_LENGTH) -> Iterator[str]:
    """Yield `base`, `base-2`, `base-3`, ... forever, each within `max_length`.

    The base is shortened (not the suffix) when a suffix would overflow, so the candidates stay
    distinct. An empty base counts as `"bundle"`.
    """
    base = _truncate(base, max_length) or _truncate(FALLBACK_SLUG, max_length)
    yield base
    for n in count(2):
        suffix = f"-{n}"
        if len(suffix) >= max_length:
            raise ValueError(f"max_length {max_length} is too short for suffix {suffix!r}")
        stem = _truncate(base, max_length - len(suffix)) or FALLBACK_SLUG[: max_length - len(suffix)]
        candidate = f"{stem}{suffix}"
        if candidate != base:  # "foo-2" cut to fit "-2" would repeat itself
            yield candidate


def unique_slug(base: str, taken: Collection[str], max_length: int = DEFAULT_MAX_LENGTH) -> str:
    """The first of `slug_candidates(base)` not in `taken` (the shop's existing slugs)."""
    for candidate in slug_candidates(base, max_length):
        if candidate not in taken:
            return candidate
    raise AssertionError("unreachable: slug_candidates is infinite")  # pragma: no cover
