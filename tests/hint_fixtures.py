"""Helpers for the challenge tests: a learner's shell on a fresh engine with the lesson
images, the hints `whale-check NAME --hint N` prints, and the assertion every broken
state of a challenge must meet. A lesson's challenge tests (tests/test_hints*.py) build
on these."""
from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import nbformat
from engine_fixtures import start_engine

from whale_core.bundle import CredentialBundle
from whale_lessons import check
from whale_lessons import runner as lessons

Shell = Callable[..., subprocess.CompletedProcess]


def lesson_cells(exercise: str, tag: str) -> list[str]:
    """The sources of the code cells tagged `tag` in the lesson of exercise `exercise`."""
    path = lessons.find_lessons([str(check.CHECKS[exercise].lesson)])[0]
    return [c.source for c in nbformat.read(path, 4).cells
            if c.cell_type == "code" and tag in lessons.cell_tags(c)]


def learner_shell(name: str, tmp_path_factory, host_docker, mirror_url: str,
                  images: tuple[str, ...] = ("busybox", "webserver")):
    """(sh, engine): sh(script, timeout=120) runs bash as a learner's shell does, on a
    fresh TLS engine that pulls through the lesson mirror, in a folder of its own, with
    the learner's Docker CLI and `images` pulled. The caller removes the engine."""
    engine = start_engine(name, tmp_path_factory, host_docker, registry_mirror=mirror_url)
    work: Path = tmp_path_factory.mktemp(f"{name}-learner")
    env = lessons.learner_env(work, dict(os.environ,
                                         **CredentialBundle.load(engine.bundle_dir).env))
    env.pop("REQUESTS_CA_BUNDLE", None)  # see whale_lessons.runner.lesson_engine
    env.pop("CURL_CA_BUNDLE", None)

    def sh(script: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", "-c", script], env=env, cwd=work, timeout=timeout,
                              stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if images:
        pulled = sh(" && ".join(f"docker pull -q {image}" for image in images))
        assert pulled.returncode == 0, pulled.stderr
    return sh, engine


def hints_of(sh: Shell, name: str) -> list[str]:
    """Hints 1 to 3 that `whale-check NAME --hint N` prints (the text after `Hint N of 3:`)."""
    found = []
    for level in (1, 2, 3):
        out = sh(f"whale-check {name} --hint {level}")
        assert out.returncode == 1, out.stdout + out.stderr
        line = next(ln for ln in out.stdout.splitlines() if f"Hint {level} of 3:" in ln)
        found.append(line.split(f"Hint {level} of 3:", 1)[1].strip())
    return found


def assert_hints_fit(sh: Shell, name: str, reason: str, phrases: tuple[str, str, str],
                     solution: str) -> list[str]:
    """On the state `sh`'s engine is in now: `whale-check NAME` says `reason` and how to
    ask for a hint; hint N holds `phrases[N-1]`; the three differ; and hint 3 holds no
    `docker …` line of `solution` (nearly the answer, never the command to copy).
    Returns the hints."""
    plain = sh(f"whale-check {name}")
    assert plain.returncode == 1, plain.stdout + plain.stderr
    assert plain.stdout == (f"✘ Not yet: {reason}.\n"
                            f"  Hint: run `whale-check {name} --hint 1` (then 2 and 3 say more).\n")
    hints = hints_of(sh, name)
    for level, (hint, phrase) in enumerate(zip(hints, phrases, strict=True), 1):
        assert phrase in hint, (level, hint)
    assert len(set(hints)) == 3, hints  # each level says something else
    commands = [line.strip() for line in solution.splitlines()
                if line.strip().startswith("docker ")]
    assert not [c for c in commands if c in hints[2]], hints[2]
    return hints
