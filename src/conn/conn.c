/*
 * conn - Python's Connection over a pipe or stream socket (see conn.h).
 *
 * Receiving. A connection keeps a 64 KiB read-ahead buffer, so a stream of
 * small messages costs one read() per buffer-full rather than two per
 * message. A message that cannot fit the buffer is read straight into its
 * destination (the caller's buffer, or a heap buffer that grows only as bytes
 * arrive, so a lying length header cannot make us allocate for it).
 *
 * State kept between calls, all guarded by rmu:
 *   rbuf[rpos, rlen)     bytes read ahead: zero or more whole messages and
 *                        possibly the start of the next one;
 *   big                  a large message whose header has been consumed and
 *                        whose payload has partly arrived (a receive that
 *                        timed out part-way resumes here);
 *   skip, skip_hdr       in a forked child: the rest of a message the parent
 *                        had begun, to be read and discarded (see Fork).
 * While a large message is read straight into a caller's buffer, direct_size
 * and direct_got record how far it has come, so that the stream position is
 * known at every moment a receive can wait, even to a child forked then.
 *
 * poll() and wait() must not take rmu (a receive may hold it for a while),
 * so two atomics mirror the state each receive leaves: unread, the byte
 * count held, and ready, true when rbuf starts with a complete message (or a
 * corrupt header, which a receive reports at once). Only that makes a
 * connection ready without looking at the descriptor; the start of a
 * message does not, or "poll, then receive" would spin on it.
 *
 * Fork. Every entry point compares the handle's fork generation with the
 * process's; in a child that differs, and the handle re-creates its mutexes
 * (a parent thread may have held one at the moment of fork) and keeps only
 * what it needs to find the next frame boundary. Whole messages the parent
 * read ahead are the parent's: dropped. A message the parent had begun (part
 * of its header, its header and part of its payload, a large message in
 * progress) cannot be delivered and must not be parsed as a frame: the child
 * notes how much of it is still in the descriptor (skip), or, when even the
 * header is cut, keeps the header's start (skip_hdr) so that its first
 * receive can complete the header and learn the length. That receive reads
 * and discards the rest, then parses from the frame boundary after it.
 *
 * Handles. On an AF_UNIX stream end every read into rbuf is a recvmsg()
 * with room for descriptors (conn_read), so a read ahead that reaches a
 * handle message (reduction.h) keeps its descriptor instead of making the
 * kernel close it; conn_stash.c holds the FIFO of kept handles and the
 * reasoning. rbuf[i] is stream byte rtotal - rlen + i. In a forked child
 * the kept descriptors are the parent's: the child closes its copies and
 * drops their bytes, as it drops whole messages.
 *
 * Static functions carry conn_; the sibling listener.c (Listener, Client,
 * the handshake) carries listener_, and reduction.c (passing descriptors,
 * through the raw access at the end of this file, conn_impl.h) reduction_.
 */
#include "codec/frame.h"
#include "codec/pickle.h"
#include "conn/conn_impl.h"
#include "conn/conn_state.h"
#include "conn/shmpipe.h"
#include "core/internal.h"
#include "core/io.h"

#include <mpipc/conn.h>

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define RBUF_CAP ((size_t)64 * 1024)
/* Growth bounds for a large message: never allocate more than what has
 * arrived plus max(CHUNK_MIN, arrived) and never more than CHUNK_MAX ahead. */
#define CHUNK_MIN ((size_t)1024 * 1024)
#define CHUNK_MAX ((size_t)64 * 1024 * 1024)
/* mp_wait() keeps this many pollfds on the stack before it allocates. */
#define WAIT_STACK 16
/* ---- small helpers ------------------------------------------------------- */

static bool conn_load_flag(const bool *flag)
{
    return __atomic_load_n(flag, __ATOMIC_ACQUIRE);
}

static void conn_store_flag(bool *flag, bool value)
{
    __atomic_store_n(flag, value, __ATOMIC_RELEASE);
}

/*
 * Read into rbuf (at buf, which is rbuf + rlen, or rbuf when it is empty):
 * mp__read_some, or on an AF_UNIX stream end a recvmsg() that keeps the
 * descriptor of a handle message it reaches.
 */
static ssize_t conn_read(mp_conn *c, unsigned char *buf, size_t n, int64_t deadline)
{
    if (!c->unix_stream)
        return mp__read_some(c->fd, buf, n, deadline, c->is_socket);
    int fds[MP__FDS_MAX];
    size_t nfds = 0;
    bool ctrunc = false;
    ssize_t r = mp__recv_stream(c->fd, buf, n, deadline, fds, &nfds, &ctrunc);
    if (__builtin_expect(nfds != 0 || ctrunc, 0))
        mp__conn_stash_arrivals(c, buf, r, fds, nfds, ctrunc);
    if (r > 0)
        c->rtotal += (uint64_t)r;
    return r;
}

