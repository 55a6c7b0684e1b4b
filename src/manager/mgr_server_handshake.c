/*
 * mgr_server_handshake - the manager server's side of accepting: the
 * authkey handshake of each new connection, run without blocking, and what
 * it does when descriptors run out (evict a handshake, or shed the
 * newcomer). Static functions: hs_.
 *
 * Anyone who reaches the port can connect and then say nothing, or drip a
 * byte at a time. So the loop accepts every connection at once and runs
 * its handshake without blocking, as a state machine (codec/handshake.h)
 * fed by non-blocking reads and writes: no thread and no limit on how many
 * run at once, some 450 bytes each. A connection must finish the whole
 * exchange within s->hs_timeout_ns of its accept (mp_manager_opts
 * .handshake_timeout, MP__MGR_HANDSHAKE_TIMEOUT by default); otherwise it is
 * closed. A silent peer so costs a descriptor and a few hundred bytes for
 * a few seconds, and holds up nobody. There is no shorter deadline for the
 * first bytes: an honest client on a loaded machine can be starved for
 * seconds, and it must not be turned away for that while descriptors are
 * plentiful. Out of descriptors, the server closes a connection that has
 * not proved the key to take a newcomer (hs_evict says which); with none
 * to close, it sheds the newcomer through a reserved descriptor (libuv's
 * trick), so the backlog drains and accept() never spins.
 */
#include "core/io.h"
#include "manager/mgr_server.h"

#include <errno.h>
#include <stdlib.h>

#define HS_BURST    256                 /* accepts per loop round, at most */
#define HS_SPARE_NS INT64_C(1000000000) /* out of fds: spare a handshake that spoke this long */

static void hs_unlink(struct server *s, struct hsconn *h)
{
    MP__ASSERT(s->nhs > 0);
    mp__list_remove(&s->hs, h);
    s->nhs--;
}

/* Drop a handshake: the peer sees end of file. */
static void hs_close(struct server *s, struct hsconn *h)
{
    hs_unlink(s, h);
    mp__close(h->fd);
    free(h);
}

void mp__mgr_hs_close_all(struct server *s)
{
    struct hsconn *h;
    while ((h = mp__list_first(&s->hs)) != NULL)
        hs_close(s, h);
    MP__ASSERT(s->nhs == 0);
}

/* The key is proved both ways: the descriptor becomes a connection. */
static void hs_adopt(struct server *s, struct hsconn *h)
{
    MP__ASSERT(h->m.state == MP__HS_DONE);
    int fd = h->fd;
    hs_unlink(s, h);
    free(h);
    mp__tcp_keepalive(fd);
    /* The client's last handshake message (its WELCOME) is in: acknowledge
     * it now. CPython's Client writes its first request right behind it,
     * and Nagle holds that write until the WELCOME is acknowledged - ~40 ms
     * per connection with a delayed ACK, and a Python proxy opens one per
     * object. */
    mp__tcp_ack_now(fd);
    if (mp__mgr_conn_add(s, fd) < 0)
        mp__close(fd);
}

/* Move the handshake's bytes as far as the socket lets us without waiting:
 * send what the machine has to say, read what it asks for, and act when
 * it is over. */
void mp__mgr_hs_step(struct server *s, struct hsconn *h)
{
    for (;;) {
        /* Only a machine still under way is kept (DONE and FAILED end it). */
        MP__ASSERT(h->m.state >= MP__HS_SEND_CHALLENGE && h->m.state < MP__HS_DONE);
        const unsigned char *out;
        unsigned char *in;
        size_t n = mp__hs_output(&h->m, &out);
        if (n) {
            ssize_t r = mp__send_nowait(h->fd, out, n);
            if (r == -EAGAIN)
                return; /* the loop polls for POLLOUT */
            if (r < 0) {
                hs_close(s, h);
                return;
            }
            mp__hs_sent(&h->m, (size_t)r);
        } else if ((n = mp__hs_want(&h->m, &in)) > 0) {
            ssize_t r = mp__recv_nowait(h->fd, in, n);
            if (r == -EAGAIN)
                return; /* the loop polls for POLLIN */
            if (r <= 0) {
                hs_close(s, h); /* end of file, reset */
                return;
            }
            (void)mp__hs_received(&h->m, s->key, s->keylen, (size_t)r);
        }
        if (h->m.state == MP__HS_DONE) {
            hs_adopt(s, h);
            return;
        }
        if (h->m.state == MP__HS_FAILED) {
            hs_close(s, h);
            return;
        }
    }
}

