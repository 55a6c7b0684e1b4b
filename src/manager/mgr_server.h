/*
 * mgr_server - what the files of the manager's server share: its state (the
 * server, connections, objects, sessions, waiters), the object types' method
 * tables, and the prototypes and small hot helpers they call across files.
 * Private to src/manager/mgr_server*.c and mgr_type_*.c; never installed.
 *
 * The family, one job a file (internal non-static names are mp__mgr_*;
 * static functions carry the prefix of their file):
 *   mgr_server.c            srv_      the loop, connections' lifetime,
 *                                     teardown, mp__mgr_serve
 *   mgr_server_conn.c       conn_     connection I/O: reading frames, sending,
 *                                     mailbox slots, large requests' helper
 *   mgr_server_reply.c      reply_    reply frames: errors, values, the checks
 *                                     before one stands (size, memory, budget)
 *   mgr_server_handshake.c  hs_       accept, handshakes, evict and shed
 *   mgr_server_request.c    req_      request readers (fast, general), the
 *                                     type registry, dispatch
 *   mgr_server_probe.c      probe_    the socket-less server of the fuzzers
 *   mgr_server_py.c         py_       CPython's manager dialect: its method
 *                                     tables, its references, the entry
 *   mgr_server_py_public.c  pypub_    the dialect's public calls (create,
 *                                     incref, decref, ...)
 *   mgr_server_py_call.c    pycall_   a proxy's calls, as our methods
 *   mgr_server_py_reply.c   pyreply_  our replies and errors in its form
 *   mgr_server_obj.c        obj_      objects by id, their lifetime, the
 *                                     sessions that hold them
 *   mgr_server_nest.c       nest_     proxies inside values: the objects
 *                                     they keep alive
 *   mgr_server_wait.c       wait_     requests that wait, and their deadlines
 *   mgr_type_manager.c      smgr_     the manager's own methods (ident 0)
 *   mgr_type_dict.c         sdict_    dict and its methods
 *   mgr_type_list.c         slist_    list and its methods
 *   mgr_type_list_sort.c    lsort_    list sort, reverse, + and *
 *   mgr_type_value.c        sdata_    Value, Array, Namespace
 *   mgr_type_lock.c         slock_    Lock and RLock and their methods
 *   mgr_type_queue.c        squeue_   Queue/JoinableQueue and their methods
 *   mgr_type_sync.c         ssync_    Semaphore, BoundedSemaphore, Event,
 *                                     Condition, Barrier and their methods
 *   mgr_worker.c            worker_   the helper thread for large requests
 * mgr.h holds what the server shares with the client (mgr_client.h).
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
 * Sessions. A client process announces a random session id in its 'hello';
 * all connections of one process (one per thread that talks at once) share
 * it. Locks are held, and objects referenced, by sessions. When a session's
 * last connection closes - the process exited, died or closed its manager -
 * the server releases the locks it held (marking them so the next acquirer
 * gets MP_EOWNERDEAD) and drops its references; an object nobody references
 * (and that has no name) is freed.
 *
 * The hot path. A call through a mailbox runs conn_slot_take, the fast
 * reader and dispatch (mgr_server_request.c), one method, and the reply:
 * one call from file to file each way, and the small replies, the budget
 * and the argument helpers inline below, so the split costs it nothing
 * worth measuring (the W6 rows of bench/run.py check it).
 *
 * Re-entrancy. Completing a waiter writes to another connection; a failed
 * write never frees that connection on the spot (it is marked broken and
 * torn down at the top of the loop), so no object or session disappears
 * while code further up the stack is using it.
 */
#ifndef MPIPC_MGR_SERVER_H
#define MPIPC_MGR_SERVER_H

#include "codec/frame.h"
#include "codec/handshake.h"
#include "codec/pickle.h"
#include "core/internal.h"
#include "core/list.h"
#include "manager/mgr.h"

#include <mpipc/listener.h>
#include <mpipc/obj.h>

#include <math.h>
#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MP__MGR_IN_MIN ((size_t)4096) /* a connection's first input buffer */

