"""whale-gate (images/engine/whale_gate/): the classroom policy as a gate in front of dockerd.

Two halves. The rules: `decide()` is a pure function, so the attack spellings (cases of
keys, Unicode folds, duplicates, fields out of place, encoded paths, old API versions,
bodies over the limit, the forms the old policy never looked at) are each checked for
their specific refusal, and the requests the real docker CLI sends for lessons (recorded
from docker 20.10, as in the learner's image, and 28.2, at API 1.41 and 1.45) for their
canonical form. Then end to end: the real docker CLI through a real engine's gate (run,
run -it, exec -i, attach, logs -f, cp, build, volumes, networks, a service on a swarm),
raw requests with the learner's certificate, HTTP framing, and TLS without a certificate.
"""
from __future__ import annotations

import contextlib
import http.client
import importlib
import json
import os
import pty
import select
import signal
import socket
import ssl
import subprocess
import time
import urllib.parse

import pytest
from engine_fixtures import engine_env, load_gate, start_engine

from whale_core.bundle import CredentialBundle
from whale_site import images

REFUSED = "is not allowed on this classroom engine"
UNKNOWN = "an unknown field"


gate = load_gate()

# Where bind sources resolve, for the rules (the engine's own filesystem is not this one).
LINKS = {"/tmp/rootlink": "/", "/tmp/etclink/x": "/etc/x", "/var/run/docker.sock": "/run/docker.sock"}


FILES = {"/tmp/runc-process1", "/run/docker.sock"}  # files on the engine, not directories


def resolve(path: str) -> str:
    """As the gate's resolve_source does on an engine: where a source leads, and
    NotADirectoryError (with that place) when it is a file there."""
    path = LINKS.get(os.path.normpath(path), os.path.normpath(path))
    if path in FILES:
        raise NotADirectoryError(20, "not a directory", path)
    return path


def decide(method, target, body=None, headers=None, **kw):
    path, _, query = target.partition("?")
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
    elif isinstance(body, str):
        body = body.encode()
    return gate.decide(method, path, query, headers or {"Host": "docker"}, body, resolve=resolve, **kw)


def refused(decision, *texts, status=403):
    assert not decision.allowed, decision
    assert decision.status == status, decision
    assert decision.message.startswith("whale: "), decision.message
    assert REFUSED in decision.message, decision.message
    for text in texts:
        assert text in decision.message, decision.message
    return decision.message


def allowed(decision):
    assert decision.allowed, decision.message
    return decision


BB = {"Image": "busybox", "Cmd": ["true"]}


def create(hc=None, **top):
    body = dict(BB, **top)
    if hc is not None:
        body["HostConfig"] = hc
    return decide("POST", "/v1.41/containers/create", body)


# -- what the real CLIs send (recorded) -------------------------------------------------------
# docker 20.10 (the learner's image): docker run -d --name web -p 8080:80 -v vol:/v -v /tmp/x:/y:ro
# -e A=1 --cap-drop ALL --cap-add NET_BIND_SERVICE --restart unless-stopped --memory 100m --cpus 0.5
# --pids-limit 100 --health-cmd true --mount type=tmpfs,target=/t --mount type=volume,source=v2,target=/w
# --network mynet --add-host host.docker.internal:host-gateway busybox httpd
CLI2010_RUN = (
    '{"Hostname":"","Domainname":"","User":"","AttachStdin":false,"AttachStdout":false,"AttachStderr":false,'
    '"ExposedPorts":{"80/tcp":{}},"Tty":false,"OpenStdin":false,"StdinOnce":false,"Env":["A=1"],'
    '"Cmd":["httpd"],"Healthcheck":{"Test":["CMD-SHELL","true"]},"Image":"busybox","Volumes":{},'
    '"WorkingDir":"","Entrypoint":null,"OnBuild":null,"Labels":{},"HostConfig":{"Binds":["vol:/v",'
    '"/tmp/x:/y:ro"],"ContainerIDFile":"","LogConfig":{"Type":"","Config":{}},"NetworkMode":"mynet",'
    '"PortBindings":{"80/tcp":[{"HostIp":"","HostPort":"8080"}]},"RestartPolicy":{"Name":"unless-stopped",'
    '"MaximumRetryCount":0},"AutoRemove":false,"VolumeDriver":"","VolumesFrom":null,"CapAdd":'
    '["NET_BIND_SERVICE"],"CapDrop":["ALL"],"CgroupnsMode":"","Dns":[],"DnsOptions":[],"DnsSearch":[],'
    '"ExtraHosts":["host.docker.internal:host-gateway"],"GroupAdd":null,"IpcMode":"","Cgroup":"","Links":nu'
    'll,'
    '"OomScoreAdj":0,"PidMode":"","Privileged":false,"PublishAllPorts":false,"ReadonlyRootfs":false,'
    '"SecurityOpt":null,"UTSMode":"","UsernsMode":"","ShmSize":0,"ConsoleSize":[0,0],"Isolation":"",'
    '"CpuShares":0,"Memory":104857600,"NanoCpus":500000000,"CgroupParent":"","BlkioWeight":0,'
    '"BlkioWeightDevice":[],"BlkioDeviceReadBps":null,"BlkioDeviceWriteBps":null,"BlkioDeviceReadIOps":null,'
    '"BlkioDeviceWriteIOps":null,"CpuPeriod":0,"CpuQuota":0,"CpuRealtimePeriod":0,"CpuRealtimeRuntime":0,'
    '"CpusetCpus":"","CpusetMems":"","Devices":[],"DeviceCgroupRules":null,"DeviceRequests":null,'
    '"KernelMemory":0,"KernelMemoryTCP":0,"MemoryReservation":0,"MemorySwap":0,"MemorySwappiness":-1,'
    '"OomKillDisable":false,"PidsLimit":100,"Ulimits":null,"CpuCount":0,"CpuPercent":0,"IOMaximumIOps":0,'
    '"IOMaximumBandwidth":0,"Mounts":[{"Type":"tmpfs","Target":"/t"},{"Type":"volume","Source":"v2",'
    '"Target":"/w"}],"MaskedPaths":null,"ReadonlyPaths":null},"NetworkingConfig":{"EndpointsConfig":{}}}')
# docker 28.2 at API 1.45: docker run --rm --read-only --init --tmpfs /run --security-opt
# no-new-privileges busybox (newer clients send fields of later APIs, such as GwPriority)
CLI28_RUN = (
    '{"Hostname":"","Domainname":"","User":"","AttachStdin":false,"AttachStdout":true,"AttachStderr":true,'
    '"Tty":false,"OpenStdin":false,"StdinOnce":false,"Env":null,"Cmd":null,"Image":"busybox","Volumes":{},'
    '"WorkingDir":"","Entrypoint":null,"OnBuild":null,"Labels":{},"HostConfig":{"Binds":null,'
    '"ContainerIDFile":"","LogConfig":{"Type":"","Config":{}},"NetworkMode":"default","PortBindings":{},'
    '"RestartPolicy":{"Name":"no","MaximumRetryCount":0},"AutoRemove":false,"VolumeDriver":"",'
    '"VolumesFrom":null,"ConsoleSize":[0,0],"CapAdd":null,"CapDrop":null,"CgroupnsMode":"","Dns":[],'
    '"DnsOptions":[],"DnsSearch":[],"ExtraHosts":null,"GroupAdd":null,"IpcMode":"","Cgroup":"","Links":null,'
    '"OomScoreAdj":0,"PidMode":"","Privileged":false,"PublishAllPorts":false,"ReadonlyRootfs":true,'
    '"SecurityOpt":["no-new-privileges"],"Tmpfs":{"/run":""},"UTSMode":"","UsernsMode":"","ShmSize":0,'
    '"Isolation":"","CpuShares":0,"Memory":0,"NanoCpus":0,"CgroupParent":"","BlkioWeight":0,'
    '"BlkioWeightDevice":[],"BlkioDeviceReadBps":[],"BlkioDeviceWriteBps":[],"BlkioDeviceReadIOps":[],'
    '"BlkioDeviceWriteIOps":[],"CpuPeriod":0,"CpuQuota":0,"CpuRealtimePeriod":0,"CpuRealtimeRuntime":0,'
    '"CpusetCpus":"","CpusetMems":"","Devices":[],"DeviceCgroupRules":null,"DeviceRequests":null,'
    '"MemoryReservation":0,"MemorySwap":0,"MemorySwappiness":-1,"OomKillDisable":false,"PidsLimit":0,'
    '"Ulimits":[],"CpuCount":0,"CpuPercent":0,"IOMaximumIOps":0,"IOMaximumBandwidth":0,"MaskedPaths":null,'
    '"ReadonlyPaths":null,"Init":true},"NetworkingConfig":{"EndpointsConfig":{"default":{"IPAMConfig":null,'
    '"Links":null,"Aliases":null,"MacAddress":"","DriverOpts":null,"GwPriority":0,"NetworkID":"",'
    '"EndpointID":"","Gateway":"","IPAddress":"","IPPrefixLen":0,"IPv6Gateway":"","GlobalIPv6Address":"",'
    '"GlobalIPv6PrefixLen":0,"DNSNames":null}}}}')
CLI_UPDATE = (
    '{"CpuShares":0,"Memory":209715200,"NanoCpus":0,"CgroupParent":"","BlkioWeight":0,'
    '"BlkioWeightDevice":null,"BlkioDeviceReadBps":null,"BlkioDeviceWriteBps":null,"BlkioDeviceReadIOps":nu'
    'll,'
    '"BlkioDeviceWriteIOps":null,"CpuPeriod":0,"CpuQuota":0,"CpuRealtimePeriod":0,"CpuRealtimeRuntime":0,'
    '"CpusetCpus":"","CpusetMems":"","Devices":null,"DeviceCgroupRules":null,"DeviceRequests":null,'
    '"KernelMemory":0,"KernelMemoryTCP":0,"MemoryReservation":0,"MemorySwap":0,"MemorySwappiness":null,'
    '"OomKillDisable":null,"PidsLimit":null,"Ulimits":null,"CpuCount":0,"CpuPercent":0,"IOMaximumIOps":0,'
    '"IOMaximumBandwidth":0,"RestartPolicy":{"Name":"always","MaximumRetryCount":0}}')
# A service's spec as dockerd 20.10 returns it: `docker service update` sends it back, changed.
SERVICE_SPEC = (
    '{"Name":"s1","Labels":{},"TaskTemplate":{"ContainerSpec":{"Image":"busybox:latest","Args":["sleep",'
    '"1000"],"Init":false,"Mounts":[{"Type":"tmpfs","Target":"/t"}],"StopGracePeriod":10000000000,'
    '"DNSConfig":{},"Isolation":"default"},"Resources":{"Limits":{"MemoryBytes":67108864},"Reservations":{}},'
    '"RestartPolicy":{"Condition":"on-failure","Delay":5000000000,"MaxAttempts":0},"Placement":{},'
    '"ForceUpdate":0,"Runtime":"container"},"Mode":{"Replicated":{"Replicas":1}},"UpdateConfig":'
    '{"Parallelism":1,"FailureAction":"pause","Monitor":5000000000,"MaxFailureRatio":0,"Order":"stop-first"},'
    '"RollbackConfig":{"Parallelism":1,"FailureAction":"pause","Monitor":5000000000,"MaxFailureRatio":0,'
    '"Order":"stop-first"},"EndpointSpec":{"Mode":"dnsrr"}}')
