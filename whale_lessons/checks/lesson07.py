"""Lesson 7's check: `whale-check networks`."""
from __future__ import annotations

from whale_lessons.exercises import Missing, check, fetch, find


@check("networks", lesson=7)
def networks(client) -> str:
    """A user-defined network `shop` where `api` answers by its name."""
    from docker.errors import NotFound
    try:
        net = client.networks.get("shop")
    except NotFound:
        raise Missing("there is no network named `shop`", hints=(
            "containers find each other by name only on a network you create yourself",
            "`docker network create NAME` makes a user-defined bridge network",
            "`docker network create` the network `shop`, then put `api` on it")) from None
    if net.attrs["Driver"] != "bridge":
        raise Missing(f"network `shop` uses the {net.attrs['Driver']} driver, not bridge",
                      hints=(
            "this lesson's networks are bridges, on one engine",
            "`docker network rm shop` removes it (disconnect its containers first); "
            "`docker network create` makes a bridge unless told otherwise",
            "remove `shop` and create it again with no `--driver`"))
    c = find(client, "api")
    if c is None:
        raise Missing("there is no container named `api`", hints=(
            "the shop needs its web server, a container named `api`, on `shop`",
            "`docker run -d --name NAME --network NETWORK IMAGE`",
            "run the `webserver` image in the background as `api`, with `--network` "
            "`shop`"))
    if c.status != "running":
        raise Missing(f"`api` exists but is {c.status}, not running", hints=(
            "a stopped container answers nobody, by name or not",
            "`docker start NAME` starts it again; `docker logs NAME` says why it ended",
            "`docker start api`, then run the check again"))
    on = sorted(c.attrs["NetworkSettings"]["Networks"])
    if "shop" not in on:
        raise Missing("on `shop`, the name `api` does not resolve", hints=(
            "the engine's DNS answers a name only for containers on the same "
            "user-defined network as the one asking: which networks is `api` on?",
            "`docker inspect --format '{{json .NetworkSettings.Networks}}' api` lists "
            "its networks; `docker network connect` attaches a running container to "
            "one more",
            f"`api` is only on {', '.join(on) or 'no network'}: attach it to `shop` "
            "with `docker network connect` (the network first, then the container)"))
    page = fetch(client, "http://api/", network="shop")
    if page is None:
        raise Missing("`api` is on `shop`, but http://api/ does not answer there", hints=(
            "the name resolves, so the question is what listens in `api`",
            "`docker logs api` and `docker inspect --format '{{.Config.Image}}' api` "
            "show what it runs; http://api/ is port 80",
            "`api` should run the `webserver` image, which listens on 80: remove it and "
            "run webserver as `api` on `shop`"))
    if "Hello from a container" not in page:
        raise Missing("http://api/ answers on `shop`, but not with the web server's page",
                      hints=(
            "something answers at `api`, but not the `webserver` image's page",
            "`docker inspect --format '{{.Config.Image}}' api` shows its image",
            "remove `api` and run the `webserver` image as `api` on `shop`"))
    return "on the network shop, http://api/ reaches the api container by name"
