/*
 * unpickle_errmsg - the words for a pickle the decoder refused: the opcode
 * by its pickletools name, its offset, and the limit or rule it broke,
 * recorded for mp_errmsg on the decoding thread. Statics: unpickle_errmsg_.
 */
#include "codec/objimpl.h"
#include "codec/pickle.h"
#include "core/internal.h"

#include <errno.h>
#include <stdio.h>

/* Python's names (Lib/pickletools.py) for the bytes that are opcodes. */
static const char *const unpickle_errmsg_names[256] = {
    [MP__OP_MARK] = "MARK",
    [MP__OP_STOP] = "STOP",
    [MP__OP_POP] = "POP",
    [MP__OP_POP_MARK] = "POP_MARK",
    [MP__OP_DUP] = "DUP",
    [MP__OP_FLOAT] = "FLOAT",
    [MP__OP_INT] = "INT",
    [MP__OP_BININT] = "BININT",
    [MP__OP_BININT1] = "BININT1",
    [MP__OP_LONG] = "LONG",
    [MP__OP_BININT2] = "BININT2",
    [MP__OP_NONE] = "NONE",
    [MP__OP_PERSID] = "PERSID",
    [MP__OP_BINPERSID] = "BINPERSID",
    [MP__OP_REDUCE] = "REDUCE",
    [MP__OP_STRING] = "STRING",
    [MP__OP_BINSTRING] = "BINSTRING",
    [MP__OP_SHORT_BINSTRING] = "SHORT_BINSTRING",
    [MP__OP_UNICODE] = "UNICODE",
    [MP__OP_BINUNICODE] = "BINUNICODE",
    [MP__OP_APPEND] = "APPEND",
    [MP__OP_BUILD] = "BUILD",
    [MP__OP_GLOBAL] = "GLOBAL",
    [MP__OP_DICT] = "DICT",
    [MP__OP_EMPTY_DICT] = "EMPTY_DICT",
    [MP__OP_APPENDS] = "APPENDS",
    [MP__OP_GET] = "GET",
    [MP__OP_BINGET] = "BINGET",
    [MP__OP_INST] = "INST",
    [MP__OP_LONG_BINGET] = "LONG_BINGET",
    [MP__OP_LIST] = "LIST",
    [MP__OP_EMPTY_LIST] = "EMPTY_LIST",
    [MP__OP_OBJ] = "OBJ",
    [MP__OP_PUT] = "PUT",
    [MP__OP_BINPUT] = "BINPUT",
    [MP__OP_LONG_BINPUT] = "LONG_BINPUT",
    [MP__OP_SETITEM] = "SETITEM",
    [MP__OP_TUPLE] = "TUPLE",
    [MP__OP_EMPTY_TUPLE] = "EMPTY_TUPLE",
    [MP__OP_SETITEMS] = "SETITEMS",
    [MP__OP_BINFLOAT] = "BINFLOAT",
    [MP__OP_PROTO] = "PROTO",
    [MP__OP_NEWOBJ] = "NEWOBJ",
    [MP__OP_EXT1] = "EXT1",
    [MP__OP_EXT2] = "EXT2",
    [MP__OP_EXT4] = "EXT4",
    [MP__OP_TUPLE1] = "TUPLE1",
    [MP__OP_TUPLE2] = "TUPLE2",
    [MP__OP_TUPLE3] = "TUPLE3",
    [MP__OP_NEWTRUE] = "NEWTRUE",
    [MP__OP_NEWFALSE] = "NEWFALSE",
    [MP__OP_LONG1] = "LONG1",
    [MP__OP_LONG4] = "LONG4",
    [MP__OP_BINBYTES] = "BINBYTES",
    [MP__OP_SHORT_BINBYTES] = "SHORT_BINBYTES",
    [MP__OP_SHORT_BINUNICODE] = "SHORT_BINUNICODE",
    [MP__OP_BINUNICODE8] = "BINUNICODE8",
    [MP__OP_BINBYTES8] = "BINBYTES8",
    [MP__OP_EMPTY_SET] = "EMPTY_SET",
    [MP__OP_ADDITEMS] = "ADDITEMS",
    [MP__OP_FROZENSET] = "FROZENSET",
    [MP__OP_NEWOBJ_EX] = "NEWOBJ_EX",
    [MP__OP_STACK_GLOBAL] = "STACK_GLOBAL",
    [MP__OP_MEMOIZE] = "MEMOIZE",
    [MP__OP_FRAME] = "FRAME",
    [MP__OP_BYTEARRAY8] = "BYTEARRAY8",
    [MP__OP_NEXT_BUFFER] = "NEXT_BUFFER",
    [MP__OP_READONLY_BUFFER] = "READONLY_BUFFER",
};

