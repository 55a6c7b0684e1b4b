/*
 * sync_lock: shared memory, Lock, RLock and Semaphore for forked processes
 * (src/sync/sync_lock.c; _TestLock and _TestSemaphore in
 * Lib/test/_test_multiprocessing.py), and what CPython lacks: a holder that
 * dies never wedges the others (gh-88304). The rest of src/sync/ is tested
 * by test_sync_event, test_sync_barrier and test_sync_value.
 *
 * Children are real processes (tu_fork); they report through their exit
 * status and shared memory, and the parent asserts. A test name filter may
 * be given as the first argument (cmocka glob), so one case can be run in a
 * loop: test_sync_lock '*dead*'.
 */
#include "sync_testutil.h"

#include <mpipc/conn.h>
#include <mpipc/sync.h>

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- shared memory ------------------------------------------------------------ */

struct shm_args {
    unsigned char *block;
    size_t len;
};

static int shm_child_writes(void *arg)
{
    struct shm_args *a = arg;
    for (size_t i = 0; i < a->len; i++)
        if (a->block[i] != 0)
            return 1; /* the block must arrive zeroed */
    memset(a->block, 0xab, a->len);
    return 0;
}

static void test_shm_block_is_shared_with_children_and_zeroed(void **state)
{
    (void)state;
    struct shm_args a = {.len = 1000};
    assert_int_equal(mp_shm_alloc((void **)&a.block, a.len), 0);
    assert_true(((uintptr_t)a.block % 64) == 0);
    assert_int_equal(tu_wait_child(tu_fork(shm_child_writes, &a), T_LONG), 0);
    for (size_t i = 0; i < a.len; i++)
        assert_int_equal(a.block[i], 0xab);
    /* A block handed out again after free starts zeroed once more. */
    mp_shm_free(a.block);
    unsigned char *again;
    assert_int_equal(mp_shm_alloc((void **)&again, a.len), 0);
    for (size_t i = 0; i < a.len; i++)
        assert_int_equal(again[i], 0);
    mp_shm_free(again);

    /* Bigger than an arena, and many small ones. */
    unsigned char *big;
    assert_int_equal(mp_shm_alloc((void **)&big, 3u << 20), 0);
    big[(3u << 20) - 1] = 1;
    void *many[300];
    for (int i = 0; i < 300; i++)
        assert_int_equal(mp_shm_alloc(&many[i], 100 + (size_t)i), 0);
    for (int i = 0; i < 300; i += 2)
        mp_shm_free(many[i]);
    for (int i = 0; i < 300; i += 2)
        assert_int_equal(mp_shm_alloc(&many[i], 50), 0);
    for (int i = 0; i < 300; i++)
        mp_shm_free(many[i]);
    mp_shm_free(big);

    void *p = (void *)1;
    assert_int_equal(mp_shm_alloc(&p, 0), -EINVAL);
    assert_null(p);
    assert_int_equal(mp_shm_alloc(NULL, 8), -EINVAL);
    mp_shm_free(NULL);
}

struct inherit_args {
    unsigned char *parent_block;
};

/* In the child: freeing the parent's block does nothing, and new blocks
 * never land on the parent's memory. */
static int shm_child_frees_and_allocates(void *arg)
{
    struct inherit_args *a = arg;
    mp_shm_free(a->parent_block);
    for (int i = 0; i < 64; i++) {
        unsigned char *mine;
        if (mp_shm_alloc((void **)&mine, 4096) != 0)
            return 2;
        if (mine < a->parent_block + 4096 && mine + 4096 > a->parent_block)
            return 3; /* overlaps the parent's block */
        memset(mine, 0xcd, 4096);
    }
    return a->parent_block[0] == 0x11 ? 0 : 4;
}

static void test_shm_child_never_reuses_inherited_memory(void **state)
{
    (void)state;
    struct inherit_args a;
    assert_int_equal(mp_shm_alloc((void **)&a.parent_block, 4096), 0);
    memset(a.parent_block, 0x11, 4096);
    assert_int_equal(tu_wait_child(tu_fork(shm_child_frees_and_allocates, &a), T_LONG), 0);
    for (int i = 0; i < 4096; i++)
        assert_int_equal(a.parent_block[i], 0x11);
    mp_shm_free(a.parent_block);
}

