/*
 * mgr_proxy_user - the C proxy of an object of a registered type
 * (mpipc/manager_user.h): create by typeid, call by method name.
 * Static functions: uproxy_.
 */
#include "core/internal.h"
#include "manager/mgr.h"
#include "manager/mgr_client.h"

#include <mpipc/manager_user.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct mp_proxy {
    struct proxy base;
};

MP_API int mp_manager_create(mp_manager *m, const char *typeid, const mp_obj *args, mp_proxy **out)
{
    if (out)
        *out = NULL;
    if (!m || !typeid || !out || (args && mp_obj_type(args) != MP_TYPE_TUPLE))
        return -EINVAL;
    if (m->py)
        return mp__err(-ENOTSUP, "types of your own are served by libmpipc's manager only");
    mp_obj *init = args ? mp_obj_build("(sO)", typeid, args)
                        : mp_obj_build("(sN)", typeid, mp_obj_tuple_new());
    if (!init)
        return -ENOMEM;
    struct marg a = ARG_OBJ(init);
    struct proxy *p;
    int rc = mp__mgr_proxy_new(m, sizeof(mp_proxy), "user", NULL, false, &a, &p);
    mp_obj_free(init);
    if (rc < 0)
        return rc;
    *out = (mp_proxy *)p;
    return 0;
}

MP_API int mp_proxy_call(mp_proxy *p, const char *method, const mp_obj *args, mp_obj **result)
{
    if (result)
        *result = NULL;
    if (!p || !method || (args && mp_obj_type(args) != MP_TYPE_TUPLE))
        return -EINVAL;
    size_t n = args ? (size_t)mp_obj_len(args) : 0;
    struct marg one[4] = {{0}}, *a = n <= 4 ? one : calloc(n, sizeof *a);
    if (!a)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++)
        a[i] = ARG_OBJ(mp_obj_list_get(args, (ssize_t)i));
    mp_obj *r = NULL;
    int rc = mp__mgr_call_proxy(&p->base, method, a, n, 0, &r, NULL);
    if (a != one)
        free(a);
    if (rc < 0)
        return rc;
    mp__mgr_proxy_give(r, result);
    return 0;
}

MP_API void mp_proxy_free(mp_proxy *p)
{
    if (p)
        mp__mgr_proxy_free(&p->base);
}

int mp__mgr_types_check(const struct mp_manager_type *t, size_t n)
{
    if (!t && n)
        return mp__err(-EINVAL, "opts.types is NULL but opts.ntypes is %zu", n);
    for (size_t i = 0; i < n; i++) {
        if (!t[i].typeid || (!t[i].methods && t[i].nmethods))
            return mp__err(-EINVAL, "type %zu has no typeid or no method table", i);
        for (size_t k = 0; k < i; k++)
            if (strcmp(t[k].typeid, t[i].typeid) == 0)
                return mp__err(-EINVAL, "typeid '%s' registered twice", t[i].typeid);
        for (size_t j = 0; j < t[i].nmethods; j++) {
            const mp_manager_method *m = &t[i].methods[j];
            if (!m->name || !m->fn || m->min_args < 0 || m->min_args > m->max_args)
                return mp__err(-EINVAL, "method %zu of '%s' is malformed", j, t[i].typeid);
        }
    }
    return 0;
}
