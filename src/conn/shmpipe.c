/*
 * shmpipe - mp_pipe_shm: a Pipe whose messages travel through rings in
 * shared memory, with a socketpair as doorbell (see the design notes below).
 * Static functions carry shmpipe_.
 *
 * Design notes (for whoever adds loans and the benchmark rows next).
 *
 * Memory. One mp__shm_map() mapping made before fork holds one ring per
 * direction (a one-way pipe has one): a header (tail, head, the receiver's
 * "asleep" flag, a robust send mutex and a robust receive mutex, each on its
 * own cache line) and cap data bytes, cap a power of two. tail and head are
 * free-running byte counts; position = index & (cap - 1). Senders write only
 * tail, receivers only head. cap itself is never read back from shared
 * memory: each process keeps it from creation.
 *
 * Records. A message is one or more records, each a 16-byte header
 * {u64 total, u32 len, u32 flags} and len payload bytes, padded to 8, the
 * whole record possibly wrapping around the end of the data area (copies
 * are split in two). flags: BEGIN (first record of a message), END (last).
 * A message that fits the ring is one BEGIN|END record: one memcpy in, one
 * memcpy out (into the caller's buffer or a malloc of exactly its size). A
 * larger one goes in records of at most cap/4 payload bytes; the receiver
 * collects them in a buffer that grows only as records arrive (never sized
 * by `total` alone) and delivers it whole at END. A record is published by
 * storing tail after its bytes are written, so no reader ever sees half a
 * record.
 *
 * Checks. Every index and header read from shared memory is checked before
 * use: tail - head <= cap, a record fits in what is published, flags are
 * known, len <= total, continuation records match the message begun. A
 * failed check is MP_EPROTO with nothing consumed.
 *
 * Several senders. A robust process-shared mutex is held around a whole
 * message (all its records). A sender that dies holding it can have
 * published the first records of a message only: the next sender gets the
 * mutex (EOWNERDEAD, made consistent) and its BEGIN tells the receiver to
 * drop the dead sender's part. A receiver whose peer is gone (doorbell end
 * of file) with a message part way gives MP_ETRUNCATED. Receivers in
 * several processes take the receive mutex around one receive.
 *
 * Waiting. A receiver finding the ring empty spins (2-50 us, adapting to
 * whether spinning paid off last time, as psync's waiters spin 20 us), then
 * drains the doorbell socket, sets `asleep`, checks the ring again and
 * sleeps in poll() on its doorbell end. A sender stores tail, then rings
 * (writes one byte) only if it finds `asleep` set, clearing it: a receiver
 * that is awake costs the sender no system call. Both sides use seq_cst for
 * tail/asleep, so the store-then-load pairs cannot both miss. Each sleep is
 * capped at 100 ms and rechecks: a wake-up taken by another thread of the
 * same end (a poller and a receiver at once) costs latency, never a hang.
 * A sender waiting for room (back-pressure) spins 20 us, then sets
 * `want_room` and sleeps on the ring's process-shared semaphore `room`,
 * which a receiver posts after freeing space if it finds the flag (the same
 * store/recheck pairing); each sleep is capped at 10 ms to see its peer
 * gone as POLLHUP on the doorbell (-EPIPE).
 * End of file is the doorbell's: the kernel closes a killed process's
 * socket, so every peer end closed (or dead) reads as end of file there,
 * after which the ring is drained of whole messages and then gives MP_EOF.
 *
 * Fork. The mapping and the doorbell are inherited. A message a process
 * had part way received (large, after a timeout) is that process's: a child
 * drops its copy, and the continuation records it then meets, which belong
 * to no message it began, are skipped.
 *
 * Loans and views (loan.c has the public calls). A loan takes the send
 * mutex and reserves one BEGIN|END record at tail, unpublished; if its
 * payload would wrap, a PAD record (skipped by receivers) fills the ring to
 * its end first, so a loan is contiguous and at most cap/2 - 32 bytes (what
 * an empty ring always holds, wherever its head is). The commit writes the
 * headers and stores tail once; a sender killed before that published
 * nothing and the next sender takes the mutex (EOWNERDEAD). A view is a
 * BEGIN|END record whose payload does not wrap: the receive mutex is kept
 * and head moves only at the release; a receiver killed holding one
 * consumed nothing. Other messages are viewed through a heap copy.
 *
 * Prompt EPIPE. A receiving end's close sets rx_closed; the next send
 * polls its doorbell once for end of file (see shmpipe_reader_gone).
 *
 * By descriptor (shmpass.c). The mapping is a memfd whose first 64 bytes
 * (the passport) give the ring's size and shape and each side's doorbell
 * inode; an end travels as the memfd then its doorbell.
 *
 * Not done yet (issue 16): messages over the ring in a loaned block of their own
 * (today a heap loan sent in pieces); and the rest of the speed work.
 * Each side keeps the other's index as last read (shmpipe_ring.seen), so
 * the line the other side writes is fetched only when needed; the robust
 * send and receive mutexes are now the largest per-message cost (about a
 * third of a one-way message in perf). Dropping them for a lone sender
 * needs a way to see a sender that died mid-message other than the
 * kernel's robust list (kill(pid, 0) does not see a zombie), so they stay.
 */
