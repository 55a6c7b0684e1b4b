#!/bin/sh
# Build the libFuzzer harnesses and run each for the given number of seconds
# (default 60), starting from a seed corpus of real CPython pickles. Exits
# non-zero if a harness finds a crash, leak, sanitizer report or timeout; the
# reproducer is left in fuzz/artifacts/.
#
#   fuzz/run.sh 60
#
# Corpora grow in fuzz/corpus-pickle/ and fuzz/corpus-frame/ (git-ignored) and
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

status=0
for harness in pickle frame handshake request fastpath; do
    mkdir -p "fuzz/corpus-$harness"
    dict=""
    [ -f "fuzz/$harness.dict" ] && dict="-dict=fuzz/$harness.dict"
    echo "== fuzz_$harness for ${seconds}s"
    # -timeout: an input that takes 10 s is a bug (the decoder is linear);
    # -rss_limit_mb: the decoder never needs much memory for small inputs.
    if ! "build/fuzz/fuzz/fuzz_$harness" $dict \
            -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=8192 \
            -print_final_stats=1 -artifact_prefix=fuzz/artifacts/ \
            "fuzz/corpus-$harness" 2>"fuzz/artifacts/fuzz_$harness.log"; then
        echo "fuzz_$harness FAILED; see fuzz/artifacts/fuzz_$harness.log"
        tail -40 "fuzz/artifacts/fuzz_$harness.log"
        status=1
    fi
    grep -E "^stat::(number_of_executed_units|peak_rss_mb)" "fuzz/artifacts/fuzz_$harness.log" || true
    echo "corpus: $(ls "fuzz/corpus-$harness" | wc -l) files"
done
exit $status
