"""`whale-check EXERCISE`: look at the learner's engine and say whether an exercise is done.

Each lesson's check cells call it. It prints one line starting with "✔" and exits 0
when the exercise is done; otherwise it prints what is still missing and a hint, and
exits 1 (so the cell shows as failed). Checks look at the engine itself (containers,
images, volumes, networks, services), never at the commands the learner typed, so
any correct way of doing the exercise passes.

An author adds a check by writing a function decorated with `@check("name", hint)`
that raises `Missing("what is missing")` until the work is done and returns a short
sentence of praise after.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable

from whale_core.bundle import CredentialBundle
from whale_core.store import default_store

CHECKS: dict[str, tuple[Callable, str, str]] = {}


class Missing(Exception):
    """Raised by a check: the exercise is not done yet; the text says what is missing."""


def check(name: str, hint: str):
    """Register `func(client) -> str` as the check called `name`, with a hint for learners."""
    def register(func):
        CHECKS[name] = (func, hint, (func.__doc__ or "").strip().splitlines()[0])
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
@check("first-container",
       "`docker run` takes `--name NAME` before the image; the command to run comes after it")
def first_container(client) -> str:
    """Lesson 1: a container named my-first, from busybox, that printed a sentence."""
    c = _container(client, "my-first")
    if "busybox" not in _image_of(client, c):
        raise Missing("container `my-first` was not made from the `busybox` image")
    logs = c.logs().decode(errors="replace")
    if "I ran a container" not in logs:
        raise Missing("container `my-first` did not print `I ran a container` "
                      f"(it printed: {logs.strip()[:60]!r})")
    return "my-first ran from busybox and said: I ran a container"


@check("lifecycle", "`docker run -d` runs in the background, `--restart POLICY` sets the restart policy, "
                   "and `sleep 3600` keeps a busybox container busy")
def lifecycle(client) -> str:
    """Lesson 2: a background container `ticker` that Docker restarts unless you stop it."""
    c = _container(client, "ticker", running=True)
    policy = c.attrs["HostConfig"]["RestartPolicy"]["Name"]
    if policy != "unless-stopped":
        raise Missing(f"`ticker` runs, but its restart policy is `{policy or 'no'}`, "
                      "not `unless-stopped`")
    return "ticker runs in the background and comes back unless you stop it"


@check("ports", "`-p HOST_PORT:CONTAINER_PORT` publishes a port; the web server listens on 80")
def ports(client) -> str:
    """Lesson 3: the web server `site`, running, with container port 80 on port 8081."""
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


@check("dockerfile", "in a folder of its own, a Dockerfile FROM busybox whose CMD echoes the text; "
                     "then `docker build -t NAME:TAG .` there")
def dockerfile(client) -> str:
    """Lesson 4: an image greeting:1.0 whose default command prints Hello, whale!."""
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


@check("volumes", "`docker volume create NAME`, then a container with `-v NAME:/some/dir` "
                  "that writes the file into /some/dir")
def volumes(client) -> str:
    """Lesson 5: a volume `notes` holding todo.txt with `buy milk` in it."""
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


@check("networks", "`docker network create NAME`, then `docker run -d --network NAME ...`")
def networks(client) -> str:
    """Lesson 6: a user-defined network `shop` where `api` answers by its name."""
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


@check("compose", "add a `cache:` entry under `services:` in myapp/docker-compose.yml "
                  "(with an image and a command), then `docker-compose up -d` in myapp")
def compose(client) -> str:
    """Lesson 7: the Compose project myapp runs its web service and a new `cache` service."""
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


@check("swarm", "`docker service create` takes `--name` and `--replicas`")
def swarm(client) -> str:
    """Lesson 8: a Swarm service `hello` of the webserver image with 3 running replicas."""
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


def run_check(name: str, out=sys.stdout) -> int:
    """Run one check; print the verdict; return the exit status."""
    func, hint, _ = CHECKS[name]
    try:
        client = engine_client()
    except Exception as exc:
        print(f"✘ whale-check could not reach your Docker engine: {exc}", file=out)
        return 2
    try:
        praise = func(client)
    except Missing as missing:
        print(f"✘ Not yet: {missing}.\n  Hint: {hint}", file=out)
        return 1
    finally:
        client.close()
    print(f"✔ Well done: {praise}.", file=out)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="whale-check", description="Check a lesson exercise on your Docker engine.")
    parser.add_argument("exercise", nargs="?", help="the exercise to check (see --list)")
    parser.add_argument("--list", action="store_true", help="list the exercises")
    args = parser.parse_args(argv)
    if args.list or not args.exercise:
        for name, (_, _, doc) in CHECKS.items():
            print(f"{name:16} {doc}")
        return 0 if args.list else 2
    if args.exercise not in CHECKS:
        print(f"whale-check: no exercise called {args.exercise!r}; "
              f"there are: {', '.join(CHECKS)}", file=sys.stderr)
        return 2
    return run_check(args.exercise)


if __name__ == "__main__":
    sys.exit(main())
