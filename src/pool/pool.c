/*
 * pool - Python's multiprocessing.Pool for fork (see pool.h for the
 * contract and the design in brief).
 *
 * Parts and who touches what:
 *
 *   job (struct mp_result)  one call: apply, map, imap... Refcounted: the
 *                           caller's handle, the pool's cache (until the job
 *                           is finished) and every chunk in flight or queued
 *                           for a retry each hold a reference. Its outcome is
 *                           guarded by the job's own mutex, so it outlives
 *                           the pool.
 *   pool->mu                guards everything else in the pool: the state,
 *                           the cache of unfinished jobs, the pending queue
 *                           of jobs with chunks still to send, the retry
 *                           queue, and each worker's in-flight FIFO.
 *   fork server             a child forked by mp_pool_new before the threads
 *                           start; single-threaded, it forks, signals and
 *                           reaps the workers on request and reports each
 *                           spawn and death (struct zmsg). Workers connect
 *                           back through the pool's private listener and
 *                           say which slot and spawn they are (struct hello).
 *   dispatcher thread       the only sender of tasks, and the only one that
 *                           asks for workers or frees a dead worker's
 *                           connection.
 *   result thread           the only receiver: reads results, accepts
 *                           workers, reads the fork server's news, handles
 *                           deaths (marks a worker W_DEAD; the dispatcher
 *                           then frees it and asks for a replacement),
 *                           fails everything on terminate, runs every
 *                           callback.
 *   shared slots            one small record per worker in MAP_SHARED
 *                           memory: whether the worker got through its
 *                           initializer, and which chunk and item it is
 *                           running. After a death it tells the parent which
 *                           in-flight chunk to blame; the others were never
 *                           started and are retried elsewhere.
 *
 * Lock order: pool->mu before a job's mu. User code (callbacks) runs with
 * no lock held.
 *
 * Wire (private, native byte order: both ends are the same program):
 *   parent -> worker: one message per batch, holding one or more
 *     [wire_task][payload padded to 16 bytes]; payload is the chunk's input
 *     items (array form: raw items; bytes and value forms: [u64 len][bytes]
 *     per item, values as pickles).
 *   worker -> parent: one message per chunk: [wire_result][outputs][fails];
 *     outputs are raw items (array form) or [u64 len][bytes] per item with
 *     len = UINT64_MAX for a failed item; each fail is [wire_fail][message].
 */
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS (POSIX.1-2024; every Unix has it) */

#include "codec/pickle.h"
#include "core/internal.h"
#include "core/io.h"
#include "core/shm.h"

#include <mpipc/conn.h>
#include <mpipc/listener.h>
#include <mpipc/pool.h>
#include <mpipc/process.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* At most this many chunks in flight per worker (its FIFO's size). */
#define WINDOW_MAX 64
/* A worker is given about this much work (by its measured speed) ahead. */
#define WINDOW_TARGET_NS INT64_C(2000000)
/* Bytes of task payload in flight per worker beyond its first chunk: small
 * enough that a send never waits for a busy worker's socket to drain. */
#define INFLIGHT_BYTES_MAX ((size_t)64 * 1024)
/* The largest array item. */
#define ITEM_MAX ((size_t)1 << 20)
/* A worker that has seen no task for this long checks that its parent is
 * still there (it exits when it has been orphaned). */
#define WORKER_IDLE_CHECK 1.0
/* terminate(): SIGTERM first, SIGKILL this long after. */
#define KILL_GRACE_NS INT64_C(2000000000)
/* A worker whose socket reached end of file but that has not exited after
 * this long is killed. */
#define EOF_GRACE_NS INT64_C(2000000000)

enum pool_state { P_RUN, P_CLOSE, P_TERMINATE };
enum worker_state { W_NONE, W_SPAWNING, W_LIVE, W_DEAD };
/* Messages between the pool and its fork server (struct zmsg). */
enum zop { Z_SPAWN = 1, Z_KILL, Z_EXIT, Z_SPAWNED, Z_SPAWN_FAILED, Z_DIED };
enum kind { K_APPLY, K_MAP, K_IMAP, K_IMAPU };
enum form { F_BYTES = 1, F_ARRAY, F_OBJ_APPLY, F_OBJ_MAP, F_OBJ_STAR };
enum msg { MSG_TASK = 1, MSG_EXIT = 2 };
enum item_state { I_PENDING, I_OK, I_FAIL, I_TAKEN };

struct wire_task {
    uint32_t kind;
    uint32_t form;
    uint64_t fn;
    uint32_t seq;
    uint32_t count;
    uint32_t in_size;
    uint32_t out_size;
    uint64_t len;
    uint64_t first;
};

struct wire_result {
    uint32_t seq;
    uint32_t count;
    uint32_t nfail;
    uint32_t pad;
    uint64_t exec_ns;
    uint64_t out_len;
};

/* pool <-> fork server, one message each. */
struct zmsg {
    uint32_t op;
    uint32_t idx; /* the worker slot */
    uint32_t k;   /* which spawn of that slot: PoolWorker-<k> */
    int32_t pid;
    int32_t arg; /* Z_KILL: the signal; Z_SPAWN_FAILED: the status;
                  * Z_DIED: the exit code, or a status < -1000... */
    int32_t rc;  /* Z_DIED: 0, or the status that hid the exit code */
};

/* worker -> pool, the first message on a worker's connection. */
struct hello {
    uint32_t idx;
    uint32_t k;
    int32_t pid;
    int32_t pad;
};

struct wire_fail {
    uint32_t item;
    int32_t status;
    int32_t code;
    uint32_t msg_len;
};

#define FAILED_LEN UINT64_MAX

struct fail {
    size_t index;
    int status;
    int code;
    char msg[MP_TASK_MSG_MAX];
};

/* A job. The public mp_result is exactly this; mp_imap wraps one. */
struct mp_result {
    int refs; /* atomic */
    unsigned gen;
    mp_pool *pool; /* valid while the job is unfinished (mu) */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int kind, form;
    uint64_t fn;
    size_t n, chunksize, nchunks;
    /* inputs (immutable after submit) */
    const unsigned char *in; /* array form: the caller's */
    size_t in_size;
    unsigned char *out; /* array form: the caller's */
    size_t out_size;
    unsigned char *blob; /* bytes/value forms: [u64 len][bytes] per item */
    size_t *offs;        /* n + 1 offsets into blob */
    mp_callbacks cbs;
    /* dispatch, guarded by pool->mu */
    size_t next_chunk;
    struct mp_result *pnext;         /* pending queue */
    struct mp_result *cprev, *cnext; /* cache */
    bool in_cache, in_pending;
    bool cancelled; /* no more chunks to send (the caller gave up) */
    /* outcome, guarded by mu */
    bool abandoned; /* write nothing more into the caller's arrays */
    size_t chunks_done;
    bool finished;
    bool ready;
    bool in_cb;
    pthread_t cb_thread;
    int status;
    struct fail first;  /* the lowest-index failure (apply/map) */
    struct fail *fails; /* imap: every failure */
    size_t nfails, capfails;
    size_t *fidx;      /* imap: item -> index into fails */
    unsigned char *st; /* imap: enum item_state per item */
    size_t *order;     /* imap_unordered: completion order */
    size_t norder;
    size_t cursor;
    mp_obj **vals; /* value forms: one result per item */
    /* Storage for one-item jobs (apply), saving two allocations each. */
    mp_obj *vals_one[1];
    size_t offs_one[2];
    mp_obj *value; /* apply: the value; map: the list */
    void *bytes_out;
    size_t bytes_len;
};

struct mp_imap {
    struct mp_result job;
};

struct flight {
    struct mp_result *job;
    size_t chunk;
    size_t bytes;
    uint32_t seq;
};

struct retry {
    struct mp_result *job;
    size_t chunk;
    struct retry *next;
};

/* Shared with the worker through MAP_SHARED memory. */
struct slot {
    uint32_t ready;   /* 1 once the initializer returned */
    uint32_t running; /* seq + 1 of the chunk being run, 0 between chunks */
    uint32_t item;    /* the item of that chunk being run */
    uint32_t pad;
};

struct worker {
    mp_pool *pool;
    int idx;
    int state;
    mp_conn *conn; /* to the worker, accepted from the pool's listener */
    uint32_t k;    /* the spawn this slot holds: PoolWorker-<k> */
    char name[32];
    pid_t pid;
    uint32_t next_seq;
    struct flight fifo[WINDOW_MAX];
    unsigned head, count;
    size_t inflight_bytes;
    unsigned long sent;
    bool exit_sent;
    bool eof;
    int64_t eof_deadline;
    bool term_sent;
    int64_t kill_at;
};

struct mp_pool {
    pthread_mutex_t mu;
    pthread_cond_t disp_cv; /* the dispatcher waits here */
    pthread_cond_t done_cv; /* join and terminate wait here */
    unsigned gen;
    pid_t owner;
    int nproc;
    int maxtasks;
    void (*init)(void *);
    void *initarg;
    int state;
    struct worker *w;
    struct slot *slots;
    struct mp_result *pend_head, *pend_tail;
    struct retry *retry_head; /* chunks to send again, first */
    struct mp_result *cache;
    size_t ncache;
    int64_t ewma_ns;
    int notify[2];
    bool notify_pending;
    pthread_t disp_th, res_th;
    bool threads;
    bool disp_waiting;
    /* Batching the dispatcher's wake-ups (Nagle's idea): pend_chunks counts
     * the chunks waiting to be sent; a submission wakes the sleeping
     * dispatcher only once they reach disp_wake_chunks, which it sets
     * before sleeping: 1 if some worker is nearly idle, half a window if
     * one has room for a batch, never if all windows are full (a result
     * that opens room wakes it then). */
    size_t pend_chunks;
    size_t disp_wake_chunks;
    bool disp_done, res_done, term_done, joined;
    int hook;
    mp_process *zygote; /* the fork server */
    mp_conn *zctl;      /* the pool's end to it */
    mp_conn *zctl_child;
    mp_listener *lis; /* where workers connect back */
    char *lis_addr;
    unsigned char authkey[32];
    uint32_t next_k;
    int spawn_error; /* the last failed spawn's status */
    bool broken;     /* the fork server died */
    unsigned startup_fails;
    unsigned rr; /* the dispatcher's round-robin start */
    int64_t spawn_after;
    unsigned char *batch;
    size_t batch_cap;
    unsigned char *rbuf;
    size_t rbuf_cap;
};

static pthread_condattr_t mono_attr;
static pthread_once_t mono_once = PTHREAD_ONCE_INIT;

static void mono_setup(void)
{
    (void)pthread_condattr_init(&mono_attr);
    (void)pthread_condattr_setclock(&mono_attr, CLOCK_MONOTONIC);
}

static int cond_init(pthread_cond_t *cv)
{
    (void)pthread_once(&mono_once, mono_setup);
    return pthread_cond_init(cv, &mono_attr) == 0 ? 0 : -ENOMEM;
}

/* Wait on cv until the deadline. Returns false once it has passed. */
static bool cond_wait_until(pthread_cond_t *cv, pthread_mutex_t *mu, int64_t deadline)
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

static size_t pad16(size_t n)
{
    return (n + 15) & ~(size_t)15;
}

static int grow(unsigned char **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t ncap = *cap ? *cap : 4096;
    while (ncap < need) {
        if (ncap > SIZE_MAX / 2)
            return -ENOMEM;
        ncap *= 2;
    }
    unsigned char *p = realloc(*buf, ncap);
    if (!p)
        return -ENOMEM;
    *buf = p;
    *cap = ncap;
    return 0;
}

/* ---- the task's failure message (worker side) ---------------------------- */

static _Thread_local char task_msg[MP_TASK_MSG_MAX];
static _Thread_local bool task_msg_set;

MP_API int mp_task_fail(int code, const char *fmt, ...)
{
    if (code == 0)
        code = -1;
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        (void)vsnprintf(task_msg, sizeof task_msg, fmt, ap);
        va_end(ap);
        task_msg_set = true;
    }
    return code;
}

/* ---- jobs ------------------------------------------------------------------ */

static int job_check(const struct mp_result *j)
{
    if (!j)
        return -EINVAL;
    return j->gen == mp__forkgen() ? 0 : MP_EFORKED;
}

static void job_ref(struct mp_result *j)
{
    __atomic_add_fetch(&j->refs, 1, __ATOMIC_RELAXED);
}

