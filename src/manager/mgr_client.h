/*
 * mgr_client - what the files of the manager's client half share: a handle
 * and its connections, a call's arguments, the proxies' common part, and
 * the pool's two hot steps (take and give back a connection) inline.
 * Private, never installed. mgr.h holds what the client shares with the
 * server (the protocol's constants, the mailboxes' layout).
 *
 * The client half, one job per file:
 *   mgr_client.c       handles: start, connect, serve, shutdown, free, fork;
 *   mgr_connpool.c     a handle's pool of authenticated connections;
 *   mgr_call.c         one round trip: the request, the mailbox, the reply;
 *   mgr_client_py.c    the same calls on CPython's manager server (py_);
 *   mgr_proxy.c        making and releasing proxies, their call helpers;
 *   mgr_proxy_dict.c, mgr_proxy_list.c, mgr_proxy_lock.c, mgr_proxy_queue.c,
 *   mgr_proxy_sync.c
 *                      one proxy type each (its constructors and methods).
 *
 * Names. A static function carries its file's prefix, so a stack trace or
 * a profile says where it is: client_, connpool_, call_, proxy_,
 * dict_proxy_, list_proxy_, lock_proxy_, queue_proxy_ (the inline helpers
 * below carry the prefix of the file they belong to). What one file lends
 * another is mp__mgr_<file>_<what> (mgr_call.c's main entry is plain
 * mp__mgr_call), declared here.
 */
#ifndef MPIPC_MGR_CLIENT_H
#define MPIPC_MGR_CLIENT_H

#include "codec/objimpl.h"
#include "codec/pickle.h"
#include "core/internal.h"
#include "core/list.h"
#include "manager/mgr.h"

#include <mpipc/manager.h>
#include <mpipc/obj.h>
#include <mpipc/process.h>

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>

/* ---- handles and connections --------------------------------------------- */

/* Where a connection is: in a caller's hands (a call runs on it), in the
 * idle list, or in the stale list (a reply it timed out on is still owed).
 * Only MP__ASSERT reads it: it states the pool's transitions. */
enum { MCONN_BUSY = 1, MCONN_IDLE, MCONN_STALE };

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
    unsigned char state;       /* MCONN_*, for the assertions */
    unsigned pause_skip;       /* calls left before looking without yielding again */
    struct mconn *next_idle;   /* in the idle or the stale list */
    struct mp__list_node node; /* in the handle's all */
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
    struct mp__list all; /* every connection, the newest first */
    struct mconn *idle;
    struct mconn *stale; /* timed out, reply pending: kept, so that a slow
                          * server does not see this process leave */
    size_t nconns;       /* the connections in all */
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

    struct mp__list_node rnode; /* in the registry */

    /* The server is CPython's (a Python SyncManager): every call goes
     * through mgr_client_py.c, on these connections (guarded by mu). */
    bool py;
    struct mp__mgr_pyconn *py_idle;
};

static inline bool client_is_closed(const mp_manager *m)
{
    return __atomic_load_n(&m->closed, __ATOMIC_ACQUIRE);
}

/* A timeout in ns: negative (no limit) for a negative, NaN or huge one. */
static inline int64_t client_seconds_to_ns(double t)
{
    if (t < 0 || isnan(t))
        return -1;
    if (t > 1e9)
        return -1;
    return (int64_t)(t * 1e9);
}

/* A name for an object (unlink, create, attach): valid UTF-8. */
static inline int client_check_name(const char *name)
{
    return name && mp__utf8_valid((const unsigned char *)name, strlen(name)) ? 0 : -EINVAL;
}

/* Drop a reference; the last one frees the handle (mgr_client.c). */
void mp__mgr_client_unref(mp_manager *m);

/* ---- a call's arguments ------------------------------------------------------ */

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

/* What a round trip leaves its connection as: reuse it, close it (it
 * failed or is out of step), or park it as stale (the reply is owed). */
enum fate { F_REUSE, F_DEAD, F_STALE };

/* A reply that is one scalar - what the hot calls get back (set, add,
 * get_int, acquire, release) - read straight from the bytes, without
 * building and freeing a tuple, a str and an int. */
enum { SC_NONE = 1, SC_BOOL, SC_INT };
struct scalar {
    int kind; /* 0: not read this way (the general path ran) */
    int64_t v;
};

/* ---- the pool (mgr_connpool.c) ------------------------------------------------ */

/* Connect, authenticate, say hello and claim a mailbox: a new connection,
 * in the caller's hands. Returns the raw codes of mp_client_connect. */
int mp__mgr_connpool_open(mp_manager *m, struct mconn **out);
/* No idle connection: drain the stale ones (the list taken off the
 * handle), reuse one that has caught up, or open a new one. */
int mp__mgr_connpool_refill(mp_manager *m, struct mconn *stale, struct mconn **out);
/* Close a connection in the caller's hands and forget it. */
void mp__mgr_connpool_drop(mp_manager *m, struct mconn *c);
/* Keep a connection whose reply is late, in the stale list. */
void mp__mgr_connpool_park(mp_manager *m, struct mconn *c);
/* Close this process's idle and stale connections (a closed handle). */
void mp__mgr_connpool_close_idle(mp_manager *m);
/* Close every connection of the handle without its lock (the handle is
 * being freed, or this is a forked child where no other thread runs). */
