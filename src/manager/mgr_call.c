/*
 * mgr_call - one round trip of the manager's client: encode the request,
 * send it by the mailbox slot or the socket, wait for and read the reply
 * (a scalar one in place), and drain late replies. The hot path; kept
 * whole in this file so the compiler inlines it. Siblings: mgr_client.h.
 *
 * Connections. A call takes an idle connection of the handle's pool (or
 * opens one), does one round trip, and gives it back, so concurrent threads
 * never share a socket and a call that waits in the server holds only its
 * own. A connection whose call failed in transit (timeout, reset, a reply
 * that does not parse) is closed rather than reused: a late reply would
 * otherwise answer the next call - unless only the reply is late, which
 * parks the connection as stale until the reply has been drained.
 *
 * Mailboxes. A connection that claimed a slot (mgr.h, "Mailboxes") sends a
 * request that fits through the slot and waits for it there (call_slot_wait),
 * the socket serving to sleep on, for doorbells and large replies, and for
 * end of file.
 */
#include "codec/frame.h"
#include "codec/objimpl.h"
#include "codec/pickle.h"
#include "core/internal.h"
#include "core/io.h"
#include "manager/mgr.h"
#include "manager/mgr_client.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#define RBUF_MIN ((size_t)4096)
#define BUF_KEEP ((size_t)1 << 20) /* larger buffers are freed after a call */

/* ---- the request ----------------------------------------------------------------- */

void mp__mgr_encode_arg(mp__pickler *w, const struct marg *a)
{
    switch (a->t) {
    case A_OBJ:
        mp__pickler_obj(w, a->o);
        break;
    case A_INT:
        mp__pickler_int(w, a->i);
        break;
    case A_STR:
        mp__pickler_str(w, a->s, a->n);
        break;
    case A_BYTES:
        mp__pickler_bytes(w, a->s, a->n);
        break;
    case A_FLOAT:
        mp__pickler_float(w, a->f);
        break;
    case A_BOOL:
        mp__pickler_bool(w, a->i != 0);
        break;
    default:
        mp__pickler_none(w);
        break;
    }
}

/* (ident, method, args) after 4 bytes left for the frame header. */
static int call_encode(mp__pickler *w, int64_t ident, const char *method, const struct marg *a,
                       size_t n)
{
    w->len = 0;
    w->err = 0;
    if (mp__pickler_reserve(w, 4) < 0)
        return w->err;
    w->len = 4;
    mp__pickler_start(w);
    mp__pickler_int(w, ident);
    mp__pickler_str(w, method, strlen(method));
    if (n > 3)
        mp__pickler_mark(w);
    for (size_t i = 0; i < n; i++)
        mp__mgr_encode_arg(w, &a[i]);
    mp__pickler_tuple(w, n);
    mp__pickler_tuple(w, 3);
    mp__pickler_stop(w);
    return w->err;
}

/* A transport failure: the peer is gone (or never was). */
static int call_gone(int rc)
{
    if (rc == 0 || rc == -ECONNRESET || rc == -EPIPE || rc == MP_EOF || rc == MP_ETRUNCATED ||
        rc == -ENOTCONN || rc == -ECONNABORTED)
        return MP_ENOSERVER;
    return rc;
}

/* ---- waiting on the socket ------------------------------------------------------- */

/* A reply that comes at once is caught without sleeping (see mgr.h,
 * "Spinning"): returns what the first successful receive returned, or
 * -EAGAIN when nothing came within the spin (or this call does not spin). */
static ssize_t call_spin_for_reply(struct mconn *c, double wait)
{
    c->calls++;
    if (wait != 0 || (c->spin_misses >= MP__MGR_SPIN_MISSES && c->calls % MP__MGR_SPIN_RETRY))
        return -EAGAIN; /* it waits in the server, or spinning has not paid lately */
    int64_t until = mp__now_ns() + MP__MGR_CLIENT_SPIN_NS;
    do {
        ssize_t r = mp__recv_nowait(c->fd, c->rbuf, c->rcap);
        if (r != -EAGAIN) {
            c->spin_misses = 0;
            return r;
        }
    } while (mp__now_ns() < until);
    if (c->spin_misses < MP__MGR_SPIN_MISSES)
        c->spin_misses++;
    return -EAGAIN;
}

