"""WhaleSpawner against JupyterHub's contracts, on JupyterHub's own MockHub: the spawn
form, options_from_form without side effects, the auth_state hook, progress() following
the start future, and providers chosen by name (a trivial one in tests/static_provider.py).

No Docker engine is needed here; test_hub.py drives the spawner through a real hub.
"""
from __future__ import annotations

import asyncio
import base64
import os
import secrets
import sys
import time
from pathlib import Path

import pytest
from bundle_corpus import Pki, carina_files, zip_bytes
from jupyterhub.crypto import CryptKeeper, decrypt
from jupyterhub.tests.mocking import MockHub
from jupyterhub.tests.utils import add_user
from tornado import web
from traitlets.config import Config

from whale_core.archives import MAX_ARCHIVE_BYTES
from whale_core.errors import BundleError
from whale_hub.providers import ByocProvider, EngineProvider, SandboxProvider, provider_class
from whale_hub.spawner import AUTH_STATE_KEY

sys.path.insert(0, str(Path(__file__).resolve().parent))
from static_provider import StaticProvider


class Hub:
    """A MockHub (initialised, not serving) and an event loop to drive it."""

    def __init__(self, state: Path, **spawner_config):
        self.loop = asyncio.new_event_loop()
        c = Config()
        c.JupyterHub.spawner_class = "whale"
        c.WhaleSpawner.state_dir = str(state)
        # Nothing of the hub's in the working directory.
        c.JupyterHub.cookie_secret_file = str(state.parent / f"{state.name}-cookie_secret")
        for key, value in spawner_config.items():
            setattr(c.WhaleSpawner, key, value)
        self.app = MockHub(config=c)
        self.run(self.app.initialize([]))

    def run(self, coro):
        return self.loop.run_until_complete(coro)

    def spawner(self, name: str = "ada"):
        return self.app.users[add_user(self.app.db, self.app, name=name)].spawner

    def close(self):
        self.app.db.close()
        self.app.db_file.close()  # MockHub's temporary database and pid files
        Path(self.app.pid_file).unlink(missing_ok=True)
        self.loop.close()


@pytest.fixture
def crypt_key(monkeypatch):
    monkeypatch.setenv("JUPYTERHUB_CRYPT_KEY", secrets.token_hex(32))
    CryptKeeper.clear_instance()
    yield
    CryptKeeper.clear_instance()


@pytest.fixture
def make_hub(tmp_path, crypt_key):
    hubs = []

    def make(**config) -> Hub:
        hubs.append(Hub(tmp_path / f"state{len(hubs)}", **config))
        return hubs[-1]

    yield make
    for hub in hubs:
        hub.close()


@pytest.fixture(scope="module")
def archive() -> bytes:
    pki = Pki.make()
    return zip_bytes(carina_files(pki.ca, pki.client))


def form(engine: str, body: bytes | None = None) -> dict:
    data = {"engine": [engine]}
    if body is not None:
        data["bundle_file"] = [{"body": body, "filename": "bundle.zip"}]
    return data


def test_the_form_offers_what_the_site_offers(make_hub):
    choice = make_hub(provider="choice").spawner().options_form
    assert 'value="sandbox" checked' in choice
    assert 'value="byoc"' in choice
    assert 'type="file"' in choice
    assert "A fresh Docker engine hosted for me" in choice
    assert make_hub(provider="sandbox").spawner().options_form == ""
    byoc = make_hub(provider="byoc").spawner().options_form
    assert '<input type="hidden" name="engine" value="byoc">' in byoc
    assert 'type="file"' in byoc
    # A provider's words are escaped into the page, never taken as HTML.
    class Loud(StaticProvider):
        name, description = "loud", "<script>alert(1)</script>"
    page = make_hub(provider="choice", provider_choices=["sandbox", "loud"],
                    provider_classes={"loud": Loud}).spawner().options_form
    assert "<script>" not in page
    assert "&lt;script&gt;" in page
    assert 'type="file"' not in page


