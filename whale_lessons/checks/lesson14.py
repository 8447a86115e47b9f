"""Lesson 14's checks, one per stage of the capstone: `whale-check capstone-compose`,
`capstone-stack` and `capstone-update` (the challenge: an update stuck halfway)."""
from __future__ import annotations

from whale_lessons.exercises import Missing, check, find_service

STACK_LABEL = "com.docker.stack.namespace"


# -- what the checks share ------------------------------------------------------------
def _compose_web(client):
    """The Compose container of the service `web` of the shop: in the project `shop` if
    there is one, else in any project, from the image shop:1 (a folder of another name)."""
    found = client.containers.list(all=True, filters={"label": "com.docker.compose.service=web"})
    ours = [c for c in found if c.labels.get("com.docker.compose.project") == "shop"]
    return (ours or [c for c in found if "shop:1" in _tags(client, c)] or [None])[0]


def _tags(client, container) -> list[str]:
    from docker.errors import NotFound
    try:
        return client.images.get(container.attrs["Image"]).tags
    except NotFound:
        return []


def _env(env_list) -> dict[str, str]:
    return dict(item.split("=", 1) for item in env_list or [] if "=" in item)


def _healthcheck(test) -> bool:
    return bool(test) and test[0] != "NONE"


def _swarm_active(client) -> bool:
    return client.info().get("Swarm", {}).get("LocalNodeState") == "active"


def _node_name(client, task: dict) -> str:
    """The host name of the node a task was given to."""
    from docker.errors import APIError
    try:
        return client.api.inspect_node(task["NodeID"])["Description"]["Hostname"]
    except (APIError, KeyError):
        return "another node"


def _image_on_every_node(client, web, running: list[dict]) -> None:
    """Missing when tasks of `web` that should run went to nodes without its image (one
    built on node1 only)."""
    imageless = sorted({_node_name(client, t) for t in web.tasks()
                        if "No such image" in t["Status"].get("Err", "")
                        and t["Status"]["State"] in ("rejected", "failed")})
    if len(running) < 2 and imageless:
        raise Missing(f"tasks of `shop_web` on {', '.join(imageless)} find no image "
                      f"{_image(web)}: it is on node1 only, where you built it", hints=(
            "each node of a Swarm runs a task from its own images, and an image you "
            "built is only on the node where you built it",
            "`placement:` under the service's `deploy:`, with `constraints:`, says which "
            "nodes may run its tasks (`node.role == manager` is node1)",
            "under `deploy:`, `placement:` with `constraints: [node.role == manager]`; "
            "deploy the stack again"))


def _running_tasks(service) -> list[dict]:
    return [t for t in service.tasks(filters={"desired-state": "running"})
            if t["Status"]["State"] == "running"]


def _fetch_inside(client, task: dict, url: str) -> str | None:
    """The page at `url` as the task's own container fetches it; None if no answer."""
    from docker.errors import APIError, NotFound
    cid = task["Status"].get("ContainerStatus", {}).get("ContainerID")
    try:
        result = client.containers.get(cid).exec_run(["timeout", "3", "wget", "-qO-", url])
    except (APIError, NotFound):
        return None
    return result.output.decode(errors="replace") if result.exit_code == 0 else None


def _image(service) -> str:
    return service.attrs["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"].split("@")[0]


