#!/usr/bin/env python3
"""Write tests/pickle_vectors.h and tests/repr_vectors.h: real CPython pickles and reprs for test_unpickle.c,
test_pickle.c and test_obj.c, so the C tests compare against what Python itself produced.

    python3 tests/gen_vectors.py pickle > tests/pickle_vectors.h
    python3 tests/gen_vectors.py repr > tests/repr_vectors.h

Each pickle vector is pickle.dumps(obj, protocol) for protocols 0 to 5, with
the repr Python prints for pickle.loads of it, or MP_EPROTO where the C
decoder refuses it by design (bytes in protocols 0-2, which CPython writes as
a call of _codecs.encode; an empty bytearray is bytearray() there, which the
decoder knows, as it knows set() and frozenset() of a list).
"""
import pickle
import struct
import sys

MP_EPROTO = -1008


def c_bytes(b):
    """A C string literal for arbitrary bytes (octal escapes: never greedy)."""
    tokens = []
    for c in b:
        ch = chr(c)
        if 0x20 <= c < 0x7F and ch not in '"\\?':
            tokens.append(ch)
        else:
            tokens.append("\\%03o" % c)
    # keep lines reasonably short, never splitting an escape
    parts, line = [], ""
    for t in tokens:
        if len(line) + len(t) > 90:
            parts.append(line)
            line = ""
        line += t
    parts.append(line)
    return "\n    ".join('"%s"' % p for p in parts)


def has_set(o):
    if isinstance(o, (set, frozenset)):
        return True
    if isinstance(o, (list, tuple)):
        return any(has_set(i) for i in o)
    if isinstance(o, dict):
        return any(has_set(k) or has_set(v) for k, v in o.items())
    return False


def has_bytes(o):
    if isinstance(o, (bytes, bytearray)):
        return True
    if isinstance(o, (list, tuple, set, frozenset)):
        return any(has_bytes(i) for i in o)
    if isinstance(o, dict):
        return any(has_bytes(k) or has_bytes(v) for k, v in o.items())
    return False


shared_list = [1]
shared_str = "shared"
shared_tuple = (1, "a")
shared_dict = {"k": "v"}
shared_set = {5, 6}
shared_frozenset = frozenset({7})

