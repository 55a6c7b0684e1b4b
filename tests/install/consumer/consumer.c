/* Sends one message through a Pipe to a child and back: proves the
 * installed headers and library work together, then a lock and a queue.
 * Prints "consumer ok". */
#include <mpipc.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int echo(void *arg)
{
    mp_conn *c = arg;
    void *buf;
    size_t len;
    if (mp_conn_recv_bytes(c, 0, &buf, &len, 10.0) != 0)
        return 1;
    int rc = mp_conn_send_bytes(c, buf, len);
    free(buf);
    return rc == 0 ? 0 : 2;
}

int main(void)
{
    mp_conn *a, *b;
    mp_process *p;
    if (mp_pipe(&a, &b, true) || mp_process_new(&p, echo, b) || mp_process_start(p))
        return 1;
    char got[16] = {0};
    if (mp_conn_send_bytes(a, "ok", 2) ||
        mp_conn_recv_bytes_into(a, got, sizeof got - 1, 0, NULL, 10.0) != 2 ||
        mp_process_join(p, 10.0))
        return 2;
    /* The later modules are exported too: a lock and a queue round trip. */
    mp_lock *lock;
    mp_queue *q;
    void *item;
    size_t len;
    if (mp_lock_new(&lock) || mp_lock_acquire(lock, 1.0) || mp_lock_release(lock) ||
        mp_queue_new(&q, 0) || mp_queue_put(q, "ok", 2, 1.0) || mp_queue_get(q, &item, &len, 10.0))
        return 3;
    int queue_ok = len == 2 && memcmp(item, "ok", 2) == 0;
    free(item);
    mp_queue_free(q);
    mp_lock_free(lock);
    if (!queue_ok)
        return 4;
    printf("consumer %s (libmpipc %s)\n", got, MP_VERSION_STRING);
    mp_process_free(p);
    mp_conn_free(a);
    mp_conn_free(b);
    return strcmp(got, "ok") != 0;
}
