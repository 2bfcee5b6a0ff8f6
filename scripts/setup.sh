#!/usr/bin/env bash
# Installs what the demo and the tests need on a fresh Debian machine (run as root): Debian packages
# for real network parts and peers, Node.js if absent, and the npm packages (npm ci). Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."

want_packages() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  if ((${#missing[@]})); then
    echo "setup: installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

[ "$(id -u)" = 0 ] || { echo "setup: run me as root (network namespaces need it)" >&2; exit 1; }

# iproute2 and nsenter are the plugins' netlink; ping proves the pods can talk; arping lets sriov announce a
# pod's addresses on its VF; jq reads results.
base=(iproute2 util-linux procps iputils-ping iputils-arping jq ca-certificates)
# The tests also use Debian's reference CNI plugins as peers and podman as a real runtime.
full=(containernetworking-plugins podman runc busybox-static etcd-server etcd-client)
if [ "${1:-}" = "--full" ]; then want_packages "${base[@]}" "${full[@]}"; else want_packages "${base[@]}"; fi

# Node.js is only needed to run npm: the build and the tests run on the pinned Node 24 from npm.
command -v npm >/dev/null || want_packages nodejs npm
if [ ! -x node_modules/.bin/vitest ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: npm ci"
  npm ci --no-audit --no-fund --loglevel=error
fi
