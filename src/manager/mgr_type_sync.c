/*
 * mgr_type_sync - the manager server's Semaphore, BoundedSemaphore, Event,
 * Condition and Barrier: their state, their methods with their tables, and
 * what happens when a holder or a waiter dies. Static functions: ssync_.
 * Siblings: mgr_type_lock.c (a Condition's lock), mgr_type_queue.c.
 */
#include "manager/mgr_server.h"

#include <errno.h>
#include <stdlib.h>

/* What one session holds of a semaphore. */
struct ssync_hold {
    struct session *ss;
    int64_t n;
};

struct mp__mgr_sync {
    /* K_SEMAPHORE, K_BSEMAPHORE: the free units, the bound (a
     * BoundedSemaphore's initial value), who holds the others. */
    int64_t value, bound;
    struct ssync_hold *holds;
    size_t nholds, cap;
    /* K_EVENT */
    bool flag;
    /* K_CONDITION: the id of the Lock or RLock it uses, 0 for its own. */
    int64_t lock_id;
    /* K_BARRIER: the parties, the default timeout, broken or not. */
    int64_t parties;
    double timeout;
    bool broken;
};

/* The session that holds what c's request acquires: c's own, except in
 * CPython's dialect, where a semaphore is never released behind Python's
 * back (as a plain Lock, mgr_type_lock.c): any thread may release it. */
static struct session *ssync_owner(struct sconn *c)
{
    struct session *py = c->py ? mp__mgr_py_lock_owner(c->srv) : NULL;
    return py ? py : c->sess;
}

/* ---- Semaphore and BoundedSemaphore ------------------------------------------ */

/* Take one unit for ss: 0 or -ENOMEM (nothing taken). */
static int ssync_sem_take(struct sobj *o, struct session *ss)
{
    struct mp__mgr_sync *y = o->sync;
    MP__ASSERT(y->value > 0);
    for (size_t i = 0; i < y->nholds; i++) {
        if (y->holds[i].ss == ss) {
            y->holds[i].n++;
            y->value--;
            return 0;
        }
    }
    if (y->nholds == y->cap) {
        struct ssync_hold *h = mp__array_grow(y->holds, &y->cap, sizeof *h, 4);
        if (!h)
            return -ENOMEM;
        y->holds = h;
    }
    y->holds[y->nholds++] = (struct ssync_hold){ss, 1};
    y->value--;
    return 0;
}

/* One unit comes back from ss: from what it holds, else from the first
 * holder (a semaphore released by another process than took it). */
static void ssync_sem_untake(struct mp__mgr_sync *y, struct session *ss)
{
    size_t at = 0;
    for (size_t i = 0; i < y->nholds; i++)
        if (y->holds[i].ss == ss)
            at = i;
    if (y->nholds == 0)
        return;
    if (--y->holds[at].n == 0)
        y->holds[at] = y->holds[--y->nholds];
}

/* The reply to a successful acquire: MP_EOWNERDEAD once after a holder
 * died holding units. */
static void ssync_reply_acquired(struct sconn *c, struct sobj *o)
{
    if (o->owner_dead) {
        o->owner_dead = false;
        mp__mgr_reply_error(c, MP_EOWNERDEAD, "acquired; a holder died holding the semaphore");
    } else {
        mp__mgr_reply_none(c);
    }
}

void mp__mgr_sem_grant_next(struct server *s, struct sobj *o)
{
    struct waiter *w;
    while (o->sync->value > 0 && (w = mp__list_first(&o->acquirers.l)) != NULL) {
        struct sconn *wc = w->conn;
        if (mp__mgr_conn_gone(wc)) { /* a dead waiter takes nothing */
            mp__mgr_waiter_free(s, w);
            continue;
        }
        if (ssync_sem_take(o, ssync_owner(wc)) < 0)
            return; /* out of memory: they keep waiting */
        ssync_reply_acquired(wc, o);
        mp__mgr_waiter_replied(s, w);
    }
}

void mp__mgr_sem_release_session(struct server *s, struct sobj *o, struct session *ss)
{
    struct mp__mgr_sync *y = o->sync;
    for (size_t i = 0; i < y->nholds; i++) {
        if (y->holds[i].ss == ss) {
            y->value += y->holds[i].n;
            y->holds[i] = y->holds[--y->nholds];
            o->owner_dead = true;
            mp__mgr_sem_grant_next(s, o);
            return;
        }
    }
}

