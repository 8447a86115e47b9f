"""`whale deploy`: the site as a Docker stack on the Swarm the current Docker context
manages (issue 10). `whale deploy --down` removes it and keeps learners' work.

The stack (its name: WHALE_STACK, or `whale`):

- `hub`: JupyterHub with its proxy, the idle culler, the janitor and the progress service
  (images/hub), on the *site node*. It talks to the Swarm through the node's Docker socket
  (so the site node is a manager) and starts each learner's engine and server as Swarm
  services (whale_hub.swarm). Its database is `db`; its crypt key (the encrypted
  auth_state) and cookie secret are Swarm secrets; the rest of its state (first-use
  passwords, engines' CAs) is on the `hub` volume.
- `db`: PostgreSQL (images/postgres), its data on the `db` volume, its password a secret.
- `registry`: the lesson registry (Distribution), read-only, published on the site node's
  port 5000. It holds the lesson images (`library/<name>`, learners' engines pull through
  it as their mirror) and the images of learners' engines and servers, which every node
  pulls from `<site node>:5000`, as lesson 13 teaches learners to do.

The site's services are pinned to the site node (the node label
`org.howtowhale.site-node=true`, given to the manager the context names), because their
volumes are that node's. Learners go wherever Swarm's scheduler puts them among the nodes
labelled `org.howtowhale.learners=true`.

Images reach the site node with `docker save | docker load` through the context, once per
image version. The registry is filled through a second, writable registry container on
the site node's loopback (127.0.0.1:5001, on the same volume), which only runs while
`whale deploy` pushes: no learner ever sees a writable registry.

Secrets are made once, from `secrets.token_hex`, and handed to `docker secret create` on
stdin: they are in no file, log or argument.
"""
from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import docker

from whale_core.bundle import BUNDLE_FILES, pinned_docker_client_class
from whale_core.layout import SITE_LABEL

from . import images

STACK = os.environ.get("WHALE_STACK") or "whale"
SITE_NODE_LABEL = "org.howtowhale.site-node"
LEARNERS_LABEL = "org.howtowhale.learners"
REGISTRY_PORT = 5000
SEED_PORT = 5001
#: The user images/postgres runs as (Debian's postgres).
POSTGRES_UID, POSTGRES_GID = "100", "102"
#: The site's Swarm secrets (made once, kept by --down: the encrypted state needs its key).
SECRETS = ("whale_crypt_key", "whale_cookie_secret", "whale_db_password")
#: Images that run only on the site node (loaded there), and those every node pulls.
SITE_NODE_IMAGES = ("howtowhale/hub", "howtowhale/postgres")
LEARNER_IMAGES = ("howtowhale/engine", "howtowhale/singleuser")
#: Hub settings `whale deploy` hands on from its own environment (jupyterhub_config.py).
HUB_SETTINGS = ("WHALE_ADMINS", "WHALE_INSTRUCTORS", "WHALE_IDLE_TIMEOUT",
                "WHALE_POLL_INTERVAL", "WHALE_CONCURRENT_STARTS", "WHALE_SPAWN_LIMIT",
                "WHALE_MAX_LEARNERS", "WHALE_ENGINE_NODES", "WHALE_MAX_NODES")
#: The registry's configuration in the stack: read-only (pull yes, push and delete no).
REGISTRY_CONFIG = {
    "version": 0.1,
    "log": {"level": "warn", "accesslog": {"disabled": True}},
    "storage": {"filesystem": {"rootdirectory": "/var/lib/registry"},
                "maintenance": {"readonly": {"enabled": True}, "uploadpurging": {"enabled": False}}},
    "http": {"addr": ":5000", "headers": {"X-Content-Type-Options": ["nosniff"]}},
}


