"""The embedded default site: everything on this machine (`whale up` / `whale down`).

`up` builds the images that are missing, starts the lesson registry mirror (read-only
to learners once seeded), installs the host firewall for learners' networks
(whale_site/firewall.py), and runs JupyterHub (which starts configurable-http-proxy)
with whale_site/jupyterhub_config.py in the foreground. `down` stops the hub, learners'
servers and their engines, keeping learners' work (volumes) and engines' data, then
removes the site's firewall rules and stops the mirror.
"""
from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import docker

from whale_core.layout import (
    ROLE_LABEL,
    SITE_LABEL,
    engines_dir,
    hub_dir,
    registry_dir,
    site_id_of,
    state_root,
)

from . import firewall, images
from .registry import RegistryMirror, bridge_gateway, default_mirror

CONFIG = Path(__file__).resolve().parent / "jupyterhub_config.py"


def crypt_key(state: Path) -> str:
    """The auth_state encryption key, made once and kept 0600 beside the hub's state."""
    path = hub_dir(state) / "crypt_key"
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    return path.read_text().strip()


def hub_env(port: int = 8000, bind_ip: str = "127.0.0.1", mirror_url: str = "",
            provider: str = "choice", engine_nodes: int = 1, max_nodes: int = 3,
            engine_pool: int | None = None) -> dict[str, str]:
    state = state_root()
    gateway = bridge_gateway()
    pool = {} if engine_pool is None else {"WHALE_ENGINE_POOL": str(engine_pool)}
    return dict(os.environ, **pool, WHALE_STATE=str(state), WHALE_PORT=str(port),
                WHALE_BIND_IP=bind_ip, WHALE_HUB_CONNECT_IP=gateway,
                WHALE_REGISTRY_MIRROR=mirror_url, WHALE_PROVIDER=provider,
                WHALE_ENGINE_NODES=str(engine_nodes), WHALE_MAX_NODES=str(max(max_nodes, engine_nodes)),
                JUPYTERHUB_CRYPT_KEY=os.environ.get("JUPYTERHUB_CRYPT_KEY") or crypt_key(state))


def hub_port() -> int:
    """The hub's API port (learners' servers report there): WHALE_HUB_PORT, or 8081."""
    return int(os.environ.get("WHALE_HUB_PORT", "8081"))


def progress_port() -> int:
    """The lesson-progress service's port, beside the hub's API: WHALE_PROGRESS_PORT, or
    the hub's port + 1 (what whale_site/jupyterhub_config.py starts it on)."""
    return int(os.environ.get("WHALE_PROGRESS_PORT") or hub_port() + 1)


def firewall_owner() -> str:
    """This site's name among the firewall's owners (one per state directory)."""
    return f"site-{site_id_of(engines_dir())}"


def install_firewall(mirror_url: str = "") -> None:
    """Learners reach this site's hub API, its progress service and the mirror on the
    bridge gateway, and nothing else of the host, and no link-local address
    (whale_site/firewall.py)."""
    gateway = bridge_gateway()
    mirror = urlparse(mirror_url) if mirror_url else None
    # A mirror elsewhere is reached through forwarding, not the host's INPUT.
    mirror_port = mirror.port if mirror and mirror.hostname == gateway else None
    firewall.install(hub_port(), mirror_port, address=gateway, owner=firewall_owner(),
                     extra_ports={"whale-progress": progress_port()})


def up(port: int = 8000, bind_ip: str = "127.0.0.1", provider: str = "choice",
       mirror_url: str | None = None, use_firewall: bool = True, engine_nodes: int = 1,
       max_nodes: int = 3, engine_pool: int | None = None) -> int:
    """Start the site and serve it until interrupted."""
    if shutil.which("configurable-http-proxy") is None:
        print("whale: installing configurable-http-proxy from npm ...", flush=True)
        subprocess.run(["npm", "install", "-g", "--silent", "configurable-http-proxy@5"], check=True)
    print("whale: building missing images ...", flush=True)
    images.ensure_site_images()
    if mirror_url is None:
        mirror_url = _start_mirror()
    if use_firewall:
        print("whale: installing the firewall for learners' networks ...", flush=True)
        try:
            install_firewall(mirror_url or "")
        except firewall.FirewallError as exc:
            print(f"whale: could not install the firewall for learners' networks: {exc}\n"
                  "whale: run `whale up` as root (it needs iptables), or, knowing that "
                  "learners' containers then reach every service of this machine and "
                  "169.254.169.254, with --no-firewall", file=sys.stderr, flush=True)
            return 1
    else:
        print("whale: WARNING: no firewall: learners' containers reach every service of "
              "this machine and link-local addresses (169.254.169.254)", flush=True)
    env = hub_env(port, bind_ip, mirror_url or "", provider, engine_nodes, max_nodes, engine_pool)
    host = "localhost" if bind_ip in ("127.0.0.1", "0.0.0.0") else bind_ip  # noqa: S104 - compared, not bound
    print(f"whale: the site is at http://{host}:{port}  (sign up, then sign in)", flush=True)
    return subprocess.call([sys.executable, "-m", "jupyterhub", "-f", str(CONFIG)],
                           cwd=hub_dir(), env=env)


def _start_mirror() -> str:
    print("whale: starting the lesson registry mirror ...", flush=True)
    return default_mirror().url


def _terminate(pid_file: Path, grace: float = 30) -> None:
    """SIGTERM the process a pid file names; SIGKILL it if it is still there after grace."""
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, signal.SIGTERM)
    except (OSError, ValueError):
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def down() -> int:
    """Stop the hub, learners' servers and engines; keep every learner's work."""
    for name in ("jupyterhub.pid", "jupyterhub-proxy.pid"):
        _terminate(hub_dir() / name)
    client = docker.from_env()
    try:
        stopped = 0
        site = f"{SITE_LABEL}={site_id_of(engines_dir())}"
        for c in client.containers.list(filters={"label": site}):
            if c.labels.get(ROLE_LABEL) == "engine":
                continue  # engines after the servers that use them
            c.stop(timeout=10)
            stopped += 1
        for c in client.containers.list(filters={"label": [f"{ROLE_LABEL}=engine", site]}):
            c.stop(timeout=10)
            stopped += 1
    finally:
        client.close()
    try:
        firewall.remove(firewall_owner())
    except firewall.FirewallError as exc:
        print(f"whale: could not remove the firewall rules: {exc}", file=sys.stderr)
    RegistryMirror(registry_dir()).stop()
    print(f"whale: stopped the site ({stopped} containers); learners' work is kept")
    return 0
