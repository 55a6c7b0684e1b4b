/*
 * pool_submit.c - handing work to the pool: apply, map, starmap, imap and
 * imap_unordered in the bytes, array and value forms, each async (a job
 * the caller holds) and, where Python has one, blocking (submit and wait).
 * The job itself is pool_job.c's; pool_impl.h lists the other siblings.
 */
#include "pool/pool_impl.h"

#include "codec/pickle.h"

/* Append a job to the pending queue, whose chunks the dispatcher sends in
 * order (p->mu held). */
static void pool_pending_push_locked(mp_pool *p, struct mp_result *j)
{
    MP__POOL_ASSERT_HELD(p);
    mp__list_push_back(&p->pending, j);
    p->pend_chunks += j->nchunks;
}

/* Hand a prepared job to the pool. On success the pool holds a reference
 * and the caller keeps its own. closing_ok: also while the pool is closing
 * (a lazy imap's later segments; its keeper job holds the workers). */
static int pool_submit_ex(mp_pool *p, struct mp_result *j, const mp_callbacks *cbs, bool closing_ok)
{
    if (cbs)
        j->cbs = *cbs;
    mp__pool_lock(p);
    if (p->state != P_RUN && !(closing_ok && p->state == P_CLOSE)) {
        mp__pool_unlock(p);
        return MP_ECLOSED;
    }
    if (j->nchunks == 0) {
        /* Nothing to run: ready at once (Python's MapResult for an empty
         * iterable runs no callback either). */
        mp__pool_unlock(p);
        if (j->kind == K_MAP && j->vals)
            j->value = mp_obj_list_new();
        if (j->kind == K_MAP && j->vals && !j->value)
            return -ENOMEM;
        j->finished = j->ready = true;
        j->pool = NULL;
        return 0;
    }
    mp__pool_cache_add_locked(p, j);
    pool_pending_push_locked(p, j);
    if (p->disp_waiting && p->pend_chunks >= p->disp_wake_chunks) {
        p->disp_wake_chunks = SIZE_MAX; /* one wake-up is enough */
        mp__pool_wake_dispatcher_locked(p);
    }
    mp__pool_unlock(p);
    return 0;
}

static int pool_submit(mp_pool *p, struct mp_result *j, const mp_callbacks *cbs)
{
    return pool_submit_ex(p, j, cbs, false);
}

/* Submit j if it was prepared (rc 0) and give it to the caller, or free it. */
static int pool_submit_or_free(mp_pool *p, struct mp_result *j, int rc, const mp_callbacks *cbs,
                               mp_result **out)
{
    if (rc == 0)
        rc = pool_submit(p, j, cbs);
    if (rc < 0) {
        mp__pool_job_unref(j);
        return rc;
    }
    *out = j;
    return 0;
}

/* The checks every submitting call starts with (clearing *out first):
 * a usable pool, valid arguments (a task, an input) and somewhere to put
 * the job. */
static int pool_submit_check(mp_pool *p, bool valid, mp_result **out)
{
    if (out)
        *out = NULL;
    int rc = mp__pool_check(p);
    if (rc == 0 && (!valid || !out))
        rc = -EINVAL;
    return rc;
}

/* Add one wire item ([u64 len][bytes]) to a job's blob. */
static int pool_blob_add(struct mp_result *j, size_t *cap, size_t i, const void *data, size_t len)
{
    size_t at = j->offs[i];
    size_t need;
    if (mp__add_overflows(at, sizeof(uint64_t) + len, &need))
        return -ENOMEM;
    if (need > *cap) {
        /* One item (apply) gets exactly its size; lists grow by doubling. */
        size_t ncap = *cap ? (*cap * 2 > need ? *cap * 2 : need) : need;
        unsigned char *b = realloc(j->blob, ncap);
        if (!b)
            return -ENOMEM;
        j->blob = b;
        *cap = ncap;
    }
    uint64_t l = len;
    memcpy(j->blob + at, &l, sizeof l);
    if (len)
        memcpy(j->blob + at + sizeof l, data, len);
    j->offs[i + 1] = need;
    return 0;
}

