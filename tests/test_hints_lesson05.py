"""Lesson 5's challenge on a real engine: `app`, from the lesson's image `shop`, stops as
soon as it starts (its `-e CURRENCY=EUR` came after the image name, so the app got it as
arguments, not as an environment variable). Each broken state gets the check's reason and
the three hints written for it; the lesson's own setup cells make the first one, and the
lesson's solution passes.
"""
from __future__ import annotations

import pytest
from hint_fixtures import assert_hints_fit, hints_of, learner_shell, lesson_cells

SETUP = lesson_cells("configure", "setup")
BUILD = next(cell for cell in SETUP if "docker build" in cell)
SOLUTION = lesson_cells("configure", "solution")[0]
NOT_STARTED = "`app` is not running: it exited with code 1"

# (state, how to get there from an engine holding the image `shop`, what is missing,
#  a phrase of hint 1, 2 and 3 each)
STATES = [
    ("the lesson's setup: -e after the image name", "\n".join(SETUP), NOT_STARTED,
     ("said why before it ended", "`docker inspect --format '{{json .Config.Env}} {{json "
      ".Args}}' app`", "its arguments (`.Args`) hold `-e CURRENCY=EUR`, but its "
      "environment has no CURRENCY")),
    ("no CURRENCY at all", "docker run -d --name app shop", NOT_STARTED,
     ("said why before it ended", "`docker logs app` shows what the app said",
      "a container's environment is set when it is made")),
    ("a CURRENCY the app does not know", "docker run -d --name app -e CURRENCY=euro shop",
     "`app` is not running: it exited with code 1, with CURRENCY=euro",
     ("did not like its value", "says which values the app takes",
      "CURRENCY is `euro`, but the app takes `EUR` or `USD`, and")),
    ("quotes kept by --env-file",
     "echo 'CURRENCY=\"EUR\"' > shop.env && docker run -d --name app --env-file shop.env shop",
     "`app` is not running: it exited with code 1, with CURRENCY=\"EUR\"",
     ("did not like its value", "shows the exact value it got",
      "(`--env-file` keeps quotes as part of the value)")),
    ("running, in dollars", "docker run -d --name app -e CURRENCY=USD shop",
     "`app` runs, but serves its prices in USD, not in euros (EUR)",
     ("the shop sells in euros", "it is set when a container is made",
      "CURRENCY is USD: remove `app` and make it again with the code of the euro")),
    ("configured, but stopped",
     "docker run -d --name app -e CURRENCY=EUR shop && docker stop -t 1 app",
     "`app` has CURRENCY=EUR, but is not running: it exited with code 137",
     ("a stopped app serves nobody", "`docker start app` starts it again",
      "its environment stays as it was made")),
    ("another entrypoint", "docker run -d --name app --entrypoint sleep shop 300",
     "`app` does not run the shop's app: it runs `sleep 300`",
     ("the image's ENTRYPOINT, /app.sh, is the app", "`--entrypoint` replaces",
      "without `--entrypoint` and without a command after the image name")),
    ("another image", "docker run -d --name app busybox sleep 300",
     "container `app` was not made from the image `shop`",
     ("`app` runs another one", "`docker rm -f app` frees the name",
      "configured as its log asks")),
    ("no container", "true", "there is no container named `app`",
     ("made from the image `shop`", "docker's options go between `run` and the image name",
      "with its currency in an environment variable")),
]


@pytest.fixture(scope="module")
def learner(lesson_mirror, host_docker, tmp_path_factory):
    """sh(script) on a fresh engine holding busybox and the lesson's image `shop`."""
    sh, engine = learner_shell("hints05", tmp_path_factory, host_docker, lesson_mirror.url,
                               images=("busybox",))
    built = sh(BUILD)
    assert built.returncode == 0, built.stdout + built.stderr
    yield sh
    engine.remove()


@pytest.fixture
def sh(learner):
    """`learner`, with no containers after each test."""
    yield learner
    learner("docker rm -f $(docker ps -aq) 2>/dev/null; rm -f shop.env")


@pytest.mark.parametrize(("state", "script", "reason", "phrases"), STATES,
                         ids=[state for state, *_ in STATES])
def test_hints_fit_the_broken_state(sh, state, script, reason, phrases):
    made = sh(script)
    assert made.returncode == 0, made.stdout + made.stderr
    hints = assert_hints_fit(sh, "configure", reason, phrases, SOLUTION)
    assert "-e CURRENCY=EUR shop" not in " ".join(hints)


def test_each_state_has_hints_of_its_own(sh):
    """Distinct unfinished states never share a hint at any level. The setup's state and
    `no CURRENCY at all` are one state (no CURRENCY), as are a value the app does not know
    and one in quotes: their third hints say what the check found."""
    by_state = {}
    for state, script, *_ in STATES:
        if state in ("the lesson's setup: -e after the image name",
                     "quotes kept by --env-file"):
            continue  # the same states as `no CURRENCY at all` and `a CURRENCY the app...`
        assert sh(script).returncode == 0, state
        by_state[state] = hints_of(sh, "configure")
        sh("docker rm -f app")
    for level in range(3):
        said = [hints[level] for hints in by_state.values()]
        assert len(set(said)) == len(said), said


def test_the_lesson_solution_passes(sh):
    made = sh("\n".join(SETUP))
    assert made.returncode == 0, made.stdout + made.stderr
    fixed = sh(SOLUTION)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    out = sh("whale-check configure --hint 3")
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout == ("✔ Well done: app serves its prices in euros (coffee: 2.50 EUR), "
                          "with CURRENCY=EUR.\n")
