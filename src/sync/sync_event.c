/*
 * sync_event - Event and Condition (see sync.h): a guard around a flag, or
 * around nothing but the wait queue, with the sleep of sync_guard.c. The
 * other primitives are in the sibling files listed in sync_impl.h.
 */
#include "sync/sync_impl.h"

#include <errno.h>
#include <limits.h>

/* ---- Event ------------------------------------------------------------------------ */

struct mp_event {
    pthread_mutex_t guard;
    int flag; /* written under the guard, read anywhere */
    struct mp__waitq q;
};

MP_API int mp_event_new(mp_event **out)
{
    mp_event *e;
    int rc = mp__sync_guarded_new(out, (void **)&e, offsetof(mp_event, guard),
                                  offsetof(mp_event, q), MP_SYNC_MAX_WAITERS);
    if (rc == 0)
        *out = e;
    return rc;
}

/* Lock the Event's guard (an Event has no state a dead holder can leave
 * half-done). */
static int event_lock(mp_event *ev)
{
    return sync_guard_lock(&ev->guard, &ev->q, NULL, NULL);
}

/* set() and clear(): the flag changes under the guard, so that a waiter
 * that found it clear is armed before a set() can look for waiters. */
static int event_store(mp_event *ev, int flag)
{
    if (!ev)
        return -EINVAL;
    int rc = event_lock(ev);
    if (rc < 0)
        return rc;
    __atomic_store_n(&ev->flag, flag, __ATOMIC_RELEASE);
    if (flag)
        (void)mp__waitq_wake(&ev->q, UINT_MAX, NULL, NULL);
    mp__mutex_unlock(&ev->guard);
    return 0;
}

MP_API int mp_event_set(mp_event *ev)
{
    return event_store(ev, 1);
}

MP_API int mp_event_clear(mp_event *ev)
{
    return event_store(ev, 0);
}

MP_API int mp_event_is_set(mp_event *ev)
{
    if (!ev)
        return -EINVAL;
    return __atomic_load_n(&ev->flag, __ATOMIC_ACQUIRE) ? 1 : 0;
}

MP_API int mp_event_wait(mp_event *ev, double timeout)
{
    if (!ev)
        return -EINVAL;
    if (mp__bad_timeout(timeout))
        return MP_EVALUE;
    if (__atomic_load_n(&ev->flag, __ATOMIC_ACQUIRE))
        return 0;
    int64_t deadline = mp__deadline(timeout);
    int rc = event_lock(ev);
    if (rc < 0)
        return rc;
    if (ev->flag || timeout == 0) {
        rc = ev->flag ? 0 : MP_ETIMEDOUT;
        mp__mutex_unlock(&ev->guard);
        return rc;
    }
    int idx = sync_enter(&ev->guard, &ev->q, NULL, NULL);
    if (idx < 0)
        return idx;
    rc = mp__sync_guard_sleep(&ev->guard, &ev->q, idx, deadline, NULL, NULL, NULL);
    mp__waitq_leave(&ev->q, idx);
    /* Woken by set(), or set by the time we look. A set() and a clear()
     * that both happened while we slept still give 0: the flag was set
     * during the wait (threading.Event's answer). */
    bool set = rc == 0 || ev->flag;
    mp__mutex_unlock(&ev->guard);
    if (set)
        return 0;
    return rc;
}

MP_API void mp_event_free(mp_event *ev)
{
    if (ev && mp__shm_owned(ev))
        mp__sync_guarded_free(ev, &ev->guard, &ev->q);
}

/* ---- Condition -------------------------------------------------------------------- */

/* The lock is the caller's (lock_ext or rlock_ext) or the Condition's own
 * RLock, which lives inside it (no pointer), so that a Condition made with
 * its own lock means the same at any address (a JoinableQueue's, handed to
 * a forkserver or spawn child). */
struct mp_cond {
    pthread_mutex_t guard;
    mp_lock *lock_ext; /* at most one of lock_ext and rlock_ext is set */
    mp_rlock *rlock_ext;
    bool own_rlock; /* neither: own is the lock */
    struct mp_rlock own;
    struct mp__waitq q;
};

/*
 * A Condition over the caller's lock handed to a forkserver or spawn child
 * keeps the parent's address of the lock in its shared fields; the child
 * maps the lock elsewhere and records that address here, once, before its
 * target runs (mp__sync_cond_rebase). Process-wide, like the table of
 * inherited objects it completes; a fork child keeps it with the mappings.
 * Entries are never removed or moved, so readers need only the count; the
 * mappings they point into stay for the child's life (a message that fails
 * after an entry was made ends the child before its target: context.c).
 */
#define COND_REBASE_MAX 64
static struct cond_rebase {
    const mp_cond *cond;
    void *lock;
} cond_rebased[COND_REBASE_MAX];
static size_t cond_nrebased;
static pthread_mutex_t cond_rebase_mu = PTHREAD_MUTEX_INITIALIZER;

