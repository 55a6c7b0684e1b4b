/*
 * manager_protocol: the wire protocol from the raw side - malformed and random
 * requests, hand-written ones the fast path and the decoder must read alike,
 * argument counts, int replies of every width, a Python client, and
 * requests split or run together on the socket.
 */
#include "mgr_testutil.h"

#include <mpipc/conn.h>
#include <mpipc/listener.h>
#include <mpipc/manager.h>
#include <mpipc/obj.h>

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- malformed and random requests ---------------------------------------------- */

static void test_malformed_requests_get_error_replies_and_the_server_serves_on(void **state)
{
    (void)state;
    mp_manager *m = mt_start();
    mp_dictproxy *d;
    TU_ASSERT_STATUS(mp_manager_dict(m, NULL, &d), 0);
    size_t keylen;
    const void *key = mp_manager_authkey(m, &keylen);
    mp_conn *c;
    TU_ASSERT_STATUS(mp_client_connect(&c, mp_manager_address(m), key, keylen, MT_LONG), 0);
    /* not a pickle */
    assert_int_equal(mt_reply_code(mt_raw_call(c, "garbage", 7)), MP_EPROTO);
    /* a pickle that would call code: refused, never run */
    static const char evil[] = "\x80\x04\x8c\x02os\x8c\x06system\x93\x8c\x04true\x85R.";
    assert_int_equal(mt_reply_code(mt_raw_call(c, evil, sizeof evil - 1)), MP_EPROTO);
    /* a value that is not (ident, method, args) */
    assert_int_equal(mt_send_obj(c, mt_int(5)), MP_EPROTO);
    /* anything before hello */
    assert_int_equal(mt_send_obj(c, mt_request(0, "info", NULL)), MP_ESTATE);
    mp_obj *hello = mp_obj_tuple_new();
    mp_obj_tuple_append(hello, mt_int(12345));
    mp_obj_tuple_append(hello, mt_int(getpid()));
    mp_obj_tuple_append(hello, mt_int(0));
    mp_obj_tuple_append(hello, mt_int(1));
    assert_int_equal(mt_send_obj(c, mt_request(0, "hello", hello)), 0);
    assert_int_equal(mt_send_obj(c, mt_request(0, "no such method", NULL)), MP_EPROTO);
    assert_int_equal(mt_send_obj(c, mt_request(987654, "get", NULL)), MP_ENOOBJ);
    mp_obj *args = mp_obj_tuple_new();
    mp_obj_tuple_append(args, mt_int(1));
    mp_obj_tuple_append(args, mt_int(2));
    mp_obj_tuple_append(args, mt_int(3));
    mp_obj_tuple_append(args, mt_int(4));
    mp_obj *idtuple = mp_obj_tuple_new();
    mp_obj_tuple_append(idtuple, mt_str("dict"));
    mp_obj_tuple_append(idtuple, mp_obj_none());
    mp_obj_tuple_append(idtuple, mp_obj_none());
    assert_int_equal(mt_send_obj(c, mt_request(0, "create", idtuple)), 0);
    /* wrong argument counts and types for a real object */
    mp_obj *info;
    TU_ASSERT_STATUS(mp_manager_info(m, &info), 0);
    mp_obj_free(info);
    assert_int_equal(mt_send_obj(c, mt_request(0, "create", args)), MP_EPROTO);
    /* the proxy kept working all along */
    TU_ASSERT_STATUS(mp_dictproxy_set_int(d, "alive", 1), 0);

    /* a frame claiming more than the limit: an error reply, then hang-up
     * (the stream cannot be read on, as with Python's maxlength) */
    unsigned char big[4] = {0x40, 0, 0, 0}; /* 1 GiB */
    assert_int_equal(write(mp_conn_fileno(c), big, 4), 4);
    mp_obj *r = NULL;
    TU_ASSERT_STATUS(mp_conn_recv(c, &r, MT_LONG), 0);
    assert_int_equal(mt_reply_code(r), MP_ETOOLONG);
    void *buf;
    size_t len;
    TU_ASSERT_STATUS(mp_conn_recv_bytes(c, 0, &buf, &len, MT_LONG), MP_EOF);
    mp_conn_free(c);
    /* a corrupt length header: the same */
    TU_ASSERT_STATUS(mp_client_connect(&c, mp_manager_address(m), key, keylen, MT_LONG), 0);
    unsigned char neg[4] = {0x80, 0, 0, 1};
    assert_int_equal(write(mp_conn_fileno(c), neg, 4), 4);
    TU_ASSERT_STATUS(mp_conn_recv(c, &r, MT_LONG), 0);
    assert_int_equal(mt_reply_code(r), MP_EPROTO);
    mp_conn_free(c);
    /* a client with a wrong key never gets in */
    TU_ASSERT_STATUS(mp_client_connect(&c, mp_manager_address(m), "wrong", 5, MT_LONG), MP_EAUTH);

    int64_t v;
    TU_ASSERT_STATUS(mp_dictproxy_get_int(d, "alive", &v), 0);
    assert_int_equal(v, 1);
    mp_dictproxy_free(d);
    mp_manager_free(m);
}

