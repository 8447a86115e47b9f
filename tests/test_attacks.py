"""The attack suite: a stranger with a notebook tries to reach past their own engine.

A real site (hub, proxy, two learners `ada` and `bob` with their own servers and
classroom engines, the lesson mirror). Every attack is typed into ada's notebook, as a
learner would: the docker CLI with its flags, or one `curl` to the engine's API with
ada's own certificates (the raw spellings the CLI never sends: other cases of keys,
Unicode folds, duplicates, fields out of place, encoded paths, old API versions, bodies
over the limit). Each case asserts the specific refusal, and afterwards the suite checks
that nothing of it was made. Containment that does not show as a refusal (limits,
cgroups, networks, the mirror, names) has its own tests in test_containment.py,
test_isolation.py, test_slugs.py and test_hub.py; the cases here that touch those
classes check the learner-visible side.

Run just this suite with `./whale test tests/test_attacks.py`.
"""
from __future__ import annotations

import contextlib
import json
import re
import time

import pytest
from hub_fixtures import Hub, ensure_images

from whale_core.layout import OWNER_LABEL
from whale_hub.pool import EnginePool, is_pool_unit
from whale_hub.specs import EngineSettings

pytestmark = pytest.mark.hub

REFUSED = "is not allowed on this classroom engine"
UNKNOWN = "an unknown field"

# A bash helper in every cell: the engine's API with the learner's own certificates.
API = r'''
api() { local m=$1 p=$2; shift 2
  curl -sS --path-as-is -X "$m" --cacert "$DOCKER_CERT_PATH/ca.pem" --cert "$DOCKER_CERT_PATH/cert.pem" \
    --key "$DOCKER_CERT_PATH/key.pem" -H 'Content-Type: application/json' \
    "https://${DOCKER_HOST#tcp://}$p" "$@"; echo; }
create() { api POST /v1.41/containers/create --data-binary "$1"; }
'''

BB = '"Image":"busybox","Cmd":["true"]'

