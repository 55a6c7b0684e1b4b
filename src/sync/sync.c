/*
 * sync - Lock, RLock, Semaphore, Event, Condition, Barrier, Value and Array
 * for forked processes (see sync.h), on the building blocks of psync.h.
 *
 * Every object is one block of shared memory (shm.h) and the handle is a
 * pointer to it, so there is no process-local state to rebuild after fork.
 *
 *   Lock       a robust error-checking pthread mutex.
 *   RLock      a robust recursive pthread mutex plus the level, which only
 *              the owner reads or writes (Condition needs it).
 *   Semaphore  a process-shared sem_t; a bounded one serialises release()
 *              with a guard mutex so two releases cannot both pass the
 *              maxvalue check.
 *   Event, Condition, Barrier
 *              a guard (robust mutex) around a little state and a wait
 *              queue. When the guard comes back with MP_EOWNERDEAD, the wait
 *              queue is repaired and so is the object's own state.
 */
#include "core/internal.h"
#include "core/io.h"
#include "core/psync.h"
#include "core/shm.h"

#include <mpipc/sync.h>

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* ---- shared memory ------------------------------------------------------------ */

MP_API int mp_shm_alloc(void **out, size_t size)
{
    return mp__shm_alloc(out, size);
}

MP_API void mp_shm_free(void *p)
{
    (void)mp__shm_free(p);
}

/* A zeroed object of `size` bytes in shared memory for a constructor's
 * out-parameter `out`, which is cleared first (NULL out: -EINVAL). */
static int obj_alloc(void *out, void **obj, size_t size)
{
    if (!out)
        return -EINVAL;
    *(void **)out = NULL;
    return mp__shm_alloc(obj, size);
}

/* ---- Lock ------------------------------------------------------------------------- */

struct mp_lock {
    pthread_mutex_t mu;
};

MP_API int mp_lock_new(mp_lock **out)
{
    mp_lock *l;
    int rc = obj_alloc(out, (void **)&l, sizeof *l);
    if (rc < 0)
        return rc;
    rc = mp__mutex_init(&l->mu, false);
    if (rc < 0) {
        mp__shm_free(l);
        return rc;
    }
    *out = l;
    return 0;
}

/* The slow part of acquiring a lock that trylock did not get: rc is
 * trylock's result. Shared by Lock and RLock. */
static int lock_slow(pthread_mutex_t *mu, int rc, double timeout)
{
    if (rc == EOWNERDEAD) {
        (void)pthread_mutex_consistent(mu);
        return MP_EOWNERDEAD;
    }
    if (rc == EDEADLK) {
        /* A Lock's holder asking again: Python blocks until the timeout
         * (forever with none). Forever would be a certain deadlock. */
        if (timeout < 0)
            return -EDEADLK;
        mp__sleep(timeout);
        return MP_ETIMEDOUT;
    }
    if (rc != EBUSY)
        return -rc;
    if (timeout == 0)
        return MP_ETIMEDOUT;
    rc = mp__mutex_lock(mu, mp__deadline(timeout));
    if (rc == -EDEADLK)
        return lock_slow(mu, EDEADLK, timeout);
    return rc;
}

MP_API int mp_lock_acquire(mp_lock *lock, double timeout)
{
    if (!lock)
        return -EINVAL;
    if (mp__bad_timeout(timeout))
        return MP_EVALUE;
    int rc = pthread_mutex_trylock(&lock->mu);
    return rc == 0 ? 0 : lock_slow(&lock->mu, rc, timeout);
}

/* Why a release by a thread that does not hold the lock cannot be done,
 * from the result rc of a trylock: nobody held the lock (MP_EVALUE), a
 * living thread does (MP_ESTATE), or a dead one did, in which case the lock
 * is released on its behalf (0). */
static int diagnose_trylock(pthread_mutex_t *mu, int rc)
{
    if (rc == 0) {
        (void)pthread_mutex_unlock(mu);
        return MP_EVALUE;
    }
    if (rc == EOWNERDEAD) {
        (void)pthread_mutex_consistent(mu);
        (void)pthread_mutex_unlock(mu);
        return 0;
    }
    return MP_ESTATE;
}

MP_API int mp_lock_release(mp_lock *lock)
{
    if (!lock)
        return -EINVAL;
#if MP__TSAN
    /* ThreadSanitizer reports the (harmless, refused) unlock by a thread
     * that does not hold the mutex, which the fast path below relies on;
     * ask first instead. Same results, one trylock slower. */
    int probe = pthread_mutex_trylock(&lock->mu);
    if (probe != EDEADLK)
        return diagnose_trylock(&lock->mu, probe);
#endif
    int rc = pthread_mutex_unlock(&lock->mu);
    if (rc == 0)
        return 0;
    return rc == EPERM ? diagnose_trylock(&lock->mu, pthread_mutex_trylock(&lock->mu)) : -rc;
}

