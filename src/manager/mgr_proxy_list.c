/*
 * mgr_proxy_list - the manager's list proxy (mp_listproxy, mpipc/manager.h): its
 * constructors and methods, each one request on the server's list
 * (docs/manager.md). Shared proxy code: mgr_proxy.c; the family: mgr_client.h.
 */
#include "core/internal.h"
#include "manager/mgr_client.h"

#include <mpipc/manager.h>
#include <mpipc/manager_data.h>

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>

struct mp_listproxy {
    struct proxy p;
};
_Static_assert(offsetof(struct mp_listproxy, p) == 0, "a list is its proxy");

/* ---- constructors ---------------------------------------------------------------- */

/* Create (initial: a list, a tuple or NULL) or attach a list; *out NULL on
 * failure. */
static int list_proxy_new(mp_manager *m, const char *name, bool attach, const mp_obj *initial,
                          mp_listproxy **out)
{
    struct proxy *p = NULL;
    int rc = mp__mgr_proxy_new_value(m, sizeof(mp_listproxy), MP_TYPE_LIST, name, attach, initial,
                                     out ? &p : NULL);
    if (out)
        *out = (mp_listproxy *)p;
    return rc;
}

MP_API int mp_manager_list(mp_manager *m, const mp_obj *initial, mp_listproxy **out)
{
    return list_proxy_new(m, NULL, false, initial, out);
}

MP_API int mp_manager_list_named(mp_manager *m, const char *name, const mp_obj *initial,
                                 mp_listproxy **out)
{
    return list_proxy_new(m, name, false, initial, out);
}

MP_API int mp_manager_attach_list(mp_manager *m, const char *name, mp_listproxy **out)
{
    return list_proxy_new(m, name, true, NULL, out);
}

MP_API int mp_listproxy_ref(const mp_listproxy *l, mp_obj **ref)
{
    return mp__mgr_proxy_ref(l ? &l->p : NULL, "ListProxy", "list", NULL, ref);
}

MP_API int mp_manager_list_from_ref(mp_manager *m, const mp_obj *ref, mp_listproxy **out)
{
    static const char *const typeids[] = {"list", NULL}, *const kinds[] = {"list", NULL};
    return mp__mgr_proxy_from_ref(m, sizeof(mp_listproxy), typeids, kinds, ref,
                                  (struct proxy **)out);
}

MP_API void mp_listproxy_free(mp_listproxy *l)
{
    if (l)
        mp__mgr_proxy_free(&l->p);
}

/* ---- methods ------------------------------------------------------------------------ */

MP_API int mp_listproxy_append(mp_listproxy *l, const mp_obj *value)
{
    if (!l || !value)
        return -EINVAL;
    struct marg a[1] = {ARG_OBJ(value)};
    return mp__mgr_call_proxy(&l->p, "append", a, 1, 0, NULL, NULL);
}

MP_API int mp_listproxy_append_int(mp_listproxy *l, int64_t value)
{
    if (!l)
        return -EINVAL;
    struct marg a[1] = {ARG_INT(value)};
    return mp__mgr_call_proxy(&l->p, "append", a, 1, 0, NULL, NULL);
}

MP_API int mp_listproxy_append_str(mp_listproxy *l, const char *value)
{
    struct marg v;
    if (!l || proxy_str_arg(value, &v) < 0)
        return -EINVAL;
    return mp__mgr_call_proxy(&l->p, "append", &v, 1, 0, NULL, NULL);
}

MP_API int mp_listproxy_extend(mp_listproxy *l, const mp_obj *seq)
{
    if (!l || !seq)
        return -EINVAL;
    int t = mp_obj_type(seq);
    if (t != MP_TYPE_LIST && t != MP_TYPE_TUPLE)
        return MP_ETYPE;
    struct marg a[1] = {ARG_OBJ(seq)};
    return mp__mgr_call_proxy(&l->p, "extend", a, 1, 0, NULL, NULL);
}

