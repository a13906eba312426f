#!/usr/bin/python3
"""Bad input at the gateway, over raw sockets (what no WebSocket library
sends): malformed HTTP upgrades, malformed WebSocket frames, malformed and
out-of-order JSON messages, bad hex, PROXY protocol headers from allowed
and other peers, slow clients, clients that never send their operation,
clients that never read (a ping flood, a stream of operations) and
connection floods.  Each case checks the
documented answer (HTTP status, close code or `result` error), and between
the groups a normal client must still complete a session.  The gateway's
RSS (from /proc/PID/status) is printed before and after and must stay
bounded.

Usage: gw_badinput.py --port P --admin URL --pid PID --peers FILE
       [--proxy-ip 127.0.0.5] [--max-conn 20] [--per-ip 8]
       [--upgrade-timeout-ms 1500] [--idle-timeout-ms 3000]
       [--first-message-ms 2000] [--output-stall-ms 2000]
The gateway runs with tests/integration/fake_worker (FAKE_WORKER_PEERS=FILE).
Prints TAP lines; exits 1 if any check failed.  GW_BADINPUT_ONLY=a,b runs
only the named case groups (e.g. never_read_cases), for debugging."""
import argparse
import json
import os
import socket
import struct
import sys
import threading
import time
import urllib.request

ap = argparse.ArgumentParser()
ap.add_argument("--port", type=int, required=True)
ap.add_argument("--admin", required=True)
ap.add_argument("--pid", type=int, required=True)
ap.add_argument("--peers", required=True)
ap.add_argument("--proxy-ip", default="127.0.0.5")
ap.add_argument("--max-conn", type=int, default=20)
ap.add_argument("--per-ip", type=int, default=8)
ap.add_argument("--upgrade-timeout-ms", type=int, default=1500)
ap.add_argument("--idle-timeout-ms", type=int, default=3000)
ap.add_argument("--first-message-ms", type=int, default=2000)
ap.add_argument("--output-stall-ms", type=int, default=2000)
A = ap.parse_args()

HOST = "127.0.0.1"
KEY = "dGhlIHNhbXBsZSBub25jZQ=="
MASK = b"\x37\xfa\x21\x3d"
results = []


def check(name, cond, detail=""):
    results.append(bool(cond))
    print(("ok" if cond else "not ok") + " %d - %s%s" % (
        len(results), name, "" if cond else " (" + str(detail) + ")"), flush=True)
    return cond


def head(path="/v1/session", extra="", version="13", method="GET", proto="HTTP/1.1"):
    return ("%s %s %s\r\nHost: gw.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: %s\r\n%s\r\n" %
            (method, path, proto, KEY, version, extra)).encode()


def connect(src=None, timeout=5.0):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    if src:
        s.bind((src, 0))
    s.connect((HOST, A.port))
    return s


def recv_until(s, marker, limit=65536):
    buf = b""
    while marker not in buf and len(buf) < limit:
        try:
            d = s.recv(4096)
        except (socket.timeout, ConnectionResetError):
            break
        if not d:
            break
        buf += d
    return buf


