/*
 * mgr_type_manager - the manager's own methods (ident 0): hello, create,
 * attach, incref, release, unlink, info, ping, shm and shutdown, with their
 * table. Static functions: smgr_ (s for server). The object types are mgr_type_*.c.
 */
#include "manager/mgr_server.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

/* The kind a create or attach names: K_DICT..K_COUNT - 1, MP_ETYPE, MP_EVALUE.
 * any_lock: "rlock" reads as K_LOCK (which matches either). */
static int smgr_kind_from(const mp_obj *o, bool any_lock)
{
    const char *k;
    size_t n;
    if (mp_obj_get_str(o, &k, &n) < 0)
        return MP_ETYPE;
    for (int i = K_DICT; i < K_COUNT; i++) {
        const char *name = mp__mgr_types[i]->name;
        if (strlen(name) == n && memcmp(name, k, n) == 0)
            return (any_lock && i == K_RLOCK) ? K_LOCK : i;
    }
    return MP_EVALUE;
}

static bool smgr_kind_matches(int want, int have, bool any_lock)
{
    if (any_lock && want == K_LOCK)
        return have == K_LOCK || have == K_RLOCK;
    return want == have;
}

static struct sobj *smgr_by_name(struct server *s, const mp_obj *name)
{
    const mp_obj *idv = mp_obj_dict_get(s->names, name);
    int64_t id;
    if (!idv || mp_obj_get_int(idv, &id) < 0)
        return NULL;
    return mp__mgr_obj_find(s, id);
}

/* The reply to create and attach: (id, created, kind). */
static void smgr_reply_id(struct sconn *c, struct sobj *o, bool created)
{
    const char *kind = mp__mgr_types[o->kind]->name;
    size_t st = mp__mgr_reply_begin(c);
    mp__pickler_int(&c->out, o->id);
    mp__pickler_bool(&c->out, created);
    mp__pickler_str(&c->out, kind, strlen(kind));
    mp__pickler_tuple(&c->out, 3);
    mp__mgr_reply_end(c, st);
}

/* The session of the request holds o, which the reply names. */
static int smgr_hold(const struct req *r, struct sobj *o)
{
    int rc = mp__mgr_session_hold(r->c->sess, o);
    if (rc == 0)
        smgr_reply_id(r->c, o, false);
    return rc;
}

/* Give a new object its name (moved in as copies): the name's reference. */
static int smgr_name(struct server *s, struct sobj *o, const mp_obj *name)
{
    mp_obj *key = mp_obj_copy(name), *idv = mp_obj_int(o->id);
    o->name = mp_obj_copy(name);
    int rc = key && idv && o->name ? mp_obj_dict_set(s->names, key, idv) : -ENOMEM;
    if (rc < 0) {
        mp_obj_free(key);
        mp_obj_free(idv);
        return rc;
    }
    o->refs++;
    return 0;
}

/* create(kind, name or None, initial): a new object, or, for a name that
 * exists, the object of that name. */
static int smgr_create(const struct req *r)
{
    struct server *s = r->s;
    int kind = smgr_kind_from(mp__mgr_arg(r, 0), false);
    mp_obj *name = mp__mgr_arg(r, 1);
    if (kind < 0 || (!mp_obj_is_none(name) && mp_obj_type(name) != MP_TYPE_STR)) {
        mp__mgr_reply_error(r->c, MP_EPROTO, "create(kind, name, initial)");
        return 0;
    }
    bool named = !mp_obj_is_none(name);
    struct sobj *o = named ? smgr_by_name(s, name) : NULL;
    if (o) {
        if (o->kind != kind) {
            mp__mgr_reply_error(r->c, MP_ETYPE, "that name belongs to an object of another kind");
            return 0;
        }
        return smgr_hold(r, o);
    }
    o = mp__mgr_obj_new(s, kind);
    if (!o)
        return -ENOMEM;
    const struct stype *t = mp__mgr_types[kind];
    int rc = t->init ? t->init(r, o) : 0;
    if (rc == 0 && named)
        rc = smgr_name(s, o, name);
    if (rc == 0)
        rc = mp__mgr_session_hold(r->c->sess, o);
    if (rc < 0) {
        if (o->name)
            (void)mp_obj_dict_del(s->names, o->name);
        mp__mgr_obj_destroy(s, o);
        return rc;
    }
    smgr_reply_id(r->c, o, true);
    if (mp__mgr_nest_any(o->value))
        mp__mgr_nest_refresh(s, o); /* an initial value holding proxies */
    return 0;
}

/* The object argument i names (a str), or NULL with the error replied:
 * MP_EPROTO with the call's form (usage) for an argument that is no str. */
