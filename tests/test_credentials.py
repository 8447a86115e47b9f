"""Credentials bundles: reading uploads, checking them, installing them atomically.

No Docker engine is needed here: certificates are real (whale_hub.pki), archives are
built in memory. The live ping against a real engine is tested with the engine; the
few ping tests below talk to a small TLS server in this process instead, and say so.
"""
from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import http.server
import io
import json
import os
import socket
import ssl
import stat
import subprocess
import sys
import tarfile
import threading
import zipfile

import pytest
from bundle_corpus import (
    CORPUS,
    HOST,
    Pki,
    carina_files,
    cli_context_export,
    context_files,
    context_tar,
    env_text,
    tar_bytes,
    unpadded,
    utcnow,
    zip_bytes,
)
from cryptography.hazmat.primitives import serialization

from whale_core.archives import read_archive
from whale_core.bundle import CredentialBundle
from whale_core.envfile import parse_env
from whale_core.errors import BundleError
from whale_core.store import CredentialStore, default_store


@pytest.fixture(scope="module")
def pki() -> Pki:
    return Pki.make()


@pytest.fixture
def store(tmp_path) -> CredentialStore:
    return CredentialStore(tmp_path / "credentials")


@pytest.fixture
def installed(store, pki):
    """A store with a good bundle already installed: what a reload must not break."""
    bundle = store.install_files(carina_files(pki.ca, pki.client))
    return store, bundle


def generation_dirs(store: CredentialStore) -> set[str]:
    return set(os.listdir(store.generations_path))


def key_lines(pki: Pki) -> list[str]:
    """The base64 body lines of the client key: they must never show up in a message."""
    return [line for line in pki.client.key_pem.decode().splitlines() if "-----" not in line]




@pytest.mark.parametrize(("name", "build", "code", "words"), CORPUS, ids=[c[0] for c in CORPUS])
def test_bad_bundle_is_refused_and_old_one_survives(installed, pki, name, build, code,
                                                    words):
    store, before = installed
    generation = store.generation()
    upload = build(pki)
    if isinstance(upload, dict):  # already unpacked: also ship it as a Carina zip
        upload = zip_bytes(upload)

    with pytest.raises(BundleError) as caught:
        store.install_archive(upload)

    error = caught.value
    assert error.code == code, str(error)
    message = str(error)
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    assert message.endswith("."), "a learner gets a whole sentence"
    assert "Traceback" not in message
    assert "-----BEGIN" not in message
    assert not any(line in message for line in key_lines(pki))
    assert error.to_dict()["code"] == code
    # Nothing changed: same generation, no half-written one left behind, still loads.
    assert store.generation() == generation
    assert generation_dirs(store) == {generation}
    still = store.current()
    assert still.cert_fingerprint == before.cert_fingerprint
    assert still.docker_host == HOST


def test_corpus_covers_every_code():
    """Every validation rule the brief lists has its own code in the corpus."""
    codes = {case[2] for case in CORPUS}
    assert codes >= {"missing-file", "path-traversal", "symlink", "too-large", "bad-pem",
                     "key-mismatch", "wrong-ca", "expired", "not-yet-valid",
                     "tls-verify-off", "insecure-host", "bad-env", "bad-archive"}


# ------------------------------------------------------------------ good uploads

def _check_installed(store: CredentialStore, bundle: CredentialBundle, pki: Pki):
    assert bundle.docker_host == HOST
    assert bundle.path == store.current_path
    assert bundle.env == {"DOCKER_HOST": HOST, "DOCKER_TLS_VERIFY": "1",
                          "DOCKER_CERT_PATH": str(store.current_path)}
    current = store.current()
    assert current.cert_fingerprint == bundle.cert_fingerprint
    assert (store.current_path / "key.pem").read_bytes() == pki.client.key_pem
    assert (store.current_path / "cert.pem").read_bytes() == pki.client.cert_pem
    assert (store.current_path / "ca.pem").read_bytes() == pki.ca.cert_pem


def test_install_carina_zip(store, pki):
    bundle = store.install_archive(zip_bytes(carina_files(pki.ca, pki.client)))
    _check_installed(store, bundle, pki)
    assert bundle.not_after == pki.client.cert.not_valid_after_utc
    ca_der = pki.ca.cert.public_bytes(serialization.Encoding.DER)
    assert bundle.ca_fingerprint.replace(":", "") == hashlib.sha256(ca_der).hexdigest()
    assert bundle.ca_fingerprint != bundle.cert_fingerprint


