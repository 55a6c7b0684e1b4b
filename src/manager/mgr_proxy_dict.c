/*
 * mgr_proxy_dict - the manager's dict proxy (mp_dictproxy, mpipc/manager.h): its
 * constructors and methods, each one request on the server's dict
 * (docs/manager.md). Shared proxy code: mgr_proxy.c; the family: mgr_client.h.
 */
#include "codec/objimpl.h"
#include "core/internal.h"
#include "manager/mgr_client.h"

#include <mpipc/manager.h>

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

struct mp_dictproxy {
    struct proxy p;
};
_Static_assert(offsetof(struct mp_dictproxy, p) == 0, "a dict is its proxy");

/* ---- constructors ---------------------------------------------------------------- */

/* Create (initial: a dict or NULL) or attach a dict; *out NULL on failure. */
static int dict_proxy_new(mp_manager *m, const char *name, bool attach, const mp_obj *initial,
                          mp_dictproxy **out)
{
    struct proxy *p = NULL;
    int rc = mp__mgr_proxy_new_value(m, sizeof(mp_dictproxy), MP_TYPE_DICT, name, attach, initial,
                                     out ? &p : NULL);
    if (out)
        *out = (mp_dictproxy *)p;
    return rc;
}

MP_API int mp_manager_dict(mp_manager *m, const mp_obj *initial, mp_dictproxy **out)
{
    return dict_proxy_new(m, NULL, false, initial, out);
}

MP_API int mp_manager_dict_named(mp_manager *m, const char *name, const mp_obj *initial,
                                 mp_dictproxy **out)
{
    return dict_proxy_new(m, name, false, initial, out);
}

MP_API int mp_manager_attach_dict(mp_manager *m, const char *name, mp_dictproxy **out)
{
    return dict_proxy_new(m, name, true, NULL, out);
}

MP_API int mp_dictproxy_ref(const mp_dictproxy *d, mp_obj **ref)
{
    return mp__mgr_proxy_ref(d ? &d->p : NULL, "DictProxy", "dict", NULL, ref);
}

MP_API int mp_manager_dict_from_ref(mp_manager *m, const mp_obj *ref, mp_dictproxy **out)
{
    static const char *const typeids[] = {"dict", NULL}, *const kinds[] = {"dict", NULL};
    return mp__mgr_proxy_from_ref(m, sizeof(mp_dictproxy), typeids, kinds, ref,
                                  (struct proxy **)out);
}

MP_API void mp_dictproxy_free(mp_dictproxy *d)
{
    if (d)
        mp__mgr_proxy_free(&d->p);
}

/* ---- methods ------------------------------------------------------------------------ */

MP_API int mp_dictproxy_get(mp_dictproxy *d, const mp_obj *key, mp_obj **value)
{
    if (value)
        *value = NULL;
    if (!d || !key || !value)
        return -EINVAL;
    struct marg a[1] = {ARG_OBJ(key)};
    return mp__mgr_call_proxy(&d->p, "get", a, 1, 0, value, NULL);
}

/* d.get(key, default) asks for d[key] and copies the default here when the
 * server says KeyError: one round trip, as Python's, without sending the
 * default to the server and back (the server's get also takes a default,
 * for clients that send one: docs/manager.md). */
MP_API int mp_dictproxy_get_default(mp_dictproxy *d, const mp_obj *key, const mp_obj *dflt,
                                    mp_obj **value)
{
    int rc = mp_dictproxy_get(d, key, value);
    if (rc != MP_EKEY)
        return rc;
    mp_obj *c = dflt ? mp_obj_copy(dflt) : mp_obj_none();
    if (!c)
        return -ENOMEM;
    *value = c;
    return 0;
}

MP_API int mp_dictproxy_set(mp_dictproxy *d, const mp_obj *key, const mp_obj *value)
{
    if (!d || !key || !value)
        return -EINVAL;
    struct marg a[2] = {ARG_OBJ(key), ARG_OBJ(value)};
    return mp__mgr_call_proxy(&d->p, "set", a, 2, 0, NULL, NULL);
}

