/*
 * pool_lazy.c - imap and imap_unordered over a producer callback
 * (mp_pool_imap_gen): Python's imap over a generator, with memory bounded.
 *
 * Design. The items are taken from the producer, in the caller's thread,
 * in segments of processes x chunksize items; each segment is an ordinary
 * imap job (pool_submit.c, pool_job.c). At most LAZY_SEGS segments are
 * outstanding; one more is produced only once the caller has taken every
 * item of one (mp_imap_next), so the items alive at any moment - produced,
 * in flight, or done and not yet taken - are at most LAZY_SEGS x processes
 * x chunksize, however long the producer runs. (Python's imap has a task
 * thread feed the whole generator as fast as it can; its memory is not
 * bounded.)
 *
 * A keeper job sits in the pool's cache from the start until the producer
 * has ended (or the iterator is freed): close() then lets the iteration run
 * on, as Python's close() lets a started imap finish, and join() waits for
 * it. A failure that belongs to no segment - the producer's own, an item
 * that cannot be pickled, a pool terminated before a segment could be sent
 * - is an entry of its own in the FIFO, at its position.
 *
 * pool_impl.h lists the siblings. Statics start with lazy_.
 */
#include "pool/pool_impl.h"

#include <stdarg.h>
#include <stdio.h>

/* Segments outstanding at most. */
#define LAZY_SEGS 4

/* A segment: an imap job over items [base, base + n), or (job NULL) the
 * failure of the item at base. */
struct lazy_seg {
    struct mp_result *job;
    size_t base;
    struct fail fail;
};

struct mp__pool_lazy {
    struct mp_result *keeper; /* NULL once released */
    int kind;                 /* K_IMAP or K_IMAPU */
    mp_obj_fn fn;
    mp_producer_fn producer;
    void *user;
    size_t chunksize, seg_items;
    /* Oldest first. A refill adds at most a job and a failure while
     * nseg < LAZY_SEGS. */
    struct lazy_seg seg[LAZY_SEGS + 1];
    unsigned nseg;
    size_t produced; /* items taken from the producer */
    bool ended;      /* the producer will not be called again */
    mp_obj **buf;    /* seg_items: one segment's items while it is made */
    struct mp__pool_wake wake;
};

/* The pool, while the keeper holds it (NULL once it was terminated or
 * freed, or the keeper was released). */
static mp_pool *lazy_pool(struct mp__pool_lazy *L)
{
    if (!L->keeper)
        return NULL;
    mp__pool_job_lock(L->keeper);
    mp_pool *p = L->keeper->pool;
    mp__pool_job_unlock(L->keeper);
    return p;
}

/* The producer has ended: let the pool's close() and join() go on. */
static void lazy_release_keeper(struct mp__pool_lazy *L)
{
    struct mp_result *k = L->keeper;
    if (!k)
        return;
    mp_pool *p = lazy_pool(L);
    L->keeper = NULL;
    if (p)
        mp__pool_job_chunks_done(p, k, 1); /* finishes it: out of the cache */
    mp__pool_job_unref(k);
}

static void lazy_end(struct mp__pool_lazy *L)
{
    L->ended = true;
    lazy_release_keeper(L);
}

