"""Learners on a Swarm of machines (`whale deploy`, whale_site/deploy.py).

Each learner's engine and notebook server are Swarm services, not containers, and Swarm's
scheduler places them:

- The engine (`SwarmSandboxProvider`) goes to a node labelled
  `org.howtowhale.learners=true` that has room for its memory reservation. It is the
  classroom engine of the one-machine site, as a service: the same capabilities, seccomp
  profile, tmpfs `/tmp` and `/run` and limits; its TLS files are Swarm secrets; its data is
  a volume on its node. (A node's dockerd must give containers a private cgroup namespace:
  README, "Operators".)
- The learner's server (`WhaleSwarmSpawner`) then goes to the same node (`node.id==`), with
  their work volume there and their credentials bundle as Swarm secrets.
- Both are on the learner's own attachable overlay network, which the hub's container
  joins as `hub` (the proxy reaches the server there, the server reaches the hub's API).

A learner's work stays on the node where it was made: their next start goes to that node
again. When it is drained or down, the start goes wherever the scheduler says, the spawn
page says why, and the old work waits on the old node until it is back.
"""
from __future__ import annotations

import base64
import contextlib
import hashlib
import shutil
import socket
import time
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

from whale_core.bundle import CredentialBundle
from whale_core.layout import LEARNERS_DIR, ROLE_LABEL, learner_engine_dir, learner_state_dir, write_owner
from whale_core.names import engine_container, learner_network, learner_slug, work_volume

from .executor import blocking
from .pki import CertificateAuthority, write_client_bundle, write_engine_tls
from .providers import SandboxProvider
from .providers.base import EngineProvider, claim, give_to, labels_owner, network_owner, volume_owner
from .spawner import BUNDLE_MOUNT, WhaleSpawner
from .specs import CLASSROOM_ENGINE_OPTIONS, ENGINE_LOG_CONFIG, SECCOMP_PROFILE
from .subnets import create_bridge, dynamic_range, network_subnet, node_address

STACK_LABEL = "org.howtowhale.stack"
LEARNERS_CONSTRAINT = "node.labels.org.howtowhale.learners==true"
#: The engine's TLS files, as whale-engine reads them (/etc/whale/tls).
ENGINE_TLS_FILES = ("ca.pem", "server-cert.pem", "server-key.pem")


def _mib(size: str | None) -> int | None:
    """'2g' / '512m' / bytes -> bytes (None for nothing)."""
    if not size:
        return None
    text = str(size).strip().lower()
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    return int(float(text[:-1]) * units[text[-1]]) if text[-1] in units else int(text)


def service_owner(host: docker.DockerClient, name: str):
    """Owner and site labels of the service called `name` (None: there is none)."""
    try:
        return labels_owner(host.api.inspect_service(name)["Spec"].get("Labels"))
    except NotFound:
        return None


def node_availability(host: docker.DockerClient, node_id: str) -> tuple[str, str | None]:
    """(the node's host name, why it cannot take tasks now, or None)."""
    try:
        node = host.api.inspect_node(node_id)
    except NotFound:
        return node_id[:12], "no longer in the Swarm"
    name = node["Description"]["Hostname"]
    availability = node["Spec"].get("Availability")
    if availability != "active":
        return name, f"{ {'drain': 'drained', 'pause': 'paused'}.get(availability, availability)} " \
            "by the site's operator"
    if node["Status"].get("State") != "ready":
        return name, f"{node['Status'].get('State')} ({node['Status'].get('Message') or 'no answer'})"
    return name, None


def ensure_secret(host: docker.DockerClient, prefix: str, name: str, data: bytes,
                  labels: dict[str, str]) -> tuple[str, str]:
    """A Swarm secret holding `data` (secrets cannot change: a new content is a new name,
    `<prefix>-<name>-<hash>`); (id, name)."""
    digest = hashlib.sha256(data).hexdigest()[:10]
    secret_name = f"{prefix}-{name.replace('.', '-')}-{digest}"
    found = host.api.secrets(filters={"name": secret_name})
    for s in found:
        if s["Spec"]["Name"] == secret_name:
            return s["ID"], secret_name
    made = host.api.create_secret(secret_name, data, labels=labels)
    return made["ID"], secret_name


