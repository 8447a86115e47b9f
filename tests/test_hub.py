"""The site as a whole, through a real JupyterHub and its proxy: learners, their own
engines, their notebooks, and bring-your-own-engine on the spawn form."""
from __future__ import annotations

import io
import os
import re
import time
import zipfile
from pathlib import Path

import pytest
import requests
from engine_fixtures import engine_id
from hub_fixtures import CONFIG, Hub, engine_on_learners_network, ensure_images

from whale_core.bundle import read_bundle_dir, write_bundle_dir
from whale_core.layout import OWNER_LABEL, SITE_LABEL, site_id_of
from whale_core.layout import ROLE_LABEL as LABEL
from whale_core.names import (
    engine_container,
    learner_network,
    learner_slug,
    server_container,
    work_volume,
)

pytestmark = pytest.mark.hub


NEW_NOTEBOOK = {"type": "notebook", "content": {"cells": [], "metadata": {}, "nbformat": 4,
                                               "nbformat_minor": 5}}


@pytest.fixture(scope="module")
def hub(tmp_path_factory, host_docker):
    ensure_images()
    h = Hub(tmp_path_factory.mktemp("hub"))
    yield h
    h.close()


def test_two_learners_get_their_own_engines(hub):
    a, b = hub.user("alice"), hub.user("bob")
    events = hub.start(a)
    messages = [e.get("message", "") for e in events]
    assert any("Creating your Docker engine" in m for m in messages), messages
    assert any("Starting your notebook server" in m for m in messages), messages
    hub.start(b)
    id_a = hub.run(a, "docker info -f '{{.ID}}'").strip()
    id_b = hub.run(b, "docker info -f '{{.ID}}'").strip()
    assert id_a
    assert id_b
    assert id_a != id_b
    # What A makes on their engine, B does not see.
    hub.run(a, "docker volume create alice-only >/dev/null; docker network create alice-net >/dev/null")
    assert "alice-only" in hub.run(a, "docker volume ls -q")
    assert "alice-only" not in hub.run(b, "docker volume ls -q")
    assert "alice-net" not in hub.run(b, "docker network ls --format '{{.Name}}'")
    # B's server cannot even reach A's engine by name.
    out = hub.run(b, f"DOCKER_HOST=tcp://{engine_container(learner_slug(a))}:2376 docker ps 2>&1; true")
    assert "whale: cannot use your Docker engine" in out
    # The lessons are there, and the kernel is the docker one.
    listing = hub.server(a, "GET", "/contents/lessons").json()
    assert listing["type"] == "directory"
    specs = hub.server(a, "GET", "/kernelspecs").json()
    assert "docker" in specs["kernelspecs"]


def test_work_survives_stop_and_start(hub):
    a = hub.user("alice")
    if not hub.api("GET", f"/users/{a}").json().get("servers"):
        hub.start(a)
    assert hub.server(a, "PUT", "/contents/mine.ipynb", json=NEW_NOTEBOOK).status_code in (200, 201)
    hub.run(a, "docker volume create kept-on-engine >/dev/null")
    hub.stop(a)
    hub.start(a)
    assert hub.server(a, "GET", "/contents/mine.ipynb").status_code == 200
    # The engine was stopped, not removed: what the learner made on it is still there.
    assert "kept-on-engine" in hub.run(a, "docker volume ls -q")


def _login(hub, name: str) -> requests.Session:
    s = requests.Session()
    s.trust_env = False
    s.get(f"{hub.url}/hub/login", timeout=10)
    r = s.post(f"{hub.url}/hub/login", data={"username": name, "password": "whale",
                                             "_xsrf": s.cookies.get("_xsrf")}, timeout=10)
    assert r.ok, r.text
    return s


def _spawn_form(s: requests.Session, hub, name: str, files=None, engine="byoc"):
    page = s.get(f"{hub.url}/hub/spawn/{name}", timeout=10)
    assert "My own Docker engine" in page.text
    return s.post(f"{hub.url}/hub/spawn/{name}", data={"engine": engine, "_xsrf": s.cookies.get("_xsrf")},
                  files=files, timeout=60, allow_redirects=False)


