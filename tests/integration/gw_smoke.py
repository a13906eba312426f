#!/usr/bin/python3
"""Smoke test of ota-gateway against tests/integration/fake_worker.

Usage: gw_smoke.py PUBLIC_URL OPERATOR_URL ADMIN_URL
Uses python3-websockets for the message flows and a raw socket client for
what a library refuses to send (invalid UTF-8, unmasked frames, bad HTTP).
Prints TAP lines; exits 1 if any check failed."""
import asyncio
import json
import os
import socket
import struct
import sys
import urllib.request

import websockets

PUB, OP, ADMIN = sys.argv[1], sys.argv[2], sys.argv[3]
results = []


def check(name, cond, detail=""):
    results.append(cond)
    print(("ok" if cond else "not ok") + " %d - %s%s" % (len(results), name,
          "" if cond else " (" + str(detail) + ")"))


def op_msg(op="check", uid="04112233445566", code=None, rid=None, tech="IsoDep"):
    m = {"type": "operation", "operation": op, "uid": uid, "tech": tech}
    if code is not None:
        m["authCode"] = code
    if rid is not None:
        m["requestId"] = rid
    return json.dumps(m)


async def recv_json(ws):
    return json.loads(await asyncio.wait_for(ws.recv(), 5))


async def close_code(ws):
    try:
        while True:
            await asyncio.wait_for(ws.recv(), 5)
    except websockets.ConnectionClosed as e:
        return e.rcvd.code if e.rcvd else None


async def full_check(url, name):
    async with websockets.connect(url) as ws:
        await ws.send(op_msg(rid="r-1"))
        m1 = await recv_json(ws)
        m2 = await recv_json(ws)
        check(name + ": modal first", m1.get("type") == "modal", m1)
        check(name + ": SelectApplication command (lower-case hex)",
              m2 == {"type": "command", "data": "905a000003eeffc000"}, m2)
        await ws.send(json.dumps({"type": "response", "data": "9100"}))
        m3 = await recv_json(ws)
        check(name + ": second command after the response", m3.get("data") == "906c0000010100", m3)
        await ws.send(json.dumps({"type": "response", "data": "E8030000" + "0000" + "9100",
                                  "extra": [1, 2]}))
        r = await recv_json(ws)
        check(name + ": result ok with balance, txn UUID and requestId echo",
              r.get("type") == "result" and r.get("status") == "ok" and r.get("balance") == 1000
              and r.get("operation") == "check" and r.get("requestId") == "r-1"
              and r.get("txn") == "10111213-1415-1617-1819-1a1b1c1d1e1f", r)
        code = await close_code(ws)
        check(name + ": close 1000 after the result", code == 1000, code)


async def result_then_close(url, msgs, name, want_error, want_code=1000, want_modal=None):
    async with websockets.connect(url) as ws:
        for m in msgs:
            await ws.send(m)
        got_modal = None
        while True:
            r = await recv_json(ws)
            if r.get("type") == "modal":
                got_modal = r.get("message")
                continue
            if r.get("type") == "result":
                break
        check(name + ": result " + str(want_error),
              r.get("status") in ("failed", "pending") and r.get("error") == want_error, r)
        if want_modal is not None:
            check(name + ": modal explains", got_modal is not None and want_modal in got_modal,
                  got_modal)
        code = await close_code(ws)
        check(name + ": close " + str(want_code), code == want_code, code)
        return r


async def expect_close(url, send, want, name):
    async with websockets.connect(url, max_size=None) as ws:
        await ws.send(send)
        code = await close_code(ws)
        check(name, code == want, code)


