"""What a sandbox engine container is, as plain data: built and checked without Docker.

`engine_container_spec` says how to create a learner's engine container;
`needs_rebuild` says whether an existing one still fits (and why not). Both are pure
functions of their arguments, so tests look at them without an engine, and
`whale_hub.engine.SandboxEngine` only carries them out.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from whale_core.layout import ROLE_LABEL

ENGINE_IMAGE = "howtowhale/engine"
# The engine container's seccomp profile ships with the spawner (in the wheel).
SECCOMP_PROFILE = Path(__file__).resolve().parent / "engine-seccomp.json"

# Docker's default capabilities, which the engine hands on to its containers.
DEFAULT_CAPS = ("CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID",
                "SETUID", "SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL",
                "AUDIT_WRITE")
# A classroom engine (README, "Security model"): only what a nested dockerd needs, found
# by taking capabilities away one by one until containers, builds, published ports,
# networks, volumes and Swarm services stopped working: SYS_ADMIN (mounts, namespaces,
# cgroups), NET_ADMIN (bridges, iptables) and SYS_PTRACE (runc inspects its children's
# namespaces). Our own seccomp profile refuses the calls none of them needs. Nothing of
# the host is mounted: the engine's cgroups are its own (a private cgroup namespace).
# `systempaths=unconfined` stays: the kernel lets runc mount /proc for a container in a
# user namespace only where /proc is not partly masked.
CLASSROOM_ENGINE_OPTIONS = dict(
    cap_drop=["ALL"],
    cap_add=[*DEFAULT_CAPS, "SYS_ADMIN", "NET_ADMIN", "SYS_PTRACE"],
    cgroupns="private",
)
# The engine's /tmp, where learners' bind mounts live (the gate allows bind sources
# only right under /tmp), and its /run (containerd's state and logs: the eighth red team
# grew runc's error log there by a megabyte a second with failing execs) are tmpfs of
# their own, counted in the engine's memory: nothing a learner makes is written to the
# operator's disk around the engine's disk limit.
ENGINE_TMPFS = {"/tmp": "size=256m,mode=1777",  # noqa: S108 - a mount point in the engine
                "/run": "size=64m,mode=755"}
# What the engine container logs (the gate's one line per refusal) stays small on the
# operator's disk however many requests a learner sends.
ENGINE_LOG_CONFIG = {"type": "json-file", "config": {"max-size": "1m", "max-file": "2"}}
# A trusted class's engine (engine_policy = False: privileged containers allowed): the
# feasibility recipe of DESIGN.md. It holds every capability and binds the host's
# cgroups: not a sandbox.
NESTED_ENGINE_OPTIONS = dict(
    cap_add=["ALL"],
    cap_drop=["SYS_RESOURCE"],
    security_opt=["seccomp=unconfined", "apparmor=unconfined"],
)


@dataclasses.dataclass(frozen=True)
class EngineSettings:
    """How a sandbox engine is made (everything but its name, state and host port)."""

    image: str = ENGINE_IMAGE
    #: Where the operator's machine reaches the engine's TLS port.
    bind_ip: str = "127.0.0.1"
    registry_mirror: str | None = None
    #: Initialise the engine as a one-node Swarm.
    swarm: bool = False
    #: More dockerd options (a practice Swarm's nodes).
    dockerd_opts: tuple[str, ...] = ()
    mem_limit: str | None = None
    pids_limit: int | None = None
    nano_cpus: int | None = None
    labels: dict[str, str] = dataclasses.field(default_factory=dict)
    #: The learner's network: the learner's server reaches the engine there by name.
    network: str | None = None
    #: A fixed address on that network, named in the bundle.
    network_ip: str | None = None
    #: The range a network the engine makes for itself is cut from (the site's
    #: learner_subnets); None: whale_hub.subnets.DEFAULT_POOL.
    subnets: str | None = None
    #: The classroom policy (images/engine/whale_gate): user namespaces, and no
    #: privileged containers, host namespaces or system bind mounts.
    policy: bool = True
    #: The size of the engine's data root; None for an unbounded Docker volume.
    disk_limit: str | int | None = None


def engine_env(settings: EngineSettings) -> dict[str, str]:
    """The engine container's environment (read by images/engine/whale-engine)."""
    # The gate answers on whichever outer network the engine is on (on one machine it is
    # on one at a time; a deployed site's engine, a Swarm task, keeps eth0 alone).
    env = {"WHALE_GATE_INTERFACE": "eth+"}
    if settings.registry_mirror:
        env["WHALE_REGISTRY_MIRROR"] = settings.registry_mirror
    if settings.swarm:
        env["WHALE_SWARM"] = "1"
    if not settings.policy:
        env["WHALE_ENGINE_POLICY"] = "0"
    if settings.dockerd_opts:
        env["WHALE_DOCKERD_OPTS"] = " ".join(settings.dockerd_opts)
    return env


