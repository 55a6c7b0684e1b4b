#!/usr/bin/env python3
"""Python's Manager on the W6 workload of bench_manager.c.

4 processes x 2,500 read-modify-write decrements of d['count'] on a
Manager().dict(), under a lock, in operations/s (printed as "<case> <rate>"
for bench/run.py):

  manager_lock   with Manager().Lock() - a lock in the manager server
  mp_lock        with multiprocessing.Lock() - a shared-memory semaphore
  manager_lock_ours  as manager_lock, the same Python clients (SyncManager
                 proxies) on libmpipc's server instead of CPython's: the
                 program bench_manager run as `bench_manager serve`, named
                 by --server PATH before the case; over AF_UNIX as Manager()

As in bench_manager.c, the clock runs from "go" to the last worker's end;
the final count must be 0.

usage: bench_manager.py [--server PATH] <case> [processes] [ops per process] - run.py's
scaling rows run 1, 2, 4 and 8 clients; MPIPC_BENCH_SCALE multiplies the
operations.
"""
import contextlib
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
from multiprocessing import connection, managers

PROCS = 4
OPS = 2500


def work(d, lock, ready, go, ops):
    d['count']  # connect before the clock starts
    ready.put(1)
    go.wait()
    for _ in range(ops):
        with lock:
            d['count'] -= 1


@contextlib.contextmanager
def our_server(program):
    """A SyncManager connected to libmpipc's server (bench_manager serve),
    shut down at the end as Python's own finalizer does."""
    key = os.urandom(32)
    path = os.path.join(tempfile.mkdtemp(prefix='mpipc-bench-'), 'listener')
    proc = subprocess.Popen([program, 'serve', 'unix:' + path, key.hex()],
                            stdout=subprocess.PIPE)
    try:
        line = proc.stdout.readline().decode().strip()
        if not line.startswith('unix:'):
            sys.exit("bench_manager.py: our server did not start")
        m = managers.SyncManager(address=line[5:], authkey=key)
        m.connect()
        yield m
    finally:
        try:
            with connection.Client(path, authkey=key) as c:
                managers.dispatch(c, None, 'shutdown')
        except Exception:
            pass
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main():
    mp.set_start_method("fork")
    server = None
    if sys.argv[1] == "--server":
        server = sys.argv[2]
        del sys.argv[1:3]
    case = sys.argv[1]
    procs = int(sys.argv[2]) if len(sys.argv) > 2 else PROCS
    ops = int(sys.argv[3]) if len(sys.argv) > 3 else OPS
    ops = max(1, int(ops * float(os.environ.get("MPIPC_BENCH_SCALE", "1"))))
    if case == "manager_lock_ours" and not server:
        sys.exit("bench_manager.py: manager_lock_ours needs --server PATH")
    with (our_server(server) if case == "manager_lock_ours" else mp.Manager()) as m:
        d = m.dict({'count': procs * ops})
        lock = mp.Lock() if case == "mp_lock" else m.Lock()
        ready, go = mp.Queue(), mp.Event()
        ps = [mp.Process(target=work, args=(d, lock, ready, go, ops)) for _ in range(procs)]
        for p in ps:
            p.start()
        for _ in ps:
            ready.get()
        t0 = time.perf_counter()
        go.set()
        for p in ps:
            p.join()
        dt = time.perf_counter() - t0
        if d['count'] != 0 or any(p.exitcode for p in ps):
            sys.exit("bench_manager.py: wrong final count %r" % d['count'])
    print("%s %.1f" % (case, procs * ops / dt))


if __name__ == "__main__":
    main()
