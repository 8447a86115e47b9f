"""Bind mounts and volume mounts: which engine paths a container may mount, and named
volumes mounted without the engine's copy of the image into them."""
import os
import re

from .decision import READ_DIFFERENTLY, Refused, _q

# Engine paths a bind mount may not reach (the paths themselves and what is below them).
PROTECTED = ("/proc", "/sys", "/dev", "/boot", "/etc", "/run", "/var/run", "/var/lib/docker",
             "/var/lib/containerd", "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
             "/root", "/etc/whale")
# A pattern for paths on the engine, checked, never a file opened here.
BIND_SOURCE = re.compile(r"/tmp/[A-Za-z0-9][A-Za-z0-9._-]*\Z")  # noqa: S108
PROPAGATIONS = frozenset({"", "private", "rprivate", "slave", "rslave"})


def resolve_source(source: str) -> str:
    """Where a bind source resolves on this engine; NotADirectoryError if it is there and
    is not a directory (the gate's `resolve`)."""
    path = os.path.realpath(source)
    if os.path.lexists(path) and not os.path.isdir(path):
        raise NotADirectoryError(20, "not a directory", path)
    return path


def check_path(source: str, resolve) -> None:
    """A bind mount's source, as dockerd will resolve it (the gate runs in the engine)."""
    if "\x00" in source:
        raise Refused("a bind mount source with a NUL character", READ_DIFFERENTLY)
    not_a_directory = False
    try:
        path = resolve(source)
    except NotADirectoryError as exc:
        path, not_a_directory = exc.filename, True
    except (OSError, ValueError):
        raise Refused(f"a bind mount of {_q(source)}", "the path could not be checked") from None
    if path == "/":
        raise Refused("a bind mount of the engine's whole filesystem (/)")
    for protected in PROTECTED:
        if path == protected or path.startswith(protected + "/"):
            raise Refused(f"a bind mount of the engine's {path}")
    # dockerd resolves the source again when the container starts: a directory checked
    # here could be a link to / by then, if a container could write where it sits. So a
    # source is a directory right under /tmp, which no container can write: only its
    # contents are the learner's, and a link inside it is not followed by the mount.
    if not BIND_SOURCE.match(path) or path != source.rstrip("/"):
        raise Refused(f"a bind mount of {_q(source)}",
                      "on a classroom engine a bind mount is of a directory right under /tmp "
                      "(like -v /tmp/shared:/data), which no container can swap for a link")
    if not_a_directory:
        # Only the engine itself makes files right under /tmp (runc's process specs).
        raise Refused(f"a bind mount of {_q(source)}",
                      "it is not a directory; bind a directory right under /tmp")


# dockerd fills an empty named volume with what the image holds at its mount point, in
# its own mount namespace, following links: another container that has the volume can
# plant a link in it while the copy runs, and the copy then writes the engine's own
# files (an independent red team wrote /etc/ld.so.preload that way). So named volumes
# are mounted as they are ("nocopy"); a new anonymous volume, which no other container
# can hold yet, is still filled from the image.
COPY_WRITE = "another container holding the volume could redirect the copy to the engine's own files"


def without_copy(spec: str) -> str:
    """A HostConfig.Binds entry with "nocopy" added when it mounts a named volume."""
    parts = (spec or "").split(":")
    if len(parts) < 2 or parts[0].startswith("/"):
        return spec
    if len(parts) == 2:
        return spec + ":nocopy"
    modes = parts[2].split(",")
    if "nocopy" not in modes:
        parts[2] = ",".join([*modes, "nocopy"])
    return ":".join(parts)


def mounts_without_copy(mounts) -> None:
    for mount in mounts or []:
        if isinstance(mount, dict) and mount.get("Type") == "volume" and mount.get("Source"):
            options = mount.get("VolumeOptions")
            if options is None:
                options = mount["VolumeOptions"] = {}
            options["NoCopy"] = True


ANONYMOUS_VOLUME = re.compile(r"[0-9a-f]{64}\Z")


def check_volume_name(source: str, whose: str = "") -> None:
    # dockerd fills a new anonymous volume from the image, following links, while the
    # volume is already listed: the fifth red team mounted it by name from a running
    # container, planted a link and had the copy write /etc/ld.so.preload.
    if ANONYMOUS_VOLUME.match(source or ""):
        raise Refused(f"mounting another container's anonymous volume by its name{whose}",
                      "a new one is filled from its image by the engine, which a container holding it "
                      "could redirect to the engine's own files; give volumes names of your own")


def check_bind_spec(spec: str, resolve) -> None:
    """One HostConfig.Binds entry, split as dockerd's Linux parser splits it."""
    parts = (spec or "").split(":")
    if len(parts) < 2:
        return  # an anonymous volume at a container path
    source = parts[0]
    if len(parts) >= 3:
        for opt in parts[2].split(","):
            if opt in ("shared", "rshared"):
                raise Refused(f"the bind propagation {_q(opt)} (-v …:{opt})")
    if source.startswith("/"):
        check_path(source, resolve)
    else:
        check_volume_name(source)


def check_mount(mount: dict | None, resolve, whose: str = "") -> None:
    if not mount:
        return
    kind = mount.get("Type") or ""
    if kind not in ("bind", "volume", "tmpfs"):
        raise Refused(f"the mount type {_q(kind)}{whose} (--mount type={kind})",
                      "only bind, volume and tmpfs mounts are used in lessons")
    for opts, of in (("BindOptions", "bind"), ("VolumeOptions", "volume"), ("TmpfsOptions", "tmpfs")):
        if mount.get(opts) is not None and kind != of:
            raise Refused(f"{opts} on a {kind} mount{whose}", READ_DIFFERENTLY)
    if mount.get("ClusterOptions") is not None or mount.get("ImageOptions") is not None:
        raise Refused(f"cluster or image mount options{whose}", "only bind, volume and tmpfs mounts are used")
    source = mount.get("Source") or ""
    if kind == "bind":
        propagation = (mount.get("BindOptions") or {}).get("Propagation") or ""
        if propagation not in PROPAGATIONS:
            raise Refused(f"the bind propagation {_q(propagation)}{whose} (bind-propagation={propagation})")
        check_path(source, resolve)
    elif kind == "volume":
        if "/" in source:
            raise Refused(f"a volume mount whose source {_q(source)} is a path{whose}",
                          "a volume's source is its name")
        check_volume_name(source, whose)
        options = mount.get("VolumeOptions") or {}
        driver = options.get("DriverConfig") or {}
        if (driver.get("Name") or "") not in ("", "local"):
            raise Refused(f"the volume driver {_q(driver.get('Name'))}{whose} (volume-driver=…)")
        if driver.get("Options"):
            raise Refused(f"volume driver options in a mount{whose} (--mount …,volume-opt=…)",
                          "a local volume's options can mount the engine's own disks and directories")
        subpath = options.get("Subpath") or ""
        if subpath.startswith("/") or ".." in subpath.split("/"):
            raise Refused(f"the volume subpath {_q(subpath)}{whose}", "a subpath stays inside its volume")
    elif source:
        raise Refused(f"a tmpfs mount with a source{whose}", READ_DIFFERENTLY)

