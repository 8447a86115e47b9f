"""Credentials bundles for tests: good ones, and the malformed ones uploads may carry.

Certificates are real (made with ``whale_hub.pki``); archives are built in memory the
way Carina's download and ``docker context export`` lay them out, and then bent in
one way each for the negative cases.
"""
from __future__ import annotations

import datetime as dt
import gzip
import io
import json
import os
import stat
import tarfile
import zipfile
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization

from whale_core.archives import MAX_ARCHIVE_BYTES, MAX_MEMBERS
from whale_hub.pki import CertificateAuthority, Issued

HOST = "tcp://127.0.0.1:2376"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


@dataclass
class Pki:
    """One engine's CA and a client certificate, plus a stranger CA and client."""

    ca: CertificateAuthority
    client: Issued
    other_ca: CertificateAuthority
    other_client: Issued

    @classmethod
    def make(cls) -> Pki:
        ca = CertificateAuthority.create(days=30)
        other = CertificateAuthority.create(name="Some other engine CA", days=30)
        return cls(ca=ca, client=ca.issue_client("learner", days=30),
                   other_ca=other, other_client=other.issue_client("stranger", days=30))


def env_text(host: str = HOST, verify: str | None = "1", cert_path: str = "/somewhere/else",
             extra: str = "") -> str:
    """A docker.env the way Carina wrote it (with `export`s and a comment)."""
    lines = ["# Docker environment for your cluster", f"export DOCKER_HOST={host}"]
    if verify is not None:
        lines.append(f"export DOCKER_TLS_VERIFY={verify}")
    lines.append(f"export DOCKER_CERT_PATH={cert_path}")
    return "\n".join(lines) + "\n" + extra


