/*
 * pool - Python's multiprocessing.Pool for fork (see pool.h for the
 * contract and the design in brief). This file holds the pool's life: new
 * (fork server, threads, first workers), close, terminate, join, free.
 * pool_impl.h has the design notes and lists the sibling files.
 */
#include "pool/pool_impl.h"

#include "core/shm.h"

#include <signal.h>
#include <stdio.h>
#include <unistd.h>

static pthread_condattr_t mono_attr;
static pthread_once_t mono_once = PTHREAD_ONCE_INIT;

static void pool_mono_setup(void)
{
    (void)pthread_condattr_init(&mono_attr);
    (void)pthread_condattr_setclock(&mono_attr, CLOCK_MONOTONIC);
}

int mp__pool_cond_init(pthread_cond_t *cv)
{
    (void)pthread_once(&mono_once, pool_mono_setup);
    return pthread_cond_init(cv, &mono_attr) == 0 ? 0 : -ENOMEM;
}

bool mp__pool_cond_wait_until(pthread_cond_t *cv, pthread_mutex_t *mu, int64_t deadline)
{
    if (deadline == MP__NO_DEADLINE) {
        pthread_cond_wait(cv, mu);
        return true;
    }
    if (mp__deadline_passed(deadline))
        return false;
    struct timespec ts = mp__deadline_timespec(deadline);
    pthread_cond_timedwait(cv, mu, &ts);
    return true;
}

static bool pool_in_own_thread(const mp_pool *p)
{
    pthread_t self = pthread_self();
    return p->threads && (pthread_equal(self, p->res_th) || pthread_equal(self, p->disp_th));
}

/* The blocking calls refuse the pool's own threads: a callback waiting for
 * a task would wait for the thread it runs in. */
int mp__pool_sync_check(const mp_pool *p, double timeout)
{
    int rc = mp__pool_check(p);
    if (rc == 0 && mp__bad_timeout(timeout))
        rc = MP_EVALUE;
    if (rc == 0 && pool_in_own_thread(p))
        rc = MP_ESTATE;
    return rc;
}

static void pool_exit_hook(void *arg)
{
    mp_pool *p = arg;
    p->hook = 0; /* the exit procedure removed it */
    (void)mp_pool_terminate(p);
    (void)mp_pool_join(p, MP_FOREVER);
}

/*
 * Release everything. In the owner (ours): the threads are joined (or never
 * started), the fork server has been joined (or never started) and no
 * worker is alive. In a forked child's copy (!ours): its descriptors are
 * closed and its memory freed; the mutexes may be held by threads that do
 * not exist there, and the jobs are the owner's, so both are left alone.
 */
static void pool_release(mp_pool *p, bool ours)
{
    if (ours) {
        MP__ASSERT(p->ncache == 0 && mp__list_empty(&p->cache)); /* every job finished */
        while (p->retry_head) {
            struct retry *r = p->retry_head;
            p->retry_head = r->next;
            mp__pool_job_unref(r->job);
            free(r);
        }
        mp_conn_free(p->zctl_child);
    }
    for (int i = 0; p->w && i < p->nproc; i++)
        mp_conn_free(p->w[i].conn);
    free(p->w);
    if (p->zygote)
        mp_process_free(p->zygote); /* in a child: not ours, just the copy */
    mp_conn_free(p->zctl);
    mp_listener_free(p->lis); /* only the creator removes its file */
    free(p->lis_addr);
    if (p->slots_fd >= 0) {
        mp__shm_unmap(p->slots, (size_t)p->nproc * sizeof(struct slot));
        mp__close(p->slots_fd);
    } else {
        mp__shm_free(p->slots); /* in a child: not ours, a no-op */
    }
    if (p->notify[0] >= 0)
        mp__close(p->notify[0]);
    if (p->notify[1] >= 0)
        mp__close(p->notify[1]);
    free(p->batch);
    free(p->rbuf);
    mp__wipe(p->authkey, sizeof p->authkey); /* a secret */
    if (ours) {
        pthread_mutex_destroy(&p->mu);
        pthread_cond_destroy(&p->disp_cv);
        pthread_cond_destroy(&p->done_cv);
    }
    free(p);
}

