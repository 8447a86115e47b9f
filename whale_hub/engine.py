"""Sandbox engines: one TLS-only Docker engine per learner, in a container.

The engine container runs `images/engine` on the operator's Docker engine with the
flags a nested dockerd needs on hosts where --privileged is refused. It gets its own
CA, a server certificate and a client certificate; the client side is written as a
Carina-layout credentials bundle, which is what the kernel, the server extension and
the spawner consume.
"""
from __future__ import annotations

import dataclasses
import shutil
import socket
import time
from pathlib import Path

import docker
from docker.errors import APIError, NotFound

from whale_core.bundle import CredentialBundle
from whale_core.errors import BundleError
from whale_core.names import bridge_options

from .engine_disk import EngineDisk
from .pki import CertificateAuthority, write_client_bundle, write_engine_tls

ENGINE_IMAGE = "howtowhale/engine"
LABEL = "org.howtowhale.role"

# Docker's default capabilities, which the engine hands on to its containers.
DEFAULT_CAPS = ("CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID",
                "SETUID", "SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL",
                "AUDIT_WRITE")
# A classroom engine (README, "Security model"): only what a nested dockerd needs, found
# by taking capabilities away one by one until containers, builds, published ports,
# networks, volumes and Swarm services stopped working: SYS_ADMIN (mounts, namespaces,
# cgroups), NET_ADMIN (bridges, iptables) and SYS_PTRACE (runc inspects its children's
# namespaces). Our own seccomp profile refuses the calls none of them needs. Nothing of
# the host is mounted: the engine's cgroups are its own (a private cgroup namespace).
# `systempaths=unconfined` stays: the kernel lets runc mount /proc for a container in a
# user namespace only where /proc is not partly masked.
CLASSROOM_ENGINE_OPTIONS = dict(
    cap_drop=["ALL"],
    cap_add=[*DEFAULT_CAPS, "SYS_ADMIN", "NET_ADMIN", "SYS_PTRACE"],
    cgroupns="private",
)
SECCOMP_PROFILE = Path(__file__).resolve().parent.parent / "images" / "engine" / "seccomp.json"
# A trusted class's engine (engine_policy = False: privileged containers allowed): the
# feasibility recipe of DESIGN.md. It holds every capability and binds the host's
# cgroups: not a sandbox.
NESTED_ENGINE_OPTIONS = dict(
    cap_add=["ALL"],
    cap_drop=["SYS_RESOURCE"],
    security_opt=["seccomp=unconfined", "apparmor=unconfined"],
)


