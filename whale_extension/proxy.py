"""``whale/proxy/<port>/...``: the learner's published ports, through the server.

A learner's browser usually cannot reach their engine's host directly (it sits on the
operator's network), but this server can. Only a port that the learner's engine
publishes right now, to the network, is forwarded, and only to the engine's host
(``WhaleExtension.published_host``, by default the host in ``DOCKER_HOST``): never
the hub, this server's own ports or any other host, whatever the request says.
HTTP and WebSocket traffic are both forwarded.
"""
from __future__ import annotations

import asyncio
from http.cookies import SimpleCookie
from urllib.parse import urlsplit

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.base.websocket import WebSocketMixin
from jupyter_server.extension.handler import ExtensionHandlerMixin
from jupyter_server.utils import url_path_join
from tornado import httpclient, web, websocket

from whale_core.errors import BundleError

from .api_handlers import AUTH_RESOURCE, NO_PROXY_HOST

# Hop-by-hop headers (RFC 9110 7.6.1) and those the proxy sets itself.
_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
        "trailer", "transfer-encoding", "upgrade", "content-length", "host"}
# Request headers that carry this server's credentials: the learner's app gets none.
_PRIVATE_REQUEST = {"authorization", "cookie", "x-xsrftoken", "x-csrftoken"}
_WS_HANDSHAKE = {"sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions",
                 "sec-websocket-accept", "sec-websocket-protocol"}


