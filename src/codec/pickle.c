/*
 * pickle - the encoder: mp__pickle_dumps and the piecewise builder
 * (mp__pickler_*), both in protocol 4 as CPython writes it (pickle.h). The
 * decoder is unpickle.c. Statics here start with pickle_.
 */
#include "codec/objimpl.h"
#include "codec/pickle.h"
#include "core/internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int mp__pickler_reserve(mp__pickler *w, size_t n)
{
    if (w->err)
        return w->err;
    size_t need_len;
    if (mp__add_overflows(w->len, n, &need_len)) {
        w->err = -ENOMEM;
        return w->err;
    }
    if (need_len > w->cap) {
        size_t cap = mp__grow_cap(w->cap, need_len, 256);
        unsigned char *q = realloc(w->p, cap);
        if (!q) {
            w->err = -ENOMEM;
            return w->err;
        }
        w->p = q;
        w->cap = cap;
    }
    return 0;
}

static void pickle_put(mp__pickler *w, const void *s, size_t n)
{
    if (mp__pickler_reserve(w, n) < 0)
        return;
    if (n)
        memcpy(w->p + w->len, s, n);
    w->len += n;
}

static void pickle_op(mp__pickler *w, unsigned op)
{
    unsigned char c = (unsigned char)op;
    pickle_put(w, &c, 1);
}

static void pickle_le(mp__pickler *w, uint64_t v, int k)
{
    unsigned char b[8];
    for (int i = 0; i < k; i++)
        b[i] = (unsigned char)(v >> (8 * i));
    pickle_put(w, b, (size_t)k);
}

/* The opcode with the smallest length field that fits, as CPython chooses. */
static void pickle_sized(mp__pickler *w, unsigned op1, unsigned op4, unsigned op8, const char *data,
                         size_t len)
{
    if (len < 256) {
        pickle_op(w, op1);
        pickle_le(w, len, 1);
    } else if ((uint64_t)len <= UINT32_MAX) {
        pickle_op(w, op4);
        pickle_le(w, len, 4);
    } else {
        pickle_op(w, op8);
        pickle_le(w, len, 8);
    }
    pickle_put(w, data, len);
}

static void pickle_int(mp__pickler *w, int64_t v)
{
    if (v >= 0 && v <= 0xff) {
        pickle_op(w, MP__OP_BININT1);
        pickle_le(w, (uint64_t)v, 1);
    } else if (v >= 0 && v <= 0xffff) {
        pickle_op(w, MP__OP_BININT2);
        pickle_le(w, (uint64_t)v, 2);
    } else if (v >= INT32_MIN && v <= INT32_MAX) {
        pickle_op(w, MP__OP_BININT);
        pickle_le(w, (uint64_t)v, 4);
    } else {
        /* LONG1: the fewest two's complement bytes that keep the sign. */
        int k = 8;
        while (k > 1) {
            int64_t hi = v >> (8 * (k - 1) - 1); /* bits that must be sign */
            if (hi != 0 && hi != -1)
                break;
            k--;
        }
        pickle_op(w, MP__OP_LONG1);
        pickle_le(w, (uint64_t)k, 1);
        pickle_le(w, (uint64_t)v, k);
    }
}

/* An int beyond int64: its canonical bytes after LONG1, or LONG4 from 256
 * bytes on, as CPython's save_long writes them. LONG4's count is signed:
 * beyond 2 GiB Python's OverflowError ("int too large to pickle"). */
static void pickle_bigint(mp__pickler *w, const mp_obj *o)
{
    size_t len = o->u.s.len;
    if (len < 256) {
        pickle_op(w, MP__OP_LONG1);
        pickle_le(w, len, 1);
    } else if ((uint64_t)len <= INT32_MAX) {
        pickle_op(w, MP__OP_LONG4);
        pickle_le(w, len, 4);
    } else {
        if (!w->err)
            w->err = -ERANGE;
        return;
    }
    pickle_put(w, o->u.s.data, len);
}