/* The kinds of object; K_MANAGER is the manager itself (ident 0). */
enum {
    K_MANAGER = 0,
    K_DICT,
    K_LIST,
    K_LOCK,
    K_RLOCK,
    K_QUEUE,
    K_SEMAPHORE,  /* mgr_type_sync.c */
    K_BSEMAPHORE, /* BoundedSemaphore */
    K_EVENT,
    K_CONDITION,
    K_BARRIER,
    K_VALUE,
    K_ARRAY,
    K_NAMESPACE,
    K_USER, /* a type of your own (mgr_type_user.c) */
    K_COUNT
};

/* What a waiting request waits for. */
enum {
    W_ACQUIRE = 1,
    W_GET,
    W_PUT,
    W_JOIN,
    W_EVENT,     /* an Event's wait */
    W_CWAIT,     /* a Condition's wait, before its notify or timeout */
    W_REACQUIRE, /* a Condition's wait taking its lock back */
    W_BARRIER,   /* a Barrier's wait */
};

struct sconn;
struct sobj;
struct session;
struct server;

/* A FIFO of waiters (on one object, for one operation), linked through
 * their qnode. */
struct wq {
    struct mp__list l;
};

struct waiter {
    struct sconn *conn;
    struct sobj *obj;
    struct wq *q;
    int op;                     /* W_* */
    int64_t deadline;           /* MP__NO_DEADLINE, or when to fail it */
    uint64_t tid;               /* W_ACQUIRE: the client thread */
    mp_obj *item;               /* W_PUT: the item, owned */
    struct mp__list_node qnode; /* in q */
    struct mp__list_node tnode; /* in the server's timed list */
    uint64_t saved;             /* W_REACQUIRE: the lock's count to restore */
    bool notified;              /* W_REACQUIRE: notified, not timed out */
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
    struct mp__list_node lnode; /* in the server's list of locks */
    /* K_QUEUE: items[head .. head+len) in a ring of cap */
    mp_obj **items;
    size_t head, len, cap;
    int64_t maxsize;    /* <= 0: unbounded */
    int64_t unfinished; /* JoinableQueue's unfinished_tasks */
    struct wq getters, putters, joiners;
    long pyrefs;        /* CPython clients' incref - decref (mgr_server_py.c) */
    bool py_iter;       /* K_LIST: a CPython Iterator's remaining items */
    int64_t py_src;     /* py_iter: the id of the dict it walks (ids are never reused) */
    ssize_t py_src_len; /* py_iter: that dict's size when the walk began */
    /* K_SEMAPHORE..K_BARRIER: their state (mgr_type_sync.c); a semaphore
     * and a condition are also on the server's list of locks, and a
     * condition without a lock of its own uses the fields of a lock. */
    struct mp__mgr_sync *sync;
    char typecode; /* K_ARRAY: array.array's typecode (mgr_type_value.c) */
    /* K_USER: its type and what its create made (mgr_type_user.c). */
    const struct mp_manager_type *utype;
    void *uself;
    /* Proxies inside values (mgr_server_nest.c): the objects its value
     * names by proxy references (or a Condition's Lock), one reference held
     * on each; whether its value holds one (then every request recomputes
     * them); references sent to Python clients, held until their increfs. */
    struct sobj **nest;
    size_t nnest;
    bool nest_seen;
    long py_pending;
};

struct session {
    int64_t id;
    int nconns;
    struct sobj **held;
    size_t nheld, cap;
    struct mp__list_node node; /* in the server's sessions */
};

struct sconn {
    int fd;
    int64_t id;
    struct server *srv;
    struct session *sess; /* NULL until hello */
    size_t max_reply;
    unsigned char *in; /* in[in_pos, in_len) not yet handled */
    size_t in_pos, in_len, in_cap;
    /* The last peeked bytes of in[] (mp__mgr_conn_read): still in the
     * socket until answered (mp__mgr_conn_take_peeked). */
    size_t peeked;
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
    /* CPython's dialect (mgr_server_py.c): the connection speaks it, and
     * how the reply to its current request is rewritten into it. */
    bool py;
    int py_x, py_kind;
    mp_obj *py_saved; /* the key of a KeyError, or a default, or NULL */
};