MP_API int mp_listproxy_get(mp_listproxy *l, ssize_t i, mp_obj **value)
{
    if (value)
        *value = NULL;
    if (!l || !value)
        return -EINVAL;
    struct marg a[1] = {ARG_INT(i)};
    return mp__mgr_call_proxy(&l->p, "get", a, 1, 0, value, NULL);
}

MP_API int mp_listproxy_get_int(mp_listproxy *l, ssize_t i, int64_t *value)
{
    if (!value)
        return -EINVAL;
    mp_obj *r;
    int rc = mp_listproxy_get(l, i, &r);
    if (rc < 0)
        return rc;
    rc = mp_obj_get_int(r, value);
    mp_obj_free(r);
    return rc;
}

MP_API int mp_listproxy_get_str(mp_listproxy *l, ssize_t i, char **value, size_t *len)
{
    if (!value)
        return -EINVAL;
    *value = NULL;
    mp_obj *r;
    int rc = mp_listproxy_get(l, i, &r);
    return rc < 0 ? rc : mp__mgr_proxy_take_copy(r, MP_TYPE_STR, (void **)value, len);
}

MP_API int mp_listproxy_set(mp_listproxy *l, ssize_t i, const mp_obj *value)
{
    if (!l || !value)
        return -EINVAL;
    struct marg a[2] = {ARG_INT(i), ARG_OBJ(value)};
    return mp__mgr_call_proxy(&l->p, "set", a, 2, 0, NULL, NULL);
}

MP_API ssize_t mp_listproxy_len(mp_listproxy *l)
{
    return mp__mgr_proxy_call_count(l ? &l->p : NULL, "len", NULL, 0);
}

MP_API int mp_listproxy_pop(mp_listproxy *l, ssize_t i, mp_obj **value)
{
    if (value)
        *value = NULL;
    if (!l)
        return -EINVAL;
    struct marg a[1] = {ARG_INT(i)};
    mp_obj *r;
    int rc = mp__mgr_call_proxy(&l->p, "pop", a, 1, 0, &r, NULL);
    if (rc == 0)
        mp__mgr_proxy_give(r, value);
    return rc;
}

MP_API int mp_listproxy_insert(mp_listproxy *l, ssize_t i, const mp_obj *value)
{
    if (!l || !value)
        return -EINVAL;
    struct marg a[2] = {ARG_INT(i), ARG_OBJ(value)};
    return mp__mgr_call_proxy(&l->p, "insert", a, 2, 0, NULL, NULL);
}

MP_API int mp_listproxy_slice(mp_listproxy *l, ssize_t start, ssize_t stop, mp_obj **list)
{
    if (list)
        *list = NULL;
    if (!l || !list)
        return -EINVAL;
    struct marg a[2] = {ARG_INT(start), stop == MP_LISTPROXY_END ? ARG_NONE : ARG_INT(stop)};
    return mp__mgr_call_proxy(&l->p, "slice", a, 2, 0, list, NULL);
}

MP_API int mp_listproxy_copy(mp_listproxy *l, mp_obj **list)
{
    return mp__mgr_proxy_get_value(l ? &l->p : NULL, "copy", list);
}

MP_API int mp_listproxy_del(mp_listproxy *l, ssize_t i)
{
    if (!l)
        return -EINVAL;
    struct marg a[1] = {ARG_INT(i)};
    return mp__mgr_call_proxy(&l->p, "del", a, 1, 0, NULL, NULL);
}

MP_API int mp_listproxy_clear(mp_listproxy *l)
{
    if (!l)
        return -EINVAL;
    return mp__mgr_call_proxy(&l->p, "clear", NULL, 0, 0, NULL, NULL);
}

MP_API ssize_t mp_listproxy_index(mp_listproxy *l, const mp_obj *value)
{
    if (!l || !value)
        return -EINVAL;
    struct marg a[1] = {ARG_OBJ(value)};
    return mp__mgr_proxy_call_count(&l->p, "index", a, 1);
}

