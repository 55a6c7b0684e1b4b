/*
 * test_mpi.c - the Pool on MPI ranks (mpipc/mpi.h), run by ctest as
 * `mpirun -n 4 test_mpi`: rank 0 runs the cmocka cases, each on a fresh
 * pool of the other ranks; those serve every pool until told to stop.
 *
 * The pool's own cases (test_pool*.c) that apply are here, on ranks:
 * apply, map at any chunksize, starmap, map_async and its callbacks, empty
 * inputs, get timing out without losing the task, imap / imap_unordered in
 * every form, imap_gen, failing tasks (code, message, index), close / join
 * / terminate, the initializer, unregistered tasks (MP_EKEY). Deaths are in
 * test_mpi_death.c. What cannot apply: maxtasksperchild and worker
 * replacement (a rank is not replaced: MP_EVALUE), the start methods (ctx)
 * and initarg pointers (ranks are other runs of the program), workers seeing
 * the parent's memory, a forked child of the owner (MP_EFORKED: nothing MPI
 * specific), segfault / _exit / exit flavours of a death (one kill covers
 * what the root can see: the rank's pid gone), and pools killed from outside
 * (mpirun ends the job).
 */
#include <mpipc.h>
#include <mpipc/mpi.h>

#include <errno.h>
#include <setjmp.h>
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

/* ---- tasks, registered by name on every rank ------------------------------------ */

static int64_t init_value; /* set by the initializer on the ranks */

static void mpi_init_fn(void *arg)
{
    (void)arg;
    init_value = 1000;
}
MP_TASK(mpi_init_fn);

static int square(const mp_obj *args, mp_obj **result)
{
    int64_t x = 0;
    if (mp_obj_get_int(mp_obj_list_get(args, 0), &x) < 0)
        return mp_task_fail(22, "not an int");
    if (x < 0)
        return mp_task_fail(33, "negative input %lld", (long long)x);
    *result = mp_obj_int(x * x);
    return *result ? 0 : -1;
}
MP_TASK(square);

static int get_init(const mp_obj *args, mp_obj **result)
{
    (void)args;
    *result = mp_obj_int(init_value);
    return 0;
}
MP_TASK(get_init);

static int add2(const mp_obj *args, mp_obj **result)
{
    int64_t a = 0, b = 0;
    mp_obj_get_int(mp_obj_list_get(args, 0), &a);
    mp_obj_get_int(mp_obj_list_get(args, 1), &b);
    *result = mp_obj_int(a + b);
    return 0;
}
MP_TASK(add2);

static int my_pid(const mp_obj *args, mp_obj **result)
{
    (void)args;
    *result = mp_obj_int(getpid());
    return 0;
}
MP_TASK(my_pid);

static int slow(const mp_obj *args, mp_obj **result)
{
    (void)args;
    struct timespec ts = {0, 300000000};
    nanosleep(&ts, NULL);
    *result = mp_obj_none();
    return 0;
}
MP_TASK(slow);

static int twice(const void *in, void *out)
{
    int32_t v;
    memcpy(&v, in, sizeof v);
    v *= 2;
    memcpy(out, &v, sizeof v);
    return 0;
}
MP_TASK(twice);

static int upper(const void *in, size_t in_len, void **out, size_t *out_len)
{
    char *o = malloc(in_len + 1);
    if (!o)
        return -1;
    for (size_t i = 0; i < in_len; i++) {
        char c = ((const char *)in)[i];
        o[i] = (char)(c >= 'a' && c <= 'z' ? c - 32 : c);
    }
    *out = o;
    *out_len = in_len;
    return 0;
}
MP_TASK(upper);

/* Never registered: a function pointer the ranks could not find. */
static int unregistered(const mp_obj *args, mp_obj **result)
{
    (void)args;
    *result = mp_obj_none();
    return 0;
}

/* ---- the pools ------------------------------------------------------------------ */

/* Tell the worker ranks another pool comes (1) or that they are done (0). */
static void announce(int more)
{
    MPI_Bcast(&more, 1, MPI_INT, 0, MPI_COMM_WORLD);
}

static mp_pool *new_pool(const mp_pool_opts *opts, const mp_mpi_opts *mopts)
{
    mp_pool *p = NULL;
    announce(1);
    int rc = mp_pool_new_mpi(&p, opts, MPI_COMM_WORLD, mopts);
    assert_int_equal(rc, 0);
    assert_non_null(p);
    return p;
}

