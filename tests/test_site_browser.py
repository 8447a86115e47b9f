"""End to end, as a learner: Debian's chromium (headless, through chromedriver) signs
up (first sign-in) on a real hub, presses Start on the spawn form, watches the progress
page, lands in Notebook 7 with the lessons, runs `docker run hello-world` in lesson 1 and
sees its output. Another learner chooses 3 nodes on the form, and the first cell of a
Swarm lesson finds them. The learners' engines are real sandbox engines pulling from the
real lesson mirror."""
from __future__ import annotations

import shutil

import pytest
from browser import AVAILABLE, MISSING, page_report, run_cell_in_browser, start_chromium, wait_until
from hub_fixtures import Hub, ensure_images

pytestmark = [pytest.mark.hub, pytest.mark.browser, pytest.mark.skipif(not AVAILABLE, reason=MISSING)]


@pytest.fixture(scope="module")
def site(tmp_path_factory, host_docker, lesson_mirror):
    ensure_images()
    mirror = lesson_mirror
    hub = Hub(tmp_path_factory.mktemp("site"),
              extra_env={"WHALE_AUTH": "firstuse", "WHALE_PROVIDER": "sandbox",
                         "WHALE_REGISTRY_MIRROR": mirror.url, "WHALE_MAX_NODES": "3"})
    yield hub
    hub.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    profile = tmp_path_factory.mktemp("chromium")
    driver = start_chromium(profile / "p", size="1280,900")
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def press_start(browser, nodes: int | None = None) -> list[str]:
    """On the spawn form: choose `nodes` (if given) and press Start; return the node
    choices the form offered, as it labels them."""
    wait_until(lambda: browser.find_elements("css selector", "input[name=nodes]"), 60,
               message="the spawn form offers no choice of nodes")
    offered = [label.text.strip() for label in
               browser.find_elements("css selector", "fieldset.whale-nodes label")]
    if nodes is not None:
        browser.find_element("css selector", f"input[name=nodes][value='{nodes}']").click()
    browser.find_element("css selector", "form button[type=submit]").click()
    return offered


def test_learner_signs_up_and_runs_hello_world(site, browser):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    name = f"{site.prefix}-dana"
    site.users.append(name)
    password = "whale-learner-42"
    # Sign up and sign in at once: the first sign-in with a new name creates the learner
    # with that password (a workshop needs no admin to approve anyone).
    browser.get(f"{site.url}/hub/login")
    browser.find_element("id", "username_input").send_keys(name)
    browser.find_element("id", "password_input").send_keys(password)
    browser.find_element("id", "login_submit").click()
    # The spawn form: one engine (the default), or a Swarm of 3 for the Swarm lessons.
    assert press_start(browser) == ["1 node", "3 nodes"]
    seen = set()

    def progressed():
        text = browser.find_element("tag name", "body").text
        for phrase in ("Creating your Docker engine", "Starting your notebook server"):
            if phrase in text:
                seen.add(phrase)
        return "/tree" in browser.current_url or "/lab" in browser.current_url

    try:
        wait_until(progressed, 180, step=0.1)
    except AssertionError:
        browser.save_screenshot(str(site.state / "failure.png"))
        raise AssertionError(f"never reached the notebook server: at {browser.current_url}:\n"
                             f"{browser.find_element('tag name', 'body').text[:1500]}\n"
                             f"hub log:\n{site.log_tail(3000)}") from None
    assert seen, "the progress page never said what was happening"
    # Notebook 7 with the lessons.
    try:
        wait_until(lambda: "01-first-container" in browser.find_element("tag name", "body").text,
                   60)
    except AssertionError:
        raise AssertionError(f"the lessons are not listed; {page_report(site, browser, name)}\n"
                             f"hub log:\n{site.log_tail(3000)}") from None
    browser.get(f"{site.url}/user/{name}/notebooks/lessons/01-first-container.ipynb")

    def hello_cell():
        for cell in browser.find_elements("css selector", ".jp-CodeCell"):
            if "docker run hello-world" in cell.text:
                return cell
        return None

    cell = wait_until(hello_cell, 90, message="lesson 1 has no hello-world cell")
    assert "Hello from How to Whale" not in cell.text  # the learner starts from no output
    wait_until(lambda: "Idle" in browser.find_element("tag name", "body").text
               or browser.find_elements("css selector", ".jp-Notebook-ExecutionIndicator"),
               60, message="the kernel did not start")
    editor = cell.find_element("css selector", ".cm-content")
    editor.click()
    ActionChains(browser).key_down(Keys.SHIFT).send_keys(Keys.ENTER).key_up(Keys.SHIFT).perform()
    try:
        wait_until(lambda: "Hello from How to Whale" in (hello_cell() or cell).text, 120)
    except AssertionError:
        browser.save_screenshot(str(site.state / "failure.png"))
        raise AssertionError("hello-world's output never appeared; the cell shows:\n"
                             f"{(hello_cell() or cell).text[-1500:]}") from None



def test_a_learner_who_chooses_three_nodes_on_the_form_gets_them(site, tmp_path):
    """The spawn form's choice, in a browser: 3 nodes; the spawn page says a Swarm is being
    made, and the first cell of lesson 12 (whale-check --nodes 3) finds node1 to node3."""
    name = f"{site.prefix}-eli"
    site.users.append(name)
    browser = start_chromium(tmp_path / "chromium", size="1280,900")
    try:
        three_nodes_in(site, browser, name)
    finally:
        browser.quit()


def three_nodes_in(site, browser, name: str) -> None:
    browser.get(f"{site.url}/hub/login")
    browser.find_element("id", "username_input").send_keys(name)
    browser.find_element("id", "password_input").send_keys("whale-learner-43")
    browser.find_element("id", "login_submit").click()
    press_start(browser, nodes=3)
    said = set()

    def progressed():
        # The spawn page's event log keeps every message the spawn sent so far.
        for event in browser.find_elements("css selector",
                                           "#progress-log .progress-log-event, #progress-message"):
            said.add(event.get_attribute("textContent").strip())
        return f"/user/{name}/" in browser.current_url and "/hub/" not in browser.current_url

    wait_until(progressed, 180, step=0.1, message="the Swarm learner never reached a server")
    assert {"Creating your Swarm of 3 Docker engines",
            "Your 3 engines answer: joining node2 and node3 to node1's Swarm"} <= said, said
    text = run_cell_in_browser(site, browser, name, "whale-check --nodes 3",
                               "Your Swarm has the 3 nodes")
    assert "✔ Your Swarm has the 3 nodes this lesson needs: node1, node2, node3." in text
