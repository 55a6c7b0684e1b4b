/*
 * A hundred processes decrement one shared count under a lock - the data
 * sharing example of seed 004, ported from Python:
 *
 *     def work(d, lock):
 *         with lock:            # without the lock the data gets mixed up
 *             d['count'] -= 1
 *
 *     lock = Lock()
 *     with Manager() as m:
 *         dic = m.dict({'count': 100})
 *         p_l = []
 *         for i in range(100):
 *             p = Process(target=work, args=(dic, lock))
 *             p_l.append(p)
 *             p.start()
 *         for p in p_l:
 *             p.join()
 *         print(dic)
 *
 * Here the count lives in a shared Value (multiprocessing.Value('i', 100))
 * rather than in a manager's dict: forked processes share the memory
 * itself, so a decrement is a few nanoseconds instead of a round trip to a
 * server process. The lock is the seed's multiprocessing.Lock(); had a
 * child died holding it, the next one would get the lock with
 * MP_EOWNERDEAD instead of all of them hanging.
 */
#include <mpipc.h>

#include "check.h"

#include <stdio.h>
#include <stdlib.h>

struct shared {
    mp_lock *lock;
    mp_value *count;
};

static int work(void *arg)
{
    struct shared *s = arg;
    int rc = mp_lock_acquire(s->lock, MP_FOREVER); /* with lock: */
    if (rc < 0 && rc != MP_EOWNERDEAD)
        CHECK(rc);
    int *count = mp_value_ptr(s->count);
    *count -= 1; /*     d['count'] -= 1 */
    CHECK(mp_lock_release(s->lock));
    return 0;
}

int main(void)
{
    struct shared s;
    int initial = 100;
    CHECK(mp_lock_new(&s.lock));
    CHECK(mp_value_new(&s.count, 'i', &initial, false)); /* the lock above guards it */

    mp_process *p_l[100];
    for (int i = 0; i < 100; i++) {
        CHECK(mp_process_new(&p_l[i], work, &s));
        CHECK(mp_process_start(p_l[i]));
    }
    for (int i = 0; i < 100; i++) {
        CHECK(mp_process_join(p_l[i], MP_FOREVER));
        mp_process_free(p_l[i]);
    }

    /* print(dic): the count as the Python dict the seed prints. */
    int64_t count;
    CHECK(mp_value_get_int(s.count, &count));
    mp_obj *dic = mp_obj_dict_new();
    CHECK(mp_obj_dict_set(dic, mp_obj_str_cstr("count"), mp_obj_int(count)));
    char *text;
    CHECK(mp_obj_repr(dic, &text));
    printf("%s\n", text);
    free(text);
    mp_obj_free(dic);

    mp_value_free(s.count);
    mp_lock_free(s.lock);
    return 0;
}
