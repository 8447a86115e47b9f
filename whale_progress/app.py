"""The `whale-progress` hub service: a tornado application behind JupyterHub's OAuth.

Routes, below the service's prefix (/services/whale-progress/):

    GET  ./                     My progress (any signed-in learner; instructors get a
                                link to the dashboard)
    GET  ./dashboard            every learner by every exercise, last activity, engine
                                health (instructors and admins; 403 for others)
    GET  ./dashboard.csv        the same results, one row per learner and exercise
    GET  ./api/progress         the caller's own progress (JSON): each exercise, and each
                                lesson not started, in progress or done (lessons.py)
    GET  ./api/progress/NAME    NAME's progress (NAME themselves, instructors, admins)
    POST ./api/results          {exercise, passed, detail[, lesson]}: a learner's server
                                reports a check it ran (token only, never a cookie)
    GET  ./oauth_callback       JupyterHub's OAuth

Started by the hub as a managed service (whale_site/jupyterhub_config.py), with the
hub's environment for services (JUPYTERHUB_SERVICE_URL, JUPYTERHUB_API_TOKEN, …).
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import io
import json
import logging
import os
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlencode, urlparse

import docker
from jupyterhub.services.auth import (
    HubAuth,
    HubAuthenticated,
    HubOAuth,
    HubOAuthCallbackHandler,
    HubOAuthenticated,
)
from jupyterhub.utils import url_path_join
from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.ioloop import IOLoop

from whale_core.layout import engines_dir, hub_dir
from whale_lessons.check import CHECKS

from . import SERVICE_NAME, access
from .engines import HOSTED, NONE, OWN, EngineFinder, LearnerEngine, health, verify
from .lessons import lesson_states
from .store import ProgressStore, Result

log = logging.getLogger(SERVICE_NAME)
TEMPLATES = Path(__file__).resolve().parent / "templates"
#: How long a dashboard may show an engine's health before pinging it again.
HEALTH_MAX_AGE = 5.0
#: The ping of one engine for the dashboard, and the most it waits for all of them.
PING_TIMEOUT = 2.0


def exercises() -> list:
    """Every exercise, in curriculum order (whale_lessons.check is the one registry)."""
    return sorted(CHECKS.values(), key=lambda e: e.lesson)


class Progress:
    """What the handlers share: the store, the engines, the checks in flight."""

    def __init__(self, store: ProgressStore, finder: EngineFinder, hub_api: str, token: str):
        self.store = store
        self.finder = finder
        self.hub_api = hub_api
        self._token = token
        self.pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="whale-progress")
        self.checking: dict[tuple[str, str], asyncio.Task] = {}
        self._again: set[tuple[str, str]] = set()
        self._health: tuple[float, dict[str, tuple[str, str]]] = (0.0, {})

    async def blocking(self, func, *args):
        return await IOLoop.current().run_in_executor(self.pool, func, *args)

    # -- results ------------------------------------------------------------------------
    async def receive(self, username: str, exercise: str, passed: bool, detail: str) -> str:
        """A learner's server reported a check: record it. Returns how it counts."""
        engine = await self.blocking(self.finder.engine_of, username)
        lesson = CHECKS[exercise].lesson
        if engine.kind != HOSTED:
            # No credentials of the hub's own for this engine: the learner's word, marked so.
            self.store.record(username, exercise, lesson, passed=passed, verified=False,
                              detail=detail)
            return "self-reported"
        key = (username, exercise)
        if key in self.checking:
            self._again.add(key)  # the engine may have changed since that check began
        else:
            self.checking[key] = asyncio.ensure_future(self._verify(key, engine))
        return "verifying"

    async def _verify(self, key: tuple[str, str], engine: LearnerEngine) -> None:
        username, exercise = key
        try:
            while True:
                done, found = await self.blocking(verify, engine, exercise)
                self.store.record(username, exercise, CHECKS[exercise].lesson, passed=done,
                                  verified=True, detail=found)
                log.info("%s: %s %s (checked by the hub)", username, exercise,
                         "done" if done else "not yet")
                if key not in self._again:
                    return
                self._again.discard(key)
                engine = await self.blocking(self.finder.engine_of, username)
        except Exception:
            log.exception("%s: checking %s failed", username, exercise)
        finally:
            self.checking.pop(key, None)

    def progress_of(self, username: str, engine: LearnerEngine | None = None) -> dict:
        found = {r.exercise: r for r in self.store.of(username)}
        items = []
        for ex in exercises():
            result = found.get(ex.name)
            item = result.as_json() if result else {"exercise": ex.name, "lesson": ex.lesson,
                                                    "status": None, "verified": False,
                                                    "self_reported": False}
            item.update(summary=ex.summary, checking=(username, ex.name) in self.checking)
            items.append(item)
        out = {"user": username, "exercises": items, "lessons": lesson_states(items)}
        if engine is not None:
            out["engine"] = engine.kind
        return out

    # -- the dashboard ---------------------------------------------------------------------
    async def hub_users(self) -> list[dict]:
        """Every user of the hub (name, last_activity), page by page."""
        client = AsyncHTTPClient()
        users, offset = [], 0
        while True:
            url = f"{self.hub_api}/users?{urlencode({'offset': offset, 'limit': 200})}"
            answer = await client.fetch(HTTPRequest(url, headers={
                "Authorization": f"token {self._token}",
                "Accept": "application/jupyterhub-pagination+json"}, request_timeout=10))
            page = json.loads(answer.body)
            users += page["items"]
            following = (page.get("_pagination") or {}).get("next")
            if not following or not page["items"]:
                return users
            offset = following["offset"]

    async def healths(self, names: list[str]) -> dict[str, tuple[str, str]]:
        """name -> (engine kind, health line), every engine pinged at once, each for at
        most PING_TIMEOUT seconds; kept HEALTH_MAX_AGE seconds."""
        when, cached = self._health
        if time.monotonic() - when < HEALTH_MAX_AGE and set(names) <= set(cached):
            return cached

        def engines() -> dict[str, LearnerEngine]:
            with contextlib.closing(docker.from_env(timeout=10)) as host:
                containers = self.finder.engines(host)
                return {n: self.finder.engine_of(n, host, containers) for n in names}

        found = await self.blocking(engines)

        async def one(name: str) -> tuple[str, str]:
            engine = found[name]
            try:
                line = await asyncio.wait_for(
                    self.blocking(health, engine, PING_TIMEOUT), PING_TIMEOUT + 1)
            except asyncio.TimeoutError:
                line = f"down: no answer within {PING_TIMEOUT:g} s"
            return engine.kind, line

        lines = await asyncio.gather(*(one(n) for n in names))
        result = dict(zip(names, lines, strict=True))
        self._health = (time.monotonic(), result)
        return result

    async def board(self) -> dict:
        users = {u["name"]: u for u in await self.hub_users() if u.get("kind", "user") == "user"}
        results: dict[str, dict[str, Result]] = defaultdict(dict)
        for r in self.store.everyone():
            results[r.username][r.exercise] = r
        names = sorted(set(users) | set(results))
        engines = await self.healths(names)
        rows = [{"name": n, "last_activity": (users.get(n) or {}).get("last_activity"),
                 "engine": engines[n], "results": results.get(n, {})} for n in names]
        return {"exercises": exercises(), "rows": rows, "checking": set(self.checking)}


