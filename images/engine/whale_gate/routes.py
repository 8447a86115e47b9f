"""Routes: the allow-list of Docker API calls, with each one's parameters, body and
headers, and the canonical form of a request path."""
import re
from dataclasses import dataclass

from .containers import body_create, body_exec, body_update
from .decision import Refused
from .jsonbody import body_of
from .limits import MIN_API
from .networks import body_connect, body_network, body_volume
from .query import query_build, query_commit, query_images_create
from .schema import AUTH, COMMIT_CONFIG, EXEC_START, NETWORK_DISCONNECT, NODE_SPEC, SWARM_JOIN, SWARM_UNLOCK
from .swarm import body_config, body_secret, body_service, body_swarm_init, body_swarm_update

NONE, JSON_BODY, JSON_OPTIONAL, STREAM = "none", "json", "json-optional", "stream"
SEGMENT = r"[A-Za-z0-9][A-Za-z0-9_.-]*"
IMAGE = r"[A-Za-z0-9][A-Za-z0-9_.:@/-]*"
PATTERNS = {"{id}": f"(?P<id>{SEGMENT})", "{name}": f"(?P<name>{IMAGE})"}


@dataclass
class Route:
    methods: tuple
    template: str
    params: dict
    body: str = NONE
    checker: object = None           # body checker: (body, resolve[, params]) -> body
    query_check: object = None       # (dict of query values) -> None or raise Refused
    headers: tuple = ()              # extra request headers forwarded (lower-case)
    hijack: bool = False
    #: The protocols a hijacked call may upgrade to; with `upgrade_required`, it must.
    upgrades: tuple = ("tcp", "websocket")
    upgrade_required: bool = False
    many_headers: tuple = ()         # request headers that may repeat (lower-case)

    def __post_init__(self):
        pattern = re.escape(self.template)
        for key, regex in PATTERNS.items():
            pattern = pattern.replace(re.escape(key), regex)
        self.regex = re.compile(pattern + r"\Z")


def _p(*names, many=()) -> dict:
    return {**{n: "one" for n in names}, **{n: "many" for n in many}}


