#!/usr/bin/env python3
"""Python's multiprocessing.Lock/Event/Condition on the bench_sync.c workloads.

Prints "<case> <rate>" for bench/run.py: lock (uncontended acquire+release
pairs/s), event_pingpong and cond_pingpong (round trips/s between two
processes).
"""
import multiprocessing as mp
import os
import sys
import time

# run.py --scale sets MPIPC_BENCH_SCALE: it multiplies every count.
SCALE = float(os.environ.get("MPIPC_BENCH_SCALE", "1"))
PAIRS = max(1, int(2000000 * SCALE))
ROUNDS = max(1, int(20000 * SCALE))


def lock_pairs():
    lock = mp.Lock()
    acquire, release = lock.acquire, lock.release
    t0 = time.perf_counter()
    for _ in range(PAIRS):
        acquire()
        release()
    return PAIRS / (time.perf_counter() - t0)


def event_child(e0, e1):
    for _ in range(ROUNDS):
        e0.wait()
        e0.clear()
        e1.set()


def event_pingpong():
    e0, e1 = mp.Event(), mp.Event()
    p = mp.Process(target=event_child, args=(e0, e1))
    p.start()
    t0 = time.perf_counter()
    for _ in range(ROUNDS):
        e0.set()
        e1.wait()
        e1.clear()
    rate = ROUNDS / (time.perf_counter() - t0)
    p.join()
    return rate


def cond_child(cond, turn):
    for _ in range(ROUNDS):
        with cond:
            while turn.value != 1:
                cond.wait()
            turn.value = 0
            cond.notify()


def cond_pingpong():
    cond = mp.Condition()
    turn = mp.RawValue('i', 0)
    p = mp.Process(target=cond_child, args=(cond, turn))
    p.start()
    t0 = time.perf_counter()
    for _ in range(ROUNDS):
        with cond:
            turn.value = 1
            cond.notify()
            while turn.value != 0:
                cond.wait()
    rate = ROUNDS / (time.perf_counter() - t0)
    p.join()
    return rate


def main():
    mp.set_start_method("fork")
    case = sys.argv[1]
    fn = {"lock": lock_pairs, "event_pingpong": event_pingpong,
          "cond_pingpong": cond_pingpong}.get(case)
    if fn is None:
        sys.exit("unknown case " + case)
    print(case, "%.1f" % fn())


if __name__ == "__main__":
    main()
