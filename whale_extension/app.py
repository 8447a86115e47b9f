"""The How to Whale server extension: engine health, credentials, published ports, and the
learner's lesson progress (from the hub's whale-progress service)."""
from __future__ import annotations

import ipaddress
import os

from jupyter_server.extension.application import ExtensionApp
from traitlets import Bool, Float, Integer, Unicode, default

from whale_core.errors import BundleError
from whale_core.store import CredentialStore
from whale_kernel import FORK_SETTING

from .api_handlers import CredentialsHandler, HealthHandler, PortsHandler, ReloadHandler
from .engine import EngineMonitor, engine_hostname
from .progress import ProgressClient, ProgressHandler
from .proxy import PortProxyHandler


class WhaleExtension(ExtensionApp):
    """Tells the learner whether their Docker engine works, lets them install new
    credentials, and opens the ports their containers publish."""

    name = "whale_extension"
    # Loaded as a server extension next to Notebook 7 / JupyterLab, never on its own.
    load_other_extensions = True

    credentials_dir = Unicode(
        help="Directory of the credentials store the Docker kernel reads (its live "
             "bundle is <dir>/current). Default: $WHALE_CREDENTIALS, else "
             "~/.whale/credentials. Must be the same store the kernels use, or uploads "
             "will not reach them.",
    ).tag(config=True)

    @default("credentials_dir")
    def _default_credentials_dir(self):
        return os.environ.get("WHALE_CREDENTIALS") or os.path.join("~", ".whale",
                                                                   "credentials")

    credentials_source = Unicode(
        help="Directory (Carina layout: ca.pem, cert.pem, key.pem, docker.env) where the "
             "spawner or an operator drops rotated credentials; POST "
             "whale/api/credentials/reload installs it. Default: "
             "$WHALE_CREDENTIALS_SOURCE; empty disables reload.",
    ).tag(config=True)

    @default("credentials_source")
    def _default_credentials_source(self):
        return os.environ.get("WHALE_CREDENTIALS_SOURCE", "")

    health_timeout = Float(
        2.0, help="Seconds to wait for the engine before health says 'down'. Also the "
                  "socket timeout of every health and ports request to the engine.",
    ).tag(config=True)

    health_cache_seconds = Float(
        3.0, help="Seconds a health answer is reused, so a polling UI costs the engine "
                  "nothing. Installing new credentials clears it.",
    ).tag(config=True)

    ports_cache_seconds = Float(
        2.0, help="Seconds the list of published ports is reused by the ports endpoint "
                  "and the proxy (a port that is missing is always re-checked).",
    ).tag(config=True)

    expiry_warning_days = Integer(
        7, help="Health turns 'degraded' when the client certificate expires within "
                "this many days.",
    ).tag(config=True)

    published_host = Unicode(
        help="Host name or IP where the engine's published ports are reachable from this "
             "server. Default: $WHALE_PUBLISHED_HOST, else the host in the bundle's "
             "DOCKER_HOST. Set it when the engine's API and its published ports are "
             "reached at different addresses (e.g. an engine container's own IP).",
    ).tag(config=True)

    @default("published_host")
    def _default_published_host(self):
        return os.environ.get("WHALE_PUBLISHED_HOST", "")

    proxy_connect_timeout = Float(
        5.0, help="Seconds to wait for a published port to accept a connection.",
    ).tag(config=True)

    proxy_request_timeout = Float(
        120.0, help="Seconds a proxied HTTP request to a published port may take.",
    ).tag(config=True)

    install_source_on_start = Bool(
        True, help="Install the bundle at credentials_source (if there is one) when the "
                   "server starts: the spawner mounts the learner's current credentials "
                   "there, and an engine that was re-created has new certificates.",
    ).tag(config=True)

    monitor: EngineMonitor
    progress: ProgressClient

    def initialize_settings(self):
        self.store = CredentialStore(self.credentials_dir)
        source = os.path.expanduser(self.credentials_source)
        if self.install_source_on_start and source and os.path.isdir(source):
            try:
                self.store.install_directory(source)
            except BundleError as exc:  # the kernel says so at its first cell too
                self.log.warning("whale: the credentials bundle at %s was refused: %s",
                                 source, exc)
        self.monitor = EngineMonitor(
            self.store, timeout=self.health_timeout, cache_seconds=self.health_cache_seconds,
            ports_cache_seconds=self.ports_cache_seconds,
            expiry_warning_days=self.expiry_warning_days, log=self.log)
        self.progress = ProgressClient()
        self.log.info("whale: credentials store %s, reload source %s", self.store.root,
                      self.credentials_source or "(none)")

    def initialize_handlers(self):
        self.handlers.extend([
            (r"/whale/api/health", HealthHandler),
            (r"/whale/api/credentials", CredentialsHandler),
            (r"/whale/api/credentials/reload", ReloadHandler),
            (r"/whale/api/ports", PortsHandler),
            (r"/whale/api/progress", ProgressHandler),
            (r"/whale/proxy/(\d{1,5})(/.*)?", PortProxyHandler),
        ])

    async def _start_jupyter_server_extension(self, serverapp):
        """The server has started: where docker kernels are forked from it (the
        single-user image), freeze its objects now, before any kernel's, so that each
        kernel shares them (whale_kernel.provisioner)."""
        await super()._start_jupyter_server_extension(serverapp)
        if os.environ.get(FORK_SETTING) == "1":
            from whale_kernel.provisioner import freeze_server
            freeze_server()

    def proxy_host(self) -> str:
        """Where published ports are reached: the configured host, else the engine's.

        Empty when unknown. An engine reached on a loopback address is a port mapping
        of an engine container: its containers' published ports are not on this
        machine's loopback, where other services (the hub, this server) are, so no
        default is guessed there.
        """
        if self.published_host:
            return self.published_host
        try:
            bundle = self.store.current()
        except Exception:
            return ""
        host = engine_hostname(bundle.docker_host) if bundle else ""
        return "" if _is_loopback(host) else host

    async def stop_extension(self):
        self.monitor.close()


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
