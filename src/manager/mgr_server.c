/*
 * mgr_server - the manager's server: one event loop that owns every shared
 * object and runs every connection's authkey handshake.
 *
 * Why one loop thread. Python's manager runs a thread per connection and
 * guards the objects with locks; here a single thread owns all state, so
 * there are no locks around the objects, no lock handoff between server
 * threads on the hot path, and an operation such as "add to d['count']" is
 * atomic simply because nothing else runs while it does. Operations that
 * wait (a lock acquire, a queue get or put, a queue join) never block the
 * loop: they become waiter records, completed when the state they wait for
 * changes or failed when their deadline passes.
 *
 * Handshakes. Anyone who reaches the port can connect and then say nothing,
 * or drip a byte at a time. So the loop accepts every connection at once
 * and runs its handshake without blocking, as a state machine
 * (handshake.h) fed by non-blocking reads and writes: no thread and no
 * limit on how many run at once, some 450 bytes each. A connection must
 * finish the whole exchange within MP__MGR_HANDSHAKE_TIMEOUT of its
 * accept; otherwise it is closed. A silent peer so costs a descriptor and
 * a few hundred bytes for a few seconds, and holds up nobody. There is no
 * shorter deadline for the first bytes: an honest client on a loaded
 * machine can be starved for seconds, and it must not be turned away for
 * that while descriptors are plentiful. Out of
 * descriptors, the server closes a connection that has not proved the key
 * to take a newcomer (hs_evict says which); with none to close, it sheds
 * the newcomer through a reserved descriptor (libuv's trick), so the
 * backlog drains and accept() never spins.
 *
 * Connections. A descriptor is read and written without blocking (the
 * MSG_DONTWAIT helpers of io.c). Requests on one connection are handled
 * strictly in order, one at a time: the next is looked at only when the
 * previous one's reply has gone to the kernel and it is not waiting. This
 * is also the back-pressure: a client that sends without reading stops
 * being read once 64 KiB of its requests are buffered.
 *
 * Mailboxes. A connection of a started manager's client may hold a slot
 * of shared memory (mgr.h, "Mailboxes"); a request found there is handled
 * exactly like one read from the socket - in order, one at a time - and
 * its reply goes back into the slot (slot_deliver) when it fits. The loop
 * looks at the slots as it spins, and raises its ssleep flag before it
 * sleeps in poll(), so a client rings its doorbell only when needed.
 *
 * Sessions. A client process announces a random session id in its 'hello';
 * all connections of one process (one per thread that talks at once) share
 * it. Locks are held, and objects referenced, by sessions. When a session's
 * last connection closes - the process exited, died or closed its manager -
 * the server releases the locks it held (marking them so the next acquirer
 * gets MP_EOWNERDEAD) and drops its references; an object nobody references
 * (and that has no name) is freed.
 *
 * Large messages (mgr.h). A request frame over 64 KiB is buffered only
 * within the server's budget for messages in flight, and decoded - and,
 * once handled, freed - by a helper thread (mgr_worker.c), so that one
 * client's 64 MiB request holds up nobody: the loop hands the buffer over
 * and runs the decoded request when it comes back. Replies are encoded
 * first and checked (size, budget) before a method removes or replaces
 * anything, so an error reply never loses an item.
 *
 * Re-entrancy. Completing a waiter writes to another connection; a failed
 * write never frees that connection on the spot (it is marked broken and
 * torn down at the top of the loop), so no object or session disappears
 * while code further up the stack is using it.
 */
#include "codec/frame.h"
#include "codec/handshake.h"
#include "codec/objimpl.h"
#include "codec/pickle.h"
#include "core/internal.h"
#include "core/io.h"
#include "manager/mgr.h"

#include <mpipc/conn.h>
#include <mpipc/listener.h>
#include <mpipc/obj.h>

#include <errno.h>
#include <math.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define IN_MIN   ((size_t)4096)   /* a connection's first input buffer */
#define IN_KEEP  MP__MGR_IN_KEEP  /* larger frames are large requests (mgr.h) */
#define OUT_KEEP MP__MGR_OUT_KEEP /* keep at most this output buffer when idle */

enum kind { K_MANAGER = 0, K_DICT, K_LIST, K_LOCK, K_RLOCK, K_QUEUE };
static const char *const kind_names[] = {NULL, "dict", "list", "lock", "rlock", "queue"};

enum wop { W_ACQUIRE = 1, W_GET, W_PUT, W_JOIN };

struct sconn;
struct sobj;
struct session;

/* A FIFO of waiters (on one object, for one operation). */
struct wq {
    struct waiter *head, *tail;
};

struct waiter {
    struct sconn *conn;
    struct sobj *obj;
    struct wq *q;
    int op;                       /* enum wop */
    int64_t deadline;             /* MP__NO_DEADLINE, or when to fail it */
    uint64_t tid;                 /* W_ACQUIRE: the client thread */
    mp_obj *item;                 /* W_PUT: the item, owned */
    struct waiter *next, *prev;   /* in q */
    struct waiter *tnext, *tprev; /* in the server's timed list */
};

struct sobj {
    int64_t id;
    int kind;
    long refs;          /* sessions that hold it, + 1 for a name */
    mp_obj *name;       /* a str, or NULL */
    mp_obj *value;      /* K_DICT: a dict; K_LIST: a list */
    struct sobj *hnext; /* hash chain */
    /* K_LOCK / K_RLOCK */
    struct session *owner;
    uint64_t owner_tid;
    uint64_t count;  /* 0: free */
    bool owner_dead; /* the last holder died holding it */
    struct wq acquirers;
    struct sobj *lnext, *lprev; /* the server's list of locks */
    /* K_QUEUE: items[head .. head+len) in a ring of cap */
    mp_obj **items;
    size_t head, len, cap;
    int64_t maxsize;    /* <= 0: unbounded */
    int64_t unfinished; /* JoinableQueue's unfinished_tasks */
    struct wq getters, putters, joiners;
};

struct session {
    int64_t id;
    int nconns;
    struct sobj **held;
    size_t nheld, cap;
    struct session *next, *prev;
};

struct sconn {
    int fd;
    int64_t id;
    struct server *srv;
    struct session *sess; /* NULL until hello */
    size_t max_reply;
    unsigned char *in; /* in[in_pos, in_len) not yet handled */
    size_t in_pos, in_len, in_cap;
    mp__pickler out; /* out.p[out_pos, out.len) not yet sent */
    size_t out_pos;
    /* Large messages (mgr.h): the budget charged for in and for out, the
     * bytes of a dropped request still to come, the error owed for it,
     * and the helper thread's job decoding the current request. */
    size_t in_charge, out_charge;
    uint64_t skip;
    int owed;
    struct mp__mgr_job *job;
    struct waiter *waiter; /* the request that is waiting, if any */
    bool closing;          /* close once the output is sent (after a fatal error reply) */
    bool broken;           /* the peer is gone or the socket failed: tear down */
    /* A mailbox (mgr.h), once the client claimed one with 'shm'. */
    struct mp__mgr_slot *slot;
    unsigned slot_ix;
    uint64_t slot_seq; /* the last request taken from the slot */
    bool via_slot;     /* the request being handled came through the slot */
    bool hung_up;      /* the peer closed its end: nobody writes to the slot now */
};

/* A connection whose handshake is under way (see "Handshakes" above). */
struct hsconn {
    int fd;
    int64_t deadline;           /* the whole exchange must be over by then */
    int64_t accepted;           /* when */
    uint64_t burst;             /* the accept burst that took it */
    struct hsconn *next, *prev; /* in accept order: the oldest first */
    struct mp__hs m;
};

struct server {
    mp_listener *listener;
    const unsigned char *key;
    size_t keylen;
    size_t max_request;
    int alive_fd;
    bool stop;

    /* Handshakes under way, the oldest first; the secret their challenges
     * are drawn from (mp__hs_random) and the next counter; a descriptor
     * kept in reserve for shedding a newcomer when none is left. */
    struct hsconn *hs_head, *hs_tail;
    size_t nhs;
    unsigned char hs_seed[32];
    uint64_t hs_counter;
    uint64_t hs_burst; /* accept bursts so far */
    int reserve_fd;

    struct sconn **conns;
    size_t nconns, conns_cap;
    struct session *sessions;
    size_t nsessions;
    struct sobj **table; /* hash of objects by id */
    size_t table_cap, nobjs;
    struct sobj *locks; /* every lock object */
    mp_obj *names;      /* dict: name -> id */
    struct waiter *timed;
    int64_t next_id, next_conn_id;
    bool again;           /* a connection may have work without new input */
    int64_t accept_pause; /* after a failed accept (EMFILE...): not before */
    struct pollfd *pfds;
    struct sconn **pconn; /* the connection polled at the same index, or NULL */
    struct hsconn **phs;  /* the handshake polled at the same index, or NULL */
    size_t pcap;
    /* Large messages in flight (mgr.h): what is charged against the
     * budget, and the helper thread that decodes them (made on first use). */
    size_t budget, inflight;
    struct mp__mgr_worker *worker;
    bool probe; /* mp__mgr_probe: no sockets, replies stay in out */
    /* Mailboxes: the shared block (NULL for mp_manager_serve), which slots
     * connections hold, and where a request is copied before decoding. */
    struct mp__mgr_arena *arena;
    struct sobj *grant; /* a lock released by the request being handled */
    size_t nslots;      /* connections that hold a slot */
    bool slot_used[MP__MGR_SLOTS];
    unsigned char slot_copy[MP__MGR_SLOT_DATA];
};

/* ---- the budget for large messages ------------------------------------------ */

/* The budget of a server with this request limit: room for
 * MP__MGR_BUDGET_FACTOR maximal requests, and for one at the very least. */
static size_t budget_for(size_t max_request)
{
    size_t b = max_request > SIZE_MAX / MP__MGR_BUDGET_FACTOR ? SIZE_MAX
                                                              : MP__MGR_BUDGET_FACTOR * max_request;
    return b < max_request + MP__FRAME_MAX ? max_request + MP__FRAME_MAX : b;
}

/* Charge n bytes against the budget: false (nothing charged) when they do
 * not fit. */
static bool budget_take(struct server *s, size_t n)
{
    if (n > s->budget - s->inflight)
        return false;
    s->inflight += n;
    return true;
}

static void budget_give(struct server *s, size_t *charge)
{
    s->inflight -= *charge;
    *charge = 0;
}

/* ---- replies --------------------------------------------------------------- */

/*
 * A reply is one frame appended to the connection's output: 4 bytes of
 * length (the limits keep every frame below 2^31), then a pickle of
 * ('#RETURN', value) or ('#ERROR', code, text).
 *
 * Encode first, then commit. A ('#RETURN', value) reply is built whole
 * before anything else happens; frame_finish replaces it with an error
 * reply when it cannot be sent (over the reader's max_reply, no memory) and
 * says so. A method that removes or replaces what it replies with (a queue
 * get, a pop, a compare-and-set) changes the object only after its reply
 * stood: an error never loses the item. The size checked is the size of
 * the bytes that go out, whatever sharing the value had on the way in.
 */

static void reply_error(struct sconn *c, int code, const char *text);

static size_t reply_begin(struct sconn *c)
{
    size_t start = c->out.len;
    if (mp__pickler_reserve(&c->out, 4) == 0)
        c->out.len += 4;
    mp__pickler_start(&c->out);
    mp__pickler_str(&c->out, "#RETURN", 7);
    return start;
}

/* Close the frame that starts at start. Returns 0 when it stands; for a
 * limited (value) reply that cannot go out, the error code it was replaced
 * with. */
static int frame_finish(struct sconn *c, size_t start, bool limited)
{
    if (c->out.err) {
        int err = c->out.err;
        c->out.err = 0;
        c->out.len = start;
        if (limited)
            reply_error(c, err, "the server ran out of memory building the reply");
        else
            c->broken = true; /* not even an error reply fits */
        return err;
    }
    size_t size = c->out.len - start - 4;
    if (limited && size > c->max_reply) {
        c->out.len = start;
        reply_error(c, MP_ETOOLONG, "the reply is larger than the client accepts");
        return MP_ETOOLONG;
    }
    if (limited && size > OUT_KEEP) {
        /* A large reply waits in memory until the client has read it:
         * it is charged until then, or refused when the budget is spent. */
        if (!budget_take(c->srv, size)) {
            c->out.len = start;
            reply_error(c, -EAGAIN, "the server's budget for large messages is spent");
            return -EAGAIN;
        }
        c->out_charge += size;
    }
    mp__frame_put_short(c->out.p + start, (uint32_t)size);
    return 0;
}

/* 0 when the reply stands, else the code the reader got instead. */
static int reply_end(struct sconn *c, size_t start)
{
    mp__pickler_tuple(&c->out, 2);
    mp__pickler_stop(&c->out);
    return frame_finish(c, start, true);
}

/* Withdraw a reply that stood (frame_finish returned 0) because what it
 * reports could not be done after all. */
static void reply_withdraw(struct sconn *c, size_t start)
{
    c->out.len = start;
    c->out.err = 0;
}

static void reply_error(struct sconn *c, int code, const char *text)
{
    size_t start = c->out.len;
    if (mp__pickler_reserve(&c->out, 4) == 0)
        c->out.len += 4;
    mp__pickler_start(&c->out);
    mp__pickler_str(&c->out, "#ERROR", 6);
    mp__pickler_int(&c->out, code);
    mp__pickler_str(&c->out, text, strlen(text));
    mp__pickler_tuple(&c->out, 3);
    mp__pickler_stop(&c->out);
    frame_finish(c, start, false);
}

static void reply_none(struct sconn *c)
{
    size_t st = reply_begin(c);
    mp__pickler_none(&c->out);
    reply_end(c, st);
}

static void reply_int(struct sconn *c, int64_t v)
{
    size_t st = reply_begin(c);
    mp__pickler_int(&c->out, v);
    reply_end(c, st);
}

static void reply_bool(struct sconn *c, bool v)
{
    size_t st = reply_begin(c);
    mp__pickler_bool(&c->out, v);
    reply_end(c, st);
}

/* A quick "would it fit": a lower bound of the bytes a value takes in a
 * pickle - an opcode per value at least, plus a str's or bytes' own bytes -
 * summed over at most `left` values and only until it passes limit. A
 * value is a tree (obj.h), so its pickle holds every node it has. */
struct floor_walk {
    size_t n, limit;
    unsigned left;
};