static uint64_t rng_state = 0x9E3779B97F4A7C15u;

static uint64_t rnd(void)
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15u);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
    return z ^ (z >> 31);
}

/* A random value: scalars, and containers a level or two deep. */
static mp_obj *random_value(int depth)
{
    switch (rnd() % (depth > 1 ? 6 : 9)) {
    case 0:
        return mp_obj_none();
    case 1:
        return mt_int((int64_t)(rnd() % 7) - 3);
    case 2:
        return mt_int((int64_t)rnd());
    case 3:
        return mp_obj_float((double)(rnd() % 100) / 8.0 - 2.0);
    case 4: {
        static const char *const words[] = {"a", "count", "", "\xe5\xa6\xb9", "x y"};
        return mt_str(words[rnd() % 5]);
    }
    case 5:
        return mp_obj_bytes("\0\1", rnd() % 3);
    case 6: {
        mp_obj *l = mp_obj_list_new();
        for (uint64_t i = rnd() % 4; i > 0; i--)
            mp_obj_list_append(l, random_value(depth + 1));
        return l;
    }
    case 7: {
        mp_obj *t = mp_obj_tuple_new();
        for (uint64_t i = rnd() % 4; i > 0; i--)
            mp_obj_tuple_append(t, random_value(depth + 1));
        return t;
    }
    default: {
        mp_obj *d = mp_obj_dict_new();
        for (uint64_t i = rnd() % 3; i > 0; i--) {
            mp_obj *k = random_value(2), *v = random_value(depth + 1);
            if (mp_obj_dict_set(d, k, v) < 0) { /* unhashable key */
                mp_obj_free(k);
                mp_obj_free(v);
            }
        }
        return d;
    }
    }
}

