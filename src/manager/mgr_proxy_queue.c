/*
 * mgr_proxy_queue - the manager's queue proxy (mp_queueproxy, mpipc/manager.h):
 * its constructors and methods, each one request on the server's queue
 * (docs/manager.md). Shared proxy code: mgr_proxy.c; the family: mgr_client.h.
 */
#include "core/internal.h"
#include "core/io.h"
#include "manager/mgr_client.h"

#include <mpipc/manager.h>

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>

struct mp_queueproxy {
    struct proxy p;
};
_Static_assert(offsetof(struct mp_queueproxy, p) == 0, "a queue is its proxy");

/* ---- constructors ---------------------------------------------------------------- */

/* Create (maxsize: 0 for no limit) or attach a queue; *out NULL on
 * failure. The server keeps maxsize as a Python int, here an int64_t. */
static int queue_proxy_new(mp_manager *m, const char *name, bool attach, size_t maxsize,
                           mp_queueproxy **out)
{
    if (out)
        *out = NULL;
    if ((uint64_t)maxsize > (uint64_t)INT64_MAX)
        return -EOVERFLOW;
    struct marg init = ARG_INT((int64_t)maxsize);
    struct proxy *p = NULL;
    int rc = mp__mgr_proxy_new(m, sizeof(mp_queueproxy), "queue", name, attach,
                               attach ? NULL : &init, out ? &p : NULL);
    if (out)
        *out = (mp_queueproxy *)p;
    return rc;
}

MP_API int mp_manager_queue(mp_manager *m, size_t maxsize, mp_queueproxy **out)
{
    return queue_proxy_new(m, NULL, false, maxsize, out);
}

MP_API int mp_manager_queue_named(mp_manager *m, const char *name, size_t maxsize,
                                  mp_queueproxy **out)
{
    return queue_proxy_new(m, name, false, maxsize, out);
}

MP_API int mp_manager_attach_queue(mp_manager *m, const char *name, mp_queueproxy **out)
{
    return queue_proxy_new(m, name, true, 0, out);
}

MP_API int mp_queueproxy_ref(const mp_queueproxy *q, mp_obj **ref)
{
    /* SyncManager registers Queue without a proxy type: an AutoProxy, which
     * carries queue.Queue's public methods. */
    static const char *const exposed[] = {"empty", "full",       "get",   "get_nowait", "join",
                                          "put",   "put_nowait", "qsize", "task_done",  NULL};
    return mp__mgr_proxy_ref(q ? &q->p : NULL, "AutoProxy", "Queue", exposed, ref);
}

MP_API int mp_manager_queue_from_ref(mp_manager *m, const mp_obj *ref, mp_queueproxy **out)
{
    static const char *const typeids[] = {"Queue", "JoinableQueue", NULL}, *const kinds[] = {
                                                                               "queue", "queue",
                                                                               NULL};
    return mp__mgr_proxy_from_ref(m, sizeof(mp_queueproxy), typeids, kinds, ref,
                                  (struct proxy **)out);
}

MP_API void mp_queueproxy_free(mp_queueproxy *q)
{
    if (q)
        mp__mgr_proxy_free(&q->p);
}

/* ---- methods ------------------------------------------------------------------------ */

MP_API int mp_queueproxy_put(mp_queueproxy *q, const mp_obj *item, double timeout)
{
    if (!q || !item)
        return -EINVAL;
    if (mp__bad_timeout(timeout))
        return MP_EVALUE;
    struct marg a[2] = {ARG_OBJ(item), proxy_arg_timeout(timeout)};
    return mp__mgr_call_proxy(&q->p, "put", a, 2, proxy_wait(timeout), NULL, NULL);
}

MP_API int mp_queueproxy_get(mp_queueproxy *q, mp_obj **item, double timeout)
{
    if (item)
        *item = NULL;
    if (!q || !item)
        return -EINVAL;
    if (mp__bad_timeout(timeout))
        return MP_EVALUE;
    struct marg a[1] = {proxy_arg_timeout(timeout)};
    return mp__mgr_call_proxy(&q->p, "get", a, 1, proxy_wait(timeout), item, NULL);
}

MP_API ssize_t mp_queueproxy_qsize(mp_queueproxy *q)
{
    return mp__mgr_proxy_call_count(q ? &q->p : NULL, "qsize", NULL, 0);
}

MP_API int mp_queueproxy_empty(mp_queueproxy *q)
{
    return mp__mgr_proxy_call_bool(q ? &q->p : NULL, "empty", NULL, 0);
}

MP_API int mp_queueproxy_full(mp_queueproxy *q)
{
    return mp__mgr_proxy_call_bool(q ? &q->p : NULL, "full", NULL, 0);
}

MP_API int mp_queueproxy_task_done(mp_queueproxy *q)
{
    if (!q)
        return -EINVAL;
    return mp__mgr_call_proxy(&q->p, "task_done", NULL, 0, 0, NULL, NULL);
}

MP_API int mp_queueproxy_join(mp_queueproxy *q, double timeout)
{
    if (!q)
        return -EINVAL;
    if (mp__bad_timeout(timeout))
        return MP_EVALUE;
    struct marg a[1] = {proxy_arg_timeout(timeout)};
    return mp__mgr_call_proxy(&q->p, "join", a, 1, proxy_wait(timeout), NULL, NULL);
}