def http_status(resp):
    try:
        return int(resp.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return None


def frame(op, payload=b"", fin=True, mask=True, rsv=0, len64=None):
    b0 = (0x80 if fin else 0) | (rsv << 4) | op
    n = len(payload) if len64 is None else len64
    m = 0x80 if mask else 0
    if len64 is not None:
        hdr = struct.pack("!BBQ", b0, m | 127, n)
    elif n < 126:
        hdr = struct.pack("!BB", b0, m | n)
    elif n < 65536:
        hdr = struct.pack("!BBH", b0, m | 126, n)
    else:
        hdr = struct.pack("!BBQ", b0, m | 127, n)
    if not mask:
        return hdr + payload
    return hdr + MASK + bytes(c ^ MASK[i % 4] for i, c in enumerate(payload))


def text(t, **kw):
    return frame(1, t.encode() if isinstance(t, str) else t, **kw)


class WS:
    """A raw client WebSocket: upgrade, send bytes, read server frames."""

    def __init__(self, src=None, prefix=b"", timeout=5.0):
        self.s = connect(src, timeout)
        self.s.sendall(prefix + head())
        resp = recv_until(self.s, b"\r\n\r\n")
        self.status = http_status(resp)
        self.buf = resp.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in resp else b""

    def send(self, b):
        self.s.sendall(b)

    def _fill(self, n):
        while len(self.buf) < n:
            d = self.s.recv(65536)
            if not d:
                raise EOFError
            self.buf += d

    def frame(self):
        """(opcode, payload) of the next server frame; raises on EOF/timeout."""
        self._fill(2)
        b0, b1 = self.buf[0], self.buf[1]
        if b1 & 0x80:
            raise ValueError("the server masked a frame")
        n, off = b1 & 0x7F, 2
        if n == 126:
            self._fill(4)
            n, off = struct.unpack("!H", self.buf[2:4])[0], 4
        elif n == 127:
            self._fill(10)
            n, off = struct.unpack("!Q", self.buf[2:10])[0], 10
        self._fill(off + n)
        p = self.buf[off:off + n]
        self.buf = self.buf[off + n:]
        return b0 & 0x0F, p

    def until_close(self, answer_pings=True):
        """Reads to the server's close frame: (texts, close code or None)."""
        texts = []
        try:
            while True:
                op, p = self.frame()
                if op == 1:
                    texts.append(json.loads(p))
                elif op == 9 and answer_pings:
                    self.send(frame(10, p))
                elif op == 8:
                    code = struct.unpack("!H", p[:2])[0] if len(p) >= 2 else 1005
                    try:
                        self.send(frame(8, p[:2]))
                    except OSError:
                        pass
                    return texts, code
        except (EOFError, socket.timeout, ConnectionResetError, ValueError):
            return texts, None

    def eof_after(self, seconds=3.0):
        """True if the server closes the TCP connection within seconds."""
        self.s.settimeout(seconds)
        try:
            while True:
                if not self.s.recv(4096):
                    return True
        except socket.timeout:
            return False
        except ConnectionResetError:
            return True

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


def rss_kb():
    with open("/proc/%d/status" % A.pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def metrics():
    with urllib.request.urlopen(A.admin + "/metrics", timeout=5) as r:
        return r.read().decode()


OP = {"type": "operation", "operation": "check", "uid": "04112233445566", "tech": "IsoDep"}


def op(**kw):
    m = dict(OP)
    m.update(kw)
    return json.dumps(m)


def normal_session(label, src=None, prefix=b""):
    """The scripted check of the fake worker, start to end."""
    try:
        w = WS(src, prefix)
        if w.status != 101:
            return check(label + ": a normal client is still served", False, w.status)
        w.send(text(op(requestId="n")))
        got = []
        while len(got) < 2:
            o, p = w.frame()
            got.append(json.loads(p))
        w.send(text('{"type":"response","data":"9100"}'))
        o, p = w.frame()
        got.append(json.loads(p))
        w.send(text('{"type":"response","data":"e80300000000' + '9100"}'))
        texts, code = w.until_close()
        w.close()
        r = texts[-1] if texts else {}
        ok = (got[0].get("type") == "modal" and got[1].get("type") == "command" and
              r.get("status") == "ok" and r.get("balance") == 1000 and code == 1000)
        return check(label + ": a normal client is still served", ok, (got, texts, code))
    except (OSError, EOFError, ValueError) as e:
        return check(label + ": a normal client is still served", False, repr(e))


# ---- HTTP upgrades -----------------------------------------------------------

def http_case(name, raw, want):
    s = connect()
    try:
        s.sendall(raw)
    except OSError:
        pass
    resp = recv_until(s, b"\r\n\r\n")
    st = http_status(resp)
    closed = False
    s.settimeout(3)
    try:
        closed = not s.recv(4096) or True
    except socket.timeout:
        closed = False
    except ConnectionResetError:
        closed = True
    s.close()
    check("upgrade: %s -> %d and close" % (name, want), st == want and closed,
          (st, closed, resp[:80]))


def http_cases():
    h = head()
    http_case("POST", head(method="POST"), 405)
    http_case("unknown path", head(path="/admin"), 404)
    http_case("HTTP/1.0", head(proto="HTTP/1.0"), 505)
    http_case("HTTP/2.0", head(proto="HTTP/2.0"), 505)
    http_case("Sec-WebSocket-Version 8", head(version="8"), 426)
    http_case("no Upgrade header", h.replace(b"Upgrade: websocket\r\n", b""), 426)
    http_case("no Host", h.replace(b"Host: gw.test\r\n", b""), 400)
    http_case("two Host headers", head(extra="Host: other\r\n"), 400)
    http_case("no Connection: upgrade", h.replace(b"Connection: Upgrade", b"Connection: close"), 400)
    http_case("short key", h.replace(KEY.encode(), b"c2hvcnQ="), 400)
    http_case("two keys", head(extra="Sec-WebSocket-Key: %s\r\n" % KEY), 400)
    http_case("head over max_header_bytes", head(extra="X-Pad: " + "a" * 9000 + "\r\n"), 431)
    http_case("more than max_headers lines",
              head(extra="".join("X-H%d: v\r\n" % i for i in range(70))), 431)
    http_case("NUL in the head", h.replace(b"gw.test", b"gw\x00test"), 400)
    http_case("bare LF line ends", h.replace(b"\r\n", b"\n") + b"\n", 400)
    http_case("folded header", h.replace(b"Host: gw.test\r\n", b"Host: gw\r\n .test\r\n"), 400)
    http_case("a body (Content-Length)", head(extra="Content-Length: 5\r\n"), 400)
    http_case("Transfer-Encoding", head(extra="Transfer-Encoding: chunked\r\n"), 400)
    http_case("control character in a value", head(extra="X-A: a\x01b\r\n"), 400)
    http_case("a TLS ClientHello on the plain port",
              bytes.fromhex("160301012c010001280303") + os.urandom(40) + b"\r\n\r\n", 400)
    http_case("empty request line", b"\r\n\r\n", 400)
    http_case("garbage request line", b"HELLO\r\n\r\n", 400)


# ---- WebSocket frames --------------------------------------------------------

def close_case(name, data, want, pre=b""):
    w = WS()
    if w.status != 101:
        check("frames: %s -> %d" % (name, want), False, "upgrade %s" % w.status)
        return
    try:
        w.send(pre + data)
    except OSError:
        pass
    texts, code = w.until_close()
    eof = w.eof_after(3)
    w.close()
    check("frames: %s -> close %d" % (name, want), code == want and eof, (code, eof, texts))


def frame_cases():
    o = op().encode()
    close_case("unmasked client frame", text(o, mask=False), 1002)
    close_case("RSV1 set (no extension agreed)", text(o, rsv=4), 1002)
    close_case("RSV2 set", text(o, rsv=2), 1002)
    close_case("RSV3 set", text(o, rsv=1), 1002)
    for opc in (3, 7, 0xB, 0xF):
        close_case("reserved opcode 0x%x" % opc, frame(opc, b"x"), 1002)
    close_case("fragmented ping", frame(9, b"p", fin=False), 1002)
    close_case("fragmented close", frame(8, b"\x03\xe8", fin=False), 1002)
    close_case("ping with 126 bytes", frame(9, b"p" * 126), 1002)
    close_case("close with 126 bytes", frame(8, b"\x03\xe8" + b"r" * 124), 1002)
    close_case("64-bit length with the top bit set", frame(1, b"", len64=1 << 63), 1002)
    close_case("64-bit length of 2^40", frame(1, b"", len64=1 << 40), 1009)
    close_case("64-bit length for a small payload", frame(1, b"{}", len64=2) + MASK + b"{}", 1002)
    close_case("text over max_message (5000 bytes)", text("{" + " " * 4998 + "}"), 1009)
    close_case("fragments over max_message",
               text("{" + " " * 3000, fin=False) + frame(0, (" " * 3000 + "}").encode()), 1009)
    close_case("continuation without a start", frame(0, b"abc"), 1002)
    close_case("new text inside a fragmented message",
               text(o[:10], fin=False) + text(o), 1002)
    close_case("invalid UTF-8 (overlong)", text(b'{"type":"\xc0\xaf"}'), 1007)
    close_case("invalid UTF-8 (surrogate)", text(b'{"type":"\xed\xa0\x80"}'), 1007)
    close_case("invalid UTF-8 (over U+10FFFF)", text(b'{"type":"\xf4\x90\x80\x80"}'), 1007)
    close_case("invalid UTF-8 (truncated)", text(b'{"type":"\xe2\x82"}'), 1007)
    close_case("invalid UTF-8 split across fragments",
               text(b'{"a":"\xe2', fin=False) + frame(0, b'\x28\xa1"}'), 1007)
    close_case("binary frame", frame(2, b"\x01\x02\x03"), 1003)
    # wslay echoes a close without a code here (RFC 6455 would allow 1002).
    close_case("close with a 1-byte payload (echoed without a code)", frame(8, b"\x03"), 1005)
    close_case("close with reserved code 1005", frame(8, struct.pack("!H", 1005)), 1002)
    close_case("close with code 999", frame(8, struct.pack("!H", 999)), 1002)
    close_case("a normal close is echoed", frame(8, struct.pack("!H", 1000)), 1000)
    # A ping is answered (with its payload) and the session goes on.
    w = WS()
    w.send(frame(9, b"are-you-there"))
    o2, p = w.frame()
    check("frames: ping answered with pong and the same payload", o2 == 10 and p == b"are-you-there",
          (o2, p))
    w.send(frame(10, b"unsolicited") + text(op()))
    o3, p3 = w.frame()
    check("frames: an unsolicited pong is ignored", o3 == 1 and json.loads(p3)["type"] == "modal",
          (o3, p3))
    w.close()
    # A fragmented text message with a ping in between is one message.
    w = WS()
    w.send(text(o[:15], fin=False) + frame(9, b"mid") + frame(0, o[15:30], fin=False) +
           frame(0, o[30:]))
    a, pa = w.frame()
    b, pb = w.frame()
    check("frames: fragmented message with a ping between the fragments",
          a == 10 and pa == b"mid" and b == 1 and json.loads(pb)["type"] == "modal", (a, pa, b, pb))
    w.close()


# ---- JSON, hex, message order -----------------------------------------------

def result_case(name, msgs, want_error, want_status="failed", answer_commands=0, modal=None):
    w = WS()
    if w.status != 101:
        check("messages: %s" % name, False, "upgrade %s" % w.status)
        return
    w.send(b"".join(text(m) for m in msgs))
    texts, code = w.until_close()
    w.close()
    res = [t for t in texts if t.get("type") == "result"]
    r = res[-1] if res else {}
    ok = (len(res) == 1 and r.get("status") == want_status and r.get("error") == want_error and
          code == 1000)
    if modal is not None:
        ok = ok and any(t.get("type") == "modal" and modal in t.get("message", "") for t in texts)
    check("messages: %s -> %s %s, close 1000" % (name, want_status, want_error), ok, (texts, code))


def json_cases():
    bad = "bad-request"
    result_case("deep nesting", ['{"type":"operation","x":' + "[" * 30 + "]" * 30 + "}"], bad)
    result_case("nesting just over the limit", ['{"a":' + "[" * 8 + "]" * 8 + "}"], bad)
    result_case("not JSON", ["{type: operation}"], bad)
    result_case("a JSON array", ["[1,2,3]"], bad)
    result_case("a JSON string", ['"operation"'], bad)
    result_case("trailing garbage", [op() + "xyz"], bad)
    result_case("duplicate keys", ['{"type":"operation","type":"operation","operation":"check",'
                                   '"uid":"04112233445566","tech":"IsoDep"}'], bad)
    result_case("duplicate uid", [op()[:-1] + ',"uid":"04112233445566"}'], bad)
    result_case("no type", ['{"operation":"check"}'], bad)
    result_case("type is a number", ['{"type":7}'], bad)
    result_case("unknown type", ['{"type":"hello"}'], bad)
    result_case("operation is a number", [op(operation=1)], bad)
    result_case("unknown operation", [op(operation="refund")], bad)
    result_case("uid is a number", [op(uid=4112233445566)], bad)
    result_case("uid is null", [op(uid=None)], bad)
    result_case("tech is missing", [json.dumps({k: v for k, v in OP.items() if k != "tech"})], bad)
    result_case("requestId is an object", [op(requestId={"a": 1})], bad)
    result_case("requestId over 128 bytes", [op(requestId="r" * 129)], bad)
    result_case("huge string (authCode of 3900 bytes)", [op(operation="topup", authCode="A" * 3900)],
                bad)
    result_case("topup without authCode", [op(operation="topup")], bad)
    result_case("authCode is a number", [op(operation="topup", authCode=1234)], bad)
    result_case("authCode with U+0000", [op(operation="topup", authCode="AB\u0000CD")], bad)
    result_case("a NUL inside uid", [op(uid="0411\u00002233445566")], bad)
    # hex
    result_case("uid of odd length", [op(uid="041122334455667")], bad)
    result_case("uid not hex", [op(uid="0411223344556g")], bad)
    result_case("uid of 5 bytes", [op(uid="0411223344")], bad)
    result_case("uid with a 0x prefix", [op(uid="0x112233445566")], bad)
    result_case("tech other than IsoDep", [op(tech="MifareClassic")], "unsupported-card")
    result_case("personalize on the public listener",
                [op(operation="personalize", authCode="token")], bad, modal="operator")


def session_prefix(w):
    """Sends the operation and reads the modal and first command."""
    w.send(text(op()))
    w.frame()
    w.frame()


def order_case(name, after_op, want_error, want_status="failed"):
    w = WS()
    session_prefix(w)
    w.send(b"".join(text(m) for m in after_op))
    texts, code = w.until_close()
    w.close()
    res = [t for t in texts if t.get("type") == "result"]
    r = res[-1] if res else {}
    check("messages: %s -> %s %s, close 1000" % (name, want_status, want_error),
          len(res) == 1 and r.get("status") == want_status and r.get("error") == want_error and
          code == 1000, (texts, code))


def order_cases():
    bad = "bad-request"
    result_case("response before the operation", ['{"type":"response","data":"9100"}'], bad)
    result_case("error before the operation", ['{"type":"error","kind":"lost-tag"}'], bad)
    order_case("a second operation", [op()], bad)
    order_case("two responses to one command",
               ['{"type":"response","data":"9100"}', '{"type":"response","data":"9100"}'], bad)
    order_case("response of odd length", ['{"type":"response","data":"910"}'], bad)
    order_case("response not hex", ['{"type":"response","data":"91zz"}'], bad)
    order_case("response of 301 bytes (over an APDU)", ['{"type":"response","data":"' +
                                                         "00" * 301 + '"}'], bad)
    order_case("response data is a number", ['{"type":"response","data":9100}'], bad)
    order_case("error of an unknown kind", ['{"type":"error","kind":"cosmic-ray"}'], bad)
    order_case("client error lost-tag", ['{"type":"error","kind":"lost-tag"}'], "lost-tag")
    # Upper-case hex is accepted (docs/PROTOCOL.md: case-insensitive on input).
    w = WS()
    session_prefix(w)
    w.send(text('{"type":"response","data":"9100"}'))
    w.frame()
    w.send(text('{"type":"response","data":"E80300000000' + '9100"}'))
    texts, code = w.until_close()
    w.close()
    check("messages: upper-case hex accepted", texts and texts[-1].get("balance") == 1000,
          (texts, code))


# ---- v2 batches (PROTOCOL v2: "batch", commands, responses) ----------------

def v2_prefix(w, batch=4):
    """Sends a v2 operation and reads the modal and the `commands` batch."""
    w.send(text(op(batch=batch)))
    w.frame()
    o, p = w.frame()
    return json.loads(p)


def v2_case(name, after, want_error, want_status="failed"):
    w = WS()
    v2_prefix(w)
    w.send(b"".join(text(m) for m in after))
    texts, code = w.until_close()
    w.close()
    res = [t for t in texts if t.get("type") == "result"]
    r = res[-1] if res else {}
    check("v2: %s -> %s %s, close 1000" % (name, want_status, want_error),
          len(res) == 1 and r.get("status") == want_status and r.get("error") == want_error and
          code == 1000, (texts, code))


def v2_cases():
    bad = "bad-request"
    w = WS()
    cmds = v2_prefix(w)
    w.send(text(json.dumps({"type": "responses", "data": ["9100", "E80300000000" + "9100"]})))
    texts, code = w.until_close()
    w.close()
    check("v2: a batch goes out as one commands message and comes back as one responses",
          cmds.get("type") == "commands" and cmds.get("data") == ["905a000003eeffc000",
                                                                  "906c0000010100"] and
          texts and texts[-1].get("status") == "ok" and texts[-1].get("balance") == 1000 and
          code == 1000, (cmds, texts, code))
    # batch 1 (or absent) is v1: one `command` at a time, `response` answers.
    w = WS()
    w.send(text(op(batch=1)))
    w.frame()
    o, p = w.frame()
    check("v2: batch 1 is a v1 session (command, not commands)",
          json.loads(p).get("type") == "command", p)
    w.close()
    for b in (0, 17, -2, "4", 2.5, None, True):
        result_case("batch %r refused" % (b,), [op(batch=b)], bad)
    order_case("responses in a v1 session (no outstanding batch)",
               ['{"type":"responses","data":["9100"]}'], bad)
    result_case("responses before the operation", ['{"type":"responses","data":["9100"]}'], bad)
    v2_case("more answers than commands",
            [json.dumps({"type": "responses", "data": ["9100", "9100", "9100"]})], bad)
    v2_case("17 answers", [json.dumps({"type": "responses", "data": ["9100"] * 17})], bad)
    v2_case("an answer not hex", [json.dumps({"type": "responses", "data": ["9100", "91zz"]})], bad)
    v2_case("an answer of odd length", [json.dumps({"type": "responses", "data": ["910"]})], bad)
    v2_case("an answer is a number", [json.dumps({"type": "responses", "data": [9100]})], bad)
    v2_case("data is a string", [json.dumps({"type": "responses", "data": "9100"})], bad)
    v2_case("no answer and no error", [json.dumps({"type": "responses", "data": []})], bad)
    v2_case("an unknown error kind",
            [json.dumps({"type": "responses", "data": ["9100"], "error": "cosmic-ray"})], bad)
    v2_case("a response (singular) to a batch of two", ['{"type":"response","data":"9100"}'], bad)
    v2_case("two responses to one batch",
            [json.dumps({"type": "responses", "data": ["9100", "e803000000009100"]}),
             json.dumps({"type": "responses", "data": ["9100"]})], bad)
    v2_case("lost the tag part-way",
            [json.dumps({"type": "responses", "data": ["9100"], "error": "lost-tag"})], "lost-tag")
    v2_case("client error inside a batch", ['{"type":"error","kind":"lost-tag"}'], "lost-tag")


# ---- PROXY protocol ----------------------------------------------------------

def peers_seen():
    try:
        with open(A.peers) as f:
            return f.read()
    except OSError:
        return ""


def proxy_cases():
    pp1 = b"PROXY TCP4 203.0.113.9 192.0.2.1 5555 443\r\n"
    normal_session("PROXY v1 from an allowed peer", src=A.proxy_ip, prefix=pp1)
    check("PROXY v1: the worker sees the announced address",
          "listener=0 peer=203.0.113.9\n" in peers_seen(), peers_seen())
    pp2 = (b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11]) + struct.pack("!H", 12) +
           bytes([198, 51, 100, 7, 192, 0, 2, 1]) + struct.pack("!HH", 40001, 443))
    normal_session("PROXY v2 from an allowed peer", src=A.proxy_ip, prefix=pp2)
    check("PROXY v2: the worker sees the announced address",
          "peer=198.51.100.7\n" in peers_seen(), peers_seen())
    pp6 = b"PROXY TCP6 2001:db8::77 2001:db8::1 5555 443\r\n"
    normal_session("PROXY v1 TCP6 from an allowed peer", src=A.proxy_ip, prefix=pp6)
    check("PROXY TCP6: the worker sees the announced address",
          "peer=2001:db8::77\n" in peers_seen(), peers_seen())
    # From a peer that may not send one, the header is HTTP garbage: 400.
    s = connect("127.0.0.1")
    s.sendall(b"PROXY TCP4 203.0.113.66 192.0.2.1 5555 443\r\n" + head())
    resp = recv_until(s, b"\r\n\r\n")
    s.close()
    check("PROXY header from a peer not in proxy_protocol_from -> 400",
          http_status(resp) == 400, resp[:60])
    time.sleep(0.2)
    check("... and the announced address never reaches a worker",
          "203.0.113.66" not in peers_seen(), peers_seen())
    for name, raw in (("malformed v1", b"PROXY TCP4 999.1.1.1 1.2.3.4 1 2\r\n"),
                      ("v1 without CRLF in 107 bytes", b"PROXY TCP4 " + b"1" * 120),
                      ("plain HTTP without a header", head()),
                      ("v2 with a bad version", b"\r\n\r\n\x00\r\nQUIT\n\x11\x11\x00\x0c" + b"\0" * 12)):
        s = connect(A.proxy_ip)
        s.sendall(raw)
        got = recv_until(s, b"\r\n\r\n")
        s.close()
        check("PROXY from an allowed peer, %s: closed without an answer" % name, got == b"", got[:40])


