"""Credentials bundles: the one place that reads, checks and installs them.

A bundle is what connects a learner's notebook to their Docker engine. Its canonical
on-disk form is the Carina layout: a directory holding ``ca.pem``, ``cert.pem``,
``key.pem`` and ``docker.env``. Bundles also arrive as uploads: a Carina zip, or an
archive made by ``docker context export``. Both are untrusted input, so they are read
in memory under size limits and never extracted with a generic extractor.

The kernel, the server extension and the hub all import this module, so at import
time it needs only the standard library and ``cryptography``; the Docker SDK is
imported inside the functions that talk to an engine (the kernel must start fast).

Every refusal is a :class:`BundleError` whose text is a sentence a learner can act on
and whose ``code`` a program can branch on. No message, repr or log line built here
ever contains key material.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import hashlib
import io
import ipaddress
import json
import os
import re
import secrets
import shlex
import shutil
import socket
import ssl
import stat
import tarfile
import time
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

try:  # POSIX only; without it installs are still atomic, just not serialised
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

__all__ = [
    "MAX_ARCHIVE_BYTES", "MAX_UNCOMPRESSED_BYTES", "MAX_MEMBERS", "MAX_FILE_BYTES",
    "BUNDLE_FILES", "BundleError", "CredentialBundle", "CredentialStore",
    "read_archive", "default_store", "parse_env",
]

#: Largest upload accepted, compressed.
MAX_ARCHIVE_BYTES = 1 << 20
#: Largest total size of an archive's contents once decompressed (zip bombs stop here).
MAX_UNCOMPRESSED_BYTES = 4 << 20
#: Most entries (files and directories) an archive may list.
MAX_MEMBERS = 64
#: Largest single bundle file read from disk.
MAX_FILE_BYTES = 1 << 20

#: The four files of a bundle, in the order they are checked.
BUNDLE_FILES = ("ca.pem", "cert.pem", "key.pem", "docker.env")

DEFAULT_TLS_PORT = 2376
_TRUTHY = {"1", "true", "yes", "on"}
_ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HOSTNAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_.-]*[A-Za-z0-9])?")
_DOCKER_VERSION = re.compile(r"[0-9A-Za-z][0-9A-Za-z.+~-]{0,63}")
_CONTEXT_TLS = "tls/docker/"


class BundleError(ValueError):
    """A credentials bundle was refused.

    ``str(error)`` is a complete sentence that tells a learner what is wrong and what
    to do; ``code`` is a short machine id (``"expired"``, ``"wrong-ca"``, ...) for
    programs, e.g. to choose an HTTP status or a help link. ``file`` names the bundle
    file at fault when there is one.
    """

    def __init__(self, code: str, message: str, *, file: str | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.file = file

    def to_dict(self) -> dict:
        """JSON-ready form for API answers."""
        out = {"code": self.code, "message": self.message}
        if self.file:
            out["file"] = self.file
        return out

    def __repr__(self) -> str:
        return f"BundleError({self.code!r}, {self.message!r})"


# --------------------------------------------------------------------------- helpers

def _utcnow() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


def _aware(moment: _dt.datetime | None) -> _dt.datetime:
    if moment is None:
        return _utcnow()
    if moment.tzinfo is None:
        return moment.replace(tzinfo=_dt.timezone.utc)
    return moment.astimezone(_dt.timezone.utc)


def _fingerprint(cert: x509.Certificate) -> str:
    digest = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def _when(moment: _dt.datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _span(delta: _dt.timedelta) -> str:
    seconds = abs(delta.total_seconds())
    if seconds >= 2 * 86400:
        return f"{int(seconds // 86400)} days"
    if seconds >= 2 * 3600:
        return f"{int(seconds // 3600)} hours"
    if seconds >= 120:
        return f"{int(seconds // 60)} minutes"
    return "moments"


def _shown(name: str, limit: int = 80) -> str:
    """An untrusted archive entry name, safe to put in a message."""
    text = name if len(name) <= limit else name[:limit] + "…"
    return repr(text)


def _public_der(public_key) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER,
                                   serialization.PublicFormat.SubjectPublicKeyInfo)


# ------------------------------------------------------------------------- docker.env

def parse_env(text: str | bytes) -> dict[str, str]:
    """Parse a ``docker.env`` file.

    Accepts ``KEY=VALUE`` lines, an optional ``export`` in front, single or double
    quoted values, blank lines and ``#`` comments (whole-line, or after a space on an
    unquoted value). Values are not expanded: Carina's
    ``DOCKER_CERT_PATH=$(cd ... && pwd)`` is kept as text (and ignored by the loader).
    Anything else raises ``BundleError(code="bad-env")`` naming the line.
    """
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode("utf-8-sig")
        except UnicodeDecodeError:
            raise BundleError("bad-env", "docker.env is not a text file. It should hold "
                              "lines like DOCKER_HOST=tcp://host:2376.",
                              file="docker.env") from None
    text = text.lstrip("\ufeff")
    result: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        body = line.strip()
        if not body or body.startswith("#"):
            continue
        if body.startswith("export") and body[6:7] in (" ", "\t"):
            body = body[6:].lstrip()
        key_match = _ENV_KEY.match(body)
        rest = body[key_match.end():].lstrip() if key_match else ""
        if not key_match or not rest.startswith("="):
            raise BundleError(
                "bad-env",
                f"Line {number} of docker.env is not a KEY=VALUE setting. docker.env "
                "should only hold lines like DOCKER_HOST=tcp://host:2376.",
                file="docker.env")
        result[key_match.group()] = _env_value(rest[1:].lstrip(), number)
    return result


def _env_value(raw: str, number: int) -> str:
    def bad(why: str) -> BundleError:
        return BundleError("bad-env", f"Line {number} of docker.env {why}. Fix the quotes "
                           "or download the bundle again.", file="docker.env")

    if not raw or raw[0] not in "'\"":
        for marker in (" #", "\t#"):
            cut = raw.find(marker)
            if cut >= 0:
                raw = raw[:cut]
        return raw.strip()
    quote, out, i = raw[0], [], 1
    while i < len(raw):
        char = raw[i]
        if char == quote:
            break
        if quote == '"' and char == "\\" and i + 1 < len(raw):
            nxt = raw[i + 1]
            out.append(nxt if nxt in '"\\$`' else char + nxt)
            i += 2
            continue
        out.append(char)
        i += 1
    else:
        raise bad("has a quote that is never closed")
    tail = raw[i + 1:].strip()
    if tail and not tail.startswith("#"):
        raise bad("has text after the closing quote")
    return "".join(out)


def _format_env(values: Mapping[str, str]) -> str:
    lines = ["# Written by How to Whale. DOCKER_CERT_PATH is the stable path of the",
             "# installed bundle; its files are swapped atomically when it is replaced."]
    lines += [f"{key}={shlex.quote(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


def _normalize_host(raw: str | None, source: str) -> str:
    """Check a DOCKER_HOST and return it as ``tcp://host:port``."""
    raw = (raw or "").strip()
    if not raw:
        raise BundleError("bad-env", f"{source} does not say which engine to use "
                          "(DOCKER_HOST is missing or empty). Download the bundle again.",
                          file="docker.env")
    tls_needed = ("The Docker kernel only connects to engines over TLS, with the "
                  "bundle's certificates: use the engine's tcp://host:2376 address.")
    if raw.startswith(("/", "\\\\.\\pipe", "//./pipe")):
        raise BundleError("insecure-host", f"{source} points at a local socket "
                          f"({_shown_host(raw)}), not at a remote engine. {tls_needed}",
                          file="docker.env")
    if "://" not in raw:
        raw = "tcp://" + raw
    scheme = raw.split("://", 1)[0].lower()
    if scheme not in ("tcp", "https"):
        what = {
            "unix": "a local Unix socket, which does not use the bundle's certificates",
            "npipe": "a local Windows pipe, which does not use the bundle's certificates",
            "fd": "an inherited file descriptor, not a remote engine",
            "http": "plain HTTP, which anyone on the network could read and change",
            "ssh": "an SSH address, and the bundle's certificates only work over TLS",
        }.get(scheme, "an address that does not use TLS")
        raise BundleError("insecure-host", f"{source} sets DOCKER_HOST to "
                          f"{_shown_host(raw)}, {what}. {tls_needed}", file="docker.env")
    try:
        parts = urlsplit(raw)
        port = parts.port or DEFAULT_TLS_PORT
    except ValueError:  # a port that is not a number, or out of range
        parts = port = None
    host = parts.hostname if parts else None
    if (parts is None or not host or parts.username or parts.password or parts.query
            or parts.fragment or parts.path not in ("", "/") or not _valid_host(host)):
        raise BundleError("bad-env", f"{source} sets DOCKER_HOST to {_shown_host(raw)}, "
                          "which is not an address like tcp://203.0.113.7:2376. Download "
                          "the bundle again.", file="docker.env")
    if ":" in host:
        host = f"[{host}]"
    return f"tcp://{host}:{port}"