static void size_floor(struct floor_walk *f, const mp_obj *o)
{
    if (f->n > f->limit || f->left == 0)
        return;
    f->left--;
    f->n++;
    const char *p;
    const unsigned char *b;
    size_t len = 0;
    switch (mp_obj_type(o)) {
    case MP_TYPE_STR:
        if (mp_obj_get_str(o, &p, &len) == 0)
            f->n += len;
        break;
    case MP_TYPE_BYTES:
        if (mp_obj_get_bytes(o, &b, &len) == 0)
            f->n += len;
        break;
    case MP_TYPE_LIST:
    case MP_TYPE_TUPLE:
        len = (size_t)mp_obj_len(o);
        for (size_t i = 0; i < len && f->n <= f->limit && f->left; i++)
            size_floor(f, mp_obj_list_get(o, i));
        break;
    case MP_TYPE_DICT: {
        size_t pos = 0;
        const mp_obj *k;
        mp_obj *v;
        while (f->n <= f->limit && f->left && mp_obj_dict_next(o, &pos, &k, &v) == 1) {
            size_floor(f, k);
            size_floor(f, v);
        }
        break;
    }
    default:
        break;
    }
}

/* ('#RETURN', o): 0 when it stands, else the code the reader got. A value
 * that plainly cannot fit the reader's limit (a few large strs or bytes,
 * as a Python producer's shared references become) is refused without
 * being encoded; anything else is encoded, then checked. */
static int reply_obj(struct sconn *c, const mp_obj *o)
{
    struct floor_walk f = {0, c->max_reply, 4096};
    size_floor(&f, o);
    if (f.n > c->max_reply) {
        reply_error(c, MP_ETOOLONG, "the reply is larger than the client accepts");
        return MP_ETOOLONG;
    }
    size_t st = reply_begin(c);
    mp__pickler_obj(&c->out, o);
    return reply_end(c, st);
}

/* The codes a failed operation replies with; anything unexpected from the
 * object layer is reported as what it is. */
static void reply_status(struct sconn *c, int rc)
{
    const char *text;
    switch (rc) {
    case MP_EKEY:
        text = "KeyError / IndexError";
        break;
    case MP_ETYPE:
        text = "TypeError";
        break;
    case MP_EVALUE:
        text = "ValueError";
        break;
    case -ENOMEM:
        text = "the server is out of memory";
        break;
    case -EOVERFLOW:
        text = "OverflowError: the result does not fit in 64 bits";
        break;
    default:
        text = mp_strerror(rc);
        break;
    }
    reply_error(c, rc, text);
}

/* ---- connections: output ---------------------------------------------------- */

static bool conn_idle_output(const struct sconn *c)
{
    return c->out_pos == c->out.len;
}

/* Send what is pending without blocking. A failure marks the connection
 * broken; it is torn down later at a safe point. */
static void conn_flush(struct sconn *c)
{
    if (c->srv->probe)
        return; /* the caller takes the bytes */
    while (!c->broken && c->out_pos < c->out.len) {
        ssize_t w = mp__send_nowait(c->fd, c->out.p + c->out_pos, c->out.len - c->out_pos);
        if (w == -EAGAIN)
            return;
        if (w < 0) {
            c->broken = true;
            c->hung_up = w == -EPIPE || w == -ECONNRESET;
            return;
        }
        c->out_pos += (size_t)w;
    }
    if (c->broken)
        return;
    c->out_pos = c->out.len = 0;
    if (c->out.cap > OUT_KEEP) {
        free(c->out.p);
        c->out.p = NULL;
        c->out.cap = 0;
    }
    budget_give(c->srv, &c->out_charge);
    if (c->closing)
        c->broken = true; /* the fatal error reply has left: hang up */
}

/* ---- connections: mailbox replies ------------------------------------------- */

/*
 * The reply to a request that came through the slot is complete in c->out
 * (one frame, nothing else pending): move it into the slot, or, when it does
 * not fit, tell the client it comes by the socket. Then ring the client's
 * doorbell if it sleeps on the socket (a REP_SOCK frame wakes it by
 * itself; a doorbell behind it would look like bytes beyond the reply).
 */
static void slot_deliver(struct sconn *c)
{
    c->via_slot = false;
    if (c->broken)
        return;
    struct mp__mgr_slot *sl = c->slot;
    size_t flen = c->out.len - c->out_pos;
    uint64_t kind = MP__MGR_SLOT_REP_SOCK;
    if (c->out_pos == 0 && flen >= 4 && flen - 4 <= MP__MGR_SLOT_DATA) {
        memcpy(sl->data, c->out.p + 4, flen - 4);
        sl->len = (uint32_t)(flen - 4);
        c->out.len = 0;
        kind = MP__MGR_SLOT_REP;
    }
    /* Sequentially consistent store, then load (mgr.h, "Mailboxes"). */
    __atomic_store_n(&sl->state, c->slot_seq << 2 | kind, __ATOMIC_SEQ_CST);
    if (kind == MP__MGR_SLOT_REP && __atomic_load_n(&sl->csleep, __ATOMIC_SEQ_CST) &&
        __atomic_exchange_n(&sl->csleep, 0, __ATOMIC_SEQ_CST)) {
        if (mp__pickler_reserve(&c->out, 4) == 0) {
            memset(c->out.p + c->out.len, 0, 4);
            c->out.len += 4;
        } else {
            c->broken = true; /* it would sleep until its deadline */
        }
    }
}

/* A reply to c's current request is complete: deliver it. */
static void reply_done(struct sconn *c)
{
    if (c->via_slot && !c->waiter)
        slot_deliver(c);
    conn_flush(c);
}

/* ---- objects ------------------------------------------------------------------ */

static size_t hash_id(int64_t id, size_t cap)
{
    uint64_t x = (uint64_t)id * UINT64_C(0x9E3779B97F4A7C15);
    return (size_t)(x >> 17) & (cap - 1);
}

static struct sobj *obj_find(struct server *s, int64_t id)
{
    if (!s->table_cap)
        return NULL;
    for (struct sobj *o = s->table[hash_id(id, s->table_cap)]; o; o = o->hnext)
        if (o->id == id)
            return o;
    return NULL;
}

static int table_insert(struct server *s, struct sobj *o)
{
    if (s->nobjs + 1 > s->table_cap / 2 * 1 + s->table_cap / 4 || !s->table_cap) {
        size_t cap = s->table_cap ? s->table_cap * 2 : 64;
        struct sobj **t = calloc(cap, sizeof *t);
        if (!t)
            return -ENOMEM;
        for (size_t i = 0; i < s->table_cap; i++) {
            struct sobj *x = s->table[i];
            while (x) {
                struct sobj *nx = x->hnext;
                size_t h = hash_id(x->id, cap);
                x->hnext = t[h];
                t[h] = x;
                x = nx;
            }
        }
        free(s->table);
        s->table = t;
        s->table_cap = cap;
    }
    size_t h = hash_id(o->id, s->table_cap);
    o->hnext = s->table[h];
    s->table[h] = o;
    s->nobjs++;
    return 0;
}

static void table_remove(struct server *s, struct sobj *o)
{
    for (struct sobj **pp = &s->table[hash_id(o->id, s->table_cap)]; *pp; pp = &(*pp)->hnext) {
        if (*pp == o) {
            *pp = o->hnext;
            s->nobjs--;
            return;
        }
    }
}

/* ---- waiters ------------------------------------------------------------------ */

static void wq_push(struct wq *q, struct waiter *w)
{
    w->q = q;
    w->next = NULL;
    w->prev = q->tail;
    if (q->tail)
        q->tail->next = w;
    else
        q->head = w;
    q->tail = w;
}

static void wq_unlink(struct waiter *w)
{
    struct wq *q = w->q;
    if (!q)
        return;
    if (w->prev)
        w->prev->next = w->next;
    else
        q->head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    else
        q->tail = w->prev;
    w->q = NULL;
    w->next = w->prev = NULL;
}

static void timed_unlink(struct server *s, struct waiter *w)
{
    if (w->deadline == MP__NO_DEADLINE)
        return;
    if (w->tprev)
        w->tprev->tnext = w->tnext;
    else
        s->timed = w->tnext;
    if (w->tnext)
        w->tnext->tprev = w->tprev;
    w->tnext = w->tprev = NULL;
}

/* Park the connection's current request. Returns 0 or -ENOMEM. */
static int wait_on(struct server *s, struct sconn *c, struct sobj *o, struct wq *q, int op,
                   double timeout, uint64_t tid, mp_obj *item)
{
    struct waiter *w = calloc(1, sizeof *w);
    if (!w)
        return -ENOMEM;
    w->conn = c;
    w->obj = o;
    w->op = op;
    w->tid = tid;
    w->item = item;
    w->deadline = mp__deadline(timeout);
    wq_push(q, w);
    if (c->via_slot) /* tell the client not to wait up (mgr.h) */
        __atomic_store_n(&c->slot->parked, c->slot_seq, __ATOMIC_RELEASE);
    if (w->deadline != MP__NO_DEADLINE) {
        w->tnext = s->timed;
        if (s->timed)
            s->timed->tprev = w;
        s->timed = w;
    }
    c->waiter = w;
    return 0;
}

/* Take a waiter off every list and free it; the caller has replied (or the
 * connection is gone). Its item, if still there, is freed. */
static void waiter_free(struct server *s, struct waiter *w)
{
    wq_unlink(w);
    timed_unlink(s, w);
    if (w->conn && w->conn->waiter == w)
        w->conn->waiter = NULL;
    mp_obj_free(w->item);
    free(w);
}

/* The connection of a completed waiter may have more requests buffered. */
static void waiter_replied(struct server *s, struct waiter *w)
{
    struct sconn *c = w->conn;
    waiter_free(s, w);
    reply_done(c);
    s->again = true;
}

static void waiter_fail(struct server *s, struct waiter *w, int code)
{
    if (!w->conn->broken)
        reply_status(w->conn, code);
    waiter_replied(s, w);
}

/* ---- sessions and references -------------------------------------------------- */

static void obj_destroy(struct server *s, struct sobj *o);

static int session_hold(struct session *ss, struct sobj *o)
{
    for (size_t i = 0; i < ss->nheld; i++)
        if (ss->held[i] == o)
            return 0;
    if (ss->nheld == ss->cap) {
        size_t cap = ss->cap ? ss->cap * 2 : 8;
        struct sobj **h = realloc(ss->held, cap * sizeof *h);
        if (!h)
            return -ENOMEM;
        ss->held = h;
        ss->cap = cap;
    }
    ss->held[ss->nheld++] = o;
    o->refs++;
    return 0;
}

static void obj_decref(struct server *s, struct sobj *o)
{
    if (--o->refs <= 0)
        obj_destroy(s, o);
}

/* Returns true when the session held o. */
static bool session_drop(struct server *s, struct session *ss, struct sobj *o)
{
    for (size_t i = 0; i < ss->nheld; i++) {
        if (ss->held[i] == o) {
            ss->held[i] = ss->held[--ss->nheld];
            obj_decref(s, o);
            return true;
        }
    }
    return false;
}

static void lock_grant_next(struct server *s, struct sobj *o);

/* The last connection of a process closed: free what it held. */
static void session_end(struct server *s, struct session *ss)
{
    /* Locks first, while every object is still there: a lock the process
     * held passes to the next waiter, who learns that its holder died. */
    for (struct sobj *o = s->locks; o; o = o->lnext) {
        if (o->count && o->owner == ss) {
            o->count = 0;
            o->owner = NULL;
            o->owner_dead = true;
            lock_grant_next(s, o);
        }
    }
    while (ss->nheld) {
        struct sobj *o = ss->held[--ss->nheld];
        obj_decref(s, o);
    }
    if (ss->prev)
        ss->prev->next = ss->next;
    else
        s->sessions = ss->next;
    if (ss->next)
        ss->next->prev = ss->prev;
    s->nsessions--;
    free(ss->held);
    free(ss);
}

static struct session *session_get(struct server *s, int64_t id)
{
    for (struct session *ss = s->sessions; ss; ss = ss->next)
        if (ss->id == id)
            return ss;
    struct session *ss = calloc(1, sizeof *ss);
    if (!ss)
        return NULL;
    ss->id = id;
    ss->next = s->sessions;
    if (s->sessions)
        s->sessions->prev = ss;
    s->sessions = ss;
    s->nsessions++;
    return ss;
}

/* ---- object lifetime ------------------------------------------------------------ */

static void fail_all(struct server *s, struct wq *q, int code)
{
    while (q->head)
        waiter_fail(s, q->head, code);
}

static void obj_destroy(struct server *s, struct sobj *o)
{
    table_remove(s, o);
    fail_all(s, &o->acquirers, MP_ENOOBJ);
    fail_all(s, &o->getters, MP_ENOOBJ);
    fail_all(s, &o->putters, MP_ENOOBJ);
    fail_all(s, &o->joiners, MP_ENOOBJ);
    if (o->kind == K_LOCK || o->kind == K_RLOCK) {
        if (o->lprev)
            o->lprev->lnext = o->lnext;
        else
            s->locks = o->lnext;
        if (o->lnext)
            o->lnext->lprev = o->lprev;
    }
    for (size_t i = 0; i < o->len; i++)
        mp_obj_free(o->items[(o->head + i) % o->cap]);
    free(o->items);
    mp_obj_free(o->value);
    mp_obj_free(o->name);
    free(o);
}

static struct sobj *obj_new(struct server *s, int kind)
{
    struct sobj *o = calloc(1, sizeof *o);
    if (!o)
        return NULL;
    o->kind = kind;
    o->id = ++s->next_id;
    if (table_insert(s, o) < 0) {
        free(o);
        return NULL;
    }
    if (kind == K_LOCK || kind == K_RLOCK) {
        o->lnext = s->locks;
        if (s->locks)
            s->locks->lprev = o;
        s->locks = o;
    }
    return o;
}

/* ---- argument helpers ------------------------------------------------------------ */

static mp_obj *arg(mp_obj *args, size_t i)
{
    return mp_obj_list_get(args, i);
}

/* A timeout argument: a number of seconds, negative or None for forever. */
static int arg_timeout(const mp_obj *o, double *t)
{
    int64_t i;
    if (mp_obj_is_none(o)) {
        *t = MP_FOREVER;
        return 0;
    }
    if (mp_obj_get_float(o, t) == 0)
        return isnan(*t) ? MP_EVALUE : 0;
    if (mp_obj_get_int(o, &i) == 0) {
        *t = (double)i;
        return 0;
    }
    return MP_ETYPE;
}

/* Python's index normalisation for item access: i < 0 counts from the end;
 * out of range is IndexError (MP_EKEY). */