def test_bring_your_own_engine_on_the_spawn_form(hub, tmp_path_factory, host_docker):
    c = hub.user("carol")
    s = _login(hub, c)
    # A bad bundle is refused on the form, with what is wrong, not a 500.
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("ca.pem", "not a certificate")
        z.writestr("docker.env", "DOCKER_HOST=tcp://127.0.0.1:2376\nDOCKER_TLS_VERIFY=1\n")
    bad = _spawn_form(s, hub, c, files={"bundle": ("bundle.zip", buf.getvalue())})
    assert bad.status_code == 400, bad.text[-3000:]
    assert re.search(r"cert\.pem|key\.pem", bad.text), bad.text[-2000:]
    assert not hub.api("GET", f"/users/{c}").json().get("servers")
    # A good one: an engine of the learner's own, on a machine of their network.
    own = engine_on_learners_network(hub, c, "byoc", tmp_path_factory, host_docker)
    try:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            for f in ("ca.pem", "cert.pem", "key.pem", "docker.env"):
                z.write(own.bundle_dir / f, f)
        good = _spawn_form(s, hub, c, files={"bundle": ("bundle.zip", buf.getvalue())})
        assert good.status_code == 302, good.text[-2000:]
        hub.wait_ready(c)
        assert hub.run(c, "docker info -f '{{.ID}}'").strip() == engine_id(own)
        # The uploaded key is not in the hub's plain state.
        user = hub.api("GET", f"/users/{c}").json()
        assert "PRIVATE KEY" not in str(user)
        hub.stop(c)
    finally:
        own.remove()


def test_a_provider_is_added_by_one_file_and_its_configuration(tmp_path_factory, host_docker):
    """tests/static_provider.py (every learner gets the one engine the site names), put in
    the hub's configuration: a learner's server is wired to that engine, through a real hub."""
    ensure_images()
    state = tmp_path_factory.mktemp("static-hub")
    config = state / "static_config.py"
    config.write_text(f"""c = get_config()  # noqa
load_subconfig({str(CONFIG)!r})  # noqa: the site's own configuration, then:
c.WhaleSpawner.provider_classes = {{"static": "static_provider.StaticProvider"}}
c.WhaleSpawner.provider = "static"
""")
    tests = str(Path(__file__).resolve().parent)
    given = state / "class-engine"  # filled in below, once the class's engine exists
    hub = Hub(state, config=config, extra_env={
        "PYTHONPATH": os.pathsep.join(filter(None, [tests, os.environ.get("PYTHONPATH")])),
        "WHALE_STATIC_BUNDLE": str(given)})
    engine = None
    try:
        learner = hub.user("dana")
        engine = engine_on_learners_network(hub, learner, "static", tmp_path_factory, host_docker)
        write_bundle_dir(given, read_bundle_dir(engine.bundle_dir, shown=engine.bundle_dir))
        events = hub.start(learner)
        assert any(e.get("message") == "Connecting you to the class's engine" for e in events), events
        assert hub.run(learner, "docker info -f '{{.ID}}'").strip() == engine_id(engine)
        hub.stop(learner)
        assert not (state / "hub" / "engines" / "static" / learner_slug(learner)).exists()
    finally:
        if engine is not None:
            engine.remove()
        hub.close()