#include "conn/shmpipe.h"
#include "conn/conn_state.h"
#include "conn/shmpipe_impl.h"
#include "core/internal.h"
#include "core/io.h"
#include "core/psync.h"
#include "core/shm.h"

#include <errno.h>
#include <semaphore.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- ring copies ---------------------------------------------------------- */

/* Copies of n bytes at ring position pos, in two parts when they wrap
 * (n == 0: none; an empty message may come with a NULL buffer). */
static void shmpipe_copy_out(const struct shmpipe_ring *r, uint64_t pos, void *dst, size_t n)
{
    if (n == 0)
        return;
    size_t off = (size_t)pos & (r->cap - 1);
    size_t first = r->cap - off < n ? r->cap - off : n;
    memcpy(dst, r->data + off, first);
    memcpy((unsigned char *)dst + first, r->data, n - first);
}

static void shmpipe_copy_in(const struct shmpipe_ring *r, uint64_t pos, const void *src, size_t n)
{
    if (n == 0)
        return;
    size_t off = (size_t)pos & (r->cap - 1);
    size_t first = r->cap - off < n ? r->cap - off : n;
    memcpy(r->data + off, src, first);
    memcpy(r->data, (const unsigned char *)src + first, n - first);
}

static inline size_t shmpipe_round8(size_t n)
{
    return (n + 7) & ~(size_t)7;
}

static inline void shmpipe_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __asm__ __volatile__("pause");
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* ---- construction --------------------------------------------------------- */

static int shmpipe_ring_init(struct shmpipe_ring *r, unsigned char *at, size_t cap)
{
    r->h = (struct shmpipe_hdr *)at;
    r->data = at + SHMPIPE_HDR_SPACE;
    r->cap = cap;
    int rc = mp__mutex_init(&r->h->send_mu, false);
    if (rc == 0)
        rc = mp__sem_init(&r->h->room, 0);
    if (rc == 0)
        rc = mp__mutex_init(&r->h->recv_mu, false);
    return rc;
}

static int shmpipe_end_new(struct mp__shmc **out, struct shmpipe_map *map)
{
    struct mp__shmc *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    s->map = map;
    s->spin_ns = 20000;
    s->gen = mp__forkgen();
    *out = s;
    return 0;
}

/* Write the passport (shmpipe_impl.h): the ring's size and shape and the
 * doorbell socket of each side, for a process that receives an end by
 * descriptor. */
static int shmpipe_passport_init(struct shmpipe_map *map, size_t cap, bool duplex, const int fds[2])
{
    struct shmpipe_passport pp = {
        .magic = SHMPIPE_MAGIC, .cap = cap, .duplex = duplex, .version = 1};
    for (int i = 0; i < 2; i++) {
        struct stat st;
        if (fstat(fds[i], &st) < 0)
            return -errno;
        pp.ino[i] = (uint64_t)st.st_ino;
        pp.dev[i] = (uint64_t)st.st_dev;
    }
    memcpy(map->base, &pp, sizeof pp);
    return 0;
}

MP_API int mp_pipe_shm(mp_conn **a, mp_conn **b, bool duplex, const mp_pipe_shm_opts *opts)
{
    if (!a || !b)
        return -EINVAL;
    *a = *b = NULL;
    size_t want = opts && opts->ring_size ? opts->ring_size : SHMPIPE_RING_DEFAULT;
    if (want > SHMPIPE_RING_MAX)
        return mp__err(-EINVAL, "ring_size %zu is over the limit (%zu)", want, SHMPIPE_RING_MAX);
    size_t cap = SHMPIPE_RING_MIN;
    while (cap < want)
        cap <<= 1;
    size_t nrings = duplex ? 2 : 1;
    struct shmpipe_map *map = calloc(1, sizeof *map);
    if (map)
        map->fd = -1;
    struct mp__shmc *sa = NULL, *sb = NULL;
    int fds[2] = {-1, -1};
    int rc = map ? 0 : -ENOMEM;
    if (rc == 0) {
        map->size = SHMPIPE_PASSPORT + nrings * (SHMPIPE_HDR_SPACE + cap);
        rc = mp__shm_map_memfd(&map->base, map->size, &map->fd);
        if (rc < 0)
            map->base = NULL;
    }
    /* Ring 0 carries messages to a, ring 1 (duplex only) to b. */
    struct shmpipe_ring r0 = {0}, r1 = {0};
    unsigned char *rings = map && map->base ? (unsigned char *)map->base + SHMPIPE_PASSPORT : NULL;
    if (rc == 0)
        rc = shmpipe_ring_init(&r0, rings, cap);
    if (rc == 0 && duplex)
        rc = shmpipe_ring_init(&r1, rings + SHMPIPE_HDR_SPACE + cap, cap);
    if (rc == 0)
        rc = shmpipe_end_new(&sa, map);
    if (rc == 0)
        rc = shmpipe_end_new(&sb, map);
    if (rc == 0)
        rc = mp__socketpair(fds);
    if (rc == 0)
        rc = shmpipe_passport_init(map, cap, duplex, fds);
    if (rc == 0)
        rc = mp__conn_new(a, fds[0], true, false, true, duplex);
    if (rc == 0) {
        fds[0] = -1;
        rc = mp__conn_new(b, fds[1], true, false, duplex, true);
        if (rc == 0)
            fds[1] = -1;
    }
    if (rc < 0) {
        if (*a)
            mp_conn_free(*a); /* no shm attached yet: closes its descriptor only */
        *a = NULL;
        if (fds[0] >= 0)
            mp__close(fds[0]);
        if (fds[1] >= 0)
            mp__close(fds[1]);
        free(sa);
        free(sb);
        if (map && map->base)
            mp__shm_unmap(map->base, map->size);
        if (map && map->fd >= 0)
            mp__close(map->fd);
        free(map);
        return rc;
    }
    sa->rx = r0;
    sa->tx = r1;
    sb->rx = r1;
    sb->tx = r0;
    map->refs = 2;
    (*a)->shm = sa;
    (*b)->shm = sb;
    return 0;
}

