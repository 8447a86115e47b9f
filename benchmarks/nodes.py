"""What each extra node of a learner's Swarm costs: spawn time and idle memory of learners
whose engines have 1, 3 and 5 nodes, side by side on one hub in one run, as ratios to 1 node.

    python benchmarks/nodes.py [--nodes 1,3,5] [--runs 3] [--settle 20]

A real hub (this site, sandbox engines, WHALE_MAX_NODES=5). In each run one learner per
size starts, in turns (so every size sees the same machine), with the spawn form's
choice `{"nodes": N}` through the REST API, and the time is taken until their server
answers through the proxy: their spawn waits for every node to answer and, with 2 or
more, to be Ready in the manager's `docker node ls`. Then, every learner idle with one
running kernel for --settle seconds, the memory of their server container and of all
their engine's node containers (with what runs in them) is read from the memory cgroups,
less the page cache, as `docker stats` counts it. It prints the medians, the ratios to the
first size, and the cost of each node beyond one.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import docker
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))
from density import cgroup_mib  # noqa: E402
from spawn import bench_hub, build_plain, learner_engines, server_container  # noqa: E402


def spawn(hub, name: str, nodes: int) -> float:
    """Seconds from the REST start to the learner's server answering through the proxy."""
    t0 = time.perf_counter()
    r = hub.api("POST", f"/users/{name}/server", json={"engine": "sandbox", "nodes": nodes})
    assert r.status_code in (201, 202), r.text
    deadline = t0 + 300
    while time.perf_counter() < deadline:
        try:
            if hub.server(name, "GET", "/status").status_code == 200:
                return time.perf_counter() - t0
        except requests.RequestException:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{name} did not start; hub log:\n{hub.log_tail()}")


def learner_mib(client: docker.DockerClient, name: str) -> tuple[float, int]:
    """(MiB, engine containers) of a learner: their server and every node of their engine."""
    engines = learner_engines(client, name)
    ids = [client.containers.get(server_container(client, name)).id, *(c.id for c in engines)]
    return sum(cgroup_mib(i) for i in ids), len(engines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", default="1,3,5", help="the sizes, the first the baseline")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--settle", type=float, default=20.0,
                        help="seconds every learner is idle before memory is read")
    args = parser.parse_args()
    sizes = [int(n) for n in args.nodes.split(",")]
    build_plain()  # the site's images (and the wheelhouse)
    starts: dict[int, list[float]] = {n: [] for n in sizes}
    memory: dict[int, list[float]] = {n: [] for n in sizes}
    client = docker.from_env()
    with bench_hub("whale", {"WHALE_MAX_NODES": str(max(sizes))}) as (hub, _phases):
        learners = {}
        for run in range(args.runs):
            for nodes in sizes:  # in turns, so that every size sees the same machine
                name = hub.user(f"n{nodes}r{run}")
                starts[nodes].append(spawn(hub, name, nodes))
                learners[name] = nodes
                print(f"run {run + 1}: {nodes} node{'s' if nodes > 1 else ''}: spawned in "
                      f"{starts[nodes][-1]:.2f} s", flush=True)
        for name in learners:
            assert hub.server(name, "POST", "/kernels", json={"name": "docker"}).status_code == 201
        time.sleep(args.settle)
        for name, nodes in learners.items():
            mib, count = learner_mib(client, name)
            assert count == nodes, f"{name} has {count} engine containers, not {nodes}"
            memory[nodes].append(mib)
    client.close()
    base = sizes[0]
    base_start, base_mib = statistics.median(starts[base]), statistics.median(memory[base])
    print(f"\n{'nodes':>5}  {'spawn (median)':>14}  {'ratio':>5}  {'idle MiB (median)':>17}  "
          f"{'ratio':>5}  {'each node beyond ' + str(base):>22}")
    for nodes in sizes:
        start, mib = statistics.median(starts[nodes]), statistics.median(memory[nodes])
        extra = ""
        if nodes != base:
            each = nodes - base
            extra = f"{(start - base_start) / each:+.2f} s, {(mib - base_mib) / each:+.0f} MiB"
        print(f"{nodes:>5}  {start:>12.2f} s  {start / base_start:>5.2f}  {mib:>17.0f}  "
              f"{mib / base_mib:>5.2f}  {extra:>22}")


if __name__ == "__main__":
    main()
