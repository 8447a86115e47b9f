"""Uploaded bundles: Carina zips and `docker context export` archives, read in memory.

Both are untrusted input, so they are read under size limits and never extracted with a
generic extractor.
"""
from __future__ import annotations

import io
import json
import re
import stat
import tarfile
import zipfile
import zlib

from .bundle import BUNDLE_FILES, SSH_BUNDLE_FILES, bundle_file_names
from .envfile import TRUTHY, normalize_host
from .errors import BundleError, missing_file, shown_name
from .ssh import SSH_FILES

#: Largest upload accepted, compressed.
MAX_ARCHIVE_BYTES = 1 << 20
#: Largest total size of an archive's contents once decompressed (zip bombs stop here).
MAX_UNCOMPRESSED_BYTES = 4 << 20
#: Most entries (files and directories) an archive may list.
MAX_MEMBERS = 64
_CONTEXT_TLS = "tls/docker/"


#: Largest SSH key or known_hosts file given beside an archive.
MAX_EXTRA_BYTES = 64 << 10


def read_archive(data: bytes, extra: dict[str, bytes] | None = None) -> dict[str, bytes]:
    """Read an uploaded bundle archive, in memory, and return its four files.

    Accepts a Carina zip (files at the top or inside one top directory) and a
    ``docker context export`` archive (tar or zip, optionally gzipped: ``meta.json``
    plus ``tls/docker/{ca,cert,key}.pem``; ``docker.env`` is made from the context's
    docker endpoint). Returns ``{"ca.pem", "cert.pem", "key.pem", "docker.env"}`` as
    bytes. Refuses archives that are too big, have too many entries, contain absolute
    or ``..`` paths, links or device files, or are not archives at all.

    An SSH endpoint's bundle (``docker.env`` or a context naming ``ssh://…``) returns
    ``docker.env``, ``ssh_key`` and ``known_hosts``; ``extra`` gives those two when they
    come beside the archive (the CLI exports no key for an SSH context).
    """
    extra = _extra_files(extra or {})
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
    return _bundle_from_entries(entries, extra)


