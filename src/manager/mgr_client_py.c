/*
 * mgr_client_py - our client on CPython's manager server (a Python
 * SyncManager): the one place where the C proxies' calls become Python's
 * requests (ident, methodname, args, kwds) and Python's replies and
 * exceptions become our values and status codes. Static functions: py_.
 *
 * Python's model, from Lib/multiprocessing/managers.py: a call on the
 * server itself (create, incref, decref, shutdown, dummy) is one request
 * on a connection of its own (Server.handle_request); a proxy's calls go on
 * a connection that first sent accept_connection, after which the server
 * serves any object on it (Server.serve_client). So the handle keeps a pool
 * of such accepted connections, one per thread calling at a moment; an
 * RLock proxy keeps one per calling thread instead, since Python's server
 * owns an RLock by the thread serving the connection (Python keeps one per
 * thread and proxy for every proxy). Objects are Python's: create
 * leaves one reference, which the proxy holds; a forked child's first call
 * increfs; freeing the proxy decrefs.
 *
 * The translation is table-driven: each type lists our method names with
 * Python's name and how the arguments and the reply change (py_types[]).
 * A type or method a later proxy adds is one more row.
 */
#include "codec/objimpl.h"
#include "codec/pickle.h"
#include "core/internal.h"
#include "manager/mgr_client.h"

#include <mpipc/conn.h>
#include <mpipc/listener.h>

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* How our arguments become Python's. A timeout argument is None (wait
 * forever) or a float (0: do not wait). */
enum {
    PC_SAME = 0, /* as they are */
    PC_NONE,     /* none at all (a lock's owner id is ours alone) */
    PC_WAIT,     /* (timeout) -> () / (False,) / (True, t): acquire, get */
    PC_PUT,      /* (item, timeout) -> (item,) / (item, False) / (item, True, t) */
    PC_ZERO,     /* () -> (0,): list clear as l *= 0 */
    PC_FIRST,    /* the first only (a condition's caller id is ours alone) */
    PC_ATTR,     /* () -> (attr,): __getattribute__ of the row's attribute */
    PC_SORT,     /* (reverse) -> () with {'reverse': reverse}: list.sort */
    PC_NSDEL,    /* as they are, once the name is known to be there (below) */
    PC_UNTIMED,  /* none, and Python's method has no timeout: the client
                  * stops waiting at the call's own (queue join) */
};

/* How create's initial value becomes Python's constructor arguments. */
enum {
    PI_ONE = 0, /* one argument, as it is (or none for None) */
    PI_SPREAD,  /* a tuple, one argument per item: Value, Array */
    PI_BARRIER, /* (parties, timeout) -> (parties, None, timeout): no action */
    PI_KWDS,    /* a dict as keyword arguments: Namespace(**attrs) */
};

/* How Python's reply becomes ours. */
enum {
    PR_PLAIN = 0,
    PR_NONE,    /* the value is not ours to return */
    PR_ACQUIRE, /* True: 0; False: MP_ETIMEDOUT */
    PR_KEYS,    /* a dict copy -> the list of its keys */
    PR_VALUES,  /* ... of its values */
    PR_ITEMS,   /* ... of its (key, value) tuples */
    PR_SLICE,   /* a list copy -> [start:stop] of it (args: start, stop) */
    PR_ENOTSUP, /* CPython's server has no such call */
    PR_COUNT0,  /* None -> 0: notify, which does not say how many woke */
    PR_NSGET,   /* a Namespace's __dict__ -> the attribute args[0] names */
};

struct py_meth {
    const char *ours, *py;
    unsigned char args, reply;
    const char *attr; /* PC_ATTR's attribute */
};

struct py_type {
    const char *kind;   /* ours, as mp__mgr_proxy_new names it */
    const char *typeid; /* SyncManager's */
    const struct py_meth *meth;
    size_t nmeth;
    bool per_thread;    /* calls of a thread keep to one connection (below) */
    unsigned char init; /* PI_* */
    int attr_code;      /* AttributeError's code when not MP_ETYPE (0) */
};

static const struct py_meth py_dict[] = {
    {"get", "__getitem__", PC_SAME, PR_PLAIN, NULL},
    {"set", "__setitem__", PC_SAME, PR_NONE, NULL},
    {"del", "__delitem__", PC_SAME, PR_NONE, NULL},
    {"contains", "__contains__", PC_SAME, PR_PLAIN, NULL},
    {"len", "__len__", PC_SAME, PR_PLAIN, NULL},
    {"keys", "copy", PC_NONE, PR_KEYS, NULL},
    {"values", "copy", PC_NONE, PR_VALUES, NULL},
    {"items", "copy", PC_NONE, PR_ITEMS, NULL},
    {"clear", "clear", PC_SAME, PR_NONE, NULL},
    {"pop", "pop", PC_SAME, PR_PLAIN, NULL},
    {"popitem", "popitem", PC_SAME, PR_PLAIN, NULL},
    {"setdefault", "setdefault", PC_SAME, PR_PLAIN, NULL},
    {"update", "update", PC_SAME, PR_NONE, NULL},
    {"copy", "copy", PC_SAME, PR_PLAIN, NULL},
    {"add", NULL, PC_SAME, PR_ENOTSUP, NULL},
    {"cas", NULL, PC_SAME, PR_ENOTSUP, NULL},
};

