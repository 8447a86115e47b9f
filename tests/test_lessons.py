"""The curriculum: structure, the registry mirror, checks, and every lesson under nbval.

Everything here runs against real engines (TLS sandbox engines on the host engine),
a real `docker-registry` process, the real `whale` command and real nbval.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time

import nbformat
import pytest
from lesson_fixtures import mirrored_engine, whale_cli  # noqa: F401

from whale_core.bundle import CredentialBundle
from whale_lessons import runner as lessons
from whale_lessons.check import CHECKS
from whale_site.images import lesson_image_names

LESSONS = lessons.lesson_paths()
TOPICS = ["first-container", "lifecycle", "ports", "dockerfile", "configure", "volumes",
          "networks", "bounded", "compose", "ship-it", "secure-images", "swarm",
          "swarm-registry", "swarm-stack", "capstone-compose", "capstone-stack", "capstone-update"]


def code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


def text_of(cell) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", []))


def exercises(nb):
    """(check-before, solution, check-after) cells of each exercise in a notebook."""
    cells = code_cells(nb)
    found = []
    for i, cell in enumerate(cells):
        if "solution" in lessons.cell_tags(cell):
            before = next(c for c in reversed(cells[:i]) if "check" in lessons.cell_tags(c))
            after = next(c for c in cells[i + 1:] if "check" in lessons.cell_tags(c))
            found.append((before, cell, after))
    return found


# -- structure (no engine) -------------------------------------------------------------------
def test_thirteen_lessons_in_curriculum_order():
    assert len(LESSONS) >= 14
    numbers = [int(p.name[:2]) for p in LESSONS]
    assert numbers == list(range(1, len(LESSONS) + 1))
    used = [re.search(r"whale-check (\S+)", c.source).group(1)
            for p in LESSONS for c in code_cells(nbformat.read(p, 4))
            if "check" in lessons.cell_tags(c)]
    assert [t for t in TOPICS if t in used] == TOPICS  # every topic of the issue, in order


@pytest.mark.parametrize("path", LESSONS, ids=[p.stem for p in LESSONS])
def test_lesson_structure(path):
    """House structure: docker kernel, objectives, exercises with checks, a cleanup."""
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "docker"
    meta = lessons.lesson_meta(nb)
    assert meta["lesson"] == int(path.name[:2])
    assert meta["title"]
    assert "In this lesson you will" in nb.cells[0].source
    cells = code_cells(nb)
    assert "cleanup" in lessons.cell_tags(cells[-1]) or "cleanup" in lessons.cell_tags(cells[-2])
    found = exercises(nb)
    assert found, "a lesson has at least one exercise"
    for before, solution, after in found:
        name = before.source.split()[1]
        assert name in CHECKS
        assert after.source == before.source
        # The check is stored failing before the solution and passing after it; nbval
        # compares these outputs, so the lesson run shows the check does both.
        assert "raises-exception" in lessons.cell_tags(before)
        assert "nbval-ignore-output" not in lessons.cell_tags(before) | lessons.cell_tags(after)
        assert text_of(before).startswith("✘ Not yet:"), text_of(before)
        assert text_of(after).startswith("✔ Well done:"), text_of(after)
        assert solution.metadata.get("jupyter", {}).get("source_hidden") is True
    # A challenge starts broken: a visible setup cell, before its first check, makes the
    # broken state (the learner runs it too); its check's stored output says what is wrong.
    for i, cell in enumerate(cells):
        if "setup" in lessons.cell_tags(cell):
            assert "source_hidden" not in cell.metadata.get("jupyter", {})
            check_cell = next(c for c in cells[i + 1:] if "check" in lessons.cell_tags(c))
            assert "raises-exception" in lessons.cell_tags(check_cell), check_cell.source
    # Every cell that ran has stored outputs to compare (recorded with `whale lesson record`).
    assert all(c.execution_count for c in cells)
    # ... and they are what a learner sees: recorded with the learners' CLI, not a newer
    # one of the recording machine (which adds a stderr stream to every build).
    assert "The legacy builder is deprecated" not in json.dumps([c.outputs for c in cells])


@pytest.mark.docker
def test_lessons_run_with_the_learners_docker_cli(tmp_path):
    """The runner puts the single-user image's Docker CLI (images/cli: Debian 13's, with
    Compose v2 and buildx) first on PATH, whatever CLI this machine has."""
    env = lessons.learner_env(tmp_path, {"PATH": f"/usr/local/bin{os.pathsep}/usr/bin"})
    found = shutil.which("docker", path=env["PATH"])
    assert found, env["PATH"]
    assert found.startswith(str(lessons.images.LEARNER_CLI_CACHE)), found
    image = (lessons.images.SITE_IMAGES / "singleuser" / "Dockerfile").read_text()
    assert "COPY --from=howtowhale/cli /opt/docker-cli/bin/docker /usr/bin/docker" in image

    def version(*args):
        out = subprocess.run([found, *args], env=env, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        return out.stdout
    assert version("--version").startswith("Docker version 26."), version("--version")
    assert version("compose", "version", "--short").startswith("2.")
    assert "github.com/docker/buildx 0.13" in version("buildx", "version")


def test_lesson_new_scaffolds_the_house_structure(tmp_path):
    first = lessons.new_lesson("Hello Volumes!", directory=tmp_path)
    second = lessons.new_lesson("Second one", directory=tmp_path, swarm=True)
    assert first.name == "01-hello-volumes.ipynb"
    assert second.name == "02-second-one.ipynb"
    nb = nbformat.read(second, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "docker"
    assert lessons.lesson_meta(nb) == {"lesson": 2, "title": "Second one", "swarm": True}
    tags = [lessons.cell_tags(c) for c in code_cells(nb)]
    assert {"check", "raises-exception"} in tags
    assert {"solution"} in tags
    assert {"cleanup"} in tags
    with pytest.raises(LookupError):
        lessons.find_lessons(["nope"], directory=tmp_path)
    assert lessons.find_lessons(["2"], directory=tmp_path) == [second]
    # A lesson written for a place further on in the curriculum; a taken place is refused.
    later = lessons.new_lesson("Later on", directory=tmp_path, number=5)
    assert later.name == "05-later-on.ipynb"
    assert lessons.lesson_meta(nbformat.read(later, 4))["lesson"] == 5
    with pytest.raises(ValueError, match="lesson 2 is taken"):
        lessons.new_lesson("Again", directory=tmp_path, number=2)
    # A lesson on a Swarm of 3 nodes says so, and its first cell checks them.
    swarm = nbformat.read(lessons.new_lesson("On three", directory=tmp_path, nodes=3), 4)
    assert lessons.lesson_meta(swarm)["nodes"] == 3
    assert lessons.lesson_nodes(lessons.lesson_meta(swarm)) == 3
    assert code_cells(swarm)[0].source == "whale-check --nodes 3"


def test_lessons_on_a_swarm_of_several_nodes_check_their_nodes_first():
    """Lessons 12, 13 and 14 run on a Swarm of 3 nodes (issue 9): tested on one, and their
    first cell tells a learner with fewer nodes how to get them."""
    wanting = {}
    for path in LESSONS:
        nb = nbformat.read(path, 4)
        nodes = lessons.lesson_nodes(lessons.lesson_meta(nb))
        if nodes > 1:
            wanting[path.name[:2]] = nodes
            assert code_cells(nb)[0].source == f"whale-check --nodes {nodes}", path.name
    assert wanting == {"12": 3, "13": 3, "14": 3}


# -- the registry mirror ------------------------------------------------------------------------
def test_mirror_holds_every_lesson_image(lesson_mirror):
    assert sorted(lesson_mirror.catalog()) == [f"library/{n}" for n in lesson_image_names()]
    assert lesson_mirror.seed() == []  # unchanged images are not pushed again


def test_mirror_can_be_a_pull_through_cache(tmp_path):
    """With an upstream, the same registry caches it (not started here: no internet)."""
    from whale_site.registry import RegistryMirror
    mirror = RegistryMirror(tmp_path, address="127.0.0.1", port=5999,
                            upstream="https://registry-1.docker.io")
    config = json.loads(mirror.config())
    assert config["proxy"] == {"remoteurl": "https://registry-1.docker.io"}
    assert config["http"]["addr"] == "127.0.0.1:5999"
    assert mirror.url == "http://127.0.0.1:5999"
    assert "proxy" not in json.loads(RegistryMirror(tmp_path, address="127.0.0.1").config())


def test_mirror_says_when_its_port_is_taken(tmp_path):
    """A fixed mirror port held by another process: a clear error at once, not a timeout."""
    import socket

    from whale_site.registry import RegistryMirror
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        mirror = RegistryMirror(tmp_path, address="127.0.0.1", port=port)
        with pytest.raises(RuntimeError, match=f"127.0.0.1:{port} is taken by another process"):
            mirror.start(timeout=5)
    assert mirror.pid() is None


def test_mirror_reports_how_its_process_ended(tmp_path):
    """A registry that cannot start says how it ended and what it logged."""
    from whale_site.registry import RegistryMirror
    mirror = RegistryMirror(tmp_path, address="127.0.0.1", port=0, upstream="://not-a-url")
    started = time.monotonic()
    with pytest.raises(RuntimeError, match=r"docker-registry (exited with status|killed by)"):
        mirror.start(timeout=20, attempts=1)
    assert time.monotonic() - started < 15


def test_docker_pull_hello_world_through_the_mirror(mirrored_engine, lesson_mirror):
    """`docker pull hello-world` works on an engine that reaches no registry but the mirror."""
    env = dict(os.environ, **CredentialBundle.load(mirrored_engine.bundle_dir).env)
    out = subprocess.run(["docker", "pull", "hello-world"], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "Downloaded newer image for hello-world:latest" in out.stdout
    run = subprocess.run(["docker", "run", "--rm", "hello-world"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert "Hello from How to Whale!" in run.stdout
    info = subprocess.run(["docker", "info", "--format", "{{json .RegistryConfig.Mirrors}}"],
                          env=env, capture_output=True, text=True, timeout=30).stdout
    assert lesson_mirror.url in info


def test_every_lesson_ends_in_a_challenge_that_starts_broken():
    """Each lesson's last exercise is a challenge: a visible setup cell before it breaks
    something, and the learner finds out what and fixes it (issue 15)."""
    for path in LESSONS:
        nb = nbformat.read(path, 4)
        cells = code_cells(nb)
        last_check = exercises(nb)[-1][0]
        setups = [c for c in cells[:cells.index(last_check)] if "setup" in lessons.cell_tags(c)]
        assert setups, f"{path.name} ends in an exercise that starts from nothing broken"
        for cell in setups:
            assert not cell.metadata.get("jupyter", {}).get("source_hidden"), path.name


# -- every check fails before its exercise and passes after -----------------------------------
# What the lesson did before its exercise, besides its challenge's setup cells.
SETUP = {"swarm": "docker swarm init --advertise-addr 127.0.0.1 >/dev/null",
         # Lesson 14 works in its app's folder (here the test's own); its images in short:
         # shop:1 serves a page on port 80, shop:2 on $PORT, 8080 unless set.
         "capstone-compose": """docker pull -q webserver && docker pull -q busybox
