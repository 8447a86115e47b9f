#!/usr/bin/env bash
# Make sure a Docker engine runs here: install Debian's docker.io if it is absent,
# start dockerd if nothing answers, and wait until it does.
set -euo pipefail
if docker info >/dev/null 2>&1; then exit 0; fi
if ! command -v dockerd >/dev/null; then
  echo "ensure-docker: installing docker.io" >&2
  apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io >/dev/null
fi
if ! pgrep -x dockerd >/dev/null; then
  echo "ensure-docker: starting dockerd" >&2
  mkdir -p /var/log
  setsid nohup dockerd >/var/log/whale-dockerd.log 2>&1 < /dev/null &
fi
for _ in $(seq 1 120); do
  docker info >/dev/null 2>&1 && exit 0
  sleep 0.5
done
echo "ensure-docker: dockerd did not answer in 60 s; see /var/log/whale-dockerd.log" >&2
tail -n 20 /var/log/whale-dockerd.log >&2 || true
exit 1
