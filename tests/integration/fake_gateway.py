#!/usr/bin/python3
"""A fake gateway for testing clients (ota-card run) without the real system.

Written with python3-websockets, independent of our C code.  It speaks the
client side of docs/PROTOCOL.md from a fixed script chosen by the URL path, so
one server serves every case of a test:

  /ok                 modal, four APDUs (select PICC, GetVersion and its two
                      continuations), then result ok (topup: amount 500,
                      balance 1500, txn) echoing operation and requestId
  /failed/CODE        the same APDUs, then result failed with error CODE
  /pending            the same APDUs, then result pending (txn, lost-tag)
  /create-app         select PICC, CreateApplication 112233 (no auth, factory
                      key settings), GetApplicationIDs; result ok only if the
                      card answered 9100 and listed 112233 (proves the card
                      really ran the APDUs; the client must save the card)
  /ping               pings the client and requires its pong before going on
  /close-early        one command, then close 1011 without a result
  /bad-json           sends a text that is not JSON
  /two-commands       two commands without waiting for the answer
  /big                a 20000-byte text message (over the client's limit)
  /silent             says nothing (the client's timeout must end it)
  /no-close           result ok, then never closes (the client must not hang)

Batches (protocol v2, docs/PROTOCOL.md section 8), when the operation
announced "batch" (else these paths play v1, one command at a time):

  /batch              the four GetVersion APDUs in one `commands`, then one
                      single `command` (select PICC) inside the v2 session;
                      result ok only if `responses` held four answers (the
                      last ending 9100) and the single got a `response`
  /batch-stop         select PICC, a command the card refuses (ReadData of a
                      file the PICC level has not), GetVersion: result ok
                      only if the client stopped after the refusal (two
                      answers, the second not 9100/91af)
  /batch-too-big      one APDU more than the client announced (the client
                      must close with 1002)

A `response` is checked to be lower- or upper-case hex ending in a status
word; an `error` (lost-tag, io, timeout) ends the script with result failed
and that kind as the error.  Every message the client sent, and how each
connection ended, goes to --log as one JSON object per line.

usage: fake_gateway.py --port-file FILE --log FILE
"""
import argparse
import asyncio
import json
import os
import re
import sys

import websockets

HEX = re.compile(r"^(?:[0-9a-fA-F]{2})+$")
GETVERSION = ["905a00000300000000", "9060000000", "90af000000", "90af000000"]


