/*
 * pool_worker.c - the worker process (Python's pool.worker): it connects
 * back to the pool, runs its initializer, then runs the chunks it is sent
 * and sends one result message per chunk. Also mp_task_fail, which a task
 * calls there. The fork server (pool_forkserver.c) forks it; pool_impl.h
 * lists the other siblings.
 */
#include "pool/pool_impl.h"

#include "codec/pickle.h"

#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>

/* ---- the task's failure message -------------------------------------------------- */

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

/* ---- one chunk's result message ------------------------------------------------- */

struct wbuf {
    unsigned char *p;
    size_t len, cap;
};

/* The result message of the chunk being run. */
struct pool_reply {
    struct wbuf out;   /* [wire_result][outputs] */
    struct wbuf fails; /* [wire_fail][message] per failed item */
    uint32_t nfail;
};

static int pool_wb_put(struct wbuf *b, const void *src, size_t n)
{
    size_t need;
    if (mp__add_overflows(b->len, n, &need) || mp__pool_grow(&b->p, &b->cap, need) < 0)
        return -ENOMEM;
    if (n)
        memcpy(b->p + b->len, src, n);
    b->len = need;
    return 0;
}

/* Item i failed: its message is msg, else the task's (mp_task_fail), else
 * one naming the code. */
static void pool_add_fail(struct pool_reply *r, uint32_t i, int status, int code, const char *msg)
{
    struct wire_fail wf = {.item = i, .status = status, .code = code, .msg_len = 0};
    char text[MP_TASK_MSG_MAX];
    if (msg) {
        snprintf(text, sizeof text, "%s", msg);
    } else if (task_msg_set) {
        snprintf(text, sizeof text, "%s", task_msg);
    } else {
        snprintf(text, sizeof text, "task failed with code %d", code);
    }
    wf.msg_len = (uint32_t)strlen(text);
    if (pool_wb_put(&r->fails, &wf, sizeof wf) == 0 &&
        pool_wb_put(&r->fails, text, wf.msg_len) == 0)
        r->nfail++;
}

/* Item i of a bytes or value chunk failed: its failure, and in place of
 * its output the length that says so. */
static void pool_item_failed(struct pool_reply *r, uint32_t i, int status, int code,
                             const char *msg)
{
    uint64_t failed = FAILED_LEN;
    pool_add_fail(r, i, status, code, msg);
    (void)pool_wb_put(&r->out, &failed, sizeof failed);
}

/* ---- running a chunk ------------------------------------------------------------ */

/* The args of a value-form item, unpickled from q (len bytes): map's item
 * becomes a 1-tuple; apply's and starmap's must be a tuple or a list.
 * NULL after recording the item's failure. */
static mp_obj *pool_item_args(struct pool_reply *r, int form, const unsigned char *q, size_t len,
                              uint32_t i)
{
    mp_obj *item = NULL;
    int rc = mp__pickle_loads(q, len, &item);
    if (rc < 0) {
        pool_item_failed(r, i, rc, rc, "cannot unpickle the task's arguments");
        return NULL;
    }
    if (form == F_OBJ_MAP) {
        mp_obj *args = mp_obj_tuple_new();
        if (!args || mp_obj_tuple_append(args, item) < 0) {
            mp_obj_free(args);
            mp_obj_free(item);
            pool_item_failed(r, i, -ENOMEM, -ENOMEM, "out of memory");
            return NULL;
        }
        return args;
    }
    int t = mp_obj_type(item);
    if (t != MP_TYPE_TUPLE && t != MP_TYPE_LIST) {
        char msg[MP_TASK_MSG_MAX];
        snprintf(msg, sizeof msg, "starmap item must be a tuple or list, not %s", mp_type_name(t));
        mp_obj_free(item);
        pool_item_failed(r, i, MP_ETASK, MP_ETYPE, msg);
        return NULL;
    }
    return item;
}