void mp__shmc_release(mp_conn *c)
{
    struct mp__shmc *s = c->shm;
    if (!s)
        return;
    c->shm = NULL;
    /* After the doorbell is closed (mp_conn_close did it): tell senders to
     * look for end of file there (see shmpipe_reader_gone). */
    if (s->rx.h)
        __atomic_store_n(&s->rx.h->rx_closed, 1, __ATOMIC_SEQ_CST);
    /* A loan or view held by this thread ends with the end (a forked
     * child's copies of its parent's are not its own). */
    if (__atomic_load_n(&s->loan_on, __ATOMIC_ACQUIRE) && s->loan_gen == mp__forkgen() &&
        pthread_equal(s->loan_owner, pthread_self()))
        mp__mutex_unlock(&s->tx.h->send_mu);
    if (s->view_on && s->gen == mp__forkgen())
        mp__mutex_unlock(&s->rx.h->recv_mu);
    if (__atomic_sub_fetch(&s->map->refs, 1, __ATOMIC_ACQ_REL) == 0) {
        mp__shm_unmap(s->map->base, s->map->size);
        if (s->map->fd >= 0)
            mp__close(s->map->fd);
        free(s->map);
    }
    free(s->part);
    free(s);
}

uint64_t *mp__shmc_test_index(mp_conn *c, int which)
{
    if (!c || !c->shm || !c->shm->rx.h)
        return NULL;
    return which ? &c->shm->rx.h->tail : &c->shm->rx.h->head;
}

/* ---- the doorbell ------------------------------------------------------------ */

/* Take every byte rung so far, without waiting (io.c's non-blocking
 * receive). Returns 1 at end of file (every peer end closed or its
 * processes dead), 0, or -errno. */
static int shmpipe_drain(mp_conn *c)
{
    unsigned char junk[64];
    for (;;) {
        ssize_t r = mp__recv_nowait(c->fd, junk, sizeof junk);
        if (r == 0)
            return 1;
        if (r > 0)
            continue;
        if (r == -EAGAIN || r == -EWOULDBLOCK)
            return 0;
        return r == -ECONNRESET ? 1 : (int)r;
    }
}

/* After publishing: ring the doorbell if the receiver said it sleeps. */
static int shmpipe_ring_bell(mp_conn *c, struct shmpipe_hdr *h)
{
    if (!__atomic_load_n(&h->asleep, __ATOMIC_SEQ_CST))
        return 0;
    if (!__atomic_exchange_n(&h->asleep, 0, __ATOMIC_SEQ_CST))
        return 0;
    unsigned char one = 1;
    struct iovec iov = {.iov_base = &one, .iov_len = 1};
    return mp__write_all(c->fd, &iov, 1, true, false);
}

/* ---- sending ------------------------------------------------------------------- */

/*
 * Prompt EPIPE. A receiving end's close sets rx_closed after closing its
 * doorbell; the sender that finds it clears it and asks the kernel whether
 * every receiving end is gone (its doorbell shows end of file). Others may
 * still hold the end (forked children): then sending goes on, and the next
 * close sets the flag again. Clearing before polling means a close that
 * lands after the poll leaves the flag set for the next send. Costs one load
 * on a line the sender reads anyway (asleep) until a reader closes.
 */
static int shmpipe_reader_gone(mp_conn *c, struct shmpipe_hdr *h)
{
    if (__builtin_expect(!__atomic_load_n(&h->rx_closed, __ATOMIC_RELAXED), 1))
        return 0;
    if (!__atomic_exchange_n(&h->rx_closed, 0, __ATOMIC_SEQ_CST))
        return 0;
    struct pollfd p = {.fd = c->fd, .events = 0};
    int rc = mp__poll(&p, 1, mp__now_ns());
    if (rc < 0)
        return rc;
    if (!(p.revents & (POLLHUP | POLLERR)))
        return 0;
    __atomic_store_n(&h->rx_closed, 1, __ATOMIC_SEQ_CST); /* every later send too */
    return -EPIPE;
}

/* Wait until `need` bytes are free in the ring (send mutex held), up to
 * deadline. Returns 0 with *tail the publish point, MP_EPROTO for a corrupt
 * index, -EPIPE when the receiving end is gone, MP_ETIMEDOUT. */
