/*
 * pool_job.c - the job behind an mp_result or mp_imap: its references, the
 * bookkeeping of its chunks and items, how it finishes (callback, ready),
 * and the caller's side: get, wait, ready, successful, imap's next.
 * Its siblings are listed in pool_impl.h; pool_submit.c makes jobs.
 */
#include "pool/pool_impl.h"

#include "codec/pickle.h"

#include <stdio.h>

#ifdef MPIPC_ASSERTS
_Thread_local unsigned mp__pool_job_locks;
#endif

static int pool_job_check(const struct mp_result *j)
{
    if (!j)
        return -EINVAL;
    return j->gen == mp__forkgen() ? 0 : MP_EFORKED;
}

void mp__pool_job_unref(struct mp_result *j)
{
    int left = __atomic_sub_fetch(&j->refs, 1, __ATOMIC_ACQ_REL);
    MP__ASSERT(left >= 0);
    if (left != 0)
        return;
    free(j->blob);
    if (j->offs != j->offs_one)
        free(j->offs);
    if (j->vals) {
        for (size_t i = 0; i < j->n; i++)
            mp_obj_free(j->vals[i]);
        if (j->vals != j->vals_one)
            free(j->vals);
    }
    mp_obj_free(j->value);
    free(j->bytes_out);
    free(j->fails);
    free(j->fidx);
    free(j->st);
    free(j->order);
    pthread_mutex_destroy(&j->mu);
    pthread_cond_destroy(&j->cv);
    free(j);
}

/* The bookkeeping every job needs once its size and chunksize are known. */
static int pool_job_prepare(struct mp_result *j, size_t chunksize)
{
    if (j->n == 0) {
        j->chunksize = 0;
        j->nchunks = 0;
    } else {
        if (chunksize > j->n)
            chunksize = j->n;
        if (chunksize > UINT32_MAX)
            chunksize = UINT32_MAX;
        j->chunksize = chunksize;
        j->nchunks = j->n / chunksize + (j->n % chunksize != 0);
        MP__ASSERT(j->nchunks * j->chunksize >= j->n);
    }
    if (j->kind == K_IMAP || j->kind == K_IMAPU) {
        j->st = calloc(j->n ? j->n : 1, 1);
        if (!j->st)
            return -ENOMEM;
        if (j->kind == K_IMAPU) {
            j->order = malloc((j->n ? j->n : 1) * sizeof *j->order);
            if (!j->order)
                return -ENOMEM;
        }
    }
    if (j->form == F_OBJ_APPLY || j->form == F_OBJ_MAP || j->form == F_OBJ_STAR) {
        j->vals = j->n <= 1 ? j->vals_one : calloc(j->n, sizeof *j->vals);
        if (!j->vals)
            return -ENOMEM;
    }
    return 0;
}

int mp__pool_task_ref(const mp_pool *p, int form, uint64_t fn, uint64_t *ref)
{
    if (!p->by_id || fn == 0) {
        /* fork and forkserver: the address is the same there; 0: a job
         * that is never sent (an imap_gen's keeper) */
        *ref = fn;
        return 0;
    }
    int kind = form == F_BYTES ? MP_TASK_BYTES : form == F_ARRAY ? MP_TASK_ARRAY : MP_TASK_OBJ;
    if (mp__task_id(kind, (mp_task_fn)(uintptr_t)fn, ref) < 0)
        return mp__err(MP_EKEY,
                       "task %p is not registered: a spawn pool's workers find tasks by name "
                       "(MP_TASK(fn) or mp_task_register_*)",
                       (void *)(uintptr_t)fn);
    return 0;
}

/*
 * A new job of n items for pool p, in chunks of chunksize (capped at n),
 * holding the caller's reference. Returns 0, or -ENOMEM (MP_EKEY: see
 * mp__pool_task_ref) with *out NULL.
 */
