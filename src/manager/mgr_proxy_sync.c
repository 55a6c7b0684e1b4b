/*
 * mgr_proxy_sync - the manager's Semaphore, Event, Condition and Barrier
 * proxies (mpipc/manager_sync.h): constructors and methods, each one request
 * on the server's object (mgr_type_sync.c, docs/manager.md). Shared proxy
 * code: mgr_proxy.c; the family: mgr_client.h.
 */
#include "core/internal.h"
#include "core/io.h"
#include "manager/mgr_client.h"

#include <mpipc/manager.h>

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>

struct mp_semproxy {
    struct proxy p;
};
struct mp_eventproxy {
    struct proxy p;
};
struct mp_condproxy {
    struct proxy p;
};
struct mp_barrierproxy {
    struct proxy p;
};
_Static_assert(offsetof(struct mp_semproxy, p) == 0, "a semaphore is its proxy");
_Static_assert(offsetof(struct mp_eventproxy, p) == 0, "an event is its proxy");
_Static_assert(offsetof(struct mp_condproxy, p) == 0, "a condition is its proxy");
_Static_assert(offsetof(struct mp_barrierproxy, p) == 0, "a barrier is its proxy");

/* Create an object of kind with create's initial value (NULL: None); the
 * proxy (size bytes) in *out, NULL on failure. */
static int sync_proxy_new(mp_manager *m, size_t size, const char *kind, const struct marg *init,
                          void **out)
{
    struct proxy *p = NULL;
    if (!out)
        return -EINVAL;
    int rc = mp__mgr_proxy_new(m, size, kind, NULL, false, init, &p);
    *out = p;
    return rc;
}

/* A call that may wait in the server up to timeout, with its arguments. */
static int sync_proxy_wait(struct proxy *p, const char *method, struct marg *a, size_t n,
                           double timeout, mp_obj **result)
{
    if (mp__bad_timeout(timeout))
        return MP_EVALUE;
    return mp__mgr_call_proxy(p, method, a, n, proxy_wait(timeout), result, NULL);
}

/* ---- Semaphore ------------------------------------------------------------------- */

MP_API int mp_manager_semaphore(mp_manager *m, unsigned value, mp_semproxy **out)
{
    struct marg init = ARG_INT((int64_t)value);
    return sync_proxy_new(m, sizeof(mp_semproxy), "semaphore", &init, (void **)out);
}

MP_API int mp_manager_bounded_semaphore(mp_manager *m, unsigned value, mp_semproxy **out)
{
    struct marg init = ARG_INT((int64_t)value);
    return sync_proxy_new(m, sizeof(mp_semproxy), "boundedsemaphore", &init, (void **)out);
}

MP_API int mp_semproxy_acquire(mp_semproxy *sem, double timeout)
{
    if (!sem)
        return -EINVAL;
    struct marg a[2] = {proxy_arg_timeout(timeout), ARG_INT(mp__mgr_thread_id())};
    return sync_proxy_wait(&sem->p, "acquire", a, 2, timeout, NULL);
}

MP_API int mp_semproxy_release(mp_semproxy *sem)
{
    if (!sem)
        return -EINVAL;
    struct marg a[1] = {ARG_INT(mp__mgr_thread_id())};
    return mp__mgr_call_proxy(&sem->p, "release", a, 1, 0, NULL, NULL);
}

MP_API ssize_t mp_semproxy_get_value(mp_semproxy *sem)
{
    return mp__mgr_proxy_call_count(sem ? &sem->p : NULL, "get_value", NULL, 0);
}

MP_API void mp_semproxy_free(mp_semproxy *sem)
{
    if (sem)
        mp__mgr_proxy_free(&sem->p);
}

/* ---- Event ----------------------------------------------------------------------- */

MP_API int mp_manager_event(mp_manager *m, mp_eventproxy **out)
{
    return sync_proxy_new(m, sizeof(mp_eventproxy), "event", NULL, (void **)out);
}

MP_API int mp_eventproxy_set(mp_eventproxy *ev)
{
    return ev ? mp__mgr_call_proxy(&ev->p, "set", NULL, 0, 0, NULL, NULL) : -EINVAL;
}

MP_API int mp_eventproxy_clear(mp_eventproxy *ev)
{
    return ev ? mp__mgr_call_proxy(&ev->p, "clear", NULL, 0, 0, NULL, NULL) : -EINVAL;
}

MP_API int mp_eventproxy_is_set(mp_eventproxy *ev)
{
    return mp__mgr_proxy_call_bool(ev ? &ev->p : NULL, "is_set", NULL, 0);
}

MP_API int mp_eventproxy_wait(mp_eventproxy *ev, double timeout)
{
    if (!ev)
        return -EINVAL;
    struct marg a[1] = {proxy_arg_timeout(timeout)};
    return sync_proxy_wait(&ev->p, "wait", a, 1, timeout, NULL);
}

MP_API void mp_eventproxy_free(mp_eventproxy *ev)
{
    if (ev)
        mp__mgr_proxy_free(&ev->p);
}

/* ---- Condition --------------------------------------------------------------------- */

MP_API int mp_manager_condition(mp_manager *m, mp_lockproxy *lock, mp_condproxy **out)
{
    /* A lock proxy begins with its struct proxy (mgr_proxy_lock.c). */
    const struct proxy *lp = (const struct proxy *)lock;
    if (lp && lp->m != m) {
        if (out)
            *out = NULL;
        return -EINVAL; /* a lock of another manager */
    }
    /* Our server takes the lock's id; CPython's the lock itself, as a
     * pickled proxy (mp__mgr_py_lock_ref). */
    mp_obj *ref = NULL;
    if (lp && m->py) {
        int rc = mp__mgr_py_lock_ref(lp, &ref);
        if (rc < 0) {
            if (out)
                *out = NULL;
            return rc;
        }
    }
    struct marg init = ref ? ARG_OBJ(ref) : lp ? ARG_INT(lp->id) : ARG_NONE;
    int rc = sync_proxy_new(m, sizeof(mp_condproxy), "condition", &init, (void **)out);
    mp_obj_free(ref);
    return rc;
}

