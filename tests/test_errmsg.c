/*
 * errmsg: mp_errmsg, the calling thread's "why" of a failure (error.h): the
 * record itself (per thread, bounded, never allocating), then the messages
 * each module records, each caused the way a user meets it - a refused
 * pickle sent by another process, a manager KeyError, a killed pool worker.
 */
#include "mgr_testutil.h"
#include "pool_testutil.h"

#include "codec/pickle.h"
#include "core/internal.h"
#include "core/io.h"
#include "queue/qpipe.h"

#include <mpipc/conn.h>
#include <mpipc/error.h>
#include <mpipc/listener.h>
#include <mpipc/manager.h>
#include <mpipc/obj.h>
#include <mpipc/process.h>
#include <mpipc/queue.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* The link wraps malloc, calloc and realloc (tests/CMakeLists.txt): with
 * errmsg_no_alloc set, every allocation the library makes fails. */
static _Thread_local bool errmsg_no_alloc;
static _Thread_local int errmsg_allocs;
void *__real_malloc(size_t n);
void *__real_calloc(size_t k, size_t n);
void *__real_realloc(void *p, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t k, size_t n);
void *__wrap_realloc(void *p, size_t n);
void *__wrap_malloc(size_t n)
{
    if (errmsg_no_alloc) {
        errmsg_allocs++;
        return NULL;
    }
    return __real_malloc(n);
}
void *__wrap_calloc(size_t k, size_t n)
{
    if (errmsg_no_alloc) {
        errmsg_allocs++;
        return NULL;
    }
    return __real_calloc(k, n);
}
void *__wrap_realloc(void *p, size_t n)
{
    if (errmsg_no_alloc) {
        errmsg_allocs++;
        return NULL;
    }
    return __real_realloc(p, n);
}

/* Assert that the message for code contains want. */
#define ASSERT_MSG_HAS(code, want)                                                                 \
    do {                                                                                           \
        const char *m_ = mp_errmsg(code);                                                          \
        if (!strstr(m_, (want)))                                                                   \
            fail_msg("mp_errmsg(%s) = \"%s\", wanted \"%s\" in it", mp_errname(code), m_, (want)); \
    } while (0)

/* ---- The record ------------------------------------------------------------------ */

static void test_errmsg_without_a_record_is_strerror(void **state)
{
    (void)state;
    mp__err_clear();
    assert_string_equal(mp_errmsg(MP_EKEY), mp_strerror(MP_EKEY));
    assert_string_equal(mp_errmsg(-EPIPE), mp_strerror(-EPIPE));
    assert_string_equal(mp_errmsg(0), mp_strerror(0));
    assert_non_null(mp_errmsg(-123456)); /* never NULL, even for nonsense */
}

static void test_errmsg_of_another_code_is_strerror(void **state)
{
    (void)state;
    errno = EBADF;
    assert_int_equal(mp__err(MP_EKEY, "KeyError: %s", "'count'"), MP_EKEY);
    assert_int_equal(errno, EBADF); /* recording keeps errno */
    assert_string_equal(mp_errmsg(MP_EKEY), "KeyError: 'count'");
    assert_string_equal(mp_errmsg(MP_EPROTO), mp_strerror(MP_EPROTO));
    assert_string_equal(mp_errmsg(0), mp_strerror(0));
    /* The next recorded failure replaces it. */
    mp__err(MP_EPROTO, "refused (offset %zu)", (size_t)14);
    assert_string_equal(mp_errmsg(MP_EKEY), mp_strerror(MP_EKEY));
    assert_string_equal(mp_errmsg(MP_EPROTO), "refused (offset 14)");
    mp__err_clear();
    assert_string_equal(mp_errmsg(MP_EPROTO), mp_strerror(MP_EPROTO));
}