/* The options with their defaults filled in, or MP_EVALUE. */
static int pool_resolve_opts(const mp_pool_opts *opts, mp_pool_opts *o, bool ext)
{
    mp_pool_opts defaults = MP_POOL_OPTS_INIT;
    *o = opts ? *opts : defaults;
    if (o->processes < 0 || o->maxtasksperchild < 0)
        return MP_EVALUE;
    /* spawn: the server is a fresh run of the program, where only
     * registered functions have an identity and pointers mean nothing. */
    const char *method = o->ctx ? mp_context_start_method(o->ctx) : NULL;
    if ((ext || (method && strcmp(method, "spawn") == 0)) && o->initializer) {
        uint64_t id;
        if (mp__task_id(MP_TASK_INIT, (mp_task_fn)o->initializer, &id) < 0)
            return mp__err(
                MP_EKEY,
                "initializer %p is not registered: a spawn (or MPI) pool's workers find it "
                "by name (MP_TASK(fn) or mp_task_register_init)",
                (void *)(uintptr_t)o->initializer);
        if (o->initarg)
            return mp__err(MP_EVALUE, "initarg must be NULL under the spawn start method (or on "
                                      "MPI ranks): a pointer does not survive exec");
    }
    if (o->processes == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        o->processes = n > 0 ? (n > 4096 ? 4096 : (int)n) : 1;
    }
    return 0;
}

/*
 * A pool with its locks, worker table, shared slots and notify pipe; no
 * process or thread yet. Once its locks exist *out is set, even when a
 * later step fails: pool_release(*out, true) undoes whatever was done.
 */
static int pool_alloc(mp_pool **out, const mp_pool_opts *o)
{
    int rc = -ENOMEM;
    mp_pool *p = calloc(1, sizeof *p);
    if (!p)
        return -ENOMEM;
    p->notify[0] = p->notify[1] = -1;
    p->slots_fd = -1;
    MP__LIST_INIT(&p->pending, struct mp_result, pnode);
    MP__LIST_INIT(&p->cache, struct mp_result, cnode);
    if (pthread_mutex_init(&p->mu, NULL) != 0)
        goto fail;
    if (mp__pool_cond_init(&p->disp_cv) < 0)
        goto fail_mu;
    if (mp__pool_cond_init(&p->done_cv) < 0)
        goto fail_disp;
    p->gen = mp__forkgen();
    p->owner = getpid();
    p->nproc = o->processes;
    p->maxtasks = o->maxtasksperchild;
    p->init = o->initializer;
    p->initarg = o->initarg;
    p->state = P_RUN;
    p->ewma_ns = WINDOW_TARGET_NS; /* a window of 1 until workers report */
    *out = p;
    /* From here pool_release undoes what is done. */
    p->w = calloc((size_t)p->nproc, sizeof *p->w);
    if (!p->w)
        return -ENOMEM;
    for (int i = 0; i < p->nproc; i++) {
        p->w[i].pool = p;
        p->w[i].idx = i;
    }
    void *m = NULL;
    size_t size = (size_t)p->nproc * sizeof(struct slot);
    const char *method = o->ctx ? mp_context_start_method(o->ctx) : NULL;
    if (method && (strcmp(method, "forkserver") == 0 || strcmp(method, "spawn") == 0)) {
        /* The pool's server is not our fork: it maps the slots' file. */
        p->fs_ctx = o->ctx;
        p->by_id = strcmp(method, "spawn") == 0;
        if ((rc = mp__anon_file("mpipc-pool")) < 0)
            return rc;
        p->slots_fd = rc;
        if ((rc = mp__truncate(p->slots_fd, size)) < 0 ||
            (rc = mp__shm_map_fd(&m, p->slots_fd, size)) < 0)
            return rc;
    } else if ((rc = mp__shm_alloc(&m, size)) < 0) {
        return rc;
    }
    p->slots = m;
    if ((rc = mp__pipe(p->notify)) < 0)
        p->notify[0] = p->notify[1] = -1;
    return rc;

fail_disp:
    pthread_cond_destroy(&p->disp_cv);
fail_mu:
    pthread_mutex_destroy(&p->mu);
fail:
    free(p);
    return rc;
}

/*
 * Start the fork server (see pool_forkserver.c), after the private listener
 * that workers connect back to: a 0700 directory, and a random key they
 * prove they hold.
 */
