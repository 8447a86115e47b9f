"""A learner's engine is safe to hand to a stranger: containers run in a user namespace,
and whale-gate, the only listener in front of dockerd, refuses what would reach past the
engine. Driven through the real docker CLI against a real TLS engine. (The gate's own rules,
spelling by spelling, are in test_gate.py.)"""
from __future__ import annotations

import contextlib
import json
import os
import subprocess

import pytest

from whale_core.bundle import CredentialBundle

REFUSED = "is not allowed on this classroom engine"


@pytest.fixture(scope="module")
def docker_env(tls_engine):
    return dict(os.environ, **CredentialBundle.load(tls_engine.bundle_dir).env)


def docker(env, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(("args", "what"), [
    (["--privileged"], "a privileged container (--privileged)"),
    (["--userns=host", "--privileged"], "a privileged container"),
    (["--userns=host"], "sharing the engine's namespace (--userns=host)"),
    (["--pid=host"], "sharing the engine's namespace (--pid=host)"),
    (["--ipc=host"], "sharing the engine's namespace (--ipc=host)"),
    (["--cap-add", "SYS_ADMIN"], "adding kernel capabilities (SYS_ADMIN)"),
    (["--cap-add", "ALL"], "adding kernel capabilities (ALL)"),
    (["--device", "/dev/null:/dev/x"], "access to the engine's devices (--device)"),
    (["--security-opt", "apparmor=unconfined"], "the security option 'apparmor=unconfined'"),
    (["-v", "/:/host"], "a bind mount of the engine's whole filesystem (/)"),
    (["-v", "/var/run/docker.sock:/docker.sock"], "a bind mount of the engine's /run/docker.sock"),
    (["--mount", "type=bind,source=/etc,target=/x"], "a bind mount of the engine's /etc"),
])
def test_what_would_reach_the_engine_is_refused_with_a_reason(docker_env, args, what):
    out = docker(docker_env, "run", "--rm", *args, "busybox", "true")
    assert out.returncode != 0
    assert what in out.stderr, out.stderr
    assert REFUSED in out.stderr, out.stderr


def test_a_bind_source_cannot_be_swapped_for_a_link_before_the_container_starts(docker_env):
    """The red team's attack: bind a directory a container can write in, create the
    container with a bind of a directory below it (checked: harmless), then swap that
    directory for a link to / and start. dockerd resolves the source again at start, so
    the gate allows only directories right under /tmp, which no container can write:
    the writable parent and the nested source are both refused."""
    name = f"policy-swap-{os.getpid()}"
    whole_tmp = docker(docker_env, "run", "--rm", "-v", "/tmp:/t", "busybox", "true")
    assert 'a bind mount of "/tmp"' in whole_tmp.stderr
    assert whole_tmp.returncode != 0
    try:
        assert docker(docker_env, "run", "-d", "--name", name, "-v", f"/tmp/{name}:/t", "busybox",
                      "sh", "-c", "mkdir /t/x && sleep 60").returncode == 0
        nested = docker(docker_env, "create", "-v", f"/tmp/{name}/x:/host", "busybox", "true")
        assert f'a bind mount of "/tmp/{name}/x"' in nested.stderr
        assert nested.returncode != 0
        assert "right under /tmp" in nested.stderr
        parent = docker(docker_env, "run", "--rm", "-v", "/var:/v", "busybox", "true")
        assert 'a bind mount of "/var"' in parent.stderr
        assert parent.returncode != 0
    finally:
        docker(docker_env, "rm", "-f", name)
        docker(docker_env, "run", "--rm", "-v", f"/tmp/{name}:/t", "busybox", "rm", "-rf", "/t/x")


def test_privileged_exec_is_refused_and_plain_exec_works(docker_env):
    name = f"policy-exec-{os.getpid()}"
    assert docker(docker_env, "run", "-d", "--name", name, "busybox", "sleep", "60").returncode == 0
    try:
        refused = docker(docker_env, "exec", "--privileged", name, "true")
        assert "a privileged exec session" in refused.stderr
        assert refused.returncode != 0
        assert docker(docker_env, "exec", name, "echo", "ok").stdout.strip() == "ok"
    finally:
        docker(docker_env, "rm", "-f", name)


def test_what_lessons_do_is_allowed(docker_env):
    """Named volumes, bind mounts of ordinary directories, dropped or default capabilities,
    publishing ports and reaching them through host-gateway all work."""
    volume = f"policy-vol-{os.getpid()}"
    web = f"policy-web-{os.getpid()}"
    try:
        assert docker(docker_env, "run", "--rm", "-v", f"{volume}:/v", "busybox", "sh", "-c",
                      "echo kept > /v/f").returncode == 0
        out = docker(docker_env, "run", "--rm", "-v", "/tmp/whale-policy-ok:/d", "--cap-drop", "ALL",
                     "--cap-add", "NET_BIND_SERVICE", "busybox", "sh", "-c",
                     "echo hi > /d/f && cat /d/f")
        assert out.stdout.strip() == "hi", out.stderr
        assert docker(docker_env, "run", "-d", "--name", web, "-p", "18089:80", "busybox",
                      "httpd", "-f", "-p", "80", "-h", "/etc").returncode == 0
        page = docker(docker_env, "run", "--rm", "--add-host", "host.docker.internal:host-gateway",
                      "busybox", "sh", "-c", "sleep 0.5; wget -qO- http://host.docker.internal:18089/hostname")
        assert page.returncode == 0, page.stderr
        assert page.stdout.strip(), page.stderr
    finally:
        docker(docker_env, "rm", "-f", web)
        docker(docker_env, "volume", "rm", "-f", volume)
        docker(docker_env, "run", "--rm", "-v", "/tmp/whale-policy-ok:/d", "busybox", "rm", "-rf", "/d/f")


def test_root_in_a_container_is_not_root_on_the_engine(docker_env, tls_engine, host_docker):
    name = f"policy-uid-{os.getpid()}"
    assert docker(docker_env, "run", "-d", "--name", name, "busybox", "sleep", "60").returncode == 0
    try:
        assert docker(docker_env, "exec", name, "id", "-u").stdout.strip() == "0"
        pid = docker(docker_env, "inspect", "-f", "{{.State.Pid}}", name).stdout.strip()
        engine = host_docker.containers.get(tls_engine.container.id)
        status = engine.exec_run(["cat", f"/proc/{pid}/status"]).output.decode()
        uids = next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1:]
        assert all(int(u) >= 100000 for u in uids), status
        info = json.loads(docker(docker_env, "info", "--format", "{{json .}}").stdout)
        assert any("userns" in opt for opt in info["SecurityOptions"])
        # The gate is the policy: dockerd has no authorization plugin and no TCP listener.
        assert not info["Plugins"]["Authorization"]
        top = engine.top(ps_args="-eo pid,args")["Processes"]
        dockerd = [p[-1] for p in top if p[-1].startswith("dockerd")]
        assert dockerd, top
        assert "--host=unix:///var/run/docker.sock" in dockerd[0], top
        assert "tcp://" not in dockerd[0], dockerd
        assert "--authorization-plugin" not in dockerd[0], dockerd
        assert any("whale-gate" in p[-1] for p in top), top
    finally:
        docker(docker_env, "rm", "-f", name)


