/*
 * A request/response server on a Pipe: a child process answers requests
 * until it reads the None sentinel, and a bad request gets an error reply
 * instead of killing the server. It mirrors this Python program:
 *
 *     def server(conn):
 *         handlers = {'add': lambda a, b: a + b, 'upper': str.upper,
 *                     'words': lambda s: len(s.split())}
 *         while (req := conn.recv()) is not None:
 *             op, args = req
 *             try:
 *                 conn.send(('ok', handlers[op](*args)))
 *             except Exception as e:
 *                 conn.send(('error', f'{type(e).__name__}: {e}'))
 *
 *     client, theirs = Pipe()
 *     p = Process(target=server, args=(theirs,))
 *     p.start()
 *     theirs.close()
 *     for req in [('add', (2, 3)), ('upper', ('hello',)), ...]:
 *         client.send(req)
 *         print(req, '->', client.recv())
 *     client.send(None)                      # the sentinel: stop serving
 *     p.join()
 *
 * The client waits for each reply with a timeout, which Python's recv()
 * lacks: a server that died shows up as MP_EOF, a stuck one as MP_ETIMEDOUT.
 */
#include <mpipc.h>

#include "check.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One request: ('add', (a, b)), ('upper', (s,)) or ('words', (s,)). */
static mp_obj *handle(const mp_obj *req)
{
    const char *op, *s;
    const mp_obj *args;
    int a, b;
    if (mp_obj_parse(req, "(s,O)", &op, &args) != 0)
        return mp_obj_build("(s,s)", "error", "TypeError: expected (op, args)");
    if (strcmp(op, "add") == 0 && mp_obj_parse(args, "(i,i)", &a, &b) == 0)
        return mp_obj_build("(s,i)", "ok", a + b);
    if (strcmp(op, "upper") == 0 && mp_obj_parse(args, "(s)", &s) == 0) {
        char *up = strdup(s);
        for (char *c = up; c && *c; c++)
            *c = (char)toupper((unsigned char)*c);
        mp_obj *reply = mp_obj_build("(s,s)", "ok", up); /* NULL up: no memory, NULL reply */
        free(up);
        return reply;
    }
    if (strcmp(op, "words") == 0 && mp_obj_parse(args, "(s)", &s) == 0) {
        int n = 0;
        for (const char *c = s; *c; c++)
            n += !isspace((unsigned char)*c) && (c == s || isspace((unsigned char)c[-1]));
        return mp_obj_build("(s,i)", "ok", n);
    }
    char msg[128];
    snprintf(msg, sizeof msg, "KeyError: '%s'", op);
    return mp_obj_build("(s,s)", "error", msg);
}

static int server(void *arg)
{
    mp_conn *conn = arg;
    mp_obj *req;
    int rc;
    /* while (req := conn.recv()) is not None: (EOF also ends the loop) */
    while ((rc = mp_conn_recv(conn, &req, MP_FOREVER)) == 0 && !mp_obj_is_none(req)) {
        mp_obj *reply = handle(req);
        mp_obj_free(req);
        CHECK(reply ? 0 : MP_EVALUE);
        CHECK(mp_conn_send(conn, reply));
        mp_obj_free(reply);
    }
    if (rc == 0)
        mp_obj_free(req); /* the None */
    return rc == 0 || rc == MP_EOF ? 0 : 1;
}

int main(void)
{
    mp_conn *client, *theirs;
    CHECK(mp_pipe(&client, &theirs, true));
    mp_process *p;
    CHECK(mp_process_new(&p, server, theirs));
    CHECK(mp_process_start(p));
    mp_conn_close(theirs); /* only the child uses this end now */

    mp_obj *reqs[] = {
        mp_obj_build("(s,(i,i))", "add", 2, 3),
        mp_obj_build("(s,(s))", "upper", "hello"),
        mp_obj_build("(s,(s))", "words", "one request, one reply"),
        mp_obj_build("(s,(i))", "divide", 1),
    };
    for (size_t i = 0; i < sizeof reqs / sizeof reqs[0]; i++) {
        CHECK(mp_conn_send(client, reqs[i]));
        mp_obj *reply;
        CHECK(mp_conn_recv(client, &reply, 10.0)); /* MP_EOF if the server died */
        char *r1, *r2;
        CHECK(mp_obj_repr(reqs[i], &r1));
        CHECK(mp_obj_repr(reply, &r2));
        printf("%s -> %s\n", r1, r2);
        free(r1);
        free(r2);
        mp_obj_free(reply);
        mp_obj_free(reqs[i]);
    }

    mp_obj *none = mp_obj_none(); /* the sentinel */
    CHECK(mp_conn_send(client, none));
    mp_obj_free(none);
    CHECK(mp_process_join(p, 10.0));
    int code;
    CHECK(mp_process_exitcode(p, &code));
    printf("server exited with %d\n", code);
    mp_process_free(p);
    mp_conn_free(client);
    mp_conn_free(theirs);
    return code;
}
