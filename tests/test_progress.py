"""Lesson progress (whale_progress): whale-check reports each check to the hub's
`whale-progress` service; for a hosted engine the service checks again itself and records
its own finding as verified, for a learner's own engine it records the learner's as
self-reported; learners see their own progress, instructors see everyone.

The first part needs no Docker (the database, who may see what, whale-check's report);
the rest runs a real hub, real learners' servers and engines, and chromium."""
from __future__ import annotations

import datetime as dt
import http.server
import json
import threading
from pathlib import Path

import nbformat
import pytest

from whale_lessons import check
from whale_progress import INSTRUCTORS_GROUP, READ_SCOPE, access
from whale_progress.app import _cell
from whale_progress.store import ProgressStore

LESSONS = sorted((Path(__file__).resolve().parent.parent / "lessons").glob("[0-9][0-9]-*.ipynb"))


# -- without Docker --------------------------------------------------------------------------
@pytest.fixture
def store(tmp_path):
    s = ProgressStore(f"sqlite:///{tmp_path / 'progress.sqlite'}")
    yield s
    s.close()


def at(minute: int) -> dt.datetime:
    return dt.datetime(2025, 5, 1, 9, minute, tzinfo=dt.timezone.utc)


def test_a_result_only_goes_up_and_keeps_the_last_attempt(store):
    r = store.record("ann", "first-container", 1, passed=False, verified=True,
                     detail="there is no container named `my-first`", now=at(0))
    assert (r.status, r.attempts, r.passed_at) == ("not-yet", 1, None)
    r = store.record("ann", "first-container", 1, passed=True, verified=True,
                     detail="my-first ran", now=at(1))
    assert (r.status, r.verified, r.passed_at, r.last_source) == ("verified", True, at(1), "hub")
    # The lesson's cleanup removed the container: a later check fails, the pass stays.
    r = store.record("ann", "first-container", 1, passed=False, verified=True,
                     detail="there is no container named `my-first`", now=at(2))
    assert (r.status, r.passed_at, r.last_passed, r.attempts) == ("verified", at(1), False, 3)
    assert r.last_detail == "there is no container named `my-first`"
    assert r.last_checked == at(2)
    # Reported later from an own engine: still verified.
    r = store.record("ann", "first-container", 1, passed=True, verified=False, detail="x", now=at(3))
    assert (r.status, r.last_source) == ("verified", "learner")


def test_self_reported_is_its_own_status_and_a_hub_check_upgrades_it(store):
    r = store.record("bob", "lifecycle", 2, passed=True, verified=False, detail="ok", now=at(0))
    assert (r.status, r.self_reported, r.verified) == ("self-reported", True, False)
    r = store.record("bob", "lifecycle", 2, passed=True, verified=True, detail="ok", now=at(5))
    assert (r.status, r.passed_at) == ("verified", at(5))
    store.record("ann", "ports", 3, passed=False, verified=False, detail="no", now=at(1))
    store.record("ann", "first-container", 1, passed=True, verified=True, detail="ok", now=at(1))
    assert [(r.username, r.exercise) for r in store.everyone()] == [
        ("ann", "first-container"), ("ann", "ports"), ("bob", "lifecycle")]
    assert [r.exercise for r in store.of("ann")] == ["first-container", "ports"]
    assert store.of("nobody") == []
    assert store.of("ann")[0].as_json()["passed_at"] == "2025-05-01T09:01:00+00:00"


def test_the_database_is_kept_across_restarts(tmp_path):
    url = f"sqlite:///{tmp_path / 'p.sqlite'}"
    first = ProgressStore(url)
    first.record("ann", "volumes", 5, passed=True, verified=True, detail="ok")
    first.close()
    again = ProgressStore(url)
    assert [r.status for r in again.of("ann")] == ["verified"]
    again.close()


def learner(name="ann", **kw) -> dict:
    return {"kind": "user", "name": name, "admin": False, "groups": [],
            "scopes": ["access:services!service=whale-progress"], **kw}