LOGS = _p("follow", "stdout", "stderr", "since", "until", "timestamps", "tail", "details")
ATTACH = _p("detachKeys", "logs", "stream", "stdin", "stdout", "stderr")
AUTH_HEADER = ("x-registry-auth",)
G, GH = ("GET",), ("GET", "HEAD")
ROUTES = [
    # reading
    Route(GH, "/_ping", {}),
    Route(G, "/version", {}),
    Route(G, "/info", {}),
    Route(G, "/events", _p("since", "until", "filters")),
    Route(G, "/system/df", _p("verbose", many=("type",))),
    Route(G, "/containers/json", _p("all", "limit", "size", "filters", "since", "before")),
    Route(G, "/containers/{id}/json", _p("size")),
    # `docker inspect REGISTRY:PORT/NAME:TAG` asks for a container of that name first (no
    # container is named so: the engine answers 404), then for the image.
    Route(G, "/containers/{name}/json", _p("size")),
    Route(G, "/containers/{id}/top", _p("ps_args")),
    Route(G, "/containers/{id}/logs", LOGS),
    Route(G, "/containers/{id}/export", {}),
    Route(G, "/containers/{id}/stats", _p("stream", "one-shot")),
    Route(GH, "/containers/{id}/archive", _p("path")),
    Route(G, "/containers/{id}/attach/ws", ATTACH, hijack=True,
          headers=("sec-websocket-key", "sec-websocket-version", "sec-websocket-protocol", "origin")),
    Route(G, "/exec/{id}/json", {}),
    Route(G, "/images/json", _p("all", "filters", "shared-size", "digests", "manifests", "filter")),
    Route(G, "/images/search", _p("term", "limit", "filters"), headers=AUTH_HEADER),
    Route(G, "/images/get", _p("platform", many=("names",))),
    Route(G, "/images/{name}/json", _p("manifests", "platform")),
    Route(G, "/images/{name}/history", _p("platform")),
    Route(G, "/images/{name}/get", _p("platform")),
    Route(G, "/distribution/{name}/json", {}, headers=AUTH_HEADER),
    Route(G, "/volumes", _p("filters")),
    Route(G, "/volumes/{id}", {}),
    Route(G, "/networks", _p("filters")),
    Route(G, "/networks/{id}", _p("verbose", "scope")),
    Route(G, "/services", _p("filters", "status")),
    Route(G, "/services/{id}", _p("insertDefaults")),
    Route(G, "/services/{id}/logs", LOGS),
    Route(G, "/tasks", _p("filters")),
    Route(G, "/tasks/{id}", {}),
    Route(G, "/tasks/{id}/logs", LOGS),
    Route(G, "/nodes", _p("filters")),
    Route(G, "/nodes/{id}", {}),
    Route(G, "/secrets", _p("filters")),
    Route(G, "/secrets/{id}", {}),
    Route(G, "/configs", _p("filters")),
    Route(G, "/configs/{id}", {}),
    Route(G, "/swarm", {}),
    Route(G, "/swarm/unlockkey", {}),
    Route(G, "/plugins", _p("filters")),
    Route(G, "/plugins/privileges", _p("remote"), headers=AUTH_HEADER),
    Route(G, "/plugins/{name}/json", {}),
    # containers
    Route(("POST",), "/containers/create", _p("name", "platform"), JSON_BODY, body_create),
    Route(("POST",), "/containers/prune", _p("filters")),
    Route(("POST",), "/containers/{id}/start", _p("detachKeys")),
    Route(("POST",), "/containers/{id}/stop", _p("t", "signal")),
    Route(("POST",), "/containers/{id}/restart", _p("t", "signal")),
    Route(("POST",), "/containers/{id}/kill", _p("signal")),
    Route(("POST",), "/containers/{id}/pause", {}),
    Route(("POST",), "/containers/{id}/unpause", {}),
    Route(("POST",), "/containers/{id}/wait", _p("condition")),
    Route(("POST",), "/containers/{id}/resize", _p("h", "w")),
    Route(("POST",), "/containers/{id}/rename", _p("name")),
    Route(("POST",), "/containers/{id}/attach", ATTACH, hijack=True),
    Route(("POST",), "/containers/{id}/update", {}, JSON_BODY, body_update),
    Route(("POST",), "/containers/{id}/exec", {}, JSON_BODY, body_exec),
    Route(("PUT",), "/containers/{id}/archive", _p("path", "noOverwriteDirNonDir", "copyUIDGID"), STREAM),
    Route(("DELETE",), "/containers/{id}", _p("force", "v", "link")),
    Route(("POST",), "/exec/{id}/start", {}, JSON_OPTIONAL, body_of(EXEC_START), hijack=True),
    Route(("POST",), "/exec/{id}/resize", _p("h", "w")),
    # images
    Route(("POST",), "/images/create",
          _p("fromImage", "fromSrc", "repo", "tag", "message", "platform", many=("changes",)),
          STREAM, query_check=query_images_create, headers=AUTH_HEADER),
    Route(("POST",), "/images/load", _p("quiet", many=("platform",)), STREAM),
    Route(("POST",), "/images/prune", _p("filters")),
    Route(("POST",), "/images/{name}/tag", _p("repo", "tag")),
    Route(("POST",), "/images/{name}/push", _p("tag", "platform"), headers=AUTH_HEADER),
    Route(("DELETE",), "/images/{name}", _p("force", "noprune", many=("platforms",))),
    Route(("POST",), "/commit",
          _p("container", "repo", "tag", "comment", "author", "pause", many=("changes",)),
          JSON_OPTIONAL, body_of(COMMIT_CONFIG), query_check=query_commit),
    Route(("POST",), "/build",
          _p("dockerfile", "q", "nocache", "cachefrom", "pull", "rm", "forcerm", "memory", "memswap",
             "cpushares", "cpusetcpus", "cpusetmems", "cpuperiod", "cpuquota", "buildargs", "shmsize",
             "squash", "labels", "networkmode", "platform", "target", "outputs", "version", "remote",
             "cgroupparent", "isolation", "ulimits", "session", "buildid",
             many=("t", "extrahosts", "securityopt")),
          STREAM, query_check=query_build, headers=("x-registry-config",)),
    # BuildKit (docker buildx build, docker compose build): the client's session (its
    # files, secrets and ssh agent, which the builder asks for) and the builder's gRPC
    # API, each an HTTP/2 connection the gate passes through. What a build may do is
    # the builder's own configuration (images/engine/daemon.json): no network.host or
    # security.insecure entitlement, steps in the engine's user namespace and cgroup.
    Route(("POST",), "/session", {}, hijack=True, upgrades=("h2c",), upgrade_required=True,
          headers=("x-docker-expose-session-uuid", "x-docker-expose-session-name",
                   "x-docker-expose-session-sharedkey"),
          many_headers=("x-docker-expose-session-grpc-method",)),
    Route(("POST",), "/grpc", {}, hijack=True, upgrades=("h2c",), upgrade_required=True),
    Route(("POST",), "/build/cancel", _p("id")),
    Route(("POST",), "/build/prune",
          _p("all", "filters", "keep-storage", "reserved-space", "max-used-space", "min-free-space")),
    Route(("POST",), "/auth", {}, JSON_BODY, body_of(AUTH)),
    # volumes and networks
    Route(("POST",), "/volumes/create", {}, JSON_BODY, body_volume),
    Route(("POST",), "/volumes/prune", _p("filters")),
    Route(("DELETE",), "/volumes/{id}", _p("force")),
    Route(("POST",), "/networks/create", {}, JSON_BODY, body_network),
    Route(("POST",), "/networks/prune", _p("filters")),
    Route(("POST",), "/networks/{id}/connect", {}, JSON_BODY, body_connect),
    Route(("POST",), "/networks/{id}/disconnect", {}, JSON_BODY, body_of(NETWORK_DISCONNECT)),
    Route(("DELETE",), "/networks/{id}", {}),
    # swarm
    Route(("POST",), "/swarm/init", {}, JSON_BODY, body_swarm_init),
    Route(("POST",), "/swarm/join", {}, JSON_BODY, body_of(SWARM_JOIN)),
    Route(("POST",), "/swarm/leave", _p("force")),
    Route(("POST",), "/swarm/update",
          _p("version", "rotateWorkerToken", "rotateManagerToken", "rotateManagerUnlockKey"),
          JSON_BODY, body_swarm_update),
    Route(("POST",), "/swarm/unlock", {}, JSON_BODY, body_of(SWARM_UNLOCK)),
    Route(("POST",), "/services/create", {}, JSON_BODY, body_service, headers=AUTH_HEADER),
    Route(("POST",), "/services/{id}/update", _p("version", "registryAuthFrom", "rollback"),
          JSON_BODY, body_service, headers=AUTH_HEADER),
    Route(("DELETE",), "/services/{id}", {}),
    Route(("POST",), "/nodes/{id}/update", _p("version"), JSON_BODY, body_of(NODE_SPEC)),
    Route(("DELETE",), "/nodes/{id}", _p("force")),
    Route(("POST",), "/secrets/create", {}, JSON_BODY, body_secret),
    Route(("POST",), "/secrets/{id}/update", _p("version"), JSON_BODY, body_secret),
    Route(("DELETE",), "/secrets/{id}", {}),
    Route(("POST",), "/configs/create", {}, JSON_BODY, body_config),
    Route(("POST",), "/configs/{id}/update", _p("version"), JSON_BODY, body_config),
    Route(("DELETE",), "/configs/{id}", {}),
]
# docker cp on Docker Engine 20.10 mounts the container's volumes into its root file
# system in the engine's own mount namespace, following the path twice: a container that
# swaps a directory for a link in between gets a volume mounted over any engine path (an
# independent red team mounted one on /usr/sbin and ran its own runc as the engine's
# root). Engine 23 moved the copy into a mount namespace of its own, but still resolved
# each volume's mount point by path before mounting it; upstream closed that only in a
# later security release (GHSA-vp62-88p7-qqf5, GHSA-rg2x-37c3-w2rh), which Debian's 26.1.5
# does not carry. The gate cannot see that race, so the archive calls stay refused.
ARCHIVE = re.compile(r"/containers/[^/]+/archive\Z")
COPY_RACE = ("on this engine a container can redirect the copy to the engine's own files. "
             "Copy through the container instead: docker exec -i NAME sh -c 'cat > /path' < FILE, "
             "or docker exec NAME cat /path > FILE")
