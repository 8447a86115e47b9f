"""Issue 13, proved in CI: the README's commands work on a new Debian 12 machine.

The machine is a container of the local debootstrap base (`debian:bookworm-slim`, Debian's
minbase: no python3, no Docker) holding this work tree (the files git tracks or would
track, uncommitted edits included) and nothing else but this machine's CA bundle, through
which package registries are reached. It is a nested engine, so `./whale up` does all a
new machine needs: apt (python3, docker.io, ...), starting a dockerd of its own, .venv,
configurable-http-proxy, the site's images built inside; then the hub answers on
/hub/api and lesson 1 passes under nbval against the mirror `whale up` started.
`./whale down` leaves none of the site's programs or firewall rules, and the lesson's
pytest tests and `./whale test --quick` pass there.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import time

import pytest
from engine_fixtures import TEST_LABEL

from whale_site import images

REPO = images.SOURCE
# The nested-engine recipe (DESIGN.md: --privileged fails on these kernels). The data root
# is a tmpfs, so the machine's images go with it.
NESTED_ENGINE = ["--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE",
                 "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
                 "--security-opt", "systempaths=unconfined",
                 "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw", "--tmpfs", "/var/lib/docker"]
# This machine's registry configuration that a new machine of its kind has too: the CA
# bundle of its TLS-intercepting proxy, named by these variables.
CA_VARIABLES = ("PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "NODE_EXTRA_CA_CERTS",
                "CURL_CA_BUNDLE")
UP_LOG, UP_STATUS = "/var/log/whale-up.log", "/var/log/whale-up.status"
HUB_API = "http://127.0.0.1:8000/hub/api"
SITE_PROGRAMS = re.compile(r"jupyterhub|configurable-http-proxy|idle_culler|whale_hub|"
                           r"registry serve")


def tail(text: str, lines: int = 60) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def work_tree_tar() -> bytes:
    """The files git tracks or would track (not ignored), as they are in the work tree."""
    names = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=REPO, check=True, capture_output=True).stdout.split(b"\0")
    present = b"\0".join(n for n in names if n and (REPO / os.fsdecode(n)).is_file())
    return subprocess.run(["tar", "--null", "-T", "-", "-c", "--owner=0", "--group=0"],
                          input=present, cwd=REPO, check=True, capture_output=True).stdout


class Machine:
    """The fresh Debian container; run() runs a bash script in /src."""

    def __init__(self, name: str):
        self.name = name

    def run(self, script: str, timeout: float, what: str = "") -> subprocess.CompletedProcess:
        try:
            return subprocess.run(["docker", "exec", "-w", "/src", self.name, "bash", "-c", script],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            out = exc.output.decode(errors="replace") if isinstance(exc.output, bytes) else exc.output
            pytest.fail(f"{what or script} did not finish in {timeout:.0f} s:\n{tail(out or '')}")

    def up_log(self) -> str:
        return "`./whale up` log:\n" + tail(self.run(f"cat {UP_LOG}", 30).stdout)

    def programs(self) -> list[str]:
        return self.run("ps -eo stat=,args=", 30).stdout.splitlines()


@pytest.fixture
def machine(host_docker):
    images.ensure_base()
    name = f"whale-fresh-debian-{os.getpid()}"
    cas: dict[str, str] = {}
    env: list[str] = []
    for var in CA_VARIABLES:
        path = os.environ.get(var)
        if path and os.path.isfile(path):
            cas.setdefault(os.path.realpath(path), f"/host-ca/{len(cas)}.pem")
            env += ["-e", f"{var}={cas[os.path.realpath(path)]}"]
    mounts = [a for host, inside in cas.items() for a in ("-v", f"{host}:{inside}:ro")]
    try:
        subprocess.run(["docker", "run", "-d", "--name", name, "--hostname", "fresh-debian",
                        "--label", f"{TEST_LABEL}={os.getpid()}", "--init", *NESTED_ENGINE,
                        *mounts, *env, images.BASE_IMAGE, "sleep", "infinity"],
                       check=True, capture_output=True, timeout=60)
        subprocess.run(["docker", "exec", "-i", name, "sh", "-c", "mkdir /src && tar -x -C /src"],
                       input=work_tree_tar(), check=True, capture_output=True, timeout=60)
        yield Machine(name)
    finally:
        subprocess.run(["docker", "rm", "-f", "-v", name], capture_output=True, timeout=120)


def pytest_summary(out: str) -> str:
    """pytest's last line ("N passed, M deselected in S s")."""
    return out.rstrip().splitlines()[-1] if out.strip() else ""


