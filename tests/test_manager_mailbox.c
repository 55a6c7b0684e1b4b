/*
 * manager_mailbox: a started manager's shared-memory mailboxes against its
 * sockets - values of every size around a slot, more connections than slots,
 * socket clients served while mailboxes keep the server busy.
 */
#include "mgr_testutil.h"

#include <mpipc/manager.h>
#include <mpipc/obj.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static bool info_mailbox(mp_manager *m)
{
    mp_obj *info;
    TU_ASSERT_STATUS(mp_manager_info(m, &info), 0);
    bool v = false;
    assert_int_equal(mp_obj_get_bool(mp_obj_dict_get_cstr(info, "mailbox"), &v), 0);
    mp_obj_free(info);
    return v;
}

/* Sizes around a mailbox slot's capacity (src/manager/mgr.h: 960 bytes of pickle),
 * so requests and replies go by the slot, by the socket, and switch. */
static const size_t mail_sizes[] = {0,   1,    100,  880,  900,   920, 930, 940,    950, 960,
                                    970, 1000, 1100, 4000, 70000, 3,   950, 100000, 10};

/* Set and read back values of every size; returns 0 or a failure code. */
static int mail_roundtrips(mp_dictproxy *d, unsigned seed)
{
    unsigned char *buf = malloc(100000);
    if (!buf)
        return 90;
    for (size_t k = 0; k < sizeof mail_sizes / sizeof mail_sizes[0]; k++) {
        size_t n = mail_sizes[k];
        for (size_t i = 0; i < n; i++)
            buf[i] = (unsigned char)(seed + k + i * 7);
        if (mp_dictproxy_set_bytes(d, "v", buf, n) != 0) {
            free(buf);
            return 91;
        }
        void *back = NULL;
        size_t len = 0;
        int rc = mp_dictproxy_get_bytes(d, "v", &back, &len);
        bool same = rc == 0 && len == n && (n == 0 || memcmp(back, buf, n) == 0);
        free(back);
        int64_t c;
        if (!same || mp_dictproxy_add_int(d, "count", 1, &c) != 0) {
            free(buf);
            return 92;
        }
    }
    free(buf);
    return 0;
}

static int child_mail_roundtrips(void *arg)
{
    mp_dictproxy *d = arg;
    return mail_roundtrips(d, 77);
}

/* A started manager carries calls through shared memory; a value of any
 * size still comes back whole, in a child too, and a handle that connects
 * by address (no shared memory) talks by its socket alone - the same
 * results either way. */
static void test_started_manager_calls_go_through_mailboxes_of_any_size(void **state)
{
    (void)state;
    mp_manager *m = mt_start();
    assert_true(info_mailbox(m));
    mp_dictproxy *d;
    TU_ASSERT_STATUS(mp_manager_dict_named(m, "mail", NULL, &d), 1);
    assert_int_equal(mail_roundtrips(d, 1), 0);
    pid_t kid = tu_fork(child_mail_roundtrips, d);
    assert_int_equal(tu_wait_child(kid, 60.0), 0);

    size_t keylen;
    const void *key = mp_manager_authkey(m, &keylen);
    mp_manager *m2;
    TU_ASSERT_STATUS(mp_manager_connect(&m2, mp_manager_address(m), key, keylen, NULL), 0);
    assert_false(info_mailbox(m2));
    assert_true(mt_info_int(m2, "mailboxes") >= 1); /* the starter's */
    mp_dictproxy *d2;
    TU_ASSERT_STATUS(mp_manager_attach_dict(m2, "mail", &d2), 0);
    assert_int_equal(mail_roundtrips(d2, 5), 0);
    int64_t count;
    TU_ASSERT_STATUS(mp_dictproxy_get_int(d, "count", &count), 0);
    assert_int_equal(count, 3 * (int64_t)(sizeof mail_sizes / sizeof mail_sizes[0]));
    mp_dictproxy_free(d2);
    mp_manager_free(m2);
    mp_dictproxy_free(d);
    mp_manager_free(m);
}

struct mail_getter {
    mp_queueproxy *q;
    int rc;
    int64_t got;
};

static void *mail_getter_thread(void *arg)
{
    struct mail_getter *g = arg;
    mp_obj *item = NULL;
    g->rc = mp_queueproxy_get(g->q, &item, 3 * MT_LONG);
    if (g->rc == 0 && mp_obj_get_int(item, &g->got) != 0)
        g->rc = MP_ETYPE;
    mp_obj_free(item);
    return NULL;
}

#define MAIL_THREADS 140 /* more than the 128 mailbox slots (src/manager/mgr.h) */

/* When every mailbox slot is taken, further connections simply use their
 * sockets: 140 threads that wait in get() at once (a connection each) all
 * get their item. */
