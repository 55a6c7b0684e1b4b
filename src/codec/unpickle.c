/*
 * unpickle - the decoder, mp__pickle_loads: the pickle machine and the
 * placing of its result. pickle.h says what is read and refused; the
 * encoder is pickle.c, protocol 0's text fields unpickle_text.c. Statics
 * here start with unpickle_.
 *
 * Names. The decoder never imports and never calls. GLOBAL / STACK_GLOBAL
 * resolve exactly three names, builtins.bytearray, builtins.set and
 * builtins.frozenset (module __builtin__ too, Python 2's name), to markers
 * that only REDUCE accepts, with bytearray's () or (bytes,) and the sets'
 * (list,) argument; REDUCE then builds the value as any opcode builds one.
 * They also resolve the CPython classes of obj_instance.c's list (Python's
 * manager Token, RemoteError, a few exceptions, queue.Empty and Full) to a
 * class marker: REDUCE of an exception's marker with a tuple, and NEWOBJ of
 * Token's marker with () followed by BUILD with a 3-tuple state, make an
 * inert MP_TYPE_INSTANCE holding the args; nothing is called. A proxy
 * inside a value is REDUCE of RebuildProxy's marker with (func, token,
 * serializer, kwds), func a marker of AutoProxy or a SyncManager proxy
 * class (the one place a marker may sit in a tuple), read as an inert
 * instance too. No other name is resolved (docs/wire.md has the table).
 *
 * Decoding happens in two phases.
 *
 * 1. Run the pickle machine. Every node it creates goes into an arena (a
 *    list of all nodes, threaded through the nodes' own parent fields, which
 *    mean nothing yet), and containers point at nodes with no regard for
 *    ownership: DUP and memo GETs make several slots point at one node, and
 *    a hostile pickle can even build cycles. Nothing is freed in this phase,
 *    so no node can be freed twice or while still referenced. None, True,
 *    False and small ints are the immortal shared nodes (objimpl.h): no
 *    allocation, and not in the arena.
 * 2. Place the result: a depth-first walk from the value STOP returns. The
 *    first slot that reaches a node adopts it; a later slot that reaches an
 *    already placed node gets a copy (charged to the work budget); reaching
 *    a node that is still on the walk's path means a cycle, which is
 *    refused. The walk also enforces the nesting limit and sets heights.
 *    Nodes of the arena that were not placed (popped, replaced, or only in
 *    the memo) are then freed one by one, without following their pointers,
 *    and a last walk sets every parent, so what comes out is a tree obeying
 *    every invariant of obj.h.
 * On any error, every arena node is freed the same way, plus the copies.
 *
 * Memory. Phase 1 charges every byte it allocates - nodes, text, item
 * arrays, dict blocks, the stack, the marks, the memo - to a budget of
 * MP__PICKLE_MEM_MIN + MP__PICKLE_MEM_FACTOR bytes per input byte, checked
 * before each allocation, and refuses the pickle (MP_EPROTO) beyond it. The
 * copies of phase 2 are charged to the work budget. So memory is linear in
 * the input whatever the opcodes (docs/wire.md states the bound).
 */
#include "codec/objimpl.h"
#include "codec/pickle.h"
#include "core/internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define HIGHEST_PROTOCOL 5

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

/* Grow a to hold one more pointer. *mem (NULL: not charged) pays for the
 * growth before it happens: MP_EPROTO when it cannot. */
static int unpickle_vec_push(struct vec *a, mp_obj *o, size_t *mem)
{
    if (a->len == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 16;
        if (cap < a->cap || cap > SIZE_MAX / sizeof(mp_obj *))
            return -ENOMEM;
        size_t grow = (cap - a->cap) * sizeof(mp_obj *);
        if (mem) {
            if (*mem < grow)
                return MP_EPROTO;
            *mem -= grow;
        }
        mp_obj **v = realloc(a->v, cap * sizeof *v);
        if (!v)
            return -ENOMEM;
        a->v = v;
        a->cap = cap;
    }
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
};

/* MP_EPROTO, noting why for the caller's message (unpickle_errmsg.c). */
static int unpickle_fail(struct unpickler *u, int why)
{
    u->why = why;
    return MP_EPROTO;
}

/* Pay for bytes about to be allocated: 0, or MP_EPROTO beyond the budget. */
static int unpickle_charge(struct unpickler *u, size_t bytes)
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
static int unpickle_read_line(struct unpickler *u, const unsigned char **line, size_t *len)
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
static mp_obj *unpickle_arena_add(struct unpickler *u, mp_obj *o)
{
    if (o) {
        o->parent = u->arena;
        u->arena = o;
    }
    return o;
}

/* New node: *out, or MP_EPROTO (budget) / -ENOMEM. */
static int unpickle_new_node(struct unpickler *u, int type, mp_obj **out)
{
    int rc = unpickle_charge(u, sizeof(mp_obj));
    if (rc < 0)
        return rc;
    *out = unpickle_arena_add(u, mp__obj_alloc(type));
    return *out ? 0 : -ENOMEM;
}

