"""A learner's Swarm of several engines (whale_hub.cluster), on real nested engines: three
classroom engines on one network, node1 the manager the learner's bundle names.

What a learner does is done as they would do it: the `docker` command with their own
bundle. The limits and the policy are looked at on every node, and the join token is
looked for wherever the host keeps something.
"""
from __future__ import annotations

import collections
import json
import subprocess
import sys
import time

import nbformat
import pytest
from engine_fixtures import engine_env, start_cluster

from whale_core.bundle import CredentialBundle
from whale_hub.cluster import SandboxCluster, worker_name

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def cluster(engine_image, host_docker, tmp_path_factory, lesson_mirror):
    cluster = start_cluster("swarm3", tmp_path_factory, host_docker, nodes=3,
                            registry_mirror=lesson_mirror.url)
    yield cluster
    cluster.remove()


def docker(cluster, *args, host: str | None = None, check: bool = True, timeout: float = 120):
    """The learner's `docker` command, with their bundle (at `host`: another node)."""
    argv = ["docker", *(["--host", host] if host else []), *args]
    done = subprocess.run(argv, env=engine_env(cluster), capture_output=True, text=True,
                          timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(args)}: {done.stderr or done.stdout}")
    return done


def until(what, timeout: float = 60.0, every: float = 0.5):
    """what() once it is truthy (None after `timeout`)."""
    deadline = time.monotonic() + timeout
    while True:
        value = what()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(every)


def running_on(cluster, service: str) -> collections.Counter:
    """How many of a service's tasks run on each node."""
    out = docker(cluster, "service", "ps", service, "--filter", "desired-state=running",
                 "--format", "{{.Node}} {{.CurrentState}}").stdout
    return collections.Counter(line.split()[0] for line in out.splitlines()
                               if line.split()[1:2] == ["Running"])


def settled(cluster, service: str, tasks: int, without: str | None = None,
            timeout: float = 90.0) -> collections.Counter | None:
    """Where a service's tasks run once `tasks` of them run (none on `without`): None if
    that does not happen within `timeout`."""
    def now():
        found = running_on(cluster, service)
        return found if sum(found.values()) == tasks and without not in found else None
    return until(now, timeout=timeout)


def node_address(cluster, node: str) -> str:
    return docker(cluster, "node", "inspect", node, "--format", "{{.Status.Addr}}").stdout.strip()


def test_a_learner_who_has_three_nodes_sees_three_ready_nodes(cluster):
    out = docker(cluster, "node", "ls", "--format",
                 "{{.Hostname}} {{.Status}} {{.Availability}} {{.ManagerStatus}}").stdout
    assert sorted(out.split("\n")[:-1]) == ["node1 Ready Active Leader", "node2 Ready Active ",
                                            "node3 Ready Active "]
    # The bundle names node1, on its fixed address on the network.
    bundle = CredentialBundle.load(cluster.bundle_dir)
    assert bundle.docker_host == cluster.manager.docker_host


def nodes_check(env: dict[str, str], wanted: int = 3, **extra) -> tuple[int, str]:
    """What a Swarm lesson's first cell, `whale-check --nodes N`, says (and its status)."""
    done = subprocess.run([sys.executable, "-m", "whale_lessons.check", "--nodes", str(wanted)],
                          env={**env, **extra}, capture_output=True, text=True, timeout=60)
    return done.returncode, done.stdout.strip()


HOW = ("stop your server (File > Hub Control Panel > Stop My Server), then start it again "
       "and choose 3 nodes.")


def test_a_swarm_lessons_first_cell_says_whether_the_nodes_are_there(cluster, tls_engine):
    assert nodes_check(engine_env(cluster)) == (
        0, "✔ Your Swarm has the 3 nodes this lesson needs: node1, node2, node3.")
    assert nodes_check(engine_env(tls_engine)) == (
        1, "✘ This lesson needs a Swarm of 3 nodes; you have one engine. To get them, " + HOW)
    assert nodes_check(engine_env(tls_engine), WHALE_MAX_NODES="1") == (
        1, "✘ This lesson needs a Swarm of 3 nodes; you have one engine, and this site gives "
           "each learner at most 1: ask your teacher.")


