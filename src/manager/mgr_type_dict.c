/*
 * mgr_type_dict - the manager server's dict: its methods and their table
 * (with each method's argument count). Static functions: sdict_ (s for server). Siblings:
 * mgr_type_list.c, mgr_type_lock.c, mgr_type_queue.c, mgr_type_manager.c.
 */
#include "codec/objimpl.h"
#include "manager/mgr_server.h"

#include <errno.h>
#include <stdlib.h>

static int sdict_check_hashable(const mp_obj *key)
{
    uint64_t h;
    return mp__obj_hash(key, false, &h);
}

/* Move the request's key (argument 0) and the value at argument vi into the
 * dict: 0, or the failure's code with both freed. */
static int sdict_store(const struct req *r, size_t vi)
{
    mp_obj *value = mp__seq_take(r->args, vi);
    mp_obj *key = mp__seq_take(r->args, 0);
    int rc = mp_obj_dict_set(r->o->value, key, value);
    if (rc < 0) {
        mp_obj_free(key);
        mp_obj_free(value);
    }
    return rc;
}

/* The value under the request's key (argument 0): 1 with *v set, 0 when
 * absent, or the code of an unhashable key. */
static int sdict_lookup(const struct req *r, mp_obj **v)
{
    int rc = sdict_check_hashable(mp__mgr_arg(r, 0));
    if (rc < 0)
        return rc;
    *v = mp_obj_dict_get_mut(r->o->value, mp__mgr_arg(r, 0));
    return *v != NULL;
}

/* get(key) is d[key]: KeyError when absent. get(key, default) is Python's
 * d.get(key, default): the default when absent. */
static int sdict_get(const struct req *r)
{
    mp_obj *v;
    int rc = sdict_lookup(r, &v);
    if (rc < 0)
        return rc;
    if (rc)
        mp__mgr_reply_obj(r->c, v);
    else if (mp_obj_len(r->args) == 2)
        mp__mgr_reply_obj(r->c, mp__mgr_arg(r, 1));
    else
        mp__mgr_reply_keyerror(r->c, mp__mgr_arg(r, 0));
    return 0;
}

static int sdict_set(const struct req *r)
{
    int rc = sdict_store(r, 1);
    if (rc < 0)
        return rc;
    mp__mgr_reply_none(r->c);
    return 0;
}

static int sdict_del(const struct req *r)
{
    int rc = mp_obj_dict_del(r->o->value, mp__mgr_arg(r, 0));
    if (rc < 0)
        return rc;
    mp__mgr_reply_none(r->c);
    return 0;
}

static int sdict_contains(const struct req *r)
{
    mp_obj *v;
    int rc = sdict_lookup(r, &v);
    if (rc < 0)
        return rc;
    mp__mgr_reply_bool(r->c, rc == 1);
    return 0;
}

/* keys(), values(), items(): a list built straight into the reply. */
enum { DICT_KEYS, DICT_VALUES, DICT_ITEMS };

static int sdict_view(const struct req *r, int which)
{
    struct sconn *c = r->c;
    size_t st = mp__mgr_reply_begin(c);
    mp__pickler_list_begin(&c->out);
    size_t pos = 0;
    const mp_obj *k, *v;
    while (mp_obj_dict_next(r->o->value, &pos, &k, &v) == 1) {
        if (which != DICT_VALUES)
            mp__pickler_obj(&c->out, k);
        if (which != DICT_KEYS)
            mp__pickler_obj(&c->out, v);
        if (which == DICT_ITEMS)
            mp__pickler_tuple(&c->out, 2);
    }
    mp__pickler_list_end(&c->out);
    mp__mgr_reply_end(c, st);
    return 0;
}

static int sdict_keys(const struct req *r)
{
    return sdict_view(r, DICT_KEYS);
}

static int sdict_values(const struct req *r)
{
    return sdict_view(r, DICT_VALUES);
}

static int sdict_items(const struct req *r)
{
    return sdict_view(r, DICT_ITEMS);
}

/* pop(key): the item leaves the dict only once its reply stood. */
static int sdict_pop(const struct req *r)
{
    mp_obj *v;
    int rc = sdict_lookup(r, &v);
    if (rc < 0)
        return rc;
    if (!rc) {
        mp__mgr_reply_keyerror(r->c, mp__mgr_arg(r, 0));
        return 0;
    }
    if (mp__mgr_reply_obj(r->c, v) == 0)
        (void)mp_obj_dict_del(r->o->value, mp__mgr_arg(r, 0)); /* present: it cannot fail */
    return 0;
}

