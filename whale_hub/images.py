"""Build the project's images on an engine that can pull nothing.

`images/<name>/` are the site's images (the engine, later the single-user server and
the hub); `lessons/images/<name>/` are the images lessons use. A lesson image
directory may hold an executable `prepare` that puts generated files (a static
binary, say) into the build context before `docker build`.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

SOURCE = Path(os.environ.get("WHALE_SOURCE", Path(__file__).resolve().parent.parent))
SITE_IMAGES = SOURCE / "images"
LESSON_IMAGES = SOURCE / "lessons" / "images"
BASE_IMAGE = "debian:bookworm-slim"
# Site images in build order: tag -> directory under images/.
SITE = {"howtowhale/engine": "engine"}


def _docker(args: list[str], env: dict[str, str] | None = None, quiet: bool = True) -> None:
    out = subprocess.DEVNULL if quiet else None
    subprocess.run(["docker", *args], check=True, env=env, stdout=out)


def image_exists(tag: str, env: dict[str, str] | None = None) -> bool:
    return subprocess.run(["docker", "image", "inspect", tag], env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0


def ensure_base() -> None:
    """The base image: pulled where a registry answers, else built with debootstrap."""
    subprocess.run([str(SITE_IMAGES / "base" / "build.sh"), BASE_IMAGE], check=True)


def ensure_site_images(force: bool = False, extra_ca: str | None = None) -> list[str]:
    """Build every site image that is missing (all of them with force); return what was built."""
    built = []
    for tag, directory in SITE.items():
        if not force and image_exists(tag):
            continue
        ensure_base()
        args = ["build", "-q", "-t", tag]
        if extra_ca:
            args += ["--build-arg", f"EXTRA_CA={extra_ca}"]
        _docker([*args, str(SITE_IMAGES / directory)])
        built.append(tag)
    return built


def lesson_image_names() -> list[str]:
    return sorted(p.name for p in LESSON_IMAGES.iterdir() if (p / "Dockerfile").is_file())


def build_lesson_image(name: str, env: dict[str, str] | None = None,
                       tag: str | None = None) -> str:
    """Build lessons/images/<name> on the engine that `env` points docker at."""
    src = LESSON_IMAGES / name
    tag = tag or name
    with tempfile.TemporaryDirectory(prefix=f"whale-{name}-") as ctx:
        for item in src.iterdir():
            if item.name != "prepare":
                (shutil.copytree if item.is_dir() else shutil.copy2)(item, Path(ctx) / item.name)
        prepare = src / "prepare"
        if prepare.exists():
            subprocess.run([str(prepare), ctx], check=True)
        _docker(["build", "-q", "-t", tag, ctx],
                env=dict(env or os.environ, DOCKER_BUILDKIT="0"))
    return tag


def build_lesson_images(env: dict[str, str] | None = None,
                        names: list[str] | None = None) -> list[str]:
    """Build the lesson images (all by default) on one engine."""
    return [build_lesson_image(n, env) for n in (names or lesson_image_names())]
