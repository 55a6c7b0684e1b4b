/*
 * sync_value: Value and Array shared with forked processes
 * (src/sync/sync_value.c; _TestValue and _TestArray in
 * Lib/test/_test_multiprocessing.py). Its siblings are test_sync_lock,
 * test_sync_event and test_sync_barrier.
 *
 * Children are real processes (tu_fork); they report through their exit
 * status and shared memory, and the parent asserts. A test name filter may
 * be given as the first argument (cmocka glob): test_sync_value '*array*'.
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
    for (ssize_t i = 1; i < mp_array_len(a); i++) {
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
        TU_ASSERT_STATUS(mp_array_len(NULL), -EINVAL);
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
        TU_TEST(test_value_is_shared_like_python),
        TU_TEST(test_value_types_ranges_and_lock_nesting),
        TU_TEST(test_array_is_shared_like_python),
    };
    tu_filter(argc, argv);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