static int norm_index(const mp_obj *io, size_t len, size_t *out)
{
    int64_t i;
    if (mp_obj_get_int(io, &i) < 0)
        return MP_ETYPE;
    if (i < 0)
        i += (int64_t)len;
    if (i < 0 || (uint64_t)i >= len)
        return MP_EKEY;
    *out = (size_t)i;
    return 0;
}

/* Python's slice clamping for one bound (None: the default). */
static int slice_bound(const mp_obj *o, size_t len, size_t dflt, size_t *out)
{
    if (mp_obj_is_none(o)) {
        *out = dflt;
        return 0;
    }
    int64_t i;
    if (mp_obj_get_int(o, &i) < 0)
        return MP_ETYPE;
    if (i < 0) {
        i += (int64_t)len;
        if (i < 0)
            i = 0;
    }
    *out = (uint64_t)i > len ? len : (size_t)i;
    return 0;
}

static int check_hashable(const mp_obj *key)
{
    uint64_t h;
    return mp__obj_hash(key, false, &h);
}

/* ---- dict methods -------------------------------------------------------------- */

typedef void (*method_fn)(struct server *s, struct sconn *c, struct sobj *o, mp_obj *args);

static void d_get(struct server *s, struct sconn *c, struct sobj *o, mp_obj *args)
{
    (void)s;
    mp_obj *key = arg(args, 0);
    int rc = check_hashable(key);
    if (rc < 0) {
        reply_status(c, rc);
        return;
    }
    mp_obj *v = mp_obj_dict_get(o->value, key);
    if (v)
        reply_obj(c, v);
    else
        reply_error(c, MP_EKEY, "KeyError");
}

static void d_set(struct server *s, struct sconn *c, struct sobj *o, mp_obj *args)
{
    (void)s;
    mp_obj *value = mp__seq_take(args, 1);
    mp_obj *key = mp__seq_take(args, 0);
    int rc = mp_obj_dict_set(o->value, key, value);
    if (rc < 0) {
        mp_obj_free(key);
        mp_obj_free(value);
        reply_status(c, rc);
        return;
    }
    reply_none(c);
}

static void d_del(struct server *s, struct sconn *c, struct sobj *o, mp_obj *args)
{
    (void)s;
    int rc = mp_obj_dict_del(o->value, arg(args, 0));
    if (rc < 0)
        reply_status(c, rc);
    else
        reply_none(c);
}

static void d_contains(struct server *s, struct sconn *c, struct sobj *o, mp_obj *args)
{
    (void)s;
    mp_obj *key = arg(args, 0);
    int rc = check_hashable(key);
    if (rc < 0)
        reply_status(c, rc);
    else
        reply_bool(c, mp_obj_dict_get(o->value, key) != NULL);
}

static void x_len(struct server *s, struct sconn *c, struct sobj *o, mp_obj *args)
{
    (void)s;
    (void)args;
    reply_int(c, (int64_t)mp_obj_len(o->value));
}

/* keys(), values(), items(): a list built straight into the reply. */
static void dict_view(struct sconn *c, struct sobj *o, int which)
{
    size_t st = reply_begin(c);
    mp__pickler_list_begin(&c->out);
    size_t pos = 0;
    const mp_obj *k;
    mp_obj *v;
    while (mp_obj_dict_next(o->value, &pos, &k, &v) == 1) {
        if (which != 1)
            mp__pickler_obj(&c->out, k);
        if (which != 0)
            mp__pickler_obj(&c->out, v);
        if (which == 2)
            mp__pickler_tuple(&c->out, 2);
    }
    mp__pickler_list_end(&c->out);
    reply_end(c, st);
}

static void d_keys(struct server *s, struct sconn *c, struct sobj *o, mp_obj *args)
{
    (void)s;
    (void)args;
    dict_view(c, o, 0);
}

static void d_values(struct server *s, struct sconn *c, struct sobj *o, mp_obj *args)
{
    (void)s;
    (void)args;
    dict_view(c, o, 1);
}

static void d_items(struct server *s, struct sconn *c, struct sobj *o, mp_obj *args)
{
    (void)s;
    (void)args;
    dict_view(c, o, 2);
}

static void x_clear(struct server *s, struct sconn *c, struct sobj *o, mp_obj *args)
{
    (void)s;
    (void)args;
    mp_obj *fresh = o->kind == K_DICT ? mp_obj_dict_new() : mp_obj_list_new();
    if (!fresh) {
        reply_status(c, -ENOMEM);
        return;
    }
    mp_obj_free(o->value);
    o->value = fresh;
    reply_none(c);
}

/* pop(key): the item leaves the dict only once its reply stood. */
static void d_pop(struct server *s, struct sconn *c, struct sobj *o, mp_obj *args)
{
    (void)s;
    mp_obj *key = arg(args, 0);
    int rc = check_hashable(key);
    if (rc < 0) {
        reply_status(c, rc);
        return;
    }
    mp_obj *v = mp_obj_dict_get(o->value, key);
    if (!v) {
        reply_error(c, MP_EKEY, "KeyError");
        return;
    }
    if (reply_obj(c, v) == 0)
        (void)mp_obj_dict_del(o->value, key); /* present: it cannot fail */
}

/* The last inserted item of a non-empty dict (what popitem() takes). The
 * entries are in insertion order, deleted ones with a NULL key
 * (objimpl.h). */
static void dict_last(const mp_obj *d, const mp_obj **k, const mp_obj **v)
{
    size_t i = d->u.d.n;
    while (i > 0 && !d->u.d.entries[i - 1].key)
        i--;
    *k = d->u.d.entries[i - 1].key;
    *v = d->u.d.entries[i - 1].value;
}

static void d_popitem(struct server *s, struct sconn *c, struct sobj *o, mp_obj *args)
{
    (void)s;
    (void)args;
    if (mp_obj_len(o->value) == 0) {
        reply_error(c, MP_EKEY, "KeyError: popitem(): dictionary is empty");
        return;
    }
    const mp_obj *k, *v;
    dict_last(o->value, &k, &v);
    size_t st = reply_begin(c);
    mp__pickler_obj(&c->out, k);
    mp__pickler_obj(&c->out, v);
    mp__pickler_tuple(&c->out, 2);
    if (reply_end(c, st) != 0)
        return; /* the item stays */
    mp_obj *kt, *vt;
    if (mp__dict_popitem(o->value, &kt, &vt) == 1) {
        mp_obj_free(kt);
        mp_obj_free(vt);
    }
}

static void d_setdefault(struct server *s, struct sconn *c, struct sobj *o, mp_obj *args)
{
    (void)s;
    mp_obj *key = arg(args, 0);
    int rc = check_hashable(key);
    if (rc < 0) {
        reply_status(c, rc);
        return;
    }
    mp_obj *v = mp_obj_dict_get(o->value, key);
    if (v) {
        reply_obj(c, v);
        return;
    }
    /* The reply first: a default too large for the reader is not stored
     * behind an error. */
    size_t st = c->out.len;
    if (reply_obj(c, arg(args, 1)) != 0)
        return;
    mp_obj *dflt = mp__seq_take(args, 1);
    key = mp__seq_take(args, 0);
    rc = mp_obj_dict_set(o->value, key, dflt);
    if (rc < 0) {
        mp_obj_free(key);
        mp_obj_free(dflt);
        reply_withdraw(c, st);
        reply_status(c, rc);
    }
}

/* dict.update(other): other is a dict or a sequence of (key, value) pairs.
 * The pairs are checked before anything changes, then moved (not copied)
 * out of the request. */
static void d_update(struct server *s, struct sconn *c, struct sobj *o, mp_obj *args)
{
    (void)s;
    mp_obj *other = arg(args, 0);
    int t = mp_obj_type(other);
    if (t != MP_TYPE_DICT && t != MP_TYPE_LIST && t != MP_TYPE_TUPLE) {
        reply_error(c, MP_ETYPE, "TypeError: update() takes a dict or a sequence of pairs");
        return;
    }
    size_t n = (size_t)mp_obj_len(other);
    if (t != MP_TYPE_DICT) {
        for (size_t i = 0; i < n; i++) {
            mp_obj *p = mp_obj_list_get(other, i);
            int pt = mp_obj_type(p);
            if ((pt != MP_TYPE_TUPLE && pt != MP_TYPE_LIST) || mp_obj_len(p) != 2) {
                reply_error(c, MP_EVALUE, "ValueError: update sequence element is not a pair");
                return;
            }
            if (check_hashable(mp_obj_list_get(p, 0)) < 0) {
                reply_status(c, MP_ETYPE);
                return;
            }
        }
    }
    mp_obj **kv = malloc((n ? n : 1) * 2 * sizeof *kv);
    if (!kv) {
        reply_status(c, -ENOMEM);
        return;
    }
    if (t == MP_TYPE_DICT) {
        /* popitem() takes from the end: fill the array backwards. */
        for (size_t i = n; i-- > 0;)
            (void)mp__dict_popitem(other, &kv[2 * i], &kv[2 * i + 1]);
    } else {
        for (size_t i = 0; i < n; i++) {
            mp_obj *p = mp_obj_list_get(other, i);
            kv[2 * i + 1] = mp__seq_take(p, 1);
            kv[2 * i] = mp__seq_take(p, 0);
        }
    }
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        if (rc == 0)
            rc = mp_obj_dict_set(o->value, kv[2 * i], kv[2 * i + 1]);
        if (rc < 0) { /* out of memory part-way: Python's update is not atomic either */
            mp_obj_free(kv[2 * i]);
            mp_obj_free(kv[2 * i + 1]);
        }
    }
    free(kv);
    if (rc < 0)
        reply_status(c, rc);
    else
        reply_none(c);
}

static void d_copy(struct server *s, struct sconn *c, struct sobj *o, mp_obj *args)
{
    (void)s;
    (void)args;
    reply_obj(c, o->value);
}

/* d[key] += delta, atomically; a missing key counts as 0. */
static void d_add(struct server *s, struct sconn *c, struct sobj *o, mp_obj *args)
{
    (void)s;
    mp_obj *key = arg(args, 0);
    int64_t delta;
    if (mp_obj_get_int(arg(args, 1), &delta) < 0) {
        reply_error(c, MP_ETYPE, "TypeError: the delta must be an int");
        return;
    }
    int rc = check_hashable(key);
    if (rc < 0) {
        reply_status(c, rc);
        return;
    }
    mp_obj *v = mp_obj_dict_get(o->value, key);
    int64_t sum = delta;
    if (v) {
        int64_t cur;
        if (mp_obj_type(v) != MP_TYPE_INT && mp_obj_type(v) != MP_TYPE_BOOL) {
            reply_error(c, MP_ETYPE, "TypeError: the stored value is not an int");
            return;
        }
        (void)mp_obj_get_int(v, &cur);
        if (__builtin_add_overflow(cur, delta, &sum)) {
            reply_status(c, -EOVERFLOW);
            return;
        }
    }
    /* A new node, never the stored one changed in place: small ints and
     * bools are shared immortal nodes (objimpl.h). */
    mp_obj *nv = mp_obj_int(sum);
    key = mp__seq_take(args, 0);
    rc = nv ? mp_obj_dict_set(o->value, key, nv) : -ENOMEM;
    if (rc < 0) {
        mp_obj_free(nv);
        mp_obj_free(key);
        reply_status(c, rc);
        return;
    }
    reply_int(c, sum);
}

/* Compare and set: args (key, desired) swaps only when key is absent;
 * (key, desired, expected) only when d[key] == expected. Replies
 * (swapped, present, current): present/current describe the value before
 * the call (None when absent). */
static void d_cas(struct server *s, struct sconn *c, struct sobj *o, mp_obj *args)
{
    (void)s;
    size_t n = (size_t)mp_obj_len(args);
    mp_obj *key = arg(args, 0);
    int rc = check_hashable(key);
    if (rc < 0) {
        reply_status(c, rc);
        return;
    }
    mp_obj *v = mp_obj_dict_get(o->value, key);
    bool match = n == 2 ? v == NULL : (v != NULL && mp_obj_equal(v, arg(args, 2)));
    if (!match) {
        size_t st = reply_begin(c);
        mp__pickler_bool(&c->out, false);
        mp__pickler_bool(&c->out, v != NULL);
        if (v)
            mp__pickler_obj(&c->out, v);
        else
            mp__pickler_none(&c->out);
        mp__pickler_tuple(&c->out, 3);
        reply_end(c, st);
        return;
    }
    /* Reply first (the old value is freed by the set), and swap only when
     * the reply stands: a reader that cannot take the old value gets
     * MP_ETOOLONG with nothing changed. */
    size_t st = reply_begin(c);
    mp__pickler_bool(&c->out, true);
    mp__pickler_bool(&c->out, v != NULL);
    if (v)
        mp__pickler_obj(&c->out, v);
    else
        mp__pickler_none(&c->out);
    mp__pickler_tuple(&c->out, 3);
    if (reply_end(c, st) != 0)
        return;
    mp_obj *desired = mp__seq_take(args, 1);
    key = mp__seq_take(args, 0);
    rc = mp_obj_dict_set(o->value, key, desired);
    if (rc < 0) {
        mp_obj_free(key);
        mp_obj_free(desired);
        reply_withdraw(c, st);
        reply_status(c, rc);
    }
}

/* ---- list methods -------------------------------------------------------------- */

static void l_append(struct server *s, struct sconn *c, struct sobj *o, mp_obj *args)
{
    (void)s;
    mp_obj *v = mp__seq_take(args, 0);
    int rc = mp_obj_list_append(o->value, v);
    if (rc < 0) {
        mp_obj_free(v);
        reply_status(c, rc);
        return;
    }
    reply_none(c);
}

static void l_extend(struct server *s, struct sconn *c, struct sobj *o, mp_obj *args)
{
    (void)s;
    mp_obj *seq = arg(args, 0);
    int t = mp_obj_type(seq);
    if (t != MP_TYPE_LIST && t != MP_TYPE_TUPLE) {
        reply_error(c, MP_ETYPE, "TypeError: extend() takes a list or tuple");
        return;
    }
    size_t n = (size_t)mp_obj_len(seq);
    int rc = mp__seq_reserve(o->value, n);
    if (rc < 0) {
        reply_status(c, rc);
        return;
    }
    /* Move the items, last first (taking the last item moves nothing),
     * then insert them in order at the old end. */
    size_t at = (size_t)mp_obj_len(o->value);
    for (size_t i = n; i-- > 0;) {
        mp_obj *item = mp__seq_take(seq, i);
        rc = mp__list_insert(o->value, at, item);
        if (rc < 0) {
            mp_obj_free(item);
            reply_status(c, rc);
            return;
        }
    }
    reply_none(c);
}

