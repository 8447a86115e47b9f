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
import hashlib
import os
import re
import shutil
import tempfile
from pathlib import Path

import docker
from docker.errors import NotFound

from whale_kernel.credentials import BundleError, CredentialBundle, read_archive

from .pki import write_private
from .sandbox import SandboxEngine

OWNER_LABEL = "org.howtowhale.owner"
SITE_LABEL = "org.howtowhale.site"


def site_id_of(state_dir: str | os.PathLike) -> str:
    """Which site (hub) a container or network belongs to: a hash of the hub-side state
    directory, so two sites, or a site and the tests, on one engine never touch each
    other's learners."""
    return hashlib.sha256(str(Path(state_dir).resolve()).encode()).hexdigest()[:12]


def safe_name(username: str) -> str:
    """A Docker-safe name for a learner (containers, networks, volumes)."""
    escaped = re.sub(r"[^a-z0-9_.-]", lambda m: f"-{ord(m.group()):x}", username.lower())
    return escaped.strip(".-") or "learner"


class SandboxProvider:
    """A hosted engine per learner, created on the operator's engine."""

    def __init__(self, spawner):
        self.spawner = spawner
        self.name = f"whale-engine-{safe_name(spawner.user.name)}"
        self.state = Path(spawner.state_dir) / "learners" / safe_name(spawner.user.name)

    def engine(self, host: docker.DockerClient) -> SandboxEngine:
        s = self.spawner
        return SandboxEngine(
            self.name, self.state / "engine", image=s.engine_image, host=host,
            registry_mirror=s.registry_mirror or None, swarm=s.engine_swarm,
            mem_limit=s.engine_mem_limit or None, pids_limit=s.engine_pids_limit or None,
            nano_cpus=int(s.engine_cpu_limit * 1e9) if s.engine_cpu_limit else None,
            network=s.network_name, labels=s.whale_labels, policy=s.engine_policy,
        )

    def prepare(self) -> Path:
        """Make what the learner's server needs before it starts: the engine's
        certificates, its bundle (returned, as a directory) and its network. Quick:
        the engine itself is started by launch(), while the server starts."""
        self._host = docker.from_env(timeout=60)
        try:
            self._engine = self.engine(self._host)
            self._engine.prepare()
            give_to(self._engine.bundle_dir, self.spawner.learner_uid)
        except BaseException:
            self._host.close()
            raise
        return self._engine.bundle_dir

    def launch(self) -> None:
        """Start (or create) the engine prepare() planned and wait until it answers over
        TLS (blocking)."""
        try:
            self._engine.launch()
            self._engine.wait_ready(timeout=self.spawner.engine_start_timeout)
        finally:
            self._host.close()

    def release(self, remove: bool) -> None:
        """Stop the engine (its images and containers are kept) or remove it entirely."""
        host = docker.from_env(timeout=60)
        try:
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
        self.runtime = Path(spawner.state_dir) / "run" / safe_name(spawner.user.name)

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


__all__ = ["SandboxProvider", "ByocProvider", "BundleError", "safe_name", "in_thread", "site_id_of",
           "OWNER_LABEL", "SITE_LABEL",
           "encode_archive", "decode_archive"]