/* Run one value-form item: args pickle at q (len bytes). */
static void pool_run_obj_item(struct pool_reply *r, int form, uint64_t fn, const unsigned char *q,
                              size_t len, uint32_t i)
{
    mp_obj *args = pool_item_args(r, form, q, len, i), *res = NULL;
    if (!args)
        return;
    task_msg_set = false;
    int rc = ((mp_obj_fn)(uintptr_t)fn)(args, &res);
    mp_obj_free(args);
    if (rc != 0) {
        mp_obj_free(res);
        pool_item_failed(r, i, MP_ETASK, rc, NULL);
        return;
    }
    unsigned char *pk = NULL;
    size_t pklen = 0;
    mp_obj *none = res ? NULL : mp_obj_none();
    rc = mp__pickle_dumps(res ? res : none, &pk, &pklen);
    mp_obj_free(res);
    mp_obj_free(none);
    if (rc < 0) {
        pool_item_failed(r, i, rc, rc, "cannot pickle the task's result");
        return;
    }
    /* With no memory the message comes out short, and the parent fails it. */
    uint64_t l = pklen;
    if (pool_wb_put(&r->out, &l, sizeof l) == 0)
        (void)pool_wb_put(&r->out, pk, pklen);
    free(pk);
}

/* Run one bytes-form item: its input at q (len bytes). Returns 0, or
 * -ENOMEM when its output cannot be kept. */
static int pool_run_bytes_item(struct pool_reply *r, uint64_t fn, const unsigned char *q,
                               size_t len, uint32_t i)
{
    void *o = NULL;
    size_t olen = 0;
    task_msg_set = false;
    int rc = ((mp_bytes_fn)(uintptr_t)fn)(q, len, &o, &olen);
    uint64_t l = olen;
    if (rc == 0 && !o && olen > 0) {
        pool_item_failed(r, i, -EINVAL, -EINVAL,
                         "task returned a NULL buffer with a non-zero length");
    } else if (rc != 0) {
        pool_item_failed(r, i, MP_ETASK, rc, NULL);
    } else if (pool_wb_put(&r->out, &l, sizeof l) < 0 || pool_wb_put(&r->out, o, olen) < 0) {
        free(o);
        return -ENOMEM;
    }
    free(o);
    return 0;
}

/* Run an array-form chunk straight into the result message: one fixed-size
 * output per item, nothing allocated per item. */
static int pool_run_array(struct pool_reply *r, struct slot *s, const struct wire_task *t,
                          const unsigned char *payload)
{
    size_t base = sizeof(struct wire_result);
    size_t outlen = (size_t)t->count * t->out_size;
    if (mp__pool_grow(&r->out.p, &r->out.cap, base + outlen) < 0)
        return -ENOMEM;
    memset(r->out.p + base, 0, outlen);
    r->out.len = base + outlen;
    mp_array_fn fn = (mp_array_fn)(uintptr_t)t->fn;
    for (uint32_t i = 0; i < t->count; i++) {
        __atomic_store_n(&s->item, i, __ATOMIC_RELAXED);
        task_msg_set = false;
        int rc = fn(payload + (size_t)i * t->in_size, r->out.p + base + (size_t)i * t->out_size);
        if (rc != 0)
            pool_add_fail(r, i, MP_ETASK, rc, NULL);
    }
    return 0;
}

/* Run a bytes- or value-form chunk: [u64 len][bytes] per item. */
static int pool_run_items(struct pool_reply *r, struct slot *s, const struct wire_task *t,
                          const unsigned char *payload)
{
    const unsigned char *q = payload, *end = payload + t->len;
    for (uint32_t i = 0; i < t->count; i++) {
        __atomic_store_n(&s->item, i, __ATOMIC_RELAXED);
        uint64_t len;
        if (mp__pool_rd_u64(&q, end, &len) < 0 || len > (uint64_t)(end - q))
            return MP_EPROTO;
        if (t->form == F_BYTES) {
            if (pool_run_bytes_item(r, t->fn, q, (size_t)len, i) < 0)
                return -ENOMEM;
        } else {
            pool_run_obj_item(r, (int)t->form, t->fn, q, (size_t)len, i);
        }
        q += len;
    }
    return 0;
}

/*
 * A spawn pool sends a task as its registered id (pool.h, tasks by name):
 * map it to this run's address. False when this run of the program has no
 * such task (registered in the parent after mp_spawn_main, say).
 */
