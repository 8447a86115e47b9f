"""Signing in with OAuth, for real: the site (WHALE_AUTH=oauth, oauthenticator's
GenericOAuthenticator) against a second JupyterHub acting as the OAuth provider. Debian's
chromium signs in at the provider, comes back to the site, and lands in the learner's own
notebook server, spawned with a sandbox engine."""
from __future__ import annotations

import secrets
import shutil
import subprocess
import sys
import time

import pytest
import requests
from browser import AVAILABLE, MISSING, start_chromium
from hub_fixtures import Hub, ensure_images

from whale_hub.engine import free_port

pytestmark = [pytest.mark.hub, pytest.mark.browser, pytest.mark.skipif(not AVAILABLE, reason=MISSING)]

PROVIDER_CONFIG = """c = get_config()  # noqa
c.JupyterHub.bind_url = "http://127.0.0.1:{port}"
c.JupyterHub.hub_bind_url = "http://127.0.0.1:{hub_port}"
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api_port}"
c.JupyterHub.db_url = "sqlite:///{state}/provider.sqlite"
c.JupyterHub.cookie_secret_file = "{state}/cookie_secret"
c.JupyterHub.pid_file = "{state}/provider.pid"
c.JupyterHub.authenticator_class = "dummy"
c.DummyAuthenticator.password = "{password}"
c.Authenticator.allow_all = True
# The site is this provider's OAuth client.
c.JupyterHub.services = [{{
    "name": "whale-site",
    "oauth_client_id": "service-whale-site",
    "api_token": "{secret}",
    "oauth_redirect_uri": "{site}/hub/oauth_callback",
    "oauth_no_confirm": True,
}}]
# Everyone signed in here may sign in to the site with it.
c.JupyterHub.load_roles = [{{"name": "user", "scopes": ["self", "access:services!service=whale-site"]}}]
"""


@pytest.fixture(scope="module")
def provider(tmp_path_factory):
    """A JupyterHub that signs people in with a shared password and hands out OAuth codes."""
    state = tmp_path_factory.mktemp("oauth-provider")
    port, site_port = free_port(), free_port()
    secret, password = secrets.token_hex(16), secrets.token_hex(8)
    (state / "provider_config.py").write_text(PROVIDER_CONFIG.format(
        port=port, hub_port=free_port(), proxy_api_port=free_port(), state=state,
        password=password, secret=secret, site=f"http://127.0.0.1:{site_port}"))
    with open(state / "provider.log", "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "jupyterhub", "-f", "provider_config.py"],
                                cwd=state, stdout=log, stderr=subprocess.STDOUT)
    # The browser reaches the provider as localhost and the site as 127.0.0.1: cookies
    # are kept per host, not per port, and both hubs name theirs alike.
    url = f"http://localhost:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{port}/hub/api/", timeout=2).ok:
                    break
            except requests.RequestException:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("provider did not start:\n" + (state / "provider.log").read_text()[-3000:])
            time.sleep(0.2)
        yield {"url": url, "api": f"http://127.0.0.1:{port}/hub/api", "secret": secret,
               "password": password, "site_port": site_port, "log": state / "provider.log"}
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def site(tmp_path_factory, host_docker, lesson_mirror, provider):
    ensure_images()
    api = provider["api"]  # the site's own requests to the provider
    hub = Hub(tmp_path_factory.mktemp("oauth-site"), port=provider["site_port"], extra_env={
        "WHALE_AUTH": "oauth", "WHALE_PROVIDER": "sandbox", "WHALE_REGISTRY_MIRROR": lesson_mirror.url,
        "WHALE_PUBLIC_URL": f"http://127.0.0.1:{provider['site_port']}",
        "WHALE_OAUTH_CLIENT_ID": "service-whale-site", "WHALE_OAUTH_CLIENT_SECRET": provider["secret"],
        "WHALE_OAUTH_AUTHORIZE_URL": f"{provider['url']}/hub/api/oauth2/authorize",  # the browser's
        "WHALE_OAUTH_TOKEN_URL": f"{api}/oauth2/token",
        "WHALE_OAUTH_USERDATA_URL": f"{api}/user"})
    yield hub
    hub.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    profile = tmp_path_factory.mktemp("chromium-oauth")
    driver = start_chromium(profile / "p")
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def wait_for(what, timeout: float, message):
    from selenium.common.exceptions import WebDriverException

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if what():
                return
        except WebDriverException:
            pass
        time.sleep(0.2)
    raise AssertionError(message())


def test_a_learner_signs_in_through_an_oauth_provider_and_gets_a_server(site, provider, browser):
    name = f"{site.prefix}-oauth-ada"
    site.users.append(name)
    site.made.append(name)
    browser.get(f"{site.url}/hub/oauth_login")
    # At the provider: its own sign-in page, not the site's.
    wait_for(lambda: browser.current_url.startswith(f"{provider['url']}/hub/login"), 30,
             lambda: f"not sent to the provider: at {browser.current_url}")
    browser.find_element("id", "username_input").send_keys(name)
    browser.find_element("id", "password_input").send_keys(provider["password"])
    browser.find_element("id", "login_submit").click()
    # Back at the site, signed in as the provider's user, and on to their own server.
    wait_for(lambda: browser.current_url.startswith(f"{site.url}/user/{name}/"), 180,
             lambda: f"never reached the notebook server: at {browser.current_url}\n"
                     f"{browser.find_element('tag name', 'body').text[:1000]}\n"
                     f"site log:\n{site.log_tail(3000)}\nprovider log:\n"
                     f"{provider['log'].read_text()[-2000:]}")
    user = site.api("GET", f"/users/{name}").json()
    assert user["servers"][""]["ready"], user
    # The server is wired to the learner's own sandbox engine.
    assert site.run(name, "docker info -f '{{.OSType}}'").strip() == "linux"
    # A wrong password at the provider signs nobody in at the site.
    for url in (provider["url"], site.url):
        browser.get(f"{url}/hub/login")
        browser.delete_all_cookies()
    browser.get(f"{site.url}/hub/oauth_login")
    wait_for(lambda: browser.current_url.startswith(f"{provider['url']}/hub/login"), 30,
             lambda: f"not sent to the provider: at {browser.current_url}")
    browser.find_element("id", "username_input").send_keys(f"{site.prefix}-oauth-eve")
    browser.find_element("id", "password_input").send_keys("not-the-password")
    browser.find_element("id", "login_submit").click()
    time.sleep(2)
    assert browser.current_url.startswith(f"{provider['url']}/hub/login"), browser.current_url
    assert site.api("GET", f"/users/{site.prefix}-oauth-eve").status_code == 404