static void test_random_requests_each_get_a_reply_and_break_nothing(void **state)
{
    (void)state;
    /* Methods with the ident of the object of their kind (0 the manager, 1
     * the dict, 2 the list, 3 the lock, 4 the queue made below) and their
     * usual argument count: mostly used, so that most requests reach the
     * handlers rather than stop at the checks. */
    static const struct {
        const char *name;
        int kind, nargs;
    } methods[] = {
        {"get", 1, 1},     {"set", 1, 2},      {"del", 1, 1},     {"contains", 1, 1},
        {"len", 1, 0},     {"keys", 1, 0},     {"values", 1, 0},  {"items", 1, 0},
        {"clear", 1, 0},   {"pop", 1, 1},      {"popitem", 1, 0}, {"setdefault", 1, 2},
        {"update", 1, 1},  {"copy", 1, 0},     {"add", 1, 2},     {"cas", 1, 3},
        {"append", 2, 1},  {"extend", 2, 1},   {"insert", 2, 2},  {"slice", 2, 2},
        {"index", 2, 1},   {"count", 2, 1},    {"remove", 2, 1},  {"get", 2, 1},
        {"set", 2, 2},     {"pop", 2, 1},      {"del", 2, 1},     {"acquire", 3, 2},
        {"release", 3, 1}, {"put", 4, 2},      {"get", 4, 1},     {"qsize", 4, 0},
        {"empty", 4, 0},   {"full", 4, 0},     {"join", 4, 1},    {"task_done", 4, 0},
        {"create", 0, 3},  {"attach", 0, 2},   {"incref", 0, 1},  {"release", 0, 1},
        {"unlink", 0, 1},  {"info", 0, 0},     {"ping", 0, 0},    {"hello", 0, 4},
        {"shm", 0, 1},     {"nonsense", 0, 0},
    };
    const size_t nmethods = sizeof methods / sizeof methods[0];
    int n = mt_env_int("MPIPC_MANAGER_OPS", 10000) / 5;
    mp_manager *m = mt_start();
    mp_dictproxy *d;
    mp_listproxy *l;
    mp_lockproxy *lk;
    mp_queueproxy *q;
    TU_ASSERT_STATUS(mp_manager_dict(m, NULL, &d), 0);
    TU_ASSERT_STATUS(mp_manager_list(m, NULL, &l), 0);
    TU_ASSERT_STATUS(mp_manager_lock(m, &lk), 0);
    TU_ASSERT_STATUS(mp_manager_queue(m, 2, &q), 0);
    mp_conn *c = mt_raw_connect(m);
    mp_obj *hello = mp_obj_tuple_new();
    mp_obj_tuple_append(hello, mt_int(777));
    mp_obj_tuple_append(hello, mt_int(getpid()));
    mp_obj_tuple_append(hello, mt_int(0));
    mp_obj_tuple_append(hello, mt_int(1));
    assert_int_equal(mt_send_obj(c, mt_request(0, "hello", hello)), 0);
    int64_t ids[6] = {0, 1, 2, 3, 4, 999};
    for (int i = 0; i < n; i++) {
        int64_t ident = ids[rnd() % 6];
        size_t mi = rnd() % nmethods;
        if (ident <= 4 && rnd() % 5) /* mostly a method of the target's kind */
            while (methods[mi].kind != ident)
                mi = rnd() % nmethods;
        const char *meth = methods[mi].name;
        mp_obj *args = mp_obj_tuple_new();
        uint64_t nargs = rnd() % 5 ? (uint64_t)methods[mi].nargs : rnd() % 4;
        for (uint64_t k = 0; k < nargs; k++) {
            /* small ints make valid ids, indexes and kinds likelier */
            uint64_t pick = rnd() % 4;
            mp_obj *a = pick == 0   ? mt_int((int64_t)(rnd() % 6))
                        : pick == 1 ? mt_str(rnd() % 2 ? "dict" : "queue")
                                    : random_value(0);
            mp_obj_tuple_append(args, a);
        }
        /* Nothing may wait: a wait could outlast the test. */
        bool waits = strcmp(meth, "acquire") == 0 || strcmp(meth, "join") == 0 ||
                     (strcmp(meth, "get") == 0 && ident == 4) || strcmp(meth, "put") == 0 ||
                     strcmp(meth, "shutdown") == 0;
        if (waits) {
            mp_obj_free(args);
            args = mp_obj_tuple_new();
            if (strcmp(meth, "put") == 0)
                mp_obj_tuple_append(args, random_value(0));
            mp_obj_tuple_append(args, mp_obj_float(0.0));
            if (strcmp(meth, "acquire") == 0)
                mp_obj_tuple_append(args, mt_int(1));
        }
        mp_obj *req = mt_request(ident, meth, args);
        assert_int_equal(mp_conn_send(c, req), 0);
        mp_obj_free(req);
        mp_obj *r = NULL;
        TU_ASSERT_STATUS(mp_conn_recv(c, &r, MT_LONG), 0); /* every request is answered */
        assert_int_equal(mp_obj_type(r), MP_TYPE_TUPLE);
        mp_obj_free(r);
    }
    mp_conn_free(c);
    /* the server is sane and the proxies work */
    TU_ASSERT_STATUS(mp_dictproxy_set_int(d, "after", 1), 0);
    int64_t v;
    TU_ASSERT_STATUS(mp_dictproxy_get_int(d, "after", &v), 0);
    assert_int_equal(v, 1);
    TU_ASSERT_STATUS(mp_listproxy_append_int(l, 1), 0);
    mp_lockproxy *lk2;
    TU_ASSERT_STATUS(mp_manager_lock(m, &lk2), 0);
    TU_ASSERT_STATUS(mp_lockproxy_acquire(lk2, MT_LONG), 0);
    TU_ASSERT_STATUS(mp_lockproxy_release(lk2), 0);
    mp_lockproxy_free(lk2);
    assert_true(mt_info_int(m, "sessions") >= 1);
    mp_dictproxy_free(d);
    mp_listproxy_free(l);
    mp_lockproxy_free(lk);
    mp_queueproxy_free(q);
    mp_manager_free(m);
}

/* ---- the fast path and the decoder ---------------------------------------------- */

/* Int replies of every pickled width (BININT1, BININT2, BININT, LONG1 of 1
 * to 8 bytes, both signs) come back exact, and so do bools and None as
 * get_int() sees them (an int, as Python's int(True); MP_ETYPE). */