/* Why an opcode the machine does not run is refused, in the words a user
 * needs: what they sent that the decoder does not take. */
static const char *unpickle_errmsg_refusal(int op)
{
    switch (op) {
    case MP__OP_GLOBAL:
    case MP__OP_STACK_GLOBAL:
    case MP__OP_INST:
    case MP__OP_EXT1:
    case MP__OP_EXT2:
    case MP__OP_EXT4:
        return "the decoder never imports";
    case MP__OP_REDUCE:
    case MP__OP_BUILD:
    case MP__OP_OBJ:
    case MP__OP_NEWOBJ:
    case MP__OP_NEWOBJ_EX:
        return "the decoder never calls";
    case MP__OP_PERSID:
    case MP__OP_BINPERSID:
        return "persistent ids are not supported";
    case MP__OP_STRING:
    case MP__OP_BINSTRING:
    case MP__OP_SHORT_BINSTRING:
        return "Python 2 str is not a supported value";
    case MP__OP_NEXT_BUFFER:
    case MP__OP_READONLY_BUFFER:
        return "out-of-band buffers are not supported";
    default:
        return "not supported by this decoder";
    }
}

int mp__unpickle_errmsg(int rc, int why, int op, size_t off, size_t n)
{
    if (rc != MP_EPROTO)
        return rc; /* -ENOMEM, -EINVAL: the code says it all */
    const char *name = op >= 0 && op < 256 ? unpickle_errmsg_names[op] : NULL;
    if (op >= 0 && !name)
        return mp__err(rc, "byte 0x%02x is not a pickle opcode (offset %zu)", (unsigned)op, off);
    switch (why) {
    case MP__UNPICKLE_REFUSED:
        return mp__err(rc, "opcode 0x%02x %s refused: %s (offset %zu)", (unsigned)op, name,
                       unpickle_errmsg_refusal(op), off);
    case MP__UNPICKLE_IMPORTS:
        return mp__err(
            rc,
            "opcode 0x%02x %s refused: the decoder never imports (offset %zu; only "
            "builtins.bytearray, set, frozenset and the classes of docs/wire.md are known)",
            (unsigned)op, name, off);
    case MP__UNPICKLE_CALLS:
        if (!name) /* found when placing: a tuple REDUCE never consumed */
            return mp__err(rc, "pickle refused: a proxy class is only read as the func of "
                               "RebuildProxy, never as a value");
        return mp__err(rc, "opcode 0x%02x %s refused: the decoder never calls (offset %zu)",
                       (unsigned)op, name, off);
    case MP__UNPICKLE_TRUNCATED:
        return mp__err(rc,
                       "truncated pickle: opcode 0x%02x %s runs past the end (offset %zu of %zu)",
                       (unsigned)op, name, off, n);
    case MP__UNPICKLE_NO_STOP:
        return mp__err(rc, "truncated pickle: the data ends before STOP (offset %zu)", off);
    case MP__UNPICKLE_NOT_ONE:
        return mp__err(
            rc, "malformed pickle: STOP must leave one value and end the data (offset %zu)", off);
    case MP__UNPICKLE_UNHASHABLE:
        return mp__err(rc,
                       "TypeError: unhashable dict key or set item (opcode 0x%02x %s, offset %zu)",
                       (unsigned)op, name, off);
    case MP__UNPICKLE_MEMLIMIT: {
        size_t limit = SIZE_MAX;
        if (n <= (SIZE_MAX - MP__PICKLE_MEM_MIN) / MP__PICKLE_MEM_FACTOR)
            limit = MP__PICKLE_MEM_MIN + n * MP__PICKLE_MEM_FACTOR;
        return mp__err(rc,
                       "pickle refused: decoding it needs more than its memory limit of %zu bytes "
                       "(%zu + %u per input byte; opcode 0x%02x %s, offset %zu)",
                       limit, (size_t)MP__PICKLE_MEM_MIN, MP__PICKLE_MEM_FACTOR, (unsigned)op, name,
                       off);
    }
    case MP__UNPICKLE_DEPTH:
        return mp__err(rc, "pickle refused: the value nests deeper than the limit of %d levels",
                       (int)MP_OBJ_MAX_DEPTH);
    case MP__UNPICKLE_CYCLE:
        return mp__err(rc, "pickle refused: a value contains itself (cycles are not supported)");
    default:
        if (!name)
            return mp__err(rc, "pickle refused: over the decoder's work limit for %zu input bytes",
                           n);
        return mp__err(rc, "malformed pickle: opcode 0x%02x %s failed (offset %zu)", (unsigned)op,
                       name, off);
    }
}