/* acquire(timeout, tid) */
static int ssync_sem_acquire(const struct req *r)
{
    struct sobj *o = r->o;
    double timeout;
    int64_t tid;
    if (mp__mgr_arg_timeout(mp__mgr_arg(r, 0), &timeout) < 0 ||
        mp_obj_get_int(mp__mgr_arg(r, 1), &tid) < 0)
        return MP_ETYPE;
    /* Waiters first: a newcomer does not overtake them (and dead ones,
     * dropped here, hold up nobody). */
    if (o->sync->value > 0 && !mp__list_empty(&o->acquirers.l))
        mp__mgr_sem_grant_next(r->s, o);
    if (o->sync->value > 0 && mp__list_empty(&o->acquirers.l)) {
        int rc = ssync_sem_take(o, ssync_owner(r->c));
        if (rc < 0)
            return rc;
        ssync_reply_acquired(r->c, o);
        return 0;
    }
    if (timeout == 0) {
        mp__mgr_reply_error(r->c, MP_ETIMEDOUT, "the semaphore is at zero");
        return 0;
    }
    return mp__mgr_wait(r, &o->acquirers, W_ACQUIRE, timeout, (uint64_t)tid, NULL);
}

/* release(tid) */
static int ssync_sem_release(const struct req *r)
{
    struct sobj *o = r->o;
    struct mp__mgr_sync *y = o->sync;
    if (o->kind == K_BSEMAPHORE && y->value >= y->bound) {
        mp__mgr_reply_error(r->c, MP_EVALUE, "ValueError: Semaphore released too many times");
        return 0;
    }
    if (y->value == INT64_MAX) {
        mp__mgr_reply_error(r->c, MP_EVALUE, "ValueError: the semaphore's value would overflow");
        return 0;
    }
    y->value++;
    ssync_sem_untake(y, ssync_owner(r->c));
    if (!mp__list_empty(&o->acquirers.l))
        r->s->grant = o; /* after this reply, as a lock's release */
    mp__mgr_reply_none(r->c);
    return 0;
}

static int ssync_sem_get_value(const struct req *r)
{
    mp__mgr_reply_int(r->c, r->o->sync->value);
    return 0;
}

/* ---- Event ------------------------------------------------------------------------ */

static int ssync_event_set(const struct req *r)
{
    struct waiter *w;
    r->o->sync->flag = true;
    while ((w = mp__list_first(&r->o->getters.l)) != NULL) {
        if (!w->conn->broken)
            mp__mgr_reply_none(w->conn);
        mp__mgr_waiter_replied(r->s, w);
    }
    mp__mgr_reply_none(r->c);
    return 0;
}

static int ssync_event_clear(const struct req *r)
{
    r->o->sync->flag = false;
    mp__mgr_reply_none(r->c);
    return 0;
}

static int ssync_event_is_set(const struct req *r)
{
    mp__mgr_reply_bool(r->c, r->o->sync->flag);
    return 0;
}

/* wait(timeout): None once set, MP_ETIMEDOUT. */
static int ssync_event_wait(const struct req *r)
{
    double timeout;
    if (mp__mgr_arg_timeout(mp__mgr_arg(r, 0), &timeout) < 0)
        return MP_ETYPE;
    if (r->o->sync->flag) {
        mp__mgr_reply_none(r->c);
        return 0;
    }
    if (timeout == 0) {
        mp__mgr_reply_error(r->c, MP_ETIMEDOUT, "the event is not set");
        return 0;
    }
    return mp__mgr_wait(r, &r->o->getters, W_EVENT, timeout, 0, NULL);
}

/* ---- Condition ---------------------------------------------------------------------- */

/* The lock of condition o: itself, or the Lock or RLock it was made with
 * (NULL when that one is gone). */
static struct sobj *ssync_cond_lock(struct server *s, struct sobj *o)
{
    return o->sync->lock_id ? mp__mgr_obj_find(s, o->sync->lock_id) : o;
}

