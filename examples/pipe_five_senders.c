/*
 * Five processes send on one shared end - the example of the Pipe tutorial
 * in seed 001, ported from Python:
 *
 *     child, parent = Pipe()
 *     def fun(name):
 *         time.sleep(1)
 *         child.send('hello' + str(name))
 *         print(os.getppid(), "--------", os.getpid())
 *
 *     jobs = []
 *     for i in range(5):
 *         p = Process(target=fun, args=(i,))
 *         jobs.append(p)
 *         p.start()
 *     for n in range(5):
 *         print(parent.recv())
 *     for j in jobs:
 *         j.join()
 *
 * Each send is one write, so the five messages never interleave; they
 * arrive in whatever order the children run. (The nap is shortened from 1 s
 * to 0.1 s.)
 */
#include <mpipc.h>

#include "check.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static mp_conn *child_end, *parent_end;

static int fun(void *arg)
{
    int name = *(int *)arg;
    struct timespec nap = {0, 100 * 1000 * 1000};
    nanosleep(&nap, NULL);
    char msg[32];
    int len = snprintf(msg, sizeof msg, "hello%d", name);
    CHECK(mp_conn_send_bytes(child_end, msg, (size_t)len));
    printf("%d -------- %d\n", (int)getppid(), (int)getpid());
    return 0;
}

int main(void)
{
    CHECK(mp_pipe(&child_end, &parent_end, true));

    mp_process *jobs[5];
    int names[5];
    for (int i = 0; i < 5; i++) {
        names[i] = i;
        CHECK(mp_process_new(&jobs[i], fun, &names[i]));
        CHECK(mp_process_start(jobs[i]));
    }
    for (int n = 0; n < 5; n++) {
        void *msg;
        size_t len;
        CHECK(mp_conn_recv_bytes(parent_end, 0, &msg, &len, MP_FOREVER));
        printf("%.*s\n", (int)len, (char *)msg);
        fflush(stdout);
        free(msg);
    }
    for (int j = 0; j < 5; j++) {
        CHECK(mp_process_join(jobs[j], MP_FOREVER));
        mp_process_free(jobs[j]);
    }
    mp_conn_free(child_end);
    mp_conn_free(parent_end);
    return 0;
}