static void test_more_connections_than_mailboxes_fall_back_to_the_socket(void **state)
{
    (void)state;
    mp_manager *m = mt_start();
    mp_queueproxy *q;
    TU_ASSERT_STATUS(mp_manager_queue(m, 0, &q), 0);
    static struct mail_getter g[MAIL_THREADS];
    static pthread_t t[MAIL_THREADS];
    for (int i = 0; i < MAIL_THREADS; i++) {
        g[i] = (struct mail_getter){q, -1, -1};
        assert_int_equal(pthread_create(&t[i], NULL, mail_getter_thread, &g[i]), 0);
    }
    double end = tu_now() + 3 * MT_LONG;
    while (mt_info_int(m, "connections") < MAIL_THREADS + 1 && tu_now() < end)
        tu_sleep(0.01);
    assert_int_equal(mt_info_int(m, "connections"), MAIL_THREADS + 1);
    int64_t boxes = mt_info_int(m, "mailboxes");
    assert_true(boxes >= 1 && boxes < MAIL_THREADS + 1);
    int64_t sum = 0;
    for (int i = 0; i < MAIL_THREADS; i++) {
        mp_obj *item = mp_obj_int(i);
        TU_ASSERT_STATUS(mp_queueproxy_put(q, item, MT_LONG), 0);
        mp_obj_free(item);
        sum += i;
    }
    for (int i = 0; i < MAIL_THREADS; i++) {
        pthread_join(t[i], NULL);
        TU_ASSERT_STATUS(g[i].rc, 0);
        sum -= g[i].got;
    }
    assert_int_equal(sum, 0);
    mp_queueproxy_free(q);
    mp_manager_free(m);
}

/* A child that keeps the server busy through its mailbox until told to
 * stop (or for 20 s at most). */
static int child_busy_until_stop(void *arg)
{
    mp_dictproxy *d = arg;
    double end = tu_now() + 20.0;
    for (int i = 0; tu_now() < end; i++) {
        if (mp_dictproxy_add_int(d, "busy", 1, NULL) != 0)
            return 1;
        int64_t stop = 0;
        if (i % 64 == 0 && mp_dictproxy_get_int(d, "stop", &stop) == 0 && stop)
            return 0;
    }
    return 2; /* never told to stop */
}

/* The server looks at its sockets however busy its mailboxes keep it: a
 * client that talks by socket alone is served while two children hammer
 * the server through their mailboxes. */
static void test_socket_clients_are_served_while_mailboxes_keep_the_server_busy(void **state)
{
    (void)state;
    mp_manager *m = mt_start();
    mp_dictproxy *d;
    TU_ASSERT_STATUS(mp_manager_dict_named(m, "busy", NULL, &d), 1);
    TU_ASSERT_STATUS(mp_dictproxy_set_int(d, "stop", 0), 0);
    pid_t kids[2];
    for (int i = 0; i < 2; i++)
        kids[i] = tu_fork(child_busy_until_stop, d);
    double end = tu_now() + MT_LONG;
    int64_t busy = 0;
    while (busy < 1000 && tu_now() < end) {
        int rc = mp_dictproxy_get_int(d, "busy", &busy);
        assert_true(rc == 0 || rc == MP_EKEY);
    }
    size_t keylen;
    const void *key = mp_manager_authkey(m, &keylen);
    mp_manager *m2;
    TU_ASSERT_STATUS(mp_manager_connect(&m2, mp_manager_address(m), key, keylen, NULL), 0);
    mp_dictproxy *d2;
    TU_ASSERT_STATUS(mp_manager_attach_dict(m2, "busy", &d2), 0);
    double t0 = tu_now();
    for (int i = 0; i < 200; i++)
        TU_ASSERT_STATUS(mp_dictproxy_add_int(d2, "socket", 1, NULL), 0);
    double dt = tu_now() - t0;
    TU_ASSERT_STATUS(mp_dictproxy_set_int(d2, "stop", 1), 0);
    for (int i = 0; i < 2; i++)
        assert_int_equal(tu_wait_child(kids[i], 30.0), 0);
    assert_true(dt < 10.0); /* not held off until the children gave up */
    mp_dictproxy_free(d2);
    mp_manager_free(m2);
    mp_dictproxy_free(d);
    mp_manager_free(m);
}

int main(int argc, char **argv)
{
    tu_filter(argc, argv);
    const struct CMUnitTest tests[] = {
        TU_TEST(test_started_manager_calls_go_through_mailboxes_of_any_size),
        TU_TEST(test_more_connections_than_mailboxes_fall_back_to_the_socket),
        TU_TEST(test_socket_clients_are_served_while_mailboxes_keep_the_server_busy),
    };
    return cmocka_run_group_tests_name("manager_mailbox", tests, NULL, NULL);
}
