/*
 * queue - Python's Queue, JoinableQueue and SimpleQueue (see queue.h) over
 * the chunked pipe of qpipe.h.
 *
 * Shared (made before fork): the qpipe block, the BoundedSemaphore that
 * counts free places (Python's _sem), and for a JoinableQueue the
 * unfinished-tasks semaphore and its Condition.
 *
 * Per process (the handle's own memory, which a forked child gets a copy
 * of): the feeder thread and its buffer, the closed flag, the exit hooks.
 * Every entry point compares the handle's fork generation with the
 * process's; in a child that differs, the copy of the parent's buffer is
 * dropped (the parent delivers those items) and the mutex and condvar are
 * made anew.
 *
 * Exit. The feeder registers two hooks in its process, as Python's
 * _start_thread() registers two finalizers: at priority 10 (before the exit
 * procedure joins children) it tells the feeder to flush - write without
 * waiting, spill the rest - and at -5 it joins the feeder. A child therefore
 * never waits for its parent to read before it can end.
 *
 * Static functions carry queue_, or simplequeue_ for SimpleQueue's own.
 */
#include "codec/pickle.h"
#include "core/internal.h"
#include "core/io.h"
#include "core/parts.h"
#include "core/shm.h"
#include "queue/qpipe.h"

#include <mpipc/queue.h>
#include <mpipc/sync.h>

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* How many buffered items the feeder hands to one mp__qpipe_write(). */
#define FEED_BATCH 4096
/* The feeder's stack (it needs a few KiB). The library allocates it: glibc
 * reuses its own cached stacks - and with them the thread ids - in a forked
 * child, which ThreadSanitizer cannot tell from a thread still running. */
#define FEEDER_STACK                                                                               \
    ((size_t)2 * 1024 * 1024) /* TLS lives here too; untouched pages cost nothing */

struct item {
    size_t len;
    int kind; /* MP__QK_BYTES or MP__QK_OBJ */
    unsigned char data[];
};

struct mp_queue {
    struct mp__qpipe qp;
    mp_sem *sem;        /* free places: Python's _sem */
    mp_sem *unfinished; /* JoinableQueue: tasks put and not done */
    mp_cond *cond;      /* JoinableQueue: join() sleeps here */
    unsigned maxsize;   /* SEM_VALUE_MAX when unbounded, as in Python */

    /* Process-local, reset in a forked child. */
    unsigned gen;
    pthread_mutex_t mu; /* guards everything below */
    pthread_cond_t cv;  /* the feeder waits here for items */
    struct item **buf;
    size_t nbuf, capbuf;
    bool closed;
    bool feeder;         /* the feeder thread is running */
    bool thread_live;    /* a feeder thread was started and not joined */
    bool feeder_waiting; /* it is asleep on cv */
    int flush;           /* atomic: stop waiting for readers, then stop */
    bool spilling;       /* the feeder has spilled: all later items do too */
    bool joincancelled;
    pthread_t thread;
    void *stack;               /* the feeder's stack, freed once joined */
    int hook_flush, hook_join; /* exit hook ids, 0 when none */
};

struct mp_simplequeue {
    struct mp__qpipe qp;
    bool closed;
};

/* ---- helpers ------------------------------------------------------------------ */

static void queue_free_items(struct item **items, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(items[i]);
}

static int queue_local_init(mp_queue *q)
{
    if (pthread_mutex_init(&q->mu, NULL) != 0)
        return -ENOMEM;
    pthread_condattr_t ca;
    int rc = pthread_condattr_init(&ca);
    if (rc == 0) {
        rc = pthread_cond_init(&q->cv, &ca);
        pthread_condattr_destroy(&ca);
    }
    if (rc != 0) {
        pthread_mutex_destroy(&q->mu);
        return -rc;
    }
    return 0;
}

/* In a forked child: the handle's process-local half belongs to the parent. */
static void queue_fork_fixup_slow(mp_queue *q)
{
    mp__forkfix_lock();
    unsigned now = mp__forkgen();
    if (q->gen != now) {
        queue_free_items(q->buf, q->nbuf);
        free(q->buf);
        q->buf = NULL;
        q->nbuf = q->capbuf = 0;
        q->closed = false;
        q->feeder = q->feeder_waiting = q->thread_live = false;
        q->flush = 0;
        q->spilling = false;
        q->joincancelled = false;
        q->hook_flush = q->hook_join = 0; /* core/process.c dropped them */
        /* The parent's feeder's stack: not freed here, so that a new feeder
         * never gets the same address - and thread id - as a thread this
         * process never had (see FEEDER_STACK). */
        q->stack = NULL;
        (void)queue_local_init(q);
        __atomic_store_n(&q->gen, now, __ATOMIC_RELEASE);
    }
    mp__forkfix_unlock();
}

