/*
 * mgr_server_py - CPython's manager dialect on our server: requests
 * (ident, methodname, args, kwds) from Python's BaseManager / SyncManager
 * and their proxies, answered ('#RETURN', v), ('#ERROR', exc) or
 * ('#TRACEBACK', text). Static functions: py_.
 *
 * A connection speaks CPython's dialect when its first request is a
 * 4-tuple (ours start with hello, a 3-tuple). Such a request is turned into
 * one of our methods (one table per type below, Python's method name to
 * ours, with how its arguments and its reply change); the method replies as
 * it would to a C client, and mp__mgr_py_reply rewrites that reply frame
 * into Python's before it goes out, also for requests that waited (a lock
 * acquire, a queue get). References are Python's: incref/decref counts per
 * object, held together by one server-wide session, which also holds the
 * plain Locks Python clients take (a Python Lock has no owner); an RLock is
 * held by a session of the connection's own (Python's server thread per
 * proxy connection) and released when that connection closes, where
 * Python's would stay held by a thread that is gone.
 */
#include "codec/objimpl.h"
#include "manager/mgr_server.h"

#include <mpipc/error.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The session that holds every object Python's incref/decref keep. */
#define PY_REF_SESSION INT64_MIN

/* How a request's arguments become ours. */
enum {
    PA_SAME = 0,   /* as they are, no keywords */
    PA_KEY_NONE,   /* (k[, d]) -> (k, d or None): dict.get, setdefault */
    PA_POP,        /* (k[, d]) -> (k), d kept for a missing key */
    PA_UPDATE,     /* ([m], **kw) -> (m or kw) */
    PA_GET,        /* (block=True, timeout=None) -> (timeout) */
    PA_GET_NOWAIT, /* () -> (0) */
    PA_PUT,        /* (item, block=True, timeout=None) -> (item, timeout) */
    PA_PUT_NOWAIT, /* (item) -> (item, 0) */
    PA_JOIN,       /* () -> (None) */
    PA_ACQUIRE,    /* (blocking=True, timeout=None) -> (timeout, 0) */
    PA_RELEASE,    /* () -> (0) */
    PA_FIRST,      /* () -> (0): an iterator's next item */
    PA_WAIT,       /* (timeout=None) -> (timeout): Event, Barrier */
    PA_CWAIT,      /* (timeout=None) -> (timeout, 0): Condition */
    PA_NOTIFY,     /* (n=1) -> (n, 0) */
    PA_SORT,       /* (*, key=None, reverse=False) -> (reverse, key) */
};

/* How our reply becomes Python's (besides the codes every reply maps). */
enum {
    PX_PLAIN = 0,
    PX_KEY,     /* MP_EKEY: KeyError(the key) */
    PX_DEFAULT, /* MP_EKEY: the default given */
    PX_ACQUIRE, /* None: True; MP_ETIMEDOUT: False; MP_EOWNERDEAD: True */
    PX_RELEASE, /* MP_EVALUE: RuntimeError */
    PX_ITER,    /* MP_EKEY (nothing left): StopIteration */
    PX_WAIT,    /* as PX_ACQUIRE, and MP_EVALUE: RuntimeError */
    PX_NOTIFY,  /* a count: None; MP_EVALUE: RuntimeError */
};

struct py_method {
    const char *py, *ours;
    int args, reply;
};

static const struct py_method py_dict[] = {
    {"__getitem__", "get", PA_SAME, PX_KEY},
    {"__setitem__", "set", PA_SAME, PX_PLAIN},
    {"__delitem__", "del", PA_SAME, PX_KEY},
    {"__contains__", "contains", PA_SAME, PX_PLAIN},
    {"__len__", "len", PA_SAME, PX_PLAIN},
    {"get", "get", PA_KEY_NONE, PX_PLAIN},
    {"setdefault", "setdefault", PA_KEY_NONE, PX_PLAIN},
    {"pop", "pop", PA_POP, PX_KEY},
    {"popitem", "popitem", PA_SAME, PX_PLAIN},
    {"keys", "keys", PA_SAME, PX_PLAIN},
    {"values", "values", PA_SAME, PX_PLAIN},
    {"items", "items", PA_SAME, PX_PLAIN},
    {"clear", "clear", PA_SAME, PX_PLAIN},
    {"copy", "copy", PA_SAME, PX_PLAIN},
    {"update", "update", PA_UPDATE, PX_PLAIN},
    {"#GETVALUE", "copy", PA_SAME, PX_PLAIN},
};

static const struct py_method py_list[] = {
    {"__getitem__", "get", PA_SAME, PX_PLAIN}, {"__setitem__", "set", PA_SAME, PX_PLAIN},
    {"__delitem__", "del", PA_SAME, PX_PLAIN}, {"__contains__", "contains", PA_SAME, PX_PLAIN},
    {"__len__", "len", PA_SAME, PX_PLAIN},     {"append", "append", PA_SAME, PX_PLAIN},
    {"extend", "extend", PA_SAME, PX_PLAIN},   {"insert", "insert", PA_SAME, PX_PLAIN},
    {"pop", "pop", PA_SAME, PX_PLAIN},         {"remove", "remove", PA_SAME, PX_PLAIN},
    {"index", "index", PA_SAME, PX_PLAIN},     {"count", "count", PA_SAME, PX_PLAIN},
    {"#GETVALUE", "copy", PA_SAME, PX_PLAIN},  {"sort", "sort", PA_SORT, PX_PLAIN},
    {"reverse", "reverse", PA_SAME, PX_PLAIN}, {"__add__", "add", PA_SAME, PX_PLAIN},
    {"__mul__", "mul", PA_SAME, PX_PLAIN},     {"__rmul__", "mul", PA_SAME, PX_PLAIN},
    {"__imul__", "imul", PA_SAME, PX_PLAIN},
};

/* ValueProxy, ArrayProxy and NamespaceProxy (mgr_type_value.c). */
static const struct py_method py_value[] = {
    {"get", "get", PA_SAME, PX_PLAIN},
    {"set", "set", PA_SAME, PX_PLAIN},
    {"#GETVALUE", "get", PA_SAME, PX_PLAIN},
};

static const struct py_method py_array[] = {
    {"__len__", "len", PA_SAME, PX_PLAIN},
    {"__getitem__", "get", PA_SAME, PX_PLAIN},
    {"__setitem__", "set", PA_SAME, PX_PLAIN},
    {"#GETVALUE", "copy", PA_SAME, PX_PLAIN},
};

