#!/usr/bin/env python3
"""Python's Manager on the W6 workload of bench_manager.c.

4 processes x 2,500 read-modify-write decrements of d['count'] on a
Manager().dict(), under a lock, in operations/s (printed as "<case> <rate>"
for bench/run.py):

  manager_lock   with Manager().Lock() - a lock in the manager server
  mp_lock        with multiprocessing.Lock() - a shared-memory semaphore

As in bench_manager.c, the clock runs from "go" to the last worker's end;
the final count must be 0.

usage: bench_manager.py <case> [processes] [ops per process] - run.py's
scaling rows run 1, 2, 4 and 8 clients; MPIPC_BENCH_SCALE multiplies the
operations.
"""
import multiprocessing as mp
import os
import sys
import time

PROCS = 4
OPS = 2500


def work(d, lock, ready, go, ops):
    d['count']  # connect before the clock starts
    ready.put(1)
    go.wait()
    for _ in range(ops):
        with lock:
            d['count'] -= 1


def main():
    mp.set_start_method("fork")
    case = sys.argv[1]
    procs = int(sys.argv[2]) if len(sys.argv) > 2 else PROCS
    ops = int(sys.argv[3]) if len(sys.argv) > 3 else OPS
    ops = max(1, int(ops * float(os.environ.get("MPIPC_BENCH_SCALE", "1"))))
    with mp.Manager() as m:
        d = m.dict({'count': procs * ops})
        lock = m.Lock() if case == "manager_lock" else mp.Lock()
        ready, go = mp.Queue(), mp.Event()
        ps = [mp.Process(target=work, args=(d, lock, ready, go, ops)) for _ in range(procs)]
        for p in ps:
            p.start()
        for _ in ps:
            ready.get()
        t0 = time.perf_counter()
        go.set()
        for p in ps:
            p.join()
        dt = time.perf_counter() - t0
        if d['count'] != 0 or any(p.exitcode for p in ps):
            sys.exit("bench_manager.py: wrong final count %r" % d['count'])
    print("%s %.1f" % (case, procs * ops / dt))


if __name__ == "__main__":
    main()