MP_API void mp_lock_free(mp_lock *lock)
{
    if (lock && mp__shm_owned(lock)) {
        (void)pthread_mutex_destroy(&lock->mu);
        mp__shm_free(lock);
    }
}

/* ---- RLock ------------------------------------------------------------------------ */

struct mp_rlock {
    pthread_mutex_t mu;
    int count; /* levels held; read and written by the owner only */
};

MP_API int mp_rlock_new(mp_rlock **out)
{
    mp_rlock *l;
    int rc = obj_alloc(out, (void **)&l, sizeof *l);
    if (rc < 0)
        return rc;
    rc = mp__mutex_init(&l->mu, true);
    if (rc < 0) {
        mp__shm_free(l);
        return rc;
    }
    *out = l;
    return 0;
}

MP_API int mp_rlock_acquire(mp_rlock *lock, double timeout)
{
    if (!lock)
        return -EINVAL;
    if (mp__bad_timeout(timeout))
        return MP_EVALUE;
    int rc = pthread_mutex_trylock(&lock->mu);
    if (rc != 0)
        rc = lock_slow(&lock->mu, rc, timeout);
    if (rc == 0) {
        /* Fresh or nested: the last owner left count at 0. */
        lock->count++;
    } else if (rc == MP_EOWNERDEAD) {
        lock->count = 1; /* the dead owner's levels die with it */
    }
    return rc;
}

/*
 * Whether the calling thread holds the RLock, without changing it: a
 * trylock succeeds for the owner (one more level) and for nobody else except
 * when the lock is free, which count tells apart (0 when free). The probe's
 * extra level is undone at once. Returns the levels held, or 0.
 */
static int rlock_levels(mp_rlock *lock)
{
    int rc = pthread_mutex_trylock(&lock->mu);
    if (rc == 0) {
        int levels = lock->count;
        (void)pthread_mutex_unlock(&lock->mu);
        return levels;
    }
    if (rc == EAGAIN)
        return lock->count; /* only the owner can exhaust the count */
    if (rc == EOWNERDEAD) {
        lock->count = 0;
        (void)pthread_mutex_consistent(&lock->mu);
        (void)pthread_mutex_unlock(&lock->mu);
    }
    return 0;
}

MP_API int mp_rlock_release(mp_rlock *lock)
{
    if (!lock)
        return -EINVAL;
    if (rlock_levels(lock) == 0)
        return MP_ESTATE;
    lock->count--;
    (void)pthread_mutex_unlock(&lock->mu);
    return 0;
}

MP_API int mp_rlock_count(mp_rlock *lock)
{
    return lock ? rlock_levels(lock) : -EINVAL;
}

MP_API void mp_rlock_free(mp_rlock *lock)
{
    if (lock && mp__shm_owned(lock)) {
        (void)pthread_mutex_destroy(&lock->mu);
        mp__shm_free(lock);
    }
}

/* ---- Semaphore and BoundedSemaphore ----------------------------------------------- */

struct mp_sem {
    sem_t sem;
    pthread_mutex_t guard; /* bounded only: serialises release() */
    unsigned maxvalue;
    bool bounded;
};

static int sem_make(mp_sem **out, unsigned value, bool bounded)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (value > (unsigned)SEM_VALUE_MAX)
        return MP_EVALUE;
    mp_sem *s;
    int rc = obj_alloc(out, (void **)&s, sizeof *s);
    if (rc < 0)
        return rc;
    s->maxvalue = value;
    s->bounded = bounded;
    rc = mp__sem_init(&s->sem, value);
    if (rc == 0 && bounded) {
        rc = mp__mutex_init(&s->guard, false);
        if (rc < 0)
            (void)sem_destroy(&s->sem);
    }
    if (rc < 0) {
        mp__shm_free(s);
        return rc;
    }
    *out = s;
    return 0;
}

MP_API int mp_sem_new(mp_sem **out, unsigned value)
{
    return sem_make(out, value, false);
}

MP_API int mp_sem_new_bounded(mp_sem **out, unsigned value)
{
    return sem_make(out, value, true);
}

MP_API int mp_sem_acquire(mp_sem *sem, double timeout)
{
    if (!sem)
        return -EINVAL;
    if (mp__bad_timeout(timeout))
        return MP_EVALUE;
    if (sem_trywait(&sem->sem) == 0)
        return 0;
    return mp__sem_wait(&sem->sem, mp__deadline(timeout));
}

MP_API int mp_sem_release(mp_sem *sem)
{
    if (!sem)
        return -EINVAL;
    if (!sem->bounded)
        return sem_post(&sem->sem) == 0 ? 0 : MP__NEG_ERRNO();
    /* Acquirers only lower the value, so holding the guard makes the check
     * and the post one step for every releaser. A dead releaser's guard
     * comes back EOWNERDEAD: nothing it guards can be half-done. */
    int rc = mp__mutex_lock(&sem->guard, MP__NO_DEADLINE);
    if (rc < 0 && rc != MP_EOWNERDEAD)
        return rc;
    int value = 0;
    (void)sem_getvalue(&sem->sem, &value);
    if (value >= 0 && (unsigned)value >= sem->maxvalue)
        rc = MP_EVALUE;
    else
        rc = sem_post(&sem->sem) == 0 ? 0 : MP__NEG_ERRNO();
    mp__mutex_unlock(&sem->guard);
    return rc;
}

