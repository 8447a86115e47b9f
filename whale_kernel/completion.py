"""Tab completion for `docker` command lines.

Subcommands and flags come from the installed CLI's own help (asked once, cached),
so they always match the CLI the learner has. Container, image, network, volume and
service names come from the learner's engine through the Docker SDK with a short
timeout, cached for a moment, so a slow or dead engine never stalls the notebook.
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import threading
import time
from collections.abc import Callable

_SUBCOMMAND = re.compile(r"^  ([a-z][\w-]*)\*?\s{2,}\S")
_OPTION = re.compile(r"^\s+(?:(-\w), )?(--[\w-]+)(?: (\w+))?")

# What a positional argument of a command names.
_CONTAINERS_RUNNING = {"exec", "attach", "top", "stop", "kill", "pause", "logs", "stats",
                       "port", "restart", "wait"}
_CONTAINERS_ALL = {"rm", "start", "inspect", "rename", "commit", "diff", "export", "cp",
                   "unpause", "update"}
_IMAGES = {"run", "create", "rmi", "history", "save", "tag", "push", "pull"}
_KIND_BY_GROUP = {"network": "networks", "volume": "volumes", "service": "services",
                  "image": "images", "container": "containers", "secret": "secrets",
                  "config": "configs", "node": "nodes"}
_GROUP_NO_NAME = {"ls", "list", "create", "prune", "init", "join", "build", "load", "import"}
# Flags whose value is a name on the engine.
_FLAG_KINDS = {"--network": "networks", "--net": "networks", "-v": "volumes",
               "--volume": "volumes", "--volumes-from": "containers", "--link": "containers",
               "--secret": "secrets", "--config": "configs", "--from": "images"}


class DockerCompleter:
    """Completes docker subcommands, flags and object names."""

    def __init__(self, client_factory: Callable[[float], object] | None,
                 timeout: float = 1.0, ttl: float = 3.0):
        self._client_factory = client_factory
        self.timeout = timeout
        self.ttl = ttl
        self._help: dict[tuple[str, ...], tuple[list[str], list[str], set[str]]] = {}
        self._names: dict[str, tuple[float, list[str]]] = {}
        self._lock = threading.Lock()

    # -- CLI help ---------------------------------------------------------------
    def _cli_help(self, path: tuple[str, ...]):
        """(subcommands, flags, flags that take a value) for `docker <path>`."""
        if path not in self._help:
            env = dict(os.environ, DOCKER_HOST="unix:///nonexistent.sock", DOCKER_CLI_HINTS="false")
            try:
                text = subprocess.run(["docker", *path, "--help"], capture_output=True, text=True,
                                      timeout=3, env=env).stdout
            except (OSError, subprocess.SubprocessError):
                text = ""
            subs, flags, valued = [], [], set()
            section = ""
            for line in text.splitlines():
                if line and not line.startswith(" "):
                    section = line
                    continue
                if "Commands" in section:
                    m = _SUBCOMMAND.match(line)
                    if m:
                        subs.append(m.group(1))
                elif "Options" in section:
                    m = _OPTION.match(line)
                    if m:
                        names = [n for n in m.group(1, 2) if n]
                        flags.extend(names)
                        if m.group(3):
                            valued.update(names)
            self._help[path] = (subs, flags, valued)
        return self._help[path]

    # -- names on the engine ------------------------------------------------------
    def names(self, kind: str) -> list[str]:
        """Names of one kind of object on the learner's engine ([] if it does not answer)."""
        now = time.monotonic()
        with self._lock:
            hit = self._names.get(kind)
            if hit and now - hit[0] < self.ttl:
                return hit[1]
        found: list[str] = []
        if self._client_factory is not None:
            try:
                found = self._fetch(kind)
            except Exception:
                found = []
        with self._lock:
            self._names[kind] = (now, found)
        return found

    def _fetch(self, kind: str) -> list[str]:
        client = self._client_factory(self.timeout)
        if client is None:
            return []
        api = client.api
        try:
            if kind in ("containers", "running"):
                items = api.containers(all=kind == "containers")
                return sorted({n.lstrip("/") for c in items for n in c.get("Names") or []})
            if kind == "images":
                tags = {t for i in api.images() for t in i.get("RepoTags") or []
                        if t != "<none>:<none>"}
                return sorted(tags | {t.rsplit(":", 1)[0] for t in tags})
            if kind == "networks":
                return sorted(n["Name"] for n in api.networks())
            if kind == "volumes":
                return sorted(v["Name"] for v in (api.volumes().get("Volumes") or []))
            if kind == "services":
                return sorted(s["Spec"]["Name"] for s in api.services())
            if kind == "secrets":
                return sorted(s["Spec"]["Name"] for s in api.secrets())
            if kind == "configs":
                return sorted(s["Spec"]["Name"] for s in api.configs())
            if kind == "nodes":
                return sorted(n["Description"]["Hostname"] for n in api.nodes())
        finally:
            client.close()
        return []

    # -- the completion itself ------------------------------------------------------
    def complete(self, line: str) -> list[str] | None:
        """Matches for the last word of `line`, or None if this is not a docker command."""
        segment = re.split(r"\|\||&&|[;|&\n(]", line)[-1]
        try:
            words = shlex.split(segment)
        except ValueError:
            return None
        if segment.endswith((" ", "\t")) or not words:
            words.append("")
        if len(words) < 2 or words[0] != "docker":
            return None
        word = words[-1]
        args = words[1:-1]
        # Walk down the command tree: docker [container] run ...
        path: tuple[str, ...] = ()
        positional: list[str] = []
        prev = ""
        for a in args:
            subs, _, valued = self._cli_help(path)
            if a.startswith("-"):
                prev = a if a in valued and "=" not in a else ""
                continue
            if prev:
                prev = ""
                continue
            if not positional and a in subs:
                path += (a,)
                continue
            positional.append(a)
        subs, flags, valued = self._cli_help(path)
        if prev in _FLAG_KINDS:
            return _prefixed(self.names(_FLAG_KINDS[prev]), word)
        if prev:
            return []
        if word.startswith("-"):
            return _prefixed(flags, word)
        if subs and not positional:
            return _prefixed(subs, word)
        kind = self._kind(path, positional)
        return _prefixed(self.names(kind), word) if kind else []

    @staticmethod
    def _kind(path: tuple[str, ...], positional: list[str]) -> str | None:
        if not path:
            return None
        cmd = path[-1]
        if len(path) >= 2 and path[0] in _KIND_BY_GROUP:
            if cmd in _GROUP_NO_NAME:
                return None
            group = path[0]
            if group == "container":
                return "running" if cmd in _CONTAINERS_RUNNING else "containers"
            if group == "network" and cmd in ("connect", "disconnect") and positional:
                return "containers"
            return _KIND_BY_GROUP[group]
        if cmd in _IMAGES:
            # Only the image is a name: what follows it is the command to run.
            return "images" if not positional else None
        if cmd in _CONTAINERS_RUNNING:
            return "running" if (cmd != "exec" or not positional) else None
        if cmd in _CONTAINERS_ALL:
            return "containers"
        return None


def _prefixed(items, word: str) -> list[str]:
    return sorted({i for i in items if i.startswith(word)})
