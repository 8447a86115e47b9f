"""The hub on PostgreSQL (issue 10: what `whale deploy` runs): the site's database image
(images/postgres, Debian's PostgreSQL 15) and a real hub whose learners and API tokens
live there, across a restart of the hub and of the database's container. The password
travels in a file, as a Docker secret does, and shows up in no log and no inspect."""
from __future__ import annotations

import os
import secrets
import subprocess
import time

import pytest
from hub_fixtures import Hub, ensure_images

from whale_hub.engine import free_port
from whale_site import images

pytestmark = [pytest.mark.docker, pytest.mark.hub]


@pytest.fixture(scope="module")
def database(host_docker, tmp_path_factory):
    """(port, password file, container): the site's database on 127.0.0.1:port."""
    images.ensure_site_images(only=["howtowhale/postgres"])
    secret_dir = tmp_path_factory.mktemp("db-secret")
    secret_dir.chmod(0o700)
    password = secrets.token_urlsafe(24)
    pwfile = secret_dir / "whale_db_password"
    pwfile.write_text(password)
    pwfile.chmod(0o444)  # as Docker mounts a secret (the directory keeps others out)
    port = free_port()
    container = host_docker.containers.run(
        "howtowhale/postgres", detach=True, name=f"whale-test-db-{os.getpid()}",
        ports={"5432/tcp": ("127.0.0.1", port)},
        volumes={str(pwfile): {"bind": "/run/secrets/whale_db_password", "mode": "ro"}},
        labels={"org.howtowhale.test": str(os.getpid())})
    try:
        wait_ready(container)
        yield port, pwfile, container
    finally:
        container.remove(force=True, v=True)


def wait_ready(container, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        container.reload()
        if container.status == "exited":
            raise AssertionError("the database exited:\n" + container.logs().decode())
        done = container.exec_run(["pg_isready", "-q", "-h", "127.0.0.1"], user="postgres")
        if done.exit_code == 0:
            return
        time.sleep(0.3)
    raise AssertionError("the database never got ready:\n" + container.logs().decode())


def psql(container, sql: str) -> str:
    done = container.exec_run(["psql", "-XAtq", "-d", "jupyterhub", "-c", sql], user="postgres")
    assert done.exit_code == 0, done.output.decode()
    return done.output.decode().strip()


def test_the_hubs_learners_and_tokens_live_in_postgresql_across_restarts(database, tmp_path):
    port, pwfile, container = database
    ensure_images()
    env = {"WHALE_DB_URL": f"postgresql+psycopg2://whale@127.0.0.1:{port}/jupyterhub",
           "WHALE_DB_PASSWORD_FILE": str(pwfile)}
    hub = Hub(tmp_path, extra_env=env)
    try:
        ann = hub.user("ann")
        made = hub.api("POST", f"/users/{ann}/tokens", json={"note": "kept"})
        assert made.status_code == 201, made.text
        token = made.json()["token"]
    finally:
        hub.close()
    # The hub's tables are PostgreSQL's, not a SQLite file's.
    assert ann in psql(container, "SELECT name FROM users").splitlines()
    assert not (tmp_path / "hub" / "jupyterhub.sqlite").exists()

    container.restart(timeout=10)  # the database's container too: its data is on a volume
    wait_ready(container)
    again = Hub(tmp_path, extra_env=env)
    try:
        assert again.api("GET", f"/users/{ann}").status_code == 200
        who = again.session.get(f"{again.url}/hub/api/user", timeout=10,
                                headers={"Authorization": f"token {token}"})
        assert who.status_code == 200, who.text
        assert who.json()["name"] == ann
        log = again.log_tail(1_000_000)
    finally:
        again.close()

    password = pwfile.read_text()
    assert password not in log
    container.reload()
    assert password not in str(container.attrs["Config"]) + str(container.attrs["Args"])
    assert password not in container.logs().decode()


def test_a_database_without_its_password_file_says_so_and_stops(host_docker):
    name = f"whale-test-db-nopw-{os.getpid()}"
    done = subprocess.run(["docker", "run", "--rm", "--name", name, "howtowhale/postgres"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip() == "whale-postgres: no password file /run/secrets/whale_db_password"