/* ---- Lock ------------------------------------------------------------------------- */

static void test_lock_acquire_release_like_python(void **state)
{
    (void)state;
    mp_lock *l;
    assert_int_equal(mp_lock_new(&l), 0);
    /* _TestLock.test_lock */
    assert_int_equal(mp_lock_acquire(l, MP_FOREVER), 0);
    TU_ASSERT_STATUS(mp_lock_acquire(l, MP_NOWAIT), MP_ETIMEDOUT);
    assert_int_equal(mp_lock_release(l), 0);
    TU_ASSERT_STATUS(mp_lock_release(l), MP_EVALUE);
    /* Not recursive: the holder waits out its timeout, as in Python; with
     * no timeout it would hang forever, so that is an error. */
    assert_int_equal(mp_lock_acquire(l, MP_FOREVER), 0);
    double t0 = tu_now();
    TU_ASSERT_STATUS(mp_lock_acquire(l, 0.1), MP_ETIMEDOUT);
    ASSERT_TOOK(t0, 0.1);
    TU_ASSERT_STATUS(mp_lock_acquire(l, MP_FOREVER), -EDEADLK);
    assert_int_equal(mp_lock_release(l), 0);
    TU_ASSERT_STATUS(mp_lock_acquire(NULL, 0), -EINVAL);
    TU_ASSERT_STATUS(mp_lock_release(NULL), -EINVAL);
    assert_int_equal(mp_lock_new(NULL), -EINVAL);
    mp_lock_free(l);
    mp_lock_free(NULL);
}

struct hold_args {
    mp_lock *lock;
    mp_rlock *rlock;
    mp_sem *held; /* released once the child holds the lock */
    mp_sem *go;   /* the child waits on this before releasing */
    int levels;
};

static int hold_lock_until_go(void *arg)
{
    struct hold_args *a = arg;
    if (a->lock && mp_lock_acquire(a->lock, T_LONG) != 0)
        return 1;
    for (int i = 0; a->rlock && i < a->levels; i++)
        if (mp_rlock_acquire(a->rlock, T_LONG) != 0)
            return 1;
    mp_sem_release(a->held);
    if (!a->go) {
        for (;;)
            pause(); /* hold it until killed */
    }
    if (mp_sem_acquire(a->go, T_LONG) != 0)
        return 2;
    if (a->lock && mp_lock_release(a->lock) != 0)
        return 3;
    for (int i = 0; a->rlock && i < a->levels; i++)
        if (mp_rlock_release(a->rlock) != 0)
            return 3;
    return 0;
}

static void test_lock_excludes_other_processes_until_released(void **state)
{
    (void)state;
    struct hold_args a = {0};
    assert_int_equal(mp_lock_new(&a.lock), 0);
    assert_int_equal(mp_sem_new(&a.held, 0), 0);
    assert_int_equal(mp_sem_new(&a.go, 0), 0);
    pid_t pid = tu_fork(hold_lock_until_go, &a);
    assert_int_equal(mp_sem_acquire(a.held, T_LONG), 0);

    TU_ASSERT_STATUS(mp_lock_acquire(a.lock, MP_NOWAIT), MP_ETIMEDOUT);
    double t0 = tu_now();
    TU_ASSERT_STATUS(mp_lock_acquire(a.lock, 0.2), MP_ETIMEDOUT);
    ASSERT_TOOK(t0, 0.2);
    /* Python would let us release it; a robust mutex belongs to its holder
     * (see sync.h): refused, and the child still holds it. */
    TU_ASSERT_STATUS(mp_lock_release(a.lock), MP_ESTATE);
    TU_ASSERT_STATUS(mp_lock_acquire(a.lock, MP_NOWAIT), MP_ETIMEDOUT);

    assert_int_equal(mp_sem_release(a.go), 0);
    assert_int_equal(mp_lock_acquire(a.lock, T_LONG), 0);
    assert_int_equal(mp_lock_release(a.lock), 0);
    assert_int_equal(tu_wait_child(pid, T_LONG), 0);
    mp_lock_free(a.lock);
    mp_sem_free(a.held);
    mp_sem_free(a.go);
}

