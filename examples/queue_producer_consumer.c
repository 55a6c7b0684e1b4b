/*
 * Three producers ("chefs") and two consumers ("eaters") sharing one Queue,
 * with one end marker (None) per consumer - the producer/consumer program
 * of seed 004, ported from Python:
 *
 *     def consumer(q):
 *         while True:
 *             res = q.get()
 *             if res is None: break          # the end marker
 *             time.sleep(random.randint(1, 3))
 *             print('\033[45m%s 吃 %s\033[0m' % (os.getpid(), res))
 *
 *     def producer(name, q):
 *         for i in range(2):
 *             time.sleep(random.randint(1, 3))
 *             res = '%s%s' % (name, i)
 *             q.put(res)
 *             print('\033[44m%s 生产了 %s\033[0m' % (os.getpid(), res))
 *
 *     q = Queue()
 *     p1..p3 = Process(target=producer, args=('包子'|'骨头'|'泔水', q))
 *     c1, c2 = Process(target=consumer, args=(q,)) ...
 *     start them; p1.join(); p2.join(); p3.join()   # all produced
 *     q.put(None); q.put(None)                      # one per consumer
 *
 * Items are Python values (str, and None as the marker) carried as
 * pickles. "吃" = eats, "生产了" = produced; 包子, 骨头, 泔水 = buns, bones,
 * slops. The seed starts only c1; both eaters run here. Sleeps are 0.1-0.3 s
 * instead of 1-3 s.
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
    struct timespec t = {0, (long)(100 + rand() % 201) * 1000000L};
    nanosleep(&t, NULL);
}

static int consumer(void *arg)
{
    (void)arg;
    srand((unsigned)getpid());
    for (;;) {
        mp_obj *res;
        CHECK(mp_queue_get_obj(q, &res, MP_FOREVER));
        if (mp_obj_type(res) == MP_TYPE_NONE) { /* if res is None: break */
            mp_obj_free(res);
            break;
        }
        nap();
        const char *s;
        size_t len;
        CHECK(mp_obj_get_str(res, &s, &len));
        printf("\033[45m%d 吃 %.*s\033[0m\n", (int)getpid(), (int)len, s);
        fflush(stdout);
        mp_obj_free(res);
    }
    return 0;
}

static int producer(void *arg)
{
    const char *name = arg;
    srand((unsigned)getpid());
    for (int i = 0; i < 2; i++) {
        nap();
        char res[64];
        snprintf(res, sizeof res, "%s%d", name, i);
        mp_obj *o = mp_obj_str_cstr(res);
        CHECK(mp_queue_put_obj(q, o, MP_FOREVER));
        mp_obj_free(o);
        printf("\033[44m%d 生产了 %s\033[0m\n", (int)getpid(), res);
        fflush(stdout);
    }
    return 0;
}

int main(void)
{
    CHECK(mp_queue_new(&q, 0));
    const char *names[3] = {"包子", "骨头", "泔水"};
    mp_process *p[3], *c[2];
    for (int i = 0; i < 3; i++) /* the producers: the chefs */
        CHECK(mp_process_new(&p[i], producer, (void *)names[i]));
    for (int i = 0; i < 2; i++) /* the consumers: the eaters */
        CHECK(mp_process_new(&c[i], consumer, NULL));
    for (int i = 0; i < 3; i++)
        CHECK(mp_process_start(p[i]));
    for (int i = 0; i < 2; i++)
        CHECK(mp_process_start(c[i]));

    for (int i = 0; i < 3; i++) /* every producer is done before the markers */
        CHECK(mp_process_join(p[i], MP_FOREVER));
    mp_obj *none = mp_obj_none();
    CHECK(mp_queue_put_obj(q, none, MP_FOREVER)); /* one marker per consumer */
    CHECK(mp_queue_put_obj(q, none, MP_FOREVER));
    mp_obj_free(none);
    for (int i = 0; i < 2; i++)
        CHECK(mp_process_join(c[i], MP_FOREVER));
    printf("\n");
    for (int i = 0; i < 3; i++)
        mp_process_free(p[i]);
    for (int i = 0; i < 2; i++)
        mp_process_free(c[i]);
    mp_queue_free(q);
    return 0;
}
