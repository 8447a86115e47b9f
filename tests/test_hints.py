"""`whale-check NAME --hint N`: hints that fit what is actually missing on the learner's engine.

Each challenge (lessons 3, 7 and 9) is put into several distinct broken states on a real
engine (one engine for the module, emptied between states), with the lesson's own setup
cell where the state is the one the lesson starts from. For each state the check must say
what is missing, and hints 1, 2 and 3 must be the ones written for that state: different
from each other and from the other states' hints, and hint 3 never the solution to copy.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
from hint_fixtures import assert_hints_fit, hints_of, learner_shell, lesson_cells

from whale_lessons import check

CHALLENGES = ("ports", "networks", "compose")
SETUP = {name: lesson_cells(name, "setup")[0] for name in CHALLENGES}
SOLUTION = {name: lesson_cells(name, "solution")[0] for name in CHALLENGES}

ORDERS_HEALTHCHECK_ONLY = """mkdir -p orders && cd orders
cat > compose.yaml <<'EOF'
services:
  db:
    image: busybox
    init: true
    command: sh -c 'sleep 3 && mkdir /data && echo ready > /data/index.html && httpd -f -p 5432 -h /data'
    healthcheck:
      test: ["CMD", "test", "-f", "/data/index.html"]
      interval: 1s
  web:
    image: busybox
    init: true
    command: sh -c 'wget -qO- http://db:5432/ && echo connected to db && exec sleep 3600'
    depends_on:
      - db
EOF
docker compose up -d
"""

# (exercise, state, how to get there, what is missing, a phrase of hint 1, 2 and 3 each)
STATES = [
    ("ports", "the lesson's setup: 8081 leads to port 8080", SETUP["ports"],
     "`site` runs, but nothing answers on port 8081",
     ("*inside* the container", "`docker port site`", "leads to the container's port 8080")),
    ("ports", "no container", "true",
     "there is no container named `site`",
     ("container is gone", "-p HOST_PORT:CONTAINER_PORT", "(`80/tcp`)")),
    ("ports", "port 80 on another host port", "docker run -d --name site -p 8082:80 webserver",
     "`site` runs, but its port 80 is published on 8082, not on 8081",
     ("before the colon", "`docker port site` shows where port 80",
      "machine's side of `-p` (8082) changed to 8081")),
    ("ports", "published on 127.0.0.1 only",
     "docker run -d --name site -p 127.0.0.1:8081:80 webserver",
     "port 8081 of the engine's machine does not answer",
     ("an interface that network reaches", "(127.0.0.1)", "without an address in front")),
    ("networks", "the lesson's setup: api on the default bridge", SETUP["networks"],
     "on `shop`, the name `api` does not resolve",
     ("which networks is `api` on?", "`docker network connect` attaches",
      "`api` is only on bridge")),
    ("networks", "no network", "true",
     "there is no network named `shop`",
     ("a network you create yourself", "`docker network create NAME`",
      "then put `api` on it")),
    ("networks", "api stopped",
     "docker network create shop && docker run -d --name api --network shop webserver "
     "&& docker stop -t 1 api",
     "`api` exists but is exited, not running",
     ("a stopped container answers nobody", "`docker start NAME`", "`docker start api`")),
    ("compose", "the lesson's setup: no healthcheck", SETUP["compose"],
     "Compose cannot tell when `db` is ready: it has no healthcheck",
     ("not once db answers", "a `healthcheck:` under `db`", "add `healthcheck:` with")),
    ("compose", "a healthcheck that web does not wait for", ORDERS_HEALTHCHECK_ONLY,
     "`db` has a healthcheck, but `web` does not wait for it to pass",
     ("it can also say what to wait for", "`service_healthy` instead of the default",
      "as a mapping, `db:` with")),
    ("compose", "the app taken down", SETUP["compose"] + "\ncd orders && docker compose down",
     "the Compose project `orders` has no containers",
     ("from the compose.yaml in its folder", "`docker compose up -d` in the folder",
      "in `orders`, `docker compose up` with `-d`")),
]
IDS = [f"{name}: {state}" for name, state, *_ in STATES]


@pytest.fixture(scope="module")
def learner(lesson_mirror, host_docker, tmp_path_factory):
    """sh(script) on a fresh engine with the lesson images, as a learner's shell runs it."""
    sh, engine = learner_shell("hints", tmp_path_factory, host_docker, lesson_mirror.url)
    yield sh
    engine.remove()