static int shmpipe_wait_room(mp_conn *c, struct shmpipe_ring *r, size_t need, uint64_t *tail,
                             int64_t deadline)
{
    int64_t spin_until = 0; /* read the clock only once the ring is full */
    for (;;) {
        uint64_t t = __atomic_load_n(&r->h->tail, __ATOMIC_RELAXED);
        uint64_t h = r->seen;
        if (t - h > r->cap || r->cap - (t - h) < need)
            r->seen = h = __atomic_load_n(&r->h->head, __ATOMIC_ACQUIRE);
        uint64_t used = t - h;
        if (used > r->cap)
            return mp__err(MP_EPROTO, "shared-memory ring corrupt: %llu bytes used of %zu",
                           (unsigned long long)used, r->cap);
        if (r->cap - used >= need) {
            *tail = t;
            return 0;
        }
        if (spin_until == 0)
            spin_until = mp__now_ns() + 20000;
        if (mp__now_ns() < spin_until) {
            shmpipe_relax();
            continue;
        }
        /* Back-pressure: ask the receiver to post `room` when it frees
         * space, and look again (the usual recheck against a lost post).
         * Each sleep is capped, to notice a receiver that is gone. */
        __atomic_store_n(&r->h->want_room, 1, __ATOMIC_SEQ_CST);
        if (r->cap - (t - __atomic_load_n(&r->h->head, __ATOMIC_SEQ_CST)) >= need)
            continue;
        if (mp__deadline_passed(deadline))
            return MP_ETIMEDOUT;
        int64_t until = mp__now_ns() + SHMPIPE_SLEEP_CAP_NS / 10;
        int rc = mp__sem_wait(&r->h->room,
                              deadline != MP__NO_DEADLINE && deadline < until ? deadline : until);
        if (rc < 0 && rc != MP_ETIMEDOUT)
            return rc;
        if (rc == MP_ETIMEDOUT) {
            struct pollfd p = {.fd = c->fd, .events = 0};
            int prc = mp__poll(&p, 1, mp__now_ns());
            if (prc < 0)
                return prc;
            if (p.revents & (POLLHUP | POLLERR))
                return -EPIPE;
        }
    }
}

/* Write one record and publish it. */
static void shmpipe_put(const struct shmpipe_ring *r, uint64_t tail, uint64_t total,
                        const void *buf, size_t len, uint32_t flags)
{
    unsigned char hdr[SHMPIPE_HDR];
    uint32_t len32 = (uint32_t)len;
    memcpy(hdr, &total, 8);
    memcpy(hdr + 8, &len32, 4);
    memcpy(hdr + 12, &flags, 4);
    shmpipe_copy_in(r, tail, hdr, SHMPIPE_HDR);
    shmpipe_copy_in(r, tail + SHMPIPE_HDR, buf, len);
    __atomic_store_n(&r->h->tail, tail + SHMPIPE_HDR + shmpipe_round8(len), __ATOMIC_SEQ_CST);
}

int mp__shmc_send(mp_conn *c, const void *buf, size_t len)
{
    struct mp__shmc *s = c->shm;
    struct shmpipe_ring *r = &s->tx;
    if (len > UINT64_MAX / 2)
        return -EINVAL;
    int rc = mp__mutex_lock(&r->h->send_mu, MP__NO_DEADLINE);
    if (rc == -EDEADLK) /* this thread holds a loan: it is the next message */
        return mp__err(MP_ESTATE, "this thread holds a loan: commit or cancel it first");
    if (rc < 0 && rc != MP_EOWNERDEAD)
        return rc;
    /* MP_EOWNERDEAD: a sender died inside a message; our BEGIN makes the
     * receiver drop its part (see the design notes). */
    rc = shmpipe_reader_gone(c, r->h);
    if (rc < 0) {
        mp__mutex_unlock(&r->h->send_mu);
        return rc;
    }
    size_t max_chunk = r->cap / 4 - SHMPIPE_HDR; /* pieces pipeline: 4 in flight */
    bool whole = len <= r->cap - SHMPIPE_HDR && shmpipe_round8(len) <= r->cap - SHMPIPE_HDR;
    const unsigned char *p = buf;
    size_t done = 0;
    uint32_t flags = SHMPIPE_BEGIN;
    rc = 0;
    do {
        size_t n = whole ? len : (len - done < max_chunk ? len - done : max_chunk);
        if (done + n == len)
            flags |= SHMPIPE_END;
        uint64_t tail = 0;
        rc = shmpipe_wait_room(c, r, SHMPIPE_HDR + shmpipe_round8(n), &tail, MP__NO_DEADLINE);
        if (rc < 0)
            break;
        shmpipe_put(r, tail, len, p + done, n, flags);
        done += n;
        flags = 0;
        rc = shmpipe_ring_bell(c, r->h);
    } while (rc == 0 && done < len);
    mp__mutex_unlock(&r->h->send_mu);
    return rc;
}

/* ---- receiving ----------------------------------------------------------------- */

struct shmpipe_rec {
    uint64_t total;
    uint32_t len;
    uint32_t flags;
};

/* Python's _bad_message_length(), as conn.c does it. */
static void shmpipe_bad_message_length(mp_conn *c)
{
    if (c->writable) {
        __atomic_store_n(&c->readable, false, __ATOMIC_RELEASE);
    } else {
        __atomic_store_n(&c->closed, true, __ATOMIC_RELEASE);
        mp__close(c->fd);
        c->fd = -1;
    }
}