static const struct py_meth py_list[] = {
    {"append", "append", PC_SAME, PR_NONE, NULL},
    {"extend", "extend", PC_SAME, PR_NONE, NULL},
    {"get", "__getitem__", PC_SAME, PR_PLAIN, NULL},
    {"set", "__setitem__", PC_SAME, PR_NONE, NULL},
    {"len", "__len__", PC_SAME, PR_PLAIN, NULL},
    {"pop", "pop", PC_SAME, PR_PLAIN, NULL},
    {"insert", "insert", PC_SAME, PR_NONE, NULL},
    {"slice", "#GETVALUE", PC_NONE, PR_SLICE, NULL},
    {"copy", "#GETVALUE", PC_SAME, PR_PLAIN, NULL},
    {"del", "__delitem__", PC_SAME, PR_NONE, NULL},
    {"clear", "__imul__", PC_ZERO, PR_NONE, NULL},
    {"index", "index", PC_SAME, PR_PLAIN, NULL},
    {"count", "count", PC_SAME, PR_PLAIN, NULL},
    {"contains", "__contains__", PC_SAME, PR_PLAIN, NULL},
    {"remove", "remove", PC_SAME, PR_NONE, NULL},
    {"sort", "sort", PC_SORT, PR_NONE, NULL},
    {"reverse", "reverse", PC_SAME, PR_NONE, NULL},
};

static const struct py_meth py_lock[] = {
    {"acquire", "acquire", PC_WAIT, PR_ACQUIRE, NULL},
    {"release", "release", PC_NONE, PR_NONE, NULL},
};

static const struct py_meth py_queue[] = {
    {"put", "put", PC_PUT, PR_NONE, NULL},       {"get", "get", PC_WAIT, PR_PLAIN, NULL},
    {"qsize", "qsize", PC_SAME, PR_PLAIN, NULL}, {"empty", "empty", PC_SAME, PR_PLAIN, NULL},
    {"full", "full", PC_SAME, PR_PLAIN, NULL},   {"task_done", "task_done", PC_SAME, PR_NONE, NULL},
    {"join", "join", PC_UNTIMED, PR_NONE, NULL},
};

/* AcquirerProxy exposes acquire and release only. */
static const struct py_meth py_sem[] = {
    {"acquire", "acquire", PC_WAIT, PR_ACQUIRE, NULL},
    {"release", "release", PC_NONE, PR_NONE, NULL},
    {"get_value", NULL, PC_SAME, PR_ENOTSUP, NULL},
};

static const struct py_meth py_event[] = {
    {"set", "set", PC_SAME, PR_NONE, NULL},
    {"clear", "clear", PC_SAME, PR_NONE, NULL},
    {"is_set", "is_set", PC_SAME, PR_PLAIN, NULL},
    {"wait", "wait", PC_SAME, PR_ACQUIRE, NULL},
};

static const struct py_meth py_cond[] = {
    {"acquire", "acquire", PC_WAIT, PR_ACQUIRE, NULL},
    {"release", "release", PC_NONE, PR_NONE, NULL},
    {"wait", "wait", PC_FIRST, PR_ACQUIRE, NULL},
    {"notify", "notify", PC_FIRST, PR_COUNT0, NULL},
    {"notify_all", "notify_all", PC_NONE, PR_COUNT0, NULL},
};

/* BarrierProxy: wait, abort, reset, and the rest by __getattribute__. */
static const struct py_meth py_barrier[] = {
    {"wait", "wait", PC_SAME, PR_PLAIN, NULL},
    {"abort", "abort", PC_SAME, PR_NONE, NULL},
    {"reset", "reset", PC_SAME, PR_NONE, NULL},
    {"parties", "__getattribute__", PC_ATTR, PR_PLAIN, "parties"},
    {"n_waiting", "__getattribute__", PC_ATTR, PR_PLAIN, "n_waiting"},
    {"broken", "__getattribute__", PC_ATTR, PR_PLAIN, "broken"},
};

static const struct py_meth py_value[] = {
    {"get", "get", PC_SAME, PR_PLAIN, NULL},
    {"set", "set", PC_SAME, PR_NONE, NULL},
};

/* ArrayProxy: __len__, __getitem__, __setitem__; a slice would come back
 * as an array.array, a class the decoder refuses, so no copy. */
static const struct py_meth py_array[] = {
    {"len", "__len__", PC_SAME, PR_PLAIN, NULL},
    {"get", "__getitem__", PC_SAME, PR_PLAIN, NULL},
    {"set", "__setitem__", PC_SAME, PR_NONE, NULL},
    {"copy", NULL, PC_SAME, PR_ENOTSUP, NULL},
};

/* NamespaceProxy exposes __getattribute__, __setattr__, __delattr__. A
 * missing attribute is found here, in a copy of __dict__, which also tells
 * MP_EKEY (our Namespace's code for it) from an AttributeError some other
 * cause raised. (Python 3.12+ pickles AttributeError with its attributes as
 * BUILD state; the decoder reads and drops that state, docs/wire.md.) */
