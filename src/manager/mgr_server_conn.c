/*
 * mgr_server_conn - the manager server's connection I/O: reading request
 * frames, handling them in order, sending replies, mailbox slots, and
 * large requests handed to the helper thread. Static functions: conn_.
 *
 * Connections. A descriptor is read and written without blocking (the
 * MSG_DONTWAIT helpers of io.c). Requests on one connection are handled
 * strictly in order, one at a time: the next is looked at only when the
 * previous one's reply has gone to the kernel and it is not waiting. This
 * is also the back-pressure: a client that sends without reading stops
 * being read once 64 KiB of its requests are buffered.
 *
 * Mailboxes. A connection of a started manager's client may hold a slot
 * of shared memory (mgr.h, "Mailboxes"); a request found there is handled
 * exactly like one read from the socket - in order, one at a time - and
 * its reply goes back into the slot (conn_slot_deliver) when it fits. The
 * loop looks at the slots as it spins, and raises its ssleep flag before
 * it sleeps in poll(), so a client rings its doorbell only when needed.
 *
 * Large messages (mgr.h). A request frame over 64 KiB is buffered only
 * within the server's budget for messages in flight, and decoded - and,
 * once handled, freed - by a helper thread (mgr_worker.c), so that one
 * client's 64 MiB request holds up nobody: the loop hands the buffer over
 * and runs the decoded request when it comes back. Replies are encoded
 * first and checked (size, budget) before a method removes or replaces
 * anything, so an error reply never loses an item.
 */
#include "core/io.h"
#include "manager/mgr_server.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* ---- output ------------------------------------------------------------------ */

/* Send what is pending without blocking. A failure marks the connection
 * broken; it is torn down later at a safe point. */
void mp__mgr_conn_flush(struct sconn *c)
{
    if (c->srv->probe)
        return; /* the caller takes the bytes */
    while (!c->broken && c->out_pos < c->out.len) {
        ssize_t w = mp__send_nowait(c->fd, c->out.p + c->out_pos, c->out.len - c->out_pos);
        if (w == -EAGAIN)
            return;
        if (w < 0) {
            c->broken = true;
            c->hung_up = w == -EPIPE || w == -ECONNRESET;
            return;
        }
        c->out_pos += (size_t)w;
    }
    if (c->broken)
        return;
    c->out_pos = c->out.len = 0;
    if (c->out.cap > MP__MGR_OUT_KEEP) {
        free(c->out.p);
        c->out.p = NULL;
        c->out.cap = 0;
    }
    mp__mgr_budget_give(c->srv, &c->out_charge);
    if (c->closing)
        c->broken = true; /* the fatal error reply has left: hang up */
}

/* ---- mailboxes ---------------------------------------------------------------- */

/*
 * The reply to a request that came through the slot is complete in c->out
 * (one frame, nothing else pending): move it into the slot, or, when it does
 * not fit, tell the client it comes by the socket. Then ring the client's
 * doorbell if it sleeps on the socket (a REP_SOCK frame wakes it by
 * itself; a doorbell behind it would look like bytes beyond the reply).
 */
static void conn_slot_deliver(struct sconn *c)
{
    MP__ASSERT(c->via_slot && c->slot);
    c->via_slot = false;
    if (c->broken)
        return;
    struct mp__mgr_slot *sl = c->slot;
    size_t flen = c->out.len - c->out_pos;
    uint64_t kind = MP__MGR_SLOT_REP_SOCK;
    if (c->out_pos == 0 && flen >= 4 && flen - 4 <= MP__MGR_SLOT_DATA) {
        memcpy(sl->data, c->out.p + 4, flen - 4);
        sl->len = (uint32_t)(flen - 4);
        c->out.len = 0;
        kind = MP__MGR_SLOT_REP;
    }
    /* Sequentially consistent store, then load (mgr.h, "Mailboxes"). */
    __atomic_store_n(&sl->state, c->slot_seq << 2 | kind, __ATOMIC_SEQ_CST);
    if (kind == MP__MGR_SLOT_REP && __atomic_load_n(&sl->csleep, __ATOMIC_SEQ_CST) &&
        __atomic_exchange_n(&sl->csleep, 0, __ATOMIC_SEQ_CST)) {
        if (mp__pickler_reserve(&c->out, 4) == 0) {
            memset(c->out.p + c->out.len, 0, 4);
            c->out.len += 4;
        } else {
            c->broken = true; /* it would sleep until its deadline */
        }
    }
}