/* Publish a new head; wake a sender waiting for room. */
static void shmpipe_consumed(struct shmpipe_hdr *h, uint64_t head)
{
    __atomic_store_n(&h->head, head, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&h->want_room, __ATOMIC_SEQ_CST) &&
        __atomic_exchange_n(&h->want_room, 0, __ATOMIC_SEQ_CST))
        (void)sem_post(&h->room);
}

/* Read and check the record at head (avail bytes published). */
static int shmpipe_peek(const struct mp__shmc *s, uint64_t head, uint64_t avail,
                        struct shmpipe_rec *rec)
{
    const struct shmpipe_ring *r = &s->rx;
    if (avail > r->cap || avail < SHMPIPE_HDR)
        return mp__err(MP_EPROTO, "shared-memory ring corrupt: %llu bytes published of %zu",
                       (unsigned long long)avail, r->cap);
    unsigned char hdr[SHMPIPE_HDR];
    shmpipe_copy_out(r, head, hdr, SHMPIPE_HDR);
    memcpy(&rec->total, hdr, 8);
    memcpy(&rec->len, hdr + 8, 4);
    memcpy(&rec->flags, hdr + 12, 4);
    if (rec->flags == SHMPIPE_PAD)
        return rec->len == rec->total && shmpipe_round8(rec->len) <= avail - SHMPIPE_HDR
                   ? 0
                   : mp__err(MP_EPROTO, "shared-memory ring corrupt: bad padding at %llu",
                             (unsigned long long)head);
    if ((rec->flags & ~(SHMPIPE_BEGIN | SHMPIPE_END)) || rec->len > rec->total ||
        shmpipe_round8(rec->len) > avail - SHMPIPE_HDR ||
        ((rec->flags & (SHMPIPE_BEGIN | SHMPIPE_END)) == (SHMPIPE_BEGIN | SHMPIPE_END) &&
         rec->len != rec->total))
        return mp__err(MP_EPROTO, "shared-memory ring corrupt: bad record header at %llu",
                       (unsigned long long)head);
    if (!(rec->flags & SHMPIPE_BEGIN) && s->part_on &&
        (rec->total != s->part_size || rec->len > s->part_size - s->part_got ||
         ((rec->flags & SHMPIPE_END) && s->part_got + rec->len != s->part_size)))
        return mp__err(MP_EPROTO, "shared-memory ring corrupt: record does not continue "
                                  "the message begun");
    return 0;
}

static void shmpipe_part_drop(struct mp__shmc *s)
{
    free(s->part);
    s->part = NULL;
    s->part_on = false;
    s->part_size = s->part_cap = 0;
    __atomic_store_n(&s->part_got, 0, __ATOMIC_RELAXED); /* read by buffered() */
}

struct shmpipe_req {
    size_t maxlength;
    unsigned char *into;
    size_t room;
    bool in_caller; /* the message part way is collected at into */
    unsigned char *out;
    size_t size;
    bool view;     /* a view is asked for (mp_conn_recv_view) */
    bool in_ring;  /* out is the message in place in the ring, not consumed */
    uint64_t next; /* with in_ring: the head after it */
};

/*
 * Append a record's payload to the message part way: straight into the
 * caller's buffer when the receive began it there (one copy), else into a
 * heap buffer that grows with what arrived (at least 1 MiB, or doubling),
 * never to a size the header alone asks for.
 */
static int shmpipe_part_add(struct mp__shmc *s, struct shmpipe_req *q, uint64_t at, size_t len)
{
    unsigned char *dst;
    if (q->in_caller) {
        dst = q->into;
    } else {
        if (s->part_cap - s->part_got < len) {
            size_t cap = s->part_cap * 2 > ((size_t)1 << 20) ? s->part_cap * 2 : (size_t)1 << 20;
            if (cap < s->part_got + len)
                cap = s->part_got + len;
            if (cap > s->part_size)
                cap = s->part_size;
            unsigned char *p = realloc(s->part, cap ? cap : 1);
            if (!p)
                return -ENOMEM;
            s->part = p;
            s->part_cap = cap;
        }
        dst = s->part;
    }
    shmpipe_copy_out(&s->rx, at, dst + s->part_got, len);
    __atomic_store_n(&s->part_got, s->part_got + len, __ATOMIC_RELAXED);
    return 0;
}

/* A receive that collected a message part way at the caller's buffer and
 * returns without it keeps the part on the heap for the next receive. */
static int shmpipe_part_keep(struct mp__shmc *s, struct shmpipe_req *q)
{
    if (!s->part_on || !q->in_caller)
        return 0;
    q->in_caller = false;
    s->part = malloc(s->part_got ? s->part_got : 1);
    if (!s->part) {
        shmpipe_part_drop(s); /* its rest will be skipped */
        return -ENOMEM;
    }
    memcpy(s->part, q->into, s->part_got);
    s->part_cap = s->part_got;
    return 0;
}

/*
 * Consume records until one message is delivered (1), the ring is empty
 * (0), or an error. Nothing is consumed on MP_ETOOSHORT or MP_EPROTO.
 */
