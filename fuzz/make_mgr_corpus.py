#!/usr/bin/env python3
"""Write seed corpora for the manager server's harnesses: scripts of
requests on four connections for fuzz_request (the step format is in
fuzz/fuzz_request.c), and single requests, in the bytes libmpipc clients
write and in the bytes CPython's pickle writes, for fuzz_fastpath.

    python3 fuzz/make_mgr_corpus.py <request-dir> <fastpath-dir>

Each seed is one file named by its content hash, so rerunning adds nothing.
"""
import hashlib
import os
import pickle
import struct
import sys


def c_pickle(value):
    """The bytes libmpipc's encoder writes: protocol 4, no FRAME, no memo."""
    out = bytearray(b"\x80\x04")

    def put(v):
        if v is None:
            out.extend(b"N")
        elif v is True or v is False:
            out.extend(b"\x88" if v else b"\x89")
        elif isinstance(v, int):
            if 0 <= v < 256:
                out.extend(b"K" + bytes([v]))
            elif 0 <= v < 65536:
                out.extend(b"M" + struct.pack("<H", v))
            elif -2**31 <= v < 2**31:
                out.extend(b"J" + struct.pack("<i", v))
            else:
                out.extend(b"\x8a\x08" + struct.pack("<q", v))
        elif isinstance(v, float):
            out.extend(b"G" + struct.pack(">d", v))
        elif isinstance(v, str):
            b = v.encode()
            out.extend((b"\x8c" + bytes([len(b)]) if len(b) < 256
                        else b"X" + struct.pack("<I", len(b))) + b)
        elif isinstance(v, bytes):
            out.extend((b"C" + bytes([len(v)]) if len(v) < 256
                        else b"B" + struct.pack("<I", len(v))) + v)
        elif isinstance(v, tuple):
            if len(v) > 3:
                out.extend(b"(")
            for x in v:
                put(x)
            out.extend({0: b")", 1: b"\x85", 2: b"\x86", 3: b"\x87"}.get(len(v), b"t"))
        elif isinstance(v, list):
            out.extend(b"](")
            for x in v:
                put(x)
            out.extend(b"e")
        elif isinstance(v, dict):
            out.extend(b"}(")
            for k, x in v.items():
                put(k)
                put(x)
            out.extend(b"u")
        else:
            raise TypeError(v)

    put(value)
    out.extend(b".")
    return bytes(out)


def requests():
    """(ident, method, args) of a session that touches every kind."""
    d, l, lk, rl, q = 1, 2, 3, 4, 5
    return [
        (0, "create", ("dict", "d", {"a": 1})), (0, "create", ("list", None, [1, 2])),
        (0, "create", ("lock", "lk", None)), (0, "create", ("rlock", None, None)),
        (0, "create", ("queue", "q", 1)), (0, "attach", ("dict", "d")), (0, "incref", (d,)),
        (0, "info", ()), (0, "ping", ()), (0, "shm", (5,)),
        (d, "set", ("k", b"v")), (d, "get", ("k",)), (d, "add", ("n", 5)),
        (d, "cas", ("n", 6, 5)), (d, "cas", ("m", 1)), (d, "setdefault", ("s", [1])),
        (d, "update", ([("u", 1), ("w", 2.5)],)), (d, "keys", ()), (d, "items", ()),
        (d, "pop", ("u",)), (d, "popitem", ()), (d, "copy", ()), (d, "del", ("k",)),
        (d, "contains", ("w",)), (d, "len", ()), (d, "clear", ()),
        (l, "append", (None,)), (l, "extend", ((1, 2),)), (l, "insert", (-1, "x")),
        (l, "slice", (None, -1)), (l, "index", (2,)), (l, "count", (1,)),
        (l, "remove", (1,)), (l, "pop", ()), (l, "pop", (0,)), (l, "set", (0, 1.5)),
        (l, "get", (-1,)), (l, "del", (0,)), (l, "copy", ()),
        (lk, "acquire", (None, 1)), (lk, "release", (1,)), (rl, "acquire", (0.5, 7)),
        (rl, "acquire", (0, 7)), (rl, "release", (7,)),
        (q, "put", ("item", None)), (q, "qsize", ()), (q, "full", ()), (q, "get", (0,)),
        (q, "empty", ()), (q, "task_done", ()), (q, "join", (0.0,)),
        (0, "release", (d,)), (0, "unlink", ("d",)),
    ]


def raw(conn, payload):
    return bytes([conn & 3]) + struct.pack("<H", len(payload)) + payload


