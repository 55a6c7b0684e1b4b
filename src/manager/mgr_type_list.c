/*
 * mgr_type_list - the manager server's list: its methods and their table
 * (with each method's argument count). Static functions: slist_ (s for server). Siblings:
 * mgr_type_list_slice.c (get, set and del of a slice), mgr_type_dict.c, mgr_type_lock.c,
 * mgr_type_queue.c, mgr_type_manager.c.
 */
#include "codec/objimpl.h"
#include "manager/mgr_server.h"

#include <errno.h>
#include <stdio.h>

/* Python's index normalisation for item access: i < 0 counts from the end;
 * out of range is IndexError (MP_EKEY). */
static int slist_index_of(const mp_obj *io, size_t len, size_t *out)
{
    int64_t i;
    if (mp_obj_get_int(io, &i) < 0)
        return MP_ETYPE;
    if (i < 0)
        i += (int64_t)len;
    if (i < 0 || (uint64_t)i >= len)
        return MP_EKEY;
    *out = (size_t)i;
    return 0;
}

/* Python's slice clamping for one bound (None: the default). */
static int slist_slice_bound(const mp_obj *o, size_t len, size_t dflt, size_t *out)
{
    if (mp_obj_is_none(o)) {
        *out = dflt;
        return 0;
    }
    int64_t i;
    if (mp_obj_get_int(o, &i) < 0)
        return MP_ETYPE;
    if (i < 0) {
        i += (int64_t)len;
        if (i < 0)
            i = 0;
    }
    *out = (uint64_t)i > len ? len : (size_t)i;
    return 0;
}

/* Argument 0 as an index of the list: 0 with *i set, or the error replied
 * (IndexError with the text given, or TypeError). */
static int slist_arg_index(const struct req *r, size_t len, const char *index_error, size_t *i)
{
    int rc = slist_index_of(mp__mgr_arg(r, 0), len, i);
    if (rc == MP_EKEY) {
        mp__mgr_reply_error(r->c, rc, index_error);
    } else if (rc < 0) {
        char text[96]; /* Python's words */
        snprintf(text, sizeof text, "TypeError: list indices must be integers or slices, not %s",
                 mp_type_name(mp_obj_type(mp__mgr_arg(r, 0))));
        mp__mgr_reply_error(r->c, rc, text);
    }
    return rc;
}

/* Give item to the list at index at, inserted or (replace) in place of the
 * item there: 0, or the code of the failure with the item freed. */
static int slist_put(mp_obj *list, size_t at, mp_obj *item, bool replace)
{
    int rc = replace ? mp_obj_list_set(list, at, item) : mp__list_insert(list, at, item);
    if (rc < 0)
        mp_obj_free(item);
    return rc;
}

/* Move argument vi into the list at index at (slist_put): 0 with None
 * replied, or the code of the failure. */
static int slist_store_arg(const struct req *r, size_t at, size_t vi, bool replace)
{
    int rc = slist_put(r->o->value, at, mp__seq_take(r->args, vi), replace);
    if (rc < 0)
        return rc;
    mp__mgr_reply_none(r->c);
    return 0;
}

static int slist_append(const struct req *r)
{
    return slist_store_arg(r, (size_t)mp_obj_len(r->o->value), 0, false);
}

static int slist_extend(const struct req *r)
{
    mp_obj *seq = mp__mgr_arg(r, 0);
    int t = mp_obj_type(seq);
    if (t != MP_TYPE_LIST && t != MP_TYPE_TUPLE) {
        mp__mgr_reply_error(r->c, MP_ETYPE, "TypeError: extend() takes a list or tuple");
        return 0;
    }
    size_t n = (size_t)mp_obj_len(seq);
    int rc = mp__seq_reserve(r->o->value, n);
    if (rc < 0)
        return rc;
    /* Move the items, last first (taking the last item moves nothing),
     * then insert them in order at the old end. */
    size_t at = (size_t)mp_obj_len(r->o->value);
    for (size_t i = n; i-- > 0;)
        if ((rc = slist_put(r->o->value, at, mp__seq_take(seq, i), false)) < 0)
            return rc;
    mp__mgr_reply_none(r->c);
    return 0;
}

static int slist_get(const struct req *r)
{
    if (mp__instance_is_slice(mp__mgr_arg(r, 0)))
        return mp__mgr_list_get_slice(r);
    size_t i;
    if (slist_arg_index(r, (size_t)mp_obj_len(r->o->value), "IndexError: list index out of range",
                        &i) == 0)
        mp__mgr_reply_obj(r->c, mp_obj_list_get(r->o->value, i));
    return 0;
}

static int slist_set(const struct req *r)
{
    if (mp__instance_is_slice(mp__mgr_arg(r, 0)))
        return mp__mgr_list_set_slice(r);
    size_t i;
    if (slist_arg_index(r, (size_t)mp_obj_len(r->o->value),
                        "IndexError: list assignment index out of range", &i) < 0)
        return 0;
    return slist_store_arg(r, i, 1, true);
}

