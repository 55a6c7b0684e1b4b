/*
 * shmpipe - the shared-memory transport of a connection (mp_pipe_shm): what
 * conn.c calls when an end's `shm` is set. Functions start with mp__shmc_.
 */
#ifndef MPIPC_SHMPIPE_H
#define MPIPC_SHMPIPE_H

#include <mpipc/conn.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct mp__shmc;

/* Send one whole message (the end is open, writable, fork-fixed). */
int mp__shmc_send(mp_conn *c, const void *buf, size_t len);

/*
 * Receive one message: into the caller's `into` (room bytes; MP_ETOOSHORT
 * with *size set and nothing consumed when it does not fit) or, with into
 * NULL, into a new buffer *out. maxlength 0 is no limit.
 */
int mp__shmc_recv(mp_conn *c, size_t maxlength, unsigned char *into, size_t room,
                  unsigned char **out, size_t *size, int64_t deadline);

/*
 * For mp_wait: 1 when a receive would not wait (a message, or a corrupt
 * ring, is there), else 0. With arm, a 0 also drains the doorbell and asks
 * the next sender to ring it, so the descriptor turns readable when a
 * message comes; 1 is also returned when the doorbell shows end of file.
 */
int mp__shmc_ready(mp_conn *c, bool arm);

/* Bytes waiting in the receive ring plus a message part way received. */
size_t mp__shmc_buffered(mp_conn *c);

/* Release this end's view of the shared memory (close/free). */
void mp__shmc_release(mp_conn *c);

/* ---- handing an end over by descriptor (shmpass.c) ---- */

/* The memfd behind c's ring (borrowed), to send beside its doorbell:
 * MP_ESTATE (with a message) when there is none, or a loan, view or
 * message part-way received is out on c. */
int mp__shmc_export(const mp_conn *c, int *memfd);

/* True when fd, received where a connection end was expected, is a file:
 * the memory of a shared-memory end, its doorbell following. */
bool mp__shmc_is_ring_fd(int fd);

/*
 * A working end on a ring's memfd and doorbell received from another
 * process, after checking both (MP_EPROTO with a message: not a ring, sizes
 * that do not match, a doorbell that is not the ring's, indexes out of
 * range). On success the end owns both descriptors; on failure neither is
 * closed and nothing stays mapped.
 */
int mp__shmc_adopt(mp_conn **out, int memfd, int doorbell);

/* True when c is a shared-memory end (mp_pipe_shm). */
bool mp__conn_is_shm(const mp_conn *c);

/* ---- loans and views (loan.c calls these; the end is open, and writable
 * for a loan, readable for a view) ---- */

/* The largest loan the ring holds in place; larger ones are on the heap. */
size_t mp__shmc_loan_max(const mp_conn *c);

/* Reserve size bytes (<= mp__shmc_loan_max) in the ring at *buf; the send
 * lock is held until mp__shmc_commit. */
int mp__shmc_loan(mp_conn *c, size_t size, void **buf, int64_t deadline);

/* True when buf is the loan the calling thread holds on c. */
bool mp__shmc_is_loan(const mp_conn *c, const void *buf);

/* Publish the loan as a message of len bytes, or with cancel drop it;
 * either way the loan ends, except MP_EVALUE (len over its size). */
int mp__shmc_commit(mp_conn *c, size_t len, bool cancel);

/* Receive one message as a view: in place in the ring when it lies there
 * whole and contiguous (the receive lock is then held until release),
 * otherwise a heap copy. */
int mp__shmc_recv_view(mp_conn *c, const void **view, size_t *len, int64_t deadline);

/* End a view: 1 if it was in the ring (consumed now), 0 if it is a heap
 * copy the caller frees. */
int mp__shmc_release_view(mp_conn *c, const void *view);

/* Tests only: the receive ring's head (which 0) or tail (1) index in
 * shared memory, to corrupt it; NULL when the end does not receive. */
uint64_t *mp__shmc_test_index(mp_conn *c, int which);

#endif /* MPIPC_SHMPIPE_H */
