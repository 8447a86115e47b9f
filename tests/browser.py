"""Debian's chromium, headless, driven by chromedriver through selenium.

Never a downloaded browser or driver: both paths are Debian's (scripts/bootstrap.sh
installs chromium and chromium-driver). The flags keep it off the network, which is
closed here anyway.
"""
from __future__ import annotations

import os
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