void mp__mgr_connpool_close_all(mp_manager *m);

/* Take an idle connection, or have the pool find or open one. On the hot
 * path of every call, so inline. */
static inline int connpool_get(mp_manager *m, struct mconn **out)
{
    pthread_mutex_lock(&m->mu);
    struct mconn *c = m->idle;
    if (c) {
        m->idle = c->next_idle;
        pthread_mutex_unlock(&m->mu);
        MP__ASSERT(c->state == MCONN_IDLE);
        c->state = MCONN_BUSY;
        *out = c;
        return 0;
    }
    /* No idle one: perhaps a stale one has caught up meanwhile. */
    struct mconn *stale = m->stale;
    m->stale = NULL;
    pthread_mutex_unlock(&m->mu);
    return mp__mgr_connpool_refill(m, stale, out);
}

/* Give a connection back after a call that left it in step. */
static inline void connpool_put(mp_manager *m, struct mconn *c)
{
    MP__ASSERT(c->state == MCONN_BUSY && !c->slot_owed && c->sleft == 0);
    if (client_is_closed(m)) {
        mp__mgr_connpool_drop(m, c);
        return;
    }
    pthread_mutex_lock(&m->mu);
    MP__ASSERT(m->nconns > 0);
    c->state = MCONN_IDLE;
    c->next_idle = m->idle;
    m->idle = c;
    pthread_mutex_unlock(&m->mu);
}

/* ---- calls (mgr_call.c) ---------------------------------------------------------- */

/* Pickle one argument of a request (both dialects: mgr_call.c, mgr_client_py.c). */
void mp__mgr_encode_arg(mp__pickler *w, const struct marg *a);

/*
 * Send one request on c and read its reply. *fate tells the caller what to
 * do with the connection (enum fate). Returns the reply's status (0 for
 * '#RETURN', with *result set when result is not NULL, or, when sc is not
 * NULL and the reply is a scalar, sc->kind and sc->v set instead).
 */
int mp__mgr_call_roundtrip(mp_manager *m, struct mconn *c, int64_t ident, const char *method,
                           const struct marg *a, size_t n, double wait, mp_obj **result,
                           struct scalar *sc, int *fate);
/*
 * Discard what is left of a late reply without waiting: 1 when it is all
 * gone (the connection is in step again), 0 when more is still owed, -1
 * when the connection is finished (end of file, error, bytes beyond the
 * reply).
 */
int mp__mgr_call_drain(struct mconn *c);
/*
 * One call on a connection of the pool: method on object ident (0: the
 * server itself) with n arguments; wait is how long the operation itself
 * may wait in the server (0: it answers at once; negative: forever).
 * A closed handle gives MP_ECLOSED unless even_closed.
 */
int mp__mgr_call(mp_manager *m, int64_t ident, const char *method, const struct marg *a, size_t n,
                 double wait, mp_obj **result, struct scalar *sc, bool even_closed);
struct proxy;
/* One call on the proxy's object, as mp__mgr_call; a process that
 * inherited the proxy first registers as a holder. With sc, a scalar reply
 * comes back there (sc->kind set) instead of in *result. */
int mp__mgr_call_proxy(struct proxy *p, const char *method, const struct marg *a, size_t n,
                       double wait, mp_obj **result, struct scalar *sc);

/* ---- proxies (mgr_proxy.c) ------------------------------------------------------- */

/* A proxy of size bytes for the object proxy reference ref names
 * (mgr_proxy_ref.c): its Token's typeid must be one of typeids (NULL-
 * terminated), which gives our kind (kinds, the same order), its address
 * the handle's. Holds the object (incref); *out is NULL on failure. */
int mp__mgr_proxy_from_ref(mp_manager *m, size_t size, const char *const *typeids,
                           const char *const *kinds, const mp_obj *ref, struct proxy **out);
/* A Python ident ('%x' % id(obj), as Tokens carry it) as ours: 1 to 16
 * lowercase hex digits naming 1 to INT64_MAX (mgr_client_py.c). */
bool mp__mgr_py_ident(const mp_obj *o, int64_t *id);
/* The proxy reference of p (mgr_proxy_ref.c): RebuildProxy(func, Token(
 * typeid, address, '%x' of p's id), 'pickle', kwds), kwds {'exposed':
 * exposed} when exposed is not NULL (an AutoProxy), else {}. */
int mp__mgr_proxy_ref(const struct proxy *p, const char *func, const char *typeid,
                      const char *const *exposed, mp_obj **out);

/* The common part of every proxy: its type's struct begins with it. */
struct proxy {
    mp_manager *m;
    int64_t id;
    unsigned gen;                 /* atomic: fork generation in which this process holds it */
    const struct py_type *pyt;    /* on CPython's server: its type's row */
    struct mp__mgr_pyconn *pyown; /* ... its threads' own connections (m->mu) */
};

