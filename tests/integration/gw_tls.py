#!/usr/bin/python3
"""TLS listeners of ota-gateway with a real client (python3-websockets over
Python's ssl): wss on the public listener, and the operator listener that
requires a client certificate from gateway.operator_client_ca.

Usage: gw_tls.py PUBLIC_PORT OPERATOR_PORT CA CLIENT_CERT CLIENT_KEY OTHER_CERT OTHER_KEY PEERS
Prints TAP lines; exits 1 if any check failed."""
import asyncio
import json
import ssl
import sys

import websockets

PUB, OP, CA, CERT, KEY, OCERT, OKEY, PEERS = sys.argv[1:9]
results = []


def check(name, cond, detail=""):
    results.append(bool(cond))
    print(("ok" if cond else "not ok") + " %d - %s%s" % (
        len(results), name, "" if cond else " (" + str(detail) + ")"), flush=True)


def ctx(cert=None, key=None):
    c = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=CA)
    if cert:
        c.load_cert_chain(cert, key)
    return c


async def session(url, c):
    """The fake worker's check, start to end; returns the result and close code."""
    async with websockets.connect(url, ssl=c, open_timeout=5) as ws:
        await ws.send(json.dumps({"type": "operation", "operation": "check",
                                  "uid": "04112233445566", "tech": "IsoDep"}))
        msgs = [json.loads(await asyncio.wait_for(ws.recv(), 5)) for _ in range(2)]
        await ws.send('{"type":"response","data":"9100"}')
        msgs.append(json.loads(await asyncio.wait_for(ws.recv(), 5)))
        await ws.send('{"type":"response","data":"e803000000009100"}')
        r = json.loads(await asyncio.wait_for(ws.recv(), 5))
        try:
            await asyncio.wait_for(ws.recv(), 5)
        except websockets.ConnectionClosed as e:
            return r, e.rcvd.code if e.rcvd else None
        return r, None


async def refused(url, c):
    try:
        r, code = await session(url, c)
        return False, (r, code)
    except (ssl.SSLError, websockets.InvalidHandshake, websockets.ConnectionClosed,
            ConnectionError, OSError, asyncio.TimeoutError) as e:
        return True, repr(e)


def peers():
    with open(PEERS) as f:
        return f.read()


async def main():
    pub = "wss://127.0.0.1:%s/v1/session" % PUB
    op = "wss://127.0.0.1:%s/v1/session" % OP
    r, code = await session(pub, ctx())
    check("wss public listener: a session completes over TLS",
          r.get("status") == "ok" and r.get("balance") == 1000 and code == 1000, (r, code))
    ok, why = await refused(pub, ssl.create_default_context())
    check("wss public listener: a client that does not trust the CA fails the handshake", ok, why)
    ok, why = await refused(op, ctx())
    check("operator listener: refused without a client certificate", ok, why)
    ok, why = await refused(op, ctx(OCERT, OKEY))
    check("operator listener: refused with a certificate from another CA", ok, why)
    r, code = await session(op, ctx(CERT, KEY))
    check("operator listener: a session completes with a client certificate",
          r.get("status") == "ok" and code == 1000, (r, code))
    check("operator listener: the worker is told the session came from the operator listener",
          "listener=1 " in peers(), peers())
    # Plain ws on a TLS port: the TLS layer fails, the gateway stays up.
    ok, why = await refused("ws://127.0.0.1:%s/v1/session" % PUB, None)
    check("plain ws to the wss port is refused", ok, why)
    r, code = await session(pub, ctx())
    check("wss public listener: still serving afterwards", r.get("status") == "ok", (r, code))
    return 0 if all(results) else 1


sys.exit(asyncio.run(main()))