static void job_unref(struct mp_result *j)
{
    if (__atomic_sub_fetch(&j->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    free(j->blob);
    if (j->offs != j->offs_one)
        free(j->offs);
    if (j->vals) {
        for (size_t i = 0; i < j->n; i++)
            mp_obj_free(j->vals[i]);
        if (j->vals != j->vals_one)
            free(j->vals);
    }
    mp_obj_free(j->value);
    free(j->bytes_out);
    free(j->fails);
    free(j->fidx);
    free(j->st);
    free(j->order);
    pthread_mutex_destroy(&j->mu);
    pthread_cond_destroy(&j->cv);
    free(j);
}

static struct mp_result *job_new(mp_pool *p, int kind, int form, uint64_t fn, size_t n)
{
    size_t size =
        kind == K_IMAP || kind == K_IMAPU ? sizeof(struct mp_imap) : sizeof(struct mp_result);
    struct mp_result *j = calloc(1, size);
    if (!j)
        return NULL;
    if (pthread_mutex_init(&j->mu, NULL) != 0) {
        free(j);
        return NULL;
    }
    if (cond_init(&j->cv) < 0) {
        pthread_mutex_destroy(&j->mu);
        free(j);
        return NULL;
    }
    j->refs = 1;
    j->gen = p->gen;
    j->pool = p;
    j->kind = kind;
    j->form = form;
    j->fn = fn;
    j->n = n;
    return j;
}

/* The bookkeeping every job needs once its size and chunksize are known. */
static int job_prepare(struct mp_result *j, size_t chunksize)
{
    if (j->n == 0) {
        j->chunksize = 0;
        j->nchunks = 0;
    } else {
        if (chunksize > j->n)
            chunksize = j->n;
        if (chunksize > UINT32_MAX)
            chunksize = UINT32_MAX;
        j->chunksize = chunksize;
        j->nchunks = j->n / chunksize + (j->n % chunksize != 0);
    }
    if (j->kind == K_IMAP || j->kind == K_IMAPU) {
        j->st = calloc(j->n ? j->n : 1, 1);
        if (!j->st)
            return -ENOMEM;
        if (j->kind == K_IMAPU) {
            j->order = malloc((j->n ? j->n : 1) * sizeof *j->order);
            if (!j->order)
                return -ENOMEM;
        }
    }
    if (j->form == F_OBJ_APPLY || j->form == F_OBJ_MAP || j->form == F_OBJ_STAR) {
        j->vals = j->n <= 1 ? j->vals_one : calloc(j->n, sizeof *j->vals);
        if (!j->vals)
            return -ENOMEM;
    }
    return 0;
}

static void chunk_range(const struct mp_result *j, size_t chunk, size_t *start, size_t *count)
{
    *start = chunk * j->chunksize;
    size_t left = j->n - *start;
    *count = left < j->chunksize ? left : j->chunksize;
}

static size_t chunk_payload(const struct mp_result *j, size_t start, size_t count)
{
    if (j->form == F_ARRAY)
        return count * j->in_size;
    return j->offs[start + count] - j->offs[start];
}

static void set_fail(struct fail *f, size_t index, int status, int code, const char *msg)
{
    f->index = index;
    f->status = status;
    f->code = code;
    snprintf(f->msg, sizeof f->msg, "%s", msg);
}

/* Record that item `index` failed (j->mu held). */
static void job_record_fail(struct mp_result *j, size_t index, int status, int code,
                            const char *msg)
{
    if (j->kind == K_IMAP || j->kind == K_IMAPU) {
        if (!j->fidx) {
            j->fidx = calloc(j->n, sizeof *j->fidx);
            if (!j->fidx)
                return; /* the item still reads as failed, with a bare message */
        }
        if (j->nfails == j->capfails) {
            size_t ncap = j->capfails ? 2 * j->capfails : 4;
            struct fail *nf = realloc(j->fails, ncap * sizeof *nf);
            if (!nf)
                return;
            j->fails = nf;
            j->capfails = ncap;
        }
        set_fail(&j->fails[j->nfails], index, status, code, msg);
        j->fidx[index] = j->nfails++;
        return;
    }
    if (j->status == 0 || index < j->first.index) {
        j->status = status;
        set_fail(&j->first, index, status, code, msg);
    }
}

/* An item is done (j->mu held): mark it for imap and wake a waiting next(). */
static void job_item_done(struct mp_result *j, size_t index, bool ok)
{
    if (j->st) {
        j->st[index] = ok ? I_OK : I_FAIL;
        if (j->order)
            j->order[j->norder++] = index;
    }
}

static void pool_wake_dispatcher_locked(mp_pool *p)
{
    if (p->disp_waiting)
        pthread_cond_signal(&p->disp_cv);
}

/*
 * Finish a job: every chunk is done (or the pool was terminated: term).
 * Runs its callback, makes it ready, takes it out of the cache and drops
 * the cache's reference. Called with no lock held, at most once per job.
 */
static void job_finish(mp_pool *p, struct mp_result *j, bool term)
{
    pthread_mutex_lock(&j->mu);
    if (j->finished) {
        pthread_mutex_unlock(&j->mu);
        return;
    }
    j->finished = true;
    j->pool = NULL; /* j->mu guards it; nothing calls into the pool for j now */
    if (term) {
        j->status = MP_ETERMINATED;
        set_fail(&j->first, 0, MP_ETERMINATED, MP_ETERMINATED,
                 "pool was terminated before the task finished");
    }
    if (j->status == 0 && j->kind == K_MAP && j->vals) {
        /* Build the list of results in input order. */
        mp_obj *list = mp_obj_list_new();
        for (size_t i = 0; list && i < j->n; i++) {
            mp_obj *v = j->vals[i] ? j->vals[i] : mp_obj_none();
            if (!v || mp_obj_list_append(list, v) < 0) {
                if (v != j->vals[i])
                    mp_obj_free(v);
                mp_obj_free(list);
                list = NULL;
                break;
            }
            j->vals[i] = NULL;
        }
        if (list) {
            j->value = list;
        } else {
            j->status = -ENOMEM;
            set_fail(&j->first, 0, -ENOMEM, -ENOMEM, "out of memory building the result list");
        }
    } else if (j->status == 0 && j->kind == K_APPLY && j->vals) {
        j->value = j->vals[0] ? j->vals[0] : mp_obj_none();
        j->vals[0] = NULL;
    }
    mp_result_cb cb = j->status == 0 ? j->cbs.callback : j->cbs.error_callback;
    if (cb) {
        j->in_cb = true;
        j->cb_thread = pthread_self();
        pthread_mutex_unlock(&j->mu);
        cb(j, j->cbs.user);
        pthread_mutex_lock(&j->mu);
        j->in_cb = false;
    }
    j->ready = true;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);

    pthread_mutex_lock(&p->mu);
    bool was_cached = j->in_cache;
    if (j->in_cache) {
        if (j->cprev)
            j->cprev->cnext = j->cnext;
        else
            p->cache = j->cnext;
        if (j->cnext)
            j->cnext->cprev = j->cprev;
        j->in_cache = false;
        if (--p->ncache == 0)
            pool_wake_dispatcher_locked(p);
    }
    pthread_mutex_unlock(&p->mu);
    if (was_cached)
        job_unref(j);
}

/* k more chunks of j are done (delivered, failed or cancelled). */
static void job_chunks_done(mp_pool *p, struct mp_result *j, size_t k)
{
    pthread_mutex_lock(&j->mu);
    j->chunks_done += k;
    bool done = j->chunks_done >= j->nchunks && !j->finished;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
    if (done)
        job_finish(p, j, false);
}

/* Fail every item of one chunk with the same error. */
static void job_fail_chunk(mp_pool *p, struct mp_result *j, size_t chunk, int status, int code,
                           size_t at, const char *msg)
{
    size_t start, count;
    chunk_range(j, chunk, &start, &count);
    at = count ? at % count : 0;
    pthread_mutex_lock(&j->mu);
    if (!j->finished && !j->abandoned) {
        if (j->st) {
            /* imap: every item of the chunk is lost with it. */
            for (size_t i = 0; i < count; i++) {
                job_record_fail(j, start + i, status, code, msg);
                job_item_done(j, start + i, false);
            }
        } else {
            /* apply/map: the call fails with the item that was running. */
            job_record_fail(j, start + at, status, code, msg);
        }
    }
    pthread_mutex_unlock(&j->mu);
    job_chunks_done(p, j, 1);
}

/* ---- receiving results (result thread) ------------------------------------ */

static int64_t pool_window(const mp_pool *p)
{
    int64_t t = p->ewma_ns > 0 ? p->ewma_ns : 1;
    int64_t win = WINDOW_TARGET_NS / t;
    if (win < 1)
        win = 1;
    if (win > WINDOW_MAX)
        win = WINDOW_MAX;
    return win;
}

/* Below this many chunks in flight a worker is about to run dry. */
static unsigned pool_low(const mp_pool *p)
{
    unsigned low = (unsigned)pool_window(p) / 8;
    return low ? low : 1;
}

/*
 * Worker w has less in flight than before (a result came back, or it has
 * just started): lower the dispatcher's wake-up threshold to match, and
 * wake it if the work already waiting reaches it (p->mu held). Without
 * this a dispatcher that went to sleep while every worker was busy would
 * sleep on after they ran dry.
 */
static void note_room_locked(mp_pool *p, const struct worker *w)
{
    unsigned half = (unsigned)pool_window(p) / 2, low = pool_low(p);
    size_t want = w->count < low ? 1 : w->count <= half ? (half ? half : 1) : SIZE_MAX;
    if (want < p->disp_wake_chunks)
        p->disp_wake_chunks = want;
    if (p->disp_waiting && p->pend_chunks > 0 && p->pend_chunks >= p->disp_wake_chunks) {
        p->disp_wake_chunks = SIZE_MAX;
        pthread_cond_signal(&p->disp_cv);
    }
}

static int rd_u64(const unsigned char **p, const unsigned char *end, uint64_t *v)
{
    if ((size_t)(end - *p) < sizeof *v)
        return MP_EPROTO;
    memcpy(v, *p, sizeof *v);
    *p += sizeof *v;
    return 0;
}

/*
 * Deliver one chunk's result message into its job. Decoding (unpickling)
 * happens before the job's lock is taken; copying into the caller's array
 * happens under it, so that an abandoned job is never written to.
 */
static void deliver(mp_pool *p, struct mp_result *j, size_t chunk, const struct wire_result *h,
                    const unsigned char *body, size_t body_len)
{
    size_t start, count;
    chunk_range(j, chunk, &start, &count);
    const unsigned char *end = body + body_len;
    if (h->count != count || h->out_len > body_len) {
        job_fail_chunk(p, j, chunk, MP_EPROTO, MP_EPROTO, 0, "malformed result from a worker");
        return;
    }
    const unsigned char *outs = body;
    const unsigned char *fp = body + h->out_len;

    /* Value and bytes forms: decode each item first. */
    mp_obj *stack_vals[16];
    mp_obj **vals = NULL;
    int decode_rc = 0;
    if (j->vals) {
        vals = count <= 16 ? stack_vals : calloc(count, sizeof *vals);
        if (!vals) {
            job_fail_chunk(p, j, chunk, -ENOMEM, -ENOMEM, 0, "out of memory decoding a result");
            return;
        }
        const unsigned char *q = outs;
        for (size_t i = 0; i < count; i++) {
            vals[i] = NULL;
            uint64_t len;
            if (decode_rc == 0 && rd_u64(&q, outs + h->out_len, &len) < 0)
                decode_rc = MP_EPROTO;
            if (decode_rc < 0 || len == FAILED_LEN)
                continue;
            if (len > (uint64_t)(outs + h->out_len - q)) {
                decode_rc = MP_EPROTO;
                continue;
            }
            int rc = mp__pickle_loads(q, (size_t)len, &vals[i]);
            if (rc < 0)
                decode_rc = rc;
            q += len;
        }
    }

    pthread_mutex_lock(&j->mu);
    bool live = !j->finished && !j->abandoned;
    /* Failures first, so the output loop can skip failed items. */
    unsigned char failed_small[64];
    unsigned char *failed = count <= sizeof failed_small ? failed_small : calloc(count, 1);
    if (failed)
        memset(failed, 0, count);
    for (uint32_t k = 0; k < h->nfail; k++) {
        struct wire_fail wf;
        if ((size_t)(end - fp) < sizeof wf)
            break;
        memcpy(&wf, fp, sizeof wf);
        fp += sizeof wf;
        size_t mlen = wf.msg_len;
        if (mlen > (size_t)(end - fp) || wf.item >= count)
            break;
        char msg[MP_TASK_MSG_MAX];
        size_t keep = mlen < sizeof msg - 1 ? mlen : sizeof msg - 1;
        memcpy(msg, fp, keep);
        msg[keep] = '\0';
        fp += mlen;
        if (failed)
            failed[wf.item] = 1;
        if (live) {
            job_record_fail(j, start + wf.item, wf.status, wf.code, msg);
            job_item_done(j, start + wf.item, false);
        }
    }
    if (live) {
        if (j->form == F_ARRAY) {
            unsigned char *dst = j->out + start * j->out_size;
            if (h->out_len != count * j->out_size) {
                job_record_fail(j, start, MP_EPROTO, MP_EPROTO, "malformed result from a worker");
            } else {
                /* Copy runs of successful items around the failed ones. */
                size_t i = 0;
                while (i < count) {
                    if (failed && failed[i]) {
                        i++;
                        continue;
                    }
                    size_t k = i;
                    while (k < count && !(failed && failed[k]))
                        k++;
                    memcpy(dst + i * j->out_size, outs + i * j->out_size, (k - i) * j->out_size);
                    for (size_t m = i; m < k; m++)
                        job_item_done(j, start + m, true);
                    i = k;
                }
            }
        } else if (j->form == F_BYTES) {
            const unsigned char *q = outs;
            uint64_t len;
            if (!(failed && failed[0])) {
                if (rd_u64(&q, outs + h->out_len, &len) < 0 || len == FAILED_LEN ||
                    len > (uint64_t)(outs + h->out_len - q)) {
                    job_record_fail(j, start, MP_EPROTO, MP_EPROTO,
                                    "malformed result from a worker");
                } else {
                    j->bytes_out = malloc(len ? (size_t)len : 1);
                    if (!j->bytes_out) {
                        job_record_fail(j, start, -ENOMEM, -ENOMEM, "out of memory");
                    } else {
                        memcpy(j->bytes_out, q, (size_t)len);
                        j->bytes_len = (size_t)len;
                        job_item_done(j, start, true);
                    }
                }
            }
        } else {
            for (size_t i = 0; i < count; i++) {
                if (failed && failed[i])
                    continue;
                if (!vals[i]) {
                    int rc = decode_rc < 0 ? decode_rc : MP_EPROTO;
                    job_record_fail(j, start + i, rc, rc, "cannot decode the task's result");
                    job_item_done(j, start + i, false);
                    continue;
                }
                j->vals[start + i] = vals[i];
                vals[i] = NULL;
                job_item_done(j, start + i, true);
            }
        }
    }
    pthread_mutex_unlock(&j->mu);
    if (failed && failed != failed_small)
        free(failed);
    if (vals) {
        for (size_t i = 0; i < count; i++)
            mp_obj_free(vals[i]);
        if (vals != stack_vals)
            free(vals);
    }
    job_chunks_done(p, j, 1);
}

static void notify_result_thread_locked(mp_pool *p)
{
    if (p->notify_pending)
        return;
    p->notify_pending = true;
    char b = 1;
    struct iovec iov = {.iov_base = &b, .iov_len = 1};
    (void)mp__write_all(p->notify[1], &iov, 1, false, false);
}

/* One result message from worker w. Returns false on a protocol error. */
static bool handle_result(mp_pool *p, struct worker *w, const unsigned char *msg, size_t len)
{
    struct wire_result h;
    if (len < sizeof h)
        return false;
    memcpy(&h, msg, sizeof h);
    pthread_mutex_lock(&p->mu);
    if (w->count == 0 || w->fifo[w->head].seq != h.seq) {
        pthread_mutex_unlock(&p->mu);
        return false;
    }
    struct flight fl = w->fifo[w->head];
    w->head = (w->head + 1) % WINDOW_MAX;
    w->count--;
    w->inflight_bytes -= fl.bytes;
    p->startup_fails = 0;
    int64_t t =
        (int64_t)(h.exec_ns > (uint64_t)INT64_MAX / 2 ? (uint64_t)INT64_MAX / 2 : h.exec_ns);
    p->ewma_ns += (t - p->ewma_ns) / 4;
    note_room_locked(p, w);
    bool term = p->state == P_TERMINATE;
    pthread_mutex_unlock(&p->mu);
    if (!term)
        deliver(p, fl.job, fl.chunk, &h, msg + sizeof h, len - sizeof h);
    job_unref(fl.job);
    return true;
}

/* Ask the fork server to signal the worker in slot w (its child). The
 * server checks the spawn number, so a slot's next worker is never hit. */
static void zkill(mp_pool *p, const struct worker *w, int sig)
{
    struct zmsg m = {.op = Z_KILL, .idx = (uint32_t)w->idx, .k = w->k, .arg = sig};
    (void)mp_conn_send_bytes(p->zctl, &m, sizeof m);
}

/* The worker's socket is finished (end of file, or unusable): stop
 * watching it, and kill the worker if it does not exit soon. */
static void mark_eof(mp_pool *p, struct worker *w, bool kill_now)
{
    if (kill_now)
        zkill(p, w, SIGKILL);
    pthread_mutex_lock(&p->mu);
    w->eof = true;
    w->eof_deadline = mp__now_ns() + EOF_GRACE_NS;
    pthread_mutex_unlock(&p->mu);
}

/* Receive what worker w has sent, without waiting. At most `budget`
 * messages, so one busy worker cannot starve the others. */
static void drain(mp_pool *p, struct worker *w, int budget)
{
    while (!w->eof && budget-- > 0) {
        size_t size = 0;
        ssize_t r = mp_conn_recv_bytes_into(w->conn, p->rbuf, p->rbuf_cap, 0, &size, MP_NOWAIT);
        if (r == MP_ETOOSHORT) {
            if (grow(&p->rbuf, &p->rbuf_cap, size) < 0)
                mark_eof(p, w, true); /* cannot take its result */
            continue;
        }
        if (r == MP_ETIMEDOUT)
            return;
        if (r < 0 || !handle_result(p, w, p->rbuf, (size_t)r)) {
            mark_eof(p, w, r >= 0); /* end of file, or it speaks garbage */
            return;
        }
    }
}

static void describe_exit(char *buf, size_t cap, const struct worker *w, int exitcode, int rc)
{
    const char *name = w->name;
    if (rc < 0)
        snprintf(buf, cap, "worker %s (pid %d) died; its exit status is unknown (%s)", name,
                 (int)w->pid, mp_strerror(rc));
    else if (exitcode < 0)
        snprintf(buf, cap, "worker %s (pid %d) died: killed by signal %d (%s)", name, (int)w->pid,
                 -exitcode, strsignal(-exitcode));
    else
        snprintf(buf, cap, "worker %s (pid %d) died: exited with status %d", name, (int)w->pid,
                 exitcode);
}

/*
 * Worker w has ended (the fork server reaped it and sent its exit code, or
 * rc when that is unknown). Take its last results, then blame the chunk it
 * was running, requeue the chunks it never started, and hand the slot to
 * the dispatcher for a replacement.
 */
static void handle_death(mp_pool *p, struct worker *w, int exitcode, int rc)
{
    if (w->conn)
        drain(p, w, INT32_MAX);
    struct flight blamed = {0};
    bool blame = false;
    struct retry *head = NULL, **tail = &head;
    size_t nretry = 0;
    struct flight *dropped = NULL;
    size_t ndropped = 0;
    struct slot *s = &p->slots[w->idx];
    uint32_t ready = __atomic_load_n(&s->ready, __ATOMIC_ACQUIRE);
    uint32_t running = __atomic_load_n(&s->running, __ATOMIC_ACQUIRE);
    uint32_t item = __atomic_load_n(&s->item, __ATOMIC_ACQUIRE);
    /* Described now: once it is W_DEAD the dispatcher frees its handles. */
    char msg[MP_TASK_MSG_MAX];
    describe_exit(msg, sizeof msg, w, exitcode, rc);

    pthread_mutex_lock(&p->mu);
    bool term = p->state == P_TERMINATE;
    dropped = malloc((w->count ? w->count : 1) * sizeof *dropped);
    for (unsigned k = 0; k < w->count; k++) {
        struct flight fl = w->fifo[(w->head + k) % WINDOW_MAX];
        if (k == 0 && ready && running == fl.seq + 1 && !term) {
            blamed = fl;
            blame = true;
            continue;
        }
        struct retry *r = term ? NULL : malloc(sizeof *r);
        if (r) {
            r->job = fl.job;
            r->chunk = fl.chunk;
            r->next = NULL;
            *tail = r;
            tail = &r->next;
            nretry++;
        } else if (dropped) {
            dropped[ndropped++] = fl; /* terminated, or no memory to retry */
        } else {
            job_unref(fl.job); /* cannot happen but for no memory at all */
        }
    }
    w->count = 0;
    w->head = 0;
    w->inflight_bytes = 0;
    p->disp_wake_chunks = 1; /* a replacement comes, idle */
    if (head) {
        /* Chunks that were never started go first, in their order. */
        *tail = p->retry_head;
        p->retry_head = head;
        p->pend_chunks += nretry;
    }
    if (!ready) {
        p->startup_fails++;
        int64_t pause = INT64_C(10000000) << (p->startup_fails < 7 ? p->startup_fails - 1 : 6);
        if (pause > INT64_C(1000000000))
            pause = INT64_C(1000000000);
        p->spawn_after = mp__now_ns() + pause;
    }
    w->state = W_DEAD;
    pool_wake_dispatcher_locked(p);
    pthread_mutex_unlock(&p->mu);

    for (size_t k = 0; k < ndropped; k++) {
        if (!term)
            job_fail_chunk(p, dropped[k].job, dropped[k].chunk, -ENOMEM, -ENOMEM, 0,
                           "out of memory requeueing the task of a dead worker");
        job_unref(dropped[k].job);
    }
    free(dropped);
    if (blame) {
        job_fail_chunk(p, blamed.job, blamed.chunk, MP_EWORKER, rc < 0 ? rc : exitcode, item, msg);
        job_unref(blamed.job);
    }
}

/* terminate(): fail every unfinished job, running error callbacks. */
static void fail_everything(mp_pool *p)
{
    pthread_mutex_lock(&p->mu);
    struct retry *r = p->retry_head;
    p->retry_head = NULL;
    for (struct mp_result *j = p->pend_head; j; j = j->pnext)
        j->in_pending = false;
    p->pend_head = p->pend_tail = NULL;
    p->pend_chunks = 0;
    pthread_mutex_unlock(&p->mu);
    while (r) {
        struct retry *next = r->next;
        job_unref(r->job);
        free(r);
        r = next;
    }
    for (;;) {
        pthread_mutex_lock(&p->mu);
        struct mp_result *j = p->cache;
        if (j)
            job_ref(j);
        pthread_mutex_unlock(&p->mu);
        if (!j)
            break;
        job_finish(p, j, true);
        job_unref(j);
    }
    pthread_mutex_lock(&p->mu);
    p->term_done = true;
    pthread_cond_broadcast(&p->done_cv);
    pthread_mutex_unlock(&p->mu);
}

/* A worker connected back: authenticate it, read its hello and give its
 * slot the connection. Strangers and stale workers are dropped. */
static void accept_worker(mp_pool *p)
{
    mp_conn *c;
    if (mp_listener_accept(p->lis, &c, 5.0) < 0)
        return;
    struct hello h;
    ssize_t r = mp_conn_recv_bytes_into(c, &h, sizeof h, 0, NULL, 5.0);
    pthread_mutex_lock(&p->mu);
    struct worker *w = r == (ssize_t)sizeof h && h.idx < (uint32_t)p->nproc ? &p->w[h.idx] : NULL;
    if (w && w->state == W_SPAWNING && w->k == h.k && (w->pid == 0 || w->pid == h.pid)) {
        w->conn = c;
        w->pid = h.pid;
        w->next_seq = 0;
        w->head = w->count = 0;
        w->inflight_bytes = 0;
        w->sent = 0;
        w->exit_sent = w->eof = w->term_sent = false;
        w->state = W_LIVE;
        c = NULL;
        note_room_locked(p, w);
        pool_wake_dispatcher_locked(p);
        pthread_cond_broadcast(&p->done_cv); /* mp_pool_new waits for this */
    }
    pthread_mutex_unlock(&p->mu);
    mp_conn_free(c);
}

/* One message from the fork server. Returns false when it is gone. */
static bool zygote_message(mp_pool *p)
{
    struct zmsg m;
    ssize_t r = mp_conn_recv_bytes_into(p->zctl, &m, sizeof m, 0, NULL, MP_NOWAIT);
    if (r == MP_ETIMEDOUT)
        return true;
    if (r != (ssize_t)sizeof m)
        return false;
    if (m.idx >= (uint32_t)p->nproc)
        return true;
    struct worker *w = &p->w[m.idx];
    pthread_mutex_lock(&p->mu);
    bool ours = w->k == m.k && (w->state == W_SPAWNING || w->state == W_LIVE);
    if (ours && m.op == Z_SPAWNED && w->pid == 0)
        w->pid = m.pid;
    if (ours && m.op == Z_SPAWN_FAILED) {
        /* No fork now (EAGAIN, ENOMEM): the dispatcher tries again soon. */
        w->state = W_NONE;
        p->spawn_error = m.arg;
        p->spawn_after = mp__now_ns() + INT64_C(100000000);
        pool_wake_dispatcher_locked(p);
        pthread_cond_broadcast(&p->done_cv);
    }
    pthread_mutex_unlock(&p->mu);
    if (ours && m.op == Z_DIED)
        handle_death(p, w, m.arg, m.rc);
    return true;
}

static void *result_main(void *arg)
{
    mp_pool *p = arg;
    size_t cap = (size_t)p->nproc + 3;
    (void)grow(&p->rbuf, &p->rbuf_cap, 64 * 1024); /* never NULL: see worker_main */
    mp_wait_item *items = calloc(cap, sizeof *items);
    int *owner = calloc(cap, sizeof *owner); /* worker index; -1 notify, -2 server, -3 listener */
    bool zygote_gone = false;
    for (;;) {
        size_t n = 0;
        int64_t deadline = MP__NO_DEADLINE;
        pthread_mutex_lock(&p->mu);
        if (p->state == P_TERMINATE && !p->term_done) {
            pthread_mutex_unlock(&p->mu);
            fail_everything(p);
            continue;
        }
        if (p->disp_done) {
            pthread_mutex_unlock(&p->mu);
            break;
        }
        if (items && owner && p->rbuf) {
            items[n] = (mp_wait_item){.conn = NULL, .fd = p->notify[0], .ready = 0};
            owner[n++] = -1;
            if (!zygote_gone) {
                items[n] = (mp_wait_item){.conn = p->zctl, .fd = -1, .ready = 0};
                owner[n++] = -2;
            }
            items[n] = (mp_wait_item){.conn = NULL, .fd = mp_listener_fileno(p->lis), .ready = 0};
            owner[n++] = -3;
            for (int i = 0; i < p->nproc; i++) {
                struct worker *w = &p->w[i];
                if (w->state != W_LIVE)
                    continue;
                if (!w->eof) {
                    items[n] = (mp_wait_item){.conn = w->conn, .fd = -1, .ready = 0};
                    owner[n++] = i;
                } else if (deadline == MP__NO_DEADLINE || w->eof_deadline < deadline) {
                    deadline = w->eof_deadline;
                }
            }
        }
        pthread_mutex_unlock(&p->mu);
        if (n == 0) {
            mp__sleep(0.01); /* out of memory: poll slowly */
            (void)grow(&p->rbuf, &p->rbuf_cap, 64 * 1024);
            continue;
        }
        double timeout = MP_FOREVER;
        if (deadline != MP__NO_DEADLINE) {
            int64_t left = deadline - mp__now_ns();
            timeout = left > 0 ? (double)left / 1e9 : 0;
        }
        int ready = mp_wait(items, n, timeout);
        if (ready < 0) {
            mp__sleep(0.001);
            continue;
        }
        /* Results first, then the server's news of deaths (a dead worker's
         * last results are already in its socket when the news comes). */
        for (size_t k = 0; k < n; k++) {
            if (!items[k].ready)
                continue;
            if (owner[k] == -1) {
                /* Read, then clear: a notice sent in between finds the flag
                 * still set and writes nothing, but this loop looks at the
                 * pool again right after. */
                unsigned char junk[64];
                (void)mp__read_some(p->notify[0], junk, sizeof junk, mp__now_ns(), false);
                pthread_mutex_lock(&p->mu);
                p->notify_pending = false;
                pthread_mutex_unlock(&p->mu);
            } else if (owner[k] >= 0) {
                drain(p, &p->w[owner[k]], 256);
            }
        }
        for (size_t k = 0; k < n; k++) {
            if (items[k].ready && owner[k] == -3)
                accept_worker(p);
            if (items[k].ready && owner[k] == -2) {
                for (int m = 0; m < 64 && !zygote_gone; m++) {
                    if (!zygote_message(p)) {
                        zygote_gone = true;
                        /* Nothing can be forked or reaped any more. */
                        pthread_mutex_lock(&p->mu);
                        p->broken = true;
                        p->state = P_TERMINATE;
                        pool_wake_dispatcher_locked(p);
                        pthread_mutex_unlock(&p->mu);
                    }
                    if (mp_conn_buffered(p->zctl) == 0)
                        break;
                }
            }
        }
        if (zygote_gone) {
            /* The workers were the server's children: mark them dead. */
            for (int i = 0; i < p->nproc; i++) {
                pthread_mutex_lock(&p->mu);
                int st = p->w[i].state;
                pthread_mutex_unlock(&p->mu);
                if (st == W_LIVE || st == W_SPAWNING)
                    handle_death(p, &p->w[i], 0, MP_EWORKER);
            }
        }
        int64_t now = mp__now_ns();
        pthread_mutex_lock(&p->mu);
        for (int i = 0; i < p->nproc; i++) {
            struct worker *w = &p->w[i];
            if (w->state == W_LIVE && w->eof && w->eof_deadline <= now) {
                zkill(p, w, SIGKILL);
                w->eof_deadline = now + EOF_GRACE_NS;
            }
        }
        pthread_mutex_unlock(&p->mu);
    }
    free(items);
    free(owner);
    pthread_mutex_lock(&p->mu);
    p->res_done = true;
    pthread_cond_broadcast(&p->done_cv);
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* ---- the worker (a child process) ------------------------------------------ */

struct wbuf {
    unsigned char *p;
    size_t len, cap;
};

static int wb_put(struct wbuf *b, const void *src, size_t n)
{
    size_t need;
    if (mp__add_overflows(b->len, n, &need) || grow(&b->p, &b->cap, need) < 0)
        return -ENOMEM;
    if (n)
        memcpy(b->p + b->len, src, n);
    b->len = need;
    return 0;
}

static void add_fail(struct wbuf *fails, uint32_t *nfail, uint32_t item, int status, int code,
                     const char *msg)
{
    struct wire_fail wf = {.item = item, .status = status, .code = code, .msg_len = 0};
    char text[MP_TASK_MSG_MAX];
    if (msg) {
        snprintf(text, sizeof text, "%s", msg);
    } else if (task_msg_set) {
        snprintf(text, sizeof text, "%s", task_msg);
    } else {
        snprintf(text, sizeof text, "task failed with code %d", code);
    }
    wf.msg_len = (uint32_t)strlen(text);
    if (wb_put(fails, &wf, sizeof wf) == 0 && wb_put(fails, text, wf.msg_len) == 0)
        (*nfail)++;
}

/* Run one value-form item: args pickle at q (len bytes). */
static void run_obj_item(int form, uint64_t fn, const unsigned char *q, size_t len, uint32_t i,
                         struct wbuf *out, struct wbuf *fails, uint32_t *nfail)
{
    uint64_t failed = FAILED_LEN;
    mp_obj *item = NULL, *args = NULL, *res = NULL;
    int rc = mp__pickle_loads(q, len, &item);
    if (rc < 0) {
        add_fail(fails, nfail, i, rc, rc, "cannot unpickle the task's arguments");
        (void)wb_put(out, &failed, sizeof failed);
        return;
    }
    if (form == F_OBJ_MAP) {
        args = mp_obj_tuple_new();
        if (!args || mp_obj_tuple_append(args, item) < 0) {
            mp_obj_free(args);
            mp_obj_free(item);
            add_fail(fails, nfail, i, -ENOMEM, -ENOMEM, "out of memory");
            (void)wb_put(out, &failed, sizeof failed);
            return;
        }
    } else {
        args = item;
        int t = mp_obj_type(args);
        if (t != MP_TYPE_TUPLE && t != MP_TYPE_LIST) {
            char msg[MP_TASK_MSG_MAX];
            snprintf(msg, sizeof msg, "starmap item must be a tuple or list, not %s",
                     mp_type_name(t));
            mp_obj_free(args);
            add_fail(fails, nfail, i, MP_ETASK, MP_ETYPE, msg);
            (void)wb_put(out, &failed, sizeof failed);
            return;
        }
    }
    task_msg_set = false;
    rc = ((mp_obj_fn)(uintptr_t)fn)(args, &res);
    mp_obj_free(args);
    if (rc != 0) {
        mp_obj_free(res);
        add_fail(fails, nfail, i, MP_ETASK, rc, NULL);
        (void)wb_put(out, &failed, sizeof failed);
        return;
    }
    unsigned char *pk = NULL;
    size_t pklen = 0;
    mp_obj *none = res ? NULL : mp_obj_none();
    rc = mp__pickle_dumps(res ? res : none, &pk, &pklen);
    mp_obj_free(res);
    mp_obj_free(none);
    if (rc < 0) {
        add_fail(fails, nfail, i, rc, rc, "cannot pickle the task's result");
        (void)wb_put(out, &failed, sizeof failed);
        return;
    }
    uint64_t l = pklen;
    if (wb_put(out, &l, sizeof l) < 0 || wb_put(out, pk, pklen) < 0) {
        free(pk);
        out->len = out->len; /* the message will be short; the parent fails it */
        return;
    }
    free(pk);
}

/* Run one chunk and send its result. Returns 0, or <0 when the parent is
 * gone or the task message is malformed. */
static int run_chunk(mp_conn *c, struct slot *s, const struct wire_task *t,
                     const unsigned char *payload, struct wbuf *out, struct wbuf *fails)
{
    struct wire_result h = {.seq = t->seq, .count = t->count, .nfail = 0};
    out->len = 0;
    fails->len = 0;
    if (wb_put(out, &h, sizeof h) < 0)
        return -ENOMEM;
    __atomic_store_n(&s->item, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&s->running, t->seq + 1, __ATOMIC_RELEASE);
    int64_t t0 = mp__now_ns();
    const unsigned char *end = payload + t->len;
    if (t->form == F_ARRAY) {
        size_t outlen = (size_t)t->count * t->out_size;
        if (grow(&out->p, &out->cap, sizeof h + outlen) < 0)
            return -ENOMEM;
        memset(out->p + sizeof h, 0, outlen);
        out->len = sizeof h + outlen;
        mp_array_fn fn = (mp_array_fn)(uintptr_t)t->fn;
        for (uint32_t i = 0; i < t->count; i++) {
            __atomic_store_n(&s->item, i, __ATOMIC_RELAXED);
            task_msg_set = false;
            int rc =
                fn(payload + (size_t)i * t->in_size, out->p + sizeof h + (size_t)i * t->out_size);
            if (rc != 0)
                add_fail(fails, &h.nfail, i, MP_ETASK, rc, NULL);
        }
    } else {
        const unsigned char *q = payload;
        for (uint32_t i = 0; i < t->count; i++) {
            __atomic_store_n(&s->item, i, __ATOMIC_RELAXED);
            uint64_t len;
            if (rd_u64(&q, end, &len) < 0 || len > (uint64_t)(end - q))
                return MP_EPROTO;
            if (t->form == F_BYTES) {
                void *o = NULL;
                size_t olen = 0;
                task_msg_set = false;
                int rc = ((mp_bytes_fn)(uintptr_t)t->fn)(q, (size_t)len, &o, &olen);
                uint64_t l = olen;
                if (rc == 0 && !o && olen > 0) {
                    rc = -EINVAL;
                    add_fail(fails, &h.nfail, i, -EINVAL, -EINVAL,
                             "task returned a NULL buffer with a non-zero length");
                } else if (rc != 0) {
                    add_fail(fails, &h.nfail, i, MP_ETASK, rc, NULL);
                }
                if (rc != 0) {
                    l = FAILED_LEN;
                    (void)wb_put(out, &l, sizeof l);
                } else if (wb_put(out, &l, sizeof l) < 0 || wb_put(out, o, olen) < 0) {
                    free(o);
                    return -ENOMEM;
                }
                free(o);
            } else {
                run_obj_item((int)t->form, t->fn, q, (size_t)len, i, out, fails, &h.nfail);
            }
            q += len;
        }
    }
    h.exec_ns = (uint64_t)(mp__now_ns() - t0);
    h.out_len = out->len - sizeof h;
    memcpy(out->p, &h, sizeof h);
    if (wb_put(out, fails->p, fails->len) < 0)
        return -ENOMEM;
    int rc = mp_conn_send_bytes(c, out->p, out->len);
    __atomic_store_n(&s->running, 0, __ATOMIC_RELEASE);
    return rc;
}

/*
 * The worker's life (Python's pool.worker): drop the parent's descriptors it
 * inherited, run the initializer, then run chunks until told to exit, its
 * parent goes away, or it has run maxtasksperchild chunks.
 */
static int worker_main(void *arg)
{
    struct worker *self = arg;
    mp_pool *p = self->pool;
    pid_t server = getppid();
    /* The fork server's end to the pool is not ours. */
    mp_conn_free(p->zctl_child);
    p->zctl_child = NULL;
    mp_conn *c;
    if (mp_client_connect(&c, p->lis_addr, p->authkey, sizeof p->authkey, 30.0) < 0)
        return 4;
    struct hello h = {.idx = (uint32_t)self->idx, .k = self->k, .pid = (int32_t)getpid()};
    if (mp_conn_send_bytes(c, &h, sizeof h) < 0)
        return 4;
    struct slot *s = &p->slots[self->idx];
    if (p->init)
        p->init(p->initarg);
    __atomic_store_n(&s->ready, 1, __ATOMIC_RELEASE);

    struct wbuf in = {0}, out = {0}, fails = {0};
    unsigned long done = 0;
    int code = 0;
    /* Never receive into a NULL buffer: mp_conn_recv_bytes_into(c, NULL,
     * 0, ...) takes conn.c's allocating path instead of MP_ETOOSHORT. */
    if (grow(&in.p, &in.cap, 64 * 1024) < 0)
        return 1;
    for (;;) {
        size_t size = 0;
        ssize_t r = mp_conn_recv_bytes_into(c, in.p, in.cap, 0, &size, WORKER_IDLE_CHECK);
        if (r == MP_ETOOSHORT) {
            if (grow(&in.p, &in.cap, size) < 0) {
                code = 1;
                break;
            }
            continue;
        }
        if (r == MP_ETIMEDOUT) {
            if (getppid() != server)
                break; /* orphaned: the server, and so the pool, is gone */
            continue;
        }
        if (r < 0)
            break; /* the parent closed or died */
        const unsigned char *q = in.p, *end = in.p + r;
        bool stop = false;
        while (!stop && (size_t)(end - q) >= sizeof(struct wire_task)) {
            struct wire_task t;
            memcpy(&t, q, sizeof t);
            q += sizeof t;
            if (t.kind == MSG_EXIT) {
                stop = true;
                break;
            }
            if (t.kind != MSG_TASK || t.len > (uint64_t)(end - q)) {
                code = 2;
                stop = true;
                break;
            }
            if (run_chunk(c, s, &t, q, &out, &fails) < 0) {
                code = 3;
                stop = true;
                break;
            }
            q += pad16((size_t)t.len) <= (size_t)(end - q) ? pad16((size_t)t.len) : (size_t)t.len;
            if (p->maxtasks && ++done >= (unsigned long)p->maxtasks)
                stop = true;
        }
        if (stop)
            break;
    }
    free(in.p);
    free(out.p);
    free(fails.p);
    mp_conn_free(c);
    return code;
}

/* ---- the fork server (a child process) -------------------------------------- */

static void zreply(mp_conn *c, uint32_t op, uint32_t idx, uint32_t k, pid_t pid, int arg, int rc)
{
    struct zmsg m = {.op = op, .idx = idx, .k = k, .pid = (int32_t)pid, .arg = arg, .rc = rc};
    (void)mp_conn_send_bytes(c, &m, sizeof m);
}

/*
 * The fork server (Python's forkserver start method, for the same reason):
 * forked once by mp_pool_new before the pool's threads exist, it stays
 * single-threaded and forks every worker. Forking from the pool's own
 * threads instead would give workers a copy of a process whose other
 * threads may have held a lock at that moment (ASan's allocator does not
 * survive it, and user code might not either). Workers are its children:
 * it reaps them and tells the pool each one's exit code; they connect back
 * to the pool through its private listener.
 */
static int zygote_main(void *arg)
{
    mp_pool *p = arg;
    mp_conn *ctl = p->zctl_child;
    /* The pool's own descriptors are not ours (a forked listener's free
     * leaves the socket file to its creator). */
    mp_conn_free(p->zctl);
    p->zctl = NULL;
    mp_listener_free(p->lis);
    p->lis = NULL;
    mp__close(p->notify[0]);
    mp__close(p->notify[1]);
    pid_t pool_pid = getppid();
    size_t cap = (size_t)p->nproc + 1;
    mp_process **procs = calloc((size_t)p->nproc, sizeof *procs);
    uint32_t *ks = calloc((size_t)p->nproc, sizeof *ks);
    mp_wait_item *items = calloc(cap, sizeof *items);
    int *owner = calloc(cap, sizeof *owner);
    if (!procs || !ks || !items || !owner)
        return 1;
    bool stop = false;
    while (!stop) {
        size_t n = 0;
        items[n] = (mp_wait_item){.conn = ctl, .fd = -1, .ready = 0};
        owner[n++] = -1;
        for (int i = 0; i < p->nproc; i++) {
            if (!procs[i])
                continue;
            items[n] =
                (mp_wait_item){.conn = NULL, .fd = mp_process_sentinel(procs[i]), .ready = 0};
            owner[n++] = i;
        }
        int ready = mp_wait(items, n, WORKER_IDLE_CHECK);
        if (ready == 0) {
            if (getppid() != pool_pid)
                break; /* the pool's process is gone */
            continue;
        }
        if (ready < 0) {
            mp__sleep(0.001);
            continue;
        }
        /* Deaths first: a slot is free again before its next spawn. */
        for (size_t k = 1; k < n; k++) {
            if (!items[k].ready)
                continue;
            int i = owner[k];
            int code = 0;
            int rc = mp_process_join(procs[i], 5.0);
            if (rc == MP_ETIMEDOUT) {
                (void)mp_process_kill(procs[i]);
                rc = mp_process_join(procs[i], MP_FOREVER);
            }
            if (rc == 0)
                rc = mp_process_exitcode(procs[i], &code);
            zreply(ctl, Z_DIED, (uint32_t)i, ks[i], mp_process_pid(procs[i]), code,
                   rc < 0 ? rc : 0);
            (void)mp_process_free(procs[i]);
            procs[i] = NULL;
        }
        if (!items[0].ready)
            continue;
        do {
            struct zmsg m;
            ssize_t r = mp_conn_recv_bytes_into(ctl, &m, sizeof m, 0, NULL, MP_NOWAIT);
            if (r == MP_ETIMEDOUT)
                break;
            if (r != (ssize_t)sizeof m || m.op == Z_EXIT) {
                stop = true; /* the pool closed us, or went away */
                break;
            }
            if (m.idx >= (uint32_t)p->nproc)
                continue;
            int i = (int)m.idx;
            if (m.op == Z_KILL) {
                if (procs[i] && ks[i] == m.k)
                    (void)(m.arg == SIGKILL ? mp_process_kill(procs[i])
                                            : mp_process_terminate(procs[i]));
            } else if (m.op == Z_SPAWN) {
                int rc = procs[i] ? -EBUSY : 0;
                mp_process *proc = NULL;
                if (rc == 0) {
                    /* The worker reads its slot and spawn number from here. */
                    p->w[i].k = m.k;
                    rc = mp_process_new(&proc, worker_main, &p->w[i]);
                }
                if (rc == 0) {
                    char name[32];
                    snprintf(name, sizeof name, "PoolWorker-%u", (unsigned)m.k);
                    (void)mp_process_set_name(proc, name);
                    (void)mp_process_set_daemon(proc, true);
                    rc = mp_process_start(proc);
                }
                if (rc == 0) {
                    procs[i] = proc;
                    ks[i] = m.k;
                    zreply(ctl, Z_SPAWNED, m.idx, m.k, mp_process_pid(proc), 0, 0);
                } else {
                    (void)mp_process_free(proc);
                    zreply(ctl, Z_SPAWN_FAILED, m.idx, m.k, 0, rc, rc);
                }
            }
        } while (mp_conn_buffered(ctl) > 0);
    }
    /* Whatever is left (the pool's process died): end it. */
    for (int i = 0; i < p->nproc; i++) {
        if (procs[i]) {
            (void)mp_process_kill(procs[i]);
            (void)mp_process_join(procs[i], MP_FOREVER);
            (void)mp_process_free(procs[i]);
        }
    }
    free(procs);
    free(ks);
    free(items);
    free(owner);
    mp_conn_free(ctl);
    return 0;
}

/* ---- the dispatcher --------------------------------------------------------- */

/* Ask the fork server for a worker in slot w (p->mu held). */
static void spawn_worker_locked(mp_pool *p, struct worker *w)
{
    w->k = ++p->next_k;
    snprintf(w->name, sizeof w->name, "PoolWorker-%u", (unsigned)w->k);
    w->pid = 0;
    w->state = W_SPAWNING;
    __atomic_store_n(&p->slots[w->idx].ready, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&p->slots[w->idx].running, 0, __ATOMIC_RELAXED);
    struct zmsg m = {.op = Z_SPAWN, .idx = (uint32_t)w->idx, .k = w->k};
    if (mp_conn_send_bytes(p->zctl, &m, sizeof m) < 0) {
        /* The server is gone; the result thread sees it and stops all. */
        w->state = W_NONE;
        p->spawn_after = mp__now_ns() + INT64_C(100000000);
    }
}

/* Free a dead worker's connection (p->mu held; the dispatcher only). */
static void release_worker_locked(struct worker *w)
{
    mp_conn_free(w->conn);
    w->conn = NULL;
    w->pid = 0;
    w->state = W_NONE;
}

/* Append one chunk to the batch being built (p->mu held). */
static int encode_chunk(mp_pool *p, size_t *blen, struct worker *w, struct mp_result *j,
                        size_t chunk, size_t *bytes)
{
    size_t start, count;
    chunk_range(j, chunk, &start, &count);
    size_t len = chunk_payload(j, start, count);
    size_t need = *blen + sizeof(struct wire_task) + pad16(len);
    if (grow(&p->batch, &p->batch_cap, need) < 0)
        return -ENOMEM;
    struct wire_task t = {
        .kind = MSG_TASK,
        .form = (uint32_t)j->form,
        .fn = j->fn,
        .seq = w->next_seq++,
        .count = (uint32_t)count,
        .in_size = (uint32_t)j->in_size,
        .out_size = (uint32_t)j->out_size,
        .len = len,
        .first = start,
    };
    unsigned char *q = p->batch + *blen;
    memcpy(q, &t, sizeof t);
    q += sizeof t;
    if (j->form == F_ARRAY)
        memcpy(q, j->in + start * j->in_size, len);
    else
        memcpy(q, j->blob + j->offs[start], len);
    memset(q + len, 0, pad16(len) - len);
    *blen = need;
    *bytes = sizeof t + pad16(len);
    unsigned slot = (w->head + w->count) % WINDOW_MAX;
    w->fifo[slot] = (struct flight){.job = j, .chunk = chunk, .bytes = *bytes, .seq = t.seq};
    w->count++;
    w->inflight_bytes += *bytes;
    w->sent++;
    job_ref(j);
    return 0;
}

/* Pop the pending head if its chunks are all handed out (p->mu held). */
static void pending_pop_locked(mp_pool *p)
{
    struct mp_result *j = p->pend_head;
    p->pend_head = j->pnext;
    if (!p->pend_head)
        p->pend_tail = NULL;
    j->pnext = NULL;
    j->in_pending = false;
}

/*
 * Fill worker w's window with a batch and send it. p->mu is held on entry
 * and exit, released around the send and around cancelling abandoned work.
 * Returns true if it did anything.
 */
static bool fill_worker(mp_pool *p, struct worker *w)
{
    unsigned win = (unsigned)pool_window(p);
    if (p->maxtasks) {
        unsigned long left = (unsigned long)p->maxtasks - w->sent;
        if (left < win)
            win = (unsigned)left;
    }
    if (w->count >= win || (w->count > 0 && w->count > win / 2))
        return false;
    size_t blen = 0;
    bool did = false;
    while (w->count < win) {
        struct mp_result *j;
        size_t chunk;
        struct retry *r = p->retry_head;
        if (r) {
            j = r->job;
            chunk = r->chunk;
        } else if (p->pend_head) {
            j = p->pend_head;
            chunk = j->next_chunk;
        } else {
            break;
        }
        if (j->cancelled) {
            /* Cancel what is left of it: its arrays are not ours any more. */
            size_t k;
            if (r) {
                p->retry_head = r->next;
                free(r);
                k = 1;
            } else {
                k = j->nchunks - j->next_chunk;
                p->pend_chunks -= k - 1; /* and the one below */
                j->next_chunk = j->nchunks;
                pending_pop_locked(p);
                job_ref(j);
            }
            p->pend_chunks--;
            pthread_mutex_unlock(&p->mu);
            job_chunks_done(p, j, k);
            job_unref(j); /* the retry's reference, or the one taken above */
            pthread_mutex_lock(&p->mu);
            did = true;
            continue;
        }
        size_t start, count;
        chunk_range(j, chunk, &start, &count);
        size_t len = sizeof(struct wire_task) + pad16(chunk_payload(j, start, count));
        if ((w->count > 0 || blen > 0) && w->inflight_bytes + len > INFLIGHT_BYTES_MAX)
            break;
        size_t bytes;
        if (encode_chunk(p, &blen, w, j, chunk, &bytes) < 0)
            break;
        p->pend_chunks--;
        if (r) {
            p->retry_head = r->next;
            job_unref(j); /* the flight took its own reference */
            free(r);
        } else if (++j->next_chunk == j->nchunks) {
            pending_pop_locked(p);
        }
    }
    if (blen == 0)
        return did;
    mp_conn *c = w->conn;
    pthread_mutex_unlock(&p->mu);
    /* A failure means the worker is gone: its chunks stay in its FIFO and
     * the result thread requeues them when it sees the death. */
    (void)mp_conn_send_bytes(c, p->batch, blen);
    pthread_mutex_lock(&p->mu);
    return true;
}

static void send_exit(mp_pool *p, struct worker *w)
{
    struct wire_task t = {.kind = MSG_EXIT};
    w->exit_sent = true;
    mp_conn *c = w->conn;
    pthread_mutex_unlock(&p->mu);
    (void)mp_conn_send_bytes(c, &t, sizeof t);
    pthread_mutex_lock(&p->mu);
}

static void *dispatcher_main(void *arg)
{
    mp_pool *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        bool did = false;
        int64_t wake = MP__NO_DEADLINE;
        int live = 0;
        for (int i = 0; i < p->nproc; i++) {
            if (p->w[i].state == W_DEAD)
                release_worker_locked(&p->w[i]);
            if (p->w[i].state == W_LIVE || p->w[i].state == W_SPAWNING)
                live++;
        }
        if (p->state == P_TERMINATE) {
            int64_t now = mp__now_ns();
            for (int i = 0; i < p->nproc; i++) {
                struct worker *w = &p->w[i];
                if (w->state != W_LIVE && w->state != W_SPAWNING)
                    continue;
                if (!w->term_sent) {
                    zkill(p, w, SIGTERM);
                    w->term_sent = true;
                    w->kill_at = now + KILL_GRACE_NS;
                } else if (now >= w->kill_at) {
                    zkill(p, w, SIGKILL);
                    w->kill_at = now + KILL_GRACE_NS;
                }
                if (wake == MP__NO_DEADLINE || w->kill_at < wake)
                    wake = w->kill_at;
            }
            if (live == 0)
                break;
        } else {
            bool work_left = p->ncache > 0;
            if (p->state == P_CLOSE && !work_left) {
                for (int i = 0; i < p->nproc; i++) {
                    struct worker *w = &p->w[i];
                    if (w->state == W_LIVE && !w->exit_sent) {
                        send_exit(p, w);
                        did = true;
                    }
                }
                if (live == 0)
                    break;
            } else {
                for (int i = 0; i < p->nproc && p->state != P_TERMINATE; i++) {
                    if (p->w[i].state != W_NONE)
                        continue;
                    int64_t now = mp__now_ns();
                    if (now < p->spawn_after) {
                        if (wake == MP__NO_DEADLINE || p->spawn_after < wake)
                            wake = p->spawn_after;
                        break;
                    }
                    spawn_worker_locked(p, &p->w[i]);
                    did = true;
                }
                /* Start with a different worker each round, so that single
                 * tasks spread over the pool instead of all going to the
                 * first idle worker. */
                int first = (int)(p->rr++ % (unsigned)p->nproc);
                for (int k = 0; k < p->nproc && p->state != P_TERMINATE; k++) {
                    struct worker *w = &p->w[(first + k) % p->nproc];
                    if (w->state == W_LIVE && !w->eof && !w->exit_sent && fill_worker(p, w))
                        did = true;
                }
            }
        }
        if (!did) {
            /* A submission only needs to wake us when we sleep for want of
             * work; with the windows full, a result opening room does. */
            p->disp_wake_chunks = SIZE_MAX;
            unsigned half = (unsigned)pool_window(p) / 2, low = pool_low(p);
            for (int i = 0; i < p->nproc; i++) {
                const struct worker *w = &p->w[i];
                if (w->state != W_LIVE || w->eof || w->exit_sent)
                    continue;
                if (w->count < low)
                    p->disp_wake_chunks = 1;
                else if (w->count <= half && p->disp_wake_chunks > half)
                    p->disp_wake_chunks = half ? half : 1;
            }
            p->disp_waiting = true;
            (void)cond_wait_until(&p->disp_cv, &p->mu, wake);
            p->disp_waiting = false;
        }
    }
    for (int i = 0; i < p->nproc; i++)
        if (p->w[i].state == W_DEAD)
            release_worker_locked(&p->w[i]);
    /* Every worker is gone: the fork server may go too (mp_pool_join reaps
     * it, in the caller's thread). */
    struct zmsg m = {.op = Z_EXIT};
    (void)mp_conn_send_bytes(p->zctl, &m, sizeof m);
    p->disp_done = true;
    notify_result_thread_locked(p);
    pthread_cond_broadcast(&p->done_cv);
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* ---- the pool ---------------------------------------------------------------- */

static int pool_check(const mp_pool *p)
{
    if (!p)
        return -EINVAL;
    return p->gen == mp__forkgen() ? 0 : MP_EFORKED;
}

static bool in_pool_thread(const mp_pool *p)
{
    pthread_t self = pthread_self();
    return p->threads && (pthread_equal(self, p->res_th) || pthread_equal(self, p->disp_th));
}

/* The blocking calls refuse the pool's own threads: a callback waiting for
 * a task would wait for the thread it runs in. */
static int sync_check(const mp_pool *p, double timeout)
{
    int rc = pool_check(p);
    if (rc == 0 && mp__bad_timeout(timeout))
        rc = MP_EVALUE;
    if (rc == 0 && in_pool_thread(p))
        rc = MP_ESTATE;
    return rc;
}

static void exit_hook(void *arg)
{
    mp_pool *p = arg;
    p->hook = 0; /* the exit procedure removed it */
    (void)mp_pool_terminate(p);
    (void)mp_pool_join(p, MP_FOREVER);
}

/* Release everything; the threads are joined (or never started), the fork
 * server has been joined (or never started) and no worker is alive. */
static void pool_release(mp_pool *p)
{
    for (int i = 0; p->w && i < p->nproc; i++)
        mp_conn_free(p->w[i].conn);
    free(p->w);
    while (p->retry_head) {
        struct retry *r = p->retry_head;
        p->retry_head = r->next;
        job_unref(r->job);
        free(r);
    }
    if (p->zygote)
        (void)mp_process_free(p->zygote);
    mp_conn_free(p->zctl);
    mp_conn_free(p->zctl_child);
    mp_listener_free(p->lis);
    free(p->lis_addr);
    mp__shm_free(p->slots);
    if (p->notify[0] >= 0)
        mp__close(p->notify[0]);
    if (p->notify[1] >= 0)
        mp__close(p->notify[1]);
    free(p->batch);
    free(p->rbuf);
    mp__wipe(p->authkey, sizeof p->authkey); /* a secret */
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->disp_cv);
    pthread_cond_destroy(&p->done_cv);
    free(p);
}

/* Stop the fork server (and so any worker) when mp_pool_new fails before
 * the threads run. */
static void stop_zygote(mp_pool *p)
{
    if (!p->zygote)
        return;
    struct zmsg m = {.op = Z_EXIT};
    (void)mp_conn_send_bytes(p->zctl, &m, sizeof m);
    if (mp_process_join(p->zygote, 10.0) == MP_ETIMEDOUT) {
        (void)mp_process_kill(p->zygote);
        (void)mp_process_join(p->zygote, MP_FOREVER);
    }
}

MP_API int mp_pool_new(mp_pool **out, const mp_pool_opts *opts)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    mp_pool_opts o = MP_POOL_OPTS_INIT;
    if (opts)
        o = *opts;
    if (o.processes < 0 || o.maxtasksperchild < 0)
        return MP_EVALUE;
    if (o.processes == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        o.processes = n > 0 ? (n > 4096 ? 4096 : (int)n) : 1;
    }
    mp_pool *p = calloc(1, sizeof *p);
    if (!p)
        return -ENOMEM;
    p->notify[0] = p->notify[1] = -1;
    if (pthread_mutex_init(&p->mu, NULL) != 0) {
        free(p);
        return -ENOMEM;
    }
    if (cond_init(&p->disp_cv) < 0) {
        pthread_mutex_destroy(&p->mu);
        free(p);
        return -ENOMEM;
    }
    if (cond_init(&p->done_cv) < 0) {
        pthread_cond_destroy(&p->disp_cv);
        pthread_mutex_destroy(&p->mu);
        free(p);
        return -ENOMEM;
    }
    p->gen = mp__forkgen();
    p->owner = getpid();
    p->nproc = o.processes;
    p->maxtasks = o.maxtasksperchild;
    p->init = o.initializer;
    p->initarg = o.initarg;
    p->state = P_RUN;
    p->ewma_ns = WINDOW_TARGET_NS; /* a window of 1 until workers report */
    int rc = -ENOMEM;
    p->w = calloc((size_t)p->nproc, sizeof *p->w);
    void *m = NULL;
    int src = mp__shm_alloc(&m, (size_t)p->nproc * sizeof(struct slot));
    if (src < 0)
        rc = src;
    p->slots = m;
    if (!p->w || !p->slots)
        goto fail;
    for (int i = 0; i < p->nproc; i++) {
        p->w[i].pool = p;
        p->w[i].idx = i;
    }
    if ((rc = mp__pipe(p->notify)) < 0) {
        p->notify[0] = p->notify[1] = -1;
        goto fail;
    }
    /* Workers connect back over a private AF_UNIX listener (a 0700
     * directory) and prove they hold this random key. */
    if ((rc = mp__random_bytes(p->authkey, sizeof p->authkey)) < 0)
        goto fail;
    if ((rc = mp_listener_new(&p->lis, NULL, p->authkey, sizeof p->authkey, NULL)) < 0)
        goto fail;
    p->lis_addr = strdup(mp_listener_address(p->lis));
    rc = -ENOMEM;
    if (!p->lis_addr)
        goto fail;
    if ((rc = mp_pipe(&p->zctl, &p->zctl_child, true)) < 0)
        goto fail;
    if ((rc = mp_process_new(&p->zygote, zygote_main, p)) < 0)
        goto fail;
    char zname[48];
    snprintf(zname, sizeof zname, "PoolForkServer-%s", mp_process_name(p->zygote) + 8);
    (void)mp_process_set_name(p->zygote, zname);
    if ((rc = mp_process_start(p->zygote)) < 0) {
        (void)mp_process_free(p->zygote);
        p->zygote = NULL;
        goto fail;
    }
    mp_conn_free(p->zctl_child);
    p->zctl_child = NULL;

    /* The pool's threads take no signals: a program's handlers keep
     * running in its own threads. */
    sigset_t all, old;
    sigfillset(&all);
    (void)pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = -pthread_create(&p->disp_th, NULL, dispatcher_main, p);
    if (rc == 0) {
        rc = -pthread_create(&p->res_th, NULL, result_main, p);
        if (rc < 0) {
            /* The dispatcher cannot finish without the result thread:
             * stop the server under it, then let it see no workers. */
            pthread_mutex_lock(&p->mu);
            p->state = P_TERMINATE;
            for (int i = 0; i < p->nproc; i++)
                p->w[i].state = W_NONE;
            p->spawn_after = INT64_MAX;
            pthread_cond_signal(&p->disp_cv);
            pthread_mutex_unlock(&p->mu);
            pthread_join(p->disp_th, NULL);
            (void)pthread_sigmask(SIG_SETMASK, &old, NULL);
            stop_zygote(p);
            pool_release(p);
            return rc;
        }
    }
    (void)pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc < 0) {
        stop_zygote(p);
        goto fail;
    }
    pthread_mutex_lock(&p->mu);
    p->threads = true;
    /* Python's Pool() returns with its processes started: wait until every
     * worker has connected back (before its initializer runs). */
    int64_t deadline = mp__deadline(120.0);
    for (;;) {
        int live = 0;
        for (int i = 0; i < p->nproc; i++)
            live += p->w[i].state == W_LIVE;
        if (live == p->nproc || p->spawn_error || p->broken || p->startup_fails)
            break;
        if (!cond_wait_until(&p->done_cv, &p->mu, deadline))
            break;
    }
    int live = 0;
    for (int i = 0; i < p->nproc; i++)
        live += p->w[i].state == W_LIVE;
    rc = live == p->nproc ? 0 : p->spawn_error ? p->spawn_error : p->broken ? MP_EWORKER : 0;
    pthread_mutex_unlock(&p->mu);
    if (rc < 0) {
        (void)mp_pool_terminate(p);
        (void)mp_pool_join(p, MP_FOREVER);
        pool_release(p);
        return rc;
    }
    int hook = mp__exit_hook_add(exit_hook, p, 15);
    p->hook = hook > 0 ? hook : 0;
    *out = p;
    return 0;

