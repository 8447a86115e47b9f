"""whale_extension over HTTP: health and credentials, against real TLS engines.

The server is jupyter_server's own test server (pytest-jupyter, with its odd default
base URL ``/a%40b/``); the engines are real nested dockerd containers that only speak
mutual TLS; the kernel is the real Docker kernel over ZMQ.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import re
import time
from pathlib import Path

import pytest
from bundle_corpus import CORPUS, Pki, carina_files, context_tar, unpadded, zip_bytes
from engine_fixtures import engine_env, engine_id, start_engine, start_kernel, stop_kernel
from extension_fixtures import (
    bundle_files,
    engine_ip,
    free_port,
    server_config,
    silent_listener,
    with_host,
)
from tornado.httpclient import HTTPClientError

import whale_extension
from whale_core.bundle import CredentialBundle
from whale_core.store import CredentialStore

pytest_plugins = ["pytest_jupyter.jupyter_server"]


@pytest.fixture
def jp_server_config(store):
    return server_config(store.root)


@pytest.fixture(scope="module")
def swarm_engine(engine_image, host_docker, tmp_path_factory):
    """A swarm-mode engine (a one-node Swarm, this engine its manager)."""
    engine = start_engine("swarm", tmp_path_factory, host_docker, swarm=True)
    yield engine
    engine.remove()


@pytest.fixture
def doomed_engine(engine_image, host_docker, tmp_path_factory):
    """An engine of this test's own, to be stopped."""
    engine = start_engine("doomed", tmp_path_factory, host_docker)
    yield engine
    engine.remove()


def _as_upload(kw: dict) -> dict:
    """Bodies are sent as a browser's fetch() sends a File: with a binary type."""
    if kw.get("method") == "POST":
        kw["headers"] = {"Content-Type": "application/octet-stream", **kw.get("headers", {})}
    return kw


async def get_json(jp_fetch, *parts, **kw):
    _as_upload(kw)
    response = await jp_fetch("whale", "api", *parts, **kw)
    return json.loads(response.body)


async def refused(jp_fetch, *parts, **kw):
    """The status and JSON body of a request that must fail."""
    _as_upload(kw)
    with pytest.raises(HTTPClientError) as caught:
        await jp_fetch("whale", "api", *parts, **kw)
    return caught.value.code, json.loads(caught.value.response.body)


def whale_app(serverapp):
    """The running WhaleExtension."""
    return next(iter(serverapp.extension_manager.extension_apps["whale_extension"]))


def engine_version(engine) -> dict:
    with CredentialBundle.load(engine.bundle_dir).client(timeout=10) as client:
        return client.version()


# ------------------------------------------------------------------------- health

async def test_health_ok_reports_engine_and_credentials(jp_fetch, store, tls_engine):
    health = await get_json(jp_fetch, "health", params={"refresh": "1"})
    truth = engine_version(tls_engine)
    bundle = store.current()

    assert health["status"] == "ok", health
    assert health["engine"]["reachable"] is True
    assert health["engine"]["version"] == truth["Version"]
    assert health["engine"]["api_version"] == truth["ApiVersion"]
    assert 0 < health["engine"]["latency_ms"] < 1000
    assert health["swarm"] == {"state": "inactive", "role": None, "node_id": None,
                               "nodes": None}
    creds = health["credentials"]
    assert creds["docker_host"] == tls_engine.docker_host == bundle.docker_host
    assert creds["ca_fingerprint"] == bundle.ca_fingerprint
    assert creds["cert_fingerprint"] == bundle.cert_fingerprint
    assert creds["days_left"] == bundle.days_left > 300
    assert truth["Version"] in health["reason"]
    assert tls_engine.docker_host in health["reason"]
    assert "BEGIN" not in json.dumps(health)
    print(f"\nhealth: fresh probe {health['probe_ms']} ms, engine round trip "
          f"{health['engine']['latency_ms']} ms")


