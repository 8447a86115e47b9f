"""Kernel start time and per-cell cost: bash_kernel 0.10 vs the docker kernel, side by side.

    python benchmarks/kernel_overhead.py [--rounds N]

Both kernels run in the same process, against the same TLS-only engine, with their
requests interleaved, so machine load affects both alike. Prints a table and ratios
(docker kernel / bash_kernel); lower is better.
"""
from __future__ import annotations

import argparse
import os
import queue
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
from jupyter_client.manager import KernelManager

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from whale_core.store import CredentialStore
from whale_hub.engine import SandboxEngine
from whale_site import images

TEN_LINES = "\n".join(f"v{i}=$((RANDOM % 10))" for i in range(9)) + "\necho $v0"


def ensure_bash_kernelspec() -> None:
    try:
        KernelSpecManager().get_kernel_spec("bash")
    except NoSuchKernel:
        subprocess.run([sys.executable, "-m", "bash_kernel.install", "--sys-prefix"],
                       check=True, capture_output=True)


class Kernel:
    def __init__(self, name: str, env: dict[str, str]):
        self.name = name
        t0 = time.perf_counter()
        self.km = KernelManager(kernel_name=name)
        self.km.start_kernel(env=env)
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)
        self.ready = time.perf_counter() - t0
        self.first_cell = self.cell("true") + self.ready

    def cell(self, code: str) -> float:
        t0 = time.perf_counter()
        msg_id = self.kc.execute(code)
        while True:
            try:
                msg = self.kc.get_iopub_msg(timeout=60)
            except queue.Empty:
                raise TimeoutError(code) from None
            if (msg["parent_header"].get("msg_id") == msg_id and msg["header"]["msg_type"] == "status"
                    and msg["content"]["execution_state"] == "idle"):
                break
        elapsed = time.perf_counter() - t0
        while True:  # drain the reply
            reply = self.kc.get_shell_msg(timeout=10)
            if reply["parent_header"].get("msg_id") == msg_id:
                return elapsed

    def close(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)
        self.km.context.destroy(linger=0)


def stats(samples: list[float]) -> tuple[float, float]:
    s = sorted(samples)
    return statistics.median(s), s[min(len(s) - 1, round(0.95 * (len(s) - 1)))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=40, help="cells of each kind per kernel")
    ap.add_argument("--starts", type=int, default=3, help="kernel starts per kernel")
    args = ap.parse_args()
    ensure_bash_kernelspec()
    images.ensure_site_images(only=["howtowhale/engine"])
    work = Path(tempfile.mkdtemp(prefix="whale-bench-"))
    engine = SandboxEngine(f"whale-bench-{os.getpid()}", work / "engine")
    bundle = engine.start()
    try:
        store = CredentialStore(work / "credentials")
        store.install_directory(engine.bundle_dir)
        env = dict(os.environ, WHALE_CREDENTIALS=str(store.root), **store.current().env)
        results: dict[str, dict[str, list[float]]] = {}
        for _ in range(args.starts):
            for name in ("bash", "docker"):
                k = Kernel(name, env)
                r = results.setdefault(name, {"start": [], "first cell": []})
                r["start"].append(k.ready)
                r["first cell"].append(k.first_cell)
                k.close()
        kernels = {name: Kernel(name, env) for name in ("bash", "docker")}
        try:
            for k in kernels.values():  # warm the CLI's caches on both sides
                k.cell("docker version >/dev/null")
            for _ in range(args.rounds):
                for name, k in kernels.items():
                    r = results[name]
                    r.setdefault("true", []).append(k.cell("true"))
                    r.setdefault("10-line cell", []).append(k.cell(TEN_LINES))
                    if len(r.get("docker version", [])) < max(10, args.rounds // 4):
                        r.setdefault("docker version", []).append(k.cell("docker version >/dev/null"))
        finally:
            for k in kernels.values():
                k.close()
    finally:
        engine.remove()
    print(f"engine: {bundle.docker_host} (TLS); {args.rounds} rounds, {args.starts} starts\n")
    print(f"{'measure':<16}{'bash_kernel med/p95':>22}{'docker med/p95':>20}{'ratio (med)':>13}")
    for measure in results["bash"]:
        b, d = stats(results["bash"][measure]), stats(results["docker"][measure])
        print(f"{measure:<16}{b[0]*1e3:>11.1f} /{b[1]*1e3:>7.1f} ms{d[0]*1e3:>9.1f} /{d[1]*1e3:>7.1f} ms"
              f"{d[0]/b[0]:>12.3f}")


if __name__ == "__main__":
    main()
