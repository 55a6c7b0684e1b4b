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
 * The request (10, 20) travels as a small fixed-layout struct here; with
 * libmpipc's values (mp_obj) it can be the same tuple Python sends.
 */
#include <mpipc.h>

#include "check.h"

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>

struct request {
    int64_t x;
    int64_t y;
};

struct ends {
    mp_conn *server;
    mp_conn *client;
};

static int adder(void *arg)
{
    struct ends *p = arg;
    mp_conn_close(p->client);
    for (;;) {
        struct request req;
        ssize_t n = mp_conn_recv_bytes_into(p->server, &req, sizeof req, 0, NULL, MP_FOREVER);
        if (n == MP_EOF) {
            mp_conn_close(p->server);
            break;
        }
        CHECK(n);
        int64_t res = req.x + req.y;
        CHECK(mp_conn_send_bytes(p->server, &res, sizeof res));
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

    struct request req = {10, 20};
    CHECK(mp_conn_send_bytes(p.client, &req, sizeof req));
    int64_t res;
    CHECK(mp_conn_recv_bytes_into(p.client, &res, sizeof res, 0, NULL, MP_FOREVER));
    printf("%" PRId64 "\n", res);
    fflush(stdout); /* before the server's "server done", even into a pipe */
    mp_conn_close(p.client);

    CHECK(mp_process_join(c1, MP_FOREVER));
    printf("主进程\n");

    mp_process_free(c1);
    mp_conn_free(p.server);
    mp_conn_free(p.client);
    return 0;
}
