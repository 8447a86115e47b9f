"""Lesson 1's check: `whale-check first-container`."""
from __future__ import annotations

from whale_lessons.exercises import Missing, check, find, image_of

NEVER_STARTED = "0001-01-01T00:00:00Z"


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
            "remove `my-first`, then `docker run` it again as `my-first`, from busybox, "
            "with the `echo` command"))
    state = c.attrs["State"]
    program = c.attrs.get("Path") or "?"
    if state.get("StartedAt", NEVER_STARTED).startswith("0001-") and state.get("Error"):
        raise Missing("`my-first` exists, but it never ran: `docker ps -a` lists it as "
                      "Created", hints=(
            "the engine made the container, then could not start its command: the error "
            "`docker run` printed says why, and the failed container keeps its name",
            "`docker ps -a` shows the COMMAND `my-first` was made with; a name belongs to "
            "one container at a time: `docker rm my-first` frees it for a new try",
            f"busybox has no program called `{program}` (`exec: \"{program}\": executable "
            "file not found`): remove `my-first`, then run it again with the command "
            "spelled right"))
    if state.get("StartedAt", NEVER_STARTED).startswith("0001-"):
        raise Missing("`my-first` exists, but it was never started: `docker ps -a` lists "
                      "it as Created", hints=(
            "a container that was made but not started has not printed anything yet",
            "`docker start -a NAME` starts an existing container and shows what it prints "
            "(`-a`, attach)",
            "start `my-first` with `docker start`; if it prints another sentence, remove "
            "it and run it again"))
    logs = c.logs().decode(errors="replace")
    if "I ran a container" not in logs:
        raise Missing("container `my-first` did not print `I ran a container` "
                      f"(it printed: {logs.strip()[:60]!r})", hints=(
            "what a container printed stays in its logs; this one printed something else",
            "`docker logs my-first` shows what it printed; `docker rm my-first` frees the "
            "name for a new try",
            "remove `my-first`, then run busybox again as `my-first` with "
            "`echo \"I ran a container\"` after the image"))
    return "my-first ran from busybox and said: I ran a container"
