/*
 * conn_state - the state of a connection (struct mp_conn), shared by
 * conn.c and conn_stash.c (handles kept from read-ahead) only. Functions
 * start with mp__conn_.
 */
#ifndef MPIPC_CONN_STATE_H
#define MPIPC_CONN_STATE_H

#include <mpipc/conn.h>

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Handles kept from read-ahead at once. A peer that follows the protocol
 * needs one: a read stops right after a handle's byte, and a receive reads
 * only until its own message is complete, which ends before the handle. */
#define MP__CONN_STASH_MAX 4

/* A descriptor that came with stream byte `off` (see conn_stash.c). */
struct mp__conn_handle {
    uint64_t off;
    int fd;
};

struct mp__shmc;

struct mp_conn {
    int fd; /* for a shared-memory end (shm), its doorbell socket */
    bool is_socket;
    bool unix_stream; /* AF_UNIX stream: reads into rbuf keep handles (see conn_stash.c) */
    bool writable;
    bool readable;  /* atomic: cleared after MP_ETOOLONG */
    bool closed;    /* atomic */
    bool readahead; /* guarded by rmu */
    unsigned gen;   /* fork generation the mutexes and buffer belong to */
    pthread_mutex_t rmu;
    pthread_mutex_t wmu;

    /* read side, guarded by rmu */
    unsigned char *rbuf;
    size_t rpos, rlen;
    unsigned char *big; /* large message in progress, or NULL */
    size_t big_size, big_got, big_cap;
    size_t direct_size, direct_got; /* large message read into a caller's buffer */
    size_t skip;                    /* payload bytes of a parent's message still to discard */
    bool skip_hdr;                  /* rbuf[rpos, rlen) starts the header of a message to discard */
    size_t unread;                  /* atomic mirror of (rlen - rpos) + big_got */
    bool ready;      /* atomic: a receive completes from rbuf alone (see conn_publish_read_state) */
    uint64_t rtotal; /* bytes ever read into rbuf (unix_stream ends) */
    size_t nstash;   /* handles kept, oldest first */
    struct mp__conn_handle stash[MP__CONN_STASH_MAX];
    struct mp__shmc *shm; /* NULL, or the shared-memory transport (shmpipe.c) */
};

/* A new end on fd (conn.c), for the transports beside it (shmpipe.c). */
int mp__conn_new(mp_conn **out, int fd, bool is_socket, bool unix_stream, bool readable,
                 bool writable);

/* ---- handles kept from read-ahead (conn_stash.c; rmu held) --------------- */

/* The stream offset of rbuf[i]. */
static inline uint64_t mp__conn_offset_of(const mp_conn *c, size_t i)
{
    return c->rtotal - c->rlen + i;
}

/* Close every kept descriptor. */
void mp__conn_stash_close_all(mp_conn *c);

/* True when the next buffered byte is a handle whose descriptor is kept
 * (kept ones whose byte was consumed otherwise are closed first). */
bool mp__conn_handle_next(mp_conn *c);

/* True when rbuf[i] is a kept handle's byte. */
bool mp__conn_stash_has(const mp_conn *c, size_t i);

/* Descriptors came with the r bytes just read at buf (before rtotal counts
 * them): keep a handle message's, close any other now. */
void mp__conn_stash_arrivals(mp_conn *c, const unsigned char *buf, ssize_t r, const int *fds,
                             size_t nfds, bool ctrunc);

#endif /* MPIPC_CONN_STATE_H */
