/*
 * mpi_pool.c - the root's side of the Pool on MPI ranks: mp_pool_new_mpi,
 * and the server thread that stands in for the pool's fork server
 * (pool_ext.h). For each worker slot it connects to the pool as a worker
 * would and relays batches to the slot's rank and results back over MPI.
 *
 * The thread is the only one on the root that calls MPI while the pool
 * lives. It watches ranks on the root's host by pid (kill(pid, 0)) every
 * 0.1 s, and the others by MPI's errors (MPI_ERRORS_RETURN).
 */
#include "mpi/mpi_impl.h"
#include "pool/pool_impl.h"

#include <mpipc/mpi.h>

#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#define MPI_RING      (WINDOW_MAX * 2)
#define MPI_WATCH_NS  INT64_C(100000000)
#define MPI_FINISH_NS INT64_C(10000000000)

enum { R_WAIT, R_IDLE, R_LIVE, R_DETACHED, R_BYE, R_DEAD };

/* A chunk sent to a rank (or failed here, synth: its result message). */
struct mpi_pend {
    uint32_t seq;
    uint64_t batch; /* the rank's T_BATCH that carried it (1, 2, ...) */
    unsigned char *synth;
    size_t synth_len;
};

struct mpi_rank {
    int state;
    bool want; /* the pool asked for a worker in this slot (Z_SPAWN) */
    uint32_t k;
    mp_conn *conn;
    pid_t pid;
    bool local;
    bool exit_sent;
    uint64_t nbatch;
    uint64_t started; /* the rank's last T_STARTED: batches it has begun */
    struct mpi_pend fifo[MPI_RING];
    unsigned head, count;
};

struct mpi_send {
    MPI_Request req;
    unsigned char *buf;
    struct mpi_send *next;
};

struct mpi_srv {
    mp_pool *p;
    MPI_Comm comm;
    int size;
    int nslots;
    mp_conn *ctl;
    struct mpi_rank *r; /* slot i is rank i + 1 */
    struct mpi_send *sends;
    pthread_t th;
    bool *started;
    size_t message_max;
    char init_name[128];
    char host[64];
    unsigned char *buf;
    size_t cap;
    int extra_byes; /* goodbyes still due from ranks beyond the pool's size */
};

static int64_t mpi_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int mpi_grow(struct mpi_srv *s, size_t need)
{
    return mp__pool_grow(&s->buf, &s->cap, need ? need : 1);
}

/* Send to a rank without waiting; the buffer (malloc'd, or NULL for an
 * empty message) is freed once MPI is done with it. */
static int mpi_isend(struct mpi_srv *s, int rank, int tag, unsigned char *buf, size_t len)
{
    struct mpi_send *m = calloc(1, sizeof *m);
    if (!m || len > INT_MAX) {
        free(m);
        free(buf);
        return -ENOMEM;
    }
    m->buf = buf;
    if (MPI_Isend(buf, (int)len, MPI_BYTE, rank, tag, s->comm, &m->req) != MPI_SUCCESS) {
        free(buf);
        free(m);
        return MP_EPROTO;
    }
    m->next = s->sends;
    s->sends = m;
    return 0;
}

static void mpi_test_sends(struct mpi_srv *s)
{
    for (struct mpi_send **pp = &s->sends; *pp;) {
        struct mpi_send *m = *pp;
        int done = 0;
        if (MPI_Test(&m->req, &done, MPI_STATUS_IGNORE) != MPI_SUCCESS || done) {
            *pp = m->next;
            free(m->buf);
            free(m);
        } else {
            pp = &m->next;
        }
    }
}

static void mpi_reply(struct mpi_srv *s, uint32_t op, int idx, int arg, int rc)
{
    if (!s->ctl)
        return;
    struct mpi_rank *r = &s->r[idx];
    struct zmsg m = {
        .op = op, .idx = (uint32_t)idx, .k = r->k, .pid = (int32_t)r->pid, .arg = arg, .rc = rc};
    (void)mp_conn_send_bytes(s->ctl, &m, sizeof m);
}

