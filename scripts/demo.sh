#!/usr/bin/env bash
# The Underlay demo: builds the executable, then plays a container runtime for three pods. Each pod (a
# network namespace) gets a macvlan interface on one host interface, with an address leased from
# Underlay's IPAM on its file store; the pods ping each other, CHECK verifies them, DEL tears them down
# and the leases are freed. Everything it creates is removed at the end, even on Ctrl-C.
#
# With --etcd the leases live in etcd instead: the demo starts a throwaway 3-member etcd cluster on free
# loopback ports (in a temporary directory), and plays two nodes sharing one pool, two pods each, every
# ADD run with its node's NODENAME as on that node. The cluster goes away at the end too.
set -euo pipefail
cd "$(dirname "$0")/.."

use_etcd=false
case "${1:-}" in
  "") ;;
  --etcd) use_etcd=true ;;
  *) echo "usage: bash scripts/demo.sh [--etcd]" >&2; exit 2 ;;
esac

bash scripts/setup.sh
export PATH="$PWD/node_modules/.bin:$PATH"
if $use_etcd && ! command -v etcd >/dev/null; then
  echo "setup: installing Debian package etcd-server (the demo runs its own etcd members, not the system one)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends etcd-server >/dev/null
fi

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
step() { printf '   %s\n' "$*"; }

say "Building the Underlay executable (one Node 24 single-executable application)"
node build.mjs | sed 's/^/   /'
BIN="$PWD/dist/bin"

tag="ud$$"
master="${tag}m"
declare -A node_of
if $use_etcd; then
  pods=(pod-a pod-b pod-c pod-d)
  node_of=([pod-a]=node-1 [pod-b]=node-1 [pod-c]=node-2 [pod-d]=node-2)
else
  pods=(pod-a pod-b pod-c)
fi
store="$(mktemp -d /tmp/underlay-demo-leases.XXXX)"
etcd_pids=()

cleanup() {
  for pod in "${pods[@]}"; do ip netns del "$tag-$pod" 2>/dev/null || true; done
  ip link del "$master" 2>/dev/null || true
  for pid in "${etcd_pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  for pid in "${etcd_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$store"
}
trap cleanup EXIT
trap 'echo; echo "interrupted: cleaning up"; exit 130' INT TERM

if $use_etcd; then
  say "Starting a throwaway 3-member etcd cluster on loopback (data in $store)"
  # Six free loopback ports: a client and a peer port per member.
  read -r -a ports <<<"$(node -e '
    const net = require("node:net");
    Promise.all(Array.from({ length: 6 }, () => new Promise((resolve) => { const s = net.createServer(); s.listen(0, "127.0.0.1", () => resolve(s)); })))
      .then((servers) => { console.log(servers.map((s) => s.address().port).join(" ")); servers.forEach((s) => s.close()); });')"
  endpoints=() peers=()
  for i in 0 1 2; do
    endpoints+=("http://127.0.0.1:${ports[2 * i]}")
    peers+=("m$i=http://127.0.0.1:${ports[2 * i + 1]}")
  done
  initial_cluster=$(IFS=,; echo "${peers[*]}")
  for i in 0 1 2; do
    mkdir -m 0700 "$store/m$i"
    # --pdeathsig: a member dies with this script, however the script ends.
    setpriv --pdeathsig KILL etcd --name "m$i" --data-dir "$store/m$i/data" \
      --listen-client-urls "${endpoints[i]}" --advertise-client-urls "${endpoints[i]}" \
      --listen-peer-urls "http://127.0.0.1:${ports[2 * i + 1]}" --initial-advertise-peer-urls "http://127.0.0.1:${ports[2 * i + 1]}" \
      --initial-cluster "$initial_cluster" --initial-cluster-state new --initial-cluster-token "$tag" \
      --logger zap --log-level warn >"$store/m$i/etcd.log" 2>&1 &
    etcd_pids+=("$!")
  done
  for i in 0 1 2; do
    healthy=false
    for _ in $(seq 1 150); do
      if node -e 'fetch(process.argv[1] + "/health").then((r) => r.json()).then((h) => process.exit(h.health === "true" ? 0 : 1), () => process.exit(1))' "${endpoints[i]}"; then healthy=true; break; fi
      sleep 0.2
    done
    $healthy || { echo "etcd member m$i did not become healthy; its log:" >&2; tail -20 "$store/m$i/etcd.log" >&2; exit 1; }
    step "member m$i: ${endpoints[i]} (pid ${etcd_pids[i]})"
  done
  etcd_list=$(IFS=,; echo "${endpoints[*]}")
  store_fields="\"etcd_endpoints\": $(printf '%s\n' "${endpoints[@]}" | jq -R . | jq -cs .)"
  store_flag=(--etcd "$etcd_list")
  store_words="etcd (keys under /underlay/ipam/)"
else
  store_fields="\"file_store_dir\": \"$store\""
  store_flag=(--dir "$store")
  store_words="the IPAM's file store"
fi

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
    $store_fields
  }
}
JSON
)

