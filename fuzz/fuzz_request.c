/*
 * libFuzzer harness for the manager server's request handling after login
 * (src/manager/mgr_server_request.c and the object types, src/manager/mgr_type_*.c,
 * through the socket-less probe of src/manager/mgr.h, src/manager/mgr_server_probe.c).
 *
 * The input is a script of steps on four connections that have said hello
 * (connections 0 and 1 of one client process, 2 and 3 of another), so the
 * fuzzer spends its time on what authenticated clients can do: make, attach
 * and release objects, call every method with any arguments, park waiters,
 * hang up holding locks, let deadlines pass. Each step is one byte, then
 * its operands:
 *
 *   op & 3            the connection
 *   op >> 2 & 7 < 5   a raw request: a 2-byte length, then that many bytes
 *                     (the frame's payload, any bytes at all)
 *              == 5   the connection's peer hangs up (a new one says hello;
 *                     with op & 0x20, a new one that speaks CPython's
 *                     dialect instead, mgr_server_py.c)
 *              == 6   every timed waiter's deadline passes
 *              == 7   a request built from parts: an ident byte, a method
 *                     (an index into the table below), then a byte's worth
 *                     of argument pickle (opcodes ending in a tuple); on a
 *                     CPython connection (ident as '%x' or None, a method
 *                     of py_methods, args, {})
 *
 * Whatever happens, the server must not crash, leak or touch memory it does
 * not own (ASan/UBSan), and every request the server reads gets exactly one
 * reply - at once, or later when a request parked in the server is granted,
 * times out or loses its object or connection - and every reply is a frame
 * holding ('#RETURN', value) or ('#ERROR', int, str); on a CPython
 * connection ('#RETURN', value), ('#ERROR', exception), ('#TRACEBACK', str)
 * or ('#PROXY', (exposed, token)).
 */
#include "codec/frame.h"
#include "codec/pickle.h"
#include "manager/mgr.h"

#include <mpipc/obj.h>

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NCONN 4

static const char *const methods[] = {
    "hello",  "create",   "attach", "incref", "release", "unlink",     "info",      "ping",
    "shm",    "shutdown", "get",    "set",    "del",     "contains",   "len",       "keys",
    "values", "items",    "clear",  "pop",    "popitem", "setdefault", "update",    "copy",
    "add",    "cas",      "append", "extend", "insert",  "slice",      "index",     "count",
    "remove", "acquire",  "put",    "qsize",  "empty",   "full",       "task_done", "join",
};

/* CPython's names: the server's public calls and the proxies' methods. */
static const char *const py_methods[] = {
    "dummy",
    "create",
    "accept_connection",
    "incref",
    "decref",
    "get_methods",
    "debug_info",
    "number_of_objects",
    "shutdown",
    "__getitem__",
    "__setitem__",
    "__delitem__",
    "__contains__",
    "__len__",
    "get",
    "setdefault",
    "pop",
    "popitem",
    "keys",
    "values",
    "items",
    "clear",
    "copy",
    "update",
    "#GETVALUE",
    "append",
    "extend",
    "insert",
    "remove",
    "index",
    "count",
    "get_nowait",
    "put",
    "put_nowait",
    "qsize",
    "empty",
    "full",
    "task_done",
    "join",
    "acquire",
    "release",
    "sort",
};

static void check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_request: %s\n", what);
        abort();
    }
}

struct state {
    struct mp__mgr_probe *p;
    int parked[NCONN]; /* a request read from it has not been answered */
    bool py[NCONN];    /* it speaks CPython's dialect */
};

/* A reply in CPython's dialect: ('#RETURN', v), ('#ERROR', exception),
 * ('#TRACEBACK', text) or ('#PROXY', (exposed, token)). */
static void check_py_reply(const mp_obj *r, const char *k, size_t kl)
{
    check(mp_obj_len(r) == 2, "a CPython reply is a pair");
    const mp_obj *v = mp_obj_list_get(r, 1);
    if (kl == 6 && memcmp(k, "#ERROR", 6) == 0)
        check(mp_obj_type(v) == MP_TYPE_INSTANCE, "('#ERROR', exception)");
    else if (kl == 10 && memcmp(k, "#TRACEBACK", 10) == 0)
        check(mp_obj_type(v) == MP_TYPE_STR, "('#TRACEBACK', text)");
    else if (kl == 6 && memcmp(k, "#PROXY", 6) == 0)
        check(mp_obj_type(v) == MP_TYPE_TUPLE && mp_obj_len(v) == 2 &&
                  mp_obj_type(mp_obj_list_get(v, 1)) == MP_TYPE_INSTANCE,
              "('#PROXY', (exposed, token))");
    else
        check(kl == 7 && memcmp(k, "#RETURN", 7) == 0, "a CPython reply's tag");
}