/* A connection whose handshake is under way (mgr_server_handshake.c). */
struct hsconn {
    int fd;
    int64_t deadline;          /* the whole exchange must be over by then */
    int64_t accepted;          /* when */
    uint64_t burst;            /* the accept burst that took it */
    struct mp__list_node node; /* in the server's hs, in accept order */
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
    struct mp__list hs; /* of hsconn, the oldest first */
    size_t nhs;
    int64_t hs_timeout_ns; /* the time each has from its accept */
    unsigned char hs_seed[32];
    uint64_t hs_counter;
    uint64_t hs_burst; /* accept bursts so far */
    int reserve_fd;

    struct sconn **conns;
    size_t nconns, conns_cap;
    struct mp__list sessions; /* the newest first */
    size_t nsessions;
    struct sobj **table; /* hash of objects by id */
    size_t table_cap, nobjs;
    struct mp__list locks; /* every lock object, the newest first */
    mp_obj *names;         /* dict: name -> id */
    struct mp__list timed; /* waiters with a deadline, the newest first */
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
    const struct mp_manager_type *utypes; /* types of your own, borrowed */
    size_t nutypes;
};

/* ---- object types and their methods ------------------------------------------- */

/* One request being run: the server, the connection it came on, the object
 * it names (NULL for the manager's own methods) and its arguments (a
 * tuple, its length checked against the method's; a method may move items
 * out of it). */
struct req {
    struct server *s;
    struct sconn *c;
    struct sobj *o;
    mp_obj *args;
};

/* A method replies - or parks the request (mp__mgr_wait) - and returns 0,
 * or returns a negative status without replying, which the dispatcher
 * sends as the error reply (mp__mgr_reply_status). */
typedef int (*mp__mgr_method_fn)(const struct req *r);

struct method {
    const char *name;
    int min_args, max_args;
    mp__mgr_method_fn fn;
};

/* An object type: its name (in create, attach and their replies), its
 * methods, how a new object is set up from the create request r (its
 * initial value is argument 2: 0, MP_ETYPE or -ENOMEM), and what must
 * happen before one is freed beyond freeing its value, items and name.
 * init and fini may be NULL. */
struct stype {
    const char *name;
    const struct method *methods;
    size_t nmethods;
    int (*init)(const struct req *r, struct sobj *o);
    void (*fini)(struct server *s, struct sobj *o);
};

extern const struct stype mp__mgr_type_manager;    /* mgr_type_manager.c */
extern const struct stype mp__mgr_type_dict;       /* mgr_type_dict.c */
extern const struct stype mp__mgr_type_list;       /* mgr_type_list.c */
extern const struct stype mp__mgr_type_lock;       /* mgr_type_lock.c */
extern const struct stype mp__mgr_type_rlock;      /* mgr_type_lock.c */
extern const struct stype mp__mgr_type_queue;      /* mgr_type_queue.c */
extern const struct stype mp__mgr_type_semaphore;  /* mgr_type_sync.c */
extern const struct stype mp__mgr_type_bsemaphore; /* mgr_type_sync.c */
extern const struct stype mp__mgr_type_event;      /* mgr_type_sync.c */
extern const struct stype mp__mgr_type_condition;  /* mgr_type_sync.c */
extern const struct stype mp__mgr_type_barrier;    /* mgr_type_sync.c */
extern const struct stype mp__mgr_type_value;      /* mgr_type_value.c */
extern const struct stype mp__mgr_type_array;      /* mgr_type_value.c */
extern const struct stype mp__mgr_type_namespace;  /* mgr_type_value.c */
extern const struct stype mp__mgr_type_user;       /* mgr_type_user.c */

/* The type of each kind, K_MANAGER to K_COUNT - 1 (mgr_server_request.c). */
extern const struct stype *const mp__mgr_types[K_COUNT];

#define MP__MGR_METHODS(table) table, sizeof table / sizeof table[0]

/* What dict and list share (mgr_server_obj.c): their init (the value
 * empty, or create's initial value moved in) and the methods len(), copy(),
 * clear(). */
int mp__mgr_value_init(const struct req *r, struct sobj *o);
int mp__mgr_value_len(const struct req *r);
int mp__mgr_value_copy(const struct req *r);
int mp__mgr_value_clear(const struct req *r);

/* The list's sort(reverse), reverse(), add(seq), mul(n) and imul(n)
 * (mgr_type_list_sort.c). */