/* The slot's record for the pool: which chunk a death would interrupt (a
 * rank runs its chunks in order, so the oldest one unanswered, if the rank
 * has begun its batch; else none, and the pool gives every chunk of the
 * dead rank to another, as for a fork worker killed while idle). */
static void mpi_note_running(struct mpi_srv *s, int idx)
{
    struct mpi_rank *r = &s->r[idx];
    uint32_t running = 0;
    const struct mpi_pend *e = &r->fifo[r->head];
    if (r->count && !e->synth && e->batch <= r->started)
        running = e->seq + 1;
    __atomic_store_n(&s->p->slots[idx].item, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&s->p->slots[idx].running, running, __ATOMIC_RELEASE);
}

static void mpi_fifo_clear(struct mpi_rank *r)
{
    for (unsigned i = 0; i < r->count; i++)
        free(r->fifo[(r->head + i) % MPI_RING].synth);
    r->head = r->count = 0;
}

/* No rank is left to serve the pool: close the control connection, so
 * the pool fails what is pending with MP_EBROKEN instead of waiting. */
static void mpi_check_broken(struct mpi_srv *s)
{
    for (int i = 0; i < s->nslots; i++)
        if (s->r[i].state == R_WAIT || s->r[i].state == R_IDLE || s->r[i].state == R_LIVE)
            return;
    mp_conn_free(s->ctl);
    s->ctl = NULL;
}

/* The slot's rank stops serving the pool: tell the pool its worker ended
 * (code/rc as struct zmsg's Z_DIED) and drop the connection. */
static void mpi_end_slot(struct mpi_srv *s, int idx, int state, int code, int rc)
{
    struct mpi_rank *r = &s->r[idx];
    if (r->state == R_LIVE) {
        mpi_note_running(s, idx);
        mp_conn_free(r->conn);
        r->conn = NULL;
        mpi_reply(s, Z_DIED, idx, code, rc);
    } else if (r->want && state == R_DEAD) {
        mpi_reply(s, Z_SPAWN_FAILED, idx, MP_EWORKER, MP_EWORKER);
    }
    r->want = false;
    mpi_fifo_clear(r);
    r->state = state;
}

/* The pool wants a worker in slot idx and its rank has said hello:
 * connect to the pool as that worker. */
static void mpi_attach(struct mpi_srv *s, int idx)
{
    struct mpi_rank *r = &s->r[idx];
    mp_pool *p = s->p;
    mp_conn *c = NULL;
    int rc = mp_client_connect(&c, p->lis_addr, p->authkey, sizeof p->authkey, 30.0);
    struct hello h = {.idx = (uint32_t)idx, .k = r->k, .pid = (int32_t)r->pid};
    if (rc == 0)
        rc = mp_conn_send_bytes(c, &h, sizeof h);
    r->want = false;
    if (rc < 0) {
        mp_conn_free(c);
        mpi_reply(s, Z_SPAWN_FAILED, idx, rc, rc);
        return;
    }
    r->conn = c;
    r->state = R_LIVE;
    r->head = r->count = 0;
    __atomic_store_n(&p->slots[idx].running, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&p->slots[idx].ready, 1, __ATOMIC_RELEASE);
    mpi_reply(s, Z_SPAWNED, idx, 0, 0);
}

/* The result message of a chunk that failed here: every item fails with
 * code and msg, in the wire's layout for the chunk's form. */