static void l_get(struct server *s, struct sconn *c, struct sobj *o, mp_obj *args)
{
    (void)s;
    size_t i;
    int rc = norm_index(arg(args, 0), (size_t)mp_obj_len(o->value), &i);
    if (rc < 0)
        reply_error(c, rc, rc == MP_EKEY ? "IndexError: list index out of range" : "TypeError");
    else
        reply_obj(c, mp_obj_list_get(o->value, i));
}

static void l_set(struct server *s, struct sconn *c, struct sobj *o, mp_obj *args)
{
    (void)s;
    size_t i;
    int rc = norm_index(arg(args, 0), (size_t)mp_obj_len(o->value), &i);
    if (rc < 0) {
        reply_error(c, rc,
                    rc == MP_EKEY ? "IndexError: list assignment index out of range" : "TypeError");
        return;
    }
    mp_obj *v = mp__seq_take(args, 1);
    rc = mp_obj_list_set(o->value, i, v);
    if (rc < 0) {
        mp_obj_free(v);
        reply_status(c, rc);
        return;
    }
    reply_none(c);
}

static void l_del_or_pop(struct sconn *c, struct sobj *o, mp_obj *args, bool pop)
{
    size_t len = (size_t)mp_obj_len(o->value);
    if (pop && len == 0) {
        reply_error(c, MP_EKEY, "IndexError: pop from empty list");
        return;
    }
    size_t i = len - 1;
    if (mp_obj_len(args) > 0) {
        int rc = norm_index(arg(args, 0), len, &i);
        if (rc < 0) {
            reply_error(c, rc, rc == MP_EKEY ? "IndexError: index out of range" : "TypeError");
            return;
        }
    }
    /* A pop removes the item only once its reply stood. */
    if (pop && reply_obj(c, mp_obj_list_get(o->value, i)) != 0)
        return;
    mp_obj_free(mp__seq_take(o->value, i));
    if (!pop)
        reply_none(c);
}

static void l_pop(struct server *s, struct sconn *c, struct sobj *o, mp_obj *args)
{
    (void)s;
    l_del_or_pop(c, o, args, true);
}

static void l_del(struct server *s, struct sconn *c, struct sobj *o, mp_obj *args)
{
    (void)s;
    l_del_or_pop(c, o, args, false);
}

static void l_insert(struct server *s, struct sconn *c, struct sobj *o, mp_obj *args)
{
    (void)s;
    int64_t i;
    if (mp_obj_get_int(arg(args, 0), &i) < 0) {
        reply_status(c, MP_ETYPE);
        return;
    }
    int64_t len = (int64_t)mp_obj_len(o->value);
    if (i < 0) {
        i += len;
        if (i < 0)
            i = 0;
    }
    if (i > len)
        i = len;
    mp_obj *v = mp__seq_take(args, 1);
    int rc = mp__list_insert(o->value, (size_t)i, v);
    if (rc < 0) {
        mp_obj_free(v);
        reply_status(c, rc);
        return;
    }
    reply_none(c);
}

static void l_slice(struct server *s, struct sconn *c, struct sobj *o, mp_obj *args)
{
    (void)s;
    size_t len = (size_t)mp_obj_len(o->value), a, b;
    if (slice_bound(arg(args, 0), len, 0, &a) < 0 || slice_bound(arg(args, 1), len, len, &b) < 0) {
        reply_status(c, MP_ETYPE);
        return;
    }
    size_t st = reply_begin(c);
    mp__pickler_list_begin(&c->out);
    for (size_t i = a; i < b; i++)
        mp__pickler_obj(&c->out, mp_obj_list_get(o->value, i));
    mp__pickler_list_end(&c->out);
    reply_end(c, st);
}

static void l_copy(struct server *s, struct sconn *c, struct sobj *o, mp_obj *args)
{
    (void)s;
    (void)args;
    reply_obj(c, o->value);
}

/* The first index holding a value equal to v, or -1. */
static ssize_t l_find(const mp_obj *list, const mp_obj *v)
{
    size_t n = (size_t)mp_obj_len(list);
    for (size_t i = 0; i < n; i++)
        if (mp_obj_equal(mp_obj_list_get(list, i), v))
            return (ssize_t)i;
    return -1;
}

static void l_index(struct server *s, struct sconn *c, struct sobj *o, mp_obj *args)
{
    (void)s;
    ssize_t i = l_find(o->value, arg(args, 0));
    if (i < 0)
        reply_error(c, MP_EVALUE, "ValueError: value is not in list");
    else
        reply_int(c, i);
}

static void l_count(struct server *s, struct sconn *c, struct sobj *o, mp_obj *args)
{
    (void)s;
    size_t n = (size_t)mp_obj_len(o->value);
    int64_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += mp_obj_equal(mp_obj_list_get(o->value, i), arg(args, 0));
    reply_int(c, k);
}

static void l_contains(struct server *s, struct sconn *c, struct sobj *o, mp_obj *args)
{
    (void)s;
    reply_bool(c, l_find(o->value, arg(args, 0)) >= 0);
}

static void l_remove(struct server *s, struct sconn *c, struct sobj *o, mp_obj *args)
{
    (void)s;
    ssize_t i = l_find(o->value, arg(args, 0));
    if (i < 0) {
        reply_error(c, MP_EVALUE, "ValueError: list.remove(x): x not in list");
        return;
    }
    mp_obj_free(mp__seq_take(o->value, (size_t)i));
    reply_none(c);
}

/* ---- locks -------------------------------------------------------------------- */

static void lock_give(struct sobj *o, struct session *ss, uint64_t tid)
{
    o->owner = ss;
    o->owner_tid = tid;
    o->count = 1;
}

/* The reply to a successful acquire: 0, or MP_EOWNERDEAD once after the
 * previous holder died holding the lock. */
static void reply_acquired(struct sconn *c, struct sobj *o)
{
    if (o->owner_dead) {
        o->owner_dead = false;
        reply_error(c, MP_EOWNERDEAD, "acquired; the previous holder died holding the lock");
    } else {
        reply_none(c);
    }
}

static void lock_grant_next(struct server *s, struct sobj *o)
{
    while (o->count == 0 && o->acquirers.head) {
        struct waiter *w = o->acquirers.head;
        struct sconn *wc = w->conn;
        if (wc->broken || !wc->sess) {
            waiter_free(s, w);
            continue;
        }
        lock_give(o, wc->sess, w->tid);
        reply_acquired(wc, o);
        waiter_replied(s, w);
    }
}

static void k_acquire(struct server *s, struct sconn *c, struct sobj *o, mp_obj *args)
{
    double timeout;
    int64_t tid;
    if (arg_timeout(arg(args, 0), &timeout) < 0 || mp_obj_get_int(arg(args, 1), &tid) < 0) {
        reply_status(c, MP_ETYPE);
        return;
    }
    if (o->count == 0) {
        lock_give(o, c->sess, (uint64_t)tid);
        reply_acquired(c, o);
        return;
    }
    if (o->kind == K_RLOCK && o->owner == c->sess && o->owner_tid == (uint64_t)tid) {
        o->count++;
        reply_none(c);
        return;
    }
    if (timeout == 0) {
        reply_error(c, MP_ETIMEDOUT, "the lock is held");
        return;
    }
    int rc = wait_on(s, c, o, &o->acquirers, W_ACQUIRE, timeout, (uint64_t)tid, NULL);
    if (rc < 0)
        reply_status(c, rc);
}

static void k_release(struct server *s, struct sconn *c, struct sobj *o, mp_obj *args)
{
    int64_t tid;
    if (mp_obj_get_int(arg(args, 0), &tid) < 0) {
        reply_status(c, MP_ETYPE);
        return;
    }
    if (o->count == 0) {
        reply_error(c, MP_EVALUE, "release unlocked lock");
        return;
    }
    if (o->kind == K_RLOCK && (o->owner != c->sess || o->owner_tid != (uint64_t)tid)) {
        reply_error(c, MP_EVALUE, "cannot release un-acquired lock");
        return;
    }
    if (--o->count == 0) {
        o->owner = NULL;
        /* The next waiter gets it once this reply has gone (after_reply):
         * the releaser, who goes on working, is not kept waiting for the
         * wake-up of the one who was sleeping. No request is handled in
         * between, so nobody can take the lock out of turn. */
        if (o->acquirers.head)
            s->grant = o;
    }
    reply_none(c);
}

/* ---- queues ------------------------------------------------------------------- */

static int q_push(struct sobj *o, mp_obj *item)
{
    if (o->len == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 16;
        mp_obj **items = malloc(cap * sizeof *items);
        if (!items)
            return -ENOMEM;
        for (size_t i = 0; i < o->len; i++)
            items[i] = o->items[(o->head + i) % o->cap];
        free(o->items);
        o->items = items;
        o->cap = cap;
        o->head = 0;
    }
    o->items[(o->head + o->len) % o->cap] = item;
    o->len++;
    o->unfinished++;
    return 0;
}

static mp_obj *q_pop(struct sobj *o)
{
    mp_obj *item = o->items[o->head];
    o->head = (o->head + 1) % o->cap;
    o->len--;
    return item;
}

static bool q_full(const struct sobj *o)
{
    return o->maxsize > 0 && o->len >= (size_t)o->maxsize;
}

/* Room appeared: move waiting putters' items in, in order. */
static void q_admit_putters(struct server *s, struct sobj *o)
{
    while (!q_full(o) && o->putters.head) {
        struct waiter *w = o->putters.head;
        if (q_push(o, w->item) < 0)
            return; /* out of memory: they keep waiting */
        w->item = NULL;
        if (!w->conn->broken)
            reply_none(w->conn);
        waiter_replied(s, w);
    }
}

static void m_put(struct server *s, struct sconn *c, struct sobj *o, mp_obj *args)
{
    double timeout;
    if (arg_timeout(arg(args, 1), &timeout) < 0) {
        reply_status(c, MP_ETYPE);
        return;
    }
    /* A waiting getter means the queue is empty: hand the item to the
     * first getter it fits. One whose max_reply it exceeds gets
     * MP_ETOOLONG, as its get of this item from the queue would; if nobody
     * takes it, the item is queued below like any other. */
    while (o->getters.head) {
        struct waiter *w = o->getters.head;
        if (w->conn->broken) {
            waiter_free(s, w);
            continue;
        }
        int rc = reply_obj(w->conn, arg(args, 0));
        waiter_replied(s, w);
        if (rc == 0) {
            o->unfinished++;
            reply_none(c);
            return;
        }
    }
    if (!q_full(o)) {
        mp_obj *item = mp__seq_take(args, 0);
        int rc = q_push(o, item);
        if (rc < 0) {
            mp_obj_free(item);
            reply_status(c, rc);
            return;
        }
        reply_none(c);
        return;
    }
    if (timeout == 0) {
        reply_error(c, MP_FULL, "queue.Full");
        return;
    }
    mp_obj *item = mp__seq_take(args, 0);
    int rc = wait_on(s, c, o, &o->putters, W_PUT, timeout, 0, item);
    if (rc < 0) {
        mp_obj_free(item);
        reply_status(c, rc);
    }
}

static void m_get(struct server *s, struct sconn *c, struct sobj *o, mp_obj *args)
{
    double timeout;
    if (arg_timeout(arg(args, 0), &timeout) < 0) {
        reply_status(c, MP_ETYPE);
        return;
    }
    if (o->len) {
        /* The item leaves the queue only once its reply stood. */
        if (reply_obj(c, o->items[o->head]) != 0)
            return;
        mp_obj_free(q_pop(o));
        q_admit_putters(s, o);
        return;
    }
    if (timeout == 0) {
        reply_error(c, MP_EMPTY, "queue.Empty");
        return;
    }
    int rc = wait_on(s, c, o, &o->getters, W_GET, timeout, 0, NULL);
    if (rc < 0)
        reply_status(c, rc);
}

static void m_qsize(struct server *s, struct sconn *c, struct sobj *o, mp_obj *args)
{
    (void)s;
    (void)args;
    reply_int(c, (int64_t)o->len);
}

static void m_empty(struct server *s, struct sconn *c, struct sobj *o, mp_obj *args)
{
    (void)s;
    (void)args;
    reply_bool(c, o->len == 0);
}

static void m_full(struct server *s, struct sconn *c, struct sobj *o, mp_obj *args)
{
    (void)s;
    (void)args;
    reply_bool(c, q_full(o));
}

static void m_task_done(struct server *s, struct sconn *c, struct sobj *o, mp_obj *args)
{
    (void)args;
    if (o->unfinished <= 0) {
        reply_error(c, MP_EVALUE, "ValueError: task_done() called too many times");
        return;
    }
    if (--o->unfinished == 0) {
        while (o->joiners.head) {
            struct waiter *w = o->joiners.head;
            if (!w->conn->broken)
                reply_none(w->conn);
            waiter_replied(s, w);
        }
    }
    reply_none(c);
}

static void m_join(struct server *s, struct sconn *c, struct sobj *o, mp_obj *args)
{
    double timeout;
    if (arg_timeout(arg(args, 0), &timeout) < 0) {
        reply_status(c, MP_ETYPE);
        return;
    }
    if (o->unfinished == 0) {
        reply_none(c);
        return;
    }
    if (timeout == 0) {
        reply_error(c, MP_ETIMEDOUT, "unfinished tasks remain");
        return;
    }
    int rc = wait_on(s, c, o, &o->joiners, W_JOIN, timeout, 0, NULL);
    if (rc < 0)
        reply_status(c, rc);
}

/* ---- manager-level requests (ident 0) --------------------------------------------- */

static int kind_from(const mp_obj *o, bool any_lock)
{
    const char *k;
    size_t n;
    if (mp_obj_get_str(o, &k, &n) < 0)
        return MP_ETYPE;
    for (int i = K_DICT; i <= K_QUEUE; i++)
        if (strlen(kind_names[i]) == n && memcmp(kind_names[i], k, n) == 0)
            return (any_lock && i == K_RLOCK) ? K_LOCK : i;
    return MP_EVALUE;
}

static bool kind_matches(int want, int have, bool any_lock)
{
    if (any_lock && want == K_LOCK)
        return have == K_LOCK || have == K_RLOCK;
    return want == have;
}

