"""Where a learner's Docker engine comes from.

A provider turns a learner into a credentials bundle on the hub's disk, which the
spawner mounts read-only into the learner's server:

- `SandboxProvider` (hosted, the embedded default): one TLS-only engine container per
  learner on the operator's engine, with its own CA and certificates, on a network of
  its own that only the learner's server joins.
- `ByocProvider` (bring your own compute): the learner uploads a Carina-style bundle
  or a `docker context export` archive on the spawn form; it is validated and pinged
  before the spawn starts. The archive lives in encrypted auth_state, and on disk only
  while the server runs.
"""
from __future__ import annotations

import asyncio
import base64
import os
import shutil
import tempfile
from pathlib import Path

import docker
from docker.errors import NotFound

from whale_core.archives import read_archive
from whale_core.bundle import CredentialBundle
from whale_core.errors import BundleError
from whale_core.layout import (
    LEARNERS_DIR,
    OWNER_LABEL,
    RUNTIME_DIR,
    SITE_LABEL,
    learner_runtime_dir,
    learner_state_dir,
    read_owner,
    site_id_of,
    write_owner,
)
from whale_core.names import Owner, claim_name, engine_container, learner_slug
from whale_hub.engine import SandboxEngine

from .pki import write_private


def _me(spawner) -> Owner:
    return (spawner.user.name, spawner.site_id)


def _labels_owner(labels: dict | None) -> Owner:
    labels = labels or {}
    return (labels.get(OWNER_LABEL), labels.get(SITE_LABEL))


def container_owner(host: docker.DockerClient, name: str) -> Owner | None:
    """Owner and site labels of the container called `name` (None: there is none)."""
    try:
        return _labels_owner(host.api.inspect_container(name)["Config"]["Labels"])
    except NotFound:
        return None


def network_owner(host: docker.DockerClient, name: str) -> Owner | None:
    """Owner and site labels of the network called `name` (None: there is none)."""
    try:
        return _labels_owner(host.api.inspect_network(name).get("Labels"))
    except NotFound:
        return None


def volume_owner(host: docker.DockerClient, name: str) -> Owner | None:
    """Owner and site labels of the volume called `name` (None: there is none)."""
    try:
        return _labels_owner(host.api.inspect_volume(name).get("Labels"))
    except NotFound:
        return None


def _dir_owner(directory: Path, me: Owner) -> Owner | None:
    """A learner directory's owner (this site's, being under its state_dir)."""
    return (read_owner(directory), me[1]) if directory.exists() else None


def claim(spawner, kind: str, default: str, owner_of, show=str) -> str:
    """The name of the learner's object of `kind` (remembered in the spawner's state):
    `default` unless it is taken by someone else's object, which is left alone.
    `show(name)` says what a name stands for, in the warning."""
    name, refused = claim_name(default, owner_of, _me(spawner), spawner.whale_names.get(kind))
    for other, (owner, site) in refused:
        spawner.log.warning("%s: %s %s belongs to %r (site %r), not to this learner: leaving it "
                            "alone and using %s", spawner.user.name, kind, show(other), owner, site,
                            show(name))
    spawner.whale_names[kind] = name
    return name


class SandboxProvider:
    """A hosted engine per learner, created on the operator's engine."""

    def __init__(self, spawner):
        self.spawner = spawner
        self.slug = learner_slug(spawner.user.name)
        # The engine's container and state directory share one name: the slug, or the
        # fresh one the spawner remembers when the slug's was someone else's.
        self.unit = spawner.whale_names.get("engine") or self.slug

    @property
    def name(self) -> str:
        return engine_container(self.unit)

    @property
    def state(self) -> Path:
        return learner_state_dir(self.spawner.state_dir, self.unit)

    def engine(self, host: docker.DockerClient) -> SandboxEngine:
        s = self.spawner
        return SandboxEngine(
            self.name, self.state / "engine", image=s.engine_image, host=host,
            registry_mirror=s.registry_mirror or None, swarm=s.engine_swarm,
            mem_limit=s.engine_mem_limit or None, pids_limit=s.engine_pids_limit or None,
            nano_cpus=int(s.engine_cpu_limit * 1e9) if s.engine_cpu_limit else None,
            network=s.network_name, labels=s.whale_labels, policy=s.engine_policy,
            disk_limit=s.engine_disk_limit or None,
        )

    def engine_owner(self, host: docker.DockerClient, unit: str) -> Owner | None:
        """Whose the engine called `unit` is: its container's labels and its state
        directory's owner file must both be this learner's, where they exist."""
        me = _me(self.spawner)
        found = container_owner(host, engine_container(unit))
        if found is not None and found != me:
            return found
        directory = learner_state_dir(self.spawner.state_dir, unit)
        if not directory.exists():
            return found
        owner = read_owner(directory)
        if owner is None and found == me:
            # Made before directories had owner files, with this learner's container.
            write_owner(directory, me[0])
            owner = me[0]
        return (owner, me[1])

    def prepare(self) -> Path:
        """Make what the learner's server needs before it starts: the engine's
        certificates, its bundle (returned, as a directory) and its network. Quick:
        the engine itself is started by launch(), while the server starts."""
        self._host = docker.from_env(timeout=60)
        try:
            self.unit = claim(self.spawner, "engine", self.slug,
                              lambda unit: self.engine_owner(self._host, unit),
                              show=lambda unit: f"{engine_container(unit)} ({LEARNERS_DIR}/{unit})")
            write_owner(self.state, self.spawner.user.name)
            self._engine = self.engine(self._host)
            self._engine.prepare()
            self._join_network()
            give_to(self._engine.bundle_dir, self.spawner.learner_uid)
        except BaseException:
            self._host.close()
            raise
        return self._engine.bundle_dir

    def _join_network(self) -> None:
        """An engine kept from before joins the learner's network if it is a new one."""
        container, network = self._engine.container, self.spawner.network_name
        if container is not None and network not in (
                container.attrs["NetworkSettings"].get("Networks") or {}):
            self._host.api.connect_container_to_network(container.id, network, aliases=["engine"])

    def launch(self) -> None:
        """Start (or create) the engine prepare() planned and wait until it answers over
        TLS (blocking)."""
        try:
            self._engine.launch()
            self._engine.wait_ready(timeout=self.spawner.engine_start_timeout)
        finally:
            self._host.close()

    def release(self, remove: bool) -> None:
        """Stop the engine (its images and containers are kept) or remove it entirely;
        an engine of that name that is not this learner's is left alone."""
        host = docker.from_env(timeout=60)
        try:
            owner = container_owner(host, self.name)
            if owner is None:
                return
            if owner != _me(self.spawner):
                self.spawner.log.warning("%s: engine %s belongs to %r (site %r): left alone",
                                         self.spawner.user.name, self.name, *owner)
                return
            engine = self.engine(host)
            try:
                engine.container = host.containers.get(self.name)
            except NotFound:
                return
            if remove:
                engine.remove()
            else:
                engine.stop()
        finally:
            host.close()