# -- stage 1: Compose --------------------------------------------------------------------
@check("capstone-compose", lesson=14)
def capstone_compose(client) -> str:
    """Stage 1: the shop's service `web` with Compose: shop:1, SHOP_NAME, a named volume at
    /data and a healthcheck that passes."""
    from docker.errors import ImageNotFound
    try:
        client.images.get("shop:1")
    except ImageNotFound:
        raise Missing("there is no image `shop:1`", hints=(
            "Compose runs the shop from its image, which you build first from the "
            "Dockerfile in `shop`",
            "`docker build -t NAME:TAG FOLDER` builds and tags an image; the cells at the "
            "start of stage 1 write the files and build it",
            "run the cells of stage 1 again, from `mkdir -p shop && cd shop` to the build "
            "that tags the image `shop:1`")) from None
    web = _compose_web(client)
    if web is None:
        raise Missing("there is no Compose service `web` in the project `shop`", hints=(
            "Compose makes a container for each service of the compose.yaml in its "
            "folder, the project (named after the folder, `shop`)",
            "write shop/compose.yaml, then `docker compose up -d --wait` in the folder "
            "`shop`; `docker compose config --services` lists the file's services",
            "in shop/compose.yaml, under `services:`, a service `web:` with "
            "`image: shop:1`; then bring the project up with `--wait`"))
    name = web.name
    if "shop:1" not in _tags(client, web):
        raise Missing(f"`web` ({name}) does not run the image shop:1", hints=(
            "the shop is the image you built, `shop:1`, not the image it starts from",
            "`image:` under the service says which image Compose runs; `docker compose "
            "up -d --wait` makes the container again when it changes",
            "set `web`'s `image:` to `shop:1` in compose.yaml and bring the project up "
            "again"))
    env = _env(web.attrs["Config"].get("Env"))
    if not env.get("SHOP_NAME"):
        raise Missing(f"`web` ({name}) has no environment variable `SHOP_NAME`", hints=(
            "the start script puts the shop's name into its page from the environment "
            "variable SHOP_NAME",
            "`environment:` under a service takes `NAME: value` lines; `docker compose "
            "up -d --wait` makes the container again with them",
            "under `web:`, add `environment:` with the line `SHOP_NAME:` and your shop's "
            "name after it, then bring the project up again"))
    data = next((m for m in web.attrs.get("Mounts", []) if m.get("Destination") == "/data"),
                None)
    if data is None or data.get("Type") != "volume":
        raise Missing(f"`/data` in `web` ({name}) is not on a volume", hints=(
            "what the shop writes into /data goes with its container, unless /data is "
            "a volume, which outlives it (lesson 6)",
            "`volumes:` under the service mounts one (`NAME:/path`); a named volume is "
            "also listed under a top-level `volumes:`",
            "under `web:`, `volumes:` with the item `data:/data`, and at the end of the "
            "file a top-level `volumes:` with `data:` under it; then up again"))
    labelled = client.volumes.get(data["Name"]).attrs.get("Labels") or {}
    if "com.docker.compose.volume" not in labelled:
        raise Missing(f"`/data` in `web` ({name}) is on an anonymous volume, not a named one",
                      hints=(
            "an anonymous volume gets a long random name, and a new one for the next "
            "container: the shop would lose what it keeps",
            "a named volume is mounted as `NAME:/data` and declared at the top level of "
            "compose.yaml, under `volumes:`",
            "mount `data:/data` instead of `/data` alone, and declare `data:` under a "
            "top-level `volumes:`; then up again"))
    if not _healthcheck((web.attrs["Config"].get("Healthcheck") or {}).get("Test")):
        raise Missing(f"`web` ({name}) has no healthcheck", hints=(
            "running is not answering: a healthcheck is how Docker (and later Swarm) "
            "tells that the shop serves its page",
            "`healthcheck:` under the service, with a `test` command run inside the "
            "container and an `interval` (lesson 9's `probe` has one)",
            "under `web:`, a `healthcheck:` whose `test` runs `wget -qO- "
            "http://localhost/` in the container, with `interval: 1s`; then up again"))
    if web.status != "running":
        raise Missing(f"`web` ({name}) is {web.status}, not running", hints=(
            "the shop answers only while its container runs",
            "`docker compose logs web` says why it ended; `docker compose up -d --wait` "
            "starts what is not running",
            "read the logs, fix what they name in compose.yaml, and bring the project "
            "up again with `--wait`"))
    health = (web.attrs["State"].get("Health") or {}).get("Status")
    if health != "healthy":
        raise Missing(f"`web` ({name}) is {health}, not healthy", hints=(
            "the healthcheck's test must succeed inside the container, where the shop "
            "answers on port 80",
            "`docker inspect --format '{{json .State.Health}}' CONTAINER` shows the "
            "last tests and what they printed; `docker compose up -d --wait` waits for "
            "healthy",
            "let the test fetch `http://localhost/` with busybox's `wget -qO-` (the image "
            "has no curl), then bring the project up again"))
    return (f"Compose runs web ({name}) from shop:1 as {env['SHOP_NAME']}, healthy, with "
            f"/data in the volume {data['Name']}")