def free_port(ip: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind((ip, 0))
        return s.getsockname()[1]


class SandboxEngine:
    """A learner's Docker engine: a container that only listens with mutual TLS.

    `state_dir` holds the engine's TLS files (tls/) and the learner's bundle (bundle/).
    """

    def __init__(self, name: str, state_dir: Path | str, *, image: str = ENGINE_IMAGE,
                 host: docker.DockerClient | None = None, bind_ip: str = "127.0.0.1",
                 port: int | None = None, registry_mirror: str | None = None,
                 swarm: bool = False, mem_limit: str | None = None,
                 pids_limit: int | None = None, nano_cpus: int | None = None,
                 labels: dict[str, str] | None = None, network: str | None = None,
                 network_ip: str | None = None, policy: bool = True,
                 disk_limit: str | int | None = None):
        self.name = name
        # The classroom policy (images/engine/whale-gate): user namespaces, and no
        # privileged containers, host namespaces or system bind mounts.
        self.policy = policy
        self.state_dir = Path(state_dir)
        self.image = image
        self.host = host or docker.from_env()
        self.bind_ip = bind_ip
        self.port = port
        self.registry_mirror = registry_mirror
        self.swarm = swarm
        self.mem_limit = mem_limit
        self.pids_limit = pids_limit
        self.nano_cpus = nano_cpus
        self.labels = dict(labels or {})
        # With a network, the learner's server reaches the engine there by name (the
        # bundle says so); the loopback port stays for the hub's own checks.
        self.network = network
        self.network_ip = network_ip  # a fixed address there, named in the bundle
        # Without a learner's network the engine still gets one of its own: no engine
        # is on the default bridge, where every other engine could reach its ports.
        self.own_network = f"{name}-net"
        # The size of the engine's data root (its images, containers, volumes); None
        # for an unbounded Docker volume.
        self.disk = EngineDisk(self.state_dir, disk_limit, name) if disk_limit else None
        self.container = None

    @property
    def attached_network(self) -> str:
        """The one network the engine container is on."""
        return self.network or self.own_network

    @property
    def tls_dir(self) -> Path:
        return self.state_dir / "tls"

    @property
    def bundle_dir(self) -> Path:
        return self.state_dir / "bundle"

    @property
    def docker_host(self) -> str:
        """Where the operator's machine reaches the engine."""
        return f"tcp://{self.bind_ip}:{self.port}"

    @property
    def learner_host(self) -> str:
        """Where the learner's server reaches the engine (what the bundle says)."""
        if self.network_ip:
            return f"tcp://{self.network_ip}:2376"
        return f"tcp://{self.name}:2376" if self.network else self.docker_host

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
        try:
            self.container = self.host.containers.get(self.name)
            CredentialBundle.load(self.bundle_dir)
            env = dict(e.split("=", 1) for e in self.container.attrs["Config"]["Env"] or [])
            if env.get("WHALE_REGISTRY_MIRROR", "") != (self.registry_mirror or ""):
                raise BundleError("stale", "engine made with another registry mirror")
            if env.get("WHALE_ENGINE_POLICY", "1") != ("1" if self.policy else "0"):
                raise BundleError("stale", "engine made with another classroom policy")
            if self.container.attrs["Image"] != self.host.images.get(self.image).id:
                raise BundleError("stale", "engine made from an older engine image")
        except (NotFound, BundleError):
            self._remove_container()
            self._make_new()
            self._ensure_network()
            return
        self.port = int(self.container.attrs["HostConfig"]["PortBindings"]["2376/tcp"][0]["HostPort"])

    def _make_new(self) -> None:
        """Certificates and the client bundle of a new engine."""
        self.container = None
        if self.disk is not None:
            self.disk.remove()
        shutil.rmtree(self.state_dir, ignore_errors=True)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        ca = CertificateAuthority.create(name=f"How to Whale CA for {self.name}")
        ips = sorted({"127.0.0.1", self.bind_ip} | ({self.network_ip} if self.network_ip else set()))
        server = ca.issue_server(hostnames=("localhost", self.name), ips=tuple(ips))
        client = ca.issue_client(common_name=self.name)
        write_engine_tls(self.tls_dir, ca, server)
        # A fixed host port (not Docker's random one) survives a stop/start, so the
        # bundle's DOCKER_HOST stays right.
        self.port = self.port or free_port(self.bind_ip)
        write_client_bundle(self.bundle_dir, ca, client, self.learner_host)

    def launch(self) -> None:
        """Start the engine prepare() planned: create it, or start it if it is stopped."""
        if self.container is not None:
            if self.container.status != "running":
                if self.disk is not None:
                    self.disk.ensure()  # after a reboot of the machine, say
                self.container.start()
            return
        env = {}
        if self.registry_mirror:
            env["WHALE_REGISTRY_MIRROR"] = self.registry_mirror
        if self.swarm:
            env["WHALE_SWARM"] = "1"
        if not self.policy:
            env["WHALE_ENGINE_POLICY"] = "0"
        self._ensure_network()
        api = self.host.api
        host_config = api.create_host_config(**self.host_config_options())
        if self.policy:
            host_config["SecurityOpt"] = ["seccomp=" + SECCOMP_PROFILE.read_text()]
        # `--security-opt systempaths=unconfined` in the CLI: nothing masked or read-only
        # under /proc and /sys (the SDK has no parameter for it).
        host_config["MaskedPaths"] = []
        host_config["ReadonlyPaths"] = []
        endpoint = api.create_endpoint_config(aliases=["engine"], ipv4_address=self.network_ip)
        created = api.create_container(
            self.image, name=self.name, detach=True, environment=env,
            labels={LABEL: "engine", **self.labels}, ports=[2376], host_config=host_config,
            networking_config=api.create_networking_config({self.attached_network: endpoint}),
        )
        api.start(created["Id"])
        self.container = self.host.containers.get(created["Id"])

    def host_config_options(self) -> dict:
        """The engine container's HostConfig, as docker-py's create_host_config takes it."""
        binds = {str(self.tls_dir.resolve()): {"bind": "/etc/whale/tls", "mode": "ro"}}
        if self.disk is not None:
            binds[str(self.disk.ensure().resolve())] = {"bind": "/var/lib/docker", "mode": "rw"}
        options = dict(CLASSROOM_ENGINE_OPTIONS) if self.policy else dict(NESTED_ENGINE_OPTIONS)
        if not self.policy:
            binds["/sys/fs/cgroup"] = {"bind": "/sys/fs/cgroup", "mode": "rw"}
        return dict(
            port_bindings={2376: (self.bind_ip, self.port)}, binds=binds,
            network_mode=self.attached_network,
            mem_limit=self.mem_limit, pids_limit=self.pids_limit, nano_cpus=self.nano_cpus,
            # Swap would let a learner's memory hog slow the whole machine down.
            memswap_limit=self.mem_limit,
            **options,
        )

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
                if not self.swarm or client.info().get("Swarm", {}).get("LocalNodeState") == "active":
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

    def _ensure_network(self) -> None:
        # The bridge is named so that the host firewall's rules match it (firewall.py).
        name = self.attached_network
        try:
            self.host.networks.get(name)
        except NotFound:
            self.host.networks.create(name, driver="bridge", options=bridge_options(name),
                                      labels={LABEL: "network", **self.labels})

    def stop(self, timeout: int = 5) -> None:
        """Stop the engine container (its images and containers stay in its volume)."""
        if self.container is not None:
            try:
                self.container.stop(timeout=timeout)
            except NotFound:
                pass

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

    def remove(self) -> None:
        """Remove the engine container, its data volume, its state directory, and its
        network once nothing else is on it."""
        self._remove_container()
        if self.disk is not None:
            self.disk.remove()
        shutil.rmtree(self.state_dir, ignore_errors=True)
        if self.network or self.own_network:
            try:
                net = self.host.networks.get(self.attached_network)
                net.reload()
                if not net.containers:
                    net.remove()
            except (NotFound, APIError):
                pass


__all__ = ["SandboxEngine", "ENGINE_IMAGE", "NESTED_ENGINE_OPTIONS", "CLASSROOM_ENGINE_OPTIONS",
           "BundleError", "free_port"]
