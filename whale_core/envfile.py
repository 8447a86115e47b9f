"""docker.env: the settings file of a Carina-layout bundle (read, checked, written)."""
from __future__ import annotations

import ipaddress
import re
import shlex
from collections.abc import Mapping
from urllib.parse import urlsplit

from .errors import BundleError
from .ssh import normalize_ssh_host

DEFAULT_TLS_PORT = 2376
TRUTHY = {"1", "true", "yes", "on"}
_ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HOSTNAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_.-]*[A-Za-z0-9])?")
_DOCKER_VERSION = re.compile(r"[0-9A-Za-z][0-9A-Za-z.+~-]{0,63}")


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


def format_env(values: Mapping[str, str]) -> str:
    """A docker.env that a shell may source: one quoted KEY=VALUE per line."""
    lines = ["# Written by How to Whale. DOCKER_CERT_PATH is where this bundle's files are."]
    lines += [f"{key}={shlex.quote(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


def normalize_host(raw: str | None, source: str) -> str:
    """Check a DOCKER_HOST and return it as ``tcp://host:port`` (or, for an SSH
    endpoint, ``ssh://user@host:port``)."""
    raw = (raw or "").strip()
    if not raw:
        raise BundleError("bad-env", f"{source} does not say which engine to use "
                          "(DOCKER_HOST is missing or empty). Download the bundle again.",
                          file="docker.env")
    tls_needed = ("The Docker kernel connects to engines over TLS, with the bundle's "
                  "certificates (the engine's tcp://host:2376 address), or over SSH "
                  "(ssh://user@host, with a key and known_hosts).")
    if raw.startswith(("/", "\\\\.\\pipe", "//./pipe")):
        raise BundleError("insecure-host", f"{source} points at a local socket "
                          f"({_shown_host(raw)}), not at a remote engine. {tls_needed}",
                          file="docker.env")
    if "://" not in raw:
        raw = "tcp://" + raw
    scheme = raw.split("://", 1)[0].lower()
    if scheme == "ssh":
        return normalize_ssh_host(raw, source)
    if scheme not in ("tcp", "https"):
        what = {
            "unix": "a local Unix socket, which does not use the bundle's certificates",
            "npipe": "a local Windows pipe, which does not use the bundle's certificates",
            "fd": "an inherited file descriptor, not a remote engine",
            "http": "plain HTTP, which anyone on the network could read and change",
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


def docker_settings(env: Mapping[str, str], source: str = "docker.env") -> tuple[str, str | None]:
    """(DOCKER_HOST, DOCKER_VERSION) from a parsed docker.env, or a BundleError."""
    host = normalize_host(env.get("DOCKER_HOST"), source)
    version = (env.get("DOCKER_VERSION") or "").strip()
    version = version if _DOCKER_VERSION.fullmatch(version) else None
    if host.startswith("ssh://"):
        return host, version  # SSH checks the engine's machine by its host key
    verify = env.get("DOCKER_TLS_VERIFY")
    if verify is None:
        raise BundleError("tls-verify-off", f"{source} does not set DOCKER_TLS_VERIFY=1, "
                          "so Docker would not check that it is talking to your engine. "
                          "Add the line DOCKER_TLS_VERIFY=1 or download the bundle "
                          "again.", file="docker.env")
    if verify.strip().lower() not in TRUTHY:
        shown = verify.strip()[:20]
        raise BundleError("tls-verify-off", f"{source} sets DOCKER_TLS_VERIFY to "
                          f"{shown!r}, which turns off checking the engine's certificate "
                          "(anyone on the network could impersonate it). Set "
                          "DOCKER_TLS_VERIFY=1.", file="docker.env")
    return host, version