static mp_obj *ints(int n, int from)
{
    mp_obj *l = mp_obj_list_new();
    for (int i = 0; i < n; i++)
        assert_int_equal(mp_obj_list_append(l, mp_obj_int(from + i)), 0);
    return l;
}

static int64_t int_at(const mp_obj *l, size_t i)
{
    int64_t v = -1;
    assert_int_equal(mp_obj_get_int(mp_obj_list_get(l, (ssize_t)i), &v), 0);
    return v;
}

/* Python: MPICommExecutor's workers are the other ranks, pids of their own. */
static void test_mpi_pool_has_a_worker_per_other_rank(void **state)
{
    (void)state;
    mp_pool *p = new_pool(NULL, NULL);
    assert_int_equal(mp_pool_processes(p), 3);
    pid_t pids[8];
    assert_int_equal(mp_pool_pids(p, pids, 8), 3);
    for (int i = 0; i < 3; i++)
        assert_int_not_equal(pids[i], getpid());
    mp_obj *r = NULL;
    assert_int_equal(mp_pool_apply(p, my_pid, NULL, &r, NULL, T), 0);
    int64_t pid = 0;
    mp_obj_get_int(r, &pid);
    assert_int_not_equal(pid, getpid());
    mp_obj_free(r);
    assert_int_equal(mp_pool_close(p), 0);
    assert_int_equal(mp_pool_join(p, T), 0);
    mp_pool_free(p);
}

/* apply, map (several chunksizes), starmap, imap, imap_unordered. */
static void test_mpi_value_forms_return_python_results(void **state)
{
    (void)state;
    mp_pool *p = new_pool(NULL, NULL);
    mp_obj *args = mp_obj_tuple_new(), *r = NULL;
    mp_obj_tuple_append(args, mp_obj_int(7));
    assert_int_equal(mp_pool_apply(p, square, args, &r, NULL, T), 0);
    int64_t v = 0;
    mp_obj_get_int(r, &v);
    assert_int_equal(v, 49);
    mp_obj_free(r);
    mp_obj_free(args);

    mp_obj *items = ints(100, 0);
    size_t sizes[] = {0, 1, 7, 100};
    for (size_t s = 0; s < 4; s++) {
        mp_obj *res = NULL;
        assert_int_equal(mp_pool_map(p, square, items, sizes[s], &res, NULL, T), 0);
        assert_int_equal(mp_obj_len(res), 100);
        for (size_t i = 0; i < 100; i++)
            assert_int_equal(int_at(res, i), (int64_t)(i * i));
        mp_obj_free(res);
    }

    mp_obj *pairs = mp_obj_list_new(), *res = NULL;
    for (int i = 0; i < 10; i++) {
        mp_obj *t = mp_obj_tuple_new();
        mp_obj_tuple_append(t, mp_obj_int(i));
        mp_obj_tuple_append(t, mp_obj_int(100));
        mp_obj_list_append(pairs, t);
    }
    assert_int_equal(mp_pool_starmap(p, add2, pairs, 3, &res, NULL, T), 0);
    for (size_t i = 0; i < 10; i++)
        assert_int_equal(int_at(res, i), (int64_t)i + 100);
    mp_obj_free(res);
    mp_obj_free(pairs);

    for (int unordered = 0; unordered < 2; unordered++) {
        mp_imap *it = NULL;
        int rc = unordered ? mp_pool_imap_unordered(p, square, items, 4, &it)
                           : mp_pool_imap(p, square, items, 4, &it);
        assert_int_equal(rc, 0);
        bool seen[100] = {false};
        size_t idx, count = 0;
        mp_obj *val = NULL;
        while ((rc = mp_imap_next(it, &idx, &val, NULL, T)) == 1) {
            if (!unordered)
                assert_int_equal(idx, count);
            mp_obj_get_int(val, &v);
            assert_int_equal(v, (int64_t)(idx * idx));
            seen[idx] = true;
            count++;
            mp_obj_free(val);
        }
        assert_int_equal(rc, 0);
        assert_int_equal(count, 100);
        for (int i = 0; i < 100; i++)
            assert_true(seen[i]);
        mp_imap_free(it);
    }
    mp_obj_free(items);
    mp_pool_free(p);
}

