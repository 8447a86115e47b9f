"""Published ports: listed by whale/api/ports, opened through whale/proxy/<port>/.

A busybox httpd runs on the real TLS test engine and publishes a port; the server
reaches it at the engine container's address on the operator's bridge (what
``WhaleExtension.published_host`` is for), never the browser.
"""
from __future__ import annotations

import asyncio
import json
import time

import pytest
from engine_fixtures import engine_client_for
from extension_fixtures import bundle_files, engine_ip, free_port, server_config, with_host
from tornado.httpclient import HTTPClientError

pytest_plugins = ["pytest_jupyter.jupyter_server"]

WEB_PORT = 18080
LOOPBACK_PORT = 18081
PAGE = "hello from a published port"
CGI = ["#!/bin/sh", "echo Content-Type: text/plain", "echo",
       'echo "method=$REQUEST_METHOD query=$QUERY_STRING cookie=$HTTP_COOKIE"', "env",
       'head -c "${CONTENT_LENGTH:-0}"']
HTTPD = " && ".join([
    "mkdir -p /www/sub /www/cgi-bin",
    f"echo '{PAGE}' > /www/index.html",
    "echo 'in a subdirectory' > /www/sub/file.txt",
    "mkdir -p '/www/sub dir' && echo 'spaces too' > '/www/sub dir/a b.txt'",
    "printf '%s\\n' " + " ".join(f"'{line}'" for line in CGI) + " > /www/cgi-bin/echo",
    "chmod +x /www/cgi-bin/echo",
    "exec httpd -f -p 80 -h /www",
])


@pytest.fixture(scope="module")
def web_containers(tls_engine):
    """A web server publishing WEB_PORT to the network, and one publishing
    LOOPBACK_PORT on the engine's loopback only (unreachable from elsewhere)."""
    client = engine_client_for(tls_engine)
    label = {"org.howtowhale.test.ports": "1"}
    public = client.containers.run("busybox", ["sh", "-c", HTTPD], detach=True,
                                   ports={"80/tcp": WEB_PORT}, labels=label,
                                   name="whale-ports-web")
    private = client.containers.run("busybox", ["sh", "-c", HTTPD], detach=True,
                                    ports={"80/tcp": ("127.0.0.1", LOOPBACK_PORT)},
                                    labels=label, name="whale-ports-private")
    yield public, private
    for c in (public, private):
        c.remove(force=True)
    client.close()


@pytest.fixture
def jp_server_config(store, host_docker, tls_engine):
    return server_config(store.root, published_host=engine_ip(host_docker, tls_engine))


async def wait_for_page(jp_fetch, port: int, timeout: float = 10):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await jp_fetch("whale", "proxy", f"{port}/")
        except HTTPClientError as exc:
            if exc.code != 502 or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)  # httpd not listening yet


async def test_ports_lists_published_ports_with_links(jp_fetch, web_containers,
                                                      jp_base_url, host_docker, tls_engine):
    response = await jp_fetch("whale", "api", "ports", params={"refresh": "1"})
    listing = json.loads(response.body)
    by_port = {p["port"]: p for p in listing["ports"]}

    assert listing["docker_host"] == tls_engine.docker_host
    assert listing["proxy_host"] == engine_ip(host_docker, tls_engine)
    web = by_port[WEB_PORT]
    assert web["target"] == 80
    assert web["reachable"] is True
    assert web["url"] == f"{jp_base_url}whale/proxy/{WEB_PORT}/"
    assert {"kind": "container", "name": "whale-ports-web", "image": "busybox",
            "id": web_containers[0].id[:12]} in web["published_by"]
    loopback = by_port[LOOPBACK_PORT]
    assert loopback["reachable"] is False
    assert loopback["url"] is None


async def test_proxy_serves_a_published_port(jp_fetch, web_containers):
    page = await wait_for_page(jp_fetch, WEB_PORT)
    assert page.code == 200
    assert page.body.decode().strip() == PAGE

    sub = await jp_fetch("whale", "proxy", str(WEB_PORT), "sub", "file.txt")
    assert sub.body.decode().strip() == "in a subdirectory"
    # Escapes reach the app as the browser sent them (not decoded on the way).
    spaced = await jp_fetch("whale", "proxy", str(WEB_PORT), "sub dir", "a b.txt")
    assert spaced.body.decode().strip() == "spaces too"


async def test_proxy_forwards_method_query_body_but_not_jupyter_secrets(
        jp_fetch, jp_serverapp, web_containers):
    await wait_for_page(jp_fetch, WEB_PORT)
    response = await jp_fetch("whale", "proxy", str(WEB_PORT), "cgi-bin", "echo",
                              method="POST", body=b"payload=42",
                              params={"q": "whale"},
                              headers={"Cookie": "app=mine; _xsrf=secret; "
                                                 "username-127-0-0-1-8888=secret",
                                       "Content-Type": "text/plain"})
    text = response.body.decode()
    assert "method=POST" in text, text
    assert "query=q=whale" in text, text
    assert "payload=42" in text
    assert "cookie=app=mine" in text
    assert "secret" not in text
    token = jp_serverapp.identity_provider.token
    assert token not in text, "the server's token leaked to the learner's app"


async def test_proxy_redirects_the_bare_port_to_a_directory(jp_fetch, jp_base_url,
                                                            web_containers):
    response = await jp_fetch("whale", "proxy", str(WEB_PORT), follow_redirects=False,
                              raise_error=False)
    assert response.code == 302
    assert response.headers["Location"] == f"{jp_base_url}whale/proxy/{WEB_PORT}/"


