/*
 * pool_lazy: imap and imap_unordered over a producer (mp_pool_imap_gen),
 * Python's imap(fn, generator), across real worker processes - with the
 * memory bound Python's lacks: ten million items at a flat RSS.
 *
 * Ported from CPython's Lib/test/_test_multiprocessing.py, _TestPool:
 * test_imap, test_imap_unordered (over a generator),
 * test_imap_handle_iterable_exception and
 * test_imap_unordered_handle_iterable_exception (the generator raising).
 */
#include "pool_testutil.h"

#include <mpipc/pool.h>

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- tasks (they run in the workers) ------------------------------------ */

static int plus_one(const mp_obj *args, mp_obj **result)
{
    *result = mp_obj_int(arg_int(args, 0) + 1);
    return 0;
}
MP_TASK(plus_one);

/* x*x, but item 5 kills its own worker (a crash in a task). */
static int sqr_or_die_at_5(const mp_obj *args, mp_obj **result)
{
    int64_t x = arg_int(args, 0);
    if (x == 5)
        raise(SIGKILL);
    *result = mp_obj_int(x * x);
    return 0;
}
MP_TASK(sqr_or_die_at_5);

static int slow_sqr(const mp_obj *args, mp_obj **result)
{
    int64_t x = arg_int(args, 0);
    tu_sleep(0.05);
    *result = mp_obj_int(x * x);
    return 0;
}
MP_TASK(slow_sqr);

/* ---- producers (they run in the caller's thread) ------------------------- */

/* Python's range(n) as a generator that raises at fail_at (if >= 0). */
struct counter {
    int64_t next, n, fail_at;
    int fail_code;
    int64_t calls;
};

static int count_up(void *user, mp_obj **item)
{
    struct counter *c = user;
    c->calls++;
    if (c->next == c->fail_at)
        return c->fail_code;
    if (c->next >= c->n)
        return 0;
    *item = mp_obj_int(c->next++);
    return *item ? 1 : -ENOMEM;
}

static struct counter counter_of(int64_t n)
{
    return (struct counter){.next = 0, .n = n, .fail_at = -1, .fail_code = 0, .calls = 0};
}

/* ---- tests ------------------------------------------------------------------ */

static void test_imap_gen_yields_results_in_input_order_then_ends(void **state)
{
    (void)state;
    mp_pool *p = make_pool(2);
    size_t chunks[] = {0, 1, 7, 1000};
    for (size_t round = 0; round < sizeof chunks / sizeof chunks[0]; round++) {
        struct counter c = counter_of(500);
        mp_imap *it;
        TU_ASSERT_STATUS(mp_pool_imap_gen(p, sqr, count_up, &c, chunks[round], &it), 0);
        for (int64_t i = 0; i < 500; i++) {
            size_t index = SIZE_MAX;
            mp_obj *v = NULL;
            TU_ASSERT_STATUS(mp_imap_next(it, &index, &v, NULL, T_LONG), 1);
            assert_int_equal(index, (size_t)i);
            assert_int_equal(as_int(v), i * i);
            mp_obj_free(v);
        }
        /* Python's StopIteration, and again. */
        TU_ASSERT_STATUS(mp_imap_next(it, NULL, NULL, NULL, T_LONG), 0);
        TU_ASSERT_STATUS(mp_imap_next(it, NULL, NULL, NULL, 0), 0);
        mp_imap_free(it);
    }
    /* An empty producer ends at once. */
    struct counter c = counter_of(0);
    mp_imap *it;
    TU_ASSERT_STATUS(mp_pool_imap_gen(p, sqr, count_up, &c, 0, &it), 0);
    TU_ASSERT_STATUS(mp_imap_next(it, NULL, NULL, NULL, T_LONG), 0);
    mp_imap_free(it);
    close_join_free(p);
}