int mp__pool_job_new(struct mp_result **out, mp_pool *p, int kind, int form, uint64_t fn, size_t n,
                     size_t chunksize)
{
    *out = NULL;
    uint64_t ref;
    int rc = mp__pool_task_ref(p, form, fn, &ref);
    if (rc < 0)
        return rc;
    size_t size =
        kind == K_IMAP || kind == K_IMAPU ? sizeof(struct mp_imap) : sizeof(struct mp_result);
    struct mp_result *j = calloc(1, size);
    if (!j)
        return -ENOMEM;
    if (pthread_mutex_init(&j->mu, NULL) != 0)
        goto fail;
    if (mp__pool_cond_init(&j->cv) < 0)
        goto fail_mu;
    j->refs = 1;
    j->gen = p->gen;
    j->pool = p;
    j->kind = kind;
    j->form = form;
    j->fn = ref;
    j->n = n;
    if (pool_job_prepare(j, chunksize) < 0) {
        mp__pool_job_unref(j);
        return -ENOMEM;
    }
    *out = j;
    return 0;

fail_mu:
    pthread_mutex_destroy(&j->mu);
fail:
    free(j);
    return -ENOMEM;
}

static void pool_set_fail(struct fail *f, size_t index, int status, int code, const char *msg)
{
    f->index = index;
    f->status = status;
    f->code = code;
    snprintf(f->msg, sizeof f->msg, "%s", msg);
}

/* Record that item `index` failed (j->mu held). */
void mp__pool_job_record_fail(struct mp_result *j, size_t index, int status, int code,
                              const char *msg)
{
    MP__ASSERT(index < j->n);
    if (j->kind == K_IMAP || j->kind == K_IMAPU) {
        if (!j->fidx) {
            j->fidx = calloc(j->n, sizeof *j->fidx);
            if (!j->fidx)
                return; /* the item still reads as failed, with a bare message */
        }
        if (j->nfails == j->capfails) {
            size_t ncap = j->capfails ? 2 * j->capfails : 4;
            struct fail *nf = realloc(j->fails, ncap * sizeof *nf);
            if (!nf)
                return;
            j->fails = nf;
            j->capfails = ncap;
        }
        pool_set_fail(&j->fails[j->nfails], index, status, code, msg);
        j->fidx[index] = j->nfails++;
        return;
    }
    if (j->status == 0 || index < j->first.index) {
        j->status = status;
        pool_set_fail(&j->first, index, status, code, msg);
    }
}

/* A submitted job enters the cache of unfinished jobs, which holds a
 * reference to it until it is finished (p->mu held). */
void mp__pool_cache_add_locked(mp_pool *p, struct mp_result *j)
{
    MP__POOL_ASSERT_HELD(p);
    mp__pool_job_ref(j);
    mp__list_push_front(&p->cache, j);
    p->ncache++;
}

/* Take a finished job out of the cache (p->mu held). Returns whether it
 * was there, so the caller drops the cache's reference. */
static bool pool_cache_remove_locked(mp_pool *p, struct mp_result *j)
{
    MP__POOL_ASSERT_HELD(p);
    if (!mp__list_linked(&p->cache, j))
        return false;
    MP__ASSERT(p->ncache > 0);
    /* every chunk was handed out, or terminate */
    MP__ASSERT(!mp__list_linked(&p->pending, j));
    mp__list_remove(&p->cache, j);
    if (--p->ncache == 0)
        mp__pool_wake_dispatcher_locked(p);
    return true;
}

/* Wake waiters on j (j->mu held): its own, and a lazy imap's over it. */
static void pool_job_wake(struct mp_result *j)
{
    pthread_cond_broadcast(&j->cv);
    if (j->wake) {
        pthread_mutex_lock(&j->wake->mu);
        j->wake->seq++;
        pthread_cond_broadcast(&j->wake->cv);
        pthread_mutex_unlock(&j->wake->mu);
    }
}

/* A successful value job's outcome (j->mu held): map's list of results in
 * input order, or apply's one value. */