struct thread_release_args {
    mp_lock *lock;
    int rc;
};

static void *release_from_thread(void *arg)
{
    struct thread_release_args *t = arg;
    t->rc = mp_lock_release(t->lock);
    return NULL;
}

static void test_lock_release_from_another_thread_is_refused(void **state)
{
    (void)state;
    struct thread_release_args t;
    assert_int_equal(mp_lock_new(&t.lock), 0);
    assert_int_equal(mp_lock_acquire(t.lock, MP_FOREVER), 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, release_from_thread, &t), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
    TU_ASSERT_STATUS(t.rc, MP_ESTATE);
    assert_int_equal(mp_lock_release(t.lock), 0);
    mp_lock_free(t.lock);
}

static void test_lock_dead_holder_gives_next_acquirer_eownerdead(void **state)
{
    (void)state;
    struct hold_args a = {0};
    assert_int_equal(mp_lock_new(&a.lock), 0);
    assert_int_equal(mp_sem_new(&a.held, 0), 0);
    pid_t pid = tu_fork(hold_lock_until_go, &a);
    assert_int_equal(mp_sem_acquire(a.held, T_LONG), 0);
    kill_and_reap(pid);

    double t0 = tu_now();
    TU_ASSERT_STATUS(mp_lock_acquire(a.lock, T_LONG), MP_EOWNERDEAD);
    assert_true(tu_now() - t0 < 1.0);
    /* We hold it now and it works as before. */
    TU_ASSERT_STATUS(mp_lock_acquire(a.lock, MP_NOWAIT), MP_ETIMEDOUT);
    assert_int_equal(mp_lock_release(a.lock), 0);
    assert_int_equal(mp_lock_acquire(a.lock, MP_NOWAIT), 0);
    assert_int_equal(mp_lock_release(a.lock), 0);
    mp_lock_free(a.lock);
    mp_sem_free(a.held);
}

struct killer_args {
    pid_t victim;
    double after;
};

static int kill_after(void *arg)
{
    struct killer_args *k = arg;
    tu_sleep(k->after);
    return kill(k->victim, SIGKILL) == 0 ? 0 : 1;
}

static void test_lock_waiter_is_woken_when_holder_dies(void **state)
{
    (void)state;
    struct hold_args a = {0};
    assert_int_equal(mp_lock_new(&a.lock), 0);
    assert_int_equal(mp_sem_new(&a.held, 0), 0);
    pid_t holder = tu_fork(hold_lock_until_go, &a);
    assert_int_equal(mp_sem_acquire(a.held, T_LONG), 0);
    /* Another process kills the holder while we are blocked without limit:
     * the kernel hands us the lock (CPython would wait forever). */
    struct killer_args k = {.victim = holder, .after = 0.2};
    pid_t killer = tu_fork(kill_after, &k);
    double t0 = tu_now();
    TU_ASSERT_STATUS(mp_lock_acquire(a.lock, MP_FOREVER), MP_EOWNERDEAD);
    assert_true(tu_now() - t0 < 5.0);
    assert_int_equal(tu_wait_child(killer, T_LONG), 0);
    assert_int_equal(tu_wait_child(holder, T_LONG), -SIGKILL);
    assert_int_equal(mp_lock_release(a.lock), 0);
    mp_lock_free(a.lock);
    mp_sem_free(a.held);
}