MP_API int mp_condproxy_acquire(mp_condproxy *cond, double timeout)
{
    if (!cond)
        return -EINVAL;
    struct marg a[2] = {proxy_arg_timeout(timeout), ARG_INT(mp__mgr_thread_id())};
    return sync_proxy_wait(&cond->p, "acquire", a, 2, timeout, NULL);
}

MP_API int mp_condproxy_release(mp_condproxy *cond)
{
    if (!cond)
        return -EINVAL;
    struct marg a[1] = {ARG_INT(mp__mgr_thread_id())};
    return mp__mgr_call_proxy(&cond->p, "release", a, 1, 0, NULL, NULL);
}

MP_API int mp_condproxy_wait(mp_condproxy *cond, double timeout)
{
    if (!cond)
        return -EINVAL;
    struct marg a[2] = {proxy_arg_timeout(timeout), ARG_INT(mp__mgr_thread_id())};
    return sync_proxy_wait(&cond->p, "wait", a, 2, timeout, NULL);
}

/* Python's Condition.wait_for, here as in Python's proxy: on the client,
 * with one deadline for all the waits. */
MP_API int mp_condproxy_wait_for(mp_condproxy *cond, bool (*pred)(void *arg), void *arg,
                                 double timeout)
{
    if (!cond || !pred)
        return -EINVAL;
    if (mp__bad_timeout(timeout))
        return MP_EVALUE;
    int64_t deadline = mp__deadline(timeout);
    while (!pred(arg)) {
        double left = MP_FOREVER;
        if (deadline != MP__NO_DEADLINE) {
            int64_t ns = deadline - mp__now_ns();
            if (ns <= 0)
                return 0;
            left = (double)ns / 1e9;
        }
        int rc = mp_condproxy_wait(cond, left);
        if (rc < 0 && rc != MP_ETIMEDOUT && rc != MP_EOWNERDEAD)
            return rc;
    }
    return 1;
}

MP_API ssize_t mp_condproxy_notify(mp_condproxy *cond, size_t n)
{
    struct marg a[2] = {ARG_INT(n > (size_t)INT64_MAX ? INT64_MAX : (int64_t)n),
                        ARG_INT(mp__mgr_thread_id())};
    return mp__mgr_proxy_call_count(cond ? &cond->p : NULL, "notify", a, 2);
}

MP_API ssize_t mp_condproxy_notify_all(mp_condproxy *cond)
{
    struct marg a[1] = {ARG_INT(mp__mgr_thread_id())};
    return mp__mgr_proxy_call_count(cond ? &cond->p : NULL, "notify_all", a, 1);
}

MP_API void mp_condproxy_free(mp_condproxy *cond)
{
    if (cond)
        mp__mgr_proxy_free(&cond->p);
}

/* ---- Barrier ----------------------------------------------------------------------- */

MP_API int mp_manager_barrier(mp_manager *m, unsigned parties, double default_timeout,
                              mp_barrierproxy **out)
{
    if (mp__bad_timeout(default_timeout)) {
        if (out)
            *out = NULL;
        return MP_EVALUE;
    }
    mp_obj *init = mp_obj_build(
        "(IN)", parties, default_timeout < 0 ? mp_obj_none() : mp_obj_float(default_timeout));
    if (!init) {
        if (out)
            *out = NULL;
        return -ENOMEM;
    }
    struct marg a = ARG_OBJ(init);
    int rc = sync_proxy_new(m, sizeof(mp_barrierproxy), "barrier", &a, (void **)out);
    mp_obj_free(init);
    return rc;
}

MP_API int mp_barrierproxy_wait(mp_barrierproxy *b, double timeout)
{
    if (!b)
        return -EINVAL;
    struct marg a[1] = {proxy_arg_timeout(timeout)};
    mp_obj *r = NULL;
    int rc = sync_proxy_wait(&b->p, "wait", a, 1, timeout, &r);
    if (rc < 0)
        return rc;
    int64_t v;
    rc = mp_obj_get_int(r, &v) == 0 && v >= 0 && v <= INT32_MAX ? (int)v : MP_EPROTO;
    mp_obj_free(r);
    return rc;
}

MP_API int mp_barrierproxy_abort(mp_barrierproxy *b)
{
    return b ? mp__mgr_call_proxy(&b->p, "abort", NULL, 0, 0, NULL, NULL) : -EINVAL;
}

MP_API int mp_barrierproxy_reset(mp_barrierproxy *b)
{
    return b ? mp__mgr_call_proxy(&b->p, "reset", NULL, 0, 0, NULL, NULL) : -EINVAL;
}

MP_API ssize_t mp_barrierproxy_parties(mp_barrierproxy *b)
{
    return mp__mgr_proxy_call_count(b ? &b->p : NULL, "parties", NULL, 0);
}

MP_API ssize_t mp_barrierproxy_n_waiting(mp_barrierproxy *b)
{
    return mp__mgr_proxy_call_count(b ? &b->p : NULL, "n_waiting", NULL, 0);
}

MP_API int mp_barrierproxy_broken(mp_barrierproxy *b)
{
    return mp__mgr_proxy_call_bool(b ? &b->p : NULL, "broken", NULL, 0);
}

MP_API void mp_barrierproxy_free(mp_barrierproxy *b)
{
    if (b)
        mp__mgr_proxy_free(&b->p);
}