/* Pickle item i of a value job into its blob. */
static int pool_blob_pickle_one(struct mp_result *j, size_t *cap, size_t i, const mp_obj *item)
{
    unsigned char *pk;
    size_t len;
    int rc = mp__pickle_dumps(item, &pk, &len);
    if (rc < 0)
        return rc;
    rc = pool_blob_add(j, cap, i, pk, len);
    free(pk);
    return rc;
}

/* Pickle the items (or the one args tuple) of a value job into its blob. */
static int pool_blob_pickle(struct mp_result *j, const mp_obj *seq, bool one)
{
    size_t n = one ? 1 : j->n;
    j->offs = n <= 1 ? j->offs_one : calloc(n + 1, sizeof *j->offs);
    if (!j->offs)
        return -ENOMEM;
    size_t cap = 0;
    for (size_t i = 0; i < n; i++) {
        int rc = pool_blob_pickle_one(j, &cap, i, one ? seq : mp_obj_list_get(seq, i));
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* ---- the bytes form ---------------------------------------------------------- */

MP_API int mp_pool_apply_bytes_async(mp_pool *p, mp_bytes_fn fn, const void *in, size_t in_len,
                                     const mp_callbacks *cbs, mp_result **out)
{
    struct mp_result *j;
    int rc = pool_submit_check(p, fn && (in || in_len == 0), out);
    if (rc == 0)
        rc = mp__pool_job_new(&j, p, K_APPLY, F_BYTES, (uint64_t)(uintptr_t)fn, 1, 1);
    if (rc < 0)
        return rc;
    j->offs = j->offs_one;
    size_t cap = 0;
    rc = pool_blob_add(j, &cap, 0, in, in_len);
    return pool_submit_or_free(p, j, rc, cbs, out);
}

static size_t pool_default_chunksize(const mp_pool *p, int kind, size_t n, size_t chunksize);

/* map / imap / imap_unordered over n buffers: their copies go in the job's
 * blob, the outputs into the caller's outs. */
static int pool_bytes_job(mp_pool *p, int kind, mp_bytes_fn fn, const struct iovec *in, size_t n,
                          struct iovec *outs, size_t chunksize, const mp_callbacks *cbs,
                          mp_result **res)
{
    bool valid = fn && (n == 0 || (in && outs));
    for (size_t i = 0; valid && i < n; i++)
        valid = in[i].iov_base || in[i].iov_len == 0;
    struct mp_result *j;
    int rc = pool_submit_check(p, valid, res);
    if (rc == 0)
        rc = mp__pool_job_new(&j, p, kind, F_BYTES, (uint64_t)(uintptr_t)fn, n,
                              pool_default_chunksize(p, kind, n, chunksize));
    if (rc < 0)
        return rc;
    j->offs = n <= 1 ? j->offs_one : calloc(n + 1, sizeof *j->offs);
    rc = j->offs ? 0 : -ENOMEM;
    size_t cap = 0;
    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = pool_blob_add(j, &cap, i, in[i].iov_base, in[i].iov_len);
    if (rc == 0) {
        for (size_t i = 0; i < n; i++)
            outs[i] = (struct iovec){.iov_base = NULL, .iov_len = 0};
        j->iov_out = outs;
    }
    return pool_submit_or_free(p, j, rc, cbs, res);
}

MP_API int mp_pool_map_bytes_async(mp_pool *p, mp_bytes_fn fn, const struct iovec *in, size_t n,
                                   struct iovec *outs, size_t chunksize, const mp_callbacks *cbs,
                                   mp_result **result)
{
    return pool_bytes_job(p, K_MAP, fn, in, n, outs, chunksize, cbs, result);
}

MP_API int mp_pool_imap_bytes(mp_pool *p, mp_bytes_fn fn, const struct iovec *in, size_t n,
                              struct iovec *outs, size_t chunksize, mp_imap **it)
{
    if (it)
        *it = NULL;
    return pool_bytes_job(p, K_IMAP, fn, in, n, outs, chunksize, NULL, (mp_result **)it);
}

MP_API int mp_pool_imap_unordered_bytes(mp_pool *p, mp_bytes_fn fn, const struct iovec *in,
                                        size_t n, struct iovec *outs, size_t chunksize,
                                        mp_imap **it)
{
    if (it)
        *it = NULL;
    return pool_bytes_job(p, K_IMAPU, fn, in, n, outs, chunksize, NULL, (mp_result **)it);
}

/* ---- the array form ---------------------------------------------------------- */

static int pool_check_array_args(const void *in, size_t in_size, size_t n, const void *out,
                                 size_t out_size)
{
    if (n > 0 && (!in || !out))
        return -EINVAL;
    if (in_size == 0 || out_size == 0 || in_size > ITEM_MAX || out_size > ITEM_MAX)
        return -EINVAL;
    size_t prod;
    if (__builtin_mul_overflow(n, in_size, &prod) || __builtin_mul_overflow(n, out_size, &prod))
        return -EOVERFLOW;
    return 0;
}

static size_t pool_default_chunksize(const mp_pool *p, int kind, size_t n, size_t chunksize)
{
    if (chunksize > 0)
        return chunksize;
    if (kind != K_MAP)
        return 1;
    /* Python: chunksize, extra = divmod(len(iterable), len(pool) * 4) */
    size_t d = 4 * (size_t)p->nproc;
    return n / d + (n % d != 0);
}

static int pool_array_job(mp_pool *p, int kind, mp_array_fn fn, const void *in, size_t in_size,
                          size_t n, void *out, size_t out_size, size_t chunksize,
                          const mp_callbacks *cbs, mp_result **res)
{
    struct mp_result *j;
    int rc = pool_submit_check(p, fn != NULL, res);
    if (rc == 0)
        rc = pool_check_array_args(in, in_size, n, out, out_size);
    if (rc == 0)
        rc = mp__pool_job_new(&j, p, kind, F_ARRAY, (uint64_t)(uintptr_t)fn, n,
                              pool_default_chunksize(p, kind, n, chunksize));
    if (rc < 0)
        return rc;
    j->in = in;
    j->in_size = in_size;
    j->out = out;
    j->out_size = out_size;
    return pool_submit_or_free(p, j, 0, cbs, res);
}

MP_API int mp_pool_map_array_async(mp_pool *p, mp_array_fn fn, const void *in, size_t in_size,
                                   size_t n, void *out, size_t out_size, size_t chunksize,
                                   const mp_callbacks *cbs, mp_result **result)
{
    return pool_array_job(p, K_MAP, fn, in, in_size, n, out, out_size, chunksize, cbs, result);
}

MP_API int mp_pool_imap_array(mp_pool *p, mp_array_fn fn, const void *in, size_t in_size, size_t n,
                              void *out, size_t out_size, size_t chunksize, mp_imap **it)
{
    if (it)
        *it = NULL;
    return pool_array_job(p, K_IMAP, fn, in, in_size, n, out, out_size, chunksize, NULL,
                          (mp_result **)it);
}

MP_API int mp_pool_imap_unordered_array(mp_pool *p, mp_array_fn fn, const void *in, size_t in_size,
                                        size_t n, void *out, size_t out_size, size_t chunksize,
                                        mp_imap **it)
{
    if (it)
        *it = NULL;
    return pool_array_job(p, K_IMAPU, fn, in, in_size, n, out, out_size, chunksize, NULL,
                          (mp_result **)it);
}

/* ---- the value form ---------------------------------------------------------- */

static bool pool_is_seq(const mp_obj *o)
{
    int t = mp_obj_type(o);
    return t == MP_TYPE_LIST || t == MP_TYPE_TUPLE;
}

MP_API int mp_pool_apply_async(mp_pool *p, mp_obj_fn fn, const mp_obj *args,
                               const mp_callbacks *cbs, mp_result **out)
{
    struct mp_result *j;
    int rc = pool_submit_check(p, fn && (!args || pool_is_seq(args)), out);
    if (rc == 0)
        rc = mp__pool_job_new(&j, p, K_APPLY, F_OBJ_APPLY, (uint64_t)(uintptr_t)fn, 1, 1);
    if (rc < 0)
        return rc;
    mp_obj *empty = args ? NULL : mp_obj_tuple_new();
    rc = args || empty ? pool_blob_pickle(j, args ? args : empty, true) : -ENOMEM;
    mp_obj_free(empty);
    return pool_submit_or_free(p, j, rc, cbs, out);
}

static int pool_obj_job(mp_pool *p, int kind, int form, mp_obj_fn fn, const mp_obj *items,
                        size_t chunksize, const mp_callbacks *cbs, mp_result **out)
{
    struct mp_result *j;
    int rc = pool_submit_check(p, fn && pool_is_seq(items), out);
    size_t n = rc == 0 ? (size_t)mp_obj_len(items) : 0;
    if (rc == 0)
        rc = mp__pool_job_new(&j, p, kind, form, (uint64_t)(uintptr_t)fn, n,
                              pool_default_chunksize(p, kind, n, chunksize));
    if (rc < 0)
        return rc;
    rc = pool_blob_pickle(j, items, false);
    return pool_submit_or_free(p, j, rc, cbs, out);
}

MP_API int mp_pool_map_async(mp_pool *p, mp_obj_fn fn, const mp_obj *items, size_t chunksize,
                             const mp_callbacks *cbs, mp_result **out)
{
    return pool_obj_job(p, K_MAP, F_OBJ_MAP, fn, items, chunksize, cbs, out);
}

MP_API int mp_pool_starmap_async(mp_pool *p, mp_obj_fn fn, const mp_obj *items, size_t chunksize,
                                 const mp_callbacks *cbs, mp_result **out)
{
    return pool_obj_job(p, K_MAP, F_OBJ_STAR, fn, items, chunksize, cbs, out);
}

MP_API int mp_pool_imap(mp_pool *p, mp_obj_fn fn, const mp_obj *items, size_t chunksize,
                        mp_imap **it)
{
    if (it)
        *it = NULL;
    return pool_obj_job(p, K_IMAP, F_OBJ_MAP, fn, items, chunksize, NULL, (mp_result **)it);
}

MP_API int mp_pool_imap_unordered(mp_pool *p, mp_obj_fn fn, const mp_obj *items, size_t chunksize,
                                  mp_imap **it)
{
    if (it)
        *it = NULL;
    return pool_obj_job(p, K_IMAPU, F_OBJ_MAP, fn, items, chunksize, NULL, (mp_result **)it);
}

int mp__pool_submit_items(mp_pool *p, int kind, mp_obj_fn fn, mp_obj *const *items, size_t n,
                          size_t chunksize, struct mp__pool_wake *wake, struct mp_result **out,
                          size_t *bad)
{
    *out = NULL;
    *bad = n;
    struct mp_result *j;
    int rc = mp__pool_job_new(&j, p, kind, F_OBJ_MAP, (uint64_t)(uintptr_t)fn, n, chunksize);
    if (rc < 0)
        return rc;
    j->wake = wake;
    j->offs = n <= 1 ? j->offs_one : calloc(n + 1, sizeof *j->offs);
    rc = j->offs ? 0 : -ENOMEM;
    size_t cap = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        rc = pool_blob_pickle_one(j, &cap, i, items[i]);
        if (rc < 0 && rc != -ENOMEM)
            *bad = i;
    }
    if (rc == 0)
        rc = pool_submit_ex(p, j, NULL, true);
    if (rc < 0) {
        mp__pool_job_unref(j);
        return rc;
    }
    *out = j;
    return 0;
}

/* ---- the blocking calls ------------------------------------------------------ */

/* Wait for a job made by a blocking call; abandon it on timeout. The
 * caller's reference is dropped unless the call succeeded (rc 0 keeps it
 * for taking the value). */
static int pool_sync_wait(mp_result *j, double timeout, mp_task_error *err)
{
    int rc = mp__pool_result_get(j, timeout, err);
    if (rc == MP_ETIMEDOUT) {
        mp__pool_job_abandon(j);
        if (err)
            err->status = err->code = MP_ETIMEDOUT;
    }
    if (rc != 0)
        mp__pool_job_unref(j);
    return rc;
}

/* Take the value out of a finished job made by a blocking call. */
static int pool_take_value(mp_result *r, mp_obj **result)
{
    mp__pool_job_lock(r);
    *result = r->value;
    r->value = NULL;
    mp__pool_job_unlock(r);
    mp__pool_job_unref(r);
    return 0;
}

MP_API int mp_pool_apply_bytes(mp_pool *p, mp_bytes_fn fn, const void *in, size_t in_len,
                               void **out, size_t *out_len, mp_task_error *err, double timeout)
{
    mp__pool_clear_err(err);
    if (out)
        *out = NULL;
    if (out_len)
        *out_len = 0;
    if (!out || !out_len)
        return -EINVAL;
    mp_result *r = NULL;
    int rc = mp__pool_sync_check(p, timeout);
    if (rc == 0)
        rc = mp_pool_apply_bytes_async(p, fn, in, in_len, NULL, &r);
    if (rc == 0)
        rc = pool_sync_wait(r, timeout, err);
    if (rc < 0)
        return rc;
    mp__pool_job_lock(r);
    *out = r->bytes_out ? r->bytes_out : malloc(1);
    *out_len = r->bytes_len;
    r->bytes_out = NULL;
    mp__pool_job_unlock(r);
    mp__pool_job_unref(r);
    return *out ? 0 : -ENOMEM;
}

MP_API int mp_pool_map_bytes(mp_pool *p, mp_bytes_fn fn, const struct iovec *in, size_t n,
                             struct iovec *outs, size_t chunksize, mp_task_error *err,
                             double timeout)
{
    mp__pool_clear_err(err);
    mp_result *r = NULL;
    int rc = mp__pool_sync_check(p, timeout);
    if (rc == 0)
        rc = mp_pool_map_bytes_async(p, fn, in, n, outs, chunksize, NULL, &r);
    if (rc == 0)
        rc = pool_sync_wait(r, timeout, err);
    if (rc == 0) {
        mp__pool_job_unref(r);
    } else if (r) {
        /* The job is finished or abandoned: nothing writes outs any more.
         * Python's map returns no list when it raises. */
        for (size_t i = 0; i < n; i++) {
            free(outs[i].iov_base);
            outs[i] = (struct iovec){.iov_base = NULL, .iov_len = 0};
        }
    }
    return rc;
}

MP_API int mp_pool_map_array(mp_pool *p, mp_array_fn fn, const void *in, size_t in_size, size_t n,
                             void *out, size_t out_size, size_t chunksize, mp_task_error *err,
                             double timeout)
{
    mp__pool_clear_err(err);
    mp_result *r = NULL;
    int rc = mp__pool_sync_check(p, timeout);
    if (rc == 0)
        rc = mp_pool_map_array_async(p, fn, in, in_size, n, out, out_size, chunksize, NULL, &r);
    if (rc == 0)
        rc = pool_sync_wait(r, timeout, err);
    if (rc == 0)
        mp__pool_job_unref(r);
    return rc;
}

/* The blocking value calls: apply (form F_OBJ_APPLY, args the arguments'
 * tuple or NULL), map and starmap (the items); *result gets the value. */
static int pool_sync_value(mp_pool *p, int form, mp_obj_fn fn, const mp_obj *in, size_t chunksize,
                           mp_obj **result, double timeout, mp_task_error *err)
{
    mp__pool_clear_err(err);
    if (result)
        *result = NULL;
    if (!result)
        return -EINVAL;
    mp_result *r = NULL;
    int rc = mp__pool_sync_check(p, timeout);
    if (rc == 0 && form == F_OBJ_APPLY)
        rc = mp_pool_apply_async(p, fn, in, NULL, &r);
    else if (rc == 0)
        rc = pool_obj_job(p, K_MAP, form, fn, in, chunksize, NULL, &r);
    if (rc == 0)
        rc = pool_sync_wait(r, timeout, err);
    return rc < 0 ? rc : pool_take_value(r, result);
}

MP_API int mp_pool_apply(mp_pool *p, mp_obj_fn fn, const mp_obj *args, mp_obj **result,
                         mp_task_error *err, double timeout)
{
    return pool_sync_value(p, F_OBJ_APPLY, fn, args, 0, result, timeout, err);
}

MP_API int mp_pool_map(mp_pool *p, mp_obj_fn fn, const mp_obj *items, size_t chunksize,
                       mp_obj **results, mp_task_error *err, double timeout)
{
    return pool_sync_value(p, F_OBJ_MAP, fn, items, chunksize, results, timeout, err);
}

MP_API int mp_pool_starmap(mp_pool *p, mp_obj_fn fn, const mp_obj *items, size_t chunksize,
                           mp_obj **results, mp_task_error *err, double timeout)
{
    return pool_sync_value(p, F_OBJ_STAR, fn, items, chunksize, results, timeout, err);
}