/*
 * The read state's invariants (rmu held), for MP__ASSERT: the read-ahead
 * window lies in the buffer; a large message, a message read into a
 * caller's buffer and a parent's message being skipped each leave rbuf
 * empty and exclude the others; progress never passes a message's size.
 */
static MP__ASSERT_ONLY bool conn_read_state_ok(const mp_conn *c)
{
    if (!(c->rpos <= c->rlen && c->rlen <= RBUF_CAP && (c->rbuf || c->rlen == 0)))
        return false;
    if (c->big && !(c->big_got <= c->big_cap && c->big_cap <= c->big_size && c->rlen == 0))
        return false;
    if (c->direct_got > c->direct_size)
        return false;
    if (c->skip && (c->skip_hdr || c->big || c->rpos != c->rlen))
        return false;
    return !(c->skip_hdr && (c->big || c->direct_size));
}

/* Publish the read state to poll() and wait() (rmu held). Ready without
 * the descriptor: a whole message at rpos, or a corrupt header there (the
 * receive fails with MP_EPROTO at once, so waiting for bytes would hang). */
static inline void conn_publish_read_state(mp_conn *c)
{
    MP__ASSERT(conn_read_state_ok(c));
    size_t avail = c->rlen - c->rpos;
    bool ready = false;
    /* A large message in `big` or being skipped leaves rbuf empty; a header
     * under skip_hdr starts a message that will be discarded, not received. */
    if (avail && !c->skip_hdr)
        ready = mp__frame_whole(c->rbuf + c->rpos, avail) != 0;
    /* A kept handle at rpos is ready too: its byte has left the descriptor.
     * Kept handles whose byte was consumed otherwise are closed here, once
     * per receive. */
    if (__builtin_expect(c->nstash != 0, 0))
        ready = mp__conn_handle_next(c) || ready;
    __atomic_store_n(&c->unread, avail + (c->big ? c->big_got : 0), __ATOMIC_RELEASE);
    __atomic_store_n(&c->ready, ready, __ATOMIC_RELEASE);
}

/* Drop every buffered byte (rmu held, or the handle is not shared). */
static void conn_drop_buffered(mp_conn *c)
{
    c->rpos = c->rlen = 0;
    free(c->big);
    c->big = NULL;
    c->big_size = c->big_got = c->big_cap = 0;
    c->direct_size = c->direct_got = 0;
    c->skip = 0;
    c->skip_hdr = false;
    if (c->nstash)
        mp__conn_stash_close_all(c);
    conn_publish_read_state(c);
}

/*
 * In a forked child: keep what finds the next frame boundary and nothing the
 * parent owns (see the file comment). The parent's state is whatever it was
 * when fork() ran; a parent thread may have been waiting inside a receive,
 * so every state a receive can wait in is handled here.
 */
static void conn_keep_only_the_partial_message(mp_conn *c)
{
    size_t skip = c->skip; /* inherited from a parent that was skipping */
    size_t keep = 0;
    bool skip_hdr = false;
    if (c->direct_size) {
        skip = c->direct_size - c->direct_got;
    } else if (c->big) {
        skip = c->big_size - c->big_got;
    } else {
        /* Whole messages are the parent's. Under skip_hdr the first frame
         * is a message being discarded: the same treatment. */
        size_t pos = c->rpos;
        while (pos < c->rlen) {
            if (c->nstash && mp__conn_stash_has(c, pos)) {
                pos++; /* a handle the parent read ahead: the parent's */
                continue;
            }
            size_t avail = c->rlen - pos;
            uint64_t size;
            size_t hdr;
            int rc = mp__frame_decode(c->rbuf + pos, avail, &size, &hdr);
            if (rc == 1 && size <= avail - hdr) {
                pos += hdr + (size_t)size;
                continue;
            }
            if (rc == 1)
                skip = (size_t)size - (avail - hdr); /* the rest is in the descriptor */
            else
                keep = avail; /* a cut header (or a corrupt one, for MP_EPROTO) */
            skip_hdr = rc == 0;
            break;
        }
    }
    /* The kept descriptors are the parent's: close this process's copies. */
    mp__conn_stash_close_all(c);
    if (keep)
        memmove(c->rbuf, c->rbuf + (c->rlen - keep), keep);
    c->rpos = 0;
    c->rlen = keep;
    free(c->big);
    c->big = NULL;
    c->big_size = c->big_got = c->big_cap = 0;
    c->direct_size = c->direct_got = 0;
    c->skip = skip;
    c->skip_hdr = skip_hdr;
    conn_publish_read_state(c);
}