def test_install_carina_zip_with_top_directory_and_extras(store, pki):
    files = carina_files(pki.ca, pki.client)
    files["docker.cmd"] = b"@echo off\r\n"
    files["__MACOSX/._ca.pem"] = b"\x00\x05\x16\x07"
    upload = zip_bytes(files, prefix="mycluster/")
    bundle = store.install_archive(upload)
    _check_installed(store, bundle, pki)
    assert sorted(os.listdir(store.current_path)) == ["ca.pem", "cert.pem", "docker.env",
                                                     "key.pem"]


@pytest.mark.parametrize("kind", ["tar", "tar.gz", "zip"])
def test_install_docker_context_export(store, pki, kind):
    upload = zip_bytes(context_files(pki)) if kind == "zip" else context_tar(pki, gz=kind == "tar.gz")
    assert read_archive(upload)["docker.env"] == (
        f"DOCKER_HOST={HOST}\nDOCKER_TLS_VERIFY=1\n".encode())
    bundle = store.install_archive(upload)
    _check_installed(store, bundle, pki)


def test_the_docker_clis_own_context_export_is_accepted(store, pki, tmp_path):
    """What `docker context export` of this machine's Docker CLI writes (no padding after
    the last member, no end-of-archive blocks: GNU tar calls it cut short) is a whole
    bundle, and installs."""
    from whale_hub.pki import write_client_bundle
    src = write_client_bundle(tmp_path / "carina", pki.ca, pki.client, HOST)
    upload = cli_context_export(src, HOST, tmp_path)
    if len(upload) % 512 == 0:  # a CLI that pads: the unpadded form is tested below anyway
        upload = unpadded(upload)
    assert len(upload) % 512 != 0
    bundle = store.install_archive(upload)
    _check_installed(store, bundle, pki)


@pytest.mark.parametrize("gz", [False, True], ids=["tar", "tar.gz"])
def test_an_unpadded_context_export_is_accepted(store, pki, gz):
    upload = unpadded(context_tar(pki))
    if gz:
        upload = gzip.compress(upload)
    bundle = store.install_archive(upload)
    _check_installed(store, bundle, pki)


def test_an_unpadded_archive_whose_last_member_is_cut_short_is_refused(installed, pki):
    store, before = installed
    whole = unpadded(context_tar(pki))
    with pytest.raises(BundleError) as refused:
        store.install_archive(whole[:-10])
    assert refused.value.code == "bad-archive"
    assert str(refused.value).startswith("The archive entry 'tls/docker/key.pem' is cut short: "
                                         "the upload holds ")
    assert f"of its {len(pki.client.key_pem)} bytes" in str(refused.value)
    assert store.current() == before


def test_an_archive_cut_inside_a_header_is_refused(installed, pki):
    store, before = installed
    whole = context_tar(pki)
    with tarfile.open(fileobj=io.BytesIO(whole)) as archive:
        last = archive.getmembers()[-1]
    with pytest.raises(BundleError, match="damaged or cut short"):
        store.install_archive(whole[:last.offset + 100])  # its name, but not its size
    assert store.current() == before


def test_install_tar_gz_made_with_dot_prefix(store, pki):
    """`tar czf bundle.tgz -C bundle .` names entries ./ca.pem and adds a ./ entry."""
    files = {f"./{name}": content for name, content in carina_files(pki.ca, pki.client).items()}
    bundle = store.install_archive(tar_bytes(files, gz=True, dirs=(".",)))
    _check_installed(store, bundle, pki)


def test_context_https_host_is_normalised(pki):
    files = read_archive(context_tar(pki, host="https://engine.example.org"))
    assert parse_env(files["docker.env"])["DOCKER_HOST"] == "tcp://engine.example.org:2376"


def test_install_directory(store, pki, tmp_path):
    from whale_hub.pki import write_client_bundle
    src = write_client_bundle(tmp_path / "carina", pki.ca, pki.client, HOST)
    bundle = store.install_directory(src)
    _check_installed(store, bundle, pki)
    # The source keeps its own DOCKER_CERT_PATH; the copy points at the stable path.
    assert f"DOCKER_CERT_PATH={src}" in (src / "docker.env").read_text()


