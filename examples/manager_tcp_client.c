/*
 * A program that uses a manager served by another program
 * (examples/manager_tcp_server.c) over TCP, with its authkey - Python's
 *
 *     m = BaseManager(address=('127.0.0.1', port), authkey=b'cookbook')
 *     m.connect()
 *     orders, totals = m.get_queue('orders'), m.get_dict('totals')
 *     ... three producer processes put orders and count them in totals;
 *     ... this process takes every order off the queue and adds them up
 *     m.shutdown()
 *
 * Each producer is a separate process that connects by address and key on
 * its own, as a program on another host would. The totals are checked
 * against what was sent; a wrong key is refused with MP_EAUTH.
 * Usage: manager_tcp_client ADDRESS_FILE|tcp:HOST:PORT. Given a file, it
 * waits (up to 10 s) for the server to write its address there.
 */
#include <mpipc.h>

#include "check.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define AUTHKEY   "cookbook"
#define PRODUCERS 3
#define ORDERS    20 /* per producer */

static void nap_ms(long ms)
{
    nanosleep(&(struct timespec){0, ms * 1000000L}, NULL);
}

/* The server's address: the argument itself, or the first line of the file
 * it names once the server has written it. */
static void read_address(const char *arg, char *out, size_t cap)
{
    if (strncmp(arg, "tcp:", 4) == 0) {
        snprintf(out, cap, "%s", arg);
        return;
    }
    for (int tries = 0; tries < 1000; tries++) {
        FILE *f = fopen(arg, "r");
        if (f) {
            char *line = fgets(out, (int)cap, f);
            fclose(f);
            if (line) {
                out[strcspn(out, "\n")] = '\0';
                return;
            }
        }
        nap_ms(10);
    }
    fprintf(stderr, "no server address in %s after 10 s\n", arg);
    exit(1);
}

static mp_manager *connect_to(const char *address)
{
    mp_manager *m;
    CHECK(mp_manager_connect(&m, address, AUTHKEY, strlen(AUTHKEY), NULL));
    return m;
}

typedef struct {
    const char *address;
    int n;
} producer_arg;

/* A producer process: its own connection, orders n*100+1 .. n*100+ORDERS. */
static int producer(void *arg)
{
    const producer_arg *pa = arg;
    int n = pa->n;
    mp_manager *m = connect_to(pa->address);
    mp_queueproxy *orders;
    mp_dictproxy *totals;
    CHECK(mp_manager_queue_named(m, "orders", 0, &orders));
    CHECK(mp_manager_dict_named(m, "totals", NULL, &totals));
    for (int i = 1; i <= ORDERS; i++) {
        mp_obj *order = mp_obj_int(n * 100 + i);
        CHECK(mp_queueproxy_put(orders, order, 10.0));
        mp_obj_free(order);
        CHECK(mp_dictproxy_add_int(totals, "put", 1, NULL)); /* atomic on the server */
    }
    mp_queueproxy_free(orders);
    mp_dictproxy_free(totals);
    mp_manager_free(m); /* disconnects; the server keeps running */
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s ADDRESS_FILE|tcp:HOST:PORT\n", argv[0]);
        return 2;
    }
    char address[256];
    read_address(argv[1], address, sizeof address);

    /* The key is checked before anything else happens. */
    mp_manager *m;
    int rc = mp_manager_connect(&m, address, "wrong key", 9, NULL);
    printf("client: a wrong authkey is refused: %s\n", mp_errname(rc));
    m = connect_to(address);
    printf("client: connected with the authkey\n");

    mp_queueproxy *orders;
    mp_dictproxy *totals;
    CHECK(mp_manager_queue_named(m, "orders", 0, &orders));
    CHECK(mp_manager_dict_named(m, "totals", NULL, &totals));
    CHECK(mp_dictproxy_clear(totals)); /* a second run against the same server */

    mp_process *procs[PRODUCERS];
    producer_arg args[PRODUCERS];
    for (int i = 0; i < PRODUCERS; i++) {
        args[i] = (producer_arg){address, i + 1};
        CHECK(mp_process_new(&procs[i], producer, &args[i]));
        CHECK(mp_process_start(procs[i]));
    }

    /* Take every order as it arrives, whichever producer sent it. */
    int64_t sum = 0, want = 0;
    for (int i = 0; i < PRODUCERS * ORDERS; i++) {
        mp_obj *order;
        int64_t v;
        CHECK(mp_queueproxy_get(orders, &order, 10.0));
        CHECK(mp_obj_get_int(order, &v));
        mp_obj_free(order);
        sum += v;
        CHECK(mp_dictproxy_add_int(totals, "taken", 1, NULL));
    }
    CHECK(mp_dictproxy_set_int(totals, "sum", sum));
    int failed = 0;
    for (int i = 0; i < PRODUCERS; i++) {
        int code;
        CHECK(mp_process_join(procs[i], 10.0));
        CHECK(mp_process_exitcode(procs[i], &code));
        failed |= code != 0;
        mp_process_free(procs[i]);
    }
    for (int n = 1; n <= PRODUCERS; n++)
        for (int i = 1; i <= ORDERS; i++)
            want += n * 100 + i;

    /* Read the totals back from the server. */
    int64_t put, taken, stored;
    CHECK(mp_dictproxy_get_int(totals, "put", &put));
    CHECK(mp_dictproxy_get_int(totals, "taken", &taken));
    CHECK(mp_dictproxy_get_int(totals, "sum", &stored));
    ssize_t left = mp_queueproxy_qsize(orders);
    int ok = !failed && put == PRODUCERS * ORDERS && taken == put && stored == want && left == 0;
    printf("client: totals on the server: put %lld, taken %lld, sum %lld, %zd left: %s\n",
           (long long)put, (long long)taken, (long long)stored, left, ok ? "exact" : "MISMATCH");

    mp_queueproxy_free(orders);
    mp_dictproxy_free(totals);
    CHECK(mp_manager_shutdown(m)); /* any authenticated client may stop it */
    mp_manager_free(m);
    printf("client: asked the server to shut down\n");
    return ok ? 0 : 1;
}
