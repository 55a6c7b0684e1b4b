/*
 * mgr_type_list_slice - the server list's l[slice], l[slice] = seq and
 * del l[slice], for a builtins.slice argument of get, set and del, with
 * Python's semantics (Objects/listobject.c list_subscript and
 * list_ass_subscript; Objects/sliceobject.c). Static functions: lslice_.
 */
#include "codec/objimpl.h"
#include "manager/mgr_server.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* A slice made concrete for a list of some length (PySlice_AdjustIndices):
 * the indexes start, start + step, ... (n of them). */
struct lslice {
    int64_t start, stop, step;
    size_t n;
};

/* One bound or the step, as _PyEval_SliceIndex reads it: an int clipped
 * to int64's range (a big int says only its sign), a bool as 0 or 1,
 * None as dflt. The decoder lets nothing else into a slice. */
static int64_t lslice_int(const mp_obj *o, int64_t dflt)
{
    if (o->type == MP_TYPE_NONE)
        return dflt;
    if (o->type == MP_TYPE_BOOL)
        return o->u.b ? 1 : 0;
    MP__ASSERT(o->type == MP_TYPE_INT);
    if (!mp__obj_is_bigint(o))
        return o->u.i;
    bool neg = (((const unsigned char *)o->u.s.data)[o->u.s.len - 1] & 0x80) != 0;
    return neg ? INT64_MIN : INT64_MAX;
}

/* Python's PySlice_Unpack and PySlice_AdjustIndices for a list of len
 * items: 0, or MP_EVALUE (replied) for a step of 0. */
static int lslice_of(const struct req *r, const mp_obj *sl, size_t len, struct lslice *out)
{
    const mp_obj *args = mp_obj_instance_args(sl);
    int64_t step = lslice_int(mp_obj_list_get(args, 2), 1);
    if (step == 0) {
        mp__mgr_reply_error(r->c, MP_EVALUE, "ValueError: slice step cannot be zero");
        return MP_EVALUE;
    }
    if (step < -INT64_MAX)
        step = -INT64_MAX; /* so that -step fits, as Python clips it */
    int64_t n = (int64_t)len;
    int64_t b[2] = {lslice_int(mp_obj_list_get(args, 0), step < 0 ? INT64_MAX : 0),
                    lslice_int(mp_obj_list_get(args, 1), step < 0 ? INT64_MIN : INT64_MAX)};
    for (int k = 0; k < 2; k++) {
        if (b[k] < 0) {
            b[k] = b[k] < -n ? (step < 0 ? -1 : 0) : b[k] + n;
        } else if (b[k] >= n) {
            b[k] = step < 0 ? n - 1 : n;
        }
    }
    out->start = b[0];
    out->stop = b[1];
    out->step = step;
    out->n = 0;
    if (step < 0 && b[1] < b[0])
        out->n = (size_t)((b[0] - b[1] - 1) / -step + 1);
    else if (step > 0 && b[0] < b[1])
        out->n = (size_t)((b[1] - b[0] - 1) / step + 1);
    return 0;
}

/* The list index of the slice's item k. */
static size_t lslice_at(const struct lslice *s, size_t k)
{
    return (size_t)(s->start + (int64_t)k * s->step);
}

/* Free the items [a, b) of list l and close the gap. */
static void lslice_cut(mp_obj *l, size_t a, size_t b)
{
    for (size_t i = a; i < b; i++) {
        mp_obj *it = l->u.seq.items[i];
        mp__obj_move(it, l, NULL);
        mp_obj_free(it);
    }
    memmove(l->u.seq.items + a, l->u.seq.items + b, (l->u.seq.len - b) * sizeof(mp_obj *));
    l->u.seq.len -= b - a;
}

/* Put item (a root) into list l at slot i, which the caller has emptied. */
static void lslice_place(mp_obj *l, size_t i, mp_obj *item)
{
    mp__obj_move(item, NULL, l);
    l->u.seq.items[i] = item;
    if ((unsigned)item->height + 1 > l->height)
        l->height = (uint16_t)(item->height + 1);
}

