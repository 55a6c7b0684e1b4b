#!/usr/bin/env python3
"""Python's multiprocessing.Pipe on the same workloads as bench_conn.c.

Prints "<case> <rate>" for bench/run.py: pingpong (64-byte round trips/s),
oneway (64-byte messages/s), bandwidth (MB/s of 1 MiB messages), and
bandwidth_into (the same with recv_bytes_into() into one reused bytearray).
"""
import multiprocessing as mp
import os
import sys
import time

SMALL = b"\0" * 64
BIG = b"\0" * (1 << 20)
# run.py --scale sets MPIPC_BENCH_SCALE: it multiplies every count.
SCALE = float(os.environ.get("MPIPC_BENCH_SCALE", "1"))
PINGPONGS = max(1, int(50000 * SCALE))
ONEWAY = max(1, int(300000 * SCALE))
BIGS = max(1, int(2000 * SCALE))


def echo(conn, n):
    for _ in range(n):
        conn.send_bytes(conn.recv_bytes())


def sender(conn, msg, n):
    for _ in range(n):
        conn.send_bytes(msg)


def pingpong():
    a, b = mp.Pipe()
    p = mp.Process(target=echo, args=(b, PINGPONGS))
    p.start()
    t0 = time.perf_counter()
    for _ in range(PINGPONGS):
        a.send_bytes(SMALL)
        a.recv_bytes()
    rate = PINGPONGS / (time.perf_counter() - t0)
    p.join()
    return rate


def stream(msg, n, into=False):
    a, b = mp.Pipe()
    p = mp.Process(target=sender, args=(b, msg, n))
    p.start()
    buf = bytearray(len(msg))
    t0 = time.perf_counter()
    if into:
        for _ in range(n):
            a.recv_bytes_into(buf)
    else:
        for _ in range(n):
            a.recv_bytes()
    rate = n / (time.perf_counter() - t0)
    p.join()
    return rate


def main():
    mp.set_start_method("fork")
    case = sys.argv[1]
    if case == "pingpong":
        rate = pingpong()
    elif case == "oneway":
        rate = stream(SMALL, ONEWAY)
    elif case == "bandwidth":
        rate = stream(BIG, BIGS) * len(BIG) / 1e6
    elif case == "bandwidth_into":
        rate = stream(BIG, BIGS, into=True) * len(BIG) / 1e6
    else:
        sys.exit("unknown case " + case)
    print(case, "%.1f" % rate)


if __name__ == "__main__":
    main()