static void pool_job_build_value(struct mp_result *j)
{
    if (j->kind == K_APPLY) {
        j->value = j->vals[0] ? j->vals[0] : mp_obj_none();
        j->vals[0] = NULL;
        return;
    }
    mp_obj *list = mp_obj_list_new();
    for (size_t i = 0; list && i < j->n; i++) {
        mp_obj *v = j->vals[i] ? j->vals[i] : mp_obj_none();
        if (!v || mp_obj_list_append(list, v) < 0) {
            if (v != j->vals[i])
                mp_obj_free(v);
            mp_obj_free(list);
            list = NULL;
            break;
        }
        j->vals[i] = NULL;
    }
    if (list) {
        j->value = list;
    } else {
        j->status = -ENOMEM;
        pool_set_fail(&j->first, 0, -ENOMEM, -ENOMEM, "out of memory building the result list");
    }
}

/*
 * Finish a job: every chunk is done (or the pool was terminated: term).
 * Runs its callback, makes it ready, takes it out of the cache and drops
 * the cache's reference. Called with no lock held, at most once per job.
 */
void mp__pool_job_finish(mp_pool *p, struct mp_result *j, bool term)
{
    mp__pool_job_lock(j);
    if (j->finished) {
        mp__pool_job_unlock(j);
        return;
    }
    MP__ASSERT(term || j->chunks_done == j->nchunks);
    int lost = 0; /* an ext server that is gone names what the jobs get */
    if (term) {
        mp__pool_job_unlock(j);
        mp__pool_lock(p);
        lost = p->broken ? p->ext.lost_status : 0;
        mp__pool_unlock(p);
        mp__pool_job_lock(j);
        if (j->finished) {
            mp__pool_job_unlock(j);
            return;
        }
    }
    j->finished = true;
    j->pool = NULL; /* j->mu guards it; nothing calls into the pool for j now */
    if (term) {
        j->status = lost ? lost : MP_ETERMINATED;
        pool_set_fail(&j->first, 0, j->status, j->status,
                      lost ? "the pool's workers are gone (their server stopped)"
                           : "pool was terminated before the task finished");
    }
    if (j->status == 0 && (j->kind == K_MAP || j->kind == K_APPLY) && j->vals)
        pool_job_build_value(j);
    mp_result_cb cb = j->status == 0 ? j->cbs.callback : j->cbs.error_callback;
    if (cb) {
        j->in_cb = true;
        j->cb_thread = pthread_self();
        mp__pool_job_unlock(j);
        cb(j, j->cbs.user);
        mp__pool_job_lock(j);
        j->in_cb = false;
    }
    j->ready = true;
    pool_job_wake(j);
    mp__pool_job_unlock(j);

    mp__pool_lock(p);
    bool was_cached = pool_cache_remove_locked(p, j);
    mp__pool_unlock(p);
    if (was_cached)
        mp__pool_job_unref(j);
}

/* k more chunks of j are done (delivered, failed or cancelled). */
void mp__pool_job_chunks_done(mp_pool *p, struct mp_result *j, size_t k)
{
    mp__pool_job_lock(j);
    MP__ASSERT(j->chunks_done + k <= j->nchunks); /* each chunk ends once */
    j->chunks_done += k;
    bool done = j->chunks_done >= j->nchunks && !j->finished;
    pool_job_wake(j);
    mp__pool_job_unlock(j);
    if (done)
        mp__pool_job_finish(p, j, false);
}

/* Fail every item of one chunk with the same error. */
void mp__pool_job_fail_chunk(mp_pool *p, struct mp_result *j, size_t chunk, int status, int code,
                             size_t at, const char *msg)
{
    size_t start, count;
    mp__pool_chunk_range(j, chunk, &start, &count);
    at = count ? at % count : 0;
    mp__pool_job_lock(j);
    if (!j->finished && !j->abandoned) {
        if (j->st) {
            /* imap: every item of the chunk is lost with it. */
            for (size_t i = 0; i < count; i++) {
                mp__pool_job_record_fail(j, start + i, status, code, msg);
                mp__pool_job_item_done(j, start + i, false);
            }
        } else {
            /* apply/map: the call fails with the item that was running. */
            mp__pool_job_record_fail(j, start + at, status, code, msg);
        }
    }
    mp__pool_job_unlock(j);
    mp__pool_job_chunks_done(p, j, 1);
}

/*
 * Stop a job the caller no longer waits for: nothing more is read from or
 * written to its arrays, and chunks not yet sent are cancelled (by the
 * dispatcher, which sees the flag).
 */
