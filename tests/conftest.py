"""Shared fixtures: a real host engine, real TLS-only engines, a real kernel over ZMQ."""
from __future__ import annotations

import os
import re
import socket
import tempfile
import time

import docker
import pytest
from engine_fixtures import TEST_LABEL, engine_client_for, engine_env, start_engine, start_kernel, stop_kernel

from whale_core.store import CredentialStore
from whale_hub.engine_disk import unmount_orphans
from whale_site import images
from whale_site.registry import RegistryMirror


def pytest_collection_modifyitems(config, items):
    """Tiers: a test that uses a Docker engine (every engine fixture starts from
    host_docker) is marked `docker`; `hub` and `browser` are marked by their modules.
    `./whale test --quick` runs what needs none of them."""
    for item in items:
        if "host_docker" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.docker)


# Programs the tests start that must be gone when they end (dockerd and the engines'
# containers are meant to stay).
OURS = re.compile(r"jupyterhub|configurable-http-proxy|idle_culler|whale_hub|whale_kernel|"
                  r"whale_site|jupyter-(?:lab|notebook|server)|bash_kernel|chromedriver|chromium|"
                  r"registry serve|docker-registry")
_BEFORE: set[int] = set()


def running() -> dict[int, str]:
    """pid -> command line of every live (not zombie) process in this process's PID
    namespace. Programs inside containers (a learner's server, a fresh Debian machine
    in test_fresh_debian) go with their container, which the tests remove."""
    found = {}
    ours = os.readlink("/proc/self/ns/pid")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{entry}/ns/pid") != ours:
                continue
            with open(f"/proc/{entry}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                found[int(entry)] = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except (OSError, IndexError):
            continue
    return found


SESSION_VAR = "WHALE_TEST_SESSION"


def pytest_sessionstart(session):
    _BEFORE.update(running())
    # Every program this session starts inherits it: a session counts only its own,
    # not those of another session running beside it.
    os.environ[SESSION_VAR] = str(os.getpid())


def _of_this_session(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return f"{SESSION_VAR}={os.getpid()}".encode() in f.read().split(b"\0")
    except OSError:
        return False


def leftovers() -> dict[int, str]:
    """Our programs started during this session that still run (after a grace)."""
    deadline = time.monotonic() + 15
    while True:
        left = {pid: cmd for pid, cmd in running().items()
                if pid not in _BEFORE and pid != os.getpid() and OURS.search(cmd)
                and "pytest" not in cmd and _of_this_session(pid)}
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.5)


def left_containers() -> dict[str, str]:
    """Containers this session made (labelled with its pid, or a test hub's learners)
    that are still there at its end."""
    # The SDK leaves its socket open when the engine refuses the connection (no dockerd
    # runs after a quick-tier run): ask the socket first.
    with socket.socket(socket.AF_UNIX) as probe:
        try:
            probe.settimeout(5)
            probe.connect("/var/run/docker.sock")
        except OSError:
            return {}
    me = str(os.getpid())
    try:
        client = docker.from_env(timeout=10)
    except docker.errors.DockerException:
        return {}
    try:
        return {f"container {c.name}": c.status for c in client.containers.list(all=True)
                if c.labels.get(TEST_LABEL) == me
                or re.match(rf"(?:jupyter|whale-engine)-t{me}[0-9a-f]{{4}}-", c.name)}
    except (docker.errors.DockerException, OSError):
        return {}
    finally:
        client.close()


def pytest_sessionfinish(session, exitstatus):
    """The run fails if a test left one of our programs running, and, with
    WHALE_NO_SKIPS=1 (.ci/run), if a test was skipped: a part the suite needs is
    missing on this machine, and the tests that need it did not run."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if exitstatus not in (0, 1) or reporter is None:
        return
    left = leftovers()
    left.update(left_containers())
    if left:
        reporter.write_line("whale: the tests left these running:\n" + "\n".join(
            f"  {pid} {cmd[:200]}" for pid, cmd in sorted(left.items(), key=str)), red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    skipped = reporter.stats.get("skipped", [])
    if os.environ.get("WHALE_NO_SKIPS") == "1" and skipped:
        reporter.write_line(f"whale: {len(skipped)} tests were skipped, and CI runs every test "
                            "(WHALE_NO_SKIPS=1): install what they need", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def host_docker():
    """The operator's engine (scripts/ensure-docker.sh started it)."""
    client = docker.from_env()
    client.ping()
    # Engines left behind by an earlier run that was killed (its pid is gone); runs
    # going on side by side keep theirs.
    for c in client.containers.list(all=True, filters={"label": TEST_LABEL}):
        owner = c.labels.get(TEST_LABEL, "")
        if not (owner.isdigit() and os.path.exists(f"/proc/{owner}")):
            c.remove(force=True, v=True)
    # Learners' servers and engines of a test hub (users are named t<pid>...).
    for c in client.containers.list(all=True):
        m = re.match(r"(?:jupyter|whale-engine)-t(\d+)[0-9a-f]{4}-", c.name)
        if m and not os.path.exists(f"/proc/{m.group(1)}"):
            c.remove(force=True, v=True)
    # The disks of those engines (mounted below pytest's temporary directories).
    def exists(name: str) -> bool:
        return bool(client.containers.list(all=True, filters={"name": f"^{name}$"}))
    unmount_orphans(tempfile.gettempdir(), exists)
    yield client
    client.close()


@pytest.fixture(scope="session")
def engine_image(host_docker):
    images.ensure_site_images(only=["howtowhale/engine"])
    return "howtowhale/engine"


@pytest.fixture(scope="session")
def tls_engine(engine_image, host_docker, tmp_path_factory):
    """A TLS-only engine with the lesson images (hello-world, busybox) built on it."""
    engine = start_engine("a", tmp_path_factory, host_docker)
    images.build_lesson_images(engine_env(engine), names=["hello-world", "busybox"])
    yield engine
    engine.remove()


@pytest.fixture(scope="session")
def second_engine(engine_image, host_docker, tmp_path_factory):
    """Another learner's engine: its own CA, no images."""
    engine = start_engine("b", tmp_path_factory, host_docker)
    yield engine
    engine.remove()


@pytest.fixture
def engine_client(tls_engine):
    client = engine_client_for(tls_engine)
    yield client
    client.close()


@pytest.fixture
def store(tmp_path, tls_engine):
    """A credentials store whose current bundle is the TLS test engine's."""
    s = CredentialStore(tmp_path / "credentials")
    s.install_directory(tls_engine.bundle_dir)
    return s


@pytest.fixture
def kernel(store):
    driver = start_kernel(store)
    yield driver
    stop_kernel(driver)


@pytest.fixture(scope="session")
def lesson_mirror(engine_image, host_docker, tmp_path_factory):
    """The lesson registry mirror of this test session: its own state directory and a free
    port on the bridge gateway (never the operator's), seeded with every lesson image."""
    mirror = RegistryMirror(tmp_path_factory.mktemp("mirror"), port=0, host=host_docker)
    mirror.start()
    mirror.seed()
    yield mirror
    mirror.stop()