SWARM_SPEC = (
    '{"Name":"default","Labels":{},"Orchestration":{"TaskHistoryRetentionLimit":3},"Raft":{"SnapshotInterva'
    'l":'
    '10000,"KeepOldSnapshots":0,"LogEntriesForSlowFollowers":500,"ElectionTick":10,"HeartbeatTick":1},'
    '"Dispatcher":{"HeartbeatPeriod":5000000000},"CAConfig":{"NodeCertExpiry":7776000000000000},'
    '"TaskDefaults":{},"EncryptionConfig":{"AutoLockManagers":false}}')
SWARM_INIT = (
    '{"ListenAddr":"0.0.0.0:2377","AdvertiseAddr":"127.0.0.1","DataPathAddr":"","DataPathPort":0,'
    '"ForceNewCluster":false,"Spec":{"Labels":null,"Orchestration":{},"Raft":{"ElectionTick":0,'
    '"HeartbeatTick":0},"Dispatcher":{},"CAConfig":{},"TaskDefaults":{},"EncryptionConfig":'
    '{"AutoLockManagers":false}},"AutoLockManagers":false,"Availability":"","DefaultAddrPool":[],'
    '"SubnetSize":24}')

# (method, target, body, extra headers) as the CLIs sent them
CLI_REQUESTS = [
    ("HEAD", "/_ping", None, {}),
    ("POST", "/v1.41/containers/create?name=web", CLI2010_RUN, {"Content-Type": "application/json"}),
    ("POST", "/v1.45/containers/create", CLI28_RUN, {"Content-Type": "application/json"}),
    ("POST", "/v1.41/containers/c0ffee/attach?stderr=1&stdout=1&stream=1", b"",
     {"Connection": "Upgrade", "Upgrade": "tcp", "Content-Type": "text/plain"}),
    ("POST", "/v1.41/containers/c0ffee/wait?condition=next-exit", b"", {"Content-Type": "text/plain"}),
    ("POST", "/v1.41/containers/c0ffee/start", b"", {"Content-Type": "text/plain"}),
    ("POST", "/v1.41/containers/c1/exec", '{"User":"","Privileged":false,"Tty":false,"AttachStdin":true,'
     '"AttachStderr":true,"AttachStdout":true,"Detach":false,"DetachKeys":"","Env":null,"WorkingDir":"",'
     '"Cmd":["cat"]}', {}),
    ("POST", "/v1.41/exec/e0e0/start", '{"Detach":false,"Tty":false}', {"Connection": "Upgrade",
                                                                        "Upgrade": "tcp"}),
    ("POST", "/v1.41/containers/c1/kill?signal=KILL", b"", {}),
    ("DELETE", "/v1.41/containers/c1?force=1", None, {}),
    ("POST", "/v1.41/containers/c1/update", CLI_UPDATE, {}),
    ("POST", "/v1.41/containers/c1/rename?name=c2", b"", {}),
    ("POST", "/v1.41/volumes/create", '{"Driver":"local","DriverOpts":{},"Labels":{},"Name":"v1"}', {}),
    ("POST", "/v1.45/volumes/create", '{"Driver":"local","DriverOpts":{"device":"tmpfs","o":"size=100m",'
     '"type":"tmpfs"},"Name":"v2"}', {}),
    ("POST", "/v1.41/networks/create",
     '{"CheckDuplicate":true,"Driver":"bridge","Scope":"","EnableIPv6":false,'
     '"IPAM":{"Driver":"default","Options":{},"Config":[]},"Internal":false,"Attachable":false,'
     '"Ingress":false,"ConfigOnly":false,"ConfigFrom":null,"Options":{},"Labels":{},"Name":"n1"}', {}),
    ("POST", "/v1.45/networks/create",
     '{"Driver":"overlay","Scope":"","IPAM":{"Driver":"default","Options":{},'
     '"Config":[]},"Internal":false,"Attachable":true,"Ingress":false,"ConfigOnly":false,"ConfigFrom":null,'
     '"Options":{},"Labels":{},"Name":"n2"}', {}),
    ("POST", "/v1.45/networks/n1/connect", '{"Container":"c1","EndpointConfig":{"IPAMConfig":{},"Links":null,'
     '"Aliases":[],"MacAddress":"","DriverOpts":{},"GwPriority":0,"NetworkID":"","EndpointID":"",'
     '"Gateway":"","IPAddress":"","IPPrefixLen":0,"IPv6Gateway":"","GlobalIPv6Address":"","GlobalIPv6PrefixLen":0,'
     '"DNSNames":null}}', {}),
    ("POST", "/v1.41/networks/n1/disconnect", '{"Container":"c1","Force":false}', {}),
    ("POST", "/v1.41/services/create", '{"Name":"s1","Labels":{},"TaskTemplate":{"ContainerSpec":{"Image":'
     '"busybox:latest","Args":["sleep","100"],"Init":false,"DNSConfig":{}},"Resources":{"Limits":{},'
     '"Reservations":{}},"Placement":{},"ForceUpdate":0},"Mode":{"Replicated":{"Replicas":2}},"EndpointSpec":'
     '{"Mode":"vip","Ports":[{"Protocol":"tcp","TargetPort":80,"PublishedPort":8080,'
     '"PublishMode":"ingress"}]}}',
     {"X-Registry-Auth": "e30="}),
    ("POST", "/v1.41/services/s1/update?version=12", SERVICE_SPEC, {}),
    ("POST", "/v1.41/secrets/create", '{"Name":"sec1","Labels":{},"Data":"dm0K"}', {}),
    ("POST", "/v1.41/configs/create", '{"Name":"cfg1","Labels":{},"Data":"dm0K"}', {}),
    ("POST", "/v1.45/swarm/init", SWARM_INIT, {}),
    ("POST", "/v1.41/swarm/update?version=10", SWARM_SPEC, {}),
    ("POST", "/v1.41/swarm/leave?force=1", b"", {}),
    ("POST", "/v1.41/auth", '{"username":"a","password":"b","serveraddress":"localhost:5000"}', {}),
    ("POST", "/v1.41/images/create?fromImage=busybox&tag=latest", b"", {"X-Registry-Auth": "e30="}),
    ("POST", "/v1.41/images/busybox/tag?repo=b2&tag=latest", b"", {}),
    ("POST", "/v1.41/images/localhost:5000/x/push?tag=latest", b"", {"X-Registry-Auth": "e30="}),
    ("POST", "/v1.41/images/prune?filters=%7B%22dangling%22%3A%7B%22true%22%3Atrue%7D%7D", b"", {}),
    ("POST", "/v1.41/build?buildargs=%7B%22X%22%3A%221%22%7D&cachefrom=%5B%5D&cgroupparent=&cpuperiod=0&"
     "cpuquota=0&cpusetcpus=&cpusetmems=&cpushares=0&dockerfile=Dockerfile&extrahosts=h%3A1.2.3.4&labels="
     "%7B%22l%22%3A%221%22%7D&memory=0&memswap=0&networkmode=mynet&rm=1&shmsize=0&t=a%3A1&t=a%3A2&target=&"
     "ulimits=null&version=1", None, {"Content-Type": "application/x-tar", "X-Registry-Config": "e30="}),
    ("POST", "/v1.45/build?dockerfile=Dockerfile&q=1&version=1", None,
     {"Content-Type": "application/x-tar", "X-Registry-Config": "e30=", "Accept-Encoding": "gzip"}),
    ("POST", "/v1.41/build/prune?filters=&keep-storage=0", b"", {}),
    ("POST", "/v1.41/images/load?quiet=1", None, {"Content-Type": "application/x-tar"}),
    ("POST", "/v1.41/images/create?fromSrc=-&message=&repo=imp%3A1&tag=", None,
     {"Content-Type": "text/plain"}),
    ("GET", "/v1.41/containers/c0ffee/logs?follow=1&stderr=1&stdout=1&tail=10", None, {}),
    ("GET", "/v1.41/events?filters=%7B%22type%22%3A%7B%22container%22%3Atrue%7D%7D", None, {}),
    ("GET", "/v1.41/containers/json?all=1", None, {}),
    ("GET", "/v1.41/images/get?names=busybox", None, {}),
    ("GET", "/v1.41/images/search?limit=25&term=busybox", None, {"X-Registry-Auth": "e30="}),
    ("GET", "/v1.41/distribution/busybox:latest/json", None, {}),
    ("GET", "/v1.41/services?filters=%7B%22id%22%3A%7B%22s1%22%3Atrue%7D%7D", None, {}),
    ("GET", "/v1.41/services/s1?insertDefaults=false", None, {}),
    ("DELETE", "/v1.41/images/busybox", None, {}),
    ("GET", "/v1.41/system/df", None, {}),
    ("GET", "/v1.41/plugins", None, {}),
]


def without_copy(body: dict) -> dict:
    """What the gate sends for a create request: named volumes get "nocopy"."""
    hc = body.get("HostConfig") or {}
    if hc.get("Binds"):
        hc["Binds"] = [gate.without_copy(b) for b in hc["Binds"]]
    for mount in hc.get("Mounts") or []:
        if mount.get("Type") == "volume" and mount.get("Source"):
            mount.setdefault("VolumeOptions", {})
            mount["VolumeOptions"] = dict(mount["VolumeOptions"] or {}, NoCopy=True)
    return body


@pytest.mark.parametrize(("spec", "sent"), [
    ("vol:/v", "vol:/v:nocopy"), ("vol:/v:ro", "vol:/v:ro,nocopy"), ("vol:/v:nocopy", "vol:/v:nocopy"),
    ("/tmp/x:/y:ro", "/tmp/x:/y:ro"), ("/tmp/x:/y", "/tmp/x:/y"),
])
def test_named_volumes_are_mounted_without_the_copy_from_the_image(spec, sent):
    """The third red team planted a link in a volume while dockerd filled it from the image
    (in the engine's own mount namespace) and wrote /etc/ld.so.preload as the engine's root."""
    d = allowed(create({"Binds": [spec]}))
    assert json.loads(d.body)["HostConfig"]["Binds"] == [sent]
    d = allowed(create({"Mounts": [{"Type": "volume", "Source": "vol", "Target": "/v"}]}))
    assert json.loads(d.body)["HostConfig"]["Mounts"][0]["VolumeOptions"]["NoCopy"] is True


@pytest.mark.parametrize("mode", ["container:c1", "CONTAINER:c1", "container:0123abcd"])
def test_sharing_another_containers_processes_is_refused(mode):
    """The fourth red team: a container in c1's pid namespace swapped a file of c1 for a
    link while `docker commit` (c1 paused) walked c1's files in the engine's mount
    namespace, and the engine's TLS key ended up in an image."""
    refused(create({"PidMode": mode}), "--pid container:")


@pytest.mark.parametrize(("key", "flag"), [("NetworkMode", "--network"), ("IpcMode", "--ipc")])
def test_joining_another_containers_network_or_ipc_namespace_is_refused(key, flag):
    """The sixth red team joined a build step's network namespace and passed a directory
    handle over an abstract unix socket; the builder's commit of the step then read the
    engine's TLS key through a swapped link."""
    refused(create({key: "container:0123abcd"}), f"({flag} container:")
    refused(create({key: "Container:web"}), f"({flag} container:")


def test_volumes_from_and_commit_are_refused():
    """docker commit walks the container's files in the engine's mount namespace: the
    third, fourth and fifth red teams redirected that walk (unpaused, through another
    container's /proc/1/root, through a passed directory handle) to the engine's TLS key."""
    refused(create({"VolumesFrom": ["other"]}), "--volumes-from")
    for query in ("container=c1&pause=0", "container=c1&pause=1", "container=c1",
                  "author=&comment=&container=c1&repo=img&tag=tag"):
        refused(decide("POST", f"/v1.41/commit?{query}", b""), "(docker commit)", "docker export")