static int mpi_synth_fail(const struct wire_task *t, int code, const char *msg, unsigned char **out,
                          size_t *outlen)
{
    size_t mlen = strlen(msg);
    size_t outs =
        t->form == F_ARRAY ? (size_t)t->count * t->out_size : (size_t)t->count * sizeof(uint64_t);
    size_t len = sizeof(struct wire_result) + outs + t->count * (sizeof(struct wire_fail) + mlen);
    unsigned char *b = calloc(1, len), *q;
    if (!b)
        return -ENOMEM;
    struct wire_result h = {.seq = t->seq, .count = t->count, .nfail = t->count, .out_len = outs};
    memcpy(b, &h, sizeof h);
    q = b + sizeof h;
    if (t->form != F_ARRAY) {
        uint64_t failed = FAILED_LEN;
        for (uint32_t i = 0; i < t->count; i++, q += sizeof failed)
            memcpy(q, &failed, sizeof failed);
    } else {
        q += outs;
    }
    for (uint32_t i = 0; i < t->count; i++) {
        struct wire_fail f = {.item = i, .status = code, .code = code, .msg_len = (uint32_t)mlen};
        memcpy(q, &f, sizeof f);
        memcpy(q + sizeof f, msg, mlen);
        q += sizeof f + mlen;
    }
    *out = b;
    *outlen = len;
    return 0;
}

/* Hand the pool the failures made here that are now first in line. */
static void mpi_flush_synth(struct mpi_srv *s, int idx)
{
    struct mpi_rank *r = &s->r[idx];
    while (r->state == R_LIVE && r->count && r->fifo[r->head].synth) {
        struct mpi_pend *e = &r->fifo[r->head];
        (void)mp_conn_send_bytes(r->conn, e->synth, e->synth_len);
        free(e->synth);
        e->synth = NULL;
        r->head = (r->head + 1) % MPI_RING;
        r->count--;
    }
    mpi_note_running(s, idx);
}

/*
 * Relay one batch from the pool to slot idx's rank. Each chunk joins the
 * slot's FIFO; one whose input is over message_max is not sent but fails
 * here (MP_EVALUE), in its turn.
 */
static int mpi_forward(struct mpi_srv *s, int idx, const unsigned char *q, size_t len)
{
    struct mpi_rank *r = &s->r[idx];
    const unsigned char *end = q + len;
    unsigned char *out = malloc(len ? len : 1);
    size_t olen = 0;
    if (!out)
        return -ENOMEM;
    while ((size_t)(end - q) >= sizeof(struct wire_task)) {
        struct wire_task t;
        memcpy(&t, q, sizeof t);
        size_t body = t.kind == MSG_TASK ? mp__pool_pad16((size_t)t.len) : 0;
        if (body > (size_t)(end - q) - sizeof t)
            body = (size_t)(end - q) - sizeof t;
        if (t.kind == MSG_TASK && r->count < MPI_RING) {
            struct mpi_pend *e = &r->fifo[(r->head + r->count++) % MPI_RING];
            e->seq = t.seq;
            e->batch = r->nbatch + 1; /* the batch sent below */
            e->synth = NULL;
            if (t.len > s->message_max &&
                mpi_synth_fail(&t, MP_EVALUE,
                               "task input too big for MPI (mp_mpi_opts.message_max)", &e->synth,
                               &e->synth_len) == 0) {
                q += sizeof t + body;
                continue;
            }
        }
        memcpy(out + olen, q, sizeof t + body);
        olen += sizeof t + body;
        q += sizeof t + body;
    }
    mpi_flush_synth(s, idx);
    if (olen == 0) {
        free(out);
        return 0;
    }
    r->nbatch++;
    return mpi_isend(s, idx + 1, T_BATCH, out, olen);
}

