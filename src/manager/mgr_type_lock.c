/*
 * mgr_type_lock - the manager server's Lock and RLock: acquire and release
 * (with their table), the handover to waiters, and the release of what a
 * dead session held. Static functions: slock_ (s for server). Siblings: mgr_type_dict.c,
 * mgr_type_list.c, mgr_type_queue.c, mgr_type_manager.c.
 */
#include "manager/mgr_server.h"

static void slock_give(struct sobj *o, struct session *ss, uint64_t tid)
{
    MP__ASSERT(o->count == 0 && ss);
    o->owner = ss;
    o->owner_tid = tid;
    o->count = 1;
}

/* The reply to a successful acquire: 0, or MP_EOWNERDEAD once after the
 * previous holder died holding the lock. */
static void slock_reply_acquired(struct sconn *c, struct sobj *o)
{
    if (o->owner_dead) {
        o->owner_dead = false;
        mp__mgr_reply_error(c, MP_EOWNERDEAD,
                            "acquired; the previous holder died holding the lock");
    } else {
        mp__mgr_reply_none(c);
    }
}

/* The session that holds o once c's request acquires it: c's own, except
 * for a plain Lock acquired in CPython's dialect, which has no owner in
 * Python (any thread may release it, and the thread that took it may end
 * first): the server-wide session of Python's references holds it, so it
 * is never released behind Python's back (mgr_server_py.c). */
static struct session *slock_owner(struct sobj *o, struct sconn *c)
{
    struct session *py = o->kind == K_LOCK && c->py ? mp__mgr_py_lock_owner(c->srv) : NULL;
    return py ? py : c->sess;
}

/* A Condition's own lock is an RLock, as Python's Condition() makes. */
static bool slock_reentrant(const struct sobj *o)
{
    return o->kind != K_LOCK;
}

void mp__mgr_lock_give_back(struct server *s, struct sobj *o, struct waiter *w)
{
    struct sconn *wc = w->conn;
    MP__ASSERT(o->count == 0 && w->op == W_REACQUIRE && w->saved > 0);
    slock_give(o, slock_owner(o, wc), w->tid);
    o->count = w->saved;
    if (o->owner_dead) {
        o->owner_dead = false;
        mp__mgr_reply_error(wc, MP_EOWNERDEAD, "woken; the previous holder died holding the lock");
    } else if (w->notified) {
        mp__mgr_reply_none(wc);
    } else {
        mp__mgr_reply_error(wc, MP_ETIMEDOUT, "not notified in time");
    }
    mp__mgr_waiter_replied(s, w);
}

void mp__mgr_lock_grant_next(struct server *s, struct sobj *o)
{
    struct waiter *w;
    if (mp__mgr_is_sem(o)) {
        mp__mgr_sem_grant_next(s, o);
        return;
    }
    while (o->count == 0 && (w = mp__list_first(&o->acquirers.l)) != NULL) {
        struct sconn *wc = w->conn;
        MP__ASSERT(w->obj == o && (w->op == W_ACQUIRE || w->op == W_REACQUIRE));
        if (mp__mgr_conn_gone(wc)) {
            mp__mgr_waiter_free(s, w);
            continue;
        }
        if (w->op == W_REACQUIRE) {
            mp__mgr_lock_give_back(s, o, w);
            continue;
        }
        slock_give(o, slock_owner(o, wc), w->tid);
        slock_reply_acquired(wc, o);
        mp__mgr_waiter_replied(s, w);
    }
}

bool mp__mgr_lock_is_owned(const struct sobj *o, const struct sconn *c, uint64_t tid)
{
    /* A plain Lock has no owner: held is owned, as Python's Condition
     * judges it (_is_owned). */
    if (!slock_reentrant(o))
        return o->count > 0;
    return o->count > 0 && o->owner == c->sess && o->owner_tid == tid;
}

void mp__mgr_locks_release_session(struct server *s, struct session *ss)
{
    for (struct sobj *o = mp__list_first(&s->locks); o; o = mp__list_next(&s->locks, o)) {
        if (mp__mgr_is_sem(o)) {
            mp__mgr_sem_release_session(s, o, ss);
        } else if (o->count && o->owner == ss) {
            o->count = 0;
            o->owner = NULL;
            o->owner_dead = true;
            mp__mgr_lock_grant_next(s, o);
        }
    }
}

static int slock_acquire(const struct req *r)
{
    struct sconn *c = r->c;
    struct sobj *o = r->o;
    double timeout;
    int64_t tid;
    if (mp__mgr_arg_timeout(mp__mgr_arg(r, 0), &timeout) < 0 ||
        mp_obj_get_int(mp__mgr_arg(r, 1), &tid) < 0)
        return MP_ETYPE;
    if (o->count == 0) {
        slock_give(o, slock_owner(o, c), (uint64_t)tid);
        slock_reply_acquired(c, o);
        return 0;
    }
    if (slock_reentrant(o) && o->owner == c->sess && o->owner_tid == (uint64_t)tid) {
        o->count++;
        mp__mgr_reply_none(c);
        return 0;
    }
    if (timeout == 0) {
        mp__mgr_reply_error(c, MP_ETIMEDOUT, "the lock is held");
        return 0;
    }
    return mp__mgr_wait(r, &o->acquirers, W_ACQUIRE, timeout, (uint64_t)tid, NULL);
}

static int slock_release(const struct req *r)
{
    struct sconn *c = r->c;
    struct sobj *o = r->o;
    int64_t tid;
    if (mp_obj_get_int(mp__mgr_arg(r, 0), &tid) < 0)
        return MP_ETYPE;
    if (o->count == 0) {
        mp__mgr_reply_error(c, MP_EVALUE, "release unlocked lock");
        return 0;
    }
    if (slock_reentrant(o) && (o->owner != c->sess || o->owner_tid != (uint64_t)tid)) {
        mp__mgr_reply_error(c, MP_EVALUE, "cannot release un-acquired lock");
        return 0;
    }
    if (--o->count == 0) {
        o->owner = NULL;
        /* The next waiter gets it around this reply (mp__mgr_after_reply;
         * mgr_server_conn.c's conn_answered picks the order: a mailbox
         * releaser's reply first - a store - and a socket releaser's after
         * the grant, so the woken releaser does not take the CPU before the
         * grant is out). No request is handled in between, so nobody can
         * take the lock out of turn. */
        if (!mp__list_empty(&o->acquirers.l))
            r->s->grant = o;
    }
    mp__mgr_reply_none(c);
    return 0;
}

int mp__mgr_lock_acquire(const struct req *r)
{
    return slock_acquire(r);
}

int mp__mgr_lock_release(const struct req *r)
{
    return slock_release(r);
}

/* Every lock is on the server's list, for mp__mgr_locks_release_session. */
static int slock_init(const struct req *r, struct sobj *o)
{
    mp__list_push_front(&r->s->locks, o);
    return 0;
}

static void slock_fini(struct server *s, struct sobj *o)
{
    mp__list_remove(&s->locks, o);
}

static const struct method lock_methods[] = {
    {"acquire", 2, 2, slock_acquire},
    {"release", 1, 1, slock_release},
};

const struct stype mp__mgr_type_lock = {"lock", MP__MGR_METHODS(lock_methods), slock_init,
                                        slock_fini};
const struct stype mp__mgr_type_rlock = {"rlock", MP__MGR_METHODS(lock_methods), slock_init,
                                         slock_fini};
