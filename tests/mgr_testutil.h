/*
 * Helpers the manager's test binaries share (tests/test_manager*.c, one
 * binary per part of src/manager/): start a manager and read its counters,
 * say "I got here" across a fork, speak raw requests, serve a manager from a
 * child. Prefix mt_; built once as mpipc_mgr_testutil (tests/CMakeLists.txt).
 * A helper one binary alone uses stays static in that binary's file.
 */
#ifndef MPIPC_MGR_TESTUTIL_H
#define MPIPC_MGR_TESTUTIL_H

#include "testutil.h"

#include <mpipc/conn.h>
#include <mpipc/manager.h>
#include <mpipc/obj.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define MT_LONG 10.0 /* a bound for things that take milliseconds */

/* Python's str and int of a C value (mp_obj_str_cstr, mp_obj_int). */
mp_obj *mt_str(const char *s);
mp_obj *mt_int(int64_t v);

/* {k: v} */
mp_obj *mt_dict1(const char *k, int64_t v);

/* Assert that o is non-NULL with repr want, then free it. */
void mt_take_repr(mp_obj *o, const char *want);

/* Start a manager with the default options (the test fails if it cannot). */
mp_manager *mt_start(void);

/* One integer of mp_manager_info (objects, waiting, connections, ...). */
int64_t mt_info_int(mp_manager *m, const char *key);

/* Wait up to MT_LONG until the server has n requests parked (info 'waiting'). */
bool mt_eventually_waiting(mp_manager *m, int64_t n);

/* What the tests' processes share: proxies made before a fork, a pipe's
 * write end for "I got here" (or a worker's number), a count. */
struct mt_shared {
    mp_dictproxy *d;
    mp_listproxy *l;
    mp_lockproxy *lock;
    mp_queueproxy *q;
    int fd; /* a pipe's write end, for "I got here" */
    int n;
};

/* A byte through a pipe, with a deadline: how children say "I got here".
 * mt_wait_byte returns 0, or -1 at the deadline; mt_say _exit()s on error. */
int mt_wait_byte(int fd, double timeout);
void mt_say(int fd);

/* Read exactly n bytes, each wait bounded: 0, or -1 on end of file, error
 * or timeout. */
int mt_read_full(int fd, void *buf, size_t n, double timeout);

/* Is a process gone (exited and reaped, or a zombie nobody reaps)? */
bool mt_pid_gone(pid_t pid);

/* An integer from the environment, or dflt (MPIPC_MANAGER_OPS: the reduced
 * sizes of the memcheck runs). */
int mt_env_int(const char *name, int dflt);

/* Raw requests on a connection made with mp_client_connect. mt_request
 * builds (ident, method, args) (args NULL: no arguments; it takes args).
 * mt_send_obj sends and frees one and returns its reply's code;
 * mt_raw_call sends a hand-made frame and returns the reply; mt_reply_code
 * turns a reply into 0 ('#RETURN') or its error code, and frees it.
 * mt_raw_hello says hello with a reply limit (0: the server's);
 * mt_raw_connect makes such a connection to m (mp_conn_free it). */
mp_obj *mt_request(int64_t ident, const char *method, mp_obj *args);
int mt_send_obj(mp_conn *c, mp_obj *req);
mp_obj *mt_raw_call(mp_conn *c, const void *frame, size_t len);
int mt_reply_code(mp_obj *r);
void mt_raw_hello(mp_conn *c, int64_t session, int64_t max_reply);
mp_conn *mt_raw_connect(mp_manager *m);

/* A manager served on "tcp:127.0.0.1:0" with key "secret" by a tu_fork
 * child; arg points at a struct mt_serving: a pipe's write end, where the
 * child writes its address (256 bytes), and the server's handshake_timeout
 * (0: the default). mt_serve_in_child forks it and returns its pid, the
 * address in address[cap]; _hs with that handshake timeout. */
struct mt_serving {
    int fd;
    double handshake_timeout;
};
int mt_serving_child(void *arg);
pid_t mt_serve_in_child(char *address, size_t cap);
pid_t mt_serve_in_child_hs(char *address, size_t cap, double handshake_timeout);

#endif /* MPIPC_MGR_TESTUTIL_H */
