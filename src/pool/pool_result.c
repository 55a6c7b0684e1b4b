/*
 * pool_result.c - the result thread: the only receiver. It reads results
 * into their jobs, accepts workers as they connect back, reads the fork
 * server's news of spawns and deaths (and handles each death), fails
 * everything on terminate, and runs every callback (through the job's end).
 * pool_dispatch.c is its counterpart; pool_impl.h lists the rest.
 */
#include "pool/pool_impl.h"

#include "codec/pickle.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

/* Where a ready item of the wait set came from (owner[]; >= 0: a worker). */
enum { OWN_NOTIFY = -1, OWN_FORKSERVER = -2, OWN_LISTENER = -3 };

/* Wake the result thread (p->mu held): one byte on the notify pipe, unless
 * one is already on its way. */
void mp__pool_notify_result_locked(mp_pool *p)
{
    MP__POOL_ASSERT_HELD(p);
    if (p->notify_pending)
        return;
    p->notify_pending = true;
    char b = 1;
    struct iovec iov = {.iov_base = &b, .iov_len = 1};
    (void)mp__write_all(p->notify[1], &iov, 1, false, false);
}

/*
 * Worker w has less in flight than before (a result came back, or it has
 * just started): lower the dispatcher's wake-up threshold to match, and
 * wake it if the work already waiting reaches it (p->mu held). Without
 * this a dispatcher that went to sleep while every worker was busy would
 * sleep on after they ran dry.
 */
static void pool_note_room_locked(mp_pool *p, const struct worker *w)
{
    MP__POOL_ASSERT_HELD(p);
    unsigned half = (unsigned)mp__pool_window(p) / 2, low = mp__pool_low(p);
    size_t want = w->count < low ? 1 : w->count <= half ? (half ? half : 1) : SIZE_MAX;
    if (want < p->disp_wake_chunks)
        p->disp_wake_chunks = want;
    if (p->disp_waiting && p->pend_chunks > 0 && p->pend_chunks >= p->disp_wake_chunks) {
        p->disp_wake_chunks = SIZE_MAX;
        pthread_cond_signal(&p->disp_cv);
    }
}

/* ---- delivering a chunk's result ----------------------------------------------- */

/* Unpickle each item's result of a value-form chunk into vals (NULL for a
 * failed or undecodable item). Returns 0 or the first decoding error. */
static int pool_decode_values(const unsigned char *outs, size_t out_len, size_t count,
                              mp_obj **vals)
{
    const unsigned char *q = outs, *end = outs + out_len;
    int decode_rc = 0;
    mp__err_clear(); /* a why left from an earlier chunk is not this one's */
    for (size_t i = 0; i < count; i++) {
        vals[i] = NULL;
        uint64_t len;
        if (decode_rc == 0 && mp__pool_rd_u64(&q, end, &len) < 0)
            decode_rc = MP_EPROTO;
        if (decode_rc < 0 || len == FAILED_LEN)
            continue;
        if (len > (uint64_t)(end - q)) {
            decode_rc = MP_EPROTO;
            continue;
        }
        int rc = mp__pickle_loads(q, (size_t)len, &vals[i]);
        if (rc < 0)
            decode_rc = rc;
        q += len;
    }
    return decode_rc;
}

/* The next failure record of a chunk's result, at *fp: false at the end
 * of the list - every record read, or one cut short or naming an item
 * beyond count, where reading stops. */
static bool pool_next_fail(const unsigned char **fp, const unsigned char *end, size_t count,
                           struct wire_fail *wf, const unsigned char **msg)
{
    if ((size_t)(end - *fp) < sizeof *wf)
        return false;
    memcpy(wf, *fp, sizeof *wf);
    const unsigned char *m = *fp + sizeof *wf;
    if (wf->msg_len > (size_t)(end - m) || wf->item >= count)
        return false;
    *msg = m;
    *fp = m + wf->msg_len;
    return true;
}

/*
 * Mark the items a chunk's failure records name in failed (count bytes,
 * zeroed), before anything of the result is applied. An item named twice
 * is a protocol error (MP_EPROTO): our worker never sends one, and each
 * record counts its item done, so a repeat would count one item twice -
 * past the end of imap_unordered's completion order. The whole result is
 * refused instead.
 */