/* The address of c's lock in this process: ext (the field), unless c was
 * rebased here. A process that inherited no such Condition pays one load. */
static void *cond_here(const mp_cond *c, void *ext)
{
    size_t n = __atomic_load_n(&cond_nrebased, __ATOMIC_ACQUIRE);
    for (size_t i = 0; i < n; i++)
        if (cond_rebased[i].cond == c)
            return cond_rebased[i].lock;
    return ext;
}

int mp__sync_cond_rebase(const mp_cond *c, void *lock)
{
    pthread_mutex_lock(&cond_rebase_mu);
    size_t n = cond_nrebased;
    int rc = n < COND_REBASE_MAX ? 0 : MP_EVALUE;
    if (rc == 0) {
        cond_rebased[n] = (struct cond_rebase){c, lock};
        __atomic_store_n(&cond_nrebased, n + 1, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&cond_rebase_mu);
    return rc;
}

/* The Condition's Lock, or NULL when its lock is an RLock. */
static inline mp_lock *cond_lock(mp_cond *c)
{
    return c->lock_ext ? cond_here(c, c->lock_ext) : NULL;
}

/* The Condition's RLock, or NULL when its lock is a Lock. */
static inline mp_rlock *cond_rlock(mp_cond *c)
{
    return c->own_rlock ? &c->own : c->rlock_ext ? cond_here(c, c->rlock_ext) : NULL;
}

static int cond_make(mp_cond **out, mp_lock *lock, mp_rlock *rlock)
{
    mp_cond *c;
    int rc = mp__sync_guarded_new(out, (void **)&c, offsetof(mp_cond, guard), offsetof(mp_cond, q),
                                  MP_SYNC_MAX_WAITERS);
    if (rc < 0)
        return rc;
    c->lock_ext = lock;
    c->rlock_ext = rlock;
    if (!lock && !rlock) {
        if ((rc = mp__mutex_init(&c->own.mu, true)) < 0)
            goto fail;
        c->own_rlock = true;
    }
    *out = c;
    return 0;

fail:
    mp__sync_guarded_free(c, &c->guard, &c->q);
    return rc;
}

/* Lock the Condition's guard (it guards only the wait queue). Lock order:
 * the condition's lock, then the guard, never the other way round. */
static int cond_guard_lock(mp_cond *c)
{
    return sync_guard_lock(&c->guard, &c->q, NULL, NULL);
}

MP_API int mp_cond_new(mp_cond **out, mp_lock *lock)
{
    return cond_make(out, lock, NULL);
}

MP_API int mp_cond_new_rlock(mp_cond **out, mp_rlock *rlock)
{
    if (!rlock) {
        if (out)
            *out = NULL;
        return -EINVAL;
    }
    return cond_make(out, NULL, rlock);
}

MP_API int mp_cond_acquire(mp_cond *cond, double timeout)
{
    if (!cond)
        return -EINVAL;
    return cond->lock_ext ? mp_lock_acquire(cond_lock(cond), timeout)
                          : mp_rlock_acquire(cond_rlock(cond), timeout);
}

MP_API int mp_cond_release(mp_cond *cond)
{
    if (!cond)
        return -EINVAL;
    return cond->lock_ext ? mp_lock_release(cond_lock(cond)) : mp_rlock_release(cond_rlock(cond));
}

/* How many levels of the condition's lock the calling thread holds (a Lock
 * counts 1), or 0: Python's _semlock._is_mine() and _count(). */
static int cond_levels(mp_cond *c)
{
    if (cond_rlock(c))
        return sync_rlock_levels(cond_rlock(c));
    mp_lock *lock = cond_lock(c);
    int rc = pthread_mutex_trylock(&lock->mu);
    if (rc == EDEADLK)
        return 1;
    if (rc == EOWNERDEAD)
        (void)pthread_mutex_consistent(&lock->mu);
    if (rc == 0 || rc == EOWNERDEAD)
        (void)pthread_mutex_unlock(&lock->mu);
    return 0;
}

/* Release every level the caller holds (it holds `levels` > 0). */
static void cond_release_all(mp_cond *c, int levels)
{
    MP__ASSERT(levels > 0);
    MP__ASSERT(c->lock_ext ? levels == 1 : cond_rlock(c)->count == levels);
    if (c->lock_ext) {
        (void)pthread_mutex_unlock(&cond_lock(c)->mu);
        return;
    }
    cond_rlock(c)->count = 0;
    for (int i = 0; i < levels; i++)
        (void)pthread_mutex_unlock(&cond_rlock(c)->mu);
}

/* Take the lock back at `levels`, without limit. 0 or MP_EOWNERDEAD. */
static int cond_reacquire(mp_cond *c, int levels)
{
    if (c->lock_ext)
        return mp__mutex_lock(&cond_lock(c)->mu, MP__NO_DEADLINE);
    int rc = mp__mutex_lock(&cond_rlock(c)->mu, MP__NO_DEADLINE);
    for (int i = 1; i < levels; i++)
        (void)pthread_mutex_lock(&cond_rlock(c)->mu); /* the owner's nesting: instant */
    cond_rlock(c)->count = levels;
    return rc == MP_EOWNERDEAD ? MP_EOWNERDEAD : 0;
}

MP_API int mp_cond_wait(mp_cond *cond, double timeout)
{
    if (!cond)
        return -EINVAL;
    if (mp__bad_timeout(timeout))
        return MP_EVALUE;
    int64_t deadline = mp__deadline(timeout);
    int levels = cond_levels(cond);
    if (levels == 0)
        return MP_ESTATE;
    int rc = cond_guard_lock(cond);
    if (rc < 0)
        return rc;
    int idx = sync_enter(&cond->guard, &cond->q, NULL, NULL);
    if (idx < 0)
        return idx;
    /* Registered before the lock is released, so a notify() - which needs
     * the lock - cannot fall between the two and be missed. */
    mp__waitq_arm(&cond->q, idx);
    mp__mutex_unlock(&cond->guard);
    cond_release_all(cond, levels);
    rc = mp__sync_sleep_armed(&cond->guard, &cond->q, idx, deadline, NULL, NULL, NULL);
    mp__waitq_leave(&cond->q, idx);
    mp__mutex_unlock(&cond->guard);
    /* Lock order: the condition's lock is taken with the guard released,
     * as every other caller takes the lock before the guard. */
    int lrc = cond_reacquire(cond, levels);
    MP__ASSERT(cond_levels(cond) == levels);
    return lrc == MP_EOWNERDEAD ? MP_EOWNERDEAD : rc;
}

MP_API int mp_cond_wait_for(mp_cond *cond, bool (*pred)(void *arg), void *arg, double timeout)
{
    if (!cond || !pred)
        return -EINVAL;
    if (mp__bad_timeout(timeout))
        return MP_EVALUE;
    /* Python checks the predicate before anything else, lock or not. */
    if (pred(arg))
        return 0;
    int64_t deadline = mp__deadline(timeout);
    bool owner_died = false;
    for (;;) {
        double left = mp__deadline_left(deadline);
        if (left == 0)
            return MP_ETIMEDOUT;
        int rc = mp_cond_wait(cond, left);
        if (rc == MP_EOWNERDEAD)
            owner_died = true;
        else if (rc < 0 && rc != MP_ETIMEDOUT)
            return rc;
        if (pred(arg))
            return owner_died ? MP_EOWNERDEAD : 0;
    }
}

MP_API ssize_t mp_cond_notify(mp_cond *cond, size_t n)
{
    if (!cond)
        return -EINVAL;
    if (cond_levels(cond) == 0)
        return MP_ESTATE;
    int rc = cond_guard_lock(cond);
    if (rc < 0)
        return rc;
    /* The wait queue counts in unsigned: more than UINT_MAX is "all". */
    unsigned want = n > UINT_MAX ? UINT_MAX : (unsigned)n;
    unsigned woken = want ? mp__waitq_wake(&cond->q, want, NULL, NULL) : 0;
    mp__mutex_unlock(&cond->guard);
    return (ssize_t)woken;
}

MP_API ssize_t mp_cond_notify_all(mp_cond *cond)
{
    return mp_cond_notify(cond, SIZE_MAX);
}

MP_API void mp_cond_free(mp_cond *cond)
{
    if (cond && mp__shm_owned(cond)) {
        if (cond->own_rlock)
            (void)pthread_mutex_destroy(&cond->own.mu);
        mp__sync_guarded_free(cond, &cond->guard, &cond->q);
    }
}

size_t mp__sync_event_size(void)
{
    return offsetof(mp_event, q) + mp__waitq_size(MP_SYNC_MAX_WAITERS);
}

size_t mp__sync_cond_size(void)
{
    return offsetof(mp_cond, q) + mp__waitq_size(MP_SYNC_MAX_WAITERS);
}

bool mp__sync_cond_self_contained(const mp_cond *c)
{
    return c->own_rlock;
}

bool mp__sync_cond_well_formed(const mp_cond *c)
{
    bool has_lock = c->lock_ext != NULL, has_rlock = c->rlock_ext != NULL;
    return c->own_rlock ? !has_lock && !has_rlock : has_lock != has_rlock;
}

const void *mp__sync_cond_ext(const mp_cond *c, bool *is_rlock)
{
    *is_rlock = c->rlock_ext != NULL;
    return c->own_rlock  ? NULL
           : c->lock_ext ? cond_here(c, c->lock_ext)
                         : cond_here(c, c->rlock_ext);
}
