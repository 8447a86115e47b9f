"""A learner's own engine over SSH (issue 16): a real engine behind Debian's
openssh-server, reached with a context the real Docker CLI exported, a key from
ssh-keygen and known_hosts from ssh-keyscan: by the Docker SDK, the docker CLI, the
kernel, a terminal's bash and the server extension. Each way it fails (wrong key, a host
key that is not the machine's, no engine behind a live sshd, nothing listening) ends in
one plain line, and a host key nobody vouched for is never accepted."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pexpect
import pytest
from engine_fixtures import engine_id, start_kernel, stop_kernel
from extension_fixtures import server_config
from ssh_fixtures import SshEngine, keygen

from whale_core.archives import read_archive
from whale_core.bundle import CredentialBundle
from whale_core.errors import BundleError
from whale_core.store import CredentialStore
from whale_site import images

pytest_plugins = ["pytest_jupyter.jupyter_server"]
BASHRC = images.SITE_IMAGES / "singleuser" / "whale-bashrc"


@pytest.fixture(scope="module")
def ssh_engine(engine_image, host_docker, tmp_path_factory):
    engine = SshEngine(host_docker, tmp_path_factory.mktemp("sshd"), "a")
    yield engine
    engine.remove()


@pytest.fixture(scope="module")
def ssh_engine_id(ssh_engine) -> str:
    return ssh_engine.container.exec_run(["docker", "info", "--format", "{{.ID}}"]
                                         ).output.decode().strip()


@pytest.fixture
def ssh_store(ssh_engine, tmp_path) -> CredentialStore:
    """A store holding the SSH bundle made from the CLI's own context export."""
    store = CredentialStore(tmp_path / "credentials")
    export = ssh_engine.context_export(tmp_path)
    store.install_archive(export, extra={"ssh_key": ssh_engine.key,
                                         "known_hosts": ssh_engine.known_hosts()})
    return store


def unreachable(bundle: CredentialBundle) -> str:
    with pytest.raises(BundleError) as caught:
        bundle.ping(timeout=5)
    assert caught.value.code == "unreachable"
    return str(caught.value)


def test_a_cli_exported_ssh_context_reaches_the_engine(ssh_engine, ssh_engine_id, ssh_store,
                                                       tmp_path):
    # What `docker context export` wrote names the host and holds no key.
    export = ssh_engine.context_export(tmp_path / "again")
    assert read_archive(export) == {"docker.env": f"DOCKER_HOST={ssh_engine.docker_host}\n"
                                                  .encode()}
    bundle = ssh_store.current()
    assert bundle.kind == "ssh"
    assert bundle.not_after is None
    assert bundle.days_left is None
    assert bundle.env == {"DOCKER_HOST": ssh_engine.docker_host}
    assert bundle.ca_fingerprint.startswith("SHA256:")
    # The SDK, through its own SSH transport.
    with bundle.client(timeout=10) as client:
        assert client.info()["ID"] == ssh_engine_id
        client.volumes.create("made-by-the-sdk")
    # The docker CLI, through the bundle's ssh, from the store's stable path.
    env = dict(os.environ, **bundle.env, PATH=f"{bundle.bin_dir}:{os.environ['PATH']}")
    listed = subprocess.run(["docker", "volume", "ls", "--format", "{{.Name}}"], env=env,
                            capture_output=True, text=True, timeout=30)
    assert listed.returncode == 0, listed.stderr
    assert "made-by-the-sdk" in listed.stdout.split()
    # Files on disk: the key is 0600, and nothing but the bundle's files is there.
    real = Path(os.path.realpath(ssh_store.current_path))
    assert sorted(p.name for p in real.iterdir()) == ["bin", "docker.env", "known_hosts",
                                                      "ssh_key"]
    assert (real / "ssh_key").stat().st_mode & 0o777 == 0o600
    assert ssh_engine.key.split(b"\n")[1] not in repr(bundle).encode()


