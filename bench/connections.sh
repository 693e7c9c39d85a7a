#!/usr/bin/env bash
# Connection counting on a busy host: hostsim's load plus 20,000 established
# loopback connections (held by 4 processes, 5,000 each: 40,000 TCP sockets
# with both ends; 10,000 fds each, within the usual 20,000 limit). Compares a warm refresh without and with counting every
# listener's connections (criterion). Target: with ≤ 1.5 × without.
#
#   bash bench/connections.sh            # CONNS=20000
set -euo pipefail
cd "$(dirname "$0")/.."
PROCS=${PROCS:-500} TCP=${TCP:-20} UDP=${UDP:-2} FDS=${FDS:-200} CONNS=${CONNS:-20000}
cargo build --release --quiet --bin portwarden --example hostsim

ready=$(mktemp -u /tmp/portwarden-hostsim.XXXXXX.json)
"$PWD/target/release/examples/hostsim" --procs "$PROCS" --tcp "$TCP" --udp "$UDP" --fds "$FDS" \
  --ready-file "$ready" &
pids=($!)
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; rm -f "$ready" /tmp/pwconn-*.ready' EXIT
until [ -f "$ready" ]; do sleep 0.5; done

bench() {
  cargo bench --quiet --bench discovery -- --noplot "$1" 2>&1 \
    | grep -E 'connections counted|time:|^discovery' || true
}
est() {
  python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["median"]["point_estimate"]/1e6)' \
    "target/criterion/discovery/$1/new/estimates.json"
}
echo "host: $(ss -Htn state established | wc -l) established TCP sockets"
bench 'discovery/refresh_warm_connections'
before=$(est refresh_warm_connections)

per=$((CONNS / 4))
for i in 0 1 2 3; do
  (exec python3 -c '
import socket, sys, time
n = int(sys.argv[1])
l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen(4096)
keep = []
for _ in range(n):
    c = socket.create_connection(l.getsockname())
    s, _ = l.accept()
    keep += [c, s]
open(sys.argv[2], "w").write("ready")
time.sleep(86400)' "$per" "/tmp/pwconn-$i.ready") &
  pids+=($!)
done
for i in 0 1 2 3; do
  until [ -s "/tmp/pwconn-$i.ready" ]; do
    kill -0 "${pids[$((i + 1))]}" 2>/dev/null || { echo "connection holder $i died" >&2; exit 1; }
    sleep 0.2
  done
done
echo "host: $(ss -Htn state established | wc -l) established TCP sockets"

bench 'discovery/(refresh_warm|connections_dump_floor)'
after=$(est refresh_warm_connections) plain=$(est refresh_warm) floor=$(est connections_dump_floor)
echo
echo "| warm refresh (criterion median) | hostsim | + $CONNS established connections | ratio |"
echo "|---|---|---|---|"
printf '| counting connections | %.1f ms | %.1f ms | %.2fx |\n' "$before" "$after" "$(python3 -c "print($after/$before)")"
printf '| counting nothing | | %.1f ms | |\n' "$plain"
printf '| the dumps alone, one thread (their floor) | | %.1f ms | |\n' "$floor"