/* In a forked child, make the handle the child's own (see the file comment). */
static void conn_fork_fixup_slow(mp_conn *c)
{
    mp__forkfix_lock();
    unsigned now = mp__forkgen();
    if (c->gen != now) {
        (void)pthread_mutex_init(&c->rmu, NULL);
        (void)pthread_mutex_init(&c->wmu, NULL);
        conn_keep_only_the_partial_message(c);
        __atomic_store_n(&c->gen, now, __ATOMIC_RELEASE);
    }
    mp__forkfix_unlock();
}

static inline void conn_fork_fixup(mp_conn *c)
{
    if (__atomic_load_n(&c->gen, __ATOMIC_ACQUIRE) != mp__forkgen())
        conn_fork_fixup_slow(c);
}

/* Python's _check_closed + _check_readable. */
static int conn_check_recv(mp_conn *c)
{
    if (!c)
        return -EINVAL;
    if (conn_load_flag(&c->closed))
        return MP_ECLOSED;
    if (!conn_load_flag(&c->readable))
        return MP_EWRITEONLY;
    conn_fork_fixup(c);
    return 0;
}

/* ---- construction --------------------------------------------------------- */

static int conn_new(mp_conn **out, int fd, bool is_socket, bool unix_stream, bool readable,
                    bool writable)
{
    mp_conn *c = malloc(sizeof *c);
    if (!c)
        return -ENOMEM;
    *c = (mp_conn){.fd = fd,
                   .is_socket = is_socket,
                   .unix_stream = unix_stream,
                   .readable = readable,
                   .writable = writable,
                   .readahead = true,
                   .gen = mp__forkgen()};
    if (pthread_mutex_init(&c->rmu, NULL) != 0)
        goto fail;
    if (pthread_mutex_init(&c->wmu, NULL) != 0)
        goto fail_rmu;
    *out = c;
    return 0;

fail_rmu:
    pthread_mutex_destroy(&c->rmu);
fail:
    free(c);
    return -ENOMEM;
}

int mp__conn_new(mp_conn **out, int fd, bool is_socket, bool unix_stream, bool readable,
                 bool writable)
{
    return conn_new(out, fd, is_socket, unix_stream, readable, writable);
}

MP_API int mp_pipe(mp_conn **a, mp_conn **b, bool duplex)
{
    if (!a || !b)
        return -EINVAL;
    *a = *b = NULL;
    int fds[2];
    int rc = duplex ? mp__socketpair(fds) : mp__pipe(fds);
    if (rc < 0)
        return rc;
    /* pipe(2): fds[0] is the read end, fds[1] the write end, which is exactly
     * Python's (reader, writer) order for Pipe(duplex=False). */
    if ((rc = conn_new(a, fds[0], duplex, duplex, true, duplex)) < 0)
        goto fail;
    if ((rc = conn_new(b, fds[1], duplex, duplex, duplex, true)) < 0)
        goto fail_a;
    return 0;

fail_a:
    mp_conn_free(*a); /* closes fds[0] */
    *a = NULL;
    fds[0] = -1;
fail:
    if (fds[0] >= 0)
        mp__close(fds[0]);
    mp__close(fds[1]);
    return rc;
}

MP_API int mp_conn_from_fd(mp_conn **out, int fd, bool readable, bool writable)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (fd < 0 || (!readable && !writable))
        return -EINVAL;
    int sock = mp__fd_is_socket(fd);
    if (sock < 0)
        return sock;
    int rc = mp__set_cloexec(fd);
    if (rc < 0)
        return rc;
    /* An AF_UNIX stream socket may carry handles between messages (see
     * Handles); a socket whose kind cannot be told is read as before. */
    int family = 0;
    bool stream = false;
    bool unix_stream =
        sock == 1 && mp__socket_kind(fd, &family, &stream) == 0 && family == AF_UNIX && stream;
    return conn_new(out, fd, sock == 1, unix_stream, readable, writable);
}

/* ---- sending -------------------------------------------------------------- */

MP_API int mp_conn_send_bytes(mp_conn *c, const void *buf, size_t len)
{
    if (!c || (!buf && len > 0))
        return -EINVAL;
    if (conn_load_flag(&c->closed))
        return MP_ECLOSED;
    if (!c->writable)
        return MP_EREADONLY;
    conn_fork_fixup(c);
    if (__builtin_expect(c->shm != NULL, 0))
        return mp__shmc_send(c, buf, len);

    unsigned char hdr[MP__FRAME_MAX];
    struct iovec iov[2];
    iov[0].iov_base = hdr;
    iov[0].iov_len = mp__frame_encode(len, hdr);
    iov[1].iov_base = (void *)buf;
    iov[1].iov_len = len;

    pthread_mutex_lock(&c->wmu);
    int rc = mp__write_all(c->fd, iov, 2, c->is_socket, false);
    pthread_mutex_unlock(&c->wmu);
    return rc;
}

