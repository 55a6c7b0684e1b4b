/*
 * mgr_server_py.h - what the files of CPython's manager dialect share
 * (mgr_server_py.c: tables, references, entry; _public.c, _call.c,
 * _reply.c): how arguments and replies change, the types, and the helpers
 * that cross. Private to src/manager/.
 */
#ifndef MPIPC_MANAGER_MGR_SERVER_PY_H
#define MPIPC_MANAGER_MGR_SERVER_PY_H

#include "codec/objimpl.h"
#include "manager/mgr_server.h"

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

/* A type CPython's manager serves: its typeid, our kind, its method table
 * and the names its proxies expose. */
struct py_type {
    const char *typeid;
    int kind;
    const struct py_method *methods;
    size_t n;
    const char *const *exposed;
};

/* ---- mgr_server_py.c: tables and references ---- */

/* The type of the iterators __iter__ makes (over a dict's keys). */
extern const struct py_type mp__mgr_pys_iter_type;
/* The type Python's manager serves o as, or NULL (not one of its types). */
const struct py_type *mp__mgr_pys_type_named(const char *typeid);
const struct py_type *mp__mgr_pys_type_of(const struct sobj *o);
/* Python's incref (0 or -ENOMEM) and decref (the object may be freed). */
int mp__mgr_pys_incref(struct server *s, struct sobj *o);
void mp__mgr_pys_decref(struct server *s, struct sobj *o);
/* The object a Python ident names ('%x' of our id), or NULL. */
struct sobj *mp__mgr_pys_find(struct server *s, const mp_obj *ident);
/* o's ident, and t's exposed names as a tuple: new values, NULL for no
 * memory. */
mp_obj *mp__mgr_pys_ident(const struct sobj *o);
mp_obj *mp__mgr_pys_exposed(const struct py_type *t);

/* ---- mgr_server_py_public.c, mgr_server_py_call.c: the requests ---- */

/* Argument i by position or keyword name (borrowed), or dflt. */
const mp_obj *mp__mgr_pys_param(const mp_obj *args, const mp_obj *kwds, size_t i, const char *name,
                                const mp_obj *dflt);
/* A public call (ident None), and a call of the object ident names. */
void mp__mgr_pys_public(struct server *s, struct sconn *c, const char *meth, const mp_obj *args,
                        const mp_obj *kwds);
void mp__mgr_pys_call(struct server *s, struct sconn *c, const mp_obj *ident, const char *meth,
                      const mp_obj *args, const mp_obj *kwds);

/* ---- mgr_server_py_reply.c: replies in Python's form ---- */

/* Write reply (borrowed) as one frame, as it is. */
void mp__mgr_pys_send(struct sconn *c, const mp_obj *reply);
/* ('#TRACEBACK', fmt % arg): Python's client raises RemoteError. */
void mp__mgr_pys_traceback(struct sconn *c, const char *fmt, const char *arg);
/* ('#RETURN', v), v taken (NULL: out of memory, said as a traceback). */
void mp__mgr_pys_return(struct sconn *c, mp_obj *v);
/* ('#ERROR', cls(text)). */
void mp__mgr_pys_raise(struct sconn *c, const char *cls, const char *text);
/* An instance of cls with args built from fmt (one str or none): a new
 * value, or NULL. */
mp_obj *mp__mgr_pys_instance(const char *cls, const char *fmt, const char *text);

#endif
