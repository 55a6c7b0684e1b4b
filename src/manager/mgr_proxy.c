/*
 * mgr_proxy - what every proxy of the manager's client shares: making one
 * (create or attach its object), releasing it, and the small call helpers
 * its methods use. The types are mgr_proxy_{dict,list,lock,queue}.c.
 *
 * A proxy holds a counted reference to its handle (so one that outlives
 * mp_manager_free() gets MP_ECLOSED, not a dangling pointer), the object's
 * id, and the fork generation in which this process registered as a
 * holder; a call from a newer generation (a forked child) first sends
 * 'incref' (mp__mgr_call_proxy, mgr_call.c).
 */
#include "codec/objimpl.h"
#include "core/internal.h"
#include "manager/mgr_client.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* create(kind, name, initial) or attach(kind, name); fills p. Returns 1
 * when the object was made, 0 when it existed. */
static int proxy_make(mp_manager *m, const char *kind, const char *name, bool attach,
                      const struct marg *initial, struct proxy *p)
{
    if (name && client_check_name(name) < 0)
        return -EINVAL;
    if (m->py) { /* CPython's server: mgr_client_py.c */
        int rc = mp__mgr_py_create(m, kind, name, attach, initial, p);
        if (rc < 0)
            return rc;
        int refs = __atomic_fetch_add(&m->refs, 1, __ATOMIC_RELAXED);
        MP__ASSERT(refs >= 1);
        p->m = m;
        p->gen = mp__forkgen();
        return 0;
    }
    struct marg a[3] = {ARG_STR(kind, strlen(kind)), name ? ARG_STR(name, strlen(name)) : ARG_NONE,
                        initial ? *initial : ARG_NONE};
    mp_obj *r = NULL;
    int rc =
        mp__mgr_call(m, 0, attach ? "attach" : "create", a, attach ? 2 : 3, 0, &r, NULL, false);
    if (rc < 0)
        return rc;
    int64_t id;
    bool created;
    if (mp_obj_len(r) != 3 || mp_obj_get_int(mp_obj_list_get(r, 0), &id) < 0 ||
        mp_obj_get_bool(mp_obj_list_get(r, 1), &created) < 0) {
        mp_obj_free(r);
        return MP_EPROTO;
    }
    mp_obj_free(r);
    int refs = __atomic_fetch_add(&m->refs, 1, __ATOMIC_RELAXED);
    MP__ASSERT(refs >= 1); /* the caller holds the handle */
    p->m = m;
    p->id = id;
    p->gen = mp__forkgen();
    return created ? 1 : 0;
}

int mp__mgr_proxy_new(mp_manager *m, size_t size, const char *kind, const char *name, bool attach,
                      const struct marg *initial, struct proxy **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!m || (attach && !name))
        return -EINVAL; /* attaching needs a name */
    MP__ASSERT(size >= sizeof(struct proxy));
    struct proxy *p = calloc(1, size);
    if (!p)
        return -ENOMEM;
    int rc = proxy_make(m, kind, name, attach, initial, p);
    if (rc < 0) {
        free(p);
        return rc;
    }
    *out = p;
    return name && !attach ? rc : 0;
}

int mp__mgr_proxy_new_value(mp_manager *m, size_t size, int type, const char *name, bool attach,
                            const mp_obj *initial, struct proxy **out)
{
    MP__ASSERT(type == MP_TYPE_DICT || type == MP_TYPE_LIST);
    int t = initial ? mp_obj_type(initial) : type;
    if (t != type && !(type == MP_TYPE_LIST && t == MP_TYPE_TUPLE)) {
        if (out)
            *out = NULL;
        return MP_ETYPE;
    }
    struct marg init = initial ? ARG_OBJ(initial) : ARG_NONE;
    return mp__mgr_proxy_new(m, size, type == MP_TYPE_DICT ? "dict" : "list", name, attach, &init,
                             out);
}

void mp__mgr_proxy_free(struct proxy *p)
{
    if (__atomic_load_n(&p->gen, __ATOMIC_ACQUIRE) == mp__forkgen() && !client_is_closed(p->m)) {
        struct marg id[1] = {ARG_INT(p->id)};
        (void)mp__mgr_call(p->m, 0, "release", id, 1, 0, NULL, NULL, false);
    }
    mp__mgr_py_proxy_release(p);
    mp__mgr_client_unref(p->m);
    free(p); /* the whole proxy: p is its first member */
}

/* Call and read the result as a bool (0 or 1) or as a count (>= 0). */
static ssize_t proxy_call_read(struct proxy *p, const char *method, const struct marg *a, size_t n,
                               bool as_bool)
{
    if (!p)
        return -EINVAL;
    mp_obj *r;
    int rc = mp__mgr_call_proxy(p, method, a, n, 0, &r, NULL);
    if (rc < 0)
        return rc;
    bool b;
    int64_t v;
    ssize_t out = MP_EPROTO;
    if (as_bool && mp_obj_get_bool(r, &b) == 0)
        out = b ? 1 : 0;
    else if (!as_bool && mp_obj_get_int(r, &v) == 0 && v >= 0)
        out = (ssize_t)v;
    mp_obj_free(r);
    return out;
}

int mp__mgr_proxy_call_bool(struct proxy *p, const char *method, const struct marg *a, size_t n)
{
    return (int)proxy_call_read(p, method, a, n, true);
}

ssize_t mp__mgr_proxy_call_count(struct proxy *p, const char *method, const struct marg *a,
                                 size_t n)
{
    return proxy_call_read(p, method, a, n, false);
}

int mp__mgr_proxy_get_value(struct proxy *p, const char *method, mp_obj **out)
{
    if (out)
        *out = NULL;
    if (!p || !out)
        return -EINVAL;
    return mp__mgr_call_proxy(p, method, NULL, 0, 0, out, NULL);
}

void mp__mgr_proxy_give(mp_obj *r, mp_obj **out)
{
    if (out)
        *out = r;
    else
        mp_obj_free(r);
}

int mp__mgr_proxy_take_copy(mp_obj *r, int type, void **value, size_t *len)
{
    const unsigned char *p;
    size_t n;
    int rc = type == MP_TYPE_STR ? mp_obj_get_str(r, (const char **)&p, &n)
                                 : mp_obj_get_bytes(r, &p, &n);
    unsigned char *copy = rc < 0 ? NULL : malloc(n + 1);
    if (rc == 0 && !copy)
        rc = -ENOMEM;
    if (copy) {
        memcpy(copy, p, n);
        copy[n] = '\0';
        *value = copy;
        if (len)
            *len = n;
    }
    mp_obj_free(r);
    return rc;
}