def test_install_directory_missing_file_names_it(installed, tmp_path, pki):
    store, _ = installed
    generation = store.generation()
    src = tmp_path / "partial"
    src.mkdir()
    for name, content in carina_files(pki.ca, pki.client).items():
        if name != "cert.pem":
            (src / name).write_bytes(content)
    with pytest.raises(BundleError) as caught:
        store.install_directory(src)
    assert caught.value.code == "missing-file"
    assert "no cert.pem" in str(caught.value)
    assert str(src) in str(caught.value)
    assert store.generation() == generation


def test_generation_changes_and_old_generations_are_pruned(store, pki):
    assert store.generation() is None
    assert store.current() is None
    first = store.install_files(carina_files(pki.ca, pki.client))
    gen1 = store.generation()
    second_client = pki.ca.issue_client("learner", days=30)
    second = store.install_files(carina_files(pki.ca, second_client))
    gen2 = store.generation()
    assert gen1
    assert gen2
    assert gen1 != gen2
    assert second.cert_fingerprint != first.cert_fingerprint
    assert store.current().cert_fingerprint == second.cert_fingerprint
    # The previous generation stays, so a process that loaded it keeps working...
    assert generation_dirs(store) == {gen1, gen2}
    assert (first.files_dir / "key.pem").is_file()
    store.install_files(carina_files(pki.ca, pki.client))
    gen3 = store.generation()
    # ...and the one before it is pruned.
    assert generation_dirs(store) == {gen2, gen3}
    assert not first.files_dir.exists()
    assert (second.files_dir / "key.pem").is_file()
    assert os.readlink(store.current_path) == os.path.join("generations", gen3)
    assert not [n for n in os.listdir(store.root) if n.startswith(".current-")]


def test_readers_never_see_a_half_installed_bundle(store, pki):
    """A kernel reloads while the extension installs: every read gets a whole bundle."""
    other = pki.ca.issue_client("learner", days=30)
    uploads = [carina_files(pki.ca, pki.client), carina_files(pki.ca, other)]
    store.install_files(uploads[0])
    expected = {store.current().cert_fingerprint,
                CredentialBundle.from_files(uploads[1]).cert_fingerprint}
    errors, done = [], threading.Event()

    def writer():
        try:
            for i in range(12):
                store.install_files(uploads[i % 2])
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    reads = 0
    try:
        while not done.is_set() or reads == 0:
            assert store.current().cert_fingerprint in expected
            reads += 1
    finally:
        thread.join()
    assert not errors
    assert reads > 0
    assert len(generation_dirs(store)) == 2


def test_files_modes(installed):
    store, _ = installed
    generation_dir = store.generations_path / store.generation()
    assert stat.S_IMODE(os.stat(generation_dir).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(store.current_path / "key.pem").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(store.root).st_mode) == 0o700


def test_docker_env_points_at_stable_path(installed):
    store, _ = installed
    written = parse_env((store.current_path / "docker.env").read_text())
    assert written == {"DOCKER_HOST": HOST, "DOCKER_TLS_VERIFY": "1",
                       "DOCKER_CERT_PATH": str(store.current_path)}
    assert "/somewhere/else" not in (store.current_path / "docker.env").read_text()
    assert store.current().env["DOCKER_CERT_PATH"] == str(store.current_path)


def test_docker_env_with_spaces_in_root_round_trips(tmp_path, pki):
    store = CredentialStore(tmp_path / "my credentials")
    store.install_files(carina_files(pki.ca, pki.client))
    text = (store.current_path / "docker.env").read_text()
    assert f"DOCKER_CERT_PATH='{store.current_path}'" in text
    assert parse_env(text)["DOCKER_CERT_PATH"] == str(store.current_path)


def test_only_known_settings_survive_install(store, pki):
    env = env_text(extra="export DOCKER_VERSION=1.11.2\nexport LD_PRELOAD=/tmp/evil.so\n")
    bundle = store.install_files(carina_files(pki.ca, pki.client, env=env))
    assert bundle.env["DOCKER_VERSION"] == "1.11.2"
    on_disk = (store.current_path / "docker.env").read_text()
    assert "LD_PRELOAD" not in on_disk
    assert "LD_PRELOAD" not in bundle.env