static void lazy_push_fail(struct mp__pool_lazy *L, size_t index, int status, int code,
                           const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void lazy_push_fail(struct mp__pool_lazy *L, size_t index, int status, int code,
                           const char *fmt, ...)
{
    MP__ASSERT(L->nseg <= LAZY_SEGS);
    struct lazy_seg *s = &L->seg[L->nseg++];
    s->job = NULL;
    s->base = index;
    s->fail.index = index;
    s->fail.status = status;
    s->fail.code = code;
    va_list ap;
    va_start(ap, fmt);
    (void)vsnprintf(s->fail.msg, sizeof s->fail.msg, fmt, ap);
    va_end(ap);
}

static void lazy_push_job(struct mp__pool_lazy *L, struct mp_result *j, size_t base)
{
    MP__ASSERT(L->nseg <= LAZY_SEGS);
    L->seg[L->nseg++] = (struct lazy_seg){.job = j, .base = base};
}

/* Send items buf[0, k) (the producer's, freed here) as the segment at
 * L->produced. A failure ends the iteration at the item it concerns. */
static void lazy_send(struct mp__pool_lazy *L, mp_pool *p, size_t k)
{
    size_t base = L->produced, bad;
    struct mp_result *j;
    int rc = mp__pool_submit_items(p, L->kind, L->fn, L->buf, k, L->chunksize, &L->wake, &j, &bad);
    if (rc == 0) {
        lazy_push_job(L, j, base);
    } else if (bad < k) {
        /* An item that cannot be pickled (Python's task handler fails that
         * task): the items before it still run; the iteration ends there. */
        size_t bad2;
        if (bad > 0 && mp__pool_submit_items(p, L->kind, L->fn, L->buf, bad, L->chunksize, &L->wake,
                                             &j, &bad2) == 0)
            lazy_push_job(L, j, base);
        lazy_push_fail(L, base + bad, rc, rc, "cannot pickle item %zu for the task", base + bad);
        lazy_end(L);
    } else {
        int st = rc == MP_ECLOSED ? MP_ETERMINATED : rc;
        lazy_push_fail(L, base, st, st, "%s",
                       st == MP_ETERMINATED ? "pool was terminated before the task finished"
                                            : "out of memory submitting the imap's items");
        lazy_end(L);
    }
    for (size_t i = 0; i < k; i++)
        mp_obj_free(L->buf[i]);
    L->produced += k;
}

/* Take up to one segment from the producer. Returns its last return: 1
 * (more to come), 0 (the end) or its failure. */
static int lazy_produce(struct mp__pool_lazy *L, size_t *k)
{
    int rc = 1;
    *k = 0;
    while (*k < L->seg_items) {
        mp_obj *item = NULL;
        rc = L->producer(L->user, &item);
        if (rc != 1)
            break;
        if (!item && !(item = mp_obj_none())) {
            rc = -ENOMEM;
            break;
        }
        L->buf[(*k)++] = item;
    }
    return rc;
}

/* Produce and send segments until LAZY_SEGS are outstanding or the
 * producer has ended. */
static void lazy_refill(struct mp__pool_lazy *L)
{
    while (!L->ended && L->nseg < LAZY_SEGS) {
        mp_pool *p = lazy_pool(L);
        if (!p) {
            lazy_push_fail(L, L->produced, MP_ETERMINATED, MP_ETERMINATED,
                           "pool was terminated before the task finished");
            lazy_end(L);
            return;
        }
        size_t k;
        int rc = lazy_produce(L, &k);
        if (k > 0)
            lazy_send(L, p, k);
        if (L->ended)
            return;
        if (rc < 0)
            lazy_push_fail(L, L->produced, MP_ETASK, rc, "the imap producer failed with code %d",
                           rc);
        if (rc != 1)
            lazy_end(L);
    }
}

/* Remove segment i: every item of it was taken (or the iterator goes). */
static void lazy_drop(struct mp__pool_lazy *L, unsigned i, bool abandon)
{
    struct mp_result *j = L->seg[i].job;
    if (j) {
        mp__pool_job_lock(j);
        j->wake = NULL; /* L->wake may die before the job does */
        mp__pool_job_unlock(j);
        if (abandon)
            mp__pool_job_abandon(j);
        mp__pool_job_unref(j);
    }
    L->nseg--;
    memmove(&L->seg[i], &L->seg[i + 1], (L->nseg - i) * sizeof L->seg[0]);
}

/* Hand out failure segment i: its status, described in err. */
static int lazy_take_fail(struct mp__pool_lazy *L, unsigned i, size_t *index, mp_task_error *err)
{
    struct fail f = L->seg[i].fail;
    lazy_drop(L, i, false);
    if (index)
        *index = f.index;
    mp__err(f.status, "%s", f.msg);
    if (err) {
        err->status = f.status;
        err->code = f.code;
        err->index = f.index;
        snprintf(err->message, sizeof err->message, "%s", f.msg);
    }
    return f.status;
}

/* One answer of segment i's job, its indexes made the iteration's; 0
 * (exhausted) drops the segment. */
static int lazy_from_job(struct mp__pool_lazy *L, unsigned i, size_t *index, mp_obj **value,
                         mp_task_error *err, int64_t deadline)
{
    size_t local = SIZE_MAX, base = L->seg[i].base;
    int rc = mp__pool_imap_next_job(L->seg[i].job, &local, value, err, deadline);
    if (rc == 0) {
        lazy_drop(L, i, false);
        return 0;
    }
    if (local != SIZE_MAX && index)
        *index = base + local;
    if (rc < 0 && rc != MP_ETIMEDOUT && err)
        err->index += base;
    return rc;
}

int mp__pool_lazy_next(mp_imap *it, size_t *index, mp_obj **value, mp_task_error *err,
                       double timeout)
{
    struct mp__pool_lazy *L = it->lazy;
    int64_t deadline = mp__deadline(timeout);
    for (;;) {
        lazy_refill(L);
        if (L->nseg == 0)
            return 0; /* Python's StopIteration */
        if (L->kind == K_IMAP) {
            if (!L->seg[0].job)
                return lazy_take_fail(L, 0, index, err);
            int rc = lazy_from_job(L, 0, index, value, err, deadline);
            if (rc != 0)
                return rc;
            continue;
        }
        /* imap_unordered: whichever segment has an item; else wait for
         * any of them to move (seq read first: no wake-up is lost). */
        pthread_mutex_lock(&L->wake.mu);
        uint64_t seen = L->wake.seq;
        pthread_mutex_unlock(&L->wake.mu);
        bool dropped = false;
        for (unsigned i = 0; i < L->nseg && !dropped; i++) {
            if (!L->seg[i].job)
                return lazy_take_fail(L, i, index, err);
            int rc = lazy_from_job(L, i, index, value, err, mp__deadline(MP_NOWAIT));
            if (rc == 0)
                dropped = true;
            else if (rc != MP_ETIMEDOUT)
                return rc;
        }
        if (dropped)
            continue;
        bool timed_out = false;
        pthread_mutex_lock(&L->wake.mu);
        while (L->wake.seq == seen && !timed_out)
            timed_out = !mp__pool_cond_wait_until(&L->wake.cv, &L->wake.mu, deadline);
        pthread_mutex_unlock(&L->wake.mu);
        if (timed_out)
            return MP_ETIMEDOUT;
    }
}

static void lazy_destroy(mp_imap *it)
{
    struct mp__pool_lazy *L = it->lazy;
    while (L->nseg > 0)
        lazy_drop(L, L->nseg - 1, true);
    lazy_release_keeper(L);
    pthread_cond_destroy(&L->wake.cv);
    pthread_mutex_destroy(&L->wake.mu);
    free(L->buf);
    free(L);
    free(it);
}

void mp__pool_lazy_free(mp_imap *it)
{
    lazy_destroy(it);
}

/* The keeper: a job in the pool's cache that is never sent, so close()
 * waits for the producer's end (p->mu taken here). */
static int lazy_keep(struct mp__pool_lazy *L, mp_pool *p)
{
    int rc = mp__pool_job_new(&L->keeper, p, K_APPLY, F_BYTES, 0, 1, 1);
    if (rc < 0)
        return rc;
    mp__pool_lock(p);
    rc = p->state == P_RUN ? 0 : MP_ECLOSED;
    if (rc == 0)
        mp__pool_cache_add_locked(p, L->keeper);
    mp__pool_unlock(p);
    if (rc < 0) {
        mp__pool_job_unref(L->keeper);
        L->keeper = NULL;
    }
    return rc;
}

static int lazy_new(mp_pool *p, int kind, mp_obj_fn fn, mp_producer_fn producer, void *user,
                    size_t chunksize, mp_imap **out)
{
    if (out)
        *out = NULL;
    int rc = mp__pool_check(p);
    if (rc < 0)
        return rc;
    if (!fn || !producer || !out)
        return -EINVAL;
    uint64_t ref;
    if ((rc = mp__pool_task_ref(p, F_OBJ_MAP, (uint64_t)(uintptr_t)fn, &ref)) < 0)
        return rc; /* an unregistered task under spawn: refused before any item */
    if (chunksize == 0)
        chunksize = 1; /* Python's imap default */
    if (chunksize > UINT32_MAX / (size_t)p->nproc)
        return -EINVAL;
    mp_imap *it = calloc(1, sizeof *it);
    struct mp__pool_lazy *L = calloc(1, sizeof *L);
    if (L)
        L->seg_items = chunksize * (size_t)p->nproc;
    if (L)
        L->buf = malloc(L->seg_items * sizeof *L->buf);
    if (!it || !L || !L->buf) {
        free(L ? L->buf : NULL);
        free(L);
        free(it);
        return -ENOMEM;
    }
    if (mp__pool_cond_init(&L->wake.cv) < 0) {
        free(L->buf);
        free(L);
        free(it);
        return -ENOMEM;
    }
    (void)pthread_mutex_init(&L->wake.mu, NULL); /* a default mutex: cannot fail */
    it->job.gen = p->gen;
    it->job.kind = K_IMAP; /* refused by the mp_result calls */
    it->lazy = L;
    L->kind = kind;
    L->fn = fn;
    L->producer = producer;
    L->user = user;
    L->chunksize = chunksize;
    rc = lazy_keep(L, p);
    if (rc < 0) {
        lazy_destroy(it);
        return rc;
    }
    lazy_refill(L); /* Python's imap starts feeding at once */
    *out = it;
    return 0;
}

MP_API int mp_pool_imap_gen(mp_pool *p, mp_obj_fn fn, mp_producer_fn producer, void *user,
                            size_t chunksize, mp_imap **it)
{
    return lazy_new(p, K_IMAP, fn, producer, user, chunksize, it);
}

MP_API int mp_pool_imap_unordered_gen(mp_pool *p, mp_obj_fn fn, mp_producer_fn producer, void *user,
                                      size_t chunksize, mp_imap **it)
{
    return lazy_new(p, K_IMAPU, fn, producer, user, chunksize, it);
}
