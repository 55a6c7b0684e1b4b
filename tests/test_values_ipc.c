/* values_ipc: sets, frozensets and bytearrays between processes - through
 * a Queue from a child process, and through a manager dict (a set as a
 * value, a frozenset as a key, read and written by a forked child) - keep
 * their types and contents, as Python's Queue and DictProxy keep them. */
#include "mgr_testutil.h"
#include "queue_testutil.h"

#include <mpipc/manager.h>
#include <mpipc/obj.h>
#include <mpipc/process.h>
#include <mpipc/queue.h>

#include <stdlib.h>
#include <string.h>

static mp_obj *must(mp_obj *o)
{
    assert_non_null(o);
    return o;
}

/* A set or frozenset of n small ints from v. Never fails in a child's
 * hands: a child checks for NULL itself. */
static mp_obj *ints(bool frozen, size_t n, const int64_t *v)
{
    mp_obj *s = frozen ? mp_obj_frozenset_new() : mp_obj_set_new();
    for (size_t i = 0; s && i < n; i++)
        if (mp_obj_set_add(s, mp_obj_int(v[i])) != 0) {
            mp_obj_free(s);
            return NULL;
        }
    return s;
}

/* [{1, 2}, frozenset({3}), bytearray(b'ab'), {frozenset({1, 2}): bytearray(b'')}] */
static mp_obj *sample(void)
{
    static const int64_t v[] = {1, 2, 3};
    mp_obj *l = mp_obj_list_new(), *d = mp_obj_dict_new();
    mp_obj *items[] = {ints(false, 2, v), ints(true, 1, v + 2), mp_obj_bytearray("ab", 2), d};
    bool ok = l && d && items[0] && items[1] && items[2];
    ok = ok && mp_obj_dict_set(d, ints(true, 2, v), mp_obj_bytearray(NULL, 0)) == 0;
    for (size_t i = 0; i < 4; i++) {
        if (ok && mp_obj_list_append(l, items[i]) == 0)
            continue;
        ok = false;
        mp_obj_free(items[i]);
    }
    if (!ok) {
        mp_obj_free(l);
        return NULL;
    }
    return l;
}

#define SAMPLE_REPR                                                                                \
    "[{1, 2}, frozenset({3}), bytearray(b'ab'), {frozenset({1, 2}): bytearray(b'')}]"

static int put_sample(void *arg)
{
    watchdog();
    mp_obj *o = sample();
    if (!o)
        return 2;
    int rc = mp_queue_put_obj(arg, o, T_LONG);
    mp_obj_free(o);
    return rc == 0 ? 0 : 1;
}

static void test_a_queue_carries_sets_frozensets_and_bytearrays_between_processes(void **state)
{
    (void)state;
    mp_queue *q;
    TU_ASSERT_STATUS(mp_queue_new(&q, 0), 0);
    mp_process *p = spawn(put_sample, q);
    mp_obj *got = NULL;
    TU_ASSERT_STATUS(mp_queue_get_obj(q, &got, T_LONG), 0);
    assert_int_equal(finish(p, T_LONG), 0);
    char *r;
    TU_ASSERT_STATUS(mp_obj_repr(got, &r), 0);
    assert_string_equal(r, SAMPLE_REPR);
    free(r);
    mp_obj *want = must(sample());
    assert_true(mp_obj_equal(got, want));
    assert_int_equal(mp_obj_type(mp_obj_list_get(got, 2)), MP_TYPE_BYTEARRAY);
    mp_obj_free(want);
    mp_obj_free(got);
    mp_queue_free(q);
}

/* The child: d[frozenset({2, 1})] is the set {3, 4}; it adds d['ba'] and
 * replaces the set with {5}. Exit 0 when all went as Python would. */
static int child_uses_the_dict(void *arg)
{
    struct mt_shared *sh = arg;
    static const int64_t key[] = {2, 1}, five[] = {5};
    mp_obj *k = ints(true, 2, key), *v = NULL;
    if (!k || mp_dictproxy_get(sh->d, k, &v) != 0)
        return 1;
    int rc = mp_obj_type(v) == MP_TYPE_SET && mp_obj_len(v) == 2 ? 0 : 2;
    mp_obj_free(v);
    mp_obj *ba = mp_obj_bytearray("xy", 2), *bk = mp_obj_str_cstr("ba"), *s5 = ints(false, 1, five);
    if (rc == 0 &&
        (!ba || !bk || !s5 || mp_dictproxy_set(sh->d, bk, ba) != 0 || mp_dictproxy_set(sh->d, k, s5) != 0))
        rc = 3;
    mp_obj_free(ba);
    mp_obj_free(bk);
    mp_obj_free(s5);
    mp_obj_free(k);
    return rc;
}

static void test_a_manager_dict_keeps_set_values_frozenset_keys_and_bytearrays(void **state)
{
    (void)state;
    static const int64_t key[] = {1, 2}, val[] = {3, 4};
    mp_manager *m = mt_start();
    struct mt_shared sh;
    memset(&sh, 0, sizeof sh);
    TU_ASSERT_STATUS(mp_manager_dict(m, NULL, &sh.d), 0);
    mp_obj *k = must(ints(true, 2, key)), *v = must(ints(false, 2, val));
    TU_ASSERT_STATUS(mp_dictproxy_set(sh.d, k, v), 0);
    /* a set as a key is Python's TypeError (unhashable), here as there */
    TU_ASSERT_STATUS(mp_dictproxy_set(sh.d, v, k), MP_ETYPE);
    mp_obj_free(v);
    pid_t pid = tu_fork(child_uses_the_dict, &sh);
    assert_int_equal(tu_wait_child(pid, MT_LONG), 0);
    mp_obj *o;
    TU_ASSERT_STATUS(mp_dictproxy_get(sh.d, k, &o), 0);
    mt_take_repr(o, "{5}");
    TU_ASSERT_STATUS(mp_dictproxy_copy(sh.d, &o), 0);
    mt_take_repr(o, "{frozenset({1, 2}): {5}, 'ba': bytearray(b'xy')}");
    mp_obj_free(k);
    mp_dictproxy_free(sh.d);
    mp_manager_free(m);
}

int main(int argc, char **argv)
{
    tu_filter(argc, argv);
    const struct CMUnitTest tests[] = {
        TU_TEST(test_a_queue_carries_sets_frozensets_and_bytearrays_between_processes),
        TU_TEST(test_a_manager_dict_keeps_set_values_frozenset_keys_and_bytearrays),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