/* Run a lock method on the condition's lock. */
static int ssync_cond_on_lock(const struct req *r, int (*fn)(const struct req *r))
{
    struct sobj *lo = ssync_cond_lock(r->s, r->o);
    if (!lo)
        return MP_ENOOBJ;
    const struct req lr = {r->s, r->c, lo, r->args};
    return fn(&lr);
}

static int ssync_cond_acquire(const struct req *r)
{
    return ssync_cond_on_lock(r, mp__mgr_lock_acquire);
}

static int ssync_cond_release(const struct req *r)
{
    return ssync_cond_on_lock(r, mp__mgr_lock_release);
}

/* The condition's lock when the request's thread (argument i) holds it;
 * else NULL with the error replied or returned in *rc. */
static struct sobj *ssync_cond_owned(const struct req *r, size_t i, const char *what, int *rc)
{
    int64_t tid;
    *rc = 0;
    if (mp_obj_get_int(mp__mgr_arg(r, i), &tid) < 0) {
        *rc = MP_ETYPE;
        return NULL;
    }
    struct sobj *lo = ssync_cond_lock(r->s, r->o);
    if (!lo) {
        *rc = MP_ENOOBJ;
        return NULL;
    }
    if (!mp__mgr_lock_is_owned(lo, r->c, (uint64_t)tid)) {
        mp__mgr_reply_error(r->c, MP_EVALUE, what);
        return NULL;
    }
    return lo;
}

/* wait(timeout, tid): release the lock, wait for a notify or the
 * timeout, take the lock back; then None (notified) or MP_ETIMEDOUT. */
static int ssync_cond_wait(const struct req *r)
{
    double timeout;
    int rc;
    if (mp__mgr_arg_timeout(mp__mgr_arg(r, 0), &timeout) < 0)
        return MP_ETYPE;
    struct sobj *lo = ssync_cond_owned(r, 1, "cannot wait on un-acquired lock", &rc);
    if (!lo)
        return rc;
    if (timeout == 0) {
        /* Released and taken back at once: nobody ran in between. */
        mp__mgr_reply_error(r->c, MP_ETIMEDOUT, "not notified in time");
        return 0;
    }
    int64_t tid = 0;
    (void)mp_obj_get_int(mp__mgr_arg(r, 1), &tid); /* checked by ssync_cond_owned */
    rc = mp__mgr_wait(r, &r->o->getters, W_CWAIT, timeout, (uint64_t)tid, NULL);
    if (rc < 0)
        return rc;
    r->c->waiter->saved = lo->count;
    lo->count = 0;
    lo->owner = NULL;
    mp__mgr_lock_grant_next(r->s, lo);
    return 0;
}

/* Move up to n live waiters of condition o on to taking its lock back. */
static int64_t ssync_cond_wake(struct server *s, struct sobj *o, struct sobj *lo, int64_t n)
{
    int64_t done = 0;
    struct waiter *w;
    while (done < n && (w = mp__list_first(&o->getters.l)) != NULL) {
        if (mp__mgr_conn_gone(w->conn)) { /* a dead waiter never eats a notify */
            mp__mgr_waiter_free(s, w);
            continue;
        }
        w->notified = true;
        mp__mgr_waiter_move(s, w, lo, &lo->acquirers, W_REACQUIRE);
        done++;
    }
    return done;
}

/* notify(n, tid) and notify_all(tid): how many were woken. */
static int ssync_cond_notify(const struct req *r)
{
    int64_t n;
    int rc;
    if (mp_obj_get_int(mp__mgr_arg(r, 0), &n) < 0)
        return MP_ETYPE;
    struct sobj *lo = ssync_cond_owned(r, 1, "cannot notify on un-acquired lock", &rc);
    if (lo)
        mp__mgr_reply_int(r->c, ssync_cond_wake(r->s, r->o, lo, n));
    return rc;
}

static int ssync_cond_notify_all(const struct req *r)
{
    int rc;
    struct sobj *lo = ssync_cond_owned(r, 0, "cannot notify on un-acquired lock", &rc);
    if (lo)
        mp__mgr_reply_int(r->c, ssync_cond_wake(r->s, r->o, lo, INT64_MAX));
    return rc;
}