/* Array and bytes forms carry over. */
static void test_mpi_array_and_bytes_forms(void **state)
{
    (void)state;
    mp_pool *p = new_pool(NULL, NULL);
    int32_t in[1000], out[1000];
    for (int i = 0; i < 1000; i++)
        in[i] = i;
    assert_int_equal(
        mp_pool_map_array(p, twice, in, sizeof *in, 1000, out, sizeof *out, 0, NULL, T), 0);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(out[i], 2 * i);
    mp_imap *it = NULL;
    memset(out, 0, sizeof out);
    assert_int_equal(
        mp_pool_imap_unordered_array(p, twice, in, sizeof *in, 50, out, sizeof *out, 5, &it), 0);
    size_t idx, count = 0;
    while (mp_imap_next(it, &idx, NULL, NULL, T) == 1) {
        assert_int_equal(out[idx], 2 * (int)idx);
        count++;
    }
    assert_int_equal(count, 50);
    mp_imap_free(it);

    struct iovec iv[3] = {{"abc", 3}, {"", 0}, {"mpi ranks", 9}}, ov[3];
    assert_int_equal(mp_pool_map_bytes(p, upper, iv, 3, ov, 1, NULL, T), 0);
    assert_memory_equal(ov[0].iov_base, "ABC", 3);
    assert_int_equal(ov[1].iov_len, 0);
    assert_memory_equal(ov[2].iov_base, "MPI RANKS", 9);
    for (int i = 0; i < 3; i++)
        free(ov[i].iov_base);
    void *o = NULL;
    size_t olen = 0;
    assert_int_equal(mp_pool_apply_bytes(p, upper, "xy", 2, &o, &olen, NULL, T), 0);
    assert_int_equal(olen, 2);
    assert_memory_equal(o, "XY", 2);
    free(o);
    mp_pool_free(p);
}

static void on_done(mp_result *r, void *user)
{
    (void)r;
    __atomic_fetch_add((int *)user, 1, __ATOMIC_SEQ_CST);
}

static void on_error(mp_result *r, void *user)
{
    (void)r;
    __atomic_fetch_add((int *)user, 100, __ATOMIC_SEQ_CST);
}

/* callback / error_callback run on the root, once each. */
static void test_mpi_callbacks_run_once(void **state)
{
    (void)state;
    mp_pool *p = new_pool(NULL, NULL);
    int hits = 0;
    mp_callbacks cbs = {.callback = on_done, .error_callback = on_error, .user = &hits};
    mp_obj *good = ints(20, 0), *bad = ints(3, -1);
    mp_result *a = NULL, *b = NULL;
    assert_int_equal(mp_pool_map_async(p, square, good, 2, &cbs, &a), 0);
    assert_int_equal(mp_pool_map_async(p, square, bad, 1, &cbs, &b), 0);
    assert_int_equal(mp_result_wait(a, T), 0);
    assert_int_equal(mp_result_wait(b, T), 0);
    assert_int_equal(mp_result_successful(a), 1);
    assert_int_equal(mp_result_successful(b), 0);
    mp_pool_close(p);
    assert_int_equal(mp_pool_join(p, T), 0);
    assert_int_equal(__atomic_load_n(&hits, __ATOMIC_SEQ_CST), 101);
    mp_result_free(a);
    mp_result_free(b);
    mp_obj_free(good);
    mp_obj_free(bad);
    mp_pool_free(p);
}

/* A failing task: MP_ETASK with its code, message and index, as on fork. */
static void test_mpi_task_failure_reports_code_and_message(void **state)
{
    (void)state;
    mp_pool *p = new_pool(NULL, NULL);
    mp_obj *items = ints(10, -3), *res = NULL;
    mp_task_error err;
    assert_int_equal(mp_pool_map(p, square, items, 1, &res, &err, T), MP_ETASK);
    assert_null(res);
    assert_int_equal(err.code, 33);
    assert_int_equal(err.index, 0);
    assert_non_null(strstr(err.message, "negative input -3"));
    mp_obj_free(items);
    mp_pool_free(p);
}

/* The initializer runs on every rank, by its registered name. */
static void test_mpi_initializer_runs_on_ranks(void **state)
{
    (void)state;
    mp_pool_opts o = MP_POOL_OPTS_INIT;
    o.initializer = mpi_init_fn;
    mp_pool *p = new_pool(&o, NULL);
    mp_obj *items = ints(9, 1), *res = NULL;
    assert_int_equal(mp_pool_map(p, get_init, items, 1, &res, NULL, T), 0);
    for (size_t i = 0; i < 9; i++)
        assert_int_equal(int_at(res, i), 1000);
    mp_obj_free(res);
    mp_obj_free(items);
    mp_pool_free(p);
}