def _shown_host(raw: str) -> str:
    """A DOCKER_HOST for a message: never with a password, never very long."""
    text = re.sub(r"//[^/@]*@", "//…@", raw)
    return text if len(text) <= 100 else text[:100] + "…"


def _valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return len(host) <= 253 and bool(_HOSTNAME.fullmatch(host))


def _settings(env: Mapping[str, str], source: str = "docker.env") -> tuple[str, str | None]:
    """(DOCKER_HOST, DOCKER_VERSION) from a parsed docker.env, or a BundleError."""
    host = _normalize_host(env.get("DOCKER_HOST"), source)
    verify = env.get("DOCKER_TLS_VERIFY")
    if verify is None:
        raise BundleError("tls-verify-off", f"{source} does not set DOCKER_TLS_VERIFY=1, "
                          "so Docker would not check that it is talking to your engine. "
                          "Add the line DOCKER_TLS_VERIFY=1 or download the bundle "
                          "again.", file="docker.env")
    if verify.strip().lower() not in _TRUTHY:
        shown = verify.strip()[:20]
        raise BundleError("tls-verify-off", f"{source} sets DOCKER_TLS_VERIFY to "
                          f"{shown!r}, which turns off checking the engine's certificate "
                          "(anyone on the network could impersonate it). Set "
                          "DOCKER_TLS_VERIFY=1.", file="docker.env")
    version = (env.get("DOCKER_VERSION") or "").strip()
    return host, version if _DOCKER_VERSION.fullmatch(version) else None


