"""The engine container as plain data (whale_hub/specs.py), looked at without Docker."""
from __future__ import annotations

from pathlib import Path

import pytest

from whale_core.layout import OWNER_LABEL, ROLE_LABEL
from whale_hub.specs import (
    ENGINE_LOG_CONFIG,
    ENGINE_TMPFS,
    EngineSettings,
    engine_container_spec,
    needs_rebuild,
)

TLS = Path("/state/engine/tls")


def spec(**settings):
    return engine_container_spec("whale-engine-ada", EngineSettings(**settings), port=40001,
                                 tls_dir=TLS, network="whale-net-ada", seccomp_profile="{}")


def test_a_classroom_engine_holds_only_what_a_nested_dockerd_needs():
    s = spec(mem_limit="2g", pids_limit=1024, labels={OWNER_LABEL: "ada"})
    hc = s["host_config"]
    assert hc["cap_drop"] == ["ALL"]
    assert {"SYS_ADMIN", "NET_ADMIN", "SYS_PTRACE"} <= set(hc["cap_add"])
    assert "SYS_MODULE" not in hc["cap_add"]
    assert "ALL" not in hc["cap_add"]
    assert hc["cgroupns"] == "private"
    assert "/sys/fs/cgroup" not in str(hc["binds"])  # its cgroups are its own
    assert hc["binds"] == {str(TLS): {"bind": "/etc/whale/tls", "mode": "ro"}}
    assert hc["memswap_limit"] == hc["mem_limit"] == "2g"  # no swap around the limit
    assert hc["pids_limit"] == 1024
    assert hc["port_bindings"] == {2376: ("127.0.0.1", 40001)}
    assert hc["network_mode"] == "whale-net-ada"
    assert s["host_config_raw"]["SecurityOpt"] == ["seccomp={}"]
    assert s["create"]["labels"] == {ROLE_LABEL: "engine", OWNER_LABEL: "ada"}
    # The gate answers on the engine's outer network, whichever it is now (the warm pool).
    assert s["create"]["environment"] == {"WHALE_GATE_INTERFACE": "eth+"}
    assert s["endpoint"] == ("whale-net-ada", ["engine"], None)


def test_bind_mounts_and_logs_of_an_engine_stay_off_the_operators_disk():
    """The seventh and eighth red teams: /tmp (where bind sources live) and /run
    (containerd's logs) were the engine's own layer on the operator's disk, and refusals
    grew its log without bound."""
    hc = spec()["host_config"]
    assert hc["tmpfs"] == {"/tmp": "size=256m,mode=1777", "/run": "size=64m,mode=755"} == ENGINE_TMPFS
    assert hc["log_config"] == ENGINE_LOG_CONFIG
    assert ENGINE_LOG_CONFIG["config"]["max-size"] == "1m"


def test_a_disk_is_the_engines_data_root():
    s = engine_container_spec("e", EngineSettings(), port=1, tls_dir=TLS, network="n",
                              disk_dir=Path("/state/disk"), seccomp_profile="{}")
    assert s["host_config"]["binds"][str(Path("/state/disk"))] == {"bind": "/var/lib/docker",
                                                                   "mode": "rw"}


def test_a_trusted_engine_is_not_a_sandbox_and_says_so_in_its_environment():
    s = engine_container_spec("e", EngineSettings(policy=False, swarm=True, registry_mirror="http://m:5000"),
                              port=1, tls_dir=TLS, network="n")
    assert s["host_config"]["cap_add"] == ["ALL"]
    assert "/sys/fs/cgroup" in str(s["host_config"]["binds"])
    assert "SecurityOpt" not in s["host_config_raw"]
    assert s["create"]["environment"] == {"WHALE_ENGINE_POLICY": "0", "WHALE_SWARM": "1",
                                          "WHALE_REGISTRY_MIRROR": "http://m:5000",
                                          "WHALE_GATE_INTERFACE": "eth+"}


def test_a_classroom_engine_is_never_made_without_its_seccomp_profile():
    with pytest.raises(ValueError, match="seccomp profile"):
        engine_container_spec("e", EngineSettings(), port=1, tls_dir=TLS, network="n")


def attrs_of(settings: EngineSettings, image: str = "sha256:new") -> dict:
    """What `docker inspect` says of an engine made from `settings` now."""
    s = engine_container_spec("e", settings, port=1, tls_dir=TLS, network="n", seccomp_profile="{}")
    env = [f"{k}={v}" for k, v in s["create"]["environment"].items()]
    return {"Config": {"Env": env}, "Image": image,
            "HostConfig": {"Tmpfs": s["host_config"]["tmpfs"]}}


def test_an_engine_that_fits_is_kept():
    settings = EngineSettings(registry_mirror="http://m:5000")
    assert needs_rebuild(attrs_of(settings), settings, "sha256:new") is None


@pytest.mark.parametrize(("then", "now", "why"), [
    (EngineSettings(), EngineSettings(registry_mirror="http://m:5000"), "another registry mirror"),
    (EngineSettings(policy=False), EngineSettings(), "another classroom policy"),
])
def test_an_engine_that_no_longer_fits_is_made_anew_and_says_why(then, now, why):
    assert needs_rebuild(attrs_of(then), now, "sha256:new") == f"engine made with {why}"


def test_an_engine_of_an_older_image_or_without_its_own_tmp_is_made_anew():
    settings = EngineSettings()
    assert needs_rebuild(attrs_of(settings, "sha256:old"), settings, "sha256:new") == \
        "engine made from an older engine image"
    old = attrs_of(settings)
    old["HostConfig"] = {}
    assert needs_rebuild(old, settings, "sha256:new") == "engine made without its own /tmp"