class Session:
    def __init__(self, ws, path, log):
        self.ws = ws
        self.path = path
        self.log = log
        self.op = None

    def record(self, **kv):
        kv["path"] = self.path
        self.log.write(json.dumps(kv) + "\n")
        self.log.flush()

    async def recv_json(self):
        raw = await asyncio.wait_for(self.ws.recv(), 20)
        msg = json.loads(raw)
        self.record(event="recv", msg=msg)
        return msg

    async def command(self, apdu):
        """Sends one command; returns the answer's hex, or the error kind."""
        await self.ws.send(json.dumps({"type": "command", "data": apdu}))
        msg = await self.recv_json()
        if msg.get("type") == "error":
            return None, msg.get("kind", "io")
        data = msg.get("data")
        if msg.get("type") != "response" or not isinstance(data, str) or not HEX.match(data) \
                or len(data) < 4:
            return None, "bad-request"
        return data.lower(), None

    async def result(self, status, **kv):
        res = {"type": "result", "operation": self.op.get("operation"), "status": status}
        if "requestId" in self.op:
            res["requestId"] = self.op["requestId"]
        res.update(kv)
        await self.ws.send(json.dumps(res))

    async def batch(self, apdus):
        """Sends one `commands`; returns (answers, error kind or None)."""
        await self.ws.send(json.dumps({"type": "commands", "data": apdus}))
        msg = await self.recv_json()
        data = msg.get("data")
        if msg.get("type") != "responses" or not isinstance(data, list) or len(data) > len(apdus) \
                or not all(isinstance(d, str) and HEX.match(d) and len(d) >= 4 for d in data):
            return None, "bad-request"
        return [d.lower() for d in data], msg.get("error")

    async def play_batch(self):
        p = self.path
        n = self.op.get("batch")
        if not isinstance(n, int) or not 2 <= n <= 16:
            # A v1 client: the same APDUs one at a time.
            if await self.run_apdus(GETVERSION) is not None:
                await self.ok_result()
            return
        if p == "/batch":
            await self.ws.send(json.dumps({"type": "modal", "message": "Hold the card still"}))
            ans, err = await self.batch(GETVERSION[:n])
            if err is not None or ans is None:
                await self.result("failed", error=err or "bad-request")
                return
            single, err = await self.command(GETVERSION[0])
            if len(ans) == min(n, 4) and ans[-1].endswith("9100") and single == "9100":
                await self.ok_result()
            else:
                await self.result("failed", error="card-error")
        elif p == "/batch-stop":
            ans, err = await self.batch([GETVERSION[0], "90bd0000070100000000000000", GETVERSION[1]])
            if err is None and ans is not None and len(ans) == 2 and \
                    ans[1][-4:] not in ("9100", "91af"):
                await self.ok_result()
            else:
                await self.result("failed", error=err or "card-error")
        elif p == "/batch-too-big":
            await self.batch([GETVERSION[0]] * (n + 1))

    async def run_apdus(self, apdus):
        answers = []
        for apdu in apdus:
            data, err = await self.command(apdu)
            if err is not None:
                await self.result("failed", error=err)
                return None
            answers.append(data)
        return answers

    async def ok_result(self):
        if self.op.get("operation") == "topup":
            await self.result("ok", amount=500, balance=1500, txn="00112233445566778899aabbccddeeff")
        else:
            await self.result("ok", balance=1500)

    async def play(self):
        self.op = await self.recv_json()
        need = {"type": "operation", "tech": "IsoDep"}
        if any(self.op.get(k) != v for k, v in need.items()) or \
                self.op.get("operation") not in ("check", "topup", "personalize") or \
                not isinstance(self.op.get("uid"), str) or not HEX.match(self.op["uid"]) or \
                not isinstance(self.op.get("authCode"), str):
            await self.result("failed", error="bad-request")
            await self.ws.close(1000)
            return
        p = self.path
        if p == "/ok" or p.startswith("/failed/") or p == "/pending":
            await self.ws.send(json.dumps({"type": "modal", "message": "Hold the card still"}))
            if await self.run_apdus(GETVERSION) is None:
                await self.ws.close(1000)
                return
            if p == "/ok":
                await self.ok_result()
            elif p == "/pending":
                await self.result("pending", txn="00112233445566778899aabbccddeeff",
                                  error="lost-tag")
            else:
                await self.result("failed", error=p[len("/failed/"):])
            await self.ws.close(1000)
        elif p == "/create-app":
            ans = await self.run_apdus(["905a00000300000000", "90ca000005112233" "0f0100",
                                        "906a000000"])
            if ans is not None:
                good = ans[0] == "9100" and ans[1] == "9100" and "112233" in ans[2][:-4] and \
                    ans[2].endswith("9100")
                if good:
                    await self.ok_result()
                else:
                    await self.result("failed", error="card-error")
            await self.ws.close(1000)
        elif p == "/ping":
            waiter = await self.ws.ping(b"are-you-there")
            await asyncio.wait_for(waiter, 5)
            self.record(event="pong")
            if await self.run_apdus(GETVERSION[:2]) is not None:
                await self.ok_result()
            await self.ws.close(1000)
        elif p == "/close-early":
            await self.command(GETVERSION[0])
            await self.ws.close(1011, "worker gone")
        elif p == "/bad-json":
            await self.ws.send("this is not json")
            await self.wait_closed()
        elif p == "/two-commands":
            await self.ws.send(json.dumps({"type": "command", "data": GETVERSION[0]}))
            await self.ws.send(json.dumps({"type": "command", "data": GETVERSION[1]}))
            await self.wait_closed()
        elif p == "/big":
            await self.ws.send(json.dumps({"type": "modal", "message": "x" * 20000}))
            await self.wait_closed()
        elif p.startswith("/batch"):
            await self.play_batch()
            await self.ws.close(1000)
        elif p == "/silent":
            await self.wait_closed()
        elif p == "/no-close":
            await self.ok_result()
            await self.wait_closed()
        else:
            await self.result("failed", error="bad-request")
            await self.ws.close(1000)

    async def wait_closed(self):
        try:
            await asyncio.wait_for(self.ws.wait_closed(), 30)
        except asyncio.TimeoutError:
            pass


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--log", required=True)
    args = ap.parse_args()
    log = open(args.log, "a", encoding="utf-8")

    async def handler(ws, path=None):
        path = path if path is not None else ws.path
        s = Session(ws, path, log)
        try:
            await s.play()
            await s.wait_closed()
        except websockets.ConnectionClosed:
            pass
        except (asyncio.TimeoutError, ValueError) as e:
            s.record(event="error", error=repr(e))
        s.record(event="closed", code=ws.close_code, reason=ws.close_reason)

    async with websockets.serve(handler, "127.0.0.1", 0, max_size=4096,
                                ping_interval=None) as server:
        port = server.sockets[0].getsockname()[1]
        tmp = args.port_file + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(f"{port}\n")
        os.rename(tmp, args.port_file)
        await asyncio.Future()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
