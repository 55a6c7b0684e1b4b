/*
 * pickle - a pure codec between mp_obj values and Python's pickle format,
 * the private header of its family: pickle.c (the encoder: statics
 * pickle_), unpickle*.c (the decoder: its machine in unpickle.c, one file
 * per opcode family, sharing the private unpickle.h) and unpickle_text.c
 * (protocol 0's text fields, for the decoder). Built on objimpl.h.
 * No I/O; it allocates the result and its own working memory, both within
 * the budgets below. Private. Its users: conn/conn.c (mp_conn_send/recv),
 * queue/queue.c (the values a queue carries), pool/ (tasks and results),
 * the manager's client (mgr_call.c: requests and replies) and server
 * (mgr_server_*.c, mgr_type_*.c, mgr_worker.c: their side of them); the
 * fuzzers and the tests call it directly.
 *
 * docs/wire.md ("Objects: the pickle subset") specifies the bytes: the
 * protocol 4 opcodes written, everything read (what CPython 3 writes for
 * these types in protocols 0-5), and everything refused with MP_EPROTO.
 * The decoder resolves a fixed table of three names and builds those values
 * itself: builtins.bytearray, builtins.set and builtins.frozenset, each only
 * as the callable of a REDUCE with the one argument shape CPython writes;
 * and the CPython classes Python's managers send (obj_instance.c's list:
 * Token by NEWOBJ + BUILD, exceptions by REDUCE), as inert instances. In
 * short, refused are: every other opcode or name that imports or calls code
 * (so protocol 0-2 bytes, which CPython writes as a _codecs.encode call),
 * Python 2 strings, out-of-band buffers, truncated or malformed input,
 * length fields beyond the input (before any allocation), text that is not
 * UTF-8 (lone surrogates in their 3-byte form, as "surrogatepass" writes
 * them, are read), ints of more than 4300 decimal digits in protocol 0's
 * text (Python's own int(text) limit; LONG1/LONG4 ints of any size are read,
 * within the memory budget), stack/MARK/memo misuse, nesting beyond
 * MP_OBJ_MAX_DEPTH, unhashable keys and set items, self-containing values,
 * bytes after STOP or values left
 * on the stack, pickles whose memo references would expand beyond the work
 * budget below, and pickles that would make the decoder allocate beyond its
 * memory budget below.
 *
 * Decoding never recurses on the input's structure except to a depth bounded
 * by MP_OBJ_MAX_DEPTH, and its time and memory are linear in the input plus
 * the budgets.
 */
#ifndef MPIPC_PICKLE_H
#define MPIPC_PICKLE_H

#include "codec/objimpl.h"

#include <mpipc/obj.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* The protocol the encoder writes. */
#define MP__PICKLE_PROTOCOL 4

/* The opcodes (Lib/pickle.py), named once: the codec's files and the fast
 * readers below use these names, and nothing else writes an opcode's value. */