static void test_int_replies_of_every_width_read_back_exactly(void **state)
{
    (void)state;
    mp_manager *m = mt_start();
    mp_dictproxy *d;
    TU_ASSERT_STATUS(mp_manager_dict(m, NULL, &d), 0);
    const int64_t vals[] = {0,
                            1,
                            255,
                            256,
                            65535,
                            65536,
                            -1,
                            -128,
                            -129,
                            INT32_MAX,
                            (int64_t)INT32_MAX + 1,
                            INT32_MIN,
                            (int64_t)INT32_MIN - 1,
                            (int64_t)1 << 39,
                            -((int64_t)1 << 39),
                            ((int64_t)1 << 47) - 1,
                            (int64_t)1 << 55,
                            INT64_MAX,
                            INT64_MIN,
                            INT64_MIN + 1};
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        int64_t got = 12345, sum = 0;
        TU_ASSERT_STATUS(mp_dictproxy_set_int(d, "v", vals[i]), 0);
        TU_ASSERT_STATUS(mp_dictproxy_get_int(d, "v", &got), 0);
        assert_true(got == vals[i]);
        TU_ASSERT_STATUS(mp_dictproxy_set_int(d, "a", 0), 0);
        TU_ASSERT_STATUS(mp_dictproxy_add_int(d, "a", vals[i], &sum), 0);
        assert_true(sum == vals[i]);
    }
    mp_obj *t = mp_obj_bool(true), *none = mp_obj_none();
    mp_obj *kb = mt_str("b"), *kn = mt_str("n");
    TU_ASSERT_STATUS(mp_dictproxy_set(d, kb, t), 0);
    TU_ASSERT_STATUS(mp_dictproxy_set(d, kn, none), 0);
    int64_t v = -1;
    TU_ASSERT_STATUS(mp_dictproxy_get_int(d, "b", &v), 0);
    assert_int_equal(v, 1);
    TU_ASSERT_STATUS(mp_dictproxy_get_int(d, "n", &v), MP_ETYPE);
    TU_ASSERT_STATUS(mp_dictproxy_add_int(d, "b", 2, &v), 0); /* True + 2, as in Python */
    assert_int_equal(v, 3);
    mp_obj_free(t);
    mp_obj_free(none);
    mp_obj_free(kb);
    mp_obj_free(kn);
    mp_dictproxy_free(d);
    mp_manager_free(m);
}

/* A request built by hand: PROTO 4, ident (BININT1), a short str method,
 * then `args` (the argument pickles and the args tuple opcode), TUPLE3,
 * STOP, then `tail`. */
static size_t hand_request(unsigned char *out, int ident, const char *method, const void *args,
                           size_t alen, const void *tail, size_t tlen)
{
    size_t n = 0, ml = strlen(method);
    out[n++] = 0x80;
    out[n++] = 4;
    out[n++] = 'K';
    out[n++] = (unsigned char)ident;
    out[n++] = 0x8c;
    out[n++] = (unsigned char)ml;
    memcpy(out + n, method, ml);
    n += ml;
    memcpy(out + n, args, alen);
    n += alen;
    out[n++] = 0x87;
    out[n++] = '.';
    if (tlen)
        memcpy(out + n, tail, tlen);
    return n + tlen;
}

/* The server reads the common requests of libmpipc clients without its
 * general decoder; hand-made bytes show that both readings agree: a key
 * written one way is found when written another, ints of every width and
 * floats and bytes arrive intact, and what the decoder refuses (bad UTF-8,
 * bytes after STOP) or the checks refuse (too many arguments) still is. */
