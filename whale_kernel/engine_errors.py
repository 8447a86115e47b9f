"""One clear line instead of Docker's raw connection and TLS errors.

The Docker CLI reports a dead engine or a wrong certificate as a long Go error
chain ("error during connect: Get \"https://…/v1.41/containers/json\": dial tcp …").
A learner needs to know which of a few things went wrong and what to do about it.
"""
from __future__ import annotations

import re

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
]


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
