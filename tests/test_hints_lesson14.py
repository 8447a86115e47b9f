"""Lesson 14, the capstone: `whale-check capstone-compose`, `capstone-stack` and
`capstone-update` (the challenge: an update stuck halfway) give hints that fit each
broken state.

One fresh engine for the module, with the shop built from the lesson's own cells in a
folder `shop`, as a learner's shell has it. The Compose states come first (before the
Swarm: Compose's network `shop_default` would clash with the stack's), then the stack's,
then the challenge's, each made from the lesson's cells (its setup cell, where the state is
the one the lesson starts from) and a few changes on top. For each state the check must say
what is missing, with three hints of its own, hint 3 never the solution's command.
"""
from __future__ import annotations

import nbformat
import pytest
from hint_fixtures import assert_hints_fit, learner_shell, lesson_cells

from whale_lessons import runner as lessons

CELLS = [c.source for c in nbformat.read(lessons.find_lessons(["14"])[0], 4).cells
         if c.cell_type == "code"]


def cell_with(*texts: str) -> str:
    """The lesson's first code cell that holds every one of `texts`."""
    return next(c for c in CELLS if all(t in c for t in texts))


# The lesson's cells, in the order it runs them (all in the folder `shop`).
FIRST = cell_with("mkdir -p shop && cd shop")
APP = [FIRST.replace("mkdir -p shop && cd shop\n", ""), cell_with("cat > start.sh", "port 80"),
       cell_with("cat > Dockerfile")]
# The lesson runs on the Swarm of lesson 12; this engine is a Swarm of one node (its
# manager, where the stack's placement puts the shop).
SWARM = ["docker swarm init --advertise-addr 127.0.0.1 >/dev/null",
         cell_with("docker secret create"), cell_with("cat > page.html")]
GATE = cell_with("image: shop:1", "update_config:")  # stage 3: the gate, version 1
VERSION_2 = cell_with("docker build -q -t shop:2")
WAIT_PAUSED = cell_with("timeout 60", "paused")
SOLUTION = dict(zip(("capstone-compose", "capstone-stack", "capstone-update"),
                    lesson_cells("capstone-update", "solution"), strict=True))
SETUP = lesson_cells("capstone-update", "setup")[0]  # a colleague's quick.yaml: shop:2, no gate

REMOVE_STACK = (
    "docker stack rm shop >/dev/null 2>&1\n"
    "timeout 60 sh -c 'while [ -n \"$(docker ps -aq --filter "
    "label=com.docker.stack.namespace=shop)\" ]; do sleep 1; done'\n"
    "timeout 30 sh -c 'while docker network inspect shop_default >/dev/null 2>&1; "
    "do sleep 1; done'")

# Broken Compose files: the lesson's solution with one thing left out or changed.
COMPOSE = SOLUTION["capstone-compose"]
NO_NAME = COMPOSE.replace("    environment:\n      SHOP_NAME: Whale Shop\n", "")
ANONYMOUS = COMPOSE.replace("      - data:/data\n", "      - /data\n").replace(
    "volumes:\n  data:\n", "")
NO_HEALTHCHECK = COMPOSE.replace(
    '    healthcheck:\n      test: ["CMD", "wget", "-qO-", "http://localhost/"]\n'
    "      interval: 1s\n", "")

# Broken stack files: the lesson's stage-2 solution with one thing left out.
STACK = SOLUTION["capstone-stack"]
NO_SECRET = STACK.replace("    secrets:\n      - admin_password\n", "")
VIP = STACK.replace("      endpoint_mode: dnsrr\n", "")

# The challenge: the lesson's setup (waited until paused), and what a learner may do next.
PAUSED = f"{GATE}\n{SETUP}\n{WAIT_PAUSED}"
ROLLED_BACK = f"{PAUSED}\ndocker service rollback shop_web"
PORT_80_NO_GATE = SETUP.replace(
    "      SHOP_NAME: Whale Shop\n", "      SHOP_NAME: Whale Shop\n      PORT: \"80\"\n").replace(
    "docker stack deploy -c", "docker stack deploy --detach=false -c")
HEALTHCHECK_ON_8080 = SOLUTION["capstone-update"].replace('      PORT: "80"\n', "").replace(
    "http://localhost/", "http://localhost:8080/")

