"""The status indicator in a real browser: Debian's chromium, headless, driven by
chromedriver through selenium, against a real Notebook 7 server (a subprocess) whose
extension watches a real TLS engine that the test then stops."""
from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
import time
import urllib.request

import pytest
from browser import AVAILABLE, MISSING, start_chromium, wait_until
from bundle_corpus import zip_bytes
from engine_fixtures import engine_client_for, engine_env, start_engine
from extension_fixtures import bundle_files, engine_ip, free_port

from whale_core.store import CredentialStore
from whale_site import images

LABEXTENSION = os.path.join(os.path.dirname(__file__), "..", "whale_extension",
                            "labextension", "package.json")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not AVAILABLE, reason=MISSING),
    pytest.mark.skipif(not os.path.exists(LABEXTENSION),
                       reason="the labextension is not built (scripts/bootstrap.sh)"),
]

TOKEN = "whale-browser-test-token"
BASE_URL = "/a%40b/"  # odd on purpose, as pytest-jupyter's: catches URL-joining bugs


# One engine, server and browser for the module: the JupyterLab test runs first, the
# Notebook 7 test (which stops the engine) last.
@pytest.fixture(scope="module")
def browser_engine(engine_image, host_docker, tmp_path_factory):
    engine = start_engine("browser", tmp_path_factory, host_docker)
    images.build_lesson_images(engine_env(engine), names=["busybox"])
    yield engine
    engine.remove()


