"""WhaleSpawner: a learner's notebook server wired to a Docker engine of their own.

Successor of the 2016 CarinaSpawner, on DockerSpawner. Before the server starts, a
provider makes the learner's engine ready (a hosted sandbox, or the learner's own
endpoint from the spawn form); the engine's credentials bundle is mounted read-only
into the server, where the kernel and the server extension pick it up. The spawn
page shows what is happening through `progress()`.

Secrets: sandbox keys stay in the engine's 0700 state directory on the hub host; an
uploaded (BYOC) bundle is kept in encrypted auth_state and is on disk only while the
server runs. Neither ever goes into spawner state, user_options or logs.
"""
from __future__ import annotations

import asyncio
import html
import inspect
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import docker
from docker.errors import NotFound
from dockerspawner import DockerSpawner
from tornado import web
from tornado.httpclient import AsyncHTTPClient
from traitlets import Bool, Dict, Float, Int, Unicode, default

from whale_core.archives import MAX_ARCHIVE_BYTES
from whale_core.errors import BundleError
from whale_core.layout import OWNER_LABEL, SITE_LABEL, site_id_of
from whale_core.layout import ROLE_LABEL as LABEL
from whale_core.names import bridge_options, learner_network, learner_slug, work_volume

from .providers import (
    ByocProvider,
    SandboxProvider,
    claim,
    container_owner,
    decode_archive,
    encode_archive,
    in_thread,
    network_owner,
    volume_owner,
)

BUNDLE_MOUNT = "/var/run/whale/bundle"

_FORM = """
<div class="form-group whale-engine">
  <p>Your notebooks run Docker commands on an engine of your own.</p>
  {choice}
  <div class="whale-byoc" style="margin-top:.5em">
    <label for="whale-bundle">Your engine's credentials (a Carina-style .zip with ca.pem,
    cert.pem, key.pem and docker.env, or a <code>docker context export</code> archive):</label>
    <input type="file" id="whale-bundle" name="bundle" accept=".zip,.tar,.tgz,.gz,.dockercontext">
  </div>
</div>
"""
_CHOICE = """
  <label><input type="radio" name="engine" value="sandbox" checked>
    A fresh Docker engine hosted for me</label><br>
  <label><input type="radio" name="engine" value="byoc">
    My own Docker engine (upload its credentials below)</label>
"""