static int pool_mark_fails(size_t count, uint32_t nfail, const unsigned char *fp,
                           const unsigned char *end, unsigned char *failed)
{
    struct wire_fail wf;
    const unsigned char *msg;
    for (uint32_t k = 0; k < nfail && pool_next_fail(&fp, end, count, &wf, &msg); k++) {
        if (failed[wf.item])
            return MP_EPROTO;
        failed[wf.item] = 1;
    }
    return 0;
}

/* Record a chunk's failures (j->mu held, the job live), as
 * pool_mark_fails read them. */
static void pool_record_fails(struct mp_result *j, size_t start, size_t count, uint32_t nfail,
                              const unsigned char *fp, const unsigned char *end)
{
    struct wire_fail wf;
    const unsigned char *m;
    for (uint32_t k = 0; k < nfail && pool_next_fail(&fp, end, count, &wf, &m); k++) {
        char msg[MP_TASK_MSG_MAX];
        size_t keep = wf.msg_len < sizeof msg - 1 ? wf.msg_len : sizeof msg - 1;
        memcpy(msg, m, keep);
        msg[keep] = '\0';
        mp__pool_job_record_fail(j, start + wf.item, wf.status, wf.code, msg);
        mp__pool_job_item_done(j, start + wf.item, false);
    }
}

/* Array form (j->mu held): copy runs of successful items around the
 * failed ones into the caller's array. */
static void pool_deliver_array(struct mp_result *j, size_t start, size_t count,
                               const struct wire_result *h, const unsigned char *outs,
                               const unsigned char *failed)
{
    if (h->out_len != count * j->out_size) {
        mp__pool_job_record_fail(j, start, MP_EPROTO, MP_EPROTO, "malformed result from a worker");
        return;
    }
    unsigned char *dst = j->out + start * j->out_size;
    size_t i = 0;
    while (i < count) {
        if (failed[i]) {
            i++;
            continue;
        }
        size_t k = i;
        while (k < count && !failed[k])
            k++;
        memcpy(dst + i * j->out_size, outs + i * j->out_size, (k - i) * j->out_size);
        for (size_t m = i; m < k; m++)
            mp__pool_job_item_done(j, start + m, true);
        i = k;
    }
}

/* The items of a bytes chunk from `from` on that did not fail are lost
 * (j->mu held): a result that does not parse. */
static void pool_bytes_malformed(struct mp_result *j, size_t start, size_t from, size_t count,
                                 const unsigned char *failed)
{
    for (size_t i = from; i < count; i++) {
        if (failed[i])
            continue;
        mp__pool_job_record_fail(j, start + i, MP_EPROTO, MP_EPROTO,
                                 "malformed result from a worker");
        mp__pool_job_item_done(j, start + i, false);
    }
}

/* Bytes form (j->mu held): a copy of each output buffer, into the job
 * (apply) or the caller's outs (map, imap). */
static void pool_deliver_bytes(struct mp_result *j, size_t start, size_t count,
                               const struct wire_result *h, const unsigned char *outs,
                               const unsigned char *failed)
{
    const unsigned char *q = outs, *end = outs + h->out_len;
    for (size_t i = 0; i < count; i++) {
        uint64_t len;
        if (mp__pool_rd_u64(&q, end, &len) < 0 || (len != FAILED_LEN) == (bool)failed[i] ||
            (len != FAILED_LEN && len > (uint64_t)(end - q))) {
            pool_bytes_malformed(j, start, i, count, failed);
            return;
        }
        if (len == FAILED_LEN)
            continue;
        void *buf = malloc(len ? (size_t)len : 1);
        if (!buf) {
            mp__pool_job_record_fail(j, start + i, -ENOMEM, -ENOMEM, "out of memory");
            mp__pool_job_item_done(j, start + i, false);
            q += len;
            continue;
        }
        memcpy(buf, q, (size_t)len);
        q += len;
        if (j->iov_out) {
            j->iov_out[start + i] = (struct iovec){.iov_base = buf, .iov_len = (size_t)len};
        } else {
            free(j->bytes_out);
            j->bytes_out = buf;
            j->bytes_len = (size_t)len;
        }
        mp__pool_job_item_done(j, start + i, true);
    }
}