static inline void queue_fork_fixup(mp_queue *q)
{
    if (__atomic_load_n(&q->gen, __ATOMIC_ACQUIRE) != mp__forkgen())
        queue_fork_fixup_slow(q);
}

/* What every put and get checks first, in Python's order; the handle is
 * this process's from here. */
static inline int queue_check(mp_queue *q, double timeout)
{
    if (!q)
        return -EINVAL;
    if (mp__bad_timeout(timeout))
        return MP_EVALUE;
    queue_fork_fixup(q);
    if (__atomic_load_n(&q->closed, __ATOMIC_ACQUIRE))
        return MP_ECLOSED;
    return 0;
}

/* ---- the feeder ------------------------------------------------------------------ */

/* Write items[0..n) in batches; give back the places of items that could
 * not be delivered at all (no reader left anywhere, a spill file that cannot
 * grow), as Python's feeder does when a send fails. Frees the items. */
static void queue_feed(mp_queue *q, struct item **items, size_t n, struct mp__qitem *iov)
{
    for (size_t at = 0; at < n;) {
        size_t k = n - at < FEED_BATCH ? n - at : FEED_BATCH;
        for (size_t i = 0; i < k; i++) {
            iov[i].data = items[at + i]->data;
            iov[i].len = items[at + i]->len;
            iov[i].kind = items[at + i]->kind;
        }
        size_t written = 0;
        int rc = mp__qpipe_write(&q->qp, iov, k, MP__NO_DEADLINE, &q->spilling, &q->flush, &written,
                                 true);
        MP__ASSERT(written <= k && (rc < 0 || written == k));
        for (size_t i = written; rc < 0 && i < k; i++)
            (void)mp_sem_release(q->sem);
        at += k;
    }
    queue_free_items(items, n);
}

/* Python's _feed(): take everything buffered (swapping arrays, so put()
 * never waits for a write), write it, and sleep until more comes - until
 * told to flush and nothing is left. */
static void *queue_feeder_main(void *arg)
{
    mp_queue *q = arg;
    struct mp__qitem *iov = malloc(FEED_BATCH * sizeof *iov);
    struct item **mine = NULL;
    size_t cap_mine = 0;
    pthread_mutex_lock(&q->mu);
    for (;;) {
        while (q->nbuf == 0 && !__atomic_load_n(&q->flush, __ATOMIC_ACQUIRE)) {
            q->feeder_waiting = true;
            pthread_cond_wait(&q->cv, &q->mu);
            q->feeder_waiting = false;
        }
        if (q->nbuf == 0)
            break; /* flushing, and nothing is left */
        if (!iov) {
            iov = malloc(FEED_BATCH * sizeof *iov);
            if (!iov) { /* no memory: try again shortly */
                pthread_mutex_unlock(&q->mu);
                mp__sleep(0.001);
                pthread_mutex_lock(&q->mu);
                continue;
            }
        }
        struct item **take = q->buf;
        size_t n = q->nbuf, cap_take = q->capbuf;
        MP__ASSERT(take && n <= cap_take);
        q->buf = mine;
        q->capbuf = cap_mine;
        q->nbuf = 0;
        pthread_mutex_unlock(&q->mu);
        queue_feed(q, take, n, iov);
        pthread_mutex_lock(&q->mu);
        mine = take; /* emptied: the spare for the next swap */
        cap_mine = cap_take;
    }
    q->feeder = false;
    pthread_mutex_unlock(&q->mu);
    free(mine);
    free(iov);
    return NULL;
}

/* Ask the feeder to flush and stop (mu held). */
static void queue_request_flush(mp_queue *q)
{
    __atomic_store_n(&q->flush, 1, __ATOMIC_RELEASE);
    pthread_cond_signal(&q->cv);
}

static void queue_join_feeder(mp_queue *q)
{
    pthread_mutex_lock(&q->mu);
    bool live = q->thread_live;
    q->thread_live = false;
    pthread_t t = q->thread;
    pthread_mutex_unlock(&q->mu);
    if (live) {
        (void)pthread_join(t, NULL);
        pthread_mutex_lock(&q->mu);
        free(q->stack);
        q->stack = NULL;
        pthread_mutex_unlock(&q->mu);
    }
}

