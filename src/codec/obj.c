/*
 * obj - values (obj.h): nodes, the immortal ones, constructors, accessors,
 * lists and tuples, the tree's bookkeeping, copy and free. One of the obj
 * family (objimpl.h lists the files); statics here start with obj_.
 *
 * Every public mutator keeps three invariants that make the rest simple:
 * a node has at most one owner (parent), a container never holds one of its
 * ancestors, and no tree nests deeper than MP_OBJ_MAX_DEPTH. Free, copy,
 * equality and repr can then recurse without bound checks or cycle tracking.
 */
#include "codec/objimpl.h"
#include "core/internal.h"

#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* NaN identities: 1, 2, 3... never reused in a process (a 64-bit counter
 * does not wrap), so two NaN nodes share one only when one is a copy of the
 * other. The hash is keyed, so the sequence is not a pattern a peer can aim
 * at. */
static atomic_uint_fast64_t nan_ids;

void mp__obj_set_float(mp_obj *o, double v)
{
    o->u.fl.value = v;
    o->u.fl.nan_id =
        isnan(v) ? atomic_fetch_add_explicit(&nan_ids, 1, memory_order_relaxed) + 1 : 0;
}

/* ---- Immortal nodes ------------------------------------------------------
 *
 * None, False, True and the ints -5..256 (CPython's small-int cache) exist
 * once each. A decoded list of a million Nones or small ints then costs a
 * pointer per item, as in Python, instead of a node per item. Nothing
 * writes to these nodes, so threads share them freely.
 */

#define SMALL_INT_MIN (-5)
#define SMALL_INT_MAX 256

#define IMM(t, field, v)                                                                           \
    {                                                                                              \
        .type = (t), .flags = MP__F_IMMORTAL, .u.field = (v)                                       \
    }
#define I1(v)  IMM(MP_TYPE_INT, i, (v))
#define I4(v)  I1(v), I1((v) + 1), I1((v) + 2), I1((v) + 3)
#define I16(v) I4(v), I4((v) + 4), I4((v) + 8), I4((v) + 12)
#define I64(v) I16(v), I16((v) + 16), I16((v) + 32), I16((v) + 48)

static mp_obj imm_none = IMM(MP_TYPE_NONE, i, 0);
static mp_obj imm_bool[2] = {IMM(MP_TYPE_BOOL, b, false), IMM(MP_TYPE_BOOL, b, true)};
static mp_obj imm_int[SMALL_INT_MAX - SMALL_INT_MIN + 1] = {
    I1(-5), I1(-4), I1(-3), I1(-2), I1(-1), I64(0), I64(64), I64(128), I64(192), I1(256),
};

/* ---- UTF-8 ------------------------------------------------------------- */

/* Strict UTF-8; with surrogates, lone surrogates' 3-byte forms too (Python's
 * errors="surrogatepass"). */