static void test_hand_written_requests_mean_what_the_decoder_says(void **state)
{
    (void)state;
    mp_manager *m = mt_start();
    mp_conn *c = mt_raw_connect(m);
    mp_obj *hello = mp_obj_tuple_new();
    mp_obj_tuple_append(hello, mt_int(4242));
    mp_obj_tuple_append(hello, mt_int(getpid()));
    mp_obj_tuple_append(hello, mt_int(0));
    mp_obj_tuple_append(hello, mt_int(1));
    assert_int_equal(mt_send_obj(c, mt_request(0, "hello", hello)), 0);
    mp_obj *ca = mp_obj_tuple_new();
    mp_obj_tuple_append(ca, mt_str("dict"));
    mp_obj_tuple_append(ca, mt_str("hand"));
    mp_obj_tuple_append(ca, mp_obj_none());
    mp_obj *creq = mt_request(0, "create", ca);
    TU_ASSERT_STATUS(mp_conn_send(c, creq), 0);
    mp_obj_free(creq);
    mp_obj *r = NULL;
    TU_ASSERT_STATUS(mp_conn_recv(c, &r, MT_LONG), 0);
    int64_t id = -1;
    assert_int_equal(mp_obj_get_int(mp_obj_list_get(mp_obj_list_get(r, 1), 0), &id), 0);
    mp_obj_free(r);
    assert_true(id > 0 && id < 256);
    mp_dictproxy *d;
    TU_ASSERT_STATUS(mp_manager_attach_dict(m, "hand", &d), 0);

    unsigned char f[128];
    /* set('k\u00e9', LONG1 0x0102030405), key as SHORT_BINUNICODE */
    static const unsigned char a1[] = {0x8c, 3, 'k', 0xc3, 0xa9, 0x8a, 5, 5, 4, 3, 2, 1, 0x86};
    size_t n = hand_request(f, (int)id, "set", a1, sizeof a1, NULL, 0);
    assert_int_equal(mt_reply_code(mt_raw_call(c, f, n)), 0);
    int64_t v = 0;
    TU_ASSERT_STATUS(mp_dictproxy_get_int(d, "k\xc3\xa9", &v), 0);
    assert_true(v == 0x0102030405);
    /* the same key as BINUNICODE (4-byte length): the general decoder */
    static const unsigned char a2[] = {'X',  3,   0,    0,    0,    'k',  0xc3,
                                       0xa9, 'J', 0xf9, 0xff, 0xff, 0xff, 0x86};
    n = hand_request(f, (int)id, "set", a2, sizeof a2, NULL, 0);
    assert_int_equal(mt_reply_code(mt_raw_call(c, f, n)), 0);
    TU_ASSERT_STATUS(mp_dictproxy_get_int(d, "k\xc3\xa9", &v), 0);
    assert_int_equal(v, -7);
    assert_int_equal(mp_dictproxy_len(d), 1);
    /* a float and bytes */
    static const unsigned char a3[] = {0x8c, 1,    'f',  'G',  0x40, 0x09, 0x21,
                                       0xfb, 0x54, 0x44, 0x2d, 0x18, 0x86}; /* pi */
    n = hand_request(f, (int)id, "set", a3, sizeof a3, NULL, 0);
    assert_int_equal(mt_reply_code(mt_raw_call(c, f, n)), 0);
    static const unsigned char a4[] = {0x8c, 1, 'b', 'C', 3, 0, 0xff, 'x', 0x86};
    n = hand_request(f, (int)id, "set", a4, sizeof a4, NULL, 0);
    assert_int_equal(mt_reply_code(mt_raw_call(c, f, n)), 0);
    mp_obj *fk = mt_str("f"), *fv = NULL;
    TU_ASSERT_STATUS(mp_dictproxy_get(d, fk, &fv), 0);
    double pi = 0;
    assert_int_equal(mp_obj_get_float(fv, &pi), 0);
    assert_true(pi == 3.141592653589793);
    mp_obj_free(fk);
    mp_obj_free(fv);
    void *bytes = NULL;
    size_t blen = 0;
    TU_ASSERT_STATUS(mp_dictproxy_get_bytes(d, "b", &bytes, &blen), 0);
    assert_int_equal(blen, 3);
    assert_memory_equal(bytes, "\0\xffx", 3);
    free(bytes);
    /* refusals: a key that is not UTF-8, bytes after STOP, nine arguments */
    static const unsigned char a5[] = {0x8c, 2, 0xc3, 0x28, 'K', 1, 0x86};
    n = hand_request(f, (int)id, "set", a5, sizeof a5, NULL, 0);
    assert_int_equal(mt_reply_code(mt_raw_call(c, f, n)), MP_EPROTO);
    n = hand_request(f, (int)id, "set", a1, sizeof a1, "N", 1);
    assert_int_equal(mt_reply_code(mt_raw_call(c, f, n)), MP_EPROTO);
    static const unsigned char a6[] = {'(', 'N', 'N', 'N', 'N', 'N', 'N', 'N', 'N', 'N', 't'};
    n = hand_request(f, (int)id, "set", a6, sizeof a6, NULL, 0);
    assert_int_equal(mt_reply_code(mt_raw_call(c, f, n)), MP_EPROTO);
    assert_int_equal(mp_dictproxy_len(d), 3);
    mp_conn_free(c);
    mp_dictproxy_free(d);
    mp_manager_free(m);
}