void mp__mgr_reply_done(struct sconn *c)
{
    if (c->via_slot && !c->waiter)
        conn_slot_deliver(c);
    mp__mgr_conn_flush(c);
}

void mp__mgr_after_reply(struct server *s)
{
    struct sobj *o = s->grant;
    s->grant = NULL;
    if (o)
        mp__mgr_lock_grant_next(s, o);
}

/*
 * A request of c's is answered: send its reply, and hand a lock it released
 * to the next waiter (mp__mgr_after_reply). In which order? A reply into a
 * mailbox slot costs a store, so it goes first: the releaser is not kept
 * waiting for the waiter's wake-up. A reply over the socket costs a send()
 * and the releaser's wake-up, so the grant goes first: the next holder is
 * who every other waiter waits for (W6 by Python clients: acquire, get,
 * set, release), while the releaser is outside the lock.
 */
static void conn_answered(struct server *s, struct sconn *c)
{
    if (c->via_slot) {
        mp__mgr_reply_done(c);
        mp__mgr_after_reply(s);
    } else {
        mp__mgr_after_reply(s);
        mp__mgr_reply_done(c);
    }
}

/* Is a new request waiting in c's slot? Its state word in *state if so. */
static bool conn_slot_request(const struct sconn *c, uint64_t *state)
{
    if (!c->slot)
        return false;
    /* Sequentially consistent: it pairs with the client's store (mgr.h);
     * and so at least an acquire, which the slot's data and len need. */
    uint64_t st = __atomic_load_n(&c->slot->state, __ATOMIC_SEQ_CST);
    *state = st;
    return (st & 3) == MP__MGR_SLOT_REQ && st >> 2 != c->slot_seq;
}

/* Handle the request whose state conn_slot_request read. */
static void conn_slot_take(struct server *s, struct sconn *c, uint64_t st)
{
    MP__ASSERT((st & 3) == MP__MGR_SLOT_REQ && st >> 2 != c->slot_seq);
    struct mp__mgr_slot *sl = c->slot;
    uint32_t len = sl->len;
    c->slot_seq = st >> 2;
    c->via_slot = true;
    if (len > MP__MGR_SLOT_DATA) {
        mp__mgr_reply_error(c, MP_EPROTO, "corrupt mailbox length");
    } else {
        /* A private copy: the block is writable by every client process. */
        memcpy(s->slot_copy, sl->data, len);
        mp__mgr_handle_request(s, c, s->slot_copy, len);
    }
    conn_answered(s, c);
}

bool mp__mgr_conn_ready(const struct server *s, const struct sconn *c)
{
    return !c->broken && !c->closing && !c->waiter && !c->job && mp__mgr_conn_idle_output(c) &&
           !s->stop;
}

/* A request waits in the slot of a connection that can take it. */
bool mp__mgr_slots_pending(const struct server *s)
{
    uint64_t st;
    for (size_t i = 0; i < s->nconns; i++) {
        const struct sconn *c = s->conns[i];
        if (c->slot && mp__mgr_conn_ready(s, c) && conn_slot_request(c, &st))
            return true;
    }
    return false;
}

/* ---- input --------------------------------------------------------------------- */

/* Set the input buffer's capacity, charging what exceeds IN_KEEP (mgr.h,
 * "Large requests"). Returns 0, -EAGAIN when the budget cannot take it (the
 * buffer is unchanged), -ENOMEM. */
