/*
 * Helpers of the tests that run a scenario under each start method
 * (test_start_passobj.c, test_start_sync.c, test_start_queue.c): the
 * context by name, a join that asserts exit code 0, and EACH_METHOD, which
 * makes test_<name>_fork, _forkserver and _spawn of one scenario.
 */
#ifndef MPIPC_START_TESTUTIL_H
#define MPIPC_START_TESTUTIL_H

#include "testutil.h"

#include <mpipc/context.h>
#include <mpipc/process.h>

/* The longest any blocking call in these tests waits. */
#define ST_LONG 20.0

static inline const mp_context *st_ctx(const char *method)
{
    const mp_context *ctx = NULL;
    assert_int_equal(mp_context_get(&ctx, method), 0);
    return ctx;
}

/* Join p (finite timeout) and assert it ended with exit code 0. */
static inline void st_join_ok(mp_process *p)
{
    int code = -1;
    assert_int_equal(mp_process_join(p, ST_LONG), 0);
    assert_int_equal(mp_process_exitcode(p, &code), 0);
    assert_int_equal(code, 0);
}

/* test_<name>_fork, _forkserver and _spawn, each running fn(method). */
#define ST_EACH_METHOD(fn, name)                                                                   \
    static void test_##name##_fork(void **s)                                                       \
    {                                                                                              \
        (void)s;                                                                                   \
        fn("fork");                                                                                \
    }                                                                                              \
    static void test_##name##_forkserver(void **s)                                                 \
    {                                                                                              \
        (void)s;                                                                                   \
        fn("forkserver");                                                                          \
    }                                                                                              \
    static void test_##name##_spawn(void **s)                                                      \
    {                                                                                              \
        (void)s;                                                                                   \
        fn("spawn");                                                                               \
    }

/* The three entries of an ST_EACH_METHOD scenario, for the test table. */
#define ST_TESTS(name)                                                                             \
    TU_TEST(test_##name##_fork), TU_TEST(test_##name##_forkserver), TU_TEST(test_##name##_spawn)

#endif /* MPIPC_START_TESTUTIL_H */