def test_six_replicas_spread_over_all_three_nodes_and_a_drained_node_loses_its_tasks(cluster):
    docker(cluster, "service", "create", "--quiet", "--name", "six", "--replicas", "6", "webserver")
    try:
        assert settled(cluster, "six", 6) == {"node1": 2, "node2": 2, "node3": 2}

        docker(cluster, "node", "update", "--availability", "drain", "node3")
        assert settled(cluster, "six", 6, without="node3") == {"node1": 3, "node2": 3}
    finally:
        docker(cluster, "node", "update", "--availability", "active", "node3")
        docker(cluster, "service", "rm", "six")


def test_an_overlay_network_joins_services_on_different_nodes(cluster):
    """dnsrr: this kernel has no IPVS for a service's virtual IP."""
    docker(cluster, "network", "create", "--driver", "overlay", "--attachable", "backend")
    try:
        docker(cluster, "service", "create", "--quiet", "--name", "api", "--network", "backend",
               "--endpoint-mode", "dnsrr", "--replicas", "2", "--constraint", "node.role==worker",
               "webserver")
        docker(cluster, "service", "create", "--quiet", "--name", "client", "--network", "backend",
               "--constraint", "node.hostname==node1", "busybox", "sleep", "3600")
        assert set(running_on(cluster, "api")) <= {"node2", "node3"}
        client = docker(cluster, "ps", "-q", "--filter", "name=client.1").stdout.strip()
        page = until(lambda: docker(cluster, "exec", client, "timeout", "5", "wget", "-qO-",
                                    "http://api", check=False).stdout, timeout=30)
        assert "Hello from a container!" in page
    finally:
        docker(cluster, "service", "rm", "api", "client", check=False)
        until(lambda: docker(cluster, "network", "rm", "backend", check=False).returncode == 0,
              timeout=30)


def test_the_classroom_policy_and_limits_hold_on_every_node(cluster, host_docker):
    manager = host_docker.api.inspect_container(cluster.manager.name)["HostConfig"]
    for node in (2, 3):
        worker = host_docker.api.inspect_container(worker_name(cluster.name, node))["HostConfig"]
        for field in ("CapDrop", "CapAdd", "Memory", "PidsLimit", "NanoCpus", "SecurityOpt",
                      "CgroupnsMode", "Tmpfs"):
            assert worker[field] == manager[field], field
    # Every node's tasks run in its engine's user namespace: root in a task is not root.
    docker(cluster, "service", "create", "--quiet", "--name", "whoami", "--mode", "global",
           "busybox", "sh", "-c", "echo $(cat /proc/self/uid_map); sleep 3600")
    try:
        logs = until(lambda: len((out := docker(cluster, "service", "logs", "--raw",
                                                "whoami").stdout).splitlines()) == 3 and out)
        assert logs, "the global service did not log from 3 nodes"
        maps = {tuple(line.split()) for line in logs.splitlines()}
        assert len(maps) == 1, maps
        inside, outside, count = maps.pop()
        assert inside == "0", logs
        assert int(outside) >= 65536, logs
        assert count == "65536", logs
    finally:
        docker(cluster, "service", "rm", "whoami")
    # The learner reaches node3 itself with their bundle: its own gate refuses the same.
    node3 = f"tcp://{node_address(cluster, 'node3')}:2376"
    refused = docker(cluster, "run", "--rm", "--privileged", "busybox", "true", host=node3,
                     check=False)
    assert refused.returncode != 0
    assert ("whale: a privileged container (--privileged) is not allowed on this classroom "
            "engine") in refused.stderr, refused.stderr
    refused = docker(cluster, "service", "create", "--cap-add", "SYS_ADMIN", "busybox",
                     check=False)
    assert "SYS_ADMIN" in refused.stderr, refused.stderr
    assert "is not allowed on this classroom engine" in refused.stderr, refused.stderr