static int shmpipe_take(mp_conn *c, struct shmpipe_req *q)
{
    struct mp__shmc *s = c->shm;
    struct shmpipe_hdr *h = s->rx.h;
    uint64_t head = __atomic_load_n(&h->head, __ATOMIC_RELAXED);
    for (;;) {
        uint64_t tail = s->rx.seen;
        if (tail - head - 1 >= s->rx.cap) /* caught up, or another receiver went past */
            s->rx.seen = tail = __atomic_load_n(&h->tail, __ATOMIC_SEQ_CST);
        if (tail == head)
            return 0;
        struct shmpipe_rec rec = {0};
        int rc = shmpipe_peek(s, head, tail - head, &rec);
        if (rc < 0)
            return rc;
        uint64_t next = head + SHMPIPE_HDR + shmpipe_round8(rec.len);
        uint64_t payload = head + SHMPIPE_HDR;
        if (rec.flags == SHMPIPE_PAD) {
            head = next;
            shmpipe_consumed(h, head);
            continue;
        }
        if (!(rec.flags & SHMPIPE_BEGIN) && !s->part_on) {
            /* A message begun by another receiver (or our parent): skip. */
            head = next;
            shmpipe_consumed(h, head);
            continue;
        }
        if (rec.flags & SHMPIPE_BEGIN) {
            if (q->maxlength && rec.total > q->maxlength) {
                shmpipe_part_drop(s);
                shmpipe_bad_message_length(c);
                return MP_ETOOLONG;
            }
            if (q->into && rec.total > q->room) {
                q->size = (size_t)rec.total;
                return MP_ETOOSHORT;
            }
            shmpipe_part_drop(s); /* a dead sender's part, if any */
        }
        if (rec.flags == (SHMPIPE_BEGIN | SHMPIPE_END)) {
            size_t off = (size_t)payload & (s->rx.cap - 1);
            if (q->view && off + rec.len <= s->rx.cap) {
                /* A view: the message stays in the ring until released. */
                q->out = s->rx.data + off;
                q->size = rec.len;
                q->in_ring = true;
                q->next = next;
                return 1;
            }
            /* The common case: a whole message, copied once. */
            unsigned char *dst = q->into;
            if (!dst) {
                dst = malloc(rec.len ? rec.len : 1);
                if (!dst)
                    return -ENOMEM;
                q->out = dst;
            }
            shmpipe_copy_out(&s->rx, payload, dst, rec.len);
            q->size = rec.len;
            shmpipe_consumed(h, next);
            return 1;
        }
        if (rec.flags & SHMPIPE_BEGIN) {
            s->part_on = true;
            s->part_size = (size_t)rec.total;
            q->in_caller = q->into != NULL;
        } else if (q->into && s->part_size > q->room) {
            q->size = s->part_size;
            return MP_ETOOSHORT;
        }
        rc = shmpipe_part_add(s, q, payload, rec.len);
        if (rc < 0)
            return rc;
        head = next;
        shmpipe_consumed(h, head);
        if (rec.flags & SHMPIPE_END) {
            q->size = s->part_size;
            if (q->in_caller) {
                q->in_caller = false;
                shmpipe_part_drop(s);
            } else if (q->into) {
                memcpy(q->into, s->part, s->part_size);
                shmpipe_part_drop(s);
            } else {
                q->out = s->part;
                s->part = NULL;
                shmpipe_part_drop(s);
            }
            return 1;
        }
    }
}

/* Spin for the adaptive time, then sleep on the doorbell until the deadline.
 * Returns 0 to look again, MP_EOF when the peer is gone (the caller looks
 * once more), MP_ETIMEDOUT, or -errno. */
static int shmpipe_wait(mp_conn *c, int64_t deadline, bool *spun_ok)
{
    struct mp__shmc *s = c->shm;
    struct shmpipe_hdr *h = s->rx.h;
    uint64_t head = __atomic_load_n(&h->head, __ATOMIC_RELAXED);
    if (*spun_ok) {
        int64_t until = mp__now_ns() + s->spin_ns;
        if (deadline != MP__NO_DEADLINE && deadline < until)
            until = deadline;
        for (unsigned i = 1;; i++) {
            if (__atomic_load_n(&h->tail, __ATOMIC_ACQUIRE) != head) {
                if (s->spin_ns < SHMPIPE_SPIN_MAX)
                    s->spin_ns += s->spin_ns / 4 + 1;
                return 0;
            }
            shmpipe_relax();
            if ((i & 63) == 0 && mp__now_ns() >= until)
                break;
        }
        if (s->spin_ns > SHMPIPE_SPIN_MIN)
            s->spin_ns /= 2;
        *spun_ok = false; /* spin once per receive */
    }
    int rc = shmpipe_drain(c);
    if (rc != 0)
        return rc > 0 ? MP_EOF : rc;
    __atomic_store_n(&h->asleep, 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&h->tail, __ATOMIC_SEQ_CST) != head)
        return 0;
    if (mp__deadline_passed(deadline))
        return MP_ETIMEDOUT;
    int64_t cap = mp__now_ns() + SHMPIPE_SLEEP_CAP_NS;
    struct pollfd p = {.fd = c->fd, .events = POLLIN};
    rc = mp__poll(&p, 1, deadline == MP__NO_DEADLINE || deadline > cap ? cap : deadline);
    if (rc < 0)
        return rc;
    if (rc == 0 && mp__deadline_passed(deadline))
        return __atomic_load_n(&h->tail, __ATOMIC_SEQ_CST) != head ? 0 : MP_ETIMEDOUT;
    return 0;
}

