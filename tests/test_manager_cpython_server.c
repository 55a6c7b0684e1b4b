/* manager_cpython_server: our C client against CPython's own manager
 * server (a Python SyncManager run by manager.start() or by
 * get_server().serve_forever(), over AF_UNIX and TCP, under every
 * interpreter tu_pythons finds). mp_manager_connect() finds out which
 * server it reached; dict, list, Lock, RLock and Queue work through the
 * usual C proxies with the codes they give against our server (KeyError
 * and IndexError: MP_EKEY, queue.Empty: MP_EMPTY, ...); what CPython's
 * server lacks (atomic add, compare-and-set, named objects) is -ENOTSUP;
 * attaching by name reaches a typeid the Python program registered. */
#include "pyserver_testutil.h"

#include <mpipc/error.h>
#include <mpipc/listener.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The manager for a started server; fails the test if it cannot. */
static mp_manager *cs_connect(const struct ps_server *s)
{
    mp_manager *m = NULL;
    TU_ASSERT_STATUS(mp_manager_connect(&m, s->address, PS_KEY, PS_KEY_LEN, NULL), 0);
    assert_non_null(m);
    TU_ASSERT_STATUS(mp_manager_set_timeout(m, 30.0), 0);
    return m;
}

/* Python's dict through mp_dictproxy: the calls, KeyError as MP_EKEY with
 * Python's words, and -ENOTSUP for what Python's DictProxy cannot do. */
static void cs_dict(mp_manager *m)
{
    mp_obj *init = mt_dict1("a", 1);
    mp_dictproxy *d = NULL;
    TU_ASSERT_STATUS(mp_manager_dict(m, init, &d), 0);
    mp_obj_free(init);
    int64_t v = 0;
    TU_ASSERT_STATUS(mp_dictproxy_get_int(d, "a", &v), 0);
    assert_int_equal(v, 1);
    TU_ASSERT_STATUS(mp_dictproxy_set_int(d, "b", 2), 0);
    TU_ASSERT_STATUS(mp_dictproxy_set_str(d, "s", "text"), 0);
    assert_int_equal(mp_dictproxy_len(d), 3);
    TU_ASSERT_STATUS(mp_dictproxy_contains_str(d, "b"), 1);
    TU_ASSERT_STATUS(mp_dictproxy_contains_str(d, "zz"), 0);
    TU_ASSERT_STATUS(mp_dictproxy_get_int(d, "missing", &v), MP_EKEY);
    assert_string_equal(mp_errmsg(MP_EKEY), "KeyError: 'missing'");
    TU_ASSERT_STATUS(mp_dictproxy_get_int_default(d, "missing", 7, &v), 0);
    assert_int_equal(v, 7);
    char *str = NULL;
    TU_ASSERT_STATUS(mp_dictproxy_get_str(d, "s", &str, NULL), 0);
    assert_string_equal(str, "text");
    free(str);

    mp_obj *l = NULL;
    TU_ASSERT_STATUS(mp_dictproxy_keys(d, &l), 0);
    mt_take_repr(l, "['a', 'b', 's']");
    TU_ASSERT_STATUS(mp_dictproxy_values(d, &l), 0);
    mt_take_repr(l, "[1, 2, 'text']");
    TU_ASSERT_STATUS(mp_dictproxy_items(d, &l), 0);
    mt_take_repr(l, "[('a', 1), ('b', 2), ('s', 'text')]");

    mp_obj *k = mt_str("b"), *got = NULL;
    TU_ASSERT_STATUS(mp_dictproxy_pop(d, k, &got), 0);
    mt_take_repr(got, "2");
    TU_ASSERT_STATUS(mp_dictproxy_pop(d, k, &got), MP_EKEY);
    assert_null(got);
    mp_obj *dflt = mt_int(5);
    TU_ASSERT_STATUS(mp_dictproxy_setdefault(d, k, dflt, &got), 0);
    mt_take_repr(got, "5");
    mp_obj_free(dflt);
    mp_obj_free(k);
    mp_obj *upd = mt_dict1("u", 9);
    TU_ASSERT_STATUS(mp_dictproxy_update(d, upd), 0);
    mp_obj_free(upd);
    TU_ASSERT_STATUS(mp_dictproxy_copy(d, &got), 0);
    mt_take_repr(got, "{'a': 1, 's': 'text', 'b': 5, 'u': 9}");
    TU_ASSERT_STATUS(mp_dictproxy_del_str(d, "u"), 0);
    TU_ASSERT_STATUS(mp_dictproxy_del_str(d, "u"), MP_EKEY);

    /* Python's DictProxy has no atomic add or compare-and-set. */
    TU_ASSERT_STATUS(mp_dictproxy_add_int(d, "a", 1, &v), -ENOTSUP);
    TU_ASSERT_STATUS(mp_dictproxy_cas_int(d, "a", 1, 2, NULL), -ENOTSUP);
    assert_non_null(strstr(mp_errmsg(-ENOTSUP), "CPython"));
    TU_ASSERT_STATUS(mp_dictproxy_get_int(d, "a", &v), 0);
    assert_int_equal(v, 1); /* nothing changed */

    mp_obj *pk = NULL, *pv = NULL;
    TU_ASSERT_STATUS(mp_dictproxy_clear(d), 0);
    assert_int_equal(mp_dictproxy_len(d), 0);
    TU_ASSERT_STATUS(mp_dictproxy_popitem(d, &pk, &pv), MP_EKEY);
    mp_dictproxy_free(d);

    /* No named objects on CPython's server. */
    mp_dictproxy *named = NULL;
    TU_ASSERT_STATUS(mp_manager_dict_named(m, "n", NULL, &named), -ENOTSUP);
    assert_null(named);
}

