"""Lesson 11's challenge (`whale-check secure-images`): hints that fit each broken state.

The challenge starts from the image `shop`, built with its token as a build argument and
its whole folder (token.txt too) copied into /www, running as root (the lesson's setup
cell). Each state below is made on one fresh engine, emptied between states: the setup
cell itself, and shop folders rebuilt part of the way to the solution. For each, the check
must say what is missing, with three hints of its own, hint 3 never the solution's command.
"""
from __future__ import annotations

import pytest
from hint_fixtures import assert_hints_fit, learner_shell, lesson_cells

SETUP = lesson_cells("secure-images", "setup")[0]
SOLUTION = lesson_cells("secure-images", "solution")[0]

PAGE = "echo 'tk-shop-4711' > token.txt && echo '<h1>The whale shop</h1>' > index.html"
PRICES_BY_SECRET = ('RUN --mount=type=secret,id=token test -s /run/secrets/token '
                    '&& echo "<p>Today: apples 1.20</p>" >> /www/index.html')
APP_USER = ("RUN echo 'app:x:10001:10001::/home/app:/bin/sh' >> /etc/passwd "
            "&& echo 'app:x:10001:' >> /etc/group")
IGNORE_TOKEN = "printf 'token.txt\\n' > .dockerignore"


def shop(*lines: str, ignore: bool = True, build: str = "--secret id=token,src=token.txt",
         run: str | None = "--read-only --cap-drop ALL") -> str:
    """A script that writes the folder shop with a Dockerfile of `lines` after
    `FROM webserver`, builds the image shop with `build`, and runs it as shop with `run`
    (None: no container)."""
    dockerfile = "\n".join(("FROM webserver", "LABEL org.opencontainers.image.title=shop",
                            *lines))
    script = (f"mkdir -p shop && cd shop && {PAGE}\n"
              + (f"{IGNORE_TOKEN}\n" if ignore else "")
              + f"cat > Dockerfile <<'EOF'\n{dockerfile}\nEOF\n"
              + f"docker build -q {build} -t shop .\n")
    if run is not None:
        script += f"docker run -d --name shop {run} shop\n"
    return script + "cd ..\n"


SECURE_IMAGE = ("COPY . /www/", PRICES_BY_SECRET, APP_USER, "USER app")