printf 'FROM webserver\\nRUN mkdir /data\\n' | docker build -q -t shop:1 -
""",
         "capstone-stack": """docker pull -q webserver && docker pull -q busybox
printf 'FROM webserver\\nRUN mkdir /data\\n' | docker build -q -t shop:1 -
docker swarm init --advertise-addr 127.0.0.1 >/dev/null
printf 'whale-admin-2024' | docker secret create admin_password -
echo '<h1>Welcome to SHOP_NAME!</h1>' > page.html
""",
         "capstone-update": """docker pull -q webserver && docker pull -q busybox
printf 'FROM webserver\\nRUN mkdir /data\\n' | docker build -q -t shop:1 -
docker swarm init --advertise-addr 127.0.0.1 >/dev/null
printf 'whale-admin-2024' | docker secret create admin_password -
echo '<h1>Welcome to SHOP_NAME!</h1>' > page.html
cat > stack.yaml <<'EOF'
services:
  web:
    image: shop:1
    init: true
    environment:
      SHOP_NAME: Whale Shop
    volumes:
      - data:/data
    healthcheck:
      test: ["CMD", "wget", "-qO-", "http://localhost/"]
      interval: 1s
    configs:
      - source: page
        target: /shop/index.html
    secrets:
      - admin_password
    deploy:
      replicas: 2
      endpoint_mode: dnsrr
      update_config:
        order: start-first
        failure_action: rollback
        monitor: 5s