MP_API int mp_dictproxy_del(mp_dictproxy *d, const mp_obj *key)
{
    if (!d || !key)
        return -EINVAL;
    struct marg a[1] = {ARG_OBJ(key)};
    return mp__mgr_call_proxy(&d->p, "del", a, 1, 0, NULL, NULL);
}

MP_API int mp_dictproxy_contains(mp_dictproxy *d, const mp_obj *key)
{
    if (!d || !key)
        return -EINVAL;
    struct marg a[1] = {ARG_OBJ(key)};
    return mp__mgr_proxy_call_bool(&d->p, "contains", a, 1);
}

MP_API ssize_t mp_dictproxy_len(mp_dictproxy *d)
{
    return mp__mgr_proxy_call_count(d ? &d->p : NULL, "len", NULL, 0);
}

MP_API int mp_dictproxy_keys(mp_dictproxy *d, mp_obj **list)
{
    return mp__mgr_proxy_get_value(d ? &d->p : NULL, "keys", list);
}

MP_API int mp_dictproxy_values(mp_dictproxy *d, mp_obj **list)
{
    return mp__mgr_proxy_get_value(d ? &d->p : NULL, "values", list);
}

MP_API int mp_dictproxy_items(mp_dictproxy *d, mp_obj **list)
{
    return mp__mgr_proxy_get_value(d ? &d->p : NULL, "items", list);
}

MP_API int mp_dictproxy_clear(mp_dictproxy *d)
{
    if (!d)
        return -EINVAL;
    return mp__mgr_call_proxy(&d->p, "clear", NULL, 0, 0, NULL, NULL);
}

MP_API int mp_dictproxy_pop(mp_dictproxy *d, const mp_obj *key, mp_obj **value)
{
    if (value)
        *value = NULL;
    if (!d || !key)
        return -EINVAL;
    struct marg a[1] = {ARG_OBJ(key)};
    mp_obj *r;
    int rc = mp__mgr_call_proxy(&d->p, "pop", a, 1, 0, &r, NULL);
    if (rc == 0)
        mp__mgr_proxy_give(r, value);
    return rc;
}

MP_API int mp_dictproxy_popitem(mp_dictproxy *d, mp_obj **key, mp_obj **value)
{
    if (key)
        *key = NULL;
    if (value)
        *value = NULL;
    if (!d)
        return -EINVAL;
    mp_obj *r;
    int rc = mp__mgr_call_proxy(&d->p, "popitem", NULL, 0, 0, &r, NULL);
    if (rc < 0)
        return rc;
    if (mp_obj_type(r) != MP_TYPE_TUPLE || mp_obj_len(r) != 2) {
        mp_obj_free(r);
        return MP_EPROTO;
    }
    mp_obj *v = mp__seq_take(r, 1), *k = mp__seq_take(r, 0);
    mp_obj_free(r);
    mp__mgr_proxy_give(k, key);
    mp__mgr_proxy_give(v, value);
    return 0;
}

MP_API int mp_dictproxy_setdefault(mp_dictproxy *d, const mp_obj *key, const mp_obj *dflt,
                                   mp_obj **value)
{
    if (value)
        *value = NULL;
    if (!d || !key || !dflt)
        return -EINVAL;
    struct marg a[2] = {ARG_OBJ(key), ARG_OBJ(dflt)};
    mp_obj *r;
    int rc = mp__mgr_call_proxy(&d->p, "setdefault", a, 2, 0, &r, NULL);
    if (rc == 0)
        mp__mgr_proxy_give(r, value);
    return rc;
}

MP_API int mp_dictproxy_update(mp_dictproxy *d, const mp_obj *other)
{
    if (!d || !other)
        return -EINVAL;
    struct marg a[1] = {ARG_OBJ(other)};
    return mp__mgr_call_proxy(&d->p, "update", a, 1, 0, NULL, NULL);
}