# ---- slow clients ------------------------------------------------------------

def slowloris():
    up = A.upgrade_timeout_ms / 1000.0
    socks = []
    raw = head()
    for i in range(12):
        s = connect("127.0.0.%d" % (20 + i % 3), timeout=up * 4 + 5)
        socks.append([s, 0, b""])
    t0 = time.time()
    done = 0
    step = max(0.05, up / 8)

    def serve_meanwhile():
        normal_session("during the slowloris")
    th = threading.Thread(target=serve_meanwhile)
    th.start()
    while time.time() - t0 < up * 4 and done < len(socks):
        for e in socks:
            s = e[0]
            if e[1] is None:
                continue
            if e[1] < len(raw) - 4:
                try:
                    s.sendall(raw[e[1]:e[1] + 1])
                    e[1] += 1
                except OSError:
                    pass
            s.settimeout(0.001)
            try:
                d = s.recv(4096)
                e[2] += d
                if not d or b"\r\n\r\n" in e[2]:
                    e[1] = None
                    e[2] = e[2] or b"EOF"
                    done += 1
            except socket.timeout:
                pass
            except OSError:
                e[1] = None
                done += 1
        time.sleep(step)
    th.join()
    elapsed = time.time() - t0
    st = [http_status(e[2]) for e in socks]
    for e in socks:
        e[0].close()
    check("slowloris: 12 upgrades trickled byte by byte all get 408 (in %.1f s, timeout %.1f s)" %
          (elapsed, up), all(x == 408 for x in st) and elapsed < up * 4, st)

    # After the operation: half a frame header, then silence.
    idle = A.idle_timeout_ms / 1000.0
    w = WS(timeout=idle * 3 + 5)
    session_prefix(w)
    w.send(b"\x81")
    t0 = time.time()
    texts, code = w.until_close(answer_pings=False)
    el = time.time() - t0
    w.close()
    check("slow frame: half a header then silence -> close 1001 after about %.1f s (%.1f s)" %
          (idle, el), code == 1001 and idle * 0.8 <= el <= idle * 3, (code, el))
    # A client that never answers pings (its session waits for a response).
    w = WS(timeout=idle * 3 + 5)
    session_prefix(w)
    t0 = time.time()
    pings, code = 0, None
    try:
        while True:
            o, p = w.frame()
            if o == 9:
                pings += 1
            elif o == 8:
                code = struct.unpack("!H", p[:2])[0]
                break
    except (EOFError, socket.timeout, OSError):
        pass
    el = time.time() - t0
    w.close()
    check("idle client that ignores pings: pinged, then close 1001 (%d pings, %.1f s)" %
          (pings, el), pings >= 1 and code == 1001, (pings, code, el))


