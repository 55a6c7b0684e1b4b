/*
 * pool_dispatch.c - the dispatcher thread: the only sender of tasks. It
 * fills each live worker's window with batches of chunks, asks the fork
 * server for workers (and replacements), sends exit on close and signals on
 * terminate. pool_result.c is its counterpart; pool_impl.h lists the rest.
 */
#include "pool/pool_impl.h"

#include <signal.h>
#include <stdio.h>

/* Ask the fork server for a worker in slot w (p->mu held). */
static void pool_spawn_worker_locked(mp_pool *p, struct worker *w)
{
    MP__POOL_ASSERT_HELD(p);
    MP__ASSERT(w->state == W_NONE);
    w->k = ++p->next_k;
    snprintf(w->name, sizeof w->name, "PoolWorker-%u", (unsigned)w->k);
    w->pid = 0;
    w->state = W_SPAWNING;
    __atomic_store_n(&p->slots[w->idx].ready, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&p->slots[w->idx].running, 0, __ATOMIC_RELAXED);
    if (mp__pool_forkserver_send(p, Z_SPAWN, w, 0) < 0) {
        /* The server is gone; the result thread sees it and stops all. */
        w->state = W_NONE;
        p->spawn_after = mp__now_ns() + INT64_C(100000000);
    }
}

/* Free a dead worker's connection (p->mu held; the dispatcher only). */
static void pool_release_worker_locked(mp_pool *p, struct worker *w)
{
    MP__POOL_ASSERT_HELD(p);
    MP__ASSERT(w->state == W_DEAD);
    MP__ASSERT(w->count == 0); /* the result thread took its FIFO */
    (void)p;
    mp_conn_free(w->conn);
    w->conn = NULL;
    w->pid = 0;
    w->state = W_NONE;
}

/* Append one chunk to the batch being built, and to w's FIFO (p->mu held). */
static int pool_encode_chunk(mp_pool *p, size_t *blen, struct worker *w, struct mp_result *j,
                             size_t chunk, size_t *bytes)
{
    MP__POOL_ASSERT_HELD(p);
    MP__ASSERT(w->count < WINDOW_MAX);
    size_t start, count;
    mp__pool_chunk_range(j, chunk, &start, &count);
    size_t len = mp__pool_chunk_payload(j, start, count);
    size_t need = *blen + sizeof(struct wire_task) + mp__pool_pad16(len);
    if (mp__pool_grow(&p->batch, &p->batch_cap, need) < 0)
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
    memset(q + len, 0, mp__pool_pad16(len) - len);
    *blen = need;
    *bytes = sizeof t + mp__pool_pad16(len);
    unsigned slot = (w->head + w->count) % WINDOW_MAX;
    w->fifo[slot] = (struct flight){.job = j, .chunk = chunk, .bytes = *bytes, .seq = t.seq};
    w->count++;
    w->inflight_bytes += *bytes;
    w->sent++;
    mp__pool_job_ref(j);
    return 0;
}

/* Pop the pending head: its chunks are all handed out (p->mu held). */
static void pool_pending_pop_locked(mp_pool *p)
{
    MP__POOL_ASSERT_HELD(p);
    struct mp_result *j = mp__list_pop_front(&p->pending);
    MP__ASSERT(j != NULL);
}

/*
 * The next chunk to send, r (a retry) or the pending head's next chunk,
 * belongs to a job whose caller gave up: cancel it, or all that is left of
 * the job, instead of sending it (its arrays are not ours any more).
 * p->mu is held on entry and exit, released around the job's bookkeeping.
 */
static void pool_cancel_next_locked(mp_pool *p, struct retry *r, struct mp_result *j)
{
    MP__POOL_ASSERT_HELD(p);
    size_t k;
    if (r) {
        p->retry_head = r->next;
        free(r);
        k = 1;
    } else {
        k = j->nchunks - j->next_chunk;
        j->next_chunk = j->nchunks;
        pool_pending_pop_locked(p);
        mp__pool_job_ref(j);
    }
    MP__ASSERT(p->pend_chunks >= k);
    p->pend_chunks -= k;
    mp__pool_unlock(p);
    mp__pool_job_chunks_done(p, j, k);
    mp__pool_job_unref(j); /* the retry's reference, or the one taken above */
    mp__pool_lock(p);
}