int mp__mgr_list_sort(const struct req *r);
int mp__mgr_list_reverse(const struct req *r);
int mp__mgr_list_add(const struct req *r);
int mp__mgr_list_mul(const struct req *r);
int mp__mgr_list_imul(const struct req *r);

/* The list's get, set and del when argument 0 is a builtins.slice
 * (mgr_type_list_slice.c). */
int mp__mgr_list_get_slice(const struct req *r);
int mp__mgr_list_set_slice(const struct req *r);
int mp__mgr_list_del_slice(const struct req *r);

/* Argument i of the request; the request's own, so a handler may take it. */
static inline mp_obj *mp__mgr_arg(const struct req *r, size_t i)
{
    return mp_obj_list_get_mut(r->args, (ssize_t)i);
}

/* A timeout argument: a number of seconds, negative or None for forever.
 * 0, MP_ETYPE, or MP_EVALUE for NaN. */
static inline int mp__mgr_arg_timeout(const mp_obj *o, double *t)
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

/* ---- the loop and connections' lifetime (mgr_server.c) ------------------------- */

/* Zero s and set what a server and a probe both start with (the request
 * limit, its budget, reserve_fd -1, the names dict): 0 or -ENOMEM. */
int mp__mgr_server_init(struct server *s, size_t max_request);
/* Free what the loop owns: waiters, connections, the helper thread,
 * sessions and objects. Descriptors of handshakes are not touched. */
void mp__mgr_server_free(struct server *s);
/* A new connection (the key is proved) on fd: 0 or -ENOMEM. */
int mp__mgr_conn_add(struct server *s, int fd);
/* Tear down broken connections (see the file). */
void mp__mgr_conns_reap(struct server *s);

/* ---- connection I/O (mgr_server_conn.c) ---------------------------------------- */

void mp__mgr_conn_flush(struct sconn *c);
void mp__mgr_conn_read(struct server *s, struct sconn *c);
void mp__mgr_conn_process(struct server *s, struct sconn *c);
/*
 * Take c's peeked bytes (mp__mgr_conn_read) out of its socket, their
 * requests answered - after every connection's turn in a round, and before
 * c is looked at as a waiter (mp__mgr_conn_gone). While a request among
 * them waits (a lock not free yet) they stay, and the socket is polled only
 * for its hang-up (POLLRDHUP), so that the client asleep behind it is woken
 * once, by its answer; where the system has no POLLRDHUP they go at once.
 */
void mp__mgr_conn_take_peeked(struct sconn *c);
bool mp__mgr_conn_ready(const struct server *s, const struct sconn *c);
bool mp__mgr_conn_has_work(const struct sconn *c);
bool mp__mgr_slots_pending(const struct server *s);
void mp__mgr_collect_decoded(struct server *s);
/*
 * Whether a waiter's connection is gone, about to be handed something - a
 * lock, a semaphore unit, a queue item, a notify, a barrier place - it
 * could never take. Known gone (broken, or no session) or found gone now:
 * a peer that died this round may not have been read yet (its hang-up and
 * another client's release arrive together; a mailbox request is handled
 * without polling the sockets), so its socket is looked at once
 * (mp__peer_gone, which sees a hang-up behind bytes peeked and not taken
 * yet where POLLRDHUP exists; elsewhere they are taken first).
 */
bool mp__mgr_conn_gone(struct sconn *c);
/* A reply to c's current request is complete: deliver it. */
void mp__mgr_reply_done(struct sconn *c);
/* What a request left to do once its reply has been delivered. */
void mp__mgr_after_reply(struct server *s);

static inline bool mp__mgr_conn_idle_output(const struct sconn *c)
{
    return c->out_pos == c->out.len;
}

/* ---- the budget for large messages (mgr.h, "Large requests") ------------------ */

/* The budget of a server with this request limit: room for
 * MP__MGR_BUDGET_FACTOR maximal requests, and for one at the very least. */
static inline size_t mp__mgr_budget_for(size_t max_request)
{
    size_t b = max_request > SIZE_MAX / MP__MGR_BUDGET_FACTOR ? SIZE_MAX
                                                              : MP__MGR_BUDGET_FACTOR * max_request;
    return b < max_request + MP__FRAME_MAX ? max_request + MP__FRAME_MAX : b;
}

