"""`whale-check bounded --hint N`: Lesson 8's challenge, the shop, in its broken states.

The shop is an image the lesson's setup cell builds: it loads a 20 MB catalog into memory,
then serves its pages on port 80, and its `HEALTHCHECK` asks port 8080. Started with
`--memory 16m`, the kernel kills it while it loads. Each test below puts the container
`shop` into one distinct broken state on one engine for the module (the lesson's own setup
cell is one of them), and asserts what the check says and a phrase of each hint; the
lesson's solution then passes, and needs no hint.
"""
from __future__ import annotations

import pytest
from hint_fixtures import assert_hints_fit, learner_shell, lesson_cells

SETUP = lesson_cells("bounded", "setup")[0]
SOLUTION = lesson_cells("bounded", "solution")[0]


def wait_for(status: str) -> str:
    return ("timeout 30 sh -c 'until [ \"$(docker inspect --format "
            f"\"{{{{.State.Health.Status}}}}\" shop)\" = {status} ]; do sleep 1; done'")


HEALTHY_CMD = "--health-cmd 'wget -q --spider http://localhost/' --health-interval 1s"

# (state, how to get there from the built image, what is missing, a phrase of hint 1, 2, 3)
STATES = [
    ("the lesson's setup: killed at its 16m limit while it loads", SETUP,
     "`shop` is not running: it exited with code 137",
     ("who else kills a container?", "`docker inspect --format '{{.State.OOMKilled}}' shop`",
      "the kernel killed `shop` at its 16 MiB limit")),
    ("a limit raised, but still too small", "docker run -d --name shop --memory 20m "
     "--memory-swap 20m shop",
     "`shop` is not running: it exited with code 137",
     ("who else kills a container?", "{{.HostConfig.Memory}}", "at its 20 MiB limit")),
    ("room to load, but the image's healthcheck asks port 8080",
     f"docker run -d --name shop --memory 64m shop && {wait_for('unhealthy')}",
     "`shop` runs, but Docker reports it unhealthy",
     ("what does it say when it fails?", "`docker inspect --format '{{json .State.Health}}' shop`",
      "fetches port 8080 of the container (`wget -q --spider http://localhost:8080/ || exit 1`)"
      ", but the shop's httpd listens on port 80")),
    ("a healthcheck that passes, but no memory limit",
     f"docker run -d --name shop {HEALTHY_CMD} shop && {wait_for('healthy')}",
     "`shop` runs without a memory limit",
     ("take all the memory of the engine's machine", "says 0: no limit",
      "about twice its 20 MB catalog, with room to spare")),
    ("a memory limit, but the healthcheck turned off",
     "docker run -d --name shop --memory 64m --no-healthcheck shop",
     "Docker cannot tell whether `shop` works: it has no healthcheck",
     ("made with `--no-healthcheck`?", "`docker inspect --format '{{json .Config.Healthcheck}}' shop`",
      "fetches its own page from http://localhost/ (port 80)")),
    ("healthy and bounded, but stopped",
     f"docker run -d --name shop --memory 64m {HEALTHY_CMD} shop && {wait_for('healthy')} "
     "&& docker stop shop",
     "`shop` is not running: it exited with code 0",
     ("a stopped shop serves nobody", "`docker logs shop`", "`docker start shop`")),
    ("the web server's image in the shop's place", "docker run -d --name shop --memory 64m webserver",
     "container `shop` was made from `webserver`, not from the `shop` image",
     ("its catalog, its web server and its healthcheck", "`docker rm -f shop` frees the name",
      "run the `shop` image as `shop` again")),
    ("no container", "true",
     "there is no container named `shop`",
     ("made from the `shop` image", "`docker images shop`",
      "with a `--memory` limit it fits in")),
]
IDS = [state for state, *_ in STATES]
SEEN: dict[str, list[str]] = {}  # state: its three hints, as the tests below found them


@pytest.fixture(scope="module")
def learner(lesson_mirror, host_docker, tmp_path_factory):
    """sh(script) on a fresh engine with the lesson images, where the lesson's setup cell
    has built the `shop` image (and started the broken shop)."""
    sh, engine = learner_shell("hints-08", tmp_path_factory, host_docker, lesson_mirror.url)
    built = sh(SETUP)
    assert built.returncode == 0, built.stdout + built.stderr
    yield sh
    engine.remove()


@pytest.fixture
def sh(learner):
    """`learner`, with no container `shop` before each test and after it."""
    learner("docker rm -f shop")
    yield learner
    learner("docker rm -f shop")


@pytest.mark.parametrize(("state", "script", "reason", "phrases"), STATES, ids=IDS)
def test_hints_fit_the_broken_state(sh, state, script, reason, phrases):
    made = sh(script)
    assert made.returncode == 0, made.stdout + made.stderr
    SEEN[state] = assert_hints_fit(sh, "bounded", reason, phrases, SOLUTION)


@pytest.mark.docker  # reads what the broken states' tests saw on an engine
def test_each_state_has_hints_of_its_own():
    """Two distinct broken states never get the same hint at any level (the second
    out-of-memory kill is the first one's state at another limit: see the next test)."""
    if len(SEEN) < len(STATES):
        pytest.skip("runs after every broken state's test")
    distinct = [hints for state, hints in SEEN.items() if state != IDS[1]]
    for level in range(3):
        said = [hints[level] for hints in distinct]
        assert len(set(said)) == len(said), said


def test_the_solution_passes_and_then_hints_are_not_needed(sh):
    assert sh(SETUP).returncode == 0
    fixed = sh(SOLUTION)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    out = sh("whale-check bounded --hint 3")
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout == ("✔ Well done: shop runs within 64 MiB of memory, and its own "
                          "healthcheck says it is healthy.\n")
    # ... and the shop it passed is the one the lesson asked for: the fixed image's own
    # healthcheck, the limit, and the page.
    facts = sh("docker inspect --format '{{.HostConfig.Memory}} {{json .Config.Healthcheck.Test}}'"
               " shop && docker exec shop wget -qO- http://localhost/")
    assert facts.returncode == 0, facts.stderr
    assert facts.stdout.startswith(
        '67108864 ["CMD-SHELL","wget -q --spider http://localhost/ || exit 1"]\n')
    assert "Hello from a container" in facts.stdout


@pytest.mark.docker  # reads what the broken states' tests saw on an engine
def test_hint_3_says_which_limit_killed_the_shop():
    """One state at two limits (killed at 16 MiB, then at 20 MiB): hints 1 and 2 are the
    same, hint 3 names the limit the check found."""
    if len(SEEN) < len(STATES):
        pytest.skip("runs after every broken state's test")
    setup, raised = SEEN[IDS[0]], SEEN[IDS[1]]
    assert setup[0] == raised[0]
    assert setup[1] == raised[1]
    assert setup[2] != raised[2]
