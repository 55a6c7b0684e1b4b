/*
 * mgr_server_nest - proxies inside values: an object whose stored value
 * holds a proxy reference (managers.RebuildProxy) to an object of this
 * server keeps that object alive until the value lets go of it, and a
 * reference sent to a Python client is kept until that client's incref.
 * Static functions: nest_.
 *
 * CPython's server rebuilds such a proxy inside its own process with
 * manager_owned=True and keeps the referent in id_to_local_proxy_obj, for
 * good. Here the holder - a dict, list, Namespace or Queue, or a Condition
 * made over a Lock - holds one reference (sobj.refs) on each object its
 * value names, recomputed after every request that brings a proxy or
 * changes a value that holds one (a walk of the value: the cost is paid
 * only while it holds proxies), and given back when the holder is freed.
 * Two objects that hold each other (b.append(b)) stay until the server
 * stops, as in CPython.
 */
#include "codec/objimpl.h"
#include "manager/mgr_server.h"

#include <errno.h>
#include <stdlib.h>

static bool nest_is_ref(const mp_obj *v)
{
    return v->type == MP_TYPE_INSTANCE && mp__instance_cls(v) == MP__CLS_REBUILD_PROXY;
}

bool mp__mgr_nest_any(const mp_obj *v)
{
    if (!v)
        return false;
    if (nest_is_ref(v))
        return true;
    if (mp__obj_has_items(v)) {
        for (size_t i = 0; i < v->u.seq.len; i++)
            if (mp__mgr_nest_any(v->u.seq.items[i]))
                return true;
    } else if (mp__obj_is_table(v)) {
        /* Keys are hashable: no proxy is one. */
        for (size_t i = 0; i < v->u.d.n; i++)
            if (v->u.d.entries[i].key && mp__mgr_nest_any(v->u.d.entries[i].value))
                return true;
    }
    return false;
}

static bool nest_in(struct sobj *const *a, size_t n, const struct sobj *o)
{
    for (size_t i = 0; i < n; i++)
        if (a[i] == o)
            return true;
    return false;
}

struct nest_set {
    struct sobj **v;
    size_t n, cap;
    bool dups; /* count each reference (a reply), not each object */
};

static int nest_add(struct nest_set *set, struct sobj *o)
{
    if (!set->dups && nest_in(set->v, set->n, o))
        return 0;
    if (set->n == set->cap) {
        struct sobj **v = mp__array_grow(set->v, &set->cap, sizeof *v, 4);
        if (!v)
            return -ENOMEM;
        set->v = v;
    }
    set->v[set->n++] = o;
    return 0;
}

/* The objects of this server that v's proxy references name. */
static int nest_collect(struct server *s, const mp_obj *v, struct nest_set *set)
{
    int rc = 0;
    if (!v)
        return 0;
    if (nest_is_ref(v)) {
        struct sobj *t = mp__mgr_py_ref_target(s, v);
        return t ? nest_add(set, t) : 0;
    }
    if (mp__obj_has_items(v)) {
        for (size_t i = 0; rc == 0 && i < v->u.seq.len; i++)
            rc = nest_collect(s, v->u.seq.items[i], set);
    } else if (mp__obj_is_table(v)) {
        for (size_t i = 0; rc == 0 && i < v->u.d.n; i++)
            if (v->u.d.entries[i].key)
                rc = nest_collect(s, v->u.d.entries[i].value, set);
    }
    return rc;
}

void mp__mgr_nest_refresh(struct server *s, struct sobj *o)
{
    if (o->kind != K_DICT && o->kind != K_LIST && o->kind != K_QUEUE && o->kind != K_NAMESPACE)
        return; /* no value to hold proxies (a Condition's Lock stays held) */
    struct nest_set now = {0};
    int rc = nest_collect(s, o->value, &now);
    for (size_t i = 0; rc == 0 && i < o->len; i++)
        rc = nest_collect(s, o->items[(o->head + i) % o->cap], &now);
    /* A value holding none needs no look until a request brings one; a
     * queue's may wait in a parked put, so a queue keeps looking. */
    o->nest_seen = o->kind == K_QUEUE || now.n > 0 || rc < 0;
    if (rc < 0) {
        /* Out of memory: keep the holds it has (nothing freed too soon). */
        free(now.v);
        return;
    }
    for (size_t i = 0; i < now.n; i++)
        if (!nest_in(o->nest, o->nnest, now.v[i]))
            now.v[i]->refs++;
    struct sobj **old = o->nest;
    size_t nold = o->nnest;
    o->nest = now.v;
    o->nnest = now.n;
    /* Letting go may free objects, whose own holds let go in turn; o
     * itself stays until the end (it may hold itself, or be held by what
     * it lets go of). */
    o->refs++;
    for (size_t i = 0; i < nold; i++)
        if (!nest_in(now.v, now.n, old[i]))
            mp__mgr_obj_decref(s, old[i]);
    free(old);
    mp__mgr_obj_decref(s, o);
}

int mp__mgr_nest_hold(struct sobj *o, struct sobj *t)
{
    struct nest_set set = {o->nest, o->nnest, o->nnest, false};
    if (nest_in(o->nest, o->nnest, t))
        return 0;
    int rc = nest_add(&set, t);
    if (rc < 0)
        return rc;
    o->nest = set.v;
    o->nnest = set.n;
    t->refs++;
    return 0;
}

void mp__mgr_nest_release(struct server *s, struct sobj *o)
{
    struct sobj **held = o->nest;
    size_t n = o->nnest;
    o->nest = NULL;
    o->nnest = 0;
    for (size_t i = 0; i < n; i++)
        if (held[i] != o)
            mp__mgr_obj_decref(s, held[i]);
    free(held);
}

void mp__mgr_nest_reply(struct server *s, const mp_obj *reply)
{
    struct nest_set set = {.dups = true};
    if (nest_collect(s, reply, &set) == 0) {
        for (size_t i = 0; i < set.n; i++) {
            set.v[i]->refs++;
            set.v[i]->py_pending++;
        }
    }
    free(set.v);
}
