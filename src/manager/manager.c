/*
 * manager - the client half of the manager (see manager.h): handles,
 * the per-process connection pool, calls, proxies, and starting and
 * stopping servers. The server itself is mgr_server.c; the messages are
 * specified in docs/manager.md.
 *
 * Connections. A handle keeps a pool of authenticated connections. A call
 * takes an idle one (or opens one), does one round trip, and gives it back,
 * so concurrent threads never share a socket and a call that waits in the
 * server holds only its own. A connection whose call failed in transit
 * (timeout, reset, a reply that does not parse) is closed rather than
 * reused: a late reply would otherwise answer the next call.
 *
 * Mailboxes. A started manager maps shared memory before it forks the
 * server (mgr.h, "Mailboxes"); each new connection of a process that has it
 * claims a slot, and then a call whose request fits goes through the slot
 * and is waited for there (slot_wait), the socket serving to sleep on, for
 * doorbells and large replies, and for end of file.
 *
 * Fork. Every live handle is in a registry. pthread_atfork handlers take
 * the registry lock and each handle's locks around fork(); in the child they
 * close every inherited connection and the starter's "alive" pipe and empty
 * the pool, so a child never writes to its parent's sockets and never keeps
 * them (or the server) alive after the parent is gone. The child's first
 * call opens its own connection under a new session id. Connection setup
 * runs under open_mu, which the prepare handler also takes, so no fork can
 * copy a socket that is being set up and not yet in the registry.
 *
 * Proxies hold a reference to their handle (a counted one, so a proxy that
 * outlives mp_manager_free() gets MP_ECLOSED, not a dangling pointer), the
 * object's id, and the fork generation in which this process registered as
 * a holder; a call from a newer generation (a forked child) first sends
 * 'incref'.
 */
#include "codec/frame.h"
#include "codec/objimpl.h"
#include "codec/pickle.h"
#include "core/internal.h"
#include "core/io.h"
#include "core/shm.h"
#include "manager/mgr.h"

#include <mpipc/conn.h>
#include <mpipc/listener.h>
#include <mpipc/manager.h>
#include <mpipc/process.h>

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RBUF_MIN      ((size_t)4096)
#define BUF_KEEP      ((size_t)1 << 20) /* larger buffers are freed after a call */
#define KEY_BYTES     32
#define START_TIMEOUT 30.0 /* for the server child to report its address */
#define STOP_TIMEOUT  5.0  /* for it to exit after the shutdown request */

/* ---- handles ---------------------------------------------------------------- */

struct mconn {
    int fd;
    unsigned char *rbuf;
    size_t rcap;
    int64_t rcvtimeo;     /* SO_RCVTIMEO now set on fd, ns (0: none) */
    unsigned spin_misses; /* spins in a row that missed the reply (mgr.h) */
    unsigned calls;
    mp__pickler w;
    /* A stale connection: its call timed out and the reply is still owed.
     * sgot bytes of the frame are in rbuf (header not parsed yet), or, once
     * shdr, sleft bytes of it remain to be discarded. */
    size_t sgot;
    uint64_t sleft;
    bool shdr;
    /* A mailbox slot (mgr.h), when the server gave this connection one:
     * seq is the last request published there; slot_owed says the reply
     * to it is still owed (a stale call that went by the slot). */
    struct mp__mgr_slot *slot;
    uint64_t seq;
    bool slot_owed;
    unsigned pause_skip;       /* calls left before looking without yielding again */
    struct mconn *next_idle;   /* in the idle or the stale list */
    struct mconn *next, *prev; /* every connection of the handle */
};

struct mp_manager {
    int refs;                /* atomic: the handle itself + one per proxy */
    pthread_mutex_t mu;      /* the pool, the session */
    pthread_mutex_t open_mu; /* held while a connection is set up */
    char address[512];
    unsigned char *key;
    size_t keylen;
    int64_t timeout_ns; /* atomic; negative: no limit */
    size_t max_reply;

    /* This process's side, guarded by mu; reset in a forked child. */
    struct mconn *idle, *all;
    struct mconn *stale; /* timed out, reply pending: kept, so that a slow
                          * server does not see this process leave */
    int64_t session;     /* 0 until this process's first connection */
    size_t server_max;   /* atomic: the server's request limit, from hello */

    bool closed; /* atomic: shut down or freed; calls give MP_ECLOSED */

    /* A started manager's mailboxes (mgr.h), shared with the server and
     * with every process forked from the starter since; NULL otherwise. */
    struct mp__mgr_arena *arena;

    /* A started manager. */
    bool started, private_addr;
    pid_t starter;
    mp_process *proc;
    pid_t server_pid;
    int alive_wr; /* guarded by the registry lock */
    int hook;

    struct mp_manager *rnext, *rprev; /* the registry */
};

/* The common part of every proxy. */
struct proxy {
    mp_manager *m;
    int64_t id;
    unsigned gen; /* atomic: fork generation in which this process holds it */
};

struct mp_dict {
    struct proxy p;
};
struct mp_list {
    struct proxy p;
};
struct mp_mlock {
    struct proxy p;
};
struct mp_mqueue {
    struct proxy p;
};

static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static mp_manager *registry;
static pthread_once_t reg_once = PTHREAD_ONCE_INIT;

/* The calling thread's identity for lock ownership (unique in a process; a
 * forked child's session id tells it apart from its parent). */
static _Thread_local int64_t my_tid;
static int64_t tid_counter;

static int64_t thread_id(void)
{
    if (!my_tid)
        my_tid = __atomic_add_fetch(&tid_counter, 1, __ATOMIC_RELAXED);
    return my_tid;
}

static void mconn_free(struct mconn *c)
{
    free(c->rbuf);
    free(c->w.p);
    free(c);
}

static void atfork_prepare(void)
{
    pthread_mutex_lock(&reg_mu);
    for (mp_manager *m = registry; m; m = m->rnext) {
        pthread_mutex_lock(&m->open_mu);
        pthread_mutex_lock(&m->mu);
    }
}

static void atfork_parent(void)
{
    for (mp_manager *m = registry; m; m = m->rnext) {
        pthread_mutex_unlock(&m->mu);
        pthread_mutex_unlock(&m->open_mu);
    }
    pthread_mutex_unlock(&reg_mu);
}

/* In the child: the parent's connections and alive pipe are not ours. */
static void atfork_child(void)
{
    for (mp_manager *m = registry; m; m = m->rnext) {
        struct mconn *c = m->all;
        while (c) {
            struct mconn *next = c->next;
            if (c->fd >= 0)
                mp__close(c->fd);
            mconn_free(c);
            c = next;
        }
        m->all = m->idle = m->stale = NULL;
        m->session = 0;
        if (m->alive_wr >= 0) {
            mp__close(m->alive_wr);
            m->alive_wr = -1;
        }
        pthread_mutex_unlock(&m->mu);
        pthread_mutex_unlock(&m->open_mu);
    }
    pthread_mutex_unlock(&reg_mu);
}

