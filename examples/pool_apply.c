/*
 * A pool of three processes runs ten tasks with the synchronous apply() -
 * the first Pool example of seed 004, ported from Python:
 *
 *     def work(n):
 *         print('%s run' % os.getpid())
 *         time.sleep(3)
 *         return n**2
 *
 *     if __name__ == '__main__':
 *         p = Pool(3)   # three processes, created once, do every task
 *         res_l = []
 *         for i in range(10):
 *             res = p.apply(work, args=(i,))   # waits for each result
 *         print(res_l)
 *
 * apply() blocks until its task is done, so the tasks run one after the
 * other although three workers exist. Two changes: the nap is 0.05 s
 * instead of 3 s, and each result is appended to res_l, as the seed's
 * comment intends (its code never appends and prints []).
 */
#include <mpipc.h>

#include "check.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

/* Runs in a worker. args is the tuple (n,). */
static int work(const mp_obj *args, mp_obj **result)
{
    int64_t n;
    if (mp_obj_get_int(mp_obj_list_get(args, 0), &n) < 0)
        return mp_task_fail(MP_ETYPE, "work() needs an int");
    printf("%d run\n", (int)getpid());
    fflush(stdout);
    struct timespec nap = {0, 50 * 1000 * 1000};
    nanosleep(&nap, NULL);
    *result = mp_obj_int(n * n);
    return 0;
}

int main(void)
{
    mp_pool_opts opts = MP_POOL_OPTS_INIT;
    opts.processes = 3; /* created once; these three do every task */
    mp_pool *p;
    CHECK(mp_pool_new(&p, &opts));
    mp_obj *res_l = mp_obj_list_new();
    for (int i = 0; i < 10; i++) {
        mp_obj *args = mp_obj_tuple_new();
        CHECK(mp_obj_tuple_append(args, mp_obj_int(i)));
        mp_obj *res;
        /* Synchronous: waits here until the task's result is back. */
        CHECK(mp_pool_apply(p, work, args, &res, NULL, MP_FOREVER));
        CHECK(mp_obj_list_append(res_l, res));
        mp_obj_free(args);
    }
    char *text;
    CHECK(mp_obj_repr(res_l, &text));
    printf("%s\n", text);
    free(text);
    mp_obj_free(res_l);
    CHECK(mp_pool_close(p));
    CHECK(mp_pool_join(p, MP_FOREVER));
    mp_pool_free(p);
    return 0;
}