/* One receive (mp__shmc_recv, mp__shmc_recv_view): 1 with q->out set, or
 * a status. With q->in_ring the receive mutex stays held for the view. */
static int shmpipe_recv(mp_conn *c, struct shmpipe_req *q, int64_t deadline)
{
    struct mp__shmc *s = c->shm;
    struct shmpipe_hdr *h = s->rx.h;
    int rc = mp__mutex_lock(&h->recv_mu, deadline);
    if (rc == -EDEADLK) /* this thread holds a view */
        return mp__err(MP_ESTATE, "a view of a message is held: mp_conn_release it first");
    if (rc < 0 && rc != MP_EOWNERDEAD)
        return rc;
    /* Re-check under the lock: MP_ETOOLONG in another thread ends reading. */
    if (__atomic_load_n(&c->closed, __ATOMIC_ACQUIRE)) {
        mp__mutex_unlock(&h->recv_mu);
        return MP_ECLOSED;
    }
    if (!__atomic_load_n(&c->readable, __ATOMIC_ACQUIRE)) {
        mp__mutex_unlock(&h->recv_mu);
        return MP_EWRITEONLY;
    }
    if (s->gen != mp__forkgen()) {
        /* In a forked child: a message the parent had begun is its own. */
        shmpipe_part_drop(s); /* our copy of the parent's heap block */
        s->view_on = false;   /* and its view, if it held one */
        s->gen = mp__forkgen();
    }
    bool spin = true;
    for (;;) {
        rc = shmpipe_take(c, q);
        if (rc != 0)
            break;
        rc = shmpipe_wait(c, deadline, &spin);
        if (rc == MP_EOF) {
            /* The peer is gone: whatever it published is still delivered. */
            rc = shmpipe_take(c, q);
            if (rc == 0)
                rc = s->part_on ? MP_ETRUNCATED : MP_EOF;
            if (rc == MP_ETRUNCATED)
                shmpipe_part_drop(s);
            break;
        }
        if (rc < 0)
            break;
    }
    if (rc != 1 && q->in_caller) {
        int krc = shmpipe_part_keep(s, q);
        if (krc < 0 && rc != MP_ETRUNCATED && rc != MP_EOF)
            rc = krc;
    }
    if (rc == 1 && q->in_ring) {
        s->view_on = true;
        s->view_buf = q->out;
        s->view_next = q->next;
        return 1; /* recv_mu stays held until mp__shmc_release_view */
    }
    mp__mutex_unlock(&h->recv_mu);
    return rc;
}

int mp__shmc_recv(mp_conn *c, size_t maxlength, unsigned char *into, size_t room,
                  unsigned char **out, size_t *size, int64_t deadline)
{
    struct shmpipe_req q = {.maxlength = maxlength, .into = into, .room = room};
    int rc = shmpipe_recv(c, &q, deadline);
    if (rc == 1) {
        *out = q.out;
        *size = q.size;
        return 0;
    }
    if (rc == MP_ETOOSHORT)
        *size = q.size;
    return rc;
}

/* ---- polling --------------------------------------------------------------------- */

int mp__shmc_ready(mp_conn *c, bool arm)
{
    struct mp__shmc *s = c->shm;
    struct shmpipe_hdr *h = s->rx.h;
    uint64_t head = __atomic_load_n(&h->head, __ATOMIC_ACQUIRE);
    if (__atomic_load_n(&h->tail, __ATOMIC_SEQ_CST) != head)
        return 1;
    if (!arm)
        return 0;
    int rc = shmpipe_drain(c);
    if (rc != 0)
        return 1; /* end of file (or an error the receive will report) */
    __atomic_store_n(&h->asleep, 1, __ATOMIC_SEQ_CST);
    return __atomic_load_n(&h->tail, __ATOMIC_SEQ_CST) != head;
}

size_t mp__shmc_buffered(mp_conn *c)
{
    struct mp__shmc *s = c->shm;
    uint64_t head = __atomic_load_n(&s->rx.h->head, __ATOMIC_ACQUIRE);
    uint64_t used = __atomic_load_n(&s->rx.h->tail, __ATOMIC_ACQUIRE) - head;
    size_t part = __atomic_load_n(&s->part_got, __ATOMIC_RELAXED);
    return (used > s->rx.cap ? 0 : (size_t)used) + part;
}

/* ---- loans and views --------------------------------------------------------- */

size_t mp__shmc_loan_max(const mp_conn *c)
{
    /* From any head position, a pad to the ring's end and the record fit an
     * empty ring (see mp__shmc_loan). */
    return c->shm->tx.cap / 2 - 2 * SHMPIPE_HDR;
}

/*
 * Reserve a record in place: take the send mutex (held until commit or
 * cancel, so the loan is the next message), and if the payload would wrap,
 * put a pad record up to the ring's end first, so the loan is contiguous.
 * Nothing is published before the commit: a sender that dies holding a loan
 * leaves the ring as it was, and the next sender gets the mutex back
 * (EOWNERDEAD).
 */
