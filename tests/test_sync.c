/*
 * sync: Python's multiprocessing.synchronize and sharedctypes for forked
 * processes (_TestLock, _TestSemaphore, _TestCondition, _TestEvent,
 * _TestBarrier, _TestValue, _TestArray in Lib/test/_test_multiprocessing.py),
 * and what CPython lacks: a holder or waiter that dies never wedges the
 * others (gh-88304).
 *
 * Children are real processes (tu_fork); they report through their exit
 * status and shared memory, and the parent asserts. A test name filter may
 * be given as the first argument (cmocka glob), so one case can be run in a
 * loop: test_sync '*dead*'.
 */
#include "testutil.h"

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

#define T_LONG 20.0 /* a bound that only a hang can reach */
#define DELTA  0.1  /* Python's DELTA: time for a child to get to sleep */
#define SLACK  1.5  /* how late a timed wait may return on a loaded machine */

/* Assert a timed call returned after about `expected` seconds. */
#define ASSERT_TOOK(t0, expected)                                                                  \
    do {                                                                                           \
        double took_ = tu_now() - (t0);                                                            \
        if (took_ < (expected)-0.005 || took_ > (expected) + SLACK)                                \
            fail_msg("took %.3f s, expected about %.3f s", took_, (double)(expected));             \
    } while (0)

/* Counters shared with children: a fresh zeroed block per test. */
struct shared {
    atomic_int n[8];
    volatile long counter;
    pid_t pids[16];
    int order[16];
};

static struct shared *shared_new(void)
{
    void *p;
    assert_int_equal(mp_shm_alloc(&p, sizeof(struct shared)), 0);
    return p;
}

/* Wait for every child, asserting each exited 0. */
static void join_all(const pid_t *pids, int n)
{
    for (int i = 0; i < n; i++) {
        int st = tu_wait_child(pids[i], T_LONG);
        if (st != 0)
            fail_msg("child %d (pid %d) ended with %d", i, (int)pids[i], st);
    }
}

/* Poll until *v == want or the deadline; returns the last value seen. */
static int reaches(atomic_int *v, int want, double timeout)
{
    double end = tu_now() + timeout;
    int seen;
    while ((seen = atomic_load(v)) != want && tu_now() < end)
        tu_sleep(0.005);
    return seen;
}

static void kill_and_reap(pid_t pid)
{
    kill(pid, SIGKILL);
    assert_int_equal(tu_wait_child(pid, T_LONG), -SIGKILL);
}

/* How much slower than native this run is: time bounds are multiplied by
 * it. Memcheck runs some 20-50 times slower; it is recognised by its
 * preload library, which it puts in every process it runs. */
static double slowdown(void)
{
    return tu_slowdown(10.0, 1.0);
}

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

/* ---- Event ------------------------------------------------------------------------ */

static int set_after_delay(void *arg)
{
    mp_event *e = arg;
    tu_sleep(0.2);
    return mp_event_set(e);
}

static void test_event_like_python(void **state)
{
    (void)state;
    /* _TestEvent.test_event */
    mp_event *e;
    assert_int_equal(mp_event_new(&e), 0);
    assert_int_equal(mp_event_is_set(e), 0);
    double t0 = tu_now();
    TU_ASSERT_STATUS(mp_event_wait(e, 0.0), MP_ETIMEDOUT);
    ASSERT_TOOK(t0, 0.0);
    t0 = tu_now();
    TU_ASSERT_STATUS(mp_event_wait(e, 0.1), MP_ETIMEDOUT);
    ASSERT_TOOK(t0, 0.1);

    assert_int_equal(mp_event_set(e), 0);
    assert_int_equal(mp_event_is_set(e), 1);
    t0 = tu_now();
    assert_int_equal(mp_event_wait(e, MP_FOREVER), 0);
    assert_int_equal(mp_event_wait(e, 0.1), 0);
    ASSERT_TOOK(t0, 0.0);

    assert_int_equal(mp_event_clear(e), 0);
    assert_int_equal(mp_event_is_set(e), 0);
    pid_t pid = tu_fork(set_after_delay, e);
    t0 = tu_now();
    assert_int_equal(mp_event_wait(e, T_LONG), 0);
    ASSERT_TOOK(t0, 0.2);
    assert_int_equal(tu_wait_child(pid, T_LONG), 0);
    TU_ASSERT_STATUS(mp_event_wait(NULL, 0), -EINVAL);
    mp_event_free(e);
}

struct waiter_args {
    mp_event *ev;
    mp_cond *cond;
    mp_sem *sleeping;
    mp_sem *woken;
    double timeout;
    int id;
    struct shared *sh;
};

static int event_waiter(void *arg)
{
    struct waiter_args *w = arg;
    mp_sem_release(w->sleeping);
    int rc = mp_event_wait(w->ev, w->timeout);
    if (rc == 0)
        mp_sem_release(w->woken);
    return rc == 0 ? 0 : 1;
}

static void *event_waiter_thread(void *arg)
{
    return (void *)(intptr_t)event_waiter(arg);
}

static void test_event_set_wakes_every_waiting_process_and_thread(void **state)
{
    (void)state;
    struct waiter_args w = {.timeout = T_LONG};
    assert_int_equal(mp_event_new(&w.ev), 0);
    assert_int_equal(mp_sem_new(&w.sleeping, 0), 0);
    assert_int_equal(mp_sem_new(&w.woken, 0), 0);
    pid_t pids[4];
    for (int i = 0; i < 4; i++)
        pids[i] = tu_fork(event_waiter, &w);
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&th[i], NULL, event_waiter_thread, &w), 0);
    for (int i = 0; i < 6; i++)
        assert_int_equal(mp_sem_acquire(w.sleeping, T_LONG), 0);
    tu_sleep(DELTA);
    assert_int_equal(mp_sem_get_value(w.woken), 0);
    assert_int_equal(mp_event_set(w.ev), 0);
    for (int i = 0; i < 6; i++)
        assert_int_equal(mp_sem_acquire(w.woken, T_LONG), 0);
    join_all(pids, 4);
    for (int i = 0; i < 2; i++) {
        void *r;
        assert_int_equal(pthread_join(th[i], &r), 0);
        assert_null(r);
    }
    mp_event_free(w.ev);
    mp_sem_free(w.sleeping);
    mp_sem_free(w.woken);
}

static int event_wait_forever(void *arg)
{
    struct waiter_args *w = arg;
    mp_sem_release(w->sleeping);
    mp_event_wait(w->ev, MP_FOREVER); /* killed in here */
    return 1;
}

