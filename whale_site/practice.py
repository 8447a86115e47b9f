"""A practice Swarm on this machine: `whale cluster up N` (issue 10).

N nested Docker engines, each a "machine" of its own with its own dockerd, joined into a
real Swarm: node1 the manager, the others workers. It is how an operator tries a site of
several machines on a laptop before `whale deploy`, and how the tests do.

The nodes are the operator's own engines, not a learner's: they run without the classroom
policy (no gate, no user namespaces; `EngineSettings(policy=False)`), as a real machine's
dockerd would, so that they can run learners' engines in turn. Their TLS certificates come
from one CA, kept in the practice state directory (0600 keys), and a Docker CLI context,
`whale-practice`, points at the manager: `docker --context whale-practice node ls`.
Each node carries the node label `org.howtowhale.learners=true`, which tells the site's
stack where learners' servers and engines may go.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import docker
from docker.errors import NotFound

from whale_core.bundle import BUNDLE_FILES, CredentialBundle
from whale_core.layout import OWNER_LABEL, state_root
from whale_hub.cluster import OVERLAY_POOL, SWARM_PORT, SandboxCluster
from whale_hub.specs import EngineSettings

#: The manager's container and the CLI context (WHALE_PRACTICE: another name, for tests).
NAME = os.environ.get("WHALE_PRACTICE") or "whale-practice"
CONTEXT = NAME
LEARNERS_LABEL = "org.howtowhale.learners"


def practice_dir(state: Path | None = None) -> Path:
    return (state or state_root()) / "practice"


def cluster(nodes: int, host: docker.DockerClient, *, name: str = NAME,
            state: Path | None = None, registry_mirror: str | None = None) -> SandboxCluster:
    # Classroom engines may run on the nodes as Swarm services, which cannot ask for a
    # private cgroup namespace themselves (images/engine/whale-engine refuses to run
    # without one): the nodes' dockerd gives every container one.
    settings = EngineSettings(policy=False, registry_mirror=registry_mirror,
                              labels={OWNER_LABEL: "practice"},
                              dockerd_opts=("--default-cgroupns-mode=private",))
    return SandboxCluster(name, practice_dir(state) / "node1", host=host, settings=settings,
                          nodes=nodes)


def _context(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", "context", *args], capture_output=True, text=True,
                          timeout=60, check=check)


def write_context(bundle: CredentialBundle, context: str = CONTEXT) -> None:
    """The Docker CLI context `context`, pointing at the manager with the bundle's TLS files
    (the CLI copies them into its own context store)."""
    _context("rm", "--force", context, check=False)
    ca, cert, key = (Path(bundle.files_dir or bundle.path) / name for name in BUNDLE_FILES[:3])
    _context("create", context, "--description", "How to Whale practice Swarm (whale cluster up)",
             "--docker", f"host={bundle.docker_host},ca={ca},cert={cert},key={key}")


def label_nodes(bundle: CredentialBundle) -> list[str]:
    """Give every node the learners label; the nodes' host names, sorted."""
    client = bundle.client(timeout=30)
    try:
        names = []
        for node in client.nodes.list():
            spec = dict(node.attrs["Spec"])
            spec["Labels"] = {**(spec.get("Labels") or {}), LEARNERS_LABEL: "true"}
            node.update(spec)
            names.append(node.attrs["Description"]["Hostname"])
        return sorted(names)
    finally:
        client.close()


def _swarm_of_one(bundle: CredentialBundle, swarm: SandboxCluster) -> None:
    """A practice Swarm of one node is a Swarm too (a learner's engine of one node is not)."""
    client = bundle.client(timeout=30)
    try:
        if (client.info().get("Swarm") or {}).get("LocalNodeState") != "active":
            address = swarm.manager.network_address()
            client.swarm.init(advertise_addr=address, listen_addr=f"0.0.0.0:{SWARM_PORT}",
                              default_addr_pool=[OVERLAY_POOL], subnet_size=24)
    finally:
        client.close()


def up(nodes: int, *, name: str = NAME, context: str = CONTEXT, state: Path | None = None,
       registry_mirror: str | None = None, timeout: float = 120.0) -> CredentialBundle:
    """Make (or start again, or resize) the practice Swarm of `nodes` nodes."""
    host = docker.from_env(timeout=60)
    try:
        swarm = cluster(nodes, host, name=name, state=state, registry_mirror=registry_mirror)
        bundle = swarm.start(timeout=timeout)
        if nodes == 1:
            _swarm_of_one(bundle, swarm)
        named = label_nodes(bundle)
        write_context(bundle, context)
        print(f"whale: practice Swarm of {nodes} node{'s' if nodes > 1 else ''} "
              f"({', '.join(named)}), node1 the manager", flush=True)
        print(f"context: {context}   (docker --context {context} node ls)", flush=True)
        return bundle
    finally:
        host.close()


def down(*, name: str = NAME, context: str = CONTEXT, state: Path | None = None) -> list[str]:
    """Remove every node of the practice Swarm, its state and its context: what was removed."""
    host = docker.from_env(timeout=60)
    try:
        swarm = cluster(1, host, name=name, state=state)
        removed = swarm.remove_workers(above=1)
        try:
            manager = host.containers.get(name)
        except NotFound:
            manager = None
        if manager is not None and swarm._ours(manager):
            swarm.manager.container = manager
            swarm.manager.remove()
            removed.insert(0, name)
        if manager is None or swarm._ours(manager):
            shutil.rmtree(practice_dir(state), ignore_errors=True)
    finally:
        host.close()
    _context("rm", "--force", context, check=False)
    return removed
