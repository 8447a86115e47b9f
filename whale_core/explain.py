"""The one place that explains engine failures: one plain sentence instead of a raw error.

Two sources, one vocabulary:

- `explain_exception`: a failed connection from Python (the Docker SDK, requests, ssl),
  as the hub, the server extension and the bundle checks see it.
- `explain_engine_error` / `explain_output`: the Docker CLI's output in a learner's cell,
  where a dead engine or a wrong certificate is a long Go error chain ("error during
  connect: Get \"https://…/v1.41/containers/json\": dial tcp …").
- `limit_hint`: which of the engine's limits (disk, processes, memory) a cell's output
  shows was hit.
"""
from __future__ import annotations

import re
import socket
import ssl


def explain_exception(exc: BaseException, timeout: float) -> str:
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




_ADDR = r"(?P<addr>[\w.\-\[\]:]+:\d+)"

# (pattern, explanation); the first match wins, so specific TLS causes go first.
_CAUSES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"doesn't contain any IP SANs|certificate is valid for|certificate is not valid for"),
     "the engine's certificate was not issued for this address: check DOCKER_HOST"),
    (re.compile(r"certificate signed by unknown authority|failed to verify certificate"),
     "the engine's certificate is not signed by the CA in your credentials (wrong ca.pem, "
     "or the engine was rebuilt): upload fresh credentials"),
    (re.compile(r"certificate has expired|not yet valid"),
     "a certificate has expired or is not valid yet: upload fresh credentials"),
    (re.compile(r"remote error: tls: (?:bad certificate|unknown certificate authority|"
                r"certificate required|expired certificate)"),
     "the engine refused your client certificate (it was issued for another engine, or "
     "expired): upload fresh credentials"),
    (re.compile(r"could not read (?:CA certificate|X509 key pair)|\.pem: no such file or directory"),
     "no credentials are installed where DOCKER_CERT_PATH points: upload a credentials bundle"),
    (re.compile(r"connection refused"),
     "connection refused: the engine is not running or not listening there"),
    (re.compile(r"i/o timeout|context deadline exceeded|no route to host|network is unreachable"),
     "no answer in time: the engine's machine is down or unreachable from here"),
    (re.compile(r"no such host|server misbehaving"),
     "that host name does not resolve"),
    (re.compile(r"http: server gave HTTP response to HTTPS client|first record does not look like a TLS"),
     "the engine there does not speak TLS"),
]

# Where DOCKER_HOST points while no credentials are installed: never the machine's
# own engine socket, which belongs to the operator, not the learner.
NO_ENGINE_HOST = "unix:///run/whale/no-credentials-installed.sock"

_CONNECT = re.compile(
    r"(?:error during connect|Cannot connect to the Docker daemon|unable to resolve docker endpoint|"
    r"tls: |x509: |could not read CA certificate|could not read X509 key pair)"
)
_HOST = re.compile(r"(?:https?|tcp)://" + _ADDR)


def explain_engine_error(line: str, docker_host: str | None = None) -> str | None:
    """A one-line explanation if `line` is a Docker CLI connection/TLS error, else None."""
    if not _CONNECT.search(line):
        return None
    if NO_ENGINE_HOST.split("://", 1)[1] in line:
        return ("whale: no Docker engine is set up for you yet: no credentials bundle is "
                "installed. Upload one (Carina zip or `docker context export`), or ask "
                "your instructor.")
    why = next((cause for pattern, cause in _CAUSES if pattern.search(line)), None)
    if why is None:
        if "Cannot connect to the Docker daemon" not in line:
            return None
        why = "the engine is not answering (it is stopped, or nothing listens there)"
    m = _HOST.search(line)
    where = m.group("addr") if m else (docker_host or "DOCKER_HOST")
    if where.startswith(("tcp://", "https://")):
        where = where.split("://", 1)[1]
    return f"whale: cannot use your Docker engine at {where}: {why}."


# A learner's engine has limits (disk, processes, memory: README, "Security model").
# Hitting one shows up as a low-level error from inside a container; one line after
# the cell's output says which limit it was.
_LIMITS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"no space left on device", re.IGNORECASE),
     "whale: your engine's disk is full (its size is fixed by the site). Remove what you "
     "no longer need: `docker system df` shows what takes space, `docker system prune` "
     "removes stopped containers and unused images."),
    (re.compile(r"can't fork|cannot fork|fork: retry|fork: Resource temporarily unavailable"
                r"|Resource temporarily unavailable.*(?:thread|fork|process)", re.IGNORECASE),
     "whale: your engine's process limit was hit: a container started too many processes. "
     "Stop what you no longer need (`docker ps`, then `docker rm -f NAME`)."),
    (re.compile(r"^Killed\s*$|OOMKilled\W+true|out of memory|Cannot allocate memory",
                re.IGNORECASE | re.MULTILINE),
     "whale: a process was killed: most likely it went past your engine's memory limit "
     "(`docker inspect -f '{{.State.OOMKilled}}' NAME` says for a container)."),
    # Not a limit, but as low-level: a classroom engine reaches no registry but the
    # class's mirror, so a pull of anything else ends in a DNS or dial error.
    (re.compile(r"(?:registry-1\.docker\.io|index\.docker\.io|[\w.-]+\.(?:io|com|org)(?::\d+)?/v2/)"
                r"[^\n]*(?:no such host|i/o timeout|connection refused|network is unreachable)"),
     "whale: your engine cannot reach that registry: it pulls through the class's mirror, "
     "which holds the images the lessons use (hello-world, busybox, …). For anything else, "
     "build it from a Dockerfile (FROM busybox)."),
]


REGISTRY_HINT = _LIMITS[-1][1]
_WANTED_IMAGE = re.compile(r"Unable to find image '([^']+)' locally|"
                           r"(?:pull access denied for|manifest for) ([\w./:@-]+)")


def registry_hint(text: str, held: list[str] | None) -> str:
    """The registry hint, naming the image `text` asked for (when it says) and what the
    class's mirror holds (`held`: its repositories, when it could be asked)."""
    m = _WANTED_IMAGE.search(text)
    image = (m.group(1) or m.group(2)) if m else None
    holds = (", ".join(held[:20]) + (", …" if len(held) > 20 else "")) if held else \
        "the images the lessons use (hello-world, busybox, …)"
    if image:
        start = (f"whale: {image} is not in the class's mirror, and your engine reaches no "
                 f"other registry: the mirror holds {holds}.")
    else:
        start = ("whale: your engine cannot reach that registry: it pulls through the "
                 f"class's mirror, which holds {holds}.")
    return start + " For anything else, build it from a Dockerfile (FROM busybox)."


def limit_hint(text: str) -> str | None:
    """One line naming the engine limit that `text` (a cell's output) shows was hit."""
    return next((hint for pattern, hint in _LIMITS if pattern.search(text)), None)


def explain_output(text: str, docker_host: str | None = None) -> str:
    """Replace every Docker connection/TLS error line in `text` by its explanation."""
    if not _CONNECT.search(text):
        return text
    lines = text.split("\n")
    for i, line in enumerate(lines):
        better = explain_engine_error(line, docker_host)
        if better is not None:
            lines[i] = better + ("\r" if line.endswith("\r") else "")
    return "\n".join(lines)