fail:
    pool_release(p);
    return rc;
}

MP_API int mp_pool_close(mp_pool *p)
{
    int rc = pool_check(p);
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&p->mu);
    if (p->state == P_RUN) {
        p->state = P_CLOSE;
        pool_wake_dispatcher_locked(p);
    }
    pthread_mutex_unlock(&p->mu);
    return 0;
}

MP_API int mp_pool_terminate(mp_pool *p)
{
    int rc = pool_check(p);
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&p->mu);
    p->state = P_TERMINATE;
    pool_wake_dispatcher_locked(p);
    notify_result_thread_locked(p);
    /* From a callback the result thread does it once the callback returns. */
    if (!in_pool_thread(p))
        while (!p->term_done && !p->res_done)
            pthread_cond_wait(&p->done_cv, &p->mu);
    pthread_mutex_unlock(&p->mu);
    return 0;
}

MP_API int mp_pool_join(mp_pool *p, double timeout)
{
    int rc = pool_check(p);
    if (rc < 0)
        return rc;
    if (mp__bad_timeout(timeout))
        return MP_EVALUE;
    int64_t deadline = mp__deadline(timeout);
    pthread_mutex_lock(&p->mu);
    if (p->state == P_RUN) {
        pthread_mutex_unlock(&p->mu);
        return MP_EVALUE;
    }
    if (in_pool_thread(p)) {
        pthread_mutex_unlock(&p->mu);
        return MP_ESTATE;
    }
    while (!(p->disp_done && p->res_done)) {
        if (!cond_wait_until(&p->done_cv, &p->mu, deadline)) {
            pthread_mutex_unlock(&p->mu);
            return MP_ETIMEDOUT;
        }
    }
    bool join_now = !p->joined;
    p->joined = true;
    pthread_mutex_unlock(&p->mu);
    if (join_now) {
        pthread_join(p->disp_th, NULL);
        pthread_join(p->res_th, NULL);
        /* Reaped here rather than by the dispatcher: ThreadSanitizer takes
         * process.c's mutex, re-created by assignment in a forked child, as
         * still held by the forking thread, so a pool made in a child would
         * see a false "double lock" report from any other thread. */
        if (mp_process_join(p->zygote, 10.0) == MP_ETIMEDOUT) {
            (void)mp_process_kill(p->zygote);
            (void)mp_process_join(p->zygote, MP_FOREVER);
        }
    }
    return 0;
}

