#!/usr/bin/env python3
"""Python's multiprocessing.Queue and SimpleQueue on the bench_queue.c workloads.

Prints "<case> <rate>" for bench/run.py: 64-byte items per second from the
first put to the last get, with one producer and one consumer process
(1to1), two of each (2to2), or any "<P>to<C>" (run.py's scaling rows use
1to1 .. 8to8). An optional second argument is the number of items
(default 200,000); MPIPC_BENCH_SCALE multiplies it.
"""
import multiprocessing as mp
import os
import re
import sys
import time

ITEM = b"\0" * 64
N = 200000


def produce(q, n):
    put = q.put
    for _ in range(n):
        put(ITEM)


def consume(q, n):
    get = q.get
    for _ in range(n):
        get()


def run(kind, producers, consumers, items):
    q = mp.SimpleQueue() if kind == "simplequeue" else mp.Queue()
    n = items // producers
    per_consumer = n * producers // consumers
    t0 = time.perf_counter()
    prods = [mp.Process(target=produce, args=(q, n)) for _ in range(producers)]
    cons = [mp.Process(target=consume, args=(q, per_consumer)) for _ in range(consumers)]
    for p in prods + cons:
        p.start()
    for p in cons:
        p.join()
    rate = per_consumer * consumers / (time.perf_counter() - t0)
    for p in prods:
        p.join()
    return rate


def main():
    mp.set_start_method("fork")
    case = sys.argv[1]
    m = re.fullmatch(r"(queue|simplequeue)_([1-8])to([1-8])", case)
    if not m:
        sys.exit("unknown case " + case)
    kind, producers, consumers = m.group(1), int(m.group(2)), int(m.group(3))
    if producers % consumers and consumers % producers:
        sys.exit("unknown case " + case)
    items = int(sys.argv[2]) if len(sys.argv) > 2 else N
    items = int(items * float(os.environ.get("MPIPC_BENCH_SCALE", "1")))
    # Every consumer gets the same whole number of items.
    items = max(items - items % (producers * consumers), producers * consumers)
    print(case, "%.1f" % run(kind, producers, consumers, items))


if __name__ == "__main__":
    main()
