"""Lesson 9's check: `whale-check compose`."""
from __future__ import annotations

from whale_lessons.exercises import Missing, check


@check("compose", lesson=9)
def compose(client) -> str:
    """The Compose project orders: web starts once its database db is healthy, and runs."""
    containers = client.containers.list(all=True,
                                        filters={"label": "com.docker.compose.project=orders"})
    services = {c.labels.get("com.docker.compose.service"): c for c in containers}
    if not services:
        raise Missing("the Compose project `orders` has no containers", hints=(
            "Compose makes a project's containers from the compose.yaml in its folder",
            "`docker compose up -d` in the folder `orders` (`cd orders` first)",
            "in `orders`, `docker compose up` with `-d` (and `--wait`, to return once "
            "every service is up); `cd ..` after"))
    db, web = services.get("db"), services.get("web")
    if db is None or web is None:
        gone = " and ".join(s for s in ("db", "web") if s not in services)
        raise Missing(f"the project `orders` has no service {gone}", hints=(
            "the app is two services, `db` and `web`; keep both in orders/compose.yaml",
            "`docker compose config --services` in `orders` lists the file's services",
            "put the missing service back in orders/compose.yaml as the cell above wrote "
            "it, then `docker compose up -d` there"))
    test = (db.attrs["Config"].get("Healthcheck") or {}).get("Test") or ["NONE"]
    if test[0] == "NONE":
        raise Missing("Compose cannot tell when `db` is ready: it has no healthcheck",
                      hints=(
            "Compose starts `web` as soon as `db`'s container has started, not once db "
            "answers; Docker needs a test that says when db is ready",
            "a `healthcheck:` under `db` in orders/compose.yaml (the lesson's `probe` has "
            "one): a `test` command that succeeds once db answers on port 5432, and an "
            "`interval`; then `docker compose up -d` again",
            "under `db:`, add `healthcheck:` with `test: [\"CMD\", \"wget\", \"-qO-\", "
            "\"http://localhost:5432/\"]` and `interval: 1s`; `web` must then wait for "
            "it (the check says how next)"))
    waits = dict(part.split(":")[:2] for part in
                 web.labels.get("com.docker.compose.depends_on", "").split(",") if part)
    if waits.get("db") != "service_healthy":
        raise Missing("`db` has a healthcheck, but `web` does not wait for it to pass",
                      hints=(
            "`depends_on` says which service starts first; it can also say what to wait "
            "for",
            "in `web`'s `depends_on`, the `condition` for db: `service_healthy` instead "
            "of the default `service_started`; then `docker compose up -d` again (Compose "
            "applies a changed file only then)",
            "write web's `depends_on` as a mapping, `db:` with `condition: "
            "service_healthy` under it, instead of the list `- db`; then up again in "
            "`orders`"))
    if web.status != "running":
        raise Missing(f"`web` is {web.status} (exit code {web.attrs['State']['ExitCode']}), not running",
                      hints=(
            "the file is right now; the containers are from before",
            "`docker compose logs web` says why it ended; `docker compose up -d --wait` "
            "starts what is not running",
            "bring the app up again in `orders` (`up -d`, with `--wait`): Compose now "
            "starts web only once db is healthy"))
    if (db.attrs["State"].get("Health") or {}).get("Status") != "healthy" and \
            db.status == "running":
        raise Missing("`db` is not healthy (yet)", hints=(
            "a healthcheck passes only after db's start-up, a few seconds",
            "`docker compose ps` shows `(healthy)` once it passes; `docker inspect "
            "--format '{{json .State.Health}}' orders-db-1` shows its last tests",
            "wait a few seconds and check again; if it never turns healthy, its `test` "
            "must reach http://localhost:5432/"))
    if db.status != "running":
        raise Missing(f"`db` is {db.status}, not running", hints=(
            "web needs its database running",
            "`docker compose up -d --wait` in `orders` starts what is not running",
            "bring the app up again in `orders` (`up -d`, with `--wait`); `docker "
            "compose logs db` says why db ended"))
    if "connected to db" not in web.logs().decode(errors="replace"):
        raise Missing("`web` runs, but never said `connected to db`", hints=(
            "web says so once it has reached db",
            "`docker compose logs web` shows what it said",
            "keep web's command as the cell above wrote it, and bring the app up again"))
    return "web started once db was healthy, and reached it"
