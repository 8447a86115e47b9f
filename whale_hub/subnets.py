"""Learners' networks on the host, each a small subnet cut from one range the site picks.

Left to itself, a stock dockerd gives every new bridge network a /16 or /20 from its
default address pools, which hold 31 networks: the 24th learner of a 30-learner class was
refused with "could not find an available, non-overlapping IPv4 address pool". A
learner's network holds their server and their engine (a few more for an engine's
nodes), so a /28 (14 addresses) is plenty, and a /16 holds 4,096 of them.
"""
from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterator

import docker
from docker.errors import APIError, NotFound

#: Where learners' networks are cut from, unless the site says otherwise.
DEFAULT_POOL = "10.200.0.0/16"
#: A learner's network: 14 addresses.
PREFIX = 28


def dynamic_range(subnet: ipaddress.IPv4Network) -> ipaddress.IPv4Network:
    """The lower half of a learner's network, where Docker gives containers their
    addresses (the server's): the upper half is kept for fixed ones (node_address)."""
    return next(subnet.subnets(prefixlen_diff=1))


def node_address(subnet: ipaddress.IPv4Network | str, node: int) -> str:
    """The fixed address of an engine's node `node` (1 to 5) on a learner's network: from
    the top of the subnet down (node1 is .14 of a /28), so that it survives a restart of
    the node and the Swarm's other nodes still find it there."""
    subnet = ipaddress.ip_network(subnet, strict=False)
    if not 1 <= node <= 5:
        raise ValueError(f"node {node}: an engine has nodes 1 to 5")
    return str(subnet.broadcast_address - node)


def swarm_node_address(subnet: ipaddress.IPv4Network | str, node: int) -> str:
    """The address node `node` (1 to 5) of a learner's Swarm advertises on a deployed
    site (whale_hub/providers/swarm.py): below the hub's fixed address and its helper's
    (node_address 1 and 2), in the upper half, which the site's Swarm never gives out."""
    subnet = ipaddress.ip_network(subnet, strict=False)
    if not 1 <= node <= 5:
        raise ValueError(f"node {node}: an engine has nodes 1 to 5")
    return str(subnet.broadcast_address - 8 - node)


def network_subnet(host: docker.DockerClient, name: str) -> ipaddress.IPv4Network | None:
    """The IPv4 subnet of the network `name` (None: it has none)."""
    for config in (host.api.inspect_network(name).get("IPAM") or {}).get("Config") or []:
        subnet = config.get("Subnet") or ""
        if subnet and ":" not in subnet:
            return ipaddress.ip_network(subnet, strict=False)
    return None


def candidates(pool: str, name: str, prefix: int = PREFIX) -> Iterator[ipaddress.IPv4Network]:
    """Every /prefix of `pool`, starting at one chosen by `name` (so that learners starting
    at once seldom try the same one first) and wrapping round."""
    network = ipaddress.ip_network(pool)
    if not isinstance(network, ipaddress.IPv4Network) or network.prefixlen > prefix:
        raise ValueError(f"{pool} is not an IPv4 range of at least a /{prefix}")
    count = 1 << (prefix - network.prefixlen)
    start = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") % count
    size = 1 << (32 - prefix)
    base = int(network.network_address)
    for i in range(count):
        yield ipaddress.IPv4Network((base + ((start + i) % count) * size, prefix))


def subnets_in_use(host: docker.DockerClient) -> list[ipaddress.IPv4Network]:
    taken = []
    for net in host.api.networks():
        for config in (net.get("IPAM") or {}).get("Config") or []:
            subnet = config.get("Subnet") or ""
            if subnet and ":" not in subnet:
                taken.append(ipaddress.ip_network(subnet, strict=False))
    return taken


def create_bridge(host: docker.DockerClient, name: str, *, pool: str, options: dict,
                  labels: dict[str, str], driver: str = "bridge", attachable: bool = False,
                  prefix: int = PREFIX):
    """Create the bridge network `name` on a free /28 of `pool` (or return it, if it
    exists already): the first candidate no network of the host overlaps; one taken
    meanwhile by another learner starting at the same moment is skipped. (`driver`
    "overlay": a Swarm's network, where the manager sees every network of the Swarm.)"""
    try:
        return host.networks.get(name)
    except NotFound:
        pass
    taken = subnets_in_use(host)
    for subnet in candidates(pool, name, prefix):
        if any(subnet.overlaps(other) for other in taken):
            continue
        try:
            return host.networks.create(
                name, driver=driver, options=options, labels=labels, check_duplicate=True,
                attachable=attachable or None,
                ipam=docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(
                    subnet=str(subnet), iprange=str(dynamic_range(subnet)))]))
        except APIError as exc:
            text = str(exc).lower()
            if "overlap" in text:
                taken.append(subnet)
                continue
            if exc.status_code == 409 or "already exists" in text:
                try:
                    return host.networks.get(name)
                except NotFound:
                    raise exc from None
            raise
    raise RuntimeError(f"no /{prefix} of {pool} is free for another learner's network: "
                       "give the site a larger range (c.WhaleSpawner.learner_subnets)")