static int pool_start_forkserver(mp_pool *p)
{
    int rc;
    if ((rc = mp__random_bytes(p->authkey, sizeof p->authkey)) < 0)
        return rc;
    if ((rc = mp_listener_new(&p->lis, NULL, p->authkey, sizeof p->authkey, NULL)) < 0)
        return rc;
    p->lis_addr = strdup(mp_listener_address(p->lis));
    if (!p->lis_addr)
        return -ENOMEM;
    if ((rc = mp_pipe(&p->zctl, &p->zctl_child, true)) < 0)
        return rc;
    if (p->ext.start) {
        mp_conn *ctl = p->zctl_child;
        p->zctl_child = NULL;
        return p->ext.start(p, ctl, p->ext.arg); /* it owns ctl, even on failure */
    }
    if (p->fs_ctx) {
        rc = mp__pool_forkserver_start_shared(p, p->fs_ctx);
        mp_conn_free(p->zctl_child);
        p->zctl_child = NULL;
        return rc;
    }
    if ((rc = mp_process_new(&p->zygote, mp__pool_forkserver_main, p)) < 0)
        return rc;
    char zname[48];
    snprintf(zname, sizeof zname, "PoolForkServer-%s", mp_process_name(p->zygote) + 8);
    (void)mp_process_set_name(p->zygote, zname);
    if ((rc = mp_process_start(p->zygote)) < 0) {
        mp_process_free(p->zygote);
        p->zygote = NULL;
        return rc;
    }
    mp_conn_free(p->zctl_child);
    p->zctl_child = NULL;
    return 0;
}

/* Stop the fork server (and so any worker) when mp_pool_new fails before
 * the threads run. */
static void pool_stop_forkserver(mp_pool *p)
{
    if (!p->zygote && !p->ext.start)
        return;
    (void)mp__pool_forkserver_send(p, Z_EXIT, NULL, 0);
    mp__pool_forkserver_reap(p);
}

/*
 * Start the dispatcher and the result thread, with every signal blocked:
 * a program's handlers keep running in its own threads. On failure no
 * thread runs and the fork server is stopped.
 */
static int pool_start_threads(mp_pool *p)
{
    sigset_t all, old;
    sigfillset(&all);
    (void)pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = -pthread_create(&p->disp_th, NULL, mp__pool_dispatcher_main, p);
    if (rc < 0)
        goto fail;
    rc = -pthread_create(&p->res_th, NULL, mp__pool_result_main, p);
    if (rc < 0)
        goto fail_dispatcher;
    (void)pthread_sigmask(SIG_SETMASK, &old, NULL);
    mp__pool_lock(p);
    p->threads = true;
    mp__pool_unlock(p);
    return 0;

fail_dispatcher:
    /* The dispatcher cannot finish without the result thread: stop the
     * server under it, then let it see no workers. */
    mp__pool_lock(p);
    p->state = P_TERMINATE;
    for (int i = 0; i < p->nproc; i++)
        p->w[i].state = W_NONE;
    p->spawn_after = INT64_MAX;
    pthread_cond_signal(&p->disp_cv);
    mp__pool_unlock(p);
    pthread_join(p->disp_th, NULL);
fail:
    (void)pthread_sigmask(SIG_SETMASK, &old, NULL);
    pool_stop_forkserver(p);
    return rc;
}

static int pool_count_live_locked(const mp_pool *p)
{
    MP__POOL_ASSERT_HELD(p);
    int live = 0;
    for (int i = 0; i < p->nproc; i++)
        live += p->w[i].state == W_LIVE;
    return live;
}

/* Python's Pool() returns with its processes started: wait until every
 * worker has connected back (before its initializer runs). */
static int pool_wait_for_workers(mp_pool *p)
{
    int64_t deadline = mp__deadline(120.0);
    mp__pool_lock(p);
    for (;;) {
        if (pool_count_live_locked(p) == p->nproc || p->spawn_error || p->broken ||
            p->startup_fails)
            break;
        if (!mp__pool_wait_until(p, &p->done_cv, deadline))
            break;
    }
    int rc = pool_count_live_locked(p) == p->nproc ? 0
             : p->spawn_error                      ? p->spawn_error
             : p->broken                           ? MP_EWORKER
                                                   : 0;
    mp__pool_unlock(p);
    return rc;
}

/* mp_pool_new, and under ext (pool_ext.h) a pool of workers it serves. */
static int pool_new(mp_pool **out, const mp_pool_opts *opts, const struct mp__pool_ext *ext)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    mp_pool_opts o;
    int rc = pool_resolve_opts(opts, &o, ext != NULL);
    if (rc < 0)
        return rc;
    mp_pool *p = NULL;
    rc = pool_alloc(&p, &o);
    if (rc < 0)
        goto fail;
    if (ext) {
        p->ext = *ext;
        p->by_id = true; /* the workers run another copy of the program */
    }
    if ((rc = pool_start_forkserver(p)) < 0)
        goto fail;
    if ((rc = pool_start_threads(p)) < 0)
        goto fail;
    if ((rc = pool_wait_for_workers(p)) < 0)
        goto fail_running;
    int hook = mp__exit_hook_add(pool_exit_hook, p, 15);
    p->hook = hook > 0 ? hook : 0;
    *out = p;
    return 0;