/*
 * Wait for the first bytes of a reply: one blocking recv() bounded by
 * SO_RCVTIMEO rather than a poll() and a recv(). The socket's timeout is
 * set only when this call needs a shorter one than is set (or has none set
 * at all): a longer call that sees it run out just waits on the poll way.
 */
static ssize_t call_wait_for_reply(struct mconn *c, int64_t rel, int64_t deadline)
{
    /* No deadline: any bound will do (it only makes us look again). */
    bool fits = rel == 0 || (c->rcvtimeo != 0 && c->rcvtimeo <= rel && c->rcvtimeo >= rel / 2);
    if (!fits && mp__set_recv_timeout(c->fd, rel) == 0) {
        c->rcvtimeo = rel;
        fits = true;
    }
    ssize_t r = fits ? mp__recv_once(c->fd, c->rbuf, c->rcap) : -EINTR;
    if (r == MP_ETIMEDOUT && !mp__deadline_passed(deadline))
        r = -EINTR;  /* the socket's bound was shorter than ours */
    if (r == -EINTR) /* a signal, a shorter bound, or none set: the poll way */
        r = mp__read_some(c->fd, c->rbuf, c->rcap, deadline, true);
    return r;
}

/*
 * Read into rbuf + off for what is left of a call's wait (rel 0: no limit):
 * a wait that follows some looking at the slot, or a sleep that follows a
 * doorbell meant for an earlier reply, must not start the whole timeout
 * over. Once the deadline has passed, one look without waiting.
 */
static ssize_t call_recv_until(struct mconn *c, size_t off, int64_t rel, int64_t deadline)
{
    int64_t left = 0;
    if (rel) {
        left = deadline - mp__now_ns();
        if (left <= 0) {
            ssize_t r = mp__recv_nowait(c->fd, c->rbuf + off, c->rcap - off);
            return r == -EAGAIN ? MP_ETIMEDOUT : r;
        }
    }
    if (off == 0)
        return call_wait_for_reply(c, left, deadline);
    return mp__read_some(c->fd, c->rbuf + off, c->rcap - off, deadline, true);
}

/* ---- reading the reply ----------------------------------------------------------- */

/* Interpret one reply pickle (see docs/manager.md, "Replies"). */
static int call_parse_reply(const unsigned char *p, size_t n, mp_obj **result, int *fate)
{
    mp_obj *reply = NULL;
    int rc = mp__pickle_loads(p, n, &reply);
    if (rc < 0)
        return rc == -ENOMEM ? rc : MP_EPROTO;
    const char *kind;
    size_t klen;
    ssize_t rn = mp_obj_len(reply);
    rc = MP_EPROTO; /* a reply we cannot read: this end is out of step */
    if (mp_obj_type(reply) == MP_TYPE_TUPLE && rn >= 2 &&
        mp_obj_get_str(mp_obj_list_get(reply, 0), &kind, &klen) == 0) {
        if (klen == 7 && memcmp(kind, "#RETURN", 7) == 0 && rn == 2) {
            if (result)
                *result = mp__seq_take(reply, 1);
            *fate = F_REUSE;
            rc = 0;
        } else if (klen == 6 && memcmp(kind, "#ERROR", 6) == 0) {
            int64_t code;
            if (mp_obj_get_int(mp_obj_list_get(reply, 1), &code) == 0 && code < 0 &&
                code > INT32_MIN) {
                *fate = F_REUSE;
                rc = (int)code;
                /* The server's words ("KeyError: 'count'") are the why. */
                const char *text;
                size_t tlen;
                if (rn >= 3 && mp_obj_get_str(mp_obj_list_get(reply, 2), &text, &tlen) == 0)
                    mp__err(rc, "%.*s", (int)(tlen > INT_MAX ? INT_MAX : tlen), text);
            }
        }
    }
    mp_obj_free(reply);
    return rc;
}

/*
 * Recognise exactly what the server's pickler writes for ('#RETURN', x)
 * with x None, a bool or an int (docs/wire.md; no memo, no FRAME):
 * PROTO 4, SHORT_BINUNICODE "#RETURN", one of N / NEWTRUE / NEWFALSE /
 * BININT1 / BININT2 / BININT / LONG1 (up to 8 bytes), TUPLE2, STOP - and
 * nothing else. Anything different (an error reply, another value, other
 * encodings) is left to the general decoder, so this can only be faster,
 * never different.
 */
