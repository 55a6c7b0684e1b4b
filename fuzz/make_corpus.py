#!/usr/bin/env python3
"""Write seed corpora for the fuzz harnesses: real CPython pickles of many
shapes (protocols 2 to 5) for fuzz_pickle, and length headers for fuzz_frame.

    python3 fuzz/make_corpus.py <pickle-dir> <frame-dir>

Each seed is one file named by its content hash, so rerunning adds nothing.
"""
import hashlib
import os
import pickle
import struct
import sys


def shapes():
    shared = [1, "s"]
    s = "shared"
    t = (1, "a")
    d = {"k": "v"}
    yield from [None, True, False, 0, 1, -1, 255, 256, 65535, 65536, 2**31 - 1, -2**31,
                2**31, 2**63 - 1, -2**63, 2**62, 0.0, -0.0, 1.5, 0.1, float("inf"),
                float("-inf"), float("nan"), 5e-324, 1e300]
    yield from ["", "a", "h\u00e9llo", "\u65e5\u672c", "\U0001F600", "a\x00b", "x" * 300,
                "it's \"q\"", "\n\t\\"]
    yield from [b"", b"a", b"\x00\xff", b"z" * 300, bytearray(b"ba"), bytearray()]
    yield from [[], [1], [1, 2, 3], list(range(30)), (), (1,), (1, 2), (1, 2, 3),
                (1, 2, 3, 4), {}, {"a": 1}, {1: "a", 2.5: "b", None: 3, (1, 2): 4, b"k": 5}]
    yield from [[shared, shared], [s, s, {s: s}], {"k": [t, t]}, (d, [d], {"again": d}),
                [[[[[]]]]], {"a": {"b": {"c": [1, (2, [3])]}}},
                [1.0, 2, True, None, "x", b"y", [], (), {}],
                [{"name": "n%d" % i, "id": i} for i in range(5)],
                [[1] * 3] * 4, ((1, 2), (1, 2)), {(1, (2, 3)): [None]}]
    deep = []
    for _ in range(40):
        deep = [deep]
    yield deep
    # shapes the decoder refuses, so the fuzzer starts near those paths too
    x = []
    x.append(x)
    yield x
    # ints beyond int64 (LONG1, LONG4, protocol 0 text) and lone surrogates
    yield [2**70, -2**70, 2**2048 + 1, {2**64: 2.0**64}]
    yield ["\udcff", "a\ud800b", "\ud83d\ude00", {"\udce9": 1}]
    # sets: EMPTY_SET/ADDITEMS/FROZENSET, and set()/frozenset() of a list
    fs = frozenset({1, 2})
    yield from [{1, 2}, set(), frozenset([3]), frozenset(), {fs: {3}}, [fs, fs],
                {"a", (1, 2), None, fs}, set(range(1005))]
    # the manager classes read as inert instances (Token by NEWOBJ + BUILD,
    # exceptions by REDUCE), as replies carry them, and their neighbours
    import queue, threading
    from multiprocessing.managers import RemoteError, Token
    tok = Token("dict", ("127.0.0.1", 5000), "7f1")
    yield from [tok, KeyError("k"), IndexError(), ValueError(1, "v"), queue.Empty(),
                queue.Full(), threading.BrokenBarrierError(), RemoteError("tb"),
                __import__("multiprocessing").AuthenticationError("digest received was wrong"),
                StopIteration([1]), ("#ERROR", KeyError(("k", 1))),
                ("#PROXY", (("get", "put"), tok)), [tok, tok, KeyError(tok)],
                ZeroDivisionError("refused"), queue.Queue]
    # builtins.slice (a ListProxy's l[a:b:c]): three ints or Nones, and
    # the slices the decoder refuses
    yield from [slice(None), slice(1, None, -1), slice(2**70, -2**70, True),
                ("__getitem__", (slice(0, 5),)), [slice(1, 2), slice(1, 2)],
                slice("a"), slice(1.5, None), slice([1])]
    # proxies inside values (RebuildProxy of AutoProxy or a proxy class),
    # range, and a proxy class the decoder refuses (BaseProxy)
    from multiprocessing import managers as M
    def px(cls, typeid, **kw):
        return cls(M.Token(typeid, "/m", "2a"), "pickle", authkey=b"k", incref=False, **kw)
    lp, q = px(M.ListProxy, "list"), px(M.AutoProxy, "Queue", exposed=("get", "put"))
    yield from [lp, q, [lp, lp, {"k": q}], (px(M.AcquirerProxy, "Lock"), range(3)),
                range(-5, 100, 7), px(M.BaseProxy, "x")]


def write(dirname, data):
    os.makedirs(dirname, exist_ok=True)
    name = hashlib.sha1(data).hexdigest()[:16]
    with open(os.path.join(dirname, name), "wb") as f:
        f.write(data)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    pickle_dir, frame_dir = sys.argv[1], sys.argv[2]
    n = 0
    for obj in shapes():
        for proto in range(2, pickle.HIGHEST_PROTOCOL + 1):
            try:
                write(pickle_dir, pickle.dumps(obj, protocol=proto))
                n += 1
            except Exception:
                pass
    for length in [0, 1, 255, 65536, 0x7FFFFFFF]:
        write(frame_dir, struct.pack("!i", length))
    for length in [0, 5, 0x80000000, 2**40, 2**63 - 1, 2**64 - 1]:
        write(frame_dir, struct.pack("!iQ", -1, length))
    write(frame_dir, struct.pack("!i", -2))
    write(frame_dir, b"\xff\xff")
    print("wrote %d pickle seeds to %s, frame seeds to %s" % (n, pickle_dir, frame_dir))


if __name__ == "__main__":
    main()
