#!/bin/sh
# run.sh: CI runner for the libFuzzer harnesses in tests/fuzz/.
#
# Builds every tests/fuzz/fuzz_*.c (or the harnesses named on the command
# line) with clang 14 and -fsanitize=fuzzer,address,undefined, runs each for
# a bounded time on a throw-away copy of its seed corpus
# tests/fuzz/corpus/<name>/, prints executions and time per harness, and
# exits 1 if any harness fails to build, crashes, leaks, times out or runs
# out of memory.  It never writes into the source tree: binaries go to
# build/fuzz (or $FUZZ_BUILD_DIR), the working corpus and crash artifacts to
# a temporary directory that is kept (and printed) only when something
# failed.  The committed corpus is never grown here.
#
# Arguments: harness names (fuzz_unwrap) or paths to harness files; none
# means every tests/fuzz/fuzz_*.c.
#
# Each harness declares what it links, in comment lines near its top:
#   // FUZZ-SOURCES: common/desfire_*.c common/ota_err.c   (globs, from the top dir)
#   // FUZZ-LIBS: -lcrypto -lsodium pkg-config:libevent    (linker flags;
#                 pkg-config:NAME adds that package's --cflags and --libs)
#   // FUZZ-CFLAGS: -DSOMETHING                             (optional)
#   // FUZZ-MAX-LEN: 8192                                   (optional, default 4096)
# A key may appear on several lines (their values are joined); the same
# keys inside a /* */ block, after " * ", are accepted too.  The seed
# corpus is tests/fuzz/corpus/<name>/, or tests/fuzz/corpus/<name without
# fuzz_>/ (fuzz_unwrap uses corpus/unwrap/).
# A dictionary tests/fuzz/<name>.dict is passed with -dict= when present.
#
# Environment: FUZZ_SECONDS [30] per harness, FUZZ_BUILD_DIR [build/fuzz],
# FUZZ_CC [clang-14, else clang], FUZZ_TIMEOUT [25] seconds per input,
# FUZZ_RSS_MB [2048], KEEP_TMP=1 keeps the temporary directory.
set -u

top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top" || exit 1

FUZZ_SECONDS=${FUZZ_SECONDS:-30}
FUZZ_TIMEOUT=${FUZZ_TIMEOUT:-25}
FUZZ_RSS_MB=${FUZZ_RSS_MB:-2048}
build=${FUZZ_BUILD_DIR:-$top/build/fuzz}
case $FUZZ_SECONDS in '' | *[!0-9]*)
    echo "run.sh: FUZZ_SECONDS must be a whole number of seconds" >&2
    exit 2
    ;;
esac

if [ -n "${FUZZ_CC:-}" ]; then
    cc=$FUZZ_CC
elif command -v clang-14 >/dev/null 2>&1; then
    cc=clang-14
else
    cc=clang
fi
if ! command -v "$cc" >/dev/null 2>&1; then
    echo "run.sh: $cc not found (deploy/setup.sh installs clang and libclang-rt-14-dev)" >&2
    exit 1
fi

mkdir -p "$build" || exit 1
work=$(mktemp -d /tmp/ota-fuzz.XXXXXX) || exit 1
keep=0
cleanup() {
    if [ "$keep" = 0 ] && [ "${KEEP_TMP:-0}" != 1 ]; then
        rm -rf "$work"
    else
        echo "# kept: $work"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The project's warnings, not as errors: a warning in a harness should be
# seen, but the fuzz run is about crashes.
CFLAGS_FUZZ="-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
-fno-omit-frame-pointer -g -O1 -std=c11 -D_GNU_SOURCE -Wall -Wextra \
-I $top -I $top/common -I $top/sim -I $top/gateway -I $top/worker"

# header_value FILE KEY: the value of "KEY:" from the first 40 lines of FILE
# (several lines with the same key are joined).
header_value() {
    head -n 40 "$1" | sed -n "s@^[[:space:]]*\(//\|/\*\|\*\)\?[[:space:]]*$2:[[:space:]]*@@p" |
        sed 's@[[:space:]]*\*/[[:space:]]*$@@' | tr '\n' ' '
}

# expand_sources "GLOBS": each glob relative to the top directory; a glob
# that matches nothing is an error (a harness naming a file that is gone).
expand_sources() {
    out=""
    for g in $1; do
        found=0
        for f in $g; do
            if [ -f "$f" ]; then
                out="$out $top/$f"
                found=1
            fi
        done
        if [ "$found" = 0 ]; then
            echo "FUZZ-SOURCES entry '$g' matches no file" >&2
            return 1
        fi
    done
    printf '%s\n' "$out"
}

# expand_libs "FLAGS": pkg-config:NAME becomes that package's flags.
expand_libs() {
    out=""
    for l in $1; do
        case $l in
        pkg-config:*)
            p=$(pkg-config --cflags --libs "${l#pkg-config:}") || return 1
            out="$out $p"
            ;;
        *) out="$out $l" ;;
        esac
    done
    printf '%s\n' "$out"
}

