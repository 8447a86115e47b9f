"""Lesson 10's challenge (`whale-check ship-it`): hints that fit each broken state.

The challenge starts with the lesson's registry (its first setup cell) and a colleague's
shop 1.0 pushed without a tag and run by that tag (its second). Each state below is made
on one fresh engine, emptied between states, from the lesson's own setup cells and a few
commands on top; for each, the check must say what is missing, with three hints of its
own, hint 3 never the solution's command.
"""
from __future__ import annotations

import pytest
from hint_fixtures import assert_hints_fit, learner_shell, lesson_cells

SETUP = "\n".join(lesson_cells("ship-it", "setup"))
SOLUTION = lesson_cells("ship-it", "solution")[0]
REGISTRY_ONLY = lesson_cells("ship-it", "setup")[0]
PUSH_1_0 = "docker tag shop:1.0 127.0.0.1:5000/shop:1.0 && docker push -q 127.0.0.1:5000/shop:1.0"
DIGEST_OF = "docker image inspect --format '{{{{index .RepoDigests 0}}}}' {}"

# (state, how to get there, what is missing, a phrase of hint 1, 2 and 3 each)
STATES = [
    ("the lesson's setup: shop pushed without a tag", SETUP,
     "your registry's `shop` has no tag `1.0` (its tags: latest)",
     ("a name without a tag means `:latest`", "`docker tag IMAGE REGISTRY/REPOSITORY:TAG`",
      "`latest` there is `shop:1.0` pushed without a tag")),
    ("1.0 pushed, shop still runs by a tag", f"{SETUP}\n{PUSH_1_0}",
     "`shop` runs `127.0.0.1:5000/shop`, a name whose tag can move, not a digest",
     ("a digest names one image's bytes", "`docker run` takes `NAME@sha256:…`",
      "the tag `1.0` has the digest sha256:")),
    ("another image pushed as 1.0",
     f"{SETUP}\ndocker tag busybox 127.0.0.1:5000/shop:1.0 && "
     "docker push -q 127.0.0.1:5000/shop:1.0",
     "`127.0.0.1:5000/shop:1.0` in your registry is not the image `shop:1.0` built here",
     ("a tag points at whatever was pushed to it last",
      "lists the digests the image got when it was pushed",
      "name the image built here `127.0.0.1:5000/shop:1.0` and push it again")),
    ("shop runs the digest of another tag",
     f"{SETUP}\n{PUSH_1_0}\ndocker tag webserver 127.0.0.1:5000/shop:0.9 && "
     "docker push -q 127.0.0.1:5000/shop:0.9 && docker rm -f shop && "
     "docker run -d --name shop \"$(docker image inspect --format "
     "'{{range .RepoDigests}}{{println .}}{{end}}' webserver | grep '^127.0.0.1:5000/shop@')\"",
     None,  # the reason names the digest: see test_hints_fit_the_broken_state
     ("a digest names exactly one image", "prints the digest of `1.0` with its repository",
      "but `1.0` is sha256:")),
    ("nothing pushed to shop yet",
     f"{REGISTRY_ONLY}\nmkdir -p shop && cd shop && echo '<h1>Shop 1.0</h1>' > index.html && "
     "printf 'FROM webserver\\nCOPY index.html /www/index.html\\n' > Dockerfile && "
     "docker build -q -t shop:1.0 .",
     "your registry holds no repository `shop` (it holds: nothing)",
     ("an image named just `shop:1.0` goes nowhere", "then `docker push` that name",
      "with `127.0.0.1:5000/` in front")),
    ("the registry removed", f"{SETUP}\ndocker rm -f registry",
     "no registry answers on 127.0.0.1:5000: no container publishes port 5000",
     ("the images pushed to it live in its volume", "`docker ps -a` lists every container",
      "the volume `registry-data` at /var/lib/registry")),
    ("the registry stopped", f"{SETUP}\ndocker stop registry",
     "your registry `registry` is exited, not running",
     ("a stopped registry answers no push and no pull", "`docker start NAME`",
      "`docker start registry`")),
]
IDS = [state for state, *_ in STATES]
SEEN: dict[str, list[str]] = {}


