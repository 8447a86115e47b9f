"""Lesson 13's checks: `whale-check swarm-registry` (a registry of the Swarm's own, on
node1:5000, holding hello:1) and `swarm-stack` (the stack `hello` on every node)."""
from __future__ import annotations

import time

from whale_lessons.exercises import Missing, check, find_service

REGISTRY = "node1:5000"
IMAGE = f"{REGISTRY}/hello:1"
NODES = ("node1", "node2", "node3")


def _tasks(service, wanted: int | None) -> list[dict]:
    """The service's tasks that should run, once the scheduler has placed them (a
    service made a moment ago: 3 s at most)."""
    tasks = service.tasks(filters={"desired-state": "running"})
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and ((wanted and len(tasks) < wanted) or any(
            t["Status"]["State"] in ("new", "pending", "assigned", "accepted", "preparing")
            and not t["Status"].get("Err") for t in tasks)):
        time.sleep(0.5)
        tasks = service.tasks(filters={"desired-state": "running"})
    return tasks


def _node_names(client) -> dict[str, str]:
    return {n.id: n.attrs["Description"]["Hostname"] for n in client.nodes.list()}


def _local_image(client, name: str) -> bool:
    from docker.errors import ImageNotFound
    try:
        client.images.get(name)
    except ImageNotFound:
        return False
    return True


def _in_registry(client, name: str) -> bool:
    """Whether the registry holds `name`, as node1's engine asks it (the distribution API)."""
    from docker.errors import APIError
    try:
        client.images.get_registry_data(name)
    except APIError:
        return False
    return True


@check("swarm-registry", lesson=13)
def swarm_registry(client) -> str:
    """The service `registry` publishes port 5000 on node1, and holds node1:5000/hello:1."""
    registry = find_service(client, "registry")
    if registry is None:
        raise Missing("there is no service `registry`", hints=(
            "your Swarm's registry is a service of the `registry` image, made by the cell "
            "after \"A registry of your Swarm's own\"",
            "run that cell again: `docker service create` with `--name registry`, a "
            "constraint that keeps it on node1 and port 5000 published in host mode",
            "`docker service create --quiet --name registry --constraint node.role==manager "
            "--publish mode=host,published=5000,target=5000 registry`"))
    ports = registry.attrs.get("Endpoint", {}).get("Spec", {}).get("Ports") or []
    if not any(p.get("PublishedPort") == 5000 and p.get("TargetPort") == 5000
               and p.get("PublishMode") == "host" for p in ports):
        raise Missing("the service `registry` does not publish port 5000 in host mode", hints=(
            "every node reaches the registry at node1:5000: port 5000 of node1 must lead "
            "to the registry's port 5000",
            "`--publish mode=host,published=5000,target=5000` publishes it on the node "
            "the task runs on (the routing mesh's mode needs IPVS, which this class's "
            "kernel lacks)",
            "`docker service rm registry`, then make it again with the cell after \"A "
            "registry of your Swarm's own\""))
    names = _node_names(client)
    where = sorted({names.get(t.get("NodeID"), "another node") for t in _tasks(registry, 1)
                    if t["Status"]["State"] == "running"})
    if where != ["node1"]:
        raise Missing("the service `registry` does not run on node1 "
                      f"({'it runs on ' + ', '.join(where) if where else 'no task runs'})",
                      hints=(
            "node1:5000 is port 5000 of node1: the registry's one task must run there",
            "a placement constraint keeps a service on a node: `node.role==manager` is "
            "node1, your manager; `docker service ps registry` says why a task does not run",
            "`docker service update --constraint-add node.role==manager registry`"))
    if not _in_registry(client, IMAGE):
        if _local_image(client, IMAGE):
            detail, last = (f"you built {IMAGE} but have not pushed it",
                            f"`docker push {IMAGE}`")
        elif _local_image(client, "hello:1"):
            detail, last = ("your image is named `hello:1`, which names no registry",
                            f"`docker tag hello:1 {IMAGE}`, then `docker push {IMAGE}`")
        else:
            detail, last = ("there is no image hello:1 yet",
                            f"in the folder `hello`, `docker build -t {IMAGE} .`, then "
                            f"`docker push {IMAGE}`")
        raise Missing(f"your registry has no image {IMAGE}: {detail}", hints=(
            "an image goes to the registry its name starts with: node1:5000/… goes to "
            "yours",
            "`docker build -t` (or `docker tag`) gives the image its name, and `docker "
            "push NAME` sends it",
            last))
    return f"your Swarm's registry runs on node1:5000 and holds {IMAGE}"