OBJECTS = [
    ("none", None),
    ("true", True),
    ("false", False),
    ("int_zero", 0),
    ("int_one", 1),
    ("int_minus_one", -1),
    ("int_255", 255),
    ("int_256", 256),
    ("int_65535", 65535),
    ("int_65536", 65536),
    ("int_minus_65536", -65536),
    ("int32_max", 2**31 - 1),
    ("int32_min", -2**31),
    ("int32_max_plus_one", 2**31),
    ("int32_min_minus_one", -2**31 - 1),
    ("int_2_pow_32", 2**32),
    ("int64_max", 2**63 - 1),
    ("int64_min", -2**63),
    ("int_2_pow_62", 2**62),
    ("int_minus_2_pow_62", -2**62),
    ("float_1_5", 1.5),
    ("float_0_1", 0.1),
    ("float_zero", 0.0),
    ("float_minus_zero", -0.0),
    ("float_inf", float("inf")),
    ("float_minus_inf", float("-inf")),
    ("float_nan", float("nan")),
    ("float_1e16", 1e16),
    ("float_1e_300", 1e-300),
    ("float_denormal_min", 5e-324),
    ("float_max", sys.float_info.max),
    ("str_empty", ""),
    ("str_ascii", "a"),
    ("str_latin1", "h\u00e9llo"),
    ("str_cjk", "\u65e5\u672c\u8a9e"),
    ("str_astral", "\U0001F600"),
    ("str_with_nul", "a\x00b"),
    ("str_quote", "it's"),
    ("str_dquote", 'say "hi"'),
    ("str_both_quotes", "'\""),
    ("str_controls", "\n\t\r\x7f\x1b\\"),
    ("str_backslash_u", "\\u0041 \\x"),
    ("str_nonprintable", "\u200b\u00a0\u2028\ue000"),
    ("str_300", "x" * 300),
    ("bytes_empty", b""),
    ("bytes_a", b"a"),
    ("bytes_binary", b"\x00\xff\n'\""),
    ("bytes_300", b"z" * 300),
    ("bytearray", bytearray(b"ba")),
    ("bytearray_empty", bytearray()),
    ("list_empty", []),
    ("list_one", [1]),
    ("list_three", [1, 2, 3]),
    ("list_1500", list(range(1500))),
    ("tuple_empty", ()),
    ("tuple_one", (1,)),
    ("tuple_two", (1, 2)),
    ("tuple_three", (1, 2, 3)),
    ("tuple_four", (1, 2, 3, 4)),
    ("tuple_1001", tuple(range(1001))),
    ("dict_empty", {}),
    ("dict_one", {"a": 1}),
    ("dict_mixed_keys", {1: "a", 2.5: "b", None: 3, (1, 2): 5, b"k": 6, "": 7, False: 8}),
    ("dict_true_merges_with_one", {1: "a", True: "b", 1.0: "c"}),
    ("dict_1001", {i: str(i) for i in range(1001)}),
    ("shared_list", [shared_list, shared_list]),
    ("shared_str", [shared_str, shared_str, {shared_str: shared_str}]),
    ("shared_tuple", {"k": [shared_tuple, shared_tuple]}),
    ("shared_dict", (shared_dict, [shared_dict], {"again": shared_dict})),
    ("nested_lists", [[[[[]]]]]),
    ("nested_mixed", {"a": {"b": {"c": [1, (2, [3])]}}}),
    ("mixed_list", [1.0, 2, True, None, "x", b"y", [], (), {}]),
    ("list_of_dicts", [{"name": "n%d" % i, "id": i} for i in range(50)]),
    ("tuple_nan", (float("nan"),)),
    ("dict_minus_zero_key", {-0.0: "z"}),
    ("int_edges", [2**63 - 1, -2**63, 2**53 + 1]),
    ("unicode_keys", {"\u00e9": "\U0001F600", "k\x00": "\n"}),
    ("set_empty", set()),
    ("set_ints", {1, 2, 3}),
    ("set_mixed", {1, 2.5, None, (1, 2), "a", b"b"}),
    ("set_1001", set(range(1001))),
    ("frozenset_empty", frozenset()),
    ("frozenset_ints", frozenset({1, 2})),
    ("frozenset_nested", frozenset({frozenset({1}), (1, frozenset({2}))})),
    ("frozenset_key", {frozenset({1, 2}): {3, 4}}),
    ("shared_set", [shared_set, shared_set, (shared_frozenset, shared_frozenset)]),
    # Ints beyond int64, exact (LONG1, LONG4 from 256 bytes, protocol 0's text).
    ("int64_max_plus_one", 2**63),
    ("int64_min_minus_one", -2**63 - 1),
    ("int_2_pow_100", 2**100),
    ("int_big_list", [2**64, -2**64, 2**2048 + 1, -(10**300)]),
    # Lone surrogates, as os.walk yields for names that are not UTF-8.
    ("str_surrogates", ["\udcff", "a\ud800b", "\ud83d\ude00", {"\udce9": "\udfff"}]),
]

# Values the C decoder refuses by design (none left of the int kind).
OUT_OF_RANGE = []


def emit_pickles(out):
    out.write("struct pickle_vec {\n    const char *name;\n    int proto;\n"
              "    const unsigned char *data;\n    size_t len;\n    int status;\n"
              "    const char *repr; /* Python's repr of pickle.loads(data) */\n};\n\n")
    big = []
    rows = []
    reprs = {}
    for name, obj in OBJECTS + OUT_OF_RANGE:
        for proto in range(0, 6):
            data = pickle.dumps(obj, protocol=proto)
            if (name, obj) in OUT_OF_RANGE:
                status, rep = MP_EPROTO, None
            elif proto < 3 and has_bytes(obj) and not (type(obj) is bytearray and not obj):
                # bytes go through _codecs.encode; bytearray() alone does not
                status, rep = MP_EPROTO, None
            else:
                back = pickle.loads(data)
                # A set's items come in the order its pickle lists them, which
                # the C side keeps; Python's rebuilt set may iterate in
                # another order, so show the original's (equal) repr.
                rep = repr(obj if has_set(obj) and back == obj else back)
                status = 0
            ident = "pv_%s_p%d" % (name, proto)
            big.append("static const unsigned char %s[] =\n    %s;\n" % (ident, c_bytes(data)))
            dref = ident
            if rep is None:
                rep_lit = "NULL"
            elif len(rep) < 80:
                rep_lit = c_bytes(rep.encode("utf-8"))
            else:
                if rep not in reprs:
                    reprs[rep] = "pr_%s" % name
                    big.append("static const char %s[] =\n    %s;\n"
                               % (reprs[rep], c_bytes(rep.encode("utf-8"))))
                rep_lit = reprs[rep]
            rows.append('    {"%s", %d, %s, %d, %d, %s},\n'
                        % (name, proto, dref, len(data), status, rep_lit))
    out.write("".join(big))
    out.write("\nstatic const struct pickle_vec pickle_vecs[] = {\n")
    out.write("".join(rows))
    out.write("};\n\n")


