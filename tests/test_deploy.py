"""`whale deploy` (issue 10): the site as a Docker stack on a practice Swarm of three
machines, through the real commands an operator runs (`whale cluster up 3`, then `whale
deploy`), and learners who sign in through its proxy as a browser would.

The tests run in order on one deployed site: six learners spread over the nodes, a node
drained under some of them, the hub rescheduled, and the stack taken down and deployed
again, learners' work kept."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest
from deployed import Learner
from nbval.plugin import get_sanitize_patterns

from whale_hub.engine import free_port
from whale_lessons.runner import LESSONS_DIR, SANITIZE

pytestmark = [pytest.mark.docker, pytest.mark.hub]
PASSWORD = "a-learner's-own"
NAMES = ["ann", "bo", "cy", "dee", "eli", "fay"]
SWARM_LEARNER = "sam"  # who chooses a Swarm of 3 nodes
NOTEBOOK = {"type": "notebook", "content": {"cells": [], "metadata": {}, "nbformat": 4,
                                            "nbformat_minor": 5}}


@pytest.fixture(scope="module")
def site(engine_image, tmp_path_factory):
    """A practice Swarm of 3 and the site deployed on it: run(*whale args),
    docker(*args) on the Swarm, and the site's url."""
    state = tmp_path_factory.mktemp("deploy-state")
    name = f"whale-test-deploy-{os.getpid()}"
    stack = f"wt{os.getpid()}"
    env = dict(os.environ, WHALE_STATE=str(state), WHALE_REGISTRY_PORT=str(free_port()),
               WHALE_PRACTICE=name, DOCKER_CONFIG=str(tmp_path_factory.mktemp("docker-config")),
               WHALE_POLL_INTERVAL="3", WHALE_ADMINS="boss")

    def run(*args, timeout=1200):
        return subprocess.run([sys.executable, "-m", "whale_site.cli", *args], env=env,
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout)

    def docker(*args, check=True, stderr=False):
        """docker's output (with `stderr`, its error stream's too: a service's log)."""
        done = subprocess.run(["docker", "--context", name, *args], env=env,
                              capture_output=True, text=True, timeout=300)
        if check and done.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)}: {done.stderr}")
        return done.stdout + done.stderr if stderr else done.stdout

    up = run("cluster", "up", "3")
    assert up.returncode == 0, up.stdout + up.stderr
    deployed = run("deploy", "--context", name, "--stack", stack)
    run.docker, run.stack, run.deployed, run.context = docker, stack, deployed, name
    sites = [line[len("site: "):] for line in deployed.stdout.splitlines() if line.startswith("site: ")]
    run.url = sites[-1] if sites else None
    run.learners = {}
    yield run
    run("deploy", "--down", "--context", name, "--stack", stack)
    run("cluster", "down")
    from whale_site.registry import RegistryMirror
    RegistryMirror(state / "registry", address="127.0.0.1").stop()


def hub_log(site, about: str, lines: int = 2000) -> str:
    """The deployed hub's log lines that mention `about` (a learner's name)."""
    out = site.docker("service", "logs", "--raw", "--tail", str(lines), f"{site.stack}_hub",
                      check=False, stderr=True)
    return "\n".join(line[:400] for line in out.splitlines() if about in line)


def placement(site, service: str) -> str:
    """The node of a service's running task."""
    out = site.docker("service", "ps", service, "--filter", "desired-state=running",
                      "--format", "{{.Node}} {{.CurrentState}}", check=False)
    running = [line.split()[0] for line in out.splitlines() if "Running" in line]
    if len(running) != 1:
        learner = service.rsplit("-", 1)[-1]
        raise AssertionError(
            f"{service} has no one running task: {out!r}\nservices: "
            f"{site.docker('service', 'ls', '--format', '{{.Name}} {{.Replicas}}', check=False)}"
            f"\nthe hub on {learner}:\n{hub_log(site, learner)[-6000:]}")
    return running[0]


def first_run(site, name: str) -> tuple[str, str]:
    learner = Learner(site.url, name, PASSWORD).sign_in()
    learner.make_token()
    learner.start()
    site.learners[name] = learner
    return name, learner.run("docker run --rm hello-world")


