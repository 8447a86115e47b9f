"""Spawn time and idle memory per learner: the site vs plain DockerSpawner + bash_kernel.

    python benchmarks/spawn.py [--learners N]

Real hubs run in the same process, one after the other on the same machine:
- "whale": this site's config (WhaleSpawner, a fresh sandbox engine per learner);
- "pooled": the same, with a warm pool of engines as large as the class (whale_hub.pool),
  full before the first learner starts;
- "plain": DockerSpawner with a single-user image holding only JupyterHub, Notebook
  and bash_kernel, and no engine at all (the baseline).
For each learner it measures the time from "start server" (REST) to the server
answering through the proxy, then the idle memory of what the learner costs (server
container + engine container, with one kernel running).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import docker
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))
from hub_fixtures import Hub  # noqa: E402

from whale_site import images  # noqa: E402

PLAIN_IMAGE = "howtowhale/bench-plain"
PLAIN_DOCKERFILE = """
FROM debian:bookworm-slim
RUN apt-get update -q && apt-get install -y -q --no-install-recommends python3 python3-venv \\
 && rm -rf /var/lib/apt/lists/*
COPY wheelhouse /tmp/wheelhouse
RUN python3 -m venv /opt/venv && /opt/venv/bin/pip install -q --no-index \\
      --find-links /tmp/wheelhouse jupyterhub notebook bash_kernel \\
 && /opt/venv/bin/python -m bash_kernel.install --sys-prefix && rm -rf /tmp/wheelhouse
ENV PATH=/opt/venv/bin:$PATH
RUN useradd -m -u 1000 jovyan
USER jovyan
WORKDIR /home/jovyan
CMD ["jupyterhub-singleuser"]
"""
PLAIN_CONFIG = """
c = get_config()
exec(open({site!r}).read())
c.JupyterHub.spawner_class = "docker"
c.DockerSpawner.image = {image!r}
c.DockerSpawner.remove = True
c.DockerSpawner.network_name = "bridge"
c.DockerSpawner.use_internal_ip = True
"""

SERVER_ENV_CONFIG = """
c = get_config()
exec(open({site!r}).read())
c.WhaleSpawner.extra_env = {env!r}
"""


def build_plain() -> None:
    images.ensure_site_images()  # also fills the wheelhouse
    if images.image_exists(PLAIN_IMAGE):
        return
    with tempfile.TemporaryDirectory() as ctx:
        (Path(ctx) / "Dockerfile").write_text(PLAIN_DOCKERFILE)
        shutil.copytree(images.WHEELHOUSE, Path(ctx) / "wheelhouse")
        subprocess.run(["docker", "build", "-q", "-t", PLAIN_IMAGE, ctx], check=True,
                       stdout=subprocess.DEVNULL)


@contextlib.contextmanager
def bench_hub(label: str, extra_env: dict[str, str] | None = None, keep: bool = False,
              pool: int = 0, server_env: dict[str, str] | None = None):
    """A running hub of kind `label` ("whale": this site; "pooled": this site with a warm
    pool of `pool` engines, waited for until full; "plain": DockerSpawner and bash_kernel
    on the same config), learners' engines from the sandbox provider; yields (hub, the
    spawner's "spawned in" lines so far: a function). `server_env`: more environment for
    this site's learners' servers (c.WhaleSpawner.extra_env). Closed, and its state
    directory removed unless `keep`, on the way out."""
    state = Path(tempfile.mkdtemp(prefix=f"whale-bench-{label}-"))
    extra_env = dict(extra_env or {})
    if label == "pooled":
        extra_env["WHALE_ENGINE_POOL"] = str(pool)
    cfg = None
    if label == "plain":
        cfg = state / "plain_config.py"
        cfg.write_text(PLAIN_CONFIG.format(site=str(ROOT / "whale_site" / "jupyterhub_config.py"),
                                           image=PLAIN_IMAGE))
    elif server_env:
        cfg = state / "server_env_config.py"
        cfg.write_text(SERVER_ENV_CONFIG.format(
            site=str(ROOT / "whale_site" / "jupyterhub_config.py"), env=dict(server_env)))
    hub = Hub(state, extra_env={"WHALE_PROVIDER": "sandbox", **(extra_env or {})}, config=cfg)

    def phases() -> list[str]:
        log = (state / "hub.log").read_text(errors="replace")
        return [line.split("]", 1)[-1].strip() for line in log.splitlines() if "spawned in" in line]
    try:
        if label == "pooled":
            wait_for_pool(hub, pool)
        yield hub, phases
    finally:
        hub.close()
        if keep:
            print(f"  {label}'s hub log: {state / 'hub.log'}")
        else:
            shutil.rmtree(state, ignore_errors=True)


def wait_for_pool(hub: Hub, size: int, timeout: float = 600) -> None:
    """Until the hub's warm pool holds `size` engines (it fills one at a time)."""
    from whale_hub.pool import EnginePool
    from whale_hub.specs import EngineSettings
    pool = EnginePool(hub.state / "hub" / "engines", hub.site, EngineSettings())
    t0 = time.perf_counter()
    while len(pool.ready()) < size:
        if time.perf_counter() - t0 > timeout:
            raise TimeoutError(f"the pool has {len(pool.ready())} of {size} engines")
        time.sleep(0.5)
    print(f"  the pool's {size} engines were ready in {time.perf_counter() - t0:.1f} s", flush=True)
    # The machine quiet again, as before a class: the new engines' disks written back
    # now, not by the kernel's flusher 30 s later, in the middle of the measurement.
    os.sync()
    time.sleep(5)


def server_container(client: docker.DockerClient, user: str) -> str:
    """The learner's server container (DockerSpawner escapes names; its env does not)."""
    for c in client.containers.list():
        if f"JUPYTERHUB_USER={user}" in (c.attrs["Config"]["Env"] or []):
            return c.name
    raise LookupError(f"no server container for {user}")


def learner_engines(client: docker.DockerClient, user: str) -> list:
    """The engine containers (every node) on the learner's server's network: found by
    where they are, as an engine taken from the warm pool has no owner label."""
    server = client.containers.get(server_container(client, user))
    found = {}
    for network in server.attrs["NetworkSettings"]["Networks"]:
        for c in client.containers.list(filters={"network": network,
                                                 "label": "org.howtowhale.role=engine"}):
            found[c.id] = c
    return list(found.values())


def memory_mib(client: docker.DockerClient, name: str) -> float:
    try:
        stats = client.containers.get(name).stats(stream=False)
    except docker.errors.NotFound:
        return 0.0
    mem = stats["memory_stats"]
    cache = mem.get("stats", {}).get("cache", 0) or mem.get("stats", {}).get("inactive_file", 0)
    return (mem.get("usage", 0) - cache) / 2**20


def measure(hub: Hub, learners: int, label: str) -> dict:
    client = docker.from_env()
    times, mems = [], []
    names = [hub.user(f"{label}{i}") for i in range(learners)]
    try:
        for name in names:
            t0 = time.perf_counter()
            r = hub.api("POST", f"/users/{name}/server", json={})
            assert r.status_code in (201, 202), r.text
            while True:
                try:
                    if hub.server(name, "GET", "/status").status_code == 200:
                        break
                except requests.RequestException:
                    pass
                time.sleep(0.05)
            times.append(time.perf_counter() - t0)
        for name in names:  # one kernel each, then idle
            kernel = "bash" if label == "plain" else "docker"
            assert hub.server(name, "POST", "/kernels", json={"name": kernel}).status_code == 201
        time.sleep(10)
        for name in names:
            engine = learner_engines(client, name)
            mems.append(memory_mib(client, server_container(client, name)) +
                        (memory_mib(client, engine[0].name) if engine else 0))
    finally:
        client.close()
    return {"times": times, "mems": mems}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--learners", type=int, default=5)
    ap.add_argument("--hubs", default="plain,whale,pooled",
                    help="which hubs to measure (comma-separated; the ratios need plain)")
    ap.add_argument("--keep-logs", action="store_true",
                    help="keep each hub's state directory (its hub.log has a line per spawn)")
    args = ap.parse_args()
    build_plain()
    results = {}
    for label in args.hubs.split(","):
        with bench_hub(label, keep=args.keep_logs, pool=args.learners) as (hub, phases):
            results[label] = measure(hub, args.learners, label)
            results[label]["phases"] = phases()
    print(f"{args.learners} learners, started one after another\n")
    print(f"{'':<8}{'spawn median':>14}{'spawn max':>12}{'idle MiB/learner':>18}")
    for label, r in results.items():
        print(f"{label:<8}{statistics.median(r['times']):>12.2f} s{max(r['times']):>10.2f} s"
              f"{statistics.median(r['mems']):>16.0f}")
    for label, r in results.items():
        if r["phases"]:
            print(f"\n{label}: where the time went, per spawn (the spawner's log)")
            print("\n".join(f"  {line}" for line in r["phases"]))
    for label in ("whale", "pooled"):
        if label in results and "plain" in results:
            w, p = results[label], results["plain"]
            ratio = statistics.median(w["times"]) / statistics.median(p["times"])
            print(f"\nratio {label}/plain: spawn median {ratio:.2f}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