# stat_value LOG NAME: a number from libFuzzer's -print_final_stats=1 block.
stat_value() {
    sed -n "s/^stat::$2:[[:space:]]*\([0-9][0-9]*\).*/\1/p" "$1" | tail -n 1
}

if [ $# -gt 0 ]; then
    harnesses=""
    for n in "$@"; do
        case $n in
        */*.c) # a path: used as given (lets a test run a harness from elsewhere)
            if [ ! -f "$n" ]; then
                echo "run.sh: no harness $n" >&2
                exit 2
            fi
            harnesses="$harnesses $(cd "$(dirname "$n")" && pwd)/$(basename "$n")"
            ;;
        *)
            n=${n%.c}
            if [ ! -f "tests/fuzz/$n.c" ]; then
                echo "run.sh: no harness tests/fuzz/$n.c" >&2
                exit 2
            fi
            harnesses="$harnesses $top/tests/fuzz/$n.c"
            ;;
        esac
    done
else
    harnesses=$(ls "$top"/tests/fuzz/fuzz_*.c 2>/dev/null)
fi
if [ -z "$harnesses" ]; then
    echo "run.sh: no tests/fuzz/fuzz_*.c harness found" >&2
    exit 1
fi

echo "# fuzz: $($cc --version | head -n 1); $FUZZ_SECONDS s per harness; binaries in $build"
failed=""
total_execs=0
total_secs=0
count=0
for src in $harnesses; do
    name=$(basename "$src" .c)
    count=$((count + 1))
    bin="$build/$name"
    blog="$work/$name.build.log"

    # --- build
    if ! head -n 40 "$src" | grep -q 'FUZZ-SOURCES:'; then
        echo "not ok $count - $name: no '// FUZZ-SOURCES:' line in its first 40 lines" \
            "(declare the project sources it links, and '// FUZZ-LIBS:' its libraries)"
        failed="$failed $name(build)"
        keep=1
        continue
    fi
    if ! srcs=$(expand_sources "$(header_value "$src" FUZZ-SOURCES)" 2>"$blog") ||
        ! libs=$(expand_libs "$(header_value "$src" FUZZ-LIBS)" 2>>"$blog"); then
        echo "not ok $count - $name: bad FUZZ-SOURCES / FUZZ-LIBS line"
        sed 's/^/#   /' "$blog"
        failed="$failed $name(build)"
        keep=1
        continue
    fi
    extra=$(header_value "$src" FUZZ-CFLAGS)
    # shellcheck disable=SC2086 # word splitting of the flag lists is wanted
    if ! $cc $CFLAGS_FUZZ $extra "$src" $srcs $libs -o "$bin" >>"$blog" 2>&1; then
        echo "not ok $count - $name: build failed ($cc)"
        tail -n 30 "$blog" | sed 's/^/#   /'
        failed="$failed $name(build)"
        keep=1
        continue
    fi
    if grep -q 'warning:' "$blog"; then
        echo "# $name: built with warnings:"
        grep 'warning:' "$blog" | head -n 10 | sed 's/^/#   /'
    fi

    # --- corpus: a private copy, so the committed seeds never grow in CI
    corpus="$work/corpus-$name"
    art="$work/artifacts-$name"
    mkdir -p "$corpus" "$art"
    seeds=0
    if [ -d "tests/fuzz/corpus/$name" ]; then
        cp -R "tests/fuzz/corpus/$name/." "$corpus/"
        seeds=$(find "$corpus" -type f | wc -l)
    elif [ -d "tests/fuzz/corpus/${name#fuzz_}" ]; then
        cp -R "tests/fuzz/corpus/${name#fuzz_}/." "$corpus/"
        seeds=$(find "$corpus" -type f | wc -l)
    else
        echo "# $name: no seed corpus (tests/fuzz/corpus/${name#fuzz_}/); starting empty"
    fi
    maxlen=$(header_value "$src" FUZZ-MAX-LEN | tr -d ' ')
    case $maxlen in '' | *[!0-9]*) maxlen=4096 ;; esac
    # Never shorter than the longest seed: libFuzzer would truncate it.
    longest=$(find "$corpus" -type f -exec wc -c {} + 2>/dev/null |
        awk '$2 != "total" && $1 > m { m = $1 } END { print m + 0 }')
    [ "$longest" -gt "$maxlen" ] && maxlen=$longest
    dict=""
    if [ -f "tests/fuzz/$name.dict" ]; then
        dict="-dict=$top/tests/fuzz/$name.dict"
    fi

    # --- run (in the work dir, so nothing lands in the source tree)
    rlog="$work/$name.log"
    start=$(date +%s)
    # shellcheck disable=SC2086
    (
        cd "$work" &&
            ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}" \
                UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}" \
                timeout -s KILL $((FUZZ_SECONDS + FUZZ_TIMEOUT + 120)) \
                "$bin" -max_total_time="$FUZZ_SECONDS" -print_final_stats=1 \
                -max_len="$maxlen" -timeout="$FUZZ_TIMEOUT" -rss_limit_mb="$FUZZ_RSS_MB" \
                -artifact_prefix="$art/" $dict "$corpus"
    ) >"$rlog" 2>&1
    rc=$?
    end=$(date +%s)
    secs=$((end - start))
    execs=$(stat_value "$rlog" number_of_executed_units)
    rate=$(stat_value "$rlog" average_exec_per_sec)
    added=$(stat_value "$rlog" new_units_added)
    rss=$(stat_value "$rlog" peak_rss_mb)
    cov=$(sed -n 's/.* cov: \([0-9][0-9]*\) .*/\1/p' "$rlog" | tail -n 1)
    nart=$(find "$art" -type f | wc -l)
    summary="${execs:-?} executions in ${secs} s (${rate:-?}/s), seeds $seeds, new inputs ${added:-?}, cov ${cov:-?}, max_len $maxlen, peak RSS ${rss:-?} MB"
    if [ "$rc" -eq 0 ] && [ "$nart" -eq 0 ] && [ -n "$execs" ]; then
        echo "ok $count - $name: $summary"
        total_execs=$((total_execs + execs))
        total_secs=$((total_secs + secs))
    else
        if [ "$rc" -eq 137 ]; then
            why="killed after $((FUZZ_SECONDS + FUZZ_TIMEOUT + 120)) s (hung)"
        elif [ -z "$execs" ] && [ "$rc" -eq 0 ]; then
            why="no final stats (did the harness run?)"
        else
            why="exit $rc"
        fi
        echo "not ok $count - $name: $why; $summary"
        grep -E '^(==[0-9]+==ERROR|SUMMARY|.*runtime error:|.*(deadly signal|Timeout|out-of-memory|leak))' \
            "$rlog" | head -n 15 | sed 's/^/#   /'
        grep -A 12 '^==[0-9]*==ERROR' "$rlog" | grep '#[0-9]' | head -n 12 | sed 's/^/#   /'
        if [ "$nart" -gt 0 ]; then
            echo "#   crash artifacts in $art:"
            find "$art" -type f | sed 's/^/#     /'
            echo "#   reproduce: $bin ARTIFACT"
        fi
        echo "#   full log: $rlog"
        failed="$failed $name"
        keep=1
    fi
done

echo "# fuzz: $count harness(es), $total_execs executions in $total_secs s (passing harnesses)"
if [ -n "$failed" ]; then
    echo "# FAILED:$failed"
    exit 1
fi
exit 0