# -- stage 2: the stack -------------------------------------------------------------------
@check("capstone-stack", lesson=14)
def capstone_stack(client) -> str:
    """Stage 2: the stack `shop` on a Swarm: 2 healthy replicas of web (shop:1), DNS round
    robin, its page from a config and a password from a secret."""
    if not _swarm_active(client):
        raise Missing("your engine is not in a Swarm", hints=(
            "a stack runs on a Swarm: the Swarm of lesson 12, whose manager your engine is",
            "the lesson's first cell, `whale-check --nodes 3`, says how to get the Swarm "
            "back (or `docker swarm init --advertise-addr 127.0.0.1` makes a Swarm of "
            "one node)",
            "restart your server with 3 nodes, then make the secret and deploy "
            "stack.yaml as `shop` again"))
    web = find_service(client, "shop_web")
    if web is None:
        raise Missing("the stack `shop` has no service `web` (no service `shop_web`)",
                      hints=(
            "`docker stack deploy` makes a Swarm service for each service in the file, "
            "named STACK_SERVICE",
            "`docker stack deploy --detach=false -c FILE STACK` in the folder `shop`; "
            "`docker stack services shop` lists what it made",
            "deploy stack.yaml as the stack `shop` (the last word of the command), with "
            "the service in it called `web`"))
    spec = web.attrs["Spec"]
    container = spec["TaskTemplate"]["ContainerSpec"]
    if _image(web) not in ("shop:1", "docker.io/library/shop:1"):
        raise Missing(f"`shop_web` runs {_image(web)}, not shop:1", hints=(
            "the stack runs the image you built in stage 1",
            "`image:` under the service in stack.yaml; `docker stack deploy` again "
            "applies the change",
            "set `web`'s `image:` to `shop:1` in stack.yaml and deploy the stack again"))
    replicas = spec["Mode"].get("Replicated", {}).get("Replicas")
    if replicas != 2:
        raise Missing(f"`shop_web` asks for {replicas} replicas, not 2", hints=(
            "Swarm keeps as many tasks of a service running as its spec asks for",
            "`replicas:` under the service's `deploy:` in stack.yaml",
            "under `web:`, `deploy:` with `replicas: 2`; deploy the stack again"))
    if (spec.get("EndpointSpec") or {}).get("Mode", "vip") != "dnsrr":
        raise Missing("`shop_web` has a virtual IP (endpoint mode `vip`), which this "
                      "engine's kernel cannot route", hints=(
            "a service's virtual IP is built on IPVS, which the classroom's kernel lacks; "
            "the name `web` must lead to the tasks' own addresses instead",
            "`endpoint_mode` under the service's `deploy:`: `vip` (the default) or "
            "`dnsrr` (DNS round robin)",
            "add `endpoint_mode: dnsrr` under `deploy:` in stack.yaml, and deploy again"))
    ports = (spec.get("EndpointSpec") or {}).get("Ports") or []
    if ports:
        port = ports[0].get("PublishedPort")
        raise Missing(f"`shop_web` publishes port {port}: on one node, only one of its 2 "
                      "replicas could have it", hints=(
            "a port published in host mode goes to one task per node; this stack "
            "publishes none, and you visit it from its network",
            "`ports:` under the service in stack.yaml publishes ports",
            "remove `ports:` from `web` in stack.yaml and deploy again (`docker run "
            "--network shop_default` reaches http://web/)"))
    if not _env(container.get("Env")).get("SHOP_NAME"):
        raise Missing("`shop_web` has no environment variable `SHOP_NAME`", hints=(
            "a stack file's service takes `environment:` as in Compose",
            "copy `environment:` with `SHOP_NAME` from compose.yaml into stack.yaml",
            "under `web:` in stack.yaml, `environment:` with the line `SHOP_NAME:` and "
            "the shop's name; deploy again"))
    secrets = [s.get("File", {}).get("Name") for s in container.get("Secrets") or []]
    if "admin_password" not in secrets:
        raise Missing("`shop_web` gets no secret at /run/secrets/admin_password", hints=(
            "a secret reaches only the services that list it, as a file in /run/secrets",
            "`secrets:` under the service lists them; a top-level `secrets:` says where "
            "each comes from (`external: true`: made beforehand; `docker secret ls` "
            "lists them)",
            "under `web:`, `secrets:` with the item `- admin_password`; at the top "
            "level, `secrets:` with `admin_password:` and `external: true` under it; "
            "deploy again"))
    configs = [c.get("File", {}).get("Name") for c in container.get("Configs") or []]
    if "/shop/index.html" not in configs:
        raise Missing("`shop_web` serves the image's page: no config is put at "
                      "/shop/index.html", hints=(
            "the page for the stack comes from a config, page.html, that Swarm puts "
            "where the start script reads the page",
            "`configs:` under the service, with `source:` and `target:`; a top-level "
            "`configs:` makes each from a `file:`",
            "under `web:`, `configs:` with an item `source: page` and `target: "
            "/shop/index.html`; at the top level, `configs:` with `page:` and "
            "`file: ./page.html`; deploy again"))
    if not _healthcheck((container.get("Healthcheck") or {}).get("Test")):
        raise Missing("`shop_web` has no healthcheck", hints=(
            "Swarm, like Compose, tells a task that answers from one that only runs by "
            "its healthcheck (stage 3 depends on it)",
            "copy `healthcheck:` from compose.yaml into the service in stack.yaml",
            "under `web:`, a `healthcheck:` whose `test` fetches http://localhost/ with "
            "`wget -qO-`, `interval: 1s`; deploy again"))
    mounts = {m.get("Target"): m for m in container.get("Mounts") or []}
    if mounts.get("/data", {}).get("Type") != "volume" or not mounts["/data"].get("Source"):
        raise Missing("`/data` in `shop_web` is not on a named volume", hints=(
            "what the shop keeps in /data must outlive its tasks, as with Compose",
            "`volumes:` under the service and a top-level `volumes:`, as in compose.yaml",
            "under `web:`, `volumes:` with `data:/data`, and `data:` under a top-level "
            "`volumes:`; deploy again"))
    networks = client.networks.list(filters={"label": f"{STACK_LABEL}=shop"})
    if networks and not any(n.attrs.get("Attachable") for n in networks):
        raise Missing("the stack's network `shop_default` is not attachable", hints=(
            "`docker run --network shop_default` can join a Swarm network only if it is "
            "attachable, and that is how you visit the shop",
            "a top-level `networks:` in stack.yaml can set `attachable: true` for the "
            "network `default`",
            "add a top-level `networks:`, with `default:` and under it `attachable: "
            "true`; remove the stack (`docker stack rm shop`) and deploy it again, since "
            "a network cannot change"))
    running = _running_tasks(web)
    _image_on_every_node(client, web, running)
    if len(running) < 2:
        raise Missing(f"{len(running)} of 2 tasks of `shop_web` run so far", hints=(
            "a task runs once its container is healthy; give Swarm a few seconds",
            "`docker service ps --no-trunc shop_web` shows each task's state and error; "
            "`docker service logs shop_web` what they said",
            "wait a few seconds and check again; if a task keeps failing, its error in "
            "`docker service ps --no-trunc` says what to fix in stack.yaml"))
    return ("the stack shop runs 2 healthy replicas of web, its page from a config and "
            "its password from a secret")