# (case id, the cell's command, what the refusal must say)
CASES: list[tuple[str, str, str]] = [
    # -- the policy and dockerd reading a request differently --------------------------
    ("raw-lowercase-hostconfig", f'create \'{{{BB},"hostconfig":{{"Privileged":true}}}}\'',
     f'{UNKNOWN} "hostconfig"'),
    ("raw-lowercase-privileged", f'create \'{{{BB},"HostConfig":{{"privileged":true}}}}\'',
     f'{UNKNOWN} "privileged"'),
    ("raw-lowercase-capadd", f'create \'{{{BB},"HostConfig":{{"capadd":["SYS_ADMIN"]}}}}\'',
     f'{UNKNOWN} "capadd"'),
    ("raw-lowercase-usernsmode", f'create \'{{{BB},"HostConfig":{{"usernsmode":"host"}}}}\'',
     f'{UNKNOWN} "usernsmode"'),
    ("raw-uppercase-BINDS", f'create \'{{{BB},"HostConfig":{{"BINDS":["/:/host"]}}}}\'',
     f'{UNKNOWN} "BINDS"'),
    ("raw-unicode-long-s-binds", f'create \'{{{BB},"HostConfig":{{"Bind\\u017f":["/:/host"]}}}}\'',
     f'{UNKNOWN} "Bind\\u017f"'),
    ("raw-unicode-kelvin-maskedpaths",
     f'create \'{{{BB},"HostConfig":{{"Mas\\u212aedPaths":[]}}}}\'', f'{UNKNOWN} "Mas\\u212aedPaths"'),
    ("raw-duplicate-binds-last-wins",
     f'create \'{{{BB},"HostConfig":{{"Binds":[],"Binds":["/:/host"]}}}}\'',
     'a duplicate field "Binds"'),
    ("raw-duplicate-hostconfig",
     f'create \'{{{BB},"HostConfig":{{}},"HostConfig":{{"Privileged":true}}}}\'',
     'a duplicate field "HostConfig"'),
    ("raw-hostconfig-fields-at-top-level", f'create \'{{{BB},"Privileged":true}}\'',
     f'{UNKNOWN} "Privileged" in the container\'s config'),
    ("raw-binds-at-top-level", f'create \'{{{BB},"Binds":["/:/host"]}}\'',
     f'{UNKNOWN} "Binds" in the container\'s config'),
    ("raw-lowercase-mount-fields",
     f'create \'{{{BB},"HostConfig":{{"Mounts":[{{"type":"bind","source":"/","target":"/h"}}]}}}}\'',
     f'{UNKNOWN} "type"'),
    ("raw-percent-encoded-create", f'api POST \'/containers/%63reate\' --data-binary \'{{{BB}}}\'',
     "the request path"),
    ("raw-percent-encoded-plugin-create", "api POST '/plugins/%63reate?name=x' --data-binary '{}'",
     "the request path"),
    ("raw-double-slash-path", f"api POST '//containers/create' --data-binary '{{{BB}}}'",
     "the request path"),
    ("raw-dot-dot-path", f"api POST '/v1.41/x/../containers/create' --data-binary '{{{BB}}}'",
     "the request path"),
    ("raw-body-over-1mib",
     "python3 -c 'import json; print(json.dumps({\"Image\": \"busybox\", \"Labels\": "
     "{\"x\": \"a\" * 1100000}, \"HostConfig\": {\"Binds\": [\"/:/host\"]}}))' > /tmp/big.json; "
     "api POST /v1.41/containers/create --data-binary @/tmp/big.json", "1 MiB"),
    ("raw-old-api-start-hostconfig",
     "id=$(docker create busybox true); api POST /v1.23/containers/$id/start "
     "--data-binary '{\"Binds\":[\"/:/host\"],\"Privileged\":true}'; docker rm -f $id >/dev/null",
     "the Docker API version 1.23"),
    ("raw-start-with-hostconfig-body",
     "id=$(docker create busybox true); api POST /v1.41/containers/$id/start "
     "--data-binary '{\"HostConfig\":{\"Privileged\":true}}'; docker rm -f $id >/dev/null",
     "a request body"),
    ("raw-exec-lowercase-privileged",
     "id=$(docker run -d busybox sleep 30); api POST /v1.41/containers/$id/exec "
     "--data-binary '{\"Cmd\":[\"id\"],\"privileged\":true}'; docker rm -f $id >/dev/null",
     f'{UNKNOWN} "privileged"'),
    ("raw-semicolon-in-query", f"api POST '/v1.41/containers/create?name=a;name=b' --data-binary '{{{BB}}}'",
     "a semicolon in the query string"),
    ("raw-duplicate-query-parameter",
     f"api POST '/v1.41/containers/create?name=a&name=b' --data-binary '{{{BB}}}'",
     'the query parameter "name" given twice'),
    ("raw-invalid-json", "api POST /v1.41/containers/create --data-binary '{\"Image\":'",
     "a request body that is not valid JSON"),
    ("raw-lowercase-tasktemplate",
     "api POST /v1.41/services/create --data-binary "
     "'{\"Name\":\"s\",\"tasktemplate\":{\"ContainerSpec\":{\"Image\":\"busybox\"}}}'",
     f'{UNKNOWN} "tasktemplate"'),
    ("raw-service-capability-add",
     "api POST /v1.41/services/create --data-binary '{\"Name\":\"s\",\"TaskTemplate\":"
     "{\"ContainerSpec\":{\"Image\":\"busybox\",\"CapabilityAdd\":[\"CAP_SYS_ADMIN\"]}}}'",
     "adding kernel capabilities"),
    ("raw-service-plugin-spec",
     "api POST /v1.41/services/create --data-binary '{\"Name\":\"s\",\"TaskTemplate\":"
     "{\"PluginSpec\":{\"Name\":\"evil\"}}}'", "a plugin service"),
    ("raw-plugin-pull", "api POST '/v1.41/plugins/pull?remote=evil/plugin' --data-binary '[]'",
     "installing or changing engine plugins"),
    ("raw-plugin-set", "api POST /v1.41/plugins/evil/set --data-binary '[\"DEBUG=1\"]'",
     "installing or changing engine plugins"),
    ("raw-unknown-endpoint", "api POST /v1.41/containers/x/checkpoints --data-binary '{}'",
     "the API call POST"),
    ("raw-update-cgroup-parent",
     "id=$(docker create busybox true); api POST /v1.41/containers/$id/update "
     "--data-binary '{\"CgroupParent\":\"/\"}'; docker rm -f $id >/dev/null", "cgroup parent"),
    ("raw-update-devices",
     "id=$(docker create busybox true); api POST /v1.41/containers/$id/update "
     "--data-binary '{\"Devices\":[{\"PathOnHost\":\"/dev/vda\",\"PathInContainer\":\"/d\","
     "\"CgroupPermissions\":\"rwm\"}]}'; docker rm -f $id >/dev/null", "access to the engine's devices"),
    ("raw-maskedpaths-empty", f'create \'{{{BB},"HostConfig":{{"MaskedPaths":[]}}}}\'',
     "unmasking /proc and /sys"),
    ("raw-commit-with-hostconfig",
     "id=$(docker create busybox true); api POST \"/v1.41/commit?container=$id&repo=x\" "
     "--data-binary '{\"HostConfig\":{\"Privileged\":true}}'; docker rm -f $id >/dev/null",
     "(docker commit)"),
    # -- forms the old policy never looked at ------------------------------------------
    ("cli-volume-create-bind-device-root",
     "docker volume create --opt type=none --opt o=bind --opt device=/ rootvol",
     "the volume options"),
    ("raw-volume-create-bind-device-root",
     "api POST /v1.41/volumes/create --data-binary '{\"Name\":\"rootvol\",\"DriverOpts\":"
     "{\"type\":\"none\",\"o\":\"bind\",\"device\":\"/\"}}'", "the volume options"),
    ("cli-volume-create-nfs",
     "docker volume create --opt type=nfs --opt o=addr=127.0.0.1:9 --opt device=:/x nfsvol",
     "the volume options"),
    ("cli-volume-driver-plugin", "docker volume create --driver evil/plugin v2",
     "the volume driver"),
    ("cli-mount-volume-opt-bind-root",
     "docker run --rm --mount type=volume,dst=/h,volume-opt=type=none,volume-opt=o=bind,"
     "volume-opt=device=/ busybox ls /h", "volume driver options in a mount"),
    ("cli-service-mount-volume-opt",
     "docker service create --name svc --mount type=volume,dst=/h,volume-opt=type=none,"
     "volume-opt=o=bind,volume-opt=device=/ busybox sleep 1", "volume driver options in a mount"),
    ("cli-systempaths-unconfined", "docker run --rm --security-opt systempaths=unconfined busybox true",
     "unmasking /proc and /sys"),
    ("cli-seccomp-unconfined", "docker run --rm --security-opt seccomp=unconfined busybox true",
     "seccomp"),
    ("cli-seccomp-allow-all-profile",
     "echo '{\"defaultAction\":\"SCMP_ACT_ALLOW\"}' > /tmp/allow.json; "
     "docker run --rm --security-opt seccomp=/tmp/allow.json busybox true",
     "a custom seccomp profile"),
    ("cli-apparmor-unconfined", "docker run --rm --security-opt apparmor=unconfined busybox true",
     "the security option"),
    ("cli-label-disable", "docker run --rm --security-opt label=disable busybox true",
     "the security option"),
    # -- the classic flags, for completeness -------------------------------------------
    ("cli-privileged", "docker run --rm --privileged busybox true", "a privileged container"),
    ("cli-cap-add-sys-admin", "docker run --rm --cap-add SYS_ADMIN busybox true",
     "adding kernel capabilities (SYS_ADMIN)"),
    ("cli-cap-add-lowercase-prefixed", "docker run --rm --cap-add cap_sys_module busybox true",
     "adding kernel capabilities"),
    ("cli-cap-add-all", "docker run --rm --cap-add ALL busybox true", "adding kernel capabilities"),
    ("cli-userns-host", "docker run --rm --userns=host busybox true", "--userns=host"),
    ("cli-pid-host", "docker run --rm --pid=host busybox true", "--pid=host"),
    ("cli-ipc-host", "docker run --rm --ipc=host busybox true", "--ipc=host"),
    ("cli-network-host", "docker run --rm --network=host busybox true", "--network=host"),
    ("cli-uts-host", "docker run --rm --uts=host busybox true", "--uts=host"),
    ("cli-cgroupns-host", "docker run --rm --cgroupns=host busybox true", "host"),
    ("cli-device", "docker run --rm --device /dev/loop0 busybox true", "access to the engine's devices"),
    ("cli-device-cgroup-rule", "docker run --rm --device-cgroup-rule 'b *:* rwm' busybox true",
     "access to the engine's devices"),
    ("cli-bind-root", "docker run --rm -v /:/host busybox true", "whole filesystem (/)"),
    ("cli-bind-docker-socket", "docker run --rm -v /var/run/docker.sock:/s busybox true",
     "a bind mount of the engine's"),
    ("cli-mount-bind-proc", "docker run --rm --mount type=bind,src=/proc,dst=/p busybox true",
     "a bind mount of the engine's /proc"),
    ("cli-bind-etc-readonly", "docker run --rm -v /etc:/e:ro busybox true",
     "a bind mount of the engine's /etc"),
    ("cli-bind-shared-propagation", "docker run --rm -v /tmp/x:/x:rshared busybox true",
     "the bind propagation"),
    # Found by an independent red team: a bind source swapped for a link to / between the
    # check (create) and the mount (start), and the parents of protected paths.
    ("cli-bind-writable-parent-for-a-symlink", "docker run --rm -v /tmp:/t busybox ln -sfn / /t/rootlink",
     'a bind mount of "/tmp"'),
    ("cli-bind-swap-nested-source",
     "docker run -d --name swap -v /tmp/swap:/t busybox sh -c 'mkdir -p /t/x; sleep 30' >/dev/null; "
     "sleep 1; docker create -v /tmp/swap/x:/host busybox true; docker rm -f swap >/dev/null",
     'a bind mount of "/tmp/swap/x"'),
    ("cli-bind-engine-var", "docker run --rm -v /var:/v busybox true", 'a bind mount of "/var"'),
    ("cli-mount-bind-var-lib", "docker run --rm --mount type=bind,src=/var/lib,dst=/v busybox true",
     'a bind mount of "/var/lib"'),
    # The second red team raced docker cp into mounting a volume over /usr/sbin.
    ("cli-docker-cp-in",
     "id=$(docker create busybox true); echo x > /tmp/f; docker cp /tmp/f $id:/f; "
     "docker rm -f $id >/dev/null", "(docker cp)"),
    ("raw-archive-get",
     "id=$(docker create busybox true); api GET \"/v1.41/containers/$id/archive?path=/etc\"; "
     "docker rm -f $id >/dev/null", "(docker cp)"),
    # The third red team: dockerd 20.10 copies and tars files in its own mount namespace.
    ("cli-volumes-from",
     "id=$(docker create -v data:/d busybox true); docker run --rm --volumes-from $id busybox true; "
     "docker rm -f $id >/dev/null; docker volume rm data >/dev/null", "--volumes-from"),
    ("cli-commit-without-pause",
     "id=$(docker run -d busybox sleep 30); docker commit --pause=false $id snap; "
     "docker rm -f $id >/dev/null", "(docker commit)"),
    ("cli-commit-paused", "id=$(docker run -d busybox sleep 30); docker commit $id snap; "
     "docker rm -f $id >/dev/null", "(docker commit)"),
    ("cli-mount-anonymous-volume-by-name",
     "docker run -d --name anon -v /data busybox sleep 30 >/dev/null; "
     "docker run --rm -v $(docker inspect -f '{{range .Mounts}}{{.Name}}{{end}}' anon):/v busybox true; "
     "docker rm -fv anon >/dev/null", "anonymous volume"),
    ("cli-pid-share-for-a-commit-race",
     "id=$(docker run -d busybox sleep 30); docker run --rm --pid container:$id busybox true; "
     "docker rm -f $id >/dev/null", "--pid container:"),
    ("cli-network-of-another-container",
     "id=$(docker run -d busybox sleep 30); docker run --rm --network container:$id busybox true; "
     "docker rm -f $id >/dev/null", "(--network container:"),
    ("cli-ipc-of-another-container",
     "id=$(docker run -d --ipc shareable busybox sleep 30); "
     "docker run --rm --ipc container:$id busybox true; docker rm -f $id >/dev/null", "(--ipc container:"),
    ("cli-network-host-by-id",
     "docker run --rm --network $(docker network ls -q --filter name=^host$) busybox true", "--network=host"),
    ("cli-network-connect-host-by-prefix",
     "id=$(docker create busybox true); docker network connect "
     "$(docker network ls -q --filter name=^host$ | cut -c1-5) $id; docker rm -f $id >/dev/null",
     "the engine's host network"),
    # The seventh red team: the swarm fills templates into a task's mounts after the check.
    ("cli-service-mount-template",
     "docker service create --name tpl --mount 'type=volume,src=v{{.Task.Slot}},dst=/v' busybox true",
     "a template in a service's mount"),
    ("raw-service-mount-target-template",
     "api POST /v1.41/services/create --data-binary '{\"Name\":\"tpl\",\"TaskTemplate\":"
     "{\"ContainerSpec\":{\"Image\":\"busybox\",\"Mounts\":[{\"Type\":\"volume\","
     "\"Source\":\"d\",\"Target\":\"/v{{.Task.Slot}}\"}]}}}'", "a template in a service's mount"),
    # The classic builder's path through the gate (BuildKit knows no network by ID: a build's
    # network is sandbox, host or none, and host is refused by the builder's configuration,
    # test_buildkit_builds_stay_inside_the_classroom).
    ("cli-build-network-host-by-id",
     "printf 'FROM busybox\\nRUN true\\n' | DOCKER_BUILDKIT=0 docker build -q "
     "--network $(docker network ls -q --filter name=^host$) -",
     "sharing the engine's namespace in a build"),
    # The eighth red team: docker diff walked a link swapped in during the walk; a secret's
    # negative uid made a file owned by the engine's real root.
    ("cli-docker-diff", "id=$(docker run -d busybox sleep 30); docker diff $id; docker rm -f $id >/dev/null",
     "(docker diff)"),
    ("raw-secret-uid-below-the-container",
     "api POST /v1.41/services/create --data-binary '{\"Name\":\"sec\",\"TaskTemplate\":"
     "{\"ContainerSpec\":{\"Image\":\"busybox\",\"Secrets\":[{\"SecretName\":\"s\","
     "\"File\":{\"Name\":\"s\",\"UID\":\"-100000\",\"GID\":\"0\",\"Mode\":292}}]}}}'",
     "of a secret or config file"),
    # The ninth red team: a tmpfs that is a bind mount of an engine path; a service on
    # the gate's own port, which the swarm's ingress would route before the gate.
    ("cli-tmpfs-rbind", "docker run --rm --tmpfs /host:rbind,rw busybox true", "the tmpfs option"),
    ("cli-service-on-the-gates-port",
     "docker service create --name gateport -p 2376:80 busybox true", "the engine's own port 2376"),
    ("cli-cgroup-parent", "docker run --rm --cgroup-parent=/ busybox true", "cgroup parent"),
    ("cli-runtime", "docker run --rm --runtime=io.containerd.runc.v2 busybox true",
     "the container runtime"),
    ("cli-storage-opt", "docker run --rm --storage-opt size=100G busybox true", "storage driver options"),
    ("cli-log-driver-syslog",
     "docker run --rm --log-driver syslog --log-opt syslog-address=udp://127.0.0.1:9 busybox true",
     "the log driver \"syslog\""),
    ("cli-log-driver-gelf",
     "docker run --rm --log-driver gelf --log-opt gelf-address=udp://127.0.0.1:9 busybox true",
     "the log driver \"gelf\""),
    ("cli-sysctl-kernel", "docker run --rm --sysctl kernel.shm_rmid_forced=1 busybox true",
     "setting the kernel parameter"),
    ("cli-oom-score-adj-negative", "docker run --rm --oom-score-adj=-1000 busybox true",
     "a negative OOM score adjustment"),
    ("cli-exec-privileged",
     "id=$(docker run -d busybox sleep 30); docker exec --privileged $id true; docker rm -f $id >/dev/null",
     "a privileged exec session"),
    ("cli-build-network-host",
     "mkdir -p /tmp/ctx && printf 'FROM busybox\\nRUN true\\n' > /tmp/ctx/Dockerfile && "
     "DOCKER_BUILDKIT=0 docker build --network host /tmp/ctx", "docker build --network=host"),
    ("cli-build-cgroup-parent",
     "mkdir -p /tmp/ctx && printf 'FROM busybox\\nRUN true\\n' > /tmp/ctx/Dockerfile && "
     "DOCKER_BUILDKIT=0 docker build --cgroup-parent / /tmp/ctx", "cgroup parent"),
    # (The CLI fetches an http:// context itself; only the raw API makes the engine fetch.)
    ("raw-build-from-url", "api POST '/v1.41/build?remote=http://127.0.0.1:9/context.tar' "
     "-H 'Content-Type: application/x-tar' --data-binary ''", "a build from a URL"),
    ("cli-import-from-url", "docker import http://127.0.0.1:9/rootfs.tar evil",
     "importing an image from a URL"),
    ("cli-network-macvlan", "docker network create -d macvlan -o parent=eth0 mv", "the network driver"),
    ("cli-network-ipvlan", "docker network create -d ipvlan -o parent=eth0 iv", "the network driver"),
    ("cli-network-host-connect",
     "id=$(docker create busybox true); docker network connect host $id; docker rm -f $id >/dev/null",
     "host network"),
    ("cli-swarm-external-ca",
     "docker swarm init --advertise-addr 127.0.0.1 "
     "--external-ca protocol=cfssl,url=https://127.0.0.1:9/ca",
     "an external certificate authority"),
    ("cli-plugin-install", "docker plugin install --grant-all-permissions evil/plugin",
     "installing or changing engine plugins"),
]
assert len(CASES) >= 60, len(CASES)

