/*
 * test_mpi_death.c - a rank killed mid-task (mpipc/mpi.h, Failure). Run by
 * ctest under mpirun, one scenario per run (a dead rank does not come back):
 *   ework  (-n 4, Open MPI told to survive a dead rank): the task fails
 *          with MP_EWORKER, the other ranks finish the rest;
 *   broken (-n 2, likewise): the last rank dies, so after its task's
 *          MP_EWORKER every pending item gets MP_EBROKEN, nothing hangs;
 *   abort  (-n 3, Open MPI's default): mpirun ends the whole job.
 */
#include <mpipc.h>
#include <mpipc/mpi.h>

#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#define T 30.0

static void nap_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* x == 4 kills its rank halfway through; others take 50 ms. */
static int maybe_die(const mp_obj *args, mp_obj **result)
{
    int64_t x = 0;
    mp_obj_get_int(mp_obj_list_get(args, 0), &x);
    nap_ms(50);
    if (x == 4)
        raise(SIGKILL);
    *result = mp_obj_int(x);
    return 0;
}
MP_TASK(maybe_die);

static const char *scenario;

static mp_obj *ints(int n)
{
    mp_obj *l = mp_obj_list_new();
    for (int i = 0; i < n; i++)
        mp_obj_list_append(l, mp_obj_int(i));
    return l;
}

/* Python's Pool: a worker that dies fails the task it ran (here MP_EWORKER
 * rather than hanging, as Python 3.11's Pool does); the rest complete. */
static void test_mpi_killed_rank_fails_its_task_with_eworker(void **state)
{
    (void)state;
    mp_pool *p = NULL;
    assert_int_equal(mp_pool_new_mpi(&p, NULL, MPI_COMM_WORLD, NULL), 0);
    mp_obj *items = ints(12);
    mp_imap *it = NULL;
    assert_int_equal(mp_pool_imap(p, maybe_die, items, 1, &it), 0);
    size_t idx, ok = 0;
    mp_task_error err;
    int rc;
    while ((rc = mp_imap_next(it, &idx, NULL, &err, T)) != 0) {
        if (idx == 4) {
            assert_int_equal(rc, MP_EWORKER);
            assert_non_null(strstr(err.message, "died"));
        } else {
            assert_int_equal(rc, 1);
            ok++;
        }
    }
    assert_int_equal(ok, 11);
    mp_imap_free(it);
    /* The two ranks left serve on. */
    mp_obj *res = NULL;
    mp_obj *small = ints(3);
    assert_int_equal(mp_pool_map(p, maybe_die, small, 1, &res, NULL, T), 0);
    mp_obj_free(res);
    mp_obj_free(small);
    mp_obj_free(items);
    assert_int_equal(mp_pool_close(p), 0);
    assert_int_equal(mp_pool_join(p, T), 0);
    mp_pool_free(p);
}

/* MPIPoolExecutor hangs when its last worker dies; we report MP_EBROKEN to
 * every pending item instead (concurrent.futures' BrokenProcessPool). */
static void test_mpi_last_rank_dead_breaks_the_pool(void **state)
{
    (void)state;
    mp_pool *p = NULL;
    assert_int_equal(mp_pool_new_mpi(&p, NULL, MPI_COMM_WORLD, NULL), 0);
    mp_obj *items = ints(8);
    mp_imap *it = NULL;
    assert_int_equal(mp_pool_imap(p, maybe_die, items, 1, &it), 0);
    size_t idx;
    mp_task_error err;
    for (size_t i = 0; i <= 4; i++) {
        int rc = mp_imap_next(it, &idx, NULL, &err, T);
        assert_int_equal(idx, i);
        assert_int_equal(rc, i < 4 ? 1 : MP_EWORKER);
    }
    /* Every missing item: MP_EBROKEN (as MP_ETERMINATED after terminate). */
    assert_int_equal(mp_imap_next(it, &idx, NULL, &err, T), MP_EBROKEN);
    assert_non_null(strstr(err.message, "workers are gone"));
    assert_int_equal(mp_imap_next(it, &idx, NULL, &err, T), MP_EBROKEN);
    mp_imap_free(it);
    mp_result *r = NULL;
    /* The pool is terminated now: nothing more is taken. */
    assert_int_equal(mp_pool_apply_async(p, maybe_die, items, NULL, &r), MP_ECLOSED);
    assert_int_equal(mp_pool_join(p, T), 0);
    mp_pool_free(p);
    mp_obj_free(items);
}

int main(int argc, char **argv)
{
    int level = 0, rank = 0;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &level);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    scenario = argc > 1 ? argv[1] : "ework";
    if (rank != 0) {
        mp_pool *none = NULL;
        (void)mp_pool_new_mpi(&none, NULL, MPI_COMM_WORLD, NULL);
        MPI_Finalize();
        return 0;
    }
    int rc;
    if (strcmp(scenario, "broken") == 0) {
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_mpi_last_rank_dead_breaks_the_pool)};
        rc = cmocka_run_group_tests(tests, NULL, NULL);
    } else {
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_mpi_killed_rank_fails_its_task_with_eworker)};
        rc = cmocka_run_group_tests(tests, NULL, NULL);
    }
    /* A dead rank cannot take part in MPI_Finalize: leave without it (Open
     * MPI's mpirun then reports the job's end at once). */
    fflush(stdout);
    _exit(rc);
}