void mp__mgr_cond_expire(struct server *s, struct waiter *w)
{
    struct sobj *lo = ssync_cond_lock(s, w->obj);
    if (!lo) {
        mp__mgr_waiter_fail(s, w, MP_ENOOBJ);
        return;
    }
    w->notified = false;
    mp__mgr_waiter_move(s, w, lo, &lo->acquirers, W_REACQUIRE);
    mp__mgr_lock_grant_next(s, lo);
}

/* ---- Barrier ------------------------------------------------------------------------ */

/* The live waiters of barrier o; the dead ones are dropped. */
static int64_t ssync_barrier_live(struct server *s, struct sobj *o)
{
    int64_t n = 0;
    struct waiter *w = mp__list_first(&o->getters.l);
    while (w) {
        struct waiter *next = mp__list_next(&o->getters.l, w);
        if (mp__mgr_conn_gone(w->conn))
            mp__mgr_waiter_free(s, w);
        else
            n++;
        w = next;
    }
    return n;
}

/* Break the barrier: every waiter gets MP_EBROKEN. */
static void ssync_barrier_break(struct server *s, struct sobj *o, bool broken)
{
    o->sync->broken = broken;
    mp__mgr_wq_fail_all(s, &o->getters, MP_EBROKEN);
}

void mp__mgr_barrier_expire(struct server *s, struct waiter *w)
{
    ssync_barrier_break(s, w->obj, true); /* w is one of them */
}

/* wait(timeout): this one's index among the parties (the last to come
 * gets parties - 1), or MP_EBROKEN. */
static int ssync_barrier_wait(const struct req *r)
{
    struct sobj *o = r->o;
    double timeout;
    if (mp__mgr_arg_timeout(mp__mgr_arg(r, 0), &timeout) < 0)
        return MP_ETYPE;
    if (mp_obj_is_none(mp__mgr_arg(r, 0)))
        timeout = o->sync->timeout;
    if (o->sync->broken) {
        mp__mgr_reply_error(r->c, MP_EBROKEN, "BrokenBarrierError");
        return 0;
    }
    int64_t live = ssync_barrier_live(r->s, o);
    if (live + 1 >= o->sync->parties) {
        int64_t i = 0;
        struct waiter *w;
        while ((w = mp__list_first(&o->getters.l)) != NULL) {
            mp__mgr_reply_int(w->conn, i++);
            mp__mgr_waiter_replied(r->s, w);
        }
        mp__mgr_reply_int(r->c, i);
        return 0;
    }
    if (timeout == 0) {
        ssync_barrier_break(r->s, o, true);
        mp__mgr_reply_error(r->c, MP_EBROKEN, "BrokenBarrierError: timed out");
        return 0;
    }
    return mp__mgr_wait(r, &o->getters, W_BARRIER, timeout, 0, NULL);
}

static int ssync_barrier_abort(const struct req *r)
{
    ssync_barrier_break(r->s, r->o, true);
    mp__mgr_reply_none(r->c);
    return 0;
}

static int ssync_barrier_reset(const struct req *r)
{
    ssync_barrier_break(r->s, r->o, false);
    mp__mgr_reply_none(r->c);
    return 0;
}

static int ssync_barrier_parties(const struct req *r)
{
    mp__mgr_reply_int(r->c, r->o->sync->parties);
    return 0;
}

static int ssync_barrier_n_waiting(const struct req *r)
{
    mp__mgr_reply_int(r->c, ssync_barrier_live(r->s, r->o));
    return 0;
}

static int ssync_barrier_broken(const struct req *r)
{
    mp__mgr_reply_bool(r->c, r->o->sync->broken);
    return 0;
}

/* ---- making and freeing ---------------------------------------------------------- */

/* create's initial value (argument 2) of each kind:
 *   semaphore, boundedsemaphore: the value (None: 1), >= 0;
 *   event: None;
 *   condition: None (a lock of its own, an RLock) or the id of a Lock or
 *     RLock, which the creator's session then holds;
 *   barrier: parties, or (parties, timeout), parties >= 1. */