/* ---- CPython's server (mgr_client_py.c) ------------------------------------------ */

/* Is the server at m's address CPython's? 0 when its 'dummy' answers as
 * Python's does, or a status code. */
int mp__mgr_py_probe(mp_manager *m);
/* create an object of our kind on CPython's server (no names: -ENOTSUP);
 * fills p->id and p->pyt. */
int mp__mgr_py_create(mp_manager *m, const char *kind, const char *name, bool attach,
                      const struct marg *initial, struct proxy *p);
/* Set up p for an object of our kind on CPython's server (p->pyt):
 * -ENOTSUP for a kind without a C proxy there. */
int mp__mgr_py_adopt(const char *kind, struct proxy *p);
/* A lock proxy of CPython's server as the pickled proxy its Condition(lock)
 * takes (managers.RebuildProxy of an AcquirerProxy): 0, -ENOMEM, or
 * MP_EVALUE for an address a Token cannot carry (mp__mgr_proxy_ref). */
int mp__mgr_py_lock_ref(const struct proxy *lock, mp_obj **ref);
/* A call on the server itself (incref, release, shutdown), translated. */
int mp__mgr_py_call(mp_manager *m, const char *method, const struct marg *a, size_t n,
                    mp_obj **result);
/* A proxy's call, translated by its type's table (-ENOTSUP off the table). */
int mp__mgr_py_call_proxy(struct proxy *p, const char *method, const struct marg *a, size_t n,
                          double wait, mp_obj **result);
/* Close the connections a proxy's threads kept (it is being freed). */
void mp__mgr_py_proxy_release(struct proxy *p);
/* Close this process's idle connections to CPython's server (m->mu held
 * when locked). */
void mp__mgr_py_close_idle(mp_manager *m, bool locked);

/*
 * Allocate size bytes for a proxy (a struct that begins with struct proxy)
 * and create(kind, name, initial) or attach(kind, name) its object; *out is
 * NULL on failure. Returns 1 when a named object was created, 0 when it
 * existed (or has no name), or a status code.
 */
int mp__mgr_proxy_new(mp_manager *m, size_t size, const char *kind, const char *name, bool attach,
                      const struct marg *initial, struct proxy **out);
/* mp__mgr_proxy_new for a dict (type MP_TYPE_DICT) or a list (MP_TYPE_LIST):
 * initial, when not NULL, is the new object's value and must be a dict, or
 * a list or a tuple; MP_ETYPE otherwise, with *out NULL. */
int mp__mgr_proxy_new_value(mp_manager *m, size_t size, int type, const char *name, bool attach,
                            const mp_obj *initial, struct proxy **out);
/* Stop holding the object (unless inherited), drop the handle and free the
 * proxy (made by mp__mgr_proxy_new). */
void mp__mgr_proxy_free(struct proxy *p);
/* Call and read a bool (0 or 1) or a count; -EINVAL for a NULL p. */
int mp__mgr_proxy_call_bool(struct proxy *p, const char *method, const struct marg *a, size_t n);
ssize_t mp__mgr_proxy_call_count(struct proxy *p, const char *method, const struct marg *a,
                                 size_t n);
/* A call without arguments whose value is the result (keys, copy, ...);
 * -EINVAL for a NULL p or out. */
int mp__mgr_proxy_get_value(struct proxy *p, const char *method, mp_obj **out);
/* Hand a result over, or drop it when the caller did not ask. */
void mp__mgr_proxy_give(mp_obj *r, mp_obj **out);
/* A malloc'd copy of r, a str or bytes value (type), NUL-terminated, in
 * *value (and its length in *len when len is not NULL); frees r. */
int mp__mgr_proxy_take_copy(mp_obj *r, int type, void **value, size_t *len);

/* The calling thread's identity for a lock's, a semaphore's or a
 * condition's holder (mgr_proxy_lock.c). */
int64_t mp__mgr_thread_id(void);

/* mp_obj_get_int() of a reply that came as a scalar or as a value. */
static inline int proxy_reply_int(const struct scalar *sc, const mp_obj *r, int64_t *v)
{
    if (!sc->kind)
        return mp_obj_get_int(r, v);
    if (sc->kind == SC_NONE)
        return MP_ETYPE;
    *v = sc->v;
    return 0;
}

/* A C string key or value: UTF-8 checked here, so a bad one is -EINVAL. */
static inline int proxy_str_arg(const char *s, struct marg *out)
{
    if (!s)
        return -EINVAL;
    size_t n = strlen(s);
    if (!mp__utf8_valid((const unsigned char *)s, n))
        return -EINVAL;
    *out = ARG_STR(s, n);
    return 0;
}

/* A timeout as the server reads it: seconds, or None for forever. */
static inline struct marg proxy_arg_timeout(double t)
{
    if (t < 0 || isnan(t))
        return ARG_NONE;
    return ARG_FLOAT(t);
}

/* How long an operation with this timeout may wait in the server. */
static inline double proxy_wait(double timeout)
{
    return timeout < 0 ? MP_FOREVER : timeout;
}

#endif /* MPIPC_MGR_CLIENT_H */