async def test_proxy_refuses_ports_the_engine_does_not_publish(jp_fetch, jp_http_port,
                                                               tls_engine, web_containers):
    for port in (tls_engine.port, 2376, jp_http_port, 22, LOOPBACK_PORT, 65535):
        with pytest.raises(HTTPClientError) as caught:
            await jp_fetch("whale", "proxy", f"{port}/")
        assert caught.value.code == 403, port
        assert b"not published" in caught.value.response.body


async def test_proxy_requires_authentication(jp_fetch, jp_base_url, web_containers):
    """A browser whose login expired is sent to the login page, not to the app."""
    response = await jp_fetch("whale", "proxy", f"{WEB_PORT}/",
                              headers={"Authorization": ""}, follow_redirects=False,
                              raise_error=False)
    assert response.code == 302
    assert response.headers["Location"].startswith(f"{jp_base_url}login?next=")
    assert PAGE.encode() not in response.body


async def test_proxy_websocket_requires_authentication(jp_ws_fetch, web_containers):
    with pytest.raises(HTTPClientError) as caught:
        await jp_ws_fetch("whale", "proxy", str(WEB_PORT), "ws",
                          headers={"Authorization": ""})
    assert caught.value.code == 403


async def test_proxy_refuses_a_cross_site_post(jp_fetch, jp_serverapp, web_containers):
    """Cookie-authenticated, from another site: refused (no CSRF into the learner's app)."""
    token = jp_serverapp.identity_provider.token
    login = await jp_fetch("api", "status", params={"token": token},
                           headers={"Authorization": ""})
    cookies = "; ".join(c.split(";")[0] for c in login.headers.get_list("Set-Cookie"))
    assert "username-" in cookies
    with pytest.raises(HTTPClientError) as caught:
        await jp_fetch("whale", "proxy", str(WEB_PORT), "cgi-bin", "echo", method="POST",
                       body=b"x", headers={"Authorization": "", "Cookie": cookies,
                                           "Origin": "http://evil.example"})
    assert caught.value.code == 403


async def test_ports_reports_an_unreachable_engine(jp_fetch, store, tls_engine):
    store.install_files(with_host(bundle_files(tls_engine.bundle_dir),
                                  f"tcp://127.0.0.1:{free_port()}"))
    with pytest.raises(HTTPClientError) as caught:
        await jp_fetch("whale", "api", "ports")
    assert caught.value.code == 503
    assert "connection refused" in json.loads(caught.value.response.body)["message"]


class TestWebSocket:
    """WebSocket traffic through the proxy.

    busybox has no WebSocket server, so the upstream is a small tornado echo server on
    this machine's loopback, and the proxy is told that the engine's ports are reached
    there (``published_host=127.0.0.1``). The engine side stays real: the port is only
    forwarded because a container on the real engine publishes that port number.
    """

    @pytest.fixture
    def echo_port(self, tls_engine):
        from tornado import web, websocket
        from tornado.httpserver import HTTPServer
        from tornado.netutil import bind_sockets

        class Echo(websocket.WebSocketHandler):
            def select_subprotocol(self, subprotocols):
                return subprotocols[0] if subprotocols else None

            def on_message(self, message):
                self.write_message(message, binary=isinstance(message, bytes))

        sockets = bind_sockets(0, "127.0.0.1")
        port = sockets[0].getsockname()[1]
        server = HTTPServer(web.Application([(r"/echo", Echo)]))
        server.add_sockets(sockets)
        client = engine_client_for(tls_engine)
        holder = client.containers.run("busybox", ["sleep", "600"], detach=True,
                                       ports={"80/tcp": port}, name=f"whale-ws-{port}",
                                       labels={"org.howtowhale.test.ports": "1"})
        yield port
        holder.remove(force=True)
        client.close()
        server.stop()

    @pytest.fixture
    def jp_server_config(self, store):
        return server_config(store.root, published_host="127.0.0.1")

    async def test_websocket_round_trip(self, jp_ws_fetch, echo_port):
        conn = await jp_ws_fetch("whale", "proxy", str(echo_port), "echo")
        try:
            await conn.write_message("hello whale")
            assert await asyncio.wait_for(conn.read_message(), 5) == "hello whale"
            await conn.write_message(b"\x00\x01binary", binary=True)
            assert await asyncio.wait_for(conn.read_message(), 5) == b"\x00\x01binary"
        finally:
            conn.close()

    async def test_websocket_to_an_unpublished_port_is_refused(self, jp_ws_fetch,
                                                               echo_port):
        with pytest.raises(HTTPClientError) as caught:
            await jp_ws_fetch("whale", "proxy", str(echo_port + 1 if echo_port < 65535
                                                    else echo_port - 1), "echo")
        assert caught.value.code == 403


class TestNoPublishedHost:
    """No published_host, and the engine reached on 127.0.0.1 (a port mapping): the
    proxy must not guess 127.0.0.1, where this server and the hub listen."""

    @pytest.fixture
    def jp_server_config(self, store):
        return server_config(store.root)

    async def test_nothing_is_forwarded_to_loopback(self, jp_fetch, jp_http_port,
                                                    web_containers, tls_engine):
        assert tls_engine.docker_host.startswith("tcp://127.0.0.1:")
        listing = json.loads((await jp_fetch("whale", "api", "ports")).body)
        assert listing["proxy_host"] is None
        assert "published_host" in listing["message"]
        assert {p["port"] for p in listing["ports"]} >= {WEB_PORT}
        assert all(p["url"] is None for p in listing["ports"])
        with pytest.raises(HTTPClientError) as caught:
            await jp_fetch("whale", "proxy", f"{WEB_PORT}/")
        assert caught.value.code == 503
        assert b"published_host" in caught.value.response.body
