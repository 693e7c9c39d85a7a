#!/usr/bin/env bash
# Connection counting on a busy host: hostsim's load plus 20,000 established
# loopback connections (held by 4 processes, 5,000 each: 40,000 TCP sockets
# with both ends). Compares a warm refresh without and with counting every
# listener's connections (criterion). Target: with ≤ 1.5 × without.
#
#   bash bench/connections.sh            # CONNS=20000
set -euo pipefail
cd "$(dirname "$0")/.."
PROCS=${PROCS:-500} TCP=${TCP:-20} UDP=${UDP:-2} FDS=${FDS:-200} CONNS=${CONNS:-20000}
cargo build --release --quiet

ready=$(mktemp -u /tmp/portwarden-hostsim.XXXXXX.json)
python3 ../shared/tools/hostsim.py --procs "$PROCS" --tcp "$TCP" --udp "$UDP" --fds "$FDS" \
  --ready-file "$ready" &
pids=($!)
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; rm -f "$ready" /tmp/pwconn-*.ready' EXIT
until [ -f "$ready" ]; do sleep 0.5; done

per=$((CONNS / 4))
for i in 0 1 2 3; do
  (ulimit -n 65536; exec python3 -c '
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
for i in 0 1 2 3; do until [ -s "/tmp/pwconn-$i.ready" ]; do sleep 0.2; done; done
echo "host: $(ss -Htn state established | wc -l) established TCP sockets"

cargo bench --quiet --bench discovery -- --noplot 'discovery/refresh_warm' 2>&1 \
  | grep -E 'connections counted|time:|^discovery' || true
python3 - <<'PY'
import json
est = lambda n: json.load(open(f"target/criterion/discovery/{n}/new/estimates.json"))["median"]["point_estimate"] / 1e6
a, b = est("refresh_warm"), est("refresh_warm_connections")
print()
print("| warm refresh (criterion median) | without counting | counting connections | ratio | target |")
print("|---|---|---|---|---|")
print(f"| hostsim + 20,000 established loopback connections | {a:.1f} ms | {b:.1f} ms | {b/a:.2f}x | <= 1.5x |")
PY