/* ---- receiving ------------------------------------------------------------ */

/*
 * Read until at least `need` bytes are buffered from rpos (need <= RBUF_CAP).
 * With read-ahead on, each read asks for all the room the buffer has; off, it
 * asks for exactly the missing bytes so that nothing beyond this message is
 * taken from the descriptor.
 */
static int conn_fill(mp_conn *c, size_t need, int64_t deadline)
{
    MP__ASSERT(need <= RBUF_CAP && !c->big && !c->skip);
    if (!c->rbuf) {
        c->rbuf = malloc(RBUF_CAP);
        if (!c->rbuf)
            return -ENOMEM;
    }
    if (c->rpos + need > RBUF_CAP) {
        memmove(c->rbuf, c->rbuf + c->rpos, c->rlen - c->rpos);
        c->rlen -= c->rpos;
        c->rpos = 0;
    }
    MP__ASSERT(c->rpos + need <= RBUF_CAP);
    while (c->rlen - c->rpos < need) {
        size_t want = c->readahead ? RBUF_CAP - c->rlen : need - (c->rlen - c->rpos);
        ssize_t r = conn_read(c, c->rbuf + c->rlen, want, deadline);
        if (r == 0) {
            int rc = c->rlen == c->rpos ? MP_EOF : MP_ETRUNCATED;
            conn_drop_buffered(c);
            return rc;
        }
        if (r < 0)
            return (int)r;
        c->rlen += (size_t)r;
    }
    return 0;
}

/* Make room in `big` for more of the message, growing only as bytes arrive. */
static int conn_big_grow(mp_conn *c)
{
    size_t step = c->big_got < CHUNK_MIN ? CHUNK_MIN : c->big_got;
    if (step > CHUNK_MAX)
        step = CHUNK_MAX;
    size_t cap = c->big_size - c->big_got < step ? c->big_size : c->big_got + step;
    unsigned char *p = realloc(c->big, cap);
    if (!p)
        return -ENOMEM;
    c->big = p;
    c->big_cap = cap;
    return 0;
}

/* Start a large message: the header (hdr bytes) is at rpos, followed by
 * whatever part of the payload the read-ahead buffer holds. */
static int conn_big_start(mp_conn *c, size_t hdr, size_t size)
{
    size_t have = c->rlen - c->rpos - hdr; /* < size: it did not fit the buffer */
    c->big = NULL;
    c->big_size = size;
    c->big_got = 0;
    c->big_cap = 0;
    /* The first allocation covers what arrived plus one chunk. */
    size_t cap = size - have < CHUNK_MIN ? size : have + CHUNK_MIN;
    c->big = malloc(cap);
    if (!c->big)
        return -ENOMEM;
    c->big_cap = cap;
    memcpy(c->big, c->rbuf + c->rpos + hdr, have);
    c->big_got = have;
    c->rpos = c->rlen = 0;
    return 0;
}

/* Receive the rest of the large message in `big`. */
static int conn_big_finish(mp_conn *c, int64_t deadline)
{
    while (c->big_got < c->big_size) {
        MP__ASSERT(c->big_got <= c->big_cap && c->big_cap <= c->big_size);
        if (c->big_got == c->big_cap) {
            int rc = conn_big_grow(c);
            if (rc < 0)
                return rc;
        }
        ssize_t r = mp__read_some(c->fd, c->big + c->big_got, c->big_cap - c->big_got, deadline,
                                  c->is_socket);
        if (r == 0) {
            conn_drop_buffered(c);
            return MP_ETRUNCATED;
        }
        if (r < 0)
            return (int)r; /* the partial message stays for the next call */
        MP__ASSERT((size_t)r <= c->big_cap - c->big_got);
        c->big_got += (size_t)r;
    }
    return 0;
}

/* Python's _bad_message_length(): a duplex end stops being readable, a
 * receive-only end is closed. */
static void conn_bad_message_length(mp_conn *c)
{
    conn_drop_buffered(c);
    if (c->writable) {
        conn_store_flag(&c->readable, false);
    } else {
        /* Nobody sends on a receive-only end, so with rmu held nothing else
         * uses the descriptor: release it now, as Python's close() does, so
         * the writer sees its reader gone. */
        conn_store_flag(&c->closed, true);
        mp__close(c->fd);
        c->fd = -1;
    }
}

/* What a receive wants: a fresh buffer, or a copy into the caller's. */
struct recv_req {
    size_t maxlength;    /* 0 = none */
    unsigned char *into; /* NULL: allocate */
    size_t room;         /* bytes available at into */
    /* results */
    unsigned char *out; /* allocated message (into == NULL) */
    size_t size;
};