static void reg_setup(void)
{
    (void)pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

static int64_t seconds_to_ns(double t)
{
    if (t < 0 || isnan(t))
        return -1;
    if (t > 1e9)
        return -1;
    return (int64_t)(t * 1e9);
}

static void manager_destroy(mp_manager *m)
{
    pthread_mutex_lock(&reg_mu);
    if (m->rprev)
        m->rprev->rnext = m->rnext;
    else
        registry = m->rnext;
    if (m->rnext)
        m->rnext->rprev = m->rprev;
    if (m->alive_wr >= 0)
        mp__close(m->alive_wr);
    pthread_mutex_unlock(&reg_mu);
    struct mconn *c = m->all;
    while (c) {
        struct mconn *next = c->next;
        if (c->fd >= 0)
            mp__close(c->fd);
        mconn_free(c);
        c = next;
    }
    /* Only the starter owns the server's process handle; a child that
     * inherited it leaves the copy alone (its descriptor is the parent's). */
    if (m->proc && m->starter == getpid())
        (void)mp_process_free(m->proc);
    if (m->key) {
        mp__wipe(m->key, m->keylen); /* a secret */
        free(m->key);
    }
    /* Only this process's view goes: the server and other children may
     * still have theirs (mp__shm_map). */
    mp__shm_unmap(m->arena, sizeof *m->arena);
    pthread_mutex_destroy(&m->mu);
    pthread_mutex_destroy(&m->open_mu);
    free(m);
}

static void manager_unref(mp_manager *m)
{
    if (__atomic_sub_fetch(&m->refs, 1, __ATOMIC_ACQ_REL) == 0)
        manager_destroy(m);
}

static int manager_new(mp_manager **out, const char *address, const void *key, size_t keylen,
                       const mp_manager_opts *o)
{
    (void)pthread_once(&reg_once, reg_setup);
    (void)mp__forkgen(); /* install the generation counter before any fork */
    if (o->max_message > MP__MGR_MAX_LIMIT)
        return -EINVAL;
    if (mp__bad_timeout(o->timeout))
        return MP_EVALUE;
    mp_manager *m = calloc(1, sizeof *m);
    if (!m)
        return -ENOMEM;
    m->refs = 1;
    m->alive_wr = -1;
    m->timeout_ns = seconds_to_ns(o->timeout);
    m->max_reply = o->max_message ? o->max_message : MP__MGR_DEFAULT_MAX;
    m->server_max = MP__MGR_DEFAULT_MAX;
    if (pthread_mutex_init(&m->mu, NULL) != 0) {
        free(m);
        return -ENOMEM;
    }
    if (pthread_mutex_init(&m->open_mu, NULL) != 0) {
        pthread_mutex_destroy(&m->mu);
        free(m);
        return -ENOMEM;
    }
    if (address)
        snprintf(m->address, sizeof m->address, "%s", address);
    m->key = malloc(keylen ? keylen : 1);
    if (!m->key) {
        pthread_mutex_destroy(&m->mu);
        pthread_mutex_destroy(&m->open_mu);
        free(m);
        return -ENOMEM;
    }
    if (key)
        memcpy(m->key, key, keylen);
    m->keylen = keylen;
    pthread_mutex_lock(&reg_mu);
    m->rnext = registry;
    if (registry)
        registry->rprev = m;
    registry = m;
    pthread_mutex_unlock(&reg_mu);
    *out = m;
    return 0;
}

static bool is_closed(const mp_manager *m)
{
    return __atomic_load_n(&m->closed, __ATOMIC_ACQUIRE);
}

/* ---- one round trip ------------------------------------------------------------ */

enum { A_OBJ, A_INT, A_STR, A_BYTES, A_FLOAT, A_NONE, A_BOOL };

/* One argument of a call, borrowed: encoded straight into the request. */
struct marg {
    int t;
    const mp_obj *o;
    int64_t i;
    double f;
    const void *s;
    size_t n;
};

#define ARG_OBJ(x)        ((struct marg){.t = A_OBJ, .o = (x)})
#define ARG_INT(x)        ((struct marg){.t = A_INT, .i = (x)})
#define ARG_FLOAT(x)      ((struct marg){.t = A_FLOAT, .f = (x)})
#define ARG_STR(x, len)   ((struct marg){.t = A_STR, .s = (x), .n = (len)})
#define ARG_BYTES(x, len) ((struct marg){.t = A_BYTES, .s = (x), .n = (len)})
#define ARG_NONE          ((struct marg){.t = A_NONE})
#define ARG_BOOL(x)       ((struct marg){.t = A_BOOL, .i = (x)})

/* A timeout as the server reads it: seconds, or None for forever. */
static struct marg arg_timeout(double t)
{
    if (t < 0 || isnan(t))
        return ARG_NONE;
    return ARG_FLOAT(t);
}

static int encode_request(mp__pickler *w, int64_t ident, const char *method, const struct marg *a,
                          size_t n)
{
    w->len = 0;
    w->err = 0;
    if (mp__pickler_reserve(w, 4) < 0)
        return w->err;
    w->len = 4;
    mp__pickler_start(w);
    mp__pickler_int(w, ident);
    mp__pickler_str(w, method, strlen(method));
    if (n > 3)
        mp__pickler_mark(w);
    for (size_t i = 0; i < n; i++) {
        switch (a[i].t) {
        case A_OBJ:
            mp__pickler_obj(w, a[i].o);
            break;
        case A_INT:
            mp__pickler_int(w, a[i].i);
            break;
        case A_STR:
            mp__pickler_str(w, a[i].s, a[i].n);
            break;
        case A_BYTES:
            mp__pickler_bytes(w, a[i].s, a[i].n);
            break;
        case A_FLOAT:
            mp__pickler_float(w, a[i].f);
            break;
        case A_BOOL:
            mp__pickler_bool(w, a[i].i != 0);
            break;
        default:
            mp__pickler_none(w);
            break;
        }
    }
    mp__pickler_tuple(w, n);
    mp__pickler_tuple(w, 3);
    mp__pickler_stop(w);
    return w->err;
}

/* A transport failure: the peer is gone (or never was). */
static int gone(int rc)
{
    if (rc == 0 || rc == -ECONNRESET || rc == -EPIPE || rc == MP_EOF || rc == MP_ETRUNCATED ||
        rc == -ENOTCONN || rc == -ECONNABORTED)
        return MP_ENOSERVER;
    return rc;
}

/* A reply that comes at once is caught without sleeping (see mgr.h,
 * "Spinning"): returns what the first successful receive returned, or
 * -EAGAIN when nothing came within the spin (or this call does not spin). */
static ssize_t spin_for_reply(struct mconn *c, double wait)
{
    c->calls++;
    if (wait != 0 || (c->spin_misses >= MP__MGR_SPIN_MISSES && c->calls % MP__MGR_SPIN_RETRY))
        return -EAGAIN; /* it waits in the server, or spinning has not paid lately */
    int64_t until = mp__now_ns() + MP__MGR_CLIENT_SPIN_NS;
    do {
        ssize_t r = mp__recv_nowait(c->fd, c->rbuf, c->rcap);
        if (r != -EAGAIN) {
            c->spin_misses = 0;
            return r;
        }
    } while (mp__now_ns() < until);
    if (c->spin_misses < MP__MGR_SPIN_MISSES)
        c->spin_misses++;
    return -EAGAIN;
}

/*
 * Wait for the first bytes of a reply: one blocking recv() bounded by
 * SO_RCVTIMEO rather than a poll() and a recv(). The socket's timeout is
 * set only when this call needs a shorter one than is set (or has none set
 * at all): a longer call that sees it run out just waits on the poll way.
 */
static ssize_t wait_for_reply(struct mconn *c, int64_t rel, int64_t deadline)
{
    /* No deadline: any bound will do (it only makes us look again). */
    bool fits = rel == 0 || (c->rcvtimeo != 0 && c->rcvtimeo <= rel && c->rcvtimeo >= rel / 2);
    if (!fits && mp__set_recv_timeout(c->fd, rel) == 0) {
        c->rcvtimeo = rel;
        fits = true;
    }
    ssize_t r = fits ? mp__recv_once(c->fd, c->rbuf, c->rcap) : -EINTR;
    if (r == MP_ETIMEDOUT && !mp__deadline_passed(deadline))
        r = -EINTR;  /* the socket's bound was shorter than ours */
    if (r == -EINTR) /* a signal, a shorter bound, or none set: the poll way */
        r = mp__read_some(c->fd, c->rbuf, c->rcap, deadline, true);
    return r;
}

/*
 * Read into rbuf + off for what is left of a call's wait (rel 0: no limit):
 * a wait that follows some looking at the slot, or a sleep that follows a
 * doorbell meant for an earlier reply, must not start the whole timeout
 * over. Once the deadline has passed, one look without waiting.
 */
static ssize_t recv_until(struct mconn *c, size_t off, int64_t rel, int64_t deadline)
{
    int64_t left = 0;
    if (rel) {
        left = deadline - mp__now_ns();
        if (left <= 0) {
            ssize_t r = mp__recv_nowait(c->fd, c->rbuf + off, c->rcap - off);
            return r == -EAGAIN ? MP_ETIMEDOUT : r;
        }
    }
    if (off == 0)
        return wait_for_reply(c, left, deadline);
    return mp__read_some(c->fd, c->rbuf + off, c->rcap - off, deadline, true);
}

/* What a round trip leaves its connection as. */
enum fate { F_REUSE, F_DEAD, F_STALE };

/* Interpret one reply pickle (see docs/manager.md, "Replies"). */
static int parse_reply(const unsigned char *p, size_t n, mp_obj **result, int *fate)
{
    mp_obj *reply = NULL;
    int rc = mp__pickle_loads(p, n, &reply);
    if (rc < 0)
        return rc == -ENOMEM ? rc : MP_EPROTO;
    const char *kind;
    size_t klen;
    ssize_t rn = mp_obj_len(reply);
    rc = MP_EPROTO; /* a reply we cannot read: this end is out of step */
    if (mp_obj_type(reply) == MP_TYPE_TUPLE && rn >= 2 &&
        mp_obj_get_str(mp_obj_list_get(reply, 0), &kind, &klen) == 0) {
        if (klen == 7 && memcmp(kind, "#RETURN", 7) == 0 && rn == 2) {
            if (result)
                *result = mp__seq_take(reply, 1);
            *fate = F_REUSE;
            rc = 0;
        } else if (klen == 6 && memcmp(kind, "#ERROR", 6) == 0) {
            int64_t code;
            if (mp_obj_get_int(mp_obj_list_get(reply, 1), &code) == 0 && code < 0 &&
                code > INT32_MIN) {
                *fate = F_REUSE;
                rc = (int)code;
            }
        }
    }
    mp_obj_free(reply);
    return rc;
}

/* A reply that is one scalar - what the hot calls get back (set, add,
 * get_int, acquire, release) - read straight from the bytes, without
 * building and freeing a tuple, a str and an int. */
enum { SC_NONE = 1, SC_BOOL, SC_INT };
struct scalar {
    int kind; /* 0: not read this way (the general path ran) */
    int64_t v;
};

/*
 * Recognise exactly what the server's pickler writes for ('#RETURN', x)
 * with x None, a bool or an int (docs/wire.md; no memo, no FRAME):
 * PROTO 4, SHORT_BINUNICODE "#RETURN", one of N / NEWTRUE / NEWFALSE /
 * BININT1 / BININT2 / BININT / LONG1 (up to 8 bytes), TUPLE2, STOP - and
 * nothing else. Anything different (an error reply, another value, other
 * encodings) is left to the general decoder, so this can only be faster,
 * never different.
 */
static bool scalar_reply(const unsigned char *p, size_t n, struct scalar *sc)
{
    static const unsigned char head[] = {
        MP__OP_PROTO, 4, MP__OP_SHORT_BINUNICODE, 7, '#', 'R', 'E', 'T', 'U', 'R', 'N'};
    const size_t h = sizeof head;
    if (n < h + 3 || memcmp(p, head, h) != 0 || p[n - 2] != MP__OP_TUPLE2 ||
        p[n - 1] != MP__OP_STOP)
        return false;
    size_t k = n - h - 2; /* the value's bytes */
    struct mp__pickle_scalar v;
    if (mp__pickle_read_scalar(p + h, k, &v) != k)
        return false;
    int kind = v.kind == MP__PK_NONE   ? SC_NONE
               : v.kind == MP__PK_BOOL ? SC_BOOL
               : v.kind == MP__PK_INT  ? SC_INT
                                       : 0;
    if (!kind)
        return false; /* a float, str or bytes: the general path */
    if (sc) {
        sc->kind = kind;
        sc->v = kind == SC_NONE ? 0 : v.i;
    }
    return true;
}

/* The end of a round trip: a scalar reply the caller only needs as a
 * scalar (or not at all) is read in place; anything else is decoded. */
static int finish_reply(const unsigned char *p, size_t n, mp_obj **result, struct scalar *sc,
                        int *fate)
{
    if ((sc || !result) && scalar_reply(p, n, sc)) {
        *fate = F_REUSE;
        return 0;
    }
    return parse_reply(p, n, result, fate);
}

/* Drop the doorbells (frames of length 0, mgr.h "Mailboxes") at the head of
 * the n bytes in p; returns how many bytes are left. */
static size_t skip_doorbells(unsigned char *p, size_t n)
{
    size_t off = 0;
    while (n - off >= MP__FRAME_SHORT && mp__frame_word(p + off) == 0)
        off += MP__FRAME_SHORT;
    if (off)
        memmove(p, p + off, n - off);
    return n - off;
}

static int grow_rbuf(struct mconn *c, size_t cap)
{
    if (c->rcap >= cap)
        return 0;
    unsigned char *p = realloc(c->rbuf, cap);
    if (!p)
        return -ENOMEM;
    c->rbuf = p;
    c->rcap = cap;
    return 0;
}

/* Publish request seq in the slot, then wake the server if it sleeps. */
static int slot_send(mp_manager *m, struct mconn *c, size_t size)
{
    struct mp__mgr_slot *sl = c->slot;
    memcpy(sl->data, c->w.p + 4, size);
    sl->len = (uint32_t)size;
    c->seq++;
    /* Sequentially consistent store, then load: either the server sees
     * the request when it looks once more before sleeping, or this sees
     * that it sleeps (mgr.h, "Mailboxes"). */
    __atomic_store_n(&sl->state, c->seq << 2 | MP__MGR_SLOT_REQ, __ATOMIC_SEQ_CST);
    uint32_t *ss = &m->arena->ssleep;
    if (__atomic_load_n(ss, __ATOMIC_SEQ_CST) && __atomic_exchange_n(ss, 0, __ATOMIC_SEQ_CST)) {
        static const unsigned char bell[MP__FRAME_SHORT];
        struct iovec iov = {(void *)bell, sizeof bell};
        return mp__write_all(c->fd, &iov, 1, true, false);
    }
    return 0;
}

/*
 * Wait for the reply to the request just published in the slot: look at the
 * slot for a moment (the server is usually awake and quick), then sleep on
 * the socket until a doorbell, the reply frame itself, the end of file or
 * the deadline. Returns 0 when the reply is in the slot, 1 when it comes by
 * the socket (*got bytes of it are already in rbuf), or a status code; on
 * MP_ETIMEDOUT the connection's stale fields say what is still owed.
 *
 * The looking yields the CPU between two looks (mgr.h, "Spinning"): where
 * the server shares this CPU it then runs at once, and where it has a CPU
 * of its own a yield with nobody else to run costs well under a
 * microsecond.
 */
static int slot_wait(struct mconn *c, double wait, int64_t rel, int64_t deadline, size_t *got)
{
    struct mp__mgr_slot *sl = c->slot;
    const uint64_t rep = c->seq << 2 | MP__MGR_SLOT_REP;
    const uint64_t rep_sock = c->seq << 2 | MP__MGR_SLOT_REP_SOCK;
    c->calls++;
    int64_t budget = wait != 0 ? MP__MGR_CLIENT_WAIT_SPIN_NS : MP__MGR_CLIENT_SPIN_NS;
    if (c->spin_misses >= MP__MGR_SPIN_MISSES && c->calls % MP__MGR_SPIN_RETRY)
        budget = 0; /* spinning has not paid lately */
    int64_t t0 = mp__now_ns();
    int64_t until = t0 + budget;
    if (deadline != MP__NO_DEADLINE && deadline < until)
        until = deadline;
    /* First look without yielding (mgr.h, "Spinning"): when the server has
     * a CPU of its own, the reply comes within a microsecond or two. When
     * the whole look passes without it (the server shares this CPU, or is
     * busy with others), looking in place only kept the server off the
     * CPU: yield from the start for the next PAUSE_RETRY calls. */
    if (wait == 0 && budget) {
        if (c->pause_skip) {
            c->pause_skip--;
        } else {
            int64_t pend = t0 + MP__MGR_CLIENT_PAUSE_NS;
            if (pend > until)
                pend = until;
            for (int64_t t = t0; t < pend; t = mp__now_ns()) {
                for (int k = 0; k < 16; k++) {
                    uint64_t st = __atomic_load_n(&sl->state, __ATOMIC_ACQUIRE);
                    if (st == rep || st == rep_sock) {
                        c->spin_misses = 0;
                        *got = 0;
                        return st == rep ? 0 : 1;
                    }
                    mp__mgr_relax();
                }
            }
            c->pause_skip = MP__MGR_PAUSE_RETRY;
        }
    }
    for (;;) {
        uint64_t st = __atomic_load_n(&sl->state, __ATOMIC_ACQUIRE);
        if (st == rep || st == rep_sock) {
            if (wait == 0)
                c->spin_misses = 0;
            *got = 0;
            return st == rep ? 0 : 1;
        }
        if (mp__now_ns() >= until || __atomic_load_n(&sl->parked, __ATOMIC_ACQUIRE) == c->seq)
            break; /* it has waited long enough, or it waits in the server */
        sched_yield();
    }
    /* Only calls the server answers at once count: a lock or a queue that
     * makes its caller wait says nothing about the server. */
    if (budget && wait == 0 && c->spin_misses < MP__MGR_SPIN_MISSES)
        c->spin_misses++;

    if (grow_rbuf(c, RBUF_MIN) < 0)
        return -ENOMEM;
    size_t n = 0;
    for (;;) {
        if (n == 0) {
            __atomic_store_n(&sl->csleep, 1, __ATOMIC_SEQ_CST);
            uint64_t st = __atomic_load_n(&sl->state, __ATOMIC_SEQ_CST);
            if (st == rep || st == rep_sock) {
                __atomic_store_n(&sl->csleep, 0, __ATOMIC_RELAXED);
                *got = 0;
                return st == rep ? 0 : 1;
            }
        }
        ssize_t r = recv_until(c, n, rel, deadline);
        __atomic_store_n(&sl->csleep, 0, __ATOMIC_RELAXED);
        if (r == MP_ETIMEDOUT) {
            /* Still owed: by the slot, or (bytes of a frame came) by the
             * socket, which drain() then reads on. */
            c->slot_owed = n == 0;
            c->shdr = false;
            c->sgot = n;
            c->sleft = 0;
            return MP_ETIMEDOUT;
        }
        if (r == 0)
            return MP_ENOSERVER;
        if (r < 0)
            return gone((int)r);
        n = skip_doorbells(c->rbuf, n + (size_t)r);
        if (n >= MP__FRAME_SHORT) {
            *got = n; /* the start of a frame: the reply, by the socket */
            return 1;
        }
        /* n is 0 (only doorbells: look at the slot again) or 1 to 3 (the
         * rest of a header is on its way). */
    }
}

/*
 * Send one request and read its reply. *fate tells the caller what to do
 * with the connection: reuse it, close it (it failed or is out of step), or
 * park it as stale (the reply did not come in time; it is still owed).
 * Returns the reply's status (0 for '#RETURN', with *result set when result
 * is not NULL).
 */
static int roundtrip(mp_manager *m, struct mconn *c, int64_t ident, const char *method,
                     const struct marg *a, size_t n, double wait, mp_obj **result,
                     struct scalar *sc, int *fate)
{
    *fate = F_REUSE;
    int rc = encode_request(&c->w, ident, method, a, n);
    if (rc < 0)
        return rc;
    size_t size = c->w.len - 4;
    if (size > __atomic_load_n(&m->server_max, __ATOMIC_RELAXED))
        return MP_ETOOLONG; /* checked here, so the connection stays usable */
    mp__frame_put_short(c->w.p, (uint32_t)size);

    /* The reply may take the operation's own wait plus the call timeout. */
    int64_t tns = __atomic_load_n(&m->timeout_ns, __ATOMIC_RELAXED);
    int64_t rel = 0; /* 0: no limit */
    if (tns >= 0 && !(wait < 0 || isnan(wait))) {
        int64_t w = seconds_to_ns(wait);
        rel = w < 0 ? 0 : w + tns;
        if (rel == 0)
            rel = 1;
    }
    int64_t deadline = rel ? mp__now_ns() + rel : MP__NO_DEADLINE;

    *fate = F_DEAD;
    size_t got = 0;
    bool by_slot = c->slot && size <= MP__MGR_SLOT_DATA;
    if (by_slot) {
        rc = slot_send(m, c, size);
        c->w.len = 0;
        if (rc < 0)
            return gone(rc);
        rc = slot_wait(c, wait, rel, deadline, &got);
        if (rc == MP_ETIMEDOUT)
            *fate = F_STALE;
        if (rc < 0)
            return rc;
        if (rc == 0) {
            uint32_t len = __atomic_load_n(&c->slot->len, __ATOMIC_RELAXED);
            if (len > MP__MGR_SLOT_DATA)
                return MP_EPROTO;
            /* A private copy: other processes can write the block. */
            if (grow_rbuf(c, RBUF_MIN) < 0)
                return -ENOMEM;
            memcpy(c->rbuf, c->slot->data, len);
            return finish_reply(c->rbuf, len, result, sc, fate);
        }
    } else {
        struct iovec iov = {c->w.p, c->w.len};
        rc = mp__write_all(c->fd, &iov, 1, true, false);
        if (c->w.cap > BUF_KEEP) {
            free(c->w.p);
            c->w.p = NULL;
            c->w.cap = 0;
        }
        c->w.len = 0;
        if (rc < 0)
            return gone(rc);
    }

    /* Read one frame: grow only as bytes arrive. */
    size_t need = MP__FRAME_SHORT, hdr = 0;
    uint64_t plen = 0;
    bool have_header = false;
    for (;;) {
        if (!have_header && got >= need) {
            int fr = mp__frame_decode(c->rbuf, got, &plen, &hdr);
            if (fr < 0)
                return MP_EPROTO;
            if (fr == 1 && plen == 0 && c->slot) {
                got = skip_doorbells(c->rbuf, got); /* left from an earlier call */
                need = MP__FRAME_SHORT;
                continue;
            }
            if (fr == 1) {
                if (plen > m->max_reply)
                    return MP_ETOOLONG;
                have_header = true;
                need = hdr + (size_t)plen;
            } else {
                need = hdr;
            }
        }
        if (have_header && got >= need)
            break;
        if (got == c->rcap) {
            size_t cap = c->rcap ? c->rcap * 2 : RBUF_MIN;
            if (have_header && cap > need)
                cap = need;
            if (grow_rbuf(c, cap) < 0)
                return -ENOMEM;
        }
        ssize_t r;
        if (got == 0 && !by_slot) {
            r = spin_for_reply(c, wait);
            if (r == -EAGAIN)
                r = wait_for_reply(c, rel, deadline);
        } else if (got == 0) {
            r = recv_until(c, 0, rel, deadline); /* REP_SOCK, after a look at the slot */
        } else {
            r = mp__read_some(c->fd, c->rbuf + got, c->rcap - got, deadline, true);
        }
        if (r == 0)
            return MP_ENOSERVER;
        if (r == MP_ETIMEDOUT) {
            /* Keep the connection: the server may only be slow, and if it
             * is this process's last connection, closing it would tell
             * the server that the process is gone. */
            c->shdr = have_header;
            c->sgot = have_header ? 0 : got;
            c->sleft = have_header ? need - got : 0;
            *fate = F_STALE;
            return MP_ETIMEDOUT;
        }
        if (r < 0)
            return gone((int)r);
        got += (size_t)r;
    }
    if (got != need)
        return MP_EPROTO; /* bytes beyond the one reply: out of step */

    rc = finish_reply(c->rbuf + hdr, (size_t)plen, result, sc, fate);
    if (c->rcap > BUF_KEEP) {
        free(c->rbuf);
        c->rbuf = NULL;
        c->rcap = 0;
    }
    return rc;
}

/* ---- the pool ---------------------------------------------------------------- */

static int new_session_id(int64_t *out)
{
    uint64_t r = 0;
    int rc;
    do {
        rc = mp__random_bytes(&r, sizeof r);
        if (rc < 0)
            return rc;
        r &= (uint64_t)INT64_MAX;
    } while (r == 0);
    *out = (int64_t)r;
    return 0;
}

static void unlink_conn_locked(mp_manager *m, struct mconn *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        m->all = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->next = c->prev = NULL;
}

static void conn_drop(mp_manager *m, struct mconn *c)
{
    pthread_mutex_lock(&m->mu);
    unlink_conn_locked(m, c);
    pthread_mutex_unlock(&m->mu);
    mp__close(c->fd);
    mconn_free(c);
}

static void conn_put(mp_manager *m, struct mconn *c)
{
    if (is_closed(m)) {
        conn_drop(m, c);
        return;
    }
    pthread_mutex_lock(&m->mu);
    c->next_idle = m->idle;
    m->idle = c;
    pthread_mutex_unlock(&m->mu);
}

/*
 * Connect, authenticate, say hello. Runs under open_mu (see the file
 * comment). Returns the raw codes of mp_client_connect for the caller to
 * interpret.
 */
static int conn_open(mp_manager *m, struct mconn **out)
{
    pthread_mutex_lock(&m->open_mu);
    pthread_mutex_lock(&m->mu);
    int rc = 0;
    if (!m->session)
        rc = new_session_id(&m->session);
    int64_t session = m->session;
    pthread_mutex_unlock(&m->mu);
    if (rc < 0) {
        pthread_mutex_unlock(&m->open_mu);
        return rc;
    }
    int64_t tns = __atomic_load_n(&m->timeout_ns, __ATOMIC_RELAXED);
    double timeout = tns < 0 ? MP_FOREVER : (double)tns / 1e9;
    mp_conn *cc;
    rc = mp_client_connect(&cc, m->address, m->key, m->keylen, timeout);
    int fd = -1;
    if (rc == 0) {
        fd = mp_conn_buffered(cc) == 0 ? mp__dup_cloexec(mp_conn_fileno(cc)) : MP_EPROTO;
        mp_conn_free(cc);
        rc = fd < 0 ? fd : 0;
    }
    struct mconn *c = NULL;
    if (rc == 0) {
        c = calloc(1, sizeof *c);
        if (!c) {
            mp__close(fd);
            rc = -ENOMEM;
        }
    }
    if (rc == 0) {
        mp__tcp_keepalive(fd);
        c->fd = fd;
        pthread_mutex_lock(&m->mu);
        c->next = m->all;
        if (m->all)
            m->all->prev = c;
        m->all = c;
        pthread_mutex_unlock(&m->mu);
    }
    pthread_mutex_unlock(&m->open_mu);
    if (rc < 0)
        return rc;

    struct marg a[4] = {ARG_INT(session), ARG_INT(getpid()), ARG_INT((int64_t)m->max_reply),
                        ARG_INT(MP__MGR_PROTOCOL)};
    mp_obj *r = NULL;
    int fate;
    rc = roundtrip(m, c, 0, "hello", a, 4, 0, &r, NULL, &fate);
    int64_t max_req = 0;
    if (rc == 0 && (mp_obj_len(r) != 3 || mp_obj_get_int(mp_obj_list_get(r, 1), &max_req) < 0))
        rc = MP_EPROTO;
    mp_obj_free(r);
    if (rc < 0) {
        conn_drop(m, c);
        return rc;
    }
    if (max_req > 0)
        __atomic_store_n(&m->server_max, (size_t)max_req, __ATOMIC_RELAXED);

    /* A process that shares the starter's memory claims a mailbox slot
     * (mgr.h). An error reply (a server without mailboxes) or -1 (none
     * free) leaves the connection on the socket. */
    if (m->arena) {
        struct marg t[1] = {ARG_INT((int64_t)m->arena->tag)};
        rc = roundtrip(m, c, 0, "shm", t, 1, 0, &r, NULL, &fate);
        int64_t ix = -1;
        if (rc == 0 && mp_obj_get_int(r, &ix) == 0 && ix >= 0 && ix < MP__MGR_SLOTS) {
            c->slot = &m->arena->slot[ix];
            c->seq = 0;
        }
        mp_obj_free(r);
        r = NULL;
        if (rc < 0 && fate != F_REUSE) {
            conn_drop(m, c);
            return rc;
        }
    }
    *out = c;
    return 0;
}

/* Park a connection whose reply is late. */
static void conn_park(mp_manager *m, struct mconn *c)
{
    if (is_closed(m)) {
        conn_drop(m, c);
        return;
    }
    pthread_mutex_lock(&m->mu);
    c->next_idle = m->stale;
    m->stale = c;
    pthread_mutex_unlock(&m->mu);
}

/*
 * Discard what is left of a late reply without waiting: 1 when it is all
 * gone (the connection is in step again), 0 when more is still owed, -1
 * when the connection is finished (end of file, error, bytes beyond the
 * reply).
 */
static int drain(struct mconn *c)
{
    if (c->slot_owed) {
        uint64_t st = __atomic_load_n(&c->slot->state, __ATOMIC_ACQUIRE);
        if (st == (c->seq << 2 | MP__MGR_SLOT_REP)) {
            c->slot_owed = false;
            return 1;
        }
        if (st != (c->seq << 2 | MP__MGR_SLOT_REP_SOCK))
            return 0;
        c->slot_owed = false; /* the reply frame comes by the socket */
        c->sgot = 0;
        c->shdr = false;
        c->sleft = 0;
    }
    for (;;) {
        if (!c->shdr && c->sgot >= MP__FRAME_SHORT) {
            uint64_t plen;
            size_t hdr;
            int fr = mp__frame_decode(c->rbuf, c->sgot, &plen, &hdr);
            if (fr < 0)
                return -1;
            if (fr == 1 && plen == 0 && c->slot) {
                c->sgot = skip_doorbells(c->rbuf, c->sgot);
                continue;
            }
            if (fr == 1) {
                if (plen > UINT64_MAX - hdr || c->sgot > hdr + plen)
                    return -1;
                c->shdr = true;
                c->sleft = hdr + plen - c->sgot;
            }
        }
        if (c->shdr && c->sleft == 0)
            return 1;
        size_t room = c->shdr ? c->rcap : c->rcap - c->sgot;
        if (c->shdr && room > c->sleft)
            room = (size_t)c->sleft;
        if (room == 0)
            return -1; /* a header that does not fit 4 KiB: not ours */
        ssize_t r = mp__recv_nowait(c->fd, c->rbuf + (c->shdr ? 0 : c->sgot), room);
        if (r == -EAGAIN)
            return 0;
        if (r <= 0)
            return -1;
        if (c->shdr)
            c->sleft -= (uint64_t)r;
        else
            c->sgot += (size_t)r;
    }
}

static int conn_get(mp_manager *m, struct mconn **out)
{
    pthread_mutex_lock(&m->mu);
    struct mconn *c = m->idle;
    if (c)
        m->idle = c->next_idle;
    /* No idle one: perhaps a stale one has caught up meanwhile. */
    struct mconn *stale = c ? NULL : m->stale;
    if (!c)
        m->stale = NULL;
    pthread_mutex_unlock(&m->mu);
    while (stale) {
        struct mconn *x = stale;
        stale = x->next_idle;
        int d = c ? 0 : drain(x);
        if (d == 1)
            c = x;
        else if (d == 0)
            conn_park(m, x);
        else
            conn_drop(m, x);
    }
    if (c) {
        *out = c;
        return 0;
    }
    return conn_open(m, out);
}

/* A proxy call's view of a connection failure. */
static int open_failure(int rc)
{
    switch (rc) {
    case MP_EAUTH:
    case MP_ETIMEDOUT:
    case -ENOMEM:
    case -EINVAL:
    case -EMFILE:
    case -ENFILE:
    case MP_EPROTO:
        return rc;
    default:
        return MP_ENOSERVER; /* refused, no such socket, hung up */
    }
}

static int call_impl(mp_manager *m, int64_t ident, const char *method, const struct marg *a,
                     size_t n, double wait, mp_obj **result, struct scalar *sc, bool even_closed)
{
    if (result)
        *result = NULL;
    if (sc)
        sc->kind = 0;
    if (!even_closed && is_closed(m))
        return MP_ECLOSED;
    struct mconn *c;
    int rc = conn_get(m, &c);
    if (rc < 0)
        return open_failure(rc);
    int fate;
    rc = roundtrip(m, c, ident, method, a, n, wait, result, sc, &fate);
    if (fate == F_DEAD)
        conn_drop(m, c);
    else if (fate == F_STALE)
        conn_park(m, c);
    else
        conn_put(m, c);
    return rc;
}

static int mcall(mp_manager *m, int64_t ident, const char *method, const struct marg *a, size_t n,
                 double wait, mp_obj **result)
{
    return call_impl(m, ident, method, a, n, wait, result, NULL, false);
}

/* Close this process's idle and stale connections (those in use close
 * when their call ends, because the handle is closed). */
static void close_idle(mp_manager *m)
{
    pthread_mutex_lock(&m->mu);
    struct mconn *lists[2] = {m->idle, m->stale};
    m->idle = m->stale = NULL;
    for (int i = 0; i < 2; i++)
        for (struct mconn *x = lists[i]; x; x = x->next_idle)
            unlink_conn_locked(m, x);
    pthread_mutex_unlock(&m->mu);
    for (int i = 0; i < 2; i++) {
        struct mconn *c = lists[i];
        while (c) {
            struct mconn *next = c->next_idle;
            mp__close(c->fd);
            mconn_free(c);
            c = next;
        }
    }
}

/* ---- starting and stopping --------------------------------------------------- */

struct start_args {
    const char *address;
    const unsigned char *key;
    size_t keylen;
    size_t max_message;
    int alive_rd;
    mp_conn *report;
    struct mp__mgr_arena *arena;
};

/* The server child: report the address (or why not), then serve. */
static int server_main(void *arg)
{
    struct start_args *a = arg;
    int keep[3] = {a->alive_rd, mp_conn_fileno(a->report), mp__process_sentinel_fd()};
    mp__close_fds_except(keep, 3);

    /* Python's manager ignores SIGINT (bpo-36368): a Ctrl-C meant for the
     * program must not kill the server under the parent's cleanup code.
     * Blocking it here changes no disposition; threads inherit the mask. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGPIPE);
    (void)pthread_sigmask(SIG_BLOCK, &set, NULL);

    mp_listener_opts lo = MP_LISTENER_OPTS_INIT;
    lo.backlog = MP__MGR_BACKLOG;
    mp_listener *l;
    int rc = mp_listener_new(&l, a->address, NULL, 0, &lo);
    char msg[600];
    if (rc < 0)
        snprintf(msg, sizeof msg, "err:%d", rc);
    else
        snprintf(msg, sizeof msg, "ok:%s", mp_listener_address(l));
    (void)mp_conn_send_bytes(a->report, msg, strlen(msg));
    mp_conn_free(a->report);
    if (rc < 0)
        return 1;
    struct mp__mgr_cfg cfg = {a->key, a->keylen, a->max_message, a->alive_rd, a->arena};
    rc = mp__mgr_serve(l, &cfg);
    mp_listener_free(l);
    mp__close(a->alive_rd);
    return rc == 0 ? 0 : 1;
}

/* Remove a private socket file and its directory that a killed server left. */
static void remove_private_socket(const char *address)
{
    if (strncmp(address, "unix:", 5) != 0)
        return;
    const char *path = address + 5;
    (void)unlink(path);
    char dir[sizeof((mp_manager *)0)->address];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash && strstr(dir, "/mpipc-")) {
        *slash = '\0';
        (void)rmdir(dir);
    }
}

static void close_alive(mp_manager *m)
{
    pthread_mutex_lock(&reg_mu);
    if (m->alive_wr >= 0) {
        mp__close(m->alive_wr);
        m->alive_wr = -1;
    }
    pthread_mutex_unlock(&reg_mu);
}

/* Stop a server this process started: ask, wait, insist. */
static void stop_started(mp_manager *m)
{
    if (__atomic_exchange_n(&m->closed, true, __ATOMIC_ACQ_REL))
        return;
    if (m->hook > 0) {
        mp__exit_hook_remove(m->hook);
        m->hook = 0;
    }
    int64_t saved = __atomic_load_n(&m->timeout_ns, __ATOMIC_RELAXED);
    int64_t quick = (int64_t)(STOP_TIMEOUT * 1e9);
    if (saved < 0 || saved > quick)
        __atomic_store_n(&m->timeout_ns, quick, __ATOMIC_RELAXED);
    (void)call_impl(m, 0, "shutdown", NULL, 0, 0, NULL, NULL, true);
    __atomic_store_n(&m->timeout_ns, saved, __ATOMIC_RELAXED);
    close_idle(m);
    close_alive(m); /* a server that missed the request sees end of file */
    if (m->proc) {
        if (mp_process_join(m->proc, STOP_TIMEOUT) == MP_ETIMEDOUT) {
            (void)mp_process_terminate(m->proc);
            if (mp_process_join(m->proc, STOP_TIMEOUT) == MP_ETIMEDOUT) {
                (void)mp_process_kill(m->proc);
                (void)mp_process_join(m->proc, MP_FOREVER);
            }
        }
        /* Joined: release its sentinel now, not when the last proxy goes. */
        if (mp_process_free(m->proc) == 0)
            m->proc = NULL;
    }
    if (m->private_addr)
        remove_private_socket(m->address);
}

static void exit_hook(void *arg)
{
    mp_manager *m = arg;
    m->hook = 0; /* the exit procedure took it off its list */
    stop_started(m);
}

static mp_manager_opts opts_or_default(const mp_manager_opts *opts)
{
    mp_manager_opts o = MP_MANAGER_OPTS_INIT;
    if (opts)
        o = *opts;
    return o;
}

MP_API int mp_manager_start(mp_manager **out, const mp_manager_opts *opts)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    mp_manager_opts o = opts_or_default(opts);
    if ((o.authkey && !o.authkey_len) || (!o.authkey && o.authkey_len))
        return -EINVAL;
    unsigned char rnd[KEY_BYTES];
    const void *key = o.authkey;
    size_t keylen = o.authkey_len;
    if (!key) {
        int rc = mp__random_bytes(rnd, sizeof rnd);
        if (rc < 0)
            return rc;
        key = rnd;
        keylen = sizeof rnd;
    }
    mp_manager *m;
    int rc = manager_new(&m, NULL, key, keylen, &o);
    memset(rnd, 0, sizeof rnd);
    if (rc < 0)
        return rc;

    /* The mailboxes, mapped before the server is forked (mgr.h). Without
     * them every call simply goes by the socket. */
    void *arena = NULL;
    if (mp__shm_map(&arena, sizeof *m->arena) == 0) {
        m->arena = arena;
        uint64_t tag = 0;
        if (mp__random_bytes(&tag, sizeof tag) < 0)
            tag = 0;
        tag &= (uint64_t)INT64_MAX;
        m->arena->tag = tag ? tag : 1;
    }

    mp_conn *rd = NULL, *wr = NULL;
    int alive[2] = {-1, -1};
    rc = mp_pipe(&rd, &wr, false);
    if (rc == 0) {
        /* Registered under the registry lock, so every fork from now on -
         * the server's own included - closes its copy of the write end. */
        pthread_mutex_lock(&reg_mu);
        rc = mp__pipe(alive);
        if (rc == 0)
            m->alive_wr = alive[1];
        pthread_mutex_unlock(&reg_mu);
    }
    struct start_args a = {o.address, m->key, m->keylen, o.max_message, alive[0], wr, m->arena};
    if (rc == 0)
        rc = mp_process_new(&m->proc, server_main, &a);
    if (rc == 0)
        (void)mp_process_set_name(m->proc, "SyncManager");
    if (rc == 0)
        rc = mp_process_start(m->proc);
    if (alive[0] >= 0)
        mp__close(alive[0]);
    mp_conn_free(wr);
    void *msg = NULL;
    size_t len = 0;
    if (rc == 0) {
        m->starter = getpid();
        m->started = true;
        m->server_pid = mp_process_pid(m->proc);
        rc = mp_conn_recv_bytes(rd, &msg, &len, sizeof m->address + 8, START_TIMEOUT);
        if (rc == MP_EOF || rc == MP_ETRUNCATED)
            rc = MP_ENOSERVER; /* the child died before it reported */
    }
    mp_conn_free(rd);
    if (rc == 0) {
        char text[sizeof m->address + 16];
        size_t n = len < sizeof text - 1 ? len : sizeof text - 1;
        memcpy(text, msg, n);
        text[n] = '\0';
        if (strncmp(text, "ok:", 3) == 0 && n - 3 < sizeof m->address) {
            memcpy(m->address, text + 3, n - 3 + 1);
            m->private_addr = o.address == NULL;
        } else if (strncmp(text, "err:", 4) == 0) {
            rc = (int)strtol(text + 4, NULL, 10);
            if (rc >= 0)
                rc = MP_EPROTO;
        } else {
            rc = MP_EPROTO;
        }
    }
    free(msg);
    if (rc == 0) {
        int hook = mp__exit_hook_add(exit_hook, m, 0);
        if (hook < 0)
            rc = hook;
        else
            m->hook = hook;
    }
    if (rc < 0) {
        if (m->started) {
            __atomic_store_n(&m->closed, true, __ATOMIC_RELEASE);
            close_alive(m);
            if (mp_process_join(m->proc, STOP_TIMEOUT) == MP_ETIMEDOUT) {
                (void)mp_process_kill(m->proc);
                (void)mp_process_join(m->proc, MP_FOREVER);
            }
        }
        manager_unref(m);
        return rc;
    }
    *out = m;
    return 0;
}

