"""A learner's Swarm of sandbox engines: node1, the manager the learner's bundle names,
and nodes 2 to 5 as workers, each a classroom engine of its own on the learner's network.

Every node is a SandboxEngine: the gate, the user namespaces, the seccomp profile and
the limits hold on each. Their certificates come from node 1's CA, so the learner's
bundle reaches every node (`docker --host tcp://node3:2376 ...`), and the hub reaches
them through their TLS ports to join them.

`assemble()` makes the Swarm what it should be, whatever it was: it runs at every start,
so a cluster whose manager left the Swarm, whose nodes were replaced by newer engines,
or that had fewer or more nodes is put right. Join tokens travel only from the manager
to the hub to the workers, over TLS: never in a container's configuration, a label, a
file or a log.
"""
from __future__ import annotations

import contextlib
import dataclasses
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import docker
from docker.errors import APIError, NotFound

from whale_core.bundle import CredentialBundle

from .engine import SandboxEngine
from .specs import EngineSettings
from .subnets import network_subnet, node_address

#: A learner's Swarm has at most this many nodes.
MAX_NODES = 5
SWARM_PORT = 2377
#: Where the Swarm's overlay networks take their subnets: apart from the learners'
#: networks (10.200.0.0/16) and the engine's own bridges (10.213/24, 10.214/16).
OVERLAY_POOL = "10.215.0.0/16"


class ClusterError(RuntimeError):
    """The Swarm could not be assembled (says which node and why)."""


def worker_name(manager: str, node: int) -> str:
    """The container of node `node` of the engine `manager`. A learner's slug never holds
    a dot, so no learner's engine is called this."""
    return f"{manager}.node{node}"


