"""A disk of fixed size for each sandbox engine's /var/lib/docker.

A learner's images, containers and volumes live in the engine's data root. As a plain
Docker volume it is as large as the operator's disk, so one learner could fill it for
everyone. Here it is an ext4 file system in a sparse file (it takes on the machine's
disk only what the learner really stores), loop-mounted on the operator's machine and
bound into the engine container. When it is full, the learner's engine says "no space
left on device" and nothing else is touched.

Layout, in the engine's state directory:
    disk.ext4     the file system image (sparse)
    disk/         where it is mounted (bound as /var/lib/docker)
    disk.engine   the name of the engine container it belongs to (to find orphans)
"""
from __future__ import annotations

import contextlib
import os
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

IMAGE_NAME = "disk.ext4"
MOUNT_NAME = "disk"
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)


class DiskError(RuntimeError):
    """The engine's disk could not be made or mounted (says why, for the operator)."""


def parse_size(text: str) -> int:
    """Bytes in '10g', '512M', '2GiB', '1073741824'."""
    m = _SIZE.match(str(text))
    if not m:
        raise ValueError(f"not a size: {text!r} (say, '10g')")
    factor = 1024 ** " kmgt".index((m.group(2) or " ").lower())
    return int(float(m.group(1)) * factor)


def _run(*args: str) -> None:
    done = subprocess.run(args, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise DiskError(f"{' '.join(args[:2])} failed: {(done.stderr or done.stdout).strip()}")


class EngineDisk:
    """The size-limited data root of one engine, under its state directory."""

    def __init__(self, state_dir: Path | str, size: str | int, engine: str = ""):
        self.state_dir = Path(state_dir)
        self.size = parse_size(size) if isinstance(size, str) else int(size)
        self.engine = engine

    @property
    def image(self) -> Path:
        return self.state_dir / IMAGE_NAME

    @property
    def mountpoint(self) -> Path:
        return self.state_dir / MOUNT_NAME

    def mounted(self) -> bool:
        return os.path.ismount(self.mountpoint)

    def ensure(self) -> Path:
        """Make the file system if there is none, mount it if it is not; return where."""
        if self.mounted():
            return self.mountpoint
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        if not self.image.exists():
            fresh = self.image.with_suffix(".new")
            with open(fresh, "wb") as f:
                f.truncate(self.size)
            # No reserved blocks (nobody but the engine writes here); lazy init keeps
            # mkfs to a few milliseconds whatever the size.
            _run("mkfs.ext4", "-q", "-F", "-m", "0", "-E",
                 "lazy_itable_init=1,lazy_journal_init=1", str(fresh))
            fresh.rename(self.image)
        if self.engine:
            (self.state_dir / "disk.engine").write_text(self.engine)
        try:
            _run("mount", "-o", "loop,noatime,nodev,nosuid", str(self.image), str(self.mountpoint))
        except DiskError as exc:
            raise DiskError(f"the engine's disk ({self.image}) could not be mounted: {exc}. "
                            "Loop devices are needed (or set engine_disk_limit to '').") from None
        return self.mountpoint

    def unmount(self) -> None:
        """Unmount (the data stays in the image); lazily if the engine still holds it."""
        if self.mounted():
            try:
                _run("umount", str(self.mountpoint))
            except DiskError:
                _run("umount", "-l", str(self.mountpoint))

    def remove(self) -> None:
        """Unmount and delete the file system with everything the learner stored on it."""
        self.unmount()
        self.image.unlink(missing_ok=True)
        self.image.with_suffix(".new").unlink(missing_ok=True)
        (self.state_dir / "disk.engine").unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self.mountpoint.rmdir()


def mounted_disks(under: Path | str) -> list[Path]:
    """Mount points of engine disks below `under` (from /proc/mounts)."""
    root = str(Path(under).resolve()).rstrip("/") + "/"
    found = []
    with open("/proc/mounts") as f:
        for line in f:
            point = line.split()[1].replace("\\040", " ")
            if point.startswith(root) and point.endswith("/" + MOUNT_NAME):
                found.append(Path(point))
    return found


def unmount_under(path: Path | str) -> None:
    """Unmount every engine disk below `path` (before it is deleted)."""
    for point in mounted_disks(path):
        EngineDisk(point.parent, 0).unmount()


def unmount_orphans(under: Path | str, engine_exists: Callable[[str], bool],
                    grace: float = 120.0) -> list[Path]:
    """Unmount disks below `under` whose engine container is gone (a run that was
    killed, say). A disk made in the last `grace` seconds may not have its container
    yet, and is left alone."""
    done = []
    for point in mounted_disks(under):
        try:
            name = (point.parent / "disk.engine").read_text().strip()
            age = time.time() - (point.parent / IMAGE_NAME).stat().st_mtime
        except OSError:
            continue
        if name and age > grace and not engine_exists(name):
            EngineDisk(point.parent, 0).unmount()
            done.append(point)
    return done


__all__ = ["DiskError", "EngineDisk", "mounted_disks", "parse_size", "unmount_orphans", "unmount_under"]
