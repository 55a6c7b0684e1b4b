/*
 * qpipe - the stream under Queue and SimpleQueue: one pipe shared by every
 * process, written in atomic chunks and read through a read-ahead ring in
 * shared memory, so that no process that dies - writer or reader, at any
 * instant - can tear the stream or wedge the others.
 *
 * Writing. Every write(2) is at most PIPE_BUF bytes on a non-blocking pipe,
 * which POSIX makes all-or-nothing, and holds only whole chunks:
 *
 *     chunk = [flags | 0x80] [len: 3 bytes, little endian] [len bytes]
 *
 * An item fits one chunk (START|END) when 4 + len <= PIPE_BUF; a larger item
 * is a START chunk, CONT chunks and an END chunk, written while holding the
 * write lock so no other item comes between them. Small items are packed
 * many to a write: a 64-byte item costs 1/60 of a system call. A writer that
 * dies between the chunks of a big item leaves a START without an END; the
 * next START (or, for a reader waiting on an empty pipe, the write lock
 * found free) tells readers to drop it.
 *
 * Reading. Readers take the read lock and read into a ring in shared memory,
 * so items read ahead by one process are there for the next, whichever
 * process that is. A read always has room for everything in the pipe (or
 * asks FIONREAD and reads exactly that), so it ends on a write boundary and
 * the ring only ever holds whole chunks. The read is recorded before it is
 * made and the ring's free space is zeroed beforehand: a reader killed after
 * the kernel filled the ring but before it advanced the tail is repaired by
 * the next one, who counts the whole chunks up to the first zero byte
 * (every chunk starts with 0x80).
 *
 * Spilling. When a writer is told to stop (a queue being closed, or its
 * process exiting) and the pipe stays full for 0.1 s - nobody is reading -
 * the rest goes to a spill file shared by all processes, and that producer
 * spills from then on. Readers take from the spill file once the pipe and
 * ring are empty, so one producer's items still arrive in order. A one-
 * chunk HINT wakes readers asleep on the pipe. This is what lets a child
 * that put more than a pipe holds exit while its parent joins it first
 * (CPython gh-73983).
 *
 * The shared block is made before fork; descriptor numbers are inherited.
 */
#ifndef MPIPC_QPIPE_H
#define MPIPC_QPIPE_H

#include "internal.h"

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

struct mp__qpipe_shared {
    pthread_mutex_t rlock; /* readers: ring, spill head */
    pthread_mutex_t wlock; /* writers: the pipe's write end, spill tail */
    pthread_mutex_t slock; /* the spill file's offsets, under either lock */
    uint64_t head;         /* ring: next byte to parse (absolute offset) */
    uint64_t tail;         /* ring: end of the bytes read */
    uint64_t clean;        /* ring bytes in [tail, clean) are known zero */
    uint64_t read_len;     /* the read in flight, when `reading` */
    uint32_t reading;
    uint32_t cap; /* ring size in bytes */
    uint64_t spill_head, spill_tail;
    unsigned char ring[];
};

/* One process's view: the shared block and the inherited descriptors. */
struct mp__qpipe {
    struct mp__qpipe_shared *sh;
    int rfd, wfd, spill_fd;
    size_t pipe_cap; /* the pipe's capacity (the ring holds twice that) */
};

/* Make the shared block, the pipe (both ends non-blocking, close-on-exec)
 * and the spill file. Returns 0 or -errno; nothing is left on failure. */
int mp__qpipe_open(struct mp__qpipe *qp);

/* Close this process's descriptors (idempotent). */
void mp__qpipe_close_fds(struct mp__qpipe *qp);

/* Destroy the shared block (the creating process, when nobody uses it). */
void mp__qpipe_destroy(struct mp__qpipe *qp);

/*
 * Write items[0..n) (iov_base/iov_len each) in order.
 *
 * deadline: how long to wait for room in the pipe. When it passes, an item
 *           written only in part is abandoned (readers drop it) and
 *           MP_ETIMEDOUT is returned.
 * spill:    may be NULL (never spill). In: true sends everything straight to
 *           the spill file (a producer that has started spilling keeps its
 *           order that way). Out: set to true once anything was spilled.
 * stop:     may be NULL; once *stop is non-zero the call stops waiting for
 *           room as soon as the pipe has had none for 0.1 s, and spills the
 *           rest (a queue being closed, or its process exiting).
 * written:  receives how many items were delivered (to the pipe or spilled).
 * sigpipe_blocked: as for mp__write_all. A process that holds its read end
 *           open cannot get SIGPIPE from its own pipe; pass false only when
 *           the read end may be closed meanwhile.
 *
 * Returns 0 when all were delivered, MP_ETIMEDOUT, -EPIPE when no process
 * has the read end open, or another -errno.
 */
int mp__qpipe_write(struct mp__qpipe *qp, const struct iovec *items, size_t n, int64_t deadline,
                    bool *spill, const int *stop, size_t *written, bool sigpipe_blocked);

/*
 * Receive one item, waiting until the deadline. *data is a fresh buffer (never
 * NULL on success) the caller frees with free(). Returns 0; MP_ETIMEDOUT;
 * MP_EPROTO when the stream is corrupt (the bytes read ahead are dropped and
 * the next item is read cleanly); -ENOMEM; -errno.
 *
 * A big item that has begun to arrive is received whole even if the deadline
 * passes meanwhile, as long as its writer is alive: the reader holds the read
 * lock for it, and what it has assembled cannot be handed to another reader.
 */
int mp__qpipe_read(struct mp__qpipe *qp, void **data, size_t *len, int64_t deadline);

/* 1 if something may be ready to read (ring, pipe or spill file), else 0. */
int mp__qpipe_ready(struct mp__qpipe *qp);

#endif /* MPIPC_QPIPE_H */