/* The window for worker w: the chunks it may have in flight (p->mu held). */
static unsigned pool_worker_window_locked(const mp_pool *p, const struct worker *w)
{
    MP__POOL_ASSERT_HELD(p);
    unsigned win = (unsigned)mp__pool_window(p);
    if (p->maxtasks) {
        unsigned long left = (unsigned long)p->maxtasks - w->sent;
        if (left < win)
            win = (unsigned)left;
    }
    return win;
}

/*
 * Fill worker w's window with a batch and send it. p->mu is held on entry
 * and exit, released around the send and around cancelling abandoned work.
 * Returns true if it did anything.
 */
static bool pool_fill_worker_locked(mp_pool *p, struct worker *w)
{
    MP__POOL_ASSERT_HELD(p);
    unsigned win = pool_worker_window_locked(p, w);
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
        } else if ((j = mp__list_first(&p->pending)) != NULL) {
            chunk = j->next_chunk;
        } else {
            break;
        }
        if (j->cancelled) {
            pool_cancel_next_locked(p, r, j);
            did = true;
            continue;
        }
        size_t start, count;
        mp__pool_chunk_range(j, chunk, &start, &count);
        size_t len =
            sizeof(struct wire_task) + mp__pool_pad16(mp__pool_chunk_payload(j, start, count));
        if ((w->count > 0 || blen > 0) && w->inflight_bytes + len > INFLIGHT_BYTES_MAX)
            break;
        size_t bytes;
        if (pool_encode_chunk(p, &blen, w, j, chunk, &bytes) < 0)
            break;
        MP__ASSERT(p->pend_chunks > 0);
        p->pend_chunks--;
        if (r) {
            p->retry_head = r->next;
            mp__pool_job_unref(j); /* the flight took its own reference */
            free(r);
        } else if (++j->next_chunk == j->nchunks) {
            pool_pending_pop_locked(p);
        }
    }
    if (blen == 0)
        return did;
    mp_conn *c = w->conn;
    mp__pool_unlock(p);
    /* A failure means the worker is gone: its chunks stay in its FIFO and
     * the result thread requeues them when it sees the death. */
    (void)mp_conn_send_bytes(c, p->batch, blen);
    mp__pool_lock(p);
    return true;
}

/* Tell worker w to exit once its chunks are done (p->mu held on entry and
 * exit, released around the send). */
static void pool_send_exit_locked(mp_pool *p, struct worker *w)
{
    MP__POOL_ASSERT_HELD(p);
    MP__ASSERT(w->state == W_LIVE && !w->exit_sent);
    struct wire_task t = {.kind = MSG_EXIT};
    w->exit_sent = true;
    mp_conn *c = w->conn;
    mp__pool_unlock(p);
    (void)mp_conn_send_bytes(c, &t, sizeof t);
    mp__pool_lock(p);
}

static bool pool_alive(const struct worker *w)
{
    return w->state == W_LIVE || w->state == W_SPAWNING;
}

/* Free the dead workers' connections; returns how many workers are alive
 * or on their way (p->mu held). */
static int pool_reap_slots_locked(mp_pool *p)
{
    MP__POOL_ASSERT_HELD(p);
    int live = 0;
    for (int i = 0; i < p->nproc; i++) {
        if (p->w[i].state == W_DEAD)
            pool_release_worker_locked(p, &p->w[i]);
        if (pool_alive(&p->w[i]))
            live++;
    }
    return live;
}

/* Keep *wake at the earliest deadline. */
static void pool_wake_at(int64_t *wake, int64_t at)
{
    if (*wake == MP__NO_DEADLINE || at < *wake)
        *wake = at;
}

/* terminate(): SIGTERM to every worker, then SIGKILL to those still there
 * KILL_GRACE_NS later (p->mu held). */