MP_API int mp_dictproxy_copy(mp_dictproxy *d, mp_obj **copy)
{
    return mp__mgr_proxy_get_value(d ? &d->p : NULL, "copy", copy);
}

static int dict_proxy_add(mp_dictproxy *d, struct marg key, int64_t delta, int64_t *result)
{
    struct marg a[2] = {key, ARG_INT(delta)};
    mp_obj *r;
    struct scalar sc;
    int rc = mp__mgr_call_proxy(&d->p, "add", a, 2, 0, &r, &sc);
    if (rc < 0)
        return rc;
    int64_t v;
    rc = proxy_reply_int(&sc, r, &v) == 0 ? 0 : MP_EPROTO;
    mp_obj_free(r);
    if (rc == 0 && result)
        *result = v;
    return rc;
}

MP_API int mp_dictproxy_add(mp_dictproxy *d, const mp_obj *key, int64_t delta, int64_t *result)
{
    if (!d || !key)
        return -EINVAL;
    return dict_proxy_add(d, ARG_OBJ(key), delta, result);
}

MP_API int mp_dictproxy_add_int(mp_dictproxy *d, const char *key, int64_t delta, int64_t *result)
{
    struct marg k;
    if (!d || proxy_str_arg(key, &k) < 0)
        return -EINVAL;
    return dict_proxy_add(d, k, delta, result);
}

/* The reply of 'cas': (swapped, present, current). */
static int dict_proxy_cas(mp_dictproxy *d, struct marg key, const struct marg *expected,
                          struct marg desired, bool *present, mp_obj **current)
{
    struct marg a[3] = {key, desired, expected ? *expected : ARG_NONE};
    mp_obj *r;
    int rc = mp__mgr_call_proxy(&d->p, "cas", a, expected ? 3 : 2, 0, &r, NULL);
    if (rc < 0)
        return rc;
    bool swapped, had;
    if (mp_obj_len(r) != 3 || mp_obj_get_bool(mp_obj_list_get(r, 0), &swapped) < 0 ||
        mp_obj_get_bool(mp_obj_list_get(r, 1), &had) < 0) {
        mp_obj_free(r);
        return MP_EPROTO;
    }
    *present = had;
    mp_obj *cur = mp__seq_take(r, 2);
    mp_obj_free(r);
    if (had)
        mp__mgr_proxy_give(cur, current);
    else
        mp_obj_free(cur);
    return swapped ? 1 : 0;
}

MP_API int mp_dictproxy_cas(mp_dictproxy *d, const mp_obj *key, const mp_obj *expected,
                            const mp_obj *desired, mp_obj **current)
{
    if (current)
        *current = NULL;
    if (!d || !key || !desired)
        return -EINVAL;
    struct marg e = expected ? ARG_OBJ(expected) : ARG_NONE;
    bool present;
    return dict_proxy_cas(d, ARG_OBJ(key), expected ? &e : NULL, ARG_OBJ(desired), &present,
                          current);
}

MP_API int mp_dictproxy_cas_int(mp_dictproxy *d, const char *key, int64_t expected, int64_t desired,
                                int64_t *current)
{
    struct marg k;
    if (!d || proxy_str_arg(key, &k) < 0)
        return -EINVAL;
    struct marg e = ARG_INT(expected);
    bool present;
    mp_obj *cur = NULL;
    int rc = dict_proxy_cas(d, k, &e, ARG_INT(desired), &present, &cur);
    if (rc < 0)
        return rc;
    int64_t v = 0;
    int t = mp_obj_type(cur);
    if (!present)
        rc = MP_EKEY;
    else if (t != MP_TYPE_INT && t != MP_TYPE_BOOL)
        rc = MP_ETYPE;
    else if (!mp_obj_int_fits(cur))
        rc = -ERANGE; /* a Python int beyond int64 */
    else
        (void)mp_obj_get_int(cur, &v);
    mp_obj_free(cur);
    if (rc >= 0 && current)
        *current = v;
    return rc;
}