# -- handlers ------------------------------------------------------------------------------
class BaseHandler(web.RequestHandler):
    """Errors are one sentence: JSON under api/, a small page elsewhere."""

    def initialize(self, progress: Progress, hub_auth: HubAuth):
        self.progress = progress
        self.hub_auth = hub_auth

    @property
    def is_api(self) -> bool:
        return "/api/" in self.request.path

    def write_error(self, status_code: int, **kwargs) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        message = getattr(exc, "log_message", None) or {
            403: "Your sign-in or token does not give access to whale-progress.",
            404: "There is no such page here."}.get(status_code, self._reason)
        if self.is_api:
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps({"status": status_code, "message": message}))
        else:
            self.finish(self.render_string("error.html", status=status_code, message=message,
                                           prefix=self.settings["prefix"]))

    def me(self) -> dict:
        model = self.current_user
        if not model:
            raise web.HTTPError(403, access.NOT_SIGNED_IN)
        return model


class PageHandler(HubOAuthenticated, BaseHandler):
    """A page: browsers sign in through the hub's OAuth."""


class MyProgressPage(PageHandler):
    @web.authenticated
    async def get(self):
        me = self.me()
        engine = await self.progress.blocking(self.progress.finder.engine_of, me["name"])
        self.render("mine.html", progress=self.progress.progress_of(me["name"], engine),
                    instructor=access.is_instructor(me), prefix=self.settings["prefix"],
                    HOSTED=HOSTED, OWN=OWN, NONE=NONE)


class DashboardPage(PageHandler):
    @web.authenticated
    async def get(self):
        if not access.is_instructor(self.me()):
            raise web.HTTPError(403, access.NOT_INSTRUCTOR)
        board = await self.progress.board()
        page = "board.html" if self.get_argument("fragment", "") else "dashboard.html"
        # The page's own requests (its refresh) carry this: JupyterHub's OAuth takes a
        # cookie from a script's request only with the xsrf token beside it.
        xsrf = self.xsrf_token
        self.render(page, prefix=self.settings["prefix"],
                    xsrf=xsrf.decode() if isinstance(xsrf, bytes) else xsrf, **board)


def _cell(text) -> str:
    """A CSV cell a spreadsheet will not run as a formula (a learner writes `detail`)."""
    text = "" if text is None else str(text)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


