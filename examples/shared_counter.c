/*
 * A counter shared by several processes, three ways, each exact. It mirrors
 * this Python program:
 *
 *     def with_lock(d, lock):                  # 1. a lock + a manager dict
 *         for _ in range(N):
 *             with lock:
 *                 d['count'] += 1
 *
 *     def atomic(d):                           # 2. one request per step
 *         for _ in range(N):
 *             d['count'] += 1   # not atomic in Python: C has
 *                               # mp_dictproxy_add_int, one server request
 *
 *     def value(v):                            # 3. a shared Value
 *         for _ in range(N):
 *             with v.get_lock():
 *                 v.value += 1
 *
 *     with Manager() as m:
 *         d, lock, v = m.dict({'count': 0}), m.Lock(), Value('q', 0)
 *         ... WORKERS processes of each kind, joined; print the totals
 *
 * Which to pick: a manager dict is reachable from any process (even over
 * TCP) but every step is a round trip to the server; the atomic add halves
 * that and needs no lock; a Value is plain shared memory (fastest), seen
 * only by processes forked after it was made.
 */
#include <mpipc.h>

#include "check.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define WORKERS 4
#define N       50 /* increments per worker */

struct shared {
    mp_dictproxy *d;
    mp_lockproxy *lock;
    mp_value *v;
};

/* 1. read-modify-write under the manager's lock */
static int with_lock(void *arg)
{
    struct shared *s = arg;
    for (int i = 0; i < N; i++) {
        CHECK(mp_lockproxy_acquire(s->lock, 10.0));
        int64_t n;
        CHECK(mp_dictproxy_get_int(s->d, "locked", &n));
        CHECK(mp_dictproxy_set_int(s->d, "locked", n + 1));
        CHECK(mp_lockproxy_release(s->lock));
    }
    return 0;
}

/* 2. one atomic request: the server adds, no lock to hold */
static int atomic(void *arg)
{
    struct shared *s = arg;
    for (int i = 0; i < N; i++)
        CHECK(mp_dictproxy_add_int(s->d, "atomic", 1, NULL));
    return 0;
}

/* 3. a Value in shared memory, incremented under its own lock */
static int value(void *arg)
{
    struct shared *s = arg;
    mp_rlock *lock = mp_value_get_lock(s->v);
    for (int i = 0; i < N; i++) {
        CHECK(mp_rlock_acquire(lock, 10.0));   /* with v.get_lock(): */
        *(long long *)mp_value_ptr(s->v) += 1; /*     v.value += 1 */
        CHECK(mp_rlock_release(lock));
    }
    return 0;
}

/* Start WORKERS processes running fn, join them all, fail on a bad exit. */
static void run(mp_target_fn fn, struct shared *s)
{
    mp_process *ps[WORKERS];
    for (int i = 0; i < WORKERS; i++) {
        CHECK(mp_process_new(&ps[i], fn, s));
        CHECK(mp_process_start(ps[i]));
    }
    for (int i = 0; i < WORKERS; i++) {
        int code;
        CHECK(mp_process_join(ps[i], 60.0));
        CHECK(mp_process_exitcode(ps[i], &code));
        if (code != 0) {
            fprintf(stderr, "worker exited with %d\n", code);
            exit(1);
        }
        mp_process_free(ps[i]);
    }
}

int main(void)
{
    struct shared s;
    mp_manager *m;
    CHECK(mp_manager_start(&m, NULL));
    mp_obj *init = mp_obj_build("{s:i,s:i}", "locked", 0, "atomic", 0);
    CHECK(mp_manager_dict(m, init, &s.d)); /* d = m.dict({...}) */
    mp_obj_free(init);
    CHECK(mp_manager_lock(m, &s.lock));         /* lock = m.Lock() */
    CHECK(mp_value_new(&s.v, 'q', NULL, true)); /* v = Value('q', 0) */

    run(with_lock, &s);
    run(atomic, &s);
    run(value, &s);

    int64_t locked, added, val;
    CHECK(mp_dictproxy_get_int(s.d, "locked", &locked));
    CHECK(mp_dictproxy_get_int(s.d, "atomic", &added));
    CHECK(mp_value_get_int(s.v, &val));
    const int64_t want = (int64_t)WORKERS * N;
    printf("lock + manager dict: %lld\n", (long long)locked);
    printf("atomic add:          %lld\n", (long long)added);
    printf("Value with its lock: %lld\n", (long long)val);
    printf("%s\n", locked == want && added == want && val == want ? "all exact" : "LOST UPDATES");

    mp_value_free(s.v);
    mp_lockproxy_free(s.lock);
    mp_dictproxy_free(s.d);
    mp_manager_free(m);
    return locked == want && added == want && val == want ? 0 : 1;
}