@pytest.mark.parametrize("spec", ["0123456789abcdef" * 4 + ":/v", "0123456789abcdef" * 4 + ":/v:ro"])
def test_another_containers_anonymous_volume_cannot_be_mounted_by_name(spec):
    """The fifth red team mounted a new anonymous volume by its name while dockerd was
    still filling it from the image, planted a link, and the copy wrote /etc/ld.so.preload."""
    name = spec.split(":")[0]
    refused(create({"Binds": [spec]}), "anonymous volume")
    refused(create({"Mounts": [{"Type": "volume", "Source": name, "Target": "/v"}]}), "anonymous volume")
    service = {"Name": "s", "TaskTemplate": {"ContainerSpec": {
        "Image": "busybox", "Mounts": [{"Type": "volume", "Source": name, "Target": "/v"}]}}}
    refused(decide("POST", "/v1.41/services/create", service), "anonymous volume")
    allowed(create({"Binds": ["0123456789abcdef:/v"]}))  # a name of the learner's own


@pytest.mark.parametrize("mount", [
    {"Type": "volume", "Source": '{{index .Service.Labels "v"}}', "Target": "/v"},
    {"Type": "volume", "Source": "data", "Target": "/v{{.Task.Slot}}"},
    {"Type": "volume", "Source": "data{{.Node.ID}}", "Target": "/v"},
    {"Type": "volume", "Source": "data", "Target": "/v",
     "VolumeOptions": {"Labels": {"x": "{{.Service.Name}}"}}},
    {"Type": "bind", "Source": "/tmp/{{.Service.Name}}", "Target": "/v"},
])
def test_a_templated_service_mount_is_refused(mount):
    """The seventh red team named another container's anonymous volume with a swarm
    template, {{index .Service.Labels "v"}} and a label holding the volume's name: the
    gate checked the template's text, the swarm filled it in later, and the engine's copy
    into the volume wrote the engine's own files (its TLS key was read that way)."""
    service = {"Name": "s", "Labels": {"v": "0123456789abcdef" * 4},
               "TaskTemplate": {"ContainerSpec": {"Image": "busybox", "Mounts": [mount]}}}
    refused(decide("POST", "/v1.41/services/create", service),
            "a template in a service's mount ({{…}} in --mount)", "fills templates in after this check")
    refused(decide("POST", "/v1.41/services/abc/update?version=3", service),
            "a template in a service's mount")
    # Templates elsewhere in a service (the hostname, the environment) stay allowed.
    plain = {"Name": "s", "TaskTemplate": {"ContainerSpec": {
        "Image": "busybox", "Hostname": "{{.Node.Hostname}}-{{.Task.Slot}}", "Env": ["N={{.Task.Name}}"],
        "Mounts": [{"Type": "volume", "Source": "data", "Target": "/v"}]}}}
    allowed(decide("POST", "/v1.41/services/create", plain))


@pytest.mark.parametrize(("method", "target", "body", "headers"), CLI_REQUESTS,
                         ids=[f"{m} {t.split('?')[0]}" for m, t, _, _ in CLI_REQUESTS])
def test_what_the_docker_cli_sends_is_allowed_and_forwarded_as_dockerd_reads_it(method, target, body,
                                                                                headers):
    headers = {"Host": "127.0.0.1:2376", "User-Agent": "Docker-Client/20.10.24+dfsg1 (linux)", **headers}
    d = allowed(decide(method, target, body, headers))
    path, _, query = target.partition("?")
    assert d.method == method
    assert d.path == path
    # The query, re-encoded, is what Go reads from the original.
    assert urllib.parse.parse_qsl(d.query, keep_blank_values=True) == \
        urllib.parse.parse_qsl(query, keep_blank_values=True)
    sent = dict(d.headers)
    assert sent["Host"] == "127.0.0.1:2376"
    assert sent["User-Agent"].startswith("Docker-Client/")
    assert set(sent) <= {"Host", "User-Agent", "Content-Type", "X-Registry-Auth", "X-Registry-Config",
                         "Connection", "Upgrade"}
    assert "Accept-Encoding" not in sent
    if body not in (None, b"", "null"):
        # The same JSON dockerd would have read, and nothing else, but for named volumes,
        # which are mounted without the copy from the image ("nocopy").
        assert json.loads(d.body) == without_copy(json.loads(body))
        assert sent["Content-Type"] == "application/json"
    else:
        assert d.body is None
    head = d.request_head()
    assert head.startswith(f"{method} {d.target} HTTP/1.1\r\n".encode())
    assert head.endswith(b"\r\n\r\n")
    if "Upgrade" in headers:
        assert sent["Connection"] == "Upgrade"
        assert sent["Upgrade"] == "tcp"
        assert d.hijack
    else:
        assert "Connection" not in sent
        assert "Upgrade" not in sent
    if body is None and method in ("POST", "PUT") and gate.wants_stream(method, path):
        assert d.stream  # a build context or an image archive: passed through as it comes


def test_canonical_re_encoding():
    d = allowed(decide("POST", "/v1.41/containers/create?name=a+b%2Dc",
                       ' {"Image" : "busybox",\n "Labels": {"k": "caf\\u00e9"}} ',
                       {"Host": "docker", "Cookie": "x", "X-Registry-Auth": "e30=",
                        "Expect": "100-continue"}))
    assert d.target == "/v1.41/containers/create?name=a%20b-c"
    assert d.body == b'{"Image":"busybox","Labels":{"k":"caf\\u00e9"}}'
    assert [k for k, _ in d.headers] == ["Host", "Content-Type"]  # nothing this call does not take
    assert d.request_head() == (f"POST /v1.41/containers/create?name=a%20b-c HTTP/1.1\r\nHost: docker\r\n"
                                f"Content-Type: application/json\r\nContent-Length: {len(d.body)}\r\n\r\n"
                                ).encode()
    # Without a version prefix, and with a Host the gate does not like.
    d = allowed(decide("GET", "/containers/json", headers={"Host": "ev il\x01"}))
    assert d.target == "/containers/json"
    assert dict(d.headers)["Host"] == "docker"


# -- the attack spellings -----------------------------------------------------------------
@pytest.mark.parametrize(("body", "texts"), [
    ({**BB, "hostconfig": {"Privileged": True}}, [f'{UNKNOWN} "hostconfig" in the container\'s config',
                                                  'Docker\'s field is "HostConfig"']),
    ({**BB, "HostConfig": {"privileged": True}}, [f'{UNKNOWN} "privileged" in the container\'s HostConfig']),
    ({**BB, "HostConfig": {"capadd": ["SYS_ADMIN"]}}, [f'{UNKNOWN} "capadd"']),
    ({**BB, "HostConfig": {"usernsmode": "host"}}, [f'{UNKNOWN} "usernsmode"']),
    ({**BB, "HostConfig": {"BINDS": ["/:/host"]}}, [f'{UNKNOWN} "BINDS"']),
    ({**BB, "HostConfig": {"Bind\u017f": ["/:/host"]}}, [f'{UNKNOWN} "Bind\\u017f"', '"Binds"']),
    ({**BB, "HostConfig": {"Mas\u212aedPaths": []}}, [f'{UNKNOWN} "Mas\\u212aedPaths"', '"MaskedPaths"']),
    ({**BB, "HostConfig": {"\u212aernelMemory": 1}}, [f'{UNKNOWN} "\\u212aernelMemory"']),
    ({**BB, "Privileged": True}, [f'{UNKNOWN} "Privileged" in the container\'s config']),
    ({**BB, "Binds": ["/:/host"]}, [f'{UNKNOWN} "Binds" in the container\'s config']),
    ({**BB, "CapAdd": ["SYS_ADMIN"]}, [f'{UNKNOWN} "CapAdd" in the container\'s config']),
    ({**BB, "Cpuset": "0"}, [f'{UNKNOWN} "Cpuset"']),
    ({**BB, "HostConfig": {"Mounts": [{"type": "bind", "source": "/", "target": "/h"}]}},
     [f'{UNKNOWN} "type" in a mount (Mounts)']),
    ({**BB, "HostConfig": {"Mounts": [{"Type": "volume", "Target": "/h", "VolumeOptions": {
        "driverconfig": {"Options": {"type": "none"}}}}]}}, [f'{UNKNOWN} "driverconfig"']),
    ({**BB, "NetworkingConfig": {"EndpointsConfig": {"n": {"driveropts": {"x": "y"}}}}},
     [f'{UNKNOWN} "driveropts" in a network endpoint\'s settings']),
    ({**BB, "HostConfig": {"Privileged": "true"}},
     ['the value of "Privileged" in the container\'s HostConfig', "Docker expects true or false"]),
    ({**BB, "HostConfig": {"Privileged": 1}}, ['the value of "Privileged"']),
    ({**BB, "HostConfig": {"OomScoreAdj": -1.5}}, ['the value of "OomScoreAdj"']),
])
def test_a_body_dockerd_could_read_otherwise_is_refused(body, texts):
    refused(decide("POST", "/v1.41/containers/create", body), *texts)


@pytest.mark.parametrize(("raw", "text"), [
    ('{"Image":"busybox","HostConfig":{"Binds":[],"Binds":["/:/host"]}}', 'a duplicate field "Binds"'),
    ('{"Image":"busybox","HostConfig":{"Privileged":false,"Privileged":true}}',
     'a duplicate field "Privileged"'),
    ('{"Image":"busybox","HostConfig":{},"HostConfig":{"Privileged":true}}',
     'a duplicate field "HostConfig"'),
    ('{"Image":"busybox","Labels":{"a":"1","a":"2"}}', 'a duplicate field "a"'),
    ('{"Image":', "a request body that is not valid JSON"),
    ('{"Image":"busybox"} {"HostConfig":{"Privileged":true}}', "a request body that is not valid JSON"),
    ('{"Image":"busybox","HostConfig":{"Memory":NaN}}', "a request body that is not valid JSON"),
    ('{"Image":"busybox","HostConfig":{"Memory":1e999}}', "a number out of range"),
    ('{"Image":"busybox","HostConfig":{"Memory":99999999999999999999}}', "a number out of range"),
    ('{"Image":"busybox","HostConfig":{"Binds":["/tmp/\\udcff:/x"]}}', "a lone surrogate"),
    (b'{"Image":"busybox","Labels":{"a":"\xff"}}', "a request body that is not UTF-8 text"),
    ('\ufeff{"Image":"busybox"}', "a request body that is not valid JSON"),
    ('["busybox"]', "that is not a JSON object"),
    ('null', "POST /containers/create without a request body"),
    ("", "POST /containers/create without a request body"),
])
def test_ambiguous_or_unreadable_json_is_refused(raw, text):
    refused(decide("POST", "/v1.41/containers/create", raw), text)


def test_a_missing_body_is_refused():
    refused(decide("POST", "/v1.41/containers/create"), "POST /containers/create without a request body")
    refused(decide("POST", "/v1.41/containers/x/exec"), "without a request body")
    refused(decide("POST", "/v1.41/volumes/create"), "without a request body")


def test_a_body_over_1_mib_is_refused_with_413():
    body = {**BB, "Labels": {"x": "a" * (1 << 20)}}
    refused(decide("POST", "/v1.41/containers/create", body), "a request body over 1 MiB", status=413)
    refused(decide("POST", "/v1.41/services/create", b" " * ((1 << 20) + 1)), "1 MiB", status=413)


