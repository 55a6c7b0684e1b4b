/*
 * mgr_type_list_sort - the server list's methods that reorder or repeat it:
 * sort (Python's ordering of values, stable), reverse, and the operators
 * l + seq, l * n and l *= n. Static functions: lsort_. The rest of the
 * list is mgr_type_list.c.
 */
#include "codec/objimpl.h"
#include "manager/mgr_server.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Why a comparison failed: the pair Python's TypeError names. */
struct lsort_ctx {
    const mp_obj *bad_a, *bad_b;
};

/* An int (or bool) as little-endian two's complement bytes: a big int's
 * own, or the 8 bytes of an int64 written to buf. */
static const unsigned char *lsort_int_bytes(const mp_obj *o, unsigned char buf[8], size_t *len)
{
    if (o->type == MP_TYPE_INT && mp__obj_is_bigint(o)) {
        *len = o->u.s.len;
        return (const unsigned char *)o->u.s.data;
    }
    int64_t v = o->type == MP_TYPE_BOOL ? (int64_t)o->u.b : o->u.i;
    uint64_t u = (uint64_t)v;
    for (int i = 0; i < 8; i++)
        buf[i] = (unsigned char)(u >> (8 * i));
    *len = 8;
    return buf;
}

/* The sign (-1, 0, 1) of a - b for two's complement byte strings. */
static int lsort_cmp_le(const unsigned char *a, size_t la, const unsigned char *b, size_t lb)
{
    bool na = (a[la - 1] & 0x80) != 0, nb = (b[lb - 1] & 0x80) != 0;
    if (na != nb)
        return na ? -1 : 1;
    unsigned char ext = na ? 0xff : 0x00;
    for (size_t i = la > lb ? la : lb; i-- > 0;) {
        unsigned char x = i < la ? a[i] : ext, y = i < lb ? b[i] : ext;
        if (x != y)
            return x < y ? -1 : 1;
    }
    return 0;
}

/* The sign of f - i, exactly (Python compares a float and an int without
 * rounding the int); 2 for a NaN, which is unordered. */
static int lsort_cmp_float_int(double f, const mp_obj *i)
{
    if (isnan(f))
        return 2;
    if (isinf(f))
        return f > 0 ? 1 : -1;
    unsigned char ib[8], fb[MP__INT_DOUBLE_BYTES];
    size_t il, fl;
    const unsigned char *ip = lsort_int_bytes(i, ib, &il);
    if (fabs(f) >= 9223372036854775808.0) {
        /* |f| >= 2^63 is an integer: compare it as one. */
        if (!mp__int_from_double_big(f, fb, &fl))
            return 2;
        return lsort_cmp_le(fb, fl, ip, il);
    }
    if (il > 8) /* a big int lies beyond every such float */
        return (ip[il - 1] & 0x80) ? 1 : -1;
    int64_t iv = mp__int_le_to_i64(ip, il), t = (int64_t)f;
    if (t != iv)
        return t < iv ? -1 : 1;
    double frac = f - (double)t;
    return frac > 0 ? 1 : frac < 0 ? -1 : 0;
}

static bool lsort_is_num(int t)
{
    return t == MP_TYPE_BOOL || t == MP_TYPE_INT || t == MP_TYPE_FLOAT;
}

static bool lsort_is_bytes(int t)
{
    return t == MP_TYPE_BYTES || t == MP_TYPE_BYTEARRAY;
}

/* Python's a < b for the values a manager holds: 1 or 0, or MP_ETYPE when
 * Python raises TypeError ('<' not supported), with the pair in ctx.
 * Numbers compare by value, str with str and bytes with bytes by code
 * point / byte, lists with lists and tuples with tuples lexicographically
 * (the first unequal items decide, then the lengths). */
