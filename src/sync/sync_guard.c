/*
 * sync_guard - the guard and sleep machinery that Event, Condition and
 * Barrier share (sync_impl.h): making and unmaking a guarded primitive, and
 * sleeping on a wait-queue slot (psync.h) with the guard released.
 */
#include "sync/sync_impl.h"

/*
 * A waiter with a watch sleeps in slices of WATCH_SLICE_NS and runs it after
 * each slice that ended with no wake (taking the guard has already repaired
 * after a holder that died). A slice of 200 ms puts a death's notice well
 * inside a second, for five guard lock/unlock pairs per waiter per second.
 */
#define WATCH_SLICE_NS ((int64_t)200 * 1000 * 1000)

int mp__sync_guarded_new(void *out, void **obj, size_t guard_off, size_t q_off, uint32_t cap)
{
    unsigned char *p;
    int rc = sync_obj_alloc(out, (void **)&p, q_off + mp__waitq_size(cap));
    if (rc < 0)
        return rc;
    pthread_mutex_t *guard = (pthread_mutex_t *)(p + guard_off);
    struct mp__waitq *q = (struct mp__waitq *)(p + q_off);
    if ((rc = mp__mutex_init(guard, false)) < 0)
        goto fail;
    if ((rc = mp__waitq_init(q, cap)) < 0)
        goto fail_guard;
    *obj = p;
    return 0;

fail_guard:
    (void)pthread_mutex_destroy(guard);
fail:
    mp__shm_free(p);
    return rc;
}

void mp__sync_guarded_free(void *obj, pthread_mutex_t *guard, struct mp__waitq *q)
{
    mp__waitq_destroy(q);
    (void)pthread_mutex_destroy(guard);
    mp__shm_free(obj);
}

int mp__sync_sleep_armed(pthread_mutex_t *guard, struct mp__waitq *q, int idx, int64_t deadline,
                         sync_repair_fn repair, sync_watch_fn watch, void *obj)
{
    MP__ASSERT(idx >= 0 && (uint32_t)idx < q->cap);
    for (;;) {
        int64_t until = deadline;
        if (watch) {
            int64_t slice = mp__now_ns() + WATCH_SLICE_NS;
            if (deadline == MP__NO_DEADLINE || slice < deadline)
                until = slice;
        }
        int rc = mp__waitq_sleep(q, idx, until);
        /* Cannot fail: this thread does not hold the guard, and a dead
         * holder is repaired. */
        (void)sync_guard_lock(guard, q, repair, obj);
        /* Nobody takes a living waiter's slot, not even a repair: it is
         * armed still, or woken. */
        MP__ASSERT(q->slot[idx].state == MP__W_ARMED || q->slot[idx].state == MP__W_WOKEN);
        if (mp__waitq_woken(q, idx))
            return 0;
        if (mp__deadline_passed(deadline))
            return MP_ETIMEDOUT;
        if (rc < 0 && rc != MP_ETIMEDOUT)
            return rc;
        if (watch && watch(obj))
            return 0;
        /* A slice ended, or a post left over from a repair: still armed,
         * sleep on. */
        mp__mutex_unlock(guard);
    }
}

int mp__sync_guard_sleep(pthread_mutex_t *guard, struct mp__waitq *q, int idx, int64_t deadline,
                         sync_repair_fn repair, sync_watch_fn watch, void *obj)
{
    /* The slot is this thread's (entered, not left) and the guard is held. */
    MP__ASSERT(q->slot[idx].state != MP__W_FREE);
    MP__ASSERT(sync_mutex_held(guard));
    mp__waitq_arm(q, idx);
    mp__mutex_unlock(guard);
    return mp__sync_sleep_armed(guard, q, idx, deadline, repair, watch, obj);
}