MP_API int mp_pool_free(mp_pool *p)
{
    if (!p)
        return 0;
    if (p->gen != mp__forkgen()) {
        /* A forked child's copy: close its descriptors, free its memory.
         * The mutexes may be held by threads that do not exist here, so
         * they are left alone. */
        for (int i = 0; i < p->nproc; i++)
            mp_conn_free(p->w[i].conn);
        free(p->w);
        mp_conn_free(p->zctl);
        mp_listener_free(p->lis); /* only the creator removes its file */
        free(p->lis_addr);
        if (p->zygote)
            (void)mp_process_free(p->zygote); /* not our child: just the copy */
        mp__shm_free(p->slots); /* not ours in a child: a no-op */
        mp__close(p->notify[0]);
        mp__close(p->notify[1]);
        free(p->batch);
        free(p->rbuf);
        free(p);
        return 0;
    }
    if (in_pool_thread(p))
        return MP_ESTATE;
    pthread_mutex_lock(&p->mu);
    bool running = p->state == P_RUN;
    pthread_mutex_unlock(&p->mu);
    if (running)
        (void)mp_pool_terminate(p);
    (void)mp_pool_join(p, MP_FOREVER);
    if (p->hook > 0)
        mp__exit_hook_remove(p->hook);
    pool_release(p);
    return 0;
}

