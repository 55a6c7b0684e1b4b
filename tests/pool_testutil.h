/*
 * Helpers the pool's test binaries share (test_pool.c, test_pool_worker.c,
 * test_pool_life.c): pools with a deadline on every wait, values, and the
 * tasks more than one of them runs. Each test binary is one file, so this
 * header is included once per binary (it defines the LSan hook).
 */
#ifndef MPIPC_POOL_TESTUTIL_H
#define MPIPC_POOL_TESTUTIL_H

#include "testutil.h"

#include <mpipc/pool.h>

#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

/* Generous bounds: they only need to be finite (valgrind is ~50x slower). */
#define T_LONG 60.0

/*
 * LeakSanitizer (the asan preset) checks every process that leaves through
 * exit(), forked children included, and changes their exit status when it
 * finds blocks they inherited from their parent. As tests/valgrind.sh does,
 * judge leaks in the test process only: this is LSan's documented hook for
 * turning the exit-time check off, here in every other process (a task
 * that calls exit(3), a child that exits with a pool running).
 */
static pid_t test_pid;
/* Exported (the build hides symbols by default) so the sanitizer runtime
 * finds it. */
__attribute__((visibility("default"))) int __lsan_is_turned_off(void);
__attribute__((visibility("default"))) int __lsan_is_turned_off(void)
{
    return test_pid != 0 && getpid() != test_pid;
}

static inline mp_obj *tuple2(mp_obj *a, mp_obj *b)
{
    mp_obj *t = mp_obj_tuple_new();
    assert_non_null(t);
    assert_int_equal(mp_obj_tuple_append(t, a), 0);
    if (b)
        assert_int_equal(mp_obj_tuple_append(t, b), 0);
    return t;
}

static inline mp_obj *int_list(int64_t from, int64_t to)
{
    mp_obj *l = mp_obj_list_new();
    for (int64_t i = from; i < to; i++)
        assert_int_equal(mp_obj_list_append(l, mp_obj_int(i)), 0);
    return l;
}

static inline int64_t as_int(const mp_obj *o)
{
    int64_t v = -12345;
    assert_int_equal(mp_obj_get_int(o, &v), 0);
    return v;
}

static inline mp_pool *make_pool(int processes)
{
    mp_pool_opts o = MP_POOL_OPTS_INIT;
    o.processes = processes;
    mp_pool *p = NULL;
    TU_ASSERT_STATUS(mp_pool_new(&p, &o), 0);
    assert_non_null(p);
    return p;
}

static inline void close_join_free(mp_pool *p)
{
    TU_ASSERT_STATUS(mp_pool_close(p), 0);
    TU_ASSERT_STATUS(mp_pool_join(p, T_LONG), 0);
    mp_pool_free(p);
}

/* The start of every pool test binary's main, after tu_filter: note the
 * test process (for the LSan hook). */
static inline void pool_test_start(void)
{
    test_pid = getpid();
}

/* ---- tasks (they run in the workers) ------------------------------------ */

/* Python's sqr(x, wait=0.0): x*x after sleeping wait seconds. */
static inline int sqr(const mp_obj *args, mp_obj **result)
{
    int64_t x;
    if (mp_obj_get_int(mp_obj_list_get(args, 0), &x) < 0)
        return mp_task_fail(MP_ETYPE, "sqr() needs an int");
    double wait = 0;
    if (mp_obj_len(args) > 1)
        (void)mp_obj_get_float(mp_obj_list_get(args, 1), &wait);
    if (wait > 0)
        tu_sleep(wait);
    *result = mp_obj_int(x * x);
    return 0;
}

static inline int square_int(const void *in, void *out)
{
    int64_t x = *(const int32_t *)in;
    *(int64_t *)out = x * x;
    return 0;
}

/* For tasks: they run in workers, where no cmocka assert may run. */
static inline int64_t arg_int(const mp_obj *args, size_t i)
{
    int64_t v = 0;
    (void)mp_obj_get_int(mp_obj_list_get(args, i), &v);
    return v;
}

/* Python's time.sleep(seconds) over an array of doubles. */
static inline int sleep_item(const void *in, void *out)
{
    tu_sleep(*(const double *)in);
    *(int32_t *)out = 1;
    return 0;
}

static inline int return_pid(const mp_obj *args, mp_obj **result)
{
    (void)args;
    *result = mp_obj_int(getpid());
    return 0;
}

/* Registered, for pools under the spawn method (pool.h: tasks by name). */
MP_TASK(sqr);
MP_TASK(square_int);
MP_TASK(sleep_item);
MP_TASK(return_pid);

#endif
