/*
 * psync - robust mutexes, semaphore waits and the wait queue (psync.h).
 * Statics start with psync_.
 *
 * Timed waits use the CLOCK_MONOTONIC variants (pthread_mutex_clocklock,
 * sem_clockwait: glibc 2.30, POSIX.1-2024). Where they are missing, the
 * deadline is converted to CLOCK_REALTIME for the older timed calls, which
 * a clock step can stretch or shorten (also under ThreadSanitizer, below).
 */
#define _GNU_SOURCE
#include "core/psync.h"

#include "core/io.h"

#include <errno.h>
#include <string.h>
#include <time.h>

/* ThreadSanitizer (GCC 12) does not intercept the clock variants: it would
 * miss the lock and report its unlock. */
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 30)) && !MP__TSAN
#define HAVE_CLOCKWAIT 1
#endif

/* The monotonic deadline as the absolute time the timed calls below take:
 * CLOCK_MONOTONIC for the clock variants, else CLOCK_REALTIME. */
static struct timespec psync_abstime(int64_t deadline)
{
#ifdef HAVE_CLOCKWAIT
    return mp__deadline_timespec(deadline);
#else
    int64_t left = deadline - mp__now_ns();
    if (left < 0)
        left = 0;
    struct timespec now;
    (void)clock_gettime(CLOCK_REALTIME, &now);
    int64_t abs_ns = (int64_t)now.tv_sec * 1000000000 + now.tv_nsec + left;
    return mp__deadline_timespec(abs_ns);
#endif
}

/* How long a waiter polls - a busy mutex, or its semaphore - before it
 * sleeps in the kernel. A release or wake that comes within this time costs
 * neither side a system call (the waker finds nobody asleep, the waiter
 * never enters the kernel), which is most hand-offs between processes that
 * are running. Short enough that waiting for long costs nothing worth
 * measuring. */
#define SPIN_NS 20000

static inline void psync_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __asm__ __volatile__("pause");
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* The end of the polling phase of a wait that may last until deadline. */
static int64_t psync_spin_until(int64_t deadline)
{
    int64_t until = mp__now_ns() + SPIN_NS;
    return deadline != MP__NO_DEADLINE && deadline < until ? deadline : until;
}

/* ---- robust mutexes --------------------------------------------------------- */

int mp__mutex_init(pthread_mutex_t *m, bool recursive)
{
    pthread_mutexattr_t a;
    int rc = pthread_mutexattr_init(&a);
    if (rc != 0)
        return -rc;
    rc = pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    if (rc == 0)
        rc = pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    if (rc == 0)
        rc = pthread_mutexattr_settype(&a, recursive ? PTHREAD_MUTEX_RECURSIVE
                                                     : PTHREAD_MUTEX_ERRORCHECK);
    if (rc == 0)
        rc = pthread_mutex_init(m, &a);
    (void)pthread_mutexattr_destroy(&a);
    return -rc;
}

int mp__mutex_lock(pthread_mutex_t *m, int64_t deadline)
{
    int rc = pthread_mutex_trylock(m);
    if (rc == EBUSY && !mp__deadline_passed(deadline)) {
        int64_t until = psync_spin_until(deadline);
        for (unsigned i = 1; rc == EBUSY; i++) {
            psync_cpu_relax();
            if ((i & 15) == 0) {
                rc = pthread_mutex_trylock(m);
                if ((i & 255) == 0 && mp__now_ns() >= until)
                    break;
            }
        }
    }
    if (rc == EBUSY) {
        if (deadline == MP__NO_DEADLINE) {
            rc = pthread_mutex_lock(m);
        } else if (mp__deadline_passed(deadline)) {
            rc = ETIMEDOUT;
        } else {
            struct timespec ts = psync_abstime(deadline);
#ifdef HAVE_CLOCKWAIT
            rc = pthread_mutex_clocklock(m, CLOCK_MONOTONIC, &ts);
#else
            rc = pthread_mutex_timedlock(m, &ts);
#endif
        }
    }
    switch (rc) {
    case 0:
        return 0;
    case EOWNERDEAD:
        /* We hold it now. The data it guards may be half-updated; the
         * caller is told and repairs what it must. */
        (void)pthread_mutex_consistent(m);
        return MP_EOWNERDEAD;
    case ETIMEDOUT:
        return MP_ETIMEDOUT;
    default:
        return -rc;
    }
}

void mp__mutex_unlock(pthread_mutex_t *m)
{
    (void)pthread_mutex_unlock(m);
}

/* ---- semaphores --------------------------------------------------------------- */

int mp__sem_init(sem_t *s, unsigned value)
{
    return sem_init(s, 1, value) == 0 ? 0 : MP__NEG_ERRNO();
}

