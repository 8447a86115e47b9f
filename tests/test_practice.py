"""`whale cluster up N` / `whale cluster down` (issue 10): a practice Swarm of N nested
machines on this one, through the real command, as an operator runs it; then the Docker
CLI with the context it prints, as an operator deploys with it."""
from __future__ import annotations

import os
import subprocess
import sys
import time

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