@pytest.fixture(scope="module")
def notebook_server(tmp_path_factory, browser_engine, host_docker):
    """Notebook 7 with the extension enabled only through the files that an install
    puts in a Jupyter prefix (the config file and the labextension)."""
    from whale_extension.install import install

    tmp_path = tmp_path_factory.mktemp("notebook")
    prefix = tmp_path / "prefix"
    install(prefix=str(prefix))
    store = CredentialStore(tmp_path / "credentials")
    store.install_directory(browser_engine.bundle_dir)
    port = free_port()
    home = tmp_path / "home"
    (home / "work").mkdir(parents=True)
    env = dict(os.environ, HOME=str(home),
               JUPYTER_PATH=str(prefix / "share" / "jupyter"),
               JUPYTER_CONFIG_PATH=str(prefix / "etc" / "jupyter"),
               JUPYTER_CONFIG_DIR=str(home / ".jupyter"),
               JUPYTER_DATA_DIR=str(home / ".local" / "share" / "jupyter"),
               JUPYTER_RUNTIME_DIR=str(home / "runtime"),
               WHALE_CREDENTIALS=str(store.root))
    with open(tmp_path / "server.log", "wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "notebook", "--no-browser", "--ip=127.0.0.1",
             f"--port={port}", f"--ServerApp.base_url={BASE_URL}",
             f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={home / 'work'}",
             "--WhaleExtension.health_cache_seconds=1",
             f"--WhaleExtension.published_host={engine_ip(host_docker, browser_engine)}",
             # window.jupyterapp, to run the reload command as the palette would
             "--LabApp.expose_app_in_browser=True",
             "--JupyterNotebookApp.expose_app_in_browser=True",
             *(["--allow-root"] if os.geteuid() == 0 else [])],
            env=env, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}{BASE_URL}"
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{url}whale/api/health?token={TOKEN}", timeout=5)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((tmp_path / "server.log").read_text()[-3000:]) from None
                time.sleep(0.2)
        yield url
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@pytest.fixture(scope="module")
def chromium(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("chromium")
    driver = start_chromium(tmp_path / "chromium")
    yield driver
    driver.quit()
    shutil.rmtree(tmp_path / "chromium", ignore_errors=True)


def indicator_state(driver, where: str = ".jp-WhaleIndicator-top"):
    found = driver.find_elements("css selector", where)
    if not found:
        return None, None
    return found[0].get_attribute("data-status"), found[0].get_attribute("title")


def wait_for_state(driver, status: str, timeout: float, where=".jp-WhaleIndicator-top"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state, title = indicator_state(driver, where)
        if state == status:
            return title
        time.sleep(0.1)
    raise AssertionError(f"indicator is {indicator_state(driver, where)}, not {status!r}, "
                         f"after {timeout} s")


def test_indicator_in_jupyterlab_top_and_status_bar(chromium, notebook_server):
    chromium.get(f"{notebook_server}lab?token={TOKEN}")
    wait_for_state(chromium, "ok", timeout=30)
    wait_for_state(chromium, "ok", timeout=10, where=".jp-WhaleIndicator-statusbar")
    # The reload command is registered (there is no source configured: a clear refusal).
    result = chromium.execute_async_script("""
        const done = arguments[arguments.length - 1];
        const app = window.jupyterapp;
        if (!app) { done('no app'); return; }
        app.commands.execute('whale:reload-credentials').then(
            body => done(body.code || body.status), error => done('error ' + error));
    """)
    assert result == "no-source"
    toast = wait_for_text(chromium, "Credentials not installed", timeout=10)
    assert "no credentials source" in toast


UPLOAD = """
    const [b64, done] = [arguments[0], arguments[arguments.length - 1]];
    const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
    window.jupyterapp.commands.execute('whale:upload-credentials',
                                       {file: new Blob([bytes])}).then(
        body => done(body.code || body.status), error => done('error ' + error));
"""


def test_upload_from_the_browser(chromium, notebook_server, browser_engine):
    """The upload command posts with the browser's cookie and XSRF token: a bad file is
    refused with its reason, a good bundle is installed."""
    chromium.get(f"{notebook_server}lab?token={TOKEN}")
    wait_for_state(chromium, "ok", timeout=30)
    bad = chromium.execute_async_script(UPLOAD, base64.b64encode(b"not a bundle").decode())
    assert bad == "bad-archive"
    assert "not a zip or tar" in wait_for_text(chromium, "Credentials not installed", 10)
    good = zip_bytes(bundle_files(browser_engine.bundle_dir))
    assert chromium.execute_async_script(UPLOAD, base64.b64encode(good).decode()) == \
        "installed"
    assert "New credentials for" in wait_for_text(chromium, "are installed", 10)
    wait_for_state(chromium, "ok", timeout=10)


def wait_for_text(driver, text: str, timeout: float) -> str:
    """The text of the page once it contains `text` (e.g. a notification)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = driver.find_element("css selector", "body").text
        if text in body:
            return body
        time.sleep(0.1)
    raise AssertionError(f"{text!r} never appeared on the page")


def test_published_port_opens_from_the_indicator(chromium, notebook_server,
                                                 browser_engine):
    """The classic complaint: "my published port doesn't open". Click the whale, click
    the port's link, and the container's page opens through the server."""
    client = engine_client_for(browser_engine)
    page = "served from a container on your engine"
    web = client.containers.run(
        "busybox", ["sh", "-c", f"mkdir /www && echo '{page}' > /www/index.html && "
                                "exec httpd -f -p 80 -h /www"],
        detach=True, ports={"80/tcp": 8080}, name="whale-browser-web")
    try:
        chromium.get(f"{notebook_server}tree?token={TOKEN}")
        wait_for_state(chromium, "ok", timeout=30)
        chromium.find_element("css selector", ".jp-WhaleIndicator-top").click()
        deadline = time.monotonic() + 10
        links = []
        while not links and time.monotonic() < deadline:
            links = chromium.find_elements("css selector",
                                           ".jp-WhaleDetails-portLink[data-port='8080']")
            time.sleep(0.1)
        assert links, wait_for_text(chromium, "Published ports", timeout=1)
        href = links[0].get_attribute("href")
        assert href == f"{notebook_server}whale/proxy/8080/"
        assert "Certificate expires in" in wait_for_text(chromium, "Docker engine: ok", 5)
        # Same browser session: the login cookie is the only credential.
        chromium.get(href)
        assert wait_for_text(chromium, page, timeout=10).strip() == page
    finally:
        web.remove(force=True)
        client.close()


def visible_label(driver, expected: str = "Docker: ok", timeout: float = 15) -> str:
    """The top bar label's visible text once it is `expected` (or what it is at the end)."""
    def shown():
        text = driver.find_element("css selector",
                                   ".jp-WhaleIndicator-top .jp-WhaleIndicator-label").text
        return text if text == expected else None
    try:
        return wait_until(shown, timeout)
    except AssertionError:
        return driver.find_element("css selector",
                                   ".jp-WhaleIndicator-top .jp-WhaleIndicator-label").text


def test_indicator_turns_ok_then_down_in_notebook7(chromium, notebook_server,
                                                   browser_engine):
    chromium.get(f"{notebook_server}tree?token={TOKEN}")
    title = wait_for_state(chromium, "ok", timeout=30)
    assert "Docker engine: ok" in title
    assert browser_engine.docker_host in title
    # The label shows once the top bar is laid out (on a busy machine, a moment after
    # the indicator's state is set): what a learner sees, so its visible text.
    assert visible_label(chromium) == "Docker: ok"
    # Notebook 7 has no status bar: the top bar carries the indicator.
    assert not chromium.find_elements("css selector", ".jp-WhaleIndicator-statusbar")

    browser_engine.stop(timeout=1)
    stopped = time.monotonic()
    title = wait_for_state(chromium, "down", timeout=20)
    took = time.monotonic() - stopped
    assert "Docker engine: down" in title
    assert browser_engine.docker_host in title
    assert visible_label(chromium, "Docker: down") == "Docker: down"
    print(f"\nbrowser: indicator turned down {took:.1f} s after the engine stopped")