#: Each node's firewall (the `firewall` service, one task per node, in the node's own
#: network namespace): learners' containers and servers, whose traffic leaves their
#: node through docker_gwbridge, reach neither that node nor any other on the ports of
#: Docker and Swarm (the API, the Swarm's control plane and gossip, and VXLAN, whose
#: packets would reach into any overlay: the site's own network, other learners'), nor
#: link-local addresses (a cloud's metadata service). The site's registry (5000) and the
#: hub (the site's port) stay reachable. The rules go when the task stops.
NODE_FIREWALL = r"""
set -u
chain=WHALE-NODE
rules() {
  iptables -w -N $chain 2>/dev/null || iptables -w -F $chain
  for port in 2375 2376 2377 7946; do iptables -w -A $chain -p tcp --dport $port -j DROP; done
  for port in 4789 7946; do iptables -w -A $chain -p udp --dport $port -j DROP; done
  iptables -w -A $chain -d 169.254.0.0/16 -j DROP
  for parent in INPUT DOCKER-USER; do
    iptables -w -C $parent -i docker_gwbridge -j $chain 2>/dev/null \
      || iptables -w -I $parent -i docker_gwbridge -j $chain
  done
}
unrules() {
  for parent in INPUT DOCKER-USER; do iptables -w -D $parent -i docker_gwbridge -j $chain 2>/dev/null; done
  iptables -w -F $chain 2>/dev/null; iptables -w -X $chain 2>/dev/null
}
trap 'unrules; exit 0' TERM INT
until iptables -w -L DOCKER-USER -n >/dev/null 2>&1; do sleep 1; done
rules || { echo "whale-node-firewall: could not install the rules" >&2; exit 2; }
echo "whale-node-firewall: learners' containers kept off Docker's and Swarm's ports, link-local"
while :; do
  sleep 10 & wait $!
  # dockerd recreates DOCKER-USER when it restarts: put the jump back.
  iptables -w -C DOCKER-USER -i docker_gwbridge -j $chain 2>/dev/null || rules
done
"""


class DeployError(RuntimeError):
    """What stops a deploy, said in one line."""


class Swarm:
    """The Swarm a Docker CLI context manages: its CLI and an SDK client for it."""

    def __init__(self, context: str | None = None):
        self.context = context or os.environ.get("DOCKER_CONTEXT") or self._current()

    @staticmethod
    def _current() -> str:
        done = subprocess.run(["docker", "context", "show"], capture_output=True, text=True,
                              timeout=30)
        return done.stdout.strip() or "default"

    def cli(self, *args: str, input: str | bytes | None = None, check: bool = True,
            timeout: float = 600) -> str:
        done = subprocess.run(["docker", "--context", self.context, *args], input=input,
                              capture_output=True, timeout=timeout,
                              text=not isinstance(input, bytes))
        out = done.stdout if isinstance(done.stdout, str) else done.stdout.decode(errors="replace")
        err = done.stderr if isinstance(done.stderr, str) else done.stderr.decode(errors="replace")
        if check and done.returncode != 0:
            raise DeployError(f"docker {' '.join(args[:3])}: {err.strip() or out.strip()}")
        return out

    @property
    def env(self) -> dict[str, str]:
        """The environment in which `docker` talks to this Swarm's manager."""
        env = dict(os.environ, DOCKER_CONTEXT=self.context)
        env.pop("DOCKER_HOST", None)
        return env

    def client(self, timeout: int = 120) -> docker.DockerClient:
        meta = json.loads(self.cli("context", "inspect", self.context))[0]
        host = meta["Endpoints"]["docker"]["Host"]
        tls_dir = Path(meta["Storage"]["TLSPath"]) / "docker"
        tls = None
        ca, cert, key = (str(tls_dir / name) for name in BUNDLE_FILES[:3])  # the CLI's names
        if Path(ca).exists():
            tls = docker.tls.TLSConfig(client_cert=(cert, key), ca_cert=ca, verify=ca)
        # A client that checks the manager against the context's CA, whatever
        # REQUESTS_CA_BUNDLE says (whale_core.bundle).
        return pinned_docker_client_class()(base_url=host, tls=tls, timeout=timeout, version="auto")


def say(text: str) -> None:
    print(f"whale: {text}", flush=True)


def _image_id(tag: str, env: dict[str, str] | None = None) -> str | None:
    done = subprocess.run(["docker", "image", "inspect", "--format", "{{.Id}}", tag],
                          capture_output=True, text=True, env=env, timeout=60)
    return done.stdout.strip() if done.returncode == 0 else None


def version_of(image_id: str) -> str:
    """The tag an image version is deployed under: its id's first 12 hex digits."""
    return image_id.split(":")[-1][:12]


def send_images(swarm: Swarm, tags: list[str]) -> dict[str, str]:
    """Load the images the site node lacks into it (`docker save | docker load`); their
    ids by tag."""
    ids = {}
    missing = []
    for tag in tags:
        ids[tag] = _image_id(tag)
        if ids[tag] is None:
            raise DeployError(f"the image {tag} is not on this machine (whale images)")
        if _image_id(tag, swarm.env) != ids[tag]:
            missing.append(tag)
    if missing:
        say(f"sending {', '.join(missing)} to the site node ...")
        save = subprocess.Popen(["docker", "save", *missing], stdout=subprocess.PIPE)
        load = subprocess.run(["docker", "load", "-q"], stdin=save.stdout, env=swarm.env,
                              capture_output=True, text=True, timeout=1800)
        save.stdout.close()
        if save.wait(60) != 0 or load.returncode != 0:
            raise DeployError(f"could not load the images on the site node: {load.stderr.strip()}")
    return ids


