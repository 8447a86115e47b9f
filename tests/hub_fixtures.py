"""A real JupyterHub (with its configurable-http-proxy) running the site's config.

The hub runs as a separate process exactly as `whale up` starts it, with test
settings: dummy sign-in, an admin API token, free ports. Learners' servers are real
containers of the single-user image; their engines are real sandbox engines.
"""
from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse

import docker
import requests
import websocket
from deployed import execute
from engine_fixtures import start_engine

from whale_core.layout import OWNER_LABEL, SITE_LABEL, site_id_of
from whale_core.names import bridge_options, learner_network, learner_slug
from whale_hub.engine import free_port
from whale_hub.engine_disk import unmount_under
from whale_site import firewall, images
from whale_site.registry import bridge_gateway

CONFIG = Path(__file__).resolve().parent.parent / "whale_site" / "jupyterhub_config.py"


class Hub:
    """A running hub: REST helpers, and code execution in a learner's kernel."""

    def __init__(self, state: Path, extra_env: dict[str, str] | None = None,
                 config: Path | None = None, port: int | None = None):
        self.state = state
        self.token = secrets.token_hex(16)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.prefix = f"t{os.getpid()}{uuid.uuid4().hex[:4]}"
        self.gateway = bridge_gateway()
        self.hub_port = free_port(self.gateway)  # the hub's API listens there only
        # The lesson-progress service listens beside it (whale_progress).
        self.progress_port = int((extra_env or {}).get("WHALE_PROGRESS_PORT")
                                 or free_port(self.gateway))
        self.proxy_api_port = free_port()
        env = dict(os.environ,
                   WHALE_STATE=str(state), WHALE_PORT=str(self.port), WHALE_BIND_IP="127.0.0.1",
                   WHALE_HUB_PORT=str(self.hub_port),
                   WHALE_PROGRESS_PORT=str(self.progress_port),
                   WHALE_PROXY_API_PORT=str(self.proxy_api_port),
                   WHALE_HUB_CONNECT_IP=self.gateway, WHALE_AUTH="dummy",
                   WHALE_ADMIN_TOKEN=self.token, WHALE_PROVIDER="choice", WHALE_SWARM="0",
                   WHALE_MAX_NODES="1",
                   # No warm pool: these tests name learners' engines; tests/test_pool.py has one.
                   WHALE_ENGINE_POOL="0",
                   WHALE_IDLE_TIMEOUT="3600", JUPYTERHUB_CRYPT_KEY=secrets.token_hex(32))
        env.update(extra_env or {})
        # The host firewall for learners' networks, as `whale up` installs it: learners
        # reach this hub's API and its mirror, nothing else of the host.
        self.firewall_owner = f"test-{self.prefix}"
        mirror = urlparse(env.get("WHALE_REGISTRY_MIRROR") or "")
        firewall.install(self.hub_port, mirror.port if mirror.hostname == self.gateway else None,
                         address=self.gateway, owner=self.firewall_owner, pid=os.getpid(),
                         extra_ports={"whale-progress": self.progress_port})
        self.log = open(state / "hub.log", "w")  # noqa: SIM115 - the hub writes it until close()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterhub", "-f", str(config or CONFIG)], cwd=state, env=env,
            stdout=self.log, stderr=subprocess.STDOUT)
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"token {self.token}"
        self.session.trust_env = False
        deadline = time.monotonic() + 60
        while True:
            try:
                if self.session.get(f"{self.url}/hub/api/", timeout=2).ok:
                    break
            except requests.RequestException:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                self.proc.wait()
                self.session.close()
                self.log.close()
                raise RuntimeError("hub did not start:\n" + (state / "hub.log").read_text()[-3000:])
            time.sleep(0.2)
        self.users: list[str] = []
        self.made: list[str] = []  # every learner made here, deleted ones too (cleanup)
        self.site = site_id_of(state / "hub" / "engines")  # the spawner's state_dir

    # -- REST ---------------------------------------------------------------------
    def api(self, method: str, path: str, **kw) -> requests.Response:
        return self.session.request(method, f"{self.url}/hub/api{path}", timeout=30, **kw)

    def user(self, name: str) -> str:
        name = f"{self.prefix}-{name}"
        if name not in self.users:
            r = self.api("POST", f"/users/{name}")
            assert r.status_code in (201, 409), r.text
            self.users.append(name)
            self.made.append(name)
        return name

    def start(self, name: str, options: dict | None = None, timeout: float = 180) -> list[dict]:
        """Start a learner's server; return the progress events the spawn page saw."""
        r = self.api("POST", f"/users/{name}/server", json=options or {})
        assert r.status_code in (201, 202), r.text
        events = []
        with self.session.get(f"{self.url}/hub/api/users/{name}/server/progress",
                              stream=True, timeout=timeout) as stream:
            for line in stream.iter_lines(decode_unicode=True):
                if line and line.startswith("data:"):
                    event = json.loads(line[5:])
                    events.append(event)
                    if event.get("failed"):
                        raise AssertionError(f"{name}'s spawn failed: {event.get('message')}"
                                             "\nhub log:\n" + self.log_tail())
                    if event.get("ready"):
                        break
        self.wait_ready(name, timeout)
        return events

    def wait_ready(self, name: str, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            server = self.api("GET", f"/users/{name}").json().get("servers", {}).get("")
            if server and server.get("ready"):
                return
            time.sleep(0.25)
        raise TimeoutError(f"{name}'s server not ready; hub log:\n" + self.log_tail())

    def stop(self, name: str, timeout: float = 60) -> None:
        r = self.api("DELETE", f"/users/{name}/server")
        assert r.status_code in (202, 204, 400), r.text
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.api("GET", f"/users/{name}").json().get("servers"):
                return
            time.sleep(0.25)
        raise TimeoutError(f"{name}'s server did not stop")

    def log_tail(self, n: int = 4000) -> str:
        self.log.flush()
        return (self.state / "hub.log").read_text()[-n:]

    def signed_in(self, name: str, password: str = "whale") -> requests.Session:  # noqa: S107 - the dummy authenticator's test password
        """A browser's session for `name`, signed in on the login form through the proxy
        (the dummy authenticator's password). Its `_xsrf` cookie is what forms and the
        spawn page's progress stream send back."""
        session = requests.Session()
        session.trust_env = False
        page = session.get(f"{self.url}/hub/login", timeout=30)
        page.raise_for_status()
        r = session.post(f"{self.url}/hub/login", allow_redirects=False, timeout=30, data={
            "username": name, "password": password, "_xsrf": session.cookies.get("_xsrf", "")})
        if r.status_code != 302:
            session.close()
            raise AssertionError(f"{name} could not sign in: HTTP {r.status_code}")
        return session

    # -- the learner's server, through the proxy ---------------------------------------
    def server(self, name: str, method: str, path: str, **kw) -> requests.Response:
        return self.session.request(method, f"{self.url}/user/{name}/api{path}", timeout=30, **kw)

    def run(self, name: str, code: str, timeout: float = 60, kernel_name: str = "docker") -> str:
        """Run a cell in a fresh kernel (docker, unless `kernel_name`) of the learner's
        server; return its output."""
        r = self.server(name, "POST", "/kernels", json={"name": kernel_name})
        assert r.status_code == 201, r.text
        kernel = r.json()["id"]
        try:
            ws = websocket.create_connection(
                f"ws://127.0.0.1:{self.port}/user/{name}/api/kernels/{kernel}/channels",
                header=[f"Authorization: token {self.token}"], timeout=timeout)
            try:
                return execute(ws, code, timeout)
            finally:
                ws.close()
        finally:
            self.server(name, "DELETE", f"/kernels/{kernel}")

    # -- teardown -------------------------------------------------------------------
    def close(self) -> None:
        for name in self.users:
            with contextlib.suppress(Exception):
                self.stop(name, timeout=30)
        # JupyterHub starts its proxy and its services (the culler) in sessions of their
        # own; it stops them when it stops, but a hub that must be killed (one of 100
        # learners can take longer than 15 s) leaves them running: end them too.
        started = descendants(self.proc.pid)
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for pid in started:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.log.close()
        firewall.remove(self.firewall_owner)
        # Whatever the site made for its learners carries their names as owner labels.
        client = docker.from_env()
        site = f"{SITE_LABEL}={self.site}"
        try:
            # Everything this site made, for learners made through the API or signed up
            # in a browser alike (a learner's network left behind takes an address pool).
            for name in [*dict.fromkeys(self.made), None]:
                mine = {"label": [f"{OWNER_LABEL}={name}", site] if name else [site]}
                for c in client.containers.list(all=True, filters=mine):
                    c.remove(force=True, v=True)
                for n in client.networks.list(filters=mine):
                    n.remove()
                for v in client.volumes.list(filters=mine):
                    v.remove(force=True)
        finally:
            client.close()
        unmount_under(self.state)  # the learners' engine disks


def descendants(pid: int) -> list[int]:
    """The processes `pid` started, and theirs (Linux: /proc/PID/task/*/children)."""
    found, todo = [], [pid]
    while todo:
        for task in Path(f"/proc/{todo.pop()}/task").glob("*"):
            with contextlib.suppress(OSError):
                for child in (task / "children").read_text().split():
                    found.append(int(child))
                    todo.append(int(child))
    return found


def ensure_images() -> None:
    images.ensure_site_images(only=["howtowhale/engine", "howtowhale/singleuser"])


def learners_network(hub: Hub, learner: str, host_docker) -> tuple[str, ipaddress.IPv4Network]:
    """The network a learner's server joins, made ahead of the spawn (labelled as the
    learner's, or the spawner would leave it alone and make another), as the network of
    a machine of the learner's own. Docker picks a free subnet; it is then declared
    explicitly, as fixed addresses need."""
    network = learner_network(learner_slug(learner))
    probe = host_docker.networks.create(network, driver="bridge")
    subnet = ipaddress.ip_network(probe.attrs["IPAM"]["Config"][0]["Subnet"])
    probe.remove()
    host_docker.networks.create(
        network, driver="bridge", options=bridge_options(network),
        labels={OWNER_LABEL: learner, SITE_LABEL: hub.site},
        ipam=docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=str(subnet))]))
    return network, subnet


def engine_on_learners_network(hub: Hub, learner: str, name: str, tmp_path_factory, host_docker):
    """An engine that stands for a machine on the learner's network, at a fixed address."""
    network, subnet = learners_network(hub, learner, host_docker)
    return start_engine(name, tmp_path_factory, host_docker, network=network,
                        network_ip=str(subnet.network_address + 200))
