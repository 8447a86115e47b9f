"""Lesson progress (whale_progress): whale-check reports each check to the hub's
`whale-progress` service; for a hosted engine the service checks again itself and records
its own finding as verified, for a learner's own engine it records the learner's as
self-reported; learners see their own progress, instructors see everyone.

The first part needs no Docker (the database, who may see what, whale-check's report);
the rest runs a real hub, real learners' servers and engines, and chromium."""
from __future__ import annotations

import datetime as dt
import html
import http.server
import io
import json
import os
import threading
import time
import zipfile
from pathlib import Path

import nbformat
import pytest
import requests
from browser import AVAILABLE as BROWSER
from browser import MISSING as BROWSER_MISSING

from whale_lessons import check
from whale_progress import INSTRUCTORS_GROUP, READ_SCOPE, access
from whale_progress.app import _cell
from whale_progress.lessons import lesson_states
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


def test_results_kept_under_an_old_numbering_move_to_the_lessons_of_now(store):
    """Volumes was lesson 5 before the curriculum grew: its results follow it to 6."""
    store.record("ann", "volumes", 5, passed=True, verified=True, detail="ok", now=at(0))
    store.record("ann", "ports", 3, passed=False, verified=False, detail="no", now=at(1))
    lessons = {e.name: e.lesson for e in check.CHECKS.values()}
    assert lessons["volumes"] == 6
    assert store.renumber(lessons) == 1
    assert [(r.exercise, r.lesson, r.status) for r in store.of("ann")] == [
        ("ports", 3, "not-yet"), ("volumes", 6, "verified")]
    assert store.renumber(lessons) == 0


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


def test_a_lesson_is_not_started_in_progress_or_done():
    """From the exercises' results: nothing recorded, something recorded (a pass or not
    yet), every exercise passed; a done lesson is verified only if the hub checked all."""
    def ex(lesson, name, status):
        return {"lesson": lesson, "exercise": name, "status": status, "summary": name}

    states = lesson_states([
        ex(1, "a", "verified"), ex(1, "b", "verified"),
        ex(2, "c", "verified"), ex(2, "d", None),
        ex(3, "e", "not-yet"),
        ex(4, "f", None),
        ex(5, "g", "verified"), ex(5, "h", "self-reported"),
    ])
    assert [(s["lesson"], s["status"], s["passed"], s["verified"], s["self_reported"])
            for s in states] == [
        (1, "done", 2, True, False),
        (2, "in-progress", 1, False, False),
        (3, "in-progress", 0, False, False),
        (4, "not-started", 0, False, False),
        (5, "done", 2, False, True),
    ]
    assert states[1]["exercises"] == [{"exercise": "c", "status": "verified", "summary": "c"},
                                      {"exercise": "d", "status": None, "summary": "d"}]


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


# -- through a real hub ----------------------------------------------------------------------
hub_test = pytest.mark.hub
SERVICE = "/services/whale-progress"


def lesson_cells(number: int, tag: str) -> list[str]:
    """The sources of lesson `number`'s code cells tagged `tag` (solution, check)."""
    nb = nbformat.read(LESSONS[number - 1], as_version=4)
    return [c.source for c in nb.cells if c.cell_type == "code" and tag in c.metadata.get("tags", [])]


@pytest.fixture(scope="module")
def site(tmp_path_factory, host_docker, lesson_mirror):
    """A hub as `whale up` runs it, with the progress service's port open to learners in
    the host firewall (as `whale up` opens it), and lessons' images from the mirror."""
    from hub_fixtures import Hub, ensure_images

    ensure_images()
    hub = Hub(tmp_path_factory.mktemp("progress-hub"),
              extra_env={"WHALE_REGISTRY_MIRROR": lesson_mirror.url})
    try:
        deadline = time.monotonic() + 60
        while hub.session.get(f"{hub.url}{SERVICE}/api/progress", timeout=5).status_code != 403:
            assert time.monotonic() < deadline, "whale-progress never answered:\n" + hub.log_tail()
            time.sleep(0.2)
        yield hub
    finally:
        hub.close()


def token_for(hub, name: str) -> str:
    """An API token of the learner's own that reaches the service (as their server's)."""
    r = hub.api("POST", f"/users/{name}/tokens",
                json={"scopes": ["access:services!service=whale-progress"], "note": "test"})
    assert r.status_code == 201, r.text
    return r.json()["token"]