static void pickle_float(mp__pickler *w, double f)
{
    uint64_t bits;
    memcpy(&bits, &f, sizeof bits);
    unsigned char b[9];
    b[0] = MP__OP_BINFLOAT;
    for (int i = 0; i < 8; i++)
        b[1 + i] = (unsigned char)(bits >> (56 - 8 * i));
    pickle_put(w, b, 9);
}

/* The opcode that closes a tuple of n pieces (after a MARK when n > 3). */
static void pickle_tuple_end(mp__pickler *w, size_t n)
{
    if (n == 0)
        pickle_op(w, MP__OP_EMPTY_TUPLE);
    else
        pickle_op(w, n > 3 ? MP__OP_TUPLE : (unsigned)(MP__OP_TUPLE1 + n - 1));
}

/* CPython batches APPENDS and SETITEMS by 1000 items. */
#define PICKLE_BATCH 1000

static void pickle_dump(mp__pickler *w, const mp_obj *o);

/* The items of a set or frozenset, from entry *i on, k of them. */
static void pickle_set_items(mp__pickler *w, const mp_obj *o, size_t *i, size_t k)
{
    for (size_t done = 0; done < k && !w->err; (*i)++) {
        MP__ASSERT(*i < o->u.d.n); /* used live entries among n */
        const struct mp__dict_entry *e = &o->u.d.entries[*i];
        if (!e->key)
            continue;
        pickle_dump(w, e->key);
        done++;
    }
}

/*
 * Sets, frozensets and bytearrays, as CPython 3.11 writes them in protocol 4
 * (without the memo): a set is EMPTY_SET then MARK items ADDITEMS per batch
 * of 1000; a frozenset MARK items FROZENSET, in one go; a bytearray
 * builtins.bytearray (STACK_GLOBAL) called (REDUCE) with its contents as a
 * bytes, or with no argument when empty. (BYTEARRAY8 is protocol 5's.)
 */
static void pickle_dump_other(mp__pickler *w, const mp_obj *o)
{
    size_t i = 0, left;
    switch (o->type) {
    case MP_TYPE_SET:
        pickle_op(w, MP__OP_EMPTY_SET);
        for (left = o->u.d.used; left && !w->err;) {
            size_t k = left < PICKLE_BATCH ? left : PICKLE_BATCH;
            pickle_op(w, MP__OP_MARK);
            pickle_set_items(w, o, &i, k);
            pickle_op(w, MP__OP_ADDITEMS);
            left -= k;
        }
        break;
    case MP_TYPE_FROZENSET:
        pickle_op(w, MP__OP_MARK);
        pickle_set_items(w, o, &i, o->u.d.used);
        pickle_op(w, MP__OP_FROZENSET);
        break;
    default:
        MP__ASSERT(o->type == MP_TYPE_BYTEARRAY);
        mp__pickler_str(w, "builtins", 8);
        mp__pickler_str(w, "bytearray", 9);
        pickle_op(w, MP__OP_STACK_GLOBAL);
        if (o->u.s.len)
            mp__pickler_bytes(w, o->u.s.data, o->u.s.len);
        pickle_tuple_end(w, o->u.s.len ? 1 : 0);
        pickle_op(w, MP__OP_REDUCE);
        break;
    }
}

/*
 * An instance as CPython pickles one (protocol 4), so Python's unpickler
 * rebuilds the real object: an exception is REDUCE of its class with its
 * args; a Token (a plain class with __slots__ and __getstate__) is NEWOBJ
 * of the class with () and then BUILD with its state, the three-item args;
 * a proxy reference is REDUCE of RebuildProxy with its func as a global.
 */
