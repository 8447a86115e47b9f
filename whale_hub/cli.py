"""The `whale` command: run the site on this machine, and the tools around it.

    whale up        start everything on this machine and serve http://localhost:8000
    whale down      stop it (learners' work and engines' data are kept)
    whale images    build the images that are missing (--force: all)
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from whale_kernel.credentials import default_store

from . import images
from .sandbox import SandboxEngine

STATE = Path(os.environ.get("WHALE_STATE", Path.home() / ".whale"))
LOCAL_ENGINE = "whale-local-engine"


def _local_engine() -> SandboxEngine:
    return SandboxEngine(LOCAL_ENGINE, STATE / "local-engine",
                         labels={"org.howtowhale.owner": "local"})


def cmd_up(args) -> int:
    images.ensure_site_images()
    engine = _local_engine()
    print("whale: starting your Docker engine (TLS only) ...", flush=True)
    bundle = engine.start()
    store = default_store()
    store.install_directory(engine.bundle_dir)
    env = dict(os.environ, **bundle.env)
    print("whale: building lesson images on it ...", flush=True)
    images.build_lesson_images(env)
    root = images.SOURCE / "lessons"
    print(f"whale: serving the lessons at http://localhost:{args.port}", flush=True)
    argv = ["jupyter", "notebook", "--no-browser", f"--port={args.port}",
            f"--ServerApp.ip={args.ip}", f"--ServerApp.root_dir={root}",
            "--ServerApp.port_retries=0"]
    if os.geteuid() == 0:
        argv.append("--allow-root")
    os.environ["WHALE_CREDENTIALS"] = str(store.root)
    os.execvp(argv[0], argv)
    return 0  # pragma: no cover - exec does not return


def cmd_down(args) -> int:
    engine = _local_engine()
    try:
        engine.container = engine.host.containers.get(LOCAL_ENGINE)
    except Exception:
        print("whale: nothing is running")
        return 0
    engine.stop()
    print("whale: stopped (notebooks and engine data are kept)")
    return 0


def cmd_images(args) -> int:
    built = images.ensure_site_images(force=args.force, extra_ca=args.extra_ca)
    print("whale: built " + (", ".join(built) if built else "nothing (all present)"))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="whale", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the site on this machine")
    up.add_argument("--port", type=int, default=8000)
    up.add_argument("--ip", default="127.0.0.1")
    up.set_defaults(func=cmd_up)
    sub.add_parser("down", help="stop the site, keeping all work").set_defaults(func=cmd_down)
    im = sub.add_parser("images", help="build missing images")
    im.add_argument("--force", action="store_true", help="rebuild all")
    im.add_argument("--extra-ca", help="PEM file of an extra CA for builds behind a TLS proxy")
    im.set_defaults(func=cmd_images)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
