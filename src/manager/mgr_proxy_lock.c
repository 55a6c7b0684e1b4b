/*
 * mgr_proxy_lock - the manager's lock proxy (mp_lockproxy, mpipc/manager.h: Lock
 * and RLock): its constructors and methods, each one request on the server's
 * lock (docs/manager.md). Shared proxy code: mgr_proxy.c; the family:
 * mgr_client.h.
 */
#include "core/internal.h"
#include "core/io.h"
#include "manager/mgr_client.h"

#include <mpipc/manager.h>

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>

struct mp_lockproxy {
    struct proxy p;
};
_Static_assert(offsetof(struct mp_lockproxy, p) == 0, "a lock is its proxy");

/* The calling thread's identity for lock ownership (unique in a process; a
 * forked child's session id tells it apart from its parent). */
static _Thread_local int64_t lock_proxy_tid;
static int64_t lock_proxy_tid_counter;

int64_t mp__mgr_thread_id(void)
{
    if (!lock_proxy_tid)
        lock_proxy_tid = __atomic_add_fetch(&lock_proxy_tid_counter, 1, __ATOMIC_RELAXED);
    return lock_proxy_tid;
}

/* ---- constructors ---------------------------------------------------------------- */

/* Create a lock or rlock (kind), or attach one; *out NULL on failure. */
static int lock_proxy_new(mp_manager *m, const char *kind, const char *name, bool attach,
                          mp_lockproxy **out)
{
    struct proxy *p = NULL;
    int rc = mp__mgr_proxy_new(m, sizeof(mp_lockproxy), kind, name, attach, NULL, out ? &p : NULL);
    if (out)
        *out = (mp_lockproxy *)p;
    return rc;
}

MP_API int mp_manager_lock(mp_manager *m, mp_lockproxy **out)
{
    return lock_proxy_new(m, "lock", NULL, false, out);
}

MP_API int mp_manager_rlock(mp_manager *m, mp_lockproxy **out)
{
    return lock_proxy_new(m, "rlock", NULL, false, out);
}

MP_API int mp_manager_lock_named(mp_manager *m, const char *name, bool recursive,
                                 mp_lockproxy **out)
{
    return lock_proxy_new(m, recursive ? "rlock" : "lock", name, false, out);
}

MP_API int mp_manager_attach_lock(mp_manager *m, const char *name, mp_lockproxy **out)
{
    return lock_proxy_new(m, "lock", name, true, out);
}

MP_API int mp_manager_lock_from_ref(mp_manager *m, const mp_obj *ref, mp_lockproxy **out)
{
    static const char *const typeids[] = {"Lock", "RLock", NULL}, *const kinds[] = {"lock", "rlock",
                                                                                    NULL};
    return mp__mgr_proxy_from_ref(m, sizeof(mp_lockproxy), typeids, kinds, ref,
                                  (struct proxy **)out);
}

MP_API void mp_lockproxy_free(mp_lockproxy *lk)
{
    if (lk)
        mp__mgr_proxy_free(&lk->p);
}

/* ---- methods ------------------------------------------------------------------------ */

MP_API int mp_lockproxy_acquire(mp_lockproxy *lk, double timeout)
{
    if (!lk)
        return -EINVAL;
    if (mp__bad_timeout(timeout))
        return MP_EVALUE;
    struct marg a[2] = {proxy_arg_timeout(timeout), ARG_INT(mp__mgr_thread_id())};
    return mp__mgr_call_proxy(&lk->p, "acquire", a, 2, proxy_wait(timeout), NULL, NULL);
}

MP_API int mp_lockproxy_release(mp_lockproxy *lk)
{
    if (!lk)
        return -EINVAL;
    struct marg a[1] = {ARG_INT(mp__mgr_thread_id())};
    return mp__mgr_call_proxy(&lk->p, "release", a, 1, 0, NULL, NULL);
}