static const struct py_method py_ns[] = {
    {"__getattribute__", "get", PA_SAME, PX_PLAIN},
    {"__setattr__", "set", PA_SAME, PX_PLAIN},
    {"__delattr__", "del", PA_SAME, PX_PLAIN},
};

static const struct py_method py_queue[] = {
    {"get", "get", PA_GET, PX_PLAIN},      {"get_nowait", "get", PA_GET_NOWAIT, PX_PLAIN},
    {"put", "put", PA_PUT, PX_PLAIN},      {"put_nowait", "put", PA_PUT_NOWAIT, PX_PLAIN},
    {"qsize", "qsize", PA_SAME, PX_PLAIN}, {"empty", "empty", PA_SAME, PX_PLAIN},
    {"full", "full", PA_SAME, PX_PLAIN},   {"task_done", "task_done", PA_SAME, PX_PLAIN},
    {"join", "join", PA_JOIN, PX_PLAIN},
};

static const struct py_method py_lock[] = {
    {"acquire", "acquire", PA_ACQUIRE, PX_ACQUIRE},
    {"release", "release", PA_RELEASE, PX_RELEASE},
};

/* Semaphore and BoundedSemaphore (AcquirerProxy): release's ValueError. */
static const struct py_method py_sem[] = {
    {"acquire", "acquire", PA_ACQUIRE, PX_ACQUIRE},
    {"release", "release", PA_RELEASE, PX_PLAIN},
};

static const struct py_method py_event[] = {
    {"is_set", "is_set", PA_SAME, PX_PLAIN},
    {"set", "set", PA_SAME, PX_PLAIN},
    {"clear", "clear", PA_SAME, PX_PLAIN},
    {"wait", "wait", PA_WAIT, PX_WAIT},
};

static const struct py_method py_cond[] = {
    {"acquire", "acquire", PA_ACQUIRE, PX_ACQUIRE},
    {"release", "release", PA_RELEASE, PX_RELEASE},
    {"wait", "wait", PA_CWAIT, PX_WAIT},
    {"notify", "notify", PA_NOTIFY, PX_NOTIFY},
    {"notify_all", "notify_all", PA_RELEASE, PX_NOTIFY},
};

/* BarrierProxy; its properties come as __getattribute__(name) (py_call). */
static const struct py_method py_barrier[] = {
    {"wait", "wait", PA_WAIT, PX_PLAIN},           {"abort", "abort", PA_SAME, PX_PLAIN},
    {"reset", "reset", PA_SAME, PX_PLAIN},         {"parties", "parties", PA_SAME, PX_PLAIN},
    {"n_waiting", "n_waiting", PA_SAME, PX_PLAIN}, {"broken", "broken", PA_SAME, PX_PLAIN},
};

/* An Iterator (DictProxy.__iter__'s, method_to_typeid): a list object of
 * the keys as they were, flagged py_iter, whose next item is pop(0). */
static const struct py_method py_iter[] = {
    {"__next__", "pop", PA_FIRST, PX_ITER},
};

/* Python's typeids this server makes, with the kind each is, its method
 * table, and what `create` replies as exposed (Python's proxy classes'
 * _exposed_, or public_methods() of the referent for AutoProxy). */
static const char *const py_dict_exposed[] = {
    "__contains__", "__delitem__", "__getitem__", "__iter__", "__len__", "__setitem__",
    "clear",        "copy",        "get",         "items",    "keys",    "pop",
    "popitem",      "setdefault",  "update",      "values",   NULL};
static const char *const py_list_exposed[] = {
    "__add__",  "__contains__", "__delitem__", "__getitem__", "__len__",  "__mul__", "__reversed__",
    "__rmul__", "__setitem__",  "append",      "count",       "extend",   "index",   "insert",
    "pop",      "remove",       "reverse",     "sort",        "__imul__", NULL};
static const char *const py_queue_exposed[] = {"empty", "full",       "get",   "get_nowait", "join",
                                               "put",   "put_nowait", "qsize", "task_done",  NULL};
static const char *const py_lock_exposed[] = {"acquire", "release", NULL};
static const char *const py_iter_exposed[] = {"__next__", NULL};
static const char *const py_event_exposed[] = {"is_set", "set", "clear", "wait", NULL};
static const char *const py_cond_exposed[] = {"acquire", "release",    "wait",
                                              "notify",  "notify_all", NULL};
static const char *const py_barrier_exposed[] = {"__getattribute__", "abort", "reset", "wait",
                                                 NULL};
static const char *const py_value_exposed[] = {"get", "set", NULL};
static const char *const py_array_exposed[] = {"__len__", "__getitem__", "__setitem__", NULL};
static const char *const py_ns_exposed[] = {"__getattribute__", "__setattr__", "__delattr__", NULL};

#define PY_TABLE(t) t, sizeof t / sizeof t[0]

static const struct py_type {
    const char *typeid;
    int kind;
    const struct py_method *methods;
    size_t n;
    const char *const *exposed;
} py_types[] = {
    {"dict", K_DICT, PY_TABLE(py_dict), py_dict_exposed},
    {"list", K_LIST, PY_TABLE(py_list), py_list_exposed},
    {"Queue", K_QUEUE, PY_TABLE(py_queue), py_queue_exposed},
    {"JoinableQueue", K_QUEUE, PY_TABLE(py_queue), py_queue_exposed},
    {"Lock", K_LOCK, PY_TABLE(py_lock), py_lock_exposed},
    {"RLock", K_RLOCK, PY_TABLE(py_lock), py_lock_exposed},
    {"Semaphore", K_SEMAPHORE, PY_TABLE(py_sem), py_lock_exposed},
    {"BoundedSemaphore", K_BSEMAPHORE, PY_TABLE(py_sem), py_lock_exposed},
    {"Event", K_EVENT, PY_TABLE(py_event), py_event_exposed},
    {"Condition", K_CONDITION, PY_TABLE(py_cond), py_cond_exposed},
    {"Barrier", K_BARRIER, PY_TABLE(py_barrier), py_barrier_exposed},
    {"Value", K_VALUE, PY_TABLE(py_value), py_value_exposed},
    {"Array", K_ARRAY, PY_TABLE(py_array), py_array_exposed},
    {"Namespace", K_NAMESPACE, PY_TABLE(py_ns), py_ns_exposed},
};

static const struct py_type py_iter_type = {"Iterator", K_LIST, PY_TABLE(py_iter), py_iter_exposed};

static const struct py_type *py_type_of(const struct sobj *o)
{
    if (o->py_iter)
        return &py_iter_type;
    for (size_t i = 0; i < sizeof py_types / sizeof py_types[0]; i++)
        if (py_types[i].kind == o->kind)
            return &py_types[i];
    return NULL;
}