# ---------------------------------------------------------------------- certificates

def _load_certs(data: bytes, name: str, what: str) -> list[x509.Certificate]:
    if b"PRIVATE KEY-----" in data and b"CERTIFICATE-----" not in data:
        raise BundleError("bad-pem", f"{name} holds a private key, not {what}. Were the "
                          "files renamed? Download the bundle again.", file=name)
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        certs = []
    if not certs:
        raise BundleError("bad-pem", f"{name} does not contain a readable PEM certificate "
                          f"({what} is expected). The file may be damaged: download the "
                          "bundle again.", file=name)
    return certs


def _load_key(data: bytes):
    if b"PRIVATE KEY-----" not in data and b"CERTIFICATE-----" in data:
        raise BundleError("bad-pem", "key.pem holds a certificate, not a private key. Were "
                          "the files renamed? Download the bundle again.", file="key.pem")
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise BundleError("bad-pem", "key.pem is protected by a passphrase, and Docker "
                          "needs the key without one. Export it unencrypted (for example "
                          "with `openssl pkey -in key.pem -out key.pem`) and try again.",
                          file="key.pem") from None
    except (ValueError, UnsupportedAlgorithm):
        # The library's own message is dropped on purpose: never echo key parsing details.
        raise BundleError("bad-pem", "key.pem does not contain a readable PEM private key. "
                          "The file may be damaged: download the bundle again.",
                          file="key.pem") from None


def _issuer_of(cert: x509.Certificate, authorities: list[x509.Certificate]):
    for authority in authorities:
        try:
            cert.verify_directly_issued_by(authority)
        except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
            continue
        return authority
    return None


def _check_validity(cert: x509.Certificate, name: str, what: str, now: _dt.datetime):
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    if now > end:
        raise BundleError("expired", f"The {what} ({name}) expired on {_when(end)}, "
                          f"{_span(now - end)} ago. Get a fresh credentials bundle and "
                          "install it.", file=name)
    if now < start:
        raise BundleError("not-yet-valid", f"The {what} ({name}) only becomes valid on "
                          f"{_when(start)}, {_span(start - now)} from now. Check that "
                          "this computer's clock is right, or wait until then.", file=name)


# ----------------------------------------------------------------------------- bundle

