"""Lesson 6's check: `whale-check volumes`."""
from __future__ import annotations

from whale_lessons.exercises import Missing, check, find, run

LIST = "/data/todo.txt"  # where the notebook app keeps its to-do list


def mount_target(container, volume: str) -> str | None:
    """Where `container` mounts the volume `volume`, or None."""
    return next((m["Destination"] for m in container.attrs.get("Mounts") or []
                 if m.get("Type") == "volume" and m.get("Name") == volume), None)


@check("volumes", lesson=6)
def volumes(client) -> str:
    """The volume `notes` holds todo.txt (`buy milk`), and `notebook` keeps its list in it.

    The container `notebook` keeps its list in /data, so `notes` must be mounted there."""
    from docker.errors import ContainerError, NotFound
    try:
        client.volumes.get("notes")
    except NotFound:
        raise Missing("there is no volume named `notes`", hints=(
            "a volume is storage the engine keeps apart from any container",
            "`docker volume create NAME`",
            "`docker volume create` it with the name `notes`; then get the list into it "
            "from a container that mounts it")) from None
    notebook = find(client, "notebook")
    target = mount_target(notebook, "notes") if notebook else None
    try:
        text = run(client, "busybox", ["cat", "/notes/todo.txt"],
                   volumes={"notes": {"bind": "/notes", "mode": "ro"}})
    except ContainerError:
        text = None
    if text is None and notebook is not None and notebook.status == "running" \
            and target != "/data":
        code, kept = notebook.exec_run(["cat", LIST])
        if code == 0 and "buy milk" in kept.decode(errors="replace"):
            where = f"at {target}" if target else "nowhere"
            raise Missing("the volume `notes` has no todo.txt: `notebook` keeps its list "
                          "somewhere else", hints=(
                "a file goes into a volume only under the folder where the volume is "
                "mounted, and everything else a container writes stays in its own layer, "
                "gone with `docker rm`: where is `notes` mounted in `notebook`, and where "
                "is the list?",
                "`docker inspect --format '{{json .Mounts}}' notebook` shows where `notes` "
                "is mounted; `docker exec notebook ls /data /notes` looks in both folders",
                f"the list is {LIST}, in `notebook`'s own layer, and `notes` is mounted "
                f"{where}: copy the file into the volume with `docker exec` while "
                "`notebook` still holds it, then make `notebook` again with `notes` on "
                "/data"))
    if text is None:
        then = ("`notebook` has it on /data already: `docker exec` an `echo` of `buy milk` "
                "into /data/todo.txt there" if target == "/data" and notebook.status == "running"
                else "mount `notes` on a busybox container and `echo` `buy milk` into "
                "todo.txt at the top of the volume; then make `notebook` with `notes` on /data")
        raise Missing("the volume `notes` has no file `todo.txt`", hints=(
            "the list was in a container's own layer, and went with the container: write "
            "it again, into the volume this time",
            "`docker run --rm -v VOLUME:/some/dir busybox sh -c '...'` writes into "
            "/some/dir, which is the volume",
            then))
    if "buy milk" not in text:
        raise Missing(f"todo.txt says {text.strip()[:60]!r}, not `buy milk`", hints=(
            "the file is there, with other words in it",
            "a busybox container with `-v notes:/notes` can write the file again "
            "(`>` replaces it)",
            "write `buy milk` into todo.txt at the top of the volume with `echo ... >`, "
            "from a busybox container that mounts `notes`"))
    if notebook is None:
        raise Missing("the list is in `notes`, but there is no container named `notebook`",
                      hints=(
            "the notebook app needs its container again, with its list in the volume",
            "`docker run -d --name NAME -v VOLUME:/path IMAGE COMMAND`",
            "run busybox in the background as `notebook` (`sleep 3600` keeps it busy), "
            "with `notes` mounted at /data, where it keeps its list"))
    if target != "/data":
        where = f"at {target}" if target else "not at all"
        raise Missing(f"`notebook` keeps its list in /data, but `notes` is mounted {where}: "
                      "a new to-do would go to its own layer again", hints=(
            "a container writes into a volume only under the folder the volume is "
            "mounted at; `notebook` writes to /data",
            "`docker inspect --format '{{json .Mounts}}' notebook` shows its mounts. Mounts "
            "are set when a container is made: `docker rm -f notebook` and run it again",
            f"remove `notebook` and run it again with `-v notes:` and /data instead of "
            f"{target or 'no mount'} (the list is safe in the volume)"))
    if notebook.status != "running":
        raise Missing(f"`notebook` exists but is {notebook.status}, not running", hints=(
            "the notebook app is a container that keeps running",
            "`docker start NAME` starts it again; `docker logs NAME` says why it ended",
            "`docker start notebook`, then run the check again"))
    return "notebook keeps its list in the volume notes, which outlives any container"
