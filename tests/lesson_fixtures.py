"""Fixtures for the lesson tests: engines that use the session's lesson mirror, and the
`whale` command with a state directory of its own."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from engine_fixtures import start_engine

from whale_hub.engine import free_port
from whale_site.registry import RegistryMirror


@pytest.fixture
def mirrored_engine(lesson_mirror, host_docker, tmp_path_factory):
    """A fresh TLS engine (no images) whose registry mirror is `lesson_mirror`."""
    engine = start_engine("mirrored", tmp_path_factory, host_docker,
                          registry_mirror=lesson_mirror.url)
    yield engine
    engine.remove()


@pytest.fixture(scope="session")
def whale_cli(engine_image, tmp_path_factory):
    """Run the `whale` command with a state directory and mirror port of this session's own.

    Returns run(*args) -> CompletedProcess (stdout and stderr together, as text).
    """
    state = tmp_path_factory.mktemp("whale-state")
    env = dict(os.environ, WHALE_STATE=str(state), WHALE_REGISTRY_PORT=str(free_port()))

    def run(*args, timeout=900):
        return subprocess.run([sys.executable, "-m", "whale_site.cli", *args], env=env,
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=timeout)
    yield run
    RegistryMirror(state / "registry", address="127.0.0.1").stop()