/* ---- replies -------------------------------------------------------------- */

/* Write reply (a value, borrowed) as one frame, as it is: Python's form. */
static void py_send(struct sconn *c, const mp_obj *reply)
{
    bool py = c->py;
    c->py = false;
    size_t start = c->out.len;
    if (mp__pickler_reserve(&c->out, 4) == 0)
        c->out.len += 4;
    mp__pickler_start(&c->out);
    mp__pickler_obj(&c->out, reply);
    mp__pickler_stop(&c->out);
    if (mp__mgr_frame_finish(c, start, true) != 0) {
        /* Replaced by our own error reply (too large, no memory): say it
         * in Python's form instead. */
        c->out.len = start;
        c->out.err = 0;
        mp_obj *tb = mp_obj_build("(ss)", "#TRACEBACK", "the reply could not be sent");
        if (mp__pickler_reserve(&c->out, 4) == 0)
            c->out.len += 4;
        mp__pickler_start(&c->out);
        if (tb)
            mp__pickler_obj(&c->out, tb);
        mp__pickler_stop(&c->out);
        mp__mgr_frame_finish(c, start, false);
        mp_obj_free(tb);
    }
    c->py = py;
}

/* ('#TRACEBACK', text): Python's client raises RemoteError(text). */
static void py_traceback(struct sconn *c, const char *fmt, const char *arg)
{
    char text[256];
    snprintf(text, sizeof text, fmt, arg);
    mp_obj *r = mp_obj_build("(ss)", "#TRACEBACK", text);
    if (r)
        py_send(c, r);
    else
        c->broken = true; /* not even an error reply can be made */
    mp_obj_free(r);
}

static void py_return(struct sconn *c, mp_obj *v)
{
    mp_obj *r = v ? mp_obj_build("(sN)", "#RETURN", v) : NULL;
    if (r)
        py_send(c, r);
    else
        py_traceback(c, "%s", "the server is out of memory");
    mp_obj_free(r);
}

/* An instance of cls with args built from fmt (one str or none). */
static mp_obj *py_instance(const char *cls, const char *fmt, const char *text)
{
    mp_obj *args = mp_obj_build(fmt, text);
    mp_obj *e = args ? mp_obj_instance_new(cls, args) : NULL;
    mp_obj_free(args);
    return e;
}

/* Python's exception for one of our error codes, with text (our replies
 * start their texts "ValueError: ..." where they name the class: the
 * message is what follows). NULL when the code has no Python exception:
 * the reply is then a traceback. */
static mp_obj *py_exception(const struct sconn *c, int code, const char *text)
{
    const char *cls;
    switch (code) {
    case MP_EKEY:
        if (c->py_kind == K_LIST)
            return py_instance("builtins.IndexError", "(s)", "list index out of range");
        cls = c->py_kind == K_ARRAY       ? "builtins.IndexError"
              : c->py_kind == K_NAMESPACE ? "builtins.AttributeError"
                                          : "builtins.KeyError";
        break;
    case MP_ETYPE:
        cls = "builtins.TypeError";
        break;
    case MP_EVALUE:
        cls = c->py_x == PX_RELEASE || c->py_x == PX_WAIT || c->py_x == PX_NOTIFY
                  ? "builtins.RuntimeError"
              : strncmp(text, "OverflowError: ", 15) == 0 ? "builtins.OverflowError"
                                                          : "builtins.ValueError";
        break;
    case MP_EBROKEN:
        return py_instance("threading.BrokenBarrierError", "()", NULL);
    case MP_EMPTY:
        return py_instance("queue.Empty", "()", NULL);
    case MP_FULL:
        return py_instance("queue.Full", "()", NULL);
    default:
        return NULL;
    }
    const char *name = strrchr(cls, '.') + 1, *colon = strstr(text, ": ");
    if (colon && (size_t)(colon - text) == strlen(name) && strncmp(text, name, strlen(name)) == 0)
        text = colon + 2;
    return py_instance(cls, "(s)", text);
}

/* ('#ERROR', cls(text)): Python's client raises it. */
static void py_raise(struct sconn *c, const char *cls, const char *text)
{
    mp_obj *e = py_instance(cls, "(s)", text);
    mp_obj *r = e ? mp_obj_build("(sN)", "#ERROR", e) : NULL;
    if (r)
        py_send(c, r);
    else
        py_traceback(c, "%s", "the server is out of memory");
    mp_obj_free(r);
}

/* Our reply, decoded (('#RETURN', v) or ('#ERROR', code, text)), as
 * Python's: a new value, or NULL for no memory. */
static mp_obj *py_translate(struct sconn *c, const mp_obj *ours)
{
    const char *kind = NULL, *text = "";
    int64_t code = 0;
    if (mp_obj_get_str(mp_obj_list_get(ours, 0), &kind, NULL) < 0)
        return mp_obj_build("(ss)", "#TRACEBACK", "malformed reply");
    if (strcmp(kind, "#RETURN") == 0) {
        const mp_obj *v = mp_obj_list_get(ours, 1);
        if (c->py_x == PX_ACQUIRE || c->py_x == PX_WAIT)
            return mp_obj_build("(sN)", "#RETURN", mp_obj_bool(true));
        if (c->py_x == PX_NOTIFY)
            return mp_obj_build("(sN)", "#RETURN", mp_obj_none());
        return mp_obj_build("(sO)", "#RETURN", v);
    }
    (void)mp_obj_get_int(mp_obj_list_get(ours, 1), &code);
    (void)mp_obj_get_str(mp_obj_list_get(ours, 2), &text, NULL);
    if ((c->py_x == PX_ACQUIRE || c->py_x == PX_WAIT) &&
        (code == MP_ETIMEDOUT || code == MP_EOWNERDEAD))
        /* Python's acquire returns False when the time is up; a lock
         * whose holder died is acquired all the same. */
        return mp_obj_build("(sN)", "#RETURN", mp_obj_bool(code == MP_EOWNERDEAD));
    if (code == MP_EKEY && c->py_x == PX_ITER) {
        mp_obj *args = mp_obj_tuple_new();
        mp_obj *e = args ? mp_obj_instance_new("builtins.StopIteration", args) : NULL;
        mp_obj_free(args);
        return e ? mp_obj_build("(sN)", "#ERROR", e) : NULL;
    }
    if (code == MP_EKEY && c->py_saved && c->py_x == PX_DEFAULT)
        return mp_obj_build("(sO)", "#RETURN", c->py_saved);
    mp_obj *e = NULL;
    if (code == MP_EKEY && c->py_saved && c->py_x == PX_KEY) {
        mp_obj *args = mp_obj_build("(O)", c->py_saved);
        e = args ? mp_obj_instance_new("builtins.KeyError", args) : NULL;
        mp_obj_free(args);
    } else {
        e = py_exception(c, (int)code, text);
    }
    if (e)
        return mp_obj_build("(sN)", "#ERROR", e);
    char tb[320];
    snprintf(tb, sizeof tb, "libmpipc manager: %s: %s", mp_errname((int)code), text);
    return mp_obj_build("(ss)", "#TRACEBACK", tb);
}