def raw_connect(url, path=None, extra=b""):
    hostport = url.split("//")[1].split("/")[0]
    host, port = hostport.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=5)
    p = path if path is not None else "/v1/session"
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    req = ("GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n" % (p, hostport, key)).encode()
    s.sendall(req + extra + b"\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        if not chunk:
            break
        head += chunk
    return s, head


def raw_frame(opcode, payload, mask=True):
    hdr = bytes([0x80 | opcode])
    n = len(payload)
    mbit = 0x80 if mask else 0
    if n < 126:
        hdr += bytes([mbit | n])
    else:
        hdr += bytes([mbit | 126]) + struct.pack(">H", n)
    if not mask:
        return hdr + payload
    key = os.urandom(4)
    return hdr + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def raw_close_code(s, rest):
    buf = rest
    while True:
        while len(buf) >= 2:
            op = buf[0] & 0x0f
            n = buf[1] & 0x7f
            off = 2
            if n == 126:
                n = struct.unpack(">H", buf[2:4])[0]
                off = 4
            if len(buf) < off + n:
                break
            payload = buf[off:off + n]
            buf = buf[off + n:]
            if op == 8:
                return struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else None
        chunk = s.recv(4096)
        if not chunk:
            return None
        buf += chunk


def raw_tests():
    s, head = raw_connect(PUB)
    check("raw upgrade: 101 with the RFC 6455 sample accept key",
          head.startswith(b"HTTP/1.1 101") and b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in head, head[:80])
    rest = head.split(b"\r\n\r\n", 1)[1]
    s.sendall(raw_frame(1, b'{"type":"\xff\xfe"}'))
    code = raw_close_code(s, rest)
    check("invalid UTF-8 text closes with 1007", code == 1007, code)
    s.close()

    s, head = raw_connect(PUB)
    rest = head.split(b"\r\n\r\n", 1)[1]
    s.sendall(raw_frame(1, op_msg().encode(), mask=False))
    code = raw_close_code(s, rest)
    check("an unmasked client frame closes with 1002", code == 1002, code)
    s.close()

    for path, want, name in (("/nope", b" 404 ", "unknown path answers 404"),
                             ("/", b" 101 ", "path / is accepted")):
        s, head = raw_connect(PUB, path)
        check(name, want in head.split(b"\r\n")[0], head[:60])
        s.close()

    s = socket.create_connection(PUB.split("//")[1].split("/")[0].rsplit(":", 1), timeout=5)
    s.sendall(b"GET /v1/session HTTP/1.1\r\nHost: x\r\n\r\n")
    check("a plain GET answers 426", b" 426 " in s.recv(4096).split(b"\r\n")[0])
    s.close()

    s, head = raw_connect(PUB, extra=b"".join(b"X-Pad-%d: %s\r\n" % (i, b"a" * 100)
                                               for i in range(100)))
    check("a huge header block answers 431", b" 431 " in head.split(b"\r\n")[0], head[:60])
    s.close()


def admin(path):
    try:
        with urllib.request.urlopen(ADMIN + path, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


async def main():
    await full_check(PUB, "check on /v1/session")
    root = PUB.rsplit("/", 2)[0] + "/"
    await full_check(root, "check on /")
    await full_check(OP, "operator listener")
    await result_then_close(PUB, [op_msg("personalize", code="token")],
                            "personalize on the public listener", "bad-request",
                            want_modal="operator endpoint")
    await result_then_close(PUB, ["{not json"], "malformed JSON", "bad-request")
    await result_then_close(PUB, ['{"type":"operation","type":"operation"}'], "duplicate key",
                            "bad-request")
    await result_then_close(PUB, ["[" * 50 + "]" * 50], "deep nesting", "bad-request")
    await result_then_close(PUB, [op_msg(uid="0411223")], "odd-length uid", "bad-request")
    await result_then_close(PUB, [op_msg(tech="NfcA")], "tech other than IsoDep",
                            "unsupported-card")
    await result_then_close(PUB, [json.dumps({"type": "response", "data": "9100"})],
                            "response before the operation", "bad-request")
    await result_then_close(PUB, [op_msg(), json.dumps({"type": "error", "kind": "lost-tag"})],
                            "client error lost-tag", "lost-tag")
    await expect_close(PUB, "x" * 5000, 1009, "a 5000-byte message closes with 1009")
    await expect_close(PUB, b"\x01\x02", 1003, "a binary frame closes with 1003")
    raw_tests()
    r = await result_then_close(PUB, [op_msg("topup", code="die")],
                                "worker dies at risk", "internal")
    check("a worker lost at risk reports pending", r.get("status") == "pending", r)
    for _ in range(50):
        st, body = admin("/status")
        if st == 200 and all(w["live"] for w in json.loads(body)["workers"]):
            break
        await asyncio.sleep(0.1)
    w = json.loads(body)["workers"]
    check("the dead worker was restarted", sum(x["restarts"] for x in w) >= 1
          and all(x["live"] for x in w), w)
    await full_check(PUB, "check after the restart")
    st, _ = admin("/healthz")
    check("/healthz answers 200", st == 200, st)
    st, _ = admin("/readyz")
    check("/readyz answers 200", st == 200, st)
    st, body = admin("/metrics")
    check("/metrics counts sessions",
          'ota_gateway_sessions_total{operation="check",result="ok"} 4' in body, body[:200])
    with open(os.environ.get("SMOKE_METRICS", "/dev/null"), "w") as f:
        f.write(body)


asyncio.run(main())
sys.exit(0 if all(results) else 1)
