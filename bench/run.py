#!/usr/bin/env python3
"""libmpipc benchmark driver.

Runs every workload beside its references in one run and prints one table per
group: the median rate of each implementation over several runs, and the ratio
of ours to each reference.

Usage:  python3 bench/run.py [--build DIR] [--runs N] [--only GROUP[,GROUP]]
                            [--shm-size BYTES]

A workload is a command that prints exactly one line "<case> <rate>", where
rate is a float, higher is better, in the unit the row names. Rows are
declared in WORKLOADS below: the group, the case, the unit, and the command
for each implementation ("ours" first, then the references). Commands are
argument lists; "{build}" is replaced by the build directory, "{bench}" by
this directory and "{shm_size}" by --shm-size. The implementations of one row run interleaved (ours, ref1,
ref2, ours, ref1, ...) so that a burst of noise on a shared machine hits all
of them, and the table reports medians.
"""
import argparse
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PY = sys.executable or "python3"

# (group, case, unit, [(label, argv), ...]) - the first implementation is ours.
WORKLOADS = [
    ("conn", "pingpong_64B", "round trips/s", [
        ("mp_conn", ["{build}/bench/bench_conn", "pingpong"]),
        ("raw socketpair", ["{build}/bench/bench_conn", "raw_pingpong"]),
        ("Python Pipe", [PY, "{bench}/bench_conn.py", "pingpong"]),
    ]),
    ("conn", "oneway_64B", "messages/s", [
        ("mp_conn", ["{build}/bench/bench_conn", "oneway"]),
        ("raw socketpair", ["{build}/bench/bench_conn", "raw_oneway"]),
        ("Python Pipe", [PY, "{bench}/bench_conn.py", "oneway"]),
    ]),
    # Received into a fresh buffer per message (recv_bytes), and into one
    # reused buffer (recv_bytes_into) as the raw loop does.
    ("conn", "bandwidth_1MiB", "MB/s", [
        ("mp_conn", ["{build}/bench/bench_conn", "bandwidth"]),
        ("raw socketpair", ["{build}/bench/bench_conn", "raw_bandwidth"]),
        ("Python Pipe", [PY, "{bench}/bench_conn.py", "bandwidth"]),
    ]),
    ("conn", "bandwidth_into_1MiB", "MB/s", [
        ("mp_conn", ["{build}/bench/bench_conn", "bandwidth_into"]),
        ("raw socketpair", ["{build}/bench/bench_conn", "raw_bandwidth"]),
        ("Python Pipe", [PY, "{bench}/bench_conn.py", "bandwidth_into"]),
    ]),
    # mp_pipe_shm (issue 16): the same loops over shared-memory rings.
    ("conn", "pingpong_64B_shm", "round trips/s", [
        ("mp_pipe_shm", ["{build}/bench/bench_conn", "shm_pingpong"]),
        ("mp_conn", ["{build}/bench/bench_conn", "pingpong"]),
        ("raw socketpair", ["{build}/bench/bench_conn", "raw_pingpong"]),
    ]),
    ("conn", "bandwidth_into_1MiB_shm", "MB/s", [
        ("mp_pipe_shm", ["{build}/bench/bench_conn", "shm_bandwidth_into"]),
        ("mp_conn", ["{build}/bench/bench_conn", "bandwidth_into"]),
        ("raw socketpair", ["{build}/bench/bench_conn", "raw_bandwidth"]),
    ]),
    # One table for sync: ours, the raw pthread loop on a robust process-shared
    # mutex (what ours stands on: the floor), the same on a plain (non-robust)
    # mutex, and Python's multiprocessing. Ping-pong floors use condvars.
    ("sync", "lock_uncontended", "acquire+release pairs/s", [
        ("libmpipc", ["{build}/bench/bench_sync", "lock"]),
        ("raw robust", ["{build}/bench/bench_sync", "raw_lock", "robust"]),
        ("raw plain", ["{build}/bench/bench_sync", "raw_lock", "plain"]),
        ("Python", [PY, "{bench}/bench_sync.py", "lock"]),
    ]),
    ("sync", "event_pingpong", "round trips/s", [
        ("libmpipc", ["{build}/bench/bench_sync", "event_pingpong"]),
        ("raw robust", ["{build}/bench/bench_sync", "raw_event_pingpong", "robust"]),
        ("raw plain", ["{build}/bench/bench_sync", "raw_event_pingpong", "plain"]),
        ("Python", [PY, "{bench}/bench_sync.py", "event_pingpong"]),
    ]),
    ("sync", "cond_pingpong", "round trips/s", [
        ("libmpipc", ["{build}/bench/bench_sync", "cond_pingpong"]),
        ("raw robust", ["{build}/bench/bench_sync", "raw_cond_pingpong", "robust"]),
        ("raw plain", ["{build}/bench/bench_sync", "raw_cond_pingpong", "plain"]),
        ("Python", [PY, "{bench}/bench_sync.py", "cond_pingpong"]),
    ]),
    # Queues: 64-byte items/s, first put to last get, between processes.
    ("queue", "queue_1to1", "items/s", [
        ("mp_queue", ["{build}/bench/bench_queue", "queue_1to1"]),
        ("raw pipe", ["{build}/bench/bench_queue", "raw_1to1"]),
        ("Python Queue", [PY, "{bench}/bench_queue.py", "queue_1to1"]),
        ("Python SimpleQueue", [PY, "{bench}/bench_queue.py", "simplequeue_1to1"]),
    ]),
    ("queue", "queue_2to2", "items/s", [
        ("mp_queue", ["{build}/bench/bench_queue", "queue_2to2"]),
        ("raw pipe", ["{build}/bench/bench_queue", "raw_2to2"]),
        ("Python Queue", [PY, "{bench}/bench_queue.py", "queue_2to2"]),
        ("Python SimpleQueue", [PY, "{bench}/bench_queue.py", "simplequeue_2to2"]),
    ]),
    ("queue", "simplequeue_1to1", "items/s", [
        ("mp_simplequeue", ["{build}/bench/bench_queue", "simplequeue_1to1"]),
        ("raw pipe", ["{build}/bench/bench_queue", "raw_1to1"]),
        ("Python Queue", [PY, "{bench}/bench_queue.py", "queue_1to1"]),
        ("Python SimpleQueue", [PY, "{bench}/bench_queue.py", "simplequeue_1to1"]),
    ]),
    ("queue", "simplequeue_2to2", "items/s", [
        ("mp_simplequeue", ["{build}/bench/bench_queue", "simplequeue_2to2"]),
        ("raw pipe", ["{build}/bench/bench_queue", "raw_2to2"]),
        ("Python Queue", [PY, "{bench}/bench_queue.py", "queue_2to2"]),
        ("Python SimpleQueue", [PY, "{bench}/bench_queue.py", "simplequeue_2to2"]),
    ]),
    # W6: 4 processes x 2,500 decrements of d['count'] on a manager dict.
    # ours: the manager Lock (4 round trips per decrement), the shared-memory
    # mp_lock of sync.h (2 round trips: what Python's "mp.Lock()" row does),
    # then mp_dictproxy_add_int (1 round trip, atomic in the server, no lock).
    ("manager", "W6_rmw_manager_Lock", "ops/s", [
        ("libmpipc", ["{build}/bench/bench_manager", "lock_rmw"]),
        ("Python Manager().Lock()", [PY, "{bench}/bench_manager.py", "manager_lock"]),
        ("Python mp.Lock()", [PY, "{bench}/bench_manager.py", "mp_lock"]),
    ]),
    ("manager", "W6_rmw_mp_lock", "ops/s", [
        ("libmpipc", ["{build}/bench/bench_manager", "mplock_rmw"]),
        ("Python Manager().Lock()", [PY, "{bench}/bench_manager.py", "manager_lock"]),
        ("Python mp.Lock()", [PY, "{bench}/bench_manager.py", "mp_lock"]),
    ]),
    ("manager", "W6_dictproxy_add_int", "ops/s", [
        ("libmpipc", ["{build}/bench/bench_manager", "atomic_add"]),
        ("Python Manager().Lock()", [PY, "{bench}/bench_manager.py", "manager_lock"]),
        ("Python mp.Lock()", [PY, "{bench}/bench_manager.py", "mp_lock"]),
    ]),
    # 100,000 trivial tasks (square an int) on a pool of 2.
    ("pool", "map_chunksize1", "tasks/s", [
        ("mp_pool", ["{build}/bench/bench_pool", "map1"]),
        ("Python Pool", [PY, "{bench}/bench_pool.py", "map1"]),
    ]),
    ("pool", "apply_async_loop", "tasks/s", [
        ("mp_pool", ["{build}/bench/bench_pool", "apply_async"]),
        ("Python Pool", [PY, "{bench}/bench_pool.py", "apply_async"]),
    ]),
    ("pool", "map_default_chunksize", "tasks/s", [
        ("mp_pool", ["{build}/bench/bench_pool", "map_default"]),
        ("Python Pool", [PY, "{bench}/bench_pool.py", "map_default"]),
    ]),
    # --shm-size bytes (1 GiB) written by one side and summed by the other
    # (Python: sum() over memoryview.cast('Q'), chunk by chunk), through a
    # SharedMemory block or over a Pipe in 16 MiB messages; MB/s from the
    # first write to the last add, python3's start-up included.
    ("shm", "C writes, Python sums", "MB/s", [
        ("shared memory", ["{build}/bench/bench_shm", "c2py_shm", "{shm_size}", PY,
                           "{bench}/bench_shm.py"]),
        ("Pipe", ["{build}/bench/bench_shm", "c2py_pipe", "{shm_size}", PY,
                  "{bench}/bench_shm.py"]),
    ]),
    ("shm", "Python writes, C sums", "MB/s", [
        ("shared memory", ["{build}/bench/bench_shm", "py2c_shm", "{shm_size}", PY,
                           "{bench}/bench_shm.py"]),
        ("Pipe", ["{build}/bench/bench_shm", "py2c_pipe", "{shm_size}", PY,
                  "{bench}/bench_shm.py"]),
    ]),
]