def test_deleted_learners_leave_nothing_behind(hub, host_docker):
    from whale_hub.janitor import hub_users, sweep

    e = hub.user("erin")
    hub.start(e)
    engine = engine_container(learner_slug(e))
    assert host_docker.containers.get(engine).status == "running"
    assert hub.api("DELETE", f"/users/{e}").status_code == 204
    hub.users.remove(e)
    users = hub_users(f"{hub.url}/hub/api", hub.token)
    assert e not in users
    assert hub.user("alice") in users
    # An engine of another site (or of a lesson test) on the same Docker engine, whose
    # owner this hub never heard of, is not this janitor's to sweep.
    site = site_id_of(hub.state / "hub" / "engines")
    assert host_docker.containers.get(engine).labels[SITE_LABEL] == site
    foreign = host_docker.containers.create(
        "howtowhale/engine", ["true"], name=f"{hub.prefix}-foreign-engine",
        labels={LABEL: "engine", OWNER_LABEL: "someone-else", SITE_LABEL: "another-site"})
    try:
        removed = sweep(users, str(hub.state / "hub" / "engines"))
        foreign.reload()
        assert foreign.name not in removed
    finally:
        foreign.remove(force=True)
    assert engine in removed
    assert not host_docker.containers.list(all=True, filters={"name": engine})
    assert not host_docker.networks.list(names=[learner_network(learner_slug(e))])
    # Other learners' engines are untouched.
    alice_engine = engine_container(learner_slug(hub.user("alice")))
    assert host_docker.containers.list(all=True, filters={"name": alice_engine})


def test_a_learner_who_signs_up_while_the_janitor_sweeps_keeps_their_engine(hub, host_docker):
    """The janitor lists what there is, then asks the hub who its users are. Asked first,
    an answer from before a newcomer signed up let the sweep take the newcomer's new
    engine, server and network from under their first start (a class arriving as the
    hub starts, when the janitor sweeps first: a CI run lost a learner's server so).
    Here the newcomer signs up and starts while the sweep waits for that answer, which
    does not name them yet; a deleted learner's engine goes."""
    from whale_hub.janitor import hub_users, sweep

    gone, newcomer = hub.user("gwen"), f"{hub.prefix}-nina"
    hub.start(gone)
    assert hub.api("DELETE", f"/users/{gone}").status_code == 204
    hub.users.remove(gone)

    def users_before_the_newcomer():
        before = hub_users(f"{hub.url}/hub/api", hub.token)
        assert hub.user("nina") == newcomer  # signs up (cleaned up with the others)
        hub.start(newcomer)
        assert newcomer not in before
        return before

    removed = sweep(users_before_the_newcomer, str(hub.state / "hub" / "engines"))
    assert engine_container(learner_slug(gone)) in removed
    slug = learner_slug(newcomer)
    assert not [x for x in removed if slug in x], removed
    assert host_docker.containers.get(engine_container(slug)).status == "running"
    assert host_docker.containers.get(f"jupyter-{slug}").status == "running"
    assert host_docker.networks.list(names=[learner_network(slug)])
    hub.run(newcomer, "docker volume create nina-was-here >/dev/null")
    assert "nina-was-here" in hub.run(newcomer, "docker volume ls -q")


def _engine_of(host_docker, hub, name: str):
    """The one engine container labelled as `name`'s on the hub's site."""
    (engine,) = host_docker.containers.list(all=True, filters={"label": [
        f"{LABEL}=engine", f"{OWNER_LABEL}={name}", f"{SITE_LABEL}={hub.site}"]})
    return engine


def test_names_that_escape_alike_get_their_own_engines(hub, host_docker):
    """`ada.` once got `ada`'s engine (one Docker name for both), and stopping its server
    stopped ada's engine."""
    ada, dot = hub.user("ada"), hub.user("ada.")
    hub.start(ada)
    hub.start(dot)
    id_ada = hub.run(ada, "docker info -f '{{.ID}}'").strip()
    id_dot = hub.run(dot, "docker info -f '{{.ID}}'").strip()
    assert id_ada
    assert id_dot
    assert id_ada != id_dot
    engine_ada, engine_dot = _engine_of(host_docker, hub, ada), _engine_of(host_docker, hub, dot)
    assert engine_ada.name == engine_container(learner_slug(ada)) != engine_dot.name
    hub.stop(dot)
    engine_ada.reload()
    assert engine_ada.status == "running"
    assert _engine_of(host_docker, hub, dot).status == "exited"
    assert hub.run(ada, "docker info -f '{{.ID}}'").strip() == id_ada


