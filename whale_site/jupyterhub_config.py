"""JupyterHub configuration of the embedded default site (what `whale up` runs).

Everything on one machine: the hub and its proxy on the host, each learner's server
and sandbox engine as containers on the host's Docker engine. Settings come from the
environment `whale up` prepares (see whale_site/site.py):

    WHALE_STATE            state directory (database, cookie secret, engines' TLS files)
    WHALE_PORT             public port (8000)
    WHALE_BIND_IP          public address (127.0.0.1; 0.0.0.0 for a classroom)
    WHALE_HUB_CONNECT_IP   where containers reach the hub's API, and the only address it
                           listens on (the Docker bridge gateway)
    WHALE_HUB_PORT         the hub's API port (8081)
    WHALE_PROXY_API_PORT   the proxy's API port, on 127.0.0.1 (8001)
    WHALE_PROGRESS_PORT    the progress service's port, on WHALE_HUB_CONNECT_IP (the hub's
                           API port + 1): learners' servers report checks there, so the
                           host firewall must let learners reach it (whale_site/firewall.py)
    WHALE_PROGRESS_DB_URL  the progress service's database (SQLite beside the hub's own)
    WHALE_INSTRUCTORS      comma-separated names put in the `instructors` group at start
    WHALE_REGISTRY_MIRROR  lesson registry mirror for sandbox engines
    WHALE_PROVIDER         sandbox | byoc | choice
    WHALE_ENGINE_NODES     nodes of a learner's hosted engine unless they choose (1)
    WHALE_MAX_NODES        the most nodes a learner may choose on the spawn form (3)
    WHALE_AUTH             firstuse (the default: the first sign-in with a new name sets
                           its password) | oauth (any OAuth 2 provider: WHALE_OAUTH_*
                           below) | dummy (a shared password, for tests)
    WHALE_OAUTH_CLIENT_ID, WHALE_OAUTH_CLIENT_SECRET, WHALE_OAUTH_AUTHORIZE_URL,
    WHALE_OAUTH_TOKEN_URL, WHALE_OAUTH_USERDATA_URL, WHALE_OAUTH_USERNAME_CLAIM (name),
    WHALE_OAUTH_SCOPE      the OAuth provider (WHALE_AUTH=oauth); WHALE_PUBLIC_URL is
                           where learners reach the site (the callback's base)
    WHALE_ADMIN_TOKEN      optional: an API token with admin scopes (tests, benchmarks)
    WHALE_CONCURRENT_STARTS  learners' servers that start at once; the others wait in line,
                           told their place (0: twice the CPUs, at least 2)
    WHALE_SPAWN_LIMIT      learners who may be starting or waiting in line at once (100);
                           beyond it the hub asks them to wait a moment
    WHALE_MAX_LEARNERS     servers running at once (default: what memory holds, at
                           WHALE_LEARNER_MIB (160) per learner, 2 GiB kept for the host)
    JUPYTERHUB_CRYPT_KEY   key of the encrypted auth_state (uploaded bundles)
    WHALE_DB_URL           the hub's database (default: SQLite in the state directory);
                           e.g. postgresql+psycopg2://whale@db:5432/jupyterhub
    WHALE_DB_PASSWORD_FILE the database password, read from this file (a Docker secret)

For a public site, sign learners in with an OAuth provider: WHALE_AUTH=oauth (tested
against a real provider in tests/test_oauth.py), or any other oauthenticator class in a
configuration of your own that loads this one (`load_subconfig`).
"""
import os
import sys
from pathlib import Path

from whale_core.layout import engines_dir, hub_dir
from whale_hub.pool import keep_warm
from whale_progress import ACCESS_SCOPE, INSTRUCTORS_GROUP, READ_SCOPE, SERVICE_NAME

c = get_config()  # noqa: F821 - provided by JupyterHub when it loads this file

hub_state = hub_dir()
hub_state.mkdir(parents=True, exist_ok=True)
os.chmod(hub_state, 0o700)

c.JupyterHub.bind_url = (f"http://{os.environ.get('WHALE_BIND_IP', '127.0.0.1')}:"
                         f"{os.environ.get('WHALE_PORT', '8000')}")