static int lsort_lt(const mp_obj *a, const mp_obj *b, struct lsort_ctx *ctx)
{
    int ta = a->type, tb = b->type;
    if (lsort_is_num(ta) && lsort_is_num(tb)) {
        if (ta == MP_TYPE_FLOAT && tb == MP_TYPE_FLOAT)
            return a->u.fl.value < b->u.fl.value;
        if (ta == MP_TYPE_FLOAT)
            return lsort_cmp_float_int(a->u.fl.value, b) == -1;
        if (tb == MP_TYPE_FLOAT)
            return lsort_cmp_float_int(b->u.fl.value, a) == 1;
        unsigned char ab[8], bb[8];
        size_t la, lb;
        const unsigned char *pa = lsort_int_bytes(a, ab, &la), *pb = lsort_int_bytes(b, bb, &lb);
        return lsort_cmp_le(pa, la, pb, lb) < 0;
    }
    if ((ta == MP_TYPE_STR && tb == MP_TYPE_STR) || (lsort_is_bytes(ta) && lsort_is_bytes(tb))) {
        /* UTF-8 orders as the code points do. */
        size_t la = a->u.s.len, lb = b->u.s.len;
        int c = memcmp(a->u.s.data, b->u.s.data, la < lb ? la : lb);
        return c != 0 ? c < 0 : la < lb;
    }
    if (ta == tb && (ta == MP_TYPE_LIST || ta == MP_TYPE_TUPLE)) {
        size_t la = a->u.seq.len, lb = b->u.seq.len;
        for (size_t i = 0; i < la && i < lb; i++)
            if (!mp_obj_equal(a->u.seq.items[i], b->u.seq.items[i]))
                return lsort_lt(a->u.seq.items[i], b->u.seq.items[i], ctx);
        return la < lb;
    }
    ctx->bad_a = a;
    ctx->bad_b = b;
    return MP_ETYPE;
}

/* Stable merge sort of v[0..n) by lsort_lt, with tmp of n slots: 0 or
 * MP_ETYPE (v then holds the same items in some order). */
static int lsort_merge(mp_obj **v, mp_obj **tmp, size_t n, struct lsort_ctx *ctx)
{
    if (n < 2)
        return 0;
    size_t h = n / 2;
    int rc = lsort_merge(v, tmp, h, ctx);
    if (rc == 0)
        rc = lsort_merge(v + h, tmp, n - h, ctx);
    if (rc < 0)
        return rc;
    memcpy(tmp, v, h * sizeof *v);
    size_t i = 0, j = h, k = 0;
    while (i < h && j < n) {
        /* Take from the right only when strictly less: equal items keep
         * their order. */
        int lt = lsort_lt(v[j], tmp[i], ctx);
        if (lt < 0) {
            memcpy(v + k, tmp + i, (h - i) * sizeof *v); /* every item stays in v */
            return lt;
        }
        v[k++] = lt ? v[j++] : tmp[i++];
    }
    while (i < h)
        v[k++] = tmp[i++];
    return 0;
}

static void lsort_reverse(mp_obj **v, size_t n)
{
    for (size_t i = 0; i < n / 2; i++) {
        mp_obj *t = v[i];
        v[i] = v[n - 1 - i];
        v[n - 1 - i] = t;
    }
}

/* sort(reverse[, key]): Python's list.sort(reverse=reverse), key None. The
 * items are sorted in a copy of the list's array, so that a TypeError
 * leaves the list as it was (Python's may leave it partly sorted). */
int mp__mgr_list_sort(const struct req *r)
{
    if (mp_obj_len(r->args) > 1 && !mp_obj_is_none(mp__mgr_arg(r, 1))) {
        /* The server never calls code: a key function cannot run here. */
        mp__mgr_reply_error(r->c, MP_ETYPE,
                            "TypeError: libmpipc's manager sorts without a key function "
                            "(key must be None)");
        return 0;
    }
    bool rev;
    if (mp_obj_get_bool(mp__mgr_arg(r, 0), &rev) < 0) {
        int64_t i;
        if (mp_obj_get_int(mp__mgr_arg(r, 0), &i) < 0)
            return MP_ETYPE;
        rev = i != 0;
    }
    mp_obj *l = r->o->value;
    size_t n = l->u.seq.len;
    if (n < 2) {
        /* Nothing to compare, as in Python: [None].sort() is fine. */
        mp__mgr_reply_none(r->c);
        return 0;
    }
    mp_obj **v = malloc(2 * n * sizeof *v);
    if (!v)
        return -ENOMEM;
    memcpy(v, l->u.seq.items, n * sizeof *v);
    /* Python sorts reverse=True by reversing, sorting and reversing, which
     * keeps equal items in their order. */
    if (rev)
        lsort_reverse(v, n);
    struct lsort_ctx ctx = {NULL, NULL};
    int rc = lsort_merge(v, v + n, n, &ctx);
    if (rc == 0) {
        if (rev)
            lsort_reverse(v, n);
        memcpy(l->u.seq.items, v, n * sizeof *v);
        mp__mgr_reply_none(r->c);
    } else {
        char text[160];
        snprintf(text, sizeof text,
                 "TypeError: '<' not supported between instances of '%s' and '%s'",
                 mp_type_name(mp_obj_type(ctx.bad_a)), mp_type_name(mp_obj_type(ctx.bad_b)));
        mp__mgr_reply_error(r->c, MP_ETYPE, text);
    }
    free(v);
    return 0;
}

