/*
 * qpipe - the stream under Queue and SimpleQueue: one pipe shared by every
 * process, written in atomic chunks and read through a read-ahead ring in
 * shared memory, so that no process that dies - writer or reader, at any
 * instant - can tear the stream or wedge the others, and no process that
 * writes junk into the pipe can take down the readers.
 *
 * Writing. Every write(2) is at most PIPE_BUF bytes on a non-blocking pipe,
 * which POSIX makes all-or-nothing, and holds only whole chunks:
 *
 *     chunk  = header (8 bytes) + len bytes of payload
 *     header = [0x80 | flags] [len: 3 bytes LE] [check: 4 bytes LE]
 *     flags  = START 0x01, END 0x02, HINT 0x04, OBJ 0x08 (0x70 are zero)
 *
 * An item fits one chunk (START|END) when 8 + len <= PIPE_BUF; a larger item
 * is a START chunk, CONT chunks and an END chunk, written while holding the
 * write lock so no other item comes between them; every chunk but the END
 * carries exactly MP__QPIPE_CHUNK_MAX bytes. OBJ marks every chunk of an
 * item put as a value (a pickle) rather than as bytes, so a reader knows an
 * item's kind from its first chunk, before it consumes anything. check is a
 * mix of the other header fields with a random key made with the queue: a
 * stray byte, zeros, text or another queue's chunks are not a header of this
 * queue (a random 8 bytes pass with a chance of about 2^-48).
 *
 * Small items are packed many to a write: a 64-byte item costs 1/56 of a
 * system call. A writer that dies between the chunks of a big item leaves a
 * START without an END; the next START (or, for a reader waiting on an empty
 * pipe, the write lock found free) tells readers to drop it.
 *
 * Junk. Bytes that are not a header are skipped one at a time, so junk
 * costs a reader only its own bytes and never a valid chunk around it; an
 * item that grows past the queue's max_item is dropped as it streams in
 * (its bytes are skipped until its END or the next START), so a reader's
 * memory stays within max_item whatever is written. Items are only ever
 * counted (queue slots, qsize) when a library put made them, so junk leaves
 * every count exact. A process that writes valid chunks of this queue - it
 * has the key, as it has the shared block - can still inject items; the
 * check stops accidents, not forgers.
 *
 * Reading. Readers take the read lock and read into a ring in shared memory,
 * so items read ahead by one process are there for the next, whichever
 * process that is. A read always has room for everything in the pipe (or
 * asks FIONREAD and reads exactly that), so it ends on a write boundary and
 * the ring holds whole chunks (and any junk). The read is recorded before it
 * is made and the ring's free space is zeroed beforehand: a reader killed
 * after the kernel filled the ring but before it advanced the tail is
 * repaired by the next one, who counts the whole chunks up to the first
 * zero byte (every chunk starts with 0x80).
 *
 * The held item. A get that must return (its timeout, a failed allocation)
 * while it holds part of a big item leaves that part in the held file, a
 * file shared by all processes, and the next get - in any process - resumes
 * the item from there: the held item is the head of the queue. A whole item
 * that could not be handed over (out of memory while decoding it) waits
 * there too. A reader that dies while it owns the item loses it, as it
 * loses any item it was receiving.
 *
 * Spilling. When a writer is told to stop (a queue being closed, or its
 * process exiting) and the pipe stays full for 0.1 s - nobody is reading -
 * the rest goes to a spill file shared by all processes, and that producer
 * spills from then on. Readers take from the spill file once the pipe and
 * ring are empty, so one producer's items still arrive in order. A one-
 * chunk HINT wakes readers asleep on the pipe. This is what lets a child
 * that put more than a pipe holds exit while its parent joins it first
 * (CPython gh-73983). A spilled item is an 8-byte little-endian length whose
 * top bit is set for a value, then its bytes.
 *
 * The shared block is made before fork; descriptor numbers are inherited.
 */
#ifndef MPIPC_QPIPE_H
#define MPIPC_QPIPE_H

#include "core/internal.h"

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* An item's kind: put as bytes, or as a value (a pickle). */
#define MP__QK_BYTES 0
#define MP__QK_OBJ   1
#define MP__QK_ANY   (-1) /* for a read: either */

/* The chunk format (see above), for the code that writes chunks and for the
 * tests that play a process writing junk. */
#define MP__QPIPE_HDR       8
#define MP__QPIPE_CHUNK_MAX ((size_t)4096 - MP__QPIPE_HDR)
#define MP__QF_START        0x01
#define MP__QF_END          0x02
#define MP__QF_HINT         0x04
#define MP__QF_OBJ          0x08