/* Batches the pool has sent to live slots. Returns true if any. */
static bool mpi_relay_batches(struct mpi_srv *s)
{
    bool any = false;
    for (int i = 0; i < s->nslots; i++) {
        struct mpi_rank *r = &s->r[i];
        for (int n = 0; n < 16 && r->state == R_LIVE; n++) {
            size_t size = 0;
            ssize_t got = mp_conn_recv_bytes_into(r->conn, s->buf, s->cap, 0, &size, MP_NOWAIT);
            if (got == MP_ETOOSHORT) {
                if (mpi_grow(s, size) < 0)
                    mpi_end_slot(s, i, R_DETACHED, 0, -ENOMEM);
                continue;
            }
            if (got == MP_ETIMEDOUT)
                break;
            if (got < 0) {
                mpi_end_slot(s, i, R_DETACHED, 0, (int)got); /* the pool let it go */
                break;
            }
            any = true;
            if (mpi_forward(s, i, s->buf, (size_t)got) < 0)
                mpi_end_slot(s, i, R_DETACHED, 0, -ENOMEM);
        }
    }
    return any;
}

/* One chunk's result from slot idx's rank: to the pool, in order. */
static void mpi_on_result(struct mpi_srv *s, int idx, const unsigned char *msg, size_t len)
{
    struct mpi_rank *r = &s->r[idx];
    struct wire_result h;
    if (r->state != R_LIVE || len < sizeof h)
        return; /* a detached rank's late result */
    memcpy(&h, msg, sizeof h);
    if (r->count && !r->fifo[r->head].synth && r->fifo[r->head].seq == h.seq) {
        r->head = (r->head + 1) % MPI_RING;
        r->count--;
    }
    if (mp_conn_send_bytes(r->conn, msg, len) < 0) {
        mpi_end_slot(s, idx, R_DETACHED, 0, MP_EWORKER);
        return;
    }
    mpi_flush_synth(s, idx);
}

static void mpi_on_hello(struct mpi_srv *s, int idx, const unsigned char *msg, size_t len)
{
    struct mpi_rank *r = &s->r[idx];
    struct mpi_hello h;
    if (len != sizeof h || r->state != R_WAIT)
        return;
    memcpy(&h, msg, sizeof h);
    h.host[sizeof h.host - 1] = '\0';
    r->pid = h.pid;
    r->local = strcmp(h.host, s->host) == 0;
    r->state = h.init_ok ? R_IDLE : R_DEAD;
    if (!h.init_ok && r->want) {
        r->want = false;
        mpi_reply(s, Z_SPAWN_FAILED, idx, MP_EKEY, MP_EKEY);
        mpi_check_broken(s);
    } else if (r->want) {
        mpi_attach(s, idx);
    }
}

/* Messages from the ranks, without waiting. Returns true if any. */
static bool mpi_receive(struct mpi_srv *s)
{
    bool any = false;
    for (int n = 0; n < 64; n++) {
        int flag = 0, count = 0;
        MPI_Status st;
        if (MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, s->comm, &flag, &st) != MPI_SUCCESS || !flag)
            break;
        MPI_Get_count(&st, MPI_BYTE, &count);
        int idx = st.MPI_SOURCE - 1;
        if (count < 0 || mpi_grow(s, (size_t)count) < 0)
            break;
        if (MPI_Recv(s->buf, count, MPI_BYTE, st.MPI_SOURCE, st.MPI_TAG, s->comm,
                     MPI_STATUS_IGNORE) != MPI_SUCCESS)
            break;
        any = true;
        if (idx >= s->nslots && st.MPI_TAG == T_BYE)
            s->extra_byes--;
        if (idx < 0 || idx >= s->nslots)
            continue;
        if (st.MPI_TAG == T_HELLO)
            mpi_on_hello(s, idx, s->buf, (size_t)count);
        else if (st.MPI_TAG == T_RESULT)
            mpi_on_result(s, idx, s->buf, (size_t)count);
        else if (st.MPI_TAG == T_STARTED && count == (int)sizeof s->r[idx].started)
            memcpy(&s->r[idx].started, s->buf, sizeof s->r[idx].started);
        else if (st.MPI_TAG == T_BYE && s->r[idx].state != R_DEAD)
            mpi_end_slot(s, idx, R_BYE, 0, 0);
    }
    return any;
}

