#!/usr/bin/env python3
"""The Python side of bench_shm.c: a block of data handed between C and
Python through a SharedMemory block or over a Pipe.

    bench_shm.py sum_shm NAME SIZE      attach, sum, print the sum
    bench_shm.py sum_pipe FD SIZE       receive SIZE bytes over the pipe, sum
    bench_shm.py fill_shm SIZE          create, fill, print the name, wait
                                        for a line on stdin, unlink
    bench_shm.py fill_pipe FD SIZE      send SIZE bytes over the pipe

The data is CHUNK-byte chunks of the uint64s 0, 1, 2, ...; the sum is the
sum of every uint64 of the whole block, modulo 2**64, made with Python's
sum() over memoryview.cast('Q') one chunk at a time: linear in the size,
and the same work for both transports (numpy is not available).
"""
import sys
from array import array
from multiprocessing import resource_tracker, shared_memory
from multiprocessing.connection import Connection

CHUNK = 16 << 20


def chunk_bytes():
    return array("Q", range(CHUNK // 8)).tobytes()


def sum_view(mv):
    return sum(mv.cast("Q"))


def main():
    op = sys.argv[1]
    if op == "sum_shm":
        shm = shared_memory.SharedMemory(name=sys.argv[2])
        resource_tracker.unregister(shm._name, "shared_memory")  # C owns it
        size = int(sys.argv[3])
        total = 0
        for off in range(0, size, CHUNK):
            total += sum_view(shm.buf[off:off + CHUNK])
        print(total % 2**64, flush=True)
        shm.close()
    elif op == "sum_pipe":
        c = Connection(int(sys.argv[2]), writable=False)
        size = int(sys.argv[3])
        buf = bytearray(CHUNK)
        mv = memoryview(buf)
        total = 0
        got = 0
        while got < size:
            n = c.recv_bytes_into(buf)
            total += sum_view(mv[:n])
            got += n
        print(total % 2**64, flush=True)
    elif op == "fill_shm":
        size = int(sys.argv[2])
        shm = shared_memory.SharedMemory(create=True, size=size)
        data = chunk_bytes()
        for off in range(0, size, CHUNK):
            n = min(CHUNK, size - off)
            shm.buf[off:off + n] = data[:n]
        print(shm.name, flush=True)
        sys.stdin.readline()
        shm.close()
        shm.unlink()
    elif op == "fill_pipe":
        c = Connection(int(sys.argv[2]), readable=False)
        size = int(sys.argv[3])
        data = chunk_bytes()
        for off in range(0, size, CHUNK):
            c.send_bytes(data, 0, min(CHUNK, size - off))
    else:
        sys.exit("unknown op " + op)


if __name__ == "__main__":
    main()
