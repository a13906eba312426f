#!/usr/bin/python3
"""Writes the seed corpus of tests/fuzz/fuzz_gw_upgrade.c: byte 0 = flags
(bit 0 PROXY header allowed, bits 1-3 read size, bit 4 write after each
read), then what a client sends: an optional PROXY v1/v2 header, an HTTP
upgrade head, then masked WebSocket frames.  The seeds are valid sessions
and near misses, so the fuzzer starts past the upgrade.

Usage: gw_seeds.py DIR"""
import hashlib
import os
import struct
import sys

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
HEAD = ("GET /v1/session HTTP/1.1\r\nHost: gw.example\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: " + KEY + "\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n").encode()
MASK = b"\x11\x22\x33\x44"


def frame(op, payload, fin=True, mask=True, rsv=0, len64=False):
    b0 = (0x80 if fin else 0) | rsv << 4 | op
    n = len(payload)
    m = 0x80 if mask else 0
    if len64:
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


def text(s, **kw):
    return frame(1, s.encode() if isinstance(s, str) else s, **kw)


OP = '{"type":"operation","operation":"check","uid":"04112233445566","tech":"IsoDep","requestId":"r"}'
RESP = '{"type":"response","data":"9100"}'
PP1 = b"PROXY TCP4 192.0.2.7 192.0.2.1 40000 443\r\n"
PP2 = (b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11]) + struct.pack("!H", 12) +
       bytes([198, 51, 100, 9, 192, 0, 2, 1]) + struct.pack("!HH", 40001, 443))

seeds = {
    "session": (0x00, HEAD + text(OP) + text(RESP) + text(RESP) + frame(8, b"\x03\xe8")),
    "session_chunk1": (0x10, HEAD + text(OP) + text(RESP)),
    "proxy_v1": (0x01, PP1 + HEAD + text(OP)),
    "proxy_v2": (0x0b, PP2 + HEAD + text(RESP)),
    "proxy_unknown": (0x01, b"PROXY UNKNOWN\r\n" + HEAD + text(OP)),
    "fragmented": (0x04, HEAD + text(OP[:20], fin=False) + frame(9, b"hi") +
                   frame(0, OP[20:].encode())),
    "ping_pong": (0x06, HEAD + frame(9, b"ping") + frame(10, b"") + text(RESP)),
    "unmasked": (0x08, HEAD + text(OP, mask=False)),
    "reserved_bits": (0x00, HEAD + text(OP, rsv=4)),
    "bad_opcode": (0x00, HEAD + frame(3, b"x") + frame(11, b"y")),
    "fragmented_control": (0x00, HEAD + frame(9, b"a", fin=False)),
    "big_control": (0x00, HEAD + frame(9, b"p" * 126)),
    "len64": (0x00, HEAD + text(b"{}", len64=True)),
    "oversize": (0x0e, HEAD + text("{" + " " * 5000 + "}")),
    "bad_utf8": (0x00, HEAD + text(b'{"type":"\xc0\xaf"}')),
    "binary": (0x00, HEAD + frame(2, b"\x01\x02")),
    "close_reason": (0x00, HEAD + frame(8, b"\x03\xe8bye")),
    "close_bad_code": (0x00, HEAD + frame(8, b"\x03\xed")),
    "deep_json": (0x00, HEAD + text("[" * 20 + "]" * 20)),
    "dup_keys": (0x00, HEAD + text('{"type":"response","type":"response","data":"9100"}')),
    "odd_hex": (0x00, HEAD + text('{"type":"response","data":"910"}')),
    "err_msg": (0x00, HEAD + text('{"type":"error","kind":"lost-tag"}')),
    "bad_version": (0x00, HEAD.replace(b"Version: 13", b"Version: 8")),
    "bad_path": (0x00, HEAD.replace(b"/v1/session", b"/admin")),
    "post": (0x00, HEAD.replace(b"GET", b"POST")),
    "http10": (0x00, HEAD.replace(b"HTTP/1.1", b"HTTP/1.0")),
    "folded_header": (0x00, HEAD.replace(b"Host: gw.example\r\n", b"Host: gw\r\n example\r\n")),
    "root_path": (0x00, HEAD.replace(b"/v1/session", b"/")),
}

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
for name, (flags, body) in seeds.items():
    with open(os.path.join(out, name), "wb") as f:
        f.write(bytes([flags]) + body)
print("%d seeds in %s" % (len(seeds), out))