def built(conn, ident, method, args_pickle):
    names = ["hello", "create", "attach", "incref", "release", "unlink", "info", "ping",
             "shm", "shutdown", "get", "set", "del", "contains", "len", "keys",
             "values", "items", "clear", "pop", "popitem", "setdefault", "update", "copy",
             "add", "cas", "append", "extend", "insert", "slice", "index", "count",
             "remove", "acquire", "put", "qsize", "empty", "full", "task_done", "join"]
    return bytes([7 << 2 | conn, ident, names.index(method), len(args_pickle)]) + args_pickle


def scripts():
    reqs = requests()
    make = b"".join(raw(0, c_pickle(r)) for r in reqs[:5])
    yield make
    yield b"".join(raw(i % 4, c_pickle(r)) for i, r in enumerate(reqs))
    yield b"".join(raw(i % 2, pickle.dumps(r, protocol=4)) for i, r in enumerate(reqs))
    # a lock held by a connection that hangs up while another waits
    yield make + raw(0, c_pickle((3, "acquire", (None, 1)))) + \
        raw(2, c_pickle((3, "acquire", (None, 2)))) + bytes([5 << 2 | 0]) + \
        raw(2, c_pickle((3, "release", (2,))))
    # a getter parks, a put hands it the item; a putter parks on a full queue
    yield make + raw(1, c_pickle((5, "get", (None,)))) + raw(3, c_pickle((5, "put", (b"x", 1.0)))) + \
        raw(3, c_pickle((5, "put", (1, 1.0)))) + raw(2, c_pickle((5, "put", (2, 1.0)))) + \
        bytes([6 << 2]) + raw(0, c_pickle((5, "get", (0,))))
    # timed waiters expire; the object goes away under a waiter
    yield make + raw(0, c_pickle((3, "acquire", (None, 1)))) + \
        raw(1, c_pickle((3, "acquire", (5.0, 2)))) + bytes([6 << 2 | 1]) + \
        raw(0, c_pickle((0, "release", (3,)))) + raw(2, c_pickle((0, "unlink", ("lk",))))
    # built steps, and a shutdown with its arity wrong and right
    yield make + built(0, 1, "set", b"K\x01K\x02\x86") + built(1, 2, "pop", b")") + \
        built(2, 0, "shutdown", b"N\x85") + built(3, 0, "shutdown", b")") + \
        raw(0, c_pickle((0, "ping", ())))
    yield py_script()
    yield sync_script(make)
    yield py_sync_script()
    yield data_script()
    yield slice_script()
    yield nested_script()


def sync_script(make):
    """The sync types (mgr_type_sync.c), objects 6-10 after make: a
    semaphore's holder hangs up under a waiter, an event wakes a waiter, a
    condition waits, is notified and times out, a barrier trips and one
    breaks on its deadline."""
    s, bs, ev, cv, br = 6, 7, 8, 9, 10
    reqs = [(0, "create", ("semaphore", None, 1)), (0, "create", ("boundedsemaphore", None, 1)),
            (0, "create", ("event", None, None)), (0, "create", ("condition", None, 3)),
            (0, "create", ("barrier", None, (2, 0.5)))]
    out = make + b"".join(raw(0, c_pickle(r)) for r in reqs)
    for conn, r in [(2, (s, "acquire", (None, 1))), (0, (s, "acquire", (5.0, 2))),
                    (3, (bs, "release", (1,))), (1, (ev, "wait", (1.0,))), (3, (ev, "set", ())),
                    (3, (cv, "acquire", (None, 4))), (3, (cv, "wait", (0.5, 4))),
                    (1, (cv, "acquire", (None, 5))), (1, (cv, "notify", (1, 5))),
                    (1, (cv, "release", (5,))), (1, (br, "wait", (None,))),
                    (2, (br, "n_waiting", ())), (0, (br, "wait", (None,))),
                    (2, (br, "wait", (None,)))]:
        out += raw(conn, c_pickle(r))
    # the holder's process hangs up; a timed waiter's deadline passes
    return out + bytes([5 << 2 | 2, 5 << 2 | 3, 6 << 2]) + raw(0, c_pickle((s, "get_value", ())))


def py_sync_script():
    """CPython's proxies on the sync types (objects 1-5)."""
    reqs = [(None, "create", ("Semaphore", 2), {}), (None, "create", ("BoundedSemaphore",), {}),
            (None, "create", ("Event",), {}), (None, "create", ("Condition",), {}),
            (None, "create", ("Barrier", 2), {"timeout": 0.5}),
            ("1", "acquire", (True, 0.5), {}), ("1", "release", (), {}),
            ("2", "release", (), {}), ("3", "wait", (0.1,), {}), ("3", "set", (), {}),
            ("3", "is_set", (), {}), ("4", "wait", (), {}), ("4", "acquire", (), {}),
            ("4", "wait", (0.2,), {}), ("4", "notify", (), {"n": 2}), ("4", "notify_all", (), {}),
            ("4", "release", (), {}), ("5", "__getattribute__", ("parties",), {}),
            ("5", "__getattribute__", ("wait",), {}), ("5", "wait", (), {}),
            ("5", "abort", (), {}), ("5", "reset", (), {}),
            (None, "create", ("Barrier", 2, print), {})]
    out = bytes([5 << 2 | 3 | 0x20])
    for r in reqs:
        try:
            out += raw(3, pickle.dumps(r, protocol=4))
        except Exception:
            continue
        if r[1] == "wait":
            out += bytes([6 << 2])  # its deadline passes
    return out


