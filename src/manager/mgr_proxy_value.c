/*
 * mgr_proxy_value - the manager's Value, Array and Namespace proxies
 * (mpipc/manager_data.h), each call one request on the server's object
 * (docs/manager.md). Shared proxy code: mgr_proxy.c.
 */
#include "core/internal.h"
#include "manager/mgr_client.h"

#include <mpipc/manager_data.h>

#include <errno.h>
#include <stddef.h>
#include <string.h>

struct mp_valueproxy {
    struct proxy p;
};
struct mp_arrayproxy {
    struct proxy p;
};
struct mp_nsproxy {
    struct proxy p;
};
_Static_assert(offsetof(struct mp_valueproxy, p) == 0, "a Value is its proxy");
_Static_assert(offsetof(struct mp_arrayproxy, p) == 0, "an Array is its proxy");
_Static_assert(offsetof(struct mp_nsproxy, p) == 0, "a Namespace is its proxy");

/* create(kind, name, (typecode, init)): Value and Array. */
static int vproxy_new_typed(mp_manager *m, size_t size, const char *kind, const char *name,
                            const char *typecode, const mp_obj *init, struct proxy **out)
{
    if (out)
        *out = NULL;
    if (!typecode || !init || !out)
        return -EINVAL;
    mp_obj *t = mp_obj_build("(sO)", typecode, init);
    if (!t)
        return -ENOMEM;
    struct marg a = ARG_OBJ(t);
    int rc = mp__mgr_proxy_new(m, size, kind, name, false, &a, out);
    mp_obj_free(t);
    return rc;
}

/* ---- Value ---------------------------------------------------------------------- */

MP_API int mp_manager_value(mp_manager *m, const char *typecode, const mp_obj *value,
                            mp_valueproxy **out)
{
    return vproxy_new_typed(m, sizeof(mp_valueproxy), "value", NULL, typecode, value,
                            (struct proxy **)out);
}

MP_API int mp_manager_value_named(mp_manager *m, const char *name, const char *typecode,
                                  const mp_obj *value, mp_valueproxy **out)
{
    if (!name) {
        if (out)
            *out = NULL;
        return -EINVAL;
    }
    return vproxy_new_typed(m, sizeof(mp_valueproxy), "value", name, typecode, value,
                            (struct proxy **)out);
}

MP_API int mp_valueproxy_get(mp_valueproxy *v, mp_obj **value)
{
    return mp__mgr_proxy_get_value(v ? &v->p : NULL, "get", value);
}

MP_API int mp_valueproxy_set(mp_valueproxy *v, const mp_obj *value)
{
    if (!v || !value)
        return -EINVAL;
    struct marg a[1] = {ARG_OBJ(value)};
    return mp__mgr_call_proxy(&v->p, "set", a, 1, 0, NULL, NULL);
}

MP_API int mp_valueproxy_get_int(mp_valueproxy *v, int64_t *value)
{
    if (!value)
        return -EINVAL;
    mp_obj *r;
    int rc = mp_valueproxy_get(v, &r);
    if (rc < 0)
        return rc;
    rc = mp_obj_get_int(r, value) < 0 ? MP_ETYPE : 0;
    mp_obj_free(r);
    return rc;
}

MP_API int mp_valueproxy_set_int(mp_valueproxy *v, int64_t value)
{
    if (!v)
        return -EINVAL;
    struct marg a[1] = {ARG_INT(value)};
    return mp__mgr_call_proxy(&v->p, "set", a, 1, 0, NULL, NULL);
}

MP_API int mp_valueproxy_get_float(mp_valueproxy *v, double *value)
{
    if (!value)
        return -EINVAL;
    mp_obj *r;
    int rc = mp_valueproxy_get(v, &r);
    if (rc < 0)
        return rc;
    int64_t i;
    if (mp_obj_get_float(r, value) < 0) {
        rc = mp_obj_get_int(r, &i) < 0 ? MP_ETYPE : 0;
        if (rc == 0)
            *value = (double)i;
    }
    mp_obj_free(r);
    return rc;
}

MP_API int mp_valueproxy_set_float(mp_valueproxy *v, double value)
{
    if (!v)
        return -EINVAL;
    struct marg a[1] = {ARG_FLOAT(value)};
    return mp__mgr_call_proxy(&v->p, "set", a, 1, 0, NULL, NULL);
}

MP_API void mp_valueproxy_free(mp_valueproxy *v)
{
    if (v)
        mp__mgr_proxy_free(&v->p);
}

/* ---- Array ---------------------------------------------------------------------- */

MP_API int mp_manager_array(mp_manager *m, const char *typecode, const mp_obj *seq,
                            mp_arrayproxy **out)
{
    if (seq && mp_obj_type(seq) != MP_TYPE_LIST && mp_obj_type(seq) != MP_TYPE_TUPLE) {
        if (out)
            *out = NULL;
        return MP_ETYPE;
    }
    return vproxy_new_typed(m, sizeof(mp_arrayproxy), "array", NULL, typecode, seq,
                            (struct proxy **)out);
}