def test_someone_elses_objects_under_a_learners_names_are_left_alone(hub, host_docker):
    """An engine, a network and a volume named as the learner's would be, but labelled as
    another's (another learner, or the same name on another site), are neither used nor
    touched; the learner gets new ones, and finds them again on the next start."""
    f = hub.user("frank")
    slug = learner_slug(f)
    other = {OWNER_LABEL: "someone-else", SITE_LABEL: hub.site}
    decoys = [
        host_docker.containers.create("howtowhale/engine", ["true"], name=engine_container(slug),
                                      labels={LABEL: "engine", **other}),
        host_docker.networks.create(learner_network(slug), driver="bridge", labels=other),
        host_docker.volumes.create(work_volume(slug), labels={OWNER_LABEL: f, SITE_LABEL: "another-site"}),
    ]
    try:
        hub.start(f)
        assert hub.run(f, "docker info -f '{{.ID}}'").strip()
        engine = _engine_of(host_docker, hub, f)
        engine.reload()
        assert engine.name.startswith(engine_container(slug) + "---"), engine.name
        server = host_docker.containers.get(server_container(slug))
        networks = set(server.attrs["NetworkSettings"]["Networks"])
        assert len(networks) == 1
        assert learner_network(slug) not in networks
        assert networks <= set(engine.attrs["NetworkSettings"]["Networks"])
        volumes = {m.get("Name") for m in server.attrs["Mounts"]}
        assert work_volume(slug) not in volumes
        # Its own, named for this learner of this name (work_volume_default).
        assert [v for v in volumes if v and re.fullmatch(rf"{work_volume(slug)}-[0-9a-f]{{8}}", v)], volumes
        decoys[0].reload()
        decoys[1].reload()
        assert decoys[0].status == "created"
        assert not decoys[1].containers
        # The new names are remembered: the next start finds the same engine.
        hub.stop(f)
        hub.start(f)
        assert _engine_of(host_docker, hub, f).id == engine.id
        decoys[0].reload()
        assert decoys[0].status == "created"
    finally:
        decoys[0].remove(force=True)
        decoys[1].remove()
        decoys[2].remove(force=True)
    warnings = [line for line in (hub.state / "hub.log").read_text().splitlines() if "belongs to" in line]
    for decoy in (engine_container(slug), learner_network(slug)):
        assert any(f" {decoy} " in line for line in warnings), (decoy, warnings)


def test_a_new_learner_given_a_deleted_learners_name_does_not_get_their_work(hub):
    """A teacher deletes a learner, and later a new one signs up under the same name: two
    people. The first one's work is kept, under its own name; the new one starts afresh."""
    g = hub.user("gail")
    hub.start(g)
    assert hub.server(g, "PUT", "/contents/mine.ipynb", json=NEW_NOTEBOOK).status_code == 201
    hub.stop(g)
    assert hub.api("DELETE", f"/users/{g}").status_code == 204
    hub.users.remove(g)
    assert hub.user("gail") == g
    hub.start(g)
    assert hub.server(g, "GET", "/contents/lessons").status_code == 200
    assert hub.server(g, "GET", "/contents/mine.ipynb").status_code == 404