static void pickle_instance(mp__pickler *w, const mp_obj *o)
{
    int cls = mp__instance_cls(o);
    const char *mod = mp__instance_module(cls), *name = mp__instance_name(cls);
    mp__pickler_str(w, mod, strlen(mod));
    mp__pickler_str(w, name, strlen(name));
    pickle_op(w, MP__OP_STACK_GLOBAL);
    if (cls == MP__CLS_REBUILD_PROXY) {
        /* RebuildProxy(func, token, serializer, kwds), func the global its
         * args name, as BaseProxy.__reduce__ returns it. */
        const mp_obj *args = o->u.seq.items[0];
        const mp_obj *fn = args->u.seq.items[0];
        if (!mp__proxy_args_ok(args)) { /* changed in place since it was made */
            w->err = w->err ? w->err : -EINVAL;
            return;
        }
        pickle_op(w, MP__OP_MARK);
        mp__pickler_str(w, mod, strlen(mod));
        mp__pickler_str(w, fn->u.s.data, fn->u.s.len);
        pickle_op(w, MP__OP_STACK_GLOBAL);
        for (size_t i = 1; i < 4; i++)
            pickle_dump(w, args->u.seq.items[i]);
        pickle_op(w, MP__OP_TUPLE);
        pickle_op(w, MP__OP_REDUCE);
    } else if (cls == MP__CLS_TOKEN) {
        pickle_op(w, MP__OP_EMPTY_TUPLE);
        pickle_op(w, MP__OP_NEWOBJ);
        pickle_dump(w, o->u.seq.items[0]);
        pickle_op(w, MP__OP_BUILD);
    } else {
        pickle_dump(w, o->u.seq.items[0]);
        pickle_op(w, MP__OP_REDUCE);
    }
}

static void pickle_dump(mp__pickler *w, const mp_obj *o)
{
    switch (o->type) {
    case MP_TYPE_NONE:
        pickle_op(w, MP__OP_NONE);
        break;
    case MP_TYPE_BOOL:
        pickle_op(w, o->u.b ? MP__OP_NEWTRUE : MP__OP_NEWFALSE);
        break;
    case MP_TYPE_INT:
        if (mp__obj_is_bigint(o))
            pickle_bigint(w, o);
        else
            pickle_int(w, o->u.i);
        break;
    case MP_TYPE_FLOAT:
        pickle_float(w, o->u.f);
        break;
    case MP_TYPE_STR:
        pickle_sized(w, MP__OP_SHORT_BINUNICODE, MP__OP_BINUNICODE, MP__OP_BINUNICODE8, o->u.s.data,
                     o->u.s.len);
        break;
    case MP_TYPE_BYTES:
        pickle_sized(w, MP__OP_SHORT_BINBYTES, MP__OP_BINBYTES, MP__OP_BINBYTES8, o->u.s.data,
                     o->u.s.len);
        break;
    case MP_TYPE_LIST: {
        pickle_op(w, MP__OP_EMPTY_LIST);
        size_t n = o->u.seq.len;
        for (size_t i = 0; i < n && !w->err;) {
            size_t k = n - i < PICKLE_BATCH ? n - i : PICKLE_BATCH;
            if (k == 1) {
                pickle_dump(w, o->u.seq.items[i]);
                pickle_op(w, MP__OP_APPEND);
            } else {
                pickle_op(w, MP__OP_MARK);
                for (size_t j = 0; j < k; j++)
                    pickle_dump(w, o->u.seq.items[i + j]);
                pickle_op(w, MP__OP_APPENDS);
            }
            i += k;
        }
        break;
    }
    case MP_TYPE_TUPLE: {
        size_t n = o->u.seq.len;
        if (n > 3)
            pickle_op(w, MP__OP_MARK);
        for (size_t i = 0; i < n && !w->err; i++)
            pickle_dump(w, o->u.seq.items[i]);
        pickle_tuple_end(w, n);
        break;
    }
    case MP_TYPE_DICT: {
        pickle_op(w, MP__OP_EMPTY_DICT);
        size_t left = o->u.d.used, i = 0;
        while (left && !w->err) {
            size_t k = left < PICKLE_BATCH ? left : PICKLE_BATCH;
            if (k > 1)
                pickle_op(w, MP__OP_MARK);
            for (size_t done = 0; done < k; i++) {
                MP__ASSERT(i < o->u.d.n); /* used live entries among n */
                const struct mp__dict_entry *e = &o->u.d.entries[i];
                if (!e->key)
                    continue;
                pickle_dump(w, e->key);
                pickle_dump(w, e->value);
                done++;
            }
            pickle_op(w, k > 1 ? MP__OP_SETITEMS : MP__OP_SETITEM);
            left -= k;
        }
        break;
    }
    case MP_TYPE_SET:
    case MP_TYPE_FROZENSET:
    case MP_TYPE_BYTEARRAY:
        pickle_dump_other(w, o);
        break;
    case MP_TYPE_INSTANCE:
        pickle_instance(w, o);
        break;
    default:
        w->err = -EINVAL; /* not a value type */
        break;
    }
}