static struct sobj *by_name(struct server *s, const mp_obj *name)
{
    mp_obj *idv = mp_obj_dict_get(s->names, name);
    int64_t id;
    if (!idv || mp_obj_get_int(idv, &id) < 0)
        return NULL;
    return obj_find(s, id);
}

static void reply_id(struct sconn *c, struct sobj *o, bool created)
{
    size_t st = reply_begin(c);
    mp__pickler_int(&c->out, o->id);
    mp__pickler_bool(&c->out, created);
    mp__pickler_str(&c->out, kind_names[o->kind], strlen(kind_names[o->kind]));
    mp__pickler_tuple(&c->out, 3);
    reply_end(c, st);
}

/* Fill a new object from the creation argument (moved out of args). */
static int obj_init(struct sobj *o, mp_obj *args)
{
    mp_obj *init = arg(args, 2);
    int t = mp_obj_type(init);
    switch (o->kind) {
    case K_DICT:
        if (t == MP_TYPE_NONE) {
            o->value = mp_obj_dict_new();
        } else if (t == MP_TYPE_DICT) {
            o->value = mp__seq_take(args, 2);
        } else {
            return MP_ETYPE;
        }
        break;
    case K_LIST:
        if (t == MP_TYPE_NONE) {
            o->value = mp_obj_list_new();
        } else if (t == MP_TYPE_LIST) {
            o->value = mp__seq_take(args, 2);
        } else if (t == MP_TYPE_TUPLE) {
            /* Lists and tuples share one layout: the tuple, moved out of
             * the request, simply becomes the list. */
            o->value = mp__seq_take(args, 2);
            o->value->type = MP_TYPE_LIST;
        } else {
            return MP_ETYPE;
        }
        break;
    case K_QUEUE:
        if (t == MP_TYPE_NONE)
            o->maxsize = 0;
        else if (mp_obj_get_int(init, &o->maxsize) < 0)
            return MP_ETYPE;
        break;
    default:
        break;
    }
    return (o->kind == K_DICT || o->kind == K_LIST) && !o->value ? -ENOMEM : 0;
}

/* create(kind, name or None, initial): a new object, or, for a name that
 * exists, the object of that name. */
static void r_create(struct server *s, struct sconn *c, struct sobj *unused, mp_obj *args)
{
    (void)unused;
    int kind = kind_from(arg(args, 0), false);
    mp_obj *name = arg(args, 1);
    if (kind < 0 || (!mp_obj_is_none(name) && mp_obj_type(name) != MP_TYPE_STR)) {
        reply_error(c, MP_EPROTO, "create(kind, name, initial)");
        return;
    }
    bool named = !mp_obj_is_none(name);
    if (named) {
        struct sobj *o = by_name(s, name);
        if (o) {
            if (o->kind != kind) {
                reply_error(c, MP_ETYPE, "that name belongs to an object of another kind");
                return;
            }
            int rc = session_hold(c->sess, o);
            if (rc < 0)
                reply_status(c, rc);
            else
                reply_id(c, o, false);
            return;
        }
    }
    struct sobj *o = obj_new(s, kind);
    if (!o) {
        reply_status(c, -ENOMEM);
        return;
    }
    int rc = obj_init(o, args);
    if (rc == 0 && named) {
        mp_obj *key = mp_obj_copy(name), *idv = mp_obj_int(o->id);
        o->name = mp_obj_copy(name);
        rc = key && idv && o->name ? mp_obj_dict_set(s->names, key, idv) : -ENOMEM;
        if (rc < 0) {
            mp_obj_free(key);
            mp_obj_free(idv);
        } else {
            o->refs++; /* the name's reference */
        }
    }
    if (rc == 0)
        rc = session_hold(c->sess, o);
    if (rc < 0) {
        if (o->name)
            (void)mp_obj_dict_del(s->names, o->name);
        obj_destroy(s, o);
        reply_status(c, rc);
        return;
    }
    reply_id(c, o, true);
}

/* attach(kind, name): the object of that name, which must exist. "lock"
 * matches a lock or an rlock. */
static void r_attach(struct server *s, struct sconn *c, struct sobj *unused, mp_obj *args)
{
    (void)unused;
    int kind = kind_from(arg(args, 0), true);
    if (kind < 0 || mp_obj_type(arg(args, 1)) != MP_TYPE_STR) {
        reply_error(c, MP_EPROTO, "attach(kind, name)");
        return;
    }
    struct sobj *o = by_name(s, arg(args, 1));
    if (!o) {
        reply_error(c, MP_ENOOBJ, "no object has that name");
        return;
    }
    if (!kind_matches(kind, o->kind, true)) {
        reply_error(c, MP_ETYPE, "that name belongs to an object of another kind");
        return;
    }
    int rc = session_hold(c->sess, o);
    if (rc < 0)
        reply_status(c, rc);
    else
        reply_id(c, o, false);
}

static struct sobj *arg_obj(struct server *s, struct sconn *c, mp_obj *args)
{
    int64_t id;
    if (mp_obj_get_int(arg(args, 0), &id) < 0) {
        reply_error(c, MP_EPROTO, "expected (id,)");
        return NULL;
    }
    struct sobj *o = obj_find(s, id);
    if (!o)
        reply_error(c, MP_ENOOBJ, "no such object");
    return o;
}

static void r_incref(struct server *s, struct sconn *c, struct sobj *unused, mp_obj *args)
{
    (void)unused;
    struct sobj *o = arg_obj(s, c, args);
    if (!o)
        return;
    int rc = session_hold(c->sess, o);
    if (rc < 0)
        reply_status(c, rc);
    else
        reply_none(c);
}

static void r_release(struct server *s, struct sconn *c, struct sobj *unused, mp_obj *args)
{
    (void)unused;
    struct sobj *o = arg_obj(s, c, args);
    if (!o)
        return;
    /* Reply before the drop: dropping may free the object (and fail
     * waiters of it on other connections). */
    reply_none(c);
    (void)session_drop(s, c->sess, o);
}

static void r_unlink(struct server *s, struct sconn *c, struct sobj *unused, mp_obj *args)
{
    (void)unused;
    if (mp_obj_type(arg(args, 0)) != MP_TYPE_STR) {
        reply_error(c, MP_EPROTO, "unlink(name)");
        return;
    }
    struct sobj *o = by_name(s, arg(args, 0));
    if (!o) {
        reply_error(c, MP_ENOOBJ, "no object has that name");
        return;
    }
    (void)mp_obj_dict_del(s->names, arg(args, 0));
    mp_obj_free(o->name);
    o->name = NULL;
    reply_none(c);
    obj_decref(s, o);
}

static int info_set(mp_obj *d, const char *k, mp_obj *v)
{
    mp_obj *key = mp_obj_str_cstr(k);
    int rc = key && v ? mp_obj_dict_set(d, key, v) : -ENOMEM;
    if (rc < 0) {
        mp_obj_free(key);
        mp_obj_free(v);
    }
    return rc;
}

static void r_info(struct server *s, struct sconn *c, struct sobj *unused, mp_obj *args)
{
    (void)unused;
    (void)args;
    size_t live = 0, slots = 0, waiting = 0;
    for (size_t i = 0; i < s->nconns; i++) {
        live += !s->conns[i]->broken;
        slots += !s->conns[i]->broken && s->conns[i]->slot;
        waiting += !s->conns[i]->broken && s->conns[i]->waiter;
    }
    mp_obj *d = mp_obj_dict_new(), *names = mp_obj_list_new();
    int rc = d && names ? 0 : -ENOMEM;
    size_t pos = 0;
    const mp_obj *k;
    while (rc == 0 && mp_obj_dict_next(s->names, &pos, &k, NULL) == 1) {
        mp_obj *copy = mp_obj_copy(k);
        rc = copy ? mp_obj_list_append(names, copy) : -ENOMEM;
        if (rc < 0)
            mp_obj_free(copy);
    }
    if (rc == 0)
        rc = info_set(d, "pid", mp_obj_int(getpid()));
    if (rc == 0)
        rc = info_set(d, "objects", mp_obj_int((int64_t)s->nobjs));
    if (rc == 0)
        rc = info_set(d, "sessions", mp_obj_int((int64_t)s->nsessions));
    if (rc == 0)
        rc = info_set(d, "connections", mp_obj_int((int64_t)live));
    if (rc == 0)
        rc = info_set(d, "mailboxes", mp_obj_int((int64_t)slots));
    if (rc == 0)
        rc = info_set(d, "waiting", mp_obj_int((int64_t)waiting));
    if (rc == 0)
        rc = info_set(d, "buffered", mp_obj_int((int64_t)s->inflight));
    if (rc == 0)
        rc = info_set(d, "budget", mp_obj_int((int64_t)s->budget));
    if (rc == 0)
        rc = info_set(d, "mailbox", mp_obj_bool(c->slot != NULL));
    if (rc == 0)
        rc = info_set(d, "session", mp_obj_int(c->sess->id));
    if (rc == 0)
        rc = info_set(d, "connection", mp_obj_int(c->id));
    if (rc == 0) {
        rc = info_set(d, "names", names);
        names = NULL;
    }
    if (rc < 0)
        reply_status(c, rc);
    else
        reply_obj(c, d);
    mp_obj_free(names);
    mp_obj_free(d);
}

/* hello(session, pid, max_reply, protocol): the first request of every
 * connection. */
static void r_hello(struct server *s, struct sconn *c, struct sobj *unused, mp_obj *args)
{
    (void)unused;
    int64_t sid, pid, max_reply, proto;
    if (mp_obj_get_int(arg(args, 0), &sid) < 0 || mp_obj_get_int(arg(args, 1), &pid) < 0 ||
        mp_obj_get_int(arg(args, 2), &max_reply) < 0 || mp_obj_get_int(arg(args, 3), &proto) < 0) {
        reply_error(c, MP_EPROTO, "hello(session, pid, max_reply, protocol)");
        return;
    }
    if (c->sess) {
        reply_error(c, MP_ESTATE, "hello was already said on this connection");
        return;
    }
    if (proto != MP__MGR_PROTOCOL) {
        reply_error(c, MP_EPROTO, "unsupported manager protocol version");
        return;
    }
    struct session *ss = session_get(s, sid);
    if (!ss) {
        reply_status(c, -ENOMEM);
        return;
    }
    ss->nconns++;
    c->sess = ss;
    /* 0 or less: as large as the server's own limit (docs/manager.md). */
    c->max_reply = max_reply <= 0                            ? s->max_request
                   : (uint64_t)max_reply > MP__MGR_MAX_LIMIT ? MP__MGR_MAX_LIMIT
                                                             : (size_t)max_reply;
    size_t st = reply_begin(c);
    mp__pickler_int(&c->out, MP__MGR_PROTOCOL);
    mp__pickler_int(&c->out, (int64_t)s->max_request);
    mp__pickler_int(&c->out, getpid());
    mp__pickler_tuple(&c->out, 3);
    reply_end(c, st);
}

/* shm(tag): claim a mailbox slot. The tag shows that the client maps the
 * same block as the server (it is random and lives only in that block).
 * The reply is the slot's index, or -1: no block, a wrong tag, or every
 * slot taken - the connection then simply goes on by the socket. */
static void r_shm(struct server *s, struct sconn *c, struct sobj *unused, mp_obj *args)
{
    (void)unused;
    int64_t tag;
    if (mp_obj_get_int(arg(args, 0), &tag) < 0) {
        reply_error(c, MP_EPROTO, "shm(tag)");
        return;
    }
    int64_t ix = -1;
    if (s->arena && !c->slot && tag != 0 && (uint64_t)tag == s->arena->tag) {
        for (unsigned i = 0; i < MP__MGR_SLOTS; i++) {
            if (!s->slot_used[i]) {
                struct mp__mgr_slot *sl = &s->arena->slot[i];
                s->slot_used[i] = true;
                __atomic_store_n(&sl->state, 0, __ATOMIC_RELEASE);
                __atomic_store_n(&sl->csleep, 0, __ATOMIC_RELAXED);
                __atomic_store_n(&sl->parked, 0, __ATOMIC_RELAXED);
                sl->len = 0;
                c->slot = sl;
                c->slot_ix = i;
                c->slot_seq = 0;
                s->nslots++;
                ix = i;
                break;
            }
        }
    }
    reply_int(c, ix);
}

static void r_ping(struct server *s, struct sconn *c, struct sobj *unused, mp_obj *args)
{
    (void)s;
    (void)unused;
    (void)args;
    reply_none(c);
}

static void r_shutdown(struct server *s, struct sconn *c, struct sobj *unused, mp_obj *args)
{
    (void)unused;
    (void)args;
    reply_none(c);
    s->stop = true;
}

/* ---- the method table ------------------------------------------------------------ */

/*
 * Every request the server knows, with the number of arguments it takes:
 * dispatch() looks a request up here and checks its arity before any
 * method runs, so no method sees a tuple of the wrong length (docs/manager.md:
 * a wrong count is MP_EPROTO, and the server serves on).
 */
struct method {
    const char *name;
    int kind; /* K_MANAGER for ident 0; K_LOCK also covers K_RLOCK */
    int min_args, max_args;
    method_fn fn;
};

static const struct method methods[] = {
    {"hello", K_MANAGER, 4, 4, r_hello},
    {"create", K_MANAGER, 3, 3, r_create},
    {"attach", K_MANAGER, 2, 2, r_attach},
    {"incref", K_MANAGER, 1, 1, r_incref},
    {"release", K_MANAGER, 1, 1, r_release},
    {"unlink", K_MANAGER, 1, 1, r_unlink},
    {"info", K_MANAGER, 0, 0, r_info},
    {"ping", K_MANAGER, 0, 0, r_ping},
    {"shm", K_MANAGER, 1, 1, r_shm},
    {"shutdown", K_MANAGER, 0, 0, r_shutdown},
    {"get", K_DICT, 1, 1, d_get},
    {"set", K_DICT, 2, 2, d_set},
    {"del", K_DICT, 1, 1, d_del},
    {"contains", K_DICT, 1, 1, d_contains},
    {"len", K_DICT, 0, 0, x_len},
    {"keys", K_DICT, 0, 0, d_keys},
    {"values", K_DICT, 0, 0, d_values},
    {"items", K_DICT, 0, 0, d_items},
    {"clear", K_DICT, 0, 0, x_clear},
    {"pop", K_DICT, 1, 1, d_pop},
    {"popitem", K_DICT, 0, 0, d_popitem},
    {"setdefault", K_DICT, 2, 2, d_setdefault},
    {"update", K_DICT, 1, 1, d_update},
    {"copy", K_DICT, 0, 0, d_copy},
    {"add", K_DICT, 2, 2, d_add},
    {"cas", K_DICT, 2, 3, d_cas},
    {"append", K_LIST, 1, 1, l_append},
    {"extend", K_LIST, 1, 1, l_extend},
    {"get", K_LIST, 1, 1, l_get},
    {"set", K_LIST, 2, 2, l_set},
    {"len", K_LIST, 0, 0, x_len},
    {"pop", K_LIST, 0, 1, l_pop},
    {"del", K_LIST, 1, 1, l_del},
    {"insert", K_LIST, 2, 2, l_insert},
    {"slice", K_LIST, 2, 2, l_slice},
    {"copy", K_LIST, 0, 0, l_copy},
    {"clear", K_LIST, 0, 0, x_clear},
    {"index", K_LIST, 1, 1, l_index},
    {"count", K_LIST, 1, 1, l_count},
    {"contains", K_LIST, 1, 1, l_contains},
    {"remove", K_LIST, 1, 1, l_remove},
    {"acquire", K_LOCK, 2, 2, k_acquire},
    {"release", K_LOCK, 1, 1, k_release},
    {"put", K_QUEUE, 2, 2, m_put},
    {"get", K_QUEUE, 1, 1, m_get},
    {"qsize", K_QUEUE, 0, 0, m_qsize},
    {"empty", K_QUEUE, 0, 0, m_empty},
    {"full", K_QUEUE, 0, 0, m_full},
    {"task_done", K_QUEUE, 0, 0, m_task_done},
    {"join", K_QUEUE, 1, 1, m_join},
};