def test_the_join_token_is_kept_nowhere_on_the_host(cluster, host_docker):
    with CredentialBundle.load(cluster.bundle_dir).client(timeout=10) as client:
        tokens = client.swarm.attrs["JoinTokens"]
    secrets = [tokens["Worker"], tokens["Manager"]]
    for name in (cluster.manager.name, worker_name(cluster.name, 2), worker_name(cluster.name, 3)):
        seen = json.dumps(host_docker.api.inspect_container(name))
        seen += host_docker.api.logs(name).decode(errors="replace")
        for secret in secrets:
            assert secret.split("-")[3] not in seen, name  # the token's secret part
    for path in cluster.state_dir.parent.rglob("*"):
        if path.is_file() and not path.name.startswith("disk"):
            text = path.read_bytes()
            assert not any(s.split("-")[3].encode() in text for s in secrets), path


def test_a_node_that_left_is_down_and_the_next_start_puts_the_swarm_right(cluster):
    """What a failed machine looks like to the Swarm: its tasks go elsewhere; the next
    start of the learner's server (launch) joins it again and forgets the old entry."""
    docker(cluster, "service", "create", "--quiet", "--name", "three", "--replicas", "3",
           "webserver")
    try:
        node3 = f"tcp://{node_address(cluster, 'node3')}:2376"
        assert "Node left the swarm" in docker(cluster, "swarm", "leave", host=node3).stdout
        assert until(lambda: "node3 Down" in docker(
            cluster, "node", "ls", "--format", "{{.Hostname}} {{.Status}}").stdout), \
            "node3 never showed as Down"
        assert nodes_check(engine_env(cluster)) == (
            1, "✘ This lesson needs 3 Ready nodes; node3 is not Ready. To put your Swarm "
               "right, " + HOW)
        assert settled(cluster, "three", 3, without="node3"), running_on(cluster, "three")

        cluster.launch(timeout=120)
        out = docker(cluster, "node", "ls", "--format", "{{.Hostname}} {{.Status}}").stdout
        assert sorted(out.split("\n")[:-1]) == ["node1 Ready", "node2 Ready", "node3 Ready"]
    finally:
        docker(cluster, "service", "rm", "three")


def test_fewer_nodes_then_more_keeps_the_manager_and_its_work(cluster, host_docker):
    docker(cluster, "volume", "create", "kept")
    smaller = SandboxCluster(cluster.name, cluster.state_dir, host=host_docker,
                             settings=cluster.settings, nodes=2)
    smaller.start(timeout=120)
    assert not host_docker.containers.list(all=True, filters={"name": worker_name(cluster.name, 3)})
    out = docker(cluster, "node", "ls", "--format", "{{.Hostname}} {{.Status}}").stdout
    assert sorted(out.split("\n")[:-1]) == ["node1 Ready", "node2 Ready"]

    cluster.start(timeout=120)
    out = docker(cluster, "node", "ls", "--format", "{{.Hostname}} {{.Status}}").stdout
    assert sorted(out.split("\n")[:-1]) == ["node1 Ready", "node2 Ready", "node3 Ready"]
    assert docker(cluster, "volume", "ls", "-q").stdout.split() == ["kept"]
    docker(cluster, "volume", "rm", "kept")


