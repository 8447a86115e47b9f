"""Where things are, and whose they are: the state directory, the paths below it, and
the labels on every Docker object the site makes.

The one owner of these. The site's state directory is `$WHALE_STATE`, by default
`~/.whale`:

    <state>/hub/                 the hub's database, cookie secret, crypt key, pid files
    <state>/hub/engines/         the spawner's state_dir (below: one directory per learner)
        learners/<unit>/         a sandbox engine's TLS files and the learner's bundle
        run/<unit>/              an uploaded (BYOC) bundle, while the learner's server runs
    <state>/registry/            the lesson registry mirror
    <state>/local-engine/        `whale notebook`'s own engine
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

# -- labels ----------------------------------------------------------------------------
#: Whose an object is: the hub user name.
OWNER_LABEL = "org.howtowhale.owner"
#: Which site (hub) an object belongs to: site_id_of(the spawner's state_dir).
SITE_LABEL = "org.howtowhale.site"
#: What an object is: "engine", "network", "mirror" …
ROLE_LABEL = "org.howtowhale.role"
#: On a built image: the hash of the sources it was built from.
SOURCE_LABEL = "org.howtowhale.source"
#: On an engine made for the warm pool (whale_hub.pool), made before anyone owned it:
#: its owner is the owner file of its state directory, written when a learner takes it.
POOL_LABEL = "org.howtowhale.pool"

# -- the state directory -----------------------------------------------------------------
# Directories under the spawner's state_dir, one per learner, each with an owner file.
LEARNERS_DIR = "learners"  # a sandbox engine's TLS files and the learner's bundle
RUNTIME_DIR = "run"        # an uploaded (BYOC) bundle, while the server runs
OWNER_FILE = "owner"


def state_root() -> Path:
    """The site's state directory: $WHALE_STATE, by default ~/.whale."""
    return Path(os.environ.get("WHALE_STATE") or Path.home() / ".whale")


def hub_dir(state: Path | None = None) -> Path:
    """The hub's own files (database, cookie secret, crypt key)."""
    return (state or state_root()) / "hub"


def engines_dir(state: Path | None = None) -> Path:
    """The spawner's state_dir: learners' engines and bundles."""
    return hub_dir(state) / "engines"


def registry_dir(state: Path | None = None) -> Path:
    """The lesson registry mirror's data and pid file."""
    return (state or state_root()) / "registry"


def local_engine_dir(state: Path | None = None) -> Path:
    """`whale notebook`'s engine."""
    return (state or state_root()) / "local-engine"


def learner_state_dir(state_root: str | os.PathLike, unit: str) -> Path:
    """Hub-side directory of a sandbox engine: its TLS files and the learner's bundle."""
    return Path(state_root) / LEARNERS_DIR / unit


def learner_engine_dir(state_root: str | os.PathLike, unit: str) -> Path:
    """A sandbox engine's own state (TLS files, the learner's bundle in `bundle/`)."""
    return learner_state_dir(state_root, unit) / "engine"


def learner_runtime_dir(state_root: str | os.PathLike, unit: str) -> Path:
    """Hub-side directory of an uploaded bundle while the learner's server runs."""
    return Path(state_root) / RUNTIME_DIR / unit


# -- whose is it -------------------------------------------------------------------------
def site_id_of(state_dir: str | os.PathLike) -> str:
    """Which site (hub) a container or network belongs to: a hash of the hub-side state
    directory, so two sites, or a site and the tests, on one engine never touch each
    other's learners."""
    return hashlib.sha256(str(Path(state_dir).resolve()).encode()).hexdigest()[:12]


def read_owner(directory: str | os.PathLike) -> str | None:
    """The owner written into a learner's directory; None if it has no owner file."""
    try:
        return (Path(directory) / OWNER_FILE).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


def labelled_owner(labels: dict | None, directory: str | os.PathLike | None = None) -> str | None:
    """Whose an object with these labels is: its owner label, or for an engine of the
    warm pool (POOL_LABEL, no owner label: labels cannot change once it is made), the
    owner file of its state `directory` (None until a learner took it)."""
    labels = labels or {}
    if labels.get(POOL_LABEL) and OWNER_LABEL not in labels:
        return read_owner(directory) if directory is not None else None
    return labels.get(OWNER_LABEL)


def write_owner(directory: str | os.PathLike, username: str) -> None:
    """Make a learner's directory (0700) and say whose it is."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    (directory / OWNER_FILE).write_text(username, encoding="utf-8")


# -- the lesson-progress service ----------------------------------------------------------
#: In a learner's server: the URL of the hub's whale-progress service (whale-check reports
#: to it; the server extension asks it for the learner's lesson states).
PROGRESS_URL_VARIABLE = "WHALE_PROGRESS_URL"