static const struct method *find_method(int kind, const char *name, size_t len)
{
    if (kind == K_RLOCK)
        kind = K_LOCK;
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++)
        if (methods[i].kind == kind && strlen(methods[i].name) == len &&
            memcmp(methods[i].name, name, len) == 0)
            return &methods[i];
    return NULL;
}

/* Run one parsed request: find its object and method, check the state of
 * the connection and the number of arguments, then call the method. */
static void dispatch(struct server *s, struct sconn *c, int64_t ident, const char *meth,
                     size_t mlen, mp_obj *args)
{
    struct sobj *o = NULL;
    if (ident != 0) {
        if (!c->sess) {
            reply_error(c, MP_ESTATE, "the first request must be hello");
            return;
        }
        o = obj_find(s, ident);
        if (!o) {
            reply_error(c, MP_ENOOBJ, "no such object");
            return;
        }
    }
    const struct method *md = find_method(o ? o->kind : K_MANAGER, meth, mlen);
    ssize_t na = mp_obj_len(args);
    if (!c->sess && !(md && md->fn == r_hello))
        reply_error(c, MP_ESTATE, "the first request must be hello");
    else if (!md)
        reply_error(c, MP_EPROTO,
                    o ? "no such method for this kind of object" : "no such manager method");
    else if (na < md->min_args || na > md->max_args)
        reply_error(c, MP_EPROTO, "wrong number of arguments");
    else
        md->fn(s, c, o, args);
}

/*
 * The requests libmpipc clients send most - (int, str, a tuple of up to a
 * few scalars: None, bools, ints, floats, short strs and bytes) - read
 * straight from the bytes exactly as mp__pickler writes them (PROTO 4, no
 * memo, no FRAME), building only the argument values. Returns 1 with the
 * parts set (*args a new tuple), 0 when the bytes are anything else (the
 * general decoder then reads them and makes every decision, errors
 * included), -ENOMEM. Nothing this accepts decodes differently there.
 */
struct qreader {
    const unsigned char *p;
    size_t n, i;
};

static bool q_int(struct qreader *q, int64_t *v)
{
    size_t used = mp__pickle_read_int(q->p + q->i, q->n - q->i, v);
    q->i += used;
    return used > 0;
}

/* One scalar argument: 1 with *o set, 0 not a scalar of the fast path,
 * -ENOMEM. */
static int q_scalar(struct qreader *q, mp_obj **o)
{
    struct mp__pickle_scalar sc;
    size_t used = mp__pickle_read_scalar(q->p + q->i, q->n - q->i, &sc);
    if (!used)
        return 0;
    q->i += used;
    switch (sc.kind) {
    case MP__PK_NONE:
        *o = mp_obj_none();
        break;
    case MP__PK_BOOL:
        *o = mp_obj_bool(sc.i != 0);
        break;
    case MP__PK_INT:
        *o = mp_obj_int(sc.i);
        break;
    case MP__PK_FLOAT:
        *o = mp_obj_float(sc.f);
        break;
    case MP__PK_STR:
        *o = mp_obj_str((const char *)sc.s, sc.len);
        break;
    default:
        *o = mp_obj_bytes(sc.s, sc.len);
        break;
    }
    return *o ? 1 : -ENOMEM;
}

#define Q_MAX_ARGS 8

static int quick_request(const unsigned char *p, size_t n, int64_t *ident, const char **meth,
                         size_t *mlen, mp_obj **args)
{
    struct qreader q = {p, n, 2};
    if (n < 2 || p[0] != MP__OP_PROTO || p[1] != 4 || !q_int(&q, ident))
        return 0;
    if (q.i + 2 > n || p[q.i] != MP__OP_SHORT_BINUNICODE || n - q.i - 2 < p[q.i + 1])
        return 0;
    const unsigned char *m = p + q.i + 2;
    size_t ml = p[q.i + 1];
    if (!mp__utf8_valid(m, ml))
        return 0;
    q.i += 2 + ml;
    bool marked = q.i < n && p[q.i] == MP__OP_MARK;
    if (marked)
        q.i++;
    mp_obj *items[Q_MAX_ARGS];
    size_t k = 0;
    int rc = 0;
    while (k < Q_MAX_ARGS && (rc = q_scalar(&q, &items[k])) == 1)
        k++;
    /* Then the args tuple of exactly those items, the request's TUPLE3,
     * STOP, and nothing more. */
    bool ok = rc == 0 && q.i + 3 == n && p[n - 2] == MP__OP_TUPLE3 && p[n - 1] == MP__OP_STOP;
    if (ok) {
        unsigned char op = p[q.i];
        ok = marked ? op == MP__OP_TUPLE
                    : (k == 0 ? op == MP__OP_EMPTY_TUPLE : k <= 3 && op == MP__OP_TUPLE1 + k - 1);
    }
    mp_obj *t = ok ? mp_obj_tuple_new() : NULL;
    if (ok && !t)
        rc = -ENOMEM;
    for (size_t x = 0; x < k; x++) {
        if (t && mp_obj_tuple_append(t, items[x]) == 0)
            continue;
        mp_obj_free(items[x]);
        if (t) {
            mp_obj_free(t);
            t = NULL;
            rc = -ENOMEM;
        }
    }
    if (rc < 0)
        return rc;
    if (!t)
        return 0;
    *meth = (const char *)m;
    *mlen = ml;
    *args = t;
    return 1;
}

/* Run a request the general decoder read (rc: its result). The caller
 * frees req, whose parts a method may have moved out. */
static void run_decoded(struct server *s, struct sconn *c, int rc, mp_obj *req)
{
    if (rc < 0) {
        reply_error(c, rc == -ENOMEM ? rc : MP_EPROTO,
                    "the request is not a pickle of supported values");
        return;
    }
    int64_t ident;
    const char *meth;
    size_t mlen;
    mp_obj *args = mp_obj_list_get(req, 2);
    if (mp_obj_type(req) != MP_TYPE_TUPLE || mp_obj_len(req) != 3 ||
        mp_obj_get_int(mp_obj_list_get(req, 0), &ident) < 0 ||
        mp_obj_get_str(mp_obj_list_get(req, 1), &meth, &mlen) < 0 ||
        mp_obj_type(args) != MP_TYPE_TUPLE) {
        reply_error(c, MP_EPROTO, "a request is (ident, method, args)");
        return;
    }
    dispatch(s, c, ident, meth, mlen, args);
}

/* One whole request: a pickle of (ident, method, args). */
static void handle_request(struct server *s, struct sconn *c, const unsigned char *p, size_t n)
{
    mp_obj *req = NULL, *args = NULL;
    int64_t ident;
    const char *meth;
    size_t mlen;
    int q = quick_request(p, n, &ident, &meth, &mlen, &args);
    if (q < 0) {
        reply_status(c, q);
    } else if (q == 1) {
        dispatch(s, c, ident, meth, mlen, args);
        mp_obj_free(args);
    } else {
        int rc = mp__pickle_loads(p, n, &req);
        run_decoded(s, c, rc, req);
        mp_obj_free(req);
    }
}

/* ---- connections: input ------------------------------------------------------------ */

/* Set the input buffer's capacity, charging what exceeds IN_KEEP (mgr.h,
 * "Large requests"). Returns 0, -EAGAIN when the budget cannot take it (the
 * buffer is unchanged), -ENOMEM. */
static int in_resize(struct server *s, struct sconn *c, size_t cap)
{
    size_t charge = cap > IN_KEEP ? cap : 0;
    if (charge > c->in_charge && !budget_take(s, charge - c->in_charge))
        return -EAGAIN;
    unsigned char *p = cap ? realloc(c->in, cap) : NULL;
    if (cap && !p) {
        if (charge > c->in_charge)
            s->inflight -= charge - c->in_charge;
        return -ENOMEM;
    }
    if (!cap)
        free(c->in);
    if (charge < c->in_charge)
        s->inflight -= c->in_charge - charge;
    c->in = p;
    c->in_cap = cap;
    c->in_charge = charge;
    return 0;
}

/* How large the input buffer may grow now: to hold the frame at in_pos
 * when that is a large request within the request limit, else IN_KEEP. */
static size_t in_want(const struct server *s, const struct sconn *c)
{
    uint64_t size;
    size_t hdr, avail = c->in_len - c->in_pos;
    if (c->owed)
        return IN_KEEP; /* the dropped request's reply goes first */
    int rc = mp__frame_decode(avail ? c->in + c->in_pos : NULL, avail, &size, &hdr);
    if (rc != 1 || size > s->max_request || hdr + size <= IN_KEEP)
        return IN_KEEP;
    return hdr + (size_t)size;
}

/* The budget cannot hold the large request arriving at in_pos: drop what
 * is buffered of it and what is still to come, and owe its sender an
 * error reply in its place. */
static void in_drop(struct server *s, struct sconn *c)
{
    uint64_t size;
    size_t hdr;
    (void)mp__frame_decode(c->in + c->in_pos, c->in_len - c->in_pos, &size, &hdr);
    c->skip = hdr + size - (c->in_len - c->in_pos);
    c->in_pos = c->in_len = 0;
    (void)in_resize(s, c, 0);
    c->owed = -EAGAIN;
}

/* Read what the socket has. End of file or an error marks it broken.
 * The buffer grows only as bytes arrive, never by what a header claims:
 * to IN_KEEP, or, for a large request, step by step to its size, each step
 * charged against the budget. */
static void conn_read(struct server *s, struct sconn *c)
{
    for (;;) {
        if (c->skip) { /* the rest of a dropped request */
            size_t d = c->in_len - c->in_pos;
            if (d > c->skip)
                d = (size_t)c->skip;
            c->in_pos += d;
            c->skip -= d;
        }
        if (c->in_pos > 0 && c->in_pos == c->in_len)
            c->in_pos = c->in_len = 0;
        if (c->in_len == c->in_cap && c->in_pos > 0) {
            memmove(c->in, c->in + c->in_pos, c->in_len - c->in_pos);
            c->in_len -= c->in_pos;
            c->in_pos = 0;
        }
        if (c->in_len == c->in_cap) {
            size_t want = c->skip ? IN_KEEP : in_want(s, c);
            if (c->in_cap >= want)
                return; /* full: what is here is handled first */
            size_t cap = c->in_cap ? c->in_cap * 2 : IN_MIN;
            if (cap > want)
                cap = want;
            int rc = in_resize(s, c, cap);
            if (rc == -EAGAIN) {
                in_drop(s, c);
                continue;
            }
            if (rc < 0) {
                c->broken = true;
                return;
            }
        }
        size_t room = c->in_cap - c->in_len;
        ssize_t r = mp__recv_nowait(c->fd, c->in + c->in_len, room);
        if (r == -EAGAIN)
            return;
        if (r <= 0) {
            c->broken = true; /* end of file, reset */
            c->hung_up = r == 0 || r == -ECONNRESET;
            return;
        }
        c->in_len += (size_t)r;
        if ((size_t)r < room && !c->skip)
            return; /* drained (an extra recv would only say EAGAIN) */
    }
}

/* What a request left to do once its reply has been delivered. */
static void after_reply(struct server *s)
{
    struct sobj *o = s->grant;
    s->grant = NULL;
    if (o)
        lock_grant_next(s, o);
}

/* Is a new request waiting in c's slot? */
static bool slot_has_request(const struct sconn *c)
{
    if (!c->slot)
        return false;
    /* Sequentially consistent: it pairs with the client's store (mgr.h). */
    uint64_t st = __atomic_load_n(&c->slot->state, __ATOMIC_SEQ_CST);
    return (st & 3) == MP__MGR_SLOT_REQ && st >> 2 != c->slot_seq;
}

/* Could c take a new request now? */
static bool conn_ready(const struct server *s, const struct sconn *c)
{
    return !c->broken && !c->closing && !c->waiter && !c->job && conn_idle_output(c) && !s->stop;
}

/* Handle the request in c's slot (slot_has_request said there is one). */
static void slot_take(struct server *s, struct sconn *c)
{
    struct mp__mgr_slot *sl = c->slot;
    uint64_t st = __atomic_load_n(&sl->state, __ATOMIC_ACQUIRE);
    uint32_t len = sl->len;
    c->slot_seq = st >> 2;
    c->via_slot = true;
    if (len > MP__MGR_SLOT_DATA) {
        reply_error(c, MP_EPROTO, "corrupt mailbox length");
    } else {
        /* A private copy: the block is writable by every client process. */
        memcpy(s->slot_copy, sl->data, len);
        handle_request(s, c, s->slot_copy, len);
    }
    reply_done(c);
    after_reply(s);
}

/*
 * Hand the large request at in_pos - the only frame in its buffer, which
 * grew to hold exactly it - to the helper thread to decode, with the
 * buffer and its charge. Returns false when there is no helper (the loop
 * then decodes it itself).
 */