PATH_CHARS = re.compile(r"[A-Za-z0-9/._:@-]*\Z")
VERSION = re.compile(r"/v(\d+)\.(\d+)(?=/)")


def canonical_path(path: str) -> tuple[str, str]:
    """(version prefix, path without it), or Refused."""
    shown = path if len(path) <= 80 else path[:77] + "..."
    if not path.startswith("/") or "%" in path or ".." in path or "//" in path or not PATH_CHARS.match(path):
        raise Refused(f"the request path {shown!r}",
                      "only plain paths are accepted (no %-encoding, '..', '//' or unusual characters), "
                      "so that the engine reads the path this check read")
    prefix = ""
    m = VERSION.match(path)
    if m:
        major, minor = m.group(1), m.group(2)
        if major != "1" or not re.fullmatch(r"[1-9][0-9]?", minor):
            raise Refused(f"the API version {major}.{minor}", "versions are written /v1.NN")
        if int(minor) < MIN_API:
            raise Refused(f"the Docker API version 1.{minor}",
                          f"versions before 1.{MIN_API} take settings in places this check does not read; "
                          "use a current docker client")
        prefix, path = f"/v1.{int(minor)}", path[m.end():]
    return prefix, path


# docker diff (Engine 20.10 and 26.1 alike) walks the container's changes in the engine's
# own mount namespace, by path, following a link that a container swaps in for a directory
# during the walk: the eighth red team listed the engine's TLS files that way. Refused
# like docker cp. (busybox's `find -newer` is no substitute: it compares whole seconds.)
CHANGES = re.compile(r"/containers/[^/]+/changes\Z")
DIFF_RACE = ("on this engine a container can redirect the listing to the engine's own files. "
             "See what a container added or removed through it instead: compare "
             "docker exec NAME find / -xdev with docker run --rm IMAGE find / -xdev")


def find_route(method: str, path: str):
    """(route, params) for a path without its version prefix, or Refused."""
    if ARCHIVE.match(path):
        raise Refused("copying files into or out of a container (docker cp)", COPY_RACE)
    if CHANGES.match(path):
        raise Refused("listing a container's changes (docker diff)", DIFF_RACE)
    for route in ROUTES:
        m = route.regex.match(path)
        if m and method in route.methods:
            return route, m.groupdict()
    if path == "/plugins" or path.startswith("/plugins/"):
        raise Refused(f"installing or changing engine plugins ({method} {path})",
                      "a plugin runs with the engine's own privileges, outside your containers' "
                      "user namespace")
    raise Refused(f"the API call {method} {path}",
                  "it is not one of the calls lessons and the docker CLI use")


