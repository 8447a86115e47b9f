"""Nothing shared that a learner can write or reach (issue 8, part 4), against real parts:
the session's lesson mirror, a real hub (with the host firewall it installs, as `whale
up` does), and two learners' real sandbox engines, each on a learner network of its own
(a `whl…` bridge, as the spawner makes them).

A "learner's container" is tried from both places a learner has: a container their
engine runs (NATed by the engine) and a container on their network itself (where their
notebook server sits). Link-local traffic goes only to a fake metadata host in a
network namespace of this test's own: nothing here is ever sent off this machine.
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest
from engine_fixtures import TEST_LABEL, engine_env, start_engine
from hub_fixtures import Hub

from whale_core.layout import ROLE_LABEL as LABEL
from whale_core.names import bridge_options
from whale_site import firewall

pytestmark = pytest.mark.hub

METADATA_IP = "169.254.169.254"
METADATA_PEER = "169.254.169.1"  # the host's end of the fake metadata host's veth pair
CANARY = "whale-test-metadata-canary"
PROBE_IMAGE = "debian:bookworm-slim"  # bash's /dev/tcp, on the operator's engine


def docker(env, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


# -- the site: a hub with its firewall, and two learners ------------------------------------
@pytest.fixture(scope="module")
def hub(tmp_path_factory, lesson_mirror):
    h = Hub(tmp_path_factory.mktemp("isolation-hub"),
            extra_env={"WHALE_REGISTRY_MIRROR": lesson_mirror.url})
    yield h
    h.close()


def _learner_network(host_docker, name: str) -> str:
    """A learner network as the spawner makes it: a bridge whose interface is whl…"""
    from docker.errors import NotFound
    network = f"whale-net-{name}"
    with contextlib.suppress(NotFound):
        host_docker.networks.get(network).remove()
    host_docker.networks.create(network, driver="bridge", options=bridge_options(network),
                                labels={LABEL: "network", TEST_LABEL: str(os.getpid())})
    assert host_docker.networks.get(network).attrs["Options"][
        "com.docker.network.bridge.name"].startswith("whl")
    return network


class Learner:
    def __init__(self, key: str, tmp_path_factory, host_docker, mirror):
        self.host = host_docker
        self.engine = None
        self.network = _learner_network(host_docker, f"iso{key}-{os.getpid()}")
        try:
            self.engine = start_engine(f"iso{key}", tmp_path_factory, host_docker,
                                       registry_mirror=mirror.url, network=self.network)
            # The bundle names the engine as the learner's server reaches it; the host
            # drives it through its loopback port.
            self.env = dict(engine_env(self.engine), DOCKER_HOST=self.engine.docker_host)
            pulled = docker(self.env, "pull", "-q", "busybox")  # through the mirror
            assert pulled.returncode == 0, pulled.stderr
        except BaseException:
            self.close()
            raise

    def addresses(self) -> dict[str, str]:
        """The engine container's address on each network it is on."""
        c = self.host.containers.get(self.engine.name)
        return {net: info["IPAddress"]
                for net, info in c.attrs["NetworkSettings"]["Networks"].items()}

    def gateway(self) -> str:
        """The host's address on this learner's network."""
        return self.host.networks.get(self.network).attrs["IPAM"]["Config"][0]["Gateway"]

    def probe_from_engine_container(self, targets: dict[str, tuple[str, int]]) -> dict[str, bool]:
        """Which targets a container on this learner's engine can open a TCP connection to."""
        script = "".join(
            f"if nc -w 3 {ip} {port} -e true 2>/dev/null; then echo '{name} open'; "
            f"else echo '{name} closed'; fi\n" for name, (ip, port) in targets.items())
        out = docker(self.env, "run", "--rm", "busybox", "sh", "-c", script)
        assert out.returncode == 0, out.stderr
        return _parse(out.stdout, targets)

    def probe_from_network(self, targets: dict[str, tuple[str, int]]) -> dict[str, bool]:
        """The same from a container on the learner's network (where their server sits)."""
        return probe_on(self.host, self.network, targets)

    def close(self):
        if self.engine is not None:
            self.engine.remove()
        with contextlib.suppress(Exception):
            network = self.host.networks.get(self.network)
            network.reload()
            for c in network.containers:  # an engine that failed to start, say
                if c.labels.get(TEST_LABEL) == str(os.getpid()):
                    c.remove(force=True, v=True)
            network.remove()


def probe_on(host_docker, network: str, targets: dict[str, tuple[str, int]]) -> dict[str, bool]:
    script = "".join(
        f"if timeout 4 bash -c 'exec 3<>/dev/tcp/{ip}/{port}' 2>/dev/null; "
        f"then echo '{name} open'; else echo '{name} closed'; fi\n"
        for name, (ip, port) in targets.items())
    out = host_docker.containers.run(PROBE_IMAGE, ["bash", "-c", script], network=network,
                                     remove=True, labels={TEST_LABEL: str(os.getpid())})
    return _parse(out.decode(), targets)


