#!/usr/bin/env bash
# Builds Underlay's image from deploy/Containerfile, offline: FROM scratch, with the built
# executable and the shared libraries it links, copied from this machine.
#   deploy/build-image.sh [-t IMAGE]     (default localhost/underlay:VERSION, VERSION from package.json)
# PODMAN names the builder and its global options (default: podman; docker works too);
# UNDERLAY_BIN the directory of the executable to package (default dist/bin).
# Build the executable first: node build.mjs
set -euo pipefail
cd "$(dirname "$0")/.."

version=$(sed -n 's/^  "version": "\(.*\)",$/\1/p' package.json)
tag="localhost/underlay:$version"
while (($#)); do
  case "$1" in
    -t|--tag) tag="$2"; shift 2 ;;
    -h|--help) sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build-image: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
read -r -a podman <<<"${PODMAN:-podman}"

exe="${UNDERLAY_BIN:-dist/bin}/underlay"
[ -x "$exe" ] || { echo "build-image: $exe is missing; build it first with: node build.mjs" >&2; exit 1; }

# What the executable needs (ldd: "name => /path (addr)" or "/path (addr)"; the vDSO is the kernel's)
# against what the Containerfile copies: an image missing a library would fail only on the nodes.
needed=$(ldd "$exe" | sed -n -e 's/^.*=> \(\/[^ ]*\) (0x.*$/\1/p' -e 's/^[[:space:]]*\(\/[^ ]*\) (0x.*$/\1/p' | sort -u)
copied=$(sed -n 's/^COPY \(lib[^ ]*\) .*$/\/\1/p' deploy/Containerfile | sort -u)
if [ "$needed" != "$copied" ]; then
  echo "build-image: deploy/Containerfile does not copy exactly the libraries $exe links." >&2
  echo "ldd says:" >&2; sed 's/^/  /' <<<"$needed" >&2
  echo "the Containerfile copies:" >&2; sed 's/^/  /' <<<"$copied" >&2
  exit 1
fi

context=$(mktemp -d "${TMPDIR:-/tmp}/underlay-image.XXXXXX")
trap 'rm -rf "$context"' EXIT
while read -r lib; do
  mkdir -p "$context$(dirname "$lib")"
  cp -L "$lib" "$context$lib"
done <<<"$needed"
cp "$exe" "$context/underlay"

"${podman[@]}" build --no-cache -t "$tag" -f deploy/Containerfile "$context"
echo "build-image: built $tag"