MP_API int mp_sem_get_value(mp_sem *sem)
{
    if (!sem)
        return -EINVAL;
    int value = 0;
    if (sem_getvalue(&sem->sem, &value) < 0)
        return MP__NEG_ERRNO();
    /* POSIX allows a negative value meaning "this many waiters"; Python
     * reports 0 then. glibc never does it. */
    return value < 0 ? 0 : value;
}

MP_API void mp_sem_free(mp_sem *sem)
{
    if (sem && mp__shm_owned(sem)) {
        (void)sem_destroy(&sem->sem);
        if (sem->bounded)
            (void)pthread_mutex_destroy(&sem->guard);
        mp__shm_free(sem);
    }
}

/* ---- guard and sleep helpers for Event, Condition, Barrier ------------------------- */

/* Called after the guard came back from a dead holder, once the wait queue
 * has been repaired, to repair the object's own state. */
typedef void (*repair_fn)(void *obj);

/* Lock a guard without limit, repairing after a dead holder. Only -EDEADLK
 * (the thread already holds it: a barrier action calling its barrier) can
 * come back. */
static int guard_lock(pthread_mutex_t *guard, struct mp__waitq *q, repair_fn repair, void *obj)
{
    int rc = mp__mutex_lock(guard, MP__NO_DEADLINE);
    if (rc == MP_EOWNERDEAD) {
        mp__waitq_repair(q);
        if (repair)
            repair(obj);
        rc = 0;
    }
    return rc;
}

/*
 * A death wakes nobody: the kernel only marks the dead thread's robust
 * mutexes, and a party asleep on its semaphore would sleep on until someone
 * happened to take the guard. A primitive whose waiters must notice a death
 * by themselves (a Barrier: a waiting party that dies breaks it) gives
 * sleep_armed() a watch function; the waiter then sleeps in slices of
 * WATCH_SLICE_NS and, after each slice that ended with no wake, runs it with
 * the guard held (taking the guard has already repaired after a holder that
 * died). It returns true when the waiter should stop sleeping and look at
 * the object's state again. A slice of 200 ms puts a death's notice well
 * inside a second, for five guard lock/unlock pairs per waiter per second.
 */
typedef bool (*watch_fn)(void *obj);

#define WATCH_SLICE_NS ((int64_t)200 * 1000 * 1000)

/*
 * The slot is armed and the guard released: sleep until woken or the
 * deadline, and return with the guard held. 0 when woken (or when watch
 * asked for a fresh look), MP_ETIMEDOUT, -errno from the semaphore.
 */
