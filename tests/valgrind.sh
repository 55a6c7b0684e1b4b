#!/usr/bin/env bash
# valgrind.sh <test binary> - run one test binary under memcheck and judge it
# the way forking tests need:
#   - the parent process must end with zero errors, leaks included;
#   - every forked child must be free of memory errors (invalid reads and
#     writes, uninitialised values, bad frees). A child's "leaks" are not
#     judged: it leaves through _exit() still holding the heap it inherited
#     from its parent, which is not a leak of the library's.
set -u
bin=$1
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
valgrind --leak-check=full --show-leak-kinds=definite,indirect,possible \
    --errors-for-leak-kinds=definite,indirect,possible --track-fds=no \
    --log-file="$logs/vg.%p" "$bin" &
main_pid=$!
wait "$main_pid"
status=$?
fail=0
if [ "$status" -ne 0 ]; then
    echo "valgrind.sh: $bin exited with status $status"
    fail=1
fi
parent_log="$logs/vg.$main_pid"
if ! grep -q "ERROR SUMMARY: 0 errors" "$parent_log"; then
    echo "valgrind.sh: errors or leaks in the test process:"
    cat "$parent_log"
    fail=1
fi
for log in "$logs"/vg.*; do
    [ "$log" = "$parent_log" ] && continue
    if grep -qE "Invalid (read|write|free)|uninitialised|Mismatched free|overlap|Syscall param|Jump to the invalid" "$log"; then
        echo "valgrind.sh: memory errors in a child process:"
        cat "$log"
        fail=1
    fi
done
children=$(( $(ls "$logs" | wc -l) - 1 ))
[ "$fail" -eq 0 ] && echo "valgrind.sh: $(basename "$bin") clean (test process + $children children)"
exit "$fail"