class PortProxyHandler(ExtensionHandlerMixin, WebSocketMixin, JupyterHandler,
                       websocket.WebSocketHandler):
    """Forwards HTTP and WebSocket requests to one published port of the engine."""

    SUPPORTED_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")

    auth_resource = AUTH_RESOURCE
    upstream: websocket.WebSocketClientConnection | None = None

    @property
    def monitor(self):
        return self.extensionapp.monitor

    def _is_upgrade(self) -> bool:
        return self.request.headers.get("Upgrade", "").lower() == "websocket"

    async def prepare(self, *args, **kwargs):
        if self._is_upgrade():
            await super().prepare(*args, **kwargs)  # WebSocketMixin: no login redirect
            if self.current_user is None:
                raise web.HTTPError(403, "Log in to open published ports.")
            return None
        # A page: a learner whose login expired is sent to the login page.
        return await JupyterHandler.prepare(self, *args, **kwargs)

    def check_xsrf_cookie(self):
        # The learner's own app cannot know Jupyter's _xsrf token, so its forms and
        # fetches would all be refused. Keep the cross-site protection that matters:
        # a request that changes something must come from this server's own pages.
        if self.request.method in ("GET", "HEAD", "OPTIONS"):
            return
        if not hasattr(self, "_jupyter_current_user"):
            return  # called too early; tornado checks again after prepare
        if self.token_authenticated:
            return
        origin = self.request.headers.get("Origin")
        if origin is not None:
            if not self.check_origin():
                raise web.HTTPError(403, "Blocked a cross-origin request to a published port.")
            return
        if not self.check_referer():
            raise web.HTTPError(403, "Blocked a request without Origin or Referer "
                                "to a published port.")
        return

    async def _target(self, port: str) -> str:
        """``host:port`` to forward to, or an HTTPError saying why not."""
        number = int(port)
        try:
            entry = await self.monitor.reachable_port(number)
        except asyncio.TimeoutError:
            raise web.HTTPError(503, "Your Docker engine did not answer in time.") from None
        except BundleError as exc:
            raise web.HTTPError(503, exc.message) from None
        if entry is None:
            raise web.HTTPError(403, f"Port {number} is not published by your Docker "
                                "engine, so it cannot be opened here. Publish it with "
                                f"`docker run -p {number}:<container port> ...`.")
        host = self.extensionapp.proxy_host()
        if not host:
            raise web.HTTPError(503, NO_PROXY_HOST)
        return f"[{host}]:{number}" if ":" in host else f"{host}:{number}"

    def _upstream_url(self, scheme: str, target: str, port: str) -> str:
        # The raw path, as the browser sent it: tornado's path arguments are decoded
        # (%2F would become a /, %20 a space).
        raw = self.request.path
        prefix = self._prefix(port)
        path = raw[len(prefix):] if raw.startswith(prefix) else "/"
        url = f"{scheme}://{target}/{path.lstrip('/')}"
        if self.request.query:
            url += "?" + self.request.query
        return url

    def _prefix(self, port: str) -> str:
        return url_path_join(self.base_url, "whale", "proxy", port)

    def _forward_headers(self, drop: set[str] = frozenset()) -> dict:
        headers = {}
        for name, value in self.request.headers.get_all():
            lower = name.lower()
            if lower in _HOP or lower in _PRIVATE_REQUEST or lower in drop:
                continue
            headers[name] = value
        cookies = _public_cookies(self.request.headers.get("Cookie", ""))
        if cookies:
            headers["Cookie"] = cookies
        headers["X-Forwarded-Proto"] = self.request.protocol
        headers["X-Forwarded-Host"] = self.request.host
        return headers

    # ------------------------------------------------------------------- HTTP

    @web.authenticated
    @authorized
    async def get(self, port: str, path: str | None = None):
        if self._is_upgrade():
            self._ws_port, self._ws_path = port, path
            self._ws_target = await self._target(port)
            await websocket.WebSocketHandler.get(self, port, path)
            return
        if path is None:  # /whale/proxy/8080 -> /whale/proxy/8080/ (relative links)
            query = f"?{self.request.query}" if self.request.query else ""
            self.redirect(self._prefix(port) + "/" + query)
            return
        await self._http(port, path)

    @web.authenticated
    @authorized
    async def post(self, port, path=None):
        await self._http(port, path)

    @web.authenticated
    @authorized
    async def put(self, port, path=None):
        await self._http(port, path)

    @web.authenticated
    @authorized
    async def patch(self, port, path=None):
        await self._http(port, path)

    @web.authenticated
    @authorized
    async def delete(self, port, path=None):
        await self._http(port, path)

    @web.authenticated
    @authorized
    async def head(self, port, path=None):
        await self._http(port, path)

    async def _http(self, port: str, path: str | None) -> None:
        target = await self._target(port)
        body = self.request.body if self.request.method in ("POST", "PUT", "PATCH") else None
        request = httpclient.HTTPRequest(
            self._upstream_url("http", target, port), method=self.request.method,
            headers=self._forward_headers(), body=body, follow_redirects=False,
            decompress_response=False, allow_nonstandard_methods=True,
            connect_timeout=self.extensionapp.proxy_connect_timeout,
            request_timeout=self.extensionapp.proxy_request_timeout)
        try:
            response = await httpclient.AsyncHTTPClient().fetch(request, raise_error=False)
        except Exception as exc:  # refused, reset, DNS...
            raise web.HTTPError(502, f"Port {port} is published, but nothing answered "
                                f"there ({exc}). Is the program in the container "
                                "listening?") from None
        if response.code == 599:
            raise web.HTTPError(502, f"Port {port} is published, but nothing answered "
                                f"there ({response.error}). Is the program in the "
                                "container listening?")
        self.set_status(response.code, response.reason)
        self._headers.clear()  # only the upstream's headers (and ours below)
        for name, value in response.headers.get_all():
            lower = name.lower()
            if lower in _HOP:
                continue
            if lower == "location":
                value = self._rewrite_location(value, target, port)
            if lower == "set-cookie":
                self.add_header(name, value)
            else:
                self.set_header(name, value)
        if response.body and self.request.method != "HEAD":
            self.write(response.body)
        self.finish()

    def _rewrite_location(self, location: str, target: str, port: str) -> str:
        parts = urlsplit(location)
        if parts.netloc and parts.netloc != target:
            return location  # elsewhere on the web: leave it alone
        rest = location[len(f"{parts.scheme}://{parts.netloc}"):] if parts.netloc else location
        if rest.startswith("/"):
            return self._prefix(port) + rest
        return location  # relative: already right below the prefix

    # -------------------------------------------------------------- WebSocket

    def select_subprotocol(self, subprotocols):
        return subprotocols[0] if subprotocols else None

    async def open(self, port: str, path: str | None = None):
        url = self._upstream_url("ws", self._ws_target, port)
        protocols = [p.strip() for p in
                     self.request.headers.get("Sec-WebSocket-Protocol", "").split(",")
                     if p.strip()]
        request = httpclient.HTTPRequest(
            url, headers=self._forward_headers(drop=_WS_HANDSHAKE | {"origin"}),
            connect_timeout=self.extensionapp.proxy_connect_timeout)
        try:
            self.upstream = await websocket.websocket_connect(
                request, on_message_callback=self._from_upstream,
                subprotocols=protocols or None)
        except Exception as exc:
            self.log.info("whale proxy: WebSocket to port %s failed: %s", port, exc)
            self.close(1011, "The published port did not accept the WebSocket.")
            return
        super().open(port, path)  # WebSocketMixin: keep-alive pings

    def _from_upstream(self, message):
        if message is None:  # upstream closed
            if self.ws_connection is not None:
                self.close()
            return
        try:
            self.write_message(message, binary=isinstance(message, bytes))
        except websocket.WebSocketClosedError:
            if self.upstream is not None:
                self.upstream.close()

    async def on_message(self, message):
        if self.upstream is not None:
            await self.upstream.write_message(message, binary=isinstance(message, bytes))

    def on_close(self):
        if self.upstream is not None:
            self.upstream.close()
            self.upstream = None


def _public_cookies(header: str) -> str:
    """The request's cookies minus this server's and the hub's own."""
    if not header:
        return ""
    jar = SimpleCookie()
    try:
        jar.load(header)
    except Exception:
        return ""
    keep = [f"{name}={morsel.coded_value}" for name, morsel in jar.items()
            if not (name.startswith(("username-", "jupyterhub-", "_xsrf"))
                    or name == "_xsrf")]
    return "; ".join(keep)