int mp__mgr_py_reply(struct sconn *c, size_t start, bool limited)
{
    if (c->out.err) {
        c->py = false;
        int rc = mp__mgr_frame_finish(c, start, limited);
        c->py = true;
        return rc;
    }
    mp_obj *ours = NULL, *theirs = NULL;
    int rc = mp__pickle_loads(c->out.p + start + 4, c->out.len - start - 4, &ours);
    if (rc == 0)
        theirs = py_translate(c, ours);
    if (theirs && mp__mgr_nest_any(theirs))
        mp__mgr_nest_reply(c->srv, theirs); /* held until the client's incref */
    mp_obj_free(ours);
    c->out.len = start;
    if (theirs) {
        py_send(c, theirs);
        mp_obj_free(theirs);
    } else {
        py_traceback(c, "%s", "the server is out of memory");
    }
    return 0;
}

/* ---- references ----------------------------------------------------------- */

static struct session *py_ref_session(struct server *s)
{
    struct session *ss = mp__mgr_session_get(s, PY_REF_SESSION);
    if (ss && ss->nconns == 0)
        ss->nconns = 1; /* never ends while the server runs */
    return ss;
}

struct session *mp__mgr_py_lock_owner(struct server *s)
{
    return py_ref_session(s);
}

static int py_incref(struct server *s, struct sobj *o)
{
    if (o->pyrefs == 0) {
        struct session *ss = py_ref_session(s);
        int rc = ss ? mp__mgr_session_hold(ss, o) : -ENOMEM;
        if (rc < 0)
            return rc;
    }
    o->pyrefs++;
    if (o->py_pending > 0) {
        /* The incref of a proxy a reply carried: it takes over the
         * reference the reply held (mgr_server_nest.c). */
        o->py_pending--;
        mp__mgr_obj_decref(s, o);
    }
    return 0;
}

/* Python's decref; the object may be freed. */
static void py_decref(struct server *s, struct sobj *o)
{
    MP__ASSERT(o->pyrefs > 0);
    if (--o->pyrefs == 0)
        (void)mp__mgr_session_drop(s, py_ref_session(s), o);
}

/* The object a Python ident names ('%x' of our id), or NULL. */
static struct sobj *py_find(struct server *s, const mp_obj *ident)
{
    const char *p;
    char *end;
    if (mp_obj_get_str(ident, &p, NULL) < 0 || !*p)
        return NULL;
    long long id = strtoll(p, &end, 16);
    return *end ? NULL : mp__mgr_obj_find(s, (int64_t)id);
}

struct sobj *mp__mgr_py_ref_target(struct server *s, const mp_obj *ref)
{
    const mp_obj *ta = mp_obj_instance_args(mp_obj_list_get(mp_obj_instance_args(ref), 1));
    const char *typeid;
    if (mp_obj_get_str(mp_obj_list_get(ta, 0), &typeid, NULL) < 0)
        return NULL;
    struct sobj *o = py_find(s, mp_obj_list_get(ta, 2));
    if (!o || o->py_iter)
        return o && strcmp(typeid, "Iterator") == 0 ? o : NULL;
    for (size_t i = 0; i < sizeof py_types / sizeof py_types[0]; i++)
        if (py_types[i].kind == o->kind && strcmp(py_types[i].typeid, typeid) == 0)
            return o;
    return NULL; /* another server's, or a type of your own: inert */
}

static mp_obj *py_ident(const struct sobj *o)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%" PRIx64, (uint64_t)o->id);
    return mp_obj_str_cstr(buf);
}

static mp_obj *py_exposed(const struct py_type *t)
{
    mp_obj *e = mp_obj_tuple_new();
    for (size_t i = 0; e && t->exposed[i]; i++) {
        mp_obj *n = mp_obj_str_cstr(t->exposed[i]);
        if (!n || mp_obj_tuple_append(e, n) < 0) {
            mp_obj_free(n);
            mp_obj_free(e);
            e = NULL;
        }
    }
    return e;
}

/* ---- the server's public calls ------------------------------------------- */

/* An argument by position or keyword (borrowed), or dflt. */
static const mp_obj *py_param(const mp_obj *args, const mp_obj *kwds, size_t i, const char *name,
                              const mp_obj *dflt)
{
    if ((ssize_t)i < mp_obj_len(args))
        return mp_obj_list_get(args, (ssize_t)i);
    mp_obj *key = mp_obj_str_cstr(name);
    const mp_obj *v = key ? mp_obj_dict_get(kwds, key) : NULL;
    mp_obj_free(key);
    return v ? v : dflt;
}

/* The Lock or RLock of this server a Condition(lock) names by its proxy,
 * NULL for None or anything else (*bad then set). */
static struct sobj *py_cond_lock(struct server *s, const mp_obj *args, const mp_obj *kwds,
                                 bool *bad)
{
    const mp_obj *lock = py_param(args, kwds, 1, "lock", mp_obj_none());
    struct sobj *lo = mp_obj_type(lock) == MP_TYPE_INSTANCE ? mp__mgr_py_ref_target(s, lock) : NULL;
    *bad = !mp_obj_is_none(lock) && (!lo || (lo->kind != K_LOCK && lo->kind != K_RLOCK));
    return *bad ? NULL : lo;
}

/* The initial value of our create for Python's Semaphore(value=1),
 * BoundedSemaphore(value=1), Event(), Condition(lock=None) and
 * Barrier(parties, action=None, timeout=None): in *init, borrowed or made
 * (then also in *made). A Condition's lock is a Lock or RLock proxy of this
 * server (our create takes its id). False for what we cannot make: another
 * lock, a Barrier with an action (the server runs no client code). */