def remove_secrets(host: docker.DockerClient, prefix: str, keep: set[str] = frozenset()) -> None:
    """Remove the secrets `ensure_secret` made under `prefix` (but `keep`)."""
    for s in host.api.secrets(filters={"name": f"{prefix}-"}):
        name = s["Spec"]["Name"]
        if name.startswith(f"{prefix}-") and name not in keep:
            with contextlib.suppress(APIError):
                host.api.remove_secret(s["ID"])


def wait_for_task(host: docker.DockerClient, service: str, *, until=("running",),
                  timeout: float = 60) -> dict:
    """The service's newest task, once its state is one of `until` (or it failed)."""
    api = getattr(host, "api", host)  # a DockerClient or an APIClient
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        tasks = sorted(api.tasks(filters={"service": service}),
                       key=lambda t: t.get("CreatedAt", ""))
        if tasks:
            last = tasks[-1]
            state = last["Status"]["State"]
            if state in until:
                return last
            if state in ("failed", "rejected", "shutdown", "complete", "orphaned"):
                status = last["Status"]
                raise RuntimeError(f"{service}: {state}: {status.get('Err') or status.get('Message')}")
        time.sleep(0.2)
    why = (last or {}).get("Status", {})
    raise TimeoutError(f"{service} was not {'/'.join(until)} within {timeout:.0f} s: "
                       f"{why.get('State')}: {why.get('Err') or why.get('Message')}")


def overlay_subnet(host: docker.DockerClient, name: str, timeout: float = 30):
    """The subnet of a learner's overlay, once the Swarm has allocated it (a manager
    allocates a new network's addresses a moment after it answered its creation)."""
    deadline = time.monotonic() + timeout
    while (subnet := network_subnet(host, name)) is None:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the Swarm gave the network {name} no addresses within {timeout:.0f} s")
        time.sleep(0.1)
    return subnet


def task_address(task: dict, network: str) -> str:
    """A task's address on the network called `network` (allocated before it starts)."""
    for attachment in task.get("NetworksAttachments") or []:
        if attachment["Network"]["Spec"]["Name"] == network and attachment.get("Addresses"):
            return attachment["Addresses"][0].split("/")[0]
    raise RuntimeError(f"task {task['ID'][:12]} has no address on {network}")