if $use_etcd; then say "Setting up a host interface and four pods on two nodes"; else say "Setting up a host interface and three pods"; fi
ip link add "$master" type veth peer name "${tag}p"
ip link set "$master" up && ip link set "${tag}p" up
step "host interface $master stands in for the node's NIC (a veth pair: this machine has no spare NIC)"
for pod in "${pods[@]}"; do
  ip netns add "$tag-$pod"
  ip -n "$tag-$pod" link set lo up
  if $use_etcd; then step "pod $pod on ${node_of[$pod]} = network namespace /run/netns/$tag-$pod"; else step "pod $pod = network namespace /run/netns/$tag-$pod"; fi
done
if $use_etcd; then
  step "node-1 and node-2 are simulated: this machine plays both, and each ADD runs with NODENAME=node-N as"
  step "the runtime on that node would run it; the two nodes share one pool, kept in etcd"
fi
step "network config (what a NetworkAttachmentDefinition would carry):"
echo "$config" | sed 's/^/     /'

cni() { # cni COMMAND POD [extra-json-merge]
  local command=$1 pod=$2 stdin=${3:-$config} node=()
  [ -n "${node_of[$pod]:-}" ] && node=("NODENAME=${node_of[$pod]}") # the node the pod runs on
  CNI_COMMAND=$command CNI_CONTAINERID="demo-$pod" CNI_NETNS="/run/netns/$tag-$pod" CNI_IFNAME=net1 \
    CNI_PATH="$BIN" CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAMESPACE=demo;K8S_POD_NAME=$pod" env "${node[@]}" "$BIN/macvlan" <<<"$stdin"
}

say "ADD: attaching each pod (the runtime runs $BIN/macvlan with CNI_COMMAND=ADD)"
declare -A result address
for pod in "${pods[@]}"; do
  result[$pod]=$(cni ADD "$pod")
  address[$pod]=$(jq -r '.ips[0].address' <<<"${result[$pod]}")
  if $use_etcd; then step "$pod (${node_of[$pod]}): ${result[$pod]}"; else step "$pod: ${result[$pod]}"; fi
done

say "What each pod got"
if $use_etcd; then
  printf '   %-7s %-7s %-10s %-20s %-19s %s\n' POD NODE INTERFACE ADDRESS MAC "MACVLAN MODE"
else
  printf '   %-7s %-10s %-20s %-19s %s\n' POD INTERFACE ADDRESS MAC "MACVLAN MODE"
fi
for pod in "${pods[@]}"; do
  link=$(ip -n "$tag-$pod" -j -d link show net1)
  mac=$(jq -r '.[0].address' <<<"$link")
  mode=$(jq -r '.[0].linkinfo.info_data.mode' <<<"$link")
  if $use_etcd; then
    printf '   %-7s %-7s %-10s %-20s %-19s %s\n' "$pod" "${node_of[$pod]}" net1 "${address[$pod]}" "$mac" "$mode"
  else
    printf '   %-7s %-10s %-20s %-19s %s\n' "$pod" net1 "${address[$pod]}" "$mac" "$mode"
  fi
done

say "Leases in $store_words"
if $use_etcd; then step "\$ underlay ipam ls --etcd $etcd_list"; fi
"$BIN/underlay" ipam ls "${store_flag[@]}" | sed 's/^/   /'
pool=$(jq -r '.pools[0].name' <<<"$("$BIN/underlay" ipam ls --json "${store_flag[@]}")")
if $use_etcd; then step "\$ underlay ipam show $pool --etcd $etcd_list"; fi
"$BIN/underlay" ipam show "$pool" "${store_flag[@]}" | sed 's/^/   /'

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
"$BIN/underlay" ipam ls "${store_flag[@]}" | sed 's/^/   /'

if $use_etcd; then
  say "Done: the pods, the host interface and the etcd cluster (with its data) are removed on exit."
else
  say "Done: the pods, the host interface and the lease store are removed on exit."
fi
