/*
 * pool_bytes: the bytes task form's map and imap (mp_pool_map_bytes*,
 * mp_pool_imap*_bytes): Python's Pool.map / imap / imap_unordered over a
 * list of bytes, across real worker processes, worker deaths included.
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

/* Python's bytes(reversed(b)) + b"!": the input reversed, one byte more. */
static int reverse_bang(const void *in, size_t in_len, void **out, size_t *out_len)
{
    unsigned char *o = malloc(in_len + 1);
    if (!o)
        return mp_task_fail(ENOMEM, "no memory");
    for (size_t i = 0; i < in_len; i++)
        o[i] = ((const unsigned char *)in)[in_len - 1 - i];
    o[in_len] = '!';
    *out = o;
    *out_len = in_len + 1;
    return 0;
}
MP_TASK(reverse_bang);

/* The first byte decides: 'F' fails (Python's raise), 'K' kills the worker,
 * 'E' gives an empty output; otherwise reverse_bang. */
static int special(const void *in, size_t in_len, void **out, size_t *out_len)
{
    const unsigned char *b = in;
    if (in_len > 0 && b[0] == 'F')
        return mp_task_fail(77, "item says fail");
    if (in_len > 0 && b[0] == 'K')
        raise(SIGKILL);
    if (in_len > 0 && b[0] == 'E') {
        *out = NULL;
        *out_len = 0;
        return 0;
    }
    return reverse_bang(in, in_len, out, out_len);
}
MP_TASK(special);

/* ---- helpers ------------------------------------------------------------------ */

enum { N = 60 };

/* Item i: i bytes, each (i + k) & 0xff, in one static store. */
static unsigned char store[N * N];

static void make_items(struct iovec *in, size_t n)
{
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; k < i; k++)
            store[at + k] = (unsigned char)(i + k + 1);
        in[i] = (struct iovec){.iov_base = i ? store + at : NULL, .iov_len = i};
        at += i;
    }
}

/* outs[i] is reverse_bang(in[i]). */
static void check_output(const struct iovec *in, const struct iovec *out)
{
    assert_non_null(out->iov_base);
    assert_int_equal(out->iov_len, in->iov_len + 1);
    const unsigned char *a = in->iov_base, *b = out->iov_base;
    for (size_t k = 0; k < in->iov_len; k++)
        assert_int_equal(b[k], a[in->iov_len - 1 - k]);
    assert_int_equal(b[in->iov_len], '!');
}

static void free_outs(struct iovec *outs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(outs[i].iov_base);
}

static struct iovec str_item(const char *s)
{
    return (struct iovec){.iov_base = (void *)s, .iov_len = strlen(s)};
}

/* ---- map ------------------------------------------------------------------------ */

static void test_map_bytes_returns_every_output_in_place(void **state)
{
    (void)state;
    mp_pool *p = make_pool(2);
    struct iovec in[N], outs[N];
    make_items(in, N);
    size_t chunks[] = {0, 1, 7, 100};
    for (size_t c = 0; c < sizeof chunks / sizeof chunks[0]; c++) {
        memset(outs, 0xab, sizeof outs);
        mp_task_error err;
        TU_ASSERT_STATUS(mp_pool_map_bytes(p, reverse_bang, in, N, outs, chunks[c], &err, T_LONG),
                         0);
        assert_int_equal(err.status, 0);
        for (size_t i = 0; i < N; i++)
            check_output(&in[i], &outs[i]);
        free_outs(outs, N);
    }
    /* An empty list: Python's map returns []. */
    TU_ASSERT_STATUS(mp_pool_map_bytes(p, reverse_bang, NULL, 0, NULL, 0, NULL, T_LONG), 0);
    close_join_free(p);
}

/* Python's map raises the first failing item's exception and returns no
 * list: here nothing is left in outs to free. */
static void test_map_bytes_failure_names_the_item_and_leaves_nothing(void **state)
{
    (void)state;
    mp_pool *p = make_pool(2);
    struct iovec in[6] = {str_item("ab"), str_item("cd"), str_item("F1"),
                          str_item("ef"), str_item("F2"), str_item("gh")};
    struct iovec outs[6];
    mp_task_error err;
    TU_ASSERT_STATUS(mp_pool_map_bytes(p, special, in, 6, outs, 1, &err, T_LONG), MP_ETASK);
    assert_int_equal(err.index, 2);
    assert_int_equal(err.code, 77);
    assert_string_equal(err.message, "item says fail");
    for (size_t i = 0; i < 6; i++) {
        assert_null(outs[i].iov_base);
        assert_int_equal(outs[i].iov_len, 0);
    }
    close_join_free(p);
}