for broken in (NO_NAME, ANONYMOUS, NO_HEALTHCHECK, NO_SECRET, VIP, PORT_80_NO_GATE,
               HEALTHCHECK_ON_8080):  # every change above found its text in the lesson
    assert broken not in (COMPOSE, STACK, SETUP, SOLUTION["capstone-update"])

# (exercise, state, how to get there from the stage's start, what is missing, a phrase of
# hint 1, 2 and 3 each)
COMPOSE_STATES = [
    ("capstone-compose", "the lesson's start: no compose.yaml", "true",
     "there is no Compose service `web` in the project `shop`",
     ("named after the folder", "`docker compose config --services`",
      "a service `web:` with `image: shop:1`")),
    ("capstone-compose", "no SHOP_NAME", NO_NAME,
     "`web` (shop-web-1) has no environment variable `SHOP_NAME`",
     ("from the environment variable SHOP_NAME", "`environment:` under a service",
      "the line `SHOP_NAME:`")),
    ("capstone-compose", "an anonymous volume", ANONYMOUS,
     "`/data` in `web` (shop-web-1) is on an anonymous volume, not a named one",
     ("a long random name", "declared at the top level", "instead of `/data` alone")),
    ("capstone-compose", "no healthcheck", NO_HEALTHCHECK,
     "`web` (shop-web-1) has no healthcheck",
     ("running is not answering", "a `test` command run inside the container",
      "`wget -qO- http://localhost/`")),
]
STACK_STATES = [
    ("capstone-stack", "the lesson's start: nothing deployed", "true",
     "the stack `shop` has no service `web` (no service `shop_web`)",
     ("named STACK_SERVICE", "`docker stack services shop`", "the last word of the command")),
    ("capstone-stack", "no secret", NO_SECRET,
     "`shop_web` gets no secret at /run/secrets/admin_password",
     ("only the services that list it", "`external: true`", "the item `- admin_password`")),
    ("capstone-stack", "a virtual IP", VIP,
     "`shop_web` has a virtual IP (endpoint mode `vip`), which this engine's kernel cannot "
     "route",
     ("built on IPVS", "`dnsrr` (DNS round robin)", "add `endpoint_mode: dnsrr`")),
]
UPDATE_STATES = [
    ("capstone-update", "the lesson's setup: the update paused", PAUSED,
     "the update of `shop_web` to shop:2 stopped halfway: its state is `paused`",
     ("nothing tells it to roll back", "`docker service ps --no-trunc shop_web`",
      "opens on port 8080 unless PORT says otherwise")),
    ("capstone-update", "rolled back by hand", ROLLED_BACK,
     "`shop_web` runs shop:1: version 2 is not out",
     ("brings back the version before", "on which port each version says it opens",
      "`image: shop:2` with `PORT: \"80\"`")),
    ("capstone-update", "version 2 fixed, but deployed without the gate", PORT_80_NO_GATE,
     "`shop_web` has no health gate: its update_config says `order: stop-first` and "
     "`failure_action: pause`",
     ("sets Swarm's defaults again", "`update_config:` under `deploy:`",
      "put stage 3's `update_config` back")),
    ("capstone-update", "a healthcheck on version 2's port instead", HEALTHCHECK_ON_8080,
     "the tasks of `shop_web` are healthy, but nothing answers on port 80, where "
     "http://web/ leads",
     ("proves only what it tests", "`PORT` in `environment:`",
      "let version 2 open on port 80")),
]
SEEN: dict[str, dict[str, list[str]]] = {}


def ids(states):
    return [f"{name}: {state}" for name, state, *_ in states]


@pytest.fixture(scope="module")
def learner(lesson_mirror, host_docker, tmp_path_factory):
    """shop(script) runs a script in the folder `shop` of a learner's shell on a fresh
    engine, where the lesson's stage-1 cells have built shop:1."""
    sh, engine = learner_shell("hints14", tmp_path_factory, host_docker, lesson_mirror.url)

    def shop(script: str, timeout: float = 240):
        return sh(f"mkdir -p shop && cd shop\n{script}", timeout=timeout)
    for cell in APP:
        made = shop(cell)
        assert made.returncode == 0, made.stdout + made.stderr
    yield shop
    engine.remove()


@pytest.fixture
def compose_stage(learner):
    """The stage-1 state: shop:1 built, no Swarm yet; the Compose app taken down after."""
    yield learner
    learner("docker compose down -v -t 1 >/dev/null 2>&1; rm -f compose.yaml")


