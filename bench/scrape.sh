#!/usr/bin/env bash
# Scrape latency by exposition variant, beside node_exporter, on the busy
# host of examples/hostsim.rs (--procs 500 --tcp 20 --udp 2 --fds 200
# --http 1 --accept: 10,000 TCP listeners), portwarden at 5 s intervals (the
# host kept busy by its own rounds and discovery). One run, in turns, each
# scraper on one kept-alive connection, one scrape every 100 ms:
#   - portwarden, OpenMetrics + gzip (what Prometheus asks for)
#   - portwarden, text 0.0.4 + gzip (curl --compressed, and any scraper
#     that does not ask for OpenMetrics)
#   - Debian's node_exporter, as Prometheus asks (its text + gzip)
# SCRAPES of each (default 300), medians and p99 printed as a Markdown table
# and written to target/bench/scrape.json.
#
#   bash bench/scrape.sh            # PROCS=100 for a smaller host
set -euo pipefail
cd "$(dirname "$0")/.."
PROCS=${PROCS:-500} SCRAPES=${SCRAPES:-300}
. bench/lib.sh
command -v prometheus-node-exporter >/dev/null || {
  echo "bench/scrape.sh: needs Debian's prometheus-node-exporter (apt-get install prometheus-node-exporter)" >&2
  exit 1
}

start_sim --procs "$PROCS" --tcp 20 --udp 2 --fds 200 --http 1 --accept
port=$(free_port)
PORT_STATUS_INTERVAL=5s PROCESS_ALIVE_STATUS_INTERVAL=5s \
  "$bin" serve --web.listen-address "127.0.0.1:$port" 2>"$out/scrape-portwarden.log" &
exporter=$!
node_port=$(free_port)
prometheus-node-exporter --web.listen-address "127.0.0.1:$node_port" 2>"$out/scrape-node.log" &
node=$!
trap 'kill $node 2>/dev/null || true; cleanup' EXIT

python3 - "$port" "$node_port" "$SCRAPES" <<'PY'
import http.client, json, statistics, sys, time
port, node_port, n = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
prometheus = "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
cases = [
    ("portwarden, OpenMetrics + gzip", port, prometheus),
    ("portwarden, text 0.0.4 + gzip", port, "text/plain;version=0.0.4"),
    ("node_exporter (Debian's), as Prometheus asks", node_port, prometheus),
]

def wait_ready():
    deadline = time.time() + 180
    while time.time() < deadline:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            c.request("GET", "/metrics")
            body = c.getresponse().read().decode()
            # The first TCP round over the whole host is done.
            if 'portwarden_last_probe_round_timestamp_seconds{kind="tcp"}' in body:
                return
        except OSError:
            pass
        time.sleep(1)
    sys.exit("portwarden did not complete a round")

wait_ready()
times = {name: [] for name, _, _ in cases}
conns = {}
# In turns: every case meets the same moments of the host.
for i in range(n):
    for name, p, accept in cases:
        c = conns.get(name) or http.client.HTTPConnection("127.0.0.1", p, timeout=30)
        conns[name] = c
        t = time.perf_counter()
        c.request("GET", "/metrics", headers={"Accept": accept, "Accept-Encoding": "gzip"})
        r = c.getresponse()
        r.read()
        times[name].append((time.perf_counter() - t) * 1000)
        if r.status != 200:
            sys.exit(f"{name}: HTTP {r.status}")
    time.sleep(0.1)

def p(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]

out = {name: {"median_ms": statistics.median(xs), "p99_ms": p(xs, 0.99), "max_ms": max(xs), "n": len(xs)}
       for name, xs in times.items()}
json.dump(out, open("target/bench/scrape.json", "w"), indent=1)
node = out[cases[2][0]]["p99_ms"]
print(f"| {n} scrapes each, in turns, every 100 ms | median | p99 | p99 / node_exporter's |")
print("|---|---|---|---|")
for name, _, _ in cases:
    r = out[name]
    print(f"| {name} | {r['median_ms']:.2f} ms | {r['p99_ms']:.2f} ms | {r['p99_ms'] / node:.3f} |")
PY
