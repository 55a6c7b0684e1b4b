/* manager_list_slice: l[a:b:c], l[a:b:c] = seq and del l[a:b:c] through
 * the C list proxy give, on our server, exactly what they give on CPython's
 * own SyncManager (a real python3 list): a grid of bounds and steps, each
 * result and each error alike; the errors are Python's (ValueError for a
 * step of 0 and an extended slice of the wrong size, the list unchanged);
 * a slice set in a forked child is what the parent reads. */
#include "pyserver_testutil.h"

#include <mpipc/error.h>
#include <mpipc/manager_data.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NONE       MP_LISTPROXY_NONE
#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

static mp_obj *ls_range(int64_t lo, int64_t hi)
{
    mp_obj *l = mp_obj_list_new();
    assert_non_null(l);
    for (int64_t i = lo; i < hi; i++)
        assert_int_equal(mp_obj_list_append(l, mt_int(i)), 0);
    return l;
}

/* l = list(range(10)) again, on either server. */
static void ls_reset(mp_listproxy *l)
{
    mp_obj *r = ls_range(0, 10);
    TU_ASSERT_STATUS(mp_listproxy_clear(l), 0);
    TU_ASSERT_STATUS(mp_listproxy_extend(l, r), 0);
    mp_obj_free(r);
}

/* A growing transcript of what the calls gave. */
struct ls_text {
    char *p;
    size_t len, cap;
};