/* Value forms (j->mu held): move the decoded results into the job. */
static void pool_deliver_values(struct mp_result *j, size_t start, size_t count, mp_obj **vals,
                                int decode_rc, const unsigned char *failed)
{
    for (size_t i = 0; i < count; i++) {
        if (failed[i])
            continue;
        if (!vals[i]) {
            int rc = decode_rc < 0 ? decode_rc : MP_EPROTO;
            /* The decoder's why was recorded on this (the result) thread:
             * it travels to the caller in the failure's message. */
            const char *why = mp__err_msg(rc);
            char msg[MP_TASK_MSG_MAX];
            snprintf(msg, sizeof msg, "cannot decode the task's result%s%s", why ? ": " : "",
                     why ? why : "");
            mp__pool_job_record_fail(j, start + i, rc, rc, msg);
            mp__pool_job_item_done(j, start + i, false);
            continue;
        }
        j->vals[start + i] = vals[i];
        vals[i] = NULL;
        mp__pool_job_item_done(j, start + i, true);
    }
}

/*
 * Deliver one chunk's result message into its job. Decoding (unpickling)
 * happens before the job's lock is taken; copying into the caller's array
 * happens under it, so that an abandoned job is never written to.
 */
static void pool_deliver(mp_pool *p, struct mp_result *j, size_t chunk, const struct wire_result *h,
                         const unsigned char *body, size_t body_len)
{
    size_t start, count;
    mp__pool_chunk_range(j, chunk, &start, &count);
    if (h->count != count || h->out_len > body_len) {
        mp__pool_job_fail_chunk(p, j, chunk, MP_EPROTO, MP_EPROTO, 0,
                                "malformed result from a worker");
        return;
    }
    const unsigned char *outs = body, *fails = body + h->out_len, *end = body + body_len;

    /* Which items failed, read (and checked) before anything is applied. */
    unsigned char failed_small[64];
    unsigned char *failed = count <= sizeof failed_small ? failed_small : malloc(count);
    int rc = failed ? 0 : -ENOMEM;
    if (rc == 0) {
        memset(failed, 0, count);
        rc = pool_mark_fails(count, h->nfail, fails, end, failed);
    }
    /* Value forms: decode each item first. */
    mp_obj *stack_vals[16];
    mp_obj **vals = NULL;
    int decode_rc = 0;
    if (rc == 0 && j->vals) {
        vals = count <= 16 ? stack_vals : calloc(count, sizeof *vals);
        if (vals)
            decode_rc = pool_decode_values(outs, h->out_len, count, vals);
        else
            rc = -ENOMEM;
    }

    if (rc == 0) {
        mp__pool_job_lock(j);
        if (!j->finished && !j->abandoned) {
            /* Failures first, so the output loop can skip failed items. */
            pool_record_fails(j, start, count, h->nfail, fails, end);
            if (j->form == F_ARRAY)
                pool_deliver_array(j, start, count, h, outs, failed);
            else if (j->form == F_BYTES)
                pool_deliver_bytes(j, start, count, h, outs, failed);
            else
                pool_deliver_values(j, start, count, vals, decode_rc, failed);
        }
        mp__pool_job_unlock(j);
    }
    if (failed != failed_small)
        free(failed);
    if (vals) {
        for (size_t i = 0; i < count; i++)
            mp_obj_free(vals[i]);
        if (vals != stack_vals)
            free(vals);
    }
    if (rc == 0)
        mp__pool_job_chunks_done(p, j, 1);
    else if (rc == MP_EPROTO)
        mp__pool_job_fail_chunk(p, j, chunk, rc, rc, 0, "malformed result from a worker");
    else
        mp__pool_job_fail_chunk(p, j, chunk, rc, rc, 0, "out of memory decoding a result");
}