def _extra_files(extra: dict[str, bytes]) -> dict[str, bytes]:
    out = {}
    for name, content in extra.items():
        if name not in SSH_FILES:
            raise BundleError("bad-archive", f"{shown_name(name)} is not a file an SSH "
                              "endpoint needs (ssh_key or known_hosts).")
        if len(content) > MAX_EXTRA_BYTES:
            raise BundleError("too-large", f"{name} is {len(content) // 1024} KiB; an SSH "
                              f"key or known_hosts is at most {MAX_EXTRA_BYTES // 1024} KiB. "
                              "Choose the right file.", file=name)
        if content:
            out[name] = bytes(content)
    return out


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
        raise BundleError("path-traversal", f"The archive entry {shown_name(name)} has an "
                          "absolute path; bundle files must be relative. Make the archive "
                          "again from the bundle's own directory.")
    parts = [part for part in text.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise BundleError("path-traversal", f"The archive entry {shown_name(name)} climbs out "
                          "of the archive with '..'. This archive is not a credentials "
                          "bundle and was refused.")
    return "/".join(parts) or None


def _link_error(name: str) -> BundleError:
    return BundleError("symlink", f"The archive entry {shown_name(name)} is a link, and "
                       "credentials bundles may only contain plain files. Make the archive "
                       "from the real files.")


def _add(entries: dict[str, bytes], name: str, content: bytes) -> None:
    if name in entries:
        raise BundleError("bad-archive", f"The archive contains {shown_name(name)} twice. Make "
                          "the archive again.")
    entries[name] = content


def _tar_entries(data: bytes, gzipped: bool = False) -> dict[str, bytes]:
    # `docker context export` (the Docker CLI, 28.x) writes no padding after its last
    # member and no end-of-archive blocks: every member is whole, but tar readers stop
    # at the missing padding ("unexpected end of data"). The padding the format asks for
    # is added here, and a member whose data the upload does not hold in full is refused.
    length = len(data)
    padded = data + bytes(-length % tarfile.BLOCKSIZE + 2 * tarfile.BLOCKSIZE)
    try:
        # Closed by `with archive:` below; opened apart so that a file that is no tar at all
        # gets its own message.
        archive = tarfile.open(fileobj=io.BytesIO(padded), mode="r:")  # noqa: SIM115
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
                if member.offset_data + member.size > length:
                    raise _cut_short(member.name, length - member.offset_data, member.size)
                name = _entry_name(member.name)
                if member.issym() or member.islnk():
                    raise _link_error(member.name)
                if member.isdir() or name is None:
                    continue
                if not member.isreg():
                    raise BundleError("bad-archive", f"The archive entry "
                                      f"{shown_name(member.name)} is a device or pipe, not a "
                                      "plain file. This archive is not a credentials "
                                      "bundle.")
                total += member.size
                if total > MAX_UNCOMPRESSED_BYTES:
                    raise _too_big_inside()
                handle = archive.extractfile(member)
                _add(entries, name, handle.read() if handle else b"")
            # Where the members end: anything after it but zeros is a header cut short.
            if padded[archive.offset:length].strip(b"\0"):
                raise _not_archive(" (the tar data is damaged or cut short)")
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        if isinstance(exc, BundleError):
            raise
        raise _not_archive(" (the tar data is damaged or cut short)") from None
    return entries


def _cut_short(name: str, held: int, size: int) -> BundleError:
    return BundleError("bad-archive", f"The archive entry {shown_name(name)} is cut short: "
                       f"the upload holds {max(held, 0)} of its {size} bytes. Make the archive "
                       "again (for a docker context: `docker context export NAME`).")


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
                                  f"{shown_name(member.filename)} is not a plain file. This "
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
                raise _not_archive(f" that can be read (entry {shown_name(member.filename)} "
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


def _bundle_from_entries(entries: dict[str, bytes], extra: dict[str, bytes]) -> dict[str, bytes]:
    files = {name: content for name, content in entries.items() if not _is_junk(name)}
    if not files:
        raise BundleError("bad-archive", "The archive is empty. Choose the bundle zip or "
                          "the file made by `docker context export`.")
    markers = ("meta.json", *BUNDLE_FILES, *SSH_FILES)
    if not any(name in files for name in markers):
        tops = {name.split("/", 1)[0] for name in files}
        if len(tops) == 1 and all("/" in name for name in files):
            prefix = tops.pop() + "/"
            files = {name[len(prefix):]: content for name, content in files.items()}
    if "meta.json" in files:
        return {**_bundle_from_context(files), **extra}
    files.update(extra)
    names = bundle_file_names(files)
    if names is SSH_BUNDLE_FILES:
        for name in names:
            if name not in files:
                raise missing_file(name, "The archive", ssh=True)
    missing = [name for name in names if name not in files]
    if missing:
        found = ", ".join(sorted(files)[:8])
        raise BundleError("missing-file", f"The archive has no {missing[0]}. A credentials "
                          "bundle needs ca.pem, cert.pem, key.pem and docker.env (or is a "
                          f"`docker context export` file); this one holds: {found}.",
                          file=missing[0])
    return {name: files[name] for name in names}


def pack_bundle(files: dict[str, bytes]) -> bytes:
    """A bundle's files as one tar archive (what :func:`read_archive` reads back): how
    the spawn form keeps a context export and the SSH key chosen beside it as one
    upload."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in bundle_file_names(files):
            if name in files:
                info = tarfile.TarInfo(name)
                info.size, info.mode = len(files[name]), 0o600
                tar.addfile(info, io.BytesIO(files[name]))
    return out.getvalue()


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
    docker_host = normalize_host(host if isinstance(host, str) else None, source)
    if docker_host.startswith("ssh://"):
        # The CLI exports no key for an SSH context (it uses ~/.ssh): the learner
        # gives ssh_key and known_hosts beside it, or adds them to the archive.
        out = {name: files[name] for name in SSH_FILES if name in files}
        out["docker.env"] = f"DOCKER_HOST={docker_host}\n".encode()
        return out
    if skip is True or (isinstance(skip, str) and skip.lower() in TRUTHY):
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