static const struct py_meth py_ns[] = {
    {"get", "__getattribute__", PC_ATTR, PR_NSGET, "__dict__"},
    {"set", "__setattr__", PC_SAME, PR_NONE, NULL},
    {"del", "__delattr__", PC_NSDEL, PR_NONE, NULL},
    {"copy", "__getattribute__", PC_ATTR, PR_PLAIN, "__dict__"},
};

#define PY_TABLE(t) t, sizeof t / sizeof t[0]

static const struct py_type py_types[] = {
    {"dict", "dict", PY_TABLE(py_dict), false, PI_ONE, 0},
    {"list", "list", PY_TABLE(py_list), false, PI_ONE, 0},
    {"lock", "Lock", PY_TABLE(py_lock), false, PI_ONE, 0},
    {"rlock", "RLock", PY_TABLE(py_lock), true, PI_ONE, 0},
    {"queue", "Queue", PY_TABLE(py_queue), false, PI_ONE, 0},
    {"semaphore", "Semaphore", PY_TABLE(py_sem), false, PI_ONE, 0},
    {"boundedsemaphore", "BoundedSemaphore", PY_TABLE(py_sem), false, PI_ONE, 0},
    {"event", "Event", PY_TABLE(py_event), false, PI_ONE, 0},
    /* Condition() holds an RLock: a thread keeps to its connection. */
    {"condition", "Condition", PY_TABLE(py_cond), true, PI_ONE, 0},
    {"barrier", "Barrier", PY_TABLE(py_barrier), false, PI_BARRIER, 0},
    {"value", "Value", PY_TABLE(py_value), false, PI_SPREAD, 0},
    {"array", "Array", PY_TABLE(py_array), false, PI_SPREAD, 0},
    {"namespace", "Namespace", PY_TABLE(py_ns), false, PI_KWDS, MP_EKEY},
};

/* Python's exceptions (module.name, as the decoder reads them: obj.h) and
 * the code the same condition gives against our server. */
static const struct {
    const char *cls;
    int code;
} py_errors[] = {
    {"builtins.KeyError", MP_EKEY},
    {"builtins.IndexError", MP_EKEY},
    {"builtins.StopIteration", MP_EKEY},
    {"builtins.ValueError", MP_EVALUE},
    {"builtins.RuntimeError", MP_EVALUE},
    {"builtins.TypeError", MP_ETYPE},
    {"builtins.AttributeError", MP_ETYPE},
    {"builtins.OverflowError", MP_EVALUE},
    {"queue.Empty", MP_EMPTY},
    {"queue.Full", MP_FULL},
    {"builtins.AssertionError", MP_ESTATE},
    {"threading.BrokenBarrierError", MP_EBROKEN},
    {"multiprocessing.context.AuthenticationError", MP_EAUTH},
};

/* A connection in accept_connection mode: idle in the handle's list, or
 * one thread's own for one proxy (per_thread types: an RLock belongs to
 * the server thread that serves the connection that acquired it, so each
 * thread of ours needs its own, as each Python thread has one per proxy). */
struct mp__mgr_pyconn {
    mp_conn *c;
    struct mp__mgr_pyconn *next;
    pthread_t owner; /* per_thread: the thread, in process pid */
    pid_t pid;
};

/* ---- the request ----------------------------------------------------------------- */

/* A timeout argument (None or a float) as Python's (block, timeout):
 * how many of the two to send - 0 (forever), 1 (False) or 2 (True, t). */
static size_t py_wait_args(const struct marg *t, struct marg out[2])
{
    if (t->t != A_FLOAT)
        return 0;
    if (t->f <= 0) {
        out[0] = ARG_BOOL(0);
        return 1;
    }
    out[0] = ARG_BOOL(1);
    out[1] = *t;
    return 2;
}

/* Our arguments as Python's, into out (room for 4): how many. */
static size_t py_convert_args(int how, const struct marg *a, size_t n, struct marg out[4])
{
    switch (how) {
    case PC_NONE:
    case PC_UNTIMED:
        return 0;
    case PC_WAIT:
        return n >= 1 ? py_wait_args(&a[0], out) : 0;
    case PC_PUT:
        if (n < 2)
            return 0;
        out[0] = a[0];
        return 1 + py_wait_args(&a[1], out + 1);
    case PC_ZERO:
        out[0] = ARG_INT(0);
        return 1;
    case PC_FIRST:
        if (n < 1)
            return 0;
        out[0] = a[0];
        return 1;
    case PC_SORT:
        return 0;
    default:
        for (size_t i = 0; i < n && i < 4; i++)
            out[i] = a[i];
        return n < 4 ? n : 4;
    }
}

/* (ident, methodname, args, kwds) - ident a str (Python's hex id) or
 * None; kwds NULL for {}. */
