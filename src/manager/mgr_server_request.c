/*
 * mgr_server_request - from a request's bytes to its method: the fast
 * reader of the requests clients send most, the general decoder's path,
 * the registry of object types, and dispatch. Static functions: req_.
 * The types' method tables, with their argument counts, are in mgr_type_*.c.
 */
#include "manager/mgr_server.h"

#include <errno.h>
#include <string.h>

const struct stype *const mp__mgr_types[K_COUNT] = {
    [K_MANAGER] = &mp__mgr_type_manager,     [K_DICT] = &mp__mgr_type_dict,
    [K_LIST] = &mp__mgr_type_list,           [K_LOCK] = &mp__mgr_type_lock,
    [K_RLOCK] = &mp__mgr_type_rlock,         [K_QUEUE] = &mp__mgr_type_queue,
    [K_SEMAPHORE] = &mp__mgr_type_semaphore, [K_BSEMAPHORE] = &mp__mgr_type_bsemaphore,
    [K_EVENT] = &mp__mgr_type_event,         [K_CONDITION] = &mp__mgr_type_condition,
    [K_BARRIER] = &mp__mgr_type_barrier,     [K_VALUE] = &mp__mgr_type_value,
    [K_ARRAY] = &mp__mgr_type_array,         [K_NAMESPACE] = &mp__mgr_type_namespace,
    [K_USER] = &mp__mgr_type_user,
};

static const struct method *req_find_method(int kind, const char *name, size_t len)
{
    const struct stype *t = mp__mgr_types[kind];
    for (size_t i = 0; i < t->nmethods; i++)
        if (strlen(t->methods[i].name) == len && memcmp(t->methods[i].name, name, len) == 0)
            return &t->methods[i];
    return NULL;
}

/*
 * Run one parsed request: find its object and method, check the state of
 * the connection and the number of arguments (docs/manager.md: a wrong
 * count is MP_EPROTO, and the server serves on), then call the method, so
 * that no method sees a tuple of the wrong length.
 */
