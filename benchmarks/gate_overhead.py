"""What whale-gate costs a learner: `docker ps` through the gate vs straight to dockerd.

    python benchmarks/gate_overhead.py [--runs N]

Two throwaway engines from the same engine image, side by side on this machine:
- "gate": the classroom engine (WHALE_ENGINE_POLICY=1): dockerd on its unix socket, and
  whale-gate (mutual TLS, checks, canonical re-encoding) listening on 2376;
- "direct": WHALE_ENGINE_POLICY=0: dockerd itself listening on 2376 with mutual TLS.
Both are reached the same way (the docker CLI, a TLS client certificate, a loopback port),
so the difference is the gate. Each `docker ps` is a new CLI process, as in a notebook cell:
a TLS handshake, HEAD /_ping, GET /containers/json. The runs are interleaved, so machine
load affects both alike. Prints the times and the ratio (gate / direct).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from whale_core.bundle import CredentialBundle  # noqa: E402
from whale_hub.engine import SandboxEngine  # noqa: E402
from whale_site import images  # noqa: E402


def docker_ps(env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(["docker", "ps"], env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    images.ensure_site_images(only=["howtowhale/engine"])
    state = Path(tempfile.mkdtemp(prefix="whale-gate-bench-"))
    engines = {
        "gate": SandboxEngine(f"whale-bench-gate-{os.getpid()}", state / "gate", policy=True),
        "direct": SandboxEngine(f"whale-bench-direct-{os.getpid()}", state / "direct", policy=False),
    }
    try:
        envs = {}
        for label, engine in engines.items():
            engine.start()
            envs[label] = dict(os.environ, **CredentialBundle.load(engine.bundle_dir).env)
            for _ in range(3):  # warm up: page cache, first connections
                docker_ps(envs[label])
        times: dict[str, list[float]] = {label: [] for label in engines}
        for _ in range(args.runs):
            for label in engines:
                times[label].append(docker_ps(envs[label]))
        print(f"{args.runs} x `docker ps` (a new CLI process each: TLS handshake, /_ping, /containers/json)")
        print(f"{'':8} {'total':>9} {'median':>9} {'p90':>9}")
        for label, values in times.items():
            p90 = statistics.quantiles(values, n=10)[-1]
            median = statistics.median(values) * 1000
            print(f"{label:8} {sum(values):8.2f}s {median:7.1f}ms {p90 * 1000:7.1f}ms")
        ratio = sum(times["gate"]) / sum(times["direct"])
        extra = (statistics.median(times["gate"]) - statistics.median(times["direct"])) * 1000
        print(f"ratio gate/direct: {ratio:.2f} (median {extra:+.1f} ms per command)")
    finally:
        for engine in engines.values():
            engine.remove()


if __name__ == "__main__":
    main()
