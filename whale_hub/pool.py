"""A warm pool of sandbox engines: engines started before anyone asks for one, so that a
learner's first start (and a whole class's at once) does not wait for its engine.

- A pooled engine is a SandboxEngine like every other: a CA of its own, its own
  certificates and disk, the classroom policy and the site's limits, made with the
  site's engine settings. It waits on a network of its own that nothing else joins, and
  has no owner: its container carries POOL_LABEL instead of an owner label (a
  container's labels cannot change once it is made). It waits on a network of its own,
  at node 1's fixed address there, which becomes its learner's network: taking an engine
  makes no network and moves nothing.
- A ready engine has an empty file named by its unit in `<state_dir>/pool/`. A learner
  takes one by removing that file (atomic: of two starts, one wins), then writing their
  name into the engine's owner file: from then on the state directory says whose the
  engine and its network are (whale_core.layout.labelled_owner), for the spawner, the
  janitor and the progress service alike (WhaleSpawner._take_from_pool).
- Its unit, `pool-` and 36 hex digits, is longer than any slug and holds no fresh-name
  mark, so no learner's name is ever a pooled engine's.
- The hub refills the pool one engine at a time, and only while no learner has been
  starting for `engine_pool_quiet` seconds: filling never competes with a class's
  starts for the machine's CPUs.
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import secrets
import shutil
import time
from pathlib import Path

import docker

from whale_core.layout import (
    POOL_LABEL,
    SITE_LABEL,
    learner_engine_dir,
    learner_state_dir,
    read_owner,
    write_owner,
)
from whale_core.names import engine_container

from .engine import SandboxEngine
from .executor import blocking
from .specs import EngineSettings
from .subnets import network_subnet, node_address

POOL_DIR = "pool"
UNIT_PREFIX = "pool-"


def pool_unit() -> str:
    """A new pooled engine's unit: 41 characters, longer than any learner's slug."""
    return UNIT_PREFIX + secrets.token_hex(18)


def is_pool_unit(unit: str) -> bool:
    return unit.startswith(UNIT_PREFIX) and len(unit) == len(UNIT_PREFIX) + 36


def pool_network(unit: str) -> str:
    """The network a pooled engine waits on, and its learner's network once taken."""
    return f"{engine_container(unit)}-net"


def unit_of_network(name: str) -> str | None:
    """The pooled engine whose network `name` is (None: not a pooled engine's)."""
    unit = name.removeprefix(engine_container("")).removesuffix("-net")
    return unit if is_pool_unit(unit) and pool_network(unit) == name else None


class EnginePool:
    """The pool of one site (its spawner's `state_dir`)."""

    def __init__(self, state_dir: Path | str, site: str, settings: EngineSettings):
        self.state_dir = Path(state_dir)
        self.site = site
        #: The site's engine settings; each engine gets a network of its own.
        self.settings = settings

    @property
    def ready_dir(self) -> Path:
        return self.state_dir / POOL_DIR

    def ready(self) -> list[str]:
        """The units of the engines waiting, oldest first."""
        try:
            marks = sorted(self.ready_dir.iterdir(), key=lambda p: p.stat().st_mtime)
        except FileNotFoundError:
            return []
        return [p.name for p in marks if is_pool_unit(p.name)]

    def engine(self, unit: str, host: docker.DockerClient) -> SandboxEngine:
        """The pooled engine `unit` as an engine object (whether it exists or not)."""
        settings = dataclasses.replace(
            self.settings, network=pool_network(unit), network_ip=None,
            labels={SITE_LABEL: self.site, POOL_LABEL: "1"})
        return SandboxEngine(engine_container(unit), learner_engine_dir(self.state_dir, unit),
                             host=host, settings=settings)

    def take(self, username: str) -> str | None:
        """A waiting engine's unit, now `username`'s (its owner file written), or None
        when none is waiting."""
        for unit in self.ready():
            try:
                (self.ready_dir / unit).unlink()
            except FileNotFoundError:
                continue  # another start took it
            write_owner(learner_state_dir(self.state_dir, unit), username)
            return unit
        return None

    def add(self, host: docker.DockerClient, timeout: float = 60.0) -> str:
        """Make one engine, wait until it answers over TLS, and put it in the pool."""
        unit = pool_unit()
        engine = self.engine(unit, host)
        try:
            # Node 1's fixed address on what will be the learner's network (as a new
            # learner's engine gets: whale_hub.cluster), named in its bundle.
            engine._ensure_network()
            engine.settings = dataclasses.replace(
                engine.settings, network_ip=node_address(network_subnet(host, engine.attached_network), 1))
            engine.prepare()
            engine.launch()
            engine.wait_ready(timeout)
        except BaseException:
            self.discard(unit, host)
            raise
        self.ready_dir.mkdir(mode=0o700, exist_ok=True)
        (self.ready_dir / unit).touch()
        return unit

    def discard(self, unit: str, host: docker.DockerClient) -> None:
        """Remove a waiting engine: its mark, container, disk, network and state."""
        with contextlib.suppress(FileNotFoundError):
            (self.ready_dir / unit).unlink()
        self.engine(unit, host).remove()
        shutil.rmtree(learner_state_dir(self.state_dir, unit), ignore_errors=True)

    def tidy(self, host: docker.DockerClient, timeout: float = 60.0,
             orphan_age: float = 300.0) -> list[str]:
        """At the hub's start: discard waiting engines that no longer fit the site's
        settings (a new engine image, say) or lost their container, and engines that were
        never finished (a hub stopped while it made one: no mark, no owner, made more
        than `orphan_age` seconds ago); start the ones stopped (`whale down`, a reboot).
        Returns the units discarded."""
        discarded = []
        ready = set(self.ready())
        made = host.containers.list(all=True, filters={"label": [
            f"{POOL_LABEL}=1", f"{SITE_LABEL}={self.site}"]})
        for container in made:
            unit = container.name.removeprefix(engine_container(""))
            if (not is_pool_unit(unit) or unit in ready
                    or read_owner(learner_state_dir(self.state_dir, unit)) is not None):
                continue
            created = datetime.datetime.fromisoformat(container.attrs["Created"][:26].rstrip("Z"))
            age = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) - created
            if age.total_seconds() >= orphan_age:
                self.discard(unit, host)
                discarded.append(unit)
        for unit in self.ready():
            engine = self.engine(unit, host)
            if engine.rebuild_reason() is not None:
                self.discard(unit, host)
                discarded.append(unit)
                continue
            engine.prepare()  # it fits: this finds its port
            engine.launch()
            try:
                engine.wait_ready(timeout)
            except (RuntimeError, TimeoutError):
                self.discard(unit, host)
                discarded.append(unit)
        return discarded

    def empty(self, host: docker.DockerClient) -> None:
        """Remove every waiting engine."""
        for unit in self.ready():
            self.discard(unit, host)