# ---- the first operation is due -----------------------------------------------

def first_message_cases():
    first = A.first_message_ms / 1000.0
    idle = A.idle_timeout_ms / 1000.0
    for name, ping_every in (("a silent client", None), ("a client that pings every 0.2 s", 0.2)):
        w = WS(timeout=0.2)
        t0 = time.time()
        texts, code, last_ping = [], None, 0.0
        # Bounded: far past both the deadline and the idle timeout.
        while time.time() - t0 < first + idle + 5 and code is None:
            if ping_every and time.time() - last_ping >= ping_every:
                try:
                    w.send(frame(9, b"keep-me"))
                except OSError:
                    break
                last_ping = time.time()
            try:
                o, p = w.frame()
            except socket.timeout:
                continue
            except (EOFError, OSError, ValueError):
                break
            if o == 1:
                texts.append(json.loads(p))
            elif o == 8:
                code = struct.unpack("!H", p[:2])[0] if len(p) >= 2 else 1005
        el = time.time() - t0
        w.close()
        r = texts[-1] if texts else {}
        check("no operation message: %s gets result failed timeout and close 1000 after about "
              "%.1f s (%.1f s)" % (name, first, el),
              r.get("type") == "result" and r.get("status") == "failed" and
              r.get("error") == "timeout" and code == 1000 and first * 0.8 <= el < first + idle,
              (texts, code, el))


