"""Debian's chromium, headless, driven by chromedriver through selenium.

Never a downloaded browser or driver: both paths are Debian's (scripts/bootstrap.sh
installs chromium and chromium-driver). The flags keep it off the network, which is
closed here anyway.
"""
from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
AVAILABLE = os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)
MISSING = "needs Debian's chromium and chromium-driver (scripts/bootstrap.sh installs them)"


def start_chromium(profile: Path, size: str = "1280,800"):
    """A headless chromium with a fresh profile in `profile`."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                 f"--user-data-dir={profile}", f"--window-size={size}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # page_report shows it
    # An explicit chromedriver: selenium must never go looking for (or download) one.
    return webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))


def wait_until(what, timeout: float, step: float = 0.2, message: str = ""):
    """`what()`'s first truthy value, asked every `step` s for at most `timeout` s."""
    from selenium.common.exceptions import WebDriverException

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = what()
        except WebDriverException:  # the page changed under us (navigation, re-render)
            value = None
        if value:
            return value
        time.sleep(step)
    raise AssertionError(message or f"timed out after {timeout} s")


def page_report(hub, browser, learner: str, name: str = "failure") -> str:
    """What a failed browser step had in front of it: a screenshot (in the hub's state),
    the page's address and text, the browser's console, what the learner's server answers
    for the lessons through the proxy, and the server container's log."""
    import docker

    parts = []
    with contextlib.suppress(Exception):
        browser.save_screenshot(str(hub.state / f"{learner}-{name}.png"))
    with contextlib.suppress(Exception):
        parts.append(f"at {browser.current_url}:\n{browser.find_element('tag name', 'body').text[-1500:]}")
    with contextlib.suppress(Exception):
        console = [f"{e.get('level')} {e.get('message')}" for e in browser.get_log("browser")]
        parts.append("console:\n" + "\n".join(console[-20:]))
    try:
        r = hub.server(learner, "GET", "/contents/lessons")
        parts.append(f"GET /api/contents/lessons: HTTP {r.status_code} {r.text[:300]}")
    except Exception as exc:  # a report of what failed, whatever it was
        parts.append(f"GET /api/contents/lessons: {exc!r}")
    client = docker.from_env()
    try:
        log = client.containers.get(f"jupyter-{learner}").logs(tail=60).decode(errors="replace")
        parts.append(f"server log:\n{log}")
    except Exception as exc:
        parts.append(f"server log: {exc!r}")
    finally:
        client.close()
    return "\n".join(parts)


def run_cell_in_browser(hub, browser, learner: str, code: str, expect: str) -> str:
    """Put a one-cell docker notebook in the learner's server, open it in Notebook 7, run
    the cell with Shift+Enter and return the cell's text once `expect` is in it."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    nb = {"type": "notebook", "content": {
        "nbformat": 4, "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": "docker", "display_name": "Docker",
                                    "language": "bash"}},
        "cells": [{"cell_type": "code", "id": "c1", "source": code, "metadata": {},
                   "outputs": [], "execution_count": None}]}}
    assert hub.server(learner, "PUT", "/contents/mine.ipynb", json=nb).status_code in (200, 201)
    browser.get(f"{hub.url}/user/{learner}/notebooks/mine.ipynb")
    wait_until(lambda: browser.find_elements("css selector", ".jp-CodeCell .cm-content"),
               90, message="the notebook did not open")
    wait_until(lambda: browser.find_elements("css selector", ".jp-Notebook-ExecutionIndicator"),
               60, message="the kernel did not start")

    def run():
        """Shift+Enter in the first cell until the notebook shows it ran ([*] or [1]):
        keys sent while the kernel is still connecting are dropped."""
        prompt = browser.find_element("css selector", ".jp-CodeCell .jp-InputPrompt")
        if "[ ]" not in prompt.text:
            return True
        browser.find_element("css selector", ".jp-CodeCell .cm-content").click()
        ActionChains(browser).key_down(Keys.SHIFT).send_keys(Keys.ENTER).key_up(Keys.SHIFT
                                                                               ).perform()
        time.sleep(2)
        return "[ ]" not in browser.find_element("css selector",
                                                 ".jp-CodeCell .jp-InputPrompt").text

    wait_until(run, 60, message="the cell could not be run")

    def output():
        text = " ".join(o.text for o in browser.find_elements("css selector", ".jp-OutputArea"))
        return text if expect in text else None

    try:
        return wait_until(output, 90)
    except AssertionError:
        browser.save_screenshot(str(hub.state / f"{learner}-cell.png"))
        health = hub.session.get(f"{hub.url}/user/{learner}/whale/api/health", timeout=30)
        raise AssertionError(f"the cell never printed {expect!r}; the page says:\n"
                             f"{browser.find_element('tag name', 'body').text[-1500:]}\n"
                             f"health: {health.text[:1000]}\n"
                             f"a kernel by the API: {hub.run(learner, code)!r}") from None
