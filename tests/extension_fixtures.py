"""Helpers for the server extension's tests (conftest.py belongs to the kernel tests)."""
from __future__ import annotations

import contextlib
import socket
from pathlib import Path

from jupyter_server.utils import url_path_join
from traitlets.config import Config

from whale_core.bundle import BUNDLE_FILES


def bundle_files(directory: Path | str) -> dict[str, bytes]:
    """The four files of a Carina-layout bundle directory."""
    return {name: (Path(directory) / name).read_bytes() for name in BUNDLE_FILES}


def with_host(files: dict[str, bytes], docker_host: str) -> dict[str, bytes]:
    """The same certificates, pointed at another address."""
    return dict(files, **{"docker.env": f"DOCKER_HOST={docker_host}\n"
                                        "DOCKER_TLS_VERIFY=1\n".encode()})


def server_config(store_root, **whale) -> Config:
    """jupyter_server config enabling the extension on the given credentials store."""
    return Config({
        "ServerApp": {"jpserver_extensions": {"whale_extension": True}},
        "WhaleExtension": {"credentials_dir": str(store_root), **whale},
    })


@contextlib.contextmanager
def silent_listener():
    """A TCP port on 127.0.0.1 that accepts connections and never says a word: an
    engine that hangs (a blackholed address, without leaving this machine)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)  # the kernel completes handshakes; nobody ever reads
        yield listener.getsockname()[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def engine_ip(host_docker, engine) -> str:
    """The engine container's address on the operator's bridge: where the ports it
    publishes are reachable from this machine."""
    attrs = host_docker.api.inspect_container(engine.name)
    net = attrs["NetworkSettings"]
    return net.get("IPAddress") or next(iter(net["Networks"].values()))["IPAddress"]


def url(base_url: str, *parts: str) -> str:
    return url_path_join(base_url, *parts)