static int py_encode(mp__pickler *w, int64_t ident, const char *method, const struct marg *a,
                     size_t n, const mp_obj *kwds_in)
{
    mp_obj *kwds = kwds_in ? mp_obj_copy(kwds_in) : mp_obj_dict_new();
    if (!kwds)
        return -ENOMEM;
    mp__pickler_start(w);
    mp__pickler_mark(w);
    if (ident) {
        char id[24];
        int len = snprintf(id, sizeof id, "%" PRIx64, (uint64_t)ident);
        mp__pickler_str(w, id, (size_t)len);
    } else {
        mp__pickler_none(w);
    }
    mp__pickler_str(w, method, strlen(method));
    if (n > 3)
        mp__pickler_mark(w);
    for (size_t i = 0; i < n; i++)
        mp__mgr_encode_arg(w, &a[i]);
    mp__pickler_tuple(w, n);
    mp__pickler_obj(w, kwds);
    mp__pickler_tuple(w, 4);
    mp__pickler_stop(w);
    mp_obj_free(kwds);
    return w->err;
}

/* ---- the reply ------------------------------------------------------------------- */

/* Python's exception as our code, its words recorded (mp_errmsg). */
static int py_error(const mp_obj *exc)
{
    const char *cls = mp_obj_instance_class(exc);
    if (!cls) {
        mp__err(MP_EPROTO, "the manager's error reply holds no exception");
        return MP_EPROTO;
    }
    int code = MP_EPROTO;
    for (size_t i = 0; i < sizeof py_errors / sizeof py_errors[0]; i++)
        if (strcmp(cls, py_errors[i].cls) == 0)
            code = py_errors[i].code;
    const char *name = strrchr(cls, '.');
    name = name ? name + 1 : cls;
    if (strcmp(cls, "queue.Empty") == 0 || strcmp(cls, "queue.Full") == 0)
        name = cls;
    const mp_obj *args = mp_obj_instance_args(exc);
    char *repr = NULL;
    if (args && mp_obj_len(args) >= 1) {
        const mp_obj *a0 = mp_obj_list_get(args, 0);
        const char *s;
        size_t len;
        /* KeyError shows its key's repr, the others their message. */
        if (strcmp(name, "KeyError") != 0 && mp_obj_get_str(a0, &s, &len) == 0)
            mp__err(code, "%s: %.*s", name, (int)(len > 200 ? 200 : len), s);
        else if (mp_obj_repr(a0, &repr) == 0)
            mp__err(code, "%s: %.200s", name, repr);
        else
            mp__err(code, "%s", name);
    } else {
        mp__err(code, "%s", name);
    }
    free(repr);
    return code;
}

/* Read one reply: 0 with *value ('#RETURN'), or a status code. */
static int py_parse(const unsigned char *p, size_t n, mp_obj **value)
{
    mp_obj *reply = NULL;
    int rc = mp__pickle_loads(p, n, &reply);
    if (rc < 0)
        return rc == -ENOMEM ? rc : MP_EPROTO;
    const char *kind;
    size_t klen;
    rc = MP_EPROTO;
    if (mp_obj_type(reply) != MP_TYPE_TUPLE || mp_obj_len(reply) != 2 ||
        mp_obj_get_str(mp_obj_list_get(reply, 0), &kind, &klen) < 0) {
        mp__err(rc, "the manager's reply is not (kind, value)");
    } else if (klen == 7 && memcmp(kind, "#RETURN", 7) == 0) {
        *value = mp__seq_take(reply, 1);
        rc = *value ? 0 : -ENOMEM;
    } else if (klen == 6 && memcmp(kind, "#ERROR", 6) == 0) {
        rc = py_error(mp_obj_list_get(reply, 1));
    } else if (klen == 10 && memcmp(kind, "#TRACEBACK", 10) == 0) {
        const char *text;
        size_t tlen;
        if (mp_obj_get_str(mp_obj_list_get(reply, 1), &text, &tlen) == 0) {
            /* The last line says what was raised. */
            while (tlen && text[tlen - 1] == '\n')
                tlen--;
            size_t start = tlen;
            while (start && text[start - 1] != '\n')
                start--;
            /* KeyError there is the server's own lookup failing: no such
             * object (ident) or typeid. */
            if (tlen - start >= 8 && memcmp(text + start, "KeyError", 8) == 0)
                rc = MP_ENOOBJ;
            mp__err(rc, "manager traceback: %.*s", (int)(tlen - start > 200 ? 200 : tlen - start),
                    text + start);
        }
    } else {
        mp__err(rc, "unexpected manager reply %.*s", (int)(klen > 20 ? 20 : klen), kind);
    }
    mp_obj_free(reply);
    return rc;
}

/* ---- connections ----------------------------------------------------------------- */

/* How long a reply may take: the operation's wait plus the call timeout. */
static double py_bound(const mp_manager *m, double wait)
{
    int64_t tns = __atomic_load_n(&m->timeout_ns, __ATOMIC_RELAXED);
    if (tns < 0 || wait < 0 || isnan(wait))
        return MP_FOREVER;
    return wait + (double)tns / 1e9;
}