def site_node(client: docker.DockerClient) -> dict:
    """The manager the context talks to, labelled as the site node (the one node that holds
    the site's volumes). Another node labelled so stops the deploy."""
    info = client.info()
    swarm = info.get("Swarm") or {}
    if swarm.get("LocalNodeState") != "active":
        raise DeployError(f"the engine of this Docker context ({info.get('Name')}) is in no Swarm: "
                          "make one (`docker swarm init`, or `whale cluster up 3` to practise)")
    if not swarm.get("ControlAvailable"):
        raise DeployError(f"{info.get('Name')} is a worker of its Swarm: deploy through a "
                          "manager's context")
    me = swarm["NodeID"]
    for node in client.nodes.list():
        labels = node.attrs["Spec"].get("Labels") or {}
        if labels.get(SITE_NODE_LABEL) == "true" and node.id != me:
            raise DeployError(f"the site's volumes are on {node.attrs['Description']['Hostname']} "
                              f"(node label {SITE_NODE_LABEL}): deploy through its context")
    node = client.nodes.get(me)
    spec = dict(node.attrs["Spec"])
    if (spec.get("Labels") or {}).get(SITE_NODE_LABEL) != "true":
        spec["Labels"] = {**(spec.get("Labels") or {}), SITE_NODE_LABEL: "true"}
        node.update(spec)
    return {"id": me, "address": swarm["NodeAddr"], "hostname": info["Name"]}


@contextlib.contextmanager
def writable_registry(swarm: Swarm, stack: str, registry_image: str):
    """A writable registry on the site node's loopback, on the stack's registry volume, for
    as long as the pushes take: `127.0.0.1:<SEED_PORT>` as the site node's dockerd sees it
    (it trusts loopback registries without TLS)."""
    name = f"{stack}-seed"
    swarm.cli("rm", "-f", name, check=False)
    swarm.cli("run", "-d", "--name", name, "-p", f"127.0.0.1:{SEED_PORT}:5000",
              "--label", f"com.docker.stack.namespace={stack}",
              "-v", f"{stack}_registry:/var/lib/registry", registry_image)
    try:
        deadline = time.monotonic() + 30
        while swarm.cli("exec", name, "/bin/registry", "--version", check=False) == "":
            if time.monotonic() > deadline:
                raise DeployError("the writable registry did not start")
            time.sleep(0.5)
        yield f"127.0.0.1:{SEED_PORT}"
    finally:
        swarm.cli("rm", "-f", name, check=False)


def push(swarm: Swarm, source: str, target: str) -> None:
    swarm.cli("tag", source, target)
    try:
        for attempt in range(20):  # the registry may take a moment to listen
            done = subprocess.run(["docker", "push", "-q", target], env=swarm.env,
                                  capture_output=True, text=True, timeout=1800)
            if done.returncode == 0:
                return
            if "connection refused" not in done.stderr or attempt == 19:
                raise DeployError(f"could not push {target}: {done.stderr.strip()}")
            time.sleep(0.5)
    finally:
        swarm.cli("image", "rm", target, check=False)


def fill_registry(swarm: Swarm, stack: str, ids: dict[str, str]) -> str:
    """Build the lesson images on the site node and push them, and the learners' engine and
    server images, to the stack's registry; the registry image's tag."""
    say("building the lesson images on the site node ...")
    registry_image = images.build_lesson_image("registry", env=swarm.env,
                                               tag="howtowhale/lesson-registry")
    with writable_registry(swarm, stack, registry_image) as endpoint:
        say("filling the site's registry ...")
        for name in images.lesson_image_names():
            for version in [None, *images.lesson_image_versions(name)]:
                tag = f"{name}:{version}" if version else name
                images.build_lesson_image(name, env=swarm.env, tag=tag, version=version)
                push(swarm, tag, f"{endpoint}/library/{name}:{version or 'latest'}")
        for tag in LEARNER_IMAGES:
            push(swarm, tag, f"{endpoint}/{tag}:{version_of(ids[tag])}")
    return registry_image


def ensure_secrets(client: docker.DockerClient) -> list[str]:
    """Make the site's secrets that do not exist yet; their names."""
    have = {s.name for s in client.secrets.list()}
    made = []
    for name in SECRETS:
        if name not in have:
            client.secrets.create(name=name, data=secrets.token_hex(32).encode(),
                                  labels={"org.howtowhale.role": "site-secret"})
            made.append(name)
    return made


