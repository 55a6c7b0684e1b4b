#!/usr/bin/env python3
"""libmpipc benchmark driver.

Runs every workload beside its references in one run and prints one table per
group: the median rate of each implementation over several runs, and the ratio
of ours to each reference.

Usage:  python3 bench/run.py [--build DIR] [--runs N] [--only GROUP[,GROUP]]

A workload is a command that prints exactly one line "<case> <rate>", where
rate is a float, higher is better, in the unit the row names. Rows are
declared in WORKLOADS below: the group, the case, the unit, and the command
for each implementation ("ours" first, then the references). Commands are
argument lists; "{build}" is replaced by the build directory and "{bench}" by
this directory. The implementations of one row run interleaved (ours, ref1,
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
    ("conn", "bandwidth_1MiB", "MB/s", [
        ("mp_conn", ["{build}/bench/bench_conn", "bandwidth"]),
        ("raw socketpair", ["{build}/bench/bench_conn", "raw_bandwidth"]),
        ("Python Pipe", [PY, "{bench}/bench_conn.py", "bandwidth"]),
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
]


def run_one(argv, build):
    argv = [a.replace("{build}", build).replace("{bench}", HERE) for a in argv]
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
                samples[i].append(run_one(argv, build))
        med = [statistics.median(s) for s in samples]
        ratios = ["%.2fx" % (med[0] / m) if m else "-" for m in med[1:]]
        print("| " + " | ".join([case, unit] + [fmt(m) for m in med] + ratios) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
