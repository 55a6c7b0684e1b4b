#!/usr/bin/env python3
"""mpi4py.futures.MPIPoolExecutor on the workloads of bench_pool_mpi.c.

Prints "<case> <tasks/s>" for bench/run.py: 100,000 trivial tasks (square
an int) or 1,000 tasks of 10 ms each, executor.map with chunksize 1, on 3
worker ranks. The executor is warmed up before the clock starts.

usage: mpirun -n 4 python3 -m mpi4py.futures bench_pool_mpi.py <trivial|sleep10> [tasks]
needs: apt-get install -y python3-mpi4py
"""
import os
import sys
import time

from mpi4py.futures import MPIPoolExecutor


def sqr(x):
    return x * x


def sleep10(x):
    time.sleep(0.01)
    return x


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else "trivial"
    n = int(sys.argv[2]) if len(sys.argv) > 2 else (1000 if mode == "sleep10" else 100000)
    n = max(300, int(n * float(os.environ.get("MPIPC_BENCH_SCALE", "1"))))
    fn = sleep10 if mode == "sleep10" else sqr
    with MPIPoolExecutor() as ex:
        list(ex.map(sqr, range(300)))
        t0 = time.perf_counter()
        res = list(ex.map(fn, range(n), chunksize=1))
        t1 = time.perf_counter()
        assert res[n - 1] == (fn(n - 1) if mode != "sleep10" else n - 1)
    print("%s %.0f" % (mode, n / (t1 - t0)))


if __name__ == "__main__":
    main()
