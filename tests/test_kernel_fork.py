"""Docker kernels forked from the learner's server (whale_kernel/provisioner.py), in the
single-user image behind a real hub, and started the usual way everywhere else."""
from __future__ import annotations

import json
import os
import time
import uuid

import pytest
import websocket
from deployed import execute
from hub_fixtures import Hub, ensure_images
from jupyter_client import KernelManager

pytestmark = pytest.mark.hub

# Run in the kernel's bash: the kernel is $PPID; what it is, as the kernel itself sees it.
INSPECT = r"""
k=$PPID; s=$(awk '{print $4}' /proc/$k/stat)
echo "kernel=$k"
echo "server=$s"
echo "session=$(awk '{print $6}' /proc/$k/stat)"
echo "kernel-cmd=$(tr '\0' ' ' < /proc/$k/cmdline)"
echo "server-cmd=$(tr '\0' ' ' < /proc/$s/cmdline)"
echo "shared-kib=$(awk '/^Shared_Dirty:/{print $2}' /proc/$k/smaps_rollup)"
echo "kernel-socks=$(ls -l /proc/$k/fd | grep -o 'socket:\[[0-9]*\]' | sort | tr '\n' ' ')"
echo "server-socks=$(ls -l /proc/$s/fd | grep -o 'socket:\[[0-9]*\]' | sort | tr '\n' ' ')"
echo "cwd=$(readlink /proc/$k/cwd)"
"""


def fields(text: str) -> dict[str, str]:
    """INSPECT's output: one key=value a line."""
    return {key: value.strip() for key, sep, value in
            (line.partition("=") for line in text.splitlines()) if sep}


@pytest.fixture(scope="module")
def learner(tmp_path_factory, host_docker):
    ensure_images()
    hub = Hub(tmp_path_factory.mktemp("hub"))
    try:
        name = hub.user("forky")
        hub.start(name)
        yield hub, name
    finally:
        hub.close()


@pytest.mark.parametrize("kernel_name", ["docker", "bash"])
def test_the_docker_kernel_is_forked_from_the_server_and_shares_its_memory(learner, kernel_name):
    """The docker kernel, and the same kernel under bash_kernel's name."""
    hub, name = learner
    seen = fields(hub.run(name, INSPECT, kernel_name=kernel_name))
    # Forked, not executed: the kernel runs the server's program, as the server's child.
    assert seen["kernel-cmd"] == seen["server-cmd"], seen
    assert "jupyterhub-singleuser" in seen["server-cmd"], seen
    # A session of its own (interrupts sent to its group never reach the server).
    assert seen["session"] == seen["kernel"], seen
    # It shares the server's pages (the imports both hold): tens of MiB, not a copy.
    assert int(seen["shared-kib"]) > 20 * 1024, seen
    # None of the server's sockets (its HTTP listener, its clients, its zmq) stays open in it.
    kernel_socks, server_socks = set(seen["kernel-socks"].split()), set(seen["server-socks"].split())
    assert kernel_socks, seen
    assert server_socks, seen
    assert not kernel_socks & server_socks, seen
    # The kernelspec's working directory, the server's root: the learner's work directory.
    assert seen["cwd"] == "/home/learner/work", seen


def _send(ws, code: str) -> str:
    msg_id = uuid.uuid4().hex
    ws.send(json.dumps({
        "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": "t",
                   "session": uuid.uuid4().hex, "version": "5.3", "date": ""},
        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
        "content": {"code": code, "silent": False, "store_history": True,
                    "user_expressions": {}, "allow_stdin": False}}))
    return msg_id


def _reply(ws, msg_id: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ws.settimeout(max(0.1, deadline - time.monotonic()))
        msg = json.loads(ws.recv())
        if (msg["header"]["msg_type"] == "execute_reply"
                and msg.get("parent_header", {}).get("msg_id") == msg_id):
            return msg["content"]
    raise TimeoutError(msg_id)


def _processes(hub: Hub, name: str) -> dict[int, tuple[str, str]]:
    """The learner's server container's processes: pid -> (state, program)."""
    code = ("for p in /proc/[0-9]*; do echo \"${p#/proc/} $(awk '{print $3}' $p/stat) "
            "$(tr '\\0' ' ' < $p/cmdline | cut -c1-60)\"; done 2>/dev/null")
    found = {}
    for line in hub.run(name, code).splitlines():
        pid, state, *program = line.split()
        found[int(pid)] = (state, " ".join(program))
    return found


def test_interrupt_restart_and_shutdown_of_a_forked_kernel_leave_the_server_well(learner):
    hub, name = learner
    server_before = hub.server(name, "GET", "/status").json()["started"]
    r = hub.server(name, "POST", "/kernels", json={"name": "docker"})
    assert r.status_code == 201, r.text
    kernel = r.json()["id"]
    ws = websocket.create_connection(
        f"ws://127.0.0.1:{hub.port}/user/{name}/api/kernels/{kernel}/channels",
        header=[f"Authorization: token {hub.token}"], timeout=60)
    try:
        first = execute(ws, "echo $$:$PPID", 60).strip()
        msg_id = _send(ws, "sleep 60; echo not interrupted")
        time.sleep(1.5)
        assert hub.server(name, "POST", f"/kernels/{kernel}/interrupt").status_code == 204
        reply = _reply(ws, msg_id, 30)
        assert reply["status"] == "error", reply
        assert reply["ename"] == "KeyboardInterrupt", reply
        # The kernel is still the same one, and usable.
        assert execute(ws, "echo $$:$PPID", 60).strip() == first
        restarted = hub.server(name, "POST", f"/kernels/{kernel}/restart")
        assert restarted.status_code == 200, restarted.text
    finally:
        ws.close()
    ws = websocket.create_connection(
        f"ws://127.0.0.1:{hub.port}/user/{name}/api/kernels/{kernel}/channels",
        header=[f"Authorization: token {hub.token}"], timeout=60)
    try:
        again = execute(ws, "echo $$:$PPID", 60).strip()
    finally:
        ws.close()
    old_kernel, new_kernel = int(first.split(":")[1]), int(again.split(":")[1])
    assert new_kernel != old_kernel
    assert hub.server(name, "DELETE", f"/kernels/{kernel}").status_code == 204
    # The same server all along (an interrupt never reached it), and every kernel it forked
    # was reaped: no zombie, and neither old kernel still runs.
    status = hub.server(name, "GET", "/status")
    assert status.status_code == 200
    assert status.json()["started"] == server_before
    processes = _processes(hub, name)
    assert old_kernel not in processes, processes
    assert new_kernel not in processes, processes
    assert not [p for p, (state, _) in processes.items() if state == "Z"], processes


def test_outside_a_server_the_kernel_is_a_process_of_its_own(monkeypatch):
    """nbclient, nbval and `whale lesson test` start kernels with jupyter_client alone:
    those are never forked from the test runner, even with the image's setting."""
    monkeypatch.setenv("WHALE_FORK_KERNELS", "1")
    km = KernelManager(kernel_name="docker")
    km.start_kernel()
    try:
        assert type(km.provisioner).__name__ == "ForkProvisioner"
        pid = km.provisioner.pid
        assert pid != os.getpid()
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
        assert argv[1:3] == [b"-m", b"whale_kernel"], argv
        kc = km.client()
        kc.start_channels()
        try:
            kc.wait_for_ready(timeout=30)
        finally:
            kc.stop_channels()
    finally:
        km.shutdown_kernel(now=True)
        km.context.destroy(linger=0)