async def test_health_on_a_swarm_manager_lists_the_nodes(jp_fetch, store, swarm_engine):
    store.install_directory(swarm_engine.bundle_dir)
    health = await get_json(jp_fetch, "health")
    with CredentialBundle.load(swarm_engine.bundle_dir).client(timeout=10) as client:
        info = client.info()
        nodes = client.api.nodes()

    assert health["status"] == "ok", health
    assert health["credentials"]["docker_host"] == swarm_engine.docker_host
    swarm = health["swarm"]
    assert swarm["state"] == "active"
    assert swarm["role"] == "manager"
    assert swarm["node_id"] == info["Swarm"]["NodeID"]
    assert "swarm manager" in health["reason"]
    assert [(n["id"], n["hostname"], n["role"], n["status"], n["availability"], n["leader"])
            for n in swarm["nodes"]] == [
        (n["ID"], n["Description"]["Hostname"], "manager", "ready", "active", True)
        for n in nodes]


async def test_ports_lists_swarm_services(jp_fetch, jp_serverapp, store, swarm_engine,
                                          jp_base_url, host_docker):
    """On a Swarm manager, services' published ports are listed too."""
    from docker.types import EndpointSpec

    from whale_site import images
    whale_app(jp_serverapp).published_host = engine_ip(host_docker, swarm_engine)
    images.build_lesson_images(engine_env(swarm_engine), names=["busybox"])
    store.install_directory(swarm_engine.bundle_dir)
    with CredentialBundle.load(swarm_engine.bundle_dir).client(timeout=10) as client:
        service = client.services.create(
            "busybox", ["sh", "-c", "mkdir -p /www && echo hi > /www/index.html && "
                                    "exec httpd -f -p 80 -h /www"],
            name="whale-svc-web", endpoint_spec=EndpointSpec(ports={18090: 80}))
        try:
            listing = await get_json(jp_fetch, "ports", params={"refresh": "1"})
        finally:
            service.remove()
    (entry,) = [p for p in listing["ports"] if p["port"] == 18090]
    assert entry["target"] == 80
    assert entry["reachable"] is True
    assert entry["url"] == f"{jp_base_url}whale/proxy/18090/"
    assert entry["published_by"] == [{"kind": "service", "name": "whale-svc-web",
                                      "id": service.id[:12], "image": "busybox"}]


async def test_health_is_cached_and_polling_is_not_activity(jp_fetch, jp_serverapp):
    settings = jp_serverapp.web_app.settings
    begun = dt.datetime.now(dt.timezone.utc)
    first = await get_json(jp_fetch, "health", params={"refresh": "1"})
    assert first["status"] == "ok"
    assert first["cached"] is False

    long_ago = dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)
    settings["api_last_activity"] = long_ago
    started = time.perf_counter()
    polls = [await get_json(jp_fetch, "health") for _ in range(20)]
    per_poll = (time.perf_counter() - started) / 20

    assert all(p["cached"] for p in polls), "a polling UI must not reach the engine"
    assert {p["checked_at"] for p in polls} == {first["checked_at"]}
    assert per_poll < 0.05, per_poll
    print(f"\nhealth: cached answer {per_poll * 1000:.1f} ms per request (over HTTP)")
    assert settings["api_last_activity"] == long_ago, "polling health counted as activity"
    status = json.loads((await jp_fetch("api", "status")).body)
    # What JupyterHub's activity tracking reads: nothing has happened since startup.
    last = dt.datetime.fromisoformat(status["last_activity"].replace("Z", "+00:00"))
    assert last < begun, status
    # Control: an ordinary API call does count, so the check above is meaningful.
    await get_json(jp_fetch, "credentials")
    assert settings["api_last_activity"] > long_ago


async def test_health_requires_authentication(jp_fetch):
    for path in ("health", "credentials", "ports"):
        with pytest.raises(HTTPClientError) as caught:
            await jp_fetch("whale", "api", path, headers={"Authorization": ""})
        assert caught.value.code == 403, path
    with pytest.raises(HTTPClientError) as caught:
        await jp_fetch("whale", "api", "credentials", method="POST", body=b"x",
                       headers={"Authorization": ""})
    assert caught.value.code == 403