static void ls_printf(struct ls_text *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void ls_printf(struct ls_text *t, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    assert_true(n >= 0 && (size_t)n < sizeof line);
    if (t->len + (size_t)n + 1 > t->cap) {
        t->cap = (t->cap + (size_t)n + 1) * 2;
        t->p = realloc(t->p, t->cap);
        assert_non_null(t->p);
    }
    memcpy(t->p + t->len, line, (size_t)n + 1);
    t->len += (size_t)n;
}

/* A call's status and the list after it: "0 [..]" or "MP_EVALUE [..]". */
static void ls_note(struct ls_text *t, mp_listproxy *l, int rc, const mp_obj *got)
{
    mp_obj *now = NULL;
    TU_ASSERT_STATUS(mp_listproxy_copy(l, &now), 0);
    char *a = NULL, *b = NULL;
    if (got)
        assert_int_equal(mp_obj_repr(got, &a), 0);
    assert_int_equal(mp_obj_repr(now, &b), 0);
    ls_printf(t, " %s %s %s\n", rc == 0 ? "ok" : mp_errname(rc), a ? a : "-", b);
    free(a);
    free(b);
    mp_obj_free(now);
}

static const ssize_t ls_bounds[] = {NONE, 0, 2, 9, -1, -4, 20, -20};
static const ssize_t ls_steps[] = {NONE, 1, 2, -1, -3, 0, 4};

/* Every slice of the grid, got, set and deleted on a fresh range(10). The
 * seq set has the slice's own size, or one more (every other case). */
static void ls_grid(mp_manager *m, struct ls_text *t)
{
    mp_listproxy *l = NULL;
    mp_obj *r = ls_range(0, 10);
    TU_ASSERT_STATUS(mp_manager_list(m, r, &l), 0);
    mp_obj_free(r);
    size_t k = 0;
    for (size_t i = 0; i < N_ELEMS(ls_bounds); i++)
        for (size_t j = 0; j < N_ELEMS(ls_bounds); j++)
            for (size_t s = 0; s < N_ELEMS(ls_steps); s++, k++) {
                ssize_t a = ls_bounds[i], b = ls_bounds[j], c = ls_steps[s];
                char f[3][24];
                for (int q = 0; q < 3; q++) {
                    ssize_t v = q == 0 ? a : q == 1 ? b : c;
                    if (v == NONE)
                        strcpy(f[q], "None");
                    else
                        snprintf(f[q], sizeof f[q], "%zd", v);
                }
                ls_printf(t, "[%s:%s:%s]", f[0], f[1], f[2]);
                mp_obj *got = NULL;
                int rc = mp_listproxy_get_slice(l, a, b, c, &got);
                ls_note(t, l, rc, got);
                ssize_t n = got ? mp_obj_len(got) : 3;
                mp_obj_free(got);
                mp_obj *seq = ls_range(100, 100 + n + (ssize_t)(k % 2));
                rc = mp_listproxy_set_slice(l, a, b, c, seq);
                mp_obj_free(seq);
                ls_note(t, l, rc, NULL);
                ls_reset(l);
                rc = mp_listproxy_del_slice(l, a, b, c);
                ls_note(t, l, rc, NULL);
                ls_reset(l);
            }
    mp_listproxy_free(l);
}

/* Python's results, spelled out, for a few slices of range(10). */
static void ls_known(mp_manager *m)
{
    mp_listproxy *l = NULL;
    mp_obj *r = ls_range(0, 10), *got = NULL;
    TU_ASSERT_STATUS(mp_manager_list(m, r, &l), 0);
    TU_ASSERT_STATUS(mp_listproxy_get_slice(l, NONE, NONE, -1, &got), 0);
    mt_take_repr(got, "[9, 8, 7, 6, 5, 4, 3, 2, 1, 0]");
    TU_ASSERT_STATUS(mp_listproxy_get_slice(l, -3, NONE, NONE, &got), 0);
    mt_take_repr(got, "[7, 8, 9]");
    TU_ASSERT_STATUS(mp_listproxy_get_slice(l, 8, 1, -3, &got), 0);
    mt_take_repr(got, "[8, 5, 2]");
    TU_ASSERT_STATUS(mp_listproxy_get_slice(l, 2, 10, NONE, &got), 0);
    mt_take_repr(got, "[2, 3, 4, 5, 6, 7, 8, 9]");

    /* l[1:3] = ['a', 'b', 'c'] grows the list; l[5:2] = [...] inserts at 5. */
    mp_obj *abc = mp_obj_build("[sss]", "a", "b", "c");
    TU_ASSERT_STATUS(mp_listproxy_set_slice(l, 1, 3, NONE, abc), 0);
    TU_ASSERT_STATUS(mp_listproxy_copy(l, &got), 0);
    mt_take_repr(got, "[0, 'a', 'b', 'c', 3, 4, 5, 6, 7, 8, 9]");
    mp_obj *x = mp_obj_build("(s)", "x");
    TU_ASSERT_STATUS(mp_listproxy_set_slice(l, 5, 2, NONE, x), 0);
    TU_ASSERT_STATUS(mp_listproxy_copy(l, &got), 0);
    mt_take_repr(got, "[0, 'a', 'b', 'c', 3, 'x', 4, 5, 6, 7, 8, 9]");
    TU_ASSERT_STATUS(mp_listproxy_del_slice(l, 1, 6, NONE), 0);
    TU_ASSERT_STATUS(mp_listproxy_del_slice(l, NONE, NONE, 2), 0);
    TU_ASSERT_STATUS(mp_listproxy_copy(l, &got), 0);
    mt_take_repr(got, "[4, 6, 8]");

    /* Python's ValueErrors, with Python's words, and nothing changed. */
    TU_ASSERT_STATUS(mp_listproxy_set_slice(l, NONE, NONE, -1, abc), 0);
    TU_ASSERT_STATUS(mp_listproxy_set_slice(l, NONE, NONE, 2, abc), MP_EVALUE);
    assert_non_null(strstr(mp_errmsg(MP_EVALUE), "attempt to assign sequence of size 3 to "
                                                 "extended slice of size 2"));
    TU_ASSERT_STATUS(mp_listproxy_get_slice(l, NONE, NONE, 0, &got), MP_EVALUE);
    assert_null(got);
    assert_non_null(strstr(mp_errmsg(MP_EVALUE), "slice step cannot be zero"));
    TU_ASSERT_STATUS(mp_listproxy_del_slice(l, 0, 1, 0), MP_EVALUE);
    TU_ASSERT_STATUS(mp_listproxy_set_slice(l, 0, 1, 0, abc), MP_EVALUE);
    TU_ASSERT_STATUS(mp_listproxy_copy(l, &got), 0);
    mt_take_repr(got, "['c', 'b', 'a']");

    /* Bad input from C: named errors, before anything is sent. */
    mp_obj *str = mt_str("abc");
    TU_ASSERT_STATUS(mp_listproxy_set_slice(l, 0, 1, NONE, str), MP_ETYPE);
    TU_ASSERT_STATUS(mp_listproxy_set_slice(l, 0, 1, NONE, NULL), -EINVAL);
    TU_ASSERT_STATUS(mp_listproxy_set_slice(NULL, 0, 1, NONE, abc), -EINVAL);
    TU_ASSERT_STATUS(mp_listproxy_get_slice(l, 0, 1, NONE, NULL), -EINVAL);
    TU_ASSERT_STATUS(mp_listproxy_get_slice(NULL, 0, 1, NONE, &got), -EINVAL);
    assert_null(got);
    TU_ASSERT_STATUS(mp_listproxy_del_slice(NULL, 0, 1, NONE), -EINVAL);
    TU_ASSERT_STATUS(mp_listproxy_copy(l, &got), 0);
    mt_take_repr(got, "['c', 'b', 'a']");
    mp_obj_free(str);
    mp_obj_free(x);
    mp_obj_free(abc);
    mp_obj_free(r);
    mp_listproxy_free(l);
}

/* ---- across processes ------------------------------------------------------------ */

static int ls_child(void *arg)
{
    mp_listproxy *l = arg;
    mp_obj *seq = mp_obj_build("[sss]", "a", "b", "c");
    int rc = seq ? mp_listproxy_set_slice(l, NONE, NONE, -3, seq) : -ENOMEM;
    mp_obj_free(seq);
    return rc == 0 ? 0 : 1;
}

/* l[::-3] = ['a', 'b', 'c'] in a child; the parent sees it. */
static void ls_fork(mp_manager *m)
{
    mp_listproxy *l = NULL;
    mp_obj *r = ls_range(0, 8), *got = NULL;
    TU_ASSERT_STATUS(mp_manager_list(m, r, &l), 0);
    pid_t pid = tu_fork(ls_child, l);
    assert_true(pid > 0);
    assert_int_equal(tu_wait_child(pid, 30.0), 0);
    TU_ASSERT_STATUS(mp_listproxy_copy(l, &got), 0);
    mt_take_repr(got, "[0, 'c', 2, 3, 'b', 5, 6, 'a']");
    mp_obj_free(r);
    mp_listproxy_free(l);
}

/* ---- the tests ------------------------------------------------------------------- */

static void test_list_slices_on_our_server_match_python(void **state)
{
    (void)state;
    mp_manager *m = mt_start();
    ls_known(m);
    ls_fork(m);
    mp_manager_free(m);
}

static void test_list_slices_on_cpython_server_match_python(void **state)
{
    (void)state;
    const char *py;
    for (size_t pyi = 0; (py = tu_python_at(pyi)) != NULL; pyi++) {
        struct ps_server s;
        assert_int_equal(ps_start(&s, py, false, false, 0), 0);
        mp_manager *m = NULL;
        TU_ASSERT_STATUS(mp_manager_connect(&m, s.address, PS_KEY, PS_KEY_LEN, NULL), 0);
        TU_ASSERT_STATUS(mp_manager_set_timeout(m, 30.0), 0);
        ls_known(m);
        ls_fork(m);
        mp_manager_free(m);
        assert_int_equal(ps_stop(&s), 0);
    }
}

/* The grid: every answer of our server is CPython's, and the transcript
 * holds no surprise such as a traceback (a code other than these). */
static void test_list_slice_grid_our_server_equals_cpython_server(void **state)
{
    (void)state;
    struct ls_text ours = {0};
    mp_manager *m = mt_start();
    ls_grid(m, &ours);
    mp_manager_free(m);
    assert_null(strstr(ours.p, "MP_EPROTO"));
    assert_null(strstr(ours.p, "MP_ETYPE"));
    assert_non_null(strstr(ours.p, "[0:2:-1] ok [] [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]"));
    const char *py;
    for (size_t pyi = 0; (py = tu_python_at(pyi)) != NULL; pyi++) {
        struct ps_server s;
        assert_int_equal(ps_start(&s, py, true, true, 0), 0);
        TU_ASSERT_STATUS(mp_manager_connect(&m, s.address, PS_KEY, PS_KEY_LEN, NULL), 0);
        TU_ASSERT_STATUS(mp_manager_set_timeout(m, 30.0), 0);
        struct ls_text theirs = {0};
        ls_grid(m, &theirs);
        TU_ASSERT_STATUS(mp_manager_shutdown(m), 0);
        mp_manager_free(m);
        assert_int_equal(ps_stop(&s), 0);
        /* The first line that differs, to say what differed. */
        const char *a = ours.p, *b = theirs.p;
        while (*a && *a == *b)
            a++, b++;
        if (*a || *b) {
            while (a > ours.p && a[-1] != '\n')
                a--, b--;
            fail_msg("ours: %.200s\nCPython's: %.200s", a, b);
        }
        free(theirs.p);
    }
    free(ours.p);
}

int main(int argc, char **argv)
{
    tu_filter(argc, argv);
    const struct CMUnitTest tests[] = {
        TU_TEST(test_list_slices_on_our_server_match_python),
        TU_TEST(test_list_slices_on_cpython_server_match_python),
        TU_TEST(test_list_slice_grid_our_server_equals_cpython_server),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