# What none of the cases may leave behind on ada's engine.
AFTERWARDS = ("docker volume ls -q; docker network ls --format '{{.Name}}' "
              "--filter driver=macvlan --filter driver=ipvlan; docker plugin ls -q; "
              "docker service ls -q 2>/dev/null; docker ps -aq --filter status=running")


@pytest.fixture(scope="module")
def site(tmp_path_factory, host_docker, lesson_mirror):
    """A real site with two learners whose servers and engines are running. Their engines
    come from the site's warm pool (whale_hub.pool), as on `whale up`: made before anyone
    owned them, then given to one learner each."""
    ensure_images()
    hub = Hub(tmp_path_factory.mktemp("attack-site"),
              extra_env={"WHALE_REGISTRY_MIRROR": lesson_mirror.url, "WHALE_PROVIDER": "sandbox",
                         "WHALE_ENGINE_POOL": "2"})
    try:
        ada, bob = hub.user("ada"), hub.user("bob")
        pool = EnginePool(hub.state / "hub" / "engines", hub.site, EngineSettings())
        deadline = time.monotonic() + 120
        while len(pool.ready()) < 2:
            assert time.monotonic() < deadline, "the pool did not fill:\n" + hub.log_tail()
            time.sleep(0.5)
        hub.start(ada)
        hub.start(bob)
        for name in (ada, bob):
            assert is_pool_unit(engine_of(host_docker, name).name.removeprefix("whale-engine-"))
        out = hub.run(ada, "docker pull -q busybox >/dev/null && echo pulled", timeout=120)
        assert "pulled" in out, out
        yield hub, ada, bob
    finally:
        hub.close()


