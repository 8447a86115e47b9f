"""The README's first command: `whale up` serves the site on its port, `whale down`
stops it. Runs last (the name sorts last): `whale down` stops every engine of the site."""
from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request

import pytest

from whale_core.layout import SITE_LABEL, engines_dir, site_id_of
from whale_core.names import engine_container
from whale_hub.engine import free_port
from whale_hub.engine_disk import unmount_under
from whale_hub.pool import EnginePool
from whale_hub.specs import EngineSettings

pytestmark = pytest.mark.hub


def descendants(root: int) -> dict[int, str]:
    """pid -> command line of every process below `root`."""
    parents, commands = {}, {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    commands[int(entry)] = f.read().replace(b"\0", b" ").decode(errors="replace")
            except (OSError, IndexError, ValueError):
                continue
    found, todo = {}, [root]
    while todo:
        pid = todo.pop()
        for child, parent in parents.items():
            if parent == pid and child not in found:
                found[child] = commands.get(child, "")
                todo.append(child)
    return found


def still_running(processes: dict[int, str]) -> dict[int, str]:
    """Those of `processes` that still run (same pid, same command, not a zombie)."""
    left = {}
    for pid, cmd in processes.items():
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    continue
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if f.read().replace(b"\0", b" ").decode(errors="replace") == cmd:
                    left[pid] = cmd
        except OSError:
            continue
    return left


def test_whale_up_serves_the_site_and_down_stops_it(tmp_path, host_docker):
    port = free_port()
    engines = engines_dir(tmp_path / "state")
    env = dict(os.environ, WHALE_STATE=str(tmp_path / "state"),
               WHALE_HUB_PORT=str(free_port("0.0.0.0")), WHALE_PROXY_API_PORT=str(free_port()),
               WHALE_REGISTRY_PORT=str(free_port()))
    with open(tmp_path / "up.log", "w") as log:
        up = subprocess.Popen([sys.executable, "-m", "whale_site.cli", "up", "--port", str(port),
                               "--engine-pool", "1"],
                              env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 300
            page = ""
            while time.monotonic() < deadline and up.poll() is None:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/hub/login", timeout=5) as r:
                        page = r.read().decode()
                        break
                except OSError:
                    time.sleep(0.5)
            log.flush()
            output = (tmp_path / "up.log").read_text()
            assert "<form" in page, output[-3000:]
            assert "password" in page.lower(), output[-3000:]
            assert f"http://localhost:{port}" in output
            # Everything `whale up` started: the hub, its proxy and its services (the idle
            # culler, the janitor).
            started = descendants(up.pid)
            assert any("jupyterhub_idle_culler" in cmd for cmd in started.values()), started
            assert any("configurable-http-proxy" in cmd for cmd in started.values()), started
            # The warm pool (--engine-pool 1): an engine waits for the first learner.
            pool = EnginePool(engines, site_id_of(engines), EngineSettings())
            while not pool.ready() and time.monotonic() < deadline:
                time.sleep(0.5)
            (waiting,) = pool.ready()
            down = subprocess.run([sys.executable, "-m", "whale_site.cli", "down"], env=env,
                                  capture_output=True, text=True, timeout=120)
            assert down.returncode == 0, down.stdout + down.stderr
            assert "learners' work is kept" in down.stdout
            up.wait(timeout=60)
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/hub/login", timeout=5)
                raise AssertionError("the site still answers after `whale down`")
            except OSError:
                pass
            # `whale down` leaves none of it behind (a culler once outlived two stops).
            deadline = time.monotonic() + 15
            while (left := still_running(started)) and time.monotonic() < deadline:
                time.sleep(0.5)
            assert not left, left
            # ... and the waiting engine is stopped with the rest (the next `up` starts it).
            assert host_docker.containers.get(engine_container(waiting)).status == "exited"
        finally:
            if up.poll() is None:
                up.kill()
            mine = {"label": f"{SITE_LABEL}={site_id_of(engines)}"}
            for c in host_docker.containers.list(all=True, filters=mine):
                c.remove(force=True, v=True)
            for n in host_docker.networks.list(filters=mine):
                n.remove()
            unmount_under(tmp_path / "state")