MP_API int mp_pool_processes(const mp_pool *p)
{
    int rc = pool_check(p);
    return rc < 0 ? rc : p->nproc;
}

MP_API int mp_pool_pids(mp_pool *p, pid_t *pids, size_t cap)
{
    int rc = pool_check(p);
    if (rc < 0)
        return rc;
    if (!pids && cap > 0)
        return -EINVAL;
    int n = 0;
    pthread_mutex_lock(&p->mu);
    for (int i = 0; i < p->nproc; i++) {
        if (p->w[i].state != W_LIVE)
            continue;
        if ((size_t)n < cap)
            pids[n] = p->w[i].pid;
        n++;
    }
    pthread_mutex_unlock(&p->mu);
    return n;
}

/* ---- submitting ---------------------------------------------------------------- */

/* Hand a prepared job to the pool. On success the pool holds a reference
 * and the caller keeps its own. */
static int submit(mp_pool *p, struct mp_result *j, const mp_callbacks *cbs)
{
    if (cbs)
        j->cbs = *cbs;
    pthread_mutex_lock(&p->mu);
    if (p->state != P_RUN) {
        pthread_mutex_unlock(&p->mu);
        return MP_ECLOSED;
    }
    if (j->nchunks == 0) {
        /* Nothing to run: ready at once (Python's MapResult for an empty
         * iterable runs no callback either). */
        pthread_mutex_unlock(&p->mu);
        if (j->kind == K_MAP && j->vals)
            j->value = mp_obj_list_new();
        if (j->kind == K_MAP && j->vals && !j->value)
            return -ENOMEM;
        j->finished = j->ready = true;
        j->pool = NULL;
        return 0;
    }
    job_ref(j);
    j->in_cache = true;
    j->cprev = NULL;
    j->cnext = p->cache;
    if (p->cache)
        p->cache->cprev = j;
    p->cache = j;
    p->ncache++;
    j->in_pending = true;
    if (p->pend_tail)
        p->pend_tail->pnext = j;
    else
        p->pend_head = j;
    p->pend_tail = j;
    p->pend_chunks += j->nchunks;
    if (p->disp_waiting && p->pend_chunks >= p->disp_wake_chunks) {
        p->disp_wake_chunks = SIZE_MAX; /* one wake-up is enough */
        pool_wake_dispatcher_locked(p);
    }
    pthread_mutex_unlock(&p->mu);
    return 0;
}

