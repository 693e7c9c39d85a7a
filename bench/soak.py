#!/usr/bin/env python3
"""Soak test of `portwarden serve` (see bench/soak.sh): churn, scrapers,
hung ports, for a chosen duration; reports scrape errors, latency, the
exporter's RSS and open fds after warm-up and at the end, and panics.

Everything runs on loopback. Standard library only.
"""

import argparse
import gzip
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time


def proc_figures(pid):
    """(RSS in MB, open fds) of a process."""
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(l.split()[1]) for l in f if l.startswith("VmRSS:")) / 1024
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


class Churn(threading.Thread):
    """Opens a listener every 1/rate s (TCP or UDP, on 127.0.0.1:0) and
    closes the oldest once `window` are open: `rate` opens and closes a
    second, in this process."""

    def __init__(self, rate, window, stop):
        super().__init__(daemon=True)
        self.rate, self.window, self.stop, self.opened = rate, window, stop, 0

    def run(self):
        held = []
        period = 1.0 / self.rate
        next_at = time.monotonic()
        while not self.stop.is_set():
            kind = socket.SOCK_STREAM if self.opened % 3 else socket.SOCK_DGRAM
            s = socket.socket(socket.AF_INET, kind)
            s.bind(("127.0.0.1", 0))
            if kind == socket.SOCK_STREAM:
                s.listen(8)
            held.append(s)
            self.opened += 1
            if len(held) > self.window:
                held.pop(0).close()
            next_at += period
            time.sleep(max(0.0, next_at - time.monotonic()))
        for s in held:
            s.close()


class Workers(threading.Thread):
    """Starts a short-lived process holding a few listeners every second:
    owners come and go, pids are new."""

    def __init__(self, stop, lifetime=5, sockets=4):
        super().__init__(daemon=True)
        self.stop, self.lifetime, self.sockets, self.started = stop, lifetime, sockets, 0

    def run(self):
        code = (
            "import socket, sys, time\n"
            "k = [socket.socket() for _ in range(int(sys.argv[1]))]\n"
            "[(s.bind(('127.0.0.1', 0)), s.listen(4)) for s in k]\n"
            "time.sleep(float(sys.argv[2]))\n"
        )
        children = []
        while not self.stop.is_set():
            children.append(
                subprocess.Popen([sys.executable, "-c", code, str(self.sockets), str(self.lifetime)])
            )
            self.started += 1
            children = [c for c in children if c.poll() is None]
            self.stop.wait(1.0)
        for c in children:
            c.kill()
            c.wait()


