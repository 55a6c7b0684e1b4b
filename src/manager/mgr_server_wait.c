/*
 * mgr_server_wait - requests that wait in the manager server (a lock held,
 * a queue empty or full, unfinished tasks): the FIFO of waiters on each
 * object, the list of timed ones, and their deadlines. Static functions:
 * wait_.
 */
#include "core/io.h"
#include "manager/mgr_server.h"

#include <errno.h>
#include <stdlib.h>

/* A waiter is on its queue, w->q, until it is completed or failed; a timed
 * one (a deadline) is also on the server's timed list. */
static void wait_unlink(struct server *s, struct waiter *w)
{
    if (w->q) {
        mp__list_remove(&w->q->l, w);
        w->q = NULL;
    }
    if (w->deadline != MP__NO_DEADLINE)
        mp__list_remove(&s->timed, w);
}

int mp__mgr_wait(const struct req *r, struct wq *q, int op, double timeout, uint64_t tid,
                 mp_obj *item)
{
    struct server *s = r->s;
    struct sconn *c = r->c;
    MP__ASSERT(!c->waiter); /* one request at a time */
    struct waiter *w = calloc(1, sizeof *w);
    if (!w)
        return -ENOMEM;
    w->conn = c;
    w->obj = r->o;
    w->op = op;
    w->tid = tid;
    w->item = item;
    w->deadline = mp__deadline(timeout);
    w->q = q;
    mp__list_push_back(&q->l, w);
    if (c->via_slot) /* tell the client not to wait up (mgr.h) */
        __atomic_store_n(&c->slot->parked, c->slot_seq, __ATOMIC_RELEASE);
    if (w->deadline != MP__NO_DEADLINE)
        mp__list_push_front(&s->timed, w);
    c->waiter = w;
    return 0;
}

void mp__mgr_waiter_move(struct server *s, struct waiter *w, struct sobj *o, struct wq *q, int op)
{
    wait_unlink(s, w);
    w->deadline = MP__NO_DEADLINE;
    w->obj = o;
    w->op = op;
    w->q = q;
    mp__list_push_back(&q->l, w);
}

void mp__mgr_waiter_free(struct server *s, struct waiter *w)
{
    wait_unlink(s, w);
    if (w->conn && w->conn->waiter == w)
        w->conn->waiter = NULL;
    mp_obj_free(w->item);
    free(w);
}

/* The connection of a completed waiter may have more requests buffered. */
void mp__mgr_waiter_replied(struct server *s, struct waiter *w)
{
    struct sconn *c = w->conn;
    mp__mgr_waiter_free(s, w);
    mp__mgr_reply_done(c);
    s->again = true;
}

void mp__mgr_waiter_fail(struct server *s, struct waiter *w, int code)
{
    if (!w->conn->broken)
        mp__mgr_reply_status(w->conn, code);
    mp__mgr_waiter_replied(s, w);
}

void mp__mgr_wq_fail_all(struct server *s, struct wq *q, int code)
{
    struct waiter *w;
    while ((w = mp__list_first(&q->l)) != NULL)
        mp__mgr_waiter_fail(s, w, code);
}

int64_t mp__mgr_waiters_next_deadline(const struct server *s)
{
    int64_t d = MP__NO_DEADLINE;
    for (const struct waiter *w = mp__list_first(&s->timed); w; w = mp__list_next(&s->timed, w))
        if (d == MP__NO_DEADLINE || w->deadline < d)
            d = w->deadline;
    return d;
}

void mp__mgr_waiters_expire(struct server *s, int64_t now)
{
    struct waiter *w = mp__list_first(&s->timed);
    while (w) {
        struct waiter *next = mp__list_next(&s->timed, w);
        if (w->deadline <= now && w->op == W_CWAIT) {
            mp__mgr_cond_expire(s, w); /* it takes its lock back first */
            next = mp__list_first(&s->timed);
        } else if (w->deadline <= now && w->op == W_BARRIER) {
            mp__mgr_barrier_expire(s, w); /* it breaks the barrier */
            next = mp__list_first(&s->timed);
        } else if (w->deadline <= now) {
            int code = w->op == W_GET ? MP_EMPTY : w->op == W_PUT ? MP_FULL : MP_ETIMEDOUT;
            mp__mgr_waiter_fail(s, w, code);
            next = mp__list_first(&s->timed); /* the list changed under us: start over */
        }
        w = next;
    }
}
