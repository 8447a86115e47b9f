"""`whale-check EXERCISE`: look at the learner's engine and say whether an exercise is done.

Each lesson's check cells call it. It prints one line starting with "✔" and exits 0
when the exercise is done; otherwise it prints what is still missing and a hint, and
exits 1 (so the cell shows as failed). Checks look at the engine itself (containers,
images, volumes, networks, services), never at the commands the learner typed, so
any correct way of doing the exercise passes.

An author adds a check by writing a function decorated with `@check("name", lesson=N, hint="…")`
that raises `Missing("what is missing")` until the work is done and returns a short
sentence of praise after.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from whale_core.bundle import CredentialBundle
from whale_core.layout import PROGRESS_URL_VARIABLE
from whale_core.store import default_store


@dataclass(frozen=True)
class Exercise:
    """One exercise: its check, the lesson it belongs to, and what to tell learners.

    The one record of which lesson an exercise is in: the lessons' check cells name
    the exercise (`whale-check NAME`), and the hub's progress service files results
    under this lesson.
    """

    name: str
    lesson: int
    hint: str
    summary: str
    func: Callable


CHECKS: dict[str, Exercise] = {}


class Missing(Exception):
    """Raised by a check: the exercise is not done yet; the text says what is missing."""


def check(name: str, *, lesson: int, hint: str):
    """Register `func(client) -> str` as the check called `name`, of lesson `lesson`,
    with a hint for learners."""
    def register(func):
        summary = (func.__doc__ or "").strip().splitlines()[0]
        CHECKS[name] = Exercise(name, lesson, hint, summary, func)
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
def _container(client, name: str, running: bool | None = None):
    from docker.errors import NotFound
    try:
        c = client.containers.get(name)
    except NotFound:
        raise Missing(f"there is no container named `{name}`") from None
    if running is True and c.status != "running":
        raise Missing(f"container `{name}` exists but is {c.status}, not running")
    return c


def _image_of(client, container) -> list[str]:
    return [t.split(":")[0] for t in client.images.get(container.attrs["Image"]).tags]


def _fetch(client, url: str, seconds: float = 10.0, **kw) -> str | None:
    """The page at `url` as a busybox container on the engine sees it; None if no answer.

    A server started a moment ago may not listen yet, so this tries for a few seconds.
    """
    from docker.errors import ContainerError
    deadline = time.monotonic() + seconds
    while True:
        try:
            return _run(client, "busybox", ["timeout", "5", "wget", "-qO-", url], **kw)
        except ContainerError:
            if time.monotonic() > deadline:
                return None
            time.sleep(0.5)


def _run(client, image: str, command, **kw) -> str:
    out = client.containers.run(image, command, remove=True, stdout=True, stderr=True, **kw)
    return out.decode(errors="replace")


# -- the checks, in curriculum order ------------------------------------------------
@check("first-container", lesson=1,
       hint="`docker run` takes `--name NAME` before the image; the command to run comes after it")
def first_container(client) -> str:
    """A container named my-first, from busybox, that printed a sentence."""
    c = _container(client, "my-first")
    if "busybox" not in _image_of(client, c):
        raise Missing("container `my-first` was not made from the `busybox` image")
    logs = c.logs().decode(errors="replace")
    if "I ran a container" not in logs:
        raise Missing("container `my-first` did not print `I ran a container` "
                      f"(it printed: {logs.strip()[:60]!r})")
    return "my-first ran from busybox and said: I ran a container"


@check("lifecycle", lesson=2,
       hint="`docker run -d` runs in the background, `--restart POLICY` sets the restart policy, "
            "and `sleep 3600` keeps a busybox container busy")
def lifecycle(client) -> str:
    """A background container `ticker` that Docker restarts unless you stop it."""
    c = _container(client, "ticker", running=True)
    policy = c.attrs["HostConfig"]["RestartPolicy"]["Name"]
    if policy != "unless-stopped":
        raise Missing(f"`ticker` runs, but its restart policy is `{policy or 'no'}`, "
            "not `unless-stopped`")
    return "ticker runs in the background and comes back unless you stop it"


@check("ports", lesson=3,
       hint="`-p HOST_PORT:CONTAINER_PORT` publishes a port; the web server listens on 80")
def ports(client) -> str:
    """The web server `site`, running, with container port 80 on port 8081."""
    c = _container(client, "site", running=True)
    if "webserver" not in _image_of(client, c):
        raise Missing("container `site` was not made from the `webserver` image")
    bindings = (c.attrs["NetworkSettings"]["Ports"] or {}).get("80/tcp") or []
    if "8081" not in {b["HostPort"] for b in bindings}:
        raise Missing("`site` runs, but its port 80 is not published on port 8081")
    page = _fetch(client, "http://host.docker.internal:8081/",
                  extra_hosts={"host.docker.internal": "host-gateway"})
    if page is None:
        raise Missing("port 8081 of the engine's machine does not answer")
    if "Hello from a container" not in page:
        raise Missing("port 8081 answers, but not with the web server's page")
    return "site serves its page on port 8081"


@check("dockerfile", lesson=4,
       hint="in a folder of its own, a Dockerfile FROM busybox whose CMD echoes the text; "
            "then `docker build -t NAME:TAG .` there")
def dockerfile(client) -> str:
    """An image greeting:1.0 whose default command prints Hello, whale!."""
    from docker.errors import ImageNotFound
    try:
        client.images.get("greeting:1.0")
    except ImageNotFound:
        raise Missing("there is no image `greeting:1.0` (build it with -t greeting:1.0)") from None
    out = _run(client, "greeting:1.0", None)
    if "Hello, whale!" not in out:
        raise Missing(f"`docker run greeting:1.0` prints {out.strip()[:60]!r}, "
            "not `Hello, whale!`")
    return "greeting:1.0 says Hello, whale!"


@check("volumes", lesson=5,
       hint="`docker volume create NAME`, then a container with `-v NAME:/some/dir` "
            "that writes the file into /some/dir")
def volumes(client) -> str:
    """A volume `notes` holding todo.txt with `buy milk` in it."""
    from docker.errors import ContainerError, NotFound
    try:
        client.volumes.get("notes")
    except NotFound:
        raise Missing("there is no volume named `notes`") from None
    try:
        text = _run(client, "busybox", ["cat", "/notes/todo.txt"],
                    volumes={"notes": {"bind": "/notes", "mode": "ro"}})
    except ContainerError:
        raise Missing("the volume `notes` has no file `todo.txt`") from None
    if "buy milk" not in text:
        raise Missing(f"todo.txt says {text.strip()[:60]!r}, not `buy milk`")
    return "the volume notes keeps todo.txt, whatever container comes and goes"


@check("networks", lesson=6,
       hint="`docker network create NAME`, then `docker run -d --network NAME ...`")
def networks(client) -> str:
    """A user-defined network `shop` where `api` answers by its name."""
    from docker.errors import NotFound
    try:
        net = client.networks.get("shop")
    except NotFound:
        raise Missing("there is no network named `shop`") from None
    if net.attrs["Driver"] != "bridge":
        raise Missing(f"network `shop` uses the {net.attrs['Driver']} driver, not bridge")
    c = _container(client, "api", running=True)
    if "shop" not in c.attrs["NetworkSettings"]["Networks"]:
        raise Missing("`api` runs, but it is not on the network `shop`")
    page = _fetch(client, "http://api/", network="shop")
    if page is None:
        raise Missing("`api` is on `shop`, but http://api/ does not answer there")
    if "Hello from a container" not in page:
        raise Missing("http://api/ answers on `shop`, but not with the web server's page")
    return "on the network shop, http://api/ reaches the api container by name"


@check("compose", lesson=7,
       hint="add a `cache:` entry under `services:` in myapp/compose.yaml "
            "(with an image and a command), then `docker compose up -d` in myapp")
def compose(client) -> str:
    """The Compose project myapp runs its web service and a new `cache` service."""
    running = client.containers.list(filters={"label": "com.docker.compose.project=myapp"})
    services = {c.labels.get("com.docker.compose.service"): c for c in running}
    if not services:
        raise Missing("no container of the Compose project `myapp` is running")
    if "cache" not in services:
        raise Missing("the project `myapp` runs " + ", ".join(sorted(services))
                      + ", but no service `cache`")
    if "busybox" not in _image_of(client, services["cache"]):
        raise Missing("the service `cache` does not use the `busybox` image")
    if "web" not in services:
        raise Missing("the service `web` of `myapp` is not running any more")
    return "myapp runs web and cache together"


@check("swarm", lesson=8,
       hint="`docker service create` takes `--name` and `--replicas`")
def swarm(client) -> str:
    """A Swarm service `hello` of the webserver image with 3 running replicas."""
    from docker.errors import NotFound
    try:
        svc = client.services.get("hello")
    except NotFound:
        raise Missing("there is no service named `hello`") from None
    image = svc.attrs["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]
    if not image.split("@")[0].split(":")[0].endswith("webserver"):
        raise Missing(f"service `hello` runs {image.split('@')[0]}, not webserver")
    wanted = svc.attrs["Spec"]["Mode"].get("Replicated", {}).get("Replicas")
    if wanted != 3:
        raise Missing(f"service `hello` asks for {wanted} replicas, not 3")
    up = [t for t in svc.tasks(filters={"desired-state": "running"})
          if t["Status"]["State"] == "running"]
    if len(up) != 3:
        raise Missing(f"service `hello` has {len(up)} of 3 replicas running so far "
            "(give it a few seconds)")
    return "hello runs 3 replicas of webserver"


def evaluate(name: str, client) -> tuple[bool, str]:
    """Run the check `name` against `client`'s engine: (done, what to say). Not done:
    the text says what is missing. A Docker error is not caught (the caller decides)."""
    try:
        return True, CHECKS[name].func(client)
    except Missing as missing:
        return False, str(missing)


def run_check(name: str, out=sys.stdout) -> int:
    """Run one check; print the verdict; report it to the hub; return the exit status."""
    exercise = CHECKS[name]
    try:
        client = engine_client()
    except Exception as exc:
        print(f"✘ whale-check could not reach your Docker engine: {exc}", file=out)
        return 2
    try:
        done, text = evaluate(name, client)
    finally:
        client.close()
    if done:
        print(f"✔ Well done: {text}.", file=out)
    else:
        print(f"✘ Not yet: {text}.\n  Hint: {exercise.hint}", file=out)
    out.flush()
    report(exercise, done, text)
    return 0 if done else 1


#: Where the hub's progress service takes results (the site sets it in learners' servers).


def report(exercise: Exercise, done: bool, detail: str, timeout: float = 5.0) -> bool:
    """Tell the hub's progress service (whale_progress) what this check found, with this
    server's own token. Outside a hub (no service named in the environment) nothing is
    sent. A failure is one quiet line on stderr, never an error: the check's own
    verdict above is what counts for the learner. For a hosted engine the service runs
    the check again itself and records its own finding, not this one."""
    url = os.environ.get(PROGRESS_URL_VARIABLE)
    token = os.environ.get("JUPYTERHUB_API_TOKEN")
    if not url or not token or not url.startswith(("http://", "https://")):
        return False
    body = json.dumps({"lesson": exercise.lesson, "exercise": exercise.name,
                       "passed": done, "detail": detail[:500]}).encode()
    request = urllib.request.Request(  # noqa: S310 - http(s) only, checked above
        url.rstrip("/") + "/api/results", data=body, method="POST",
        headers={"Authorization": f"token {token}", "Content-Type": "application/json"})
    # The service is on the hub's machine: never through a proxy of the environment.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=timeout) as answer:
            answer.read()
        return True
    except Exception as exc:
        why = getattr(exc, "reason", None) or exc
        print(f"(whale-check: your teacher's progress page did not get this result: {why})",
              file=sys.stderr)
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="whale-check", description="Check a lesson exercise on your Docker engine.")
    parser.add_argument("exercise", nargs="?", help="the exercise to check (see --list)")
    parser.add_argument("--list", action="store_true", help="list the exercises")
    args = parser.parse_args(argv)
    if args.list or not args.exercise:
        for exercise in CHECKS.values():
            print(f"{exercise.name:16} Lesson {exercise.lesson}: {exercise.summary}")
        return 0 if args.list else 2
    if args.exercise not in CHECKS:
        print(f"whale-check: no exercise called {args.exercise!r}; "
              f"there are: {', '.join(CHECKS)}", file=sys.stderr)
        return 2
    return run_check(args.exercise)


if __name__ == "__main__":
    sys.exit(main())
