/*
 * pool_impl.h - what the pool's files share: its structs, the wire between
 * the pool and its processes, and the small helpers the hot paths inline.
 * Private to src/pool/, never installed. The public contract is
 * include/mpipc/pool.h.
 *
 * The files (one job each):
 *   pool.c            the pool's life: new, close, terminate, join, free;
 *   pool_submit.c     handing work in: apply/map/imap, async and blocking;
 *   pool_job.c        the job (mp_result, mp_imap): its references, its
 *                     outcome, and the caller's waits on it;
 *   pool_dispatch.c   the dispatcher thread: sends chunks, asks for workers;
 *   pool_result.c     the result thread: results, deaths, callbacks;
 *   pool_forkserver.c the fork server process, and the pool's requests to it;
 *   pool_worker.c     the worker process: runs chunks, sends results;
 *   pool_lazy.c       imap over a producer (mp_pool_imap_gen): a bounded
 *                     FIFO of segment jobs, refilled as they are consumed.
 *
 * Names: a function static to one file starts with pool_ (pool_deliver);
 * one that the files share starts with mp__pool_ and is declared (or, for
 * the hot paths, defined static inline) here.
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
 * Lock order: pool->mu before a job's mu; no thread holds a job's mu while
 * it takes pool->mu (debug builds check it in mp__pool_lock). User code
 * (callbacks) runs with no lock held. A function whose name ends in _locked
 * is called with pool->mu held (debug builds check that too).
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
#ifndef MPIPC_POOL_IMPL_H
#define MPIPC_POOL_IMPL_H

#include "core/internal.h"
#include "core/io.h"
#include "core/list.h"
#include "pool/pool_ext.h"
#include "process/start.h"

#include <mpipc/conn.h>
#include <mpipc/listener.h>
#include <mpipc/pool.h>
#include <mpipc/process.h>

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/uio.h>

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
/* The receive buffers (result thread, worker) start at this size. */
#define RECV_BUF_START ((size_t)64 * 1024)

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

/* Where a lazy imap (pool_lazy.c) waits for any of its segment jobs: each
 * job it made bumps seq and broadcasts cv whenever its chunks progress.
 * mu is a leaf lock: taken with a job's mu held, never the other way. */
struct mp__pool_wake {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t seq;
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
    struct mp__list_node pnode; /* in the pending queue while chunks are unsent */
    struct mp__list_node cnode; /* in the cache while unfinished */
    bool cancelled;             /* no more chunks to send (the caller gave up) */
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
    struct mp__pool_wake *wake; /* a lazy imap's segment: also wake this (mu) */
    struct iovec *iov_out;      /* bytes map/imap: the caller's outputs */
};

/* An imap iterator: a job, or (lazy != NULL) a lazy imap over a producer,
 * of whose job only gen is used. */
struct mp_imap {
    struct mp_result job;
    struct mp__pool_lazy *lazy;
};

/* A chunk sent to a worker, awaiting its result (the worker's FIFO). */
struct flight {
    struct mp_result *job;
    size_t chunk;
    size_t bytes;
    uint32_t seq;
};

/* A chunk to send again: its worker died before starting it. */
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
    /* Debug builds only (MPIPC_ASSERTS): who holds mu. */
    pthread_t mu_holder;
    bool mu_held;
    unsigned gen;
    pid_t owner;
    int nproc;
    int maxtasks;
    void (*init)(void *);
    void *initarg;
    int state;
    struct worker *w;
    struct slot *slots;
    int slots_fd;             /* the slots' file (forkserver method: mapped by the
                               * pool's server, which fork does not give them), or -1 */
    const mp_context *fs_ctx; /* forkserver and spawn methods: the server's
                               * context; NULL: the pool forks its server */
    bool by_id;               /* spawn: tasks travel as their registry ids */
    struct mp__list pending;  /* jobs with chunks to send, FIFO */
    struct retry *retry_head; /* chunks to send again, first */
    struct mp__list cache;    /* unfinished jobs, the newest first */
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
    struct mp__pool_ext ext; /* ext.start: workers served by it (pool_ext.h) */
};

/* ---- locks and waits (pool.c) ------------------------------------------------ */

/* A condition variable on CLOCK_MONOTONIC: 0 or -ENOMEM. */
int mp__pool_cond_init(pthread_cond_t *cv);