static int sleep_armed(pthread_mutex_t *guard, struct mp__waitq *q, int idx, int64_t deadline,
                       repair_fn repair, watch_fn watch, void *obj)
{
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
        (void)guard_lock(guard, q, repair, obj);
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

/* Arm, release the guard, sleep: sleep_armed() for callers with nothing to
 * do between arming and sleeping. */
static int guard_sleep(pthread_mutex_t *guard, struct mp__waitq *q, int idx, int64_t deadline,
                       repair_fn repair, watch_fn watch, void *obj)
{
    mp__waitq_arm(q, idx);
    mp__mutex_unlock(guard);
    return sleep_armed(guard, q, idx, deadline, repair, watch, obj);
}

/* The size of a primitive whose last member is a wait queue of cap slots. */
#define WITH_WAITQ(type, cap) (sizeof(type) + mp__waitq_size(cap) - sizeof(struct mp__waitq))

/* Make and unmake the guard and the wait queue of an Event, Condition or
 * Barrier. */
static int guarded_init(pthread_mutex_t *guard, struct mp__waitq *q, uint32_t cap)
{
    int rc = mp__mutex_init(guard, false);
    if (rc == 0 && (rc = mp__waitq_init(q, cap)) < 0)
        (void)pthread_mutex_destroy(guard);
    return rc;
}

static void guarded_destroy(pthread_mutex_t *guard, struct mp__waitq *q)
{
    mp__waitq_destroy(q);
    (void)pthread_mutex_destroy(guard);
}

/* ---- Event ------------------------------------------------------------------------ */

struct mp_event {
    pthread_mutex_t guard;
    int flag; /* written under the guard, read anywhere */
    struct mp__waitq q;
};

MP_API int mp_event_new(mp_event **out)
{
    mp_event *e;
    int rc = obj_alloc(out, (void **)&e, WITH_WAITQ(mp_event, MP_SYNC_MAX_WAITERS));
    if (rc < 0)
        return rc;
    rc = guarded_init(&e->guard, &e->q, MP_SYNC_MAX_WAITERS);
    if (rc < 0) {
        mp__shm_free(e);
        return rc;
    }
    *out = e;
    return 0;
}

MP_API int mp_event_set(mp_event *ev)
{
    if (!ev)
        return -EINVAL;
    int rc = guard_lock(&ev->guard, &ev->q, NULL, NULL);
    if (rc < 0)
        return rc;
    __atomic_store_n(&ev->flag, 1, __ATOMIC_RELEASE);
    (void)mp__waitq_wake(&ev->q, UINT_MAX, NULL, NULL);
    mp__mutex_unlock(&ev->guard);
    return 0;
}

MP_API int mp_event_clear(mp_event *ev)
{
    if (!ev)
        return -EINVAL;
    int rc = guard_lock(&ev->guard, &ev->q, NULL, NULL);
    if (rc < 0)
        return rc;
    __atomic_store_n(&ev->flag, 0, __ATOMIC_RELEASE);
    mp__mutex_unlock(&ev->guard);
    return 0;
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
    int rc = guard_lock(&ev->guard, &ev->q, NULL, NULL);
    if (rc < 0)
        return rc;
    if (ev->flag || timeout == 0) {
        rc = ev->flag ? 0 : MP_ETIMEDOUT;
        mp__mutex_unlock(&ev->guard);
        return rc;
    }
    int idx = mp__waitq_enter(&ev->q, 0, NULL, NULL);
    if (idx < 0) {
        mp__mutex_unlock(&ev->guard);
        return idx;
    }
    rc = guard_sleep(&ev->guard, &ev->q, idx, deadline, NULL, NULL, NULL);
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
    if (ev && mp__shm_owned(ev)) {
        guarded_destroy(&ev->guard, &ev->q);
        mp__shm_free(ev);
    }
}

/* ---- Condition -------------------------------------------------------------------- */

struct mp_cond {
    pthread_mutex_t guard;
    mp_lock *lock; /* exactly one of lock and rlock is set */
    mp_rlock *rlock;
    bool own_rlock;
    struct mp__waitq q;
};

static int cond_make(mp_cond **out, mp_lock *lock, mp_rlock *rlock)
{
    mp_cond *c;
    int rc = obj_alloc(out, (void **)&c, WITH_WAITQ(mp_cond, MP_SYNC_MAX_WAITERS));
    if (rc < 0)
        return rc;
    c->lock = lock;
    c->rlock = rlock;
    if (!lock && !rlock) {
        rc = mp_rlock_new(&c->rlock);
        c->own_rlock = rc == 0;
    }
    if (rc == 0)
        rc = guarded_init(&c->guard, &c->q, MP_SYNC_MAX_WAITERS);
    if (rc < 0) {
        if (c->own_rlock)
            mp_rlock_free(c->rlock);
        mp__shm_free(c);
        return rc;
    }
    *out = c;
    return 0;
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
    return cond->lock ? mp_lock_acquire(cond->lock, timeout)
                      : mp_rlock_acquire(cond->rlock, timeout);
}

MP_API int mp_cond_release(mp_cond *cond)
{
    if (!cond)
        return -EINVAL;
    return cond->lock ? mp_lock_release(cond->lock) : mp_rlock_release(cond->rlock);
}

/* How many levels of the condition's lock the calling thread holds (a Lock
 * counts 1), or 0: Python's _semlock._is_mine() and _count(). */
static int cond_levels(mp_cond *c)
{
    if (c->rlock)
        return rlock_levels(c->rlock);
    int rc = pthread_mutex_trylock(&c->lock->mu);
    if (rc == EDEADLK)
        return 1;
    if (rc == EOWNERDEAD)
        (void)pthread_mutex_consistent(&c->lock->mu);
    if (rc == 0 || rc == EOWNERDEAD)
        (void)pthread_mutex_unlock(&c->lock->mu);
    return 0;
}

/* Release every level the caller holds (it holds `levels` > 0). */
static void cond_release_all(mp_cond *c, int levels)
{
    if (c->lock) {
        (void)pthread_mutex_unlock(&c->lock->mu);
        return;
    }
    c->rlock->count = 0;
    for (int i = 0; i < levels; i++)
        (void)pthread_mutex_unlock(&c->rlock->mu);
}

/* Take the lock back at `levels`, without limit. 0 or MP_EOWNERDEAD. */
static int cond_reacquire(mp_cond *c, int levels)
{
    if (c->lock)
        return mp__mutex_lock(&c->lock->mu, MP__NO_DEADLINE);
    int rc = mp__mutex_lock(&c->rlock->mu, MP__NO_DEADLINE);
    for (int i = 1; i < levels; i++)
        (void)pthread_mutex_lock(&c->rlock->mu); /* the owner's nesting: instant */
    c->rlock->count = levels;
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
    int rc = guard_lock(&cond->guard, &cond->q, NULL, NULL);
    if (rc < 0)
        return rc;
    int idx = mp__waitq_enter(&cond->q, 0, NULL, NULL);
    if (idx < 0) {
        mp__mutex_unlock(&cond->guard);
        return idx;
    }
    /* Registered before the lock is released, so a notify() - which needs
     * the lock - cannot fall between the two and be missed. */
    mp__waitq_arm(&cond->q, idx);
    mp__mutex_unlock(&cond->guard);
    cond_release_all(cond, levels);
    rc = sleep_armed(&cond->guard, &cond->q, idx, deadline, NULL, NULL, NULL);
    mp__waitq_leave(&cond->q, idx);
    mp__mutex_unlock(&cond->guard);
    if (cond_reacquire(cond, levels) == MP_EOWNERDEAD)
        return MP_EOWNERDEAD;
    return rc;
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
        double left = MP_FOREVER;
        if (deadline != MP__NO_DEADLINE) {
            int64_t ns = deadline - mp__now_ns();
            if (ns <= 0)
                return MP_ETIMEDOUT;
            left = (double)ns / 1e9;
        }
        int rc = mp_cond_wait(cond, left);
        if (rc == MP_EOWNERDEAD)
            owner_died = true;
        else if (rc < 0 && rc != MP_ETIMEDOUT)
            return rc;
        if (pred(arg))
            return owner_died ? MP_EOWNERDEAD : 0;
    }
}

