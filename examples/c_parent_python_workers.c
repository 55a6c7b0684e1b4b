/*
 * A C parent with Python workers: the parent listens with an authkey,
 * starts python3 workers (c_parent_python_workers.py) that connect to it,
 * and hands out jobs one at a time to whichever worker answers first. It
 * mirrors this Python parent:
 *
 *     with Listener(authkey=key) as l:       # a private AF_UNIX address
 *         workers = [subprocess.Popen(['python3', 'worker.py', l.address],
 *                                     env={..., 'MPIPC_AUTHKEY': key.hex()})
 *                    for _ in range(3)]
 *         conns = [l.accept() for _ in workers]
 *         for c in conns:
 *             c.send(next(jobs))             # one job in flight per worker
 *         while pending:
 *             for c in wait(conns):          # whoever has an answer
 *                 n, sq = c.recv(); total += sq
 *                 c.send(next(jobs, None))   # the next job, or the sentinel
 *         for w in workers: w.wait()
 *
 * The authkey travels in the environment, not on the command line, where
 * any user could read it in ps.
 */
#include <mpipc.h>

#include "check.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef WORKER_SCRIPT
#define WORKER_SCRIPT "c_parent_python_workers.py"
#endif

#define WORKERS 3
#define JOBS    30

static const char KEY[] = "cookbook secret";

/* The child: replace this process with python3 running the worker. */
static int run_python(void *arg)
{
    const char *address = arg;
    char hex[2 * sizeof KEY + 1];
    for (size_t i = 0; i < sizeof KEY - 1; i++)
        snprintf(hex + 2 * i, 3, "%02x", (unsigned char)KEY[i]);
    setenv("MPIPC_AUTHKEY", hex, 1);
    execlp("python3", "python3", WORKER_SCRIPT, address, (char *)NULL);
    perror("python3");
    return 127;
}

/* Send job n (an int), or the None sentinel once the jobs run out. */
static void send_job(mp_conn *c, int *next)
{
    mp_obj *job = *next <= JOBS ? mp_obj_int((*next)++) : mp_obj_none();
    CHECK(mp_conn_send(c, job));
    mp_obj_free(job);
}

int main(void)
{
    mp_listener *l; /* Listener(authkey=key): NULL picks a private AF_UNIX path */
    CHECK(mp_listener_new(&l, NULL, KEY, sizeof KEY - 1, NULL));
    /* Python's Client takes an AF_UNIX address as a bare path. */
    const char *path = mp_listener_address(l) + strlen("unix:");

    mp_process *procs[WORKERS];
    mp_conn *conns[WORKERS];
    for (int i = 0; i < WORKERS; i++) {
        CHECK(mp_process_new(&procs[i], run_python, (void *)path));
        /* A daemon: if this program fails half-way (CHECK exits), its exit
         * procedure terminates the workers instead of waiting for them. */
        CHECK(mp_process_set_daemon(procs[i], true));
        CHECK(mp_process_start(procs[i]));
    }
    for (int i = 0; i < WORKERS; i++) /* a worker that never connects: MP_ETIMEDOUT */
        CHECK(mp_listener_accept(l, &conns[i], 30.0));
    printf("C parent: %d python workers connected and authenticated\n", WORKERS);

    int next = 1, answered = 0;
    int64_t total = 0;
    bool done[WORKERS] = {false}; /* sent the sentinel: not waited on again */
    for (int i = 0; i < WORKERS; i++)
        send_job(conns[i], &next);
    for (;;) {
        mp_wait_item items[WORKERS];
        int who[WORKERS], n_busy = 0;
        for (int i = 0; i < WORKERS; i++)
            if (!done[i]) {
                who[n_busy] = i;
                items[n_busy++] = (mp_wait_item){.conn = conns[i]};
            }
        if (n_busy == 0)
            break;
        ssize_t ready = mp_wait(items, (size_t)n_busy, 30.0);
        CHECK(ready);
        CHECK(ready > 0 ? 0 : MP_ETIMEDOUT);
        for (int k = 0; k < n_busy; k++) {
            if (!items[k].ready)
                continue;
            int i = who[k];
            mp_obj *reply;
            int n;
            int64_t sq;
            CHECK(mp_conn_recv(conns[i], &reply, 30.0));
            CHECK(mp_obj_parse(reply, "(i,L)", &n, &sq)); /* n, sq = c.recv() */
            mp_obj_free(reply);
            total += sq;
            answered++;
            done[i] = next > JOBS; /* it gets the sentinel and stops */
            send_job(conns[i], &next);
        }
    }

    int codes[WORKERS];
    for (int i = 0; i < WORKERS; i++) {
        CHECK(mp_process_join(procs[i], 30.0));
        CHECK(mp_process_exitcode(procs[i], &codes[i]));
        mp_process_free(procs[i]);
        mp_conn_free(conns[i]);
    }
    mp_listener_free(l);
    const int64_t want = (int64_t)JOBS * (JOBS + 1) * (2 * JOBS + 1) / 6;
    printf("C parent: %d jobs answered, sum of squares %lld: %s\n", answered, (long long)total,
           total == want ? "exact" : "WRONG");
    printf("C parent: workers exited with %d %d %d\n", codes[0], codes[1], codes[2]);
    return total == want && !codes[0] && !codes[1] && !codes[2] ? 0 : 1;
}