/* Wait on cv until the deadline. Returns false once it has passed. */
bool mp__pool_cond_wait_until(pthread_cond_t *cv, pthread_mutex_t *mu, int64_t deadline);

#ifdef MPIPC_ASSERTS
/* How many job mutexes this thread holds (pool_job.c; debug builds). */
extern _Thread_local unsigned mp__pool_job_locks;
#endif

/* Does the calling thread hold p->mu? Only debug builds know (the answer
 * is for MP__ASSERT, which release builds do not evaluate). */
static inline bool mp__pool_held(const mp_pool *p)
{
    return p->mu_held && pthread_equal(p->mu_holder, pthread_self());
}

#define MP__POOL_ASSERT_HELD(p) MP__ASSERT(mp__pool_held(p))

/* Record that the calling thread now holds p->mu (held) or is about to
 * release it (debug builds). */
static inline void mp__pool_note(mp_pool *p, bool held)
{
#ifdef MPIPC_ASSERTS
    MP__ASSERT(held ? !p->mu_held : mp__pool_held(p));
    p->mu_holder = pthread_self();
    p->mu_held = held;
#else
    (void)p;
    (void)held;
#endif
}

static inline void mp__pool_lock(mp_pool *p)
{
#ifdef MPIPC_ASSERTS
    MP__ASSERT(mp__pool_job_locks == 0); /* the lock order */
#endif
    pthread_mutex_lock(&p->mu);
    mp__pool_note(p, true);
}

static inline void mp__pool_unlock(mp_pool *p)
{
    mp__pool_note(p, false);
    pthread_mutex_unlock(&p->mu);
}

/* Wait on one of the pool's condition variables (p->mu held) until the
 * deadline. Returns false once it has passed. */
static inline bool mp__pool_wait_until(mp_pool *p, pthread_cond_t *cv, int64_t deadline)
{
    mp__pool_note(p, false);
    bool r = mp__pool_cond_wait_until(cv, &p->mu, deadline);
    mp__pool_note(p, true);
    return r;
}

static inline void mp__pool_job_lock(struct mp_result *j)
{
    pthread_mutex_lock(&j->mu);
#ifdef MPIPC_ASSERTS
    mp__pool_job_locks++;
#endif
}

static inline void mp__pool_job_unlock(struct mp_result *j)
{
#ifdef MPIPC_ASSERTS
    MP__ASSERT(mp__pool_job_locks > 0);
    mp__pool_job_locks--;
#endif
    pthread_mutex_unlock(&j->mu);
}

/* ---- small helpers every part uses ----------------------------------------------- */

static inline int mp__pool_check(const mp_pool *p)
{
    if (!p)
        return -EINVAL;
    return p->gen == mp__forkgen() ? 0 : MP_EFORKED;
}

static inline size_t mp__pool_pad16(size_t n)
{
    return (n + 15) & ~(size_t)15;
}

/* Grow *buf (doubling, from 4 KiB) to hold need bytes: 0 or -ENOMEM. */
static inline int mp__pool_grow(unsigned char **buf, size_t *cap, size_t need)
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

/* Read a u64 at *p (advancing it): 0, or MP_EPROTO when end comes first. */
static inline int mp__pool_rd_u64(const unsigned char **p, const unsigned char *end, uint64_t *v)
{
    if ((size_t)(end - *p) < sizeof *v)
        return MP_EPROTO;
    memcpy(v, *p, sizeof *v);
    *p += sizeof *v;
    return 0;
}

/* The chunks a worker is given ahead, by the workers' measured speed. */
static inline int64_t mp__pool_window(const mp_pool *p)
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
static inline unsigned mp__pool_low(const mp_pool *p)
{
    unsigned low = (unsigned)mp__pool_window(p) / 8;
    return low ? low : 1;
}

static inline void mp__pool_wake_dispatcher_locked(mp_pool *p)
{
    MP__POOL_ASSERT_HELD(p);
    if (p->disp_waiting)
        pthread_cond_signal(&p->disp_cv);
}

/* ---- jobs (pool_job.c) ---------------------------------------------------------- */