static int conn_in_resize(struct server *s, struct sconn *c, size_t cap)
{
    size_t charge = cap > MP__MGR_IN_KEEP ? cap : 0;
    if (charge > c->in_charge && !mp__mgr_budget_take(s, charge - c->in_charge))
        return -EAGAIN;
    unsigned char *p = cap ? realloc(c->in, cap) : NULL;
    if (cap && !p) {
        if (charge > c->in_charge)
            mp__mgr_budget_return(s, charge - c->in_charge);
        return -ENOMEM;
    }
    if (!cap)
        free(c->in);
    if (charge < c->in_charge)
        mp__mgr_budget_return(s, c->in_charge - charge);
    c->in = p;
    c->in_cap = cap;
    c->in_charge = charge;
    return 0;
}

/* How large the input buffer may grow now: to hold the frame at in_pos
 * when that is a large request within the request limit, else IN_KEEP. */
static size_t conn_in_want(const struct server *s, const struct sconn *c)
{
    uint64_t size;
    size_t hdr, avail = c->in_len - c->in_pos;
    if (c->owed)
        return MP__MGR_IN_KEEP; /* the dropped request's reply goes first */
    int rc = mp__frame_decode(avail ? c->in + c->in_pos : NULL, avail, &size, &hdr);
    if (rc != 1 || size > s->max_request || hdr + size <= MP__MGR_IN_KEEP)
        return MP__MGR_IN_KEEP;
    return hdr + (size_t)size;
}

/* The budget cannot hold the large request arriving at in_pos: drop what
 * is buffered of it and what is still to come, and owe its sender an
 * error reply in its place. */
static void conn_in_drop(struct server *s, struct sconn *c)
{
    uint64_t size;
    size_t hdr;
    (void)mp__frame_decode(c->in + c->in_pos, c->in_len - c->in_pos, &size, &hdr);
    c->skip = hdr + size - (c->in_len - c->in_pos);
    c->in_pos = c->in_len = 0;
    (void)conn_in_resize(s, c, 0);
    c->owed = -EAGAIN;
}

/* Make room in the input buffer: reuse what was handled, then grow it
 * within what conn_in_want allows. Returns 1 with room, 0 when it is full
 * (what is there is handled first), -1 when the connection broke. */
static int conn_in_room(struct server *s, struct sconn *c)
{
    for (;;) {
        if (c->skip) { /* the rest of a dropped request */
            size_t d = c->in_len - c->in_pos;
            if (d > c->skip)
                d = (size_t)c->skip;
            c->in_pos += d;
            c->skip -= d;
        }
        if (c->in_pos > 0 && c->in_pos == c->in_len)
            c->in_pos = c->in_len = 0;
        if (c->in_len == c->in_cap && c->in_pos > 0) {
            memmove(c->in, c->in + c->in_pos, c->in_len - c->in_pos);
            c->in_len -= c->in_pos;
            c->in_pos = 0;
        }
        if (c->in_len < c->in_cap)
            return 1;
        size_t want = c->skip ? MP__MGR_IN_KEEP : conn_in_want(s, c);
        if (c->in_cap >= want)
            return 0;
        size_t cap = c->in_cap ? c->in_cap * 2 : MP__MGR_IN_MIN;
        if (cap > want)
            cap = want;
        int rc = conn_in_resize(s, c, cap);
        if (rc == -EAGAIN) {
            conn_in_drop(s, c);
            continue;
        }
        if (rc < 0) {
            c->broken = true;
            return -1;
        }
        return 1;
    }
}

/* Take the bytes c peeked out of its socket (they are in its buffer). */
static void conn_discard_peeked(struct sconn *c)
{
    if (c->peeked && mp__discard_nowait(c->fd, c->peeked) < 0)
        c->broken = true; /* cannot be: nobody else reads this socket */
    c->peeked = 0;
}