MP_API int mp_manager_connect(mp_manager **out, const char *address, const void *authkey,
                              size_t authkey_len, const mp_manager_opts *opts)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!address || !authkey || !authkey_len)
        return -EINVAL;
    mp_manager_opts o = opts_or_default(opts);
    if (strlen(address) >= sizeof((mp_manager *)0)->address)
        return -EINVAL;
    mp_manager *m;
    int rc = manager_new(&m, address, authkey, authkey_len, &o);
    if (rc < 0)
        return rc;
    struct mconn *c;
    rc = conn_open(m, &c);
    if (rc < 0) {
        manager_unref(m);
        return rc;
    }
    conn_put(m, c);
    *out = m;
    return 0;
}

MP_API int mp_manager_serve(const char *address, const void *authkey, size_t authkey_len,
                            const mp_manager_opts *opts)
{
    if (!address || !authkey || !authkey_len)
        return -EINVAL;
    mp_manager_opts o = opts_or_default(opts);
    if (o.max_message > MP__MGR_MAX_LIMIT)
        return -EINVAL;
    mp_listener_opts lo = MP_LISTENER_OPTS_INIT;
    lo.backlog = MP__MGR_BACKLOG;
    mp_listener *l;
    int rc = mp_listener_new(&l, address, NULL, 0, &lo);
    if (rc < 0)
        return rc;
    if (o.ready)
        o.ready(mp_listener_address(l), o.ready_arg);
    struct mp__mgr_cfg cfg = {authkey, authkey_len, o.max_message, -1, NULL};
    rc = mp__mgr_serve(l, &cfg);
    mp_listener_free(l);
    return rc;
}

