"""The warm pool of engines (whale_hub.pool): engines started before anyone asks, each
given to one learner at their first start, and theirs alone from then on."""
from __future__ import annotations

import dataclasses
import re
import time

import pytest
from hub_fixtures import Hub, ensure_images

from whale_core.layout import OWNER_LABEL, POOL_LABEL, learner_state_dir, read_owner
from whale_core.names import engine_container, learner_slug, server_container
from whale_hub.janitor import hub_users, sweep
from whale_hub.pool import EnginePool, is_pool_unit, pool_network
from whale_hub.specs import EngineSettings
from whale_progress.engines import HOSTED, EngineFinder

WAITING = "A Docker engine was waiting for you"


@pytest.fixture(scope="module")
def hub(tmp_path_factory, host_docker):
    ensure_images()
    h = Hub(tmp_path_factory.mktemp("pool-hub"),
            extra_env={"WHALE_ENGINE_POOL": "2", "WHALE_PROVIDER": "sandbox"})
    yield h
    h.close()  # removes whatever the site made, waiting engines too (their site label)


def state_dir(hub):
    return hub.state / "hub" / "engines"


def waiting(hub, count: int, timeout: float = 120) -> list[str]:
    """The pool's waiting engines, once there are `count` of them."""
    pool = EnginePool(state_dir(hub), hub.site, EngineSettings())
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        units = pool.ready()
        if len(units) >= count:
            return units
        time.sleep(0.5)
    raise AssertionError(f"the pool has {pool.ready()}, not {count} engines; hub log:\n"
                         + hub.log_tail())


def unit_of(hub, learner: str, among: list[str]) -> str:
    """The pooled engine (one of `among`) whose owner file names `learner`."""
    (unit,) = [u for u in among if read_owner(learner_state_dir(state_dir(hub), u)) == learner]
    return unit


def test_a_first_start_takes_a_waiting_engine_which_is_then_the_learners_alone(hub, host_docker):
    before = waiting(hub, 2)
    assert all(is_pool_unit(u) for u in before)
    for unit in before:  # nobody's yet, on a network of its own
        engine = host_docker.containers.get(engine_container(unit))
        assert engine.labels[POOL_LABEL] == "1"
        assert OWNER_LABEL not in engine.labels
        assert read_owner(learner_state_dir(state_dir(hub), unit)) is None
        assert list(engine.attrs["NetworkSettings"]["Networks"]) == [f"{engine.name}-net"]

    ann, bob = hub.user("ann"), hub.user("bob")
    said = [e.get("message") for e in hub.start(ann)]
    assert WAITING in said, said
    ann_unit = unit_of(hub, ann, before)
    engine = host_docker.containers.get(engine_container(ann_unit))
    # The network it waited on is Ann's now: her server joined it, nothing else did.
    network = host_docker.networks.get(pool_network(ann_unit))
    assert list(engine.attrs["NetworkSettings"]["Networks"]) == [network.name]
    assert {c.name for c in network.containers} == {engine.name, server_container(learner_slug(ann))}
    assert OWNER_LABEL not in network.attrs["Labels"]
    assert hub.run(ann, "docker info -f '{{.Name}}'").strip() == "node1"
    hub.run(ann, "docker volume create ann-only >/dev/null")

    said = [e.get("message") for e in hub.start(bob)]
    assert WAITING in said, said
    bob_unit = unit_of(hub, bob, before)
    assert bob_unit != ann_unit
    assert "ann-only" not in hub.run(bob, "docker volume ls -q")
    # Bob's server cannot reach Ann's engine, by its name or otherwise.
    out = hub.run(bob, f"DOCKER_HOST=tcp://{engine_container(ann_unit)}:2376 docker ps 2>&1; true")
    assert "whale: cannot use your Docker engine" in out
    # The progress service finds Ann's engine through the owner file, not a label.
    found = EngineFinder(state_dir(hub)).engine_of(ann, host_docker)
    assert found.kind == HOSTED, found
    assert found.bundle is not None, found

    # The pool fills again once no learner has been starting for a while.
    refilled = waiting(hub, 2)
    assert not set(refilled) & {ann_unit, bob_unit}
    # A waiting engine is nobody's to reach: not by its name, not at its address.
    spare = host_docker.containers.get(engine_container(refilled[0]))
    (address,) = [n["IPAddress"] for n in spare.attrs["NetworkSettings"]["Networks"].values()]
    out = hub.run(bob, f"curl -sS -m 3 -k https://{spare.name}:2376/_ping; echo; "
                       f"curl -sS -m 3 -k https://{address}:2376/_ping; echo", timeout=60)
    assert "Could not resolve host" in out, out
    assert re.search(r"timed out|Connection refused|No route", out), out
    assert "OK" not in out