int mp__sem_wait(sem_t *s, int64_t deadline)
{
    for (;;) {
        int rc;
        if (deadline == MP__NO_DEADLINE) {
            rc = sem_wait(s);
        } else if (mp__deadline_passed(deadline)) {
            rc = sem_trywait(s);
        } else {
            struct timespec ts = psync_abstime(deadline);
#ifdef HAVE_CLOCKWAIT
            rc = sem_clockwait(s, CLOCK_MONOTONIC, &ts);
#else
            rc = sem_timedwait(s, &ts);
#endif
        }
        if (rc == 0)
            return 0;
        if (errno == EINTR)
            continue;
        if (errno == ETIMEDOUT || errno == EAGAIN)
            return MP_ETIMEDOUT;
        return MP__NEG_ERRNO();
    }
}

/* ---- the wait queue ------------------------------------------------------------ */

size_t mp__waitq_size(uint32_t cap)
{
    return sizeof(struct mp__waitq) + (size_t)cap * sizeof(struct mp__waiter);
}

int mp__waitq_init(struct mp__waitq *q, uint32_t cap)
{
    q->cap = cap;
    q->narmed = q->noccupied = 0;
    q->next_ticket = 1;
    for (uint32_t i = 0; i < cap; i++) {
        struct mp__waiter *w = &q->slot[i];
        int rc = mp__mutex_init(&w->alive, false);
        if (rc == 0) {
            rc = mp__sem_init(&w->sem, 0);
            if (rc < 0)
                (void)pthread_mutex_destroy(&w->alive);
        }
        if (rc < 0) {
            while (i-- > 0) {
                (void)sem_destroy(&q->slot[i].sem);
                (void)pthread_mutex_destroy(&q->slot[i].alive);
            }
            return rc;
        }
        w->state = MP__W_FREE;
    }
    return 0;
}

void mp__waitq_destroy(struct mp__waitq *q)
{
    for (uint32_t i = 0; i < q->cap; i++) {
        (void)sem_destroy(&q->slot[i].sem);
        (void)pthread_mutex_destroy(&q->slot[i].alive);
    }
}

/* The slot of an occupant: what every call that takes an index relies on
 * (the caller holds it between mp__waitq_enter and mp__waitq_leave). */
static struct mp__waiter *psync_occupied(struct mp__waitq *q, int idx)
{
    MP__ASSERT(idx >= 0 && (uint32_t)idx < q->cap);
    struct mp__waiter *w = &q->slot[idx];
    MP__ASSERT(w->state != MP__W_FREE);
    return w;
}

/* The counts agree with the slots (between calls, guard held). */
static void psync_check_counts(const struct mp__waitq *q)
{
    MP__ASSERT(q->narmed <= q->noccupied && q->noccupied <= q->cap);
    (void)q;
}

/* Consume every pending post on the slot's semaphore. */
static void psync_drain(struct mp__waiter *w)
{
    while (sem_trywait(&w->sem) == 0)
        ;
}

/* Liveness of an occupied slot's thread, by a trylock of its alive mutex. */
enum psync_liveness { PSYNC_ALIVE, PSYNC_DEAD, PSYNC_SELF };

static enum psync_liveness psync_probe(struct mp__waiter *w)
{
    int rc = pthread_mutex_trylock(&w->alive);
    if (rc == EBUSY)
        return PSYNC_ALIVE;
    if (rc == EDEADLK)
        return PSYNC_SELF;
    if (rc == EOWNERDEAD)
        (void)pthread_mutex_consistent(&w->alive);
    /* EOWNERDEAD: the occupant died holding it. 0 should not happen (an
     * occupant holds it until its slot is free), but the slot is then just
     * as abandoned. Either way we hold it now: give it back. */
    if (rc == 0 || rc == EOWNERDEAD)
        (void)pthread_mutex_unlock(&w->alive);
    return PSYNC_DEAD;
}

/* Free a slot whose occupant died. Its semaphore may hold a waiter count
 * the dead thread never took back; nobody uses it now, so start it anew. */
static void psync_reap_slot(struct mp__waitq *q, struct mp__waiter *w, mp__waitq_dead_fn on_dead,
                            void *ctx)
{
    MP__ASSERT(w->state != MP__W_FREE && q->noccupied > 0);
    if (w->state == MP__W_ARMED) {
        MP__ASSERT(q->narmed > 0);
        q->narmed--;
    }
    uint32_t tag = w->tag;
    w->state = MP__W_FREE;
    w->tag = 0;
    q->noccupied--;
    (void)sem_destroy(&w->sem);
    (void)mp__sem_init(&w->sem, 0);
    if (on_dead)
        on_dead(ctx, tag);
}

unsigned mp__waitq_reap(struct mp__waitq *q, mp__waitq_dead_fn on_dead, void *ctx)
{
    unsigned n = 0;
    for (uint32_t i = 0; i < q->cap && q->noccupied > 0; i++) {
        struct mp__waiter *w = &q->slot[i];
        if (w->state != MP__W_FREE && psync_probe(w) == PSYNC_DEAD) {
            psync_reap_slot(q, w, on_dead, ctx);
            n++;
        }
    }
    return n;
}