MP_API ssize_t mp_listproxy_count(mp_listproxy *l, const mp_obj *value)
{
    if (!l || !value)
        return -EINVAL;
    struct marg a[1] = {ARG_OBJ(value)};
    return mp__mgr_proxy_call_count(&l->p, "count", a, 1);
}

MP_API int mp_listproxy_contains(mp_listproxy *l, const mp_obj *value)
{
    if (!l || !value)
        return -EINVAL;
    struct marg a[1] = {ARG_OBJ(value)};
    return mp__mgr_proxy_call_bool(&l->p, "contains", a, 1);
}

MP_API int mp_listproxy_remove(mp_listproxy *l, const mp_obj *value)
{
    if (!l || !value)
        return -EINVAL;
    struct marg a[1] = {ARG_OBJ(value)};
    return mp__mgr_call_proxy(&l->p, "remove", a, 1, 0, NULL, NULL);
}

/* ---- ordering (mpipc/manager_data.h) ----------------------------------------------- */

MP_API int mp_listproxy_sort(mp_listproxy *l, bool reverse)
{
    if (!l)
        return -EINVAL;
    struct marg a[1] = {ARG_BOOL(reverse)};
    return mp__mgr_call_proxy(&l->p, "sort", a, 1, 0, NULL, NULL);
}

MP_API int mp_listproxy_reverse(mp_listproxy *l)
{
    if (!l)
        return -EINVAL;
    return mp__mgr_call_proxy(&l->p, "reverse", NULL, 0, 0, NULL, NULL);
}

/* ---- slices (mpipc/manager_data.h) ------------------------------------------------- */

/* builtins.slice(start, stop, step), MP_LISTPROXY_NONE as None: what
 * Python's ListProxy sends for l[start:stop:step]. NULL for no memory. */
static mp_obj *list_slice_obj(ssize_t start, ssize_t stop, ssize_t step)
{
    ssize_t f[3] = {start, stop, step};
    mp_obj *args = mp_obj_tuple_new(), *sl = NULL;
    for (int i = 0; args && i < 3; i++) {
        mp_obj *v = f[i] == MP_LISTPROXY_NONE ? mp_obj_none() : mp_obj_int((int64_t)f[i]);
        if (!v || mp_obj_tuple_append(args, v) < 0) {
            mp_obj_free(v);
            mp_obj_free(args);
            args = NULL;
        }
    }
    if (args)
        sl = mp_obj_instance_new("builtins.slice", args);
    mp_obj_free(args);
    return sl;
}

/* One call of method (get, set or del) with the slice and, for set, seq. */
static int list_slice_call(mp_listproxy *l, const char *method, ssize_t start, ssize_t stop,
                           ssize_t step, const mp_obj *seq, mp_obj **out)
{
    mp_obj *sl = list_slice_obj(start, stop, step);
    if (!sl)
        return -ENOMEM;
    struct marg a[2] = {ARG_OBJ(sl), ARG_OBJ(seq)};
    int rc = mp__mgr_call_proxy(&l->p, method, a, seq ? 2 : 1, 0, out, NULL);
    mp_obj_free(sl);
    return rc;
}

MP_API int mp_listproxy_get_slice(mp_listproxy *l, ssize_t start, ssize_t stop, ssize_t step,
                                  mp_obj **list)
{
    if (list)
        *list = NULL;
    if (!l || !list)
        return -EINVAL;
    return list_slice_call(l, "get", start, stop, step, NULL, list);
}

MP_API int mp_listproxy_set_slice(mp_listproxy *l, ssize_t start, ssize_t stop, ssize_t step,
                                  const mp_obj *seq)
{
    if (!l || !seq)
        return -EINVAL;
    int t = mp_obj_type(seq);
    if (t != MP_TYPE_LIST && t != MP_TYPE_TUPLE)
        return MP_ETYPE;
    return list_slice_call(l, "set", start, stop, step, seq, NULL);
}

MP_API int mp_listproxy_del_slice(mp_listproxy *l, ssize_t start, ssize_t stop, ssize_t step)
{
    if (!l)
        return -EINVAL;
    return list_slice_call(l, "del", start, stop, step, NULL, NULL);
}
