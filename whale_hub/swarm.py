"""Learners on a Swarm of machines (`whale deploy`, whale_site/deploy.py).

Each learner's engine and notebook server are Swarm services, not containers, and Swarm's
scheduler places them:

- The engine (`SwarmSandboxProvider`, providers/swarm.py) goes to a node labelled
  `org.howtowhale.learners=true` that has room for its memory reservation. It is the
  classroom engine of the one-machine site, as a service: the same capabilities, seccomp
  profile, tmpfs `/tmp` and `/run` and limits; its TLS files are Swarm secrets; its data is
  a volume on its node. (A node's dockerd must give containers a private cgroup namespace:
  README, "Operators".) A learner who chooses more nodes (the Swarm lessons) gets node2,
  node3, ... as services of their own beside it, joined into node1's Swarm.
- The learner's server (`WhaleSwarmSpawner`) then goes to the same node (`node.id==`), with
  their work volume there and their credentials bundle as Swarm secrets.
- Both are on the learner's own attachable overlay network, which the hub's container
  joins as `hub` (the proxy reaches the server there, the server reaches the hub's API).

A learner's work stays on the node where it was made: their next start goes to that node
again. When it is drained or down, the start goes wherever the scheduler says, the spawn
page says why, and the old work waits on the old node until it is back.
"""
from __future__ import annotations

import contextlib
import socket
from functools import partial
from pathlib import Path

import docker
from docker.errors import APIError, NotFound
from docker.types import (
    ContainerSpec,
    EndpointSpec,
    Mount,
    NetworkAttachmentConfig,
    Placement,
    Resources,
    RestartPolicy,
    SecretReference,
    TaskTemplate,
)
from traitlets import Unicode, default

from whale_core.layout import ROLE_LABEL
from whale_core.names import learner_network, work_volume

from .executor import blocking
from .providers.base import claim, network_owner, volume_owner
from .providers.swarm import SwarmSandboxProvider
from .services import (
    LEARNERS_CONSTRAINT,
    STACK_LABEL,
    ensure_secret,
    overlay_subnet,
    remove_secrets,
    service_owner,
    size_bytes,
    task_address,
    wait_for_task,
)
from .spawner import BUNDLE_MOUNT, WhaleSpawner
from .subnets import create_bridge, node_address

__all__ = ["SwarmSandboxProvider", "WhaleSwarmSpawner"]


