/*
 * qpipe - the chunked pipe, shared read-ahead ring, held item and spill file
 * under the queues (see qpipe.h for the format and the guarantees). Its
 * sibling queue.c builds the queue types on it. Static functions carry
 * qpipe_.
 */
#include "queue/qpipe.h"

#include "core/io.h"
#include "core/psync.h"
#include "core/shm.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#ifndef PIPE_BUF
#define PIPE_BUF 4096
#endif

#define HDR       MP__QPIPE_HDR
#define WRITE_MAX ((size_t)4096)
#define CHUNK_MAX MP__QPIPE_CHUNK_MAX
/* Chunks per write: two iovecs each, within IOV_MAX. */
#define WRITE_CHUNKS 256

_Static_assert(WRITE_MAX <= PIPE_BUF, "a write of whole chunks must be atomic");

#define F_MAGIC 0x80
#define F_START MP__QF_START
#define F_END   MP__QF_END
#define F_HINT  MP__QF_HINT
#define F_OBJ   MP__QF_OBJ

/* How often a waiting writer looks at *stop, and a reader waiting for the
 * rest of a big item checks whether its writer is still there. */
#define SLICE 0.02
/* How long past its deadline a get may go on receiving an item whose bytes
 * keep arriving without a wait: a short timeout then takes an item that
 * streams in at pipe speed in one go, rather than leaving it in the held
 * file a pipe's worth at a time. */
#define GRACE_NS INT64_C(5000000)
/* A stopping writer spills once the pipe has had no room for this long:
 * readers that are draining the pipe get everything through it, and a
 * process nobody reads from (gh-73983) still ends after this pause. */
#define STALL 0.1

/* A spilled item: an 8-byte length (top bit: a value), then the bytes. */
#define SPILL_HDR 8
#define SPILL_OBJ ((uint64_t)1 << 63)

/* ---- setup ------------------------------------------------------------------ */

/* The header key: random, so that another queue's chunks do not pass here. */
static uint32_t qpipe_make_key(const void *salt)
{
    uint32_t k = 0;
    if (mp__random_bytes(&k, sizeof k) < 0) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        k = (uint32_t)ts.tv_nsec ^ (uint32_t)getpid() * 2654435761u ^ (uint32_t)(uintptr_t)salt;
    }
    return k;
}

int mp__qpipe_open(struct mp__qpipe *qp, size_t max_item)
{
    qp->sh = NULL;
    qp->rfd = qp->wfd = qp->spill_fd = qp->held_fd = -1;
    qp->pipe_cap = 0;
    if (max_item == 0 || (uint64_t)max_item > MP__QPIPE_MAX_ITEM_LIMIT)
        return -EINVAL;
    int fds[2];
    int rc = mp__pipe(fds);
    if (rc < 0)
        return rc;
    qp->rfd = fds[0];
    qp->wfd = fds[1];
    if ((rc = mp__set_nonblock(qp->rfd)) < 0 || (rc = mp__set_nonblock(qp->wfd)) < 0)
        goto fail;
    if ((rc = mp__anon_file("mpipc-queue-spill")) < 0)
        goto fail;
    qp->spill_fd = rc;
    if ((rc = mp__anon_file("mpipc-queue-held")) < 0)
        goto fail;
    qp->held_fd = rc;

    /* The ring holds at least everything the pipe can: a read of all that
     * FIONREAD reports then always fits, and never splits a write. */
    qp->pipe_cap = mp__pipe_capacity(qp->wfd);
    size_t cap = 2 * qp->pipe_cap;
    if (cap < 2 * WRITE_MAX || cap > UINT32_MAX)
        cap = (size_t)128 * 1024;
    struct mp__qpipe_shared *sh;
    rc = mp__shm_alloc((void **)&sh, sizeof *sh + cap);
    if (rc < 0)
        goto fail;
    sh->cap = (uint32_t)cap;
    sh->clean = cap; /* a fresh mapping is all zero */
    sh->max_item = max_item;
    sh->key = qpipe_make_key(sh);
    if ((rc = mp__mutex_init(&sh->rlock, false)) < 0)
        goto fail_sh;
    if ((rc = mp__mutex_init(&sh->wlock, false)) < 0)
        goto fail_r;
    if ((rc = mp__mutex_init(&sh->slock, false)) < 0)
        goto fail_w;
    qp->sh = sh;
    mp__qpipe_header(qp, F_HINT, 0, qp->wlast);
    memcpy(qp->rlast, qp->wlast, HDR);
    return 0;

fail_w:
    (void)pthread_mutex_destroy(&sh->wlock);
fail_r:
    (void)pthread_mutex_destroy(&sh->rlock);
fail_sh:
    mp__shm_free(sh);
fail:
    mp__qpipe_close_fds(qp);
    return rc;
}