def test_a_learner_who_picks_three_nodes_gets_a_swarm_of_three(tmp_path_factory, host_docker):
    """The spawn form's choice, through a real hub: a Swarm of 3 classroom engines, node1
    the one the learner's notebooks talk to; the others reached by name on their network;
    a node down shows in the engine indicator's health, naming it."""
    ensure_images()
    hub = Hub(tmp_path_factory.mktemp("nodes-hub"), extra_env={"WHALE_MAX_NODES": "3"})
    try:
        learner = hub.user("carol")
        session = _login(hub, learner)
        form = session.get(f"{hub.url}/hub/spawn/{learner}", timeout=10).text
        assert '<input type="radio" name="nodes" value="3">' in form
        refused = session.post(f"{hub.url}/hub/spawn/{learner}", timeout=30, data={
            "engine": "sandbox", "nodes": "5", "_xsrf": session.cookies.get("_xsrf")})
        assert "This site offers engines of 1, 3 nodes, not &#39;5&#39;." in refused.text

        events = hub.start(learner, {"engine": "sandbox", "nodes": 3})
        said = [e.get("message") for e in events]
        assert said.index("Creating your Swarm of 3 Docker engines") < said.index(
            "Your 3 engines answer: joining node2 and node3 to node1's Swarm") < said.index(
            "Your Docker engine is ready; waiting for your notebook server"), said
        nodes = hub.run(learner, "docker node ls --format '{{.Hostname}} {{.Status}}' | sort")
        assert nodes.split("\n")[:3] == ["node1 Ready", "node2 Ready", "node3 Ready"]
        assert hub.run(learner, "docker --host tcp://node3:2376 info -f '{{.Name}}'").strip() == "node3"

        node3 = f"{engine_container(learner_slug(learner))}.node3"
        host_docker.containers.get(node3).stop(timeout=1)
        health = None
        for _ in range(60):  # the manager calls a node down after its missed heartbeats
            health = hub.session.get(f"{hub.url}/user/{learner}/whale/api/health",
                                     params={"refresh": "1"}, timeout=30).json()
            if health["status"] != "ok":
                break
            time.sleep(1)
        assert health["status"] == "degraded", health
        assert "swarm node node3 is not ready (2 of 3 nodes ready)" in health["reason"], health
        assert (health["swarm"]["ready"], health["swarm"]["total"]) == (2, 3)

        # The next start puts node3 back; the one after with 1 node removes the workers.
        hub.stop(learner)
        assert host_docker.containers.get(node3).status == "exited"
        hub.start(learner, {"engine": "sandbox", "nodes": 3})
        nodes = hub.run(learner, "docker node ls --format '{{.Hostname}} {{.Status}}' | sort")
        assert nodes.split("\n")[:3] == ["node1 Ready", "node2 Ready", "node3 Ready"]

        # An operator's `docker network prune` while carol is away removes her network: her
        # next start makes it again, every node (kept from before) joins the new one, and
        # her Swarm of 3 holds.
        hub.stop(learner)
        network = host_docker.networks.get(learner_network(learner_slug(learner)))
        network.remove()
        hub.start(learner, {"engine": "sandbox", "nodes": 3})
        now = host_docker.networks.get(learner_network(learner_slug(learner)))
        assert now.id != network.id
        for node in ("", ".node2", ".node3"):
            engine = host_docker.containers.get(engine_container(learner_slug(learner)) + node)
            assert [n["NetworkID"] for n in engine.attrs["NetworkSettings"]["Networks"].values()] \
                == [now.id], node
        nodes = hub.run(learner, "docker node ls --format '{{.Hostname}} {{.Status}}' | sort")
        assert nodes.split("\n")[:3] == ["node1 Ready", "node2 Ready", "node3 Ready"]
        assert hub.run(learner, "docker --host tcp://node2:2376 info -f '{{.Name}}'").strip() == "node2"
        hub.stop(learner)
        hub.start(learner, {"engine": "sandbox", "nodes": 1})
        assert not host_docker.containers.list(all=True, filters={"name": node3})
    finally:
        hub.close()


def test_a_learners_network_removed_while_they_are_away_is_made_again(hub, host_docker):
    """An operator's `docker network prune` while a learner's server is stopped removes
    their network (a stopped container holds no endpoint on it). Their next start makes it
    again, and their engine, kept from before, joins the new one with what it held."""
    a = hub.user("alice")
    if not hub.api("GET", f"/users/{a}").json().get("servers"):
        hub.start(a)
    hub.run(a, "docker volume create kept-past-a-prune >/dev/null")
    engine = host_docker.containers.get(engine_container(learner_slug(a)))
    hub.stop(a)
    network = host_docker.networks.get(learner_network(learner_slug(a)))
    network.remove()
    hub.start(a)
    now = host_docker.networks.get(learner_network(learner_slug(a)))
    assert now.id != network.id
    engine.reload()
    assert [n["NetworkID"] for n in engine.attrs["NetworkSettings"]["Networks"].values()] == [now.id]
    assert "kept-past-a-prune" in hub.run(a, "docker volume ls -q")
