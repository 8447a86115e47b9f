"""Learners' networks cut from the site's range (whale_hub.subnets): a 30-learner storm on a
stock dockerd ran out of Docker's default address pools (31 networks) at the 23rd."""
from __future__ import annotations

import ipaddress
import os

import pytest

from whale_hub.subnets import candidates, create_bridge, dynamic_range, node_address, swarm_node_address

POOL = "10.251.7.0/26"  # four /28s


def test_every_slice_of_the_range_is_tried_once_from_a_start_the_name_chooses():
    tried = list(candidates("10.200.0.0/24", "whl-ann"))
    assert len(tried) == len(set(tried)) == 16
    assert all(n.prefixlen == 28 and n.subnet_of(ipaddress.ip_network("10.200.0.0/24"))
               for n in tried)
    starts = {next(candidates("10.200.0.0/16", f"whl-learner{i}")) for i in range(50)}
    assert len(starts) > 40  # learners starting at once seldom try the same one first
    with pytest.raises(ValueError, match="not an IPv4 range of at least a /28"):
        next(candidates("10.200.0.0/29", "x"))
    with pytest.raises(ValueError, match="not an IPv4 range"):
        next(candidates("fd00::/64", "x"))


def test_nodes_have_fixed_addresses_above_the_ones_docker_hands_out():
    subnet = ipaddress.ip_network("10.200.3.32/28")
    assert dynamic_range(subnet) == ipaddress.ip_network("10.200.3.32/29")
    nodes = [node_address(subnet, n) for n in range(1, 6)]
    assert nodes == ["10.200.3.46", "10.200.3.45", "10.200.3.44", "10.200.3.43", "10.200.3.42"]
    assert not any(ipaddress.ip_address(a) in dynamic_range(subnet) for a in nodes)
    with pytest.raises(ValueError, match="an engine has nodes 1 to 5"):
        node_address(subnet, 6)


@pytest.mark.docker
def test_networks_take_free_slices_until_the_range_is_full(host_docker):
    label = {"org.howtowhale.test-subnets": str(os.getpid())}
    names = [f"whl-subnets-{os.getpid()}-{i}" for i in range(5)]
    # A network of the machine already on one slice of the range: it is skipped.
    host_docker.networks.create(
        f"whl-subnets-{os.getpid()}-squatter", labels=label,
        ipam={"Driver": "default", "Config": [{"Subnet": "10.251.7.16/28"}]})
    try:
        made = [create_bridge(host_docker, name, pool=POOL, options={}, labels=label)
                for name in names[:3]]
        subnets = [ipaddress.ip_network(n.attrs["IPAM"]["Config"][0]["Subnet"]) for n in made]
        assert len(set(subnets)) == 3
        assert ipaddress.ip_network("10.251.7.16/28") not in subnets
        assert all(s.subnet_of(ipaddress.ip_network(POOL)) for s in subnets)
        # Docker hands out the lower half; the upper half is for nodes' fixed addresses.
        assert [n.attrs["IPAM"]["Config"][0]["IPRange"] for n in made] == [
            str(dynamic_range(s)) for s in subnets]
        # The same learner again: their network, not another.
        again = create_bridge(host_docker, names[0], pool=POOL, options={}, labels=label)
        assert again.id == made[0].id
        with pytest.raises(RuntimeError, match=r"no /28 of 10\.251\.7\.0/26 is free"):
            create_bridge(host_docker, names[3], pool=POOL, options={}, labels=label)
    finally:
        for net in host_docker.networks.list(filters={"label": [
                f"org.howtowhale.test-subnets={os.getpid()}"]}):
            net.remove()


def test_a_deployed_sites_swarm_nodes_advertise_addresses_the_site_never_gives_out():
    subnet = ipaddress.ip_network("10.216.3.0/24")
    fixed = [swarm_node_address(subnet, n) for n in range(1, 6)]
    assert fixed == ["10.216.3.246", "10.216.3.245", "10.216.3.244", "10.216.3.243", "10.216.3.242"]
    taken = {node_address(subnet, 1), node_address(subnet, 2)}  # the hub's and its helper's
    assert not taken & set(fixed)
    assert not [a for a in fixed if ipaddress.ip_address(a) in dynamic_range(subnet)]
    with pytest.raises(ValueError, match="node 6: an engine has nodes 1 to 5"):
        swarm_node_address(subnet, 6)


def test_a_warm_engines_network_is_cut_from_the_sites_learner_range(host_docker, tmp_path):
    """An operator who moved learners to another range (c.WhaleSpawner.learner_subnets,
    because 10.200.0.0/16 is theirs) gets the warm pool's networks, which become learners'
    networks, in that range too."""
    from traitlets.config import Config

    from whale_hub.pool import EnginePool, pool_unit
    from whale_hub.spawner import WhaleSpawner
    config = Config()
    config.WhaleSpawner.learner_subnets = "10.252.0.0/16"
    config.WhaleSpawner.state_dir = str(tmp_path)
    config.WhaleSpawner.site_id = f"test-subnets-{os.getpid()}"
    pool = WhaleSpawner(config=config).engine_pool()
    assert isinstance(pool, EnginePool)
    engine = pool.engine(pool_unit(), host_docker)
    engine._ensure_network()
    try:
        network = host_docker.networks.get(engine.attached_network)
        subnet = ipaddress.ip_network(network.attrs["IPAM"]["Config"][0]["Subnet"])
        assert subnet.subnet_of(ipaddress.ip_network("10.252.0.0/16")), subnet
    finally:
        host_docker.networks.get(engine.attached_network).remove()