static int ssync_init_value(const struct req *r, struct sobj *o, const mp_obj *init)
{
    struct mp__mgr_sync *y = o->sync;
    int64_t v = 1;
    switch (o->kind) {
    case K_SEMAPHORE:
    case K_BSEMAPHORE:
        if (!mp_obj_is_none(init) && mp_obj_get_int(init, &v) < 0)
            return MP_ETYPE;
        if (v < 0)
            return MP_EVALUE;
        y->value = y->bound = v;
        return 0;
    case K_EVENT:
        return 0;
    case K_CONDITION: {
        if (mp_obj_is_none(init))
            return 0;
        if (mp_obj_get_int(init, &v) < 0)
            return MP_ETYPE;
        struct sobj *lo = mp__mgr_obj_find(r->s, v);
        if (!lo)
            return MP_ENOOBJ;
        if (lo->kind != K_LOCK && lo->kind != K_RLOCK)
            return MP_ETYPE;
        y->lock_id = v;
        return r->c->sess ? mp__mgr_session_hold(r->c->sess, lo) : 0;
    }
    default: {
        MP__ASSERT(o->kind == K_BARRIER);
        const mp_obj *parties = init;
        y->timeout = MP_FOREVER;
        if (mp_obj_type(init) == MP_TYPE_TUPLE && mp_obj_len(init) == 2) {
            parties = mp_obj_list_get(init, 0);
            if (mp__mgr_arg_timeout(mp_obj_list_get(init, 1), &y->timeout) < 0)
                return MP_ETYPE;
        }
        if (mp_obj_get_int(parties, &y->parties) < 0)
            return MP_ETYPE;
        return y->parties < 1 ? MP_EVALUE : 0;
    }
    }
}

static int ssync_init(const struct req *r, struct sobj *o)
{
    o->sync = calloc(1, sizeof *o->sync);
    if (!o->sync)
        return -ENOMEM;
    if (mp__mgr_is_sem(o) || o->kind == K_CONDITION)
        mp__list_push_front(&r->s->locks, o); /* for mp__mgr_locks_release_session */
    return ssync_init_value(r, o, mp__mgr_arg(r, 2));
}

static void ssync_fini(struct server *s, struct sobj *o)
{
    if (!o->sync)
        return;
    if (mp__mgr_is_sem(o) || o->kind == K_CONDITION)
        mp__list_remove(&s->locks, o);
    free(o->sync->holds);
    free(o->sync);
    o->sync = NULL;
}

static const struct method sem_methods[] = {
    {"acquire", 2, 2, ssync_sem_acquire},
    {"release", 1, 1, ssync_sem_release},
    {"get_value", 0, 0, ssync_sem_get_value},
};

static const struct method event_methods[] = {
    {"set", 0, 0, ssync_event_set},
    {"clear", 0, 0, ssync_event_clear},
    {"is_set", 0, 0, ssync_event_is_set},
    {"wait", 1, 1, ssync_event_wait},
};

static const struct method cond_methods[] = {
    {"acquire", 2, 2, ssync_cond_acquire},
    {"release", 1, 1, ssync_cond_release},
    {"wait", 2, 2, ssync_cond_wait},
    {"notify", 2, 2, ssync_cond_notify},
    {"notify_all", 1, 1, ssync_cond_notify_all},
};

static const struct method barrier_methods[] = {
    {"wait", 1, 1, ssync_barrier_wait},           {"abort", 0, 0, ssync_barrier_abort},
    {"reset", 0, 0, ssync_barrier_reset},         {"parties", 0, 0, ssync_barrier_parties},
    {"n_waiting", 0, 0, ssync_barrier_n_waiting}, {"broken", 0, 0, ssync_barrier_broken},
};

const struct stype mp__mgr_type_semaphore = {"semaphore", MP__MGR_METHODS(sem_methods), ssync_init,
                                             ssync_fini};
const struct stype mp__mgr_type_bsemaphore = {"boundedsemaphore", MP__MGR_METHODS(sem_methods),
                                              ssync_init, ssync_fini};
const struct stype mp__mgr_type_event = {"event", MP__MGR_METHODS(event_methods), ssync_init,
                                         ssync_fini};
const struct stype mp__mgr_type_condition = {"condition", MP__MGR_METHODS(cond_methods), ssync_init,
                                             ssync_fini};
const struct stype mp__mgr_type_barrier = {"barrier", MP__MGR_METHODS(barrier_methods), ssync_init,
                                           ssync_fini};