static bool call_scalar_reply(const unsigned char *p, size_t n, struct scalar *sc)
{
    static const unsigned char head[] = {
        MP__OP_PROTO, 4, MP__OP_SHORT_BINUNICODE, 7, '#', 'R', 'E', 'T', 'U', 'R', 'N'};
    const size_t h = sizeof head;
    if (n < h + 3 || memcmp(p, head, h) != 0 || p[n - 2] != MP__OP_TUPLE2 ||
        p[n - 1] != MP__OP_STOP)
        return false;
    size_t k = n - h - 2; /* the value's bytes */
    struct mp__pickle_scalar v;
    if (mp__pickle_read_scalar(p + h, k, &v) != k)
        return false;
    int kind = v.kind == MP__PK_NONE   ? SC_NONE
               : v.kind == MP__PK_BOOL ? SC_BOOL
               : v.kind == MP__PK_INT  ? SC_INT
                                       : 0;
    if (!kind)
        return false; /* a float, str or bytes: the general path */
    if (sc) {
        sc->kind = kind;
        sc->v = kind == SC_NONE ? 0 : v.i;
    }
    return true;
}

/* The end of a round trip: a scalar reply the caller only needs as a
 * scalar (or not at all) is read in place; anything else is decoded. */
static int call_finish_reply(const unsigned char *p, size_t n, mp_obj **result, struct scalar *sc,
                             int *fate)
{
    if ((sc || !result) && call_scalar_reply(p, n, sc)) {
        *fate = F_REUSE;
        return 0;
    }
    return call_parse_reply(p, n, result, fate);
}

/* Drop the doorbells (frames of length 0, mgr.h "Mailboxes") at the head of
 * the n bytes in p; returns how many bytes are left. */
static size_t call_skip_doorbells(unsigned char *p, size_t n)
{
    size_t off = 0;
    while (n - off >= MP__FRAME_SHORT && mp__frame_word(p + off) == 0)
        off += MP__FRAME_SHORT;
    if (off)
        memmove(p, p + off, n - off);
    return n - off;
}

static int call_grow_rbuf(struct mconn *c, size_t cap)
{
    if (c->rcap >= cap)
        return 0;
    unsigned char *p = realloc(c->rbuf, cap);
    if (!p)
        return -ENOMEM;
    c->rbuf = p;
    c->rcap = cap;
    return 0;
}

/* ---- the mailbox ------------------------------------------------------------------- */

/* Publish request seq in the slot, then wake the server if it sleeps. */
static int call_slot_send(mp_manager *m, struct mconn *c, size_t size)
{
    struct mp__mgr_slot *sl = c->slot;
    MP__ASSERT(!c->slot_owed && c->seq < UINT64_MAX >> 2); /* the last reply came */
    memcpy(sl->data, c->w.p + 4, size);
    sl->len = (uint32_t)size;
    c->seq++;
    /* Sequentially consistent store, then load: either the server sees
     * the request when it looks once more before sleeping, or this sees
     * that it sleeps (mgr.h, "Mailboxes"). */
    __atomic_store_n(&sl->state, c->seq << 2 | MP__MGR_SLOT_REQ, __ATOMIC_SEQ_CST);
    uint32_t *ss = &m->arena->ssleep;
    if (__atomic_load_n(ss, __ATOMIC_SEQ_CST) && __atomic_exchange_n(ss, 0, __ATOMIC_SEQ_CST)) {
        static const unsigned char bell[MP__FRAME_SHORT];
        struct iovec iov = {(void *)bell, sizeof bell};
        return mp__write_all(c->fd, &iov, 1, true, false);
    }
    return 0;
}

/*
 * The looking half of call_slot_wait: look at the slot until the reply to
 * request seq is there (1 with *st its state), the look's time is up, or
 * the server parked the request (0).
 *
 * The looking yields the CPU between two looks (mgr.h, "Spinning"): where
 * the server shares this CPU it then runs at once, and where it has a CPU
 * of its own a yield with nobody else to run costs well under a
 * microsecond. First, though, it looks without yielding: when the server
 * has a CPU of its own, the reply comes within a microsecond or two. When
 * that whole look passes without it (the server shares this CPU, or is
 * busy with others), looking in place only kept the server off the CPU:
 * yield from the start for the next PAUSE_RETRY calls.
 */
