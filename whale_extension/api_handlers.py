"""JSON API of the extension (described as OpenAPI in rest-api.yml beside this file).

Every handler is authenticated and authorized on the ``whale`` resource, answers
JSON and keeps jupyter_server's XSRF rules (POSTs from a browser need the _xsrf token,
as every other Jupyter API).
"""
from __future__ import annotations

import asyncio
import functools
import json

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin
from jupyter_server.utils import url_path_join
from tornado import web

from whale_core.errors import BundleError
from whale_core.ssh import SSH_FILES

from .engine import credentials_info

AUTH_RESOURCE = "whale"

NO_PROXY_HOST = ("This server does not know where your engine's published ports can be "
                 "reached (the engine is reached through a port on this machine's "
                 "loopback). An operator sets WhaleExtension.published_host or "
                 "$WHALE_PUBLISHED_HOST to the engine's address.")

# BundleError codes of a well-formed bundle that failed its live test: 422, not 400.
_UNUSABLE = {"unreachable", "verify-failed"}


class WhaleAPIHandler(ExtensionHandlerMixin, APIHandler):
    """Base of the extension's API handlers."""

    auth_resource = AUTH_RESOURCE

    @property
    def monitor(self):
        return self.extensionapp.monitor

    def write_json(self, value: dict, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(value))


class HealthHandler(WhaleAPIHandler):
    """``GET whale/api/health``: is the learner's engine usable, and why not."""

    SUPPORTED_METHODS = ("GET",)

    # The status indicator polls this: it must not keep an idle server alive
    # (JupyterHub's idle culler reads the server's last activity).
    _track_activity = False

    @web.authenticated
    @authorized
    async def get(self):
        refresh = self.get_argument("refresh", "0") not in ("0", "", "false")
        self.write_json(await self.monitor.health(refresh=refresh))


class CredentialsHandler(WhaleAPIHandler):
    """``GET whale/api/credentials``: the bundle in use; ``POST``: upload a new one."""

    SUPPORTED_METHODS = ("GET", "POST")

    @web.authenticated
    @authorized
    async def get(self):
        self.write_json(self.current_credentials())

    @web.authenticated
    @authorized
    async def post(self):
        # An SSH endpoint's key and known_hosts come as form fields of those names.
        extra = {name: self.request.files.pop(name)[0]["body"]
                 for name in SSH_FILES if self.request.files.get(name)}
        data = self.uploaded_archive()
        if data is None:
            return
        install = functools.partial(self.monitor.store.install_archive, extra=extra)
        await self.install(install, data)

    def uploaded_archive(self) -> bytes | None:
        """The archive in the body: raw bytes, or the one file of a multipart form."""
        files = [f for group in self.request.files.values() for f in group]
        if len(files) > 1:
            self.refuse(400, "several-files", "Upload one credentials bundle at a time.")
            return None
        # Emptiness, size and format are judged by the bundle module, like any upload.
        return files[0]["body"] if files else self.request.body

    async def install(self, install, *args) -> None:
        try:
            bundle = await self.monitor.install(install, *args)
        except BundleError as exc:
            status = 413 if exc.code == "too-large" else 422 if exc.code in _UNUSABLE else 400
            self.log.info("whale: credentials refused (%s)", exc.code)
            self.refuse(status, exc.code, exc.message, file=exc.file)
            return
        self.log.info("whale: new credentials installed for %s", bundle.docker_host)
        self.write_json({
            "status": "installed",
            "message": f"New credentials for {bundle.docker_host} are installed; running "
                       "Docker kernels use them from their next cell.",
            "credentials": credentials_info(bundle, self.monitor.store.generation()),
            "health": await self.monitor.health(refresh=True),
        })

    def refuse(self, status: int, code: str, message: str, file: str | None = None):
        body = {"status": "refused", "code": code, "message": message,
                "current": self.current_credentials().get("credentials")}
        if file:
            body["file"] = file
        self.write_json(body, status)

    def current_credentials(self) -> dict:
        store = self.monitor.store
        try:
            bundle = store.current()
        except BundleError as exc:
            return {"installed": False, "credentials": None, "message": exc.message}
        if bundle is None:
            return {"installed": False, "credentials": None,
                    "message": "No credentials bundle is installed."}
        return {"installed": True, "credentials": credentials_info(bundle, store.generation()),
                "source": self.extensionapp.credentials_source or None}


class ReloadHandler(CredentialsHandler):
    """``POST whale/api/credentials/reload``: install the bundle found on disk at the
    configured source (where the spawner or an operator drops rotated credentials)."""

    SUPPORTED_METHODS = ("POST",)  # a GET is 405

    @web.authenticated
    @authorized
    async def post(self):
        source = self.extensionapp.credentials_source
        if not source:
            self.refuse(409, "no-source", "This server has no credentials source to "
                        "reload from (WhaleExtension.credentials_source is not set). "
                        "Upload a bundle instead.")
            return
        await self.install(self.monitor.store.install_directory, source)


class PortsHandler(WhaleAPIHandler):
    """``GET whale/api/ports``: published ports, each with a link through the server."""

    SUPPORTED_METHODS = ("GET",)

    @web.authenticated
    @authorized
    async def get(self):
        try:
            listing = await self.monitor.published_ports(
                refresh=self.get_argument("refresh", "0") not in ("0", "", "false"))
        except asyncio.TimeoutError:
            self.write_json({"code": "timeout", "ports": [], "message":
                             f"The Docker engine did not answer within "
                             f"{self.monitor.timeout:g} seconds."}, 503)
            return
        except BundleError as exc:
            self.write_json({"code": exc.code, "ports": [], "message": exc.message}, 503)
            return
        except Exception as exc:  # an error answer from the engine
            self.write_json({"code": "engine-error", "ports": [],
                             "message": f"The Docker engine answered with an error: "
                                        f"{str(exc)[:200]}"}, 502)
            return
        proxy_host = self.extensionapp.proxy_host()
        ports = []
        for entry in listing["ports"]:
            entry = dict(entry)
            entry["url"] = (url_path_join(self.base_url, "whale", "proxy", str(entry["port"]))
                            + "/") if entry["reachable"] and proxy_host else None
            ports.append(entry)
        answer = {"docker_host": listing["docker_host"], "proxy_host": proxy_host or None,
                  "ports": ports}
        if not proxy_host:
            answer["message"] = NO_PROXY_HOST
        self.write_json(answer)