/* Handshakes are kept in accept order and all have the same time to
 * finish, so the oldest is the first due. */
int64_t mp__mgr_hs_next_deadline(const struct server *s)
{
    const struct hsconn *h = mp__list_first(&s->hs);
    return h ? h->deadline : MP__NO_DEADLINE;
}

void mp__mgr_hs_expire(struct server *s)
{
    int64_t now = mp__now_ns();
    struct hsconn *h;
    while ((h = mp__list_first(&s->hs)) != NULL && h->deadline <= now)
        hs_close(s, h);
}

/*
 * Out of descriptors: close a handshake that has not proved the key, to
 * take a newcomer. The oldest whose peer never spoke goes first: an honest
 * client answers within a round trip, so the newcomer is more likely one
 * than a connection silent the longest. Failing that, the oldest that spoke
 * but is still at it after a second (a drip-feeder, most likely). Spared:
 * those taken in this same accept burst (they have had no chance to speak)
 * and those that spoke within their first second (honest clients midway).
 * False if none may go.
 */
static bool hs_evict(struct server *s)
{
    int64_t started_by = mp__now_ns() - HS_SPARE_NS; /* spoke, and accepted before this */
    struct hsconn *victim = NULL, *slow = NULL;
    bool seen_heard = false;
    for (struct hsconn *h = mp__list_first(&s->hs); h && h->burst != s->hs_burst;
         h = mp__list_next(&s->hs, h)) {
        if (!mp__hs_heard(&h->m)) {
            victim = h;
            break;
        }
        if (!seen_heard && h->accepted <= started_by)
            slow = h;
        seen_heard = true;
    }
    if (!victim)
        victim = slow;
    if (!victim)
        return false;
    hs_close(s, victim);
    return true;
}

/* Start the handshake of an accepted descriptor (we speak first). */
static void hs_start(struct server *s, int fd)
{
    struct hsconn *h = malloc(sizeof *h);
    if (!h) {
        mp__close(fd);
        return;
    }
    int64_t now = mp__now_ns();
    h->fd = fd;
    h->accepted = now;
    h->deadline = now + s->hs_timeout_ns;
    h->burst = s->hs_burst;
    unsigned char random[MP__HS_RANDOM];
    mp__hs_random(s->hs_seed, s->hs_counter++, random);
    mp__hs_server_start(&h->m, MP_AUTH_SHA256, random);
    h->node.next = h->node.prev = NULL; /* malloc'd: on no list yet */
    mp__list_push_back(&s->hs, h);
    s->nhs++;
    mp__mgr_hs_step(s, h); /* the challenge goes out now */
}

/*
 * Out of descriptors with no handshake to close: accept the newcomer into
 * the reserved descriptor's place and close it at once (libuv's trick), so
 * it learns at once (end of file) rather than waiting in the backlog, and
 * the listener does not stay readable for nothing. Returns 1 if one was
 * shed, 0 if nobody waits any more, -1 without a reserve.
 */
static int hs_shed_one(struct server *s, int lfd)
{
    if (s->reserve_fd < 0)
        return -1;
    mp__close(s->reserve_fd);
    int fd = mp__accept(lfd, mp__deadline(MP_NOWAIT), NULL, 0);
    if (fd >= 0)
        mp__close(fd);
    s->reserve_fd = mp__dup_cloexec(lfd);
    return fd >= 0 ? 1 : fd == MP_ETIMEDOUT ? 0 : -1;
}

/* Accept what waits in the backlog (a burst at most per round) and start
 * each handshake. */
void mp__mgr_accept(struct server *s, int lfd)
{
    if (s->reserve_fd < 0)
        s->reserve_fd = mp__dup_cloexec(lfd); /* lost when we ran out */
    s->hs_burst++;
    for (int i = 0; i < HS_BURST; i++) {
        int fd = mp__accept(lfd, mp__deadline(MP_NOWAIT), NULL, 0);
        if (fd >= 0) {
            hs_start(s, fd);
            continue;
        }
        if (fd == MP_ETIMEDOUT)
            return; /* nobody else waits */
        if (fd == -EMFILE || fd == -ENFILE) {
            if (hs_evict(s))
                continue;
            int shed = hs_shed_one(s, lfd);
            if (shed > 0)
                continue;
            if (shed == 0)
                return;
        }
        /* Anything else (out of memory or buffers, no reserve) would
         * repeat at once: pause accepting for a moment rather than spin on
         * a readable listener. */
        s->accept_pause = mp__now_ns() + 100 * 1000 * 1000;
        return;
    }
}