# ---- clients that never read ---------------------------------------------------

def stalled_total():
    for line in metrics().splitlines():
        if line.startswith("ota_gateway_connections_output_stalled_total "):
            return float(line.split()[-1])
    return -1


def never_reader(src, first, chunk, total, limit_kb, out):
    """Sends first, then chunk again and again (up to total bytes), and
    never reads.  Stops early when the gateway stops reading (a send
    blocks for 3 s), drops the connection, or its RSS grows past limit_kb
    (the old gateway's way: no point eating the machine's memory to prove
    it)."""
    out.update(sent=0, blocked=False, dropped=False, rss_stop=False)
    w = WS(src=src, timeout=3)
    if w.status != 101:
        out["error"] = "upgrade %s" % w.status
        return
    out["w"] = w
    base = rss_kb()
    view, off = memoryview(chunk), 0
    try:
        w.send(first)
    except OSError:
        out["dropped"] = True
        return
    while out["sent"] < total:
        try:
            n = w.s.send(view[off:])
        except socket.timeout:
            out["blocked"] = True
            break
        except OSError:
            out["dropped"] = True
            break
        out["sent"] += n
        off = (off + n) % len(chunk)
        if out["sent"] // (1 << 20) != (out["sent"] - n) // (1 << 20) and rss_kb() - base > limit_kb:
            out["rss_stop"] = True
            break