/* Ranks on this host whose process is gone. */
static void mpi_watch(struct mpi_srv *s)
{
    bool died = false;
    for (int i = 0; i < s->nslots; i++) {
        struct mpi_rank *r = &s->r[i];
        if (r->state == R_BYE || r->state == R_DEAD || !r->local || r->pid <= 0)
            continue;
        if (kill(r->pid, 0) < 0 && errno == ESRCH) {
            mpi_end_slot(s, i, R_DEAD, 0, MP_EWORKER);
            died = true;
        }
    }
    if (died)
        mpi_check_broken(s);
}

/* The pool's requests. Returns false on Z_EXIT. */
static bool mpi_requests(struct mpi_srv *s)
{
    for (int n = 0; s->ctl && n < 64; n++) {
        struct zmsg m;
        ssize_t got = mp_conn_recv_bytes_into(s->ctl, &m, sizeof m, 0, NULL, MP_NOWAIT);
        if (got == MP_ETIMEDOUT)
            return true;
        if (got != (ssize_t)sizeof m || m.op == Z_EXIT)
            return false;
        if (m.idx >= (uint32_t)s->nslots)
            continue;
        int idx = (int)m.idx;
        struct mpi_rank *r = &s->r[idx];
        if (m.op == Z_SPAWN) {
            r->k = m.k;
            if (r->state == R_WAIT) {
                r->want = true;
            } else if (r->state == R_IDLE) {
                r->want = true;
                mpi_attach(s, idx);
            } else {
                mpi_reply(s, Z_SPAWN_FAILED, idx, MP_EWORKER, MP_EWORKER);
                mpi_check_broken(s); /* a rank is never replaced */
            }
        } else if (m.op == Z_KILL && r->state == R_LIVE && r->k == m.k) {
            /* A rank cannot be signalled: its results are dropped from now. */
            mpi_end_slot(s, idx, R_DETACHED, -m.arg, 0);
        }
    }
    return true;
}

/* A chunk is out on a rank: its result may come any moment. */
static bool mpi_in_flight(const struct mpi_srv *s)
{
    for (int i = 0; i < s->nslots; i++)
        if (s->r[i].state == R_LIVE && s->r[i].count > 0)
            return true;
    return false;
}

/* Wait up to timeout for the pool's sockets (MPI is polled between). A
 * wait under a millisecond (poll's unit) is a look at the sockets, then a
 * nap: a rank's result waits no longer than that in MPI. */
static void mpi_idle(struct mpi_srv *s, double timeout)
{
    mp_wait_item items[65];
    size_t n = 0;
    if (s->ctl)
        items[n++] = (mp_wait_item){.conn = s->ctl, .fd = -1, .ready = 0};
    for (int i = 0; i < s->nslots && n < 65; i++)
        if (s->r[i].state == R_LIVE)
            items[n++] = (mp_wait_item){.conn = s->r[i].conn, .fd = -1, .ready = 0};
    if (n == 0 || s->nslots > 64) {
        struct timespec ts = {0, (long)(timeout * 1e9)};
        nanosleep(&ts, NULL);
        return;
    }
    if (timeout >= 0.001) {
        (void)mp_wait(items, n, timeout);
        return;
    }
    if (mp_wait(items, n, 0) == 0) {
        struct timespec ts = {0, (long)(timeout * 1e9)};
        nanosleep(&ts, NULL);
    }
}

/*
 * Let every rank still serving go: T_EXIT with the number of batches sent,
 * then take (and drop) what they still send until each says goodbye, is
 * gone, or 10 s have passed (a rank busy in a long task).
 */