/* Exit hook, priority 10: Python's _finalize_close - flush, do not wait. */
static void queue_exit_flush(void *arg)
{
    mp_queue *q = arg;
    pthread_mutex_lock(&q->mu);
    q->hook_flush = 0;
    if (!q->joincancelled)
        queue_request_flush(q);
    pthread_mutex_unlock(&q->mu);
}

/* Exit hook, priority -5: Python's _finalize_join. */
static void queue_exit_join(void *arg)
{
    mp_queue *q = arg;
    pthread_mutex_lock(&q->mu);
    q->hook_join = 0;
    bool cancelled = q->joincancelled;
    pthread_mutex_unlock(&q->mu);
    if (!cancelled)
        queue_join_feeder(q);
}

/* Register an exit hook unless *id already names one; 0 when it cannot be. */
static void queue_add_hook(int *id, mp__exit_hook_fn fn, void *arg, int priority)
{
    if (!*id) {
        int rc = mp__exit_hook_add(fn, arg, priority);
        *id = rc > 0 ? rc : 0;
    }
}

/* Start the feeder (mu held). It runs with every signal blocked: signals
 * are for the program's threads, and SIGPIPE must never kill it. */
static int queue_start_feeder(mp_queue *q)
{
    if (q->thread_live) {
        /* A feeder that flushed at exit and ended; something put again. */
        pthread_mutex_unlock(&q->mu);
        queue_join_feeder(q);
        pthread_mutex_lock(&q->mu);
        if (q->feeder || q->thread_live)
            return 0; /* another thread started one meanwhile */
    }
    MP__ASSERT(!q->feeder && !q->thread_live);
    long page = sysconf(_SC_PAGESIZE);
    void *stack = NULL;
    if (posix_memalign(&stack, page > 0 ? (size_t)page : 4096, FEEDER_STACK) != 0)
        return -ENOMEM;
    pthread_attr_t attr;
    int rc = pthread_attr_init(&attr);
    if (rc != 0)
        goto fail;
    rc = pthread_attr_setstack(&attr, stack, FEEDER_STACK);
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    __atomic_store_n(&q->flush, 0, __ATOMIC_RELEASE);
    if (rc == 0)
        rc = pthread_create(&q->thread, &attr, queue_feeder_main, q);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    (void)pthread_attr_destroy(&attr);
    if (rc != 0)
        goto fail;
    q->stack = stack;
    q->thread_live = true;
    q->feeder = true;
    queue_add_hook(&q->hook_flush, queue_exit_flush, q, 10);
    queue_add_hook(&q->hook_join, queue_exit_join, q, -5);
    return 0;

fail:
    free(stack);
    return -rc;
}

/* ---- Queue ------------------------------------------------------------------------ */

/* max_item as the options give it: 0 for the default. */
static int queue_max_item_of(const mp_queue_opts *opts, size_t *max_item)
{
    size_t m = opts && opts->max_item ? opts->max_item : MP_QUEUE_MAX_ITEM_DEFAULT;
    if ((uint64_t)m > MP__QPIPE_MAX_ITEM_LIMIT)
        return MP_EVALUE;
    *max_item = m;
    return 0;
}

static int queue_make(mp_queue **out, size_t maxsize, bool joinable, size_t max_item)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (maxsize > (size_t)SEM_VALUE_MAX)
        return MP_EVALUE;
    mp_queue *q = calloc(1, sizeof *q);
    if (!q)
        return -ENOMEM;
    q->maxsize = maxsize ? (unsigned)maxsize : (unsigned)SEM_VALUE_MAX;
    q->gen = mp__forkgen();
    int rc = mp__qpipe_open(&q->qp, max_item);
    if (rc < 0)
        goto fail;
    if ((rc = mp_sem_new_bounded(&q->sem, q->maxsize)) < 0)
        goto fail_shared;
    if (joinable &&
        ((rc = mp_sem_new(&q->unfinished, 0)) < 0 || (rc = mp_cond_new(&q->cond, NULL)) < 0))
        goto fail_shared;
    if ((rc = queue_local_init(q)) < 0)
        goto fail_shared;
    *out = q;
    return 0;

fail_shared: /* each free takes NULL: what was not made yet */
    mp_cond_free(q->cond);
    mp_sem_free(q->unfinished);
    mp_sem_free(q->sem);
    mp__qpipe_close_fds(&q->qp);
    mp__qpipe_destroy(&q->qp);
fail:
    free(q);
    return rc;
}