void mp__mgr_conn_take_peeked(struct sconn *c)
{
    if (c->peeked && !(c->waiter && mp__poll_rdhup()))
        conn_discard_peeked(c);
}

/*
 * Read what the socket has. End of file or an error marks it broken.
 * The buffer grows only as bytes arrive, never by what a header claims:
 * to IN_KEEP, or, for a large request, step by step to its size, each step
 * charged against the budget.
 *
 * Small requests are peeked, and taken out of the socket only once they
 * are answered (mp__mgr_conn_take_peeked): taking them out at once would
 * wake a client already asleep in its read of the reply, for nothing (io.h,
 * mp__recv_peek_nowait) - Python's proxies sleep there at once. What fills
 * the buffer (a large request) is taken at once, as is a mailbox client's
 * doorbell (that client spins for its reply in the slot).
 */
void mp__mgr_conn_read(struct server *s, struct sconn *c)
{
    /* Bytes still peeked belong to a request that waits, and the socket was
     * polled only for a hang-up: take them, and read on to the end of file. */
    conn_discard_peeked(c);
    bool peek = !c->slot;
    while (conn_in_room(s, c) > 0) {
        size_t room = c->in_cap - c->in_len;
        peek = peek && !c->skip;
        ssize_t r = peek ? mp__recv_peek_nowait(c->fd, c->in + c->in_len, room)
                         : mp__recv_nowait(c->fd, c->in + c->in_len, room);
        if (r == -EAGAIN)
            return;
        if (r <= 0) {
            c->broken = true; /* end of file, reset */
            c->hung_up = r == 0 || r == -ECONNRESET;
            return;
        }
        c->in_len += (size_t)r;
        if ((size_t)r < room && !c->skip) {
            /* drained (an extra recv would only say EAGAIN) */
            if (peek)
                c->peeked = (size_t)r;
            return;
        }
        if (peek) { /* more may follow: take these now, read the rest plainly */
            c->peeked = (size_t)r;
            conn_discard_peeked(c);
            peek = false;
        }
    }
}

/* ---- large requests: the helper thread ------------------------------------------ */

/*
 * Hand the large request at in_pos - the only frame in its buffer, which
 * grew to hold exactly it - to the helper thread to decode, with the
 * buffer and its charge. Returns false when there is no helper (the loop
 * then decodes it itself).
 */
static bool conn_offload(struct server *s, struct sconn *c, size_t hdr, size_t size)
{
    if (s->probe || c->in_pos + hdr + size != c->in_len ||
        (!s->worker && mp__mgr_worker_new(&s->worker) < 0))
        return false;
    struct mp__mgr_job *j = calloc(1, sizeof *j);
    if (!j)
        return false;
    j->op = MP__MGR_JOB_DECODE;
    j->buf = c->in;
    j->off = c->in_pos + hdr;
    j->len = size;
    j->owner = c;
    j->charge = c->in_charge;
    if (mp__mgr_worker_submit(s->worker, j) < 0) {
        free(j);
        return false;
    }
    /* The buffer is the helper's now; only this frame was in it. */
    c->in = NULL;
    c->in_pos = c->in_len = c->in_cap = c->in_charge = 0;
    c->job = j;
    return true;
}

/* Free a request the helper decoded, off the loop too (a large tree takes
 * a while to free). */
static void conn_drop_decoded(struct server *s, struct mp__mgr_job *j)
{
    j->op = MP__MGR_JOB_FREE;
    if (mp__mgr_worker_submit(s->worker, j) < 0) {
        mp_obj_free(j->obj);
        free(j);
    }
}