@pytest.mark.parametrize("outcome", ["raises", "returns-false"])
def test_verify_failure_leaves_old_bundle(installed, pki, outcome):
    store, before = installed
    generation = store.generation()
    seen = []

    def verify(bundle):
        seen.append(bundle)
        # The candidate is complete on disk while it is being verified...
        assert (bundle.files_dir / "key.pem").read_bytes() == newer.key_pem
        if outcome == "raises":
            raise BundleError("unreachable", "Could not reach the Docker engine at "
                              "tcp://127.0.0.1:2376: connection refused.")
        return False

    newer = pki.ca.issue_client("learner", days=30)
    with pytest.raises(BundleError) as caught:
        store.install_files(carina_files(pki.ca, newer), verify=verify)
    assert caught.value.code == ("unreachable" if outcome == "raises" else "verify-failed")
    assert len(seen) == 1
    assert seen[0].cert_fingerprint != before.cert_fingerprint
    # ...but is never swapped in, and is cleaned away.
    assert store.generation() == generation
    assert generation_dirs(store) == {generation}
    assert not seen[0].files_dir.exists()
    assert store.current().cert_fingerprint == before.cert_fingerprint


def test_verify_success_swaps(installed, pki):
    store, before = installed
    newer = pki.ca.issue_client("learner", days=30)
    calls = []
    bundle = store.install_files(carina_files(pki.ca, newer), verify=calls.append)
    assert len(calls) == 1
    assert store.current().cert_fingerprint == bundle.cert_fingerprint != before.cert_fingerprint


def test_unexpected_exception_in_verify_also_rolls_back(installed, pki):
    store, _ = installed
    generation = store.generation()

    def verify(bundle):
        raise KeyboardInterrupt  # even this must not leave a half-installed bundle

    with pytest.raises(KeyboardInterrupt):
        store.install_files(carina_files(pki.ca, pki.ca.issue_client("x")), verify=verify)
    assert store.generation() == generation
    assert generation_dirs(store) == {generation}


def test_hand_made_current_directory_is_replaced(tmp_path, pki):
    from whale_hub.pki import write_client_bundle
    store = CredentialStore(tmp_path / "creds")
    write_client_bundle(store.current_path, pki.ca, pki.client, HOST)
    assert store.generation() == "unmanaged"
    assert store.current().docker_host == HOST
    store.install_files(carina_files(pki.ca, pki.ca.issue_client("again")))
    assert store.current_path.is_symlink()
    assert store.generation() != "unmanaged"


# ------------------------------------------------------------------ load and the bundle

def test_load_reports_expiry(tmp_path, pki):
    from whale_hub.pki import write_client_bundle
    client = pki.ca.issue_client("learner", days=11, not_before=utcnow() - dt.timedelta(days=1))
    bundle = CredentialBundle.load(write_client_bundle(tmp_path / "b", pki.ca, client, HOST))
    assert bundle.days_left == 9  # 10 days minus the seconds since issue, rounded down
    assert bundle.not_after.tzinfo is not None
    # `now` lets a caller ask "will it still be valid then?"
    with pytest.raises(BundleError) as caught:
        CredentialBundle.load(tmp_path / "b",
                              now=bundle.not_after + dt.timedelta(days=2, hours=12))
    assert caught.value.code == "expired"
    assert caught.value.file == "cert.pem"
    when = bundle.not_after.strftime("%Y-%m-%d %H:%M UTC")
    assert f"expired on {when}, 2 days ago" in str(caught.value)


def test_load_ignores_docker_cert_path_in_file(tmp_path, pki):
    from whale_hub.pki import write_client_bundle
    src = write_client_bundle(tmp_path / "b", pki.ca, pki.client, "https://127.0.0.1")
    bundle = CredentialBundle.load(src)
    assert bundle.env["DOCKER_CERT_PATH"] == str(src)
    assert bundle.docker_host == "tcp://127.0.0.1:2376"
    assert bundle.base_url == "https://127.0.0.1:2376"


def test_from_files_checks_an_upload_without_writing_it(pki, tmp_path):
    """What the hub does with a bundle uploaded on the spawn form."""
    files = read_archive(context_tar(pki, gz=True))
    bundle = CredentialBundle.from_files(files, path=tmp_path / "later")
    assert bundle.docker_host == HOST
    assert bundle.env["DOCKER_CERT_PATH"] == str(tmp_path / "later")
    assert not (tmp_path / "later").exists()
    files["cert.pem"] = pki.other_client.cert_pem
    with pytest.raises(BundleError) as caught:
        CredentialBundle.from_files(files)
    assert caught.value.code == "key-mismatch"


def test_load_missing_directory(tmp_path):
    with pytest.raises(BundleError) as caught:
        CredentialBundle.load(tmp_path / "nowhere")
    assert caught.value.code == "missing-file"
    assert "nowhere" in str(caught.value)


