"""Asks an exporter's /probe about every target of a list, as Prometheus
does with blackbox_exporter's multi-target pattern: module tcp_connect,
X-Prometheus-Scrape-Timeout-Seconds 10, from 64 kept-alive HTTP/1.1
connections at once. Prints the time and targets per second.

    python3 bench/probe_load.py HOST:PORT TARGETS.list LABEL
"""
import asyncio
import sys
import time
import urllib.parse

addr, path, label = sys.argv[1], sys.argv[2], sys.argv[3]
host, port = addr.rsplit(":", 1)
targets = [line.strip() for line in open(path) if line.strip()]
CONNECTIONS = 64


async def worker(queue, results):
    reader, writer = await asyncio.open_connection(host, int(port))
    while True:
        try:
            target = queue.get_nowait()
        except asyncio.QueueEmpty:
            break
        q = urllib.parse.urlencode({"target": target, "module": "tcp_connect"})
        writer.write(
            f"GET /probe?{q} HTTP/1.1\r\nHost: {addr}\r\n"
            "X-Prometheus-Scrape-Timeout-Seconds: 10\r\n\r\n".encode()
        )
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        chunked = False
        for line in head.split(b"\r\n"):
            k, _, v = line.partition(b":")
            if k.strip().lower() == b"content-length":
                length = int(v.strip())
            if k.strip().lower() == b"transfer-encoding" and b"chunked" in v.lower():
                chunked = True
        if chunked:
            body = b""
            while True:
                size = int((await reader.readuntil(b"\r\n")).strip(), 16)
                chunk = await reader.readexactly(size + 2)
                if size == 0:
                    break
                body += chunk[:-2]
        else:
            body = await reader.readexactly(length)
        status = head.split(b" ", 2)[1]
        results.append((status == b"200", b"probe_success 1" in body))
    writer.close()


async def main():
    queue = asyncio.Queue()
    for t in targets:
        queue.put_nowait(t)
    results = []
    start = time.perf_counter()
    await asyncio.gather(*(worker(queue, results) for _ in range(CONNECTIONS)))
    took = time.perf_counter() - start
    ok = sum(1 for status, _ in results if status)
    success = sum(1 for _, s in results if s)
    print(
        f"{label} /probe: {len(results)} targets in {took:.2f} s = {len(results) / took:,.0f} targets/s "
        f"({ok} answered 200, {success} probe_success 1; {CONNECTIONS} connections)"
    )


asyncio.run(main())