@dataclass(frozen=True, repr=False)
class CredentialBundle:
    """A checked credentials bundle: where its files are and what they say.

    ``path`` is the directory the bundle was loaded from and what ``DOCKER_CERT_PATH``
    points at (for an installed bundle, the store's stable ``current`` path).
    ``files_dir`` is the real directory the files were read from, resolved once at
    load time so that TLS connections keep using one consistent set of files even if
    the store swaps in a new bundle meanwhile. The private key is never kept in memory
    here, and the repr shows no secrets.
    """

    path: Path
    docker_host: str
    env: dict[str, str] = field(hash=False)
    ca_fingerprint: str
    cert_fingerprint: str
    not_after: _dt.datetime
    files_dir: Path | None = field(default=None, compare=False)

    def __repr__(self) -> str:
        return (f"CredentialBundle(docker_host={self.docker_host!r}, path='{self.path}', "
                f"cert_fingerprint={self.cert_fingerprint[:23]!r}..., "
                f"not_after='{self.not_after.isoformat()}')")

    @property
    def days_left(self) -> int:
        """Whole days until the client certificate expires (negative once it has)."""
        return (self.not_after - _utcnow()) // _dt.timedelta(days=1)

    @property
    def base_url(self) -> str:
        """The engine's URL for the Docker SDK (``https://host:port``)."""
        return "https://" + self.docker_host.split("://", 1)[1]

    @classmethod
    def load(cls, directory, *, now: _dt.datetime | None = None) -> "CredentialBundle":
        """Read a Carina-layout directory and check everything short of a live ping.

        Raises :class:`BundleError` on the first problem found. ``DOCKER_CERT_PATH`` in
        ``docker.env`` is ignored: the files are where they were found.
        """
        path = Path(os.path.abspath(os.path.expanduser(str(directory))))
        for attempt in range(3):
            # Resolve once, then read every file from the same real directory: a swap
            # of the store's `current` link during the reads cannot mix two bundles.
            real = Path(os.path.realpath(path))
            try:
                files = _read_bundle_dir(real, shown=path)
                break
            except BundleError as exc:
                # Several installs in a row pruned the generation being read: retry
                # with the one `current` points at now.
                if (exc.code != "missing-file" or attempt == 2
                        or os.path.realpath(path) == str(real)):
                    raise
        return cls.from_files(files, path=path, files_dir=real, now=now)

    @classmethod
    def from_files(cls, files: Mapping[str, bytes], *, path: Path | str = ".",
                   files_dir: Path | None = None, now: _dt.datetime | None = None
                   ) -> "CredentialBundle":
        """Check bundle files held in memory (e.g. what :func:`read_archive` returns)
        without writing them anywhere; ``path`` is where they are going to live.

        Runs the same checks as :meth:`load` and raises the same errors.
        """
        path = Path(path)
        for name in BUNDLE_FILES:
            if name not in files:
                raise _missing(name)
        env = parse_env(files["docker.env"])
        docker_host, version = _settings(env)

        authorities = _load_certs(files["ca.pem"], "ca.pem", "the CA certificate")
        cert = _load_certs(files["cert.pem"], "cert.pem", "the client certificate")[0]
        key = _load_key(files["key.pem"])
        if _public_der(key.public_key()) != _public_der(cert.public_key()):
            raise BundleError("key-mismatch", "key.pem is not the private key of the "
                              "certificate in cert.pem (the two files come from different "
                              "bundles). Use cert.pem and key.pem from the same download.",
                              file="key.pem")
        del key
        authority = _issuer_of(cert, authorities)
        if authority is None:
            raise BundleError("wrong-ca", "cert.pem was not issued by the CA in ca.pem, so "
                              "the engine would refuse it (the files come from different "
                              "bundles or engines). Use ca.pem, cert.pem and key.pem from "
                              "the same download.", file="cert.pem")
        moment = _aware(now)
        _check_validity(cert, "cert.pem", "client certificate", moment)
        _check_validity(authority, "ca.pem", "CA certificate", moment)

        out_env = {"DOCKER_HOST": docker_host, "DOCKER_TLS_VERIFY": "1",
                   "DOCKER_CERT_PATH": str(path)}
        if version:
            out_env["DOCKER_VERSION"] = version
        return cls(path=path, docker_host=docker_host, env=out_env,
                   ca_fingerprint=_fingerprint(authority),
                   cert_fingerprint=_fingerprint(cert),
                   not_after=cert.not_valid_after_utc, files_dir=files_dir)

    # -- talking to the engine (the Docker SDK is imported here, not at module import)

    def _file(self, name: str) -> str:
        return str((self.files_dir or self.path) / name)

    def tls_config(self):
        """A ``docker.tls.TLSConfig`` that checks the engine against ca.pem and
        presents cert.pem/key.pem."""
        from docker.errors import TLSParameterError
        from docker.tls import TLSConfig

        try:
            return TLSConfig(client_cert=(self._file("cert.pem"), self._file("key.pem")),
                             ca_cert=self._file("ca.pem"), verify=True)
        except TLSParameterError:
            raise BundleError("missing-file", f"The credentials files in {self.path} are "
                              "gone (a newer bundle replaced them). Load the credentials "
                              "again.") from None

    def client(self, timeout: float = 5.0, *, version: str | None = None):
        """A ``docker.DockerClient`` for this engine, checking it against ca.pem only.

        It is also a context manager that closes its connections on exit. With
        ``version=None`` the SDK asks the engine for its API version, which is a network
        round trip: a failure there raises ``BundleError(code="unreachable")``. Pass an
        explicit API version (e.g. ``"1.41"``) to skip it.
        """
        tls = self.tls_config()
        try:
            return _docker_client_class()(base_url=self.base_url, tls=tls,
                                          timeout=timeout, version=version or "auto")
        except Exception as exc:  # the SDK's errors wrap requests/urllib3/ssl ones
            raise self._unreachable(exc, timeout) from None

    def ping(self, timeout: float = 3.0) -> dict:
        """Ask the engine for its version over TLS; return the answer (a dict).

        Any failure raises ``BundleError(code="unreachable")`` whose message names the
        host and says in plain words what went wrong.
        """
        with self.client(timeout=timeout) as engine:
            try:
                return engine.version()
            except Exception as exc:
                raise self._unreachable(exc, timeout) from None

    def _unreachable(self, exc: BaseException, timeout: float) -> BundleError:
        return BundleError("unreachable", f"Could not reach the Docker engine at "
                           f"{self.docker_host}: {_explain(exc, timeout)}")


_CLIENT_CLASS = None


def _docker_client_class():
    """``docker.DockerClient`` whose API client always verifies with the bundle's CA.

    requests lets ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` replace a session's own CA
    file (psf/requests#4726, #3829), and images often set them to the system store:
    the engine would then be checked against public CAs instead of ca.pem, and a
    correct bundle would be refused. Built on first use: the SDK is imported lazily.
    """
    global _CLIENT_CLASS
    if _CLIENT_CLASS is None:
        import docker

        class PinnedCAAPIClient(docker.APIClient):
            def merge_environment_settings(self, url, proxies, stream, verify, cert):
                settings = super().merge_environment_settings(url, proxies, stream,
                                                              verify, cert)
                settings["verify"] = self.verify  # set from TLSConfig: the bundle's CA
                return settings

        class BundleDockerClient(docker.DockerClient):
            """A DockerClient for one bundle; also a context manager that closes it."""

            def __init__(self, *args, **kwargs):
                self.api = PinnedCAAPIClient(*args, **kwargs)

            def __enter__(self):
                return self

            def __exit__(self, *exc_info):
                self.close()

        _CLIENT_CLASS = BundleDockerClient
    return _CLIENT_CLASS


