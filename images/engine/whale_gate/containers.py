"""Containers and exec sessions: the rules for a container's HostConfig (privileges,
namespaces, capabilities, devices, security options, logging, mounts) and their bodies."""
import re

from .decision import Refused, _q
from .jsonbody import check, strs
from .mounts import COPY_WRITE, check_bind_spec, check_mount, mounts_without_copy, without_copy
from .networks import check_endpoint, is_host_network
from .schema import CREATE, EXEC, UPDATE

# Capabilities Docker gives a container by default; adding any other is refused.
DEFAULT_CAPS = frozenset({"CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID",
                          "SETUID", "SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL",
                          "AUDIT_WRITE"})
SAFE_SYSCTLS = frozenset({"net.ipv4.ip_unprivileged_port_start", "net.ipv4.ping_group_range"})
LOG_DRIVERS = frozenset({"", "json-file", "local", "none"})
LOG_OPTIONS = frozenset({"max-size", "max-file", "compress", "mode", "max-buffer-size", "labels",
                         "labels-regex", "env", "env-regex", "tag"})
SECURITY_OPTS = frozenset({"no-new-privileges", "no-new-privileges:true", "no-new-privileges=true"})


def _cap(name: str) -> str:
    name = name.strip().upper()
    return name[4:] if name.startswith("CAP_") else name


def check_caps(caps, what: str) -> None:
    extra = sorted({_cap(c) for c in strs(caps) if c.strip()} - DEFAULT_CAPS)
    if extra:
        raise Refused(f"adding kernel capabilities{what} ({', '.join(extra)})")




def check_sysctls(sysctls: dict | None, whose: str = "") -> None:
    for key in sorted(sysctls or {}):
        if key not in SAFE_SYSCTLS:
            raise Refused(f"setting the kernel parameter {key}{whose} (--sysctl)",
                          "only net.ipv4.ip_unprivileged_port_start and net.ipv4.ping_group_range "
                          "are allowed")


def check_log_driver(name, options, flag: str = "--log-driver") -> None:
    name = name or ""
    if name not in LOG_DRIVERS:
        raise Refused(f"the log driver {_q(name)} ({flag})",
                      "the engine would send logs elsewhere; json-file, local and none are available")
    for key in sorted(options or {}):
        if key not in LOG_OPTIONS:
            raise Refused(f"the log option {_q(key)} (--log-opt)",
                          "it is not one of the local log drivers' options")


HOST_MODES = (("PidMode", "--pid"), ("IpcMode", "--ipc"), ("NetworkMode", "--network"),
              ("UTSMode", "--uts"), ("CgroupnsMode", "--cgroupns"))


def check_resources(r: dict) -> None:
    if r.get("CgroupParent"):
        raise Refused("choosing the container's cgroup parent (--cgroup-parent)")
    if r.get("Devices"):
        raise Refused("access to the engine's devices (--device)")
    if r.get("DeviceRequests"):
        raise Refused("access to the engine's devices (--gpus)")
    if r.get("DeviceCgroupRules"):
        raise Refused("access to the engine's devices (--device-cgroup-rule)")
    for key in ("BlkioWeightDevice", "BlkioDeviceReadBps", "BlkioDeviceWriteBps", "BlkioDeviceReadIOps",
                "BlkioDeviceWriteIOps"):
        if r.get(key):
            raise Refused(f"per-device I/O settings ({key})", "they name the engine's own devices")
    if r.get("CpuRealtimePeriod") or r.get("CpuRealtimeRuntime"):
        raise Refused("real-time CPU scheduling (--cpu-rt-runtime, --cpu-rt-period)",
                      "it can starve the machine your engine runs on")


# What a --tmpfs mount may say. dockerd also takes mount flags such as bind and rbind
# there, and runc then bind-mounts "tmpfs", a path of the engine (the ninth red team).
TMPFS_FLAGS = frozenset({"ro", "rw", "exec", "noexec", "suid", "nosuid", "dev", "nodev",
                         "atime", "noatime", "relatime", "norelatime", "strictatime",
                         "nostrictatime", "diratime", "nodiratime", "sync", "async"})
TMPFS_VALUES = re.compile(r"(?:size|mode|uid|gid|nr_inodes|nr_blocks)=[0-9A-Za-z%]{1,20}\Z")


def check_tmpfs_options(target: str, options: str | None) -> None:
    for option in (options or "").split(","):
        if option and option not in TMPFS_FLAGS and not TMPFS_VALUES.match(option):
            raise Refused(f"the tmpfs option {_q(option)} (--tmpfs {target}:…)",
                          "a tmpfs takes size, mode, uid, gid and mount flags such as noexec")