/* Bad input gets named errors, and the pool goes on. */
static void test_mpi_bad_input_named_errors(void **state)
{
    (void)state;
    mp_mpi_opts mo = MP_MPI_OPTS_INIT;
    mo.message_max = 256;
    mp_pool *p = new_pool(NULL, &mo);
    mp_result *r = NULL;
    /* An unregistered task: MP_EKEY in the parent, nothing sent. */
    assert_int_equal(mp_pool_apply_async(p, unregistered, NULL, NULL, &r), MP_EKEY);
    assert_null(r);
    /* A value over the limit: its chunk fails with MP_EVALUE, others go on. */
    char big[1000];
    memset(big, 'a', sizeof big);
    struct iovec iv[3] = {{"ok", 2}, {big, sizeof big}, {"fine", 4}}, ov[3];
    mp_imap *it = NULL;
    assert_int_equal(mp_pool_imap_bytes(p, upper, iv, 3, ov, 1, &it), 0);
    size_t idx;
    mp_task_error err;
    assert_int_equal(mp_imap_next(it, &idx, NULL, &err, T), 1);
    assert_int_equal(mp_imap_next(it, &idx, NULL, &err, T), MP_EVALUE);
    assert_int_equal(idx, 1);
    assert_non_null(strstr(err.message, "too big"));
    assert_int_equal(mp_imap_next(it, &idx, NULL, &err, T), 1);
    assert_int_equal(idx, 2);
    assert_int_equal(mp_imap_next(it, &idx, NULL, &err, T), 0);
    mp_imap_free(it);
    free(ov[0].iov_base);
    free(ov[2].iov_base);
    mp_obj *res = NULL;
    assert_int_equal(mp_pool_apply(p, my_pid, NULL, &res, NULL, T), 0);
    mp_obj_free(res);
    mp_pool_free(p);

    /* Options a rank cannot honour: MP_EVALUE, and the ranks are let go. */
    mp_pool_opts o = MP_POOL_OPTS_INIT;
    o.maxtasksperchild = 1;
    announce(1);
    assert_int_equal(mp_pool_new_mpi(&p, &o, MPI_COMM_WORLD, NULL), MP_EVALUE);
    assert_null(p);
    o = (mp_pool_opts)MP_POOL_OPTS_INIT;
    o.processes = 4;
    announce(1);
    assert_int_equal(mp_pool_new_mpi(&p, &o, MPI_COMM_WORLD, NULL), MP_EVALUE);
    /* A communicator of one rank has no worker. */
    assert_int_equal(mp_pool_new_mpi(&p, NULL, MPI_COMM_SELF, NULL), MP_EVALUE);
    assert_null(p);
    assert_int_equal(mp_mpi_worker_main(MPI_COMM_WORLD), MP_EVALUE); /* rank 0 */
    announce(1); /* the ranks take part, and are let go */
    assert_int_equal(mp_pool_new_mpi(NULL, NULL, MPI_COMM_WORLD, NULL), -EINVAL);
}

/* processes below the rank count: the extra ranks are let go. */
static void test_mpi_fewer_processes_than_ranks(void **state)
{
    (void)state;
    mp_pool_opts o = MP_POOL_OPTS_INIT;
    o.processes = 1;
    mp_pool *p = new_pool(&o, NULL);
    assert_int_equal(mp_pool_processes(p), 1);
    mp_obj *items = ints(5, 0), *res = NULL;
    assert_int_equal(mp_pool_map(p, square, items, 0, &res, NULL, T), 0);
    assert_int_equal(int_at(res, 4), 16);
    mp_obj_free(res);
    mp_obj_free(items);
    mp_pool_free(p);
}

/* terminate: pending results fail with MP_ETERMINATED, nothing hangs; the
 * ranks stop at their next batch. close then submit: MP_ECLOSED. */
