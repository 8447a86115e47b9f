"""decide(): the gate's decision on one request, and the canonical request (path, query,
headers, body) it forwards to dockerd when the request is allowed."""
import json
import re

from .decision import READ_DIFFERENTLY, Decision, Refused, _q, refusal
from .jsonbody import parse_json
from .limits import MAX_BODY
from .mounts import resolve_source
from .networks import body_connect
from .query import encode_query, parse_query
from .routes import JSON_BODY, JSON_OPTIONAL, NONE, STREAM, Route, canonical_path, find_route

STREAM_TYPES = frozenset({"application/x-tar", "application/tar", "application/octet-stream",
                          "text/plain", "application/gzip", "application/x-gzip", "application/x-bzip2",
                          "application/x-xz", "application/zstd"})
HOST_VALUE = re.compile(r"[A-Za-z0-9.:\[\]_-]{1,255}\Z")
TOKEN_VALUE = re.compile(r"[A-Za-z0-9+/=_-]*\Z")
# A BuildKit session names each gRPC method it serves in a header of its own (some 20).
MAX_REPEATED = 64


def _headers(headers) -> list[tuple[str, str]]:
    items = headers.items() if hasattr(headers, "items") else headers
    return [(str(k).lower(), str(v)) for k, v in items]


def canonical_headers(route: Route, headers: list[tuple[str, str]], has_stream: bool) -> list:
    seen: dict[str, str] = {}
    many: list[tuple[str, str]] = []
    for name, value in headers:
        if name in route.many_headers:
            many.append((name, value))
            continue
        if name in seen and name in ("host", "user-agent", "content-type", "x-registry-auth",
                                     "x-registry-config", "connection", "upgrade", *route.headers):
            raise Refused(f"a repeated {name} header", READ_DIFFERENTLY)
        seen[name] = value
    out = []
    host = seen.get("host", "")
    out.append(("Host", host if HOST_VALUE.match(host) else "docker"))
    agent = seen.get("user-agent")
    if agent and len(agent) <= 512 and all(32 <= ord(c) < 127 for c in agent):
        out.append(("User-Agent", agent))
    if route.body in (JSON_BODY, JSON_OPTIONAL):
        pass  # set with the body
    elif route.body == STREAM and has_stream:
        kind = seen.get("content-type", "").split(";")[0].strip().lower()
        if kind and kind not in STREAM_TYPES:
            raise Refused(f"the content type {_q(kind)} on {route.methods[0]} {route.template}",
                          "this call takes an archive (application/x-tar)")
        out.append(("Content-Type", kind or "application/x-tar"))
    passed = [(name, seen[name]) for name in route.headers if name in seen] + many
    if len(many) > MAX_REPEATED:
        raise Refused(f"more than {MAX_REPEATED} {many[0][0]} headers", READ_DIFFERENTLY)
    for name, value in passed:
        if name.startswith("x-registry-") and not TOKEN_VALUE.match(value):
            raise Refused(f"a malformed {name} header", READ_DIFFERENTLY)
        if not all(32 <= ord(c) < 127 for c in value):
            raise Refused(f"a malformed {name} header", READ_DIFFERENTLY)
        out.append(("-".join(p.capitalize() for p in name.split("-")), value))
    if route.hijack:
        upgrade = seen.get("upgrade", "").lower()
        connection = {t.strip().lower() for t in seen.get("connection", "").split(",")}
        if upgrade and "upgrade" in connection:
            if upgrade not in route.upgrades:
                raise Refused(f"an upgrade to {_q(upgrade)} on {route.methods[0]} {route.template}",
                              f"this call upgrades to {' or '.join(route.upgrades)}")
            out += [("Connection", "Upgrade"), ("Upgrade", upgrade)]
        elif route.upgrade_required:
            raise Refused(f"{route.methods[0]} {route.template} without an upgrade to "
                          f"{' or '.join(route.upgrades)}", "the call is a connection of its own")
    return out


def decide(method: str, path: str, query: str | None, headers, body: bytes | None, *,
           resolve=resolve_source) -> Decision:
    """The gate's decision on one request. `path` and `query` are the request target's two
    halves, as sent; `headers` a mapping or (name, value) pairs; `body` the request body
    (None: none was sent; a streamed body, for the endpoints that take one, is passed as
    None and marked stream=True in the decision). Pure, apart from `resolve` (how a bind
    mount's source resolves on this engine)."""
    route_name = f"{method} {path}"
    try:
        if method not in ("GET", "HEAD", "POST", "PUT", "DELETE"):
            raise Refused(f"the HTTP method {_q(method)}", "it is not one Docker's API uses")
        if "#" in (query or ""):
            raise Refused("a fragment (#) in the request target", READ_DIFFERENTLY)
        prefix, rest = canonical_path(path)
        route, params = find_route(method, rest)
        route_name = f"{method} {route.template}"
        pairs = parse_query(query or "", route.params, route_name)
        if route.query_check:
            route.query_check(dict(pairs))
        hdrs = _headers(headers)
        if body is not None and len(body) > MAX_BODY and route.body != STREAM:
            raise Refused(f"a request body over 1 MiB ({route_name})",
                          "settings are far smaller; this limit keeps what is checked and what runs the same",
                          status=413)
        decision = Decision(method=method, path=prefix + rest, query=encode_query(pairs),
                            hijack=route.hijack, route=route_name)
        decision.headers = canonical_headers(route, hdrs, route.body == STREAM)
        if body == b"":
            body = None
        if route.body == STREAM:
            decision.stream = body is None
            decision.body = body
            return decision
        if route.body == NONE:
            if body is not None:
                raise Refused(f"a request body on {route_name}",
                              "this call takes none (old API versions read settings from one)")
            return decision
        value = None if body is None else parse_json(body)
        if value is None:
            if route.body == JSON_BODY:
                raise Refused(f"{route_name} without a request body", "there is nothing here to check")
            return decision
        if not isinstance(value, dict):
            raise Refused(f"a request body on {route_name} that is not a JSON object", READ_DIFFERENTLY)
        checker = route.checker
        value = checker(value, resolve, params) if checker is body_connect else checker(value, resolve)
        decision.body = json.dumps(value, ensure_ascii=True, separators=(",", ":"), allow_nan=False).encode()
        decision.headers.append(("Content-Type", "application/json"))
        return decision
    except Refused as exc:
        return refusal(exc, route_name)


def wants_stream(method: str, path: str) -> bool:
    """Whether this endpoint's body is passed through as a stream (not read and checked)."""
    try:
        _, rest = canonical_path(path)
        route, _ = find_route(method, rest)
    except Refused:
        return False
    return route.body == STREAM
