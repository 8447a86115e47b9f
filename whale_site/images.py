"""Build the project's images on an engine that can pull nothing.

`images/<name>/` are the site's images (the engine, later the single-user server and
the hub); `lessons/images/<name>/` are the images lessons use. A lesson image
directory may hold an executable `prepare` that puts generated files (a static
binary, say) into the build context before `docker build`.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import nbformat
from packaging.requirements import Requirement

SOURCE = Path(os.environ.get("WHALE_SOURCE", Path(__file__).resolve().parent.parent))
SITE_IMAGES = SOURCE / "images"
LESSON_IMAGES = SOURCE / "lessons" / "images"
BASE_IMAGE = "debian:bookworm-slim"
# Debian 13: today's Docker (Engine 26, Compose v2, buildx) for the engine and the CLI.
TRIXIE_IMAGE = "debian:trixie-slim"
# Site images in build order: tag -> directory under images/.
SITE = {"howtowhale/engine": "engine", "howtowhale/cli": "cli",
        "howtowhale/singleuser": "singleuser", "howtowhale/hub": "hub",
        "howtowhale/postgres": "postgres"}
# Built only when asked for by name (`whale deploy` and its tests): `whale up` needs none.
ON_DEMAND = {"howtowhale/postgres"}
# Images built FROM (COPY --from) others of these: those come first (SITE's order).
BUILT_FROM = {"howtowhale/singleuser": ("howtowhale/cli",)}
LEARNER_CLI_IMAGE = "howtowhale/cli"
LEARNER_CLI_CACHE = Path(os.environ.get("WHALE_CLI_CACHE",
                                        Path.home() / ".cache" / "whale" / "learner-cli"))
# Images that carry this package: rebuilt when its sources change.
_CONTEXTS = {"singleuser": "_singleuser_context", "hub": "_hub_context"}
WHEELHOUSE = Path(os.environ.get("WHALE_WHEELHOUSE",
                                 Path.home() / ".cache" / "whale" / "wheelhouse"))
# What the single-user server needs beside this package's own requirements.
SINGLEUSER_EXTRA = ["notebook"]
# The Python of the single-user image (Debian bookworm's python3) and its platforms.
IMAGE_PYTHON = "3.11.2"
IMAGE_PLATFORMS = ["manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux_2_28_x86_64",
                   "manylinux_2_34_x86_64", "any"]


def _hub_requirement() -> str:
    """The single-user side of JupyterHub, at the hub's own version when it is installed."""
    try:
        from importlib.metadata import version
        return f"jupyterhub=={version('jupyterhub')}"
    except Exception:
        return "jupyterhub"


def _docker(args: list[str], env: dict[str, str] | None = None, quiet: bool = True) -> None:
    out = subprocess.DEVNULL if quiet else None
    subprocess.run(["docker", *args], check=True, env=env, stdout=out)


