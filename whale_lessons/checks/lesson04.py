"""Lesson 4's check: `whale-check dockerfile`."""
from __future__ import annotations

from whale_lessons.exercises import Missing, check


def run_image(client, image: str) -> tuple[int | None, str]:
    """Run `image` with its default command: (exit code, what it printed), or (None, the
    engine's error) if its command could not even start; a command still running after
    15 s counts as exit code 0. Leaves no container behind."""
    from docker.errors import APIError
    c = client.containers.create(image)
    try:
        try:
            c.start()
        except APIError as exc:
            return None, str(exc.explanation or exc)
        try:
            code = c.wait(timeout=15)["StatusCode"]
        except Exception:  # still running after 15 s (a server?): judge what it printed
            code = 0
        return code, c.logs().decode(errors="replace")
    finally:
        c.remove(force=True)


@check("dockerfile", lesson=4)
def dockerfile(client) -> str:
    """An image greeting:1.0 whose default command prints Hello, whale!."""
    from docker.errors import ImageNotFound
    try:
        image = client.images.get("greeting:1.0")
    except ImageNotFound:
        raise Missing("there is no image `greeting:1.0`", hints=(
            "a build that stops at an error makes no image: the last lines of its output "
            "(`ERROR: …`) say which step failed, and why",
            "`docker build` sends the builder only the folder you name (the *build "
            "context*: `.` is the folder you are in); `COPY` takes its files from there "
            "and nowhere else. `ls greeting` lists what the context holds",
            "COPY looks for greeting.txt in the folder `greeting`, but the file was written "
            "next to that folder, not in it: put it where COPY looks, then build again in "
            "`greeting` with `-t greeting:1.0`")) from None
    code, out = run_image(client, "greeting:1.0")
    command = " ".join((image.attrs["Config"].get("Entrypoint") or [])
                       + (image.attrs["Config"].get("Cmd") or []))
    if code is None:
        program = out.split('exec: "', 1)[1].split('"', 1)[0] if 'exec: "' in out else command
        raise Missing(f"`docker run greeting:1.0` fails: the image has no program "
                      f"`{program}`", hints=(
            "the image builds, but the command its containers run by default is not in it",
            "`docker history greeting:1.0` shows the image's `CMD` (its top line); the "
            "Dockerfile's last `CMD` sets it. Fix the Dockerfile and `docker build` again "
            "with the same tag",
            f"the image's command is `{command}`, and busybox has no `{program}`: name a "
            "program busybox has in the `CMD` (`cat`, to print the greeting file), and "
            "build again as `greeting:1.0`"))
    first = out.strip().splitlines()[0] if out.strip() else ""
    if code != 0:
        raise Missing(f"`docker run greeting:1.0` fails (exit code {code}): {first[:80]}",
                      hints=(
            "the image builds, but its command fails when a container runs it",
            "`docker run --rm greeting:1.0` shows the error; `docker history greeting:1.0` "
            "lists the steps the image was built from: is there a `COPY` of the file its "
            "command reads?",
            f"the image runs `{command}`, which needs a file the image does not have: keep "
            "the Dockerfile's `COPY`, give the builder the file (in the folder you build), "
            "and build again as `greeting:1.0`"))
    if "Hello, whale!" not in out:
        raise Missing(f"`docker run greeting:1.0` prints {out.strip()[:60]!r}, "
                      "not `Hello, whale!`", hints=(
            "the image's default command prints something else",
            "`docker history greeting:1.0` shows the image's `CMD` and `COPY` steps; fix "
            "the Dockerfile or the file it copies, and `docker build` it again with the "
            "same tag",
            "the greeting file must say `Hello, whale!` and the `CMD` print it (`cat`); "
            "build again as `greeting:1.0`"))
    return "greeting:1.0 builds, and says `Hello, whale!`"
