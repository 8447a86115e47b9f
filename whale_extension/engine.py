"""What the server knows about the learner's engine: health, published ports.

The Docker SDK blocks, and an engine that hangs must never stall the server, so every
call to the engine runs in a small thread pool of this module's own, under a deadline
(``asyncio.wait_for``) and with a socket timeout a second longer (so a thread that
lost the race ends soon after, and the deadline is what reports a hung engine).
Answers are cached briefly and concurrent askers share one probe in flight: a UI that
polls costs the engine nothing extra.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlsplit

from whale_core.bundle import CredentialBundle
from whale_core.errors import BundleError
from whale_core.store import CredentialStore

#: Bind addresses inside the engine that other machines can reach.
_PUBLIC_BINDS = {"", "0.0.0.0", "::"}  # noqa: S104 - compared with, never bound


def _utc(moment: float) -> str:
    return dt.datetime.fromtimestamp(moment, dt.timezone.utc).isoformat(timespec="seconds")


def credentials_info(bundle: CredentialBundle, generation: str | None) -> dict:
    """The public facts of a bundle (never key material)."""
    return {
        "docker_host": bundle.docker_host,
        "kind": bundle.kind,
        "ca_fingerprint": bundle.ca_fingerprint,
        "cert_fingerprint": bundle.cert_fingerprint,
        "not_after": bundle.not_after.isoformat(timespec="seconds") if bundle.not_after else None,
        "days_left": bundle.days_left,
        "generation": generation,
    }


@dataclass
class _Cached:
    key: str | None
    at: float          # time.monotonic() of the probe
    wall: float        # time.time() of the probe
    value: dict


class EngineMonitor:
    """Health and published ports of the engine whose bundle is installed in ``store``.

    ``timeout`` bounds every answer (seconds); ``cache_seconds`` is how long a health
    answer is reused; ``expiry_warning_days`` is when an expiring client certificate
    makes the status ``degraded``.
    """

    def __init__(self, store: CredentialStore, *, timeout: float = 2.0,
                 cache_seconds: float = 3.0, ports_cache_seconds: float = 2.0,
                 expiry_warning_days: int = 7, log=None):
        self.store = store
        self.timeout = timeout
        self.cache_seconds = cache_seconds
        self.ports_cache_seconds = ports_cache_seconds
        self.expiry_warning_days = expiry_warning_days
        self.log = log
        # Its own pool: a hung engine can tie up these threads, never the server's.
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="whale-engine")
        self._health: _Cached | None = None
        self._ports: _Cached | None = None
        self._inflight: dict[str, asyncio.Future] = {}

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def invalidate(self) -> None:
        """Forget cached answers (after new credentials were installed)."""
        self._health = self._ports = None

    # ------------------------------------------------------------------ plumbing

    @property
    def _socket_timeout(self) -> float:
        # The thread's sockets give up a second after the answer is due: a hung engine is
        # then always reported by the deadline as "timeout", never as whichever of the
        # two timers happened to fire first on a busy machine ("unreachable").
        return self.timeout + 1.0

    async def _in_thread(self, func, *args, timeout: float | None = None):
        loop = asyncio.get_running_loop()
        return await asyncio.wait_for(loop.run_in_executor(self._pool, func, *args),
                                      timeout or self.timeout)

    async def _shared(self, name: str, make):
        """Run ``make()`` once for all concurrent callers that ask for ``name``."""
        future = self._inflight.get(name)
        if future is None:
            future = asyncio.ensure_future(make())
            self._inflight[name] = future
            future.add_done_callback(lambda _f: self._inflight.pop(name, None))
        return await asyncio.shield(future)

    def _fresh(self, cached: _Cached | None, key, max_age: float) -> bool:
        return (cached is not None and cached.key == key
                and time.monotonic() - cached.at < max_age)

    def _bundle(self) -> tuple[CredentialBundle | None, str | None, dict | None]:
        """(bundle, generation, None), or (None, generation, a `down` answer)."""
        generation = self.store.generation()
        if generation is None:
            return None, None, {
                "status": "down", "code": "no-credentials",
                "reason": "No credentials bundle is installed, so there is no Docker "
                          "engine to talk to. Upload your bundle (the Carina zip or a "
                          "`docker context export` file) or ask your instructor."}
        try:
            return self.store.current(), generation, None
        except BundleError as exc:
            return None, generation, {"status": "down", "code": exc.code,
                                      "reason": exc.message}

    # -------------------------------------------------------------------- health

    async def health(self, refresh: bool = False) -> dict:
        """The engine's health as the ``whale/api/health`` endpoint answers it."""
        key = self.store.generation()
        cached = self._health
        if not refresh and self._fresh(cached, key, self.cache_seconds):
            return dict(cached.value, cached=True,
                        age=round(time.monotonic() - cached.at, 3))
        value = await self._shared("health", self._probe_health)
        return dict(value, cached=False, age=0.0)

    async def _probe_health(self) -> dict:
        started, wall = time.monotonic(), time.time()
        bundle, generation, problem = self._bundle()
        answer: dict = {"checked_at": _utc(wall), "timeout": self.timeout,
                        "engine": {"reachable": False}, "swarm": None,
                        "credentials": None}
        if problem is not None:
            answer.update(problem)
        else:
            answer["credentials"] = credentials_info(bundle, generation)
            try:
                facts = await self._in_thread(_engine_facts, bundle, self._socket_timeout)
            except asyncio.TimeoutError:
                answer.update(status="down", code="timeout", reason=(
                    f"The Docker engine at {bundle.docker_host} did not answer within "
                    f"{self.timeout:g} seconds. It may be down, or unreachable from here."))
            except BundleError as exc:
                answer.update(status="down", code=exc.code, reason=exc.message)
            except Exception as exc:  # the SDK's errors, e.g. an HTTP 500 from /info
                answer.update(status="down", code="engine-error", reason=(
                    f"The Docker engine at {bundle.docker_host} answered with an "
                    f"error: {str(exc)[:200]}"))
            else:
                answer["engine"] = facts["engine"]
                answer["swarm"] = facts["swarm"]
                answer.update(self._judge(bundle, facts))
        answer["probe_ms"] = round((time.monotonic() - started) * 1000, 1)
        self._health = _Cached(generation, started, wall, answer)
        return answer

    def _judge(self, bundle: CredentialBundle, facts: dict) -> dict:
        engine, swarm = facts["engine"], facts["swarm"]
        problems = []
        days = bundle.days_left
        if days is not None and days < self.expiry_warning_days:
            when = "today" if days <= 0 else f"in {days} day{'s' if days != 1 else ''}"
            problems.append(f"your client certificate expires {when}: get a fresh "
                            "credentials bundle and upload it")
        state = swarm["state"]
        if state in ("error", "locked", "pending"):
            why = swarm.get("error") or {"locked": "the swarm is locked",
                                         "pending": "joining the swarm is not finished"
                                         }.get(state, "it reports an error")
            problems.append(f"Swarm mode is in state '{state}' ({why})")
        down = [n["hostname"] for n in swarm.get("nodes") or [] if n["status"] != "ready"]
        if down:
            problems.append(f"swarm node{'s' if len(down) > 1 else ''} "
                            f"{', '.join(down)} {'are' if len(down) > 1 else 'is'} not ready "
                            f"({swarm['ready']} of {swarm['total']} nodes ready)")
        if problems:
            text = "; ".join(problems)
            return {"status": "degraded", "code": "degraded",
                    "reason": f"The engine answers, but {text}."}
        where = f", swarm {swarm['role']}" if state == "active" else ""
        if swarm.get("total", 0) > 1:
            where += f" of {swarm['total']} nodes, all ready"
        return {"status": "ok", "code": "ok", "reason": (
            f"Docker {engine['version']} at {bundle.docker_host} answers in "
            f"{engine['latency_ms']:.0f} ms{where}.")}

    # --------------------------------------------------------------------- ports

    async def published_ports(self, refresh: bool = False) -> dict:
        """Ports that the engine's containers and services publish.

        Raises :class:`BundleError` (or ``asyncio.TimeoutError``) when the engine
        cannot be asked.
        """
        key = self.store.generation()
        if not refresh and self._fresh(self._ports, key, self.ports_cache_seconds):
            return self._ports.value

        async def probe():
            bundle, generation, problem = self._bundle()
            if problem is not None:
                raise BundleError(problem["code"], problem["reason"])
            started = time.monotonic()
            ports = await self._in_thread(_published, bundle, self._socket_timeout)
            value = {"docker_host": bundle.docker_host, "ports": ports}
            self._ports = _Cached(generation, started, time.time(), value)
            return value

        return await self._shared("ports", probe)

    async def reachable_port(self, port: int) -> dict | None:
        """The published-port entry for ``port`` if the engine publishes it to the
        network right now, else None. A miss is re-checked once with a fresh list (the
        learner may have just started the container)."""
        for refresh in (False, True):
            listing = await self.published_ports(refresh=refresh)
            for entry in listing["ports"]:
                if entry["port"] == port and entry["reachable"]:
                    return entry
        return None

    # ------------------------------------------------------------- credentials

    async def install(self, install, *args):
        """Run a store install (``install_archive`` / ``install_directory``) in a
        thread, with a live ping of the candidate bundle as its final check."""
        ping_timeout = max(self.timeout, 3.0)

        def verify(bundle: CredentialBundle):
            bundle.ping(timeout=ping_timeout)

        # No deadline here: cancelling the wait would not stop a swap already under
        # way, and the answer must say what really happened. The ping is bounded.
        loop = asyncio.get_running_loop()
        try:
            bundle = await loop.run_in_executor(
                self._pool, lambda: install(*args, verify=verify))
        finally:
            self.invalidate()
        return bundle