void mp__qpipe_close_fds(struct mp__qpipe *qp)
{
    int *fds[4] = {&qp->rfd, &qp->wfd, &qp->spill_fd, &qp->held_fd};
    for (int i = 0; i < 4; i++) {
        if (*fds[i] >= 0)
            mp__close(*fds[i]);
        *fds[i] = -1;
    }
}

void mp__qpipe_destroy(struct mp__qpipe *qp)
{
    if (!qp->sh)
        return;
    (void)pthread_mutex_destroy(&qp->sh->rlock);
    (void)pthread_mutex_destroy(&qp->sh->wlock);
    (void)pthread_mutex_destroy(&qp->sh->slock);
    mp__shm_free(qp->sh);
    qp->sh = NULL;
}

size_t mp__qpipe_max_item(const struct mp__qpipe *qp)
{
    return (size_t)qp->sh->max_item;
}

/* A robust lock. A dead holder needs no repair here: the writers' state is
 * the pipe itself, and the readers' is checked by qpipe_recover_read() on every
 * acquisition. */
static int qpipe_lock(pthread_mutex_t *m, int64_t deadline)
{
    int rc = mp__mutex_lock(m, deadline);
    return rc == MP_EOWNERDEAD ? 0 : rc;
}

/* For MP__ASSERT, of the lock order (slock is taken under rlock or wlock,
 * never alone) and of who may touch what: the calling thread holds the
 * robust error-checking mutex m (a trylock by its owner is refused with
 * EDEADLK and changes nothing). */
static inline MP__ASSERT_ONLY bool qpipe_held(pthread_mutex_t *m)
{
    return pthread_mutex_trylock(m) == EDEADLK;
}

/* For MP__ASSERT (rlock held): the ring's offsets are in order - parsed up
 * to head, read up to tail, known zero up to clean - and span one ring. */
static inline MP__ASSERT_ONLY bool qpipe_ring_ok(const struct mp__qpipe_shared *sh)
{
    return sh->head <= sh->tail && sh->tail <= sh->clean && sh->clean - sh->head <= sh->cap;
}

/* ---- the chunk header ------------------------------------------------------- */

/* The check word: the other fields mixed with the queue's key (murmur3's
 * finaliser), so that no fixed pattern - zeros, text - passes for a header. */
static uint32_t qpipe_hdr_check(uint32_t key, unsigned h0, size_t len)
{
    uint32_t x = key ^ ((uint32_t)h0 | (uint32_t)len << 8);
    x ^= x >> 16;
    x *= 0x85ebca6bu;
    x ^= x >> 13;
    x *= 0xc2b2ae35u;
    x ^= x >> 16;
    return x;
}

void mp__qpipe_header(const struct mp__qpipe *qp, unsigned flags, size_t len,
                      unsigned char hdr[MP__QPIPE_HDR])
{
    unsigned h0 = F_MAGIC | (flags & 0x7f);
    uint32_t c = qpipe_hdr_check(qp->sh->key, h0, len);
    hdr[0] = (unsigned char)h0;
    hdr[1] = (unsigned char)len;
    hdr[2] = (unsigned char)(len >> 8);
    hdr[3] = (unsigned char)(len >> 16);
    hdr[4] = (unsigned char)c;
    hdr[5] = (unsigned char)(c >> 8);
    hdr[6] = (unsigned char)(c >> 16);
    hdr[7] = (unsigned char)(c >> 24);
}

/* The payload length of the chunk whose header is at h, or -1 when these
 * bytes are not a header this queue's writers make: reserved bits, a HINT
 * with a payload, a START or CONT chunk that is not full, an empty END, or
 * a wrong check. */
static inline long qpipe_hdr_parse(uint32_t key, const unsigned char *h)
{
    unsigned h0 = h[0];
    if ((h0 & 0xf0) != F_MAGIC)
        return -1;
    size_t len = (size_t)h[1] | (size_t)h[2] << 8 | (size_t)h[3] << 16;
    if (len > CHUNK_MAX)
        return -1;
    if (h0 & F_HINT) {
        if (h0 != (F_MAGIC | F_HINT) || len != 0)
            return -1;
    } else if (!(h0 & F_END)) {
        if (len != CHUNK_MAX)
            return -1;
    } else if (!(h0 & F_START) && len == 0) {
        return -1;
    }
    uint32_t c = (uint32_t)h[4] | (uint32_t)h[5] << 8 | (uint32_t)h[6] << 16 | (uint32_t)h[7] << 24;
    return c == qpipe_hdr_check(key, h0, len) ? (long)len : -1;
}