def test_each_failure_is_one_plain_line(ssh_engine, host_docker, tmp_path):
    wrong_key, _ = keygen(tmp_path / "stranger")
    assert unreachable(ssh_engine.bundle(tmp_path / "k", key=wrong_key)).endswith(
        f"the SSH server at {ssh_engine.ip}:22 refused the key for user me (add the key's "
        ".pub to that user's ~/.ssh/authorized_keys)")

    # known_hosts vouches for another machine at that address: refused, never learned.
    _, impostor = keygen(tmp_path / "impostor")
    known = f"{ssh_engine.ip} ".encode() + b" ".join(impostor.split()[:2]) + b"\n"
    bundle = ssh_engine.bundle(tmp_path / "h", known_hosts=known)
    assert f"the SSH server at {ssh_engine.ip}:22 is not the machine known_hosts names " \
           "(its host key differs), so it was refused" in unreachable(bundle)
    assert (tmp_path / "h" / "known_hosts").read_bytes() == known

    # No line for this host at all: refused before any connection.
    with pytest.raises(BundleError) as caught:
        ssh_engine.bundle(tmp_path / "n", known_hosts=b"[" + ssh_engine.ip.encode()
                          + b"]:2222 " + b" ".join(impostor.split()[:2]) + b"\n")
    assert caught.value.code == "unknown-host"
    assert f"known_hosts lists no key for {ssh_engine.ip}" in str(caught.value)

    # Nothing listens on that port.
    files = ssh_engine.files()
    files["docker.env"] = f"DOCKER_HOST=ssh://me@{ssh_engine.ip}:2222\n".encode()
    files["known_hosts"] = files["known_hosts"].replace(
        ssh_engine.ip.encode(), f"[{ssh_engine.ip}]:2222".encode())
    from whale_core.bundle import write_bundle_dir
    closed = CredentialBundle.load(write_bundle_dir(tmp_path / "c", files))
    assert unreachable(closed).endswith(
        f"nothing listens for SSH at {ssh_engine.ip}:2222 (connection refused)")

    # A live sshd with no engine behind it.
    lonely = SshEngine(host_docker, tmp_path / "lonely", "lonely", engine=False)
    try:
        assert unreachable(lonely.bundle(tmp_path / "l")).endswith(
            f"SSH to {lonely.ip} works, but no Docker engine answers there (is dockerd "
            "running, and is the user in the docker group?)")
    finally:
        lonely.remove()


def test_the_kernel_runs_docker_on_the_ssh_engine(ssh_store, ssh_engine_id):
    kernel = start_kernel(ssh_store)
    try:
        info = kernel.run("docker info --format '{{.ID}}'")
        which = kernel.run("command -v ssh")
        busy = kernel.run("docker volume create from-the-kernel && docker volume ls -q")
        completed = kernel.complete("docker volume rm from-the-k")
    finally:
        stop_kernel(kernel)
    assert info.status == "ok"
    assert info.text.strip() == ssh_engine_id
    assert which.text.strip() == str(ssh_store.current_path / "bin" / "ssh")
    assert "from-the-kernel" in busy.text.split()
    assert "from-the-kernel" in completed  # completion asks the engine, over SSH too


def test_a_terminal_follows_the_installed_bundle_from_tls_to_ssh(tls_engine, ssh_engine,
                                                                  ssh_engine_id, tmp_path):
    """The terminal's bash (images/singleuser/whale-bashrc) points docker at the bundle
    installed now, and at a new one from its next prompt."""
    store = CredentialStore(tmp_path / "credentials")
    store.install_directory(tls_engine.bundle_dir)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    env.update(WHALE_CREDENTIALS=str(store.root), TERM="dumb")
    shell = pexpect.spawn("/bin/bash", ["--noprofile", "--rcfile", str(BASHRC), "-i"], env=env,
                          encoding="utf-8", timeout=30, echo=False)
    try:
        shell.sendline("PS1=@@''@@")  # the system bashrc set its own prompt
        shell.expect_exact("@@@@")
        shell.sendline("docker info --format 'engine={{.ID}}'")
        shell.expect(r"engine=(\S+)")
        before = shell.match.group(1)
        shell.expect_exact("@@@@")
        store.install_archive(ssh_engine.context_export(tmp_path), extra={
            "ssh_key": ssh_engine.key, "known_hosts": ssh_engine.known_hosts()})
        shell.sendline("docker info --format 'engine={{.ID}}'")
        shell.expect(r"engine=(\S+)")
        after = shell.match.group(1)
    finally:
        shell.close(force=True)
    assert before == engine_id(tls_engine)
    assert after == ssh_engine_id


@pytest.fixture
def jp_server_config(tmp_path):
    return server_config(tmp_path / "server-credentials")