def _missing(name: str, where: str = "The bundle") -> BundleError:
    return BundleError("missing-file", f"{where} has no {name}. A credentials bundle "
                       "needs all of ca.pem, cert.pem, key.pem and docker.env: download "
                       "it again.", file=name)


def _read_bundle_dir(directory: Path, shown: Path) -> dict[str, bytes]:
    if not directory.is_dir():
        raise BundleError("missing-file", f"There is no credentials bundle at {shown} (no "
                          "such directory). Install a bundle first.")
    files = {}
    for name in BUNDLE_FILES:
        target = directory / name
        try:
            info = target.stat()
            if not stat.S_ISREG(info.st_mode):
                raise _missing(name, f"The bundle in {shown}")
            if info.st_size > MAX_FILE_BYTES:
                raise BundleError("too-large", f"{name} in {shown} is "
                                  f"{info.st_size} bytes, far larger than a credentials "
                                  "file can be. Download the bundle again.", file=name)
            with open(target, "rb") as handle:
                files[name] = handle.read(MAX_FILE_BYTES + 1)
        except FileNotFoundError:
            raise _missing(name, f"The bundle in {shown}") from None
        except PermissionError:
            raise BundleError("missing-file", f"{name} in {shown} cannot be read "
                              "(permission denied). Fix the file's permissions or install "
                              "the bundle again.", file=name) from None
    return files


def _explain(exc: BaseException, timeout: float) -> str:
    """Turn a connection failure from the Docker SDK into one plain sentence."""
    chain, seen, todo = [], set(), [exc]
    while todo:
        item = todo.pop(0)
        if item is None or id(item) in seen or not isinstance(item, BaseException):
            continue
        seen.add(id(item))
        chain.append(item)
        todo += [item.__cause__, item.__context__, getattr(item, "reason", None)]
        todo += [arg for arg in item.args if isinstance(arg, BaseException)]
    text = " ".join(str(item) for item in chain).lower()

    def has(*needles: str) -> bool:
        return any(n in text for n in needles)

    def kind(*types) -> bool:
        return any(isinstance(item, types) for item in chain)

    if kind(ssl.SSLCertVerificationError) or has("certificate_verify_failed",
                                                  "certificate verify failed"):
        if has("hostname mismatch", "ip address mismatch", "doesn't match"):
            return ("the engine's certificate was rejected because it is not made out for "
                    "that address (the bundle's DOCKER_HOST may be wrong).")
        if has("expired"):
            return "the engine's certificate was rejected because it has expired."
        return ("the engine's certificate was rejected: it is not signed by the CA in "
                "ca.pem (wrong CA; the bundle may belong to a different engine).")
    if has("unknown ca", "bad certificate", "certificate required", "certificate unknown",
           "certificate expired", "access denied"):
        return ("the engine rejected this bundle's client certificate (cert.pem); it was "
                "issued by a CA the engine does not trust, or the engine was reset. Get a "
                "fresh bundle.")
    if has("wrong version number", "http request", "record layer failure",
           "packet length too long"):
        return ("something answered, but not with TLS: check that the address and port "
                "(usually 2376) are those of the engine's TLS port.")
    if kind(ConnectionRefusedError) or has("connection refused", "errno 111"):
        return ("connection refused, nothing is listening there. Is the engine running, "
                "and are the address and port right?")
    if kind(socket.timeout, TimeoutError) or has("timed out", "timeout"):
        return (f"timed out after {timeout:g} seconds with no answer. The engine may be "
                "down, or a firewall may be blocking the port.")
    if kind(socket.gaierror) or has("name or service not known", "nodename nor servname",
                                    "name resolution", "getaddrinfo failed"):
        return "the host name could not be found (check DOCKER_HOST in docker.env)."
    if has("no route to host", "network is unreachable"):
        return "the network has no route to that address."
    if kind(ConnectionResetError, ssl.SSLEOFError) or has(
            "connection reset", "connection aborted", "eof occurred in violation",
            "unexpected eof"):
        # With TLS 1.3 an engine that refuses the client certificate often just hangs
        # up after the handshake, without a readable alert.
        return ("the engine closed the connection during the TLS handshake; it most "
                "likely rejected this bundle's client certificate (cert.pem). Get a "
                "fresh bundle.")
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if status:
        return f"the engine answered with an error (HTTP {status})."
    detail = str(chain[-1]).strip().splitlines()[-1:] if chain else []
    detail = detail[0][:200] if detail and detail[0] else type(exc).__name__
    return f"the connection failed ({detail})."


# ---------------------------------------------------------------------------- archives