/* Hand over a completed large message. */
static int conn_deliver_big(mp_conn *c, struct recv_req *req)
{
    req->size = c->big_size;
    if (req->into) {
        memcpy(req->into, c->big, c->big_size);
        free(c->big);
    } else {
        req->out = c->big;
    }
    c->big = NULL;
    c->big_size = c->big_got = c->big_cap = 0;
    return 0;
}

/*
 * A large message into the caller's buffer: read straight into it, so the
 * payload is copied once, by the kernel. If the deadline passes part-way,
 * what arrived moves into `big` and the next receive continues from there.
 */
static int conn_recv_large_into(mp_conn *c, struct recv_req *req, size_t hdr, size_t size,
                                int64_t deadline)
{
    size_t got = c->rlen - c->rpos - hdr;
    memcpy(req->into, c->rbuf + c->rpos + hdr, got);
    c->direct_size = size;
    c->direct_got = got;
    c->rpos = c->rlen = 0;
    while (got < size) {
        ssize_t r = mp__read_some(c->fd, req->into + got, size - got, deadline, c->is_socket);
        if (r == 0) {
            c->direct_size = c->direct_got = 0;
            return MP_ETRUNCATED;
        }
        if (r < 0) {
            c->direct_size = c->direct_got = 0;
            size_t cap = size - got < CHUNK_MIN ? size : got + CHUNK_MIN;
            c->big = malloc(cap);
            if (!c->big) {
                /* The partial message cannot be kept, and without it the
                 * stream cannot be resynchronised: stop reading, as for a
                 * message over maxlength. */
                conn_bad_message_length(c);
                return -ENOMEM;
            }
            memcpy(c->big, req->into, got);
            c->big_size = size;
            c->big_got = got;
            c->big_cap = cap;
            return (int)r;
        }
        got += (size_t)r;
        MP__ASSERT(got <= size);
        c->direct_got = got;
    }
    c->direct_size = c->direct_got = 0;
    return 0;
}

/*
 * In a forked child, read and discard the rest of the message the parent had
 * begun (skip, skip_hdr: see the file comment), so that the next frame
 * header is parsed at a frame boundary. Progress is kept across a timeout.
 */
static int conn_skip_parents_message(mp_conn *c, int64_t deadline)
{
    if (c->skip_hdr) {
        uint64_t size64;
        size_t hdr = MP__FRAME_SHORT;
        for (;;) {
            int rc = mp__frame_decode(c->rbuf + c->rpos, c->rlen - c->rpos, &size64, &hdr);
            if (rc == 1)
                break;
            if (rc < 0) {
                conn_drop_buffered(c);
                return rc; /* MP_EPROTO, as for any corrupt header */
            }
            rc = conn_fill(c, hdr, deadline); /* MP_ETRUNCATED at end of file */
            if (rc < 0)
                return rc;
        }
        size_t size = (size_t)size64;
        size_t have = c->rlen - c->rpos - hdr;
        if (size <= have) {
            c->rpos += hdr + size;
        } else {
            c->skip = size - have;
            c->rpos = c->rlen;
        }
        if (c->rpos == c->rlen)
            c->rpos = c->rlen = 0;
        c->skip_hdr = false;
    }
    /* rbuf is empty from here until the skip is done. */
    if (c->skip && !c->rbuf) {
        c->rbuf = malloc(RBUF_CAP);
        if (!c->rbuf)
            return -ENOMEM;
    }
    while (c->skip) {
        /* Without read-ahead, take nothing beyond the discarded message. */
        size_t want = !c->readahead && c->skip < RBUF_CAP ? c->skip : RBUF_CAP;
        ssize_t r = conn_read(c, c->rbuf, want, deadline); /* rbuf is empty */
        if (r == 0) {
            conn_drop_buffered(c);
            return MP_ETRUNCATED; /* the peer left in the middle of it */
        }
        if (r < 0)
            return (int)r;
        if ((size_t)r <= c->skip) {
            c->skip -= (size_t)r;
        } else {
            c->rpos = c->skip; /* what follows the message is ours */
            c->rlen = (size_t)r;
            c->skip = 0;
        }
    }
    return 0;
}

/*
 * Receive one message (rmu held). Nothing is consumed unless the message is
 * delivered, except on MP_ETOOLONG (the end becomes unreadable anyway) and on
 * end of file.
 */
