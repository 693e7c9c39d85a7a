#!/usr/bin/env bash
# Checking by list at scale: 10,000 targets, local listeners made by
# examples/hostsim.rs (500 processes x 20 TCP listeners that accept and
# close, on 127.0.0.1, 0.0.0.0, ::1 and ::, checked at loopback), each checked by a TCP connect, at most 64 at once (the default
# --probe.concurrency, the one cap every check of a process shares).
#
#   1. `portwarden check -f targets.yml` (hyperfine, 5 runs): the whole list
#      in one command.
#   2. `portwarden serve --targets.file targets.yml`: the first round, from
#      the start until every target has a result in /metrics (the exporter
#      discovers and checks the same 10,000 ports as its own meanwhile, in
#      the same cap), polled as Prometheus asks every 50 ms; its RSS 30 s
#      later (and `check`'s maximum RSS, by /usr/bin/time -v).
#   3. /probe, blackbox_exporter's way, 10,000 requests from 64 kept-alive
#      connections (bench/probe_load.py): to portwarden, then to Debian's
#      prometheus-blackbox-exporter (when installed) with the same module.
#
# Targets per second of each are printed and written to
# target/bench/targets.txt.
#
#   bash bench/targets.sh          # PROCS=100 for 2,000 targets
set -euo pipefail
cd "$(dirname "$0")/.."
PROCS=${PROCS:-500}
. bench/lib.sh
command -v hyperfine >/dev/null || { echo "hyperfine is missing: apt-get install hyperfine" >&2; exit 1; }
results=$out/targets.txt
: >"$results"
say() { echo "$*" | tee -a "$results"; }

start_sim --procs "$PROCS" --tcp 20 --udp 0 --fds 0 --http 0 --accept
targets=$out/targets.yml list=$out/targets.list
python3 - "$ready" "$targets" "$list" <<'PY'
import json, sys
ready, yml, lst = sys.argv[1:4]
socks = [s for s in json.load(open(ready))["sockets"] if s["proto"] in ("tcp", "tcp6")]
addrs = []
for s in socks:
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(s["addr"], s["addr"])
    addrs.append(f"[{host}]:{s['port']}" if ":" in host else f"{host}:{s['port']}")
with open(yml, "w") as f:
    f.write("targets:\n")
    for a in addrs:
        f.write(f"  - target: '{a}'\n")
with open(lst, "w") as f:
    f.write("\n".join(addrs) + "\n")
print(f"{len(addrs)} targets", file=sys.stderr)
PY
n=$(wc -l <"$list")
say "targets: $n local TCP listeners (hostsim --procs $PROCS --tcp 20 --accept), cap 64 checks at once"

# 1. One command.
hyperfine --warmup 1 --runs 5 --export-json "$out/targets-check.json" \
  "$bin check -f $targets --concurrency 64 --timeout 2s >/dev/null" >/dev/null
python3 - "$out/targets-check.json" "$n" <<'PY' | tee -a "$results"
import json, sys
r = json.load(open(sys.argv[1]))["results"][0]
n = int(sys.argv[2])
print(f"check -f: mean {r['mean']:.3f} s (min {r['min']:.3f}, max {r['max']:.3f}) = {n / r['mean']:,.0f} targets/s")
PY

/usr/bin/time -v "$bin" check -f "$targets" --concurrency 64 --timeout 2s >/dev/null 2>"$out/targets-check-time.txt" || true
say "check -f: max RSS $(awk -F': ' '/Maximum resident/ {printf "%.1f MB", $2/1024}' "$out/targets-check-time.txt")"

# 2. The exporter's first round.
port=$(free_port)
start=$(date +%s.%N)
PORTWARDEN_TARGETS_INTERVAL=1h "$bin" serve --web.listen-address "127.0.0.1:$port" \
  --targets.file "$targets" 2>"$out/targets-serve.log" &
exporter=$!
python3 - "$port" "$n" "$start" <<'PY' | tee -a "$results"
import gzip, sys, time, urllib.request
port, n, start = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
deadline = time.time() + 120
# Asked as Prometheus asks (OpenMetrics, gzip): the body encoded at each
# publish, so that polling adds no encoding of its own.
ask = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers={
    "Accept": "application/openmetrics-text;version=1.0.0", "Accept-Encoding": "gzip"})
while time.time() < deadline:
    try:
        text = gzip.decompress(urllib.request.urlopen(ask, timeout=10).read()).decode()
    except OSError:
        time.sleep(0.05)
        continue
    done = sum(1 for l in text.splitlines() if l.startswith("portwarden_target_up{"))
    up = sum(1 for l in text.splitlines() if l.startswith("portwarden_target_up{") and l.endswith(" 1"))
    if done >= n:
        took = time.time() - start
        print(f"serve: first round of {n} targets done {took:.2f} s after the start ({up} up) = {n / took:,.0f} targets/s, start and discovery included")
        break
    time.sleep(0.05)
else:
    sys.exit("the first round never finished")
PY

sleep 30
say "serve: RSS 30 s after the first round, 10,000 targets and the simulator's 10,000 ports: $(awk '/VmRSS/ {printf "%.1f MB", $2/1024}' /proc/$exporter/status)"

# 3. /probe, ours then blackbox's.
say "$(python3 bench/probe_load.py "127.0.0.1:$port" "$list" portwarden)"
cleanup_exporter() { kill "$exporter" 2>/dev/null && { wait "$exporter" 2>/dev/null || true; }; exporter=""; }
cleanup_exporter
if [ -x /usr/bin/prometheus-blackbox-exporter ]; then
  bport=$(free_port)
  printf 'modules:\n  tcp_connect:\n    prober: tcp\n    timeout: 2s\n' >"$out/blackbox.yml"
  /usr/bin/prometheus-blackbox-exporter --config.file "$out/blackbox.yml" \
    --web.listen-address "127.0.0.1:$bport" 2>"$out/blackbox.log" &
  exporter=$!
  until python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$bport/-/healthy', timeout=1)" 2>/dev/null; do sleep 0.2; done
  say "$(python3 bench/probe_load.py "127.0.0.1:$bport" "$list" blackbox_exporter)"
  cleanup_exporter
else
  say "blackbox_exporter: not installed (apt-get install prometheus-blackbox-exporter)"
fi