enum mp__pickle_op {
    MP__OP_MARK = '(',
    MP__OP_STOP = '.',
    MP__OP_POP = '0',
    MP__OP_POP_MARK = '1',
    MP__OP_DUP = '2',
    MP__OP_FLOAT = 'F',
    MP__OP_INT = 'I',
    MP__OP_BININT = 'J',
    MP__OP_BININT1 = 'K',
    MP__OP_LONG = 'L',
    MP__OP_BININT2 = 'M',
    MP__OP_NONE = 'N',
    MP__OP_PERSID = 'P',
    MP__OP_BINPERSID = 'Q',
    MP__OP_REDUCE = 'R',
    MP__OP_STRING = 'S',
    MP__OP_BINSTRING = 'T',
    MP__OP_SHORT_BINSTRING = 'U',
    MP__OP_UNICODE = 'V',
    MP__OP_BINUNICODE = 'X',
    MP__OP_APPEND = 'a',
    MP__OP_BUILD = 'b',
    MP__OP_GLOBAL = 'c',
    MP__OP_DICT = 'd',
    MP__OP_EMPTY_DICT = '}',
    MP__OP_APPENDS = 'e',
    MP__OP_GET = 'g',
    MP__OP_BINGET = 'h',
    MP__OP_INST = 'i',
    MP__OP_LONG_BINGET = 'j',
    MP__OP_LIST = 'l',
    MP__OP_EMPTY_LIST = ']',
    MP__OP_OBJ = 'o',
    MP__OP_PUT = 'p',
    MP__OP_BINPUT = 'q',
    MP__OP_LONG_BINPUT = 'r',
    MP__OP_SETITEM = 's',
    MP__OP_TUPLE = 't',
    MP__OP_EMPTY_TUPLE = ')',
    MP__OP_SETITEMS = 'u',
    MP__OP_BINFLOAT = 'G',
    MP__OP_PROTO = 0x80,
    MP__OP_NEWOBJ = 0x81,
    MP__OP_EXT1 = 0x82,
    MP__OP_EXT2 = 0x83,
    MP__OP_EXT4 = 0x84,
    MP__OP_TUPLE1 = 0x85,
    MP__OP_TUPLE2 = 0x86,
    MP__OP_TUPLE3 = 0x87,
    MP__OP_NEWTRUE = 0x88,
    MP__OP_NEWFALSE = 0x89,
    MP__OP_LONG1 = 0x8a,
    MP__OP_LONG4 = 0x8b,
    MP__OP_BINBYTES = 'B',
    MP__OP_SHORT_BINBYTES = 'C',
    MP__OP_SHORT_BINUNICODE = 0x8c,
    MP__OP_BINUNICODE8 = 0x8d,
    MP__OP_BINBYTES8 = 0x8e,
    MP__OP_EMPTY_SET = 0x8f,
    MP__OP_ADDITEMS = 0x90,
    MP__OP_FROZENSET = 0x91,
    MP__OP_NEWOBJ_EX = 0x92,
    MP__OP_STACK_GLOBAL = 0x93,
    MP__OP_MEMOIZE = 0x94,
    MP__OP_FRAME = 0x95,
    MP__OP_BYTEARRAY8 = 0x96,
    MP__OP_NEXT_BUFFER = 0x97,
    MP__OP_READONLY_BUFFER = 0x98,
};

/*
 * Fast readers: one value read in place, for the paths that recognise what
 * CPython's pickler writes for small requests and replies (the manager's)
 * without building values. Each reads the value that starts at p[0], with
 * avail bytes there, and returns how many bytes it took, or 0 when they are
 * not such a value; the caller then hands the whole pickle to
 * mp__pickle_loads, which makes every decision, errors included. So a fast
 * path built on these can only be faster than the decoder, never different.
 */

/* An int as CPython writes one of int64's range: BININT1, BININT2, BININT,
 * or LONG1 of 1 to 8 bytes (little-endian two's complement). */
static inline size_t mp__pickle_read_int(const unsigned char *p, size_t avail, int64_t *v)
{
    if (avail == 0)
        return 0;
    switch (p[0]) {
    case MP__OP_BININT1:
        if (avail < 2)
            return 0;
        *v = p[1];
        return 2;
    case MP__OP_BININT2:
        if (avail < 3)
            return 0;
        *v = p[1] | (int64_t)p[2] << 8;
        return 3;
    case MP__OP_BININT:
        if (avail < 5)
            return 0;
        *v = (int32_t)((uint32_t)p[1] | (uint32_t)p[2] << 8 | (uint32_t)p[3] << 16 |
                       (uint32_t)p[4] << 24);
        return 5;
    case MP__OP_LONG1: {
        if (avail < 2 || p[1] < 1 || p[1] > 8 || avail - 2 < p[1])
            return 0;
        size_t len = p[1];
        uint64_t u = 0;
        for (size_t k = 0; k < len; k++)
            u |= (uint64_t)p[2 + k] << (8 * k);
        if (len < 8 && (p[1 + len] & 0x80))
            u |= ~UINT64_C(0) << (8 * len); /* sign-extend */
        *v = (int64_t)u;
        return 2 + len;
    }
    default:
        return 0;
    }
}

/* What mp__pickle_read_scalar found. */
enum mp__pickle_kind {
    MP__PK_NONE = 1,
    MP__PK_BOOL,  /* in .i: 0 or 1 */
    MP__PK_INT,   /* in .i */
    MP__PK_FLOAT, /* in .f */
    MP__PK_STR,   /* .s, .len: valid UTF-8, in the input */
    MP__PK_BYTES, /* .s, .len: in the input */
};
struct mp__pickle_scalar {
    int kind;
    int64_t i;
    double f;
    const unsigned char *s;
    size_t len;
};

/* A scalar: None, NEWTRUE/NEWFALSE, an int (mp__pickle_read_int), a
 * BINFLOAT, a SHORT_BINUNICODE of valid UTF-8 or a SHORT_BINBYTES. */