void mp__pool_job_abandon(struct mp_result *j)
{
    mp__pool_job_lock(j);
    bool finished = j->finished;
    mp_pool *p = j->pool;
    j->abandoned = true;
    mp__pool_job_unlock(j);
    if (finished || !p)
        return;
    mp__pool_lock(p);
    j->cancelled = true;
    mp__pool_wake_dispatcher_locked(p);
    mp__pool_unlock(p);
}

/* ---- the caller's side: results -------------------------------------------------- */

/* The outcome is visible to this thread (j->mu held): ready, or we are the
 * callback running for it. */
static bool pool_visible(const struct mp_result *j)
{
    return j->ready || (j->in_cb && pthread_equal(j->cb_thread, pthread_self()));
}

static int pool_wait_visible(struct mp_result *j, int64_t deadline)
{
    while (!pool_visible(j))
        if (!mp__pool_cond_wait_until(&j->cv, &j->mu, deadline))
            return MP_ETIMEDOUT;
    return 0;
}

/* The failure the caller's call returns: into err, and as the calling
 * thread's why for mp_errmsg (the result thread that learned it is not the
 * caller's). */
static void pool_fill_err(mp_task_error *err, const struct fail *f)
{
    if (f->msg[0])
        mp__err(f->status, "%s", f->msg);
    else
        mp__err_clear();
    if (!err)
        return;
    err->status = f->status;
    err->code = f->code;
    err->index = f->index;
    snprintf(err->message, sizeof err->message, "%s", f->msg);
}

void mp__pool_clear_err(mp_task_error *err)
{
    if (err)
        memset(err, 0, sizeof *err);
}

/* The checks a call on a result starts with; `value`: a call that takes
 * the outcome, which an imap iterator has none of. */
static int pool_result_check(const struct mp_result *r, bool value, double timeout)
{
    int rc = pool_job_check(r);
    if (rc == 0 && value && (r->kind == K_IMAP || r->kind == K_IMAPU))
        rc = -EINVAL;
    if (rc == 0 && mp__bad_timeout(timeout))
        rc = MP_EVALUE;
    return rc;
}

/* Check r, then wait until its outcome is visible to this thread: 0 or
 * MP_ETIMEDOUT; with `value`, a failure's status (described in err). */
static int pool_result_await(mp_result *r, bool value, double timeout, mp_task_error *err)
{
    int rc = pool_result_check(r, value, timeout);
    if (rc < 0)
        return rc;
    int64_t deadline = mp__deadline(timeout);
    mp__pool_job_lock(r);
    rc = pool_wait_visible(r, deadline);
    if (rc == 0 && value && r->status != 0) {
        rc = r->status;
        pool_fill_err(err, &r->first);
    }
    mp__pool_job_unlock(r);
    return rc;
}

/* Wait for r's outcome: 0, its failure status (described in err), or
 * MP_ETIMEDOUT. */
int mp__pool_result_get(mp_result *r, double timeout, mp_task_error *err)
{
    mp__pool_clear_err(err);
    return pool_result_await(r, true, timeout, err);
}

MP_API int mp_result_get(mp_result *r, const mp_obj **value, mp_task_error *err, double timeout)
{
    if (value)
        *value = NULL;
    int rc = mp__pool_result_get(r, timeout, err);
    if (rc == 0 && value)
        *value = r->value;
    return rc;
}

MP_API int mp_result_get_bytes(mp_result *r, const void **out, size_t *out_len, mp_task_error *err,
                               double timeout)
{
    if (out)
        *out = NULL;
    if (out_len)
        *out_len = 0;
    if (r && r->form != F_BYTES)
        return -EINVAL;
    int rc = mp__pool_result_get(r, timeout, err);
    if (rc == 0) {
        if (out)
            *out = r->bytes_out;
        if (out_len)
            *out_len = r->bytes_len;
    }
    return rc;
}

MP_API int mp_result_wait(mp_result *r, double timeout)
{
    return pool_result_await(r, false, timeout, NULL);
}

/* Without waiting: 1 if r's outcome is visible to this thread, else 0,
 * with its status in *status. */