FLOATS = [0.0, -0.0, 1.0, -1.0, 0.1, 0.2, 0.3, 1 / 3, 2 / 3, 1.5, 100.0, 123.456, 1e15, 1e16,
          1e17, 9007199254740993.0, 1234567890123456.7, 12345678901234567.0, 1e-4, 1e-5,
          0.0001234, 1e22, 1e23, 1e-7, 5e-324, 2.2250738585072014e-308,
          2.225073858507201e-308, sys.float_info.max, -sys.float_info.max, float("inf"),
          float("-inf"), float("nan"), 2.0 ** 63, 2.0 ** -1074, 2.0 ** 1023, 4.35, 0.5, 1e100,
          1.7976931348623157e308, 123456789.0, 3.141592653589793, 2.718281828459045,
          9.999999999999999e22, 1e-310, 8.41e21, 5.0e-324 * 3]


def lopsided_powers_of_two():
    """Powers of two whose shortest repr is not the correctly rounded string
    of that length (the rounding interval of 2**e is narrower below): the
    case where repr must take the neighbouring digit string."""
    import math
    found = []
    for e in range(-1074, 1024):
        x = math.ldexp(1.0, e)
        mant = repr(x).split("e")[0].replace("-", "").replace(".", "")
        n = len(mant.lstrip("0").rstrip("0") or "0")
        if float("%.*e" % (n - 1, x)) != x:
            found.append(x)
    return found


def emit_floats(out):
    out.write("struct float_vec {\n    uint64_t bits;\n    const char *repr;\n};\n\n")
    out.write("static const struct float_vec float_vecs[] = {\n")
    for f in FLOATS + lopsided_powers_of_two():
        bits = struct.unpack("<Q", struct.pack("<d", f))[0]
        out.write('    {UINT64_C(0x%016x), "%s"},\n' % (bits, repr(f)))
    out.write("};\n\n")


STRS = ["", "a", "it's", 'say "hi"', "'\"", "\\", "\n\t\r", "\x00\x01\x1f\x7f",
        "\x80\x9f\xa0\xad\xff", "h\u00e9llo", "\u0378", "\u200b", "\u2028\u2029",
        "\ud7ff\ue000\uf8ff\ufeff\ufffd\uffff", "\U0001F600\U000E0001\U0010FFFF\U000F0000",
        "\u3000x\u3000", "\u00a0", "\u0600", "caf\u00e9 \u65e5\u672c \U0001F40D",
        "mixed '\" \\ \x00 \u00e9"]
BYTES = [b"", b"a", b"it's", b'say "hi"', b"'\"", b"\\", b"\n\t\r", b"\x00\x01\x1f\x7f\x80\xff",
         b"printable ~!@#$%^&*()"]


def emit_strs(out):
    out.write("struct str_vec {\n    const char *utf8;\n    size_t len;\n    const char *repr;\n};\n\n")
    out.write("static const struct str_vec str_vecs[] = {\n")
    for s in STRS:
        b = s.encode("utf-8")
        out.write("    {%s, %d, %s},\n" % (c_bytes(b), len(b), c_bytes(repr(s).encode("utf-8"))))
    out.write("};\n\n")
    out.write("static const struct str_vec bytes_vecs[] = {\n")
    for b in BYTES:
        out.write("    {%s, %d, %s},\n" % (c_bytes(b), len(b), c_bytes(repr(b).encode("utf-8"))))
    out.write("};\n\n")


def main():
    which = sys.argv[1] if len(sys.argv) > 1 else ""
    if which not in ("pickle", "repr"):
        sys.exit("usage: gen_vectors.py pickle|repr")
    guard = "MPIPC_TEST_%s_VECTORS_H" % which.upper()
    out = sys.stdout
    out.write("/* Generated by tests/gen_vectors.py %s with Python %s. Do not edit. */\n"
              % (which, sys.version.split()[0]))
    out.write("#ifndef %s\n#define %s\n\n" % (guard, guard))
    out.write("#include <stddef.h>\n#include <stdint.h>\n\n")
    if which == "pickle":
        emit_pickles(out)
    else:
        emit_floats(out)
        emit_strs(out)
    out.write("#endif /* %s */\n" % guard)


if __name__ == "__main__":
    main()
