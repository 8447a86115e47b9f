"""How many learners one machine holds: this site against plain JupyterHub, learner by learner.

    python benchmarks/density.py [--max 100] [--hubs plain,whale] [--plot density.png] [--worked]

Learners start one after another, each with one running kernel, until --max or until the
machine's available memory falls under --reserve-mib. At 1, 10, 25, 50, 75 and 100
learners (the steps up to --max), with every learner idle for --settle seconds, it
records:
- idle memory per learner: the memory cgroups of every learner's server container and,
  for this site, their engine container (with the containers the engine runs), minus the
  page cache that the kernel frees under pressure, as `docker stats` counts it;
- the spawn time of the next learner (REST start to the server answering through the
  proxy);
- the hub API's latency (median of 20 reads of a learner's model);
- the machine's available memory (MemAvailable).
With --worked, every learner then works as in a first lesson, in the kernel they have:
shell cells (the same on both hubs), a kernel restart, notebook saves and listings, and
on this site docker cells too (the plain hub has no engine), and the memory per learner
is measured once more (the table's "worked" row).
It prints the table for each hub, the ratios, and how many learners a 24 GiB machine
holds at the last step's memory per learner (keeping --reserve-mib for the host), and with
--plot draws the curves (matplotlib: `pip install .[bench]`).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import docker
import requests
import websocket

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))
from deployed import execute_cell  # noqa: E402
from hub_fixtures import Hub  # noqa: E402
from spawn import bench_hub, build_plain, learner_engines, server_container  # noqa: E402

STEPS = (1, 10, 25, 50, 75, 100)
MACHINE_GIB = 24


def available_mib() -> float:
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no MemAvailable in /proc/meminfo")


def cgroup_mib(container_id: str) -> float:
    """A container's memory as `docker stats` counts it (usage less inactive page cache),
    read from its memory cgroup (v1 or v2), which holds the processes it started too."""
    for base in (Path("/sys/fs/cgroup/memory/docker"), Path("/sys/fs/cgroup/docker"),
                 Path("/sys/fs/cgroup/system.slice")):
        for path in (base / container_id, base / f"docker-{container_id}.scope"):
            if (path / "memory.usage_in_bytes").exists():  # cgroup v1
                usage = int((path / "memory.usage_in_bytes").read_text())
                stat = _stat(path / "memory.stat")
                return (usage - stat.get("total_inactive_file", 0)) / 2**20
            if (path / "memory.current").exists():  # cgroup v2
                usage = int((path / "memory.current").read_text())
                return (usage - _stat(path / "memory.stat").get("inactive_file", 0)) / 2**20
    raise LookupError(f"no memory cgroup for container {container_id[:12]}")


def _stat(path: Path) -> dict[str, int]:
    return {k: int(v) for k, v in (line.split() for line in path.read_text().splitlines())}


def learner_mib(client: docker.DockerClient, hub: Hub, name: str) -> float:
    ids = [client.containers.get(server_container(client, name)).id]
    ids += [c.id for c in learner_engines(client, name)]
    return sum(cgroup_mib(i) for i in ids)


def spawn(hub: Hub, name: str, kernel: str) -> float:
    """Start `name`'s server and one kernel in it; the seconds to the server answering."""
    t0 = time.perf_counter()
    r = hub.api("POST", f"/users/{name}/server", json={})
    if r.status_code not in (201, 202):
        raise RuntimeError(f"{name}: HTTP {r.status_code}: {r.text[:200]}")
    deadline = t0 + 300
    while True:
        try:
            if hub.server(name, "GET", "/status").status_code == 200:
                break
        except requests.RequestException:
            pass
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{name}'s server did not answer in 300 s")
        time.sleep(0.05)
    seconds = time.perf_counter() - t0
    made = hub.server(name, "POST", "/kernels", json={"name": kernel})
    if made.status_code != 201:
        raise RuntimeError(f"{name}: no {kernel} kernel: HTTP {made.status_code}")
    return seconds


def api_latency(hub: Hub, name: str, reads: int = 20) -> float:
    times = []
    for _ in range(reads):
        t0 = time.perf_counter()
        hub.api("GET", f"/users/{name}")
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


# What a learner does in a first lesson, besides its docker commands: the same on both hubs.
SHELL_CELLS = [
    "ls -la", "pwd", "echo \"$HOME\" \"$SHELL\"", "for i in $(seq 500); do echo line $i; done | tail -3",
    "head -3 /etc/os-release", "env | wc -l", "printf '%s\\n' c a b | sort", "ps aux | wc -l",
    "seq 1 20000 | awk '{s+=$1} END {print s}'", "du -sh ~ 2>/dev/null | cut -f1",
    "cat > notes.txt <<'X'\nwhat I learned\nX\ncat notes.txt", "wc -c notes.txt",
]
# This site's learners have an engine: a first lesson's docker commands.
DOCKER_CELLS = ["docker version --format '{{.Server.Version}}'", "docker run --rm hello-world",
                "docker images", "docker run --name first hello-world", "docker ps -a",
                "docker rm first", "docker run --rm hello-world | head -3"]
