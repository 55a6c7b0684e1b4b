/*
 * A Manager dict shared by 100 processes, decremented under a lock - the
 * Manager program of the seed tutorial (seed 004), ported from Python:
 *
 *     from multiprocessing import Manager, Process, Lock
 *     def work(d, lock):
 *         with lock:  # without the lock the shared data would be garbled
 *             d['count'] -= 1
 *
 *     if __name__ == '__main__':
 *         lock = Lock()
 *         with Manager() as m:
 *             dic = m.dict({'count': 100})
 *             p_l = []
 *             for i in range(100):
 *                 p = Process(target=work, args=(dic, lock))
 *                 p_l.append(p)
 *                 p.start()
 *             for p in p_l:
 *                 p.join()
 *             print(dic)
 *
 * The lock here is the manager's own Lock (Python's Manager().Lock()), held
 * in the server; Python's shared-memory multiprocessing.Lock() is
 * mpipc/sync.h's mp_lock. A lock whose holder dies is released by the
 * manager (the next acquirer gets MP_EOWNERDEAD) instead of hanging the other
 * 99 forever. The same loop with no lock at all: mp_dictproxy_add_int(d, "count",
 * -1, NULL), an atomic decrement in the server.
 */
#include <mpipc.h>

#include "check.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

struct args {
    mp_dictproxy *d;
    mp_lockproxy *lock;
};

static int work(void *arg)
{
    struct args *a = arg;
    CHECK(mp_lockproxy_acquire(a->lock, MP_FOREVER)); /* with lock: */
    int64_t count;
    CHECK(mp_dictproxy_get_int(a->d, "count", &count)); /* d['count'] -= 1 */
    CHECK(mp_dictproxy_set_int(a->d, "count", count - 1));
    CHECK(mp_lockproxy_release(a->lock));
    return 0;
}

int main(void)
{
    mp_manager *m; /* with Manager() as m: */
    CHECK(mp_manager_start(&m, NULL));
    struct args a;
    CHECK(mp_manager_lock(m, &a.lock));

    mp_obj *init = mp_obj_dict_new(); /* dic = m.dict({'count': 100}) */
    CHECK(mp_obj_dict_set(init, mp_obj_str_cstr("count"), mp_obj_int(100)));
    CHECK(mp_manager_dict(m, init, &a.d));
    mp_obj_free(init);

    mp_process *p_l[100];
    for (int i = 0; i < 100; i++) {
        CHECK(mp_process_new(&p_l[i], work, &a));
        CHECK(mp_process_start(p_l[i]));
    }
    for (int i = 0; i < 100; i++) {
        CHECK(mp_process_join(p_l[i], MP_FOREVER));
        int code;
        CHECK(mp_process_exitcode(p_l[i], &code));
        if (code != 0)
            return 1;
        mp_process_free(p_l[i]);
    }

    mp_obj *copy; /* print(dic) */
    CHECK(mp_dictproxy_copy(a.d, &copy));
    char *text;
    CHECK(mp_obj_repr(copy, &text));
    printf("%s\n", text);
    free(text);
    mp_obj_free(copy);

    mp_dictproxy_free(a.d);
    mp_lockproxy_free(a.lock);
    mp_manager_free(m); /* leaving the with block: the server stops */
    return 0;
}