int mp__mgr_list_get_slice(const struct req *r)
{
    const mp_obj *l = r->o->value;
    struct lslice s;
    if (lslice_of(r, mp__mgr_arg(r, 0), l->u.seq.len, &s) < 0)
        return 0;
    struct sconn *c = r->c;
    size_t st = mp__mgr_reply_begin(c);
    mp__pickler_list_begin(&c->out);
    for (size_t k = 0; k < s.n && !c->out.err; k++)
        mp__pickler_obj(&c->out, l->u.seq.items[lslice_at(&s, k)]);
    mp__pickler_list_end(&c->out);
    mp__mgr_reply_end(c, st);
    return 0;
}

/* l[a:b] = seq (step 1): the items [a, b) give way to seq's, which may be
 * more or fewer. Room is made first, so a failure changes nothing. */
static int lslice_replace(mp_obj *l, size_t a, size_t b, mp_obj *seq)
{
    size_t m = seq->u.seq.len, old = b - a;
    if (m > old) {
        int rc = mp__seq_reserve(l, m - old);
        if (rc < 0)
            return rc;
    }
    lslice_cut(l, a, b);
    memmove(l->u.seq.items + a + m, l->u.seq.items + a, (l->u.seq.len - a) * sizeof(mp_obj *));
    l->u.seq.len += m;
    /* Taken from the end, each take moves nothing in seq. */
    for (size_t k = m; k-- > 0;)
        lslice_place(l, a + k, mp__seq_take(seq, k));
    return 0;
}

int mp__mgr_list_set_slice(const struct req *r)
{
    mp_obj *l = r->o->value, *seq = mp__mgr_arg(r, 1);
    struct lslice s;
    if (lslice_of(r, mp__mgr_arg(r, 0), l->u.seq.len, &s) < 0)
        return 0;
    int t = seq->type;
    if (t != MP_TYPE_LIST && t != MP_TYPE_TUPLE) {
        /* Python takes any iterable; the server takes what a list is
         * made of on the wire. */
        mp__mgr_reply_error(r->c, MP_ETYPE, "TypeError: can only assign an iterable");
        return 0;
    }
    if (seq->height + 1u > MP_OBJ_MAX_DEPTH) {
        mp__mgr_reply_error(r->c, MP_EVALUE, "ValueError: the items nest too deep");
        return 0;
    }
    if (s.step == 1) {
        /* Python's list_ass_slice: l[5:2] = seq inserts at 5. */
        size_t a = (size_t)s.start, b = s.stop > s.start ? (size_t)s.stop : a;
        int rc = lslice_replace(l, a, b, seq);
        if (rc == 0)
            mp__mgr_reply_none(r->c);
        return rc;
    }
    if (seq->u.seq.len != s.n) {
        char text[160];
        snprintf(text, sizeof text,
                 "ValueError: attempt to assign sequence of size %zu to extended slice of size %zu",
                 seq->u.seq.len, s.n);
        mp__mgr_reply_error(r->c, MP_EVALUE, text);
        return 0;
    }
    for (size_t k = s.n; k-- > 0;) {
        size_t i = lslice_at(&s, k);
        mp_obj *old = l->u.seq.items[i];
        mp__obj_move(old, l, NULL);
        mp_obj_free(old);
        lslice_place(l, i, mp__seq_take(seq, k));
    }
    mp__mgr_reply_none(r->c);
    return 0;
}

int mp__mgr_list_del_slice(const struct req *r)
{
    mp_obj *l = r->o->value;
    struct lslice s;
    if (lslice_of(r, mp__mgr_arg(r, 0), l->u.seq.len, &s) < 0)
        return 0;
    if (s.step == 1 || s.n <= 1) {
        if (s.n > 0)
            lslice_cut(l, (size_t)s.start, (size_t)s.start + s.n);
        mp__mgr_reply_none(r->c);
        return 0;
    }
    /* The same indexes in ascending order, then one pass that keeps the
     * items between them. */
    size_t first = s.step > 0 ? (size_t)s.start : lslice_at(&s, s.n - 1);
    size_t gap = (size_t)(s.step > 0 ? s.step : -s.step), w = first, k = 0;
    for (size_t i = first; i < l->u.seq.len; i++) {
        mp_obj *it = l->u.seq.items[i];
        if (k < s.n && i == first + k * gap) {
            k++;
            mp__obj_move(it, l, NULL);
            mp_obj_free(it);
        } else {
            l->u.seq.items[w++] = it;
        }
    }
    l->u.seq.len = w;
    mp__mgr_reply_none(r->c);
    return 0;
}