volumes:
  data:
configs:
  page:
    file: ./page.html
secrets:
  admin_password:
    external: true
networks:
  default:
    attachable: true
EOF
docker stack deploy --detach=false -c stack.yaml shop
printf 'FROM shop:1\\nCMD ["sh", "-c", "exec httpd -f -p ${PORT:-8080} -h /www"]\\n' |
  docker build -q -t shop:2 -
sed -i 's/image: shop:1/image: shop:2/' stack.yaml
"""}


def _solutions() -> dict[str, str]:
    found = {}
    for path in LESSONS:
        for before, solution, _ in exercises(nbformat.read(path, 4)):
            found[before.source.split()[1]] = solution.source
    return found


def _setups() -> dict[str, str]:
    """The setup cells of each challenge (a broken state the learner starts from)."""
    found = {}
    for path in LESSONS:
        nb = nbformat.read(path, 4)
        cells = code_cells(nb)
        for before, _, _ in exercises(nb):
            upto = cells[:cells.index(before)]
            found[before.source.split()[1]] = "\n".join(
                c.source for c in upto if "setup" in lessons.cell_tags(c))
    return found


# Lesson 13's checks need a Swarm of three nodes: tests/test_cluster.py runs them from nothing
# to done on one (test_lesson13s_checks_say_what_is_missing_on_a_real_swarm_of_three).
ON_THREE_NODES = {"swarm-registry", "swarm-stack"}


def test_the_checks_tested_on_three_nodes_are_lesson_13s():
    assert {n for n, e in CHECKS.items() if e.lesson == 13} == ON_THREE_NODES


@pytest.mark.parametrize("name", [n for n in CHECKS if n not in ON_THREE_NODES])
def test_check_fails_before_and_passes_after(name, mirrored_engine, tmp_path):
    """Run `whale-check NAME` on a fresh engine, then the lesson's solution, then again."""
    env = lessons.learner_env(tmp_path, dict(os.environ,
                                             **CredentialBundle.load(mirrored_engine.bundle_dir).env))
    env.pop("REQUESTS_CA_BUNDLE", None)  # see whale_lessons.runner.lesson_engine
    env.pop("CURL_CA_BUNDLE", None)

    def sh(script):
        return subprocess.run(["bash", "-c", script], env=env, cwd=tmp_path, timeout=180,
                              stdin=subprocess.DEVNULL, capture_output=True, text=True)
    setup = "\n".join(s for s in (SETUP.get(name), _setups()[name]) if s)
    if setup:
        if "docker pull" not in setup and name != "swarm":
            assert sh("docker pull -q busybox && docker pull -q webserver").returncode == 0
        made = sh(setup)
        assert made.returncode == 0, made.stdout + made.stderr
    before = sh(f"whale-check {name}")
    assert before.returncode == 1, before.stdout + before.stderr
    assert before.stdout.startswith("✘ Not yet:")
    assert f"Hint: run `whale-check {name} --hint 1`" in before.stdout
    solution = sh(_solutions()[name])
    assert solution.returncode == 0, solution.stdout + solution.stderr
    after = sh(f"whale-check {name}")
    assert after.returncode == 0, after.stdout + after.stderr
    assert after.stdout.startswith("✔ Well done:")