def test_an_operator_can_turn_the_policy_off(engine_image, host_docker, tmp_path_factory):
    from engine_fixtures import start_engine

    engine = start_engine("nopolicy", tmp_path_factory, host_docker, policy=False)
    try:
        env = dict(os.environ, **CredentialBundle.load(engine.bundle_dir).env)
        info = json.loads(docker(env, "info", "--format", "{{json .}}").stdout)
        assert not info["Plugins"]["Authorization"]
        assert not any("userns" in opt for opt in info["SecurityOptions"])
        # dockerd itself listens with TLS; no gate in front of it.
        top = host_docker.containers.get(engine.container.id).top(ps_args="-eo pid,args")["Processes"]
        assert not any("whale-gate" in p[-1] for p in top), top
        assert any(p[-1].startswith("dockerd") and "--tlsverify" in p[-1] for p in top), top
    finally:
        engine.remove()


# -- the policy's rules, for what a one-node engine here cannot show ---------------------
def _decide(policy, method: str, target: str, body=None):
    path, _, query = target.partition("?")
    raw = body if isinstance(body, bytes) else None if body is None else json.dumps(body).encode()
    return policy.decide(method, path, query, {"Host": "docker"}, raw)


def test_swarm_services_and_plugins_follow_the_same_rules():
    from engine_fixtures import load_gate
    policy = load_gate()
    spec = {"Name": "s", "TaskTemplate": {"ContainerSpec": {"Image": "busybox"}}}
    assert _decide(policy, "POST", "/v1.41/services/create", spec).allowed
    spec["TaskTemplate"]["ContainerSpec"]["CapabilityAdd"] = ["CAP_SYS_ADMIN"]
    refused = _decide(policy, "POST", "/v1.41/services/create", spec)
    assert refused.status == 403
    assert "SYS_ADMIN" in refused.message
    assert REFUSED in refused.message
    bind = {"TaskTemplate": {"ContainerSpec": {"Mounts": [
        {"Type": "bind", "Source": "/proc", "Target": "/p"}]}}}
    assert "/proc" in _decide(policy, "POST", "/v1.41/services/abc/update?version=1", bind).message
    assert "plugin" in _decide(policy, "POST", "/v1.41/plugins/pull?remote=x", {}).message
    # Reading is allowed, and an unreadable body is not let through.
    assert _decide(policy, "GET", "/v1.41/containers/json").allowed
    garbled = _decide(policy, "POST", "/v1.41/containers/create", b"{not json")
    assert "a request body that is not valid JSON" in garbled.message
    assert REFUSED in garbled.message


