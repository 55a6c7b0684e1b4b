/*
 * Helpers the pool's test binaries share (test_pool.c, test_pool_worker.c,
 * test_pool_life.c): pools with a deadline on every wait, values, and the
 * tasks more than one of them runs. Each test binary is one file, so this
 * header is included once per binary (it defines the LSan hook).
 *
 * Built with MPIPC_TEST_MPI (test_<binary>_mpi, run by mpirun), the same
 * cases run on a pool of MPI ranks (mpipc/mpi.h): rank 0 runs cmocka and
 * each pool_test_new is an mp_pool_new_mpi over MPI_COMM_WORLD; the other
 * ranks serve every pool in pool_test_main and leave without running a case.
 */
#ifndef MPIPC_POOL_TESTUTIL_H
#define MPIPC_POOL_TESTUTIL_H

#include "testutil.h"

#include <mpipc/pool.h>
#ifdef MPIPC_TEST_MPI
#include <mpipc/mpi.h>
#endif

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

/*
 * The start method the pool tests run under: MPIPC_TEST_START_METHOD
 * ("fork", "forkserver" or "spawn"; unset or empty: the default), so
 * tests/CMakeLists.txt runs each pool binary under every method. A binary
 * built with MPIPC_TEST_MPI has no start method (its pool's workers are MPI
 * ranks): the variable is ignored and the method is "mpi".
 */
static inline const mp_context *pool_test_ctx(void)
{
#ifdef MPIPC_TEST_MPI
    return NULL;
#else
    const char *m = getenv("MPIPC_TEST_START_METHOD");
    const mp_context *ctx = NULL;
    if (m && *m)
        TU_ASSERT_STATUS(mp_context_get(&ctx, m), 0);
    return ctx;
#endif
}

static inline bool pool_test_method_is(const char *method)
{
#ifdef MPIPC_TEST_MPI
    return strcmp(method, "mpi") == 0;
#else
    const char *m = getenv("MPIPC_TEST_START_METHOD");
    return m && strcmp(m, method) == 0;
#endif
}

/* Default options under the test's start method. */
static inline mp_pool_opts pool_test_opts(void)
{
    mp_pool_opts o = MP_POOL_OPTS_INIT;
    o.ctx = pool_test_ctx();
    return o;
}

#ifdef MPIPC_TEST_MPI
/* Tell the worker ranks another pool comes (1) or that they are done (0);
 * test_mpi.c does the same. */
static inline void pool_mpi_announce(int more)
{
    MPI_Bcast(&more, 1, MPI_INT, 0, MPI_COMM_WORLD);
}

/* A worker rank's whole run: serve each pool rank 0 makes until told that
 * none comes. Returns the process's exit status. */
static inline int pool_mpi_serve(void)
{
    int status = 0, rank = 0, more = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    for (;;) {
        MPI_Bcast(&more, 1, MPI_INT, 0, MPI_COMM_WORLD);
        if (!more)
            break;
        mp_pool *none = NULL;
        int rc = mp_pool_new_mpi(&none, NULL, MPI_COMM_WORLD, NULL);
        if (rc != MP_MPI_WORKER_DONE) {
            fprintf(stderr, "rank %d: mp_pool_new_mpi returned %d (%s)\n", rank, rc,
                    mp_errname(rc));
            status = 1;
        }
    }
    MPI_Finalize();
    return status;
}
#endif

/*
 * mp_pool_new under the test's method: on MPI, mp_pool_new_mpi over
 * MPI_COMM_WORLD (its processes: at most the ranks but rank 0, which the
 * pool's binaries are run with enough of; 0: every other rank).
 */
static inline int pool_test_new(mp_pool **out, const mp_pool_opts *opts)
{
#ifdef MPIPC_TEST_MPI
    pool_mpi_announce(1);
    return mp_pool_new_mpi(out, opts, MPI_COMM_WORLD, NULL);
#else
    return mp_pool_new(out, opts);
#endif
}