static void test_errmsg_cuts_a_long_message_with_dots(void **state)
{
    (void)state;
    char big[1000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    mp__err(MP_EVALUE, "%s", big);
    const char *m = mp_errmsg(MP_EVALUE);
    assert_int_equal(strlen(m), MP__ERRMSG_MAX - 1);
    assert_string_equal(m + strlen(m) - 3, "...");
    /* A cut never leaves half a UTF-8 character: 2-byte characters from
     * offset 1 put a character across the cut. */
    char u[600] = "a";
    for (size_t i = 1; i + 2 < sizeof u; i += 2)
        memcpy(u + i, "\xc3\xa9", 2), u[i + 2] = 0;
    mp__err(MP_EVALUE, "%s", u);
    m = mp_errmsg(MP_EVALUE);
    size_t len = strlen(m);
    assert_true(len <= MP__ERRMSG_MAX - 1);
    assert_string_equal(m + len - 3, "...");
    assert_int_equal((len - 3 - 1) % 2, 0); /* whole characters before the dots */
    mp__err_clear();
}

static void test_errmsg_records_without_allocating(void **state)
{
    (void)state;
    errmsg_allocs = 0;
    errmsg_no_alloc = true;
    mp__err(MP_EWORKER, "worker %d killed by signal %d", 4242, 9);
    const char *m = mp_errmsg(MP_EWORKER);
    errmsg_no_alloc = false;
    assert_string_equal(m, "worker 4242 killed by signal 9");
    assert_int_equal(errmsg_allocs, 0);
    /* A refused pickle's message is recorded without memory too. */
    static const unsigned char p[] = {0x80, 4, 'P', 'x', '\n', '.'};
    mp_obj *o = NULL;
    errmsg_no_alloc = true;
    int rc = mp__pickle_loads(p, sizeof p, &o);
    errmsg_no_alloc = false;
    assert_int_equal(rc, MP_EPROTO);
    assert_null(o);
    ASSERT_MSG_HAS(MP_EPROTO, "opcode 0x50 PERSID refused: persistent ids are not supported "
                              "(offset 2)");
    mp__err_clear();
}

struct errmsg_thread {
    pthread_barrier_t *bar;
    const char *mine;
    char seen[MP__ERRMSG_MAX];
};

static void *errmsg_thread_main(void *arg)
{
    struct errmsg_thread *t = arg;
    mp__err(MP_EKEY, "KeyError: %s", t->mine);
    pthread_barrier_wait(t->bar); /* both have recorded */
    pthread_barrier_wait(t->bar); /* the main thread recorded too */
    snprintf(t->seen, sizeof t->seen, "%s", mp_errmsg(MP_EKEY));
    return NULL;
}

static void test_errmsg_threads_keep_separate_records(void **state)
{
    (void)state;
    pthread_barrier_t bar;
    assert_int_equal(pthread_barrier_init(&bar, NULL, 3), 0);
    struct errmsg_thread t[2] = {{&bar, "'a'", ""}, {&bar, "'b'", ""}};
    pthread_t id[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&id[i], NULL, errmsg_thread_main, &t[i]), 0);
    pthread_barrier_wait(&bar);
    mp__err(MP_EKEY, "KeyError: 'main'");
    pthread_barrier_wait(&bar);
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_join(id[i], NULL), 0);
    pthread_barrier_destroy(&bar);
    assert_string_equal(t[0].seen, "KeyError: 'a'");
    assert_string_equal(t[1].seen, "KeyError: 'b'");
    assert_string_equal(mp_errmsg(MP_EKEY), "KeyError: 'main'");
    mp__err_clear();
}

/* ---- The decoder ----------------------------------------------------------------- */

/* Decode p and return mp_errmsg(MP_EPROTO), asserting the refusal. */
static const char *errmsg_refused(const void *p, size_t n)
{
    mp_obj *o = NULL;
    mp__err_clear();
    assert_int_equal(mp__pickle_loads(p, n, &o), MP_EPROTO);
    assert_null(o);
    return mp_errmsg(MP_EPROTO);
}