async def test_the_extension_installs_an_ssh_context_with_its_key_and_reports_health(
        jp_fetch, jp_serverapp, ssh_engine, ssh_engine_id, tmp_path):
    """Upload on whale/api/credentials as a browser's form would: the context export,
    the key and known_hosts as three files; then health reports the engine."""
    boundary = "whaleboundary"
    parts = [("bundle", "byoc-ssh.dockercontext", ssh_engine.context_export(tmp_path)),
             ("ssh_key", "id_ed25519", ssh_engine.key),
             ("known_hosts", "known_hosts", ssh_engine.known_hosts())]
    body = b"".join(
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; "
        f"filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n".encode()
        + content + b"\r\n" for name, filename, content in parts) + f"--{boundary}--\r\n".encode()
    response = await jp_fetch("whale", "api", "credentials", method="POST", body=body, headers={
        "Content-Type": f"multipart/form-data; boundary={boundary}"})
    answer = json.loads(response.body)
    assert answer["status"] == "installed", answer
    assert answer["credentials"]["kind"] == "ssh"
    assert answer["credentials"]["not_after"] is None
    assert answer["health"]["status"] == "ok", answer["health"]
    info = (await jp_fetch("whale", "api", "health", params={"refresh": "1"})).body
    health = json.loads(info)
    assert health["status"] == "ok"
    assert health["credentials"]["docker_host"] == ssh_engine.docker_host
    assert "PRIVATE KEY" not in json.dumps(health) + json.dumps(answer)
    assert ssh_engine_id  # the same engine the SDK saw


def test_published_ports_of_an_ssh_engine_are_on_its_host():
    from whale_extension.engine import engine_hostname
    assert engine_hostname("ssh://me@box.example:2222") == "box.example"
    assert engine_hostname("ssh://me@203.0.113.7:22") == "203.0.113.7"


def test_the_bundles_ssh_uses_only_the_bundle_and_never_holds_the_key(tmp_path):
    from bundle_corpus import ssh_files

    from whale_core.bundle import write_bundle_dir
    files = ssh_files()
    directory = write_bundle_dir(tmp_path / "b", files)
    wrapper = (directory / "bin" / "ssh").read_text()
    assert (directory / "bin" / "ssh").stat().st_mode & 0o777 == 0o700
    assert files["ssh_key"].decode().splitlines()[1] not in wrapper
    for option in ("StrictHostKeyChecking=yes", "BatchMode=yes", "IdentitiesOnly=yes",
                   "GlobalKnownHostsFile=/dev/null", "'-F' '/dev/null'", "ForwardAgent=no"):
        assert option in wrapper
    # It runs the real ssh with the options of the directory it is in (resolved), here
    # a copy that echoes them instead, run through a link as PATH would find it.
    echo = directory / "bin" / "ssh-echo"
    echo.write_text(wrapper.replace("/usr/bin/ssh", "echo"))
    echo.chmod(0o700)
    (tmp_path / "current").symlink_to(directory)
    shown = subprocess.run([str(tmp_path / "current" / "bin" / "ssh-echo"), "-V"],
                           capture_output=True, text=True, check=True).stdout
    assert f'IdentityFile="{directory.resolve()}/ssh_key"' in shown
    assert f'UserKnownHostsFile="{directory.resolve()}/known_hosts"' in shown
    assert shown.rstrip().endswith("-V")


def test_an_ssh_bundle_as_a_zip_a_context_with_files_beside_it_and_the_forms_archive():
    from bundle_corpus import ssh_files, zip_bytes

    from whale_core.archives import pack_bundle
    files = ssh_files(host="ssh://me@box:2222", known_hosts_for="[box]:2222")
    assert read_archive(zip_bytes(files)) == files
    assert read_archive(zip_bytes(files, prefix="mine/")) == files
    # What the spawn form stores: one archive, read back the same, checked the same.
    assert read_archive(pack_bundle(files)) == files
    CredentialBundle.from_files(read_archive(pack_bundle(files)))
    # Beside the archive: only the two SSH files, each of a sane size.
    bare = zip_bytes({"docker.env": files["docker.env"]})
    assert read_archive(bare, {"ssh_key": files["ssh_key"],
                               "known_hosts": files["known_hosts"]}) == files
    with pytest.raises(BundleError, match="not a file an SSH endpoint needs"):
        read_archive(bare, {"key.pem": b"x"})
    with pytest.raises(BundleError, match="at most 64 KiB") as caught:
        read_archive(bare, {"ssh_key": b"x" * (65 << 10)})
    assert caught.value.code == "too-large"
