"""WhaleSpawner: a learner's notebook server wired to a Docker engine of their own.

Successor of the 2016 CarinaSpawner, on DockerSpawner. Before the server starts, an
engine provider (whale_hub.providers) makes the learner's engine ready: a hosted
sandbox, or the learner's own endpoint from the spawn form. The engine's credentials
bundle is mounted read-only into the server, where the kernel and the server extension
pick it up. The spawn page shows what is happening through `progress()`.

Secrets: sandbox keys stay in the engine's 0700 state directory on the hub host; an
uploaded bundle is kept encrypted with the hub's crypt key (in user_options) and is on
disk only while the server runs. Neither ever goes into spawner state or logs.
"""
from __future__ import annotations

import asyncio
import base64
import os
import secrets
import time
from functools import partial

import docker
from docker.errors import NotFound
from dockerspawner import DockerSpawner
from jinja2 import Environment, PackageLoader
from jupyterhub.crypto import EncryptionUnavailable, decrypt, encrypt
from tornado import web
from tornado.httpclient import AsyncHTTPClient
from traitlets import Any, Bool, Dict, Float, Int, List, Unicode, default

from whale_core.archives import MAX_ARCHIVE_BYTES, pack_bundle, read_archive
from whale_core.errors import BundleError
from whale_core.layout import OWNER_LABEL, ROLE_LABEL, SITE_LABEL, learner_state_dir, site_id_of
from whale_core.names import bridge_options, learner_network, learner_slug, work_volume
from whale_core.ssh import SSH_FILES

from .cluster import MAX_NODES
from .executor import blocking, docker_executor
from .pool import EnginePool, Filler, pool_network, unit_of_network
from .providers import EngineProvider, provider_class
from .providers.base import claim, container_owner, network_owner, volume_owner
from .providers.sandbox import SandboxProvider
from .specs import EngineSettings
from .startline import StartLine, ordinal
from .subnets import DEFAULT_POOL, create_bridge

BUNDLE_MOUNT = "/var/run/whale/bundle"
#: Where an authenticator (or an earlier version of this site) may hand over a learner's
#: own engine: auth_state["whale_bundle"], a base64 archive.
AUTH_STATE_KEY = "whale_bundle"
_TEMPLATES = Environment(loader=PackageLoader("whale_hub", "templates"), autoescape=True)
#: The one line every learner's start waits in, in this hub (see concurrent_starts).
START_LINE = StartLine(2)


def read_auth_state(spawner: WhaleSpawner, auth_state: dict | None) -> None:
    """The default auth_state_hook: an uploaded bundle kept in auth_state."""
    text = (auth_state or {}).get(AUTH_STATE_KEY)
    spawner.auth_state_upload = base64.b64decode(text) if text else None