static void test_errmsg_decoder_names_opcode_offset_and_limit(void **state)
{
    (void)state;
    /* pickle.dumps(collections.OrderedDict(), 4) begins like this. */
    static const unsigned char glob[] = "\x80\x04\x8c\x0b"
                                        "collections\x94\x8c\x0b"
                                        "OrderedDict\x94\x93\x94)R\x94.";
    assert_string_equal(errmsg_refused(glob, sizeof glob - 1),
                        "opcode 0x93 STACK_GLOBAL refused: the decoder never imports (offset 30; "
                        "only builtins.bytearray, set, frozenset and the classes of docs/wire.md are known)");
    static const unsigned char build[] = {0x80, 4, ']', 'N', 'b', '.'};
    assert_string_equal(errmsg_refused(build, sizeof build),
                        "opcode 0x62 BUILD refused: the decoder never calls (offset 4)");
    static const unsigned char py2[] = "\x80\x02U\x02hiq\x00.";
    assert_string_equal(errmsg_refused(py2, sizeof py2 - 1),
                        "opcode 0x55 SHORT_BINSTRING refused: Python 2 str is not a supported "
                        "value (offset 2)");
    static const unsigned char notop[] = {0x80, 4, 0xff, '.'};
    assert_string_equal(errmsg_refused(notop, sizeof notop),
                        "byte 0xff is not a pickle opcode (offset 2)");
    /* BINUNICODE says 100 bytes follow; 2 do. */
    static const unsigned char cut[] = {0x80, 4, 'X', 100, 0, 0, 0, 'h', 'i'};
    assert_string_equal(
        errmsg_refused(cut, sizeof cut),
        "truncated pickle: opcode 0x58 BINUNICODE runs past the end (offset 2 of 9)");
    static const unsigned char nostop[] = {0x80, 4, 'N'};
    assert_string_equal(errmsg_refused(nostop, sizeof nostop),
                        "truncated pickle: the data ends before STOP (offset 3)");
    static const unsigned char two[] = {0x80, 4, 'N', 'N', '.'};
    assert_non_null(strstr(errmsg_refused(two, sizeof two), "STOP must leave one value"));
    /* [[[...]]] deeper than MP_OBJ_MAX_DEPTH. */
    size_t depth = MP_OBJ_MAX_DEPTH + 1, n = 0;
    unsigned char *deep = malloc(2 * depth + 8);
    assert_non_null(deep);
    deep[n++] = 0x80, deep[n++] = 4;
    for (size_t i = 0; i < depth; i++)
        deep[n++] = ']';
    for (size_t i = 1; i < depth; i++)
        deep[n++] = 'a';
    deep[n++] = '.';
    char want[80];
    snprintf(want, sizeof want, "nests deeper than the limit of %d levels", (int)MP_OBJ_MAX_DEPTH);
    assert_non_null(strstr(errmsg_refused(deep, n), want));
    free(deep);
    /* x = []; 60 times x = [x, x]: Python shares x, a tree copies it, and
     * the copies run into the work limit. */
    unsigned char shared[2 + 2 + 60 * 8 + 1];
    n = 0;
    shared[n++] = 0x80, shared[n++] = 4, shared[n++] = ']', shared[n++] = 0x94;
    for (unsigned i = 1; i <= 60; i++) {
        const unsigned char level[] = {
            '0', '(', 'h', (unsigned char)(i - 1), 'h', (unsigned char)(i - 1), 'l', 0x94};
        memcpy(shared + n, level, sizeof level);
        n += sizeof level;
    }
    shared[n++] = '.';
    assert_non_null(strstr(errmsg_refused(shared, n), "over the decoder's work limit"));
    /* A list that contains itself: ] MEMOIZE GET 0 APPEND. */
    static const unsigned char cyc[] = {0x80, 4, ']', 0x94, 'h', 0, 'a', '.'};
    assert_non_null(strstr(errmsg_refused(cyc, sizeof cyc), "contains itself"));
    /* An unhashable key: {[]: None}. */
    static const unsigned char unh[] = {0x80, 4, '}', ']', 'N', 's', '.'};
    assert_string_equal(errmsg_refused(unh, sizeof unh),
                        "TypeError: unhashable dict key or set item (opcode 0x73 SETITEM, offset 5)");
    mp__err_clear();
}

static int errmsg_send_refused(void *arg)
{
    mp_conn *c = arg;
    static const unsigned char glob[] = "\x80\x04\x8c\x0b"
                                        "collections\x94\x8c\x0b"
                                        "OrderedDict\x94\x93\x94)R\x94.";
    return mp_conn_send_bytes(c, glob, sizeof glob - 1) == 0 ? 0 : 1;
}

