/*
 * mgr_server_py - CPython's manager dialect on our server: requests
 * (ident, methodname, args, kwds) from Python's BaseManager / SyncManager
 * and their proxies, answered ('#RETURN', v), ('#ERROR', exc) or
 * ('#TRACEBACK', text). Static functions: py_. This file holds the
 * types' method tables, Python's references and the entry; the public
 * calls are mgr_server_py_public.c, a proxy's calls mgr_server_py_call.c,
 * the replies mgr_server_py_reply.c.
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
#include "manager/mgr_server_py.h"

#include <mpipc/error.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* BarrierProxy; its properties come as __getattribute__(name) (mp__mgr_pys_call). */
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

static const struct py_type py_types[] = {
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

const struct py_type mp__mgr_pys_iter_type = {"Iterator", K_LIST, PY_TABLE(py_iter),
                                              py_iter_exposed};

const struct py_type *mp__mgr_pys_type_of(const struct sobj *o)
{
    if (o->py_iter)
        return &mp__mgr_pys_iter_type;
    for (size_t i = 0; i < sizeof py_types / sizeof py_types[0]; i++)
        if (py_types[i].kind == o->kind)
            return &py_types[i];
    return NULL;
}

const struct py_type *mp__mgr_pys_type_named(const char *typeid)
{
    const struct py_type *t = NULL;
    for (size_t i = 0; i < sizeof py_types / sizeof py_types[0]; i++)
        if (strcmp(py_types[i].typeid, typeid) == 0)
            t = &py_types[i];
    return t;
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

int mp__mgr_pys_incref(struct server *s, struct sobj *o)
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
void mp__mgr_pys_decref(struct server *s, struct sobj *o)
{
    MP__ASSERT(o->pyrefs > 0);
    if (--o->pyrefs == 0)
        (void)mp__mgr_session_drop(s, py_ref_session(s), o);
}

/* The object a Python ident names ('%x' of our id), or NULL. */
struct sobj *mp__mgr_pys_find(struct server *s, const mp_obj *ident)
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
    struct sobj *o = mp__mgr_pys_find(s, mp_obj_list_get(ta, 2));
    if (!o || o->py_iter)
        return o && strcmp(typeid, "Iterator") == 0 ? o : NULL;
    for (size_t i = 0; i < sizeof py_types / sizeof py_types[0]; i++)
        if (py_types[i].kind == o->kind && strcmp(py_types[i].typeid, typeid) == 0)
            return o;
    return NULL; /* another server's, or a type of your own: inert */
}

mp_obj *mp__mgr_pys_ident(const struct sobj *o)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%" PRIx64, (uint64_t)o->id);
    return mp_obj_str_cstr(buf);
}

mp_obj *mp__mgr_pys_exposed(const struct py_type *t)
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
        mp__mgr_pys_traceback(c, "%s", "ValueError: a request is (ident, methodname, args, kwds)");
        return;
    }
    if (mp_obj_is_none(ident))
        mp__mgr_pys_public(s, c, meth, args, kwds);
    else
        mp__mgr_pys_call(s, c, ident, meth, args, kwds);
}
