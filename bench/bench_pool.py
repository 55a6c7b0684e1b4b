#!/usr/bin/env python3
"""Python's multiprocessing.Pool on the workloads of bench_pool.c.

Prints "<case> <tasks/s>" for bench/run.py: 100,000 trivial tasks (square
an int) on Pool(2) - map1 (map, chunksize=1), apply_async (a loop of
apply_async, then get() on each), map_default (map, default chunksize).
The pool is made and warmed up before the clock starts.
"""
import multiprocessing as mp
import sys
import time

N = 100000


def sqr(x):
    return x * x


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else "map1"
    with mp.get_context("fork").Pool(2) as p:
        p.map(sqr, range(1000), chunksize=1)
        t0 = time.perf_counter()
        if mode == "map1":
            res = p.map(sqr, range(N), chunksize=1)
        elif mode == "map_default":
            res = p.map(sqr, range(N))
        elif mode == "apply_async":
            rs = [p.apply_async(sqr, (i,)) for i in range(N)]
            res = [r.get() for r in rs]
        else:
            raise SystemExit("unknown mode " + mode)
        t1 = time.perf_counter()
        assert res[N - 1] == (N - 1) ** 2
    print("%s %.0f" % (mode, N / (t1 - t0)))


if __name__ == "__main__":
    main()