def engine_of(client, learner: str):
    """The learner's engine: the engine container on their server's network (a pooled
    engine has no owner label; its owner file says whose it is)."""
    (server,) = client.containers.list(filters={"label": f"{OWNER_LABEL}={learner}",
                                                "name": "jupyter-"})
    (network,) = server.attrs["NetworkSettings"]["Networks"]
    (engine,) = client.containers.list(filters={"network": network,
                                                "label": "org.howtowhale.role=engine"})
    return engine


def readable(output: str) -> str:
    """The engine's JSON error answers (what curl prints) as the docker CLI shows them."""
    lines = []
    for line in output.splitlines():
        with contextlib.suppress(ValueError, KeyError, TypeError):
            line = "Error response from daemon: " + json.loads(line)["message"]
        lines.append(line)
    return "\n".join(lines)


@pytest.fixture(scope="module")
def results(site) -> dict[str, str]:
    """Every case, run in one cell of ada's notebook; the output of each, by id."""
    hub, ada, _ = site
    cell = [API]
    for case_id, command, _ in CASES:
        cell.append(f"echo '@@begin {case_id}'; ( {command} ) 2>&1; echo '@@end {case_id}'")
    out = hub.run(ada, "\n".join(cell), timeout=600)
    found = {case: readable(text) for case, text in
             re.findall(r"@@begin (\S+)\n(.*?)@@end \1", out, re.S)}
    after = hub.run(ada, AFTERWARDS, timeout=60)
    found["@@afterwards"] = after
    return found


