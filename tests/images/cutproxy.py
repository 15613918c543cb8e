#!/usr/bin/env python3
"""cutproxy.py LISTEN_PORT UPSTREAM_PORT CUT_AFTER LOG: an HTTP proxy on 127.0.0.1 in front of a
registry that cuts the first full (200) blob response longer than CUT_AFTER after that many bytes, and logs each
request line with its Range header to LOG. One connection per request (no keep-alive)."""
import socket, sys, threading

listen, upstream, cut_after, log = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
state = {"cut": False}
lock = threading.Lock()


def handle(c):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = c.recv(65536)
        if not chunk:
            c.close()
            return
        data += chunk
    head = data.split(b"\r\n\r\n")[0].decode("latin-1")
    lines = head.split("\r\n")
    rng = [l for l in lines if l.lower().startswith("range:")]
    with open(log, "a") as f:
        f.write(lines[0] + (" " + rng[0] if rng else "") + "\n")
    # One request per connection (both ways), so the cut is per response.
    body = data.split(b"\r\n\r\n", 1)[1]
    kept = [l for l in lines if not l.lower().startswith("connection:")]
    data = ("\r\n".join(kept + ["Connection: close"]) + "\r\n\r\n").encode("latin-1") + body
    u = socket.create_connection(("127.0.0.1", upstream))
    u.sendall(data)
    is_blob = "/blobs/sha256:" in lines[0] and lines[0].startswith("GET")
    resp = b""
    body_seen = 0
    header_done = False
    while True:
        chunk = u.recv(65536)
        if not chunk:
            break
        if is_blob and not header_done:
            resp += chunk
            if b"\r\n\r\n" in resp:
                header_done = True
                h, rest = resp.split(b"\r\n\r\n", 1)
                clen = [int(l.split(b":")[1]) for l in h.split(b"\r\n") if l.lower().startswith(b"content-length:")]
                full = h.startswith(b"HTTP/1.1 200") and bool(clen) and clen[0] > cut_after
                with lock:
                    do_cut = full and not state["cut"]
                    if do_cut:
                        state["cut"] = True
                if do_cut:
                    while len(rest) < cut_after:
                        more = u.recv(65536)
                        if not more:
                            break
                        rest += more
                    c.sendall(h + b"\r\n\r\n" + rest[:cut_after])
                    c.close()
                    u.close()
                    return
                c.sendall(resp)
            continue
        c.sendall(chunk)
    c.close()
    u.close()


s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", listen))
s.listen(16)
print("ready", flush=True)
while True:
    conn, _ = s.accept()
    threading.Thread(target=handle, args=(conn,), daemon=True).start()