MP_API int mp_manager_shutdown(mp_manager *m)
{
    if (!m)
        return -EINVAL;
    if (m->started) {
        if (m->starter != getpid())
            return MP_ESTATE;
        stop_started(m);
        return 0;
    }
    if (is_closed(m))
        return 0;
    int rc = mcall(m, 0, "shutdown", NULL, 0, 0, NULL);
    __atomic_store_n(&m->closed, true, __ATOMIC_RELEASE);
    close_idle(m);
    return rc;
}

MP_API void mp_manager_free(mp_manager *m)
{
    if (!m)
        return;
    if (m->started && m->starter == getpid())
        stop_started(m);
    __atomic_store_n(&m->closed, true, __ATOMIC_RELEASE);
    close_idle(m);
    manager_unref(m);
}

MP_API const char *mp_manager_address(const mp_manager *m)
{
    return m ? m->address : NULL;
}

MP_API const void *mp_manager_authkey(const mp_manager *m, size_t *len)
{
    if (len)
        *len = m ? m->keylen : 0;
    return m ? m->key : NULL;
}

MP_API pid_t mp_manager_pid(const mp_manager *m)
{
    return m && m->started ? m->server_pid : 0;
}

MP_API int mp_manager_set_timeout(mp_manager *m, double timeout)
{
    if (!m)
        return -EINVAL;
    if (mp__bad_timeout(timeout))
        return MP_EVALUE;
    __atomic_store_n(&m->timeout_ns, seconds_to_ns(timeout), __ATOMIC_RELAXED);
    return 0;
}