/* d[key] for a str key; with sc, a scalar value comes back there. */
static int dict_proxy_get_typed(mp_dictproxy *d, const char *key, mp_obj **out, struct scalar *sc)
{
    struct marg k;
    if (!d || proxy_str_arg(key, &k) < 0)
        return -EINVAL;
    struct marg a[1] = {k};
    return mp__mgr_call_proxy(&d->p, "get", a, 1, 0, out, sc);
}

MP_API int mp_dictproxy_get_int(mp_dictproxy *d, const char *key, int64_t *value)
{
    if (!value)
        return -EINVAL;
    mp_obj *r;
    struct scalar sc;
    int rc = dict_proxy_get_typed(d, key, &r, &sc);
    if (rc < 0)
        return rc;
    rc = proxy_reply_int(&sc, r, value);
    mp_obj_free(r);
    return rc;
}

MP_API int mp_dictproxy_get_int_default(mp_dictproxy *d, const char *key, int64_t dflt,
                                        int64_t *value)
{
    if (!value)
        return -EINVAL;
    int64_t v;
    int rc = mp_dictproxy_get_int(d, key, &v);
    if (rc == MP_EKEY) {
        v = dflt;
        rc = 0;
    }
    if (rc == 0)
        *value = v;
    return rc;
}

/* d[key] for a str key, as a malloc'd copy of its str or bytes value. */
static int dict_proxy_get_copy(mp_dictproxy *d, const char *key, int type, void **value,
                               size_t *len)
{
    if (!value)
        return -EINVAL;
    *value = NULL;
    mp_obj *r;
    int rc = dict_proxy_get_typed(d, key, &r, NULL);
    return rc < 0 ? rc : mp__mgr_proxy_take_copy(r, type, value, len);
}

MP_API int mp_dictproxy_get_str(mp_dictproxy *d, const char *key, char **value, size_t *len)
{
    return dict_proxy_get_copy(d, key, MP_TYPE_STR, (void **)value, len);
}

MP_API int mp_dictproxy_get_bytes(mp_dictproxy *d, const char *key, void **value, size_t *len)
{
    return dict_proxy_get_copy(d, key, MP_TYPE_BYTES, value, len);
}

static int dict_proxy_set_typed(mp_dictproxy *d, const char *key, struct marg value)
{
    struct marg k;
    if (!d || proxy_str_arg(key, &k) < 0)
        return -EINVAL;
    struct marg a[2] = {k, value};
    return mp__mgr_call_proxy(&d->p, "set", a, 2, 0, NULL, NULL);
}

MP_API int mp_dictproxy_set_int(mp_dictproxy *d, const char *key, int64_t value)
{
    return dict_proxy_set_typed(d, key, ARG_INT(value));
}

MP_API int mp_dictproxy_set_str(mp_dictproxy *d, const char *key, const char *value)
{
    struct marg v;
    if (proxy_str_arg(value, &v) < 0)
        return -EINVAL;
    return dict_proxy_set_typed(d, key, v);
}

MP_API int mp_dictproxy_set_bytes(mp_dictproxy *d, const char *key, const void *value, size_t len)
{
    if (!value && len)
        return -EINVAL;
    return dict_proxy_set_typed(d, key, ARG_BYTES(value, len));
}

MP_API int mp_dictproxy_del_str(mp_dictproxy *d, const char *key)
{
    struct marg k;
    if (!d || proxy_str_arg(key, &k) < 0)
        return -EINVAL;
    struct marg a[1] = {k};
    return mp__mgr_call_proxy(&d->p, "del", a, 1, 0, NULL, NULL);
}

MP_API int mp_dictproxy_contains_str(mp_dictproxy *d, const char *key)
{
    struct marg k;
    if (!d || proxy_str_arg(key, &k) < 0)
        return -EINVAL;
    struct marg a[1] = {k};
    return mp__mgr_proxy_call_bool(&d->p, "contains", a, 1);
}