async def test_health_down_within_seconds_when_engine_stops(jp_fetch, jp_serverapp, store,
                                                            doomed_engine):
    store.install_directory(doomed_engine.bundle_dir)
    assert (await get_json(jp_fetch, "health"))["status"] == "ok"

    await asyncio.to_thread(doomed_engine.stop, 1)
    stopped = time.monotonic()
    while True:
        health = await get_json(jp_fetch, "health")
        if health["status"] != "ok" or time.monotonic() - stopped > 10:
            break
        await asyncio.sleep(0.2)
    detected = time.monotonic() - stopped
    app = whale_app(jp_serverapp)

    assert health["status"] == "down", health
    assert health["engine"] == {"reachable": False}
    assert doomed_engine.docker_host in health["reason"]
    assert "refused" in health["reason"] or "closed" in health["reason"]
    # At worst: a cached "ok" that is just about to expire, then one probe.
    assert detected < app.health_cache_seconds + app.health_timeout + 0.5, detected
    print(f"\nhealth: engine stop detected after {detected:.2f} s")


async def test_health_down_for_an_engine_that_hangs(jp_fetch, store, tls_engine):
    with silent_listener() as port:
        store.install_files(with_host(bundle_files(tls_engine.bundle_dir),
                                      f"tcp://127.0.0.1:{port}"))
        started = time.monotonic()
        probe = asyncio.ensure_future(get_json(jp_fetch, "health"))
        await asyncio.sleep(0.3)
        # The server keeps answering while the probe waits for the engine.
        t0 = time.monotonic()
        await jp_fetch("api", "status")
        other = time.monotonic() - t0
        health = await probe
        took = time.monotonic() - started

    assert other < 0.5, f"the event loop was blocked for {other:.2f} s"
    assert health["status"] == "down", health
    assert health["code"] == "timeout", health
    assert f"127.0.0.1:{port}" in health["reason"]
    assert "did not answer" in health["reason"]
    assert 1.5 < took < 3.0, took
    print(f"\nhealth: hung engine reported down after {took:.2f} s")


async def test_health_without_credentials(jp_fetch, store):
    os.unlink(store.current_path)
    health = await get_json(jp_fetch, "health")
    assert health["status"] == "down"
    assert health["code"] == "no-credentials"
    assert "Upload your bundle" in health["reason"]


async def test_health_degraded_when_certificate_expires_soon(jp_fetch, jp_serverapp, store):
    whale_app(jp_serverapp).monitor.expiry_warning_days = 400  # the test certificates last 365
    health = await get_json(jp_fetch, "health", params={"refresh": "1"})
    assert health["status"] == "degraded", health
    assert health["engine"]["reachable"] is True
    assert "expires in" in health["reason"]
    assert "fresh credentials" in health["reason"]


# ----------------------------------------------------------------- credentials

@pytest.fixture
def docker_kernelspec(jp_environ):
    """The docker kernelspec, in the throwaway Jupyter paths pytest-jupyter sets up."""
    from whale_kernel.install import install
    install(user=True)


async def test_upload_switches_a_running_kernel_to_another_engine(
        jp_fetch, store, tls_engine, second_engine, docker_kernelspec):
    kernel = start_kernel(store)
    try:
        before = kernel.run("docker info --format '{{.ID}}'")
        assert before.text.strip() == engine_id(tls_engine)

        answer = await get_json(jp_fetch, "credentials", method="POST",
                                body=zip_bytes(bundle_files(second_engine.bundle_dir)))
        after = kernel.run("docker info --format '{{.ID}}'")
    finally:
        stop_kernel(kernel)

    assert answer["status"] == "installed"
    assert answer["credentials"]["docker_host"] == second_engine.docker_host
    assert answer["health"]["status"] == "ok"
    assert answer["health"]["credentials"]["docker_host"] == second_engine.docker_host
    assert store.current().docker_host == second_engine.docker_host
    assert after.status == "ok"
    assert after.text.strip() == engine_id(second_engine)