MP_API int mp_queue_new(mp_queue **out, size_t maxsize)
{
    return queue_make(out, maxsize, false, MP_QUEUE_MAX_ITEM_DEFAULT);
}

MP_API int mp_queue_new_joinable(mp_queue **out, size_t maxsize)
{
    return queue_make(out, maxsize, true, MP_QUEUE_MAX_ITEM_DEFAULT);
}

MP_API int mp_queue_new_opts(mp_queue **out, const mp_queue_opts *opts)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    size_t max_item;
    int rc = queue_max_item_of(opts, &max_item);
    if (rc < 0)
        return rc;
    return queue_make(out, opts ? opts->maxsize : 0, opts && opts->joinable, max_item);
}

/* Python's put(): hand the item to this process's feeder. */
static int queue_put(mp_queue *q, const void *data, size_t len, int kind, double timeout)
{
    int rc = queue_check(q, timeout);
    if (rc < 0)
        return rc;
    if (len > mp__qpipe_max_item(&q->qp))
        return MP_ETOOLONG;
    /* offsetof, not sizeof: the padding after kind holds data's first bytes. */
    struct item *it = malloc(offsetof(struct item, data) + len);
    if (!it)
        return -ENOMEM;
    it->len = len;
    it->kind = kind;
    if (len)
        memcpy(it->data, data, len);
    rc = mp_sem_acquire(q->sem, timeout);
    if (rc < 0) {
        free(it);
        return rc == MP_ETIMEDOUT ? MP_FULL : rc;
    }

    pthread_mutex_lock(&q->mu);
    if (q->closed) {
        rc = MP_ECLOSED;
    } else if (q->nbuf == q->capbuf) {
        struct item **b = mp__array_grow(q->buf, &q->capbuf, sizeof *b, 64);
        if (b)
            q->buf = b;
        else
            rc = -ENOMEM;
    }
    if (rc == 0 && !q->feeder)
        rc = queue_start_feeder(q);
    if (rc == 0) {
        MP__ASSERT(q->nbuf < q->capbuf);
        q->buf[q->nbuf++] = it;
        /* Counted before any reader can take it, so task_done() never runs
         * ahead of the count. */
        if (q->unfinished)
            (void)mp_sem_release(q->unfinished);
        if (q->feeder_waiting)
            pthread_cond_signal(&q->cv);
    }
    pthread_mutex_unlock(&q->mu);
    if (rc < 0) {
        free(it);
        (void)mp_sem_release(q->sem);
    }
    return rc;
}

MP_API int mp_queue_put(mp_queue *q, const void *data, size_t len, double timeout)
{
    if (!q || (!data && len > 0))
        return -EINVAL;
    return queue_put(q, data, len, MP__QK_BYTES, timeout);
}

/* ---- getting, for both queue types ----------------------------------------------- */

/* A value is decoded while the item is still at the head of the queue (under
 * the read lock), so that a decode that runs out of memory leaves it there.
 * A pickle the decoder refuses is taken: no get could ever read it. */
struct decode {
    mp_obj *obj;
    int rc;
};

static int queue_decode_accept(void *ctx, const void *data, size_t len, int kind)
{
    struct decode *d = ctx;
    if (kind != MP__QK_OBJ)
        return 0;
    int rc = mp__pickle_loads(data, len, &d->obj);
    if (rc == -ENOMEM)
        return rc;
    d->rc = rc;
    return 0;
}

/* The out-parameters of a bytes get: both needed, cleared first. */
static inline int queue_bytes_out(void **data, size_t *len)
{
    if (!data || !len)
        return -EINVAL;
    *data = NULL;
    *len = 0;
    return 0;
}

/* The out-parameters of a get that may return a value: cleared first, each
 * that may be NULL; -EINVAL when one the get needs is missing. */
static int queue_get_args(void **data, size_t *len, mp_obj **obj, bool need_bytes, bool need_obj)
{
    if (data)
        *data = NULL;
    if (len)
        *len = 0;
    if (obj)
        *obj = NULL;
    if ((need_bytes && (!data || !len)) || (need_obj && !obj))
        return -EINVAL;
    return 0;
}

/* The hot path of both queues' get(): a bytes item, no value to decode.
 * places: the Queue's free places, one given back when an item is taken
 * (NULL for a SimpleQueue). */
static inline int queue_get_bytes(struct mp__qpipe *qp, mp_sem *places, void **data, size_t *len,
                                  double timeout)
{
    int rc = mp__qpipe_read(qp, MP__QK_BYTES, NULL, NULL, data, len, NULL, mp__deadline(timeout));
    if (rc == 0 && places)
        (void)mp_sem_release(places);
    return rc == MP_ETIMEDOUT ? MP_EMPTY : rc;
}