static int py_open(mp_manager *m, mp_conn **out)
{
    int64_t tns = __atomic_load_n(&m->timeout_ns, __ATOMIC_RELAXED);
    int rc = mp_client_connect(out, m->address, m->key, m->keylen,
                               tns < 0 ? MP_FOREVER : (double)tns / 1e9);
    if (rc == MP_EAUTH || rc == MP_ETIMEDOUT || rc == -ENOMEM || rc == -EMFILE || rc == -ENFILE)
        return rc;
    return rc < 0 ? MP_ENOSERVER : 0;
}

/* One request and its reply on c, waiting for the reply until bound
 * seconds (py_bound; MP_FOREVER). A failure in transit or a timeout leaves c
 * unusable (*dead): the caller closes it. */
static int py_roundtrip(mp_manager *m, mp_conn *c, int64_t ident, const char *method,
                        const struct marg *a, size_t n, const mp_obj *kwds, double bound,
                        mp_obj **value, bool *dead)
{
    *dead = true;
    mp__pickler w = {0};
    int rc = py_encode(&w, ident, method, a, n, kwds);
    if (rc == 0)
        rc = mp_conn_send_bytes(c, w.p, w.len);
    free(w.p);
    if (rc < 0)
        return rc == -ENOMEM ? rc : MP_ENOSERVER;
    void *buf = NULL;
    size_t len = 0;
    rc = mp_conn_recv_bytes(c, m->max_reply, &buf, &len, bound);
    if (rc < 0) {
        free(buf);
        if (rc == MP_ETIMEDOUT || rc == MP_ETOOLONG || rc == -ENOMEM)
            return rc;
        return MP_ENOSERVER;
    }
    rc = py_parse(buf, len, value);
    free(buf);
    *dead = rc == MP_EPROTO || rc == -ENOMEM;
    return rc;
}

/* A call on the server itself: a connection of its own, as Python's
 * dispatch() does. */
static int py_server_call(mp_manager *m, const char *method, const struct marg *a, size_t n,
                          const mp_obj *kwds, mp_obj **value)
{
    mp_conn *c;
    int rc = py_open(m, &c);
    if (rc < 0)
        return rc;
    mp_obj *v = NULL;
    bool dead;
    rc = py_roundtrip(m, c, 0, method, a, n, kwds, py_bound(m, 0), &v, &dead);
    mp_conn_free(c);
    if (rc == 0 && value)
        *value = v;
    else
        mp_obj_free(v);
    return rc;
}

static int py_open_accepted(mp_manager *m, struct mp__mgr_pyconn **out);

/* An idle accepted connection of this process, or a new one. */
static int py_take(mp_manager *m, struct mp__mgr_pyconn **out)
{
    pthread_mutex_lock(&m->mu);
    struct mp__mgr_pyconn *pc = m->py_idle;
    if (pc)
        m->py_idle = pc->next;
    pthread_mutex_unlock(&m->mu);
    if (pc) {
        MP__ASSERT(pc->pid == getpid()); /* a fork empties the list */
        *out = pc;
        return 0;
    }
    return py_open_accepted(m, out);
}

/* A new connection that sent accept_connection. */
static int py_open_accepted(mp_manager *m, struct mp__mgr_pyconn **out)
{
    struct mp__mgr_pyconn *pc = calloc(1, sizeof *pc);
    if (!pc)
        return -ENOMEM;
    int rc = py_open(m, &pc->c);
    if (rc == 0) {
        const char *name = "mpipc";
        struct marg arg[1] = {ARG_STR(name, strlen(name))};
        mp_obj *v = NULL;
        bool dead;
        rc =
            py_roundtrip(m, pc->c, 0, "accept_connection", arg, 1, NULL, py_bound(m, 0), &v, &dead);
        mp_obj_free(v);
        if (rc < 0)
            mp_conn_free(pc->c);
    }
    if (rc < 0) {
        free(pc);
        return rc;
    }
    pc->owner = pthread_self();
    pc->pid = getpid();
    *out = pc;
    return 0;
}

/* The calling thread's own connection for proxy p (per_thread types), or
 * a new one. Connections inherited from the parent of a fork are dropped
 * here: the child never uses the parent's socket. */
static int py_take_own(struct proxy *p, struct mp__mgr_pyconn **out)
{
    mp_manager *m = p->m;
    pthread_t self = pthread_self();
    pid_t pid = getpid();
    struct mp__mgr_pyconn *found = NULL, *stale = NULL;
    pthread_mutex_lock(&m->mu);
    for (struct mp__mgr_pyconn **pp = &p->pyown; *pp;) {
        struct mp__mgr_pyconn *x = *pp;
        if (x->pid != pid) {
            *pp = x->next;
            x->next = stale;
            stale = x;
            continue;
        }
        if (pthread_equal(x->owner, self)) {
            *pp = x->next; /* in this thread's hands until py_give_own */
            found = x;
            break;
        }
        pp = &x->next;
    }
    pthread_mutex_unlock(&m->mu);
    while (stale) {
        struct mp__mgr_pyconn *next = stale->next;
        mp_conn_free(stale->c);
        free(stale);
        stale = next;
    }
    if (found) {
        *out = found;
        return 0;
    }
    return py_open_accepted(m, out);
}