@pytest.mark.parametrize(("method", "target", "text"), [
    ("POST", "/containers/%63reate", "the request path '/containers/%63reate'"),
    ("POST", "/plugins/%63reate?name=x", "the request path '/plugins/%63reate'"),
    ("POST", "//containers/create", "the request path '//containers/create'"),
    ("POST", "/v1.41//containers/create", "the request path"),
    ("POST", "/v1.41/x/../containers/create", "the request path"),
    ("POST", "/v1.41/containers/create/", "the API call POST /containers/create/"),
    ("POST", "/v1.41/Containers/create", "the API call POST /Containers/create"),
    ("POST", "/v1.41/containers/create;x", "the request path"),
    ("POST", "/v1.41/containers/cre\u0430te", "the request path"),
    ("POST", "/v1.23/containers/create", "the Docker API version 1.23"),
    ("POST", "/v1.12/containers/x/start", "the Docker API version 1.12"),
    ("POST", "/v1.041/containers/create", "the API version 1.041"),
    ("POST", "/v2.0/containers/create", "the API version 2.0"),
    ("GET", "/v1.41/v1.41/containers/json", "the API call GET /v1.41/containers/json"),
    ("PATCH", "/v1.41/containers/x", 'the HTTP method "PATCH"'),
    ("HEAD", "/v1.41/containers/json", "the API call HEAD /containers/json"),
    ("POST", "/v1.41/containers/x/checkpoints", "the API call POST /containers/x/checkpoints"),
    ("POST", "/v1.41/containers/x/copy", "the API call POST /containers/x/copy"),
    ("PUT", "/v1.41/volumes/x", "the API call PUT /volumes/x"),
    ("POST", "/v1.41/swarm/unlockkey", "the API call POST /swarm/unlockkey"),
    ("GET", "/v1.41/foo", "the API call GET /foo"),
    ("POST", "/v1.41/plugins/pull?remote=evil/plugin",
     "installing or changing engine plugins (POST /plugins/pull)"),
    ("POST", "/v1.41/plugins/create?name=evil",
     "installing or changing engine plugins (POST /plugins/create)"),
    ("POST", "/v1.41/plugins/evil/upgrade?remote=x", "installing or changing engine plugins"),
    ("POST", "/v1.41/plugins/evil/set", "installing or changing engine plugins"),
    ("POST", "/v1.41/plugins/evil/enable", "installing or changing engine plugins"),
    ("POST", "/v1.41/plugins/evil/push", "installing or changing engine plugins"),
    ("DELETE", "/v1.41/plugins/evil", "installing or changing engine plugins"),
    ("POST", "/v1.41/session/abc", "the API call POST /session/abc"),
    ("POST", "/v1.41/grpc/moby.buildkit.v1.Control/Solve", "the API call POST /grpc/moby.buildkit"),
    ("POST", "/v1.41/build/abc", "the API call POST /build/abc"),
])
def test_paths_and_endpoints_off_the_list_are_refused(method, target, text):
    refused(decide(method, target, b"{}" if method in ("POST", "PUT") else None), text)


def test_old_api_versions_and_bodies_on_calls_that_take_none():
    # API 1.23 and older read a HostConfig from the start request.
    refused(decide("POST", "/v1.23/containers/abc/start", {"HostConfig": {"Privileged": True}}),
            "the Docker API version 1.23", "use a current docker client")
    refused(decide("POST", "/v1.41/containers/abc/start", {"HostConfig": {"Privileged": True}}),
            "a request body on POST /containers/{id}/start")
    refused(decide("POST", "/containers/abc/start", {"Binds": ["/:/h"]}), "a request body on POST")
    refused(decide("POST", "/v1.41/containers/abc/kill", "x"), "a request body on POST /containers/{id}/kill")
    allowed(decide("POST", "/v1.24/containers/abc/start", b""))


@pytest.mark.parametrize(("target", "text"), [
    ("/v1.41/containers/create?name=a;name=b", "a semicolon in the query string"),
    ("/v1.41/containers/create?name=a&name=b", 'the query parameter "name" given twice'),
    ("/v1.41/containers/create?name=%zz", 'a malformed query parameter "name"'),
    ("/v1.41/containers/create?name=%ff", 'a query parameter that is not UTF-8 text ("name")'),
    ("/v1.41/containers/create?name=a%00b", "a NUL character"),
    ("/v1.41/containers/create?name=a#b", "a fragment"),
])
def test_a_query_dockerd_could_read_otherwise_is_refused(target, text):
    refused(decide("POST", target, BB), text)


def test_parameters_an_endpoint_does_not_take_are_not_forwarded():
    # dockerd is sent only the parameters the gate knows for the endpoint (and checked).
    for target, kept in [("/v1.41/containers/x/start?checkpoint=c", ""),
                         ("/v1.41/containers/create?Name=a&name=b", "name=b"),
                         ("/v1.41/build?NetworkMode=host&t=x", "t=x"),
                         ("/v1.41/images/create?fromImage=a&X-Registry-Auth=x", "fromImage=a"),
                         ("/v1.41/containers/json?all=1&trunc_cmd=0", "all=1")]:
        body = BB if "create?Name" in target else None
        assert allowed(decide("POST" if "json" not in target else "GET", target, body)).query == kept


def test_exec():
    refused(decide("POST", "/v1.41/containers/x/exec", {"Cmd": ["id"], "privileged": True}),
            f'{UNKNOWN} "privileged" in the exec settings')
    refused(decide("POST", "/v1.41/containers/x/exec", {"Cmd": ["id"], "Privileged": True}),
            "a privileged exec session (docker exec --privileged)")
    refused(decide("POST", "/v1.41/exec/e1/start", {"Detach": False, "privileged": True}),
            f'{UNKNOWN} "privileged" in the exec start settings')
    # What docker-py 7 sends (Container, and detachKeys with a detach-keys setting).
    allowed(decide("POST", "/v1.41/containers/x/exec", {"Container": "x", "User": "", "Privileged": False,
                                                        "Cmd": ["id"], "Env": None, "detachKeys": "ctrl-p"}))


# -- the rules on what a container may do ----------------------------------------------------
@pytest.mark.parametrize(("hc", "texts"), [
    ({"Privileged": True}, ["a privileged container (--privileged)", "reach past your engine"]),
    ({"Privileged": True, "UsernsMode": "host"}, ["a privileged container"]),
    ({"UsernsMode": "host"}, ["sharing the engine's namespace (--userns=host)"]),
    ({"UsernsMode": "private"}, ['the user namespace mode "private"']),
    ({"PidMode": "host"}, ["sharing the engine's namespace (--pid=host)"]),
    ({"IpcMode": "host"}, ["(--ipc=host)"]),
    ({"NetworkMode": "host"}, ["(--network=host)"]),
    ({"NetworkMode": "HOST"}, ["(--network=host)"]),
    ({"UTSMode": "host"}, ["(--uts=host)"]),
    ({"CgroupnsMode": "host"}, ["(--cgroupns=host)"]),
    ({"CapAdd": ["SYS_ADMIN"]}, ["adding kernel capabilities (SYS_ADMIN)"]),
    ({"CapAdd": "sys_admin"}, ["adding kernel capabilities (SYS_ADMIN)"]),  # a string is a list of one
    ({"CapAdd": ["cap_sys_module", "CHOWN"]}, ["adding kernel capabilities (SYS_MODULE)"]),
    ({"CapAdd": ["ALL"]}, ["adding kernel capabilities (ALL)"]),
    ({"CapAdd": ["NET_ADMIN"]}, ["(NET_ADMIN)"]),
    ({"Devices": [{"PathOnHost": "/dev/vda", "PathInContainer": "/d", "CgroupPermissions": "rwm"}]},
     ["access to the engine's devices (--device)"]),
    ({"DeviceRequests": [{"Count": -1, "Capabilities": [["gpu"]]}]}, ["(--gpus)"]),
    ({"DeviceCgroupRules": ["b *:* rwm"]}, ["(--device-cgroup-rule)"]),
    ({"BlkioWeightDevice": [{"Path": "/dev/vda", "Weight": 10}]}, ["per-device I/O settings"]),
    ({"CgroupParent": "/"}, ["choosing the container's cgroup parent (--cgroup-parent)"]),
    ({"Cgroup": "container:x"}, ["joining another cgroup"]),
    ({"SecurityOpt": ["seccomp=unconfined"]}, ["the security option 'seccomp=unconfined'"]),
    ({"SecurityOpt": ['seccomp={"defaultAction":"SCMP_ACT_ALLOW"}']},
     ["a custom seccomp profile (--security-opt seccomp=…)"]),
    ({"SecurityOpt": ["apparmor=unconfined"]}, ["the security option 'apparmor=unconfined'"]),
    ({"SecurityOpt": ["label=disable"]}, ["the security option 'label=disable'"]),
    ({"SecurityOpt": ["no-new-privileges:false"]}, ["the security option 'no-new-privileges:false'"]),
    ({"MaskedPaths": []}, ["unmasking /proc and /sys (--security-opt systempaths=unconfined"]),
    ({"ReadonlyPaths": []}, ["unmasking /proc and /sys"]),
    ({"MaskedPaths": ["/proc/kcore"]}, ["unmasking /proc and /sys"]),
    ({"Runtime": "io.containerd.runc.v2"}, ['the container runtime "io.containerd.runc.v2" (--runtime)']),
    ({"Isolation": "hyperv"}, ['the isolation "hyperv"']),
    ({"StorageOpt": {"size": "100G"}}, ["storage driver options (--storage-opt)"]),
    ({"Sysctls": {"kernel.shm_rmid_forced": "1"}}, ["setting the kernel parameter kernel.shm_rmid_forced"]),
    ({"Sysctls": {"net.ipv4.ip_forward": "1"}}, ["net.ipv4.ip_forward"]),
    ({"LogConfig": {"Type": "syslog", "Config": {"syslog-address": "udp://10.0.0.1:514"}}},
     ['the log driver "syslog" (--log-driver)']),
    ({"LogConfig": {"Type": "gelf", "Config": {}}}, ['the log driver "gelf"']),
    ({"LogConfig": {"Type": "json-file", "Config": {"syslog-address": "x"}}},
     ['the log option "syslog-address" (--log-opt)']),
    ({"VolumeDriver": "evil"}, ['the volume driver "evil" (--volume-driver)']),
    ({"CpuRealtimeRuntime": 950000}, ["real-time CPU scheduling"]),
    ({"OomScoreAdj": -1000}, ["a negative OOM score adjustment (--oom-score-adj)"]),
    ({"Annotations": {"run.oci.keep_original_groups": "1"}}, ["runtime annotations (--annotation)"]),
    ({"Binds": ["/:/host"]}, ["a bind mount of the engine's whole filesystem (/)"]),
    ({"Binds": ["/proc:/p:ro"]}, ["a bind mount of the engine's /proc"]),
    ({"Binds": ["/var/run/docker.sock:/s"]}, ["a bind mount of the engine's /run/docker.sock"]),
    ({"Binds": ["/var/lib/docker/volumes:/v"]}, ["a bind mount of the engine's /var/lib/docker/volumes"]),
    ({"Binds": ["/etc/whale/tls:/t"]}, ["a bind mount of the engine's /etc/whale/tls"]),
    ({"Binds": ["/tmp/../etc:/e"]}, ["a bind mount of the engine's /etc"]),
    ({"Binds": ["/tmp/rootlink:/h"]}, ["whole filesystem (/)"]),          # a symlink to /
    ({"Binds": ["/tmp/etclink/x:/h"]}, ["a bind mount of the engine's /etc/x"]),
    ({"Binds": ["/tmp/x:/x:rshared"]}, ['the bind propagation "rshared"']),
    ({"Binds": ["/tmp/x:/x:ro,shared"]}, ['the bind propagation "shared"']),
    ({"Mounts": [{"Type": "bind", "Source": "/etc", "Target": "/e"}]}, ["a bind mount of the engine's /etc"]),
    ({"Mounts": [{"Type": "bind", "Source": "/tmp/x", "Target": "/x",
                  "BindOptions": {"Propagation": "rshared"}}]},
     ['the bind propagation "rshared"']),
    ({"Mounts": [{"Type": "npipe", "Source": "x", "Target": "/x"}]}, ['the mount type "npipe"']),
    ({"Mounts": [{"Type": "cluster", "Source": "x", "Target": "/x"}]}, ['the mount type "cluster"']),
    ({"Mounts": [{"Type": "Bind", "Source": "/", "Target": "/x"}]}, ['the mount type "Bind"']),
    ({"Mounts": [{"Type": "volume", "Target": "/h", "VolumeOptions": {"DriverConfig": {
        "Name": "local", "Options": {"type": "none", "o": "bind", "device": "/"}}}}]},
     ["volume driver options in a mount (--mount …,volume-opt=…)"]),
    ({"Mounts": [{"Type": "volume", "Target": "/h", "VolumeOptions": {"DriverConfig": {"Name": "evil"}}}]},
     ['the volume driver "evil"']),
    ({"Mounts": [{"Type": "volume", "Source": "v", "Target": "/h", "VolumeOptions": {"Subpath": "../.."}}]},
     ['the volume subpath "../.."']),
    ({"Mounts": [{"Type": "volume", "Source": "/etc", "Target": "/h"}]}, ["is a path"]),
    ({"Mounts": [{"Type": "tmpfs", "Source": "/etc", "Target": "/h"}]}, ["a tmpfs mount with a source"]),
])
def test_what_would_reach_past_the_engine_is_refused(hc, texts):
    refused(create(hc), *texts)