# -- stage 3 (the challenge): a health-gated rolling update --------------------------------
@check("capstone-update", lesson=14)
def capstone_update(client) -> str:
    """Stage 3: shop_web runs 2 healthy replicas of version 2 on port 80, behind a health
    gate (update_config: start-first, rollback on failure)."""
    if not _swarm_active(client):
        raise Missing("your engine is not in a Swarm", hints=(
            "the shop runs as a stack on the Swarm of lesson 12",
            "`whale-check --nodes 3` says how to get the Swarm back; then "
            "`docker stack deploy`",
            "start again from stage 2: restart your server with 3 nodes, make the "
            "secret, deploy stack.yaml as `shop`"))
    web = find_service(client, "shop_web")
    if web is None:
        raise Missing("the stack `shop` has no service `web` (no service `shop_web`)",
                      hints=(
            "the shop's service is gone: deploy the stack again",
            "`docker stack deploy --detach=false -c FILE STACK` in the folder `shop`",
            "deploy stack.yaml, with version 2 and its health gate, as the stack `shop`"))
    image = _image(web)
    container = web.attrs["Spec"]["TaskTemplate"]["ContainerSpec"]
    state = (web.attrs.get("UpdateStatus") or {}).get("State")
    if state in ("paused", "rollback_paused"):
        on_8080 = image.endswith(":2") and _env(container.get("Env")).get("PORT") != "80"
        raise Missing(f"the update of `shop_web` to {image} stopped halfway: its state is "
                      f"`{state}`", hints=(
            "Swarm pauses an update when a new task fails and nothing tells it to roll "
            "back; first find out why the tasks of the new version fail",
            "`docker service ps --no-trunc shop_web` shows how each task ended, `docker "
            "service logs shop_web` what the shop said as it started, and `docker service "
            "inspect --format '{{json .Spec.UpdateConfig}}' shop_web` what quick.yaml "
            "left of the update settings",
            "version 2 opens on port 8080 unless PORT says otherwise, while its "
            "healthcheck knocks on port 80: give `web` in stack.yaml the environment "
            "variable `PORT` set to \"80\", keep shop:2 and the update_config, and "
            "deploy stack.yaml again" if on_8080 else
            "the error of the failed tasks in `docker service ps --no-trunc shop_web` "
            "names what to fix: fix it in stack.yaml, keep stage 3's update_config there, "
            "and deploy stack.yaml again"))
    if state in ("updating", "rollback_started"):
        raise Missing(f"`shop_web` is still being updated (its update state is `{state}`)",
                      hints=(
            "an update replaces tasks one by one and watches each new one for a while: "
            "give it some seconds",
            "`docker service inspect --format '{{.UpdateStatus.State}}' shop_web` says "
            "where it is; `docker service ps shop_web` shows the tasks",
            "run the check again once the state is `completed`, `paused` or "
            "`rollback_completed`"))
    if not _healthcheck((container.get("Healthcheck") or {}).get("Test")):
        raise Missing("`shop_web` has no healthcheck: Swarm cannot tell a broken version "
                      "from a good one", hints=(
            "the health gate is two parts: a healthcheck, and update settings that "
            "wait for it",
            "`healthcheck:` under the service in stack.yaml, as in stage 2",
            "put back `web`'s `healthcheck:` (a `test` fetching http://localhost/, "
            "`interval: 1s`) in stack.yaml and deploy it again"))
    update = web.attrs["Spec"].get("UpdateConfig") or {}
    order = update.get("Order", "stop-first")
    action = update.get("FailureAction", "pause")
    if order != "start-first" or action != "rollback":
        raise Missing(f"`shop_web` has no health gate: its update_config says "
                      f"`order: {order}` and `failure_action: {action}`", hints=(
            "a stack file says the whole service: a file without `update_config` sets "
            "Swarm's defaults again, and the next broken version stops halfway",
            "`update_config:` under `deploy:` in stack.yaml, with `order`, "
            "`failure_action` and `monitor`; `docker service inspect --format "
            "'{{json .Spec.UpdateConfig}}' shop_web` shows what the service has now",
            "put stage 3's `update_config` back under `deploy:` in stack.yaml (start "
            "the new task first; on failure, roll back; monitor 5s) and deploy it again"))
    if image.split(":")[0].split("/")[-1] != "shop" or image.endswith(":1"):
        raise Missing(f"`shop_web` runs {image}: version 2 is not out", hints=(
            "a rollback, Swarm's or yours, brings back the version before; the shop "
            "still waits for version 2",
            "`docker service logs shop_web` shows on which port each version says it "
            "opens; version 2's start.sh, above, reads PORT",
            "in stack.yaml, `image: shop:2` with `PORT: \"80\"` in `web`'s environment; "
            "deploy it, and the health gate lets version 2 in only if it is healthy"))
    replicas = web.attrs["Spec"]["Mode"].get("Replicated", {}).get("Replicas")
    if replicas != 2:
        raise Missing(f"`shop_web` asks for {replicas} replicas, not 2", hints=(
            "the shop runs 2 replicas, so that an update never leaves it without one",
            "`replicas:` under `deploy:` in stack.yaml",
            "keep `replicas: 2` under `deploy:` in stack.yaml and deploy it again"))
    running = _running_tasks(web)
    _image_on_every_node(client, web, running)
    if len(running) < 2:
        raise Missing(f"{len(running)} of 2 tasks of `shop_web` run so far", hints=(
            "a task runs once its container is healthy; give Swarm a few seconds",
            "`docker service ps --no-trunc shop_web` shows each task's state and error",
            "wait a few seconds and check again; a task that keeps failing has its "
            "reason in `docker service ps --no-trunc shop_web`"))
    if _fetch_inside(client, running[0], "http://localhost:80/") is None:
        raise Missing("the tasks of `shop_web` are healthy, but nothing answers on port 80, "
                      "where http://web/ leads", hints=(
            "a healthcheck proves only what it tests: this one knocks on another port "
            "than the visitors do",
            "`docker service inspect --format '{{json .Spec.TaskTemplate.ContainerSpec."
            "Healthcheck}}' shop_web` shows the test; `PORT` in `environment:` sets "
            "version 2's port",
            "let version 2 open on port 80 (`PORT: \"80\"` in `web`'s environment) and "
            "the healthcheck fetch http://localhost/ again; deploy stack.yaml again"))
    return (f"shop_web runs 2 healthy replicas of {image} on port 80, behind a health gate "
            "(start-first, rollback on failure)")
