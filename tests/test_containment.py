"""A classroom engine's limits bind everything inside it, and the engine holds nothing of
the host: its containers live in the engine's own cgroups (memory, pids, CPU, devices),
its data root is a disk of fixed size, and it runs with a short list of capabilities
under a seccomp profile. Driven with real engines and the real docker CLI; the learner's
view through a real kernel over ZMQ."""
from __future__ import annotations

import os
import re
import subprocess
import time
import urllib.request

import pytest
from engine_fixtures import TEST_LABEL, engine_env, start_kernel, stop_kernel

from whale_core.store import CredentialStore
from whale_hub.engine import SandboxEngine
from whale_site import images

MEMORY = 512 * 1024 * 1024
PIDS = 256


def docker(env, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def small_engine(engine_image, host_docker, tmp_path_factory):
    """An engine with small limits (512 MiB, 256 processes, half a CPU, a 300 MiB disk)."""
    engine = SandboxEngine(f"whale-test-small-{os.getpid()}", tmp_path_factory.mktemp("small"),
                           host=host_docker, labels={TEST_LABEL: str(os.getpid())},
                           mem_limit=str(MEMORY), pids_limit=PIDS, nano_cpus=500_000_000,
                           disk_limit="300m")
    engine.start()
    images.build_lesson_images(engine_env(engine), names=["busybox"])
    yield engine
    engine.remove()


@pytest.fixture(scope="module")
def env(small_engine):
    return engine_env(small_engine)


def host_cgroup(pid: int, controller: str) -> str:
    with open(f"/proc/{pid}/cgroup") as f:
        lines = f.read().splitlines()
    for line in lines:
        _, controllers, path = line.strip().split(":", 2)
        if controller in controllers.split(","):
            return path
    raise AssertionError(f"no {controller} cgroup for {pid}")


def host_pids_of(container_id: str) -> list[int]:
    """Host pids whose memory cgroup path names this (nested) container id."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if container_id in host_cgroup(int(entry), "memory"):
                    found.append(int(entry))
            except (OSError, AssertionError):
                pass
    return found


def test_a_learners_containers_live_inside_the_engines_cgroups(env, small_engine):
    out = docker(env, "run", "-d", "busybox", "sleep", "120")
    assert out.returncode == 0, out.stderr
    nested = out.stdout.strip()
    try:
        pids = host_pids_of(nested)
        assert pids, "the nested container's process is not found on the host"
        engine_id = small_engine.container.id
        for controller in ("memory", "pids", "cpu", "devices", "blkio"):
            path = host_cgroup(pids[0], controller)
            # /docker/<engine>/learner/<nested>: below the engine's cgroup, not beside it.
            assert path.startswith(f"/docker/{engine_id}/learner/"), (controller, path)
    finally:
        docker(env, "rm", "-f", nested)


def test_memory_past_the_limit_kills_the_container_not_the_engine(env):
    out = docker(env, "run", "--rm", "busybox", "sh", "-c",
                 f"dd if=/dev/zero of=/dev/null bs={MEMORY * 2 // 1024 // 1024}M count=1")
    assert out.returncode == 137, (out.returncode, out.stdout, out.stderr)
    assert docker(env, "run", "--rm", "busybox", "echo", "alive").stdout.strip() == "alive"


def test_a_fork_bomb_hits_the_process_limit_and_the_engine_answers(env):
    out = docker(env, "run", "--rm", "busybox", "sh", "-c",
                 f"for i in $(seq 1 {PIDS * 2}); do sleep 5 & done; wait; echo finished")
    assert "can't fork" in out.stderr + out.stdout, (out.stdout, out.stderr)
    assert docker(env, "ps", "-q").returncode == 0


def test_the_disk_is_full_at_its_size_and_says_so(env, small_engine):
    out = docker(env, "run", "--rm", "-v", "fill:/f", "busybox", "sh", "-c",
                 "dd if=/dev/zero of=/f/big bs=1M count=1000")
    try:
        assert "No space left on device" in out.stderr + out.stdout, (out.stdout, out.stderr)
        written = int(re.search(r"(\d+)\+\d+ records out", out.stderr).group(1))
        assert 100 < written < 300, written
        # The machine's disk did not take it: the engine's file system is its own.
        df = subprocess.run(["df", "--output=size", "-B1M", str(small_engine.disk.mountpoint)],
                            capture_output=True, text=True).stdout.split()
        assert int(df[-1]) < 310, df
    finally:
        docker(env, "volume", "rm", "-f", "fill")
    assert docker(env, "run", "--rm", "busybox", "echo", "alive").stdout.strip() == "alive"


def test_bind_mounts_under_tmp_are_bounded_and_never_on_the_machines_disk(env, small_engine,
                                                                         host_docker):
    """The seventh red team wrote 300 MB through `-v /tmp/fill:/data` into the engine
    container's own layer, on the operator's disk, past the engine's disk limit. The
    engine's /tmp is now a tmpfs of its own (256 MiB, counted in its memory)."""
    def layer() -> int:
        return engine_layer(host_docker, small_engine)

    before = layer()
    out = docker(env, "run", "--rm", "-v", "/tmp/fill:/data", "busybox", "sh", "-c",
                 "df -m /data; dd if=/dev/zero of=/data/big bs=1M count=400")
    try:
        assert "No space left on device" in out.stderr, (out.stdout, out.stderr)
        written = int(re.search(r"(\d+)\+\d+ records out", out.stderr).group(1))
        assert 100 < written <= 256, written
        assert re.search(r"^tmpfs\s+256\s", out.stdout, re.MULTILINE), out.stdout
        assert layer() - before < 10 << 20, (before, layer())
    finally:
        docker(env, "run", "--rm", "-v", "/tmp/fill:/data", "busybox", "rm", "-f", "/data/big")
    assert docker(env, "run", "--rm", "busybox", "echo", "alive").stdout.strip() == "alive"


def engine_layer(host_docker, engine) -> int:
    """Bytes the engine container wrote to its own layer, on the operator's disk."""
    found = host_docker.api.containers(all=True, size=True, filters={"id": engine.container.id})
    return found[0].get("SizeRw") or 0


def test_failing_execs_leave_nothing_on_the_machines_disk(env, small_engine, host_docker):
    """The eighth red team grew runc's error log under the engine's /run by a megabyte a
    second with execs of a 30,000-character command that does not exist. /run is a tmpfs
    of the engine's own now."""
    docker(env, "run", "-d", "--name", "execs", "busybox", "sleep", "600")
    try:
        before = engine_layer(host_docker, small_engine)
        missing = "/" + "x" * 20000
        for _ in range(15):
            out = docker(env, "exec", "execs", missing)
            assert out.returncode != 0, out
        assert engine_layer(host_docker, small_engine) - before < 1 << 20
        mounts = small_engine.container.exec_run(["sh", "-c", "grep ' /run ' /proc/mounts"]).output
        assert mounts.startswith(b"tmpfs /run tmpfs"), mounts
    finally:
        docker(env, "rm", "-f", "execs")


def test_the_gate_answers_the_learners_server_not_the_engines_own_containers(env, small_engine,
                                                                            host_docker):
    """Three containers on the engine held all 256 of the gate's connections (128 per
    address) and locked the hub out (the eighth red team). The gate is reached on the
    engine's network only: from inside the engine, its port does not answer at all."""
    attrs = host_docker.api.inspect_container(small_engine.container.id)
    eth0 = next(iter(attrs["NetworkSettings"]["Networks"].values()))["IPAddress"]
    probe = ("for ip in 10.213.0.1 " + eth0 + "; do nc -z -w 2 $ip 2376 && echo open $ip "
             "|| echo closed $ip; done")
    out = docker(env, "run", "--rm", "busybox", "sh", "-c", probe)
    assert out.stdout.split("\n")[:2] == ["closed 10.213.0.1", f"closed {eth0}"], (out.stdout, out.stderr)
    # The learner's side (here the operator's published port) still answers.
    assert docker(env, "version", "-f", "{{.Server.Version}}").stdout.strip()


def test_published_ports_need_no_process_in_the_engine(env, small_engine, host_docker):
    """A docker-proxy per published port ran in the engine's own cgroup: 100 ports took
    868 of its 1024 processes (the eighth red team). Ports are forwarded by iptables."""
    out = docker(env, "run", "-d", "--name", "ports", "-p", "32000-32019:32000-32019",
                 "-p", "32080:8080", "busybox", "httpd", "-f", "-p", "8080", "-h", "/etc")
    assert out.returncode == 0, out.stderr
    try:
        top = small_engine.container.exec_run(["sh", "-c", "ps -eo comm"]).output.decode()
        assert "docker-proxy" not in top, top
        # And a published port still answers from outside the engine.
        attrs = host_docker.api.inspect_container(small_engine.container.id)
        eth0 = next(iter(attrs["NetworkSettings"]["Networks"].values()))["IPAddress"]
        deadline = time.monotonic() + 10
        while True:
            try:
                with urllib.request.urlopen(f"http://{eth0}:32080/hostname", timeout=3) as answer:
                    assert answer.status == 200
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    finally:
        docker(env, "rm", "-f", "ports")


def test_the_engine_holds_only_the_capabilities_it_needs(small_engine, host_docker):
    attrs = host_docker.api.inspect_container(small_engine.container.id)
    host_config = attrs["HostConfig"]
    assert host_config["CgroupnsMode"] == "private"
    assert not any("/sys/fs/cgroup" in b for b in host_config["Binds"] or [])
    assert host_config["CapDrop"] == ["ALL"]
    assert set(host_config["CapAdd"]) >= {"SYS_ADMIN", "NET_ADMIN"}
    assert "SYS_MODULE" not in host_config["CapAdd"]
    assert "ALL" not in host_config["CapAdd"]
    pid = attrs["State"]["Pid"]
    with open(f"/proc/{pid}/status") as f:
        status = f.read()
    effective = int(re.search(r"CapEff:\s*([0-9a-f]+)", status).group(1), 16)
    for bit, name in ((16, "SYS_MODULE"), (17, "SYS_RAWIO"), (22, "SYS_BOOT"), (25, "SYS_TIME"),
                      (2, "DAC_READ_SEARCH"), (24, "SYS_RESOURCE")):
        assert not effective & (1 << bit), f"the engine holds CAP_{name}"
    assert re.search(r"Seccomp:\s*2", status), "the engine runs without a seccomp filter"


def test_what_the_seccomp_profile_refuses_is_refused_in_the_engine(small_engine, host_docker):
    engine = host_docker.containers.get(small_engine.container.id)
    # swapoff needs CAP_SYS_ADMIN, which the engine holds: only the profile refuses it.
    out = engine.exec_run(["python3", "-c",
                           "import ctypes, os; libc = ctypes.CDLL(None, use_errno=True); "
                           "r = libc.swapoff(b'/nonexistent'); print(r, ctypes.get_errno())"])
    assert out.output.decode().split() == ["-1", "1"], out.output  # EPERM, not ENOENT


def test_the_learner_sees_which_limit_was_hit(small_engine, tmp_path):
    store = CredentialStore(tmp_path / "credentials")
    store.install_directory(small_engine.bundle_dir)
    kernel = start_kernel(store)
    try:
        run = kernel.run("docker run --rm busybox sh -c "
                         f"'for i in $(seq 1 {PIDS * 2}); do sleep 3 & done; wait'", timeout=90)
        assert "whale: your engine's process limit was hit" in run.text, run.text
        run = kernel.run("docker run --rm -v fill2:/f busybox dd if=/dev/zero of=/f/x bs=1M "
                         "count=1000; docker volume rm fill2 >/dev/null", timeout=90)
        assert "whale: your engine's disk is full" in run.text, run.text
        run = kernel.run("docker run --rm busybox echo fine", timeout=60)
        assert run.text.strip() == "fine"
    finally:
        stop_kernel(kernel)


def test_a_bind_mount_that_slipped_past_the_gate_would_hold_nothing_of_the_engine(
        small_engine, host_docker):
    """Defence in depth: suppose a bind mount of the engine's `/` got through (a symlink
    swapped between the gate's check and the container's start, say). Inside it, the
    learner's root is uid 100000 of the engine: it cannot read the engine's TLS key, talk
    to its dockerd, or change the engine's files. Checked as that very user, in the
    engine container."""
    engine = host_docker.containers.get(small_engine.container.id)

    def as_learner_root(*cmd: str) -> tuple[int, str]:
        out = engine.exec_run(list(cmd), user="100000:100000")
        return out.exit_code, out.output.decode(errors="replace")

    code, out = as_learner_root("cat", "/etc/whale/tls/server-key.pem")
    assert code != 0, out
    assert "Permission denied" in out, out
    code, out = as_learner_root("python3", "-c",
                                "import socket; s = socket.socket(socket.AF_UNIX); "
                                "s.connect('/var/run/docker.sock')")
    assert code != 0, out
    assert "PermissionError" in out, out
    code, out = as_learner_root("sh", "-c", "echo x >> /etc/passwd")
    assert code != 0, out
    assert "Permission denied" in out, out
    code, out = as_learner_root("ls", "/var/lib/docker")
    assert code != 0, out
    assert "Permission denied" in out, out
