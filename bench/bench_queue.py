#!/usr/bin/env python3
"""Python's multiprocessing.Queue and SimpleQueue on the bench_queue.c workloads.

Prints "<case> <rate>" for bench/run.py: 64-byte items per second from the
first put to the last get, with one producer and one consumer process
(1to1) or two of each (2to2).
"""
import multiprocessing as mp
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


def run(kind, producers, consumers):
    q = mp.SimpleQueue() if kind == "simplequeue" else mp.Queue()
    n = N // producers
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
    kind, shape = case.rsplit("_", 1)
    if kind not in ("queue", "simplequeue") or shape not in ("1to1", "2to2"):
        sys.exit("unknown case " + case)
    producers = consumers = 1 if shape == "1to1" else 2
    print(case, "%.1f" % run(kind, producers, consumers))


if __name__ == "__main__":
    main()
