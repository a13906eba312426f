#!/usr/bin/python3
"""A client behind a (pretend) load balancer, for test_hardening.sh.

Opens a TCP connection to the gateway, writes a PROXY protocol v1 header
announcing SRC_ADDR as the client's address, then speaks WebSocket
(python3-websockets) on the same socket: sends `operation`, relays every
`command` to the simulated card through `ota-card relay --card FILE` and
ends on `result`, which it prints as JSON on the last line.

Options (tests only):
  --uid HEX       name this UID instead of the card's (a lying client)
  --corrupt N     flip one bit of the card's answer to command N (counting
                  from 1), as a relay that tampers with the card's bytes
  --corrupt-after-write INS
                  the same, for the first command with instruction byte INS
                  (hex) after the WriteRecord (0x3B) went out: money at risk

Exit status: 0 a result arrived (whatever its status), 4 none arrived.

usage: proxy_client.py HOST:PORT SRC_ADDR CARD_FILE OPERATION [AUTHCODE]
                       [--uid HEX] [--corrupt N] [--corrupt-after-write INS]
"""
import asyncio
import json
import socket
import subprocess
import sys

import websockets


def parse_args(argv):
    opts = {"uid": None, "corrupt": 0, "after_write": None}
    pos = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--uid":
            opts["uid"] = argv[i + 1]
            i += 2
        elif a == "--corrupt":
            opts["corrupt"] = int(argv[i + 1])
            i += 2
        elif a == "--corrupt-after-write":
            opts["after_write"] = int(argv[i + 1], 16)
            i += 2
        else:
            pos.append(a)
            i += 1
    if len(pos) not in (4, 5):
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    return pos, opts


async def session(hostport, src, card, operation, authcode, opts):
    host, port = hostport.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=10)
    family = "TCP6" if ":" in src else "TCP4"
    dst = sock.getpeername()[0]
    sport = sock.getsockname()[1]
    sock.sendall(f"PROXY {family} {src} {dst} {sport} {port}\r\n".encode("ascii"))
    sock.settimeout(None)
    relay = subprocess.Popen(["ota-card", "relay", "--card", card], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, bufsize=1)
    uid = relay.stdout.readline().strip()
    if opts["uid"]:
        uid = opts["uid"]
    result = None
    n = 0
    written = False
    try:
        async with websockets.connect(f"ws://{host}:{port}/v1/session", sock=sock,
                                      max_size=4096, open_timeout=10) as ws:
            await ws.send(json.dumps({"type": "operation", "operation": operation, "uid": uid,
                                      "tech": "IsoDep", "authCode": authcode,
                                      "requestId": "proxy-1"}))
            async for raw in ws:
                msg = json.loads(raw)
                if msg["type"] == "command":
                    n += 1
                    relay.stdin.write(msg["data"] + "\n")
                    relay.stdin.flush()
                    answer = relay.stdout.readline().strip()
                    ins = int(msg["data"][2:4], 16) if len(msg["data"]) >= 4 else -1
                    target = n == opts["corrupt"]
                    if written and ins == opts["after_write"]:
                        target = True
                        opts["after_write"] = None
                    written = written or ins == 0x3B
                    if target and len(answer) >= 2:
                        answer = "%02x" % (int(answer[:2], 16) ^ 0x01) + answer[2:]
                    await ws.send(json.dumps({"type": "response", "data": answer}))
                elif msg["type"] == "result":
                    result = msg
    except (OSError, websockets.exceptions.WebSocketException) as e:
        print(f"proxy_client: {e}", file=sys.stderr)
    relay.stdin.close()
    relay.wait(timeout=10)
    return result


def main():
    pos, opts = parse_args(sys.argv[1:])
    authcode = pos[4] if len(pos) > 4 else ""
    result = asyncio.run(session(pos[0], pos[1], pos[2], pos[3], authcode, opts))
    if result is None:
        print(json.dumps({"type": "client-error"}))
        sys.exit(4)
    print(json.dumps(result))
    sys.exit(0)


main()