static void test_event_waiters_that_die_are_reclaimed(void **state)
{
    (void)state;
    /* More dead waiters than an Event has waiter slots: their slots are
     * reclaimed, and a living waiter is still woken. */
    struct waiter_args w = {.timeout = T_LONG};
    assert_int_equal(mp_event_new(&w.ev), 0);
    assert_int_equal(mp_sem_new(&w.sleeping, 0), 0);
    assert_int_equal(mp_sem_new(&w.woken, 0), 0);
    enum { BATCH = 40, DEAD = MP_SYNC_MAX_WAITERS + 2 * BATCH };
    for (int done = 0; done < DEAD; done += BATCH) {
        pid_t pids[BATCH];
        for (int i = 0; i < BATCH; i++)
            pids[i] = tu_fork(event_wait_forever, &w);
        for (int i = 0; i < BATCH; i++)
            assert_int_equal(mp_sem_acquire(w.sleeping, T_LONG), 0);
        tu_sleep(0.05);
        for (int i = 0; i < BATCH; i++)
            kill(pids[i], SIGKILL);
        for (int i = 0; i < BATCH; i++)
            assert_int_equal(tu_wait_child(pids[i], T_LONG), -SIGKILL);
    }
    pid_t live = tu_fork(event_waiter, &w);
    assert_int_equal(mp_sem_acquire(w.sleeping, T_LONG), 0);
    tu_sleep(DELTA);
    assert_int_equal(mp_event_set(w.ev), 0);
    assert_int_equal(mp_sem_acquire(w.woken, T_LONG), 0);
    assert_int_equal(tu_wait_child(live, T_LONG), 0);
    mp_event_free(w.ev);
    mp_sem_free(w.sleeping);
    mp_sem_free(w.woken);
}

/* ---- Condition -------------------------------------------------------------------- */

/* _TestCondition.f: acquire, say "sleeping", wait(timeout), say "woken". */
static int cond_f(void *arg)
{
    struct waiter_args *w = arg;
    if (mp_cond_acquire(w->cond, T_LONG) != 0)
        return 1;
    mp_sem_release(w->sleeping);
    int rc = mp_cond_wait(w->cond, w->timeout);
    if (w->sh)
        w->sh->order[atomic_fetch_add(&w->sh->n[1], 1)] = w->id;
    mp_sem_release(w->woken);
    mp_cond_release(w->cond);
    if (w->timeout >= 0 && w->timeout < 5)
        return rc == MP_ETIMEDOUT ? 0 : 2;
    return rc == 0 ? 0 : 3;
}

static void *cond_f_thread(void *arg)
{
    return (void *)(intptr_t)cond_f(arg);
}

struct cond_fixture {
    struct waiter_args w;
    pid_t pids[8];
    pthread_t threads[8];
    int npids, nthreads;
};

static void cond_fixture_init(struct cond_fixture *f, double timeout)
{
    memset(f, 0, sizeof *f);
    f->w.timeout = timeout;
    assert_int_equal(mp_cond_new(&f->w.cond, NULL), 0);
    assert_int_equal(mp_sem_new(&f->w.sleeping, 0), 0);
    assert_int_equal(mp_sem_new(&f->w.woken, 0), 0);
}

/* Start `procs` processes and `threads` threads running cond_f, and wait
 * until all of them are inside wait(). */
static void start_sleepers(struct cond_fixture *f, int procs, int threads)
{
    for (int i = 0; i < procs; i++)
        f->pids[f->npids++] = tu_fork(cond_f, &f->w);
    for (int i = 0; i < threads; i++)
        assert_int_equal(pthread_create(&f->threads[f->nthreads++], NULL, cond_f_thread, &f->w), 0);
    for (int i = 0; i < procs + threads; i++)
        assert_int_equal(mp_sem_acquire(f->w.sleeping, T_LONG), 0);
    /* They said so holding the lock; once we can take it, they all sleep. */
    assert_int_equal(mp_cond_acquire(f->w.cond, T_LONG), 0);
    assert_int_equal(mp_cond_release(f->w.cond), 0);
}

static void join_sleepers(struct cond_fixture *f)
{
    join_all(f->pids, f->npids);
    for (int i = 0; i < f->nthreads; i++) {
        void *r;
        assert_int_equal(pthread_join(f->threads[i], &r), 0);
        assert_null(r);
    }
    f->npids = f->nthreads = 0;
}

static void cond_fixture_free(struct cond_fixture *f)
{
    mp_cond_free(f->w.cond);
    mp_sem_free(f->w.sleeping);
    mp_sem_free(f->w.woken);
}

static int notify(mp_cond *c, unsigned n)
{
    assert_int_equal(mp_cond_acquire(c, T_LONG), 0);
    int rc = mp_cond_notify(c, n);
    assert_int_equal(mp_cond_release(c), 0);
    return rc;
}

static void test_cond_notify_wakes_one_at_a_time(void **state)
{
    (void)state;
    /* _TestCondition.test_notify: a process and a thread. */
    struct cond_fixture f;
    cond_fixture_init(&f, T_LONG);
    start_sleepers(&f, 1, 1);
    tu_sleep(DELTA);
    assert_int_equal(mp_sem_get_value(f.w.woken), 0);
    assert_int_equal(notify(f.w.cond, 1), 1);
    assert_int_equal(mp_sem_acquire(f.w.woken, T_LONG), 0);
    tu_sleep(DELTA);
    assert_int_equal(mp_sem_get_value(f.w.woken), 0);
    assert_int_equal(notify(f.w.cond, 1), 1);
    assert_int_equal(mp_sem_acquire(f.w.woken, T_LONG), 0);
    join_sleepers(&f);
    /* Nobody left: notify wakes no one. */
    assert_int_equal(notify(f.w.cond, 1), 0);
    cond_fixture_free(&f);
}

static void test_cond_notify_all_after_timeouts(void **state)
{
    (void)state;
    /* _TestCondition.test_notify_all: first six that time out, then six
     * that notify_all wakes. */
    struct cond_fixture f;
    cond_fixture_init(&f, 0.1);
    start_sleepers(&f, 3, 3);
    for (int i = 0; i < 6; i++)
        assert_int_equal(mp_sem_acquire(f.w.woken, T_LONG), 0);
    join_sleepers(&f);
    assert_int_equal(mp_sem_get_value(f.w.woken), 0);
    assert_int_equal(notify(f.w.cond, UINT32_MAX), 0); /* nobody waits now */

    f.w.timeout = T_LONG;
    start_sleepers(&f, 3, 3);
    tu_sleep(DELTA);
    assert_int_equal(mp_sem_get_value(f.w.woken), 0);
    assert_int_equal(mp_cond_acquire(f.w.cond, T_LONG), 0);
    assert_int_equal(mp_cond_notify_all(f.w.cond), 6);
    assert_int_equal(mp_cond_release(f.w.cond), 0);
    for (int i = 0; i < 6; i++)
        assert_int_equal(mp_sem_acquire(f.w.woken, T_LONG), 0);
    join_sleepers(&f);
    cond_fixture_free(&f);
}

static void test_cond_notify_n_wakes_exactly_n(void **state)
{
    (void)state;
    /* _TestCondition.test_notify_n */
    struct cond_fixture f;
    cond_fixture_init(&f, T_LONG);
    start_sleepers(&f, 3, 3);
    tu_sleep(DELTA);
    assert_int_equal(mp_sem_get_value(f.w.woken), 0);
    assert_int_equal(notify(f.w.cond, 2), 2);
    for (int i = 0; i < 2; i++)
        assert_int_equal(mp_sem_acquire(f.w.woken, T_LONG), 0);
    tu_sleep(DELTA);
    assert_int_equal(mp_sem_get_value(f.w.woken), 0); /* exactly two */
    assert_int_equal(notify(f.w.cond, 4), 4);
    for (int i = 0; i < 4; i++)
        assert_int_equal(mp_sem_acquire(f.w.woken, T_LONG), 0);
    assert_int_equal(notify(f.w.cond, 3), 0);
    assert_int_equal(notify(f.w.cond, 0), 0);
    join_sleepers(&f);
    assert_int_equal(mp_sem_get_value(f.w.woken), 0);
    cond_fixture_free(&f);
}