static bool pool_task_resolve(bool by_id, struct wire_task *t)
{
    if (!by_id)
        return true;
    int kind = t->form == F_BYTES   ? MP_TASK_BYTES
               : t->form == F_ARRAY ? MP_TASK_ARRAY
                                    : MP_TASK_OBJ;
    mp_task_fn fn;
    if (mp__task_by_id(kind, t->fn, &fn) < 0)
        return false;
    t->fn = (uint64_t)(uintptr_t)fn;
    return true;
}

/* Fail every item of a chunk whose task this worker does not know. */
static int pool_run_unknown(struct pool_reply *r, const struct wire_task *t)
{
    static const char msg[] = "the task is not registered in the spawned worker "
                              "(MP_TASK, before main() calls mp_spawn_main)";
    if (t->form == F_ARRAY) {
        size_t base = sizeof(struct wire_result);
        size_t outlen = (size_t)t->count * t->out_size;
        if (mp__pool_grow(&r->out.p, &r->out.cap, base + outlen) < 0)
            return -ENOMEM;
        memset(r->out.p + base, 0, outlen);
        r->out.len = base + outlen;
        for (uint32_t i = 0; i < t->count; i++)
            pool_add_fail(r, i, MP_EKEY, MP_EKEY, msg);
        return 0;
    }
    for (uint32_t i = 0; i < t->count; i++)
        pool_item_failed(r, i, MP_EKEY, MP_EKEY, msg);
    return 0;
}

/* Run one chunk and send its result. Returns 0, or <0 when the parent is
 * gone or the task message is malformed. The slot says, while it runs,
 * which chunk and item a death would interrupt. */
static int pool_run_chunk(const struct mp__pool_sink *c, struct slot *s, const struct wire_task *t,
                          bool known, const unsigned char *payload, struct pool_reply *r)
{
    struct wire_result h = {.seq = t->seq, .count = t->count, .nfail = 0};
    r->out.len = 0;
    r->fails.len = 0;
    r->nfail = 0;
    if (pool_wb_put(&r->out, &h, sizeof h) < 0)
        return -ENOMEM;
    __atomic_store_n(&s->item, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&s->running, t->seq + 1, __ATOMIC_RELEASE);
    int64_t t0 = mp__now_ns();
    int rc = !known               ? pool_run_unknown(r, t)
             : t->form == F_ARRAY ? pool_run_array(r, s, t, payload)
                                  : pool_run_items(r, s, t, payload);
    if (rc < 0)
        return rc;
    h.nfail = r->nfail;
    h.exec_ns = (uint64_t)(mp__now_ns() - t0);
    h.out_len = r->out.len - sizeof h;
    memcpy(r->out.p, &h, sizeof h);
    if (pool_wb_put(&r->out, r->fails.p, r->fails.len) < 0)
        return -ENOMEM;
    rc = c->send(c->ctx, r->out.p, r->out.len);
    __atomic_store_n(&s->running, 0, __ATOMIC_RELEASE);
    return rc;
}

/* The sink of a forked worker: its connection to the pool. */
static int pool_sink_conn(void *ctx, const void *buf, size_t len)
{
    return mp_conn_send_bytes(ctx, buf, len);
}

/* ---- the worker's life ---------------------------------------------------------- */

/*
 * Run the tasks of one message (a batch). Returns true when the worker is
 * to stop: told to exit, maxtasksperchild reached, or *code set (2: a
 * malformed message, 3: a chunk could not be run or its result sent).
 */
static bool pool_run_batch(bool by_id, int maxtasks, const struct mp__pool_sink *c, struct slot *s,
                           const unsigned char *q, const unsigned char *end, struct pool_reply *r,
                           unsigned long *done, int *code)
{
    while ((size_t)(end - q) >= sizeof(struct wire_task)) {
        struct wire_task t;
        memcpy(&t, q, sizeof t);
        q += sizeof t;
        if (t.kind == MSG_EXIT)
            return true;
        if (t.kind != MSG_TASK || t.len > (uint64_t)(end - q)) {
            *code = 2;
            return true;
        }
        bool known = pool_task_resolve(by_id, &t);
        if (pool_run_chunk(c, s, &t, known, q, r) < 0) {
            *code = 3;
            return true;
        }
        size_t padded = mp__pool_pad16((size_t)t.len);
        q += padded <= (size_t)(end - q) ? padded : (size_t)t.len;
        if (maxtasks && ++*done >= (unsigned long)maxtasks)
            return true;
    }
    return false;
}

