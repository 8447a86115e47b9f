"""Enable the extension and its labextension in a Jupyter prefix.

``pip install .`` does this through data_files; an editable install (``pip install
-e .``, what the repository's bootstrap uses) does not install data_files, so this
puts the same two things in place: the server config file that enables
``whale_extension``, and a link to the prebuilt labextension (the status indicator).

    python -m whale_extension.install [--sys-prefix | --user | --prefix DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

from jupyter_core.paths import jupyter_config_dir, jupyter_data_dir

from . import LABEXTENSION_NAME

#: The server config that enables the extension (also jupyter-config/…/whale_extension.json).
SERVER_CONFIG = {"ServerApp": {"jpserver_extensions": {"whale_extension": True}}}
CONFIG_FILE = "whale_extension.json"
LABEXTENSION_DIR = Path(__file__).resolve().parent / "labextension"


def install(prefix: str | None = None, user: bool = False) -> dict[str, Path]:
    """Write the config file and link the labextension; return where they went."""
    if user:
        config_root, data_root = Path(jupyter_config_dir()), Path(jupyter_data_dir())
    else:
        base = Path(prefix or sys.prefix)
        config_root, data_root = base / "etc" / "jupyter", base / "share" / "jupyter"
    config = config_root / "jupyter_server_config.d" / CONFIG_FILE
    config.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(SERVER_CONFIG, indent=2) + "\n"
    if not config.exists() or config.read_text() != text:
        config.write_text(text)
    done = {"config": config}
    if (LABEXTENSION_DIR / "package.json").exists():
        link = data_root / "labextensions" / LABEXTENSION_NAME
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() and Path(os.readlink(link)) == LABEXTENSION_DIR:
            pass
        else:
            if link.is_symlink() or link.is_file():
                link.unlink()
            elif link.exists():
                shutil.rmtree(link)
            link.symlink_to(LABEXTENSION_DIR, target_is_directory=True)
        done["labextension"] = link
    return done


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--sys-prefix", action="store_true", help="into sys.prefix (default)")
    where.add_argument("--user", action="store_true", help="into the user's Jupyter dirs")
    where.add_argument("--prefix", help="into this prefix")
    args = parser.parse_args(argv)
    done = install(prefix=args.prefix, user=args.user)
    for what, path in done.items():
        print(f"whale_extension: {what} -> {path}")
    if "labextension" not in done:
        print("whale_extension: the labextension is not built (cd labextension && "
              "npm install && npm run build); the status indicator is missing",
              file=sys.stderr)


if __name__ == "__main__":
    main()