static int conn_recv_locked(mp_conn *c, struct recv_req *req, int64_t deadline)
{
    if (c->skip || c->skip_hdr) {
        int rc = conn_skip_parents_message(c, deadline);
        if (rc < 0)
            return rc;
    }
    if (c->big) {
        /* A large message was interrupted by a timeout: finish it first. */
        if (req->maxlength && c->big_size > req->maxlength) {
            conn_bad_message_length(c);
            return MP_ETOOLONG;
        }
        if (req->into && c->big_size > req->room) {
            req->size = c->big_size;
            return MP_ETOOSHORT;
        }
        int rc = conn_big_finish(c, deadline);
        return rc < 0 ? rc : conn_deliver_big(c, req);
    }

    uint64_t size64 = 0;
    size_t hdr = MP__FRAME_SHORT;
    for (;;) {
        if (__builtin_expect(c->nstash != 0, 0) && mp__conn_handle_next(c))
            return mp__err(MP_EPROTO, "the next message is a handle (send_handle): receive it "
                                      "with mp_recv_handle; nothing was consumed");
        int rc =
            mp__frame_decode(c->rbuf ? c->rbuf + c->rpos : NULL, c->rlen - c->rpos, &size64, &hdr);
        if (rc == 1)
            break;
        if (rc < 0) {
            conn_drop_buffered(c);
            return rc; /* MP_EPROTO: the stream cannot be resynchronised */
        }
        rc = conn_fill(c, hdr, deadline);
        if (rc < 0)
            return rc;
    }
    size_t size = (size_t)size64;
    req->size = size;

    if (req->maxlength && size > req->maxlength) {
        conn_bad_message_length(c);
        return MP_ETOOLONG;
    }
    if (req->into && size > req->room)
        return MP_ETOOSHORT; /* header stays buffered: the next call sees it */

    if (size <= RBUF_CAP - hdr) {
        /* Small message: complete it in the read-ahead buffer. */
        int rc = conn_fill(c, hdr + size, deadline);
        if (rc < 0)
            return rc;
        const unsigned char *payload = c->rbuf + c->rpos + hdr;
        if (req->into) {
            memcpy(req->into, payload, size);
        } else {
            req->out = malloc(size ? size : 1);
            if (!req->out)
                return -ENOMEM;
            memcpy(req->out, payload, size);
        }
        c->rpos += hdr + size;
        if (c->rpos == c->rlen)
            c->rpos = c->rlen = 0;
        return 0;
    }

    if (req->into)
        return conn_recv_large_into(c, req, hdr, size, deadline);

    /* Large message into a fresh buffer: collect it in `big`, which grows
     * only as bytes arrive, then hand it over. */
    int rc = conn_big_start(c, hdr, size);
    if (rc < 0)
        return rc;
    rc = conn_big_finish(c, deadline);
    return rc < 0 ? rc : conn_deliver_big(c, req);
}

static int conn_recv(mp_conn *c, struct recv_req *req, double timeout)
{
    if (mp__bad_timeout(timeout))
        return MP_EVALUE;
    int64_t deadline = mp__deadline(timeout);
    if (__builtin_expect(c->shm != NULL, 0))
        return mp__shmc_recv(c, req->maxlength, req->into, req->room, &req->out, &req->size,
                             deadline);
    pthread_mutex_lock(&c->rmu);
    int rc;
    if (conn_load_flag(&c->closed))
        rc = MP_ECLOSED; /* closed by MP_ETOOLONG in another thread */
    else if (!conn_load_flag(&c->readable))
        rc = MP_EWRITEONLY;
    else
        rc = conn_recv_locked(c, req, deadline);
    /* Once per receive, whatever happened in it: other threads see the
     * state a receive leaves, not the steps inside one. */
    conn_publish_read_state(c);
    pthread_mutex_unlock(&c->rmu);
    return rc;
}

MP_API int mp_conn_recv_bytes(mp_conn *c, size_t maxlength, void **buf, size_t *len, double timeout)
{
    if (!buf || !len)
        return -EINVAL;
    *buf = NULL;
    *len = 0;
    int rc = conn_check_recv(c);
    if (rc < 0)
        return rc;
    struct recv_req req = {.maxlength = maxlength};
    rc = conn_recv(c, &req, timeout);
    if (rc == 0) {
        *buf = req.out;
        *len = req.size;
    }
    return rc;
}

MP_API ssize_t mp_conn_recv_bytes_into(mp_conn *c, void *buf, size_t cap, size_t offset,
                                       size_t *msg_size, double timeout)
{
    if (msg_size)
        *msg_size = 0;
    if ((!buf && cap > 0) || offset > cap)
        return -EINVAL;
    int rc = conn_check_recv(c);
    if (rc < 0)
        return rc;
    /* A NULL buffer of capacity 0 still receives "into": an empty message
     * fits, any other is MP_ETOOSHORT (into == NULL would mean "allocate"). */
    unsigned char no_room;
    struct recv_req req = {.into = buf ? (unsigned char *)buf + offset : &no_room,
                           .room = cap - offset};
    rc = conn_recv(c, &req, timeout);
    if (msg_size && (rc == 0 || rc == MP_ETOOSHORT))
        *msg_size = req.size;
    return rc == 0 ? (ssize_t)req.size : rc;
}

/* ---- values ------------------------------------------------------------------ */

