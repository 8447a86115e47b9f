"""Sandbox engines: one TLS-only Docker engine per learner, in a container.

The engine container runs `images/engine` on the operator's Docker engine with the
flags a nested dockerd needs on hosts where --privileged is refused. It gets its own
CA, a server certificate and a client certificate; the client side is written as a
Carina-layout credentials bundle, which is what the kernel, the server extension and
the spawner consume.
"""
from __future__ import annotations

import contextlib
import dataclasses
import shutil
import socket
import time
from pathlib import Path

import docker
from docker.errors import APIError, NotFound

from whale_core.bundle import CredentialBundle
from whale_core.errors import BundleError
from whale_core.layout import ROLE_LABEL
from whale_core.names import bridge_options

from .engine_disk import EngineDisk
from .pki import CertificateAuthority, write_client_bundle, write_engine_tls
from .specs import (
    CLASSROOM_ENGINE_OPTIONS,
    ENGINE_IMAGE,
    NESTED_ENGINE_OPTIONS,
    SECCOMP_PROFILE,
    EngineSettings,
    engine_container_spec,
    needs_rebuild,
)
from .subnets import DEFAULT_POOL, create_bridge


def free_port(ip: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind((ip, 0))
        return s.getsockname()[1]


class SandboxEngine:
    """A learner's Docker engine: a container that only listens with mutual TLS.

    `state_dir` holds the engine's TLS files (tls/), the learner's bundle (bundle/) and
    the CA that made them (ca/, never mounted anywhere). An engine is node 1 of its
    learner's Swarm, the one the bundle names; nodes 2 to 5 (whale_hub.cluster) are
    engines too, with certificates from node 1's CA, so the learner's bundle reaches
    them as well.
    """

    def __init__(self, name: str, state_dir: Path | str, *,
                 host: docker.DockerClient | None = None, port: int | None = None,
                 settings: EngineSettings | None = None, node: int = 1,
                 ca: CertificateAuthority | None = None, **options):
        """`settings`, or its fields as keyword arguments (EngineSettings). A node other
        than 1 takes node 1's `ca`."""
        self.name = name
        self.node = node
        self._ca = ca
        self.settings = settings or EngineSettings(**options)
        self.state_dir = Path(state_dir)
        self.host = host or docker.from_env()
        self.port = port  # the host port of its TLS listener: fixed at creation
        # Without a learner's network the engine still gets one of its own: no engine
        # is on the default bridge, where every other engine could reach its ports.
        self.own_network = f"{name}-net"
        disk_limit = self.settings.disk_limit
        self.disk = EngineDisk(self.state_dir, disk_limit, name) if disk_limit else None
        self.container = None

    @property
    def attached_network(self) -> str:
        """The one network the engine container is on."""
        return self.settings.network or self.own_network

    @property
    def hostname(self) -> str:
        """The engine's host name (`docker node ls`, `docker info`): node1, node2, ..."""
        return f"node{self.node}"

    @property
    def aliases(self) -> tuple[str, ...]:
        """Its names on its network, where the learner's server reaches it."""
        return ("engine", self.hostname) if self.node == 1 else (self.hostname,)

    @property
    def tls_dir(self) -> Path:
        return self.state_dir / "tls"

    @property
    def ca_dir(self) -> Path:
        return self.state_dir / "ca"

    def ca(self) -> CertificateAuthority | None:
        """The CA of this engine's certificates (None for an engine made before CAs were kept)."""
        return self._ca or CertificateAuthority.load(self.ca_dir)

    @property
    def bundle_dir(self) -> Path:
        return self.state_dir / "bundle"

    @property
    def docker_host(self) -> str:
        """Where the operator's machine reaches the engine."""
        return f"tcp://{self.settings.bind_ip}:{self.port}"

    @property
    def learner_host(self) -> str:
        """Where the learner's server reaches the engine (what the bundle says)."""
        if not self.settings.network:
            return self.docker_host  # no learner's server: the machine's own tools
        if self.settings.network_ip:
            return f"tcp://{self.settings.network_ip}:2376"
        return f"tcp://{self.name}:2376"

    def start(self, timeout: float = 30.0, wait: bool = True) -> CredentialBundle | None:
        """Create certificates, start the engine and (unless wait=False) wait until it
        answers over TLS."""
        self._remove_container()
        self._make_new()
        self.launch()
        return self.wait_ready(timeout) if wait else None

    def ensure(self, timeout: float = 30.0, wait: bool = True) -> CredentialBundle | None:
        """Reuse this engine if it exists (starting it if stopped), else create it."""
        self.prepare()
        self.launch()
        return self.wait_ready(timeout) if wait else None

    def prepare(self) -> None:
        """What a learner's server needs before it starts, quickly (no container is
        started): the engine's certificates and bundle, and its network. An engine that
        exists and fits is kept (with what the learner made on it); one made with another
        mirror, policy or engine image (an upgrade: say, one without the classroom
        policy) is replaced by a new one. launch() starts it."""
        why = self.rebuild_reason()
        if why is not None:
            self._remove_container()
            self._make_new()
            self._ensure_network()
            return
        self.port = int(self.container.attrs["HostConfig"]["PortBindings"]["2376/tcp"][0]["HostPort"])

    def rebuild_reason(self) -> str | None:
        """Why this engine must be made anew (None: it exists and fits; see prepare)."""
        try:
            self.container = self.host.containers.get(self.name)
            CredentialBundle.load(self.bundle_dir)
            why = needs_rebuild(self.container.attrs, self.settings,
                                self.host.images.get(self.settings.image).id)
        except (NotFound, BundleError) as exc:
            return str(exc)
        if why is None and self._ca is not None:
            try:
                same = (self.tls_dir / "ca.pem").read_bytes() == self._ca.cert_pem
            except FileNotFoundError:
                same = False
            why = None if same else "node made with another CA than its Swarm's first node"
        return why

    def _make_new(self) -> None:
        """Certificates and the client bundle of a new engine."""
        self.container = None
        if self.disk is not None:
            self.disk.remove()
        shutil.rmtree(self.state_dir, ignore_errors=True)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        # A fixed host port (not Docker's random one) survives a stop/start, so the
        # bundle's DOCKER_HOST stays right.
        self.port = self.port or free_port(self.settings.bind_ip)
        self._write_certificates(self._ca)

    def reissue(self) -> None:
        """A new CA and new certificates for an engine that exists, keeping its data (an
        engine made before CAs were kept gets one, to sign its Swarm's new nodes). A
        running engine is stopped: it uses them from its next start."""
        self.stop()
        shutil.rmtree(self.bundle_dir, ignore_errors=True)
        self._write_certificates(None)

    def _write_certificates(self, ca: CertificateAuthority | None) -> None:
        """The engine's TLS files and its client bundle, from `ca` (None: a new CA, kept)."""
        if ca is None:
            ca = CertificateAuthority.create(name=f"How to Whale CA for {self.name}")
            ca.save(self.ca_dir)
        ips = {"127.0.0.1", self.settings.bind_ip}
        if self.settings.network_ip:
            ips.add(self.settings.network_ip)
        server = ca.issue_server(hostnames=("localhost", self.name, *self.aliases),
                                 ips=tuple(sorted(ips)))
        client = ca.issue_client(common_name=self.name)
        write_engine_tls(self.tls_dir, ca, server)
        write_client_bundle(self.bundle_dir, ca, client, self.learner_host)

    def launch(self) -> None:
        """Start the engine prepare() planned: create it, or start it if it is stopped."""
        if self.container is not None:
            self.container.reload()  # stopped since prepare() looked (reissue() stops it)
            if self.container.status != "running":
                if self.disk is not None:
                    self.disk.ensure()  # after a reboot of the machine, say
                self.container.start()
            return
        self._ensure_network()
        spec = self.container_spec()
        api = self.host.api
        host_config = api.create_host_config(**spec["host_config"])
        host_config.update(spec["host_config_raw"])
        network, aliases, address = spec["endpoint"]
        endpoint = api.create_endpoint_config(aliases=aliases, ipv4_address=address)
        created = api.create_container(
            **spec["create"], host_config=host_config,
            networking_config=api.create_networking_config({network: endpoint}))
        api.start(created["Id"])
        self.container = self.host.containers.get(created["Id"])

    def join(self, network: str, address: str | None = None) -> None:
        """Put an engine kept from before (stopped) on `network`, its learner's network
        now, at `address`, and on no other. A network of that name made anew (the old one
        removed while the engine was stopped: `docker network prune`) is another network:
        the engine's stale endpoint is dropped and it joins the new one."""
        if self.container is None:
            return
        api = self.host.api
        current = api.inspect_network(network)["Id"]
        joined = self.container.attrs["NetworkSettings"].get("Networks") or {}
        for name, endpoint in joined.items():
            if name != network or endpoint.get("NetworkID") != current:
                api.disconnect_container_from_network(self.container.id, name, force=True)
        if (joined.get(network) or {}).get("NetworkID") != current:
            api.connect_container_to_network(self.container.id, network, aliases=list(self.aliases),
                                             ipv4_address=address)

    def container_spec(self) -> dict:
        """How this engine's container is created (whale_hub.specs.engine_container_spec)."""
        return engine_container_spec(
            self.name, self.settings, port=self.port, tls_dir=self.tls_dir.resolve(),
            network=self.attached_network,
            disk_dir=self.disk.ensure().resolve() if self.disk is not None else None,
            seccomp_profile=SECCOMP_PROFILE.read_text() if self.settings.policy else None,
            hostname=self.hostname, aliases=self.aliases)

    def wait_ready(self, timeout: float = 30.0) -> CredentialBundle:
        """Wait until the engine answers a TLS ping (and Swarm is active, if asked)."""
        bundle = CredentialBundle.load(self.bundle_dir)
        if bundle.docker_host != self.docker_host:
            bundle = dataclasses.replace(bundle, docker_host=self.docker_host)
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            client = None
            try:
                client = bundle.client(timeout=2)
                client.ping()
                swarm = client.info().get("Swarm", {}) if self.settings.swarm else {}
                if not self.settings.swarm or swarm.get("LocalNodeState") == "active":
                    return bundle
            except Exception as exc:  # not up yet
                last = exc
            finally:
                if client is not None:
                    client.close()
            self.container.reload()
            if self.container.status == "exited":
                raise RuntimeError(f"engine {self.name} exited: "
                                   + self.container.logs(tail=20).decode(errors="replace"))
            time.sleep(0.05)
        raise TimeoutError(f"engine {self.name} did not answer within {timeout:.0f} s: {last}")

    def network_address(self) -> str:
        """The engine's address on its network, where its Swarm's other nodes reach it."""
        self.container.reload()
        return self.container.attrs["NetworkSettings"]["Networks"][self.attached_network]["IPAddress"]

    def _ensure_network(self) -> None:
        # The bridge is named so that the host firewall's rules match it (firewall.py),
        # and cut from the learners' range: a subnet of its own, on which the nodes of
        # the engine's Swarm have fixed addresses.
        name = self.attached_network
        create_bridge(self.host, name, pool=self.settings.subnets or DEFAULT_POOL,
                      options=bridge_options(name),
                      labels={ROLE_LABEL: "network", **self.settings.labels})

    def stop(self, timeout: int = 5) -> None:
        """Stop the engine container (its images and containers stay in its volume)."""
        if self.container is not None:
            with contextlib.suppress(NotFound):
                self.container.stop(timeout=timeout)

    def restart(self, timeout: float = 30.0) -> CredentialBundle:
        """Start a stopped engine again, keeping its certificates and data."""
        self.container.start()
        return self.wait_ready(timeout)

    def _remove_container(self) -> None:
        try:
            c = self.container or self.host.containers.get(self.name)
            c.remove(force=True, v=True)
        except NotFound:
            pass
        self.container = None

    def remove(self, network: bool = True) -> None:
        """Remove the engine container, its data volume, its state directory, and (unless
        `network` is False: a node of a Swarm, whose network is its first node's) its
        network once nothing else is on it."""
        self._remove_container()
        if self.disk is not None:
            self.disk.remove()
        shutil.rmtree(self.state_dir, ignore_errors=True)
        if network:
            try:
                net = self.host.networks.get(self.attached_network)
                net.reload()
                if not net.containers:
                    net.remove()
            except (NotFound, APIError):
                pass


__all__ = ["CLASSROOM_ENGINE_OPTIONS", "ENGINE_IMAGE", "NESTED_ENGINE_OPTIONS", "EngineSettings",
           "SandboxEngine", "free_port"]