/* The args of a hand-written request: n Nones and the tuple opcode, in the
 * form the server's fast path reads, or (general) followed by a MEMOIZE,
 * which only the general decoder takes. */
static size_t none_args(unsigned char *out, int n, bool general)
{
    size_t k = 0;
    if (n > 3)
        out[k++] = '(';
    for (int i = 0; i < n; i++)
        out[k++] = 'N';
    out[k++] = n > 3 ? 't' : n == 0 ? ')' : (unsigned char)(0x85 + n - 1);
    if (general)
        out[k++] = 0x94;
    return k;
}

/* docs/manager.md: a request with the wrong number of arguments gets
 * MP_EPROTO and the server goes on serving - shutdown('x') included. Every
 * method of the manager and some of each object kind, each one argument
 * short and one too many, through both of the server's readers. */
static void test_every_request_checks_its_argument_count_and_the_server_serves_on(void **state)
{
    (void)state;
    mp_manager *m = mt_start();
    mp_dictproxy *d;
    mp_listproxy *l;
    mp_queueproxy *q;
    mp_lockproxy *lk;
    TU_ASSERT_STATUS(mp_manager_dict(m, NULL, &d), 0);
    TU_ASSERT_STATUS(mp_manager_list(m, NULL, &l), 0);
    TU_ASSERT_STATUS(mp_manager_queue(m, 0, &q), 0);
    TU_ASSERT_STATUS(mp_manager_lock(m, &lk), 0);
    TU_ASSERT_STATUS(mp_dictproxy_set_int(d, "k", 1), 0);
    mp_obj *none = mp_obj_none();
    TU_ASSERT_STATUS(mp_queueproxy_put(q, none, MT_LONG), 0);
    mp_obj_free(none);
    mp_conn *c = mt_raw_connect(m);
    mt_raw_hello(c, 777, 0);
    /* the ids of the objects: the raw connection attaches nothing, it
     * only names them (the server checks no holding) */
    struct {
        int ident;
        const char *method;
        int min, max;
    } cases[] = {
        {0, "shutdown", 0, 0}, {0, "ping", 0, 0},      {0, "info", 0, 0},    {0, "hello", 4, 4},
        {0, "create", 3, 3},   {0, "attach", 2, 2},    {0, "incref", 1, 1},  {0, "release", 1, 1},
        {0, "unlink", 1, 1},   {0, "shm", 1, 1},       {1, "len", 0, 0},     {1, "cas", 2, 3},
        {1, "popitem", 0, 0},  {2, "pop", 0, 1},       {2, "insert", 2, 2},  {3, "get", 1, 1},
        {3, "put", 2, 2},      {3, "task_done", 0, 0}, {4, "acquire", 2, 2}, {4, "release", 1, 1},
    };
    unsigned char f[256], a[32];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        for (int general = 0; general < 2; general++) {
            int counts[2] = {cases[i].min - 1, cases[i].max + 1};
            for (int k = 0; k < 2; k++) {
                if (counts[k] < 0)
                    continue;
                size_t an = none_args(a, counts[k], general);
                size_t n = hand_request(f, cases[i].ident, cases[i].method, a, an, NULL, 0);
                int code = mt_reply_code(mt_raw_call(c, f, n));
                if (code != MP_EPROTO) {
                    print_error("%d.%s with %d args (%s): %d\n", cases[i].ident, cases[i].method,
                                counts[k], general ? "general" : "fast", code);
                    fail();
                }
            }
        }
    }
    /* nothing changed, and everyone is still served */
    assert_int_equal(mt_reply_code(mt_raw_call(c, f, hand_request(f, 0, "ping", ")", 1, NULL, 0))),
                     0);
    assert_false(mt_pid_gone(mp_manager_pid(m)));
    assert_int_equal(mp_dictproxy_len(d), 1);
    assert_int_equal(mp_listproxy_len(l), 0);
    assert_int_equal(mp_queueproxy_qsize(q), 1);
    TU_ASSERT_STATUS(mp_lockproxy_acquire(lk, MP_NOWAIT), 0);
    TU_ASSERT_STATUS(mp_lockproxy_release(lk), 0);
    mp_conn_free(c);
    mp_lockproxy_free(lk);
    mp_queueproxy_free(q);
    mp_listproxy_free(l);
    mp_dictproxy_free(d);
    mp_manager_free(m);
}

