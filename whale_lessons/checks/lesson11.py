"""Lesson 11's check: `whale-check secure-images`."""
from __future__ import annotations

import json
import time

from whale_lessons.exercises import Missing, check, find, run

#: The token the lesson's setup cell writes to shop/token.txt.
TOKEN = "tk-shop-4711"  # noqa: S105 - the lesson's made-up token, which the check looks for


def _is_root(user: str) -> bool:
    """An image's or container's `User` that means root: unset, 0 or root (any group)."""
    return user.split(":")[0] in ("", "0", "root")


def _files_with_token(client, image) -> list[str]:
    """The files of `image` that hold the token (searched as root, on its own file system)."""
    from docker.errors import APIError, ContainerError
    try:
        found = run(client, image.id,
                    [f"find / -xdev -type f -exec grep -lF {TOKEN} {{}} + || true"],
                    entrypoint=["/bin/sh", "-c"], user="0", network_mode="none")
    except (APIError, ContainerError):
        return []  # an image without sh and find: nothing the check can search
    return sorted(line for line in found.splitlines() if line.startswith("/"))


def _page(container, seconds: float = 10.0) -> str:
    """The shop's page as `wget` inside the container fetches it ("" if it never answers)."""
    from docker.errors import APIError
    deadline = time.monotonic() + seconds
    while True:
        try:
            code, out = container.exec_run(["wget", "-qO-", "http://localhost/"])
        except APIError:
            code, out = 1, b""
        if code == 0 or time.monotonic() > deadline:
            return out.decode(errors="replace") if code == 0 else ""
        time.sleep(0.5)