@pytest.mark.parametrize(("case_id", "command", "refusal"), CASES, ids=[c[0] for c in CASES])
def test_attack_is_refused_with_its_reason(results, case_id, command, refusal):
    output = results.get(case_id)
    assert output is not None, f"{case_id} did not run: " + json.dumps(sorted(results))
    assert REFUSED in output, output
    assert refusal in output, output


def test_no_attack_left_anything_behind(results):
    """No volume, macvlan/ipvlan network, plugin, service or running container was made."""
    assert results["@@afterwards"].strip() == "", results["@@afterwards"]


BUILDKIT_CELL = r"""
mkdir -p /tmp/bk && cd /tmp/bk
printf 'FROM busybox\nRUN cat /proc/self/uid_map /proc/self/cgroup\n' > Dockerfile
printf 'FROM busybox\nRUN --network=host true\n' > Dockerfile.host
printf 'FROM busybox\nRUN --security=insecure true\n' > Dockerfile.insecure
step() { echo "@@begin $1"; shift; "$@" 2>&1; echo "@@end"; }
step plain docker build --progress=plain --no-cache .
step cgroup-parent docker build --progress=plain --no-cache --cgroup-parent=/ .
step run-network-host docker build --no-cache -f Dockerfile.host .
step network-host docker build --no-cache --network=host .
step insecure docker buildx build --no-cache --allow security.insecure -f Dockerfile.insecure .
"""