static bool py_sync_init(struct server *s, const mp_obj *args, const mp_obj *kwds, int kind,
                         const mp_obj **init, mp_obj **made)
{
    const mp_obj *none = mp_obj_none();
    switch (kind) {
    case K_SEMAPHORE:
    case K_BSEMAPHORE:
        *init = py_param(args, kwds, 1, "value", NULL);
        return true;
    case K_CONDITION: {
        bool bad;
        struct sobj *lo = py_cond_lock(s, args, kwds, &bad);
        *init = NULL;
        if (!lo)
            return !bad;
        *made = mp_obj_int(lo->id);
        *init = *made;
        return *made != NULL;
    }
    case K_BARRIER: {
        const mp_obj *parties = py_param(args, kwds, 1, "parties", NULL);
        const mp_obj *timeout = py_param(args, kwds, 3, "timeout", none);
        if (!parties || !mp_obj_is_none(py_param(args, kwds, 2, "action", none)))
            return false;
        *made = mp_obj_build("(OO)", parties, timeout);
        *init = *made;
        return *made != NULL;
    }
    default:
        *init = NULL;
        return true;
    }
}

/* Store copies of k and v in d: 0, or a negative code (nothing kept). */
static int py_dict_put(mp_obj *d, const mp_obj *k, const mp_obj *v)
{
    mp_obj *kc = mp_obj_copy(k), *vc = mp_obj_copy(v);
    int rc = kc && vc ? mp_obj_dict_set(d, kc, vc) : -ENOMEM;
    if (rc < 0) {
        mp_obj_free(kc);
        mp_obj_free(vc);
    }
    return rc;
}

/* dict(init, **kwds) as Python's dict() makes it, init a mapping or a
 * sequence of pairs (NULL: none): a new dict, or NULL for arguments
 * dict() refuses (or no memory). */
static mp_obj *py_dict_init(const mp_obj *init, const mp_obj *kwds)
{
    int t = init ? mp_obj_type(init) : MP_TYPE_NONE;
    mp_obj *d = t == MP_TYPE_DICT ? mp_obj_copy(init) : mp_obj_dict_new();
    int rc = d ? 0 : -ENOMEM;
    if (t != MP_TYPE_DICT && t != MP_TYPE_NONE && t != MP_TYPE_LIST && t != MP_TYPE_TUPLE)
        rc = MP_ETYPE;
    for (ssize_t i = 0; rc == 0 && t != MP_TYPE_DICT && t != MP_TYPE_NONE && i < mp_obj_len(init);
         i++) {
        const mp_obj *pair = mp_obj_list_get(init, i);
        int pt = mp_obj_type(pair);
        if ((pt != MP_TYPE_LIST && pt != MP_TYPE_TUPLE) || mp_obj_len(pair) != 2)
            rc = MP_EVALUE; /* dictionary update sequence element has length != 2 */
        else
            rc = py_dict_put(d, mp_obj_list_get(pair, 0), mp_obj_list_get(pair, 1));
    }
    size_t pos = 0;
    const mp_obj *k, *v;
    while (rc == 0 && mp_obj_dict_next(kwds, &pos, &k, &v) == 1)
        rc = py_dict_put(d, k, v);
    if (rc < 0) {
        mp_obj_free(d);
        return NULL;
    }
    return d;
}

/* list(r) of a range instance r, as a new list; NULL for another instance,
 * or a list longer than a request could carry as a list (at least 2 bytes
 * an item: nothing from the wire sizes an allocation beyond that). */
static mp_obj *py_range_list(const struct server *s, const mp_obj *r)
{
    const char *cls = mp_obj_instance_class(r);
    const mp_obj *a = mp_obj_instance_args(r);
    int64_t start, stop, step;
    if (!cls || strcmp(cls, "builtins.range") != 0 ||
        mp_obj_parse(a, "LLL", &start, &stop, &step) < 0 || step == 0)
        return NULL;
    /* The length, as Python's range computes it, without overflow. */
    uint64_t n = 0;
    if (step > 0 && start < stop)
        n = ((uint64_t)stop - (uint64_t)start - 1) / (uint64_t)step + 1;
    else if (step < 0 && start > stop)
        n = ((uint64_t)start - (uint64_t)stop - 1) / (0 - (uint64_t)step) + 1;
    if (n > s->max_request / 2)
        return NULL;
    mp_obj *l = mp_obj_list_new();
    for (uint64_t i = 0; l && i < n; i++) {
        mp_obj *v = mp_obj_int((int64_t)((uint64_t)start + i * (uint64_t)step));
        if (!v || mp_obj_list_append(l, v) < 0) {
            mp_obj_free(v);
            mp_obj_free(l);
            l = NULL;
        }
    }
    return l;
}

/* Our create's initial value for Python's create(typeid, *args, **kwds),
 * in *made when it is new (the caller frees it); false for arguments the
 * referent's constructor would refuse. */
static bool py_initial(struct server *s, const struct py_type *t, const mp_obj *args,
                       const mp_obj *kwds, const mp_obj **init, mp_obj **made)
{
    *init = mp_obj_len(args) > 1 ? mp_obj_list_get(args, 1) : NULL;
    *made = NULL;
    switch (t->kind) {
    case K_DICT:
        /* dict(m), dict(pairs), dict(**kw) and dict(m, **kw). */
        if (*init && mp_obj_type(*init) == MP_TYPE_DICT && mp_obj_len(kwds) == 0)
            return true;
        if (!*init && mp_obj_len(kwds) == 0)
            return true;
        *made = py_dict_init(*init, kwds);
        break;
    case K_LIST:
        if (!*init || mp_obj_type(*init) != MP_TYPE_INSTANCE)
            return true;
        *made = py_range_list(s, *init); /* list(range(...)) */
        break;
    case K_QUEUE:
        if (!*init)
            *init = py_param(args, kwds, 1, "maxsize", NULL);
        return true;
    case K_VALUE:
    case K_ARRAY: {
        /* Value(typecode, value, lock=True), Array(typecode, seq, lock=True). */
        const mp_obj *tc = py_param(args, kwds, 1, "typecode", NULL);
        const mp_obj *v = py_param(args, kwds, 2, t->kind == K_VALUE ? "value" : "sequence", NULL);
        if (!tc || !v)
            return false;
        *made = mp_obj_build("(OO)", tc, v);
        break;
    }
    case K_SEMAPHORE:
    case K_BSEMAPHORE:
    case K_EVENT:
    case K_CONDITION:
    case K_BARRIER:
        return py_sync_init(s, args, kwds, t->kind, init, made);
    case K_NAMESPACE:
        if (mp_obj_len(args) > 1)
            return false; /* Namespace(**kwds) only */
        *made = mp_obj_copy(kwds);
        break;
    default:
        return true;
    }
    *init = *made;
    return *made != NULL;
}

/* create(typeid, *args) of a type of your own (mgr_type_user.c): no
 * keywords, since the constructor takes a tuple. */
