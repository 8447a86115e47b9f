"""A learner's engine as the hub sees it: hosted (a sandbox engine whose credentials the
hub holds), their own (BYOC: only the learner's uploaded bundle, while their server
runs), or none; the hub's own check of an exercise there, and a short health ping.

Read from the spawner's state directory (whale_core.layout) and the operator's Docker
engine, never from anything a learner sends.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import docker

from whale_core.bundle import CredentialBundle
from whale_core.errors import BundleError
from whale_core.explain import explain_exception
from whale_core.layout import (
    LEARNERS_DIR,
    ROLE_LABEL,
    RUNTIME_DIR,
    SITE_LABEL,
    labelled_owner,
    learner_engine_dir,
    learner_state_dir,
    read_owner,
    site_id_of,
)
from whale_core.names import engine_container
from whale_lessons.check import evaluate

HOSTED, OWN, NONE = "hosted", "own", "none"


@dataclasses.dataclass(frozen=True)
class LearnerEngine:
    """Where a learner's notebooks run their Docker commands, as far as the hub knows.

    `kind`: HOSTED (then `bundle` is the hub's way in, or None with `why` when the
    engine is not running), OWN or NONE.
    """

    kind: str
    bundle: CredentialBundle | None = None
    why: str = ""


def _owned_units(root: Path, username: str) -> list[str]:
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and read_owner(p) == username)


class EngineFinder:
    """Finds learners' engines on this site (the spawner's `state_dir`)."""

    def __init__(self, state_dir: str | Path):
        self.state_dir = Path(state_dir)
        self.site = site_id_of(self.state_dir)

    def engine_of(self, username: str, host: docker.DockerClient | None = None,
                  containers: dict[str, object] | None = None) -> LearnerEngine:
        """The learner's engine now. `containers` (name -> container, see `engines`)
        saves a look-up per learner when the caller asks for many."""
        # An uploaded bundle is on disk exactly while the learner's server runs on it.
        for unit in _owned_units(self.state_dir / RUNTIME_DIR, username):
            if (self.state_dir / RUNTIME_DIR / unit / "bundle").is_dir():
                return LearnerEngine(OWN)
        units = _owned_units(self.state_dir / LEARNERS_DIR, username)
        if not units:
            return LearnerEngine(NONE)
        own_host = host is None
        host = host or docker.from_env(timeout=10)
        try:
            if containers is None:
                containers = self.engines(host)
            why = "the engine is not running (the learner's server is stopped)"
            for unit in units:
                container = containers.get(engine_container(unit))
                directory = learner_state_dir(self.state_dir, unit)
                if container is None or labelled_owner(container.labels, directory) != username:
                    continue
                if container.status != "running":
                    continue
                bundle_dir = learner_engine_dir(self.state_dir, unit) / "bundle"
                try:
                    bundle = CredentialBundle.load(bundle_dir)
                except BundleError as exc:
                    why = str(exc)
                    continue
                # The bundle names the engine as the learner's server reaches it (on
                # their network); the hub reaches it at the port it publishes here.
                return LearnerEngine(HOSTED, dataclasses.replace(
                    bundle, docker_host=_published_host(container)))
            return LearnerEngine(HOSTED, None, why)
        finally:
            if own_host:
                host.close()

    def engines(self, host: docker.DockerClient) -> dict[str, object]:
        """This site's engine containers, by name."""
        found = host.containers.list(all=True, filters={"label": [
            f"{ROLE_LABEL}=engine", f"{SITE_LABEL}={self.site}"]})
        return {c.name: c for c in found}


def _published_host(container) -> str:
    binding = container.attrs["HostConfig"]["PortBindings"]["2376/tcp"][0]
    ip = binding.get("HostIp") or "127.0.0.1"
    # An engine published on every address is reached on the loopback one.
    return f"tcp://{'127.0.0.1' if ip == '0.0.0.0' else ip}:{binding['HostPort']}"  # noqa: S104


def verify(engine: LearnerEngine, exercise: str, timeout: float = 30.0) -> tuple[bool, str]:
    """The hub's own finding for `exercise` on a hosted engine: (done, what it found)."""
    if engine.bundle is None:
        return False, f"the hub could not check your engine: {engine.why}"
    try:
        client = engine.bundle.client(timeout=timeout)
    except BundleError as exc:
        return False, f"the hub could not check your engine: {exc}"
    try:
        return evaluate(exercise, client)
    except Exception as exc:  # a Docker error during the check: not done, and why
        return False, f"the hub's check could not finish: {explain_exception(exc, timeout)}"
    finally:
        client.close()


def health(engine: LearnerEngine, timeout: float = 2.0) -> str:
    """One short line on the engine's health, from a ping bounded by `timeout`."""
    if engine.kind == OWN:
        return "own engine"
    if engine.kind == NONE:
        return "no engine yet"
    if engine.bundle is None:
        return "stopped"
    start = time.monotonic()
    try:
        version = engine.bundle.ping(timeout=timeout)
    except BundleError as exc:
        return f"down: {str(exc).split(': ', 1)[-1]}"
    return f"ok: Docker {version.get('Version', '?')}, {1000 * (time.monotonic() - start):.0f} ms"