fail_running:
    (void)mp_pool_terminate(p);
    (void)mp_pool_join(p, MP_FOREVER);
fail:
    if (p)
        pool_release(p, true);
    return rc;
}

MP_API int mp_pool_new(mp_pool **out, const mp_pool_opts *opts)
{
    return pool_new(out, opts, NULL);
}

MP_API int mp__pool_new_ext(mp_pool **out, const mp_pool_opts *opts, const struct mp__pool_ext *ext)
{
    if (!ext || !ext->start || !ext->reap)
        return -EINVAL;
    return pool_new(out, opts, ext);
}

MP_API int mp_pool_close(mp_pool *p)
{
    int rc = mp__pool_check(p);
    if (rc < 0)
        return rc;
    mp__pool_lock(p);
    if (p->state == P_RUN) {
        p->state = P_CLOSE;
        mp__pool_wake_dispatcher_locked(p);
    }
    mp__pool_unlock(p);
    return 0;
}

MP_API int mp_pool_terminate(mp_pool *p)
{
    int rc = mp__pool_check(p);
    if (rc < 0)
        return rc;
    mp__pool_lock(p);
    p->state = P_TERMINATE;
    mp__pool_wake_dispatcher_locked(p);
    mp__pool_notify_result_locked(p);
    /* From a callback the result thread does it once the callback returns. */
    if (!pool_in_own_thread(p))
        while (!p->term_done && !p->res_done)
            (void)mp__pool_wait_until(p, &p->done_cv, MP__NO_DEADLINE);
    mp__pool_unlock(p);
    return 0;
}

MP_API int mp_pool_join(mp_pool *p, double timeout)
{
    int rc = mp__pool_check(p);
    if (rc < 0)
        return rc;
    if (mp__bad_timeout(timeout))
        return MP_EVALUE;
    int64_t deadline = mp__deadline(timeout);
    mp__pool_lock(p);
    if (p->state == P_RUN)
        rc = MP_EVALUE;
    else if (pool_in_own_thread(p))
        rc = MP_ESTATE;
    while (rc == 0 && !(p->disp_done && p->res_done))
        if (!mp__pool_wait_until(p, &p->done_cv, deadline))
            rc = MP_ETIMEDOUT;
    bool join_now = rc == 0 && !p->joined;
    if (rc == 0)
        p->joined = true;
    mp__pool_unlock(p);
    if (join_now) {
        pthread_join(p->disp_th, NULL);
        pthread_join(p->res_th, NULL);
        /* Reaped here rather than by the dispatcher: ThreadSanitizer takes
         * process.c's mutex, re-created by assignment in a forked child, as
         * still held by the forking thread, so a pool made in a child would
         * see a false "double lock" report from any other thread. */
        mp__pool_forkserver_reap(p);
    }
    return rc;
}

/* Freeing from the pool's own thread (a callback) would join that thread
 * from itself: a misuse, refused by doing nothing rather than by abort. */
MP_API void mp_pool_free(mp_pool *p)
{
    if (!p)
        return;
    if (p->gen != mp__forkgen()) {
        pool_release(p, false); /* a forked child's copy */
        return;
    }
    if (pool_in_own_thread(p))
        return;
    mp__pool_lock(p);
    bool running = p->state == P_RUN;
    mp__pool_unlock(p);
    if (running)
        (void)mp_pool_terminate(p);
    (void)mp_pool_join(p, MP_FOREVER);
    if (p->hook > 0)
        mp__exit_hook_remove(p->hook);
    pool_release(p, true);
}

MP_API ssize_t mp_pool_processes(const mp_pool *p)
{
    int rc = mp__pool_check(p);
    return rc < 0 ? rc : p->nproc;
}

MP_API ssize_t mp_pool_pids(mp_pool *p, pid_t *pids, size_t cap)
{
    int rc = mp__pool_check(p);
    if (rc < 0)
        return rc;
    if (!pids && cap > 0)
        return -EINVAL;
    ssize_t n = 0;
    mp__pool_lock(p);
    for (int i = 0; i < p->nproc; i++) {
        if (p->w[i].state != W_LIVE)
            continue;
        if ((size_t)n < cap)
            pids[n] = p->w[i].pid;
        n++;
    }
    mp__pool_unlock(p);
    return n;
}
