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
import stat
import tarfile
import zipfile
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization

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