MP_API int mp_cond_notify(mp_cond *cond, unsigned n)
{
    if (!cond)
        return -EINVAL;
    if (cond_levels(cond) == 0)
        return MP_ESTATE;
    int rc = guard_lock(&cond->guard, &cond->q, NULL, NULL);
    if (rc < 0)
        return rc;
    unsigned woken = n ? mp__waitq_wake(&cond->q, n, NULL, NULL) : 0;
    mp__mutex_unlock(&cond->guard);
    return woken > INT_MAX ? INT_MAX : (int)woken;
}

MP_API int mp_cond_notify_all(mp_cond *cond)
{
    return mp_cond_notify(cond, UINT_MAX);
}

MP_API void mp_cond_free(mp_cond *cond)
{
    if (cond && mp__shm_owned(cond)) {
        guarded_destroy(&cond->guard, &cond->q);
        if (cond->own_rlock)
            mp_rlock_free(cond->rlock);
        mp__shm_free(cond);
    }
}

/* ---- Barrier ---------------------------------------------------------------------- */

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

/* A reaped slot's owner died. A counted party that died while the barrier
 * was filling can never be released honestly: break. One that died after
 * release (draining) only has to be counted out. */
static void barrier_on_dead(void *ctx, uint32_t tag)
{
    mp_barrier *b = ctx;
    if (!(tag & TAG_COUNTED))
        return;
    b->count--;
    if (b->state == B_FILLING)
        b->state = B_BROKEN;
}

