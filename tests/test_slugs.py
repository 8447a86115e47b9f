"""Naming of learners' objects (whale_hub.slugs): two hub user names never give one name.

Pure: no Docker, no hub. The real objects are tested in test_hub.py.
"""
from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from whale_core.layout import read_owner, write_owner
from whale_core.names import (
    FRESH_MARK,
    MAX_SLUG,
    bridge_interface,
    claim_name,
    engine_container,
    engine_worker_service,
    fresh_name,
    is_slug,
    learner_network,
    learner_slug,
)

DNS_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\Z")
HOSTILE = [
    "ada", "ada.", "-ada", "ada-", ".ada", "Ada", "ADA", "a@b", "a-40b", "a-b", "a--b", "a---b",
    "a_b", "a b", "a.b", "a/b", "a\\b", "a%40b", "a-2db", "ada-2d", "a\nb", "a\x00b", "ada\u200b",
    "ädä", "ada\u0301", "\u0430da",  # CYRILLIC SMALL LETTER A
    "\u212aelvin", "kelvin", "İstanbul", "istanbul", "日本語", "🐳", "🐳🐳",
    "x" * 40, "x" * 41, "x" * 300, "x" * 299 + "y", "-" * 300, "a" + "-b" * 150,
    ".", "..", "-", "--", "---", "_", " ", "@", "", "0", "00", "1a", "a1",
    "ada--0123456789ab", "ada---1a2b3c", "x--" + "0" * 12, "{username}", "{prefix}",
]


def test_safe_names_are_their_own_slugs():
    for name in ("ada", "a-b", "a1-b2-c3", "t1234abcd-alice", "0", "x" * MAX_SLUG):
        assert learner_slug(name) == name


@pytest.mark.parametrize("name", HOSTILE, ids=repr)
def test_every_slug_is_safe(name):
    slug = learner_slug(name)
    assert is_slug(slug), slug
    assert re.fullmatch(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?", slug)
    assert len(slug) <= MAX_SLUG
    # The engine's hostname (its certificate names it), even under a fresh name.
    assert DNS_LABEL.match(engine_container(fresh_name(slug)))
    assert learner_slug(name) == slug  # stable


def test_hostile_names_get_distinct_slugs():
    slugs = [learner_slug(name) for name in HOSTILE]
    assert len(set(slugs)) == len(HOSTILE), sorted(slugs)


def test_escaped_slugs_never_meet_plain_names():
    """`ada.` was `ada`, and `a@b` was `a-40b`: an escaped slug has a `--`, and a plain
    one never does."""
    assert learner_slug("ada.") != "ada"
    assert "--" in learner_slug("ada.")
    assert learner_slug("a@b") != learner_slug("a-40b") == "a-40b"
    assert learner_slug("a--b") != "a--b"
    for name in HOSTILE:
        slug = learner_slug(name)
        assert (slug == name) == ("--" not in slug)


def test_every_short_name_over_a_tricky_alphabet_gets_its_own_slug():
    names = ["".join(t) for n in range(5) for t in itertools.product("a-.A@", repeat=n)]
    assert len({learner_slug(n) for n in names}) == len(names)


def test_fresh_names_are_never_slugs():
    for name in HOSTILE:
        fresh = fresh_name(learner_slug(name))
        assert FRESH_MARK in fresh
        assert not is_slug(fresh)
        assert fresh != fresh_name(learner_slug(name))


def test_bridge_interfaces_fit_linux_and_the_firewall_rule():
    names = [learner_network(learner_slug(n)) for n in HOSTILE]
    bridges = [bridge_interface(n) for n in names]
    for bridge in bridges:
        assert re.fullmatch(r"whl[0-9a-f]{12}", bridge)
        assert len(bridge) <= 15
    assert len(set(bridges)) == len(set(names))


def test_claim_name_leaves_others_objects_alone():
    me = ("ada", "site1")
    owners = {"whale-engine-ada": ("ada.", "site1")}
    name, refused = claim_name("whale-engine-ada", owners.get, me)
    assert name.startswith("whale-engine-ada" + FRESH_MARK)
    assert refused == [("whale-engine-ada", ("ada.", "site1"))]
    # Found again from the spawner's state; ours, or nothing there: used as is.
    assert claim_name("whale-engine-ada", owners.get, me, remembered=name) == (name, [])
    owners[name] = me
    assert claim_name("whale-engine-ada", owners.get, me, remembered=name) == (name, [])
    assert claim_name("whale-engine-bob", owners.get, me) == ("whale-engine-bob", [])
    # The same owner on another site, or no labels at all, is not this learner.
    for other in (("ada", "site2"), (None, None)):
        name, refused = claim_name("n", {"n": other}.get, me)
        assert name != "n"
        assert refused == [("n", other)]


def test_owner_files(tmp_path):
    assert read_owner(tmp_path / "ada") is None
    write_owner(tmp_path / "ada", "ada.")
    assert read_owner(tmp_path / "ada") == "ada."
    assert (tmp_path / "ada").stat().st_mode & 0o777 == 0o700


@settings(max_examples=300, database=None, deadline=None)
@given(st.lists(st.one_of(st.text(), st.text(alphabet="ab-._@A1 \u00e4", max_size=45)),
                unique=True, min_size=2, max_size=40))
def test_different_names_never_share_a_slug(names):
    slugs = [learner_slug(n) for n in names]
    assert len(set(slugs)) == len(names)
    assert all(is_slug(s) for s in slugs)


def test_a_deployed_sites_engine_services_are_dns_labels():
    """A deployed site's engines are Swarm services, whose names are DNS labels: the
    longest (a hashed slug, made fresh) fits, for every node of a learner's Swarm."""
    unit = fresh_name(learner_slug("a" * 100))
    assert len(learner_slug("a" * 100)) == MAX_SLUG
    for name in (engine_container(unit), *(engine_worker_service(unit, n) for n in range(2, 6))):
        assert re.fullmatch(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", name), name