# --------------------------------------------------- blocking parts (in threads)

def _engine_facts(bundle: CredentialBundle, timeout: float) -> dict:
    with bundle.client(timeout=timeout) as client:
        api = client.api
        version = api.version()
        started = time.perf_counter()
        api.ping()
        latency = (time.perf_counter() - started) * 1000
        info = api.info()
        engine = {
            "reachable": True,
            "version": version.get("Version"),
            "api_version": version.get("ApiVersion"),
            "min_api_version": version.get("MinAPIVersion"),
            "os": version.get("Os"), "arch": version.get("Arch"),
            "name": info.get("Name"),
            "containers_running": info.get("ContainersRunning"),
            "latency_ms": round(latency, 2),
        }
        swarm_info = info.get("Swarm") or {}
        state = swarm_info.get("LocalNodeState") or "inactive"
        manager = bool(swarm_info.get("ControlAvailable"))
        swarm = {"state": state, "role": None, "node_id": swarm_info.get("NodeID") or None,
                 "nodes": None}
        if swarm_info.get("Error"):
            swarm["error"] = swarm_info["Error"]
        if state == "active":
            swarm["role"] = "manager" if manager else "worker"
            if manager:
                swarm["nodes"] = [_node(n) for n in api.nodes()]
                swarm["total"] = len(swarm["nodes"])
                swarm["ready"] = sum(n["status"] == "ready" for n in swarm["nodes"])
        return {"engine": engine, "swarm": swarm}