def read_archive(data: bytes) -> dict[str, bytes]:
    """Read an uploaded bundle archive, in memory, and return its four files.

    Accepts a Carina zip (files at the top or inside one top directory) and a
    ``docker context export`` archive (tar or zip, optionally gzipped: ``meta.json``
    plus ``tls/docker/{ca,cert,key}.pem``; ``docker.env`` is made from the context's
    docker endpoint). Returns ``{"ca.pem", "cert.pem", "key.pem", "docker.env"}`` as
    bytes. Refuses archives that are too big, have too many entries, contain absolute
    or ``..`` paths, links or device files, or are not archives at all.
    """
    data = bytes(data)
    if len(data) > MAX_ARCHIVE_BYTES:
        raise BundleError("too-large", f"The upload is {len(data) // 1024} KiB; a "
                          f"credentials bundle is at most {MAX_ARCHIVE_BYTES // 1024} KiB. "
                          "Upload just the bundle zip or the docker context export.")
    if not data:
        raise BundleError("bad-archive", "The upload is empty. Choose the bundle zip or "
                          "the file made by `docker context export`.")
    if data[:2] == b"\x1f\x8b":
        entries = _tar_entries(_gunzip(data), gzipped=True)
    elif data[257:262] == b"ustar":
        entries = _tar_entries(data)
    elif data[:4] in (b"PK\x03\x04", b"PK\x05\x06") or zipfile.is_zipfile(io.BytesIO(data)):
        entries = _zip_entries(data)
    else:
        entries = _tar_entries(data)  # old tars carry no magic; this refuses non-archives
    return _bundle_from_entries(entries)


def _not_archive(detail: str = "") -> BundleError:
    return BundleError("bad-archive", "The upload is not a zip or tar archive"
                       f"{detail}. Choose the bundle zip or the file made by "
                       "`docker context export`.")


def _gunzip(data: bytes) -> bytes:
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        raw = inflater.decompress(data, MAX_UNCOMPRESSED_BYTES + 1)
    except zlib.error:
        raise _not_archive(" (the gzip data is damaged)") from None
    if len(raw) > MAX_UNCOMPRESSED_BYTES or inflater.unconsumed_tail:
        raise _too_big_inside()
    if not inflater.eof:
        raise _not_archive(" (the gzip data is cut short)")
    return raw


def _too_big_inside() -> BundleError:
    return BundleError("too-large", "The archive unpacks to more than "
                       f"{MAX_UNCOMPRESSED_BYTES >> 20} MiB, far more than a credentials "
                       "bundle. Upload just the bundle zip or the docker context export.")


def _too_many() -> BundleError:
    return BundleError("too-large", f"The archive has more than {MAX_MEMBERS} entries, far "
                       "more than a credentials bundle. Upload just the bundle zip or the "
                       "docker context export.")


