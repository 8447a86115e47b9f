"""The site's images, built here from a locally made base, and what is inside them."""
from __future__ import annotations

import subprocess

import pytest

from whale_site import images


def run_in(image: str, *cmd: str, entrypoint: str | None = None) -> str:
    args = ["docker", "run", "--rm"]
    if entrypoint is not None:
        args += ["--entrypoint", entrypoint]
    out = subprocess.run([*args, image, *cmd], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.fixture(scope="module")
def site_images(host_docker):
    images.ensure_site_images()
    return images.SITE


def test_singleuser_image_is_the_learners_server(site_images):
    image = "howtowhale/singleuser"
    assert run_in(image, "-u", entrypoint="id").strip() == "1000"  # not root
    assert "Docker version" in run_in(image, "--version", entrypoint="docker")
    specs = run_in(image, "kernelspec", "list", entrypoint="jupyter")
    assert "docker" in specs.split()
    extensions = run_in(image, "server", "extension", "list", entrypoint="jupyter") + \
        run_in(image, "-c", "jupyter server extension list 2>&1", entrypoint="sh")
    assert "whale_extension" in extensions
    assert "enabled" in extensions
    labext = run_in(image, "-c", "jupyter labextension list 2>&1", entrypoint="sh")
    assert "@howtowhale/whale-indicator" in labext
    assert "jupyterhub-singleuser" in run_in(image, "-c", "command -v jupyterhub-singleuser",
                                              entrypoint="sh")
    lessons = run_in(image, "/opt/whale/lessons", entrypoint="ls").split()
    assert "01-first-container.ipynb" in lessons
    # A new learner's server starts with the lessons in their work directory, without
    # the outputs CI compares against (the learner makes those).
    counted = run_in(image, "python3", "-c", (
        "import glob, nbformat; nbs = [nbformat.read(p, 4) for p in "
        "glob.glob('/home/learner/work/lessons/*.ipynb')]; "
        "print(len(nbs), sum(len(c.get('outputs', [])) for nb in nbs for c in nb.cells))"))
    shipped = len(list((images.SOURCE / "lessons").glob("*.ipynb")))
    assert counted.split() == [str(shipped), "0"]


def test_hub_image_runs_the_site(site_images):
    image = "howtowhale/hub"
    assert run_in(image, "jupyterhub", "--version").strip()
    assert run_in(image, "configurable-http-proxy", "--version").strip()
    out = run_in(image, "python3", "-c",
                 "import whale_hub.spawner, dockerspawner, firstuseauthenticator, "
                 "jupyterhub_idle_culler; from importlib.metadata import entry_points; "
                 "print(entry_points(group='jupyterhub.spawners')['whale'].value)")
    assert out.strip() == "whale_hub.spawner:WhaleSpawner"


def test_built_from_names_every_site_image_a_dockerfile_builds_on():
    """BUILT_FROM (what `ensure_site_images(only=...)` builds first) says exactly which
    site images each Dockerfile uses (FROM, or COPY --from), and SITE builds them first:
    a Dockerfile that starts using another of ours without saying so here fails this."""
    import re

    order, found = list(images.SITE), 0
    for tag, directory in images.SITE.items():
        text = (images.SITE_IMAGES / directory / "Dockerfile").read_text()
        used = set(re.findall(r"(?:^FROM\s+|--from=)(howtowhale/[\w.-]+)", text, re.MULTILINE))
        assert used == set(images.BUILT_FROM.get(tag, ())), (tag, used)
        assert all(order.index(dep) < order.index(tag) for dep in used), (tag, used)
        found += len(used)
    assert found  # the single-user image copies the learner's CLI from howtowhale/cli