@pytest.fixture(scope="module")
def learner(lesson_mirror, host_docker, tmp_path_factory):
    """sh(script) on a fresh engine with the lesson images, as a learner's shell runs it."""
    sh, engine = learner_shell("hints10", tmp_path_factory, host_docker, lesson_mirror.url,
                               images=("busybox", "webserver", "registry"))
    yield sh
    engine.remove()


@pytest.fixture
def sh(learner):
    """`learner`, emptied after each test: no containers, no registry network or volume,
    no shop folder, only the lesson images."""
    yield learner
    emptied = learner(
        "docker rm -f $(docker ps -aq) >/dev/null 2>&1; rm -rf shop; "
        "docker network rm shipping >/dev/null 2>&1; "
        "docker volume rm registry-data >/dev/null 2>&1; "
        "docker images --format '{{.Repository}}:{{.Tag}}' | "
        "grep -v -e '^busybox:' -e '^webserver:' -e '^registry:' | "
        "xargs -r docker image rm -f >/dev/null; "
        "docker images --filter dangling=true -q | xargs -r docker image rm -f >/dev/null; "
        "docker images --format '{{.Repository}}' | sort | tr '\\n' ' '")
    assert emptied.stdout == "busybox registry webserver ", emptied.stdout + emptied.stderr


@pytest.mark.parametrize(("state", "script", "reason", "phrases"), STATES, ids=IDS)
def test_hints_fit_the_broken_state(sh, state, script, reason, phrases):
    made = sh(script)
    assert made.returncode == 0, made.stdout + made.stderr
    digest = sh(DIGEST_OF.format("127.0.0.1:5000/shop:1.0") + " 2>/dev/null").stdout.strip()
    if reason is None:  # shop runs 0.9 by its digest
        used = sh("docker container inspect --format '{{.Config.Image}}' shop").stdout.strip()
        assert used.startswith("127.0.0.1:5000/shop@sha256:"), used
        assert used != digest, used
        name, _, other = used.partition("@")
        reason = f"`shop` runs `{name}@{other[:19]}…`, not `127.0.0.1:5000/shop:1.0`'s digest"
    hints = assert_hints_fit(sh, "ship-it", reason, phrases, SOLUTION)
    if "remove `shop` and run it again" in hints[2]:
        # nearly the answer: the digest the check found, in full, for the learner to use
        assert digest.split("@")[1] in hints[2], (digest, hints[2])
    SEEN[state] = hints


@pytest.mark.docker  # reads what the broken states' tests saw on an engine
def test_each_state_has_hints_of_its_own():
    """Two broken states never get the same hint at any level (from the states above)."""
    if len(SEEN) < 3:
        pytest.skip("needs the states above, run in this session")
    for level in range(3):
        said = [hints[level] for hints in SEEN.values()]
        assert len(set(said)) == len(said), said


def test_the_solution_passes(sh):
    made = sh(SETUP)
    assert made.returncode == 0, made.stdout + made.stderr
    solved = sh(SOLUTION)
    assert solved.returncode == 0, solved.stdout + solved.stderr
    out = sh("whale-check ship-it --hint 1")
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout == ("✔ Well done: shop runs 127.0.0.1:5000/shop:1.0 from your "
                          "registry, pinned to its digest.\n")
    # ... and a later push to 1.0 does not change what shop runs
    moved = sh("docker tag busybox 127.0.0.1:5000/shop:1.0 && "
               "docker push -q 127.0.0.1:5000/shop:1.0 && "
               "docker container inspect --format '{{.Config.Image}} {{.State.Status}}' shop")
    assert moved.returncode == 0, moved.stderr
    assert moved.stdout.split()[-1] == "running"
    after = sh("whale-check ship-it")
    assert after.returncode == 1
    assert "is not the image `shop:1.0` built here" in after.stdout
