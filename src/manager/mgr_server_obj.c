/*
 * mgr_server_obj - the manager server's objects: the table by id, their
 * lifetime and reference counts, the sessions that hold the references,
 * and the methods dict and list share. Static functions: obj_.
 */
#include "codec/objimpl.h"
#include "manager/mgr_server.h"

#include <errno.h>
#include <stdlib.h>

/* ---- the table by id ----------------------------------------------------------- */

static size_t obj_hash(int64_t id, size_t cap)
{
    uint64_t x = (uint64_t)id * UINT64_C(0x9E3779B97F4A7C15);
    return (size_t)(x >> 17) & (cap - 1);
}

struct sobj *mp__mgr_obj_find(struct server *s, int64_t id)
{
    if (!s->table_cap)
        return NULL;
    for (struct sobj *o = s->table[obj_hash(id, s->table_cap)]; o; o = o->hnext)
        if (o->id == id)
            return o;
    return NULL;
}

static int obj_table_insert(struct server *s, struct sobj *o)
{
    if (s->nobjs + 1 > s->table_cap / 2 * 1 + s->table_cap / 4 || !s->table_cap) {
        size_t cap = s->table_cap ? s->table_cap * 2 : 64;
        struct sobj **t = calloc(cap, sizeof *t);
        if (!t)
            return -ENOMEM;
        for (size_t i = 0; i < s->table_cap; i++) {
            struct sobj *x = s->table[i];
            while (x) {
                struct sobj *nx = x->hnext;
                size_t h = obj_hash(x->id, cap);
                x->hnext = t[h];
                t[h] = x;
                x = nx;
            }
        }
        free(s->table);
        s->table = t;
        s->table_cap = cap;
    }
    size_t h = obj_hash(o->id, s->table_cap);
    o->hnext = s->table[h];
    s->table[h] = o;
    s->nobjs++;
    return 0;
}

static void obj_table_remove(struct server *s, struct sobj *o)
{
    for (struct sobj **pp = &s->table[obj_hash(o->id, s->table_cap)]; *pp; pp = &(*pp)->hnext) {
        if (*pp == o) {
            *pp = o->hnext;
            s->nobjs--;
            return;
        }
    }
    MP__ASSERT(!"an object missing from the table");
}

/* ---- lifetime -------------------------------------------------------------------- */

struct sobj *mp__mgr_obj_new(struct server *s, int kind)
{
    struct sobj *o = calloc(1, sizeof *o);
    if (!o)
        return NULL;
    o->kind = kind;
    o->id = ++s->next_id;
    struct wq *qs[] = {&o->acquirers, &o->getters, &o->putters, &o->joiners};
    for (size_t i = 0; i < sizeof qs / sizeof *qs; i++)
        MP__LIST_INIT(&qs[i]->l, struct waiter, qnode);
    if (obj_table_insert(s, o) < 0) {
        free(o);
        return NULL;
    }
    return o;
}

/* Free an object that is out of the table and has no waiters left: what
 * its type must undo, then whatever it holds (a queue's items, a dict's or
 * list's value, a name). */
static void obj_free(struct server *s, struct sobj *o)
{
    const struct stype *t = mp__mgr_types[o->kind];
    if (t->fini)
        t->fini(s, o);
    for (size_t i = 0; i < o->len; i++)
        mp_obj_free(o->items[(o->head + i) % o->cap]);
    free(o->items);
    free(o->nest);
    mp_obj_free(o->value);
    mp_obj_free(o->name);
    free(o);
}

void mp__mgr_obj_destroy(struct server *s, struct sobj *o)
{
    obj_table_remove(s, o);
    mp__mgr_wq_fail_all(s, &o->acquirers, MP_ENOOBJ);
    mp__mgr_wq_fail_all(s, &o->getters, MP_ENOOBJ);
    mp__mgr_wq_fail_all(s, &o->putters, MP_ENOOBJ);
    mp__mgr_wq_fail_all(s, &o->joiners, MP_ENOOBJ);
    mp__mgr_nest_release(s, o);
    obj_free(s, o);
}

void mp__mgr_obj_decref(struct server *s, struct sobj *o)
{
    MP__ASSERT(o->refs > 0);
    if (--o->refs <= 0)
        mp__mgr_obj_destroy(s, o);
}