class WhaleSwarmSpawner(WhaleSpawner):
    """WhaleSpawner whose learners' servers and engines are Swarm services."""

    object_type = "service"
    object_id_key = "ID"

    stack = Unicode("whale", config=True,
                    help="The site's stack (whale deploy): learners' services carry its label.")
    learners_constraint = Unicode(
        LEARNERS_CONSTRAINT, config=True,
        help="The placement constraint of learners' engines and servers (the nodes for learners).")
    engine_mem_reservation = Unicode(
        "256m", config=True,
        help="""Memory Swarm's scheduler keeps for each engine on its node: a node takes no
        more engines than its memory holds at this much each.""")
    server_mem_reservation = Unicode("128m", config=True,
                                     help="Memory kept for each learner's server on its node.")
    engine_node = Unicode("", help="The node of this start's engine (the server follows it).")
    hub_container = Unicode(config=True,
                            help="The hub's own container, which joins learners' networks "
                                 "(default: this host name, a container's id).")

    @default("hub_container")
    def _default_hub_container(self):
        return socket.gethostname()

    @default("learner_subnets")
    def _default_learner_subnets(self):
        return "10.216.0.0/13"  # 2,048 learners' networks of a /24 each

    @default("provider_classes")
    def _default_provider_classes(self):
        return {"sandbox": SwarmSandboxProvider}

    @default("use_internal_hostname")
    def _default_use_internal_hostname(self):
        return True

    @default("cmd")
    def _default_cmd(self):
        # images/singleuser's CMD: the image is on the learner's node, not necessarily here.
        return ["jupyterhub-singleuser"]

    @default("pull_policy")
    def _default_pull_policy(self):
        return "skip"  # each node pulls the image from the site's registry itself

    @property
    def whale_labels(self) -> dict[str, str]:
        return {**super().whale_labels, STACK_LABEL: self.stack}

    # -- the learner's network, volume and service name -----------------------------------
    def _claim_learner_objects(self) -> None:
        host = docker.from_env(timeout=60, version="auto")
        try:
            # Named for this learner of this name too: a deleted learner's overlay, gone
            # from the Swarm, stayed in the site node's own list for over a minute, and a
            # new one made under its name then could not be joined ("network not found").
            self.network_name = claim(self, "network",
                                      f"{learner_network(self.slug)}-{self.incarnation}",
                                      partial(network_owner, host))
            # A /24 each: Swarm hands out a network's addresses one after another, and an
            # address handed out again at once, while its node still holds it for the
            # task that had it, fails the new task ("Address already in use").
            create_bridge(host, self.network_name, pool=self.learner_subnets, options={},
                          labels={ROLE_LABEL: "network", **self.whale_labels},
                          driver="overlay", attachable=True, prefix=24)
            self._join_hub(host)
            claim(self, "volume", self.work_volume_default(), partial(volume_owner, host))
            self.object_name = claim(self, "server", self._object_name_default(),
                                     partial(service_owner, host))
        finally:
            host.close()

    def hub_address(self, host: docker.DockerClient) -> str:
        """The hub's fixed address on the learner's network: the top of its subnet, the
        same after the hub's container is replaced (learners' servers keep it)."""
        return node_address(overlay_subnet(host, self.network_name), 1)

    def _join_hub(self, host: docker.DockerClient) -> None:
        """The hub's container joins the learner's network at its fixed address.

        A container of a Swarm service can join an attachable overlay only where the
        network exists on its node already, which takes a container of its own on it:
        a helper from the hub's image joins it first, for the moment the hub joins."""
        try:
            me = host.api.inspect_container(self.hub_container)
        except NotFound:
            self.log.warning("the hub runs in no container of this node (%s): learners' "
                             "servers will not reach it", self.hub_container)
            return
        if self.network_name in (me["NetworkSettings"].get("Networks") or {}):
            return
        # The helper has a fixed address too, beside the hub's: an address it held, freed
        # when it goes, and handed at once to the learner's next task on this node, is
        # still held here for a moment ("Address already in use").
        subnet = overlay_subnet(host, self.network_name)
        helper = host.api.create_container(
            me["Config"]["Image"], entrypoint=["sleep", "60"], detach=True,
            labels={ROLE_LABEL: "network-helper", **self.whale_labels},
            host_config=host.api.create_host_config(network_mode=self.network_name,
                                                    auto_remove=True),
            networking_config=host.api.create_networking_config({
                self.network_name: host.api.create_endpoint_config(
                    ipv4_address=node_address(subnet, 2))}))
        try:
            host.api.start(helper["Id"])
            host.api.connect_container_to_network(me["Id"], self.network_name,
                                                  ipv4_address=node_address(subnet, 1))
        finally:
            with contextlib.suppress(APIError):
                host.api.remove_container(helper["Id"], force=True)

    def _rejoin(self) -> None:
        host = docker.from_env(timeout=60, version="auto")
        try:
            self._join_hub(host)
        finally:
            host.close()

    def get_env(self):
        """The hub's URLs in the server's environment name the hub's address on the
        learner's network (its name there resolves only for Swarm's own tasks)."""
        env = super().get_env()
        host = docker.from_env(timeout=60, version="auto")
        try:
            address = self.hub_address(host)
        finally:
            host.close()
        return {k: v.replace("//hub:", f"//{address}:") if isinstance(v, str) else v
                for k, v in env.items()}

    # -- the server as a service -----------------------------------------------------------
    def _bundle_dir(self) -> Path | None:
        for source, target in self.volumes.items():
            if isinstance(target, dict) and target.get("bind") == BUNDLE_MOUNT:
                return Path(source)
        return None

    def _bundle_secrets(self) -> list[SecretReference]:
        """The learner's credentials bundle as Swarm secrets, files of the server's user."""
        host = docker.from_env(timeout=60, version="auto")
        try:
            refs = []
            directory = self._bundle_dir()
            for path in sorted(directory.iterdir()) if directory else []:
                if path.is_file():
                    sid, name = ensure_secret(host, self.object_name, path.name,
                                              path.read_bytes(), self.whale_labels)
                    refs.append(SecretReference(sid, name, filename=f"{BUNDLE_MOUNT}/{path.name}",
                                                uid=str(self.learner_uid), gid=str(self.learner_uid),
                                                mode=0o400))
            remove_secrets(host, self.object_name, self.whale_labels,
                           keep={r["SecretName"] for r in refs})
            return refs
        finally:
            host.close()

    async def create_object(self):
        secrets = await blocking(self._bundle_secrets)
        labels = {ROLE_LABEL: "server", **self.whale_labels}
        volume = self.whale_names.get("volume") or work_volume(self.slug)
        container = ContainerSpec(
            image=self.image, env=self.get_env(), args=await self.get_command(),
            user=str(self.learner_uid), labels=labels, secrets=secrets,
            mounts=[Mount(target=self.notebook_dir, source=volume, type="volume",
                          labels={ROLE_LABEL: "work", **self.whale_labels})])
        constraints = [self.learners_constraint]
        if self.engine_node:
            constraints.append(f"node.id=={self.engine_node}")
        task = TaskTemplate(
            container_spec=container,
            resources=Resources(mem_limit=size_bytes(self.mem_limit) if self.mem_limit else None,
                                mem_reservation=size_bytes(self.server_mem_reservation),
                                cpu_limit=int(self.cpu_limit * 1e9) if self.cpu_limit else None),
            restart_policy=RestartPolicy(condition="none"),
            placement=Placement(constraints=constraints),
            networks=[NetworkAttachmentConfig(self.network_name)])
        return await self.docker("create_service", task_template=task, name=self.object_name,
                                 labels=labels, endpoint_spec=EndpointSpec(mode="dnsrr"))

    async def start_object(self):
        await blocking(wait_for_task, self.client, self.object_name, until=("running",),
                       timeout=self.start_timeout)

    async def stop_object(self):
        """A service has no stop: remove_object removes it."""

    async def remove_object(self):
        with contextlib.suppress(NotFound):
            await self.docker("remove_service", self.object_name)
        await blocking(self._forget_secrets)

    def _forget_secrets(self) -> None:
        host = docker.from_env(timeout=60, version="auto")
        try:
            remove_secrets(host, self.object_name, self.whale_labels)
        finally:
            host.close()

    async def get_ip_and_port(self):
        """The server's task's address on the learner's network (not its name: see
        SwarmSandboxProvider._certificates)."""
        task = await blocking(wait_for_task, self.client, self.object_name, until=("running",),
                              timeout=self.start_timeout)
        return task_address(task, self.network_name), self.port

    async def poll(self):
        """None while the server's task runs; its state otherwise (a drained node ends it).
        A running server's network is joined again by a new hub container (the hub was
        restarted, or rescheduled), at the address the server knows."""
        try:
            tasks = await self.docker("tasks", filters={"service": self.object_name})
        except NotFound:
            return 0
        if not tasks:
            return 0
        task = max(tasks, key=lambda t: t.get("CreatedAt", ""))
        state = task["Status"]["State"]
        if state in ("new", "pending", "assigned", "accepted", "preparing", "ready",
                     "starting", "running") and task.get("DesiredState") == "running":
            await blocking(self._rejoin)
            return None
        return f"{state}: {task['Status'].get('Err') or task['Status'].get('Message')}"
