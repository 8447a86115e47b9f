"""Names of what is made for a learner, and the labels that say whose it is.

Every per-learner object (engine container, network, state and runtime directories,
work volume, server container) is named from one slug of the hub user name:

- a name that is already safe is its own slug: lower-case `[a-z0-9-]`, starting and
  ending with a letter or digit, no `--`, at most MAX_SLUG characters;
- any other name becomes `<safe prefix>--<hash>`: a readable prefix and the first
  HASH_CHARS hex digits of the name's sha256.

A plain slug has no `--` and an escaped one always has, so the two kinds never meet, and
two escaped names share a slug only if their hashes collide. The encoding is therefore
injective in practice, and the owner labels (whale_core.layout) catch the rest: an object found under
a learner's name is theirs only if its labels say so (see `claim_name`).

MAX_SLUG keeps `whale-engine-<slug>`, even with a fresh-name suffix, a valid DNS label
(at most 63 characters): it is the engine's hostname in its TLS certificate.
"""
from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Callable

MAX_SLUG = 40
HASH_CHARS = 12
# A fresh name (when a learner's usual name is taken by someone else's object) is the
# usual name + FRESH_MARK + random hex. No slug contains '---', so no fresh name is ever
# another learner's slug.
FRESH_MARK = "---"
FRESH_CHARS = 6

BRIDGE_NAME_OPTION = "com.docker.network.bridge.name"
BRIDGE_PREFIX = "whl"  # host firewall rules match learners' bridges as `whl+`

_SAFE = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*\Z")
_UNSAFE_RUN = re.compile(r"[^a-z0-9]+")

# (owner label, site label) of an object; None when nothing of that name exists.
Owner = tuple[str | None, str | None]


def learner_slug(username: str) -> str:
    """The slug of a hub user name: the name itself if it is safe, else
    `<safe prefix>--<hash>`. Different names give different slugs."""
    if len(username) <= MAX_SLUG and _SAFE.match(username):
        return username
    digest = hashlib.sha256(username.encode("utf-8", "surrogatepass")).hexdigest()[:HASH_CHARS]
    prefix = _UNSAFE_RUN.sub("-", username.lower()).strip("-")
    prefix = prefix[:MAX_SLUG - len("--") - HASH_CHARS].rstrip("-")
    return f"{prefix or 'x'}--{digest}"


def is_slug(text: str) -> bool:
    """Whether `text` is something learner_slug can return (for checks and tests)."""
    if len(text) > MAX_SLUG or not text:
        return False
    plain, sep, digest = text.rpartition("--")
    if not sep:
        return bool(_SAFE.match(text))
    return (bool(_SAFE.match(plain)) and len(digest) == HASH_CHARS
            and all(c in "0123456789abcdef" for c in digest))


def fresh_name(name: str) -> str:
    """Another name for a learner's object when `name` is someone else's."""
    return f"{name}{FRESH_MARK}{secrets.token_hex(FRESH_CHARS // 2)}"


# -- the per-learner objects ---------------------------------------------------------
def engine_container(unit: str) -> str:
    """The sandbox engine container (also its hostname on the learner's network)."""
    return f"whale-engine-{unit}"


def engine_worker_service(unit: str, node: int) -> str:
    """Node `node` (2 to 5) of a deployed site's learner's Swarm, a Swarm service: a
    service's name is a DNS label (no dot, 63 characters at most), and no other kind of
    object is called `whale-node…`."""
    return f"whale-node{node}-{unit}"


def learner_network(slug: str) -> str:
    """The network that only the learner's server and engine join."""
    return f"whale-net-{slug}"


def work_volume(slug: str) -> str:
    """The volume with the learner's notebooks (kept when the server stops)."""
    return f"whale-work-{slug}"


def server_container(slug: str, prefix: str = "jupyter") -> str:
    """The learner's notebook server container (DockerSpawner's `{prefix}-{username}`)."""
    return f"{prefix}-{slug}"


def bridge_interface(network_name: str) -> str:
    """The Linux bridge of a learner's network: `whl` + 12 hex digits (15 characters,
    the kernel's limit), so the host's firewall can match every learner's bridge."""
    return BRIDGE_PREFIX + hashlib.sha256(network_name.encode()).hexdigest()[:12]


def bridge_options(network_name: str) -> dict[str, str]:
    """Driver options of a learner's network (`options=` of networks.create)."""
    return {BRIDGE_NAME_OPTION: bridge_interface(network_name)}


def claim_name(default: str, owner_of: Callable[[str], Owner | None], me: Owner,
               remembered: str | None = None, attempts: int = 8,
               ) -> tuple[str, list[tuple[str, Owner]]]:
    """The name to use for one of a learner's objects, and the others' objects passed by.

    The remembered name (from the spawner's state), else `default`, unless an object of
    that name exists whose owner is not `me` (owner, site): then fresh names are tried.
    `owner_of(name)` is None when nothing has that name. Nothing is touched here.
    """
    name = remembered or default
    refused: list[tuple[str, Owner]] = []
    for _ in range(attempts):
        owner = owner_of(name)
        if owner is None or tuple(owner) == tuple(me):
            return name, refused
        refused.append((name, owner))
        name = fresh_name(default)
    raise RuntimeError(f"no free name for {default!r} after {attempts} tries")


__all__ = [
    "MAX_SLUG",
    "Owner",
    "bridge_interface",
    "bridge_options",
    "claim_name",
    "engine_container",
    "fresh_name",
    "is_slug",
    "learner_network",
    "learner_slug",
    "server_container",
    "work_volume",
]