def test_repr_and_errors_hold_no_secrets(installed, pki):
    store, bundle = installed
    text = repr(bundle) + str(bundle) + repr(store) + repr(store.current())
    assert "PRIVATE" not in text
    assert not any(line in text for line in key_lines(pki))
    assert HOST in repr(bundle)
    error = BundleError("bad-env", "docker.env is wrong.")
    assert repr(error) == "BundleError('bad-env', 'docker.env is wrong.')"
    assert isinstance(error, ValueError)


def test_password_in_host_is_not_echoed(pki, tmp_path):
    with pytest.raises(BundleError) as caught:
        CredentialStore(tmp_path).install_archive(zip_bytes(carina_files(
            pki.ca, pki.client, env=env_text("http://admin:hunter2@10.0.0.1:2375"))))
    assert caught.value.code == "insecure-host"
    assert "10.0.0.1:2375" in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_default_store_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("WHALE_CREDENTIALS", str(tmp_path / "x"))
    assert default_store().current_path == tmp_path / "x" / "current"
    monkeypatch.delenv("WHALE_CREDENTIALS")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_store().root == tmp_path / "home" / ".whale" / "credentials"


def test_import_is_light():
    """The kernel imports this module at start: the Docker SDK must not come with it."""
    code = ("import sys, whale_core; "
            "print(sorted(m for m in ('docker', 'requests', 'urllib3') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                         check=True)
    assert out.stdout.strip() == "[]"


# ------------------------------------------------------------------ parse_env

def test_parse_env_forms():
    text = ("\ufeff# comment\n\nexport DOCKER_HOST=tcp://h:2376  # the engine\r\n"
            "DOCKER_TLS_VERIFY=\"1\"\nexport\tQUOTED='a # b'\n"
            "ESCAPED=\"say \\\"hi\\\" \\$HOME\"\n"
            "DOCKER_CERT_PATH=$(cd \"$(dirname \"${BASH_SOURCE[0]}\")\" && pwd)\nEMPTY=\n")
    assert parse_env(text) == {
        "DOCKER_HOST": "tcp://h:2376", "DOCKER_TLS_VERIFY": "1", "QUOTED": "a # b",
        "ESCAPED": 'say "hi" $HOME',
        "DOCKER_CERT_PATH": '$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)', "EMPTY": ""}


@pytest.mark.parametrize(("text", "line"), [
    ("A=1\nnot a setting\n", 2),
    ("A='unclosed\n", 1),
    ("A=\"x\" trailing\n", 1),
    ("1A=x\n", 1),
])
def test_parse_env_rejects(text, line):
    with pytest.raises(BundleError) as caught:
        parse_env(text)
    assert caught.value.code == "bad-env"
    assert f"Line {line} " in str(caught.value)


def test_parse_env_rejects_binary():
    with pytest.raises(BundleError) as caught:
        parse_env(b"\xff\xfe\x00binary")
    assert caught.value.code == "bad-env"
    assert "not a text file" in str(caught.value)


# ------------------------------------------------------------------ ping
#
# These talk to a small TLS server in this process, not to dockerd: the engine is
# tested elsewhere, here we check that each way of failing becomes one plain sentence.

@pytest.fixture
def no_proxy(monkeypatch):
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.fixture
def env_ca_bundle(monkeypatch, tmp_path, pki):
    """Point requests' CA environment variables at the *other* CA, as images often
    point them at the system store: requests would let them replace the bundle's
    ca.pem (psf/requests#4726), which must not happen."""
    path = tmp_path / "env-ca.pem"
    path.write_bytes(pki.other_ca.cert_pem)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(path))
    monkeypatch.setenv("CURL_CA_BUNDLE", str(path))


def _bundle_for(tmp_path, pki, port, name="b") -> CredentialBundle:
    from whale_hub.pki import write_client_bundle
    return CredentialBundle.load(write_client_bundle(
        tmp_path / name, pki.ca, pki.client, f"tcp://127.0.0.1:{port}"))