/* threading.Barrier._exit(): the last party out of a drain or reset refills. */
static void barrier_exit_check(mp_barrier *b)
{
    if (b->count == 0 && (b->state == B_RESETTING || b->state == B_DRAINING)) {
        b->state = B_FILLING;
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
    b->state = B_BROKEN;
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
    int rc =
        obj_alloc(out, (void **)&b, sizeof *b + mp__waitq_size(cap) - sizeof(struct mp__waitq));
    if (rc < 0)
        return rc;
    b->parties = parties;
    b->state = B_FILLING;
    b->action = action;
    b->arg = arg;
    b->timeout = timeout;
    rc = guarded_init(&b->guard, &b->q, cap);
    if (rc < 0) {
        mp__shm_free(b);
        return rc;
    }
    *out = b;
    return 0;
}

/* A waiter's watch (see sleep_armed): reap parties that died, which breaks
 * a filling barrier or counts out a drainer, and have the waiter look at
 * the state again, whether or not anything changed. */
static bool barrier_watch(void *obj)
{
    barrier_reap(obj);
    return true;
}

static int barrier_lock(mp_barrier *b)
{
    return guard_lock(&b->guard, &b->q, barrier_repair, b);
}

static void barrier_break(mp_barrier *b)
{
    b->state = B_BROKEN;
    barrier_wake_all(b);
}

/* A port of threading.Barrier.wait(). */
MP_API int mp_barrier_wait_timeout(mp_barrier *b, double timeout)
{
    if (!b)
        return -EINVAL;
    if (mp__bad_timeout(timeout))
        return MP_EVALUE;
    int64_t deadline = mp__deadline(timeout);
    int rc = barrier_lock(b);
    if (rc < 0)
        return rc;
    barrier_reap(b);
    int idx = mp__waitq_enter(&b->q, 0, barrier_on_dead, b);
    if (idx < 0) {
        mp__mutex_unlock(&b->guard);
        return idx;
    }
    int result;

    /* _enter(): wait out a drain or reset still in progress. */
    while (b->state == B_DRAINING || b->state == B_RESETTING) {
        rc = guard_sleep(&b->guard, &b->q, idx, deadline, barrier_repair, barrier_watch, b);
        if (rc < 0) {
            if (b->state == B_DRAINING || b->state == B_RESETTING)
                barrier_break(b);
            break;
        }
    }
    if (b->state != B_FILLING) {
        result = MP_EBROKEN;
        goto out;
    }

    int index = (int)b->count++;
    mp__waitq_set_tag(&b->q, idx, TAG_COUNTED);
    result = index;
    if (b->count == b->parties) {
        /* _release(): the last to arrive runs the action, guard held, so no
         * party of the next cycle can slip in meanwhile (Python holds the
         * condition's lock too). */
        if (b->action && b->action(b->arg) != 0) {
            barrier_break(b);
            result = MP_EBROKEN;
        } else {
            b->state = B_DRAINING;
            for (uint32_t i = 0; i < b->q.cap; i++)
                if (b->q.slot[i].state != MP__W_FREE && (b->q.slot[i].tag & TAG_COUNTED))
                    b->q.slot[i].tag |= TAG_RELEASED;
            barrier_wake_all(b);
        }
    } else {
        /* _wait(): until released or broken; a timeout breaks it for all. */
        while (b->state == B_FILLING && !(mp__waitq_tag(&b->q, idx) & TAG_RELEASED)) {
            rc = guard_sleep(&b->guard, &b->q, idx, deadline, barrier_repair, barrier_watch, b);
            if (rc < 0) {
                if (b->state == B_FILLING && !(mp__waitq_tag(&b->q, idx) & TAG_RELEASED))
                    barrier_break(b);
                break;
            }
        }
        if (!(mp__waitq_tag(&b->q, idx) & TAG_RELEASED))
            result = MP_EBROKEN;
    }
    /* A repair may have counted us out already along with the dead. */
    if (mp__waitq_tag(&b->q, idx) & TAG_COUNTED) {
        b->count--;
        mp__waitq_set_tag(&b->q, idx, 0);
    }
    barrier_exit_check(b);
out:
    mp__waitq_leave(&b->q, idx);
    mp__mutex_unlock(&b->guard);
    return result;
}

MP_API int mp_barrier_wait(mp_barrier *b)
{
    if (!b)
        return -EINVAL;
    return mp_barrier_wait_timeout(b, b->timeout);
}

MP_API int mp_barrier_abort(mp_barrier *b)
{
    if (!b)
        return -EINVAL;
    int rc = barrier_lock(b);
    if (rc < 0)
        return rc;
    barrier_break(b);
    mp__mutex_unlock(&b->guard);
    return 0;
}

MP_API int mp_barrier_reset(mp_barrier *b)
{
    if (!b)
        return -EINVAL;
    int rc = barrier_lock(b);
    if (rc < 0)
        return rc;
    barrier_reap(b);
    if (b->count > 0) {
        if (b->state == B_FILLING || b->state == B_BROKEN)
            b->state = B_RESETTING;
    } else {
        b->state = B_FILLING;
    }
    barrier_wake_all(b);
    mp__mutex_unlock(&b->guard);
    return 0;
}

MP_API unsigned mp_barrier_parties(const mp_barrier *b)
{
    return b ? b->parties : 0;
}

MP_API int mp_barrier_n_waiting(mp_barrier *b)
{
    if (!b)
        return -EINVAL;
    int rc = barrier_lock(b);
    if (rc < 0)
        return rc;
    barrier_reap(b);
    int n = b->state == B_FILLING ? (int)b->count : 0;
    mp__mutex_unlock(&b->guard);
    return n;
}

MP_API int mp_barrier_broken(mp_barrier *b)
{
    if (!b)
        return -EINVAL;
    int rc = barrier_lock(b);
    if (rc < 0)
        return rc;
    barrier_reap(b);
    int broken = b->state == B_BROKEN;
    mp__mutex_unlock(&b->guard);
    return broken;
}

MP_API void mp_barrier_free(mp_barrier *b)
{
    if (b && mp__shm_owned(b)) {
        guarded_destroy(&b->guard, &b->q);
        mp__shm_free(b);
    }
}

/* ---- shared Value and Array ---------------------------------------------------------- */

/* A Value is an Array of one item; both handles point at this. */
struct mp_array {
    mp_rlock *lock; /* NULL for Raw */
    size_t len;
    uint32_t itemsize;
    char typecode;
};

/* Items start one cache line in, aligned for every typecode. */
#define ITEMS_OFFSET ((size_t)64)
_Static_assert(sizeof(struct mp_array) <= ITEMS_OFFSET, "header fits before the items");

static unsigned char *items(struct mp_array *a)
{
    return (unsigned char *)a + ITEMS_OFFSET;
}

enum kind { K_SIGNED, K_UNSIGNED, K_FLOAT };

struct ctype {
    char code;
    unsigned char size;
    unsigned char kind;
};

static const struct ctype ctypes[] = {
    {'c', sizeof(char), K_SIGNED},
    {'b', sizeof(signed char), K_SIGNED},
    {'B', sizeof(unsigned char), K_UNSIGNED},
    {'h', sizeof(short), K_SIGNED},
    {'H', sizeof(unsigned short), K_UNSIGNED},
    {'i', sizeof(int), K_SIGNED},
    {'I', sizeof(unsigned int), K_UNSIGNED},
    {'l', sizeof(long), K_SIGNED},
    {'L', sizeof(unsigned long), K_UNSIGNED},
    {'q', sizeof(long long), K_SIGNED},
    {'Q', sizeof(unsigned long long), K_UNSIGNED},
    {'f', sizeof(float), K_FLOAT},
    {'d', sizeof(double), K_FLOAT},
};

static const struct ctype *find_ctype(char code)
{
    for (size_t i = 0; i < sizeof ctypes / sizeof ctypes[0]; i++)
        if (ctypes[i].code == code)
            return &ctypes[i];
    return NULL;
}

static int array_make(struct mp_array **out, char typecode, size_t n, const void *init,
                      bool with_lock)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    const struct ctype *t = find_ctype(typecode);
    if (!t || n == 0)
        return MP_EVALUE;
    if (n > (SIZE_MAX - ITEMS_OFFSET) / t->size)
        return -ENOMEM;
    struct mp_array *a;
    int rc = obj_alloc(out, (void **)&a, ITEMS_OFFSET + n * t->size);
    if (rc < 0)
        return rc;
    if (with_lock && (rc = mp_rlock_new(&a->lock)) < 0) {
        mp__shm_free(a);
        return rc;
    }
    a->len = n;
    a->itemsize = t->size;
    a->typecode = typecode;
    if (init)
        memcpy(items(a), init, n * t->size);
    *out = a;
    return 0;
}