MP_API int mp_manager_info(mp_manager *m, mp_obj **info)
{
    if (!m || !info)
        return -EINVAL;
    return mcall(m, 0, "info", NULL, 0, 0, info);
}

static int check_name(const char *name)
{
    return name && mp__utf8_valid((const unsigned char *)name, strlen(name)) ? 0 : -EINVAL;
}

MP_API int mp_manager_unlink(mp_manager *m, const char *name)
{
    if (!m || check_name(name) < 0)
        return -EINVAL;
    struct marg a[1] = {ARG_STR(name, strlen(name))};
    return mcall(m, 0, "unlink", a, 1, 0, NULL);
}

/* ---- making proxies ------------------------------------------------------------ */

/* create(kind, name, initial) or attach(kind, name); fills p. Returns 1
 * when the object was made, 0 when it existed. */
static int make_proxy(mp_manager *m, const char *kind, const char *name, bool attach,
                      const struct marg *initial, struct proxy *p)
{
    if (name && check_name(name) < 0)
        return -EINVAL;
    struct marg a[3] = {ARG_STR(kind, strlen(kind)), name ? ARG_STR(name, strlen(name)) : ARG_NONE,
                        initial ? *initial : ARG_NONE};
    mp_obj *r = NULL;
    int rc = attach ? mcall(m, 0, "attach", a, 2, 0, &r) : mcall(m, 0, "create", a, 3, 0, &r);
    if (rc < 0)
        return rc;
    int64_t id;
    bool created;
    if (mp_obj_len(r) != 3 || mp_obj_get_int(mp_obj_list_get(r, 0), &id) < 0 ||
        mp_obj_get_bool(mp_obj_list_get(r, 1), &created) < 0) {
        mp_obj_free(r);
        return MP_EPROTO;
    }
    mp_obj_free(r);
    __atomic_add_fetch(&m->refs, 1, __ATOMIC_RELAXED);
    p->m = m;
    p->id = id;
    p->gen = mp__forkgen();
    return created ? 1 : 0;
}

