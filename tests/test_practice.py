"""`whale cluster up N` / `whale cluster down` (issue 10): a practice Swarm of N nested
machines on this one, through the real command, as an operator runs it; then the Docker
CLI with the context it prints, as an operator deploys with it."""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from whale_hub.engine import free_port

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def practice(engine_image, tmp_path_factory):
    """run(*whale args) with a state directory, a mirror port, a practice name and a Docker
    CLI configuration (where contexts are kept) of this module's own; and docker(*args)."""
    state = tmp_path_factory.mktemp("practice-state")
    name = f"whale-test-practice-{os.getpid()}"
    env = dict(os.environ, WHALE_STATE=str(state), WHALE_REGISTRY_PORT=str(free_port()),
               WHALE_PRACTICE=name, DOCKER_CONFIG=str(tmp_path_factory.mktemp("docker-config")))

    def run(*args, timeout=600):
        return subprocess.run([sys.executable, "-m", "whale_site.cli", *args], env=env,
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout)

    def docker(*args, check=True):
        done = subprocess.run(["docker", "--context", name, *args], env=env,
                              capture_output=True, text=True, timeout=120)
        if check and done.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)}: {done.stderr}")
        return done.stdout

    run.docker, run.name, run.env = docker, name, env
    yield run
    run("cluster", "down")
    from whale_site.registry import RegistryMirror
    RegistryMirror(state / "registry", address="127.0.0.1").stop()


def nodes(practice) -> list[str]:
    out = practice.docker("node", "ls", "--format",
                          "{{.Hostname}} {{.Status}} {{.Availability}} {{.ManagerStatus}}")
    return sorted(line.strip() for line in out.splitlines())


def test_whale_cluster_up_makes_a_swarm_of_three_machines_with_a_context(practice):
    up = practice("cluster", "up", "3")
    assert up.returncode == 0, up.stdout + up.stderr
    assert (f"context: {practice.name}   (docker --context {practice.name} node ls)"
            in up.stdout.splitlines())
    assert "practice Swarm of 3 nodes (node1, node2, node3), node1 the manager" in up.stdout
    assert nodes(practice) == ["node1 Ready Active Leader", "node2 Ready Active",
                               "node3 Ready Active"]
    labels = practice.docker("node", "inspect", "node1", "node2", "node3", "--format",
                             "{{.Description.Hostname}} {{index .Spec.Labels "
                             "\"org.howtowhale.learners\"}}").split("\n")[:3]
    assert labels == ["node1 true", "node2 true", "node3 true"]
    # The nodes are machines of the operator's: no classroom gate, no user namespaces.
    info = practice.docker("info", "--format", "{{json .SecurityOptions}}")
    assert "userns" not in info


def test_a_global_service_runs_a_task_on_every_machine(practice):
    practice.docker("service", "create", "--quiet", "--name", "everywhere", "--mode", "global",
                    "--endpoint-mode", "dnsrr", "busybox", "sleep", "600")
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            running = sorted(practice.docker(
                "service", "ps", "everywhere", "--filter", "desired-state=running",
                "--format", "{{.Node}} {{.CurrentState}}").split("\n")[:-1])
            if [r.split()[:2] for r in running] == [["node1", "Running"], ["node2", "Running"],
                                                     ["node3", "Running"]]:
                break
            time.sleep(1)
        assert [r.split()[:2] for r in running] == [
            ["node1", "Running"], ["node2", "Running"], ["node3", "Running"]], running
    finally:
        practice.docker("service", "rm", "everywhere", check=False)


def test_up_again_keeps_the_swarm_and_down_removes_every_machine_and_the_context(practice):
    before = practice.docker("info", "--format", "{{.Swarm.Cluster.ID}}").strip()
    again = practice("cluster", "up", "3")
    assert again.returncode == 0, again.stdout + again.stderr
    assert practice.docker("info", "--format", "{{.Swarm.Cluster.ID}}").strip() == before
    assert nodes(practice) == ["node1 Ready Active Leader", "node2 Ready Active",
                               "node3 Ready Active"]

    down = practice("cluster", "down")
    assert down.returncode == 0, down.stdout + down.stderr
    name = practice.name
    assert down.stdout.strip() == f"whale: removed {name}, {name}.node2, {name}.node3"
    left = subprocess.run(["docker", "ps", "-a", "--filter", f"name={name}", "--format",
                           "{{.Names}}"], capture_output=True, text=True, timeout=60).stdout
    assert left == ""
    contexts = subprocess.run(["docker", "context", "ls", "--format", "{{.Name}}"],
                              env=practice.env, capture_output=True, text=True, timeout=60)
    assert name not in contexts.stdout.split()
    assert practice("cluster", "down").stdout.strip() == (
        "whale: removed nothing (no practice Swarm)")


def test_a_practice_swarm_of_one_machine_is_a_swarm_too(practice):
    up = practice("cluster", "up", "1")
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert "practice Swarm of 1 node (node1), node1 the manager" in up.stdout
        assert nodes(practice) == ["node1 Ready Active Leader"]
    finally:
        assert practice("cluster", "down").stdout.strip() == f"whale: removed {practice.name}"


