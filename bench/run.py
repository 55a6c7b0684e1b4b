#!/usr/bin/env python3
"""libmpipc benchmark driver.

Runs every workload beside its references in one run, prints one table per
group (the median rate of each implementation over several runs, its range
min-max, and the ratio of ours to each reference), and with --report writes
the performance page: those tables, how each figure scales with the number
of processes, SVG charts beside the page (docs/perf/*.svg) and the machine
it ran on.

Usage:  python3 bench/run.py [--report docs/performance.md] [--runs N]
                            [--only GROUP[,GROUP]] [--scale F] [--no-build]
                            [--no-scaling] [--build DIR] [--shm-size BYTES]

The build directory (default build/test) is configured with the "test"
preset if it is not there, and the bench targets are built first (--no-build
skips this). --scale F multiplies every item count (the C and Python
workloads read it from MPIPC_BENCH_SCALE): `--runs 1 --scale 0.05` checks
the whole report in well under a minute; a report made that way says so at
its top. A full report (--runs 5) takes about ten minutes on two cores.

A workload is a command that prints exactly one line "<case> <rate>", where
rate is a float, higher is better, in the unit the row names. Rows are
declared in WORKLOADS below: the group, the case, the unit, and the command
for each implementation ("ours" first, then the references). Commands are
argument lists; "{build}" is replaced by the build directory, "{bench}" by
this directory and "{shm_size}" by --shm-size. The implementations of one
row run interleaved (ours, ref1, ref2, ours, ref1, ...) so that a burst of
noise on a shared machine hits all of them, and the table reports medians.
A reference command shared by several rows (the same argv) is measured once
per run and its samples serve every row that names it.

SCALING declares the rows run at 1, 2, 4 and 8 processes; "{p}" in their
commands is the process count and "{per:N}" is N // p (a fixed total of
work shared among the processes).
"""
import argparse
import datetime
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import perfsvg  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PY = sys.executable or "python3"
TARGETS = ["bench_conn", "bench_sync", "bench_queue", "bench_manager", "bench_pool", "bench_shm"]
COUNTS = [1, 2, 4, 8]

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
    # mp_pipe_shm (issue 16), one table per workload: the shared-memory Pipe
    # beside a bare busy-polling shared-memory ring (raw_shm_*, the floor: no
    # locks, no sleep, no checks), the socket mp_conn, a raw socketpair and
    # Python's Pipe. Targets: ping-pong >= 1M/s and >= 0.8x raw shm; one-way
    # >= 10M/s; 1 MiB copying >= 1.5x the socketpair.
    ("conn", "pingpong_64B_shm", "round trips/s", [
        ("mp_pipe_shm", ["{build}/bench/bench_conn", "shm_pingpong"]),
        ("raw busy-poll shm", ["{build}/bench/bench_conn", "raw_shm_pingpong"]),
        ("mp_conn", ["{build}/bench/bench_conn", "pingpong"]),
        ("raw socketpair", ["{build}/bench/bench_conn", "raw_pingpong"]),
        ("Python Pipe", [PY, "{bench}/bench_conn.py", "pingpong"]),
    ]),
    ("conn", "oneway_64B_shm", "messages/s", [
        ("mp_pipe_shm", ["{build}/bench/bench_conn", "shm_oneway"]),
        ("raw busy-poll shm", ["{build}/bench/bench_conn", "raw_shm_oneway"]),
        ("mp_conn", ["{build}/bench/bench_conn", "oneway"]),
        ("raw socketpair", ["{build}/bench/bench_conn", "raw_oneway"]),
        ("Python Pipe", [PY, "{bench}/bench_conn.py", "oneway"]),
    ]),
    ("conn", "bandwidth_into_1MiB_shm", "MB/s", [
        ("mp_pipe_shm", ["{build}/bench/bench_conn", "shm_bandwidth_into"]),
        ("mp_conn", ["{build}/bench/bench_conn", "bandwidth_into"]),
        ("raw socketpair", ["{build}/bench/bench_conn", "raw_bandwidth"]),
        ("Python Pipe", [PY, "{bench}/bench_conn.py", "bandwidth_into"]),
    ]),
    # 1 MiB messages loaned and viewed in place (only a header touched),
    # beside 64-byte round trips: target within 2x of the 64-byte rate.
    ("conn", "loaned_roundtrip_1MiB_shm", "round trips/s", [
        ("mp_pipe_shm loan 1 MiB", ["{build}/bench/bench_conn", "shm_loan_pingpong"]),
        ("mp_pipe_shm 64 B", ["{build}/bench/bench_conn", "shm_pingpong"]),
        ("raw busy-poll shm 64 B", ["{build}/bench/bench_conn", "raw_shm_pingpong"]),
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
    # W6 under a manager Lock by Python clients (SyncManager proxies) and by
    # C clients, each on libmpipc's server and on CPython's (issue 15's table;
    # target: Python clients >= 1.5x faster on ours than on CPython's).
    ("manager_interop", "W6_lock_on_either_server", "ops/s", [
        ("Python on libmpipc's server", [PY, "{bench}/bench_manager.py", "--server",
                                         "{build}/bench/bench_manager", "manager_lock_ours"]),
        ("Python on CPython's server", [PY, "{bench}/bench_manager.py", "manager_lock"]),
        ("C on libmpipc's server", ["{build}/bench/bench_manager", "lock_rmw"]),
        ("C on CPython's server", ["{build}/bench/bench_manager", "lock_rmw_cpython"]),
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


# (group, figure, unit, what the count is, how many leading impls are ours,
#  [(label, argv), ...]) - each run at COUNTS processes, with fewer items than
# the main rows so that the four counts together cost about one main row.
SCALING = [
    # 64-byte items, P producers and P consumers on one queue.
    ("queue", "items through one queue", "items/s", "producers = consumers", 2, [
        ("mp_queue", ["{build}/bench/bench_queue", "queue_{p}to{p}", "500000"]),
        ("mp_simplequeue", ["{build}/bench/bench_queue", "simplequeue_{p}to{p}", "250000"]),
        ("raw pipe", ["{build}/bench/bench_queue", "raw_{p}to{p}", "250000"]),
        ("Python Queue", [PY, "{bench}/bench_queue.py", "queue_{p}to{p}", "40000"]),
        ("Python SimpleQueue", [PY, "{bench}/bench_queue.py", "simplequeue_{p}to{p}", "40000"]),
    ]),
    # map, chunksize 1, of trivial tasks on a pool of P workers.
    ("pool", "map, chunksize 1", "tasks/s", "workers", 1, [
        ("mp_pool", ["{build}/bench/bench_pool", "map1", "{p}", "50000"]),
        ("Python Pool", [PY, "{bench}/bench_pool.py", "map1", "{p}", "15000"]),
    ]),
    # W6 with P clients sharing a fixed total of decrements (fewer for the slower rows).
    ("manager", "W6 decrements of one manager dict entry", "ops/s", "clients", 3, [
        ("mp_dictproxy_add_int", ["{build}/bench/bench_manager", "atomic_add", "{p}",
                                  "{per:8000}"]),
        ("mp_lock + get/set", ["{build}/bench/bench_manager", "mplock_rmw", "{p}", "{per:8000}"]),
        ("manager Lock + get/set", ["{build}/bench/bench_manager", "lock_rmw", "{p}",
                                    "{per:4000}"]),
        ("Python Manager().Lock()", [PY, "{bench}/bench_manager.py", "manager_lock", "{p}",
                                     "{per:2000}"]),
        ("Python mp.Lock()", [PY, "{bench}/bench_manager.py", "mp_lock", "{p}", "{per:2000}"]),
    ]),
]

# The Pool on MPI ranks (issue 18), when this machine has mpirun, the build
# has bench_pool_mpi (MPIPC_MPI) and python3 has mpi4py (apt-get install -y
# libopenmpi-dev openmpi-bin python3-mpi4py): 3 workers each - 3 MPI ranks
# beside rank 0, the fork pool, and MPIPoolExecutor under mpirun -n 4.
MPIRUN = ["mpirun", "--oversubscribe", "--allow-run-as-root", "-n", "4"]


def _mpi_python():
    """A python3 that imports mpi4py: this one, else the system's (Debian's
    python3-mpi4py installs for /usr/bin/python3, which may not be this one),
    or None."""
    import shutil
    for py in dict.fromkeys([PY, "/usr/bin/python3", shutil.which("python3") or PY]):
        try:
            if subprocess.run([py, "-c", "import mpi4py"], capture_output=True,
                              timeout=30).returncode == 0:
                return py
        except (OSError, subprocess.SubprocessError):
            pass
    return None


MPI_PY = _mpi_python()
MPI_WORKLOADS = [
    ("mpi_pool", "trivial_100k", "tasks/s", [
        ("mp_pool on MPI ranks", MPIRUN + ["{build}/bench/bench_pool_mpi", "trivial"]),
        ("mp_pool fork", ["{build}/bench/bench_pool_mpi", "trivial", "100000", "fork"]),
        ("MPIPoolExecutor", MPIRUN + [MPI_PY or PY, "-m", "mpi4py.futures", "{bench}/bench_pool_mpi.py",
                                      "trivial"]),
    ]),
    ("mpi_pool", "sleep10ms_1000 (ideal 300)", "tasks/s", [
        ("mp_pool on MPI ranks", MPIRUN + ["{build}/bench/bench_pool_mpi", "sleep10"]),
        ("mp_pool fork", ["{build}/bench/bench_pool_mpi", "sleep10", "1000", "fork"]),
        ("MPIPoolExecutor", MPIRUN + [MPI_PY or PY, "-m", "mpi4py.futures", "{bench}/bench_pool_mpi.py",
                                      "sleep10"]),
    ]),
]

# Rows with an ideal rate: (group, case) -> tasks/s of perfect scaling. The
# table gains a column "of ideal": ideal time / measured time for each
# implementation, in their order (1.00 = ideal; the target: >= 0.95).
IDEAL = {("mpi_pool", "sleep10ms_1000 (ideal 300)"): 300.0}


def ideal_cell(row, meds):
    """The row's "of ideal" column: each implementation's rate / the ideal rate."""
    ideal = IDEAL.get((row.group, row.case))
    if not ideal:
        return "-"
    return " / ".join("%.3f" % (m / ideal) for m in meds)


def has_ideal(group):
    return any(g == group for g, _ in IDEAL)


def mpi_available():
    """mpirun on PATH and a python3 with mpi4py: the MPI rows can run."""
    import shutil
    return bool(shutil.which("mpirun")) and MPI_PY is not None


if mpi_available():
    WORKLOADS += MPI_WORKLOADS
    TARGETS.append("bench_pool_mpi")

# What each scaling figure measures, for the report.
SCALING_NOTES = {
    "queue": "64-byte items through one queue, P producer processes and P consumer "
             "processes, from the first put to the last get: 500,000 items for `mp_queue`, "
             "250,000 for `mp_simplequeue` and the raw pipe, 40,000 for Python's queues.",
    "pool": "A map of trivial tasks (square an int), chunksize 1, on a pool of P workers "
            "made and warmed up before the clock starts: 50,000 tasks for `mp_pool`, 15,000 "
            "for Python's `Pool(P)`.",
    "manager": "W6 with P client processes sharing a fixed total of decrements of one "
               "manager dict entry (8,000 with `mp_dictproxy_add_int` and under an `mp_lock`, "
               "4,000 under a manager Lock, 2,000 for Python), from \"go\" to the last "
               "client's end.",
}

# What each group measures, for the report (docs/guide.md, "Benchmarks", says the same).
NOTES = {
    "conn": "Connections: 64-byte messages between two processes, and 1 MiB messages "
            "received into a fresh buffer (`recv_bytes`) or into one reused buffer "
            "(`recv_bytes_into`, as the raw loop does). The raw loop is a tuned socketpair "
            "with CPython's framing. The `_shm` tables put `mp_pipe_shm` beside a bare "
            "busy-polling shared-memory ring (the floor) and the socket Pipes; the loaned "
            "row sends 1 MiB loans read through views, touching a header only.",
    "sync": "Synchronisation between two processes. \"raw robust\" is the same loop on raw "
            "process-shared robust pthread mutexes and condvars (what `mp_lock` stands on); "
            "\"raw plain\" uses non-robust mutexes, which a dead holder wedges forever.",
    "queue": "Queues: 64-byte items per second from the first put to the last get, between "
             "processes; the raw loop is a pipe with CPython's framing and one `write()` per "
             "item.",
    "manager": "Manager, W6: 4 processes x 2,500 read-modify-write decrements of `d['count']` "
               "on a manager dict, beside Python's manager dict under `Manager().Lock()` and "
               "under `multiprocessing.Lock()` (Python has no atomic add, so the add row is "
               "compared with both locked rows).",
    "manager_interop": "Manager, W6 under a manager Lock (acquire, get, set, release) run by "
                       "Python clients (SyncManager proxies) and by C clients, each on "
                       "libmpipc's server and on CPython's, over AF_UNIX; the ratio that "
                       "matters is the first (issue 15's target: Python clients at least 1.5x "
                       "faster on libmpipc's server than on CPython's).",
    "pool": "Pool: 100,000 trivial tasks (square an int) on a pool of 2 workers, beside "
            "Python's `Pool(2)`; the pool is made and warmed up before the clock starts.",
    "mpi_pool": "The Pool on MPI ranks (`mp_pool_new_mpi`, `mpirun -n 4`: 3 worker ranks) "
                "beside the fork pool with 3 workers and mpi4py's `MPIPoolExecutor` on 3 "
                "worker ranks: 100,000 trivial tasks, and 1,000 tasks of 10 ms (ideal on 3 "
                "workers: 300 tasks/s; \"of ideal\" is that ideal time over the measured time, "
                "1.00 being perfect, the target at least 0.95), map with chunksize 1, "
                "mpirun's start-up excluded.",
    "shm": "Shared memory: a block written by one side and summed by the other, through a "
           "`SharedMemory` block or over a Pipe in 16 MiB messages; MB/s from the first write "
           "to the last add, python3's start-up included.",
}


class Row:
    """One table row: a case, its unit, and the samples of each implementation."""

    def __init__(self, group, case, unit, labels, count=None):
        self.group, self.case, self.unit, self.labels = group, case, unit, labels
        self.count = count
        self.samples = [[] for _ in labels]

    def stats(self, i):
        s = self.samples[i]
        return statistics.median(s), min(s), max(s)


def expand(argv, build, shm_size, p=None):
    out = []
    for a in argv:
        a = a.replace("{build}", build).replace("{bench}", HERE)
        a = a.replace("{shm_size}", str(shm_size))
        if p is not None:
            a = a.replace("{p}", str(p))
            a = re.sub(r"\{per:(\d+)\}", lambda m: str(max(1, int(m.group(1)) // p)), a)
        out.append(a)
    return out


def run_one(argv):
    try:
        out = subprocess.run(argv, check=True, capture_output=True, text=True,
                             timeout=600).stdout
    except subprocess.CalledProcessError as e:
        sys.exit("run.py: %s failed (status %d):\n%s" % (" ".join(argv), e.returncode,
                                                         e.stderr.strip()))
    lines = [l for l in out.splitlines() if l.strip()]
    if not lines:
        raise RuntimeError("no output from %s" % " ".join(argv))
    return float(lines[-1].split()[-1])


def fmt(v):
    if v >= 100:
        return "{:,.0f}".format(v)
    return "{:.2f}".format(v)


def ratio(a, b):
    if not b:
        return "-"
    r = a / b
    return ("%.2fx" % r) if r < 10 else ("%.1fx" % r) if r < 100 else ("%.0fx" % r)


def cell(row, i):
    med, lo, hi = row.stats(i)
    return "%s <sub>%s-%s</sub>" % (fmt(med), perfsvg.si(lo), perfsvg.si(hi))


def ensure_built(build):
    """Configure build/test with the "test" preset if it is missing, then build the targets."""
    def sh(cmd):
        print("+ " + " ".join(shlex.quote(c) for c in cmd), file=sys.stderr, flush=True)
        subprocess.run(cmd, check=True, cwd=ROOT)

    if not os.path.exists(os.path.join(build, "CMakeCache.txt")):
        if os.path.abspath(build) != os.path.join(ROOT, "build", "test"):
            sys.exit("run.py: %s is not configured; run cmake there first, with "
                     "MPIPC_BUILD_BENCH=ON" % build)
        sh(["cmake", "--preset", "test"])
    jobs = str(max(1, min(os.cpu_count() or 1, 4)))
    sh(["cmake", "--build", build, "-j", jobs, "--target"] + TARGETS)


def measure_rows(args, build, wanted):
    """Run the main WORKLOADS rows, printing each group's table as it goes."""
    rows, cache, current = [], {}, None
    for group, case, unit, impls in WORKLOADS:
        if not wanted(group):
            continue
        if group != current:
            current = group
            print("\n## %s   (median of %d runs, min-max; ratio = ours / reference)\n"
                  % (group, args.runs))
            refs = [label for label, _ in impls[1:]]
            head = ["case", "unit", impls[0][0]] + refs + ["x " + r for r in refs]
            if has_ideal(group):
                head.append("of ideal (%s)" % " / ".join(label for label, _ in impls))
            print("| " + " | ".join(head) + " |")
            print("|" + "---|" * len(head))
        row = Row(group, case, unit, [label for label, _ in impls])
        t0 = time.monotonic()
        for r in range(args.runs):
            for i, (_, argv) in enumerate(impls):
                argv = expand(argv, build, args.shm_size)
                key = (tuple(argv), r)
                if i == 0 or key not in cache:
                    cache[key] = run_one(argv)
                row.samples[i].append(cache[key])
        rows.append(row)
        meds = [row.stats(i)[0] for i in range(len(impls))]
        extra = [ideal_cell(row, meds)] if has_ideal(group) else []
        print("| " + " | ".join([case, unit] + [cell(row, i) for i in range(len(impls))] +
                                [ratio(meds[0], m) for m in meds[1:]] + extra) + " |",
              flush=True)
        print("   (%s: %.1f s)" % (case, time.monotonic() - t0), file=sys.stderr, flush=True)
    return rows


def measure_scaling(args, build, wanted):
    """Run the SCALING rows at each of COUNTS processes: [(spec, [Row per count])]."""
    out = []
    for spec in SCALING:
        group, figure, unit, xlabel, n_ours, impls = spec
        if not wanted(group):
            continue
        print("\n## %s scaling: %s, %s by %s (median of %d runs)\n"
              % (group, figure, unit, xlabel, args.runs))
        labels = [label for label, _ in impls]
        print("| " + " | ".join([xlabel] + labels) + " |")
        print("|" + "---|" * (len(labels) + 1))
        rows = []
        for p in COUNTS:
            row = Row(group, figure, unit, labels, count=p)
            t0 = time.monotonic()
            for _ in range(args.runs):
                for i, (_, argv) in enumerate(impls):
                    row.samples[i].append(run_one(expand(argv, build, args.shm_size, p)))
            rows.append(row)
            print("| " + " | ".join([str(p)] + [cell(row, i) for i in range(len(labels))]) +
                  " |", flush=True)
            print("   (%s x%d: %.1f s)" % (group, p, time.monotonic() - t0), file=sys.stderr,
                  flush=True)
        out.append((spec, rows))
    return out


def _first_line(cmd):
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30, cwd=ROOT)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        return "unknown"


def _file_field(path, key, sep=":"):
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key):
                    return line.split(sep, 1)[1].strip().strip('"')
    except OSError:
        pass
    return "unknown"


def machine(build):
    """The facts a reader needs to compare this page with their own machine."""
    cache = os.path.join(build, "CMakeCache.txt")
    cc = _file_field(cache, "CMAKE_C_COMPILER:", "=")
    commit = _first_line(["git", "rev-parse", "--short=12", "HEAD"])
    try:  # the page says when the code measured is not the commit it names
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                "src", "include", "bench"], capture_output=True, text=True,
                               timeout=30, cwd=ROOT).stdout.strip() != ""
    except (OSError, subprocess.SubprocessError):
        dirty = False
    mem = _file_field("/proc/meminfo", "MemTotal")
    if mem.endswith(" kB") and mem[:-3].strip().isdigit():
        mem = "%.1f GiB" % (int(mem[:-3]) / (1 << 20))
    return [
        ("CPU", _file_field("/proc/cpuinfo", "model name")),
        ("cores", "%s logical CPUs" % os.cpu_count()),
        ("memory", mem),
        ("OS", _file_field("/etc/os-release", "PRETTY_NAME", "=")),
        ("kernel", "%s %s %s" % (platform.system(), platform.release(), platform.machine())),
        ("libc", _first_line(["ldd", "--version"])),
        ("compiler", "%s (%s)" % (_first_line([cc, "--version"]) if cc != "unknown" else cc,
                                  _file_field(cache, "CMAKE_BUILD_TYPE:", "="))),
        ("python3", "%s (%s)" % (platform.python_version(), PY)),
        ("commit", commit + (" with local changes to src/, include/ or bench/" if dirty else "")),
        ("date", datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")),
    ]


def _group_table(rows):
    labels = rows[0].labels
    refs = labels[1:]
    head = ["case", "unit"] + labels + ["x " + r for r in refs]
    ideal = has_ideal(rows[0].group)
    if ideal:
        head.append("of ideal (%s)" % " / ".join(labels))
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        meds = [row.stats(i)[0] for i in range(len(labels))]
        out.append("| " + " | ".join([row.case, row.unit] +
                                     [cell(row, i) for i in range(len(labels))] +
                                     [ratio(meds[0], m) for m in meds[1:]] +
                                     ([ideal_cell(row, meds)] if ideal else [])) + " |")
    return out


def _scaling_table(spec, rows):
    _, _, _, xlabel, n_ours, _ = spec
    labels = rows[0].labels
    refs = labels[n_ours:]
    head = [xlabel] + labels + ["x " + r for r in refs]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        meds = [row.stats(i)[0] for i in range(len(labels))]
        out.append("| " + " | ".join([str(row.count)] +
                                     [cell(row, i) for i in range(len(labels))] +
                                     [ratio(meds[0], meds[n_ours + j])
                                      for j in range(len(refs))]) + " |")
    return out


def write_report(path, args, argv, rows, scaling, info, wall, loads):
    """Write the page at path and its charts in perf/ beside it."""
    outdir = os.path.dirname(os.path.abspath(path))
    perf = os.path.join(outdir, "perf")
    os.makedirs(perf, exist_ok=True)
    written = set()

    def chart(name, svg):
        with open(os.path.join(perf, name), "w") as f:
            f.write(svg)
        written.add(name)
        return "perf/" + name

    quick = args.scale != 1 or args.runs < 5 or args.only or args.no_scaling
    cmd = "python3 bench/run.py " + " ".join(shlex.quote(a) for a in argv)
    L = ["# Performance", "",
         "<!-- Written by bench/run.py (%s); edit run.py, not this page. -->" % cmd, ""]
    if quick:
        L += ["> **Quick sample, not a measurement.** This page was made with `%s` (%d run(s), "
              "item counts x %g%s); its figures only show that the generator works. The page "
              "to read comes from `python3 bench/run.py --report docs/performance.md` on a "
              "quiet machine." % (cmd, args.runs, args.scale,
                                  ", some groups only" if args.only or args.no_scaling else ""),
              ""]
    L += ["Every workload runs beside its references - a tuned raw C loop (socketpair, pipe or "
          "pthread objects) where one exists, and Python's `multiprocessing` - interleaved "
          "(ours, ref1, ref2, ours, ...) so that noise on a shared machine hits them all. "
          "Each cell is the median of %d runs with the range (min-max) in small type; "
          "`x ref` is ours / that reference, so above 1x means ours is faster. Higher is "
          "better everywhere. Each chart draws the medians as bars (or points) and the range "
          "as a whisker." % args.runs, "",
          "Regenerate this page and its charts with one command (it builds the benchmarks "
          "first; about ten minutes on two cores):", "",
          "```sh", "python3 bench/run.py --report docs/performance.md", "```", "",
          "## The machine", "", "| | |", "|---|---|"]
    L += ["| %s | %s |" % (k, v.replace("|", "\\|")) for k, v in info]
    L += ["| load average | %.2f before, %.2f after (1 min) |" % loads,
          "| wall time | %.0f s for this page |" % wall, ""]
    groups = []
    for row in rows:
        if row.group not in groups:
            groups.append(row.group)
    L += ["Contents: " + ", ".join("[%s](#%s)" % (g, g) for g in groups) +
          (", [scaling with the number of processes](#scaling-with-the-number-of-processes)"
           if scaling else ""), ""]
    for g in groups:
        grows = [r for r in rows if r.group == g]
        title = "%s (median of %d runs)" % (g, args.runs)
        svg = perfsvg.bar_chart(title, [
            (r.case, r.unit, [(r.labels[i],) + r.stats(i) for i in range(len(r.labels))])
            for r in grows])
        L += ["## %s" % g, "", NOTES.get(g, ""), "", "![%s](%s)" % (g, chart(g + ".svg", svg)),
              ""]
        # Rows of a group with different references get a table each.
        start = 0
        for i in range(1, len(grows) + 1):
            if i == len(grows) or grows[i].labels != grows[start].labels:
                L += _group_table(grows[start:i]) + [""]
                start = i
    if scaling:
        L += ["## Scaling with the number of processes", "",
              "The same workloads run with 1, 2, 4 and 8 processes on each side, with fewer "
              "items per run than the tables above. This machine has %s logical cores, so "
              "past that count the processes take turns on them: the lines show what "
              "contention and scheduling cost, not more parallel work." % os.cpu_count(), ""]
        for spec, srows in scaling:
            group, figure, unit, xlabel, n_ours, impls = spec
            series = [(label, [srow.stats(i) for srow in srows])
                      for i, label in enumerate(srows[0].labels)]
            svg = perfsvg.line_chart("%s: %s" % (group, figure), xlabel, unit, COUNTS, series,
                                     n_ours)
            L += ["### %s: %s" % (group, figure), "", SCALING_NOTES.get(group, ""), "",
                  "%s by the number of %s; `x ref` is %s / that reference." % (
                      unit, xlabel, srows[0].labels[0]), "",
                  "![%s scaling](%s)" % (group, chart("scaling_%s.svg" % group, svg)), ""]
            L += _scaling_table(spec, srows) + [""]
    L += ["## How the figures are made", "",
          "- Each workload is a program in `bench/` that prints one rate; `bench/run.py` "
          "declares the rows (WORKLOADS and SCALING) and runs them.",
          "- A reference shared by several rows (the same command) is run once per run and "
          "serves every row that names it.",
          "- Pool and manager rows start their processes before the clock; queue rows start "
          "them on the clock and shm rows include python3's start-up, ours and Python's "
          "alike.",
          "- The scaling rows move fewer items than the tables, so their 2-process figures "
          "need not match the 2 -> 2 rows exactly.",
          "- The machine was shared: absolute figures move by 10-30% from run to run; the "
          "ratios move much less.", ""]
    with open(path, "w") as f:
        f.write("\n".join(L))
    for name in os.listdir(perf):
        if name.endswith(".svg") and name not in written:
            os.remove(os.path.join(perf, name))
    print("\nwrote %s and %d chart(s) in %s" % (path, len(written), perf), file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build", "test"),
                    help="the build directory (default build/test, the test preset)")
    ap.add_argument("--runs", type=int, default=5, help="runs of every row (default 5)")
    ap.add_argument("--only", default="", help="comma-separated groups: " +
                    ",".join(sorted({w[0] for w in WORKLOADS})))
    ap.add_argument("--shm-size", type=int, default=1 << 30,
                    help="bytes each shm row moves (default 1 GiB; needs twice that in RAM)")
    ap.add_argument("--scale", type=float, default=1.0,
                    help="multiply every item count (0.05: a quick check of the report)")
    ap.add_argument("--report", metavar="PATH",
                    help="write the page (docs/performance.md) and its charts in perf/")
    ap.add_argument("--no-build", action="store_true", help="do not build the benchmarks first")
    ap.add_argument("--no-scaling", action="store_true",
                    help="skip the rows at 1, 2, 4 and 8 processes")
    argv = sys.argv[1:]
    args = ap.parse_args(argv)
    only = set(filter(None, args.only.split(",")))
    unknown = only - {w[0] for w in WORKLOADS}
    if unknown or args.runs < 1 or args.scale <= 0:
        ap.error("bad --only %s, --runs or --scale" % ",".join(sorted(unknown)))
    if args.scale != 1:
        os.environ["MPIPC_BENCH_SCALE"] = repr(args.scale)
        args.shm_size = max(1 << 20, int(args.shm_size * args.scale) // 8 * 8)
    build = os.path.abspath(args.build)
    if not args.no_build:
        ensure_built(build)

    def wanted(group):
        return not only or group in only

    t0, load0 = time.monotonic(), os.getloadavg()[0]
    rows = measure_rows(args, build, wanted)
    scaling = [] if args.no_scaling else measure_scaling(args, build, wanted)
    wall = time.monotonic() - t0
    print("\n(%.0f s in all)" % wall, file=sys.stderr)
    if args.report:
        write_report(args.report, args, argv, rows, scaling, machine(build), wall,
                     (load0, os.getloadavg()[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
