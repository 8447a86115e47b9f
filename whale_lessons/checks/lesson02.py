"""Lesson 2's check: `whale-check lifecycle`."""
from __future__ import annotations

from whale_lessons.exercises import Missing, check, find


@check("lifecycle", lesson=2)
def lifecycle(client) -> str:
    """A background container `ticker` that Docker restarts unless you stop it."""
    c = find(client, "ticker")
    if c is None:
        raise Missing("there is no container named `ticker`", hints=(
            "this one runs in the background, keeps busy, and has a restart policy",
            "`docker run -d` runs in the background, `--restart POLICY` sets the policy, "
            "and `sleep 3600` keeps a busybox container busy",
            "`docker run -d --name ticker` with a `--restart` policy of `unless-stopped`, "
            "then busybox and `sleep 3600`"))
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
    return "ticker runs in the background and comes back unless you stop it"
