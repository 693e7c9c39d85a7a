#!/usr/bin/env bash
# HTTP detection on a busy host (examples/hostsim.rs): 500 processes × 20 TCP
# listeners (+2 UDP, 200 extra fds), one answering HTTP per process, the
# others accepting and closing; once without and once with one
# never-accepting listener per process. Checks every 5 s, 1 s timeout.
# Reports how many HTTP ports have node_http_port_alive 1 at 90 s, when all
# of them first did, and the fewest (and any 0) over the next HOLD seconds.
# Then a 6,500-port host (13 listeners per process, one never accepting):
# when the first detection pass reached every HTTP port, against the
# 2 × PORT_HTTP_STATUS_INTERVAL it must stay within.
#
#   bash bench/http-detection.sh          # HOLD=300 PROCS=500
#   ONLY=first-pass bash bench/http-detection.sh   # the 6,500-port host alone
set -euo pipefail
cd "$(dirname "$0")/.."
PROCS=${PROCS:-500} HOLD=${HOLD:-300}
. bench/lib.sh

run_case() {
  local label=$1 tcp=$2 hung=$3 hold=$4 port
  start_sim --procs "$PROCS" --tcp "$tcp" --udp 2 --fds 200 --http 1 --hung "$hung" --accept
  port=$(free_port)
  PORT_STATUS_INTERVAL=5s PORT_HTTP_STATUS_INTERVAL=5s PORT_UDP_STATUS_INTERVAL=5s PORT_CHECK_TIMEOUT=1s \
    "$bin" serve --web.listen-address "127.0.0.1:$port" 2>"$out/http-detection-$label.log" &
  exporter=$!
  python3 - "$label" "$port" "$ready" "$hold" <<'PY'
import json, sys, time, urllib.request
label, port, ready, hold = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
socks = json.load(open(ready))["sockets"]
tcp = [s for s in socks if s["proto"].startswith("tcp")]
# One series per port number, IPv4 and IPv6 together: a port number that
# two listeners got (one on v4, one on v6) is one series; leave those out.
count = {}
for s in tcp:
    count[s["port"]] = count.get(s["port"], 0) + 1
http = {s["port"] for s in tcp if s["role"] == "http" and count[s["port"]] == 1}
start = time.monotonic()
def alive():
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    except OSError:
        return None, {}
    vals = {}
    for line in text.splitlines():
        if line.startswith("node_http_port_alive{"):
            p = int(line.split('port="')[1].split('"')[0])
            vals[p] = float(line.rsplit(" ", 1)[1])
    return text, vals
all_at = at90 = None
lowest, zeros = None, set()
while True:
    t = time.monotonic() - start
    text, vals = alive()
    if text is None:
        time.sleep(0.5); continue
    up = sum(1 for p in http if vals.get(p) == 1.0)
    if all_at is None and up == len(http):
        all_at = t
    if at90 is None and t >= 90:
        at90 = up
    if t >= 90:
        lowest = up if lowest is None else min(lowest, up)
        zeros |= {p for p in http if vals.get(p) == 0.0}
    if hold == 0 and all_at is not None:
        break
    if t >= 90 + hold or (hold == 0 and t >= 120):
        break
    time.sleep(1 if hold == 0 else 5)
missing = sorted(p for p in http if vals.get(p) != 1.0)
if missing:
    print(f"{label}: not alive 1 at the end: {missing[:10]}", file=sys.stderr)
print(f"| {label} | {len(tcp)} TCP, {len(http)} HTTP | "
      + (f"{at90} of {len(http)} | " if hold else "")
      + (f"{all_at:.1f} s | " if all_at is not None else "never | ")
      + (f"{lowest} of {len(http)}, {len(zeros)} ever 0 |" if hold else ""))
PY
  cleanup
}

if [ "${ONLY:-}" != first-pass ]; then
  echo "| host | ports | HTTP alive 1 at 90 s | all HTTP alive 1 after | fewest over the next ${HOLD} s |"
  echo "|---|---|---|---|---|"
  run_case "no hung listeners" 20 0 "$HOLD"
  run_case "$PROCS never-accepting" 20 1 "$HOLD"
  echo
fi
echo "| host | ports | every HTTP port alive 1 after (target: ≤ 10 s = 2 × 5 s) |"
echo "|---|---|---|"
run_case "$PROCS never-accepting" 13 1 0
