#!/usr/bin/env bash
# Make a base image (`debian:bookworm-slim`, `debian:trixie-slim`) on an engine that can
# pull nothing.
# Where a registry is reachable, `docker pull` gets the real one; otherwise the
# same name is built locally: debootstrap a minimal Debian and `docker import` it.
set -euo pipefail
IMAGE=${1:-debian:bookworm-slim}
suite=${IMAGE#debian:}; suite=${suite%%-*}
SUITE=${SUITE:-${suite:-bookworm}}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
  echo "base: $IMAGE already present"; exit 0
fi
if timeout 20 docker pull -q "$IMAGE" >/dev/null 2>&1; then
  echo "base: pulled $IMAGE"; exit 0
fi
command -v debootstrap >/dev/null || { apt-get update -q && apt-get install -y -q debootstrap; }
root=$(mktemp -d /var/tmp/whale-base.XXXXXX)
trap 'rm -rf "$root"' EXIT
echo "base: debootstrap $SUITE from $MIRROR (no registry reachable)"
debootstrap --variant=minbase --include=ca-certificates "$SUITE" "$root" "$MIRROR" >/dev/null
# Slim it the way the official -slim image is: no docs, manpages or apt lists.
rm -rf "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* "$root"/usr/share/man/* \
       "$root"/var/cache/apt/archives/*.deb "$root"/var/log/*
printf 'deb %s %s main\ndeb %s %s-updates main\n' "$MIRROR" "$SUITE" "$MIRROR" "$SUITE" \
  > "$root/etc/apt/sources.list"
tar -C "$root" -c . | docker import -c 'CMD ["bash"]' - "$IMAGE" >/dev/null
echo "base: built $IMAGE locally"
