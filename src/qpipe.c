/*
 * qpipe - the chunked pipe, shared read-ahead ring and spill file under the
 * queues (see qpipe.h for the format and the guarantees).
 */
#include "qpipe.h"

#include "io.h"
#include "psync.h"
#include "shm.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#ifndef PIPE_BUF
#define PIPE_BUF 4096
#endif

#define HDR       4
#define WRITE_MAX ((size_t)PIPE_BUF)
#define CHUNK_MAX (WRITE_MAX - HDR)
/* Chunks per write: two iovecs each, within IOV_MAX. */
#define WRITE_CHUNKS 256

#define F_MAGIC 0x80
#define F_START 0x01
#define F_END   0x02
#define F_HINT  0x04

/* How often a waiting writer looks at *stop, and a reader waiting for the
 * rest of a big item checks whether its writer is still there. */
#define SLICE 0.02
/* A stopping writer spills once the pipe has had no room for this long:
 * readers that are draining the pipe get everything through it, and a
 * process nobody reads from (gh-73983) still ends after this pause. */
#define STALL 0.1

/* A spilled item: an 8-byte length, then the bytes. */
#define SPILL_HDR 8

/* ---- setup ------------------------------------------------------------------ */

int mp__qpipe_open(struct mp__qpipe *qp)
{
    qp->sh = NULL;
    qp->rfd = qp->wfd = qp->spill_fd = -1;
    qp->pipe_cap = 0;
    int fds[2];
    int rc = mp__pipe(fds);
    if (rc < 0)
        return rc;
    qp->rfd = fds[0];
    qp->wfd = fds[1];
    if ((rc = mp__set_nonblock(qp->rfd)) < 0 || (rc = mp__set_nonblock(qp->wfd)) < 0)
        goto fail;
    rc = mp__anon_file("mpipc-queue-spill");
    if (rc < 0)
        goto fail;
    qp->spill_fd = rc;

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
    if ((rc = mp__mutex_init(&sh->rlock, false)) < 0)
        goto fail_sh;
    if ((rc = mp__mutex_init(&sh->wlock, false)) < 0)
        goto fail_r;
    if ((rc = mp__mutex_init(&sh->slock, false)) < 0)
        goto fail_w;
    qp->sh = sh;
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
    int *fds[3] = {&qp->rfd, &qp->wfd, &qp->spill_fd};
    for (int i = 0; i < 3; i++) {
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

/* A robust lock with no limit. A dead holder needs no repair here: the
 * writers' state is the pipe itself, and the readers' is checked by
 * recover_read() on every acquisition. */
static int lock(pthread_mutex_t *m, int64_t deadline)
{
    int rc = mp__mutex_lock(m, deadline);
    return rc == MP_EOWNERDEAD ? 0 : rc;
}

/* ---- spilling --------------------------------------------------------------- */

/* Append items to the spill file (wlock held). */
static int spill_items(struct mp__qpipe *qp, const struct iovec *items, size_t n)
{
    struct mp__qpipe_shared *sh = qp->sh;
    (void)lock(&sh->slock, MP__NO_DEADLINE);
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        uint64_t len = items[i].iov_len;
        unsigned char hdr[SPILL_HDR];
        for (int b = 0; b < SPILL_HDR; b++)
            hdr[b] = (unsigned char)(len >> (8 * b));
        rc = mp__pwrite_all(qp->spill_fd, hdr, SPILL_HDR, sh->spill_tail);
        if (rc == 0 && len)
            rc = mp__pwrite_all(qp->spill_fd, items[i].iov_base, items[i].iov_len,
                                sh->spill_tail + SPILL_HDR);
        /* Visible to readers only once whole. */
        if (rc == 0)
            sh->spill_tail += SPILL_HDR + len;
    }
    mp__mutex_unlock(&sh->slock);
    return rc;
}

/* Take one spilled item (rlock held). 1 with the item, 0 if none. */
static int spill_take(struct mp__qpipe *qp, void **data, size_t *len)
{
    struct mp__qpipe_shared *sh = qp->sh;
    if (__atomic_load_n(&sh->spill_head, __ATOMIC_RELAXED) ==
        __atomic_load_n(&sh->spill_tail, __ATOMIC_RELAXED))
        return 0;
    (void)lock(&sh->slock, MP__NO_DEADLINE);
    int rc = 0;
    uint64_t avail = sh->spill_tail - sh->spill_head;
    unsigned char hdr[SPILL_HDR];
    if (avail >= SPILL_HDR &&
        (rc = mp__pread_all(qp->spill_fd, hdr, SPILL_HDR, sh->spill_head)) == 0) {
        uint64_t n = 0;
        for (int b = 0; b < SPILL_HDR; b++)
            n |= (uint64_t)hdr[b] << (8 * b);
        if (n > avail - SPILL_HDR || n > SIZE_MAX - 1) {
            rc = MP_EPROTO; /* cannot happen short of a scribbled file */
            sh->spill_head = sh->spill_tail;
        } else {
            void *buf = malloc(n ? (size_t)n : 1);
            if (!buf)
                rc = -ENOMEM;
            else if (n && (rc = mp__pread_all(qp->spill_fd, buf, (size_t)n,
                                              sh->spill_head + SPILL_HDR)) < 0)
                free(buf);
            if (rc == 0) {
                sh->spill_head += SPILL_HDR + n;
                *data = buf;
                *len = (size_t)n;
                rc = 1;
            }
        }
    }
    if (sh->spill_head == sh->spill_tail && sh->spill_tail > 0) {
        sh->spill_head = sh->spill_tail = 0;
        (void)mp__truncate(qp->spill_fd, 0);
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

static void put_chunk(struct wbuf *w, unsigned flags, const void *p, size_t len)
{
    unsigned char *h = w->hdr[w->nchunks++];
    h[0] = (unsigned char)(F_MAGIC | flags);
    h[1] = (unsigned char)len;
    h[2] = (unsigned char)(len >> 8);
    h[3] = (unsigned char)(len >> 16);
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
static int emit(struct writer *wr, struct wbuf *w)
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
static void send_hint(struct writer *wr)
{
    struct wbuf w;
    w.niov = w.nchunks = 0;
    w.bytes = 0;
    put_chunk(&w, F_HINT, NULL, 0);
    (void)mp__writev_once(wr->qp->wfd, w.iov, w.niov, wr->sigpipe_blocked);
}

int mp__qpipe_write(struct mp__qpipe *qp, const struct iovec *items, size_t n, int64_t deadline,
                    bool *spill, const int *stop, size_t *written, bool sigpipe_blocked)
{
    struct writer wr = {qp, deadline, spill && *spill, stop, sigpipe_blocked, 0};
    *written = 0;
    int rc = lock(&qp->sh->wlock, deadline);
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
        size_t len = items[i].iov_len;
        const unsigned char *p = items[i].iov_base;
        if (HDR + len <= WRITE_MAX) {
            if (w->bytes + HDR + len > WRITE_MAX || w->nchunks == WRITE_CHUNKS) {
                if ((rc = emit(&wr, w)) != 0)
                    break;
                done += pending;
                pending = 0;
            }
            put_chunk(w, F_START | F_END, p, len);
            pending++;
            continue;
        }
        /* A big item: flush what is built, then its chunks one write each. */
        if ((rc = emit(&wr, w)) != 0)
            break;
        done += pending;
        pending = 0;
        for (size_t off = 0; off < len && rc == 0;) {
            size_t c = len - off < CHUNK_MAX ? len - off : CHUNK_MAX;
            unsigned flags = (off == 0 ? F_START : 0) | (off + c == len ? F_END : 0);
            put_chunk(w, flags, p + off, c);
            rc = emit(&wr, w);
            off += c;
        }
        /* On failure part way the item is abandoned: its START has no END,
         * and readers drop it. A spill re-sends it whole. */
        if (rc == 0)
            done++;
    }
    if (rc == 0) {
        rc = emit(&wr, w);
        if (rc == 0)
            done += pending;
    }
    if (rc == 1) {
        /* No room and no waiting: the rest goes to the spill file, in order. */
        rc = spill_items(qp, items + done, n - done);
        if (rc == 0) {
            done = n;
            send_hint(&wr);
        }
        if (spill)
            *spill = true; /* the producer's later items must follow these */
    }
    free(w);
    mp__mutex_unlock(&qp->sh->wlock);
    *written = done;
    return rc;
}

/* ---- reading ---------------------------------------------------------------- */

/* An item being assembled by one reader. */
struct asm_item {
    unsigned char *buf;
    size_t len, cap;
    bool active;
};

static void asm_drop(struct asm_item *a)
{
    free(a->buf);
    a->buf = NULL;
    a->len = a->cap = 0;
    a->active = false;
}

/* Room for n more bytes, growing only as bytes arrive: a one-chunk item
 * gets exactly its size, a big one doubles as its chunks come. */
static int asm_reserve(struct asm_item *a, size_t n, bool last)
{
    if (a->buf && a->len + n <= a->cap)
        return 0;
    size_t cap = last ? a->len + n : (a->cap ? a->cap : CHUNK_MAX);
    while (cap < a->len + n)
        cap *= 2;
    unsigned char *b = realloc(a->buf, cap ? cap : 1);
    if (!b)
        return -ENOMEM;
    a->buf = b;
    a->cap = cap;
    return 0;
}

/* Copy n ring bytes from absolute offset pos (wrapping). */
static void ring_copy(const struct mp__qpipe_shared *sh, uint64_t pos, void *dst, size_t n)
{
    size_t at = (size_t)(pos % sh->cap);
    size_t first = sh->cap - at < n ? sh->cap - at : n;
    memcpy(dst, sh->ring + at, first);
    memcpy((unsigned char *)dst + first, sh->ring, n - first);
}

static void ring_zero(struct mp__qpipe_shared *sh, uint64_t from, uint64_t to)
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
 * (every chunk starts with 0x80). */
static void recover_read(struct mp__qpipe_shared *sh)
{
    if (!sh->reading)
        return;
    uint64_t end = sh->tail + sh->read_len;
    while (end - sh->tail >= HDR) {
        unsigned char h[HDR];
        ring_copy(sh, sh->tail, h, HDR);
        size_t clen = (size_t)h[1] | (size_t)h[2] << 8 | (size_t)h[3] << 16;
        if (!(h[0] & F_MAGIC) || clen > CHUNK_MAX || end - sh->tail < HDR + clen)
            break;
        sh->tail += HDR + clen;
    }
    sh->reading = 0;
}

/* Read what the pipe holds into the ring. Reads must end on a write
 * boundary (the ring holds whole chunks only): a read with room for all the
 * pipe can hold does; with less room, ask FIONREAD first and read only if all
 * of it fits. Returns bytes read, 0 when the pipe is empty or the ring too
 * full, or -errno. */
static ssize_t refill(struct mp__qpipe *qp, size_t pipe_cap)
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
        ring_zero(sh, start, sh->tail + n);
        sh->clean = sh->tail + n;
    }
    struct iovec iov[2];
    size_t at = (size_t)(sh->tail % sh->cap);
    size_t first = sh->cap - at < n ? sh->cap - at : n;
    iov[0].iov_base = sh->ring + at;
    iov[0].iov_len = first;
    iov[1].iov_base = sh->ring;
    iov[1].iov_len = n - first;
    sh->read_len = n;
    __atomic_store_n(&sh->reading, 1, __ATOMIC_RELEASE);
    ssize_t r = mp__readv_once(qp->rfd, iov, n > first ? 2 : 1);
    if (r > 0)
        sh->tail += (uint64_t)r;
    __atomic_store_n(&sh->reading, 0, __ATOMIC_RELEASE);
    return r == -EAGAIN ? 0 : r;
}

/*
 * Parse chunks from the ring into a. Returns 1 when an item is complete,
 * 0 when the ring has no more whole chunks, MP_EPROTO, -ENOMEM.
 */
static int parse(struct mp__qpipe_shared *sh, struct asm_item *a)
{
    while (sh->tail - sh->head >= HDR) {
        unsigned char h[HDR];
        ring_copy(sh, sh->head, h, HDR);
        if (h[0] == 0) {
            sh->head++; /* zero fill counted in by a recovery: skip it */
            continue;
        }
        size_t clen = (size_t)h[1] | (size_t)h[2] << 8 | (size_t)h[3] << 16;
        if (!(h[0] & F_MAGIC) || clen > CHUNK_MAX) {
            /* Not a chunk: drop what was read ahead. The next read starts
             * on a write boundary, so the stream recovers there. */
            sh->head = sh->tail;
            asm_drop(a);
            return MP_EPROTO;
        }
        if (sh->tail - sh->head < HDR + clen)
            return 0; /* reads end on chunk boundaries: not reached */
        unsigned flags = h[0];
        uint64_t payload = sh->head + HDR;
        if (flags & F_HINT) {
            sh->head += HDR + clen;
            continue;
        }
        if (flags & F_START) {
            if (a->active)
                asm_drop(a); /* its writer died or gave up before the END */
            a->active = true;
        } else if (!a->active) {
            sh->head += HDR + clen; /* the rest of an item nobody is assembling */
            continue;
        }
        if (asm_reserve(a, clen, (flags & F_END) != 0) < 0) {
            asm_drop(a);
            return -ENOMEM; /* the chunk stays in the ring for later */
        }
        ring_copy(sh, payload, a->buf + a->len, clen);
        a->len += clen;
        sh->head += HDR + clen;
        if (flags & F_END)
            return 1;
    }
    return 0;
}

int mp__qpipe_read(struct mp__qpipe *qp, void **data, size_t *len, int64_t deadline)
{
    struct mp__qpipe_shared *sh = qp->sh;
    int rc = lock(&sh->rlock, deadline);
    if (rc < 0)
        return rc;
    recover_read(sh);
    struct asm_item a = {0};
    for (;;) {
        rc = parse(sh, &a);
        if (rc != 0)
            break;
        ssize_t r = refill(qp, qp->pipe_cap);
        if (r < 0) {
            rc = (int)r;
            break;
        }
        if (r > 0)
            continue;
        if (!a.active) {
            rc = spill_take(qp, data, len);
            if (rc != 0) {
                mp__mutex_unlock(&sh->rlock);
                return rc == 1 ? 0 : rc;
            }
            rc = mp__wait_fd(qp->rfd, POLLIN, deadline);
            if (rc == MP_ETIMEDOUT || rc < 0)
                break;
            continue;
        }
        /* Part of a big item is here and the pipe is empty: its writer is
         * still writing (it holds the write lock) - wait, whatever our
         * deadline - or it is gone, and the item with it. */
        if (mp__wait_fd(qp->rfd, POLLIN, mp__deadline(SLICE)) == 1)
            continue;
        int t = pthread_mutex_trylock(&sh->wlock);
        if (t == 0 || t == EOWNERDEAD) {
            if (t == EOWNERDEAD)
                (void)pthread_mutex_consistent(&sh->wlock);
            /* Free - but a writer may have finished between our look at the
             * pipe and the trylock: look once more before dropping. */
            bool more = mp__bytes_ready(qp->rfd) > 0;
            (void)pthread_mutex_unlock(&sh->wlock);
            if (!more)
                asm_drop(&a);
        }
    }
    mp__mutex_unlock(&sh->rlock);
    if (rc == 1) {
        *data = a.buf;
        *len = a.len;
        if (!*data && !(*data = malloc(1)))
            return -ENOMEM;
        return 0;
    }
    asm_drop(&a);
    return rc;
}

int mp__qpipe_ready(struct mp__qpipe *qp)
{
    struct mp__qpipe_shared *sh = qp->sh;
    if (__atomic_load_n(&sh->tail, __ATOMIC_RELAXED) !=
        __atomic_load_n(&sh->head, __ATOMIC_RELAXED))
        return 1;
    if (mp__bytes_ready(qp->rfd) > 0)
        return 1;
    return __atomic_load_n(&sh->spill_head, __ATOMIC_RELAXED) !=
           __atomic_load_n(&sh->spill_tail, __ATOMIC_RELAXED);
}