def image_exists(tag: str, env: dict[str, str] | None = None) -> bool:
    return subprocess.run(["docker", "image", "inspect", tag], env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0


def ensure_base() -> None:
    """The base images: pulled where a registry answers, else built with debootstrap."""
    for image in (BASE_IMAGE, TRIXIE_IMAGE):
        subprocess.run([str(SITE_IMAGES / "base" / "build.sh"), image], check=True)


def _source_digest(roots: list[Path] | None = None) -> str:
    """A digest of everything that goes into the single-user image (or of `roots`)."""
    h = hashlib.sha256()
    if roots is None:
        roots = [SOURCE / "pyproject.toml", SOURCE / "install.json", SITE_IMAGES / "singleuser",
                 SITE_IMAGES / "hub", SITE_IMAGES / "cli",
                 SOURCE / "lessons"]
        roots += [SOURCE / p for p in ("whale_core", "whale_kernel", "whale_extension", "whale_hub",
                                        "whale_progress",
                                        "whale_site", "whale_lessons",
                                        "labextension/src", "labextension/style",
                                        "labextension/package.json")]
    for root in roots:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for f in files:
            if "__pycache__" in f.parts or "node_modules" in f.parts:
                continue
            h.update(str(f.relative_to(SOURCE)).encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


def _image_label(tag: str, label: str) -> str | None:
    out = subprocess.run(["docker", "image", "inspect", "-f",
                          "{{index .Config.Labels \"" + label + "\"}}", tag],
                         capture_output=True, text=True)
    return out.stdout.strip() if out.returncode == 0 else None


def _python_context(ctx: Path, image: str, extras: tuple[str, ...] = ()) -> None:
    """Dockerfile and files of images/<image>, this package as a wheel, and a wheelhouse
    of its dependencies (with the given extras) for the image's Python."""
    for item in (SITE_IMAGES / image).iterdir():
        shutil.copy2(item, ctx / item.name)
    package = ctx / "package"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(package), str(SOURCE)], check=True)
    wheel = next(package.glob("howtowhale-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        requires = []
        for line in z.read(meta).decode().splitlines():
            if not line.startswith("Requires-Dist:"):
                continue
            req = Requirement(line.split(":", 1)[1].strip())
            if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in extras):
                req.marker = None
                requires.append(str(req))
    requirements = sorted(set(requires + SINGLEUSER_EXTRA + [_hub_requirement()]))
    WHEELHOUSE.mkdir(parents=True, exist_ok=True)
    with open(WHEELHOUSE.parent / "wheelhouse.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # builds running side by side share the wheelhouse
        (ctx / "requirements.txt").write_text("\n".join(requirements) + "\n")
        # Wheels are fetched on the host once and reused, so the image build needs no
        # PyPI; they are picked for the image's Python (Debian's), not the host's.
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:",
                        "--python-version", IMAGE_PYTHON, "--implementation", "cp",
                        "--abi", "cp311", "--abi", "abi3", "--abi", "none",
                        *[a for p in IMAGE_PLATFORMS for a in ("--platform", p)],
                        "--find-links", str(WHEELHOUSE), "-d", str(WHEELHOUSE),
                        "-r", str(ctx / "requirements.txt")], check=True)
        shutil.copytree(WHEELHOUSE, ctx / "wheelhouse", ignore=shutil.ignore_patterns("*.txt"))
        shutil.copy2(ctx / "requirements.txt", ctx / "wheelhouse" / "requirements.txt")


def _singleuser_context(ctx: Path) -> None:
    _python_context(ctx, "singleuser")
    lessons = ctx / "lessons"
    lessons.mkdir()
    for f in (SOURCE / "lessons").glob("*"):
        if f.suffix == ".ipynb":
            # Lessons are stored with the outputs CI compares against; a learner
            # starts from clean notebooks and makes the outputs themselves.
            nb = nbformat.read(f, as_version=4)
            for cell in nb.cells:
                if cell.cell_type == "code":
                    cell.outputs, cell.execution_count = [], None
            nbformat.write(nb, lessons / f.name)
        elif f.suffix == ".md":
            shutil.copy2(f, lessons / f.name)


def _hub_context(ctx: Path) -> None:
    _python_context(ctx, "hub", extras=("hub",))


def ensure_site_images(force: bool = False, extra_ca: str | None = None,
                       only: list[str] | None = None) -> list[str]:
    """Build every site image that is missing or stale (all of them with force).

    Returns the tags built. The single-user image carries this package, so it is
    rebuilt whenever the package's sources or the lessons change.
    """
    built = []
    if only is not None:
        only = {*only, *(dep for tag in only for dep in BUILT_FROM.get(tag, ()))}
    for tag, directory in SITE.items():
        if (tag not in only) if only is not None else (tag in ON_DEMAND):
            continue
        # Rebuilt when what goes into it changed.
        digest = (_source_digest() if directory in _CONTEXTS
                  else _source_digest([SITE_IMAGES / directory]))
        if not force and image_exists(tag) and \
                _image_label(tag, "org.howtowhale.source") == digest:
            continue
        ensure_base()
        previous = _image_id(tag)
        args = ["build", "-q", "-t", tag]
        if extra_ca:
            args += ["--build-arg", f"EXTRA_CA={Path(extra_ca).read_text()}"]
        args += ["--label", f"org.howtowhale.source={digest}"]
        if directory in _CONTEXTS:
            with tempfile.TemporaryDirectory(prefix=f"whale-{directory}-") as ctx:
                globals()[_CONTEXTS[directory]](Path(ctx))
                _docker([*args, ctx])
        else:
            _docker([*args, str(SITE_IMAGES / directory)])
        _remove_if_dangling(previous)
        built.append(tag)
    return built