static void py_give_own(struct proxy *p, struct mp__mgr_pyconn *pc, bool dead)
{
    if (dead) {
        mp_conn_free(pc->c);
        free(pc);
        return;
    }
    pthread_mutex_lock(&p->m->mu);
    pc->next = p->pyown;
    p->pyown = pc;
    pthread_mutex_unlock(&p->m->mu);
}

void mp__mgr_py_proxy_release(struct proxy *p)
{
    struct mp__mgr_pyconn *pc = p->pyown;
    p->pyown = NULL;
    while (pc) {
        struct mp__mgr_pyconn *next = pc->next;
        mp_conn_free(pc->c);
        free(pc);
        pc = next;
    }
}

static void py_give(mp_manager *m, struct mp__mgr_pyconn *pc, bool dead)
{
    if (dead || client_is_closed(m)) {
        mp_conn_free(pc->c);
        free(pc);
        return;
    }
    pthread_mutex_lock(&m->mu);
    pc->next = m->py_idle;
    m->py_idle = pc;
    pthread_mutex_unlock(&m->mu);
}

void mp__mgr_py_close_idle(mp_manager *m, bool locked)
{
    if (!locked)
        pthread_mutex_lock(&m->mu);
    struct mp__mgr_pyconn *pc = m->py_idle;
    m->py_idle = NULL;
    if (!locked)
        pthread_mutex_unlock(&m->mu);
    while (pc) {
        struct mp__mgr_pyconn *next = pc->next;
        mp_conn_free(pc->c);
        free(pc);
        pc = next;
    }
}

int mp__mgr_py_probe(mp_manager *m)
{
    mp_obj *v = NULL;
    int rc = py_server_call(m, "dummy", NULL, 0, NULL, &v);
    bool none = rc == 0 && mp_obj_is_none(v);
    mp_obj_free(v);
    if (rc < 0)
        return rc;
    return none ? 0 : MP_EPROTO;
}

/* ---- translating ------------------------------------------------------------------ */

static const struct py_type *py_type_of(const char *kind)
{
    for (size_t i = 0; i < sizeof py_types / sizeof py_types[0]; i++)
        if (strcmp(py_types[i].kind, kind) == 0)
            return &py_types[i];
    return NULL;
}

/* A Python id ('%x' % id(obj)): 1 to 16 lowercase hex digits, 1 to
 * INT64_MAX. */
bool mp__mgr_py_ident(const mp_obj *o, int64_t *id)
{
    const char *s;
    size_t n;
    if (mp_obj_get_str(o, &s, &n) < 0 || n == 0 || n > 16)
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        int d = s[i] >= '0' && s[i] <= '9'   ? s[i] - '0'
                : s[i] >= 'a' && s[i] <= 'f' ? s[i] - 'a' + 10
                                             : -1;
        if (d < 0)
            return false;
        v = v << 4 | (unsigned)d;
    }
    if (v == 0 || v > INT64_MAX)
        return false;
    *id = (int64_t)v;
    return true;
}

/* A Python id as ours; MP_EPROTO when it is not one. */
static int py_parse_ident(const mp_obj *o, int64_t *id)
{
    if (!mp__mgr_py_ident(o, id))
        return MP_EPROTO;
    return 0;
}

/* create's arguments after the typeid (a[1..3]) and keywords from our
 * initial value, by the type's rule; *n counts a[0]. */
static int py_create_args(const struct py_type *t, const struct marg *initial, struct marg a[4],
                          size_t *n, const mp_obj **kwds)
{
    const mp_obj *o = initial->t == A_OBJ ? initial->o : NULL;
    switch (t->init) {
    case PI_SPREAD:
    case PI_BARRIER: {
        ssize_t len = mp_obj_len(o);
        if (!o || mp_obj_type(o) != MP_TYPE_TUPLE || len != 2)
            return -EINVAL;
        a[(*n)++] = ARG_OBJ(mp_obj_list_get(o, 0));
        if (t->init == PI_BARRIER)
            a[(*n)++] = ARG_NONE; /* action */
        a[(*n)++] = ARG_OBJ(mp_obj_list_get(o, 1));
        return 0;
    }
    case PI_KWDS:
        if (!o || mp_obj_type(o) != MP_TYPE_DICT)
            return -EINVAL;
        *kwds = o;
        return 0;
    default:
        a[(*n)++] = *initial;
        return 0;
    }
}

