"""Query strings: read strictly, re-encoded canonically, and the endpoints' rules on
their parameters (docker build, commit, import)."""
import re
import urllib.parse

from .decision import READ_DIFFERENTLY, Refused, _q
from .networks import is_host_network


def unquote_strict(part: str, name: str) -> str:
    if re.search(r"%(?![0-9A-Fa-f]{2})", part):
        raise Refused(f"a malformed query parameter {_q(name)}", READ_DIFFERENTLY)
    try:
        value = urllib.parse.unquote_to_bytes(part.replace("+", " ")).decode("utf-8")
    except UnicodeDecodeError:
        raise Refused(f"a query parameter that is not UTF-8 text ({_q(name)})", READ_DIFFERENTLY) from None
    if "\x00" in value:
        raise Refused(f"a NUL character in the query parameter {_q(name)}", READ_DIFFERENTLY)
    return value


def parse_query(query: str, known: dict, route: str) -> list[tuple[str, str]]:
    """The query's parameters, in order: every one known for the endpoint, none repeated
    unless Docker reads it as a list."""
    pairs: list[tuple[str, str]] = []
    if not query:
        return pairs
    if ";" in query:
        raise Refused("a semicolon in the query string", READ_DIFFERENTLY)
    seen = set()
    for part in query.split("&"):
        if not part:
            continue
        raw_key, _, raw_value = part.partition("=")
        key = unquote_strict(raw_key, raw_key)
        value = unquote_strict(raw_value, key)
        if key not in known:
            # dockerd ignores a parameter it does not read, and the engine is sent only
            # the ones kept here, so one left out changes nothing (docker-py sends
            # `trunc_cmd` to containers/json, which no engine reads).
            continue
        if key in seen and known[key] != "many":
            raise Refused(f"the query parameter {_q(key)} given twice on {route}",
                          "the engine would read only one of them")
        seen.add(key)
        pairs.append((key, value))
    return pairs


def encode_query(pairs: list[tuple[str, str]]) -> str:
    return "&".join(f"{urllib.parse.quote(k, safe='')}={urllib.parse.quote(v, safe='')}" for k, v in pairs)


def query_build(q: dict) -> None:
    version = q.get("version", "")
    if version not in ("", "1", "2"):
        raise Refused(f"the builder version {_q(version)}",
                      "there are two: the classic builder (1) and BuildKit (2)")
    if q.get("remote"):
        raise Refused("a build from a URL (docker build URL, remote=…)",
                      "the engine would fetch an address you choose; send the build context instead")
    mode = q.get("networkmode", "").lower()
    if is_host_network(q.get("networkmode", "")):
        raise Refused("sharing the engine's namespace in a build (docker build --network=host)")
    if mode.startswith("container:"):
        raise Refused("a build in another container's network (docker build --network=container:…)")
    if q.get("cgroupparent"):
        raise Refused("choosing the build's cgroup parent (--cgroup-parent)")
    if q.get("isolation"):
        raise Refused("choosing the build's isolation (--isolation)", "there is one isolation here")
    if q.get("securityopt"):
        raise Refused("security options on a build (--security-opt)")


def query_commit(q: dict) -> None:
    # dockerd (20.10 and 26.1 alike) walks the container's changed files in the engine's own mount
    # namespace and follows a link swapped in meanwhile. Pausing the container is not
    # enough: the fourth and fifth red teams changed its files from another container
    # (through /proc/1/root, and through a directory handle passed over a unix socket,
    # which outlives even a stop) and found the engine's TLS key in the image.
    raise Refused("making an image from a container (docker commit)",
                  "the engine would copy files another container can redirect to the engine's own "
                  "files. Build the image from a Dockerfile (docker build), or "
                  "docker export NAME | docker import - IMAGE")


def query_images_create(q: dict) -> None:
    source = q.get("fromSrc")
    if source is not None and source != "-":
        raise Refused("importing an image from a URL (docker import URL)",
                      "the engine would fetch an address you choose; import a file instead")


