/*
 * parts - an object taken apart, to hand it to a child that was not forked
 * from this process (forkserver, spawn), and put together again there: its
 * blocks of shared memory (shm.h arenas) and its descriptors.
 *
 * The owners take their objects apart and check what a child received:
 * sync/sync_parts.c (Lock ... Array, and a Condition that holds its own
 * lock), queue/queue.c (Queue). process/passobj.c moves the parts and
 * knows nothing of the objects; declared here, below both, as popen.h
 * declares the start methods' hooks.
 */
#ifndef MPIPC_CORE_PARTS_H
#define MPIPC_CORE_PARTS_H

#include <mpipc/queue.h>

#include <stddef.h>
#include <stdint.h>

enum mp__part_kind {
    MP__PART_LOCK = 1,
    MP__PART_RLOCK,
    MP__PART_SEM,
    MP__PART_EVENT,
    MP__PART_VALUE,
    MP__PART_ARRAY,
    MP__PART_QUEUE,
    MP__PART_COND, /* a Condition with its own lock: a JoinableQueue's */
};

/* The most blocks or descriptors one object has (a JoinableQueue: its
 * stream, two semaphores and a condition; four descriptors). */
#define MP__PARTS_MAX 4

struct mp__parts {
    void *blk[MP__PARTS_MAX]; /* in an arena here; mapped in the child */
    size_t size[MP__PARTS_MAX];
    size_t nblk;
    int fds[MP__PARTS_MAX]; /* borrowed here; the object's in the child */
    size_t nfds;
    int64_t extra; /* a queue's maxsize */
};

/*
 * Take obj of kind k (LOCK .. ARRAY, COND) apart: one block, no
 * descriptor. Returns 0; MP_EVALUE for a Condition that uses another lock
 * (it holds a pointer) or another kind.
 */
int mp__sync_parts(enum mp__part_kind k, const void *obj, struct mp__parts *out);

/* In the child: check parts received for kind k (one block of the size
 * the kind, or an Array's header, says) and give the object. Returns 0 or
 * MP_EVALUE. */
int mp__sync_from_parts(enum mp__part_kind k, const struct mp__parts *in, void **out);

/* Take a Queue apart (blocks: stream, places semaphore[, unfinished
 * semaphore, condition]; descriptors: read, write, spill, held; extra:
 * maxsize). Returns 0; MP_ECLOSED when closed here; MP_EVALUE. */
int mp__queue_parts(mp_queue *q, struct mp__parts *out);

/* In the child: a new handle over the parts; the descriptors become the
 * handle's (mp_queue_free closes them), the blocks stay the mapper's.
 * Returns 0, MP_EVALUE for parts that are not a queue's, -errno. */
int mp__queue_from_parts(const struct mp__parts *in, mp_queue **out);

#endif /* MPIPC_CORE_PARTS_H */
