"""Installing bundles atomically behind one stable path (what the kernel reads)."""
from __future__ import annotations

import contextlib
import dataclasses
import os
import secrets
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from .archives import read_archive
from .bundle import (
    CredentialBundle,
    as_bytes,
    bundle_file_names,
    fsync_dir,
    read_bundle_dir,
    write_bundle_dir,
)
from .envfile import format_env
from .errors import BundleError

try:  # POSIX only; without it installs are still atomic, just not serialised
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None


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

    def install_archive(self, data: bytes, *, extra: dict[str, bytes] | None = None,
                        verify: Callable | None = None) -> CredentialBundle:
        """Install an uploaded archive, with an SSH endpoint's key and known_hosts in
        ``extra`` when they came beside it (see :func:`read_archive`)."""
        return self.install_files(read_archive(data, extra), verify=verify)

    def install_directory(self, src, *, verify: Callable | None = None) -> CredentialBundle:
        """Install a copy of a Carina-layout directory."""
        src = Path(os.path.abspath(os.path.expanduser(str(src))))
        return self.install_files(read_bundle_dir(src, shown=src), verify=verify)

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
        files = {name: as_bytes(name, files.get(name)) for name in bundle_file_names(files)}
        # Offline checks first, before anything touches the disk. The docker.env that
        # is written keeps only the settings we understand, with DOCKER_CERT_PATH
        # pointing at the stable path: it may be sourced by a shell.
        checked = CredentialBundle.from_files(files, path=self.current_path)
        files["docker.env"] = format_env(checked.env).encode()

        with self._locked():
            previous = self.generation()
            gen_id = _new_generation_id()
            if previous == "unmanaged":
                previous = f"{gen_id}-unmanaged"  # what _swap renames it to
            gen_dir = self.generations_path / gen_id
            swapped = False
            try:
                self.generations_path.mkdir(mode=0o700, exist_ok=True)
                write_bundle_dir(gen_dir, files)
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
        if bundle.kind == "ssh":
            return dataclasses.replace(bundle, path=self.current_path)
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
        fsync_dir(self.root)

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


def _new_generation_id() -> str:
    return f"{time.time_ns() // 1_000_000:013d}-{secrets.token_hex(4)}"


def default_store() -> CredentialStore:
    """The store at ``$WHALE_CREDENTIALS``, by default ``~/.whale/credentials``."""
    return CredentialStore(os.environ.get("WHALE_CREDENTIALS")
                           or os.path.join("~", ".whale", "credentials"))