MP_API int mp_conn_send(mp_conn *c, const mp_obj *obj)
{
    if (!c || !obj)
        return -EINVAL;
    unsigned char *bytes;
    size_t len;
    int rc = mp__pickle_dumps(obj, &bytes, &len);
    if (rc < 0)
        return rc;
    rc = mp_conn_send_bytes(c, bytes, len);
    free(bytes);
    return rc;
}

MP_API int mp_conn_recv(mp_conn *c, mp_obj **obj, double timeout)
{
    if (!obj)
        return -EINVAL;
    *obj = NULL;
    void *bytes;
    size_t len;
    mp__err_clear(); /* the decode below records its own why */
    int rc = mp_conn_recv_bytes(c, 0, &bytes, &len, timeout);
    if (rc < 0)
        return rc;
    rc = mp__pickle_loads(bytes, len, obj);
    free(bytes);
    return rc;
}

/* ---- polling -------------------------------------------------------------- */

MP_API size_t mp_conn_buffered(mp_conn *c)
{
    if (conn_check_recv(c) < 0)
        return 0;
    if (c->shm)
        return mp__shmc_buffered(c);
    return __atomic_load_n(&c->unread, __ATOMIC_ACQUIRE);
}

MP_API int mp_conn_poll(mp_conn *c, double timeout)
{
    mp_wait_item item = {.conn = c, .fd = -1, .ready = 0};
    int rc = conn_check_recv(c);
    return rc < 0 ? rc : (int)mp_wait(&item, 1, timeout);
}

MP_API ssize_t mp_wait(mp_wait_item *items, size_t n, double timeout)
{
    if (!items && n > 0)
        return -EINVAL;
    if (mp__bad_timeout(timeout))
        return MP_EVALUE;
    int64_t deadline = mp__deadline(timeout);

    struct pollfd stack_fds[WAIT_STACK];
    struct pollfd *fds = stack_fds;
    if (n > WAIT_STACK) {
        fds = calloc(n, sizeof *fds);
        if (!fds)
            return -ENOMEM;
    }

    int rc = 0;
    size_t buffered;
    /* A shared-memory end (shmpipe.c) is armed before the wait: its doorbell
     * is rung only for a receiver that asked. A ring after which its ring is
     * empty (an old byte) waits again; each wait is capped, so a wake-up
     * another thread took costs latency, not the whole timeout. */
    bool shm_any = false;
again:
    buffered = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        items[i].ready = 0;
        int fd = items[i].fd;
        if (items[i].conn) {
            mp_conn *c = items[i].conn;
            rc = conn_check_recv(c);
            if (rc < 0)
                break;
            fd = c->fd;
            if (__builtin_expect(c->shm != NULL, 0)) {
                shm_any = true;
                if (mp__shmc_ready(c, true)) {
                    items[i].ready = 1;
                    buffered++;
                }
            }
            /* Only a whole buffered message (or a corrupt header) is ready
             * without the descriptor; the start of a message waits for more
             * bytes as an empty buffer does. */
            else if (__atomic_load_n(&c->ready, __ATOMIC_ACQUIRE)) {
                items[i].ready = 1;
                buffered++;
            }
        } else if (fd < 0) {
            rc = -EINVAL;
            break;
        }
        fds[i].fd = fd;
        fds[i].events = POLLIN;
        fds[i].revents = 0;
    }

    if (rc == 0) {
        /* Buffered messages are ready now: only look, do not wait. */
        int64_t until = buffered ? mp__now_ns() : deadline;
        if (shm_any && !buffered) {
            int64_t cap = mp__now_ns() + INT64_C(100000000);
            if (until == MP__NO_DEADLINE || until > cap)
                until = cap;
        }
        int prc = mp__poll(fds, (nfds_t)n, until);
        if (prc < 0)
            rc = prc;
        for (size_t i = 0; i < n && rc == 0; i++) {
            short ev = fds[i].revents;
            if (ev & POLLNVAL)
                rc = -EBADF;
            else if (items[i].conn && items[i].conn->shm && !(ev & (POLLHUP | POLLERR)))
                items[i].ready |= (ev & POLLIN) && mp__shmc_ready(items[i].conn, false);
            else if (ev & (POLLIN | POLLHUP | POLLERR))
                items[i].ready = 1;
        }
        if (rc == 0)
            for (size_t i = 0; i < n; i++)
                rc += items[i].ready;
        if (rc == 0 && shm_any && !mp__deadline_passed(deadline))
            goto again;
    }
    if (rc < 0)
        for (size_t i = 0; i < n; i++)
            items[i].ready = 0;
    if (fds != stack_fds)
        free(fds);
    return rc;
}

/* ---- settings and properties ---------------------------------------------- */

