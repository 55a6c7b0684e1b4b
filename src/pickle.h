/*
 * pickle - a pure codec between mp_obj values and Python's pickle format.
 * No I/O; it allocates the result and its own working memory, both within
 * the budgets below. Private. Its users: conn.c (mp_conn_send/recv),
 * queue.c (the values a queue carries), pool.c (tasks and results),
 * manager.c (the client's requests and replies) and mgr_server.c (the
 * server's side of them); the fuzzer and the tests call it directly.
 *
 * docs/wire.md ("Objects: the pickle subset") specifies the bytes: the
 * protocol 4 opcodes written, everything read (what CPython 3 writes for
 * these types in protocols 0-5, bytearray included), and everything refused
 * with MP_EPROTO. In short, refused are: every opcode that imports or calls
 * code (so protocol 0-2 bytes, which CPython writes as a _codecs.encode call),
 * Python 2 strings, sets, out-of-band buffers, truncated or malformed input,
 * length fields beyond the input (before any allocation), non-UTF-8 text,
 * ints beyond int64, stack/MARK/memo misuse, nesting beyond MP_OBJ_MAX_DEPTH,
 * unhashable keys, self-containing values, bytes after STOP or values left
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

#include <mpipc/obj.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The protocol the encoder writes. */
#define MP__PICKLE_PROTOCOL 4

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
/* s must be valid UTF-8 (the caller checked it, or it came from a str). */
void mp__pickler_str(mp__pickler *w, const char *s, size_t len);
void mp__pickler_bytes(mp__pickler *w, const void *p, size_t len);
void mp__pickler_mark(mp__pickler *w);
/* The last n pieces become a tuple; for n > 3 they must follow a mark. */
void mp__pickler_tuple(mp__pickler *w, size_t n);
void mp__pickler_list_begin(mp__pickler *w);
void mp__pickler_list_end(mp__pickler *w);

#endif /* MPIPC_PICKLE_H */
