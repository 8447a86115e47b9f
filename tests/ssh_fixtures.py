"""A learner's own engine behind Debian's openssh-server (tests/images/sshd-engine), and
SSH bundles for it made the way a learner makes them: the real `docker context export`
of an `ssh://` context, a key from ssh-keygen, known_hosts from ssh-keyscan."""
from __future__ import annotations

import hashlib
import os
import subprocess
import time
from pathlib import Path

from engine_fixtures import TEST_LABEL

from whale_core.bundle import CredentialBundle, write_bundle_dir
from whale_site import images

IMAGE = "howtowhale/test-sshd-engine"
IMAGE_DIR = Path(__file__).resolve().parent / "images" / "sshd-engine"
USER = "me"


def ensure_image() -> str:
    """Build the image when it is missing or its files changed (on the engine image)."""
    images.ensure_site_images(only=["howtowhale/engine"])
    h = hashlib.sha256()
    for f in sorted(IMAGE_DIR.iterdir()):
        h.update(f.name.encode() + f.read_bytes())
    digest = h.hexdigest()[:16]
    have = subprocess.run(["docker", "image", "inspect", "-f",
                           '{{index .Config.Labels "org.howtowhale.source"}}', IMAGE],
                          capture_output=True, text=True).stdout.strip()
    if have != digest:
        subprocess.run(["docker", "build", "-q", "-t", IMAGE, "--label",
                        f"org.howtowhale.source={digest}", str(IMAGE_DIR)],
                       check=True, capture_output=True)
    return IMAGE


def keygen(path: Path, comment: str = "whale-test") -> tuple[bytes, bytes]:
    """A fresh ed25519 key pair by ssh-keygen: (private, public)."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f",
                    str(path)], check=True)
    return path.read_bytes(), Path(f"{path}.pub").read_bytes()


class SshEngine:
    """A container running sshd (and, with engine=True, dockerd) on the host engine."""

    def __init__(self, host_docker, workdir: Path, name: str, *, engine: bool = True,
                 network: str | None = None):
        self.workdir = workdir
        keys = workdir / "keys"
        keys.mkdir(parents=True)
        _, self.host_public = keygen(keys / "host_key", "host")
        self.key, public = keygen(workdir / "learner_key", "learner")
        (keys / "authorized_keys").write_bytes(public)
        self.container = host_docker.containers.run(
            ensure_image(), name=f"whale-test-sshd-{name}-{os.getpid()}", detach=True,
            labels={TEST_LABEL: str(os.getpid())}, network=network,
            environment={"ENGINE": "1" if engine else "0"},
            volumes={str(keys): {"bind": "/keys", "mode": "ro"},
                     "/sys/fs/cgroup": {"bind": "/sys/fs/cgroup", "mode": "rw"}},
            tmpfs={"/var/lib/docker": ""}, cap_add=["ALL"], cap_drop=["SYS_RESOURCE"],
            security_opt=["seccomp=unconfined", "apparmor=unconfined"])
        self.container.reload()
        nets = self.container.attrs["NetworkSettings"]["Networks"]
        self.ip = next(iter(nets.values()))["IPAddress"]
        self.docker_host = f"ssh://{USER}@{self.ip}:22"
        self._wait(engine)

    def _wait(self, engine: bool, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.container.reload()
            if self.container.status == "exited":
                raise RuntimeError("sshd engine exited: " + self.container.logs().decode()[-2000:])
            ready = self.container.exec_run(
                ["sh", "-c", "ss -ltn 2>/dev/null | grep -q ':22 ' || "
                 "grep -q ':0016 ' /proc/net/tcp"]).exit_code == 0
            if ready and engine:
                ready = self.container.exec_run(["docker", "version"]).exit_code == 0
            if ready:
                return
            time.sleep(0.3)
        raise RuntimeError("sshd engine did not come up: " + self.container.logs().decode()[-2000:])

    def known_hosts(self) -> bytes:
        """What `ssh-keyscan` says, as a learner would make known_hosts."""
        out = subprocess.run(["ssh-keyscan", "-T", "5", "-t", "ed25519", "-p", "22", self.ip],
                             capture_output=True, check=True).stdout
        assert self.host_public.split()[1] in out, "ssh-keyscan saw another host key"
        return out

    def context_export(self, workdir: Path, docker_host: str | None = None) -> bytes:
        """The real `docker context export` of an ssh:// context (no daemon needed)."""
        env = dict(os.environ, DOCKER_CONFIG=str(workdir / "docker-config"))
        subprocess.run(["docker", "context", "create", "byoc-ssh", "--docker",
                        f"host={docker_host or self.docker_host}"],
                       env=env, check=True, capture_output=True)
        out = workdir / "byoc-ssh.dockercontext"
        subprocess.run(["docker", "context", "export", "byoc-ssh", str(out)], env=env,
                       check=True, capture_output=True)
        return out.read_bytes()

    def files(self, *, key: bytes | None = None, known_hosts: bytes | None = None) -> dict:
        return {"docker.env": f"DOCKER_HOST={self.docker_host}\n".encode(),
                "ssh_key": self.key if key is None else key,
                "known_hosts": self.known_hosts() if known_hosts is None else known_hosts}

    def bundle(self, directory: Path, **kw) -> CredentialBundle:
        return CredentialBundle.load(write_bundle_dir(directory, self.files(**kw)))

    def stop_engine(self) -> None:
        """Stop dockerd; sshd stays up."""
        self.container.exec_run(["sh", "-c", "kill $(cat /var/run/docker.pid); "
                                 "while [ -e /var/run/docker.pid ]; do sleep 0.1; done"])

    def remove(self) -> None:
        self.container.remove(force=True, v=True)