/* Python's Connection.recv() raises from pickle.loads in the receiving
 * process; here mp_conn_recv returns MP_EPROTO and the receiving thread
 * has the why. The message is consumed, as in Python. */
static void test_errmsg_recv_of_refused_pickle_from_another_process(void **state)
{
    (void)state;
    mp_conn *a, *b;
    assert_int_equal(mp_pipe(&a, &b, true), 0);
    pid_t pid = tu_fork(errmsg_send_refused, b);
    assert_int_equal(tu_wait_child(pid, MT_LONG), 0);
    mp_obj *o = NULL;
    mp__err(MP_EPROTO, "stale");
    assert_int_equal(mp_conn_recv(a, &o, MT_LONG), MP_EPROTO);
    assert_null(o);
    assert_string_equal(mp_errmsg(MP_EPROTO),
                        "opcode 0x93 STACK_GLOBAL refused: the decoder never imports (offset 30; "
                        "only builtins.bytearray, set, frozenset and the classes of docs/wire.md are known)");
    assert_int_equal(mp_conn_poll(a, 0), 0);
    mp_conn_free(a);
    mp_conn_free(b);
}

/* The same from a real python3 sender. */
static void test_errmsg_recv_of_python_object_names_stack_global(void **state)
{
    (void)state;
    mp_conn *a, *b;
    assert_int_equal(mp_pipe(&a, &b, true), 0);
    int fd = mp_conn_fileno(b);
    char arg[16];
    snprintf(arg, sizeof arg, "%d", fd);
    const char *args[] = {arg, NULL};
    pid_t pid = tu_spawn_python("import sys, collections\n"
                                "from multiprocessing.connection import Connection\n"
                                "Connection(int(sys.argv[1])).send(collections.OrderedDict())\n",
                                args, &fd, 1);
    assert_int_equal(tu_wait_child(pid, 30), 0);
    mp_obj *o = NULL;
    assert_int_equal(mp_conn_recv(a, &o, MT_LONG), MP_EPROTO);
    ASSERT_MSG_HAS(MP_EPROTO,
                   "opcode 0x93 STACK_GLOBAL refused: the decoder never imports (offset ");
    mp_conn_free(a);
    mp_conn_free(b);
}

/* A child writes a pickle the decoder refuses straight into a queue's pipe,
 * as a foreign producer could. */
static int errmsg_queue_refused(void *arg)
{
    static const unsigned char glob[] = "\x80\x04\x8c\x0b"
                                        "collections\x94\x8c\x0b"
                                        "OrderedDict\x94\x93\x94)R\x94.";
    struct mp__qitem item = {glob, sizeof glob - 1, MP__QK_OBJ};
    size_t written = 0;
    int rc = mp__qpipe_write(mp__simplequeue_qpipe(arg), &item, 1, mp__deadline(MT_LONG), NULL,
                             NULL, &written, false);
    return rc == 0 && written == 1 ? 0 : 1;
}

/* Python's Queue.get() unpickles in the getting thread and raises there;
 * here the get decodes on the caller's thread, which gets the why. */
static void test_errmsg_queue_get_of_refused_pickle(void **state)
{
    (void)state;
    mp_simplequeue *q;
    TU_ASSERT_STATUS(mp_simplequeue_new(&q), 0);
    pid_t pid = tu_fork(errmsg_queue_refused, q);
    assert_int_equal(tu_wait_child(pid, MT_LONG), 0);
    mp_obj *o = NULL;
    mp__err_clear();
    TU_ASSERT_STATUS(mp_simplequeue_get_obj(q, &o, MT_LONG), MP_EPROTO);
    assert_null(o);
    ASSERT_MSG_HAS(MP_EPROTO, "opcode 0x93 STACK_GLOBAL refused: the decoder never imports");
    assert_int_equal(mp_simplequeue_empty(q), 1); /* taken, as Python's get takes it */
    mp_simplequeue_free(q);
}

