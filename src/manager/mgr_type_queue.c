/*
 * mgr_type_queue - the manager server's Queue and JoinableQueue: a ring of
 * items, the getters, putters and joiners waiting on it, and the methods
 * with their table. Static functions: squeue_ (s for server). Siblings: mgr_type_dict.c,
 * mgr_type_list.c, mgr_type_lock.c, mgr_type_manager.c.
 */
#include "codec/objimpl.h"
#include "manager/mgr_server.h"

#include <errno.h>
#include <stdlib.h>

static int squeue_push(struct sobj *o, mp_obj *item)
{
    if (o->len == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 16;
        mp_obj **items = malloc(cap * sizeof *items);
        if (!items)
            return -ENOMEM;
        for (size_t i = 0; i < o->len; i++)
            items[i] = o->items[(o->head + i) % o->cap];
        free(o->items);
        o->items = items;
        o->cap = cap;
        o->head = 0;
    }
    o->items[(o->head + o->len) % o->cap] = item;
    o->len++;
    o->unfinished++;
    return 0;
}

static mp_obj *squeue_pop(struct sobj *o)
{
    MP__ASSERT(o->len > 0 && o->head < o->cap);
    mp_obj *item = o->items[o->head];
    o->head = (o->head + 1) % o->cap;
    o->len--;
    return item;
}

static bool squeue_full(const struct sobj *o)
{
    return o->maxsize > 0 && o->len >= (size_t)o->maxsize;
}

/* Room appeared: move waiting putters' items in, in order. */
static void squeue_admit_putters(struct server *s, struct sobj *o)
{
    struct waiter *w;
    while (!squeue_full(o) && (w = mp__list_first(&o->putters.l)) != NULL) {
        MP__ASSERT(w->op == W_PUT && w->item);
        if (squeue_push(o, w->item) < 0)
            return; /* out of memory: they keep waiting */
        w->item = NULL;
        if (!w->conn->broken)
            mp__mgr_reply_none(w->conn);
        mp__mgr_waiter_replied(s, w);
    }
}

/* A waiting getter means the queue is empty: hand the item to the first
 * getter it fits. One whose max_reply it exceeds gets MP_ETOOLONG, as its
 * get of this item from the queue would. True when one took it. */
static bool squeue_hand_over(const struct req *r)
{
    struct sobj *o = r->o;
    struct waiter *w;
    while ((w = mp__list_first(&o->getters.l)) != NULL) {
        MP__ASSERT(o->len == 0 && w->op == W_GET);
        if (mp__mgr_conn_gone(w->conn)) { /* a dead getter loses nothing */
            mp__mgr_waiter_free(r->s, w);
            continue;
        }
        int rc = mp__mgr_reply_obj(w->conn, mp__mgr_arg(r, 0));
        mp__mgr_waiter_replied(r->s, w);
        if (rc == 0) {
            o->unfinished++;
            return true;
        }
    }
    return false;
}

static int squeue_put(const struct req *r)
{
    struct sobj *o = r->o;
    double timeout;
    if (mp__mgr_arg_timeout(mp__mgr_arg(r, 1), &timeout) < 0)
        return MP_ETYPE;
    /* If no getter takes it, the item is queued like any other. */
    if (squeue_hand_over(r)) {
        mp__mgr_reply_none(r->c);
        return 0;
    }
    if (!squeue_full(o)) {
        mp_obj *item = mp__seq_take(r->args, 0);
        int rc = squeue_push(o, item);
        if (rc < 0) {
            mp_obj_free(item);
            return rc;
        }
        mp__mgr_reply_none(r->c);
        return 0;
    }
    if (timeout == 0) {
        mp__mgr_reply_error(r->c, MP_FULL, "queue.Full");
        return 0;
    }
    mp_obj *item = mp__seq_take(r->args, 0);
    int rc = mp__mgr_wait(r, &o->putters, W_PUT, timeout, 0, item);
    if (rc < 0)
        mp_obj_free(item);
    return rc;
}

static int squeue_get(const struct req *r)
{
    struct sobj *o = r->o;
    double timeout;
    if (mp__mgr_arg_timeout(mp__mgr_arg(r, 0), &timeout) < 0)
        return MP_ETYPE;
    if (o->len) {
        /* The item leaves the queue only once its reply stood. */
        if (mp__mgr_reply_obj(r->c, o->items[o->head]) != 0)
            return 0;
        mp_obj_free(squeue_pop(o));
        squeue_admit_putters(r->s, o);
        return 0;
    }
    if (timeout == 0) {
        mp__mgr_reply_error(r->c, MP_EMPTY, "queue.Empty");
        return 0;
    }
    return mp__mgr_wait(r, &o->getters, W_GET, timeout, 0, NULL);
}

static int squeue_qsize(const struct req *r)
{
    mp__mgr_reply_int(r->c, (int64_t)r->o->len);
    return 0;
}

static int squeue_empty(const struct req *r)
{
    mp__mgr_reply_bool(r->c, r->o->len == 0);
    return 0;
}

static int squeue_is_full(const struct req *r)
{
    mp__mgr_reply_bool(r->c, squeue_full(r->o));
    return 0;
}

static int squeue_task_done(const struct req *r)
{
    struct sobj *o = r->o;
    if (o->unfinished <= 0) {
        mp__mgr_reply_error(r->c, MP_EVALUE, "ValueError: task_done() called too many times");
        return 0;
    }
    if (--o->unfinished == 0) {
        struct waiter *w;
        while ((w = mp__list_first(&o->joiners.l)) != NULL) {
            if (!w->conn->broken)
                mp__mgr_reply_none(w->conn);
            mp__mgr_waiter_replied(r->s, w);
        }
    }
    mp__mgr_reply_none(r->c);
    return 0;
}

static int squeue_join(const struct req *r)
{
    double timeout;
    if (mp__mgr_arg_timeout(mp__mgr_arg(r, 0), &timeout) < 0)
        return MP_ETYPE;
    if (r->o->unfinished == 0) {
        mp__mgr_reply_none(r->c);
        return 0;
    }
    if (timeout == 0) {
        mp__mgr_reply_error(r->c, MP_ETIMEDOUT, "unfinished tasks remain");
        return 0;
    }
    return mp__mgr_wait(r, &r->o->joiners, W_JOIN, timeout, 0, NULL);
}

/* A new queue: create's initial value is its maxsize (None: unbounded). */
static int squeue_init(const struct req *r, struct sobj *o)
{
    mp_obj *init = mp__mgr_arg(r, 2);
    if (mp_obj_is_none(init))
        o->maxsize = 0;
    else if (mp_obj_get_int(init, &o->maxsize) < 0)
        return MP_ETYPE;
    return 0;
}

static const struct method queue_methods[] = {
    {"put", 2, 2, squeue_put},      {"get", 1, 1, squeue_get},
    {"qsize", 0, 0, squeue_qsize},  {"empty", 0, 0, squeue_empty},
    {"full", 0, 0, squeue_is_full}, {"task_done", 0, 0, squeue_task_done},
    {"join", 1, 1, squeue_join},
};

const struct stype mp__mgr_type_queue = {"queue", MP__MGR_METHODS(queue_methods), squeue_init, NULL};