static inline size_t mp__pickle_read_scalar(const unsigned char *p, size_t avail,
                                            struct mp__pickle_scalar *sc)
{
    if (avail == 0)
        return 0;
    switch (p[0]) {
    case MP__OP_NONE:
        sc->kind = MP__PK_NONE;
        return 1;
    case MP__OP_NEWTRUE:
    case MP__OP_NEWFALSE:
        sc->kind = MP__PK_BOOL;
        sc->i = p[0] == MP__OP_NEWTRUE;
        return 1;
    case MP__OP_BINFLOAT: { /* big-endian IEEE 754 */
        if (avail < 9)
            return 0;
        uint64_t bits = 0;
        for (int k = 0; k < 8; k++)
            bits = bits << 8 | p[1 + k];
        memcpy(&sc->f, &bits, sizeof sc->f);
        sc->kind = MP__PK_FLOAT;
        return 9;
    }
    case MP__OP_SHORT_BINUNICODE:
    case MP__OP_SHORT_BINBYTES:
        if (avail < 2 || avail - 2 < p[1])
            return 0;
        if (p[0] == MP__OP_SHORT_BINUNICODE && !mp__utf8_valid(p + 2, p[1]))
            return 0;
        sc->kind = p[0] == MP__OP_SHORT_BINUNICODE ? MP__PK_STR : MP__PK_BYTES;
        sc->s = p + 2;
        sc->len = p[1];
        return 2 + (size_t)p[1];
    default:
        sc->kind = MP__PK_INT;
        return mp__pickle_read_int(p, avail, &sc->i);
    }
}

/* The extra work a pickle of n bytes may cost, in bytes: max(64 MiB, 16 * n).
 * It pays for the copies memo references expand into (Python shares one
 * object where a tree holds copies) and for walks comparing equal dict keys
 * that are still shared graphs during decoding. Without it a short pickle
 * ([x, x] nested 60 deep) would expand exponentially. */
#ifndef MP__PICKLE_BUDGET_MIN
#define MP__PICKLE_BUDGET_MIN ((size_t)64 << 20)
#endif
#define MP__PICKLE_BUDGET_FACTOR 16u

/* The memory decoding a pickle of n bytes may allocate before the result is
 * placed (nodes, text, item arrays, dict blocks, the machine's stack, marks
 * and memo): MP__PICKLE_MEM_MIN + MP__PICKLE_MEM_FACTOR * n bytes, checked
 * before each allocation. The copies that placing makes are charged to the
 * work budget above instead, so the decoder never holds more than
 * (MEM_FACTOR + BUDGET_FACTOR) * n + MEM_MIN + BUDGET_MIN bytes, plus the
 * allocator's own overhead (docs/wire.md). The factor is above what any
 * pickle of these types needs: the costliest is a list of empty containers
 * built with LIST or TUPLE from a MARK, 72 bytes per input byte (a 48-byte
 * node, its slot in the list, its slot on the stack at up to twice its
 * size). None, bools and ints -5..256 are shared nodes and cost only their
 * slot. */
#ifndef MP__PICKLE_MEM_MIN
#define MP__PICKLE_MEM_MIN ((size_t)1 << 20)
#endif
#define MP__PICKLE_MEM_FACTOR 80u

/*
 * mp__pickle_dumps - pickle o (protocol 4).
 *
 * Returns 0 with *out and *len set; -EINVAL for NULL arguments; -ENOMEM.
 * Ownership: the caller frees *out with free(); o is unchanged. On failure
 * *out is NULL.
 */
int mp__pickle_dumps(const mp_obj *o, unsigned char **out, size_t *len);

/*
 * mp__pickle_loads - unpickle the n bytes at p (one whole pickle).
 *
 * Returns 0 with *out set to a new root value; MP_EPROTO for anything the
 * comment above refuses; -EINVAL for NULL arguments; -ENOMEM. On failure
 * *out is NULL and nothing leaks.
 * Ownership: the caller frees *out with mp_obj_free().
 */
int mp__pickle_loads(const unsigned char *p, size_t n, mp_obj **out);

/* Why mp__pickle_loads refused a pickle, for the message it records
 * (error.h, mp_errmsg). MALFORMED is everything not named. */