int mp__waitq_enter(struct mp__waitq *q, uint32_t tag, mp__waitq_dead_fn on_dead, void *ctx)
{
    if (q->noccupied >= q->cap && mp__waitq_reap(q, on_dead, ctx) == 0)
        return -EAGAIN;
    for (uint32_t i = 0; i < q->cap; i++) {
        struct mp__waiter *w = &q->slot[i];
        if (w->state != MP__W_FREE)
            continue;
        int rc = pthread_mutex_trylock(&w->alive);
        if (rc == EOWNERDEAD) {
            /* The last occupant died after freeing the slot but before
             * unlocking: harmless, the mutex is ours now. */
            (void)pthread_mutex_consistent(&w->alive);
        } else if (rc != 0) {
            continue;
        }
        psync_drain(w);
        w->state = MP__W_IDLE;
        w->tag = tag;
        q->noccupied++;
        psync_check_counts(q);
        return (int)i;
    }
    return -EAGAIN;
}

void mp__waitq_arm(struct mp__waitq *q, int idx)
{
    struct mp__waiter *w = psync_occupied(q, idx);
    psync_drain(w);
    if (w->state != MP__W_ARMED)
        q->narmed++;
    w->state = MP__W_ARMED;
    w->ticket = q->next_ticket++;
    psync_check_counts(q);
}

int mp__waitq_sleep(struct mp__waitq *q, int idx, int64_t deadline)
{
    /* Guard not held: only the slot's own semaphore is touched. */
    MP__ASSERT(idx >= 0 && (uint32_t)idx < q->cap);
    sem_t *sem = &q->slot[idx].sem;
    int64_t until = psync_spin_until(deadline);
    for (unsigned i = 1;; i++) {
        if (sem_trywait(sem) == 0)
            return 0;
        psync_cpu_relax();
        if ((i & 63) == 0 && mp__now_ns() >= until)
            break;
    }
    return mp__sem_wait(sem, deadline);
}

bool mp__waitq_woken(const struct mp__waitq *q, int idx)
{
    MP__ASSERT(idx >= 0 && (uint32_t)idx < q->cap && q->slot[idx].state != MP__W_FREE);
    return q->slot[idx].state == MP__W_WOKEN;
}

void mp__waitq_leave(struct mp__waitq *q, int idx)
{
    struct mp__waiter *w = psync_occupied(q, idx);
    MP__ASSERT(q->noccupied > 0);
    if (w->state == MP__W_ARMED) {
        MP__ASSERT(q->narmed > 0);
        q->narmed--;
    }
    w->state = MP__W_FREE;
    w->tag = 0;
    q->noccupied--;
    psync_drain(w);
    (void)pthread_mutex_unlock(&w->alive);
}

/* Wake one armed slot: mark it, then post. */
static void psync_wake_slot(struct mp__waitq *q, struct mp__waiter *w)
{
    MP__ASSERT(w->state == MP__W_ARMED && q->narmed > 0);
    w->state = MP__W_WOKEN;
    q->narmed--;
    (void)sem_post(&w->sem);
}

/* Wake an armed slot whose occupant lives, reap it if it died; our own
 * slot is left as it is. Returns 1 when a thread was woken. */
static unsigned psync_wake_or_reap(struct mp__waitq *q, struct mp__waiter *w,
                                   mp__waitq_dead_fn on_dead, void *ctx)
{
    enum psync_liveness l = psync_probe(w);
    if (l == PSYNC_ALIVE) {
        psync_wake_slot(q, w);
        return 1;
    }
    if (l == PSYNC_DEAD)
        psync_reap_slot(q, w, on_dead, ctx);
    return 0;
}

unsigned mp__waitq_wake(struct mp__waitq *q, unsigned n, mp__waitq_dead_fn on_dead, void *ctx)
{
    unsigned woken = 0;
    if (n >= q->narmed) {
        /* Everyone armed: one pass, order does not matter. */
        for (uint32_t i = 0; i < q->cap && q->narmed > 0; i++) {
            struct mp__waiter *w = &q->slot[i];
            if (w->state == MP__W_ARMED)
                woken += psync_wake_or_reap(q, w, on_dead, ctx);
        }
        return woken;
    }
    /* Some: oldest first. A slot found dead or our own is skipped and the
     * search goes on, so n living threads are woken when they exist. */
    uint64_t after = 0;
    while (woken < n && q->narmed > 0) {
        struct mp__waiter *best = NULL;
        for (uint32_t i = 0; i < q->cap; i++) {
            struct mp__waiter *w = &q->slot[i];
            if (w->state == MP__W_ARMED && w->ticket > after && (!best || w->ticket < best->ticket))
                best = w;
        }
        if (!best)
            break;
        after = best->ticket;
        woken += psync_wake_or_reap(q, best, on_dead, ctx);
    }
    return woken;
}

void mp__waitq_repair(struct mp__waitq *q)
{
    uint32_t armed = 0, occupied = 0;
    for (uint32_t i = 0; i < q->cap; i++) {
        struct mp__waiter *w = &q->slot[i];
        if (w->state == MP__W_FREE)
            continue;
        occupied++;
        if (w->state == MP__W_ARMED)
            armed++;
        else if (w->state == MP__W_WOKEN)
            (void)sem_post(&w->sem);
    }
    q->narmed = armed;
    q->noccupied = occupied;
    psync_check_counts(q);
}