static void test_mpi_terminate_and_close(void **state)
{
    (void)state;
    mp_pool *p = new_pool(NULL, NULL);
    mp_obj *items = ints(12, 0);
    mp_result *r = NULL;
    assert_int_equal(mp_pool_map_async(p, slow, items, 1, NULL, &r), 0);
    struct timespec ts = {0, 100000000};
    nanosleep(&ts, NULL);
    assert_int_equal(mp_pool_terminate(p), 0);
    assert_int_equal(mp_result_wait(r, T), 0);
    const mp_obj *v = NULL;
    assert_int_equal(mp_result_get(r, &v, NULL, 0), MP_ETERMINATED);
    assert_int_equal(mp_pool_join(p, T), 0);
    mp_result_free(r);
    mp_pool_free(p);

    p = new_pool(NULL, NULL);
    assert_int_equal(mp_pool_close(p), 0);
    assert_int_equal(mp_pool_apply_async(p, slow, NULL, NULL, &r), MP_ECLOSED);
    assert_int_equal(mp_pool_join(p, T), 0);
    mp_pool_free(p);
    mp_obj_free(items);
}

/* Python: map([]) == [], and get(timeout) raises TimeoutError while the
 * task goes on; a later get has its value. */
static void test_mpi_empty_input_and_get_timeout(void **state)
{
    (void)state;
    mp_pool *p = new_pool(NULL, NULL);
    mp_obj *empty = mp_obj_list_new(), *res = NULL;
    assert_int_equal(mp_pool_map(p, square, empty, 0, &res, NULL, T), 0);
    assert_int_equal(mp_obj_len(res), 0);
    mp_obj_free(res);
    mp_obj_free(empty);
    mp_result *r = NULL;
    assert_int_equal(mp_pool_apply_async(p, slow, NULL, NULL, &r), 0);
    const mp_obj *v = NULL;
    assert_int_equal(mp_result_get(r, &v, NULL, 0.01), MP_ETIMEDOUT);
    assert_int_equal(mp_result_get(r, &v, NULL, T), 0);
    assert_int_equal(mp_obj_type(v), MP_TYPE_NONE);
    mp_result_free(r);
    mp_pool_free(p);
}

static int produce(void *user, mp_obj **item)
{
    int *next = user;
    if (*next >= 50)
        return 0;
    *item = mp_obj_int((*next)++);
    return 1;
}

/* imap over a producer (Python's imap over a generator). */
static void test_mpi_imap_gen_yields_in_order(void **state)
{
    (void)state;
    mp_pool *p = new_pool(NULL, NULL);
    int next = 0;
    mp_imap *it = NULL;
    assert_int_equal(mp_pool_imap_gen(p, square, produce, &next, 3, &it), 0);
    size_t idx, count = 0;
    mp_obj *val = NULL;
    int rc;
    while ((rc = mp_imap_next(it, &idx, &val, NULL, T)) == 1) {
        int64_t v = 0;
        mp_obj_get_int(val, &v);
        assert_int_equal(idx, count);
        assert_int_equal(v, (int64_t)(idx * idx));
        mp_obj_free(val);
        count++;
    }
    assert_int_equal(rc, 0);
    assert_int_equal(count, 50);
    mp_imap_free(it);
    mp_pool_free(p);
}

int main(int argc, char **argv)
{
    int level = 0, rank = 0;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &level);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    int rc = 0;
    if (rank != 0) {
        int more = 0;
        for (;;) {
            MPI_Bcast(&more, 1, MPI_INT, 0, MPI_COMM_WORLD);
            if (!more)
                break;
            mp_pool *none = NULL;
            int r = mp_pool_new_mpi(&none, NULL, MPI_COMM_WORLD, NULL);
            if (r != MP_MPI_WORKER_DONE)
                fprintf(stderr, "rank %d: mp_pool_new_mpi returned %d\n", rank, r);
        }
    } else {
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_mpi_pool_has_a_worker_per_other_rank),
            cmocka_unit_test(test_mpi_value_forms_return_python_results),
            cmocka_unit_test(test_mpi_array_and_bytes_forms),
            cmocka_unit_test(test_mpi_callbacks_run_once),
            cmocka_unit_test(test_mpi_task_failure_reports_code_and_message),
            cmocka_unit_test(test_mpi_initializer_runs_on_ranks),
            cmocka_unit_test(test_mpi_bad_input_named_errors),
            cmocka_unit_test(test_mpi_fewer_processes_than_ranks),
            cmocka_unit_test(test_mpi_terminate_and_close),
            cmocka_unit_test(test_mpi_empty_input_and_get_timeout),
            cmocka_unit_test(test_mpi_imap_gen_yields_in_order),
        };
        rc = cmocka_run_group_tests(tests, NULL, NULL);
        announce(0);
    }
    MPI_Finalize();
    return rc;
}