/* Take the head item of kind `want` (MP__QK_ANY: either) from qp: bytes in
 * *data and *len, or a value in *obj; places as for queue_get_bytes(), also
 * for a pickle the decoder refuses (it is taken, with MP_EPROTO). Returns
 * the item's kind as MP_QUEUE_BYTES or MP_QUEUE_OBJ, or a status. */
static int queue_take(struct mp__qpipe *qp, mp_sem *places, int want, void **data, size_t *len,
                      mp_obj **obj, double timeout)
{
    struct decode d = {NULL, 0};
    int kind = MP__QK_BYTES;
    void *bytes = NULL;
    size_t n = 0;
    int rc = mp__qpipe_read(qp, want, obj ? queue_decode_accept : NULL, &d, &bytes, &n, &kind,
                            mp__deadline(timeout));
    if (rc < 0)
        return rc == MP_ETIMEDOUT ? MP_EMPTY : rc;
    MP__ASSERT(want == MP__QK_ANY || kind == want); /* the other kind stays at the head */
    if (places)
        (void)mp_sem_release(places);
    if (kind == MP__QK_BYTES) {
        *data = bytes;
        *len = n;
        return MP_QUEUE_BYTES;
    }
    free(bytes);
    if (d.rc < 0)
        return d.rc;
    *obj = d.obj;
    return MP_QUEUE_OBJ;
}

MP_API int mp_queue_get(mp_queue *q, void **data, size_t *len, double timeout)
{
    int rc = queue_bytes_out(data, len);
    if (rc == 0)
        rc = queue_check(q, timeout);
    return rc < 0 ? rc : queue_get_bytes(&q->qp, q->sem, data, len, timeout);
}

/* Pickle obj; put it with put() as a value. */
static int queue_put_pickled(int (*put)(void *q, const void *data, size_t len, int kind,
                                        double timeout),
                             void *q, const mp_obj *obj, double timeout)
{
    if (!q || !obj)
        return -EINVAL;
    if (mp__bad_timeout(timeout))
        return MP_EVALUE;
    unsigned char *bytes;
    size_t len;
    int rc = mp__pickle_dumps(obj, &bytes, &len);
    if (rc < 0)
        return rc;
    rc = put(q, bytes, len, MP__QK_OBJ, timeout);
    free(bytes);
    return rc;
}

static int queue_put_kind(void *q, const void *data, size_t len, int kind, double timeout)
{
    return queue_put(q, data, len, kind, timeout);
}

MP_API int mp_queue_put_obj(mp_queue *q, const mp_obj *obj, double timeout)
{
    return queue_put_pickled(queue_put_kind, q, obj, timeout);
}

MP_API int mp_queue_get_obj(mp_queue *q, mp_obj **obj, double timeout)
{
    int rc = queue_get_args(NULL, NULL, obj, false, true);
    if (rc == 0)
        rc = queue_check(q, timeout);
    if (rc == 0)
        rc = queue_take(&q->qp, q->sem, MP__QK_OBJ, NULL, NULL, obj, timeout);
    return rc > 0 ? 0 : rc;
}

MP_API int mp_queue_get_item(mp_queue *q, void **data, size_t *len, mp_obj **obj, double timeout)
{
    int rc = queue_get_args(data, len, obj, true, true);
    if (rc == 0)
        rc = queue_check(q, timeout);
    return rc < 0 ? rc : queue_take(&q->qp, q->sem, MP__QK_ANY, data, len, obj, timeout);
}

MP_API ssize_t mp_queue_qsize(mp_queue *q)
{
    if (!q)
        return -EINVAL;
    int free_places = mp_sem_get_value(q->sem);
    if (free_places < 0)
        return free_places;
    /* A BoundedSemaphore never counts past maxsize. */
    MP__ASSERT((unsigned)free_places <= q->maxsize);
    return (ssize_t)(q->maxsize - (unsigned)free_places);
}

MP_API int mp_queue_empty(mp_queue *q)
{
    if (!q)
        return -EINVAL;
    return mp__qpipe_ready(&q->qp) ? 0 : 1;
}

MP_API int mp_queue_full(mp_queue *q)
{
    if (!q)
        return -EINVAL;
    return mp_sem_get_value(q->sem) == 0 ? 1 : 0;
}

