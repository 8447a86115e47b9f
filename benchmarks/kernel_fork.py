"""Docker kernels forked from the server against kernels in a process of their own.

    python benchmarks/kernel_fork.py [--learners 3] [--kernels 10]

Two hubs of this site run one after the other in one run, alike but for the learners'
servers: "forked" as the single-user image comes (whale_kernel/provisioner.py forks each
docker kernel from the server), and "own process" with WHALE_FORK_KERNELS=0 (jupyter_client's
LocalProvisioner: a new Python per kernel, the baseline). For each it reports:
- the memory of a learner's server container with one kernel, from its memory cgroup
  (the engine is left out: it is the same for both);
- what each further kernel adds to it (a second and a third kernel);
- kernel start: from POST /api/kernels through the proxy to the kernel's kernel_info
  reply on its websocket, median of --kernels starts per learner;
- what the server kept of those --kernels kernels, started and shut down (a leak would
  show here: the first fork freezes the server's objects for good).
It prints both, and the ratios forked / own process.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import uuid
from pathlib import Path

import docker
import websocket

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))
from density import cgroup_mib, spawn  # noqa: E402
from spawn import bench_hub, server_container  # noqa: E402

VARIANTS = {"forked": {"WHALE_FORK_KERNELS": "1"}, "own process": {"WHALE_FORK_KERNELS": "0"}}


def kernel_start(hub, name: str) -> tuple[float, str]:
    """Seconds from asking for a kernel to its kernel_info reply; and its id."""
    t0 = time.perf_counter()
    made = hub.server(name, "POST", "/kernels", json={"name": "docker"})
    if made.status_code != 201:
        raise RuntimeError(f"{name}: no kernel: HTTP {made.status_code}")
    kernel = made.json()["id"]
    ws = websocket.create_connection(
        f"ws://127.0.0.1:{hub.port}/user/{name}/api/kernels/{kernel}/channels",
        header=[f"Authorization: token {hub.token}"], timeout=60)
    try:
        msg_id = uuid.uuid4().hex
        ws.send(json.dumps({
            "header": {"msg_id": msg_id, "msg_type": "kernel_info_request", "username": "b",
                       "session": uuid.uuid4().hex, "version": "5.3", "date": ""},
            "parent_header": {}, "metadata": {}, "content": {}, "channel": "shell",
            "buffers": []}))
        while True:
            msg = json.loads(ws.recv())
            if (msg["header"]["msg_type"] == "kernel_info_reply"
                    and msg["parent_header"].get("msg_id") == msg_id):
                return time.perf_counter() - t0, kernel
    finally:
        ws.close()


def measure(label: str, server_env: dict[str, str], learners: int, kernels: int,
            settle: float) -> dict:
    client = docker.from_env()
    try:
        with bench_hub("whale", server_env=server_env) as (hub, _):
            names = [hub.user(f"k{i}") for i in range(learners)]
            for name in names:
                spawn(hub, name, "docker")  # the server, and one kernel in it
            time.sleep(settle)
            one = [cgroup_mib(client.containers.get(server_container(client, n)).id)
                   for n in names]
            starts = []
            for name in names:
                for _ in range(kernels):
                    seconds, kernel = kernel_start(hub, name)
                    starts.append(seconds)
                    hub.server(name, "DELETE", f"/kernels/{kernel}")
            time.sleep(settle)
            cycled = [cgroup_mib(client.containers.get(server_container(client, n)).id)
                      for n in names]
            for name in names:  # two more kernels each, kept: what a further kernel costs
                kernel_start(hub, name)
                kernel_start(hub, name)
            time.sleep(settle)
            three = [cgroup_mib(client.containers.get(server_container(client, n)).id)
                     for n in names]
    finally:
        client.close()
    row = {"server + 1 kernel MiB": statistics.mean(one),
           "each further kernel MiB": (statistics.mean(three) - statistics.mean(one)) / 2,
           "kernel start s": statistics.median(starts),
           "growth after the starts and stops MiB": statistics.mean(cycled) - statistics.mean(one)}
    print(f"{label}: " + ", ".join(f"{k} {v:.2f}" for k, v in row.items()), flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--learners", type=int, default=3)
    ap.add_argument("--kernels", type=int, default=10, help="kernel starts per learner")
    ap.add_argument("--settle", type=float, default=10.0, help="seconds idle before measuring")
    args = ap.parse_args()
    rows = {label: measure(label, env, args.learners, args.kernels, args.settle)
            for label, env in VARIANTS.items()}
    print("\n| | forked | own process | ratio |\n|---|---|---|---|")
    for key in rows["forked"]:
        a, b = rows["forked"][key], rows["own process"][key]
        print(f"| {key} | {a:.2f} | {b:.2f} | {a / b:.2f} |")


if __name__ == "__main__":
    main()