static void test_lock_of_dead_holder_released_by_another_is_free(void **state)
{
    (void)state;
    struct hold_args a = {0};
    assert_int_equal(mp_lock_new(&a.lock), 0);
    assert_int_equal(mp_sem_new(&a.held, 0), 0);
    pid_t pid = tu_fork(hold_lock_until_go, &a);
    assert_int_equal(mp_sem_acquire(a.held, T_LONG), 0);
    kill_and_reap(pid);
    /* Python's release() from anyone: allowed when the holder is gone. */
    assert_int_equal(mp_lock_release(a.lock), 0);
    assert_int_equal(mp_lock_acquire(a.lock, MP_NOWAIT), 0);
    assert_int_equal(mp_lock_release(a.lock), 0);
    TU_ASSERT_STATUS(mp_lock_release(a.lock), MP_EVALUE);
    mp_lock_free(a.lock);
    mp_sem_free(a.held);
}

static int free_inherited_then_use(void *arg)
{
    mp_lock *l = arg;
    mp_lock_free(l); /* not ours: does nothing */
    if (mp_lock_acquire(l, T_LONG) != 0)
        return 1;
    return mp_lock_release(l) == 0 ? 0 : 2;
}

static void test_free_in_child_leaves_parent_object_intact(void **state)
{
    (void)state;
    mp_lock *l;
    assert_int_equal(mp_lock_new(&l), 0);
    assert_int_equal(tu_wait_child(tu_fork(free_inherited_then_use, l), T_LONG), 0);
    assert_int_equal(mp_lock_acquire(l, MP_NOWAIT), 0);
    assert_int_equal(mp_lock_release(l), 0);
    mp_lock_free(l);
}

/* ---- counting under a lock: the seed, and the proof that the lock matters --------- */

struct count_args {
    mp_lock *lock;
    mp_value *count; /* 'i' for the seed, 'q' for the race */
    int iterations;  /* > 0: that many; 0: for `seconds` */
    double seconds;
    atomic_int *go;
    atomic_int *done; /* decrements done, summed over the processes */
};

/* One read-modify-write of the shared count, with a little work between
 * the read and the write, as real critical sections have. */
#define RMW_DECREMENT(type, ptr)                                                                   \
    do {                                                                                           \
        type v_ = *(ptr);                                                                          \
        for (volatile int spin_ = 0; spin_ < 20; spin_++)                                          \
            ;                                                                                      \
        *(ptr) = v_ - 1;                                                                           \
    } while (0)

/* The seed's work(): with lock: count -= 1, through the raw pointer (the
 * lock is what makes it safe). */
static int decrement_under_lock(void *arg)
{
    struct count_args *a = arg;
    volatile int *count = mp_value_ptr(a->count);
    for (int i = 0; i < a->iterations; i++) {
        if (mp_lock_acquire(a->lock, T_LONG) != 0)
            return 1;
        RMW_DECREMENT(int, count);
        if (mp_lock_release(a->lock) != 0)
            return 2;
    }
    return 0;
}

/* Decrement for a fixed time, with or without the lock, and report how
 * many decrements were done. Running for a time rather than a count makes
 * the processes overlap however busy the machine is. */
static int decrement_for_a_while(void *arg)
{
    struct count_args *a = arg;
    volatile long long *count = mp_value_ptr(a->count);
    while (!atomic_load(a->go))
        ;
    double end = tu_now() + a->seconds;
    int done = 0;
    do {
        for (int i = 0; i < 256; i++, done++) {
            if (a->lock && mp_lock_acquire(a->lock, T_LONG) != 0)
                return 1;
            RMW_DECREMENT(long long, count);
            if (a->lock && mp_lock_release(a->lock) != 0)
                return 2;
        }
    } while (tu_now() < end);
    atomic_fetch_add(a->done, done);
    return 0;
}

static void test_seed_100_processes_decrement_a_shared_count_under_a_lock(void **state)
{
    (void)state;
    struct count_args a = {.iterations = 1};
    int init = 100;
    assert_int_equal(mp_lock_new(&a.lock), 0);
    assert_int_equal(mp_value_new(&a.count, 'i', &init, false), 0);
    pid_t pids[100];
    for (int i = 0; i < 100; i++)
        pids[i] = tu_fork(decrement_under_lock, &a);
    join_all(pids, 100);
    int64_t v;
    assert_int_equal(mp_value_get_int(a.count, &v), 0);
    assert_int_equal(v, 0);
    mp_value_free(a.count);
    mp_lock_free(a.lock);
}