def test_a_classroom_engine_runs_as_a_swarm_service_on_a_practice_node(practice, host_docker):
    """What a node of a multi-machine site needs (issue 10), proven on a practice node:
    a classroom engine as a Swarm *service* (which can set its capabilities and seccomp
    profile, API 1.44, but not `--cgroupns private` or `systempaths=unconfined`) keeps
    the classroom's isolation. The node's dockerd gives it a private cgroup namespace
    (--default-cgroupns-mode=private, which `whale cluster up` sets); the engine takes
    the /proc and /sys masks away itself. Its TLS files are Swarm secrets. A learner's
    container in it runs in a user namespace, in the engine's own cgroup."""
    import base64
    import secrets

    from whale_core.bundle import CredentialBundle
    from whale_hub import pki
    from whale_hub.specs import CLASSROOM_ENGINE_OPTIONS, SECCOMP_PROFILE
    from whale_site.practice import practice_dir

    up = practice("cluster", "up", "3")
    assert up.returncode == 0, up.stdout + up.stderr
    # The engine image goes to node2, where the service is placed (no registry here).
    node2_bundle = CredentialBundle.load(practice_dir(Path(practice.env["WHALE_STATE"]))
                                         / "node2" / "bundle")
    save = subprocess.Popen(["docker", "save", "howtowhale/engine"], stdout=subprocess.PIPE)
    load = subprocess.run(["docker", "load", "-q"], stdin=save.stdout,
                          env=dict(practice.env, **node2_bundle.env), capture_output=True,
                          text=True, timeout=300)
    save.stdout.close()
    assert save.wait(60) == 0
    assert load.returncode == 0, load.stderr
    mirror = dict(e.split("=", 1) for e in host_docker.containers.get(
        practice.name).attrs["Config"]["Env"])["WHALE_REGISTRY_MIRROR"]
    node = CredentialBundle.load(
        practice_dir(Path(practice.env["WHALE_STATE"])) / "node1" / "bundle"
    ).client(timeout=60)
    ca = pki.CertificateAuthority.create(name="test CA")
    server = ca.issue_server(hostnames=("localhost", "engine"))
    tag = secrets.token_hex(4)
    made = []
    try:
        files = []
        for name, data in (("ca.pem", ca.cert_pem), ("server-cert.pem", server.cert_pem),
                           ("server-key.pem", server.key_pem)):
            secret = node.secrets.create(name=f"engine-{tag}-{name}", data=data)
            made.append(secret)
            files.append({"SecretID": secret.id, "SecretName": f"engine-{tag}-{name}",
                          "File": {"Name": f"/etc/whale/tls/{name}", "UID": "0", "GID": "0",
                                   "Mode": 0o400}})
        spec = {
            "Name": f"engine-{tag}",
            "TaskTemplate": {
                "ContainerSpec": {
                    "Image": "howtowhale/engine:latest", "Hostname": "node1",
                    "Env": [f"WHALE_REGISTRY_MIRROR={mirror}"],
                    "CapabilityDrop": CLASSROOM_ENGINE_OPTIONS["cap_drop"],
                    "CapabilityAdd": CLASSROOM_ENGINE_OPTIONS["cap_add"],
                    "Privileges": {"Seccomp": {"Mode": "custom", "Profile": base64.b64encode(
                        SECCOMP_PROFILE.read_bytes()).decode()}},
                    "Secrets": files,
                    "Mounts": [{"Type": "tmpfs", "Target": "/tmp",
                                "TmpfsOptions": {"SizeBytes": 256 << 20, "Mode": 0o1777}},
                               {"Type": "tmpfs", "Target": "/run",
                                "TmpfsOptions": {"SizeBytes": 64 << 20, "Mode": 0o755}}]},
                "Resources": {"Limits": {"MemoryBytes": 1 << 30, "Pids": 1024}},
                "Placement": {"Constraints": ["node.hostname==node2"]},
                "RestartPolicy": {"Condition": "none"}},
            "Mode": {"Replicated": {"Replicas": 1}},
        }
        made_service = node.api.post(node.api._url("/services/create"), json=spec)
        assert made_service.status_code == 201, made_service.text
        deadline, task = time.monotonic() + 120, None
        while time.monotonic() < deadline:
            tasks = node.api.tasks(filters={"service": f"engine-{tag}"})
            task = tasks[0] if tasks else None
            if task and task["Status"]["State"] in ("running", "failed", "rejected"):
                break
            time.sleep(1)
        assert task is not None
        assert task["Status"]["State"] == "running", task["Status"]
        # The task runs on node2: reach that node's engine with the practice Swarm's own
        # certificates (node2's bundle), as the hub would.
        node2 = node2_bundle.client(timeout=60)
        engine = node2.containers.get(task["Status"]["ContainerStatus"]["ContainerID"])
        assert engine.attrs["HostConfig"]["CgroupnsMode"] == "private"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ran = engine.exec_run(["sh", "-c", "docker run --rm busybox sh -c "
                                   "'cat /proc/self/uid_map; head -1 /proc/self/cgroup'"])
            if ran.exit_code == 0 or b"Cannot connect" not in ran.output:
                break
            time.sleep(1)
        out = ran.output.decode()
        assert ran.exit_code == 0, out
        lines = out.splitlines()
        assert lines[-2].split() == ["0", "100000", "65536"]  # root inside is not root
        assert lines[-1].split(":", 2)[2].startswith("/learner/docker/")  # below the engine
        node2.close()
    finally:
        node.api.delete(node.api._url(f"/services/engine-{tag}"))
        time.sleep(3)
        for secret in made:
            with contextlib.suppress(Exception):
                secret.remove()
        node.close()


def test_a_classroom_engine_in_the_hosts_cgroup_namespace_refuses_to_start(host_docker):
    """Mounted afresh in the host's cgroup namespace, the engine's cgroups would be the
    machine's: learners' containers would escape every limit. It says so, and stops."""
    done = subprocess.run(["docker", "run", "--rm", "--cgroupns", "host", "--cap-add", "SYS_ADMIN",
                           "howtowhale/engine"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == (
        "whale-engine: not in a private cgroup namespace (docker run --cgroupns private; for a "
        "Swarm service, the node's dockerd needs --default-cgroupns-mode=private)")
