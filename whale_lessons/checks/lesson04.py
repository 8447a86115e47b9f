"""Lesson 4's check: `whale-check dockerfile`."""
from __future__ import annotations

from whale_lessons.exercises import Missing, check, run


@check("dockerfile", lesson=4)
def dockerfile(client) -> str:
    """An image greeting:1.0 whose default command prints Hello, whale!."""
    from docker.errors import ImageNotFound
    try:
        client.images.get("greeting:1.0")
    except ImageNotFound:
        raise Missing("there is no image `greeting:1.0`", hints=(
            "an image is built from a Dockerfile: a base image, then what to add, then "
            "the command to run",
            "a Dockerfile `FROM busybox` with a `CMD`, then `docker build -t NAME:TAG "
            "FOLDER`",
            "in a folder of its own, a Dockerfile with `FROM busybox` and a `CMD` that "
            "echoes `Hello, whale!`; build it there with `-t greeting:1.0`")) from None
    out = run(client, "greeting:1.0", None)
    if "Hello, whale!" not in out:
        raise Missing(f"`docker run greeting:1.0` prints {out.strip()[:60]!r}, "
                      "not `Hello, whale!`", hints=(
            "the image's default command is the one its Dockerfile names last with `CMD`",
            "`docker history greeting:1.0` shows the image's `CMD`; fix the Dockerfile "
            "and `docker build` it again with the same tag",
            "make the Dockerfile's `CMD` `[\"echo\", \"Hello, whale!\"]` and build it "
            "again as `greeting:1.0`"))
    return "greeting:1.0 says Hello, whale!"