static void test_without_the_lock_updates_are_lost(void **state)
{
    (void)state;
    /* Four processes doing the same read-modify-write for 0.2 s each,
     * started together: without the lock some decrements overwrite others;
     * with it not one is lost. */
    enum { PROCS = 4 };
    struct shared *sh = shared_new();
    for (int with_lock = 0; with_lock <= 1; with_lock++) {
        struct count_args a = {.seconds = 0.2, .go = &sh->n[0], .done = &sh->n[1]};
        long long init = 1LL << 40;
        atomic_store(&sh->n[0], 0);
        atomic_store(&sh->n[1], 0);
        if (with_lock)
            assert_int_equal(mp_lock_new(&a.lock), 0);
        assert_int_equal(mp_value_new(&a.count, 'q', &init, false), 0);
        pid_t pids[PROCS];
        for (int i = 0; i < PROCS; i++)
            pids[i] = tu_fork(decrement_for_a_while, &a);
        atomic_store(&sh->n[0], 1);
        join_all(pids, PROCS);
        long long expected = init - atomic_load(&sh->n[1]);
        long long final = *(long long *)mp_value_ptr(a.count);
        if (with_lock)
            assert_true(final == expected);
        else if (final == expected)
            fail_msg("no update was lost without the lock: the test proves nothing here");
        else
            assert_true(final > expected); /* lost decrements leave it higher */
        mp_value_free(a.count);
        mp_lock_free(a.lock);
    }
    mp_shm_free(sh);
}

struct mixed_args {
    mp_lock *lock; /* NULL: the control run, without the lock */
    double seconds;
    atomic_int *go;
    _Atomic long *counter;
    _Atomic long *done; /* increments done, summed over every thread */
};

/* Add 1 to the shared counter for a while, under the lock if there is one:
 * a read and a write with a little work between them, as a critical section
 * has. The accesses are atomic only so that ThreadSanitizer does not report
 * the control run's race between threads; read and write stay two steps. */
static void *add_for_a_while(void *arg)
{
    struct mixed_args *m = arg;
    while (!atomic_load(m->go))
        ;
    double end = tu_now() + m->seconds;
    long done = 0;
    do {
        for (int i = 0; i < 64; i++, done++) {
            if (m->lock && mp_lock_acquire(m->lock, T_LONG) != 0)
                return (void *)1;
            long v = atomic_load_explicit(m->counter, memory_order_relaxed);
            for (volatile int spin = 0; spin < 20; spin++)
                ;
            atomic_store_explicit(m->counter, v + 1, memory_order_relaxed);
            if (m->lock && mp_lock_release(m->lock) != 0)
                return (void *)2;
        }
    } while (tu_now() < end);
    atomic_fetch_add(m->done, done);
    return NULL;
}

static int two_threads_add(void *arg)
{
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        if (pthread_create(&t[i], NULL, add_for_a_while, arg) != 0)
            return 1;
    int bad = 0;
    for (int i = 0; i < 2; i++) {
        void *r;
        pthread_join(t[i], &r);
        bad |= r != NULL;
    }
    return bad;
}

static void test_lock_serialises_threads_of_several_processes(void **state)
{
    (void)state;
    /* Two threads in each of four processes add to one counter for 0.2 s,
     * started together. The control run without the lock must lose
     * increments (else the test proves nothing); with the lock, not one. */
    struct counters {
        atomic_int go;
        _Atomic long counter;
        _Atomic long done;
    } * c;
    assert_int_equal(mp_shm_alloc((void **)&c, sizeof *c), 0);
    for (int with_lock = 0; with_lock <= 1; with_lock++) {
        struct mixed_args m = {
            .seconds = 0.2, .go = &c->go, .counter = &c->counter, .done = &c->done};
        atomic_store(&c->go, 0);
        atomic_store(&c->counter, 0);
        atomic_store(&c->done, 0);
        if (with_lock)
            assert_int_equal(mp_lock_new(&m.lock), 0);
        pid_t pids[3];
        for (int i = 0; i < 3; i++)
            pids[i] = tu_fork(two_threads_add, &m);
        atomic_store(&c->go, 1);
        assert_int_equal(two_threads_add(&m), 0);
        join_all(pids, 3);
        long done = atomic_load(&c->done), final = atomic_load(&c->counter);
        assert_true(done > 0);
        if (with_lock)
            assert_int_equal(final, done);
        else if (final == done)
            fail_msg("no increment was lost without the lock: the test proves nothing here");
        else
            assert_true(final < done); /* lost increments leave it lower */
        mp_lock_free(m.lock);
    }
    mp_shm_free(c);
}