@check("secure-images", lesson=11)
def secure_images(client) -> str:
    """The shop: an image without the token, running as non-root, read-only, no capabilities."""
    from docker.errors import ImageNotFound
    try:
        image = client.images.get("shop")
    except ImageNotFound:
        raise Missing("there is no image `shop`", hints=(
            "the shop's image is built from the folder `shop`: its Dockerfile, its page "
            "and the token file the build needs",
            "`docker build -t shop .` in the folder `shop` (`cd shop` first); `docker "
            "images` lists what the engine holds",
            "in `shop`, build the image as `shop`, handing the build the token as a "
            "secret (`--secret id=token,src=token.txt`); `cd ..` after")) from None
    history = [step.get("CreatedBy") or "" for step in image.history()]
    if any(TOKEN in step or "TOKEN=" in step for step in history):
        raise Missing("`docker history --no-trunc shop` shows the token", hints=(
            "the history keeps each step's instruction, with the build arguments a `RUN` "
            "saw (`|1 TOKEN=...`) and the value an `ENV` set, for everyone who gets the "
            "image to read: the build needs the token another way",
            "a secret mount, `RUN --mount=type=secret,id=token ...`, puts the token in "
            "/run/secrets/token for one step only; `docker build --secret "
            "id=token,src=token.txt` hands it over",
            "in shop/Dockerfile, drop `ARG TOKEN`, give the `RUN` that uses the token "
            "`--mount=type=secret,id=token` and read it from /run/secrets/token instead "
            "of $TOKEN; build with `--secret` instead of `--build-arg`"))
    if TOKEN in json.dumps(image.attrs.get("Config") or {}):
        raise Missing("`docker inspect shop` shows the token in the image's configuration",
                      hints=(
            "an image's configuration (its environment, labels, command) goes wherever "
            "the image goes, for everyone who gets it to read",
            "`docker inspect --format '{{json .Config}}' shop` shows it; `ENV`, `LABEL` "
            "and `docker build --label` write there",
            "build `shop` again without the token in an `ENV`, a `LABEL` or a `--label`: "
            "the one `RUN` that needs it reads it from /run/secrets/token (a secret "
            "mount)"))
    files = _files_with_token(client, image)
    if files:
        raise Missing(f"the image `shop` holds the token in the file {files[0]}", hints=(
            "`COPY . /www/` copies the whole build context into the image, and the web "
            "server serves all of it: the token file too",
            "a `.dockerignore` file next to the Dockerfile names what the build context "
            "leaves out, one pattern a line (a secret mount still reads its file from "
            "your folder)",
            f"write shop/.dockerignore with `token.txt` in it (and `Dockerfile`, "
            f"`.dockerignore`), then build `shop` again: {files[0]} is then gone"))
    user = (image.attrs.get("Config") or {}).get("User") or ""
    if _is_root(user):
        raise Missing("containers of the image `shop` run as root", hints=(
            "an image runs as root unless its Dockerfile names another user; the web "
            "server needs no root",
            "`USER NAME` in the Dockerfile (after the steps that need root); the user "
            "needs a line in /etc/passwd, and its group one in /etc/group",
            "in shop/Dockerfile, add a `RUN` that appends a user `app` (ID 10001) to "
            "/etc/passwd and its group to /etc/group, end with `USER app`, and build "
            "`shop` again"))
    c = find(client, "shop")
    if c is None:
        raise Missing("there is no container named `shop`", hints=(
            "the image is right now; the shop needs a container of it named `shop`",
            "`docker run -d --name shop ...` with the flags that take away what the "
            "shop does not need",
            "run the image `shop` in the background as `shop`, with a read-only file "
            "system and every capability dropped"))
    if c.image.id != image.id:
        raise Missing("the container `shop` runs an old build of the image `shop`", hints=(
            "a container keeps the image it was made from: a new build changes no "
            "running container",
            "`docker rm -f shop` removes the old container; then `docker run` the new "
            "image",
            "remove `shop` and run the image `shop` again as `shop`, in the background, "
            "read-only and with every capability dropped"))
    if c.status != "running":
        error = c.attrs["State"].get("Error") or ""
        if "unable to find user" in error:
            name = user.split(":")[0]
            raise Missing("`shop` could not start: its user is not in the image's "
                          "/etc/passwd", hints=(
                f"`USER {name}` needs a user `{name}` in the image's /etc/passwd (a "
                "number, such as `USER 10001`, needs none)",
                "`docker inspect --format '{{.State.Error}}' shop` shows why: "
                f"{error.strip().rstrip('.')}",
                f"in shop/Dockerfile, before `USER {name}`, a `RUN` that appends "
                f"`{name}:x:10001:10001::/home/{name}:/bin/sh` to /etc/passwd and "
                f"`{name}:x:10001:` to /etc/group; build `shop` again and run it again"))
        raise Missing(f"`shop` exists but is {c.status}, not running", hints=(
            "a stopped web server serves nobody",
            "`docker logs shop` says why it ended; `docker start shop` starts it again",
            "read `docker logs shop`, fix what it says, and start `shop` (or remove and "
            "run it again)"))
    container_user = c.attrs["Config"].get("User") or ""
    if _is_root(container_user):
        raise Missing("the container `shop` runs as root", hints=(
            "the image runs as a user of its own, but `docker run --user` overrides it",
            "`docker inspect --format '{{.Config.User}}' shop` shows the container's user; "
            "without `--user`, it is the image's",
            "remove `shop` and run it again without `--user root` (or `--user 0`)"))
    host = c.attrs["HostConfig"]
    if not host.get("ReadonlyRootfs"):
        raise Missing("the container `shop` may write to its own file system", hints=(
            "the shop only reads its files: nobody in it needs to change them, or to "
            "plant new ones",
            "`docker run --read-only` mounts the container's file system read-only "
            "(`--tmpfs /tmp` for scratch space); flags are set when a container is made",
            "remove `shop` and run it again with `--read-only` (and every capability "
            "dropped)"))
    if "ALL" not in [cap.upper() for cap in host.get("CapDrop") or []]:
        raise Missing("the container `shop` keeps Docker's default capabilities", hints=(
            "a web server as a user other than root needs none of the capabilities Docker "
            "gives a container (`chown`, `kill`, `net_raw`, ...)",
            "`docker run --cap-drop ALL` drops them all; `--cap-add NAME` would add back "
            "one that is really needed",
            "remove `shop` and run it again, read-only, with `--cap-drop` and the word "
            "for all of them"))
    page = _page(c)
    if "apples" not in page:
        raise Missing("`shop` does not serve its page with today's prices", hints=(
            "the page comes from the build: `index.html` from the folder, and today's "
            "prices from the `RUN` that uses the token",
            "`docker exec shop wget -qO- http://localhost/` fetches the page; `docker "
            "logs shop` shows what httpd said",
            "keep `COPY . /www/` and the `RUN` that appends the prices (with the token "
            "from /run/secrets/token), build again and run `shop` again"))
    name = container_user.split(":")[0]
    return (f"shop runs as {name}, read-only and without capabilities, from an image that "
            "keeps no token")
