#!/usr/bin/env bash
# Install what the project needs on a fresh Debian machine (idempotent, quick when done).
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
for pkg in docker.io debootstrap busybox-static gcc libc6-dev; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if ((${#need[@]})); then
  echo "bootstrap: apt-get install ${need[*]}" >&2
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null
fi
# Reinstall the package only when its metadata changed (editable install: code is live).
stamp=".bootstrap-stamp"
sum=$(cat setup.py | sha256sum | cut -c1-16)
if [[ ! -f $stamp || $(cat "$stamp") != "$sum" ]] || ! python3 -c "import whale_kernel" 2>/dev/null; then
  echo "bootstrap: pip install -e .[test]" >&2
  python3 -m pip install -q -e ".[test]"
  echo "$sum" > "$stamp"
fi
python3 -m whale_kernel.install --sys-prefix >/dev/null