/* ---- RLock ------------------------------------------------------------------------ */

static void test_rlock_is_recursive_like_python(void **state)
{
    (void)state;
    mp_rlock *l;
    assert_int_equal(mp_rlock_new(&l), 0);
    assert_int_equal(mp_rlock_count(l), 0);
    /* _TestLock.test_rlock */
    for (int i = 1; i <= 3; i++) {
        assert_int_equal(mp_rlock_acquire(l, MP_FOREVER), 0);
        assert_int_equal(mp_rlock_count(l), i);
    }
    for (int i = 2; i >= 0; i--) {
        assert_int_equal(mp_rlock_release(l), 0);
        assert_int_equal(mp_rlock_count(l), i);
    }
    TU_ASSERT_STATUS(mp_rlock_release(l), MP_ESTATE);
    assert_int_equal(mp_rlock_acquire(l, MP_NOWAIT), 0);
    assert_int_equal(mp_rlock_acquire(l, 0.5), 0);
    assert_int_equal(mp_rlock_release(l), 0);
    assert_int_equal(mp_rlock_release(l), 0);
    TU_ASSERT_STATUS(mp_rlock_acquire(NULL, 0), -EINVAL);
    mp_rlock_free(l);
}

static int rlock_probe_from_other_process(void *arg)
{
    mp_rlock *l = arg;
    if (mp_rlock_release(l) != MP_ESTATE)
        return 1; /* not the owner: AssertionError in Python */
    if (mp_rlock_count(l) != 0)
        return 2;
    if (mp_rlock_acquire(l, MP_NOWAIT) != MP_ETIMEDOUT)
        return 3;
    return mp_rlock_acquire(l, 0.1) == MP_ETIMEDOUT ? 0 : 4;
}

static void test_rlock_belongs_to_its_owner(void **state)
{
    (void)state;
    mp_rlock *l;
    assert_int_equal(mp_rlock_new(&l), 0);
    assert_int_equal(mp_rlock_acquire(l, MP_FOREVER), 0);
    assert_int_equal(mp_rlock_acquire(l, MP_FOREVER), 0);
    assert_int_equal(tu_wait_child(tu_fork(rlock_probe_from_other_process, l), T_LONG), 0);
    assert_int_equal(mp_rlock_count(l), 2);
    assert_int_equal(mp_rlock_release(l), 0);
    assert_int_equal(mp_rlock_release(l), 0);
    mp_rlock_free(l);
}

static void test_rlock_dead_holder_gives_eownerdead_at_level_one(void **state)
{
    (void)state;
    struct hold_args a = {.levels = 3};
    assert_int_equal(mp_rlock_new(&a.rlock), 0);
    assert_int_equal(mp_sem_new(&a.held, 0), 0);
    pid_t pid = tu_fork(hold_lock_until_go, &a);
    assert_int_equal(mp_sem_acquire(a.held, T_LONG), 0);
    kill_and_reap(pid);
    TU_ASSERT_STATUS(mp_rlock_acquire(a.rlock, T_LONG), MP_EOWNERDEAD);
    assert_int_equal(mp_rlock_count(a.rlock), 1);
    assert_int_equal(mp_rlock_release(a.rlock), 0);
    assert_int_equal(mp_rlock_count(a.rlock), 0);
    /* Free again for everyone. */
    assert_int_equal(tu_wait_child(tu_fork(rlock_probe_from_other_process, a.rlock), T_LONG), 3);
    mp_rlock_free(a.rlock);
    mp_sem_free(a.held);
}

