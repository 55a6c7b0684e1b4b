/*
 * unpickle_memo - the decoder's memo (unpickle.c runs the machine): PUT,
 * BINPUT, LONG_BINPUT, MEMOIZE, GET, BINGET and LONG_BINGET. Statics start
 * with unpickle_memo_.
 */
#include "codec/unpickle.h"

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
static int unpickle_memo_dense_grow(struct unpickler *u, uint64_t key)
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

static int unpickle_memo_table_put(struct unpickler *u, uint64_t key, mp_obj *val)
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
    int rc = key < u->dense_cap ? 1 : unpickle_memo_dense_grow(u, key);
    if (rc < 0)
        return rc;
    if (rc == 1) {
        MP__ASSERT(key < u->dense_cap);
        u->dense[key] = val;
    } else if ((rc = unpickle_memo_table_put(u, key, val)) < 0)
        return rc;
    if (fresh)
        u->memo_count++;
    return 0;
}

static int unpickle_memo_put_top(struct unpickler *u, uint64_t key)
{
    mp_obj *o;
    int rc = unpickle_top(u, &o);
    return rc < 0 ? rc : unpickle_memo_put(u, key, o);
}

static int unpickle_memo_push(struct unpickler *u, uint64_t key)
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

/* ---- The handlers (unpickle.c's dispatch table) ---- */

/* PUT, BINPUT, LONG_BINPUT */
int mp__unpickle_op_put(struct unpickler *u)
{
    uint64_t v;
    int rc = unpickle_memo_key(u, u->op, &v);
    return rc < 0 ? rc : unpickle_memo_put_top(u, v);
}

int mp__unpickle_op_memoize(struct unpickler *u)
{
    return unpickle_memo_put_top(u, u->memo_count);
}

/* GET, BINGET, LONG_BINGET */
int mp__unpickle_op_get(struct unpickler *u)
{
    uint64_t v;
    int rc = unpickle_memo_key(u, u->op, &v);
    return rc < 0 ? rc : unpickle_memo_push(u, v);
}