def _parse(text: str, targets) -> dict[str, bool]:
    seen = dict(line.rsplit(" ", 1) for line in text.strip().splitlines())
    assert set(seen) == set(targets), text
    return {name: seen[name] == "open" for name in targets}


@pytest.fixture(scope="module")
def ada(hub, tmp_path_factory, host_docker, lesson_mirror, engine_image):
    learner = Learner("a", tmp_path_factory, host_docker, lesson_mirror)
    yield learner
    learner.close()


@pytest.fixture(scope="module")
def bob(hub, tmp_path_factory, host_docker, lesson_mirror, engine_image):
    learner = Learner("b", tmp_path_factory, host_docker, lesson_mirror)
    yield learner
    learner.close()


@pytest.fixture
def host_listener(hub):
    """A throwaway TCP service on the host's bridge gateway, a port nobody allowed."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((hub.gateway, 0))
    server.listen(16)
    server.settimeout(0.2)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn:
                conn.sendall(b"host service\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    with socket.create_connection((hub.gateway, server.getsockname()[1]), timeout=3) as c:
        assert c.recv(64) == b"host service\n"  # it answers: the probes below can fail
    yield server.getsockname()[1]
    stop.set()
    thread.join(5)
    server.close()


# -- the mirror: pull yes, push and delete no ---------------------------------------------------
MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"


def _manifest(mirror, name: str) -> tuple[str, dict]:
    req = urllib.request.Request(f"{mirror.url}/v2/library/{name}/manifests/latest",
                                 headers={"Accept": MANIFEST_V2})
    with urllib.request.urlopen(req, timeout=5) as r:
        return r.headers["Docker-Content-Digest"], json.load(r)


def test_a_learner_pulls_from_the_mirror_but_cannot_push_to_it(ada, lesson_mirror):
    digest, _ = _manifest(lesson_mirror, "hello-world")
    run = docker(ada.env, "run", "--rm", "hello-world")
    assert run.returncode == 0, run.stderr
    assert "Hello from" in run.stdout, run.stderr
    for target in (f"{lesson_mirror.endpoint}/library/hello-world:latest",  # replace a lesson's
                   f"{lesson_mirror.endpoint}/library/whale-evil:latest"):  # or add one
        assert docker(ada.env, "tag", "busybox", target).returncode == 0
        pushed = docker(ada.env, "push", target)
        assert pushed.returncode != 0, pushed.stdout
        # Distribution in read-only mode serves GET and HEAD only: the blob upload's POST
        # is answered `405 Method Not Allowed` with the body "Method not allowed", which
        # Engine 26 passes on as "unknown: Method not allowed".
        assert "Method not allowed" in pushed.stderr, pushed.stderr
    assert _manifest(lesson_mirror, "hello-world")[0] == digest
    assert "library/whale-evil" not in lesson_mirror.catalog()


def test_a_learner_cannot_delete_from_the_mirror(ada, lesson_mirror):
    digest, manifest = _manifest(lesson_mirror, "hello-world")
    layer = manifest["layers"][0]["digest"]
    host, port = lesson_mirror.address, lesson_mirror.port
    requests = {
        "delete-manifest": f"DELETE /v2/library/hello-world/manifests/{digest}",
        "delete-blob": f"DELETE /v2/library/hello-world/blobs/{layer}",
        "start-upload": "POST /v2/library/hello-world/blobs/uploads/",
        "put-manifest": "PUT /v2/library/hello-world/manifests/latest",
        "pull-manifest": f"GET /v2/library/hello-world/manifests/{digest}",
    }
    script = "".join(
        f"echo '== {name}'; printf '{line} HTTP/1.0\\r\\nHost: {host}:{port}\\r\\n"
        f"Accept: {MANIFEST_V2}\\r\\nContent-Length: 0\\r\\n\\r\\n' | nc -w 5 {host} {port} | "
        "head -3\n" for name, line in requests.items())
    out = docker(ada.env, "run", "--rm", "busybox", "sh", "-c", script)
    assert out.returncode == 0, out.stderr
    answers = {part.split("\n", 1)[0].strip(): part for part in out.stdout.split("== ")[1:]}
    for name in ("delete-manifest", "delete-blob", "start-upload", "put-manifest"):
        assert "405 Method Not Allowed" in answers[name], out.stdout
        assert "Allow: GET, HEAD" in answers[name], out.stdout
    assert "200 OK" in answers["pull-manifest"], out.stdout
    assert _manifest(lesson_mirror, "hello-world")[0] == digest
    again = docker(ada.env, "pull", f"{lesson_mirror.endpoint}/library/hello-world:latest")
    assert again.returncode == 0, again.stderr


# -- other learners ------------------------------------------------------------------
def test_a_learner_cannot_reach_another_learners_published_ports_or_engine(ada, bob):
    for learner in (ada, bob):
        docker(learner.env, "rm", "-f", "iso-web")
        up = docker(learner.env, "run", "-d", "--name", "iso-web", "-p", "8080:80", "webserver")
        assert up.returncode == 0, up.stderr
    time.sleep(0.5)
    try:
        own = {f"own-{net}": (ip, 8080) for net, ip in ada.addresses().items()}
        others = {}
        for net, ip in bob.addresses().items():
            others[f"bob-web-{net}"] = (ip, 8080)
            others[f"bob-engine-{net}"] = (ip, 2376)
        # Bob's engine's TLS port is published on the host's loopback: not from here.
        others["bob-engine-published"] = (ada.gateway(), bob.engine.port)
        from_engine = ada.probe_from_engine_container({**own, **others})
        assert all(from_engine[k] for k in own), from_engine
        assert not any(from_engine[k] for k in others), from_engine
        # Lessons reach their own published ports through host-gateway.
        own_gw = docker(ada.env, "run", "--rm", "--add-host", "host.docker.internal:host-gateway",
                        "busybox", "timeout", "5", "wget", "-qO-", "http://host.docker.internal:8080/")
        assert own_gw.returncode == 0, own_gw.stderr
        assert "Hello" in own_gw.stdout, own_gw.stderr
        # From where ada's server sits, straight at bob's network (no NAT): Docker's own
        # isolation between bridge networks.
        from_network = ada.probe_from_network({**own, **others})
        assert all(from_network[k] for k in own), from_network
        assert not any(from_network[k] for k in others), from_network
    finally:
        for learner in (ada, bob):
            docker(learner.env, "rm", "-f", "iso-web")


# -- the host ------------------------------------------------------------------------
def test_learners_reach_the_hub_api_progress_and_mirror_but_nothing_else_of_the_host(
        hub, ada, lesson_mirror, host_listener, host_docker):
    allowed = {"hub-api": (hub.gateway, hub.hub_port),
               "progress-service": (hub.gateway, hub.progress_port),
               "mirror": (lesson_mirror.address, lesson_mirror.port)}
    refused = {"proxy-api": (hub.gateway, hub.proxy_api_port),
               "host-service": (hub.gateway, host_listener),
               "host-service-via-own-gateway": (ada.gateway(), host_listener),
               "public-port": (hub.gateway, hub.port)}
    targets = {**allowed, **refused}
    for where, seen in (("engine container", ada.probe_from_engine_container(targets)),
                        ("learner network", ada.probe_from_network(targets))):
        assert all(seen[k] for k in allowed), (where, seen, firewall.describe())
        assert not any(seen[k] for k in refused), (where, seen, firewall.describe())
    # The control: from the default bridge (not a learner's network), the same host
    # service answers, so it is the firewall that keeps learners out.
    assert probe_on(host_docker, "bridge", {"host-service": (hub.gateway, host_listener)}) == \
        {"host-service": True}
    # What a server does with the hub's API: it answers there.
    page = docker(ada.env, "run", "--rm", "busybox", "timeout", "5", "wget", "-qO-",
                  f"http://{hub.gateway}:{hub.hub_port}/hub/api/")
    assert page.returncode == 0, page.stderr
    assert '"version"' in page.stdout, page.stderr


def test_the_hub_api_listens_only_on_the_bridge_gateway(hub):
    addresses = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True,
                               text=True, check=True).stdout
    local = {line.split()[3].split("/")[0] for line in addresses.splitlines()}
    assert hub.gateway in local
    for address in sorted(local):  # only this machine's own addresses
        with socket.socket() as s:
            s.settimeout(3)
            reached = s.connect_ex((address, hub.hub_port)) == 0
        assert reached == (address == hub.gateway), address


def test_the_firewall_rules_are_in_place_and_idempotent(hub):
    rules = firewall.describe()
    assert f"-A INPUT -i whl+ -j {firewall.INPUT_CHAIN}" in rules
    assert f"-A DOCKER-USER -i whl+ -j {firewall.FORWARD_CHAIN}" in rules
    assert f"--dport {hub.hub_port} " in rules
    assert "-d 169.254.0.0/16" in rules
    assert rules.count(" -j DROP") >= 2
    owner = f"test-{os.getpid()}-idempotent"
    try:
        firewall.install(1, 2, owner=owner, pid=os.getpid())
        once = firewall.describe()
        firewall.install(1, 2, owner=owner, pid=os.getpid())
        assert firewall.describe() == once
        assert owner in firewall.owners()
        assert hub.firewall_owner in firewall.owners()
    finally:
        firewall.remove(owner)
    assert owner not in firewall.owners()
    assert firewall.describe() == rules  # the hub's own rules are untouched


# -- link-local: a fake metadata host of this test's own ------------------------------------
def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def _routed_to(device: str) -> bool:
    """Whether 169.254.169.254 is routed to our veth (and so nowhere off this machine)."""
    out = _ip("-4", "route", "get", METADATA_IP, check=False)
    return out.returncode == 0 and f" dev {device} " in out.stdout + " "


@pytest.fixture(scope="module")
def metadata_host(tmp_path_factory):
    """169.254.169.254 in a network namespace of its own, behind a veth pair, serving
    the canary over HTTP; routed from the host over that veth only."""
    tag = str(os.getpid() % 10**8)
    netns, host_if, ns_if = f"whale-md-{tag}", f"wmh{tag}", f"wmn{tag}"
    if _ip("-4", "route", "show", f"{METADATA_IP}/32", check=False).stdout.strip() or \
            _ip("-4", "addr", "show", "to", f"{METADATA_PEER}/32", check=False).stdout.strip():
        pytest.skip("169.254.169.254 is already routed on this machine (another test run?)")
    root = tmp_path_factory.mktemp("metadata")
    (root / "latest" / "meta-data").mkdir(parents=True)
    (root / "latest" / "meta-data" / "iam").write_text(CANARY)
    server = None
    try:
        _ip("netns", "add", netns)
        _ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        _ip("link", "set", ns_if, "netns", netns)
        _ip("addr", "add", METADATA_PEER, "peer", METADATA_IP, "dev", host_if)
        _ip("link", "set", host_if, "up")
        _ip("-n", netns, "link", "set", "lo", "up")
        _ip("-n", netns, "addr", "add", METADATA_IP, "peer", METADATA_PEER, "dev", ns_if)
        _ip("-n", netns, "link", "set", ns_if, "up")
        _ip("-n", netns, "route", "add", "default", "via", METADATA_PEER, "dev", ns_if)
        if not _routed_to(host_if):
            pytest.skip(f"could not route {METADATA_IP} to the test's own namespace")
        server = subprocess.Popen(
            ["ip", "netns", "exec", netns, sys.executable, "-m", "http.server", "80",
             "--bind", METADATA_IP, "--directory", str(root)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # The host reaches it (so the learners' probe below can fail) — only ever over
        # the veth: the route was checked just above, and is checked again each time.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        deadline, page = time.monotonic() + 20, None
        while time.monotonic() < deadline and page is None:
            assert _routed_to(host_if)
            try:
                with opener.open(f"http://{METADATA_IP}/latest/meta-data/iam", timeout=2) as r:
                    page = r.read().decode()
            except (OSError, urllib.error.URLError):
                time.sleep(0.2)
        assert page == CANARY, "the fake metadata host does not answer from the host"
        yield {"device": host_if}
    finally:
        if server is not None:
            server.terminate()
            server.wait(10)
        _ip("netns", "del", netns, check=False)
        _ip("link", "del", host_if, check=False)


def test_learners_cannot_reach_link_local_metadata(metadata_host, ada, hub, host_docker):
    if not _routed_to(metadata_host["device"]):
        pytest.skip("169.254.169.254 is not routed to the test's own namespace: no traffic sent")
    # (busybox's `wget -T` crashes: `timeout` bounds it.) The hub's API answers the
    # same container, so wget works there and only the metadata host is out of reach.
    script = (f"timeout 5 wget -qO- http://{hub.gateway}:{hub.hub_port}/hub/api/; echo; "
              f"if timeout 5 wget -qO- http://{METADATA_IP}/latest/meta-data/iam; "
              "then echo; echo reached; else echo unreachable $?; fi")
    out = docker(ada.env, "run", "--rm", "busybox", "sh", "-c", script)
    assert '"version"' in out.stdout, out.stdout + out.stderr
    assert CANARY not in out.stdout, out.stdout + out.stderr
    assert "unreachable" in out.stdout, out.stdout + out.stderr
    assert "unreachable 139" not in out.stdout  # wget itself did not crash
    if not _routed_to(metadata_host["device"]):
        pytest.skip("the route went away: no more traffic sent")
    seen = ada.probe_from_network({"metadata": (METADATA_IP, 80)})
    assert seen == {"metadata": False}
    # The control: a container on the default bridge (no learner's network) is forwarded
    # and NATed to it like any other, so it is the firewall that stops learners.
    if not _routed_to(metadata_host["device"]):
        pytest.skip("the route went away: no more traffic sent")
    assert probe_on(host_docker, "bridge", {"metadata": (METADATA_IP, 80)}) == {"metadata": True}

