"""Lesson 3's check: `whale-check ports`."""
from __future__ import annotations

from whale_lessons.exercises import Missing, check, fetch, find, image_of


@check("ports", lesson=3)
def ports(client) -> str:
    """The web server `site`, running, with container port 80 on port 8081."""
    c = find(client, "site")
    if c is None:
        raise Missing("there is no container named `site`", hints=(
            "the site's container is gone: the page needs a web server container named "
            "`site` with a published port",
            "`docker run -d --name site -p HOST_PORT:CONTAINER_PORT webserver`: which "
            "port does the web server listen on inside its container?",
            "run webserver again as `site`, with port 8081 of the machine leading to the "
            "port `docker ps` lists for the image (`80/tcp`)"))
    if "webserver" not in image_of(client, c):
        raise Missing("container `site` was not made from the `webserver` image", hints=(
            "the page comes from the `webserver` image; `site` runs another one",
            "`docker rm -f site` frees the name; make it again from `webserver`",
            "`docker rm -f site`, then `docker run` webserver in the background as "
            "`site`, publishing 8081 to its web port"))
    if c.status != "running":
        raise Missing(f"`site` exists but is {c.status}, not running", hints=(
            "a stopped web server answers nobody",
            "`docker start site` starts it again; `docker logs site` says why it ended",
            "`docker start site`, then run the check again"))
    published = c.attrs["NetworkSettings"]["Ports"] or {}
    to_8081 = sorted(port for port, bindings in published.items()
                     if any(b["HostPort"] == "8081" for b in bindings or []))
    if to_8081 and "80/tcp" not in to_8081:
        inside = to_8081[0].split("/")[0]
        raise Missing("`site` runs, but nothing answers on port 8081", hints=(
            "a published port leads to one port *inside* the container: does the web "
            "server listen on the port that 8081 leads to?",
            "`docker port site` shows where 8081 leads; `docker ps` lists the port the "
            "image's server uses (`80/tcp`). Ports are set when a container is made: "
            "`docker rm -f site` and run it again",
            f"8081 leads to the container's port {inside}, but httpd listens on 80: "
            f"remove `site` and run it again with `-p`'s container side {inside} "
            "changed to 80"))
    host_ports = sorted({b["HostPort"] for b in published.get("80/tcp") or []})
    if not host_ports:
        raise Missing("`site` runs, but publishes no port", hints=(
            "a container's ports are closed to the outside until you publish them",
            "`-p HOST_PORT:CONTAINER_PORT` on `docker run` publishes a port; it cannot "
            "be added later: `docker rm -f site` and run it again",
            "remove `site`, then run webserver again as `site` in the background with "
            "`-p` from 8081 to the container's port 80"))
    if "8081" not in host_ports:
        raise Missing(f"`site` runs, but its port 80 is published on {', '.join(host_ports)}, "
                      "not on 8081", hints=(
            "the number before the colon of `-p` is the machine's port, the one after it "
            "the container's",
            "`docker port site` shows where port 80 is published; to change it, "
            "`docker rm -f site` and run it again with another `-p`",
            f"remove `site` and run it again with the machine's side of `-p` "
            f"({host_ports[0]}) changed to 8081"))
    page = fetch(client, "http://host.docker.internal:8081/",
                  extra_hosts={"host.docker.internal": "host-gateway"})
    if page is None:
        addresses = sorted({b["HostIp"] or "all interfaces"
                            for b in published.get("80/tcp") or []})
        raise Missing("port 8081 of the engine's machine does not answer", hints=(
            "the check asks across the engine's network, as the ports links do: is 8081 "
            "published on an interface that network reaches?",
            f"`docker port site` shows the address it listens on ({', '.join(addresses)}); "
            "`127.0.0.1:` in front of the port keeps out everyone but the machine itself",
            "remove `site` and run it again with `-p 8081:` and the container port, "
            "without an address in front"))
    if "Hello from a container" not in page:
        raise Missing("port 8081 answers, but not with the web server's page", hints=(
            "something answers on 8081, but not the page of the `webserver` image",
            "`docker ps` shows which container publishes 8081",
            "free port 8081 and publish `site`'s port 80 on it"))
    return "site serves its page on port 8081"
