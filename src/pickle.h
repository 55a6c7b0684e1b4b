/*
 * pickle - a pure codec between mp_obj values and Python's pickle format.
 * No I/O; the only allocation is the result. Private: conn.c builds
 * mp_conn_send/recv on it, the fuzzer and tests call it directly.
 *
 * Writing: protocol 4 (PROTO 4, no FRAME, no memo), which every Python 3.4+
 * pickle.loads reads back as the equal object: None, True/False, int
 * (BININT1/BININT2/BININT, LONG1 beyond 32 bits), float (BINFLOAT, bit
 * exact), str (SHORT_BINUNICODE/BINUNICODE/BINUNICODE8), bytes
 * (SHORT_BINBYTES/BINBYTES/BINBYTES8), list (EMPTY_LIST + APPEND/APPENDS in
 * batches of 1000, as CPython), tuple (EMPTY_TUPLE, TUPLE1-3, MARK..TUPLE),
 * dict (EMPTY_DICT + SETITEM/SETITEMS), STOP.
 *
 * Reading: what CPython 3 writes for those types in protocols 0 to 5 (the
 * default, 4 since Python 3.8, is what multiprocessing sends):
 *   - PROTO (0..5), FRAME (its length must fit in what is left; frames are
 *     otherwise transparent, as in CPython's C unpickler), STOP;
 *   - NONE, NEWTRUE, NEWFALSE, INT (including protocol 0's I00/I01 bools),
 *     BININT, BININT1, BININT2, LONG, LONG1, LONG4 (any length, as long as
 *     the value fits in int64_t: out of range is refused, never wrapped),
 *     FLOAT, BINFLOAT;
 *   - UNICODE (raw-unicode-escape), SHORT_BINUNICODE, BINUNICODE,
 *     BINUNICODE8: strict UTF-8 only (Python may pickle lone surrogates with
 *     "surrogatepass"; they have no UTF-8 form and are refused);
 *   - SHORT_BINBYTES, BINBYTES, BINBYTES8, and BYTEARRAY8 (protocol 5's
 *     bytearray) as bytes. Protocols 3 and 4 write a bytearray as a call of
 *     builtins.bytearray on a bytes value; exactly that shape (GLOBAL or
 *     STACK_GLOBAL naming builtins.bytearray, then REDUCE with () or
 *     (bytes,)) is recognised and decoded as bytes. Nothing is imported or
 *     called; any other GLOBAL/STACK_GLOBAL/REDUCE is refused;
 *   - MARK, POP, POP_MARK, DUP, LIST, EMPTY_LIST, APPEND, APPENDS, TUPLE,
 *     TUPLE1-3, EMPTY_TUPLE, DICT, EMPTY_DICT, SETITEM, SETITEMS;
 *   - the memo: PUT, BINPUT, LONG_BINPUT, MEMOIZE, GET, BINGET, LONG_BINGET.
 *     A memo reference (Python's shared object) becomes an equal copy, since
 *     values are trees (obj.h).
 *
 * Refused with MP_EPROTO, never executed:
 *   - everything that imports or calls: GLOBAL, STACK_GLOBAL, REDUCE, BUILD,
 *     INST, OBJ, NEWOBJ, NEWOBJ_EX, EXT1/2/4, PERSID, BINPERSID (except the
 *     bytearray shape above). So are protocol 0-2 bytes, which CPython
 *     writes as a call of _codecs.encode: send bytes with protocol 3 or
 *     later (every Python 3's default);
 *   - Python 2 strings (STRING, BINSTRING, SHORT_BINSTRING), sets and
 *     frozensets (EMPTY_SET, ADDITEMS, FROZENSET), out-of-band buffers
 *     (NEXT_BUFFER, READONLY_BUFFER), unknown opcodes, PROTO above 5;
 *   - truncated input, a length field longer than the rest of the input
 *     (checked before anything is allocated), bad UTF-8, ints beyond int64,
 *     malformed text fields of protocol 0;
 *   - stack underflow, an opcode applied to the wrong type (APPEND to a
 *     dict), an odd number of items for SETITEMS/DICT, a GET of a memo key
 *     never PUT;
 *   - nesting deeper than MP_OBJ_MAX_DEPTH (1000) containers;
 *   - an unhashable dict key (a list or dict, or a tuple holding one);
 *   - a value that contains itself (a list memoized and then appended into
 *     itself through GET): Python builds such cycles, a tree cannot hold one;
 *   - stricter than Python, which ignores them: anything after STOP, and a
 *     STOP that leaves other values or an open MARK on the stack;
 *   - more than MP__PICKLE_BUDGET(n) bytes of extra work: copies made for
 *     memo references plus walks comparing equal keys. Python keeps one
 *     shared object where we copy, so a short pickle could otherwise expand
 *     exponentially ([x, x] nested 60 deep).
 */
#ifndef MPIPC_PICKLE_H
#define MPIPC_PICKLE_H

#include <mpipc/obj.h>

#include <stddef.h>

/* The protocol the encoder writes. */
#define MP__PICKLE_PROTOCOL 4

/* The extra work a pickle of n bytes may cost: max(64 MiB, 16 * n). */
#ifndef MP__PICKLE_BUDGET_MIN
#define MP__PICKLE_BUDGET_MIN ((size_t)64 << 20)
#endif
#define MP__PICKLE_BUDGET_FACTOR 16u

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

#endif /* MPIPC_PICKLE_H */
