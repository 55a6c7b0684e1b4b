/*
 * mgr_server_py_public - CPython's manager dialect: the server's public
 * calls (ident None): create with its typeids' arguments, incref, decref,
 * get_methods, number_of_objects, debug_info, dummy, accept_connection,
 * shutdown. Static functions: pypub_.
 */
#include "manager/mgr_server_py.h"

#include <mpipc/error.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* An argument by position or keyword (borrowed), or dflt. */
const mp_obj *mp__mgr_pys_param(const mp_obj *args, const mp_obj *kwds, size_t i, const char *name,
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
static struct sobj *pypub_cond_lock(struct server *s, const mp_obj *args, const mp_obj *kwds,
                                    bool *bad)
{
    const mp_obj *lock = mp__mgr_pys_param(args, kwds, 1, "lock", mp_obj_none());
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
static bool pypub_sync_init(struct server *s, const mp_obj *args, const mp_obj *kwds, int kind,
                            const mp_obj **init, mp_obj **made)
{
    const mp_obj *none = mp_obj_none();
    switch (kind) {
    case K_SEMAPHORE:
    case K_BSEMAPHORE:
        *init = mp__mgr_pys_param(args, kwds, 1, "value", NULL);
        return true;
    case K_CONDITION: {
        bool bad;
        struct sobj *lo = pypub_cond_lock(s, args, kwds, &bad);
        *init = NULL;
        if (!lo)
            return !bad;
        *made = mp_obj_int(lo->id);
        *init = *made;
        return *made != NULL;
    }
    case K_BARRIER: {
        const mp_obj *parties = mp__mgr_pys_param(args, kwds, 1, "parties", NULL);
        const mp_obj *timeout = mp__mgr_pys_param(args, kwds, 3, "timeout", none);
        if (!parties || !mp_obj_is_none(mp__mgr_pys_param(args, kwds, 2, "action", none)))
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
static int pypub_dict_put(mp_obj *d, const mp_obj *k, const mp_obj *v)
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
static mp_obj *pypub_dict_init(const mp_obj *init, const mp_obj *kwds)
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
            rc = pypub_dict_put(d, mp_obj_list_get(pair, 0), mp_obj_list_get(pair, 1));
    }
    size_t pos = 0;
    const mp_obj *k, *v;
    while (rc == 0 && mp_obj_dict_next(kwds, &pos, &k, &v) == 1)
        rc = pypub_dict_put(d, k, v);
    if (rc < 0) {
        mp_obj_free(d);
        return NULL;
    }
    return d;
}

/* list(r) of a range instance r, as a new list; NULL for another instance,
 * or a list longer than a request could carry as a list (at least 2 bytes
 * an item: nothing from the wire sizes an allocation beyond that). */
static mp_obj *pypub_range_list(const struct server *s, const mp_obj *r)
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
static bool pypub_initial(struct server *s, const struct py_type *t, const mp_obj *args,
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
        *made = pypub_dict_init(*init, kwds);
        break;
    case K_LIST:
        if (!*init || mp_obj_type(*init) != MP_TYPE_INSTANCE)
            return true;
        *made = pypub_range_list(s, *init); /* list(range(...)) */
        break;
    case K_QUEUE:
        if (!*init)
            *init = mp__mgr_pys_param(args, kwds, 1, "maxsize", NULL);
        return true;
    case K_VALUE:
    case K_ARRAY: {
        /* Value(typecode, value, lock=True), Array(typecode, seq, lock=True). */
        const mp_obj *tc = mp__mgr_pys_param(args, kwds, 1, "typecode", NULL);
        const mp_obj *v =
            mp__mgr_pys_param(args, kwds, 2, t->kind == K_VALUE ? "value" : "sequence", NULL);
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
        return pypub_sync_init(s, args, kwds, t->kind, init, made);
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
static void pypub_create_user(struct server *s, struct sconn *c, const struct mp_manager_type *ut,
                              const mp_obj *args, const mp_obj *kwds)
{
    struct sobj *o = mp__mgr_obj_new(s, K_USER);
    int rc = !o ? -ENOMEM : mp_obj_len(kwds) > 0 ? MP_ETYPE : mp__mgr_user_make(o, ut, args, 1);
    if (rc == 0)
        rc = mp__mgr_pys_incref(s, o);
    if (rc < 0) {
        if (o)
            mp__mgr_obj_destroy(s, o);
        mp__mgr_pys_traceback(c, "%s", mp_errname(rc)); /* Python's create fails with a traceback */
        return;
    }
    mp__mgr_pys_return(c, mp_obj_build("(NN)", mp__mgr_pys_ident(o), mp__mgr_user_exposed(ut)));
}

/* create(typeid, *args, **kwds): Python's server makes the referent and
 * increfs it once; the reply is (ident, exposed). */
static void pypub_create(struct server *s, struct sconn *c, const mp_obj *args, const mp_obj *kwds)
{
    const char *typeid;
    const struct py_type *t = NULL;
    if (mp_obj_get_str(mp_obj_list_get(args, 0), &typeid, NULL) == 0)
        t = mp__mgr_pys_type_named(typeid);
    const struct mp_manager_type *ut =
        !t && mp_obj_len(args) > 0 && mp_obj_type(mp_obj_list_get(args, 0)) == MP_TYPE_STR
            ? mp__mgr_user_type(s, typeid, strlen(typeid))
            : NULL;
    if (ut) {
        pypub_create_user(s, c, ut, args, kwds);
        return;
    }
    if (!t) {
        mp__mgr_pys_traceback(
            c, "KeyError: %s (libmpipc's manager does not serve this typeid yet)",
            mp_obj_len(args) > 0 && mp_obj_type(mp_obj_list_get(args, 0)) == MP_TYPE_STR ? typeid
                                                                                         : "?");
        return;
    }
    /* Our create's (kind, name, initial): dict(m, **kw), list(seq),
     * Queue(maxsize), Value(tc, v), Array(tc, seq), Namespace(**kw). */
    const mp_obj *init;
    mp_obj *made;
    if (!pypub_initial(s, t, args, kwds, &init, &made)) {
        mp__mgr_pys_traceback(c, "TypeError: cannot make %s of these arguments", typeid);
        return;
    }
    mp_obj *ours = mp_obj_build("(sNO)", mp__mgr_types[t->kind]->name, mp_obj_none(),
                                init ? init : mp_obj_none());
    mp_obj_free(made);
    struct sobj *o = ours ? mp__mgr_obj_new(s, t->kind) : NULL;
    if (!o) {
        mp_obj_free(ours);
        mp__mgr_pys_traceback(c, "%s", "the server is out of memory");
        return;
    }
    const struct req r = {s, c, o, ours};
    int rc = mp__mgr_types[t->kind]->init ? mp__mgr_types[t->kind]->init(&r, o) : 0;
    bool bad;
    struct sobj *lo = t->kind == K_CONDITION ? pypub_cond_lock(s, args, kwds, &bad) : NULL;
    if (rc == 0 && lo)
        rc = mp__mgr_nest_hold(o, lo); /* the Condition keeps its Lock */
    if (rc == 0)
        rc = mp__mgr_pys_incref(s, o);
    mp_obj_free(ours);
    if (rc == 0 && (mp__mgr_nest_any(args) || mp__mgr_nest_any(kwds)))
        mp__mgr_nest_refresh(s, o); /* list([proxy, ...]): its proxies' objects stay */
    if (rc < 0) {
        mp__mgr_obj_destroy(s, o);
        mp__mgr_pys_traceback(c, "TypeError: cannot make %s of these arguments", typeid);
        return;
    }
    mp_obj *reply = mp_obj_build("(NN)", mp__mgr_pys_ident(o), mp__mgr_pys_exposed(t));
    mp__mgr_pys_return(c, reply);
}

/* incref(ident) / decref(ident). */
static void pypub_ref(struct server *s, struct sconn *c, const mp_obj *args, bool inc)
{
    struct sobj *o = mp_obj_len(args) == 1 ? mp__mgr_pys_find(s, mp_obj_list_get(args, 0)) : NULL;
    if (!o || (!inc && o->pyrefs <= 0)) {
        mp__mgr_pys_traceback(c, "KeyError: %s", "no such object");
        return;
    }
    if (inc ? mp__mgr_pys_incref(s, o) < 0 : (mp__mgr_pys_decref(s, o), false)) {
        mp__mgr_pys_traceback(c, "%s", "the server is out of memory");
        return;
    }
    mp__mgr_pys_return(c, mp_obj_none());
}

void mp__mgr_pys_public(struct server *s, struct sconn *c, const char *meth, const mp_obj *args,
                        const mp_obj *kwds)
{
    if (strcmp(meth, "dummy") == 0) {
        mp__mgr_pys_return(c, mp_obj_none());
    } else if (strcmp(meth, "accept_connection") == 0) {
        /* From now on the connection serves a proxy's calls. */
        mp__mgr_pys_return(c, mp_obj_none());
    } else if (strcmp(meth, "create") == 0) {
        pypub_create(s, c, args, kwds);
    } else if (strcmp(meth, "incref") == 0 || strcmp(meth, "decref") == 0) {
        pypub_ref(s, c, args, meth[0] == 'i');
    } else if (strcmp(meth, "get_methods") == 0) {
        const mp_obj *tok = mp_obj_list_get(args, 0);
        const mp_obj *ta = mp_obj_instance_args(tok);
        struct sobj *o = ta ? mp__mgr_pys_find(s, mp_obj_list_get(ta, 2)) : NULL;
        if (o && o->kind == K_USER)
            mp__mgr_pys_return(c, mp__mgr_user_exposed(o->utype));
        else if (!o || !mp__mgr_pys_type_of(o))
            mp__mgr_pys_traceback(c, "KeyError: %s", "no such object");
        else
            mp__mgr_pys_return(c, mp__mgr_pys_exposed(mp__mgr_pys_type_of(o)));
    } else if (strcmp(meth, "number_of_objects") == 0) {
        mp__mgr_pys_return(c, mp_obj_int((int64_t)s->nobjs));
    } else if (strcmp(meth, "debug_info") == 0) {
        char buf[96];
        snprintf(buf, sizeof buf, "libmpipc manager: %zu objects, %zu sessions", s->nobjs,
                 s->nsessions);
        mp__mgr_pys_return(c, mp_obj_str_cstr(buf));
    } else if (strcmp(meth, "shutdown") == 0) {
        mp__mgr_pys_return(c, mp_obj_none());
        s->stop = true;
    } else {
        mp__mgr_pys_traceback(c, "AssertionError: '%s' unrecognized", meth);
    }
}