static int unpickle_new_strbytes(struct unpickler *u, int type, const void *p, size_t len,
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
static size_t unpickle_fence(const struct unpickler *u)
{
    size_t f = u->nmarks ? u->marks[u->nmarks - 1] : 0;
    MP__ASSERT(f <= u->stack.len); /* nothing pops below the last MARK */
    return f;
}

static int unpickle_push(struct unpickler *u, mp_obj *o)
{
    return unpickle_vec_push(&u->stack, o, &u->mem);
}

/* Make an empty container (or the bytearray callable) and push it. */
static int unpickle_push_new(struct unpickler *u, int type)
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

static int unpickle_push_strbytes(struct unpickler *u, int type, const void *p, size_t len)
{
    mp_obj *o;
    int rc = unpickle_new_strbytes(u, type, p, len, &o);
    return rc < 0 ? rc : unpickle_push(u, o);
}

static int unpickle_pop_any(struct unpickler *u, mp_obj **o)
{
    if (u->stack.len <= unpickle_fence(u))
        return MP_EPROTO; /* underflow */
    *o = u->stack.v[--u->stack.len];
    return 0;
}

/* A value that may go into a container (not one of the known callables). */
static int unpickle_check_value(const mp_obj *o)
{
    return o->type >= TYPE_BYTEARRAY_CALLABLE ? MP_EPROTO : 0;
}

static int unpickle_pop_value(struct unpickler *u, mp_obj **o)
{
    int rc = unpickle_pop_any(u, o);
    return rc < 0 ? rc : unpickle_check_value(*o);
}

static int unpickle_top(struct unpickler *u, mp_obj **o)
{
    if (u->stack.len <= unpickle_fence(u))
        return MP_EPROTO;
    *o = u->stack.v[u->stack.len - 1];
    return 0;
}

static int unpickle_push_mark(struct unpickler *u)
{
    if (u->nmarks == u->mcap) {
        size_t cap = u->mcap ? u->mcap * 2 : 16;
        if (cap > SIZE_MAX / sizeof(size_t))
            return -ENOMEM;
        int rc = unpickle_charge(u, (cap - u->mcap) * sizeof(size_t));
        if (rc < 0)
            return rc;
        size_t *m = realloc(u->marks, cap * sizeof *m);
        if (!m)
            return -ENOMEM;
        u->marks = m;
        u->mcap = cap;
    }
    u->marks[u->nmarks++] = u->stack.len;
    return 0;
}

/* Close the last MARK: *first is where its items start on the stack. */
static int unpickle_pop_mark(struct unpickler *u, size_t *first)
{
    if (!u->nmarks)
        return MP_EPROTO; /* no MARK to close */
    *first = u->marks[--u->nmarks];
    MP__ASSERT(*first <= u->stack.len && unpickle_fence(u) <= *first);
    return 0;
}

static size_t unpickle_memo_hash(uint64_t key)
{
    return (size_t)((key * UINT64_C(0x9e3779b97f4a7c15)) >> 17);
}

static struct memo_slot *unpickle_memo_find(struct unpickler *u, uint64_t key)
{
    if (!u->memo_cap)
        return NULL;
    size_t mask = u->memo_cap - 1;
    for (size_t i = unpickle_memo_hash(key) & mask;; i = (i + 1) & mask) {
        if (!u->memo[i].val)
            return NULL;
        if (u->memo[i].key == key)
            return &u->memo[i];
    }
}

static mp_obj *unpickle_memo_get(struct unpickler *u, uint64_t key)
{
    if (key < u->dense_cap && u->dense[key])
        return u->dense[key];
    struct memo_slot *s = unpickle_memo_find(u, key);
    return s ? s->val : NULL;
}

/* Grow the array over key when it stays within a few times the number of
 * keys put (keys written in order); 1: grown, 0: key belongs in the table. */
static int unpickle_dense_grow(struct unpickler *u, uint64_t key)
{
    size_t cap = u->dense_cap ? u->dense_cap : 64;
    while (cap <= key && cap <= SIZE_MAX / 4)
        cap *= 2;
    if (cap <= key || cap / 4 > u->memo_count + 64)
        return 0;
    int rc = unpickle_charge(u, (cap - u->dense_cap) * sizeof(mp_obj *));
    if (rc < 0)
        return rc;
    mp_obj **d = realloc(u->dense, cap * sizeof *d);
    if (!d)
        return -ENOMEM;
    memset(d + u->dense_cap, 0, (cap - u->dense_cap) * sizeof *d);
    u->dense = d;
    u->dense_cap = cap;
    return 1;
}

static int unpickle_table_put(struct unpickler *u, uint64_t key, mp_obj *val)
{
    struct memo_slot *s = unpickle_memo_find(u, key);
    if (s) {
        s->val = val;
        return 0;
    }
    if ((u->memo_used + 1) * 2 > u->memo_cap) {
        size_t cap = u->memo_cap ? u->memo_cap * 2 : 64;
        if (cap > SIZE_MAX / sizeof(struct memo_slot))
            return -ENOMEM;
        int rc = unpickle_charge(u, cap * sizeof(struct memo_slot));
        if (rc < 0)
            return rc;
        struct memo_slot *m = calloc(cap, sizeof *m);
        if (!m)
            return -ENOMEM;
        for (size_t i = 0; i < u->memo_cap; i++) {
            if (!u->memo[i].val)
                continue;
            size_t j = unpickle_memo_hash(u->memo[i].key) & (cap - 1);
            while (m[j].val)
                j = (j + 1) & (cap - 1);
            m[j] = u->memo[i];
        }
        free(u->memo);
        u->memo = m;
        u->memo_cap = cap;
    }
    size_t mask = u->memo_cap - 1, i = unpickle_memo_hash(key) & mask;
    while (u->memo[i].val)
        i = (i + 1) & mask;
    u->memo[i].key = key;
    u->memo[i].val = val;
    u->memo_used++;
    MP__ASSERT(u->memo_used * 2 <= u->memo_cap); /* probing finds a free slot */
    return 0;
}

static int unpickle_memo_put(struct unpickler *u, uint64_t key, mp_obj *val)
{
    bool fresh = unpickle_memo_get(u, key) == NULL;
    int rc = key < u->dense_cap ? 1 : unpickle_dense_grow(u, key);
    if (rc < 0)
        return rc;
    if (rc == 1) {
        MP__ASSERT(key < u->dense_cap);
        u->dense[key] = val;
    } else if ((rc = unpickle_table_put(u, key, val)) < 0)
        return rc;
    if (fresh)
        u->memo_count++;
    return 0;
}

static int unpickle_put(struct unpickler *u, uint64_t key)
{
    mp_obj *o;
    int rc = unpickle_top(u, &o);
    return rc < 0 ? rc : unpickle_memo_put(u, key, o);
}

static int unpickle_get(struct unpickler *u, uint64_t key)
{
    mp_obj *o = unpickle_memo_get(u, key);
    if (!o)
        return MP_EPROTO; /* never PUT */
    return unpickle_push(u, o);
}

/* The memo key of PUT or GET (a decimal line), or of BINPUT, BINGET and
 * their LONG_ forms (a little-endian field). */
static int unpickle_memo_key(struct unpickler *u, int op, uint64_t *key)
{
    if (op != MP__OP_PUT && op != MP__OP_GET)
        return unpickle_read_le(u, unpickle_width(op), key);
    const unsigned char *line;
    size_t len;
    int64_t iv;
    int rc = unpickle_read_line(u, &line, &len);
    if (rc < 0)
        return rc;
    if (mp__pickle_parse_int(line, len, &iv) < 0 || iv < 0)
        return MP_EPROTO;
    *key = (uint64_t)iv;
    return 0;
}

/* ---- Containers ----------------------------------------------------------
 *
 * Heights here are provisional: a list can grow after it went into another
 * container, whose height then lags. They still stop runaway nesting early
 * (TUPLE1 repeated a million times), and tuples - the only containers that
 * can be dict keys, and whose hashing and comparison recurse - never change,
 * so their heights are exact. Placing recomputes every height.
 */

static int unpickle_adopt_height(struct unpickler *u, mp_obj *c, const mp_obj *item)
{
    if ((unsigned)item->height + 1 > MP_OBJ_MAX_DEPTH)
        return unpickle_fail(u, MP__UNPICKLE_DEPTH);
    if (item->height + 1 > c->height)
        c->height = (uint16_t)(item->height + 1);
    return 0;
}

/* Room for k more items in a list or tuple, paid for first. */
static int unpickle_seq_room(struct unpickler *u, mp_obj *seq, size_t k)
{
    size_t cap;
    int rc = mp__seq_cap_for(seq, k, &cap);
    if (rc < 0 || cap == seq->u.seq.cap)
        return rc;
    rc = unpickle_charge(u, (cap - seq->u.seq.cap) * sizeof(mp_obj *));
    return rc < 0 ? rc : mp__seq_reserve(seq, k);
}

/* Move stack items [first, stack.len) into seq, which has room for them:
 * values only, nested no deeper than allowed. */
static int unpickle_move_items(struct unpickler *u, mp_obj *seq, size_t first)
{
    MP__ASSERT(unpickle_fence(u) <= first && first <= u->stack.len);
    MP__ASSERT(seq->u.seq.cap - seq->u.seq.len >= u->stack.len - first);
    for (size_t i = first; i < u->stack.len; i++) {
        mp_obj *item = u->stack.v[i];
        int rc = item->type == TYPE_PROXY_FUNC && seq->type == MP_TYPE_TUPLE
                     ? 0
                     : unpickle_check_value(item);
        if (rc == 0)
            rc = unpickle_adopt_height(u, seq, item);
        if (rc < 0)
            return rc;
        seq->u.seq.items[seq->u.seq.len++] = item;
    }
    u->stack.len = first;
    return 0;
}

/* Build a list or tuple from stack items [first, stack.len) and replace them
 * with it. Its final length is known: the array is allocated to fit. */
static int unpickle_build_seq(struct unpickler *u, int type, size_t first)
{
    size_t count = u->stack.len - first;
    mp_obj *seq;
    int rc = unpickle_new_node(u, type, &seq);
    if (rc < 0)
        return rc;
    seq->height = 1;
    if (count) {
        if (count > SIZE_MAX / sizeof(mp_obj *))
            return -ENOMEM;
        if ((rc = unpickle_charge(u, count * sizeof(mp_obj *))) < 0)
            return rc;
        if (!(seq->u.seq.items = malloc(count * sizeof(mp_obj *))))
            return -ENOMEM;
        seq->u.seq.cap = count;
    }
    rc = unpickle_move_items(u, seq, first);
    return rc < 0 ? rc : unpickle_push(u, seq);
}

static int unpickle_append_items(struct unpickler *u, mp_obj *list, size_t first)
{
    if (list->type != MP_TYPE_LIST)
        return MP_EPROTO; /* Python would call obj.append: refused */
    int rc = unpickle_seq_room(u, list, u->stack.len - first);
    return rc < 0 ? rc : unpickle_move_items(u, list, first);
}

static int unpickle_set_items(struct unpickler *u, mp_obj *dict, size_t first)
{
    if (dict->type != MP_TYPE_DICT)
        return MP_EPROTO;
    if ((u->stack.len - first) % 2)
        return MP_EPROTO; /* a key without a value */
    for (size_t i = first; i < u->stack.len; i += 2) {
        mp_obj *key = u->stack.v[i], *value = u->stack.v[i + 1], *old;
        int rc = unpickle_check_value(key);
        if (rc == 0)
            rc = unpickle_check_value(value);
        if (rc == 0)
            rc = unpickle_adopt_height(u, dict, key);
        if (rc == 0)
            rc = unpickle_adopt_height(u, dict, value);
        /* A new key may make the dict grow: the budget must hold the
         * growth before, and pays what actually happened after (a
         * replaced key costs nothing). */
        size_t cap0 = dict->u.d.cap, cap1 = mp__dict_cap_after_insert(dict);
        if (rc == 0 && cap1 > cap0 && cap1 - cap0 > u->mem / MP__DICT_BYTES_PER_CAP)
            rc = MP_EPROTO;
        if (rc == 0)
            rc = mp__dict_store(dict, key, value, &u->budget, &old);
        if (rc == 0 && dict->u.d.cap > cap0) {
            MP__ASSERT(dict->u.d.cap == cap1 && cap1 - cap0 <= u->mem / MP__DICT_BYTES_PER_CAP);
            u->mem -= (dict->u.d.cap - cap0) * MP__DICT_BYTES_PER_CAP;
        }
        if (rc == MP_ETYPE)
            rc = unpickle_fail(u, MP__UNPICKLE_UNHASHABLE);
        if (rc < 0)
            return rc;
        /* A replaced value, or a duplicate key, stays in the arena. */
    }
    u->stack.len = first;
    return 0;
}

/*
 * Add items to a set or frozenset being built: n pointers at items (stack
 * slots, or a list's items for set(list)). Charged as unpickle_set_items
 * charges a dict's growth; a duplicate item stays in the arena, so a
 * million copies of one item cost a lookup each and no memory.
 */
static int unpickle_add_items(struct unpickler *u, mp_obj *set, mp_obj *const *items, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        mp_obj *item = items[i];
        int rc = unpickle_check_value(item);
        if (rc == 0)
            rc = unpickle_adopt_height(u, set, item);
        size_t cap0 = set->u.d.cap, cap1 = mp__dict_cap_after_insert(set);
        if (rc == 0 && cap1 > cap0 && cap1 - cap0 > u->mem / MP__DICT_BYTES_PER_CAP)
            rc = MP_EPROTO;
        bool added;
        if (rc == 0)
            rc = mp__set_store(set, item, &u->budget, &added);
        if (rc == 0 && set->u.d.cap > cap0) {
            MP__ASSERT(set->u.d.cap == cap1 && cap1 - cap0 <= u->mem / MP__DICT_BYTES_PER_CAP);
            u->mem -= (set->u.d.cap - cap0) * MP__DICT_BYTES_PER_CAP;
        }
        if (rc == MP_ETYPE)
            rc = unpickle_fail(u, MP__UNPICKLE_UNHASHABLE);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* A new set or frozenset (type) holding the n items at items: *out. */
static int unpickle_new_set(struct unpickler *u, int type, mp_obj *const *items, size_t n,
                            mp_obj **out)
{
    int rc = unpickle_new_node(u, type, out);
    if (rc < 0)
        return rc;
    (*out)->height = 1;
    return unpickle_add_items(u, *out, items, n);
}

/* ADDITEMS: the items above the last MARK go into the set below it. Only
 * a set: a frozenset has no add(), and Python fails there too. */
static int unpickle_additems(struct unpickler *u)
{
    size_t first;
    int rc = unpickle_pop_mark(u, &first);
    if (rc < 0)
        return rc;
    if (first <= unpickle_fence(u))
        return MP_EPROTO; /* no set below the MARK */
    mp_obj *set = u->stack.v[first - 1];
    if (set->type != MP_TYPE_SET)
        return MP_EPROTO;
    rc = unpickle_add_items(u, set, u->stack.v + first, u->stack.len - first);
    u->stack.len = first;
    return rc;
}

/* FROZENSET: the items above the last MARK become a frozenset. */
static int unpickle_frozenset(struct unpickler *u)
{
    size_t first;
    mp_obj *fs;
    int rc = unpickle_pop_mark(u, &first);
    /* no items: the stack may never have been allocated */
    mp_obj *const *items = u->stack.len > first ? u->stack.v + first : NULL;
    if (rc == 0)
        rc = unpickle_new_set(u, MP_TYPE_FROZENSET, items, u->stack.len - first, &fs);
    if (rc < 0)
        return rc;
    u->stack.len = first;
    return unpickle_push(u, fs);
}

/* An int: a shared immortal node for -5..256 (no allocation), else new. */
static int unpickle_push_int(struct unpickler *u, int64_t v)
{
    mp_obj *o = mp__obj_immortal_int(v);
    if (!o) {
        int rc = unpickle_new_node(u, MP_TYPE_INT, &o);
        if (rc < 0)
            return rc;
        o->u.i = v;
    }
    return unpickle_push(u, o);
}

/* LONG1/LONG4's bytes (little-endian two's complement, in the input): an
 * int64 when the value fits, else a big int node, charged like a str. The
 * length was checked against the input before: nothing is allocated for
 * bytes that are not there. */
static int unpickle_push_long(struct unpickler *u, const unsigned char *p, size_t len)
{
    len = mp__int_canonical_len(p, len);
    if (len <= 8)
        return unpickle_push_int(u, mp__int_le_to_i64(p, len));
    int rc = unpickle_charge(u, sizeof(mp_obj) + len + 1);
    if (rc < 0)
        return rc;
    mp_obj *o = unpickle_arena_add(u, mp__obj_bigint(p, len));
    return o ? unpickle_push(u, o) : -ENOMEM;
}

/* INT and LONG's decimal text: int64 at once, else a big int (Python's
 * int(text), up to its 4300 digits; beyond, its ValueError is MP_EPROTO
 * here, as every refused pickle). */
static int unpickle_push_decimal(struct unpickler *u, const unsigned char *s, size_t n)
{
    int64_t iv;
    if (mp__pickle_parse_int(s, n, &iv) == 0)
        return unpickle_push_int(u, iv);
    size_t i = n && (s[0] == '-' || s[0] == '+');
    for (size_t k = i; k < n; k++)
        if (s[k] < '0' || s[k] > '9')
            return MP_EPROTO;
    unsigned char *le;
    size_t len;
    int rc = mp__int_from_digits(n && s[0] == '-', (const char *)s + i, n - i, &le, &len);
    if (rc == MP_EVALUE)
        return MP_EPROTO;
    if (rc < 0)
        return rc;
    rc = unpickle_push_long(u, le, len);
    free(le);
    return rc;
}

static int unpickle_push_float(struct unpickler *u, double v)
{
    mp_obj *o;
    int rc = unpickle_new_node(u, MP_TYPE_FLOAT, &o);
    if (rc < 0)
        return rc;
    mp__obj_set_float(o, v);
    return unpickle_push(u, o);
}

static int unpickle_push_str(struct unpickler *u, size_t len)
{
    const unsigned char *s = u->p + u->pos;
    if (!mp__str_valid(s, len))
        return MP_EPROTO; /* Python's "utf-8" with "surrogatepass" decodes it */
    u->pos += len;
    return unpickle_push_strbytes(u, MP_TYPE_STR, s, len);
}

static int unpickle_push_bytes(struct unpickler *u, int type, size_t len)
{
    const unsigned char *s = u->p + u->pos;
    u->pos += len;
    return unpickle_push_strbytes(u, type, s, len);
}

/* Protocol 0's UNICODE: raw-unicode-escape converted to UTF-8, which takes
 * at most two bytes per input byte. */
static int unpickle_push_raw_unicode(struct unpickler *u, const unsigned char *s, size_t n)
{
    size_t cap;
    if (mp__add_overflows(n, n, &cap))
        return -ENOMEM;
    if (cap + 1 > u->mem)
        return MP_EPROTO; /* held only until the str is made, but held */
    unsigned char *out = malloc(cap + 1);
    if (!out)
        return -ENOMEM;
    size_t len;
    int rc = mp__pickle_raw_unicode(s, n, out, &len);
    if (rc == 0)
        rc = unpickle_push_strbytes(u, MP_TYPE_STR, out, len);
    free(out);
    return rc;
}

/* GLOBAL / STACK_GLOBAL: the table of known names, all in builtins
 * (Python 2's __builtin__ is the same module under fix_imports). Nothing
 * else is resolved: every other name is refused, nothing is imported. */
static int unpickle_push_global(struct unpickler *u, const unsigned char *mod, size_t modlen,
                                const unsigned char *name, size_t namelen)
{
    static const struct {
        const char *name;
        size_t len;
        int type;
    } known[] = {
        {"bytearray", 9, TYPE_BYTEARRAY_CALLABLE},
        {"set", 3, TYPE_SET_CALLABLE},
        {"frozenset", 9, TYPE_FROZENSET_CALLABLE},
    };
    bool builtins = (modlen == 8 && memcmp(mod, "builtins", 8) == 0) ||
                    (modlen == 11 && memcmp(mod, "__builtin__", 11) == 0);
    for (size_t i = 0; builtins && i < sizeof known / sizeof known[0]; i++)
        if (namelen == known[i].len && memcmp(name, known[i].name, namelen) == 0)
            return unpickle_push_new(u, known[i].type);
    int cls = mp__instance_lookup((const char *)mod, modlen, (const char *)name, namelen);
    int func = mp__proxy_func_lookup((const char *)mod, modlen, (const char *)name, namelen);
    if (cls < 0 && func < 0)
        return unpickle_fail(u, MP__UNPICKLE_IMPORTS);
    mp_obj *o;
    int rc = unpickle_new_node(u, cls < 0 ? TYPE_PROXY_FUNC : TYPE_CLASS, &o);
    if (rc < 0)
        return rc;
    o->u.i = cls < 0 ? func : cls;
    return unpickle_push(u, o);
}

/* Make inst (a new node) an instance of class cls holding args (a tuple)
 * as its one item. The args node may be shared (memo): placing copies it
 * where it must. */
static int unpickle_make_instance(struct unpickler *u, mp_obj *inst, int cls, mp_obj *args)
{
    int rc = unpickle_seq_room(u, inst, 1);
    if (rc == 0)
        rc = unpickle_adopt_height(u, inst, args);
    if (rc < 0)
        return rc;
    inst->type = MP_TYPE_INSTANCE;
    inst->u.seq.hash = (uint64_t)cls;
    inst->u.seq.items[inst->u.seq.len++] = args;
    return 0;
}

/* NEWOBJ: cls.__new__(cls, *args), which CPython writes for a Token with
 * args (). Only that: the result waits for BUILD to give it its state. */
static int unpickle_newobj(struct unpickler *u)
{
    mp_obj *args = NULL, *cls = NULL, *o;
    int rc = unpickle_pop_value(u, &args);
    if (rc == 0)
        rc = unpickle_pop_any(u, &cls);
    if (rc < 0)
        return rc;
    if (cls->type != TYPE_CLASS || cls->u.i != MP__CLS_TOKEN || args->type != MP_TYPE_TUPLE ||
        args->u.seq.len != 0)
        return unpickle_fail(u, MP__UNPICKLE_CALLS);
    if ((rc = unpickle_new_node(u, TYPE_TOKEN_UNBUILT, &o)) < 0)
        return rc;
    return unpickle_push(u, o);
}

/* BUILD: Token.__setstate__(state), state being (typeid, address, id).
 * Any other BUILD would call a __setstate__ or set attributes: refused. A
 * Token built once is not built again. */
static int unpickle_build(struct unpickler *u)
{
    mp_obj *state = NULL, *tok = NULL;
    int rc = unpickle_pop_value(u, &state);
    if (rc == 0)
        rc = unpickle_top(u, &tok);
    if (rc < 0)
        return rc;
    if (tok->type != TYPE_TOKEN_UNBUILT)
        return unpickle_fail(u, MP__UNPICKLE_CALLS);
    if (state->type != MP_TYPE_TUPLE || state->u.seq.len != 3)
        return MP_EPROTO; /* Token's __setstate__ unpacks three items */
    return unpickle_make_instance(u, tok, MP__CLS_TOKEN, state);
}

/* REDUCE of RebuildProxy: (func, token, serializer, kwds), as CPython's
 * BaseProxy.__reduce__ writes a proxy inside a value, becomes an inert
 * instance whose args hold the func's name as a str. Nothing is called. */
static int unpickle_rebuild_proxy(struct unpickler *u, mp_obj *args)
{
    mp_obj **it = args->u.seq.items, *name, *t, *inst;
    if (args->u.seq.len != 4 || it[0]->type != TYPE_PROXY_FUNC)
        return unpickle_fail(u, MP__UNPICKLE_CALLS);
    const char *fn = mp__proxy_func_name((int)it[0]->u.i);
    int rc = unpickle_new_strbytes(u, MP_TYPE_STR, fn, strlen(fn), &name);
    if (rc == 0)
        rc = unpickle_new_node(u, MP_TYPE_TUPLE, &t);
    if (rc == 0)
        rc = unpickle_seq_room(u, t, 4);
    if (rc < 0)
        return rc;
    t->height = 1;
    t->u.seq.items[t->u.seq.len++] = name;
    for (size_t i = 1; i < 4; i++) {
        if ((rc = unpickle_adopt_height(u, t, it[i])) < 0)
            return rc;
        t->u.seq.items[t->u.seq.len++] = it[i];
    }
    if (!mp__proxy_args_ok(t))
        return MP_EPROTO; /* a token, a serializer str, a kwds dict */
    rc = unpickle_new_node(u, MP_TYPE_INSTANCE, &inst);
    if (rc == 0)
        rc = unpickle_make_instance(u, inst, MP__CLS_REBUILD_PROXY, t);
    return rc < 0 ? rc : unpickle_push(u, inst);
}

/* REDUCE: bytearray() or bytearray(b'...'), as protocols 3 and 4 write a
 * bytearray, and set([...]) or frozenset([...]), as protocols 0 to 3 write
 * sets. The decoder builds these values itself (nothing is called);
 * anything else is refused. */
static int unpickle_reduce(struct unpickler *u)
{
    mp_obj *args = NULL, *callable = NULL;
    int rc = unpickle_pop_value(u, &args);
    if (rc == 0)
        rc = unpickle_pop_any(u, &callable);
    if (rc < 0)
        return rc;
    if (args->type != MP_TYPE_TUPLE)
        return unpickle_fail(u, MP__UNPICKLE_CALLS);
    if (callable->type == TYPE_CLASS) {
        /* An exception, a slice or a range: the class with its args. Token is made
         * by NEWOBJ and BUILD only, as CPython writes it. */
        if (callable->u.i == MP__CLS_TOKEN)
            return unpickle_fail(u, MP__UNPICKLE_CALLS);
        if (callable->u.i == MP__CLS_REBUILD_PROXY)
            return unpickle_rebuild_proxy(u, args);
        if (!mp__instance_args_ok((int)callable->u.i, args))
            return MP_EPROTO; /* a slice or range of other than its three ints */
        mp_obj *inst = NULL;
        rc = unpickle_new_node(u, MP_TYPE_INSTANCE, &inst);
        if (rc == 0)
            rc = unpickle_make_instance(u, inst, (int)callable->u.i, args);
        return rc < 0 ? rc : unpickle_push(u, inst);
    }
    if (callable->type == TYPE_SET_CALLABLE || callable->type == TYPE_FROZENSET_CALLABLE) {
        mp_obj *list = args->u.seq.len == 1 ? args->u.seq.items[0] : NULL, *set;
        if (!list || list->type != MP_TYPE_LIST)
            return MP_EPROTO;
        int type = callable->type == TYPE_SET_CALLABLE ? MP_TYPE_SET : MP_TYPE_FROZENSET;
        rc = unpickle_new_set(u, type, list->u.seq.items, list->u.seq.len, &set);
        return rc < 0 ? rc : unpickle_push(u, set);
    }
    if (callable->type != TYPE_BYTEARRAY_CALLABLE)
        return unpickle_fail(u, MP__UNPICKLE_CALLS);
    if (args->u.seq.len == 0)
        return unpickle_push_strbytes(u, MP_TYPE_BYTEARRAY, NULL, 0);
    mp_obj *b = args->u.seq.items[0];
    if (args->u.seq.len != 1 || b->type != MP_TYPE_BYTES)
        return MP_EPROTO;
    /* A copy (bytearray is mutable in Python), charged like any other: one
     * memoized bytes object made into a bytearray again and again is a
     * megabyte per few input bytes. */
    return unpickle_push_strbytes(u, MP_TYPE_BYTEARRAY, b->u.s.data, b->u.s.len);
}

/* ---- Phase 1: the machine ------------------------------------------------ */

static int unpickle_step(struct unpickler *u, int op, bool *stop)
{
    int rc = 0;
    size_t len, first;
    const unsigned char *line, *line2;
    size_t len2;
    uint64_t v;
    mp_obj *o, *a, *b;

    switch (op) {
    case MP__OP_PROTO:
        if ((rc = unpickle_read_le(u, 1, &v)) < 0)
            return rc;
        return v > HIGHEST_PROTOCOL ? MP_EPROTO : 0;
    case MP__OP_FRAME:
        /* CPython only checks that the frame is there; so do we. */
        return unpickle_read_len(u, unpickle_width(op), &len);
    case MP__OP_STOP:
        *stop = true;
        return 0;

    case MP__OP_MARK:
        return unpickle_push_mark(u);
    case MP__OP_POP:
        /* Python's load_pop: with nothing above the MARK, drop the MARK. */
        if (u->stack.len > unpickle_fence(u)) {
            u->stack.len--;
            return 0;
        }
        return unpickle_pop_mark(u, &first);
    case MP__OP_POP_MARK:
        if ((rc = unpickle_pop_mark(u, &first)) < 0)
            return rc;
        u->stack.len = first;
        return 0;
    case MP__OP_DUP:
        if ((rc = unpickle_top(u, &o)) < 0)
            return rc;
        return unpickle_push(u, o);

    case MP__OP_NONE:
        return unpickle_push(u, mp_obj_none());
    case MP__OP_NEWTRUE:
    case MP__OP_NEWFALSE:
        return unpickle_push(u, mp_obj_bool(op == MP__OP_NEWTRUE));
    case MP__OP_INT:
        if ((rc = unpickle_read_line(u, &line, &len)) < 0)
            return rc;
        if (len == 2 && line[0] == '0' && (line[1] == '0' || line[1] == '1'))
            return unpickle_push(u, mp_obj_bool(line[1] == '1')); /* protocol 0-1 True/False */
        return unpickle_push_decimal(u, line, len);
    case MP__OP_LONG:
        if ((rc = unpickle_read_line(u, &line, &len)) < 0)
            return rc;
        if (len && line[len - 1] == 'L')
            len--;
        return unpickle_push_decimal(u, line, len);
    case MP__OP_BININT:
        if ((rc = unpickle_read_le(u, 4, &v)) < 0)
            return rc;
        return unpickle_push_int(u, (int32_t)(uint32_t)v);
    case MP__OP_BININT1:
        if ((rc = unpickle_need(u, 1)) < 0)
            return rc;
        return unpickle_push_int(u, u->p[u->pos++]);
    case MP__OP_BININT2:
        if ((rc = unpickle_read_le(u, 2, &v)) < 0)
            return rc;
        return unpickle_push_int(u, (int64_t)v);
    case MP__OP_LONG1:
    case MP__OP_LONG4:
        if (op == MP__OP_LONG4) {
            if ((rc = unpickle_need(u, 4)) < 0)
                return rc;
            if (u->p[u->pos + 3] & 0x80)
                return MP_EPROTO; /* negative byte count */
        }
        if ((rc = unpickle_read_len(u, unpickle_width(op), &len)) < 0)
            return rc;
        u->pos += len;
        return unpickle_push_long(u, u->p + u->pos - len, len);
    case MP__OP_FLOAT: {
        double f;
        if ((rc = unpickle_read_line(u, &line, &len)) < 0)
            return rc;
        if ((rc = mp__pickle_parse_float(line, len, &f)) < 0)
            return rc;
        return unpickle_push_float(u, f);
    }
    case MP__OP_BINFLOAT: {
        if ((rc = unpickle_need(u, 8)) < 0)
            return rc;
        uint64_t bits = 0;
        for (int i = 0; i < 8; i++)
            bits = bits << 8 | u->p[u->pos + (size_t)i]; /* big-endian */
        u->pos += 8;
        double f;
        memcpy(&f, &bits, sizeof bits);
        return unpickle_push_float(u, f);
    }

    case MP__OP_SHORT_BINUNICODE:
    case MP__OP_BINUNICODE:
    case MP__OP_BINUNICODE8:
        if ((rc = unpickle_read_len(u, unpickle_width(op), &len)) < 0)
            return rc;
        return unpickle_push_str(u, len);
    case MP__OP_UNICODE:
        if ((rc = unpickle_read_line(u, &line, &len)) < 0)
            return rc;
        return unpickle_push_raw_unicode(u, line, len);
    case MP__OP_SHORT_BINBYTES:
    case MP__OP_BINBYTES:
    case MP__OP_BINBYTES8:
    case MP__OP_BYTEARRAY8:
        if ((rc = unpickle_read_len(u, unpickle_width(op), &len)) < 0)
            return rc;
        return unpickle_push_bytes(u, op == MP__OP_BYTEARRAY8 ? MP_TYPE_BYTEARRAY : MP_TYPE_BYTES,
                                   len);

    case MP__OP_EMPTY_LIST:
        return unpickle_push_new(u, MP_TYPE_LIST);
    case MP__OP_EMPTY_TUPLE:
        return unpickle_push_new(u, MP_TYPE_TUPLE);
    case MP__OP_EMPTY_DICT:
        return unpickle_push_new(u, MP_TYPE_DICT);
    case MP__OP_EMPTY_SET:
        return unpickle_push_new(u, MP_TYPE_SET);
    case MP__OP_ADDITEMS:
        return unpickle_additems(u);
    case MP__OP_FROZENSET:
        return unpickle_frozenset(u);
    case MP__OP_LIST:
    case MP__OP_TUPLE:
        if ((rc = unpickle_pop_mark(u, &first)) < 0)
            return rc;
        return unpickle_build_seq(u, op == MP__OP_LIST ? MP_TYPE_LIST : MP_TYPE_TUPLE, first);
    case MP__OP_TUPLE1:
    case MP__OP_TUPLE2:
    case MP__OP_TUPLE3: {
        size_t k = (size_t)(op - MP__OP_TUPLE1 + 1);
        if (u->stack.len < unpickle_fence(u) + k)
            return MP_EPROTO;
        return unpickle_build_seq(u, MP_TYPE_TUPLE, u->stack.len - k);
    }
    case MP__OP_DICT:
        if ((rc = unpickle_pop_mark(u, &first)) < 0)
            return rc;
        if ((rc = unpickle_new_node(u, MP_TYPE_DICT, &o)) < 0)
            return rc;
        o->height = 1;
        if ((rc = unpickle_set_items(u, o, first)) < 0)
            return rc;
        return unpickle_push(u, o);
    case MP__OP_APPEND:
        if ((rc = unpickle_pop_value(u, &a)) < 0 || (rc = unpickle_top(u, &o)) < 0)
            return rc;
        if ((rc = unpickle_push(u, a)) < 0) /* append_items takes it from the stack */
            return rc;
        return unpickle_append_items(u, o, u->stack.len - 1);
    case MP__OP_APPENDS:
        if ((rc = unpickle_pop_mark(u, &first)) < 0)
            return rc;
        if (first <= unpickle_fence(u))
            return MP_EPROTO; /* no list below the MARK */
        return unpickle_append_items(u, u->stack.v[first - 1], first);
    case MP__OP_SETITEM:
        if (u->stack.len < unpickle_fence(u) + 3)
            return MP_EPROTO;
        return unpickle_set_items(u, u->stack.v[u->stack.len - 3], u->stack.len - 2);
    case MP__OP_SETITEMS:
        if ((rc = unpickle_pop_mark(u, &first)) < 0)
            return rc;
        if (first <= unpickle_fence(u))
            return MP_EPROTO;
        return unpickle_set_items(u, u->stack.v[first - 1], first);

    case MP__OP_PUT:
    case MP__OP_BINPUT:
    case MP__OP_LONG_BINPUT:
        if ((rc = unpickle_memo_key(u, op, &v)) < 0)
            return rc;
        return unpickle_put(u, v);
    case MP__OP_MEMOIZE:
        return unpickle_put(u, u->memo_count);
    case MP__OP_GET:
    case MP__OP_BINGET:
    case MP__OP_LONG_BINGET:
        if ((rc = unpickle_memo_key(u, op, &v)) < 0)
            return rc;
        return unpickle_get(u, v);

    case MP__OP_GLOBAL:
        if ((rc = unpickle_read_line(u, &line, &len)) < 0 ||
            (rc = unpickle_read_line(u, &line2, &len2)) < 0)
            return rc;
        return unpickle_push_global(u, line, len, line2, len2);
    case MP__OP_STACK_GLOBAL:
        if ((rc = unpickle_pop_value(u, &b)) < 0 || (rc = unpickle_pop_value(u, &a)) < 0)
            return rc;
        if (a->type != MP_TYPE_STR || b->type != MP_TYPE_STR)
            return MP_EPROTO;
        return unpickle_push_global(u, (const unsigned char *)a->u.s.data, a->u.s.len,
                                    (const unsigned char *)b->u.s.data, b->u.s.len);
    case MP__OP_REDUCE:
        return unpickle_reduce(u);
    case MP__OP_NEWOBJ:
        return unpickle_newobj(u);
    case MP__OP_BUILD:
        return unpickle_build(u);

    default:
        /* INST, OBJ, NEWOBJ_EX, EXT1/2/4, PERSID, BINPERSID:
         * they import or call code. STRING, BINSTRING, SHORT_BINSTRING:
         * Python 2 str. NEXT_BUFFER, READONLY_BUFFER: out-of-band data.
         * And every byte that is not an opcode. */
        return unpickle_fail(u, MP__UNPICKLE_REFUSED);
    }
}

/* ---- Phase 2: placing ----------------------------------------------------- */

static bool unpickle_is_container(const mp_obj *o)
{
    return mp__obj_has_items(o) || mp__obj_is_table(o);
}

/*
 * Place the node *slot points at, which sits level containers deep (0: *slot
 * is the result). Parents are set afterwards (unpickle_set_parents): until the
 * unplaced nodes are freed, each node's parent field links the arena.
 * Recursion depth is bounded by MP_OBJ_MAX_DEPTH, checked before descending.
 */
static int unpickle_place(struct unpickler *u, mp_obj **slot, unsigned level)
{
    mp_obj *o = *slot;
    int rc;
    MP__ASSERT(level <= MP_OBJ_MAX_DEPTH); /* checked before descending */
    if (mp__obj_immortal(o))
        return 0; /* shared by design: any number of slots may hold it */
    if (o->flags & MP__F_BLACK) {
        /* Reached again (a memo reference or DUP): a copy goes here. */
        if (level + o->height > MP_OBJ_MAX_DEPTH)
            return unpickle_fail(u, MP__UNPICKLE_DEPTH);
        mp_obj *c;
        if ((rc = mp__obj_copy_limited(o, &u->budget, &c)) < 0)
            return rc;
        if ((rc = unpickle_vec_push(&u->copies, c, NULL)) < 0) {
            mp__obj_free_tree(c);
            return rc;
        }
        *slot = c;
        return 0;
    }
    if (o->flags & MP__F_GREY)
        return unpickle_fail(u, MP__UNPICKLE_CYCLE); /* o contains itself */
    if (o->type == TYPE_PROXY_FUNC)
        return unpickle_fail(u, MP__UNPICKLE_CALLS); /* a class as a value */
    if (!unpickle_is_container(o)) {
        o->height = 0;
        o->flags |= MP__F_BLACK;
        return 0;
    }
    if (level + 1 > MP_OBJ_MAX_DEPTH)
        return unpickle_fail(u, MP__UNPICKLE_DEPTH);
    o->flags |= MP__F_GREY;
    unsigned h = 0;
    if (mp__obj_is_table(o)) {
        for (size_t i = 0; i < o->u.d.n; i++) {
            struct mp__dict_entry *e = &o->u.d.entries[i];
            if (!e->key)
                continue;
            if ((rc = unpickle_place(u, &e->key, level + 1)) < 0 ||
                (e->value && (rc = unpickle_place(u, &e->value, level + 1)) < 0))
                return rc;
            if (e->key->height > h)
                h = e->key->height;
            if (e->value && e->value->height > h) /* a set's entries: no value */
                h = e->value->height;
        }
    } else {
        for (size_t i = 0; i < o->u.seq.len; i++) {
            if ((rc = unpickle_place(u, &o->u.seq.items[i], level + 1)) < 0)
                return rc;
            if (o->u.seq.items[i]->height > h)
                h = o->u.seq.items[i]->height;
        }
    }
    o->height = (uint16_t)(h + 1);
    o->flags = (uint8_t)((o->flags & ~MP__F_GREY) | MP__F_BLACK);
    return 0;
}

/* A placed child of container c: it joins c. A copy made while placing is
 * a proper tree already, so only its root is touched. */
static void unpickle_set_parents(mp_obj *c);

static void unpickle_adopt(mp_obj *c, mp_obj *child)
{
    if (mp__obj_immortal(child))
        return;
    child->parent = c;
    if (!(child->flags & MP__F_BLACK))
        return; /* a copy */
    child->flags &= (uint8_t)~MP__F_BLACK;
    if (unpickle_is_container(child))
        unpickle_set_parents(child);
}

/* Recursion bounded by MP_OBJ_MAX_DEPTH, which unpickle_place() checked. */
static void unpickle_set_parents(mp_obj *c)
{
    if (mp__obj_is_table(c)) {
        for (size_t i = 0; i < c->u.d.n; i++) {
            struct mp__dict_entry *e = &c->u.d.entries[i];
            if (e->key) {
                unpickle_adopt(c, e->key);
                if (e->value) /* a set's entries have none */
                    unpickle_adopt(c, e->value);
            }
        }
    } else {
        for (size_t i = 0; i < c->u.seq.len; i++)
            unpickle_adopt(c, c->u.seq.items[i]);
    }
}

/* Free what phase 1 made and the result does not hold (ok), or everything
 * (!ok), then the machine's own arrays. */
static void unpickle_free(struct unpickler *u, bool ok)
{
    for (mp_obj *o = u->arena, *next; o; o = next) {
        next = o->parent;
        MP__ASSERT(!mp__obj_immortal(o)); /* immortal nodes never join the arena */
        if (!ok || !(o->flags & MP__F_BLACK))
            mp__obj_free_node(o);
    }
    if (!ok)
        for (size_t i = 0; i < u->copies.len; i++)
            mp__obj_free_tree(u->copies.v[i]);
    free(u->copies.v);
    free(u->stack.v);
    free(u->marks);
    free(u->dense);
    free(u->memo);
}

/* mp__pickle_loads, and with trailing true mp_obj_loads: bytes after STOP
 * are then ignored, as Python's pickle.loads ignores them. */
static int unpickle_loads(const unsigned char *p, size_t n, bool trailing, mp_obj **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!p && n)
        return -EINVAL;
    struct unpickler u;
    memset(&u, 0, sizeof u);
    u.p = p;
    u.n = n;
    u.budget = MP__PICKLE_BUDGET_MIN;
    if (n <= SIZE_MAX / MP__PICKLE_BUDGET_FACTOR && n * MP__PICKLE_BUDGET_FACTOR > u.budget)
        u.budget = n * MP__PICKLE_BUDGET_FACTOR;
    u.mem = SIZE_MAX;
    if (n <= (SIZE_MAX - MP__PICKLE_MEM_MIN) / MP__PICKLE_MEM_FACTOR)
        u.mem = MP__PICKLE_MEM_MIN + n * MP__PICKLE_MEM_FACTOR;

    int rc = 0;
    bool stop = false;
    size_t at = 0; /* the opcode being run */
    while (rc == 0 && !stop) {
        if (u.pos >= u.n) {
            rc = unpickle_fail(&u, MP__UNPICKLE_NO_STOP);
            at = u.pos;
            break;
        }
        at = u.pos;
        rc = unpickle_step(&u, u.p[u.pos++], &stop);
    }
    bool machine = rc < 0; /* else what fails below is the placing */
    mp_obj *result = NULL;
    if (rc == 0) {
        /* Stricter than Python: exactly one value, no open MARK, nothing
         * after STOP. */
        if (u.stack.len != 1 || u.nmarks || (u.pos != u.n && !trailing))
            rc = unpickle_fail(&u, MP__UNPICKLE_NOT_ONE);
        else if ((rc = unpickle_check_value(u.stack.v[0])) == 0)
            rc = unpickle_place(&u, &u.stack.v[0], 0);
        if (rc == 0)
            result = u.stack.v[0];
    }
    unpickle_free(&u, rc == 0);
    if (rc == 0 && !mp__obj_immortal(result)) {
        result->parent = NULL;
        result->flags &= (uint8_t)~MP__F_BLACK;
        if (unpickle_is_container(result))
            unpickle_set_parents(result);
    }
    if (rc == 0)
        *out = result;
    else
        mp__unpickle_errmsg(rc, u.why, machine && at < n ? u.p[at] : -1, machine ? at : u.pos, n);
    return rc;
}

int mp__pickle_loads(const unsigned char *p, size_t n, mp_obj **out)
{
    return unpickle_loads(p, n, false, out);
}

MP_API int mp_obj_loads(const void *buf, size_t len, mp_obj **out)
{
    return unpickle_loads(buf, len, true, out);
}