def test_buildkit_builds_stay_inside_the_classroom(site):
    """BuildKit (the learner's default builder) reaches the engine through a gRPC stream the
    gate passes through, so its limits are the builder's own: no entitlement to the
    engine's network or to privileged steps, and every step in the learner's user
    namespace and cgroup, whatever cgroup parent the build names."""
    hub, ada, _ = site
    out = hub.run(ada, BUILDKIT_CELL, timeout=300)
    steps = dict(re.findall(r"@@begin (\S+)\n(.*?)@@end", out, re.S))
    assert set(steps) == {"plain", "cgroup-parent", "run-network-host", "network-host",
                          "insecure"}, out
    for name in ("plain", "cgroup-parent"):
        text = steps[name]
        assert re.search(r"^#\d+ [\d.]+ +0 +100000 +65536$", text, re.M), text  # remapped root
        for controller in ("memory", "pids"):
            paths = re.findall(rf"^#\d+ [\d.]+ \d+:{controller}:(\S+)$", text, re.M)
            assert paths, text
            assert all(p.startswith("/learner/") for p in paths), (name, paths)
    assert "network.host is not allowed" in steps["run-network-host"], steps["run-network-host"]
    assert "granting entitlement network.host is not allowed by build daemon configuration" \
        in steps["network-host"], steps["network-host"]
    assert "granting entitlement security.insecure is not allowed by build daemon configuration" \
        in steps["insecure"], steps["insecure"]


