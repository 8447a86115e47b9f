#!/usr/bin/env bash
# Install what the project needs on a fresh Debian machine (idempotent, quick when done).
# Debian's packages come from apt; the project's Python packages live in a virtual
# environment of its own, .venv/ (Debian's Python is externally managed, PEP 668: nothing
# is installed into it). ./whale runs everything from .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
# python3 + python3-venv: the project's own environment.
# chromium + chromium-driver: the browser test of the status indicator.
# docker-registry: the lesson registry mirror.
# iptables + iproute2: the host firewall for learners' networks and its tests; e2fsprogs:
# the engines' disks (mkfs.ext4). openssh-client: learners' own engines reached over SSH.
for pkg in python3 python3-venv docker.io debootstrap busybox-static gcc libc6-dev chromium \
           chromium-driver iptables iproute2 e2fsprogs docker-registry \
           openssh-client; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
command -v npm >/dev/null || need+=(nodejs npm)  # builds the status indicator
if ((${#need[@]})); then
  echo "bootstrap: apt-get install ${need[*]}" >&2
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null
fi
venv=.venv
if [[ ! -x $venv/bin/python ]]; then
  echo "bootstrap: python3 -m venv $venv" >&2
  python3 -m venv "$venv"
fi
py=$venv/bin/python
# Builds below run programs of the environment (the labextension build imports jupyterlab).
export PATH="$PWD/$venv/bin:$PATH"
# Reinstall the package only when its metadata or the status indicator's sources changed
# (an editable install: the Python code is live). The build (hatchling) builds the
# labextension with npm when its sources are newer than the last build, and installs the
# kernelspec, the server extension's config and the labextension into .venv.
stamp="$venv/.bootstrap-stamp"
sum=$(cat pyproject.toml install.json labextension/package.json labextension/package-lock.json \
  labextension/tsconfig.json labextension/src/* labextension/style/* | sha256sum | cut -c1-16)
if [[ ! -f $stamp || $(cat "$stamp") != "$sum" ]] || ! "$py" -c "import whale_kernel" 2>/dev/null; then
  echo "bootstrap: pip install -e .[test,hub] into $venv" >&2
  log=$(mktemp)
  # The build's own requirements first: builds run in this environment (no isolation),
  # which has JupyterLab for the labextension's build.
  if ! { "$py" -m pip install -q --upgrade pip &&
         "$py" -m pip install -q "hatchling>=1.21" "hatch-jupyter-builder>=0.9" \
           "hatch-nodejs-version>=0.3.2" editables "jupyterlab>=4.0,<5" &&
         "$py" -m pip install -q --no-build-isolation -e ".[test,hub]"; } >"$log" 2>&1; then
    cat "$log" >&2; rm -f "$log"; exit 1
  fi
  rm -f "$log"
  echo "$sum" > "$stamp"
fi
# The hub's proxy.
command -v configurable-http-proxy >/dev/null || \
  npm install -g --silent --no-audit --no-fund configurable-http-proxy@5 >/dev/null
