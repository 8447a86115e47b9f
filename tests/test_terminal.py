"""TerminalScreen and the engine-error explanations, on recorded terminal output.

These are pure functions: the byte sequences are what the Docker CLI writes to a
terminal (captured from `docker pull` / `docker build` on a TTY), fed in pieces as a
pty delivers them.
"""
from __future__ import annotations

import pytest

from whale_core.explain import REGISTRY_HINT, explain_engine_error, explain_output, limit_hint, registry_hint
from whale_kernel.terminal import TerminalScreen

# `docker pull` on a TTY: one line per layer, then in-place updates.
PULL = (
    "Using default tag: latest\r\n"
    "latest: Pulling from library/web\r\n"
    "\x1b[1A\x1b[2K\rlatest: Pulling from library/web\r\x1b[1B"
    "1a2b3c4d: Pulling fs layer \r\n"
    "5e6f7a8b: Pulling fs layer \r\n"
    "\x1b[2A\x1b[2K\r1a2b3c4d: Downloading [=====>      ]  1.2MB/2.4MB\r\x1b[2B"
    "\x1b[1A\x1b[2K\r5e6f7a8b: Downloading [==>         ]  100kB/900kB\r\x1b[1B"
    "\x1b[2A\x1b[2K\r1a2b3c4d: Pull complete \r\x1b[2B"
    "\x1b[1A\x1b[2K\r5e6f7a8b: Pull complete \r\x1b[1B"
    "Digest: sha256:0123abcd\r\n"
    "Status: Downloaded newer image for web:latest\r\n"
)
PULL_FINAL = ("Using default tag: latest\nlatest: Pulling from library/web\n"
              "1a2b3c4d: Pull complete \n5e6f7a8b: Pull complete \n"
              "Digest: sha256:0123abcd\nStatus: Downloaded newer image for web:latest\n")


def shown(chunks) -> tuple[str, int]:
    """Feed chunks like a kernel does; return what a notebook shows and the redraw count."""
    screen, out, redraws = TerminalScreen(), "", 0
    for chunk in chunks:
        screen.feed(chunk.replace("\r\n", "\n"))
        redraw, text = screen.take()
        if redraw:
            out, redraws = text, redraws + 1
        else:
            out += text
    return out, redraws


@pytest.mark.parametrize("size", [1, 3, 7, 64, len(PULL)])
def test_docker_pull_progress_ends_clean_whatever_the_read_size(size):
    chunks = [PULL[i:i + size] for i in range(0, len(PULL), size)]
    out, _ = shown(chunks)
    assert out == PULL_FINAL


def test_plain_output_is_appended_never_redrawn():
    out, redraws = shown(["one\r\ntw", "o\r\n", "three"])
    assert (out, redraws) == ("one\ntwo\nthree", 0)


def test_carriage_return_progress_keeps_the_last_state():
    out, redraws = shown(["10%\r", "50%\r", "100%\r\n", "done\r\n"])
    assert out == "100%\ndone\n"
    assert redraws >= 1


def test_colours_are_kept_and_other_escapes_dropped():
    out, _ = shown(["\x1b]0;window title\x07\x1b[?25l\x1b[32mok\x1b[0m\r\n"])
    assert out == "\x1b[32mok\x1b[0m\n"


def test_clear_screen_starts_over():
    out, redraws = shown(["old stuff\r\n", "\x1b[H\x1b[2J", "new\r\n"])
    assert out == "new\n"
    assert redraws == 1


def test_long_output_is_trimmed_but_tail_kept():
    screen = TerminalScreen(max_lines=100)
    for i in range(1000):
        screen.feed(f"line {i}\n")
        screen.take()
    assert len(screen.lines) <= 101
    assert screen.lines[-2] == "line 999"


@pytest.mark.parametrize(("raw", "expect"), [
    ("Cannot connect to the Docker daemon at tcp://127.0.0.1:2376. Is the docker daemon running?",
     "whale: cannot use your Docker engine at 127.0.0.1:2376: the engine is not answering"),
    ('error during connect: Get "https://10.0.0.9:2376/v1.50/containers/json": tls: failed to '
     'verify certificate: x509: certificate signed by unknown authority',
     "whale: cannot use your Docker engine at 10.0.0.9:2376: the engine's certificate is not "
     "signed by the CA"),
    ('error during connect: Get "https://h:2376/v1.50/info": remote error: tls: bad certificate',
     "the engine refused your client certificate"),
    ('error during connect: Get "https://h:2376/v1.50/info": dial tcp: lookup h: no such host',
     "that host name does not resolve"),
    ("Failed to initialize: unable to resolve docker endpoint: open /c/ca.pem: no such file or "
     "directory", "no credentials are installed"),
])
def test_engine_errors_become_one_plain_line(raw, expect):
    better = explain_engine_error(raw)
    assert better is not None
    assert expect in better


def test_other_output_is_left_alone():
    text = "Error response from daemon: No such container: web\nsomething else\n"
    assert explain_engine_error("Error response from daemon: No such container: web") is None
    assert explain_output(text) == text


@pytest.mark.parametrize("output", [
    'Error response from daemon: Get "https://registry-1.docker.io/v2/": dial tcp: lookup '
    "registry-1.docker.io on 127.0.0.11:53: no such host",
    "Unable to find image 'rackerlabs/whoa:latest' locally\ndocker: Error response from daemon: "
    'Get "https://registry-1.docker.io/v2/": dial tcp: lookup registry-1.docker.io on '
    "127.0.0.11:53: no such host.",
    'Error response from daemon: Get "https://ghcr.io/v2/": dial tcp 140.82.0.1:443: i/o timeout',
])
def test_a_pull_from_an_unreachable_registry_says_why_in_one_line(output):
    """An image the class's mirror does not hold: one line says the engine pulls through
    the mirror and what to do, instead of a DNS error (issue 12)."""
    assert limit_hint(output).startswith("whale: your engine cannot reach that registry: it pulls "
                                         "through the class's mirror")


def test_an_ordinary_error_gets_no_registry_hint():
    assert limit_hint("Error response from daemon: No such container: web") is None
    assert limit_hint("curl: (6) Could not resolve host: example.org") is None


def test_the_registry_hint_names_the_image_and_what_the_mirror_holds():
    output = ("Unable to find image 'rackerlabs/whoa:latest' locally\ndocker: Error response from "
              'daemon: Get "https://registry-1.docker.io/v2/": dial tcp: lookup '
              "registry-1.docker.io on 127.0.0.11:53: no such host.")
    assert registry_hint(output, ["busybox", "hello-world", "webserver"]) == (
        "whale: rackerlabs/whoa:latest is not in the class's mirror, and your engine reaches no "
        "other registry: the mirror holds busybox, hello-world, webserver. For anything else, "
        "build it from a Dockerfile (FROM busybox).")
    # The mirror could not be asked: what it is for, as before.
    assert registry_hint("lookup registry-1.docker.io: no such host", None) == REGISTRY_HINT
