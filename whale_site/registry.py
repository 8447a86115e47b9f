"""The lesson registry mirror: Debian's `docker-registry`, seeded with the lesson images.

Learners' engines are started with `--registry-mirror=<this mirror>`, so a lesson can
say `docker pull hello-world` (or just `docker run busybox`) on a machine that reaches
no registry at all, and a classroom does not hit Docker Hub's pull limits.

The registry runs as a process on the operator's machine, listening on the Docker
bridge gateway (172.17.0.1 usually): engine containers reach it there, and nothing
outside this machine does. What engines (and so learners) reach is read-only
(Distribution's `storage: maintenance: readonly`): pulls work, and every push or delete
is refused with `405 Method Not Allowed` (`Allow: GET, HEAD`), so no learner can replace
`library/hello-world` for everyone.

It is seeded by pushing the images built from `lessons/images/<name>/` as
`library/<name>` to a second, writable `docker-registry` on the same storage that
listens on 127.0.0.1 only, for as long as the seeding takes: the images are built on the
operator's engine (which trusts registries on 127.0.0.0/8 without TLS, so it needs no
change) and pushed there, then their tags are removed again. No container reaches the
host's loopback, so no learner ever sees a writable registry.

With `upstream=` the same registry is a pull-through cache of that registry (Docker
Hub, say) where the internet is reachable (the seeding instance is never a cache, so
seeding works either way): what was seeded is served when the upstream does not answer.
"""
from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import docker

from whale_core.layout import registry_dir
from whale_hub.engine import free_port

from . import firewall, images

REGISTRY_BINARY = "docker-registry"
DEFAULT_PORT = 5000
_LAUNCHED: list[subprocess.Popen] = []


def bridge_gateway(host: docker.DockerClient | None = None) -> str:
    """The IP address of the operator engine's default bridge on this machine."""
    client = host or docker.from_env()
    try:
        config = (client.networks.get("bridge").attrs["IPAM"]["Config"] or [{}])[0]
        if config.get("Gateway"):
            return config["Gateway"]
        # dockerd names no gateway when it chose the subnet itself (172.17.0.0/16 was
        # taken, say inside a container): docker0 is then the subnet's first address.
        if config.get("Subnet"):
            return str(ipaddress.ip_network(config["Subnet"], strict=False).network_address + 1)
        return "172.17.0.1"
    finally:
        if host is None:
            client.close()


