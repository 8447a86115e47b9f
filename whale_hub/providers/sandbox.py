"""`sandbox` (hosted, the embedded default): one TLS-only engine container per learner
on the operator's engine, with its own CA and certificates, on a network of its own
that only the learner's server joins."""
from __future__ import annotations

from pathlib import Path

import docker
from docker.errors import NotFound

from whale_core.errors import BundleError
from whale_core.layout import LEARNERS_DIR, learner_engine_dir, learner_state_dir, read_owner, write_owner
from whale_core.names import Owner, engine_container, learner_slug

from ..cluster import SandboxCluster
from ..specs import EngineSettings
from .base import EngineProvider, container_owner, give_to


class HostedProvider(EngineProvider):
    """What the hosted providers share (this one, and a deployed site's,
    providers/swarm.py): the spawn form's choice, the engine's name, and the nodes the
    learner chose (a refused choice is said when the engine is prepared, not when it is
    released)."""

    name = "sandbox"
    description = "A fresh Docker engine hosted for me"
    preparing = "Creating your Docker engine"

    def __init__(self, spawner):
        super().__init__(spawner)
        self.slug = learner_slug(spawner.user.name)
        # The engine's container (or service) and state directory share one name: the
        # slug, or the fresh one the spawner remembers when the slug's was someone else's.
        self.unit = spawner.whale_names.get("engine") or self.slug
        self._refused = None
        try:
            self.nodes = spawner.engine_node_count()
        except BundleError as exc:
            self.nodes, self._refused = 1, exc
        if self.nodes > 1:
            self.preparing = f"Creating your Swarm of {self.nodes} Docker engines"
        self._host = None


class SandboxProvider(HostedProvider):
    """A hosted engine per learner, created on the operator's engine."""

    def __init__(self, spawner):
        super().__init__(spawner)
        self._engine = None

    @property
    def container_name(self) -> str:
        return engine_container(self.unit)

    @property
    def state(self) -> Path:
        return learner_state_dir(self.spawner.state_dir, self.unit)

    def settings(self) -> EngineSettings:
        """The learner's engine, as the spawner's traits say."""
        return self.spawner.engine_settings(network=self.spawner.network_name,
                                            labels=self.spawner.whale_labels)

    def engine(self, host: docker.DockerClient, nodes: int | None = None) -> SandboxCluster:
        """The learner's engine: node 1 of a Swarm of `nodes` (this start's, by default)."""
        return SandboxCluster(self.container_name,
                              learner_engine_dir(self.spawner.state_dir, self.unit), host=host,
                              settings=self.settings(), nodes=nodes or self.nodes)

    def engine_owner(self, host: docker.DockerClient, unit: str) -> Owner | None:
        """Whose the engine called `unit` is: its container's labels and its state
        directory's owner file must both be this learner's, where they exist."""
        me = self.me
        directory = learner_state_dir(self.spawner.state_dir, unit)
        found = container_owner(host, engine_container(unit), directory)
        if found is not None and found != me:
            return found
        if not directory.exists():
            return found
        owner = read_owner(directory)
        if owner is None and found == me:
            # Made before directories had owner files, with this learner's container.
            write_owner(directory, me[0])
            owner = me[0]
        return (owner, me[1])

    def prepare(self) -> Path:
        """The engine's certificates, its bundle (returned) and its network. Quick: the
        engine itself is started by launch(), while the server starts."""
        if self._refused is not None:
            raise self._refused
        self._host = docker.from_env(timeout=60)
        try:
            self.unit = self.claim(
                "engine", self.slug, lambda unit: self.engine_owner(self._host, unit),
                show=lambda unit: f"{engine_container(unit)} ({LEARNERS_DIR}/{unit})")
            write_owner(self.state, self.spawner.user.name)
            self._engine = self.engine(self._host)
            self._engine.prepare()
            give_to(self._engine.bundle_dir, self.spawner.learner_uid)
        except BaseException:
            self._host.close()
            raise
        return self._engine.bundle_dir

    def _join_network(self) -> None:
        """Engines kept from before (node 1 and any other nodes) join the learner's network
        if it is a new one (or one made anew), each at its fixed address there, and leave
        any other."""
        network = self.spawner.network_name
        for node, engine in enumerate([self._engine.manager, *self._engine.workers], start=1):
            engine.join(network, self._engine.address_of(node))

    def launch(self) -> None:
        """Start (or create) the engine prepare() planned and wait until it answers over
        TLS; with more nodes, until they are one Swarm."""
        try:
            self._join_network()  # while the server starts: it needs the engine only later
            self._engine.launch(timeout=self.spawner.engine_start_timeout,
                                say=lambda text: self.spawner.emit_from_thread(60, text))
        finally:
            self._host.close()

    def release(self, remove: bool) -> None:
        """Stop the engine (its images and containers are kept) or remove it entirely;
        an engine of that name that is not this learner's is left alone."""
        host = docker.from_env(timeout=60)
        try:
            owner = container_owner(host, self.container_name, self.state)
            if owner is None:
                return
            if owner != self.me:
                self.log.warning("%s: engine %s belongs to %r (site %r): left alone",
                                 self.spawner.user.name, self.container_name, *owner)
                return
            cluster = self.engine(host)
            try:
                cluster.manager.container = host.containers.get(self.container_name)
            except NotFound:
                return
            if remove:
                cluster.remove()
            else:
                cluster.stop()
        finally:
            host.close()
