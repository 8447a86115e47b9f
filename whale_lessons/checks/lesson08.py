"""Lesson 8's check: `whale-check bounded`."""
from __future__ import annotations

import re
import time

from whale_lessons.exercises import Missing, check, find

#: Seconds a starting container gets for its healthcheck to pass or fail (or for the
#: kernel to kill it while it loads its catalog) before the check judges what it sees.
SETTLE = 15.0


def _health(c) -> str | None:
    return (c.attrs["State"].get("Health") or {}).get("Status")


def _settle(c, seconds: float = SETTLE) -> None:
    """Wait while `c` runs and its healthcheck has neither passed nor failed yet."""
    deadline = time.monotonic() + seconds
    while c.status == "running" and _health(c) == "starting" and time.monotonic() < deadline:
        time.sleep(0.5)
        c.reload()


def _mib(size: int) -> str:
    return f"{size // 2**20} MiB" if size % 2**20 == 0 else f"{size} bytes"


@check("bounded", lesson=8)
def bounded(client) -> str:
    """The shop `shop` runs within a memory limit, and its own healthcheck says it is healthy."""
    c = find(client, "shop")
    if c is None:
        raise Missing("there is no container named `shop`", hints=(
            "the shop runs as a container named `shop`, made from the `shop` image",
            "`docker images shop` shows whether the image is there (the challenge's first "
            "cell builds it from the folder `shop`); `docker run -d --name shop` with your "
            "options and the image name makes the container",
            "run the `shop` image in the background as `shop`, with a `--memory` limit it "
            "fits in (about twice its 20 MB catalog) and a healthcheck that reaches its "
            "web server on port 80"))
    made_from = c.attrs["Config"]["Image"].rsplit("/", 1)[-1].split(":")[0]
    if made_from != "shop":
        raise Missing(f"container `shop` was made from `{made_from}`, not from the `shop` image",
                      hints=(
            "the shop is the `shop` image: its catalog, its web server and its healthcheck",
            "`docker ps -a --format '{{.Names}}: {{.Image}}'` shows each container's "
            "image; `docker rm -f shop` frees the name",
            "remove `shop` and run the `shop` image as `shop` again, with a memory limit "
            "it fits in"))
    _settle(c)
    state = c.attrs["State"]
    limit = c.attrs["HostConfig"].get("Memory") or 0
    if c.status != "running" and state.get("OOMKilled"):
        at = f"at its {_mib(limit)} limit" if limit else "for taking too much memory"
        raise Missing(f"`shop` is not running: it exited with code {state['ExitCode']}",
                      hints=(
            "137 is 128 + 9: the shop was killed with SIGKILL. Nobody ran `docker stop`: "
            "who else kills a container?",
            "`docker inspect --format '{{.State.OOMKilled}}' shop` says whether the "
            "kernel killed it for going over its memory limit; `docker inspect --format "
            "'{{.HostConfig.Memory}}' shop` shows that limit, in bytes",
            f"the kernel killed `shop` {at}: while it loads its 20 MB catalog the shop "
            "needs about twice that. Remove `shop` and run it again with a `--memory` "
            "that leaves room to spare (64m, say)"))
    if c.status == "exited":
        raise Missing(f"`shop` is not running: it exited with code {state['ExitCode']}",
                      hints=(
            "a stopped shop serves nobody, and Docker runs no healthcheck in it",
            "`docker logs shop` and `docker inspect --format '{{.State.ExitCode}} "
            "{{.State.OOMKilled}}' shop` say how it ended",
            "start `shop` again (`docker start shop`); if it ends again, its logs and "
            "`.State` in `docker inspect` say why"))
    if c.status != "running":
        raise Missing(f"`shop` is {c.status}, not running", hints=(
            "the shop serves, and Docker runs its healthcheck, only while it runs",
            "`docker ps -a` shows its state; `docker start shop` starts a container that "
            "was created or stopped, `docker unpause shop` a paused one",
            "get `shop` running (start or unpause it), then run the check again"))
    if not limit:
        raise Missing("`shop` runs without a memory limit", hints=(
            "without a limit the shop may take all the memory of the engine's machine; "
            "then the kernel kills whatever process it picks, maybe not the shop",
            "`docker inspect --format '{{.HostConfig.Memory}}' shop` says 0: no limit. "
            "`--memory` on `docker run` sets one when the container is made",
            "remove `shop` and run it again with a `--memory` limit it fits in: about "
            "twice its 20 MB catalog, with room to spare"))
    test = (c.attrs["Config"].get("Healthcheck") or {}).get("Test") or ["NONE"]
    if test[0] == "NONE":
        raise Missing("Docker cannot tell whether `shop` works: it has no healthcheck",
                      hints=(
            "the `shop` image has a `HEALTHCHECK`, but this container has none (was it "
            "made with `--no-healthcheck`?)",
            "`docker inspect --format '{{json .Config.Healthcheck}}' shop` shows the "
            "container's healthcheck; the image's `HEALTHCHECK` (shop/Dockerfile) or "
            "`--health-cmd` on `docker run` gives it one",
            "make `shop` again with a healthcheck that fetches its own page from "
            "http://localhost/ (port 80): the image's, once it is right, or a "
            "`--health-cmd` of your own"))
    status = _health(c)
    if status == "starting":
        raise Missing("no healthcheck of `shop` has passed yet (health: starting)", hints=(
            "Docker runs the healthcheck once every interval; until one passes, or "
            "`retries` fail in a row, the health is `starting`",
            "`docker ps` shows `(healthy)` once one passes; `docker inspect --format "
            "'{{json .State.Health}}' shop` shows the checks so far",
            "wait an interval or two and run the check again; if `shop` turns unhealthy, "
            "the output of its checks in `.State.Health` says why"))
    if status != "healthy":
        log = (state.get("Health") or {}).get("Log") or []
        said = log[-1]["Output"].strip() if log else ""
        command = " ".join(test[1:])
        port = re.search(r"(?:localhost|127\.0\.0\.1):(\d+)", command)
        if port and port.group(1) != "80":
            why = (f"its healthcheck fetches port {port.group(1)} of the container "
                   f"(`{command}`), but the shop's httpd listens on port 80")
        else:
            why = f"its healthcheck runs `{command}`, and the last one said `{said}`"
        raise Missing(f"`shop` runs, but Docker reports it {status}", hints=(
            "the healthcheck is a command Docker runs inside the container, and it keeps "
            "failing: what does it say when it fails?",
            "`docker inspect --format '{{json .State.Health}}' shop` shows the last "
            "checks, each with its exit code and output; `docker inspect --format "
            "'{{json .Config.Healthcheck}}' shop` shows the command",
            f"{why}. Fix the `HEALTHCHECK` in shop/Dockerfile and build the image again "
            "(or give `docker run` a `--health-cmd`), then make `shop` again: a "
            "container keeps the healthcheck it was made with"))
    return (f"shop runs within {_mib(limit)} of memory, and its own healthcheck says it "
            "is healthy")
