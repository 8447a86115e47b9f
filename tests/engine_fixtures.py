"""Helpers of the tests that drive real engines and kernels (conftest.py makes the
fixtures from them): test modules import these from here, never from conftest or from
each other."""
from __future__ import annotations

import importlib
import os
import queue
import sys
import time
from dataclasses import dataclass, field

from jupyter_client.manager import KernelManager

from whale_core.bundle import CredentialBundle
from whale_core.store import CredentialStore
from whale_hub.cluster import SandboxCluster
from whale_hub.engine import SandboxEngine
from whale_hub.specs import EngineSettings
from whale_site import images

TEST_LABEL = "org.howtowhale.test"


def load_gate():
    """The package images/engine/whale_gate (the command whale-gate in the engine image),
    for tests of its rules without sockets: its names are whale_gate's own (decide,
    Refused, NETWORK_LOOKUP, ...)."""
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


def start_cluster(name: str, tmp_path_factory, host_docker, nodes: int = 3, **kw) -> SandboxCluster:
    """A learner's Swarm of `nodes` classroom engines, as the spawner makes it."""
    cluster = SandboxCluster(f"whale-test-{name}-{os.getpid()}",
                             tmp_path_factory.mktemp(name) / "engine", host=host_docker,
                             settings=EngineSettings(labels={TEST_LABEL: str(os.getpid())}, **kw),
                             nodes=nodes)
    try:
        cluster.start(timeout=120)
    except BaseException:
        cluster.remove()
        raise
    return cluster


def engine_env(engine: SandboxEngine) -> dict[str, str]:
    """os.environ with docker pointed at `engine`."""
    return dict(os.environ, **CredentialBundle.load(engine.bundle_dir).env)


def engine_client_for(engine: SandboxEngine):
    """A Docker SDK client for a test engine, over TLS with the engine's bundle."""
    return CredentialBundle.load(engine.bundle_dir).client(timeout=10)


def engine_id(engine: SandboxEngine) -> str:
    client = engine_client_for(engine)
    try:
        return client.info()["ID"]
    finally:
        client.close()


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