def run_one(argv, build, shm_size):
    argv = [a.replace("{build}", build).replace("{bench}", HERE)
            .replace("{shm_size}", str(shm_size)) for a in argv]
    out = subprocess.run(argv, check=True, capture_output=True, text=True, timeout=600).stdout
    lines = [l for l in out.splitlines() if l.strip()]
    if not lines:
        raise RuntimeError("no output from %s" % " ".join(argv))
    return float(lines[-1].split()[-1])


def fmt(v):
    if v >= 100:
        return "{:,.0f}".format(v)
    return "{:.2f}".format(v)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default=os.path.join(os.path.dirname(HERE), "build", "test"))
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--only", default="")
    ap.add_argument("--shm-size", type=int, default=1 << 30,
                    help="bytes each shm row moves (default 1 GiB; needs twice that in RAM)")
    args = ap.parse_args()
    only = set(filter(None, args.only.split(",")))
    build = os.path.abspath(args.build)

    current = None
    for group, case, unit, impls in WORKLOADS:
        if only and group not in only:
            continue
        if group != current:
            current = group
            print("\n## %s   (median of %d runs; ratio = ours / reference)\n" % (group, args.runs))
            refs = [label for label, _ in impls[1:]]
            head = ["case", "unit", impls[0][0]] + refs + ["x " + r for r in refs]
            print("| " + " | ".join(head) + " |")
            print("|" + "---|" * len(head))
        samples = [[] for _ in impls]
        for _ in range(args.runs):
            for i, (_, argv) in enumerate(impls):
                samples[i].append(run_one(argv, build, args.shm_size))
        med = [statistics.median(s) for s in samples]
        ratios = ["%.2fx" % (med[0] / m) if m else "-" for m in med[1:]]
        print("| " + " | ".join([case, unit] + [fmt(m) for m in med] + ratios) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
