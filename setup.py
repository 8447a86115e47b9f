"""How to Whale: learn Docker in the browser, with nothing to install."""
import os

from setuptools import find_packages, setup

# The status indicator, prebuilt from labextension/ (npm run build; scripts/bootstrap.sh
# does it) into whale_extension/labextension/, is shipped as-is: pip needs no node.
LABEXTENSION = "whale_extension/labextension"
LABEXTENSION_DEST = "share/jupyter/labextensions/@howtowhale/whale-indicator"

with open("README.md") as readme:
    LONG_DESCRIPTION = readme.read()


def labextension_files():
    return [(os.path.join(LABEXTENSION_DEST, os.path.relpath(root, LABEXTENSION)).rstrip("/."),
             [os.path.join(root, name) for name in sorted(names)])
            for root, _dirs, names in sorted(os.walk(LABEXTENSION)) if names]


setup(
    name="howtowhale",
    version="0.1.0",
    description="A Docker classroom on Jupyter: a docker kernel wired to each learner's engine",
    long_description=LONG_DESCRIPTION,
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["whale_core", "whale_kernel", "whale_extension", "whale_hub",
                                    "whale_hub.*", "whale_site", "whale_lessons"]),
    package_data={"whale_kernel": ["kernelspec/*"], "whale_hub": ["templates/*.html"],
                  "whale_extension": ["rest-api.md"]},
    data_files=[
        ("share/jupyter/kernels/docker", ["whale_kernel/kernelspec/kernel.json",
                                          "whale_kernel/kernelspec/logo-64x64.png"]),
        ("etc/jupyter/jupyter_server_config.d",
         ["jupyter-config/jupyter_server_config.d/whale_extension.json"]),
        *labextension_files(),
    ],
    install_requires=[
        "bash_kernel==0.10.0",
        "jupyter_client>=8",
        "pyzmq>=25",
        "pexpect>=4.8",
        "cryptography>=41",
        "docker>=7",
        "notebook>=7",
        "jupyter_server>=2",
        "nbformat>=5",
    ],
    extras_require={
        # The hub side (whale up, the spawner); the single-user image does not need it.
        "hub": ["jupyterhub>=5", "dockerspawner>=13", "jupyterhub-firstuseauthenticator>=1.1",
                "jupyterhub-idle-culler>=1.2"],
        "test": ["pytest>=8", "wheel", "setuptools", "pytest-timeout",
                 "pytest-jupyter[server]>=0.7", "nbval>=0.11", "selenium>=4.10", "ruff>=0.17,<0.18",
                 "hypothesis>=6"],
    },
    entry_points={"jupyterhub.spawners": ["whale = whale_hub.spawner:WhaleSpawner"],
                  "howtowhale.engine_providers": [
                      "sandbox = whale_hub.providers.sandbox:SandboxProvider",
                      "byoc = whale_hub.providers.byoc:ByocProvider"],
                  "console_scripts": ["whale = whale_site.cli:main",
                                    "whale-check = whale_lessons.check:main"]},
    classifiers=["Framework :: Jupyter", "Programming Language :: Python :: 3"],
)
