/*
 * shared_memory_manager.c - Python's SharedMemoryManager: a table of the
 * blocks made through the manager, in shared memory so that children forked
 * later add to it, unlinked at shutdown. Statics start with smm_.
 *
 * A slot goes FREE -> CLAIMED (its maker writes the path) -> LIVE, by
 * atomic operations on the slot's state, so makers in several processes
 * never take one slot twice and need no lock. Shutdown unlinks the LIVE
 * ones; a block whose maker is still between claim and LIVE at that moment
 * is left to the resource tracker.
 */
#include "shmem/shmem.h"

#include "core/shm.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

enum { SMM_FREE = 0, SMM_CLAIMED = 1, SMM_LIVE = 2 };

struct smm_slot {
    int state;
    char path[MP_SHARED_MEMORY_NAME_MAX + 2];
};

struct smm_table {
    int shut; /* set by shutdown */
    struct smm_slot slot[MP_SHARED_MEMORY_MANAGER_MAX];
};

struct mp_shared_memory_manager {
    struct smm_table *t; /* shared with children forked later */
    pid_t owner;
};

MP_API int mp_shared_memory_manager_new(mp_shared_memory_manager **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    mp_shared_memory_manager *m = malloc(sizeof *m);
    if (!m)
        return -ENOMEM;
    /* Started here, so children forked later share it with us and the
     * shutdown's unregisters reach the tracker their creates registered with. */
    int rc = mp_resource_tracker_ensure_running();
    void *t;
    if (rc == 0)
        rc = mp__shm_map(&t, sizeof(struct smm_table));
    if (rc < 0) {
        free(m);
        return rc;
    }
    m->t = t;
    m->owner = getpid();
    *out = m;
    return 0;
}

static int smm_claim(mp_shared_memory_manager *m, size_t *k)
{
    if (__atomic_load_n(&m->t->shut, __ATOMIC_ACQUIRE))
        return mp__err(MP_ESTATE, "the SharedMemoryManager has been shut down");
    for (size_t i = 0; i < MP_SHARED_MEMORY_MANAGER_MAX; i++) {
        int expect = SMM_FREE;
        if (__atomic_compare_exchange_n(&m->t->slot[i].state, &expect, SMM_CLAIMED, false,
                                        __ATOMIC_ACQ_REL, __ATOMIC_RELAXED)) {
            *k = i;
            return 0;
        }
    }
    return mp__err(-ENOSPC, "the SharedMemoryManager holds %d blocks already",
                   MP_SHARED_MEMORY_MANAGER_MAX);
}

static void smm_publish(mp_shared_memory_manager *m, size_t k, const mp_shared_memory *shm)
{
    struct smm_slot *s = &m->t->slot[k];
    if (!shm) {
        __atomic_store_n(&s->state, SMM_FREE, __ATOMIC_RELEASE);
        return;
    }
    memcpy(s->path, shm->path, sizeof s->path);
    __atomic_store_n(&s->state, SMM_LIVE, __ATOMIC_RELEASE);
}

MP_API int mp_shared_memory_manager_create(mp_shared_memory_manager *m, size_t size,
                                           mp_shared_memory **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!m)
        return -EINVAL;
    size_t k;
    int rc = smm_claim(m, &k);
    if (rc < 0)
        return rc;
    rc = mp_shared_memory_create(out, NULL, size, NULL);
    smm_publish(m, k, *out);
    return rc;
}

MP_API int mp_shared_memory_manager_shareable_list(mp_shared_memory_manager *m, const mp_obj *seq,
                                                   mp_shareable_list **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!m)
        return -EINVAL;
    size_t k;
    int rc = smm_claim(m, &k);
    if (rc < 0)
        return rc;
    rc = mp_shareable_list_create(out, seq, NULL, NULL);
    smm_publish(m, k, *out ? mp_shareable_list_shm(*out) : NULL);
    return rc;
}

/* Unlink the LIVE blocks; one that someone already unlinked is skipped
 * (Python's server would hit FileNotFoundError there). */
MP_API int mp_shared_memory_manager_shutdown(mp_shared_memory_manager *m)
{
    if (!m)
        return -EINVAL;
    if (m->owner != getpid())
        return mp__err(MP_ESTATE, "only the process that made the manager can shut it down");
    __atomic_store_n(&m->t->shut, 1, __ATOMIC_RELEASE);
    for (size_t i = 0; i < MP_SHARED_MEMORY_MANAGER_MAX; i++) {
        struct smm_slot *s = &m->t->slot[i];
        if (__atomic_load_n(&s->state, __ATOMIC_ACQUIRE) != SMM_LIVE)
            continue;
        int saved = errno;
        if (shm_unlink(s->path) == 0)
            (void)mp__shm_tracker_unregister(s->path);
        errno = saved;
        __atomic_store_n(&s->state, SMM_FREE, __ATOMIC_RELEASE);
    }
    return 0;
}

MP_API void mp_shared_memory_manager_free(mp_shared_memory_manager *m)
{
    if (!m)
        return;
    if (m->owner == getpid())
        (void)mp_shared_memory_manager_shutdown(m);
    mp__shm_unmap(m->t, sizeof(struct smm_table));
    free(m);
}
