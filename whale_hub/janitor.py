"""Remove what learners who no longer exist left behind: engines, networks, bundles.

Runs as a JupyterHub service (`python -m whale_hub.janitor`, every --interval seconds)
with a token that may list users. A sandbox engine, a learner network or a server
container whose owner is not a hub user any more (a deleted learner) is removed, with
the engine's TLS files on the hub host.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import docker
import requests

from whale_core.layout import (
    LEARNERS_DIR,
    OWNER_LABEL,
    POOL_LABEL,
    RUNTIME_DIR,
    SITE_LABEL,
    labelled_owner,
    learner_state_dir,
    read_owner,
    site_id_of,
)
from whale_core.layout import ROLE_LABEL as LABEL
from whale_core.names import engine_container

from .engine_disk import unmount_under
from .pool import unit_of_network


def hub_users(api_url: str, token: str) -> set[str]:
    """Every user name the hub knows (paged)."""
    names: set[str] = set()
    offset = 0
    with requests.Session() as s:
        s.trust_env = False
        s.headers["Authorization"] = f"token {token}"
        while True:
            r = s.get(f"{api_url.rstrip('/')}/users", params={"offset": offset, "limit": 200},
                      headers={"Accept": "application/jupyterhub-pagination+json"}, timeout=30)
            r.raise_for_status()
            body = r.json()
            items = body["items"] if isinstance(body, dict) else body
            names.update(u["name"] for u in items)
            if not isinstance(body, dict) or not body.get("_pagination", {}).get("next"):
                return names
            offset = body["_pagination"]["next"]["offset"]


def _attached(client: docker.DockerClient, network) -> list:
    """The containers on a network (an overlay's load balancer endpoint, `lb-…`, is none)."""
    found = []
    for cid in network.attrs.get("Containers") or {}:
        with contextlib.suppress(docker.errors.NotFound):
            found.append(client.containers.get(cid))
    return found


def sweep(users: set[str] | Callable[[], set[str]], state_dir: str,
          client: docker.DockerClient | None = None, site: str | None = None) -> list[str]:
    """Remove this site's engines, networks, server containers and learner directories
    of owners not in `users`.

    The site is the spawner's (a hash of its state_dir unless given): engines of other
    sites, of lesson tests or of `whale notebook` on the same engine are never touched,
    nor a directory without an owner file.

    `users` may be a function (hub_users with its arguments): it is then asked only after
    everything has been listed and its owners read. A learner's objects are made after
    the learner, so whoever owns a listed object was a hub user before the listing: if
    the answer does not name them, they were deleted. Asked first, the answer could miss
    a newcomer who signed up meanwhile, and this sweep would take their new engine, server
    and network from under their first start.
    """
    own = client is None
    client = client or docker.from_env()
    site = site or site_id_of(state_dir)
    site_label = f"{SITE_LABEL}={site}"
    removed = []
    try:
        # What there is, and whose (read now: an engine taken from the warm pool says whose
        # it is in its state directory, written when it is taken).
        engines = []
        for c in client.containers.list(all=True, filters={"label": [f"{LABEL}=engine", site_label]}):
            unit = c.name.removeprefix(engine_container(""))
            engines.append((c, labelled_owner(c.labels, learner_state_dir(state_dir, unit))))
        services, secrets = [], []
        if (client.info().get("Swarm") or {}).get("ControlAvailable"):
            # A deployed site (whale_hub.swarm): learners' servers and engines are Swarm
            # services, their bundles and TLS files Swarm secrets.
            services = [(x, (x.attrs["Spec"].get("Labels") or {}).get(OWNER_LABEL))
                        for x in client.services.list(filters={"label": [OWNER_LABEL, site_label]})]
            secrets = [(x, (x.attrs["Spec"].get("Labels") or {}).get(OWNER_LABEL))
                       for x in client.secrets.list(filters={"label": [OWNER_LABEL, site_label]})]
        networks = []
        for n in [*client.networks.list(filters={"label": [OWNER_LABEL, site_label]}),
                  *client.networks.list(filters={"label": [POOL_LABEL, site_label]})]:
            # A pooled engine's network became its learner's: its owner file says whose.
            unit = unit_of_network(n.name)
            networks.append((n, labelled_owner(n.attrs.get("Labels"),
                                               learner_state_dir(state_dir, unit) if unit else None)))
        directories = [(kind, directory, read_owner(directory))
                       for kind in (LEARNERS_DIR, RUNTIME_DIR)
                       for directory in sorted((Path(state_dir) / kind).glob("*"))]
        users = users() if callable(users) else users

        def gone(owner: str | None) -> bool:
            # No owner (a pooled engine not taken yet, a directory without an owner file)
            # or an empty one (an owner file being written) is nobody's to sweep.
            return bool(owner) and owner not in users

        for c, owner in engines:
            if gone(owner):
                with contextlib.suppress(docker.errors.NotFound):
                    c.remove(force=True, v=True)
                    removed.append(c.name)
        for service, owner in services:
            if gone(owner):
                with contextlib.suppress(docker.errors.NotFound):
                    service.remove()
                    removed.append(service.name)
        for secret, owner in secrets:
            if gone(owner):
                try:
                    secret.remove()
                    removed.append(secret.name)
                except docker.errors.APIError:
                    pass  # still in use by a service on its way out: the next sweep
        for n, owner in networks:
            if gone(owner):
                try:
                    n.reload()
                except docker.errors.NotFound:
                    continue
                for attached in _attached(client, n):
                    if (attached.labels.get(OWNER_LABEL) == owner and attached.labels.get(SITE_LABEL) == site
                            and attached.name.startswith("jupyter-")):
                        attached.remove(force=True)
                        removed.append(attached.name)
                    elif attached.id.startswith(socket.gethostname()):
                        # The hub's own container (a deployed site's hub joins each
                        # learner's network; the janitor runs in it).
                        n.disconnect(attached.id, force=True)
                try:
                    n.remove()
                    removed.append(n.name)
                except docker.errors.APIError:
                    pass
        for kind, directory, owner in directories:
            if gone(owner):
                unmount_under(directory)  # an engine's disk is mounted there
                shutil.rmtree(directory, ignore_errors=True)
                removed.append(f"{kind}/{directory.name}")
    finally:
        if own:
            client.close()
    return removed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--interval", type=float, default=600)
    ap.add_argument("--once", action="store_true")
    ap.add_argument("--state-dir", default=os.environ.get("WHALE_ENGINE_STATE"), required=True,
                    help="the spawner's state_dir (also names the site)")
    ap.add_argument("--site", default=None, help="site id, if the spawner's site_id is set")
    args = ap.parse_args()
    # The hub stops its services with SIGINT, which its children inherit as ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    api_url = os.environ["JUPYTERHUB_API_URL"]
    token = os.environ["JUPYTERHUB_API_TOKEN"]
    while True:
        try:
            removed = sweep(partial(hub_users, api_url, token), args.state_dir, site=args.site)
            if removed:
                print(f"whale-janitor: removed {', '.join(removed)}", flush=True)
        except Exception as exc:  # keep running: the next sweep may work
            print(f"whale-janitor: sweep failed: {exc}", flush=True)
        if args.once:
            return
        time.sleep(args.interval)


if __name__ == "__main__":
    main()