/* Charge n bytes against the budget: false (nothing charged) when they do
 * not fit. */
static inline bool mp__mgr_budget_take(struct server *s, size_t n)
{
    MP__ASSERT(s->inflight <= s->budget);
    if (n > s->budget - s->inflight)
        return false;
    s->inflight += n;
    return true;
}

/* Give back n bytes of a charge. */
static inline void mp__mgr_budget_return(struct server *s, size_t n)
{
    MP__ASSERT(s->inflight >= n);
    s->inflight -= n;
}

/* Give back the whole charge and clear it. */
static inline void mp__mgr_budget_give(struct server *s, size_t *charge)
{
    mp__mgr_budget_return(s, *charge);
    *charge = 0;
}

/* ---- replies (mgr_server_reply.c) ----------------------------------------------- */

void mp__mgr_reply_error(struct sconn *c, int code, const char *text);
void mp__mgr_reply_status(struct sconn *c, int rc);
/* KeyError with the key's repr (cut to 200 bytes); a method's failure
 * status worded with what its request holds (mgr_server_reply.c). */
void mp__mgr_reply_keyerror(struct sconn *c, const mp_obj *key);
void mp__mgr_reply_failed(const struct req *r, int rc);
int mp__mgr_reply_obj(struct sconn *c, const mp_obj *o);
int mp__mgr_frame_check(struct sconn *c, size_t start, bool limited);

/* Open a ('#RETURN', value) reply frame; the caller pickles the value and
 * closes it with mp__mgr_reply_end. Returns where the frame starts. */
static inline size_t mp__mgr_reply_begin(struct sconn *c)
{
    size_t start = c->out.len;
    if (mp__pickler_reserve(&c->out, 4) == 0)
        c->out.len += 4;
    mp__pickler_start(&c->out);
    mp__pickler_str(&c->out, "#RETURN", 7);
    return start;
}

/* A reply frame to a connection that speaks CPython's dialect, rewritten
 * into it and closed (mgr_server_py.c). */
int mp__mgr_py_reply(struct sconn *c, size_t start, bool limited);

/* Close the frame that starts at start. Returns 0 when it stands; for a
 * limited (value) reply that cannot go out, the error code it was replaced
 * with (mp__mgr_frame_check, out of line, deals with those). */
static inline int mp__mgr_frame_finish(struct sconn *c, size_t start, bool limited)
{
    if (c->py)
        return mp__mgr_py_reply(c, start, limited);
    size_t size = c->out.len - start - 4;
    if (c->out.err || (limited && (size > c->max_reply || size > MP__MGR_OUT_KEEP)))
        return mp__mgr_frame_check(c, start, limited);
    mp__frame_put_short(c->out.p + start, (uint32_t)size);
    return 0;
}

/* 0 when the reply stands, else the code the reader got instead. */
static inline int mp__mgr_reply_end(struct sconn *c, size_t start)
{
    mp__pickler_tuple(&c->out, 2);
    mp__pickler_stop(&c->out);
    return mp__mgr_frame_finish(c, start, true);
}

/* Withdraw a reply that stood (mp__mgr_reply_end returned 0) because what
 * it reports could not be done after all. */
static inline void mp__mgr_reply_withdraw(struct sconn *c, size_t start)
{
    c->out.len = start;
    c->out.err = 0;
}

static inline void mp__mgr_reply_none(struct sconn *c)
{
    size_t st = mp__mgr_reply_begin(c);
    mp__pickler_none(&c->out);
    mp__mgr_reply_end(c, st);
}

static inline void mp__mgr_reply_int(struct sconn *c, int64_t v)
{
    size_t st = mp__mgr_reply_begin(c);
    mp__pickler_int(&c->out, v);
    mp__mgr_reply_end(c, st);
}

static inline void mp__mgr_reply_bool(struct sconn *c, bool v)
{
    size_t st = mp__mgr_reply_begin(c);
    mp__pickler_bool(&c->out, v);
    mp__mgr_reply_end(c, st);
}

/* ---- handshakes (mgr_server_handshake.c) ----------------------------------------- */