/* Add one wire item ([u64 len][bytes]) to a job's blob. */
static int blob_add(struct mp_result *j, size_t *cap, size_t i, const void *data, size_t len)
{
    size_t at = j->offs[i];
    size_t need;
    if (mp__add_overflows(at, sizeof(uint64_t) + len, &need))
        return -ENOMEM;
    if (need > *cap) {
        /* One item (apply) gets exactly its size; lists grow by doubling. */
        size_t ncap = *cap ? (*cap * 2 > need ? *cap * 2 : need) : need;
        unsigned char *b = realloc(j->blob, ncap);
        if (!b)
            return -ENOMEM;
        j->blob = b;
        *cap = ncap;
    }
    uint64_t l = len;
    memcpy(j->blob + at, &l, sizeof l);
    if (len)
        memcpy(j->blob + at + sizeof l, data, len);
    j->offs[i + 1] = need;
    return 0;
}

/* Pickle the items (or the one args tuple) of a value job into its blob. */
static int blob_pickle(struct mp_result *j, const mp_obj *seq, bool one)
{
    size_t n = one ? 1 : j->n;
    j->offs = n <= 1 ? j->offs_one : calloc(n + 1, sizeof *j->offs);
    if (!j->offs)
        return -ENOMEM;
    size_t cap = 0;
    for (size_t i = 0; i < n; i++) {
        const mp_obj *item = one ? seq : mp_obj_list_get(seq, i);
        unsigned char *pk;
        size_t len;
        int rc = mp__pickle_dumps(item, &pk, &len);
        if (rc < 0)
            return rc;
        rc = blob_add(j, &cap, i, pk, len);
        free(pk);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int submit_or_free(mp_pool *p, struct mp_result *j, int rc, const mp_callbacks *cbs,
                          mp_result **out)
{
    if (rc == 0)
        rc = submit(p, j, cbs);
    if (rc < 0) {
        job_unref(j);
        return rc;
    }
    *out = j;
    return 0;
}

MP_API int mp_pool_apply_bytes_async(mp_pool *p, mp_bytes_fn fn, const void *in, size_t in_len,
                                     const mp_callbacks *cbs, mp_result **out)
{
    if (out)
        *out = NULL;
    int rc = pool_check(p);
    if (rc < 0)
        return rc;
    if (!fn || !out || (!in && in_len > 0))
        return -EINVAL;
    struct mp_result *j = job_new(p, K_APPLY, F_BYTES, (uint64_t)(uintptr_t)fn, 1);
    if (!j)
        return -ENOMEM;
    rc = job_prepare(j, 1);
    if (rc == 0) {
        j->offs = j->offs_one;
        size_t cap = 0;
        rc = blob_add(j, &cap, 0, in, in_len);
    }
    return submit_or_free(p, j, rc, cbs, out);
}

static int check_array_args(const void *in, size_t in_size, size_t n, const void *out,
                            size_t out_size)
{
    if (n > 0 && (!in || !out))
        return -EINVAL;
    if (in_size == 0 || out_size == 0 || in_size > ITEM_MAX || out_size > ITEM_MAX)
        return -EINVAL;
    size_t prod;
    if (__builtin_mul_overflow(n, in_size, &prod) || __builtin_mul_overflow(n, out_size, &prod))
        return -EOVERFLOW;
    return 0;
}

static size_t default_chunksize(const mp_pool *p, int kind, size_t n, size_t chunksize)
{
    if (chunksize > 0)
        return chunksize;
    if (kind != K_MAP)
        return 1;
    /* Python: chunksize, extra = divmod(len(iterable), len(pool) * 4) */
    size_t d = 4 * (size_t)p->nproc;
    return n / d + (n % d != 0);
}

static int array_job(mp_pool *p, int kind, mp_array_fn fn, const void *in, size_t in_size, size_t n,
                     void *out, size_t out_size, size_t chunksize, const mp_callbacks *cbs,
                     mp_result **res)
{
    if (res)
        *res = NULL;
    int rc = pool_check(p);
    if (rc < 0)
        return rc;
    if (!fn || !res)
        return -EINVAL;
    rc = check_array_args(in, in_size, n, out, out_size);
    if (rc < 0)
        return rc;
    struct mp_result *j = job_new(p, kind, F_ARRAY, (uint64_t)(uintptr_t)fn, n);
    if (!j)
        return -ENOMEM;
    j->in = in;
    j->in_size = in_size;
    j->out = out;
    j->out_size = out_size;
    rc = job_prepare(j, default_chunksize(p, kind, n, chunksize));
    return submit_or_free(p, j, rc, cbs, res);
}

MP_API int mp_pool_map_array_async(mp_pool *p, mp_array_fn fn, const void *in, size_t in_size,
                                   size_t n, void *out, size_t out_size, size_t chunksize,
                                   const mp_callbacks *cbs, mp_result **result)
{
    return array_job(p, K_MAP, fn, in, in_size, n, out, out_size, chunksize, cbs, result);
}

MP_API int mp_pool_imap_array(mp_pool *p, mp_array_fn fn, const void *in, size_t in_size, size_t n,
                              void *out, size_t out_size, size_t chunksize, mp_imap **it)
{
    if (it)
        *it = NULL;
    return array_job(p, K_IMAP, fn, in, in_size, n, out, out_size, chunksize, NULL,
                     (mp_result **)it);
}

MP_API int mp_pool_imap_unordered_array(mp_pool *p, mp_array_fn fn, const void *in, size_t in_size,
                                        size_t n, void *out, size_t out_size, size_t chunksize,
                                        mp_imap **it)
{
    if (it)
        *it = NULL;
    return array_job(p, K_IMAPU, fn, in, in_size, n, out, out_size, chunksize, NULL,
                     (mp_result **)it);
}

static bool is_seq(const mp_obj *o)
{
    int t = mp_obj_type(o);
    return t == MP_TYPE_LIST || t == MP_TYPE_TUPLE;
}

MP_API int mp_pool_apply_async(mp_pool *p, mp_obj_fn fn, const mp_obj *args,
                               const mp_callbacks *cbs, mp_result **out)
{
    if (out)
        *out = NULL;
    int rc = pool_check(p);
    if (rc < 0)
        return rc;
    if (!fn || !out || (args && !is_seq(args)))
        return -EINVAL;
    struct mp_result *j = job_new(p, K_APPLY, F_OBJ_APPLY, (uint64_t)(uintptr_t)fn, 1);
    if (!j)
        return -ENOMEM;
    rc = job_prepare(j, 1);
    if (rc == 0) {
        mp_obj *empty = args ? NULL : mp_obj_tuple_new();
        rc = args || empty ? blob_pickle(j, args ? args : empty, true) : -ENOMEM;
        mp_obj_free(empty);
    }
    return submit_or_free(p, j, rc, cbs, out);
}

static int obj_job(mp_pool *p, int kind, int form, mp_obj_fn fn, const mp_obj *items,
                   size_t chunksize, const mp_callbacks *cbs, mp_result **out)
{
    if (out)
        *out = NULL;
    int rc = pool_check(p);
    if (rc < 0)
        return rc;
    if (!fn || !out || !is_seq(items))
        return -EINVAL;
    size_t n = (size_t)mp_obj_len(items);
    struct mp_result *j = job_new(p, kind, form, (uint64_t)(uintptr_t)fn, n);
    if (!j)
        return -ENOMEM;
    rc = job_prepare(j, default_chunksize(p, kind, n, chunksize));
    if (rc == 0)
        rc = blob_pickle(j, items, false);
    return submit_or_free(p, j, rc, cbs, out);
}

MP_API int mp_pool_map_async(mp_pool *p, mp_obj_fn fn, const mp_obj *items, size_t chunksize,
                             const mp_callbacks *cbs, mp_result **out)
{
    return obj_job(p, K_MAP, F_OBJ_MAP, fn, items, chunksize, cbs, out);
}

MP_API int mp_pool_starmap_async(mp_pool *p, mp_obj_fn fn, const mp_obj *items, size_t chunksize,
                                 const mp_callbacks *cbs, mp_result **out)
{
    return obj_job(p, K_MAP, F_OBJ_STAR, fn, items, chunksize, cbs, out);
}

MP_API int mp_pool_imap(mp_pool *p, mp_obj_fn fn, const mp_obj *items, size_t chunksize,
                        mp_imap **it)
{
    if (it)
        *it = NULL;
    return obj_job(p, K_IMAP, F_OBJ_MAP, fn, items, chunksize, NULL, (mp_result **)it);
}

MP_API int mp_pool_imap_unordered(mp_pool *p, mp_obj_fn fn, const mp_obj *items, size_t chunksize,
                                  mp_imap **it)
{
    if (it)
        *it = NULL;
    return obj_job(p, K_IMAPU, F_OBJ_MAP, fn, items, chunksize, NULL, (mp_result **)it);
}

/* ---- results ------------------------------------------------------------------- */

/* The outcome is visible to this thread (j->mu held): ready, or we are the
 * callback running for it. */
static bool visible(const struct mp_result *j)
{
    return j->ready || (j->in_cb && pthread_equal(j->cb_thread, pthread_self()));
}

static int wait_visible(struct mp_result *j, int64_t deadline)
{
    while (!visible(j))
        if (!cond_wait_until(&j->cv, &j->mu, deadline))
            return MP_ETIMEDOUT;
    return 0;
}

static void fill_err(mp_task_error *err, const struct fail *f)
{
    if (!err)
        return;
    err->status = f->status;
    err->code = f->code;
    err->index = f->index;
    snprintf(err->message, sizeof err->message, "%s", f->msg);
}

static void clear_err(mp_task_error *err)
{
    if (err)
        memset(err, 0, sizeof *err);
}

/*
 * Stop a job the caller no longer waits for: nothing more is read from or
 * written to its arrays, and chunks not yet sent are cancelled (by the
 * dispatcher, which sees the flag).
 */
static void job_abandon(struct mp_result *j)
{
    pthread_mutex_lock(&j->mu);
    bool finished = j->finished;
    mp_pool *p = j->pool;
    j->abandoned = true;
    pthread_mutex_unlock(&j->mu);
    if (finished || !p)
        return;
    pthread_mutex_lock(&p->mu);
    j->cancelled = true;
    pool_wake_dispatcher_locked(p);
    pthread_mutex_unlock(&p->mu);
}

static int result_get(mp_result *r, double timeout, mp_task_error *err)
{
    clear_err(err);
    int rc = job_check(r);
    if (rc < 0)
        return rc;
    if (r->kind == K_IMAP || r->kind == K_IMAPU)
        return -EINVAL;
    if (mp__bad_timeout(timeout))
        return MP_EVALUE;
    int64_t deadline = mp__deadline(timeout);
    pthread_mutex_lock(&r->mu);
    rc = wait_visible(r, deadline);
    if (rc == 0 && r->status != 0) {
        rc = r->status;
        fill_err(err, &r->first);
    }
    pthread_mutex_unlock(&r->mu);
    return rc;
}

MP_API int mp_result_get(mp_result *r, double timeout, const mp_obj **value, mp_task_error *err)
{
    if (value)
        *value = NULL;
    int rc = result_get(r, timeout, err);
    if (rc == 0 && value)
        *value = r->value;
    return rc;
}

MP_API int mp_result_get_bytes(mp_result *r, double timeout, const void **out, size_t *out_len,
                               mp_task_error *err)
{
    if (out)
        *out = NULL;
    if (out_len)
        *out_len = 0;
    if (r && r->form != F_BYTES)
        return -EINVAL;
    int rc = result_get(r, timeout, err);
    if (rc == 0) {
        if (out)
            *out = r->bytes_out;
        if (out_len)
            *out_len = r->bytes_len;
    }
    return rc;
}

MP_API int mp_result_wait(mp_result *r, double timeout)
{
    int rc = job_check(r);
    if (rc < 0)
        return rc;
    if (mp__bad_timeout(timeout))
        return MP_EVALUE;
    int64_t deadline = mp__deadline(timeout);
    pthread_mutex_lock(&r->mu);
    rc = wait_visible(r, deadline);
    pthread_mutex_unlock(&r->mu);
    return rc;
}

MP_API int mp_result_ready(mp_result *r)
{
    int rc = job_check(r);
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&r->mu);
    rc = visible(r) ? 1 : 0;
    pthread_mutex_unlock(&r->mu);
    return rc;
}

MP_API int mp_result_successful(mp_result *r)
{
    int rc = job_check(r);
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&r->mu);
    rc = !visible(r) ? MP_EVALUE : r->status == 0;
    pthread_mutex_unlock(&r->mu);
    return rc;
}

