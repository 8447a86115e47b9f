"""``GET whale/api/progress``: the learner's own lesson progress, for the file browser.

The hub's `whale-progress` service (whale_progress) keeps each learner's results. The
browser does not ask it directly: the service's OAuth session is a cookie of its own
path, that a page of this server cannot send without a sign-in round trip and the
service's xsrf token, and no token of the learner's is ever handed to a page's
scripts. This server asks instead, with its own token (``JUPYTERHUB_API_TOKEN``, whose
`Spawner.server_token_scopes` reach the service), for ``api/progress``: the progress of
that token's owner, this server's owner. Nothing from the request goes to the service:
a caller of this endpoint (authorized on this server, as for every Jupyter API) reads
only this server's owner's progress.

With `path`, the answer also says which notebooks in that directory are lessons (a
``howtowhale`` entry in their metadata, as whale_lessons writes it) and their lesson
numbers, read through the contents manager (so its root and hidden-file rules hold).
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import time

from jupyter_server.auth.decorator import authorized
from jupyter_server.utils import ensure_async, url_path_join
from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from whale_core.layout import PROGRESS_URL_VARIABLE

from .api_handlers import WhaleAPIHandler

#: A lesson notebook's name: lessons/NN-slug.ipynb (whale_lessons.runner).
LESSON_NAME = re.compile(r"^\d+-[^/]+\.ipynb$")
#: Seconds an answer of the service is reused (the file browser polls; several tabs).
CACHE_SECONDS = 2.0
#: Seconds to wait for the service.
TIMEOUT = 5.0

NOT_IN_A_HUB = ("Lesson progress is kept by the hub: this server was not started by a "
                f"hub with the progress service (no ${PROGRESS_URL_VARIABLE}).")


class ProgressUnavailable(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


class ProgressClient:
    """Asks the service for this server's owner's progress, with this server's token."""

    def __init__(self, url: str | None = None, token: str | None = None):
        self.url = url if url is not None else os.environ.get(PROGRESS_URL_VARIABLE, "")
        self.token = token if token is not None else os.environ.get("JUPYTERHUB_API_TOKEN", "")
        self._cached: tuple[float, dict] | None = None
        self.lessons: dict[str, tuple[str, dict | None]] = {}  # path -> (modified, meta)

    async def mine(self) -> dict:
        if not self.url.startswith(("http://", "https://")) or not self.token:
            raise ProgressUnavailable(503, NOT_IN_A_HUB)
        if self._cached and time.monotonic() - self._cached[0] < CACHE_SECONDS:
            return self._cached[1]
        request = HTTPRequest(url_path_join(self.url, "api/progress"), request_timeout=TIMEOUT,
                              headers={"Authorization": f"token {self.token}",
                                       "Accept": "application/json"})
        try:
            # tornado's client reads no proxy from the environment: the service is the hub's.
            answer = await AsyncHTTPClient().fetch(request)
        except HTTPClientError as exc:
            why = ""
            if exc.response is not None and exc.response.body:
                with contextlib.suppress(ValueError, AttributeError):
                    why = json.loads(exc.response.body).get("message", "")
            raise ProgressUnavailable(502, f"The hub's progress service answered {exc.code}"
                                      + (f": {why}" if why else ".")) from None
        except Exception as exc:  # refused, unreachable, timed out
            raise ProgressUnavailable(502, f"The hub's progress service did not answer ({exc}).") \
                from None
        progress = json.loads(answer.body)
        self._cached = (time.monotonic(), progress)
        return progress

    async def lesson_files(self, contents, directory: str) -> list[dict]:
        """The lesson notebooks in `directory`: path, name, lesson number and title."""
        try:
            listing = await ensure_async(contents.get(directory, content=True))
        except web.HTTPError:
            return []
        if listing.get("type") != "directory":
            return []
        found = []
        for child in listing.get("content") or ():
            if child.get("type") != "notebook" or not LESSON_NAME.match(child["name"]):
                continue
            meta = await self._lesson_meta(contents, child)
            if meta and isinstance(meta.get("lesson"), int):
                found.append({"path": child["path"], "name": child["name"],
                              "lesson": meta["lesson"], "title": str(meta.get("title", ""))})
        return sorted(found, key=lambda f: f["name"])

    async def _lesson_meta(self, contents, child: dict) -> dict | None:
        modified = str(child.get("last_modified"))
        known = self.lessons.get(child["path"])
        if known and known[0] == modified:
            return known[1]
        try:
            model = await ensure_async(contents.get(child["path"], content=True,
                                                    type="notebook"))
            meta = dict(model["content"]["metadata"].get("howtowhale") or {})
        except Exception:  # unreadable, or not a notebook after all: not a lesson
            meta = None
        self.lessons[child["path"]] = (modified, meta)
        return meta


class ProgressHandler(WhaleAPIHandler):
    """``GET whale/api/progress[?path=DIR]``: this server's owner's lessons, each not
    started, in progress or done, and the lesson notebooks in DIR."""

    SUPPORTED_METHODS = ("GET",)
    # The file browser polls this: it must not keep an idle server alive.
    _track_activity = False

    @web.authenticated
    @authorized
    async def get(self):
        client: ProgressClient = self.extensionapp.progress
        files = await client.lesson_files(self.contents_manager,
                                          self.get_argument("path", "").strip("/"))
        try:
            progress = await client.mine()
        except ProgressUnavailable as exc:
            self.write_json({"message": exc.message, "files": files}, exc.status)
            return
        self.write_json({"user": progress.get("user"), "engine": progress.get("engine"),
                         "lessons": progress.get("lessons", []), "files": files})