static void test_imap_unordered_gen_yields_every_item_once(void **state)
{
    (void)state;
    mp_pool *p = make_pool(3);
    enum { N = 2000 };
    struct counter c = counter_of(N);
    mp_imap *it;
    TU_ASSERT_STATUS(mp_pool_imap_unordered_gen(p, sqr, count_up, &c, 3, &it), 0);
    static unsigned char seen[N];
    memset(seen, 0, sizeof seen);
    for (int k = 0; k < N; k++) {
        size_t index = SIZE_MAX;
        mp_obj *v = NULL;
        TU_ASSERT_STATUS(mp_imap_next(it, &index, &v, NULL, T_LONG), 1);
        assert_true(index < N);
        assert_false(seen[index]);
        seen[index] = 1;
        assert_int_equal(as_int(v), (int64_t)index * (int64_t)index);
        mp_obj_free(v);
    }
    TU_ASSERT_STATUS(mp_imap_next(it, NULL, NULL, NULL, T_LONG), 0);
    mp_imap_free(it);
    close_join_free(p);
}

/* The bound the header states: at most 4 x processes x chunksize items are
 * taken from the producer ahead of the caller, however slow the caller. */
static void test_imap_gen_takes_a_bounded_number_of_items_ahead(void **state)
{
    (void)state;
    enum { PROCS = 2, CHUNK = 5, BOUND = 4 * PROCS * CHUNK };
    mp_pool *p = make_pool(PROCS);
    for (int unordered = 0; unordered < 2; unordered++) {
        struct counter c = counter_of(100000);
        mp_imap *it;
        TU_ASSERT_STATUS(unordered
                             ? mp_pool_imap_unordered_gen(p, plus_one, count_up, &c, CHUNK, &it)
                             : mp_pool_imap_gen(p, plus_one, count_up, &c, CHUNK, &it),
                         0);
        tu_sleep(0.2); /* the workers run dry; nothing more may be taken */
        assert_true(c.next > 0 && c.next <= BOUND);
        for (int k = 0; k < 1000; k++) {
            mp_obj *v = NULL;
            TU_ASSERT_STATUS(mp_imap_next(it, NULL, &v, NULL, T_LONG), 1);
            mp_obj_free(v);
            assert_true(c.next - (k + 1) <= BOUND);
        }
        int64_t taken = c.next;
        /* Freeing it mid-way never calls the producer again. */
        mp_imap_free(it);
        assert_int_equal(c.next, taken);
    }
    close_join_free(p);
}

/* Python: a generator that raises makes next() raise at its position,
 * after the items before it, and then the iteration stops. */
static void test_imap_gen_producer_failure_comes_at_its_position(void **state)
{
    (void)state;
    mp_pool *p = make_pool(2);
    for (int unordered = 0; unordered < 2; unordered++) {
        struct counter c = counter_of(100);
        c.fail_at = 10;
        c.fail_code = -42;
        mp_imap *it;
        TU_ASSERT_STATUS(unordered ? mp_pool_imap_unordered_gen(p, sqr, count_up, &c, 3, &it)
                                   : mp_pool_imap_gen(p, sqr, count_up, &c, 3, &it),
                         0);
        unsigned seen = 0;
        bool failed = false;
        for (int k = 0; k < 11; k++) {
            size_t index = SIZE_MAX;
            mp_obj *v = NULL;
            mp_task_error err;
            int rc = mp_imap_next(it, &index, &v, &err, T_LONG);
            if (rc == 1) {
                assert_true(index < 10);
                assert_int_equal(as_int(v), (int64_t)index * (int64_t)index);
                seen |= 1u << index;
                mp_obj_free(v);
                continue;
            }
            TU_ASSERT_STATUS(rc, MP_ETASK);
            assert_false(failed);
            failed = true;
            assert_int_equal(index, 10);
            assert_int_equal(err.index, 10);
            assert_int_equal(err.code, -42);
            assert_non_null(strstr(err.message, "producer failed"));
            assert_string_equal(mp_errmsg(MP_ETASK), err.message);
            if (!unordered)
                assert_int_equal(k, 10); /* in order: after the ten items */
        }
        assert_true(failed);
        assert_int_equal(seen, 0x3ffu);
        TU_ASSERT_STATUS(mp_imap_next(it, NULL, NULL, NULL, T_LONG), 0);
        assert_int_equal(c.calls, 11); /* never called after it failed */
        mp_imap_free(it);
    }
    close_join_free(p);
}

