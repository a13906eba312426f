#!/usr/bin/python3
"""The seed proof-of-concept app's message flow, as an independent client.

Written with python3-websockets (not our C client): connects to the given
URL (path `/`, as the original app did), sends `operation`, relays every
`command` to the simulated card through `ota-card relay` (one hex APDU per
line in, one hex answer per line out), prints `modal` texts and ends on
`result`.  Prints the result as JSON on the last line; exits 0 when the
result's status is the expected one (default ok).

usage: seed_client.py URL CARD_FILE OPERATION [AUTHCODE] [--expect STATUS]
"""
import asyncio
import json
import subprocess
import sys

import websockets


async def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    expect = "ok"
    if "--expect" in sys.argv:
        expect = sys.argv[sys.argv.index("--expect") + 1]
        args.remove(expect)
    url, card, operation = args[0], args[1], args[2]
    authcode = args[3] if len(args) > 3 else ""
    relay = subprocess.Popen(["ota-card", "relay", "--card", card], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, bufsize=1)
    uid = relay.stdout.readline().strip()  # the relay announces the card's UID first
    modals = 0
    result = None
    async with websockets.connect(url, max_size=4096) as ws:
        await ws.send(json.dumps({"type": "operation", "operation": operation, "uid": uid,
                                  "tech": "IsoDep", "authCode": authcode,
                                  "requestId": "seed-1"}))
        async for raw in ws:
            msg = json.loads(raw)
            if msg["type"] == "command":
                relay.stdin.write(msg["data"] + "\n")
                relay.stdin.flush()
                answer = relay.stdout.readline().strip()
                await ws.send(json.dumps({"type": "response", "data": answer}))
            elif msg["type"] == "modal":
                modals += 1
                print("modal:", msg["message"], file=sys.stderr)
            elif msg["type"] == "result":
                result = msg
    relay.stdin.close()
    relay.wait(timeout=10)
    print(json.dumps(result))
    if result is None:
        sys.exit(4)
    if result.get("requestId") != "seed-1":
        print("requestId not echoed", file=sys.stderr)
        sys.exit(5)
    if operation == "topup" and expect == "ok" and modals == 0:
        print("no modal message during a top-up", file=sys.stderr)
        sys.exit(6)
    sys.exit(0 if result.get("status") == expect else 1)


asyncio.run(main())
