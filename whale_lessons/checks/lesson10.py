"""Lesson 10's check: `whale-check ship-it`.

The learner's registry runs on their engine (port 5000 published on 127.0.0.1). The
check asks it what it holds through its HTTP API, from a busybox on the registry's own
network, and asks the engine which digest the tag `127.0.0.1:5000/shop:1.0` has (the
engine reaches 127.0.0.1:5000 itself, as it does for a push or a pull).
"""
from __future__ import annotations

import json

from docker.errors import APIError, ContainerError, ImageNotFound, NotFound

from whale_lessons.exercises import Missing, check, find, run

REGISTRY = "127.0.0.1:5000"
REPOSITORY = "shop"
TAG = "1.0"
NAME = f"{REGISTRY}/{REPOSITORY}"
#: Names of the same registry on the engine: the engine reaches both as its own port 5000.
REGISTRY_NAMES = (REGISTRY, "localhost:5000")


def _registry(client):
    """The container that publishes the engine's port 5000 (in any state), and the
    container port it leads to; else the container called `registry`."""
    for c in client.containers.list(all=True):
        bindings = c.attrs["HostConfig"].get("PortBindings") or {}
        for port, hosts in bindings.items():
            if any(h.get("HostPort") == "5000" for h in hosts or []):
                return c, port.split("/")[0]
    c = find(client, "registry")
    return c, None


def _ask(client, registry, port: str, *paths: str) -> list | None:
    """What the registry's API says at each path (parsed JSON; None where it answered
    with an error), asked by a busybox on the registry's network; None if it does not
    answer at all."""
    networks = registry.attrs["NetworkSettings"]["Networks"] or {}
    network, settings = next(((n, s) for n, s in networks.items() if s.get("IPAddress")),
                             (None, None))
    if network is None:
        return None
    base = f"http://{settings['IPAddress']}:{port}"
    script = ('wget -qO- "$0/v2/" >/dev/null || exit 3; '
              'for p; do echo; wget -qO- "$0$p" 2>/dev/null || echo null; done')
    try:
        out = run(client, "busybox", ["timeout", "10", "sh", "-c", script, base, *paths],
                  network=network)
    except ContainerError:
        return None
    answers = [line for line in out.splitlines() if line.strip()]
    if len(answers) != len(paths):
        return None
    return [json.loads(a) for a in answers]


def _digest(client, name: str) -> str | None:
    """The digest the engine finds for `name` in its registry, or None if none."""
    try:
        return client.images.get_registry_data(name).id
    except (NotFound, APIError):
        return None