def closed_within(w, seconds):
    """Reads what the gateway had sent until it closes the connection."""
    w.s.settimeout(seconds)
    t0 = time.time()
    try:
        while time.time() - t0 < seconds:
            if not w.s.recv(1 << 20):
                return True
    except socket.timeout:
        return False
    except OSError:
        return True
    return False


def asan_build():
    with open("/proc/%d/maps" % A.pid) as f:
        return "libasan" in f.read()


def never_read_cases():
    stall = A.output_stall_ms / 1000.0
    # Under AddressSanitizer freed memory sits in its quarantine (up to 256 MB).
    total, limit_kb = 40 << 20, (320 << 10) if asan_build() else (16 << 10)
    clients = (
        # The flood: empty masked pings, no operation, nothing read.
        ("sends empty pings", b"", frame(9, b"") * 10000),
        # A session waiting for its card while the client pings and reads nothing.
        ("starts an operation, then sends 125-byte pings",
         text(op(requestId="p")), frame(9, b"p" * 125) * 500),
        # Operation messages, again and again (the second one ends the session).
        ("sends operations", b"", text(op(requestId="x" * 100)) * 500),
    )
    before, stalled0 = rss_kb(), stalled_total()
    outs = [{} for _ in clients]
    ths = [threading.Thread(target=never_reader,
                            args=("127.0.0.%d" % (60 + i), c[1], c[2], total, limit_kb, outs[i]))
           for i, c in enumerate(clients)]
    for t in ths:
        t.start()
    time.sleep(0.5)
    normal_session("during a ping flood and operation streams that never read")
    for t in ths:
        t.join()
    peak = rss_kb()
    print("# never-reading clients: sent %s bytes (blocked %s); gateway RSS %d kB -> %d kB" %
          ([o["sent"] for o in outs], [o["blocked"] for o in outs], before, peak), flush=True)
    check("RSS stays bounded while clients that never read send (grew %d kB, limit %d kB)" %
          (peak - before, limit_kb), not any(o.get("rss_stop") for o in outs) and
          peak - before < limit_kb, (before, peak))
    for i in (0, 1):
        o = outs[i]
        check("a client that %s and never reads: the gateway stops reading it or drops it (after %d kB)" %
              (clients[i][0], o["sent"] >> 10), o["blocked"] or o["dropped"], o)
    t0 = time.time()
    while time.time() - t0 < stall + 10 and stalled_total() < stalled0 + 1:
        time.sleep(0.2)
    check("the stalled client with a session is dropped after output_stall_ms (%.1f s after it "
          "blocked)" % (time.time() - t0), stalled_total() >= stalled0 + 1, stalled_total())
    for i, c in enumerate(clients):
        w = outs[i].get("w")
        check("a client that %s and never reads: its connection is closed" % c[0],
              w is not None and closed_within(w, 15), outs[i])
        if w:
            w.close()
    normal_session("after the clients that never read")