@pytest.fixture(scope="module")
def swarm(learner):
    """The stage-2 state: a one-node Swarm, the secret and page.html (lesson's cells)."""
    for cell in SWARM:
        made = learner(cell)
        assert made.returncode == 0, made.stdout + made.stderr
    return learner


@pytest.fixture
def stack_stage(swarm):
    """The stage-2 state, with no stack deployed (removed after each test too)."""
    swarm(REMOVE_STACK)
    yield swarm
    swarm(REMOVE_STACK)


@pytest.fixture(scope="module")
def update_stage(swarm):
    """The stage-3 state before the challenge: version 2 built (the lesson's cell). Each
    state deploys the whole files it needs, so states follow each other in any order."""
    made = swarm(VERSION_2)
    assert made.returncode == 0, made.stdout + made.stderr
    return swarm


def _broken_state(shop, name, state, script, reason, phrases):
    made = shop(script)
    assert made.returncode == 0, made.stdout + made.stderr
    hints = assert_hints_fit(shop, name, reason, phrases, SOLUTION[name])
    SEEN.setdefault(name, {})[state] = hints


@pytest.mark.parametrize(("name", "state", "script", "reason", "phrases"), COMPOSE_STATES,
                         ids=ids(COMPOSE_STATES))
def test_compose_hints_fit_the_broken_state(compose_stage, name, state, script, reason,
                                            phrases):
    _broken_state(compose_stage, name, state, script, reason, phrases)


def test_compose_solution_passes(compose_stage):
    made = compose_stage(SOLUTION["capstone-compose"])
    assert made.returncode == 0, made.stdout + made.stderr
    out = compose_stage("whale-check capstone-compose --hint 3")
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout == ("✔ Well done: Compose runs web (shop-web-1) from shop:1 as Whale "
                          "Shop, healthy, with /data in the volume shop_data.\n")


@pytest.mark.parametrize(("name", "state", "script", "reason", "phrases"), STACK_STATES,
                         ids=ids(STACK_STATES))
def test_stack_hints_fit_the_broken_state(stack_stage, name, state, script, reason, phrases):
    _broken_state(stack_stage, name, state, script, reason, phrases)


def test_stack_solution_passes(stack_stage):
    made = stack_stage(SOLUTION["capstone-stack"])
    assert made.returncode == 0, made.stdout + made.stderr
    out = stack_stage("whale-check capstone-stack")
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout == ("✔ Well done: the stack shop runs 2 healthy replicas of web, its "
                          "page from a config and its password from a secret.\n")


@pytest.mark.parametrize(("name", "state", "script", "reason", "phrases"), UPDATE_STATES,
                         ids=ids(UPDATE_STATES))
def test_challenge_hints_fit_the_broken_state(update_stage, name, state, script, reason,
                                              phrases):
    _broken_state(update_stage, name, state, script, reason, phrases)


def test_the_challenge_solution_rescues_the_paused_update(update_stage):
    """From the lesson's setup (the update paused halfway), the lesson's solution rolls
    version 2 out through the gate, and then no hint is needed."""
    made = update_stage(PAUSED)
    assert made.returncode == 0, made.stdout + made.stderr
    fixed = update_stage(SOLUTION["capstone-update"])
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    out = update_stage("whale-check capstone-update --hint 1")
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout == ("✔ Well done: shop_web runs 2 healthy replicas of shop:2 on port "
                          "80, behind a health gate (start-first, rollback on failure).\n")
    page = update_stage("docker run --rm --network shop_default busybox wget -qO- http://web/")
    assert "<h1>Welcome to Whale Shop!</h1>" in page.stdout, page.stdout + page.stderr


def test_each_state_has_hints_of_its_own():
    """Two broken states of one check never get the same hint at any level."""
    for name, states in SEEN.items():
        if len(states) < 2:
            continue
        for level in range(3):
            said = [hints[level] for hints in states.values()]
            assert len(set(said)) == len(said), (name, level, said)


def test_the_paused_state_is_the_lessons_stored_one():
    """The lesson stores the check's answer to its setup: the reason asserted above."""
    nb = nbformat.read(lessons.find_lessons(["14"])[0], 4)
    check_cells = [c for c in nb.cells if c.cell_type == "code"
                   and c.source == "whale-check capstone-update"]
    stored = "".join(o.get("text", "") for o in check_cells[0].outputs)
    assert stored.startswith(f"✘ Not yet: {UPDATE_STATES[0][3]}.\n")