def py_script():
    """Connection 3 hangs up and comes back speaking CPython's dialect:
    what SyncManager.connect() and its proxies send (objects 1-4 here)."""
    from multiprocessing.managers import Token
    reqs = [(None, "dummy", (), {}), (None, "create", ("dict",), {}),
            (None, "create", ("Queue", 1), {}), (None, "create", ("Lock",), {}),
            (None, "create", ("list", [1, 2]), {}), (None, "incref", ("1",), {}),
            (None, "accept_connection", ("Thread-1",), {}),
            ("1", "__setitem__", ("k", 1), {}), ("1", "__getitem__", ("x",), {}),
            ("1", "pop", ("x", 5), {}), ("1", "update", (), {"a": 2}), ("1", "items", (), {}),
            ("2", "put", (1,), {"block": True, "timeout": 1.0}), ("2", "put_nowait", (2,), {}),
            ("2", "get", (False,), {}), ("2", "get", (), {"timeout": 0.5}),
            ("3", "acquire", (True,), {}), ("3", "acquire", (True, 0.5), {}),
            ("4", "__getitem__", (7,), {}), ("4", "remove", (9,), {}),
            ("4", "#GETVALUE", (), {}), ("1", "sort", (), {}),
            ("1", "__iter__", (), {}), ("5", "__next__", (), {}), ("5", "__next__", (), {}),
            ("5", "__next__", (), {}), (None, "decref", ("5",), {}),
            (None, "get_methods", (Token("dict", "/m", "1"),), {}), (None, "decref", ("1",), {}),
            (None, "decref", ("1",), {}), (None, "number_of_objects", (), {})]
    out = bytes([5 << 2 | 3 | 0x20])
    for i, r in enumerate(reqs):
        out += raw(3, pickle.dumps(r, protocol=4))
        if r[1] == "acquire" and len(r[2]) == 2:
            out += bytes([6 << 2])  # its deadline passes: False
    return out


def data_script():
    """Value, Array and Namespace (objects 6-8 after make) and the list's
    sort, reverse, + and * in our dialect, then in CPython's."""
    reqs = requests()
    ours = [(0, "create", ("value", None, ("i", 1))),
            (0, "create", ("array", None, ("b", [1, -2, 3]))),
            (0, "create", ("namespace", "ns", {"a": 1})),
            (6, "set", ([1, "x"],)), (6, "get", ()), (7, "set", (0, 300)), (7, "set", (-1, 5)),
            (7, "get", (2,)), (7, "len", ()), (7, "copy", ()), (7, "typecode", ()),
            (8, "set", ("b", 2.5)), (8, "get", ("zz",)), (8, "del", ("a",)), (8, "copy", ()),
            (2, "extend", ([3.5, True, -2**70, 2**64],)), (2, "sort", (False,)),
            (2, "sort", (True, None)), (2, "reverse", ()), (2, "add", ((1,),)),
            (2, "mul", (3,)), (2, "imul", (2,)), (2, "append", ("s",)), (2, "sort", (False,)),
            (2, "imul", (0,))]
    out = b"".join(raw(0, c_pickle(r)) for r in reqs[:5])
    out += b"".join(raw(i % 3, pickle.dumps(r, protocol=4)) for i, r in enumerate(ours))
    py = [(None, "dummy", (), {}), (None, "create", ("Value", "i", 5), {}),
          (None, "create", ("Array", "d", [1, 2.5]), {}), (None, "create", ("Namespace",), {"x": 1}),
          (None, "create", ("list", [3, 1, 2]), {}), (None, "create", ("dict", [("a", 1)]), {"b": 2}),
          ("9", "set", (7,), {}), ("9", "get", (), {}), ("a", "__setitem__", (0, "x"), {}),
          ("a", "__len__", (), {}), ("b", "__getattribute__", ("y",), {}),
          ("b", "__setattr__", ("y", 2), {}), ("b", "__delattr__", ("y",), {}),
          ("c", "sort", (), {"reverse": True}), ("c", "sort", (), {"key": None}),
          ("c", "__imul__", (2,), {}), ("c", "__add__", ([1],), {}), ("c", "__rmul__", (2,), {}),
          ("c", "reverse", (), {})]
    out += b"".join(raw(3, pickle.dumps(r, protocol=4)) for r in py)
    return out