/* ---- sessions and references ------------------------------------------------------ */

/* A session holds an object once per proxy (held may name it several
 * times): a process with two proxies of one object (attached twice, or made
 * from references read back from a value) keeps it until it frees both, as
 * CPython counts each proxy's incref and decref. */
int mp__mgr_session_hold(struct session *ss, struct sobj *o)
{
    MP__ASSERT(ss && ss->nconns > 0);
    if (ss->nheld == ss->cap) {
        struct sobj **h = mp__array_grow(ss->held, &ss->cap, sizeof *h, 8);
        if (!h)
            return -ENOMEM;
        ss->held = h;
    }
    ss->held[ss->nheld++] = o;
    o->refs++;
    return 0;
}

bool mp__mgr_session_drop(struct server *s, struct session *ss, struct sobj *o)
{
    for (size_t i = 0; i < ss->nheld; i++) {
        if (ss->held[i] == o) {
            ss->held[i] = ss->held[--ss->nheld];
            mp__mgr_obj_decref(s, o);
            return true;
        }
    }
    return false;
}

void mp__mgr_session_end(struct server *s, struct session *ss)
{
    MP__ASSERT(ss->nconns == 0);
    /* Locks first, while every object is still there: a lock the process
     * held passes to the next waiter, who learns that its holder died. */
    mp__mgr_locks_release_session(s, ss);
    while (ss->nheld) {
        struct sobj *o = ss->held[--ss->nheld];
        mp__mgr_obj_decref(s, o);
    }
    mp__list_remove(&s->sessions, ss);
    MP__ASSERT(s->nsessions > 0);
    s->nsessions--;
    free(ss->held);
    free(ss);
}

struct session *mp__mgr_session_get(struct server *s, int64_t id)
{
    for (struct session *ss = mp__list_first(&s->sessions); ss;
         ss = mp__list_next(&s->sessions, ss))
        if (ss->id == id)
            return ss;
    struct session *ss = calloc(1, sizeof *ss);
    if (!ss)
        return NULL;
    ss->id = id;
    mp__list_push_front(&s->sessions, ss);
    s->nsessions++;
    return ss;
}

void mp__mgr_objs_free(struct server *s)
{
    MP__ASSERT(mp__list_empty(&s->timed));
    struct session *ss;
    while ((ss = mp__list_pop_front(&s->sessions)) != NULL) {
        free(ss->held);
        free(ss);
    }
    for (size_t i = 0; i < s->table_cap; i++) {
        struct sobj *o = s->table[i];
        while (o) {
            struct sobj *next = o->hnext;
            obj_free(s, o);
            o = next;
        }
    }
    free(s->table);
}

/* ---- what dict and list share ---------------------------------------------------- */

/* A new dict or list: empty, or the initial value moved out of create's
 * arguments - a dict for a dict, a list or a tuple for a list. Lists and
 * tuples share one layout: a tuple, moved out of the request, simply
 * becomes the list. */
int mp__mgr_value_init(const struct req *r, struct sobj *o)
{
    bool dict = o->kind == K_DICT;
    int t = mp_obj_type(mp__mgr_arg(r, 2));
    if (t == MP_TYPE_NONE)
        o->value = dict ? mp_obj_dict_new() : mp_obj_list_new();
    else if (t == (dict ? MP_TYPE_DICT : MP_TYPE_LIST) || (!dict && t == MP_TYPE_TUPLE))
        o->value = mp__seq_take(r->args, 2);
    else
        return MP_ETYPE;
    if (!o->value)
        return -ENOMEM;
    if (!dict)
        o->value->type = MP_TYPE_LIST;
    return 0;
}

int mp__mgr_value_len(const struct req *r)
{
    mp__mgr_reply_int(r->c, (int64_t)mp_obj_len(r->o->value));
    return 0;
}

int mp__mgr_value_copy(const struct req *r)
{
    mp__mgr_reply_obj(r->c, r->o->value);
    return 0;
}

int mp__mgr_value_clear(const struct req *r)
{
    mp_obj *fresh = r->o->kind == K_DICT ? mp_obj_dict_new() : mp_obj_list_new();
    if (!fresh)
        return -ENOMEM;
    mp_obj_free(r->o->value);
    r->o->value = fresh;
    mp__mgr_reply_none(r->c);
    return 0;
}
