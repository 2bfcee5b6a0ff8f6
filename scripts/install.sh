#!/usr/bin/env bash
# Installs the Underlay executable and its plugin links into a CNI plugin directory.
#   scripts/install.sh [--dir /opt/cni/bin] [--force]
# A plugin file already there that is not ours (the reference macvlan, a real whereabouts) is left alone
# unless --force is given; Underlay's own underlay-* names are always installed, so nothing is lost.
# The work is done by the executable itself (`underlay install`, as the DaemonSet runs it).
set -euo pipefail
cd "$(dirname "$0")/.."

dir=/opt/cni/bin
force=()
while (($#)); do
  case "$1" in
    --dir) dir="$2"; shift 2 ;;
    --force) force=(--force); shift ;;
    -h|--help) sed -n '2,5p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "install: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

src=dist/bin/underlay
[ -x "$src" ] || { echo "install: $src is missing; build it first with: node build.mjs" >&2; exit 1; }
exec "$src" install --once --skip-kubeconfig --cni-bin-dir "$dir" "${force[@]}"