static void array_free(struct mp_array *a)
{
    if (a && mp__shm_owned(a)) {
        mp_rlock_free(a->lock);
        mp__shm_free(a);
    }
}

/* Python's index rule: negative counts from the end. */
static int resolve_index(const struct mp_array *a, long i, size_t *at)
{
    if (i < 0) {
        if ((unsigned long)-(i + 1) >= a->len)
            return MP_EKEY;
        *at = a->len - (size_t) - (i + 1) - 1;
    } else {
        if ((unsigned long)i >= a->len)
            return MP_EKEY;
        *at = (size_t)i;
    }
    return 0;
}

/* Take the item's lock if it has one: 0 or MP_EOWNERDEAD (taken either way). */
static int item_lock(struct mp_array *a)
{
    return a->lock ? mp_rlock_acquire(a->lock, MP_FOREVER) : 0;
}

static void item_unlock(struct mp_array *a)
{
    if (a->lock)
        (void)mp_rlock_release(a->lock);
}

static int load_int(const struct ctype *t, const unsigned char *p, int64_t *out)
{
    switch (t->code) {
    case 'c':
        *out = *(const char *)p;
        return 0;
    case 'b':
        *out = *(const signed char *)p;
        return 0;
    case 'B':
        *out = *(const unsigned char *)p;
        return 0;
    case 'h':
        *out = *(const short *)p;
        return 0;
    case 'H':
        *out = *(const unsigned short *)p;
        return 0;
    case 'i':
        *out = *(const int *)p;
        return 0;
    case 'I':
        *out = *(const unsigned int *)p;
        return 0;
    case 'l':
        *out = *(const long *)p;
        return 0;
    case 'q':
        *out = *(const long long *)p;
        return 0;
    case 'L':
        if (*(const unsigned long *)p > INT64_MAX)
            return -ERANGE;
        *out = (int64_t) * (const unsigned long *)p;
        return 0;
    case 'Q':
        if (*(const unsigned long long *)p > INT64_MAX)
            return -ERANGE;
        *out = (int64_t) * (const unsigned long long *)p;
        return 0;
    default:
        return MP_ETYPE;
    }
}

/* True if x fits an integer type of `size` bytes of the given kind. */
static bool int_fits(const struct ctype *t, int64_t x)
{
    if (t->size >= 8)
        return t->kind == K_SIGNED || x >= 0;
    int bits = t->size * 8;
    if (t->code == 'c')
        return x >= CHAR_MIN && x <= CHAR_MAX;
    if (t->kind == K_SIGNED)
        return x >= -(INT64_C(1) << (bits - 1)) && x < (INT64_C(1) << (bits - 1));
    return x >= 0 && x < (INT64_C(1) << bits);
}