static int call_slot_look(struct mconn *c, double wait, int64_t deadline, uint64_t *st)
{
    struct mp__mgr_slot *sl = c->slot;
    const uint64_t rep = c->seq << 2 | MP__MGR_SLOT_REP;
    const uint64_t rep_sock = c->seq << 2 | MP__MGR_SLOT_REP_SOCK;
    c->calls++;
    int64_t budget = wait != 0 ? MP__MGR_CLIENT_WAIT_SPIN_NS : MP__MGR_CLIENT_SPIN_NS;
    if (c->spin_misses >= MP__MGR_SPIN_MISSES && c->calls % MP__MGR_SPIN_RETRY)
        budget = 0; /* spinning has not paid lately */
    int64_t t0 = mp__now_ns();
    int64_t until = t0 + budget;
    if (deadline != MP__NO_DEADLINE && deadline < until)
        until = deadline;
    if (wait == 0 && budget) {
        if (c->pause_skip) {
            c->pause_skip--;
        } else {
            int64_t pend = t0 + MP__MGR_CLIENT_PAUSE_NS;
            if (pend > until)
                pend = until;
            for (int64_t t = t0; t < pend; t = mp__now_ns()) {
                for (int k = 0; k < 16; k++) {
                    *st = __atomic_load_n(&sl->state, __ATOMIC_ACQUIRE);
                    if (*st == rep || *st == rep_sock) {
                        c->spin_misses = 0;
                        return 1;
                    }
                    mp__mgr_relax();
                }
            }
            c->pause_skip = MP__MGR_PAUSE_RETRY;
        }
    }
    for (;;) {
        *st = __atomic_load_n(&sl->state, __ATOMIC_ACQUIRE);
        if (*st == rep || *st == rep_sock) {
            if (wait == 0)
                c->spin_misses = 0;
            return 1;
        }
        if (mp__now_ns() >= until || __atomic_load_n(&sl->parked, __ATOMIC_ACQUIRE) == c->seq)
            break; /* it has waited long enough, or it waits in the server */
        sched_yield();
    }
    /* Only calls the server answers at once count: a lock or a queue that
     * makes its caller wait says nothing about the server. */
    if (budget && wait == 0 && c->spin_misses < MP__MGR_SPIN_MISSES)
        c->spin_misses++;
    return 0;
}

/*
 * The sleeping half of call_slot_wait: sleep on the socket until a doorbell,
 * the reply frame itself, the end of file or the deadline; after each
 * doorbell look at the slot again. Returns as call_slot_wait does.
 */
static int call_slot_sleep(struct mconn *c, int64_t rel, int64_t deadline, size_t *got)
{
    struct mp__mgr_slot *sl = c->slot;
    const uint64_t rep = c->seq << 2 | MP__MGR_SLOT_REP;
    const uint64_t rep_sock = c->seq << 2 | MP__MGR_SLOT_REP_SOCK;
    if (call_grow_rbuf(c, RBUF_MIN) < 0)
        return -ENOMEM;
    size_t n = 0;
    for (;;) {
        if (n == 0) {
            __atomic_store_n(&sl->csleep, 1, __ATOMIC_SEQ_CST);
            uint64_t st = __atomic_load_n(&sl->state, __ATOMIC_SEQ_CST);
            if (st == rep || st == rep_sock) {
                __atomic_store_n(&sl->csleep, 0, __ATOMIC_RELAXED);
                *got = 0;
                return st == rep ? 0 : 1;
            }
        }
        ssize_t r = call_recv_until(c, n, rel, deadline);
        __atomic_store_n(&sl->csleep, 0, __ATOMIC_RELAXED);
        if (r == MP_ETIMEDOUT) {
            /* Still owed: by the slot, or (bytes of a frame came) by the
             * socket, which mp__mgr_call_drain then reads on. */
            c->slot_owed = n == 0;
            c->shdr = false;
            c->sgot = n;
            c->sleft = 0;
            return MP_ETIMEDOUT;
        }
        if (r == 0)
            return MP_ENOSERVER;
        if (r < 0)
            return call_gone((int)r);
        n = call_skip_doorbells(c->rbuf, n + (size_t)r);
        if (n >= MP__FRAME_SHORT) {
            *got = n; /* the start of a frame: the reply, by the socket */
            return 1;
        }
        /* n is 0 (only doorbells: look at the slot again) or 1 to 3 (the
         * rest of a header is on its way). */
    }
}