static void py_create_user(struct server *s, struct sconn *c, const struct mp_manager_type *ut,
                           const mp_obj *args, const mp_obj *kwds)
{
    struct sobj *o = mp__mgr_obj_new(s, K_USER);
    int rc = !o ? -ENOMEM : mp_obj_len(kwds) > 0 ? MP_ETYPE : mp__mgr_user_make(o, ut, args, 1);
    if (rc == 0)
        rc = py_incref(s, o);
    if (rc < 0) {
        if (o)
            mp__mgr_obj_destroy(s, o);
        py_traceback(c, "%s", mp_errname(rc)); /* Python's create fails with a traceback */
        return;
    }
    py_return(c, mp_obj_build("(NN)", py_ident(o), mp__mgr_user_exposed(ut)));
}

/* create(typeid, *args, **kwds): Python's server makes the referent and
 * increfs it once; the reply is (ident, exposed). */
static void py_create(struct server *s, struct sconn *c, const mp_obj *args, const mp_obj *kwds)
{
    const char *typeid;
    const struct py_type *t = NULL;
    if (mp_obj_get_str(mp_obj_list_get(args, 0), &typeid, NULL) == 0)
        for (size_t i = 0; i < sizeof py_types / sizeof py_types[0]; i++)
            if (strcmp(py_types[i].typeid, typeid) == 0)
                t = &py_types[i];
    const struct mp_manager_type *ut =
        !t && mp_obj_len(args) > 0 && mp_obj_type(mp_obj_list_get(args, 0)) == MP_TYPE_STR
            ? mp__mgr_user_type(s, typeid, strlen(typeid))
            : NULL;
    if (ut) {
        py_create_user(s, c, ut, args, kwds);
        return;
    }
    if (!t) {
        py_traceback(c, "KeyError: %s (libmpipc's manager does not serve this typeid yet)",
                     mp_obj_len(args) > 0 && mp_obj_type(mp_obj_list_get(args, 0)) == MP_TYPE_STR
                         ? typeid
                         : "?");
        return;
    }
    /* Our create's (kind, name, initial): dict(m, **kw), list(seq),
     * Queue(maxsize), Value(tc, v), Array(tc, seq), Namespace(**kw). */
    const mp_obj *init;
    mp_obj *made;
    if (!py_initial(s, t, args, kwds, &init, &made)) {
        py_traceback(c, "TypeError: cannot make %s of these arguments", typeid);
        return;
    }
    mp_obj *ours = mp_obj_build("(sNO)", mp__mgr_types[t->kind]->name, mp_obj_none(),
                                init ? init : mp_obj_none());
    mp_obj_free(made);
    struct sobj *o = ours ? mp__mgr_obj_new(s, t->kind) : NULL;
    if (!o) {
        mp_obj_free(ours);
        py_traceback(c, "%s", "the server is out of memory");
        return;
    }
    const struct req r = {s, c, o, ours};
    int rc = mp__mgr_types[t->kind]->init ? mp__mgr_types[t->kind]->init(&r, o) : 0;
    bool bad;
    struct sobj *lo = t->kind == K_CONDITION ? py_cond_lock(s, args, kwds, &bad) : NULL;
    if (rc == 0 && lo)
        rc = mp__mgr_nest_hold(o, lo); /* the Condition keeps its Lock */
    if (rc == 0)
        rc = py_incref(s, o);
    mp_obj_free(ours);
    if (rc == 0 && (mp__mgr_nest_any(args) || mp__mgr_nest_any(kwds)))
        mp__mgr_nest_refresh(s, o); /* list([proxy, ...]): its proxies' objects stay */
    if (rc < 0) {
        mp__mgr_obj_destroy(s, o);
        py_traceback(c, "TypeError: cannot make %s of these arguments", typeid);
        return;
    }
    mp_obj *reply = mp_obj_build("(NN)", py_ident(o), py_exposed(t));
    py_return(c, reply);
}

/* incref(ident) / decref(ident). */
static void py_ref(struct server *s, struct sconn *c, const mp_obj *args, bool inc)
{
    struct sobj *o = mp_obj_len(args) == 1 ? py_find(s, mp_obj_list_get(args, 0)) : NULL;
    if (!o || (!inc && o->pyrefs <= 0)) {
        py_traceback(c, "KeyError: %s", "no such object");
        return;
    }
    if (inc ? py_incref(s, o) < 0 : (py_decref(s, o), false)) {
        py_traceback(c, "%s", "the server is out of memory");
        return;
    }
    py_return(c, mp_obj_none());
}

static void py_public(struct server *s, struct sconn *c, const char *meth, const mp_obj *args,
                      const mp_obj *kwds)
{
    if (strcmp(meth, "dummy") == 0) {
        py_return(c, mp_obj_none());
    } else if (strcmp(meth, "accept_connection") == 0) {
        /* From now on the connection serves a proxy's calls. */
        py_return(c, mp_obj_none());
    } else if (strcmp(meth, "create") == 0) {
        py_create(s, c, args, kwds);
    } else if (strcmp(meth, "incref") == 0 || strcmp(meth, "decref") == 0) {
        py_ref(s, c, args, meth[0] == 'i');
    } else if (strcmp(meth, "get_methods") == 0) {
        const mp_obj *tok = mp_obj_list_get(args, 0);
        const mp_obj *ta = mp_obj_instance_args(tok);
        struct sobj *o = ta ? py_find(s, mp_obj_list_get(ta, 2)) : NULL;
        if (o && o->kind == K_USER)
            py_return(c, mp__mgr_user_exposed(o->utype));
        else if (!o || !py_type_of(o))
            py_traceback(c, "KeyError: %s", "no such object");
        else
            py_return(c, py_exposed(py_type_of(o)));
    } else if (strcmp(meth, "number_of_objects") == 0) {
        py_return(c, mp_obj_int((int64_t)s->nobjs));
    } else if (strcmp(meth, "debug_info") == 0) {
        char buf[96];
        snprintf(buf, sizeof buf, "libmpipc manager: %zu objects, %zu sessions", s->nobjs,
                 s->nsessions);
        py_return(c, mp_obj_str_cstr(buf));
    } else if (strcmp(meth, "shutdown") == 0) {
        py_return(c, mp_obj_none());
        s->stop = true;
    } else {
        py_traceback(c, "AssertionError: '%s' unrecognized", meth);
    }
}

/* ---- a proxy's calls ------------------------------------------------------- */

/* A Python timeout from (block, timeout) as ours (a new value): None for
 * forever, 0 for no wait; NULL with *bad set for a negative timeout. */