def check_host_config(hc: dict | None, resolve) -> None:
    if not hc:
        return
    if hc.get("Privileged"):
        raise Refused("a privileged container (--privileged)")
    userns = hc.get("UsernsMode") or ""
    if userns.lower() == "host":
        raise Refused("sharing the engine's namespace (--userns=host)")
    if userns:
        raise Refused(f"the user namespace mode {_q(userns)} (--userns)")
    for key, flag in HOST_MODES:
        if (hc.get(key) or "").lower() == "host":
            raise Refused(f"sharing the engine's namespace ({flag}=host)")
    if is_host_network(hc.get("NetworkMode") or ""):
        raise Refused("sharing the engine's namespace (--network=host)")
    for key, flag in (("NetworkMode", "--network"), ("IpcMode", "--ipc")):
        if (hc.get(key) or "").lower().startswith("container:"):
            # A shared network namespace (abstract unix sockets) or IPC namespace (a
            # socket in the shared /dev/shm) carries directory handles between
            # containers; the sixth red team joined a build step's network that way and
            # redirected the builder's commit of the step to the engine's TLS key.
            raise Refused(f"joining another container's namespace ({flag} container:…)",
                          "a container can hand another its files through it, and those files "
                          "are copied by the engine, which can be redirected to its own files")
    if (hc.get("PidMode") or "").lower().startswith("container:"):
        # From another container's processes, /proc/PID/root is that container's files,
        # writable while it is paused for `docker commit`, whose walk of them (dockerd
        # 20.10 and 26.1, in the engine's mount namespace) follows a swapped-in link: the fourth
        # red team read the engine's TLS key that way.
        raise Refused("sharing another container's processes (--pid container:…)",
                      "a container that sees another's processes can change its files while the "
                      "engine copies them, and redirect the copy to the engine's own files")
    check_caps(hc.get("CapAdd"), "")
    check_resources(hc)
    if hc.get("Cgroup"):
        raise Refused("joining another cgroup (Cgroup)")
    for opt in hc.get("SecurityOpt") or []:
        opt = opt or ""
        if opt.lower() in SECURITY_OPTS:
            continue
        key = re.split("[=:]", opt, maxsplit=1)[0].lower()
        if key == "seccomp" and opt.lower() != "seccomp=unconfined":
            raise Refused("a custom seccomp profile (--security-opt seccomp=…)")
        raise Refused(f"the security option {opt!r}" if len(opt) < 60 else f"the security option {key!r}=…")
    if hc.get("MaskedPaths") is not None or hc.get("ReadonlyPaths") is not None:
        raise Refused("unmasking /proc and /sys (--security-opt systempaths=unconfined, MaskedPaths or "
                      "ReadonlyPaths)")
    if (hc.get("Runtime") or "") not in ("", "runc"):
        raise Refused(f"the container runtime {_q(hc['Runtime'])} (--runtime)", "runc is the runtime here")
    if (hc.get("Isolation") or "") not in ("", "default"):
        raise Refused(f"the isolation {_q(hc['Isolation'])} (--isolation)", "there is one isolation here")
    if hc.get("StorageOpt"):
        raise Refused("storage driver options (--storage-opt)", "they set up the engine's storage")
    if hc.get("Annotations"):
        raise Refused("runtime annotations (--annotation)", "they are read by the engine's runtime")
    check_sysctls(hc.get("Sysctls"))
    for target, options in (hc.get("Tmpfs") or {}).items():
        check_tmpfs_options(target, options)
    log = hc.get("LogConfig") or {}
    check_log_driver(log.get("Type"), log.get("Config"))
    if (hc.get("VolumeDriver") or "") not in ("", "local"):
        raise Refused(f"the volume driver {_q(hc['VolumeDriver'])} (--volume-driver)",
                      "volume plugins run with the engine's privileges")
    if (hc.get("OomScoreAdj") or 0) < 0:
        raise Refused("a negative OOM score adjustment (--oom-score-adj)",
                      "it would protect a container from the out-of-memory killer at others' expense")
    for bind in hc.get("Binds") or []:
        check_bind_spec(bind, resolve)
    for mount in hc.get("Mounts") or []:
        check_mount(mount, resolve)
    if hc.get("VolumesFrom"):
        raise Refused("sharing another container's volumes (--volumes-from)", COPY_WRITE)
    if hc.get("Binds"):
        hc["Binds"] = [without_copy(b) for b in hc["Binds"]]
    mounts_without_copy(hc.get("Mounts"))


def body_create(body, resolve):
    networking = body.get("NetworkingConfig") if isinstance(body, dict) else None
    if isinstance(networking, dict):
        # docker-py 7 sends {"<network>": null} here for `network=`, which dockerd
        # ignores (the network comes from HostConfig.NetworkMode). Null entries are left
        # out of what the engine is sent; anything else unknown is refused as usual.
        for key in [k for k, v in networking.items() if k != "EndpointsConfig" and v is None]:
            del networking[key]
    check(body, CREATE)
    check_host_config(body.get("HostConfig"), resolve)
    endpoints = (body.get("NetworkingConfig") or {}).get("EndpointsConfig") or {}
    for name, endpoint in endpoints.items():
        check_endpoint(name, endpoint)
    return body


def body_update(body, resolve):
    check(body, UPDATE)
    check_resources(body)
    return body


def body_exec(body, resolve):
    check(body, EXEC)
    if body.get("Privileged"):
        raise Refused("a privileged exec session (docker exec --privileged)")
    return body