def service(hub, path: str, token: str | None = None, **kw) -> requests.Response:
    headers = {"Authorization": f"token {token}"} if token else {}
    return requests.get(f"{hub.url}{SERVICE}{path}", headers=headers, timeout=30,
                        allow_redirects=False, **kw)


def wait_result(hub, token: str, exercise: str, timeout: float = 90) -> dict:
    """The learner's result for `exercise` once recorded and no check of it is running."""
    deadline = time.monotonic() + timeout
    while True:
        r = service(hub, "/api/progress", token)
        assert r.status_code == 200, r.text
        item = next(i for i in r.json()["exercises"] if i["exercise"] == exercise)
        if item["status"] is not None and not item["checking"]:
            return item
        assert time.monotonic() < deadline, (item, hub.log_tail())
        time.sleep(0.3)


def kernel_curl(args: str) -> str:
    """A curl of the service from the learner's own kernel, with their server's token."""
    return ('curl -s -w "\\n%{http_code}" -H "Authorization: token $JUPYTERHUB_API_TOKEN" '
            f'{args}; echo')


@hub_test
def test_a_hosted_learners_check_is_verified_by_the_hub(site):
    ann = site.user("ann")
    site.start(ann)
    # What a learner's server is given: its own name and token, and the service's URL.
    env = site.run(ann, 'echo "$JUPYTERHUB_USER|$WHALE_PROGRESS_URL|${JUPYTERHUB_API_TOKEN:+set}"')
    assert env.strip() == (f"{ann}|http://{site.gateway}:{site.progress_port}"
                           f"/services/whale-progress/|set")
    (solution,) = lesson_cells(1, "solution")
    check_cell = lesson_cells(1, "check")[-1]
    out = site.run(ann, f"{solution}\n{check_cell}", timeout=180)
    assert "✔ Well done: my-first ran from busybox and said: I ran a container." in out
    assert "whale-check:" not in out  # the report reached the service: nothing to say
    token = token_for(site, ann)
    item = wait_result(site, token, "first-container")
    assert item["status"] == "verified"
    assert item["verified"] is True
    assert item["self_reported"] is False
    assert item["lesson"] == 1
    assert item["last_source"] == "hub"
    assert item["last_detail"] == "my-first ran from busybox and said: I ran a container"
    # The learner's server token reads the same, from inside their notebook.
    mine = site.run(ann, kernel_curl('"${WHALE_PROGRESS_URL}api/progress"'))
    body, status = mine.strip().rsplit("\n", 1)
    assert status == "200"
    answer = json.loads(body)
    assert answer["user"] == ann
    assert answer["engine"] == "hosted"
    assert [i["status"] for i in answer["exercises"] if i["exercise"] == "first-container"] == \
        ["verified"]


@hub_test
def test_a_faked_pass_is_not_verified(site):
    """The learner posts `passed: true` for lesson 2's exercise, not done, with their own
    server's token: the hub checks their engine itself and records what it found."""
    ann = site.user("ann")
    fake = json.dumps({"lesson": 2, "exercise": "lifecycle", "passed": True,
                       "detail": "ticker runs in the background and comes back unless you stop it"})
    out = site.run(ann, kernel_curl(f"-X POST -H 'Content-Type: application/json' -d '{fake}' "
                                    '"${WHALE_PROGRESS_URL}api/results"'))
    body, status = out.strip().rsplit("\n", 1)
    assert status == "202"
    assert json.loads(body) == {"exercise": "lifecycle", "lesson": 2, "recorded_as": "verifying"}
    item = wait_result(site, token_for(site, ann), "lifecycle")
    assert item["status"] == "not-yet"
    assert item["verified"] is False
    assert item["last_source"] == "hub"
    assert item["last_detail"] == "there is no container named `ticker`"
    # Nor does a made-up exercise or a passed that is not true or false get in.
    out = site.run(ann, kernel_curl("-X POST -d '{\"exercise\": \"everything\", \"passed\": true}' "
                                    '"${WHALE_PROGRESS_URL}api/results"'))
    body, status = out.strip().rsplit("\n", 1)
    assert status == "400"
    assert json.loads(body)["message"].startswith("There is no exercise called 'everything'")