int mp__mgr_py_create(mp_manager *m, const char *kind, const char *name, bool attach,
                      const struct marg *initial, struct proxy *p)
{
    const struct py_type *t = py_type_of(kind);
    if (!t) {
        mp__err(-ENOTSUP, "CPython's manager: no C proxy for %s yet", kind);
        return -ENOTSUP;
    }
    if (name && !attach) {
        mp__err(-ENOTSUP, "CPython's manager has no named objects: attach to a typeid "
                          "registered on the server instead");
        return -ENOTSUP;
    }
    /* Attaching calls the typeid registered under that name (BaseManager.
     * register(name, callable=...)): Python's way to share one object. */
    const char *typeid = attach ? name : t->typeid;
    struct marg a[4] = {ARG_STR(typeid, strlen(typeid))};
    size_t n = 1;
    const mp_obj *kwds = NULL;
    int rc =
        attach || !initial || initial->t == A_NONE ? 0 : py_create_args(t, initial, a, &n, &kwds);
    if (rc < 0)
        return rc;
    mp_obj *r = NULL;
    rc = py_server_call(m, "create", a, n, kwds, &r);
    if (rc < 0)
        return rc;
    int64_t id = 0;
    if (mp_obj_type(r) != MP_TYPE_TUPLE || mp_obj_len(r) != 2 ||
        py_parse_ident(mp_obj_list_get(r, 0), &id) < 0)
        rc = MP_EPROTO;
    mp_obj_free(r);
    if (rc < 0)
        return rc;
    p->id = id;
    p->pyt = t;
    return 0;
}

int mp__mgr_py_lock_ref(const struct proxy *lock, mp_obj **ref)
{
    /* As BaseProxy.__reduce__ writes an AcquirerProxy (not an AutoProxy:
     * no exposed list). The server that loads it finds its own object
     * (RebuildProxy: manager_owned) and calls it through a proxy of its
     * own, which connects with the server process's authkey. */
    return mp__mgr_proxy_ref(lock, "AcquirerProxy", lock->pyt->typeid, NULL, ref);
}

int mp__mgr_py_adopt(const char *kind, struct proxy *p)
{
    p->pyt = py_type_of(kind);
    if (!p->pyt)
        return mp__err(-ENOTSUP, "CPython's manager: no C proxy for %s yet", kind);
    return 0;
}

int mp__mgr_py_call(mp_manager *m, const char *method, const struct marg *a, size_t n,
                    mp_obj **result)
{
    if (strcmp(method, "incref") == 0 || strcmp(method, "release") == 0) {
        if (n != 1 || a[0].t != A_INT)
            return -EINVAL;
        char id[24];
        int len = snprintf(id, sizeof id, "%" PRIx64, (uint64_t)a[0].i);
        struct marg s[1] = {ARG_STR(id, (size_t)len)};
        return py_server_call(m, method[0] == 'i' ? "incref" : "decref", s, 1, NULL, NULL);
    }
    if (strcmp(method, "shutdown") == 0)
        return py_server_call(m, "shutdown", NULL, 0, NULL, result);
    mp__err(-ENOTSUP, "CPython's manager has no '%s'", method);
    return -ENOTSUP;
}

/* A copy of a dict as the list of its keys, values or (key, value). */
static int py_dict_view(mp_obj *d, int how, mp_obj **out)
{
    if (mp_obj_type(d) != MP_TYPE_DICT)
        return MP_EPROTO;
    mp_obj *l = mp_obj_list_new();
    if (!l)
        return -ENOMEM;
    size_t pos = 0;
    const mp_obj *k, *v;
    while (mp_obj_dict_next(d, &pos, &k, &v) == 1) {
        mp_obj *item;
        if (how == PR_KEYS)
            item = mp_obj_copy(k);
        else if (how == PR_VALUES)
            item = mp_obj_copy(v);
        else {
            item = mp_obj_tuple_new();
            if (item && (mp_obj_tuple_append(item, mp_obj_copy(k)) < 0 ||
                         mp_obj_tuple_append(item, mp_obj_copy(v)) < 0)) {
                mp_obj_free(item);
                item = NULL;
            }
        }
        if (!item || mp_obj_list_append(l, item) < 0) {
            mp_obj_free(item);
            mp_obj_free(l);
            return -ENOMEM;
        }
    }
    *out = l;
    return 0;
}

/* list[start:stop] of a copy, with Python's clamping (stop None: the end). */
static int py_list_slice(mp_obj *l, const struct marg *a, size_t n, mp_obj **out)
{
    ssize_t len = mp_obj_len(l);
    if (mp_obj_type(l) != MP_TYPE_LIST || len < 0 || n < 2 || a[0].t != A_INT)
        return MP_EPROTO;
    int64_t lo = a[0].i, hi = a[1].t == A_INT ? a[1].i : len;
    if (lo < 0)
        lo = lo + len < 0 ? 0 : lo + len;
    if (hi < 0)
        hi = hi + len < 0 ? 0 : hi + len;
    if (lo > len)
        lo = len;
    if (hi > len)
        hi = len;
    mp_obj *r = mp_obj_list_new();
    if (!r)
        return -ENOMEM;
    for (int64_t i = lo; i < hi; i++) {
        mp_obj *item = mp_obj_copy(mp_obj_list_get(l, (ssize_t)i));
        if (!item || mp_obj_list_append(r, item) < 0) {
            mp_obj_free(item);
            mp_obj_free(r);
            return -ENOMEM;
        }
    }
    *out = r;
    return 0;
}

/* The attribute a[0] names in a Namespace's __dict__ (copied to *out);
 * MP_EKEY in Python's words when there is none. */
