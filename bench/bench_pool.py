#!/usr/bin/env python3
"""Python's multiprocessing.Pool on the workloads of bench_pool.c.

Prints "<case> <tasks/s>" for bench/run.py: 100,000 trivial tasks (square
an int) on Pool(2) - map1 (map, chunksize=1), apply_async (a loop of
apply_async, then get() on each), map_default (map, default chunksize).
The pool is made and warmed up before the clock starts.

usage: bench_pool.py <mode> [processes] [tasks] - run.py's scaling rows run
map1 on 1, 2, 4 and 8 workers; MPIPC_BENCH_SCALE multiplies the tasks.
"""
import multiprocessing as mp
import os
import sys
import time

N = 100000


def sqr(x):
    return x * x


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else "map1"
    processes = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    tasks = int(sys.argv[3]) if len(sys.argv) > 3 else N
    n = max(1000, int(tasks * float(os.environ.get("MPIPC_BENCH_SCALE", "1"))))
    with mp.get_context("fork").Pool(processes) as p:
        p.map(sqr, range(1000), chunksize=1)
        t0 = time.perf_counter()
        if mode == "map1":
            res = p.map(sqr, range(n), chunksize=1)
        elif mode == "map_default":
            res = p.map(sqr, range(n))
        elif mode == "apply_async":
            rs = [p.apply_async(sqr, (i,)) for i in range(n)]
            res = [r.get() for r in rs]
        else:
            raise SystemExit("unknown mode " + mode)
        t1 = time.perf_counter()
        assert res[n - 1] == (n - 1) ** 2
    print("%s %.0f" % (mode, n / (t1 - t0)))


if __name__ == "__main__":
    main()
