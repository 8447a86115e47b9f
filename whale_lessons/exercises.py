"""The exercises' framework: what a check is, how it says what is missing (with three
hints), the registry of checks, and the helpers checks share.

The checks themselves are in `whale_lessons/checks/`, one module per lesson
(`lessonNN.py`). An author adds a check by writing a function there decorated with
`@check("name", lesson=N)` that raises `Missing("what is missing", hints=(nudge, command,
nearly_the_answer))`, one raise for each distinct way the work can be unfinished, and
returns a short sentence of praise when it is done; then imports the module in
`checks/__init__.py`. `whale-check` (check.py) runs them.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from whale_core.bundle import CredentialBundle
from whale_core.store import default_store

#: How many hints each unfinished state has: 1 nudges, 2 names the command, 3 nearly answers.
HINT_LEVELS = 3


@dataclass(frozen=True)
class Exercise:
    """One exercise: its check, and the lesson it belongs to.

    The one record of which lesson an exercise is in: the lessons' check cells name
    the exercise (`whale-check NAME`), and the hub's progress service files results
    under this lesson.
    """

    name: str
    lesson: int
    summary: str
    func: Callable


CHECKS: dict[str, Exercise] = {}


class Missing(Exception):
    """Raised by a check: the exercise is not done yet.

    `reason` says what is missing, as the learner can see it on their engine; `hints` are
    the three hints for exactly this state, each saying more than the one before.
    """

    def __init__(self, reason: str, hints: tuple[str, str, str]):
        if len(hints) != HINT_LEVELS or not all(hints):
            raise TypeError(f"Missing({reason!r}) needs {HINT_LEVELS} hints, not {hints!r}")
        super().__init__(reason)
        self.reason = reason
        self.hints = tuple(hints)


@dataclass(frozen=True)
class Verdict:
    """What a check found: done or not, what to say, and the hints if not done."""

    done: bool
    text: str
    hints: tuple[str, ...] = ()


def check(name: str, *, lesson: int):
    """Register `func(client) -> str` as the check called `name`, of lesson `lesson`."""
    def register(func):
        summary = (func.__doc__ or "").strip().splitlines()[0]
        CHECKS[name] = Exercise(name, lesson, summary, func)
        return func
    return register


def engine_client(timeout: float = 30.0):
    """A Docker SDK client for the engine this shell's docker CLI talks to."""
    cert_path = os.environ.get("DOCKER_CERT_PATH")
    if cert_path and os.path.exists(os.path.join(cert_path, "docker.env")):
        return CredentialBundle.load(cert_path).client(timeout=timeout)
    store = default_store()
    if not os.environ.get("DOCKER_HOST") and store.generation() is not None:
        return CredentialBundle.load(store.current_path).client(timeout=timeout)
    import docker
    return docker.from_env(timeout=timeout)


# -- helpers ----------------------------------------------------------------------
def find(client, name: str):
    """The container called `name` (in any state), or None."""
    from docker.errors import NotFound
    try:
        return client.containers.get(name)
    except NotFound:
        return None


def find_service(client, name: str):
    """The Swarm service called `name`, or None."""
    from docker.errors import NotFound
    try:
        return client.services.get(name)
    except NotFound:
        return None


def image_of(client, container) -> list[str]:
    return [t.split(":")[0] for t in client.images.get(container.attrs["Image"]).tags]


def fetch(client, url: str, seconds: float = 10.0, **kw) -> str | None:
    """The page at `url` as a busybox container on the engine sees it; None if no answer.

    A server started a moment ago may not listen yet, so this tries for a few seconds.
    """
    from docker.errors import ContainerError
    deadline = time.monotonic() + seconds
    while True:
        try:
            return run(client, "busybox", ["timeout", "5", "wget", "-qO-", url], **kw)
        except ContainerError:
            if time.monotonic() > deadline:
                return None
            time.sleep(0.5)


def run(client, image: str, command, **kw) -> str:
    out = client.containers.run(image, command, remove=True, stdout=True, stderr=True, **kw)
    return out.decode(errors="replace")
