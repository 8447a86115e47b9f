"""A credentials bundle: what connects a learner's notebook to their Docker engine.

Its canonical on-disk form is the Carina layout: a directory holding `ca.pem`,
`cert.pem`, `key.pem` and `docker.env`. An SSH endpoint's bundle holds `docker.env`
(DOCKER_HOST=ssh://user@host:port), `ssh_key` and `known_hosts` instead (see ssh.py).
`CredentialBundle` is such a directory, checked; `write_bundle_dir` is the only code
that writes one.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .certs import aware, check_validity, fingerprint, issuer_of, load_certs, load_key, public_der, utcnow
from .envfile import docker_settings, parse_env
from .errors import BundleError, missing_file
from .explain import explain_exception
from .ssh import SSH_FILES, SSH_WRAPPER, check_private_key, host_keys_for, wrapper_script

#: The four files of a TLS bundle, in the order they are checked.
BUNDLE_FILES = ("ca.pem", "cert.pem", "key.pem", "docker.env")
#: The files of an SSH bundle.
SSH_BUNDLE_FILES = ("docker.env", *SSH_FILES)
#: Files whose mode is 0600.
_PRIVATE = {"key.pem", "ssh_key"}
#: Largest single bundle file read from disk.
MAX_FILE_BYTES = 1 << 20


@dataclass(frozen=True, repr=False)
class CredentialBundle:
    """A checked credentials bundle: where its files are and what they say.

    For an SSH endpoint ``ca_fingerprint`` is the engine machine's host key (the first
    known_hosts lists for it), ``cert_fingerprint`` the learner's SSH key, and
    ``not_after`` is None (SSH keys do not expire).

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
    not_after: _dt.datetime | None
    files_dir: Path | None = field(default=None, compare=False)

    def __repr__(self) -> str:
        until = self.not_after.isoformat() if self.not_after else None
        return (f"CredentialBundle(docker_host={self.docker_host!r}, path='{self.path}', "
                f"cert_fingerprint={self.cert_fingerprint[:23]!r}..., "
                f"not_after={until!r})")

    @property
    def kind(self) -> str:
        """``"tls"`` or ``"ssh"``: how the engine is reached."""
        return "ssh" if self.docker_host.startswith("ssh://") else "tls"

    @property
    def bin_dir(self) -> Path:
        """Put first on a shell's PATH: an SSH bundle's ``ssh`` is there (for a TLS
        bundle the directory does not exist, and PATH skips it)."""
        return self.path / "bin"

    @property
    def days_left(self) -> int | None:
        """Whole days until the client certificate expires (negative once it has);
        None for an SSH key, which does not expire."""
        if self.not_after is None:
            return None
        return (self.not_after - utcnow()) // _dt.timedelta(days=1)

    @property
    def base_url(self) -> str:
        """The engine's URL for the Docker SDK (``https://host:port``)."""
        return "https://" + self.docker_host.split("://", 1)[1]

    @classmethod
    def load(cls, directory, *, now: _dt.datetime | None = None) -> CredentialBundle:
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
                files = read_bundle_dir(real, shown=path)
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
                   ) -> CredentialBundle:
        """Check bundle files held in memory (e.g. what :func:`read_archive` returns)
        without writing them anywhere; ``path`` is where they are going to live.

        Runs the same checks as :meth:`load` and raises the same errors.
        """
        path = Path(path)
        if "docker.env" not in files:
            raise missing_file("docker.env")
        env = parse_env(files["docker.env"])
        docker_host, version = docker_settings(env)
        if docker_host.startswith("ssh://"):
            return cls._from_ssh_files(files, docker_host, version, path, files_dir)
        for name in BUNDLE_FILES:
            if name not in files:
                raise missing_file(name)

        authorities = load_certs(files["ca.pem"], "ca.pem", "the CA certificate")
        cert = load_certs(files["cert.pem"], "cert.pem", "the client certificate")[0]
        key = load_key(files["key.pem"])
        if public_der(key.public_key()) != public_der(cert.public_key()):
            raise BundleError("key-mismatch", "key.pem is not the private key of the "
                              "certificate in cert.pem (the two files come from different "
                              "bundles). Use cert.pem and key.pem from the same download.",
                              file="key.pem")
        del key
        authority = issuer_of(cert, authorities)
        if authority is None:
            raise BundleError("wrong-ca", "cert.pem was not issued by the CA in ca.pem, so "
                              "the engine would refuse it (the files come from different "
                              "bundles or engines). Use ca.pem, cert.pem and key.pem from "
                              "the same download.", file="cert.pem")
        moment = aware(now)
        check_validity(cert, "cert.pem", "client certificate", moment)
        check_validity(authority, "ca.pem", "CA certificate", moment)

        out_env = {"DOCKER_HOST": docker_host, "DOCKER_TLS_VERIFY": "1",
                   "DOCKER_CERT_PATH": str(path)}
        if version:
            out_env["DOCKER_VERSION"] = version
        return cls(path=path, docker_host=docker_host, env=out_env,
                   ca_fingerprint=fingerprint(authority),
                   cert_fingerprint=fingerprint(cert),
                   not_after=cert.not_valid_after_utc, files_dir=files_dir)

    @classmethod
    def _from_ssh_files(cls, files, docker_host, version, path, files_dir) -> CredentialBundle:
        from .ssh import split_ssh_host
        for name in SSH_FILES:
            if name not in files:
                raise missing_file(name, ssh=True)
        key_fingerprint = check_private_key(files["ssh_key"])
        _, host, port = split_ssh_host(docker_host)
        host_keys = host_keys_for(files["known_hosts"], host, port)
        if not host_keys:
            shown = host if port == 22 else f"[{host}]:{port}"
            raise BundleError("unknown-host", f"known_hosts lists no key for {shown}, so "
                              "the site could not tell your machine from an impostor. Add "
                              f"its host key: `ssh-keyscan -p {port} {host} >> known_hosts` "
                              "(and check it with the machine's owner).", file="known_hosts")
        out_env = {"DOCKER_HOST": docker_host}
        if version:
            out_env["DOCKER_VERSION"] = version
        return cls(path=path, docker_host=docker_host, env=out_env,
                   ca_fingerprint=host_keys[0], cert_fingerprint=key_fingerprint,
                   not_after=None, files_dir=files_dir)

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
        if self.kind == "ssh":
            from .ssh import docker_client
            try:
                return docker_client(self.files_dir or self.path, self.docker_host,
                                     timeout, version or "auto")
            except Exception as exc:
                raise self._unreachable(exc, timeout) from None
        tls = self.tls_config()
        try:
            return pinned_docker_client_class()(base_url=self.base_url, tls=tls,
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
        if self.kind == "ssh":
            from .ssh import diagnose
            why = diagnose(self.files_dir or self.path, self.docker_host, timeout)
        else:
            why = explain_exception(exc, timeout)
        return BundleError("unreachable", f"Could not reach the Docker engine at "
                           f"{self.docker_host}: {why}")


_CLIENT_CLASS = None


def pinned_docker_client_class():
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


def read_bundle_dir(directory: Path, shown: Path) -> dict[str, bytes]:
    if not directory.is_dir():
        raise BundleError("missing-file", f"There is no credentials bundle at {shown} (no "
                          "such directory). Install a bundle first.")
    files: dict[str, bytes] = {}
    for name in ("docker.env", *BUNDLE_FILES[:3], *SSH_FILES):
        if name != "docker.env" and name not in bundle_file_names(files):
            continue
        target = directory / name
        try:
            info = target.stat()
            if not stat.S_ISREG(info.st_mode):
                raise missing_file(name, f"The bundle in {shown}",
                                   ssh=bundle_file_names(files) is SSH_BUNDLE_FILES)
            if info.st_size > MAX_FILE_BYTES:
                raise BundleError("too-large", f"{name} in {shown} is "
                                  f"{info.st_size} bytes, far larger than a credentials "
                                  "file can be. Download the bundle again.", file=name)
            with open(target, "rb") as handle:
                files[name] = handle.read(MAX_FILE_BYTES + 1)
        except FileNotFoundError:
            raise missing_file(name, f"The bundle in {shown}",
                                   ssh=bundle_file_names(files) is SSH_BUNDLE_FILES) from None
        except PermissionError:
            raise BundleError("missing-file", f"{name} in {shown} cannot be read "
                              "(permission denied). Fix the file's permissions or install "
                              "the bundle again.", file=name) from None
    return files


def write_bundle_dir(directory: Path | str, files: Mapping[str, bytes]) -> Path:
    """Write a bundle directory: the one writer of them all (the store's generations,
    a sandbox engine's bundle, an uploaded bundle on the hub, a temporary copy).

    `directory` must not exist yet (remove an old one first), so no file of another
    bundle is ever mixed in; its parents are made as needed. It gets exactly the
    bundle's files (the four of a TLS bundle, or an SSH bundle's three and its
    ``bin/ssh``): the directory 0700, the private key 0600, the others 0644, each
    created with O_EXCL and O_NOFOLLOW and synced to disk. Nothing is checked here:
    callers check with `CredentialBundle.from_files` before, or `CredentialBundle.load`
    after.
    """
    directory = Path(directory)
    names = bundle_file_names(files)
    contents = {name: as_bytes(name, files.get(name)) for name in names}
    directory.parent.mkdir(parents=True, exist_ok=True)
    directory.mkdir(mode=0o700)
    os.chmod(directory, 0o700)
    for name in names:
        _write_file(directory / name, contents[name], 0o600 if name in _PRIVATE else 0o644)
    if names is SSH_BUNDLE_FILES:
        wrapper = directory / SSH_WRAPPER
        wrapper.parent.mkdir(mode=0o700)
        _write_file(wrapper, wrapper_script(), 0o700)
        fsync_dir(wrapper.parent)
    fsync_dir(directory)
    return directory


def bundle_file_names(files: Mapping[str, object]) -> tuple[str, ...]:
    """The files a bundle has: an SSH bundle's when its docker.env names an ssh://
    host, else a TLS bundle's four."""
    raw = files.get("docker.env")
    if raw is not None:
        try:
            host = parse_env(raw).get("DOCKER_HOST", "")
        except BundleError:
            host = ""
        if host.strip().lower().startswith("ssh://"):
            return SSH_BUNDLE_FILES
    return BUNDLE_FILES


def as_bytes(name: str, content) -> bytes:
    """A bundle file's content as bytes; a missing one is refused."""
    if content is None:
        raise missing_file(name)
    if isinstance(content, str):
        return content.encode()
    return bytes(content)


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


def fsync_dir(path: Path) -> None:
    """Make a directory's entries durable (best effort)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