/* hdr_parse for a reader (rlock held: qp->rlast is the readers'): a header
 * equal to the last valid one is valid. */
static inline long qpipe_hdr_parse_cached(struct mp__qpipe *qp, uint32_t key,
                                          const unsigned char *h)
{
    if (memcmp(h, qp->rlast, HDR) == 0)
        return (long)((size_t)h[1] | (size_t)h[2] << 8 | (size_t)h[3] << 16);
    long l = qpipe_hdr_parse(key, h);
    if (l >= 0)
        memcpy(qp->rlast, h, HDR);
    return l;
}

/* ---- spilling --------------------------------------------------------------- */

/* Append items to the spill file (wlock held). */
static int qpipe_spill_items(struct mp__qpipe *qp, const struct mp__qitem *items, size_t n)
{
    struct mp__qpipe_shared *sh = qp->sh;
    MP__ASSERT(qpipe_held(&sh->wlock));
    (void)qpipe_lock(&sh->slock, MP__NO_DEADLINE);
    MP__ASSERT(sh->spill_head <= sh->spill_tail);
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        uint64_t len = items[i].len;
        uint64_t word = len | (items[i].kind == MP__QK_OBJ ? SPILL_OBJ : 0);
        unsigned char hdr[SPILL_HDR];
        for (int b = 0; b < SPILL_HDR; b++)
            hdr[b] = (unsigned char)(word >> (8 * b));
        rc = mp__pwrite_all(qp->spill_fd, hdr, SPILL_HDR, sh->spill_tail);
        if (rc == 0 && len)
            rc = mp__pwrite_all(qp->spill_fd, items[i].data, items[i].len,
                                sh->spill_tail + SPILL_HDR);
        /* Visible to readers only once whole. */
        if (rc == 0)
            sh->spill_tail += SPILL_HDR + len;
    }
    mp__mutex_unlock(&sh->slock);
    return rc;
}

/* ---- writing ---------------------------------------------------------------- */

/* A write being built: whole chunks, at most WRITE_MAX bytes. */
struct wbuf {
    struct iovec iov[2 * WRITE_CHUNKS];
    unsigned char hdr[WRITE_CHUNKS][HDR];
    int niov, nchunks;
    size_t bytes;
};

/* Add a chunk (wlock held: qp->wlast is the writers'). */
static void qpipe_put_chunk(struct mp__qpipe *qp, struct wbuf *w, unsigned flags, const void *p,
                            size_t len)
{
    /* A write holds whole chunks within WRITE_MAX (one atomic write). */
    MP__ASSERT(w->nchunks < WRITE_CHUNKS && w->bytes + HDR + len <= WRITE_MAX);
    unsigned char *h = w->hdr[w->nchunks++];
    unsigned char *last = qp->wlast;
    if (last[0] != (F_MAGIC | flags) || last[1] != (unsigned char)len ||
        last[2] != (unsigned char)(len >> 8) || last[3] != (unsigned char)(len >> 16))
        mp__qpipe_header(qp, flags, len, last);
    memcpy(h, last, HDR);
    w->iov[w->niov].iov_base = h;
    w->iov[w->niov++].iov_len = HDR;
    if (len) {
        w->iov[w->niov].iov_base = (void *)p;
        w->iov[w->niov++].iov_len = len;
    }
    w->bytes += HDR + len;
}

/* The state of one mp__qpipe_write() call. */
struct writer {
    struct mp__qpipe *qp;
    int64_t deadline;
    bool spill; /* write to the spill file from now on */
    const int *stop;
    bool sigpipe_blocked;
    int64_t stall; /* when a stopping writer gives up on the pipe, or 0 */
};

/* Write the built chunks, all or nothing, waiting for room as the writer
 * allows. Returns 0 (written, w emptied), 1 (no room and the writer must not
 * wait: spill from here), MP_ETIMEDOUT, or -errno. */
static int qpipe_emit(struct writer *wr, struct wbuf *w)
{
    if (w->nchunks == 0)
        return 0;
    if (wr->spill)
        return 1;
    for (;;) {
        ssize_t r = mp__writev_once(wr->qp->wfd, w->iov, w->niov, wr->sigpipe_blocked);
        if (r >= 0) {
            w->niov = w->nchunks = 0;
            w->bytes = 0;
            wr->stall = 0; /* readers are making room */
            return 0;
        }
        if (r != -EAGAIN)
            return (int)r;
        int64_t until;
        if (wr->stop && __atomic_load_n(wr->stop, __ATOMIC_ACQUIRE)) {
            if (!wr->stall)
                wr->stall = mp__deadline(STALL);
            else if (mp__deadline_passed(wr->stall)) {
                wr->spill = true;
                return 1;
            }
            until = wr->stall;
        } else {
            if (mp__deadline_passed(wr->deadline))
                return MP_ETIMEDOUT;
            until = wr->deadline;
            if (wr->stop) {
                int64_t slice = mp__deadline(SLICE);
                if (until == MP__NO_DEADLINE || slice < until)
                    until = slice;
            }
        }
        int rc = mp__wait_fd(wr->qp->wfd, POLLOUT, until);
        if (rc < 0 && rc != MP_ETIMEDOUT)
            return rc;
    }
}