MP_API int mp_queue_close(mp_queue *q)
{
    if (!q)
        return -EINVAL;
    queue_fork_fixup(q);
    pthread_mutex_lock(&q->mu);
    __atomic_store_n(&q->closed, true, __ATOMIC_RELEASE);
    if (q->feeder)
        queue_request_flush(q);
    pthread_mutex_unlock(&q->mu);
    return 0;
}

MP_API int mp_queue_join_thread(mp_queue *q)
{
    if (!q)
        return -EINVAL;
    queue_fork_fixup(q);
    if (!__atomic_load_n(&q->closed, __ATOMIC_ACQUIRE))
        return MP_ESTATE; /* Python: "Queue ... not closed" */
    queue_join_feeder(q);
    return 0;
}

MP_API int mp_queue_cancel_join_thread(mp_queue *q)
{
    if (!q)
        return -EINVAL;
    queue_fork_fixup(q);
    pthread_mutex_lock(&q->mu);
    q->joincancelled = true;
    pthread_mutex_unlock(&q->mu);
    return 0;
}

static bool queue_no_unfinished(void *arg)
{
    return mp_sem_get_value(arg) == 0;
}

MP_API int mp_queue_task_done(mp_queue *q)
{
    if (!q)
        return -EINVAL;
    if (!q->unfinished)
        return MP_ESTATE;
    int rc = mp_cond_acquire(q->cond, MP_FOREVER);
    if (rc < 0 && rc != MP_EOWNERDEAD)
        return rc;
    if (mp_sem_acquire(q->unfinished, MP_NOWAIT) != 0) {
        rc = MP_EVALUE; /* "task_done() called too many times" */
    } else {
        rc = 0;
        if (mp_sem_get_value(q->unfinished) == 0)
            (void)mp_cond_notify_all(q->cond);
    }
    (void)mp_cond_release(q->cond);
    return rc;
}

MP_API int mp_queue_join(mp_queue *q, double timeout)
{
    if (!q)
        return -EINVAL;
    if (mp__bad_timeout(timeout))
        return MP_EVALUE;
    if (!q->unfinished)
        return MP_ESTATE;
    int64_t deadline = mp__deadline(timeout);
    int rc = mp_cond_acquire(q->cond, timeout);
    if (rc == MP_ETIMEDOUT)
        return rc;
    if (rc < 0 && rc != MP_EOWNERDEAD)
        return rc;
    rc = mp_cond_wait_for(q->cond, queue_no_unfinished, q->unfinished, mp__deadline_left(deadline));
    (void)mp_cond_release(q->cond);
    return rc == MP_EOWNERDEAD ? 0 : rc;
}

MP_API void mp_queue_free(mp_queue *q)
{
    if (!q)
        return;
    queue_fork_fixup(q);
    pthread_mutex_lock(&q->mu);
    q->closed = true;
    if (q->feeder)
        queue_request_flush(q); /* free always flushes: the feeder uses q */
    int hooks[2] = {q->hook_flush, q->hook_join};
    q->hook_flush = q->hook_join = 0;
    pthread_mutex_unlock(&q->mu);
    for (int i = 0; i < 2; i++)
        if (hooks[i])
            mp__exit_hook_remove(hooks[i]);
    queue_join_feeder(q);
    queue_free_items(q->buf, q->nbuf);
    free(q->buf);
    mp__qpipe_close_fds(&q->qp);
    if (mp__shm_owned(q->qp.sh)) {
        mp__qpipe_destroy(&q->qp);
        mp_sem_free(q->sem);
        mp_sem_free(q->unfinished);
        mp_cond_free(q->cond);
    }
    pthread_cond_destroy(&q->cv);
    pthread_mutex_destroy(&q->mu);
    free(q);
}

/* ---- handing a queue to a child (process/passobj.c) ------------------------------ */

int mp__queue_parts(mp_queue *q, struct mp__parts *out)
{
    queue_fork_fixup(q);
    if (__atomic_load_n(&q->closed, __ATOMIC_ACQUIRE) || q->qp.rfd < 0)
        return MP_ECLOSED;
    *out = (struct mp__parts){.nblk = 1, .nfds = 4, .extra = q->maxsize};
    out->blk[0] = q->qp.sh;
    out->size[0] = sizeof *q->qp.sh + q->qp.sh->cap;
    void *sync[3] = {q->sem, q->unfinished, q->cond};
    enum mp__part_kind kinds[3] = {MP__PART_SEM, MP__PART_SEM, MP__PART_COND};
    for (int i = 0; i < (q->cond ? 3 : 1); i++) {
        struct mp__parts one;
        int rc = mp__sync_parts(kinds[i], sync[i], &one);
        if (rc < 0)
            return rc;
        out->blk[out->nblk] = one.blk[0];
        out->size[out->nblk++] = one.size[0];
    }
    int fds[4] = {q->qp.rfd, q->qp.wfd, q->qp.spill_fd, q->qp.held_fd};
    memcpy(out->fds, fds, sizeof fds);
    return 0;
}