/* One result message from worker w. Returns false on a protocol error. */
static bool pool_handle_result(mp_pool *p, struct worker *w, const unsigned char *msg, size_t len)
{
    struct wire_result h;
    if (len < sizeof h)
        return false;
    memcpy(&h, msg, sizeof h);
    mp__pool_lock(p);
    MP__ASSERT(w->count <= WINDOW_MAX);
    /* Results come back in the order the chunks were sent. */
    if (w->count == 0 || w->fifo[w->head].seq != h.seq) {
        mp__pool_unlock(p);
        return false;
    }
    struct flight fl = w->fifo[w->head];
    w->head = (w->head + 1) % WINDOW_MAX;
    w->count--;
    MP__ASSERT(w->inflight_bytes >= fl.bytes);
    w->inflight_bytes -= fl.bytes;
    p->startup_fails = 0;
    int64_t t =
        (int64_t)(h.exec_ns > (uint64_t)INT64_MAX / 2 ? (uint64_t)INT64_MAX / 2 : h.exec_ns);
    p->ewma_ns += (t - p->ewma_ns) / 4;
    pool_note_room_locked(p, w);
    bool term = p->state == P_TERMINATE;
    mp__pool_unlock(p);
    if (!term)
        pool_deliver(p, fl.job, fl.chunk, &h, msg + sizeof h, len - sizeof h);
    mp__pool_job_unref(fl.job);
    return true;
}

/* The worker's socket is finished (end of file, or unusable): stop
 * watching it, and kill the worker if it does not exit soon. */
static void pool_mark_eof(mp_pool *p, struct worker *w, bool kill_now)
{
    if (kill_now)
        (void)mp__pool_forkserver_send(p, Z_KILL, w, SIGKILL);
    mp__pool_lock(p);
    w->eof = true;
    w->eof_deadline = mp__now_ns() + EOF_GRACE_NS;
    mp__pool_unlock(p);
}

/* Receive what worker w has sent, without waiting. At most `budget`
 * messages, so one busy worker cannot starve the others. */
static void pool_drain(mp_pool *p, struct worker *w, int budget)
{
    while (!w->eof && budget-- > 0) {
        size_t size = 0;
        ssize_t r = mp_conn_recv_bytes_into(w->conn, p->rbuf, p->rbuf_cap, 0, &size, MP_NOWAIT);
        if (r == MP_ETOOSHORT) {
            if (mp__pool_grow(&p->rbuf, &p->rbuf_cap, size) < 0)
                pool_mark_eof(p, w, true); /* cannot take its result */
            continue;
        }
        if (r == MP_ETIMEDOUT)
            return;
        if (r < 0 || !pool_handle_result(p, w, p->rbuf, (size_t)r)) {
            pool_mark_eof(p, w, r >= 0); /* end of file, or it speaks garbage */
            return;
        }
    }
}

/* ---- deaths ------------------------------------------------------------------ */

static void pool_describe_exit(char *buf, size_t cap, const struct worker *w, int exitcode, int rc)
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

/* What a dead worker's FIFO leaves to settle once p->mu is released. */
struct pool_orphans {
    struct flight blamed; /* the chunk it was running, if blame */
    bool blame;
    struct flight *dropped; /* chunks that cannot be retried */
    size_t ndropped;
};

/*
 * Empty dead worker w's FIFO (p->mu held). The first chunk is blamed if
 * the worker was running it (`running`, from its slot: seq + 1); those it
 * never started go first in the retry queue, in their order; on terminate,
 * or with no memory to retry, they are dropped.
 */
static void pool_take_fifo_locked(mp_pool *p, struct worker *w, bool ready, uint32_t running,
                                  bool term, struct pool_orphans *o)
{
    MP__POOL_ASSERT_HELD(p);
    struct retry *head = NULL, **tail = &head;
    size_t nretry = 0;
    o->dropped = malloc((w->count ? w->count : 1) * sizeof *o->dropped);
    for (unsigned k = 0; k < w->count; k++) {
        struct flight fl = w->fifo[(w->head + k) % WINDOW_MAX];
        if (k == 0 && ready && running == fl.seq + 1 && !term) {
            o->blamed = fl;
            o->blame = true;
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
        } else if (o->dropped) {
            o->dropped[o->ndropped++] = fl; /* terminated, or no memory to retry */
        } else {
            mp__pool_job_unref(fl.job); /* cannot happen but for no memory at all */
        }
    }
    w->count = 0;
    w->head = 0;
    w->inflight_bytes = 0;
    if (head) {
        *tail = p->retry_head;
        p->retry_head = head;
        p->pend_chunks += nretry;
    }
}