def test_an_engine_from_an_older_image_is_replaced(engine_image, host_docker, tmp_path_factory):
    """After an upgrade of the engine image (say, to one with the classroom policy), a
    learner's existing engine is made again from the new image; an engine that is up to
    date is kept, with what the learner made on it."""
    from engine_fixtures import TEST_LABEL

    from whale_hub.engine import SandboxEngine

    older = f"whale-test-older-engine:{os.getpid()}"
    host_docker.images.get(engine_image).tag(older)
    state = tmp_path_factory.mktemp("upgrade")
    name = f"whale-test-upgrade-{os.getpid()}"
    labels = {TEST_LABEL: str(os.getpid())}
    try:
        SandboxEngine(name, state, host=host_docker, image=older, labels=labels).ensure()
        first = host_docker.containers.get(name).id
        # The same image: kept.
        same = SandboxEngine(name, state, host=host_docker, image=older, labels=labels)
        same.prepare()
        assert same.container is not None
        assert same.container.id == first
        # Another image under the name the spawner uses: replaced.
        host_docker.images.remove(older, noprune=True)
        rebuilt = subprocess.run(["docker", "build", "-q", "-t", older, "-"], text=True,
                                 input=f"FROM {engine_image}\nLABEL whale.test=newer\n",
                                 capture_output=True, timeout=120)
        assert rebuilt.returncode == 0, rebuilt.stderr
        newer = SandboxEngine(name, state, host=host_docker, image=older, labels=labels)
        newer.prepare()
        assert newer.container is None  # a new engine is planned; launch() makes it
        newer.launch()
        assert host_docker.containers.get(name).id != first
        assert host_docker.containers.get(name).image.id == host_docker.images.get(older).id
        newer.remove()
    finally:
        for c in host_docker.containers.list(all=True, filters={"name": name}):
            c.remove(force=True, v=True)
        with contextlib.suppress(Exception):
            host_docker.images.remove(older, force=True, noprune=True)