SAVES = 5


def run_cells(hub: Hub, name: str, cells: list[str], timeout: float = 120) -> None:
    """Run `cells` one after another in the learner's running kernel (the first)."""
    kernel = hub.server(name, "GET", "/kernels").json()[0]["id"]
    ws = websocket.create_connection(
        f"ws://127.0.0.1:{hub.port}/user/{name}/api/kernels/{kernel}/channels",
        header=[f"Authorization: token {hub.token}"], timeout=timeout)
    try:
        for code in cells:
            out, status = execute_cell(ws, code, timeout)
            if status != "ok":  # work that failed would not be the work measured
                raise RuntimeError(f"{name}: {code!r} failed: {out[-300:]}")
    finally:
        ws.close()


def work(hub: Hub, name: str, label: str) -> None:
    """`name` works as in a first lesson (see the module's doc)."""
    cells = SHELL_CELLS + (DOCKER_CELLS if label != "plain" else [])
    half = len(cells) // 2
    run_cells(hub, name, cells[:half])
    kernel = hub.server(name, "GET", "/kernels").json()[0]["id"]
    r = hub.server(name, "POST", f"/kernels/{kernel}/restart")
    if r.status_code != 200:
        raise RuntimeError(f"{name}: kernel restart: HTTP {r.status_code}")
    run_cells(hub, name, cells[half:])
    nb = {"type": "notebook", "content": {
        "nbformat": 4, "nbformat_minor": 5, "metadata": {},
        "cells": [{"cell_type": "code", "id": f"c{i}", "source": code, "metadata": {},
                   "execution_count": i + 1,
                   "outputs": [{"output_type": "stream", "name": "stdout", "text": "x" * 400}]}
                  for i, code in enumerate(cells)]}}
    for _ in range(SAVES):
        if hub.server(name, "PUT", "/contents/lesson-work.ipynb", json=nb).status_code not in (200, 201):
            raise RuntimeError(f"{name}: the notebook was not saved")
        hub.server(name, "GET", "/contents")
        hub.server(name, "GET", "/contents/lesson-work.ipynb")


def measure_step(client: docker.DockerClient, hub: Hub, names: list[str], **extra) -> dict:
    mibs = [learner_mib(client, hub, each) for each in names]
    return {"learners": len(names), "MiB/learner": statistics.mean(mibs),
            "next spawn s": None, "API ms": api_latency(hub, names[0]) * 1000,
            "available GiB": available_mib() / 1024, **extra}


def climb(hub: Hub, label: str, most: int, settle: float, reserve_mib: float,
          worked: bool = False) -> list[dict]:
    client = docker.from_env()
    kernel = "docker" if label == "whale" else "bash"
    steps = [s for s in STEPS if s <= most] or [most]
    rows, names = [], []
    try:
        spawn_of: dict[int, float] = {}
        while len(names) < steps[-1] + 1:
            if available_mib() < reserve_mib:
                print(f"{label}: stopping at {len(names)} learners: "
                      f"{available_mib():.0f} MiB available", flush=True)
                break
            name = hub.user(f"{label}{len(names)}")
            spawn_of[len(names) + 1] = spawn(hub, name, kernel)
            names.append(name)
            n = len(names) - 1  # the learners there were before this one
            if rows and rows[-1]["learners"] == n:
                rows[-1]["next spawn s"] = spawn_of[n + 1]
            if len(names) in steps:
                time.sleep(settle)
                rows.append(measure_step(client, hub, names))
                print(f"{label}: {len(names)} learners, {rows[-1]['MiB/learner']:.0f} MiB "
                      f"each, {rows[-1]['available GiB']:.1f} GiB available", flush=True)
        # The learner started last was only there to time the next spawn.
        if worked and rows:
            working = names[:rows[-1]["learners"]]
            t0 = time.perf_counter()
            for each in working:
                work(hub, each, label)
            time.sleep(settle)
            rows.append(measure_step(client, hub, working, worked=True))
            print(f"{label}: {len(working)} learners worked ({time.perf_counter() - t0:.0f} s), "
                  f"{rows[-1]['MiB/learner']:.0f} MiB each", flush=True)
    finally:
        client.close()
    return rows


