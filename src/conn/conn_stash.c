/*
 * conn_stash - handles kept from read-ahead: the descriptors that came with
 * handle messages a receive read past on an AF_UNIX end, for mp_recv_handle
 * (conn.c reads, this file keeps). Static functions carry stash_.
 *
 * A handle message (reduction.h: one byte sent alone with an SCM_RIGHTS
 * descriptor, Python's send_handle) travels between framed messages, so a
 * read ahead can reach it. A plain read of its byte would make the kernel
 * close the descriptor, so on an AF_UNIX stream end every read into rbuf is
 * a recvmsg() with room for descriptors (conn.c, conn_read), and a
 * descriptor that arrives is kept in a small FIFO (stash) with the stream
 * offset of its byte, for mp_recv_handle to take when rpos reaches that
 * byte. Where the byte is: Linux's unix_stream_read_generic() copies skbs
 * in order and stops right after one that carries descriptors (they ride
 * on its first byte); the handle message is one byte, so one skb, so its
 * byte is the last byte the recvmsg() returned. A descriptor accepted into
 * the stash therefore came alone (no MSG_CTRUNC, exactly one) with a last
 * byte of 1 (the count byte), with room in the stash; any other descriptor
 * (a peer attaching descriptors to an ordinary message) is closed at once.
 * One that passes those checks but whose byte a framed receive consumes
 * (a hostile peer's message ending in 0x01) is closed when rpos passes its
 * byte (stash_prune). Offsets: rtotal counts the bytes ever read into
 * rbuf, and rbuf[0, rlen) always holds the last rlen of them (reads append
 * at rlen, or refill an empty buffer; memmove keeps the tail), so rbuf[i]
 * is stream byte rtotal - rlen + i. Reads straight into a large message's
 * buffer take exactly that message's bytes, never a handle after it, so
 * they stay plain reads and rbuf is empty while they run. Other ends read
 * with read()/recv() as before, and on an AF_UNIX end the common path (no
 * control data) costs a recvmsg() for a recv() and nothing else.
 * In a forked child the stashed descriptors are the parent's, as the
 * whole messages it read ahead are: the child closes its inherited copies
 * and drops their bytes; its first handle receive reads the descriptor.
 */
#include "conn/conn_state.h"
#include "core/io.h"

#include <string.h>

void mp__conn_stash_close_all(mp_conn *c)
{
    for (size_t i = 0; i < c->nstash; i++)
        mp__close(c->stash[i].fd);
    c->nstash = 0;
}

/* Close the kept descriptors whose byte has been consumed by other means
 * than mp_recv_handle (or dropped): they came with no handle message. */
static void stash_prune(mp_conn *c)
{
    uint64_t next = mp__conn_offset_of(c, c->rpos);
    size_t k = 0;
    while (k < c->nstash && c->stash[k].off < next)
        mp__close(c->stash[k++].fd);
    if (k) {
        memmove(c->stash, c->stash + k, (c->nstash - k) * sizeof c->stash[0]);
        c->nstash -= k;
    }
}

/* True when the next buffered byte is a handle whose descriptor is kept. */
bool mp__conn_handle_next(mp_conn *c)
{
    if (!c->nstash)
        return false;
    stash_prune(c);
    return c->nstash && c->rpos < c->rlen && c->stash[0].off == mp__conn_offset_of(c, c->rpos);
}

/* True when rbuf[i] is a kept handle's byte. */
bool mp__conn_stash_has(const mp_conn *c, size_t i)
{
    uint64_t off = mp__conn_offset_of(c, i);
    for (size_t k = 0; k < c->nstash; k++)
        if (c->stash[k].off == off)
            return true;
    return false;
}

/*
 * Descriptors came with the r bytes just read at buf (before rtotal counts
 * them). Keep one that is a handle message's (see above: alone, no
 * MSG_CTRUNC, the last byte 1) while there is room; close any other now.
 */
void mp__conn_stash_arrivals(mp_conn *c, const unsigned char *buf, ssize_t r, const int *fds,
                             size_t nfds, bool ctrunc)
{
    if (c->nstash)
        stash_prune(c);
    if (r > 0 && !ctrunc && nfds == 1 && buf[r - 1] == 1 && c->nstash < MP__CONN_STASH_MAX) {
        c->stash[c->nstash++] = (struct mp__conn_handle){c->rtotal + (uint64_t)r - 1, fds[0]};
        return;
    }
    for (size_t i = 0; i < nfds; i++)
        mp__close(fds[i]);
}
