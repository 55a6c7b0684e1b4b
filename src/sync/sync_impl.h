/*
 * sync_impl - what the files of the sync family share (never installed):
 * the layouts of Lock and RLock, which Condition reaches into, the
 * constructors' shared-memory allocation, and the guard and sleep machinery
 * under Event, Condition and Barrier.
 *
 * The family (the public side is include/mpipc/sync.h):
 *   sync_lock.c     shared memory, Lock, RLock, Semaphore;
 *   sync_guard.c    the guard and sleep machinery (declared below);
 *   sync_event.c    Event and Condition;
 *   sync_barrier.c  Barrier;
 *   sync_value.c    Value and Array;
 *   sync_parts.c    the objects taken apart for a forkserver or spawn
 *                   child (core/parts.h).
 * Every object is one block of shared memory (shm.h) and the handle is a
 * pointer to it, so there is no process-local state to rebuild after fork.
 *
 * Names: a static function carries its primitive's name (lock_, rlock_,
 * semaphore_ - sem_ is POSIX's -, event_, cond_, barrier_, array_); what the
 * files share is sync_ (static inline, here) or mp__sync_ (sync_guard.c).
 */
#ifndef MPIPC_SYNC_IMPL_H
#define MPIPC_SYNC_IMPL_H

#include "core/internal.h"
#include "core/io.h"
#include "core/psync.h"
#include "core/shm.h"

#include <mpipc/sync.h>

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A robust error-checking process-shared mutex. */
struct mp_lock {
    pthread_mutex_t mu;
};

/* A robust recursive mutex and the levels held, which only the owner reads
 * or writes (Condition needs them). */
struct mp_rlock {
    pthread_mutex_t mu;
    int count;
};

/*
 * Whether the calling thread holds the RLock, without changing it: a
 * trylock succeeds for the owner (one more level) and for nobody else except
 * when the lock is free, which count tells apart (0 when free). The probe's
 * extra level is undone at once. Returns the levels held, or 0. Inline:
 * every RLock release and Condition notify asks.
 */
static inline int sync_rlock_levels(mp_rlock *lock)
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

/* A zeroed object of `size` bytes in shared memory for a constructor's
 * out-parameter `out`, which is cleared first (NULL out: -EINVAL). */
static inline int sync_obj_alloc(void *out, void **obj, size_t size)
{
    if (!out)
        return -EINVAL;
    *(void **)out = NULL;
    return mp__shm_alloc(obj, size);
}

/* True when the calling thread holds the robust error-checking mutex m (for
 * MP__ASSERT: a trylock by the owner is refused with EDEADLK and changes
 * nothing; the assertion fails, and aborts, in every other case). */
static inline bool sync_mutex_held(pthread_mutex_t *m)
{
    return pthread_mutex_trylock(m) == EDEADLK;
}

/* The bytes of shared memory a Semaphore and an Event occupy, for handing
 * one to a child by descriptor (process/passobj.c). */
size_t mp__sync_sem_size(void);
size_t mp__sync_event_size(void);

/* A Condition's size, and whether it holds its own lock (and so no
 * pointer: only such a one can be handed to a forkserver or spawn child). */
size_t mp__sync_cond_size(void);
bool mp__sync_cond_self_contained(const mp_cond *c);

/* The caller's Lock or RLock a Condition is over, at its address here
 * (NULL for one with its own lock); *is_rlock says which. */
const void *mp__sync_cond_ext(const mp_cond *c, bool *is_rlock);

/* Whether a Condition a child received has its own lock or exactly one of
 * the caller's. */
bool mp__sync_cond_well_formed(const mp_cond *c);

/* In a forkserver or spawn child: c, over the caller's lock, finds that
 * lock at `lock` in this process (sync_event.c's table). 0, or MP_EVALUE
 * when the table is full. */
int mp__sync_cond_rebase(const mp_cond *c, void *lock);