@check("swarm-stack", lesson=13)
def swarm_stack(client) -> str:
    """The stack `hello`: its service `web` runs 6 replicas of node1:5000/hello:1, whose page
    names its node, on all three nodes."""
    web = find_service(client, "hello_web")
    if web is None:
        raise Missing("the stack `hello` has no service `web` (no service `hello_web`)", hints=(
            "`docker stack deploy -c FILE STACK` makes a service STACK_NAME for each "
            "service of the file",
            "write hello.yaml in the folder `hello`, with a service `web:` under "
            "`services:`, and deploy it as the stack `hello`",
            "`docker stack deploy --detach=false -c hello.yaml hello`"))
    spec = web.attrs["Spec"]
    container = spec["TaskTemplate"]["ContainerSpec"]
    image = container["Image"].split("@")[0]
    if not image.startswith(f"{REGISTRY}/"):
        raise Missing(f"`web` runs {image}, an image no node but node1 can get", hints=(
            "a worker runs a task from an image it pulls; it can pull from your registry, "
            "not from node1's own images",
            "the image's name says where it comes from: node1:5000/… is your registry",
            f"`image: {IMAGE}` in hello.yaml; deploy the stack again"))
    if image != IMAGE:
        raise Missing(f"`web` runs {image}, not {IMAGE}", hints=(
            "the stack runs version 1 of the image you pushed in exercise 1",
            "`image:` under the service says which image it runs",
            f"`image: {IMAGE}` in hello.yaml; deploy the stack again"))
    env = dict(item.split("=", 1) for item in container.get("Env") or [] if "=" in item)
    if "{{.Node.Hostname}}" not in env.get("NODE", ""):
        raise Missing("`web`'s tasks are not told their node: its `NODE` is not "
                      "`{{.Node.Hostname}}`", hints=(
            "the page says which node serves it, from the environment variable NODE",
            "Swarm fills in a template in a service's environment for each task: "
            "`{{.Node.Hostname}}` becomes the name of the task's node",
            "under `web:`, `environment:` with `NODE: \"{{.Node.Hostname}}\"` (in quotes); "
            "deploy the stack again"))
    wanted = spec["Mode"].get("Replicated", {}).get("Replicas")
    if wanted != 6:
        raise Missing(f"`web` asks for {wanted} replicas, not 6", hints=(
            "a replicated service runs as many tasks as it asks for",
            "`replicas:` under the service's `deploy:` says how many",
            "`deploy:` with `replicas: 6`; deploy the stack again"))
    names = _node_names(client)
    tasks = _tasks(web, wanted)
    running = [t for t in tasks if t["Status"]["State"] == "running"]
    failing = sorted({t["Status"].get("Err", "") for t in web.tasks()
                      if t["Status"]["State"] in ("rejected", "failed")
                      and t["Status"].get("Err")})
    if len(running) < 6:
        why = f": {failing[-1]}" if failing else ""
        raise Missing(f"`web` has {len(running)} of 6 replicas running so far{why}", hints=(
            "Swarm starts the tasks on each node once the node has pulled the image: "
            "give it a few seconds",
            "`docker stack ps hello --no-trunc` shows each task's node, its state and its "
            "error",
            "run the check again in a few seconds; if a task fails, `docker stack ps hello "
            "--no-trunc` says why"))
    on = sorted({names.get(t.get("NodeID"), "another node") for t in running})
    if on != list(NODES):
        missing = ", ".join(n for n in NODES if n not in on)
        raise Missing(f"`web`'s tasks run on {', '.join(on)}, none on {missing}", hints=(
            "Swarm spreads a service's tasks over every node its placement allows",
            "`docker service inspect --pretty hello_web` lists its placement constraints; "
            "`docker node ls` shows whether a node is drained",
            "take `placement:` out of hello.yaml and deploy the stack again, then `docker "
            "service update --force hello_web` (Swarm moves a task only when it replaces "
            "it); `docker node update --availability active NODE` makes a drained node "
            "take tasks again"))
    return f"the stack hello runs 6 replicas of {IMAGE} on node1, node2 and node3"