/* A worker dying mid-map (a crash in one item's task) fails the map with
 * MP_EWORKER for that item, as the value form does; the other items ran,
 * the worker is replaced and the pool goes on. */
static void test_map_bytes_worker_death_fails_that_item_only(void **state)
{
    (void)state;
    mp_pool *p = make_pool(2);
    struct iovec in[8] = {str_item("a0"), str_item("a1"), str_item("a2"), str_item("K3"),
                          str_item("a4"), str_item("a5"), str_item("a6"), str_item("a7")};
    struct iovec outs[8];
    mp_task_error err;
    TU_ASSERT_STATUS(mp_pool_map_bytes(p, special, in, 8, outs, 1, &err, T_LONG), MP_EWORKER);
    assert_int_equal(err.status, MP_EWORKER);
    assert_int_equal(err.index, 3);
    assert_int_equal(err.code, -SIGKILL);
    assert_non_null(strstr(err.message, "killed by signal"));
    for (size_t i = 0; i < 8; i++)
        assert_null(outs[i].iov_base);

    /* The async form keeps the outputs of the items that did run. */
    mp_result *r;
    TU_ASSERT_STATUS(mp_pool_map_bytes_async(p, special, in, 8, outs, 1, NULL, &r), 0);
    TU_ASSERT_STATUS(mp_result_get(r, NULL, &err, T_LONG), MP_EWORKER);
    assert_int_equal(err.index, 3);
    assert_null(outs[3].iov_base);
    for (size_t i = 0; i < 8; i++)
        if (i != 3)
            check_output(&in[i], &outs[i]);
    free_outs(outs, 8);
    mp_result_free(r);

    /* The pool still works. */
    struct iovec ok[2] = {str_item("xy"), str_item("z")}, okout[2];
    TU_ASSERT_STATUS(mp_pool_map_bytes(p, special, ok, 2, okout, 0, NULL, T_LONG), 0);
    check_output(&ok[0], &okout[0]);
    check_output(&ok[1], &okout[1]);
    free_outs(okout, 2);
    close_join_free(p);
}

static void count_cb(mp_result *r, void *user)
{
    (void)r;
    __atomic_add_fetch((int *)user, 1, __ATOMIC_SEQ_CST);
}

static void test_map_bytes_async_runs_its_callback_and_keeps_empty_outputs(void **state)
{
    (void)state;
    mp_pool *p = make_pool(2);
    struct iovec in[3] = {str_item("E"), str_item(""), str_item("abc")};
    struct iovec outs[3];
    int calls = 0;
    mp_callbacks cbs = {.callback = count_cb, .error_callback = NULL, .user = &calls};
    mp_result *r;
    TU_ASSERT_STATUS(mp_pool_map_bytes_async(p, special, in, 3, outs, 0, &cbs, &r), 0);
    TU_ASSERT_STATUS(mp_result_wait(r, T_LONG), 0);
    TU_ASSERT_STATUS(mp_result_successful(r), 1);
    assert_int_equal(__atomic_load_n(&calls, __ATOMIC_SEQ_CST), 1);
    /* b"" out of "E": a buffer of length 0 (freeable), not a failure. */
    assert_non_null(outs[0].iov_base);
    assert_int_equal(outs[0].iov_len, 0);
    check_output(&in[1], &outs[1]);
    check_output(&in[2], &outs[2]);
    free_outs(outs, 3);
    mp_result_free(r);
    close_join_free(p);
}

static void test_map_bytes_bad_arguments_are_refused(void **state)
{
    (void)state;
    mp_pool *p = make_pool(1);
    struct iovec in[2] = {str_item("a"), {.iov_base = NULL, .iov_len = 3}};
    struct iovec outs[2] = {{(void *)1, 9}, {(void *)1, 9}};
    TU_ASSERT_STATUS(mp_pool_map_bytes(p, NULL, in, 1, outs, 0, NULL, T_LONG), -EINVAL);
    TU_ASSERT_STATUS(mp_pool_map_bytes(p, reverse_bang, in, 2, outs, 0, NULL, T_LONG), -EINVAL);
    TU_ASSERT_STATUS(mp_pool_map_bytes(p, reverse_bang, NULL, 1, outs, 0, NULL, T_LONG), -EINVAL);
    TU_ASSERT_STATUS(mp_pool_map_bytes(p, reverse_bang, in, 1, NULL, 0, NULL, T_LONG), -EINVAL);
    /* Refused before anything is written. */
    assert_ptr_equal(outs[0].iov_base, (void *)1);
    mp_imap *it = (mp_imap *)1;
    TU_ASSERT_STATUS(mp_pool_imap_bytes(p, reverse_bang, in, 2, outs, 0, &it), -EINVAL);
    assert_null(it);
    TU_ASSERT_STATUS(mp_pool_close(p), 0);
    TU_ASSERT_STATUS(mp_pool_map_bytes(p, reverse_bang, in, 1, outs, 0, NULL, T_LONG), MP_ECLOSED);
    TU_ASSERT_STATUS(mp_pool_imap_unordered_bytes(p, reverse_bang, in, 1, outs, 0, &it),
                     MP_ECLOSED);
    TU_ASSERT_STATUS(mp_pool_join(p, T_LONG), 0);
    mp_pool_free(p);
}