@pytest.mark.parametrize("cli_form", [False, True], ids=["padded", "as the docker CLI writes it"])
async def test_upload_of_a_docker_context_export(jp_fetch, store, second_engine, cli_form):
    """The `docker context export` form, sent as a multipart form file as a browser
    would; also without the tar padding, as the Docker CLI writes it."""
    files = bundle_files(second_engine.bundle_dir)
    import io
    import tarfile
    meta = {"Name": "mine", "Metadata": {}, "Endpoints": {"docker": {
        "Host": second_engine.docker_host, "SkipTLSVerify": False}}}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, content in [("meta.json", json.dumps(meta).encode()),
                              ("tls/docker/ca.pem", files["ca.pem"]),
                              ("tls/docker/cert.pem", files["cert.pem"]),
                              ("tls/docker/key.pem", files["key.pem"])]:
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    boundary = "whaleboundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"bundle\"; "
            f"filename=\"mine.dockercontext\"\r\nContent-Type: application/x-tar\r\n\r\n"
            ).encode() + (unpadded(buffer.getvalue()) if cli_form else buffer.getvalue()) + \
        f"\r\n--{boundary}--\r\n".encode()
    answer = await get_json(jp_fetch, "credentials", method="POST", body=body, headers={
        "Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert answer["status"] == "installed"
    assert store.current().docker_host == second_engine.docker_host


@pytest.fixture(scope="module")
def pki():
    return Pki.make()


def assert_old_bundle_kept(store: CredentialStore, generation: str, engine) -> None:
    assert store.generation() == generation
    assert sorted(os.listdir(store.generations_path)) == [generation]
    bundle = store.current()
    assert bundle.docker_host == engine.docker_host
    assert bundle.ping(timeout=5)["Version"]


@pytest.mark.parametrize(("name", "build", "code", "words"), CORPUS, ids=[c[0] for c in CORPUS])
async def test_bad_upload_is_refused_and_old_bundle_works(jp_fetch, store, tls_engine, pki,
                                                          name, build, code, words):
    generation = store.generation()
    upload = build(pki)
    if isinstance(upload, dict):
        upload = zip_bytes(upload)

    status, body = await refused(jp_fetch, "credentials", method="POST", body=upload)

    assert status == (413 if code == "too-large" else 400), body
    assert body["status"] == "refused"
    assert body["code"] == code
    for word in words:
        assert word in body["message"], (word, body["message"])
    assert body["current"]["docker_host"] == tls_engine.docker_host
    assert "BEGIN" not in json.dumps(body)
    assert_old_bundle_kept(store, generation, tls_engine)


async def test_valid_bundle_for_an_engine_that_is_down(jp_fetch, store, tls_engine, pki):
    generation = store.generation()
    port = free_port()  # nothing listens there
    files = carina_files(pki.ca, pki.client,
                         env=f"DOCKER_HOST=tcp://127.0.0.1:{port}\nDOCKER_TLS_VERIFY=1\n")

    status, body = await refused(jp_fetch, "credentials", method="POST",
                                 body=zip_bytes(files))

    assert status == 422, body
    assert body["code"] == "unreachable", body
    assert f"127.0.0.1:{port}" in body["message"]
    assert "connection refused" in body["message"]
    assert_old_bundle_kept(store, generation, tls_engine)


async def test_valid_bundle_with_the_wrong_ca_for_this_engine(jp_fetch, store, tls_engine,
                                                              second_engine):
    """second_engine's certificates, pointed at tls_engine: each side's CA refuses the
    other's certificate."""
    generation = store.generation()
    files = with_host(bundle_files(second_engine.bundle_dir), tls_engine.docker_host)

    status, body = await refused(jp_fetch, "credentials", method="POST",
                                 body=zip_bytes(files))

    assert status == 422, body
    assert body["code"] == "unreachable", body
    assert tls_engine.docker_host in body["message"]
    assert "not signed by the CA in ca.pem" in body["message"], body["message"]
    assert_old_bundle_kept(store, generation, tls_engine)


async def test_messages_differ_for_each_failure(jp_fetch, store, tls_engine, second_engine,
                                                pki):
    """Down engine, wrong CA and a malformed archive are told apart."""
    down = carina_files(pki.ca, pki.client, env=f"DOCKER_HOST=tcp://127.0.0.1:{free_port()}"
                                                "\nDOCKER_TLS_VERIFY=1\n")
    wrong = with_host(bundle_files(second_engine.bundle_dir), tls_engine.docker_host)
    messages = set()
    for upload in (zip_bytes(down), zip_bytes(wrong), b"not an archive",
                   context_tar(pki, skip_tls_verify=True)):
        _, body = await refused(jp_fetch, "credentials", method="POST", body=upload)
        messages.add(body["message"].split(":")[-1])
    assert len(messages) == 4, messages


# ----------------------------------------------------------------------- reload

@pytest.fixture
def source_dir(tmp_path):
    return tmp_path / "dropbox"


class TestInstallOnStart:
    """The spawner mounts the learner's current bundle at credentials_source; the server
    installs it as it starts (a re-created engine has new certificates)."""

    @pytest.fixture
    def jp_server_config(self, store, source_dir, second_engine):
        source_dir.mkdir()
        for name, content in bundle_files(second_engine.bundle_dir).items():
            (source_dir / name).write_bytes(content)
        return server_config(store.root, credentials_source=str(source_dir))

    async def test_the_mounted_bundle_is_installed_at_start(self, jp_fetch, store, second_engine):
        health = await get_json(jp_fetch, "health")
        assert store.current().docker_host == second_engine.docker_host
        assert health["credentials"]["docker_host"] == second_engine.docker_host
        assert health["status"] == "ok"


class TestBadBundleOnStart:
    @pytest.fixture
    def jp_server_config(self, store, source_dir, second_engine):
        source_dir.mkdir()
        files = bundle_files(second_engine.bundle_dir)
        files["cert.pem"] = b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"
        for name, content in files.items():
            (source_dir / name).write_bytes(content)
        self.generation = store.generation()
        return server_config(store.root, credentials_source=str(source_dir))

    async def test_a_bad_mounted_bundle_leaves_the_old_one(self, jp_fetch, store, tls_engine):
        """The server still starts, and the bundle that was installed keeps working."""
        health = await get_json(jp_fetch, "health")
        assert store.generation() == self.generation
        assert health["credentials"]["docker_host"] == tls_engine.docker_host
        assert health["status"] == "ok"


class TestReload:
    @pytest.fixture
    def jp_server_config(self, store, source_dir):
        return server_config(store.root, credentials_source=str(source_dir))

    async def test_reload_picks_up_rotated_credentials(self, jp_fetch, store, source_dir,
                                                       tls_engine, second_engine):
        """The engine was rebuilt with new certificates; the operator drops them where
        the server was told to look."""
        old = store.current()
        source_dir.mkdir()
        for name, content in bundle_files(second_engine.bundle_dir).items():
            (source_dir / name).write_bytes(content)

        answer = await get_json(jp_fetch, "credentials", "reload", method="POST", body=b"")
        health = await get_json(jp_fetch, "health")

        assert answer["status"] == "installed"
        new = store.current()
        assert new.cert_fingerprint != old.cert_fingerprint
        assert new.cert_fingerprint == answer["credentials"]["cert_fingerprint"]
        assert new.docker_host == second_engine.docker_host
        assert health["status"] == "ok"
        assert health["cached"] is True
        assert health["credentials"]["docker_host"] == second_engine.docker_host

    async def test_bad_reload_keeps_the_old_bundle(self, jp_fetch, store, source_dir,
                                                   tls_engine, second_engine):
        generation = store.generation()
        source_dir.mkdir()
        files = bundle_files(second_engine.bundle_dir)
        del files["key.pem"]
        for name, content in files.items():
            (source_dir / name).write_bytes(content)

        status, body = await refused(jp_fetch, "credentials", "reload", method="POST",
                                     body=b"")

        assert status == 400
        assert body["code"] == "missing-file"
        assert "key.pem" in body["message"]
        assert_old_bundle_kept(store, generation, tls_engine)


async def test_reload_without_a_source_is_a_conflict(jp_fetch):
    status, body = await refused(jp_fetch, "credentials", "reload", method="POST", body=b"")
    assert status == 409
    assert body["code"] == "no-source"


async def test_post_without_xsrf_from_a_browser_session_is_refused(jp_fetch, jp_serverapp):
    """Cookie-authenticated POSTs need the _xsrf token, as every Jupyter API."""
    token = jp_serverapp.identity_provider.token
    login = await jp_fetch("login", params={"token": token}, follow_redirects=False,
                           raise_error=False, headers={"Authorization": ""})
    cookies = "; ".join(c.split(";")[0] for c in login.headers.get_list("Set-Cookie"))
    assert "username-" in cookies
    with pytest.raises(HTTPClientError) as caught:
        await jp_fetch("whale", "api", "credentials", "reload", method="POST", body=b"",
                       headers={"Authorization": "", "Cookie": cookies})
    assert caught.value.code == 403
    # The same cookie is enough to read.
    response = await jp_fetch("whale", "api", "health",
                              headers={"Authorization": "", "Cookie": cookies})
    assert response.code == 200


# ----------------------------------------------------------------- packaging

def test_shipped_config_enables_the_extension():
    """The file setup.py ships into etc/jupyter/jupyter_server_config.d/ is the one the
    install helper writes, and names a loadable extension point."""
    import whale_extension
    from whale_extension.install import CONFIG_FILE, SERVER_CONFIG

    here = os.path.join(os.path.dirname(__file__), "..", "jupyter-config",
                        "jupyter_server_config.d", CONFIG_FILE)
    with open(here) as f:
        assert json.load(f) == SERVER_CONFIG
    (point,) = whale_extension._jupyter_server_extension_points()
    assert point["app"].name == "whale_extension"
    assert whale_extension._jupyter_labextension_paths() == [
        {"src": "labextension", "dest": "@howtowhale/whale-indicator"}]


async def test_concurrent_polls_share_one_probe(jp_fetch, jp_serverapp):
    monitor = whale_app(jp_serverapp).monitor
    monitor.cache_seconds = 0  # every request wants a fresh answer
    probes = 0
    probe = monitor._probe_health

    async def counted():
        nonlocal probes
        probes += 1
        await asyncio.sleep(0.3)  # a slow engine: the other requests arrive meanwhile
        return await probe()

    monitor._probe_health = counted
    answers = await asyncio.gather(*[get_json(jp_fetch, "health") for _ in range(10)])
    assert all(a["status"] == "ok" for a in answers)
    assert probes == 1
    assert len({a["checked_at"] for a in answers}) == 1


def test_every_route_the_extension_serves_is_in_its_openapi_description(jp_serverapp):
    """whale_extension/rest-api.yml describes each route the extension serves, with
    exactly the methods its handler answers."""
    import yaml

    spec = yaml.safe_load((Path(whale_extension.__file__).parent / "rest-api.yml").read_text())
    assert spec["openapi"].startswith("3.")
    described = {path: {m.upper() for m in item if m in
                        ("get", "head", "post", "put", "patch", "delete", "options")}
                 for path, item in spec["paths"].items()}
    served = {}
    for pattern, handler, *_ in whale_app(jp_serverapp).handlers:
        path = re.sub(r"\(\\d\{1,5\}\)\(/\.\*\)\?", "{port}/{path}", pattern)
        served[path] = set(handler.SUPPORTED_METHODS)
    assert served == described
    for path, item in spec["paths"].items():
        for method in described[path]:
            assert item[method.lower()]["responses"], (path, method)