def _node(node: dict) -> dict:
    spec, status = node.get("Spec") or {}, node.get("Status") or {}
    manager = node.get("ManagerStatus") or {}
    return {
        "id": node.get("ID"),
        "hostname": (node.get("Description") or {}).get("Hostname"),
        "role": spec.get("Role"),
        "availability": spec.get("Availability"),
        "status": status.get("State"),
        "address": status.get("Addr"),
        "leader": bool(manager.get("Leader")),
    }


def _published(bundle: CredentialBundle, timeout: float) -> list[dict]:
    """Published TCP ports, one entry per port, from containers and Swarm services."""
    by_port: dict[int, dict] = {}

    def add(port: int, target: int, reachable: bool, kind: str, name: str, ident: str,
            image: str | None):
        entry = by_port.setdefault(port, {"port": port, "target": target,
                                          "protocol": "tcp", "reachable": False,
                                          "published_by": []})
        entry["reachable"] = entry["reachable"] or reachable
        who = {"kind": kind, "name": name, "id": ident[:12], "image": image}
        if who not in entry["published_by"]:
            entry["published_by"].append(who)

    with bundle.client(timeout=timeout) as client:
        api = client.api
        for container in api.containers():
            name = (container.get("Names") or ["?"])[0].lstrip("/")
            for port in container.get("Ports") or []:
                if port.get("Type") != "tcp" or not port.get("PublicPort"):
                    continue
                add(int(port["PublicPort"]), int(port["PrivatePort"]),
                    port.get("IP", "") in _PUBLIC_BINDS, "container", name,
                    container.get("Id", ""), container.get("Image"))
        swarm = (api.info().get("Swarm") or {})
        if swarm.get("LocalNodeState") == "active" and swarm.get("ControlAvailable"):
            for service in api.services():
                spec = service.get("Spec") or {}
                image = ((spec.get("TaskTemplate") or {}).get("ContainerSpec") or {}
                         ).get("Image", "").split("@")[0]
                for port in (service.get("Endpoint") or {}).get("Ports") or []:
                    if port.get("Protocol") != "tcp" or not port.get("PublishedPort"):
                        continue
                    add(int(port["PublishedPort"]), int(port.get("TargetPort") or 0),
                        True, "service", spec.get("Name", "?"), service.get("ID", ""),
                        image or None)
    return [by_port[p] for p in sorted(by_port)]


def engine_hostname(docker_host: str) -> str:
    """The host part of a ``tcp://host:port`` DOCKER_HOST."""
    return urlsplit(docker_host.replace("tcp://", "http://", 1)).hostname or ""
