/* A round trip of values with a real python3 through a Pipe, shared by
 * test_obj_int.c and test_obj_str.c: Python pickles each value of a list in
 * protocols 0-5, C decodes every pickle, compares its own pickle with
 * Python's byte for byte and its repr with Python's, and sends the value
 * back for Python to compare; then C sends values it built, which Python
 * compares with the literal it is given. */
#ifndef MPIPC_TEST_PY_ROUNDTRIP_H
#define MPIPC_TEST_PY_ROUNDTRIP_H

#include "testutil.h"

#include "codec/pickle.h"

#include <mpipc/conn.h>
#include <mpipc/obj.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PYRT_TIMEOUT 30.0

static const char pyrt_peer[] =
    "import sys, os, pickle, pickletools\n"
    "from multiprocessing.connection import Connection\n"
    "c = Connection(int(sys.argv[1]))\n"
    "vals = eval(sys.argv[2])\n"
    "def fail(m):\n"
    "    sys.stderr.write('python peer: %s\\n' % m); sys.exit(1)\n"
    "for v in vals:\n"
    "    try: r = repr(v)\n"
    "    except ValueError: r = None  # beyond 4300 digits\n"
    "    ps = [pickletools.optimize(pickle.dumps(v, 4))]\n"
    "    for proto in (0, 2, 3, 5):\n"
    "        try: ps.append(pickle.dumps(v, proto))\n"
    "        except ValueError: pass  # protocol 0 writes an int as its text\n"
    "    c.send((r, len(ps)))\n"
    "    for p in ps: c.send_bytes(p)\n"
    "    back = c.recv()\n"
    "    if type(back) is not type(v) or back != v: fail('round trip of %.80r' % (v,))\n"
    "c.send(None)\n"
    "while True:\n"
    "    m = c.recv()\n"
    "    if m is None: break\n"
    "    expr, v = m\n"
    "    want = eval(expr)\n"
    "    c.send(type(v) is type(want) and v == want and repr(v) == repr(want))\n";

struct pyrt_case {
    const char *expr; /* the Python literal */
    mp_obj *value;    /* what C built for it (the case owns it) */
};

/* Python's pickle without its FRAME header (we write none). */
static inline void pyrt_unframe(const unsigned char **p, size_t *n)
{
    if (*n >= 11 && (*p)[2] == MP__OP_FRAME) {
        unsigned char *q = malloc(*n - 9);
        assert_non_null(q);
        memcpy(q, *p, 2);
        memcpy(q + 2, *p + 11, *n - 11);
        *p = q;
        *n -= 9;
    }
}

/* C's side of one value Python sent: decode every pickle, check them. */
static inline void pyrt_check_value(mp_conn *c, const mp_obj *hdr)
{
    const mp_obj *r = mp_obj_list_get(hdr, 0);
    int64_t np;
    TU_ASSERT_STATUS(mp_obj_get_int(mp_obj_list_get(hdr, 1), &np), 0);
    mp_obj *first = NULL;
    for (int64_t i = 0; i < np; i++) {
        void *buf;
        size_t len;
        TU_ASSERT_STATUS(mp_conn_recv_bytes(c, 0, &buf, &len, PYRT_TIMEOUT), 0);
        mp_obj *o = NULL;
        TU_ASSERT_STATUS(mp__pickle_loads(buf, len, &o), 0);
        if (i == 0) {
            /* Python's protocol 4, memo and frame taken off: our bytes. */
            const unsigned char *py = buf;
            size_t pn = len;
            pyrt_unframe(&py, &pn);
            unsigned char *ours;
            size_t on;
            TU_ASSERT_STATUS(mp__pickle_dumps(o, &ours, &on), 0);
            assert_int_equal(on, pn);
            assert_memory_equal(ours, py, on);
            free(ours);
            if (py != buf)
                free((void *)py);
            first = o;
        } else {
            assert_true(mp_obj_equal(o, first));
            mp_obj_free(o);
        }
        free(buf);
    }
    char *s = NULL;
    if (mp_obj_is_none(r)) {
        TU_ASSERT_STATUS(mp_obj_repr(first, &s), MP_EVALUE);
        assert_null(s);
    } else {
        const char *want;
        TU_ASSERT_STATUS(mp_obj_get_str(r, &want, NULL), 0);
        TU_ASSERT_STATUS(mp_obj_repr(first, &s), 0);
        assert_string_equal(s, want);
        free(s);
    }
    TU_ASSERT_STATUS(mp_conn_send(c, first), 0);
    mp_obj_free(first);
}

/* Run the round trip: Python's values (a Python list expression), then
 * C's cases. Frees the cases' values. */
static inline void pyrt_run(const char *values_expr, struct pyrt_case *cases, size_t ncases)
{
    mp_conn *mine, *theirs;
    TU_ASSERT_STATUS(mp_pipe(&mine, &theirs, true), 0);
    int keep[1] = {mp_conn_fileno(theirs)};
    char fd[16];
    snprintf(fd, sizeof fd, "%d", keep[0]);
    const char *args[] = {fd, values_expr, NULL};
    pid_t pid = tu_spawn_python(pyrt_peer, args, keep, 1);
    mp_conn_free(theirs);
    for (;;) {
        mp_obj *hdr = NULL;
        TU_ASSERT_STATUS(mp_conn_recv(mine, &hdr, PYRT_TIMEOUT), 0);
        if (mp_obj_is_none(hdr))
            break;
        pyrt_check_value(mine, hdr);
        mp_obj_free(hdr);
    }
    for (size_t i = 0; i < ncases; i++) {
        mp_obj *msg = mp_obj_tuple_new();
        assert_non_null(msg);
        TU_ASSERT_STATUS(mp_obj_tuple_append(msg, mp_obj_str_cstr(cases[i].expr)), 0);
        TU_ASSERT_STATUS(mp_obj_tuple_append(msg, cases[i].value), 0);
        TU_ASSERT_STATUS(mp_conn_send(mine, msg), 0);
        mp_obj_free(msg);
        mp_obj *ok = NULL;
        TU_ASSERT_STATUS(mp_conn_recv(mine, &ok, PYRT_TIMEOUT), 0);
        bool yes = false;
        TU_ASSERT_STATUS(mp_obj_get_bool(ok, &yes), 0);
        if (!yes)
            fail_msg("python3 does not see %s in what C sent", cases[i].expr);
    }
    TU_ASSERT_STATUS(mp_conn_send(mine, mp_obj_none()), 0);
    mp_conn_free(mine);
    assert_int_equal(tu_wait_child(pid, PYRT_TIMEOUT), 0);
}

#endif /* MPIPC_TEST_PY_ROUNDTRIP_H */