static void req_dispatch(struct server *s, struct sconn *c, int64_t ident, const char *meth,
                         size_t mlen, mp_obj *args)
{
    struct sobj *o = NULL;
    if (ident != 0) {
        if (!c->sess) {
            mp__mgr_reply_error(c, MP_ESTATE, "the first request must be hello");
            return;
        }
        o = mp__mgr_obj_find(s, ident);
        if (!o) {
            mp__mgr_reply_error(c, MP_ENOOBJ, "no such object");
            return;
        }
        if (o->kind == K_USER) { /* a type of your own: its table, its counts */
            const struct req r = {s, c, o, args};
            mp__mgr_user_call(&r, meth, mlen);
            return;
        }
    }
    const struct method *md = req_find_method(o ? o->kind : K_MANAGER, meth, mlen);
    ssize_t na = mp_obj_len(args);
    if (!c->sess && !(md && strcmp(md->name, "hello") == 0)) {
        mp__mgr_reply_error(c, MP_ESTATE, "the first request must be hello");
    } else if (!md) {
        mp__mgr_reply_error(
            c, MP_EPROTO, o ? "no such method for this kind of object" : "no such manager method");
    } else if (na < md->min_args || na > md->max_args) {
        mp__mgr_reply_error(c, MP_EPROTO, "wrong number of arguments");
    } else {
        const struct req r = {s, c, o, args};
        size_t before = c->out.len;
        bool nest = o && (o->nest_seen || mp__mgr_nest_any(args));
        int rc = md->fn(&r);
        /* A method replies once, parks the request, or leaves the reply
         * to this status. */
        MP__ASSERT(rc <= 0);
        MP__ASSERT(rc == 0 ? c->out.len != before || c->waiter || c->broken
                           : c->out.len == before && !c->waiter);
        if (rc < 0)
            mp__mgr_reply_failed(&r, rc);
        if (nest) /* last: o may go (mgr_server_nest.c) */
            mp__mgr_nest_refresh(s, o);
    }
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
struct req_reader {
    const unsigned char *p;
    size_t n, i;
};

static bool req_read_int(struct req_reader *q, int64_t *v)
{
    size_t used = mp__pickle_read_int(q->p + q->i, q->n - q->i, v);
    q->i += used;
    return used > 0;
}

/* One scalar argument: 1 with *o set, 0 not a scalar of the fast path,
 * -ENOMEM. */
static int req_read_scalar(struct req_reader *q, mp_obj **o)
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

#define REQ_MAX_ARGS 8

/* Gather the scalars read into a new tuple: 1 with *args set, or -ENOMEM
 * with every item freed. */
static int req_tuple(mp_obj **items, size_t k, mp_obj **args)
{
    mp_obj *t = mp_obj_tuple_new();
    for (size_t x = 0; x < k; x++) {
        if (t && mp_obj_tuple_append(t, items[x]) == 0)
            continue;
        mp_obj_free(items[x]);
        mp_obj_free(t);
        t = NULL;
    }
    if (!t)
        return -ENOMEM;
    *args = t;
    return 1;
}

int mp__mgr_quick_request(const unsigned char *p, size_t n, int64_t *ident, const char **meth,
                          size_t *mlen, mp_obj **args)
{
    struct req_reader q = {p, n, 2};
    if (n < 2 || p[0] != MP__OP_PROTO || p[1] != 4 || !req_read_int(&q, ident))
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
    mp_obj *items[REQ_MAX_ARGS];
    size_t k = 0;
    int rc = 0;
    while (k < REQ_MAX_ARGS && (rc = req_read_scalar(&q, &items[k])) == 1)
        k++;
    /* Then the args tuple of exactly those items, the request's TUPLE3,
     * STOP, and nothing more. */
    bool ok = rc == 0 && q.i + 3 == n && p[n - 2] == MP__OP_TUPLE3 && p[n - 1] == MP__OP_STOP;
    if (ok) {
        unsigned char op = p[q.i];
        ok = marked ? op == MP__OP_TUPLE
                    : (k == 0 ? op == MP__OP_EMPTY_TUPLE : k <= 3 && op == MP__OP_TUPLE1 + k - 1);
    }
    if (!ok) {
        for (size_t x = 0; x < k; x++)
            mp_obj_free(items[x]);
        return rc < 0 ? rc : 0;
    }
    rc = req_tuple(items, k, args);
    if (rc < 0)
        return rc;
    *meth = (const char *)m;
    *mlen = ml;
    return 1;
}

void mp__mgr_run_decoded(struct server *s, struct sconn *c, int rc, mp_obj *req)
{
    /* CPython's client says (ident, methodname, args, kwds) where ours
     * says hello: the first request decides the dialect. */
    if (rc == 0 && (c->py || (!c->sess && mp__mgr_py_request_looks(req)))) {
        mp__mgr_py_request(s, c, req);
        return;
    }
    if (rc < 0) {
        mp__mgr_reply_error(c, rc == -ENOMEM ? rc : MP_EPROTO,
                            "the request is not a pickle of supported values");
        return;
    }
    int64_t ident;
    const char *meth;
    size_t mlen;
    mp_obj *args = mp_obj_list_get_mut(req, 2);
    if (mp_obj_type(req) != MP_TYPE_TUPLE || mp_obj_len(req) != 3 ||
        mp_obj_get_int(mp_obj_list_get(req, 0), &ident) < 0 ||
        mp_obj_get_str(mp_obj_list_get(req, 1), &meth, &mlen) < 0 ||
        mp_obj_type(args) != MP_TYPE_TUPLE) {
        mp__mgr_reply_error(c, MP_EPROTO, "a request is (ident, method, args)");
        return;
    }
    req_dispatch(s, c, ident, meth, mlen, args);
}

void mp__mgr_handle_request(struct server *s, struct sconn *c, const unsigned char *p, size_t n)
{
    /* One request at a time on a connection (mgr_server_conn.c). */
    MP__ASSERT(!c->waiter && !c->job && !c->closing);
    mp_obj *req = NULL, *args = NULL;
    int64_t ident;
    const char *meth;
    size_t mlen;
    int q = mp__mgr_quick_request(p, n, &ident, &meth, &mlen, &args);
    if (q < 0) {
        mp__mgr_reply_status(c, q);
    } else if (q == 1) {
        req_dispatch(s, c, ident, meth, mlen, args);
        mp_obj_free(args);
    } else {
        int rc = mp__pickle_loads(p, n, &req);
        mp__mgr_run_decoded(s, c, rc, req);
        mp_obj_free(req);
    }
}