@hub_test
def test_a_learner_is_refused_the_dashboard_and_others_progress(site):
    ann, bea = site.user("ann"), site.user("bea")
    token = token_for(site, ann)
    other = service(site, f"/api/progress/{bea}", token)
    assert other.status_code == 403
    assert other.json()["message"] == (
        f"You may read only your own progress, not {bea}'s: Only instructors (members of the "
        "hub's `instructors` group) and admins see every learner's progress; your own is at "
        "My progress.")
    assert service(site, f"/api/progress/{ann}", token).status_code == 200
    for path in ("/dashboard", "/dashboard.csv"):
        page = service(site, path, token)
        assert page.status_code == 403, path
        assert f"<p class=\"message\">{access.NOT_INSTRUCTOR}</p>" in html.unescape(page.text)
    # Signed in with a browser's session (the hub's OAuth), the same.
    s = requests.Session()
    s.trust_env = False
    s.get(f"{site.url}/hub/login", timeout=10)
    s.post(f"{site.url}/hub/login", data={"username": ann, "password": "whale",
                                          "_xsrf": s.cookies.get("_xsrf")}, timeout=10)
    page = s.get(f"{site.url}{SERVICE}/dashboard", timeout=30)
    assert page.status_code == 403
    assert access.NOT_INSTRUCTOR in html.unescape(page.text)
    mine = s.get(f"{site.url}{SERVICE}/", timeout=30)
    assert mine.status_code == 200
    assert f"My progress, {ann}" in mine.text
    assert "✔ verified" in mine.text
    assert "Dashboard" not in mine.text
    # Without any sign-in: one sentence, no redirect loop.
    anonymous = service(site, "/api/progress")
    assert anonymous.status_code == 403
    assert anonymous.json()["message"] == access.NOT_SIGNED_IN


@hub_test
def test_results_from_an_own_engine_are_self_reported(site, tmp_path_factory, host_docker,
                                                      lesson_mirror):
    from engine_fixtures import start_engine
    from hub_fixtures import learners_network

    cy = site.user("cy")
    network, subnet = learners_network(site, cy, host_docker)
    own = start_engine("byoc-progress", tmp_path_factory, host_docker, network=network,
                       network_ip=str(subnet.network_address + 200),
                       registry_mirror=lesson_mirror.url)
    try:
        s = requests.Session()
        s.trust_env = False
        s.get(f"{site.url}/hub/login", timeout=10)
        s.post(f"{site.url}/hub/login", data={"username": cy, "password": "whale",
                                              "_xsrf": s.cookies.get("_xsrf")}, timeout=10)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            for f in ("ca.pem", "cert.pem", "key.pem", "docker.env"):
                z.write(own.bundle_dir / f, f)
        s.get(f"{site.url}/hub/spawn/{cy}", timeout=10)
        r = s.post(f"{site.url}/hub/spawn/{cy}", data={"engine": "byoc", "_xsrf": s.cookies.get("_xsrf")},
                   files={"bundle": ("bundle.zip", buf.getvalue())}, timeout=60, allow_redirects=False)
        assert r.status_code == 302, r.text[-2000:]
        site.wait_ready(cy)
        (solution,) = lesson_cells(1, "solution")
        out = site.run(cy, f"{solution}\n{lesson_cells(1, 'check')[-1]}", timeout=180)
        assert "✔ Well done" in out
        item = wait_result(site, token_for(site, cy), "first-container")
        assert item["status"] == "self-reported"
        assert item["self_reported"] is True
        assert item["verified"] is False
        assert item["last_source"] == "learner"
        mine = s.get(f"{site.url}{SERVICE}/", timeout=30)
        assert "✔ self-reported" in mine.text
        assert "You use your own Docker engine" in mine.text
    finally:
        own.remove()


@hub_test
def test_the_service_listens_only_where_learners_reach_the_hub(site):
    """Like the hub's API: on the bridge gateway only, with its one port open to learners'
    networks in the host firewall (tests/test_isolation.py proves the other ports shut)."""
    import socket

    from whale_site import firewall

    for address in ("127.0.0.1", site.gateway):
        with socket.socket() as s:
            s.settimeout(2)
            reached = s.connect_ex((address, site.progress_port)) == 0
        assert reached == (address == site.gateway), address
    rules = firewall.describe()
    assert f"-d {site.gateway}/32 -p tcp -m tcp --dport {site.progress_port} " in rules
    assert f"{site.firewall_owner} pid={os.getpid()} whale-progress" in rules


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from browser import start_chromium

    profile = tmp_path_factory.mktemp("chromium-progress")
    driver = start_chromium(profile / "p", size="1400,900")
    yield driver
    driver.quit()


