#!/usr/bin/env bash
# Exporter benchmark on a busy host made by examples/hostsim.rs
# (--procs 500 --tcp 20 --udp 2 --fds 200 --http 1 --accept), run twice in one
# go: once with 500 hung ports (--hung 1: listening, never accepting), once
# without. For each: the first full TCP round over the 10,000 ports (checks
# started as fast as --probe.concurrency allows), the steady-state round,
# scrape latency over 200 scrapes as Prometheus makes them (OpenMetrics,
# gzip, one kept-alive connection), and the exporter's RSS.
#
# Then memory as deployed: the exporter at its default settings (and at 5 s
# intervals) on the host without hung ports, scraped every 5 s, its RSS the
# median over the scrapes from 75 s to 195 s (bench/rss.py); node_exporter
# (Debian's, when installed) measured the same way beside it; and each
# collector's samples and bytes in one text scrape.
#
#   bash bench/serve.sh              # PROCS=100 for a smaller host
#   ONLY=memory bash bench/serve.sh  # the memory part alone
#   ONLY=latency bash bench/serve.sh # the rounds and scrapes alone
set -euo pipefail
cd "$(dirname "$0")/.."
PROCS=${PROCS:-500} SCRAPES=${SCRAPES:-200}
. bench/lib.sh

run_case() {
  local label=$1 hung=$2 port
  start_sim --procs "$PROCS" --tcp 20 --udp 2 --fds 200 --http 1 --hung "$hung" --accept
  port=$(free_port)
  PORT_STATUS_INTERVAL=20s PORTWARDEN_PROBE_SPREAD=false \
    "$bin" serve --web.listen-address "127.0.0.1:$port" 2>"$out/serve-$label.log" &
  exporter=$!
  python3 - "$label" "$port" "$exporter" "$SCRAPES" <<'PY'
import http.client, json, statistics, sys, time
label, port, pid, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
accept = "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
conn = None
def scrape():
    global conn
    if conn is None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/metrics", headers={"Accept": accept, "Accept-Encoding": "gzip"})
    r = conn.getresponse()
    body = r.read()
    return r, body
def metric(name):
    import gzip
    _, body = scrape()
    for line in gzip.decompress(body).decode().splitlines():
        if line.startswith(name):
            return float(line.rsplit(" ", 1)[1])
    return None
deadline = time.time() + 120
rounds = []
while time.time() < deadline:
    try:
        ts = metric('portwarden_last_probe_round_timestamp_seconds{kind="tcp"}')
    except OSError:
        conn = None; ts = None; time.sleep(0.2); continue
    if ts is not None and (not rounds or ts != rounds[-1][0]):
        rounds.append((ts, metric('portwarden_probe_round_duration_seconds{kind="tcp"}')))
        if len(rounds) == 3:
            break
    time.sleep(0.2)
ports = metric('portwarden_ports{proto="tcp"}')
times = []
for _ in range(n):
    t = time.perf_counter(); r, body = scrape(); times.append((time.perf_counter() - t) * 1000)
    assert r.status == 200
    time.sleep(0.02)
times.sort()
def status(key):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(key):
            return int(line.split()[1]) / 1024
res = {"label": label, "tcp_ports": ports, "rounds_s": [r[1] for r in rounds],
       "scrape_median_ms": statistics.median(times), "scrape_p99_ms": times[int(len(times) * 0.99) - 1],
       "scrape_max_ms": times[-1], "gzip_bytes": len(body), "rss_mb": status("VmRSS:"), "peak_rss_mb": status("VmHWM:")}
print(json.dumps(res))
json.dump(res, open(f"target/bench/serve-{label}.json", "w"))
PY
  cleanup
}

memory_case() {
  local label=$1 port; shift
  start_sim --procs "$PROCS" --tcp 20 --udp 2 --fds 200 --http 1 --accept
  port=$(free_port)
  env PORTWARDEN_STATE_DIR="$(mktemp -d)" "$@" "$bin" serve --web.listen-address "127.0.0.1:$port" \
    2>"$out/memory-$label.log" &
  exporter=$!
  python3 bench/rss.py "$port" "$exporter" 75 195 "$label"
  if [ "$label" = default ]; then
    curl -s "http://127.0.0.1:$port/metrics" -o "$out/exposition.txt"
  fi
  cleanup
}

