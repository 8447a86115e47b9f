"""Bring your own engine, in the browser (issue 16): Debian's chromium signs in, chooses
"My own Docker engine" on the spawn form, uploads what a learner really has and runs a
cell of a notebook on that engine.

- A TLS engine: the file this machine's Docker CLI writes for `docker context export`
  (no tar padding, no end-of-archive blocks).
- An SSH engine (a real engine behind Debian's openssh-server): the CLI's export of an
  `ssh://` context, the private key and the known_hosts line from ssh-keyscan.

Both engines stand on the learner's own network, as a machine of theirs would."""
from __future__ import annotations

import shutil

import pytest
from browser import AVAILABLE, MISSING, run_cell_in_browser, start_chromium, wait_until
from bundle_corpus import cli_context_export
from engine_fixtures import engine_id
from hub_fixtures import Hub, engine_on_learners_network, ensure_images, learners_network
from ssh_fixtures import SshEngine

from whale_core.bundle import CredentialBundle

pytestmark = [pytest.mark.hub, pytest.mark.browser, pytest.mark.skipif(not AVAILABLE, reason=MISSING)]


@pytest.fixture(scope="module")
def hub(tmp_path_factory, host_docker):
    ensure_images()
    h = Hub(tmp_path_factory.mktemp("byoc-hub"))
    yield h
    h.close()


@pytest.fixture
def browser(tmp_path):
    driver = start_chromium(tmp_path / "chromium", size="1280,900")
    yield driver
    driver.quit()
    shutil.rmtree(tmp_path / "chromium", ignore_errors=True)


def spawn_with_uploads(hub, browser, learner: str, uploads: dict[str, object]) -> None:
    """Sign in, choose the learner's own engine, attach the files, press Start, and wait
    for the notebook server."""
    browser.get(f"{hub.url}/hub/login")
    browser.find_element("id", "username_input").send_keys(learner)
    browser.find_element("id", "password_input").send_keys("whale")
    browser.find_element("id", "login_submit").click()
    browser.get(f"{hub.url}/hub/spawn/{learner}")
    wait_until(lambda: browser.find_elements("css selector", "input[name=engine][value=byoc]"),
               30, message="the spawn form offers no engine of one's own")
    browser.find_element("css selector", "input[name=engine][value=byoc]").click()
    for input_id, path in uploads.items():
        browser.find_element("id", input_id).send_keys(str(path))
    browser.find_element("css selector", "form button[type=submit]").click()
    try:
        wait_until(lambda: f"/user/{learner}/" in browser.current_url
                   and "/hub/" not in browser.current_url, 180, step=0.2)
    except AssertionError:
        raise AssertionError(f"never reached the server: at {browser.current_url}:\n"
                             f"{browser.find_element('tag name', 'body').text[:1500]}\n"
                             f"hub log:\n{hub.log_tail(3000)}") from None


def test_a_docker_cli_context_export_spawns_a_working_server(hub, browser, tmp_path_factory,
                                                            host_docker, tmp_path):
    learner = hub.user("fay")
    own = engine_on_learners_network(hub, learner, "byoc-tls", tmp_path_factory, host_docker)
    try:
        export = tmp_path / "byoc.dockercontext"
        # The address the learner's server uses (on their network), not the test's.
        address = CredentialBundle.load(own.bundle_dir).docker_host
        export.write_bytes(cli_context_export(own.bundle_dir, address, tmp_path))
        spawn_with_uploads(hub, browser, learner, {"whale-bundle": export})
        truth = engine_id(own)
        text = run_cell_in_browser(hub, browser, learner, "docker info -f 'engine={{.ID}}'",
                                   f"engine={truth}")
        assert f"engine={truth}" in text
        hub.stop(learner)
    finally:
        own.remove()


def test_an_ssh_context_with_its_key_spawns_a_working_server(hub, browser, host_docker,
                                                             tmp_path):
    learner = hub.user("gus")
    network, _ = learners_network(hub, learner, host_docker)
    own = SshEngine(host_docker, tmp_path / "sshd", "byoc", network=network)
    try:
        truth = own.container.exec_run(["docker", "info", "--format", "{{.ID}}"]
                                       ).output.decode().strip()
        export = tmp_path / "byoc-ssh.dockercontext"
        export.write_bytes(own.context_export(tmp_path))
        key, known = tmp_path / "id_ed25519", tmp_path / "known_hosts"
        key.write_bytes(own.key)
        known.write_bytes(own.known_hosts())
        spawn_with_uploads(hub, browser, learner, {"whale-bundle": export, "whale-ssh-key": key,
                                                   "whale-known-hosts": known})
        text = run_cell_in_browser(hub, browser, learner,
                                   "docker info -f 'engine={{.ID}}'; docker context ls -q | wc -l",
                                   f"engine={truth}")
        assert f"engine={truth}" in text
        assert "PRIVATE KEY" not in str(hub.api("GET", f"/users/{learner}").json())
        hub.stop(learner)
    finally:
        own.remove()
