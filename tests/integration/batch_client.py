#!/usr/bin/python3
"""A protocol v2 app in another language: the way a phone app's developer
tests against a running gateway (docs/PROTOCOL.md, "Testing an app").

Written with python3-websockets (not our C client): sends `operation` with
"batch": N, hands every `commands` message to the simulated card through
`ota-card relay` as one line (the APDUs separated by spaces), sends the
answers line back as `responses`, answers a single `command` with
`response`, and ends on `result`.  Prints the result as JSON on the last
line with "roundTrips" (messages that carried APDUs) and "apdus" added,
and the same counts on stderr.  Exits 0 when the result's status is the
expected one (default ok), 7 when a batch was larger than announced.

usage: batch_client.py URL CARD_FILE OPERATION [AUTHCODE] [--batch N] [--expect STATUS]
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
    result = None
    round_trips = apdus = 0

    def card(line):
        relay.stdin.write(line + "\n")
        relay.stdin.flush()
        return relay.stdout.readline().strip()

    async with websockets.connect(url, max_size=16384) as ws:
        await ws.send(json.dumps({"type": "operation", "operation": operation, "uid": uid,
                                  "tech": "IsoDep", "authCode": authcode,
                                  "requestId": "batch-1", "batch": batch}))
        async for raw in ws:
            msg = json.loads(raw)
            if msg["type"] == "commands":
                if len(msg["data"]) > batch:
                    print("batch of %d, more than announced" % len(msg["data"]), file=sys.stderr)
                    sys.exit(7)
                round_trips += 1
                apdus += len(msg["data"])
                answers = card(" ".join(msg["data"]))
                if answers == "error":
                    await ws.send(json.dumps({"type": "responses", "data": [],
                                              "error": "io"}))
                else:
                    await ws.send(json.dumps({"type": "responses", "data": answers.split(" ")}))
            elif msg["type"] == "command":
                round_trips += 1
                apdus += 1
                await ws.send(json.dumps({"type": "response", "data": card(msg["data"])}))
            elif msg["type"] == "modal":
                print("modal:", msg["message"], file=sys.stderr)
            elif msg["type"] == "result":
                result = msg
    relay.stdin.close()
    relay.wait(timeout=10)
    print(f"round_trips={round_trips} apdus={apdus}", file=sys.stderr)
    if result is None:
        print("null")
        sys.exit(4)
    result["roundTrips"] = round_trips
    result["apdus"] = apdus
    print(json.dumps(result))
    sys.exit(0 if result.get("status") == expect else 1)


asyncio.run(main())