/* Accept what waits in the backlog of lfd and start each handshake. */
void mp__mgr_accept(struct server *s, int lfd);
/* Move a handshake on after its socket polled ready. */
void mp__mgr_hs_step(struct server *s, struct hsconn *h);
/* Close the handshakes whose deadline passed; all of them. */
void mp__mgr_hs_expire(struct server *s);
void mp__mgr_hs_close_all(struct server *s);
/* When the first handshake is due, or MP__NO_DEADLINE. */
int64_t mp__mgr_hs_next_deadline(const struct server *s);

/* ---- requests (mgr_server_request.c) --------------------------------------------- */

/* One whole request, the payload of a frame: a pickle of (ident, method,
 * args). Replies, or parks the request. */
void mp__mgr_handle_request(struct server *s, struct sconn *c, const unsigned char *p, size_t n);
/* Run a request the general decoder read (rc: its result). The caller
 * frees req, whose parts a method may have moved out. */
void mp__mgr_run_decoded(struct server *s, struct sconn *c, int rc, mp_obj *req);
/* CPython's dialect (mgr_server_py.c): does a first request look like one
 * of its (ident, methodname, args, kwds); run one of its requests. */
bool mp__mgr_py_request_looks(const mp_obj *req);
/* The session that holds Python's references and its plain Locks (NULL
 * without memory). */
struct session *mp__mgr_py_lock_owner(struct server *s);
void mp__mgr_py_request(struct server *s, struct sconn *c, mp_obj *req);
/* repr(obj) of a dict, list or Namespace as Python's server answers
 * __repr__ and __str__ (mgr_server_py_repr.c): 0 and *out (free() it);
 * MP_ETYPE for the other kinds; -ENOMEM; MP_EVALUE for an int too long. */
int mp__mgr_py_repr(const struct sobj *o, char **out);
/* The object of this server a proxy reference names (by its Token's id
 * and a typeid of its kind), or NULL. */
struct sobj *mp__mgr_py_ref_target(struct server *s, const mp_obj *ref);

/* ---- proxies inside values (mgr_server_nest.c) ----------------------------------- */

/* Whether v holds a proxy reference (managers.RebuildProxy) anywhere. */
bool mp__mgr_nest_any(const mp_obj *v);
/* Recompute the objects o's value (or queue items) names by proxy
 * references and hold exactly those; o may be freed when it held itself. */
void mp__mgr_nest_refresh(struct server *s, struct sobj *o);
/* Hold t for o until o is freed (a Condition's Lock): 0 or -ENOMEM. */
int mp__mgr_nest_hold(struct sobj *o, struct sobj *t);
/* Let go of what o holds (o is being destroyed). */
void mp__mgr_nest_release(struct server *s, struct sobj *o);
/* Hold each object reply names by a proxy reference, once per reference,
 * until a Python client's incref takes the reference over (py_pending). */
void mp__mgr_nest_reply(struct server *s, const mp_obj *reply);

/* ---- objects and sessions (mgr_server_obj.c) ------------------------------------- */

struct sobj *mp__mgr_obj_find(struct server *s, int64_t id);
/* A new object of a kind, empty (its type's init fills it): NULL when out
 * of memory. */
struct sobj *mp__mgr_obj_new(struct server *s, int kind);
/* Remove and free an object: its waiters fail with MP_ENOOBJ. */
void mp__mgr_obj_destroy(struct server *s, struct sobj *o);
/* Drop one reference: the last frees the object. */
void mp__mgr_obj_decref(struct server *s, struct sobj *o);
/* The session of this id, made when new: NULL when out of memory. */
struct session *mp__mgr_session_get(struct server *s, int64_t id);
/* The session holds o once more (once per proxy): 0 or -ENOMEM. */
int mp__mgr_session_hold(struct session *ss, struct sobj *o);
/* Returns true when the session held o; it holds it once less. */
bool mp__mgr_session_drop(struct server *s, struct session *ss, struct sobj *o);
/* The last connection of a process closed: free what it held. */
void mp__mgr_session_end(struct server *s, struct session *ss);
/* Free every session and object, whatever they hold (the server stops; no
 * waiter is left). */
void mp__mgr_objs_free(struct server *s);

/* ---- waiting requests (mgr_server_wait.c) ----------------------------------------- */