def ssh_key_pair(passphrase: bytes | None = None) -> tuple[bytes, bytes]:
    """An ed25519 key as ssh-keygen writes it (private, public); with a passphrase, as a
    PKCS#8 PEM key encrypted with it."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    key = Ed25519PrivateKey.generate()
    if passphrase:
        private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.BestAvailableEncryption(passphrase))
    else:
        private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                    serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH)
    return private, public + b" learner@laptop\n"


def ssh_files(*, host: str = "ssh://me@box", key: bytes | None = None,
              known_hosts: bytes | None = None, known_hosts_for: str = "box") -> dict[str, bytes]:
    """An SSH bundle: docker.env, ssh_key, known_hosts."""
    if known_hosts is None:
        known_hosts = known_hosts_for.encode() + b" " + ssh_key_pair()[1].rsplit(b" ", 1)[0] + b"\n"
    return {"docker.env": f"DOCKER_HOST={host}\n".encode(),
            "ssh_key": ssh_key_pair()[0] if key is None else key, "known_hosts": known_hosts}


def carina_files(ca: Issued, client: Issued, *, key: bytes | None = None,
                 env: str | None = None) -> dict[str, bytes]:
    """The four Carina files for a client certificate issued by ``ca``."""
    return {
        "ca.pem": ca.cert_pem,
        "cert.pem": client.cert_pem,
        "key.pem": client.key_pem if key is None else key,
        "docker.env": (env_text() if env is None else env).encode(),
    }


def context_files(pki: Pki, host: str = HOST, skip_tls_verify: bool = False,
                  tls: bool = True) -> dict[str, bytes]:
    """What `docker context export` writes: meta.json plus tls/docker/*.pem."""
    meta = {"Name": "learner", "Metadata": {"Description": "my engine"},
            "Endpoints": {"docker": {"Host": host, "SkipTLSVerify": skip_tls_verify}}}
    files = {"meta.json": json.dumps(meta).encode()}
    if tls:
        files.update({"tls/docker/ca.pem": pki.ca.cert_pem,
                      "tls/docker/cert.pem": pki.client.cert_pem,
                      "tls/docker/key.pem": pki.client.key_pem})
    return files


def encrypted_key(issued: Issued) -> bytes:
    return issued.key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.BestAvailableEncryption(b"secret"))


# ---------------------------------------------------------------- archive builders

def zip_bytes(files: dict[str, bytes], *, prefix: str = "",
              symlinks: dict[str, str] | None = None,
              compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    """A zip of ``files`` (names under ``prefix``), plus Unix symlink entries."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        if prefix:
            archive.writestr(prefix, b"")  # directory entry, as zip tools write them
        for name, content in files.items():
            archive.writestr(prefix + name, content)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(prefix + name)
            info.create_system = 3  # Unix: external_attr carries the file mode
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, target)
    return buffer.getvalue()


def tar_bytes(files: dict[str, bytes], *, gz: bool = False, dirs: tuple[str, ...] = (),
              links: dict[str, tuple[bytes, str]] | None = None) -> bytes:
    """A tar of ``files``; ``links`` maps a name to (tar type, target) for link and
    device entries; ``dirs`` are written first as directory entries (as the Docker
    CLI does)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name in dirs:
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, 0o700
            archive.addfile(info)
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(content), 0o600
            archive.addfile(info, io.BytesIO(content))
        for name, (kind, target) in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, target
            if kind == tarfile.CHRTYPE:
                info.devmajor, info.devminor = 1, 3
            archive.addfile(info)
    data = buffer.getvalue()
    return gzip.compress(data) if gz else data


def context_tar(pki: Pki, *, gz: bool = False, **kw) -> bytes:
    """A `docker context export` tar, entries in the order the Docker CLI writes them."""
    return tar_bytes(context_files(pki, **kw), gz=gz, dirs=("tls", "tls/docker"))


def unpadded(tar: bytes) -> bytes:
    """A tar as the Docker CLI's `docker context export` writes it: no padding after the
    last member's data and no end-of-archive blocks (GNU tar: "Unexpected EOF")."""
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        end = max(m.offset_data + m.size for m in archive.getmembers())
    return tar[:end]


def cli_context_export(bundle_dir, docker_host: str, workdir) -> bytes:
    """What this machine's own Docker CLI writes for `docker context export` of a context
    made from a bundle directory (no daemon needed)."""
    import os
    import subprocess
    config = os.fspath(workdir) + "/docker-config"
    env = dict(os.environ, DOCKER_CONFIG=config)
    files = {name: os.path.join(os.fspath(bundle_dir), f"{name}.pem") for name in ("ca", "cert", "key")}
    subprocess.run(["docker", "context", "create", "byoc", "--docker",
                    f"host={docker_host},ca={files['ca']},cert={files['cert']},key={files['key']}"],
                   env=env, check=True, capture_output=True)
    out = os.fspath(workdir) + "/byoc.dockercontext"
    subprocess.run(["docker", "context", "export", "byoc", out], env=env, check=True,
                   capture_output=True)
    with open(out, "rb") as f:
        return f.read()


# ------------------------------------------------------------------ the bad corpus
#
# Each case: (id, how to build the upload from the PKI, expected code, words the
# message must contain). Every one goes through the same check: refused with its own
# code and a useful sentence, and the bundle installed before is still current.

def _good(p):
    return carina_files(p.ca, p.client)


def _with(p, **changes):
    files = _good(p)
    files.update({k: v.encode() if isinstance(v, str) else v for k, v in changes.items()})
    return files


def _expired(p):
    old = p.ca.issue_client("learner", days=1, not_before=utcnow() - dt.timedelta(days=10))
    return carina_files(p.ca, old)


def _not_yet_valid(p):
    early = p.ca.issue_client("learner", days=30, not_before=utcnow() + dt.timedelta(days=3))
    return carina_files(p.ca, early)


def _expired_ca(p):
    from whale_hub.pki import CertificateAuthority
    ca = CertificateAuthority.create(days=30, not_before=utcnow() - dt.timedelta(days=60))
    return carina_files(ca, ca.issue_client("learner", days=90,
                                            not_before=utcnow() - dt.timedelta(days=1)))


def _without(name):
    def build(p):
        files = _good(p)
        del files[name]
        return zip_bytes(files)
    return build


def _many_members(p):
    files = _good(p)
    files.update({f"junk/{i}.txt": b"x" for i in range(MAX_MEMBERS)})
    return zip_bytes(files)


def _zip_bomb(p):
    files = _good(p)
    files["README.txt"] = bytes(5 << 20)  # compresses to a few KiB
    return zip_bytes(files)


def _gzip_bomb(p):
    return tar_bytes({"meta.json": b"{}", "padding": bytes(5 << 20)}, gz=True)


CORPUS = [
    # archive structure
    ("zip-slip", lambda p: zip_bytes({**_good(p), "../../.bashrc": b"evil"}),
     "path-traversal", ["'..'", "../../.bashrc"]),
    ("tar-slip", lambda p: tar_bytes({**_good(p), "carina/../../x": b"evil"}),
     "path-traversal", ["'..'"]),
    ("zip-absolute", lambda p: zip_bytes({**_good(p), "/etc/cron.d/evil": b"* * * * *"}),
     "path-traversal", ["absolute", "/etc/cron.d/evil"]),
    ("tar-absolute", lambda p: tar_bytes({"/home/learner/.bashrc": b"evil", **_good(p)}),
     "path-traversal", ["absolute"]),
    ("windows-absolute", lambda p: zip_bytes({**_good(p), "C:\\Windows\\evil": b"x"}),
     "path-traversal", ["absolute"]),
    ("tar-symlink", lambda p: tar_bytes(
        {k: v for k, v in _good(p).items() if k != "key.pem"},
        links={"key.pem": (tarfile.SYMTYPE, "/etc/shadow")}),
     "symlink", ["'key.pem'", "link"]),
    ("tar-hardlink", lambda p: tar_bytes(
        _good(p), links={"extra.pem": (tarfile.LNKTYPE, "../../etc/passwd")}),
     "symlink", ["'extra.pem'", "link"]),
    ("zip-symlink", lambda p: zip_bytes(
        {k: v for k, v in _good(p).items() if k != "ca.pem"},
        symlinks={"ca.pem": "/etc/ssl/private/server.key"}),
     "symlink", ["'ca.pem'", "plain files"]),
    ("tar-device", lambda p: tar_bytes(
        _good(p), links={"null": (tarfile.CHRTYPE, "")}),
     "bad-archive", ["device"]),
    ("oversize", lambda p: os.urandom(MAX_ARCHIVE_BYTES + 1),
     "too-large", ["1024 KiB"]),
    ("zip-bomb", _zip_bomb, "too-large", ["unpacks to more than 4 MiB"]),
    ("gzip-bomb", _gzip_bomb, "too-large", ["unpacks to more than 4 MiB"]),
    ("too-many-members", _many_members, "too-large", [f"more than {MAX_MEMBERS} entries"]),
    ("not-an-archive", lambda p: p.client.cert_pem, "bad-archive", ["not a zip or tar"]),
    ("empty-upload", lambda p: b"", "bad-archive", ["empty"]),
    ("truncated-zip", lambda p: zip_bytes(_good(p))[:200], "bad-archive", ["zip"]),
    ("gzip-not-tar", lambda p: gzip.compress(b"hello" * 300),
     "bad-archive", ["not of a tar archive"]),
    ("missing-key", _without("key.pem"), "missing-file", ["key.pem", "ca.pem, cert.pem"]),
    ("missing-env", _without("docker.env"), "missing-file", ["docker.env"]),
    # certificates
    ("wrong-ca", lambda p: carina_files(p.other_ca, p.client),
     "wrong-ca", ["cert.pem", "ca.pem", "same download"]),
    ("expired", _expired, "expired", ["cert.pem", "expired on", "days ago"]),
    ("not-yet-valid", _not_yet_valid, "not-yet-valid", ["clock", "from now"]),
    ("expired-ca", _expired_ca, "expired", ["ca.pem", "CA certificate"]),
    ("key-mismatch", lambda p: _with(p, **{"key.pem": p.other_client.key_pem}),
     "key-mismatch", ["key.pem", "cert.pem"]),
    ("garbage-cert", lambda p: _with(p, **{"cert.pem": "not a certificate\n"}),
     "bad-pem", ["cert.pem"]),
    ("garbage-key", lambda p: _with(p, **{"key.pem": b"-----BEGIN PRIVATE KEY-----\n"
                                                      b"AAAA\n-----END PRIVATE KEY-----\n"}),
     "bad-pem", ["key.pem"]),
    ("swapped-cert-and-key", lambda p: _with(p, **{"cert.pem": p.client.key_pem,
                                                  "key.pem": p.client.cert_pem}),
     "bad-pem", ["cert.pem holds a private key"]),
    ("encrypted-key", lambda p: _with(p, **{"key.pem": encrypted_key(p.client)}),
     "bad-pem", ["passphrase"]),
    # docker.env
    ("tls-verify-empty", lambda p: _with(p, **{"docker.env": env_text(verify="")}),
     "tls-verify-off", ["DOCKER_TLS_VERIFY", "''"]),
    ("tls-verify-zero", lambda p: _with(p, **{"docker.env": env_text(verify="0")}),
     "tls-verify-off", ["DOCKER_TLS_VERIFY", "'0'", "DOCKER_TLS_VERIFY=1"]),
    ("tls-verify-absent", lambda p: _with(p, **{"docker.env": env_text(verify=None)}),
     "tls-verify-off", ["does not set DOCKER_TLS_VERIFY=1"]),
    ("plain-http-host", lambda p: _with(p, **{"docker.env": env_text("http://10.0.0.5:2375")}),
     "insecure-host", ["http://10.0.0.5:2375", "plain HTTP", "TLS"]),
    ("unix-socket-host", lambda p: _with(
        p, **{"docker.env": env_text("unix:///var/run/docker.sock")}),
     "insecure-host", ["Unix socket", "TLS"]),
    # SSH endpoints (ssh://user@host): docker.env, ssh_key and known_hosts
    ("ssh-host-with-tls-files", lambda p: _with(p, **{"docker.env": env_text("ssh://me@box")}),
     "missing-file", ["ssh_key", "known_hosts"]),
    ("ssh-host-without-user", lambda p: ssh_files(host="ssh://box"),
     "bad-env", ["ssh://USER@HOST"]),
    ("ssh-option-as-user", lambda p: ssh_files(host="ssh://-oProxyCommand=reboot@box"),
     "bad-env", ["without a user"]),
    ("ssh-option-as-host", lambda p: ssh_files(host="ssh://me@-oProxyCommand=reboot"),
     "bad-env", ["not like ssh://"]),
    ("ssh-no-known-hosts", lambda p: {k: v for k, v in ssh_files().items()
                                      if k != "known_hosts"},
     "missing-file", ["known_hosts", "host key"]),
    ("ssh-public-key", lambda p: ssh_files(key=ssh_key_pair()[1]),
     "bad-ssh-key", ["public key", ".pub"]),
    ("ssh-encrypted-key", lambda p: ssh_files(key=ssh_key_pair(passphrase=b"pw")[0]),
     "bad-ssh-key", ["passphrase", "ssh-keygen"]),
    ("ssh-not-a-key", lambda p: ssh_files(key=b"hello\n"),
     "bad-ssh-key", ["not a private key"]),
    ("ssh-known-hosts-other-host", lambda p: ssh_files(known_hosts_for="[box]:2222"),
     "unknown-host", ["no key for box", "ssh-keyscan"]),
    ("ssh-known-hosts-empty", lambda p: ssh_files(known_hosts=b"# nothing\n"),
     "bad-known-hosts", ["empty"]),
    ("ssh-known-hosts-garbage", lambda p: ssh_files(known_hosts=b"box\n"),
     "bad-known-hosts", ["HOST KEYTYPE KEY"]),
    ("no-host", lambda p: _with(p, **{"docker.env": "DOCKER_TLS_VERIFY=1\n"}),
     "bad-env", ["DOCKER_HOST"]),
    ("shell-injection-host", lambda p: _with(
        p, **{"docker.env": env_text("tcp://h$(reboot):2376")}),
     "bad-env", ["not an address"]),
    ("not-an-env-file", lambda p: _with(p, **{"docker.env": "DOCKER_HOST=tcp://h:2376\n"
                                                           "if true; then echo; fi\n"}),
     "bad-env", ["Line 2"]),
    # docker context export
    ("context-skip-tls-verify", lambda p: context_tar(p, skip_tls_verify=True),
     "tls-verify-off", ["skip TLS verify"]),
    ("context-unix-host", lambda p: context_tar(p, host="unix:///var/run/docker.sock"),
     "insecure-host", ["Unix socket"]),
    ("context-without-tls", lambda p: context_tar(p, tls=False),
     "missing-file", ["tls/docker/ca.pem", "docker context create"]),
    ("context-bad-meta", lambda p: tar_bytes({"meta.json": b"{not json"}),
     "bad-archive", ["meta.json"]),
    ("context-wrong-ca", lambda p: tar_bytes({
        **context_files(p), "tls/docker/ca.pem": p.other_ca.cert_pem}),
     "wrong-ca", ["ca.pem"]),
]
