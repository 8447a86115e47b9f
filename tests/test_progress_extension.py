"""The server extension's `whale/api/progress` without a hub (jupyter_server's own test
server, pytest-jupyter): who may call it, which notebooks count as lessons, what it says
when no progress service is configured, and that the file browser's polling of it is not
activity. Through a real hub and service: tests/test_progress.py."""
from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import nbformat
import pytest
from extension_fixtures import server_config
from tornado.httpclient import HTTPClientError

from whale_extension.progress import NOT_IN_A_HUB

pytest_plugins = ["pytest_jupyter.jupyter_server"]

LESSONS = Path(__file__).resolve().parent.parent / "lessons"


@pytest.fixture
def jp_server_config(tmp_path):
    return server_config(tmp_path / "store")


@pytest.fixture(autouse=True)
def no_hub(monkeypatch):
    monkeypatch.delenv("WHALE_PROGRESS_URL", raising=False)
    monkeypatch.delenv("JUPYTERHUB_API_TOKEN", raising=False)


@pytest.fixture
def lessons(jp_root_dir):
    """The real lessons, and notebooks that only look like lessons."""
    shutil.copytree(LESSONS, jp_root_dir / "lessons", ignore=shutil.ignore_patterns("images"))
    notes = nbformat.v4.new_notebook()  # named like a lesson, without lesson metadata
    nbformat.write(notes, jp_root_dir / "lessons" / "09-my-notes.ipynb")
    (jp_root_dir / "lessons" / "10-broken.ipynb").write_text("{not json")
    return jp_root_dir / "lessons"


async def test_progress_needs_a_signed_in_caller(jp_fetch, lessons):
    with pytest.raises(HTTPClientError) as caught:
        await jp_fetch("whale", "api", "progress", params={"path": "lessons"},
                       headers={"Authorization": ""})
    assert caught.value.code == 403
    with pytest.raises(HTTPClientError) as caught:
        await jp_fetch("whale", "api", "progress", headers={"Authorization": "token wrong"})
    assert caught.value.code == 403


async def test_without_a_hub_it_says_so_and_still_lists_the_lessons(jp_fetch, jp_serverapp,
                                                                    lessons):
    settings = jp_serverapp.web_app.settings
    long_ago = dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)
    settings["api_last_activity"] = long_ago
    with pytest.raises(HTTPClientError) as caught:
        await jp_fetch("whale", "api", "progress", params={"path": "lessons"})
    assert caught.value.code == 503
    answer = json.loads(caught.value.response.body)
    assert answer["message"] == NOT_IN_A_HUB
    # Lessons by their metadata, in name order; not a notebook merely named like one.
    assert [(f["path"], f["lesson"]) for f in answer["files"]] == [
        (f"lessons/{p.name}", int(p.name[:2])) for p in sorted(LESSONS.glob("[0-9][0-9]-*.ipynb"))]
    assert answer["files"][0]["title"] == nbformat.read(
        LESSONS / "01-first-container.ipynb", as_version=4).metadata["howtowhale"]["title"]
    # The file browser asks every few seconds: that is not the learner doing something.
    assert settings["api_last_activity"] == long_ago
    # Another directory has no lessons; a path outside the root is not listed.
    for path in ("", "lessons/images", "../..", "nowhere"):
        with pytest.raises(HTTPClientError) as caught:
            await jp_fetch("whale", "api", "progress", params={"path": path})
        assert json.loads(caught.value.response.body)["files"] == [], path
