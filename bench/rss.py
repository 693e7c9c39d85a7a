"""Scrapes an exporter as Prometheus does (every 5 s, OpenMetrics, gzip, one
kept-alive connection) for `until` seconds from its start, and reads its RSS
from /proc after each scrape; prints the median and the largest RSS over the
scrapes from `since` seconds on, as JSON.

    python3 bench/rss.py PORT PID SINCE UNTIL LABEL
"""
import http.client, json, statistics, sys, time

port, pid, since, until, label = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
accept = "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
start = time.time()
conn, rss, sizes, errors = None, [], [], 0


def status(key):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(key):
            return int(line.split()[1]) / 1024


while time.time() - start < until:
    t = time.time() - start
    try:
        if conn is None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", "/metrics", headers={"Accept": accept, "Accept-Encoding": "gzip"})
        r = conn.getresponse()
        body = r.read()
        if r.status != 200:
            errors += 1
        if t >= since:
            rss.append(status("VmRSS:"))
            sizes.append(len(body))
    except OSError:
        conn = None
        errors += 1
    time.sleep(max(0.0, 5 - ((time.time() - start) % 5)))
res = {
    "label": label,
    "rss_median_mb": statistics.median(rss),
    "rss_max_mb": max(rss),
    "peak_rss_mb": status("VmHWM:"),
    "scrapes": len(rss),
    "errors": errors,
    "gzip_bytes": statistics.median(sizes),
}
print(json.dumps(res))
json.dump(res, open(f"target/bench/rss-{label}.json", "w"))
