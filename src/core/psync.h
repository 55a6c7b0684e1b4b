/*
 * psync - the process-shared building blocks every primitive of src/sync/
 * (and the queues) stands on: robust mutexes, semaphore waits with
 * deadlines, and the wait queue.
 *
 * Why not process-shared condition variables: in glibc before 2.41 a waiter
 * killed inside pthread_cond_wait() leaves a group reference behind, and a
 * later pthread_cond_signal() can block forever waiting for it. The library
 * promises that a dead process never wedges the living, so nothing here
 * waits on a condvar. Sleeping is done on semaphores (sem_post never waits
 * for anyone), and a waiter proves it is alive by holding a robust mutex
 * while it sleeps.
 *
 * All of it lives in shared memory (shm.h) made before fork.
 */
#ifndef MPIPC_PSYNC_H
#define MPIPC_PSYNC_H

#include "core/internal.h"

#include <pthread.h>
#include <semaphore.h>
#include <stdbool.h>
#include <stdint.h>

/* ---- robust mutexes --------------------------------------------------------- */

/*
 * Initialise a process-shared robust mutex: error-checking (relocking by the
 * owner is -EDEADLK, unlocking by a non-owner EPERM) or recursive.
 * Returns 0 or -errno.
 */
int mp__mutex_init(pthread_mutex_t *m, bool recursive);

/*
 * Lock with an absolute CLOCK_MONOTONIC deadline (MP__NO_DEADLINE: wait
 * without limit; a deadline in the past: try once). Returns 0; MP_EOWNERDEAD
 * when the previous owner died holding it (the mutex is locked and already
 * marked consistent again); MP_ETIMEDOUT; -EDEADLK when the calling thread
 * already holds an error-checking mutex; other -errno.
 */
int mp__mutex_lock(pthread_mutex_t *m, int64_t deadline);

/* Unlock a mutex the calling thread holds. */
void mp__mutex_unlock(pthread_mutex_t *m);

/* ---- semaphores --------------------------------------------------------------- */

/* sem_init(s, pshared=1, value) as 0 or -errno. */
int mp__sem_init(sem_t *s, unsigned value);

/*
 * Take one unit, waiting until the deadline (a deadline in the past tries
 * once), retrying after EINTR. Returns 0, MP_ETIMEDOUT or -errno.
 */
int mp__sem_wait(sem_t *s, int64_t deadline);

/* ---- the wait queue ------------------------------------------------------------ */

/*
 * A wait queue is an array of waiter slots inside a primitive's shared
 * state, always used with that primitive's own robust mutex (its "guard")
 * held, except for mp__waitq_sleep(). A thread that waits:
 *
 *     idx = mp__waitq_enter(q, tag);      guard held: take a slot
 *     mp__waitq_arm(q, idx);              ... ready to be woken
 *     unlock guard
 *     mp__waitq_sleep(q, idx, deadline);  sleeps on the slot's semaphore
 *     lock guard
 *     woken = mp__waitq_woken(q, idx);    arm + sleep again if it must
 *     mp__waitq_leave(q, idx);            give the slot back
 *
 * While it occupies a slot the thread holds the slot's "alive" robust mutex,
 * so a waker can tell a sleeping thread (EBUSY) from a dead one
 * (EOWNERDEAD) for the price of a trylock: dead waiters are reaped instead
 * of being woken, so notify(n) wakes n living threads, and a killed waiter
 * never leaves a stale count behind. Wakers pick the oldest armed slots
 * first (tickets), which is Python's FIFO notify order.
 */
enum mp__wstate {
    MP__W_FREE = 0,  /* slot unused */
    MP__W_IDLE = 1,  /* occupied, not armed */
    MP__W_ARMED = 2, /* occupied, waiting to be woken */
    MP__W_WOKEN = 3, /* occupied, woken (its semaphore was posted) */
};

struct mp__waiter {
    pthread_mutex_t alive; /* held by the occupant for as long as it occupies */
    sem_t sem;             /* posted once per wake */
    uint64_t ticket;       /* arm order */
    uint32_t state;        /* enum mp__wstate */
    uint32_t tag;          /* the primitive's own per-waiter mark */
};

struct mp__waitq {
    uint32_t cap;
    uint32_t narmed;    /* slots in MP__W_ARMED */
    uint32_t noccupied; /* slots not MP__W_FREE */
    uint32_t pad;
    uint64_t next_ticket;
    struct mp__waiter slot[];
};

/* Bytes a wait queue with cap slots needs. */
size_t mp__waitq_size(uint32_t cap);

/* Initialise a zeroed wait queue with cap slots. Returns 0 or -errno. */
int mp__waitq_init(struct mp__waitq *q, uint32_t cap);

/* Destroy what init made (no thread may be waiting). */
void mp__waitq_destroy(struct mp__waitq *q);

/* Called for each dead occupant reaped, with the tag it had. */
typedef void (*mp__waitq_dead_fn)(void *ctx, uint32_t tag);

/*
 * Take a slot for the calling thread (state IDLE, tag set). When every slot
 * is occupied, dead occupants are reaped first. Returns the slot index, or
 * -EAGAIN when cap threads are already waiting.
 */
int mp__waitq_enter(struct mp__waitq *q, uint32_t tag, mp__waitq_dead_fn on_dead, void *ctx);

/* Arm the slot: the next wake may pick it. Clears a previous wake. */
void mp__waitq_arm(struct mp__waitq *q, int idx);

/* Sleep (guard NOT held) until the slot is woken or the deadline passes,
 * polling the slot's semaphore for the first 20 us (a quick wake then costs
 * no system call on either side).
 * Returns 0 when woken, MP_ETIMEDOUT, -errno. Check mp__waitq_woken() with
 * the guard held: that, not this return value, is the truth. */
int mp__waitq_sleep(struct mp__waitq *q, int idx, int64_t deadline);

/* True if the slot has been woken since it was last armed. */
bool mp__waitq_woken(const struct mp__waitq *q, int idx);

/* Give the slot back (releases the alive mutex). */
void mp__waitq_leave(struct mp__waitq *q, int idx);

/*
 * Wake up to n armed slots, oldest first, skipping the caller's own slot.
 * Dead occupants found on the way are reaped (on_dead called, may be NULL)
 * and not counted. Returns how many living threads were woken.
 */
unsigned mp__waitq_wake(struct mp__waitq *q, unsigned n, mp__waitq_dead_fn on_dead, void *ctx);

/* Reap every dead occupant (on_dead for each). Returns how many. */
unsigned mp__waitq_reap(struct mp__waitq *q, mp__waitq_dead_fn on_dead, void *ctx);

/*
 * After the guard was acquired with MP_EOWNERDEAD: the dead process may have
 * stopped half way through any of the calls above. Recount the slots and
 * re-post every woken slot (a lost post would leave its thread asleep; an
 * extra one is drained when the slot is next armed or left).
 */
void mp__waitq_repair(struct mp__waitq *q);

/* The tag of an occupied slot, and a way to change it (guard held). */
static inline uint32_t mp__waitq_tag(const struct mp__waitq *q, int idx)
{
    return q->slot[idx].tag;
}

static inline void mp__waitq_set_tag(struct mp__waitq *q, int idx, uint32_t tag)
{
    q->slot[idx].tag = tag;
}

#endif /* MPIPC_PSYNC_H */