/* ---- The manager ----------------------------------------------------------------- */

/* Python's DictProxy re-raises the server's KeyError(key), which prints as
 * "KeyError: 'count'"; the server sends those words and the calling thread
 * gets them. */
static void test_errmsg_manager_keyerror_has_the_key_repr(void **state)
{
    (void)state;
    mp_manager *m = mt_start();
    mp_dictproxy *d;
    TU_ASSERT_STATUS(mp_manager_dict(m, NULL, &d), 0);
    mp_obj *k = mt_str("count"), *o = NULL;
    TU_ASSERT_STATUS(mp_dictproxy_get(d, k, &o), MP_EKEY);
    assert_string_equal(mp_errmsg(MP_EKEY), "KeyError: 'count'");
    assert_string_equal(mp_errmsg(MP_ETYPE), mp_strerror(MP_ETYPE));
    TU_ASSERT_STATUS(mp_dictproxy_pop(d, k, &o), MP_EKEY);
    assert_string_equal(mp_errmsg(MP_EKEY), "KeyError: 'count'");
    mp_obj_free(k);
    k = mt_int(66);
    TU_ASSERT_STATUS(mp_dictproxy_del(d, k), MP_EKEY);
    assert_string_equal(mp_errmsg(MP_EKEY), "KeyError: 66");
    mp_obj_free(k);

    /* A huge key: its repr is cut to 200 bytes, and says so. */
    char big[5000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    k = mt_str(big);
    TU_ASSERT_STATUS(mp_dictproxy_get(d, k, &o), MP_EKEY);
    const char *msg = mp_errmsg(MP_EKEY);
    assert_true(strncmp(msg, "KeyError: 'xxxxxxxx", 19) == 0);
    assert_true(strlen(msg) <= strlen("KeyError: ") + 200 + 3);
    assert_string_equal(msg + strlen(msg) - 4, "x...");
    mp_obj_free(k);

    /* An unhashable key, in Python's words. */
    k = mp_obj_list_new();
    TU_ASSERT_STATUS(mp_dictproxy_get(d, k, &o), MP_ETYPE);
    assert_string_equal(mp_errmsg(MP_ETYPE), "TypeError: unhashable type: 'list'");
    mp_obj_free(k);

    /* A success in between, then a failure of another kind: no old words. */
    k = mt_str("a");
    mp_obj *v = mt_int(1);
    TU_ASSERT_STATUS(mp_dictproxy_set(d, k, v), 0);
    mp_obj_free(v);
    mp_obj_free(k);
    mp_dictproxy_free(d);
    mp_manager_free(m);
}

/* ---- The pool -------------------------------------------------------------------- */

static int errmsg_task_dies(const mp_obj *args, mp_obj **result)
{
    (void)args;
    (void)result;
    raise(SIGKILL);
    return 0;
}

static int errmsg_task_fails(const mp_obj *args, mp_obj **result)
{
    (void)result;
    int64_t v = 0;
    (void)mp_obj_get_int(mp_obj_list_get(args, 0), &v);
    return mp_task_fail(7, "no file number %d", (int)v);
}

/* Python's apply raises the task's exception in the caller; a worker killed
 * by SIGKILL is mpipc's MP_EWORKER. Either way the caller's thread gets the
 * words the mp_task_error holds, though the pool's result thread learned
 * them. */
static void test_errmsg_pool_worker_death_and_task_failure(void **state)
{
    (void)state;
    mp_pool_opts o = MP_POOL_OPTS_INIT;
    o.processes = 1;
    mp_pool *p;
    TU_ASSERT_STATUS(mp_pool_new(&p, &o), 0);
    mp_obj *arg = tuple2(mp_obj_int(42), NULL), *res = NULL;
    mp_task_error err;
    pid_t worker;
    TU_ASSERT_STATUS(mp_pool_pids(p, &worker, 1), 1);
    mp__err_clear();
    TU_ASSERT_STATUS(mp_pool_apply(p, errmsg_task_dies, arg, &res, &err, T_LONG), MP_EWORKER);
    assert_int_equal(err.code, -SIGKILL);
    assert_non_null(strstr(err.message, "killed by signal 9"));
    assert_string_equal(mp_errmsg(MP_EWORKER), err.message);
    char pid[32];
    snprintf(pid, sizeof pid, "(pid %d)", (int)worker);
    assert_non_null(strstr(mp_errmsg(MP_EWORKER), pid));

    /* Without an mp_task_error the words still reach the caller. */
    TU_ASSERT_STATUS(mp_pool_apply(p, errmsg_task_fails, arg, &res, NULL, T_LONG), MP_ETASK);
    assert_string_equal(mp_errmsg(MP_ETASK), "no file number 42");
    assert_string_equal(mp_errmsg(MP_EWORKER), mp_strerror(MP_EWORKER));

    /* Through map and an async result too. */
    mp_obj *items = mp_obj_list_new();
    assert_non_null(items);
    assert_int_equal(mp_obj_list_append(items, mt_int(5)), 0);
    TU_ASSERT_STATUS(mp_pool_map(p, errmsg_task_fails, items, 1, &res, &err, T_LONG), MP_ETASK);
    assert_string_equal(mp_errmsg(MP_ETASK), err.message);
    mp_obj_free(items);
    mp_result *r;
    TU_ASSERT_STATUS(mp_pool_apply_async(p, errmsg_task_fails, arg, NULL, &r), 0);
    const mp_obj *v;
    mp__err_clear();
    TU_ASSERT_STATUS(mp_result_get(r, &v, NULL, T_LONG), MP_ETASK);
    assert_string_equal(mp_errmsg(MP_ETASK), "no file number 42");
    mp_result_free(r);
    mp_obj_free(arg);
    mp_pool_free(p);
}

/* ---- The handshakes -------------------------------------------------------------- */

/* The child delivers a challenge with the right key; it exits 0 when its
 * own side failed with Python's words for it. */
static int errmsg_deliver_right_key(void *arg)
{
    mp_conn *c = arg;
    int rc = mp_deliver_challenge(c, "right", 5, MP_AUTH_SHA256, MT_LONG);
    return rc == MP_EAUTH && strcmp(mp_errmsg(rc), "digest received was wrong") == 0 ? 0 : 1;
}

static int errmsg_send_not_a_challenge(void *arg)
{
    mp_conn *c = arg;
    return mp_conn_send_bytes(c, "#HELLO there, no challenge here", 31) == 0 ? 0 : 1;
}

/* Python's answer_challenge / deliver_challenge raise AuthenticationError
 * with these texts; each end of a failed handshake gets its own. */
static void test_errmsg_handshake_failures_use_python_words(void **state)
{
    (void)state;
    mp_conn *a, *b;
    assert_int_equal(mp_pipe(&a, &b, true), 0);
    pid_t pid = tu_fork(errmsg_deliver_right_key, b);
    TU_ASSERT_STATUS(mp_answer_challenge(a, "wrong", 5, MT_LONG), MP_EAUTH);
    assert_string_equal(mp_errmsg(MP_EAUTH), "digest sent was rejected");
    assert_int_equal(tu_wait_child(pid, MT_LONG), 0);
    mp_conn_free(a);
    mp_conn_free(b);

    assert_int_equal(mp_pipe(&a, &b, true), 0);
    pid = tu_fork(errmsg_send_not_a_challenge, b);
    TU_ASSERT_STATUS(mp_answer_challenge(a, "k", 1, MT_LONG), MP_EAUTH);
    assert_string_equal(mp_errmsg(MP_EAUTH), "Protocol error, expected challenge");
    assert_int_equal(tu_wait_child(pid, MT_LONG), 0);
    mp_conn_free(a);
    mp_conn_free(b);
}

/* The same against a real python3 end: Python's deliver_challenge raises
 * AuthenticationError('digest received was wrong') (its exit status 0 says
 * it did, with that text) and the C end gets the other side's words. */
static void test_errmsg_handshake_with_python_uses_the_same_words(void **state)
{
    (void)state;
    mp_conn *a, *b;
    assert_int_equal(mp_pipe(&a, &b, true), 0);
    int fd = mp_conn_fileno(b);
    char arg[16];
    snprintf(arg, sizeof arg, "%d", fd);
    const char *args[] = {arg, NULL};
    pid_t pid = tu_spawn_python("import sys\n"
                                "from multiprocessing import connection as mc\n"
                                "c = mc.Connection(int(sys.argv[1]))\n"
                                "try:\n"
                                "    mc.deliver_challenge(c, b'right')\n"
                                "except mc.AuthenticationError as e:\n"
                                "    sys.exit(0 if str(e) == 'digest received was wrong' else 2)\n"
                                "sys.exit(1)\n",
                                args, &fd, 1);
    TU_ASSERT_STATUS(mp_answer_challenge(a, "wrong", 5, MT_LONG), MP_EAUTH);
    assert_string_equal(mp_errmsg(MP_EAUTH), "digest sent was rejected");
    assert_int_equal(tu_wait_child(pid, 30), 0);
    mp_conn_free(a);
    mp_conn_free(b);
}

/* ---- Processes ------------------------------------------------------------------- */

static int errmsg_sleeper(void *arg)
{
    (void)arg;
    sleep(60); /* until terminated */
    return 0;
}

/* Python's ValueError and assertion texts for a Process used out of turn. */
static void test_errmsg_process_misuse_uses_python_words(void **state)
{
    (void)state;
    mp_process *p;
    TU_ASSERT_STATUS(mp_process_new(&p, errmsg_sleeper, NULL), 0);
    TU_ASSERT_STATUS(mp_process_sentinel(p), MP_EVALUE);
    assert_string_equal(mp_errmsg(MP_EVALUE), "process not started");
    TU_ASSERT_STATUS(mp_process_join(p, 0), MP_ESTATE);
    assert_string_equal(mp_errmsg(MP_ESTATE), "the process has not been started");
    TU_ASSERT_STATUS(mp_process_start(p), 0);
    TU_ASSERT_STATUS(mp_process_start(p), MP_ESTATE);
    assert_string_equal(mp_errmsg(MP_ESTATE), "cannot start a process twice");
    TU_ASSERT_STATUS(mp_process_set_daemon(p, true), MP_ESTATE);
    assert_string_equal(mp_errmsg(MP_ESTATE), "process has already started");
    TU_ASSERT_STATUS(mp_process_close(p), MP_EVALUE);
    assert_non_null(
        strstr(mp_errmsg(MP_EVALUE), "Cannot close a process while it is still running"));
    TU_ASSERT_STATUS(mp_process_terminate(p), 0);
    TU_ASSERT_STATUS(mp_process_join(p, MT_LONG), 0);
    TU_ASSERT_STATUS(mp_process_close(p), 0);
    TU_ASSERT_STATUS(mp_process_start(p), MP_EVALUE);
    assert_string_equal(mp_errmsg(MP_EVALUE), "process object is closed");
    mp_process_free(p);
}

int main(int argc, char **argv)
{
    test_pid = getpid();
    tu_filter(argc, argv);
    const struct CMUnitTest tests[] = {
        TU_TEST(test_errmsg_without_a_record_is_strerror),
        TU_TEST(test_errmsg_of_another_code_is_strerror),
        TU_TEST(test_errmsg_cuts_a_long_message_with_dots),
        TU_TEST(test_errmsg_records_without_allocating),
        TU_TEST(test_errmsg_threads_keep_separate_records),
        TU_TEST(test_errmsg_decoder_names_opcode_offset_and_limit),
        TU_TEST(test_errmsg_recv_of_refused_pickle_from_another_process),
        TU_TEST(test_errmsg_recv_of_python_object_names_stack_global),
        TU_TEST(test_errmsg_queue_get_of_refused_pickle),
        TU_TEST(test_errmsg_manager_keyerror_has_the_key_repr),
        TU_TEST(test_errmsg_pool_worker_death_and_task_failure),
        TU_TEST(test_errmsg_handshake_failures_use_python_words),
        TU_TEST(test_errmsg_handshake_with_python_uses_the_same_words),
        TU_TEST(test_errmsg_process_misuse_uses_python_words),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