/* A worker died before its initializer returned: pause before the next
 * spawn, 10 ms doubling up to a second while they keep dying (p->mu held). */
static void pool_startup_backoff_locked(mp_pool *p)
{
    MP__POOL_ASSERT_HELD(p);
    p->startup_fails++;
    int64_t pause = INT64_C(10000000) << (p->startup_fails < 7 ? p->startup_fails - 1 : 6);
    if (pause > INT64_C(1000000000))
        pause = INT64_C(1000000000);
    p->spawn_after = mp__now_ns() + pause;
}

/*
 * Worker w has ended (the fork server reaped it and sent its exit code, or
 * rc when that is unknown). Take its last results, then blame the chunk it
 * was running, requeue the chunks it never started, and hand the slot to
 * the dispatcher for a replacement.
 */
static void pool_handle_death(mp_pool *p, struct worker *w, int exitcode, int rc)
{
    if (w->conn)
        pool_drain(p, w, INT32_MAX);
    struct slot *s = &p->slots[w->idx];
    uint32_t ready = __atomic_load_n(&s->ready, __ATOMIC_ACQUIRE);
    uint32_t running = __atomic_load_n(&s->running, __ATOMIC_ACQUIRE);
    uint32_t item = __atomic_load_n(&s->item, __ATOMIC_ACQUIRE);
    /* Described now: once it is W_DEAD the dispatcher frees its handles. */
    char msg[MP_TASK_MSG_MAX];
    pool_describe_exit(msg, sizeof msg, w, exitcode, rc);

    struct pool_orphans o = {.blame = false, .ndropped = 0};
    mp__pool_lock(p);
    MP__ASSERT(w->state == W_LIVE || w->state == W_SPAWNING);
    bool term = p->state == P_TERMINATE;
    pool_take_fifo_locked(p, w, ready != 0, running, term, &o);
    p->disp_wake_chunks = 1; /* a replacement comes, idle */
    if (!ready)
        pool_startup_backoff_locked(p);
    w->state = W_DEAD;
    mp__pool_wake_dispatcher_locked(p);
    mp__pool_unlock(p);

    for (size_t k = 0; k < o.ndropped; k++) {
        if (!term)
            mp__pool_job_fail_chunk(p, o.dropped[k].job, o.dropped[k].chunk, -ENOMEM, -ENOMEM, 0,
                                    "out of memory requeueing the task of a dead worker");
        mp__pool_job_unref(o.dropped[k].job);
    }
    free(o.dropped);
    if (o.blame) {
        mp__pool_job_fail_chunk(p, o.blamed.job, o.blamed.chunk, MP_EWORKER, rc < 0 ? rc : exitcode,
                                item, msg);
        mp__pool_job_unref(o.blamed.job);
    }
}

/* terminate(): fail every unfinished job, running error callbacks. */
static void pool_fail_everything(mp_pool *p)
{
    mp__pool_lock(p);
    struct retry *r = p->retry_head;
    p->retry_head = NULL;
    while (mp__list_pop_front(&p->pending) != NULL)
        ;
    p->pend_chunks = 0;
    mp__pool_unlock(p);
    while (r) {
        struct retry *next = r->next;
        mp__pool_job_unref(r->job);
        free(r);
        r = next;
    }
    for (;;) {
        mp__pool_lock(p);
        struct mp_result *j = mp__list_first(&p->cache);
        if (j)
            mp__pool_job_ref(j);
        mp__pool_unlock(p);
        if (!j)
            break;
        mp__pool_job_finish(p, j, true);
        mp__pool_job_unref(j);
    }
    mp__pool_lock(p);
    MP__ASSERT(p->ncache == 0); /* and no job can join it: the pool refuses work */
    p->term_done = true;
    pthread_cond_broadcast(&p->done_cv);
    mp__pool_unlock(p);
}