static bool offload(struct server *s, struct sconn *c, size_t hdr, size_t size)
{
    if (s->probe || c->in_pos + hdr + size != c->in_len ||
        (!s->worker && mp__mgr_worker_new(&s->worker) < 0))
        return false;
    struct mp__mgr_job *j = calloc(1, sizeof *j);
    if (!j)
        return false;
    j->op = MP__MGR_JOB_DECODE;
    j->buf = c->in;
    j->off = c->in_pos + hdr;
    j->len = size;
    j->owner = c;
    j->charge = c->in_charge;
    if (mp__mgr_worker_submit(s->worker, j) < 0) {
        free(j);
        return false;
    }
    /* The buffer is the helper's now; only this frame was in it. */
    c->in = NULL;
    c->in_pos = c->in_len = c->in_cap = c->in_charge = 0;
    c->job = j;
    return true;
}

/* Free a request the helper decoded, off the loop too (a large tree takes
 * a while to free). */
static void drop_decoded(struct server *s, struct mp__mgr_job *j)
{
    j->op = MP__MGR_JOB_FREE;
    if (mp__mgr_worker_submit(s->worker, j) < 0) {
        mp_obj_free(j->obj);
        free(j);
    }
}

/* Run the requests the helper thread has decoded. */
static void collect_decoded(struct server *s)
{
    struct mp__mgr_job *j = mp__mgr_worker_collect(s->worker);
    while (j) {
        struct mp__mgr_job *next = j->next;
        struct sconn *c = j->owner;
        budget_give(s, &j->charge);
        if (c) {
            c->job = NULL;
            run_decoded(s, c, j->rc, j->obj);
            reply_done(c);
            after_reply(s);
            s->again = true; /* more may be buffered behind it */
        }
        drop_decoded(s, j);
        j = next;
    }
}

/* Handle buffered requests, one at a time (see the file comment). */
static void conn_process(struct server *s, struct sconn *c)
{
    while (conn_ready(s, c)) {
        if (c->owed) { /* the reply to a request dropped over the budget */
            reply_error(c, c->owed, "the server's budget for large messages is spent");
            c->owed = 0;
            reply_done(c);
            continue;
        }
        if (c->skip)
            break; /* the rest of that request is still to come */
        const unsigned char *p = c->in + c->in_pos;
        size_t avail = c->in_len - c->in_pos;
        uint64_t size;
        size_t hdr;
        int rc = mp__frame_decode(avail ? p : NULL, avail, &size, &hdr);
        if (rc == 0) {
            if (!slot_has_request(c))
                break;
            slot_take(s, c);
            continue;
        }
        if (rc == 1 && size == 0 && c->slot) {
            c->in_pos += hdr; /* a doorbell: the slot is looked at anyway */
            continue;
        }
        if (rc < 0) {
            reply_error(c, MP_EPROTO, "corrupt frame header");
            c->closing = true;
            conn_flush(c);
            break;
        }
        if (size > s->max_request) {
            /* Python's maxlength rule: the stream cannot be read on. */
            reply_error(c, MP_ETOOLONG, "the request is larger than the server accepts");
            c->closing = true;
            conn_flush(c);
            break;
        }
        if (avail - hdr < size)
            break;
        if (c->in_charge && offload(s, c, hdr, (size_t)size))
            break; /* decoded by the helper thread: see collect_decoded */
        handle_request(s, c, p + hdr, (size_t)size);
        c->in_pos += hdr + (size_t)size;
        reply_done(c);
        after_reply(s);
    }
    if (c->in_pos == c->in_len) {
        c->in_pos = c->in_len = 0;
        if (c->in_cap > IN_KEEP)
            (void)in_resize(s, c, 0); /* a large request's buffer goes at once */
    }
}

/* A request waits in the slot of a connection that can take it. */
static bool slots_pending(const struct server *s)
{
    for (size_t i = 0; i < s->nconns; i++) {
        const struct sconn *c = s->conns[i];
        if (c->slot && conn_ready(s, c) && slot_has_request(c))
            return true;
    }
    return false;
}

/* Could conn_process make progress without new input? */
static bool conn_has_work(const struct sconn *c)
{
    if (c->broken || c->closing || c->waiter || c->job || !conn_idle_output(c))
        return false;
    if (c->owed || slot_has_request(c))
        return true;
    if (c->skip)
        return false;
    uint64_t size;
    size_t hdr, avail = c->in_len - c->in_pos;
    int rc = mp__frame_decode(avail ? c->in + c->in_pos : NULL, avail, &size, &hdr);
    return rc < 0 || (rc == 1 && (size > UINT64_MAX - hdr || avail >= hdr + size));
}

static int conn_add(struct server *s, int fd)
{
    if (s->nconns == s->conns_cap) {
        size_t cap = s->conns_cap ? s->conns_cap * 2 : 16;
        struct sconn **v = realloc(s->conns, cap * sizeof *v);
        if (!v)
            return -ENOMEM;
        s->conns = v;
        s->conns_cap = cap;
    }
    struct sconn *c = calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    c->fd = fd;
    c->srv = s;
    c->id = ++s->next_conn_id;
    c->max_reply = MP__MGR_DEFAULT_MAX;
    s->conns[s->nconns++] = c;
    return 0;
}

/* Tear a broken connection down: its waiter goes, and if it was the last
 * connection of its process, the session ends (locks released, references
 * dropped). */
static void conn_kill(struct server *s, struct sconn *c)
{
    if (c->waiter)
        waiter_free(s, c->waiter);
    if (c->job) { /* its decode is dropped when it comes back */
        c->job->owner = NULL;
        c->job = NULL;
    }
    /* A slot is free again once the client has let go of the connection.
     * One whose client may still be using it (the server hung up on it: out
     * of memory, a fatal frame error) stays taken for good: the client
     * could still write a request into it, which must not land in another
     * connection's slot. */
    if (c->slot) {
        if (c->hung_up)
            s->slot_used[c->slot_ix] = false;
        c->slot = NULL;
        s->nslots--;
    }
    mp__close(c->fd);
    c->fd = -1;
    struct session *ss = c->sess;
    c->sess = NULL;
    if (ss && --ss->nconns == 0)
        session_end(s, ss);
}

static void conn_free(struct sconn *c)
{
    budget_give(c->srv, &c->in_charge);
    budget_give(c->srv, &c->out_charge);
    if (c->job)
        c->job->owner = NULL;
    free(c->in);
    free(c->out.p);
    free(c);
}

/* Kill broken connections until none is left (killing one may break
 * others, whose replies fail), then compact the array. */
static void reap_conns(struct server *s)
{
    bool any = true;
    while (any) {
        any = false;
        for (size_t i = 0; i < s->nconns; i++) {
            struct sconn *c = s->conns[i];
            if (c->broken && c->fd >= 0) {
                conn_kill(s, c);
                any = true;
            }
        }
    }
    size_t j = 0;
    for (size_t i = 0; i < s->nconns; i++) {
        if (s->conns[i]->fd < 0)
            conn_free(s->conns[i]);
        else
            s->conns[j++] = s->conns[i];
    }
    s->nconns = j;
}

/* ---- timeouts ------------------------------------------------------------------------ */

static int64_t next_deadline(struct server *s)
{
    int64_t d = MP__NO_DEADLINE;
    for (struct waiter *w = s->timed; w; w = w->tnext)
        if (d == MP__NO_DEADLINE || w->deadline < d)
            d = w->deadline;
    return d;
}

static void expire_waiters(struct server *s, int64_t now)
{
    struct waiter *w = s->timed;
    while (w) {
        struct waiter *next = w->tnext;
        if (w->deadline <= now) {
            int code = w->op == W_GET ? MP_EMPTY : w->op == W_PUT ? MP_FULL : MP_ETIMEDOUT;
            waiter_fail(s, w, code);
            next = s->timed; /* the list changed under us: start over */
        }
        w = next;
    }
}

/* ---- handshakes ------------------------------------------------------------------------ */

#define HS_BURST    256                 /* accepts per loop round, at most */
#define HS_SPARE_NS INT64_C(1000000000) /* out of fds: spare a handshake that spoke this long */

static void hs_unlink(struct server *s, struct hsconn *h)
{
    if (h->prev)
        h->prev->next = h->next;
    else
        s->hs_head = h->next;
    if (h->next)
        h->next->prev = h->prev;
    else
        s->hs_tail = h->prev;
    s->nhs--;
}

/* Drop a handshake: the peer sees end of file. */
static void hs_close(struct server *s, struct hsconn *h)
{
    hs_unlink(s, h);
    mp__close(h->fd);
    free(h);
}

/* The key is proved both ways: the descriptor becomes a connection. */
static void hs_adopt(struct server *s, struct hsconn *h)
{
    int fd = h->fd;
    hs_unlink(s, h);
    free(h);
    mp__tcp_keepalive(fd);
    if (conn_add(s, fd) < 0)
        mp__close(fd);
}

/* Move the handshake's bytes as far as the socket lets us without waiting:
 * send what the machine has to say, read what it asks for, and act when
 * it is over. */
static void hs_step(struct server *s, struct hsconn *h)
{
    for (;;) {
        const unsigned char *out;
        unsigned char *in;
        size_t n = mp__hs_output(&h->m, &out);
        if (n) {
            ssize_t r = mp__send_nowait(h->fd, out, n);
            if (r == -EAGAIN)
                return; /* the loop polls for POLLOUT */
            if (r < 0) {
                hs_close(s, h);
                return;
            }
            mp__hs_sent(&h->m, (size_t)r);
        } else if ((n = mp__hs_want(&h->m, &in)) > 0) {
            ssize_t r = mp__recv_nowait(h->fd, in, n);
            if (r == -EAGAIN)
                return; /* the loop polls for POLLIN */
            if (r <= 0) {
                hs_close(s, h); /* end of file, reset */
                return;
            }
            (void)mp__hs_received(&h->m, s->key, s->keylen, (size_t)r);
        }
        if (h->m.state == MP__HS_DONE) {
            hs_adopt(s, h);
            return;
        }
        if (h->m.state == MP__HS_FAILED) {
            hs_close(s, h);
            return;
        }
    }
}

/* Handshakes are kept in accept order and all have the same time to
 * finish, so the oldest is the first due. */
static int64_t hs_next_deadline(const struct server *s)
{
    return s->hs_head ? s->hs_head->deadline : MP__NO_DEADLINE;
}

static void hs_expire(struct server *s)
{
    int64_t now = mp__now_ns();
    while (s->hs_head && s->hs_head->deadline <= now)
        hs_close(s, s->hs_head);
}

/*
 * Out of descriptors: close a handshake that has not proved the key, to
 * take a newcomer. The oldest whose peer never spoke goes first: an honest
 * client answers within a round trip, so the newcomer is more likely one
 * than a connection silent the longest. Failing that, the oldest that spoke
 * but is still at it after a second (a drip-feeder, most likely). Spared:
 * those taken in this same accept burst (they have had no chance to speak)
 * and those that spoke within their first second (honest clients midway).
 * False if none may go.
 */
static bool hs_evict(struct server *s)
{
    int64_t started_by = mp__now_ns() - HS_SPARE_NS; /* spoke, and accepted before this */
    struct hsconn *victim = NULL, *slow = NULL;
    bool seen_heard = false;
    for (struct hsconn *h = s->hs_head; h && h->burst != s->hs_burst; h = h->next) {
        if (!mp__hs_heard(&h->m)) {
            victim = h;
            break;
        }
        if (!seen_heard && h->accepted <= started_by)
            slow = h;
        seen_heard = true;
    }
    if (!victim)
        victim = slow;
    if (!victim)
        return false;
    hs_close(s, victim);
    return true;
}

/* Start the handshake of an accepted descriptor (we speak first). */
static void hs_start(struct server *s, int fd)
{
    struct hsconn *h = malloc(sizeof *h);
    if (!h) {
        mp__close(fd);
        return;
    }
    int64_t now = mp__now_ns();
    h->fd = fd;
    h->accepted = now;
    h->deadline = now + (int64_t)(MP__MGR_HANDSHAKE_TIMEOUT * 1e9);
    h->burst = s->hs_burst;
    unsigned char random[MP__HS_RANDOM];
    mp__hs_random(s->hs_seed, s->hs_counter++, random);
    mp__hs_server_start(&h->m, MP_AUTH_SHA256, random);
    h->next = NULL;
    h->prev = s->hs_tail;
    if (s->hs_tail)
        s->hs_tail->next = h;
    else
        s->hs_head = h;
    s->hs_tail = h;
    s->nhs++;
    hs_step(s, h); /* the challenge goes out now */
}

/*
 * Out of descriptors with no handshake to close: accept the newcomer into
 * the reserved descriptor's place and close it at once (libuv's trick), so
 * it learns at once (end of file) rather than waiting in the backlog, and
 * the listener does not stay readable for nothing. Returns 1 if one was
 * shed, 0 if nobody waits any more, -1 without a reserve.
 */
static int shed_one(struct server *s, int lfd)
{
    if (s->reserve_fd < 0)
        return -1;
    mp__close(s->reserve_fd);
    int fd = mp__accept(lfd, mp__deadline(MP_NOWAIT), NULL, 0);
    if (fd >= 0)
        mp__close(fd);
    s->reserve_fd = mp__dup_cloexec(lfd);
    return fd >= 0 ? 1 : fd == MP_ETIMEDOUT ? 0 : -1;
}

/* Accept what waits in the backlog (a burst at most per round) and start
 * each handshake. */
static void accept_clients(struct server *s, int lfd)
{
    if (s->reserve_fd < 0)
        s->reserve_fd = mp__dup_cloexec(lfd); /* lost when we ran out */
    s->hs_burst++;
    for (int i = 0; i < HS_BURST; i++) {
        int fd = mp__accept(lfd, mp__deadline(MP_NOWAIT), NULL, 0);
        if (fd >= 0) {
            hs_start(s, fd);
            continue;
        }
        if (fd == MP_ETIMEDOUT)
            return; /* nobody else waits */
        if (fd == -EMFILE || fd == -ENFILE) {
            if (hs_evict(s))
                continue;
            int shed = shed_one(s, lfd);
            if (shed > 0)
                continue;
            if (shed == 0)
                return;
        }
        /* Anything else (out of memory or buffers, no reserve) would
         * repeat at once: pause accepting for a moment rather than spin on
         * a readable listener. */
        s->accept_pause = mp__now_ns() + 100 * 1000 * 1000;
        return;
    }
}

/* ---- the loop ------------------------------------------------------------------------- */

