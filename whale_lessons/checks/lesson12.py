"""Lesson 12's check: `whale-check swarm`."""
from __future__ import annotations

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
    image = svc.attrs["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"].split("@")[0]
    if not image.split(":")[0].endswith("webserver"):
        raise Missing(f"service `hello` runs {image}, not webserver", hints=(
            "a service runs one image; `hello` runs another one",
            "`docker service update --image IMAGE NAME` changes it",
            "`docker service update` `hello` with `--image webserver`"))
    wanted = svc.attrs["Spec"]["Mode"].get("Replicated", {}).get("Replicas")
    if wanted != 3:
        raise Missing(f"service `hello` asks for {wanted} replicas, not 3", hints=(
            "a replicated service runs as many tasks as it asks for",
            "`docker service scale NAME=N` changes how many",
            "scale `hello` to 3 with `docker service scale`"))
    up = [t for t in svc.tasks(filters={"desired-state": "running"})
          if t["Status"]["State"] == "running"]
    if len(up) != 3:
        raise Missing(f"service `hello` has {len(up)} of 3 replicas running so far", hints=(
            "Swarm starts tasks one after another: give it a few seconds",
            "`docker service ps hello` shows each task's state, and an error if one "
            "fails",
            "run the check again in a few seconds; `docker service ps hello` says why a "
            "task does not run"))
    return "hello runs 3 replicas of webserver"