static void mpi_release_ranks(struct mpi_srv *s)
{
    for (int i = 0; i < s->nslots; i++) {
        struct mpi_rank *r = &s->r[i];
        if (r->state == R_LIVE)
            mpi_end_slot(s, i, R_DETACHED, 0, 0);
        if (r->state != R_BYE && r->state != R_DEAD && !r->exit_sent) {
            uint64_t *n = malloc(sizeof *n);
            if (n)
                *n = r->nbatch;
            r->exit_sent = mpi_isend(s, i + 1, T_EXIT, (unsigned char *)n, sizeof *n) == 0;
        }
    }
    int64_t deadline = mpi_now() + MPI_FINISH_NS;
    while (mpi_now() < deadline) {
        bool left = s->extra_byes > 0;
        for (int i = 0; i < s->nslots; i++)
            left |= s->r[i].state != R_BYE && s->r[i].state != R_DEAD;
        if (!left)
            break;
        mpi_receive(s);
        mpi_test_sends(s);
        mpi_watch(s);
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    mpi_test_sends(s);
}

static void *mpi_server_main(void *arg)
{
    struct mpi_srv *s = arg;
    int64_t next_watch = 0, last_busy = mpi_now();
    bool run = true;
    while (run && s->ctl) {
        bool busy = mpi_receive(s);
        busy |= mpi_relay_batches(s);
        mpi_test_sends(s);
        run = mpi_requests(s);
        int64_t now = mpi_now();
        if (now >= next_watch) {
            mpi_watch(s);
            next_watch = now + MPI_WATCH_NS;
        }
        if (busy)
            last_busy = now;
        else if (run && s->ctl)
            mpi_idle(s, now - last_busy < INT64_C(5000000) || mpi_in_flight(s) ? 0.00005 : 0.002);
    }
    mpi_release_ranks(s);
    return NULL;
}

/* ---- the pool's hook and the public calls ---------------------------------------- */

static int mpi_start(mp_pool *p, mp_conn *ctl, void *arg)
{
    struct mpi_srv *s = arg;
    s->p = p;
    s->ctl = ctl;
    sigset_t all, old;
    sigfillset(&all);
    (void)pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = -pthread_create(&s->th, NULL, mpi_server_main, s);
    (void)pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc < 0) {
        mp_conn_free(ctl);
        s->ctl = NULL;
        return rc;
    }
    *s->started = true;
    return 0;
}

static void mpi_srv_free(struct mpi_srv *s)
{
    mp_conn_free(s->ctl);
    for (int i = 0; i < s->nslots; i++) {
        mp_conn_free(s->r[i].conn);
        mpi_fifo_clear(&s->r[i]);
    }
    /* Sends to a dead rank may never complete: left to MPI. */
    while (s->sends) {
        struct mpi_send *m = s->sends;
        s->sends = m->next;
        free(m);
    }
    MPI_Comm_free(&s->comm);
    free(s->r);
    free(s->buf);
    free(s);
}

static void mpi_reap(mp_pool *p, void *arg)
{
    (void)p;
    struct mpi_srv *s = arg;
    pthread_join(s->th, NULL);
    mpi_srv_free(s);
}

/* Release every rank before any pool exists (a refused call), and take
 * their goodbyes: a message left unreceived on a freed communicator could
 * reach the next one, which MPI may give the same context. */
static void mpi_release_all(MPI_Comm comm, int size)
{
    uint64_t none = 0;
    for (int i = 1; i < size; i++)
        (void)MPI_Send(&none, sizeof none, MPI_BYTE, i, T_EXIT, comm);
    for (int i = 1; i < size; i++)
        (void)MPI_Recv(NULL, 0, MPI_BYTE, i, T_BYE, comm, MPI_STATUS_IGNORE);
}

/* The options a pool of ranks can take, with processes filled in. */
static int mpi_check_opts(const mp_pool_opts *opts, int size, mp_pool_opts *o, char *init,
                          size_t cap)
{
    mp_pool_opts defaults = MP_POOL_OPTS_INIT;
    *o = opts ? *opts : defaults;
    if (o->processes < 0 || o->processes > size - 1 || o->maxtasksperchild != 0 || o->ctx ||
        o->initarg)
        return MP_EVALUE;
    if (o->processes == 0)
        o->processes = size - 1;
    init[0] = '\0';
    if (o->initializer) {
        const char *name;
        if (mp_task_name(MP_TASK_INIT, (mp_task_fn)o->initializer, &name) < 0)
            return MP_EKEY;
        snprintf(init, cap, "%s", name);
    }
    return 0;
}