enum mp__unpickle_why {
    MP__UNPICKLE_MALFORMED = 0,
    MP__UNPICKLE_TRUNCATED,  /* an opcode's argument runs past the end */
    MP__UNPICKLE_NO_STOP,    /* the data ends before STOP */
    MP__UNPICKLE_NOT_ONE,    /* STOP leaves other than one value, or data follows */
    MP__UNPICKLE_REFUSED,    /* an opcode the decoder never runs */
    MP__UNPICKLE_IMPORTS,    /* GLOBAL / STACK_GLOBAL outside the name table */
    MP__UNPICKLE_CALLS,      /* REDUCE of anything but a name-table entry */
    MP__UNPICKLE_UNHASHABLE, /* a dict key Python cannot hash */
    MP__UNPICKLE_MEMLIMIT,   /* over the memory budget (MP__PICKLE_MEM_*) */
    MP__UNPICKLE_DEPTH,      /* nested deeper than MP_OBJ_MAX_DEPTH */
    MP__UNPICKLE_CYCLE,      /* a value that contains itself */
};

/* Record the calling thread's message for a failed mp__pickle_loads of n
 * bytes (unpickle_errmsg.c): rc its status, why an mp__unpickle_why, op the
 * opcode that failed (-1: none, the placing after STOP failed) and off its
 * offset. Returns rc. -ENOMEM and -EINVAL record nothing. */
int mp__unpickle_errmsg(int rc, int why, int op, size_t off, size_t n);

/*
 * A pickle built piece by piece, for messages made of values the caller only
 * borrows (the manager's requests and replies): no value is copied into a
 * container just to be pickled. The pieces are written at the end of p, so
 * a caller may reserve room in front (a frame header) and reuse one buffer
 * for many messages. The encoder writes no memo and no FRAME, so the
 * pickle of a value is the same bytes wherever it appears in a message.
 *
 *     mp__pickler w = {buf, 0, cap, 0};     // or {NULL, 0, 0, 0}
 *     mp__pickler_start(&w);                // PROTO 4
 *     mp__pickler_str(&w, "#RETURN", 7);
 *     mp__pickler_obj(&w, value);
 *     mp__pickler_tuple(&w, 2);            // the last 2 pieces as a tuple
 *     mp__pickler_stop(&w);                 // STOP
 *     if (w.err) ...                        // -ENOMEM or -EINVAL, sticky
 *
 * A tuple of more than 3 pieces needs mp__pickler_mark() before its first
 * piece; mp__pickler_list_begin()/_end() bracket a list of any length.
 * Ownership: w.p grows with realloc(); the caller frees it.
 */
typedef struct mp__pickler {
    unsigned char *p;
    size_t len, cap;
    int err; /* 0, or the first failure; every later call does nothing */
} mp__pickler;

/* Make room for n more bytes at p + len (the caller writes them and adds n
 * to len). Returns 0 or the sticky error. */
int mp__pickler_reserve(mp__pickler *w, size_t n);
void mp__pickler_start(mp__pickler *w);
void mp__pickler_stop(mp__pickler *w);
void mp__pickler_obj(mp__pickler *w, const mp_obj *o);
void mp__pickler_none(mp__pickler *w);
void mp__pickler_bool(mp__pickler *w, bool v);
void mp__pickler_int(mp__pickler *w, int64_t v);
void mp__pickler_float(mp__pickler *w, double v);
/* s must be a str's UTF-8 (mp__str_valid: the caller checked it, or it came
 * from a str). */
void mp__pickler_str(mp__pickler *w, const char *s, size_t len);
void mp__pickler_bytes(mp__pickler *w, const void *p, size_t len);
void mp__pickler_mark(mp__pickler *w);
/* The last n pieces become a tuple; for n > 3 they must follow a mark. */
void mp__pickler_tuple(mp__pickler *w, size_t n);
void mp__pickler_list_begin(mp__pickler *w);
void mp__pickler_list_end(mp__pickler *w);

/* ---- The decoder's text fields (unpickle_text.c, for unpickle.c) ------- */

/* An optional sign and decimal digits within int64, as Python writes an int
 * in INT, LONG (its "L" taken off first), PUT and GET: 0, or MP_EPROTO for
 * any other spelling or a value beyond int64. */
int mp__pickle_parse_int(const unsigned char *s, size_t n, int64_t *out);

/* Python's float(text) for the forms repr() writes (FLOAT): 0; MP_EPROTO;
 * -ENOMEM. */
int mp__pickle_parse_float(const unsigned char *s, size_t n, double *out);

/* Protocol 0's raw-unicode-escape (latin-1 bytes, with \uXXXX and
 * \UXXXXXXXX escapes) as UTF-8 at out, which has room for 2 * n bytes:
 * 0 with *len set, or MP_EPROTO for a bad escape. A surrogate escape
 * becomes its 3-byte form, as the str nodes hold it (objimpl.h). */
int mp__pickle_raw_unicode(const unsigned char *s, size_t n, unsigned char *out, size_t *len);

#endif /* MPIPC_PICKLE_H */