/*
 * Wait for the reply to the request just published in the slot: look at the
 * slot for a moment (the server is usually awake and quick), then sleep on
 * the socket. Returns 0 when the reply is in the slot, 1 when it comes by
 * the socket (*got bytes of it are already in rbuf), or a status code; on
 * MP_ETIMEDOUT the connection's stale fields say what is still owed.
 */
static int call_slot_wait(struct mconn *c, double wait, int64_t rel, int64_t deadline, size_t *got)
{
    MP__ASSERT(c->seq != 0); /* a request was published */
    uint64_t st;
    if (call_slot_look(c, wait, deadline, &st)) {
        *got = 0;
        return st == (c->seq << 2 | MP__MGR_SLOT_REP) ? 0 : 1;
    }
    return call_slot_sleep(c, rel, deadline, got);
}

/* The reply the server left in the slot: a private copy (other processes
 * can write the block), then read. */
static int call_slot_reply(struct mconn *c, mp_obj **result, struct scalar *sc, int *fate)
{
    uint32_t len = __atomic_load_n(&c->slot->len, __ATOMIC_RELAXED);
    if (len > MP__MGR_SLOT_DATA)
        return MP_EPROTO;
    if (call_grow_rbuf(c, RBUF_MIN) < 0)
        return -ENOMEM;
    memcpy(c->rbuf, c->slot->data, len);
    return call_finish_reply(c->rbuf, len, result, sc, fate);
}

/* ---- the round trip ----------------------------------------------------------------- */

/*
 * Read the one reply frame, got bytes of which are in rbuf already, growing
 * the buffer only as bytes arrive. On success *hdr and *plen say where its
 * pickle is. A timeout parks the connection (*fate F_STALE) with what is
 * still owed.
 */
static int call_read_frame(mp_manager *m, struct mconn *c, size_t got, bool by_slot, double wait,
                           int64_t rel, int64_t deadline, size_t *hdr, uint64_t *plen, int *fate)
{
    size_t need = MP__FRAME_SHORT;
    bool have_header = false;
    for (;;) {
        if (!have_header && got >= need) {
            int fr = mp__frame_decode(c->rbuf, got, plen, hdr);
            if (fr < 0)
                return MP_EPROTO;
            if (fr == 1 && *plen == 0 && c->slot) {
                got = call_skip_doorbells(c->rbuf, got); /* left from an earlier call */
                need = MP__FRAME_SHORT;
                continue;
            }
            if (fr == 1) {
                if (*plen > m->max_reply)
                    return MP_ETOOLONG;
                have_header = true;
                need = *hdr + (size_t)*plen;
            } else {
                need = *hdr;
            }
        }
        if (have_header && got >= need)
            break;
        if (got == c->rcap) {
            size_t cap = c->rcap ? c->rcap * 2 : RBUF_MIN;
            if (have_header && cap > need)
                cap = need;
            if (call_grow_rbuf(c, cap) < 0)
                return -ENOMEM;
        }
        ssize_t r;
        if (got == 0 && !by_slot) {
            r = call_spin_for_reply(c, wait);
            if (r == -EAGAIN)
                r = call_wait_for_reply(c, rel, deadline);
        } else if (got == 0) {
            r = call_recv_until(c, 0, rel, deadline); /* REP_SOCK, after a look at the slot */
        } else {
            r = mp__read_some(c->fd, c->rbuf + got, c->rcap - got, deadline, true);
        }
        if (r == 0)
            return MP_ENOSERVER;
        if (r == MP_ETIMEDOUT) {
            /* Keep the connection: the server may only be slow, and if it
             * is this process's last connection, closing it would tell
             * the server that the process is gone. */
            c->shdr = have_header;
            c->sgot = have_header ? 0 : got;
            c->sleft = have_header ? need - got : 0;
            *fate = F_STALE;
            return MP_ETIMEDOUT;
        }
        if (r < 0)
            return call_gone((int)r);
        got += (size_t)r;
    }
    if (got != need)
        return MP_EPROTO; /* bytes beyond the one reply: out of step */
    return 0;
}

