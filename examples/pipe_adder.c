/*
 * A request/response server over a Pipe - the adder of the Pipe tutorial
 * (seed 000), ported from Python:
 *
 *     def adder(p, name):
 *         server, client = p
 *         client.close()
 *         while True:
 *             try:
 *                 x, y = server.recv()
 *             except EOFError:
 *                 server.close()
 *                 break
 *             server.send(x + y)
 *         print('server done')
 *
 *     server, client = Pipe()
 *     c1 = Process(target=adder, args=((server, client), 'c1'))
 *     c1.start()
 *     server.close()
 *     client.send((10, 20))
 *     print(client.recv())
 *     client.close()
 *     c1.join()
 *     print('主进程')
 *
 * The request is the same tuple (10, 20) Python sends - an mp_obj, pickled on
 * the wire exactly as Python's send() would - so either end could be the
 * Python program above.
 */
#include <mpipc.h>

#include "check.h"

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>

struct ends {
    mp_conn *server;
    mp_conn *client;
};

static int adder(void *arg)
{
    struct ends *p = arg;
    mp_conn_close(p->client);
    for (;;) {
        mp_obj *req;
        int rc = mp_conn_recv(p->server, &req, MP_FOREVER);
        if (rc == MP_EOF) {
            mp_conn_close(p->server);
            break;
        }
        CHECK(rc);
        int64_t x, y; /* x, y = server.recv() */
        CHECK(mp_obj_get_int(mp_obj_list_get(req, 0), &x));
        CHECK(mp_obj_get_int(mp_obj_list_get(req, 1), &y));
        mp_obj_free(req);
        mp_obj *res = mp_obj_int(x + y);
        CHECK(mp_conn_send(p->server, res));
        mp_obj_free(res);
    }
    printf("server done\n");
    return 0;
}

int main(void)
{
    struct ends p;
    CHECK(mp_pipe(&p.server, &p.client, true));

    mp_process *c1;
    CHECK(mp_process_new(&c1, adder, &p));
    CHECK(mp_process_start(c1));

    mp_conn_close(p.server);

    mp_obj *req = mp_obj_tuple_new(); /* (10, 20) */
    CHECK(mp_obj_tuple_append(req, mp_obj_int(10)));
    CHECK(mp_obj_tuple_append(req, mp_obj_int(20)));
    CHECK(mp_conn_send(p.client, req));
    mp_obj_free(req);

    mp_obj *res;
    CHECK(mp_conn_recv(p.client, &res, MP_FOREVER));
    char *text;
    CHECK(mp_obj_repr(res, &text)); /* print(client.recv()) */
    printf("%s\n", text);
    fflush(stdout); /* before the server's "server done", even into a pipe */
    free(text);
    mp_obj_free(res);
    mp_conn_close(p.client);

    CHECK(mp_process_join(c1, MP_FOREVER));
    printf("主进程\n");

    mp_process_free(c1);
    mp_conn_free(p.server);
    mp_conn_free(p.client);
    return 0;
}