class Scraper(threading.Thread):
    """Scrapes in a loop, half as Prometheus does (OpenMetrics, gzip, kept
    alive), half as curl does (text, no gzip, a connection each)."""

    def __init__(self, port, n, stop, results):
        super().__init__(daemon=True)
        self.port, self.n, self.stop, self.results = port, n, stop, results

    def run(self):
        prom = self.n % 2 == 0
        conn = None
        while not self.stop.is_set():
            t0 = time.monotonic()
            ok = False
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                headers = (
                    {"Accept": "application/openmetrics-text;version=1.0.0", "Accept-Encoding": "gzip"}
                    if prom
                    else {}
                )
                conn.request("GET", "/metrics", headers=headers)
                r = conn.getresponse()
                body = r.read()
                if r.status == 200:
                    text = gzip.decompress(body) if prom else body
                    ok = text.endswith(b"# EOF\n") if prom else b"node_tcp_port_alive" in text
                if not prom:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException, EOFError):
                if conn is not None:
                    conn.close()
                conn = None
            self.results.append((ok, time.monotonic() - t0))
            time.sleep(0.05)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--duration", type=float, default=600)
    ap.add_argument("--warmup", type=float, default=60)
    ap.add_argument("--scrapers", type=int, default=20)
    ap.add_argument("--rate", type=float, default=46, help="socket opens (and closes) a second, besides 4 a second from short-lived processes")
    args = ap.parse_args()

    stop = threading.Event()
    state = tempfile.mkdtemp(prefix="portwarden-soak-")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(
        os.environ,
        PORT_STATUS_INTERVAL="2s",
        PROCESS_ALIVE_STATUS_INTERVAL="2s",
        PORT_LABEL_INTERVAL="30s",
        PORTWARDEN_PORT_RETENTION="30s",
        PORTWARDEN_BASELINE_LEARN="20s",
        PORTWARDEN_STATE_DIR=state,
    )
    log = open(os.path.join(state, "serve.log"), "w+")
    exporter = subprocess.Popen(
        [args.bin, "serve", "--web.listen-address", f"127.0.0.1:{port}"], env=env, stderr=log
    )
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                sys.exit("exporter did not come up")
            time.sleep(0.1)

    churn, workers = Churn(args.rate, 200, stop), Workers(stop)
    results = []
    scrapers = [Scraper(port, i, stop, results) for i in range(args.scrapers)]
    for t in [churn, workers, *scrapers]:
        t.start()

    start = time.monotonic()
    samples = []
    warm = None
    while time.monotonic() - start < args.duration:
        time.sleep(10)
        if exporter.poll() is not None:
            break
        rss, fds = proc_figures(exporter.pid)
        elapsed = time.monotonic() - start
        samples.append((elapsed, rss, fds))
        if warm is None and elapsed >= args.warmup:
            warm = (rss, fds, len(results))
        print(f"{elapsed:6.0f} s  rss {rss:6.1f} MB  fds {fds:4d}  scrapes {len(results)}", flush=True)
    alive = exporter.poll() is None
    # RSS and fds move with the checks in flight: compare the medians of the
    # minute after the warm-up and of the last minute.
    def window(lo, hi):
        w = [(r, f) for t, r, f in samples if lo <= t < hi]
        return (statistics.median(r for r, _ in w), statistics.median(f for _, f in w)) if w else None
    last = samples[-1][0] if samples else 0
    first_minute = window(args.warmup, args.warmup + 60)
    if warm and first_minute:
        warm = (*first_minute, warm[2])
    end = window(max(args.warmup + 60, last - 60), last + 1) or (
        (samples[-1][1], samples[-1][2]) if samples else (float("nan"), 0)
    )
    stop.set()
    for t in [churn, workers, *scrapers]:
        t.join(timeout=15)
    exporter.send_signal(signal.SIGTERM)
    try:
        code = exporter.wait(timeout=10)
    except subprocess.TimeoutExpired:
        exporter.kill()
        code = "killed after SIGTERM"
    log.seek(0)
    text = log.read()
    panics = text.count("panicked")

    after = results[warm[2]:] if warm else results
    lat = sorted(d for _, d in after) or [0.0]
    errors = sum(1 for ok, _ in results if not ok)
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    growth = lambda a, b: 100.0 * (b - a) / a if a else float("nan")
    report = {
        "duration_s": round(time.monotonic() - start),
        "scrapes": len(results),
        "scrape_errors": errors,
        "scrape_p50_ms": round(statistics.median(lat) * 1e3, 2),
        "scrape_p99_ms": round(p99 * 1e3, 2),
        "sockets_opened_by_churn": churn.opened,
        "short_lived_processes": workers.started,
        "rss_mb_warm": round(warm[0], 1) if warm else None,
        "rss_mb_end": round(end[0], 1),
        "rss_growth_pct": round(growth(warm[0], end[0]), 1) if warm else None,
        "fds_warm": warm[1] if warm else None,
        "fds_end": end[1],
        "rss_mb_max": round(max((r for _, r, _ in samples), default=float("nan")), 1),
        "fds_growth_pct": round(growth(warm[1], end[1]), 1) if warm else None,
        "panics": panics,
        "exporter_alive_at_end": alive,
        "exit_after_sigterm": code,
    }
    print(json.dumps(report))
    print()
    print("| figure | value | target |")
    print("|---|---|---|")
    print(f"| duration | {report['duration_s']} s | |")
    print(f"| listeners opened and closed (churn) | {churn.opened} (+ {workers.started} processes × 4) | ~50/s |")
    print(f"| scrapes (20 concurrent scrapers) | {len(results)} | |")
    print(f"| scrape errors | {errors} | 0 |")
    print(f"| scrape p50 / p99 after warm-up | {report['scrape_p50_ms']} / {report['scrape_p99_ms']} ms | |")
    print(f"| RSS, median of the minute after warm-up → of the last minute (max) | {report['rss_mb_warm']} → {report['rss_mb_end']} MB ({report['rss_growth_pct']}%) ({report['rss_mb_max']}) | ≤ +10% |")
    print(f"| open fds, the same | {report['fds_warm']} → {report['fds_end']} ({report['fds_growth_pct']}%) | ≤ +10% |")
    print(f"| panics | {panics} | 0 |")
    print(f"| exit status after SIGTERM | {code} | 0 |")
    ok = errors == 0 and panics == 0 and alive and code == 0
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
