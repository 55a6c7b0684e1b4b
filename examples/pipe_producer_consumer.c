/*
 * Producer/consumer over a Pipe - the first program of the Pipe tutorial
 * (seed 000), ported from Python:
 *
 *     def consumer(p, name):
 *         left, right = p
 *         left.close()
 *         while True:
 *             try:
 *                 baozi = right.recv()
 *                 print('%s 收到包子:%s' % (name, baozi))
 *             except EOFError:
 *                 right.close()
 *                 break
 *
 *     def producer(seq, p):
 *         left, right = p
 *         right.close()
 *         for i in seq:
 *             left.send(i)
 *         else:
 *             left.close()
 *
 *     left, right = Pipe()
 *     c1 = Process(target=consumer, args=((left, right), 'c1'))
 *     c1.start()
 *     producer(range(10), (left, right))
 *     right.close(); left.close()
 *     c1.join()
 *     print('主进程')
 *
 * The lesson of the seed: the consumer only sees end of file (MP_EOF, Python's
 * EOFError) once EVERY copy of the sending end is closed - the producer's
 * and the consumer's own inherited copy. Forget one close and recv() waits
 * forever. ("收到包子" = "got a bun"; "主进程" = "main process".)
 */
#include <mpipc.h>

#include "check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct ends {
    mp_conn *left;
    mp_conn *right;
    const char *name;
};

static int consumer(void *arg)
{
    struct ends *p = arg;
    mp_conn_close(p->left); /* our copy of the sending end */
    for (;;) {
        char baozi[32];
        ssize_t n = mp_conn_recv_bytes_into(p->right, baozi, sizeof baozi - 1, 0, NULL, MP_FOREVER);
        if (n == MP_EOF) {
            mp_conn_close(p->right);
            break;
        }
        CHECK(n);
        baozi[n] = '\0';
        printf("%s 收到包子:%s\n", p->name, baozi);
        fflush(stdout);
    }
    return 0;
}

static void producer(int count, struct ends *p)
{
    mp_conn_close(p->right);
    for (int i = 0; i < count; i++) {
        char msg[16];
        int len = snprintf(msg, sizeof msg, "%d", i);
        CHECK(mp_conn_send_bytes(p->left, msg, (size_t)len));
    }
    mp_conn_close(p->left);
}

int main(void)
{
    struct ends p = {NULL, NULL, "c1"};
    CHECK(mp_pipe(&p.left, &p.right, true));

    mp_process *c1;
    CHECK(mp_process_new(&c1, consumer, &p));
    CHECK(mp_process_start(c1));

    producer(10, &p);

    mp_conn_close(p.right);
    mp_conn_close(p.left);

    CHECK(mp_process_join(c1, MP_FOREVER));
    printf("主进程\n");

    mp_process_free(c1);
    mp_conn_free(p.left);
    mp_conn_free(p.right);
    return 0;
}
