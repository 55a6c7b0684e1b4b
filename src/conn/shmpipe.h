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

/* Tests only: the receive ring's head (which 0) or tail (1) index in
 * shared memory, to corrupt it; NULL when the end does not receive. */
uint64_t *mp__shmc_test_index(mp_conn *c, int which);

#endif /* MPIPC_SHMPIPE_H */