/* ---- Semaphore -------------------------------------------------------------------- */

/* _TestSemaphore._test_semaphore: value 2 down to 0 and back. */
static void check_semaphore_of_two(mp_sem *s)
{
    assert_int_equal(mp_sem_get_value(s), 2);
    assert_int_equal(mp_sem_acquire(s, MP_FOREVER), 0);
    assert_int_equal(mp_sem_get_value(s), 1);
    assert_int_equal(mp_sem_acquire(s, MP_FOREVER), 0);
    assert_int_equal(mp_sem_get_value(s), 0);
    TU_ASSERT_STATUS(mp_sem_acquire(s, MP_NOWAIT), MP_ETIMEDOUT);
    assert_int_equal(mp_sem_get_value(s), 0);
    assert_int_equal(mp_sem_release(s), 0);
    assert_int_equal(mp_sem_get_value(s), 1);
    assert_int_equal(mp_sem_release(s), 0);
    assert_int_equal(mp_sem_get_value(s), 2);
}

static void test_semaphore_counts_like_python(void **state)
{
    (void)state;
    mp_sem *s;
    assert_int_equal(mp_sem_new(&s, 2), 0);
    check_semaphore_of_two(s);
    assert_int_equal(mp_sem_release(s), 0);
    assert_int_equal(mp_sem_get_value(s), 3);
    assert_int_equal(mp_sem_release(s), 0);
    assert_int_equal(mp_sem_get_value(s), 4);
    mp_sem_free(s);

    assert_int_equal(mp_sem_new_bounded(&s, 2), 0);
    check_semaphore_of_two(s);
    /* BoundedSemaphore: ValueError above the initial value. */
    TU_ASSERT_STATUS(mp_sem_release(s), MP_EVALUE);
    assert_int_equal(mp_sem_get_value(s), 2);
    mp_sem_free(s);

    TU_ASSERT_STATUS(mp_sem_new(&s, (unsigned)SEM_VALUE_MAX + 1u), MP_EVALUE);
    assert_null(s);
    TU_ASSERT_STATUS(mp_sem_new(NULL, 1), -EINVAL);
    TU_ASSERT_STATUS(mp_sem_get_value(NULL), -EINVAL);
}

static void test_semaphore_timeouts_like_python(void **state)
{
    (void)state;
    mp_sem *s;
    assert_int_equal(mp_sem_new(&s, 0), 0);
    double t0 = tu_now();
    TU_ASSERT_STATUS(mp_sem_acquire(s, MP_NOWAIT), MP_ETIMEDOUT);
    ASSERT_TOOK(t0, 0.0);
    t0 = tu_now();
    TU_ASSERT_STATUS(mp_sem_acquire(s, 0.1), MP_ETIMEDOUT);
    ASSERT_TOOK(t0, 0.1);
    t0 = tu_now();
    TU_ASSERT_STATUS(mp_sem_acquire(s, 0.25), MP_ETIMEDOUT);
    ASSERT_TOOK(t0, 0.25);
    mp_sem_free(s);
}

struct sem_args {
    mp_sem *sem;
    mp_sem *ready;
    double delay;
    int count;
};

static int release_after_delay(void *arg)
{
    struct sem_args *a = arg;
    tu_sleep(a->delay);
    for (int i = 0; i < a->count; i++)
        if (mp_sem_release(a->sem) != 0)
            return 1;
    return 0;
}

