/*
 * mgr_worker - the manager server's helper thread for large requests. It
 * decodes a request too large to decode in the loop, and frees what such a
 * request left behind, so that one client's 64 MiB pickle stalls nobody
 * else: the loop only hands the bytes over and, later, runs the decoded
 * request like any other (mgr.h, "Large requests").
 *
 * One thread, started on the first job, takes jobs in order. Finished
 * decodes go back on a list the loop collects after a byte on the wake
 * socket tells it to. Everything the loop and the thread share is under one
 * mutex; a job's owner field is the loop's alone (the thread never reads
 * it), so the loop may clear it while the thread decodes.
 */
#include "codec/pickle.h"
#include "core/io.h"
#include "manager/mgr.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

struct mp__mgr_worker {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct mp__list todo; /* FIFO */
    struct mp__list done; /* any order (the newest first) */
    bool started, stop, wake_pending;
    pthread_t thread;
    int wake[2]; /* [0] polled by the loop, [1] written by the thread */
};

/*
 * Give freed memory back to the system after a large request. The heap a
 * libc keeps for small blocks does not shrink on its own once blocks in its
 * middle were freed; glibc's malloc_trim() returns those pages. Elsewhere
 * nothing is called: the memory is free for the server's next requests, and
 * the large buffers themselves are single blocks that a libc maps and
 * unmaps on its own.
 */
static void worker_release_memory(void)
{
#if defined(__GLIBC__)
    (void)malloc_trim(0);
#endif
}

static void *worker_main(void *arg)
{
    struct mp__mgr_worker *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (mp__list_empty(&w->todo) && !w->stop)
            pthread_cond_wait(&w->cv, &w->mu);
        if (w->stop)
            break;
        struct mp__mgr_job *j = mp__list_pop_front(&w->todo);
        pthread_mutex_unlock(&w->mu);
        if (j->op == MP__MGR_JOB_FREE) {
            mp_obj_free(j->obj);
            free(j->buf);
            free(j);
            worker_release_memory();
            pthread_mutex_lock(&w->mu);
            continue;
        }
        int rc = j->rc = mp__pickle_loads(j->buf + j->off, j->len, &j->obj);
        free(j->buf);
        j->buf = NULL;
        pthread_mutex_lock(&w->mu);
        mp__list_push_front(&w->done, j); /* the loop's from here on */
        if (!w->wake_pending) {
            w->wake_pending = true;
            char b = 1;
            (void)mp__send_nowait(w->wake[1], &b, 1);
        }
        if (rc < 0) {
            /* A refused pickle may have built a lot before it was refused;
             * give that back once the refusal is on its way. */
            pthread_mutex_unlock(&w->mu);
            worker_release_memory();
            pthread_mutex_lock(&w->mu);
        }
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

int mp__mgr_worker_new(struct mp__mgr_worker **out)
{
    *out = NULL;
    struct mp__mgr_worker *w = calloc(1, sizeof *w);
    if (!w)
        return -ENOMEM;
    MP__LIST_INIT(&w->todo, struct mp__mgr_job, node);
    MP__LIST_INIT(&w->done, struct mp__mgr_job, node);
    int rc = mp__socketpair(w->wake);
    if (rc < 0) {
        free(w);
        return rc;
    }
    if (pthread_mutex_init(&w->mu, NULL) != 0) {
        mp__close(w->wake[0]);
        mp__close(w->wake[1]);
        free(w);
        return -ENOMEM;
    }
    if (pthread_cond_init(&w->cv, NULL) != 0) {
        pthread_mutex_destroy(&w->mu);
        mp__close(w->wake[0]);
        mp__close(w->wake[1]);
        free(w);
        return -ENOMEM;
    }
    *out = w;
    return 0;
}

int mp__mgr_worker_fd(const struct mp__mgr_worker *w)
{
    return w->wake[0];
}

/* Start the thread with every signal blocked: signals are for the threads
 * of the program, never for this one. */
static int worker_start(struct mp__mgr_worker *w)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&w->thread, NULL, worker_main, w);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0)
        return -rc;
    w->started = true;
    return 0;
}

int mp__mgr_worker_submit(struct mp__mgr_worker *w, struct mp__mgr_job *j)
{
    pthread_mutex_lock(&w->mu);
    int rc = w->started ? 0 : worker_start(w);
    if (rc == 0) {
        mp__list_push_back(&w->todo, j);
        pthread_cond_signal(&w->cv);
    }
    pthread_mutex_unlock(&w->mu);
    return rc;
}

void mp__mgr_worker_collect(struct mp__mgr_worker *w, struct mp__list *out)
{
    char buf[64];
    while (mp__recv_nowait(w->wake[0], buf, sizeof buf) > 0)
        ;
    pthread_mutex_lock(&w->mu);
    mp__list_append_all(out, &w->done);
    w->wake_pending = false;
    pthread_mutex_unlock(&w->mu);
}

void mp__mgr_worker_free(struct mp__mgr_worker *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->mu);
    w->stop = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    if (w->started)
        pthread_join(w->thread, NULL);
    /* What the thread had not got to, and what the loop never collected. */
    struct mp__list *lists[2] = {&w->todo, &w->done};
    for (int i = 0; i < 2; i++) {
        struct mp__mgr_job *j;
        while ((j = mp__list_pop_front(lists[i])) != NULL) {
            mp_obj_free(j->obj);
            free(j->buf);
            free(j);
        }
    }
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    mp__close(w->wake[0]);
    mp__close(w->wake[1]);
    free(w);
}