static void test_cond_notify_wakes_the_oldest_waiter_first(void **state)
{
    (void)state;
    struct cond_fixture f;
    cond_fixture_init(&f, T_LONG);
    f.w.sh = shared_new();
    for (int i = 0; i < 3; i++) {
        f.w.id = i;
        start_sleepers(&f, 1, 0); /* one at a time: arrival order is i */
    }
    for (int i = 0; i < 3; i++) {
        assert_int_equal(notify(f.w.cond, 1), 1);
        assert_int_equal(mp_sem_acquire(f.w.woken, T_LONG), 0);
        assert_int_equal(f.w.sh->order[i], i);
    }
    join_sleepers(&f);
    mp_shm_free(f.w.sh);
    cond_fixture_free(&f);
}

static void test_cond_wait_timeout_and_result(void **state)
{
    (void)state;
    /* _TestCondition.test_timeout and test_wait_result */
    mp_cond *c;
    assert_int_equal(mp_cond_new(&c, NULL), 0);
    assert_int_equal(mp_cond_acquire(c, T_LONG), 0);
    double t0 = tu_now();
    TU_ASSERT_STATUS(mp_cond_wait(c, 0), MP_ETIMEDOUT);
    ASSERT_TOOK(t0, 0.0);
    t0 = tu_now();
    TU_ASSERT_STATUS(mp_cond_wait(c, 0.1), MP_ETIMEDOUT);
    ASSERT_TOOK(t0, 0.1);
    assert_int_equal(mp_cond_release(c), 0);
    mp_cond_free(c);
}

static int notify_once(void *arg)
{
    mp_cond *c = arg;
    if (mp_cond_acquire(c, T_LONG) != 0)
        return 1;
    int n = mp_cond_notify(c, 1);
    mp_cond_release(c);
    return n == 1 ? 0 : 2;
}

static void test_cond_wait_returns_0_when_notified_by_a_process(void **state)
{
    (void)state;
    mp_cond *c;
    assert_int_equal(mp_cond_new(&c, NULL), 0);
    assert_int_equal(mp_cond_acquire(c, T_LONG), 0);
    pid_t pid = tu_fork(notify_once, c);
    /* The child can only notify once we released the lock by waiting. */
    assert_int_equal(mp_cond_wait(c, T_LONG), 0);
    assert_int_equal(mp_cond_release(c), 0);
    assert_int_equal(tu_wait_child(pid, T_LONG), 0);
    mp_cond_free(c);
}

static void test_cond_needs_the_lock_held(void **state)
{
    (void)state;
    mp_lock *l;
    mp_cond *c, *cr;
    assert_int_equal(mp_lock_new(&l), 0);
    assert_int_equal(mp_cond_new(&c, l), 0);
    assert_int_equal(mp_cond_new(&cr, NULL), 0);
    /* Python's AssertionError: "must acquire() condition before using
     * wait()" and "lock is not owned". */
    TU_ASSERT_STATUS(mp_cond_wait(c, 0.1), MP_ESTATE);
    TU_ASSERT_STATUS(mp_cond_notify(c, 1), MP_ESTATE);
    TU_ASSERT_STATUS(mp_cond_wait(cr, 0.1), MP_ESTATE);
    TU_ASSERT_STATUS(mp_cond_notify_all(cr), MP_ESTATE);
    /* Over a plain Lock it works once held. */
    assert_int_equal(mp_cond_acquire(c, T_LONG), 0);
    TU_ASSERT_STATUS(mp_cond_wait(c, 0.05), MP_ETIMEDOUT);
    assert_int_equal(mp_cond_notify(c, 1), 0);
    TU_ASSERT_STATUS(mp_lock_acquire(l, MP_NOWAIT), MP_ETIMEDOUT); /* still held */
    assert_int_equal(mp_cond_release(c), 0);
    TU_ASSERT_STATUS(mp_cond_release(c), MP_EVALUE);
    mp_cond_free(c);
    mp_cond_free(cr);
    TU_ASSERT_STATUS(mp_cond_new_rlock(&cr, NULL), -EINVAL);
    assert_null(cr);
    mp_lock_free(l);
    TU_ASSERT_STATUS(mp_cond_wait(NULL, 0), -EINVAL);
    TU_ASSERT_STATUS(mp_cond_notify(NULL, 1), -EINVAL);
}

struct rlevel_args {
    mp_cond *cond;
    mp_rlock *rlock;
    mp_sem *got;
};

static int take_rlock_then_notify(void *arg)
{
    struct rlevel_args *a = arg;
    /* Possible only if wait() released every level. */
    if (mp_rlock_acquire(a->rlock, T_LONG) != 0)
        return 1;
    mp_sem_release(a->got);
    int n = mp_cond_notify(a->cond, 1);
    mp_rlock_release(a->rlock);
    return n == 1 ? 0 : 2;
}