static int ensure_pollfds(struct server *s, size_t n)
{
    if (n <= s->pcap)
        return 0;
    size_t cap = s->pcap ? s->pcap : 32;
    while (cap < n)
        cap *= 2;
    struct pollfd *p = realloc(s->pfds, cap * sizeof *p);
    if (!p)
        return -ENOMEM;
    s->pfds = p;
    struct sconn **pc = realloc(s->pconn, cap * sizeof *pc);
    if (!pc)
        return -ENOMEM;
    s->pconn = pc;
    struct hsconn **ph = realloc(s->phs, cap * sizeof *ph);
    if (!ph)
        return -ENOMEM;
    s->phs = ph;
    s->pcap = cap;
    return 0;
}

/* Does the connection want its socket read now? Reading stops while a
 * request cannot be handled yet (it waits, its reply is being sent, or the
 * helper thread decodes it) and 64 KiB are already buffered. */
static bool wants_input(const struct sconn *c)
{
    if (c->broken || c->closing)
        return false;
    if (!c->waiter && !c->job && conn_idle_output(c))
        return true;
    return c->in_len - c->in_pos < IN_KEEP;
}

static void free_state(struct server *s);

static void teardown(struct server *s)
{
    /* Say goodbye: a shutdown's own reply is usually still pending. */
    for (size_t i = 0; i < s->nconns; i++)
        conn_flush(s->conns[i]);

    /* Handshakes under way end with end of file. */
    while (s->hs_head)
        hs_close(s, s->hs_head);
    if (s->reserve_fd >= 0)
        mp__close(s->reserve_fd);

    free_state(s);
}

/* Free what the loop owns: waiters, connections, the helper thread,
 * sessions and objects. */
static void free_state(struct server *s)
{
    /* Waiters first (they point at connections and objects). */
    while (s->timed)
        waiter_free(s, s->timed);
    for (size_t i = 0; i < s->nconns; i++) {
        struct sconn *c = s->conns[i];
        if (c->waiter)
            waiter_free(s, c->waiter);
        if (c->fd >= 0)
            mp__close(c->fd);
        conn_free(c);
    }
    free(s->conns);
    mp__mgr_worker_free(s->worker); /* after the connections let go of its jobs */
    while (s->sessions) {
        struct session *ss = s->sessions;
        s->sessions = ss->next;
        free(ss->held);
        free(ss);
    }
    for (size_t i = 0; i < s->table_cap; i++) {
        struct sobj *o = s->table[i];
        while (o) {
            struct sobj *next = o->hnext;
            for (size_t k = 0; k < o->len; k++)
                mp_obj_free(o->items[(o->head + k) % o->cap]);
            free(o->items);
            mp_obj_free(o->value);
            mp_obj_free(o->name);
            free(o);
            o = next;
        }
    }
    free(s->table);
    mp_obj_free(s->names);
    free(s->pfds);
    free(s->pconn);
    free(s->phs);
    /* The seed is a secret: do not leave it on the stack. */
    mp__wipe(s->hs_seed, sizeof s->hs_seed);
}

int mp__mgr_serve(mp_listener *l, const struct mp__mgr_cfg *cfg)
{
    if (!l || !cfg || !cfg->authkey || !cfg->authkey_len)
        return -EINVAL;
    struct server s;
    memset(&s, 0, sizeof s);
    s.listener = l;
    s.key = cfg->authkey;
    s.keylen = cfg->authkey_len;
    s.max_request = cfg->max_request ? cfg->max_request : MP__MGR_DEFAULT_MAX;
    if (s.max_request > MP__MGR_MAX_LIMIT)
        s.max_request = MP__MGR_MAX_LIMIT;
    s.budget = budget_for(s.max_request);
    s.alive_fd = cfg->alive_fd;
    s.arena = cfg->arena;
    int lfd = mp_listener_fileno(l);
    if (lfd < 0)
        return lfd;
    /* The challenges' secret, drawn once: a handshake then needs no
     * system call (nor a descriptor) for its randomness. */
    int rc = mp__random_bytes(s.hs_seed, sizeof s.hs_seed);
    if (rc < 0)
        return rc;
    s.reserve_fd = mp__dup_cloexec(lfd);
    s.names = mp_obj_dict_new();
    if (s.reserve_fd < 0 || !s.names) {
        rc = s.reserve_fd < 0 ? s.reserve_fd : -ENOMEM;
        teardown(&s);
        return rc;
    }

    /* No signal is touched here: every send is MSG_NOSIGNAL (a started
     * server's child has also blocked SIGINT before it got here). */
    rc = 0;
    bool busy = false;       /* the last round handled a client */
    int64_t last_poll = 0;   /* when the sockets were last looked at */
    unsigned pause_skip = 0; /* spins left before looking in place again */
    while (!s.stop) {
        if (ensure_pollfds(&s, s.nconns + s.nhs + 3) < 0) {
            rc = -ENOMEM;
            break;
        }
        size_t n = 0;
        bool paused = s.accept_pause && mp__now_ns() < s.accept_pause;
        size_t li = SIZE_MAX, ai = SIZE_MAX;
        if (!paused) {
            li = n;
            s.pfds[n] = (struct pollfd){.fd = lfd, .events = POLLIN, .revents = 0};
            s.pconn[n] = NULL;
            s.phs[n++] = NULL;
        }
        if (s.alive_fd >= 0) {
            ai = n;
            s.pfds[n] = (struct pollfd){.fd = s.alive_fd, .events = POLLIN, .revents = 0};
            s.pconn[n] = NULL;
            s.phs[n++] = NULL;
        }
        size_t wi = SIZE_MAX; /* the helper thread's decodes */
        if (s.worker) {
            wi = n;
            s.pfds[n] =
                (struct pollfd){.fd = mp__mgr_worker_fd(s.worker), .events = POLLIN, .revents = 0};
            s.pconn[n] = NULL;
            s.phs[n++] = NULL;
        }
        for (size_t i = 0; i < s.nconns; i++) {
            struct sconn *c = s.conns[i];
            short ev = (short)((wants_input(c) ? POLLIN : 0) | (conn_idle_output(c) ? 0 : POLLOUT));
            s.pfds[n] = (struct pollfd){.fd = c->fd, .events = ev, .revents = 0};
            s.pconn[n] = c;
            s.phs[n++] = NULL;
        }
        for (struct hsconn *h = s.hs_head; h; h = h->next) {
            const unsigned char *unused;
            short ev = mp__hs_output(&h->m, &unused) ? POLLOUT : POLLIN;
            s.pfds[n] = (struct pollfd){.fd = h->fd, .events = ev, .revents = 0};
            s.pconn[n] = NULL;
            s.phs[n++] = h;
        }
        /* again: work is waiting without new input; only look at the
         * sockets on the way (a poll that does not wait). */
        bool again = s.again;
        s.again = false;
        int64_t deadline = next_deadline(&s);
        int64_t hs_deadline = hs_next_deadline(&s);
        if (hs_deadline != MP__NO_DEADLINE &&
            (deadline == MP__NO_DEADLINE || hs_deadline < deadline))
            deadline = hs_deadline;
        if (paused && (deadline == MP__NO_DEADLINE || deadline > s.accept_pause))
            deadline = s.accept_pause; /* look at the listener again then */
        int pr = 0;
        bool mail = false; /* a request waits in a slot */
        if (again) {
            last_poll = mp__now_ns();
            pr = mp__poll(s.pfds, (nfds_t)n, last_poll);
            mail = true; /* not asleep: the spin below and the sleep are skipped */
        } else if (busy) {
            /* Right after work, the next request is likely microseconds
             * away: look for it without sleeping for a moment, yielding the
             * CPU between looks (mgr.h, "Spinning"). Slots cost a load to
             * look at, sockets a poll(): while some connection has a slot
             * the sockets are looked at every SERVER_POLL while the slots
             * are quiet, and every SERVER_BUSY_POLL however busy they keep
             * the loop, so that socket clients, newcomers and the
             * starter's pipe are heard; without slots, at every look. */
            int64_t t0 = mp__now_ns();
            int64_t until = t0 + MP__MGR_SERVER_SPIN_NS;
            if (deadline != MP__NO_DEADLINE && deadline < until)
                until = deadline;
            /* First in place (no yield) while mailbox clients answer
             * quickly; after a look in place that found nothing, yielding
             * for the next PAUSE_RETRY spins (mgr.h, "Spinning"). */
            bool pausing = s.nslots && !pause_skip;
            if (pause_skip)
                pause_skip--;
            for (;;) {
                int64_t t = mp__now_ns();
                mail = s.nslots && slots_pending(&s);
                int64_t every = mail ? MP__MGR_SERVER_BUSY_POLL_NS : MP__MGR_SERVER_POLL_NS;
                if (!s.nslots || t - last_poll >= every) {
                    last_poll = t;
                    pr = mp__poll(s.pfds, (nfds_t)n, t);
                }
                if (mail || pr != 0 || t >= until)
                    break;
                if (pausing && t - t0 < MP__MGR_SERVER_PAUSE_NS) {
                    for (int k = 0; k < 16; k++)
                        mp__mgr_relax();
                    continue;
                }
                if (pausing) {
                    pausing = false;
                    pause_skip = MP__MGR_PAUSE_RETRY;
                }
                sched_yield();
            }
        }
        if (pr == 0 && !mail) {
            /* About to sleep: say so, then look at the slots once more
             * (mgr.h, "Mailboxes"). */
            if (s.arena) {
                __atomic_store_n(&s.arena->ssleep, 1, __ATOMIC_SEQ_CST);
                mail = slots_pending(&s);
            }
            if (!mail) {
                pr = mp__poll(s.pfds, (nfds_t)n, deadline);
                last_poll = mp__now_ns();
            }
            if (s.arena)
                __atomic_store_n(&s.arena->ssleep, 0, __ATOMIC_RELAXED);
        }
        busy = mail;
        if (pr < 0) {
            rc = pr;
            break;
        }
        if (ai != SIZE_MAX && s.pfds[ai].revents) {
            rc = 0; /* the starter is gone: so are we */
            break;
        }
        /* Handshakes before accepting: an accept may close one (out of
         * descriptors), and phs[] must not point at it by then. */
        for (size_t i = 0; i < n; i++)
            if (s.phs[i] && s.pfds[i].revents)
                hs_step(&s, s.phs[i]);
        hs_expire(&s);
        if (li != SIZE_MAX && s.pfds[li].revents)
            accept_clients(&s, lfd);
        if (wi != SIZE_MAX && s.pfds[wi].revents)
            collect_decoded(&s);
        for (size_t i = 0; i < n; i++) {
            struct sconn *c = s.pconn[i];
            if (!c || !s.pfds[i].revents)
                continue;
            busy = true;
            if (s.pfds[i].revents & POLLOUT)
                conn_flush(c);
            if (s.pfds[i].revents & (POLLIN | POLLHUP | POLLERR))
                conn_read(&s, c);
            if (s.pfds[i].revents & POLLNVAL)
                c->broken = true;
        }
        expire_waiters(&s, mp__now_ns());
        for (size_t i = 0; i < s.nconns && !s.stop; i++)
            conn_process(&s, s.conns[i]);
        reap_conns(&s);
        for (size_t i = 0; i < s.nconns && !s.again; i++)
            s.again = conn_has_work(s.conns[i]);
    }
    teardown(&s);
    return rc;
}

/* ---- the probe: requests without sockets, for the fuzzer -------------------------- */

#define PROBE_CONNS 4

struct mp__mgr_probe {
    struct server s;
    struct sconn *c[PROBE_CONNS];
};

/* A fresh connection in place i. Its descriptor is real (the reaper
 * closes it, and tells torn-down connections by fd -1) but never used: one
 * end of a socket pair whose other end is closed at once. */
static int probe_conn(struct mp__mgr_probe *p, unsigned i)
{
    int sv[2];
    int rc = mp__socketpair(sv);
    if (rc < 0)
        return rc;
    mp__close(sv[1]);
    rc = conn_add(&p->s, sv[0]);
    if (rc < 0) {
        mp__close(sv[0]);
        return rc;
    }
    p->c[i] = p->s.conns[p->s.nconns - 1];
    return 0;
}

int mp__mgr_probe_new(struct mp__mgr_probe **out, size_t max_request)
{
    *out = NULL;
    struct mp__mgr_probe *p = calloc(1, sizeof *p);
    if (!p)
        return -ENOMEM;
    struct server *s = &p->s;
    s->probe = true;
    s->max_request = max_request ? max_request : MP__MGR_DEFAULT_MAX;
    s->budget = budget_for(s->max_request);
    s->names = mp_obj_dict_new();
    int rc = s->names ? 0 : -ENOMEM;
    for (unsigned i = 0; rc == 0 && i < PROBE_CONNS; i++)
        rc = probe_conn(p, i);
    if (rc < 0) {
        mp__mgr_probe_free(p);
        return rc;
    }
    *out = p;
    return 0;
}

int mp__mgr_probe_request(struct mp__mgr_probe *p, unsigned i, const void *req, size_t n)
{
    struct server *s = &p->s;
    struct sconn *c = p->c[i % PROBE_CONNS];
    if (!conn_ready(s, c))
        return MP_ESTATE; /* the server would not read it yet */
    handle_request(s, c, req, n);
    reply_done(c);
    after_reply(s);
    return 0;
}

int mp__mgr_probe_take(struct mp__mgr_probe *p, unsigned i, unsigned char **out, size_t *len)
{
    struct sconn *c = p->c[i % PROBE_CONNS];
    *out = NULL;
    *len = c->out.len;
    if (c->out.len) {
        *out = malloc(c->out.len);
        if (!*out)
            return -ENOMEM;
        memcpy(*out, c->out.p, c->out.len);
    }
    /* As if it had all been sent (conn_flush). */
    c->out_pos = c->out.len = 0;
    budget_give(&p->s, &c->out_charge);
    return 0;
}

int mp__mgr_probe_close(struct mp__mgr_probe *p, unsigned i)
{
    i %= PROBE_CONNS;
    p->c[i]->broken = true;
    p->c[i]->hung_up = true;
    reap_conns(&p->s);
    return probe_conn(p, i);
}

void mp__mgr_probe_expire(struct mp__mgr_probe *p)
{
    expire_waiters(&p->s, INT64_MAX);
}

bool mp__mgr_probe_stopped(const struct mp__mgr_probe *p)
{
    return p->s.stop;
}

void mp__mgr_probe_free(struct mp__mgr_probe *p)
{
    if (!p)
        return;
    free_state(&p->s);
    free(p);
}

int mp__mgr_quick_request(const unsigned char *p, size_t n, int64_t *ident, const char **meth,
                          size_t *mlen, mp_obj **args)
{
    return quick_request(p, n, ident, meth, mlen, args);
}
