"""Swarm services, tasks, secrets and nodes, as the hub of a deployed site (`whale deploy`)
uses them for learners' engines and servers (whale_hub/swarm.py,
whale_hub/providers/swarm.py): what Docker's SDK leaves to its callers."""
from __future__ import annotations

import contextlib
import hashlib
import time

import docker
from docker.errors import APIError, NotFound

from .providers.base import labels_owner
from .subnets import network_subnet

STACK_LABEL = "org.howtowhale.stack"
LEARNERS_CONSTRAINT = "node.labels.org.howtowhale.learners==true"
#: The engine's TLS files, as whale-engine reads them (/etc/whale/tls).
ENGINE_TLS_FILES = ("ca.pem", "server-cert.pem", "server-key.pem")


def size_bytes(size: str | None) -> int | None:
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


def remove_secrets(host: docker.DockerClient, prefix: str, labels: dict[str, str],
                   keep: set[str] = frozenset()) -> None:
    """Remove the secrets `ensure_secret` made under `prefix` with these owner `labels`
    (but `keep`): another learner's whose name starts alike (`whale-engine-sam-x-…` for
    `whale-engine-sam`) are not theirs."""
    for s in host.api.secrets(filters={"name": f"{prefix}-"}):
        name, theirs = s["Spec"]["Name"], s["Spec"].get("Labels") or {}
        if name.startswith(f"{prefix}-") and name not in keep \
                and all(theirs.get(k) == v for k, v in labels.items()):
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