/* The request (encoded in c->w) by the socket: one write. */
static int call_sock_send(struct mconn *c)
{
    struct iovec iov = {c->w.p, c->w.len};
    int rc = mp__write_all(c->fd, &iov, 1, true, false);
    if (c->w.cap > BUF_KEEP) {
        free(c->w.p);
        c->w.p = NULL;
        c->w.cap = 0;
    }
    c->w.len = 0;
    return rc < 0 ? call_gone(rc) : 0;
}

/* The reply may take the operation's own wait plus the call timeout: the
 * bound in ns (0: no limit). */
static int64_t call_bound(const mp_manager *m, double wait)
{
    int64_t tns = __atomic_load_n(&m->timeout_ns, __ATOMIC_RELAXED);
    int64_t rel = 0;
    if (tns >= 0 && !(wait < 0 || isnan(wait))) {
        int64_t w = client_seconds_to_ns(wait);
        rel = w < 0 ? 0 : w + tns;
        if (rel == 0)
            rel = 1;
    }
    return rel;
}

int mp__mgr_call_roundtrip(mp_manager *m, struct mconn *c, int64_t ident, const char *method,
                           const struct marg *a, size_t n, double wait, mp_obj **result,
                           struct scalar *sc, int *fate)
{
    MP__ASSERT(c->state == MCONN_BUSY && !c->slot_owed && c->sleft == 0); /* in step */
    *fate = F_REUSE;
    int rc = call_encode(&c->w, ident, method, a, n);
    if (rc < 0)
        return rc;
    size_t size = c->w.len - 4;
    if (size > __atomic_load_n(&m->server_max, __ATOMIC_RELAXED))
        return MP_ETOOLONG; /* checked here, so the connection stays usable */
    mp__frame_put_short(c->w.p, (uint32_t)size);
    int64_t rel = call_bound(m, wait);
    int64_t deadline = rel ? mp__now_ns() + rel : MP__NO_DEADLINE;

    *fate = F_DEAD;
    size_t got = 0;
    bool by_slot = c->slot && size <= MP__MGR_SLOT_DATA;
    if (by_slot) {
        rc = call_slot_send(m, c, size);
        c->w.len = 0;
        if (rc < 0)
            return call_gone(rc);
        rc = call_slot_wait(c, wait, rel, deadline, &got);
        if (rc == MP_ETIMEDOUT)
            *fate = F_STALE;
        if (rc == 0)
            return call_slot_reply(c, result, sc, fate);
    } else {
        rc = call_sock_send(c);
    }
    if (rc < 0)
        return rc;

    size_t hdr = 0;
    uint64_t plen = 0;
    rc = call_read_frame(m, c, got, by_slot, wait, rel, deadline, &hdr, &plen, fate);
    if (rc < 0)
        return rc;
    rc = call_finish_reply(c->rbuf + hdr, (size_t)plen, result, sc, fate);
    if (c->rcap > BUF_KEEP) {
        free(c->rbuf);
        c->rbuf = NULL;
        c->rcap = 0;
    }
    return rc;
}

