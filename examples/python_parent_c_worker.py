"""A Python parent driving a C worker (examples/python_parent_c_worker.c).

Ordinary multiprocessing code: a Listener with an authkey on loopback, a
worker started as a subprocess that connects back as a Client would, jobs
sent as Python values (tuples of str, int, list, bytes), results received as
Python values and checked against the same computation done here. The C end
is invisible: the framing, the pickles and the authkey handshake are
multiprocessing's own.

Usage: python3 python_parent_c_worker.py PATH_TO_C_WORKER
"""
import collections
import os
import signal
import subprocess
import sys
import zlib
from multiprocessing.connection import Listener

signal.alarm(30)  # a finite run time even if the worker never connects

worker_path = sys.argv[1]
authkey = os.urandom(16)
text = "the quick brown fox jumps over the lazy dog the end 妹妹 妹妹"
numbers = [3, 1.5, 4, 1, 5.25, 9, 2, 6]
blob = bytes(range(256)) * 40

jobs = [
    (("words", text), dict(collections.Counter(text.split()))),
    (("primes", 60), [p for p in range(2, 60) if all(p % d for d in range(2, p))]),
    (("stats", numbers),
     {"n": len(numbers), "sum": float(sum(numbers)), "min": float(min(numbers)),
      "max": float(max(numbers))}),
    (("adler32", blob), zlib.adler32(blob)),
]

with Listener(("127.0.0.1", 0), authkey=authkey) as listener:
    host, port = listener.address
    env = dict(os.environ, MPIPC_AUTHKEY=authkey.hex())
    worker = subprocess.Popen([worker_path, "tcp:%s:%d" % (host, port)], env=env)
    with listener.accept() as conn:
        print("python: C worker connected and authenticated", flush=True)
        ok = True
        for job, expected in jobs:
            conn.send(job)
            got = conn.recv()
            same = got == expected and type(got) is type(expected)
            ok = ok and same
            print("python: %-7s -> %s" % (job[0], "as expected" if same else "WRONG: %r" % (got,)),
                  flush=True)
        # A job the worker does not know is answered, not fatal.
        conn.send(("sort", [3, 2, 1]))
        print("python: sort    -> %r" % (conn.recv(),), flush=True)
        conn.send(None)  # no more jobs
    code = worker.wait(timeout=10)

print("python: worker exited with %d; results %s" % (code, "all correct" if ok else "WRONG"),
      flush=True)
sys.exit(0 if ok and code == 0 else 1)