MP_API void mp_result_free(mp_result *r)
{
    if (!r || r->gen != mp__forkgen())
        return; /* in a forked child the copy is left alone */
    job_unref(r);
}

/* Wait for a job made by a blocking call; abandon it on timeout. The
 * caller's reference is dropped unless the call succeeded (rc 0 keeps it
 * for taking the value). */
static int sync_wait(mp_result *j, double timeout, mp_task_error *err)
{
    int rc = result_get(j, timeout, err);
    if (rc == MP_ETIMEDOUT) {
        job_abandon(j);
        if (err)
            err->status = err->code = MP_ETIMEDOUT;
    }
    if (rc != 0)
        job_unref(j);
    return rc;
}

MP_API int mp_pool_apply_bytes(mp_pool *p, mp_bytes_fn fn, const void *in, size_t in_len,
                               void **out, size_t *out_len, double timeout, mp_task_error *err)
{
    clear_err(err);
    if (out)
        *out = NULL;
    if (out_len)
        *out_len = 0;
    if (!out || !out_len)
        return -EINVAL;
    int rc = sync_check(p, timeout);
    if (rc < 0)
        return rc;
    mp_result *r;
    rc = mp_pool_apply_bytes_async(p, fn, in, in_len, NULL, &r);
    if (rc < 0)
        return rc;
    rc = sync_wait(r, timeout, err);
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&r->mu);
    *out = r->bytes_out ? r->bytes_out : malloc(1);
    *out_len = r->bytes_len;
    r->bytes_out = NULL;
    pthread_mutex_unlock(&r->mu);
    job_unref(r);
    return *out ? 0 : -ENOMEM;
}