/* ---- workers and the fork server ---------------------------------------------- */

/* A worker connected back: authenticate it, read its hello and give its
 * slot the connection. Strangers and stale workers are dropped. */
static void pool_accept_worker(mp_pool *p)
{
    mp_conn *c;
    if (mp_listener_accept(p->lis, &c, 5.0) < 0)
        return;
    struct hello h;
    ssize_t r = mp_conn_recv_bytes_into(c, &h, sizeof h, 0, NULL, 5.0);
    mp__pool_lock(p);
    struct worker *w = r == (ssize_t)sizeof h && h.idx < (uint32_t)p->nproc ? &p->w[h.idx] : NULL;
    if (w && w->state == W_SPAWNING && w->k == h.k && (w->pid == 0 || w->pid == h.pid)) {
        MP__ASSERT(w->count == 0 && !w->conn);
        w->conn = c;
        w->pid = h.pid;
        w->next_seq = 0;
        w->head = w->count = 0;
        w->inflight_bytes = 0;
        w->sent = 0;
        w->exit_sent = w->eof = w->term_sent = false;
        w->state = W_LIVE;
        c = NULL;
        pool_note_room_locked(p, w);
        mp__pool_wake_dispatcher_locked(p);
        pthread_cond_broadcast(&p->done_cv); /* mp_pool_new waits for this */
    }
    mp__pool_unlock(p);
    mp_conn_free(c);
}

/* One message from the fork server. Returns false when it is gone. */
static bool pool_forkserver_news(mp_pool *p)
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
    mp__pool_lock(p);
    bool ours = w->k == m.k && (w->state == W_SPAWNING || w->state == W_LIVE);
    if (ours && m.op == Z_SPAWNED && w->pid == 0)
        w->pid = m.pid;
    if (ours && m.op == Z_SPAWN_FAILED) {
        /* No fork now (EAGAIN, ENOMEM): the dispatcher tries again soon. */
        w->state = W_NONE;
        p->spawn_error = m.arg;
        p->spawn_after = mp__now_ns() + INT64_C(100000000);
        mp__pool_wake_dispatcher_locked(p);
        pthread_cond_broadcast(&p->done_cv);
    }
    mp__pool_unlock(p);
    if (ours && m.op == Z_DIED)
        pool_handle_death(p, w, m.arg, m.rc);
    return true;
}

/* Read what the fork server has sent. When it is gone nothing can be
 * forked or reaped any more: terminate, and (its children) every worker
 * is dead. */
static void pool_read_forkserver(mp_pool *p, bool *gone)
{
    for (int m = 0; m < 64 && !*gone; m++) {
        if (!pool_forkserver_news(p)) {
            *gone = true;
            mp__pool_lock(p);
            p->broken = true;
            p->state = P_TERMINATE;
            mp__pool_wake_dispatcher_locked(p);
            mp__pool_unlock(p);
        }
        if (mp_conn_buffered(p->zctl) == 0)
            break;
    }
}

/* The fork server is gone: its children, the workers, count as dead. */
static void pool_bury_workers(mp_pool *p)
{
    for (int i = 0; i < p->nproc; i++) {
        mp__pool_lock(p);
        int st = p->w[i].state;
        mp__pool_unlock(p);
        if (st == W_LIVE || st == W_SPAWNING)
            pool_handle_death(p, &p->w[i], 0, MP_EWORKER);
    }
}

/* Kill the workers whose socket ended EOF_GRACE_NS ago and that are
 * still there. */
static void pool_kill_lingering(mp_pool *p)
{
    int64_t now = mp__now_ns();
    mp__pool_lock(p);
    for (int i = 0; i < p->nproc; i++) {
        struct worker *w = &p->w[i];
        if (w->state == W_LIVE && w->eof && w->eof_deadline <= now) {
            (void)mp__pool_forkserver_send(p, Z_KILL, w, SIGKILL);
            w->eof_deadline = now + EOF_GRACE_NS;
        }
    }
    mp__pool_unlock(p);
}

/* ---- the loop ------------------------------------------------------------------ */

