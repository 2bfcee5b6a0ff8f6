#!/usr/bin/env bash
# Installs the Underlay executable and its plugin links into a CNI plugin directory.
#   scripts/install.sh [--dir /opt/cni/bin] [--force]
# A plugin file already there that is not ours (the reference macvlan, a real whereabouts) is left alone
# unless --force is given; Underlay's own underlay-* names are always installed, so nothing is lost.
set -euo pipefail
cd "$(dirname "$0")/.."

dir=/opt/cni/bin
force=false
while (($#)); do
  case "$1" in
    --dir) dir="$2"; shift 2 ;;
    --force) force=true; shift ;;
    -h|--help) sed -n '2,5p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "install: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

src=dist/bin/underlay
[ -x "$src" ] || { echo "install: $src is missing; build it first with: node build.mjs" >&2; exit 1; }
mkdir -p "$dir"

# Every change lands by rename: a runtime exec-ing a plugin at that moment sees the old file or the
# new one, never half a binary or a missing link; a private temporary name lets installers overlap.
tmp=$(mktemp -p "$dir" .underlay.XXXXXX)
cp "$src" "$tmp"
chmod 0755 "$tmp"
mv -f "$tmp" "$dir/underlay"
echo "install: $dir/underlay"

ours() { [ -L "$1" ] && [ "$(readlink "$1")" = underlay ]; }

for name in underlay-macvlan underlay-sriov underlay-ipam macvlan sriov whereabouts; do
  target="$dir/$name"
  if [ -e "$target" ] || [ -L "$target" ]; then
    if ours "$target"; then continue; fi
    if ! $force; then
      echo "install: $target exists and is not Underlay's; kept it (the underlay-* link serves instead; --force replaces it)"
      continue
    fi
    echo "install: replacing $target (--force)"
  fi
  link=$(mktemp -u -p "$dir" .link.XXXXXX)
  ln -s underlay "$link"
  mv -Tf "$link" "$target"
  echo "install: $target -> underlay"
done