/* Tell sleeping readers to look at the spill file. Best effort: a full pipe
 * has no sleeping readers. */
static void qpipe_send_hint(struct writer *wr)
{
    struct wbuf w;
    w.niov = w.nchunks = 0;
    w.bytes = 0;
    qpipe_put_chunk(wr->qp, &w, F_HINT, NULL, 0);
    (void)mp__writev_once(wr->qp->wfd, w.iov, w.niov, wr->sigpipe_blocked);
}

int mp__qpipe_write(struct mp__qpipe *qp, const struct mp__qitem *items, size_t n, int64_t deadline,
                    bool *spill, const int *stop, size_t *written, bool sigpipe_blocked)
{
    struct writer wr = {qp, deadline, spill && *spill, stop, sigpipe_blocked, 0};
    *written = 0;
    int rc = qpipe_lock(&qp->sh->wlock, deadline);
    if (rc < 0)
        return rc;
    struct wbuf *w = malloc(sizeof *w);
    if (!w) {
        mp__mutex_unlock(&qp->sh->wlock);
        return -ENOMEM;
    }
    w->niov = w->nchunks = 0;
    w->bytes = 0;

    size_t done = 0;    /* items whose every chunk is in the pipe */
    size_t pending = 0; /* items in w, not yet written */
    for (size_t i = 0; i < n && rc == 0; i++) {
        size_t len = items[i].len;
        const unsigned char *p = items[i].data;
        unsigned kind = items[i].kind == MP__QK_OBJ ? F_OBJ : 0;
        if (HDR + len <= WRITE_MAX) {
            if (w->bytes + HDR + len > WRITE_MAX || w->nchunks == WRITE_CHUNKS) {
                if ((rc = qpipe_emit(&wr, w)) != 0)
                    break;
                done += pending;
                pending = 0;
            }
            qpipe_put_chunk(qp, w, F_START | F_END | kind, p, len);
            pending++;
            continue;
        }
        /* A big item: flush what is built, then its chunks one write each;
         * all but the last carry CHUNK_MAX bytes. */
        if ((rc = qpipe_emit(&wr, w)) != 0)
            break;
        done += pending;
        pending = 0;
        for (size_t off = 0; off < len && rc == 0;) {
            size_t c = len - off < CHUNK_MAX ? len - off : CHUNK_MAX;
            unsigned flags = (off == 0 ? F_START : 0) | (off + c == len ? F_END : 0) | kind;
            qpipe_put_chunk(qp, w, flags, p + off, c);
            rc = qpipe_emit(&wr, w);
            off += c;
        }
        /* On failure part way the item is abandoned: its START has no END,
         * and readers drop it. A spill re-sends it whole. */
        if (rc == 0)
            done++;
    }
    if (rc == 0) {
        rc = qpipe_emit(&wr, w);
        if (rc == 0)
            done += pending;
    }
    if (rc == 1) {
        /* No room and no waiting: the rest goes to the spill file, in order. */
        rc = qpipe_spill_items(qp, items + done, n - done);
        if (rc == 0) {
            done = n;
            qpipe_send_hint(&wr);
        }
        if (spill)
            *spill = true; /* the producer's later items must follow these */
    }
    free(w);
    mp__mutex_unlock(&qp->sh->wlock);
    MP__ASSERT(done <= n && (rc != 0 || done == n));
    *written = done;
    return rc;
}

/* ---- reading: the ring ------------------------------------------------------------ */

/* Copy n ring bytes from absolute offset pos (wrapping). */
static void qpipe_ring_copy(const struct mp__qpipe_shared *sh, uint64_t pos, void *dst, size_t n)
{
    size_t at = (size_t)(pos % sh->cap);
    size_t first = sh->cap - at < n ? sh->cap - at : n;
    memcpy(dst, sh->ring + at, first);
    if (n > first)
        memcpy((unsigned char *)dst + first, sh->ring, n - first);
}

static void qpipe_ring_zero(struct mp__qpipe_shared *sh, uint64_t from, uint64_t to)
{
    while (from < to) {
        size_t at = (size_t)(from % sh->cap);
        size_t n = sh->cap - at;
        if (n > to - from)
            n = (size_t)(to - from);
        memset(sh->ring + at, 0, n);
        from += n;
    }
}

