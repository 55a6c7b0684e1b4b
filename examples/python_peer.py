"""The Python end of examples/python_peer.c.

Started by the C program with one end of a Pipe as a file descriptor; wraps
it in multiprocessing's own Connection and serves requests until the C side
closes its end (EOFError) - plain multiprocessing code, nothing C-specific.
"""
import sys
from multiprocessing.connection import Connection

conn = Connection(int(sys.argv[1]))
served = 0
while True:
    try:
        op, arg = conn.recv()
    except EOFError:
        break
    if op == "stats":
        reply = {"min": min(arg), "max": max(arg), "mean": sum(arg) / len(arg),
                 "sorted": sorted(arg)}
    elif op == "upper":
        reply = arg.upper()
    elif op == "echo":
        reply = arg
    else:
        reply = ("error", "unknown op %r" % op)
    conn.send(reply)
    served += 1
print("python: served %d requests, bye" % served, flush=True)