/* The items of one chunk: [*start, *start + *count). */
static inline void mp__pool_chunk_range(const struct mp_result *j, size_t chunk, size_t *start,
                                        size_t *count)
{
    MP__ASSERT(chunk < j->nchunks);
    *start = chunk * j->chunksize;
    size_t left = j->n - *start;
    *count = left < j->chunksize ? left : j->chunksize;
}

/* The bytes of input items [start, start + count) on the wire. */
static inline size_t mp__pool_chunk_payload(const struct mp_result *j, size_t start, size_t count)
{
    if (j->form == F_ARRAY)
        return count * j->in_size;
    return j->offs[start + count] - j->offs[start];
}

static inline void mp__pool_job_ref(struct mp_result *j)
{
    int old = __atomic_fetch_add(&j->refs, 1, __ATOMIC_RELAXED);
    MP__ASSERT(old > 0); /* only a holder of a reference takes another */
    (void)old;
}

/* An item is done (j->mu held): mark it for imap and wake a waiting next(). */
static inline void mp__pool_job_item_done(struct mp_result *j, size_t index, bool ok)
{
    MP__ASSERT(index < j->n);
    if (j->st) {
        j->st[index] = ok ? I_OK : I_FAIL;
        if (j->order) {
            MP__ASSERT(j->norder < j->n);
            j->order[j->norder++] = index;
        }
    }
}

/*
 * The fn field a job of this form sends (pool_job.c): the address, or
 * under spawn (p->by_id) the task's registry id. MP_EKEY, with a message
 * naming MP_TASK, when a spawn pool's task is not registered.
 */
int mp__pool_task_ref(const mp_pool *p, int form, uint64_t fn, uint64_t *ref);

int mp__pool_job_new(struct mp_result **out, mp_pool *p, int kind, int form, uint64_t fn, size_t n,
                     size_t chunksize);
void mp__pool_job_unref(struct mp_result *j);
void mp__pool_job_record_fail(struct mp_result *j, size_t index, int status, int code,
                              const char *msg);
void mp__pool_job_finish(mp_pool *p, struct mp_result *j, bool term);
void mp__pool_job_chunks_done(mp_pool *p, struct mp_result *j, size_t k);
void mp__pool_job_fail_chunk(mp_pool *p, struct mp_result *j, size_t chunk, int status, int code,
                             size_t at, const char *msg);
void mp__pool_job_abandon(struct mp_result *j);
void mp__pool_cache_add_locked(mp_pool *p, struct mp_result *j);
int mp__pool_result_get(mp_result *r, double timeout, mp_task_error *err);
void mp__pool_clear_err(mp_task_error *err);
int mp__pool_imap_next_job(struct mp_result *j, size_t *index, mp_obj **value, mp_task_error *err,
                           int64_t deadline);

/* ---- lazy imap (pool_lazy.c, pool_submit.c) ----------------------------------- */

/* Submit items[0, n) (borrowed; pickled here) as one imap job of kind
 * K_IMAP or K_IMAPU that also wakes `wake`, accepted while the pool runs or
 * is closing (a lazy imap started before close). Returns 0 with *out;
 * MP_ECLOSED once terminated; -ENOMEM; a pickling error with *bad the
 * failing item's index (else *bad is n). */
int mp__pool_submit_items(mp_pool *p, int kind, mp_obj_fn fn, mp_obj *const *items, size_t n,
                          size_t chunksize, struct mp__pool_wake *wake, struct mp_result **out,
                          size_t *bad);
int mp__pool_lazy_next(mp_imap *it, size_t *index, mp_obj **value, mp_task_error *err,
                       double timeout);
void mp__pool_lazy_free(mp_imap *it);

/* ---- the pool (pool.c), the threads and the processes --------------------------- */

int mp__pool_sync_check(const mp_pool *p, double timeout);
void *mp__pool_dispatcher_main(void *arg);
void *mp__pool_result_main(void *arg);
void mp__pool_notify_result_locked(mp_pool *p);
int mp__pool_forkserver_main(void *arg);
int mp__pool_forkserver_start_shared(mp_pool *p, const mp_context *ctx);
int mp__pool_forkserver_send(mp_pool *p, uint32_t op, const struct worker *w, int arg);
void mp__pool_forkserver_reap(mp_pool *p);
int mp__pool_worker_main(void *arg);

#endif
