#!/usr/bin/env bash
# The status page on the busy host of bench/serve.sh (examples/hostsim.rs:
# --procs 500 --tcp 20 --udp 2 --fds 200 --http 1 --accept: 10,000 TCP
# listeners and 1,000 UDP sockets, ~7,400 port series):
#
#   1. memory: the exporter at its default settings, scraped every 5 s as
#      Prometheus does (bench/rss.py), its RSS the median of the scrapes from
#      75 s to 195 s — the same measure as "Memory as deployed" — and what its
#      histories hold (portwarden_history_bytes). BASE=/path/to/portwarden
#      measures another build the same way first, on the same simulated host
#      (the one before the page, say), for a before/after on the same
#      machine in the same hour.
#   2. the page and the API while it runs: `/`, `/api/v1/ports`,
#      `/api/v1/ports?history=false`, a filtered `/api/v1/ports?health=down`
#      and a badge, each timed by hyperfine (curl, 10 runs) with its size.
#
# Results: target/bench/status.txt. The history's cost over a whole day
# (steady, a bad minute an hour, flapping) is benches/history.rs.
#
#   bash bench/status.sh
#   BASE=/tmp/base/target/release/portwarden bash bench/status.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PROCS=${PROCS:-500}
. bench/lib.sh
command -v hyperfine >/dev/null || { echo "hyperfine is missing: apt-get install hyperfine" >&2; exit 1; }
results=$out/status.txt
: >"$results"
say() { echo "$*" | tee -a "$results"; }

measure() {
  local label=$1 exe=$2 port
  port=$(free_port)
  env PORTWARDEN_STATE_DIR="$(mktemp -d)" "$exe" serve --web.listen-address "127.0.0.1:$port" \
    2>"$out/status-$label.log" &
  exporter=$!
  python3 bench/rss.py "$port" "$exporter" 75 195 "status-$label" >/dev/null
  python3 - "$out/rss-status-$label.json" "$label" <<'PY' | tee -a "$results"
import json, sys
r = json.load(open(sys.argv[1]))
print(f"{sys.argv[2]}: RSS median over 75-195 s {r['rss_median_mb']:.1f} MB (largest {r['rss_max_mb']:.1f}, peak {r['peak_rss_mb']:.1f})")
PY
  local scrape
  scrape=$(curl -s "http://127.0.0.1:$port/metrics")
  say "$label: $(grep -E '^portwarden_ports\{' <<<"$scrape" | tr '\n' ' ')"
  if grep -q '^portwarden_history_bytes' <<<"$scrape"; then
    local series bytes
    series=$(grep -E '^portwarden_ports\{' <<<"$scrape" | awk '{s+=$2} END {print s}')
    bytes=$(awk '/^portwarden_history_bytes/ {print $2}' <<<"$scrape")
    say "$label: history $(python3 -c "print(f'{$bytes/1e6:.2f} MB counted, {$bytes/$series:.0f} bytes a port series')")"
    local badge_port
    badge_port=$(python3 - "$ready" <<'PY'
import json, sys
print(next(s["port"] for s in json.load(open(sys.argv[1]))["sockets"] if s["proto"] == "tcp"))
PY
)
    for path in "/" "/api/v1/ports" "/api/v1/ports?history=false" "/api/v1/ports?health=down" "/badge/tcp/$badge_port.svg"; do
      local url="http://127.0.0.1:$port$path" size
      size=$(curl -s -o /dev/null -w '%{size_download}' "$url")
      hyperfine --warmup 1 --runs 10 --export-json "$out/status-page.json" "curl -s -o /dev/null '$url'" >/dev/null
      python3 - "$out/status-page.json" "$path" "$size" <<'PY' | tee -a "$results"
import json, sys
r = json.load(open(sys.argv[1]))["results"][0]
print(f"GET {sys.argv[2]}: mean {r['mean']*1e3:.1f} ms (min {r['min']*1e3:.1f}, max {r['max']*1e3:.1f}), {int(sys.argv[3])/1e6:.2f} MB")
PY
    done
  fi
  kill "$exporter" 2>/dev/null && { wait "$exporter" 2>/dev/null || true; }
  exporter=""
}

start_sim --procs "$PROCS" --tcp 20 --udp 2 --fds 200 --http 1 --accept
if [ -n "${BASE:-}" ]; then
  measure before "$BASE"
fi
measure now "$bin"
