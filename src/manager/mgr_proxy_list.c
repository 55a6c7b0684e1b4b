/*
 * mgr_proxy_list - the manager's list proxy (mp_list, mpipc/manager.h): its
 * constructors and methods, each one request on the server's list
 * (docs/manager.md). Shared proxy code: mgr_proxy.c; the family: mgr_client.h.
 */
#include "core/internal.h"
#include "manager/mgr_client.h"

#include <mpipc/manager.h>

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>

struct mp_list {
    struct proxy p;
};
_Static_assert(offsetof(struct mp_list, p) == 0, "a list is its proxy");

/* ---- constructors ---------------------------------------------------------------- */

/* Create (initial: a list, a tuple or NULL) or attach a list; *out NULL on
 * failure. */
static int list_proxy_new(mp_manager *m, const char *name, bool attach, const mp_obj *initial,
                          mp_list **out)
{
    struct proxy *p = NULL;
    int rc = mp__mgr_proxy_new_value(m, sizeof(mp_list), MP_TYPE_LIST, name, attach, initial,
                                     out ? &p : NULL);
    if (out)
        *out = (mp_list *)p;
    return rc;
}

MP_API int mp_manager_list(mp_manager *m, const mp_obj *initial, mp_list **out)
{
    return list_proxy_new(m, NULL, false, initial, out);
}

MP_API int mp_manager_list_named(mp_manager *m, const char *name, const mp_obj *initial,
                                 mp_list **out)
{
    return list_proxy_new(m, name, false, initial, out);
}

MP_API int mp_manager_attach_list(mp_manager *m, const char *name, mp_list **out)
{
    return list_proxy_new(m, name, true, NULL, out);
}

MP_API void mp_list_free(mp_list *l)
{
    if (l)
        mp__mgr_proxy_free(&l->p);
}

/* ---- methods ------------------------------------------------------------------------ */

MP_API int mp_list_append(mp_list *l, const mp_obj *value)
{
    if (!l || !value)
        return -EINVAL;
    struct marg a[1] = {ARG_OBJ(value)};
    return mp__mgr_call_proxy(&l->p, "append", a, 1, 0, NULL, NULL);
}

MP_API int mp_list_append_int(mp_list *l, int64_t value)
{
    if (!l)
        return -EINVAL;
    struct marg a[1] = {ARG_INT(value)};
    return mp__mgr_call_proxy(&l->p, "append", a, 1, 0, NULL, NULL);
}

MP_API int mp_list_append_str(mp_list *l, const char *value)
{
    struct marg v;
    if (!l || proxy_str_arg(value, &v) < 0)
        return -EINVAL;
    return mp__mgr_call_proxy(&l->p, "append", &v, 1, 0, NULL, NULL);
}

MP_API int mp_list_extend(mp_list *l, const mp_obj *seq)
{
    if (!l || !seq)
        return -EINVAL;
    int t = mp_obj_type(seq);
    if (t != MP_TYPE_LIST && t != MP_TYPE_TUPLE)
        return MP_ETYPE;
    struct marg a[1] = {ARG_OBJ(seq)};
    return mp__mgr_call_proxy(&l->p, "extend", a, 1, 0, NULL, NULL);
}

MP_API int mp_list_get(mp_list *l, int64_t i, mp_obj **value)
{
    if (value)
        *value = NULL;
    if (!l || !value)
        return -EINVAL;
    struct marg a[1] = {ARG_INT(i)};
    return mp__mgr_call_proxy(&l->p, "get", a, 1, 0, value, NULL);
}

MP_API int mp_list_get_int(mp_list *l, int64_t i, int64_t *value)
{
    if (!value)
        return -EINVAL;
    mp_obj *r;
    int rc = mp_list_get(l, i, &r);
    if (rc < 0)
        return rc;
    rc = mp_obj_get_int(r, value);
    mp_obj_free(r);
    return rc;
}

MP_API int mp_list_get_str(mp_list *l, int64_t i, char **value, size_t *len)
{
    if (!value)
        return -EINVAL;
    *value = NULL;
    mp_obj *r;
    int rc = mp_list_get(l, i, &r);
    return rc < 0 ? rc : mp__mgr_proxy_take_copy(r, MP_TYPE_STR, (void **)value, len);
}

MP_API int mp_list_set(mp_list *l, int64_t i, const mp_obj *value)
{
    if (!l || !value)
        return -EINVAL;
    struct marg a[2] = {ARG_INT(i), ARG_OBJ(value)};
    return mp__mgr_call_proxy(&l->p, "set", a, 2, 0, NULL, NULL);
}

MP_API ssize_t mp_list_len(mp_list *l)
{
    return mp__mgr_proxy_call_count(l ? &l->p : NULL, "len", NULL, 0);
}

MP_API int mp_list_pop(mp_list *l, int64_t i, mp_obj **value)
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

MP_API int mp_list_insert(mp_list *l, int64_t i, const mp_obj *value)
{
    if (!l || !value)
        return -EINVAL;
    struct marg a[2] = {ARG_INT(i), ARG_OBJ(value)};
    return mp__mgr_call_proxy(&l->p, "insert", a, 2, 0, NULL, NULL);
}

MP_API int mp_list_slice(mp_list *l, int64_t start, int64_t stop, mp_obj **list)
{
    if (list)
        *list = NULL;
    if (!l || !list)
        return -EINVAL;
    struct marg a[2] = {ARG_INT(start), stop == MP_LIST_END ? ARG_NONE : ARG_INT(stop)};
    return mp__mgr_call_proxy(&l->p, "slice", a, 2, 0, list, NULL);
}

MP_API int mp_list_copy(mp_list *l, mp_obj **list)
{
    return mp__mgr_proxy_get_value(l ? &l->p : NULL, "copy", list);
}

MP_API int mp_list_del(mp_list *l, int64_t i)
{
    if (!l)
        return -EINVAL;
    struct marg a[1] = {ARG_INT(i)};
    return mp__mgr_call_proxy(&l->p, "del", a, 1, 0, NULL, NULL);
}

MP_API int mp_list_clear(mp_list *l)
{
    if (!l)
        return -EINVAL;
    return mp__mgr_call_proxy(&l->p, "clear", NULL, 0, 0, NULL, NULL);
}

MP_API ssize_t mp_list_index(mp_list *l, const mp_obj *value)
{
    if (!l || !value)
        return -EINVAL;
    struct marg a[1] = {ARG_OBJ(value)};
    return mp__mgr_proxy_call_count(&l->p, "index", a, 1);
}

MP_API ssize_t mp_list_count(mp_list *l, const mp_obj *value)
{
    if (!l || !value)
        return -EINVAL;
    struct marg a[1] = {ARG_OBJ(value)};
    return mp__mgr_proxy_call_count(&l->p, "count", a, 1);
}

MP_API int mp_list_contains(mp_list *l, const mp_obj *value)
{
    if (!l || !value)
        return -EINVAL;
    struct marg a[1] = {ARG_OBJ(value)};
    return mp__mgr_proxy_call_bool(&l->p, "contains", a, 1);
}

MP_API int mp_list_remove(mp_list *l, const mp_obj *value)
{
    if (!l || !value)
        return -EINVAL;
    struct marg a[1] = {ARG_OBJ(value)};
    return mp__mgr_call_proxy(&l->p, "remove", a, 1, 0, NULL, NULL);
}