node_exporter_case() {
  local port
  start_sim --procs "$PROCS" --tcp 20 --udp 2 --fds 200 --http 1 --accept
  port=$(free_port)
  prometheus-node-exporter --web.listen-address "127.0.0.1:$port" 2>"$out/node-exporter.log" &
  exporter=$!
  python3 bench/rss.py "$port" "$exporter" 75 195 node_exporter
  cleanup
}

if [ "${ONLY:-}" != memory ]; then
run_case hung 1
run_case nohung 0

python3 - <<'PY'
import json
h = json.load(open("target/bench/serve-hung.json")); n = json.load(open("target/bench/serve-nohung.json"))
print()
print("| figure | with 500 hung ports | without | target |")
print("|---|---|---|---|")
print(f"| TCP ports checked | {h['tcp_ports']:.0f} | {n['tcp_ports']:.0f} | |")
print(f"| first full TCP round | {h['rounds_s'][0]:.2f} s | {n['rounds_s'][0]:.2f} s | <= 2 s |")
print(f"| later rounds | {', '.join(f'{r:.2f}' for r in h['rounds_s'][1:])} s | {', '.join(f'{r:.2f}' for r in n['rounds_s'][1:])} s | |")
print(f"| scrape median (200, OpenMetrics + gzip) | {h['scrape_median_ms']:.2f} ms | {n['scrape_median_ms']:.2f} ms | <= 15 ms |")
print(f"| scrape p99 | {h['scrape_p99_ms']:.2f} ms | {n['scrape_p99_ms']:.2f} ms | <= 40 ms |")
print(f"| scrape median, hung / not hung | {h['scrape_median_ms'] / n['scrape_median_ms']:.2f}x | | <= 1.2x |")
print(f"| RSS after the scrapes (peak) | {h['rss_mb']:.1f} MB ({h['peak_rss_mb']:.1f}) | {n['rss_mb']:.1f} MB ({n['peak_rss_mb']:.1f}) | <= 30 MB |")
print(f"| gzipped scrape size | {h['gzip_bytes'] / 1024:.0f} KiB | {n['gzip_bytes'] / 1024:.0f} KiB | |")
PY
fi

[ "${ONLY:-}" = latency ] && exit 0
memory_case default
memory_case fast PORT_STATUS_INTERVAL=5s PROCESS_ALIVE_STATUS_INTERVAL=5s
if command -v prometheus-node-exporter >/dev/null; then node_exporter_case; fi

python3 - <<'PY'
import json, os, re
r = {k: json.load(open(f"target/bench/rss-{k}.json")) for k in ("default", "fast", "node_exporter")
     if os.path.exists(f"target/bench/rss-{k}.json")}
print()
print("| RSS, median of the scrapes from 75 s to 195 s (largest) | portwarden | target |")
print("|---|---|---|")
d, f = r["default"], r["fast"]
print(f"| default settings | {d['rss_median_mb']:.1f} MB ({d['rss_max_mb']:.1f}) | <= 20 MB |")
print(f"| 5 s intervals | {f['rss_median_mb']:.1f} MB ({f['rss_max_mb']:.1f}) | <= 30 MB |")
if "node_exporter" in r:
    n = r["node_exporter"]
    print(f"| node_exporter (Debian's), scraped the same way | {n['rss_median_mb']:.1f} MB ({n['rss_max_mb']:.1f}) | |")
# Each collector's share of one text scrape.
groups = {
    "plugin (always)": ["node_"],
    "load": ["portwarden_tcp_listen_", "portwarden_netns_listen_", "portwarden_tcp_port_connections", "portwarden_tcp_port_peers"],
    "health": ["portwarden_port_health"],
    "info": ["portwarden_port_info"],
    "baseline": ["portwarden_expected_port_up", "portwarden_port_unexpected", "portwarden_baseline_"],
}
count = {g: [0, 0] for g in groups}
count["self (always)"] = [0, 0]
total = [0, 0]
for line in open("target/bench/exposition.txt", "rb"):
    n = len(line)
    total[1] += n
    name = line.decode(errors="replace").lstrip("# HELPTYPE").split("{")[0].split(" ")[0]
    group = next((g for g, prefixes in groups.items() if any(name.startswith(p) for p in prefixes)), "self (always)")
    count[group][1] += n
    if not line.startswith(b"#"):
        count[group][0] += 1
        total[0] += 1
print()
print("| collector | samples | bytes (text) |")
print("|---|---|---|")
for g, (samples, size) in count.items():
    print(f"| {g} | {samples:,} | {size / 1e6:.2f} MB |")
print(f"| all | {total[0]:,} | {total[1] / 1e6:.2f} MB |")
PY