/* ---- a Python client ------------------------------------------------------------ */

/* docs/manager.md, "Speaking it from Python": a python3 client with only
 * multiprocessing.connection and pickle. */
static const char PY_CLIENT[] =
    "import os, pickle, sys\n"
    "from multiprocessing.connection import Client\n"
    "c = Client(sys.argv[1], authkey=bytes.fromhex(sys.argv[2]))\n"
    "def call(ident, method, *args):\n"
    "    c.send_bytes(pickle.dumps((ident, method, args), protocol=4))\n"
    "    return pickle.loads(c.recv_bytes())\n"
    "r = call(0, 'hello', int.from_bytes(os.urandom(7), 'big'), os.getpid(), 0, 1)\n"
    "assert r[0] == '#RETURN' and r[1][0] == 1, r\n"
    "ident, created, kind = call(0, 'attach', 'dict', 'results')[1]\n"
    "assert kind == 'dict' and not created\n"
    "assert call(ident, 'copy') == ('#RETURN', {'a': 1}), call(ident, 'copy')\n"
    "assert call(ident, 'set', 'py', [1.5, b'x', None])[0] == '#RETURN'\n"
    "r = call(ident, 'get', 'missing')\n"
    "assert r == ('#ERROR', -1021, \"KeyError: 'missing'\"), r\n"
    "assert call(ident, 'get', 'missing', [7]) == ('#RETURN', [7])\n"
    "assert call(ident, 'get', 'a', 0) == ('#RETURN', 1)\n"
    "assert call(ident, 'add', 'a', 41) == ('#RETURN', 42)\n"
    "# sets, frozensets (as keys too) and bytearrays, as Python sends them\n"
    "assert call(ident, 'set', frozenset({1, 2}), {3, 4})[0] == '#RETURN'\n"
    "assert call(ident, 'set', 'ba', bytearray(b'ab'))[0] == '#RETURN'\n"
    "r = call(ident, 'get', frozenset({2, 1}))\n"
    "assert r == ('#RETURN', {3, 4}) and type(r[1]) is set, r\n"
    "r = call(ident, 'get', 'ba')\n"
    "assert r == ('#RETURN', bytearray(b'ab')) and type(r[1]) is bytearray, r\n"
    "r = call(ident, 'pop', 'ba')\n"
    "assert type(r[1]) is bytearray, r\n"
    "r = call(0, 'attach', 'dict', 'nope')\n"
    "assert r[0] == '#ERROR' and r[1] == -1041, r\n"
    "c.close()\n";

static void test_a_python_client_speaks_the_protocol(void **state)
{
    (void)state;
    mp_manager *m = mt_start();
    mp_obj *init = mt_dict1("a", 1);
    mp_dictproxy *d;
    TU_ASSERT_STATUS(mp_manager_dict_named(m, "results", init, &d), 1);
    mp_obj_free(init);
    size_t keylen;
    const unsigned char *key = mp_manager_authkey(m, &keylen);
    char hex[2 * 64 + 1] = {0};
    for (size_t i = 0; i < keylen && i < 64; i++)
        snprintf(hex + 2 * i, 3, "%02x", key[i]);
    const char *args[] = {mp_manager_address(m) + 5, hex, NULL};
    pid_t py = tu_spawn_python(PY_CLIENT, args, NULL, 0);
    assert_int_equal(tu_wait_child(py, 30.0), 0);
    mp_obj *o;
    TU_ASSERT_STATUS(mp_dictproxy_copy(d, &o), 0);
    mt_take_repr(o, "{'a': 42, 'py': [1.5, b'x', None], frozenset({1, 2}): {3, 4}}");
    mp_dictproxy_free(d);
    mp_manager_free(m);
}

/* ---- how requests arrive on the socket ------------------------------------------- */

/* req as a frame: Python's 4-byte big-endian length, then the pickle. */
static unsigned char *pt_frame(mp_obj *req, size_t *len)
{
    void *p = NULL;
    size_t n = 0;
    TU_ASSERT_STATUS(mp_obj_dumps(req, &p, &n), 0);
    mp_obj_free(req);
    unsigned char *f = malloc(n + 4);
    assert_non_null(f);
    f[0] = (unsigned char)(n >> 24);
    f[1] = (unsigned char)(n >> 16);
    f[2] = (unsigned char)(n >> 8);
    f[3] = (unsigned char)n;
    memcpy(f + 4, p, n);
    free(p);
    *len = n + 4;
    return f;
}