def test_the_form_offers_1_3_and_5_nodes_up_to_the_sites_maximum(make_hub):
    page = make_hub(provider="sandbox", engine_max_nodes=3).spawner().options_form
    assert '<input type="radio" name="nodes" value="1" checked>' in page
    assert '<input type="radio" name="nodes" value="3">' in page
    assert 'value="5"' not in page
    page = make_hub(provider="choice", engine_nodes=3, engine_max_nodes=5).spawner().options_form
    assert [n for n in (1, 3, 5) if f'name="nodes" value="{n}"' in page] == [1, 3, 5]
    assert '<input type="radio" name="nodes" value="3" checked>' in page
    # A site without a choice (the library's default) shows none.
    assert make_hub(provider="sandbox", engine_nodes=3).spawner().options_form == ""


def test_a_learner_gets_the_nodes_they_chose_if_the_site_offers_them(make_hub):
    hub = make_hub(provider="sandbox", engine_max_nodes=3)
    spawner = hub.spawner()
    assert hub.run(spawner.run_options_from_form({"engine": ["sandbox"], "nodes": ["3"]})) == \
        {"engine": "sandbox", "nodes": 3}
    for bad in ("5", "0", "three", "-1"):
        with pytest.raises(web.HTTPError) as refused:
            hub.run(spawner.run_options_from_form({"engine": ["sandbox"], "nodes": [bad]}))
        assert refused.value.status_code == 400
        assert f"This site offers engines of 1, 3 nodes, not {bad!r}." in refused.value.log_message
    spawner.user_options = {"engine": "sandbox", "nodes": 3}
    assert spawner.engine_node_count() == 3
    assert SandboxProvider(spawner).preparing == "Creating your Swarm of 3 Docker engines"
    # A site of one-engine learners says so, in words.
    single = make_hub(provider="sandbox", engine_max_nodes=1).spawner()
    single.user_options = {"engine": "sandbox", "nodes": 3}
    with pytest.raises(BundleError, match=r"^This site offers engines of 1 node only, not 3\.$"):
        single.engine_node_count()
    spawner.user_options = {}
    assert spawner.engine_node_count() == 1
    # Through the REST API, user_options arrive as they were sent: checked at the start.
    spawner.user_options = {"engine": "sandbox", "nodes": 5}
    with pytest.raises(BundleError, match=r"offers engines of 1, 3 nodes, not 5\."):
        spawner.engine_node_count()
    with pytest.raises(BundleError, match="not 5"):
        SandboxProvider(spawner).prepare()
    assert spawner.get_env()["WHALE_MAX_NODES"] == "3"


def test_options_from_form_has_no_side_effects_and_keeps_no_plain_secret(make_hub, archive):
    hub = make_hub(provider="choice")
    spawner = hub.spawner()
    state, names = spawner.get_state(), dict(spawner.whale_names)
    auth_state = hub.run(spawner.user.get_auth_state())
    options = hub.run(spawner.run_options_from_form(form("byoc", archive)))
    assert set(options) == {"engine", "upload"}
    assert options["engine"] == "byoc"
    # Nothing was stored, started or remembered by the form.
    assert spawner.get_state() == state
    assert spawner.whale_names == names
    assert spawner.engine_upload is None
    assert spawner.user_options in ({}, None)
    assert hub.run(spawner.user.get_auth_state()) == auth_state
    assert not list(Path(spawner.state_dir).glob("**/*.pem"))
    # The upload travels (and is kept in the hub's database) encrypted with the hub's key.
    assert "PRIVATE KEY" not in options["upload"]
    assert base64.b64encode(archive).decode()[:40] not in options["upload"]
    assert base64.b64decode(hub.run(_decrypt(options["upload"]))) == archive
    # The same form twice: two answers that say the same, and still nothing stored.
    again = hub.run(spawner.run_options_from_form(form("byoc", archive)))
    assert again["engine"] == "byoc"
    assert spawner.get_state() == state
    assert hub.run(spawner.run_options_from_form(form("sandbox"))) == {"engine": "sandbox"}


@pytest.mark.parametrize(("engine", "body", "status_text"), [
    ("byoc", None, "Choose your engine's credentials file to upload."),
    ("byoc", b"\0" * (MAX_ARCHIVE_BYTES + 1),
     "That file is too large for a credentials bundle (limit 1024 KiB)."),
    ("byoc", zip_bytes({"ca.pem": b"not a certificate", "docker.env": b"DOCKER_HOST=tcp://h:2376\n"}),
     "The archive has no cert.pem."),
    ("kubernetes", None, "This site offers no engine of the kind 'kubernetes'."),
])
def test_a_bad_form_is_refused_with_what_is_wrong(make_hub, engine, body, status_text):
    hub = make_hub(provider="choice")
    spawner = hub.spawner()
    with pytest.raises(web.HTTPError) as refused:
        hub.run(spawner.run_options_from_form(form(engine, body)))
    assert refused.value.status_code == 400
    assert refused.value.log_message.startswith(status_text), refused.value.log_message