MP_API int mp_obj_dumps(const mp_obj *o, void **out, size_t *len)
{
    unsigned char *p;
    if (out)
        *out = NULL;
    if (!out)
        return -EINVAL;
    int rc = mp__pickle_dumps(o, &p, len);
    if (rc == 0)
        *out = p;
    return rc;
}

int mp__pickle_dumps(const mp_obj *o, unsigned char **out, size_t *len)
{
    if (out)
        *out = NULL;
    if (!o || !out || !len)
        return -EINVAL;
    mp__pickler w = {NULL, 0, 0, 0};
    mp__pickler_start(&w);
    pickle_dump(&w, o);
    mp__pickler_stop(&w);
    if (w.err) {
        free(w.p);
        return w.err;
    }
    *out = w.p;
    *len = w.len;
    return 0;
}

/* ---- The piecewise builder (pickle.h) ---------------------------------------- */

void mp__pickler_start(mp__pickler *w)
{
    const unsigned char head[2] = {MP__OP_PROTO, MP__PICKLE_PROTOCOL};
    pickle_put(w, head, 2);
}

void mp__pickler_stop(mp__pickler *w)
{
    pickle_op(w, MP__OP_STOP);
}

void mp__pickler_obj(mp__pickler *w, const mp_obj *o)
{
    if (!o) {
        if (!w->err)
            w->err = -EINVAL;
        return;
    }
    pickle_dump(w, o);
}

void mp__pickler_none(mp__pickler *w)
{
    pickle_op(w, MP__OP_NONE);
}

void mp__pickler_bool(mp__pickler *w, bool v)
{
    pickle_op(w, v ? MP__OP_NEWTRUE : MP__OP_NEWFALSE);
}

void mp__pickler_int(mp__pickler *w, int64_t v)
{
    pickle_int(w, v);
}

void mp__pickler_float(mp__pickler *w, double v)
{
    pickle_float(w, v);
}

void mp__pickler_str(mp__pickler *w, const char *s, size_t len)
{
    pickle_sized(w, MP__OP_SHORT_BINUNICODE, MP__OP_BINUNICODE, MP__OP_BINUNICODE8, s, len);
}

void mp__pickler_bytes(mp__pickler *w, const void *p, size_t len)
{
    pickle_sized(w, MP__OP_SHORT_BINBYTES, MP__OP_BINBYTES, MP__OP_BINBYTES8, p, len);
}

void mp__pickler_mark(mp__pickler *w)
{
    pickle_op(w, MP__OP_MARK);
}

void mp__pickler_tuple(mp__pickler *w, size_t n)
{
    pickle_tuple_end(w, n);
}

void mp__pickler_list_begin(mp__pickler *w)
{
    pickle_op(w, MP__OP_EMPTY_LIST);
    pickle_op(w, MP__OP_MARK);
}

void mp__pickler_list_end(mp__pickler *w)
{
    pickle_op(w, MP__OP_APPENDS);
}