static void pool_signal_workers_locked(mp_pool *p, int64_t *wake)
{
    MP__POOL_ASSERT_HELD(p);
    int64_t now = mp__now_ns();
    for (int i = 0; i < p->nproc; i++) {
        struct worker *w = &p->w[i];
        if (!pool_alive(w))
            continue;
        if (!w->term_sent) {
            (void)mp__pool_forkserver_send(p, Z_KILL, w, SIGTERM);
            w->term_sent = true;
            w->kill_at = now + KILL_GRACE_NS;
        } else if (now >= w->kill_at) {
            (void)mp__pool_forkserver_send(p, Z_KILL, w, SIGKILL);
            w->kill_at = now + KILL_GRACE_NS;
        }
        pool_wake_at(wake, w->kill_at);
    }
}

/* A running pool: spawn into empty slots, then fill the windows (p->mu
 * held). Returns true if it did anything. */
static bool pool_dispatch_round_locked(mp_pool *p, int64_t *wake)
{
    MP__POOL_ASSERT_HELD(p);
    bool did = false;
    for (int i = 0; i < p->nproc && p->state != P_TERMINATE; i++) {
        if (p->w[i].state != W_NONE)
            continue;
        if (mp__now_ns() < p->spawn_after) {
            pool_wake_at(wake, p->spawn_after);
            break;
        }
        pool_spawn_worker_locked(p, &p->w[i]);
        did = true;
    }
    /* Start with a different worker each round, so that single tasks
     * spread over the pool instead of all going to the first idle worker. */
    int first = (int)(p->rr++ % (unsigned)p->nproc);
    for (int k = 0; k < p->nproc && p->state != P_TERMINATE; k++) {
        struct worker *w = &p->w[(first + k) % p->nproc];
        if (w->state == W_LIVE && !w->eof && !w->exit_sent && pool_fill_worker_locked(p, w))
            did = true;
    }
    return did;
}

/* Nothing to do: sleep until woken or until wake (p->mu held). A
 * submission only needs to wake us when we sleep for want of work; with
 * the windows full, a result opening room does. */
static void pool_dispatcher_sleep_locked(mp_pool *p, int64_t wake)
{
    MP__POOL_ASSERT_HELD(p);
    p->disp_wake_chunks = SIZE_MAX;
    unsigned half = (unsigned)mp__pool_window(p) / 2, low = mp__pool_low(p);
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
    (void)mp__pool_wait_until(p, &p->disp_cv, wake);
    p->disp_waiting = false;
}

void *mp__pool_dispatcher_main(void *arg)
{
    mp_pool *p = arg;
    mp__pool_lock(p);
    for (;;) {
        bool did = false;
        int64_t wake = MP__NO_DEADLINE;
        int live = pool_reap_slots_locked(p);
        if (p->state == P_TERMINATE) {
            pool_signal_workers_locked(p, &wake);
            if (live == 0)
                break;
        } else if (p->state == P_CLOSE && p->ncache == 0) {
            for (int i = 0; i < p->nproc; i++) {
                struct worker *w = &p->w[i];
                if (w->state == W_LIVE && !w->exit_sent) {
                    pool_send_exit_locked(p, w);
                    did = true;
                }
            }
            if (live == 0)
                break;
        } else {
            did = pool_dispatch_round_locked(p, &wake);
        }
        if (!did)
            pool_dispatcher_sleep_locked(p, wake);
    }
    (void)pool_reap_slots_locked(p);
    for (int i = 0; i < p->nproc; i++)
        MP__ASSERT(p->w[i].state == W_NONE); /* every worker is gone */
    /* The fork server may go too (mp_pool_join reaps it, in the caller's
     * thread). */
    (void)mp__pool_forkserver_send(p, Z_EXIT, NULL, 0);
    p->disp_done = true;
    mp__pool_notify_result_locked(p);
    pthread_cond_broadcast(&p->done_cv);
    mp__pool_unlock(p);
    return NULL;
}
