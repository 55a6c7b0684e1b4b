/*
 * sync_parts - Lock, RLock, Semaphore, Event, Value, Array and a Condition
 * with its own lock taken apart for a forkserver or spawn child, and
 * checked there (core/parts.h). Each is one block with no pointer in it.
 */
#include "core/parts.h"
#include "sync/sync_impl.h"

/* The block size of kind k at obj (0: not a kind of this file, or a bad
 * Array header). obj is read only for a Value or an Array. */
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
    default:
        return 0;
    }
}

int mp__sync_parts(enum mp__part_kind k, const void *obj, struct mp__parts *out)
{
    if (k == MP__PART_COND && !mp__sync_cond_self_contained(obj))
        return MP_EVALUE;
    size_t size = parts_size(k, obj);
    if (size == 0)
        return MP_EVALUE;
    *out = (struct mp__parts){.blk = {(void *)obj}, .size = {size}, .nblk = 1};
    return 0;
}

int mp__sync_from_parts(enum mp__part_kind k, const struct mp__parts *in, void **out)
{
    *out = NULL;
    if (in->nblk != 1 || in->nfds != 0)
        return MP_EVALUE;
    bool sized = k == MP__PART_VALUE || k == MP__PART_ARRAY;
    /* A Value's or Array's length is in its header: the block must hold
     * the header before the header is believed, then agree with it. */
    if (sized && in->size[0] < MP__SYNC_ARRAY_HEADER)
        return MP_EVALUE;
    size_t want = parts_size(k, in->blk[0]);
    if (want == 0 || want != in->size[0])
        return MP_EVALUE;
    if (k == MP__PART_COND && !mp__sync_cond_self_contained(in->blk[0]))
        return MP_EVALUE;
    *out = in->blk[0];
    return 0;
}