/* A reader died holding the read lock after recording a read: count what the
 * kernel put in the ring. The region was zeroed and reads end on write
 * boundaries, so the new bytes are whole chunks up to the first zero byte
 * (every chunk starts with 0x80). Junk in that read ends the count early:
 * what follows it in the same read is lost with the reader. */
static void qpipe_recover_read(struct mp__qpipe_shared *sh)
{
    if (!sh->reading)
        return;
    uint64_t end = sh->tail + sh->read_len;
    while (end - sh->tail >= HDR) {
        unsigned char h[HDR];
        qpipe_ring_copy(sh, sh->tail, h, HDR);
        long clen = qpipe_hdr_parse(sh->key, h);
        if (clen < 0 || end - sh->tail < HDR + (uint64_t)clen)
            break;
        sh->tail += HDR + (uint64_t)clen;
    }
    sh->reading = 0;
}

/* Read what the pipe holds into the ring. Reads must end on a write
 * boundary (the ring holds whole chunks only): a read with room for all the
 * pipe can hold does; with less room, ask FIONREAD first and read only if all
 * of it fits. Returns bytes read, 0 when the pipe is empty or the ring too
 * full, or -errno. */
static ssize_t qpipe_refill(struct mp__qpipe *qp, size_t pipe_cap)
{
    struct mp__qpipe_shared *sh = qp->sh;
    size_t room = sh->cap - (size_t)(sh->tail - sh->head);
    size_t n = room;
    if (room < pipe_cap) {
        ssize_t ready = mp__bytes_ready(qp->rfd);
        if (ready <= 0)
            return ready;
        if ((size_t)ready > room)
            return 0; /* parse what the ring has first */
        n = (size_t)ready;
    }
    uint64_t start = sh->clean > sh->tail ? sh->clean : sh->tail;
    if (start < sh->tail + n) {
        qpipe_ring_zero(sh, start, sh->tail + n);
        sh->clean = sh->tail + n;
    }
    struct iovec iov[2];
    size_t at = (size_t)(sh->tail % sh->cap);
    size_t first = sh->cap - at < n ? sh->cap - at : n;
    iov[0].iov_base = sh->ring + at;
    iov[0].iov_len = first;
    iov[1].iov_base = sh->ring;
    iov[1].iov_len = n - first;
    MP__ASSERT(!sh->reading && qpipe_ring_ok(sh));
    sh->read_len = n;
    __atomic_store_n(&sh->reading, 1, __ATOMIC_RELEASE);
    ssize_t r = mp__readv_once(qp->rfd, iov, n > first ? 2 : 1);
    if (r > 0)
        sh->tail += (uint64_t)r;
    __atomic_store_n(&sh->reading, 0, __ATOMIC_RELEASE);
    MP__ASSERT(qpipe_ring_ok(sh));
    return r == -EAGAIN ? 0 : r;
}

/* ---- reading: assembling an item ------------------------------------------------ */

/*
 * An item being assembled by one reader. Its first `prefix` bytes are in the
 * held file (a part another get left there); buf holds the rest.
 */
struct asm_item {
    unsigned char *buf;
    size_t len, cap;
    size_t prefix;
    int kind;
    bool active; /* between a START and its END */
    bool skip;   /* over max_item: its chunks are dropped as they come */
};

static void qpipe_asm_free(struct asm_item *a)
{
    free(a->buf);
    a->buf = NULL;
    a->len = a->cap = 0;
}

/* Forget the item being assembled (its writer died or gave up before the
 * END, or it is too long), and the part of it in the held file. */
static void qpipe_asm_drop(struct mp__qpipe *qp, struct asm_item *a)
{
    qpipe_asm_free(a);
    if (a->prefix)
        (void)mp__truncate(qp->held_fd, 0);
    a->prefix = 0;
    a->active = a->skip = false;
}

/* Room for n more bytes, growing only as bytes arrive: a one-chunk item
 * gets exactly its size, a big one doubles as its chunks come, up to limit
 * (what max_item leaves for buf). */
static int qpipe_asm_reserve(struct asm_item *a, size_t n, bool last, size_t limit)
{
    if (a->buf && a->len + n <= a->cap)
        return 0;
    size_t need = a->len + n;
    size_t cap = last ? need : (a->cap ? a->cap : CHUNK_MAX);
    while (cap < need)
        cap *= 2;
    if (cap > limit)
        cap = limit > need ? limit : need;
    unsigned char *b = realloc(a->buf, cap ? cap : 1);
    if (!b)
        return -ENOMEM;
    a->buf = b;
    a->cap = cap;
    return 0;
}