/* Allocate a proxy of type T and make it; *out stays NULL on failure. */
#define MAKE(T, out, m, kind, name, attach, initial)                                               \
    do {                                                                                           \
        if (!(out))                                                                                \
            return -EINVAL;                                                                        \
        *(out) = NULL;                                                                             \
        if (!(m))                                                                                  \
            return -EINVAL;                                                                        \
        T *x_ = calloc(1, sizeof *x_);                                                             \
        if (!x_)                                                                                   \
            return -ENOMEM;                                                                        \
        int rc_ = make_proxy((m), (kind), (name), (attach), (initial), &x_->p);                    \
        if (rc_ < 0) {                                                                             \
            free(x_);                                                                              \
            return rc_;                                                                            \
        }                                                                                          \
        *(out) = x_;                                                                               \
        return (name) && !(attach) ? rc_ : 0;                                                      \
    } while (0)

static int check_initial(const mp_obj *initial, int t1, int t2)
{
    if (!initial)
        return 0;
    int t = mp_obj_type(initial);
    return t == t1 || t == t2 ? 0 : MP_ETYPE;
}

MP_API int mp_manager_dict(mp_manager *m, const mp_obj *initial, mp_dict **out)
{
    return mp_manager_dict_named(m, NULL, initial, out);
}

MP_API int mp_manager_dict_named(mp_manager *m, const char *name, const mp_obj *initial,
                                 mp_dict **out)
{
    int rc = check_initial(initial, MP_TYPE_DICT, MP_TYPE_DICT);
    if (rc < 0) {
        if (out)
            *out = NULL;
        return rc;
    }
    struct marg init = initial ? ARG_OBJ(initial) : ARG_NONE;
    MAKE(mp_dict, out, m, "dict", name, false, &init);
}

MP_API int mp_manager_attach_dict(mp_manager *m, const char *name, mp_dict **out)
{
    if (!name) {
        if (out)
            *out = NULL;
        return -EINVAL;
    }
    MAKE(mp_dict, out, m, "dict", name, true, NULL);
}

MP_API int mp_manager_list(mp_manager *m, const mp_obj *initial, mp_list **out)
{
    return mp_manager_list_named(m, NULL, initial, out);
}

MP_API int mp_manager_list_named(mp_manager *m, const char *name, const mp_obj *initial,
                                 mp_list **out)
{
    int rc = check_initial(initial, MP_TYPE_LIST, MP_TYPE_TUPLE);
    if (rc < 0) {
        if (out)
            *out = NULL;
        return rc;
    }
    struct marg init = initial ? ARG_OBJ(initial) : ARG_NONE;
    MAKE(mp_list, out, m, "list", name, false, &init);
}

MP_API int mp_manager_attach_list(mp_manager *m, const char *name, mp_list **out)
{
    if (!name) {
        if (out)
            *out = NULL;
        return -EINVAL;
    }
    MAKE(mp_list, out, m, "list", name, true, NULL);
}

MP_API int mp_manager_lock(mp_manager *m, mp_mlock **out)
{
    return mp_manager_lock_named(m, NULL, false, out);
}

MP_API int mp_manager_rlock(mp_manager *m, mp_mlock **out)
{
    return mp_manager_lock_named(m, NULL, true, out);
}

MP_API int mp_manager_lock_named(mp_manager *m, const char *name, bool recursive, mp_mlock **out)
{
    MAKE(mp_mlock, out, m, recursive ? "rlock" : "lock", name, false, NULL);
}

MP_API int mp_manager_attach_lock(mp_manager *m, const char *name, mp_mlock **out)
{
    if (!name) {
        if (out)
            *out = NULL;
        return -EINVAL;
    }
    MAKE(mp_mlock, out, m, "lock", name, true, NULL);
}

MP_API int mp_manager_queue(mp_manager *m, int64_t maxsize, mp_mqueue **out)
{
    return mp_manager_queue_named(m, NULL, maxsize, out);
}

MP_API int mp_manager_queue_named(mp_manager *m, const char *name, int64_t maxsize, mp_mqueue **out)
{
    struct marg init = ARG_INT(maxsize > 0 ? maxsize : 0);
    MAKE(mp_mqueue, out, m, "queue", name, false, &init);
}

MP_API int mp_manager_attach_queue(mp_manager *m, const char *name, mp_mqueue **out)
{
    if (!name) {
        if (out)
            *out = NULL;
        return -EINVAL;
    }
    MAKE(mp_mqueue, out, m, "queue", name, true, NULL);
}

/* ---- proxy calls ------------------------------------------------------------------ */

/* One call on the proxy's object; a process that inherited the proxy
 * first registers as a holder. With sc, a scalar reply comes back there
 * (sc->kind set) instead of in *result. */
static int pcall_sc(struct proxy *p, const char *method, const struct marg *a, size_t n,
                    double wait, mp_obj **result, struct scalar *sc)
{
    if (result)
        *result = NULL;
    if (sc)
        sc->kind = 0;
    unsigned g = mp__forkgen();
    if (__atomic_load_n(&p->gen, __ATOMIC_ACQUIRE) != g) {
        struct marg id[1] = {ARG_INT(p->id)};
        int rc = mcall(p->m, 0, "incref", id, 1, 0, NULL);
        if (rc < 0)
            return rc;
        __atomic_store_n(&p->gen, g, __ATOMIC_RELEASE);
    }
    return call_impl(p->m, p->id, method, a, n, wait, result, sc, false);
}

static int pcall(struct proxy *p, const char *method, const struct marg *a, size_t n, double wait,
                 mp_obj **result)
{
    return pcall_sc(p, method, a, n, wait, result, NULL);
}

/* mp_obj_get_int() of a reply that came as a scalar or as a value. */
static int reply_int(const struct scalar *sc, const mp_obj *r, int64_t *v)
{
    if (!sc->kind)
        return mp_obj_get_int(r, v);
    if (sc->kind == SC_NONE)
        return MP_ETYPE;
    *v = sc->v;
    return 0;
}

static void proxy_release(struct proxy *p)
{
    if (__atomic_load_n(&p->gen, __ATOMIC_ACQUIRE) == mp__forkgen() && !is_closed(p->m)) {
        struct marg id[1] = {ARG_INT(p->id)};
        (void)mcall(p->m, 0, "release", id, 1, 0, NULL);
    }
    manager_unref(p->m);
}

/* A C string key or value: UTF-8 checked here, so a bad one is -EINVAL. */
static int str_arg(const char *s, struct marg *out)
{
    if (!s)
        return -EINVAL;
    size_t n = strlen(s);
    if (!mp__utf8_valid((const unsigned char *)s, n))
        return -EINVAL;
    *out = ARG_STR(s, n);
    return 0;
}

/* Call and interpret a bool / int result. */
static int call_bool(struct proxy *p, const char *method, const struct marg *a, size_t n)
{
    mp_obj *r;
    int rc = pcall(p, method, a, n, 0, &r);
    if (rc < 0)
        return rc;
    bool b;
    rc = mp_obj_get_bool(r, &b) == 0 ? (b ? 1 : 0) : MP_EPROTO;
    mp_obj_free(r);
    return rc;
}