def slice_script():
    """The list's get, set and del of a builtins.slice (object 2 after
    make) in our dialect, then a ListProxy's l[a:b:c] in CPython's; with
    slices the decoder refuses (a str, a float bound) among them."""
    reqs = requests()
    ours = [(2, "extend", (list(range(10)),)), (2, "get", (slice(None, None, -1),)),
            (2, "get", (slice(-3, None, 2),)), (2, "set", (slice(1, 3), ["a", "b", "c"])),
            (2, "set", (slice(None, None, 2), (1, 2))), (2, "set", (slice(5, 2), [0])),
            (2, "del", (slice(2**70, -2**70, -3),)), (2, "get", (slice(0, 5, 0),)),
            (2, "del", (slice(True, None),)), (2, "get", (slice("a", None),)),
            (2, "set", (slice(1.5, None), [1]))]
    out = b"".join(raw(0, c_pickle(r)) for r in reqs[:5])
    out += b"".join(raw(i % 3, pickle.dumps(r, protocol=4)) for i, r in enumerate(ours))
    py = [(None, "dummy", (), {}), (None, "create", ("list", list(range(8))), {}),
          ("6", "__getitem__", (slice(2, 10),), {}), ("6", "__getitem__", (slice(None),), {}),
          ("6", "__setitem__", (slice(None, None, -2), [1, 2, 3, 4]), {}),
          ("6", "__setitem__", (slice(None, None, 3), [1]), {}),
          ("6", "__delitem__", (slice(-2, None),), {}), ("6", "__getitem__", (slice(1.0),), {}),
          ("6", "__imul__", (2,), {}), ("6", "__getitem__", (slice(None, None, -1),), {})]
    out += b"".join(raw(3, pickle.dumps(r, protocol=p)) for p, r in
                    zip([2, 3, 4, 5] * 3, py))
    return out
def nested_script():
    """CPython's dialect with proxies inside values: a list (object 1), a
    dict holding it, a Lock and a Condition over it, list(range(...)),
    the self-holding list, and a proxy to an object that is not there."""
    from multiprocessing import managers as M
    def px(cls, typeid, ident, **kw):
        return cls(M.Token(typeid, "/m", ident), "pickle", authkey=b"k", incref=False, **kw)
    py = [(None, "dummy", (), {}), (None, "create", ("list", range(3)), {}),
          (None, "create", ("dict",), {"x": px(M.ListProxy, "list", "1")}),
          (None, "create", ("Lock",), {}),
          (None, "create", ("Condition", px(M.AcquirerProxy, "Lock", "3")), {}),
          ("1", "append", (px(M.ListProxy, "list", "1"),), {}), (None, "decref", ("1",), {}),
          ("2", "__getitem__", ("x",), {}), (None, "incref", ("1",), {}),
          ("2", "__setitem__", ("y", [px(M.DictProxy, "dict", "ff")]), {}),
          ("2", "pop", ("x",), {}), ("2", "clear", (), {}), (None, "decref", ("3",), {}),
          ("4", "acquire", (), {}), ("4", "notify", (), {}), ("4", "release", (), {}),
          (None, "decref", ("4",), {}), (None, "decref", ("2",), {}),
          (None, "number_of_objects", (), {})]
    return b"".join(raw(3, pickle.dumps(r, protocol=4)) for r in py)


def fastpath_seeds():
    for ident, method, args in requests():
        yield c_pickle((ident, method, args))
        yield pickle.dumps((ident, method, args), protocol=4)
    for args in [(), (None,), (True, False), (-1, 255, 256), (65535, 65536, -2**31),
                 (2**31, 2**63 - 1, -2**63), (0.0, -0.0, float("nan")), ("", "\u00e9", "x" * 255),
                 (b"", b"\xff" * 255), (1, 2, 3, 4), (1, 2, 3, 4, 5, 6, 7, 8),
                 (1, 2, 3, 4, 5, 6, 7, 8, 9), ("x" * 256,), ([1],)]:
        yield c_pickle((7, "m", args))
        yield c_pickle((2**40, "method", args))


def write(dirname, data):
    os.makedirs(dirname, exist_ok=True)
    name = hashlib.sha1(data).hexdigest()[:16]
    with open(os.path.join(dirname, name), "wb") as f:
        f.write(data)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    request_dir, fastpath_dir = sys.argv[1], sys.argv[2]
    n = m = 0
    for s in scripts():
        write(request_dir, s)
        n += 1
    for s in fastpath_seeds():
        write(fastpath_dir, s)
        m += 1
    print("wrote %d request scripts to %s, %d requests to %s" % (n, request_dir, m, fastpath_dir))


if __name__ == "__main__":
    main()