# The hub's API listens only where learners' servers reach it: the Docker bridge
# gateway (the host firewall lets learners' networks reach this port there, and nothing
# outside the machine reaches that address); the proxy and hub services on the host
# reach it there too.
hub_ip = os.environ.get("WHALE_HUB_CONNECT_IP", "172.17.0.1")
hub_port = int(os.environ.get("WHALE_HUB_PORT", "8081"))
hub_api = f"http://{hub_ip}:{hub_port}"
c.JupyterHub.hub_bind_url = hub_api
c.JupyterHub.hub_connect_url = hub_api
# On a Swarm (whale deploy) the hub runs in a container that joins each learner's network
# as `hub`: it listens on all of its networks, and learners' servers reach it by that name.
swarm_site = os.environ.get("WHALE_SITE_MODE") == "swarm"
if swarm_site:
    hub_ip = "hub"
    hub_api = f"http://{hub_ip}:{hub_port}"
    c.JupyterHub.hub_bind_url = f"http://0.0.0.0:{hub_port}"
    c.JupyterHub.hub_connect_url = hub_api
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{os.environ.get('WHALE_PROXY_API_PORT', '8001')}"
c.ConfigurableHTTPProxy.should_start = True
c.JupyterHub.db_url = os.environ.get("WHALE_DB_URL") or f"sqlite:///{hub_state / 'jupyterhub.sqlite'}"
if os.environ.get("WHALE_DB_PASSWORD_FILE"):
    # The password joins the URL here, in memory: JupyterHub writes "[redacted]" for it
    # wherever it logs the URL.
    from urllib.parse import quote as _quote
    from urllib.parse import urlsplit as _urlsplit
    with open(os.environ["WHALE_DB_PASSWORD_FILE"]) as _f:
        _password = _quote(_f.read().strip(), safe="")
    _url = _urlsplit(c.JupyterHub.db_url)
    c.JupyterHub.db_url = _url._replace(
        netloc=f"{_url.username}:{_password}@{_url.hostname}:{_url.port or 5432}").geturl()
c.JupyterHub.cookie_secret_file = os.environ.get("WHALE_COOKIE_SECRET_FILE") or str(
    hub_state / "cookie_secret")
if os.environ.get("WHALE_CRYPT_KEY_FILE"):
    # A Docker secret (whale deploy): the key of the encrypted auth_state, in no file of
    # the hub's volume and no process's environment but this one.
    with open(os.environ["WHALE_CRYPT_KEY_FILE"]) as _f:
        os.environ["JUPYTERHUB_CRYPT_KEY"] = _f.read().strip()
c.JupyterHub.pid_file = str(hub_state / "jupyterhub.pid")
c.JupyterHub.cleanup_servers = False  # `whale down` keeps learners' servers' work
# Answer "spawn started" at once so the spawn page shows the real progress events.
c.JupyterHub.tornado_settings = {"slow_spawn_timeout": 0}

# Learners' servers: the single-user image, wired to their own engine.
c.JupyterHub.spawner_class = "whale"
c.WhaleSpawner.provider = os.environ.get("WHALE_PROVIDER", "choice")
c.WhaleSpawner.state_dir = str(engines_dir())
c.WhaleSpawner.registry_mirror = os.environ.get("WHALE_REGISTRY_MIRROR", "")
c.WhaleSpawner.engine_swarm = os.environ.get("WHALE_SWARM", "0") == "1"
# The Swarm lessons (12 and 13) want 3 nodes: learners choose them on the spawn form.
c.WhaleSpawner.engine_nodes = int(os.environ.get("WHALE_ENGINE_NODES", "1"))
c.WhaleSpawner.engine_max_nodes = int(os.environ.get("WHALE_MAX_NODES", "3"))
# A warm pool (whale_hub.pool): engines already started, waiting for learners' first
# starts. Before a class, set it to the class's size; each waiting engine holds ~50 MiB.
# (One machine only: a deployed site's engines are Swarm services, placed at the start.)
c.WhaleSpawner.engine_pool_size = int(os.environ.get("WHALE_ENGINE_POOL", "0" if swarm_site else "2"))
if os.environ.get("WHALE_ENGINE_IMAGE"):
    c.WhaleSpawner.engine_image = os.environ["WHALE_ENGINE_IMAGE"]
if os.environ.get("WHALE_SINGLEUSER_IMAGE"):
    c.WhaleSpawner.image = os.environ["WHALE_SINGLEUSER_IMAGE"]