def retire_service(host: docker.DockerClient, name: str, timeout: float = 60) -> None:
    """Remove a service once its tasks have stopped: scaled to 0 first, it is removed
    when every node has reported its container gone. (Removed at once, its old engine
    would answer to the name for a moment more, and a new one's start be taken for it.)"""
    try:
        service = host.api.inspect_service(name)
    except NotFound:
        return
    with contextlib.suppress(APIError):
        host.api.update_service(service["ID"], service["Version"]["Index"],
                                mode={"Replicated": {"Replicas": 0}}, fetch_current_spec=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not [t for t in host.api.tasks(filters={"service": name})
                    if t["Status"]["State"] in ("assigned", "accepted", "preparing", "ready",
                                                "starting", "running")]:
                break
            time.sleep(0.2)
    with contextlib.suppress(NotFound):
        host.api.remove_service(name)


class SwarmSandboxProvider(EngineProvider):
    """A hosted classroom engine per learner, as a Swarm service placed by the scheduler."""

    # The same choice on the spawn form as the one-machine site's.
    name, description, preparing = (SandboxProvider.name, SandboxProvider.description,
                                    SandboxProvider.preparing)

    def __init__(self, spawner):
        super().__init__(spawner)
        self.slug = learner_slug(spawner.user.name)
        self.unit = spawner.whale_names.get("engine") or self.slug
        self._host = None

    @property
    def service(self) -> str:
        return engine_container(self.unit)

    @property
    def state(self) -> Path:
        return learner_engine_dir(self.spawner.state_dir, self.unit)

    def _certificates(self, subnet) -> None:
        """The engine's CA (kept in its state directory, 0700, made once) and its TLS
        files, for every address of the learner's network (`subnet`, theirs alone).

        The engine is reached by its address, not its name: Swarm's DNS for a service
        made again under the same name kept answering with the old task's address here.
        A service's task cannot be given an address, so the engine's certificate names
        them all."""
        marker = self.state / "tls" / "subnet"
        ca = CertificateAuthority.load(self.state / "ca")
        if ca is not None and marker.exists() and marker.read_text() == str(subnet):
            return
        if ca is None:
            ca = CertificateAuthority.create(name=f"How to Whale CA for {self.service}")
            ca.save(self.state / "ca")
        server = ca.issue_server(hostnames=("localhost", self.service, "engine", "node1"),
                                 ips=("127.0.0.1", *map(str, dynamic_range(subnet).hosts())))
        write_engine_tls(self.state / "tls", ca, server)
        marker.write_text(str(subnet))

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

    def prepare(self) -> Path:
        self._host = docker.from_env(timeout=60, version="auto")
        try:
            self.unit = self.claim("engine", self.slug,
                                   partial(service_owner, self._host),
                                   show=lambda unit: f"{engine_container(unit)} ({LEARNERS_DIR}/{unit})")
            write_owner(learner_state_dir(self.spawner.state_dir, self.unit), self.spawner.user.name)
            self._certificates(overlay_subnet(self._host, self.spawner.network_name))
            labels = self.spawner.whale_labels
            if service_owner(self._host, self.service) == self.me:
                retire_service(self._host, self.service)  # left from a start that failed
            mounts = [
                {"Type": "tmpfs", "Target": "/tmp", "TmpfsOptions": {"SizeBytes": 256 << 20, "Mode": 0o1777}},  # noqa: S108
                {"Type": "tmpfs", "Target": "/run", "TmpfsOptions": {"SizeBytes": 64 << 20, "Mode": 0o755}},
                {"Type": "volume", "Source": f"{self.service}-data", "Target": "/var/lib/docker",
                 "VolumeOptions": {"Labels": {ROLE_LABEL: "engine-data", **labels}}},
            ]
            secrets = []
            for name in ENGINE_TLS_FILES:
                sid, sname = ensure_secret(self._host, self.service, name,
                                           (self.state / "tls" / name).read_bytes(), labels)
                secrets.append({"SecretID": sid, "SecretName": sname,
                                "File": {"Name": f"/etc/whale/tls/{name}", "UID": "0", "GID": "0",
                                         "Mode": 0o400}})
            s = self.spawner
            env = [f"WHALE_REGISTRY_MIRROR={s.registry_mirror}"] if s.registry_mirror else []
            limits = {"Pids": s.engine_pids_limit or 0}
            if s.engine_mem_limit:
                limits["MemoryBytes"] = _mib(s.engine_mem_limit)
            if s.engine_cpu_limit:
                limits["NanoCPUs"] = int(s.engine_cpu_limit * 1e9)
            spec = {
                "Name": self.service,
                "Labels": {ROLE_LABEL: "engine", **labels},
                "TaskTemplate": {
                    "ContainerSpec": {
                        "Image": s.engine_image, "Hostname": "node1", "Env": env,
                        "Labels": {ROLE_LABEL: "engine", **labels},
                        "CapabilityDrop": CLASSROOM_ENGINE_OPTIONS["cap_drop"],
                        "CapabilityAdd": CLASSROOM_ENGINE_OPTIONS["cap_add"],
                        "Privileges": {"Seccomp": {"Mode": "custom", "Profile": base64.b64encode(
                            SECCOMP_PROFILE.read_bytes()).decode()}},
                        "Secrets": secrets, "Mounts": mounts},
                    "Resources": {"Limits": limits, "Reservations": {
                        "MemoryBytes": _mib(s.engine_mem_reservation)}},
                    "Placement": {"Constraints": self._placement()},
                    "RestartPolicy": {"Condition": "none"},
                    "Networks": [{"Target": s.network_name, "Aliases": ["engine", "node1"]}],
                    "LogDriver": {"Name": ENGINE_LOG_CONFIG["type"],
                                  "Options": ENGINE_LOG_CONFIG["config"]},
                },
                "Mode": {"Replicated": {"Replicas": 1}},
                "EndpointSpec": {"Mode": "dnsrr"},
            }
            made = self._host.api.post(self._host.api._url("/services/create"), json=spec)
            if made.status_code != 201:
                raise RuntimeError(f"could not create the engine service: {made.text.strip()}")
            remove_secrets(self._host, self.service, keep={x["SecretName"] for x in secrets})
            # The scheduler chooses the node; the learner's server follows the engine there.
            task = wait_for_task(self._host, self.service,
                                 until=("assigned", "accepted", "preparing", "ready", "starting", "running"),
                                 timeout=s.engine_start_timeout)
            s.engine_node = task["NodeID"]
            s.whale_names["node"] = task["NodeID"]
            bundle = self._write_bundle(task_address(task, s.network_name))
        except BaseException:
            self._host.close()
            raise
        return bundle

    def launch(self) -> None:
        """Wait until the engine answers over TLS on the learner's network (the hub's
        container is on it too)."""
        try:
            bundle = CredentialBundle.load(self.state / "bundle")
            deadline = time.monotonic() + self.spawner.engine_start_timeout
            last = None
            while time.monotonic() < deadline:
                task = wait_for_task(self._host, self.service, until=("running",),
                                     timeout=max(1, deadline - time.monotonic()))
                client = None
                try:
                    client = bundle.client(timeout=2)
                    client.ping()
                    return
                except Exception as exc:  # not up yet
                    last = exc
                finally:
                    if client is not None:
                        client.close()
                time.sleep(0.1)
            raise TimeoutError(f"engine {self.service} on {task['NodeID'][:12]} did not answer "
                               f"within {self.spawner.engine_start_timeout:.0f} s: {last}")
        finally:
            self._host.close()

    def release(self, remove: bool) -> None:
        """Remove the engine's service (its data stays in its volume on its node)."""
        host = docker.from_env(timeout=60, version="auto")
        try:
            owner = service_owner(host, self.service)
            if owner is None:
                return
            if owner != self.me:
                self.log.warning("%s: engine %s belongs to %r (site %r): left alone",
                                 self.spawner.user.name, self.service, *owner)
                return
            retire_service(host, self.service)
            if remove:
                self.log.info("%s: the engine's data volume %s-data stays on its node until "
                              "the janitor removes it", self.spawner.user.name, self.service)
        finally:
            host.close()


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
            self.network_name = claim(self, "network", learner_network(self.slug),
                                      partial(network_owner, host))
            # A /24 each: Swarm hands out a network's addresses one after another, and an
            # address handed out again at once, while its node still holds it for the
            # task that had it, fails the new task ("Address already in use").
            create_bridge(host, self.network_name, pool=self.learner_subnets, options={},
                          labels={ROLE_LABEL: "network", **self.whale_labels},
                          driver="overlay", attachable=True, prefix=24)
            self._join_hub(host)
            claim(self, "volume", work_volume(self.slug), partial(volume_owner, host))
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
            remove_secrets(host, self.object_name, keep={r["SecretName"] for r in refs})
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
            resources=Resources(mem_limit=_mib(self.mem_limit) if self.mem_limit else None,
                                mem_reservation=_mib(self.server_mem_reservation),
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
            remove_secrets(host, self.object_name)
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
