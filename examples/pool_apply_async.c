/*
 * A pool of three processes runs ten tasks with apply_async(), then close(),
 * join() and get() - the second Pool example of seed 004, ported from
 * Python:
 *
 *     def work(n):
 *         print('%s run' % os.getpid())
 *         time.sleep(random.random())
 *         return n**2
 *
 *     if __name__ == '__main__':
 *         p = Pool(3)
 *         res_l = []
 *         for i in range(10):
 *             res = p.apply_async(work, args=(i,))  # at most 3 run at once
 *             res_l.append(res)
 *         p.close()    # no more tasks
 *         p.join()     # wait until every task is done
 *         for res in res_l:
 *             print(res.get())
 *
 * A worker takes the next task as soon as it is free, so the pids repeat
 * in no fixed order. The naps are random.random() / 5 (at most 0.2 s).
 */
#include <mpipc.h>

#include "check.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static int work(const mp_obj *args, mp_obj **result)
{
    int64_t n;
    if (mp_obj_get_int(mp_obj_list_get(args, 0), &n) < 0)
        return mp_task_fail(MP_ETYPE, "work() needs an int");
    printf("%d run\n", (int)getpid());
    fflush(stdout);
    /* Each worker is a fork: seed per process, as Python's random does. */
    static unsigned seed;
    if (!seed)
        seed = (unsigned)getpid();
    double r = (double)rand_r(&seed) / RAND_MAX; /* random.random() */
    struct timespec nap = {0, (long)(r / 5 * 1e9)};
    nanosleep(&nap, NULL);
    *result = mp_obj_int(n * n);
    return 0;
}

int main(void)
{
    mp_pool_opts opts = MP_POOL_OPTS_INIT;
    opts.processes = 3;
    mp_pool *p;
    CHECK(mp_pool_new(&p, &opts));
    mp_result *res_l[10];
    for (int i = 0; i < 10; i++) {
        mp_obj *args = mp_obj_tuple_new();
        CHECK(mp_obj_tuple_append(args, mp_obj_int(i)));
        /* Asynchronous: returns at once; at most 3 tasks run at a time. */
        CHECK(mp_pool_apply_async(p, work, args, NULL, &res_l[i]));
        mp_obj_free(args);
    }
    CHECK(mp_pool_close(p));
    CHECK(mp_pool_join(p, MP_FOREVER));
    for (int i = 0; i < 10; i++) {
        const mp_obj *v;
        CHECK(mp_result_get(res_l[i], &v, NULL, MP_FOREVER));
        char *text;
        CHECK(mp_obj_repr(v, &text));
        printf("%s\n", text);
        free(text);
        mp_result_free(res_l[i]);
    }
    mp_pool_free(p);
    return 0;
}