static int py_ns_lookup(const mp_obj *dict, const struct marg *a, size_t n, mp_obj **out)
{
    if (mp_obj_type(dict) != MP_TYPE_DICT || n < 1 || a[0].t != A_STR)
        return MP_EPROTO;
    size_t pos = 0;
    const mp_obj *k, *v;
    const char *s;
    size_t len;
    while (mp_obj_dict_next(dict, &pos, &k, &v) == 1)
        if (mp_obj_get_str(k, &s, &len) == 0 && len == a[0].n && memcmp(s, a[0].s, len) == 0) {
            *out = mp_obj_copy(v);
            return *out ? 0 : -ENOMEM;
        }
    mp__err(MP_EKEY, "AttributeError: 'Namespace' object has no attribute '%.*s'",
            (int)(a[0].n > 100 ? 100 : a[0].n), (const char *)a[0].s);
    return MP_EKEY;
}

/* Python's reply value as ours, by the row's rule; consumes v. */
static int py_convert_reply(const struct py_meth *pm, const struct marg *a, size_t n, mp_obj *v,
                            mp_obj **result)
{
    int rc = 0;
    mp_obj *out = NULL;
    bool b;
    switch (pm->reply) {
    case PR_NONE:
        break;
    case PR_NSGET:
        rc = py_ns_lookup(v, a, n, &out);
        break;
    case PR_COUNT0:
        out = mp_obj_int(0);
        if (!out)
            rc = -ENOMEM;
        break;
    case PR_ACQUIRE:
        if (mp_obj_get_bool(v, &b) < 0)
            rc = MP_EPROTO;
        else if (!b)
            rc = MP_ETIMEDOUT;
        break;
    case PR_KEYS:
    case PR_VALUES:
    case PR_ITEMS:
        rc = py_dict_view(v, pm->reply, &out);
        break;
    case PR_SLICE:
        rc = py_list_slice(v, a, n, &out);
        break;
    default:
        out = v;
        v = NULL;
        break;
    }
    mp_obj_free(v);
    if (rc == 0 && result)
        *result = out;
    else
        mp_obj_free(out);
    return rc;
}

int mp__mgr_py_call_proxy(struct proxy *p, const char *method, const struct marg *a, size_t n,
                          double wait, mp_obj **result)
{
    mp_manager *m = p->m;
    if (client_is_closed(m))
        return MP_ECLOSED;
    const struct py_type *t = p->pyt;
    const struct py_meth *pm = NULL;
    for (size_t i = 0; t && i < t->nmeth; i++)
        if (strcmp(t->meth[i].ours, method) == 0)
            pm = &t->meth[i];
    if (!pm || pm->reply == PR_ENOTSUP) {
        mp__err(-ENOTSUP, "CPython's manager has no %s for a %s", method, t ? t->typeid : "?");
        return -ENOTSUP;
    }
    if (pm->args == PC_NSDEL) {
        /* del of a missing attribute: MP_EKEY found here (py_ns[]). */
        mp_obj *had = NULL;
        int rc = mp__mgr_py_call_proxy(p, "get", a, n, 0, &had);
        mp_obj_free(had);
        if (rc < 0)
            return rc;
    }
    struct marg pa[4];
    size_t pn = py_convert_args(pm->args, a, n, pa);
    if (pm->args == PC_ATTR) {
        pa[0] = ARG_STR(pm->attr, strlen(pm->attr));
        pn = 1;
    }
    mp_obj *kwds = NULL;
    if (pm->args == PC_SORT) {
        kwds = mp_obj_dict_new();
        mp_obj *k = mp_obj_str("reverse", 7), *b = mp_obj_bool(n >= 1 && a[0].i != 0);
        if (!kwds || !k || !b || mp_obj_dict_set(kwds, k, b) < 0) {
            mp_obj_free(k);
            mp_obj_free(b);
            mp_obj_free(kwds);
            return -ENOMEM;
        }
    }
    struct mp__mgr_pyconn *pc;
    int rc = t->per_thread ? py_take_own(p, &pc) : py_take(m, &pc);
    if (rc < 0) {
        mp_obj_free(kwds);
        return rc;
    }
    mp_obj *v = NULL;
    bool dead;
    /* Python's join never times out: stop at the caller's wait (the
     * connection is then dropped, the server's join left to end alone). */
    double bound = pm->args == PC_UNTIMED && wait >= 0 ? wait : py_bound(m, wait);
    rc = py_roundtrip(m, pc->c, p->id, pm->py, pa, pn, kwds, bound, &v, &dead);
    mp_obj_free(kwds);
    if (t->per_thread)
        py_give_own(p, pc, dead);
    else
        py_give(m, pc, dead);
    if (rc == MP_ETYPE && t->attr_code && strncmp(mp_errmsg(MP_ETYPE), "AttributeError", 14) == 0) {
        /* The object's missing attribute, as our server says it. */
        char words[256];
        snprintf(words, sizeof words, "%s", mp_errmsg(MP_ETYPE));
        mp__err(t->attr_code, "%s", words);
        rc = t->attr_code;
    }
    if (rc < 0) {
        mp_obj_free(v);
        return rc;
    }
    return py_convert_reply(pm, a, n, v, result);
}
