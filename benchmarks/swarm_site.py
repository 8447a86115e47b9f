"""What a site of several machines costs: `whale deploy` on a practice Swarm against the
one-machine site (`whale up`'s hub), side by side in one run.

    python benchmarks/swarm_site.py [--nodes 3] [--learners 12] [--swarm-learners 2]

It makes a practice Swarm (`whale cluster up N`), deploys the site on it, and records:
- each practice node's memory (its container's memory cgroup, page cache left out, as
  `docker stats` counts it) idle, with the site's stack, and with the learners: what a
  node costs, and where the learners went;
- each learner's spawn time (REST start to the server answering through the proxy), one
  learner after another, each left with one running kernel;
- the machine's available memory (MemAvailable) before the first learner and after the
  last, per learner;
- learners who choose a Swarm of 3 nodes (the Swarm lessons): their first start, and a
  restart (stop, then start: their Swarm assembled again), each.
Then the same learners on a one-machine hub on this machine (the baseline), and the
ratios. It removes what it made.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import docker

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))
from deployed import Learner  # noqa: E402
from spawn import bench_hub, memory_mib  # noqa: E402

PASSWORD = "bench-password"  # noqa: S105 - the benchmark's learners' first-use password


def available_mib() -> float:
    with open("/proc/meminfo") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("MemAvailable:")) / 1024


def whale(*args: str, env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, "-m", "whale_site.cli", *args], env=env,
                          capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise SystemExit(f"whale {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def node_memory(host: docker.DockerClient, name: str, nodes: int) -> list[float]:
    names = [name] + [f"{name}.node{i}" for i in range(2, nodes + 1)]
    return [memory_mib(host, n) for n in names]


def settle(seconds: float = 20) -> None:
    time.sleep(seconds)


def swarm_site(nodes: int, learners: int, swarm_learners: int) -> dict:
    name = f"whale-bench-swarm-{os.getpid()}"
    stack = f"wb{os.getpid()}"
    env = dict(os.environ, WHALE_PRACTICE=name)
    host = docker.from_env()
    result = {}
    try:
        whale("cluster", "up", str(nodes), env=env)
        settle()
        result["idle"] = node_memory(host, name, nodes)
        out = whale("deploy", "--context", name, "--stack", stack, env=env)
        url = next(line[6:] for line in out.splitlines() if line.startswith("site: "))
        settle()
        result["stack"] = node_memory(host, name, nodes)
        before = available_mib()
        spawns, placed = [], {}
        for i in range(learners):
            learner = Learner(url, f"l{i}", PASSWORD).sign_in()
            learner.make_token()
            t0 = time.monotonic()
            learner.start()
            spawns.append(time.monotonic() - t0)
            learner.open_kernel()
            node = subprocess.run(["docker", "--context", name, "service", "ps", f"whale-engine-l{i}",
                                   "--format", "{{.Node}}"], capture_output=True, text=True).stdout.split()[0]
            placed[node] = placed.get(node, 0) + 1
        settle()
        result["learners"] = node_memory(host, name, nodes)
        result["per_learner_mib"] = (before - available_mib()) / learners
        result["spawns"], result["placed"] = spawns, placed
        result["swarm_starts"], result["swarm_restarts"] = [], []
        for i in range(swarm_learners):
            learner = Learner(url, f"s{i}", PASSWORD).sign_in()
            learner.make_token()
            for key in ("swarm_starts", "swarm_restarts"):
                if key == "swarm_restarts":
                    learner.stop()
                t0 = time.monotonic()
                learner.start(nodes=3)
                result[key].append(time.monotonic() - t0)
        return result
    finally:
        subprocess.run([sys.executable, "-m", "whale_site.cli", "deploy", "--down", "--context", name,
                        "--stack", stack], env=env, capture_output=True, timeout=600)
        subprocess.run([sys.executable, "-m", "whale_site.cli", "cluster", "down"], env=env,
                       capture_output=True, timeout=600)
        host.close()


def one_machine(learners: int, swarm_learners: int) -> dict:
    with bench_hub("whale", {"WHALE_MAX_LEARNERS": "100000", "WHALE_MAX_NODES": "3"}) as (hub, _):
        before = available_mib()
        spawns = []
        for i in range(learners):
            name = hub.user(f"l{i}")
            t0 = time.monotonic()
            hub.start(name)
            spawns.append(time.monotonic() - t0)
            r = hub.server(name, "POST", "/kernels", json={"name": "docker"})
            assert r.status_code == 201, r.text
        settle()
        result = {"spawns": spawns, "per_learner_mib": (before - available_mib()) / learners,
                  "swarm_starts": [], "swarm_restarts": []}
        for i in range(swarm_learners):
            name = hub.user(f"s{i}")
            for key in ("swarm_starts", "swarm_restarts"):
                if key == "swarm_restarts":
                    hub.stop(name)
                t0 = time.monotonic()
                hub.start(name, {"nodes": 3})
                result[key].append(time.monotonic() - t0)
        return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--learners", type=int, default=12)
    parser.add_argument("--swarm-learners", type=int, default=2,
                        help="learners who then choose a Swarm of 3 nodes (start, restart)")
    args = parser.parse_args()
    swarm = swarm_site(args.nodes, args.learners, args.swarm_learners)
    print(f"Swarm site: {swarm}", flush=True)
    base = one_machine(args.learners, args.swarm_learners)
    print(f"\npractice Swarm of {args.nodes}, {args.learners} learners, each with a running kernel")
    print("node memory, MiB:   " + "  ".join(f"node{i + 1:<6}" for i in range(args.nodes)))
    for label in ("idle", "stack", "learners"):
        print(f"  {label:<17}" + "  ".join(f"{m:>9.0f}" for m in swarm[label]))
    print(f"learners per node: {dict(sorted(swarm['placed'].items()))}")
    print(f"{'':28}{'Swarm site':>12}{'one machine':>14}{'ratio':>8}")
    rows = [("spawn median, s", "median", ".2f"), ("spawn max, s", "max", ".2f"),
            ("MiB per learner", "mib", ".0f")]
    if args.swarm_learners:
        rows += [("3-node start median, s", "swarm_starts", ".2f"),
                 ("3-node restart median, s", "swarm_restarts", ".2f")]
    for label, key, fmt in rows:
        def value(r, key=key):
            if key.startswith("swarm_"):
                return statistics.median(r[key])
            return {"median": statistics.median(r["spawns"]), "max": max(r["spawns"]),
                    "mib": r["per_learner_mib"]}[key]
        a, b = value(swarm), value(base)
        print(f"  {label:<26}{a:>12{fmt}}{b:>14{fmt}}{a / b:>8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