def test_what_lessons_do_still_works_on_the_same_engine(site):
    hub, ada, _ = site
    out = hub.run(ada, "docker run --rm -v data:/d busybox sh -c 'echo kept > /d/f && cat /d/f'; "
                       "docker volume rm data >/dev/null; docker run --rm --cap-drop ALL "
                       "--cap-add NET_BIND_SERVICE --security-opt no-new-privileges busybox echo ok",
                  timeout=120)
    assert out.split() == ["kept", "ok"], out


def test_a_learner_cannot_reach_another_learners_engine(site):
    """bob's engine is not on ada's network: its name does not resolve and its address
    (read by the operator) does not answer."""
    hub, ada, bob = site
    import docker as docker_sdk

    client = docker_sdk.from_env()
    try:
        engine = engine_of(client, bob)
        address = next(iter(engine.attrs["NetworkSettings"]["Networks"].values()))["IPAddress"]
    finally:
        client.close()
    out = hub.run(ada, f"curl -sS -m 3 -k https://{engine.name}:2376/_ping; echo; "
                       f"curl -sS -m 3 -k https://{address}:2376/_ping; echo", timeout=60)
    assert "Could not resolve host" in out, out
    assert re.search(r"timed out|Connection refused|No route", out), out
    assert "OK" not in out


FLOOD = r"""python3 - <<'PY'
import os, socket, time
host, port = os.environ["DOCKER_HOST"].split("://")[1].rsplit(":", 1)
held = []
for _ in range(12000):
    try:
        held.append(socket.create_connection((host, int(port)), timeout=5))
    except OSError:
        break
print("held", len(held), flush=True)
time.sleep(6)
for s in held:
    s.close()
PY
docker ps -q | wc -l"""


def test_a_flood_of_connections_does_not_take_the_engine_down(site, host_docker):
    """The red team held 21,000 TCP connections (no certificate is needed to open one) and
    the gate took the engine down (out of memory). Now connections past 256 are closed at
    once and an unfinished handshake is dropped after 10 s: the gate's memory stays small
    during a flood of 12,000, and the engine answers when it is over."""
    import threading

    hub, ada, _ = site
    engine = engine_of(host_docker, ada)
    done: dict[str, str] = {}
    flood = threading.Thread(target=lambda: done.setdefault("out", hub.run(ada, FLOOD, timeout=120)))
    flood.start()
    peak = 0
    while flood.is_alive():
        status = engine.exec_run(["cat", "/proc/1/status"]).output.decode()
        rss = re.search(r"VmRSS:\s+(\d+) kB", status)
        if rss:
            peak = max(peak, int(rss.group(1)))
        flood.join(0.5)
    assert re.search(r"held \d{4,}", done["out"]), done["out"]
    assert done["out"].strip().endswith("0"), done["out"]  # docker ps answered: no containers
    assert 0 < peak < 80 * 1024, f"the gate grew to {peak} kB during the flood"
    engine.reload()
    assert engine.status == "running"
    assert engine.attrs["RestartCount"] == 0


SLOW_HEADS = r"""python3 - <<'PY'
import os, socket, ssl, time
host, port = os.environ["DOCKER_HOST"].split("://")[1].rsplit(":", 1)
certs = os.environ["DOCKER_CERT_PATH"]
context = ssl.create_default_context(cafile=f"{certs}/ca.pem")
context.load_cert_chain(f"{certs}/cert.pem", f"{certs}/key.pem")
context.check_hostname = False
held = []
for _ in range(300):
    try:
        s = context.wrap_socket(socket.create_connection((host, int(port)), timeout=5))
        s.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\n")  # and never the end of the head
        held.append(s)
    except OSError:
        pass
print("held", len(held), flush=True)
time.sleep(8)
PY"""


