/*
 * sync_lock - shared memory for users, Lock, RLock, Semaphore and
 * BoundedSemaphore (see sync.h). The other primitives are in the sibling
 * files listed in sync_impl.h.
 *
 *   Lock       a robust error-checking pthread mutex.
 *   RLock      a robust recursive pthread mutex plus the level, which only
 *              the owner reads or writes (Condition needs it).
 *   Semaphore  a process-shared sem_t; a bounded one serialises release()
 *              with a guard mutex so two releases cannot both pass the
 *              maxvalue check.
 */
#include "sync/sync_impl.h"

#include <errno.h>
#include <limits.h>

/* ---- shared memory ------------------------------------------------------------ */

MP_API int mp_shm_alloc(void **out, size_t size)
{
    return mp__shm_alloc(out, size);
}

MP_API void mp_shm_free(void *p)
{
    (void)mp__shm_free(p);
}

/* ---- Lock ------------------------------------------------------------------------- */

/* Lock and RLock are a mutex first (sync_impl.h): made and unmade alike. */
_Static_assert(offsetof(struct mp_lock, mu) == 0, "a Lock starts with its mutex");
_Static_assert(offsetof(struct mp_rlock, mu) == 0, "an RLock starts with its mutex");

static int lock_make(void *out, size_t size, bool recursive)
{
    pthread_mutex_t *mu;
    int rc = sync_obj_alloc(out, (void **)&mu, size);
    if (rc < 0)
        return rc;
    rc = mp__mutex_init(mu, recursive);
    if (rc < 0) {
        mp__shm_free(mu);
        return rc;
    }
    *(void **)out = mu;
    return 0;
}

static void lock_unmake(pthread_mutex_t *mu)
{
    if (mu && mp__shm_owned(mu)) {
        (void)pthread_mutex_destroy(mu);
        mp__shm_free(mu);
    }
}

MP_API int mp_lock_new(mp_lock **out)
{
    return lock_make(out, sizeof(mp_lock), false);
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

/* Acquire for Lock and RLock: a trylock, and the slow path only when it
 * fails. Inline: mp_lock_acquire() stays one call into libc. */
static inline int lock_take(pthread_mutex_t *mu, double timeout)
{
    if (mp__bad_timeout(timeout))
        return MP_EVALUE;
    int rc = pthread_mutex_trylock(mu);
    return rc == 0 ? 0 : lock_slow(mu, rc, timeout);
}

MP_API int mp_lock_acquire(mp_lock *lock, double timeout)
{
    return lock ? lock_take(&lock->mu, timeout) : -EINVAL;
}

/* Why a release by a thread that does not hold the lock cannot be done,
 * from the result rc of a trylock: nobody held the lock (MP_EVALUE), a
 * living thread does (MP_ESTATE), or a dead one did, in which case the lock
 * is released on its behalf (0). */
static int lock_diagnose_trylock(pthread_mutex_t *mu, int rc)
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
        return lock_diagnose_trylock(&lock->mu, probe);
#endif
    int rc = pthread_mutex_unlock(&lock->mu);
    if (rc == 0)
        return 0;
    return rc == EPERM ? lock_diagnose_trylock(&lock->mu, pthread_mutex_trylock(&lock->mu)) : -rc;
}

MP_API void mp_lock_free(mp_lock *lock)
{
    lock_unmake(lock ? &lock->mu : NULL);
}

/* ---- RLock ------------------------------------------------------------------------ */

MP_API int mp_rlock_new(mp_rlock **out)
{
    return lock_make(out, sizeof(mp_rlock), true);
}

MP_API int mp_rlock_acquire(mp_rlock *lock, double timeout)
{
    if (!lock)
        return -EINVAL;
    int rc = lock_take(&lock->mu, timeout);
    if (rc == 0) {
        /* Fresh or nested: the last owner left count at 0. */
        lock->count++;
    } else if (rc == MP_EOWNERDEAD) {
        lock->count = 1; /* the dead owner's levels die with it */
    }
    return rc;
}

MP_API int mp_rlock_release(mp_rlock *lock)
{
    if (!lock)
        return -EINVAL;
    if (sync_rlock_levels(lock) == 0)
        return MP_ESTATE;
    lock->count--;
    (void)pthread_mutex_unlock(&lock->mu);
    return 0;
}

MP_API ssize_t mp_rlock_count(mp_rlock *lock)
{
    return lock ? sync_rlock_levels(lock) : -EINVAL;
}

MP_API void mp_rlock_free(mp_rlock *lock)
{
    lock_unmake(lock ? &lock->mu : NULL);
}

/* ---- Semaphore and BoundedSemaphore ----------------------------------------------- */

struct mp_sem {
    sem_t sem;
    pthread_mutex_t guard; /* bounded only: serialises release() */
    unsigned maxvalue;
    bool bounded;
};

static int semaphore_make(mp_sem **out, unsigned value, bool bounded)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (value > (unsigned)SEM_VALUE_MAX)
        return MP_EVALUE;
    mp_sem *s;
    int rc = sync_obj_alloc(out, (void **)&s, sizeof *s);
    if (rc < 0)
        return rc;
    s->maxvalue = value;
    s->bounded = bounded;
    if ((rc = mp__sem_init(&s->sem, value)) < 0)
        goto fail;
    if (bounded && (rc = mp__mutex_init(&s->guard, false)) < 0)
        goto fail_sem;
    *out = s;
    return 0;

fail_sem:
    (void)sem_destroy(&s->sem);
fail:
    mp__shm_free(s);
    return rc;
}

MP_API int mp_sem_new(mp_sem **out, unsigned value)
{
    return semaphore_make(out, value, false);
}

MP_API int mp_sem_new_bounded(mp_sem **out, unsigned value)
{
    return semaphore_make(out, value, true);
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

size_t mp__sync_sem_size(void)
{
    return sizeof(mp_sem);
}
