"""The README's first command: `whale up` serves the site on its port, `whale down`
stops it. Runs last (the name sorts last): `whale down` stops every engine of the site."""
from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request

from whale_hub.engine import free_port


def test_whale_up_serves_the_site_and_down_stops_it(tmp_path, host_docker):
    port = free_port()
    env = dict(os.environ, WHALE_STATE=str(tmp_path / "state"),
               WHALE_HUB_PORT=str(free_port("0.0.0.0")), WHALE_PROXY_API_PORT=str(free_port()),
               WHALE_REGISTRY_PORT=str(free_port()))
    with open(tmp_path / "up.log", "w") as log:
        up = subprocess.Popen([sys.executable, "-m", "whale_site.cli", "up", "--port", str(port)],
                              env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 300
            page = ""
            while time.monotonic() < deadline and up.poll() is None:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/hub/login", timeout=5) as r:
                        page = r.read().decode()
                        break
                except OSError:
                    time.sleep(0.5)
            log.flush()
            output = (tmp_path / "up.log").read_text()
            assert "<form" in page, output[-3000:]
            assert "password" in page.lower(), output[-3000:]
            assert f"http://localhost:{port}" in output
            down = subprocess.run([sys.executable, "-m", "whale_site.cli", "down"], env=env,
                                  capture_output=True, text=True, timeout=120)
            assert down.returncode == 0, down.stdout + down.stderr
            assert "learners' work is kept" in down.stdout
            up.wait(timeout=60)
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/hub/login", timeout=5)
                raise AssertionError("the site still answers after `whale down`")
            except OSError:
                pass
        finally:
            if up.poll() is None:
                up.kill()