def _xhr(browser, path: str) -> tuple[int, str]:
    """GET `path` as the dashboard's own script does: the page's session (the service's
    cookie) and the page's xsrf token."""
    return tuple(browser.execute_script(
        "const x = new XMLHttpRequest(); x.open('GET', arguments[0], false);"
        "x.setRequestHeader('X-XSRFToken',"
        " document.querySelector('meta[name=whale-xsrf]').content);"
        "x.send(); return [x.status, x.responseText];", path))


@hub_test
@pytest.mark.browser
@pytest.mark.skipif(not BROWSER, reason=BROWSER_MISSING)
def test_an_instructor_sees_everyone_on_the_dashboard(site, browser):
    """After the tests above (ann verified on lesson 1 and refused a faked lesson 2; cy
    self-reported on their own engine): a member of the `instructors` group, made one
    through the hub's API, signs in with chromium and watches ann finish lesson 2."""
    from browser import wait_until

    ann, cy, teacher = site.user("ann"), site.user("cy"), site.user("teacher")
    r = site.api("POST", f"/groups/{INSTRUCTORS_GROUP}/users", json={"users": [teacher]})
    assert r.status_code == 200, r.text
    # The dashboard's address sends a stranger through the hub's sign-in and back.
    browser.get(f"{site.url}{SERVICE}/dashboard")
    wait_until(lambda: browser.find_elements("id", "username_input"), 30,
               message="the hub's sign-in page did not come")
    browser.find_element("id", "username_input").send_keys(teacher)
    browser.find_element("id", "password_input").send_keys("whale")
    browser.find_element("id", "login_submit").click()

    def cell(learner: str, exercise: str):
        found = browser.find_elements(
            "css selector", f'tr[data-learner="{learner}"] td[data-exercise="{exercise}"]')
        return found[0] if found else None

    try:
        wait_until(lambda: cell(ann, "first-container"), 30)
    except AssertionError:
        raise AssertionError(f"no dashboard at {browser.current_url}:\n"
                             f"{browser.find_element('tag name', 'body').text[:1500]}") from None
    assert browser.current_url == f"{site.url}{SERVICE}/dashboard"
    first = cell(ann, "first-container")
    assert (first.text, first.get_attribute("class")) == ("✔ verified", "verified")
    faked = cell(ann, "lifecycle")
    assert (faked.text, faked.get_attribute("class")) == ("✘ not yet (1)", "not-yet")
    own = cell(cy, "first-container")
    assert (own.text, own.get_attribute("class")) == ("✔ self-reported", "self-reported")

    def row_text(learner: str) -> list[str]:
        return [td.text for td in browser.find_elements(
            "css selector", f'tr[data-learner="{learner}"] td')]

    assert row_text(cy)[2] == "own engine"
    assert row_text(ann)[2].startswith("ok: Docker ")
    assert row_text(ann)[1] != "never"
    # ann does lesson 2's exercise now: the open dashboard shows it verified within seconds.
    (solution,) = lesson_cells(2, "solution")
    out = site.run(ann, f"{solution}\n{lesson_cells(2, 'check')[-1]}", timeout=120)
    assert "✔ Well done" in out
    try:
        wait_until(lambda: (c := cell(ann, "lifecycle")) is not None and c.text == "✔ verified",
                   30)
    except AssertionError:
        raise AssertionError("the dashboard did not show lesson 2 verified: "
                             f"{row_text(ann)}\n{site.log_tail(3000)}") from None
    # The CSV export, and one learner's progress, with the instructor's session.
    status, text = _xhr(browser, "dashboard.csv")
    assert status == 200
    lines = text.splitlines()
    assert lines[0] == ("learner,lesson,exercise,status,passed_at,last_checked,last_result,"
                        "checked_by,attempts,detail")
    assert any(line.startswith(f"{ann},1,first-container,verified,") and line.endswith(
        ",passed,hub,1,my-first ran from busybox and said: I ran a container") for line in lines)
    assert any(line.startswith(f"{ann},2,lifecycle,verified,") for line in lines)
    assert any(line.startswith(f"{cy},1,first-container,self-reported,") for line in lines)
    status, text = _xhr(browser, f"api/progress/{ann}")
    assert status == 200
    assert json.loads(text)["user"] == ann
    assert [i["status"] for i in json.loads(text)["exercises"][:2]] == ["verified", "verified"]


