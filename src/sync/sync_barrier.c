/*
 * sync_barrier - Barrier (see sync.h), a port of threading.Barrier onto a
 * guard and a wait queue (sync_guard.c) that also survives a party that
 * dies. The other primitives are in the sibling files listed in sync_impl.h.
 */
#include "sync/sync_impl.h"

#include <errno.h>
#include <limits.h>

/* threading.Barrier's states. */
enum { B_FILLING = 0, B_DRAINING = 1, B_RESETTING = -1, B_BROKEN = -2 };

/* Wait-queue tags: a party counted into the current cycle, and one that
 * cycle has released. A released party passes even if the barrier is
 * aborted or reset before it wakes up to look (Python's threading.Barrier
 * would raise BrokenBarrierError in that race). */
#define TAG_COUNTED  1u
#define TAG_RELEASED 2u

struct mp_barrier {
    pthread_mutex_t guard;
    unsigned parties;
    int state;
    unsigned count; /* parties counted in; each holds a TAG_COUNTED slot */
    mp_barrier_action action;
    void *arg;
    double timeout;
    struct mp__waitq q;
};

static void barrier_wake_all(mp_barrier *b);

/*
 * Every change of state goes through here, so the transitions
 * threading.Barrier makes are the only ones: FILLING once nobody is counted
 * in (a new cycle, the end of a drain or reset), DRAINING when the last
 * party of a filling barrier arrives, RESETTING from a filling or broken
 * one that still has parties in it, BROKEN from anywhere.
 */
static void barrier_set_state(mp_barrier *b, int to)
{
    MP__ASSERT(b->count <= b->parties);
    MP__ASSERT(to != B_FILLING || b->count == 0);
    MP__ASSERT(to != B_DRAINING || (b->state == B_FILLING && b->count == b->parties));
    MP__ASSERT(to != B_RESETTING || b->state == B_FILLING || b->state == B_BROKEN);
    b->state = to;
}

/* A reaped slot's owner died. A counted party that died while the barrier
 * was filling can never be released honestly: break. One that died after
 * release (draining) only has to be counted out. */
static void barrier_on_dead(void *ctx, uint32_t tag)
{
    mp_barrier *b = ctx;
    if (!(tag & TAG_COUNTED))
        return;
    MP__ASSERT(b->count > 0);
    b->count--;
    if (b->state == B_FILLING)
        barrier_set_state(b, B_BROKEN);
}

/* threading.Barrier._exit(): the last party out of a drain or reset refills. */
static void barrier_exit_check(mp_barrier *b)
{
    if (b->count == 0 && (b->state == B_RESETTING || b->state == B_DRAINING)) {
        barrier_set_state(b, B_FILLING);
        barrier_wake_all(b);
    }
}

static void barrier_wake_all(mp_barrier *b)
{
    (void)mp__waitq_wake(&b->q, UINT_MAX, barrier_on_dead, b);
}

static void barrier_reap(mp_barrier *b)
{
    if (mp__waitq_reap(&b->q, barrier_on_dead, b) > 0) {
        barrier_wake_all(b);
        barrier_exit_check(b);
    }
}

/* The guard's holder died: the state may be half-updated. Recount the
 * living counted parties from their slots and break (Python would have lost
 * the whole barrier). */
static void barrier_repair(void *obj)
{
    mp_barrier *b = obj;
    (void)mp__waitq_reap(&b->q, NULL, NULL);
    unsigned counted = 0;
    for (uint32_t i = 0; i < b->q.cap; i++)
        if (b->q.slot[i].state != MP__W_FREE && (b->q.slot[i].tag & TAG_COUNTED))
            counted++;
    b->count = counted;
    barrier_set_state(b, B_BROKEN);
    barrier_wake_all(b);
}

MP_API int mp_barrier_new(mp_barrier **out, unsigned parties, mp_barrier_action action, void *arg,
                          double timeout)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (parties == 0 || mp__bad_timeout(timeout))
        return MP_EVALUE;
    if (parties > (UINT32_MAX - MP_SYNC_MAX_WAITERS) / 2)
        return -ENOMEM;
    uint32_t cap = 2 * parties + MP_SYNC_MAX_WAITERS;
    mp_barrier *b;
    int rc = mp__sync_guarded_new(out, (void **)&b, offsetof(mp_barrier, guard),
                                  offsetof(mp_barrier, q), cap);
    if (rc < 0)
        return rc;
    b->parties = parties;
    b->state = B_FILLING;
    b->action = action;
    b->arg = arg;
    b->timeout = timeout;
    *out = b;
    return 0;
}

/* A waiter's watch (see sync_watch_fn): reap parties that died, which breaks
 * a filling barrier or counts out a drainer, and have the waiter look at
 * the state again, whether or not anything changed. */
static bool barrier_watch(void *obj)
{
    barrier_reap(obj);
    return true;
}

/* Lock the guard (repairing after a dead holder) and, when asked, reap
 * parties that died, which may break or refill the barrier first. */
static int barrier_lock(mp_barrier *b, bool reap)
{
    if (!b)
        return -EINVAL;
    int rc = sync_guard_lock(&b->guard, &b->q, barrier_repair, b);
    if (rc == 0 && reap)
        barrier_reap(b);
    return rc;
}

static void barrier_break(mp_barrier *b)
{
    barrier_set_state(b, B_BROKEN);
    barrier_wake_all(b);
}

/* Sleep on the party's slot (guard held, and held again on return). */
static int barrier_sleep(mp_barrier *b, int idx, int64_t deadline)
{
    return mp__sync_guard_sleep(&b->guard, &b->q, idx, deadline, barrier_repair, barrier_watch, b);
}

