"""Shared fixtures: a real host engine, real TLS-only engines, a real kernel over ZMQ."""
from __future__ import annotations

import importlib
import os
import queue
import re
import tempfile
import time
from dataclasses import dataclass, field

import docker
import pytest
from jupyter_client.manager import KernelManager

from whale_core.store import CredentialStore
from whale_hub.engine import SandboxEngine
from whale_hub.engine_disk import unmount_orphans
from whale_site import images
from whale_site.registry import RegistryMirror

TEST_LABEL = "org.howtowhale.test"


@pytest.fixture(scope="session")
def host_docker():
    """The operator's engine (scripts/ensure-docker.sh started it)."""
    client = docker.from_env()
    client.ping()
    # Engines left behind by an earlier run that was killed (its pid is gone); runs
    # going on side by side keep theirs.
    for c in client.containers.list(all=True, filters={"label": TEST_LABEL}):
        owner = c.labels.get(TEST_LABEL, "")
        if not (owner.isdigit() and os.path.exists(f"/proc/{owner}")):
            c.remove(force=True, v=True)
    # Learners' servers and engines of a test hub (users are named t<pid>...).
    for c in client.containers.list(all=True):
        m = re.match(r"(?:jupyter|whale-engine)-t(\d+)[0-9a-f]{4}-", c.name)
        if m and not os.path.exists(f"/proc/{m.group(1)}"):
            c.remove(force=True, v=True)
    # The disks of those engines (mounted below pytest's temporary directories).
    def exists(name: str) -> bool:
        return bool(client.containers.list(all=True, filters={"name": f"^{name}$"}))
    unmount_orphans(tempfile.gettempdir(), exists)
    yield client
    client.close()


@pytest.fixture(scope="session")
def engine_image(host_docker):
    images.ensure_site_images(only=["howtowhale/engine"])
    return "howtowhale/engine"


def load_gate():
    """The package images/engine/whale_gate (the command whale-gate in the engine image),
    for tests of its rules without sockets: its names are whale_gate's own (decide,
    Refused, NETWORK_LOOKUP, ...)."""
    import sys
    engine = str(images.SITE_IMAGES / "engine")
    sys.path.insert(0, engine)
    try:
        return importlib.import_module("whale_gate")
    finally:
        sys.path.remove(engine)


def start_engine(name: str, tmp_path_factory, host_docker, **kw) -> SandboxEngine:
    engine = SandboxEngine(f"whale-test-{name}-{os.getpid()}", tmp_path_factory.mktemp(name),
                           host=host_docker, labels={TEST_LABEL: str(os.getpid())}, **kw)
    engine.start()
    return engine


def engine_env(engine: SandboxEngine) -> dict[str, str]:
    """os.environ with docker pointed at `engine`."""
    from whale_core.bundle import CredentialBundle
    return dict(os.environ, **CredentialBundle.load(engine.bundle_dir).env)


@pytest.fixture(scope="session")
def tls_engine(engine_image, host_docker, tmp_path_factory):
    """A TLS-only engine with the lesson images (hello-world, busybox) built on it."""
    engine = start_engine("a", tmp_path_factory, host_docker)
    images.build_lesson_images(engine_env(engine), names=["hello-world", "busybox"])
    yield engine
    engine.remove()


@pytest.fixture(scope="session")
def second_engine(engine_image, host_docker, tmp_path_factory):
    """Another learner's engine: its own CA, no images."""
    engine = start_engine("b", tmp_path_factory, host_docker)
    yield engine
    engine.remove()


def engine_client_for(engine: SandboxEngine):
    """A Docker SDK client for a test engine, over TLS with the engine's bundle."""
    from whale_core.bundle import CredentialBundle
    return CredentialBundle.load(engine.bundle_dir).client(timeout=10)


def engine_id(engine: SandboxEngine) -> str:
    client = engine_client_for(engine)
    try:
        return client.info()["ID"]
    finally:
        client.close()