static int store_int(const struct ctype *t, unsigned char *p, int64_t x)
{
    if (t->kind == K_FLOAT)
        return MP_ETYPE;
    if (!int_fits(t, x))
        return -ERANGE;
    switch (t->code) {
    case 'c':
        *(char *)p = (char)x;
        break;
    case 'b':
        *(signed char *)p = (signed char)x;
        break;
    case 'B':
        *(unsigned char *)p = (unsigned char)x;
        break;
    case 'h':
        *(short *)p = (short)x;
        break;
    case 'H':
        *(unsigned short *)p = (unsigned short)x;
        break;
    case 'i':
        *(int *)p = (int)x;
        break;
    case 'I':
        *(unsigned int *)p = (unsigned int)x;
        break;
    case 'l':
        *(long *)p = (long)x;
        break;
    case 'L':
        *(unsigned long *)p = (unsigned long)x;
        break;
    case 'q':
        *(long long *)p = (long long)x;
        break;
    case 'Q':
        *(unsigned long long *)p = (unsigned long long)x;
        break;
    }
    return 0;
}

/* One locked access to item i: op 0 get_int, 1 set_int, 2 get_float, 3 set_float. */
enum access { GET_INT, SET_INT, GET_FLOAT, SET_FLOAT };

static int item_access(struct mp_array *a, long i, enum access op, int64_t *ip, double *fp)
{
    if (!a)
        return -EINVAL;
    size_t at;
    int rc = resolve_index(a, i, &at);
    if (rc < 0)
        return rc;
    const struct ctype *t = find_ctype(a->typecode);
    bool is_float = t->kind == K_FLOAT;
    if (is_float != (op == GET_FLOAT || op == SET_FLOAT))
        return MP_ETYPE;
    unsigned char *p = items(a) + at * t->size;
    int lrc = item_lock(a);
    if (lrc < 0 && lrc != MP_EOWNERDEAD)
        return lrc;
    switch (op) {
    case GET_INT:
        rc = load_int(t, p, ip);
        break;
    case SET_INT:
        rc = store_int(t, p, *ip);
        break;
    case GET_FLOAT:
        if (t->code == 'f') {
            float f;
            memcpy(&f, p, sizeof f);
            *fp = f;
        } else {
            memcpy(fp, p, sizeof *fp);
        }
        break;
    case SET_FLOAT:
        if (t->code == 'f') {
            float f = (float)*fp;
            memcpy(p, &f, sizeof f);
        } else {
            memcpy(p, fp, sizeof *fp);
        }
        break;
    }
    item_unlock(a);
    return rc < 0 ? rc : lrc;
}

MP_API int mp_value_new(mp_value **out, char typecode, const void *init, bool with_lock)
{
    return array_make((struct mp_array **)out, typecode, 1, init, with_lock);
}

MP_API void *mp_value_ptr(mp_value *v)
{
    return v ? items((struct mp_array *)v) : NULL;
}

MP_API mp_rlock *mp_value_get_lock(mp_value *v)
{
    return v ? ((struct mp_array *)v)->lock : NULL;
}

MP_API char mp_value_typecode(const mp_value *v)
{
    return v ? ((const struct mp_array *)v)->typecode : 0;
}

MP_API int mp_value_get_int(mp_value *v, int64_t *out)
{
    if (!out)
        return -EINVAL;
    return item_access((struct mp_array *)v, 0, GET_INT, out, NULL);
}

MP_API int mp_value_set_int(mp_value *v, int64_t x)
{
    return item_access((struct mp_array *)v, 0, SET_INT, &x, NULL);
}

MP_API int mp_value_get_float(mp_value *v, double *out)
{
    if (!out)
        return -EINVAL;
    return item_access((struct mp_array *)v, 0, GET_FLOAT, NULL, out);
}

MP_API int mp_value_set_float(mp_value *v, double x)
{
    return item_access((struct mp_array *)v, 0, SET_FLOAT, NULL, &x);
}

MP_API void mp_value_free(mp_value *v)
{
    array_free((struct mp_array *)v);
}

MP_API int mp_array_new(mp_array **out, char typecode, size_t n, const void *init, bool with_lock)
{
    return array_make(out, typecode, n, init, with_lock);
}

MP_API void *mp_array_ptr(mp_array *a)
{
    return a ? items(a) : NULL;
}

MP_API size_t mp_array_len(const mp_array *a)
{
    return a ? a->len : 0;
}

MP_API mp_rlock *mp_array_get_lock(mp_array *a)
{
    return a ? a->lock : NULL;
}

MP_API char mp_array_typecode(const mp_array *a)
{
    return a ? a->typecode : 0;
}

MP_API int mp_array_get_int(mp_array *a, long i, int64_t *out)
{
    if (!out)
        return -EINVAL;
    return item_access(a, i, GET_INT, out, NULL);
}

MP_API int mp_array_set_int(mp_array *a, long i, int64_t x)
{
    return item_access(a, i, SET_INT, &x, NULL);
}

MP_API int mp_array_get_float(mp_array *a, long i, double *out)
{
    if (!out)
        return -EINVAL;
    return item_access(a, i, GET_FLOAT, NULL, out);
}

MP_API int mp_array_set_float(mp_array *a, long i, double x)
{
    return item_access(a, i, SET_FLOAT, NULL, &x);
}

MP_API void mp_array_free(mp_array *a)
{
    array_free(a);
}