def test_a_network_endpoint_on_the_host_network_is_refused():
    refused(decide("POST", "/v1.45/containers/create", {**BB, "NetworkingConfig": {"EndpointsConfig": {
        "host": {}}}}), "(--network=host)")
    refused(decide("POST", "/v1.41/networks/host/connect", {"Container": "c1"}),
            "connecting a container to the engine's host network")
    refused(decide("POST", "/v1.41/networks/n/connect", {"Container": "c1", "EndpointConfig": {
        "DriverOpts": {"com.docker.network.endpoint.sysctls": "x"}}}), "network driver options")


def test_what_lessons_do_with_containers_is_allowed():
    for hc in [{"Binds": ["data:/d", "/tmp/work:/w:ro,z", "/tmp/learner:/h:rslave"]},
               {"Mounts": [{"Type": "bind", "Source": "/tmp/x", "Target": "/x", "ReadOnly": True,
                            "BindOptions": {"Propagation": "rprivate", "CreateMountpoint": True}},
                           {"Type": "volume", "Source": "v", "Target": "/v",
                            "VolumeOptions": {"NoCopy": True, "Labels": {"a": "b"},
                                              "DriverConfig": {"Name": "local"}}},
                           {"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"SizeBytes": 1 << 20}}]},
               {"CapAdd": ["NET_BIND_SERVICE", "cap_chown"], "CapDrop": ["ALL"]},
               {"SecurityOpt": ["no-new-privileges", "no-new-privileges:true"]},
               {"Sysctls": {"net.ipv4.ping_group_range": "0 2147483647"}},
               {"LogConfig": {"Type": "json-file", "Config": {"max-size": "10m", "max-file": "3"}}},
               {"NetworkMode": "mynet", "IpcMode": "shareable"},
               {"Memory": 1 << 28, "NanoCpus": 10 ** 9, "PidsLimit": 100, "OomScoreAdj": 500,
                "Ulimits": [{"Name": "nofile", "Soft": 1024, "Hard": 2048}], "Runtime": "runc"},
               {"PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}]},
                "ExtraHosts": ["host.docker.internal:host-gateway"], "Dns": ["1.1.1.1"], "Init": True}]:
        allowed(create(hc))
    allowed(create(Healthcheck={"Test": ["CMD", "true"], "Interval": 10 ** 9, "StartInterval": 10 ** 9}))


def test_container_update_follows_the_same_rules():
    allowed(decide("POST", "/v1.41/containers/x/update", {"Memory": 1 << 28,
                                                          "RestartPolicy": {"Name": "always"}}))
    refused(decide("POST", "/v1.41/containers/x/update", {"CgroupParent": "/"}), "cgroup parent")
    refused(decide("POST", "/v1.41/containers/x/update", {"Devices": [{"PathOnHost": "/dev/vda"}]}),
            "access to the engine's devices")
    refused(decide("POST", "/v1.41/containers/x/update", {"Privileged": True}),
            f'{UNKNOWN} "Privileged" in the container update')
    refused(decide("POST", "/v1.41/containers/x/update", {"memory": 1}), f'{UNKNOWN} "memory"')


def test_commit_is_refused_whatever_it_carries():
    refused(decide("POST", "/v1.41/commit?container=x&repo=y", {"Cmd": ["sh"], "Env": ["A=1"]}),
            "(docker commit)")
    refused(decide("POST", "/v1.41/commit?container=x&repo=y", {"HostConfig": {"Privileged": True}}),
            "(docker commit)")


# -- volumes, networks, images, builds ---------------------------------------------------------
@pytest.mark.parametrize(("body", "text"), [
    ({"Name": "rootvol", "DriverOpts": {"type": "none", "o": "bind", "device": "/"}},
     'the volume options "device=/,o=...,type=none" (--opt)'),
    ({"Name": "v", "Driver": "local", "DriverOpts": {"type": "nfs", "o": "addr=10.0.0.1", "device": ":/x"}},
     "the volume options"),
    ({"Name": "v", "DriverOpts": {"type": "tmpfs", "device": "/dev/vda"}}, "the volume options"),
    ({"Name": "v", "DriverOpts": {"type": "tmpfs", "device": "tmpfs", "o": "size=1m,bind"}},
     'the tmpfs volume option "bind"'),
    ({"Name": "v", "DriverOpts": {"type": "tmpfs", "device": "tmpfs", "o": "size=1m,mode=1777,uid=/x"}},
     'the tmpfs volume option "uid"'),
    ({"Name": "v", "Driver": "evil/plugin"}, 'the volume driver "evil/plugin"'),
    ({"Name": "v", "ClusterVolumeSpec": {"Group": "g"}}, "a cluster volume"),
    ({"Name": "v", "driveropts": {"type": "none"}}, f'{UNKNOWN} "driveropts" in the volume settings'),
])
def test_volume_create_rules(body, text):
    refused(decide("POST", "/v1.41/volumes/create", body), text)


def test_volume_refusals_do_not_show_mount_options():
    text = refused(decide("POST", "/v1.41/volumes/create", {"Name": "v", "DriverOpts": {
        "type": "cifs", "device": "//srv/share", "o": "username=ada,password=s3cret"}}), "the volume options")
    assert "s3cret" not in text
    assert "username" not in text
    text = refused(decide("POST", "/v1.41/volumes/create", {"Name": "v", "DriverOpts": {
        "type": "tmpfs", "device": "tmpfs", "o": "size=1m,password=s3cret"}}),
        'the tmpfs volume option "password"')
    assert "s3cret" not in text


def test_a_tmpfs_volume_is_allowed():
    allowed(decide("POST", "/v1.41/volumes/create", {"Name": "t", "DriverOpts": {
        "type": "tmpfs", "device": "tmpfs", "o": "size=100m,mode=1777,uid=1000,gid=1000,nr_inodes=1k"}}))


@pytest.mark.parametrize(("body", "text"), [
    ({"Name": "mv", "Driver": "macvlan", "Options": {"parent": "eth0"}}, 'the network driver "macvlan"'),
    ({"Name": "iv", "Driver": "ipvlan"}, 'the network driver "ipvlan"'),
    ({"Name": "h", "Driver": "host"}, 'the network driver "host"'),
    ({"Name": "b", "Options": {"com.docker.network.bridge.name": "eth0"}},
     'the network option "com.docker.network.bridge.name"'),
    ({"Name": "b", "IPAM": {"Driver": "evil"}}, 'the IPAM driver "evil"'),
    ({"Name": "b", "IPAM": {"Options": {"x": "y"}}}, "IPAM driver options"),
    ({"Name": "b", "driver": "macvlan"}, f'{UNKNOWN} "driver" in the network settings'),
])
def test_network_create_rules(body, text):
    refused(decide("POST", "/v1.41/networks/create", body), text)


@pytest.mark.parametrize(("query", "text"), [
    ("networkmode=host", "sharing the engine's namespace in a build (docker build --network=host)"),
    ("networkmode=container:abc", "a build in another container's network"),
    ("remote=http://169.254.169.254/context.tar", "a build from a URL (docker build URL, remote=…)"),
    ("cgroupparent=/", "choosing the build's cgroup parent"),
    ("isolation=hyperv", "choosing the build's isolation"),
    ("securityopt=seccomp%3Dunconfined", "security options on a build"),
    ("version=3", 'the builder version "3"'),
    ("t=a&networkmode=host&networkmode=default", 'the query parameter "networkmode" given twice'),
])
def test_build_rules(query, text):
    refused(decide("POST", f"/v1.41/build?{query}", None, {"Content-Type": "application/x-tar"}), text)


def test_a_buildkit_build_through_the_classic_endpoint_keeps_the_build_rules():
    """docker build with BuildKit from a CLI without buildx: version 2 and a session."""
    tar = {"Content-Type": "application/x-tar"}
    d = allowed(decide("POST", "/v1.45/build?version=2&session=s1&buildid=b1&t=x", None, tar))
    assert d.query == "version=2&session=s1&buildid=b1&t=x", d.query
    allowed(decide("POST", "/v1.45/build/cancel?id=b1", None))
    refused(decide("POST", "/v1.45/build?version=2&session=s1&networkmode=host", None, tar),
            "sharing the engine's namespace in a build (docker build --network=host)")


H2C = [("Connection", "Upgrade"), ("Upgrade", "h2c")]
SESSION = [("X-Docker-Expose-Session-Uuid", "u1"), ("X-Docker-Expose-Session-Name", "ctx"),
           ("X-Docker-Expose-Session-Sharedkey", "k")]
METHODS = [("X-Docker-Expose-Session-Grpc-Method", f"/moby.filesync.v1.FileSync/{m}")
           for m in ("DiffCopy", "TarStream")]


def test_buildkit_connections_pass_as_h2c_upgrades_with_their_session_headers():
    """BuildKit (buildx's docker driver): the builder's gRPC API on /grpc, and the client's
    session on /session, each an HTTP/2 connection after an upgrade to h2c."""
    grpc = allowed(decide("POST", "/v1.45/grpc", None, [("Host", "docker"), *H2C]))
    assert grpc.hijack
    assert grpc.path == "/v1.45/grpc"
    assert grpc.headers[-2:] == [("Connection", "Upgrade"), ("Upgrade", "h2c")]
    session = allowed(decide("POST", "/v1.45/session", None, [*H2C, *SESSION, *METHODS,
                                                               ("X-Other", "dropped")]))
    assert session.hijack
    forwarded = [h for h in session.headers if h[0].startswith("X-")]
    assert forwarded == [*SESSION, *METHODS]  # every method header, in order; nothing else


@pytest.mark.parametrize(("method", "path", "headers", "text"), [
    ("POST", "/v1.45/grpc", [], "POST /grpc without an upgrade to h2c"),
    ("POST", "/v1.45/grpc", [("Connection", "Upgrade"), ("Upgrade", "tcp")],
     'an upgrade to "tcp" on POST /grpc'),
    ("POST", "/v1.45/session", [*H2C, *SESSION, ("X-Docker-Expose-Session-Uuid", "u2")],
     "a repeated x-docker-expose-session-uuid header"),
    ("POST", "/v1.45/session", [*H2C, *METHODS * 33], "more than 64 x-docker-expose-session-grpc-method"),
    ("POST", "/v1.45/session", [*H2C, ("X-Docker-Expose-Session-Name", "a\x01b")],
     "a malformed x-docker-expose-session-name header"),
    ("GET", "/v1.45/grpc", H2C, "the API call GET /grpc"),
    ("POST", "/v1.45/exec/abc/start", H2C, 'an upgrade to "h2c" on POST /exec/{id}/start'),
])
def test_buildkit_connections_refused_otherwise(method, path, headers, text):
    refused(decide(method, path, None, headers), text)


def test_a_build_takes_an_archive_not_a_form():
    # A form-encoded body would be read by dockerd as query parameters.
    refused(decide("POST", "/v1.41/build?t=x", None, {"Content-Type": "application/x-www-form-urlencoded"}),
            'the content type "application/x-www-form-urlencoded"')
    allowed(decide("POST", "/v1.41/build?t=x&t=y&extrahosts=a:1.2.3.4&extrahosts=b:1.2.3.5", None,
                   {"Content-Type": "application/x-tar"}))


def test_images():
    refused(decide("POST", "/v1.41/images/create?fromSrc=http://169.254.169.254/x.tar&repo=x", None),
            "importing an image from a URL (docker import URL)")
    refused(decide("POST", "/v1.41/images/create?fromImage=a", None,
                   [("X-Registry-Auth", "e30="), ("x-registry-auth", "e30=")]),
                       "a repeated x-registry-auth header")
    refused(decide("POST", "/v1.41/images/create?fromImage=a", None, {"X-Registry-Auth": "e30=\x01"}),
            "a malformed x-registry-auth header")
    d = allowed(decide("POST", "/v1.41/images/localhost:5000/lessons/x@sha256:abc/push?tag=", b""))
    assert d.path == "/v1.41/images/localhost:5000/lessons/x@sha256:abc/push"


# -- swarm ----------------------------------------------------------------------------------
SERVICE = {"Name": "s", "TaskTemplate": {"ContainerSpec": {"Image": "busybox"}}}


def service(**container_spec):
    return {"Name": "s", "TaskTemplate": {"ContainerSpec": {"Image": "busybox", **container_spec}}}


@pytest.mark.parametrize(("body", "text"), [
    ({"Name": "s", "tasktemplate": {"ContainerSpec": {"Image": "busybox"}}},
     f'{UNKNOWN} "tasktemplate" in the service settings'),
    ({"Name": "s", "TaskTemplate": {"containerspec": {"Image": "busybox"}}}, f'{UNKNOWN} "containerspec"'),
    (service(capabilityadd=["SYS_ADMIN"]), f'{UNKNOWN} "capabilityadd" in the service\'s ContainerSpec'),
    (service(CapabilityAdd=["CAP_SYS_ADMIN"]), "adding kernel capabilities to a service (SYS_ADMIN)"),
    (service(Mounts=[{"Type": "bind", "Source": "/proc", "Target": "/p"}]),
     "a bind mount of the engine's /proc"),
    (service(Mounts=[{"Type": "volume", "Target": "/h", "VolumeOptions": {"DriverConfig": {
        "Options": {"type": "none", "o": "bind", "device": "/"}}}}]),
     "volume driver options in a mount in a service"),
    (service(Privileges={"Seccomp": {"Mode": "unconfined"}}), "a service's seccomp profile"),
    (service(Privileges={"Seccomp": {"Mode": "custom", "Profile": "e30="}}), "a service's seccomp profile"),
    (service(Privileges={"AppArmor": {"Mode": "disabled"}}), "a service's AppArmor mode"),
    (service(Privileges={"CredentialSpec": {"File": "x"}}), "credential spec"),
    (service(Sysctls={"kernel.msgmax": "1"}), "setting the kernel parameter kernel.msgmax in a service"),
    (service(Isolation="process"), 'the isolation "process"'),
    (service(OomScoreAdj=-1000), "a negative OOM score adjustment"),
    ({"Name": "s", "TaskTemplate": {"PluginSpec": {"Name": "evil"}}},
     "a plugin service (TaskTemplate.PluginSpec)"),
    ({"Name": "s", "TaskTemplate": {"NetworkAttachmentSpec": {"ContainerID": "x"}}},
     "a network attachment task"),
    ({"Name": "s", "TaskTemplate": {"Runtime": "plugin"}}, 'the task runtime "plugin"'),
    ({**SERVICE, "Networks": [{"Target": "host"}]}, "(--network=host)"),
    ({"Name": "s", "TaskTemplate": {"LogDriver": {"Name": "syslog"}}}, 'the log driver "syslog"'),
])
def test_services_follow_the_same_rules(body, text):
    refused(decide("POST", "/v1.41/services/create", body), text)
    refused(decide("POST", "/v1.41/services/abc/update?version=3", body), text)


@pytest.mark.parametrize(("target", "body", "text"), [
    ("/v1.41/swarm/init", {"ListenAddr": "0.0.0.0:2377", "Spec": {"CAConfig": {"ExternalCAs": [
        {"Protocol": "cfssl", "URL": "https://169.254.169.254/ca"}]}}},
     "an external certificate authority for the swarm"),
    ("/v1.41/swarm/update?version=3", {"CAConfig": {"ExternalCAs": [{"URL": "https://x"}]}},
     "an external certificate authority"),
    ("/v1.41/swarm/update?version=3", {"TaskDefaults": {"LogDriver": {"Name": "gelf"}}},
     'the log driver "gelf"'),
    ("/v1.41/swarm/update?version=3", {"cAConfig": {}}, f'{UNKNOWN} "cAConfig" in the swarm\'s settings'),
    ("/v1.41/secrets/create", {"Name": "s", "Driver": {"Name": "vault"}}, "a secret from a secrets driver"),
    ("/v1.41/secrets/create", {"Name": "s", "Data": "", "Templating": {"Name": "golang"}},
     "a templated secret"),
    ("/v1.41/configs/create", {"Name": "c", "Templating": {"Name": "golang"}}, "a templated config"),
    ("/v1.41/nodes/n1/update?version=3", {"Role": "manager", "availability": "drain"},
     f'{UNKNOWN} "availability"'),
])
def test_swarm_secrets_and_nodes(target, body, text):
    refused(decide("POST", target, body), text)


def test_the_http_framing_is_strict():
    parse = gate.parse_request_head
    method, target, headers = parse(b"GET /_ping HTTP/1.1\r\nHost: x\r\nA: b \r\n\r\n")
    assert (method, target, headers) == ("GET", "/_ping", [("host", "x"), ("a", "b")])
    for raw, text in [
        (b"GET /_ping HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", "obs-fold"),
        (b"GET /_ping HTTP/1.0\r\n\r\n", "HTTP/1.1 only"),
        (b"GET /_ping HTTP/1.1\r\nHost : x\r\n\r\n", "a malformed header line"),
        (b"GET /_ping HTTP/1.1\r\nHost: x\ny: z\r\n\r\n", "a control character"),
        (b"GET /\xc3\xa9 HTTP/1.1\r\n\r\n", "outside ASCII"),
    ]:
        with pytest.raises(gate.BadRequest, match=text):
            parse(raw)
    framing = gate.body_framing
    assert framing([("content-length", "12")]) == ("length", 12)
    assert framing([("transfer-encoding", "chunked")]) == ("chunked", 0)
    for headers, text in [
        ([("content-length", "1"), ("content-length", "1")], "a repeated Content-Length"),
        ([("content-length", "1"), ("transfer-encoding", "chunked")], "Content-Length together with"),
        ([("transfer-encoding", "gzip, chunked")], "other than chunked"),
        ([("transfer-encoding", "chunked"), ("transfer-encoding", "chunked")], "other than chunked"),
        ([("content-length", "+1")], "a malformed Content-Length"),
    ]:
        with pytest.raises(gate.BadRequest, match=text):
            framing(headers)


def test_every_refusal_names_the_phrase_and_what():
    # Every Refused raised anywhere says "whale: <what> is not allowed on this classroom engine: <why>."
    exc = gate.Refused("a thing")
    assert exc.message == ("whale: a thing is not allowed on this classroom engine: it would let a "
                           "container reach past your engine to the machine it runs on.")


# =========================================================================================
# End to end: the real docker CLI and raw requests through a real engine's gate
# =========================================================================================
def docker(env, *args: str, input: str | None = None, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], env=env, capture_output=True, text=True, input=input,
                          timeout=timeout)


@pytest.fixture(scope="module")
def env(tls_engine):
    return dict(engine_env(tls_engine), DOCKER_BUILDKIT="0")


@pytest.fixture
def name():
    return f"gate-{os.getpid()}-{time.monotonic_ns() % 10 ** 8}"


@pytest.fixture
def sleeper(env, name):
    out = docker(env, "run", "-d", "--name", name, "busybox", "sleep", "300")
    assert out.returncode == 0, out.stderr
    yield name
    docker(env, "rm", "-f", name)


class Raw:
    """HTTPS with the learner's own certificate, without the docker CLI."""

    def __init__(self, engine):
        bundle = CredentialBundle.load(engine.bundle_dir)
        url = urllib.parse.urlparse(bundle.docker_host.replace("tcp://", "https://"))
        self.host, self.port = url.hostname, url.port
        self.ca = str(engine.bundle_dir / "ca.pem")
        self.context = ssl.create_default_context(cafile=self.ca)
        self.context.load_cert_chain(str(engine.bundle_dir / "cert.pem"), str(engine.bundle_dir / "key.pem"))
        self.bare = ssl.create_default_context(cafile=self.ca)

    def request(self, method, path, body=None, headers=None):
        conn = http.client.HTTPSConnection(self.host, self.port, context=self.context, timeout=30)
        try:
            if isinstance(body, (dict, list)):
                body = json.dumps(body)
            conn.request(method, path, body=body, headers={"Content-Type": "application/json",
                                                            **(headers or {})})
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def socket(self, context=None):
        raw = socket.create_connection((self.host, self.port), timeout=30)
        return (context or self.context).wrap_socket(raw, server_hostname=self.host)

    def exchange(self, data: bytes, read_for: float = 10) -> bytes:
        """Send raw bytes; everything the gate answers until it closes (or read_for passes)."""
        with self.socket() as s:
            s.sendall(data)
            out = b""
            deadline = time.monotonic() + read_for
            while time.monotonic() < deadline:
                try:
                    chunk = s.recv(65536)
                except (TimeoutError, ssl.SSLError, ConnectionError):
                    break
                if not chunk:
                    break
                out += chunk
            return out


@pytest.fixture(scope="module")
def raw(tls_engine):
    return Raw(tls_engine)


def message(body: bytes) -> str:
    return json.loads(body)["message"]


def test_dockerd_listens_only_on_its_socket_behind_the_gate(tls_engine, host_docker, env):
    processes = host_docker.containers.get(tls_engine.container.id).top(ps_args="-eo pid,args")["Processes"]
    commands = [p[-1] for p in processes]
    dockerd = [c for c in commands if c.startswith("dockerd")]
    assert dockerd, commands
    assert "--host=unix:///var/run/docker.sock" in dockerd[0], commands
    assert "tcp://" not in dockerd[0], dockerd
    assert "--authorization-plugin" not in dockerd[0], dockerd
    assert "--userns-remap=default" in dockerd[0]
    assert any("whale-gate" in c for c in commands), commands
    info = json.loads(docker(env, "info", "--format", "{{json .}}").stdout)
    assert not info["Plugins"]["Authorization"]
    assert any("userns" in opt for opt in info["SecurityOptions"])


def test_docker_run_and_run_i_with_stdin_piped(env):
    out = docker(env, "run", "--rm", "hello-world")
    assert out.returncode == 0, out.stderr
    assert "Hello" in out.stdout, out.stderr
    # stdin ends: the CLI shuts down its write side; the gate passes that on, and the
    # output that follows still arrives.
    data = "".join(f"line {i}\n" for i in range(20000))
    out = docker(env, "run", "--rm", "-i", "busybox", "sh", "-c", "cat; echo after-eof", input=data)
    assert out.returncode == 0, out.stderr
    assert out.stdout == data + "after-eof\n"


def test_docker_run_it_with_a_terminal(env):
    master, slave = pty.openpty()
    proc = subprocess.Popen(["docker", "run", "--rm", "-it", "busybox", "sh"], stdin=slave, stdout=slave,
                            stderr=slave, env=env, close_fds=True)
    os.close(slave)
    seen = b""

    def read_until(token: bytes, timeout: float = 30) -> bytes:
        nonlocal seen
        deadline = time.monotonic() + timeout
        while token not in seen and time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    seen += os.read(master, 4096)
                except OSError:
                    break
        return seen

    try:
        assert b"# " in read_until(b"# "), seen
        os.write(master, b"echo tty-$((6*7)); tty\n")
        assert b"tty-42" in read_until(b"/dev/pts/"), seen
        os.write(master, b"exit\n")
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)


def test_docker_exec_i_and_attach(env, sleeper, name):
    out = docker(env, "exec", "-i", sleeper, "sh", "-c", "cat; echo done", input="from stdin\n")
    assert out.stdout == "from stdin\ndone\n", out.stderr
    # docker attach: what the container prints from then on, until it ends. (Ending the
    # attached stdin would end the attached output too: that is dockerd's rule, so stdin
    # through attach is shown by `docker run -i` above, which attaches the same way.)
    talker = f"{name}-attach"
    try:
        assert docker(env, "run", "-d", "--name", talker, "busybox", "sh", "-c",
                      "sleep 2; echo one; sleep 0.5; echo two").returncode == 0
        out = docker(env, "attach", "--no-stdin", talker, timeout=30)
        assert out.stdout.split() == ["one", "two"], (out.stdout, out.stderr)
    finally:
        docker(env, "rm", "-f", talker)


def test_docker_logs_follow_streams_and_stops_on_interrupt(env, name):
    assert docker(env, "run", "-d", "--name", name, "busybox", "sh", "-c",
                  "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done").returncode == 0
    try:
        with subprocess.Popen(["docker", "logs", "-f", name], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True) as proc:
            first = proc.stdout.readline()
            started = time.monotonic()
            second = proc.stdout.readline()  # arrives while the stream is still open
            assert first.startswith("tick"), (first, second)
            assert second.startswith("tick"), (first, second)
            assert time.monotonic() - started < 5
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=10)
        assert docker(env, "ps", "-q", "--filter", f"name={name}").stdout.strip()  # the gate still serves
    finally:
        docker(env, "rm", "-f", name)