/* Run the requests the helper thread has decoded. */
void mp__mgr_collect_decoded(struct server *s)
{
    struct mp__list done = MP__LIST_INITIALIZER(done, struct mp__mgr_job, node);
    mp__mgr_worker_collect(s->worker, &done);
    struct mp__mgr_job *j;
    while ((j = mp__list_pop_front(&done)) != NULL) {
        struct sconn *c = j->owner;
        mp__mgr_budget_give(s, &j->charge);
        if (c) {
            MP__ASSERT(c->job == j);
            c->job = NULL;
            mp__mgr_run_decoded(s, c, j->rc, j->obj);
            conn_answered(s, c);
            s->again = true; /* more may be buffered behind it */
        }
        conn_drop_decoded(s, j);
    }
}

/* ---- handling requests in order -------------------------------------------------- */

/* A frame error the stream cannot be read past: reply, then hang up once
 * the reply has gone. */
static void conn_fatal(struct sconn *c, int code, const char *text)
{
    mp__mgr_reply_error(c, code, text);
    c->closing = true;
    mp__mgr_conn_flush(c);
}

/* Handle buffered requests, one at a time (see the file comment). */
void mp__mgr_conn_process(struct server *s, struct sconn *c)
{
    while (mp__mgr_conn_ready(s, c)) {
        if (c->owed) { /* the reply to a request dropped over the budget */
            mp__mgr_reply_error(c, c->owed, "the server's budget for large messages is spent");
            c->owed = 0;
            mp__mgr_reply_done(c);
            continue;
        }
        if (c->skip)
            break; /* the rest of that request is still to come */
        const unsigned char *p = c->in + c->in_pos;
        size_t avail = c->in_len - c->in_pos;
        uint64_t size, st;
        size_t hdr;
        int rc = mp__frame_decode(avail ? p : NULL, avail, &size, &hdr);
        if (rc == 0) {
            if (!conn_slot_request(c, &st))
                break;
            conn_slot_take(s, c, st);
            continue;
        }
        if (rc == 1 && size == 0 && c->slot) {
            c->in_pos += hdr; /* a doorbell: the slot is looked at anyway */
            continue;
        }
        if (rc < 0) {
            conn_fatal(c, MP_EPROTO, "corrupt frame header");
            break;
        }
        if (size > s->max_request) {
            /* Python's maxlength rule: the stream cannot be read on. */
            conn_fatal(c, MP_ETOOLONG, "the request is larger than the server accepts");
            break;
        }
        if (avail - hdr < size)
            break;
        if (c->in_charge && conn_offload(s, c, hdr, (size_t)size))
            break; /* decoded by the helper thread: see mp__mgr_collect_decoded */
        mp__mgr_handle_request(s, c, p + hdr, (size_t)size);
        c->in_pos += hdr + (size_t)size;
        conn_answered(s, c);
    }
    if (c->in_pos == c->in_len) {
        c->in_pos = c->in_len = 0;
        if (c->in_cap > MP__MGR_IN_KEEP)
            (void)conn_in_resize(s, c, 0); /* a large request's buffer goes at once */
    }
}

/* Is a waiter's connection gone (mgr_server.h)? */
bool mp__mgr_conn_gone(struct sconn *c)
{
    if (c->broken || !c->sess)
        return true;
    mp__mgr_conn_take_peeked(c);
    /* Not marked broken here: its end of file is read in turn, and the
     * connection torn down as always. */
    return mp__peer_gone(c->fd);
}

/* Could mp__mgr_conn_process make progress without new input? */
bool mp__mgr_conn_has_work(const struct sconn *c)
{
    uint64_t st;
    if (c->broken || c->closing || c->waiter || c->job || !mp__mgr_conn_idle_output(c))
        return false;
    if (c->owed || conn_slot_request(c, &st))
        return true;
    if (c->skip)
        return false;
    uint64_t size;
    size_t hdr, avail = c->in_len - c->in_pos;
    int rc = mp__frame_decode(avail ? c->in + c->in_pos : NULL, avail, &size, &hdr);
    return rc < 0 || (rc == 1 && (size > UINT64_MAX - hdr || avail >= hdr + size));
}