/* What the result thread waits on (p->mu held): the notify pipe, the fork
 * server, the listener and every live worker's socket; *deadline is the
 * earliest time a worker past end of file must be killed. Returns how many
 * items it filled. */
static size_t pool_wait_set_locked(mp_pool *p, mp_wait_item *items, int *owner, bool zygote_gone,
                                   int64_t *deadline)
{
    MP__POOL_ASSERT_HELD(p);
    size_t n = 0;
    items[n] = (mp_wait_item){.conn = NULL, .fd = p->notify[0], .ready = 0};
    owner[n++] = OWN_NOTIFY;
    if (!zygote_gone) {
        items[n] = (mp_wait_item){.conn = p->zctl, .fd = -1, .ready = 0};
        owner[n++] = OWN_FORKSERVER;
    }
    items[n] = (mp_wait_item){.conn = NULL, .fd = mp_listener_fileno(p->lis), .ready = 0};
    owner[n++] = OWN_LISTENER;
    for (int i = 0; i < p->nproc; i++) {
        struct worker *w = &p->w[i];
        if (w->state != W_LIVE)
            continue;
        if (!w->eof) {
            items[n] = (mp_wait_item){.conn = w->conn, .fd = -1, .ready = 0};
            owner[n++] = i;
        } else if (*deadline == MP__NO_DEADLINE || w->eof_deadline < *deadline) {
            *deadline = w->eof_deadline;
        }
    }
    return n;
}

/* Read, then clear: a notice sent in between finds the flag still set and
 * writes nothing, but the loop looks at the pool again right after. */
static void pool_read_notify(mp_pool *p)
{
    unsigned char junk[64];
    (void)mp__read_some(p->notify[0], junk, sizeof junk, mp__now_ns(), false);
    mp__pool_lock(p);
    p->notify_pending = false;
    mp__pool_unlock(p);
}

void *mp__pool_result_main(void *arg)
{
    mp_pool *p = arg;
    size_t cap = (size_t)p->nproc + 3;
    /* Never NULL afterwards: see mp__pool_worker_main. */
    (void)mp__pool_grow(&p->rbuf, &p->rbuf_cap, RECV_BUF_START);
    mp_wait_item *items = calloc(cap, sizeof *items);
    int *owner = calloc(cap, sizeof *owner);
    bool zygote_gone = false;
    for (;;) {
        size_t n = 0;
        int64_t deadline = MP__NO_DEADLINE;
        mp__pool_lock(p);
        if (p->state == P_TERMINATE && !p->term_done) {
            mp__pool_unlock(p);
            pool_fail_everything(p);
            continue;
        }
        if (p->disp_done) {
            mp__pool_unlock(p);
            break;
        }
        if (items && owner && p->rbuf)
            n = pool_wait_set_locked(p, items, owner, zygote_gone, &deadline);
        mp__pool_unlock(p);
        if (n == 0) {
            mp__sleep(0.01); /* out of memory: poll slowly */
            (void)mp__pool_grow(&p->rbuf, &p->rbuf_cap, RECV_BUF_START);
            continue;
        }
        if (mp_wait(items, n, mp__deadline_left(deadline)) < 0) {
            mp__sleep(0.001);
            continue;
        }
        /* Results first, then the server's news of deaths (a dead worker's
         * last results are already in its socket when the news comes). */
        for (size_t k = 0; k < n; k++) {
            if (items[k].ready && owner[k] == OWN_NOTIFY)
                pool_read_notify(p);
            else if (items[k].ready && owner[k] >= 0)
                pool_drain(p, &p->w[owner[k]], 256);
        }
        for (size_t k = 0; k < n; k++) {
            if (items[k].ready && owner[k] == OWN_LISTENER)
                pool_accept_worker(p);
            if (items[k].ready && owner[k] == OWN_FORKSERVER)
                pool_read_forkserver(p, &zygote_gone);
        }
        if (zygote_gone)
            pool_bury_workers(p);
        pool_kill_lingering(p);
    }
    free(items);
    free(owner);
    mp__pool_lock(p);
    p->res_done = true;
    pthread_cond_broadcast(&p->done_cv);
    mp__pool_unlock(p);
    return NULL;
}