def test_a_stack_of_an_image_built_on_node1_cannot_run_on_the_workers(cluster, tmp_path):
    """Lesson 14's stack keeps the shop on node1, where its image was built; a stack that
    sends it to the workers gets the check's reason for it, with its own hints."""
    from hint_fixtures import lesson_cells
    stack = lesson_cells("capstone-update", "solution")[1].replace(
        "node.role == manager", "node.role == worker").replace("--detach=false ", "")
    assert "node.role == worker" in stack
    script = (
        "printf 'FROM webserver\\nRUN mkdir /data\\n' | docker build -q -t shop:1 - >/dev/null\n"
        "printf 'whale-admin-2024' | docker secret create admin_password - >/dev/null\n"
        "echo '<h1>Welcome to SHOP_NAME!</h1>' > page.html\n" + stack)
    env = engine_env(cluster)
    done = subprocess.run(["bash", "-c", script], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    try:
        def verdict():
            out = subprocess.run([sys.executable, "-m", "whale_lessons.check", "capstone-stack",
                                  "--hint", "3"], env=env, capture_output=True, text=True,
                                 timeout=60).stdout
            return out if "find no image" in out else None
        said = until(verdict, timeout=60)
        assert said, "the check never named the missing image"
        first = said.splitlines()[0]
        assert first.startswith("✘ Not yet: tasks of `shop_web` on node")
        assert first.endswith("find no image shop:1: it is on node1 only, where you built it.")
        assert "placement:` with `constraints: [node.role == manager]`" in said
    finally:
        cleanup = ("docker stack rm shop\n"
                   "timeout 30 sh -c 'while docker network inspect shop_default >/dev/null 2>&1; "
                   "do sleep 1; done'\n"
                   "docker secret rm admin_password; docker image rm shop:1")
        subprocess.run(["bash", "-c", cleanup], env=env, capture_output=True, timeout=120)


# -- lesson 13: a registry of the Swarm's own, and a stack on every node ----------------------
def test_lesson13s_checks_say_what_is_missing_on_a_real_swarm_of_three(cluster, tmp_path):
    """`whale-check swarm-registry` and `swarm-stack` from nothing to done, as a learner goes:
    each wrong turn gets its own reason, and the lesson's own cells (its solutions
    included) make each check pass."""
    from hint_fixtures import lesson_cells

    from whale_lessons import runner as lessons
    cells = [c.source for c in nbformat.read(lessons.find_lessons(["13"])[0], 4).cells
             if c.cell_type == "code"]
    cell = lambda text: next(c for c in cells if text in c)  # noqa: E731
    env = lessons.learner_env(tmp_path, engine_env(cluster))
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        env.pop(name, None)

    def sh(script: str) -> str:
        done = subprocess.run(["bash", "-c", script], env=env, cwd=tmp_path, capture_output=True,
                              text=True, timeout=180)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def says(name: str) -> str:
        out = subprocess.run([sys.executable, "-m", "whale_lessons.check", name], env=env,
                             cwd=tmp_path, capture_output=True, text=True, timeout=60).stdout
        return out.splitlines()[0]

    registry, solution = cell("--name registry"), dict(zip(
        ("swarm-registry", "swarm-stack"), lesson_cells("swarm-stack", "solution"), strict=True))
    stack = solution["swarm-stack"].replace("--detach=false ", "")
    try:
        sh("docker pull -q webserver && docker pull -q busybox && docker pull -q registry")
        assert says("swarm-registry") == "✘ Not yet: there is no service `registry`."
        sh("docker service create --quiet --name registry --constraint node.role==manager registry")
        assert says("swarm-registry") == (
            "✘ Not yet: the service `registry` does not publish port 5000 in host mode.")
        sh("docker service rm registry && " + registry.replace("node.role==manager",
                                                               "node.hostname==node2"))
        assert says("swarm-registry") == (
            "✘ Not yet: the service `registry` does not run on node1 (it runs on node2).")
        sh("docker service rm registry && " + registry)
        sh(cell("mkdir -p hello && cd hello").replace("mkdir -p hello && cd hello\n", ""))
        assert says("swarm-registry") == ("✘ Not yet: your registry has no image "
                                          "node1:5000/hello:1: your image is named `hello:1`, "
                                          "which names no registry.")
        sh("docker tag hello:1 node1:5000/hello:1")
        assert says("swarm-registry") == ("✘ Not yet: your registry has no image "
                                          "node1:5000/hello:1: you built node1:5000/hello:1 but "
                                          "have not pushed it.")
        sh(solution["swarm-registry"])
        assert says("swarm-registry") == ("✔ Well done: your Swarm's registry runs on node1:5000 "
                                          "and holds node1:5000/hello:1.")

        assert says("swarm-stack") == (
            "✘ Not yet: the stack `hello` has no service `web` (no service `hello_web`).")
        sh(stack.replace("image: node1:5000/hello:1", "image: hello:1"))
        assert says("swarm-stack") == (
            "✘ Not yet: `web` runs hello:1, an image no node but node1 can get.")
        sh(stack.replace('      NODE: "{{.Node.Hostname}}"\n', '      NODE: node1\n'))
        assert says("swarm-stack") == ("✘ Not yet: `web`'s tasks are not told their node: its "
                                       "`NODE` is not `{{.Node.Hostname}}`.")
        sh(stack.replace("replicas: 6", "replicas: 3"))
        assert says("swarm-stack") == "✘ Not yet: `web` asks for 3 replicas, not 6."
        sh(solution["swarm-stack"].replace(
            "      endpoint_mode: dnsrr\n",
            "      endpoint_mode: dnsrr\n      placement:\n        constraints: [node.role == worker]\n"))
        assert until(lambda: sum(running_on(cluster, "hello_web").values()) == 6
                     and "node1" not in running_on(cluster, "hello_web"))
        assert says("swarm-stack") == "✘ Not yet: `web`'s tasks run on node2, node3, none on node1."
        # Without its constraint the service keeps its tasks where they are (Swarm does not
        # replace a task whose node still meets its placement): the third hint says so.
        sh(solution["swarm-stack"])
        assert says("swarm-stack") == "✘ Not yet: `web`'s tasks run on node2, node3, none on node1."
        sh("docker service update --quiet --force hello_web")
        assert says("swarm-stack") == ("✔ Well done: the stack hello runs 6 replicas of "
                                       "node1:5000/hello:1 on node1, node2 and node3.")
        # node2 pulled it from node1:5000, the registry the learner runs
        pulled = docker(cluster, "image", "ls", "--format", "{{.Repository}}",
                        host=f"tcp://{node_address(cluster, 'node2')}:2376").stdout.split()
        assert "node1:5000/hello" in pulled
    finally:
        sh("cd hello 2>/dev/null; " + cells[-1].replace("rm -rf hello\n", "") + " || true")


def test_an_engine_from_before_cas_were_kept_becomes_the_manager_of_three(
        engine_image, host_docker, tmp_path_factory, lesson_mirror):
    """An engine made before its CA was kept, and a one-node Swarm on 127.0.0.1 (as
    WHALE_SWARM=1 made them), whose learner now asks for 3 nodes: it gets a CA of its own
    (new certificates; the old bundle no longer opens it), its Swarm is made anew on its
    network address (force_new_cluster), and its service and volume are still there."""
    import os
    import shutil

    from engine_fixtures import TEST_LABEL

    from whale_hub.specs import EngineSettings
    settings = EngineSettings(labels={TEST_LABEL: str(os.getpid())}, swarm=True,
                              registry_mirror=lesson_mirror.url)
    name, state = f"whale-test-before-{os.getpid()}", tmp_path_factory.mktemp("before") / "engine"
    old = SandboxCluster(name, state, host=host_docker, settings=settings, nodes=1)
    try:
        old.start(timeout=120)
        assert until(lambda: docker(old, "info", "--format", "{{.Swarm.NodeAddr}}",
                                    check=False).stdout.strip() == "127.0.0.1", timeout=30)
        docker(old, "volume", "create", "kept")
        docker(old, "service", "create", "--quiet", "--name", "kept", "--endpoint-mode", "dnsrr",
               "webserver")
        old_bundle = tmp_path_factory.mktemp("old-bundle")
        shutil.copytree(old.bundle_dir, old_bundle, dirs_exist_ok=True)
        shutil.rmtree(old.manager.ca_dir)  # as it was before CAs were kept

        three = SandboxCluster(name, state, host=host_docker, settings=settings, nodes=3)
        three.start(timeout=120)
        assert three.manager.ca() is not None
        out = docker(three, "node", "ls", "--format", "{{.Hostname}} {{.Status}}").stdout
        assert sorted(out.split("\n")[:-1]) == ["node1 Ready", "node2 Ready", "node3 Ready"]
        addr = docker(three, "info", "--format", "{{.Swarm.NodeAddr}}").stdout.strip()
        assert addr == three.manager.network_address() != "127.0.0.1"
        assert docker(three, "volume", "ls", "-q").stdout.split() == ["kept"]
        assert docker(three, "service", "ls", "--format", "{{.Name}}").stdout.split() == ["kept"]
        # The old bundle's certificates are of a CA the engine no longer trusts.
        refused = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=60,
                                 env=dict(engine_env(three), DOCKER_CERT_PATH=str(old_bundle)))
        assert refused.returncode != 0
        assert "certificate" in refused.stderr.lower() or "tls" in refused.stderr.lower(), refused.stderr
    finally:
        SandboxCluster(name, state, host=host_docker, settings=settings, nodes=3).remove()