/* As the value forms: a worker dying mid-iteration fails its item only
 * (chunksize 1: the chunk is the item); the rest complete. */
static void test_imap_gen_worker_death_fails_only_that_item(void **state)
{
    (void)state;
    mp_pool *p = make_pool(2);
    struct counter c = counter_of(40);
    mp_imap *it;
    TU_ASSERT_STATUS(mp_pool_imap_gen(p, sqr_or_die_at_5, count_up, &c, 1, &it), 0);
    for (int64_t i = 0; i < 40; i++) {
        size_t index = SIZE_MAX;
        mp_obj *v = NULL;
        mp_task_error err;
        int rc = mp_imap_next(it, &index, &v, &err, T_LONG);
        assert_int_equal(index, (size_t)i);
        if (i == 5) {
            TU_ASSERT_STATUS(rc, MP_EWORKER);
            assert_int_equal(err.index, 5);
            assert_int_equal(err.code, -SIGKILL);
            assert_null(v);
            continue;
        }
        TU_ASSERT_STATUS(rc, 1);
        assert_int_equal(as_int(v), i * i);
        mp_obj_free(v);
    }
    TU_ASSERT_STATUS(mp_imap_next(it, NULL, NULL, NULL, T_LONG), 0);
    mp_imap_free(it);
    close_join_free(p);
}

/* Python: close() lets a started imap finish; join() returns after it. */
static void test_imap_gen_runs_on_after_close_and_join_waits_for_it(void **state)
{
    (void)state;
    mp_pool *p = make_pool(2);
    struct counter c = counter_of(300);
    mp_imap *it;
    TU_ASSERT_STATUS(mp_pool_imap_gen(p, sqr, count_up, &c, 2, &it), 0);
    TU_ASSERT_STATUS(mp_pool_close(p), 0);
    /* New work is refused, the iteration is not. */
    struct counter other = counter_of(3);
    mp_imap *it2 = (mp_imap *)1;
    TU_ASSERT_STATUS(mp_pool_imap_gen(p, sqr, count_up, &other, 0, &it2), MP_ECLOSED);
    assert_null(it2);
    assert_int_equal(other.calls, 0);
    /* join waits while the producer has items left. */
    TU_ASSERT_STATUS(mp_pool_join(p, 0.2), MP_ETIMEDOUT);
    for (int64_t i = 0; i < 300; i++) {
        mp_obj *v = NULL;
        TU_ASSERT_STATUS(mp_imap_next(it, NULL, &v, NULL, T_LONG), 1);
        assert_int_equal(as_int(v), i * i);
        mp_obj_free(v);
    }
    TU_ASSERT_STATUS(mp_imap_next(it, NULL, NULL, NULL, T_LONG), 0);
    TU_ASSERT_STATUS(mp_pool_join(p, T_LONG), 0);
    mp_imap_free(it);
    mp_pool_free(p);
}

/* Freeing the iterator mid-way lets a closed pool finish. */
static void test_imap_gen_free_mid_way_releases_the_pool(void **state)
{
    (void)state;
    mp_pool *p = make_pool(2);
    struct counter c = counter_of(1000000);
    mp_imap *it;
    TU_ASSERT_STATUS(mp_pool_imap_unordered_gen(p, sqr, count_up, &c, 4, &it), 0);
    mp_obj *v = NULL;
    TU_ASSERT_STATUS(mp_imap_next(it, NULL, &v, NULL, T_LONG), 1);
    mp_obj_free(v);
    TU_ASSERT_STATUS(mp_pool_close(p), 0);
    mp_imap_free(it);
    TU_ASSERT_STATUS(mp_pool_join(p, T_LONG), 0);
    mp_pool_free(p);
}

