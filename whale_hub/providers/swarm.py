"""`sandbox` on a deployed site (`whale deploy`): each learner's engine a Swarm service,
placed by Swarm's scheduler (whale_hub/swarm.py says how the site fits together)."""
from __future__ import annotations

import base64
import dataclasses
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import docker

from whale_core.bundle import CredentialBundle
from whale_core.layout import LEARNERS_DIR, ROLE_LABEL, learner_engine_dir, learner_state_dir, write_owner
from whale_core.names import engine_container, engine_worker_service

from ..cluster import MAX_NODES, SwarmMember, assemble_swarm, forget_workers, joining
from ..pki import CertificateAuthority, write_client_bundle, write_engine_tls
from ..services import (
    ENGINE_TLS_FILES,
    ensure_secret,
    node_availability,
    overlay_subnet,
    remove_secrets,
    retire_service,
    service_owner,
    size_bytes,
    task_address,
    wait_for_task,
)
from ..specs import CLASSROOM_ENGINE_OPTIONS, ENGINE_LOG_CONFIG, SECCOMP_PROFILE
from ..subnets import dynamic_range, swarm_node_address
from .base import give_to
from .sandbox import HostedProvider


class SwarmSandboxProvider(HostedProvider):
    """A hosted classroom engine per learner, as a Swarm service placed by the scheduler;
    with more nodes (the Swarm lessons), a Swarm of such engines on the learner's network,
    all on the node where the scheduler put node1.

    The hub reaches each node at its task's address, new at each start. The nodes reach
    each other at addresses that stay: each adds a fixed one of the learner's network
    beside its task's and advertises that to its Swarm (whale-engine, WHALE_NODE_ADDRESS).
    Such an address answers only on the machine where the node runs, which is why a
    learner's nodes and their server share one."""

    def __init__(self, spawner):
        super().__init__(spawner)  # the same choice on the spawn form as one machine's
        self._addresses: list[str] = []  # where the hub reaches each node (its task's)
        self._subnet = None  # the learner's network's

    @property
    def service(self) -> str:
        return engine_container(self.unit)

    def node_service(self, node: int) -> str:
        """The service of node `node` of the learner's Swarm (node 1: the engine)."""
        return self.service if node == 1 else engine_worker_service(self.unit, node)

    @property
    def state(self) -> Path:
        return learner_engine_dir(self.spawner.state_dir, self.unit)

    def _certificates(self, subnet) -> None:
        """The engine's CA (kept in its state directory, 0700, made once) and its TLS
        files, for every address of the learner's network (`subnet`, theirs alone).

        The engine is reached by its address, not its name: Swarm's DNS for a service
        made again under the same name kept answering with the old task's address here.
        A service's task cannot be given an address, so the engine's certificate names
        them all, and the fixed ones its Swarm's nodes advertise (swarm_node_address);
        every node of the learner's Swarm has it."""
        marker = self.state / "tls" / "subnet"
        said = f"{subnet} node1-{MAX_NODES} fixed"
        ca = CertificateAuthority.load(self.state / "ca")
        if ca is not None and marker.exists() and marker.read_text() == said:
            return
        if ca is None:
            ca = CertificateAuthority.create(name=f"How to Whale CA for {self.service}")
            ca.save(self.state / "ca")
        names = [f"node{n}" for n in range(1, MAX_NODES + 1)]
        fixed = [swarm_node_address(subnet, n) for n in range(1, MAX_NODES + 1)]
        server = ca.issue_server(hostnames=("localhost", self.service, "engine", *names),
                                 ips=("127.0.0.1", *fixed, *map(str, dynamic_range(subnet).hosts())))
        write_engine_tls(self.state / "tls", ca, server)
        marker.write_text(said)

    def _write_bundle(self, address: str) -> Path:
        """The learner's bundle, naming the engine's address of this start."""
        ca = CertificateAuthority.load(self.state / "ca")
        bundle = self.state / "bundle"
        shutil.rmtree(bundle, ignore_errors=True)
        write_client_bundle(bundle, ca, ca.issue_client(common_name=self.service),
                            f"tcp://{address}:2376")
        give_to(bundle, self.spawner.learner_uid)
        return bundle

    def _placement(self) -> list[str]:
        """Where the engine may go: a learners' node; the one that holds its data, if that
        one can take it (else the spawn page says why not)."""
        constraints = [self.spawner.learners_constraint]
        previous = self.spawner.whale_names.get("node")
        if previous:
            name, why = node_availability(self._host, previous)
            if why is None:
                constraints.append(f"node.id=={previous}")
            else:
                self.spawner.emit_from_thread(
                    15, f"Your engine and your work were on {name}, which is {why}: they stay "
                    "there for when it is back. Starting you afresh on another node")
        return constraints

    def _spec(self, node: int, secrets: list[dict], constraints: list[str]) -> dict:
        """Node `node` of the learner's engine as a service: a classroom engine."""
        s, name = self.spawner, self.node_service(node)
        labels = {ROLE_LABEL: "engine", **s.whale_labels}
        mounts = [
            {"Type": "tmpfs", "Target": "/tmp", "TmpfsOptions": {"SizeBytes": 256 << 20, "Mode": 0o1777}},  # noqa: S108
            {"Type": "tmpfs", "Target": "/run", "TmpfsOptions": {"SizeBytes": 64 << 20, "Mode": 0o755}},
            {"Type": "volume", "Source": f"{name}-data-{s.incarnation}", "Target": "/var/lib/docker",
             "VolumeOptions": {"Labels": {ROLE_LABEL: "engine-data", **s.whale_labels}}},
        ]
        # The address it advertises to the learner's Swarm: the same at every start.
        env = [f"WHALE_NODE_ADDRESS={swarm_node_address(self._subnet, node)}/"
               f"{self._subnet.prefixlen}"]
        if s.registry_mirror:
            env.append(f"WHALE_REGISTRY_MIRROR={s.registry_mirror}")
        limits = {"Pids": s.engine_pids_limit or 0}
        if s.engine_mem_limit:
            limits["MemoryBytes"] = size_bytes(s.engine_mem_limit)
        if s.engine_cpu_limit:
            limits["NanoCPUs"] = int(s.engine_cpu_limit * 1e9)
        return {
            "Name": name,
            "Labels": labels,
            "TaskTemplate": {
                "ContainerSpec": {
                    "Image": s.engine_image, "Hostname": f"node{node}", "Env": env,
                    "Labels": labels,
                    "CapabilityDrop": CLASSROOM_ENGINE_OPTIONS["cap_drop"],
                    "CapabilityAdd": CLASSROOM_ENGINE_OPTIONS["cap_add"],
                    "Privileges": {"Seccomp": {"Mode": "custom", "Profile": base64.b64encode(
                        SECCOMP_PROFILE.read_bytes()).decode()}},
                    "Secrets": secrets, "Mounts": mounts},
                "Resources": {"Limits": limits, "Reservations": {
                    "MemoryBytes": size_bytes(s.engine_mem_reservation)}},
                "Placement": {"Constraints": constraints},
                "RestartPolicy": {"Condition": "none"},
                "Networks": [{"Target": s.network_name,
                              "Aliases": ["engine", "node1"] if node == 1 else [f"node{node}"]}],
                "LogDriver": {"Name": ENGINE_LOG_CONFIG["type"],
                              "Options": ENGINE_LOG_CONFIG["config"]},
            },
            "Mode": {"Replicated": {"Replicas": 1}},
            "EndpointSpec": {"Mode": "dnsrr"},
        }

    def _create(self, spec: dict) -> None:
        # docker-py's ContainerSpec has no seccomp profile: the API's own JSON.
        made = self._host.api.post(self._host.api._url("/services/create"), json=spec)
        if made.status_code != 201:
            raise RuntimeError(f"could not create the engine service {spec['Name']}: "
                               f"{made.text.strip()}")

    def _retire(self, host: docker.DockerClient, nodes: range) -> None:
        """Retire this learner's engine services of `nodes` (others' are left alone)."""
        mine = [self.node_service(n) for n in nodes
                if service_owner(host, self.node_service(n)) == self.me]
        with ThreadPoolExecutor(max_workers=max(1, len(mine))) as pool:
            list(pool.map(partial(retire_service, host), mine))

    def prepare(self) -> Path:
        if self._refused is not None:
            raise self._refused
        self._host = docker.from_env(timeout=60, version="auto")
        try:
            self.unit = self.claim("engine", self.slug,
                                   partial(service_owner, self._host),
                                   show=lambda unit: f"{engine_container(unit)} ({LEARNERS_DIR}/{unit})")
            write_owner(learner_state_dir(self.spawner.state_dir, self.unit), self.spawner.user.name)
            self._subnet = overlay_subnet(self._host, self.spawner.network_name)
            self._certificates(self._subnet)
            s = self.spawner
            # Left from a start that failed, and the nodes beyond this start's.
            self._retire(self._host, range(1, MAX_NODES + 1))
            secrets = []
            for name in ENGINE_TLS_FILES:
                sid, sname = ensure_secret(self._host, self.service, name,
                                           (self.state / "tls" / name).read_bytes(), s.whale_labels)
                secrets.append({"SecretID": sid, "SecretName": sname,
                                "File": {"Name": f"/etc/whale/tls/{name}", "UID": "0", "GID": "0",
                                         "Mode": 0o400}})
            self._create(self._spec(1, secrets, self._placement()))
            remove_secrets(self._host, self.service, s.whale_labels,
                           keep={x["SecretName"] for x in secrets})
            # The scheduler chooses the node; the learner's other nodes and their server
            # follow the engine there.
            started = ("assigned", "accepted", "preparing", "ready", "starting", "running")
            task = wait_for_task(self._host, self.service, until=started,
                                 timeout=s.engine_start_timeout)
            s.engine_node = task["NodeID"]
            s.whale_names["node"] = task["NodeID"]
            there = [s.learners_constraint, f"node.id=={task['NodeID']}"]
            for node in range(2, self.nodes + 1):
                self._create(self._spec(node, secrets, there))
            self._addresses = [task_address(task, s.network_name)] + [
                task_address(wait_for_task(self._host, self.node_service(node), until=started,
                                           timeout=s.engine_start_timeout), s.network_name)
                for node in range(2, self.nodes + 1)]
            bundle = self._write_bundle(self._addresses[0])
        except BaseException:
            self._host.close()
            raise
        return bundle

    def launch(self) -> None:
        """Wait until every node answers over TLS on the learner's network (the hub's
        container is on it too); with more nodes, until they are one Swarm."""
        try:
            bundle = CredentialBundle.load(self.state / "bundle")
            deadline = time.monotonic() + self.spawner.engine_start_timeout
            with ThreadPoolExecutor(max_workers=self.nodes) as pool:
                clients = list(pool.map(partial(self._answer, bundle, deadline),
                                        range(1, self.nodes + 1), self._addresses))
            try:
                if self.nodes > 1:
                    self.spawner.emit_from_thread(60, joining(self.nodes))
                    assemble_swarm([SwarmMember(f"node{n}", swarm_node_address(self._subnet, n),
                                                client)
                                    for n, client in enumerate(clients, start=1)],
                                   timeout=max(10.0, deadline - time.monotonic()))
                else:
                    forget_workers(clients[0])
            finally:
                for client in clients:
                    client.close()
        finally:
            self._host.close()

    def _answer(self, bundle: CredentialBundle, deadline: float, node: int, address: str):
        """A client of node `node` (at `address`) once it answers."""
        bundle = dataclasses.replace(bundle, docker_host=f"tcp://{address}:2376")
        service, last, where = self.node_service(node), None, ""
        while time.monotonic() < deadline:
            task = wait_for_task(self._host, service, until=("running",),
                                 timeout=max(1, deadline - time.monotonic()))
            where = f" on {task['NodeID'][:12]}"
            try:
                with bundle.client(timeout=2) as client:
                    client.ping()
                return bundle.client(timeout=30)
            except Exception as exc:  # not up yet
                last = exc
            time.sleep(0.1)
        raise TimeoutError(f"engine {service}{where} did not answer within "
                           f"{self.spawner.engine_start_timeout:.0f} s: {last}")

    def release(self, remove: bool) -> None:
        """Remove the engine's services (their data stays in their volumes on their node)."""
        host = docker.from_env(timeout=60, version="auto")
        try:
            owner = service_owner(host, self.service)
            if owner is not None and owner != self.me:
                self.log.warning("%s: engine %s belongs to %r (site %r): left alone",
                                 self.spawner.user.name, self.service, *owner)
                return
            self._retire(host, range(1, MAX_NODES + 1))
            if remove:
                self.log.info("%s: the engine's data volumes (%s-data-… and its nodes') stay on "
                              "their node until the janitor removes them",
                              self.spawner.user.name, self.service)
        finally:
            host.close()
