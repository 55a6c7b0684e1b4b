/*
 * shmpipe_impl - what shmpipe.c and shmpass.c (handing an end over by
 * descriptor) share: the ring's layout in shared memory and an end's state.
 */
#ifndef MPIPC_SHMPIPE_IMPL_H
#define MPIPC_SHMPIPE_IMPL_H

#include "conn/shmpipe.h"

#include <pthread.h>
#include <semaphore.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SHMPIPE_RING_DEFAULT ((size_t)1 << 20)
#define SHMPIPE_RING_MIN     ((size_t)4096)
#define SHMPIPE_RING_MAX     ((size_t)1 << 30)
#define SHMPIPE_HDR          ((size_t)16)
#define SHMPIPE_BEGIN        1u
#define SHMPIPE_END          2u
#define SHMPIPE_PAD          4u /* filler up to the ring's end, before a loan */
#define SHMPIPE_SPIN_MIN     2000
#define SHMPIPE_SPIN_MAX     50000
#define SHMPIPE_SLEEP_CAP_NS INT64_C(100000000)

/* The shared header of one ring. */
struct shmpipe_hdr {
    _Alignas(64) uint64_t tail;   /* bytes ever published (senders) */
    _Alignas(64) uint64_t head;   /* bytes ever consumed (receivers) */
    _Alignas(64) uint32_t asleep; /* a receiver wants the doorbell rung */
    uint32_t want_room;           /* a sender waits on `room` */
    uint32_t rx_closed;           /* a receiving end was closed: look for EPIPE */
    sem_t room;                   /* posted by a receiver that freed space */
    _Alignas(64) pthread_mutex_t send_mu;
    _Alignas(64) pthread_mutex_t recv_mu;
};

#define SHMPIPE_HDR_SPACE ((sizeof(struct shmpipe_hdr) + 63) & ~(size_t)63)

/* A ring as this process sees it. */
struct shmpipe_ring {
    struct shmpipe_hdr *h; /* NULL: the end does not use this direction */
    unsigned char *data;
    size_t cap;
    /* The other side's index as last read (send: head, receive: tail),
     * under the send or receive mutex: it only grows, so an old value
     * understates what is free or published, and is read again only when
     * it does not suffice - the line the other side writes is not fetched
     * for every message. */
    uint64_t seen;
};

/* The mapping, shared by the ends this process holds (refs). */
struct shmpipe_map {
    void *base;
    size_t size;
    int fd;        /* the memfd behind it (handing over), or -1 */
    unsigned refs; /* atomic */
};

struct mp__shmc {
    struct shmpipe_map *map;
    struct shmpipe_ring rx, tx;
    int spin_ns;
    /* guarded by rx.h->recv_mu; a message received part way */
    unsigned gen;
    bool part_on;
    unsigned char *part;
    size_t part_size, part_cap;
    size_t part_got; /* atomic: mp_conn_buffered reads it without the lock */
    /* a loan out (send_mu held by loan_owner) */
    bool loan_on; /* atomic */
    pthread_t loan_owner;
    unsigned loan_gen; /* the fork generation that took it */
    unsigned char *loan_buf;
    uint64_t loan_tail, loan_at; /* where its pad (if any) and its record begin */
    size_t loan_size;
    /* a view out (recv_mu held) */
    bool view_on;
    const unsigned char *view_buf;
    uint64_t view_next;
};

/*
 * The first SHMPIPE_PASSPORT bytes of the mapping: written once by
 * mp_pipe_shm, read (into a private copy, then checked) by a process that
 * receives an end by descriptor (shmpass.c). ino/dev name the doorbell
 * socket of each side (0: the first end, which receives on ring 0), so a
 * received doorbell says which side it is and that it belongs to this ring.
 */
#define SHMPIPE_MAGIC    UINT64_C(0x3165706970636d70) /* "pmcpipe1" */
#define SHMPIPE_PASSPORT ((size_t)64)
struct shmpipe_passport {
    uint64_t magic;
    uint64_t cap;
    uint32_t duplex;
    uint32_t version; /* 1 */
    uint64_t ino[2];
    uint64_t dev[2];
};

#endif /* MPIPC_SHMPIPE_IMPL_H */