static int slist_del_or_pop(const struct req *r, bool pop)
{
    size_t len = (size_t)mp_obj_len(r->o->value);
    if (pop && len == 0) {
        mp__mgr_reply_error(r->c, MP_EKEY, "IndexError: pop from empty list");
        return 0;
    }
    size_t i = len - 1;
    if (mp_obj_len(r->args) > 0 &&
        slist_arg_index(r, len,
                        pop ? "IndexError: pop index out of range"
                            : "IndexError: list assignment index out of range",
                        &i) < 0)
        return 0;
    /* A pop removes the item only once its reply stood. */
    if (pop && mp__mgr_reply_obj(r->c, mp_obj_list_get(r->o->value, i)) != 0)
        return 0;
    mp_obj_free(mp__seq_take(r->o->value, i));
    if (!pop)
        mp__mgr_reply_none(r->c);
    return 0;
}

static int slist_pop(const struct req *r)
{
    return slist_del_or_pop(r, true);
}

static int slist_del(const struct req *r)
{
    if (mp__instance_is_slice(mp__mgr_arg(r, 0)))
        return mp__mgr_list_del_slice(r);
    return slist_del_or_pop(r, false);
}

static int slist_insert(const struct req *r)
{
    int64_t i;
    if (mp_obj_get_int(mp__mgr_arg(r, 0), &i) < 0)
        return MP_ETYPE;
    int64_t len = (int64_t)mp_obj_len(r->o->value);
    if (i < 0) {
        i += len;
        if (i < 0)
            i = 0;
    }
    if (i > len)
        i = len;
    return slist_store_arg(r, (size_t)i, 1, false);
}

static int slist_slice(const struct req *r)
{
    struct sconn *c = r->c;
    size_t len = (size_t)mp_obj_len(r->o->value), a, b;
    if (slist_slice_bound(mp__mgr_arg(r, 0), len, 0, &a) < 0 ||
        slist_slice_bound(mp__mgr_arg(r, 1), len, len, &b) < 0)
        return MP_ETYPE;
    size_t st = mp__mgr_reply_begin(c);
    mp__pickler_list_begin(&c->out);
    for (size_t i = a; i < b; i++)
        mp__pickler_obj(&c->out, mp_obj_list_get(r->o->value, i));
    mp__pickler_list_end(&c->out);
    mp__mgr_reply_end(c, st);
    return 0;
}

/* The first index holding a value equal to v, or -1. */
static ssize_t slist_find(const mp_obj *list, const mp_obj *v)
{
    size_t n = (size_t)mp_obj_len(list);
    for (size_t i = 0; i < n; i++)
        if (mp_obj_equal(mp_obj_list_get(list, i), v))
            return (ssize_t)i;
    return -1;
}

static int slist_index(const struct req *r)
{
    ssize_t i = slist_find(r->o->value, mp__mgr_arg(r, 0));
    if (i < 0)
        mp__mgr_reply_error(r->c, MP_EVALUE, "ValueError: value is not in list");
    else
        mp__mgr_reply_int(r->c, i);
    return 0;
}

static int slist_count(const struct req *r)
{
    size_t n = (size_t)mp_obj_len(r->o->value);
    int64_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += mp_obj_equal(mp_obj_list_get(r->o->value, i), mp__mgr_arg(r, 0));
    mp__mgr_reply_int(r->c, k);
    return 0;
}

static int slist_contains(const struct req *r)
{
    mp__mgr_reply_bool(r->c, slist_find(r->o->value, mp__mgr_arg(r, 0)) >= 0);
    return 0;
}

static int slist_remove(const struct req *r)
{
    ssize_t i = slist_find(r->o->value, mp__mgr_arg(r, 0));
    if (i < 0) {
        mp__mgr_reply_error(r->c, MP_EVALUE, "ValueError: list.remove(x): x not in list");
        return 0;
    }
    mp_obj_free(mp__seq_take(r->o->value, (size_t)i));
    mp__mgr_reply_none(r->c);
    return 0;
}

static const struct method list_methods[] = {
    {"append", 1, 1, slist_append},
    {"extend", 1, 1, slist_extend},
    {"get", 1, 1, slist_get},
    {"set", 2, 2, slist_set},
    {"len", 0, 0, mp__mgr_value_len},
    {"pop", 0, 1, slist_pop},
    {"del", 1, 1, slist_del},
    {"insert", 2, 2, slist_insert},
    {"slice", 2, 2, slist_slice},
    {"copy", 0, 0, mp__mgr_value_copy},
    {"clear", 0, 0, mp__mgr_value_clear},
    {"index", 1, 1, slist_index},
    {"count", 1, 1, slist_count},
    {"contains", 1, 1, slist_contains},
    {"remove", 1, 1, slist_remove},
    {"sort", 1, 2, mp__mgr_list_sort},
    {"reverse", 0, 0, mp__mgr_list_reverse},
    {"add", 1, 1, mp__mgr_list_add},
    {"mul", 1, 1, mp__mgr_list_mul},
    {"imul", 1, 1, mp__mgr_list_imul},
};

const struct stype mp__mgr_type_list = {"list", MP__MGR_METHODS(list_methods), mp__mgr_value_init,
                                        NULL};