int mp__shmc_loan(mp_conn *c, size_t size, void **buf, int64_t deadline)
{
    struct mp__shmc *s = c->shm;
    struct shmpipe_ring *r = &s->tx;
    int rc = mp__mutex_lock(&r->h->send_mu, deadline);
    if (rc == -EDEADLK)
        return mp__err(MP_ESTATE, "this thread already holds a loan: commit it first");
    if (rc < 0 && rc != MP_EOWNERDEAD)
        return rc;
    rc = shmpipe_reader_gone(c, r->h);
    uint64_t tail = __atomic_load_n(&r->h->tail, __ATOMIC_RELAXED);
    size_t off = (size_t)(tail + SHMPIPE_HDR) & (r->cap - 1);
    size_t pad = off + size <= r->cap ? 0 : SHMPIPE_HDR + (r->cap - off);
    uint64_t got = 0;
    if (rc == 0)
        rc = shmpipe_wait_room(c, r, pad + SHMPIPE_HDR + shmpipe_round8(size), &got, deadline);
    if (rc == 0 && got != tail)
        rc = mp__err(MP_EPROTO, "shared-memory ring corrupt: tail moved under the send lock");
    if (rc < 0) {
        mp__mutex_unlock(&r->h->send_mu);
        return rc;
    }
    s->loan_tail = tail;
    s->loan_at = tail + pad;
    s->loan_size = size;
    s->loan_buf = r->data + ((size_t)(s->loan_at + SHMPIPE_HDR) & (r->cap - 1));
    s->loan_owner = pthread_self();
    s->loan_gen = mp__forkgen();
    __atomic_store_n(&s->loan_on, true, __ATOMIC_RELEASE);
    *buf = s->loan_buf;
    return 0;
}

/* True when buf is this end's loan, taken by the calling thread (a forked
 * child's copy of its parent's loan is not its own). */
bool mp__shmc_is_loan(const mp_conn *c, const void *buf)
{
    const struct mp__shmc *s = c->shm;
    return __atomic_load_n(&s->loan_on, __ATOMIC_ACQUIRE) && buf == s->loan_buf &&
           s->loan_gen == mp__forkgen() && pthread_equal(s->loan_owner, pthread_self());
}

/* Publish the loan as one message of len bytes, or drop it (cancel), then
 * let the next sender in. A len over the loan's size is MP_EVALUE and
 * keeps the loan. */
int mp__shmc_commit(mp_conn *c, size_t len, bool cancel)
{
    struct mp__shmc *s = c->shm;
    const struct shmpipe_ring *r = &s->tx;
    if (!cancel && len > s->loan_size)
        return mp__err(MP_EVALUE, "commit of %zu bytes on a loan of %zu", len, s->loan_size);
    __atomic_store_n(&s->loan_on, false, __ATOMIC_RELAXED);
    int rc = cancel ? 0 : shmpipe_reader_gone(c, r->h);
    if (rc == 0 && !cancel) {
        unsigned char hdr[SHMPIPE_HDR];
        if (s->loan_at != s->loan_tail) {
            uint64_t pad = s->loan_at - s->loan_tail - SHMPIPE_HDR;
            uint32_t pad32 = (uint32_t)pad, flags = SHMPIPE_PAD;
            memcpy(hdr, &pad, 8);
            memcpy(hdr + 8, &pad32, 4);
            memcpy(hdr + 12, &flags, 4);
            shmpipe_copy_in(r, s->loan_tail, hdr, SHMPIPE_HDR);
        }
        uint64_t total = len;
        uint32_t len32 = (uint32_t)len, flags = SHMPIPE_BEGIN | SHMPIPE_END;
        memcpy(hdr, &total, 8);
        memcpy(hdr + 8, &len32, 4);
        memcpy(hdr + 12, &flags, 4);
        shmpipe_copy_in(r, s->loan_at, hdr, SHMPIPE_HDR);
        __atomic_store_n(&r->h->tail, s->loan_at + SHMPIPE_HDR + shmpipe_round8(len),
                         __ATOMIC_SEQ_CST);
        rc = shmpipe_ring_bell(c, r->h);
    }
    mp__mutex_unlock(&r->h->send_mu);
    return rc;
}

int mp__shmc_recv_view(mp_conn *c, const void **view, size_t *len, int64_t deadline)
{
    struct shmpipe_req q = {.view = true};
    int rc = shmpipe_recv(c, &q, deadline);
    if (rc != 1)
        return rc;
    *view = q.out;
    *len = q.size;
    return 0;
}

int mp__shmc_release_view(mp_conn *c, const void *view)
{
    struct mp__shmc *s = c->shm;
    if (!s->view_on || view != s->view_buf || s->gen != mp__forkgen())
        return 0; /* not in the ring: a copy the caller frees */
    s->view_on = false;
    shmpipe_consumed(s->rx.h, s->view_next);
    mp__mutex_unlock(&s->rx.h->recv_mu);
    return 1;
}

bool mp__conn_is_shm(const mp_conn *c)
{
    return c && c->shm;
}