def test_without_a_crypt_key_an_upload_is_refused_not_kept_in_the_clear(make_hub, archive, monkeypatch):
    hub = make_hub(provider="byoc")
    monkeypatch.delenv("JUPYTERHUB_CRYPT_KEY")
    CryptKeeper.clear_instance()
    with pytest.raises(web.HTTPError) as refused:
        hub.run(hub.spawner().run_options_from_form(form("byoc", archive)))
    assert refused.value.status_code == 400
    assert "has no JUPYTERHUB_CRYPT_KEY" in refused.value.log_message


def test_the_upload_of_a_start_comes_from_user_options_or_the_auth_state_hook(make_hub, archive):
    hub = make_hub(provider="byoc")
    spawner = hub.spawner()
    spawner.user_options = hub.run(spawner.run_options_from_form(form("byoc", archive)))
    assert hub.run(spawner._upload_of_this_start()) == archive
    # An authenticator (or this site before uploads were kept in user_options) hands a
    # learner's engine over in auth_state, through the spawner's auth_state_hook.
    spawner.user_options = {"engine": "byoc"}
    hub.run(spawner.run_auth_state_hook({AUTH_STATE_KEY: base64.b64encode(archive).decode()}))
    assert spawner.auth_state_upload == archive
    assert hub.run(spawner._upload_of_this_start()) == archive
    hub.run(spawner.run_auth_state_hook(None))
    assert hub.run(spawner._upload_of_this_start()) is None
    # An upload sealed with another hub's key cannot be read: it says to upload again.
    spawner.user_options = {"engine": "byoc", "upload": "gAAAAABnot-a-token"}
    with pytest.raises(Exception, match="upload them again on the spawn form"):
        hub.run(spawner._upload_of_this_start())


def test_progress_follows_the_start_future(make_hub):
    hub = make_hub()
    spawner = hub.spawner()
    seen: list[tuple[float, dict]] = []

    async def scenario():
        spawner._whale_events, spawner._whale_changed = [], asyncio.Event()
        spawner._start_future = asyncio.get_running_loop().create_future()
        t0 = time.monotonic()

        async def watch():
            async for event in spawner.progress():
                seen.append((time.monotonic() - t0, event))

        watcher = asyncio.ensure_future(watch())
        spawner._emit(10, "Creating your Docker engine")
        await asyncio.sleep(0.05)
        spawner._emit(40, "Starting your notebook server")
        spawner._emit(80, "Your Docker engine is ready; waiting for your notebook server")
        await asyncio.sleep(0.05)
        assert not watcher.done()  # start has not finished: progress goes on
        spawner._start_future.set_result(("10.0.0.2", 8888))
        await asyncio.wait_for(watcher, 0.5)  # ends as soon as start is done
        return time.monotonic() - t0

    took = hub.run(scenario())
    assert [e["progress"] for _, e in seen] == [10, 40, 80]
    assert seen[0][1] == {"progress": 10, "message": "Creating your Docker engine"}
    assert took < 0.5  # events as they happen, not on a one-second poll
    # After the start, a new page (say a reload) gets every event and the end at once.
    replay = hub.run(_collect(spawner.progress()))
    assert [e["progress"] for e in replay] == [10, 40, 80]


async def _decrypt(token: str):
    return await decrypt(token.encode())


async def _collect(agen):
    return [event async for event in agen]


