#!/usr/bin/python3
"""A flood of personalizations with wrong operator tokens, all at once.

Usage: token_flood.py OPERATOR_URL COUNT PROGRESS_FILE

Opens COUNT WebSockets to the operator listener, sends on each a
`personalize` operation with a different wrong token, and waits for each
`result`.  Every result is appended to PROGRESS_FILE as it comes (one line:
status and error), so the test can see how far the flood got while other
clients were served.  Exits 0 when every result is failed/auth-failed.
Uses python3-websockets (Debian); no card is needed: a wrong token is
refused before any card command."""
import asyncio
import json
import secrets
import sys

import websockets

URL, COUNT, PROGRESS = sys.argv[1], int(sys.argv[2]), sys.argv[3]


async def one(i, out):
    async with websockets.connect(URL, open_timeout=60) as ws:
        await ws.send(json.dumps({
            "type": "operation", "operation": "personalize", "uid": "04f1f2f3f4f5f6",
            "tech": "IsoDep", "authCode": "wrong-" + secrets.token_hex(12)}))
        while True:
            m = json.loads(await asyncio.wait_for(ws.recv(), 120))
            if m.get("type") == "result":
                line = "%s %s" % (m.get("status"), m.get("error", ""))
                out.write(line + "\n")
                out.flush()
                return line


async def main():
    with open(PROGRESS, "a", encoding="utf-8") as out:
        lines = await asyncio.gather(*(one(i, out) for i in range(COUNT)))
    bad = [x for x in lines if x != "failed auth-failed"]
    print("flood: %d results, %d not failed/auth-failed %s" % (len(lines), len(bad), bad[:3]))
    return 0 if not bad else 1


sys.exit(asyncio.run(main()))
