"""A Python worker of examples/c_parent_python_workers.c.

The C parent starts this script with its Listener's address on the command
line and the authkey (hex) in the environment; the script is ordinary
multiprocessing code: Client(address, authkey), then answer jobs until the
None sentinel.
"""
import os
import sys
from multiprocessing.connection import Client

conn = Client(sys.argv[1], authkey=bytes.fromhex(os.environ["MPIPC_AUTHKEY"]))
while (job := conn.recv()) is not None:
    conn.send((job, job * job))  # the work: any Python code, any library
conn.close()