# (state, how to get there, what is missing, a phrase of hint 1, 2 and 3 each)
STATES = [
    ("the lesson's setup: a build argument and the whole folder in /www", SETUP,
     "`docker history --no-trunc shop` shows the token",
     ("with the build arguments a `RUN` saw", "`docker build --secret id=token,src=token.txt`",
      "drop `ARG TOKEN`")),
    ("no image", "true",
     "there is no image `shop`",
     ("built from the folder `shop`", "`docker build -t shop .` in the folder `shop`",
      "handing the build the token as a secret")),
    ("the token in a label given on the command line",
     shop("COPY . /www/", PRICES_BY_SECRET, APP_USER, "USER app",
          build="--secret id=token,src=token.txt --label token=tk-shop-4711", run=None),
     "`docker inspect shop` shows the token in the image's configuration",
     ("goes wherever the image goes", "`docker build --label` write there",
      "without the token in an `ENV`, a `LABEL` or a `--label`")),
    ("a secret mount, but token.txt copied into /www",
     shop("COPY . /www/", PRICES_BY_SECRET, APP_USER, "USER app", ignore=False),
     "the image `shop` holds the token in the file /www/token.txt",
     ("copies the whole build context", "a `.dockerignore` file next to the Dockerfile",
      "/www/token.txt is then gone")),
    ("no USER", shop("COPY . /www/", PRICES_BY_SECRET),
     "containers of the image `shop` run as root",
     ("an image runs as root unless its Dockerfile names another user",
      "`USER NAME` in the Dockerfile", "end with `USER app`")),
    ("USER app, but no app in /etc/passwd", shop("COPY . /www/", PRICES_BY_SECRET, "USER app"),
     "`shop` could not start: its user is not in the image's /etc/passwd",
     ("`USER app` needs a user `app`", "unable to find user app",
      "`app:x:10001:10001::/home/app:/bin/sh` to /etc/passwd")),
    ("no container", shop(*SECURE_IMAGE, run=None),
     "there is no container named `shop`",
     ("the image is right now", "`docker run -d --name shop ...`",
      "with a read-only file system and every capability dropped")),
    ("the image rebuilt, the container still the old one",
     SETUP + "\n" + shop(*SECURE_IMAGE, run=None),
     "the container `shop` runs an old build of the image `shop`",
     ("a new build changes no running container", "`docker rm -f shop` removes the old",
      "run the image `shop` again as `shop`, in the background")),
    ("run as root with --user 0", shop(*SECURE_IMAGE, run="--user 0 --read-only --cap-drop ALL"),
     "the container `shop` runs as root",
     ("`docker run --user` overrides it", "`docker inspect --format '{{.Config.User}}' shop`",
      "without `--user root` (or `--user 0`)")),
    ("not read-only", shop(*SECURE_IMAGE, run="--cap-drop ALL"),
     "the container `shop` may write to its own file system",
     ("nobody in it needs to change them", "`docker run --read-only`",
      "run it again with `--read-only`")),
    ("read-only, capabilities kept", shop(*SECURE_IMAGE, run="--read-only"),
     "the container `shop` keeps Docker's default capabilities",
     ("needs none of the capabilities Docker gives", "`docker run --cap-drop ALL`",
      "the word for all of them")),
    ("the prices step dropped", shop("COPY . /www/", APP_USER, "USER app"),
     "`shop` does not serve its page with today's prices",
     ("today's prices from the `RUN` that uses the token",
      "`docker exec shop wget -qO- http://localhost/`", "keep `COPY . /www/`")),
]
IDS = [state for state, *_ in STATES]


@pytest.fixture(scope="module")
def learner(lesson_mirror, host_docker, tmp_path_factory):
    """sh(script) on a fresh engine with the lesson images, as a learner's shell runs it."""
    sh, engine = learner_shell("hints11", tmp_path_factory, host_docker, lesson_mirror.url)
    yield sh
    engine.remove()


@pytest.fixture
def sh(learner):
    """`learner`, emptied after each test: no container or image `shop`, no folder `shop`."""
    yield learner
    learner("docker rm -f shop; rm -rf shop; docker image rm shop; "
            "docker image prune -f --filter label=org.opencontainers.image.title=shop")


@pytest.fixture(scope="module")
def seen() -> dict[str, list[str]]:
    """The hints each state got, for the test that they differ between states."""
    return {}


@pytest.mark.parametrize(("state", "script", "reason", "phrases"), STATES, ids=IDS)
def test_hints_fit_the_broken_state(sh, seen, state, script, reason, phrases):
    made = sh(script)
    assert made.returncode == 0, made.stdout + made.stderr
    seen[state] = assert_hints_fit(sh, "secure-images", reason, phrases, SOLUTION)


@pytest.mark.docker  # reads what the broken states' tests saw on an engine
def test_each_state_has_hints_of_its_own(seen):
    """Two broken states never get the same hint at any level."""
    if len(seen) < 2:
        pytest.skip("run with the broken states")
    for level in range(3):
        said = [hints[level] for hints in seen.values()]
        assert len(set(said)) == len(said), said


def test_the_solution_passes_and_then_hints_are_not_needed(sh):
    assert sh(SETUP).returncode == 0
    solved = sh(SOLUTION)
    assert solved.returncode == 0, solved.stdout + solved.stderr
    out = sh("whale-check secure-images --hint 2")
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout == ("✔ Well done: shop runs as app, read-only and without "
                          "capabilities, from an image that keeps no token.\n")
    history = sh("docker history --no-trunc --format '{{.CreatedBy}}' shop")
    assert "tk-shop-4711" not in history.stdout
    assert "--mount" not in history.stdout
    assert "RUN /bin/sh -c test -s /run/secrets/token" in history.stdout
