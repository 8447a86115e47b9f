"""End to end, as a learner: Debian's chromium (headless, through chromedriver) signs
up (first sign-in) on a real hub, watches the progress page, lands in Notebook 7 with
the lessons, runs `docker run hello-world` in lesson 1 and sees its output. The
learner's engine is a real sandbox engine pulling from the real lesson mirror."""
from __future__ import annotations

import shutil

import pytest
from browser import AVAILABLE, MISSING, start_chromium, wait_until
from hub_fixtures import Hub, ensure_images

pytestmark = [pytest.mark.hub, pytest.mark.browser, pytest.mark.skipif(not AVAILABLE, reason=MISSING)]


@pytest.fixture(scope="module")
def site(tmp_path_factory, host_docker, lesson_mirror):
    ensure_images()
    mirror = lesson_mirror
    hub = Hub(tmp_path_factory.mktemp("site"),
              extra_env={"WHALE_AUTH": "firstuse", "WHALE_PROVIDER": "sandbox",
                         "WHALE_REGISTRY_MIRROR": mirror.url})
    yield hub
    hub.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    profile = tmp_path_factory.mktemp("chromium")
    driver = start_chromium(profile / "p", size="1280,900")
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


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
    wait_until(lambda: "01-first-container" in browser.find_element("tag name", "body").text,
               60, message="the lessons are not listed")
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