def _entry_name(name: str) -> str | None:
    """The normalised relative path of an archive entry, or a BundleError."""
    if "\x00" in name:
        raise BundleError("bad-archive", "The archive has an entry with a corrupt name. "
                          "Make the archive again.")
    text = name.replace("\\", "/")
    if text.startswith("/") or re.match(r"[A-Za-z]:", text):
        raise BundleError("path-traversal", f"The archive entry {_shown(name)} has an "
                          "absolute path; bundle files must be relative. Make the archive "
                          "again from the bundle's own directory.")
    parts = [part for part in text.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise BundleError("path-traversal", f"The archive entry {_shown(name)} climbs out "
                          "of the archive with '..'. This archive is not a credentials "
                          "bundle and was refused.")
    return "/".join(parts) or None


def _link_error(name: str) -> BundleError:
    return BundleError("symlink", f"The archive entry {_shown(name)} is a link, and "
                       "credentials bundles may only contain plain files. Make the archive "
                       "from the real files.")


def _add(entries: dict[str, bytes], name: str, content: bytes) -> None:
    if name in entries:
        raise BundleError("bad-archive", f"The archive contains {_shown(name)} twice. Make "
                          "the archive again.")
    entries[name] = content


def _tar_entries(data: bytes, gzipped: bool = False) -> dict[str, bytes]:
    try:
        archive = tarfile.open(fileobj=io.BytesIO(data), mode="r:")
    except (tarfile.TarError, EOFError, OSError, ValueError):
        raise _not_archive(" (a gzip file, but not of a tar archive)" if gzipped else "") \
            from None
    entries: dict[str, bytes] = {}
    total = count = 0
    try:
        with archive:
            for member in archive:
                count += 1
                if count > MAX_MEMBERS:
                    raise _too_many()
                name = _entry_name(member.name)
                if member.issym() or member.islnk():
                    raise _link_error(member.name)
                if member.isdir() or name is None:
                    continue
                if not member.isreg():
                    raise BundleError("bad-archive", f"The archive entry "
                                      f"{_shown(member.name)} is a device or pipe, not a "
                                      "plain file. This archive is not a credentials "
                                      "bundle.")
                total += member.size
                if total > MAX_UNCOMPRESSED_BYTES:
                    raise _too_big_inside()
                handle = archive.extractfile(member)
                _add(entries, name, handle.read() if handle else b"")
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        if isinstance(exc, BundleError):
            raise
        raise _not_archive(" (the tar data is damaged or cut short)") from None
    return entries


def _zip_entries(data: bytes) -> dict[str, bytes]:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        raise _not_archive(" (the zip data is damaged)") from None
    entries: dict[str, bytes] = {}
    with archive:
        members = archive.infolist()
        if len(members) > MAX_MEMBERS:
            raise _too_many()
        budget = MAX_UNCOMPRESSED_BYTES
        for member in members:
            name = _entry_name(member.filename)
            mode = member.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise _link_error(member.filename)
            if member.is_dir() or name is None:
                continue
            if stat.S_IFMT(mode) and not stat.S_ISREG(mode):  # many zips omit the type
                raise BundleError("bad-archive", f"The archive entry "
                                  f"{_shown(member.filename)} is not a plain file. This "
                                  "archive is not a credentials bundle.")
            if member.flag_bits & 0x1:
                raise BundleError("bad-archive", "The zip is password protected. Upload "
                                  "the bundle zip as it was downloaded, without a password.")
            if member.file_size > budget:
                raise _too_big_inside()
            try:
                with archive.open(member) as handle:
                    # The header's size may lie; the read limit is what protects us.
                    content = handle.read(budget + 1)
            except (zipfile.BadZipFile, zlib.error, OSError, EOFError, RuntimeError,
                    NotImplementedError, ValueError):
                raise _not_archive(f" that can be read (entry {_shown(member.filename)} "
                                   "is damaged or uses an unsupported compression)") \
                    from None
            if len(content) > budget:
                raise _too_big_inside()
            budget -= len(content)
            _add(entries, name, content)
    return entries


def _is_junk(name: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    return name.startswith("__MACOSX/") or base.startswith("._") or base in (
        ".DS_Store", "Thumbs.db")


def _bundle_from_entries(entries: dict[str, bytes]) -> dict[str, bytes]:
    files = {name: content for name, content in entries.items() if not _is_junk(name)}
    if not files:
        raise BundleError("bad-archive", "The archive is empty. Choose the bundle zip or "
                          "the file made by `docker context export`.")
    markers = ("meta.json",) + BUNDLE_FILES
    if not any(name in files for name in markers):
        tops = {name.split("/", 1)[0] for name in files}
        if len(tops) == 1 and all("/" in name for name in files):
            prefix = tops.pop() + "/"
            files = {name[len(prefix):]: content for name, content in files.items()}
    if "meta.json" in files:
        return _bundle_from_context(files)
    missing = [name for name in BUNDLE_FILES if name not in files]
    if missing:
        found = ", ".join(sorted(files)[:8])
        raise BundleError("missing-file", f"The archive has no {missing[0]}. A credentials "
                          "bundle needs ca.pem, cert.pem, key.pem and docker.env (or is a "
                          f"`docker context export` file); this one holds: {found}.",
                          file=missing[0])
    return {name: files[name] for name in BUNDLE_FILES}


def _bundle_from_context(files: dict[str, bytes]) -> dict[str, bytes]:
    source = "The docker context"
    try:
        meta = json.loads(files["meta.json"].decode("utf-8-sig"))
        endpoint = meta["Endpoints"]["docker"]
        host = endpoint.get("Host")
        skip = endpoint.get("SkipTLSVerify", False)
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError):
        raise BundleError("bad-archive", "The docker context's meta.json is damaged or has "
                          "no docker endpoint. Export the context again with "
                          "`docker context export NAME`.") from None
    docker_host = _normalize_host(host if isinstance(host, str) else None, source)
    if skip is True or (isinstance(skip, str) and skip.lower() in _TRUTHY):
        raise BundleError("tls-verify-off", "The docker context has 'skip TLS verify' "
                          "turned on, so Docker would not check that it is talking to your "
                          "engine. Recreate the context with the engine's ca.pem (and "
                          "without skip-tls-verify) and export it again.")
    out = {}
    for name in ("ca.pem", "cert.pem", "key.pem"):
        content = files.get(_CONTEXT_TLS + name)
        if content is None:
            raise BundleError("missing-file", f"The docker context has no {name} "
                              f"({_CONTEXT_TLS}{name}). Create it with "
                              "`docker context create NAME --docker "
                              "host=tcp://HOST:2376,ca=ca.pem,cert=cert.pem,key=key.pem` "
                              "and export it again.", file=name)
        out[name] = content
    out["docker.env"] = f"DOCKER_HOST={docker_host}\nDOCKER_TLS_VERIFY=1\n".encode()
    return out


# ------------------------------------------------------------------------------ store

class CredentialStore:
    """Installs bundles atomically behind one stable path.

    Layout: ``<root>/current`` is a symlink to ``generations/<id>``; a new bundle is
    written to a fresh generation, checked, and only then swapped in with
    ``os.replace``, so a reader sees the old bundle or the new one, never a mix. The
    previous generation is kept (a process in the middle of reading it is not broken);
    older ones are pruned. Installs are serialised with a lock file.
    """

    def __init__(self, root: Path | str):
        self.root = Path(os.path.abspath(os.path.expanduser(str(root))))
        self.current_path = self.root / "current"
        self.generations_path = self.root / "generations"

    def __repr__(self) -> str:
        return f"CredentialStore('{self.root}')"

    def generation(self) -> str | None:
        """Id of the installed generation, or None. One readlink: cheap enough to call
        before every cell to notice a reload."""
        try:
            return os.path.basename(os.readlink(self.current_path).rstrip("/"))
        except FileNotFoundError:
            return None
        except OSError:  # a plain directory put there by hand
            return "unmanaged" if self.current_path.is_dir() else None

    def current(self) -> CredentialBundle | None:
        """The installed bundle, loaded and checked; None if nothing is installed."""
        if self.generation() is None:
            return None
        return CredentialBundle.load(self.current_path)

    def install_archive(self, data: bytes, *, verify: Callable | None = None
                        ) -> CredentialBundle:
        """Install an uploaded archive (see :func:`read_archive`)."""
        return self.install_files(read_archive(data), verify=verify)

    def install_directory(self, src, *, verify: Callable | None = None) -> CredentialBundle:
        """Install a copy of a Carina-layout directory."""
        src = Path(os.path.abspath(os.path.expanduser(str(src))))
        return self.install_files(_read_bundle_dir(src, shown=src), verify=verify)

    def install_files(self, files: Mapping[str, bytes], *,
                      verify: Callable[[CredentialBundle], object] | None = None
                      ) -> CredentialBundle:
        """Write, check and swap in a bundle given as ``{file name: content}``.

        ``verify(bundle)``, if given, runs after the offline checks and before the
        swap (the server extension passes a live ping), with the candidate bundle read
        from its new generation directory; it rejects the bundle by raising (or by
        returning False). On any failure the new generation is removed
        and the installed one is left exactly as it was.
        """
        files = {name: _as_bytes(name, files.get(name)) for name in BUNDLE_FILES}
        # Offline checks first, before anything touches the disk. The docker.env that
        # is written keeps only the settings we understand, with DOCKER_CERT_PATH
        # pointing at the stable path: it may be sourced by a shell.
        checked = CredentialBundle.from_files(files, path=self.current_path)
        files["docker.env"] = _format_env(checked.env).encode()

        with self._locked():
            previous = self.generation()
            gen_id = _new_generation_id()
            if previous == "unmanaged":
                previous = f"{gen_id}-unmanaged"  # what _swap renames it to
            gen_dir = self.generations_path / gen_id
            swapped = False
            try:
                self.generations_path.mkdir(mode=0o700, exist_ok=True)
                gen_dir.mkdir(mode=0o700)
                os.chmod(gen_dir, 0o700)
                for name in BUNDLE_FILES:
                    _write_file(gen_dir / name, files[name],
                                0o600 if name == "key.pem" else 0o644)
                _fsync_dir(gen_dir)
                bundle = CredentialBundle.load(gen_dir)
                if verify is not None and verify(bundle) is False:
                    raise BundleError("verify-failed", "The new credentials were refused "
                                      "by the final check; the previous ones are still "
                                      "in use.")
                self._swap(gen_id)
                swapped = True
            finally:
                if not swapped:
                    shutil.rmtree(gen_dir, ignore_errors=True)
            self._prune(keep={gen_id, previous})
        return dataclasses.replace(bundle, path=self.current_path, env={
            **bundle.env, "DOCKER_CERT_PATH": str(self.current_path)})

    # -- internals

    @contextlib.contextmanager
    def _locked(self):
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _swap(self, gen_id: str) -> None:
        if self.current_path.is_dir() and not self.current_path.is_symlink():
            # A bundle directory put there by hand: keep it as a generation.
            os.rename(self.current_path, self.generations_path / f"{gen_id}-unmanaged")
        link = self.root / f".current-{gen_id}"
        os.symlink(os.path.join("generations", gen_id), link)
        try:
            os.replace(link, self.current_path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(link)
            raise
        _fsync_dir(self.root)

    def _prune(self, keep: set) -> None:
        try:
            names = os.listdir(self.generations_path)
        except FileNotFoundError:
            return
        for name in names:
            if name not in keep:
                shutil.rmtree(self.generations_path / name, ignore_errors=True)
        for name in os.listdir(self.root):
            if name.startswith(".current-"):
                with contextlib.suppress(OSError):
                    os.unlink(self.root / name)


def _as_bytes(name: str, content) -> bytes:
    if content is None:
        raise _missing(name)
    if isinstance(content, str):
        return content.encode()
    return bytes(content)


def _new_generation_id() -> str:
    return f"{time.time_ns() // 1_000_000:013d}-{secrets.token_hex(4)}"


def _write_file(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0),
                 mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fchmod(fd, mode)  # the umask must not loosen or tighten what we asked for
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def default_store() -> CredentialStore:
    """The store at ``$WHALE_CREDENTIALS``, by default ``~/.whale/credentials``."""
    return CredentialStore(os.environ.get("WHALE_CREDENTIALS")
                           or os.path.join("~", ".whale", "credentials"))