def test_a_provider_is_one_file_and_its_configuration(make_hub, archive):
    classes = {"static": "static_provider.StaticProvider"}
    assert provider_class("static", classes) is StaticProvider
    assert provider_class("sandbox") is SandboxProvider
    assert provider_class("byoc") is ByocProvider
    with pytest.raises(LookupError, match="no engine provider called 'nope'"):
        provider_class("nope")
    with pytest.raises(TypeError, match="not an EngineProvider"):
        provider_class("bad", {"bad": "os.path.join"})
    hub = make_hub(provider="static", provider_classes=classes)
    spawner = hub.spawner()
    assert spawner.options_form == ""  # one provider, no upload: nothing to choose
    spawner.user_options = {}
    assert spawner.chosen_provider() is StaticProvider
    # A learner cannot pick a provider the site does not offer, even by the API.
    spawner.user_options = {"engine": "sandbox"}
    assert spawner.chosen_provider() is StaticProvider
    choice = make_hub(provider="choice", provider_choices=["static", "byoc"],
                      provider_classes=classes).spawner()
    choice.user_options = {"engine": "sandbox"}
    with pytest.raises(Exception, match="offers no engine of the kind 'sandbox'"):
        choice.chosen_provider()
    # What every provider answers by default.
    assert EngineProvider.accepts_upload is False
    with pytest.raises(Exception, match="takes no upload"):
        StaticProvider.check_upload(archive)


def test_the_static_provider_writes_the_one_bundle_it_is_given(make_hub, tmp_path, monkeypatch):
    from whale_hub.pki import CertificateAuthority, write_client_bundle
    ca = CertificateAuthority.create()
    source = write_client_bundle(tmp_path / "class-engine", ca, ca.issue_client(), "tcp://10.1.2.3:2376")
    monkeypatch.setenv("WHALE_STATIC_BUNDLE", str(source))
    spawner = make_hub(provider="static", provider_classes={"static": StaticProvider}).spawner("bob")
    bundle = StaticProvider(spawner).prepare()
    assert bundle.is_relative_to(spawner.state_dir)
    assert (bundle / "key.pem").read_bytes() == (source / "key.pem").read_bytes()
    assert oct((bundle / "key.pem").stat().st_mode & 0o777) == "0o600"
    assert "DOCKER_HOST=tcp://10.1.2.3:2376" in (bundle / "docker.env").read_text()
    StaticProvider(spawner).release(remove=False)
    assert not bundle.exists()


def test_every_blocking_docker_call_goes_through_one_executor(make_hub):
    from whale_hub.executor import docker_executor
    first, second = make_hub().spawner("ada"), make_hub().spawner("bob")
    assert first.executor is second.executor is docker_executor()
    assert os.cpu_count()
    assert docker_executor()._max_workers >= 2


def test_the_longest_engine_names_get_their_certificates():
    """A hashed slug made fresh, and a pooled engine's unit: their engines' names are
    DNS labels, and their CA's common name is cut to the 64 characters a name may have."""
    from whale_core.names import engine_container, fresh_name, learner_slug
    from whale_hub.pki import CertificateAuthority
    from whale_hub.pool import pool_unit

    longest = fresh_name(learner_slug("x" * 200 + "!"))
    assert len(longest) == 49
    for unit in (longest, pool_unit()):
        name = engine_container(unit)
        assert len(name) <= 63
        ca = CertificateAuthority.create(name=f"How to Whale CA for {name}")
        assert ca.cert.subject.rfc4514_string() == f"CN=How to Whale CA for {name}"[:67]
        ca.issue_server(hostnames=("localhost", name, "engine", "node1"), ips=("127.0.0.1",))
        ca.issue_client(common_name=name)


@pytest.mark.parametrize("given", ["-1", "two", "1.5"])
def test_whale_up_refuses_a_pool_that_is_not_a_number_of_engines(given, capsys):
    from whale_site.cli import main

    with pytest.raises(SystemExit) as exited:
        main(["up", "--engine-pool", given])
    assert exited.value.code == 2
    assert f"argument --engine-pool: {given!r} is not a number of engines (0 or more)" in \
        capsys.readouterr().err


def test_no_learners_name_is_a_pooled_engines():
    """A learner who signs up as a pooled engine's unit (or something like it) gets a slug,
    and a fresh name, that is never a pooled engine's: those are the pool's alone."""
    from whale_core.names import fresh_name, learner_slug
    from whale_hub.pool import is_pool_unit, pool_network, pool_unit, unit_of_network

    unit = pool_unit()
    assert is_pool_unit(unit)
    for name in (unit, unit[:40], unit.upper(), f"{unit}-net", "pool-" + "0" * 35):
        slug = learner_slug(name)
        assert not is_pool_unit(slug), name
        assert not is_pool_unit(fresh_name(slug)), name
    assert unit_of_network(pool_network(unit)) == unit
    assert unit_of_network(f"whale-net-{unit}") is None
