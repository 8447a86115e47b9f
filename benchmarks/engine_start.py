"""How long a classroom engine takes to answer over TLS, this tree's engine image against
the engine image of another revision (the baseline), started in turns in one run.

    python benchmarks/engine_start.py [--baseline REV] [--runs N]

The baseline image is built from `git archive REV images/engine` (default: 54a65fa, the
last Engine 20.10 image). Prints each image's median and the ratio to the baseline.
"""
from __future__ import annotations

import argparse
import io
import statistics
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

import docker

from whale_hub.engine import SandboxEngine
from whale_site import images


def build_baseline(rev: str) -> str:
    tag = f"howtowhale/bench-engine:{rev[:12]}"
    archive = subprocess.run(["git", "archive", rev, "images/engine"], cwd=images.SOURCE,
                             check=True, capture_output=True).stdout
    with tempfile.TemporaryDirectory(prefix="whale-bench-engine-") as tmp:
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(tmp, filter="data")
        subprocess.run(["docker", "build", "-q", "-t", tag, str(Path(tmp) / "images" / "engine")],
                       check=True, capture_output=True)
    return tag


def ready_time(host, image: str, n: int) -> float:
    with tempfile.TemporaryDirectory(prefix="whale-bench-engine-") as tmp:
        engine = SandboxEngine(f"whale-bench-engine-{n}", tmp, host=host, image=image)
        start = time.monotonic()
        try:
            engine.start(timeout=60)
            return time.monotonic() - start
        finally:
            engine.remove()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="54a65fa")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    images.ensure_site_images(only=["howtowhale/engine"])
    baseline = build_baseline(args.baseline)
    host = docker.from_env()
    times: dict[str, list[float]] = {baseline: [], "howtowhale/engine": []}
    for n in range(args.runs):
        for image in times:  # in turns, so both see the same machine
            times[image].append(ready_time(host, image, n))
    base = statistics.median(times[baseline])
    for image, values in times.items():
        median = statistics.median(values)
        print(f"{image:40} median {median:5.2f} s  ratio {median / base:4.2f}  "
              f"({', '.join(f'{v:.2f}' for v in values)})")


if __name__ == "__main__":
    main()