if swarm_site:
    # Pid files go with the container, not the hub's volume: a new container of the hub
    # would take an old pid file's number for its proxy, and end whatever has it now.
    c.JupyterHub.pid_file = "/tmp/jupyterhub.pid"  # noqa: S108 - the container's own /tmp
    c.ConfigurableHTTPProxy.pid_file = "/tmp/jupyterhub-proxy.pid"  # noqa: S108
    # A site of several machines (whale deploy, whale_site/deploy.py): learners' engines
    # and servers are Swarm services, placed by Swarm's scheduler (whale_hub.swarm).
    c.JupyterHub.spawner_class = "whale_hub.swarm.WhaleSwarmSpawner"
    c.WhaleSwarmSpawner.stack = os.environ.get("WHALE_STACK", "whale")
    c.Spawner.poll_interval = int(os.environ.get("WHALE_POLL_INTERVAL", "30"))
c.Spawner.http_timeout = 90
c.Spawner.start_timeout = 180
keep_warm()  # fills the pool once the hub is up (one-machine sites only)


# A whole class pressing Start at once: a few start at a time and the others wait in
# line, their spawn page saying their place (WhaleSpawner.concurrent_starts). The hub
# refuses only beyond these limits, with a plain page that tries again by itself
# (whale_site/templates/429.html) instead of JupyterHub's "429 Too Many Requests".
def seats_in_memory(per_learner_mib: int, kept_mib: int = 2048) -> int:
    """How many learners this machine's memory holds (an idle learner's server and
    engine with a kernel: benchmarks/spawn.py measures it), keeping some for the host."""
    with open("/proc/meminfo") as meminfo:
        total_kib = next(int(line.split()[1]) for line in meminfo if line.startswith("MemTotal:"))
    return max(1, (total_kib // 1024 - kept_mib) // per_learner_mib)


c.WhaleSpawner.concurrent_starts = int(os.environ.get("WHALE_CONCURRENT_STARTS", "0"))
c.JupyterHub.concurrent_spawn_limit = int(os.environ.get("WHALE_SPAWN_LIMIT", "100"))
c.JupyterHub.active_server_limit = int(os.environ.get("WHALE_MAX_LEARNERS") or seats_in_memory(
    int(os.environ.get("WHALE_LEARNER_MIB", "160"))))
c.JupyterHub.template_paths = [str(Path(__file__).resolve().parent / "templates")]

# Sign-in: a workshop works out of the box (learners sign up with a password of their
# choosing); the encrypted auth_state holds uploaded bundles.
auth = os.environ.get("WHALE_AUTH", "firstuse")
if auth == "dummy":
    c.JupyterHub.authenticator_class = "dummy"
    c.DummyAuthenticator.password = os.environ.get("WHALE_DUMMY_PASSWORD", "whale")
elif auth == "oauth":
    # Any OAuth 2 provider (your school's, GitHub's, another JupyterHub): oauthenticator's
    # GenericOAuthenticator, set up from the environment. The callback to register with
    # the provider is <the site's URL>/hub/oauth_callback.
    c.JupyterHub.authenticator_class = "generic-oauth"
    c.GenericOAuthenticator.client_id = os.environ["WHALE_OAUTH_CLIENT_ID"]
    c.GenericOAuthenticator.client_secret = os.environ["WHALE_OAUTH_CLIENT_SECRET"]
    c.GenericOAuthenticator.authorize_url = os.environ["WHALE_OAUTH_AUTHORIZE_URL"]
    c.GenericOAuthenticator.token_url = os.environ["WHALE_OAUTH_TOKEN_URL"]
    c.GenericOAuthenticator.userdata_url = os.environ["WHALE_OAUTH_USERDATA_URL"]
    c.GenericOAuthenticator.username_claim = os.environ.get("WHALE_OAUTH_USERNAME_CLAIM", "name")
    c.GenericOAuthenticator.scope = os.environ.get("WHALE_OAUTH_SCOPE", "").split()
    c.GenericOAuthenticator.oauth_callback_url = (
        os.environ.get("WHALE_PUBLIC_URL", c.JupyterHub.bind_url).rstrip("/") + "/hub/oauth_callback")
else:
    # First use: the first sign-in with a new name creates that learner with the
    # password given (a learner can change it at /hub/auth/change-password).
    c.JupyterHub.authenticator_class = "firstuseauthenticator.FirstUseAuthenticator"
    c.FirstUseAuthenticator.create_users = True
    c.FirstUseAuthenticator.min_password_length = 8
    c.FirstUseAuthenticator.dbm_path = str(hub_state / "passwords.dbm")
c.Authenticator.allow_all = True
c.Authenticator.admin_users = set(filter(None, os.environ.get("WHALE_ADMINS", "").split(",")))
c.Authenticator.enable_auth_state = bool(os.environ.get("JUPYTERHUB_CRYPT_KEY"))

# The idle culler runs as a hub service: servers idle for an hour are stopped
# (their engines are stopped too; work is kept).
c.JupyterHub.services = [{
    "name": "idle-culler",
    "command": [sys.executable, "-m", "jupyterhub_idle_culler",
                f"--timeout={os.environ.get('WHALE_IDLE_TIMEOUT', '3600')}"],
}]
# The janitor removes engines, networks and bundles of learners who were deleted.
c.JupyterHub.services.append({
    "name": "whale-janitor",
    "command": [sys.executable, "-m", "whale_hub.janitor",
                f"--state-dir={engines_dir()}"],
})
c.JupyterHub.load_roles = [{
    "name": "idle-culler",
    "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
    "services": ["idle-culler"],
}, {
    "name": "whale-janitor",
    "scopes": ["list:users"],
    "services": ["whale-janitor"],
}]

# Lesson progress (whale_progress): whale-check in a learner's server reports each check
# here with the server's own token; for a hosted engine the service runs the check again
# itself with the hub's credentials and records that as verified. It listens beside the
# hub's API, where learners' servers reach the host (the proxy routes browsers to it at
# /services/whale-progress/). Instructors (the `instructors` group) and admins see
# everyone at /services/whale-progress/dashboard.
progress_url = f"http://{hub_ip}:{int(os.environ.get('WHALE_PROGRESS_PORT') or hub_port + 1)}"
c.JupyterHub.services.append({
    "name": SERVICE_NAME,
    "url": progress_url,
    # On a Swarm it listens on every network of the hub's container (see hub_ip).
    "environment": {"WHALE_PROGRESS_BIND_IP": "0.0.0.0"} if swarm_site else {},  # noqa: S104
    "command": [sys.executable, "-m", "whale_progress", f"--state-dir={engines_dir()}",
                "--db-url=" + os.environ.get("WHALE_PROGRESS_DB_URL",
                                             f"sqlite:///{hub_state / 'whale-progress.sqlite'}")],
    "display": True,  # in the hub's Services menu: "My progress" / the dashboard
    "oauth_no_confirm": True,  # the site's own service
    # Browsers' tokens for the service may carry the read scope (instructors hold it).
    "oauth_client_allowed_scopes": [READ_SCOPE],
})
c.JupyterHub.custom_scopes = {READ_SCOPE: {
    "description": "See learners' lesson progress in whale-progress (the instructors' dashboard)."}}
c.JupyterHub.load_groups = {INSTRUCTORS_GROUP: {"users": [
    name for name in os.environ.get("WHALE_INSTRUCTORS", "").split(",") if name]}}
c.JupyterHub.load_roles += [{
    # Every learner may use the service (their own progress page, and their server's reports).
    "name": "user",
    "scopes": ["self", ACCESS_SCOPE],
}, {
    "name": "whale-instructor",
    "scopes": [READ_SCOPE, ACCESS_SCOPE],
    "groups": [INSTRUCTORS_GROUP],
}, {
    "name": SERVICE_NAME,
    "scopes": ["list:users", "read:users:name", "read:users:activity"],
    "services": [SERVICE_NAME],
}]
# A learner's server token (JUPYTERHUB_API_TOKEN) may reach the service: the default
# `server` role's scopes and that one.
c.Spawner.server_token_scopes = ["users:activity!user", "access:servers!server", ACCESS_SCOPE]
c.Spawner.environment = {"WHALE_PROGRESS_URL": f"{progress_url}/services/{SERVICE_NAME}/"}

token = os.environ.get("WHALE_ADMIN_TOKEN")
if token:
    c.JupyterHub.services.append({"name": "whale-admin", "api_token": token})
    c.JupyterHub.load_roles.append({
        "name": "whale-admin",
        "scopes": ["admin:users", "admin:servers", "access:servers", "read:users",
                   "admin:auth_state", "admin:groups", "tokens"],
        "services": ["whale-admin"],
    })