class WhaleSpawner(DockerSpawner):
    """Starts the single-user image with the learner's own Docker engine wired in."""

    provider = Unicode(
        "sandbox", config=True,
        help="""Where learners' Docker engines come from: 'sandbox' (a hosted TLS-only
        engine container per learner on this hub's Docker engine), 'byoc' (the learner
        uploads credentials for their own engine on the spawn form), or 'choice' (the
        learner picks one of the two on the spawn form).""",
    )
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
    engine_policy = Bool(True, config=True,
                         help="""Run sandbox engines as classroom engines: containers in a user
                         namespace, and no privileged containers, host namespaces, added
                         capabilities, devices or system bind mounts. Turn it off only for
                         a class you trust that needs them.""")
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
    byoc_ping_timeout = Float(5, config=True,
                              help="Seconds an uploaded engine has to answer before the spawn is refused.")
    pids_limit = Int(512, config=True,
                     help="Most processes the learner's notebook server may run.")
    extra_env = Dict(config=True, help="Extra environment for the learner's server.")
    site_id = Unicode(config=True,
                      help="""Which site the learner's containers and networks are labelled
                      with (org.howtowhale.site); the janitor and `whale down` touch only
                      their own site's. Default: a hash of state_dir.""")

    whale_names = Dict(
        help="""Names of this learner's objects (kind -> name: engine, network, volume,
        server, runtime), kept in the spawner's state. Usually made from the slug; when
        that name was taken by an object that is not this learner's, a fresh one was
        made, and the next start finds it here. Never secrets.""")

    @default("site_id")
    def _default_site_id(self):
        return site_id_of(self.state_dir)

    @property
    def slug(self) -> str:
        """The learner's name as it appears in the names of their objects (whale_hub.slugs)."""
        return learner_slug(self.user.name)

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

    learner_uid = Int(1000, config=True,
                      help="User id the single-user image runs as (it must read the bundle).")

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
        if self.provider == "sandbox":
            return ""
        return _FORM.format(choice=_CHOICE if self.provider == "choice" else
                            '<input type="hidden" name="engine" value="byoc">')

    # DockerSpawner runs every call to the operator's engine on one shared thread;
    # with a pool, one slow call (say a sandbox engine being removed) does not hold up
    # every other learner's spawn.
    _whale_pool = None

    @property
    def executor(self):
        cls = type(self)
        if cls._whale_pool is None:
            cls._whale_pool = ThreadPoolExecutor(16, thread_name_prefix="whale-docker")
        return cls._whale_pool

    # -- the spawn form -------------------------------------------------------------
    def options_from_form(self, formdata):
        choice = (formdata.get("engine") or [self.provider])[0]
        if self.provider in ("sandbox", "byoc"):
            choice = self.provider
        if choice != "byoc":
            return {"engine": "sandbox"}
        uploads = formdata.get("bundle_file") or []
        if not uploads or not uploads[0].get("body"):
            raise web.HTTPError(400, "Choose your engine's credentials file to upload.")
        body = uploads[0]["body"]
        if len(body) > MAX_ARCHIVE_BYTES:
            raise web.HTTPError(400, f"That file is too large for a credentials bundle "
                                f"(limit {MAX_ARCHIVE_BYTES // 1024} KiB).")
        # Validated (and pinged) in run_options_from_form's caller via this coroutine.
        self._pending_archive = body
        return {"engine": "byoc"}

    async def run_options_from_form(self, form_data):
        options = super().run_options_from_form(form_data)
        if inspect.isawaitable(options):
            options = await options
        if options.get("engine") == "byoc":
            try:
                await in_thread(ByocProvider.validate, self._pending_archive,
                                self.byoc_ping_timeout, timeout=self.byoc_ping_timeout + 10)
            except BundleError as exc:
                self._pending_archive = None
                raise web.HTTPError(400, html.escape(str(exc))) from None
            except asyncio.TimeoutError:
                self._pending_archive = None
                raise web.HTTPError(400, "Your engine did not answer in time.") from None
            auth_state = await self.user.get_auth_state() or {}
            auth_state[ByocProvider.AUTH_STATE_KEY] = encode_archive(self._pending_archive)
            await self.user.save_auth_state(auth_state)
            if not self.user.authenticator.enable_auth_state:
                # Without auth_state the upload can only live in memory: fine for one run.
                self._memory_archive = self._pending_archive
            self._pending_archive = None
        return options

    # -- progress -------------------------------------------------------------------
    def _emit(self, progress: int, message: str) -> None:
        events = getattr(self, "_whale_events", None)
        if events is None:
            events = self._whale_events = []
        events.append({"progress": progress, "message": message, "time": time.time()})
        self.log.info("%s: %s", self.user.name, message)
        changed = getattr(self, "_whale_changed", None)
        if changed is not None:
            changed.set()

    async def progress(self):
        """What the spawn page shows, as it happens."""
        sent = 0
        self._whale_changed = asyncio.Event()
        while True:
            events = getattr(self, "_whale_events", [])
            while sent < len(events):
                event = dict(events[sent])
                event.pop("time", None)
                yield event
                sent += 1
            if self._whale_done:
                return
            self._whale_changed.clear()
            try:
                await asyncio.wait_for(self._whale_changed.wait(), 1)
            except asyncio.TimeoutError:
                pass

    _whale_done = False
    _pending_archive: bytes | None = None
    _memory_archive: bytes | None = None

    # -- life cycle -------------------------------------------------------------------
    def _engine_kind(self) -> str:
        if self.provider in ("sandbox", "byoc"):
            return self.provider
        return (self.user_options or {}).get("engine", "sandbox")

    async def start(self):
        self._whale_events, self._whale_done = [], False
        t0 = time.monotonic()
        marks: dict[str, float] = {}
        try:
            await in_thread(self._claim_learner_objects)
            kind = self._engine_kind()
            if kind == "byoc":
                self._emit(10, "Checking your Docker engine")
                archive = await self._byoc_archive()
                provider = ByocProvider(self)
                bundle_dir = await in_thread(provider.materialize, archive)
                await in_thread(ByocProvider.validate, archive, self.byoc_ping_timeout,
                                timeout=self.byoc_ping_timeout + 10)
                engine_ready = None
            else:
                self._emit(10, "Creating your Docker engine")
                provider = SandboxProvider(self)
                bundle_dir = await in_thread(provider.prepare, timeout=120)
                marks["engine prepared"] = time.monotonic() - t0
                # The engine is created and boots while the notebook server starts: the
                # server needs its credentials at once, but the engine only at the
                # first cell.
                engine_ready = asyncio.ensure_future(
                    in_thread(provider.launch, timeout=self.engine_start_timeout + 60))
            self.volumes = dict(self.volumes)
            self.volumes[str(bundle_dir)] = {"bind": BUNDLE_MOUNT, "mode": "ro"}
            self._emit(40, "Starting your notebook server")
            try:
                result = await super().start()
            except BaseException:
                if engine_ready is not None:
                    engine_ready.cancel()
                raise
            marks["server container started"] = time.monotonic() - t0
            if engine_ready is not None:
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
            self._whale_done = True

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

    async def _byoc_archive(self) -> bytes:
        memory = getattr(self, "_memory_archive", None)
        if memory:
            return memory
        state = await self.user.get_auth_state() or {}
        text = state.get(ByocProvider.AUTH_STATE_KEY)
        if not text:
            raise BundleError("missing-file", "No credentials for your own engine are stored: "
                              "upload them on the spawn form.")
        return decode_archive(text)

    def _claim_learner_objects(self) -> None:
        """Name (and make) the learner's network and work volume, and name their server
        container (blocking). An object of the usual name that is not this learner's is
        left alone: the learner gets a fresh name, remembered in whale_names."""
        host = docker.from_env(timeout=60)
        try:
            self.network_name = claim(self, "network", learner_network(self.slug),
                                      partial(network_owner, host))
            self._ensure_network(host)
            volume = claim(self, "volume", work_volume(self.slug), partial(volume_owner, host))
            if volume_owner(host, volume) is None:
                host.api.create_volume(volume, labels=self.whale_labels)
            self.object_name = claim(self, "server", self._object_name_default(),
                                     partial(container_owner, host))
        finally:
            host.close()

    def _ensure_network(self, host: docker.DockerClient) -> None:
        try:
            host.api.inspect_network(self.network_name)
        except NotFound:
            host.networks.create(self.network_name, driver="bridge",
                                 options=bridge_options(self.network_name),
                                 labels={LABEL: "network", **self.whale_labels})

    async def stop(self, now=False):
        await super().stop(now=now)
        kind = self._engine_kind()
        provider = ByocProvider(self) if kind == "byoc" else SandboxProvider(self)
        await in_thread(provider.release, self.remove_engine_on_stop)

    def get_env(self):
        env = super().get_env()
        env.update(self.extra_env)
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