static mp_obj *py_timeout(const mp_obj *block, const mp_obj *timeout, bool *bad)
{
    bool b = true;
    double t;
    if (block && mp_obj_get_bool(block, &b) < 0) {
        int64_t i;
        b = mp_obj_get_int(block, &i) < 0 || i != 0;
    }
    if (!b)
        return mp_obj_float(0);
    if (!timeout || mp_obj_is_none(timeout))
        return mp_obj_none();
    if (mp__mgr_arg_timeout(timeout, &t) < 0 || (t < 0 && t != -1)) {
        *bad = true;
        return NULL;
    }
    return t == -1 ? mp_obj_none() : mp_obj_float(t); /* threading's -1: forever */
}

/* Python's arguments as ours (a new tuple), or NULL with *bad set for
 * arguments Python's method would refuse. */
static mp_obj *py_args(struct sconn *c, const struct py_method *m, const mp_obj *args,
                       const mp_obj *kwds, bool *bad)
{
    ssize_t n = mp_obj_len(args);
    const mp_obj *a0 = n > 0 ? mp_obj_list_get(args, 0) : NULL;
    mp_obj *t;
    switch (m->args) {
    case PA_KEY_NONE:
        if (n < 1 || n > 2)
            break;
        return mp_obj_build("(OO)", a0, n == 2 ? mp_obj_list_get(args, 1) : mp_obj_none());
    case PA_POP:
        if (n < 1 || n > 2)
            break;
        c->py_saved = mp_obj_copy(n == 2 ? mp_obj_list_get(args, 1) : a0);
        if (n == 2)
            c->py_x = PX_DEFAULT;
        return mp_obj_build("(O)", a0);
    case PA_UPDATE:
        return mp_obj_build("(O)", a0 ? a0 : kwds);
    case PA_GET:
        t = py_timeout(py_param(args, kwds, 0, "block", NULL),
                       py_param(args, kwds, 1, "timeout", NULL), bad);
        return t ? mp_obj_build("(N)", t) : NULL;
    case PA_GET_NOWAIT:
        return mp_obj_build("(d)", 0.0);
    case PA_PUT: {
        const mp_obj *item = py_param(args, kwds, 0, "item", NULL);
        if (!item)
            break;
        t = py_timeout(py_param(args, kwds, 1, "block", NULL),
                       py_param(args, kwds, 2, "timeout", NULL), bad);
        return t ? mp_obj_build("(ON)", item, t) : NULL;
    }
    case PA_PUT_NOWAIT:
        return n == 1 ? mp_obj_build("(Od)", a0, 0.0) : NULL;
    case PA_JOIN:
        return mp_obj_build("(N)", mp_obj_none());
    case PA_ACQUIRE:
        t = py_timeout(py_param(args, kwds, 0, "blocking", NULL),
                       py_param(args, kwds, 1, "timeout", NULL), bad);
        return t ? mp_obj_build("(Ni)", t, 0) : NULL;
    case PA_SORT: {
        /* list.sort(*, key=None, reverse=False): keywords only. */
        if (n != 0)
            break;
        const mp_obj *key = py_param(args, kwds, 0, "key", NULL);
        const mp_obj *rev = py_param(args, kwds, 0, "reverse", NULL);
        if (mp_obj_len(kwds) != (key != NULL) + (rev != NULL))
            break;
        return mp_obj_build("(OO)", rev ? rev : mp_obj_bool(false), key ? key : mp_obj_none());
    }
    case PA_RELEASE:
    case PA_FIRST:
        return n == 0 ? mp_obj_build("(i)", 0) : NULL;
    case PA_WAIT:
    case PA_CWAIT: {
        const mp_obj *to = py_param(args, kwds, 0, "timeout", NULL);
        double d;
        if (to && !mp_obj_is_none(to) && mp__mgr_arg_timeout(to, &d) == 0 && d < 0)
            t = mp_obj_float(0); /* threading's waits: a negative timeout does not wait */
        else
            t = py_timeout(NULL, to, bad);
        if (!t)
            return NULL;
        return m->args == PA_WAIT ? mp_obj_build("(N)", t) : mp_obj_build("(Ni)", t, 0);
    }
    case PA_NOTIFY: {
        const mp_obj *nn = py_param(args, kwds, 0, "n", NULL);
        return nn ? mp_obj_build("(Oi)", nn, 0) : mp_obj_build("(ii)", 1, 0);
    }
    default:
        if (mp_obj_len(kwds) > 0)
            break;
        if (m->reply == PX_KEY && a0)
            c->py_saved = mp_obj_copy(a0);
        return mp_obj_copy(args);
    }
    *bad = true;
    return NULL;
}

/* DictProxy.__iter__: Python's server makes an Iterator of iter(d) and
 * replies ('#PROXY', (exposed, token)); its client fills in the token's
 * address and takes the reference create gave. Here the iterator holds
 * the keys as they are now, and fails as Python's once d changed size. */
static void py_iterate(struct server *s, struct sconn *c, struct sobj *d)
{
    mp_obj *keys = mp_obj_list_new();
    size_t pos = 0;
    const mp_obj *k, *v;
    while (keys && mp_obj_dict_next(d->value, &pos, &k, &v) == 1) {
        mp_obj *kc = mp_obj_copy(k);
        if (!kc || mp_obj_list_append(keys, kc) < 0) {
            mp_obj_free(kc);
            mp_obj_free(keys);
            keys = NULL;
        }
    }
    struct sobj *it = keys ? mp__mgr_obj_new(s, K_LIST) : NULL;
    if (!it || py_incref(s, it) < 0) {
        if (it)
            mp__mgr_obj_destroy(s, it);
        mp_obj_free(keys);
        py_traceback(c, "%s", "the server is out of memory");
        return;
    }
    it->value = keys;
    it->py_iter = true;
    it->py_src = d->id;
    it->py_src_len = mp_obj_len(d->value);
    mp_obj *targs = mp_obj_build("(sNN)", "Iterator", mp_obj_none(), py_ident(it));
    mp_obj *tok = targs ? mp_obj_instance_new("multiprocessing.managers.Token", targs) : NULL;
    mp_obj_free(targs);
    mp_obj *r = tok ? mp_obj_build("(s(NN))", "#PROXY", py_exposed(&py_iter_type), tok) : NULL;
    if (r)
        py_send(c, r);
    else
        py_traceback(c, "%s", "the server is out of memory");
    mp_obj_free(r);
}

/* A method of a type of your own: Python's AttributeError for a name the
 * type does not expose, TypeError for keywords (mgr_type_user.c words the
 * rest). */