static struct sobj *smgr_arg_named(const struct req *r, size_t i, const char *usage)
{
    if (mp_obj_type(mp__mgr_arg(r, i)) != MP_TYPE_STR) {
        mp__mgr_reply_error(r->c, MP_EPROTO, usage);
        return NULL;
    }
    struct sobj *o = smgr_by_name(r->s, mp__mgr_arg(r, i));
    if (!o)
        mp__mgr_reply_error(r->c, MP_ENOOBJ, "no object has that name");
    return o;
}

/* attach(kind, name): the object of that name, which must exist. "lock"
 * matches a lock or an rlock. */
static int smgr_attach(const struct req *r)
{
    int kind = smgr_kind_from(mp__mgr_arg(r, 0), true);
    if (kind < 0) {
        mp__mgr_reply_error(r->c, MP_EPROTO, "attach(kind, name)");
        return 0;
    }
    struct sobj *o = smgr_arg_named(r, 1, "attach(kind, name)");
    if (!o)
        return 0;
    if (!smgr_kind_matches(kind, o->kind, true)) {
        mp__mgr_reply_error(r->c, MP_ETYPE, "that name belongs to an object of another kind");
        return 0;
    }
    return smgr_hold(r, o);
}

/* The object argument 0 names, or NULL with the error replied. */
static struct sobj *smgr_arg_obj(const struct req *r)
{
    int64_t id;
    if (mp_obj_get_int(mp__mgr_arg(r, 0), &id) < 0) {
        mp__mgr_reply_error(r->c, MP_EPROTO, "expected (id,)");
        return NULL;
    }
    struct sobj *o = mp__mgr_obj_find(r->s, id);
    if (!o)
        mp__mgr_reply_error(r->c, MP_ENOOBJ, "no such object");
    return o;
}

static int smgr_incref(const struct req *r)
{
    struct sobj *o = smgr_arg_obj(r);
    if (!o)
        return 0;
    int rc = mp__mgr_session_hold(r->c->sess, o);
    if (rc < 0)
        return rc;
    mp__mgr_reply_none(r->c);
    return 0;
}

static int smgr_release(const struct req *r)
{
    struct sobj *o = smgr_arg_obj(r);
    if (!o)
        return 0;
    /* Reply before the drop: dropping may free the object (and fail
     * waiters of it on other connections). */
    mp__mgr_reply_none(r->c);
    (void)mp__mgr_session_drop(r->s, r->c->sess, o);
    return 0;
}

static int smgr_unlink(const struct req *r)
{
    struct sobj *o = smgr_arg_named(r, 0, "unlink(name)");
    if (!o)
        return 0;
    (void)mp_obj_dict_del(r->s->names, mp__mgr_arg(r, 0));
    mp_obj_free(o->name);
    o->name = NULL;
    mp__mgr_reply_none(r->c);
    mp__mgr_obj_decref(r->s, o);
    return 0;
}

/* d[k] = v, v moved in (freed on failure). rc: the previous failure, which
 * makes this one a no-op but for freeing v. */
static int smgr_info_set(int rc, mp_obj *d, const char *k, mp_obj *v)
{
    mp_obj *key = rc == 0 ? mp_obj_str_cstr(k) : NULL;
    if (rc == 0)
        rc = key && v ? mp_obj_dict_set(d, key, v) : -ENOMEM;
    if (rc < 0) {
        mp_obj_free(key);
        mp_obj_free(v);
    }
    return rc;
}

/* The names, a new list of copies: NULL when out of memory. */
static mp_obj *smgr_names(const struct server *s)
{
    mp_obj *names = mp_obj_list_new();
    size_t pos = 0;
    const mp_obj *k;
    while (names && mp_obj_dict_next(s->names, &pos, &k, NULL) == 1) {
        mp_obj *copy = mp_obj_copy(k);
        if (!copy || mp_obj_list_append(names, copy) < 0) {
            mp_obj_free(copy);
            mp_obj_free(names);
            names = NULL;
        }
    }
    return names;
}

static int smgr_info(const struct req *r)
{
    const struct server *s = r->s;
    struct sconn *c = r->c;
    size_t live = 0, slots = 0, waiting = 0;
    for (size_t i = 0; i < s->nconns; i++) {
        live += !s->conns[i]->broken;
        slots += !s->conns[i]->broken && s->conns[i]->slot;
        waiting += !s->conns[i]->broken && s->conns[i]->waiter;
    }
    mp_obj *d = mp_obj_dict_new();
    int rc = d ? 0 : -ENOMEM;
    rc = smgr_info_set(rc, d, "pid", mp_obj_int(getpid()));
    rc = smgr_info_set(rc, d, "objects", mp_obj_int((int64_t)s->nobjs));
    rc = smgr_info_set(rc, d, "sessions", mp_obj_int((int64_t)s->nsessions));
    rc = smgr_info_set(rc, d, "connections", mp_obj_int((int64_t)live));
    rc = smgr_info_set(rc, d, "mailboxes", mp_obj_int((int64_t)slots));
    rc = smgr_info_set(rc, d, "waiting", mp_obj_int((int64_t)waiting));
    rc = smgr_info_set(rc, d, "buffered", mp_obj_int((int64_t)s->inflight));
    rc = smgr_info_set(rc, d, "budget", mp_obj_int((int64_t)s->budget));
    rc = smgr_info_set(rc, d, "mailbox", mp_obj_bool(c->slot != NULL));
    rc = smgr_info_set(rc, d, "session", mp_obj_int(c->sess->id));
    rc = smgr_info_set(rc, d, "connection", mp_obj_int(c->id));
    rc = smgr_info_set(rc, d, "names", rc == 0 ? smgr_names(s) : NULL);
    if (rc == 0)
        mp__mgr_reply_obj(c, d);
    mp_obj_free(d);
    return rc;
}

