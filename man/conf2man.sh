#!/bin/sh
# conf2man.sh: writes the manual page ota.conf(5) to stdout: the prose of
# ota.conf.5.in, then one entry per key of deploy/ota.conf.example (its
# comment and its default), so that the page lists exactly the keys the
# example documents (and tests/unit/test_config checks against the code).
# Usage: conf2man.sh ota.conf.5.in ota.conf.example
set -eu
sed '/^@KEYS@$/,$d' "$1"
awk '
function esc(s,   out) {
    gsub(/\\/, "\\e", s)
    if (s ~ /^[.\047]/) s = "\\&" s
    # mdoc wants each sentence on a line of its own.
    out = ""
    while (match(s, /[.!?] +[A-Z(]/)) {
        out = out substr(s, 1, RSTART) "\n"
        s = substr(s, RSTART + RLENGTH - 1)
    }
    return out s
}
function flush_text(   i) {
    for (i = 1; i <= n; i++) print esc(text[i])
    n = 0
}
/^## / {
    title = $0
    sub(/^## */, "", title)
    sub(/ *#*$/, "", title)
    if (open) print ".El"
    print ".Ss " esc(title)
    print ".Bl -tag -width Ds"
    open = 1
    n = 0
    next
}
!open { next }
/^#/ {
    line = $0
    sub(/^# ?/, "", line)
    if (line != "") text[++n] = line
    next
}
/^[a-z_.]+ *=/ {
    key = $0
    sub(/ *=.*/, "", key)
    val = $0
    sub(/^[^=]*= */, "", val)
    print ".It Cm " key
    flush_text()
    if (val == "") print "Default: empty."
    else print "Default:\n.Ql " esc(val) " ."
    next
}
/^$/ { next }
{ print "conf2man.sh: cannot read line " NR ": " $0 > "/dev/stderr"; exit 1 }
END { if (open) print ".El" }
' "$2"
sed '1,/^@KEYS@$/d' "$1"