/* Take connection i's output: count its frames, check each one. */
static int frames(struct state *st, unsigned i)
{
    unsigned char *out;
    size_t len;
    if (mp__mgr_probe_take(st->p, i, &out, &len) < 0)
        return -1;
    int n = 0;
    size_t at = 0;
    while (at < len) {
        uint64_t size;
        size_t hdr;
        check(mp__frame_decode(out + at, len - at, &size, &hdr) == 1, "a reply frame is cut");
        check(size <= len - at - hdr, "a reply frame is cut short");
        mp_obj *r = NULL;
        int rc = mp__pickle_loads(out + at + hdr, (size_t)size, &r);
        check(rc == 0 || rc == -12 /* -ENOMEM */, "a reply does not decode");
        if (rc == 0) {
            const char *k = "";
            size_t kl = 0;
            int64_t code = 0;
            check(mp_obj_type(r) == MP_TYPE_TUPLE, "a reply is not a tuple");
            check(mp_obj_get_str(mp_obj_list_get(r, 0), &k, &kl) == 0, "a reply has no tag");
            /* A CPython connection whose first request did not decode
             * has not chosen its dialect: ours answers it. */
            if (st->py[i] && !(mp_obj_len(r) == 3 && kl == 6 && memcmp(k, "#ERROR", 6) == 0)) {
                check_py_reply(r, k, kl);
            } else if (kl == 7 && memcmp(k, "#RETURN", 7) == 0) {
                check(mp_obj_len(r) == 2, "('#RETURN', value)");
            } else {
                check(kl == 6 && memcmp(k, "#ERROR", 6) == 0, "a reply's tag");
                check(mp_obj_len(r) == 3, "('#ERROR', code, text)");
                check(mp_obj_get_int(mp_obj_list_get(r, 1), &code) == 0 && code < 0,
                      "an error's code");
                check(mp_obj_type(mp_obj_list_get(r, 2)) == MP_TYPE_STR, "an error's text");
            }
        }
        mp_obj_free(r);
        at += hdr + (size_t)size;
        n++;
    }
    free(out);
    return n;
}

/* After each step: a parked request is answered once at most; nothing
 * else is said to anyone. */
static void settle(struct state *st)
{
    for (unsigned i = 0; i < NCONN; i++) {
        int n = frames(st, i);
        if (n < 0)
            continue;
        check(n <= st->parked[i], "a reply nobody asked for");
        if (n)
            st->parked[i] = 0;
    }
}

/* Run a request on connection i: one reply, or parked. */
static void request(struct state *st, unsigned i, const void *req, size_t n)
{
    if (mp__mgr_probe_request(st->p, i, req, n) != 0)
        return; /* not read: its last request is still parked */
    int got = frames(st, i);
    if (got < 0)
        return;
    check(got <= 1, "two replies to one request");
    st->parked[i] = got == 0;
    settle(st);
}

/* ('hello', (session, pid, 0, 1)) on connection i. */
static void hello(struct state *st, unsigned i)
{
    unsigned char req[] = {0x80, 4, 'K', 0, 0x8c, 5, 'h', 'e', 'l', 'l',  'o', '(',
                           'K',  0, 'K', 7, 'K',  0, 'K', 1,   't', 0x87, '.'};
    req[13] = (unsigned char)(1 + i / 2); /* the session: 0 and 1, 2 and 3 share one */
    request(st, i, req, sizeof req);
}

static int start(struct state *st)
{
    memset(st, 0, sizeof *st);
    if (mp__mgr_probe_new(&st->p, (size_t)64 << 10) < 0)
        return -1;
    for (unsigned i = 0; i < NCONN; i++)
        hello(st, i);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct state st;
    if (start(&st) < 0)
        return 0;
    size_t at = 0;
    unsigned char built[512];
    while (at < size) {
        unsigned op = data[at++], i = op & 3, kind = op >> 2 & 7;
        if (kind < 5) {
            size_t n = 0;
            if (at + 2 <= size) {
                n = data[at] | (size_t)data[at + 1] << 8;
                at += 2;
            }
            if (n > size - at)
                n = size - at;
            request(&st, i, data + at, n);
            at += n;
        } else if (kind == 5) {
            if (mp__mgr_probe_close(st.p, i) < 0)
                break;
            st.parked[i] = 0;
            settle(&st);
            st.py[i] = (op & 0x20) != 0;
            if (!st.py[i])
                hello(&st, i);
        } else if (kind == 6) {
            mp__mgr_probe_expire(st.p);
            settle(&st);
        } else {
            if (at + 3 > size)
                break;
            unsigned ident = data[at], mi = data[at + 1], an = data[at + 2];
            at += 3;
            if (an > size - at)
                an = (unsigned)(size - at);
            const char *m = st.py[i] ? py_methods[mi % (sizeof py_methods / sizeof py_methods[0])]
                                     : methods[mi % (sizeof methods / sizeof methods[0])];
            size_t k = 0, ml = strlen(m);
            built[k++] = 0x80;
            built[k++] = 4;
            if (st.py[i]) {
                /* (ident, method, args, {}): ident None, or our id in hex. */
                built[k++] = '(';
                if (ident == 0) {
                    built[k++] = 'N';
                } else {
                    char hex[4];
                    int hl = snprintf(hex, sizeof hex, "%x", ident);
                    built[k++] = 0x8c;
                    built[k++] = (unsigned char)hl;
                    memcpy(built + k, hex, (size_t)hl);
                    k += (size_t)hl;
                }
            } else {
                built[k++] = 'K';
                built[k++] = (unsigned char)ident;
            }
            built[k++] = 0x8c;
            built[k++] = (unsigned char)ml;
            memcpy(built + k, m, ml);
            k += ml;
            memcpy(built + k, data + at, an);
            k += an;
            at += an;
            if (st.py[i]) {
                built[k++] = '}';
                built[k++] = 't';
            } else {
                built[k++] = 0x87;
            }
            built[k++] = '.';
            request(&st, i, built, k);
        }
        if (mp__mgr_probe_stopped(st.p)) {
            /* After a shutdown nothing is read: start over, to go on. */
            mp__mgr_probe_free(st.p);
            if (start(&st) < 0)
                return 0;
        }
    }
    mp__mgr_probe_free(st.p);
    return 0;
}