static void py_call_user(struct server *s, struct sconn *c, struct sobj *o, const char *meth,
                         const mp_obj *args, const mp_obj *kwds)
{
    c->py_kind = K_USER;
    if (!mp__mgr_user_has(o, meth)) {
        py_raise(c, "builtins.AttributeError", "method is not in this type's exposed methods");
        return;
    }
    if (mp_obj_len(kwds) > 0) {
        py_raise(c, "builtins.TypeError", "keyword arguments not accepted");
        return;
    }
    if (mp_obj_len(args) > 0) { /* MP_EKEY: KeyError(the first argument) */
        c->py_x = PX_KEY;
        c->py_saved = mp_obj_copy(mp_obj_list_get(args, 0));
    }
    const struct req r = {s, c, o, (mp_obj *)args};
    mp__mgr_user_call(&r, meth, strlen(meth));
}

/* Python's dict iterator raises RuntimeError once the dict changed size
 * (while the dict lives: ours may end before its iterator). True when it
 * did and that error went out. */
static bool py_iter_changed(struct server *s, struct sconn *c, const struct sobj *it)
{
    const struct sobj *d = mp__mgr_obj_find(s, it->py_src);
    if (!d || d->kind != K_DICT || mp_obj_len(d->value) == it->py_src_len)
        return false;
    mp_obj *e =
        py_instance("builtins.RuntimeError", "(s)", "dictionary changed size during iteration");
    mp_obj *r = e ? mp_obj_build("(sN)", "#ERROR", e) : NULL;
    if (r)
        py_send(c, r);
    else
        py_traceback(c, "%s", "the server is out of memory");
    mp_obj_free(r);
    return true;
}

static void py_call(struct server *s, struct sconn *c, const mp_obj *ident, const char *meth,
                    const mp_obj *args, const mp_obj *kwds)
{
    struct sobj *o = py_find(s, ident);
    if (o && o->kind == K_USER) {
        py_call_user(s, c, o, meth, args, kwds);
        return;
    }
    const struct py_type *t = o ? py_type_of(o) : NULL;
    if (!t) {
        py_traceback(c, "KeyError: %s", "no such object");
        return;
    }
    if (o->kind == K_DICT && strcmp(meth, "__iter__") == 0) {
        py_iterate(s, c, o);
        return;
    }
    if (o->py_iter && strcmp(meth, "__next__") == 0 && py_iter_changed(s, c, o))
        return;
    const mp_obj *attr = mp_obj_len(args) == 1 ? mp_obj_list_get(args, 0) : NULL;
    if (o->kind == K_BARRIER && strcmp(meth, "__getattribute__") == 0 && attr &&
        mp_obj_get_str(attr, &meth, NULL) == 0) {
        /* BarrierProxy's parties, n_waiting, broken: methods here */
        if (strcmp(meth, "wait") == 0 || strcmp(meth, "abort") == 0 || strcmp(meth, "reset") == 0)
            meth = "?"; /* a bound method is no value */
        args = mp_obj_tuple_new();
        if (!args) {
            py_traceback(c, "%s", "the server is out of memory");
            return;
        }
        py_call(s, c, ident, meth, args, kwds);
        mp_obj_free((mp_obj *)args);
        return;
    }
    const struct py_method *m = NULL;
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->methods[i].py, meth) == 0)
            m = &t->methods[i];
    if (!m && (strcmp(meth, "__str__") == 0 || strcmp(meth, "__repr__") == 0)) {
        char *text = NULL; /* Python's fallback: str(obj), repr(obj) */
        if (mp__mgr_py_repr(o, &text) == 0) {
            py_return(c, mp_obj_str_cstr(text));
            free(text);
            return;
        }
    }
    if (!m) {
        py_traceback(c, "AttributeError: method '%s' is not served by libmpipc's manager", meth);
        return;
    }
    c->py_x = m->reply;
    c->py_kind = o->kind;
    bool bad = false;
    mp_obj *ours = py_args(c, m, args, kwds, &bad);
    const struct stype *st = mp__mgr_types[o->kind];
    const struct method *md = NULL;
    for (size_t i = 0; i < st->nmethods; i++)
        if (strcmp(st->methods[i].name, m->ours) == 0)
            md = &st->methods[i];
    MP__ASSERT(md != NULL); /* every table names our methods */
    ssize_t na = ours ? mp_obj_len(ours) : -1;
    if (!ours || !md || na < md->min_args || na > md->max_args) {
        if (bad || ours)
            py_raise(c, "builtins.TypeError", "wrong arguments for this method");
        else
            py_traceback(c, "%s", "the server is out of memory");
        mp_obj_free(ours);
        return;
    }
    const struct req r = {s, c, o, ours};
    bool nest = o->nest_seen || mp__mgr_nest_any(args) || mp__mgr_nest_any(kwds);
    int rc = md->fn(&r);
    if (rc < 0)
        mp__mgr_reply_failed(&r, rc);
    mp_obj_free(ours);
    if (nest) /* last: o may go (mgr_server_nest.c) */
        mp__mgr_nest_refresh(s, o);
}

/* ---- entry ------------------------------------------------------------------ */

bool mp__mgr_py_request_looks(const mp_obj *req)
{
    return mp_obj_type(req) == MP_TYPE_TUPLE && mp_obj_len(req) == 4;
}

void mp__mgr_py_request(struct server *s, struct sconn *c, mp_obj *req)
{
    if (!c->py) {
        /* The first request: the connection speaks CPython's dialect for
         * good, under a session of its own (the owner of its locks). */
        struct session *ss = mp__mgr_session_get(s, PY_REF_SESSION + 1 + c->id);
        if (!ss) {
            c->broken = true;
            return;
        }
        ss->nconns++;
        c->sess = ss;
        c->max_reply = s->max_request;
        c->py = true;
    }
    mp_obj_free(c->py_saved);
    c->py_saved = NULL;
    c->py_x = PX_PLAIN;
    c->py_kind = K_MANAGER;
    const mp_obj *ident = mp_obj_list_get(req, 0), *args = mp_obj_list_get(req, 2),
                 *kwds = mp_obj_list_get(req, 3);
    const char *meth;
    if (!mp__mgr_py_request_looks(req) ||
        mp_obj_get_str(mp_obj_list_get(req, 1), &meth, NULL) < 0 ||
        mp_obj_type(args) != MP_TYPE_TUPLE || mp_obj_type(kwds) != MP_TYPE_DICT ||
        (!mp_obj_is_none(ident) && mp_obj_type(ident) != MP_TYPE_STR)) {
        py_traceback(c, "%s", "ValueError: a request is (ident, methodname, args, kwds)");
        return;
    }
    if (mp_obj_is_none(ident))
        py_public(s, c, meth, args, kwds);
    else
        py_call(s, c, ident, meth, args, kwds);
}
