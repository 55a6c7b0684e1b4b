/*
 * A bounded Queue filled until it is full, then emptied until it is empty -
 * the first Queue program of seed 004, ported from Python:
 *
 *     q = Queue(3)
 *     q.put(3); q.put(3); q.put(3)
 *     try:
 *         q.put_nowait(3)     # full: raises instead of blocking
 *     except:
 *         print('队列已经满了')  # "the queue is full"
 *     print(q.full())
 *     print(q.get()); print(q.get()); print(q.get())
 *     try:
 *         q.get_nowait()      # empty: raises instead of blocking
 *     except:
 *         print('队列已经空了')  # "the queue is empty"
 *     print(q.empty())
 *
 * Python's queue.Full and queue.Empty are MP_FULL and MP_EMPTY here, and
 * put_nowait()/get_nowait() are put/get with MP_NOWAIT.
 */
#include <mpipc.h>

#include "check.h"

#include <stdio.h>
#include <stdlib.h>

static void put3(mp_queue *q, double timeout, int *rc)
{
    mp_obj *three = mp_obj_int(3);
    *rc = mp_queue_put_obj(q, three, timeout);
    mp_obj_free(three);
}

int main(void)
{
    mp_queue *q;
    CHECK(mp_queue_new(&q, 3));
    int rc;
    for (int i = 0; i < 3; i++) {
        put3(q, MP_FOREVER, &rc);
        CHECK(rc);
    }
    put3(q, MP_NOWAIT, &rc); /* q.put_nowait(3) */
    if (rc == MP_FULL)
        printf("队列已经满了\n");
    printf("%s\n", mp_queue_full(q) ? "True" : "False");

    for (int i = 0; i < 3; i++) {
        mp_obj *item;
        CHECK(mp_queue_get_obj(q, &item, MP_FOREVER));
        char *text;
        CHECK(mp_obj_repr(item, &text));
        printf("%s\n", text);
        free(text);
        mp_obj_free(item);
    }
    mp_obj *item;
    if (mp_queue_get_obj(q, &item, MP_NOWAIT) == MP_EMPTY) /* q.get_nowait() */
        printf("队列已经空了\n");
    printf("%s\n", mp_queue_empty(q) ? "True" : "False");
    mp_queue_free(q);
    return 0;
}