/*
 * Parse chunks from the ring into a. Returns 1 when an item is whole; 0
 * when the ring has no more whole chunks; MP_ETYPE when the next item is not
 * of the kind wanted (its START stays at the head); -ENOMEM (the chunk stays
 * in the ring for later).
 */
static int qpipe_parse(struct mp__qpipe *qp, struct asm_item *a, int want)
{
    struct mp__qpipe_shared *sh = qp->sh;
    uint32_t key = sh->key;
    size_t max_item = (size_t)sh->max_item;
    while (sh->tail - sh->head >= HDR) {
        unsigned char copy[HDR];
        size_t at = (size_t)(sh->head % sh->cap);
        const unsigned char *h = sh->ring + at;
        if (sh->cap - at < HDR) {
            qpipe_ring_copy(sh, sh->head, copy, HDR); /* a header cut by the wrap */
            h = copy;
        }
        long l = qpipe_hdr_parse_cached(qp, key, h);
        if (l < 0) {
            /* Junk: skip one byte of it. The next real header is never
             * inside a chunk (chunks are written whole), so it is found
             * before any payload that could be taken for one. */
            sh->head++;
            continue;
        }
        size_t clen = (size_t)l;
        if (sh->tail - sh->head < HDR + clen)
            return 0; /* only a forged header is cut by the end of a read */
        unsigned flags = h[0];
        if (flags & F_HINT) {
            sh->head += HDR;
            continue;
        }
        if (flags & F_START) {
            if (a->active)
                qpipe_asm_drop(qp, a); /* its writer died or gave up before the END */
            int kind = (flags & F_OBJ) ? MP__QK_OBJ : MP__QK_BYTES;
            if (want != MP__QK_ANY && kind != want)
                return MP_ETYPE;
            a->kind = kind;
            a->active = true;
        } else if (!a->active) {
            sh->head += HDR + clen; /* the rest of an item nobody is assembling */
            continue;
        }
        if (!a->skip) {
            size_t room = max_item - a->prefix - a->len;
            if (clen > room) {
                /* Too long: no library put made it. Drop it as it streams. */
                qpipe_asm_drop(qp, a);
                a->active = a->skip = true;
            } else if (qpipe_asm_reserve(a, clen, (flags & F_END) != 0, room + a->len) < 0) {
                if (flags & F_START)
                    a->active = false; /* nothing taken: the START stays */
                return -ENOMEM;
            } else {
                qpipe_ring_copy(sh, sh->head + HDR, a->buf + a->len, clen);
                a->len += clen;
            }
        }
        sh->head += HDR + clen;
        MP__ASSERT(sh->head <= sh->tail);
        if (flags & F_END) {
            if (!a->skip) {
                MP__ASSERT(a->prefix + a->len <= max_item && a->len <= a->cap);
                return 1;
            }
            a->active = a->skip = false;
        }
    }
    return 0;
}

/* ---- reading: the held item ------------------------------------------------------- */

/* Leave the item being assembled (whole or not) at the head of the queue for
 * the next get: its bytes after those already in the held file go there.
 * If the file cannot take them, the item is lost (as if its writer had died)
 * and the error is returned. */
static int qpipe_stash(struct mp__qpipe *qp, struct asm_item *a, bool whole)
{
    struct mp__qpipe_shared *sh = qp->sh;
    /* This read took the held slot over (or found it empty) under rlock. */
    MP__ASSERT(qpipe_held(&sh->rlock) && sh->held == 0);
    MP__ASSERT(a->active && !a->skip && a->prefix + a->len <= sh->max_item);
    int rc = 0;
    if (a->prefix == 0)
        rc = mp__truncate(qp->held_fd, 0); /* what a dead reader left */
    if (rc == 0 && a->len)
        rc = mp__pwrite_all(qp->held_fd, a->buf, a->len, a->prefix);
    if (rc < 0) {
        qpipe_asm_drop(qp, a);
        return rc;
    }
    sh->held_len = (uint64_t)a->prefix + a->len;
    sh->held_kind = (uint32_t)a->kind;
    __atomic_store_n(&sh->held, whole ? 2u : 1u, __ATOMIC_RELEASE);
    qpipe_asm_free(a);
    a->prefix = 0;
    a->active = false;
    return 0;
}

/* Take over the held item (rlock held): 1 for a whole one, 0 for a part
 * (a's prefix from now on) or none, MP_ETYPE when it is of the other kind
 * (it stays). The bytes stay in the held file until qpipe_join_prefix() reads
 * them; a reader that dies before it stashes or delivers the item loses it,
 * as the held slot is free from here. */