@check("ship-it", lesson=10)
def ship_it(client) -> str:
    """shop 1.0 in your registry as 127.0.0.1:5000/shop:1.0, run as `shop` by its digest."""
    registry, port = _registry(client)
    if registry is None:
        raise Missing(f"no registry answers on {REGISTRY}: no container publishes port 5000",
                      hints=(
            "your registry is a container too, and the images pushed to it live in its "
            "volume: start a registry again and they are back",
            "`docker ps -a` lists every container; the lesson's first `docker run` cell "
            "starts the registry (the `registry` image, `-p 127.0.0.1:5000:5000`, "
            "`--mount` of a volume at /var/lib/registry)",
            "run the `registry` image again as `registry`, on the network `shipping`, "
            "with port 5000 published on 127.0.0.1 and the volume `registry-data` at "
            "/var/lib/registry"))
    if registry.status != "running":
        raise Missing(f"your registry `{registry.name}` is {registry.status}, not running",
                      hints=(
            "a stopped registry answers no push and no pull",
            "`docker start NAME` starts a stopped container again; `docker logs NAME` "
            "says why it ended",
            f"`docker start {registry.name}`, then run the check again"))
    answers = _ask(client, registry, port or "5000", "/v2/_catalog",
                   f"/v2/{REPOSITORY}/tags/list")
    if answers is None:
        raise Missing(f"`{registry.name}` runs, but nothing answers on {REGISTRY}",
                      hints=(
            "the registry listens on port 5000 inside its container: does port 5000 of "
            "the engine lead there?",
            f"`docker port {registry.name}` shows where the engine's port 5000 leads; "
            f"`docker logs {registry.name}` shows what the registry said when it started",
            f"remove `{registry.name}` and run it again with `-p 127.0.0.1:5000:5000`, and "
            "the same volume at /var/lib/registry: the images in it are kept"))
    catalog, tags = answers
    repositories = (catalog or {}).get("repositories") or []
    try:
        built = client.images.get(f"{REPOSITORY}:{TAG}")
    except ImageNotFound:
        raise Missing(f"there is no image `{REPOSITORY}:{TAG}` on your engine to ship",
                      hints=(
            "the shop's image is built from the folder `shop`, as the challenge's first "
            "cell did",
            "`docker build -t NAME:TAG FOLDER` builds an image and names it; "
            "`docker images shop` lists what there is",
            "build the folder `shop` again as `shop:1.0`, then ship that image")) from None
    if REPOSITORY not in repositories:
        held = ", ".join(repositories) or "nothing"
        raise Missing(f"your registry holds no repository `{REPOSITORY}` (it holds: {held})",
                      hints=(
            "`docker push` sends an image to the registry its name starts with: "
            "an image named just `shop:1.0` goes nowhere",
            "`docker tag IMAGE REGISTRY/REPOSITORY:TAG` gives an image one more name; "
            "then `docker push` that name",
            f"name `{REPOSITORY}:{TAG}` once more, with `{REGISTRY}/` in front, and push "
            "that name"))
    have = (tags or {}).get("tags") or []
    if TAG not in have:
        raise Missing(f"your registry's `{REPOSITORY}` has no tag `{TAG}` (its tags: "
                      f"{', '.join(have) or 'none'})", hints=(
            "`docker push` sends the tag that is in the image's name; a name without a "
            "tag means `:latest`",
            "`docker tag IMAGE REGISTRY/REPOSITORY:TAG` gives an image one more name, "
            "with the tag you want; `docker push` sends that name",
            f"`latest` there is `{REPOSITORY}:{TAG}` pushed without a tag: name "
            f"`{REPOSITORY}:{TAG}` once more, as `{NAME}` with the tag `{TAG}`, and push "
            "that name"))
    digest = _digest(client, f"{NAME}:{TAG}")
    pushed = {ref.split("@")[1] for ref in built.attrs.get("RepoDigests") or []
              if ref.split("@")[0] in {f"{r}/{REPOSITORY}" for r in REGISTRY_NAMES}}
    if digest not in pushed:
        raise Missing(f"`{NAME}:{TAG}` in your registry is not the image `{REPOSITORY}:{TAG}` "
                      "built here", hints=(
            "a tag points at whatever was pushed to it last; this one is another image",
            f"`docker image inspect --format '{{{{.RepoDigests}}}}' {REPOSITORY}:{TAG}` "
            "lists the digests the image got when it was pushed; `docker images --digests` "
            "shows them for every image",
            f"the tag `{TAG}` has the digest {(digest or 'none')[:19]}…, which is not one of "
            f"`{REPOSITORY}:{TAG}`'s: name the image built here `{NAME}:{TAG}` and push "
            "it again"))
    shop = find(client, REPOSITORY)
    if shop is None:
        raise Missing(f"there is no container named `{REPOSITORY}`", hints=(
            "the shop runs in a container named `shop`, made from your registry's image",
            "`docker run -d --name shop IMAGE`, where IMAGE names the image by its "
            "digest: `NAME@sha256:…`",
            f"run `{NAME}@{digest[:19]}…` (the digest of `{TAG}`, in full) in the "
            "background as `shop`"))
    image = shop.attrs["Config"]["Image"]
    if "@" not in image:
        raise Missing(f"`{REPOSITORY}` runs `{image}`, a name whose tag can move, not a "
                      "digest", hints=(
            "a tag moves with every push to it; a digest names one image's bytes, "
            "always",
            "`docker run` takes `NAME@sha256:…` as the image; `docker image inspect "
            "--format '{{index .RepoDigests 0}}' IMAGE` prints it, ready to use. A "
            "container's image is set when it is made: `docker rm -f` it first",
            f"the tag `{TAG}` has the digest {digest}: remove `{REPOSITORY}` and run it "
            f"again from `{NAME}@` and that digest"))
    name, _, used = image.partition("@")
    if used != digest or name not in {f"{r}/{REPOSITORY}" for r in REGISTRY_NAMES}:
        raise Missing(f"`{REPOSITORY}` runs `{name}@{used[:19]}…`, not `{NAME}:{TAG}`'s "
                      "digest", hints=(
            "a digest names exactly one image: this one is another",
            f"`docker image inspect --format '{{{{index .RepoDigests 0}}}}' {NAME}:{TAG}` "
            f"prints the digest of `{TAG}` with its repository",
            f"`{REPOSITORY}` runs {used[:19]}…, but `{TAG}` is {digest}: remove "
            f"`{REPOSITORY}` and run it again from that digest of `{NAME}`"))
    if shop.status != "running":
        raise Missing(f"`{REPOSITORY}` is {shop.status}, not running", hints=(
            "a stopped shop sells nothing",
            "`docker start NAME` starts it again; `docker logs NAME` says why it ended",
            f"`docker start {REPOSITORY}`, then run the check again"))
    return f"shop runs {NAME}:{TAG} from your registry, pinned to its digest"