static void pt_write(int fd, const unsigned char *p, size_t n)
{
    assert_int_equal(write(fd, p, n), (ssize_t)n);
    tu_sleep(0.02); /* a server round or more: it reads (peeks) what is there */
}

static int pt_reply(mp_conn *c)
{
    mp_obj *r = NULL;
    TU_ASSERT_STATUS(mp_conn_recv(c, &r, MT_LONG), 0);
    return mt_reply_code(r);
}

static void test_requests_split_or_run_together_on_the_socket_are_answered_in_order(void **state)
{
    (void)state;
    /* The server peeks what a socket has and takes it out once answered
     * (mgr_server_conn.c): a frame that comes in pieces, frames that come
     * together, and a frame larger than its read buffer must each be read
     * exactly once, in order. A raw connection has no mailbox: every byte
     * goes through that path. */
    mp_manager *m = mt_start();
    mp_conn *c = mt_raw_connect(m);
    mt_raw_hello(c, 4242, 0);
    int fd = mp_conn_fileno(c);
    size_t n1, n2, n3;
    unsigned char *f1 = pt_frame(mt_request(987654, "get", NULL), &n1); /* MP_ENOOBJ */
    unsigned char *f2 = pt_frame(mt_request(0, "no such method", NULL), &n2); /* MP_EPROTO */
    unsigned char *f3 = pt_frame(mt_request(0, "info", NULL), &n3); /* 0 */
    for (int round = 0; round < 3; round++) {
        /* f1 in three pieces (inside its header, inside its pickle), its
         * last byte together with f2 and f3 */
        pt_write(fd, f1, 3);
        pt_write(fd, f1 + 3, n1 - 4);
        unsigned char *rest = malloc(1 + n2 + n3);
        assert_non_null(rest);
        rest[0] = f1[n1 - 1];
        memcpy(rest + 1, f2, n2);
        memcpy(rest + 1 + n2, f3, n3);
        pt_write(fd, rest, 1 + n2 + n3);
        free(rest);
        assert_int_equal(pt_reply(c), MP_ENOOBJ);
        assert_int_equal(pt_reply(c), MP_EPROTO);
        assert_int_equal(pt_reply(c), 0);
    }
    /* larger than the read buffer (and than the 64 KiB a small request may
     * take), then a small one right behind it in the same write */
    size_t big = 200 * 1024, nb;
    char *blob = calloc(1, big);
    assert_non_null(blob);
    mp_obj *args = mp_obj_tuple_new();
    mp_obj_tuple_append(args, mp_obj_bytes(blob, big));
    free(blob);
    unsigned char *fb = pt_frame(mt_request(987654, "get", args), &nb);
    unsigned char *two = malloc(nb + n3);
    assert_non_null(two);
    memcpy(two, fb, nb);
    memcpy(two + nb, f3, n3);
    for (size_t off = 0; off < nb + n3;) { /* the socket may take it in parts */
        ssize_t w = write(fd, two + off, nb + n3 - off);
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct pollfd p = {.fd = fd, .events = POLLOUT, .revents = 0};
            assert_int_equal(poll(&p, 1, (int)(MT_LONG * 1000)), 1);
            continue;
        }
        assert_true(w > 0);
        off += (size_t)w;
    }
    assert_int_equal(pt_reply(c), MP_ENOOBJ);
    assert_int_equal(pt_reply(c), 0);
    free(two);
    free(fb);
    free(f1);
    free(f2);
    free(f3);
    mp_conn_free(c);
    mp_manager_free(m);
}

int main(int argc, char **argv)
{
    tu_filter(argc, argv);
    const struct CMUnitTest tests[] = {
        TU_TEST(test_malformed_requests_get_error_replies_and_the_server_serves_on),
        TU_TEST(test_random_requests_each_get_a_reply_and_break_nothing),
        TU_TEST(test_int_replies_of_every_width_read_back_exactly),
        TU_TEST(test_hand_written_requests_mean_what_the_decoder_says),
        TU_TEST(test_every_request_checks_its_argument_count_and_the_server_serves_on),
        TU_TEST(test_a_python_client_speaks_the_protocol),
        TU_TEST(test_requests_split_or_run_together_on_the_socket_are_answered_in_order),
    };
    return cmocka_run_group_tests_name("manager_protocol", tests, NULL, NULL);
}
