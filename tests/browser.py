"""Debian's chromium, headless, driven by chromedriver through selenium.

Never a downloaded browser or driver: both paths are Debian's (scripts/bootstrap.sh
installs chromium and chromium-driver). The flags keep it off the network, which is
closed here anyway.
"""
from __future__ import annotations

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
