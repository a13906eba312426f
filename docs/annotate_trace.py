#!/usr/bin/python3
"""annotate_trace.py: turns an `ota-card run --trace` file into the
annotated session of docs/PROTOCOL.md section 11 (Markdown on stdout).

Each message becomes one line (→ client to gateway, ← gateway to client,
with its time); under each APDU and answer a note says what it is: the
DESFire instruction (by its INS byte, the command's second byte), its
parameters where they are plain, and the status of the answer.

usage: annotate_trace.py TRACE_FILE
"""
import json
import sys

INS = {
    "5a": "SelectApplication", "aa": "AuthenticateAES part 1 (key number)",
    "a7": "AbortTransaction", "f5": "GetFileSettings", "bb": "ReadRecords",
    "6c": "GetValue", "3b": "WriteRecord, first frame (enciphered)", "0c": "Credit (enciphered)",
    "c7": "CommitTransaction", "60": "GetVersion", "ca": "CreateApplication",
}
STATUS = {"9100": "OK", "91af": "more frames follow", "91be": "boundary error (no records)",
          "91ae": "authentication error", "919d": "permission denied", "91ca": "command aborted"}


def apdu_note(hex_, prev_ins):
    ins = hex_[2:4]
    if ins == "af":
        if prev_ins == "aa":
            return "AuthenticateAES part 2: E(RndA ‖ RndB') under the card's key", "aa2"
        if prev_ins == "3b":
            return "WriteRecord, continuation frame", "3b2"
        return "continue: the next frame of the card's answer", prev_ins
    name = INS.get(ins, "INS " + ins)
    data = hex_[10:-2] if len(hex_) > 12 else ""
    if ins == "5a":
        name += " " + data[4:6] + data[2:4] + data[0:2] + " (AID, sent LSB first)"
    elif ins in ("f5", "6c"):
        name += " (file %d)" % int(data[:2], 16)
    elif ins == "bb":
        count = int(data[10:12] + data[8:10], 16)
        name += " (file %d, from record %d, %d record%s)" % (
            int(data[:2], 16), int(data[4:6] + data[2:4], 16), count, "" if count == 1 else "s")
    elif ins == "aa":
        key = int(data[:2], 16)
        name = "AuthenticateAES part 1 (key %d%s)" % (key, ", the credit key" if key == 2 else "")
    return name, ins


def answer_note(hex_, ins):
    sw = hex_[-4:]
    st = STATUS.get(sw, "status " + sw)
    n = len(hex_) // 2 - 2
    if n == 0:
        return st
    what = {"aa": "E(RndB) from the card", "aa2": "E(RndA') from the card: the card knew the key",
            "a7": "CMAC", "c7": "CMAC", "0c": "CMAC", "3b2": "CMAC",
            "f5": "settings ‖ CMAC", "6c": "enciphered value ‖ CRC",
            "bb": "enciphered records ‖ CRC"}.get(ins, "data")
    return "%s, %d bytes: %s" % (st, n, what)


def short(hex_):
    """The first 24 hex digits of a long APDU or answer (the full one is in
    the message line above)."""
    return hex_[:24] + ("…" if len(hex_) > 24 else "")


def main(path):
    pending = []
    for line in open(path):
        e = json.loads(line)
        m, arrow = e["msg"], "→" if e["dir"] == "out" else "←"
        print("%s %5d ms  %s" % (arrow, e["ms"], json.dumps(m, separators=(",", ":"))))
        t = m.get("type")
        if t in ("command", "commands"):
            apdus = [m["data"]] if t == "command" else m["data"]
            prev = pending[-1][1] if pending else None
            pending = []
            for a in apdus:
                note, prev = apdu_note(a, prev)
                pending.append((note, prev))
                print("           %-25s  %s" % (short(a), note))
        elif t in ("response", "responses"):
            answers = [m["data"]] if t == "response" else m["data"]
            for i, a in enumerate(answers):
                ins = pending[i][1] if i < len(pending) else None
                print("           %-25s  %s" % (short(a), answer_note(a, ins)))
            if m.get("error"):
                print("           error: %s" % m["error"])


if __name__ == "__main__":
    main(sys.argv[1])