def test_who_is_an_instructor():
    assert not access.is_instructor(learner())
    assert access.is_instructor(learner(admin=True))
    assert access.is_instructor(learner(groups=[INSTRUCTORS_GROUP]))
    assert access.is_instructor(learner(scopes=[READ_SCOPE]))
    # The read scope for one learner is not the dashboard.
    assert not access.is_instructor(learner(scopes=[f"{READ_SCOPE}!user=bob"]))
    assert not access.is_instructor(learner(groups=["instructors-not"]))
    assert not access.is_instructor({"kind": "service", "name": "x", "scopes": [READ_SCOPE]})
    assert not access.is_instructor(None)


def test_who_may_read_whose_progress():
    assert access.may_read(learner("ann"), "ann")
    assert not access.may_read(learner("ann"), "bob")
    assert not access.may_read(learner("ann"), "ann2")
    assert access.may_read(learner("ann", groups=[INSTRUCTORS_GROUP]), "bob")
    assert access.may_read(learner("ann", scopes=[f"{READ_SCOPE}!user=bob"]), "bob")
    assert not access.may_read(learner("ann", scopes=[f"{READ_SCOPE}!user=bob"]), "cy")
    assert not access.may_read({"kind": "service", "name": "ann", "scopes": []}, "ann")
    assert access.may_report(learner())
    assert not access.may_report({"kind": "service", "name": "whale-admin", "scopes": []})


def test_csv_cells_never_run_as_formulas():
    assert _cell("=HYPERLINK(\"http://x\")") == "'=HYPERLINK(\"http://x\")"
    assert _cell("-1+2") == "'-1+2"
    assert _cell("@SUM(A1)") == "'@SUM(A1)"
    assert _cell("my-first ran") == "my-first ran"
    assert _cell(None) == ""
    assert _cell(3) == "3"


def test_each_lesson_checks_only_its_own_exercises():
    """The check registry says which lesson an exercise is in; each lesson's check cells
    name exercises of that lesson, and every exercise is checked in its lesson."""
    seen = set()
    for path in LESSONS:
        nb = nbformat.read(path, as_version=4)
        number = nb.metadata["howtowhale"]["lesson"]
        for cell in nb.cells:
            if cell.cell_type == "code" and "check" in cell.metadata.get("tags", []):
                name = cell.source.split()[1]
                assert check.CHECKS[name].lesson == number, (path.name, name)
                seen.add(name)
    assert seen == set(check.CHECKS)


class _Recorder(http.server.BaseHTTPRequestHandler):
    seen: list = []  # noqa: RUF012 - one list per test, reset there

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.seen.append((self.path, self.headers["Authorization"], json.loads(body)))
        self.send_response(202)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


def test_whale_check_reports_with_the_servers_token(monkeypatch, capsys):
    _Recorder.seen = []
    server = http.server.HTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("WHALE_PROGRESS_URL",
                           f"http://127.0.0.1:{server.server_port}/services/whale-progress/")
        monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "secret-token")
        assert check.report(check.CHECKS["ports"], False, "`site` is not running")
    finally:
        server.shutdown()
        server.server_close()
    assert _Recorder.seen == [("/services/whale-progress/api/results", "token secret-token",
                               {"lesson": 3, "exercise": "ports", "passed": False,
                                "detail": "`site` is not running"})]
    assert capsys.readouterr().err == ""


def test_whale_check_says_one_quiet_line_when_the_service_is_away(monkeypatch, capsys):
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    monkeypatch.setenv("WHALE_PROGRESS_URL", f"http://127.0.0.1:{port}/services/whale-progress/")
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "secret-token")
    assert not check.report(check.CHECKS["ports"], True, "fine", timeout=2)
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err.count("\n") == 1
    assert out.err.startswith("(whale-check: your teacher's progress page did not get this result:")
    assert "secret-token" not in out.err
    # Outside a hub nothing is sent and nothing is said.
    monkeypatch.delenv("WHALE_PROGRESS_URL")
    assert not check.report(check.CHECKS["ports"], True, "fine")
    assert capsys.readouterr().err == ""