/* The last inserted item of a non-empty dict (what popitem() takes). The
 * entries are in insertion order, deleted ones with a NULL key
 * (objimpl.h). */
static void sdict_last(const mp_obj *d, const mp_obj **k, const mp_obj **v)
{
    size_t i = d->u.d.n;
    while (i > 0 && !d->u.d.entries[i - 1].key)
        i--;
    MP__ASSERT(i > 0);
    *k = d->u.d.entries[i - 1].key;
    *v = d->u.d.entries[i - 1].value;
}

static int sdict_popitem(const struct req *r)
{
    struct sconn *c = r->c;
    if (mp_obj_len(r->o->value) == 0) {
        mp__mgr_reply_error(c, MP_EKEY, "KeyError: popitem(): dictionary is empty");
        return 0;
    }
    const mp_obj *k, *v;
    sdict_last(r->o->value, &k, &v);
    size_t st = mp__mgr_reply_begin(c);
    mp__pickler_obj(&c->out, k);
    mp__pickler_obj(&c->out, v);
    mp__pickler_tuple(&c->out, 2);
    if (mp__mgr_reply_end(c, st) != 0)
        return 0; /* the item stays */
    mp_obj *kt, *vt;
    if (mp__dict_popitem(r->o->value, &kt, &vt) == 1) {
        mp_obj_free(kt);
        mp_obj_free(vt);
    }
    return 0;
}

static int sdict_setdefault(const struct req *r)
{
    mp_obj *v;
    int rc = sdict_lookup(r, &v);
    if (rc < 0)
        return rc;
    if (rc) {
        mp__mgr_reply_obj(r->c, v);
        return 0;
    }
    /* The reply first: a default too large for the reader is not stored
     * behind an error. */
    size_t st = r->c->out.len;
    if (mp__mgr_reply_obj(r->c, mp__mgr_arg(r, 1)) != 0)
        return 0;
    rc = sdict_store(r, 1);
    if (rc < 0)
        mp__mgr_reply_withdraw(r->c, st);
    return rc;
}

/* update()'s argument when it is a sequence: every item a pair with a
 * hashable key. 0 or the error replied. */
static int sdict_check_pairs(struct sconn *c, const mp_obj *other, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const mp_obj *p = mp_obj_list_get(other, i);
        int pt = mp_obj_type(p);
        if ((pt != MP_TYPE_TUPLE && pt != MP_TYPE_LIST) || mp_obj_len(p) != 2) {
            mp__mgr_reply_error(c, MP_EVALUE, "ValueError: update sequence element is not a pair");
            return MP_EVALUE;
        }
        if (sdict_check_hashable(mp_obj_list_get(p, 0)) < 0) {
            mp__mgr_reply_status(c, MP_ETYPE);
            return MP_ETYPE;
        }
    }
    return 0;
}

/* dict.update(other): other is a dict or a sequence of (key, value) pairs.
 * The pairs are checked before anything changes, then moved (not copied)
 * out of the request. */
static int sdict_update(const struct req *r)
{
    mp_obj *other = mp__mgr_arg(r, 0);
    int t = mp_obj_type(other);
    if (t != MP_TYPE_DICT && t != MP_TYPE_LIST && t != MP_TYPE_TUPLE) {
        mp__mgr_reply_error(r->c, MP_ETYPE,
                            "TypeError: update() takes a dict or a sequence of pairs");
        return 0;
    }
    size_t n = (size_t)mp_obj_len(other);
    if (t != MP_TYPE_DICT && sdict_check_pairs(r->c, other, n) < 0)
        return 0;
    mp_obj **kv = malloc((n ? n : 1) * 2 * sizeof *kv);
    if (!kv)
        return -ENOMEM;
    if (t == MP_TYPE_DICT) {
        /* popitem() takes from the end: fill the array backwards. */
        for (size_t i = n; i-- > 0;)
            (void)mp__dict_popitem(other, &kv[2 * i], &kv[2 * i + 1]);
    } else {
        for (size_t i = 0; i < n; i++) {
            mp_obj *p = mp_obj_list_get_mut(other, (ssize_t)i);
            kv[2 * i + 1] = mp__seq_take(p, 1);
            kv[2 * i] = mp__seq_take(p, 0);
        }
    }
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        if (rc == 0)
            rc = mp_obj_dict_set(r->o->value, kv[2 * i], kv[2 * i + 1]);
        if (rc < 0) { /* out of memory part-way: Python's update is not atomic either */
            mp_obj_free(kv[2 * i]);
            mp_obj_free(kv[2 * i + 1]);
        }
    }
    free(kv);
    if (rc < 0)
        return rc;
    mp__mgr_reply_none(r->c);
    return 0;
}

