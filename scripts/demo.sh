#!/usr/bin/env bash
# The Underlay demo: builds the executable, then plays a container runtime for three pods. Each pod (a
# network namespace) gets a macvlan interface on one host interface, with an address leased from
# Underlay's IPAM on its file store; the pods ping each other, CHECK verifies them, DEL tears them down
# and the leases are freed. Everything it creates is removed at the end, even on Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
export PATH="$PWD/node_modules/.bin:$PATH"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
step() { printf '   %s\n' "$*"; }

say "Building the Underlay executable (one Node 24 single-executable application)"
node build.mjs | sed 's/^/   /'
BIN="$PWD/dist/bin"

tag="ud$$"
master="${tag}m"
pods=(pod-a pod-b pod-c)
store="$(mktemp -d /tmp/underlay-demo-leases.XXXX)"

cleanup() {
  for pod in "${pods[@]}"; do ip netns del "$tag-$pod" 2>/dev/null || true; done
  ip link del "$master" 2>/dev/null || true
  rm -rf "$store"
}
trap cleanup EXIT
trap 'echo; echo "interrupted: cleaning up"; exit 130' INT TERM

config=$(cat <<JSON
{
  "cniVersion": "1.1.0",
  "name": "demo-underlay",
  "type": "macvlan",
  "master": "$master",
  "mode": "bridge",
  "ipam": {
    "type": "whereabouts",
    "range": "192.168.91.100-192.168.91.110/24",
    "gateway": "192.168.91.1",
    "file_store_dir": "$store"
  }
}
JSON
)

say "Setting up a host interface and three pods"
ip link add "$master" type veth peer name "${tag}p"
ip link set "$master" up && ip link set "${tag}p" up
step "host interface $master stands in for the node's NIC (a veth pair: this machine has no spare NIC)"
for pod in "${pods[@]}"; do
  ip netns add "$tag-$pod"
  ip -n "$tag-$pod" link set lo up
  step "pod $pod = network namespace /run/netns/$tag-$pod"
done
step "network config (what a NetworkAttachmentDefinition would carry):"
echo "$config" | sed 's/^/     /'

cni() { # cni COMMAND POD [extra-json-merge]
  local command=$1 pod=$2 stdin=${3:-$config}
  CNI_COMMAND=$command CNI_CONTAINERID="demo-$pod" CNI_NETNS="/run/netns/$tag-$pod" CNI_IFNAME=net1 \
    CNI_PATH="$BIN" CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAMESPACE=demo;K8S_POD_NAME=$pod" "$BIN/macvlan" <<<"$stdin"
}

say "ADD: attaching each pod (the runtime runs $BIN/macvlan with CNI_COMMAND=ADD)"
declare -A result address
for pod in "${pods[@]}"; do
  result[$pod]=$(cni ADD "$pod")
  address[$pod]=$(jq -r '.ips[0].address' <<<"${result[$pod]}")
  step "$pod: ${result[$pod]}"
done

say "What each pod got"
printf '   %-7s %-10s %-20s %-19s %s\n' POD INTERFACE ADDRESS MAC "MACVLAN MODE"
for pod in "${pods[@]}"; do
  link=$(ip -n "$tag-$pod" -j -d link show net1)
  printf '   %-7s %-10s %-20s %-19s %s\n' "$pod" net1 "${address[$pod]}" "$(jq -r '.[0].address' <<<"$link")" "$(jq -r '.[0].linkinfo.info_data.mode' <<<"$link")"
done

say "Leases in the IPAM's file store"
"$BIN/underlay" ipam ls --dir "$store" | sed 's/^/   /'
"$BIN/underlay" ipam show "$(jq -r '.pools[0].name' <<<"$("$BIN/underlay" ipam ls --json --dir "$store")")" --dir "$store" | sed 's/^/   /'

say "Pods ping each other over the macvlan links"
for from in "${pods[@]}"; do
  for to in "${pods[@]}"; do
    [ "$from" = "$to" ] && continue
    ip=${address[$to]%/*}
    if ip netns exec "$tag-$from" ping -c 1 -W 1 "$ip" >/dev/null 2>&1; then step "$from -> $to ($ip): reply"; else step "$from -> $to ($ip): NO REPLY"; fi
  done
done

say "CHECK: the runtime asks each plugin whether the pod is still as ADD left it"
for pod in "${pods[@]}"; do
  with_prev=$(jq -c --argjson prev "${result[$pod]}" '. + {prevResult: $prev}' <<<"$config")
  if out=$(cni CHECK "$pod" "$with_prev"); then step "$pod: ok"; else step "$pod: FAILED $out"; fi
done

say "DEL: tearing the pods down"
for pod in "${pods[@]}"; do
  cni DEL "$pod" >/dev/null && step "$pod: net1 removed, lease released"
done
"$BIN/underlay" ipam ls --dir "$store" | sed 's/^/   /'

say "Done: the pods, the host interface and the lease store are removed on exit."
