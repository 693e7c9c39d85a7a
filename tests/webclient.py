"""One HTTP(S) request to 127.0.0.1, described by a JSON argument; prints
its outcome as one JSON line, the same way for any server, so the tests can
compare portwarden with node_exporter:

  {"status": 200, "www_authenticate": null, "headers": {...}, "body_start": "..."}
  {"error": "tls"}      the TLS handshake or the connection after it failed
  {"error": "closed"}   the server closed the connection without an answer

Request fields: port, tls (bool), ca, cert, key (paths), user, password,
path (default /metrics), min_tls ("TLS13" to refuse 1.2), max_tls, header
(list of extra header names to report).
"""

import base64
import hashlib
import json
import socket
import ssl
import sys


def main():
    req = json.loads(sys.argv[1])
    out = {}
    try:
        sock = socket.create_connection(("127.0.0.1", req["port"]), timeout=10)
        if req.get("tls"):
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.load_verify_locations(req["ca"])
            if req.get("cert"):
                ctx.load_cert_chain(req["cert"], req["key"])
            if req.get("min_tls") == "TLS13":
                ctx.minimum_version = ssl.TLSVersion.TLSv1_3
            if req.get("max_tls") == "TLS12":
                ctx.maximum_version = ssl.TLSVersion.TLSv1_2
            try:
                sock = ctx.wrap_socket(sock, server_hostname="localhost")
            except (ssl.SSLError, ConnectionError, OSError):
                print(json.dumps({"error": "tls"}))
                return
            out["peer_sha256"] = hashlib.sha256(sock.getpeercert(binary_form=True)).hexdigest()
            out["tls_version"] = sock.version()
        lines = ["GET %s HTTP/1.1" % req.get("path", "/metrics"), "Host: localhost", "Connection: close"]
        if "user" in req:
            token = base64.b64encode(("%s:%s" % (req["user"], req["password"])).encode()).decode()
            lines.append("Authorization: Basic " + token)
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        raw = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            raw += chunk
    except ssl.SSLError:
        print(json.dumps({"error": "tls"}))
        return
    except (ConnectionError, socket.timeout, OSError) as e:
        if req.get("tls") and "raw" not in locals():
            print(json.dumps({"error": "tls"}))
        else:
            print(json.dumps({"error": "closed", "detail": str(e)}))
        return
    if not raw:
        print(json.dumps({"error": "tls" if req.get("tls") else "closed"}))
        return
    head, _, body = raw.partition(b"\r\n\r\n")
    head_lines = head.decode("latin-1").split("\r\n")
    status = int(head_lines[0].split(" ")[1])
    headers = {}
    for line in head_lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    out.update({
        "status": status,
        "www_authenticate": headers.get("www-authenticate"),
        "headers": {h.lower(): headers.get(h.lower()) for h in req.get("header", [])},
        "body_start": body[:60].decode("utf-8", "replace") if status != 200 else None,
    })
    print(json.dumps(out))


main()
