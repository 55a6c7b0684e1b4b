/*
 * Producers that wait until everything they made has been consumed, with
 * daemon consumers that call task_done() - the JoinableQueue program of
 * seed 004, ported from Python:
 *
 *     def consumer(q):
 *         while True:
 *             res = q.get()
 *             time.sleep(random.randint(1, 3))
 *             print('\033[45m%s 吃 %s\033[0m' % (os.getpid(), res))
 *             q.task_done()      # one item of q has been dealt with
 *
 *     def producer(name, q):
 *         for i in range(10):
 *             time.sleep(random.randint(1, 3))
 *             res = '%s%s' % (name, i)
 *             q.put(res)
 *             print('\033[44m%s 生产了 %s\033[0m' % (os.getpid(), res))
 *         q.join()               # block until every item was task_done()
 *
 *     q = JoinableQueue()
 *     p1..p3 producers, c1, c2 consumers with c.daemon = True
 *     start all; p1.join(); p2.join(); p3.join(); print('')
 *
 * Once the producers have returned, every item is consumed, so the
 * consumers - daemons - are terminated when the main process ends. Three
 * items per producer and 0.05-0.15 s naps instead of ten and 1-3 s.
 */
#include <mpipc.h>

#include "check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static mp_queue *q;

static void nap(void)
{
    struct timespec t = {0, (long)(50 + rand() % 101) * 1000000L};
    nanosleep(&t, NULL);
}

static int consumer(void *arg)
{
    (void)arg;
    srand((unsigned)getpid());
    for (;;) {
        mp_obj *res;
        CHECK(mp_queue_get_obj(q, &res, MP_FOREVER));
        nap();
        const char *s;
        size_t len;
        CHECK(mp_obj_get_str(res, &s, &len));
        printf("\033[45m%d 吃 %.*s\033[0m\n", (int)getpid(), (int)len, s);
        fflush(stdout);
        mp_obj_free(res);
        CHECK(mp_queue_task_done(q));
    }
}

static int producer(void *arg)
{
    const char *name = arg;
    srand((unsigned)getpid());
    for (int i = 0; i < 3; i++) {
        nap();
        char res[64];
        snprintf(res, sizeof res, "%s%d", name, i);
        mp_obj *o = mp_obj_str_cstr(res);
        CHECK(mp_queue_put_obj(q, o, MP_FOREVER));
        mp_obj_free(o);
        printf("\033[44m%d 生产了 %s\033[0m\n", (int)getpid(), res);
        fflush(stdout);
    }
    CHECK(mp_queue_join(q, MP_FOREVER)); /* q.join() */
    return 0;
}

int main(void)
{
    CHECK(mp_queue_new_joinable(&q, 0));
    const char *names[3] = {"包子", "骨头", "泔水"};
    mp_process *p_l[5];
    for (int i = 0; i < 3; i++)
        CHECK(mp_process_new(&p_l[i], producer, (void *)names[i]));
    for (int i = 3; i < 5; i++) {
        CHECK(mp_process_new(&p_l[i], consumer, NULL));
        CHECK(mp_process_set_daemon(p_l[i], true));
    }
    for (int i = 0; i < 5; i++)
        CHECK(mp_process_start(p_l[i]));
    for (int i = 0; i < 3; i++) {
        CHECK(mp_process_join(p_l[i], MP_FOREVER));
        mp_process_free(p_l[i]);
    }
    printf("\n");
    /* main -> p1,p2,p3 -> c1,c2: the daemons end with the main process. */
    return 0;
}