class SandboxCluster:
    """`nodes` sandbox engines as one Swarm (nodes=1: the engine alone, as before).

    `state_dir` is the manager's state directory; each worker's is a sibling of it
    (`node2/`, ...), so that remaking the manager never touches a worker's disk.
    """

    def __init__(self, name: str, state_dir: Path | str, *, host: docker.DockerClient,
                 settings: EngineSettings, nodes: int = 1, port: int | None = None):
        if not 1 <= nodes <= MAX_NODES:
            raise ValueError(f"a learner's Swarm has 1 to {MAX_NODES} nodes, not {nodes}")
        self.name = name
        self.host = host
        self.nodes = nodes
        self.settings = settings
        self.state_dir = Path(state_dir)
        self.manager = SandboxEngine(name, state_dir, host=host, port=port,
                                     settings=dataclasses.replace(
                                         settings, swarm=settings.swarm and nodes == 1))
        self.workers: list[SandboxEngine] = []

    @property
    def is_swarm(self) -> bool:
        return self.nodes > 1

    def worker(self, node: int) -> SandboxEngine:
        """Node `node` (2 to 5) as an engine object (whether it exists or not)."""
        settings = dataclasses.replace(self.settings, swarm=False,
                                       network=self.manager.attached_network,
                                       network_ip=self.address_of(node))
        return SandboxEngine(worker_name(self.name, node), self.state_dir.parent / f"node{node}",
                             host=self.host, settings=settings, node=node, ca=self.manager.ca())

    def address_of(self, node: int) -> str | None:
        """A node's fixed address on the learner's network (None where the network has
        no subnet to take it from)."""
        try:
            subnet = network_subnet(self.host, self.manager.attached_network)
        except NotFound:
            return None
        return node_address(subnet, node) if subnet is not None else None

    @property
    def bundle_dir(self) -> Path:
        return self.manager.bundle_dir

    # -- before the learner's server starts ------------------------------------------------
    def prepare(self) -> None:
        """Certificates, bundle and network, and nodes beyond `nodes` removed. Quick: no
        node is started here (launch)."""
        remake = self.manager.rebuild_reason() is not None
        # A new manager is a new CA and a new Swarm: its old workers go with it.
        self.remove_workers(above=1 if remake else self.nodes)
        if remake and self.manager.settings.network_ip is None:
            # A fixed address on the network, so that its workers find it after a restart.
            self.manager._ensure_network()
            ip = self.address_of(1)
            if ip is not None:
                self.manager.settings = dataclasses.replace(self.manager.settings, network_ip=ip)
        self.manager.prepare()
        if self.is_swarm and self.manager.ca() is None:
            self.manager.reissue()  # made before CAs were kept
        self.workers = [self.worker(node) for node in range(2, self.nodes + 1)]
        for worker in self.workers:
            worker.prepare()

    def remove_workers(self, above: int) -> list[str]:
        """Remove this engine's nodes numbered above `above` (their containers, disks and
        state): the names of those removed."""
        removed = []
        for node in range(above + 1, MAX_NODES + 1):
            worker = self.worker(node)
            try:
                worker.container = self.host.containers.get(worker.name)
            except NotFound:
                if not worker.state_dir.exists():
                    continue
            else:
                if not self._ours(worker.container):
                    continue
            worker.remove(network=False)
            removed.append(worker.name)
        return removed

    # -- while it starts ---------------------------------------------------------------------
    def launch(self, timeout: float = 60.0, say=None) -> CredentialBundle:
        """Start every node, wait until each answers, and assemble the Swarm. `say(text)`,
        if given, hears what a Swarm's start is doing once its engines answer."""
        engines = [self.manager, *self.workers]
        deadline = time.monotonic() + timeout
        with ThreadPoolExecutor(max_workers=len(engines)) as pool:
            list(pool.map(lambda e: e.launch(), engines))
            bundles = list(pool.map(lambda e: e.wait_ready(timeout), engines))
        if self.is_swarm:
            if say is not None:
                say(joining(self.nodes))
            self.assemble(bundles, timeout=max(5.0, deadline - time.monotonic()))
        else:
            with bundles[0].client(timeout=30) as client:
                forget_workers(client)
        return bundles[0]

    def start(self, timeout: float = 60.0) -> CredentialBundle:
        """prepare() and launch(), for tests and lessons."""
        self.prepare()
        return self.launch(timeout)

    def assemble(self, bundles: list[CredentialBundle], timeout: float = 60.0) -> None:
        """Make nodes 2..N workers of node 1's Swarm, whatever state each is in."""
        clients = [b.client(timeout=30) for b in bundles]
        try:
            engines = [self.manager, *self.workers]
            assemble_swarm([SwarmMember(e.hostname, e.network_address(), c)
                            for e, c in zip(engines, clients, strict=True)], timeout)
        finally:
            for client in clients:
                client.close()

    # -- after the learner's server stopped -------------------------------------------------
    def stop(self, timeout: int = 5) -> None:
        """Stop every node (their images, containers and Swarm state are kept)."""
        engines = [self.manager, *self.existing_workers()]
        with ThreadPoolExecutor(max_workers=len(engines)) as pool:
            list(pool.map(lambda e: e.stop(timeout), engines))

    def remove(self) -> None:
        """Remove every node, the workers first."""
        self.remove_workers(above=1)
        self.manager.remove()

    def existing_workers(self) -> list[SandboxEngine]:
        """The nodes 2..5 whose containers exist."""
        found = []
        for node in range(2, MAX_NODES + 1):
            worker = self.worker(node)
            try:
                worker.container = self.host.containers.get(worker.name)
            except NotFound:
                continue
            if self._ours(worker.container):
                found.append(worker)
        return found

    def _ours(self, container) -> bool:
        """Whether a node's container carries this engine's labels (owner and site): one
        that does not is never touched."""
        labels = container.labels or {}
        return all(labels.get(k) == v for k, v in self.settings.labels.items())


@dataclasses.dataclass
class SwarmMember:
    """A node of a learner's Swarm as the hub reaches it: its host name (node1, ...), its
    address on the learner's network, and a client of its engine over TLS."""
    hostname: str
    address: str
    client: docker.DockerClient


def joining(nodes: int) -> str:
    """What the spawn page says once a Swarm's engines answer."""
    names = [f"node{i}" for i in range(2, nodes + 1)]
    return f"Your {nodes} engines answer: joining {' and '.join(names)} to node1's Swarm"