static bool barrier_released(const mp_barrier *b, int idx)
{
    return (mp__waitq_tag(&b->q, idx) & TAG_RELEASED) != 0;
}

/* threading.Barrier._release(), by the last party to arrive: run the action
 * (guard held, so no party of the next cycle can slip in meanwhile: Python
 * holds the condition's lock too), then release every counted party.
 * Returns 0, or MP_EBROKEN when the action failed. */
static int barrier_release(mp_barrier *b)
{
    if (b->action && b->action(b->arg) != 0) {
        barrier_break(b);
        return MP_EBROKEN;
    }
    barrier_set_state(b, B_DRAINING);
    for (uint32_t i = 0; i < b->q.cap; i++)
        if (b->q.slot[i].state != MP__W_FREE && (b->q.slot[i].tag & TAG_COUNTED))
            b->q.slot[i].tag |= TAG_RELEASED;
    barrier_wake_all(b);
    return 0;
}

/* A port of threading.Barrier.wait(timeout=None): Python's None is
 * MP_FOREVER here, and as in Python it means the barrier's own timeout. */
MP_API int mp_barrier_wait(mp_barrier *b, double timeout)
{
    if (!b)
        return -EINVAL;
    if (mp__bad_timeout(timeout))
        return MP_EVALUE;
    if (timeout < 0)
        timeout = b->timeout;
    int64_t deadline = mp__deadline(timeout);
    int rc = barrier_lock(b, true);
    if (rc < 0)
        return rc;
    int idx = sync_enter(&b->guard, &b->q, barrier_on_dead, b);
    if (idx < 0)
        return idx;
    int result;

    /* _enter(): wait out a drain or reset still in progress. */
    while (b->state == B_DRAINING || b->state == B_RESETTING) {
        if (barrier_sleep(b, idx, deadline) < 0) {
            if (b->state == B_DRAINING || b->state == B_RESETTING)
                barrier_break(b);
            break;
        }
    }
    if (b->state != B_FILLING) {
        result = MP_EBROKEN;
        goto out;
    }

    MP__ASSERT(b->count < b->parties); /* the last arrival ends the filling */
    result = (int)b->count++;
    mp__waitq_set_tag(&b->q, idx, TAG_COUNTED);
    if (b->count == b->parties) {
        rc = barrier_release(b);
        if (rc < 0)
            result = rc;
    } else {
        /* _wait(): until released or broken; a timeout breaks it for all. */
        while (b->state == B_FILLING && !barrier_released(b, idx)) {
            if (barrier_sleep(b, idx, deadline) < 0) {
                if (b->state == B_FILLING && !barrier_released(b, idx))
                    barrier_break(b);
                break;
            }
        }
        if (!barrier_released(b, idx))
            result = MP_EBROKEN;
    }
    /* A repair may have counted us out already along with the dead. */
    if (mp__waitq_tag(&b->q, idx) & TAG_COUNTED) {
        MP__ASSERT(b->count > 0);
        b->count--;
        mp__waitq_set_tag(&b->q, idx, 0);
    }
    barrier_exit_check(b);
out:
    mp__waitq_leave(&b->q, idx);
    mp__mutex_unlock(&b->guard);
    return result;
}

MP_API int mp_barrier_abort(mp_barrier *b)
{
    int rc = barrier_lock(b, false);
    if (rc < 0)
        return rc;
    barrier_break(b);
    mp__mutex_unlock(&b->guard);
    return 0;
}

MP_API int mp_barrier_reset(mp_barrier *b)
{
    int rc = barrier_lock(b, true);
    if (rc < 0)
        return rc;
    if (b->count > 0) {
        if (b->state == B_FILLING || b->state == B_BROKEN)
            barrier_set_state(b, B_RESETTING);
    } else {
        barrier_set_state(b, B_FILLING);
    }
    barrier_wake_all(b);
    mp__mutex_unlock(&b->guard);
    return 0;
}

MP_API unsigned mp_barrier_parties(const mp_barrier *b)
{
    return b ? b->parties : 0;
}

MP_API ssize_t mp_barrier_n_waiting(mp_barrier *b)
{
    int rc = barrier_lock(b, true);
    if (rc < 0)
        return rc;
    ssize_t n = b->state == B_FILLING ? (ssize_t)b->count : 0;
    mp__mutex_unlock(&b->guard);
    return n;
}

MP_API int mp_barrier_broken(mp_barrier *b)
{
    int rc = barrier_lock(b, true);
    if (rc < 0)
        return rc;
    int broken = b->state == B_BROKEN;
    mp__mutex_unlock(&b->guard);
    return broken;
}

MP_API void mp_barrier_free(mp_barrier *b)
{
    if (b && mp__shm_owned(b))
        mp__sync_guarded_free(b, &b->guard, &b->q);
}

size_t mp__sync_barrier_header(void)
{
    return sizeof(mp_barrier);
}

/* From the parties and the wait queue's own cap, which must agree with
 * what mp_barrier_new made: 0 otherwise (a block a child received). */
size_t mp__sync_barrier_size(const mp_barrier *b)
{
    if (b->parties == 0 || b->parties > (UINT32_MAX - MP_SYNC_MAX_WAITERS) / 2)
        return 0;
    uint32_t cap = 2 * b->parties + MP_SYNC_MAX_WAITERS;
    if (b->q.cap != cap)
        return 0;
    return offsetof(mp_barrier, q) + mp__waitq_size(cap);
}

bool mp__sync_barrier_has_action(const mp_barrier *b)
{
    return b->action != NULL || b->arg != NULL;
}