# -- the learner's own view: their server's whale/api/progress, and the file browser ------
@pytest.fixture(scope="module")
def dee(site):
    """A learner who did lesson 1's exercise (the hub verified it) and ran lesson 2's
    check before doing it (not yet); lessons 3 to 8 untouched."""
    dee = site.user("dee")
    site.start(dee)
    (solution,) = lesson_cells(1, "solution")
    out = site.run(dee, f"{solution}\n{lesson_cells(1, 'check')[-1]}", timeout=180)
    assert "✔ Well done" in out, out
    out = site.run(dee, lesson_cells(2, "check")[-1], timeout=60)
    assert "✘ Not yet" in out, out
    token = token_for(site, dee)
    assert wait_result(site, token, "first-container")["status"] == "verified"
    assert wait_result(site, token, "lifecycle")["status"] == "not-yet"
    return dee


def server_token(hub, name: str) -> str:
    """A token of `name`'s that reaches their own server (as their browser's session)."""
    r = hub.api("POST", f"/users/{name}/tokens",
                json={"scopes": [f"access:servers!user={name}"], "note": "test"})
    assert r.status_code == 201, r.text
    return r.json()["token"]


@hub_test
def test_a_learners_server_tells_its_owner_their_own_lessons(site, dee):
    """whale/api/progress: the server asks the service with its own token; callers need
    access to that server, and whoever asks gets the owner's progress, nobody else's."""
    bea = site.user("bea")
    url = f"{site.url}/user/{dee}/whale/api/progress"

    def get(token: str | None) -> requests.Response:
        headers = {"Authorization": f"token {token}"} if token else {}
        return requests.get(url, params={"path": "lessons"}, headers=headers, timeout=30,
                            allow_redirects=False)

    assert get(None).status_code == 403
    assert get(server_token(site, bea)).status_code == 403  # bea's token, dee's server
    answer = get(server_token(site, dee))
    assert answer.status_code == 200, answer.text
    mine = answer.json()
    assert (mine["user"], mine["engine"]) == (dee, "hosted")
    states = {entry["lesson"]: entry for entry in mine["lessons"]}
    assert sorted(states) == sorted({e.lesson for e in check.CHECKS.values()})
    assert (states[1]["status"], states[1]["verified"], states[1]["self_reported"]) == \
        ("done", True, False)
    assert states[1]["exercises"] == [{"exercise": "first-container", "status": "verified",
                                       "summary": check.CHECKS["first-container"].summary}]
    assert (states[2]["status"], states[2]["passed"]) == ("in-progress", 0)
    assert {states[n]["status"] for n in states if n > 2} == {"not-started"}
    assert [(f["path"], f["lesson"]) for f in mine["files"]] == [
        (f"lessons/{p.name}", int(p.name[:2])) for p in LESSONS]
    # An admin reaching dee's server reads dee's progress: the server never asks for
    # anyone but its owner (nothing of the request is passed to the service).
    admin = requests.get(url, headers={"Authorization": f"token {site.token}"}, timeout=30)
    assert admin.status_code == 200
    assert admin.json()["user"] == dee
    assert admin.json()["files"] == []  # no path: the server's root holds no lessons


def _item(browser, name: str):
    """The file browser's item of the file `name`."""
    for node in browser.find_elements("css selector", ".jp-DirListing-item"):
        text = node.find_elements("css selector", ".jp-DirListing-itemText")
        if text and text[0].text == name:
            return node
    return None


def _badge(browser, name: str) -> tuple[str | None, str, str, str, str] | None:
    """(status attribute, item classes, badge text, badge kind, badge tooltip)."""
    node = _item(browser, name)
    if node is None:
        return None
    badge = node.find_elements("css selector", ".jp-WhaleLesson-badge")
    return (node.get_attribute("data-whale-lesson-status"), node.get_attribute("class"),
            badge[0].text if badge else "", badge[0].get_attribute("data-kind") if badge else "",
            badge[0].get_attribute("title") if badge else "")


