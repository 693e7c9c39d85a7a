"""Servers for the checks by list (tests/targets.rs): one of each kind a
target can be, on 127.0.0.1, in whatever network namespace this runs in.

    python3 tests/zoo.py CERT KEY

prints one JSON line of ports, then serves until stdin closes.

tcp_open      accepts and closes
tcp_never     listens and never accepts; its queue is full, so SYNs are dropped
http          GET /ok 200 "hello portwarden", /redirect 302 -> /ok, /missing 404,
              /metadata 302 -> a link-local address (refused by --probe.deny),
              /busy 503, /hang (headers, then nothing), /maintenance (200 with
              X-Mode: maintenance); POST /ok 200 "posted:<body>"
https         the same over TLS (CERT, KEY)
banner        says "SSH-2.0-zoo", waits a second for a line, closes
tcp_closed    a TCP port nothing listens on
udp_echo      sends each datagram back
udp_silent    reads and never answers
udp_closed    a port nothing is bound to (ICMP port unreachable)
"""
import json
import socket
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

cert, key = sys.argv[1], sys.argv[2]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, body=b"", headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        self.answer(200 if self.path == "/ok" else 404, b"posted:" + body)

    def do_GET(self):
        path = self.path.split("?")[0]
        if path == "/ok":
            self.answer(200, b"hello portwarden\n")
        elif path == "/redirect":
            self.answer(302, headers=[("Location", "/ok")])
        elif path == "/metadata":
            self.answer(302, headers=[("Location", "http://169.254.169.254/latest/")])
        elif path == "/missing":
            self.answer(404, b"no\n")
        elif path == "/busy":
            self.answer(503, b"busy\n")
        elif path == "/maintenance":
            self.answer(200, b"down for maintenance\n", [("X-Mode", "maintenance")])
        elif path == "/hang":
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
            self.wfile.flush()
            time.sleep(60)
        else:
            self.answer(404)


def serve_http(tls):
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    if tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server.server_address[1]


def tcp_open():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(64)

    def run():
        while True:
            c, _ = s.accept()
            c.close()

    threading.Thread(target=run, daemon=True).start()
    return s, s.getsockname()[1]


def tcp_never():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(0)
    port = s.getsockname()[1]
    fillers = []
    # backlog 0 holds one connection; a second waits in SYN-RECV or is
    # dropped. Two that complete are enough to fill the queue.
    for _ in range(2):
        c = socket.socket()
        c.setblocking(False)
        c.connect_ex(("127.0.0.1", port))
        fillers.append(c)
    time.sleep(0.2)
    return s, fillers, port


def banner():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(64)

    def talk(c):
        try:
            c.sendall(b"SSH-2.0-zoo\r\n")
            c.settimeout(1)
            c.recv(1024)
        except OSError:
            pass
        finally:
            c.close()

    def run():
        while True:
            c, _ = s.accept()
            threading.Thread(target=talk, args=(c,), daemon=True).start()

    threading.Thread(target=run, daemon=True).start()
    return s, s.getsockname()[1]


def udp_echo():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))

    def run():
        while True:
            data, peer = s.recvfrom(65535)
            s.sendto(b"echo:" + data, peer)

    threading.Thread(target=run, daemon=True).start()
    return s, s.getsockname()[1]


def udp_silent():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    return s, s.getsockname()[1]


def closed(kind):
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


keep = []
ports = {}
sock, ports["tcp_open"] = tcp_open()
keep.append(sock)
sock, fillers, ports["tcp_never"] = tcp_never()
keep += [sock] + fillers
ports["http"] = serve_http(False)
ports["https"] = serve_http(True)
sock, ports["banner"] = banner()
keep.append(sock)
sock, ports["udp_echo"] = udp_echo()
keep.append(sock)
sock, ports["udp_silent"] = udp_silent()
keep.append(sock)
ports["udp_closed"] = closed(socket.SOCK_DGRAM)
ports["tcp_closed"] = closed(socket.SOCK_STREAM)
print(json.dumps(ports), flush=True)
sys.stdin.read()
