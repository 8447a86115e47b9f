"""The `whale` command: run the site on this machine, and the tools around it.

    whale up        start the site on this machine: http://localhost:8000 (JupyterHub,
                    a notebook server and a Docker engine of their own per learner)
    whale down      stop it (learners' work and engines' data are kept)
    whale notebook  just one notebook server with your own engine, no hub (authors)
    whale images    build the images that are missing (--force: all)
    whale lesson    write and test lessons: new "Title", test [NAME...], record NAME...
    whale cluster   a practice Swarm of N machines on this one: up N, down
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys

from whale_core.layout import OWNER_LABEL, local_engine_dir
from whale_core.store import default_store
from whale_hub.engine import SandboxEngine
from whale_lessons import runner as lessons

from . import deploy, images, practice, registry, site

LOCAL_ENGINE = "whale-local-engine"


def _local_engine(registry_mirror: str | None = None) -> SandboxEngine:
    return SandboxEngine(LOCAL_ENGINE, local_engine_dir(), registry_mirror=registry_mirror,
                         labels={OWNER_LABEL: "local"})


def cmd_up(args) -> int:
    return site.up(port=args.port, bind_ip=args.ip, provider=args.provider,
                   use_firewall=not args.no_firewall, engine_nodes=args.engine_nodes,
                   max_nodes=args.max_nodes, engine_pool=args.engine_pool)


def cmd_notebook(args) -> int:
    images.ensure_site_images(only=["howtowhale/engine"])
    print("whale: starting the lesson registry mirror ...", flush=True)
    mirror = registry.default_mirror()
    engine = _local_engine(registry_mirror=mirror.url)
    print("whale: starting your Docker engine (TLS only) ...", flush=True)
    bundle = engine.ensure()
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
    os.execvp(argv[0], argv)  # noqa: S606 - a fixed argument list, jupyter found on PATH (like S603/S607)
    return 0  # pragma: no cover - exec does not return


def cmd_down(args) -> int:
    engine = _local_engine()
    with contextlib.suppress(Exception):  # no local engine (or no Docker): nothing to stop
        engine.container = engine.host.containers.get(LOCAL_ENGINE)
        engine.stop()
    return site.down()


def cmd_images(args) -> int:
    built = images.ensure_site_images(force=args.force, extra_ca=args.extra_ca)
    print("whale: built " + (", ".join(built) if built else "nothing (all present)"))
    return 0


def cmd_cluster(args) -> int:
    if args.action == "down":
        removed = practice.down()
        print("whale: removed " + (", ".join(removed) if removed else "nothing (no practice Swarm)"))
        return 0
    images.ensure_site_images(only=["howtowhale/engine"])
    mirror = registry.default_mirror()  # the nodes pull lesson images through it
    practice.up(args.nodes, registry_mirror=mirror.url)
    return 0


def _engines(text: str) -> int:
    """A number of engines: 0 or more."""
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of engines (0 or more)")
    return int(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="whale", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the site on this machine")
    up.add_argument("--port", type=int, default=8000)
    up.add_argument("--ip", default="127.0.0.1",
                    help="address to serve on (0.0.0.0 for a classroom on your network)")
    up.add_argument("--engine-nodes", type=int, default=1, choices=range(1, 6), metavar="N",
                    help="nodes of a learner's hosted engine unless they choose otherwise: "
                         "1 (one engine, the default) to 5 (a Swarm of 5 engines)")
    up.add_argument("--max-nodes", type=int, default=3, choices=range(1, 6), metavar="N",
                    help="the most nodes a learner may choose on the spawn form (3: what "
                         "the Swarm lessons need; each node is another engine's memory)")
    up.add_argument("--engine-pool", type=_engines, metavar="N",
                    help="engines kept started and waiting for learners' first starts (the "
                         "warm pool; default 2, or WHALE_ENGINE_POOL): before a class, its size")
    up.add_argument("--provider", default="choice", choices=["sandbox", "byoc", "choice"],
                    help="learners' engines: hosted here, their own, or their choice")
    up.add_argument("--no-firewall", action="store_true",
                    help="do not install the host firewall for learners' networks (it needs "
                         "root); learners' containers then reach this machine's services")
    up.set_defaults(func=cmd_up)
    nb = sub.add_parser("notebook", help="one notebook server with your own engine, no hub")
    nb.add_argument("--port", type=int, default=8888)
    nb.add_argument("--ip", default="127.0.0.1")
    nb.set_defaults(func=cmd_notebook)
    sub.add_parser("down", help="stop the site, keeping all work").set_defaults(func=cmd_down)
    im = sub.add_parser("images", help="build missing images")
    im.add_argument("--force", action="store_true", help="rebuild all")
    im.add_argument("--extra-ca", help="PEM file of an extra CA for builds behind a TLS proxy")
    im.set_defaults(func=cmd_images)
    cl = sub.add_parser("cluster", help="a practice Swarm of N machines on this one")
    cl.add_argument("action", choices=["up", "down"])
    cl.add_argument("nodes", nargs="?", type=int, default=3, choices=range(1, 6), metavar="N",
                    help="how many nodes (1 to 5; 3 unless said): node1 the manager")
    cl.set_defaults(func=cmd_cluster)
    dp = sub.add_parser("deploy", help="the site as a Docker stack on the current context's Swarm")
    dp.add_argument("--down", action="store_true",
                    help="remove the stack and learners' servers; keep their work and the database")
    dp.add_argument("--context", help="the Docker context of a manager (default: the current one)")
    dp.add_argument("--stack", default=deploy.STACK, help="the stack's name (whale)")
    dp.add_argument("--port", type=int, default=8000, help="the site's port on the site node")
    dp.set_defaults(func=deploy.main_deploy)
    lessons.add_arguments(sub)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