/* terminate(): the missing items give MP_ETERMINATED, as for imap. */
static void test_imap_gen_after_terminate_reports_terminated(void **state)
{
    (void)state;
    mp_pool *p = make_pool(2);
    struct counter c = counter_of(1000);
    mp_imap *it;
    TU_ASSERT_STATUS(mp_pool_imap_gen(p, slow_sqr, count_up, &c, 1, &it), 0);
    TU_ASSERT_STATUS(mp_pool_terminate(p), 0);
    int rc;
    mp_obj *v = NULL;
    while ((rc = mp_imap_next(it, NULL, &v, NULL, T_LONG)) == 1) {
        mp_obj_free(v);
        v = NULL;
    }
    TU_ASSERT_STATUS(rc, MP_ETERMINATED);
    TU_ASSERT_STATUS(mp_imap_next(it, NULL, NULL, NULL, T_LONG), MP_ETERMINATED);
    mp_imap_free(it);
    TU_ASSERT_STATUS(mp_pool_join(p, T_LONG), 0);
    mp_pool_free(p);
}

/* Python's iterators outlive a pool dropped by "with": here the iterator is
 * still valid after mp_pool_free, answers MP_ETERMINATED for what is
 * missing, never calls the producer again, and frees cleanly. */
static void test_imap_gen_iterator_outlives_its_pool(void **state)
{
    (void)state;
    for (int unordered = 0; unordered < 2; unordered++) {
        mp_pool *p = make_pool(2);
        struct counter c = counter_of(100000);
        mp_imap *it;
        TU_ASSERT_STATUS(unordered ? mp_pool_imap_unordered_gen(p, slow_sqr, count_up, &c, 1, &it)
                                   : mp_pool_imap_gen(p, slow_sqr, count_up, &c, 1, &it),
                         0);
        mp_obj *v = NULL;
        TU_ASSERT_STATUS(mp_imap_next(it, NULL, &v, NULL, T_LONG), 1);
        mp_obj_free(v);
        mp_pool_free(p); /* terminates and joins */
        int64_t calls = c.calls;
        int rc;
        while ((rc = mp_imap_next(it, NULL, &v, NULL, T_LONG)) == 1) {
            mp_obj_free(v);
            v = NULL;
        }
        TU_ASSERT_STATUS(rc, MP_ETERMINATED);
        assert_int_equal(c.calls, calls);
        mp_imap_free(it);
    }
}

static void test_imap_gen_bad_arguments_are_refused_and_call_nothing(void **state)
{
    (void)state;
    mp_pool *p = make_pool(1);
    struct counter c = counter_of(10);
    mp_imap *it = (mp_imap *)1;
    TU_ASSERT_STATUS(mp_pool_imap_gen(p, NULL, count_up, &c, 0, &it), -EINVAL);
    assert_null(it);
    TU_ASSERT_STATUS(mp_pool_imap_gen(p, sqr, NULL, &c, 0, &it), -EINVAL);
    TU_ASSERT_STATUS(mp_pool_imap_unordered_gen(p, sqr, count_up, &c, 0, NULL), -EINVAL);
    TU_ASSERT_STATUS(mp_pool_imap_gen(NULL, sqr, count_up, &c, 0, &it), -EINVAL);
    TU_ASSERT_STATUS(mp_pool_imap_gen(p, sqr, count_up, &c, (size_t)UINT32_MAX + 1, &it), -EINVAL);
    assert_int_equal(c.calls, 0);
    TU_ASSERT_STATUS(mp_imap_next(NULL, NULL, NULL, NULL, 0), -EINVAL);
    mp_imap_free(NULL);
    TU_ASSERT_STATUS(mp_pool_terminate(p), 0);
    TU_ASSERT_STATUS(mp_pool_imap_gen(p, sqr, count_up, &c, 0, &it), MP_ECLOSED);
    assert_int_equal(c.calls, 0);
    TU_ASSERT_STATUS(mp_pool_join(p, T_LONG), 0);
    mp_pool_free(p);
}

/* ---- memory stays flat ---------------------------------------------------------- */

/* This process's peak resident set (VmHWM), in KiB. */
static long peak_rss_kib(void)
{
    FILE *f = fopen("/proc/self/status", "re");
    assert_non_null(f);
    char line[256];
    long kib = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %ld kB", &kib) == 1)
            break;
    fclose(f);
    assert_true(kib > 0);
    return kib;
}