def table(label: str, rows: list[dict]) -> None:
    print(f"\n{label}")
    print(f"{'learners':>9}{'MiB/learner':>13}{'next spawn':>12}{'API':>9}{'available':>11}")
    for r in rows:
        nxt = f"{r['next spawn s']:.2f} s" if r["next spawn s"] is not None else "-"
        learners = f"{r['learners']} worked" if r.get("worked") else str(r["learners"])
        print(f"{learners:>9}{r['MiB/learner']:>13.0f}{nxt:>12}{r['API ms']:>6.0f} ms"
              f"{r['available GiB']:>7.1f} GiB")


def idle(rows: list[dict]) -> list[dict]:
    """The steps of idle learners (not the "worked" row)."""
    return [r for r in rows if not r.get("worked")]


def holds(rows: list[dict], reserve_mib: float) -> int:
    """Learners a MACHINE_GIB machine holds at the last row's memory per learner."""
    return int((MACHINE_GIB * 1024 - reserve_mib) // rows[-1]["MiB/learner"])


def plot(results: dict[str, list[dict]], path: Path, reserve_mib: float) -> None:
    try:
        import matplotlib
    except ImportError:
        sys.exit("--plot needs matplotlib: pip install '.[bench]'")
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    fig, (mem, spawn_ax) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for label, rows in results.items():
        rows = idle(rows)
        xs = [r["learners"] for r in rows]
        mem.plot(xs, [r["MiB/learner"] for r in rows], marker="o",
                 label=f"{label} ({holds(rows, reserve_mib)} per {MACHINE_GIB} GiB)")
        pts = [(r["learners"], r["next spawn s"]) for r in rows if r["next spawn s"] is not None]
        spawn_ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
    mem.set(xlabel="learners on the machine", ylabel="idle MiB per learner",
            title="Memory per learner (server + engine + kernel)")
    spawn_ax.set(xlabel="learners on the machine", ylabel="seconds",
                 title="Spawn time of the next learner")
    for ax in (mem, spawn_ax):
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.savefig(path, dpi=100)
    print(f"\nplot: {path}")


@contextlib.contextmanager
def lesson_mirror(names: list[str]):
    """A lesson registry mirror of its own (a free port on the bridge gateway), seeded
    with `names`: what learners' engines pull `hello-world` from, as on the site."""
    from whale_site.registry import RegistryMirror

    client = docker.from_env()
    state = Path(tempfile.mkdtemp(prefix="whale-bench-mirror-"))
    mirror = RegistryMirror(state, port=0, host=client)
    try:
        mirror.start()
        mirror.seed(names)
        yield mirror
    finally:
        mirror.stop()
        client.close()
        shutil.rmtree(state, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--max", type=int, default=100, help="most learners (default 100)")
    ap.add_argument("--hubs", default="plain,whale",
                    help="which hubs to measure (comma-separated; the ratios need both)")
    ap.add_argument("--settle", type=float, default=10.0,
                    help="seconds every learner is idle before a step is measured")
    ap.add_argument("--reserve-mib", type=float, default=2048,
                    help="stop when the machine has less memory available (MiB)")
    ap.add_argument("--plot", type=Path, help="draw the curves into this PNG")
    ap.add_argument("--worked", action="store_true",
                    help="at the end, every learner works as in a first lesson; measure again")
    args = ap.parse_args()
    build_plain()
    results = {}
    with contextlib.ExitStack() as stack:
        # No seat limit of the site's own in the way: this is what finds the limit.
        env = {"WHALE_MAX_LEARNERS": "100000"}
        if args.worked:  # a first lesson's docker cells pull from the class's mirror
            env["WHALE_REGISTRY_MIRROR"] = stack.enter_context(lesson_mirror(["hello-world"])).url
        for label in args.hubs.split(","):
            with bench_hub(label, env) as (hub, _):
                results[label] = climb(hub, label, args.max, args.settle, args.reserve_mib,
                                       args.worked)
    for label, rows in results.items():
        table(label, rows)
        for which in (idle(rows), [r for r in rows if r.get("worked")]):
            if which:
                print(f"  at {which[-1]['MiB/learner']:.0f} MiB each"
                      f"{' (worked)' if which[-1].get('worked') else ''}, a {MACHINE_GIB} GiB "
                      f"machine holds {holds(which, args.reserve_mib)} learners "
                      f"({args.reserve_mib / 1024:.0f} GiB kept for the host)")
    if {"whale", "plain"} <= results.keys():
        plain = {(r["learners"], bool(r.get("worked"))): r for r in results["plain"]}
        print("\nratio whale/plain, memory per learner: " + ", ".join(
            f"{r['learners']}{' worked' if r.get('worked') else ''}: "
            f"{r['MiB/learner'] / plain[key]['MiB/learner']:.2f}"
            for r in results["whale"]
            if (key := (r["learners"], bool(r.get("worked")))) in plain))
    if args.plot:
        plot({k: v for k, v in results.items() if v}, args.plot, args.reserve_mib)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