/* hello(session, pid, max_reply, protocol): the first request of every
 * connection. */
static int smgr_hello(const struct req *r)
{
    struct server *s = r->s;
    struct sconn *c = r->c;
    int64_t sid, pid, max_reply, proto;
    if (mp_obj_get_int(mp__mgr_arg(r, 0), &sid) < 0 ||
        mp_obj_get_int(mp__mgr_arg(r, 1), &pid) < 0 ||
        mp_obj_get_int(mp__mgr_arg(r, 2), &max_reply) < 0 ||
        mp_obj_get_int(mp__mgr_arg(r, 3), &proto) < 0) {
        mp__mgr_reply_error(c, MP_EPROTO, "hello(session, pid, max_reply, protocol)");
        return 0;
    }
    if (c->sess) {
        mp__mgr_reply_error(c, MP_ESTATE, "hello was already said on this connection");
        return 0;
    }
    if (proto != MP__MGR_PROTOCOL) {
        mp__mgr_reply_error(c, MP_EPROTO, "unsupported manager protocol version");
        return 0;
    }
    struct session *ss = mp__mgr_session_get(s, sid);
    if (!ss)
        return -ENOMEM;
    ss->nconns++;
    c->sess = ss;
    /* 0 or less: as large as the server's own limit (docs/manager.md). */
    c->max_reply = max_reply <= 0                            ? s->max_request
                   : (uint64_t)max_reply > MP__MGR_MAX_LIMIT ? MP__MGR_MAX_LIMIT
                                                             : (size_t)max_reply;
    size_t st = mp__mgr_reply_begin(c);
    mp__pickler_int(&c->out, MP__MGR_PROTOCOL);
    mp__pickler_int(&c->out, (int64_t)s->max_request);
    mp__pickler_int(&c->out, getpid());
    mp__pickler_tuple(&c->out, 3);
    mp__mgr_reply_end(c, st);
    return 0;
}

/* Claim a free slot of the block for c: its index, or -1 when all are
 * taken. */
static int64_t smgr_claim_slot(struct server *s, struct sconn *c)
{
    for (unsigned i = 0; i < MP__MGR_SLOTS; i++) {
        if (s->slot_used[i])
            continue;
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
        return i;
    }
    return -1;
}

/* shm(tag): claim a mailbox slot. The tag shows that the client maps the
 * same block as the server (it is random and lives only in that block).
 * The reply is the slot's index, or -1: no block, a wrong tag, or every
 * slot taken - the connection then simply goes on by the socket. */
static int smgr_shm(const struct req *r)
{
    struct server *s = r->s;
    int64_t tag;
    if (mp_obj_get_int(mp__mgr_arg(r, 0), &tag) < 0) {
        mp__mgr_reply_error(r->c, MP_EPROTO, "shm(tag)");
        return 0;
    }
    int64_t ix = -1;
    if (s->arena && !r->c->slot && tag != 0 && (uint64_t)tag == s->arena->tag)
        ix = smgr_claim_slot(s, r->c);
    mp__mgr_reply_int(r->c, ix);
    return 0;
}

static int smgr_ping(const struct req *r)
{
    mp__mgr_reply_none(r->c);
    return 0;
}

static int smgr_shutdown(const struct req *r)
{
    mp__mgr_reply_none(r->c);
    r->s->stop = true;
    return 0;
}

static const struct method manager_methods[] = {
    {"hello", 4, 4, smgr_hello},     {"create", 3, 3, smgr_create},
    {"attach", 2, 2, smgr_attach},   {"incref", 1, 1, smgr_incref},
    {"release", 1, 1, smgr_release}, {"unlink", 1, 1, smgr_unlink},
    {"info", 0, 0, smgr_info},       {"ping", 0, 0, smgr_ping},
    {"shm", 1, 1, smgr_shm},         {"shutdown", 0, 0, smgr_shutdown},
};

const struct stype mp__mgr_type_manager = {NULL, MP__MGR_METHODS(manager_methods), NULL, NULL};
