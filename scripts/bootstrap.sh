#!/usr/bin/env bash
# Install what the project needs on a fresh Debian machine (idempotent, quick when done).
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
# chromium + chromium-driver: the browser test of the status indicator.
# docker-registry: the lesson registry mirror; docker-compose: the Compose lesson.
# iptables + iproute2: the host firewall for learners' networks and its tests; e2fsprogs:
# the engines' disks (mkfs.ext4).
for pkg in docker.io debootstrap busybox-static gcc libc6-dev chromium chromium-driver iptables iproute2 e2fsprogs \
           docker-registry docker-compose; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
command -v npm >/dev/null || need+=(nodejs npm)  # builds the status indicator
if ((${#need[@]})); then
  echo "bootstrap: apt-get install ${need[*]}" >&2
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null
fi
# Reinstall the package only when its metadata changed (editable install: code is live).
stamp=".bootstrap-stamp"
sum=$(cat setup.py | sha256sum | cut -c1-16)
if [[ ! -f $stamp || $(cat "$stamp") != "$sum" ]] || ! python3 -c "import whale_kernel" 2>/dev/null; then
  echo "bootstrap: pip install -e .[test,hub]" >&2
  python3 -m pip install -q -e ".[test,hub]"
  echo "$sum" > "$stamp"
fi
# The hub's proxy.
command -v configurable-http-proxy >/dev/null || \
  npm install -g --silent --no-audit --no-fund configurable-http-proxy@5 >/dev/null
python3 -m whale_kernel.install --sys-prefix >/dev/null
# The status indicator labextension: built with the JupyterLab builder from npm, only
# when its sources changed (or the build is missing); then the server extension and
# the labextension are put where Jupyter finds them (pip -e installs no data_files).
labsum=$(cat labextension/package.json labextension/package-lock.json labextension/tsconfig.json \
  labextension/src/* labextension/style/* | sha256sum | cut -c1-16)
if [[ ! -f whale_extension/labextension/package.json \
      || $(cat labextension/.build-stamp 2>/dev/null) != "$labsum" ]]; then
  echo "bootstrap: npm build of labextension/" >&2
  log=$(mktemp)
  if ! (cd labextension
        if [[ ! -d node_modules || package-lock.json -nt node_modules/.package-lock.json ]]; then
          npm ci --no-audit --no-fund
        fi
        npm run build) >"$log" 2>&1; then
    cat "$log" >&2; rm -f "$log"; exit 1
  fi
  rm -f "$log"
  echo "$labsum" > labextension/.build-stamp
fi
python3 -m whale_extension.install --sys-prefix >/dev/null
