#!/usr/bin/env bash
# Discovery across network namespaces, beside hostsim's load: how a warm
# refresh and a full pass grow as namespaces of 50 listeners each are added
# (0, 10, 20, 40), and with 20 namespaces of 100. Each namespace is made
# with `ip netns`, with one process inside holding its listeners. Root only.
#
#   bash bench/netns.sh
#
# Needs: iproute2, hyperfine.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "bench/netns.sh: needs root (ip netns)" >&2; exit 1; }
PROCS=${PROCS:-500} TCP=${TCP:-20} UDP=${UDP:-2} FDS=${FDS:-200}
out=${OUT:-target/bench}
mkdir -p "$out"
cargo build --release --quiet --bin portwarden --example hostsim
bin=target/release/portwarden

ready=$(mktemp -u /tmp/portwarden-hostsim.XXXXXX.json)
"$PWD/target/release/examples/hostsim" --procs "$PROCS" --tcp "$TCP" --udp "$UDP" --fds "$FDS" \
  --ready-file "$ready" &
sim=$!
holders=()
cleanup() {
  kill "$sim" ${holders[@]+"${holders[@]}"} 2>/dev/null || true
  wait 2>/dev/null || true
  for ns in $(ip netns list | awk '/^pwbench-/ {print $1}'); do ip netns del "$ns"; done
  rm -f "$ready"
}
trap cleanup EXIT
until [ -f "$ready" ]; do
  kill -0 $sim 2>/dev/null || { echo "hostsim died" >&2; exit 1; }
  sleep 0.5
done
echo "host: $(find /proc/[0-9]*/fd -mindepth 1 -maxdepth 1 2>/dev/null | wc -l) open fds"

# Namespaces pwbench-0 .. pwbench-(n-1), each with one process holding
# $2 listeners on its loopback; any from an earlier step are removed first.
namespaces() {
  local n=$1 per=$2
  if [ ${#holders[@]} -gt 0 ]; then
    kill "${holders[@]}" 2>/dev/null || true
    wait "${holders[@]}" 2>/dev/null || true
  fi
  holders=()
  for ns in $(ip netns list | awk '/^pwbench-/ {print $1}'); do ip netns del "$ns"; done
  for ((i = 0; i < n; i++)); do
    ip netns add "pwbench-$i"
    ip netns exec "pwbench-$i" ip link set lo up
    ip netns exec "pwbench-$i" python3 -c '
import socket, sys, time
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(16); socks.append(s)
print("ready", flush=True)
time.sleep(86400)' "$per" > "/tmp/pwbench-$i.ready" &
    holders+=($!)
  done
  for ((i = 0; i < n; i++)); do
    until grep -q ready "/tmp/pwbench-$i.ready" 2>/dev/null; do sleep 0.1; done
    rm -f "/tmp/pwbench-$i.ready"
  done
}

rows=()
for step in "0 50" "10 50" "20 50" "40 50" "20 100"; do
  set -- $step
  namespaces "$1" "$2"
  ports=$("$bin" ls --json --no-check | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
  hyperfine -N -w 2 -r 10 --export-json "$out/netns-ls.json" "$bin ls --json --no-check" >/dev/null
  cold=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["results"][0]["mean"]*1e3)' "$out/netns-ls.json")
  cargo bench --quiet --bench discovery -- --noplot 'discovery/(refresh_warm$|full_scan)' >/dev/null 2>&1
  est() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["median"]["point_estimate"]/1e6)' "target/criterion/discovery/$1/new/estimates.json"; }
  rows+=("$1 $2 $ports $cold $(est refresh_warm) $(est full_scan)")
  echo "namespaces=$1 x $2 listeners: $ports sockets, cold ls ${cold} ms, refresh $(est refresh_warm) ms, full $(est full_scan) ms"
done

echo
echo "| namespaces × listeners | sockets listed | cold \`ls --json --no-check\` (mean) | warm refresh (median) | full pass in-process (median) |"
echo "|---|---|---|---|---|"
for r in "${rows[@]}"; do
  set -- $r
  printf '| %s × %s | %s | %.0f ms | %.1f ms | %.0f ms |\n' "$1" "$2" "$3" "$4" "$5" "$6"
done