def port_in_use(address: str, port: int) -> bool:
    """Whether something already listens on address:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(1)
        return s.connect_ex((address, port)) == 0


def image_digest(name: str) -> str:
    """A hash of everything in lessons/images/<name>/: the image is rebuilt when it changes."""
    h = hashlib.sha256()
    root = images.LESSON_IMAGES / name
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


class RegistryMirror:
    """A read-only `docker-registry serve` process whose storage lives in `state_dir`.

    `address` defaults to the Docker bridge gateway, `port` to 5000 (0: a free one).
    `upstream` (an https URL) turns it into a pull-through cache of that registry.
    seed() writes through a writable instance on 127.0.0.1 of its own.
    """

    def __init__(self, state_dir: Path | str, *, address: str | None = None,
                 port: int = DEFAULT_PORT, upstream: str | None = None,
                 host: docker.DockerClient | None = None):
        self.state_dir = Path(state_dir)
        self.host = host
        self.address = address or bridge_gateway(host)
        self._free_port = not port
        self.port = port or free_port(self.address)
        self.upstream = upstream

    @property
    def url(self) -> str:
        """What engines are given as `--registry-mirror`."""
        return f"http://{self.address}:{self.port}"

    @property
    def endpoint(self) -> str:
        """host:port, as image names for pushing to it start."""
        return f"{self.address}:{self.port}"

    @property
    def pidfile(self) -> Path:
        return self.state_dir / "registry.pid"

    @property
    def seeded_file(self) -> Path:
        return self.state_dir / "seeded.json"

    def config(self, *, writable_at: str | None = None) -> str:
        """The registry's config.yml (YAML is a superset of JSON, so JSON it is).

        Read-only, at `endpoint`, unless `writable_at` (a loopback host:port) is given:
        that is the seeding instance's.
        """
        storage = {"filesystem": {"rootdirectory": str((self.state_dir / "data").resolve())}}
        if writable_at:
            storage["maintenance"] = {"uploadpurging": {"enabled": False}}
        else:
            # Pull yes; push (blob uploads, manifest PUT) and delete no: Distribution
            # serves GET and HEAD only. Upload purging would delete, so it is off too.
            storage["maintenance"] = {"readonly": {"enabled": True},
                                      "uploadpurging": {"enabled": False}}
        cfg = {
            "version": 0.1,
            "log": {"level": "warn", "accesslog": {"disabled": True}},
            "storage": storage,
            "http": {"addr": writable_at or self.endpoint,
                     "headers": {"X-Content-Type-Options": ["nosniff"]}},
        }
        if self.upstream and not writable_at:
            cfg["proxy"] = {"remoteurl": self.upstream}
        return json.dumps(cfg, indent=2) + "\n"

    # -- life cycle ---------------------------------------------------------------
    def pid(self) -> int | None:
        """The pid of our running (read-only) registry process, if there is one."""
        return _registry_pid(self.pidfile)

    def ping(self, timeout: float = 1.0) -> bool:
        return _ping(self.url, timeout)

    def start(self, timeout: float = 30.0, attempts: int = 3) -> RegistryMirror:
        """Start the read-only registry unless ours already runs so; wait until it answers.

        A free port picked for port=0 can be taken by someone else before the registry
        binds it: then it is tried again on another free port. A running registry of
        ours with another configuration (say, a writable one an older version started)
        is restarted.
        """
        for attempt in range(attempts):
            try:
                return self._start(timeout)._admit_learners()
            except RuntimeError:
                if attempt == attempts - 1 or not self._free_port:
                    raise
                self.port = free_port(self.address)
        return self

    def _start(self, timeout: float) -> RegistryMirror:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        config_file = self.state_dir / "config.yml"
        config = self.config()
        if self.pid() and self.ping() and _read(config_file) == config:
            return self
        self.stop()
        config_file.write_text(config)
        if port_in_use(self.address, self.port):
            raise RuntimeError(
                f"the registry mirror's port {self.endpoint} is taken by another process; "
                "stop it, or choose another port (WHALE_REGISTRY_PORT)")
        _launch(config_file, self.pidfile, self.state_dir / "registry.log", self.url, timeout)
        return self

    def stop(self) -> None:
        """Stop our registry process (its storage is kept)."""
        _stop(self.pidfile)
        if getattr(self, "_firewall_owner", None):
            with contextlib.suppress(Exception):
                firewall.remove(self._firewall_owner)
            self._firewall_owner = None

    def _admit_learners(self) -> RegistryMirror:
        """Where a site's firewall guards learners' networks (a site is up on this
        machine), let them reach this mirror too: the engines of `whale lesson test` (and
        of the test suite) sit on such networks, and would otherwise be dropped."""
        with contextlib.suppress(Exception):  # no iptables, not root: no firewall either
            if firewall.owners():
                owner = f"mirror-{self.port}"
                firewall.install(None, self.port, address=self.address, owner=owner,
                                 pid=os.getpid())
                self._firewall_owner = owner
        return self

    # -- content ------------------------------------------------------------------
    def has_image(self, name: str, tag: str = "latest") -> bool:
        # S310: self.url is always our own registry's http://address:port (see url).
        req = urllib.request.Request(  # noqa: S310
            f"{self.url}/v2/library/{name}/manifests/{tag}", method="HEAD",
            headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"})
        try:
            with urllib.request.urlopen(req, timeout=5) as r:  # noqa: S310 - see above
                return r.status == 200
        except (OSError, urllib.error.URLError):
            return False

    def catalog(self) -> list[str]:
        # S310: self.url is always our own registry's http://address:port (see url).
        with urllib.request.urlopen(f"{self.url}/v2/_catalog", timeout=5) as r:  # noqa: S310
            return json.load(r)["repositories"]

    def seed(self, names: list[str] | None = None, *, force: bool = False,
             host: docker.DockerClient | None = None) -> list[str]:
        """Build lesson images and push them as library/<name>; return the names pushed.

        An image whose directory did not change since it was pushed is skipped (`host`
        is not used: kept for callers). The
        images are built on the operator's engine (the one the `docker` command talks
        to) and pushed to a writable registry on 127.0.0.1 that shares this mirror's
        storage and runs only while seeding; the read-only mirror serves them at once.
        """
        names = names or images.lesson_image_names()
        try:
            seeded = json.loads(self.seeded_file.read_text())
        except (OSError, ValueError):
            seeded = {}
        todo = [n for n in names
                if force or seeded.get(n) != image_digest(n)
                or not all(self.has_image(n, tag) for tag in ["latest", *images.lesson_image_versions(n)])]
        if not todo:
            return []
        with self._writable() as endpoint:
            for name in todo:
                for version in [None, *images.lesson_image_versions(name)]:
                    target = f"{endpoint}/library/{name}:{version or 'latest'}"
                    images.build_lesson_image(name, tag=target, version=version)
                    try:
                        subprocess.run(["docker", "push", "-q", target], check=True,
                                       stdout=subprocess.DEVNULL)
                    finally:
                        subprocess.run(["docker", "image", "rm", target],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                seeded[name] = image_digest(name)
                self.seeded_file.write_text(json.dumps(seeded, indent=1))
        return todo

    @contextlib.contextmanager
    def _writable(self, timeout: float = 30.0, attempts: int = 3):
        """A writable registry on this mirror's storage at 127.0.0.1:<free port>, for
        the duration of the block; yields its host:port."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        config_file = self.state_dir / "seed-config.yml"
        pidfile = self.state_dir / "seed-registry.pid"
        _stop(pidfile)  # one left behind by a seeding that was killed
        for attempt in range(attempts):
            endpoint = f"127.0.0.1:{free_port('127.0.0.1')}"
            config_file.write_text(self.config(writable_at=endpoint))
            try:
                _launch(config_file, pidfile, self.state_dir / "registry.log",
                        f"http://{endpoint}", timeout)
                break
            except RuntimeError:
                if attempt == attempts - 1:
                    raise
        try:
            yield endpoint
        finally:
            _stop(pidfile)


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _registry_pid(pidfile: Path) -> int | None:
    """The pid a pid file names, if that process is a running registry."""
    try:
        pid = int(pidfile.read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if REGISTRY_BINARY.encode() in cmdline else None


def _ping(url: str, timeout: float = 1.0) -> bool:
    # S310: url is a RegistryMirror's url, always http://address:port.
    try:
        with urllib.request.urlopen(f"{url}/v2/", timeout=timeout) as r:  # noqa: S310
            return r.status == 200
    except (OSError, urllib.error.URLError):
        return False


def _launch(config_file: Path, pidfile: Path, logfile: Path, url: str, timeout: float) -> None:
    """Start `docker-registry serve config_file`; wait until it answers at url."""
    # A session of its own: it outlives `whale up` (which execs Jupyter) and is
    # not hit by a terminal's ^C; `whale down` stops it by pid.
    with open(logfile, "ab") as log:
        log_start = log.seek(0, os.SEEK_END)
        proc = subprocess.Popen([REGISTRY_BINARY, "serve", str(config_file)],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    _LAUNCHED.append(proc)  # never collected while it runs (no ResourceWarning)
    pidfile.write_text(str(proc.pid))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _ping(url, timeout=0.5):
            return
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    with open(logfile, "rb") as f:
        f.seek(log_start)
        tail = f.read().decode(errors="replace")[-2000:] or "(nothing)"
    code = proc.poll()
    _stop(pidfile)
    if code is None:
        how = "still running"
    elif code < 0:
        how = f"killed by signal {-code}"
    else:
        how = f"exited with status {code}"
    raise RuntimeError(f"registry did not answer at {url} within {timeout:.0f} s "
                       f"({REGISTRY_BINARY} {how}); the end of its log:\n{tail}")


def _stop(pidfile: Path) -> None:
    """Stop the registry process a pid file names (if it runs), and forget the file."""
    pid = _registry_pid(pidfile)
    if pid:
        os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            if not _registry_pid(pidfile):
                break
            time.sleep(0.05)
        else:
            os.kill(pid, signal.SIGKILL)
    for proc in list(_LAUNCHED):  # reap what this process started and is gone
        if proc.poll() is not None:
            _LAUNCHED.remove(proc)
    pidfile.unlink(missing_ok=True)


__all__ = ["DEFAULT_PORT", "RegistryMirror", "bridge_gateway", "image_digest"]


def default_mirror() -> RegistryMirror:
    """The registry mirror that `whale up` and `whale lesson` share (started, seeded)."""
    port = int(os.environ.get("WHALE_REGISTRY_PORT", "5000"))
    mirror = RegistryMirror(registry_dir(), port=port).start()
    seeded = mirror.seed()
    if seeded:
        print(f"whale: registry mirror {mirror.url} seeded with {', '.join(seeded)}", flush=True)
    return mirror
