"""What a learner's attack on their own limits costs everyone else, and what the
hardening costs a spawn.

    python benchmarks/containment.py [--seconds 8] [--starts 5]

1. Neighbours under load. A real hub (this site's config) and two classroom engines,
   A and B, on this machine. Every 0.2 s it times three requests: the hub's REST API
   (`GET /hub/api/users`), learner B's engine (`docker ps` over TLS, through its gate)
   and the operator's dockerd (`GET /containers/json`). It does so while nothing runs
   (the baseline), then while learner A runs a fork bomb, a memory hog and a disk fill
   on engine A, and prints each phase's median and p95 with the ratio to the baseline.
2. The hardening's cost. It starts engines one after another, alternating a classroom
   engine (gate, user namespace, private cgroups, seccomp, a 10 GiB disk) and a trusted
   one (engine_policy=False: the old recipe, no gate, no disk), and prints the median
   time to the first TLS answer and the idle memory of each, with their ratio.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import docker

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))
from hub_fixtures import Hub  # noqa: E402

from whale_core.bundle import CredentialBundle  # noqa: E402
from whale_hub.engine import SandboxEngine  # noqa: E402
from whale_site import images  # noqa: E402

LABELS = {"org.howtowhale.test": str(os.getpid())}
# What learner A runs in a container on engine A (2 GiB, 1024 processes, a 10 GiB disk).
ATTACKS = {
    "fork bomb": "f() { f | f & }; f; sleep 60",
    "memory hog": "while true; do dd if=/dev/zero of=/dev/null bs=1900M count=1; done",
    "disk fill": "dd if=/dev/zero of=/f/big bs=1M count=20000; sleep 60",
}


def timed(call) -> float:
    t0 = time.perf_counter()
    call()
    return (time.perf_counter() - t0) * 1000


def sample(probes: dict, seconds: float) -> dict[str, list[float]]:
    out = {name: [] for name in probes}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for name, call in probes.items():
            try:
                out[name].append(timed(call))
            except Exception:  # a failed request counts as the time it took, flagged
                out[name].append(float("inf"))
        time.sleep(0.2)
    return out


def engine_env(engine: SandboxEngine) -> dict[str, str]:
    return dict(os.environ, **CredentialBundle.load(engine.bundle_dir).env)


def neighbours(seconds: float) -> None:
    state = Path(tempfile.mkdtemp(prefix="whale-bench-contain-"))
    host = docker.from_env()
    hub = Hub(state)
    a = SandboxEngine(f"whale-bench-a-{os.getpid()}", state / "a", host=host, labels=LABELS,
                      mem_limit="2g", pids_limit=1024, nano_cpus=10**9, disk_limit="10g")
    b = SandboxEngine(f"whale-bench-b-{os.getpid()}", state / "b", host=host, labels=LABELS,
                      mem_limit="2g", pids_limit=1024, nano_cpus=10**9, disk_limit="10g")
    try:
        a.start(timeout=60)
        b.start(timeout=60)
        env_a = engine_env(a)
        images.build_lesson_images(env_a, names=["busybox"])
        b_client = CredentialBundle.load(b.bundle_dir).client(timeout=30)
        probes = {
            "hub API": lambda: hub.api("GET", "/users").raise_for_status(),
            "learner B's engine": lambda: b_client.containers.list(),
            "operator's dockerd": lambda: host.containers.list(limit=1),
        }
        phases = {"baseline": sample(probes, seconds)}
        for attack, command in ATTACKS.items():
            run = subprocess.Popen(["docker", "run", "--rm", "-v", "fill:/f", "busybox",
                                    "sh", "-c", command],
                                   env=env_a, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1)  # let it get going
            phases[attack] = sample(probes, seconds)
            run.kill()
            run.wait()
            subprocess.run(["docker", "rm", "-f", *subprocess.run(
                ["docker", "ps", "-aq"], env=env_a, capture_output=True, text=True).stdout.split()],
                env=env_a, capture_output=True)
            subprocess.run(["docker", "volume", "rm", "-f", "fill"], env=env_a, capture_output=True)
        print(f"\nLatency of neighbours while learner A attacks engine A ({seconds:.0f} s each, ms)")
        print(f"{'phase':<12} {'probe':<20} {'median':>8} {'p95':>8} {'failed':>6} {'x base':>7}")
        for phase, results in phases.items():
            for probe, values in results.items():
                ok = sorted(v for v in values if v != float("inf"))
                base = statistics.median(phases["baseline"][probe])
                med = statistics.median(ok) if ok else float("nan")
                p95 = ok[int(len(ok) * 0.95) - 1] if ok else float("nan")
                print(f"{phase:<12} {probe:<20} {med:8.1f} {p95:8.1f} "
                      f"{len(values) - len(ok):6d} {med / base:7.2f}")
        b_client.close()
    finally:
        for engine in (a, b):
            engine.remove()
        hub.close()
        host.close()
        shutil.rmtree(state, ignore_errors=True)


def engine_memory_mib(host: docker.DockerClient, engine: SandboxEngine) -> float:
    stats = host.api.stats(engine.container.id, stream=False)
    return stats["memory_stats"].get("usage", 0) / 2**20


def hardening_cost(starts: int) -> None:
    host = docker.from_env()
    state = Path(tempfile.mkdtemp(prefix="whale-bench-harden-"))
    times = {"classroom": [], "trusted": []}
    mems = {"classroom": [], "trusted": []}
    try:
        for i in range(starts):
            for kind in ("classroom", "trusted"):
                classroom = kind == "classroom"
                engine = SandboxEngine(f"whale-bench-{kind}-{os.getpid()}-{i}", state / f"{kind}{i}",
                                       host=host, labels=LABELS, mem_limit="2g",
                                       pids_limit=1024, nano_cpus=10**9, policy=classroom,
                                       disk_limit="10g" if classroom else None)
                try:
                    t0 = time.perf_counter()
                    engine.start(timeout=60)
                    times[kind].append(time.perf_counter() - t0)
                    time.sleep(3)
                    mems[kind].append(engine_memory_mib(host, engine))
                finally:
                    engine.remove()
        print(f"\nEngine start to first TLS answer, and idle memory ({starts} starts each)")
        for kind in times:
            print(f"{kind:<10} start {statistics.median(times[kind]):.2f} s   "
                  f"memory {statistics.median(mems[kind]):.0f} MiB")
        print(f"ratio classroom/trusted: start "
              f"{statistics.median(times['classroom']) / statistics.median(times['trusted']):.2f}, "
              f"memory {statistics.median(mems['classroom']) / statistics.median(mems['trusted']):.2f}")
    finally:
        host.close()
        shutil.rmtree(state, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--starts", type=int, default=5)
    args = parser.parse_args()
    images.ensure_site_images(only=["howtowhale/engine", "howtowhale/singleuser"])
    hardening_cost(args.starts)
    neighbours(args.seconds)


if __name__ == "__main__":
    main()