def learner_cli() -> Path:
    """The learner's Docker CLI (images/cli), copied out of its image once per build: a
    directory with bin/docker and cli-plugins/ (buildx, compose)."""
    ensure_site_images(only=[LEARNER_CLI_IMAGE])
    image_id = _image_id(LEARNER_CLI_IMAGE)
    if image_id is None:
        raise RuntimeError(f"no {LEARNER_CLI_IMAGE} image")
    target = LEARNER_CLI_CACHE / image_id.split(":")[-1][:16]
    if (target / "bin" / "docker").is_file():
        return target
    LEARNER_CLI_CACHE.mkdir(parents=True, exist_ok=True)
    made = Path(tempfile.mkdtemp(prefix=".new-", dir=LEARNER_CLI_CACHE))
    container = subprocess.run(["docker", "create", image_id, "true"], check=True,
                               capture_output=True, text=True).stdout.strip()
    try:
        _docker(["cp", f"{container}:/opt/docker-cli/.", str(made)])
    finally:
        subprocess.run(["docker", "rm", container], capture_output=True)
    try:
        os.rename(made, target)
    except OSError:  # another run put it there first
        shutil.rmtree(made, ignore_errors=True)
    for old in LEARNER_CLI_CACHE.iterdir():  # the CLIs of earlier builds (~130 MB each)
        if old != target and not old.name.startswith(".new-"):
            shutil.rmtree(old, ignore_errors=True)
    return target


def _image_id(tag: str) -> str | None:
    out = subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}}", tag],
                         capture_output=True, text=True)
    return out.stdout.strip() if out.returncode == 0 else None


def _remove_if_dangling(image_id: str | None) -> None:
    """Remove the image a rebuild replaced once no tag names it (a site that rebuilds
    on every change would otherwise pile up gigabytes). `docker image rm` refuses, and
    nothing happens, while a container still uses it."""
    if not image_id:
        return
    tags = subprocess.run(["docker", "image", "inspect", "-f", "{{len .RepoTags}}", image_id],
                          capture_output=True, text=True).stdout.strip()
    if tags == "0":
        subprocess.run(["docker", "image", "rm", image_id], capture_output=True)


def lesson_image_names() -> list[str]:
    return sorted(p.name for p in LESSON_IMAGES.iterdir() if (p / "Dockerfile").is_file())


def lesson_image_versions(name: str) -> list[str]:
    """The tags of lessons/images/<name> besides `latest`: one per `Dockerfile.<tag>`
    there (webserver:v2, the new version lesson 12's Swarm rolls out to every node)."""
    return sorted(p.name.split(".", 1)[1] for p in (LESSON_IMAGES / name).glob("Dockerfile.*"))


def build_lesson_image(name: str, env: dict[str, str] | None = None,
                       tag: str | None = None, version: str | None = None) -> str:
    """Build lessons/images/<name> (its `Dockerfile.<version>`, if a version is given) on
    the engine that `env` points docker at."""
    src = LESSON_IMAGES / name
    tag = tag or (f"{name}:{version}" if version else name)
    with tempfile.TemporaryDirectory(prefix=f"whale-{name}-") as ctx:
        for item in src.iterdir():
            if item.name != "prepare":
                (shutil.copytree if item.is_dir() else shutil.copy2)(item, Path(ctx) / item.name)
        prepare = src / "prepare"
        if prepare.exists():
            subprocess.run([str(prepare), ctx], check=True)
        dockerfile = ["-f", str(Path(ctx) / f"Dockerfile.{version}")] if version else []
        _docker(["build", "-q", "-t", tag, *dockerfile, ctx],
                env=dict(env or os.environ, DOCKER_BUILDKIT="0"))
    return tag


def build_lesson_images(env: dict[str, str] | None = None,
                        names: list[str] | None = None) -> list[str]:
    """Build the lesson images (all by default) on one engine."""
    return [build_lesson_image(n, env) for n in (names or lesson_image_names())]
