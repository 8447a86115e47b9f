"""Lesson 1's check: `whale-check first-container`."""
from __future__ import annotations

from whale_lessons.exercises import Missing, check, find, image_of


@check("first-container", lesson=1)
def first_container(client) -> str:
    """A container named my-first, from busybox, that printed a sentence."""
    c = find(client, "my-first")
    if c is None:
        raise Missing("there is no container named `my-first`", hints=(
            "`docker run` makes a new container from an image; a container gets a name "
            "of your choice when it is made",
            "`docker run --name NAME IMAGE COMMAND...`: the name goes before the image, "
            "the command to run after it",
            "run busybox with `--name my-first` and the command `echo` followed by the "
            "sentence, in quotes"))
    if "busybox" not in image_of(client, c):
        raise Missing("container `my-first` was not made from the `busybox` image", hints=(
            "a container keeps the image it was made from; yours is another one",
            "`docker rm my-first` frees the name; then make it again from busybox",
            "`docker rm my-first`, then `docker run --name my-first` with busybox and "
            "the `echo` command"))
    logs = c.logs().decode(errors="replace")
    if "I ran a container" not in logs:
        raise Missing("container `my-first` did not print `I ran a container` "
                      f"(it printed: {logs.strip()[:60]!r})", hints=(
            "what a container printed stays in its logs; this one printed something else",
            "`docker logs my-first` shows what it printed; `docker rm my-first` frees the "
            "name for a new try",
            "`docker rm my-first`, then run busybox again as `my-first` with "
            "`echo \"I ran a container\"` after the image"))
    return "my-first ran from busybox and said: I ran a container"