@pytest.mark.timeout(720)
def test_whale_up_and_test_on_a_fresh_debian_machine(machine):
    fresh = machine.run("for p in python3 pip3 docker dockerd node; do command -v $p; done; true", 30)
    assert fresh.stdout == "", f"the base is not a fresh Debian: {fresh.stdout}"

    # 1. `./whale up`, in the background as an operator's terminal would hold it.
    start = time.monotonic()
    subprocess.run(["docker", "exec", "-d", "-w", "/src", machine.name, "bash", "-c",
                    f"./whale up >{UP_LOG} 2>&1; echo $? >{UP_STATUS}"], check=True, timeout=30)
    api = None
    while api is None:
        assert time.monotonic() - start < 420, f"/hub/api did not answer in 420 s\n{machine.up_log()}"
        ended = machine.run(f"cat {UP_STATUS} 2>/dev/null", 30)
        assert not ended.stdout, f"`./whale up` ended (status {ended.stdout.strip()})\n" \
                                 f"{machine.up_log()}"
        probe = machine.run("python3 -c 'import sys, urllib.request; sys.stdout.write("
                            f"urllib.request.urlopen(\"{HUB_API}\", timeout=5).read().decode())'"
                            " 2>/dev/null", 30)
        if probe.returncode == 0:
            api = json.loads(probe.stdout)
        else:
            time.sleep(3)
    print(f"\nfresh Debian: /hub/api answered {api} {time.monotonic() - start:.0f} s after `./whale up`")
    log = machine.run(f"cat {UP_LOG}", 30).stdout
    assert "bootstrap: apt-get install python3 python3-venv docker.io" in log, machine.up_log()
    assert "ensure-docker: starting dockerd" in log, machine.up_log()
    # /hub/api names JupyterHub's version: the one bootstrap installed into .venv, along
    # with this project at its own version (labextension/package.json, its one source).
    installed = machine.run(".venv/bin/python -c 'import importlib.metadata as m; "
                            "print(m.version(\"jupyterhub\"), m.version(\"howtowhale\"))'", 60)
    hub_version, project_version = installed.stdout.split()
    assert api["version"] == hub_version, (api, installed.stdout)
    package = json.loads((REPO / "labextension" / "package.json").read_text())
    assert project_version == package["version"], installed.stdout

    # 2. One lesson under nbval on a fresh engine, through the mirror `whale up` started.
    lesson = machine.run("./whale lesson test 01", 180, "`./whale lesson test 01`")
    assert lesson.returncode == 0, tail(lesson.stdout)
    assert "PASS 01-first-container" in lesson.stdout, tail(lesson.stdout)
    assert "whale: 1 of 1 lessons passed" in lesson.stdout, tail(lesson.stdout)

    # 3. `./whale down` stops everything `./whale up` started.
    down = machine.run("./whale down", 90, "`./whale down`")
    assert down.returncode == 0, tail(down.stdout)
    assert "learners' work is kept" in down.stdout, tail(down.stdout)
    deadline = time.monotonic() + 30
    while True:
        left = [p for p in machine.programs() if SITE_PROGRAMS.search(p) and p.split()[0][0] != "Z"]
        ended = machine.run(f"cat {UP_STATUS} 2>/dev/null", 30).stdout.strip()
        if (not left and ended) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert not left, "left running after `./whale down`:\n" + "\n".join(left)
    assert ended, f"`./whale up` still runs after `./whale down`\n{machine.up_log()}"
    rules = machine.run("iptables-save | grep -e WHALE- || true", 30).stdout
    assert not rules, f"firewall rules left after `./whale down`:\n{rules}"

    # 4. The README's second command, on this lesson's tests and on the quick tier. After
    # `whale down`: while a site is up, its firewall lets learners' networks (test engines'
    # too) reach only that site's mirror, not the one a test session starts.
    tests = machine.run("./whale test tests/test_lessons.py -k first-container", 180,
                        "`./whale test tests/test_lessons.py -k first-container`")
    summary = pytest_summary(tests.stdout)
    assert tests.returncode == 0, tail(tests.stdout)
    assert re.search(r"\b\d+ passed\b", summary), tail(tests.stdout)
    assert not re.search(r"failed|error", summary), tail(tests.stdout)
    # A test that hangs there shows where (its traceback) within this test's own wait.
    quick = machine.run("./whale test --quick --durations=8 --timeout=90", 420,
                        "`./whale test --quick`")
    summary = pytest_summary(quick.stdout)
    assert quick.returncode == 0, tail(quick.stdout, 200)
    assert re.search(r"\b\d{3,} passed\b", summary), tail(quick.stdout)
    assert not re.search(r"failed|error", summary), tail(quick.stdout)
    print(f"fresh Debian: {time.monotonic() - start:.0f} s from `./whale up` to the quick tier's end")