static ssize_t call_count(struct proxy *p, const char *method, const struct marg *a, size_t n)
{
    mp_obj *r;
    int rc = pcall(p, method, a, n, 0, &r);
    if (rc < 0)
        return rc;
    int64_t v;
    ssize_t out = mp_obj_get_int(r, &v) == 0 && v >= 0 ? (ssize_t)v : MP_EPROTO;
    mp_obj_free(r);
    return out;
}

/* Hand a result over, or drop it when the caller did not ask. */
static void give(mp_obj *r, mp_obj **out)
{
    if (out)
        *out = r;
    else
        mp_obj_free(r);
}

/* ---- dict --------------------------------------------------------------------------- */

#define CHECK_PROXY(x)                                                                             \
    do {                                                                                           \
        if (!(x))                                                                                  \
            return -EINVAL;                                                                        \
    } while (0)

MP_API int mp_dict_get(mp_dict *d, const mp_obj *key, mp_obj **value)
{
    if (value)
        *value = NULL;
    CHECK_PROXY(d && key && value);
    struct marg a[1] = {ARG_OBJ(key)};
    return pcall(&d->p, "get", a, 1, 0, value);
}

MP_API int mp_dict_set(mp_dict *d, const mp_obj *key, const mp_obj *value)
{
    CHECK_PROXY(d && key && value);
    struct marg a[2] = {ARG_OBJ(key), ARG_OBJ(value)};
    return pcall(&d->p, "set", a, 2, 0, NULL);
}

MP_API int mp_dict_del(mp_dict *d, const mp_obj *key)
{
    CHECK_PROXY(d && key);
    struct marg a[1] = {ARG_OBJ(key)};
    return pcall(&d->p, "del", a, 1, 0, NULL);
}

MP_API int mp_dict_contains(mp_dict *d, const mp_obj *key)
{
    CHECK_PROXY(d && key);
    struct marg a[1] = {ARG_OBJ(key)};
    return call_bool(&d->p, "contains", a, 1);
}

MP_API ssize_t mp_dict_len(mp_dict *d)
{
    CHECK_PROXY(d);
    return call_count(&d->p, "len", NULL, 0);
}

static int get_list(struct proxy *p, const char *method, mp_obj **list)
{
    if (list)
        *list = NULL;
    CHECK_PROXY(p && list);
    return pcall(p, method, NULL, 0, 0, list);
}

MP_API int mp_dict_keys(mp_dict *d, mp_obj **list)
{
    return get_list(d ? &d->p : NULL, "keys", list);
}

MP_API int mp_dict_values(mp_dict *d, mp_obj **list)
{
    return get_list(d ? &d->p : NULL, "values", list);
}

MP_API int mp_dict_items(mp_dict *d, mp_obj **list)
{
    return get_list(d ? &d->p : NULL, "items", list);
}

MP_API int mp_dict_clear(mp_dict *d)
{
    CHECK_PROXY(d);
    return pcall(&d->p, "clear", NULL, 0, 0, NULL);
}

MP_API int mp_dict_pop(mp_dict *d, const mp_obj *key, mp_obj **value)
{
    if (value)
        *value = NULL;
    CHECK_PROXY(d && key);
    struct marg a[1] = {ARG_OBJ(key)};
    mp_obj *r;
    int rc = pcall(&d->p, "pop", a, 1, 0, &r);
    if (rc == 0)
        give(r, value);
    return rc;
}

MP_API int mp_dict_popitem(mp_dict *d, mp_obj **key, mp_obj **value)
{
    if (key)
        *key = NULL;
    if (value)
        *value = NULL;
    CHECK_PROXY(d);
    mp_obj *r;
    int rc = pcall(&d->p, "popitem", NULL, 0, 0, &r);
    if (rc < 0)
        return rc;
    if (mp_obj_type(r) != MP_TYPE_TUPLE || mp_obj_len(r) != 2) {
        mp_obj_free(r);
        return MP_EPROTO;
    }
    mp_obj *v = mp__seq_take(r, 1), *k = mp__seq_take(r, 0);
    mp_obj_free(r);
    give(k, key);
    give(v, value);
    return 0;
}

MP_API int mp_dict_setdefault(mp_dict *d, const mp_obj *key, const mp_obj *dflt, mp_obj **value)
{
    if (value)
        *value = NULL;
    CHECK_PROXY(d && key && dflt);
    struct marg a[2] = {ARG_OBJ(key), ARG_OBJ(dflt)};
    mp_obj *r;
    int rc = pcall(&d->p, "setdefault", a, 2, 0, &r);
    if (rc == 0)
        give(r, value);
    return rc;
}

MP_API int mp_dict_update(mp_dict *d, const mp_obj *other)
{
    CHECK_PROXY(d && other);
    struct marg a[1] = {ARG_OBJ(other)};
    return pcall(&d->p, "update", a, 1, 0, NULL);
}

MP_API int mp_dict_copy(mp_dict *d, mp_obj **copy)
{
    return get_list(d ? &d->p : NULL, "copy", copy);
}

static int add_impl(mp_dict *d, struct marg key, int64_t delta, int64_t *result)
{
    struct marg a[2] = {key, ARG_INT(delta)};
    mp_obj *r;
    struct scalar sc;
    int rc = pcall_sc(&d->p, "add", a, 2, 0, &r, &sc);
    if (rc < 0)
        return rc;
    int64_t v;
    rc = reply_int(&sc, r, &v) == 0 ? 0 : MP_EPROTO;
    mp_obj_free(r);
    if (rc == 0 && result)
        *result = v;
    return rc;
}

MP_API int mp_dict_add(mp_dict *d, const mp_obj *key, int64_t delta, int64_t *result)
{
    CHECK_PROXY(d && key);
    return add_impl(d, ARG_OBJ(key), delta, result);
}

MP_API int mp_dict_add_int(mp_dict *d, const char *key, int64_t delta, int64_t *result)
{
    struct marg k;
    CHECK_PROXY(d && str_arg(key, &k) == 0);
    return add_impl(d, k, delta, result);
}

/* The reply of 'cas': (swapped, present, current). */
static int cas_impl(mp_dict *d, struct marg key, const struct marg *expected, struct marg desired,
                    bool *present, mp_obj **current)
{
    struct marg a[3] = {key, desired, expected ? *expected : ARG_NONE};
    mp_obj *r;
    int rc = pcall(&d->p, "cas", a, expected ? 3 : 2, 0, &r);
    if (rc < 0)
        return rc;
    bool swapped, had;
    if (mp_obj_len(r) != 3 || mp_obj_get_bool(mp_obj_list_get(r, 0), &swapped) < 0 ||
        mp_obj_get_bool(mp_obj_list_get(r, 1), &had) < 0) {
        mp_obj_free(r);
        return MP_EPROTO;
    }
    *present = had;
    mp_obj *cur = mp__seq_take(r, 2);
    mp_obj_free(r);
    if (had)
        give(cur, current);
    else
        mp_obj_free(cur);
    return swapped ? 1 : 0;
}

MP_API int mp_dict_cas(mp_dict *d, const mp_obj *key, const mp_obj *expected, const mp_obj *desired,
                       mp_obj **current)
{
    if (current)
        *current = NULL;
    CHECK_PROXY(d && key && desired);
    struct marg e = expected ? ARG_OBJ(expected) : ARG_NONE;
    bool present;
    return cas_impl(d, ARG_OBJ(key), expected ? &e : NULL, ARG_OBJ(desired), &present, current);
}

MP_API int mp_dict_cas_int(mp_dict *d, const char *key, int64_t expected, int64_t desired,
                           int64_t *current)
{
    struct marg k;
    CHECK_PROXY(d && str_arg(key, &k) == 0);
    struct marg e = ARG_INT(expected);
    bool present;
    mp_obj *cur = NULL;
    int rc = cas_impl(d, k, &e, ARG_INT(desired), &present, &cur);
    if (rc < 0)
        return rc;
    int64_t v = 0;
    int t = mp_obj_type(cur);
    if (!present)
        rc = MP_EKEY;
    else if (t != MP_TYPE_INT && t != MP_TYPE_BOOL)
        rc = MP_ETYPE;
    else
        (void)mp_obj_get_int(cur, &v);
    mp_obj_free(cur);
    if (rc >= 0 && current)
        *current = v;
    return rc;
}

/* d[key] for a str key, as a value of the expected type. */
static int get_typed(mp_dict *d, const char *key, mp_obj **out)
{
    struct marg k;
    if (!d || str_arg(key, &k) < 0)
        return -EINVAL;
    struct marg a[1] = {k};
    return pcall(&d->p, "get", a, 1, 0, out);
}

MP_API int mp_dict_get_int(mp_dict *d, const char *key, int64_t *value)
{
    CHECK_PROXY(value);
    struct marg k;
    if (!d || str_arg(key, &k) < 0)
        return -EINVAL;
    struct marg a[1] = {k};
    mp_obj *r;
    struct scalar sc;
    int rc = pcall_sc(&d->p, "get", a, 1, 0, &r, &sc);
    if (rc < 0)
        return rc;
    rc = reply_int(&sc, r, value);
    mp_obj_free(r);
    return rc;
}

/* A malloc'd copy of a str or bytes value, NUL-terminated. */
static int copy_out(mp_obj *r, int type, void **value, size_t *len)
{
    const unsigned char *p;
    size_t n;
    int rc = type == MP_TYPE_STR ? mp_obj_get_str(r, (const char **)&p, &n)
                                 : mp_obj_get_bytes(r, &p, &n);
    if (rc < 0)
        return rc;
    unsigned char *copy = malloc(n + 1);
    if (!copy)
        return -ENOMEM;
    memcpy(copy, p, n);
    copy[n] = '\0';
    *value = copy;
    if (len)
        *len = n;
    return 0;
}

MP_API int mp_dict_get_str(mp_dict *d, const char *key, char **value, size_t *len)
{
    CHECK_PROXY(value);
    *value = NULL;
    mp_obj *r;
    int rc = get_typed(d, key, &r);
    if (rc < 0)
        return rc;
    rc = copy_out(r, MP_TYPE_STR, (void **)value, len);
    mp_obj_free(r);
    return rc;
}