static void test_semaphore_release_in_one_process_wakes_another(void **state)
{
    (void)state;
    struct sem_args a = {.delay = 0.1, .count = 3};
    assert_int_equal(mp_sem_new_bounded(&a.sem, 3), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(mp_sem_acquire(a.sem, MP_NOWAIT), 0);
    pid_t pid = tu_fork(release_after_delay, &a);
    for (int i = 0; i < 3; i++)
        assert_int_equal(mp_sem_acquire(a.sem, T_LONG), 0);
    assert_int_equal(tu_wait_child(pid, T_LONG), 0);
    assert_int_equal(mp_sem_get_value(a.sem), 0);
    mp_sem_free(a.sem);
}

static int take_unit_and_wait_to_die(void *arg)
{
    struct sem_args *a = arg;
    if (mp_sem_acquire(a->sem, T_LONG) != 0)
        return 1;
    mp_sem_release(a->ready);
    for (;;)
        pause();
}

static int wait_on_empty_sem(void *arg)
{
    struct sem_args *a = arg;
    mp_sem_release(a->ready);
    mp_sem_acquire(a->sem, MP_FOREVER); /* killed while asleep here */
    return 1;
}

static void test_semaphore_dead_parties_do_not_block_past_timeouts(void **state)
{
    (void)state;
    struct sem_args a = {0};
    assert_int_equal(mp_sem_new(&a.sem, 1), 0);
    assert_int_equal(mp_sem_new(&a.ready, 0), 0);
    /* A process dies holding the only unit: it stays taken (a semaphore has
     * no owner, as in Python), and waiters return at their timeout. */
    pid_t pid = tu_fork(take_unit_and_wait_to_die, &a);
    assert_int_equal(mp_sem_acquire(a.ready, T_LONG), 0);
    kill_and_reap(pid);
    double t0 = tu_now();
    TU_ASSERT_STATUS(mp_sem_acquire(a.sem, 0.2), MP_ETIMEDOUT);
    ASSERT_TOOK(t0, 0.2);
    /* Waiters killed in the middle of a wait leave nothing stuck. */
    pid_t waiters[3];
    for (int i = 0; i < 3; i++) {
        waiters[i] = tu_fork(wait_on_empty_sem, &a);
        assert_int_equal(mp_sem_acquire(a.ready, T_LONG), 0);
    }
    tu_sleep(DELTA);
    for (int i = 0; i < 3; i++)
        kill_and_reap(waiters[i]);
    assert_int_equal(mp_sem_release(a.sem), 0);
    assert_int_equal(mp_sem_get_value(a.sem), 1);
    assert_int_equal(mp_sem_acquire(a.sem, MP_NOWAIT), 0);
    struct sem_args later = {.sem = a.sem, .delay = 0.05, .count = 1};
    pid = tu_fork(release_after_delay, &later);
    assert_int_equal(mp_sem_acquire(a.sem, T_LONG), 0);
    assert_int_equal(tu_wait_child(pid, T_LONG), 0);
    mp_sem_free(a.sem);
    mp_sem_free(a.ready);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        TU_TEST(test_shm_block_is_shared_with_children_and_zeroed),
        TU_TEST(test_shm_child_never_reuses_inherited_memory),
        TU_TEST(test_lock_acquire_release_like_python),
        TU_TEST(test_lock_excludes_other_processes_until_released),
        TU_TEST(test_lock_release_from_another_thread_is_refused),
        TU_TEST(test_lock_dead_holder_gives_next_acquirer_eownerdead),
        TU_TEST(test_lock_waiter_is_woken_when_holder_dies),
        TU_TEST(test_lock_of_dead_holder_released_by_another_is_free),
        TU_TEST(test_free_in_child_leaves_parent_object_intact),
        TU_TEST(test_seed_100_processes_decrement_a_shared_count_under_a_lock),
        TU_TEST(test_without_the_lock_updates_are_lost),
        TU_TEST(test_lock_serialises_threads_of_several_processes),
        TU_TEST(test_rlock_is_recursive_like_python),
        TU_TEST(test_rlock_belongs_to_its_owner),
        TU_TEST(test_rlock_dead_holder_gives_eownerdead_at_level_one),
        TU_TEST(test_semaphore_counts_like_python),
        TU_TEST(test_semaphore_timeouts_like_python),
        TU_TEST(test_semaphore_release_in_one_process_wakes_another),
        TU_TEST(test_semaphore_dead_parties_do_not_block_past_timeouts),
    };
    tu_filter(argc, argv);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