MP_API int mp_conn_set_readahead(mp_conn *c, bool on)
{
    if (!c)
        return -EINVAL;
    if (conn_load_flag(&c->closed))
        return MP_ECLOSED;
    conn_fork_fixup(c);
    pthread_mutex_lock(&c->rmu);
    c->readahead = on;
    pthread_mutex_unlock(&c->rmu);
    return 0;
}

MP_API int mp_conn_fileno(const mp_conn *c)
{
    if (!c)
        return -EINVAL;
    return conn_load_flag(&c->closed) ? MP_ECLOSED : c->fd;
}

MP_API bool mp_conn_readable(const mp_conn *c)
{
    return c && conn_load_flag(&c->readable);
}

MP_API bool mp_conn_writable(const mp_conn *c)
{
    return c && c->writable;
}

MP_API bool mp_conn_closed(const mp_conn *c)
{
    return !c || conn_load_flag(&c->closed);
}

/* ---- closing -------------------------------------------------------------- */

MP_API int mp_conn_close(mp_conn *c)
{
    if (!c)
        return -EINVAL;
    conn_fork_fixup(c);
    pthread_mutex_lock(&c->rmu);
    pthread_mutex_lock(&c->wmu);
    int rc = 0;
    conn_store_flag(&c->closed, true);
    if (c->fd >= 0) {
        rc = mp__close(c->fd);
        c->fd = -1;
    }
    mp__shmc_release(c);
    conn_drop_buffered(c);
    free(c->rbuf);
    c->rbuf = NULL;
    pthread_mutex_unlock(&c->wmu);
    pthread_mutex_unlock(&c->rmu);
    return rc;
}

MP_API void mp_conn_free(mp_conn *c)
{
    if (!c)
        return;
    (void)mp_conn_close(c);
    pthread_mutex_destroy(&c->rmu);
    pthread_mutex_destroy(&c->wmu);
    free(c);
}

/* ---- raw use of the descriptor (conn_impl.h) ------------------------------- */

/* Any byte read from the descriptor and not delivered, or the rest of a
 * parent's message still to discard (rmu held). */
static bool conn_holds_bytes(const mp_conn *c)
{
    return c->rpos != c->rlen || c->big || c->direct_size || c->skip || c->skip_hdr;
}

int mp__conn_raw_begin(mp_conn *c, enum mp__conn_raw_use use, struct mp__conn_raw *out)
{
    if (!c || !out)
        return -EINVAL;
    if (conn_load_flag(&c->closed))
        return MP_ECLOSED;
    if (use == MP__CONN_RAW_SEND && !c->writable)
        return MP_EREADONLY;
    if (use == MP__CONN_RAW_RECV && !conn_load_flag(&c->readable))
        return MP_EWRITEONLY;
    if (c->shm && use != MP__CONN_RAW_HAND_OVER) /* its descriptor is only the doorbell */
        return mp__err(MP_ESTATE, "a shared-memory connection end (mp_pipe_shm) cannot be "
                                  "used raw");
    conn_fork_fixup(c);
    pthread_mutex_t *mu = use == MP__CONN_RAW_SEND ? &c->wmu : &c->rmu;
    pthread_mutex_lock(mu);
    int rc = 0;
    /* close() sets the flag under both locks: settled now. */
    if (conn_load_flag(&c->closed))
        rc = MP_ECLOSED;
    else if (use == MP__CONN_RAW_HAND_OVER && conn_holds_bytes(c))
        rc = MP_ESTATE;
    if (rc < 0) {
        pthread_mutex_unlock(mu);
        return rc;
    }
    out->fd = c->fd;
    out->is_socket = c->is_socket;
    out->readable = conn_load_flag(&c->readable);
    out->writable = c->writable;
    return 0;
}

void mp__conn_raw_end(mp_conn *c, enum mp__conn_raw_use use)
{
    pthread_mutex_unlock(use == MP__CONN_RAW_SEND ? &c->wmu : &c->rmu);
}

int mp__conn_raw_take_handle(mp_conn *c, int *fd)
{
    if (c->big || c->direct_size || c->skip || c->skip_hdr)
        return MP_ESTATE;
    if (c->rpos == c->rlen) {
        MP__ASSERT(c->nstash == 0 || c->stash[c->nstash - 1].off < mp__conn_offset_of(c, c->rpos));
        mp__conn_stash_close_all(c); /* none can be left: publish pruned them */
        return 0;
    }
    if (!mp__conn_handle_next(c))
        return MP_EPROTO;
    *fd = c->stash[0].fd;
    c->nstash--;
    memmove(c->stash, c->stash + 1, c->nstash * sizeof c->stash[0]);
    c->rpos++;
    if (c->rpos == c->rlen)
        c->rpos = c->rlen = 0;
    conn_publish_read_state(c);
    return 1;
}