static void test_cond_wait_releases_every_rlock_level_and_restores_them(void **state)
{
    (void)state;
    struct rlevel_args a;
    assert_int_equal(mp_rlock_new(&a.rlock), 0);
    assert_int_equal(mp_cond_new_rlock(&a.cond, a.rlock), 0);
    assert_int_equal(mp_sem_new(&a.got, 0), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(mp_rlock_acquire(a.rlock, T_LONG), 0);
    pid_t pid = tu_fork(take_rlock_then_notify, &a);
    assert_int_equal(mp_cond_wait(a.cond, T_LONG), 0);
    assert_int_equal(mp_sem_acquire(a.got, MP_NOWAIT), 0);
    assert_int_equal(mp_rlock_count(a.rlock), 3);
    for (int i = 0; i < 3; i++)
        assert_int_equal(mp_rlock_release(a.rlock), 0);
    TU_ASSERT_STATUS(mp_rlock_release(a.rlock), MP_ESTATE);
    assert_int_equal(tu_wait_child(pid, T_LONG), 0);
    mp_cond_free(a.cond);
    mp_rlock_free(a.rlock);
    mp_sem_free(a.got);
}

struct waitfor_args {
    mp_cond *cond;
    mp_value *state;
    mp_sem *started;
};

static bool state_is(void *arg)
{
    int64_t *want_and_value = arg;
    return want_and_value[0] == *(volatile int *)(intptr_t)want_and_value[1];
}

/* _TestCondition._test_waitfor_f */
static int waitfor_child(void *arg)
{
    struct waitfor_args *a = arg;
    int64_t q[2] = {4, (int64_t)(intptr_t)mp_value_ptr(a->state)};
    if (mp_cond_acquire(a->cond, T_LONG) != 0)
        return 1;
    mp_value_set_int(a->state, 0);
    mp_cond_notify(a->cond, 1);
    int rc = mp_cond_wait_for(a->cond, state_is, q, T_LONG);
    int64_t v;
    mp_value_get_int(a->state, &v);
    mp_cond_release(a->cond);
    return rc == 0 && v == 4 ? 0 : 2;
}

static void test_cond_wait_for_predicate_across_processes(void **state)
{
    (void)state;
    struct waitfor_args a;
    int init = -1;
    assert_int_equal(mp_cond_new(&a.cond, NULL), 0);
    assert_int_equal(mp_value_new(&a.state, 'i', &init, true), 0);
    pid_t pid = tu_fork(waitfor_child, &a);
    int64_t q[2] = {0, (int64_t)(intptr_t)mp_value_ptr(a.state)};
    assert_int_equal(mp_cond_acquire(a.cond, T_LONG), 0);
    assert_int_equal(mp_cond_wait_for(a.cond, state_is, q, T_LONG), 0);
    assert_int_equal(mp_cond_release(a.cond), 0);
    for (int i = 0; i < 4; i++) {
        tu_sleep(0.01);
        assert_int_equal(mp_cond_acquire(a.cond, T_LONG), 0);
        int64_t v;
        assert_int_equal(mp_value_get_int(a.state, &v), 0);
        assert_int_equal(mp_value_set_int(a.state, v + 1), 0);
        mp_cond_notify(a.cond, 1);
        assert_int_equal(mp_cond_release(a.cond), 0);
    }
    assert_int_equal(tu_wait_child(pid, T_LONG), 0);
    mp_cond_free(a.cond);
    mp_value_free(a.state);
}

/* _TestCondition._test_waitfor_timeout_f */
static int waitfor_timeout_child(void *arg)
{
    struct waitfor_args *a = arg;
    int64_t q[2] = {4, (int64_t)(intptr_t)mp_value_ptr(a->state)};
    mp_sem_release(a->started);
    if (mp_cond_acquire(a->cond, T_LONG) != 0)
        return 1;
    double t0 = tu_now();
    int rc = mp_cond_wait_for(a->cond, state_is, q, 0.2);
    double dt = tu_now() - t0;
    mp_cond_release(a->cond);
    return rc == MP_ETIMEDOUT && dt >= 0.195 ? 0 : 2;
}

static void test_cond_wait_for_times_out_when_predicate_stays_false(void **state)
{
    (void)state;
    struct waitfor_args a;
    assert_int_equal(mp_cond_new(&a.cond, NULL), 0);
    assert_int_equal(mp_value_new(&a.state, 'i', NULL, true), 0);
    assert_int_equal(mp_sem_new(&a.started, 0), 0);
    pid_t pid = tu_fork(waitfor_timeout_child, &a);
    assert_int_equal(mp_sem_acquire(a.started, T_LONG), 0);
    for (int i = 0; i < 3; i++) { /* state never reaches 4 */
        tu_sleep(0.01);
        assert_int_equal(mp_cond_acquire(a.cond, T_LONG), 0);
        int64_t v;
        mp_value_get_int(a.state, &v);
        mp_value_set_int(a.state, v + 1);
        mp_cond_notify(a.cond, 1);
        assert_int_equal(mp_cond_release(a.cond), 0);
    }
    assert_int_equal(tu_wait_child(pid, T_LONG), 0);
    mp_cond_free(a.cond);
    mp_value_free(a.state);
    mp_sem_free(a.started);
}

static void test_cond_dead_waiters_are_not_counted_as_woken(void **state)
{
    (void)state;
    struct cond_fixture f;
    cond_fixture_init(&f, T_LONG);
    start_sleepers(&f, 4, 0);
    /* Two of the four die in their wait. */
    kill_and_reap(f.pids[0]);
    kill_and_reap(f.pids[1]);
    f.pids[0] = f.pids[2];
    f.pids[1] = f.pids[3];
    f.npids = 2;
    /* notify(3) finds only two living waiters and says so; CPython's
     * notify would wait forever for the dead to confirm. */
    assert_int_equal(notify(f.w.cond, 3), 2);
    for (int i = 0; i < 2; i++)
        assert_int_equal(mp_sem_acquire(f.w.woken, T_LONG), 0);
    join_sleepers(&f);
    /* Still exact afterwards. */
    start_sleepers(&f, 2, 0);
    assert_int_equal(notify(f.w.cond, 1), 1);
    assert_int_equal(mp_sem_acquire(f.w.woken, T_LONG), 0);
    tu_sleep(DELTA);
    assert_int_equal(mp_sem_get_value(f.w.woken), 0);
    assert_int_equal(notify(f.w.cond, 1), 1);
    join_sleepers(&f);
    cond_fixture_free(&f);
}

struct lock_holder_death {
    mp_cond *cond;
    mp_lock *lock;
    mp_sem *ready;
    pid_t victim;
};

static int notify_then_die_holding_lock(void *arg)
{
    struct lock_holder_death *a = arg;
    if (mp_lock_acquire(a->lock, T_LONG) != 0)
        return 1;
    mp_cond_notify(a->cond, 1);
    mp_sem_release(a->ready);
    for (;;)
        pause(); /* killed holding the condition's lock */
}

static int kill_when_ready(void *arg)
{
    struct lock_holder_death *a = arg;
    if (mp_sem_acquire(a->ready, T_LONG) != 0)
        return 1;
    tu_sleep(0.05);
    return kill(a->victim, SIGKILL) == 0 ? 0 : 2;
}

static void test_cond_wait_reports_a_dead_lock_holder(void **state)
{
    (void)state;
    struct lock_holder_death a;
    assert_int_equal(mp_lock_new(&a.lock), 0);
    assert_int_equal(mp_cond_new(&a.cond, a.lock), 0);
    assert_int_equal(mp_sem_new(&a.ready, 0), 0);
    assert_int_equal(mp_cond_acquire(a.cond, T_LONG), 0);
    a.victim = tu_fork(notify_then_die_holding_lock, &a);
    pid_t killer = tu_fork(kill_when_ready, &a);
    /* Notified, but the lock to take back is held by a process that is
     * then killed: the wait ends with the lock ours, and says so. */
    TU_ASSERT_STATUS(mp_cond_wait(a.cond, T_LONG), MP_EOWNERDEAD);
    TU_ASSERT_STATUS(mp_lock_acquire(a.lock, MP_NOWAIT), MP_ETIMEDOUT); /* ours */
    assert_int_equal(mp_cond_release(a.cond), 0);
    assert_int_equal(tu_wait_child(killer, T_LONG), 0);
    assert_int_equal(tu_wait_child(a.victim, T_LONG), -SIGKILL);
    mp_cond_free(a.cond);
    mp_lock_free(a.lock);
    mp_sem_free(a.ready);
}

/* ---- Barrier ---------------------------------------------------------------------- */

#define NPARTIES 5

struct barrier_args {
    mp_barrier *b;
    mp_barrier *b2;
    struct shared *sh;
    int passes;
    mp_lock *lock;
    mp_conn *conn;
};

/* _TestBarrier.multipass: every party appends to results[0], waits, appends
 * to results[1], waits; each count is checked at the right moments. */
static int multipass(void *arg)
{
    struct barrier_args *a = arg;
    for (int i = 0; i < a->passes; i++) {
        atomic_fetch_add(&a->sh->n[0], 1);
        if (atomic_load(&a->sh->n[1]) != i * NPARTIES)
            return 1;
        if (mp_barrier_wait(a->b) < 0)
            return 2;
        atomic_fetch_add(&a->sh->n[1], 1);
        if (atomic_load(&a->sh->n[0]) != (i + 1) * NPARTIES)
            return 3;
        if (mp_barrier_wait(a->b) < 0)
            return 4;
    }
    if (mp_barrier_n_waiting(a->b) != 0)
        return 5;
    return mp_barrier_broken(a->b) == 0 ? 0 : 6;
}

/* Run fn in NPARTIES-1 children and in this process, then join. */
static void run_parties(int (*fn)(void *), void *arg)
{
    pid_t pids[NPARTIES - 1];
    for (int i = 0; i < NPARTIES - 1; i++)
        pids[i] = tu_fork(fn, arg);
    int mine = fn(arg);
    join_all(pids, NPARTIES - 1);
    assert_int_equal(mine, 0);
}

static void test_barrier_passes_processes_in_lockstep(void **state)
{
    (void)state;
    /* _TestBarrier.test_barrier and test_barrier_10 */
    struct barrier_args a = {.passes = 10};
    a.sh = shared_new();
    assert_int_equal(mp_barrier_new(&a.b, NPARTIES, NULL, NULL, 30.0), 0);
    assert_int_equal(mp_barrier_parties(a.b), NPARTIES);
    run_parties(multipass, &a);
    assert_int_equal(atomic_load(&a.sh->n[0]), 10 * NPARTIES);
    assert_int_equal(atomic_load(&a.sh->n[1]), 10 * NPARTIES);
    mp_barrier_free(a.b);
    mp_shm_free(a.sh);
}

static int record_index(void *arg)
{
    struct barrier_args *a = arg;
    int idx = mp_barrier_wait(a->b);
    if (idx < 0 || idx >= NPARTIES)
        return 1;
    atomic_fetch_add(&a->sh->n[idx], 1);
    return 0;
}

static void test_barrier_wait_returns_each_index_once(void **state)
{
    (void)state;
    /* _TestBarrier.test_wait_return: exactly one party gets 0 - and here
     * each index 0..parties-1 comes out exactly once. */
    struct barrier_args a = {0};
    a.sh = shared_new();
    assert_int_equal(mp_barrier_new(&a.b, NPARTIES, NULL, NULL, 30.0), 0);
    run_parties(record_index, &a);
    for (int i = 0; i < NPARTIES; i++)
        assert_int_equal(atomic_load(&a.sh->n[i]), 1);
    mp_barrier_free(a.b);
    mp_shm_free(a.sh);
}

static int count_action(void *arg)
{
    struct shared *sh = arg;
    atomic_fetch_add(&sh->n[0], 1);
    sh->pids[atomic_fetch_add(&sh->n[1], 1) % 16] = getpid();
    return 0;
}

static int action_party(void *arg)
{
    struct barrier_args *a = arg;
    for (int i = 0; i < 3; i++) {
        if (mp_barrier_wait(a->b) < 0)
            return 1;
        /* Every party leaves after the action of this cycle ran once. */
        if (atomic_load(&a->sh->n[0]) != i + 1)
            return 2;
        if (mp_barrier_wait(a->b2) < 0)
            return 3;
    }
    return 0;
}

static void test_barrier_action_runs_once_per_cycle_in_one_party(void **state)
{
    (void)state;
    /* _TestBarrier.test_action, over three cycles. */
    struct barrier_args a = {0};
    a.sh = shared_new();
    assert_int_equal(mp_barrier_new(&a.b, NPARTIES, count_action, a.sh, 30.0), 0);
    assert_int_equal(mp_barrier_new(&a.b2, NPARTIES, NULL, NULL, 30.0), 0);
    pid_t pids[NPARTIES - 1];
    for (int i = 0; i < NPARTIES - 1; i++)
        pids[i] = tu_fork(action_party, &a);
    assert_int_equal(action_party(&a), 0);
    join_all(pids, NPARTIES - 1);
    assert_int_equal(atomic_load(&a.sh->n[0]), 3);
    for (int c = 0; c < 3; c++) {
        bool is_party = a.sh->pids[c] == getpid();
        for (int i = 0; i < NPARTIES - 1; i++)
            is_party |= a.sh->pids[c] == pids[i];
        assert_true(is_party);
    }
    mp_barrier_free(a.b);
    mp_barrier_free(a.b2);
    mp_shm_free(a.sh);
}

static int failing_action(void *arg)
{
    (void)arg;
    return -1;
}

static int expect_broken(void *arg)
{
    struct barrier_args *a = arg;
    return mp_barrier_wait(a->b) == MP_EBROKEN ? 0 : 1;
}

static void test_barrier_action_failure_breaks_it_for_all(void **state)
{
    (void)state;
    struct barrier_args a = {0};
    assert_int_equal(mp_barrier_new(&a.b, NPARTIES, failing_action, NULL, 30.0), 0);
    run_parties(expect_broken, &a);
    assert_int_equal(mp_barrier_broken(a.b), 1);
    /* Broken until reset; then usable again. */
    TU_ASSERT_STATUS(mp_barrier_wait_timeout(a.b, 1.0), MP_EBROKEN);
    assert_int_equal(mp_barrier_reset(a.b), 0);
    assert_int_equal(mp_barrier_broken(a.b), 0);
    mp_barrier_free(a.b);
}

/* _TestBarrier._test_abort_f */
static int abort_party(void *arg)
{
    struct barrier_args *a = arg;
    int i = mp_barrier_wait(a->b);
    if (i < 0)
        return 1;
    if (i == NPARTIES / 2) {
        mp_barrier_abort(a->b); /* "raise RuntimeError" */
        return 0;
    }
    int rc = mp_barrier_wait(a->b);
    if (rc == MP_EBROKEN)
        atomic_fetch_add(&a->sh->n[1], 1);
    else if (rc >= 0)
        atomic_fetch_add(&a->sh->n[0], 1);
    return 0;
}

static void test_barrier_abort_breaks_it(void **state)
{
    (void)state;
    struct barrier_args a = {0};
    a.sh = shared_new();
    assert_int_equal(mp_barrier_new(&a.b, NPARTIES, NULL, NULL, 30.0), 0);
    run_parties(abort_party, &a);
    assert_int_equal(atomic_load(&a.sh->n[0]), 0);
    assert_int_equal(atomic_load(&a.sh->n[1]), NPARTIES - 1);
    assert_int_equal(mp_barrier_broken(a.b), 1);
    mp_barrier_free(a.b);
    mp_shm_free(a.sh);
}

/* _TestBarrier._test_reset_f */
static int reset_party(void *arg)
{
    struct barrier_args *a = arg;
    int i = mp_barrier_wait(a->b);
    if (i < 0)
        return 1;
    if (i == NPARTIES / 2) {
        double end = tu_now() + T_LONG;
        while (mp_barrier_n_waiting(a->b) < NPARTIES - 1 && tu_now() < end)
            tu_sleep(0.001);
        mp_barrier_reset(a->b);
    } else {
        int rc = mp_barrier_wait(a->b);
        if (rc == MP_EBROKEN)
            atomic_fetch_add(&a->sh->n[1], 1);
        else if (rc >= 0)
            atomic_fetch_add(&a->sh->n[0], 1);
    }
    if (mp_barrier_wait(a->b) < 0)
        return 2;
    atomic_fetch_add(&a->sh->n[2], 1);
    return 0;
}

static void test_barrier_reset_frees_the_waiters(void **state)
{
    (void)state;
    struct barrier_args a = {0};
    a.sh = shared_new();
    assert_int_equal(mp_barrier_new(&a.b, NPARTIES, NULL, NULL, 30.0), 0);
    run_parties(reset_party, &a);
    assert_int_equal(atomic_load(&a.sh->n[0]), 0);
    assert_int_equal(atomic_load(&a.sh->n[1]), NPARTIES - 1);
    assert_int_equal(atomic_load(&a.sh->n[2]), NPARTIES);
    mp_barrier_free(a.b);
    mp_shm_free(a.sh);
}

/* _TestBarrier._test_abort_and_reset_f */
static int abort_and_reset_party(void *arg)
{
    struct barrier_args *a = arg;
    int i = mp_barrier_wait(a->b);
    if (i < 0)
        return 1;
    if (i == NPARTIES / 2) {
        mp_barrier_abort(a->b);
    } else {
        int rc = mp_barrier_wait(a->b);
        if (rc == MP_EBROKEN)
            atomic_fetch_add(&a->sh->n[1], 1);
        else if (rc >= 0)
            atomic_fetch_add(&a->sh->n[0], 1);
    }
    if (mp_barrier_wait(a->b2) == NPARTIES / 2)
        mp_barrier_reset(a->b);
    if (mp_barrier_wait(a->b2) < 0)
        return 2;
    if (mp_barrier_wait(a->b) < 0)
        return 3;
    atomic_fetch_add(&a->sh->n[2], 1);
    return 0;
}

static void test_barrier_can_be_reset_after_abort(void **state)
{
    (void)state;
    struct barrier_args a = {0};
    a.sh = shared_new();
    assert_int_equal(mp_barrier_new(&a.b, NPARTIES, NULL, NULL, 30.0), 0);
    assert_int_equal(mp_barrier_new(&a.b2, NPARTIES, NULL, NULL, 30.0), 0);
    run_parties(abort_and_reset_party, &a);
    assert_int_equal(atomic_load(&a.sh->n[0]), 0);
    assert_int_equal(atomic_load(&a.sh->n[1]), NPARTIES - 1);
    assert_int_equal(atomic_load(&a.sh->n[2]), NPARTIES);
    mp_barrier_free(a.b);
    mp_barrier_free(a.b2);
    mp_shm_free(a.sh);
}

/* _TestBarrier._test_timeout_f (timeout given) and _test_default_timeout_f
 * (the barrier's own): one party is late, everyone gets MP_EBROKEN. */
static int late_party(void *arg)
{
    struct barrier_args *a = arg;
    int i = mp_barrier_wait_timeout(a->b, 30.0);
    if (i < 0)
        return 1;
    if (i == NPARTIES / 2)
        tu_sleep(0.6);
    int rc = a->passes ? mp_barrier_wait(a->b) : mp_barrier_wait_timeout(a->b, 0.3);
    if (rc == MP_EBROKEN)
        atomic_fetch_add(&a->sh->n[0], 1);
    return 0;
}

static void test_barrier_timeout_breaks_it_for_everyone(void **state)
{
    (void)state;
    for (int use_default = 0; use_default <= 1; use_default++) {
        struct barrier_args a = {.passes = use_default};
        a.sh = shared_new();
        assert_int_equal(mp_barrier_new(&a.b, NPARTIES, NULL, NULL, use_default ? 0.3 : 30.0), 0);
        run_parties(late_party, &a);
        assert_int_equal(atomic_load(&a.sh->n[0]), NPARTIES);
        mp_barrier_free(a.b);
        mp_shm_free(a.sh);
    }
}

static void test_barrier_single_party_and_argument_errors(void **state)
{
    (void)state;
    mp_barrier *b;
    assert_int_equal(mp_barrier_new(&b, 1, NULL, NULL, MP_FOREVER), 0);
    assert_int_equal(mp_barrier_wait(b), 0);
    assert_int_equal(mp_barrier_wait(b), 0);
    assert_int_equal(mp_barrier_n_waiting(b), 0);
    mp_barrier_free(b);
    /* Python's ValueError("parties must be > 0"). */
    TU_ASSERT_STATUS(mp_barrier_new(&b, 0, NULL, NULL, MP_FOREVER), MP_EVALUE);
    assert_null(b);
    TU_ASSERT_STATUS(mp_barrier_new(NULL, 1, NULL, NULL, MP_FOREVER), -EINVAL);
    TU_ASSERT_STATUS(mp_barrier_wait(NULL), -EINVAL);
    TU_ASSERT_STATUS(mp_barrier_broken(NULL), -EINVAL);
    mp_barrier_free(NULL);
}

/* _TestBarrier._test_thousand_f: wait, then send the cycle number on a
 * shared pipe end under a lock. */
static int thousand_party(void *arg)
{
    struct barrier_args *a = arg;
    for (int i = 0; i < a->passes; i++) {
        if (mp_barrier_wait(a->b) < 0)
            return 1;
        if (mp_lock_acquire(a->lock, T_LONG) != 0)
            return 2;
        int rc = mp_conn_send_bytes(a->conn, &i, sizeof i);
        mp_lock_release(a->lock);
        if (rc != 0)
            return 3;
    }
    return 0;
}

static void test_barrier_thousand_cycles_with_five_processes(void **state)
{
    (void)state;
    enum { PASSES = 1000 };
    struct barrier_args a = {.passes = PASSES};
    mp_conn *reader;
    assert_int_equal(mp_pipe(&reader, &a.conn, false), 0);
    assert_int_equal(mp_lock_new(&a.lock), 0);
    assert_int_equal(mp_barrier_new(&a.b, NPARTIES, NULL, NULL, 30.0), 0);
    pid_t pids[NPARTIES];
    for (int j = 0; j < NPARTIES; j++)
        pids[j] = tu_fork(thousand_party, &a);
    mp_conn_free(a.conn);
    for (int i = 0; i < PASSES; i++) {
        for (int j = 0; j < NPARTIES; j++) {
            int got = -1;
            assert_int_equal(mp_conn_recv_bytes_into(reader, &got, sizeof got, 0, NULL, T_LONG),
                             sizeof got);
            if (got != i)
                fail_msg("cycle %d: a party sent %d", i, got);
        }
    }
    join_all(pids, NPARTIES);
    mp_conn_free(reader);
    mp_lock_free(a.lock);
    mp_barrier_free(a.b);
}

static int wait_forever_at_barrier(void *arg)
{
    struct barrier_args *a = arg;
    atomic_fetch_add(&a->sh->n[0], 1);
    mp_barrier_wait_timeout(a->b, MP_FOREVER); /* killed here */
    return 1;
}

static int wait_expect_broken_no_timeout(void *arg)
{
    struct barrier_args *a = arg;
    return mp_barrier_wait_timeout(a->b, MP_FOREVER) == MP_EBROKEN ? 0 : 1;
}

static void test_barrier_party_that_dies_breaks_it_instead_of_a_hang(void **state)
{
    (void)state;
    struct barrier_args a = {0};
    a.sh = shared_new();
    assert_int_equal(mp_barrier_new(&a.b, 3, NULL, NULL, MP_FOREVER), 0);
    pid_t doomed = tu_fork(wait_forever_at_barrier, &a);
    pid_t other = tu_fork(wait_expect_broken_no_timeout, &a);
    assert_int_equal(reaches(&a.sh->n[0], 1, T_LONG), 1);
    double end = tu_now() + T_LONG;
    while (mp_barrier_n_waiting(a.b) < 2 && tu_now() < end)
        tu_sleep(0.005);
    assert_int_equal(mp_barrier_n_waiting(a.b), 2);
    kill_and_reap(doomed);
    /* The third party arrives: with a dead party counted in, releasing
     * would be a lie, so the barrier is broken - by the waiter's own check
     * for dead parties if that came first, or by this arrival. */
    double t0 = tu_now();
    TU_ASSERT_STATUS(mp_barrier_wait_timeout(a.b, MP_FOREVER), MP_EBROKEN);
    assert_true(tu_now() - t0 < 5.0);
    assert_int_equal(tu_wait_child(other, T_LONG), 0);
    assert_int_equal(mp_barrier_broken(a.b), 1);
    assert_int_equal(mp_barrier_reset(a.b), 0);
    /* Usable again by three living parties. */
    pid_t p1 = tu_fork(record_index, &(struct barrier_args){.b = a.b, .sh = a.sh});
    pid_t p2 = tu_fork(record_index, &(struct barrier_args){.b = a.b, .sh = a.sh});
    int idx = mp_barrier_wait_timeout(a.b, T_LONG);
    assert_true(idx >= 0 && idx < 3);
    assert_int_equal(tu_wait_child(p1, T_LONG), 0);
    assert_int_equal(tu_wait_child(p2, T_LONG), 0);
    mp_barrier_free(a.b);
    mp_shm_free(a.sh);
}

/* What a party of the test below saw: its result and when it returned. */
struct death_watch {
    atomic_int result[8];
    _Atomic double returned_at[8];
};

struct death_args {
    mp_barrier *b;
    struct death_watch *w;
    int slot;
};

static int wait_forever_and_record(void *arg)
{
    struct death_args *a = arg;
    int rc = mp_barrier_wait_timeout(a->b, MP_FOREVER);
    atomic_store(&a->w->returned_at[a->slot], tu_now());
    atomic_store(&a->w->result[a->slot], rc);
    return 0;
}

static int wait_forever_to_be_killed(void *arg)
{
    struct death_args *a = arg;
    mp_barrier_wait_timeout(a->b, MP_FOREVER); /* killed here */
    return 1;
}

static void
test_barrier_waiters_with_no_timeout_get_ebroken_within_a_second_of_a_death(void **state)
{
    (void)state;
    /* sync.h: a waiting party that dies breaks the barrier for the others.
     * A death wakes nobody, so the waiters must notice it themselves, with
     * MP_FOREVER too, and not only when a later party arrives (which here
     * never happens: 5 parties, 4 arrive). */
    enum { LIVING = 3 };
    double bound = 1.0 * slowdown();
    struct death_watch *w;
    assert_int_equal(mp_shm_alloc((void **)&w, sizeof *w), 0);
    mp_barrier *b;
    assert_int_equal(mp_barrier_new(&b, LIVING + 2, NULL, NULL, MP_FOREVER), 0);
    struct death_args args[LIVING + 1];
    pid_t pids[LIVING];
    for (int i = 0; i < LIVING; i++) {
        args[i] = (struct death_args){.b = b, .w = w, .slot = i};
        atomic_store(&w->result[i], 1); /* not returned */
        pids[i] = tu_fork(wait_forever_and_record, &args[i]);
    }
    args[LIVING] = (struct death_args){.b = b, .w = w, .slot = LIVING};
    pid_t doomed = tu_fork(wait_forever_to_be_killed, &args[LIVING]);
    double end = tu_now() + T_LONG;
    while (mp_barrier_n_waiting(b) < LIVING + 1 && tu_now() < end)
        tu_sleep(0.005);
    assert_int_equal(mp_barrier_n_waiting(b), LIVING + 1);

    double killed_at = tu_now();
    kill_and_reap(doomed);
    /* Finite guard: before the fix the waiters slept on until it. */
    int status[LIVING];
    for (int i = 0; i < LIVING; i++) {
        double left = killed_at + bound + 5.0 * slowdown() - tu_now();
        status[i] = tu_wait_child(pids[i], left > 0 ? left : 0.01);
    }
    for (int i = 0; i < LIVING; i++)
        if (status[i] != 0)
            fail_msg("party %d still waiting %.1f s after the death (status %d)", i,
                     tu_now() - killed_at, status[i]);
    for (int i = 0; i < LIVING; i++) {
        TU_ASSERT_STATUS(atomic_load(&w->result[i]), MP_EBROKEN);
        double late = atomic_load(&w->returned_at[i]) - killed_at;
        if (late > bound)
            fail_msg("party %d got MP_EBROKEN %.3f s after the death (bound %.1f s)", i, late,
                     bound);
    }
    assert_int_equal(mp_barrier_broken(b), 1);
    assert_int_equal(mp_barrier_n_waiting(b), 0);
    mp_barrier_free(b);
    mp_shm_free(w);
}

/* ---- Value and Array -------------------------------------------------------------- */

struct values {
    mp_value *v[5];
};

/* _TestValue.codes_values: ('i', 4343, 24234), ('d', 3.625, -4.25),
 * ('h', -232, 234), ('q', 2**33, 2**34), ('c', 'x', 'y'). */
static int set_second_values(void *arg)
{
    struct values *s = arg;
    int bad = 0;
    bad |= mp_value_set_int(s->v[0], 24234);
    bad |= mp_value_set_float(s->v[1], -4.25);
    bad |= mp_value_set_int(s->v[2], 234);
    bad |= mp_value_set_int(s->v[3], INT64_C(1) << 34);
    bad |= mp_value_set_int(s->v[4], 'y');
    return bad ? 1 : 0;
}

static void test_value_is_shared_like_python(void **state)
{
    (void)state;
    for (int raw = 0; raw <= 1; raw++) {
        struct values s;
        int i0 = 4343;
        double d0 = 3.625;
        short h0 = -232;
        long long q0 = 1LL << 33;
        char c0 = 'x';
        assert_int_equal(mp_value_new(&s.v[0], 'i', &i0, !raw), 0);
        assert_int_equal(mp_value_new(&s.v[1], 'd', &d0, !raw), 0);
        assert_int_equal(mp_value_new(&s.v[2], 'h', &h0, !raw), 0);
        assert_int_equal(mp_value_new(&s.v[3], 'q', &q0, !raw), 0);
        assert_int_equal(mp_value_new(&s.v[4], 'c', &c0, !raw), 0);
        int64_t iv;
        double dv;
        assert_int_equal(mp_value_get_int(s.v[0], &iv), 0);
        assert_int_equal(iv, 4343);
        assert_int_equal(mp_value_get_float(s.v[1], &dv), 0);
        assert_true(dv == 3.625);
        assert_int_equal(mp_value_get_int(s.v[2], &iv), 0);
        assert_int_equal(iv, -232);
        assert_int_equal(mp_value_get_int(s.v[3], &iv), 0);
        assert_int_equal(iv, INT64_C(1) << 33);
        assert_int_equal(mp_value_get_int(s.v[4], &iv), 0);
        assert_int_equal(iv, 'x');
        assert_int_equal(tu_wait_child(tu_fork(set_second_values, &s), T_LONG), 0);
        assert_int_equal(*(int *)mp_value_ptr(s.v[0]), 24234);
        assert_true(*(double *)mp_value_ptr(s.v[1]) == -4.25);
        assert_int_equal(*(short *)mp_value_ptr(s.v[2]), 234);
        assert_int_equal(*(long long *)mp_value_ptr(s.v[3]), 1LL << 34);
        assert_int_equal(*(char *)mp_value_ptr(s.v[4]), 'y');
        for (int i = 0; i < 5; i++) {
            /* test_getobj_getlock: a lock by default, none when raw. */
            if (raw)
                assert_null(mp_value_get_lock(s.v[i]));
            else
                assert_non_null(mp_value_get_lock(s.v[i]));
            mp_value_free(s.v[i]);
        }
    }
}

static void test_value_types_ranges_and_lock_nesting(void **state)
{
    (void)state;
    mp_value *v;
    TU_ASSERT_STATUS(mp_value_new(&v, 'z', NULL, true), MP_EVALUE);
    assert_null(v);
    assert_int_equal(mp_value_new(&v, 'B', NULL, true), 0);
    assert_int_equal(mp_value_typecode(v), 'B');
    int64_t x = -1;
    assert_int_equal(mp_value_get_int(v, &x), 0);
    assert_int_equal(x, 0);
    assert_int_equal(mp_value_set_int(v, 255), 0);
    TU_ASSERT_STATUS(mp_value_set_int(v, 256), -ERANGE);
    TU_ASSERT_STATUS(mp_value_set_int(v, -1), -ERANGE);
    double d;
    TU_ASSERT_STATUS(mp_value_get_float(v, &d), MP_ETYPE);
    TU_ASSERT_STATUS(mp_value_set_float(v, 1.5), MP_ETYPE);
    /* `with v.get_lock(): v.value -= 1`: the accessors nest in the RLock. */
    mp_rlock *l = mp_value_get_lock(v);
    assert_int_equal(mp_rlock_acquire(l, T_LONG), 0);
    assert_int_equal(mp_value_get_int(v, &x), 0);
    assert_int_equal(mp_value_set_int(v, x - 1), 0);
    assert_int_equal(mp_rlock_count(l), 1);
    assert_int_equal(mp_rlock_release(l), 0);
    assert_int_equal(*(unsigned char *)mp_value_ptr(v), 254);
    mp_value_free(v);

    assert_int_equal(mp_value_new(&v, 'f', NULL, false), 0);
    assert_int_equal(mp_value_set_float(v, 0.5), 0);
    assert_int_equal(mp_value_get_float(v, &d), 0);
    assert_true(d == 0.5);
    TU_ASSERT_STATUS(mp_value_get_int(v, &x), MP_ETYPE);
    mp_value_free(v);

    assert_int_equal(mp_value_new(&v, 'Q', NULL, false), 0);
    *(unsigned long long *)mp_value_ptr(v) = ~0ULL;
    TU_ASSERT_STATUS(mp_value_get_int(v, &x), -ERANGE);
    mp_value_free(v);
    TU_ASSERT_STATUS(mp_value_get_int(NULL, &x), -EINVAL);
    mp_value_free(NULL);
}

/* _TestArray.f: cumulative sums in place. */
static int cumulative(void *arg)
{
    mp_array *a = arg;
    for (long i = 1; i < (long)mp_array_len(a); i++) {
        int64_t prev, cur;
        if (mp_array_get_int(a, i - 1, &prev) || mp_array_get_int(a, i, &cur) ||
            mp_array_set_int(a, i, cur + prev))
            return 1;
    }
    return 0;
}

static void test_array_is_shared_like_python(void **state)
{
    (void)state;
    for (int raw = 0; raw <= 1; raw++) {
        int seq[10] = {680, 626, 934, 821, 150, 233, 548, 982, 714, 831};
        mp_array *a;
        assert_int_equal(mp_array_new(&a, 'i', 10, seq, !raw), 0);
        assert_int_equal(mp_array_len(a), 10);
        int64_t v;
        assert_int_equal(mp_array_get_int(a, 3, &v), 0);
        assert_int_equal(v, seq[3]);
        assert_int_equal(mp_array_get_int(a, -1, &v), 0);
        assert_int_equal(v, seq[9]);
        assert_int_equal(mp_array_get_int(a, -10, &v), 0);
        assert_int_equal(v, seq[0]);
        TU_ASSERT_STATUS(mp_array_get_int(a, 10, &v), MP_EKEY);
        TU_ASSERT_STATUS(mp_array_get_int(a, -11, &v), MP_EKEY);
        int *items = mp_array_ptr(a);
        for (int i = 4; i < 8; i++)
            items[i] = seq[i] = i - 3; /* arr[4:8] = [1, 2, 3, 4] */
        for (int i = 1; i < 10; i++)
            seq[i] += seq[i - 1];
        assert_int_equal(tu_wait_child(tu_fork(cumulative, a), T_LONG), 0);
        for (int i = 0; i < 10; i++)
            assert_int_equal(items[i], seq[i]);
        if (raw)
            assert_null(mp_array_get_lock(a));
        else
            assert_non_null(mp_array_get_lock(a));
        mp_array_free(a);
    }
    /* test_array_from_size: zeroed, three times over reused memory. */
    for (int rep = 0; rep < 3; rep++) {
        mp_array *a;
        assert_int_equal(mp_array_new(&a, 'd', 10, NULL, true), 0);
        for (long i = 0; i < 10; i++) {
            double d = -1;
            assert_int_equal(mp_array_get_float(a, i, &d), 0);
            assert_true(d == 0.0);
            assert_int_equal(mp_array_set_float(a, i, (double)i), 0);
        }
        assert_int_equal(mp_array_typecode(a), 'd');
        mp_array_free(a);
    }
    mp_array *a;
    TU_ASSERT_STATUS(mp_array_new(&a, 'i', 0, NULL, true), MP_EVALUE);
    assert_null(a);
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
        TU_TEST(test_event_like_python),
        TU_TEST(test_event_set_wakes_every_waiting_process_and_thread),
        TU_TEST(test_event_waiters_that_die_are_reclaimed),
        TU_TEST(test_cond_notify_wakes_one_at_a_time),
        TU_TEST(test_cond_notify_all_after_timeouts),
        TU_TEST(test_cond_notify_n_wakes_exactly_n),
        TU_TEST(test_cond_notify_wakes_the_oldest_waiter_first),
        TU_TEST(test_cond_wait_timeout_and_result),
        TU_TEST(test_cond_wait_returns_0_when_notified_by_a_process),
        TU_TEST(test_cond_needs_the_lock_held),
        TU_TEST(test_cond_wait_releases_every_rlock_level_and_restores_them),
        TU_TEST(test_cond_wait_for_predicate_across_processes),
        TU_TEST(test_cond_wait_for_times_out_when_predicate_stays_false),
        TU_TEST(test_cond_dead_waiters_are_not_counted_as_woken),
        TU_TEST(test_cond_wait_reports_a_dead_lock_holder),
        TU_TEST(test_barrier_passes_processes_in_lockstep),
        TU_TEST(test_barrier_wait_returns_each_index_once),
        TU_TEST(test_barrier_action_runs_once_per_cycle_in_one_party),
        TU_TEST(test_barrier_action_failure_breaks_it_for_all),
        TU_TEST(test_barrier_abort_breaks_it),
        TU_TEST(test_barrier_reset_frees_the_waiters),
        TU_TEST(test_barrier_can_be_reset_after_abort),
        TU_TEST(test_barrier_timeout_breaks_it_for_everyone),
        TU_TEST(test_barrier_single_party_and_argument_errors),
        TU_TEST(test_barrier_thousand_cycles_with_five_processes),
        TU_TEST(test_barrier_party_that_dies_breaks_it_instead_of_a_hang),
        TU_TEST(test_barrier_waiters_with_no_timeout_get_ebroken_within_a_second_of_a_death),
        TU_TEST(test_value_is_shared_like_python),
        TU_TEST(test_value_types_ranges_and_lock_nesting),
        TU_TEST(test_array_is_shared_like_python),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