# ---- floods ------------------------------------------------------------------

def floods():
    # Per address: raw sockets that never send a byte count too.
    ip = "127.0.0.40"
    held = [connect(ip) for _ in range(A.per_ip)]
    time.sleep(0.2)
    extra, statuses = [], []
    for _ in range(5):
        s = connect(ip)
        extra.append(s)
        statuses.append(http_status(recv_until(s, b"\r\n\r\n")))
    check("flood from one address: connections past max_connections_per_ip=%d get 503" % A.per_ip,
          statuses == [503] * 5, statuses)
    normal_session("while one address is at its limit")
    for s in held + extra:
        s.close()
    time.sleep(0.3)
    normal_session("after the per-address flood", src=ip)

    # Total: upgraded WebSockets from several addresses up to max_connections.
    ws = []
    i = 0
    while len(ws) < A.max_conn:
        w = WS(src="127.0.0.%d" % (50 + i // A.per_ip))
        i += 1
        if w.status == 101:
            ws.append(w)
        else:
            w.close()
            break
    over = WS(src="127.0.0.99")
    check("flood: %d WebSockets open, the next one gets 503 (max_connections=%d)" %
          (len(ws), A.max_conn), len(ws) == A.max_conn and over.status == 503,
          (len(ws), over.status))
    over.close()
    for w in ws:
        w.close()
    time.sleep(0.3)
    normal_session("after max_connections was reached")

    # Far past the limit: raw sockets from many addresses; beyond the
    # accept cap the gateway closes them at once instead of holding them.
    hard = A.max_conn + A.max_conn // 8 + 64
    socks = []
    n = hard + 40
    for k in range(n):
        try:
            socks.append(connect("127.0.1.%d" % (1 + k // A.per_ip), timeout=2))
        except OSError:
            pass
    time.sleep(0.5)
    closed = 0
    for s in socks:
        s.settimeout(0.05)
        try:
            if s.recv(1) == b"":
                closed += 1
        except socket.timeout:
            pass
        except OSError:
            closed += 1
    check("flood of %d raw sockets: at most the accept cap (%d) held, the rest closed (%d closed)" %
          (n, hard, closed), closed >= n - hard and n - closed <= hard, (n, closed))
    for s in socks:
        s.close()
    time.sleep(0.5)
    normal_session("after the raw socket flood")


def main():
    before = rss_kb()
    print("# gateway RSS before: %d kB" % before, flush=True)
    normal_session("at start")
    http_cases()
    normal_session("after the malformed upgrades")
    frame_cases()
    normal_session("after the malformed frames")
    json_cases()
    order_cases()
    normal_session("after the malformed messages")
    v2_cases()
    normal_session("after the malformed v2 messages")
    proxy_cases()
    slowloris()
    normal_session("after the slow clients")
    first_message_cases()
    never_read_cases()
    floods()
    # A second round of everything cheap, to see whether memory grows.
    mid = rss_kb()
    for k in range(200):
        w = WS()
        w.send(text(b"\xc0\xaf") if k % 2 else frame(2, b"x"))
        w.until_close()
        w.close()
    after = rss_kb()
    print("# gateway RSS: before %d kB, after the floods %d kB, after 200 more bad sessions %d kB"
          % (before, mid, after), flush=True)
    # Under AddressSanitizer freed memory sits in its quarantine (up to
    # 256 MB), so RSS grows without a leak; LeakSanitizer covers leaks there.
    asan = asan_build()
    total, extra = (262144, 65536) if asan else (32768, 4096)
    if asan:
        print("# ASan build: RSS limits relaxed for its quarantine", flush=True)
    check("RSS stayed bounded (grew %d kB, limit %d kB)" % (after - before, total),
          before > 0 and after - before < total, (before, after))
    check("RSS did not grow over 200 more bad sessions (%d kB, limit %d kB)" % (after - mid, extra),
          after - mid < extra, (mid, after))
    m = metrics()
    rej = {}
    for line in m.splitlines():
        if line.startswith("ota_gateway_connections_rejected_total{"):
            rej[line.split('"')[1]] = float(line.split()[-1])
    check("/metrics counts the refusals by reason",
          all(rej.get(k, 0) > 0 for k in ("limit_total", "limit_per_ip", "bad_upgrade",
                                          "upgrade_timeout", "proxy")), rej)
    print("# %d checks, %d failed" % (len(results), results.count(False)))
    return 0 if all(results) else 1


if __name__ == "__main__":
    if os.environ.get("GW_BADINPUT_ONLY"):
        for name in os.environ["GW_BADINPUT_ONLY"].split(","):
            globals()[name]()
        sys.exit(0 if all(results) else 1)
    sys.exit(main())
