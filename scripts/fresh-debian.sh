#!/usr/bin/env bash
# Run the README's test command, `./whale test`, N times in a row (default 3) on a fresh
# Debian 12 machine: a container of the local base (Debian's minbase, no python3, no
# Docker) holding a clean clone of this repository's HEAD (and git, which made it) and
# nothing else but this machine's CA bundle. It is a nested engine, with the loop devices
# the engines' size-capped disks need. Each run's output goes to $OUT/run-N.log, a summary to stdout.
#   scripts/fresh-debian.sh [N] [pytest arguments...]
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}; shift || true
OUT=${OUT:-/var/tmp/whale-fresh-debian}
NAME=whale-fresh-suite-$$
mkdir -p "$OUT"
scripts/ensure-docker.sh >/dev/null
images/base/build.sh debian:bookworm-slim

env_args=(); mounts=(); declare -A seen=()
for var in PIP_CERT SSL_CERT_FILE REQUESTS_CA_BUNDLE NODE_EXTRA_CA_CERTS CURL_CA_BUNDLE; do
  path=${!var:-}
  [[ -n $path && -f $path ]] || continue
  real=$(realpath "$path")
  if [[ -z ${seen[$real]:-} ]]; then
    seen[$real]=/host-ca/${#seen[@]}.pem
    mounts+=(-v "$real:${seen[$real]}:ro")
  fi
  env_args+=(-e "$var=${seen[$real]}")
done

trap 'docker rm -f -v "$NAME" >/dev/null 2>&1 || true' EXIT
docker run -d --name "$NAME" --hostname fresh-debian --init \
  --cap-add ALL --cap-drop SYS_RESOURCE --security-opt seccomp=unconfined \
  --security-opt apparmor=unconfined --security-opt systempaths=unconfined \
  -v /sys/fs/cgroup:/sys/fs/cgroup:rw --tmpfs /var/lib/docker \
  --device /dev/loop-control --device-cgroup-rule 'b 7:* rmw' \
  "${mounts[@]}" "${env_args[@]}" debian:bookworm-slim sleep infinity >/dev/null
docker exec "$NAME" sh -c 'for i in $(seq 0 31); do [ -e /dev/loop$i ] || mknod /dev/loop$i b 7 $i; done'
# A clean clone of HEAD, as a new user's `git clone` makes it (with git to read it: the
# fresh-machine test lists the tracked files with git ls-files).
clone=$(mktemp -d /var/tmp/whale-fresh-clone.XXXXXX)
git clone -q --no-hardlinks . "$clone/src"
git -C "$clone/src" checkout -q "$(git rev-parse HEAD)"
tar -C "$clone" -c src | docker exec -i "$NAME" tar -x -C /
rm -rf "$clone"
docker exec "$NAME" sh -c 'apt-get update -q >/dev/null && apt-get install -y -q git >/dev/null'

status=0
for run in $(seq 1 "$RUNS"); do
  start=$(date +%s)
  if docker exec -w /src -e WHALE_NO_SKIPS=1 "$NAME" ./whale test "$@" >"$OUT/run-$run.log" 2>&1; then
    result=passed
  else
    result=FAILED; status=1
  fi
  echo "run $run: $result in $(( $(date +%s) - start )) s: $(tail -n 1 "$OUT/run-$run.log")"
done
exit $status