int mp__mgr_call_drain(struct mconn *c)
{
    MP__ASSERT(c->state == MCONN_BUSY);
    if (c->slot_owed) {
        MP__ASSERT(c->slot && c->seq != 0);
        uint64_t st = __atomic_load_n(&c->slot->state, __ATOMIC_ACQUIRE);
        if (st == (c->seq << 2 | MP__MGR_SLOT_REP)) {
            c->slot_owed = false;
            return 1;
        }
        if (st != (c->seq << 2 | MP__MGR_SLOT_REP_SOCK))
            return 0;
        c->slot_owed = false; /* the reply frame comes by the socket */
        c->sgot = 0;
        c->shdr = false;
        c->sleft = 0;
    }
    for (;;) {
        if (!c->shdr && c->sgot >= MP__FRAME_SHORT) {
            uint64_t plen;
            size_t hdr;
            int fr = mp__frame_decode(c->rbuf, c->sgot, &plen, &hdr);
            if (fr < 0)
                return -1;
            if (fr == 1 && plen == 0 && c->slot) {
                c->sgot = call_skip_doorbells(c->rbuf, c->sgot);
                continue;
            }
            if (fr == 1) {
                if (plen > UINT64_MAX - hdr || c->sgot > hdr + plen)
                    return -1;
                c->shdr = true;
                c->sleft = hdr + plen - c->sgot;
            }
        }
        if (c->shdr && c->sleft == 0)
            return 1;
        size_t room = c->shdr ? c->rcap : c->rcap - c->sgot;
        if (c->shdr && room > c->sleft)
            room = (size_t)c->sleft;
        if (room == 0)
            return -1; /* a header that does not fit 4 KiB: not ours */
        ssize_t r = mp__recv_nowait(c->fd, c->rbuf + (c->shdr ? 0 : c->sgot), room);
        if (r == -EAGAIN)
            return 0;
        if (r <= 0)
            return -1;
        if (c->shdr)
            c->sleft -= (uint64_t)r;
        else
            c->sgot += (size_t)r;
    }
}

/* ---- calls ---------------------------------------------------------------------------- */

/* A call's view of a failure to open a connection. */
static int call_open_failure(int rc)
{
    switch (rc) {
    case MP_EAUTH:
    case MP_ETIMEDOUT:
    case -ENOMEM:
    case -EINVAL:
    case -EMFILE:
    case -ENFILE:
    case MP_EPROTO:
        return rc;
    default:
        return MP_ENOSERVER; /* refused, no such socket, hung up */
    }
}

/* One call on a connection of the pool (mp__mgr_call), inlined into the
 * proxies' calls, the hot path. */
static inline int call_on_pool(mp_manager *m, int64_t ident, const char *method,
                               const struct marg *a, size_t n, double wait, mp_obj **result,
                               struct scalar *sc, bool even_closed)
{
    if (result)
        *result = NULL;
    if (sc)
        sc->kind = 0;
    if (!even_closed && client_is_closed(m))
        return MP_ECLOSED;
    mp__err_clear(); /* a failure below records its own why, or none */
    struct mconn *c;
    int rc = connpool_get(m, &c);
    if (rc < 0)
        return call_open_failure(rc);
    int fate;
    rc = mp__mgr_call_roundtrip(m, c, ident, method, a, n, wait, result, sc, &fate);
    if (fate == F_DEAD)
        mp__mgr_connpool_drop(m, c);
    else if (fate == F_STALE)
        mp__mgr_connpool_park(m, c);
    else
        connpool_put(m, c);
    return rc;
}

int mp__mgr_call(mp_manager *m, int64_t ident, const char *method, const struct marg *a, size_t n,
                 double wait, mp_obj **result, struct scalar *sc, bool even_closed)
{
    if (m->py) { /* CPython's server: mgr_client_py.c translates */
        if (result)
            *result = NULL;
        if (sc)
            sc->kind = 0;
        if (!even_closed && client_is_closed(m))
            return MP_ECLOSED;
        mp__err_clear();
        return mp__mgr_py_call(m, method, a, n, result);
    }
    return call_on_pool(m, ident, method, a, n, wait, result, sc, even_closed);
}

int mp__mgr_call_proxy(struct proxy *p, const char *method, const struct marg *a, size_t n,
                       double wait, mp_obj **result, struct scalar *sc)
{
    if (result)
        *result = NULL;
    if (sc)
        sc->kind = 0;
    unsigned g = mp__forkgen();
    if (__atomic_load_n(&p->gen, __ATOMIC_ACQUIRE) != g) {
        struct marg id[1] = {ARG_INT(p->id)};
        int rc = mp__mgr_call(p->m, 0, "incref", id, 1, 0, NULL, NULL, false);
        if (rc < 0)
            return rc;
        __atomic_store_n(&p->gen, g, __ATOMIC_RELEASE);
    }
    if (p->m->py) {
        mp__err_clear();
        return mp__mgr_py_call_proxy(p, method, a, n, wait, result);
    }
    return call_on_pool(p->m, p->id, method, a, n, wait, result, sc, false);
}