/* A Barrier's header (what must be there before its size is read), its
 * size from the header (0 when inconsistent), and whether it has an action
 * (pointers: only a fork child may use it). */
size_t mp__sync_barrier_header(void);
size_t mp__sync_barrier_size(const mp_barrier *b);
bool mp__sync_barrier_has_action(const mp_barrier *b);

/* The bytes a Value or Array occupies, from its header (0 when the header
 * is inconsistent); its header, before the items, is MP__SYNC_ARRAY_HEADER. */
#define MP__SYNC_ARRAY_HEADER ((size_t)128)
size_t mp__sync_array_size(const void *obj);

/* ---- the guard and sleep machinery (Event, Condition, Barrier) -------------------- */

/*
 * A guarded primitive is shared memory with a guard (a robust mutex) around
 * a little state and a wait queue (psync.h), the queue last. When the guard
 * comes back with MP_EOWNERDEAD, the wait queue is repaired and then the
 * primitive's own state, by its repair function.
 */
typedef void (*sync_repair_fn)(void *obj);

/*
 * A death wakes nobody: the kernel only marks the dead thread's robust
 * mutexes, and a party asleep on its semaphore would sleep on until someone
 * happened to take the guard. A primitive whose waiters must notice a death
 * by themselves (a Barrier: a waiting party that dies breaks it) gives the
 * sleep a watch function; the waiter then sleeps in slices and, after each
 * slice that ended with no wake, runs it with the guard held. It returns
 * true when the waiter should stop sleeping and look at the state again.
 */
typedef bool (*sync_watch_fn)(void *obj);

/* Lock a guard without limit, repairing after a dead holder. Only -EDEADLK
 * (the thread already holds it: a barrier action calling its barrier) can
 * come back. On every operation's path: inline. */
static inline int sync_guard_lock(pthread_mutex_t *guard, struct mp__waitq *q,
                                  sync_repair_fn repair, void *obj)
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

/* Take a wait-queue slot for the calling thread (guard held; on_dead as for
 * mp__waitq_enter). When none is free, the guard is released and the
 * error (-EAGAIN) returned, so a caller just returns it. */
static inline int sync_enter(pthread_mutex_t *guard, struct mp__waitq *q, mp__waitq_dead_fn on_dead,
                             void *ctx)
{
    int idx = mp__waitq_enter(q, 0, on_dead, ctx);
    if (idx < 0)
        mp__mutex_unlock(guard);
    return idx;
}

/*
 * Make a guarded primitive for a constructor's out-parameter: zeroed shared
 * memory with the guard at guard_off and a wait queue of cap slots at q_off
 * (the last member), both initialised; *obj gets it. Nothing is left on
 * failure. Returns 0 or -errno.
 */
int mp__sync_guarded_new(void *out, void **obj, size_t guard_off, size_t q_off, uint32_t cap);

/* Destroy the guard and the queue and free the primitive (the calling
 * process made it). */
void mp__sync_guarded_free(void *obj, pthread_mutex_t *guard, struct mp__waitq *q);

/*
 * The slot idx is armed and the guard released: sleep until woken or the
 * deadline, and return with the guard held. 0 when woken (or when watch
 * asked for a fresh look), MP_ETIMEDOUT, -errno from the semaphore. repair
 * and watch may be NULL.
 */
int mp__sync_sleep_armed(pthread_mutex_t *guard, struct mp__waitq *q, int idx, int64_t deadline,
                         sync_repair_fn repair, sync_watch_fn watch, void *obj);

/* Arm the slot, release the guard, sleep: mp__sync_sleep_armed() for
 * callers with nothing to do between arming and sleeping. */
int mp__sync_guard_sleep(pthread_mutex_t *guard, struct mp__waitq *q, int idx, int64_t deadline,
                         sync_repair_fn repair, sync_watch_fn watch, void *obj);

#endif /* MPIPC_SYNC_IMPL_H */