/* Connect back to the pool through its listener (proving the authkey) and
 * say which slot and spawn this worker is. */
static int pool_worker_hello(const mp_pool *p, const struct worker *self, mp_conn **out)
{
    mp_conn *c;
    int rc = mp_client_connect(&c, p->lis_addr, p->authkey, sizeof p->authkey, 30.0);
    if (rc < 0)
        return rc;
    struct hello h = {.idx = (uint32_t)self->idx, .k = self->k, .pid = (int32_t)getpid()};
    rc = mp_conn_send_bytes(c, &h, sizeof h);
    if (rc < 0) {
        mp_conn_free(c);
        return rc;
    }
    *out = c;
    return 0;
}

/* Receive batches and run them until told to stop, the parent goes away
 * (server: the fork server's pid) or maxtasksperchild is reached. Returns
 * the worker's exit code. */
static int pool_worker_serve(const mp_pool *p, mp_conn *c, struct slot *s, pid_t server)
{
    struct wbuf in = {0};
    struct pool_reply r = {0};
    unsigned long done = 0;
    int code = 0;
    struct mp__pool_sink sink = {.send = pool_sink_conn, .ctx = c};
    /* Never receive into a NULL buffer: mp_conn_recv_bytes_into(c, NULL,
     * 0, ...) takes conn.c's allocating path instead of MP_ETOOSHORT. */
    if (mp__pool_grow(&in.p, &in.cap, RECV_BUF_START) < 0)
        return 1;
    for (;;) {
        size_t size = 0;
        ssize_t n = mp_conn_recv_bytes_into(c, in.p, in.cap, 0, &size, WORKER_IDLE_CHECK);
        if (n == MP_ETOOSHORT) {
            if (mp__pool_grow(&in.p, &in.cap, size) < 0) {
                code = 1;
                break;
            }
            continue;
        }
        if (n == MP_ETIMEDOUT) {
            if (getppid() != server)
                break; /* orphaned: the server, and so the pool, is gone */
            continue;
        }
        if (n < 0)
            break; /* the parent closed or died */
        if (pool_run_batch(p->by_id, p->maxtasks, &sink, s, in.p, in.p + n, &r, &done, &code))
            break;
    }
    free(in.p);
    free(r.out.p);
    free(r.fails.p);
    return code;
}

/*
 * The worker's life (Python's pool.worker): drop the parent's descriptors it
 * inherited, run the initializer, then run chunks until told to exit, its
 * parent goes away, or it has run maxtasksperchild chunks.
 */
int mp__pool_worker_main(void *arg)
{
    struct worker *self = arg;
    mp_pool *p = self->pool;
    pid_t server = getppid();
    /* The fork server's end to the pool is not ours. */
    mp_conn_free(p->zctl_child);
    p->zctl_child = NULL;
    mp_conn *c;
    if (pool_worker_hello(p, self, &c) < 0)
        return 4;
    struct slot *s = &p->slots[self->idx];
    if (p->init)
        p->init(p->initarg);
    __atomic_store_n(&s->ready, 1, __ATOMIC_RELEASE);
    int code = pool_worker_serve(p, c, s, server);
    mp_conn_free(c);
    return code;
}

/* ---- a batch run outside a forked worker (src/mpi) ------------------------------ */

struct mp__pool_exec {
    struct pool_reply r;
    struct slot slot;
    unsigned long done;
};

MP_API int mp__pool_exec_new(struct mp__pool_exec **out)
{
    *out = calloc(1, sizeof **out);
    return *out ? 0 : -ENOMEM;
}

MP_API void mp__pool_exec_free(struct mp__pool_exec *x)
{
    if (!x)
        return;
    free(x->r.out.p);
    free(x->r.fails.p);
    free(x);
}

MP_API int mp__pool_exec_batch(struct mp__pool_exec *x, const void *msg, size_t len,
                               const struct mp__pool_sink *sink)
{
    int code = 0;
    const unsigned char *q = msg;
    bool stop = pool_run_batch(true, 0, sink, &x->slot, q, q + len, &x->r, &x->done, &code);
    return code ? -code : stop ? 1 : 0;
}
