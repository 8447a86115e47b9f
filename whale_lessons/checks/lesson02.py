"""Lesson 2's check: `whale-check lifecycle`."""
from __future__ import annotations

from whale_lessons.exercises import Missing, check, find

SIGTERM_BIT = 1 << (15 - 1)  # SIGTERM (15) in a /proc/PID/status signal mask


def pid1_ignores_sigterm(container) -> str | None:
    """The name of the container's PID 1 if it ignores `docker stop`'s SIGTERM, else None.

    Linux ignores a signal sent to a PID namespace's first process unless that process
    installed a handler for it (SigCgt); `--init`'s tini passes signals on to the command.
    """
    if container.attrs["HostConfig"].get("Init"):
        return None
    code, out = container.exec_run(["cat", "/proc/1/comm", "/proc/1/status"])
    if code != 0:
        return None  # cannot tell (the container has no cat): let it be
    lines = out.decode(errors="replace").splitlines()
    caught = next((ln.split()[1] for ln in lines if ln.startswith("SigCgt:")), "0")
    if int(caught, 16) & SIGTERM_BIT:
        return None
    return lines[0].strip() if lines else "?"


@check("lifecycle", lesson=2)
def lifecycle(client) -> str:
    """A background `ticker` that Docker restarts unless you stop it, and that stops at once."""
    c = find(client, "ticker")
    if c is None:
        raise Missing("there is no container named `ticker`", hints=(
            "this one runs in the background, keeps busy, has a restart policy, and a PID 1 "
            "that passes `docker stop`'s signal on",
            "`docker run -d` runs in the background, `--restart POLICY` sets the policy, "
            "`--init` gives it a PID 1 that passes signals on",
            "`docker run -d --name ticker` with `--init` and a `--restart` policy of "
            "`unless-stopped`, then busybox and the ticking `sh -c` command"))
    if c.status == "running":
        pid1 = pid1_ignores_sigterm(c)
        if pid1:
            raise Missing("`ticker` ignores `docker stop`'s SIGTERM: stopping it takes 10 "
                          "seconds", hints=(
                "`docker stop` asks the main process (PID 1) to end with SIGTERM, and "
                "Linux lets PID 1 ignore a signal it has no handler for: which program is "
                "PID 1 in `ticker`?",
                "`docker exec ticker ps -o pid,comm` lists its processes; `docker run "
                "--init` makes a tiny init PID 1 that passes signals on. `--init` is set "
                "when a container is made, so `ticker` has to be made again",
                f"PID 1 in `ticker` is `{pid1}`, which installs no handler for SIGTERM: "
                "remove `ticker` and run it again, the same, with `--init` (and the "
                "restart policy the exercise asks for)"))
    policy = c.attrs["HostConfig"]["RestartPolicy"]["Name"] or "no"
    if policy != "unless-stopped":
        raise Missing(f"`ticker`'s restart policy is `{policy}`, not `unless-stopped`", hints=(
            "a container's restart policy says whether Docker starts it again after it "
            "ends, or after the engine restarts",
            "`docker update --restart POLICY NAME` changes the policy of an existing "
            "container; `docker inspect --format '{{.HostConfig.RestartPolicy.Name}}' "
            "ticker` shows it",
            f"its policy is `{policy}`: `docker update` it with `--restart` set to "
            "`unless-stopped`"))
    if c.status != "running":
        raise Missing(f"`ticker` exists but is {c.status}, not running", hints=(
            "a stopped container keeps its name and settings; it can run again",
            "`docker start NAME` starts an existing container again",
            "`docker start ticker`; if it stops at once, `docker logs ticker` says why"))
    return ("ticker runs in the background, comes back unless you stop it, and stops at "
            "once when you do")