/* d[key] += delta, atomically; a missing key counts as 0. */
static int sdict_add(const struct req *r)
{
    struct sconn *c = r->c;
    int64_t delta;
    if (mp_obj_get_int(mp__mgr_arg(r, 1), &delta) < 0) {
        mp__mgr_reply_error(c, MP_ETYPE, "TypeError: the delta must be an int");
        return 0;
    }
    mp_obj *v;
    int rc = sdict_lookup(r, &v);
    if (rc < 0)
        return rc;
    int64_t sum = delta;
    if (rc) {
        int64_t cur;
        if (mp_obj_type(v) != MP_TYPE_INT && mp_obj_type(v) != MP_TYPE_BOOL) {
            mp__mgr_reply_error(c, MP_ETYPE, "TypeError: the stored value is not an int");
            return 0;
        }
        if (!mp_obj_int_fits(v))
            return -EOVERFLOW; /* a Python int beyond int64: nothing changes */
        (void)mp_obj_get_int(v, &cur);
        if (__builtin_add_overflow(cur, delta, &sum))
            return -EOVERFLOW;
    }
    /* A new node, never the stored one changed in place: small ints and
     * bools are shared immortal nodes (objimpl.h). */
    mp_obj *nv = mp_obj_int(sum);
    mp_obj *key = mp__seq_take(r->args, 0);
    rc = nv ? mp_obj_dict_set(r->o->value, key, nv) : -ENOMEM;
    if (rc < 0) {
        mp_obj_free(nv);
        mp_obj_free(key);
        return rc;
    }
    mp__mgr_reply_int(c, sum);
    return 0;
}

/* cas's reply: (swapped, present, current), present and current as they
 * were before the call (current None when absent). */
static int sdict_cas_reply(struct sconn *c, bool swapped, const mp_obj *v, size_t *start)
{
    size_t st = mp__mgr_reply_begin(c);
    mp__pickler_bool(&c->out, swapped);
    mp__pickler_bool(&c->out, v != NULL);
    if (v)
        mp__pickler_obj(&c->out, v);
    else
        mp__pickler_none(&c->out);
    mp__pickler_tuple(&c->out, 3);
    *start = st;
    return mp__mgr_reply_end(c, st);
}

/* Compare and set: args (key, desired) swaps only when key is absent;
 * (key, desired, expected) only when d[key] == expected. */
static int sdict_cas(const struct req *r)
{
    size_t n = (size_t)mp_obj_len(r->args), st;
    mp_obj *v;
    int rc = sdict_lookup(r, &v);
    if (rc < 0)
        return rc;
    if (!rc)
        v = NULL;
    bool match = n == 2 ? v == NULL : (v != NULL && mp_obj_equal(v, mp__mgr_arg(r, 2)));
    /* Reply first (the old value is freed by the set), and swap only when
     * the reply stands: a reader that cannot take the old value gets
     * MP_ETOOLONG with nothing changed. */
    if (sdict_cas_reply(r->c, match, v, &st) != 0 || !match)
        return 0;
    rc = sdict_store(r, 1);
    if (rc < 0)
        mp__mgr_reply_withdraw(r->c, st);
    return rc;
}

static const struct method dict_methods[] = {
    {"get", 1, 2, sdict_get},
    {"set", 2, 2, sdict_set},
    {"del", 1, 1, sdict_del},
    {"contains", 1, 1, sdict_contains},
    {"len", 0, 0, mp__mgr_value_len},
    {"keys", 0, 0, sdict_keys},
    {"values", 0, 0, sdict_values},
    {"items", 0, 0, sdict_items},
    {"clear", 0, 0, mp__mgr_value_clear},
    {"pop", 1, 1, sdict_pop},
    {"popitem", 0, 0, sdict_popitem},
    {"setdefault", 2, 2, sdict_setdefault},
    {"update", 1, 1, sdict_update},
    {"copy", 0, 0, mp__mgr_value_copy},
    {"add", 2, 2, sdict_add},
    {"cas", 2, 3, sdict_cas},
};

const struct stype mp__mgr_type_dict = {"dict", MP__MGR_METHODS(dict_methods), mp__mgr_value_init,
                                        NULL};