/* Python's list through mp_listproxy: IndexError as MP_EKEY, ValueError
 * as MP_EVALUE, slices and clear done with what ListProxy exposes. */
static void cs_list(mp_manager *m)
{
    mp_listproxy *l = NULL;
    TU_ASSERT_STATUS(mp_manager_list(m, NULL, &l), 0);
    TU_ASSERT_STATUS(mp_listproxy_append_int(l, 1), 0);
    TU_ASSERT_STATUS(mp_listproxy_append_str(l, "two"), 0);
    mp_obj *ext = mp_obj_build("[ii]", (int64_t)3, (int64_t)4);
    TU_ASSERT_STATUS(mp_listproxy_extend(l, ext), 0);
    mp_obj_free(ext);
    assert_int_equal(mp_listproxy_len(l), 4);
    int64_t v = 0;
    TU_ASSERT_STATUS(mp_listproxy_get_int(l, -1, &v), 0);
    assert_int_equal(v, 4);
    TU_ASSERT_STATUS(mp_listproxy_get_int(l, 10, &v), MP_EKEY);
    assert_non_null(strstr(mp_errmsg(MP_EKEY), "IndexError"));
    mp_obj *x = mt_str("x"), *got = NULL;
    TU_ASSERT_STATUS(mp_listproxy_set(l, 0, x), 0);
    TU_ASSERT_STATUS(mp_listproxy_insert(l, 0, x), 0);
    TU_ASSERT_STATUS(mp_listproxy_count(l, x), 2);
    TU_ASSERT_STATUS(mp_listproxy_index(l, x), 0);
    TU_ASSERT_STATUS(mp_listproxy_contains(l, x), 1);
    TU_ASSERT_STATUS(mp_listproxy_remove(l, x), 0);
    TU_ASSERT_STATUS(mp_listproxy_slice(l, 1, MP_LISTPROXY_END, &got), 0);
    mt_take_repr(got, "['two', 3, 4]");
    TU_ASSERT_STATUS(mp_listproxy_slice(l, -2, -1, &got), 0);
    mt_take_repr(got, "[3]");
    TU_ASSERT_STATUS(mp_listproxy_pop(l, -1, &got), 0);
    mt_take_repr(got, "4");
    TU_ASSERT_STATUS(mp_listproxy_del(l, 0), 0);
    TU_ASSERT_STATUS(mp_listproxy_copy(l, &got), 0);
    mt_take_repr(got, "['two', 3]");
    mp_obj *missing = mt_int(99);
    TU_ASSERT_STATUS(mp_listproxy_remove(l, missing), MP_EVALUE);
    TU_ASSERT_STATUS(mp_listproxy_index(l, missing), MP_EVALUE);
    mp_obj_free(missing);
    TU_ASSERT_STATUS(mp_listproxy_clear(l), 0);
    assert_int_equal(mp_listproxy_len(l), 0);
    TU_ASSERT_STATUS(mp_listproxy_pop(l, -1, &got), MP_EKEY);
    mp_obj_free(x);
    mp_listproxy_free(l);
}

/* Another thread's view of an RLock the main thread holds. */
struct cs_rl {
    mp_lockproxy *rl;
    int held, release, later;
};