class DashboardCSV(PageHandler):
    @web.authenticated
    async def get(self):
        if not access.is_instructor(self.me()):
            raise web.HTTPError(403, access.NOT_INSTRUCTOR)
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["learner", "lesson", "exercise", "status", "passed_at", "last_checked",
                         "last_result", "checked_by", "attempts", "detail"])
        for r in self.progress.store.everyone():
            writer.writerow([_cell(v) for v in (
                r.username, r.lesson, r.exercise, r.status,
                r.passed_at.isoformat() if r.passed_at else "", r.last_checked.isoformat(),
                "passed" if r.last_passed else "not yet", r.last_source, r.attempts,
                r.last_detail)])
        self.set_header("Content-Type", "text/csv; charset=utf-8")
        self.set_header("Content-Disposition", 'attachment; filename="whale-progress.csv"')
        self.finish(out.getvalue())


class ProgressAPI(HubOAuthenticated, BaseHandler):
    """GET api/progress[/NAME]: a learner's progress, as JSON."""

    def get_login_url(self):
        raise web.HTTPError(403, access.NOT_SIGNED_IN)  # an API never redirects

    async def get(self, learner: str | None = None):
        me = self.me()
        learner = learner or me["name"]
        if not access.may_read(me, learner):
            raise web.HTTPError(403, f"You may read only your own progress, not {learner}'s: "
                                + access.NOT_INSTRUCTOR)
        engine = await self.progress.blocking(self.progress.finder.engine_of, learner)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(self.progress.progress_of(learner, engine)))


class ResultsAPI(HubAuthenticated, BaseHandler):
    """POST api/results: a learner's server reports a check. Token only (a plain HubAuth
    reads no cookie), so no other site can post in a signed-in learner's name."""

    def get_login_url(self):
        raise web.HTTPError(403, access.NOT_SIGNED_IN)

    async def post(self):
        me = self.me()
        if not access.may_report(me):
            raise web.HTTPError(403, access.NOT_A_LEARNER)
        try:
            body = json.loads(self.request.body or b"{}")
        except ValueError:
            raise web.HTTPError(400, "The body is not JSON.") from None
        exercise = body.get("exercise") if isinstance(body, dict) else None
        if exercise not in CHECKS:
            raise web.HTTPError(400, f"There is no exercise called {exercise!r}; there are: "
                                + ", ".join(CHECKS) + ".")
        passed, detail = body.get("passed"), body.get("detail", "")
        if not isinstance(passed, bool) or not isinstance(detail, str):
            raise web.HTTPError(400, "`passed` is true or false, and `detail` is text.")
        counts = await self.progress.receive(me["name"], exercise, passed, detail[:500])
        self.set_status(202)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"exercise": exercise, "lesson": CHECKS[exercise].lesson,
                                "recorded_as": counts}))


class OAuthCallback(HubOAuthCallbackHandler):
    def initialize(self, hub_auth: HubOAuth):
        self.hub_auth = hub_auth


def make_app(progress: Progress, prefix: str) -> web.Application:
    oauth = HubOAuth(cache_max_age=60)
    token_only = HubAuth(cache_max_age=60)
    pages = {"progress": progress, "hub_auth": oauth}

    def route(path: str) -> str:
        return url_path_join(prefix, path)
    return web.Application([
        (route("oauth_callback"), OAuthCallback, {"hub_auth": oauth}),
        (route("api/results"), ResultsAPI, {"progress": progress, "hub_auth": token_only}),
        (route("api/progress"), ProgressAPI, pages),
        (route("api/progress/([^/]+)"), ProgressAPI, pages),
        (route("dashboard.csv"), DashboardCSV, pages),
        (route("dashboard"), DashboardPage, pages),
        (prefix.rstrip("/") + "/?", MyProgressPage, pages),
    ], template_path=str(TEMPLATES), prefix=prefix, cookie_secret=os.urandom(32))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m whale_progress",
                                     description="The hub's lesson progress service.")
    parser.add_argument("--state-dir", default=str(engines_dir()),
                        help="the spawner's state_dir (learners' engines and bundles)")
    parser.add_argument("--db-url", default=f"sqlite:///{hub_dir() / 'whale-progress.sqlite'}",
                        help="SQLAlchemy URL of the progress database (e.g. postgresql://…)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO,
                        format="[%(levelname)1.1s %(asctime)s %(name)s] %(message)s")
    url = urlparse(os.environ["JUPYTERHUB_SERVICE_URL"])
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", f"/services/{SERVICE_NAME}/")
    store = ProgressStore(args.db_url)
    moved = store.renumber({e.name: e.lesson for e in exercises()})
    if moved:
        log.info("whale-progress: %d results filed under their exercises' lessons now", moved)
    progress = Progress(store, EngineFinder(args.state_dir), os.environ["JUPYTERHUB_API_URL"],
                        os.environ["JUPYTERHUB_API_TOKEN"])
    app = make_app(progress, prefix)
    app.listen(url.port, address=os.environ.get("WHALE_PROGRESS_BIND_IP") or url.hostname)
    log.info("whale-progress at %s%s, database %s", url.geturl().rstrip("/"), prefix,
             store.engine.url.render_as_string(hide_password=True))
    try:
        IOLoop.current().start()
    except KeyboardInterrupt:
        pass
    finally:
        store.close()
    return 0