def stack_file(*, stack: str, node: dict, ids: dict[str, str], registry_image: str,
               port: int, hub_env: dict[str, str] | None = None) -> dict:
    """The stack, as a Compose file (a dict; JSON is YAML)."""
    # Services are found by their names' DNS records (dnsrr), not by a virtual IP: a VIP
    # needs IPVS in the nodes' kernels, which not every kernel has.
    pinned = {"placement": {"constraints": [f"node.labels.{SITE_NODE_LABEL}==true"]},
              "endpoint_mode": "dnsrr"}
    registry = f"{node['hostname']}:{REGISTRY_PORT}"
    db_url = "postgresql+psycopg2://whale@db:5432/jupyterhub"
    env = {
        "WHALE_SITE_MODE": "swarm",
        "WHALE_STACK": stack,
        "WHALE_DB_URL": db_url,
        "WHALE_DB_PASSWORD_FILE": "/run/secrets/whale_db_password",
        "WHALE_CRYPT_KEY_FILE": "/run/secrets/whale_crypt_key",
        "WHALE_COOKIE_SECRET_FILE": "/run/secrets/whale_cookie_secret",
        "WHALE_BIND_IP": "0.0.0.0",  # noqa: S104 - the hub's container, published on the site node
        "WHALE_PORT": "8000",
        "WHALE_REGISTRY_MIRROR": f"http://{node['address']}:{REGISTRY_PORT}",
        "WHALE_ENGINE_IMAGE": f"{registry}/howtowhale/engine:{version_of(ids['howtowhale/engine'])}",
        "WHALE_SINGLEUSER_IMAGE":
            f"{registry}/howtowhale/singleuser:{version_of(ids['howtowhale/singleuser'])}",
        "WHALE_PROVIDER": "sandbox",
        **{k: os.environ[k] for k in HUB_SETTINGS if os.environ.get(k)},
        **(hub_env or {}),
    }
    secret = lambda name: {"source": name, "target": name, "mode": 0o400}  # noqa: E731
    return {
        "version": "3.8",
        "services": {
            "registry": {
                "image": registry_image,
                "configs": [{"source": "registry_config", "target": "/etc/docker/registry/config.yml"}],
                "volumes": ["registry:/var/lib/registry"],
                "ports": [{"target": 5000, "published": REGISTRY_PORT, "mode": "host"}],
                "networks": ["site"],
                "deploy": pinned,
            },
            "db": {
                "image": f"howtowhale/postgres:{version_of(ids['howtowhale/postgres'])}",
                # PostgreSQL runs as its own user, who reads the password.
                "secrets": [dict(secret("whale_db_password"), uid=POSTGRES_UID, gid=POSTGRES_GID)],
                "volumes": ["db:/var/lib/postgresql/data"],
                "networks": ["site"],
                "deploy": pinned,
            },
            "hub": {
                "image": f"howtowhale/hub:{version_of(ids['howtowhale/hub'])}",
                "environment": env,
                "secrets": [secret(name) for name in SECRETS],
                "volumes": ["hub:/srv/whale", "/var/run/docker.sock:/var/run/docker.sock"],
                "ports": [{"target": 8000, "published": port, "mode": "host"}],
                "networks": {"site": {"aliases": ["hub"]}},
                "deploy": {"placement": {"constraints": [
                    f"node.labels.{SITE_NODE_LABEL}==true", "node.role==manager"]},
                    "endpoint_mode": "dnsrr"},
            },
            "firewall": {
                "image": f"{registry}/howtowhale/engine:{version_of(ids['howtowhale/engine'])}",
                # $$: a Compose file's own "$" would substitute variables.
                "entrypoint": ["sh", "-c", NODE_FIREWALL.replace("$", "$$")],
                "cap_add": ["NET_ADMIN", "NET_RAW"],
                "networks": ["hostnet"],
                "deploy": {"mode": "global"},
            },
        },
        "networks": {"site": {"driver": "overlay", "attachable": True},
                     "hostnet": {"external": True, "name": "host"}},
        "volumes": {"registry": {}, "db": {}, "hub": {}},
        "secrets": {name: {"external": True} for name in SECRETS},
        "configs": {"registry_config": {"file": "registry.yml"}},
    }