MP_API int mp_pool_map_array(mp_pool *p, mp_array_fn fn, const void *in, size_t in_size, size_t n,
                             void *out, size_t out_size, size_t chunksize, double timeout,
                             mp_task_error *err)
{
    clear_err(err);
    int rc = sync_check(p, timeout);
    if (rc < 0)
        return rc;
    mp_result *r;
    rc = mp_pool_map_array_async(p, fn, in, in_size, n, out, out_size, chunksize, NULL, &r);
    if (rc < 0)
        return rc;
    rc = sync_wait(r, timeout, err);
    if (rc == 0)
        job_unref(r);
    return rc;
}

/* Take the value out of a finished job made by a blocking call. */
static int take_value(mp_result *r, mp_obj **result)
{
    pthread_mutex_lock(&r->mu);
    *result = r->value;
    r->value = NULL;
    pthread_mutex_unlock(&r->mu);
    job_unref(r);
    return 0;
}

MP_API int mp_pool_apply(mp_pool *p, mp_obj_fn fn, const mp_obj *args, mp_obj **result,
                         double timeout, mp_task_error *err)
{
    clear_err(err);
    if (result)
        *result = NULL;
    if (!result)
        return -EINVAL;
    int rc = sync_check(p, timeout);
    if (rc < 0)
        return rc;
    mp_result *r;
    rc = mp_pool_apply_async(p, fn, args, NULL, &r);
    if (rc < 0)
        return rc;
    rc = sync_wait(r, timeout, err);
    return rc < 0 ? rc : take_value(r, result);
}

static int sync_map(mp_pool *p, int form, mp_obj_fn fn, const mp_obj *items, size_t chunksize,
                    mp_obj **results, double timeout, mp_task_error *err)
{
    clear_err(err);
    if (results)
        *results = NULL;
    if (!results)
        return -EINVAL;
    int rc = sync_check(p, timeout);
    if (rc < 0)
        return rc;
    mp_result *r;
    rc = obj_job(p, K_MAP, form, fn, items, chunksize, NULL, &r);
    if (rc < 0)
        return rc;
    rc = sync_wait(r, timeout, err);
    return rc < 0 ? rc : take_value(r, results);
}

MP_API int mp_pool_map(mp_pool *p, mp_obj_fn fn, const mp_obj *items, size_t chunksize,
                       mp_obj **results, double timeout, mp_task_error *err)
{
    return sync_map(p, F_OBJ_MAP, fn, items, chunksize, results, timeout, err);
}

MP_API int mp_pool_starmap(mp_pool *p, mp_obj_fn fn, const mp_obj *items, size_t chunksize,
                           mp_obj **results, double timeout, mp_task_error *err)
{
    return sync_map(p, F_OBJ_STAR, fn, items, chunksize, results, timeout, err);
}

/* ---- imap iterators ------------------------------------------------------------- */

/* Hand out item idx (j->mu held): 1, or its failure status. */
static int imap_take(struct mp_result *j, size_t idx, size_t *index, mp_obj **value,
                     mp_task_error *err)
{
    if (index)
        *index = idx;
    if (j->st[idx] == I_FAIL) {
        j->st[idx] = I_TAKEN;
        if (j->fidx && j->nfails > j->fidx[idx] && j->fails[j->fidx[idx]].index == idx) {
            fill_err(err, &j->fails[j->fidx[idx]]);
            return j->fails[j->fidx[idx]].status;
        }
        if (err) {
            err->status = err->code = MP_ETASK;
            err->index = idx;
        }
        return MP_ETASK;
    }
    j->st[idx] = I_TAKEN;
    if (j->vals) {
        if (value) {
            *value = j->vals[idx] ? j->vals[idx] : mp_obj_none();
        } else {
            mp_obj_free(j->vals[idx]);
        }
        j->vals[idx] = NULL;
    }
    return 1;
}

MP_API int mp_imap_next(mp_imap *it, double timeout, size_t *index, mp_obj **value,
                        mp_task_error *err)
{
    if (value)
        *value = NULL;
    clear_err(err);
    struct mp_result *j = it ? &it->job : NULL;
    int rc = job_check(j);
    if (rc < 0)
        return rc;
    if (mp__bad_timeout(timeout))
        return MP_EVALUE;
    int64_t deadline = mp__deadline(timeout);
    pthread_mutex_lock(&j->mu);
    for (;;) {
        if (j->cursor == j->n) {
            rc = 0;
            break;
        }
        if (j->kind == K_IMAP) {
            if (j->st[j->cursor] != I_PENDING) {
                rc = imap_take(j, j->cursor++, index, value, err);
                break;
            }
        } else if (j->cursor < j->norder) {
            rc = imap_take(j, j->order[j->cursor++], index, value, err);
            break;
        }
        if (j->finished) {
            /* Finished with this item missing: the pool was terminated. */
            rc = j->status < 0 ? j->status : MP_ETERMINATED;
            fill_err(err, &j->first);
            break;
        }
        if (!cond_wait_until(&j->cv, &j->mu, deadline)) {
            rc = MP_ETIMEDOUT;
            break;
        }
    }
    pthread_mutex_unlock(&j->mu);
    return rc;
}

MP_API void mp_imap_free(mp_imap *it)
{
    if (!it || it->job.gen != mp__forkgen())
        return;
    job_abandon(&it->job);
    job_unref(&it->job);
}
