"""Bundle slugs: deterministic, ASCII, unique per shop."""

from __future__ import annotations

from itertools import islice

import pytest

from app.rules.slugs import FALLBACK_SLUG, slug_candidates, slugify, unique_slug


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Summer Bundle", "summer-bundle"),
        ("Café Crème", "cafe-creme"),
        ("  --Hello,   World!!--  ", "hello-world"),
        ("Crème brûlée & Co.", "creme-brulee-co"),
        ("Straße Größe", "strasse-grosse"),
        ("Ærøskøbing Łódź", "aeroskobing-lodz"),
        # full-width letters, ideographic space and digits: NFKD folds them to ASCII
        ("\uff26\uff35\uff2c\uff2c\u3000\uff37\uff29\uff24\uff34\uff28 \uff11\uff12\uff13", "full-width-123"),
        ("Bundle #1 (2024)", "bundle-1-2024"),
        ("snake_case_name", "snake-case-name"),
        ("UPPER lower 42", "upper-lower-42"),
        ("\uff23af\u00e9 夏のセット", "cafe"),  # full-width C; the non-ASCII part is dropped
        ("🎁 Gift Set 🎁", "gift-set"),
        ("a\u0301", "a"),  # already decomposed accent
        ("ﬁne ﬂour", "fine-flour"),  # ligatures
    ],
)
def test_slugify(name: str, expected: str) -> None:
    assert slugify(name) == expected


@pytest.mark.parametrize("name", ["夏のセット", "🎁🎁", "", "   ", "---", "!!!", "Ωμέγα", "Привет"])
def test_slugify_fallback_when_nothing_ascii_is_left(name: str) -> None:
    assert slugify(name) == FALLBACK_SLUG == "bundle"


def test_slugify_is_deterministic() -> None:
    assert slugify("Café Crème") == slugify("Café Crème")
    # Composed and decomposed forms of the same text give the same slug.
    assert slugify("Caf\u00e9") == slugify("Cafe\u0301") == "cafe"


def test_slugify_respects_max_length_without_trailing_dash() -> None:
    name = "word " * 40
    slug = slugify(name)
    assert len(slug) <= 80
    assert not slug.endswith("-")
    assert slugify("abcd efgh", max_length=5) == "abcd"
    assert slugify("abcdefgh", max_length=3) == "abc"
    assert slugify("夏", max_length=3) == "bun"


def test_slugify_rejects_silly_max_length() -> None:
    with pytest.raises(ValueError):
        slugify("x", max_length=0)


def test_slug_only_contains_safe_characters() -> None:
    for name in ["Ça va? Oui!", "x" * 200, "a--b__c..d", "Ünïcödé ⚡ power"]:
        slug = slugify(name)
        assert slug and all(c.isascii() and (c.isalnum() or c == "-") for c in slug)
        assert slug == slug.lower()
        assert "--" not in slug
        assert not slug.startswith("-") and not slug.endswith("-")


def test_slug_candidates() -> None:
    expected = ["gift-set", "gift-set-2", "gift-set-3", "gift-set-4"]
    assert list(islice(slug_candidates("gift-set"), 4)) == expected


def test_slug_candidates_respect_max_length() -> None:
    base = "x" * 80
    candidates = list(islice(slug_candidates(base), 12))
    assert candidates[0] == base
    assert candidates[1] == "x" * 78 + "-2"
    assert candidates[10] == "x" * 77 + "-11"
    assert all(len(c) <= 80 for c in candidates)
    assert len(set(candidates)) == len(candidates)


def test_slug_candidates_do_not_end_stem_with_dash() -> None:
    assert list(islice(slug_candidates("abc-def", max_length=6), 2)) == ["abc-de", "abc-2"]


def test_slug_candidates_do_not_repeat_the_base() -> None:
    assert list(islice(slug_candidates("foo-2", max_length=5), 3)) == ["foo-2", "foo-3", "foo-4"]


def test_slug_candidates_empty_base_falls_back() -> None:
    assert list(islice(slug_candidates(""), 2)) == ["bundle", "bundle-2"]


def test_unique_slug() -> None:
    assert unique_slug("gift-set", set()) == "gift-set"
    assert unique_slug("gift-set", {"gift-set"}) == "gift-set-2"
    assert unique_slug("gift-set", {"gift-set", "gift-set-2", "gift-set-4"}) == "gift-set-3"
    assert unique_slug("gift-set", ["other"]) == "gift-set"


def test_unique_slug_for_duplicate_names_in_one_shop() -> None:
    """Three legacy bundles named alike, plus two non-ASCII ones, get distinct slugs in order."""
    taken: set[str] = set()
    slugs = []
    for name in ["Gift Set", "Gift set", "GIFT-SET!", "夏のセット", "🎁🎁"]:
        slug = unique_slug(slugify(name), taken)
        taken.add(slug)
        slugs.append(slug)
    assert slugs == ["gift-set", "gift-set-2", "gift-set-3", "bundle", "bundle-2"]


def test_unique_slug_respects_max_length() -> None:
    base = slugify("y" * 100)
    assert len(base) == 80
    slug = unique_slug(base, {base})
    assert slug == "y" * 78 + "-2"
    assert unique_slug("abcdef", {"abcdef", "abcd-2"}, max_length=6) == "abcd-3"