/* The server's state, and each rank's configuration sent. */
static int mpi_srv_new(struct mpi_srv **out, MPI_Comm comm, int size, const mp_pool_opts *o,
                       const char *init, const mp_mpi_opts *mopts)
{
    struct mpi_srv *s = calloc(1, sizeof *s);
    if (!s || !(s->r = calloc((size_t)o->processes, sizeof *s->r))) {
        free(s);
        return -ENOMEM;
    }
    s->comm = comm;
    s->size = size;
    s->nslots = o->processes;
    s->extra_byes = size - 1 - o->processes;
    s->message_max = mopts && mopts->message_max ? mopts->message_max : MP_MPI_MESSAGE_MAX;
    snprintf(s->init_name, sizeof s->init_name, "%s", init);
    if (gethostname(s->host, sizeof s->host) < 0)
        s->host[0] = '\0';
    s->host[sizeof s->host - 1] = '\0';
    struct mpi_config cfg = {{0}};
    snprintf(cfg.init_name, sizeof cfg.init_name, "%s", init);
    uint64_t none = 0;
    for (int i = 1; i < size; i++) {
        /* Ranks beyond the pool's size are let go at once. */
        int rc = i <= s->nslots ? MPI_Send(&cfg, sizeof cfg, MPI_BYTE, i, T_CONFIG, comm)
                                : MPI_Send(&none, sizeof none, MPI_BYTE, i, T_EXIT, comm);
        if (rc != MPI_SUCCESS) {
            free(s->r);
            free(s);
            return MP_EPROTO;
        }
    }
    *out = s;
    return 0;
}

MP_API int mp_pool_new_mpi(mp_pool **out, const mp_pool_opts *opts, MPI_Comm comm,
                           const mp_mpi_opts *mopts)
{
    if (out)
        *out = NULL;
    int inited = 0, level = 0, rank = 0, size = 0;
    if (MPI_Initialized(&inited) != MPI_SUCCESS || !inited || comm == MPI_COMM_NULL)
        return MP_EVALUE;
    if (MPI_Comm_rank(comm, &rank) != MPI_SUCCESS || MPI_Comm_size(comm, &size) != MPI_SUCCESS)
        return MP_EPROTO;
    if (size < 2)
        return MP_EVALUE; /* no rank to work: mpirun -n 2 at least */
    if (rank != 0)
        return mp_mpi_worker_main(comm);
    MPI_Comm dup;
    if (MPI_Comm_dup(comm, &dup) != MPI_SUCCESS)
        return MP_EPROTO;
    MPI_Comm_set_errhandler(dup, MPI_ERRORS_RETURN);
    mp_pool_opts o;
    char init[128];
    struct mpi_srv *s = NULL;
    (void)MPI_Query_thread(&level);
    /* Refused after the duplicate, which the ranks make too: they are let go. */
    int rc = !out                          ? -EINVAL
             : level < MPI_THREAD_MULTIPLE ? MP_EVALUE
                                           : mpi_check_opts(opts, size, &o, init, sizeof init);
    if (rc == 0)
        rc = mpi_srv_new(&s, dup, size, &o, init, mopts);
    if (rc < 0) {
        mpi_release_all(dup, size);
        MPI_Comm_free(&dup);
        return rc;
    }
    bool started = false;
    s->started = &started;
    struct mp__pool_ext ext = {
        .start = mpi_start, .reap = mpi_reap, .arg = s, .lost_status = MP_EBROKEN};
    rc = mp__pool_new_ext(out, &o, &ext);
    if (rc < 0 && !started) {
        mpi_release_all(dup, size);
        mpi_srv_free(s); /* frees dup */
    }
    return rc;
}
