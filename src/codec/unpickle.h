/*
 * unpickle.h - what the decoder's files share (unpickle.c and its opcode
 * families unpickle_scalar.c, _container.c, _memo.c, _object.c): the
 * machine's state, and the small input and stack helpers every opcode uses,
 * inline here so each family runs them as fast as the machine itself did.
 * Private to src/codec/; the decoder's design is at the top of unpickle.c.
 */
#ifndef MPIPC_CODEC_UNPICKLE_H
#define MPIPC_CODEC_UNPICKLE_H

#include "codec/objimpl.h"
#include "codec/pickle.h"
#include "core/internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* The globals the decoder knows (its whole table, docs/wire.md):
 * builtins.bytearray, builtins.set and builtins.frozenset, pushed by GLOBAL
 * or STACK_GLOBAL as a node of one of these internal types and consumed
 * only by REDUCE, which builds the value itself. They never reach a
 * container. */
#define TYPE_BYTEARRAY_CALLABLE 0x40
#define TYPE_SET_CALLABLE       0x41
#define TYPE_FROZENSET_CALLABLE 0x42
/* A listed CPython class (u.i: its index, objimpl.h), consumed by REDUCE
 * (exceptions) or NEWOBJ (Token); and the Token NEWOBJ made, consumed by
 * BUILD, which gives it its state and makes it an MP_TYPE_INSTANCE. */
#define TYPE_CLASS         0x43
#define TYPE_TOKEN_UNBUILT 0x44
/* A RebuildProxy's func (u.i: its index, obj_instance.c): it may wait in a
 * tuple, the args REDUCE of RebuildProxy consumes; anywhere else it is
 * refused (a list, a dict, a set: at once; a tuple not consumed: when
 * placing). */
#define TYPE_PROXY_FUNC 0x45

/* A growable array of node pointers. */
struct vec {
    mp_obj **v;
    size_t len, cap;
};

/* Grow a and push o (unpickle.c): the rare path of unpickle_vec_push. */
int mp__unpickle_vec_grow(struct vec *a, mp_obj *o, size_t *mem);

/* Push o on a. When a is full it grows, and *mem (NULL: not charged) pays
 * for the growth before it happens: MP_EPROTO when it cannot. */
static inline int unpickle_vec_push(struct vec *a, mp_obj *o, size_t *mem)
{
    if (a->len == a->cap)
        return mp__unpickle_vec_grow(a, o, mem);
    a->v[a->len++] = o;
    return 0;
}

struct memo_slot {
    uint64_t key;
    mp_obj *val; /* NULL: empty slot */
};

/*
 * The memo: keys below dense_cap live in a plain array (what CPython's
 * pickler writes: 0, 1, 2... in order, by MEMOIZE or BINPUT), other keys in
 * a hash table. An entry in the array shadows one for the same key left in
 * the table from before the array grew over it.
 */
struct unpickler {
    const unsigned char *p;
    size_t n, pos;
    struct vec stack;
    size_t *marks; /* stack lengths at each MARK */
    size_t nmarks, mcap;
    mp_obj **dense; /* memo keys < dense_cap; NULL: not put */
    size_t dense_cap;
    struct memo_slot *memo; /* other keys: open addressing, power-of-two cap */
    size_t memo_cap, memo_used;
    size_t memo_count; /* distinct keys put: MEMOIZE's next key */
    mp_obj *arena;     /* every node made in phase 1, linked by parent */
    struct vec copies; /* copies made while placing (roots of trees) */
    size_t budget;     /* bytes of extra work left: copies, key walks */
    size_t mem;        /* bytes phase 1 may still allocate */
    int why;           /* MP__UNPICKLE_*: what refused it, for the message */
    int op;            /* the opcode being run */
    bool stopped;      /* STOP was run */
};

/* MP_EPROTO, noting why for the caller's message (unpickle_errmsg.c). */
static inline int unpickle_fail(struct unpickler *u, int why)
{
    u->why = why;
    return MP_EPROTO;
}

/* Pay for bytes about to be allocated: 0, or MP_EPROTO beyond the budget. */
static inline int unpickle_charge(struct unpickler *u, size_t bytes)
{
    if (u->mem < bytes)
        return unpickle_fail(u, MP__UNPICKLE_MEMLIMIT);
    u->mem -= bytes;
    return 0;
}

/* ---- Input -------------------------------------------------------------- */

static inline int unpickle_need(struct unpickler *u, size_t k)
{
    return u->n - u->pos >= k ? 0 : unpickle_fail(u, MP__UNPICKLE_TRUNCATED);
}

