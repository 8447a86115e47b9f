"""Networks and volumes: which networks are the engine's host network, and the rules for
creating networks and volumes and connecting containers to networks."""
import re
import sys

from .decision import Refused, _q
from .jsonbody import check
from .schema import NETWORK_CONNECT, NETWORK_CREATE, VOLUME_CREATE

NETWORK_DRIVERS = frozenset({"", "bridge", "overlay"})
NETWORK_OPTIONS = frozenset({"com.docker.network.driver.mtu", "com.docker.network.bridge.enable_icc",
                             "com.docker.network.bridge.enable_ip_masquerade", "encrypted"})
TMPFS_VOLUME_O = frozenset({"size", "mode", "uid", "gid", "nr_inodes"})


def is_host_network(ref: str) -> bool:
    """Whether a network reference (name, ID or ID prefix) is the engine's host network,
    as dockerd will resolve it."""
    ref = ref or ""
    if ref.lower() == "host":
        return True
    if ref.lower() in ("", "default", "bridge", "none") or ref.startswith("container:"):
        return False
    # The package's NETWORK_LOOKUP (see __init__.py), read when it is used: the running
    # gate sets it there, and so do the tests.
    lookup = sys.modules[__package__].NETWORK_LOOKUP
    if lookup is None:
        return False
    try:
        found = lookup(ref)
    except OSError:
        raise Refused(f"the network {_q(ref)}", "it could not be looked up to check it") from None
    return any(n and (n.get("Name") == "host" or n.get("Driver") == "host") for n in found)


def check_endpoint(name: str, endpoint: dict | None) -> None:
    if is_host_network(name):
        raise Refused("sharing the engine's namespace (--network=host)")
    if endpoint and endpoint.get("DriverOpts"):
        raise Refused(f"network driver options for {_q(name)} (driver-opt=…)",
                      "they configure the engine's network interfaces")


def body_volume(body, resolve):
    check(body, VOLUME_CREATE)
    check_volume(body.get("Driver"), body.get("DriverOpts"))
    if body.get("ClusterVolumeSpec") is not None:
        raise Refused("a cluster volume (ClusterVolumeSpec)", "cluster volumes need volume plugins")
    return body


def check_volume(driver, opts) -> None:
    if (driver or "") not in ("", "local"):
        raise Refused(f"the volume driver {_q(driver)} (docker volume create --driver)",
                      "volume plugins run with the engine's privileges")
    if not opts:
        return
    why = ("a local volume's options can mount the engine's own disks and directories (type=none,o=bind); "
           "only a tmpfs volume (type=tmpfs,device=tmpfs,o=size=…) is allowed")
    # Shown (and logged) without the value of o=, which can hold a CIFS or NFS password.
    shown = ",".join(f"{k}={'...' if k == 'o' else v}" for k, v in sorted(opts.items()))
    if set(opts) - {"type", "device", "o"} or opts.get("type") != "tmpfs" or \
            opts.get("device", "tmpfs") != "tmpfs":
        raise Refused(f"the volume options {_q(shown)} (--opt)", why)
    for option in (opts.get("o") or "").split(","):
        key, _, value = option.partition("=")
        if option and (key not in TMPFS_VOLUME_O or not re.fullmatch(r"[0-9A-Za-z]+", value)):
            raise Refused(f"the tmpfs volume option {_q(key)} (--opt o=…)", why)


def body_network(body, resolve):
    check(body, NETWORK_CREATE)
    driver = body.get("Driver") or ""
    if driver not in NETWORK_DRIVERS:
        raise Refused(f"the network driver {_q(driver)} (docker network create --driver)",
                      "bridge and overlay networks stay inside your engine; others reach the machine's "
                      "network")
    for key in sorted(body.get("Options") or {}):
        if key not in NETWORK_OPTIONS:
            raise Refused(f"the network option {_q(key)} (--opt)", "it configures the engine's own network")
    ipam = body.get("IPAM") or {}
    if (ipam.get("Driver") or "") not in ("", "default"):
        raise Refused(f"the IPAM driver {_q(ipam['Driver'])} (--ipam-driver)",
                      "IPAM plugins run on the engine")
    if ipam.get("Options"):
        raise Refused("IPAM driver options (--ipam-opt)", "they configure the engine's address management")
    return body


def body_connect(body, resolve, params):
    check(body, NETWORK_CONNECT)
    if is_host_network(params.get("id", "")):
        raise Refused("connecting a container to the engine's host network (docker network connect host)")
    check_endpoint(params.get("id", ""), body.get("EndpointConfig"))
    return body