int mp__mgr_list_reverse(const struct req *r)
{
    lsort_reverse(r->o->value->u.seq.items, r->o->value->u.seq.len);
    mp__mgr_reply_none(r->c);
    return 0;
}

/* Argument 0 as a repeat count (bool or int; Python's n <= 0 is 0) and
 * the length len * n would give: 0, MP_ETYPE, or MP_ETOOLONG when the
 * result could never be sent back (each item takes a byte at least). */
static int lsort_repeat(const struct req *r, size_t len, size_t *n, size_t *total)
{
    int64_t i;
    if (mp_obj_get_int(mp__mgr_arg(r, 0), &i) < 0) {
        mp__mgr_reply_error(r->c, MP_ETYPE,
                            "TypeError: can't multiply sequence by non-int of this type");
        return MP_ETYPE;
    }
    /* An empty list repeated is empty however large n is: no loop of n. */
    *n = i <= 0 || len == 0 ? 0 : (uint64_t)i > SIZE_MAX ? SIZE_MAX : (size_t)i;
    if (len && *n > r->s->max_request / len) {
        mp__mgr_reply_error(r->c, MP_ETOOLONG, "the repeated list would be too large to send");
        return MP_ETOOLONG;
    }
    *total = len * *n;
    return 0;
}

/* add(seq): l + seq as a new value (list or tuple seq); l is unchanged. */
int mp__mgr_list_add(const struct req *r)
{
    const mp_obj *seq = mp__mgr_arg(r, 0), *l = r->o->value;
    if (mp_obj_type(seq) != MP_TYPE_LIST && mp_obj_type(seq) != MP_TYPE_TUPLE) {
        mp__mgr_reply_error(r->c, MP_ETYPE,
                            "TypeError: can only concatenate list (not another type) to list");
        return 0;
    }
    struct sconn *c = r->c;
    size_t st = mp__mgr_reply_begin(c);
    mp__pickler_list_begin(&c->out);
    for (size_t i = 0; i < l->u.seq.len; i++)
        mp__pickler_obj(&c->out, l->u.seq.items[i]);
    for (ssize_t i = 0; i < mp_obj_len(seq); i++)
        mp__pickler_obj(&c->out, mp_obj_list_get(seq, i));
    mp__pickler_list_end(&c->out);
    mp__mgr_reply_end(c, st);
    return 0;
}

/* mul(n): l * n as a new value; l is unchanged. */
int mp__mgr_list_mul(const struct req *r)
{
    const mp_obj *l = r->o->value;
    size_t n, total;
    if (lsort_repeat(r, l->u.seq.len, &n, &total) < 0)
        return 0;
    struct sconn *c = r->c;
    size_t st = mp__mgr_reply_begin(c);
    mp__pickler_list_begin(&c->out);
    for (size_t k = 0; k < n && !c->out.err; k++)
        for (size_t i = 0; i < l->u.seq.len; i++)
            mp__pickler_obj(&c->out, l->u.seq.items[i]);
    mp__pickler_list_end(&c->out);
    mp__mgr_reply_end(c, st);
    return 0;
}

/* imul(n): l *= n in place; all the copies are made before the list
 * changes, so no memory leaves it as it was. */
int mp__mgr_list_imul(const struct req *r)
{
    mp_obj *l = r->o->value;
    size_t len = l->u.seq.len, n, total;
    if (lsort_repeat(r, len, &n, &total) < 0)
        return 0;
    if (n == 0) {
        while (l->u.seq.len > 0)
            mp_obj_free(mp__seq_take(l, l->u.seq.len - 1));
    } else if (n > 1) {
        int rc = mp__seq_reserve(l, total - len);
        if (rc < 0)
            return rc;
        for (size_t k = len; k < total; k++) {
            mp_obj *cp = mp_obj_copy(l->u.seq.items[k % len]);
            if (!cp || mp_obj_list_append(l, cp) < 0) {
                mp_obj_free(cp);
                while (l->u.seq.len > len)
                    mp_obj_free(mp__seq_take(l, l->u.seq.len - 1));
                return -ENOMEM;
            }
        }
    }
    mp__mgr_reply_none(r->c);
    return 0;
}