static void *cs_rlock_thread(void *arg)
{
    struct cs_rl *x = arg;
    x->held = mp_lockproxy_acquire(x->rl, 0.3);
    x->release = mp_lockproxy_release(x->rl);
    return NULL;
}

static void *cs_rlock_thread_later(void *arg)
{
    struct cs_rl *x = arg;
    x->later = mp_lockproxy_acquire(x->rl, 5.0);
    if (x->later == 0)
        x->later = mp_lockproxy_release(x->rl);
    return NULL;
}

/* An RLock belongs to the thread that acquired it, as in Python: another
 * thread of the same process waits for it (and cannot release it), and
 * gets it once the holder lets go. */
static void cs_rlock_threads(mp_manager *m)
{
    struct cs_rl x = {0};
    TU_ASSERT_STATUS(mp_manager_rlock(m, &x.rl), 0);
    TU_ASSERT_STATUS(mp_lockproxy_acquire(x.rl, 5.0), 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, cs_rlock_thread, &x), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    TU_ASSERT_STATUS(x.held, MP_ETIMEDOUT);
    TU_ASSERT_STATUS(x.release, MP_EVALUE);
    TU_ASSERT_STATUS(mp_lockproxy_release(x.rl), 0);
    assert_int_equal(pthread_create(&t, NULL, cs_rlock_thread_later, &x), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    TU_ASSERT_STATUS(x.later, 0);
    mp_lockproxy_free(x.rl);
}

/* Lock and RLock: acquire with and without a timeout, a held Lock times
 * out, releasing an unlocked one is MP_EVALUE (RuntimeError). */
static void cs_locks(mp_manager *m)
{
    mp_lockproxy *lk = NULL, *rl = NULL;
    TU_ASSERT_STATUS(mp_manager_lock(m, &lk), 0);
    TU_ASSERT_STATUS(mp_lockproxy_acquire(lk, MP_FOREVER), 0);
    double t0 = tu_now();
    TU_ASSERT_STATUS(mp_lockproxy_acquire(lk, 0.2), MP_ETIMEDOUT);
    assert_true(tu_now() - t0 >= 0.15);
    TU_ASSERT_STATUS(mp_lockproxy_acquire(lk, MP_NOWAIT), MP_ETIMEDOUT);
    TU_ASSERT_STATUS(mp_lockproxy_release(lk), 0);
    TU_ASSERT_STATUS(mp_lockproxy_release(lk), MP_EVALUE);
    assert_non_null(strstr(mp_errmsg(MP_EVALUE), "RuntimeError"));
    TU_ASSERT_STATUS(mp_lockproxy_acquire(lk, 5.0), 0);
    TU_ASSERT_STATUS(mp_lockproxy_release(lk), 0);
    mp_lockproxy_free(lk);

    TU_ASSERT_STATUS(mp_manager_rlock(m, &rl), 0);
    TU_ASSERT_STATUS(mp_lockproxy_acquire(rl, 5.0), 0);
    TU_ASSERT_STATUS(mp_lockproxy_acquire(rl, 5.0), 0); /* recursive */
    TU_ASSERT_STATUS(mp_lockproxy_release(rl), 0);
    TU_ASSERT_STATUS(mp_lockproxy_release(rl), 0);
    TU_ASSERT_STATUS(mp_lockproxy_release(rl), MP_EVALUE);
    mp_lockproxy_free(rl);
}

/* Queue: FIFO, Empty and Full as MP_EMPTY and MP_FULL after the timeout,
 * task_done and join. */
static void cs_queue(mp_manager *m)
{
    mp_queueproxy *q = NULL;
    TU_ASSERT_STATUS(mp_manager_queue(m, 2, &q), 0);
    TU_ASSERT_STATUS(mp_queueproxy_empty(q), 1);
    mp_obj *a = mt_int(1), *b = mt_str("b"), *got = NULL;
    TU_ASSERT_STATUS(mp_queueproxy_put(q, a, MP_FOREVER), 0);
    TU_ASSERT_STATUS(mp_queueproxy_put(q, b, 1.0), 0);
    TU_ASSERT_STATUS(mp_queueproxy_full(q), 1);
    assert_int_equal(mp_queueproxy_qsize(q), 2);
    TU_ASSERT_STATUS(mp_queueproxy_put(q, a, MP_NOWAIT), MP_FULL);
    double t0 = tu_now();
    TU_ASSERT_STATUS(mp_queueproxy_put(q, a, 0.2), MP_FULL);
    assert_true(tu_now() - t0 >= 0.15);
    TU_ASSERT_STATUS(mp_queueproxy_get(q, &got, MP_FOREVER), 0);
    mt_take_repr(got, "1");
    TU_ASSERT_STATUS(mp_queueproxy_get(q, &got, 1.0), 0);
    mt_take_repr(got, "'b'");
    TU_ASSERT_STATUS(mp_queueproxy_get(q, &got, MP_NOWAIT), MP_EMPTY);
    TU_ASSERT_STATUS(mp_queueproxy_get(q, &got, 0.2), MP_EMPTY);
    assert_null(got);
    TU_ASSERT_STATUS(mp_queueproxy_task_done(q), 0);
    TU_ASSERT_STATUS(mp_queueproxy_task_done(q), 0);
    TU_ASSERT_STATUS(mp_queueproxy_task_done(q), MP_EVALUE);
    TU_ASSERT_STATUS(mp_queueproxy_join(q, 5.0), 0);
    mp_obj_free(a);
    mp_obj_free(b);
    mp_queueproxy_free(q);
}

/* Attaching by name calls the typeid the Python program registered, and
 * sees the very object Python's own clients see; an unknown name is
 * MP_ENOOBJ. */
static void cs_attach(mp_manager *m)
{
    mp_dictproxy *d = NULL;
    TU_ASSERT_STATUS(mp_manager_attach_dict(m, "shared_dict", &d), 0);
    char *who = NULL;
    TU_ASSERT_STATUS(mp_dictproxy_get_str(d, "who", &who, NULL), 0);
    assert_string_equal(who, "python");
    free(who);
    mp_dictproxy *again = NULL;
    TU_ASSERT_STATUS(mp_manager_attach_dict(m, "shared_dict", &again), 0);
    TU_ASSERT_STATUS(mp_dictproxy_set_int(d, "seen", 1), 0);
    int64_t v = 0;
    TU_ASSERT_STATUS(mp_dictproxy_get_int(again, "seen", &v), 0);
    assert_int_equal(v, 1);
    mp_dictproxy_free(again);
    mp_dictproxy_free(d);
    mp_listproxy *l = NULL;
    TU_ASSERT_STATUS(mp_manager_attach_list(m, "shared_list", &l), 0);
    assert_int_equal(mp_listproxy_len(l), 2);
    mp_listproxy_free(l);
    TU_ASSERT_STATUS(mp_manager_attach_dict(m, "no_such_typeid", &d), MP_ENOOBJ);
    assert_null(d);
}

/* A forked child uses the proxies it inherited (it increfs them first),
 * and the parent sees what it did. */
static int cs_child(void *arg)
{
    struct mt_shared *sh = arg;
    if (mp_dictproxy_set_int(sh->d, "child", 42) < 0)
        return 1;
    mp_obj *it = mt_int(7);
    int rc = mp_queueproxy_put(sh->q, it, 10.0);
    mp_obj_free(it);
    return rc < 0 ? 2 : 0;
}

static void cs_fork(mp_manager *m)
{
    struct mt_shared sh = {0};
    TU_ASSERT_STATUS(mp_manager_dict(m, NULL, &sh.d), 0);
    TU_ASSERT_STATUS(mp_manager_queue(m, 0, &sh.q), 0);
    pid_t pid = tu_fork(cs_child, &sh);
    assert_true(pid > 0);
    assert_int_equal(tu_wait_child(pid, 60.0), 0);
    int64_t v = 0;
    TU_ASSERT_STATUS(mp_dictproxy_get_int(sh.d, "child", &v), 0);
    assert_int_equal(v, 42);
    mp_obj *got = NULL;
    TU_ASSERT_STATUS(mp_queueproxy_get(sh.q, &got, 10.0), 0);
    mt_take_repr(got, "7");
    mp_dictproxy_free(sh.d);
    mp_queueproxy_free(sh.q);
}

static void cs_run(bool serve, bool tcp)
{
    const char *py;
    for (size_t pyi = 0; (py = tu_python_at(pyi)) != NULL; pyi++) {
        struct ps_server s;
        assert_int_equal(ps_start(&s, py, serve, tcp, 0), 0);
        mp_manager *m = cs_connect(&s);
        cs_dict(m);
        cs_list(m);
        cs_locks(m);
        cs_rlock_threads(m);
        cs_queue(m);
        cs_attach(m);
        cs_fork(m);
        /* What CPython's server lacks. */
        mp_obj *info = NULL;
        TU_ASSERT_STATUS(mp_manager_info(m, &info), -ENOTSUP);
        TU_ASSERT_STATUS(mp_manager_unlink(m, "x"), -ENOTSUP);
        if (serve) /* a shutdown request stops serve_forever(), as Python's does */
            TU_ASSERT_STATUS(mp_manager_shutdown(m), 0);
        mp_manager_free(m);
        assert_int_equal(ps_stop(&s), 0);
    }
}

static void test_c_client_uses_cpython_started_manager_over_af_unix(void **state)
{
    (void)state;
    cs_run(false, false);
}

static void test_c_client_uses_cpython_serve_forever_over_tcp(void **state)
{
    (void)state;
    cs_run(true, true);
}

/* After the server is gone, a call gives MP_ENOSERVER, not a hang. */
static void test_c_client_gets_enoserver_when_cpython_server_is_gone(void **state)
{
    (void)state;
    struct ps_server s;
    assert_int_equal(ps_start(&s, "python3", false, true, 0), 0);
    mp_manager *m = cs_connect(&s);
    mp_dictproxy *d = NULL;
    TU_ASSERT_STATUS(mp_manager_dict(m, NULL, &d), 0);
    assert_int_equal(ps_stop(&s), 0);
    TU_ASSERT_STATUS(mp_dictproxy_set_int(d, "a", 1), MP_ENOSERVER);
    mp_dictproxy_free(d);
    mp_manager_free(m);
}

/* A wrong key fails the handshake as against our server. */
static void test_c_client_wrong_key_on_cpython_server_is_eauth(void **state)
{
    (void)state;
    struct ps_server s;
    assert_int_equal(ps_start(&s, "python3", false, false, 0), 0);
    mp_manager *m = NULL;
    TU_ASSERT_STATUS(mp_manager_connect(&m, s.address, "wrong", 5, NULL), MP_EAUTH);
    assert_null(m);
    assert_int_equal(ps_stop(&s), 0);
}

/* ---- a fake CPython server: replies no real one sends --------------------------- */

/* Answer one request on c as the fake server does: 0, or -1 when c is
 * finished. */
static int fake_answer(mp_conn *c)
{
    mp_obj *req = NULL;
    if (mp_conn_recv(c, &req, 5.0) < 0)
        return -1;
    mp_obj *reply = NULL;
    if (mp_obj_len(req) == 3) { /* our hello: Python cannot unpack it */
        reply = mp_obj_build("(ss)", "#TRACEBACK", "ValueError: not enough values");
    } else {
        const char *meth = "", *a0 = "";
        (void)mp_obj_get_str(mp_obj_list_get(req, 1), &meth, NULL);
        const mp_obj *args = mp_obj_list_get(req, 2);
        if (mp_obj_len(args) > 0)
            (void)mp_obj_get_str(mp_obj_list_get(args, 0), &a0, NULL);
        bool create = strcmp(meth, "create") == 0, item = strcmp(meth, "__getitem__") == 0;
        if (create && strcmp(a0, "dict") == 0) {
            reply = mp_obj_build("(s(s()))", "#RETURN", "7f00");
        } else if (create && strcmp(a0, "list") == 0) {
            reply = mp_obj_build("(si)", "#RETURN", 5); /* not (ident, exposed) */
        } else if (create) {
            reply = mp_obj_build("(s(s()))", "#RETURN", "not-hex");
        } else if (item && strcmp(a0, "exc") == 0) {
            reply = mp_obj_build("(ss)", "#ERROR", "not an exception");
        } else if (item && strcmp(a0, "overflow") == 0) {
            mp_obj *eargs = mp_obj_build("(s)", "too big");
            reply = mp_obj_build("(sN)", "#ERROR",
                                 mp_obj_instance_new("builtins.OverflowError", eargs));
            mp_obj_free(eargs);
        } else if (item && strcmp(a0, "proxy") == 0) {
            reply = mp_obj_build("(s(()z))", "#PROXY", NULL);
        } else if (item && strcmp(a0, "refused") == 0) {
            /* ('#RETURN', os.system): a global the decoder refuses */
            static const char p[] = "\x80\x02X\x07\x00\x00\x00#RETURNcos\nsystem\n\x86.";
            mp_obj_free(req);
            return mp_conn_send_bytes(c, p, sizeof p - 1) < 0 ? -1 : 0;
        } else {
            reply = mp_obj_build("(sz)", "#RETURN", NULL);
        }
    }
    mp_obj_free(req);
    int rc = reply ? mp_conn_send(c, reply) : -1;
    mp_obj_free(reply);
    return rc < 0 ? -1 : 0;
}

/* The fake server: Python's dialect with replies no real one sends, on
 * every connection at once (poll), until nothing happens for 2 s. */
static int fake_server_main(void *arg)
{
    mp_listener *l = arg;
    enum { MAXC = 32 };
    mp_conn *conns[MAXC] = {0};
    for (;;) {
        struct pollfd p[MAXC + 1];
        p[0] = (struct pollfd){mp_listener_fileno(l), POLLIN, 0};
        for (int i = 0; i < MAXC; i++)
            p[i + 1] = (struct pollfd){conns[i] ? mp_conn_fileno(conns[i]) : -1, POLLIN, 0};
        /* A request that came with the handshake's last bytes is already
         * in the connection's buffer: poll would not see it. */
        int timeout = 2000;
        for (int i = 0; i < MAXC; i++)
            if (conns[i] && mp_conn_buffered(conns[i]) > 0)
                timeout = 0;
        int r = poll(p, MAXC + 1, timeout);
        if (r < 0 || (r == 0 && timeout))
            return r == 0 ? 0 : 1;
        for (int i = 0; i < MAXC; i++)
            if (conns[i] && (p[i + 1].revents || mp_conn_buffered(conns[i]) > 0) &&
                fake_answer(conns[i]) < 0) {
                mp_conn_free(conns[i]);
                conns[i] = NULL;
            }
        if (p[0].revents) {
            mp_conn *c = NULL;
            if (mp_listener_accept(l, &c, 5.0) < 0)
                continue;
            for (int i = 0; c && i < MAXC; i++)
                if (!conns[i]) {
                    conns[i] = c;
                    c = NULL;
                }
            mp_conn_free(c);
        }
    }
}

/* Replies CPython's server never sends are refused as MP_EPROTO (or the
 * code of a listed exception), never crash or hang the client, and the
 * handle keeps working on a new connection. */
static void test_c_client_refuses_malformed_cpython_replies(void **state)
{
    (void)state;
    mp_listener *l = NULL;
    TU_ASSERT_STATUS(mp_listener_new(&l, "tcp:127.0.0.1:0", PS_KEY, PS_KEY_LEN, NULL), 0);
    pid_t pid = tu_fork(fake_server_main, l);
    assert_true(pid > 0);
    mp_manager *m = NULL;
    TU_ASSERT_STATUS(mp_manager_connect(&m, mp_listener_address(l), PS_KEY, PS_KEY_LEN, NULL), 0);
    mp_listener_free(l);
    TU_ASSERT_STATUS(mp_manager_set_timeout(m, 10.0), 0);
    mp_listproxy *lst = NULL;
    TU_ASSERT_STATUS(mp_manager_list(m, NULL, &lst), MP_EPROTO);
    assert_null(lst);
    mp_lockproxy *lk = NULL;
    TU_ASSERT_STATUS(mp_manager_lock(m, &lk), MP_EPROTO);
    assert_null(lk);
    mp_dictproxy *d = NULL;
    TU_ASSERT_STATUS(mp_manager_dict(m, NULL, &d), 0);
    int64_t v;
    TU_ASSERT_STATUS(mp_dictproxy_get_int(d, "exc", &v), MP_EPROTO);
    TU_ASSERT_STATUS(mp_dictproxy_get_int(d, "overflow", &v), MP_EVALUE);
    assert_string_equal(mp_errmsg(MP_EVALUE), "OverflowError: too big");
    TU_ASSERT_STATUS(mp_dictproxy_get_int(d, "proxy", &v), MP_EPROTO);
    TU_ASSERT_STATUS(mp_dictproxy_get_int(d, "refused", &v), MP_EPROTO);
    TU_ASSERT_STATUS(mp_dictproxy_set_int(d, "fine", 1), 0); /* a new connection */
    mp_dictproxy_free(d);
    mp_manager_free(m);
    assert_int_equal(tu_wait_child(pid, 30.0), 0);
}

int main(int argc, char **argv)
{
    tu_filter(argc, argv);
    const struct CMUnitTest tests[] = {
        TU_TEST(test_c_client_uses_cpython_started_manager_over_af_unix),
        TU_TEST(test_c_client_uses_cpython_serve_forever_over_tcp),
        TU_TEST(test_c_client_gets_enoserver_when_cpython_server_is_gone),
        TU_TEST(test_c_client_wrong_key_on_cpython_server_is_eauth),
        TU_TEST(test_c_client_refuses_malformed_cpython_replies),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