def test_whale_deploy_serves_the_site_from_a_stack(site):
    assert site.deployed.returncode == 0, site.deployed.stdout + site.deployed.stderr
    assert site.url, site.deployed.stdout
    assert re.fullmatch(r"http://[0-9.]+:8000", site.url), site.url
    services = site.docker("stack", "services", site.stack, "--format", "{{.Name}} {{.Replicas}}")
    assert sorted(services.split("\n")[:-1]) == [
        f"{site.stack}_db 1/1", f"{site.stack}_firewall 3/3", f"{site.stack}_hub 1/1",
        f"{site.stack}_registry 1/1"]
    # The site's secrets are Swarm secrets: in no file, log or argument.
    secrets = site.docker("secret", "ls", "--format", "{{.Name}}").split()
    assert {"whale_crypt_key", "whale_cookie_secret", "whale_db_password"} <= set(secrets)
    hub_env = site.docker("service", "inspect", f"{site.stack}_hub", "--format",
                          "{{json .Spec.TaskTemplate.ContainerSpec.Env}}")
    assert "whale_db_password=" not in hub_env
    assert "/run/secrets/whale_crypt_key" in hub_env
    # The registry every node pulls from is read-only: a push is refused.
    registry = site.url.rsplit(":", 1)[0] + ":5000"
    import urllib.error
    import urllib.request
    req = urllib.request.Request(f"{registry}/v2/library/evil/blobs/uploads/", method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(req, timeout=10)
    refused.value.close()
    assert refused.value.code == 405


def test_six_learners_sign_in_and_swarm_spreads_them_over_the_nodes(site):
    with ThreadPoolExecutor(len(NAMES)) as pool:
        outputs = dict(pool.map(lambda n: first_run(site, n), NAMES))
    for name, out in outputs.items():
        assert "Hello from How to Whale!" in out, (name, out)
    nodes = {}
    for name in NAMES:
        engine = placement(site, f"whale-engine-{name}")
        # The learner's server runs beside their engine.
        assert placement(site, f"jupyter-{name}") == engine, name
        nodes[name] = engine
    assert len(set(nodes.values())) >= 2, nodes
    site.nodes = nodes


def test_each_nodes_firewall_keeps_learners_off_docker_and_swarm_ports(site):
    """From a learner's containers (and their server's shell), no node's Docker API, Swarm
    control plane, gossip or VXLAN port answers, nor a link-local address; the site's
    registry and the hub do."""
    addresses = {node: site.docker("node", "inspect", node, "--format", "{{.Status.Addr}}").strip()
                 for node in ("node1", "node2", "node3")}
    learner = site.learners[NAMES[0]]
    probes = [(node, addr, port) for node, addr in addresses.items() for port in (2376, 2377, 7946)]
    probes += [("node1", addresses["node1"], 5000), ("node1", addresses["node1"], 8000)]
    script = "; ".join(f"nc -w 3 {addr} {port} </dev/null >/dev/null 2>&1 && echo {node}:{port}:open "
                       f"|| echo {node}:{port}:closed" for node, addr, port in probes)
    inside = learner.run(f"docker run --rm busybox sh -c '{script}'", timeout=300)
    shell = learner.run("; ".join(
        f"timeout 3 bash -c '</dev/tcp/{addr}/{port}' 2>/dev/null && echo {node}:{port}:open "
        f"|| echo {node}:{port}:closed" for node, addr, port in probes), timeout=300)
    expected = [f"{node}:{port}:{'open' if port in (5000, 8000) else 'closed'}"
                for node, _, port in probes]
    def said(out: str) -> list[str]:
        return re.findall(r"^node\d:\d+:(?:open|closed)$", out, re.MULTILINE)
    assert said(inside) == expected, inside
    assert said(shell) == expected, shell


def lesson_cells(path: Path):
    """A lesson's code cells as CI runs them (solutions included), each (source, tags,
    the stored output nbval compares against, sanitized as nbval does); and that
    sanitizer."""
    nb = nbformat.read(path, 4)
    patterns = get_sanitize_patterns(SANITIZE.read_text())

    def sanitize(text: str) -> str:
        for regex, replace in patterns:
            text = re.sub(regex, replace, text)
        return text
    return [(c.source, c.metadata.get("tags", []),
             sanitize("".join(o.get("text", "") for o in c.outputs if o.output_type == "stream")))
            for c in nb.cells if c.cell_type == "code"], sanitize


def test_a_learners_swarm_of_three_runs_lesson_13_and_is_kept_across_a_restart(site):
    """A learner who chooses 3 nodes gets a Swarm of three classroom engines beside their
    server, and lesson 13 (a registry on node1, a stack of 6 across the nodes, a rolling
    update) runs in their kernel as CI runs it, every output as the lesson stored it. A
    restart (new addresses for every node) keeps their Swarm and its services."""
    learner = Learner(site.url, SWARM_LEARNER, PASSWORD).sign_in()
    learner.make_token()
    messages = learner.start(nodes=3)
    assert "Creating your Swarm of 3 Docker engines" in messages, messages
    assert "Your 3 engines answer: joining node2 and node3 to node1's Swarm" in messages, messages
    node = placement(site, f"whale-engine-{SWARM_LEARNER}")
    assert [placement(site, f"whale-node{n}-{SWARM_LEARNER}") for n in (2, 3)] == [node, node]
    assert placement(site, f"jupyter-{SWARM_LEARNER}") == node
    cells, sanitize = lesson_cells(LESSONS_DIR / "13-stacks-across-nodes.ipynb")
    with learner.kernel(timeout=300) as cell:
        for source, tags, stored in cells:
            out, status = cell(source)
            if "raises-exception" in tags:
                # A check before its solution: it fails, saying what is missing.
                assert (status, sanitize(out)) == ("error", stored), source
                continue
            assert status == "ok", (source, out)
            if "nbval-ignore-output" not in tags:
                assert sanitize(out) == stored, (source, out)
        out, status = cell("docker service create -q --name keep --replicas 3 "
                           "--placement-pref spread=node.hostname busybox sleep 1d >/dev/null "
                           "&& docker service ps keep --format '{{.Node}}' | sort")
        assert (status, out) == ("ok", "node1\nnode2\nnode3\n"), out
    learner.stop()
    assert not [n for n in site.docker("service", "ls", "--format", "{{.Name}}").split()
                if n.endswith(f"-{SWARM_LEARNER}")]
    messages = learner.start(nodes=3)
    assert placement(site, f"whale-engine-{SWARM_LEARNER}") == node
    with learner.kernel(timeout=300) as cell:
        assert cell("whale-check --nodes 3") == (
            "✔ Your Swarm has the 3 nodes this lesson needs: node1, node2, node3.\n", "ok")
        out, status = cell("timeout 60 sh -c 'until [ \"$(docker service ps keep --filter "
                           "desired-state=running --format \"{{.Node}} {{.CurrentState}}\" "
                           "| grep -c Running)\" = 3 ]; do sleep 1; done' "
                           "&& docker service ls --format '{{.Name}} {{.Replicas}}'")
        assert (status, out) == ("ok", "keep 3/3\n"), out
    learner.stop()


def test_a_drained_nodes_learners_start_again_on_another(site):
    assert hasattr(site, "nodes"), "the six learners' test did not place them"
    drained = next(node for node in ("node2", "node3") if node in site.nodes.values())
    moved = [name for name, node in site.nodes.items() if node == drained]
    for name in moved:
        assert site.learners[name].contents("PUT", "on-old-node.ipynb", json=NOTEBOOK).status_code == 201
    site.docker("node", "update", "--availability", "drain", drained)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and any(site.learners[n].server() for n in moved):
            time.sleep(1)
        assert not [n for n in moved if site.learners[n].server()], "the hub did not see the drain"
        for name in moved:
            messages = site.learners[name].start()
            assert (f"Your engine and your work were on {drained}, which is drained by the "
                    "site's operator: they stay there for when it is back. Starting you afresh "
                    "on another node") in messages, messages
            now = placement(site, f"whale-engine-{name}")
            assert now != drained
            assert placement(site, f"jupyter-{name}") == now
            assert "Hello from How to Whale!" in site.learners[name].run("docker run --rm hello-world")
            # A fresh start: the work of the old node waits there.
            assert site.learners[name].contents("GET", "on-old-node.ipynb").status_code == 404
            site.nodes[name] = now
    finally:
        site.docker("node", "update", "--availability", "active", drained)


def test_the_hub_rescheduled_loses_no_learner_token_or_notebook(site):
    for name in NAMES:
        assert site.learners[name].contents("PUT", "kept.ipynb", json=NOTEBOOK).status_code == 201
    before = site.docker("ps", "-q", "--filter", f"name={site.stack}_hub")
    site.docker("service", "update", "--quiet", "--force", f"{site.stack}_hub")
    after = site.docker("ps", "-q", "--filter", f"name={site.stack}_hub")
    assert after.strip()
    assert after != before
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if site.learners[NAMES[0]].api("GET", "/").status_code == 200:
                break
        except OSError:
            pass
        time.sleep(1)
    for name in NAMES:
        learner = site.learners[name]
        assert learner.api("GET", f"/users/{name}").status_code == 200  # the token still works
        assert learner.server()["ready"], name
        assert learner.contents("GET", "kept.ipynb").status_code == 200, name
        Learner(site.url, name, PASSWORD).sign_in()  # the password too
    assert "Hello from How to Whale!" in site.learners[NAMES[0]].run("docker run --rm hello-world")
    with pytest.raises(AssertionError, match="could not sign in: HTTP 403"):
        Learner(site.url, NAMES[0], "another-password").sign_in()


def volumes_of(site, name: str) -> set[str]:
    """The volumes a learner's server and engine services mount."""
    found = set()
    for service in (f"jupyter-{name}", f"whale-engine-{name}"):
        found |= set(site.docker("service", "inspect", service, "--format",
                                 "{{range .Spec.TaskTemplate.ContainerSpec.Mounts}}"
                                 "{{if eq .Type \"volume\"}}{{.Source}} {{end}}{{end}}").split())
    return found


def test_the_janitor_removes_a_deleted_learners_services_secrets_and_network(site):
    boss = Learner(site.url, "boss", PASSWORD).sign_in()  # an admin (WHALE_ADMINS)
    boss.make_token()
    gone = NAMES[-1]
    first_ones = volumes_of(site, gone)
    assert len(first_ones) == 2, first_ones  # their work, their engine's data
    assert site.docker("secret", "ls", "-q", "--filter", f"label=org.howtowhale.owner={gone}")
    r = boss.api("DELETE", f"/users/{gone}")
    assert r.status_code == 204, r.text
    assert not site.docker("service", "ls", "-q", "--filter", f"label=org.howtowhale.owner={gone}")
    stayed = [n for n in NAMES if n != gone]
    hub = site.docker("ps", "-q", "--filter", f"name={site.stack}_hub").strip()
    # The janitor's sweeps (every few minutes in the hub): a network goes once the last
    # task on it has, which may take a sweep more.
    swept = ""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and f"whale-net-{gone}" not in swept:
        swept += site.docker("exec", hub, "python3", "-c", (
            "from whale_hub.janitor import sweep; from whale_core.layout import engines_dir; "
            f"print(sweep({set(stayed) | {'boss'}!r}, str(engines_dir())))"))
        time.sleep(2)
    assert f"whale-net-{gone}" in swept
    assert f"learners/{gone}" in swept
    assert not site.docker("secret", "ls", "-q", "--filter", f"label=org.howtowhale.owner={gone}")
    # (Docker answered the network's removal. The site node's own `network ls` kept
    # listing a removed overlay for over a minute in one run of three: not asserted.)
    # Nobody else's: the others' servers run on.
    for name in stayed:
        assert site.learners[name].server()["ready"], name
    # A new learner given the name later is someone else: none of the first one's volumes
    # (still on their node: the janitor reaches the site node's only) or network names is
    # theirs, wherever the scheduler puts them, and they start afresh.
    again = Learner(site.url, gone, "someone else's").sign_in()
    again.make_token()
    again.start()
    assert not first_ones & volumes_of(site, gone), first_ones
    assert again.contents("GET", "kept.ipynb").status_code == 404
    assert again.run("docker image ls -q") == ""  # the first one pulled hello-world
    assert "Hello from How to Whale!" in again.run("docker run --rm hello-world")
    again.stop()


def test_down_keeps_learners_work_and_deploy_brings_it_back(site):
    down = site("deploy", "--down", "--context", site.context, "--stack", site.stack)
    assert down.returncode == 0, down.stdout + down.stderr
    assert "learners' work, the database and the secrets are kept" in down.stdout
    assert site.docker("service", "ls", "-q") == ""
    volumes = site.docker("volume", "ls", "--format", "{{.Name}}").split()
    assert f"{site.stack}_db" in volumes
    assert f"{site.stack}_hub" in volumes
    again = site("deploy", "--context", site.context, "--stack", site.stack)
    assert again.returncode == 0, again.stdout + again.stderr
    name = NAMES[0]
    learner = Learner(site.url, name, PASSWORD).sign_in()  # the same password: the same hub
    learner.make_token()
    learner.start()
    assert learner.contents("GET", "kept.ipynb").status_code == 200
    assert "Hello from How to Whale!" in learner.run("docker run --rm hello-world")