/* ---- imap ------------------------------------------------------------------------ */

static void test_imap_bytes_yields_in_order_and_a_dead_worker_fails_one_item(void **state)
{
    (void)state;
    mp_pool *p = make_pool(2);
    struct iovec in[8] = {str_item("a0"), str_item("a1"), str_item("a2"), str_item("K3"),
                          str_item("a4"), str_item("F5"), str_item("a6"), str_item("a7")};
    struct iovec outs[8];
    mp_imap *it;
    TU_ASSERT_STATUS(mp_pool_imap_bytes(p, special, in, 8, outs, 0, &it), 0);
    for (size_t i = 0; i < 8; i++) {
        size_t index = SIZE_MAX;
        mp_task_error err;
        int rc = mp_imap_next(it, &index, NULL, &err, T_LONG);
        assert_int_equal(index, i);
        if (i == 3) {
            TU_ASSERT_STATUS(rc, MP_EWORKER);
            assert_int_equal(err.code, -SIGKILL);
            assert_null(outs[i].iov_base);
        } else if (i == 5) {
            TU_ASSERT_STATUS(rc, MP_ETASK);
            assert_int_equal(err.code, 77);
            assert_null(outs[i].iov_base);
        } else {
            TU_ASSERT_STATUS(rc, 1);
            check_output(&in[i], &outs[i]);
        }
    }
    TU_ASSERT_STATUS(mp_imap_next(it, NULL, NULL, NULL, T_LONG), 0);
    mp_imap_free(it);
    free_outs(outs, 8);
    close_join_free(p);
}

static void test_imap_unordered_bytes_yields_every_item_once(void **state)
{
    (void)state;
    mp_pool *p = make_pool(3);
    struct iovec in[N], outs[N];
    make_items(in, N);
    mp_imap *it;
    TU_ASSERT_STATUS(mp_pool_imap_unordered_bytes(p, reverse_bang, in, N, outs, 2, &it), 0);
    unsigned char seen[N] = {0};
    for (size_t k = 0; k < N; k++) {
        size_t index = SIZE_MAX;
        TU_ASSERT_STATUS(mp_imap_next(it, &index, NULL, NULL, T_LONG), 1);
        assert_true(index < N);
        assert_false(seen[index]);
        seen[index] = 1;
        check_output(&in[index], &outs[index]);
    }
    TU_ASSERT_STATUS(mp_imap_next(it, NULL, NULL, NULL, T_LONG), 0);
    mp_imap_free(it);
    free_outs(outs, N);
    close_join_free(p);
}

/* A megabyte item each way. */
static void test_map_bytes_carries_large_items(void **state)
{
    (void)state;
    mp_pool *p = make_pool(2);
    size_t len = (size_t)1 << 20;
    unsigned char *big = malloc(len);
    assert_non_null(big);
    for (size_t i = 0; i < len; i++)
        big[i] = (unsigned char)(i * 7);
    struct iovec in[2] = {{big, len}, {big, len / 2}}, outs[2];
    TU_ASSERT_STATUS(mp_pool_map_bytes(p, reverse_bang, in, 2, outs, 1, NULL, T_LONG), 0);
    check_output(&in[0], &outs[0]);
    check_output(&in[1], &outs[1]);
    free_outs(outs, 2);
    free(big);
    close_join_free(p);
}

int main(int argc, char **argv)
{
    if (pool_test_main(argc, argv) < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        TU_TEST(test_map_bytes_returns_every_output_in_place),
        TU_TEST(test_map_bytes_failure_names_the_item_and_leaves_nothing),
        TU_TEST(test_map_bytes_worker_death_fails_that_item_only),
        TU_TEST(test_map_bytes_async_runs_its_callback_and_keeps_empty_outputs),
        TU_TEST(test_map_bytes_bad_arguments_are_refused),
        TU_TEST(test_imap_bytes_yields_in_order_and_a_dead_worker_fails_one_item),
        TU_TEST(test_imap_unordered_bytes_yields_every_item_once),
        TU_TEST(test_map_bytes_carries_large_items),
    };
    return POOL_RUN_TESTS(tests);
}
