"""The interface every engine provider implements, and what providers share: who owns
an object of a given name, and claiming a learner's names."""
from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

import docker
from docker.errors import NotFound

from whale_core.errors import BundleError
from whale_core.layout import SITE_LABEL, labelled_owner, read_owner
from whale_core.names import Owner, claim_name


class EngineProvider:
    """Where a learner's Docker engine comes from.

    A provider turns a learner into a credentials bundle directory on the hub's disk;
    the spawner mounts it read-only into the learner's server, where the kernel and the
    server extension pick it up. The spawner makes one provider per start and per stop,
    with itself as `spawner` (its traits, `user`, `log`, `whale_names`, `engine_upload`).

    Every method blocks: the spawner runs it on the hub's Docker executor. A learner's
    mistake is a BundleError, whose text the learner sees on the spawn page.

    To add a provider: subclass this in a module of its own and name it in the site's
    configuration, `c.WhaleSpawner.provider_classes = {"name": "module.Class"}` (or as
    an entry point in the `howtowhale.engine_providers` group); then
    `c.WhaleSpawner.provider = "name"`, or list it in `provider_choices`.
    """

    #: The provider's name: in configuration, and the value of user_options["engine"].
    name: ClassVar[str] = ""
    #: What the spawn form says for it.
    description: ClassVar[str] = ""
    #: Whether it takes an uploaded file from the spawn form (see `check_upload`).
    accepts_upload: ClassVar[bool] = False
    #: What the spawn page says while `prepare` runs.
    preparing: ClassVar[str] = "Getting your Docker engine ready"

    def __init__(self, spawner):
        self.spawner = spawner
        self.log = spawner.log

    @classmethod
    def check_upload(cls, upload: bytes) -> None:
        """Offline checks of a file uploaded on the spawn form, before anything is kept:
        raise BundleError with what is wrong. No side effects, no network."""
        raise BundleError("no-upload", f"{cls.description or cls.name} takes no upload.")

    def prepare(self) -> Path:
        """Make the learner's engine usable and return its bundle directory. Runs before
        the learner's server starts; keep it quick (see `launch`)."""
        raise NotImplementedError

    def launch(self) -> None:
        """Optional: the slow part (start an engine and wait until it answers), run
        while the learner's server starts."""

    def release(self, remove: bool) -> None:
        """Optional: after the learner's server stopped, stop (or, with `remove`, remove)
        what `prepare` made. Never touch what is not this learner's."""

    # -- shared by providers -------------------------------------------------------------
    @property
    def me(self) -> Owner:
        """(owner, site) of this learner's objects."""
        return (self.spawner.user.name, self.spawner.site_id)

    def claim(self, kind: str, default: str, owner_of, show=str) -> str:
        """The name of the learner's object of `kind` (remembered in the spawner's
        state): `default` unless it is taken by someone else's object, which is left
        alone. `show(name)` says what a name stands for, in the warning."""
        return claim(self.spawner, kind, default, owner_of, show)


def claim(spawner, kind: str, default: str, owner_of, show=str) -> str:
    """EngineProvider.claim, for the spawner's own objects (network, volume, server)."""
    name, refused = claim_name(default, owner_of, (spawner.user.name, spawner.site_id),
                               spawner.whale_names.get(kind))
    for other, (owner, site) in refused:
        spawner.log.warning("%s: %s %s belongs to %r (site %r), not to this learner: leaving it "
                            "alone and using %s", spawner.user.name, kind, show(other), owner, site,
                            show(name))
    spawner.whale_names[kind] = name
    return name


def labels_owner(labels: dict | None, directory: Path | None = None) -> Owner:
    """(owner, site) of an object with these labels; an engine of the warm pool's owner
    is in its state `directory` (whale_core.layout.labelled_owner)."""
    labels = labels or {}
    return (labelled_owner(labels, directory), labels.get(SITE_LABEL))


def container_owner(host: docker.DockerClient, name: str,
                    directory: Path | None = None) -> Owner | None:
    """Owner and site of the container called `name` (None: there is none); `directory`:
    its state directory, where an engine taken from the warm pool keeps its owner."""
    try:
        return labels_owner(host.api.inspect_container(name)["Config"]["Labels"], directory)
    except NotFound:
        return None


def network_owner(host: docker.DockerClient, name: str,
                  directory: Path | None = None) -> Owner | None:
    """Owner and site of the network called `name` (None: there is none); `directory`:
    for a pooled engine's network, the engine's state directory (its owner file)."""
    try:
        return labels_owner(host.api.inspect_network(name).get("Labels"), directory)
    except NotFound:
        return None


def volume_owner(host: docker.DockerClient, name: str) -> Owner | None:
    """Owner and site labels of the volume called `name` (None: there is none)."""
    try:
        return labels_owner(host.api.inspect_volume(name).get("Labels"))
    except NotFound:
        return None


def dir_owner(directory: Path, me: Owner) -> Owner | None:
    """A learner directory's owner (this site's, being under its state_dir)."""
    return (read_owner(directory), me[1]) if directory.exists() else None


def give_to(bundle_dir: Path, uid: int) -> None:
    """Let the learner's server user (inside its container) read the mounted bundle.

    The directory stays 0700 and the key 0600; the parents on the hub host are root's
    and 0700, so no user of the hub host can reach them.
    """
    if os.geteuid() != 0:
        return
    for top, dirs, files in os.walk(bundle_dir):
        for name in (".", *dirs, *files):
            os.chown(os.path.join(top, name), uid, uid, follow_symlinks=False)