/* Take items [from, to) of an ordered iteration over count_up with
 * plus_one, checking each; returns how many were wrong. */
static int64_t take_range(mp_imap *it, int64_t from, int64_t to)
{
    int64_t wrong = 0;
    for (int64_t i = from; i < to; i++) {
        size_t index = SIZE_MAX;
        mp_obj *v = NULL;
        int rc = mp_imap_next(it, &index, &v, NULL, T_LONG);
        int64_t x = -1;
        if (rc != 1 || index != (size_t)i || mp_obj_get_int(v, &x) < 0 || x != i + 1)
            wrong++;
        mp_obj_free(v);
        if (rc != 1)
            break;
    }
    return wrong;
}

/* The bound: ten million items through imap over a producer with a
 * flat RSS (Python's imap would hold every pickled task). The peak after a
 * warm-up (the allocator's arenas, the pool's buffers at their size) may
 * grow by a few MiB at most over the rest of the run. Under memcheck, and
 * under a sanitizer (its allocator keeps freed blocks in quarantine), the
 * run is shorter and the bound looser, but the test still runs.
 * MPIPC_TEST_IMAP_ITEMS sets the count (the warm-up the same share of it):
 * the forkserver and spawn runs take a million (the parent's side, whose
 * RSS this measures, is the fork run's), the sanitizer presets fewer
 * (tests/CMakeLists.txt, CMakePresets.json). */
static void test_imap_gen_ten_million_items_keep_rss_flat(void **state)
{
    (void)state;
    int64_t n = 10 * 1000 * 1000, warm = 1000 * 1000;
    long bound_kib = 4 * 1024;
    if (tu_under_valgrind()) {
        n = 40000;
        warm = 10000;
        bound_kib = 64 * 1024;
    } else if (tu_sanitized()) {
        n = 1000 * 1000;
        warm = 300 * 1000;
        bound_kib = 512 * 1024;
    }
    const char *items = getenv("MPIPC_TEST_IMAP_ITEMS");
    if (items && atoll(items) >= 10000) {
        int64_t want = atoll(items);
        warm = warm * want / n;
        n = want;
    }
    mp_pool *p = make_pool(2);
    struct counter c = counter_of(n);
    mp_imap *it;
    double t0 = tu_now();
    TU_ASSERT_STATUS(mp_pool_imap_gen(p, plus_one, count_up, &c, 1000, &it), 0);
    assert_int_equal(take_range(it, 0, warm), 0);
    long before = peak_rss_kib();
    assert_int_equal(take_range(it, warm, n), 0);
    long after = peak_rss_kib();
    TU_ASSERT_STATUS(mp_imap_next(it, NULL, NULL, NULL, T_LONG), 0);
    double secs = tu_now() - t0;
    mp_imap_free(it);
    close_join_free(p);
    print_message("imap_gen: %lld items in %.1f s; VmHWM %ld KiB after %lld items, %ld KiB at "
                  "the end (+%ld KiB)\n",
                  (long long)n, secs, before, (long long)warm, after, after - before);
    assert_true(after - before < bound_kib);
}

int main(int argc, char **argv)
{
    if (pool_test_main(argc, argv) < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        TU_TEST(test_imap_gen_yields_results_in_input_order_then_ends),
        TU_TEST(test_imap_unordered_gen_yields_every_item_once),
        TU_TEST(test_imap_gen_takes_a_bounded_number_of_items_ahead),
        TU_TEST(test_imap_gen_producer_failure_comes_at_its_position),
        TU_TEST(test_imap_gen_worker_death_fails_only_that_item),
        TU_TEST(test_imap_gen_runs_on_after_close_and_join_waits_for_it),
        TU_TEST(test_imap_gen_free_mid_way_releases_the_pool),
        TU_TEST(test_imap_gen_after_terminate_reports_terminated),
        TU_TEST(test_imap_gen_iterator_outlives_its_pool),
        TU_TEST(test_imap_gen_bad_arguments_are_refused_and_call_nothing),
        TU_TEST(test_imap_gen_ten_million_items_keep_rss_flat),
    };
    return POOL_RUN_TESTS(tests);
}
