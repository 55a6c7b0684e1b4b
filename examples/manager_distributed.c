/*
 * A distributed job queue on a manager - what Python's documentation shows
 * in "Using a remote manager": a server holds a queue and a dict on a TCP
 * address; a producer fills the queue; workers started separately (on this
 * host or any other that can reach the address and knows the authkey) take
 * jobs from it and add their results to the dict.
 *
 *     # server.py                                   # worker.py
 *     class QueueManager(BaseManager): pass         m = QueueManager(address=
 *     QueueManager.register('get_queue', ...)           ('server', 50000),
 *     m = QueueManager(address=('', 50000),             authkey=b'abracadabra')
 *                      authkey=b'abracadabra')      m.connect()
 *     m.get_server().serve_forever()                q = m.get_queue()
 *                                                   while (n := q.get()) is not None:
 *                                                       results[...] += n * n
 *
 * Run with no arguments, the program plays every part on loopback: it
 * starts `manager_distributed server tcp:127.0.0.1:0` (mp_manager_serve),
 * connects as the producer, starts three `manager_distributed worker
 * <address>` processes (exec'd: they inherit nothing, they connect by
 * address and key as a program on another host would), waits for them,
 * prints the results and stops the server. On real hosts:
 *
 *     host A$ manager_distributed server tcp:0.0.0.0:50000
 *     host B$ manager_distributed produce tcp:A:50000
 *     host C$ manager_distributed worker tcp:A:50000       (as many as you like)
 */
#include <mpipc.h>

#include "check.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define AUTHKEY "abracadabra"
#define JOBS    20
#define WORKERS 3

/* The server: serve until someone calls mp_manager_shutdown(). */
static void say_where(const char *address, void *arg)
{
    (void)arg;
    printf("serving on %s\n", address);
    fflush(stdout);
}

static int server(const char *address)
{
    mp_manager_opts o = MP_MANAGER_OPTS_INIT;
    o.ready = say_where;
    CHECK(mp_manager_serve(address, AUTHKEY, strlen(AUTHKEY), &o));
    return 0;
}

/* Connect, waiting a little for a server that is still starting. */
static mp_manager *connect_to(const char *address)
{
    mp_manager *m = NULL;
    int rc;
    for (int tries = 0; tries < 200; tries++) {
        rc = mp_manager_connect(&m, address, AUTHKEY, strlen(AUTHKEY), NULL);
        if (rc != -ECONNREFUSED)
            break;
        nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
    }
    CHECK(rc);
    return m;
}

/* The producer: jobs 1..JOBS, then one end-marker (None) per worker. */
static void produce(mp_manager *m, int workers)
{
    mp_queueproxy *jobs;
    mp_dictproxy *results;
    CHECK(mp_manager_queue_named(m, "jobs", 0, &jobs));
    CHECK(mp_manager_dict_named(m, "results", NULL, &results));
    for (int n = 1; n <= JOBS; n++) {
        mp_obj *job = mp_obj_int(n);
        CHECK(mp_queueproxy_put(jobs, job, MP_FOREVER));
        mp_obj_free(job);
    }
    for (int i = 0; i < workers; i++) {
        mp_obj *none = mp_obj_none();
        CHECK(mp_queueproxy_put(jobs, none, MP_FOREVER));
        mp_obj_free(none);
    }
    mp_queueproxy_free(jobs);
    mp_dictproxy_free(results);
}

/* A worker: square each job into the shared results until the end-marker. */
static int worker(const char *address)
{
    mp_manager *m = connect_to(address);
    mp_queueproxy *jobs;
    mp_dictproxy *results;
    /* The producer makes them; a worker that comes first makes them too. */
    CHECK(mp_manager_queue_named(m, "jobs", 0, &jobs));
    CHECK(mp_manager_dict_named(m, "results", NULL, &results));
    int done = 0;
    for (;;) {
        mp_obj *job;
        CHECK(mp_queueproxy_get(jobs, &job, MP_FOREVER));
        int64_t n;
        int stop = mp_obj_is_none(job);
        if (!stop)
            CHECK(mp_obj_get_int(job, &n));
        mp_obj_free(job);
        if (stop)
            break;
        CHECK(mp_dictproxy_add_int(results, "sum", n * n, NULL)); /* atomic: no lock */
        CHECK(mp_dictproxy_add_int(results, "jobs", 1, NULL));
        done++;
    }
    printf("worker %d: %d jobs\n", (int)getpid(), done);
    mp_queueproxy_free(jobs);
    mp_dictproxy_free(results);
    mp_manager_free(m);
    return 0;
}

static pid_t spawn(const char *self, const char *role, const char *address, int out_fd)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        if (out_fd >= 0)
            dup2(out_fd, STDOUT_FILENO);
        execl(self, self, role, address, (char *)NULL);
        _exit(127);
    }
    CHECK(pid < 0 ? -errno : 0);
    return pid;
}

static void reap(pid_t pid)
{
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "a helper process failed\n");
        exit(1);
    }
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "server") == 0)
        return server(argv[2]);
    if (argc == 3 && strcmp(argv[1], "worker") == 0)
        return worker(argv[2]);
    if (argc == 3 && strcmp(argv[1], "produce") == 0) {
        mp_manager *m = connect_to(argv[2]);
        produce(m, WORKERS);
        mp_manager_free(m);
        return 0;
    }
    if (argc != 1) {
        fprintf(stderr, "usage: %s [server|produce|worker ADDRESS]\n", argv[0]);
        return 2;
    }

    /* Everything on loopback. The server says where it listens (port 0
     * picks a free one) on its stdout, a pipe to us. */
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0)
        self[n] = '\0';
    else
        snprintf(self, sizeof self, "%s", argv[0]);
    int p[2];
    CHECK(pipe(p) < 0 ? -errno : 0);
    pid_t srv = spawn(self, "server", "tcp:127.0.0.1:0", p[1]);
    close(p[1]);
    char line[300];
    FILE *from_server = fdopen(p[0], "r");
    if (!from_server || !fgets(line, sizeof line, from_server))
        return 1;
    fclose(from_server);
    line[strcspn(line, "\n")] = '\0';
    const char *address = line + strlen("serving on ");
    printf("manager serving on TCP loopback\n");

    mp_manager *m = connect_to(address);
    produce(m, WORKERS);
    pid_t w[WORKERS];
    for (int i = 0; i < WORKERS; i++)
        w[i] = spawn(self, "worker", address, -1);
    for (int i = 0; i < WORKERS; i++)
        reap(w[i]);

    mp_dictproxy *results;
    CHECK(mp_manager_attach_dict(m, "results", &results));
    mp_obj *copy;
    CHECK(mp_dictproxy_copy(results, &copy));
    char *text;
    CHECK(mp_obj_repr(copy, &text));
    printf("results: %s\n", text); /* sum of squares 1..20 = 2870 */
    free(text);
    mp_obj_free(copy);
    mp_dictproxy_free(results);

    CHECK(mp_manager_shutdown(m)); /* any authenticated client may stop it */
    mp_manager_free(m);
    reap(srv);
    printf("manager stopped\n");
    return 0;
}