class Filler:
    """Keeps a site's pool at `size` engines, in the hub's event loop, while the start
    line (whale_hub.startline) has been empty for `quiet` seconds."""

    def __init__(self, pool: EnginePool, size: int, line, quiet: float, log,
                 timeout: float = 60.0):
        self.pool, self.size, self.line, self.quiet = pool, size, line, quiet
        self.log = log
        self.timeout = timeout

    def _with_host(self, action):
        host = docker.from_env(timeout=60)
        try:
            return action(host, self.timeout)
        finally:
            host.close()

    async def run(self) -> None:
        try:
            discarded = await blocking(self._with_host, self.pool.tidy)
            if discarded:
                self.log.info("whale pool: discarded %d engines that no longer fit", len(discarded))
        except Exception as exc:  # the waiting engines are made anew below
            self.log.warning("whale pool: could not look at the waiting engines: %s", exc)
        failures = 0
        while True:
            if len(self.pool.ready()) >= self.size or self.line.quiet_for() < self.quiet:
                await asyncio.sleep(1.0)
                continue
            t0 = time.monotonic()
            try:
                await blocking(self._with_host, self.pool.add)
                failures = 0
                self.log.info("whale pool: an engine is waiting (%d of %d), made in %.2f s",
                              len(self.pool.ready()), self.size, time.monotonic() - t0)
            except Exception as exc:  # keep the hub up; try again later
                failures += 1
                self.log.warning("whale pool: could not make an engine: %s", exc)
                await asyncio.sleep(min(300, 10 * failures))


_filling: asyncio.Task | None = None


def keep_warm() -> None:
    """From the site's configuration file: once the hub is running, keep its spawner's
    warm pool filled. The spawner class says how (WhaleSpawner.warm_pool); nothing
    happens outside a hub, or when it returns None (no pool, or not a one-machine site)."""
    global _filling
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    from jupyterhub.app import JupyterHub
    app = JupyterHub.instance()
    # JupyterHub has no hook for "the hub is up": the future it resolves at that moment.
    started = getattr(app, "_start_future", None)

    async def fill() -> None:
        if started is not None:
            await started
        warm_pool = getattr(app.spawner_class, "warm_pool", None)
        filler = warm_pool(app.config, app.log) if warm_pool is not None else None
        if filler is not None:
            app.log.info("whale pool: keeping %d engines waiting", filler.size)
            await filler.run()

    def done(task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:
            app.log.error("whale pool: stopped filling", exc_info=task.exception())

    _filling = loop.create_task(fill())
    _filling.add_done_callback(done)