@pytest.fixture
def engine_client(tls_engine):
    client = engine_client_for(tls_engine)
    yield client
    client.close()


@pytest.fixture
def store(tmp_path, tls_engine):
    """A credentials store whose current bundle is the TLS test engine's."""
    s = CredentialStore(tmp_path / "credentials")
    s.install_directory(tls_engine.bundle_dir)
    return s


@dataclass
class Run:
    """What one execute request produced."""

    reply: dict
    messages: list = field(default_factory=list)   # (seconds since request, msg)
    elapsed: float = 0.0

    @property
    def text(self) -> str:
        """The output as a notebook would show it at the end (clear_output applied)."""
        out = ""
        for _, m in self.messages:
            t = m["header"]["msg_type"]
            if t == "clear_output":
                out = ""
            elif t == "stream":
                out += m["content"]["text"]
        return out

    def of_type(self, kind: str) -> list:
        return [m for _, m in self.messages if m["header"]["msg_type"] == kind]

    @property
    def status(self) -> str:
        return self.reply["content"]["status"]


class KernelDriver:
    """Drive a kernel over the Jupyter messaging protocol, as a notebook does."""

    def __init__(self, km: KernelManager, kc):
        self.km, self.kc = km, kc

    def run(self, code: str, timeout: float = 30, stdin: list[str] | None = None,
            interrupt_after: float | None = None) -> Run:
        start = time.monotonic()
        msg_id = self.kc.execute(code, allow_stdin=stdin is not None)
        run = Run(reply={})
        answers = list(stdin or [])
        interrupted = False
        idle = False
        while time.monotonic() - start < timeout:
            if interrupt_after is not None and not interrupted and \
                    time.monotonic() - start > interrupt_after:
                self.km.interrupt_kernel()
                interrupted = True
            if stdin is not None:
                try:
                    req = self.kc.get_stdin_msg(timeout=0.01)
                    run.messages.append((time.monotonic() - start, req))
                    self.kc.input(answers.pop(0) if answers else "")
                except queue.Empty:
                    pass
            try:
                msg = self.kc.get_iopub_msg(timeout=0.05)
            except queue.Empty:
                continue
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            run.messages.append((time.monotonic() - start, msg))
            if msg["header"]["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                idle = True
                break
        if not idle:
            raise TimeoutError(f"cell did not finish within {timeout} s: {code!r}")
        run.reply = self._reply(msg_id)
        run.elapsed = time.monotonic() - start
        return run

    def _reply(self, msg_id: str, timeout: float = 10) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            reply = self.kc.get_shell_msg(timeout=max(0.1, deadline - time.monotonic()))
            if reply["parent_header"].get("msg_id") == msg_id:
                return reply

    def complete(self, code: str) -> list[str]:
        return self._reply(self.kc.complete(code, len(code)))["content"]["matches"]


def start_kernel(store: CredentialStore, name: str = "docker", **env) -> KernelDriver:
    km = KernelManager(kernel_name=name)
    km.start_kernel(env=dict(os.environ, WHALE_CREDENTIALS=str(store.root), **env))
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=30)
    return KernelDriver(km, kc)


def stop_kernel(driver: KernelDriver) -> None:
    driver.kc.stop_channels()
    driver.km.shutdown_kernel(now=True)
    # Close every socket of this kernel's zmq context now, not at garbage collection.
    driver.km.context.destroy(linger=0)


@pytest.fixture
def kernel(store):
    driver = start_kernel(store)
    yield driver
    stop_kernel(driver)


@pytest.fixture(scope="session")
def lesson_mirror(engine_image, host_docker, tmp_path_factory):
    """The lesson registry mirror of this test session: its own state directory and a free
    port on the bridge gateway (never the operator's), seeded with every lesson image."""
    mirror = RegistryMirror(tmp_path_factory.mktemp("mirror"), port=0, host=host_docker)
    mirror.start()
    mirror.seed()
    yield mirror
    mirror.stop()