struct mp__qpipe_shared {
    pthread_mutex_t rlock; /* readers: ring, held item, spill head */
    pthread_mutex_t wlock; /* writers: the pipe's write end, spill tail */
    pthread_mutex_t slock; /* the spill file's offsets, under either lock */
    uint64_t head;         /* ring: next byte to parse (absolute offset) */
    uint64_t tail;         /* ring: end of the bytes read */
    uint64_t clean;        /* ring bytes in [tail, clean) are known zero */
    uint64_t read_len;     /* the read in flight, when `reading` */
    uint32_t reading;
    uint32_t cap; /* ring size in bytes */
    uint64_t spill_head, spill_tail;
    uint64_t max_item; /* longest item, in bytes */
    uint32_t key;      /* mixed into every chunk header's check */
    /* The held item (rlock): held_len bytes at the start of the held file. */
    uint32_t held;      /* 0 none, 1 part of an item, 2 a whole item */
    uint32_t held_kind; /* MP__QK_BYTES or MP__QK_OBJ */
    uint64_t held_len;
    unsigned char ring[];
};

/* One process's view: the shared block and the inherited descriptors. */
struct mp__qpipe {
    struct mp__qpipe_shared *sh;
    int rfd, wfd, spill_fd, held_fd;
    size_t pipe_cap; /* the pipe's capacity (the ring holds twice that) */
    /* The last header made (under wlock) and the last one found valid (under
     * rlock): items tend to repeat them, and the check word then costs a
     * compare. Each always holds a valid header of this queue. */
    unsigned char wlast[8];
    unsigned char rlast[8];
};

/* One item to write: len bytes at data, of kind MP__QK_BYTES or _OBJ. */
struct mp__qitem {
    const void *data;
    size_t len;
    int kind;
};

/* The largest max_item mp__qpipe_open accepts. */
#define MP__QPIPE_MAX_ITEM_LIMIT ((uint64_t)(SIZE_MAX / 4))

/*
 * Make the shared block, the pipe (both ends non-blocking, close-on-exec),
 * the spill file and the held file. max_item: the longest item readers
 * accept (1 .. MP__QPIPE_MAX_ITEM_LIMIT). Returns 0 or -errno; nothing is
 * left on failure.
 */
int mp__qpipe_open(struct mp__qpipe *qp, size_t max_item);

/* Close this process's descriptors (idempotent). */
void mp__qpipe_close_fds(struct mp__qpipe *qp);

/* Destroy the shared block (the creating process, when nobody uses it). */
void mp__qpipe_destroy(struct mp__qpipe *qp);

/* The queue's max_item. */
size_t mp__qpipe_max_item(const struct mp__qpipe *qp);

/* Write the MP__QPIPE_HDR-byte header of a chunk with these flags (with or
 * without 0x80) and len payload bytes, as this queue's writers do. */
void mp__qpipe_header(const struct mp__qpipe *qp, unsigned flags, size_t len,
                      unsigned char hdr[MP__QPIPE_HDR]);

/*
 * Write items[0..n) in order. Items must not be longer than max_item.
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
int mp__qpipe_write(struct mp__qpipe *qp, const struct mp__qitem *items, size_t n, int64_t deadline,
                    bool *spill, const int *stop, size_t *written, bool sigpipe_blocked);

/*
 * Called by mp__qpipe_read with a whole item, still under the read lock, so
 * that what it does (decoding a value) decides whether the item is taken.
 * Returns 0 (taken) or -ENOMEM (the item stays at the head of the queue and
 * the read returns -ENOMEM).
 */
typedef int (*mp__qpipe_accept_fn)(void *ctx, const void *data, size_t len, int kind);

/*
 * Receive the item at the head of the queue, waiting until the deadline.
 *
 * want:   MP__QK_BYTES or MP__QK_OBJ to take only an item of that kind (the
 *         head item of the other kind stays, and MP_ETYPE is returned), or
 *         MP__QK_ANY.
 * accept: may be NULL; see mp__qpipe_accept_fn.
 * data, len, kind: the item - *data a fresh buffer (never NULL on success)
 *         the caller frees with free(); kind may be NULL.
 *
 * Returns 0; MP_ETIMEDOUT; MP_ETYPE; -ENOMEM (the item stays at the head);
 * -errno. A read returns by its deadline whatever arrives - 5 ms later at
 * most while the item it receives streams in without a wait - and the part
 * of an item it was receiving stays for the next read (see "The held
 * item").
 */
int mp__qpipe_read(struct mp__qpipe *qp, int want, mp__qpipe_accept_fn accept, void *ctx,
                   void **data, size_t *len, int *kind, int64_t deadline);

/* 1 if something may be ready to read (ring, held item, pipe or spill
 * file), else 0. */
int mp__qpipe_ready(struct mp__qpipe *qp);

/* For tests: the stream under a queue. */
struct mp_queue;
struct mp_simplequeue;
struct mp__qpipe *mp__queue_qpipe(struct mp_queue *q);
struct mp__qpipe *mp__simplequeue_qpipe(struct mp_simplequeue *q);

#endif /* MPIPC_QPIPE_H */