def test_slow_requests_from_a_notebook_do_not_lock_out_the_hub(site, host_docker):
    """The second red team held 255 TLS connections with unfinished request heads (a head
    could take 600 s) and nobody else got in. Now one address holds at most 128 of the
    gate's 256 connections and a head must come whole within 15 s: while ada's notebook
    holds its slow requests, the hub still reaches her engine."""
    import dataclasses
    import threading
    import time

    from whale_core.bundle import CredentialBundle
    hub, ada, _ = site
    engine = engine_of(host_docker, ada)
    port = engine.attrs["HostConfig"]["PortBindings"]["2376/tcp"][0]["HostPort"]
    owner_file = next(f for f in (hub.state / "hub" / "engines" / "learners").glob("*/owner")
                      if f.read_text().strip() == ada)
    bundle = CredentialBundle.load(owner_file.parent / "engine" / "bundle")
    hub_side = dataclasses.replace(bundle, docker_host=f"tcp://127.0.0.1:{port}")

    def gate_fds() -> int:
        return int(engine.exec_run(["sh", "-c", "ls /proc/1/fd | wc -l"]).output.decode().strip())

    before = gate_fds()
    done: dict[str, str] = {}
    holder = threading.Thread(
        target=lambda: done.setdefault("out", hub.run(ada, SLOW_HEADS, timeout=90)))
    holder.start()
    try:
        # Until ada's notebook holds all it can: the gate's open files stop growing.
        deadline = time.monotonic() + 60
        seen: list[int] = []
        while time.monotonic() < deadline:
            seen.append(gate_fds())
            if seen[-1] >= before + 100 and len(set(seen[-4:])) == 1 and len(seen) >= 4:
                break
            time.sleep(0.3)
        client = hub_side.client(timeout=5)
        try:
            assert client.ping() is True  # while ada's slow requests are held
        finally:
            client.close()
    finally:
        holder.join(90)
    held = int(re.search(r"held (\d+)", done["out"]).group(1))
    assert 100 <= held <= 128, done["out"]


VOLUME_COPY_RACE = r"""
mkdir -p /tmp/volcopy && cd /tmp/volcopy
cat > Dockerfile <<'DF'
FROM busybox
RUN mkdir /data && for i in $(seq 100 140); do \
      dd if=/dev/zero of=/data/a$i bs=1M count=1 2>/dev/null; done && echo CONTENT > /data/zz
DF
DOCKER_BUILDKIT=0 docker build -q -t volcopy . >/dev/null
docker volume create racevol >/dev/null
docker run -d --name racer -v racevol:/v busybox sh -c \
  'while [ ! -e /v/a100 ]; do :; done; ln -s /etc/whale-redteam-pwned /v/zz; sleep 60' >/dev/null
sleep 1
docker create --name victim -v racevol:/data volcopy >/dev/null && echo created
sleep 2
docker run --rm -v racevol:/v busybox ls /v | wc -l
docker rm -f racer victim >/dev/null; docker volume rm racevol >/dev/null; docker image rm volcopy >/dev/null
"""


def test_a_volume_being_filled_cannot_be_redirected_to_the_engines_files(site, host_docker):
    """The third red team's race: while dockerd filled an empty named volume from the image
    (following links, as the engine's root), a container holding the same volume planted
    a link to an engine path, and the copy wrote there. Named volumes are now mounted
    without that copy: nothing is written through the link, and the volume stays empty."""
    hub, ada, _ = site
    out = hub.run(ada, VOLUME_COPY_RACE, timeout=180)
    assert "created" in out, out
    assert out.strip().splitlines()[-1] == "0", out  # no copy from the image at all
    engine = engine_of(host_docker, ada)
    probe = engine.exec_run(["ls", "/etc/whale-redteam-pwned"])
    assert probe.exit_code != 0, probe.output
    assert b"No such file" in probe.output, probe.output


def test_a_fork_bomb_in_one_notebook_leaves_the_other_learner_working(site):
    hub, ada, bob = site
    out = hub.run(ada, "docker run --rm busybox sh -c 'for i in $(seq 1 3000); do sleep 5 & done; wait'",
                  timeout=120)
    assert "whale: your engine's process limit was hit" in out, out
    assert hub.run(bob, "docker ps -q | wc -l", timeout=60).strip() == "0"
