"""Lesson 6's check: `whale-check volumes`."""
from __future__ import annotations

from whale_lessons.exercises import Missing, check, run


@check("volumes", lesson=6)
def volumes(client) -> str:
    """A volume `notes` holding todo.txt with `buy milk` in it."""
    from docker.errors import ContainerError, NotFound
    try:
        client.volumes.get("notes")
    except NotFound:
        raise Missing("there is no volume named `notes`", hints=(
            "a volume is storage the engine keeps apart from any container",
            "`docker volume create NAME`",
            "`docker volume create` it with the name `notes`; then write the file from a "
            "container that mounts it")) from None
    try:
        text = run(client, "busybox", ["cat", "/notes/todo.txt"],
                    volumes={"notes": {"bind": "/notes", "mode": "ro"}})
    except ContainerError:
        raise Missing("the volume `notes` has no file `todo.txt`", hints=(
            "a file gets into a volume from a container that has the volume mounted",
            "`docker run --rm -v VOLUME:/some/dir busybox sh -c '...'` writes into "
            "/some/dir, which is the volume",
            "mount `notes` with `-v notes:/notes` on a busybox container whose `sh -c` "
            "echoes `buy milk` into /notes/todo.txt")) from None
    if "buy milk" not in text:
        raise Missing(f"todo.txt says {text.strip()[:60]!r}, not `buy milk`", hints=(
            "the file is there, with other words in it",
            "a busybox container with `-v notes:/notes` can write the file again "
            "(`>` replaces it)",
            "write `buy milk` into /notes/todo.txt with `echo ... >` from a busybox "
            "container that mounts `notes` on /notes"))
    return "the volume notes keeps todo.txt, whatever container comes and goes"