@pytest.fixture
def sh(learner):
    """`learner`, emptied after each test: no containers, networks or Compose folders."""
    yield learner
    learner("(cd orders && docker compose down -v -t 1) 2>/dev/null; rm -rf orders; "
            "docker rm -f $(docker ps -aq) 2>/dev/null; docker network prune -f")


@pytest.mark.parametrize(("name", "state", "script", "reason", "phrases"), STATES, ids=IDS)
def test_hints_fit_the_broken_state(sh, name, state, script, reason, phrases):
    made = sh(script)
    assert made.returncode == 0, made.stdout + made.stderr
    hints = assert_hints_fit(sh, name, reason, phrases, SOLUTION[name])
    assert "docker run -d --name site -p 8081:80 webserver" not in " ".join(hints)
    assert "docker network connect shop api" not in " ".join(hints)


def test_each_state_has_hints_of_its_own(sh):
    """Two broken states of one challenge never get the same hint at any level."""
    by_state = {}
    for name, state, script, _, _ in STATES:
        if name != "ports" or "127.0.0.1" in state:
            continue  # three states of one challenge; the fourth waits 10 s for an answer
        assert sh(script).returncode == 0
        by_state[state] = hints_of(sh, name)
        sh("docker rm -f site")
    for level in range(3):
        said = [hints[level] for hints in by_state.values()]
        assert len(set(said)) == len(said), said


def test_the_solution_passes_and_then_hints_are_not_needed(sh):
    assert sh(SETUP["networks"]).returncode == 0
    assert sh(SOLUTION["networks"]).returncode == 0
    out = sh("whale-check networks --hint 2")
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout == ("✔ Well done: on the network shop, http://api/ reaches the api "
                          "container by name.\n")


def test_a_fourth_hint_is_refused(sh):
    for level in ("4", "0", "-1"):
        out = sh(f"whale-check ports --hint {level}")
        assert out.returncode == 2, out.stdout + out.stderr
        assert out.stdout == ""
        assert out.stderr == (f"whale-check: there is no hint {level}: ask for --hint 1, 2 "
                              "or 3 (hint 3 is nearly the answer)\n")
    not_a_number = sh("whale-check ports --hint two")
    assert not_a_number.returncode == 2
    assert "--hint: invalid int value: 'two'" in not_a_number.stderr


def test_a_hint_names_the_next_level_until_the_last():
    verdict = check.Verdict(False, "`x` is missing", ("one", "two?", "three."))
    assert check.verdict_text("ports", verdict, 1) == (
        "✘ Not yet: `x` is missing.\n  Hint 1 of 3: one.\n"
        "  (`whale-check ports --hint 2` says more.)")
    assert check.verdict_text("ports", verdict, 2).splitlines()[1] == "  Hint 2 of 3: two?"
    assert check.verdict_text("ports", verdict, 3) == (
        "✘ Not yet: `x` is missing.\n  Hint 3 of 3: three.")


def test_every_missing_state_is_written_with_three_hints():
    """Every `raise Missing(...)` in the lessons' checks passes `hints=` with three texts,
    and a Missing with fewer is an author's error at once, not a learner's traceback later."""
    sources = sorted((Path(check.__file__).parent / "checks").glob("lesson*.py"))
    assert len(sources) >= 8
    calls = [node for source in sources for node in ast.walk(ast.parse(source.read_text()))
             if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Missing"]
    assert len(calls) >= 30
    for call in calls:
        hints = {k.arg: k.value for k in call.keywords}.get("hints")
        assert isinstance(hints, ast.Tuple), ast.unparse(call)
        assert len(hints.elts) == 3, ast.unparse(call)
    with pytest.raises(TypeError, match="needs 3 hints"):
        check.Missing("something", hints=("one", "two"))
