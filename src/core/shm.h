/*
 * shm - the allocator for memory shared with children forked later.
 *
 * Blocks come from MAP_SHARED arenas of anonymous files (memfd), so a block allocated
 * before fork() is the same memory in the parent and every child. The
 * bookkeeping (which parts of an arena are in use) is private to the process
 * that made the arena, never stored in the shared memory itself, so nothing
 * a child does to shared memory can corrupt the parent's allocator.
 *
 * Fork. A child starts with no arenas of its own: the arenas it inherited
 * stay mapped (the objects in them are shared with the parent), but the child
 * never allocates from them - the parent may hand out their free space at the
 * same moment - and freeing an inherited block in the child does nothing.
 * Multiprocessing's heap.py follows the same rule.
 *
 * mmap/munmap live here: this file is their one home.
 */
#ifndef MPIPC_SHM_H
#define MPIPC_SHM_H

#include "core/internal.h"

#include <stddef.h>

/* Blocks are aligned to a cache line, so two primitives never share one. */
#define MP__SHM_ALIGN ((size_t)64)

/*
 * Allocate size bytes (size > 0) of zeroed shared memory, MP__SHM_ALIGN
 * aligned. Returns 0 with *out set, -EINVAL, -ENOMEM (or mmap's -errno).
 */
int mp__shm_alloc(void **out, size_t size);

/*
 * Release a block this process allocated. A block allocated by another
 * process (an ancestor, before fork), NULL, or an address that is not a
 * block is ignored. Returns true if the block was this process's and is now
 * free.
 */
bool mp__shm_free(void *p);

/* True if p is a live block allocated by this process (not inherited). */
bool mp__shm_owned(const void *p);

/*
 * Where the len bytes at p live, to hand them to a child by descriptor: an
 * arena of this process, or one inherited by fork whose descriptor is still
 * the arena's. *fd is the arena's memfd (borrowed: the arena's), *off the
 * offset of p in it, *size the file's size. Returns 0; MP_EVALUE when p is
 * not in such an arena (memory from elsewhere, no memfd, or a descriptor a
 * fork server closed); -EINVAL.
 */
int mp__shm_locate(const void *p, size_t len, int *fd, size_t *off, size_t *size);

/*
 * A mapping of its own, outside the arenas: size bytes of zeroed shared
 * memory whose pages are never handed to anyone else. Unmapping it removes
 * only the calling process's view, so processes that inherited it may go on
 * writing to it without harming what this process allocates later - which
 * is what memory that outliving children may touch needs. Returns 0 with
 * *out set, -EINVAL or -ENOMEM.
 */
int mp__shm_map(void **out, size_t size);

/*
 * mp__shm_map, backed by a memfd when one can be made, so that the mapping
 * can be handed to another process by descriptor: *fd is the file (the
 * caller owns it and closes it; on Linux a memfd sealed against changing
 * its size), or -1 when only an anonymous mapping could be made (shared by
 * fork only). Returns as mp__shm_map.
 */
int mp__shm_map_memfd(void **out, size_t size, int *fd);

/* Remove this process's view of a mapping from mp__shm_map (NULL: none). */
void mp__shm_unmap(void *p, size_t size);

/*
 * Map size bytes (size > 0) of the file fd, shared and read-write: a named
 * block (shmem/shared_memory.c) that other processes map by name. Unmap
 * with mp__shm_unmap. Returns 0 with *out set, -EINVAL, or mmap's -errno.
 */
int mp__shm_map_fd(void **out, int fd, size_t size);

#endif /* MPIPC_SHM_H */