class _FakeEngine(http.server.BaseHTTPRequestHandler):
    """Answers GET .../version like dockerd does, nothing else (a stand-in, see above)."""

    def do_GET(self):
        body = json.dumps({"ApiVersion": "1.44", "MinAPIVersion": "1.24",
                           "Version": "25.0.0-fake"}).encode()
        code = 200 if self.path.endswith("/version") else 404
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def tls_server(tmp_path):
    """Start a mutual-TLS HTTP server: server cert from ``server_ca``, client certs
    checked against ``client_ca``."""
    servers = []

    def start(server_ca, client_ca):
        from whale_hub.pki import write_engine_tls
        where = tmp_path / f"engine{len(servers)}"
        write_engine_tls(where, server_ca, server_ca.issue_server(ips=("127.0.0.1",)))
        (where / "client-ca.pem").write_bytes(client_ca.cert_pem)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(where / "server-cert.pem", where / "server-key.pem")
        context.load_verify_locations(where / "client-ca.pem")
        context.verify_mode = ssl.CERT_REQUIRED
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FakeEngine)
        server.daemon_threads = True
        server.socket = context.wrap_socket(server.socket, server_side=True)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                  daemon=True)
        thread.start()
        servers.append((server, thread))
        return server.server_address[1]

    yield start
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_ping_answers_version_over_mutual_tls(tmp_path, pki, tls_server, no_proxy,
                                              env_ca_bundle):
    port = tls_server(pki.ca, pki.ca)
    answer = _bundle_for(tmp_path, pki, port).ping(timeout=3)
    assert answer["ApiVersion"] == "1.44"
    assert answer["Version"] == "25.0.0-fake"


def test_client_is_a_context_manager_and_ignores_env_ca(tmp_path, pki, tls_server,
                                                       no_proxy, env_ca_bundle):
    port = tls_server(pki.ca, pki.ca)
    bundle = _bundle_for(tmp_path, pki, port)
    with bundle.client(timeout=3) as engine:
        assert engine.api.api_version == "1.44"  # negotiated with the engine
        assert engine.version()["Version"] == "25.0.0-fake"
    assert engine.api.verify == str(bundle.files_dir / "ca.pem")


def test_ping_wrong_ca(tmp_path, pki, tls_server, no_proxy, env_ca_bundle):
    port = tls_server(pki.other_ca, pki.ca)  # an engine made by someone else
    with pytest.raises(BundleError) as caught:
        _bundle_for(tmp_path, pki, port).ping(timeout=3)
    message = str(caught.value)
    assert caught.value.code == "unreachable"
    assert f"tcp://127.0.0.1:{port}" in message
    assert "not signed by the CA in ca.pem" in message
    assert "wrong CA" in message


def test_ping_client_certificate_rejected(tmp_path, pki, tls_server, no_proxy):
    port = tls_server(pki.ca, pki.other_ca)  # the engine trusts other clients only
    with pytest.raises(BundleError) as caught:
        _bundle_for(tmp_path, pki, port).ping(timeout=3)
    assert caught.value.code == "unreachable"
    assert "client certificate" in str(caught.value)


def test_ping_port_without_tls(tmp_path, pki, no_proxy):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FakeEngine)  # plain HTTP
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        with pytest.raises(BundleError) as caught:
            _bundle_for(tmp_path, pki, server.server_address[1]).ping(timeout=3)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    assert caught.value.code == "unreachable"
    assert "not with TLS" in str(caught.value)


def test_ping_connection_refused(tmp_path, pki, no_proxy):
    with socket.socket() as probe:  # a port that was free a moment ago
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(BundleError) as caught:
        _bundle_for(tmp_path, pki, port).ping(timeout=2)
    message = str(caught.value)
    assert caught.value.code == "unreachable"
    assert f"tcp://127.0.0.1:{port}" in message
    assert "connection refused" in message
    assert "Traceback" not in message
    assert "urllib3" not in message


def test_ping_timeout(tmp_path, pki, no_proxy):
    with socket.socket() as silent:  # accepts connections (backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        with pytest.raises(BundleError) as caught:
            _bundle_for(tmp_path, pki, port).ping(timeout=0.2)
    assert caught.value.code == "unreachable"
    assert "timed out after 0.2 seconds" in str(caught.value)


def test_tls_config_uses_bundle_files(installed):
    store, _ = installed
    bundle = store.current()
    tls = bundle.tls_config()
    real = store.generations_path / store.generation()
    assert tls.cert == (str(real / "cert.pem"), str(real / "key.pem"))
    assert tls.ca_cert == str(real / "ca.pem")
    assert tls.verify is True


def test_zip_symlink_detected_even_without_unix_creator(pki):
    files = carina_files(pki.ca, pki.client)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in files.items():
            archive.writestr(name, content)
        info = zipfile.ZipInfo("extra")
        info.create_system = 0
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(info, "/etc/passwd")
    with pytest.raises(BundleError) as caught:
        read_archive(buffer.getvalue())
    assert caught.value.code == "symlink"