MP_API int mp_dict_get_bytes(mp_dict *d, const char *key, void **value, size_t *len)
{
    CHECK_PROXY(value);
    *value = NULL;
    mp_obj *r;
    int rc = get_typed(d, key, &r);
    if (rc < 0)
        return rc;
    rc = copy_out(r, MP_TYPE_BYTES, value, len);
    mp_obj_free(r);
    return rc;
}

static int set_typed(mp_dict *d, const char *key, struct marg value)
{
    struct marg k;
    if (!d || str_arg(key, &k) < 0)
        return -EINVAL;
    struct marg a[2] = {k, value};
    return pcall(&d->p, "set", a, 2, 0, NULL);
}

MP_API int mp_dict_set_int(mp_dict *d, const char *key, int64_t value)
{
    return set_typed(d, key, ARG_INT(value));
}

MP_API int mp_dict_set_str(mp_dict *d, const char *key, const char *value)
{
    struct marg v;
    if (str_arg(value, &v) < 0)
        return -EINVAL;
    return set_typed(d, key, v);
}

MP_API int mp_dict_set_bytes(mp_dict *d, const char *key, const void *value, size_t len)
{
    if (!value && len)
        return -EINVAL;
    return set_typed(d, key, ARG_BYTES(value, len));
}

MP_API int mp_dict_del_str(mp_dict *d, const char *key)
{
    struct marg k;
    CHECK_PROXY(d && str_arg(key, &k) == 0);
    struct marg a[1] = {k};
    return pcall(&d->p, "del", a, 1, 0, NULL);
}

MP_API int mp_dict_contains_str(mp_dict *d, const char *key)
{
    struct marg k;
    CHECK_PROXY(d && str_arg(key, &k) == 0);
    struct marg a[1] = {k};
    return call_bool(&d->p, "contains", a, 1);
}

MP_API void mp_dict_free(mp_dict *d)
{
    if (!d)
        return;
    proxy_release(&d->p);
    free(d);
}

/* ---- list -------------------------------------------------------------------------- */

MP_API int mp_list_append(mp_list *l, const mp_obj *value)
{
    CHECK_PROXY(l && value);
    struct marg a[1] = {ARG_OBJ(value)};
    return pcall(&l->p, "append", a, 1, 0, NULL);
}

MP_API int mp_list_append_int(mp_list *l, int64_t value)
{
    CHECK_PROXY(l);
    struct marg a[1] = {ARG_INT(value)};
    return pcall(&l->p, "append", a, 1, 0, NULL);
}

MP_API int mp_list_append_str(mp_list *l, const char *value)
{
    struct marg v;
    CHECK_PROXY(l && str_arg(value, &v) == 0);
    return pcall(&l->p, "append", &v, 1, 0, NULL);
}

MP_API int mp_list_extend(mp_list *l, const mp_obj *seq)
{
    CHECK_PROXY(l && seq);
    int t = mp_obj_type(seq);
    if (t != MP_TYPE_LIST && t != MP_TYPE_TUPLE)
        return MP_ETYPE;
    struct marg a[1] = {ARG_OBJ(seq)};
    return pcall(&l->p, "extend", a, 1, 0, NULL);
}

MP_API int mp_list_get(mp_list *l, int64_t i, mp_obj **value)
{
    if (value)
        *value = NULL;
    CHECK_PROXY(l && value);
    struct marg a[1] = {ARG_INT(i)};
    return pcall(&l->p, "get", a, 1, 0, value);
}

MP_API int mp_list_get_int(mp_list *l, int64_t i, int64_t *value)
{
    CHECK_PROXY(value);
    mp_obj *r;
    int rc = mp_list_get(l, i, &r);
    if (rc < 0)
        return rc;
    rc = mp_obj_get_int(r, value);
    mp_obj_free(r);
    return rc;
}

MP_API int mp_list_get_str(mp_list *l, int64_t i, char **value, size_t *len)
{
    CHECK_PROXY(value);
    *value = NULL;
    mp_obj *r;
    int rc = mp_list_get(l, i, &r);
    if (rc < 0)
        return rc;
    rc = copy_out(r, MP_TYPE_STR, (void **)value, len);
    mp_obj_free(r);
    return rc;
}

MP_API int mp_list_set(mp_list *l, int64_t i, const mp_obj *value)
{
    CHECK_PROXY(l && value);
    struct marg a[2] = {ARG_INT(i), ARG_OBJ(value)};
    return pcall(&l->p, "set", a, 2, 0, NULL);
}

MP_API ssize_t mp_list_len(mp_list *l)
{
    CHECK_PROXY(l);
    return call_count(&l->p, "len", NULL, 0);
}

MP_API int mp_list_pop(mp_list *l, int64_t i, mp_obj **value)
{
    if (value)
        *value = NULL;
    CHECK_PROXY(l);
    struct marg a[1] = {ARG_INT(i)};
    mp_obj *r;
    int rc = pcall(&l->p, "pop", a, 1, 0, &r);
    if (rc == 0)
        give(r, value);
    return rc;
}

MP_API int mp_list_insert(mp_list *l, int64_t i, const mp_obj *value)
{
    CHECK_PROXY(l && value);
    struct marg a[2] = {ARG_INT(i), ARG_OBJ(value)};
    return pcall(&l->p, "insert", a, 2, 0, NULL);
}

MP_API int mp_list_slice(mp_list *l, int64_t start, int64_t stop, mp_obj **list)
{
    if (list)
        *list = NULL;
    CHECK_PROXY(l && list);
    struct marg a[2] = {ARG_INT(start), stop == MP_LIST_END ? ARG_NONE : ARG_INT(stop)};
    return pcall(&l->p, "slice", a, 2, 0, list);
}

MP_API int mp_list_copy(mp_list *l, mp_obj **list)
{
    return get_list(l ? &l->p : NULL, "copy", list);
}

MP_API int mp_list_del(mp_list *l, int64_t i)
{
    CHECK_PROXY(l);
    struct marg a[1] = {ARG_INT(i)};
    return pcall(&l->p, "del", a, 1, 0, NULL);
}

MP_API int mp_list_clear(mp_list *l)
{
    CHECK_PROXY(l);
    return pcall(&l->p, "clear", NULL, 0, 0, NULL);
}

MP_API ssize_t mp_list_index(mp_list *l, const mp_obj *value)
{
    CHECK_PROXY(l && value);
    struct marg a[1] = {ARG_OBJ(value)};
    return call_count(&l->p, "index", a, 1);
}

MP_API ssize_t mp_list_count(mp_list *l, const mp_obj *value)
{
    CHECK_PROXY(l && value);
    struct marg a[1] = {ARG_OBJ(value)};
    return call_count(&l->p, "count", a, 1);
}

MP_API int mp_list_contains(mp_list *l, const mp_obj *value)
{
    CHECK_PROXY(l && value);
    struct marg a[1] = {ARG_OBJ(value)};
    return call_bool(&l->p, "contains", a, 1);
}

MP_API int mp_list_remove(mp_list *l, const mp_obj *value)
{
    CHECK_PROXY(l && value);
    struct marg a[1] = {ARG_OBJ(value)};
    return pcall(&l->p, "remove", a, 1, 0, NULL);
}

MP_API void mp_list_free(mp_list *l)
{
    if (!l)
        return;
    proxy_release(&l->p);
    free(l);
}

/* ---- locks --------------------------------------------------------------------------- */

MP_API int mp_mlock_acquire(mp_mlock *lk, double timeout)
{
    CHECK_PROXY(lk);
    if (mp__bad_timeout(timeout))
        return MP_EVALUE;
    struct marg a[2] = {arg_timeout(timeout), ARG_INT(thread_id())};
    return pcall(&lk->p, "acquire", a, 2, timeout < 0 ? MP_FOREVER : timeout, NULL);
}

MP_API int mp_mlock_release(mp_mlock *lk)
{
    CHECK_PROXY(lk);
    struct marg a[1] = {ARG_INT(thread_id())};
    return pcall(&lk->p, "release", a, 1, 0, NULL);
}

MP_API void mp_mlock_free(mp_mlock *lk)
{
    if (!lk)
        return;
    proxy_release(&lk->p);
    free(lk);
}

/* ---- queues --------------------------------------------------------------------------- */

MP_API int mp_mqueue_put(mp_mqueue *q, const mp_obj *item, double timeout)
{
    CHECK_PROXY(q && item);
    if (mp__bad_timeout(timeout))
        return MP_EVALUE;
    struct marg a[2] = {ARG_OBJ(item), arg_timeout(timeout)};
    return pcall(&q->p, "put", a, 2, timeout < 0 ? MP_FOREVER : timeout, NULL);
}

MP_API int mp_mqueue_get(mp_mqueue *q, mp_obj **item, double timeout)
{
    if (item)
        *item = NULL;
    CHECK_PROXY(q && item);
    if (mp__bad_timeout(timeout))
        return MP_EVALUE;
    struct marg a[1] = {arg_timeout(timeout)};
    return pcall(&q->p, "get", a, 1, timeout < 0 ? MP_FOREVER : timeout, item);
}

MP_API ssize_t mp_mqueue_qsize(mp_mqueue *q)
{
    CHECK_PROXY(q);
    return call_count(&q->p, "qsize", NULL, 0);
}

MP_API int mp_mqueue_empty(mp_mqueue *q)
{
    CHECK_PROXY(q);
    return call_bool(&q->p, "empty", NULL, 0);
}

MP_API int mp_mqueue_full(mp_mqueue *q)
{
    CHECK_PROXY(q);
    return call_bool(&q->p, "full", NULL, 0);
}

MP_API int mp_mqueue_task_done(mp_mqueue *q)
{
    CHECK_PROXY(q);
    return pcall(&q->p, "task_done", NULL, 0, 0, NULL);
}

MP_API int mp_mqueue_join(mp_mqueue *q, double timeout)
{
    CHECK_PROXY(q);
    if (mp__bad_timeout(timeout))
        return MP_EVALUE;
    struct marg a[1] = {arg_timeout(timeout)};
    return pcall(&q->p, "join", a, 1, timeout < 0 ? MP_FOREVER : timeout, NULL);
}

MP_API void mp_mqueue_free(mp_mqueue *q)
{
    if (!q)
        return;
    proxy_release(&q->p);
    free(q);
}
