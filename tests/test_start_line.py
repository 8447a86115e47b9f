"""A class pressing Start at once, through a real hub and its proxy: starts beyond
WhaleSpawner.concurrent_starts wait in line and the spawn page says their place; beyond
the hub's active_server_limit a learner gets a plain page that tries again by itself,
not JupyterHub's "429 Too Many Requests"."""
from __future__ import annotations

import json
import re
import threading

import pytest
from hub_fixtures import Hub, ensure_images

pytestmark = pytest.mark.hub


@pytest.fixture(scope="module")
def hub(tmp_path_factory, host_docker):
    ensure_images()
    h = Hub(tmp_path_factory.mktemp("line"), extra_env={
        "WHALE_PROVIDER": "sandbox", "WHALE_CONCURRENT_STARTS": "1", "WHALE_MAX_LEARNERS": "2"})
    yield h
    h.close()


def progress_messages(hub: Hub, name: str) -> list[str]:
    """What the spawn page of `name` shows, read as the page reads it, until ready."""
    messages = []
    with hub.session.get(f"{hub.url}/hub/api/users/{name}/server/progress",
                         stream=True, timeout=240) as stream:
        for line in stream.iter_lines(decode_unicode=True):
            if line and line.startswith("data:"):
                event = json.loads(line[5:])
                messages.append(event.get("message", ""))
                assert not event.get("failed"), messages
                if event.get("ready"):
                    return messages
    raise AssertionError(f"the progress of {name} ended before ready: {messages}")


def test_a_second_learner_waits_in_line_and_is_told_so(hub):
    a, b = hub.user("ann"), hub.user("ben")
    seen: dict[str, list[str]] = {}

    def start(name):
        r = hub.api("POST", f"/users/{name}/server", json={})
        assert r.status_code in (201, 202), r.text
        seen[name] = progress_messages(hub, name)

    threads = [threading.Thread(target=start, args=(name,)) for name in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert set(seen) == {a, b}, seen
    waited = [name for name in (a, b)
              if "The class is starting: you are 1st in line" in seen[name]]
    assert len(waited) == 1, seen  # one started at once, the other waited for it
    other = b if waited == [a] else a
    assert not any("in line" in m for m in seen[other]), seen[other]
    # Both are served, each by its own engine.
    assert hub.run(a, "docker info -f '{{.ID}}'").strip() != \
        hub.run(b, "docker info -f '{{.ID}}'").strip()
    assert "got its turn at" in hub.log_tail(20000)


def test_beyond_the_seats_a_learner_gets_a_plain_page_that_tries_again(hub):
    for seated in (hub.user("ann"), hub.user("ben")):  # the two seats are taken
        if not hub.api("GET", f"/users/{seated}").json().get("servers"):
            hub.start(seated)
    name = hub.user("cat")
    browser = hub.signed_in(name)
    try:
        page = browser.get(f"{hub.url}/hub/spawn/{name}", timeout=60)
    finally:
        browser.close()
    assert page.status_code == 429
    assert "<h1>The classroom is full</h1>" in page.text
    assert "Every seat of this classroom is taken." in page.text
    assert re.search(r'<meta http-equiv="refresh" content="60">', page.text)
    assert "Too Many Requests" not in page.text
    assert not hub.api("GET", f"/users/{name}").json().get("servers")