static bool obj_utf8_check(const unsigned char *p, size_t len, bool surrogates)
{
    size_t i = 0;
    while (i < len) {
        unsigned c = p[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t need;
        unsigned lo = 0x80, hi = 0xbf; /* allowed range of the second byte */
        if (c >= 0xc2 && c <= 0xdf) {
            need = 1;
        } else if (c >= 0xe0 && c <= 0xef) {
            need = 2;
            if (c == 0xe0)
                lo = 0xa0; /* overlong */
            else if (c == 0xed && !surrogates)
                hi = 0x9f; /* surrogates U+D800..U+DFFF */
        } else if (c >= 0xf0 && c <= 0xf4) {
            need = 3;
            if (c == 0xf0)
                lo = 0x90; /* overlong */
            else if (c == 0xf4)
                hi = 0x8f; /* above U+10FFFF */
        } else {
            return false; /* continuation byte, overlong C0/C1, F5..FF */
        }
        if (len - i <= need)
            return false;
        if (p[i + 1] < lo || p[i + 1] > hi)
            return false;
        for (size_t k = 2; k <= need; k++)
            if (p[i + k] < 0x80 || p[i + k] > 0xbf)
                return false;
        i += need + 1;
    }
    return true;
}

bool mp__utf8_valid(const unsigned char *p, size_t len)
{
    return obj_utf8_check(p, len, false);
}

bool mp__str_valid(const unsigned char *p, size_t len)
{
    return obj_utf8_check(p, len, true);
}

/* ---- Nodes -------------------------------------------------------------- */

mp_obj *mp__obj_alloc(int type)
{
    mp_obj *o = calloc(1, sizeof *o);
    if (o)
        o->type = (uint8_t)type;
    return o;
}

mp_obj *mp__obj_strbytes(int type, const void *p, size_t len)
{
    size_t size;
    if (mp__add_overflows(sizeof(mp_obj), len, &size) || mp__add_overflows(size, 1, &size))
        return NULL;
    mp_obj *o = malloc(size);
    if (!o)
        return NULL;
    memset(o, 0, sizeof *o);
    o->type = (uint8_t)type;
    char *data = (char *)(o + 1);
    if (len)
        memcpy(data, p, len);
    data[len] = '\0';
    o->u.s.data = data;
    o->u.s.len = len;
    return o;
}

static bool obj_is_seq(const mp_obj *o)
{
    return o->type == MP_TYPE_LIST || o->type == MP_TYPE_TUPLE;
}

void mp__obj_free_node(mp_obj *o)
{
    if (!o || mp__obj_immortal(o))
        return;
    if (mp__obj_has_items(o))
        free(o->u.seq.items);
    else if (mp__obj_is_table(o))
        free(o->u.d.entries);
    free(o);
}

void mp__obj_free_tree(mp_obj *o)
{
    if (!o || mp__obj_immortal(o))
        return;
    if (mp__obj_has_items(o)) {
        for (size_t i = 0; i < o->u.seq.len; i++)
            mp__obj_free_tree(o->u.seq.items[i]);
    } else if (mp__obj_is_table(o)) {
        for (size_t i = 0; i < o->u.d.n; i++) {
            struct mp__dict_entry *e = &o->u.d.entries[i];
            if (e->key) {
                mp__obj_free_tree(e->key);
                mp__obj_free_tree(e->value); /* NULL in a set: nothing */
            }
        }
    }
    mp__obj_free_node(o);
}

MP_API void mp_obj_free(mp_obj *o)
{
    /* An item belongs to its container: freeing it here would leave the
     * container pointing at freed memory, so that misuse is ignored. */
    if (!o || o->parent)
        return;
    int saved = errno;
    mp__obj_free_tree(o);
    errno = saved;
}

MP_API mp_obj *mp_obj_none(void)
{
    return &imm_none;
}

MP_API mp_obj *mp_obj_bool(bool v)
{
    return &imm_bool[v ? 1 : 0];
}

mp_obj *mp__obj_immortal_int(int64_t v)
{
    return v >= SMALL_INT_MIN && v <= SMALL_INT_MAX ? &imm_int[v - SMALL_INT_MIN] : NULL;
}

MP_API mp_obj *mp_obj_int(int64_t v)
{
    mp_obj *o = mp__obj_immortal_int(v);
    if (o)
        return o;
    o = mp__obj_alloc(MP_TYPE_INT);
    if (o)
        o->u.i = v;
    return o;
}

MP_API mp_obj *mp_obj_float(double v)
{
    mp_obj *o = mp__obj_alloc(MP_TYPE_FLOAT);
    if (o)
        mp__obj_set_float(o, v);
    return o;
}

MP_API mp_obj *mp_obj_str(const char *s, size_t len)
{
    if (!s && len)
        return NULL;
    if (!mp__str_valid((const unsigned char *)s, len))
        return NULL;
    return mp__obj_strbytes(MP_TYPE_STR, s, len);
}

MP_API mp_obj *mp_obj_str_cstr(const char *s)
{
    if (!s)
        return NULL;
    return mp_obj_str(s, strlen(s));
}

MP_API mp_obj *mp_obj_bytes(const void *p, size_t len)
{
    if (!p && len)
        return NULL;
    return mp__obj_strbytes(MP_TYPE_BYTES, p, len);
}

MP_API mp_obj *mp_obj_bytearray(const void *p, size_t len)
{
    if (!p && len)
        return NULL;
    return mp__obj_strbytes(MP_TYPE_BYTEARRAY, p, len);
}

MP_API mp_obj *mp_obj_list_new(void)
{
    mp_obj *o = mp__obj_alloc(MP_TYPE_LIST);
    if (o)
        o->height = 1;
    return o;
}

MP_API mp_obj *mp_obj_tuple_new(void)
{
    mp_obj *o = mp__obj_alloc(MP_TYPE_TUPLE);
    if (o)
        o->height = 1;
    return o;
}

MP_API mp_obj *mp_obj_dict_new(void)
{
    mp_obj *o = mp__obj_alloc(MP_TYPE_DICT);
    if (o)
        o->height = 1;
    return o;
}

MP_API mp_obj *mp_obj_set_new(void)
{
    mp_obj *o = mp__obj_alloc(MP_TYPE_SET);
    if (o)
        o->height = 1;
    return o;
}

MP_API mp_obj *mp_obj_frozenset_new(void)
{
    mp_obj *o = mp__obj_alloc(MP_TYPE_FROZENSET);
    if (o)
        o->height = 1;
    return o;
}

/* ---- Accessors ---------------------------------------------------------- */

MP_API int mp_obj_type(const mp_obj *o)
{
    if (!o)
        return -EINVAL;
    return o->type;
}

MP_API const char *mp_type_name(int type)
{
    switch (type) {
    case MP_TYPE_NONE:
        return "NoneType";
    case MP_TYPE_BOOL:
        return "bool";
    case MP_TYPE_INT:
        return "int";
    case MP_TYPE_FLOAT:
        return "float";
    case MP_TYPE_STR:
        return "str";
    case MP_TYPE_BYTES:
        return "bytes";
    case MP_TYPE_LIST:
        return "list";
    case MP_TYPE_TUPLE:
        return "tuple";
    case MP_TYPE_DICT:
        return "dict";
    case MP_TYPE_SET:
        return "set";
    case MP_TYPE_FROZENSET:
        return "frozenset";
    case MP_TYPE_BYTEARRAY:
        return "bytearray";
    case MP_TYPE_INSTANCE:
        return "instance";
    default:
        return "?";
    }
}

MP_API bool mp_obj_is_none(const mp_obj *o)
{
    return o && o->type == MP_TYPE_NONE;
}

MP_API int mp_obj_get_bool(const mp_obj *o, bool *v)
{
    if (!o || !v)
        return -EINVAL;
    if (o->type != MP_TYPE_BOOL)
        return MP_ETYPE;
    *v = o->u.b;
    return 0;
}

MP_API int mp_obj_get_int(const mp_obj *o, int64_t *v)
{
    if (!o || !v)
        return -EINVAL;
    if (o->type == MP_TYPE_INT && mp__obj_is_bigint(o))
        return -ERANGE; /* beyond int64: Python's OverflowError */
    if (o->type == MP_TYPE_INT)
        *v = o->u.i;
    else if (o->type == MP_TYPE_BOOL)
        *v = o->u.b;
    else
        return MP_ETYPE;
    return 0;
}

MP_API int mp_obj_get_float(const mp_obj *o, double *v)
{
    if (!o || !v)
        return -EINVAL;
    if (o->type != MP_TYPE_FLOAT)
        return MP_ETYPE;
    *v = o->u.f;
    return 0;
}

/* The data of a str or bytes node of the given type. */
static int obj_get_data(const mp_obj *o, int type, const char **s, size_t *len)
{
    if (!o || !s)
        return -EINVAL;
    if (o->type != type)
        return MP_ETYPE;
    *s = o->u.s.data;
    if (len)
        *len = o->u.s.len;
    return 0;
}

MP_API int mp_obj_get_str(const mp_obj *o, const char **s, size_t *len)
{
    return obj_get_data(o, MP_TYPE_STR, s, len);
}

/* bytes or a bytearray: Python's bytes-like objects, read alike. */
MP_API int mp_obj_get_bytes(const mp_obj *o, const unsigned char **p, size_t *len)
{
    const char *s;
    int type = o && o->type == MP_TYPE_BYTEARRAY ? MP_TYPE_BYTEARRAY : MP_TYPE_BYTES;
    int rc = obj_get_data(o, type, p ? &s : NULL, len);
    if (rc == 0)
        *p = (const unsigned char *)s;
    return rc;
}

MP_API int mp_obj_get_bytes_mut(mp_obj *o, unsigned char **p, size_t *len)
{
    const char *s;
    int rc = obj_get_data(o, MP_TYPE_BYTEARRAY, p ? &s : NULL, len);
    if (rc == 0)
        *p = (unsigned char *)(uintptr_t)s; /* the node's own bytes (mp__obj_strbytes) */
    return rc;
}

MP_API ssize_t mp_obj_len(const mp_obj *o)
{
    if (!o)
        return -EINVAL;
    switch (o->type) {
    case MP_TYPE_LIST:
    case MP_TYPE_TUPLE:
        return (ssize_t)o->u.seq.len;
    case MP_TYPE_DICT:
    case MP_TYPE_SET:
    case MP_TYPE_FROZENSET:
        return (ssize_t)o->u.d.used;
    case MP_TYPE_BYTES:
    case MP_TYPE_BYTEARRAY:
        return (ssize_t)o->u.s.len;
    case MP_TYPE_STR: {
        /* Valid UTF-8: one code point per byte that is not a continuation. */
        ssize_t n = 0;
        for (size_t i = 0; i < o->u.s.len; i++)
            n += ((unsigned char)o->u.s.data[i] & 0xc0) != 0x80;
        return n;
    }
    default:
        return MP_ETYPE;
    }
}

/* ---- Sequences ---------------------------------------------------------- */

int mp__seq_cap_for(const mp_obj *seq, size_t n, size_t *cap)
{
    size_t need, c = seq->u.seq.cap;
    if (mp__add_overflows(seq->u.seq.len, n, &need))
        return -ENOMEM;
    if (need > c) {
        c = c ? c : 4;
        while (c < need) {
            if (c > SIZE_MAX / 2)
                return -ENOMEM;
            c *= 2;
        }
        if (c > SIZE_MAX / sizeof(mp_obj *))
            return -ENOMEM;
    }
    *cap = c;
    return 0;
}

int mp__seq_reserve(mp_obj *seq, size_t n)
{
    size_t cap;
    int rc = mp__seq_cap_for(seq, n, &cap);
    if (rc < 0 || cap == seq->u.seq.cap)
        return rc;
    mp_obj **items = realloc(seq->u.seq.items, cap * sizeof *items);
    if (!items)
        return -ENOMEM;
    seq->u.seq.items = items;
    seq->u.seq.cap = cap;
    return 0;
}

int mp__seq_push(mp_obj *seq, mp_obj *item)
{
    int rc = mp__seq_reserve(seq, 1);
    if (rc < 0)
        return rc;
    seq->u.seq.items[seq->u.seq.len++] = item;
    return 0;
}

static int obj_seq_append(mp_obj *seq, mp_obj *item)
{
    int rc = mp__obj_check_insert(seq, item);
    if (rc < 0)
        return rc;
    rc = mp__seq_push(seq, item);
    if (rc < 0)
        return rc;
    mp__obj_move(item, NULL, seq);
    mp__obj_raise_heights(seq, item->height);
    return 0;
}

MP_API int mp_obj_list_append(mp_obj *list, mp_obj *item)
{
    if (!list || !item)
        return -EINVAL;
    if (list->type != MP_TYPE_LIST)
        return MP_ETYPE;
    return obj_seq_append(list, item);
}

MP_API int mp_obj_tuple_append(mp_obj *tuple, mp_obj *item)
{
    if (!tuple || !item)
        return -EINVAL;
    if (tuple->type != MP_TYPE_TUPLE)
        return MP_ETYPE;
    if (tuple->parent)
        return -EINVAL; /* inside a value: immutable (it may be a dict key) */
    int rc = obj_seq_append(tuple, item);
    if (rc == 0)
        tuple->flags &= (uint8_t)~MP__F_HASHED;
    return rc;
}

/* Python's index rule: a negative i counts from the end. false when out of
 * range (IndexError). */
static bool obj_seq_index(size_t len, ssize_t i, size_t *at)
{
    size_t back = i < 0 ? (size_t) - (i + 1) + 1 : 0;
    if (i < 0 ? back > len : (size_t)i >= len)
        return false;
    *at = i < 0 ? len - back : (size_t)i;
    return true;
}

MP_API const mp_obj *mp_obj_list_get(const mp_obj *seq, ssize_t i)
{
    size_t at;
    if (!seq || !obj_is_seq(seq) || !obj_seq_index(seq->u.seq.len, i, &at))
        return NULL;
    return seq->u.seq.items[at];
}

MP_API mp_obj *mp_obj_list_get_mut(mp_obj *seq, ssize_t i)
{
    size_t at;
    if (!seq || !obj_is_seq(seq) || !obj_seq_index(seq->u.seq.len, i, &at))
        return NULL;
    return seq->u.seq.items[at];
}

MP_API int mp_obj_list_set(mp_obj *list, ssize_t i, mp_obj *item)
{
    if (!list || !item)
        return -EINVAL;
    if (list->type != MP_TYPE_LIST)
        return MP_ETYPE;
    size_t at;
    if (!obj_seq_index(list->u.seq.len, i, &at))
        return MP_EKEY;
    int rc = mp__obj_check_insert(list, item);
    if (rc < 0)
        return rc;
    MP__ASSERT(mp__obj_immortal(list->u.seq.items[at]) || list->u.seq.items[at]->parent == list);
    mp__obj_free_tree(list->u.seq.items[at]);
    list->u.seq.items[at] = item;
    mp__obj_move(item, NULL, list);
    /* Heights stay upper bounds when the old item was deeper. */
    mp__obj_raise_heights(list, item->height);
    return 0;
}

/* ---- Operations for the manager server (objimpl.h) ---------------------- */

mp_obj *mp__seq_take(mp_obj *seq, size_t i)
{
    if (!seq || !obj_is_seq(seq) || i >= seq->u.seq.len)
        return NULL;
    mp_obj *item = seq->u.seq.items[i];
    memmove(seq->u.seq.items + i, seq->u.seq.items + i + 1,
            (seq->u.seq.len - i - 1) * sizeof *seq->u.seq.items);
    seq->u.seq.len--;
    seq->flags &= (uint8_t)~MP__F_HASHED;
    mp__obj_move(item, seq, NULL);
    return item;
}

int mp__list_insert(mp_obj *list, size_t i, mp_obj *item)
{
    if (!list || !item)
        return -EINVAL;
    if (list->type != MP_TYPE_LIST)
        return MP_ETYPE;
    if (i > list->u.seq.len)
        return MP_EKEY;
    int rc = mp__obj_check_insert(list, item);
    if (rc == 0)
        rc = mp__seq_reserve(list, 1);
    if (rc < 0)
        return rc;
    memmove(list->u.seq.items + i + 1, list->u.seq.items + i,
            (list->u.seq.len - i) * sizeof *list->u.seq.items);
    list->u.seq.items[i] = item;
    list->u.seq.len++;
    mp__obj_move(item, NULL, list);
    mp__obj_raise_heights(list, item->height);
    return 0;
}

/* ---- Copy --------------------------------------------------------------- */

static size_t obj_node_cost(const mp_obj *o)
{
    size_t c = sizeof(mp_obj);
    if (mp__obj_is_strbytes(o) || mp__obj_is_bigint(o))
        c += o->u.s.len + 1;
    else if (mp__obj_has_items(o))
        c += o->u.seq.len * sizeof(mp_obj *);
    else if (mp__obj_is_table(o))
        c += o->u.d.used * (sizeof(struct mp__dict_entry) + 4 * sizeof(size_t));
    return c;
}

static int obj_charge(size_t *budget, size_t cost)
{
    if (*budget < cost)
        return MP_EPROTO;
    *budget -= cost;
    return 0;
}

int mp__obj_copy_limited(const mp_obj *o, size_t *budget, mp_obj **out)
{
    *out = NULL;
    if (mp__obj_immortal(o)) {
        *out = (mp_obj *)o; /* shared, never written: nothing to copy */
        return 0;
    }
    int rc = obj_charge(budget, obj_node_cost(o));
    if (rc < 0)
        return rc;
    mp_obj *c;
    if (mp__obj_is_strbytes(o) || mp__obj_is_bigint(o)) {
        c = mp__obj_strbytes(o->type, o->u.s.data, o->u.s.len);
        if (!c)
            return -ENOMEM;
        c->flags = o->flags & (MP__F_HASHED | MP__F_BIGINT);
        c->u.s.hash = o->u.s.hash;
        *out = c;
        return 0;
    }
    c = mp__obj_alloc(o->type);
    if (!c)
        return -ENOMEM;
    c->height = o->height;
    if (mp__obj_has_items(o)) {
        c->flags = o->flags & MP__F_HASHED;
        c->u.seq.hash = o->u.seq.hash;
        rc = mp__seq_reserve(c, o->u.seq.len);
        for (size_t i = 0; rc == 0 && i < o->u.seq.len; i++) {
            mp_obj *item;
            rc = mp__obj_copy_limited(o->u.seq.items[i], budget, &item);
            if (rc == 0) {
                mp__obj_move(item, NULL, c);
                c->u.seq.items[c->u.seq.len++] = item;
            }
        }
    } else if (mp__obj_is_table(o)) {
        c->flags = o->flags & MP__F_HASHED; /* a frozenset's hash */
        c->fs_hash = o->fs_hash;
        for (size_t i = 0; rc == 0 && i < o->u.d.n; i++) {
            const struct mp__dict_entry *e = &o->u.d.entries[i];
            if (!e->key)
                continue;
            mp_obj *k = NULL, *v = NULL;
            rc = mp__obj_copy_limited(e->key, budget, &k);
            if (rc == 0 && e->value) /* a set's entries have no value */
                rc = mp__obj_copy_limited(e->value, budget, &v);
            if (rc == 0)
                rc = mp__dict_insert_new(c, k, v, e->hash);
            if (rc < 0) {
                mp__obj_free_tree(k);
                mp__obj_free_tree(v);
                break;
            }
            mp__obj_move(k, NULL, c);
            if (v)
                mp__obj_move(v, NULL, c);
        }
    } else {
        c->u = o->u; /* a scalar; a NaN keeps its identity (objimpl.h) */
    }
    if (rc < 0) {
        mp__obj_free_tree(c);
        return rc;
    }
    *out = c;
    return 0;
}

MP_API mp_obj *mp_obj_copy(const mp_obj *o)
{
    if (!o)
        return NULL;
    size_t unlimited = SIZE_MAX;
    mp_obj *c;
    if (mp__obj_copy_limited(o, &unlimited, &c) < 0)
        return NULL;
    return c;
}
