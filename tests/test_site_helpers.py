"""The site's own helpers that need no Docker engine: where the operator's docker0 is."""
from __future__ import annotations

import pytest

from whale_site.registry import bridge_gateway


class _Bridge:
    def __init__(self, config):
        self.attrs = {"IPAM": {"Config": config}}


class _Engine:
    def __init__(self, config):
        self.networks = type("Networks", (), {"get": lambda _self, name: _Bridge(config)})()


@pytest.mark.parametrize(("config", "gateway"), [
    ([{"Subnet": "172.17.0.0/16", "Gateway": "172.17.0.1"}], "172.17.0.1"),
    # Inside a container whose own network is 172.17.0.0/16, dockerd takes another
    # subnet and names no gateway: the mirror must listen on that bridge, not 172.17.0.1.
    ([{"Subnet": "172.18.0.0/16"}], "172.18.0.1"),
    ([], "172.17.0.1"),
])
def test_the_bridge_gateway_is_where_the_operators_docker0_is(config, gateway):
    assert bridge_gateway(_Engine(config)) == gateway