static int qpipe_take_held(struct mp__qpipe *qp, struct asm_item *a, int want)
{
    struct mp__qpipe_shared *sh = qp->sh;
    MP__ASSERT(qpipe_held(&sh->rlock));
    unsigned held = __atomic_load_n(&sh->held, __ATOMIC_ACQUIRE);
    if (!held)
        return 0;
    MP__ASSERT(held <= 2 && sh->held_len <= sh->max_item);
    MP__ASSERT(sh->held_kind == MP__QK_BYTES || sh->held_kind == MP__QK_OBJ);
    if (want != MP__QK_ANY && (int)sh->held_kind != want)
        return MP_ETYPE;
    a->kind = (int)sh->held_kind;
    a->prefix = (size_t)sh->held_len;
    a->active = true;
    a->skip = false;
    __atomic_store_n(&sh->held, 0u, __ATOMIC_RELEASE);
    return held == 2 ? 1 : 0;
}

/* Make a whole item one buffer: read back its prefix from the held file. */
static int qpipe_join_prefix(struct mp__qpipe *qp, struct asm_item *a)
{
    if (a->prefix == 0)
        return 0;
    size_t total;
    if (mp__add_overflows(a->prefix, a->len, &total))
        return -ENOMEM;
    unsigned char *b = malloc(total ? total : 1);
    if (!b)
        return -ENOMEM;
    int rc = mp__pread_all(qp->held_fd, b, a->prefix, 0);
    if (rc < 0) {
        free(b);
        return rc;
    }
    if (a->len)
        memcpy(b + a->prefix, a->buf, a->len);
    free(a->buf);
    a->buf = b;
    a->len = a->cap = total;
    a->prefix = 0;
    (void)mp__truncate(qp->held_fd, 0);
    return 0;
}

/* ---- reading: the spill file -------------------------------------------------------- */

/* Take one spilled item (rlock held), offering it to accept first. 1 with the
 * item in a; 0 if none; MP_ETYPE (it stays); what accept returned; -errno.
 * The spill head moves only once the item is taken. */
static int qpipe_spill_take(struct mp__qpipe *qp, struct asm_item *a, int want,
                            mp__qpipe_accept_fn accept, void *ctx, int64_t deadline)
{
    struct mp__qpipe_shared *sh = qp->sh;
    MP__ASSERT(qpipe_held(&sh->rlock));
    if (__atomic_load_n(&sh->spill_head, __ATOMIC_RELAXED) ==
        __atomic_load_n(&sh->spill_tail, __ATOMIC_RELAXED))
        return 0;
    int rc = qpipe_lock(&sh->slock, deadline);
    if (rc < 0)
        return rc;
    MP__ASSERT(sh->spill_head <= sh->spill_tail);
    uint64_t head = sh->spill_head, avail = sh->spill_tail - head;
    unsigned char hdr[SPILL_HDR];
    uint64_t n = 0;
    int kind = MP__QK_BYTES;
    if (avail < SPILL_HDR) {
        rc = 0;
    } else if ((rc = mp__pread_all(qp->spill_fd, hdr, SPILL_HDR, head)) == 0) {
        for (int b = 0; b < SPILL_HDR; b++)
            n |= (uint64_t)hdr[b] << (8 * b);
        kind = (n & SPILL_OBJ) ? MP__QK_OBJ : MP__QK_BYTES;
        n &= ~SPILL_OBJ;
        if (n > avail - SPILL_HDR || n > SIZE_MAX - 1) {
            rc = MP_EPROTO; /* cannot happen short of a scribbled file */
            sh->spill_head = sh->spill_tail = 0;
            (void)mp__truncate(qp->spill_fd, 0);
        } else if (want != MP__QK_ANY && kind != want) {
            rc = MP_ETYPE;
        } else {
            rc = 1;
        }
    }
    /* Writers only append, and readers hold rlock: the item stays put while
     * it is read and offered without slock. */
    mp__mutex_unlock(&sh->slock);
    if (rc != 1)
        return rc;
    unsigned char *buf = malloc(n ? (size_t)n : 1);
    if (!buf)
        return -ENOMEM;
    if (n && (rc = mp__pread_all(qp->spill_fd, buf, (size_t)n, head + SPILL_HDR)) < 0) {
        free(buf);
        return rc;
    }
    if (accept && (rc = accept(ctx, buf, (size_t)n, kind)) < 0) {
        free(buf);
        return rc; /* -ENOMEM: the item stays */
    }
    (void)qpipe_lock(&sh->slock, MP__NO_DEADLINE);
    sh->spill_head = head + SPILL_HDR + n;
    if (sh->spill_head == sh->spill_tail) {
        sh->spill_head = sh->spill_tail = 0;
        (void)mp__truncate(qp->spill_fd, 0);
    }
    mp__mutex_unlock(&sh->slock);
    a->buf = buf;
    a->len = a->cap = (size_t)n;
    a->kind = kind;
    return 1;
}