def wait_for_site(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            # S310: the URL is the site's own http://address:port.
            with urllib.request.urlopen(f"{url}/hub/health", timeout=5) as r:  # noqa: S310
                if r.status == 200:
                    return
        except (OSError, urllib.error.URLError) as exc:
            last = str(exc)
        time.sleep(1)
    raise DeployError(f"the site did not answer at {url} within {timeout:.0f} s ({last})")


def wait_for_firewall(client: docker.DockerClient, stack: str, timeout: float) -> None:
    """Until the firewall runs on every node that is ready (learners come after it)."""
    deadline = time.monotonic() + timeout
    while True:
        ready = {n.id for n in client.nodes.list() if n.attrs["Status"].get("State") == "ready"}
        running = {t["NodeID"] for t in client.api.tasks(filters={
            "service": f"{stack}_firewall", "desired-state": "running"})
            if t["Status"]["State"] == "running"}
        if ready <= running:
            return
        if time.monotonic() > deadline:
            raise DeployError(f"the firewall runs on {len(running)} of the {len(ready)} nodes: "
                              f"docker service ps {stack}_firewall says why")
        time.sleep(1)


def deploy(*, context: str | None = None, stack: str = STACK, port: int = 8000,
           timeout: float = 300, hub_env: dict[str, str] | None = None) -> str:
    """Deploy (or update) the site's stack; its URL."""
    swarm = Swarm(context)
    client = swarm.client()
    try:
        node = site_node(client)
        say(f"deploying the stack {stack} to the Swarm of {swarm.context}; the site node is "
            f"{node['hostname']} ({node['address']})")
        images.ensure_site_images(only=[*SITE_NODE_IMAGES, *LEARNER_IMAGES])
        ids = send_images(swarm, [*SITE_NODE_IMAGES, *LEARNER_IMAGES])
        for tag in SITE_NODE_IMAGES:
            swarm.cli("tag", tag, f"{tag}:{version_of(ids[tag])}")
        registry_image = fill_registry(swarm, stack, ids)
        made = ensure_secrets(client)
        if made:
            say(f"made the secrets {', '.join(made)}")
        spec = stack_file(stack=stack, node=node, ids=ids, registry_image=registry_image,
                          port=port, hub_env=hub_env)
        with tempfile.TemporaryDirectory(prefix="whale-stack-") as tmp:
            (Path(tmp) / "registry.yml").write_text(json.dumps(REGISTRY_CONFIG, indent=1) + "\n")
            (Path(tmp) / "stack.yml").write_text(json.dumps(spec, indent=1) + "\n")
            say("deploying ...")
            swarm.cli("stack", "deploy", "--resolve-image", "never", "--prune", "-c",
                      str(Path(tmp) / "stack.yml"), stack)
        url = f"http://{node['address']}:{port}"
        wait_for_firewall(client, stack, timeout)
        wait_for_site(url, timeout)
        return url
    finally:
        client.close()


def down(*, context: str | None = None, stack: str = STACK, timeout: float = 120) -> list[str]:
    """Remove the stack and learners' servers and engines (Swarm services the hub made);
    keep every volume (learners' work, engines' data, the hub's state and database),
    learners' networks and the site's secrets. What was removed."""
    swarm = Swarm(context)
    client = swarm.client()
    try:
        removed = []
        ours = [s for s in client.services.list()
                if (s.attrs["Spec"].get("Labels") or {}).get("com.docker.stack.namespace") == stack
                or (s.attrs["Spec"].get("Labels") or {}).get("org.howtowhale.stack") == stack]
        learners = [s for s in ours if SITE_LABEL in (s.attrs["Spec"].get("Labels") or {})]
        for service in learners:
            service.remove()
            removed.append(service.name)
        if any(s not in learners for s in ours):
            swarm.cli("stack", "rm", stack)
            removed.append(f"stack {stack}")
        # Wait for the services and the stack's networks to go (Docker removes them after
        # `stack rm` returns), so that a deploy right after makes its own afresh and finds
        # the volumes free.
        deadline = time.monotonic() + timeout
        names = {s.name for s in ours}
        while time.monotonic() < deadline:
            if not [s for s in client.services.list() if s.name in names] and not \
                    client.networks.list(filters={"label": f"com.docker.stack.namespace={stack}"}):
                break
            time.sleep(1)
        # Learners' networks stay, like their volumes: the next deploy's learners use them
        # again (a network removed while its last containers were going stayed behind in
        # a node's own list, where a new container could not join it).
        return removed
    finally:
        client.close()


def main_deploy(args) -> int:
    try:
        if args.down:
            removed = down(context=args.context, stack=args.stack)
            say("removed " + (", ".join(removed) if removed else "nothing (no stack)")
                + "; learners' work, the database and the secrets are kept")
            return 0
        url = deploy(context=args.context, stack=args.stack, port=args.port)
    except DeployError as exc:
        print(f"whale: {exc}", file=sys.stderr)
        return 1
    print(f"site: {url}", flush=True)
    return 0