static int pool_result_peek(mp_result *r, int *status)
{
    int rc = pool_job_check(r);
    if (rc < 0)
        return rc;
    mp__pool_job_lock(r);
    rc = pool_visible(r) ? 1 : 0;
    *status = r->status;
    mp__pool_job_unlock(r);
    return rc;
}

MP_API int mp_result_ready(mp_result *r)
{
    int status;
    return pool_result_peek(r, &status);
}

MP_API int mp_result_successful(mp_result *r)
{
    int status;
    int rc = pool_result_peek(r, &status);
    if (rc < 0)
        return rc;
    return rc == 0 ? MP_EVALUE : status == 0;
}

MP_API void mp_result_free(mp_result *r)
{
    if (!r || r->gen != mp__forkgen())
        return; /* in a forked child the copy is left alone */
    mp__pool_job_unref(r);
}

/* ---- the caller's side: imap iterators ---------------------------------------- */

/* Hand out item idx (j->mu held): 1, or its failure status. */
static int pool_imap_take(struct mp_result *j, size_t idx, size_t *index, mp_obj **value,
                          mp_task_error *err)
{
    MP__ASSERT(idx < j->n);
    MP__ASSERT(j->st[idx] == I_OK || j->st[idx] == I_FAIL); /* done, and taken once */
    if (index)
        *index = idx;
    if (j->st[idx] == I_FAIL) {
        j->st[idx] = I_TAKEN;
        if (j->fidx && j->nfails > j->fidx[idx] && j->fails[j->fidx[idx]].index == idx) {
            pool_fill_err(err, &j->fails[j->fidx[idx]]);
            return j->fails[j->fidx[idx]].status;
        }
        mp__err_clear(); /* no words for this one */
        if (err) {
            err->status = err->code = MP_ETASK;
            err->index = idx;
        }
        return MP_ETASK;
    }
    j->st[idx] = I_TAKEN;
    if (j->vals) {
        if (value) {
            *value = j->vals[idx] ? j->vals[idx] : mp_obj_none();
        } else {
            mp_obj_free(j->vals[idx]);
        }
        j->vals[idx] = NULL;
    }
    return 1;
}

/* The next item of an imap job (checked by the caller), waiting until the
 * deadline: mp_imap_next's returns. */
int mp__pool_imap_next_job(struct mp_result *j, size_t *index, mp_obj **value, mp_task_error *err,
                           int64_t deadline)
{
    int rc;
    mp__pool_job_lock(j);
    for (;;) {
        if (j->cursor == j->n) {
            rc = 0;
            break;
        }
        if (j->kind == K_IMAP) {
            if (j->st[j->cursor] != I_PENDING) {
                rc = pool_imap_take(j, j->cursor++, index, value, err);
                break;
            }
        } else if (j->cursor < j->norder) {
            rc = pool_imap_take(j, j->order[j->cursor++], index, value, err);
            break;
        }
        if (j->finished) {
            /* Finished with this item missing: the pool was terminated. */
            rc = j->status < 0 ? j->status : MP_ETERMINATED;
            pool_fill_err(err, &j->first);
            break;
        }
        if (!mp__pool_cond_wait_until(&j->cv, &j->mu, deadline)) {
            rc = MP_ETIMEDOUT;
            break;
        }
    }
    mp__pool_job_unlock(j);
    return rc;
}

MP_API int mp_imap_next(mp_imap *it, size_t *index, mp_obj **value, mp_task_error *err,
                        double timeout)
{
    if (value)
        *value = NULL;
    mp__pool_clear_err(err);
    struct mp_result *j = it ? &it->job : NULL;
    int rc = pool_result_check(j, false, timeout);
    if (rc < 0)
        return rc;
    if (it->lazy)
        return mp__pool_lazy_next(it, index, value, err, timeout);
    return mp__pool_imap_next_job(j, index, value, err, mp__deadline(timeout));
}

MP_API void mp_imap_free(mp_imap *it)
{
    if (!it || it->job.gen != mp__forkgen())
        return;
    if (it->lazy) {
        mp__pool_lazy_free(it);
        return;
    }
    mp__pool_job_abandon(&it->job);
    mp__pool_job_unref(&it->job);
}