class WhaleSpawner(DockerSpawner):
    """Starts the single-user image with the learner's own Docker engine wired in."""

    # -- where engines come from --------------------------------------------------------
    provider = Unicode(
        "sandbox", config=True,
        help="""Where learners' Docker engines come from: the name of an engine provider
        ('sandbox': a hosted TLS-only engine container per learner on this hub's Docker
        engine; 'byoc': the learner uploads credentials for their own engine on the spawn
        form; or one of provider_classes), or 'choice': the learner picks one of
        provider_choices on the spawn form.""")
    provider_choices = List(
        Unicode(), ["sandbox", "byoc"], config=True,
        help="The providers a learner picks from when provider is 'choice', first the default.")
    provider_classes = Dict(
        config=True,
        help="""More engine providers: name -> an EngineProvider subclass or its import
        string ('module.Class'). Entry points of the group howtowhale.engine_providers
        are found without this.""")
    byoc_ping_timeout = Float(
        5, config=True, help="Seconds an uploaded engine has to answer before the spawn is refused.")
    learner_subnets = Unicode(
        DEFAULT_POOL, config=True,
        help="""The address range learners' networks on the host are cut from, a /28 each
        (the server, the engine, and room for an engine's nodes): a /16 holds 4,096. Pick
        a range that no network of the machine uses. (Docker's own default pools hold 31
        networks.)""")
    concurrent_starts = Int(
        0, config=True,
        help="""How many learners' servers (and engines) start at the same time. When a
        class presses Start at once, the others wait in line, first come first served, and
        their spawn page says their place ("you are 12th in line"). 0: twice the machine's
        CPUs, at least 2. (JupyterHub's concurrent_spawn_limit, above this, is how many may
        wait at all before the hub refuses more.)""")

    # -- sandbox engines ----------------------------------------------------------------
    engine_image = Unicode("howtowhale/engine", config=True,
                           help="Image of the sandbox engines (built from images/engine).")
    engine_mem_limit = Unicode("2g", config=True,
                               help="Memory limit of each sandbox engine, e.g. '2g'; '' for none.")
    engine_cpu_limit = Float(1.0, config=True,
                             help="CPUs each sandbox engine may use (0 for no limit).")
    engine_pids_limit = Int(1024, config=True,
                            help="Most processes a sandbox engine and its containers may run.")
    engine_disk_limit = Unicode("10g", config=True,
                                help="""Size of each sandbox engine's disk (its images, containers and
                                volumes), e.g. '10g': a file system of its own in a sparse file under
                                state_dir, loop-mounted, so one learner cannot fill the machine's
                                disk. '' for no limit (a plain Docker volume).""")
    engine_swarm = Bool(False, config=True,
                        help="Initialise each sandbox engine as a one-node Swarm (Swarm lesson).")
    engine_nodes = Int(1, config=True,
                       help="""Nodes of each learner's sandbox engine, unless they choose
                       otherwise on the spawn form (1 to 5): with more than one, the engine
                       is a Swarm of that many engines on the learner's network, node1
                       its manager (the one their notebooks talk to) and the others its
                       workers. Each node is a classroom engine with the limits above.""")
    engine_max_nodes = Int(0, config=True,
                           help="""The most nodes a learner may choose on the spawn form (up
                           to 5; the form offers 1, 3 and 5 up to it). 0: engine_nodes, and
                           no choice.""")
    engine_policy = Bool(True, config=True,
                         help="""Run sandbox engines as classroom engines: containers in a user
                         namespace, and no privileged containers, host namespaces, added
                         capabilities, devices or system bind mounts. Turn it off only for
                         a class you trust that needs them.""")
    engine_pool_size = Int(0, config=True,
                           help="""Engines kept started and waiting for learners (the warm
                           pool, whale_hub.pool): a learner's first start takes one instead
                           of starting an engine. Set it to the size of a class before the
                           class starts; each waiting engine holds about 50 MiB. 0: none.""")
    engine_pool_quiet = Float(3, config=True,
                              help="""Seconds no learner has been starting before the hub
                              makes another engine for the pool (filling never competes
                              with learners' starts).""")
    engine_start_timeout = Float(60, config=True,
                                 help="Seconds to wait for a sandbox engine to answer over TLS.")
    registry_mirror = Unicode("", config=True,
                              help="URL of the lesson registry mirror sandbox engines pull through.")
    remove_engine_on_stop = Bool(False, config=True,
                                 help="""Remove the learner's sandbox engine (with its images and
                                 containers) when their server stops. By default it is only
                                 stopped, and comes back as it was on the next start.""")
    state_dir = Unicode("/var/lib/whale", config=True,
                        help="Hub-side directory (root only) for engines' TLS files and bundles.")
    site_id = Unicode(config=True,
                      help="""Which site the learner's containers and networks are labelled
                      with (org.howtowhale.site); the janitor and `whale down` touch only
                      their own site's. Default: a hash of state_dir.""")

    # -- the learner's server -------------------------------------------------------------
    pids_limit = Int(512, config=True, help="Most processes the learner's notebook server may run.")
    extra_env = Dict(config=True, help="Extra environment for the learner's server.")
    learner_uid = Int(1000, config=True,
                      help="User id the single-user image runs as (it must read the bundle).")

    # -- not configuration ----------------------------------------------------------------
    whale_names = Dict(
        help="""Names of this learner's objects (kind -> name: engine, network, volume,
        server, runtime), kept in the spawner's state. Usually made from the slug; when
        that name was taken by an object that is not this learner's, a fresh one was
        made, and the next start finds it here. Never secrets.""")
    engine_upload = Any(
        None, allow_none=True,
        help="""The archive uploaded for this start (bytes), decrypted from user_options
        or handed over in auth_state; never kept in the spawner's state.""")
    auth_state_upload = Any(None, allow_none=True,
                            help="An archive from auth_state (set by the auth_state_hook).")

    @default("auth_state_hook")
    def _default_auth_state_hook(self):
        return read_auth_state

    @default("site_id")
    def _default_site_id(self):
        return site_id_of(self.state_dir)

    # DockerSpawner defaults that fit this site.
    @default("image")
    def _default_image(self):
        return "howtowhale/singleuser"

    @default("remove")
    def _default_remove(self):
        return True  # the work is in a volume; the container itself is disposable

    @default("volumes")
    def _default_volumes(self):
        return {"{work_volume}": "/home/learner/work"}

    @default("notebook_dir")
    def _default_notebook_dir(self):
        return "/home/learner/work"

    @default("default_url")
    def _default_default_url(self):
        return "/tree/lessons"

    @default("mem_limit")
    def _default_mem_limit(self):
        return "1G"

    @default("start_timeout")
    def _default_start_timeout(self):
        return 180  # a cold start builds nothing, but a first engine start pulls its state

    @default("http_timeout")
    def _default_http_timeout(self):
        return 90

    @default("options_form")
    def _default_options_form(self):
        offered = self.offered_providers()
        nodes = self.node_choices() if any(cls.name == "sandbox" for cls in offered) else []
        if len(offered) == 1 and not offered[0].accepts_upload and len(nodes) < 2:
            return ""
        return _TEMPLATES.get_template("spawn_form.html").render(
            providers=offered, nodes=nodes if len(nodes) > 1 else [],
            default_nodes=self.default_nodes())

    # -- a Swarm of several engines -----------------------------------------------------
    def max_nodes(self) -> int:
        """The most nodes a learner's engine may have here."""
        return min(MAX_NODES, max(1, self.engine_max_nodes or self.engine_nodes))

    def default_nodes(self) -> int:
        return min(max(1, self.engine_nodes), self.max_nodes())

    def node_choices(self) -> list[int]:
        """What the spawn form offers: 1, 3 and 5 nodes up to the site's maximum (and the
        default and the maximum themselves)."""
        if not self.engine_max_nodes:
            return [self.default_nodes()]
        top = self.max_nodes()
        return sorted({n for n in (1, 3, 5) if n <= top} | {self.default_nodes(), top})

    def engine_node_count(self) -> int:
        """Nodes of this start's sandbox engine: the learner's choice (user_options
        "nodes", from the form or the REST API) if the site offers it."""
        wanted = (self.user_options or {}).get("nodes")
        if wanted is None:
            return self.default_nodes()
        choices = self.node_choices()
        if isinstance(wanted, str) and wanted.isdigit():
            wanted = int(wanted)
        if type(wanted) is not int or wanted not in choices:
            raise BundleError("bad-nodes", self.nodes_refusal(wanted))
        return wanted

    def nodes_refusal(self, wanted) -> str:
        """What a learner who asks for `wanted` nodes, which this site does not offer, is told."""
        choices = self.node_choices()
        offered = (f"engines of {choices[0]} node only" if choices == [1]
                   else f"engines of {', '.join(map(str, choices))} nodes")
        return f"This site offers {offered}, not {wanted!r}."

    @property
    def executor(self):
        """DockerSpawner's calls and the providers' share one pool (whale_hub.executor)."""
        return docker_executor()

    # -- names and labels -------------------------------------------------------------
    @property
    def slug(self) -> str:
        """The learner's name as it appears in the names of their objects (whale_core.names)."""
        return learner_slug(self.user.name)

    @property
    def incarnation(self) -> str:
        """Which learner of this name: a mark made at their first start, kept in their
        state, and part of their volumes' names. A learner deleted and a new one given
        the same name later are two people: the first one's work (kept, or on a node the
        janitor cannot reach) must not be the second one's."""
        return self.whale_names.setdefault("incarnation", secrets.token_hex(4))

    def work_volume_default(self) -> str:
        """The name a learner's work volume gets at their first start."""
        return f"{work_volume(self.slug)}-{self.incarnation}"

    @property
    def whale_labels(self) -> dict[str, str]:
        """Labels of everything made for this learner."""
        return {OWNER_LABEL: self.user.name, SITE_LABEL: self.site_id}

    def template_namespace(self):
        # DockerSpawner's escaping is injective as well, but unbounded in length and a
        # second naming rule: {username} is the slug, like every other per-learner name.
        ns = super().template_namespace()
        ns["username"] = ns["safe_username"] = self.slug
        ns["work_volume"] = self.whale_names.get("volume") or work_volume(self.slug)
        return ns

    def load_state(self, state):
        super().load_state(state)
        self.whale_names = dict(state.get("whale_names") or {})
        if "network" in self.whale_names:
            self.network_name = self.whale_names["network"]

    def get_state(self):
        state = super().get_state()
        if self.whale_names:
            state["whale_names"] = dict(self.whale_names)
        return state

    # -- providers ----------------------------------------------------------------------
    def offered_providers(self) -> list[type[EngineProvider]]:
        """The provider classes a learner may use, the default first."""
        names = self.provider_choices if self.provider == "choice" else [self.provider]
        return [provider_class(name, self.provider_classes) for name in names]

    # -- engines: their settings, and the warm pool -----------------------------------
    def engine_settings(self, network: str | None = None,
                        labels: dict[str, str] | None = None) -> EngineSettings:
        """A sandbox engine of this site, as the traits say (on `network`)."""
        return EngineSettings(
            image=self.engine_image, registry_mirror=self.registry_mirror or None,
            swarm=self.engine_swarm, mem_limit=self.engine_mem_limit or None,
            pids_limit=self.engine_pids_limit or None,
            nano_cpus=int(self.engine_cpu_limit * 1e9) if self.engine_cpu_limit else None,
            network=network, labels=dict(labels or {}), policy=self.engine_policy,
            disk_limit=self.engine_disk_limit or None, subnets=self.learner_subnets)

    def engine_pool(self) -> EnginePool:
        """This site's warm pool of engines (whale_hub.pool)."""
        return EnginePool(self.state_dir, self.site_id, self.engine_settings())

    @classmethod
    def warm_pool(cls, config, log) -> Filler | None:
        """What keeps the hub's pool filled (whale_hub.pool.keep_warm), if the site has
        one: hosted engines on this machine, and engine_pool_size above 0."""
        spawner = cls(config=config)  # read for its settings; never started
        if spawner.engine_pool_size <= 0 or not spawner.uses_provider(SandboxProvider):
            return None
        return Filler(spawner.engine_pool(), spawner.engine_pool_size, START_LINE,
                      spawner.engine_pool_quiet, log, spawner.engine_start_timeout)

    def uses_provider(self, cls: type[EngineProvider]) -> bool:
        """Whether `cls` is one of the providers this site offers."""
        return any(offered is cls for offered in self.offered_providers())

    def chosen_provider(self) -> type[EngineProvider]:
        """The provider of this start (user_options["engine"]), if the site offers it."""
        offered = self.offered_providers()
        wanted = (self.user_options or {}).get("engine")
        for cls in offered:
            if cls.name == wanted:
                return cls
        if wanted is not None and self.provider == "choice":
            raise BundleError("bad-choice", f"This site offers no engine of the kind {wanted!r}.")
        return offered[0]

    # -- the spawn form -------------------------------------------------------------------
    async def options_from_form(self, formdata):
        """The learner's choice, and their upload checked offline and encrypted with the
        hub's crypt key. No side effects: nothing is stored or started here."""
        offered = {cls.name: cls for cls in self.offered_providers()}
        name = (formdata.get("engine") or [next(iter(offered))])[0]
        cls = offered.get(name)
        if cls is None:
            raise web.HTTPError(400, f"This site offers no engine of the kind {name!r}.")
        options = {"engine": name}
        if cls.name == "sandbox" and formdata.get("nodes"):
            nodes = formdata["nodes"][0]
            if not nodes.isdigit() or int(nodes) not in self.node_choices():
                raise web.HTTPError(400, self.nodes_refusal(nodes))
            options["nodes"] = int(nodes)
        if not cls.accepts_upload:
            return options
        uploads = formdata.get("bundle_file") or []
        if not uploads or not uploads[0].get("body"):
            raise web.HTTPError(400, "Choose your engine's credentials file to upload.")
        body = uploads[0]["body"]
        if len(body) > MAX_ARCHIVE_BYTES:
            raise web.HTTPError(400, f"That file is too large for a credentials bundle "
                                f"(limit {MAX_ARCHIVE_BYTES // 1024} KiB).")
        # An SSH endpoint's key and known_hosts, chosen beside the context export: kept
        # with it as one archive, so what is stored is one upload, checked as one.
        extra = {name: (formdata.get(f"{name}_file") or [{}])[0].get("body") or b""
                 for name in SSH_FILES}
        try:
            if any(extra.values()):
                body = pack_bundle(read_archive(body, extra))
            cls.check_upload(body)
        except BundleError as exc:
            raise web.HTTPError(400, str(exc)) from None
        try:
            token = await encrypt(base64.b64encode(body).decode())
        except EncryptionUnavailable:
            raise web.HTTPError(400, "This site cannot keep uploaded credentials safely (it "
                                "has no JUPYTERHUB_CRYPT_KEY): ask its operator.") from None
        options["upload"] = token.decode()
        return options

    async def _upload_of_this_start(self) -> bytes | None:
        token = (self.user_options or {}).get("upload")
        if token:
            try:
                return base64.b64decode(await decrypt(token.encode()))
            except Exception:  # another crypt key, or tampered with
                raise BundleError("missing-file", "Your engine's credentials can no longer "
                                  "be read here: upload them again on the spawn form.") from None
        return self.auth_state_upload

    # -- progress -------------------------------------------------------------------------
    def _emit(self, progress: int, message: str) -> None:
        self._whale_events.append({"progress": progress, "message": message})
        self.log.info("%s: %s", self.user.name, message)
        self._whale_changed.set()

    def emit_from_thread(self, progress: int, message: str) -> None:
        """_emit, from a thread of `blocking` (a provider's launch): on the hub's loop."""
        self._whale_loop.call_soon_threadsafe(self._emit, progress, message)

    _whale_events: list
    _whale_changed: asyncio.Event
    _whale_loop: asyncio.AbstractEventLoop
    _start_future: asyncio.Future | None = None

    async def progress(self):
        """What the spawn page shows, as it happens, until the start future is done."""
        future = self._start_future
        if future is None:
            return
        sent = 0
        while True:
            while sent < len(self._whale_events):
                yield dict(self._whale_events[sent])
                sent += 1
            if future.done():
                return
            changed = asyncio.ensure_future(self._whale_changed.wait())
            await asyncio.wait({future, changed}, return_when=asyncio.FIRST_COMPLETED)
            changed.cancel()
            self._whale_changed.clear()

    # -- life cycle -------------------------------------------------------------------------
    def start(self):
        self._whale_events, self._whale_changed = [], asyncio.Event()
        self._whale_loop = asyncio.get_running_loop()
        self._start_future = asyncio.ensure_future(self._start())
        return self._start_future

    def _in_line(self, place: int) -> None:
        self._emit(5, f"The class is starting: you are {ordinal(place)} in line")

    async def _start(self):
        START_LINE.limit = self.concurrent_starts or max(2, 2 * (os.cpu_count() or 1))
        t0 = time.monotonic()
        async with START_LINE.enter(self._in_line):
            waited = time.monotonic() - t0
            return await self._start_in_turn(t0, {"got its turn": waited} if waited > 0.05 else {})

    async def _start_in_turn(self, t0: float, marks: dict[str, float]):
        engine_ready = None
        try:
            cls = self.chosen_provider()
            self.engine_upload = await self._upload_of_this_start() if cls.accepts_upload else None
            await blocking(self._claim_learner_objects)
            provider = cls(self)
            self._emit(10, provider.preparing)
            bundle_dir = await blocking(provider.prepare, timeout=120 + self.byoc_ping_timeout)
            marks["engine prepared"] = time.monotonic() - t0
            # The engine boots while the notebook server starts: the server needs its
            # credentials at once, but the engine only at the first cell.
            engine_ready = asyncio.ensure_future(
                blocking(provider.launch, timeout=self.engine_start_timeout + 60))
            self.volumes = dict(self.volumes)
            self.volumes[str(bundle_dir)] = {"bind": BUNDLE_MOUNT, "mode": "ro"}
            self._emit(40, "Starting your notebook server")
            result = await super().start()
            marks["server container started"] = time.monotonic() - t0
            await engine_ready
            marks["engine answered"] = time.monotonic() - t0
            self._emit(80, "Your Docker engine is ready; waiting for your notebook server")
            await self._wait_http(*result)
            marks["server answered"] = time.monotonic() - t0
            # One line per spawn, for operators: where the time went.
            self.log.info("%s: spawned in %.2f s (%s)", self.user.name, marks["server answered"],
                          ", ".join(f"{k} at {v:.2f} s" for k, v in marks.items()))
            return result
        except BundleError as exc:
            self._emit(100, f"Your Docker engine could not be used: {exc}")
            raise
        finally:
            self.engine_upload = None
            if engine_ready is not None and not engine_ready.done():
                engine_ready.cancel()

    async def _wait_http(self, ip: str, port: int) -> None:
        """Poll the new server every 0.1 s until it answers.

        The hub's own check backs off exponentially (0.2 s, 0.4 s ... up to 5 s), which
        adds seconds to a spawn; polling here first means its first check succeeds.
        """
        client = AsyncHTTPClient()
        url = f"http://{ip}:{port}{self.user.url}api"
        deadline = time.monotonic() + self.http_timeout
        while time.monotonic() < deadline:
            try:
                await client.fetch(url, request_timeout=2, raise_error=False)
                return
            except Exception:  # not listening yet
                await asyncio.sleep(0.1)

    def _claim_learner_objects(self) -> None:
        """Name (and make) the learner's network and work volume, and name their server
        container (blocking). An object of the usual name that is not this learner's is
        left alone: the learner gets a fresh name, remembered in whale_names."""
        host = docker.from_env(timeout=60)
        try:
            self._take_from_pool()
            self.network_name = claim(self, "network", learner_network(self.slug),
                                      partial(self._network_owner, host))
            self._ensure_network(host)
            volume = claim(self, "volume", self.work_volume_default(), partial(volume_owner, host))
            if volume_owner(host, volume) is None:
                host.api.create_volume(volume, labels=self.whale_labels)
            self.object_name = claim(self, "server", self._object_name_default(),
                                     partial(container_owner, host))
        finally:
            host.close()

    def _take_from_pool(self) -> None:
        """At a learner's first start, of a one-node hosted engine, an engine of the warm
        pool (whale_hub.pool), if one is waiting, becomes theirs, with its network (a
        learner with a network or an engine already keeps them)."""
        if (self.engine_pool_size <= 0 or {"engine", "network"} & self.whale_names.keys()
                or self.chosen_provider() is not SandboxProvider
                or learner_state_dir(self.state_dir, self.slug).exists()):
            return
        try:
            if self.engine_node_count() != 1:
                return
        except BundleError:
            return  # said when the provider prepares the engine
        unit = self.engine_pool().take(self.user.name)
        if unit is not None:
            self.whale_names.update(engine=unit, network=pool_network(unit))
            self.emit_from_thread(15, "A Docker engine was waiting for you")

    def _network_owner(self, host: docker.DockerClient, name: str):
        unit = unit_of_network(name)
        directory = learner_state_dir(self.state_dir, unit) if unit else None
        return network_owner(host, name, directory)

    def _ensure_network(self, host: docker.DockerClient) -> None:
        try:
            host.api.inspect_network(self.network_name)
        except NotFound:
            create_bridge(host, self.network_name, pool=self.learner_subnets,
                          options=bridge_options(self.network_name),
                          labels={ROLE_LABEL: "network", **self.whale_labels})

    async def stop(self, now=False):
        await super().stop(now=now)
        # Release what this server's start made, even if the site offers it no longer.
        name = (self.user_options or {}).get("engine") or self.offered_providers()[0].name
        try:
            cls = provider_class(name, self.provider_classes)
        except (LookupError, TypeError) as exc:
            self.log.warning("%s: nothing to release for engine %r: %s", self.user.name, name, exc)
            return
        await blocking(cls(self).release, self.remove_engine_on_stop)

    def get_env(self):
        env = super().get_env()
        env.update(self.extra_env)
        if self.registry_mirror:
            # The kernel lists what the class's mirror holds when a pull fails.
            env["WHALE_REGISTRY_MIRROR"] = self.registry_mirror
        # A lesson that needs more nodes says how to get them (whale-check --nodes).
        env["WHALE_MAX_NODES"] = str(self.max_nodes())
        return env

    async def create_object(self):
        # Limits on the server container itself; DockerSpawner covers memory and CPU.
        self.extra_host_config = dict(self.extra_host_config or {})
        self.extra_host_config.setdefault("pids_limit", self.pids_limit)
        kwargs = dict(self._eval_if_callable(self.extra_create_kwargs) or {})
        # DockerSpawner formats these as templates: a '{' in a user name stays a '{'.
        labels = {k: v.replace("{", "{{").replace("}", "}}") for k, v in self.whale_labels.items()}
        kwargs["labels"] = {**kwargs.get("labels", {}), **labels}
        self.extra_create_kwargs = kwargs
        return await super().create_object()