@hub_test
@pytest.mark.browser
@pytest.mark.skipif(not BROWSER, reason=BROWSER_MISSING)
def test_a_learner_sees_each_lesson_not_started_in_progress_or_done(site, dee, browser):
    """Notebook 7's file browser, as dee sees it in chromium: lesson 1 done (verified),
    lesson 2 in progress, lesson 3 not started; then dee does lesson 2's exercise and the
    open listing shows it done without a reload. Help > My progress opens the hub's page."""
    from browser import wait_until

    # Whoever signed in before (the teacher): every cookie, the service's own path's too
    # (WebDriver's delete_all_cookies reaches only the current page's).
    browser.execute_cdp_cmd("Network.clearBrowserCookies", {})
    browser.get(f"{site.url}/hub/login")
    wait_until(lambda: browser.find_elements("id", "username_input"), 30)
    browser.find_element("id", "username_input").send_keys(dee)
    browser.find_element("id", "password_input").send_keys("whale")
    browser.find_element("id", "login_submit").click()
    wait_until(lambda: "/hub/login" not in browser.current_url, 30)
    browser.get(f"{site.url}/user/{dee}/tree/lessons")
    first, second, third = (p.name for p in LESSONS[:3])
    try:
        wait_until(lambda: (b := _badge(browser, first)) and b[0], 60)
    except AssertionError:
        raise AssertionError(f"no lesson badges at {browser.current_url}:\n"
                             f"{browser.find_element('tag name', 'body').text[:1500]}\n"
                             f"{browser.get_log('browser')[-10:]}") from None
    status, classes, text, kind, title = _badge(browser, first)
    assert status == "done"
    assert {"jp-WhaleLesson", "jp-WhaleLesson-done"} <= set(classes.split())
    assert (text, kind) == ("✔ done", "verified")
    title1 = nbformat.read(LESSONS[0], as_version=4).metadata["howtowhale"]["title"]
    assert title.splitlines() == [
        f"Lesson 1: {title1}: done, verified by the hub",
        f"• {check.CHECKS['first-container'].summary}: ✔ verified (checked by the hub on "
        "your engine)"]
    status, classes, text, kind, title = _badge(browser, second)
    assert (status, text) == ("in-progress", "◐ in progress")
    assert "jp-WhaleLesson-in-progress" in classes.split()
    assert "in progress, 0 of 1 exercises passed" in title
    assert title.endswith(": ✘ not yet")
    status, classes, text, kind, title = _badge(browser, third)
    assert (status, text, kind) == ("not-started", "not started", "none")
    assert "jp-WhaleLesson-not-started" in classes.split()
    # Not a lesson: no badge, no class.
    readme = _badge(browser, "README.md")
    assert readme is not None
    assert readme[0] is None
    assert "jp-WhaleLesson" not in readme[1].split()
    assert readme[2] == ""
    # dee does lesson 2's exercise in a notebook: the open listing turns it done.
    (solution,) = lesson_cells(2, "solution")
    assert "✔ Well done" in site.run(dee, f"{solution}\n{lesson_cells(2, 'check')[-1]}",
                                     timeout=120)
    try:
        wait_until(lambda: (_badge(browser, second) or ("",))[0] == "done", 45)
    except AssertionError:
        raise AssertionError(f"lesson 2 still {_badge(browser, second)}") from None
    assert _badge(browser, second)[2:4] == ("✔ done", "verified")
    # Help > My progress: the hub's page of dee's progress, in a new tab.
    browser.find_element("xpath", "//*[contains(@class,'lm-MenuBar-itemLabel')][text()='Help']").click()
    item = wait_until(lambda: browser.find_elements(
        "xpath", "//*[contains(@class,'lm-Menu-itemLabel')][text()='My progress']"), 10)
    tabs = set(browser.window_handles)
    item[0].click()
    new = wait_until(lambda: set(browser.window_handles) - tabs, 10)
    browser.switch_to.window(new.pop())
    try:
        try:
            wait_until(lambda: f"My progress, {dee}" in
                       browser.find_element("tag name", "body").text, 30)
        except AssertionError:
            raise AssertionError(f"at {browser.current_url}: "
                                 f"{browser.find_element('tag name', 'body').text[:800]}") from None
        assert browser.current_url == f"{site.url}{SERVICE}/"
    finally:
        browser.close()
        browser.switch_to.window(next(iter(tabs)))