def test_docker_cp_is_refused_and_copying_through_exec_works(env, sleeper, tmp_path):
    """docker cp (the archive calls) is refused on Engine 20.10: a container can race it
    into mounting a volume over the engine's own files. What the refusal suggests works."""
    import base64
    src = tmp_path / "in.txt"
    src.write_text(base64.b64encode(os.urandom(200_000)).decode())
    for args in ([str(src), f"{sleeper}:/in.txt"], [f"{sleeper}:/etc/hostname", str(tmp_path)]):
        out = docker(env, "cp", *args)
        assert out.returncode != 0, out.stderr
        assert "(docker cp)" in out.stderr, out.stderr
        assert REFUSED in out.stderr, out.stderr
    with open(src) as stdin:
        put = subprocess.run(["docker", "exec", "-i", sleeper, "sh", "-c", "cat > /in.txt"], env=env,
                             stdin=stdin, capture_output=True, text=True, timeout=60)
    assert put.returncode == 0, put.stderr
    assert docker(env, "exec", sleeper, "cat", "/in.txt").stdout == src.read_text()


@pytest.mark.parametrize(("method", "target"), [
    ("HEAD", "/v1.41/containers/c1/archive?path=%2Fetc"),
    ("GET", "/v1.41/containers/c1/archive?path=%2Fetc%2Fhostname"),
    ("PUT", "/v1.41/containers/c1/archive?path=%2Ftmp%2F"),
    ("PUT", "/containers/c1/archive?path=%2F"),
])
def test_the_archive_calls_are_refused(method, target):
    refused(decide(method, target, None, {"Host": "docker", "Content-Type": "application/x-tar"}),
            "copying files into or out of a container (docker cp)", "docker exec")


