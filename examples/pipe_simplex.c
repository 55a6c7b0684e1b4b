/*
 * A child sends a greeting through a one-way Pipe - the example of the Pipe
 * notes in seed 003, ported from Python and made simplex as seed 002
 * describes (Pipe(False): the first end only receives, the second only
 * sends):
 *
 *     def f(conn):
 *         conn.send("Hello 妹妹")   # the child sends
 *         conn.close()
 *
 *     parent_conn, child_conn = Pipe(False)
 *     p = Process(target=f, args=(child_conn,))
 *     p.start()
 *     print(parent_conn.recv())   # the parent receives
 *     p.join()
 */
#include <mpipc.h>

#include "check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int f(void *arg)
{
    mp_conn *conn = arg;
    const char *greeting = "Hello 妹妹";
    CHECK(mp_conn_send_bytes(conn, greeting, strlen(greeting)));
    mp_conn_close(conn);
    return 0;
}

int main(void)
{
    mp_conn *parent_conn, *child_conn;
    CHECK(mp_pipe(&parent_conn, &child_conn, false));

    mp_process *p;
    CHECK(mp_process_new(&p, f, child_conn));
    CHECK(mp_process_start(p));

    void *msg;
    size_t len;
    CHECK(mp_conn_recv_bytes(parent_conn, 0, &msg, &len, MP_FOREVER));
    printf("%.*s\n", (int)len, (char *)msg);
    free(msg);

    CHECK(mp_process_join(p, MP_FOREVER));
    mp_process_free(p);
    mp_conn_free(parent_conn);
    mp_conn_free(child_conn);
    return 0;
}