MP_API ssize_t mp_arrayproxy_len(mp_arrayproxy *a)
{
    return mp__mgr_proxy_call_count(a ? &a->p : NULL, "len", NULL, 0);
}

MP_API int mp_arrayproxy_get(mp_arrayproxy *a, ssize_t i, mp_obj **value)
{
    if (value)
        *value = NULL;
    if (!a || !value)
        return -EINVAL;
    struct marg args[1] = {ARG_INT(i)};
    return mp__mgr_call_proxy(&a->p, "get", args, 1, 0, value, NULL);
}

MP_API int mp_arrayproxy_set(mp_arrayproxy *a, ssize_t i, const mp_obj *value)
{
    if (!a || !value)
        return -EINVAL;
    struct marg args[2] = {ARG_INT(i), ARG_OBJ(value)};
    return mp__mgr_call_proxy(&a->p, "set", args, 2, 0, NULL, NULL);
}

MP_API int mp_arrayproxy_get_int(mp_arrayproxy *a, ssize_t i, int64_t *value)
{
    if (!value)
        return -EINVAL;
    mp_obj *r;
    int rc = mp_arrayproxy_get(a, i, &r);
    if (rc < 0)
        return rc;
    rc = mp_obj_get_int(r, value) < 0 ? MP_ETYPE : 0;
    mp_obj_free(r);
    return rc;
}

MP_API int mp_arrayproxy_set_int(mp_arrayproxy *a, ssize_t i, int64_t value)
{
    if (!a)
        return -EINVAL;
    struct marg args[2] = {ARG_INT(i), ARG_INT(value)};
    return mp__mgr_call_proxy(&a->p, "set", args, 2, 0, NULL, NULL);
}

MP_API int mp_arrayproxy_copy(mp_arrayproxy *a, mp_obj **list)
{
    return mp__mgr_proxy_get_value(a ? &a->p : NULL, "copy", list);
}

MP_API void mp_arrayproxy_free(mp_arrayproxy *a)
{
    if (a)
        mp__mgr_proxy_free(&a->p);
}

/* ---- Namespace ------------------------------------------------------------------- */

static int vproxy_ns_new(mp_manager *m, const char *name, const mp_obj *attrs, mp_nsproxy **out)
{
    if (attrs && mp_obj_type(attrs) != MP_TYPE_DICT) {
        if (out)
            *out = NULL;
        return MP_ETYPE;
    }
    struct marg init = attrs ? ARG_OBJ(attrs) : ARG_NONE;
    return mp__mgr_proxy_new(m, sizeof(mp_nsproxy), "namespace", name, false, &init,
                             (struct proxy **)out);
}

MP_API int mp_manager_namespace(mp_manager *m, const mp_obj *attrs, mp_nsproxy **out)
{
    return vproxy_ns_new(m, NULL, attrs, out);
}

MP_API int mp_manager_namespace_named(mp_manager *m, const char *name, const mp_obj *attrs,
                                      mp_nsproxy **out)
{
    if (!name) {
        if (out)
            *out = NULL;
        return -EINVAL;
    }
    return vproxy_ns_new(m, name, attrs, out);
}

MP_API int mp_nsproxy_get(mp_nsproxy *ns, const char *name, mp_obj **value)
{
    if (value)
        *value = NULL;
    struct marg n;
    if (!ns || !value || proxy_str_arg(name, &n) < 0)
        return -EINVAL;
    return mp__mgr_call_proxy(&ns->p, "get", &n, 1, 0, value, NULL);
}

MP_API int mp_nsproxy_set(mp_nsproxy *ns, const char *name, const mp_obj *value)
{
    struct marg a[2];
    if (!ns || !value || proxy_str_arg(name, &a[0]) < 0)
        return -EINVAL;
    a[1] = ARG_OBJ(value);
    return mp__mgr_call_proxy(&ns->p, "set", a, 2, 0, NULL, NULL);
}

MP_API int mp_nsproxy_del(mp_nsproxy *ns, const char *name)
{
    struct marg n;
    if (!ns || proxy_str_arg(name, &n) < 0)
        return -EINVAL;
    return mp__mgr_call_proxy(&ns->p, "del", &n, 1, 0, NULL, NULL);
}

MP_API int mp_nsproxy_copy(mp_nsproxy *ns, mp_obj **attrs)
{
    return mp__mgr_proxy_get_value(ns ? &ns->p : NULL, "copy", attrs);
}

MP_API void mp_nsproxy_free(mp_nsproxy *ns)
{
    if (ns)
        mp__mgr_proxy_free(&ns->p);
}
