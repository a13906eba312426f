#!/usr/bin/python3
"""deploy_fake_gw.py: a stand-in for one ota-gateway, for checking the
HAProxy configuration (tests/integration/test_deploy_configs.sh).

  deploy_fake_gw.py NAME PUBLIC_PORT ADMIN_PORT READY_FILE

Admin port: GET /readyz answers 200 while READY_FILE exists, else 503;
anything that is not a plain HTTP request (for example a PROXY header sent
to the health-check port by mistake) gets 400.  Public port: every
connection must start with a PROXY protocol v2 header (TCP over IPv4),
then a WebSocket upgrade; the answer is 101 and one text frame
{"gateway": NAME, "proxy_src": "ADDR:PORT", "path": PATH}, then a close
frame.  A connection without a valid PROXY v2 header is closed at once.
Loopback only; it never writes outside its own output.
"""
import asyncio
import base64
import hashlib
import json
import os
import socket
import struct
import sys

V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


async def read_head(reader):
    data = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    if len(data) > 8192:
        raise ValueError("head too long")
    lines = data.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    return method, path, headers


def main():
    name, pub_port, admin_port, ready_file = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]

    async def admin(reader, writer):
        try:
            method, path, _ = await read_head(reader)
            if method == "GET" and path == "/readyz":
                ok = os.path.exists(ready_file)
                status, body = ("200 OK", b"ready\n") if ok else ("503 Service Unavailable", b"draining\n")
            else:
                status, body = "404 Not Found", b"no\n"
        except (ValueError, asyncio.IncompleteReadError, asyncio.TimeoutError, asyncio.LimitOverrunError):
            status, body = "400 Bad Request", b"bad request\n"
        writer.write(f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
        await writer.drain()
        writer.close()

    async def public(reader, writer):
        try:
            hdr = await asyncio.wait_for(reader.readexactly(16), 5)
            if hdr[:12] != V2_SIG or hdr[12] != 0x21 or hdr[13] != 0x11:
                raise ValueError("not a PROXY v2 TCP4 header")
            (n,) = struct.unpack("!H", hdr[14:16])
            body = await asyncio.wait_for(reader.readexactly(n), 5)
            src = socket.inet_ntoa(body[0:4])
            (sport,) = struct.unpack("!H", body[8:10])
            method, path, h = await read_head(reader)
            if method != "GET" or h.get("upgrade", "").lower() != "websocket" or "sec-websocket-key" not in h:
                raise ValueError("not a WebSocket upgrade")
            accept = base64.b64encode(hashlib.sha1(h["sec-websocket-key"].encode() + WS_GUID).digest()).decode()
            writer.write(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                          f"Sec-WebSocket-Accept: {accept}\r\n\r\n").encode())
            msg = json.dumps({"gateway": name, "proxy_src": f"{src}:{sport}", "path": path}).encode()
            writer.write(bytes([0x81, len(msg)]) + msg if len(msg) < 126 else
                         bytes([0x81, 126]) + struct.pack("!H", len(msg)) + msg)
            writer.write(bytes([0x88, 2]) + struct.pack("!H", 1000))
            await writer.drain()
            # Wait for the client's close frame (or EOF), bounded.
            try:
                await asyncio.wait_for(reader.read(64), 5)
            except asyncio.TimeoutError:
                pass
        except (ValueError, asyncio.IncompleteReadError, asyncio.TimeoutError, asyncio.LimitOverrunError) as e:
            print(f"{name}: refused a connection: {e}", file=sys.stderr, flush=True)
        writer.close()

    async def run():
        s1 = await asyncio.start_server(admin, "127.0.0.1", admin_port)
        s2 = await asyncio.start_server(public, "127.0.0.1", pub_port)
        async with s1, s2:
            await asyncio.gather(s1.serve_forever(), s2.serve_forever())

    asyncio.run(run())


if __name__ == "__main__":
    main()