/* Check the blocks a child received: the stream's size agrees with its
 * ring, the others are the semaphores and condition they claim to be. */
static int queue_check_parts(const struct mp__parts *in, void *sync[3])
{
    const struct mp__qpipe_shared *sh = in->blk[0];
    if ((in->nblk != 2 && in->nblk != 4) || in->nfds != 4 || in->extra <= 0 ||
        in->extra > SEM_VALUE_MAX || in->size[0] < sizeof *sh ||
        sh->cap != in->size[0] - sizeof *sh)
        return MP_EVALUE;
    enum mp__part_kind kinds[3] = {MP__PART_SEM, MP__PART_SEM, MP__PART_COND};
    for (size_t i = 1; i < in->nblk; i++) {
        struct mp__parts one = {.blk = {in->blk[i]}, .size = {in->size[i]}, .nblk = 1};
        int rc = mp__sync_from_parts(kinds[i - 1], &one, &sync[i - 1]);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* A passed queue's stream (mp__parts: its shared block and the descriptors
 * rfd, wfd, spill, held, in that order), seeded as mp__qpipe_open seeds a
 * new one: a valid header of this queue. */
static void queue_qpipe_adopt(struct mp__qpipe *qp, const struct mp__parts *in)
{
    qp->sh = in->blk[0];
    qp->rfd = in->fds[0];
    qp->wfd = in->fds[1];
    qp->spill_fd = in->fds[2];
    qp->held_fd = in->fds[3];
    qp->pipe_cap = mp__pipe_capacity(qp->wfd);
    mp__qpipe_header(qp, MP__QF_HINT, 0, qp->wlast);
    memcpy(qp->rlast, qp->wlast, sizeof qp->rlast);
}

int mp__queue_from_parts(const struct mp__parts *in, mp_queue **out)
{
    *out = NULL;
    void *sync[3] = {NULL, NULL, NULL};
    int rc = queue_check_parts(in, sync);
    if (rc < 0)
        return rc;
    mp_queue *q = calloc(1, sizeof *q);
    if (!q)
        return -ENOMEM;
    if ((rc = queue_local_init(q)) < 0) {
        free(q);
        return rc;
    }
    queue_qpipe_adopt(&q->qp, in);
    q->sem = sync[0];
    q->unfinished = sync[1];
    q->cond = sync[2];
    q->maxsize = (unsigned)in->extra;
    q->gen = mp__forkgen();
    *out = q;
    return 0;
}

/* ---- SimpleQueue ---------------------------------------------------------------- */

static int simplequeue_make(mp_simplequeue **out, size_t max_item)
{
    mp_simplequeue *q = calloc(1, sizeof *q);
    if (!q)
        return -ENOMEM;
    int rc = mp__qpipe_open(&q->qp, max_item);
    if (rc < 0) {
        free(q);
        return rc;
    }
    *out = q;
    return 0;
}

MP_API int mp_simplequeue_new(mp_simplequeue **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    return simplequeue_make(out, MP_QUEUE_MAX_ITEM_DEFAULT);
}

MP_API int mp_simplequeue_new_opts(mp_simplequeue **out, const mp_queue_opts *opts)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (opts && (opts->maxsize || opts->joinable))
        return -EINVAL; /* Python's SimpleQueue has neither */
    size_t max_item;
    int rc = queue_max_item_of(opts, &max_item);
    if (rc < 0)
        return rc;
    return simplequeue_make(out, max_item);
}

/* What every put and get checks first, in Python's order. */
static inline int simplequeue_check(mp_simplequeue *q, double timeout)
{
    if (!q)
        return -EINVAL;
    if (mp__bad_timeout(timeout))
        return MP_EVALUE;
    if (q->closed)
        return MP_ECLOSED;
    return 0;
}

