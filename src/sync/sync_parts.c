/*
 * sync_parts - Lock, RLock, Semaphore, Event, Value, Array, Condition and
 * Barrier taken apart for a forkserver or spawn child, and checked there
 * (core/parts.h). Each is one block with no pointer in it, but a Condition
 * over the caller's lock, which brings that lock as a second block.
 */
#include "core/parts.h"
#include "sync/sync_impl.h"

/* The block size of kind k at obj (0: not a kind of this file, or a bad
 * Array or Barrier header). obj is read only for a Value, an Array and a
 * Barrier. */
static size_t parts_size(enum mp__part_kind k, const void *obj)
{
    switch (k) {
    case MP__PART_LOCK:
        return sizeof(mp_lock);
    case MP__PART_RLOCK:
        return sizeof(mp_rlock);
    case MP__PART_SEM:
        return mp__sync_sem_size();
    case MP__PART_EVENT:
        return mp__sync_event_size();
    case MP__PART_COND:
        return mp__sync_cond_size();
    case MP__PART_VALUE:
    case MP__PART_ARRAY:
        return mp__sync_array_size(obj);
    case MP__PART_BARRIER:
        return mp__sync_barrier_size(obj);
    default:
        return 0;
    }
}

int mp__sync_parts(enum mp__part_kind k, const void *obj, struct mp__parts *out)
{
    size_t size = parts_size(k, obj);
    if (size == 0)
        return MP_EVALUE;
    *out = (struct mp__parts){.blk = {(void *)obj}, .size = {size}, .nblk = 1};
    if (k == MP__PART_BARRIER)
        out->extra = mp__sync_barrier_has_action(obj);
    bool is_rlock;
    const void *ext = k == MP__PART_COND ? mp__sync_cond_ext(obj, &is_rlock) : NULL;
    if (ext) {
        out->blk[1] = (void *)ext;
        out->size[1] = is_rlock ? sizeof(mp_rlock) : sizeof(mp_lock);
        out->nblk = 2;
    }
    return 0;
}

int mp__sync_from_parts(enum mp__part_kind k, const struct mp__parts *in, void **out)
{
    *out = NULL;
    bool cond = k == MP__PART_COND;
    if (in->nblk != (cond && in->nblk == 2 ? 2u : 1u) || in->nfds != 0 || in->extra != 0)
        return MP_EVALUE;
    /* A Value's, an Array's or a Barrier's size is in its header: the
     * block must hold the header before the header is believed, then
     * agree with it. */
    size_t header = k == MP__PART_VALUE || k == MP__PART_ARRAY ? MP__SYNC_ARRAY_HEADER
                    : k == MP__PART_BARRIER                    ? mp__sync_barrier_header()
                                                               : 0;
    if (in->size[0] < header)
        return MP_EVALUE;
    size_t want = parts_size(k, in->blk[0]);
    if (want == 0 || want != in->size[0])
        return MP_EVALUE;
    if (k == MP__PART_BARRIER && mp__sync_barrier_has_action(in->blk[0]))
        return MP_EVALUE;
    if (cond) {
        /* Its own lock and one block, or the caller's lock of the kind
         * the Condition names as the second block. */
        bool is_rlock;
        bool own = mp__sync_cond_self_contained(in->blk[0]);
        (void)mp__sync_cond_ext(in->blk[0], &is_rlock);
        if (!mp__sync_cond_well_formed(in->blk[0]) || own != (in->nblk == 1))
            return MP_EVALUE;
        if (!own && in->size[1] != (is_rlock ? sizeof(mp_rlock) : sizeof(mp_lock)))
            return MP_EVALUE;
        int rc = own ? 0 : mp__sync_cond_rebase(in->blk[0], in->blk[1]);
        if (rc < 0)
            return rc;
    }
    *out = in->blk[0];
    return 0;
}