/* The workers a pool made with processes 0 has: os.cpu_count(), or on MPI
 * every rank but rank 0. */
static inline int pool_test_default_processes(void)
{
#ifdef MPIPC_TEST_MPI
    int size = 0;
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    return size - 1;
#else
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    return cpus > 0 ? (int)cpus : 1;
#endif
}

static inline mp_pool *make_pool(int processes)
{
    mp_pool_opts o = pool_test_opts();
    o.processes = processes;
    mp_pool *p = NULL;
    TU_ASSERT_STATUS(pool_test_new(&p, &o), 0);
    assert_non_null(p);
    return p;
}

static inline void close_join_free(mp_pool *p)
{
    TU_ASSERT_STATUS(mp_pool_close(p), 0);
    TU_ASSERT_STATUS(mp_pool_join(p, T_LONG), 0);
    mp_pool_free(p);
}

/*
 * The first call in every pool test binary's main: a spawned run of the
 * program (a spawn pool's server) serves here and never returns; under
 * forkserver the shared server starts now, before any thread, as
 * context.h asks; then the name filter (tu_filter). On MPI, MPI starts
 * here (MPI_THREAD_MULTIPLE, as mp_pool_new_mpi needs) and every rank but
 * rank 0 serves the pools and exits here: only rank 0 runs the cases.
 */
static inline int pool_test_main(int argc, char **argv)
{
#ifdef MPIPC_TEST_MPI
    int level = 0, rank = 0;
    if (MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &level) != MPI_SUCCESS ||
        level < MPI_THREAD_MULTIPLE)
        return -1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    if (rank != 0)
        exit(pool_mpi_serve());
#else
    if (mp_spawn_main(argc, argv) < 0)
        return -1;
    if (pool_test_method_is("forkserver") && mp_forkserver_start() < 0)
        return -1;
#endif
    tu_filter(argc, argv);
    return 0;
}

/* Note the test process (for the LSan hook), then run the tests but those
 * MPIPC_TEST_SKIP names (comma-separated, "prefix*" for a family: cases a
 * start method or valgrind cannot apply to; tests/CMakeLists.txt gives each
 * one's reason). On MPI, rank 0 then lets the worker ranks go and ends MPI. */
static inline int pool_run_tests(const struct CMUnitTest *tests, size_t n)
{
    test_pid = getpid();
    const char *skip = getenv("MPIPC_TEST_SKIP");
    struct CMUnitTest *run = calloc(n ? n : 1, sizeof *run);
    assert_non_null(run);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(tests[i].name);
        const char *q = skip;
        bool skipped = false;
        while (q && *q && !skipped) {
            const char *end = strchr(q, ',');
            size_t l = end ? (size_t)(end - q) : strlen(q);
            /* "name", or "prefix*" for every case whose name starts so */
            bool prefix = l > 0 && q[l - 1] == '*';
            skipped = prefix ? l - 1 <= len && strncmp(q, tests[i].name, l - 1) == 0
                             : l == len && strncmp(q, tests[i].name, len) == 0;
            q = end ? end + 1 : NULL;
        }
        if (!skipped)
            run[k++] = tests[i];
    }
    int rc = _cmocka_run_group_tests("tests", run, k, NULL, NULL);
    free(run);
#ifdef MPIPC_TEST_MPI
    /* After a case that killed a rank (MPIPC_TEST_MPI_RANK_KILLED set by
     * tests/CMakeLists.txt), leave without MPI: a dead rank cannot take
     * part in a broadcast or MPI_Finalize, and mpirun ends the job at once. */
    if (getenv("MPIPC_TEST_MPI_RANK_KILLED")) {
        fflush(stdout);
        _exit(rc);
    }
    pool_mpi_announce(0);
    MPI_Finalize();
#endif
    return rc;
}

#define POOL_RUN_TESTS(tests) pool_run_tests(tests, sizeof(tests) / sizeof((tests)[0]))

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