/* Park r's request in q until mp__mgr_waiter_replied, a failure or its
 * timeout. Returns 0 or -ENOMEM. */
int mp__mgr_wait(const struct req *r, struct wq *q, int op, double timeout, uint64_t tid,
                 mp_obj *item);
/* Move a waiter to the end of q (on o, for op), without a deadline: a
 * Condition's waiter that goes on to take its lock back. */
void mp__mgr_waiter_move(struct server *s, struct waiter *w, struct sobj *o, struct wq *q, int op);
/* Take a waiter off every list and free it (its item too, if still
 * there); the caller has replied, or the connection is gone. */
void mp__mgr_waiter_free(struct server *s, struct waiter *w);
/* The waiter's reply is written: free it and deliver the reply. */
void mp__mgr_waiter_replied(struct server *s, struct waiter *w);
/* Reply to a waiter with an error code and free it. */
void mp__mgr_waiter_fail(struct server *s, struct waiter *w, int code);
/* Fail every waiter of a queue with code. */
void mp__mgr_wq_fail_all(struct server *s, struct wq *q, int code);
/* The earliest deadline of a waiter, or MP__NO_DEADLINE. */
int64_t mp__mgr_waiters_next_deadline(const struct server *s);
/* Fail the waiters whose deadline is now or earlier. */
void mp__mgr_waiters_expire(struct server *s, int64_t now);

/* ---- locks (mgr_type_lock.c) ----------------------------------------------------- */

/* Grant a free lock to its waiters in turn. */
void mp__mgr_lock_grant_next(struct server *s, struct sobj *o);
/* Release the locks a session held, for the next waiter to learn it died. */
void mp__mgr_locks_release_session(struct server *s, struct session *ss);
/* Lock's acquire and release on r->o (a Lock, an RLock or a Condition's
 * own lock), for a Condition's methods. */
int mp__mgr_lock_acquire(const struct req *r);
int mp__mgr_lock_release(const struct req *r);
/* Does c's request hold lock o (tid: its thread)? */
bool mp__mgr_lock_is_owned(const struct sobj *o, const struct sconn *c, uint64_t tid);
/* Give a free lock to a Condition's waiter w taking it back, and reply. */
void mp__mgr_lock_give_back(struct server *s, struct sobj *o, struct waiter *w);

/* ---- types of your own (mgr_type_user.c) ------------------------------------------ */

/* The registered type called typeid (len bytes), or NULL. */
const struct mp_manager_type *mp__mgr_user_type(const struct server *s, const char *typeid,
                                                size_t len);
/* Make o (K_USER) an object of type t from the constructor's arguments,
 * the items of tuple args after the first skip: 0, -ENOMEM or the
 * constructor's status. */
int mp__mgr_user_make(struct sobj *o, const struct mp_manager_type *t, const mp_obj *args,
                      size_t skip);
/* Run method meth (mlen bytes) of user object r->o with r->args and reply;
 * Python's dialect when py (an unknown method: AttributeError). */
void mp__mgr_user_call(const struct req *r, const char *meth, size_t mlen);
/* The names of t's methods, a new tuple (Python's exposed), or NULL. */
mp_obj *mp__mgr_user_exposed(const struct mp_manager_type *t);
/* Has user object o's type a method of this name? */
bool mp__mgr_user_has(const struct sobj *o, const char *meth);

/* ---- semaphores, events, conditions, barriers (mgr_type_sync.c) ------------------ */

static inline bool mp__mgr_is_sem(const struct sobj *o)
{
    return o->kind == K_SEMAPHORE || o->kind == K_BSEMAPHORE;
}
/* Grant a semaphore's free units to its waiters in turn. */
void mp__mgr_sem_grant_next(struct server *s, struct sobj *o);
/* Give back the units a session held, for the next acquirer to learn it
 * died. */
void mp__mgr_sem_release_session(struct server *s, struct sobj *o, struct session *ss);
/* A Condition's or a Barrier's waiter whose deadline passed. */
void mp__mgr_cond_expire(struct server *s, struct waiter *w);
void mp__mgr_barrier_expire(struct server *s, struct waiter *w);

#endif /* MPIPC_MGR_SERVER_H */