def engine_container_spec(name: str, settings: EngineSettings, *, port: int, tls_dir: Path,
                          network: str, disk_dir: Path | None = None,
                          seccomp_profile: str | None = None, hostname: str | None = None,
                          aliases: tuple[str, ...] = ("engine",)) -> dict:
    """How to create a learner's engine container, as plain data:

    - `create`: keyword arguments of docker-py's `APIClient.create_container`, without
      `host_config` and `networking_config`;
    - `host_config`: keyword arguments of `APIClient.create_host_config`;
    - `host_config_raw`: fields set on the HostConfig as they are (the SDK has no
      parameter for them);
    - `endpoint`: `(network, aliases, ipv4_address)` of its one network.

    `seccomp_profile` is the text of the classroom seccomp profile (policy engines only).
    `hostname` is the engine's own (what `docker node ls` shows), `aliases` its names on
    its network.
    """
    binds = {str(tls_dir): {"bind": "/etc/whale/tls", "mode": "ro"}}
    if disk_dir is not None:
        binds[str(disk_dir)] = {"bind": "/var/lib/docker", "mode": "rw"}
    options = dict(CLASSROOM_ENGINE_OPTIONS) if settings.policy else dict(NESTED_ENGINE_OPTIONS)
    if not settings.policy:
        binds["/sys/fs/cgroup"] = {"bind": "/sys/fs/cgroup", "mode": "rw"}
    host_config = dict(
        port_bindings={2376: (settings.bind_ip, port)}, binds=binds, network_mode=network,
        mem_limit=settings.mem_limit, pids_limit=settings.pids_limit,
        nano_cpus=settings.nano_cpus,
        # Swap would let a learner's memory hog slow the whole machine down.
        memswap_limit=settings.mem_limit,
        tmpfs=dict(ENGINE_TMPFS), log_config=dict(ENGINE_LOG_CONFIG),
        **options,
    )
    # `--security-opt systempaths=unconfined` in the CLI: nothing masked or read-only
    # under /proc and /sys.
    raw: dict = {"MaskedPaths": [], "ReadonlyPaths": []}
    if settings.policy:
        if seccomp_profile is None:
            raise ValueError("a classroom engine needs its seccomp profile")
        raw["SecurityOpt"] = ["seccomp=" + seccomp_profile]
    return {
        "create": dict(image=settings.image, name=name, detach=True, hostname=hostname,
                       environment=engine_env(settings),
                       labels={ROLE_LABEL: "engine", **settings.labels}, ports=[2376]),
        "host_config": host_config,
        "host_config_raw": raw,
        "endpoint": (network, list(aliases), settings.network_ip),
    }


def needs_rebuild(attrs: dict, settings: EngineSettings, image_id: str) -> str | None:
    """Why an existing engine container (its `docker inspect` attributes) no longer fits
    `settings` and must be made anew, or None if it can be kept with what the learner
    made on it. `image_id` is the id of the engine image now."""
    env = dict(e.split("=", 1) for e in (attrs.get("Config") or {}).get("Env") or [] if "=" in e)
    if env.get("WHALE_REGISTRY_MIRROR", "") != (settings.registry_mirror or ""):
        return "engine made with another registry mirror"
    if env.get("WHALE_ENGINE_POLICY", "1") != ("1" if settings.policy else "0"):
        return "engine made with another classroom policy"
    if env.get("WHALE_DOCKERD_OPTS", "") != " ".join(settings.dockerd_opts):
        return "engine made with other dockerd options"
    if attrs.get("Image") != image_id:
        return "engine made from an older engine image"
    if (attrs.get("HostConfig") or {}).get("Tmpfs") != ENGINE_TMPFS:
        return "engine made without its own /tmp"
    return None
