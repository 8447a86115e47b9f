"""Install the "docker" kernelspec: python -m whale_kernel.install [--user|--sys-prefix|--prefix P].

`pip install .` already ships the kernelspec as package data; this command installs
it explicitly (for example into a user's own Jupyter data directory).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from importlib import resources

from jupyter_client.kernelspec import KernelSpecManager

KERNEL_NAME = "docker"


def install(user: bool = False, prefix: str | None = None) -> str:
    """Install the kernelspec and return the directory it went to."""
    source = resources.files("whale_kernel") / "kernelspec"
    with tempfile.TemporaryDirectory() as td:
        # The directory is copied with its mode into a shared Jupyter prefix: everyone
        # reads the kernelspec there, only its owner writes it.
        os.chmod(td, 0o755)  # noqa: S103
        for name in ("kernel.json", "logo-64x64.png"):
            with resources.as_file(source / name) as path:
                shutil.copy(path, os.path.join(td, name))
        spec_path = os.path.join(td, "kernel.json")
        with open(spec_path) as f:
            spec = json.load(f)
        spec["argv"][0] = sys.executable  # the Python that has this package
        with open(spec_path, "w") as f:
            json.dump(spec, f, indent=2)
        return KernelSpecManager().install_kernel_spec(td, KERNEL_NAME, user=user, prefix=prefix)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Install the Docker kernelspec")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--user", action="store_true", help="into your own Jupyter data directory")
    where.add_argument("--sys-prefix", action="store_true",
                       help="into sys.prefix (a virtualenv or conda environment)")
    where.add_argument("--prefix", help="into this prefix")
    args = parser.parse_args(argv)
    prefix = sys.prefix if args.sys_prefix else args.prefix
    user = args.user or (prefix is None and os.geteuid() != 0)
    print(f"Installed kernelspec {KERNEL_NAME} in {install(user=user, prefix=prefix)}")


if __name__ == "__main__":
    main()