static inline uint64_t unpickle_le(const unsigned char *p, int k)
{
    uint64_t v = 0;
    for (int i = k - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* Read a k-byte little-endian field. */
static inline int unpickle_read_le(struct unpickler *u, int k, uint64_t *v)
{
    int rc = unpickle_need(u, (size_t)k);
    if (rc < 0)
        return rc;
    *v = unpickle_le(u->p + u->pos, k);
    u->pos += (size_t)k;
    return 0;
}

/* Read a k-byte little-endian length and check that that many bytes follow,
 * before anyone allocates for them. */
static inline int unpickle_read_len(struct unpickler *u, int k, size_t *len)
{
    uint64_t v;
    int rc = unpickle_read_le(u, k, &v);
    if (rc < 0)
        return rc;
    if (v > (uint64_t)(u->n - u->pos))
        return unpickle_fail(u, MP__UNPICKLE_TRUNCATED);
    *len = (size_t)v;
    return 0;
}

/* The size of the little-endian field that follows op: a length (str,
 * bytes, LONG1/LONG4, FRAME) or a memo key (BINPUT, BINGET and their LONG_
 * forms). */
static inline int unpickle_width(int op)
{
    switch (op) {
    case MP__OP_SHORT_BINUNICODE:
    case MP__OP_SHORT_BINBYTES:
    case MP__OP_LONG1:
    case MP__OP_BINPUT:
    case MP__OP_BINGET:
        return 1;
    case MP__OP_BINUNICODE8:
    case MP__OP_BINBYTES8:
    case MP__OP_BYTEARRAY8:
    case MP__OP_FRAME:
        return 8;
    default: /* BINUNICODE, BINBYTES, LONG4, LONG_BINPUT, LONG_BINGET */
        return 4;
    }
}

/* A protocol 0 text field: the bytes up to the next newline (not included). */
static inline int unpickle_read_line(struct unpickler *u, const unsigned char **line, size_t *len)
{
    const unsigned char *start = u->p + u->pos;
    const unsigned char *nl = memchr(start, '\n', u->n - u->pos);
    if (!nl)
        return unpickle_fail(u, MP__UNPICKLE_TRUNCATED);
    *line = start;
    *len = (size_t)(nl - start);
    u->pos += *len + 1;
    return 0;
}
/* ---- The stack, marks and memo ----------------------------------------- */

/* A node joins the arena, which owns it until it is placed. */
static inline mp_obj *unpickle_arena_add(struct unpickler *u, mp_obj *o)
{
    if (o) {
        o->parent = u->arena;
        u->arena = o;
    }
    return o;
}

/* New node: *out, or MP_EPROTO (budget) / -ENOMEM. */
static inline int unpickle_new_node(struct unpickler *u, int type, mp_obj **out)
{
    int rc = unpickle_charge(u, sizeof(mp_obj));
    if (rc < 0)
        return rc;
    *out = unpickle_arena_add(u, mp__obj_alloc(type));
    return *out ? 0 : -ENOMEM;
}

static inline int unpickle_new_strbytes(struct unpickler *u, int type, const void *p, size_t len,
                                        mp_obj **out)
{
    /* len is at most the input's length: no overflow */
    int rc = unpickle_charge(u, sizeof(mp_obj) + len + 1);
    if (rc < 0)
        return rc;
    *out = unpickle_arena_add(u, mp__obj_strbytes(type, p, len));
    return *out ? 0 : -ENOMEM;
}

/* Items above the last MARK only: what Python calls the current stack. */
static inline size_t unpickle_fence(const struct unpickler *u)
{
    size_t f = u->nmarks ? u->marks[u->nmarks - 1] : 0;
    MP__ASSERT(f <= u->stack.len); /* nothing pops below the last MARK */
    return f;
}

static inline int unpickle_push(struct unpickler *u, mp_obj *o)
{
    return unpickle_vec_push(&u->stack, o, &u->mem);
}

/* Make an empty container (or the bytearray callable) and push it. */
static inline int unpickle_push_new(struct unpickler *u, int type)
{
    mp_obj *o;
    int rc = unpickle_new_node(u, type, &o);
    if (rc < 0)
        return rc;
    if (type == MP_TYPE_LIST || type == MP_TYPE_TUPLE || type == MP_TYPE_DICT ||
        type == MP_TYPE_SET)
        o->height = 1;
    return unpickle_push(u, o);
}

static inline int unpickle_push_strbytes(struct unpickler *u, int type, const void *p, size_t len)
{
    mp_obj *o;
    int rc = unpickle_new_strbytes(u, type, p, len, &o);
    return rc < 0 ? rc : unpickle_push(u, o);
}

static inline int unpickle_pop_any(struct unpickler *u, mp_obj **o)
{
    if (u->stack.len <= unpickle_fence(u))
        return MP_EPROTO; /* underflow */
    *o = u->stack.v[--u->stack.len];
    return 0;
}

/* A value that may go into a container (not one of the known callables). */
static inline int unpickle_check_value(const mp_obj *o)
{
    return o->type >= TYPE_BYTEARRAY_CALLABLE ? MP_EPROTO : 0;
}

static inline int unpickle_pop_value(struct unpickler *u, mp_obj **o)
{
    int rc = unpickle_pop_any(u, o);
    return rc < 0 ? rc : unpickle_check_value(*o);
}

static inline int unpickle_top(struct unpickler *u, mp_obj **o)
{
    if (u->stack.len <= unpickle_fence(u))
        return MP_EPROTO;
    *o = u->stack.v[u->stack.len - 1];
    return 0;
}
/* Close the last MARK: *first is where its items start on the stack. */
static inline int unpickle_pop_mark(struct unpickler *u, size_t *first)
{
    if (!u->nmarks)
        return MP_EPROTO; /* no MARK to close */
    *first = u->marks[--u->nmarks];
    MP__ASSERT(*first <= u->stack.len && unpickle_fence(u) <= *first);
    return 0;
}

/* A container's provisional height grows with what it takes in (see
 * unpickle_container.c): MP__UNPICKLE_DEPTH beyond MP_OBJ_MAX_DEPTH. */
static inline int unpickle_adopt_height(struct unpickler *u, mp_obj *c, const mp_obj *item)
{
    if ((unsigned)item->height + 1 > MP_OBJ_MAX_DEPTH)
        return unpickle_fail(u, MP__UNPICKLE_DEPTH);
    if (item->height + 1 > c->height)
        c->height = (uint16_t)(item->height + 1);
    return 0;
}

/* ---- The opcode handlers -------------------------------------------------
 *
 * unpickle.c's dispatch table maps each opcode the decoder runs to its
 * handler, as pickle.py's Unpickler.dispatch does: the handler reads the
 * opcode's argument and runs it, and returns 0, MP_EPROTO (u->why may say
 * why) or -ENOMEM. A handler that serves several opcodes finds which in
 * u->op. The handlers of a family live in its file.
 */
typedef int mp__unpickle_handler(struct unpickler *u);

/* unpickle_scalar.c: None, bools, ints, floats, str, bytes, bytearray. */
mp__unpickle_handler mp__unpickle_op_none, mp__unpickle_op_bool, mp__unpickle_op_int,
    mp__unpickle_op_long, mp__unpickle_op_binint, mp__unpickle_op_binint1, mp__unpickle_op_binint2,
    mp__unpickle_op_long_bin, mp__unpickle_op_float, mp__unpickle_op_binfloat,
    mp__unpickle_op_binunicode, mp__unpickle_op_unicode, mp__unpickle_op_binbytes;
/* unpickle_container.c: lists, tuples, dicts, sets, frozensets. */
mp__unpickle_handler mp__unpickle_op_empty, mp__unpickle_op_additems, mp__unpickle_op_frozenset,
    mp__unpickle_op_list, mp__unpickle_op_tuple_n, mp__unpickle_op_dict, mp__unpickle_op_append,
    mp__unpickle_op_appends, mp__unpickle_op_setitem, mp__unpickle_op_setitems;
/* unpickle_memo.c: the memo. */
mp__unpickle_handler mp__unpickle_op_put, mp__unpickle_op_memoize, mp__unpickle_op_get;
/* unpickle_object.c: the names, REDUCE, NEWOBJ, BUILD. */
mp__unpickle_handler mp__unpickle_op_global, mp__unpickle_op_stack_global, mp__unpickle_op_reduce,
    mp__unpickle_op_newobj, mp__unpickle_op_build;

/* Room for k more items in a list or tuple (or an instance's args), paid
 * for first (unpickle_container.c). */
int mp__unpickle_seq_room(struct unpickler *u, mp_obj *seq, size_t k);
/* A new set or frozenset (type) holding the n items at items: *out
 * (unpickle_container.c; REDUCE of set() and frozenset() makes one too). */
int mp__unpickle_new_set(struct unpickler *u, int type, mp_obj *const *items, size_t n,
                         mp_obj **out);

#endif
