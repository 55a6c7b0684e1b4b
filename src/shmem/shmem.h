/*
 * shmem - named shared memory (mpipc/shared_memory.h): what its files share.
 * shared_memory.c (statics shm_) is SharedMemory, shareable_list.c (sl_)
 * ShareableList, tracker.c (trk_) the resource tracker process.
 */
#ifndef MPIPC_SHMEM_H
#define MPIPC_SHMEM_H

#include "core/internal.h"

#include <mpipc/shared_memory.h>

#include <stdbool.h>
#include <stddef.h>

struct mp_shared_memory {
    /* The name as shm_open takes it: "/" and the name Python reports. */
    char path[MP_SHARED_MEMORY_NAME_MAX + 2];
    int fd;      /* -1 once closed */
    void *buf;   /* NULL once closed */
    size_t size; /* the object's size, as fstat gave it */
    bool track;  /* registered with the resource tracker */
};

/*
 * Register or unregister a block's path ("/psm_...") with this process's
 * resource tracker, starting the tracker if this process has none. Returns
 * 0 or -errno. Registering twice keeps one entry, as Python's set does.
 */
int mp__shm_tracker_register(const char *path);
int mp__shm_tracker_unregister(const char *path);

#endif /* MPIPC_SHMEM_H */