def test_docker_build_with_the_classic_builder(env, name, tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM busybox\nCOPY f /f\nRUN echo built >> /f\nCMD cat /f\n")
    (tmp_path / "f").write_text("context\n")
    tag = f"{name}:1"
    try:
        out = docker(env, "build", "-q", "-t", tag, str(tmp_path), timeout=120)
        assert out.returncode == 0, out.stderr
        assert docker(env, "run", "--rm", tag).stdout == "context\nbuilt\n"
        out = docker(env, "build", "--network", "host", str(tmp_path))
        assert "docker build --network=host" in out.stderr
        assert REFUSED in out.stderr
    finally:
        docker(env, "rmi", "-f", tag)


def test_pull_from_nothing_says_what_is_missing(env):
    out = docker(env, "pull", "nosuch.invalid/lesson:1")
    assert out.returncode != 0
    assert "nosuch.invalid" in out.stderr, out.stderr
    assert REFUSED not in out.stderr, out.stderr


def test_volumes_and_networks(env, name):
    try:
        assert docker(env, "volume", "create", name).returncode == 0
        out = docker(env, "volume", "create", "--opt", "type=tmpfs", "--opt", "device=tmpfs", "--opt",
                     "o=size=10m", f"{name}-t")
        assert out.returncode == 0, out.stderr
        assert docker(env, "network", "create", name).returncode == 0
        out = docker(env, "run", "--rm", "--network", name, "-v", f"{name}:/v", "-v", f"{name}-t:/t",
                     "busybox", "sh", "-c", "echo kept > /v/f; cat /v/f; grep -c ' /t tmpfs' /proc/mounts")
        assert out.stdout.split() == ["kept", "1"], out.stderr
        out = docker(env, "volume", "create", "--opt", "type=none", "--opt", "o=bind", "--opt",
                     "device=/", "evil")
        assert 'the volume options "device=/,o=...,type=none"' in out.stderr
        assert REFUSED in out.stderr
        out = docker(env, "run", "--rm", "--mount",
                     "type=volume,dst=/h,volume-opt=type=none,volume-opt=o=bind,"
                     "volume-opt=device=/", "busybox", "true")
        assert "volume driver options in a mount" in out.stderr
        out = docker(env, "run", "--rm", "--security-opt", "systempaths=unconfined", "busybox", "true")
        assert "systempaths=unconfined" in out.stderr
        assert REFUSED in out.stderr
    finally:
        docker(env, "volume", "rm", "-f", name, f"{name}-t")
        docker(env, "network", "rm", name)


@pytest.fixture(scope="module")
def swarm_env(engine_image, host_docker, tmp_path_factory):
    engine = start_engine("gateswarm", tmp_path_factory, host_docker, swarm=True)
    try:
        env = engine_env(engine)
        images.build_lesson_images(env, names=["busybox"])
        yield env
    finally:
        engine.remove()


def test_a_service_on_a_swarm(swarm_env):
    env = swarm_env
    out = docker(env, "service", "create", "-q", "--name", "web", "--endpoint-mode", "dnsrr",
                 "--mount", "type=tmpfs,target=/t", "busybox", "sleep", "600")
    assert out.returncode == 0, out.stderr
    try:
        deadline = time.monotonic() + 60
        while "Running" not in docker(env, "service", "ps", "web", "--format", "{{.CurrentState}}").stdout:
            assert time.monotonic() < deadline, "the service's task did not start"
            time.sleep(0.5)
        out = docker(env, "service", "update", "-q", "--replicas", "2", "web")  # sends the spec back
        assert out.returncode == 0, out.stderr
        out = docker(env, "service", "create", "--cap-add", "SYS_ADMIN", "busybox", "true")
        assert "adding kernel capabilities to a service (SYS_ADMIN)" in out.stderr
        out = docker(env, "swarm", "update", "--task-history-limit", "2")
        assert out.returncode == 0, out.stderr
    finally:
        docker(env, "service", "rm", "web")


@pytest.mark.parametrize(("method", "path", "body", "text"), [
    ("POST", "/v1.41/containers/create", {**BB, "hostconfig": {"Privileged": True}},
     f'{UNKNOWN} "hostconfig"'),
    ("POST", "/v1.41/containers/create", {**BB, "HostConfig": {"Bind\u017f": ["/:/h"]}},
     f'{UNKNOWN} "Bind\\u017f"'),
    ("POST", "/v1.41/containers/create", '{"Image":"busybox","HostConfig":{"Binds":[],"Binds":["/:/h"]}}',
     'a duplicate field "Binds"'),
    ("POST", "/v1.41/containers/create", {**BB, "Privileged": True}, f'{UNKNOWN} "Privileged"'),
    ("POST", "/containers/%63reate", BB, "the request path"),
    ("POST", "/plugins/%63reate?name=x", {}, "the request path"),
    ("POST", "//containers/create", BB, "the request path"),
    ("POST", "/v1.23/containers/abc/start", {"HostConfig": {"Privileged": True}},
     "the Docker API version 1.23"),
    ("POST", "/v1.41/plugins/pull?remote=evil/plugin", [], "installing or changing engine plugins"),
    ("POST", "/v1.41/volumes/create", {"Name": "r", "DriverOpts": {"type": "none", "o": "bind",
                                                                   "device": "/"}},
     "the volume options"),
    ("POST", "/v1.41/services/create", {"Name": "s", "tasktemplate": {}}, f'{UNKNOWN} "tasktemplate"'),
    ("POST", "/grpc", None, "POST /grpc without an upgrade to h2c"),
])
def test_raw_attack_spellings_get_403_with_the_reason(raw, method, path, body, text):
    status, answer = raw.request(method, path, body)
    assert status == 403, answer
    assert text in message(answer)
    assert REFUSED in message(answer)


def test_raw_requests_keep_alive_and_read_like_the_cli(raw, tls_engine):
    conn = http.client.HTTPSConnection(raw.host, raw.port, context=raw.context, timeout=30)
    try:
        for path in ("/_ping", "/v1.41/version", "/v1.41/containers/json?all=1", "/_ping"):
            conn.request("GET", path)
            response = conn.getresponse()
            assert response.status == 200, response.read()
            response.read()
        privileged = json.dumps({**BB, "HostConfig": {"Privileged": True}})
        conn.request("POST", "/v1.41/containers/create", body=privileged,
                     headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        assert response.status == 403
        assert "a privileged container" in message(response.read())
        conn.request("GET", "/_ping")  # the same connection still serves after a refusal
        assert conn.getresponse().read() == b"OK"
    finally:
        conn.close()


@pytest.mark.parametrize(("data", "status", "text"), [
    (b"GET /_ping HTTP/1.1\r\nHost: x\r\n folded: yes\r\n\r\n", 400, "obs-fold"),
    (b"POST /v1.41/containers/create HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}",
     400, "a repeated Content-Length"),
    (b"POST /v1.41/containers/create HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, "Content-Length together with Transfer-Encoding"),
    (b"POST /v1.41/containers/create HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"2;ext=1\r\n{}\r\n0\r\n\r\n", 400, "a malformed chunk size"),
    (b"POST /v1.41/containers/create HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"2\r\n{}XX0\r\n\r\n", 400, "a chunk not followed by CRLF"),
    (b"POST /v1.41/containers/create HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"2\r\n{}\r\n0\r\nX-Trailer: 1\r\n\r\n", 400, "chunk trailers"),
    # Refused before the body is read: nothing of the 5 MiB is sent here.
    (b"POST /v1.41/containers/create HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
     b"Content-Length: 5242880\r\n\r\n", 413, "a request body over 1 MiB"),
    (b"GET /_ping HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n", 431,
     "a request head over 64 KiB"),
])
def test_bad_framing_is_refused_and_the_connection_closed(raw, data, status, text):
    started = time.monotonic()
    answer = raw.exchange(data)
    assert time.monotonic() - started < 8  # answered and closed, not left waiting for more
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 %d " % status), answer[:300]
    assert text in message(body)
    assert REFUSED in message(body)
    assert b"Connection: close" in head


def test_a_chunked_body_is_stopped_as_soon_as_it_passes_1_mib(raw):
    with raw.socket() as s:
        s.sendall(b"POST /v1.41/containers/create HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n")
        piece = b"%x\r\n%s\r\n" % (65536, b" " * 65536)
        answer = b""
        for _ in range(40):  # up to 2.5 MiB, if the gate kept reading
            try:
                s.sendall(piece)
            except (ConnectionError, ssl.SSLError):
                break
            s.settimeout(0.05)
            with contextlib.suppress(TimeoutError, ssl.SSLError):
                answer += s.recv(65536)
            if answer:
                break
        s.settimeout(10)
        while b"\r\n\r\n" not in answer:
            chunk = s.recv(65536)
            if not chunk:
                break
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]


def _ping_expecting_no_answer(raw, context):
    """A ping over TLS with ``context``: an SSLError if the gate refuses it at the handshake,
    a ConnectionError if it closes without an answer."""
    with raw.socket(context) as s:  # TLS 1.3: the refusal arrives with the first read
        s.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n")
        assert s.recv(100) == b""
        raise ConnectionError("closed without an answer")


def test_a_connection_without_a_client_certificate_is_refused_at_tls(raw):
    with pytest.raises((ssl.SSLError, ConnectionError)):
        _ping_expecting_no_answer(raw, raw.bare)


def test_a_certificate_from_another_engine_is_refused(raw, second_engine):
    other = ssl.create_default_context(cafile=raw.ca)
    other.load_cert_chain(str(second_engine.bundle_dir / "cert.pem"),
                          str(second_engine.bundle_dir / "key.pem"))
    with pytest.raises((ssl.SSLError, ConnectionError)):
        _ping_expecting_no_answer(raw, other)


# -- found by an independent red team -------------------------------------------------------
@pytest.mark.parametrize("source", ["/tmp", "/var", "/var/lib", "/tmp/a/b", "/home/learner", "/srv/x",
                                    "/mnt", "/opt/x"])
def test_a_bind_source_is_a_directory_right_under_tmp(source):
    """dockerd resolves a bind source again when the container starts; a source whose
    parent a container can write could be swapped for a link to / in between. /var and
    /var/lib also held the engine's data root below them."""
    refused(create({"Binds": [f"{source}:/x"]}), f"a bind mount of {json.dumps(source)}",
            "right under /tmp")
    refused(create({"Mounts": [{"Type": "bind", "Source": source, "Target": "/x"}]}),
            f"a bind mount of {json.dumps(source)}")


@pytest.fixture
def engine_networks(monkeypatch):
    """The lookup the running gate makes on dockerd, with this engine's networks: the
    host network by name, ID and ID prefix (local and swarm scope), and a user network."""
    networks = [{"Name": "host", "Id": "4f0c1d2e3a4b5c6d", "Driver": "host"},
                {"Name": "shop", "Id": "9a8b7c6d5e4f3a2b", "Driver": "bridge"}]

    def lookup(ref):
        return [n for n in networks if ref in (n["Name"], n["Id"]) or n["Id"].startswith(ref)]
    monkeypatch.setattr(gate, "NETWORK_LOOKUP", lookup)


@pytest.mark.parametrize("ref", ["4f0c1d2e3a4b5c6d", "4f0c1d", "HOST"])
def test_the_host_network_by_id_or_prefix_is_the_host_network(engine_networks, ref):
    refused(create({"NetworkMode": ref}), "--network=host")
    refused(create(None, NetworkingConfig={"EndpointsConfig": {ref: {}}}), "--network=host")
    refused(decide("POST", f"/v1.41/networks/{ref}/connect", {"Container": "c1"}),
            "the engine's host network")
    spec = {"Name": "s", "TaskTemplate": {"ContainerSpec": {"Image": "busybox"},
                                          "Networks": [{"Target": ref}]}}
    refused(decide("POST", "/v1.41/services/create", spec), "--network=host")
    # A build step on the host network (the seventh red team found the ID passed).
    refused(decide("POST", f"/v1.41/build?networkmode={ref}&t=x", b""),
            "sharing the engine's namespace in a build (docker build --network=host)")


def test_a_user_network_by_id_prefix_is_allowed(engine_networks):
    allowed(create({"NetworkMode": "9a8b7c"}))
    allowed(create({"NetworkMode": "shop"}))


def test_a_refused_head_request_has_no_body_and_the_connection_stays_usable(raw):
    """A refusal's JSON after a HEAD was read as the start of the next answer on the same
    connection (the docker CLI's `docker cp` stats with HEAD, then PUTs: it failed with
    'malformed HTTP status code "\\"whale:"' once in a full run)."""
    conn = http.client.HTTPSConnection(raw.host, raw.port, context=raw.context, timeout=30)
    try:
        conn.request("HEAD", "/v1.41/containers/c1/archive?path=%2Fetc")
        refused_head = conn.getresponse()
        assert refused_head.status == 403
        assert refused_head.read() == b""
        conn.request("GET", "/_ping")
        ping = conn.getresponse()
        assert (ping.status, ping.read()) == (200, b"OK")
    finally:
        conn.close()


def test_docker_inspect_of_an_image_named_with_its_registry_reaches_the_engine():
    """`docker inspect 127.0.0.1:5000/shop:1.0` (lesson 10) looks for a container of that
    name before the image: it was refused as an unknown API call, and the learner never
    saw the image. Only reading a container's JSON takes such a name."""
    allowed(decide("GET", "/v1.45/containers/127.0.0.1:5000/shop:1.0/json"))
    allowed(decide("GET", "/v1.45/images/127.0.0.1:5000/shop:1.0/json"))
    refused(decide("POST", "/v1.45/containers/127.0.0.1:5000/shop:1.0/kill"), "the API call")


def test_docker_diff_is_refused_and_says_what_to_do_instead():
    """The eighth red team swapped a directory for a link during dockerd's walk of a
    container's changes, in the engine's mount namespace: it listed the engine's TLS files."""
    message = refused(decide("GET", "/v1.41/containers/c1/changes"), "(docker diff)")
    # The alternative compares the container's files with its image's (busybox's
    # `find -newer` would compare whole seconds, and miss what changed in the first one).
    assert "compare docker exec NAME find / -xdev with docker run --rm IMAGE find / -xdev" \
        in message
    refused(decide("GET", "/v1.45/containers/c1/changes"), "(docker diff)")


@pytest.mark.parametrize(("uid", "gid"), [("-100000", "0"), ("0", "-1"), ("65536", "0"), ("1e3", "0"),
                                      ("\u0661", "0")])
def test_a_secret_file_owned_outside_the_container_is_refused(uid, gid):
    """dockerd adds the engine's remapped root to a secret's UID: the eighth red team's
    -100000 made a file owned by the engine's real root."""
    for kind, ref in (("Secrets", "SecretName"), ("Configs", "ConfigName")):
        service = {"Name": "s", "TaskTemplate": {"ContainerSpec": {"Image": "busybox", kind: [
            {ref: "x", "File": {"Name": "x", "UID": uid, "GID": gid, "Mode": 0o444}}]}}}
        refused(decide("POST", "/v1.41/services/create", service), "of a secret or config file",
                "from 0 to 65535")
    service = {"Name": "s", "TaskTemplate": {"ContainerSpec": {"Image": "busybox", "Secrets": [
        {"SecretName": "x", "File": {"Name": "x", "UID": "1000", "GID": "0", "Mode": 0o400}}]}}}
    allowed(decide("POST", "/v1.41/services/create", service))


def test_a_bind_source_that_is_a_file_of_the_engine_is_refused():
    """Right under /tmp only the engine makes files (runc's process specs, which hold a
    command's environment): a learner binds directories."""
    refused(create({"Binds": ["/tmp/runc-process1:/x"]}), "it is not a directory")
    refused(create({"Mounts": [{"Type": "bind", "Source": "/tmp/runc-process1", "Target": "/x"}]}),
            "it is not a directory")
    allowed(create({"Binds": ["/tmp/shared:/x"]}))
    # A protected file is refused as the engine's own first.
    refused(create({"Binds": ["/var/run/docker.sock:/s"]}), "a bind mount of the engine's /run/docker.sock")


def test_the_gate_resolves_a_bind_source_on_its_own_filesystem(tmp_path):
    mounts = importlib.import_module("whale_gate.mounts")
    (tmp_path / "d").mkdir()
    (tmp_path / "f").write_text("x")
    (tmp_path / "l").symlink_to(tmp_path / "f")
    assert mounts.resolve_source(str(tmp_path / "d")) == str(tmp_path / "d")
    assert mounts.resolve_source(str(tmp_path / "new")) == str(tmp_path / "new")
    for name in ("f", "l"):
        with pytest.raises(NotADirectoryError):
            mounts.resolve_source(str(tmp_path / name))


@pytest.mark.parametrize("options", ["bind", "rbind", "rbind,rw", "bind,exec", "size=64m,bind",
                                     "x-mount.mkdir", "mpol=bind"])
def test_a_tmpfs_that_is_a_bind_mount_is_refused(options):
    """dockerd takes mount flags in --tmpfs options, and runc then bind-mounts "tmpfs", a
    path of the engine (the ninth red team; it failed only because the path was missing)."""
    refused(create({"Tmpfs": {"/host": options}}), "the tmpfs option", "(--tmpfs /host:…)")


@pytest.mark.parametrize("options", ["", "size=64m", "rw,noexec,nosuid,size=65536k", "mode=1777",
                                     "uid=1000,gid=1000", "ro"])
def test_an_ordinary_tmpfs_is_allowed(options):
    allowed(create({"Tmpfs": {"/scratch": options}}))


@pytest.mark.parametrize("port", [2376, 2377, 7946, 4789])
def test_a_service_cannot_publish_the_engines_own_ports(port):
    """On a host with IPVS the swarm's ingress would route the gate's port to a task,
    before the gate (the ninth red team, from libnetwork's rules)."""
    service = {"Name": "s", "TaskTemplate": {"ContainerSpec": {"Image": "busybox"}},
               "EndpointSpec": {"Ports": [{"Protocol": "tcp", "TargetPort": 80, "PublishedPort": port}]}}
    refused(decide("POST", "/v1.41/services/create", service), f"publishing the engine's own port {port}")
    refused(decide("POST", "/v1.41/services/abc/update?version=2", service), "the engine's own port")
    service["EndpointSpec"]["Ports"][0]["PublishedPort"] = 8080
    allowed(decide("POST", "/v1.41/services/create", service))
