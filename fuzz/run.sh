#!/bin/sh
# Build the libFuzzer harnesses and run each for the given number of seconds
# (default 60), starting from seed corpora (real CPython pickles, manager
# request scripts). Exits non-zero if a harness finds a crash, leak,
# sanitizer report or timeout; the reproducer is left in fuzz/artifacts/.
#
#   fuzz/run.sh 60
#
# Harnesses run two at a time (one per core of a 2-core machine), each for
# the full time, with fuzz_fastpath beside them for twice the time. Corpora grow in fuzz/corpus-<harness>/ (git-ignored) and
# are reused by the next run.
set -eu
seconds=${1:-60}
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
cd "$root"

cmake --preset fuzz >/dev/null
cmake --build --preset fuzz

python3 fuzz/make_corpus.py fuzz/corpus-pickle fuzz/corpus-frame
python3 fuzz/make_mgr_corpus.py fuzz/corpus-request fuzz/corpus-fastpath
mkdir -p fuzz/artifacts

# Run one harness; its output goes to fuzz/artifacts/fuzz_<harness>.log and
# its verdict to fuzz/artifacts/fuzz_<harness>.status.
run_one() {
    harness=$1
    mkdir -p "fuzz/corpus-$harness"
    dict=""
    [ -f "fuzz/$harness.dict" ] && dict="-dict=fuzz/$harness.dict"
    # -timeout: an input that takes 10 s is a bug (the decoders are linear);
    # -rss_limit_mb: the decoders never need much memory for small inputs.
    if "build/fuzz/fuzz/fuzz_$harness" $dict \
            -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=8192 \
            -print_final_stats=1 -artifact_prefix=fuzz/artifacts/ \
            "fuzz/corpus-$harness" 2>"fuzz/artifacts/fuzz_$harness.log"; then
        echo 0 >"fuzz/artifacts/fuzz_$harness.status"
    else
        echo 1 >"fuzz/artifacts/fuzz_$harness.status"
    fi
}

# Two rounds of two harnesses, `seconds` each, and the fast path's harness
# beside both rounds for twice as long: three at a time on two cores, so
# each gets about two thirds of a core, and the whole takes two rounds, not
# three (a third round would leave one core idle).
echo "== fuzz_fastpath for $((2 * seconds))s, beside:"
fastpath_seconds=$((2 * seconds))
(seconds=$fastpath_seconds; run_one fastpath) &
beside=$!
set -- pickle frame handshake request
while [ $# -gt 0 ]; do
    echo "== fuzz_$1 and fuzz_$2 for ${seconds}s"
    run_one "$1" &
    first=$!
    run_one "$2" &
    second=$!
    wait "$second"
    wait "$first"
    shift 2
done
wait "$beside"
harnesses="pickle frame handshake request fastpath"

status=0
for harness in $harnesses; do
    echo "== fuzz_$harness"
    if [ "$(cat "fuzz/artifacts/fuzz_$harness.status")" != 0 ]; then
        echo "fuzz_$harness FAILED; see fuzz/artifacts/fuzz_$harness.log"
        tail -40 "fuzz/artifacts/fuzz_$harness.log"
        status=1
    fi
    grep -E "^stat::(number_of_executed_units|peak_rss_mb)" "fuzz/artifacts/fuzz_$harness.log" || true
    echo "corpus: $(ls "fuzz/corpus-$harness" | wc -l) files"
done
exit $status
