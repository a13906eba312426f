#!/usr/bin/python3
"""A v2 (batching) client of its own, for the system tests of the server.

Written with python3-websockets (not our C client): connects to the given
URL, sends `operation` with "batch": N, runs every `commands` batch on the
simulated card through `ota-card relay` (one hex APDU per line in, one hex
answer per line out), stopping after the first answer that does not end in
91 00 / 91 AF as docs/PROTOCOL.md says, and answers with one `responses`.
Prints the result as JSON on the last line, with "roundTrips" (messages
carrying APDUs) and "apdus" added; exits 0 when the result's status is the
expected one (default ok).

usage: v2_client.py URL CARD_FILE OPERATION [AUTHCODE] [--batch N] [--expect STATUS]
"""
import asyncio
import json
import subprocess
import sys

import websockets


def option(name, default):
    if name in sys.argv:
        i = sys.argv.index(name)
        value = sys.argv[i + 1]
        del sys.argv[i:i + 2]
        return value
    return default


async def main():
    expect = option("--expect", "ok")
    batch = int(option("--batch", "16"))
    url, card, operation = sys.argv[1], sys.argv[2], sys.argv[3]
    authcode = sys.argv[4] if len(sys.argv) > 4 else ""
    relay = subprocess.Popen(["ota-card", "relay", "--card", card], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, bufsize=1)
    uid = relay.stdout.readline().strip()  # the relay announces the card's UID first
    trips = apdus = 0
    result = None
    async with websockets.connect(url, max_size=4096) as ws:
        await ws.send(json.dumps({"type": "operation", "operation": operation, "uid": uid,
                                  "tech": "IsoDep", "authCode": authcode, "batch": batch}))
        async for raw in ws:
            msg = json.loads(raw)
            if msg["type"] in ("commands", "command"):
                trips += 1
                batch_in = msg["data"] if msg["type"] == "commands" else [msg["data"]]
                if len(batch_in) > batch:
                    print("batch of %d, more than announced" % len(batch_in), file=sys.stderr)
                    sys.exit(7)
                answers = []
                for apdu in batch_in:
                    relay.stdin.write(apdu + "\n")
                    relay.stdin.flush()
                    answers.append(relay.stdout.readline().strip())
                    apdus += 1
                    if not (answers[-1].endswith("9100") or answers[-1].lower().endswith("91af")):
                        break
                if msg["type"] == "command":
                    await ws.send(json.dumps({"type": "response", "data": answers[0]}))
                else:
                    await ws.send(json.dumps({"type": "responses", "data": answers}))
            elif msg["type"] == "result":
                result = msg
    relay.stdin.close()
    relay.wait(timeout=10)
    if result is None:
        sys.exit(4)
    result["roundTrips"] = trips
    result["apdus"] = apdus
    print(json.dumps(result))
    sys.exit(0 if result.get("status") == expect else 1)


asyncio.run(main())