/* ---- reading ------------------------------------------------------------------------ */

int mp__qpipe_read(struct mp__qpipe *qp, int want, mp__qpipe_accept_fn accept, void *ctx,
                   void **data, size_t *len, int *kind, int64_t deadline)
{
    struct mp__qpipe_shared *sh = qp->sh;
    int rc = qpipe_lock(&sh->rlock, deadline);
    if (rc < 0)
        return rc;
    qpipe_recover_read(sh);
    MP__ASSERT(qpipe_ring_ok(sh));
    struct asm_item a = {0};
    bool from_spill = false;
    bool refilled = false; /* this call has looked at the pipe */
    rc = qpipe_take_held(qp, &a, want);
    while (rc == 0) {
        rc = qpipe_parse(qp, &a, want);
        if (rc != 0)
            break;
        /* Whatever keeps arriving, a read ends at its deadline - after one
         * look at the pipe, so that MP_NOWAIT gets what is there, and up to
         * GRACE_NS later while an item streams in. */
        if (refilled && mp__deadline_passed(deadline) &&
            (!a.active || mp__deadline_passed(deadline + GRACE_NS))) {
            rc = MP_ETIMEDOUT;
            break;
        }
        ssize_t r = qpipe_refill(qp, qp->pipe_cap);
        refilled = true;
        if (r < 0) {
            rc = (int)r;
            break;
        }
        if (r > 0)
            continue;
        if (!a.active) {
            rc = qpipe_spill_take(qp, &a, want, accept, ctx, deadline);
            if (rc != 0) {
                from_spill = rc == 1;
                break;
            }
            rc = mp__wait_fd(qp->rfd, POLLIN, deadline);
            if (rc < 0)
                break; /* MP_ETIMEDOUT, or an error */
            rc = 0;
            continue;
        }
        /* Part of a big item is here and the pipe is empty: its writer is
         * still writing (it holds the write lock), or it is gone, and the
         * item with it. Look again every SLICE, until the deadline. */
        int64_t until = mp__deadline(SLICE);
        if (deadline != MP__NO_DEADLINE && deadline < until)
            until = deadline;
        if (mp__wait_fd(qp->rfd, POLLIN, until) == 1)
            continue;
        if (mp__deadline_passed(deadline)) {
            rc = MP_ETIMEDOUT;
            break;
        }
        int t = pthread_mutex_trylock(&sh->wlock);
        if (t == 0 || t == EOWNERDEAD) {
            if (t == EOWNERDEAD)
                (void)pthread_mutex_consistent(&sh->wlock);
            /* Free - but a writer may have finished between our look at the
             * pipe and the trylock: look once more before dropping. */
            bool more = mp__bytes_ready(qp->rfd) > 0;
            (void)pthread_mutex_unlock(&sh->wlock);
            if (!more)
                qpipe_asm_drop(qp, &a);
        }
    }
    if (rc == 1 && !from_spill) {
        /* A whole item: it is taken once it is one buffer and accepted;
         * short of memory (or of a readable held file) it stays at the head. */
        rc = a.prefix ? qpipe_join_prefix(qp, &a) : 0;
        if (rc < 0)
            (void)qpipe_stash(qp, &a, true);
        else if (accept && (rc = accept(ctx, a.buf, a.len, a.kind)) < 0)
            (void)qpipe_stash(qp, &a, true); /* -ENOMEM */
        else
            rc = 1;
    } else if (rc != 1 && a.active && !a.skip) {
        (void)qpipe_stash(qp, &a, false); /* the next get goes on with it */
    }
    mp__mutex_unlock(&sh->rlock);
    if (rc == 1) {
        *data = a.buf ? a.buf : malloc(1);
        if (!*data)
            return -ENOMEM;
        *len = a.len;
        if (kind)
            *kind = a.kind;
        return 0;
    }
    qpipe_asm_free(&a);
    return rc;
}

int mp__qpipe_ready(struct mp__qpipe *qp)
{
    struct mp__qpipe_shared *sh = qp->sh;
    if (__atomic_load_n(&sh->tail, __ATOMIC_RELAXED) -
            __atomic_load_n(&sh->head, __ATOMIC_RELAXED) >=
        HDR)
        return 1;
    if (__atomic_load_n(&sh->held, __ATOMIC_RELAXED) == 2)
        return 1;
    if (mp__bytes_ready(qp->rfd) > 0)
        return 1;
    return __atomic_load_n(&sh->spill_head, __ATOMIC_RELAXED) !=
           __atomic_load_n(&sh->spill_tail, __ATOMIC_RELAXED);
}