static int simplequeue_put(void *arg, const void *data, size_t len, int kind, double timeout)
{
    mp_simplequeue *q = arg;
    int rc = simplequeue_check(q, timeout);
    if (rc < 0)
        return rc;
    if (len > mp__qpipe_max_item(&q->qp))
        return MP_ETOOLONG;
    struct mp__qitem item = {data, len, kind};
    size_t written;
    /* This process's read end is open (close() refuses puts first), so the
     * pipe has a reader and no SIGPIPE can come: skip the signal-mask dance. */
    rc = mp__qpipe_write(&q->qp, &item, 1, mp__deadline(timeout), NULL, NULL, &written, true);
    return rc == MP_ETIMEDOUT ? MP_FULL : rc;
}

MP_API int mp_simplequeue_put(mp_simplequeue *q, const void *data, size_t len, double timeout)
{
    if (!q || (!data && len > 0))
        return -EINVAL;
    return simplequeue_put(q, data, len, MP__QK_BYTES, timeout);
}

MP_API int mp_simplequeue_get(mp_simplequeue *q, void **data, size_t *len, double timeout)
{
    int rc = queue_bytes_out(data, len);
    if (rc == 0)
        rc = simplequeue_check(q, timeout);
    return rc < 0 ? rc : queue_get_bytes(&q->qp, NULL, data, len, timeout);
}

MP_API int mp_simplequeue_put_obj(mp_simplequeue *q, const mp_obj *obj, double timeout)
{
    return queue_put_pickled(simplequeue_put, q, obj, timeout);
}

MP_API int mp_simplequeue_get_obj(mp_simplequeue *q, mp_obj **obj, double timeout)
{
    int rc = queue_get_args(NULL, NULL, obj, false, true);
    if (rc == 0)
        rc = simplequeue_check(q, timeout);
    if (rc == 0)
        rc = queue_take(&q->qp, NULL, MP__QK_OBJ, NULL, NULL, obj, timeout);
    return rc > 0 ? 0 : rc;
}

MP_API int mp_simplequeue_get_item(mp_simplequeue *q, void **data, size_t *len, mp_obj **obj,
                                   double timeout)
{
    int rc = queue_get_args(data, len, obj, true, true);
    if (rc == 0)
        rc = simplequeue_check(q, timeout);
    return rc < 0 ? rc : queue_take(&q->qp, NULL, MP__QK_ANY, data, len, obj, timeout);
}

MP_API int mp_simplequeue_empty(mp_simplequeue *q)
{
    if (!q)
        return -EINVAL;
    if (q->closed)
        return MP_ECLOSED;
    return mp__qpipe_ready(&q->qp) ? 0 : 1;
}

MP_API int mp_simplequeue_close(mp_simplequeue *q)
{
    if (!q)
        return -EINVAL;
    q->closed = true;
    mp__qpipe_close_fds(&q->qp);
    return 0;
}

MP_API void mp_simplequeue_free(mp_simplequeue *q)
{
    if (!q)
        return;
    mp__qpipe_close_fds(&q->qp);
    if (mp__shm_owned(q->qp.sh))
        mp__qpipe_destroy(&q->qp);
    free(q);
}

/* A SimpleQueue for a forkserver or spawn child: its stream and its four
 * descriptors, as a Queue's without the semaphores (Python pickles a
 * SimpleQueue with its pipe and locks, which here live in the stream). */
int mp__simplequeue_parts(mp_simplequeue *q, struct mp__parts *out)
{
    if (q->closed || q->qp.rfd < 0)
        return MP_ECLOSED;
    *out = (struct mp__parts){.nblk = 1, .nfds = 4};
    out->blk[0] = q->qp.sh;
    out->size[0] = sizeof *q->qp.sh + q->qp.sh->cap;
    int fds[4] = {q->qp.rfd, q->qp.wfd, q->qp.spill_fd, q->qp.held_fd};
    memcpy(out->fds, fds, sizeof fds);
    return 0;
}

int mp__simplequeue_from_parts(const struct mp__parts *in, mp_simplequeue **out)
{
    *out = NULL;
    const struct mp__qpipe_shared *sh = in->blk[0];
    if (in->nblk != 1 || in->nfds != 4 || in->extra != 0 || in->size[0] < sizeof *sh ||
        sh->cap != in->size[0] - sizeof *sh)
        return MP_EVALUE;
    mp_simplequeue *q = calloc(1, sizeof *q);
    if (!q)
        return -ENOMEM;
    queue_qpipe_adopt(&q->qp, in);
    *out = q;
    return 0;
}

/* ---- for tests ------------------------------------------------------------------------ */

struct mp__qpipe *mp__queue_qpipe(struct mp_queue *q)
{
    return &q->qp;
}

struct mp__qpipe *mp__simplequeue_qpipe(struct mp_simplequeue *q)
{
    return &q->qp;
}