def test_a_taken_engine_is_kept_across_a_restart_and_swept_with_its_learner(hub, host_docker):
    ann = hub.user("ann")
    units = [p.name for p in (state_dir(hub) / "learners").iterdir() if is_pool_unit(p.name)]
    ann_unit = unit_of(hub, ann, units)
    engine_id = host_docker.containers.get(engine_container(ann_unit)).id
    hub.stop(ann)
    assert host_docker.containers.get(engine_id).status == "exited"
    said = [e.get("message") for e in hub.start(ann)]
    assert WAITING not in said, said
    assert host_docker.containers.get(engine_container(ann_unit)).id == engine_id
    assert "ann-only" in hub.run(ann, "docker volume ls -q")

    still_waiting = waiting(hub, 2)
    assert hub.api("DELETE", f"/users/{ann}/server").status_code in (202, 204)
    hub.stop(ann)
    assert hub.api("DELETE", f"/users/{ann}").status_code == 204
    hub.users.remove(ann)
    removed = sweep(hub_users(f"{hub.url}/hub/api", hub.token), str(state_dir(hub)))
    assert engine_container(ann_unit) in removed
    assert pool_network(ann_unit) in removed
    assert not host_docker.containers.list(all=True, filters={"name": engine_container(ann_unit)})
    assert not learner_state_dir(state_dir(hub), ann_unit).exists()
    # Waiting engines are nobody's: the janitor leaves them alone.
    for unit in still_waiting:
        assert engine_container(unit) not in removed
        assert host_docker.containers.get(engine_container(unit)).status == "running"


def test_waiting_engines_that_no_longer_fit_are_discarded_and_stopped_ones_started(
        tmp_path, host_docker):
    ensure_images()
    site = "pooltest"
    pool = EnginePool(tmp_path, site, EngineSettings(disk_limit=None))
    try:
        stopped, running = pool.add(host_docker), pool.add(host_docker)
        host_docker.containers.get(engine_container(stopped)).stop(timeout=1)
        # The site's engines now pull through a mirror: both engines, made without one,
        # no longer fit, stopped or not.
        pool.settings = dataclasses.replace(pool.settings, registry_mirror="http://mirror:5000")
        assert set(pool.tidy(host_docker)) == {stopped, running}
        for unit in (stopped, running):
            assert not host_docker.containers.list(all=True, filters={"name": engine_container(unit)})
            assert not host_docker.networks.list(names=[f"{engine_container(unit)}-net"])
        assert pool.ready() == []

        pool.settings = EngineSettings(disk_limit=None)
        fresh = pool.add(host_docker)
        host_docker.containers.get(engine_container(fresh)).stop(timeout=1)
        assert pool.tidy(host_docker) == []
        assert host_docker.containers.get(engine_container(fresh)).status == "running"
        assert pool.take("cat") == fresh
        assert read_owner(learner_state_dir(tmp_path, fresh)) == "cat"
        assert pool.take("dan") is None

        # An engine a hub was making when it stopped: no mark, no owner. Discarded once
        # it is old enough (not while a hub may still be finishing it); cat's is kept.
        unfinished = pool.add(host_docker)
        (pool.ready_dir / unfinished).unlink()
        assert pool.tidy(host_docker) == []
        assert pool.tidy(host_docker, orphan_age=0) == [unfinished]
        assert not host_docker.containers.list(all=True, filters={"name": engine_container(unfinished)})
        assert host_docker.containers.get(engine_container(fresh)).status == "running"
    finally:
        for path in (tmp_path / "learners").glob("pool-*"):
            pool.discard(path.name, host_docker)
