"""Lesson 12's check: `whale-check swarm`."""
from __future__ import annotations

import time

from whale_lessons.exercises import Missing, check


@check("swarm", lesson=12)
def swarm(client) -> str:
    """A Swarm service `hello` of the webserver image with 3 running replicas."""
    from docker.errors import NotFound
    try:
        svc = client.services.get("hello")
    except NotFound:
        raise Missing("there is no service named `hello`", hints=(
            "in a Swarm you ask for a service, and Swarm runs its containers (tasks)",
            "`docker service create` takes `--name` and `--replicas` before the image",
            "`docker service create` with `--name hello` and 3 `--replicas` of "
            "webserver")) from None
    spec = svc.attrs["Spec"]
    image = spec["TaskTemplate"]["ContainerSpec"]["Image"].split("@")[0]
    if not image.split(":")[0].endswith("webserver"):
        raise Missing(f"service `hello` runs {image}, not webserver", hints=(
            "a service runs one image; `hello` runs another one",
            "`docker service update --image IMAGE NAME` changes it",
            "`docker service update` `hello` with `--image webserver`"))
    wanted = spec["Mode"].get("Replicated", {}).get("Replicas")
    tasks = svc.tasks(filters={"desired-state": "running"})
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and ((wanted and not tasks) or any(
            t["Status"]["State"] in ("new", "pending") and not t["Status"].get("Err")
            for t in tasks)):
        time.sleep(0.5)  # a service made a moment ago: let the scheduler place its tasks
        tasks = svc.tasks(filters={"desired-state": "running"})
    up = [t for t in tasks if t["Status"]["State"] == "running"]
    unplaced = [t for t in tasks if t["Status"]["State"] == "pending"
                and "no suitable node" in t["Status"].get("Err", "")]
    if unplaced:
        constraints = (spec["TaskTemplate"].get("Placement") or {}).get("Constraints") or []
        asks = " and ".join(f"`{c}`" for c in constraints) or "what it asks"
        raise Missing(f"service `hello` has {len(up)} of {wanted} replicas running: its "
                      "tasks are pending", hints=(
            "a task waits (pending) until Swarm finds a node that meets every placement "
            "constraint of its service: what does `hello` ask of a node, and what has "
            "yours got?",
            "`docker service ps --no-trunc hello` shows why its tasks wait; `docker "
            "service inspect --pretty hello` lists its placement constraints, and `docker "
            "node ls -q | xargs docker node inspect --format '{{.Description.Hostname}} "
            "{{json .Spec.Labels}}'` your nodes' labels",
            f"`hello` runs only on a node with {asks}, and no node of yours has such a "
            "label: take the constraint off the service with `docker service update` "
            "(its `--constraint-rm` flag, and the constraint as the service has it), or "
            "give the nodes it should run on that label (`docker node update --label-add`)"))
    if wanted != 3:
        raise Missing(f"service `hello` asks for {wanted} replica{'' if wanted == 1 else 's'}, "
                      "not 3", hints=(
            "a replicated service runs as many tasks as it asks for",
            "`docker service scale NAME=N` changes how many",
            "scale `hello` to 3 with `docker service scale`"))
    if len(up) != 3:
        raise Missing(f"service `hello` has {len(up)} of 3 replicas running so far", hints=(
            "Swarm starts tasks one after another: give it a few seconds",
            "`docker service ps hello` shows each task's state, and an error if one "
            "fails",
            "run the check again in a few seconds; `docker service ps hello` says why a "
            "task does not run"))
    return "hello runs 3 replicas of webserver"