def test_check_command_lists_and_refuses_unknown():
    out = subprocess.run(["whale-check", "--list"], capture_output=True, text=True)
    assert out.returncode == 0
    assert all(name in out.stdout for name in CHECKS)
    bad = subprocess.run(["whale-check", "nope"], capture_output=True, text=True)
    assert bad.returncode == 2
    assert "no exercise called 'nope'" in bad.stderr


# -- whale lesson test: every lesson under nbval, each on a fresh engine -------------------------
@pytest.mark.timeout(1200)
def test_whale_lesson_test_passes_every_lesson(whale_cli):
    out = whale_cli("lesson", "test", "--jobs", "2")
    print(out.stdout)
    assert out.returncode == 0, out.stdout
    assert f"{len(LESSONS)} of {len(LESSONS)} lessons passed" in out.stdout
    for path in LESSONS:
        assert f"PASS {path.stem} " in out.stdout


@pytest.fixture(scope="module")
def broken_run(whale_cli, tmp_path_factory):
    """Lesson 1 with a typo in a command and its exercise's solution removed, under test."""
    src = lessons.LESSONS_DIR / "01-first-container.ipynb"
    nb = nbformat.read(src, as_version=4)
    cells = code_cells(nb)
    typo = next(i for i, c in enumerate(cells) if c.source == "docker run hello-world"
                and "nbval-ignore-output" not in lessons.cell_tags(c))
    # A typo in the command, not in the image name: a missing image would make the engine
    # look for it past the mirror, on Docker Hub, beyond this machine.
    cells[typo].source = "docker runn hello-world"
    solution = next(c for c in cells if "solution" in lessons.cell_tags(c))
    check_after = cells.index(solution)  # the check moves up into the solution's place
    nb.cells.remove(solution)
    path = tmp_path_factory.mktemp("broken") / "01-first-container.ipynb"
    nbformat.write(nb, path)
    out = whale_cli("lesson", "test", str(path))
    print(out.stdout)
    return out, typo, check_after


def test_a_typo_fails_the_lesson_and_names_the_cell(broken_run):
    out, typo, _ = broken_run
    assert out.returncode == 1
    assert "FAIL 01-first-container" in out.stdout
    assert f"Cell {typo}: the cell failed" in out.stdout
    assert "$ docker runn hello-world" in out.stdout
    why = out.stdout.split(f"Cell {typo}:", 1)[1].split("  Cell ", 1)[0]
    # and why: docker's own error (worded differently by CLI versions)
    assert "runn" in why, why
    assert "not a docker command" in why or "unknown command" in why, why


def test_a_missing_solution_fails_at_the_check_cell(broken_run):
    out, _, check = broken_run
    assert f"Cell {check}: the cell failed" in out.stdout
    after = out.stdout.split(f"Cell {check}:", 1)[1]
    assert "$ whale-check first-container" in after
    # The challenge's setup left `my-first` made but never run (a typo in its command).
    assert "Not yet: `my-first` exists, but it never ran" in after
