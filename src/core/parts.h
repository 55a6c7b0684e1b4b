/*
 * parts - an object taken apart, to hand it to a child that was not forked
 * from this process (forkserver, spawn), and put together again there: its
 * blocks of shared memory (shm.h arenas) and its descriptors.
 *
 * The owners take their objects apart and check what a child received:
 * sync/sync_parts.c (Lock ... Array, Condition, Barrier), queue/queue.c
 * (Queue, SimpleQueue). process/passobj.c moves the parts and
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
    MP__PART_COND, /* its own lock (a JoinableQueue's), or the caller's: a second block */
    MP__PART_BARRIER,
    MP__PART_SIMPLEQUEUE,
    MP__PART_LAST = MP__PART_SIMPLEQUEUE,
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
    int64_t extra; /* a queue's maxsize; 1 for a Barrier with an action */
};

/*
 * Take obj of kind k (LOCK .. ARRAY, COND, BARRIER) apart: one block, no
 * descriptor; a Condition over the caller's Lock or RLock has that lock as
 * its second block. A Barrier with an action has extra 1: its action and
 * arg are pointers, only a fork child can use them (the caller refuses
 * the others). Returns 0; MP_EVALUE for another kind.
 */
int mp__sync_parts(enum mp__part_kind k, const void *obj, struct mp__parts *out);

/* In the child: check parts received for kind k (the blocks of the sizes
 * the kind, or an Array's header, says; a Barrier without an action) and
 * give the object. A Condition over a lock is recorded with the lock's
 * address here (mp__sync_cond_lock_here), since its own field holds the
 * parent's. Returns 0, MP_EVALUE, -ENOMEM. */
int mp__sync_from_parts(enum mp__part_kind k, const struct mp__parts *in, void **out);

/* Take a Queue apart (blocks: stream, places semaphore[, unfinished
 * semaphore, condition]; descriptors: read, write, spill, held; extra:
 * maxsize). Returns 0; MP_ECLOSED when closed here; MP_EVALUE. */
int mp__queue_parts(mp_queue *q, struct mp__parts *out);

/* In the child: a new handle over the parts; the descriptors become the
 * handle's (mp_queue_free closes them), the blocks stay the mapper's.
 * Returns 0, MP_EVALUE for parts that are not a queue's, -errno. */
int mp__queue_from_parts(const struct mp__parts *in, mp_queue **out);

/* A SimpleQueue likewise (one block: its stream; the same four
 * descriptors; no extra), and in the child a new handle over the parts
 * (mp_simplequeue_free closes its descriptors). Returns as the Queue's. */
int mp__simplequeue_parts(mp_simplequeue *q, struct mp__parts *out);
int mp__simplequeue_from_parts(const struct mp__parts *in, mp_simplequeue **out);

#endif /* MPIPC_CORE_PARTS_H */