class ByocProvider:
    """The learner's own engine, from a bundle uploaded on the spawn form."""

    AUTH_STATE_KEY = "whale_bundle"

    def __init__(self, spawner):
        self.spawner = spawner
        self.slug = learner_slug(spawner.user.name)

    @property
    def runtime(self) -> Path:
        unit = self.spawner.whale_names.get("runtime") or self.slug
        return learner_runtime_dir(self.spawner.state_dir, unit)

    @staticmethod
    def validate(archive: bytes, ping_timeout: float) -> CredentialBundle:
        """Check an uploaded archive completely, including a live ping (blocking).

        Raises BundleError with a message for the learner.
        """
        files = read_archive(archive)
        CredentialBundle.from_files(files)
        # The SDK reads certificates from files: check the live engine from a private
        # temporary copy, removed right after.
        with tempfile.TemporaryDirectory(prefix="whale-byoc-") as tmp:
            for name, data in files.items():
                write_private(Path(tmp) / name, data)
            bundle = CredentialBundle.load(tmp)
            bundle.ping(timeout=ping_timeout)
        return bundle

    def materialize(self, archive: bytes) -> Path:
        """Write the bundle where the server's container can mount it (0700, key 0600)."""
        files = read_archive(archive)
        me = _me(self.spawner)
        claim(self.spawner, "runtime", self.slug,
              lambda unit: _dir_owner(learner_runtime_dir(self.spawner.state_dir, unit), me),
              show=lambda unit: f"{RUNTIME_DIR}/{unit}")
        write_owner(self.runtime, me[0])
        target = self.runtime / "bundle"
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True, mode=0o700)
        os.chmod(self.runtime, 0o700)
        for name, data in files.items():
            if name == "key.pem":
                write_private(target / name, data)
            else:
                (target / name).write_bytes(data)
        # Checked again: what is mounted must be exactly what was validated.
        CredentialBundle.load(target)
        give_to(target, self.spawner.learner_uid)
        return target

    def release(self, remove: bool) -> None:
        """Remove the bundle from disk (it stays in auth_state), if it is this learner's."""
        if read_owner(self.runtime) == self.spawner.user.name:
            shutil.rmtree(self.runtime, ignore_errors=True)


def give_to(bundle_dir: Path, uid: int) -> None:
    """Let the learner's server user (inside its container) read the mounted bundle.

    The directory stays 0700 and the key 0600; the parents on the hub host are root's
    and 0700, so no user of the hub host can reach them.
    """
    if os.geteuid() != 0:
        return
    os.chown(bundle_dir, uid, uid)
    for f in bundle_dir.iterdir():
        os.chown(f, uid, uid)


def encode_archive(data: bytes) -> str:
    return base64.b64encode(data).decode()


def decode_archive(text: str) -> bytes:
    return base64.b64decode(text.encode())


async def in_thread(func, *args, timeout: float | None = None):
    """Run blocking Docker work off the hub's event loop, in its own thread.

    Each learner's engine gets its own client inside the call, so a slow or dead
    endpoint stalls only its own spawn.
    """
    return await asyncio.wait_for(asyncio.to_thread(func, *args), timeout)


# OWNER_LABEL, SITE_LABEL and site_id_of live in .slugs; kept importable from here.
__all__ = ["SandboxProvider", "ByocProvider", "BundleError", "in_thread", "claim", "site_id_of",
           "OWNER_LABEL", "SITE_LABEL", "container_owner", "network_owner", "volume_owner",
           "encode_archive", "decode_archive"]