def assemble_swarm(members: list[SwarmMember], timeout: float = 60.0) -> None:
    """Make members 2..N workers of member 1's Swarm, whatever state each is in.

    Addresses may have changed since the last start (a deployed site's engines are
    Swarm services, whose tasks get new addresses): a manager advertising an old one
    becomes a Swarm anew at its new address, keeping its services, and a worker that
    advertises an old one, or knows the manager at an old one, leaves and joins again."""
    manager = members[0]
    swarm = manager.client.info().get("Swarm") or {}
    listen = f"0.0.0.0:{SWARM_PORT}"
    if swarm.get("LocalNodeState") != "active" or not swarm.get("ControlAvailable"):
        if swarm.get("LocalNodeState") not in (None, "inactive"):
            manager.client.swarm.leave(force=True)
        manager.client.swarm.init(advertise_addr=manager.address, listen_addr=listen,
                                  default_addr_pool=[OVERLAY_POOL], subnet_size=24)
    elif swarm.get("NodeAddr") != manager.address:
        # Its address changed (a node made before addresses were fixed, a one-node Swarm
        # on 127.0.0.1, a new task): a Swarm anew there, keeping its services.
        manager.client.swarm.init(advertise_addr=manager.address, listen_addr=listen,
                                  force_new_cluster=True)
    manager.client.swarm.reload()
    cluster_id = manager.client.swarm.id
    token = manager.client.swarm.attrs["JoinTokens"]["Worker"]
    workers = members[1:]
    with ThreadPoolExecutor(max_workers=max(1, len(workers))) as pool:
        joined = list(pool.map(lambda w: _join(w, cluster_id, token, manager.address), workers))
    _wait_nodes(manager.client, joined, timeout)


def _join(worker: SwarmMember, cluster_id: str, token: str, manager_address: str) -> str:
    """Join `worker` to the Swarm (leaving any other first): its node ID."""
    client = worker.client
    swarm = client.info().get("Swarm") or {}
    state = swarm.get("LocalNodeState")
    cluster = (swarm.get("Cluster") or {}).get("ID")
    remote = {m.get("Addr") for m in swarm.get("RemoteManagers") or []}
    if state == "active" and swarm.get("NodeAddr") == worker.address and (
            cluster == cluster_id or (cluster is None and f"{manager_address}:{SWARM_PORT}" in remote)):
        return swarm["NodeID"]
    if state not in (None, "inactive"):
        client.swarm.leave(force=True)
    try:
        client.swarm.join(remote_addrs=[f"{manager_address}:{SWARM_PORT}"], join_token=token,
                          listen_addr=f"0.0.0.0:{SWARM_PORT}", advertise_addr=worker.address)
    except APIError as exc:
        raise ClusterError(f"{worker.hostname} could not join the Swarm: "
                           f"{exc.explanation or exc}") from None
    return client.info()["Swarm"]["NodeID"]


def _wait_nodes(manager: docker.DockerClient, joined: list[str], timeout: float) -> None:
    """Wait until the manager sees every node Ready; forget every other node (one of
    the nodes removed, or the node3 of before a node3 that left and joined again)."""
    wanted = {manager.info()["Swarm"]["NodeID"], *joined}
    deadline = time.monotonic() + timeout
    while True:
        nodes = manager.api.nodes()
        for node in nodes:
            if node["ID"] not in wanted:  # a node removed, or a node3 that left
                with contextlib.suppress(APIError):  # gone already
                    manager.api.remove_node(node["ID"], force=True)
        nodes = [n for n in nodes if n["ID"] in wanted]
        ready = {n["ID"] for n in nodes if n["Status"]["State"] == "ready"}
        if wanted <= ready:
            return
        if time.monotonic() > deadline:
            missing = sorted(n["Description"]["Hostname"] for n in nodes
                             if n["ID"] in wanted - ready)
            raise ClusterError(f"the Swarm's nodes {', '.join(missing) or '(unknown)'} "
                               f"were not Ready within {timeout:.0f} s")
        time.sleep(0.2)


def forget_workers(client: docker.DockerClient) -> None:
    """An engine that was a Swarm of several nodes and is one node now stays a Swarm
    (with the learner's services), of one node: its removed workers are forgotten."""
    swarm = client.info().get("Swarm") or {}
    if swarm.get("LocalNodeState") != "active" or not swarm.get("ControlAvailable") \
            or (swarm.get("Nodes") or 0) < 2:
        return
    for node in client.api.nodes():
        if node["ID"] != swarm.get("NodeID"):
            with contextlib.suppress(APIError):
                client.api.remove_node(node["ID"], force=True)
